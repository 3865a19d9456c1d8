//! The server's answer to a ClientHello whose cookie checked out (RFC 5246 §7.4.1.2–
//! §7.4.5): the choice of suite, Extended Master Secret (RFC 7627 §5.3), Connection ID
//! (RFC 9146 §3), certificate types (RFC 7250 §4) and resumption (RFC 5246 §7.3), and the
//! first flight that carries them.
use super::states::{
    Expect, ExpectCertificate, ExpectChangeCipherSpec, ExpectClientKeyExchange, Negotiated,
};
use super::{
    unencodable, Common, Ctx, Resumable, ServerHandshake, MAX_BUFFERED, MAX_MESSAGE, SESSION_ID_LEN,
};
use crate::codec::EncodeError;
use crate::config::ServerConfig;
use crate::crypto;
use crate::error::{Failure, HandshakeError};
use crate::flight::{Flight, Item, Writer};
use crate::handshake::extensions::{
    ServerExtensions, CERT_TYPE_RAW_PUBLIC_KEY, CERT_TYPE_X509, GROUP_SECP256R1,
    POINT_FORMAT_UNCOMPRESSED, SIG_ECDSA_SECP256R1_SHA256,
};
use crate::handshake::messages::{
    CertificateBody, CertificateRequest, ClientHello, EcdheParams, EcdheServerKeyExchange,
    Finished, ServerHello,
};
use crate::handshake::reassembly::Reassembler;
use crate::handshake::HandshakeType;
use crate::pki::Ephemeral;
use crate::record::Cid;
use crate::record::{HandshakeReader, DTLS_1_2};
use crate::suite::{CipherSuite, KeyExchange, RecordCipher};

impl ServerHandshake {
    /// Starts a handshake from a ClientHello whose cookie checked out. `hello_msg` is the
    /// ClientHello as hashed into the transcript, `record_seq` the sequence number of the
    /// record it came in (the server continues from it, RFC 6347 §4.2.1), `resume` the cache
    /// entry for the session id the client offered.
    #[allow(clippy::too_many_arguments)]
    pub fn start<R: rand::Rng>(
        ctx: &mut Ctx<'_, R>,
        hello: &ClientHello,
        hello_msg: &[u8],
        hello_seq: u16,
        record_seq: u64,
        resume: Option<Resumable>,
        new_session_id: [u8; SESSION_ID_LEN],
        own_cid: Option<Cid>,
    ) -> Result<(Self, Vec<Vec<u8>>), Failure> {
        let config = ctx.config;
        let resume = check_hello(config, hello, resume)?;
        let mut server_random = [0u8; 32];
        ctx.rng.fill_bytes(&mut server_random);
        let mut extensions = ServerExtensions {
            extended_master_secret: hello.extensions.extended_master_secret,
            ..Default::default()
        };
        if hello.extensions.renegotiation_info.is_some() || hello.has_scsv() {
            // RFC 5746: announce secure renegotiation (we never renegotiate at all).
            extensions.renegotiation_info = Some(Vec::new());
        }
        let mut c = Common {
            started: ctx.now,
            client_random: hello.random,
            server_random,
            session_id: new_session_id,
            identity: None,
            transcript: hello_msg.to_vec(),
            reassembler: Reassembler::new(hello_seq.wrapping_add(1), MAX_MESSAGE, MAX_BUFFERED),
            out_seq: hello_seq,
            writer: Writer::new(record_seq),
            flight: Flight::new(Vec::new(), ctx.now, &config.timers, true),
            reader: HandshakeReader::default(),
            own_cid: None,
            peer_cid: None,
        };
        let flight = match resume {
            Some(r) => {
                c.identity = Some(r.principal.to_string());
                abbreviated(&mut c, hello, r, own_cid, config, &mut extensions)
            }
            None => full(&mut c, ctx, hello, own_cid, &mut extensions),
        };
        let (items, expect) = flight.map_err(|error| Failure {
            error,
            identity: c.identity.clone(),
        })?;
        c.flight = Flight::new(items, ctx.now, &config.timers, true);
        let mut out = Vec::new();
        c.writer
            .encode(&c.flight.items, config.max_datagram, ctx.rng, &mut out)
            .map_err(|e| Failure {
                error: unencodable(e),
                identity: c.identity.clone(),
            })?;
        Ok((
            ServerHandshake {
                common: Box::new(c),
                expect,
            },
            out,
        ))
    }
}

/// The checks on the hello itself, and the resumption it may have: `None` (a full
/// handshake) unless the offered session matches the hello's EMS choice and suites.
fn check_hello(
    config: &ServerConfig,
    hello: &ClientHello,
    resume: Option<Resumable>,
) -> Result<Option<Resumable>, HandshakeError> {
    if hello.client_version > DTLS_1_2 {
        // DTLS versions count down: 0xFEFF (1.0) is above 0xFEFD (1.2).
        return Err(HandshakeError::ClientVersion);
    }
    if !hello.compression_methods.contains(&0) {
        return Err(HandshakeError::NoNullCompression);
    }
    let ems = hello.extensions.extended_master_secret;
    if config.require_extended_master_secret && !ems {
        return Err(HandshakeError::ExtendedMasterSecretRequired);
    }
    // RFC 7627 §5.3: resume only with the same EMS choice, else a full handshake (or, when
    // the original had EMS and this hello drops it, abort).
    Ok(match resume {
        Some(r) if r.extended_master_secret && !ems => {
            return Err(HandshakeError::ResumptionWithoutExtendedMasterSecret)
        }
        Some(r)
            if r.extended_master_secret == ems
                && hello.cipher_suites.contains(&r.suite.id())
                && config.suites.contains(&r.suite) =>
        {
            Some(r)
        }
        _ => None,
    })
}

/// ServerHello, ChangeCipherSpec, Finished: resuming `r`.
fn abbreviated(
    c: &mut Common,
    hello: &ClientHello,
    r: Resumable,
    own_cid: Option<Cid>,
    config: &ServerConfig,
    extensions: &mut ServerExtensions,
) -> Result<(Vec<Item>, Expect), HandshakeError> {
    if let Some(id) = hello.session_id.get(..SESSION_ID_LEN) {
        c.session_id.copy_from_slice(id);
    }
    negotiate_cid(c, config, r.suite, hello, own_cid, extensions);
    let neg = Negotiated {
        suite: r.suite,
        ems: hello.extensions.extended_master_secret,
    };
    let mut items = vec![c.message(
        0,
        HandshakeType::ServerHello,
        server_hello(c, r.suite, extensions),
    )?];
    let keys = c.derive_keys(r.suite, &r.master);
    let verify = crypto::finished(&r.master, b"server finished", &c.transcript);
    items.push(Item::ChangeCipherSpec);
    items.push(
        c.message(
            1,
            HandshakeType::Finished,
            Finished {
                verify_data: verify,
            }
            .encode(),
        )?,
    );
    let expect = Expect::ChangeCipherSpec(ExpectChangeCipherSpec {
        neg,
        master: r.master,
        keys,
        principal: r.principal,
        resumed: true,
    });
    Ok((items, expect))
}

/// ServerHello, \[Certificate, ServerKeyExchange, CertificateRequest\], ServerHelloDone.
fn full<R: rand::Rng>(
    c: &mut Common,
    ctx: &mut Ctx<'_, R>,
    hello: &ClientHello,
    own_cid: Option<Cid>,
    extensions: &mut ServerExtensions,
) -> Result<(Vec<Item>, Expect), HandshakeError> {
    let config = ctx.config;
    let suite = choose_suite(config, hello).ok_or(HandshakeError::NoCommonSuite)?;
    negotiate_cid(c, config, suite, hello, own_cid, extensions);
    let neg = Negotiated {
        suite,
        ems: hello.extensions.extended_master_secret,
    };
    let mut items = Vec::new();
    let expect = if suite.key_exchange() == KeyExchange::EcdheEcdsa {
        let key = config.key.as_ref().ok_or(HandshakeError::NoServerKey)?;
        let server_type = server_cert_type(hello, !key.chain.is_empty())
            .ok_or(HandshakeError::NoServerCertificateType)?;
        let client_cert_type =
            client_cert_type(hello).ok_or(HandshakeError::NoClientCertificateType)?;
        if hello.extensions.server_certificate_types.is_some() {
            extensions.server_certificate_type = Some(server_type);
        }
        if hello.extensions.client_certificate_types.is_some() {
            extensions.client_certificate_type = Some(client_cert_type);
        }
        if hello.extensions.ec_point_formats.is_some() {
            extensions.ec_point_formats = Some(vec![POINT_FORMAT_UNCOMPRESSED]);
        }
        let sh = server_hello(c, suite, extensions);
        items.push(c.message(0, HandshakeType::ServerHello, sh)?);
        let cert = if server_type == CERT_TYPE_RAW_PUBLIC_KEY {
            CertificateBody::RawPublicKey(key.spki.clone())
        } else {
            CertificateBody::X509(key.chain.clone())
        };
        items.push(c.message(0, HandshakeType::Certificate, cert.encode())?);
        let ephemeral = Ephemeral::generate(ctx.rng);
        let params = EcdheParams {
            named_curve: GROUP_SECP256R1,
            public_key: ephemeral.public.clone(),
        };
        let signed = params
            .signed_data(&c.client_random, &c.server_random)
            .map_err(unencodable)?;
        let signature = key.sign(&signed);
        let ske = EcdheServerKeyExchange {
            params,
            signature_scheme: SIG_ECDSA_SECP256R1_SHA256,
            signature,
        };
        items.push(c.message(0, HandshakeType::ServerKeyExchange, ske.encode())?);
        let req = CertificateRequest {
            certificate_types: vec![64], // ecdsa_sign
            signature_schemes: vec![SIG_ECDSA_SECP256R1_SHA256],
            authorities: Vec::new(),
        };
        items.push(c.message(0, HandshakeType::CertificateRequest, req.encode())?);
        Expect::Certificate(ExpectCertificate {
            neg,
            client_cert_type,
            ephemeral,
        })
    } else {
        let sh = server_hello(c, suite, extensions);
        items.push(c.message(0, HandshakeType::ServerHello, sh)?);
        Expect::ClientKeyExchange(ExpectClientKeyExchange::psk(neg))
    };
    items.push(c.message(0, HandshakeType::ServerHelloDone, Ok(Vec::new()))?);
    Ok((items, expect))
}

fn negotiate_cid(
    c: &mut Common,
    config: &ServerConfig,
    suite: CipherSuite,
    hello: &ClientHello,
    own_cid: Option<Cid>,
    extensions: &mut ServerExtensions,
) {
    // CID only with AEAD suites: RFC 9146's MAC-then-encrypt construction for CBC is not
    // worth carrying for a suite kept for old clients.
    let aead = suite.record_cipher() != RecordCipher::CbcSha256;
    if let (Some(theirs), Some(ours), true, true) = (
        hello.extensions.connection_id.as_ref(),
        own_cid,
        config.cid_len > 0,
        aead,
    ) {
        if let Some(peer) = Cid::new(theirs) {
            extensions.connection_id = Some(ours.as_bytes().to_vec());
            c.own_cid = Some(ours);
            c.peer_cid = Some(peer);
            c.writer.cid = Some(peer);
        }
    }
}

fn server_hello(
    c: &Common,
    suite: CipherSuite,
    extensions: &ServerExtensions,
) -> Result<Vec<u8>, EncodeError> {
    ServerHello {
        server_version: DTLS_1_2,
        random: c.server_random,
        session_id: c.session_id.to_vec(),
        cipher_suite: suite.id(),
        compression_method: 0,
        extensions: extensions.clone(),
    }
    .encode()
}

/// The first suite in the server's order that the client offers and the server can do.
fn choose_suite(config: &ServerConfig, hello: &ClientHello) -> Option<CipherSuite> {
    let ecdhe_ok = config.key.is_some()
        && hello
            .extensions
            .supported_groups
            .as_ref()
            .is_none_or(|g| g.contains(&GROUP_SECP256R1))
        && hello
            .extensions
            .signature_algorithms
            .as_ref()
            .is_none_or(|s| s.contains(&SIG_ECDSA_SECP256R1_SHA256))
        && server_cert_type(
            hello,
            config.key.as_ref().is_some_and(|k| !k.chain.is_empty()),
        )
        .is_some()
        && client_cert_type(hello).is_some();
    config.suites.iter().copied().find(|s| {
        hello.cipher_suites.contains(&s.id()) && (s.key_exchange() == KeyExchange::Psk || ecdhe_ok)
    })
}

/// The certificate type the server presents: a raw key if the client takes one, else X.509
/// if the server has a chain.
fn server_cert_type(hello: &ClientHello, have_chain: bool) -> Option<u8> {
    match &hello.extensions.server_certificate_types {
        Some(types) if types.contains(&CERT_TYPE_RAW_PUBLIC_KEY) => Some(CERT_TYPE_RAW_PUBLIC_KEY),
        Some(types) if types.contains(&CERT_TYPE_X509) && have_chain => Some(CERT_TYPE_X509),
        Some(_) => None,
        None => have_chain.then_some(CERT_TYPE_X509),
    }
}

/// The certificate type the client sends: a raw key if it offers one, else X.509.
fn client_cert_type(hello: &ClientHello) -> Option<u8> {
    match &hello.extensions.client_certificate_types {
        Some(types) if types.contains(&CERT_TYPE_RAW_PUBLIC_KEY) => Some(CERT_TYPE_RAW_PUBLIC_KEY),
        Some(types) if types.contains(&CERT_TYPE_X509) => Some(CERT_TYPE_X509),
        Some(_) => None,
        None => Some(CERT_TYPE_X509),
    }
}
