//! The server's configuration file (TOML). Every key is optional; the embedded default is
//! `config/server.toml` itself, so the documented file and the defaults cannot drift apart.
//! Unknown keys are rejected with the key's name, so a misspelt setting fails loudly.
//!
//! The file is checked once, when it is loaded ([`Config::parse`]): every number against its
//! documented range ([`limits`]), every combination of keys, and the `[mqtt]` section into
//! typed settings ([`MqttSettings`]). What runs afterwards takes the checked values and
//! checks nothing again. This module depends on no other part of the server but the core's
//! settings type: the runtime, the DTLS setup and the MQTT bridge read their settings here.
//!
//! - `server`: `[server]`, `[registration]`, `[log]`.
//! - `queue`: `[queue]`.
//! - `coap`: `[coap]`.
//! - `security`: `[security]`, `[dtls]`.
//! - `mqtt`: `[mqtt]`, read into [`MqttSettings`].
//! - `http`: `[http]`.
//! - `bootstrap`: `[bootstrap]`, the bootstrap server beside the LwM2M server.
//! - `firmware`: `[firmware]`, package serving and update campaigns.
//! - `cluster`: `[cluster]`, this node among several.
//! - [`limits`]: the range of every numeric key.
mod bootstrap;
mod cluster;
mod coap;
mod firmware;
mod http;
pub mod limits;
mod mqtt;
mod queue;
mod security;
mod server;
#[cfg(test)]
mod tests;

pub use bootstrap::{BootstrapSection, ServerSecurity};
pub use cluster::{redact_url, ClusterPeer, ClusterSection, MIN_CLUSTER_CID_LENGTH};
pub use coap::CoapSection;
pub use firmware::FirmwareSection;
pub use http::HttpSection;
pub use limits::MAX_CONNECTION_ID_LENGTH;
pub use mqtt::{
    parse_broker, BrokerAddress, ClientAuth, EmbeddedBroker, EmbeddedTls, MqttError, MqttLogin,
    MqttQos, MqttSection, MqttSettings, MqttTls, MqttVersion,
};
pub use queue::QueueSection;
pub use security::{CertificateEndpoint, CipherSuite, DtlsSection, SecuritySection};
pub use server::{LogSection, RegistrationSection, ServerSection};

use crate::core::CoreConfig;
use lwm2m::coap::EndpointConfig;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// The embedded default configuration.
pub const DEFAULT_CONFIG: &str = include_str!("../../../config/server.toml");

/// The whole configuration, checked.
#[derive(Debug, Clone)]
pub struct Config {
    /// `[server]`
    pub server: ServerSection,
    /// `[registration]`
    pub registration: RegistrationSection,
    /// `[queue]`
    pub queue: QueueSection,
    /// `[coap]`
    pub coap: CoapSection,
    /// `[security]`
    pub security: SecuritySection,
    /// `[dtls]`
    pub dtls: DtlsSection,
    /// `[mqtt]`, checked into typed settings.
    pub mqtt: MqttSettings,
    /// `[http]`
    pub http: HttpSection,
    /// `[bootstrap]`
    pub bootstrap: BootstrapSection,
    /// `[firmware]`
    pub firmware: FirmwareSection,
    /// `[cluster]`
    pub cluster: ClusterSection,
    /// `[log]`
    pub log: LogSection,
}

/// The file as written: every section optional.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    server: ServerSection,
    #[serde(default)]
    registration: RegistrationSection,
    #[serde(default)]
    queue: QueueSection,
    #[serde(default)]
    coap: CoapSection,
    #[serde(default)]
    security: SecuritySection,
    #[serde(default)]
    dtls: DtlsSection,
    #[serde(default)]
    mqtt: MqttSection,
    #[serde(default)]
    http: HttpSection,
    #[serde(default)]
    bootstrap: BootstrapSection,
    #[serde(default)]
    firmware: FirmwareSection,
    #[serde(default)]
    cluster: ClusterSection,
    #[serde(default)]
    log: LogSection,
}

/// `a..=b` as the error messages and `config/server.toml` show a range.
pub(super) fn range_text<T: std::fmt::Debug>(r: &std::ops::RangeInclusive<T>) -> String {
    format!("{:?}..={:?}", r.start(), r.end())
}

/// A size or count as `u64` for its range check (every `usize` fits on the platforms Rust
/// supports; saturating keeps a hypothetical wider one out of range instead of truncating).
pub(super) fn as_u64(v: usize) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}

/// Refuses `value` of `key` outside `range`, naming both.
pub(super) fn check<T: PartialOrd + std::fmt::Debug>(
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
pub(super) fn check_from(
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
    /// A bad `[mqtt]` broker address or TLS setting.
    #[error("invalid configuration: {0}")]
    Mqtt(#[from] MqttError),
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
        let f: ConfigFile = toml::from_str(text)?;
        f.server.validate()?;
        f.registration.validate()?;
        f.queue.validate()?;
        f.coap.validate()?;
        check_listeners(&f.server, &f.security)?;
        f.security.validate()?;
        f.dtls.validate()?;
        f.bootstrap.validate(f.security.allow_nosec)?;
        f.firmware.validate()?;
        f.http.validate()?;
        f.cluster.validate(&f.server, &f.dtls)?;
        if !f.cluster.store.is_empty() && f.bootstrap.enabled {
            return Err(ConfigError::Invalid(
                "[bootstrap] with cluster.store is not supported yet: the credentials a bootstrap gives are not shared between nodes; set bootstrap.enabled = false".into(),
            ));
        }
        let mqtt = MqttSettings::from_section(&f.mqtt)?;
        Ok(Config {
            server: f.server,
            registration: f.registration,
            queue: f.queue,
            coap: f.coap,
            security: f.security,
            dtls: f.dtls,
            mqtt,
            http: f.http,
            bootstrap: f.bootstrap,
            firmware: f.firmware,
            cluster: f.cluster,
            log: f.log,
        })
    }

    /// The embedded default.
    pub fn embedded() -> Result<Self, ConfigError> {
        Self::parse(DEFAULT_CONFIG)
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
        self.coap.endpoint()
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
            id_node: if self.cluster.enabled {
                self.cluster.node_id
            } else {
                0
            },
            ..CoreConfig::default()
        }
    }
}

/// Refuses a server that would listen nowhere, or on one port for both CoAP and DTLS.
fn check_listeners(server: &ServerSection, security: &SecuritySection) -> Result<(), ConfigError> {
    let bad = |m: &str| Err(ConfigError::Invalid(m.to_string()));
    if security.allow_nosec && server.coap_bind.is_empty() {
        return bad(
            "server.coap_bind needs at least one address while security.allow_nosec is true",
        );
    }
    if server.coaps_bind.is_empty() && (!security.allow_nosec || server.coap_bind.is_empty()) {
        return bad("the server would listen nowhere: set server.coaps_bind, or server.coap_bind with security.allow_nosec = true");
    }
    if security.allow_nosec {
        if let Some(a) = server
            .coap_bind
            .iter()
            // Port 0 (any free port, as tests use) cannot clash.
            .find(|a| a.port() != 0 && server.coaps_bind.contains(a))
        {
            return Err(ConfigError::Invalid(format!(
                "{a} is in both server.coap_bind and server.coaps_bind: CoAP and DTLS need separate ports"
            )));
        }
    }
    Ok(())
}
