//! What every shard of a bench process shares: the scenario turned into what devices need
//! ([`Setup`]: addresses, names, keys, client and DTLS settings), the run's schedule ([`Plan`])
//! and the pacing of periodic behaviours ([`Cadence`]), spread evenly over a shard's devices
//! so a fleet produces a steady load rather than bursts on the period's boundary.
use super::names::{Keys, NamePattern, Psk};
use super::objects;
use super::scenario::{FirmwareSection, Scenario, Security, SensorValues};
use anyhow::Context as _;
use lwm2m::client::{Bootstrapper, BootstrapperConfig, Client, ClientConfig, SecurityMode};
use lwm2m::model::Path;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What every shard of a process shares: the scenario turned into what devices need.
pub(crate) struct Setup {
    pub server: SocketAddr,
    pub(super) server_uri: String,
    pub(super) security: Security,
    pub(super) cid: bool,
    pub(super) pattern: NamePattern,
    pub(super) keys: Keys,
    pub(super) sensors: Vec<u16>,
    /// Their Sensor Values, what a Send carries.
    pub(super) sensor_paths: Vec<Path>,
    pub(super) client: ClientConfig,
    pub(super) distinct_ips: bool,
    pub(super) timestamps: bool,
    /// Seeds every device's randomness, so two runs differ but a device's own streams do
    /// not collide with another's.
    pub(super) seed: u64,
    /// With a `[bootstrap]` section: devices start from factory credentials.
    pub(super) bootstrap: Option<BootstrapSetup>,
    /// With a `[firmware]` section: devices have Object 5, some fail, some sleep.
    pub(super) firmware: Option<FirmwareSection>,
}

/// What devices that bootstrap share.
pub(crate) struct BootstrapSetup {
    /// The bootstrap server's address and URI.
    pub(super) server: SocketAddr,
    pub(super) uri: String,
    /// The factory PSKs.
    pub(super) keys: Keys,
    pub(super) finish_timeout: Duration,
    /// How long a device waits before it tries again after a failed bootstrap.
    pub(super) retry: Duration,
}

impl Setup {
    pub(crate) fn new(s: &Scenario) -> anyhow::Result<Self> {
        let keys = match (&s.psk.file, s.server.security) {
            (Some(path), Security::Psk) => Keys::read(path)?,
            _ => Keys::derived(&s.psk.seed),
        };
        let b = &s.behaviour;
        let mut client = ClientConfig::new(String::new());
        client.lifetime = s.fleet.lifetime_secs;
        client.queue_mode = b.queue_mode;
        client.awake_time = Duration::from_secs(b.awake_secs);
        client.notify_con_every = b.notify_con_every;
        client.coap.transmission.ack_timeout = Duration::from_millis(b.ack_timeout_ms);
        client.coap.transmission.max_retransmit = b.max_retransmit;
        let scheme = match s.server.security {
            Security::NoSec => "coap",
            Security::Psk => "coaps",
        };
        Ok(Self {
            server: s.server.address,
            server_uri: format!("{scheme}://{}", s.server.address),
            security: s.server.security,
            cid: s.psk.connection_id,
            pattern: NamePattern::parse(&s.fleet.name_pattern)?,
            keys,
            sensors: b.sensors.clone(),
            sensor_paths: b
                .sensors
                .iter()
                .map(|&o| objects::sensor_value(o))
                .collect(),
            client,
            distinct_ips: s.fleet.distinct_ips,
            timestamps: b.sensor_values == SensorValues::Timestamp,
            seed: rand::random(),
            bootstrap: match &s.bootstrap {
                Some(bs) => {
                    let uri = lwm2m::client::ServerUri::parse(&bs.server)?;
                    Some(BootstrapSetup {
                        server: super::scenario::loopback_addr(&uri)?,
                        uri: bs.server.clone(),
                        keys: Keys::derived(&bs.seed),
                        finish_timeout: Duration::from_secs(bs.finish_timeout_secs),
                        retry: Duration::from_secs(bs.retry_secs),
                    })
                }
                None => None,
            },
            firmware: s.firmware.clone(),
        })
    }

    /// Gives device `n` its Firmware Update object and what the campaign makes of it:
    /// a failing update, queue mode.
    fn firmware_device(
        &self,
        n: u64,
        store: &mut lwm2m::client::ObjectStore,
        config: &mut ClientConfig,
    ) -> anyhow::Result<()> {
        let Some(fw) = &self.firmware else {
            return Ok(());
        };
        if store.instance_ids(5).next().is_none() {
            store.add_instance(5, 0, lwm2m::client::firmware_instance())?;
        }
        config.firmware_fail_with = fw.fails(n).then_some(fw.fail_result);
        config.firmware_update_time = Duration::from_secs(fw.update_secs);
        if fw.queued(n) {
            config.queue_mode = true;
        }
        Ok(())
    }

    /// For a bootstrapping device: a [`Bootstrapper`] on its factory store (the objects of
    /// [`client`](Self::client) without any LwM2M server account, and the bootstrap server's
    /// Security instance with its factory PSK), and the DTLS configuration of that PSK.
    pub(super) fn bootstrapper(
        &self,
        name: &str,
        n: u64,
        attempt: u32,
    ) -> anyhow::Result<(Bootstrapper<SocketAddr>, Arc<dtls::ClientConfig>)> {
        let bs = self
            .bootstrap
            .as_ref()
            .context("the scenario has no [bootstrap] section")?;
        let psk = bs
            .keys
            .get(name)
            .with_context(|| format!("no factory key for {name}"))?;
        let factory = SecurityMode::Psk {
            identity: psk.identity.clone().into_bytes(),
            key: psk.key.clone(),
        };
        let store = objects::factory_store(name, n, &bs.uri, &factory, &self.sensors)?;
        let mut config = BootstrapperConfig::new(name);
        config.finish_timeout = bs.finish_timeout;
        config.rng_seed = self.seed ^ n.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ u64::from(attempt);
        let dtls = dtls::ClientConfig::psk(psk.identity.into_bytes(), psk.key);
        Ok((Bootstrapper::new(config, bs.server, store), Arc::new(dtls)))
    }

    /// The local address of device number `n` (its index in the whole fleet).
    pub(crate) fn bind_addr(&self, n: u64) -> SocketAddr {
        if !self.server.is_ipv4() {
            return SocketAddr::new(IpAddr::from(Ipv6Addr::LOCALHOST), 0);
        }
        if !self.distinct_ips {
            return SocketAddr::new(IpAddr::from(Ipv4Addr::LOCALHOST), 0);
        }
        // 127.b.c.d with d in 1..=254: all of 127/8 is loopback on Linux.
        let d = (n % 254) as u8 + 1;
        let c = ((n / 254) % 256) as u8;
        let b = ((n / (254 * 256)) % 256) as u8;
        SocketAddr::new(IpAddr::from(Ipv4Addr::new(127, b, c, d)), 0)
    }

    /// The PSK of device `name` over DTLS; none for NoSec.
    pub(super) fn psk(&self, name: &str) -> anyhow::Result<Option<Psk>> {
        match self.security {
            Security::Psk => {
                Ok(Some(self.keys.get(name).with_context(|| {
                    format!("no PSK for endpoint {name} in the key file")
                })?))
            }
            Security::NoSec => Ok(None),
        }
    }

    /// A fresh client for device `n`, as at power-on.
    pub(super) fn client(
        &self,
        name: &str,
        n: u64,
        boot: u32,
    ) -> anyhow::Result<Client<SocketAddr>> {
        let psk = self.psk(name)?;
        let mut store =
            objects::device_store(name, n, &self.server_uri, psk.as_ref(), &self.sensors)?;
        let mut config = self.client.clone();
        config.endpoint = name.to_owned();
        config.rng_seed = self.seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ u64::from(boot);
        self.firmware_device(n, &mut store, &mut config)?;
        Ok(Client::new(config, self.server, store))
    }

    /// The client of a device that was just bootstrapped, registering with the first
    /// account its bootstrap server gave it: the client on that store, the DTLS
    /// configuration of the account's PSK (none for NoSec), and the server's address.
    pub(super) fn bootstrapped_client(
        &self,
        name: &str,
        n: u64,
        boot: u32,
        mut store: lwm2m::client::ObjectStore,
    ) -> anyhow::Result<(
        Client<SocketAddr>,
        Option<Arc<dtls::ClientConfig>>,
        SocketAddr,
    )> {
        let account = store
            .server_accounts()
            .into_iter()
            .next()
            .context("no server account")?;
        let uri = lwm2m::client::ServerUri::parse(&account.uri)?;
        let server = super::scenario::loopback_addr(&uri).context("account uri")?;
        let dtls = match (&account.security, uri.secure) {
            (SecurityMode::Psk { identity, key }, true) => {
                let mut c = dtls::ClientConfig::psk(identity.clone(), key.clone());
                if self.cid {
                    c.connection_id = Some((n as u32).to_be_bytes().to_vec());
                }
                Some(Arc::new(c))
            }
            (SecurityMode::NoSec, false) => None,
            (other, _) => anyhow::bail!("account security {other:?} for {}", account.uri),
        };
        let mut config = self.client.clone().with_account(&account);
        config.endpoint = name.to_owned();
        config.rng_seed = self.seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ u64::from(boot);
        self.firmware_device(n, &mut store, &mut config)?;
        Ok((Client::new(config, server, store), dtls, server))
    }

    pub(super) fn dtls_config(
        &self,
        name: &str,
        n: u64,
    ) -> anyhow::Result<Option<Arc<dtls::ClientConfig>>> {
        let Some(psk) = self.psk(name)? else {
            return Ok(None);
        };
        let mut c = dtls::ClientConfig::psk(psk.identity.into_bytes(), psk.key);
        if self.cid {
            // The CID this device wants on records to it; unique per device only for
            // readability of captures, the device's socket already tells them apart.
            c.connection_id = Some((n as u32).to_be_bytes().to_vec());
        }
        Ok(Some(Arc::new(c)))
    }
}

/// The run's schedule, the same for every shard.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    /// When device 0 may start.
    pub t0: Instant,
    /// Devices started per second; 0 for no pacing.
    pub rate: f64,
    /// When the fleet stops.
    pub end: Instant,
    pub stop_timeout: Duration,
    pub deregister: bool,
    pub sensor_every: Option<Duration>,
    pub send_every: Option<Duration>,
    pub wake_every: Option<Duration>,
    pub reboot_every: Option<Duration>,
    pub rebind_every: Option<Duration>,
}

impl Plan {
    pub(crate) fn new(s: &Scenario, t0: Instant) -> Self {
        let every = |d: Duration| (!d.is_zero()).then_some(d);
        let b = &s.behaviour;
        Self {
            t0,
            rate: s.fleet.ramp_rate,
            end: t0 + Duration::from_secs(s.duration_secs),
            stop_timeout: Duration::from_secs(s.fleet.stop_timeout_secs),
            deregister: s.fleet.deregister,
            sensor_every: every(Duration::from_millis(b.sensor_interval_ms)),
            send_every: every(Duration::from_secs(b.send_interval_secs)),
            wake_every: every(Duration::from_secs(b.wake_interval_secs)).filter(|_| b.queue_mode),
            reboot_every: every(Duration::from_secs(b.reboot_interval_secs)),
            rebind_every: every(Duration::from_secs(b.rebind_interval_secs)),
        }
    }

    /// When device `global` (counted from 0 in this run) may start.
    pub(super) fn start_at(&self, global: u64) -> Instant {
        if self.rate > 0.0 {
            Duration::try_from_secs_f64(global as f64 / self.rate)
                .ok()
                .and_then(|d| self.t0.checked_add(d))
                // Past the end: the device never starts.
                .map_or(self.end, |t| t.min(self.end))
        } else {
            self.t0
        }
    }
}

/// A behaviour that runs once per device per period, spread evenly over the shard.
#[derive(Debug, Clone, Copy)]
pub(super) struct Cadence {
    pub(super) every: Duration,
    /// Runs done so far; run number k is device k mod n's.
    pub(super) done: u64,
}

impl Cadence {
    pub(super) fn new(every: Option<Duration>) -> Option<Self> {
        every.map(|every| Self { every, done: 0 })
    }

    /// The runs due now (numbers, not devices), skipping ahead rather than bursting if the
    /// shard fell more than one round behind.
    pub(super) fn due(&mut self, now: Instant, t0: Instant, n: usize) -> Range<u64> {
        let n = n.max(1) as u128;
        let elapsed = now.saturating_duration_since(t0).as_micros();
        let due = u64::try_from(elapsed * n / self.every.as_micros().max(1)).unwrap_or(u64::MAX);
        let from = self.done.max(due.saturating_sub(n as u64));
        self.done = due.max(self.done);
        from..due
    }

    /// When run number `done` falls due.
    pub(super) fn next(&self, t0: Instant, n: usize) -> Instant {
        let us = self.every.as_micros() * (u128::from(self.done) + 1) / n.max(1) as u128;
        u64::try_from(us)
            .ok()
            .and_then(|us| t0.checked_add(Duration::from_micros(us)))
            .unwrap_or(t0 + Duration::from_secs(86_400 * 365))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_addresses_are_loopback_and_distinct() {
        let mut s = Scenario::default();
        s.fleet.distinct_ips = true;
        let setup = Setup::new(&s).unwrap();
        let all: std::collections::HashSet<_> =
            (0..70_000).map(|n| setup.bind_addr(n).ip()).collect();
        assert_eq!(all.len(), 70_000);
        assert!(all.iter().all(|a| a.is_loopback()));
    }

    #[test]
    fn a_bootstrapping_device_starts_from_its_factory_key_and_ends_on_its_account() {
        let s = Scenario::load_with("bootstrap", &[]).unwrap();
        let setup = Setup::new(&s).unwrap();
        let (b, dtls) = setup.bootstrapper("bs-000007", 7, 1).unwrap();
        let factory = match &b.store().bootstrap_account().unwrap().security {
            SecurityMode::Psk { identity, key } => (identity.clone(), key.clone()),
            other => panic!("{other:?}"),
        };
        assert_eq!(factory.0, b"bs-000007");
        assert_eq!(factory.1.len(), 16);
        assert!(matches!(&dtls.auth, dtls::ClientAuth::Psk { identity, key }
            if *identity == factory.0 && *key == factory.1));
        assert!(b.store().server_accounts().is_empty());
        assert_eq!(b.config().finish_timeout, Duration::from_secs(60));
        // Each device its own factory key.
        let (other, _) = setup.bootstrapper("bs-000008", 8, 1).unwrap();
        assert_ne!(
            other.store().bootstrap_account(),
            b.store().bootstrap_account()
        );

        // What a bootstrap server leaves: an account with its own PSK.
        let mut store = b.into_store();
        let given = SecurityMode::Psk {
            identity: b"bs-000007".to_vec(),
            key: vec![7; 16],
        };
        store
            .add_instance(
                0,
                1,
                lwm2m::client::security_instance("coaps://127.0.0.1:5699", false, &given, Some(42)),
            )
            .unwrap();
        let server = lwm2m::model::Instance::from([
            (
                0,
                lwm2m::model::Resource::Single(lwm2m::model::Value::Integer(42)),
            ),
            (
                1,
                lwm2m::model::Resource::Single(lwm2m::model::Value::Integer(120)),
            ),
            (
                7,
                lwm2m::model::Resource::Single(lwm2m::model::Value::String("U".into())),
            ),
        ]);
        store.add_instance(1, 0, server).unwrap();
        let (client, dtls, addr) = setup
            .bootstrapped_client("bs-000007", 7, 0, store.clone())
            .unwrap();
        assert_eq!(addr, "127.0.0.1:5699".parse().unwrap());
        assert_eq!(client.server(), addr);
        assert_eq!(client.config().short_server_id, 42);
        assert_eq!(client.config().lifetime, 120);
        assert!(
            matches!(&dtls.unwrap().auth, dtls::ClientAuth::Psk { key, .. } if *key == vec![7; 16])
        );
        // An account on another host is not one the simulator may reach.
        store
            .set_value(
                &Path::resource(0, 1, 0),
                lwm2m::model::Value::String("coaps://192.0.2.1:5684".into()),
            )
            .unwrap();
        assert!(setup.bootstrapped_client("bs-000007", 7, 0, store).is_err());
    }

    #[test]
    fn cadences_spread_runs_and_skip_ahead() {
        let t0 = Instant::now();
        let mut c = Cadence::new(Some(Duration::from_secs(1))).unwrap();
        // 4 devices, once a second each: a run every 250 ms.
        assert_eq!(c.due(t0 + Duration::from_millis(260), t0, 4), 0..1);
        assert_eq!(c.next(t0, 4), t0 + Duration::from_millis(500));
        assert_eq!(c.due(t0 + Duration::from_millis(1010), t0, 4), 1..4);
        // Ten seconds late: one round, not forty runs.
        assert_eq!(c.due(t0 + Duration::from_secs(11), t0, 4), 40..44);
    }
}
