//! The datagram nodes exchange on their internal port: one DTLS datagram (RFC 6347 §4.1, RFC
//! 9146 `tls12_cid` records) with the device's address, in an envelope authenticated with the
//! cluster secret (HMAC-SHA256, RFC 2104, truncated to 128 bits as RFC 2104 §5 allows).
//!
//! ```text
//! "LC" | version (1) | kind (1) | from node (1) | to node (1) | family (4 or 6)
//!      | address (4 or 16) | port (2, big endian) | the device's datagram | tag (16)
//! ```
//! `kind` 1: a datagram a device sent to `from`, for a session of the receiver; 2: the
//! receiver is asked to send the datagram to the device from its public socket (the answer to
//! a kind-1 datagram, or anything the session's node sends to a device that reaches it
//! through `from`'s balancer path).
//!
//! Written by hand: it is a fixed header of a dozen bytes, and a general framing crate would
//! add more than it saves. Naming the receiver keeps an envelope from being replayed to
//! another node. No replay window is kept: an envelope carries DTLS records, which carry
//! their own (RFC 6347 §4.1.2.6), so a replayed kind-1 envelope is dropped by the session
//! (and moves no route: only authenticated records do), and a replayed kind-2 one sends a
//! device a record it has already seen, which it drops the same way.
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

const MAGIC: [u8; 2] = *b"LC";
const VERSION: u8 = 1;
const TAG_LEN: usize = 16;
/// The secret's minimum length, in bytes.
pub const MIN_SECRET_LEN: usize = 32;

/// What an envelope asks of its receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A device's datagram for a session the receiver holds.
    Inbound,
    /// A datagram for the receiver to send to the device from its public socket.
    Outbound,
}

impl Kind {
    fn byte(self) -> u8 {
        match self {
            Kind::Inbound => 1,
            Kind::Outbound => 2,
        }
    }
}

/// An envelope, opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// What the receiver is asked to do.
    pub kind: Kind,
    /// The node that sent it.
    pub from: u8,
    /// The node it is for.
    pub to: u8,
    /// The device's address, as the node facing it sees it.
    pub peer: SocketAddr,
    /// The device's datagram.
    pub payload: &'a [u8],
}

/// Why an envelope was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RelayError {
    /// Too short, not ours, another version, an unknown kind or address family.
    #[error("malformed cluster datagram")]
    Malformed,
    /// The tag does not match: another secret, or altered on the way.
    #[error("cluster datagram not authenticated (another secret, or altered)")]
    BadTag,
}

/// The cluster secret's MAC key.
#[derive(Clone)]
pub struct Key(Hmac<Sha256>);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Key {
    /// The key of `secret` (the caller checks its length).
    pub fn new(secret: &[u8]) -> Self {
        // HMAC takes keys of any length (RFC 2104 §2); the `Result` is only the generic
        // `KeyInit` signature's.
        match <Hmac<Sha256> as KeyInit>::new_from_slice(secret) {
            Ok(mac) => Self(mac),
            Err(_) => unreachable!("HMAC accepts keys of any length"),
        }
    }
}

/// The envelope of `payload`, ready to send to another node's internal address.
pub fn seal(key: &Key, kind: Kind, from: u8, to: u8, peer: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + 16 + payload.len() + TAG_LEN);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&[VERSION, kind.byte(), from, to]);
    match peer.ip() {
        IpAddr::V4(a) => {
            out.push(4);
            out.extend_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            out.push(6);
            out.extend_from_slice(&a.octets());
        }
    }
    out.extend_from_slice(&peer.port().to_be_bytes());
    out.extend_from_slice(payload);
    let mut mac = key.0.clone();
    mac.update(&out);
    let tag = mac.finalize().into_bytes();
    out.extend_from_slice(tag.get(..TAG_LEN).unwrap_or_default());
    out
}

/// Checks and opens an envelope.
pub fn open<'a>(key: &Key, datagram: &'a [u8]) -> Result<Envelope<'a>, RelayError> {
    let body_len = datagram
        .len()
        .checked_sub(TAG_LEN)
        .ok_or(RelayError::Malformed)?;
    let (body, tag) = datagram.split_at(body_len);
    let mut r = Reader(body);
    if r.take(2)? != MAGIC || r.byte()? != VERSION {
        return Err(RelayError::Malformed);
    }
    let kind = match r.byte()? {
        1 => Kind::Inbound,
        2 => Kind::Outbound,
        _ => return Err(RelayError::Malformed),
    };
    let from = r.byte()?;
    let to = r.byte()?;
    let ip = match r.byte()? {
        4 => IpAddr::V4(Ipv4Addr::from(r.array::<4>()?)),
        6 => IpAddr::V6(Ipv6Addr::from(r.array::<16>()?)),
        _ => return Err(RelayError::Malformed),
    };
    let port = u16::from_be_bytes(r.array::<2>()?);
    let mut mac = key.0.clone();
    mac.update(body);
    mac.verify_truncated_left(tag)
        .map_err(|_| RelayError::BadTag)?;
    Ok(Envelope {
        kind,
        from,
        to,
        peer: SocketAddr::new(ip, port),
        payload: r.0,
    })
}

/// The unread part of a header.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], RelayError> {
        if self.0.len() < n {
            return Err(RelayError::Malformed);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8, RelayError> {
        Ok(self.array::<1>()?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], RelayError> {
        self.take(N)?.try_into().map_err(|_| RelayError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key() -> Key {
        Key::new(&[7u8; 32])
    }

    #[test]
    fn an_envelope_opens_to_what_was_sealed_for_both_families() {
        for peer in [
            SocketAddr::from(([192, 0, 2, 7], 40_001)),
            "[2001:db8::1]:5684".parse().unwrap(),
        ] {
            for kind in [Kind::Inbound, Kind::Outbound] {
                let sealed = seal(&key(), kind, 3, 4, peer, b"\x19\xfe\xfd record");
                let e = open(&key(), &sealed).unwrap();
                assert_eq!(
                    e,
                    Envelope {
                        kind,
                        from: 3,
                        to: 4,
                        peer,
                        payload: b"\x19\xfe\xfd record",
                    }
                );
            }
        }
    }

    #[test]
    fn another_secret_or_any_changed_byte_is_refused() {
        let peer = SocketAddr::from(([127, 0, 0, 1], 9));
        let sealed = seal(&key(), Kind::Inbound, 1, 2, peer, b"payload");
        assert_eq!(
            open(&Key::new(&[8u8; 32]), &sealed),
            Err(RelayError::BadTag)
        );
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert!(
                open(&key(), &bad).is_err(),
                "byte {i} changed, still opened"
            );
        }
        assert_eq!(open(&key(), &sealed[..10]), Err(RelayError::Malformed));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_and_never_open(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            // Without the key nobody can make a tag: random bytes are refused, never opened.
            prop_assert!(open(&key(), &data).is_err());
        }

        #[test]
        fn any_payload_and_address_round_trip(
            payload in proptest::collection::vec(any::<u8>(), 0..1500),
            v6 in any::<bool>(), bytes in any::<[u8; 16]>(), port in any::<u16>(), from in any::<u8>(),
        ) {
            let ip = if v6 { IpAddr::V6(Ipv6Addr::from(bytes)) } else {
                IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
            };
            let peer = SocketAddr::new(ip, port);
            let sealed = seal(&key(), Kind::Outbound, from, 9, peer, &payload);
            let e = open(&key(), &sealed).unwrap();
            prop_assert_eq!(e.peer, peer);
            prop_assert_eq!(e.from, from);
            prop_assert_eq!(e.to, 9);
            prop_assert_eq!(e.payload, &payload[..]);
        }
    }
}
