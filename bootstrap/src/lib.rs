//! The LwM2M bootstrap server (OMA LwM2M TS 1.2 Core §6.1, Transport §6.1).
//!
//! Bootstrap provisioning arrives with its own issue; this crate holds the place in the
//! workspace so that the server, the simulator and the tests can depend on it as it grows.
#![warn(missing_docs)]
