//! Hello extensions (RFC 5246 §7.4.1.4) understood by this engine:
//!
//! | type | name | RFC |
//! | --- | --- | --- |
//! | 10 | supported_groups (elliptic_curves) | 8422 §5.1.1 |
//! | 11 | ec_point_formats | 8422 §5.1.2 |
//! | 13 | signature_algorithms | 5246 §7.4.1.4.1 |
//! | 19 | client_certificate_type | 7250 §4.1 |
//! | 20 | server_certificate_type | 7250 §4.1 |
//! | 22 | encrypt_then_mac | 7366 §2 |
//! | 23 | extended_master_secret | 7627 §5.1 |
//! | 35 | session_ticket | 5077 §3.2 |
//! | 54 | connection_id | 9146 §3 |
//! | 0xff01 | renegotiation_info | 5746 §3.2 |
//!
//! The ClientHello and ServerHello forms differ (the certificate type extensions carry a
//! list from the client and one byte from the server, RFC 7250 §4.2), hence two structs.
//! Unknown types are recorded but not kept: a server ignores what it does not understand
//! (RFC 5246 §7.4.1.4), and a client must reject any extension it did not offer.
//! A type appearing twice is a decode error (RFC 5246 §7.4.1.4: "There MUST NOT be more
//! than one extension of the same type").
//!
//! Lengths: each extension's data is a `vec16` inside the block, so it cannot outrun it; the
//! lists inside are checked against their RFC ranges (`<1..2^8-1>` for byte lists,
//! `<2..2^16-2>` and even for lists of two-byte values) and refused as
//! [`DecodeError::OutOfRange`] naming the extension. The Connection ID is taken at its RFC
//! 9146 range `<0..2^8-1>`; whether this engine can use one that long
//! ([`MAX_CID_LEN`](crate::config::MAX_CID_LEN)) is decided where CIDs are negotiated.

use crate::codec::{DecodeError, EncodeError, Reader, Writer};

pub const EXT_SUPPORTED_GROUPS: u16 = 10;
pub const EXT_EC_POINT_FORMATS: u16 = 11;
pub const EXT_SIGNATURE_ALGORITHMS: u16 = 13;
pub const EXT_CLIENT_CERTIFICATE_TYPE: u16 = 19;
pub const EXT_SERVER_CERTIFICATE_TYPE: u16 = 20;
pub const EXT_ENCRYPT_THEN_MAC: u16 = 22;
pub const EXT_EXTENDED_MASTER_SECRET: u16 = 23;
pub const EXT_SESSION_TICKET: u16 = 35;
/// RFC 9146's code point. Drafts of it used 53, and some older stacks a private 254; those
/// land in `unknown` and so are not negotiated.
pub const EXT_CONNECTION_ID: u16 = 54;
pub const EXT_RENEGOTIATION_INFO: u16 = 0xff01;

/// Certificate type X.509 (RFC 7250 §3, IANA TLS Certificate Types).
pub const CERT_TYPE_X509: u8 = 0;
/// Certificate type RawPublicKey (RFC 7250 §3).
pub const CERT_TYPE_RAW_PUBLIC_KEY: u8 = 2;
/// NamedGroup secp256r1 (RFC 8422 §5.1.1).
pub const GROUP_SECP256R1: u16 = 23;
/// ECPointFormat uncompressed (RFC 8422 §5.1.2), the only one RFC 8422 still allows.
pub const POINT_FORMAT_UNCOMPRESSED: u8 = 0;
/// SignatureAndHashAlgorithm {sha256, ecdsa} (RFC 5246 §7.4.1.4.1), the TLS 1.3 name
/// ecdsa_secp256r1_sha256.
pub const SIG_ECDSA_SECP256R1_SHA256: u16 = 0x0403;

/// Extensions of a ClientHello. `present` says whether the extensions block was there at
/// all: a ClientHello without one is legal (RFC 5246 §7.4.1.2) and must re-encode the same.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientExtensions {
    /// The extensions block was present (possibly empty). Encoding writes the block when
    /// this is set or any extension is set.
    pub present: bool,
    pub extended_master_secret: bool,
    /// `renegotiated_connection`: empty on an initial handshake (RFC 5746 §3.4).
    pub renegotiation_info: Option<Vec<u8>>,
    /// The CID the client wants to receive in records (RFC 9146 §3); empty means it asks the
    /// server to use one but will not itself receive one.
    pub connection_id: Option<Vec<u8>>,
    pub supported_groups: Option<Vec<u16>>,
    pub ec_point_formats: Option<Vec<u8>>,
    pub signature_algorithms: Option<Vec<u16>>,
    /// Certificate types the client can send, in preference order (RFC 7250 §4.1).
    pub client_certificate_types: Option<Vec<u8>>,
    /// Certificate types the client can process from the server, in preference order.
    pub server_certificate_types: Option<Vec<u8>>,
    pub encrypt_then_mac: bool,
    /// The client offered session tickets (RFC 5077). Only presence is kept: a ticket the
    /// client may carry in it is dropped, since this engine resumes by session ID.
    pub session_ticket: bool,
    /// Extension types seen but not understood, in order.
    pub unknown: Vec<u16>,
}

/// Extensions of a ServerHello: only answers to what the client offered.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServerExtensions {
    /// The extensions block was present (possibly empty).
    pub present: bool,
    pub extended_master_secret: bool,
    /// On an initial handshake an empty `renegotiated_connection` (RFC 5746 §3.6).
    pub renegotiation_info: Option<Vec<u8>>,
    /// The CID the server wants to receive in records (RFC 9146 §3).
    pub connection_id: Option<Vec<u8>>,
    pub ec_point_formats: Option<Vec<u8>>,
    /// The one certificate type the client is to send (RFC 7250 §4.2).
    pub client_certificate_type: Option<u8>,
    /// The one certificate type the server will send.
    pub server_certificate_type: Option<u8>,
    pub encrypt_then_mac: bool,
    /// Extension types seen but not understood; a client answers any with
    /// `unsupported_extension` since it cannot have offered them.
    pub unknown: Vec<u16>,
}

/// Walks an extensions block (the contents of the outer vec16) and hands each
/// `(type, data)` to `f`, after checking that no type repeats.
fn for_each_extension(
    block: &[u8],
    mut f: impl FnMut(u16, &[u8]) -> Result<(), DecodeError>,
) -> Result<(), DecodeError> {
    let mut r = Reader::new(block);
    // The block is at most 64 KiB, so at most 16 Ki extensions: sorting the types once
    // keeps the duplicate check O(n log n) where a pairwise search would let a peer make
    // the server do hundreds of millions of comparisons.
    let mut seen = Vec::new();
    while !r.is_empty() {
        let ext_type = r.u16()?;
        let data = r.vec16()?;
        seen.push(ext_type);
        f(ext_type, data)?;
    }
    seen.sort_unstable();
    if seen.windows(2).any(|w| w.first() == w.get(1)) {
        return Err(DecodeError::Malformed);
    }
    Ok(())
}

/// Reads an extension whose data must be empty.
fn empty(data: &[u8]) -> Result<bool, DecodeError> {
    Reader::new(data).finish()?;
    Ok(true)
}

/// Reads extension data that is exactly one vec8.
fn one_vec8(data: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let mut r = Reader::new(data);
    let v = r.vec8()?.to_vec();
    r.finish()?;
    Ok(v)
}

/// Reads extension data that is one non-empty vec8 list of u8 values (`<1..2^8-1>`).
fn u8_list(data: &[u8], field: &'static str) -> Result<Vec<u8>, DecodeError> {
    let mut r = Reader::new(data);
    let v = r.vec8_in(field, 1, u8::MAX.into())?.to_vec();
    r.finish()?;
    Ok(v)
}

/// Reads extension data that is one vec16 list of u16 values (`<2..2^16-2>`, even).
fn u16_list(data: &[u8], field: &'static str) -> Result<Vec<u16>, DecodeError> {
    let mut outer = Reader::new(data);
    let mut r = Reader::new(outer.vec16_in(field, 2, 0xfffe)?);
    outer.finish()?;
    if !r.remaining().is_multiple_of(2) {
        return Err(DecodeError::Malformed);
    }
    let mut out = Vec::with_capacity(r.remaining() / 2);
    while !r.is_empty() {
        out.push(r.u16()?);
    }
    Ok(out)
}

/// Reads extension data that is exactly one byte.
fn one_u8(data: &[u8]) -> Result<u8, DecodeError> {
    let mut r = Reader::new(data);
    let v = r.u8()?;
    r.finish()?;
    Ok(v)
}

/// Appends one extension, its data produced by `f`.
fn put_ext(
    out: &mut Vec<u8>,
    ext_type: u16,
    f: impl FnOnce(&mut Vec<u8>) -> Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    out.put_u16(ext_type);
    let at = out.begin_len16();
    f(out)?;
    out.patch_len16("extension_data", at)
}

fn put_u16_list(out: &mut Vec<u8>, field: &'static str, list: &[u16]) -> Result<(), EncodeError> {
    let at = out.begin_len16();
    for v in list {
        out.put_u16(*v);
    }
    out.patch_len16(field, at)
}

impl ClientExtensions {
    /// Parses the contents of the extensions vec16 (without its length prefix).
    pub fn parse(block: &[u8]) -> Result<Self, DecodeError> {
        let mut e = Self {
            present: true,
            ..Self::default()
        };
        for_each_extension(block, |ext_type, data| {
            match ext_type {
                EXT_EXTENDED_MASTER_SECRET => e.extended_master_secret = empty(data)?,
                EXT_RENEGOTIATION_INFO => e.renegotiation_info = Some(one_vec8(data)?),
                EXT_CONNECTION_ID => e.connection_id = Some(one_vec8(data)?),
                EXT_SUPPORTED_GROUPS => {
                    e.supported_groups = Some(u16_list(data, "supported_groups length")?)
                }
                EXT_EC_POINT_FORMATS => {
                    e.ec_point_formats = Some(u8_list(data, "ec_point_formats length")?)
                }
                EXT_SIGNATURE_ALGORITHMS => {
                    e.signature_algorithms = Some(u16_list(data, "signature_algorithms length")?)
                }
                EXT_CLIENT_CERTIFICATE_TYPE => {
                    e.client_certificate_types =
                        Some(u8_list(data, "client_certificate_types length")?)
                }
                EXT_SERVER_CERTIFICATE_TYPE => {
                    e.server_certificate_types =
                        Some(u8_list(data, "server_certificate_types length")?)
                }
                EXT_ENCRYPT_THEN_MAC => e.encrypt_then_mac = empty(data)?,
                // Any ticket content is accepted and dropped (see the field's doc).
                EXT_SESSION_TICKET => e.session_ticket = true,
                other => e.unknown.push(other),
            }
            Ok(())
        })?;
        Ok(e)
    }

    /// Whether any extension this struct can encode is set.
    pub fn is_empty(&self) -> bool {
        !self.extended_master_secret
            && self.renegotiation_info.is_none()
            && self.connection_id.is_none()
            && self.supported_groups.is_none()
            && self.ec_point_formats.is_none()
            && self.signature_algorithms.is_none()
            && self.client_certificate_types.is_none()
            && self.server_certificate_types.is_none()
            && !self.encrypt_then_mac
            && !self.session_ticket
    }

    /// Appends the extensions block with its vec16 length, or nothing when no extension is
    /// set and `present` is false. Unknown types are not written: their data was not kept.
    pub fn write(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        if !self.present && self.is_empty() {
            return Ok(());
        }
        let at = out.begin_len16();
        if let Some(v) = &self.supported_groups {
            put_ext(out, EXT_SUPPORTED_GROUPS, |o| {
                put_u16_list(o, "supported_groups", v)
            })?;
        }
        if let Some(v) = &self.ec_point_formats {
            put_ext(out, EXT_EC_POINT_FORMATS, |o| {
                o.put_vec8("ec_point_formats", v)
            })?;
        }
        if let Some(v) = &self.signature_algorithms {
            put_ext(out, EXT_SIGNATURE_ALGORITHMS, |o| {
                put_u16_list(o, "signature_algorithms", v)
            })?;
        }
        if let Some(v) = &self.client_certificate_types {
            put_ext(out, EXT_CLIENT_CERTIFICATE_TYPE, |o| {
                o.put_vec8("client_certificate_types", v)
            })?;
        }
        if let Some(v) = &self.server_certificate_types {
            put_ext(out, EXT_SERVER_CERTIFICATE_TYPE, |o| {
                o.put_vec8("server_certificate_types", v)
            })?;
        }
        if self.encrypt_then_mac {
            put_ext(out, EXT_ENCRYPT_THEN_MAC, |_| Ok(()))?;
        }
        if self.extended_master_secret {
            put_ext(out, EXT_EXTENDED_MASTER_SECRET, |_| Ok(()))?;
        }
        if self.session_ticket {
            put_ext(out, EXT_SESSION_TICKET, |_| Ok(()))?;
        }
        if let Some(v) = &self.connection_id {
            put_ext(out, EXT_CONNECTION_ID, |o| o.put_vec8("connection_id", v))?;
        }
        if let Some(v) = &self.renegotiation_info {
            put_ext(out, EXT_RENEGOTIATION_INFO, |o| {
                o.put_vec8("renegotiation_info", v)
            })?;
        }
        out.patch_len16("extensions", at)
    }
}

impl ServerExtensions {
    /// Parses the contents of the extensions vec16 (without its length prefix).
    pub fn parse(block: &[u8]) -> Result<Self, DecodeError> {
        let mut e = Self {
            present: true,
            ..Self::default()
        };
        for_each_extension(block, |ext_type, data| {
            match ext_type {
                EXT_EXTENDED_MASTER_SECRET => e.extended_master_secret = empty(data)?,
                EXT_RENEGOTIATION_INFO => e.renegotiation_info = Some(one_vec8(data)?),
                EXT_CONNECTION_ID => e.connection_id = Some(one_vec8(data)?),
                EXT_EC_POINT_FORMATS => {
                    e.ec_point_formats = Some(u8_list(data, "ec_point_formats length")?)
                }
                EXT_CLIENT_CERTIFICATE_TYPE => e.client_certificate_type = Some(one_u8(data)?),
                EXT_SERVER_CERTIFICATE_TYPE => e.server_certificate_type = Some(one_u8(data)?),
                EXT_ENCRYPT_THEN_MAC => e.encrypt_then_mac = empty(data)?,
                other => e.unknown.push(other),
            }
            Ok(())
        })?;
        Ok(e)
    }

    /// Whether any extension this struct can encode is set.
    pub fn is_empty(&self) -> bool {
        !self.extended_master_secret
            && self.renegotiation_info.is_none()
            && self.connection_id.is_none()
            && self.ec_point_formats.is_none()
            && self.client_certificate_type.is_none()
            && self.server_certificate_type.is_none()
            && !self.encrypt_then_mac
    }

    /// Appends the extensions block with its vec16 length, or nothing when no extension is
    /// set and `present` is false. Unknown types are not written.
    pub fn write(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        if !self.present && self.is_empty() {
            return Ok(());
        }
        let at = out.begin_len16();
        if let Some(v) = &self.renegotiation_info {
            put_ext(out, EXT_RENEGOTIATION_INFO, |o| {
                o.put_vec8("renegotiation_info", v)
            })?;
        }
        if let Some(v) = &self.ec_point_formats {
            put_ext(out, EXT_EC_POINT_FORMATS, |o| {
                o.put_vec8("ec_point_formats", v)
            })?;
        }
        if let Some(v) = self.client_certificate_type {
            put_ext(out, EXT_CLIENT_CERTIFICATE_TYPE, |o| {
                o.put_u8(v);
                Ok(())
            })?;
        }
        if let Some(v) = self.server_certificate_type {
            put_ext(out, EXT_SERVER_CERTIFICATE_TYPE, |o| {
                o.put_u8(v);
                Ok(())
            })?;
        }
        if self.encrypt_then_mac {
            put_ext(out, EXT_ENCRYPT_THEN_MAC, |_| Ok(()))?;
        }
        if self.extended_master_secret {
            put_ext(out, EXT_EXTENDED_MASTER_SECRET, |_| Ok(()))?;
        }
        if let Some(v) = &self.connection_id {
            put_ext(out, EXT_CONNECTION_ID, |o| o.put_vec8("connection_id", v))?;
        }
        out.patch_len16("extensions", at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full_client() -> ClientExtensions {
        ClientExtensions {
            present: true,
            extended_master_secret: true,
            renegotiation_info: Some(vec![]),
            connection_id: Some(vec![1, 2, 3, 4]),
            supported_groups: Some(vec![GROUP_SECP256R1]),
            ec_point_formats: Some(vec![POINT_FORMAT_UNCOMPRESSED]),
            signature_algorithms: Some(vec![SIG_ECDSA_SECP256R1_SHA256]),
            client_certificate_types: Some(vec![CERT_TYPE_RAW_PUBLIC_KEY, CERT_TYPE_X509]),
            server_certificate_types: Some(vec![CERT_TYPE_RAW_PUBLIC_KEY]),
            encrypt_then_mac: true,
            session_ticket: true,
            unknown: vec![],
        }
    }

    fn encoded_block<F: Fn(&mut Vec<u8>) -> Result<(), EncodeError>>(f: F) -> Vec<u8> {
        let mut out = Vec::new();
        f(&mut out).unwrap();
        out
    }

    #[test]
    fn client_round_trip() {
        let e = full_client();
        let bytes = encoded_block(|o| e.write(o));
        let mut r = Reader::new(&bytes);
        let block = r.vec16().unwrap();
        assert!(r.finish().is_ok());
        assert_eq!(ClientExtensions::parse(block).unwrap(), e);
    }

    #[test]
    fn server_round_trip() {
        let e = ServerExtensions {
            present: true,
            extended_master_secret: true,
            renegotiation_info: Some(vec![]),
            connection_id: Some(vec![9; 8]),
            ec_point_formats: Some(vec![0]),
            client_certificate_type: Some(CERT_TYPE_RAW_PUBLIC_KEY),
            server_certificate_type: Some(CERT_TYPE_X509),
            encrypt_then_mac: true,
            unknown: vec![],
        };
        let bytes = encoded_block(|o| e.write(o));
        let mut r = Reader::new(&bytes);
        assert_eq!(ServerExtensions::parse(r.vec16().unwrap()).unwrap(), e);
    }

    #[test]
    fn absent_and_empty_blocks_differ() {
        assert!(encoded_block(|o| ClientExtensions::default().write(o)).is_empty());
        let empty_block = ClientExtensions {
            present: true,
            ..Default::default()
        };
        assert_eq!(encoded_block(|o| empty_block.write(o)), vec![0, 0]);
        assert!(encoded_block(|o| ServerExtensions::default().write(o)).is_empty());
    }

    #[test]
    fn connection_id_by_spec() {
        // RFC 9146 §3: extension_type 54, extension_data = opaque cid<0..2^8-1>.
        let block = [0x00, 0x36, 0x00, 0x03, 0x02, 0xab, 0xcd];
        let e = ClientExtensions::parse(&block).unwrap();
        assert_eq!(e.connection_id, Some(vec![0xab, 0xcd]));
        let s = ServerExtensions::parse(&block).unwrap();
        assert_eq!(s.connection_id, Some(vec![0xab, 0xcd]));
        // An empty CID is legal: "I will not receive a CID but you may send me one".
        let e = ClientExtensions::parse(&[0x00, 0x36, 0x00, 0x01, 0x00]).unwrap();
        assert_eq!(e.connection_id, Some(vec![]));
    }

    #[test]
    fn certificate_types_differ_between_hellos() {
        // RFC 7250 §4.1: the client sends a vec8 list; §4.2: the server answers one byte.
        let client = [0x00, 0x13, 0x00, 0x03, 0x02, 0x02, 0x00];
        let e = ClientExtensions::parse(&client).unwrap();
        assert_eq!(e.client_certificate_types, Some(vec![2, 0]));
        assert!(ServerExtensions::parse(&client).is_err());
        let server = [0x00, 0x14, 0x00, 0x01, 0x02];
        let s = ServerExtensions::parse(&server).unwrap();
        assert_eq!(s.server_certificate_type, Some(CERT_TYPE_RAW_PUBLIC_KEY));
        // A one-byte list length of 2 with no entries is malformed for the client form.
        assert!(ClientExtensions::parse(&server).is_err());
    }

    #[test]
    fn duplicates_are_rejected() {
        let block = [0x00, 0x17, 0x00, 0x00, 0x00, 0x17, 0x00, 0x00];
        assert!(ClientExtensions::parse(&block).is_err());
        assert!(ServerExtensions::parse(&block).is_err());
        // Unknown types count too.
        let block = [0xaa, 0xaa, 0x00, 0x00, 0xaa, 0xaa, 0x00, 0x01, 0x00];
        assert!(ClientExtensions::parse(&block).is_err());
    }

    #[test]
    fn unknown_types_are_recorded() {
        let block = [0xaa, 0xaa, 0x00, 0x02, 0x01, 0x02, 0x00, 0x17, 0x00, 0x00];
        let e = ClientExtensions::parse(&block).unwrap();
        assert_eq!(e.unknown, vec![0xaaaa]);
        assert!(e.extended_master_secret);
    }

    #[test]
    fn malformed_data_is_rejected() {
        // EMS and ETM must be empty.
        assert!(ClientExtensions::parse(&[0x00, 0x17, 0x00, 0x01, 0x00]).is_err());
        assert!(ClientExtensions::parse(&[0x00, 0x16, 0x00, 0x01, 0x00]).is_err());
        // Odd-length u16 list, empty u16 list, trailing bytes after a vec8.
        assert!(ClientExtensions::parse(&[0x00, 0x0a, 0x00, 0x03, 0x00, 0x01, 0x17]).is_err());
        assert!(ClientExtensions::parse(&[0x00, 0x0a, 0x00, 0x02, 0x00, 0x00]).is_err());
        assert!(ClientExtensions::parse(&[0xff, 0x01, 0x00, 0x02, 0x00, 0x00]).is_err());
        // Truncated extension header and data.
        assert!(ClientExtensions::parse(&[0x00]).is_err());
        assert!(ClientExtensions::parse(&[0x00, 0x17, 0x00, 0x01]).is_err());
    }
}
