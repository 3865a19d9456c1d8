//! `[bootstrap]`: the bootstrap server that runs beside the LwM2M server (OMA LwM2M TS 1.2
//! Core §5.2.3 client-initiated bootstrap, §6.1), and the LwM2M server account it writes to
//! devices (Core Appendix E.1 Security, E.2 Server).
use super::limits::{
    BIND_ADDRESSES, BOOTSTRAP_LIFETIME, BOOTSTRAP_MAX_SEQUENCES, BOOTSTRAP_SEQUENCE_TIMEOUT_SECS,
    SHORT_SERVER_ID,
};
use super::{as_u64, check, ConfigError};
use serde::Deserialize;
use std::net::SocketAddr;

/// How a bootstrapped device authenticates to the LwM2M server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerSecurity {
    /// A PSK identity and key generated for the device at each bootstrap.
    Psk,
    /// The raw public key the device bootstrapped with is bound to it; the server's is
    /// written.
    Rpk,
    /// The certificate the device bootstrapped with is bound to it; the server's is written.
    X509,
    /// No security (only useful on a private network, with `security.allow_nosec`).
    Nosec,
}

impl ServerSecurity {
    /// The name in the configuration.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Psk => "psk",
            Self::Rpk => "rpk",
            Self::X509 => "x509",
            Self::Nosec => "nosec",
        }
    }
}

/// `[bootstrap]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BootstrapSection {
    /// Serve bootstrap.
    pub enabled: bool,
    /// UDP addresses for bootstrap over plain CoAP (served only with `security.allow_nosec`).
    pub coap_bind: Vec<SocketAddr>,
    /// UDP addresses for bootstrap over DTLS.
    pub coaps_bind: Vec<SocketAddr>,
    /// The LwM2M server URI written to devices.
    pub server_uri: String,
    /// The registration lifetime written to devices, in seconds.
    pub lifetime: u64,
    /// The binding written to devices (`U`, `UQ`, `N`, `T`, `S`, combinations).
    pub binding: String,
    /// The Short Server ID of the LwM2M server account written.
    pub short_server_id: u64,
    /// How devices authenticate to the LwM2M server afterwards.
    pub server_security: ServerSecurity,
    /// Seconds one bootstrap may take, from Bootstrap-Request to Finish.
    pub sequence_timeout_secs: u64,
    /// Bootstraps in progress at once.
    pub max_sequences: usize,
}

impl Default for BootstrapSection {
    fn default() -> Self {
        Self {
            enabled: true,
            coap_bind: vec![
                SocketAddr::from(([127, 0, 0, 1], 5783)),
                SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 5783)),
            ],
            coaps_bind: vec![
                SocketAddr::from(([127, 0, 0, 1], 5784)),
                SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 5784)),
            ],
            server_uri: "coaps://127.0.0.1:5684".to_string(),
            lifetime: 300,
            binding: "U".to_string(),
            short_server_id: 1,
            server_security: ServerSecurity::Psk,
            sequence_timeout_secs: 120,
            max_sequences: 10_000,
        }
    }
}

impl BootstrapSection {
    pub(super) fn validate(&self, allow_nosec: bool) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        check("bootstrap.coap_bind", self.coap_bind.len(), &BIND_ADDRESSES)?;
        check(
            "bootstrap.coaps_bind",
            self.coaps_bind.len(),
            &BIND_ADDRESSES,
        )?;
        check("bootstrap.lifetime", self.lifetime, &BOOTSTRAP_LIFETIME)?;
        check(
            "bootstrap.short_server_id",
            self.short_server_id,
            &SHORT_SERVER_ID,
        )?;
        check(
            "bootstrap.sequence_timeout_secs",
            self.sequence_timeout_secs,
            &BOOTSTRAP_SEQUENCE_TIMEOUT_SECS,
        )?;
        check(
            "bootstrap.max_sequences",
            as_u64(self.max_sequences),
            &BOOTSTRAP_MAX_SEQUENCES,
        )?;
        if !self.enabled {
            return Ok(());
        }
        let scheme = self.server_uri.split("://").next().unwrap_or_default();
        let secure = match scheme {
            "coaps" => true,
            "coap" => false,
            _ => {
                return bad(format!(
                    "bootstrap.server_uri {:?} must start with coap:// or coaps://",
                    self.server_uri
                ))
            }
        };
        if secure == (self.server_security == ServerSecurity::Nosec) {
            return bad(format!(
                "bootstrap.server_uri {:?} does not go with server_security = {:?}: coaps:// needs psk, rpk or x509, coap:// needs nosec",
                self.server_uri,
                self.server_security.as_str()
            ));
        }
        if self.server_security == ServerSecurity::Nosec && !allow_nosec {
            return bad(
                "bootstrap.server_security = \"nosec\" needs security.allow_nosec = true".into(),
            );
        }
        if self.binding.is_empty()
            || !self
                .binding
                .chars()
                .all(|c| matches!(c, 'U' | 'Q' | 'N' | 'T' | 'S'))
        {
            return bad(format!(
                "bootstrap.binding {:?} must be made of U, Q, N, T and S (Core E.2)",
                self.binding
            ));
        }
        if self.coaps_bind.is_empty() && (!allow_nosec || self.coap_bind.is_empty()) {
            return bad("bootstrap would listen nowhere: set bootstrap.coaps_bind, or bootstrap.coap_bind with security.allow_nosec = true (or bootstrap.enabled = false)".into());
        }
        Ok(())
    }
}
