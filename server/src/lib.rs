//! The LwM2M server as a library: the binary `lwm2m-server` only parses its configuration
//! and calls into here.
//!
//! # Layout
//! - [`core`]: the sans-IO server: registrations, command path, queue mode, observations.
//! - [`store`]: the one durable store (redb, group-committed).
//! - [`config`]: the configuration file, checked once at load into typed settings.
//! - [`stack`]: the sans-IO protocol stack: DTLS in front of the core, session saves, the
//!   audit policy, and the hold of acknowledgements until the outbox is durable.
//! - `runtime`: the tokio driver of the stack: sockets, store, commands in, events out.
//! - [`handle`]: [`ServerHandle`], how the rest of the world talks to a running server.
//! - [`startup`]: [`start`]: from the configuration to a running server.
//! - [`provisioning`]: device credentials, their encryption at rest, the audit log, the DTLS
//!   engine's view of them, the admin channel and CSV import.
//! - [`bootstrap`]: the bootstrap server beside the LwM2M server: the `lwm2m-bootstrap` core
//!   as a role of the stack, and the accounts it gives devices.
//! - [`bridge`]: the MQTT bridge (EMQX LwM2M gateway JSON).
//! - [`cluster`]: one node among several: datagrams routed to the node holding their DTLS
//!   session by the node byte of their Connection ID.
//! - [`firmware`]: firmware update (Object 5): the package store and the campaigns.
//! - [`pem`]: PEM certificate chains and keys the configuration names.
//! - [`metrics`]: the server's counters and their Prometheus text.
//! - [`http`]: the HTTP API: REST (devices, device management, provisioning, firmware), the
//!   event stream, the console, `/metrics`.
#![warn(missing_docs, unreachable_pub)]

pub mod bootstrap;
pub mod bridge;
pub mod cluster;
pub mod config;
pub mod core;
pub mod firmware;
pub mod handle;
pub mod http;
pub mod metrics;
pub mod pem;
pub mod provisioning;
mod restore;
mod runtime;
pub mod stack;
pub mod startup;
pub mod store;

pub use handle::{Server, ServerHandle, ServerStopped};
pub use startup::start;
