//! The server's configuration file (TOML). Every key is optional; the embedded default is
//! `config/server.toml` itself, so the documented file and the defaults cannot drift apart.
//! Unknown keys are rejected with the key's name, so a misspelt setting fails loudly.
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
    /// `[log]`
    #[serde(default)]
    pub log: LogSection,
}

/// `[server]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    /// UDP addresses for CoAP (NoSec).
    pub coap_bind: Vec<SocketAddr>,
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
        if self.server.coap_bind.is_empty() {
            return bad("server.coap_bind needs at least one address");
        }
        Ok(())
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
