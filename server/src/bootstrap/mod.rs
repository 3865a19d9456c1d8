//! The bootstrap server beside the LwM2M server (OMA LwM2M TS 1.2 Core §5.2.3
//! client-initiated bootstrap, §6.1 the Bootstrap interface): the sans-IO core of the
//! `lwm2m-bootstrap` crate, run on the same secure stack as the LwM2M server's core, in the
//! same task.
//!
//! In process rather than a separate process: the credential a device is given at Finish
//! must be accepted by the LwM2M server at the device's very next handshake. Here it is
//! installed in the LwM2M server's credential index (and written, sealed, to the one store)
//! by the task that also runs that server's DTLS engine, before it reads the next datagram;
//! a standalone bootstrap server would have to hand keys to the LwM2M server over a channel
//! of its own, which is one more secret-carrying interface to secure, and the device would
//! race it.
//!
//! - `accounts`: what account each device gets; the per-device PSK is generated here.
//! - `role`: the bootstrap core as a [`Role`](crate::stack::Role) of the stack: its events
//!   counted, audited, and turned into [`DeviceEvent::Bootstrap`](crate::core::types::DeviceEvent).
mod accounts;
mod role;

pub use accounts::{installed_credential, ConfiguredAccounts};
pub use role::{audit_note, event_of, BootstrapRole};
