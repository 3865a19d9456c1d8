//! `[server]` (where the server listens and keeps its state), `[registration]` (how long and
//! how many registrations are kept, OMA LwM2M TS 1.2 Core §6.2) and `[log]`.
use super::limits::{
    BIND_ADDRESSES, GRACE_SECS, MAX_REGISTRATIONS, STORE_CACHE_BYTES, STORE_COMMIT_GATHER_MS,
    UDP_RECV_BUFFER_BYTES,
};
use super::{as_u64, check, ConfigError};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

/// `[server]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    /// UDP addresses for CoAP (NoSec); served only if `security.allow_nosec`. At most 64
    /// ([`super::limits::BIND_ADDRESSES`]): each is a socket.
    pub coap_bind: Vec<SocketAddr>,
    /// UDP addresses for CoAP over DTLS; at most 64 ([`super::limits::BIND_ADDRESSES`]).
    pub coaps_bind: Vec<SocketAddr>,
    /// Directory of the durable state.
    pub data_dir: PathBuf,
    /// Directory of extra DDF object definitions; empty for none.
    pub objects_dir: PathBuf,
    /// Receive buffer of each UDP socket, in bytes (0: the kernel's default); 0..=1073741824
    /// ([`super::limits::UDP_RECV_BUFFER_BYTES`]), what the kernel's `int` option holds.
    pub udp_recv_buffer_bytes: usize,
    /// Page cache of the store, in bytes; 1048576..=17179869184 (1 MiB to 16 GiB,
    /// [`super::limits::STORE_CACHE_BYTES`]).
    pub store_cache_bytes: usize,
    /// Under a stream of writes, milliseconds the store waits to gather more into one
    /// commit (one fsync); 0..=50 ([`super::limits::STORE_COMMIT_GATHER_MS`]).
    pub store_commit_gather_ms: u64,
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
            store_commit_gather_ms: 4,
        }
    }
}

impl ServerSection {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        check(
            "server.coap_bind (addresses)",
            self.coap_bind.len(),
            &BIND_ADDRESSES,
        )?;
        check(
            "server.coaps_bind (addresses)",
            self.coaps_bind.len(),
            &BIND_ADDRESSES,
        )?;
        check(
            "server.udp_recv_buffer_bytes",
            as_u64(self.udp_recv_buffer_bytes),
            &UDP_RECV_BUFFER_BYTES,
        )?;
        check(
            "server.store_cache_bytes",
            as_u64(self.store_cache_bytes),
            &STORE_CACHE_BYTES,
        )?;
        check(
            "server.store_commit_gather_ms",
            self.store_commit_gather_ms,
            &STORE_COMMIT_GATHER_MS,
        )
    }
}

/// `[registration]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrationSection {
    /// Seconds kept past the lifetime; 0..=86400 ([`super::limits::GRACE_SECS`]).
    pub grace_secs: u64,
    /// Registrations held at most; 1..=10000000 ([`super::limits::MAX_REGISTRATIONS`]), so the
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

impl RegistrationSection {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        check("registration.grace_secs", self.grace_secs, &GRACE_SECS)?;
        check(
            "registration.max_registrations",
            as_u64(self.max_registrations),
            &MAX_REGISTRATIONS,
        )
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
