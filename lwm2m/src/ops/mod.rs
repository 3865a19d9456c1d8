//! Typed LwM2M operations and their CoAP form (OMA LwM2M TS 1.2 Core §6, Transport §6).
//!
//! The server and the client role share these types, so what one builds the other parses.
//! One file per LwM2M interface:
//!
//! | interface | Core | file |
//! | --- | --- | --- |
//! | Bootstrap: Bootstrap-Request, -Pack-Request, -Discover, -Read, -Write, -Delete, -Finish | §6.1 | [`bootstrap`] |
//! | Client Registration: Register, Update, De-register | §6.2 | [`registration`] |
//! | Device Management and Service Enablement: Read, Discover, Write, Write-Attributes, Execute, Create, Delete, Read-Composite, Write-Composite | §6.3 | [`dm`] |
//! | Information Reporting: Observe, Observe-Composite, Cancel Observation, Notify, Send | §6.4 | [`reporting`] |
//!
//! [`Lwm2mError`] is every LwM2M error code as a typed error; `options` reads the CoAP
//! options all interfaces share. The notification attributes that Write-Attributes sets are
//! [`crate::attributes`].
pub mod bootstrap;
pub mod dm;
mod error;
mod options;
pub mod registration;
pub mod reporting;

pub use error::Lwm2mError;
