//! The client's first state: the ClientHello, the cookie exchange (RFC 6347 §4.2.1) and the
//! ServerHello, which settles the suite, Extended Master Secret (RFC 7627), the Connection
//! ID (RFC 9146 §3), certificate types (RFC 7250) and whether the session is resumed
//! (RFC 5246 §7.3).
use super::{
    malformed, unencodable, Common, Ctx, Expect, ExpectCertificate, ExpectChangeCipherSpec,
    ExpectServerKeyExchange, Handshake, Negotiated, MAX_BUFFERED, MAX_MESSAGE,
};
use crate::client::Resumption;
use crate::config::{ClientAuth, ClientConfig, ServerTrust};
use crate::error::HandshakeError;
use crate::flight::{Flight, Item, Writer};
use crate::handshake::extensions::{
    ClientExtensions, CERT_TYPE_RAW_PUBLIC_KEY, CERT_TYPE_X509, GROUP_SECP256R1,
    POINT_FORMAT_UNCOMPRESSED, SIG_ECDSA_SECP256R1_SHA256,
};
use crate::handshake::messages::{
    ClientHello, HelloVerifyRequest, ServerHello, MAX_SESSION_ID_LEN,
};
use crate::handshake::reassembly::Reassembler;
use crate::handshake::{full_message, HandshakeType};
use crate::record::Cid;
use crate::record::{HandshakeReader, DTLS_1_2};
use crate::suite::{CipherSuite, KeyExchange, RecordCipher};
use rand::RngCore;

/// Waiting for the server's answer to our ClientHello: a HelloVerifyRequest (send the
/// hello again with its cookie) or the ServerHello.
pub(in crate::client) struct ExpectServerHello {
    hello: ClientHello,
    /// The session offered for resumption: its master secret and suite.
    resume: Option<([u8; 48], CipherSuite)>,
}

/// Sends the first ClientHello. A resumption whose session id the hello cannot carry
/// (RFC 5246 §7.4.1.2: at most 32 bytes) is dropped from `resumption`: the handshake is a
/// full one instead.
pub(in crate::client) fn start(
    ctx: &mut Ctx<'_>,
    resumption: &mut Option<Resumption>,
) -> Result<Box<Handshake>, HandshakeError> {
    let cfg = ctx.cfg;
    let mut random = [0u8; 32];
    ctx.rng.fill_bytes(&mut random);
    // A configured CID this engine cannot hold is not offered at all: offering it and then
    // receiving without it would lose every record the server sends.
    let own_cid = cfg.connection_id.as_deref().and_then(Cid::new);
    if cfg.connection_id.is_some() && own_cid.is_none() {
        tracing::warn!(
            max = crate::config::MAX_CID_LEN,
            "configured Connection ID too long; not asking for one"
        );
    }
    if resumption
        .as_ref()
        .is_some_and(|r| r.session_id.len() > MAX_SESSION_ID_LEN)
    {
        *resumption = None;
    }
    let hello = client_hello(cfg, random, own_cid, resumption.as_ref());
    let body = hello.encode().map_err(unencodable)?;
    let transcript = full_message(HandshakeType::ClientHello, 0, &body).map_err(unencodable)?;
    let mut common = Common {
        started: ctx.now,
        client_random: random,
        transcript,
        reassembler: Reassembler::new(0, MAX_MESSAGE, MAX_BUFFERED),
        out_seq: 1,
        writer: Writer::new(0),
        flight: Flight::new(Vec::new(), ctx.now, &cfg.timers, true),
        reader: HandshakeReader::default(),
        own_cid,
        peer_cid: None,
    };
    let items = vec![Item::Handshake {
        epoch: 0,
        msg_type: HandshakeType::ClientHello,
        seq: 0,
        body,
    }];
    common.send_flight(ctx, items, true)?;
    Ok(Box::new(Handshake {
        common: Box::new(common),
        expect: Expect::ServerHello(ExpectServerHello {
            hello,
            resume: resumption.as_ref().map(|r| (r.master, r.suite)),
        }),
    }))
}

fn client_hello(
    cfg: &ClientConfig,
    random: [u8; 32],
    own_cid: Option<Cid>,
    resumption: Option<&Resumption>,
) -> ClientHello {
    let ecdhe = cfg
        .suites
        .iter()
        .any(|s| s.key_exchange() == KeyExchange::EcdheEcdsa);
    let mut ext = ClientExtensions {
        present: true,
        extended_master_secret: cfg.extended_master_secret,
        renegotiation_info: Some(Vec::new()),
        connection_id: own_cid.map(|c| c.as_bytes().to_vec()),
        ..Default::default()
    };
    if ecdhe {
        ext.supported_groups = Some(vec![GROUP_SECP256R1]);
        ext.ec_point_formats = Some(vec![POINT_FORMAT_UNCOMPRESSED]);
        ext.signature_algorithms = Some(vec![SIG_ECDSA_SECP256R1_SHA256]);
        if let ClientAuth::Key(k) = &cfg.auth {
            ext.client_certificate_types = Some(if k.chain.is_empty() {
                vec![CERT_TYPE_RAW_PUBLIC_KEY]
            } else {
                vec![CERT_TYPE_X509]
            });
        }
        ext.server_certificate_types = Some(match &cfg.trust {
            ServerTrust::Roots(_) => vec![CERT_TYPE_X509],
            _ => vec![CERT_TYPE_RAW_PUBLIC_KEY, CERT_TYPE_X509],
        });
    }
    let mut cipher_suites: Vec<u16> = Vec::with_capacity(cfg.suites.len());
    for id in cfg.suites.iter().map(|s| s.id()) {
        // Repeats add nothing, and without them the list is a handful of entries.
        if !cipher_suites.contains(&id) {
            cipher_suites.push(id);
        }
    }
    ClientHello {
        client_version: DTLS_1_2,
        random,
        session_id: resumption.map(|r| r.session_id.clone()).unwrap_or_default(),
        cookie: Vec::new(),
        cipher_suites,
        compression_methods: vec![0],
        extensions: ext,
    }
}

impl ExpectServerHello {
    /// Sends the hello again with the server's cookie.
    pub(in crate::client) fn hello_verify_request(
        mut self,
        c: &mut Common,
        ctx: &mut Ctx<'_>,
        seq: u16,
        body: &[u8],
    ) -> Result<Expect, HandshakeError> {
        let hvr =
            HelloVerifyRequest::parse(body).map_err(|e| malformed("HelloVerifyRequest", e))?;
        self.hello.cookie = hvr.cookie;
        let body = self.hello.encode().map_err(unencodable)?;
        // RFC 6347 §4.2.1: the hello and HelloVerifyRequest before it are not hashed. The
        // new hello takes the next message_seq (RFC 6347 §4.2.2), which is the one the server
        // answers with: 1 after the usual single HelloVerifyRequest, more when the server
        // asks again (its cookie secret rotated, or it restarted). Reusing 1 then would leave
        // the reassembler expecting the ServerHello at a number the server never uses.
        let hello_seq = seq.wrapping_add(1);
        c.transcript =
            full_message(HandshakeType::ClientHello, hello_seq, &body).map_err(unencodable)?;
        c.out_seq = hello_seq.wrapping_add(1);
        let items = vec![Item::Handshake {
            epoch: 0,
            msg_type: HandshakeType::ClientHello,
            seq: hello_seq,
            body,
        }];
        c.send_flight(ctx, items, true)?;
        Ok(Expect::ServerHello(self))
    }

    pub(in crate::client) fn server_hello(
        self,
        c: &mut Common,
        cfg: &ClientConfig,
        body: &[u8],
        full: &[u8],
    ) -> Result<Expect, HandshakeError> {
        let sh = ServerHello::parse(body).map_err(|e| malformed("ServerHello", e))?;
        if sh.server_version != DTLS_1_2 {
            return Err(HandshakeError::ServerVersion);
        }
        if sh.compression_method != 0 {
            // We offer only null compression (RFC 5246 §7.4.1.3: the server picks one the
            // client offered).
            return Err(HandshakeError::UnofferedCompression);
        }
        let suite = CipherSuite::from_id(sh.cipher_suite)
            .filter(|s| cfg.suites.contains(s))
            .ok_or(HandshakeError::UnofferedSuite)?;
        c.transcript.extend_from_slice(full);
        if let Some(cid) = &sh.extensions.connection_id {
            if c.own_cid.is_some() && suite.record_cipher() != RecordCipher::CbcSha256 {
                // RFC 9146 allows up to 255 bytes; records we send must carry it, and this
                // engine holds at most MAX_CID_LEN. Failing beats sending records the server
                // cannot route.
                let peer = Cid::new(cid).ok_or(HandshakeError::ServerConnectionIdTooLong)?;
                c.peer_cid = Some(peer);
                c.writer.cid = c.peer_cid;
            }
        } else {
            // The server did not agree to CIDs: records carry none either way.
            c.own_cid = None;
        }
        let neg = Negotiated {
            suite,
            server_random: sh.random,
            session_id: sh.session_id.clone(),
            ems: sh.extensions.extended_master_secret,
            client_cert_type: sh
                .extensions
                .client_certificate_type
                .unwrap_or(CERT_TYPE_X509),
        };
        let server_cert_type = sh
            .extensions
            .server_certificate_type
            .unwrap_or(CERT_TYPE_X509);
        let resumed = !self.hello.session_id.is_empty() && self.hello.session_id == sh.session_id;
        if resumed {
            let Some((master, resume_suite)) = self.resume else {
                return Err(HandshakeError::ResumedUnknownSession);
            };
            if resume_suite != suite {
                return Err(HandshakeError::ResumedWithAnotherSuite);
            }
            return Ok(Expect::ChangeCipherSpec(ExpectChangeCipherSpec::resumed(
                c, neg, master,
            )));
        }
        Ok(match suite.key_exchange() {
            KeyExchange::Psk => Expect::ServerKeyExchange(ExpectServerKeyExchange::psk(neg)),
            KeyExchange::EcdheEcdsa => Expect::Certificate(ExpectCertificate {
                neg,
                server_cert_type,
            }),
        })
    }
}
