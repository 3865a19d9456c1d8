//! Provisioning: which devices may connect and with what, kept in the store, and the ways an
//! operator changes it.
//!
//! - [`credentials`]: device and bootstrap-server credentials (PSK, raw public key,
//!   certificate), their checks, their store records, the deny list, and the in-memory index
//!   the DTLS handshake looks them up in.
//! - [`pki`]: the endpoint name a certificate from a trusted CA carries (the factory PKI).
//! - [`secrets`]: encryption at rest of the secrets in the store (the PSKs).
//! - [`security`]: the DTLS engine's view of the credentials, the server's own key and
//!   certificate, and the engine's settings.
//! - [`audit`]: the security audit log (who was let in or turned away, what changed).
//! - [`admin`]: the admin channel through which the CLI reaches a running server, and the
//!   credential operations it and the offline CLI apply to the store.
//! - [`import`]: bulk import of PSK credentials from CSV (`lwm2m-server device import`).
#[cfg(unix)]
pub mod admin;
pub mod audit;
pub mod credentials;
#[cfg(unix)]
pub mod import;
pub mod pki;
pub mod secrets;
pub mod security;
