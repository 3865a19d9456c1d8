//! The credential's record in the store: table `credentials` (or `bootstrap_credentials`),
//! key = endpoint name, value = a CBOR record with numbered fields (as in `core::persist`). A
//! PSK key is sealed with the [`SecretsKey`] (AES-256-GCM, associated data `"psk\0" +
//! endpoint`, `"bootstrap-psk\0" + endpoint` in the bootstrap set, so a sealed key moved onto
//! another record, or into the other set, does not open); raw public keys and certificates
//! are public and stored as DER. The PSK identity is stored in clear: it travels in clear in every handshake
//! anyway.
use super::model::{
    check_stored_endpoint, validate_secret, CredentialError, CredentialKind, CredentialSet,
    DeviceCredential, Secret,
};
use crate::provisioning::secrets::SecretsKey;
use minicbor::{Decode, Encode};
use std::time::SystemTime;

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

/// Associated data of a sealed PSK: its purpose, its set and its endpoint, so that it opens
/// only as this endpoint's PSK of this set (not as another endpoint's, not as a key for the
/// other server, nor as some other sealed value).
pub(super) fn psk_aad(set: CredentialSet, endpoint: &str) -> Vec<u8> {
    let mut aad = match set {
        CredentialSet::Devices => b"psk\0".to_vec(),
        CredentialSet::Bootstrap => b"bootstrap-psk\0".to_vec(),
    };
    aad.extend_from_slice(endpoint.as_bytes());
    aad
}

pub(super) fn millis(t: SystemTime) -> u64 {
    lwm2m::time::unix_millis(t)
}

pub(super) fn from_millis(ms: u64) -> SystemTime {
    lwm2m::time::from_unix_millis(ms)
}

pub(super) fn encode_record(set: CredentialSet, key: &SecretsKey, c: &DeviceCredential) -> Vec<u8> {
    let (identity, data) = match &c.secret {
        Secret::Psk { identity, key: psk } => {
            (identity.clone(), key.seal(&psk_aad(set, &c.endpoint), psk))
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
pub(super) fn decode_record(
    set: CredentialSet,
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
                .open(&psk_aad(set, &rec.endpoint), &rec.data)
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
