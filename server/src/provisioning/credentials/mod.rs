//! Device credentials: the one secret or public key each endpoint authenticates with over
//! DTLS, kept in the store and indexed in memory for the handshake's lookups.
//!
//! Identity is the security boundary: a DTLS handshake finds the credential by PSK
//! identity, raw public key or certificate, and the endpoint bound to that credential is the
//! only name the device may register under. So one PSK identity, public key or certificate
//! belongs to at most one endpoint, and an endpoint that has a credential never registers
//! over NoSec.
//!
//! - `model`: [`Secret`], [`DeviceCredential`] and the checks every credential passes.
//! - `index`: [`Credentials`], the in-memory index the handshake looks credentials up in.
//! - `record`: the CBOR record in the store (table `credentials`), with the PSK sealed at
//!   rest.
//! - `json`: how credential fields look in JSON.
//! - `deny`: the deny list, endpoints refused whatever certificate they present (table
//!   `denied_endpoints`).
//!
//! Two sets of credentials are kept alike ([`CredentialSet`]): the LwM2M server's (table
//! `credentials`) and the bootstrap server's (table `bootstrap_credentials`), each in its own
//! [`Credentials`] index.
mod deny;
mod index;
pub(crate) mod json;
mod model;
pub(crate) mod record;
#[cfg(test)]
pub(crate) mod tests;

pub use index::Credentials;
pub use model::{
    display_identity, fingerprint, parse_psk_key_hex, read_certificate_pem, read_public_key_pem,
    validate, validate_endpoint, validate_public_key, CredentialError, CredentialKind,
    CredentialSet, CredentialSummary, DeviceCredential, NewCredential, Secret,
    ENDPOINT_FORBIDDEN_CHARS, MAX_CERT_LEN, MAX_ENDPOINT_LEN, MAX_PSK_IDENTITY_LEN,
    MAX_PSK_KEY_LEN,
};
