//! Record protection (RFC 5246 §6.2.3): sealing and opening one record with an AEAD suite
//! (RFC 6655 CCM_8, RFC 5288 GCM) or AES-CBC with HMAC-SHA256, in the ordinary format or the
//! Connection ID format of RFC 9146 §4–§5.

use aes::Aes128;
use aes_gcm::aead::array::typenum::{Unsigned, U12, U16, U8};
use aes_gcm::aead::array::Array;
use aes_gcm::aead::{AeadCore, AeadInOut, KeyInit, Nonce, Tag};
use aes_gcm::Aes128Gcm;
use cbc::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use ccm::Ccm;
use hmac::Mac;
use subtle::{
    Choice, ConditionallySelectable, ConstantTimeEq, ConstantTimeGreater, ConstantTimeLess,
};

use super::{ContentType, Record, RecordError, MAX_CID_LEN, MAX_CIPHERTEXT_LEN, MAX_PLAINTEXT_LEN};
use crate::codec::{wide, EncodeError, Reader, Writer};
use crate::crypto::{hmac_keyed, DirectionKeys};
use crate::suite::RecordCipher;

/// AES-128-CCM with an 8-byte tag and 12-byte nonce, as RFC 6655 uses it.
pub(super) type Aes128Ccm8 = Ccm<Aes128, U8, U12>;
pub(super) type Aes128CbcEnc = cbc::Encryptor<Aes128>;
pub(super) type Aes128CbcDec = cbc::Decryptor<Aes128>;

/// HMAC-SHA256 output bytes, the CBC suite's MAC length.
pub(super) const MAC_LEN: usize = 32;
/// AES block size, also the CBC explicit IV length.
pub(super) const BLOCK_LEN: usize = 16;
/// Bytes of explicit nonce in front of an AEAD ciphertext (RFC 5288 §3, RFC 6655 §3).
pub(super) const EXPLICIT_NONCE_LEN: usize = 8;

/// The additional data of an AEAD record, which is also the header the CBC MAC covers.
///
/// Without a CID (RFC 5246 §6.2.3.3 and §6.2.3.1, DTLS 8-byte epoch || seq, RFC 6347
/// §4.1.2.1): `epoch || seq || type || version || length`.
///
/// With a CID (RFC 9146 §5): `seq_num_placeholder (8 × 0xFF) || tls12_cid || cid_length ||
/// tls12_cid || version || epoch || seq || cid || length_of_DTLSInnerPlaintext`. The
/// placeholder and the leading type and CID length make this input unambiguous against
/// non-CID records and against CIDs of other lengths.
///
/// `length` is the plaintext (inner plaintext) length. A caller converts it with
/// `u16::try_from` and treats failure as a record too large; it is at most 2^14 + 2048 for
/// any record that passed the length checks.
///
/// Refuses a `seq` above 48 bits or a `cid` longer than 255 bytes (which the fields cannot
/// carry) rather than authenticate a header that differs from the one on the wire.
pub(super) fn additional_data(
    content_type: u8,
    version: u16,
    epoch: u16,
    seq: u64,
    cid: Option<&[u8]>,
    length: u16,
) -> Result<Vec<u8>, EncodeError> {
    let mut ad = Vec::with_capacity(23 + cid.map_or(0, <[u8]>::len));
    match cid {
        None => {
            ad.put_u16(epoch);
            ad.put_u48("record sequence_number", seq)?;
            ad.put_u8(content_type);
            ad.put_u16(version);
        }
        Some(cid) => {
            let cid_len = u8::try_from(cid.len())
                .map_err(|_| EncodeError::new("cid length", cid.len(), u8::MAX.into()))?;
            ad.extend_from_slice(&[0xff; 8]);
            ad.put_u8(ContentType::Tls12Cid as u8);
            ad.put_u8(cid_len);
            ad.put_u8(ContentType::Tls12Cid as u8);
            ad.put_u16(version);
            ad.put_u16(epoch);
            ad.put_u48("record sequence_number", seq)?;
            ad.extend_from_slice(cid);
        }
    }
    ad.put_u16(length);
    Ok(ad)
}

/// [`additional_data`] for a received record whose plaintext is `length` bytes.
///
/// [`DirectionKeys::open`] has checked the fragment against [`MAX_CIPHERTEXT_LEN`], so the
/// length fits its field and the CID its length byte; a hand-built [`Record`] that breaks
/// either (or carries a sequence number above 48 bits) is refused, not authenticated under a
/// header that differs from the one it claims.
fn record_additional_data(
    record: &Record<'_>,
    cid: Option<&[u8]>,
    length: usize,
) -> Result<Vec<u8>, RecordError> {
    let length = u16::try_from(length).map_err(|_| RecordError::TooLarge)?;
    additional_data(
        record.content_type,
        record.version,
        record.epoch,
        record.seq,
        cid,
        length,
    )
    .map_err(|_| RecordError::Malformed)
}

/// The 12-byte AEAD nonce: implicit salt || explicit part (RFC 5288 §3, RFC 6655 §3).
pub(super) fn aead_nonce(fixed_iv: &[u8; 4], explicit: &[u8; EXPLICIT_NONCE_LEN]) -> [u8; 12] {
    let mut nonce = [0u8; 12];
    for (dst, src) in nonce.iter_mut().zip(fixed_iv.iter().chain(explicit)) {
        *dst = *src;
    }
    nonce
}

impl DirectionKeys {
    /// Protects `payload` as one record and appends it to `out`.
    ///
    /// With `cid: Some(cid)` and a non-empty `cid`, the record uses the RFC 9146 format:
    /// wire type `tls12_cid`, the CID in the header, and the real `content_type` inside the
    /// ciphertext. An empty CID means the peer asked for none (RFC 9146 §3), so the
    /// ordinary format is used. Both AEAD and CBC suites support the CID format (RFC 9146
    /// §5.1 defines the CBC MAC input).
    ///
    /// `rng` supplies the CBC explicit IV (RFC 5246 §6.2.3.2 requires it unpredictable);
    /// AEAD suites do not use it.
    ///
    /// A `payload` longer than [`MAX_PLAINTEXT_LEN`], a `cid` longer than [`MAX_CID_LEN`] or
    /// a `seq` above [`MAX_SEQ`](super::MAX_SEQ) is refused with an [`EncodeError`] and nothing is appended:
    /// the fields could not carry them.
    #[allow(clippy::too_many_arguments)]
    pub fn seal(
        &self,
        content_type: ContentType,
        version: u16,
        epoch: u16,
        seq: u64,
        cid: Option<&[u8]>,
        payload: &[u8],
        rng: &mut impl rand::Rng,
        out: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        let cid = cid.filter(|c| !c.is_empty());
        EncodeError::check("record payload", payload.len(), wide(MAX_PLAINTEXT_LEN))?;
        EncodeError::check("cid length", cid.map_or(0, <[u8]>::len), wide(MAX_CID_LEN))?;
        let start = out.len();
        let sealed = self.seal_inner(content_type, version, epoch, seq, cid, payload, rng, out);
        if sealed.is_err() {
            out.truncate(start);
        }
        sealed
    }

    /// [`Self::seal`] after its checks; on error the caller drops what was appended.
    #[allow(clippy::too_many_arguments)]
    fn seal_inner(
        &self,
        content_type: ContentType,
        version: u16,
        epoch: u16,
        seq: u64,
        cid: Option<&[u8]>,
        payload: &[u8],
        rng: &mut impl rand::Rng,
        out: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        let wire_type = if cid.is_some() {
            ContentType::Tls12Cid
        } else {
            content_type
        };
        out.put_u8(wire_type as u8);
        out.put_u16(version);
        out.put_u16(epoch);
        out.put_u48("record sequence_number", seq)?;
        if let Some(cid) = cid {
            out.extend_from_slice(cid);
        }
        let len_at = out.begin_len16();

        // With a CID the content is followed by the real type (DTLSInnerPlaintext).
        let inner_type = cid.map(|_| content_type as u8);
        let inner_len = payload.len() + usize::from(inner_type.is_some());
        let inner_len = u16::try_from(inner_len)
            .map_err(|_| EncodeError::new("record payload", inner_len, u16::MAX.into()))?;
        let ad = additional_data(wire_type as u8, version, epoch, seq, cid, inner_len)?;

        let sealed = match self.cipher {
            RecordCipher::Ccm8 => {
                self.seal_aead::<Aes128Ccm8>(epoch, seq, &ad, payload, inner_type, out)
            }
            RecordCipher::Gcm => {
                self.seal_aead::<Aes128Gcm>(epoch, seq, &ad, payload, inner_type, out)
            }
            RecordCipher::CbcSha256 => {
                self.seal_cbc(&ad, payload, inner_type, rng, out);
                true
            }
        };
        if !sealed {
            return Err(EncodeError::new(
                "record payload",
                payload.len(),
                wide(MAX_PLAINTEXT_LEN),
            ));
        }
        // At most 2^14 + 1 + 256 (tag, CBC MAC and padding) bytes follow the length.
        out.patch_len16("DTLSCiphertext.length", len_at)
    }

    /// AEAD part of [`Self::seal`]: appends explicit nonce || ciphertext || tag.
    /// Returns false only if the AEAD refuses the input, which the length limits in
    /// `seal` rule out.
    fn seal_aead<A>(
        &self,
        epoch: u16,
        seq: u64,
        ad: &[u8],
        payload: &[u8],
        inner_type: Option<u8>,
        out: &mut Vec<u8>,
    ) -> bool
    where
        A: AeadInOut + KeyInit<KeySize = U16> + AeadCore<NonceSize = U12>,
    {
        // Explicit nonce = epoch || 48-bit seq: unique per key, as the nonce must be.
        let [e0, e1] = epoch.to_be_bytes();
        let [_, _, s0, s1, s2, s3, s4, s5] = seq.to_be_bytes();
        let explicit: [u8; EXPLICIT_NONCE_LEN] = [e0, e1, s0, s1, s2, s3, s4, s5];
        let nonce = Nonce::<A>::from(aead_nonce(&self.fixed_iv, &explicit));
        let cipher = A::new(&Array::from(self.enc_key));

        out.extend_from_slice(&explicit);
        let body_start = out.len();
        out.extend_from_slice(payload);
        out.extend(inner_type);
        let Some(body) = out.get_mut(body_start..) else {
            return false;
        };
        match cipher.encrypt_inout_detached(&nonce, ad, body.into()) {
            Ok(tag) => {
                out.extend_from_slice(&tag);
                true
            }
            Err(_) => false,
        }
    }

    /// CBC part of [`Self::seal`]: appends IV || AES-CBC(content || MAC || padding).
    fn seal_cbc(
        &self,
        mac_header: &[u8],
        payload: &[u8],
        inner_type: Option<u8>,
        rng: &mut impl rand::Rng,
        out: &mut Vec<u8>,
    ) {
        let mut mac = hmac_keyed(&self.mac_key);
        mac.update(mac_header);
        mac.update(payload);
        if let Some(t) = inner_type {
            mac.update(&[t]);
        }
        let mac = mac.finalize().into_bytes();

        let mut iv = [0u8; BLOCK_LEN];
        rng.fill_bytes(&mut iv);
        out.extend_from_slice(&iv);
        let body_start = out.len();
        out.extend_from_slice(payload);
        out.extend(inner_type);
        out.extend_from_slice(&mac);
        // Minimal padding: `pad` bytes of value `pad` plus the length byte (also `pad`)
        // bring content || MAC up to a whole number of blocks (RFC 5246 §6.2.3.2).
        let unpadded = out.len() - body_start + 1;
        let pad = (BLOCK_LEN - unpadded % BLOCK_LEN) % BLOCK_LEN;
        // `pad` is below BLOCK_LEN (16), so it fits the padding byte.
        let pad_byte = u8::try_from(pad).unwrap_or_default();
        out.resize(out.len() + pad + 1, pad_byte);

        if let Some(body) = out.get_mut(body_start..) {
            let (blocks, tail) = Array::<u8, U16>::slice_as_chunks_mut(body);
            debug_assert!(tail.is_empty());
            Aes128CbcEnc::new(&Array::from(self.enc_key), &Array::from(iv)).encrypt_blocks(blocks);
        }
    }

    /// Authenticates and decrypts one record; returns the real content type and the
    /// plaintext.
    ///
    /// For a `tls12_cid` record the `DTLSInnerPlaintext` is unwrapped: trailing zero
    /// padding is stripped and the last non-zero byte is the real type (RFC 9146 §4).
    /// Checking that `record.cid` is the CID this connection expects, and that the epoch
    /// and sequence number are acceptable (replay), is the caller's job; both are
    /// authenticated here.
    pub fn open(&self, record: &Record<'_>) -> Result<(u8, Vec<u8>), RecordError> {
        if record.fragment.len() > MAX_CIPHERTEXT_LEN {
            return Err(RecordError::TooLarge);
        }
        let cid = if record.content_type == ContentType::Tls12Cid as u8 {
            // RFC 9146 §3: with a zero-length CID the ordinary record format is used, so a
            // `tls12_cid` record without a CID cannot be genuine.
            if record.cid.is_empty() || record.cid.len() > MAX_CID_LEN {
                return Err(RecordError::Malformed);
            }
            Some(record.cid)
        } else {
            None
        };

        let mut plaintext = match self.cipher {
            RecordCipher::Ccm8 => self.open_aead::<Aes128Ccm8>(record, cid)?,
            RecordCipher::Gcm => self.open_aead::<Aes128Gcm>(record, cid)?,
            RecordCipher::CbcSha256 => self.open_cbc(record, cid)?,
        };

        let content_type = if cid.is_some() {
            // The record authenticated, so looking at its plaintext no longer leaks
            // anything to a forger.
            let Some(pos) = plaintext.iter().rposition(|&b| b != 0) else {
                return Err(RecordError::Malformed);
            };
            let real_type = plaintext.get(pos).copied().unwrap_or_default();
            plaintext.truncate(pos);
            real_type
        } else {
            record.content_type
        };
        if plaintext.len() > MAX_PLAINTEXT_LEN {
            return Err(RecordError::TooLarge);
        }
        Ok((content_type, plaintext))
    }

    fn open_aead<A>(&self, record: &Record<'_>, cid: Option<&[u8]>) -> Result<Vec<u8>, RecordError>
    where
        A: AeadInOut + KeyInit<KeySize = U16> + AeadCore<NonceSize = U12>,
    {
        let bad = |_| RecordError::BadRecordMac;
        let mut r = Reader::new(record.fragment);
        // The explicit nonce is taken as sent: RFC 5288 §3 lets the sender choose it, so
        // it is not required to equal epoch || seq (a wrong one just fails the tag).
        let explicit: [u8; EXPLICIT_NONCE_LEN] = r.array().map_err(bad)?;
        let ct_len = r
            .remaining()
            .checked_sub(A::TagSize::USIZE)
            .ok_or(RecordError::BadRecordMac)?;
        let ciphertext = r.take(ct_len).map_err(bad)?;
        let tag = Tag::<A>::try_from(r.rest()).map_err(|_| RecordError::BadRecordMac)?;

        let ad = record_additional_data(record, cid, ct_len)?;
        let nonce = Nonce::<A>::from(aead_nonce(&self.fixed_iv, &explicit));
        let cipher = A::new(&Array::from(self.enc_key));
        let mut buf = ciphertext.to_vec();
        cipher
            .decrypt_inout_detached(&nonce, &ad, buf.as_mut_slice().into(), &tag)
            .map_err(|_| RecordError::BadRecordMac)?;
        Ok(buf)
    }

    /// CBC part of [`Self::open`] (RFC 5246 §6.2.3.2).
    ///
    /// The padding is checked without branching on its value, and the MAC is always
    /// computed, over the content as if the padding were empty when it is invalid (the
    /// countermeasure RFC 5246 §6.2.3.2 prescribes), and compared in constant time, so bad
    /// padding and a bad MAC take the same path and return the same error.
    ///
    /// Residual leak, documented rather than hidden: the HMAC runs over the content length
    /// implied by the padding, so its duration varies with the padding length by up to a
    /// few SHA-256 blocks (the "Lucky Thirteen" timing channel). Closing it needs a
    /// constant-time HMAC over a secret length, which the `hmac` crate does not offer. The
    /// AEAD suites, which LwM2M prefers, have no such channel.
    fn open_cbc(&self, record: &Record<'_>, cid: Option<&[u8]>) -> Result<Vec<u8>, RecordError> {
        let mut r = Reader::new(record.fragment);
        let iv: [u8; BLOCK_LEN] = r.array().map_err(|_| RecordError::BadRecordMac)?;
        let ciphertext = r.rest();
        // These lengths are visible on the wire, so rejecting them early leaks nothing.
        // The smallest valid body is one MAC plus the padding length byte, in whole blocks.
        if ciphertext.len() < MAC_LEN + BLOCK_LEN || !ciphertext.len().is_multiple_of(BLOCK_LEN) {
            return Err(RecordError::BadRecordMac);
        }
        let mut buf = ciphertext.to_vec();
        let (blocks, _) = Array::<u8, U16>::slice_as_chunks_mut(&mut buf);
        Aes128CbcDec::new(&Array::from(self.enc_key), &Array::from(iv)).decrypt_blocks(blocks);

        let len = buf.len();
        let pad = buf.last().copied().unwrap_or_default();
        // Padding bytes including the length byte: 1..=256.
        let pad_total = u64::from(pad) + 1;
        // Valid iff pad_total + MAC_LEN <= len and the last pad_total bytes all equal `pad`.
        // Scan the last 256 bytes (the most padding can span) regardless of `pad`.
        let mut good = !(pad_total + wide(MAC_LEN)).ct_gt(&wide(len));
        for (i, &b) in buf.iter().rev().take(256).enumerate() {
            let in_padding = wide(i).ct_lt(&pad_total);
            good &= !in_padding | b.ct_eq(&pad);
        }
        // At most 256, so it fits any usize and the fallback is never taken.
        let strip = usize::try_from(u64::conditional_select(&0, &pad_total, good)).unwrap_or(0);
        // `len >= 48` and, when `good`, `strip + 32 <= len`; so this never saturates.
        let content_len = len.saturating_sub(MAC_LEN + strip);

        let content = buf.get(..content_len).unwrap_or_default();
        let received_mac = buf
            .get(content_len..content_len + MAC_LEN)
            .unwrap_or_default();
        let header = record_additional_data(record, cid, content_len)?;
        let mut mac = hmac_keyed(&self.mac_key);
        mac.update(&header);
        mac.update(content);
        let expected = mac.finalize().into_bytes();
        let mac_ok: Choice = expected.as_slice().ct_eq(received_mac);

        if bool::from(good & mac_ok) {
            buf.truncate(content_len);
            Ok(buf)
        } else {
            Err(RecordError::BadRecordMac)
        }
    }
}
