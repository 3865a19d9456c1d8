//! Device credentials: the one secret or public key each endpoint authenticates with over
//! DTLS, kept in the store and indexed in memory for the handshake's lookups.
//!
//! Identity is the security boundary : a DTLS handshake finds the credential by PSK
//! identity, raw public key or certificate, and the endpoint bound to that credential is the
//! only name the device may register under. So one PSK identity, public key or certificate
//! belongs to at most one endpoint, and an endpoint that has a credential never registers
//! over NoSec.
//!
//! Store layout: table `credentials`, key = endpoint name, value = a CBOR record with
//! numbered fields (as in `core::persist`). A PSK key is sealed with the [`SecretsKey`]
//! (AES-256-GCM, associated data `"psk\0" + endpoint`, so a sealed key moved onto another
//! record does not open); raw public keys and certificates are public and stored as DER.
//! The PSK identity is stored in clear: it travels in clear in every handshake anyway.
use crate::secrets::{hex_decode, hex_encode, SecretsError, SecretsKey};
use crate::store::{Store, StoreError, Table};
use minicbor::{Decode, Encode};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, SubjectPublicKeyInfoDer};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
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

    fn parse(s: &str) -> Option<Self> {
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

fn invalid(msg: impl Into<String>) -> CredentialError {
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
fn check_stored_endpoint(endpoint: &str) -> Result<(), CredentialError> {
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

fn validate_psk_key(key: &[u8]) -> Result<(), CredentialError> {
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
fn validate_secret(secret: &Secret) -> Result<(), CredentialError> {
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

/// The CBOR record in the store.
#[derive(Debug, Encode, Decode)]
pub(crate) struct CredentialRecord {
    #[n(0)]
    pub(crate) endpoint: String,
    /// `psk`, `rpk` or `x509`.
    #[n(1)]
    pub(crate) kind: String,
    /// The PSK identity; empty for the others.
    #[n(2)]
    #[cbor(with = "minicbor::bytes")]
    pub(crate) identity: Vec<u8>,
    /// The sealed PSK, the SubjectPublicKeyInfo DER or the certificate DER.
    #[n(3)]
    #[cbor(with = "minicbor::bytes")]
    pub(crate) data: Vec<u8>,
    #[n(4)]
    pub(crate) added_at_ms: u64,
}

/// Associated data of a sealed PSK: its purpose and its endpoint, so that it opens only as
/// this endpoint's PSK (not as another endpoint's, nor as some other sealed value).
fn psk_aad(endpoint: &str) -> Vec<u8> {
    let mut aad = b"psk\0".to_vec();
    aad.extend_from_slice(endpoint.as_bytes());
    aad
}

fn millis(t: SystemTime) -> u64 {
    lwm2m::time::unix_millis(t)
}

fn from_millis(ms: u64) -> SystemTime {
    lwm2m::time::from_unix_millis(ms)
}

fn encode_record(key: &SecretsKey, c: &DeviceCredential) -> Vec<u8> {
    let (identity, data) = match &c.secret {
        Secret::Psk { identity, key: psk } => {
            (identity.clone(), key.seal(&psk_aad(&c.endpoint), psk))
        }
        Secret::Rpk { spki_der } => (Vec::new(), spki_der.clone()),
        Secret::X509 { cert_der } => (Vec::new(), cert_der.clone()),
    };
    let rec = CredentialRecord {
        endpoint: c.endpoint.clone(),
        kind: c.secret.kind().as_str().to_string(),
        identity,
        data,
        added_at_ms: millis(c.added_at),
    };
    minicbor::to_vec(&rec).unwrap_or_default()
}

/// Reads a stored credential and checks every field's range as `device add` does (except the
/// MQTT characters of the name, see [`check_stored_endpoint`]). `added_at` is only shown,
/// never computed with, and any `u64` of milliseconds is a representable time, so it is
/// taken as it is.
fn decode_record(
    key: &SecretsKey,
    store_key: &[u8],
    bytes: &[u8],
) -> Result<DeviceCredential, CredentialError> {
    let name = crate::store::display_key(store_key);
    let corrupt = |reason: String| CredentialError::Corrupt {
        endpoint: name.clone(),
        reason,
    };
    let rec: CredentialRecord = minicbor::decode(bytes).map_err(|e| corrupt(e.to_string()))?;
    if rec.endpoint.as_bytes() != store_key {
        return Err(corrupt(format!(
            "stored under another key than its endpoint {:?}",
            rec.endpoint
        )));
    }
    check_stored_endpoint(&rec.endpoint).map_err(|e| corrupt(e.to_string()))?;
    let added_at = from_millis(rec.added_at_ms);
    let secret = match CredentialKind::parse(&rec.kind) {
        Some(CredentialKind::Psk) => Secret::Psk {
            key: key
                .open(&psk_aad(&rec.endpoint), &rec.data)
                .map_err(|source| CredentialError::Secrets {
                    endpoint: rec.endpoint.clone(),
                    source,
                })?,
            identity: rec.identity,
        },
        Some(CredentialKind::Rpk) => Secret::Rpk { spki_der: rec.data },
        Some(CredentialKind::X509) => Secret::X509 { cert_der: rec.data },
        None => return Err(corrupt(format!("unknown kind {:?}", rec.kind))),
    };
    validate_secret(&secret).map_err(|e| corrupt(e.to_string()))?;
    Ok(DeviceCredential {
        endpoint: rec.endpoint,
        secret,
        added_at,
    })
}

/// Every credential, indexed for the handshake: by endpoint, PSK identity, and SHA-256 of
/// the public key or certificate. Lookups are O(1); the store is written on every change.
#[derive(Debug, Default)]
pub struct Credentials {
    by_endpoint: HashMap<String, DeviceCredential>,
    by_psk_identity: HashMap<Vec<u8>, String>,
    by_public_key: HashMap<[u8; 32], String>,
    by_certificate: HashMap<[u8; 32], String>,
    /// Endpoints whose stored credential could not be loaded: they must still come over DTLS
    /// (skipping the record must not let anyone register over NoSec in their name), but no
    /// credential lets them in until one is added again.
    locked: HashSet<String>,
    /// Stored records skipped by [`load`](Self::load).
    unreadable: usize,
}

impl Credentials {
    /// An empty index (tests; a server with no store).
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads every credential from the store. A record that cannot be read or holds a value
    /// out of range is skipped, counted ([`unreadable`](Self::unreadable)) and logged, and its
    /// endpoint is locked ([`has_credential`](Self::has_credential) stays true, so it cannot
    /// register over NoSec, while no credential lets it in) until a credential is added or it
    /// is revoked; so are both endpoints of two records that claim one PSK identity, public
    /// key or certificate. Fails only if the store cannot be read, or if the secrets key opens
    /// none of the stored PSKs: the key file was replaced or lost, and going on would lock out
    /// every PSK device.
    pub fn load(store: &Store, key: &SecretsKey) -> Result<Self, CredentialError> {
        let mut creds = Self::new();
        let mut good = Vec::new();
        let mut opened = 0usize;
        let mut wrong_key = None;
        for (k, v) in store.scan(Table::Credentials, b"")? {
            match decode_record(key, &k, &v) {
                Ok(c) => {
                    opened += usize::from(c.secret.kind() == CredentialKind::Psk);
                    good.push(c);
                }
                Err(e) => {
                    creds.skip(&k, &e);
                    if matches!(
                        e,
                        CredentialError::Secrets {
                            source: SecretsError::WrongKey,
                            ..
                        }
                    ) {
                        wrong_key.get_or_insert(e);
                    }
                }
            }
        }
        if let (0, Some(e)) = (opened, wrong_key) {
            return Err(e);
        }
        let mut claims: HashMap<PublicKey<'_>, usize> = HashMap::new();
        for c in &good {
            *claims.entry(public_key_of(&c.secret)).or_default() += 1;
        }
        let shared: Vec<bool> = good
            .iter()
            .map(|c| {
                claims
                    .get(&public_key_of(&c.secret))
                    .is_some_and(|n| *n > 1)
            })
            .collect();
        drop(claims);
        for (c, shared) in good.into_iter().zip(shared) {
            if shared {
                let (what, _) = creds.binding(&c.secret);
                let e = invalid(format!("{what} is claimed by another endpoint too"));
                creds.skip(c.endpoint.as_bytes(), &e);
            } else {
                creds.index(c);
            }
        }
        Ok(creds)
    }

    /// Skips a stored record: counted, logged with its key, and its endpoint locked.
    fn skip(&mut self, store_key: &[u8], why: &CredentialError) {
        self.unreadable += 1;
        let key = crate::store::display_key(store_key);
        tracing::warn!(table = "credentials", %key, error = %why, "stored credential skipped: its endpoint is locked out until a credential is added again or it is revoked");
        if let Ok(endpoint) = std::str::from_utf8(store_key) {
            self.locked.insert(endpoint.to_string());
        }
    }

    /// Stored records [`load`](Self::load) skipped.
    pub fn unreadable(&self) -> usize {
        self.unreadable
    }

    /// Endpoints locked out because their stored credential was skipped, sorted.
    pub fn locked(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self.locked.iter().map(String::as_str).collect();
        out.sort_unstable();
        out
    }

    /// Credentials held.
    pub fn len(&self) -> usize {
        self.by_endpoint.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_endpoint.is_empty()
    }

    /// The endpoint and key bound to a PSK identity.
    pub fn psk(&self, identity: &[u8]) -> Option<(&str, &[u8])> {
        let endpoint = self.by_psk_identity.get(identity)?;
        match &self.by_endpoint.get(endpoint)?.secret {
            Secret::Psk { key, .. } => Some((endpoint.as_str(), key.as_slice())),
            _ => None,
        }
    }

    /// The endpoint bound to a raw public key (SubjectPublicKeyInfo DER).
    pub fn by_public_key(&self, spki_der: &[u8]) -> Option<&str> {
        self.by_public_key
            .get(&fingerprint(spki_der))
            .map(String::as_str)
    }

    /// The endpoint bound to a pinned certificate (DER).
    pub fn by_certificate(&self, cert_der: &[u8]) -> Option<&str> {
        self.by_certificate
            .get(&fingerprint(cert_der))
            .map(String::as_str)
    }

    /// An endpoint's credential.
    pub fn get(&self, endpoint: &str) -> Option<&DeviceCredential> {
        self.by_endpoint.get(endpoint)
    }

    /// Whether the endpoint has a credential, or had one the store could not give back (and
    /// so must not register over NoSec).
    pub fn has_credential(&self, endpoint: &str) -> bool {
        self.by_endpoint.contains_key(endpoint) || self.locked.contains(endpoint)
    }

    /// Adds or replaces (rotation) an endpoint's credential, in the store and the index.
    /// Refused if its PSK identity, public key or certificate belongs to another endpoint.
    /// The store write is durable after the next commit (await [`Store::flush`] to know).
    pub fn add(
        &mut self,
        store: &Store,
        key: &SecretsKey,
        mut cred: DeviceCredential,
    ) -> Result<(), CredentialError> {
        validate(&cred.endpoint, &cred.secret)?;
        if let Some((what, endpoint)) = self.conflict(&cred) {
            return Err(CredentialError::Conflict { what, endpoint });
        }
        // The store keeps milliseconds; keep the same here so a reload compares equal.
        cred.added_at = from_millis(millis(cred.added_at));
        store.put(
            Table::Credentials,
            cred.endpoint.as_bytes().to_vec(),
            encode_record(key, &cred),
        )?;
        self.unindex(&cred.endpoint);
        self.locked.remove(&cred.endpoint);
        self.index(cred);
        Ok(())
    }

    /// Checks credentials meant to be added together ([`add_batch`](Self::add_batch)): each
    /// valid, no endpoint and no PSK identity, public key or certificate twice in the batch,
    /// and none bound to an endpoint outside the batch (one inside it gets another credential
    /// from the same batch, so it lets go of its old one). Returns the refused entries by
    /// their index in `batch`, with why; empty if the whole batch can be added.
    pub fn check_batch(&self, batch: &[DeviceCredential]) -> Vec<(usize, CredentialError)> {
        use std::collections::hash_map::Entry;
        let endpoints: std::collections::HashSet<&str> =
            batch.iter().map(|c| c.endpoint.as_str()).collect();
        let mut seen_endpoints = HashMap::new();
        let mut seen_ids: HashMap<PublicKey<'_>, &DeviceCredential> = HashMap::new();
        let mut refused = Vec::new();
        for (i, c) in batch.iter().enumerate() {
            if let Err(e) = validate(&c.endpoint, &c.secret) {
                refused.push((i, e));
                continue;
            }
            if let Entry::Vacant(v) = seen_endpoints.entry(c.endpoint.as_str()) {
                v.insert(i);
            } else {
                refused.push((
                    i,
                    invalid(format!(
                        "endpoint {:?} is in the batch more than once",
                        c.endpoint
                    )),
                ));
                continue;
            }
            let (what, owner) = self.binding(&c.secret);
            match seen_ids.entry(public_key_of(&c.secret)) {
                Entry::Occupied(o) => {
                    let first = o.get();
                    refused.push((
                        i,
                        invalid(format!(
                            "{what} is also given to endpoint {:?} in the batch",
                            first.endpoint
                        )),
                    ));
                    continue;
                }
                Entry::Vacant(v) => {
                    v.insert(c);
                }
            }
            if let Some(owner) = owner {
                if *owner != c.endpoint && !endpoints.contains(owner.as_str()) {
                    refused.push((
                        i,
                        CredentialError::Conflict {
                            what,
                            endpoint: owner.clone(),
                        },
                    ));
                }
            }
        }
        refused
    }

    /// Adds or replaces (rotation) every credential of `batch`, in the store and the index,
    /// as one store transaction together with `also` (the audit entries that record them): a
    /// crash leaves all of it or none. Refused whole, with the first reason, if
    /// [`check_batch`](Self::check_batch) refuses any entry. Returns the credentials it
    /// replaced. Durable after the next commit.
    pub fn add_batch(
        &mut self,
        store: &Store,
        key: &SecretsKey,
        mut batch: Vec<DeviceCredential>,
        also: Vec<crate::store::Write>,
    ) -> Result<Vec<DeviceCredential>, CredentialError> {
        if let Some((_, e)) = self.check_batch(&batch).into_iter().next() {
            return Err(e);
        }
        let mut writes = Vec::with_capacity(batch.len() + also.len());
        for cred in &mut batch {
            // The store keeps milliseconds; keep the same here so a reload compares equal.
            cred.added_at = from_millis(millis(cred.added_at));
            writes.push((
                Table::Credentials,
                cred.endpoint.as_bytes().to_vec(),
                encode_record(key, cred),
            ));
        }
        writes.extend(also);
        store.put_batch(writes)?;
        // Every old binding goes before any new one is made: within a batch an identity may
        // move from one endpoint to another.
        let replaced: Vec<DeviceCredential> = batch
            .iter()
            .filter_map(|c| self.unindex(&c.endpoint))
            .collect();
        for cred in batch {
            self.locked.remove(&cred.endpoint);
            self.index(cred);
        }
        Ok(replaced)
    }

    /// Removes an endpoint's credential; `None` if it had none. A locked endpoint's unreadable
    /// record is removed too (and the endpoint unlocked), with `None` since there was no
    /// credential to give back.
    pub fn revoke(
        &mut self,
        store: &Store,
        endpoint: &str,
    ) -> Result<Option<DeviceCredential>, CredentialError> {
        if !self.has_credential(endpoint) {
            return Ok(None);
        }
        store.delete(Table::Credentials, endpoint.as_bytes().to_vec())?;
        self.locked.remove(endpoint);
        Ok(self.unindex(endpoint))
    }

    /// Every credential, without keys, sorted by endpoint.
    pub fn list(&self) -> Vec<CredentialSummary> {
        let mut out: Vec<_> = self
            .by_endpoint
            .values()
            .map(DeviceCredential::summary)
            .collect();
        out.sort_by(|a, b| a.endpoint.cmp(&b.endpoint));
        out
    }

    /// What of `cred` is already bound to another endpoint, and that endpoint.
    fn conflict(&self, cred: &DeviceCredential) -> Option<(String, String)> {
        let (what, owner) = self.binding(&cred.secret);
        owner
            .filter(|o| **o != cred.endpoint)
            .map(|o| (what, o.clone()))
    }

    /// What identifies `secret` (for messages), and the endpoint it is bound to, if any.
    fn binding(&self, secret: &Secret) -> (String, Option<&String>) {
        match secret {
            Secret::Psk { identity, .. } => (
                format!("PSK identity {:?}", display_identity(identity)),
                self.by_psk_identity.get(identity),
            ),
            Secret::Rpk { spki_der } => {
                let f = fingerprint(spki_der);
                (
                    format!("public key sha256:{}", hex_encode(&f)),
                    self.by_public_key.get(&f),
                )
            }
            Secret::X509 { cert_der } => {
                let f = fingerprint(cert_der);
                (
                    format!("certificate sha256:{}", hex_encode(&f)),
                    self.by_certificate.get(&f),
                )
            }
        }
    }

    fn index(&mut self, cred: DeviceCredential) {
        let endpoint = cred.endpoint.clone();
        match &cred.secret {
            Secret::Psk { identity, .. } => {
                self.by_psk_identity.insert(identity.clone(), endpoint);
            }
            Secret::Rpk { spki_der } => {
                self.by_public_key.insert(fingerprint(spki_der), endpoint);
            }
            Secret::X509 { cert_der } => {
                self.by_certificate.insert(fingerprint(cert_der), endpoint);
            }
        }
        self.by_endpoint.insert(cred.endpoint.clone(), cred);
    }

    fn unindex(&mut self, endpoint: &str) -> Option<DeviceCredential> {
        let old = self.by_endpoint.remove(endpoint)?;
        match &old.secret {
            Secret::Psk { identity, .. } => {
                self.by_psk_identity.remove(identity);
            }
            Secret::Rpk { spki_der } => {
                self.by_public_key.remove(&fingerprint(spki_der));
            }
            Secret::X509 { cert_der } => {
                self.by_certificate.remove(&fingerprint(cert_der));
            }
        }
        Some(old)
    }
}

/// What a handshake finds a credential by, as one key: two credentials with the same one
/// cannot both be bound.
#[derive(PartialEq, Eq, Hash)]
enum PublicKey<'a> {
    Psk(&'a [u8]),
    Rpk([u8; 32]),
    X509([u8; 32]),
}

fn public_key_of(secret: &Secret) -> PublicKey<'_> {
    match secret {
        Secret::Psk { identity, .. } => PublicKey::Psk(identity),
        Secret::Rpk { spki_der } => PublicKey::Rpk(fingerprint(spki_der)),
        Secret::X509 { cert_der } => PublicKey::X509(fingerprint(cert_der)),
    }
}

/// Serde for binary values as lower-case hex strings.
mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::secrets::hex_encode(v))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        crate::secrets::hex_decode(&text)
            .ok_or_else(|| serde::de::Error::custom("expected an even number of hex digits"))
    }
}

/// Serde for a PSK identity as a JSON string: identities are text in practice, and a binary
/// one refuses to serialize rather than being altered.
mod utf8_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        let text = std::str::from_utf8(v)
            .map_err(|_| serde::ser::Error::custom("PSK identity is not UTF-8"))?;
        s.serialize_str(text)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        Ok(String::deserialize(d)?.into_bytes())
    }
}

/// Serde for a [`SystemTime`] as Unix milliseconds.
pub(crate) mod unix_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::SystemTime;

    pub(crate) fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(super::millis(*t))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        Ok(super::from_millis(u64::deserialize(d)?))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::StoreConfig;
    use std::time::Duration;

    pub(crate) const RPK_PEM: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEZVJY6Z1EkUWjMhQNDtfMaLN6mJeD
zcOPvC+AKCh4P0Hm1breX/R3raOfE836BbH/SJ44qWsdxMh3uO9XQL33JA==
-----END PUBLIC KEY-----
";
    const RPK2_PEM: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEKH3bNsTo41fK0X4KOghhcJetFuJq
aAVvh7dnoMNNUxNti8jeesebk7GoicTDerGmP2i3WuQBIbKxa5A38H5JmQ==
-----END PUBLIC KEY-----
";
    const ED25519_PEM: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAzibYHC7UDkyegeQO/Rq2mQAcKGf4oVVEOjckM1Elo7I=
-----END PUBLIC KEY-----
";
    pub(crate) const CERT_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBfDCCASOgAwIBAgIUMyeiMfL3pL6F50G/tI0E8h0mrmAwCgYIKoZIzj0EAwIw
EzERMA8GA1UEAwwIZGV2LXg1MDkwIBcNMjYxMTI1MTU1MDQ4WhgPMjEyNjExMDEx
NTUwNDhaMBMxETAPBgNVBAMMCGRldi14NTA5MFkwEwYHKoZIzj0CAQYIKoZIzj0D
AQcDQgAEZVJY6Z1EkUWjMhQNDtfMaLN6mJeDzcOPvC+AKCh4P0Hm1breX/R3raOf
E836BbH/SJ44qWsdxMh3uO9XQL33JKNTMFEwHQYDVR0OBBYEFDOsR7ENKeXlzaUV
o9BwuFOVOwg1MB8GA1UdIwQYMBaAFDOsR7ENKeXlzaUVo9BwuFOVOwg1MA8GA1Ud
EwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDRwAwRAIgf6Efj0h0ofeVEDbLu91ue2Rx
AwC1vtXyOp28CzxOhhICIGLCr2dwJ54NDRDRq460WnlBEkq8mQGZaNtl73RxcGaw
-----END CERTIFICATE-----
";

    pub(crate) fn pem_file(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    pub(crate) fn psk(endpoint: &str, identity: &str, key: &[u8]) -> DeviceCredential {
        DeviceCredential {
            endpoint: endpoint.into(),
            secret: Secret::Psk {
                identity: identity.into(),
                key: key.to_vec(),
            },
            added_at: SystemTime::now(),
        }
    }

    #[tokio::test]
    async fn credentials_round_trip_through_the_store_with_the_psk_sealed() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("s.redb");
        let key = SecretsKey::generate().unwrap();
        let rpk = read_public_key_pem(&pem_file(dir.path(), "k.pem", RPK_PEM)).unwrap();
        let cert = read_certificate_pem(&pem_file(dir.path(), "c.pem", CERT_PEM)).unwrap();
        let psk_key = b"\x5e\xc7\x3e\x7a\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb\xcc";
        let added = {
            let store = Store::open(&db, StoreConfig::default()).unwrap();
            let mut c = Credentials::load(&store, &key).unwrap();
            assert!(c.is_empty());
            c.add(&store, &key, psk("dev-psk", "id-1", psk_key))
                .unwrap();
            let r = DeviceCredential {
                endpoint: "dev-rpk".into(),
                secret: Secret::Rpk {
                    spki_der: rpk.clone(),
                },
                added_at: SystemTime::now(),
            };
            c.add(&store, &key, r).unwrap();
            let x = DeviceCredential {
                endpoint: "dev-x509".into(),
                secret: Secret::X509 {
                    cert_der: cert.clone(),
                },
                added_at: SystemTime::now(),
            };
            c.add(&store, &key, x).unwrap();
            store.flush().await.unwrap();

            // At rest: the PSK is nowhere in the raw record, the identity is.
            let raw = store.get(Table::Credentials, b"dev-psk").unwrap().unwrap();
            assert!(!raw.windows(psk_key.len()).any(|w| w == psk_key));
            assert!(raw.windows(4).any(|w| w == b"id-1"));
            let added: Vec<_> = ["dev-psk", "dev-rpk", "dev-x509"]
                .iter()
                .map(|e| c.get(e).unwrap().clone())
                .collect();
            store.close().unwrap();
            added
        };
        let store = Store::open(&db, StoreConfig::default()).unwrap();
        let c = Credentials::load(&store, &key).unwrap();
        assert_eq!(c.len(), 3);
        for a in &added {
            assert_eq!(c.get(&a.endpoint), Some(a));
        }
        assert_eq!(c.psk(b"id-1"), Some(("dev-psk", &psk_key[..])));
        assert_eq!(c.psk(b"id-2"), None);
        assert_eq!(c.by_public_key(&rpk), Some("dev-rpk"));
        assert_eq!(c.by_certificate(&cert), Some("dev-x509"));
        assert_eq!(c.by_public_key(&cert), None);
        assert!(c.has_credential("dev-rpk") && !c.has_credential("dev-other"));

        let list = c.list();
        assert_eq!(
            list.iter()
                .map(|s| (s.endpoint.as_str(), s.kind.as_str()))
                .collect::<Vec<_>>(),
            [("dev-psk", "psk"), ("dev-rpk", "rpk"), ("dev-x509", "x509")]
        );
        assert_eq!(list[0].id, "id-1");
        assert_eq!(list[1].id, hex_encode(&fingerprint(&rpk)));
        assert_eq!(list[1].id.len(), 64);
        // Neither the list nor Debug shows the key.
        let shown = format!("{list:?} {:?}", c.get("dev-psk"));
        assert!(!shown.contains(&hex_encode(psk_key)), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
        store.close().unwrap();
    }

    #[tokio::test]
    async fn a_wrong_secrets_key_fails_the_load_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("s.redb");
        {
            let store = Store::open(&db, StoreConfig::default()).unwrap();
            let key = SecretsKey::generate().unwrap();
            let mut c = Credentials::new();
            c.add(&store, &key, psk("dev-1", "id-1", b"0123456789abcdef"))
                .unwrap();
            store.close().unwrap();
        }
        let store = Store::open(&db, StoreConfig::default()).unwrap();
        let e = Credentials::load(&store, &SecretsKey::generate().unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("secrets key does not match the store") && e.contains("dev-1"),
            "{e}"
        );
        store.close().unwrap();
    }

    #[tokio::test]
    async fn conflicts_rotation_and_revocation() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("s.redb");
        let key = SecretsKey::generate().unwrap();
        let rpk = read_public_key_pem(&pem_file(dir.path(), "k.pem", RPK_PEM)).unwrap();
        let rpk2 = read_public_key_pem(&pem_file(dir.path(), "k2.pem", RPK2_PEM)).unwrap();
        let store = Store::open(&db, StoreConfig::default()).unwrap();
        let mut c = Credentials::new();
        c.add(&store, &key, psk("a", "shared", b"k1")).unwrap();
        // Another endpoint may not take the same identity.
        let e = c.add(&store, &key, psk("b", "shared", b"k2")).unwrap_err();
        assert!(
            matches!(&e, CredentialError::Conflict { endpoint, .. } if endpoint == "a"),
            "{e}"
        );
        assert!(e.to_string().contains("PSK identity \"shared\""), "{e}");
        assert!(!c.has_credential("b"));
        // Rotation: the same endpoint replaces its key, then its whole identity.
        c.add(&store, &key, psk("a", "shared", b"k3")).unwrap();
        assert_eq!(c.psk(b"shared"), Some(("a", &b"k3"[..])));
        c.add(&store, &key, psk("a", "new-id", b"k4")).unwrap();
        assert_eq!(c.psk(b"shared"), None, "the old identity is unbound");
        c.add(&store, &key, psk("b", "shared", b"k2")).unwrap();
        // Rotation across kinds, and public-key conflicts.
        let rpk_cred = |e: &str, spki: &[u8]| DeviceCredential {
            endpoint: e.into(),
            secret: Secret::Rpk {
                spki_der: spki.to_vec(),
            },
            added_at: SystemTime::now(),
        };
        c.add(&store, &key, rpk_cred("a", &rpk)).unwrap();
        assert_eq!(c.psk(b"new-id"), None);
        assert_eq!(c.by_public_key(&rpk), Some("a"));
        let e = c.add(&store, &key, rpk_cred("b", &rpk)).unwrap_err();
        assert!(e.to_string().contains("public key sha256:"), "{e}");
        assert_eq!(c.psk(b"shared"), Some(("b", &b"k2"[..])), "b untouched");
        c.add(&store, &key, rpk_cred("a", &rpk2)).unwrap();
        assert_eq!(c.by_public_key(&rpk), None);
        // Revocation.
        let old = c.revoke(&store, "a").unwrap().unwrap();
        assert_eq!(
            old.secret,
            Secret::Rpk {
                spki_der: rpk2.clone()
            }
        );
        assert_eq!(c.by_public_key(&rpk2), None);
        assert!(!c.has_credential("a"));
        assert!(c.revoke(&store, "a").unwrap().is_none());
        store.flush().await.unwrap();
        let reloaded = Credentials::load(&store, &key).unwrap();
        assert_eq!(reloaded.list(), c.list());
        assert_eq!(reloaded.len(), 1);
        store.close().unwrap();
    }

    #[tokio::test]
    async fn a_batch_is_checked_whole_and_added_in_one_go() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("s.redb");
        let key = SecretsKey::generate().unwrap();
        let store = Store::open(&db, StoreConfig::default()).unwrap();
        let mut c = Credentials::new();
        c.add(&store, &key, psk("a", "id-a", b"ka")).unwrap();
        c.add(&store, &key, psk("b", "id-b", b"kb")).unwrap();
        c.add(&store, &key, psk("outsider", "id-o", b"ko")).unwrap();

        // Refusals name the entry: bad value, endpoint or identity twice, an identity held
        // by an endpoint the batch does not touch. Nothing is added.
        let bad = vec![
            psk("n1", "id-n1", b"k"),
            psk("n2", "", b"k"),
            psk("n1", "id-n1b", b"k"),
            psk("n3", "id-n1", b"k"),
            psk("n4", "id-o", b"k"),
        ];
        let refused = c.check_batch(&bad);
        let got: Vec<(usize, String)> = refused.iter().map(|(i, e)| (*i, e.to_string())).collect();
        assert_eq!(got.len(), 4, "{got:?}");
        assert_eq!(got[0].0, 1);
        assert!(got[0].1.contains("PSK identity"), "{got:?}");
        assert!(
            got[1].0 == 2 && got[1].1.contains("more than once"),
            "{got:?}"
        );
        assert!(got[2].0 == 3 && got[2].1.contains("also given to endpoint \"n1\""));
        assert!(
            matches!(&refused[3], (4, CredentialError::Conflict { endpoint, .. }) if endpoint == "outsider"),
            "{got:?}"
        );
        assert!(c.add_batch(&store, &key, bad, Vec::new()).is_err());
        assert!(!c.has_credential("n1"));

        // Rotation of a, a swap of identities between a and b (fine within one batch: each
        // lets go of its old one), and a new endpoint.
        let batch = vec![
            psk("a", "id-b", b"ka2"),
            psk("b", "id-a", b"kb2"),
            psk("c", "id-c", b"kc"),
        ];
        assert!(c.check_batch(&batch).is_empty());
        let note = (Table::Audit, b"note".to_vec(), b"x".to_vec());
        let replaced = c.add_batch(&store, &key, batch, vec![note]).unwrap();
        let mut ids: Vec<_> = replaced.iter().map(|r| r.secret.public_id()).collect();
        ids.sort();
        assert_eq!(ids, ["id-a", "id-b"]);
        assert_eq!(c.psk(b"id-b"), Some(("a", &b"ka2"[..])));
        assert_eq!(c.psk(b"id-a"), Some(("b", &b"kb2"[..])));
        assert_eq!(c.psk(b"id-c"), Some(("c", &b"kc"[..])));
        assert_eq!(c.len(), 4);
        store.flush().await.unwrap();
        assert_eq!(
            store.get(Table::Audit, b"note").unwrap(),
            Some(b"x".to_vec())
        );
        let reloaded = Credentials::load(&store, &key).unwrap();
        assert_eq!(reloaded.list(), c.list());
        assert_eq!(reloaded.psk(b"id-a"), Some(("b", &b"kb2"[..])));
        store.close().unwrap();
    }

    #[test]
    fn parsing_helpers_refuse_bad_input() {
        assert_eq!(parse_psk_key_hex(" 00ff10 ").unwrap(), vec![0, 0xff, 0x10]);
        for (bad, says) in [
            ("", "empty"),
            ("abc", "odd"),
            ("zz", "hex"),
            (&"00".repeat(65), "1 to 64 bytes"),
        ] {
            let e = parse_psk_key_hex(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
        assert_eq!(parse_psk_key_hex(&"ab".repeat(64)).unwrap().len(), 64);

        let dir = tempfile::tempdir().unwrap();
        let e = read_public_key_pem(&pem_file(dir.path(), "ed.pem", ED25519_PEM))
            .unwrap_err()
            .to_string();
        assert!(e.contains("P-256"), "{e}");
        let e = read_public_key_pem(&pem_file(dir.path(), "c.pem", CERT_PEM))
            .unwrap_err()
            .to_string();
        assert!(e.contains("BEGIN PUBLIC KEY"), "{e}");
        let e = read_certificate_pem(&pem_file(dir.path(), "k.pem", RPK_PEM))
            .unwrap_err()
            .to_string();
        assert!(e.contains("BEGIN CERTIFICATE"), "{e}");
        let e = read_certificate_pem(&dir.path().join("missing.pem"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.pem"), "{e}");

        assert!(validate_endpoint("urn:imei:123456789012345").is_ok());
        assert!(validate_endpoint("").is_err());
        assert!(validate_endpoint("a\0b").is_err());
        assert!(validate_endpoint(&"e".repeat(253)).is_err());
        let e = validate(
            "ok",
            &Secret::Psk {
                identity: vec![],
                key: vec![1],
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("PSK identity"), "{e}");
        assert!(validate(
            "ok",
            &Secret::X509 {
                cert_der: vec![1, 2]
            }
        )
        .is_err());
    }

    #[test]
    fn new_credential_json_shape() {
        let n: NewCredential =
            serde_json::from_str(r#"{"endpoint":"E","kind":"psk","identity":"I","key":"0a0B"}"#)
                .unwrap();
        assert_eq!(
            n.secret,
            Secret::Psk {
                identity: b"I".to_vec(),
                key: vec![10, 11]
            }
        );
        let back = serde_json::to_value(&n).unwrap();
        assert_eq!(back["key"], "0a0b");
        assert_eq!(back["kind"], "psk");
        assert!(serde_json::from_str::<NewCredential>(
            r#"{"endpoint":"E","kind":"psk","identity":"I","key":"0g"}"#
        )
        .is_err());
        assert!(
            serde_json::from_str::<NewCredential>(r#"{"endpoint":"E","kind":"nope"}"#).is_err()
        );
        assert_eq!(display_identity(b"\x00\x01"), "0x0001");
    }

    /// Writes a record as `encode_record` does, under `store_key`, bypassing every check.
    fn put_raw(store: &Store, store_key: &str, bytes: Vec<u8>) {
        store
            .put(Table::Credentials, store_key.as_bytes().to_vec(), bytes)
            .unwrap();
    }

    #[tokio::test]
    async fn unreadable_or_out_of_range_records_are_skipped_and_lock_their_endpoint() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb"), StoreConfig::default()).unwrap();
        let key = SecretsKey::generate().unwrap();
        let mut c = Credentials::new();
        c.add(&store, &key, psk("good", "id-good", b"k")).unwrap();
        put_raw(&store, "garbled", b"\xff\x00 not cbor".to_vec());
        let long_key = psk("long-key", "id-long", &[7; MAX_PSK_KEY_LEN + 1]);
        put_raw(&store, "long-key", encode_record(&key, &long_key));
        let no_identity = psk("no-identity", "", b"k");
        put_raw(&store, "no-identity", encode_record(&key, &no_identity));
        let moved = psk("elsewhere", "id-moved", b"k");
        put_raw(&store, "moved", encode_record(&key, &moved));
        let odd_rpk = DeviceCredential {
            endpoint: "odd-rpk".into(),
            secret: Secret::Rpk {
                spki_der: vec![0x30; 10],
            },
            added_at: SystemTime::now(),
        };
        put_raw(&store, "odd-rpk", encode_record(&key, &odd_rpk));
        let future = DeviceCredential {
            added_at: SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(u32::MAX) * 1000),
            ..psk("future", "id-future", b"k")
        };
        put_raw(&store, "future", encode_record(&key, &future));
        store.flush().await.unwrap();

        let mut c = Credentials::load(&store, &key).unwrap();
        assert_eq!(c.unreadable(), 5, "every bad record is counted");
        assert_eq!(c.psk(b"id-good"), Some(("good", &b"k"[..])));
        assert!(
            c.get("future").is_some(),
            "added_at is only shown: any time is taken"
        );
        for locked in ["garbled", "long-key", "no-identity", "moved", "odd-rpk"] {
            assert!(c.has_credential(locked), "{locked} must still use DTLS");
            assert!(c.get(locked).is_none(), "{locked} has no usable credential");
        }
        assert_eq!(
            c.locked(),
            ["garbled", "long-key", "moved", "no-identity", "odd-rpk"]
        );
        assert_eq!(c.psk(b"id-long"), None);
        // A new credential unlocks; a revocation removes the record and unlocks.
        c.add(&store, &key, psk("garbled", "id-new", b"k2"))
            .unwrap();
        assert_eq!(c.psk(b"id-new"), Some(("garbled", &b"k2"[..])));
        assert!(c.revoke(&store, "moved").unwrap().is_none());
        assert!(!c.has_credential("moved"));
        store.flush().await.unwrap();
        let c = Credentials::load(&store, &key).unwrap();
        assert_eq!(c.unreadable(), 3);
        assert_eq!(c.locked(), ["long-key", "no-identity", "odd-rpk"]);
        store.close().unwrap();
    }

    #[tokio::test]
    async fn two_records_claiming_one_identity_lock_both_endpoints() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb"), StoreConfig::default()).unwrap();
        let key = SecretsKey::generate().unwrap();
        for ep in ["a", "b"] {
            put_raw(&store, ep, encode_record(&key, &psk(ep, "shared", b"k")));
        }
        put_raw(&store, "c", encode_record(&key, &psk("c", "own", b"k")));
        store.flush().await.unwrap();
        let c = Credentials::load(&store, &key).unwrap();
        assert_eq!(c.unreadable(), 2);
        assert_eq!(c.psk(b"shared"), None, "neither may use it");
        assert!(c.has_credential("a") && c.has_credential("b"));
        assert_eq!(c.psk(b"own"), Some(("c", &b"k"[..])));
        store.close().unwrap();
    }

    #[tokio::test]
    async fn a_sealed_psk_that_does_not_open_beside_ones_that_do_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb"), StoreConfig::default()).unwrap();
        let key = SecretsKey::generate().unwrap();
        let other = SecretsKey::generate().unwrap();
        put_raw(&store, "ok", encode_record(&key, &psk("ok", "id-ok", b"k")));
        put_raw(
            &store,
            "alien",
            encode_record(&other, &psk("alien", "id-a", b"k")),
        );
        store.flush().await.unwrap();
        // The key opens one PSK, so it is the right key and the other record is damaged.
        let c = Credentials::load(&store, &key).unwrap();
        assert_eq!(c.unreadable(), 1);
        assert!(c.has_credential("alien") && c.psk(b"id-a").is_none());
        // A key that opens none is the wrong key: that stops the start.
        let e = Credentials::load(&store, &SecretsKey::generate().unwrap()).unwrap_err();
        assert!(e.to_string().contains("secrets key does not match"), "{e}");
        store.close().unwrap();
    }

    #[test]
    fn new_endpoint_names_are_one_mqtt_topic_level() {
        for bad in ["a/b", "a+", "#", "dev/"] {
            let e = validate_endpoint(bad).unwrap_err().to_string();
            assert!(
                e.contains("endpoint name") && e.contains("'/'"),
                "{bad}: {e}"
            );
        }
        assert!(validate_endpoint("urn:dev:ops:32473-Widget 1").is_ok());
    }
}
