//! How the core's state is laid out in the store (see [`crate::store`]).
//!
//! Records are CBOR maps with numbered fields (minicbor `#[n(..)]`), so fields can be added
//! without breaking older databases. Queued commands and observations are kept as the CoAP
//! request they are (minus token and message ID): the operation's own parser turns them back
//! into typed requests on restore, so there is no second serialization of every operation
//! to keep in step.
//!
//! Keys: registrations by endpoint name; observations by `endpoint \0 token`; queued commands
//! by `endpoint \0 sequence (big-endian u64)`, so a prefix scan returns one device's queue in
//! submission order.
use super::types::Registration;
use crate::store::Table;
use lwm2m::content::link::{parse_registration_links, ObjectLinks};
use lwm2m::content::negotiate::Lwm2mVersion;
use lwm2m::ops::registration::Binding;
use minicbor::{Decode, Encode};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A write the shell applies to the store, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreOp {
    /// Write `value` under `key`.
    Put(Table, Vec<u8>, Vec<u8>),
    /// Remove `key`.
    Delete(Table, Vec<u8>),
    /// Remove every key starting with the prefix.
    DeletePrefix(Table, Vec<u8>),
}

pub(crate) fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub(crate) fn from_millis(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// Key of one device's records below `endpoint`.
pub(crate) fn device_prefix(endpoint: &str) -> Vec<u8> {
    let mut k = endpoint.as_bytes().to_vec();
    k.push(0);
    k
}

pub(crate) fn sub_key(endpoint: &str, suffix: &[u8]) -> Vec<u8> {
    let mut k = device_prefix(endpoint);
    k.extend_from_slice(suffix);
    k
}

#[derive(Debug, Encode, Decode)]
struct RegistrationRecord {
    #[n(0)]
    endpoint: String,
    #[n(1)]
    location: String,
    #[n(2)]
    address: String,
    #[n(3)]
    lifetime: u32,
    #[n(4)]
    version: String,
    #[n(5)]
    binding: String,
    #[n(6)]
    queue_mode: bool,
    #[n(7)]
    sms: Option<String>,
    #[n(8)]
    links: String,
    #[n(9)]
    registered_at_ms: u64,
    #[n(10)]
    updated_at_ms: u64,
    /// How the device is reached when it differs from `address` (a DTLS session); absent
    /// in records of earlier versions.
    #[n(11)]
    peer: Option<String>,
}

/// Encodes a registration of a device reached through `peer`.
pub(crate) fn encode_registration(r: &Registration, peer: &str) -> Vec<u8> {
    let rec = RegistrationRecord {
        endpoint: r.endpoint.clone(),
        location: r.location.clone(),
        address: r.address.clone(),
        lifetime: r.lifetime,
        version: r.version.as_str().to_string(),
        binding: r.binding.to_string(),
        queue_mode: r.queue_mode,
        sms: r.sms.clone(),
        links: r.links.to_link_format(),
        registered_at_ms: millis(r.registered_at),
        updated_at_ms: millis(r.updated_at),
        peer: (peer != r.address).then(|| peer.to_string()),
    };
    minicbor::to_vec(&rec).unwrap_or_default()
}

/// Decodes a registration and the peer it is reached through; `None` for a record this
/// version cannot read.
pub(crate) fn decode_registration(bytes: &[u8]) -> Option<(Registration, String)> {
    let rec: RegistrationRecord = minicbor::decode(bytes).ok()?;
    let peer = rec.peer.unwrap_or_else(|| rec.address.clone());
    let reg = Registration {
        endpoint: rec.endpoint,
        location: rec.location,
        address: rec.address,
        lifetime: rec.lifetime,
        version: Lwm2mVersion::parse(Some(&rec.version))?,
        binding: Binding::parse(&rec.binding).ok()?.0,
        queue_mode: rec.queue_mode,
        sms: rec.sms,
        links: if rec.links.is_empty() {
            ObjectLinks::default()
        } else {
            parse_registration_links(rec.links.as_bytes()).ok()?
        },
        registered_at: from_millis(rec.registered_at_ms),
        updated_at: from_millis(rec.updated_at_ms),
    };
    Some((reg, peer))
}

/// An observation as stored.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub(crate) struct ObservationRecord {
    #[n(0)]
    pub(crate) endpoint: String,
    #[n(1)]
    pub(crate) id: u64,
    #[n(2)]
    #[cbor(with = "minicbor::bytes")]
    pub(crate) token: Vec<u8>,
    /// The Observe request, encoded without token and message ID.
    #[n(3)]
    #[cbor(with = "minicbor::bytes")]
    pub(crate) request: Vec<u8>,
}

/// A queued command as stored.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
pub(crate) struct QueuedRecord {
    #[n(0)]
    pub(crate) id: u64,
    #[n(1)]
    pub(crate) endpoint: String,
    /// The CoAP request, encoded without token and message ID.
    #[n(2)]
    #[cbor(with = "minicbor::bytes")]
    pub(crate) request: Vec<u8>,
    #[n(3)]
    pub(crate) timeout_ms: Option<u64>,
    #[n(4)]
    pub(crate) expires_at_ms: u64,
}

pub(crate) fn encode<T: Encode<()>>(v: &T) -> Vec<u8> {
    minicbor::to_vec(v).unwrap_or_default()
}

pub(crate) fn decode<'b, T: Decode<'b, ()>>(bytes: &'b [u8]) -> Option<T> {
    minicbor::decode(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_round_trips() {
        let r = Registration {
            endpoint: "dev-1".into(),
            location: "/rd/0a1b2c3d4e5f6071".into(),
            address: "127.0.0.1:5683".into(),
            lifetime: 300,
            version: Lwm2mVersion::V1_1,
            binding: Binding::UDP,
            queue_mode: true,
            sms: None,
            links: parse_registration_links(b"</>;rt=\"oma.lwm2m\";ct=110,</1/0>,</3/0>").unwrap(),
            registered_at: from_millis(1_700_000_000_000),
            updated_at: from_millis(1_700_000_100_000),
        };
        let plain = decode_registration(&encode_registration(&r, &r.address));
        assert_eq!(plain, Some((r.clone(), r.address.clone())));
        let secure = decode_registration(&encode_registration(&r, "dtls#7"));
        assert_eq!(secure, Some((r, "dtls#7".to_string())));
        assert_eq!(decode_registration(b"\xff garbage"), None);
    }

    #[test]
    fn queued_keys_sort_in_submission_order() {
        let a = sub_key("dev", &1u64.to_be_bytes());
        let b = sub_key("dev", &256u64.to_be_bytes());
        assert!(a < b);
        assert!(a.starts_with(&device_prefix("dev")));
        assert!(!sub_key("dev2", &[]).starts_with(&device_prefix("dev")));
    }
}
