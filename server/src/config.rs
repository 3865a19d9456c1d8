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
    /// UDP addresses for CoAP (NoSec); served only if `security.allow_nosec`. At most 64
    /// ([`limits::BIND_ADDRESSES`]): each is a socket.
    pub coap_bind: Vec<SocketAddr>,
    /// UDP addresses for CoAP over DTLS; at most 64 ([`limits::BIND_ADDRESSES`]).
    pub coaps_bind: Vec<SocketAddr>,
    /// Directory of the durable state.
    pub data_dir: PathBuf,
    /// Directory of extra DDF object definitions; empty for none.
    pub objects_dir: PathBuf,
    /// Receive buffer of each UDP socket, in bytes (0: the kernel's default); 0..=1073741824
    /// ([`limits::UDP_RECV_BUFFER_BYTES`]), what the kernel's `int` option holds.
    pub udp_recv_buffer_bytes: usize,
    /// Page cache of the store, in bytes; 1048576..=17179869184 (1 MiB to 16 GiB,
    /// [`limits::STORE_CACHE_BYTES`]).
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
    /// Seconds kept past the lifetime; 0..=86400 ([`limits::GRACE_SECS`]).
    pub grace_secs: u64,
    /// Registrations held at most; 1..=10000000 ([`limits::MAX_REGISTRATIONS`]), so the
    /// bound is one the memory can keep.
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
    /// Seconds a queue-mode device counts as awake after an uplink; 1..=86400
    /// ([`limits::AWAKE_WINDOW_SECS`]).
    pub awake_window_secs: u64,
    /// Commands pending per device at most; 1..=1024 ([`limits::QUEUE_MAX_PER_DEVICE`]).
    pub max_per_device: usize,
    /// Default seconds a command waits for a sleeping device; 1..=2592000 (30 days, the
    /// longest `ttl` a command may ask for; [`limits::COMMAND_TTL_SECS`]).
    pub command_ttl_secs: u64,
    /// Commands pending in the whole server at most (queued or awaiting an answer); more
    /// fail with "overloaded". 1..=10000000 ([`limits::QUEUE_MAX_PENDING`]).
    pub max_pending: usize,
}

impl Default for QueueSection {
    fn default() -> Self {
        Self {
            awake_window_secs: 93,
            max_per_device: 64,
            command_ttl_secs: 86_400,
            max_pending: 100_000,
        }
    }
}

/// `[coap]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CoapSection {
    /// ACK_TIMEOUT in milliseconds; 100..=600000 ([`limits::ACK_TIMEOUT_MS`]).
    pub ack_timeout_ms: u64,
    /// ACK_RANDOM_FACTOR; 1.0..=4.0 ([`limits::ACK_RANDOM_FACTOR`]; NaN is refused).
    pub ack_random_factor: f64,
    /// MAX_RETRANSMIT; 0..=10 ([`limits::MAX_RETRANSMIT`]): the backoff doubles per
    /// retransmission, so this bounds an exchange's lifetime.
    pub max_retransmit: u8,
    /// NSTART; 1..=32 ([`limits::NSTART`]).
    pub nstart: u8,
    /// Block size in bytes: a power of two in 16..=1024 ([`limits::BLOCK_SIZE`]).
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
    /// Length of the Connection IDs the server hands out (RFC 9146); 0 disables CID;
    /// 0..=16 ([`limits::CONNECTION_ID_LENGTH`]).
    pub connection_id_length: u8,
    /// First handshake flight retransmission timeout, in milliseconds (RFC 6347 §4.2.4.1);
    /// 100..=60000 ([`limits::DTLS_RETRANSMIT_INITIAL_MS`]).
    pub retransmit_initial_ms: u64,
    /// Upper bound of the doubling retransmission timeout, in milliseconds; from
    /// `retransmit_initial_ms` to 600000 ([`limits::DTLS_RETRANSMIT_MAX_MS_CAP`]).
    pub retransmit_max_ms: u64,
    /// Handshakes in progress at once, over all peers; 1..=1000000
    /// ([`limits::MAX_HANDSHAKES`]).
    pub max_handshakes: usize,
    /// New handshakes accepted per source IP address per second; 1..=100000
    /// ([`limits::HANDSHAKES_PER_SOURCE_PER_SEC`]).
    pub handshakes_per_source_per_sec: u32,
    /// Established sessions held at most; 1..=10000000 ([`limits::MAX_SESSIONS`]).
    pub max_sessions: usize,
    /// Seconds between saves of the established sessions (0: only at shutdown); 0..=86400
    /// ([`limits::SESSION_SAVE_INTERVAL_SECS`]).
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
    /// MQTT client identifier; the broker keeps the persistent session under it. 1..=65535
    /// bytes ([`limits::MQTT_CLIENT_ID_BYTES`]).
    pub client_id: String,
    /// First topic level(s): `{topic_prefix}/{endpoint}/up/...`; 1..=1024 bytes
    /// ([`limits::MQTT_TOPIC_PREFIX_BYTES`]).
    pub topic_prefix: String,
    /// QoS of uplink publishes: 0, 1 or 2 ([`limits::MQTT_QOS`]).
    pub qos: u8,
    /// User name; empty: none. 0..=65535 bytes ([`limits::MQTT_CREDENTIAL_BYTES`]).
    pub username: String,
    /// Password; only with a user name. 0..=65535 bytes
    /// ([`limits::MQTT_CREDENTIAL_BYTES`]).
    pub password: String,
    /// Connect over TLS (rustls).
    pub tls: bool,
    /// PEM file of the CAs the broker's certificate must chain to; required with `tls`.
    pub ca_file: PathBuf,
    /// PEM client certificate chain for mutual TLS; empty: none.
    pub client_cert: PathBuf,
    /// PEM private key of `client_cert`.
    pub client_key: PathBuf,
    /// MQTT keep-alive in seconds; 5..=65535 ([`limits::MQTT_KEEP_ALIVE_SECS`]).
    pub keep_alive_secs: u64,
    /// MQTT 5 Session Expiry Interval in seconds; 1..=4294967295
    /// ([`limits::MQTT_SESSION_EXPIRY_SECS`]).
    pub session_expiry_secs: u32,
    /// Messages kept in the outbox while the broker is away; beyond it new ones are dropped
    /// and counted. 1..=10000000 ([`limits::MQTT_MAX_OUTBOX`]).
    pub max_outbox: usize,
    /// Bytes of one command or desired shadow state from `dn/...`; larger ones are refused
    /// `4.00` on `up/resp`. 256..=1048576 ([`limits::MQTT_MAX_COMMAND_BYTES`]).
    pub max_command_bytes: usize,
    /// First reconnect delay in milliseconds; 10..=600000
    /// ([`limits::MQTT_RECONNECT_MIN_MS`]).
    pub reconnect_min_ms: u64,
    /// Cap of the doubling reconnect delay in milliseconds; from `reconnect_min_ms` to
    /// 3600000 ([`limits::MQTT_RECONNECT_MAX_MS_CAP`]).
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
            .field("max_command_bytes", &self.max_command_bytes)
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

/// The range of every numeric key, checked when the file is loaded ([`Config::parse`]) and
/// documented beside the key in `config/server.toml` (a test holds the file to these).
///
/// The bounds are chosen so that no value inside them can overflow what is computed from it
/// (a CoAP exchange lasts up to `ack_timeout * (2^(max_retransmit + 1) - 1) *
/// ack_random_factor`, a deadline is `now + secs`) or let one setting claim memory without end;
/// a lower bound of 1 where 0 would mean "never" or "none" and nothing useful.
pub mod limits {
    use std::ops::RangeInclusive;

    /// `[server] coap_bind`, `coaps_bind`: addresses per list; each is a socket.
    pub const BIND_ADDRESSES: RangeInclusive<usize> = 0..=64;
    /// `[server] udp_recv_buffer_bytes`: 0 (the kernel's default) to 1 GiB, which the kernel's
    /// `int` socket option holds.
    pub const UDP_RECV_BUFFER_BYTES: RangeInclusive<u64> = 0..=1 << 30;
    /// `[server] store_cache_bytes`: 1 MiB to 16 GiB.
    pub const STORE_CACHE_BYTES: RangeInclusive<u64> = 1 << 20..=16 << 30;
    /// `[registration] grace_secs`: up to a day.
    pub const GRACE_SECS: RangeInclusive<u64> = 0..=86_400;
    /// `[registration] max_registrations`: ten times the default.
    pub const MAX_REGISTRATIONS: RangeInclusive<u64> = 1..=10_000_000;
    /// `[queue] awake_window_secs`: a second to a day.
    pub const AWAKE_WINDOW_SECS: RangeInclusive<u64> = 1..=86_400;
    /// `[queue] max_per_device`: commands pending per device.
    pub const QUEUE_MAX_PER_DEVICE: RangeInclusive<u64> = 1..=1024;
    /// `[queue] command_ttl_secs`: a second to 30 days, the longest `ttl` a command may ask for.
    pub const COMMAND_TTL_SECS: RangeInclusive<u64> = 1..=2_592_000;
    /// `[queue] max_pending`: commands pending in the whole server; each holds its CoAP
    /// request (about 200 bytes), so ten million stay within a few GiB.
    pub const QUEUE_MAX_PENDING: RangeInclusive<u64> = 1..=10_000_000;
    /// `[coap] ack_timeout_ms`: 100 ms to 10 minutes.
    pub const ACK_TIMEOUT_MS: RangeInclusive<u64> = 100..=600_000;
    /// `[coap] ack_random_factor`: RFC 7252 requires at least 1.0; NaN is outside.
    pub const ACK_RANDOM_FACTOR: RangeInclusive<f64> = 1.0..=4.0;
    /// `[coap] max_retransmit`: with the largest ACK_TIMEOUT and factor, an exchange then
    /// lasts at most about 57 days.
    pub const MAX_RETRANSMIT: RangeInclusive<u8> = 0..=10;
    /// `[coap] nstart`: requests in flight per device.
    pub const NSTART: RangeInclusive<u8> = 1..=32;
    /// `[coap] block_size`, a power of two.
    pub const BLOCK_SIZE: RangeInclusive<usize> = 16..=1024;
    /// `[dtls] connection_id_length`: see [`super::MAX_CONNECTION_ID_LENGTH`].
    pub const CONNECTION_ID_LENGTH: RangeInclusive<u8> = 0..=super::MAX_CONNECTION_ID_LENGTH;
    /// `[dtls] retransmit_initial_ms`: 100 ms to a minute.
    pub const DTLS_RETRANSMIT_INITIAL_MS: RangeInclusive<u64> = 100..=60_000;
    /// `[dtls] retransmit_max_ms`: from `retransmit_initial_ms` to this (10 minutes).
    pub const DTLS_RETRANSMIT_MAX_MS_CAP: u64 = 600_000;
    /// `[dtls] max_handshakes`: handshakes in progress at once.
    pub const MAX_HANDSHAKES: RangeInclusive<u64> = 1..=1_000_000;
    /// `[dtls] handshakes_per_source_per_sec`.
    pub const HANDSHAKES_PER_SOURCE_PER_SEC: RangeInclusive<u32> = 1..=100_000;
    /// `[dtls] max_sessions`: ten times the default.
    pub const MAX_SESSIONS: RangeInclusive<u64> = 1..=10_000_000;
    /// `[dtls] session_save_interval_secs`: 0 (only at shutdown) to a day.
    pub const SESSION_SAVE_INTERVAL_SECS: RangeInclusive<u64> = 0..=86_400;
    /// `[mqtt] qos`.
    pub const MQTT_QOS: RangeInclusive<u8> = 0..=2;
    /// `[mqtt] client_id` in bytes: an MQTT string holds 65535.
    pub const MQTT_CLIENT_ID_BYTES: RangeInclusive<u64> = 1..=65_535;
    /// `[mqtt] topic_prefix` in bytes, leaving room in a topic (65535 bytes) for the endpoint.
    pub const MQTT_TOPIC_PREFIX_BYTES: RangeInclusive<u64> = 1..=1024;
    /// `[mqtt] username` and `password` in bytes: an MQTT string holds 65535.
    pub const MQTT_CREDENTIAL_BYTES: RangeInclusive<u64> = 0..=65_535;
    /// `[mqtt] keep_alive_secs`: rumqttc's MQTT 5 client panics under 5 s; MQTT carries it in
    /// 16 bits.
    pub const MQTT_KEEP_ALIVE_SECS: RangeInclusive<u64> = 5..=65_535;
    /// `[mqtt] session_expiry_secs`: MQTT 5 carries it in 32 bits; 0 would end the session at
    /// each disconnect.
    pub const MQTT_SESSION_EXPIRY_SECS: RangeInclusive<u32> = 1..=u32::MAX;
    /// `[mqtt] max_outbox`: messages waiting in the store for the broker.
    pub const MQTT_MAX_OUTBOX: RangeInclusive<u64> = 1..=10_000_000;
    /// `[mqtt] max_command_bytes`: a command needs well under 256 bytes unless it writes a
    /// large value; the top is the largest MQTT packet the bridge takes.
    pub const MQTT_MAX_COMMAND_BYTES: RangeInclusive<u64> = 256..=1 << 20;
    /// `[mqtt] reconnect_min_ms`: 10 ms to 10 minutes.
    pub const MQTT_RECONNECT_MIN_MS: RangeInclusive<u64> = 10..=600_000;
    /// `[mqtt] reconnect_max_ms`: from `reconnect_min_ms` to this (an hour).
    pub const MQTT_RECONNECT_MAX_MS_CAP: u64 = 3_600_000;
}

/// `a..=b` as the error messages and `config/server.toml` show a range.
fn range_text<T: std::fmt::Debug>(r: &std::ops::RangeInclusive<T>) -> String {
    format!("{:?}..={:?}", r.start(), r.end())
}

/// A size or count as `u64` for its range check (every `usize` fits on the platforms Rust
/// supports; saturating keeps a hypothetical wider one out of range instead of truncating).
fn as_u64(v: usize) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}

/// Refuses `value` of `key` outside `range`, naming both.
fn check<T: PartialOrd + std::fmt::Debug>(
    key: &'static str,
    value: T,
    range: &std::ops::RangeInclusive<T>,
) -> Result<(), ConfigError> {
    if range.contains(&value) {
        return Ok(());
    }
    Err(ConfigError::OutOfRange {
        key,
        value: format!("{value:?}"),
        range: range_text(range),
    })
}

/// Refuses `value` of `key` below the value of another key (`floor`) or above `cap`.
fn check_from(
    key: &'static str,
    value: u64,
    floor: (&'static str, u64),
    cap: u64,
) -> Result<(), ConfigError> {
    if (floor.1..=cap).contains(&value) {
        return Ok(());
    }
    Err(ConfigError::OutOfRange {
        key,
        value: value.to_string(),
        range: format!("{} ({})..={cap}", floor.0, floor.1),
    })
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Not valid TOML, an unknown key, or a value of the wrong type.
    #[error("invalid configuration: {0}")]
    Parse(#[from] toml::de::Error),
    /// A value that is not allowed (a combination of keys, a name).
    #[error("invalid configuration: {0}")]
    Invalid(String),
    /// A number (or a length or count) outside its documented range.
    #[error("invalid configuration: {key} = {value}: must be {range}")]
    OutOfRange {
        /// The key, as `section.key`.
        key: &'static str,
        /// The value given.
        value: String,
        /// The range it must be in (`a..=b`).
        range: String,
    },
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
        use limits::*;
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_string()));
        let s = &self.server;
        check(
            "server.coap_bind (addresses)",
            s.coap_bind.len(),
            &BIND_ADDRESSES,
        )?;
        check(
            "server.coaps_bind (addresses)",
            s.coaps_bind.len(),
            &BIND_ADDRESSES,
        )?;
        check(
            "server.udp_recv_buffer_bytes",
            as_u64(s.udp_recv_buffer_bytes),
            &UDP_RECV_BUFFER_BYTES,
        )?;
        check(
            "server.store_cache_bytes",
            as_u64(s.store_cache_bytes),
            &STORE_CACHE_BYTES,
        )?;
        let r = &self.registration;
        check("registration.grace_secs", r.grace_secs, &GRACE_SECS)?;
        check(
            "registration.max_registrations",
            as_u64(r.max_registrations),
            &MAX_REGISTRATIONS,
        )?;
        let q = &self.queue;
        check(
            "queue.awake_window_secs",
            q.awake_window_secs,
            &AWAKE_WINDOW_SECS,
        )?;
        check(
            "queue.max_per_device",
            as_u64(q.max_per_device),
            &QUEUE_MAX_PER_DEVICE,
        )?;
        check(
            "queue.command_ttl_secs",
            q.command_ttl_secs,
            &COMMAND_TTL_SECS,
        )?;
        check(
            "queue.max_pending",
            as_u64(q.max_pending),
            &QUEUE_MAX_PENDING,
        )?;
        let c = &self.coap;
        check("coap.ack_timeout_ms", c.ack_timeout_ms, &ACK_TIMEOUT_MS)?;
        check(
            "coap.ack_random_factor",
            c.ack_random_factor,
            &ACK_RANDOM_FACTOR,
        )?;
        check("coap.max_retransmit", c.max_retransmit, &MAX_RETRANSMIT)?;
        check("coap.nstart", c.nstart, &NSTART)?;
        if !BLOCK_SIZE.contains(&c.block_size) || !c.block_size.is_power_of_two() {
            return Err(ConfigError::OutOfRange {
                key: "coap.block_size",
                value: c.block_size.to_string(),
                range: format!("a power of two in {}", range_text(&BLOCK_SIZE)),
            });
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
        use limits::*;
        let bad = |m: String| Err(ConfigError::Invalid(m));
        let m = &self.mqtt;
        if m.version != 5 && m.version != 3 {
            return bad(format!(
                "mqtt.version must be 5 (MQTT 5) or 3 (MQTT 3.1.1), not {}",
                m.version
            ));
        }
        check("mqtt.qos", m.qos, &MQTT_QOS)?;
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
        check(
            "mqtt.keep_alive_secs",
            m.keep_alive_secs,
            &MQTT_KEEP_ALIVE_SECS,
        )?;
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
        use limits::*;
        let bad = |m: String| Err(ConfigError::Invalid(m));
        let d = &self.dtls;
        check(
            "dtls.connection_id_length",
            d.connection_id_length,
            &CONNECTION_ID_LENGTH,
        )?;
        check(
            "dtls.retransmit_initial_ms",
            d.retransmit_initial_ms,
            &DTLS_RETRANSMIT_INITIAL_MS,
        )?;
        check_from(
            "dtls.retransmit_max_ms",
            d.retransmit_max_ms,
            ("dtls.retransmit_initial_ms", d.retransmit_initial_ms),
            DTLS_RETRANSMIT_MAX_MS_CAP,
        )?;
        check(
            "dtls.max_handshakes",
            as_u64(d.max_handshakes),
            &MAX_HANDSHAKES,
        )?;
        check(
            "dtls.handshakes_per_source_per_sec",
            d.handshakes_per_source_per_sec,
            &HANDSHAKES_PER_SOURCE_PER_SEC,
        )?;
        check("dtls.max_sessions", as_u64(d.max_sessions), &MAX_SESSIONS)?;
        check(
            "dtls.session_save_interval_secs",
            d.session_save_interval_secs,
            &SESSION_SAVE_INTERVAL_SECS,
        )?;
        if d.cipher_suites.is_empty() {
            return bad("dtls.cipher_suites needs at least one suite".into());
        }
        for (i, s) in d.cipher_suites.iter().enumerate() {
            if d.cipher_suites
                .get(..i)
                .is_some_and(|seen| seen.contains(s))
            {
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

    /// The admin channel's Unix socket in `data_dir` (see [`crate::provisioning::admin`]).
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
            // 16..=1024 bytes (checked at load) are SZX 0..=6.
            block_szx: u8::try_from(self.coap.block_size.trailing_zeros().saturating_sub(4))
                .unwrap_or(6)
                .min(6),
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
            max_pending_commands: self.queue.max_pending,
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

    /// Every numeric key with its range as `config/server.toml` must show it.
    fn documented_ranges() -> Vec<(&'static str, &'static str, String)> {
        use limits::*;
        let r = |section, key, text: String| (section, key, text);
        vec![
            r("server", "coap_bind", range_text(&BIND_ADDRESSES)),
            r("server", "coaps_bind", range_text(&BIND_ADDRESSES)),
            r(
                "server",
                "udp_recv_buffer_bytes",
                range_text(&UDP_RECV_BUFFER_BYTES),
            ),
            r(
                "server",
                "store_cache_bytes",
                range_text(&STORE_CACHE_BYTES),
            ),
            r("registration", "grace_secs", range_text(&GRACE_SECS)),
            r(
                "registration",
                "max_registrations",
                range_text(&MAX_REGISTRATIONS),
            ),
            r("queue", "awake_window_secs", range_text(&AWAKE_WINDOW_SECS)),
            r("queue", "max_per_device", range_text(&QUEUE_MAX_PER_DEVICE)),
            r("queue", "command_ttl_secs", range_text(&COMMAND_TTL_SECS)),
            r("queue", "max_pending", range_text(&QUEUE_MAX_PENDING)),
            r("coap", "ack_timeout_ms", range_text(&ACK_TIMEOUT_MS)),
            r("coap", "ack_random_factor", range_text(&ACK_RANDOM_FACTOR)),
            r("coap", "max_retransmit", range_text(&MAX_RETRANSMIT)),
            r("coap", "nstart", range_text(&NSTART)),
            r("coap", "block_size", range_text(&BLOCK_SIZE)),
            r(
                "dtls",
                "connection_id_length",
                range_text(&CONNECTION_ID_LENGTH),
            ),
            r(
                "dtls",
                "retransmit_initial_ms",
                range_text(&DTLS_RETRANSMIT_INITIAL_MS),
            ),
            r(
                "dtls",
                "retransmit_max_ms",
                format!("retransmit_initial_ms..={DTLS_RETRANSMIT_MAX_MS_CAP}"),
            ),
            r("dtls", "max_handshakes", range_text(&MAX_HANDSHAKES)),
            r(
                "dtls",
                "handshakes_per_source_per_sec",
                range_text(&HANDSHAKES_PER_SOURCE_PER_SEC),
            ),
            r("dtls", "max_sessions", range_text(&MAX_SESSIONS)),
            r(
                "dtls",
                "session_save_interval_secs",
                range_text(&SESSION_SAVE_INTERVAL_SECS),
            ),
            r("mqtt", "qos", range_text(&MQTT_QOS)),
            r("mqtt", "client_id", range_text(&MQTT_CLIENT_ID_BYTES)),
            r("mqtt", "topic_prefix", range_text(&MQTT_TOPIC_PREFIX_BYTES)),
            r("mqtt", "username", range_text(&MQTT_CREDENTIAL_BYTES)),
            r("mqtt", "password", range_text(&MQTT_CREDENTIAL_BYTES)),
            r("mqtt", "keep_alive_secs", range_text(&MQTT_KEEP_ALIVE_SECS)),
            r(
                "mqtt",
                "session_expiry_secs",
                range_text(&MQTT_SESSION_EXPIRY_SECS),
            ),
            r("mqtt", "max_outbox", range_text(&MQTT_MAX_OUTBOX)),
            r(
                "mqtt",
                "max_command_bytes",
                range_text(&MQTT_MAX_COMMAND_BYTES),
            ),
            r(
                "mqtt",
                "reconnect_min_ms",
                range_text(&MQTT_RECONNECT_MIN_MS),
            ),
            r(
                "mqtt",
                "reconnect_max_ms",
                format!("reconnect_min_ms..={MQTT_RECONNECT_MAX_MS_CAP}"),
            ),
        ]
    }

    /// The comment lines right above `key` in `[section]` of the documented file.
    fn comment_above(text: &str, section: &str, key: &str) -> Option<String> {
        let lines: Vec<&str> = text.lines().collect();
        let header = format!("[{section}]");
        let start = lines.iter().position(|l| l.trim() == header)?;
        let at = lines
            .iter()
            .enumerate()
            .skip(start + 1)
            .take_while(|(_, l)| !l.starts_with('['))
            .find(|(_, l)| {
                l.split_once('=')
                    .is_some_and(|(k, _)| k.trim() == key && !l.starts_with('#'))
            })?
            .0;
        let mut comment: Vec<&str> = lines[..at]
            .iter()
            .rev()
            .take_while(|l| l.starts_with('#'))
            .copied()
            .collect();
        comment.reverse();
        Some(comment.join("\n"))
    }

    #[test]
    fn every_range_is_documented_beside_its_key() {
        for (section, key, range) in documented_ranges() {
            let comment = comment_above(DEFAULT_CONFIG, section, key)
                .unwrap_or_else(|| panic!("[{section}] {key} is not in config/server.toml"));
            assert!(
                comment.contains(&range),
                "[{section}] {key}: its comment does not give the range {range}:\n{comment}"
            );
        }
    }

    /// The error of a config with `key = value` in `[section]`.
    fn refused(section: &str, setting: &str) -> String {
        err(&format!("[{section}]\n{setting}\n"))
    }

    #[test]
    fn a_number_below_its_range_is_refused_with_the_key_and_the_range() {
        let e = refused("queue", "awake_window_secs = 0");
        assert!(
            e.contains("queue.awake_window_secs = 0: must be 1..=86400"),
            "{e}"
        );
        let e = refused("coap", "nstart = 0");
        assert!(e.contains("coap.nstart = 0: must be 1..=32"), "{e}");
        let e = refused("queue", "max_pending = 0");
        assert!(
            e.contains("queue.max_pending = 0: must be 1..=10000000"),
            "{e}"
        );
        let e = refused("mqtt", "max_command_bytes = 100");
        assert!(
            e.contains("mqtt.max_command_bytes = 100: must be 256..=1048576"),
            "{e}"
        );
        let e = refused("server", "store_cache_bytes = 1000");
        assert!(
            e.contains("server.store_cache_bytes = 1000: must be 1048576..=17179869184"),
            "{e}"
        );
    }

    #[test]
    fn a_number_above_its_range_is_refused_with_the_key_and_the_range() {
        for (section, setting, says) in [
            (
                "registration",
                "grace_secs = 86401",
                "registration.grace_secs = 86401: must be 0..=86400",
            ),
            (
                "queue",
                "command_ttl_secs = 9223372036854775807",
                "queue.command_ttl_secs = 9223372036854775807: must be 1..=2592000",
            ),
            (
                "coap",
                "max_retransmit = 64",
                "coap.max_retransmit = 64: must be 0..=10",
            ),
            (
                "coap",
                "ack_timeout_ms = 600001",
                "coap.ack_timeout_ms = 600001: must be 100..=600000",
            ),
            (
                "dtls",
                "max_sessions = 10000001",
                "dtls.max_sessions = 10000001: must be 1..=10000000",
            ),
            (
                "dtls",
                "session_save_interval_secs = 86401",
                "dtls.session_save_interval_secs = 86401: must be 0..=86400",
            ),
            (
                "mqtt",
                "max_outbox = 10000001",
                "mqtt.max_outbox = 10000001: must be 1..=10000000",
            ),
            (
                "mqtt",
                "keep_alive_secs = 65536",
                "mqtt.keep_alive_secs = 65536: must be 5..=65535",
            ),
        ] {
            let e = refused(section, setting);
            assert!(e.contains(says), "{setting}: {e}");
        }
    }

    #[test]
    fn a_factor_that_is_not_a_number_in_range_is_refused() {
        for (value, shown) in [
            ("nan", "NaN"),
            ("inf", "inf"),
            ("0.5", "0.5"),
            ("4.5", "4.5"),
        ] {
            let e = refused("coap", &format!("ack_random_factor = {value}"));
            assert!(
                e.contains(&format!(
                    "coap.ack_random_factor = {shown}: must be 1.0..=4.0"
                )),
                "{value}: {e}"
            );
        }
    }

    #[test]
    fn a_bound_set_by_another_key_is_refused_naming_both() {
        let e = refused(
            "dtls",
            "retransmit_initial_ms = 5000\nretransmit_max_ms = 4000",
        );
        assert!(
            e.contains(
                "dtls.retransmit_max_ms = 4000: must be dtls.retransmit_initial_ms (5000)..=600000"
            ),
            "{e}"
        );
        let e = refused("mqtt", "reconnect_max_ms = 3600001");
        assert!(
            e.contains(
                "mqtt.reconnect_max_ms = 3600001: must be mqtt.reconnect_min_ms (500)..=3600000"
            ),
            "{e}"
        );
    }

    #[test]
    fn lengths_and_counts_are_refused_with_the_key_and_the_range() {
        let e = refused("mqtt", &format!("topic_prefix = \"{}\"", "a".repeat(1025)));
        assert!(
            e.contains("mqtt.topic_prefix (length in bytes) = 1025: must be 1..=1024"),
            "{e}"
        );
        let e = refused(
            "mqtt",
            &format!("username = \"u\"\npassword = \"{}\"", "p".repeat(65_536)),
        );
        assert!(
            e.contains("mqtt.password (length in bytes) = 65536: must be 0..=65535"),
            "{e}"
        );
        assert!(!e.contains("ppp"), "the password itself is not shown: {e}");
        let many: Vec<String> = (0..65)
            .map(|i| format!("\"127.0.0.1:{}\"", 10_000 + i))
            .collect();
        let e = refused("server", &format!("coaps_bind = [{}]", many.join(", ")));
        assert!(
            e.contains("server.coaps_bind (addresses) = 65: must be 0..=64"),
            "{e}"
        );
        let e = refused("coap", "block_size = 2048");
        assert!(
            e.contains("coap.block_size = 2048: must be a power of two in 16..=1024"),
            "{e}"
        );
    }

    #[test]
    fn the_largest_values_allowed_compute_without_overflow() {
        use limits::*;
        let text = format!(
            "[registration]\ngrace_secs = {}\n[queue]\nawake_window_secs = {}\ncommand_ttl_secs = {}\n\
             [coap]\nack_timeout_ms = {}\nack_random_factor = {:?}\nmax_retransmit = {}\nnstart = {}\n\
             [dtls]\nretransmit_initial_ms = {}\nretransmit_max_ms = {}\nsession_save_interval_secs = {}\n\
             [mqtt]\nkeep_alive_secs = {}\nsession_expiry_secs = {}\nreconnect_min_ms = {}\nreconnect_max_ms = {}\n",
            GRACE_SECS.end(),
            AWAKE_WINDOW_SECS.end(),
            COMMAND_TTL_SECS.end(),
            ACK_TIMEOUT_MS.end(),
            ACK_RANDOM_FACTOR.end(),
            MAX_RETRANSMIT.end(),
            NSTART.end(),
            DTLS_RETRANSMIT_INITIAL_MS.end(),
            DTLS_RETRANSMIT_MAX_MS_CAP,
            SESSION_SAVE_INTERVAL_SECS.end(),
            MQTT_KEEP_ALIVE_SECS.end(),
            MQTT_SESSION_EXPIRY_SECS.end(),
            MQTT_RECONNECT_MIN_MS.end(),
            MQTT_RECONNECT_MAX_MS_CAP,
        );
        let c = Config::parse(&text).unwrap();
        let t = c.endpoint().transmission;
        // Far below the 100 years past which deadlines saturate.
        assert!(t.exchange_lifetime() < Duration::from_secs(60 * 24 * 3600));
        let core = c.core();
        let now = std::time::Instant::now();
        for d in [
            core.awake_window,
            core.default_command_ttl,
            core.registration_grace,
            t.max_transmit_wait(),
        ] {
            assert!(now.checked_add(d).is_some());
        }
        assert!(
            Duration::from_secs(*COMMAND_TTL_SECS.end())
                <= *crate::core::types::COMMAND_TTL_RANGE.end(),
            "the default ttl is one a command could ask for"
        );
        assert_eq!(c.session_save_interval(), Some(Duration::from_secs(86_400)));
    }
}
