//! The LwM2M server as a library: the binary `lwm2m-server` only parses its configuration
//! and calls into here.
//!
//! # Layout
//! - [`core`]: the sans-IO server: registrations, command path, queue mode, observations.
//! - [`store`]: the one durable store (redb, group-committed).
#![warn(missing_docs, unreachable_pub)]

pub mod core;
pub mod store;
