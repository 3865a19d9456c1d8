//! A bench scenario: what fleet to simulate, how its devices behave, and what the backend
//! standing in for the operator does, read from TOML (`config/scenarios/*.toml`, also built
//! into the binary under their names) and adjusted by command-line flags.
//!
//! Every key has a default, so a scenario names only what it changes; unknown keys are
//! rejected, so a typo fails the run instead of being silently ignored.
use super::names::NamePattern;
use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The scenarios shipped in `config/scenarios/`, by name.
const SHIPPED: &[(&str, &str)] = &[
    ("demo", include_str!("../../../config/scenarios/demo.toml")),
    (
        "storm",
        include_str!("../../../config/scenarios/storm.toml"),
    ),
    (
        "telemetry",
        include_str!("../../../config/scenarios/telemetry.toml"),
    ),
    (
        "sleepy",
        include_str!("../../../config/scenarios/sleepy.toml"),
    ),
    (
        "bootstrap",
        include_str!("../../../config/scenarios/bootstrap.toml"),
    ),
    (
        "firmware",
        include_str!("../../../config/scenarios/firmware.toml"),
    ),
    (
        "cluster",
        include_str!("../../../config/scenarios/cluster.toml"),
    ),
    (
        "cluster-failover",
        include_str!("../../../config/scenarios/cluster-failover.toml"),
    ),
];

/// Devices one run simulates at most.
pub(crate) const MAX_DEVICES: u64 = 1_000_000;

/// A whole scenario.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Scenario {
    /// A name for the report.
    pub name: String,
    /// Seconds from the first Register to the stop.
    pub duration_secs: u64,
    pub server: ServerSection,
    pub psk: PskSection,
    pub fleet: FleetSection,
    pub behaviour: BehaviourSection,
    /// The MQTT backend; absent: no backend.
    pub backend: Option<BackendSection>,
    /// Devices start from factory credentials for a bootstrap server and are given their
    /// LwM2M server account by it; absent: devices come with their account.
    pub bootstrap: Option<BootstrapSection>,
    /// Devices carry a Firmware Update object (Object 5) and the backend updates them;
    /// absent: no Object 5.
    pub firmware: Option<FirmwareSection>,
}

impl Default for Scenario {
    fn default() -> Self {
        Self {
            name: "custom".into(),
            duration_secs: 60,
            server: ServerSection::default(),
            psk: PskSection::default(),
            fleet: FleetSection::default(),
            behaviour: BehaviourSection::default(),
            backend: None,
            bootstrap: None,
            firmware: None,
        }
    }
}

/// How devices reach the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Security {
    /// Plain CoAP.
    NoSec,
    /// CoAP over DTLS with a pre-shared key per device.
    Psk,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ServerSection {
    /// The server's CoAP (nosec) or CoAPs (psk) address. Loopback only.
    pub address: SocketAddr,
    pub security: Security,
}

impl Default for ServerSection {
    fn default() -> Self {
        Self {
            address: SocketAddr::from(([127, 0, 0, 1], 5683)),
            security: Security::NoSec,
        }
    }
}

/// Where the per-device pre-shared keys come from.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct PskSection {
    /// Keys derived from this seed (identity = endpoint name, key = the first 16 bytes of
    /// HMAC-SHA256(seed, endpoint)); `lwm2m-client-sim credentials` prints the same set
    /// for `lwm2m-server device import`.
    pub seed: String,
    /// Or keys read from this CSV file (`endpoint,psk_identity,psk_key_hex`), the format
    /// `lwm2m-server device import` reads.
    pub file: Option<PathBuf>,
    /// Ask for a Connection ID (RFC 9146), so a NAT rebinding needs no new handshake.
    pub connection_id: bool,
}

impl Default for PskSection {
    fn default() -> Self {
        Self {
            seed: "lwm2m-client-sim".into(),
            file: None,
            connection_id: true,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct FleetSection {
    pub devices: u64,
    /// `{n}` or `{n:06}` becomes the device's number.
    pub name_pattern: String,
    /// Number of the first device.
    pub first: u64,
    /// Devices starting per second; 0: all at once.
    pub ramp_rate: f64,
    /// Register (and De-register) exchanges outstanding at once; 0: no limit.
    pub window: u32,
    pub lifetime_secs: u32,
    /// Each device on its own address 127.x.y.z (else all on 127.0.0.1, one port each).
    pub distinct_ips: bool,
    /// Simulator processes; 0: as many as the open-file limit needs (one socket per device).
    pub processes: u32,
    /// Devices driven by one task.
    pub shard_size: u32,
    /// Runtime threads per process.
    pub threads: u16,
    /// De-register every device at the end.
    pub deregister: bool,
    pub stop_timeout_secs: u64,
}

impl Default for FleetSection {
    fn default() -> Self {
        Self {
            devices: 100,
            name_pattern: "sim-{n:06}".into(),
            first: 0,
            ramp_rate: 0.0,
            window: 128,
            lifetime_secs: 300,
            distinct_ips: false,
            processes: 0,
            shard_size: 256,
            threads: 1,
            deregister: true,
            stop_timeout_secs: 30,
        }
    }
}

/// What sensors report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum SensorValues {
    /// A random walk within the sensor's range.
    Walk,
    /// The time of the change, in microseconds since the Unix epoch, so that the backend
    /// can time every notification from the device to itself.
    Timestamp,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct BehaviourSection {
    /// IPSO sensor objects each device has one instance of (each needs resource 5700).
    pub sensors: Vec<u16>,
    /// Milliseconds between sensor changes of one device; 0: values never move.
    pub sensor_interval_ms: u64,
    pub sensor_values: SensorValues,
    /// Seconds between LwM2M Send operations of one device (its sensor values); 0: none.
    pub send_interval_secs: u64,
    /// Every Nth notification confirmable; 0: all non-confirmable.
    pub notify_con_every: u32,
    /// Queue mode (NB-IoT PSM / eDRX): the device sleeps after `awake_secs` without traffic.
    pub queue_mode: bool,
    pub awake_secs: u64,
    /// Queue mode: seconds between the device's own wake-ups (its periodic uplink); 0: it
    /// wakes only for its registration updates, notifications and Sends.
    pub wake_interval_secs: u64,
    /// Seconds between reboots of one device (new socket, new session, new Register); 0:
    /// only when the server executes /3/0/4.
    pub reboot_interval_secs: u64,
    /// Seconds between NAT rebindings of one device (new source port; over DTLS the session
    /// continues with a Connection ID, or is resumed without one); 0: never.
    pub rebind_interval_secs: u64,
    /// The devices' CoAP ACK_TIMEOUT (RFC 7252 §4.8), milliseconds: a request unanswered
    /// after it and `max_retransmit` doublings is given up (2 s and 4 by default: 93 s).
    pub ack_timeout_ms: u64,
    /// The devices' CoAP MAX_RETRANSMIT.
    pub max_retransmit: u8,
}

impl Default for BehaviourSection {
    fn default() -> Self {
        Self {
            sensors: vec![3303],
            sensor_interval_ms: 0,
            sensor_values: SensorValues::Walk,
            send_interval_secs: 0,
            notify_con_every: 0,
            queue_mode: false,
            awake_secs: 10,
            wake_interval_secs: 0,
            reboot_interval_secs: 0,
            rebind_interval_secs: 0,
            ack_timeout_ms: 2000,
            max_retransmit: 4,
        }
    }
}

/// Client-initiated bootstrap (Core §5.2.3): each device holds only a factory PSK for the
/// bootstrap server, bootstraps over DTLS, then registers with the server URI and the PSK
/// it was given.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct BootstrapSection {
    /// The bootstrap server (`coaps://` on loopback).
    pub server: String,
    /// Factory keys derived from this seed (identity = endpoint name, key = the first 16
    /// bytes of HMAC-SHA256(seed, endpoint)); `lwm2m-client-sim credentials` prints them for
    /// `lwm2m-server bootstrap import`.
    pub seed: String,
    /// Seconds a device waits for Bootstrap-Finish after its Bootstrap-Request.
    pub finish_timeout_secs: u64,
    /// Seconds before a device whose bootstrap failed tries again.
    pub retry_secs: u64,
}

impl Default for BootstrapSection {
    fn default() -> Self {
        Self {
            server: "coaps://127.0.0.1:5784".into(),
            seed: "lwm2m-client-sim-factory".into(),
            finish_timeout_secs: 60,
            retry_secs: 5,
        }
    }
}

/// How a package reaches the devices (OMA LwM2M TS 1.2 Core Appendix E.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum FirmwareMethod {
    /// The server writes a Package URI (`/5/0/1`); the device downloads it with Block2.
    Pull,
    /// The server writes the package to `/5/0/0` with Block1.
    Push,
}

/// A firmware update campaign: every device has Object 5; the backend (which must be
/// configured) asks the server to update each device it saw register, `concurrency` at a
/// time, and times each from its request to its outcome on `up/firmware`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct FirmwareSection {
    /// The package: the one `lwm2m-client-sim firmware-package` writes for this version,
    /// size and seed (the same bytes every time); the server must have it
    /// (`lwm2m-server fw add`). Its id, what the campaign names, follows from its bytes.
    pub version: String,
    pub size: u64,
    pub seed: u64,
    /// Or the id of another package the server has (hex digits), used instead.
    pub package: Option<String>,
    pub method: FirmwareMethod,
    /// Devices updating at once.
    pub concurrency: u32,
    /// Seconds from the backend's start before the first update.
    pub start_after_secs: u64,
    /// Seconds the backend waits for one device's outcome before counting it timed out.
    pub device_timeout_secs: u64,
    /// Fraction of the devices (chosen by number, the same every run) whose update fails
    /// with Update Result `fail_result` instead of installing.
    pub fail_ratio: f64,
    pub fail_result: u8,
    /// Fraction of the devices (by number) in queue mode, whatever `behaviour.queue_mode`.
    pub queue_ratio: f64,
    /// Seconds a device spends Updating (State 3) before it runs the new firmware.
    pub update_secs: u64,
}

impl Default for FirmwareSection {
    fn default() -> Self {
        Self {
            version: "2.0.0".into(),
            size: 300 * 1024,
            seed: 1,
            package: None,
            method: FirmwareMethod::Pull,
            concurrency: 10,
            start_after_secs: 5,
            device_timeout_secs: 1800,
            fail_ratio: 0.0,
            fail_result: 8,
            queue_ratio: 0.0,
            update_secs: 2,
        }
    }
}

impl FirmwareSection {
    /// Whether device `n` falls in the first `ratio` of the fleet by a fixed hash of its
    /// number (`salt` keeps the choices of different ratios independent).
    pub(crate) fn picks(n: u64, ratio: f64, salt: u64) -> bool {
        let mut z = n.wrapping_add(salt).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z ^= z >> 31;
        ((z >> 11) as f64 / (1u64 << 53) as f64) < ratio
    }

    /// Whether device `n`'s update fails.
    pub(crate) fn fails(&self, n: u64) -> bool {
        Self::picks(n, self.fail_ratio, 1)
    }

    /// Whether device `n` runs in queue mode.
    pub(crate) fn queued(&self, n: u64) -> bool {
        Self::picks(n, self.queue_ratio, 2)
    }
}

/// Longest PSK identity a device is given: what tinydtls-based servers and devices take.
pub(crate) const MAX_PSK_IDENTITY: usize = 32;

/// An MQTT client standing in for the operator's backend, speaking to the server's bridge.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct BackendSection {
    /// The broker the server's bridge uses (MQTT 5). Loopback only.
    pub broker: SocketAddr,
    pub prefix: String,
    /// Paths observed on every device as soon as it registers.
    pub observe: Vec<String>,
    /// Notification attributes written (`write-attr`) on each observed path first, e.g.
    /// `{ pmin = 1, pmax = 60 }`.
    pub attributes: Option<Attributes>,
    /// Commands per second, each to a registered device picked at random; 0: none.
    pub command_rate: f64,
    /// Commands to pick from: `read PATH`, `discover PATH`, `write PATH VALUE`,
    /// `execute PATH`.
    pub commands: Vec<String>,
    /// Seconds a command may wait for its answer (a sleeping device answers when it wakes).
    pub command_timeout_secs: u64,
}

impl Default for BackendSection {
    fn default() -> Self {
        Self {
            broker: SocketAddr::from(([127, 0, 0, 1], 1883)),
            prefix: "lwm2m".into(),
            observe: Vec::new(),
            attributes: None,
            command_rate: 0.0,
            commands: vec!["read /3/0".into()],
            command_timeout_secs: 30,
        }
    }
}

/// Notification attributes (Core §5.1.2).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Attributes {
    pub pmin: Option<u32>,
    pub pmax: Option<u32>,
    pub st: Option<f64>,
}

/// A command the backend sends.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Command {
    Read(String),
    Discover(String),
    Write(String, String),
    Execute(String),
}

impl Command {
    pub(crate) fn parse(s: &str) -> anyhow::Result<Self> {
        let mut words = s.split_whitespace();
        let (Some(op), Some(path)) = (words.next(), words.next()) else {
            bail!("command {s:?}: expected `OP PATH [VALUE]`");
        };
        if !path.starts_with('/') {
            bail!("command {s:?}: the path must start with /");
        }
        let path = path.to_owned();
        let rest: Vec<&str> = words.collect();
        let cmd = match (op, rest.as_slice()) {
            ("read", []) => Self::Read(path),
            ("discover", []) => Self::Discover(path),
            ("execute", []) => Self::Execute(path),
            ("write", [_, ..]) => Self::Write(path, rest.join(" ")),
            _ => bail!("command {s:?}: expected read|discover|execute PATH or write PATH VALUE"),
        };
        Ok(cmd)
    }
}

impl Scenario {
    /// A shipped scenario by name, or a TOML file by path.
    #[cfg(test)]
    pub(crate) fn load(name_or_path: &str) -> anyhow::Result<Self> {
        Self::load_with(name_or_path, &[])
    }

    /// A shipped scenario by name, or a TOML file by path, with `key.path=value` overrides
    /// (the value in TOML syntax, or else taken as a string).
    pub(crate) fn load_with(name_or_path: &str, sets: &[String]) -> anyhow::Result<Self> {
        let text = match SHIPPED.iter().find(|(n, _)| *n == name_or_path) {
            Some((_, text)) => (*text).to_owned(),
            None => std::fs::read_to_string(Path::new(name_or_path)).with_context(|| {
                let names: Vec<&str> = SHIPPED.iter().map(|(n, _)| *n).collect();
                format!(
                    "reading scenario {name_or_path} (shipped scenarios: {})",
                    names.join(", ")
                )
            })?,
        };
        let mut table: toml::Table =
            toml::from_str(&text).with_context(|| format!("scenario {name_or_path}"))?;
        for set in sets {
            apply_set(&mut table, set)?;
        }
        let s: Self = toml::Value::Table(table)
            .try_into()
            .with_context(|| format!("scenario {name_or_path}"))?;
        s.validate()
            .with_context(|| format!("scenario {name_or_path}"))?;
        Ok(s)
    }

    #[cfg(test)]
    pub(crate) fn parse(text: &str) -> anyhow::Result<Self> {
        let s: Self = toml::from_str(text)?;
        s.validate()?;
        Ok(s)
    }

    /// Checks what TOML types cannot.
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        let f = &self.fleet;
        NamePattern::parse(&f.name_pattern)?;
        if f.devices == 0 || f.devices > MAX_DEVICES {
            bail!("fleet.devices must be 1..={MAX_DEVICES}");
        }
        if !(f.ramp_rate == 0.0 || (0.001..=1e9).contains(&f.ramp_rate)) {
            bail!("fleet.ramp_rate must be 0 or from 0.001 to 1e9 devices/s");
        }
        if !self.server.address.ip().is_loopback() {
            bail!(
                "server.address must be a loopback address, not {}",
                self.server.address
            );
        }
        if f.distinct_ips && !self.server.address.is_ipv4() {
            bail!("fleet.distinct_ips needs an IPv4 server address");
        }
        if f.shard_size == 0 || f.threads == 0 {
            bail!("fleet.shard_size and fleet.threads must be at least 1");
        }
        if !(1..=604_800).contains(&self.duration_secs) {
            bail!("duration_secs must be 1..=604800");
        }
        if f.lifetime_secs < 10 {
            bail!("fleet.lifetime_secs must be at least 10");
        }
        let b = &self.behaviour;
        if b.sensors.len() > 16 {
            bail!("behaviour.sensors: at most 16 sensor objects");
        }
        if b.queue_mode && b.awake_secs == 0 {
            bail!("behaviour.awake_secs must be at least 1 in queue mode");
        }
        // RFC 7252 §4.8: the defaults are 2 s and 4; shorter than 100 ms retransmits into
        // ordinary loopback latency, more than 8 doublings waits for hours.
        if !(100..=60_000).contains(&b.ack_timeout_ms) {
            bail!("behaviour.ack_timeout_ms must be 100..=60000");
        }
        if b.max_retransmit > 8 {
            bail!("behaviour.max_retransmit must be 0..=8");
        }
        if let Some(b) = &self.bootstrap {
            let uri = lwm2m::client::ServerUri::parse(&b.server)?;
            if !uri.secure {
                bail!("bootstrap.server must be coaps://, not {}", b.server);
            }
            loopback_addr(&uri)?;
            // The factory identity is the endpoint name; the longest name is the last one.
            let last = NamePattern::parse(&f.name_pattern)?.name(f.first + f.devices - 1);
            if last.len() > MAX_PSK_IDENTITY {
                bail!("with bootstrap, endpoint names (PSK identities) must be at most {MAX_PSK_IDENTITY} bytes: {last}");
            }
            if b.finish_timeout_secs == 0 {
                bail!("bootstrap.finish_timeout_secs must be at least 1");
            }
        }
        if let Some(fw) = &self.firmware {
            if self.backend.is_none() {
                bail!("[firmware] needs a [backend] to run the campaign");
            }
            if let Some(p) = &fw.package {
                if p.is_empty() || p.len() > 64 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
                    bail!("firmware.package must be a package id (hex digits) the server gave");
                }
            }
            if fw.version.is_empty() || fw.version.len() > 255 || fw.version.contains('\n') {
                bail!("firmware.version must be 1..=255 bytes on one line");
            }
            if fw.size > crate::firmware_package::MAX_SIZE {
                bail!(
                    "firmware.size must be at most {} bytes",
                    crate::firmware_package::MAX_SIZE
                );
            }
            if fw.concurrency == 0 {
                bail!("firmware.concurrency must be at least 1");
            }
            for (name, r) in [
                ("fail_ratio", fw.fail_ratio),
                ("queue_ratio", fw.queue_ratio),
            ] {
                if !(0.0..=1.0).contains(&r) {
                    bail!("firmware.{name} must be 0..=1");
                }
            }
            if !(2..=11).contains(&fw.fail_result) {
                bail!("firmware.fail_result must be an Update Result of 2..=11");
            }
            if fw.device_timeout_secs == 0 {
                bail!("firmware.device_timeout_secs must be at least 1");
            }
        }
        if let Some(k) = &self.backend {
            if !k.broker.ip().is_loopback() {
                bail!(
                    "backend.broker must be a loopback address, not {}",
                    k.broker
                );
            }
            if !(k.command_rate >= 0.0 && k.command_rate <= 1e6) {
                bail!("backend.command_rate must be 0..=1e6 per second");
            }
            if k.command_rate > 0.0 && k.commands.is_empty() {
                bail!("backend.commands is empty but command_rate is set");
            }
            for c in &k.commands {
                Command::parse(c)?;
            }
            for p in &k.observe {
                if !p.starts_with('/') {
                    bail!("backend.observe: {p:?} must start with /");
                }
            }
        }
        Ok(())
    }

    /// The backend's commands, parsed (none without a backend).
    pub(crate) fn commands(&self) -> anyhow::Result<Vec<Command>> {
        self.backend
            .iter()
            .flat_map(|b| b.commands.iter())
            .map(|c| Command::parse(c))
            .collect()
    }
}

/// The loopback socket address a `coap(s)://` URI names (an IP literal or `localhost`): the
/// simulator talks to loopback only.
pub(crate) fn loopback_addr(uri: &lwm2m::client::ServerUri) -> anyhow::Result<SocketAddr> {
    let ip: std::net::IpAddr = if uri.host.eq_ignore_ascii_case("localhost") {
        std::net::Ipv4Addr::LOCALHOST.into()
    } else {
        uri.host
            .parse()
            .with_context(|| format!("{} is not an IP address", uri.host))?
    };
    if !ip.is_loopback() {
        bail!("{ip} is not a loopback address");
    }
    Ok(SocketAddr::new(ip, uri.port))
}

/// Applies one `a.b.c=value` override.
fn apply_set(table: &mut toml::Table, set: &str) -> anyhow::Result<()> {
    let Some((key, raw)) = set.split_once('=') else {
        bail!("--set {set:?}: expected key.path=value");
    };
    let value = match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => t.remove("v").unwrap_or(toml::Value::String(raw.to_owned())),
        Err(_) => toml::Value::String(raw.to_owned()),
    };
    let mut parts: Vec<&str> = key.trim().split('.').collect();
    let Some(last) = parts.pop() else {
        bail!("--set {set:?}: empty key");
    };
    let mut t = table;
    for p in parts {
        let entry = t
            .entry(p.to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        t = entry
            .as_table_mut()
            .with_context(|| format!("--set {set:?}: {p} is not a section"))?;
    }
    t.insert(last.to_owned(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_scenarios_load() {
        for (name, _) in SHIPPED {
            let s = Scenario::load(name).unwrap();
            assert_eq!(&s.name, name);
        }
    }

    #[test]
    fn the_reference_file_documents_the_defaults() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../config/scenarios/reference.toml"
        );
        let reference = Scenario::load_with(path, &[]).unwrap();
        assert_eq!(
            toml::to_string(&reference).unwrap(),
            toml::to_string(&Scenario::default()).unwrap()
        );
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let e = Scenario::parse("[fleet]\ndevises = 3\n").unwrap_err();
        assert!(format!("{e:#}").contains("devises"), "{e:#}");
    }

    #[test]
    fn defaults_fill_what_is_not_named() {
        let s = Scenario::parse("duration_secs = 5\n[fleet]\ndevices = 3\n").unwrap();
        assert_eq!(s.fleet.devices, 3);
        assert_eq!(s.fleet.window, 128);
        assert!(s.backend.is_none());
    }

    #[test]
    fn only_loopback_targets() {
        let e = Scenario::parse("[server]\naddress = \"192.0.2.1:5683\"\n").unwrap_err();
        assert!(e.to_string().contains("loopback"), "{e}");
        let e = Scenario::parse("[backend]\nbroker = \"192.0.2.1:1883\"\n").unwrap_err();
        assert!(e.to_string().contains("loopback"), "{e}");
    }

    #[test]
    fn overrides_apply_to_shipped_scenarios() {
        let sets = [
            "fleet.devices=7".to_owned(),
            "server.address=127.0.0.1:9999".to_owned(),
            "backend.command_rate=0.5".to_owned(),
            "behaviour.sensors=[3304]".to_owned(),
        ];
        let s = Scenario::load_with("demo", &sets).unwrap();
        assert_eq!(s.fleet.devices, 7);
        assert_eq!(s.server.address.port(), 9999);
        assert_eq!(s.backend.unwrap().command_rate, 0.5);
        assert_eq!(s.behaviour.sensors, vec![3304]);
        assert!(Scenario::load_with("demo", &["fleet.devises=1".into()]).is_err());
        assert!(Scenario::load_with("no-such-scenario", &[]).is_err());
    }

    proptest::proptest! {
        #[test]
        fn command_and_override_parsers_never_panic(c in ".{0,40}", set in ".{0,40}") {
            let _ = Command::parse(&c);
            let mut t = toml::Table::new();
            let _ = apply_set(&mut t, &set);
        }
    }

    #[test]
    fn the_bootstrap_scenario_checks_its_server_and_identities() {
        let s = Scenario::load("bootstrap").unwrap();
        let b = s.bootstrap.unwrap();
        assert_eq!(b.server, "coaps://127.0.0.1:5784");
        let set = |k: &str| vec![k.to_owned()];
        for bad in [
            "bootstrap.server=\"coap://127.0.0.1:5783\"",
            "bootstrap.server=\"coaps://192.0.2.1:5784\"",
            "bootstrap.server=\"coaps://bs.example.com\"",
            "fleet.name_pattern=\"a-very-long-factory-endpoint-name-{n:06}\"",
        ] {
            assert!(
                Scenario::load_with("bootstrap", &set(bad)).is_err(),
                "{bad}"
            );
        }
        let s = Scenario::load_with("bootstrap", &set("bootstrap.server=\"coaps://localhost\""))
            .unwrap();
        let uri = lwm2m::client::ServerUri::parse(&s.bootstrap.unwrap().server).unwrap();
        assert_eq!(
            loopback_addr(&uri).unwrap(),
            "127.0.0.1:5684".parse().unwrap()
        );
    }

    #[test]
    fn the_firmware_scenario_picks_its_failing_and_sleepy_devices() {
        let s = Scenario::load("firmware").unwrap();
        let fw = s.firmware.unwrap();
        let n = 10_000;
        let fails = (0..n).filter(|i| fw.fails(*i)).count() as f64 / n as f64;
        let queued = (0..n).filter(|i| fw.queued(*i)).count() as f64 / n as f64;
        assert!((fails - fw.fail_ratio).abs() < 0.02, "{fails}");
        assert!((queued - fw.queue_ratio).abs() < 0.02, "{queued}");
        let set = |k: &str| vec![k.to_owned()];
        for bad in [
            "firmware.package=\"\"",
            "firmware.package=\"not-hex\"",
            "firmware.version=\"\"",
            "firmware.size=1000000000",
            "firmware.concurrency=0",
            "firmware.fail_ratio=1.5",
            "firmware.fail_result=1",
            "firmware.method=\"ftp\"",
        ] {
            assert!(Scenario::load_with("firmware", &set(bad)).is_err(), "{bad}");
        }
        let mut s = Scenario::load("firmware").unwrap();
        s.backend = None;
        assert!(s.validate().is_err(), "a campaign needs the backend");
    }

    #[test]
    fn commands_parse() {
        assert_eq!(
            Command::parse("write /3303/0/5750 room 12").unwrap(),
            Command::Write("/3303/0/5750".into(), "room 12".into())
        );
        assert_eq!(
            Command::parse("execute /3/0/4").unwrap(),
            Command::Execute("/3/0/4".into())
        );
        for bad in [
            "read",
            "read 3/0",
            "write /1/0/1",
            "fly /3/0",
            "read /3/0 x",
        ] {
            assert!(Command::parse(bad).is_err(), "{bad}");
        }
    }
}
