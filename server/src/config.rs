//! The server's configuration file (TOML). Every key is optional; the embedded default is
//! `config/server.toml` itself, so the documented file and the defaults cannot drift apart.
//! Unknown keys are rejected with the key's name, so a misspelt setting fails loudly.
//!
//! The `[security]` and `[dtls]` sections are plain typed structs: the runtime maps them onto
//! the DTLS engine, so this module carries no dependency on it.
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

/// A DTLS 1.2 cipher suite, named in the configuration by its IANA name.
///
/// The variants mirror the DTLS engine's own enum; [`CipherSuite::id`] gives the IANA code
/// point, so the runtime maps one onto the other without a name table of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
pub enum CipherSuite {
    /// TLS_PSK_WITH_AES_128_CCM_8 (RFC 6655), the LwM2M mandatory PSK suite.
    #[serde(rename = "TLS_PSK_WITH_AES_128_CCM_8")]
    PskAes128Ccm8,
    /// TLS_PSK_WITH_AES_128_CBC_SHA256 (RFC 5487), for older stacks without CCM.
    #[serde(rename = "TLS_PSK_WITH_AES_128_CBC_SHA256")]
    PskAes128CbcSha256,
    /// TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8 (RFC 7251), the LwM2M mandatory RPK/X.509 suite.
    #[serde(rename = "TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8")]
    EcdheEcdsaAes128Ccm8,
    /// TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 (RFC 5289).
    #[serde(rename = "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256")]
    EcdheEcdsaAes128GcmSha256,
}

impl CipherSuite {
    /// Every suite, in the default order of preference.
    pub const ALL: [CipherSuite; 4] = [
        CipherSuite::PskAes128Ccm8,
        CipherSuite::PskAes128CbcSha256,
        CipherSuite::EcdheEcdsaAes128Ccm8,
        CipherSuite::EcdheEcdsaAes128GcmSha256,
    ];

    /// The IANA code point.
    pub const fn id(self) -> u16 {
        match self {
            CipherSuite::PskAes128Ccm8 => 0xC0A8,
            CipherSuite::PskAes128CbcSha256 => 0x00AE,
            CipherSuite::EcdheEcdsaAes128Ccm8 => 0xC0AE,
            CipherSuite::EcdheEcdsaAes128GcmSha256 => 0xC02B,
        }
    }

    /// The IANA name, as written in the configuration.
    pub const fn name(self) -> &'static str {
        match self {
            CipherSuite::PskAes128Ccm8 => "TLS_PSK_WITH_AES_128_CCM_8",
            CipherSuite::PskAes128CbcSha256 => "TLS_PSK_WITH_AES_128_CBC_SHA256",
            CipherSuite::EcdheEcdsaAes128Ccm8 => "TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8",
            CipherSuite::EcdheEcdsaAes128GcmSha256 => "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        }
    }

    /// Whether the suite authenticates with a pre-shared key (else ECDHE-ECDSA).
    pub const fn is_psk(self) -> bool {
        matches!(
            self,
            CipherSuite::PskAes128Ccm8 | CipherSuite::PskAes128CbcSha256
        )
    }
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
        self.validate_dtls()
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
