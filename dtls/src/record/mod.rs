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
//! Keys are kept raw in [`DirectionKeys`](crate::crypto::DirectionKeys); the AES key
//! schedule is expanded per call.
//!
//! This file holds the header codec (framing, plaintext records, content types); the
//! `protection` submodule seals and opens records, and `inbound` is the one receive path
//! both roles share: epoch check, replay window, Connection ID check, decryption, and what
//! is dropped rather than answered.
//!
//! Every failure to open a record that an attacker could have caused by altering bytes
//! returns [`RecordError::BadRecordMac`], so AEAD tag failures, CBC padding errors and CBC
//! MAC errors look alike (RFC 5246 §6.2.3.2, §7.2.2). Per RFC 6347 §4.1.2.7 the caller
//! should silently drop such records.

use crate::codec::{wide, DecodeError, EncodeError, Reader, Writer, MAX_U48};

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
/// [`DirectionKeys::open`](crate::crypto::DirectionKeys::open) checks what it decrypts, and the handshake reassembler caps
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

mod inbound;
mod protection;

pub(crate) use inbound::{EpochReader, HandshakeReader, Inbound, Refused};

/// A Connection ID, stored inline.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Cid {
    len: u8,
    bytes: [u8; crate::config::MAX_CID_LEN],
}

impl Cid {
    /// `None` if longer than [`MAX_CID_LEN`](crate::config::MAX_CID_LEN).
    pub fn new(bytes: &[u8]) -> Option<Self> {
        let mut out = Self::default();
        out.bytes.get_mut(..bytes.len())?.copy_from_slice(bytes);
        // The slice above succeeded, so the length is at most MAX_CID_LEN (16).
        out.len = u8::try_from(bytes.len()).ok()?;
        Some(out)
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or_default()
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl std::fmt::Debug for Cid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.as_bytes() {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
