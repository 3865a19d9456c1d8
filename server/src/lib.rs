//! The LwM2M server as a library: the binary `lwm2m-server` only parses its configuration
//! and calls into here.
//!
//! # Layout
//! - [`core`]: the sans-IO server: registrations, command path, queue mode, observations.
//! - [`store`]: the one durable store (redb, group-committed).
//! - [`config`]: the configuration file, checked once at load into typed settings.
//! - [`runtime`]: the tokio shell: sockets, store, commands in, events out.
//! - [`provisioning`]: device credentials, their encryption at rest, the audit log, the DTLS
//!   engine's view of them, the admin channel and CSV import.
//! - [`bridge`]: the MQTT bridge (EMQX LwM2M gateway JSON).
//! - [`metrics`]: the server's counters and their Prometheus text.
//! - [`http`]: the HTTP API (`GET /metrics` for now).
#![warn(missing_docs, unreachable_pub)]

pub mod bridge;
pub mod config;
pub mod core;
pub mod http;
pub mod metrics;
pub mod provisioning;
mod restore;
pub mod runtime;
pub mod store;

pub use runtime::{start, Server, ServerHandle};
