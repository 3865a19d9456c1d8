//! `[http]`: the HTTP API (for now `GET /metrics`). The address is read as a `SocketAddr`
//! when the file is parsed, so the runtime only binds it.
use serde::Deserialize;
use std::net::SocketAddr;

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
