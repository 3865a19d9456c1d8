//! Key derivation for DTLS 1.2: SHA-256 hashing and HMAC, the TLS 1.2 PRF (RFC 5246 §5),
//! the master secret (RFC 5246 §8.1, Extended Master Secret RFC 7627 §4), Finished
//! `verify_data` (RFC 5246 §7.4.9), the PSK pre-master secret (RFC 4279 §2), the running
//! handshake transcript hash (RFC 5246 §7.4.9, RFC 6347 §4.2.6) and the key block
//! (RFC 5246 §6.3).
//!
//! Everything here composes the RustCrypto `sha2` and `hmac` crates; no primitive is
//! implemented in this crate.

mod keys;
mod prf;

pub use keys::{key_block, DirectionKeys, KeyBlock};
pub use prf::{
    extended_master_secret, finished, finished_matches, master_secret, prf, psk_pre_master,
    verify_data, MASTER_SECRET_LEN, MAX_PSK_LEN, VERIFY_DATA_LEN,
};

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

pub(crate) type HmacSha256 = Hmac<Sha256>;

/// An HMAC-SHA256 instance keyed with `key`.
///
/// Cloning the returned value is how callers reuse one key schedule for several MACs (the
/// PRF does this for every output block).
pub(crate) fn hmac_keyed(key: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length (RFC 2104 §2: longer keys are hashed first), and the
    // `hmac` crate's `new_from_slice` never fails: it returns a `Result` only because the
    // generic `KeyInit` trait does (see `hmac::block_api`, whose own `new` relies on it).
    match <HmacSha256 as KeyInit>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    }
}

/// HMAC-SHA256 (RFC 2104) of the concatenation of `parts` under `key`.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = hmac_keyed(key);
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// SHA-256 of the concatenation of `parts`.
pub fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in parts {
        h.update(part);
    }
    h.finalize().into()
}

/// The running SHA-256 over every handshake message sent and received, in wire order,
/// as the Finished messages (RFC 5246 §7.4.9) and the Extended Master Secret session hash
/// (RFC 7627 §3) require.
///
/// In DTLS the messages are hashed as if they had been sent unfragmented, with their
/// 12-byte DTLS handshake header (RFC 6347 §4.2.6); assembling that is the caller's job.
/// Only SHA-256 is kept because every supported suite uses the SHA-256 PRF.
#[derive(Clone, Default)]
pub struct Transcript(Sha256);

impl Transcript {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one handshake message.
    pub fn update(&mut self, message: &[u8]) {
        self.0.update(message);
    }

    /// The hash of everything appended so far. The transcript keeps running, so a hash can
    /// be taken for the client Finished and again later for the server Finished.
    pub fn hash(&self) -> [u8; 32] {
        self.0.clone().finalize().into()
    }
}

impl std::fmt::Debug for Transcript {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The hash state is not secret, but it is also of no use in a log.
        f.write_str("Transcript(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_abc() {
        // FIPS 180-2 appendix B.1.
        assert_eq!(
            sha256(&[b"a", b"bc"]).to_vec(),
            hex::decode("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
                .unwrap()
        );
        assert_eq!(sha256(&[b"abc"]), sha256(&[b"", b"ab", b"c"]));
    }

    #[test]
    fn hmac_sha256_rfc4231_case_2() {
        // RFC 4231 §4.3.
        assert_eq!(
            hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"]).to_vec(),
            hex::decode("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
                .unwrap()
        );
    }

    #[test]
    fn hmac_sha256_rfc4231_case_6_long_key() {
        // RFC 4231 §4.7: a 131-byte key, longer than the block, is hashed first.
        let key = [0xaa; 131];
        assert_eq!(
            hmac_sha256(
                &key,
                &[b"Test Using Larger Than Block-Size Key - Hash Key First"]
            )
            .to_vec(),
            hex::decode("60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54")
                .unwrap()
        );
    }

    #[test]
    fn transcript_hash_does_not_consume() {
        let mut t = Transcript::new();
        t.update(b"client hello");
        let first = t.hash();
        assert_eq!(first, t.hash());
        assert_eq!(first, sha256(&[b"client hello"]));
        t.update(b"server hello");
        assert_eq!(t.hash(), sha256(&[b"client hello", b"server hello"]));
        assert_eq!(Transcript::default().hash(), sha256(&[]));
        assert_eq!(format!("{t:?}"), "Transcript(..)");
    }
}
