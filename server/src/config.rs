//! The server's configuration file (TOML). Every key is optional; the embedded default is
//! `config/server.toml` itself, so the documented file and the defaults cannot drift apart.
//! Unknown keys are rejected with the key's name, so a misspelt setting fails loudly.
//!
//! The `[security]` and `[dtls]` sections are plain typed structs: the runtime maps them onto
//! the DTLS engine, so this module carries no dependency on it. `[mqtt]` is checked here with
//! the same function the MQTT client options are built with ([`crate::bridge::connect::check`]),
//! so a setting the bridge could not use is refused at start.
use crate::core::CoreConfig;
use lwm2m::coap::{EndpointConfig, TransmissionParams};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The embedded default configuration.
pub const DEFAULT_CONFIG: &str = include_str!("../../config/server.toml");

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[server]`
    #[serde(default)]
    pub server: ServerSection,
    /// `[registration]`
    #[serde(default)]
    pub registration: RegistrationSection,
    /// `[queue]`
    #[serde(default)]
    pub queue: QueueSection,
    /// `[coap]`
    #[serde(default)]
    pub coap: CoapSection,
    /// `[security]`
    #[serde(default)]
    pub security: SecuritySection,
    /// `[dtls]`
    #[serde(default)]
    pub dtls: DtlsSection,
    /// `[mqtt]`
    #[serde(default)]
    pub mqtt: MqttSection,
    /// `[http]`
    #[serde(default)]
    pub http: HttpSection,
    /// `[log]`
    #[serde(default)]
    pub log: LogSection,
}

/// `[server]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    /// UDP addresses for CoAP (NoSec); served only if `security.allow_nosec`.
    pub coap_bind: Vec<SocketAddr>,
    /// UDP addresses for CoAP over DTLS.
    pub coaps_bind: Vec<SocketAddr>,
    /// Directory of the durable state.
    pub data_dir: PathBuf,
    /// Directory of extra DDF object definitions; empty for none.
    pub objects_dir: PathBuf,
    /// Receive buffer of each UDP socket, in bytes (0: the kernel's default).
    pub udp_recv_buffer_bytes: usize,
    /// Page cache of the store, in bytes.
    pub store_cache_bytes: usize,
}

impl Default for ServerSection {
    fn default() -> Self {
        Self {
            coap_bind: vec![
                SocketAddr::from(([127, 0, 0, 1], 5683)),
                SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 5683)),
            ],
            coaps_bind: vec![
                SocketAddr::from(([127, 0, 0, 1], 5684)),
                SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 5684)),
            ],
            data_dir: PathBuf::from("./lwm2m-data"),
            objects_dir: PathBuf::new(),
            udp_recv_buffer_bytes: 4 << 20,
            store_cache_bytes: 32 << 20,
        }
    }
}

/// `[registration]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrationSection {
    /// Seconds kept past the lifetime.
    pub grace_secs: u64,
    /// Registrations held at most.
    pub max_registrations: usize,
}

impl Default for RegistrationSection {
    fn default() -> Self {
        Self {
            grace_secs: 15,
            max_registrations: 1_000_000,
        }
    }
}

/// `[queue]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueSection {
    /// Seconds a queue-mode device counts as awake after an uplink.
    pub awake_window_secs: u64,
    /// Commands queued per device at most.
    pub max_per_device: usize,
    /// Default seconds a command waits for a sleeping device.
    pub command_ttl_secs: u64,
}

impl Default for QueueSection {
    fn default() -> Self {
        Self {
            awake_window_secs: 93,
            max_per_device: 64,
            command_ttl_secs: 86_400,
        }
    }
}

/// `[coap]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CoapSection {
    /// ACK_TIMEOUT in milliseconds.
    pub ack_timeout_ms: u64,
    /// ACK_RANDOM_FACTOR.
    pub ack_random_factor: f64,
    /// MAX_RETRANSMIT.
    pub max_retransmit: u8,
    /// NSTART.
    pub nstart: u8,
    /// Block size in bytes.
    pub block_size: usize,
}

impl Default for CoapSection {
    fn default() -> Self {
        Self {
            ack_timeout_ms: 2000,
            ack_random_factor: 1.5,
            max_retransmit: 4,
            nstart: 1,
            block_size: 1024,
        }
    }
}

/// `[security]`: who may talk to the server, and the server's own credentials.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecuritySection {
    /// Serve plain CoAP (LwM2M NoSec) on `server.coap_bind`.
    pub allow_nosec: bool,
    /// File of the key that encrypts device secrets at rest; empty: `{data_dir}/secrets.key`.
    pub secrets_key_file: PathBuf,
    /// The server's PEM certificate chain; empty: a generated self-signed certificate.
    pub certificate: PathBuf,
    /// The server's PKCS#8 P-256 private key (PEM); empty together with `certificate`.
    pub private_key: PathBuf,
    /// PEM bundle of the CAs device certificates must chain to; empty: pinned certificates only.
    pub trusted_ca: PathBuf,
}

impl Default for SecuritySection {
    fn default() -> Self {
        Self {
            allow_nosec: true,
            secrets_key_file: PathBuf::new(),
            certificate: PathBuf::new(),
            private_key: PathBuf::new(),
            trusted_ca: PathBuf::new(),
        }
    }
}

/// The DTLS engine's cipher suites, named in the configuration by their IANA names.
pub use dtls::CipherSuite;

/// Reads `cipher_suites` as IANA names into the engine's own enum, so the configuration
/// has no second list of suites to keep in step with the engine.
fn cipher_suites<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<CipherSuite>, D::Error> {
    let names = Vec::<String>::deserialize(d)?;
    names
        .iter()
        .map(|n| {
            CipherSuite::ALL
                .into_iter()
                .find(|s| s.name() == n)
                .ok_or_else(|| {
                    let known: Vec<&str> = CipherSuite::ALL.iter().map(|s| s.name()).collect();
                    serde::de::Error::custom(format!(
                        "unknown cipher suite {n:?} (known: {})",
                        known.join(", ")
                    ))
                })
        })
        .collect()
}

/// `[dtls]`: the DTLS engine's limits and timers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DtlsSection {
    /// Length of the Connection IDs the server hands out (RFC 9146); 0 disables CID.
    pub connection_id_length: u8,
    /// First handshake flight retransmission timeout, in milliseconds (RFC 6347 §4.2.4.1).
    pub retransmit_initial_ms: u64,
    /// Upper bound of the doubling retransmission timeout, in milliseconds.
    pub retransmit_max_ms: u64,
    /// Handshakes in progress at once, over all peers.
    pub max_handshakes: usize,
    /// New handshakes accepted per source IP address per second.
    pub handshakes_per_source_per_sec: u32,
    /// Established sessions held at most.
    pub max_sessions: usize,
    /// Seconds between saves of the established sessions (0: only at shutdown).
    pub session_save_interval_secs: u64,
    /// Cipher suites offered, in order of preference.
    #[serde(deserialize_with = "cipher_suites")]
    pub cipher_suites: Vec<CipherSuite>,
    /// Refuse clients that do not offer Extended Master Secret (RFC 7627).
    pub require_extended_master_secret: bool,
}

impl Default for DtlsSection {
    fn default() -> Self {
        Self {
            connection_id_length: 6,
            retransmit_initial_ms: 1000,
            retransmit_max_ms: 60_000,
            max_handshakes: 10_000,
            handshakes_per_source_per_sec: 20,
            max_sessions: 1_000_000,
            session_save_interval_secs: 300,
            cipher_suites: CipherSuite::ALL.to_vec(),
            require_extended_master_secret: false,
        }
    }
}

/// The longest Connection ID the server hands out. RFC 9146 allows 255 bytes, but every CID
/// byte is paid in every record on a narrowband link, and 16 random bytes are already far
/// beyond any collision risk.
pub const MAX_CONNECTION_ID_LENGTH: u8 = 16;

/// `[mqtt]`: the MQTT bridge (MQTT 5 or 3.1.1) and the embedded broker.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttSection {
    /// Run the bridge.
    pub enabled: bool,
    /// The broker's `host:port` (an IPv6 address in brackets).
    pub broker: String,
    /// Run an embedded broker (rumqttd) on `broker`'s address, which must then be an IP:port.
    pub embedded_broker: bool,
    /// MQTT version: 5 or 3 (3.1.1).
    pub version: u8,
    /// MQTT client identifier; the broker keeps the persistent session under it.
    pub client_id: String,
    /// First topic level(s): `{topic_prefix}/{endpoint}/up/...`.
    pub topic_prefix: String,
    /// QoS of uplink publishes: 0, 1 or 2.
    pub qos: u8,
    /// User name; empty: none.
    pub username: String,
    /// Password; only with a user name.
    pub password: String,
    /// Connect over TLS (rustls).
    pub tls: bool,
    /// PEM file of the CAs the broker's certificate must chain to; required with `tls`.
    pub ca_file: PathBuf,
    /// PEM client certificate chain for mutual TLS; empty: none.
    pub client_cert: PathBuf,
    /// PEM private key of `client_cert`.
    pub client_key: PathBuf,
    /// MQTT keep-alive in seconds (5 to 65535).
    pub keep_alive_secs: u64,
    /// MQTT 5 Session Expiry Interval in seconds (positive).
    pub session_expiry_secs: u32,
    /// Messages kept in the outbox while the broker is away; beyond it new ones are dropped
    /// and counted.
    pub max_outbox: usize,
    /// First reconnect delay in milliseconds.
    pub reconnect_min_ms: u64,
    /// Cap of the doubling reconnect delay in milliseconds.
    pub reconnect_max_ms: u64,
}

impl Default for MqttSection {
    fn default() -> Self {
        Self {
            enabled: true,
            broker: "127.0.0.1:1883".into(),
            embedded_broker: true,
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
            .field("version", &self.version)
            .field("client_id", &self.client_id)
            .field("topic_prefix", &self.topic_prefix)
            .field("qos", &self.qos)
            .field("username", &self.username)
            .field(
                "password",
                &if self.password.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .field("tls", &self.tls)
            .field("ca_file", &self.ca_file)
            .field("client_cert", &self.client_cert)
            .field("client_key", &self.client_key)
            .field("keep_alive_secs", &self.keep_alive_secs)
            .field("session_expiry_secs", &self.session_expiry_secs)
            .field("max_outbox", &self.max_outbox)
            .field("reconnect_min_ms", &self.reconnect_min_ms)
            .field("reconnect_max_ms", &self.reconnect_max_ms)
            .finish()
    }
}

impl MqttSection {
    /// The embedded broker's listening address: `broker` when the bridge and the embedded
    /// broker are both enabled (checked to be an IP:port at parse time).
    pub fn embedded_broker_addr(&self) -> Option<SocketAddr> {
        if self.enabled && self.embedded_broker {
            self.broker.parse().ok()
        } else {
            None
        }
    }

    /// The MQTT keep-alive.
    pub fn keep_alive(&self) -> Duration {
        Duration::from_secs(self.keep_alive_secs)
    }

    /// The first reconnect delay.
    pub fn reconnect_min(&self) -> Duration {
        Duration::from_millis(self.reconnect_min_ms)
    }

    /// The cap of the reconnect delay.
    pub fn reconnect_max(&self) -> Duration {
        Duration::from_millis(self.reconnect_max_ms)
    }
}

/// `[http]`: the HTTP API (for now `GET /metrics`, Prometheus).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSection {
    /// Serve the HTTP API.
    pub enabled: bool,
    /// TCP address to listen on (port 0: any free port).
    pub bind: SocketAddr,
}

impl Default for HttpSection {
    fn default() -> Self {
        Self {
            enabled: true,
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
        }
    }
}

/// `[log]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// tracing filter.
    pub level: String,
}

impl Default for LogSection {
    fn default() -> Self {
        Self {
            level: "info".into(),
        }
    }
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Not valid TOML, an unknown key, or a value of the wrong type.
    #[error("invalid configuration: {0}")]
    Parse(#[from] toml::de::Error),
    /// A value out of range.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Parses and checks a configuration file's text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let c: Config = toml::from_str(text)?;
        c.validate()?;
        Ok(c)
    }

    /// The embedded default.
    pub fn embedded() -> Result<Self, ConfigError> {
        Self::parse(DEFAULT_CONFIG)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_string()));
        if !(16..=1024).contains(&self.coap.block_size) || !self.coap.block_size.is_power_of_two() {
            return bad("coap.block_size must be a power of two from 16 to 1024");
        }
        if self.coap.ack_random_factor < 1.0 {
            return bad("coap.ack_random_factor must be at least 1.0");
        }
        if self.coap.ack_timeout_ms == 0 || self.coap.nstart == 0 {
            return bad("coap.ack_timeout_ms and coap.nstart must be positive");
        }
        if self.security.allow_nosec && self.server.coap_bind.is_empty() {
            return bad(
                "server.coap_bind needs at least one address while security.allow_nosec is true",
            );
        }
        if self.server.coaps_bind.is_empty()
            && (!self.security.allow_nosec || self.server.coap_bind.is_empty())
        {
            return bad("the server would listen nowhere: set server.coaps_bind, or server.coap_bind with security.allow_nosec = true");
        }
        if self.security.allow_nosec {
            if let Some(a) = self
                .server
                .coap_bind
                .iter()
                // Port 0 (any free port, as tests use) cannot clash.
                .find(|a| a.port() != 0 && self.server.coaps_bind.contains(a))
            {
                return Err(ConfigError::Invalid(format!(
                    "{a} is in both server.coap_bind and server.coaps_bind: CoAP and DTLS need separate ports"
                )));
            }
        }
        let empty = |p: &PathBuf| p.as_os_str().is_empty();
        if empty(&self.security.certificate) != empty(&self.security.private_key) {
            return bad(
                "security.certificate and security.private_key must be set together (or both left empty for a generated self-signed certificate)",
            );
        }
        self.validate_dtls()?;
        self.validate_mqtt()
    }

    fn validate_mqtt(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        let m = &self.mqtt;
        if m.version != 5 && m.version != 3 {
            return bad(format!(
                "mqtt.version must be 5 (MQTT 5) or 3 (MQTT 3.1.1), not {}",
                m.version
            ));
        }
        if m.qos > 2 {
            return bad(format!("mqtt.qos must be 0, 1 or 2, not {}", m.qos));
        }
        let p = &m.topic_prefix;
        if p.is_empty()
            || p.starts_with('/')
            || p.ends_with('/')
            || p.split('/').any(str::is_empty)
            || p.contains(['+', '#', '\0'])
            || p.starts_with('$')
        {
            return bad(format!(
                "mqtt.topic_prefix = {p:?} must be one or more non-empty topic levels (e.g. \"lwm2m\" or \"acme/lwm2m\"), without wildcards (+, #), a leading $ or slashes at either end"
            ));
        }
        if m.max_outbox == 0 {
            return bad("mqtt.max_outbox must be positive".into());
        }
        if m.reconnect_min_ms == 0 {
            return bad("mqtt.reconnect_min_ms must be positive".into());
        }
        if m.reconnect_max_ms < m.reconnect_min_ms {
            return bad(format!(
                "mqtt.reconnect_max_ms ({}) must be at least mqtt.reconnect_min_ms ({})",
                m.reconnect_max_ms, m.reconnect_min_ms
            ));
        }
        // Broker address, client id, keep-alive, session expiry, credentials, TLS settings:
        // the very checks the client options are built with (files are read only then).
        crate::bridge::connect::check(m).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        if m.embedded_broker {
            m.broker.parse::<SocketAddr>().map_err(|_| {
                ConfigError::Invalid(format!(
                    "mqtt.broker = {:?}: the embedded broker (mqtt.embedded_broker = true) listens on an IP address and port, e.g. \"127.0.0.1:1883\", not a host name",
                    m.broker
                ))
            })?;
            if m.tls {
                return bad("mqtt.tls = true with mqtt.embedded_broker = true: the embedded broker speaks plain TCP only (keep it on loopback), or point mqtt.broker at an external broker with TLS".into());
            }
        }
        Ok(())
    }

    fn validate_dtls(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        let d = &self.dtls;
        if d.connection_id_length > MAX_CONNECTION_ID_LENGTH {
            return bad(format!(
                "dtls.connection_id_length must be 0 (no Connection ID) to {MAX_CONNECTION_ID_LENGTH}, not {}",
                d.connection_id_length
            ));
        }
        if d.retransmit_initial_ms == 0 {
            return bad("dtls.retransmit_initial_ms must be positive".into());
        }
        if d.retransmit_max_ms < d.retransmit_initial_ms {
            return bad(format!(
                "dtls.retransmit_max_ms ({}) must be at least dtls.retransmit_initial_ms ({})",
                d.retransmit_max_ms, d.retransmit_initial_ms
            ));
        }
        if d.max_handshakes == 0 || d.max_sessions == 0 || d.handshakes_per_source_per_sec == 0 {
            return bad("dtls.max_handshakes, dtls.max_sessions and dtls.handshakes_per_source_per_sec must be positive".into());
        }
        if d.cipher_suites.is_empty() {
            return bad("dtls.cipher_suites needs at least one suite".into());
        }
        for (i, s) in d.cipher_suites.iter().enumerate() {
            if d.cipher_suites[..i].contains(s) {
                return bad(format!("dtls.cipher_suites lists {} twice", s.name()));
            }
        }
        Ok(())
    }

    /// The file of the key that encrypts device secrets at rest.
    pub fn secrets_key_path(&self) -> PathBuf {
        if self.security.secrets_key_file.as_os_str().is_empty() {
            self.server.data_dir.join("secrets.key")
        } else {
            self.security.secrets_key_file.clone()
        }
    }

    /// The database file in `data_dir`.
    pub fn store_path(&self) -> PathBuf {
        self.server.data_dir.join("lwm2m.redb")
    }

    /// The admin channel's Unix socket in `data_dir` (see [`crate::admin`]).
    pub fn admin_socket_path(&self) -> PathBuf {
        self.server.data_dir.join("admin.sock")
    }

    /// How often established DTLS sessions are saved; `None`: only at shutdown.
    pub fn session_save_interval(&self) -> Option<Duration> {
        match self.dtls.session_save_interval_secs {
            0 => None,
            s => Some(Duration::from_secs(s)),
        }
    }

    /// The CoAP endpoint settings.
    pub fn endpoint(&self) -> EndpointConfig {
        EndpointConfig {
            transmission: TransmissionParams {
                ack_timeout: Duration::from_millis(self.coap.ack_timeout_ms),
                ack_random_factor: self.coap.ack_random_factor,
                max_retransmit: self.coap.max_retransmit,
                nstart: self.coap.nstart,
                ..TransmissionParams::default()
            },
            block_szx: (self.coap.block_size.trailing_zeros().saturating_sub(4)) as u8,
            ..EndpointConfig::default()
        }
    }

    /// The core settings.
    pub fn core(&self) -> CoreConfig {
        CoreConfig {
            coap: self.endpoint(),
            registration_grace: Duration::from_secs(self.registration.grace_secs),
            awake_window: Duration::from_secs(self.queue.awake_window_secs),
            max_queue_per_device: self.queue.max_per_device,
            default_command_ttl: Duration::from_secs(self.queue.command_ttl_secs),
            max_registrations: self.registration.max_registrations,
            ..CoreConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_and_production_configs_parse() {
        let c = Config::embedded().unwrap();
        assert_eq!(c.server.coap_bind.len(), 2);
        assert!(
            c.server.coap_bind.iter().all(|a| a.ip().is_loopback()),
            "the default is loopback only"
        );
        assert_eq!(c.endpoint().block_szx, 6);
        let p = Config::parse(include_str!("../../config/production.toml")).unwrap();
        assert_eq!(p.coap.ack_timeout_ms, 9000);
        assert_eq!(p.endpoint().block_szx, 5);
    }

    #[test]
    fn embedded_security_and_dtls_defaults_match_the_struct_defaults() {
        let c = Config::embedded().unwrap();
        // The documented file and the serde defaults must agree, else an empty [dtls] would
        // behave differently from the file that claims to show the defaults.
        let d = DtlsSection::default();
        assert_eq!(c.dtls.connection_id_length, d.connection_id_length);
        assert_eq!(c.dtls.retransmit_initial_ms, d.retransmit_initial_ms);
        assert_eq!(c.dtls.retransmit_max_ms, d.retransmit_max_ms);
        assert_eq!(c.dtls.max_handshakes, d.max_handshakes);
        assert_eq!(
            c.dtls.handshakes_per_source_per_sec,
            d.handshakes_per_source_per_sec
        );
        assert_eq!(c.dtls.max_sessions, d.max_sessions);
        assert_eq!(
            c.dtls.session_save_interval_secs,
            d.session_save_interval_secs
        );
        assert_eq!(c.dtls.cipher_suites, CipherSuite::ALL.to_vec());
        assert!(!c.dtls.require_extended_master_secret);
        let e = Config::parse("").unwrap();
        assert_eq!(c.server.coaps_bind, e.server.coaps_bind);
        assert_eq!(c.server.coaps_bind.len(), 2);
        assert!(c.server.coaps_bind.iter().all(|a| a.port() == 5684));
        assert!(c.security.allow_nosec && e.security.allow_nosec);
        assert_eq!(
            c.secrets_key_path(),
            PathBuf::from("./lwm2m-data/secrets.key")
        );
        assert_eq!(
            c.admin_socket_path(),
            PathBuf::from("./lwm2m-data/admin.sock")
        );
        assert!(c.security.certificate.as_os_str().is_empty());
        assert!(c.security.trusted_ca.as_os_str().is_empty());
        assert_eq!(c.session_save_interval(), Some(Duration::from_secs(300)));

        let p = Config::parse(include_str!("../../config/production.toml")).unwrap();
        assert!(!p.security.allow_nosec);
        assert!(p.server.coaps_bind.iter().all(|a| a.ip().is_unspecified()));
    }

    fn err(text: &str) -> String {
        match Config::parse(text) {
            Ok(_) => panic!("accepted: {text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn bad_security_and_dtls_values_are_refused_with_their_key() {
        let e = err("[dtls]\ncipher_suites = [\"TLS_PSK_WITH_NULL_SHA\"]\n");
        assert!(
            e.contains("TLS_PSK_WITH_NULL_SHA") && e.contains("TLS_PSK_WITH_AES_128_CCM_8"),
            "names the bad suite and the known ones: {e}"
        );
        let e = err("[dtls]\ncipher_suites = []\n");
        assert!(e.contains("dtls.cipher_suites"), "{e}");
        let e = err("[dtls]\ncipher_suites = [\"TLS_PSK_WITH_AES_128_CCM_8\", \"TLS_PSK_WITH_AES_128_CCM_8\"]\n");
        assert!(e.contains("twice"), "{e}");
        let e = err("[dtls]\nconnection_id_length = 17\n");
        assert!(e.contains("dtls.connection_id_length"), "{e}");
        let e = err("[dtls]\nconnection_id_length = 300\n");
        assert!(e.contains("connection_id_length"), "{e}");
        let e = err("[dtls]\nretransmit_initial_ms = 0\n");
        assert!(e.contains("dtls.retransmit_initial_ms"), "{e}");
        let e = err("[dtls]\nretransmit_initial_ms = 5000\nretransmit_max_ms = 1000\n");
        assert!(e.contains("dtls.retransmit_max_ms"), "{e}");
        let e = err("[dtls]\nmax_handshakes = 0\n");
        assert!(e.contains("dtls.max_handshakes"), "{e}");
        let e = err("[dtls]\ncid_length = 4\n");
        assert!(e.contains("cid_length"), "{e}");
        let e = err("[security]\ncertificate = \"/etc/server.pem\"\n");
        assert!(e.contains("security.private_key"), "{e}");
        let e = err("[security]\nallow_nosec = \"no\"\n");
        assert!(e.contains("allow_nosec"), "{e}");
        let e = err("[security]\nallow_nosec = false\n[server]\ncoaps_bind = []\n");
        assert!(e.contains("listen nowhere"), "{e}");
        let e = err("[server]\ncoap_bind = [\"127.0.0.1:5684\"]\n");
        assert!(
            e.contains("both server.coap_bind and server.coaps_bind"),
            "{e}"
        );
        // DTLS only: no NoSec address needed, and NoSec's addresses may then overlap.
        let c =
            Config::parse("[server]\ncoap_bind = []\n[security]\nallow_nosec = false\n").unwrap();
        assert!(c.server.coap_bind.is_empty());
        let c = Config::parse(
            "[dtls]\nconnection_id_length = 0\nsession_save_interval_secs = 0\ncipher_suites = [\"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256\"]\n",
        )
        .unwrap();
        assert_eq!(
            c.dtls.cipher_suites,
            vec![CipherSuite::EcdheEcdsaAes128GcmSha256]
        );
        assert_eq!(c.dtls.cipher_suites[0].id(), 0xC02B);
        assert_eq!(c.session_save_interval(), None);
        let c = Config::parse("[security]\nsecrets_key_file = \"/etc/lwm2m/key\"\n").unwrap();
        assert_eq!(c.secrets_key_path(), PathBuf::from("/etc/lwm2m/key"));
    }

    #[test]
    fn embedded_mqtt_defaults_match_the_struct_defaults() {
        let c = Config::embedded().unwrap();
        let (m, d) = (&c.mqtt, MqttSection::default());
        // Field by field, through Debug (which covers every field and redacts the password).
        assert_eq!(format!("{m:?}"), format!("{d:?}"));
        assert_eq!(m.password, d.password);
        assert!(m.enabled && m.embedded_broker && !m.tls);
        assert_eq!(m.broker, "127.0.0.1:1883");
        assert_eq!(
            m.embedded_broker_addr(),
            Some(SocketAddr::from(([127, 0, 0, 1], 1883)))
        );
        assert_eq!((m.version, m.qos), (5, 1));
        assert_eq!(
            (m.client_id.as_str(), m.topic_prefix.as_str()),
            ("lwm2m-server", "lwm2m")
        );
        assert_eq!(m.keep_alive(), Duration::from_secs(30));
        assert_eq!(m.session_expiry_secs, 86_400);
        assert_eq!(m.max_outbox, 1_000_000);
        assert_eq!(m.reconnect_min(), Duration::from_millis(500));
        assert_eq!(m.reconnect_max(), Duration::from_secs(30));
        assert_eq!(
            format!("{:?}", Config::parse("").unwrap().mqtt),
            format!("{d:?}")
        );

        let p = Config::parse(include_str!("../../config/production.toml")).unwrap();
        assert!(p.mqtt.enabled && !p.mqtt.embedded_broker && p.mqtt.tls);
        assert_eq!(p.mqtt.embedded_broker_addr(), None);
        assert!(!p.mqtt.ca_file.as_os_str().is_empty());
    }

    #[test]
    fn bad_mqtt_values_are_refused_with_their_key() {
        for (text, key) in [
            ("version = 4", "mqtt.version"),
            ("qos = 3", "mqtt.qos"),
            ("broker = \"localhost\"", "mqtt.broker"),
            ("broker = \"mqtt://localhost:1883\"", "mqtt.broker"),
            ("broker = \"localhost:1883\"", "IP address and port"),
            ("client_id = \"\"", "mqtt.client_id"),
            ("topic_prefix = \"\"", "mqtt.topic_prefix"),
            ("topic_prefix = \"lwm2m/\"", "mqtt.topic_prefix"),
            ("topic_prefix = \"a/+/b\"", "mqtt.topic_prefix"),
            ("topic_prefix = \"$SYS\"", "mqtt.topic_prefix"),
            ("keep_alive_secs = 0", "mqtt.keep_alive_secs"),
            ("session_expiry_secs = 0", "mqtt.session_expiry_secs"),
            ("max_outbox = 0", "mqtt.max_outbox"),
            ("reconnect_min_ms = 0", "mqtt.reconnect_min_ms"),
            (
                "reconnect_min_ms = 5000\nreconnect_max_ms = 1000",
                "mqtt.reconnect_max_ms",
            ),
            ("password = \"x\"", "mqtt.username"),
            ("tls = true\nembedded_broker = false", "mqtt.ca_file"),
            (
                "tls = true\nembedded_broker = false\nca_file = \"/ca.pem\"\nclient_key = \"/k.pem\"",
                "mqtt.client_cert",
            ),
            ("tls = true\nca_file = \"/ca.pem\"", "embedded broker speaks plain TCP"),
            ("brokr = \"127.0.0.1:1883\"", "brokr"),
        ] {
            let e = err(&format!("[mqtt]\n{text}\n"));
            assert!(e.contains(key), "{text}: {e}");
        }
        let c = Config::parse(
            "[mqtt]\nversion = 3\nqos = 0\nbroker = \"[::1]:1884\"\ntopic_prefix = \"acme/lwm2m\"\n",
        )
        .unwrap();
        assert_eq!(
            c.mqtt.embedded_broker_addr(),
            Some("[::1]:1884".parse().unwrap())
        );
        let c = Config::parse(
            "[mqtt]\nembedded_broker = false\nbroker = \"mqtt.example.com:8883\"\ntls = true\nca_file = \"/etc/ca.pem\"\nusername = \"u\"\npassword = \"secret\"\n",
        )
        .unwrap();
        assert_eq!(c.mqtt.embedded_broker_addr(), None);
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("\"secret\"") && shown.contains("<redacted>"),
            "{shown}"
        );
        let c = Config::parse("[mqtt]\nenabled = false\n").unwrap();
        assert_eq!(c.mqtt.embedded_broker_addr(), None);
    }

    #[test]
    fn http_defaults_match_the_file_and_bad_keys_are_named() {
        let c = Config::embedded().unwrap();
        let d = HttpSection::default();
        assert_eq!((c.http.enabled, c.http.bind), (d.enabled, d.bind));
        assert!(d.enabled);
        assert_eq!(d.bind, SocketAddr::from(([127, 0, 0, 1], 8080)));
        let p = Config::parse(include_str!("../../config/production.toml")).unwrap();
        assert!(p.http.enabled);
        let c = Config::parse("[http]\nenabled = false\nbind = \"[::1]:0\"\n").unwrap();
        assert!(!c.http.enabled);
        assert_eq!(c.http.bind.port(), 0);
        let e = err("[http]\nport = 9090\n");
        assert!(e.contains("port"), "{e}");
        let e = err("[http]\nbind = \"localhost:8080\"\n");
        assert!(e.contains("bind") || e.contains("address"), "{e}");
    }

    #[test]
    fn empty_file_means_defaults_and_unknown_keys_are_named() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.queue.awake_window_secs, 93);
        let e = Config::parse("[queue]\nawake_window = 5\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("awake_window"), "{e}");
        let e = Config::parse("[coap]\nblock_size = 1000\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("block_size"), "{e}");
    }
}
