//! The server side of one DTLS 1.2 handshake, after the cookie exchange (RFC 6347 §4.2;
//! RFC 5246 §7.4; RFC 4279 PSK; RFC 8422 ECDHE-ECDSA; RFC 7250 raw public keys; RFC 7627
//! Extended Master Secret; RFC 5746 renegotiation_info; RFC 9146 Connection ID negotiation).
//!
//! Full handshake: ClientHello → ServerHello, [Certificate, ServerKeyExchange,
//! CertificateRequest], ServerHelloDone → [Certificate], ClientKeyExchange,
//! [CertificateVerify], ChangeCipherSpec, Finished → ChangeCipherSpec, Finished.
//! Abbreviated (resumption by session id, RFC 5246 §7.3): ClientHello → ServerHello,
//! ChangeCipherSpec, Finished → ChangeCipherSpec, Finished.
//!
//! Client authentication is always required for ECDHE-ECDSA (the LwM2M profile, RFC 7925
//! §4.4): the server sends CertificateRequest and refuses an empty Certificate.
use crate::alert::AlertDescription;
use crate::codec::{DecodeError, EncodeError};
use crate::config::{PeerKey, ServerConfig, ServerCredentials};
use crate::crypto::{self, DirectionKeys, KeyBlock};
use crate::flight::{Flight, Item, Writer};
use crate::handshake::extensions::{
    ServerExtensions, CERT_TYPE_RAW_PUBLIC_KEY, CERT_TYPE_X509, GROUP_SECP256R1,
    POINT_FORMAT_UNCOMPRESSED, SIG_ECDSA_SECP256R1_SHA256,
};
use crate::handshake::messages::{
    CertificateBody, CertificateRequest, CertificateVerify, ClientHello, EcdheClientKeyExchange,
    EcdheParams, EcdheServerKeyExchange, Finished, PskClientKeyExchange, ServerHello,
};
use crate::handshake::reassembly::{Inserted, Reassembler};
use crate::handshake::{full_message, full_message_raw, parse_fragments, HandshakeType};
use crate::pki::{self, Ephemeral};
use crate::record::{ContentType, Record, DTLS_1_2};
use crate::replay::ReplayWindow;
use crate::session::{Cid, Session};
use crate::suite::{CipherSuite, KeyExchange, RecordCipher};
use std::sync::Arc;
use std::time::Instant;

/// Length of the session ids this server issues: the session's handle and 8 random bytes,
/// so resumption finds the session without a separate cache.
pub const SESSION_ID_LEN: usize = 16;

/// Largest handshake message accepted from a client (a certificate chain fits easily).
const MAX_MESSAGE: usize = 16 * 1024;
/// Bytes of out-of-order handshake data buffered per handshake.
const MAX_BUFFERED: usize = 32 * 1024;

/// What a resumable session leaves behind (RFC 5246 §7.4.1.2).
#[derive(Clone)]
pub struct Resumable {
    pub master: [u8; 48],
    pub suite: CipherSuite,
    pub extended_master_secret: bool,
    pub principal: Arc<str>,
}

impl std::fmt::Debug for Resumable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resumable")
            .field("suite", &self.suite)
            .field("principal", &self.principal)
            .finish_non_exhaustive()
    }
}

/// Why a handshake failed, for the application's logs and audit: the alert sent and, when
/// known, the identity presented.
#[derive(Debug, Clone)]
pub struct Failure {
    pub alert: AlertDescription,
    pub reason: &'static str,
    /// The PSK identity or principal involved, if one was presented.
    pub identity: Option<String>,
}

impl Failure {
    fn new(alert: AlertDescription, reason: &'static str) -> Self {
        Self {
            alert,
            reason,
            identity: None,
        }
    }
}

/// What handling a record led to.
#[derive(Debug)]
pub(crate) enum Step {
    /// Nothing to do beyond what was queued.
    Continue,
    /// The peer repeated its previous flight: ours was lost, send it again.
    Retransmit,
    /// The handshake is over.
    Done(Box<Established>),
}

/// A finished handshake, for the endpoint to turn into a session.
#[derive(Debug)]
pub(crate) struct Established {
    pub session: Session,
    pub session_id: [u8; SESSION_ID_LEN],
    pub resumable: Resumable,
    pub resumed: bool,
    /// Our final Finished, kept to answer a client that did not get it.
    pub final_verify: [u8; 12],
    /// Its handshake message_seq.
    pub final_seq: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Certificate,
    ClientKeyExchange,
    CertificateVerify,
    ChangeCipherSpec,
    Finished,
}

/// One handshake in progress.
pub(crate) struct ServerHandshake {
    pub started: Instant,
    expect: Expect,
    resumed: bool,
    suite: CipherSuite,
    client_random: [u8; 32],
    server_random: [u8; 32],
    session_id: [u8; SESSION_ID_LEN],
    ems: bool,
    /// Negotiated certificate type the client sends (ECDHE only).
    client_cert_type: u8,
    ephemeral: Option<Ephemeral>,
    /// The client's authenticated key material, from its Certificate message.
    client_key: Option<ClientKey>,
    principal: Option<Arc<str>>,
    identity: Option<String>,
    master: Option<[u8; 48]>,
    keys: Option<KeyBlock>,
    read_epoch: u16,
    replay: ReplayWindow,
    transcript: Vec<u8>,
    reassembler: Reassembler,
    out_seq: u16,
    pub writer: Writer,
    pub flight: Flight,
    own_cid: Option<Cid>,
    peer_cid: Option<Cid>,
}

#[derive(Debug)]
enum ClientKey {
    Spki(Vec<u8>),
    Chain(Vec<Vec<u8>>),
}

impl std::fmt::Debug for ServerHandshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandshake")
            .field("expect", &self.expect)
            .field("suite", &self.suite)
            .field("resumed", &self.resumed)
            .finish_non_exhaustive()
    }
}

/// Everything the handshake borrows from its endpoint for one call.
pub(crate) struct Ctx<'a, R: rand::Rng> {
    pub config: &'a ServerConfig,
    pub creds: &'a dyn ServerCredentials,
    pub rng: &'a mut R,
    pub now: Instant,
}

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
        if hello.client_version > DTLS_1_2 {
            // DTLS versions count down: 0xFEFF (1.0) is above 0xFEFD (1.2).
            return Err(Failure::new(
                AlertDescription::ProtocolVersion,
                "client does not offer DTLS 1.2",
            ));
        }
        if !hello.compression_methods.contains(&0) {
            return Err(Failure::new(
                AlertDescription::HandshakeFailure,
                "no null compression",
            ));
        }
        let ext = &hello.extensions;
        let ems = ext.extended_master_secret;
        if config.require_extended_master_secret && !ems {
            return Err(Failure::new(
                AlertDescription::HandshakeFailure,
                "client does not offer Extended Master Secret",
            ));
        }
        // RFC 7627 §5.3: resume only with the same EMS choice, else a full handshake (or,
        // when the original had EMS and this hello drops it, abort).
        let resume = match resume {
            Some(r) if r.extended_master_secret && !ems => {
                return Err(Failure::new(
                    AlertDescription::HandshakeFailure,
                    "resumption without Extended Master Secret",
                ))
            }
            Some(r)
                if r.extended_master_secret == ems
                    && hello.cipher_suites.contains(&r.suite.id())
                    && config.suites.contains(&r.suite) =>
            {
                Some(r)
            }
            _ => None,
        };
        let mut server_random = [0u8; 32];
        ctx.rng.fill_bytes(&mut server_random);
        let mut extensions = ServerExtensions {
            extended_master_secret: ems,
            ..Default::default()
        };
        if ext.renegotiation_info.is_some() || hello.has_scsv() {
            // RFC 5746: announce secure renegotiation (we never renegotiate at all).
            extensions.renegotiation_info = Some(Vec::new());
        }
        let mut hs = Self {
            started: ctx.now,
            expect: Expect::ClientKeyExchange,
            resumed: resume.is_some(),
            suite: CipherSuite::PskAes128Ccm8,
            client_random: hello.random,
            server_random,
            session_id: new_session_id,
            ems,
            client_cert_type: CERT_TYPE_X509,
            ephemeral: None,
            client_key: None,
            principal: None,
            identity: None,
            master: None,
            keys: None,
            read_epoch: 0,
            replay: ReplayWindow::default(),
            transcript: hello_msg.to_vec(),
            reassembler: Reassembler::new(hello_seq.wrapping_add(1), MAX_MESSAGE, MAX_BUFFERED),
            out_seq: hello_seq,
            writer: Writer::new(record_seq),
            flight: Flight::new(Vec::new(), ctx.now, &config.timers, true),
            own_cid: None,
            peer_cid: None,
        };
        let mut items = Vec::new();
        if let Some(r) = resume {
            hs.suite = r.suite;
            if let Some(id) = hello.session_id.get(..SESSION_ID_LEN) {
                hs.session_id.copy_from_slice(id);
            }
            hs.negotiate_cid(config, hello, own_cid, &mut extensions);
            hs.principal = Some(r.principal.clone());
            hs.identity = Some(r.principal.to_string());
            hs.master = Some(r.master);
            let sh = hs.server_hello(&extensions);
            items.push(hs.message(0, HandshakeType::ServerHello, sh)?);
            hs.derive_keys();
            let verify = crypto::finished(&r.master, b"server finished", &hs.transcript);
            items.push(Item::ChangeCipherSpec);
            items.push(
                hs.message(
                    1,
                    HandshakeType::Finished,
                    Finished {
                        verify_data: verify,
                    }
                    .encode(),
                )?,
            );
            hs.expect = Expect::ChangeCipherSpec;
        } else {
            hs.suite = choose_suite(config, hello).ok_or_else(|| {
                Failure::new(
                    AlertDescription::HandshakeFailure,
                    "no cipher suite in common",
                )
            })?;
            hs.negotiate_cid(config, hello, own_cid, &mut extensions);
            if hs.suite.key_exchange() == KeyExchange::EcdheEcdsa {
                let key = config.key.as_ref().ok_or_else(|| {
                    Failure::new(AlertDescription::InternalError, "no server key")
                })?;
                let server_type =
                    server_cert_type(hello, !key.chain.is_empty()).ok_or_else(|| {
                        Failure::new(
                            AlertDescription::UnsupportedCertificate,
                            "no server certificate type in common",
                        )
                    })?;
                hs.client_cert_type = client_cert_type(hello).ok_or_else(|| {
                    Failure::new(
                        AlertDescription::UnsupportedCertificate,
                        "no client certificate type in common",
                    )
                })?;
                if hello.extensions.server_certificate_types.is_some() {
                    extensions.server_certificate_type = Some(server_type);
                }
                if hello.extensions.client_certificate_types.is_some() {
                    extensions.client_certificate_type = Some(hs.client_cert_type);
                }
                if hello.extensions.ec_point_formats.is_some() {
                    extensions.ec_point_formats = Some(vec![POINT_FORMAT_UNCOMPRESSED]);
                }
                let sh = hs.server_hello(&extensions);
                items.push(hs.message(0, HandshakeType::ServerHello, sh)?);
                let cert = if server_type == CERT_TYPE_RAW_PUBLIC_KEY {
                    CertificateBody::RawPublicKey(key.spki.clone())
                } else {
                    CertificateBody::X509(key.chain.clone())
                };
                items.push(hs.message(0, HandshakeType::Certificate, cert.encode())?);
                let eph = Ephemeral::generate(ctx.rng);
                let params = EcdheParams {
                    named_curve: GROUP_SECP256R1,
                    public_key: eph.public.clone(),
                };
                let signed = params
                    .signed_data(&hs.client_random, &hs.server_random)
                    .map_err(|e| hs.unencodable(e))?;
                let signature = key.sign(&signed);
                let ske = EcdheServerKeyExchange {
                    params,
                    signature_scheme: SIG_ECDSA_SECP256R1_SHA256,
                    signature,
                };
                items.push(hs.message(0, HandshakeType::ServerKeyExchange, ske.encode())?);
                hs.ephemeral = Some(eph);
                let req = CertificateRequest {
                    certificate_types: vec![64], // ecdsa_sign
                    signature_schemes: vec![SIG_ECDSA_SECP256R1_SHA256],
                    authorities: Vec::new(),
                };
                items.push(hs.message(0, HandshakeType::CertificateRequest, req.encode())?);
                hs.expect = Expect::Certificate;
            } else {
                let sh = hs.server_hello(&extensions);
                items.push(hs.message(0, HandshakeType::ServerHello, sh)?);
            }
            items.push(hs.message(0, HandshakeType::ServerHelloDone, Ok(Vec::new()))?);
        }
        hs.flight = Flight::new(items, ctx.now, &config.timers, true);
        let mut out = Vec::new();
        hs.writer
            .encode(&hs.flight.items, config.max_datagram, ctx.rng, &mut out)
            .map_err(|e| hs.unencodable(e))?;
        Ok((hs, out))
    }

    fn negotiate_cid(
        &mut self,
        config: &ServerConfig,
        hello: &ClientHello,
        own_cid: Option<Cid>,
        extensions: &mut ServerExtensions,
    ) {
        // CID only with AEAD suites: RFC 9146's MAC-then-encrypt construction for CBC is
        // not worth carrying for a suite kept for old clients.
        let aead = self.suite.record_cipher() != RecordCipher::CbcSha256;
        if let (Some(theirs), Some(ours), true, true) = (
            hello.extensions.connection_id.as_ref(),
            own_cid,
            config.cid_len > 0,
            aead,
        ) {
            if let Some(peer) = Cid::new(theirs) {
                extensions.connection_id = Some(ours.as_bytes().to_vec());
                self.own_cid = Some(ours);
                self.peer_cid = Some(peer);
                self.writer.cid = Some(peer);
            }
        }
    }

    fn server_hello(&self, extensions: &ServerExtensions) -> Result<Vec<u8>, EncodeError> {
        ServerHello {
            server_version: DTLS_1_2,
            random: self.server_random,
            session_id: self.session_id.to_vec(),
            cipher_suite: self.suite.id(),
            compression_method: 0,
            extensions: extensions.clone(),
        }
        .encode()
    }

    /// Numbers a message of ours, adds it to the transcript, and makes it a flight item.
    /// `body` is the message's encoding, which fails only for a value too large for its
    /// field (a configured certificate chain over 2^24 bytes, say): the handshake then ends
    /// with `internal_error` rather than send a message the client would misread.
    fn message(
        &mut self,
        epoch: u16,
        msg_type: HandshakeType,
        body: Result<Vec<u8>, EncodeError>,
    ) -> Result<Item, Failure> {
        let body = body.map_err(|e| self.unencodable(e))?;
        let seq = self.out_seq;
        let full = full_message(msg_type, seq, &body).map_err(|e| self.unencodable(e))?;
        self.out_seq = self.out_seq.wrapping_add(1);
        self.transcript.extend_from_slice(&full);
        Ok(Item::Handshake {
            epoch,
            msg_type,
            seq,
            body,
        })
    }

    /// The failure for a message or flight of ours that cannot be encoded; the field is
    /// logged, since the alert cannot say it.
    fn unencodable(&self, e: EncodeError) -> Failure {
        tracing::warn!(error = %e, "DTLS handshake message cannot be encoded");
        self.fail(
            AlertDescription::InternalError,
            "handshake message cannot be encoded",
        )
    }

    /// The failure for a client message that does not parse; the field, when the error
    /// names one, is logged at debug level (the peer chose it, so it is not worth more).
    fn malformed(&self, reason: &'static str, e: DecodeError) -> Failure {
        tracing::debug!(error = %e, reason, "malformed DTLS handshake message");
        self.fail(AlertDescription::DecodeError, reason)
    }

    fn derive_keys(&mut self) {
        if let Some(master) = &self.master {
            let kb =
                crypto::key_block(master, &self.client_random, &self.server_random, self.suite);
            self.writer.keys = Some(kb.server_write);
            self.keys = Some(kb);
        }
    }

    fn read_keys(&self) -> Option<DirectionKeys> {
        self.keys.as_ref().map(|k| k.client_write)
    }

    /// The record's handshake, alert or change-cipher-spec content. Records of other epochs
    /// or types are ignored (RFC 6347 §4.1.2.7: invalid records are dropped silently).
    pub fn handle_record<R: rand::Rng>(
        &mut self,
        ctx: &mut Ctx<'_, R>,
        record: &Record<'_>,
        out: &mut Vec<Vec<u8>>,
    ) -> Result<Step, Failure> {
        let plaintext;
        let (content_type, payload): (u8, &[u8]) = if record.epoch == 0 {
            if record.content_type == ContentType::Tls12Cid as u8 {
                return Ok(Step::Continue);
            }
            (record.content_type, record.fragment)
        } else if record.epoch == 1 && self.read_epoch == 1 {
            let Some(keys) = self.read_keys() else {
                return Ok(Step::Continue);
            };
            if !self.replay.is_fresh(record.seq) {
                return Ok(Step::Continue);
            }
            match keys.open(record) {
                Ok((ct, p)) => {
                    self.replay.mark(record.seq);
                    plaintext = p;
                    (ct, &plaintext)
                }
                Err(_) if self.expect == Expect::Finished && !self.resumed => {
                    // The Finished does not decrypt: the client derived other keys, which
                    // means another PSK (or a forged record). Failing now beats letting the
                    // client retransmit into silence for a minute. Not so in a resumed
                    // handshake: its keys come from the master secret both sides already
                    // share, so such a record is damaged or forged, and it is dropped like
                    // any invalid record (RFC 6347 §4.1.2.7) while retransmission recovers.
                    // Failing would also strand the client, which finishes an abbreviated
                    // handshake first and already counts itself connected.
                    return Err(self.fail(
                        AlertDescription::BadRecordMac,
                        "client Finished does not decrypt (wrong key?)",
                    ));
                }
                Err(_) => return Ok(Step::Continue),
            }
        } else {
            return Ok(Step::Continue);
        };
        match ContentType::from_u8(content_type) {
            Some(ContentType::Handshake) => self.handle_handshake(ctx, payload, record.epoch, out),
            Some(ContentType::ChangeCipherSpec) => {
                if payload != [1] {
                    // An unauthenticated record that is not a ChangeCipherSpec: invalid, so
                    // dropped (RFC 6347 §4.1.2.7); the client's retransmission brings a good one.
                    return Ok(Step::Continue);
                }
                if self.expect == Expect::ChangeCipherSpec {
                    self.read_epoch = 1;
                    self.expect = Expect::Finished;
                }
                Ok(Step::Continue)
            }
            Some(ContentType::Alert) => {
                // A record that is not a well-formed alert is invalid and dropped (RFC 6347
                // §4.1.2.7), not taken as the client giving up.
                let Ok(alert) = crate::alert::Alert::decode(payload) else {
                    return Ok(Step::Continue);
                };
                let desc = alert.description;
                Err(Failure {
                    alert: AlertDescription::CloseNotify,
                    reason: alert_reason(desc),
                    identity: self.identity.clone(),
                })
            }
            _ => Ok(Step::Continue),
        }
    }

    fn handle_handshake<R: rand::Rng>(
        &mut self,
        ctx: &mut Ctx<'_, R>,
        payload: &[u8],
        epoch: u16,
        out: &mut Vec<Vec<u8>>,
    ) -> Result<Step, Failure> {
        let mut old = false;
        for frag in parse_fragments(payload) {
            let (header, data) =
                frag.map_err(|e| self.malformed("malformed handshake fragment", e))?;
            // Only the Finished may travel in epoch 1, and only once we expect it.
            if epoch == 1 && header.msg_type != HandshakeType::Finished as u8 {
                return Err(self.fail(
                    AlertDescription::UnexpectedMessage,
                    "unexpected encrypted handshake message",
                ));
            }
            if epoch == 0 && header.msg_type == HandshakeType::Finished as u8 {
                return Err(self.fail(AlertDescription::UnexpectedMessage, "unencrypted Finished"));
            }
            match self.reassembler.insert(&header, data) {
                Ok(Inserted::Old) => old = true,
                Ok(_) => {}
                // Epoch-0 fragments are unauthenticated: a spoofed one that contradicts the
                // real message or overflows the buffer is dropped, not allowed to abort.
                Err(_) => {}
            }
        }
        while let Some((msg_type, seq, body)) = self.reassembler.pop() {
            if let Some(done) = self.handle_message(ctx, msg_type, seq, body, out)? {
                return Ok(Step::Done(done));
            }
        }
        Ok(if old {
            Step::Retransmit
        } else {
            Step::Continue
        })
    }

    fn handle_message<R: rand::Rng>(
        &mut self,
        ctx: &mut Ctx<'_, R>,
        msg_type: u8,
        seq: u16,
        body: Vec<u8>,
        out: &mut Vec<Vec<u8>>,
    ) -> Result<Option<Box<Established>>, Failure> {
        // The reassembler caps bodies at MAX_MESSAGE (16 KiB), far below 2^24.
        let full = full_message_raw(msg_type, seq, &body).map_err(|e| self.unencodable(e))?;
        let t = HandshakeType::from_u8(msg_type);
        match (self.expect, t) {
            (Expect::Certificate, Some(HandshakeType::Certificate)) => {
                let parsed = if self.client_cert_type == CERT_TYPE_RAW_PUBLIC_KEY {
                    CertificateBody::parse_raw_public_key(&body)
                } else {
                    CertificateBody::parse_x509(&body)
                }
                .map_err(|e| self.malformed("malformed Certificate", e))?;
                let (principal, key) = match parsed {
                    CertificateBody::RawPublicKey(spki) => {
                        let p = ctx.creds.verify_client(PeerKey::RawPublicKey(&spki));
                        (p, ClientKey::Spki(spki))
                    }
                    CertificateBody::X509(chain) if !chain.is_empty() => {
                        let p = ctx.creds.verify_client(PeerKey::Certificates(&chain));
                        (p, ClientKey::Chain(chain))
                    }
                    CertificateBody::X509(_) => {
                        return Err(self.fail(
                            AlertDescription::HandshakeFailure,
                            "client sent no certificate",
                        ))
                    }
                };
                let principal = principal
                    .map_err(|alert| self.fail(alert, "client key or certificate refused"))?;
                self.identity = Some(principal.to_string());
                self.principal = Some(principal);
                self.client_key = Some(key);
                self.transcript.extend_from_slice(&full);
                self.expect = Expect::ClientKeyExchange;
            }
            (Expect::ClientKeyExchange, Some(HandshakeType::ClientKeyExchange)) => {
                let pre_master = match self.suite.key_exchange() {
                    KeyExchange::Psk => {
                        let cke = PskClientKeyExchange::parse(&body)
                            .map_err(|e| self.malformed("malformed ClientKeyExchange", e))?;
                        self.identity = Some(String::from_utf8_lossy(&cke.identity).into_owned());
                        let entry = ctx.creds.psk(&cke.identity).ok_or_else(|| {
                            self.fail(AlertDescription::UnknownPskIdentity, "unknown PSK identity")
                        })?;
                        if entry.key.len() > crypto::MAX_PSK_LEN {
                            // RFC 4279 §5.3; the credential store should never hold one.
                            return Err(self.fail(
                                AlertDescription::InternalError,
                                "PSK longer than 65535 bytes",
                            ));
                        }
                        self.principal = Some(entry.principal);
                        crypto::psk_pre_master(&entry.key)
                    }
                    KeyExchange::EcdheEcdsa => {
                        let cke = EcdheClientKeyExchange::parse(&body)
                            .map_err(|e| self.malformed("malformed ClientKeyExchange", e))?;
                        let eph = self.ephemeral.take().ok_or_else(|| {
                            self.fail(AlertDescription::InternalError, "no ephemeral key")
                        })?;
                        eph.agree(&cke.public_key)
                            .map_err(|a| self.fail(a, "bad ECDHE public key"))?
                            .to_vec()
                    }
                };
                self.transcript.extend_from_slice(&full);
                self.master = Some(if self.ems {
                    crypto::extended_master_secret(
                        &pre_master,
                        &crypto::sha256(&[&self.transcript]),
                    )
                } else {
                    crypto::master_secret(&pre_master, &self.client_random, &self.server_random)
                });
                self.derive_keys();
                self.expect = if self.client_key.is_some() {
                    Expect::CertificateVerify
                } else {
                    Expect::ChangeCipherSpec
                };
            }
            (Expect::CertificateVerify, Some(HandshakeType::CertificateVerify)) => {
                let cv = CertificateVerify::parse(&body)
                    .map_err(|e| self.malformed("malformed CertificateVerify", e))?;
                if cv.signature_scheme != SIG_ECDSA_SECP256R1_SHA256 {
                    return Err(self.fail(
                        AlertDescription::IllegalParameter,
                        "unsupported signature scheme",
                    ));
                }
                let verified = match &self.client_key {
                    Some(ClientKey::Spki(spki)) => {
                        pki::verify_with_spki(spki, &self.transcript, &cv.signature)
                    }
                    Some(ClientKey::Chain(chain)) => match chain.first() {
                        Some(leaf) => {
                            pki::verify_with_certificate(leaf, &self.transcript, &cv.signature)
                        }
                        None => Err(AlertDescription::BadCertificate),
                    },
                    None => Err(AlertDescription::UnexpectedMessage),
                };
                verified.map_err(|a| self.fail(a, "CertificateVerify signature invalid"))?;
                self.transcript.extend_from_slice(&full);
                self.expect = Expect::ChangeCipherSpec;
            }
            (Expect::Finished, Some(HandshakeType::Finished)) => {
                let fin =
                    Finished::parse(&body).map_err(|e| self.malformed("malformed Finished", e))?;
                let master = self.master.ok_or_else(|| {
                    self.fail(AlertDescription::InternalError, "no master secret")
                })?;
                if !crypto::finished_matches(
                    &master,
                    b"client finished",
                    &self.transcript,
                    &fin.verify_data,
                ) {
                    return Err(self.fail(
                        AlertDescription::DecryptError,
                        "client Finished does not verify (wrong key?)",
                    ));
                }
                self.transcript.extend_from_slice(&full);
                let final_verify = if self.resumed {
                    // Our Finished went first; the flight that carried it is answered.
                    match self.flight.items.last() {
                        Some(Item::Handshake { body, .. }) => {
                            let mut v = [0u8; 12];
                            v.copy_from_slice(body.get(..12).unwrap_or(&[0; 12]));
                            v
                        }
                        _ => [0; 12],
                    }
                } else {
                    let verify = crypto::finished(&master, b"server finished", &self.transcript);
                    let fin = self.message(
                        1,
                        HandshakeType::Finished,
                        Finished {
                            verify_data: verify,
                        }
                        .encode(),
                    )?;
                    self.flight = Flight::new(
                        vec![Item::ChangeCipherSpec, fin],
                        ctx.now,
                        &ctx.config.timers,
                        false,
                    );
                    self.writer
                        .encode(&self.flight.items, ctx.config.max_datagram, ctx.rng, out)
                        .map_err(|e| self.unencodable(e))?;
                    verify
                };
                return Ok(Some(Box::new(self.establish(master, final_verify)?)));
            }
            _ => {
                return Err(self.fail(
                    AlertDescription::UnexpectedMessage,
                    "handshake message out of order",
                ));
            }
        }
        Ok(None)
    }

    fn establish(
        &mut self,
        master: [u8; 48],
        final_verify: [u8; 12],
    ) -> Result<Established, Failure> {
        let keys = self
            .keys
            .as_ref()
            .ok_or_else(|| self.fail(AlertDescription::InternalError, "no keys"))?;
        let principal = self
            .principal
            .clone()
            .ok_or_else(|| self.fail(AlertDescription::InternalError, "no principal"))?;
        let session = Session {
            suite: self.suite,
            read: keys.client_write,
            write: keys.server_write,
            epoch: 1,
            write_seq: self.writer.seq.get(1).copied().unwrap_or(0),
            replay: self.replay,
            send_cid: self.peer_cid,
            recv_cid: self.own_cid,
            principal: principal.clone(),
        };
        Ok(Established {
            session,
            session_id: self.session_id,
            resumable: Resumable {
                master,
                suite: self.suite,
                extended_master_secret: self.ems,
                principal,
            },
            resumed: self.resumed,
            final_verify,
            final_seq: self.out_seq.wrapping_sub(1),
        })
    }

    /// Sends the last flight again and backs the timer off. Fails when the flight can no
    /// longer be encoded (the epoch-0 sequence numbers ran out), which ends the handshake.
    pub fn retransmit<R: rand::Rng>(
        &mut self,
        ctx: &mut Ctx<'_, R>,
        out: &mut Vec<Vec<u8>>,
    ) -> Result<(), Failure> {
        self.writer
            .encode(&self.flight.items, ctx.config.max_datagram, ctx.rng, out)
            .map_err(|e| self.unencodable(e))?;
        self.flight.backoff(ctx.now, &ctx.config.timers);
        Ok(())
    }

    pub fn retransmit_at(&self) -> Option<Instant> {
        self.flight.retransmit_at
    }

    fn fail(&self, alert: AlertDescription, reason: &'static str) -> Failure {
        Failure {
            alert,
            reason,
            identity: self.identity.clone(),
        }
    }

    pub fn client_random(&self) -> [u8; 32] {
        self.client_random
    }
}

fn alert_reason(desc: AlertDescription) -> &'static str {
    match desc {
        AlertDescription::CloseNotify => "client closed the handshake",
        AlertDescription::BadRecordMac | AlertDescription::DecryptError => {
            "client reports a decryption failure (wrong key?)"
        }
        AlertDescription::UnknownPskIdentity => "client reports unknown PSK identity",
        AlertDescription::BadCertificate
        | AlertDescription::UnknownCa
        | AlertDescription::CertificateUnknown
        | AlertDescription::UnsupportedCertificate => "client refused the server's certificate",
        AlertDescription::HandshakeFailure => "client reports handshake failure",
        _ => "client sent a fatal alert",
    }
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
