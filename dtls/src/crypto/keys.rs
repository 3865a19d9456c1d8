//! Record-protection keys: the key block (RFC 5246 §6.3) split into the two directions'
//! MAC key, encryption key and implicit IV (RFC 5288 §3 and RFC 6655 §3 for the AEAD
//! `salt`).
//!
//! [`DirectionKeys`] keeps raw key bytes only, never expanded cipher objects: an AES-128
//! key schedule is 176 bytes per direction (more with AES-NI tables) and an HMAC key
//! schedule two hash states, while raw keys are 53 bytes, so an established session stays
//! well under a kilobyte with 100k sessions resident. The record layer re-expands the AES
//! key for each record, which costs a few dozen nanoseconds with AES-NI.

use super::prf::{prf, MASTER_SECRET_LEN};
use crate::suite::{CipherSuite, RecordCipher};

/// The keys protecting one direction of a connection (records written by one side).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct DirectionKeys {
    pub cipher: RecordCipher,
    /// AES-128 key.
    pub enc_key: [u8; 16],
    /// HMAC-SHA256 key; all zeros unless `cipher` is CBC.
    pub mac_key: [u8; 32],
    /// The implicit nonce part (RFC 5288 §3 "salt"); all zeros for CBC.
    pub fixed_iv: [u8; 4],
}

impl std::fmt::Debug for DirectionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Key bytes must never reach a log: print only the cipher.
        f.debug_struct("DirectionKeys")
            .field("cipher", &self.cipher)
            .finish_non_exhaustive()
    }
}

/// Both directions' keys from one key expansion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyBlock {
    pub client_write: DirectionKeys,
    pub server_write: DirectionKeys,
}

/// Expands the master secret into the key block (RFC 5246 §6.3):
///
/// ```text
/// key_block = PRF(master_secret, "key expansion", server_random + client_random)
/// ```
///
/// partitioned as client_write_MAC_key, server_write_MAC_key, client_write_key,
/// server_write_key, client_write_IV, server_write_IV, with the lengths of the suite's
/// [`RecordCipher`] (a zero-length field is simply absent).
pub fn key_block(
    master: &[u8; MASTER_SECRET_LEN],
    client_random: &[u8; 32],
    server_random: &[u8; 32],
    suite: CipherSuite,
) -> KeyBlock {
    let cipher = suite.record_cipher();
    let mac_len = cipher.mac_key_len();
    let key_len = cipher.enc_key_len();
    let iv_len = cipher.fixed_iv_len();

    // The largest block any supported suite needs (CBC: 2 * 32 + 2 * 16). P_SHA256 is a
    // stream, so deriving the maximum and reading a prefix equals deriving exactly the
    // needed length.
    const MAX_BLOCK: usize = 2 * 32 + 2 * 16 + 2 * 4;
    let mut block = [0u8; MAX_BLOCK];
    prf(
        master,
        b"key expansion",
        &[server_random, client_random],
        &mut block,
    );

    let mut client_write = DirectionKeys::zeroed(cipher);
    let mut server_write = DirectionKeys::zeroed(cipher);
    // Each destination is cut to the suite's length; the block is consumed in RFC order.
    // `get_mut` on these fixed arrays cannot fail for the lengths `RecordCipher` reports
    // (at most 32, 16 and 4); an empty slice would only mean "field absent".
    let fields: [&mut [u8]; 6] = [
        client_write.mac_key.get_mut(..mac_len).unwrap_or_default(),
        server_write.mac_key.get_mut(..mac_len).unwrap_or_default(),
        client_write.enc_key.get_mut(..key_len).unwrap_or_default(),
        server_write.enc_key.get_mut(..key_len).unwrap_or_default(),
        client_write.fixed_iv.get_mut(..iv_len).unwrap_or_default(),
        server_write.fixed_iv.get_mut(..iv_len).unwrap_or_default(),
    ];
    let mut src = block.iter();
    for field in fields {
        for (dst, byte) in field.iter_mut().zip(&mut src) {
            *dst = *byte;
        }
    }
    KeyBlock {
        client_write,
        server_write,
    }
}

impl DirectionKeys {
    /// All-zero keys for `cipher`, to be filled in.
    pub(crate) const fn zeroed(cipher: RecordCipher) -> Self {
        Self {
            cipher,
            enc_key: [0; 16],
            mac_key: [0; 32],
            fixed_iv: [0; 4],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CR: [u8; 32] = [0xc1; 32];
    const SR: [u8; 32] = [0x5e; 32];

    fn master() -> [u8; 48] {
        std::array::from_fn(|i| i as u8)
    }

    // PRF(0x00..0x2f, "key expansion", SR + CR) computed independently (Python
    // hmac/hashlib P_SHA256).
    const EXPANSION: &str = "cceb3e14d846a21dde9a42cbcbed13a667078ba0dab8d1732a3cb4899a742466\
                             234f54ef0f9b87b11b1ccae6ffacd12acf8a784b60a5d36b819d5bd840985f31\
                             28e699cf88370e8ba55f5462605891ade359c7caec46be58354d19788cefcfe4";

    #[test]
    fn cbc_key_block_layout() {
        let kb = key_block(&master(), &CR, &SR, CipherSuite::PskAes128CbcSha256);
        let x = hex::decode(EXPANSION).unwrap();
        assert_eq!(kb.client_write.cipher, RecordCipher::CbcSha256);
        assert_eq!(kb.client_write.mac_key.to_vec(), x[0..32].to_vec());
        assert_eq!(kb.server_write.mac_key.to_vec(), x[32..64].to_vec());
        assert_eq!(kb.client_write.enc_key.to_vec(), x[64..80].to_vec());
        assert_eq!(kb.server_write.enc_key.to_vec(), x[80..96].to_vec());
        assert_eq!(kb.client_write.fixed_iv, [0; 4]);
        assert_eq!(kb.server_write.fixed_iv, [0; 4]);
    }

    #[test]
    fn aead_key_block_layout() {
        let x = hex::decode(EXPANSION).unwrap();
        for suite in [
            CipherSuite::PskAes128Ccm8,
            CipherSuite::EcdheEcdsaAes128Ccm8,
            CipherSuite::EcdheEcdsaAes128GcmSha256,
        ] {
            let kb = key_block(&master(), &CR, &SR, suite);
            assert_eq!(kb.client_write.cipher, suite.record_cipher());
            assert_eq!(kb.client_write.mac_key, [0; 32]);
            assert_eq!(kb.server_write.mac_key, [0; 32]);
            assert_eq!(kb.client_write.enc_key.to_vec(), x[0..16].to_vec());
            assert_eq!(kb.server_write.enc_key.to_vec(), x[16..32].to_vec());
            assert_eq!(kb.client_write.fixed_iv.to_vec(), x[32..36].to_vec());
            assert_eq!(kb.server_write.fixed_iv.to_vec(), x[36..40].to_vec());
        }
    }

    #[test]
    fn debug_hides_keys() {
        let kb = key_block(&master(), &CR, &SR, CipherSuite::PskAes128CbcSha256);
        let s = format!("{kb:?}");
        assert!(s.contains("CbcSha256"), "{s}");
        // No key byte, in decimal or hex, is printed.
        assert!(!s.contains("204") && !s.contains("cc"), "{s}");
        assert!(std::mem::size_of::<DirectionKeys>() <= 56);
    }
}
