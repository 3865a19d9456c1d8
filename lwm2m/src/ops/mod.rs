//! Typed LwM2M operations and their CoAP form (OMA LwM2M TS 1.2 Core §6, Transport §6).
//!
//! The server and the client role share these types, so what one builds the other parses.
//! - [`registration`]: Register, Update, De-register.
//! - [`dm`]: Device Management and Information Reporting: Read, Discover, Write,
//!   Write-Attributes, Execute, Create, Delete, the composites, Observe and Send.
//! - [`Lwm2mError`]: every LwM2M error code as a typed error.
pub mod dm;
mod error;
pub mod registration;

pub use error::Lwm2mError;
