//! Handshake message bodies (RFC 5246 §7.4 as amended for DTLS by RFC 6347 §4.2.1 and
//! §4.3.2), with the PSK key exchange of RFC 4279 §2, the ECDHE key exchange of RFC 8422
//! §5.4 and §5.7, and the raw public key Certificate of RFC 7250 §3.
//!
//! `parse` takes a reassembled body (no handshake header) and rejects trailing bytes and
//! lengths outside the ranges the RFCs give; `encode` produces the body only. Lists the RFCs
//! require to be non-empty are rejected when empty, since a peer sending one is broken and
//! `decode_error` is the specified answer (RFC 5246 §7.2.2). A length outside its range is
//! [`DecodeError::OutOfRange`] naming the field (the names below are the RFCs'); the ranges
//! are the `<min..max>` of the RFC's structure, tightened where this engine has a limit of
//! its own ([`MAX_CERTIFICATES`]). Every body reaches `parse` through the reassembler, which
//! already caps a message at 16 KiB, so no accepted length can make a parser allocate more.
//!
//! `encode` refuses, with an [`EncodeError`] naming the field, a value too long for its
//! length prefix (say a PSK identity over 65535 bytes from the configuration), rather than
//! write a prefix cut to its low bytes.

use super::extensions::{ClientExtensions, ServerExtensions};
use super::HandshakeType;
use crate::codec::{wide, DecodeError, EncodeError, Reader, Writer, MAX_U24};

/// TLS_EMPTY_RENEGOTIATION_INFO_SCSV (RFC 5746 §3.3): a client's way of saying it supports
/// secure renegotiation without sending the extension.
pub const TLS_EMPTY_RENEGOTIATION_INFO_SCSV: u16 = 0x00FF;

/// ECCurveType named_curve (RFC 8422 §5.4), the only curve type RFC 8422 keeps.
pub const CURVE_TYPE_NAMED_CURVE: u8 = 3;

/// Longest session ID (RFC 5246 §7.4.1.2: `SessionID<0..32>`).
pub const MAX_SESSION_ID_LEN: usize = 32;

/// Bytes of Finished.verify_data for every TLS 1.2 suite this engine speaks (RFC 5246 §7.4.9).
pub const VERIFY_DATA_LEN: usize = 12;
/// Most certificates accepted in one Certificate message. RFC 5246 sets no count, only the
/// 2^24 - 1 byte total; LwM2M devices present 1 to 3, webpki builds paths of at most 6
/// intermediates, and the application's credential check sees the whole list, so more than
/// this is refused before anyone looks at them.
pub const MAX_CERTIFICATES: usize = 10;

/// Reads a vec16 list of u16 values whose byte length must lie in `2..=65534` (the
/// `<2..2^16-2>` of RFC 5246's lists of two-byte values) and be even.
fn read_u16_list(r: &mut Reader<'_>, field: &'static str) -> Result<Vec<u16>, DecodeError> {
    let mut list = Reader::new(r.vec16_in(field, 2, 0xfffe)?);
    if !list.remaining().is_multiple_of(2) {
        return Err(DecodeError::Malformed);
    }
    let mut out = Vec::with_capacity(list.remaining() / 2);
    while !list.is_empty() {
        out.push(list.u16()?);
    }
    Ok(out)
}

fn write_u16_list(out: &mut Vec<u8>, field: &'static str, list: &[u16]) -> Result<(), EncodeError> {
    let at = out.begin_len16();
    for v in list {
        out.put_u16(*v);
    }
    out.patch_len16(field, at)
}

/// Reads a vec8 that must not be empty (`<1..2^8-1>`).
fn read_non_empty_vec8<'a>(
    r: &mut Reader<'a>,
    field: &'static str,
) -> Result<&'a [u8], DecodeError> {
    r.vec8_in(field, 1, u8::MAX.into())
}

/// `SessionID session_id<0..32>` (RFC 5246 §7.4.1.2).
fn read_session_id(r: &mut Reader<'_>, field: &'static str) -> Result<Vec<u8>, DecodeError> {
    Ok(r.vec8_in(field, 0, wide(MAX_SESSION_ID_LEN))?.to_vec())
}

/// ClientHello (RFC 6347 §4.2.1: the TLS 1.2 ClientHello with a cookie after the session ID).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHello {
    pub client_version: u16,
    pub random: [u8; 32],
    /// Non-empty when the client asks to resume a session; at most 32 bytes.
    pub session_id: Vec<u8>,
    /// Empty in the first ClientHello, then the cookie from HelloVerifyRequest (≤ 255 bytes).
    pub cookie: Vec<u8>,
    pub cipher_suites: Vec<u16>,
    pub compression_methods: Vec<u8>,
    pub extensions: ClientExtensions,
}

impl ClientHello {
    pub const MSG_TYPE: HandshakeType = HandshakeType::ClientHello;

    pub fn parse(body: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body);
        let client_version = r.u16()?;
        let random = r.array()?;
        let session_id = read_session_id(&mut r, "ClientHello.session_id length")?;
        // `opaque cookie<0..2^8-1>` (RFC 6347 §4.2.1): every value of the length byte.
        let cookie = r.vec8()?.to_vec();
        // CipherSuite cipher_suites<2..2^16-2>, CompressionMethod compression_methods<1..2^8-1>.
        let cipher_suites = read_u16_list(&mut r, "ClientHello.cipher_suites length")?;
        let compression_methods =
            read_non_empty_vec8(&mut r, "ClientHello.compression_methods length")?.to_vec();
        // RFC 5246 §7.4.1.2: the extensions block may be absent altogether.
        let extensions = if r.is_empty() {
            ClientExtensions::default()
        } else {
            let block = r.vec16()?;
            r.finish()?;
            ClientExtensions::parse(block)?
        };
        Ok(Self {
            client_version,
            random,
            session_id,
            cookie,
            cipher_suites,
            compression_methods,
            extensions,
        })
    }

    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(64 + 2 * self.cipher_suites.len());
        out.put_u16(self.client_version);
        out.extend_from_slice(&self.random);
        out.put_vec8("ClientHello.session_id", &self.session_id)?;
        out.put_vec8("ClientHello.cookie", &self.cookie)?;
        write_u16_list(&mut out, "ClientHello.cipher_suites", &self.cipher_suites)?;
        out.put_vec8("ClientHello.compression_methods", &self.compression_methods)?;
        self.extensions.write(&mut out)?;
        Ok(out)
    }

    /// Whether the client offered TLS_EMPTY_RENEGOTIATION_INFO_SCSV (RFC 5746 §3.3), which
    /// counts as an empty renegotiation_info extension.
    pub fn has_scsv(&self) -> bool {
        self.cipher_suites
            .contains(&TLS_EMPTY_RENEGOTIATION_INFO_SCSV)
    }
}

/// HelloVerifyRequest (RFC 6347 §4.2.1): the server's stateless cookie challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelloVerifyRequest {
    pub server_version: u16,
    /// `opaque cookie<0..2^8-1>`.
    pub cookie: Vec<u8>,
}

impl HelloVerifyRequest {
    pub const MSG_TYPE: HandshakeType = HandshakeType::HelloVerifyRequest;

    pub fn parse(body: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body);
        let server_version = r.u16()?;
        // `opaque cookie<0..2^8-1>`: every value of the length byte.
        let cookie = r.vec8()?.to_vec();
        r.finish()?;
        Ok(Self {
            server_version,
            cookie,
        })
    }

    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(3 + self.cookie.len());
        out.put_u16(self.server_version);
        out.put_vec8("HelloVerifyRequest.cookie", &self.cookie)?;
        Ok(out)
    }
}

/// ServerHello (RFC 5246 §7.4.1.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerHello {
    pub server_version: u16,
    pub random: [u8; 32],
    /// The session's ID; equal to the client's on resumption, empty if not resumable.
    pub session_id: Vec<u8>,
    pub cipher_suite: u16,
    pub compression_method: u8,
    pub extensions: ServerExtensions,
}

impl ServerHello {
    pub const MSG_TYPE: HandshakeType = HandshakeType::ServerHello;

    pub fn parse(body: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body);
        let server_version = r.u16()?;
        let random = r.array()?;
        let session_id = read_session_id(&mut r, "ServerHello.session_id length")?;
        let cipher_suite = r.u16()?;
        let compression_method = r.u8()?;
        let extensions = if r.is_empty() {
            ServerExtensions::default()
        } else {
            let block = r.vec16()?;
            r.finish()?;
            ServerExtensions::parse(block)?
        };
        Ok(Self {
            server_version,
            random,
            session_id,
            cipher_suite,
            compression_method,
            extensions,
        })
    }

    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(80);
        out.put_u16(self.server_version);
        out.extend_from_slice(&self.random);
        out.put_vec8("ServerHello.session_id", &self.session_id)?;
        out.put_u16(self.cipher_suite);
        out.put_u8(self.compression_method);
        self.extensions.write(&mut out)?;
        Ok(out)
    }
}

/// The Certificate message body. Its form depends on the negotiated certificate type, which
/// the message itself does not say, so the caller picks the parser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateBody {
    /// `ASN.1Cert certificate_list<0..2^24-1>` of `opaque ASN.1Cert<1..2^24-1>` (RFC 5246
    /// §7.4.2): DER certificates, end-entity first. Empty when a client has no certificate
    /// to offer (RFC 5246 §7.4.6).
    X509(Vec<Vec<u8>>),
    /// `opaque ASN.1_subjectPublicKeyInfo<1..2^24-1>` (RFC 7250 §3): one DER
    /// SubjectPublicKeyInfo, not wrapped in a list.
    RawPublicKey(Vec<u8>),
}

impl CertificateBody {
    pub const MSG_TYPE: HandshakeType = HandshakeType::Certificate;

    /// Parses the X.509 form: at most [`MAX_CERTIFICATES`] certificates, each 1..=2^24-1
    /// bytes.
    pub fn parse_x509(body: &[u8]) -> Result<Self, DecodeError> {
        let mut outer = Reader::new(body);
        let mut list = Reader::new(outer.vec24()?);
        outer.finish()?;
        let mut certs = Vec::new();
        while !list.is_empty() {
            let cert = list.vec24_in("ASN.1Cert length", 1, MAX_U24.into())?;
            certs.push(cert.to_vec());
            DecodeError::check(
                "certificate_list count",
                wide(certs.len()),
                0,
                wide(MAX_CERTIFICATES),
            )?;
        }
        Ok(Self::X509(certs))
    }

    /// Parses the raw public key form (`ASN.1_subjectPublicKeyInfo<1..2^24-1>`).
    pub fn parse_raw_public_key(body: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body);
        let spki = r.vec24_in("ASN.1_subjectPublicKeyInfo length", 1, MAX_U24.into())?;
        r.finish()?;
        Ok(Self::RawPublicKey(spki.to_vec()))
    }

    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        match self {
            Self::X509(certs) => {
                let total: usize = certs.iter().map(|c| 3 + c.len()).sum();
                let mut out = Vec::with_capacity(3 + total);
                let total = u32::try_from(total)
                    .map_err(|_| EncodeError::new("certificate_list", total, MAX_U24.into()))?;
                out.put_u24("certificate_list", total)?;
                for cert in certs {
                    out.put_vec24("ASN.1Cert", cert)?;
                }
                Ok(out)
            }
            Self::RawPublicKey(spki) => {
                let mut out = Vec::with_capacity(3 + spki.len());
                out.put_vec24("ASN.1_subjectPublicKeyInfo", spki)?;
                Ok(out)
            }
        }
    }
}

/// ServerECDHParams (RFC 8422 §5.4) with a named curve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcdheParams {
    /// NamedCurve; 23 is secp256r1.
    pub named_curve: u16,
    /// `opaque point<1..2^8-1>`: an uncompressed point, 65 bytes for P-256.
    pub public_key: Vec<u8>,
}

impl EcdheParams {
    /// Reads the params; only the named_curve curve type is accepted (RFC 8422 §5.4 deprecates
    /// the explicit ones).
    pub fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let named = u64::from(CURVE_TYPE_NAMED_CURVE);
        DecodeError::check("ECParameters.curve_type", r.u8()?, named, named)?;
        let named_curve = r.u16()?;
        let public_key = read_non_empty_vec8(r, "ServerECDHParams.point length")?.to_vec();
        Ok(Self {
            named_curve,
            public_key,
        })
    }

    /// curve_type(3) || named_curve || vec8 point: the wire form of the params, which is
    /// also what the server signs after the two randoms.
    pub fn encode_params(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(4 + self.public_key.len());
        out.put_u8(CURVE_TYPE_NAMED_CURVE);
        out.put_u16(self.named_curve);
        out.put_vec8("ServerECDHParams.point", &self.public_key)?;
        Ok(out)
    }

    /// The bytes the ServerKeyExchange signature covers (RFC 8422 §5.4):
    /// `client_random || server_random || ServerECDHParams`.
    pub fn signed_data(
        &self,
        client_random: &[u8; 32],
        server_random: &[u8; 32],
    ) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(68 + self.public_key.len());
        out.extend_from_slice(client_random);
        out.extend_from_slice(server_random);
        out.extend_from_slice(&self.encode_params()?);
        Ok(out)
    }
}

/// ServerKeyExchange for ECDHE_ECDSA (RFC 8422 §5.4): params and a TLS 1.2 `digitally-signed`
/// signature over them (RFC 5246 §4.7: SignatureAndHashAlgorithm then vec16).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcdheServerKeyExchange {
    pub params: EcdheParams,
    /// SignatureAndHashAlgorithm as one u16 (hash byte, then signature byte); 0x0403 is
    /// {sha256, ecdsa}.
    pub signature_scheme: u16,
    /// DER-encoded ECDSA signature, `opaque<0..2^16-1>`.
    pub signature: Vec<u8>,
}

impl EcdheServerKeyExchange {
    pub const MSG_TYPE: HandshakeType = HandshakeType::ServerKeyExchange;

    pub fn parse(body: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body);
        let params = EcdheParams::read(&mut r)?;
        let signature_scheme = r.u16()?;
        let signature = r.vec16()?.to_vec();
        r.finish()?;
        Ok(Self {
            params,
            signature_scheme,
            signature,
        })
    }

    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = self.params.encode_params()?;
        out.put_u16(self.signature_scheme);
        out.put_vec16("ServerKeyExchange.signature", &self.signature)?;
        Ok(out)
    }
}

/// ServerKeyExchange for plain PSK (RFC 4279 §2): the optional identity hint. A server with
/// no hint sends no ServerKeyExchange at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PskServerKeyExchange {
    /// `opaque psk_identity_hint<0..2^16-1>`.
    pub identity_hint: Vec<u8>,
}

impl PskServerKeyExchange {
    pub const MSG_TYPE: HandshakeType = HandshakeType::ServerKeyExchange;

    pub fn parse(body: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body);
        let identity_hint = r.vec16()?.to_vec();
        r.finish()?;
        Ok(Self { identity_hint })
    }

    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(2 + self.identity_hint.len());
        out.put_vec16("psk_identity_hint", &self.identity_hint)?;
        Ok(out)
    }
}

/// CertificateRequest (RFC 5246 §7.4.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateRequest {
    /// ClientCertificateType list `<1..2^8-1>`; 64 is ecdsa_sign (RFC 8422 §5.5).
    pub certificate_types: Vec<u8>,
    /// SignatureAndHashAlgorithm list `<2..2^16-2>`.
    pub signature_schemes: Vec<u16>,
    /// DER DistinguishedNames of acceptable CAs, `<0..2^16-1>` of `opaque<1..2^16-1>`.
    pub authorities: Vec<Vec<u8>>,
}

impl CertificateRequest {
    pub const MSG_TYPE: HandshakeType = HandshakeType::CertificateRequest;

    pub fn parse(body: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body);
        let certificate_types =
            read_non_empty_vec8(&mut r, "CertificateRequest.certificate_types length")?.to_vec();
        let signature_schemes = read_u16_list(
            &mut r,
            "CertificateRequest.supported_signature_algorithms length",
        )?;
        let mut list = Reader::new(r.vec16()?);
        r.finish()?;
        let mut authorities = Vec::new();
        while !list.is_empty() {
            let dn = list.vec16_in("DistinguishedName length", 1, u16::MAX.into())?;
            authorities.push(dn.to_vec());
        }
        Ok(Self {
            certificate_types,
            signature_schemes,
            authorities,
        })
    }

    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::new();
        out.put_vec8(
            "CertificateRequest.certificate_types",
            &self.certificate_types,
        )?;
        write_u16_list(
            &mut out,
            "CertificateRequest.supported_signature_algorithms",
            &self.signature_schemes,
        )?;
        let at = out.begin_len16();
        for dn in &self.authorities {
            out.put_vec16("DistinguishedName", dn)?;
        }
        out.patch_len16("CertificateRequest.certificate_authorities", at)?;
        Ok(out)
    }
}

/// ServerHelloDone (RFC 5246 §7.4.5): an empty body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ServerHelloDone;

impl ServerHelloDone {
    pub const MSG_TYPE: HandshakeType = HandshakeType::ServerHelloDone;

    pub fn parse(body: &[u8]) -> Result<Self, DecodeError> {
        Reader::new(body).finish()?;
        Ok(Self)
    }

    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        Ok(Vec::new())
    }
}

/// ClientKeyExchange for plain PSK (RFC 4279 §2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PskClientKeyExchange {
    /// `opaque psk_identity<0..2^16-1>`.
    pub identity: Vec<u8>,
}

impl PskClientKeyExchange {
    pub const MSG_TYPE: HandshakeType = HandshakeType::ClientKeyExchange;

    /// `opaque psk_identity<0..2^16-1>`: every value of the length field is the RFC's, and
    /// the 16 KiB message limit bounds it further.
    pub fn parse(body: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body);
        let identity = r.vec16()?.to_vec();
        r.finish()?;
        Ok(Self { identity })
    }

    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(2 + self.identity.len());
        out.put_vec16("psk_identity", &self.identity)?;
        Ok(out)
    }
}

/// ClientKeyExchange for ECDHE (RFC 8422 §5.7: ClientECDiffieHellmanPublic, explicit form).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcdheClientKeyExchange {
    /// `opaque point<1..2^8-1>`: the client's ephemeral uncompressed point.
    pub public_key: Vec<u8>,
}

impl EcdheClientKeyExchange {
    pub const MSG_TYPE: HandshakeType = HandshakeType::ClientKeyExchange;

    pub fn parse(body: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body);
        let public_key =
            read_non_empty_vec8(&mut r, "ClientECDiffieHellmanPublic.point length")?.to_vec();
        r.finish()?;
        Ok(Self { public_key })
    }

    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(1 + self.public_key.len());
        out.put_vec8("ClientECDiffieHellmanPublic.point", &self.public_key)?;
        Ok(out)
    }
}

/// CertificateVerify (RFC 5246 §7.4.8): a `digitally-signed` over the transcript so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateVerify {
    pub signature_scheme: u16,
    pub signature: Vec<u8>,
}

impl CertificateVerify {
    pub const MSG_TYPE: HandshakeType = HandshakeType::CertificateVerify;

    pub fn parse(body: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body);
        let signature_scheme = r.u16()?;
        let signature = r.vec16()?.to_vec();
        r.finish()?;
        Ok(Self {
            signature_scheme,
            signature,
        })
    }

    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(4 + self.signature.len());
        out.put_u16(self.signature_scheme);
        out.put_vec16("CertificateVerify.signature", &self.signature)?;
        Ok(out)
    }
}

/// Finished (RFC 5246 §7.4.9): 12 bytes of verify_data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finished {
    pub verify_data: [u8; VERIFY_DATA_LEN],
}

impl Finished {
    pub const MSG_TYPE: HandshakeType = HandshakeType::Finished;

    pub fn parse(body: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body);
        let verify_data = r.array()?;
        r.finish()?;
        Ok(Self { verify_data })
    }

    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        Ok(self.verify_data.to_vec())
    }
}
