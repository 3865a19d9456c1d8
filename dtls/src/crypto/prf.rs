//! The TLS 1.2 pseudo-random function with SHA-256 (RFC 5246 §5) and the secrets derived
//! with it: master secret (RFC 5246 §8.1), extended master secret (RFC 7627 §4), Finished
//! `verify_data` (RFC 5246 §7.4.9); and the PSK pre-master secret (RFC 4279 §2).

use hmac::Mac;

use super::hmac_keyed;

/// Bytes in a master secret (RFC 5246 §8.1).
pub const MASTER_SECRET_LEN: usize = 48;
/// Bytes in Finished `verify_data` for every TLS 1.2 suite we speak (RFC 5246 §7.4.9).
pub const VERIFY_DATA_LEN: usize = 12;

/// `PRF(secret, label, seed)` truncated to `out.len()` bytes, with the seed given as parts
/// that are concatenated (RFC 5246 §5):
///
/// ```text
/// PRF(secret, label, seed) = P_SHA256(secret, label + seed)
/// P_SHA256(secret, seed)   = HMAC(secret, A(1) + seed) + HMAC(secret, A(2) + seed) + ...
/// A(0) = seed, A(i) = HMAC(secret, A(i-1))
/// ```
pub fn prf(secret: &[u8], label: &[u8], seed: &[&[u8]], out: &mut [u8]) {
    // Key the HMAC once; every block clones the keyed state instead of re-deriving the
    // inner and outer pads from the secret.
    let keyed = hmac_keyed(secret);
    let full_seed = |mac: &mut super::HmacSha256| {
        mac.update(label);
        for part in seed {
            mac.update(part);
        }
    };

    // A(1) = HMAC(secret, label + seed).
    let mut a = keyed.clone();
    full_seed(&mut a);
    let mut a: [u8; 32] = a.finalize().into_bytes().into();

    for chunk in out.chunks_mut(32) {
        let mut block = keyed.clone();
        block.update(&a);
        full_seed(&mut block);
        let block: [u8; 32] = block.finalize().into_bytes().into();
        for (dst, src) in chunk.iter_mut().zip(block) {
            *dst = src;
        }
        let mut next = keyed.clone();
        next.update(&a);
        a = next.finalize().into_bytes().into();
    }
}

/// `master_secret = PRF(pre_master_secret, "master secret", ClientHello.random +
/// ServerHello.random)[0..47]` (RFC 5246 §8.1).
pub fn master_secret(
    pre_master: &[u8],
    client_random: &[u8; 32],
    server_random: &[u8; 32],
) -> [u8; MASTER_SECRET_LEN] {
    let mut out = [0u8; MASTER_SECRET_LEN];
    prf(
        pre_master,
        b"master secret",
        &[client_random, server_random],
        &mut out,
    );
    out
}

/// `master_secret = PRF(pre_master_secret, "extended master secret", session_hash)[0..47]`
/// (RFC 7627 §4), where `session_hash` is the transcript hash up to and including the
/// ClientKeyExchange. Binding the master secret to the whole handshake defeats the
/// triple-handshake attack on resumption.
pub fn extended_master_secret(
    pre_master: &[u8],
    session_hash: &[u8; 32],
) -> [u8; MASTER_SECRET_LEN] {
    let mut out = [0u8; MASTER_SECRET_LEN];
    prf(
        pre_master,
        b"extended master secret",
        &[session_hash],
        &mut out,
    );
    out
}

/// `verify_data = PRF(master_secret, finished_label, Hash(handshake_messages))[0..11]`
/// (RFC 5246 §7.4.9); `label` is `b"client finished"` or `b"server finished"`.
pub fn verify_data(
    master: &[u8; MASTER_SECRET_LEN],
    label: &[u8],
    handshake_hash: &[u8; 32],
) -> [u8; VERIFY_DATA_LEN] {
    let mut out = [0u8; VERIFY_DATA_LEN];
    prf(master, label, &[handshake_hash], &mut out);
    out
}

/// The Finished `verify_data` over the raw handshake messages `transcript` (both roles keep
/// the transcript as bytes, since CertificateVerify signs it whole).
pub fn finished(
    master: &[u8; MASTER_SECRET_LEN],
    label: &[u8],
    transcript: &[u8],
) -> [u8; VERIFY_DATA_LEN] {
    verify_data(master, label, &super::sha256(&[transcript]))
}

/// Whether a peer's Finished is the one `transcript` calls for, compared in constant time.
pub fn finished_matches(
    master: &[u8; MASTER_SECRET_LEN],
    label: &[u8],
    transcript: &[u8],
    got: &[u8; VERIFY_DATA_LEN],
) -> bool {
    use subtle::ConstantTimeEq;
    finished(master, label, transcript).ct_eq(got).into()
}

/// The pre-master secret of plain PSK key exchange (RFC 4279 §2): `uint16 N`, `N` zero
/// bytes, `uint16 N`, the PSK, where `N` is the PSK length.
///
/// RFC 4279 §5.3 caps PSKs at 2^16 - 1 bytes, the most the length field can say. Both
/// handshake roles refuse a longer key before calling this ([`MAX_PSK_LEN`]); should one
/// reach here anyway it is cut to that length so the encoding stays well-formed rather than
/// wrapping the length field.
pub fn psk_pre_master(psk: &[u8]) -> Vec<u8> {
    let psk = psk.get(..MAX_PSK_LEN).unwrap_or(psk);
    // At most MAX_PSK_LEN (u16::MAX) after the cut above, so the fallback is never taken.
    let n = u16::try_from(psk.len()).unwrap_or(u16::MAX).to_be_bytes();
    let mut out = Vec::with_capacity(4 + 2 * psk.len());
    out.extend_from_slice(&n);
    out.resize(out.len() + psk.len(), 0);
    out.extend_from_slice(&n);
    out.extend_from_slice(psk);
    out
}

/// Longest PSK the pre-master secret can carry (RFC 4279 §5.3: 2^16 - 1 bytes).
pub const MAX_PSK_LEN: usize = u16::MAX as usize;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prf_sha256_published_vector() {
        // The TLS 1.2 PRF-SHA256 vector posted to the IETF TLS list
        // (https://www.ietf.org/mail-archive/web/tls/current/msg03416.html).
        let secret = hex::decode("9bbe436ba940f017b17652849a71db35").unwrap();
        let seed = hex::decode("a0ba9f936cda311827a6f796ffd5198c").unwrap();
        let expected = hex::decode(
            "e3f229ba727be17b8d122620557cd453c2aab21d07c3d495329b52d4e61edb5a\
             6b301791e90d35c9c9a46b4e14baf9af0fa022f7077def17abfd3797c0564bab\
             4fbc91666e9def9b97fce34f796789baa48082d122ee42c5a72e5a5110fff701\
             87347b66",
        )
        .unwrap();
        let mut out = [0u8; 100];
        prf(&secret, b"test label", &[&seed], &mut out);
        assert_eq!(out.to_vec(), expected);

        // Splitting the seed into parts changes nothing, and a shorter output is a prefix.
        let (a, b) = seed.split_at(5);
        let mut short = [0u8; 33];
        prf(&secret, b"test label", &[a, b], &mut short);
        assert_eq!(short.to_vec(), expected[..33].to_vec());

        prf(&secret, b"test label", &[&seed], &mut []);
    }

    #[test]
    fn master_secret_is_prf_with_label() {
        let pms = [7u8; 48];
        let cr = [1u8; 32];
        let sr = [2u8; 32];
        let mut expected = [0u8; 48];
        prf(&pms, b"master secret", &[&cr, &sr], &mut expected);
        assert_eq!(master_secret(&pms, &cr, &sr), expected);
        // Computed independently (Python hmac/hashlib P_SHA256).
        assert_eq!(
            master_secret(&pms, &cr, &sr).to_vec(),
            hex::decode(
                "9331d2d08195a0996957082fac856c5c03ce595a638f422b810a0486097970df\
                 2f4ce6767d731753b5b92daa3e66f142"
            )
            .unwrap()
        );
    }

    #[test]
    fn extended_master_secret_and_verify_data() {
        let pms = [7u8; 48];
        let hash = [3u8; 32];
        // Computed independently (Python hmac/hashlib P_SHA256).
        assert_eq!(
            extended_master_secret(&pms, &hash).to_vec(),
            hex::decode(
                "edac89465ad0d30eafe08e843aa20af4bd650c95e64aac4c1aead3433e2f6849\
                 3c95a1ea191db4eb7ea38b9e285a1570"
            )
            .unwrap()
        );
        let master = [9u8; 48];
        let client = verify_data(&master, b"client finished", &hash);
        let server = verify_data(&master, b"server finished", &hash);
        assert_ne!(client, server);
        // Computed independently (Python hmac/hashlib P_SHA256).
        assert_eq!(
            client.to_vec(),
            hex::decode("e95131d1aa57bf54edbb7838").unwrap()
        );
    }

    #[test]
    fn psk_pre_master_layout() {
        // RFC 4279 §2: for a 4-byte PSK, 00 04 | 00 00 00 00 | 00 04 | psk.
        assert_eq!(
            psk_pre_master(&[0xde, 0xad, 0xbe, 0xef]),
            vec![0, 4, 0, 0, 0, 0, 0, 4, 0xde, 0xad, 0xbe, 0xef]
        );
        assert_eq!(psk_pre_master(&[]), vec![0, 0, 0, 0]);
        let long = psk_pre_master(&[1u8; 300]);
        assert_eq!(long.len(), 4 + 600);
        assert_eq!(&long[..2], &[1, 44]);
        assert!(long[2..302].iter().all(|&b| b == 0));
        assert_eq!(&long[302..304], &[1, 44]);
        assert!(long[304..].iter().all(|&b| b == 1));
    }
}
