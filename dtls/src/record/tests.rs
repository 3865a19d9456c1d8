//! Record layer tests: framing, protection round trips, fixed vectors, hostile input.
use super::protection::*;
use super::*;
use crate::codec::{wide, DecodeError, Writer};
use crate::crypto::DirectionKeys;
use crate::suite::RecordCipher;
use aes_gcm::aead::array::typenum::U16;
use aes_gcm::aead::array::Array;
use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::Aes128Gcm;
use cbc::cipher::{BlockModeEncrypt, KeyIvInit};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;

/// An RNG that returns a fixed byte, so CBC records are reproducible for vectors.
struct FixedRng(u8);
impl rand::RngCore for FixedRng {
    fn next_u32(&mut self) -> u32 {
        u32::from_ne_bytes([self.0; 4])
    }
    fn next_u64(&mut self) -> u64 {
        u64::from_ne_bytes([self.0; 8])
    }
    fn fill_bytes(&mut self, dst: &mut [u8]) {
        dst.fill(self.0);
    }
}

fn keys(cipher: RecordCipher) -> DirectionKeys {
    let aead = cipher != RecordCipher::CbcSha256;
    DirectionKeys {
        cipher,
        enc_key: std::array::from_fn(|i| i as u8),
        mac_key: if aead {
            [0; 32]
        } else {
            std::array::from_fn(|i| 0x40 + i as u8)
        },
        fixed_iv: if aead {
            [0xa0, 0xa1, 0xa2, 0xa3]
        } else {
            [0; 4]
        },
    }
}

const CIPHERS: [RecordCipher; 3] = [
    RecordCipher::Ccm8,
    RecordCipher::Gcm,
    RecordCipher::CbcSha256,
];
const CID: &[u8] = &[0xc1, 0xd0, 0x00, 0x07];

fn seal(
    k: &DirectionKeys,
    ct: ContentType,
    epoch: u16,
    seq: u64,
    cid: Option<&[u8]>,
    payload: &[u8],
) -> Vec<u8> {
    let mut out = Vec::new();
    k.seal(
        ct,
        DTLS_1_2,
        epoch,
        seq,
        cid,
        payload,
        &mut FixedRng(0x42),
        &mut out,
    )
    .unwrap();
    out
}

fn only_record(datagram: &[u8], cid_len: usize) -> Record<'_> {
    let mut it = split_records(datagram, cid_len);
    let rec = it.next().unwrap().unwrap();
    assert!(it.next().is_none());
    rec
}

// Expected records below were computed independently with Python's `cryptography`
// (AESCCM, AESGCM, AES-CBC) and `hmac`, building headers and additional data from the
// RFC text.

#[test]
fn ccm8_record_vector() {
    let rec = seal(
        &keys(RecordCipher::Ccm8),
        ContentType::ApplicationData,
        1,
        5,
        None,
        b"hello, lwm2m",
    );
    assert_eq!(rec, hex::decode(CCM8_PLAIN_VECTOR).unwrap());
}

#[test]
fn gcm_record_vector() {
    let rec = seal(
        &keys(RecordCipher::Gcm),
        ContentType::ApplicationData,
        1,
        5,
        None,
        b"hello, lwm2m",
    );
    assert_eq!(rec, hex::decode(GCM_PLAIN_VECTOR).unwrap());
}

#[test]
fn cbc_record_vector() {
    let rec = seal(
        &keys(RecordCipher::CbcSha256),
        ContentType::ApplicationData,
        1,
        5,
        None,
        b"hello, lwm2m",
    );
    assert_eq!(rec, hex::decode(CBC_PLAIN_VECTOR).unwrap());
}

#[test]
fn cid_record_vectors() {
    for (cipher, expected) in [
        (RecordCipher::Ccm8, CCM8_CID_VECTOR),
        (RecordCipher::Gcm, GCM_CID_VECTOR),
        (RecordCipher::CbcSha256, CBC_CID_VECTOR),
    ] {
        let rec = seal(
            &keys(cipher),
            ContentType::ApplicationData,
            1,
            5,
            Some(CID),
            b"hello, lwm2m",
        );
        assert_eq!(rec, hex::decode(expected).unwrap(), "{cipher:?}");
    }
}

#[test]
fn ccm8_nist_sp800_38c_example_3() {
    // NIST SP 800-38C Appendix C, Example 3: 12-byte nonce, 8-byte tag, as RFC 6655.
    let key = hex::decode("404142434445464748494a4b4c4d4e4f").unwrap();
    let nonce = hex::decode("101112131415161718191a1b").unwrap();
    let ad = hex::decode("000102030405060708090a0b0c0d0e0f10111213").unwrap();
    let mut buf = hex::decode("202122232425262728292a2b2c2d2e2f3031323334353637").unwrap();
    let cipher = Aes128Ccm8::new(&Array::try_from(&key[..]).unwrap());
    let tag = cipher
        .encrypt_inout_detached(
            &Array::try_from(&nonce[..]).unwrap(),
            &ad,
            buf.as_mut_slice().into(),
        )
        .unwrap();
    buf.extend_from_slice(&tag);
    assert_eq!(
        buf,
        hex::decode("e3b201a9f5b71a7a9b1ceaeccd97e70b6176aad9a4428aa5484392fbc1b09951").unwrap()
    );
}

#[test]
fn round_trips() {
    for cipher in CIPHERS {
        let k = keys(cipher);
        for cid in [None, Some(CID)] {
            for len in [
                0usize, 1, 15, 16, 17, 31, 32, 33, 100, 255, 256, 1000, 16384,
            ] {
                let payload: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
                let mut rng = StdRng::seed_from_u64(len as u64);
                let mut out = Vec::new();
                k.seal(
                    ContentType::Handshake,
                    DTLS_1_2,
                    3,
                    0xABCDEF012345,
                    cid,
                    &payload,
                    &mut rng,
                    &mut out,
                )
                .unwrap();
                let rec = only_record(&out, CID.len());
                assert_eq!(rec.epoch, 3);
                assert_eq!(rec.seq, 0xABCDEF012345);
                assert_eq!(rec.version, DTLS_1_2);
                assert!(rec.fragment.len() <= payload.len() + 1 + cipher.max_expansion());
                match cid {
                    Some(c) => {
                        assert_eq!(rec.content_type, 25);
                        assert_eq!(rec.cid, c);
                    }
                    None => {
                        assert_eq!(rec.content_type(), Some(ContentType::Handshake));
                        assert!(rec.cid.is_empty());
                    }
                }
                let (ty, pt) = k.open(&rec).unwrap();
                assert_eq!(ty, ContentType::Handshake as u8, "{cipher:?} {len}");
                assert_eq!(pt, payload, "{cipher:?} {len} {cid:?}");
            }
        }
    }
}

#[test]
fn empty_cid_uses_plain_format() {
    for cipher in CIPHERS {
        let k = keys(cipher);
        let a = seal(&k, ContentType::Alert, 1, 9, Some(&[]), b"\x01\x00");
        let b = seal(&k, ContentType::Alert, 1, 9, None, b"\x01\x00");
        assert_eq!(a, b);
        assert_eq!(a[0], ContentType::Alert as u8);
    }
}

#[test]
fn tampering_any_byte_fails() {
    for cipher in CIPHERS {
        let k = keys(cipher);
        for cid in [None, Some(CID)] {
            let sealed = seal(
                &k,
                ContentType::ApplicationData,
                1,
                77,
                cid,
                b"temperature=21.5",
            );
            for i in 0..sealed.len() {
                for flip in [0x01u8, 0x80] {
                    let mut bad = sealed.clone();
                    bad[i] ^= flip;
                    // A flipped length or type byte may not even parse; that is fine.
                    let Some(Ok(rec)) = split_records(&bad, CID.len()).next() else {
                        continue;
                    };
                    let res = k.open(&rec);
                    assert!(
                        matches!(res, Err(RecordError::BadRecordMac | RecordError::Malformed)),
                        "{cipher:?} {cid:?} byte {i}: {res:?}"
                    );
                    // Only the type byte can turn the record into a different shape; any
                    // other change is an authentication failure.
                    if i != 0 {
                        assert_eq!(res, Err(RecordError::BadRecordMac), "{cipher:?} byte {i}");
                    }
                }
            }
        }
    }
}

#[test]
fn wrong_epoch_seq_version_or_key_fails() {
    for cipher in CIPHERS {
        let k = keys(cipher);
        for cid in [None, Some(CID)] {
            let sealed = seal(&k, ContentType::ApplicationData, 1, 5, cid, b"payload");
            let rec = only_record(&sealed, CID.len());
            assert!(k.open(&rec).is_ok());
            for altered in [
                Record { epoch: 2, ..rec },
                Record { seq: 6, ..rec },
                Record {
                    version: DTLS_1_0,
                    ..rec
                },
                Record {
                    content_type: if cid.is_some() { 25 } else { 22 },
                    cid: if cid.is_some() { &[1, 2, 3, 4] } else { &[] },
                    ..rec
                },
            ] {
                assert_eq!(
                    k.open(&altered),
                    Err(RecordError::BadRecordMac),
                    "{cipher:?} {altered:?}"
                );
            }
            let mut other = k;
            other.enc_key[0] ^= 1;
            assert_eq!(other.open(&rec), Err(RecordError::BadRecordMac));
            if cipher == RecordCipher::CbcSha256 {
                let mut other = k;
                other.mac_key[31] ^= 1;
                assert_eq!(other.open(&rec), Err(RecordError::BadRecordMac));
            } else {
                let mut other = k;
                other.fixed_iv[0] ^= 1;
                assert_eq!(other.open(&rec), Err(RecordError::BadRecordMac));
            }
        }
    }
}

#[test]
fn cbc_bad_padding_is_bad_record_mac() {
    // Build CBC records by hand with correct MACs but broken padding, so only the
    // padding check can reject them.
    let k = keys(RecordCipher::CbcSha256);
    let payload = b"0123456789";
    for bad_pad in [
        vec![5u8, 5, 5, 4, 5, 5], // one byte differs
        vec![0xff],               // longer than the record
        vec![1u8, 2],             // value and length disagree
    ] {
        let header = additional_data(23, DTLS_1_2, 1, 5, None, payload.len() as u16).unwrap();
        let mac = crate::crypto::hmac_sha256(&k.mac_key, &[&header, payload]);
        let mut body = payload.to_vec();
        body.extend_from_slice(&mac);
        body.extend_from_slice(&bad_pad);
        while !body.len().is_multiple_of(16) {
            body.insert(payload.len() + 32, bad_pad[0]);
        }
        let iv = [9u8; 16];
        let (blocks, _) = Array::<u8, U16>::slice_as_chunks_mut(&mut body);
        Aes128CbcEnc::new(&Array::from(k.enc_key), &Array::from(iv)).encrypt_blocks(blocks);
        let mut fragment = iv.to_vec();
        fragment.extend_from_slice(&body);
        let rec = Record {
            content_type: 23,
            version: DTLS_1_2,
            epoch: 1,
            seq: 5,
            cid: &[],
            fragment: &fragment,
        };
        assert_eq!(k.open(&rec), Err(RecordError::BadRecordMac), "{bad_pad:?}");
    }
}

#[test]
fn short_and_misaligned_fragments() {
    for cipher in CIPHERS {
        let k = keys(cipher);
        for n in [0usize, 1, 8, 15, 16, 17, 23, 24, 47, 48, 63] {
            let fragment = vec![0u8; n];
            let rec = Record {
                content_type: 23,
                version: DTLS_1_2,
                epoch: 1,
                seq: 1,
                cid: &[],
                fragment: &fragment,
            };
            assert_eq!(
                k.open(&rec),
                Err(RecordError::BadRecordMac),
                "{cipher:?} {n}"
            );
        }
        let big = vec![0u8; MAX_CIPHERTEXT_LEN + 1];
        let rec = Record {
            content_type: 23,
            version: DTLS_1_2,
            epoch: 1,
            seq: 1,
            cid: &[],
            fragment: &big,
        };
        assert_eq!(k.open(&rec), Err(RecordError::TooLarge));
        let cidless = Record {
            content_type: 25,
            fragment: &big[..64],
            ..rec
        };
        assert_eq!(k.open(&cidless), Err(RecordError::Malformed));
    }
}

#[test]
fn all_zero_inner_plaintext_is_malformed() {
    // A tls12_cid record whose DTLSInnerPlaintext has no non-zero byte (no real type).
    let k = keys(RecordCipher::Gcm);
    let explicit = [0u8, 1, 0, 0, 0, 0, 0, 5];
    let inner = [0u8; 4];
    let ad = additional_data(25, DTLS_1_2, 1, 5, Some(CID), inner.len() as u16).unwrap();
    let mut body = inner.to_vec();
    let tag = Aes128Gcm::new(&Array::from(k.enc_key))
        .encrypt_inout_detached(
            &Array::from(aead_nonce(&k.fixed_iv, &explicit)),
            &ad,
            body.as_mut_slice().into(),
        )
        .unwrap();
    let mut fragment = explicit.to_vec();
    fragment.extend_from_slice(&body);
    fragment.extend_from_slice(&tag);
    let rec = Record {
        content_type: 25,
        version: DTLS_1_2,
        epoch: 1,
        seq: 5,
        cid: CID,
        fragment: &fragment,
    };
    assert_eq!(k.open(&rec), Err(RecordError::Malformed));
}

#[test]
fn inner_plaintext_padding_is_stripped() {
    // RFC 9146 allows the sender to pad DTLSInnerPlaintext with zeros after the type.
    let k = keys(RecordCipher::Ccm8);
    let explicit = [0u8, 1, 0, 0, 0, 0, 0, 5];
    let inner = [b'h', b'i', 0, 23, 0, 0, 0];
    let ad = additional_data(25, DTLS_1_2, 1, 5, Some(CID), inner.len() as u16).unwrap();
    let mut body = inner.to_vec();
    let tag = Aes128Ccm8::new(&Array::from(k.enc_key))
        .encrypt_inout_detached(
            &Array::from(aead_nonce(&k.fixed_iv, &explicit)),
            &ad,
            body.as_mut_slice().into(),
        )
        .unwrap();
    let mut fragment = explicit.to_vec();
    fragment.extend_from_slice(&body);
    fragment.extend_from_slice(&tag);
    let rec = Record {
        content_type: 25,
        version: DTLS_1_2,
        epoch: 1,
        seq: 5,
        cid: CID,
        fragment: &fragment,
    };
    assert_eq!(k.open(&rec), Ok((23, vec![b'h', b'i', 0])));
}

#[test]
fn several_records_in_one_datagram() {
    let k = keys(RecordCipher::Ccm8);
    let mut dgram = Vec::new();
    write_plaintext(
        ContentType::ChangeCipherSpec,
        DTLS_1_2,
        0,
        7,
        &[1],
        &mut dgram,
    )
    .unwrap();
    k.seal(
        ContentType::Handshake,
        DTLS_1_2,
        1,
        0,
        None,
        b"finished",
        &mut FixedRng(0),
        &mut dgram,
    )
    .unwrap();
    k.seal(
        ContentType::ApplicationData,
        DTLS_1_2,
        1,
        1,
        Some(CID),
        b"data",
        &mut FixedRng(0),
        &mut dgram,
    )
    .unwrap();
    let recs: Vec<_> = split_records(&dgram, CID.len())
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(recs.len(), 3);
    assert_eq!(recs[0].content_type(), Some(ContentType::ChangeCipherSpec));
    assert_eq!(
        (recs[0].epoch, recs[0].seq, recs[0].fragment),
        (0, 7, &[1u8][..])
    );
    assert_eq!(k.open(&recs[1]), Ok((22, b"finished".to_vec())));
    assert_eq!(recs[2].cid, CID);
    assert_eq!(k.open(&recs[2]), Ok((23, b"data".to_vec())));
}

#[test]
fn plaintext_record_layout() {
    let mut out = Vec::new();
    write_plaintext(
        ContentType::Handshake,
        DTLS_1_0,
        0,
        0x010203040506,
        b"abc",
        &mut out,
    )
    .unwrap();
    assert_eq!(
        out,
        [22, 0xfe, 0xff, 0, 0, 1, 2, 3, 4, 5, 6, 0, 3, b'a', b'b', b'c']
    );
    assert_eq!(out.len(), HEADER_LEN + 3);
}

#[test]
fn truncated_and_malformed_datagrams() {
    let mut good = Vec::new();
    write_plaintext(ContentType::Handshake, DTLS_1_2, 0, 1, b"hello", &mut good).unwrap();
    // Every strict prefix of one record (except empty) is one error, then the end.
    for n in 1..good.len() {
        let mut it = split_records(&good[..n], 0);
        assert_eq!(it.next(), Some(Err(DecodeError::Malformed)), "{n}");
        assert_eq!(it.next(), None);
        assert_eq!(it.next(), None);
    }
    assert_eq!(split_records(&[], 0).next(), None);

    // A good record followed by a truncated one: the first is still returned.
    let mut two = good.clone();
    two.extend_from_slice(&good[..HEADER_LEN + 1]);
    let items: Vec<_> = split_records(&two, 0).collect();
    assert_eq!(items.len(), 2);
    assert!(items[0].is_ok() && items[1].is_err());

    // A CID record shorter than its CID.
    let cid_rec = [25u8, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 1, 0xc1, 0xd0];
    assert_eq!(
        split_records(&cid_rec, 4).next(),
        Some(Err(DecodeError::Malformed))
    );

    // Over-long length field.
    let mut huge = vec![23u8, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 1];
    huge.put_u16((MAX_CIPHERTEXT_LEN + 1) as u16);
    huge.resize(huge.len() + MAX_CIPHERTEXT_LEN + 1, 0);
    assert_eq!(
        split_records(&huge, 0).next(),
        Some(Err(DecodeError::OutOfRange {
            field: "DTLSCiphertext.length",
            value: wide(MAX_CIPHERTEXT_LEN + 1),
            min: 0,
            max: wide(MAX_CIPHERTEXT_LEN),
        }))
    );
    // Exactly the maximum is fine.
    let mut max = vec![23u8, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 1];
    max.put_vec16("fragment", &vec![0; MAX_CIPHERTEXT_LEN])
        .unwrap();
    assert!(matches!(split_records(&max, 0).next(), Some(Ok(_))));
}

#[test]
fn refuses_to_write_what_the_record_fields_cannot_carry() {
    let k = keys(RecordCipher::Gcm);
    let mut out = Vec::new();
    let mut rng = FixedRng(0);
    let too_long = vec![0u8; MAX_PLAINTEXT_LEN + 1];
    assert!(write_plaintext(ContentType::Handshake, DTLS_1_2, 0, 1, &too_long, &mut out).is_err());
    assert!(write_plaintext(
        ContentType::Handshake,
        DTLS_1_2,
        0,
        MAX_SEQ + 1,
        b"x",
        &mut out
    )
    .is_err());
    assert!(k
        .seal(
            ContentType::ApplicationData,
            DTLS_1_2,
            1,
            1,
            None,
            &too_long,
            &mut rng,
            &mut out
        )
        .is_err());
    assert!(k
        .seal(
            ContentType::ApplicationData,
            DTLS_1_2,
            1,
            MAX_SEQ + 1,
            None,
            b"x",
            &mut rng,
            &mut out
        )
        .is_err());
    assert!(k
        .seal(
            ContentType::ApplicationData,
            DTLS_1_2,
            1,
            1,
            Some(&[1; 256]),
            b"x",
            &mut rng,
            &mut out
        )
        .is_err());
    assert!(out.is_empty(), "a refused record leaves nothing behind");
    // A hand-built record with a sequence number the header cannot carry does not open.
    let rec = Record {
        content_type: 23,
        version: DTLS_1_2,
        epoch: 1,
        seq: MAX_SEQ + 1,
        cid: &[],
        fragment: &[0; 40],
    };
    assert!(k.open(&rec).is_err());
    // The largest sequence number is written whole.
    write_plaintext(ContentType::Alert, DTLS_1_2, 0, MAX_SEQ, &[1, 0], &mut out).unwrap();
    assert_eq!(only_record(&out, 0).seq, MAX_SEQ);
}

#[test]
fn content_type_codes() {
    for t in [
        ContentType::ChangeCipherSpec,
        ContentType::Alert,
        ContentType::Handshake,
        ContentType::ApplicationData,
        ContentType::Tls12Cid,
    ] {
        assert_eq!(ContentType::from_u8(t as u8), Some(t));
    }
    assert_eq!(ContentType::from_u8(24), None);
    assert_eq!(ContentType::from_u8(0), None);
}

fn any_keys() -> impl Strategy<Value = DirectionKeys> {
    (
        prop_oneof![
            Just(RecordCipher::Ccm8),
            Just(RecordCipher::Gcm),
            Just(RecordCipher::CbcSha256)
        ],
        any::<[u8; 16]>(),
        any::<[u8; 32]>(),
        any::<[u8; 4]>(),
    )
        .prop_map(|(cipher, enc_key, mac_key, fixed_iv)| DirectionKeys {
            cipher,
            enc_key,
            mac_key,
            fixed_iv,
        })
}

proptest! {
    #[test]
    fn split_records_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200), cid_len in 0usize..20) {
        let mut total = 0;
        for rec in split_records(&data, cid_len).flatten() {
            total += HEADER_LEN + rec.cid.len() + rec.fragment.len();
        }
        prop_assert!(total <= data.len());
    }

    #[test]
    fn open_never_panics(
        k in any_keys(),
        content_type in prop_oneof![Just(23u8), Just(25u8), any::<u8>()],
        cid in proptest::collection::vec(any::<u8>(), 0..8),
        fragment in proptest::collection::vec(any::<u8>(), 0..300),
        epoch: u16,
        seq in 0u64..(1 << 48),
    ) {
        let rec = Record { content_type, version: DTLS_1_2, epoch, seq, cid: &cid, fragment: &fragment };
        // Random bytes essentially never authenticate.
        prop_assert!(k.open(&rec).is_err());
    }

    #[test]
    fn seal_open_round_trip(
        k in any_keys(),
        payload in proptest::collection::vec(any::<u8>(), 0..600),
        cid in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..10)),
        epoch: u16,
        seq in 0u64..(1 << 48),
        rng_seed: u64,
    ) {
        let mut out = Vec::new();
        let mut rng = StdRng::seed_from_u64(rng_seed);
        k.seal(ContentType::ApplicationData, DTLS_1_2, epoch, seq, cid.as_deref(), &payload, &mut rng, &mut out).unwrap();
        let cid_len = cid.as_ref().map_or(0, Vec::len);
        let rec = only_record(&out, cid_len);
        prop_assert_eq!(k.open(&rec), Ok((23, payload)));
    }
}

const CCM8_PLAIN_VECTOR: &str =
    "17fefd0001000000000005001c00010000000000054498625bc08ae45f6b5a65889bf65efc611a3812";
const GCM_PLAIN_VECTOR: &str = "17fefd000100000000000500240001000000000005a46f3dea4bbbcaf88328819289dbc44209d0ddb760af5939c669b705";
const CBC_PLAIN_VECTOR: &str = "17fefd0001000000000005004042424242424242424242424242424242c0df99a112a25b3bc1e4ef37caebec237e8dfd0e6e8495b776a7aa07321c4c23988c69b394cca79b187ef46a70b80ea6";
const CCM8_CID_VECTOR: &str =
    "19fefd0001000000000005c1d00007001d00010000000000054498625bc08ae45f6b5a658884d0e11ab1f60eb2ff";
const GCM_CID_VECTOR: &str = "19fefd0001000000000005c1d0000700250001000000000005a46f3dea4bbbcaf88328819263fb38d0061b60ce52f5d55467f2b2cf33";
const CBC_CID_VECTOR: &str = "19fefd0001000000000005c1d000070040424242424242424242424242424242424e9be1d0424dbfd01526dc38761326713d5ce5e9d1b288aabcbc763107127e0a63a7fa17e3e3c821f2a44ab1d41f1cf8";
