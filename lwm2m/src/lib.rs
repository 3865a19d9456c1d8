//! The LwM2M protocol core (OMA LwM2M TS 1.2 Core and Transport): CoAP messaging and
//! exchanges, the LwM2M object model, content formats and operations, and a sans-IO client.
//!
//! Everything outside [`net`] is **sans-IO and deterministic**: no sockets, no
//! `Instant::now()`, no operating-system randomness. State machines take datagrams, commands
//! and the current time as input and hand back datagrams to send, events, and the next
//! deadline ([`coap::Endpoint`] follows the shape of quinn-proto). That is what lets the
//! tests drive loss, duplication, reordering and sleepy devices through hours of virtual time
//! in milliseconds, and what keeps the per-peer memory small.
//!
//! # Layout
//! - [`coap`]: CoAP messages on coap-lite's `Packet` codec, the exchange layer (RFC 7252),
//!   block-wise transfers (RFC 7959), Observe (RFC 7641) and CoRE link format (RFC 6690).
//! - [`model`]: paths, values, the value tree and object definitions (TS Core §7).
//! - [`attributes`]: the notification attributes servers attach to paths (TS Core §5.1.2).
//! - [`content`]: the LwM2M content formats (TS Core §7.4, Transport §7).
//! - [`ops`]: typed LwM2M operations and their CoAP form (TS Core §6, Transport §6), one
//!   module per interface: registration, dm (device management), reporting (Observe, Send).
//! - [`client`]: the LwM2M client role (registration, DM, observe, Send, queue mode) over
//!   one [`coap::Endpoint`], for the end-to-end tests and the device simulator.
//! - [`time`]: deadline and duration arithmetic that saturates instead of panicking.
//! - [`net`] (feature `net`, on by default): the only code that touches sockets, a tokio UDP
//!   driver around [`coap::Endpoint`].
#![warn(missing_docs, unreachable_pub)]

pub mod attributes;
pub mod client;
pub mod coap;
pub mod content;
pub mod model;
#[cfg(feature = "net")]
pub mod net;
pub mod ops;
mod reader;
pub mod time;

pub use coap_lite;
