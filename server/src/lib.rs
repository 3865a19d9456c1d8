//! The LwM2M server as a library: the binary `lwm2m-server` only parses its configuration
//! and calls into here.
//!
//! # Layout
//! - [`core`]: the sans-IO server: registrations, command path, queue mode, observations.
//! - [`store`]: the one durable store (redb, group-committed).
//! - [`config`]: the configuration file.
//! - [`runtime`]: the tokio shell: sockets, store, commands in, events out.
#![warn(missing_docs, unreachable_pub)]

pub mod config;
pub mod core;
pub mod runtime;
pub mod store;

pub use runtime::{start, Server, ServerHandle};
