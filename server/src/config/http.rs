//! `[http]`: the HTTP API (REST, server-sent events, the console, `GET /metrics`). The
//! address is read as a `SocketAddr` when the file is parsed, so the runtime only binds it.
use super::limits::{
    HTTP_EVENT_RETENTION, HTTP_MAX_CONNECTIONS, HTTP_MAX_EVENT_STREAMS, HTTP_REQUEST_RETENTION,
};
use super::{check, ConfigError};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

/// `[http]`: the HTTP API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSection {
    /// Serve the HTTP API.
    pub enabled: bool,
    /// TCP address to listen on (port 0: any free port).
    pub bind: SocketAddr,
    /// A file holding the bearer token every request but `GET /metrics` must carry; required
    /// when `bind` is not a loopback address.
    pub token_file: Option<PathBuf>,
    /// PEM certificate chain for HTTPS (with `tls_key`).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for HTTPS (with `tls_cert`).
    pub tls_key: Option<PathBuf>,
    /// Device events kept for `Last-Event-ID` resumption of the event stream.
    pub event_retention: usize,
    /// Event streams served at once.
    pub max_event_streams: usize,
    /// Connections served at once (event streams included).
    pub max_connections: usize,
    /// Results of commands answered `202` kept for `GET /api/requests/{id}`.
    pub request_retention: usize,
}

impl Default for HttpSection {
    fn default() -> Self {
        Self {
            enabled: true,
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            token_file: None,
            tls_cert: None,
            tls_key: None,
            event_retention: 10_000,
            max_event_streams: 64,
            max_connections: 256,
            request_retention: 10_000,
        }
    }
}

impl HttpSection {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        check(
            "http.event_retention",
            self.event_retention,
            &HTTP_EVENT_RETENTION,
        )?;
        check(
            "http.max_event_streams",
            self.max_event_streams,
            &HTTP_MAX_EVENT_STREAMS,
        )?;
        check(
            "http.max_connections",
            self.max_connections,
            &HTTP_MAX_CONNECTIONS,
        )?;
        check(
            "http.request_retention",
            self.request_retention,
            &HTTP_REQUEST_RETENTION,
        )?;
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(ConfigError::Invalid(
                "http.tls_cert and http.tls_key go together: set both for HTTPS, or neither".into(),
            ));
        }
        // Off loopback, anyone who reaches the port could manage every device: the API only
        // listens there behind a token.
        if self.enabled && !self.bind.ip().is_loopback() && self.token_file.is_none() {
            return Err(ConfigError::Invalid(format!(
                "http.bind = \"{}\" is not a loopback address: set http.token_file, or anyone who \
                 reaches the port could manage every device",
                self.bind
            )));
        }
        Ok(())
    }
}
