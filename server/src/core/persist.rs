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
use std::ops::RangeInclusive;

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

/// The store as a map, for tests that play the driver's part.
#[cfg(test)]
pub(crate) type MemoryStore = std::collections::BTreeMap<(Table, Vec<u8>), Vec<u8>>;

#[cfg(test)]
impl StoreOp {
    /// Applies the write to an in-memory store, as the store writer would.
    pub(crate) fn apply_to(self, store: &mut MemoryStore) {
        match self {
            StoreOp::Put(t, k, v) => {
                store.insert((t, k), v);
            }
            StoreOp::Delete(t, k) => {
                store.remove(&(t, k));
            }
            StoreOp::DeletePrefix(t, p) => {
                store.retain(|(tt, k), _| !(*tt == t && k.starts_with(&p)))
            }
        }
    }
}

/// The lifetime a stored registration may have, in seconds: what the registration interface
/// accepts for `lt` (a positive 32-bit number; deadlines computed from it saturate).
pub const LIFETIME_SECS: RangeInclusive<u32> = 1..=u32::MAX;
/// Longest location id (`/rd/{id}`): the server makes 16 hex digits; the room above is for
/// a later version's longer ones.
pub const MAX_LOCATION_ID_LEN: usize = 64;
/// Longest address text: an IPv6 socket address with a scope id is under 64 bytes.
pub const MAX_ADDRESS_LEN: usize = 128;
/// Longest MSISDN (`sms`): E.164 numbers have at most 15 digits; room for a prefix.
pub const MAX_SMS_LEN: usize = 64;
/// The largest command or observation id a record may carry. Ids start from the wall clock
/// in milliseconds shifted by 8 bits (about 2^49 today) and count up by one; an id near
/// `u64::MAX` could only come from a damaged record, and continuing the counter from it would
/// overflow.
pub const MAX_STORED_ID: u64 = 1 << 62;
/// How far past the clock a stored time the core computes with (a registration's last
/// update, a queued command's expiry) may lie: the clock of an earlier run may have been a
/// little ahead, but a record from further in the future was not written as it is.
pub const MAX_CLOCK_SKEW: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

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

/// A registration as stored.
#[derive(Debug, Encode, Decode)]
pub(crate) struct RegistrationRecord {
    #[n(0)]
    pub(crate) endpoint: String,
    #[n(1)]
    pub(crate) location: String,
    #[n(2)]
    pub(crate) address: String,
    #[n(3)]
    pub(crate) lifetime: u32,
    #[n(4)]
    pub(crate) version: String,
    #[n(5)]
    pub(crate) binding: String,
    #[n(6)]
    pub(crate) queue_mode: bool,
    #[n(7)]
    pub(crate) sms: Option<String>,
    #[n(8)]
    pub(crate) links: String,
    #[n(9)]
    pub(crate) registered_at_ms: u64,
    #[n(10)]
    pub(crate) updated_at_ms: u64,
    /// How the device is reached when it differs from `address` (a DTLS session); absent
    /// in records of earlier versions.
    #[n(11)]
    pub(crate) peer: Option<String>,
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
        registered_at_ms: lwm2m::time::unix_millis(r.registered_at),
        updated_at_ms: lwm2m::time::unix_millis(r.updated_at),
        peer: (peer != r.address).then(|| peer.to_string()),
    };
    minicbor::to_vec(&rec).unwrap_or_default()
}

/// Decodes a registration and the peer it is reached through; `None` for a record this
/// version cannot read or whose fields are out of range.
#[cfg(test)]
pub(crate) fn decode_registration(bytes: &[u8]) -> Option<(Registration, String)> {
    read_registration(bytes).ok()
}

/// Whether `s` is 1 to `max` bytes without control characters: a name, address or number that
/// goes into store keys (split at NUL) and log lines.
fn check_text(field: &str, s: &str, max: usize) -> Result<(), String> {
    if s.is_empty() || s.len() > max {
        return Err(format!("{field} is {} bytes: must be 1..={max}", s.len()));
    }
    if s.chars().any(char::is_control) {
        return Err(format!("{field} contains control characters"));
    }
    Ok(())
}

/// Checks a stored endpoint name as the registration interface accepts it: 1 to 255 bytes,
/// without control characters.
pub(crate) fn check_endpoint(endpoint: &str) -> Result<(), String> {
    check_text(
        "endpoint",
        endpoint,
        lwm2m::ops::registration::MAX_ENDPOINT_LEN,
    )
}

/// Decodes a registration and the peer it is reached through, checking every field that
/// needs no context: the endpoint name as the registration interface accepts it (1 to 255
/// bytes, no control characters), a location `/rd/{id}`, the address, the lifetime
/// ([`LIFETIME_SECS`]), version, binding, MSISDN and links. The time stamps and the sizes the
/// configuration bounds are checked by the restore. `Err` says which field is wrong.
pub(crate) fn read_registration(bytes: &[u8]) -> Result<(Registration, String), String> {
    let rec: RegistrationRecord = minicbor::decode(bytes)
        .map_err(|e| format!("not a registration record this version can read: {e}"))?;
    check_endpoint(&rec.endpoint)?;
    let id = rec
        .location
        .strip_prefix("/rd/")
        .ok_or_else(|| format!("location {:?} is not /rd/{{id}}", rec.location))?;
    if id.is_empty()
        || id.len() > MAX_LOCATION_ID_LEN
        || !id.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return Err(format!(
            "location id is not 1..={MAX_LOCATION_ID_LEN} letters and digits"
        ));
    }
    check_text("address", &rec.address, MAX_ADDRESS_LEN)?;
    if let Some(peer) = &rec.peer {
        check_text("peer", peer, MAX_ADDRESS_LEN)?;
    }
    if !LIFETIME_SECS.contains(&rec.lifetime) {
        return Err(format!(
            "lifetime = {}: must be {}..={}",
            rec.lifetime,
            LIFETIME_SECS.start(),
            LIFETIME_SECS.end()
        ));
    }
    if let Some(sms) = &rec.sms {
        check_text("sms", sms, MAX_SMS_LEN)?;
    }
    let version = Lwm2mVersion::parse(Some(&rec.version))
        .ok_or_else(|| format!("unknown LwM2M version {:?}", rec.version))?;
    let binding = Binding::parse(&rec.binding)
        .map_err(|e| format!("binding {:?}: {e}", rec.binding))?
        .0;
    let links = if rec.links.is_empty() {
        ObjectLinks::default()
    } else {
        parse_registration_links(rec.links.as_bytes()).map_err(|e| format!("links: {e}"))?
    };
    let peer = rec.peer.unwrap_or_else(|| rec.address.clone());
    let reg = Registration {
        endpoint: rec.endpoint,
        location: rec.location,
        address: rec.address,
        lifetime: rec.lifetime,
        version,
        binding,
        queue_mode: rec.queue_mode,
        sms: rec.sms,
        links,
        registered_at: lwm2m::time::from_unix_millis(rec.registered_at_ms),
        updated_at: lwm2m::time::from_unix_millis(rec.updated_at_ms),
    };
    Ok((reg, peer))
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
            registered_at: lwm2m::time::from_unix_millis(1_700_000_000_000),
            updated_at: lwm2m::time::from_unix_millis(1_700_000_100_000),
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
