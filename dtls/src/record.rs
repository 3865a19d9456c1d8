//! The DTLS 1.2 record layer: splitting a datagram into records (RFC 6347 §4.1, several
//! records may share one datagram per §4.1.1), writing unprotected records, and record
//! protection (RFC 5246 §6.2.3) with the Connection ID record format of RFC 9146 §4–§5.
//!
//! Record protection by cipher:
//!
//! * AES-128-CCM_8 (RFC 6655 §3) and AES-128-GCM (RFC 5288 §3): nonce = 4-byte implicit
//!   `fixed_iv` || 8-byte explicit part, sent in front of the ciphertext. We send
//!   epoch || sequence number as the explicit part (RFC 6655 §3 and RFC 5288 §3 allow the
//!   sequence number; in DTLS it is unique per key because the epoch changes with the key).
//!   Additional data per RFC 5246 §6.2.3.3 with the DTLS 8-byte epoch || seq.
//! * AES-128-CBC + HMAC-SHA256 (RFC 5246 §6.2.3.2): MAC-then-encrypt, random explicit IV.
//! * With a Connection ID (RFC 9146): wire type `tls12_cid` (25), the CID after the
//!   sequence number, the payload wrapped as `DTLSInnerPlaintext` = content || real type
//!   (we add no zero padding), and the RFC 9146 §5 additional data / MAC header beginning
//!   with the 8-byte `seq_num_placeholder`. This follows the final RFC, not the drafts
//!   (draft-ietf-tls-dtls-connection-id-05 and earlier used a different layout).
//!
//! Keys are kept raw in [`DirectionKeys`]; the AES key schedule is expanded per call.
//!
//! Every failure to open a record that an attacker could have caused by altering bytes
//! returns [`RecordError::BadRecordMac`], so AEAD tag failures, CBC padding errors and CBC
//! MAC errors look alike (RFC 5246 §6.2.3.2, §7.2.2). Per RFC 6347 §4.1.2.7 the caller
//! should silently drop such records.

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

use crate::codec::{wide, DecodeError, EncodeError, Reader, Writer, MAX_U48};
use crate::crypto::{hmac_keyed, DirectionKeys};
use crate::suite::RecordCipher;

/// `ProtocolVersion` of DTLS 1.2 on the wire (RFC 6347 §4.1: one's complement of 1.2).
pub const DTLS_1_2: u16 = 0xFEFD;
/// `ProtocolVersion` of DTLS 1.0, which a ClientHello's record may carry (RFC 6347 §4.1).
pub const DTLS_1_0: u16 = 0xFEFF;
/// Bytes in a record header without a Connection ID.
pub const HEADER_LEN: usize = 13;
/// Most plaintext bytes a record may carry (RFC 5246 §6.2.1).
pub const MAX_PLAINTEXT_LEN: usize = 1 << 14;
/// Most fragment bytes a protected record may carry (RFC 5246 §6.2.3).
pub const MAX_CIPHERTEXT_LEN: usize = (1 << 14) + 2048;
/// Longest Connection ID (RFC 9146 §3: `opaque cid<0..2^8-1>`).
pub const MAX_CID_LEN: usize = 255;
/// Highest record sequence number: the field has 48 bits (RFC 6347 §4.1).
pub const MAX_SEQ: u64 = MAX_U48;

/// AES-128-CCM with an 8-byte tag and 12-byte nonce, as RFC 6655 uses it.
type Aes128Ccm8 = Ccm<Aes128, U8, U12>;
type Aes128CbcEnc = cbc::Encryptor<Aes128>;
type Aes128CbcDec = cbc::Decryptor<Aes128>;

/// HMAC-SHA256 output bytes, the CBC suite's MAC length.
const MAC_LEN: usize = 32;
/// AES block size, also the CBC explicit IV length.
const BLOCK_LEN: usize = 16;
/// Bytes of explicit nonce in front of an AEAD ciphertext (RFC 5288 §3, RFC 6655 §3).
const EXPLICIT_NONCE_LEN: usize = 8;

/// Record content types (RFC 5246 §6.2.1, RFC 9146 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ContentType {
    ChangeCipherSpec = 20,
    Alert = 21,
    Handshake = 22,
    ApplicationData = 23,
    /// A record carrying a Connection ID; the real type is inside the ciphertext.
    Tls12Cid = 25,
}

impl ContentType {
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            20 => Some(Self::ChangeCipherSpec),
            21 => Some(Self::Alert),
            22 => Some(Self::Handshake),
            23 => Some(Self::ApplicationData),
            25 => Some(Self::Tls12Cid),
            _ => None,
        }
    }
}

/// One record as it sits in a datagram, borrowing the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// The type on the wire (for `tls12_cid` records, 25, not the real type).
    pub content_type: u8,
    pub version: u16,
    pub epoch: u16,
    /// The 48-bit sequence number.
    pub seq: u64,
    /// The Connection ID; empty unless `content_type` is `tls12_cid`.
    pub cid: &'a [u8],
    /// The (possibly protected) payload.
    pub fragment: &'a [u8],
}

impl Record<'_> {
    /// The wire content type, if it is one we know.
    pub fn content_type(&self) -> Option<ContentType> {
        ContentType::from_u8(self.content_type)
    }
}

/// Iterator over the records of one datagram; see [`split_records`].
#[derive(Debug, Clone)]
pub struct Records<'a> {
    rest: &'a [u8],
    cid_len: usize,
    failed: bool,
}

/// Splits a datagram into its records (RFC 6347 §4.1.1: a datagram may hold several).
///
/// A record of type `tls12_cid` carries `cid_len` bytes of Connection ID between the
/// sequence number and the length (RFC 9146 §4); the receiver knows the length because it
/// chose the CID it asked the peer to use. Parsing stops at the first malformed record: it
/// is yielded as one `Err` and the iterator then ends, because after a bad length field
/// there is no way to find where the next record would start (RFC 6347 §4.1.2.7 lets the
/// receiver drop the rest of the datagram).
///
/// The length field is range-checked before anything is taken: at most 2^14 + 2048
/// (`DTLSCiphertext`, RFC 5246 §6.2.3), else [`DecodeError::OutOfRange`] (the
/// `record_overflow` case). The framing does not know whether a record is protected, so the
/// tighter 2^14 of plaintext (RFC 5246 §6.2.1) is enforced where plaintext is used:
/// [`DirectionKeys::open`] checks what it decrypts, and the handshake reassembler caps
/// epoch-0 messages. The 48-bit sequence number and the 16-bit epoch fill their fields, so
/// every value is in range.
pub fn split_records(datagram: &[u8], cid_len: usize) -> Records<'_> {
    Records {
        rest: datagram,
        cid_len,
        failed: false,
    }
}

impl<'a> Records<'a> {
    fn parse(&mut self) -> Result<Record<'a>, DecodeError> {
        let mut r = Reader::new(self.rest);
        let content_type = r.u8()?;
        let version = r.u16()?;
        let epoch = r.u16()?;
        let seq = r.u48()?;
        let cid = if content_type == ContentType::Tls12Cid as u8 {
            r.take(self.cid_len)?
        } else {
            &[]
        };
        let fragment = r.vec16_in("DTLSCiphertext.length", 0, wide(MAX_CIPHERTEXT_LEN))?;
        self.rest = r.rest();
        Ok(Record {
            content_type,
            version,
            epoch,
            seq,
            cid,
            fragment,
        })
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<Record<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        let item = self.parse();
        self.failed = item.is_err();
        Some(item)
    }
}

impl std::iter::FusedIterator for Records<'_> {}

/// Appends one unprotected record (`DTLSPlaintext`, RFC 6347 §4.1), as used in epoch 0.
///
/// A `payload` longer than [`MAX_PLAINTEXT_LEN`] or a `seq` above [`MAX_SEQ`] is refused and
/// nothing is written: the record would either break RFC 5246 §6.2.1 or carry a sequence
/// number cut to its low 48 bits.
pub fn write_plaintext(
    content_type: ContentType,
    version: u16,
    epoch: u16,
    seq: u64,
    payload: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    EncodeError::check(
        "DTLSPlaintext.length",
        payload.len(),
        wide(MAX_PLAINTEXT_LEN),
    )?;
    let start = out.len();
    let written = (|| {
        out.put_u8(content_type as u8);
        out.put_u16(version);
        out.put_u16(epoch);
        out.put_u48("record sequence_number", seq)?;
        out.put_vec16("DTLSPlaintext.length", payload)
    })();
    if written.is_err() {
        out.truncate(start);
    }
    written
}

/// Why a protected record could not be opened.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum RecordError {
    /// Authentication failed: bad AEAD tag, bad CBC padding or bad MAC, or a fragment too
    /// short to hold them. Deliberately one variant so the failures are indistinguishable
    /// (RFC 5246 §6.2.3.2).
    #[error("bad record MAC")]
    BadRecordMac,
    /// The record authenticated (or is structurally impossible, such as a `tls12_cid`
    /// record without a CID) but its content is invalid, such as a `DTLSInnerPlaintext`
    /// with no content type (RFC 9146 §4).
    #[error("malformed record")]
    Malformed,
    /// The ciphertext or the decrypted plaintext is longer than RFC 5246 §6.2 allows
    /// (`record_overflow`).
    #[error("record too large")]
    TooLarge,
}

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
fn additional_data(
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
fn aead_nonce(fixed_iv: &[u8; 4], explicit: &[u8; EXPLICIT_NONCE_LEN]) -> [u8; 12] {
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
    /// a `seq` above [`MAX_SEQ`] is refused with an [`EncodeError`] and nothing is appended:
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::hex;
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
        assert_eq!(rec, hex(CCM8_PLAIN_VECTOR));
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
        assert_eq!(rec, hex(GCM_PLAIN_VECTOR));
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
        assert_eq!(rec, hex(CBC_PLAIN_VECTOR));
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
            assert_eq!(rec, hex(expected), "{cipher:?}");
        }
    }

    #[test]
    fn ccm8_nist_sp800_38c_example_3() {
        // NIST SP 800-38C Appendix C, Example 3: 12-byte nonce, 8-byte tag, as RFC 6655.
        let key = hex("404142434445464748494a4b4c4d4e4f");
        let nonce = hex("101112131415161718191a1b");
        let ad = hex("000102030405060708090a0b0c0d0e0f10111213");
        let mut buf = hex("202122232425262728292a2b2c2d2e2f3031323334353637");
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
            hex("e3b201a9f5b71a7a9b1ceaeccd97e70b6176aad9a4428aa5484392fbc1b09951")
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
        assert!(
            write_plaintext(ContentType::Handshake, DTLS_1_2, 0, 1, &too_long, &mut out).is_err()
        );
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
    const CCM8_CID_VECTOR: &str = "19fefd0001000000000005c1d00007001d00010000000000054498625bc08ae45f6b5a658884d0e11ab1f60eb2ff";
    const GCM_CID_VECTOR: &str = "19fefd0001000000000005c1d0000700250001000000000005a46f3dea4bbbcaf88328819263fb38d0061b60ce52f5d55467f2b2cf33";
    const CBC_CID_VECTOR: &str = "19fefd0001000000000005c1d000070040424242424242424242424242424242424e9be1d0424dbfd01526dc38761326713d5ce5e9d1b288aabcbc763107127e0a63a7fa17e3e3c821f2a44ab1d41f1cf8";
}
