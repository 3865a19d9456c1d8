//! `[security]` (who may talk to the server, the server's own certificate, the key that
//! encrypts device secrets at rest) and `[dtls]` (the DTLS engine's limits, timers and cipher
//! suites: RFC 6347, RFC 9146, OMA LwM2M TS 1.2 Transport §5.2). Plain typed values: the
//! runtime maps them onto the DTLS engine.
use super::limits::{
    CONNECTION_ID_LENGTH, DTLS_RETRANSMIT_INITIAL_MS, DTLS_RETRANSMIT_MAX_MS_CAP,
    HANDSHAKES_PER_SOURCE_PER_SEC, MAX_HANDSHAKES, MAX_SESSIONS, SESSION_SAVE_INTERVAL_SECS,
};
use super::{as_u64, check, check_from, ConfigError};
use serde::Deserialize;
use std::path::PathBuf;

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
    /// Where a certificate that chains to `trusted_ca` (and is not pinned) names its endpoint.
    pub certificate_endpoint: CertificateEndpoint,
}

/// `security.certificate_endpoint`: which name of a device certificate issued by a trusted CA
/// is its endpoint name, the only one it may register (or bootstrap) as.
///
/// The default, `cn-or-san`, takes the subject's Common Name and, for a certificate without
/// one, the first URI or DNS name of its Subject Alternative Name: fleets commonly put the
/// endpoint in the CN (what Leshan's X.509 mode expects), while newer profiles leave the
/// subject empty and carry the identity in the SAN only (RFC 5280 §4.2.1.6), and a
/// certificate has at most one of the two in practice. `cn` or `san` restrict it to one of
/// them, for a CA whose other field holds something that is not the endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CertificateEndpoint {
    /// The subject's Common Name only.
    Cn,
    /// The first URI or DNS name of the Subject Alternative Name only.
    San,
    /// The Common Name, else the first SAN URI or DNS name.
    #[default]
    CnOrSan,
}

impl CertificateEndpoint {
    /// The name in the configuration.
    pub const fn as_str(self) -> &'static str {
        match self {
            CertificateEndpoint::Cn => "cn",
            CertificateEndpoint::San => "san",
            CertificateEndpoint::CnOrSan => "cn-or-san",
        }
    }
}

impl Default for SecuritySection {
    fn default() -> Self {
        Self {
            allow_nosec: true,
            secrets_key_file: PathBuf::new(),
            certificate: PathBuf::new(),
            private_key: PathBuf::new(),
            trusted_ca: PathBuf::new(),
            certificate_endpoint: CertificateEndpoint::default(),
        }
    }
}

impl SecuritySection {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let empty = |p: &PathBuf| p.as_os_str().is_empty();
        if empty(&self.certificate) != empty(&self.private_key) {
            return Err(ConfigError::Invalid(
                "security.certificate and security.private_key must be set together (or both left empty for a generated self-signed certificate)".into(),
            ));
        }
        Ok(())
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
    /// 0..=16 ([`super::limits::CONNECTION_ID_LENGTH`]).
    pub connection_id_length: u8,
    /// First handshake flight retransmission timeout, in milliseconds (RFC 6347 §4.2.4.1);
    /// 100..=60000 ([`super::limits::DTLS_RETRANSMIT_INITIAL_MS`]).
    pub retransmit_initial_ms: u64,
    /// Upper bound of the doubling retransmission timeout, in milliseconds; from
    /// `retransmit_initial_ms` to 600000 ([`super::limits::DTLS_RETRANSMIT_MAX_MS_CAP`]).
    pub retransmit_max_ms: u64,
    /// Handshakes in progress at once, over all peers; 1..=1000000
    /// ([`super::limits::MAX_HANDSHAKES`]).
    pub max_handshakes: usize,
    /// New handshakes accepted per source IP address per second; 1..=100000
    /// ([`super::limits::HANDSHAKES_PER_SOURCE_PER_SEC`]).
    pub handshakes_per_source_per_sec: u32,
    /// Established sessions held at most; 1..=10000000 ([`super::limits::MAX_SESSIONS`]).
    pub max_sessions: usize,
    /// Seconds between saves of the established sessions (0: only at shutdown); 0..=86400
    /// ([`super::limits::SESSION_SAVE_INTERVAL_SECS`]).
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

impl DtlsSection {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        check(
            "dtls.connection_id_length",
            self.connection_id_length,
            &CONNECTION_ID_LENGTH,
        )?;
        check(
            "dtls.retransmit_initial_ms",
            self.retransmit_initial_ms,
            &DTLS_RETRANSMIT_INITIAL_MS,
        )?;
        check_from(
            "dtls.retransmit_max_ms",
            self.retransmit_max_ms,
            ("dtls.retransmit_initial_ms", self.retransmit_initial_ms),
            DTLS_RETRANSMIT_MAX_MS_CAP,
        )?;
        check(
            "dtls.max_handshakes",
            as_u64(self.max_handshakes),
            &MAX_HANDSHAKES,
        )?;
        check(
            "dtls.handshakes_per_source_per_sec",
            self.handshakes_per_source_per_sec,
            &HANDSHAKES_PER_SOURCE_PER_SEC,
        )?;
        check(
            "dtls.max_sessions",
            as_u64(self.max_sessions),
            &MAX_SESSIONS,
        )?;
        check(
            "dtls.session_save_interval_secs",
            self.session_save_interval_secs,
            &SESSION_SAVE_INTERVAL_SECS,
        )?;
        if self.cipher_suites.is_empty() {
            return bad("dtls.cipher_suites needs at least one suite".into());
        }
        for (i, s) in self.cipher_suites.iter().enumerate() {
            if self
                .cipher_suites
                .get(..i)
                .is_some_and(|seen| seen.contains(s))
            {
                return bad(format!("dtls.cipher_suites lists {} twice", s.name()));
            }
        }
        Ok(())
    }
}
