//! A sans-IO DTLS 1.2 engine built for constrained fleets (RFC 6347, 5246, 7925): PSK, raw
//! public keys (RFC 7250) and X.509 certificates, Connection ID (RFC 9146), stateless
//! cookies, session resumption, Extended Master Secret (RFC 7627), and compact established
//! sessions that serialize so a server restart costs devices no new handshake.
//!
//! Like the CoAP core, it takes datagrams and a clock and gives datagrams, events and the
//! next deadline; it opens no socket and reads no clock. Cryptographic primitives come from
//! RustCrypto (`aes`, `ccm`, `aes-gcm`, `cbc`, `hmac`, `sha2`, `p256`) and certificate
//! chains are validated by `rustls-webpki`; nothing cryptographic is written here.
#![cfg_attr(not(test), warn(clippy::indexing_slicing))]

pub mod alert;
pub mod client;
pub mod codec;
pub mod crypto;
pub mod error;
pub mod handshake;
pub mod record;
pub mod replay;
pub mod suite;

pub use alert::{Alert, AlertDescription, AlertLevel};
pub use suite::CipherSuite;
pub mod config;
pub mod cookie;
mod flight;
pub mod pki;
pub mod server;
pub mod session;
mod time;

pub use error::{Failure, HandshakeError};
pub use time::WallClock;

pub use config::{
    ClientAuth, ClientConfig, PeerKey, PskEntry, ServerConfig, ServerCredentials, ServerTrust,
    Timers,
};
pub use record::Cid;
pub use server::{CloseReason, ConnId, Server, ServerEvent, ServerStats, ServerUsage};
pub use session::{Session, SessionError};
#[cfg(test)]
mod tests;
