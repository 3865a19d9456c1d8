//! The credential model: what a device authenticates with over DTLS, the checks every
//! credential passes before it is stored (endpoint name, PSK identity and key lengths, P-256
//! raw public keys, certificate size), and reading keys and certificates from PEM files.
use super::json::{hex_bytes, unix_ms, utf8_bytes};
use crate::provisioning::secrets::{hex_decode, hex_encode, SecretsError};
use crate::store::{StoreError, Table};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, SubjectPublicKeyInfoDer};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::time::SystemTime;

/// Longest endpoint name: a CoAP Uri-Query option holds 255 bytes, `ep=` included.
pub const MAX_ENDPOINT_LEN: usize = 252;
/// Longest PSK identity accepted (RFC 4279 allows 65535; devices use short ones).
pub const MAX_PSK_IDENTITY_LEN: usize = 128;
/// Longest PSK (RFC 4279 §5.3 requires support up to 64 bytes).
pub const MAX_PSK_KEY_LEN: usize = 64;
/// Longest certificate accepted, in DER bytes.
pub const MAX_CERT_LEN: usize = 16 * 1024;
/// Characters a new endpoint name may not contain besides control characters: the name is one
/// topic level on the MQTT bridge (`{prefix}/{endpoint}/up/...`), which `/` would split and
/// where `+` and `#` are wildcards.
pub const ENDPOINT_FORBIDDEN_CHARS: [char; 3] = ['/', '+', '#'];

/// The DER header of a P-256 SubjectPublicKeyInfo with an uncompressed point: SEQUENCE {
/// AlgorithmIdentifier { id-ecPublicKey, prime256v1 }, BIT STRING (66 bytes, 0x04 first) }.
/// The ECDHE_ECDSA suites the server speaks are P-256 only, so any other key could never
/// complete a handshake; refusing it at `device add` says so at once.
const P256_SPKI_PREFIX: [u8; 27] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04,
];
const P256_SPKI_LEN: usize = 91;

/// Which server a set of credentials lets a device into: the LwM2M server (`device ...`) or
/// the bootstrap server (`bootstrap ...`, the factory bootstrap accounts of OMA LwM2M TS 1.2
/// Core §5.2.2). Each set has its own store table and index; an identity is unique within a
/// set, and the two sets are independent of each other.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum CredentialSet {
    /// The LwM2M server's device credentials (table `credentials`).
    #[default]
    Devices,
    /// The bootstrap server's credentials (table `bootstrap_credentials`).
    Bootstrap,
}

impl CredentialSet {
    /// The store table the set is kept in.
    pub const fn table(self) -> Table {
        match self {
            CredentialSet::Devices => Table::Credentials,
            CredentialSet::Bootstrap => Table::BootstrapCredentials,
        }
    }

    /// How messages name a credential of the set: `"device credential"` or `"bootstrap
    /// credential"`.
    pub const fn noun(self) -> &'static str {
        match self {
            CredentialSet::Devices => "credential",
            CredentialSet::Bootstrap => "bootstrap credential",
        }
    }
}

/// What a device authenticates with.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Secret {
    /// A pre-shared key and the identity the device sends for it.
    Psk {
        /// The PSK identity (UTF-8 in JSON).
        #[serde(with = "utf8_bytes")]
        identity: Vec<u8>,
        /// The key (hex in JSON).
        #[serde(with = "hex_bytes")]
        key: Vec<u8>,
    },
    /// A raw public key (RFC 7250): its SubjectPublicKeyInfo, DER.
    Rpk {
        /// DER of the SubjectPublicKeyInfo (hex in JSON).
        #[serde(with = "hex_bytes")]
        spki_der: Vec<u8>,
    },
    /// A pinned X.509 certificate, DER.
    X509 {
        /// DER of the certificate (hex in JSON).
        #[serde(with = "hex_bytes")]
        cert_der: Vec<u8>,
    },
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // Never the key itself: credentials end up in logs through `{:?}`.
            Secret::Psk { identity, key } => f
                .debug_struct("Psk")
                .field("identity", &String::from_utf8_lossy(identity))
                .field("key", &format_args!("<{} bytes redacted>", key.len()))
                .finish(),
            Secret::Rpk { spki_der } => f
                .debug_struct("Rpk")
                .field("sha256", &hex_encode(&fingerprint(spki_der)))
                .finish(),
            Secret::X509 { cert_der } => f
                .debug_struct("X509")
                .field("sha256", &hex_encode(&fingerprint(cert_der)))
                .finish(),
        }
    }
}

impl Secret {
    /// Which kind of credential this is.
    pub fn kind(&self) -> CredentialKind {
        match self {
            Secret::Psk { .. } => CredentialKind::Psk,
            Secret::Rpk { .. } => CredentialKind::Rpk,
            Secret::X509 { .. } => CredentialKind::X509,
        }
    }

    /// What identifies the credential without revealing it: the PSK identity, or the SHA-256
    /// fingerprint (hex) of the public key or certificate DER.
    pub fn public_id(&self) -> String {
        match self {
            Secret::Psk { identity, .. } => display_identity(identity),
            Secret::Rpk { spki_der } => hex_encode(&fingerprint(spki_der)),
            Secret::X509 { cert_der } => hex_encode(&fingerprint(cert_der)),
        }
    }
}

/// The kind of a credential, as shown in lists and JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CredentialKind {
    /// Pre-shared key.
    Psk,
    /// Raw public key.
    Rpk,
    /// X.509 certificate.
    X509,
}

impl CredentialKind {
    /// `"psk"`, `"rpk"` or `"x509"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            CredentialKind::Psk => "psk",
            CredentialKind::Rpk => "rpk",
            CredentialKind::X509 => "x509",
        }
    }

    pub(super) fn parse(s: &str) -> Option<Self> {
        match s {
            "psk" => Some(CredentialKind::Psk),
            "rpk" => Some(CredentialKind::Rpk),
            "x509" => Some(CredentialKind::X509),
            _ => None,
        }
    }
}

impl std::fmt::Display for CredentialKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One endpoint's credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceCredential {
    /// The endpoint name the device must register with.
    pub endpoint: String,
    /// What it authenticates with.
    pub secret: Secret,
    /// When it was added (kept to the millisecond).
    pub added_at: SystemTime,
}

impl DeviceCredential {
    /// What may be shown of it.
    pub fn summary(&self) -> CredentialSummary {
        CredentialSummary {
            endpoint: self.endpoint.clone(),
            kind: self.secret.kind(),
            id: self.secret.public_id(),
            added_at: self.added_at,
        }
    }
}

/// A credential to add, as sent over the admin channel: the time is set when it is applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewCredential {
    /// The endpoint name.
    pub endpoint: String,
    /// The secret, flattened: `{"endpoint":"E","kind":"psk","identity":"I","key":"hex"}`.
    #[serde(flatten)]
    pub secret: Secret,
}

/// A credential as listed: never the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialSummary {
    /// The endpoint name.
    pub endpoint: String,
    /// `psk`, `rpk` or `x509`.
    pub kind: CredentialKind,
    /// The PSK identity, or the SHA-256 fingerprint (hex) of the public key or certificate.
    pub id: String,
    /// When it was added (Unix milliseconds in JSON).
    #[serde(with = "unix_ms")]
    pub added_at: SystemTime,
}

/// Why a credential was refused or could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialError {
    /// A value that cannot be a credential (bad endpoint name, key length, key type...).
    #[error("{0}")]
    Invalid(String),
    /// A PEM file could not be read or holds no object of the expected type.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The PSK identity, public key or certificate is already bound to another endpoint.
    #[error("{what} is already bound to endpoint {endpoint:?}; revoke it there first")]
    Conflict {
        /// What clashes, e.g. `PSK identity "dev-1"`.
        what: String,
        /// The endpoint it belongs to.
        endpoint: String,
    },
    /// A stored record cannot be read by this version.
    #[error("credential record of endpoint {endpoint:?} is unreadable: {reason}")]
    Corrupt {
        /// The record's key.
        endpoint: String,
        /// Why.
        reason: String,
    },
    /// A sealed PSK would not open (wrong secrets key).
    #[error("credential of endpoint {endpoint:?}: {source}")]
    Secrets {
        /// The record's endpoint.
        endpoint: String,
        /// The cause.
        source: SecretsError,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub(super) fn invalid(msg: impl Into<String>) -> CredentialError {
    CredentialError::Invalid(msg.into())
}

/// SHA-256 of a DER object: the index key of public keys and certificates.
pub fn fingerprint(der: &[u8]) -> [u8; 32] {
    Sha256::digest(der).into()
}

/// A PSK identity for display: as text if it is printable UTF-8, else `0x` and hex.
pub fn display_identity(identity: &[u8]) -> String {
    match std::str::from_utf8(identity) {
        Ok(s) if !s.chars().any(char::is_control) => s.to_string(),
        _ => format!("0x{}", hex_encode(identity)),
    }
}

/// Checks a new endpoint name: 1 to 252 bytes, no control characters (the store separates key
/// parts with NUL, and names go into logs), none of [`ENDPOINT_FORBIDDEN_CHARS`] (the name is
/// an MQTT topic level).
pub fn validate_endpoint(endpoint: &str) -> Result<(), CredentialError> {
    check_stored_endpoint(endpoint)?;
    if endpoint.contains(ENDPOINT_FORBIDDEN_CHARS) {
        return Err(invalid(
            "endpoint name must not contain '/', '+' or '#': it is one MQTT topic level",
        ));
    }
    Ok(())
}

/// What a stored endpoint name must be: 1 to 252 bytes without control characters. Looser than
/// [`validate_endpoint`] by the MQTT characters, so a credential an earlier version accepted
/// still loads.
pub(super) fn check_stored_endpoint(endpoint: &str) -> Result<(), CredentialError> {
    if endpoint.is_empty() || endpoint.len() > MAX_ENDPOINT_LEN {
        return Err(invalid(format!(
            "endpoint name must be 1 to {MAX_ENDPOINT_LEN} bytes, not {}",
            endpoint.len()
        )));
    }
    if endpoint.chars().any(char::is_control) {
        return Err(invalid("endpoint name must not contain control characters"));
    }
    Ok(())
}

pub(super) fn validate_psk_key(key: &[u8]) -> Result<(), CredentialError> {
    if key.is_empty() || key.len() > MAX_PSK_KEY_LEN {
        return Err(invalid(format!(
            "PSK key must be 1 to {MAX_PSK_KEY_LEN} bytes, not {}",
            key.len()
        )));
    }
    Ok(())
}

/// Checks a raw public key: a P-256 SubjectPublicKeyInfo with an uncompressed point.
pub fn validate_public_key(spki_der: &[u8]) -> Result<(), CredentialError> {
    if spki_der.len() != P256_SPKI_LEN || !spki_der.starts_with(&P256_SPKI_PREFIX) {
        return Err(invalid(
            "public key must be an uncompressed P-256 (prime256v1) EC key: the server's ECDHE_ECDSA suites use P-256 only",
        ));
    }
    Ok(())
}

/// Checks every field of a credential.
pub fn validate(endpoint: &str, secret: &Secret) -> Result<(), CredentialError> {
    validate_endpoint(endpoint)?;
    validate_secret(secret)
}

/// Checks the secret's fields: PSK identity 1 to 128 bytes and key 1 to 64 bytes, a P-256 raw
/// public key, a DER certificate of at most 16 KiB.
pub(super) fn validate_secret(secret: &Secret) -> Result<(), CredentialError> {
    match secret {
        Secret::Psk { identity, key } => {
            if identity.is_empty() || identity.len() > MAX_PSK_IDENTITY_LEN {
                return Err(invalid(format!(
                    "PSK identity must be 1 to {MAX_PSK_IDENTITY_LEN} bytes, not {}",
                    identity.len()
                )));
            }
            validate_psk_key(key)
        }
        Secret::Rpk { spki_der } => validate_public_key(spki_der),
        Secret::X509 { cert_der } => {
            // A DER certificate is a SEQUENCE; the chain and key checks belong to the handshake.
            if cert_der.first() != Some(&0x30) || cert_der.len() > MAX_CERT_LEN {
                return Err(invalid(format!(
                    "certificate must be DER (a SEQUENCE) of at most {MAX_CERT_LEN} bytes"
                )));
            }
            Ok(())
        }
    }
}

/// Parses a PSK given in hex (spaces around it ignored): 1 to 64 bytes, an even number of
/// hex digits.
pub fn parse_psk_key_hex(text: &str) -> Result<Vec<u8>, CredentialError> {
    let digits = text.trim();
    if digits.is_empty() {
        return Err(invalid("PSK key is empty"));
    }
    if !digits.len().is_multiple_of(2) {
        return Err(invalid(format!(
            "PSK key has an odd number of hex digits ({})",
            digits.len()
        )));
    }
    let key = hex_decode(digits).ok_or_else(|| invalid("PSK key must be hex digits only"))?;
    validate_psk_key(&key)?;
    Ok(key)
}

fn pem_error(path: &Path, e: rustls_pki_types::pem::Error, label: &str) -> CredentialError {
    let reason = match e {
        rustls_pki_types::pem::Error::NoItemsFound => {
            format!("no \"-----BEGIN {label}-----\" block found")
        }
        e => e.to_string(),
    };
    CredentialError::Pem {
        path: path.display().to_string(),
        reason,
    }
}

/// Reads a raw public key from a PEM `PUBLIC KEY` file (SubjectPublicKeyInfo) and checks it
/// is P-256.
pub fn read_public_key_pem(path: &Path) -> Result<Vec<u8>, CredentialError> {
    let der = SubjectPublicKeyInfoDer::from_pem_file(path)
        .map_err(|e| pem_error(path, e, "PUBLIC KEY"))?
        .to_vec();
    validate_public_key(&der).map_err(|e| CredentialError::Pem {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    Ok(der)
}

/// Reads a certificate from a PEM `CERTIFICATE` file (the first one, if it holds a chain).
pub fn read_certificate_pem(path: &Path) -> Result<Vec<u8>, CredentialError> {
    Ok(CertificateDer::from_pem_file(path)
        .map_err(|e| pem_error(path, e, "CERTIFICATE"))?
        .to_vec())
}
