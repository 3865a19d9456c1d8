//! The LwM2M server as a library: the binary `lwm2m-server` only parses its configuration
//! and calls into here.
//!
//! # Layout
//! - [`store`]: the one durable store (redb, group-committed).
#![warn(missing_docs, unreachable_pub)]

pub mod store;
