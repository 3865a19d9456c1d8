//! `[mqtt]`: the MQTT bridge (MQTT 5.0 or 3.1.1) and the embedded broker.
//!
//! The section is read as written ([`MqttSection`]) and checked once, when the file is
//! loaded, into [`MqttSettings`]: the broker address split into host and port, the protocol
//! version, QoS, credentials and TLS files as typed values, durations as [`Duration`]s. The
//! bridge takes only [`MqttSettings`], so every value it uses was checked here, and a value
//! the MQTT client would panic on (an empty client id with a persistent session, a keep-alive
//! under 5 s in MQTT 5) or only report when a connection attempt fails (which the bridge
//! would retry forever) is refused at start with the key to fix. The TLS files themselves are
//! read when the bridge builds its client options.
use super::limits::{
    MQTT_CLIENT_ID_BYTES, MQTT_CREDENTIAL_BYTES, MQTT_KEEP_ALIVE_SECS, MQTT_MAX_COMMAND_BYTES,
    MQTT_MAX_OUTBOX, MQTT_QOS, MQTT_RECONNECT_MAX_MS_CAP, MQTT_RECONNECT_MIN_MS,
    MQTT_SESSION_EXPIRY_SECS, MQTT_TOPIC_PREFIX_BYTES,
};
use super::{as_u64, check, check_from, ConfigError};
use rustls_pki_types::ServerName;
use serde::Deserialize;
use std::net::{Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// `[mqtt]`: the MQTT bridge (MQTT 5 or 3.1.1) and the embedded broker.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttSection {
    /// Run the bridge.
    pub enabled: bool,
    /// The broker's `host:port` (an IPv6 address in brackets).
    pub broker: String,
    /// Run an embedded broker (rmqtt: MQTT 3.1.1 and 5 on one port) on `broker`'s address,
    /// which must then be an IP:port.
    pub embedded_broker: bool,
    /// Embedded broker: a password file in mosquitto's format (`mosquitto_passwd`, or
    /// `lwm2m-server mqtt-passwd`); every client but the bridge must then log in. Empty: none.
    pub embedded_password_file: PathBuf,
    /// Embedded broker: an MQTT-over-TLS listener (`IP:port`, e.g. `"0.0.0.0:8883"`); empty:
    /// none. Needs `embedded_tls_cert` and `embedded_tls_key`.
    pub embedded_tls_bind: String,
    /// PEM certificate chain of the TLS listener.
    pub embedded_tls_cert: PathBuf,
    /// PEM private key of `embedded_tls_cert`.
    pub embedded_tls_key: PathBuf,
    /// Embedded broker: messages queued at most for one client session that is away or slow;
    /// 1..=10000000 ([`super::limits::MQTT_MAX_OUTBOX`]).
    pub embedded_max_queued: usize,
    /// MQTT version: 5 or 3 (3.1.1).
    pub version: u8,
    /// MQTT client identifier; the broker keeps the persistent session under it. 1..=65535
    /// bytes ([`super::limits::MQTT_CLIENT_ID_BYTES`]).
    pub client_id: String,
    /// First topic level(s): `{topic_prefix}/{endpoint}/up/...`; 1..=1024 bytes
    /// ([`super::limits::MQTT_TOPIC_PREFIX_BYTES`]).
    pub topic_prefix: String,
    /// QoS of uplink publishes: 0, 1 or 2 ([`super::limits::MQTT_QOS`]).
    pub qos: u8,
    /// User name; empty: none. 0..=65535 bytes ([`super::limits::MQTT_CREDENTIAL_BYTES`]).
    pub username: String,
    /// Password; only with a user name. 0..=65535 bytes
    /// ([`super::limits::MQTT_CREDENTIAL_BYTES`]).
    pub password: String,
    /// Connect over TLS (rustls).
    pub tls: bool,
    /// PEM file of the CAs the broker's certificate must chain to; required with `tls`.
    pub ca_file: PathBuf,
    /// PEM client certificate chain for mutual TLS; empty: none.
    pub client_cert: PathBuf,
    /// PEM private key of `client_cert`.
    pub client_key: PathBuf,
    /// MQTT keep-alive in seconds; 5..=65535 ([`super::limits::MQTT_KEEP_ALIVE_SECS`]).
    pub keep_alive_secs: u64,
    /// MQTT 5 Session Expiry Interval in seconds; 1..=4294967295
    /// ([`super::limits::MQTT_SESSION_EXPIRY_SECS`]).
    pub session_expiry_secs: u32,
    /// Messages kept in the outbox while the broker is away; when it is full, notifications
    /// are left unacknowledged (devices retransmit) and other new messages are dropped and
    /// counted. 1..=10000000 ([`super::limits::MQTT_MAX_OUTBOX`]).
    pub max_outbox: usize,
    /// Bytes of one command or desired shadow state from `dn/...`; larger ones are refused
    /// `4.00` on `up/resp`. 256..=1048576 ([`super::limits::MQTT_MAX_COMMAND_BYTES`]).
    pub max_command_bytes: usize,
    /// First reconnect delay in milliseconds; 10..=600000
    /// ([`super::limits::MQTT_RECONNECT_MIN_MS`]).
    pub reconnect_min_ms: u64,
    /// Cap of the doubling reconnect delay in milliseconds; from `reconnect_min_ms` to
    /// 3600000 ([`super::limits::MQTT_RECONNECT_MAX_MS_CAP`]).
    pub reconnect_max_ms: u64,
}

impl Default for MqttSection {
    fn default() -> Self {
        Self {
            enabled: true,
            broker: "127.0.0.1:1883".into(),
            embedded_broker: true,
            embedded_password_file: PathBuf::new(),
            embedded_tls_bind: String::new(),
            embedded_tls_cert: PathBuf::new(),
            embedded_tls_key: PathBuf::new(),
            embedded_max_queued: 100_000,
            version: 5,
            client_id: "lwm2m-server".into(),
            topic_prefix: "lwm2m".into(),
            qos: 1,
            username: String::new(),
            password: String::new(),
            tls: false,
            ca_file: PathBuf::new(),
            client_cert: PathBuf::new(),
            client_key: PathBuf::new(),
            keep_alive_secs: 30,
            session_expiry_secs: 86_400,
            max_outbox: 1_000_000,
            max_command_bytes: 64 * 1024,
            reconnect_min_ms: 500,
            reconnect_max_ms: 30_000,
        }
    }
}

// By hand, so that the password never reaches a log line.
impl std::fmt::Debug for MqttSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttSection")
            .field("enabled", &self.enabled)
            .field("broker", &self.broker)
            .field("embedded_broker", &self.embedded_broker)
            .field("embedded_password_file", &self.embedded_password_file)
            .field("embedded_tls_bind", &self.embedded_tls_bind)
            .field("embedded_max_queued", &self.embedded_max_queued)
            .field("version", &self.version)
            .field("client_id", &self.client_id)
            .field("topic_prefix", &self.topic_prefix)
            .field("qos", &self.qos)
            .field("username", &self.username)
            .field("password", &redacted(&self.password))
            .field("tls", &self.tls)
            .field("ca_file", &self.ca_file)
            .field("client_cert", &self.client_cert)
            .field("client_key", &self.client_key)
            .field("keep_alive_secs", &self.keep_alive_secs)
            .field("session_expiry_secs", &self.session_expiry_secs)
            .field("max_outbox", &self.max_outbox)
            .field("max_command_bytes", &self.max_command_bytes)
            .field("reconnect_min_ms", &self.reconnect_min_ms)
            .field("reconnect_max_ms", &self.reconnect_max_ms)
            .finish()
    }
}

/// The MQTT protocol version the bridge speaks (`mqtt.version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MqttVersion {
    /// MQTT 5.0 (OASIS, 2019): `version = 5`.
    V5,
    /// MQTT 3.1.1 (OASIS, 2014): `version = 3`.
    V311,
}

impl MqttVersion {
    /// The number the configuration gives it: 5 or 3.
    pub const fn number(self) -> u8 {
        match self {
            MqttVersion::V5 => 5,
            MqttVersion::V311 => 3,
        }
    }
}

/// The QoS of uplink publishes (`mqtt.qos`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MqttQos {
    /// QoS 0.
    AtMostOnce,
    /// QoS 1.
    AtLeastOnce,
    /// QoS 2.
    ExactlyOnce,
}

impl MqttQos {
    /// The QoS level, 0 to 2.
    pub const fn level(self) -> u8 {
        match self {
            MqttQos::AtMostOnce => 0,
            MqttQos::AtLeastOnce => 1,
            MqttQos::ExactlyOnce => 2,
        }
    }
}

/// A broker address from `mqtt.broker`, split as the MQTT client wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddress {
    /// The host as rumqttc needs it: a name, an IPv4 address, or an IPv6 address *in
    /// brackets* (rumqttc joins host and port with a colon before resolving).
    pub host: String,
    /// The TCP port, never 0.
    pub port: u16,
}

impl BrokerAddress {
    /// Whether the host is an IPv6 literal.
    pub fn is_ipv6_literal(&self) -> bool {
        self.host.starts_with('[')
    }
}

impl std::fmt::Display for BrokerAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// The user name and password the bridge logs in with (`mqtt.username`, `mqtt.password`).
#[derive(Clone, PartialEq, Eq)]
pub struct MqttLogin {
    /// The user name, never empty.
    pub username: String,
    /// The password; may be empty.
    pub password: String,
}

// By hand, so that the password never reaches a log line.
impl std::fmt::Debug for MqttLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttLogin")
            .field("username", &self.username)
            .field("password", &redacted(&self.password))
            .finish()
    }
}

/// TLS to the broker (`mqtt.tls = true`): the PEM files, read when the client is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttTls {
    /// The CAs the broker's certificate must chain to (`mqtt.ca_file`).
    pub ca_file: PathBuf,
    /// The client certificate for mutual TLS, if any.
    pub client_auth: Option<ClientAuth>,
}

/// The bridge's certificate for mutual TLS (`mqtt.client_cert`, `mqtt.client_key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAuth {
    /// The PEM certificate chain.
    pub cert: PathBuf,
    /// The PEM private key of `cert`.
    pub key: PathBuf,
}

/// The embedded broker's settings, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddedBroker {
    /// Where plain MQTT listens (`mqtt.broker`); the bridge connects there.
    pub addr: SocketAddr,
    /// The password file, if clients must log in.
    pub password_file: Option<PathBuf>,
    /// The TLS listener, if any.
    pub tls: Option<EmbeddedTls>,
    /// Messages queued at most for one session.
    pub max_queued: usize,
}

/// The embedded broker's TLS listener.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddedTls {
    /// Where it listens.
    pub bind: SocketAddr,
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// The `[mqtt]` section, checked: what the bridge runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct MqttSettings {
    /// Run the bridge.
    pub enabled: bool,
    /// The broker.
    pub broker: BrokerAddress,
    /// The embedded broker, when `mqtt.embedded_broker` is set.
    pub embedded_broker: Option<EmbeddedBroker>,
    /// MQTT 5 or 3.1.1.
    pub version: MqttVersion,
    /// The client identifier, 1 to 65535 bytes: the broker keeps the session under it.
    pub client_id: String,
    /// First topic level(s): `{topic_prefix}/{endpoint}/up/...`.
    pub topic_prefix: String,
    /// QoS of uplink publishes.
    pub qos: MqttQos,
    /// The login, if a user name is set.
    pub login: Option<MqttLogin>,
    /// TLS to the broker, if set.
    pub tls: Option<MqttTls>,
    /// The keep-alive, 5 to 65535 s.
    pub keep_alive: Duration,
    /// The MQTT 5 Session Expiry Interval in seconds, never 0.
    pub session_expiry_secs: u32,
    /// Messages kept in the outbox while the broker is away.
    pub max_outbox: usize,
    /// Bytes of one command or desired shadow state from `dn/...`.
    pub max_command_bytes: usize,
    /// The first reconnect delay.
    pub reconnect_min: Duration,
    /// The cap of the doubling reconnect delay, at least `reconnect_min`.
    pub reconnect_max: Duration,
}

impl MqttSettings {
    /// The embedded broker's listening address when the bridge and the embedded broker are
    /// both enabled.
    pub fn embedded_broker_addr(&self) -> Option<SocketAddr> {
        self.embedded().map(|b| b.addr)
    }

    /// The embedded broker's settings when the bridge and the embedded broker are both
    /// enabled.
    pub fn embedded(&self) -> Option<&EmbeddedBroker> {
        self.embedded_broker.as_ref().filter(|_| self.enabled)
    }

    /// Checks the section and reads it into typed values; the error names the key to fix.
    pub fn from_section(m: &MqttSection) -> Result<Self, ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        let version = match m.version {
            5 => MqttVersion::V5,
            3 => MqttVersion::V311,
            v => {
                return bad(format!(
                    "mqtt.version must be 5 (MQTT 5) or 3 (MQTT 3.1.1), not {v}"
                ))
            }
        };
        check("mqtt.qos", m.qos, &MQTT_QOS)?;
        let qos = match m.qos {
            0 => MqttQos::AtMostOnce,
            1 => MqttQos::AtLeastOnce,
            _ => MqttQos::ExactlyOnce,
        };
        // An empty client id: rumqttc panics on it with a persistent session, and a broker
        // could not tell our session from anyone else's.
        check(
            "mqtt.client_id (length in bytes)",
            as_u64(m.client_id.len()),
            &MQTT_CLIENT_ID_BYTES,
        )?;
        check(
            "mqtt.topic_prefix (length in bytes)",
            as_u64(m.topic_prefix.len()),
            &MQTT_TOPIC_PREFIX_BYTES,
        )?;
        check(
            "mqtt.username (length in bytes)",
            as_u64(m.username.len()),
            &MQTT_CREDENTIAL_BYTES,
        )?;
        check(
            "mqtt.password (length in bytes)",
            as_u64(m.password.len()),
            &MQTT_CREDENTIAL_BYTES,
        )?;
        // rumqttc's MQTT 5 client panics under 5 s; 0 (no keep-alive) would leave a dead
        // broker undetected.
        check(
            "mqtt.keep_alive_secs",
            m.keep_alive_secs,
            &MQTT_KEEP_ALIVE_SECS,
        )?;
        // With 0 an MQTT 5 broker ends the bridge's session at each disconnect, and downlink
        // commands published meanwhile are lost.
        check(
            "mqtt.session_expiry_secs",
            m.session_expiry_secs,
            &MQTT_SESSION_EXPIRY_SECS,
        )?;
        check("mqtt.max_outbox", as_u64(m.max_outbox), &MQTT_MAX_OUTBOX)?;
        check(
            "mqtt.max_command_bytes",
            as_u64(m.max_command_bytes),
            &MQTT_MAX_COMMAND_BYTES,
        )?;
        check(
            "mqtt.reconnect_min_ms",
            m.reconnect_min_ms,
            &MQTT_RECONNECT_MIN_MS,
        )?;
        check_from(
            "mqtt.reconnect_max_ms",
            m.reconnect_max_ms,
            ("mqtt.reconnect_min_ms", m.reconnect_min_ms),
            MQTT_RECONNECT_MAX_MS_CAP,
        )?;
        let p = &m.topic_prefix;
        // An empty level also covers an empty prefix and a leading or trailing `/`.
        if p.split('/').any(str::is_empty) || p.contains(['+', '#', '\0']) || p.starts_with('$') {
            return bad(format!(
                "mqtt.topic_prefix = {p:?} must be one or more non-empty topic levels (e.g. \"lwm2m\" or \"acme/lwm2m\"), without wildcards (+, #), a leading $ or slashes at either end"
            ));
        }
        let broker = parse_broker(&m.broker)?;
        let login = match (m.username.is_empty(), m.password.is_empty()) {
            (true, true) => None,
            // MQTT 3.1.1 §3.1.2.9: a password without a user name is a protocol violation.
            (true, false) => return bad("mqtt.password is set but mqtt.username is empty".into()),
            (false, _) => Some(MqttLogin {
                username: m.username.clone(),
                password: m.password.clone(),
            }),
        };
        let tls = if m.tls { Some(tls(m, &broker)?) } else { None };
        let embedded_broker = if m.embedded_broker {
            let addr = m.broker.parse::<SocketAddr>().map_err(|_| {
                ConfigError::Invalid(format!(
                    "mqtt.broker = {:?}: the embedded broker (mqtt.embedded_broker = true) listens on an IP address and port, e.g. \"127.0.0.1:1883\", not a host name",
                    m.broker
                ))
            })?;
            // rmqtt waits without a deadline for a new connection's first byte: its plain
            // port is for the bridge and local tools. Clients elsewhere use the TLS listener,
            // whose front drops silent connections.
            if !addr.ip().is_loopback() {
                return bad(format!("mqtt.broker = {addr}: the embedded broker's plain MQTT port serves the bridge and local tools and listens on a loopback address only (e.g. \"127.0.0.1:1883\"); for clients elsewhere set mqtt.embedded_tls_bind (with mqtt.embedded_password_file), or run your own broker"));
            }
            if m.tls {
                return bad("mqtt.tls = true with mqtt.embedded_broker = true: the bridge talks to its own broker over plain TCP on mqtt.broker; for TLS clients set mqtt.embedded_tls_bind, or point mqtt.broker at an external broker with TLS".into());
            }
            check(
                "mqtt.embedded_max_queued",
                as_u64(m.embedded_max_queued),
                &MQTT_MAX_OUTBOX,
            )?;
            let tls = if m.embedded_tls_bind.is_empty() {
                None
            } else {
                let bind = m.embedded_tls_bind.parse::<SocketAddr>().map_err(|_| {
                    ConfigError::Invalid(format!(
                        "mqtt.embedded_tls_bind = {:?} must be an IP address and port, e.g. \"0.0.0.0:8883\"",
                        m.embedded_tls_bind
                    ))
                })?;
                if m.embedded_tls_cert.as_os_str().is_empty()
                    || m.embedded_tls_key.as_os_str().is_empty()
                {
                    return bad("mqtt.embedded_tls_bind needs mqtt.embedded_tls_cert and mqtt.embedded_tls_key (PEM files)".into());
                }
                if bind == addr {
                    return bad(format!("mqtt.embedded_tls_bind = {bind} is also mqtt.broker: give TLS its own port (8883 is the usual one)"));
                }
                if !bind.ip().is_loopback() && m.embedded_password_file.as_os_str().is_empty() {
                    return bad(format!("mqtt.embedded_tls_bind = {bind} is reachable from elsewhere: set mqtt.embedded_password_file too, or anyone there could publish device commands"));
                }
                Some(EmbeddedTls {
                    bind,
                    cert: m.embedded_tls_cert.clone(),
                    key: m.embedded_tls_key.clone(),
                })
            };
            let password_file =
                Some(m.embedded_password_file.clone()).filter(|p| !p.as_os_str().is_empty());
            Some(EmbeddedBroker {
                addr,
                password_file,
                tls,
                max_queued: m.embedded_max_queued,
            })
        } else {
            let set = [
                (
                    "mqtt.embedded_password_file",
                    !m.embedded_password_file.as_os_str().is_empty(),
                ),
                ("mqtt.embedded_tls_bind", !m.embedded_tls_bind.is_empty()),
                (
                    "mqtt.embedded_tls_cert",
                    !m.embedded_tls_cert.as_os_str().is_empty(),
                ),
                (
                    "mqtt.embedded_tls_key",
                    !m.embedded_tls_key.as_os_str().is_empty(),
                ),
            ];
            if let Some((key, _)) = set.iter().find(|(_, is_set)| *is_set) {
                return bad(format!("{key} is set but mqtt.embedded_broker = false: it configures the embedded broker only (remove it, or set embedded_broker = true)"));
            }
            None
        };
        Ok(MqttSettings {
            enabled: m.enabled,
            broker,
            embedded_broker,
            version,
            client_id: m.client_id.clone(),
            topic_prefix: m.topic_prefix.clone(),
            qos,
            login,
            tls,
            keep_alive: Duration::from_secs(m.keep_alive_secs),
            session_expiry_secs: m.session_expiry_secs,
            max_outbox: m.max_outbox,
            max_command_bytes: m.max_command_bytes,
            reconnect_min: Duration::from_millis(m.reconnect_min_ms),
            reconnect_max: Duration::from_millis(m.reconnect_max_ms),
        })
    }
}

/// Why `[mqtt]` was refused, for the refusals with their own kind.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MqttError {
    /// `broker` is not `host:port`.
    #[error("mqtt.broker = {value:?} is not host:port ({reason}); examples: \"127.0.0.1:1883\", \"broker.example.com:8883\", \"[::1]:1883\"")]
    Broker {
        /// The configured value.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `tls = true` without `ca_file`.
    #[error("mqtt.tls = true needs mqtt.ca_file: the PEM file of the certificate authorities the broker's certificate must chain to (this build has no built-in root store)")]
    MissingCaFile,
    /// One of `client_cert` and `client_key` without the other.
    #[error("mqtt.client_cert and mqtt.client_key must be set together for mutual TLS (or both left empty)")]
    ClientAuthPair,
}

/// The TLS settings of a section with `tls = true`.
fn tls(m: &MqttSection, broker: &BrokerAddress) -> Result<MqttTls, ConfigError> {
    if m.ca_file.as_os_str().is_empty() {
        return Err(MqttError::MissingCaFile.into());
    }
    let client_auth = match (
        m.client_cert.as_os_str().is_empty(),
        m.client_key.as_os_str().is_empty(),
    ) {
        (true, true) => None,
        (false, false) => Some(ClientAuth {
            cert: m.client_cert.clone(),
            key: m.client_key.clone(),
        }),
        _ => return Err(MqttError::ClientAuthPair.into()),
    };
    if broker.is_ipv6_literal() {
        // rumqttc gives rustls the host string as configured, brackets included, as the
        // server name to verify; "[::1]" is neither a DNS name nor an IP address to it.
        return Err(ConfigError::Invalid(format!(
            "mqtt.broker = {:?}: TLS to an IPv6 address literal is not supported by the MQTT client; use a host name",
            m.broker
        )));
    }
    if ServerName::try_from(broker.host.as_str()).is_err() {
        return Err(ConfigError::Invalid(format!(
            "mqtt.broker = {:?}: {:?} is not a DNS name or IP address to verify the broker's certificate against",
            m.broker, broker.host
        )));
    }
    Ok(MqttTls {
        ca_file: m.ca_file.clone(),
        client_auth,
    })
}

/// Parses `mqtt.broker`: `host:port`, with an IPv6 address in brackets (`[::1]:1883`). No
/// scheme: TLS is `mqtt.tls`, the protocol version `mqtt.version`.
pub fn parse_broker(value: &str) -> Result<BrokerAddress, MqttError> {
    let bad = |reason| MqttError::Broker {
        value: value.to_string(),
        reason,
    };
    if value.contains("://") {
        return Err(bad("no scheme: TLS is set with mqtt.tls"));
    }
    let (host, port) = if let Some(rest) = value.strip_prefix('[') {
        let (ip, port) = rest
            .split_once("]:")
            .ok_or_else(|| bad("an IPv6 address in brackets must be followed by :port"))?;
        ip.parse::<Ipv6Addr>()
            .map_err(|_| bad("not an IPv6 address between the brackets"))?;
        (format!("[{ip}]"), port)
    } else {
        let (host, port) = value.rsplit_once(':').ok_or_else(|| bad("no :port"))?;
        if host.contains(':') {
            return Err(bad("an IPv6 address must be written in brackets"));
        }
        if host.is_empty() {
            return Err(bad("no host"));
        }
        if host
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '/' | '@' | '?' | '#'))
        {
            return Err(bad("the host has characters no host name has"));
        }
        (host.to_string(), port)
    };
    let port: u16 = port.parse().map_err(|_| bad("the port is not 1-65535"))?;
    if port == 0 {
        return Err(bad("the port is not 1-65535"));
    }
    Ok(BrokerAddress { host, port })
}

/// What a log line may show of a password: whether there is one.
fn redacted(password: &str) -> &'static str {
    if password.is_empty() {
        ""
    } else {
        "<redacted>"
    }
}
