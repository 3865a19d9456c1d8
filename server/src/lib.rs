//! The LwM2M server as a library: the binary `lwm2m-server` only parses its configuration
//! and calls into here.
//!
//! # Layout
//! - [`core`]: the sans-IO server: registrations, command path, queue mode, observations.
//! - [`store`]: the one durable store (redb, group-committed).
//! - [`config`]: the configuration file.
//! - [`stack`]: the sans-IO protocol stack: DTLS in front of the core, session saves, the
//!   audit policy, and the hold of acknowledgements until the outbox is durable.
//! - `runtime`: the tokio driver of the stack: sockets, store, commands in, events out.
//! - [`handle`]: [`ServerHandle`], how the rest of the world talks to a running server.
//! - [`startup`]: [`start`]: from the configuration to a running server.
//! - [`credentials`]: device credentials (PSK, raw public key, certificate) and their index.
//! - [`secrets`]: encryption at rest of the secrets in the store.
//! - [`audit`]: the security audit log.
//! - [`bridge`]: the MQTT bridge (EMQX LwM2M gateway JSON).
//! - [`security`]: the DTLS engine's view of credentials, the server's key, its settings.
//! - [`admin`]: the admin socket through which the CLI reaches a running server.
//! - [`import`]: bulk import of PSK credentials from CSV (`lwm2m-server device import`).
//! - [`metrics`]: the server's counters and their Prometheus text.
//! - [`http`]: the HTTP API (`GET /metrics` for now).
#![warn(missing_docs, unreachable_pub)]

#[cfg(unix)]
pub mod admin;
pub mod audit;
pub mod bridge;
pub mod config;
pub mod core;
pub mod credentials;
pub mod handle;
pub mod http;
#[cfg(unix)]
pub mod import;
pub mod metrics;
mod restore;
mod runtime;
pub mod secrets;
pub mod security;
pub mod stack;
pub mod startup;
pub mod store;

pub use handle::{Server, ServerHandle, ServerStopped};
pub use startup::start;
