//! The client role: one DTLS 1.2 connection to one server, sans-IO (RFC 6347 §4.2; the
//! suites, extensions and flights mirror [`crate::server`]). Used by the client simulator,
//! by tests, and by anything in this workspace that dials a DTLS server.
//!
//! A client answers the HelloVerifyRequest, authenticates with a PSK or an ECDSA key (raw
//! public key or certificate), asks for a Connection ID if configured, resumes by session id
//! when given a [`Resumption`], and retransmits its flights with backoff until the server's
//! next flight arrives.
use crate::alert::{Alert, AlertDescription, AlertLevel};
use crate::config::{ClientAuth, ClientConfig, ServerTrust};
use crate::crypto::{self, DirectionKeys, KeyBlock};
use crate::flight::{Flight, Item, Writer};
use crate::handshake::extensions::{
    ClientExtensions, CERT_TYPE_RAW_PUBLIC_KEY, CERT_TYPE_X509, GROUP_SECP256R1,
    POINT_FORMAT_UNCOMPRESSED, SIG_ECDSA_SECP256R1_SHA256,
};
use crate::handshake::messages::{
    CertificateBody, CertificateVerify, ClientHello, EcdheClientKeyExchange,
    EcdheServerKeyExchange, Finished, HelloVerifyRequest, PskClientKeyExchange, ServerHello,
};
use crate::handshake::reassembly::Reassembler;
use crate::handshake::{full_message, parse_fragments, HandshakeType};
use crate::pki::{self, Ephemeral};
use crate::record::{split_records, ContentType, Record, DTLS_1_2};
use crate::replay::ReplayWindow;
use crate::server::Failure;
use crate::session::{Cid, Session, SessionError};
use crate::suite::{CipherSuite, KeyExchange, RecordCipher};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

/// What a client keeps to resume a session later (RFC 5246 §7.3).
#[derive(Clone)]
pub struct Resumption {
    pub session_id: Vec<u8>,
    pub master: [u8; 48],
    pub suite: CipherSuite,
    pub extended_master_secret: bool,
}

impl std::fmt::Debug for Resumption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resumption")
            .field("suite", &self.suite)
            .finish_non_exhaustive()
    }
}

/// What happened, for the application.
#[derive(Debug)]
pub enum ClientEvent {
    /// The handshake finished; data can flow.
    Connected { suite: CipherSuite, resumed: bool },
    /// Application data arrived.
    Data(Vec<u8>),
    /// The server closed the connection (close_notify or a fatal alert).
    Closed(AlertDescription),
    /// The handshake failed or timed out.
    Failed(Failure),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    HelloVerifyOrServerHello,
    ServerCertificate,
    ServerKeyExchange,
    CertificateRequestOrDone,
    ServerHelloDone,
    ChangeCipherSpec,
    Finished,
}

struct Handshake {
    started: Instant,
    expect: Expect,
    hello: ClientHello,
    hello_seq: u16,
    resumed: bool,
    suite: CipherSuite,
    server_random: [u8; 32],
    session_id: Vec<u8>,
    ems: bool,
    client_cert_type: u8,
    server_cert_type: u8,
    server_key: Option<ServerKey>,
    server_point: Option<Vec<u8>>,
    cert_requested: bool,
    master: Option<[u8; 48]>,
    /// The master secret of the session offered for resumption.
    resume_master: Option<[u8; 48]>,
    resume_suite: Option<CipherSuite>,
    keys: Option<KeyBlock>,
    read_epoch: u16,
    replay: ReplayWindow,
    transcript: Vec<u8>,
    reassembler: Reassembler,
    out_seq: u16,
    writer: Writer,
    flight: Flight,
    own_cid: Option<Cid>,
    peer_cid: Option<Cid>,
}

enum ServerKey {
    Spki(Vec<u8>),
    Certificate(Vec<u8>),
}

// The established state is the one a client lives in; boxing it would cost an allocation per
// connection to save bytes only while handshaking.
#[allow(clippy::large_enum_variant)]
enum State {
    Handshaking(Box<Handshake>),
    Established {
        session: Session,
        /// Our last flight, for a server that repeats its own (abbreviated handshake).
        final_flight: Option<(Vec<Item>, Writer)>,
    },
    Closed,
}

/// One client connection.
pub struct Client {
    config: Arc<ClientConfig>,
    rng: StdRng,
    state: State,
    transmits: VecDeque<Vec<u8>>,
    events: VecDeque<ClientEvent>,
    resumption: Option<Resumption>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("established", &self.is_established())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Starts a handshake; the first ClientHello is ready in [`poll_transmit`](Self::poll_transmit).
    pub fn connect(
        config: Arc<ClientConfig>,
        now: Instant,
        seed: [u8; 32],
        resume: Option<Resumption>,
    ) -> Self {
        let mut c = Self {
            config,
            rng: StdRng::from_seed(seed),
            state: State::Closed,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            resumption: resume,
        };
        c.start(now);
        c
    }

    /// Drops the current connection state and handshakes again, resuming if possible.
    pub fn reconnect(&mut self, now: Instant) {
        self.start(now);
    }

    fn start(&mut self, now: Instant) {
        let cfg = self.config.clone();
        let mut random = [0u8; 32];
        self.rng.fill_bytes(&mut random);
        let ecdhe = cfg
            .suites
            .iter()
            .any(|s| s.key_exchange() == KeyExchange::EcdheEcdsa);
        let mut ext = ClientExtensions {
            present: true,
            extended_master_secret: cfg.extended_master_secret,
            renegotiation_info: Some(Vec::new()),
            connection_id: cfg.connection_id.clone(),
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
        let hello = ClientHello {
            client_version: DTLS_1_2,
            random,
            session_id: self
                .resumption
                .as_ref()
                .map(|r| r.session_id.clone())
                .unwrap_or_default(),
            cookie: Vec::new(),
            cipher_suites: cfg.suites.iter().map(|s| s.id()).collect(),
            compression_methods: vec![0],
            extensions: ext,
        };
        let body = hello.encode();
        let mut hs = Box::new(Handshake {
            started: now,
            expect: Expect::HelloVerifyOrServerHello,
            hello,
            hello_seq: 0,
            resumed: false,
            suite: CipherSuite::PskAes128Ccm8,
            server_random: [0; 32],
            session_id: Vec::new(),
            ems: false,
            client_cert_type: CERT_TYPE_X509,
            server_cert_type: CERT_TYPE_X509,
            server_key: None,
            server_point: None,
            cert_requested: false,
            master: None,
            resume_master: self.resumption.as_ref().map(|r| r.master),
            resume_suite: self.resumption.as_ref().map(|r| r.suite),
            keys: None,
            read_epoch: 0,
            replay: ReplayWindow::default(),
            transcript: Vec::new(),
            reassembler: Reassembler::new(0, 16 * 1024, 32 * 1024),
            out_seq: 1,
            writer: Writer::new(0),
            flight: Flight::new(Vec::new(), now, &cfg.timers, true),
            own_cid: cfg.connection_id.as_deref().and_then(Cid::new),
            peer_cid: None,
        });
        hs.transcript = full_message(HandshakeType::ClientHello, 0, &body);
        hs.flight = Flight::new(
            vec![Item::Handshake {
                epoch: 0,
                msg_type: HandshakeType::ClientHello,
                seq: 0,
                body,
            }],
            now,
            &cfg.timers,
            true,
        );
        let mut out = Vec::new();
        hs.writer
            .encode(&hs.flight.items, cfg.max_datagram, &mut self.rng, &mut out);
        self.transmits.extend(out);
        self.state = State::Handshaking(hs);
    }

    pub fn is_established(&self) -> bool {
        matches!(self.state, State::Established { .. })
    }

    /// What resumes this session later, once established.
    pub fn resumption(&self) -> Option<&Resumption> {
        self.resumption.as_ref()
    }

    /// The established session (for its CID, suite, size).
    pub fn session(&self) -> Option<&Session> {
        match &self.state {
            State::Established { session, .. } => Some(session),
            _ => None,
        }
    }

    /// One datagram from the server.
    pub fn handle_datagram(&mut self, now: Instant, data: &[u8]) {
        let cid_len = match &self.state {
            State::Handshaking(hs) => hs.own_cid.map_or(0, |c| c.as_bytes().len()),
            State::Established { session, .. } => {
                session.recv_cid.map_or(0, |c| c.as_bytes().len())
            }
            State::Closed => return,
        };
        for record in split_records(data, cid_len) {
            let Ok(record) = record else {
                return;
            };
            self.handle_record(now, &record);
        }
    }

    fn handle_record(&mut self, now: Instant, record: &Record<'_>) {
        match &mut self.state {
            State::Closed => {}
            State::Established {
                session,
                final_flight,
            } => {
                if record.epoch == 0 {
                    // The server repeating its last flight: ours was lost.
                    if let Some((items, writer)) = final_flight {
                        let mut out = Vec::new();
                        writer.encode(items, self.config.max_datagram, &mut self.rng, &mut out);
                        self.transmits.extend(out);
                    }
                    return;
                }
                let Ok((ct, data)) = session.open(record) else {
                    return;
                };
                match ContentType::from_u8(ct) {
                    Some(ContentType::ApplicationData) => {
                        *final_flight = None;
                        self.events.push_back(ClientEvent::Data(data));
                    }
                    Some(ContentType::Alert) => match Alert::decode(&data) {
                        Ok(a)
                            if a.level == AlertLevel::Warning
                                && a.description != AlertDescription::CloseNotify => {}
                        Ok(a) => {
                            self.state = State::Closed;
                            self.events.push_back(ClientEvent::Closed(a.description));
                        }
                        Err(_) => {}
                    },
                    _ => {}
                }
            }
            State::Handshaking(hs) => {
                let cfg = self.config.clone();
                match hs.handle_record(&cfg, &mut self.rng, now, record) {
                    Ok(HsStep::Continue) => {}
                    Ok(HsStep::Send(out)) => self.transmits.extend(out),
                    Ok(HsStep::Done { out, final_flight }) => {
                        self.transmits.extend(out);
                        let resumed = hs.resumed;
                        let suite = hs.suite;
                        match hs.establish() {
                            Ok((session, resumption)) => {
                                self.resumption = Some(resumption);
                                self.state = State::Established {
                                    session,
                                    final_flight,
                                };
                                self.events
                                    .push_back(ClientEvent::Connected { suite, resumed });
                            }
                            Err(f) => self.fail(f),
                        }
                    }
                    Err(f) => {
                        if f.alert != AlertDescription::CloseNotify {
                            let mut out = Vec::new();
                            crate::record::write_plaintext(
                                ContentType::Alert,
                                DTLS_1_2,
                                0,
                                hs.writer.seq[0],
                                &Alert::fatal(f.alert).encode(),
                                &mut out,
                            );
                            self.transmits.push_back(out);
                        }
                        // A server that refuses a resumption must get a full handshake next.
                        if f.alert != AlertDescription::CloseNotify {
                            self.resumption = None;
                        }
                        self.fail(f);
                    }
                }
            }
        }
    }

    fn fail(&mut self, f: Failure) {
        self.state = State::Closed;
        self.events.push_back(ClientEvent::Failed(f));
    }

    /// Retransmits the current flight or gives up, as the time says.
    pub fn handle_timeout(&mut self, now: Instant) {
        let State::Handshaking(hs) = &mut self.state else {
            return;
        };
        if now >= hs.started + self.config.timers.handshake_timeout {
            self.fail(Failure {
                alert: AlertDescription::CloseNotify,
                reason: "handshake timed out",
                identity: None,
            });
            return;
        }
        if hs.flight.retransmit_at.is_some_and(|t| t <= now) {
            let mut out = Vec::new();
            hs.writer.encode(
                &hs.flight.items,
                self.config.max_datagram,
                &mut self.rng,
                &mut out,
            );
            hs.flight.backoff(now, &self.config.timers);
            self.transmits.extend(out);
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.state {
            State::Handshaking(hs) => {
                let deadline = hs.started + self.config.timers.handshake_timeout;
                Some(
                    hs.flight
                        .retransmit_at
                        .map_or(deadline, |r| r.min(deadline)),
                )
            }
            _ => None,
        }
    }

    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// Sends application data.
    pub fn send(&mut self, data: &[u8]) -> Result<(), SessionError> {
        let State::Established { session, .. } = &mut self.state else {
            return Err(SessionError::Unknown);
        };
        let mut out = Vec::with_capacity(data.len() + 64);
        session.seal(ContentType::ApplicationData, data, &mut self.rng, &mut out)?;
        self.transmits.push_back(out);
        Ok(())
    }

    /// Sends close_notify and forgets the connection (the resumption state stays).
    pub fn close(&mut self) {
        if let State::Established { session, .. } = &mut self.state {
            let mut out = Vec::new();
            if session
                .seal(
                    ContentType::Alert,
                    &Alert::close_notify().encode(),
                    &mut self.rng,
                    &mut out,
                )
                .is_ok()
            {
                self.transmits.push_back(out);
            }
        }
        self.state = State::Closed;
    }
}

enum HsStep {
    Continue,
    Send(Vec<Vec<u8>>),
    Done {
        out: Vec<Vec<u8>>,
        final_flight: Option<(Vec<Item>, Writer)>,
    },
}

impl Handshake {
    fn fail(&self, alert: AlertDescription, reason: &'static str) -> Failure {
        Failure {
            alert,
            reason,
            identity: None,
        }
    }

    fn handle_record(
        &mut self,
        cfg: &ClientConfig,
        rng: &mut StdRng,
        now: Instant,
        record: &Record<'_>,
    ) -> Result<HsStep, Failure> {
        let plaintext;
        let (ct, payload): (u8, &[u8]) = if record.epoch == 0 {
            if record.content_type == ContentType::Tls12Cid as u8 {
                return Ok(HsStep::Continue);
            }
            (record.content_type, record.fragment)
        } else if record.epoch == 1 && self.read_epoch == 1 {
            let Some(keys) = self.read_keys() else {
                return Ok(HsStep::Continue);
            };
            if !self.replay.is_fresh(record.seq) {
                return Ok(HsStep::Continue);
            }
            match keys.open(record) {
                Ok((ct, p)) => {
                    self.replay.mark(record.seq);
                    plaintext = p;
                    (ct, &plaintext)
                }
                Err(_) => {
                    return Err(self.fail(
                        AlertDescription::BadRecordMac,
                        "server Finished does not decrypt (wrong key?)",
                    ))
                }
            }
        } else {
            return Ok(HsStep::Continue);
        };
        match ContentType::from_u8(ct) {
            Some(ContentType::Handshake) => {
                self.handle_handshake(cfg, rng, now, payload, record.epoch)
            }
            Some(ContentType::ChangeCipherSpec) => {
                if self.expect == Expect::ChangeCipherSpec {
                    self.read_epoch = 1;
                    self.expect = Expect::Finished;
                }
                Ok(HsStep::Continue)
            }
            Some(ContentType::Alert) => {
                let desc = Alert::decode(payload)
                    .map(|a| a.description)
                    .unwrap_or(AlertDescription::DecodeError);
                Err(Failure {
                    alert: AlertDescription::CloseNotify,
                    reason: match desc {
                        AlertDescription::UnknownPskIdentity => "server: unknown PSK identity",
                        AlertDescription::BadRecordMac | AlertDescription::DecryptError => {
                            "server: decryption failed (wrong key?)"
                        }
                        AlertDescription::HandshakeFailure => "server: handshake failure",
                        AlertDescription::BadCertificate
                        | AlertDescription::UnsupportedCertificate
                        | AlertDescription::UnknownCa
                        | AlertDescription::CertificateRevoked
                        | AlertDescription::AccessDenied => "server refused our credential",
                        _ => "server sent a fatal alert",
                    },
                    identity: None,
                })
            }
            _ => Ok(HsStep::Continue),
        }
    }

    fn read_keys(&self) -> Option<DirectionKeys> {
        self.keys.as_ref().map(|k| k.server_write)
    }

    fn handle_handshake(
        &mut self,
        cfg: &ClientConfig,
        rng: &mut StdRng,
        now: Instant,
        payload: &[u8],
        epoch: u16,
    ) -> Result<HsStep, Failure> {
        for frag in parse_fragments(payload) {
            let Ok((header, data)) = frag else {
                return Ok(HsStep::Continue);
            };
            if (epoch == 1) != (header.msg_type == HandshakeType::Finished as u8) {
                continue;
            }
            let _ = self.reassembler.insert(&header, data);
        }
        let mut out = Vec::new();
        while let Some((msg_type, seq, body)) = self.reassembler.pop() {
            if let Some(step) = self.handle_message(cfg, rng, now, msg_type, seq, body, &mut out)? {
                return Ok(step);
            }
        }
        Ok(if out.is_empty() {
            HsStep::Continue
        } else {
            HsStep::Send(out)
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn handle_message(
        &mut self,
        cfg: &ClientConfig,
        rng: &mut StdRng,
        now: Instant,
        msg_type: u8,
        seq: u16,
        body: Vec<u8>,
        out: &mut Vec<Vec<u8>>,
    ) -> Result<Option<HsStep>, Failure> {
        let Some(t) = HandshakeType::from_u8(msg_type) else {
            return Err(self.fail(
                AlertDescription::UnexpectedMessage,
                "unknown handshake message",
            ));
        };
        let full = full_message(t, seq, &body);
        match (self.expect, t) {
            (Expect::HelloVerifyOrServerHello, HandshakeType::HelloVerifyRequest) => {
                let hvr = HelloVerifyRequest::parse(&body).map_err(|_| {
                    self.fail(
                        AlertDescription::DecodeError,
                        "malformed HelloVerifyRequest",
                    )
                })?;
                self.hello.cookie = hvr.cookie;
                let body = self.hello.encode();
                // RFC 6347 §4.2.1: the hello and HelloVerifyRequest before it are not hashed.
                self.hello_seq = 1;
                self.transcript = full_message(HandshakeType::ClientHello, 1, &body);
                self.out_seq = 2;
                self.flight = Flight::new(
                    vec![Item::Handshake {
                        epoch: 0,
                        msg_type: HandshakeType::ClientHello,
                        seq: 1,
                        body,
                    }],
                    now,
                    &cfg.timers,
                    true,
                );
                self.writer
                    .encode(&self.flight.items, cfg.max_datagram, rng, out);
            }
            (Expect::HelloVerifyOrServerHello, HandshakeType::ServerHello) => {
                let sh = ServerHello::parse(&body).map_err(|_| {
                    self.fail(AlertDescription::DecodeError, "malformed ServerHello")
                })?;
                if sh.server_version != DTLS_1_2 {
                    return Err(self.fail(
                        AlertDescription::ProtocolVersion,
                        "server does not speak DTLS 1.2",
                    ));
                }
                let suite = CipherSuite::from_id(sh.cipher_suite)
                    .filter(|s| cfg.suites.contains(s))
                    .ok_or_else(|| {
                        self.fail(
                            AlertDescription::IllegalParameter,
                            "server chose a suite we did not offer",
                        )
                    })?;
                self.transcript.extend_from_slice(&full);
                self.suite = suite;
                self.server_random = sh.random;
                self.session_id = sh.session_id.clone();
                self.ems = sh.extensions.extended_master_secret;
                if let Some(cid) = &sh.extensions.connection_id {
                    if self.own_cid.is_some() && suite.record_cipher() != RecordCipher::CbcSha256 {
                        self.peer_cid = Cid::new(cid);
                        self.writer.cid = self.peer_cid;
                    }
                } else {
                    // The server did not agree to CIDs: records carry none either way.
                    self.own_cid = None;
                }
                self.client_cert_type = sh
                    .extensions
                    .client_certificate_type
                    .unwrap_or(CERT_TYPE_X509);
                self.server_cert_type = sh
                    .extensions
                    .server_certificate_type
                    .unwrap_or(CERT_TYPE_X509);
                let resumed =
                    !self.hello.session_id.is_empty() && self.hello.session_id == sh.session_id;
                if resumed {
                    if self.resume_suite != Some(suite) {
                        return Err(self.fail(
                            AlertDescription::IllegalParameter,
                            "server resumed with another suite",
                        ));
                    }
                    self.resumed = true;
                    self.master = self.resume_master.take();
                    if self.master.is_none() {
                        return Err(self.fail(
                            AlertDescription::IllegalParameter,
                            "server resumed a session we do not have",
                        ));
                    }
                    self.derive_keys();
                    self.expect = Expect::ChangeCipherSpec;
                } else {
                    self.expect = match suite.key_exchange() {
                        KeyExchange::Psk => Expect::ServerKeyExchange,
                        KeyExchange::EcdheEcdsa => Expect::ServerCertificate,
                    };
                }
            }
            (Expect::ServerCertificate, HandshakeType::Certificate) => {
                let parsed = if self.server_cert_type == CERT_TYPE_RAW_PUBLIC_KEY {
                    CertificateBody::parse_raw_public_key(&body)
                } else {
                    CertificateBody::parse_x509(&body)
                }
                .map_err(|_| {
                    self.fail(
                        AlertDescription::DecodeError,
                        "malformed server Certificate",
                    )
                })?;
                let key = match parsed {
                    CertificateBody::RawPublicKey(spki) => {
                        match &cfg.trust {
                            ServerTrust::PinnedKey(p) if *p != spki => {
                                return Err(self.fail(
                                    AlertDescription::BadCertificate,
                                    "server key is not the pinned one",
                                ))
                            }
                            ServerTrust::Roots(_) => {
                                return Err(self.fail(
                                    AlertDescription::UnsupportedCertificate,
                                    "server sent a raw key, a certificate was required",
                                ))
                            }
                            _ => {}
                        }
                        ServerKey::Spki(spki)
                    }
                    CertificateBody::X509(chain) => {
                        let leaf = chain.first().cloned().ok_or_else(|| {
                            self.fail(
                                AlertDescription::BadCertificate,
                                "server sent no certificate",
                            )
                        })?;
                        if let ServerTrust::Roots(roots) = &cfg.trust {
                            let unix = std::time::SystemTime::now()
                                .duration_since(std::time::UNIX_EPOCH)
                                .map(|d| d.as_secs())
                                .unwrap_or(0);
                            roots
                                .verify(&chain, unix, false)
                                .map_err(|a| self.fail(a, "server certificate not trusted"))?;
                        }
                        ServerKey::Certificate(leaf)
                    }
                };
                self.server_key = Some(key);
                self.transcript.extend_from_slice(&full);
                self.expect = Expect::ServerKeyExchange;
            }
            (Expect::ServerKeyExchange, HandshakeType::ServerKeyExchange) => {
                if self.suite.key_exchange() == KeyExchange::EcdheEcdsa {
                    let ske = EcdheServerKeyExchange::parse(&body).map_err(|_| {
                        self.fail(AlertDescription::DecodeError, "malformed ServerKeyExchange")
                    })?;
                    if ske.params.named_curve != GROUP_SECP256R1
                        || ske.signature_scheme != SIG_ECDSA_SECP256R1_SHA256
                    {
                        return Err(self.fail(
                            AlertDescription::IllegalParameter,
                            "unsupported curve or signature",
                        ));
                    }
                    let signed = [
                        &self.hello.random[..],
                        &self.server_random[..],
                        &ske.params.encode_params(),
                    ]
                    .concat();
                    let ok = match &self.server_key {
                        Some(ServerKey::Spki(spki)) => {
                            pki::verify_with_spki(spki, &signed, &ske.signature)
                        }
                        Some(ServerKey::Certificate(c)) => {
                            pki::verify_with_certificate(c, &signed, &ske.signature)
                        }
                        None => Err(AlertDescription::UnexpectedMessage),
                    };
                    ok.map_err(|a| self.fail(a, "ServerKeyExchange signature invalid"))?;
                    self.server_point = Some(ske.params.public_key);
                }
                // A PSK identity hint is allowed and ignored (RFC 4279 §2).
                self.transcript.extend_from_slice(&full);
                self.expect = Expect::CertificateRequestOrDone;
            }
            (Expect::ServerKeyExchange, HandshakeType::ServerHelloDone)
                if self.suite.key_exchange() == KeyExchange::Psk =>
            {
                self.transcript.extend_from_slice(&full);
                return self.send_flight5(cfg, rng, now, out).map(Some);
            }
            (Expect::CertificateRequestOrDone, HandshakeType::CertificateRequest) => {
                self.cert_requested = true;
                self.transcript.extend_from_slice(&full);
                self.expect = Expect::ServerHelloDone;
            }
            (
                Expect::CertificateRequestOrDone | Expect::ServerHelloDone,
                HandshakeType::ServerHelloDone,
            ) => {
                self.transcript.extend_from_slice(&full);
                return self.send_flight5(cfg, rng, now, out).map(Some);
            }
            (Expect::Finished, HandshakeType::Finished) => {
                let fin = Finished::parse(&body)
                    .map_err(|_| self.fail(AlertDescription::DecodeError, "malformed Finished"))?;
                let master = self.master.ok_or_else(|| {
                    self.fail(AlertDescription::InternalError, "no master secret")
                })?;
                if !crypto::finished_matches(
                    &master,
                    b"server finished",
                    &self.transcript,
                    &fin.verify_data,
                ) {
                    return Err(self.fail(
                        AlertDescription::DecryptError,
                        "server Finished does not verify",
                    ));
                }
                self.transcript.extend_from_slice(&full);
                if self.resumed {
                    let verify = crypto::finished(&master, b"client finished", &self.transcript);
                    let seq = self.next_seq();
                    let items = vec![
                        Item::ChangeCipherSpec,
                        Item::Handshake {
                            epoch: 1,
                            msg_type: HandshakeType::Finished,
                            seq,
                            body: Finished {
                                verify_data: verify,
                            }
                            .encode(),
                        },
                    ];
                    self.writer.encode(&items, cfg.max_datagram, rng, out);
                    return Ok(Some(HsStep::Done {
                        out: std::mem::take(out),
                        final_flight: Some((items, self.writer.clone())),
                    }));
                }
                return Ok(Some(HsStep::Done {
                    out: std::mem::take(out),
                    final_flight: None,
                }));
            }
            _ => {
                return Err(self.fail(
                    AlertDescription::UnexpectedMessage,
                    "handshake message out of order",
                ))
            }
        }
        Ok(None)
    }

    fn next_seq(&mut self) -> u16 {
        let s = self.out_seq;
        self.out_seq = self.out_seq.wrapping_add(1);
        s
    }

    fn push(&mut self, items: &mut Vec<Item>, epoch: u16, msg_type: HandshakeType, body: Vec<u8>) {
        let seq = self.next_seq();
        self.transcript
            .extend_from_slice(&full_message(msg_type, seq, &body));
        items.push(Item::Handshake {
            epoch,
            msg_type,
            seq,
            body,
        });
    }

    fn send_flight5(
        &mut self,
        cfg: &ClientConfig,
        rng: &mut StdRng,
        now: Instant,
        out: &mut Vec<Vec<u8>>,
    ) -> Result<HsStep, Failure> {
        let mut items = Vec::new();
        let pre_master = match (&cfg.auth, self.suite.key_exchange()) {
            (ClientAuth::Psk { identity, key }, KeyExchange::Psk) => {
                let cke = PskClientKeyExchange {
                    identity: identity.clone(),
                };
                self.push(
                    &mut items,
                    0,
                    HandshakeType::ClientKeyExchange,
                    cke.encode(),
                );
                crypto::psk_pre_master(key)
            }
            (ClientAuth::Key(key), KeyExchange::EcdheEcdsa) => {
                if self.cert_requested {
                    let cert = if self.client_cert_type == CERT_TYPE_RAW_PUBLIC_KEY {
                        CertificateBody::RawPublicKey(key.spki.clone())
                    } else {
                        CertificateBody::X509(key.chain.clone())
                    };
                    self.push(&mut items, 0, HandshakeType::Certificate, cert.encode());
                }
                let point = self.server_point.clone().ok_or_else(|| {
                    self.fail(AlertDescription::UnexpectedMessage, "no ServerKeyExchange")
                })?;
                let eph = Ephemeral::generate(rng);
                let pm = eph
                    .agree(&point)
                    .map_err(|a| self.fail(a, "bad ECDHE point from server"))?;
                let cke = EcdheClientKeyExchange {
                    public_key: eph.public.clone(),
                };
                self.push(
                    &mut items,
                    0,
                    HandshakeType::ClientKeyExchange,
                    cke.encode(),
                );
                pm.to_vec()
            }
            _ => {
                return Err(self.fail(
                    AlertDescription::HandshakeFailure,
                    "server chose a suite our credential cannot do",
                ))
            }
        };
        self.master = Some(if self.ems {
            crypto::extended_master_secret(&pre_master, &crypto::sha256(&[&self.transcript]))
        } else {
            crypto::master_secret(&pre_master, &self.hello.random, &self.server_random)
        });
        if let (ClientAuth::Key(key), true) = (&cfg.auth, self.cert_requested) {
            let cv = CertificateVerify {
                signature_scheme: SIG_ECDSA_SECP256R1_SHA256,
                signature: key.sign(&self.transcript),
            };
            self.push(&mut items, 0, HandshakeType::CertificateVerify, cv.encode());
        }
        self.derive_keys();
        items.push(Item::ChangeCipherSpec);
        let master = self.master.unwrap_or([0; 48]);
        let verify = crypto::finished(&master, b"client finished", &self.transcript);
        self.push(
            &mut items,
            1,
            HandshakeType::Finished,
            Finished {
                verify_data: verify,
            }
            .encode(),
        );
        self.flight = Flight::new(items, now, &cfg.timers, true);
        self.writer
            .encode(&self.flight.items, cfg.max_datagram, rng, out);
        self.expect = Expect::ChangeCipherSpec;
        Ok(HsStep::Send(std::mem::take(out)))
    }

    fn derive_keys(&mut self) {
        if let Some(master) = &self.master {
            let kb = crypto::key_block(master, &self.hello.random, &self.server_random, self.suite);
            self.writer.keys = Some(kb.client_write);
            self.keys = Some(kb);
        }
    }

    fn establish(&mut self) -> Result<(Session, Resumption), Failure> {
        let (Some(keys), Some(master)) = (self.keys, self.master) else {
            return Err(self.fail(AlertDescription::InternalError, "no keys"));
        };
        let session = Session {
            suite: self.suite,
            read: keys.server_write,
            write: keys.client_write,
            epoch: 1,
            write_seq: self.writer.seq[1],
            replay: self.replay,
            send_cid: self.peer_cid,
            recv_cid: self.own_cid,
            principal: Arc::from(""),
        };
        Ok((
            session,
            Resumption {
                session_id: self.session_id.clone(),
                master,
                suite: self.suite,
                extended_master_secret: self.ems,
            },
        ))
    }
}
