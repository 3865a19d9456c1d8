//! The DTLS 1.2 handshake message layer: the 12-byte handshake header and fragmentation
//! (RFC 6347 §4.2.2, §4.2.3), the transcript form of a message (RFC 6347 §4.2.6), the
//! reassembly of fragmented, reordered and duplicated peer messages ([`reassembly`]), the
//! message bodies of RFC 5246 §7.4 with PSK (RFC 4279), ECC (RFC 8422) and raw public keys
//! (RFC 7250) ([`messages`]), and the hello extensions ([`extensions`]).
//!
//! Nothing here keeps handshake state or does cryptography: it turns bytes into typed
//! messages and back, and every parser reads peer bytes through [`crate::codec::Reader`].

pub mod extensions;
pub mod messages;
pub mod reassembly;

pub use extensions::{ClientExtensions, ServerExtensions};
pub use messages::{
    CertificateBody, CertificateRequest, CertificateVerify, ClientHello, EcdheClientKeyExchange,
    EcdheParams, EcdheServerKeyExchange, Finished, HelloVerifyRequest, PskClientKeyExchange,
    PskServerKeyExchange, ServerHello, ServerHelloDone,
};
pub use reassembly::{Inserted, Reassembler, ReassemblyError};

use crate::codec::{DecodeError, EncodeError, Reader, Writer};

/// Bytes in a DTLS handshake header (RFC 6347 §4.2.2).
pub const HEADER_LEN: usize = 12;

/// Largest value of the 24-bit length fields.
pub const MAX_U24: u32 = crate::codec::MAX_U24;

/// `ProtocolVersion` of DTLS 1.2 on the wire (RFC 6347 §4.1: the one's complement of 1.2).
pub const DTLS_1_2: u16 = 0xFEFD;

/// `ProtocolVersion` of DTLS 1.0. RFC 6347 §4.2.1 recommends HelloVerifyRequest carry it
/// whatever version is negotiated, and clients put it in the first record's header.
pub const DTLS_1_0: u16 = 0xFEFF;

/// Handshake message types (RFC 5246 §7.4, RFC 6347 §4.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum HandshakeType {
    HelloRequest = 0,
    ClientHello = 1,
    ServerHello = 2,
    HelloVerifyRequest = 3,
    Certificate = 11,
    ServerKeyExchange = 12,
    CertificateRequest = 13,
    ServerHelloDone = 14,
    CertificateVerify = 15,
    ClientKeyExchange = 16,
    Finished = 20,
}

impl HandshakeType {
    /// The type with this code, or `None` for one this engine does not know (for example
    /// NewSessionTicket, 4, which a server only sends when the client asked for tickets).
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => Self::HelloRequest,
            1 => Self::ClientHello,
            2 => Self::ServerHello,
            3 => Self::HelloVerifyRequest,
            11 => Self::Certificate,
            12 => Self::ServerKeyExchange,
            13 => Self::CertificateRequest,
            14 => Self::ServerHelloDone,
            15 => Self::CertificateVerify,
            16 => Self::ClientKeyExchange,
            20 => Self::Finished,
            _ => return None,
        })
    }
}

/// The header in front of every handshake fragment (RFC 6347 §4.2.2). `msg_type` stays a
/// raw byte so that a message of unknown type still parses and the state machine, not the
/// framing, decides to answer it with `unexpected_message`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakeHeader {
    pub msg_type: u8,
    /// Length of the whole message body, not of this fragment.
    pub length: u32,
    pub message_seq: u16,
    pub fragment_offset: u32,
    pub fragment_length: u32,
}

impl HandshakeHeader {
    /// Reads a header and checks that the fragment lies within the message: the end of the
    /// fragment, `fragment_offset + fragment_length`, must lie in `0..=length`
    /// ([`DecodeError::OutOfRange`] otherwise). The fragment data itself is not read. How
    /// long a message may be is the reassembler's limit, not the framing's.
    pub fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let header = Self {
            msg_type: r.u8()?,
            length: r.u24()?,
            message_seq: r.u16()?,
            fragment_offset: r.u24()?,
            fragment_length: r.u24()?,
        };
        // Both are at most 2^24 - 1, so the sum fits a u64 (and a u32) without overflow.
        let end = u64::from(header.fragment_offset) + u64::from(header.fragment_length);
        DecodeError::check(
            "handshake fragment_offset + fragment_length",
            end,
            0,
            header.length.into(),
        )?;
        Ok(header)
    }

    /// Appends the 12 header bytes; a length or offset above 2^24 - 1 is refused.
    pub fn write(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.put_u8(self.msg_type);
        out.put_u24("handshake length", self.length)?;
        out.put_u16(self.message_seq);
        out.put_u24("handshake fragment_offset", self.fragment_offset)?;
        out.put_u24("handshake fragment_length", self.fragment_length)
    }

    /// Whether this fragment carries the whole message.
    pub fn is_complete(&self) -> bool {
        self.fragment_offset == 0 && self.fragment_length == self.length
    }
}

/// The handshake fragments in one record's payload, in order (RFC 6347 §4.2.3: a record may
/// carry several). Yields one error and then stops if the payload is malformed.
pub fn parse_fragments(
    record_payload: &[u8],
) -> impl Iterator<Item = Result<(HandshakeHeader, &[u8]), DecodeError>> + '_ {
    Fragments {
        reader: Reader::new(record_payload),
        failed: false,
    }
}

/// Iterator behind [`parse_fragments`].
struct Fragments<'a> {
    reader: Reader<'a>,
    failed: bool,
}

impl<'a> Iterator for Fragments<'a> {
    type Item = Result<(HandshakeHeader, &'a [u8]), DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.reader.is_empty() {
            return None;
        }
        let item = HandshakeHeader::read(&mut self.reader).and_then(|header| {
            let n = usize::try_from(header.fragment_length).map_err(|_| DecodeError::Malformed)?;
            let data = self.reader.take(n)?;
            Ok((header, data))
        });
        // After a malformed fragment the rest of the record cannot be framed, so it is dropped.
        self.failed = item.is_err();
        Some(item)
    }
}

/// The length of a handshake body as its 24-bit field, or the error for a longer one.
fn body_length(body: &[u8]) -> Result<u32, EncodeError> {
    u32::try_from(body.len())
        .ok()
        .filter(|n| *n <= MAX_U24)
        .ok_or_else(|| EncodeError::new("handshake length", body.len(), MAX_U24.into()))
}

/// The message as one unfragmented handshake message: header with offset 0 and
/// fragment_length = length, then the body. This is the form that enters the handshake
/// transcript whatever fragmentation was used on the wire (RFC 6347 §4.2.6). A body longer
/// than 2^24 - 1 bytes cannot be described by the header and is refused.
///
/// `msg_type` is a raw byte so that a peer's message of a type this engine does not name
/// can be hashed as received.
pub fn full_message_raw(
    msg_type: u8,
    message_seq: u16,
    body: &[u8],
) -> Result<Vec<u8>, EncodeError> {
    let length = body_length(body)?;
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    HandshakeHeader {
        msg_type,
        length,
        message_seq,
        fragment_offset: 0,
        fragment_length: length,
    }
    .write(&mut out)?;
    out.extend_from_slice(body);
    Ok(out)
}

/// [`full_message_raw`] for a type this engine knows.
pub fn full_message(
    msg_type: HandshakeType,
    message_seq: u16,
    body: &[u8],
) -> Result<Vec<u8>, EncodeError> {
    full_message_raw(msg_type as u8, message_seq, body)
}

/// Splits a message into fragments of at most `max_fragment` bytes each, header included,
/// so that each fits a record within the path MTU (RFC 6347 §4.2.3, §4.1.1.1). An empty body
/// gives one header-only fragment. `max_fragment` below 13 is treated as 13 so every
/// fragment carries at least one byte of body. A body longer than 2^24 - 1 bytes is refused.
pub fn fragment(
    msg_type: HandshakeType,
    message_seq: u16,
    body: &[u8],
    max_fragment: usize,
) -> Result<Vec<Vec<u8>>, EncodeError> {
    let length = body_length(body)?;
    let per_fragment = max_fragment.saturating_sub(HEADER_LEN).max(1);
    let chunks: Vec<&[u8]> = if body.is_empty() {
        vec![body]
    } else {
        body.chunks(per_fragment).collect()
    };
    let mut out = Vec::with_capacity(chunks.len());
    let mut offset = 0usize;
    for chunk in chunks {
        let mut frag = Vec::with_capacity(HEADER_LEN + chunk.len());
        // Offsets and chunk lengths are at most the body length, which fits 24 bits.
        let wide_err = |n: usize| EncodeError::new("handshake fragment", n, MAX_U24.into());
        HandshakeHeader {
            msg_type: msg_type as u8,
            length,
            message_seq,
            fragment_offset: u32::try_from(offset).map_err(|_| wide_err(offset))?,
            fragment_length: u32::try_from(chunk.len()).map_err(|_| wide_err(chunk.len()))?,
        }
        .write(&mut frag)?;
        frag.extend_from_slice(chunk);
        offset += chunk.len();
        out.push(frag);
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
