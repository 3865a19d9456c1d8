//! The client role: one DTLS 1.2 connection to one server, sans-IO (RFC 6347 §4.2; the
//! suites, extensions and flights mirror [`crate::server`]). Used by the client simulator,
//! by tests, and by anything in this workspace that dials a DTLS server.
//!
//! A client answers the HelloVerifyRequest, authenticates with a PSK or an ECDSA key (raw
//! public key or certificate), asks for a Connection ID if configured, resumes by session id
//! when given a [`Resumption`], and retransmits its flights with backoff until the server's
//! next flight arrives.
//!
//! Everything the server sends is range-checked where it is parsed (see
//! [`crate::handshake::messages`]); on top of that a server Connection ID longer than
//! [`MAX_CID_LEN`](crate::config::MAX_CID_LEN) ends the handshake, since this engine could not
//! put it in its records. Values from the configuration that a field cannot carry (a PSK
//! identity over 65535 bytes, a certificate chain over 2^24) end the handshake with a
//! `Failed` event instead of being sent cut short.
use crate::alert::{Alert, AlertDescription, AlertLevel};
use crate::codec::{DecodeError, EncodeError};
use crate::config::{ClientAuth, ClientConfig, ServerTrust};
use crate::crypto::{self, DirectionKeys, KeyBlock};
use crate::flight::{Flight, Item, Writer};
use crate::handshake::extensions::{
    ClientExtensions, CERT_TYPE_RAW_PUBLIC_KEY, CERT_TYPE_X509, GROUP_SECP256R1,
    POINT_FORMAT_UNCOMPRESSED, SIG_ECDSA_SECP256R1_SHA256,
};
use crate::handshake::messages::MAX_SESSION_ID_LEN;
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
use crate::time::deadline;
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
        // A configured CID this engine cannot hold is not offered at all: offering it and
        // then receiving without it would lose every record the server sends.
        let own_cid = cfg.connection_id.as_deref().and_then(Cid::new);
        if cfg.connection_id.is_some() && own_cid.is_none() {
            tracing::warn!(
                max = crate::config::MAX_CID_LEN,
                "configured Connection ID too long; not asking for one"
            );
        }
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
        // A session id the hello cannot carry (RFC 5246 §7.4.1.2: at most 32 bytes) cannot
        // be resumed; the handshake is a full one instead.
        if self
            .resumption
            .as_ref()
            .is_some_and(|r| r.session_id.len() > MAX_SESSION_ID_LEN)
        {
            self.resumption = None;
        }
        let mut cipher_suites: Vec<u16> = Vec::with_capacity(cfg.suites.len());
        for id in cfg.suites.iter().map(|s| s.id()) {
            // Repeats add nothing, and without them the list is a handful of entries.
            if !cipher_suites.contains(&id) {
                cipher_suites.push(id);
            }
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
            cipher_suites,
            compression_methods: vec![0],
            extensions: ext,
        };
        let body = match hello.encode() {
            Ok(body) => body,
            Err(e) => {
                self.fail(unencodable(e));
                return;
            }
        };
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
            own_cid,
            peer_cid: None,
        });
        hs.transcript = match full_message(HandshakeType::ClientHello, 0, &body) {
            Ok(t) => t,
            Err(e) => {
                self.fail(unencodable(e));
                return;
            }
        };
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
        if let Err(e) =
            hs.writer
                .encode(&hs.flight.items, cfg.max_datagram, &mut self.rng, &mut out)
        {
            self.fail(unencodable(e));
            return;
        }
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
                    // Until the server's first application data confirms an abbreviated
                    // handshake, the server may still fail it (our Finished arrived damaged,
                    // say), and then its fatal alert comes unencrypted. Without this the
                    // device would count itself connected to a server that is not.
                    if final_flight.is_some() && record.content_type == ContentType::Alert as u8 {
                        if let Ok(a) = Alert::decode(record.fragment) {
                            if a.level == AlertLevel::Fatal {
                                self.state = State::Closed;
                                self.events.push_back(ClientEvent::Closed(a.description));
                            }
                        }
                        return;
                    }
                    // The server repeating its last flight: ours was lost.
                    if let Some((items, writer)) = final_flight {
                        // The resent Finished is sealed under the session's key, so it takes
                        // its number from the session's counter: numbering it from the
                        // handshake's copy would give the next application record the same
                        // number, which is the same AEAD nonce (and a record the server drops
                        // as a replay).
                        if let Some(seq) = writer.seq.get_mut(1) {
                            *seq = session.write_seq;
                        }
                        let mut out = Vec::new();
                        // Fails only once the sequence numbers run out; then nothing is resent.
                        if writer
                            .encode(items, self.config.max_datagram, &mut self.rng, &mut out)
                            .is_ok()
                        {
                            if let Some(&next) = writer.seq.get(1) {
                                session.write_seq = next;
                            }
                            self.transmits.extend(out);
                        }
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
                            // Not written once the epoch-0 numbers ran out; the handshake
                            // fails all the same.
                            if crate::record::write_plaintext(
                                ContentType::Alert,
                                DTLS_1_2,
                                0,
                                hs.writer.seq[0],
                                &Alert::fatal(f.alert).encode(),
                                &mut out,
                            )
                            .is_ok()
                            {
                                self.transmits.push_back(out);
                            }
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
        if now >= deadline(hs.started, self.config.timers.handshake_timeout) {
            self.fail(Failure {
                alert: AlertDescription::CloseNotify,
                reason: "handshake timed out",
                identity: None,
            });
            return;
        }
        if hs.flight.retransmit_at.is_some_and(|t| t <= now) {
            let mut out = Vec::new();
            if let Err(e) = hs.writer.encode(
                &hs.flight.items,
                self.config.max_datagram,
                &mut self.rng,
                &mut out,
            ) {
                self.fail(unencodable(e));
                return;
            }
            hs.flight.backoff(now, &self.config.timers);
            self.transmits.extend(out);
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.state {
            State::Handshaking(hs) => {
                let give_up = deadline(hs.started, self.config.timers.handshake_timeout);
                Some(hs.flight.retransmit_at.map_or(give_up, |r| r.min(give_up)))
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

/// The failure for a message or flight of ours that cannot be encoded (a configured value
/// too large for its field); the field is logged, since the failure reason cannot say it.
fn unencodable(e: EncodeError) -> Failure {
    tracing::warn!(error = %e, "DTLS handshake message cannot be encoded");
    Failure {
        alert: AlertDescription::InternalError,
        reason: "handshake message cannot be encoded",
        identity: None,
    }
}

/// The failure for a server message that does not parse, with the field logged.
fn malformed(reason: &'static str, e: DecodeError) -> Failure {
    tracing::debug!(error = %e, reason, "malformed DTLS handshake message");
    Failure {
        alert: AlertDescription::DecodeError,
        reason,
        identity: None,
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
        // The reassembler caps bodies at 16 KiB, far below the 2^24 the header can carry.
        let full = full_message(t, seq, &body).map_err(unencodable)?;
        match (self.expect, t) {
            (Expect::HelloVerifyOrServerHello, HandshakeType::HelloVerifyRequest) => {
                let hvr = HelloVerifyRequest::parse(&body)
                    .map_err(|e| malformed("malformed HelloVerifyRequest", e))?;
                self.hello.cookie = hvr.cookie;
                let body = self.hello.encode().map_err(unencodable)?;
                // RFC 6347 §4.2.1: the hello and HelloVerifyRequest before it are not hashed.
                // The new hello takes the next message_seq (RFC 6347 §4.2.2), which is the
                // one the server answers with: 1 after the usual single HelloVerifyRequest,
                // more when the server asks again (its cookie secret rotated, or it
                // restarted). Reusing 1 then would leave the reassembler expecting the
                // ServerHello at a number the server never uses.
                self.hello_seq = seq.wrapping_add(1);
                self.transcript = full_message(HandshakeType::ClientHello, self.hello_seq, &body)
                    .map_err(unencodable)?;
                self.out_seq = self.hello_seq.wrapping_add(1);
                self.flight = Flight::new(
                    vec![Item::Handshake {
                        epoch: 0,
                        msg_type: HandshakeType::ClientHello,
                        seq: self.hello_seq,
                        body,
                    }],
                    now,
                    &cfg.timers,
                    true,
                );
                self.writer
                    .encode(&self.flight.items, cfg.max_datagram, rng, out)
                    .map_err(unencodable)?;
            }
            (Expect::HelloVerifyOrServerHello, HandshakeType::ServerHello) => {
                let sh =
                    ServerHello::parse(&body).map_err(|e| malformed("malformed ServerHello", e))?;
                if sh.server_version != DTLS_1_2 {
                    return Err(self.fail(
                        AlertDescription::ProtocolVersion,
                        "server does not speak DTLS 1.2",
                    ));
                }
                if sh.compression_method != 0 {
                    // We offer only null compression (RFC 5246 §7.4.1.3: the server picks
                    // one the client offered).
                    return Err(self.fail(
                        AlertDescription::IllegalParameter,
                        "server chose a compression method we did not offer",
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
                        // RFC 9146 allows up to 255 bytes; records we send must carry it, and
                        // this engine holds at most MAX_CID_LEN. Failing beats sending records
                        // the server cannot route.
                        let Some(peer) = Cid::new(cid) else {
                            return Err(self.fail(
                                AlertDescription::HandshakeFailure,
                                "server's Connection ID is longer than 16 bytes",
                            ));
                        };
                        self.peer_cid = Some(peer);
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
                .map_err(|e| malformed("malformed server Certificate", e))?;
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
                    let ske = EcdheServerKeyExchange::parse(&body)
                        .map_err(|e| malformed("malformed ServerKeyExchange", e))?;
                    if ske.params.named_curve != GROUP_SECP256R1
                        || ske.signature_scheme != SIG_ECDSA_SECP256R1_SHA256
                    {
                        return Err(self.fail(
                            AlertDescription::IllegalParameter,
                            "unsupported curve or signature",
                        ));
                    }
                    let signed = ske
                        .params
                        .signed_data(&self.hello.random, &self.server_random)
                        .map_err(unencodable)?;
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
                let fin = Finished::parse(&body).map_err(|e| malformed("malformed Finished", e))?;
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
                            .encode()
                            .map_err(unencodable)?,
                        },
                    ];
                    self.writer
                        .encode(&items, cfg.max_datagram, rng, out)
                        .map_err(unencodable)?;
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

    /// Numbers a message of ours, adds it to the transcript and to `items`. `body` is its
    /// encoding, which fails only for a configured value too large for its field.
    fn push(
        &mut self,
        items: &mut Vec<Item>,
        epoch: u16,
        msg_type: HandshakeType,
        body: Result<Vec<u8>, EncodeError>,
    ) -> Result<(), Failure> {
        let body = body.map_err(unencodable)?;
        let full = full_message(msg_type, self.out_seq, &body).map_err(unencodable)?;
        let seq = self.next_seq();
        self.transcript.extend_from_slice(&full);
        items.push(Item::Handshake {
            epoch,
            msg_type,
            seq,
            body,
        });
        Ok(())
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
                if key.len() > crypto::MAX_PSK_LEN {
                    // RFC 4279 §5.3; refused rather than cut, which would fail at the server
                    // as a wrong key.
                    return Err(self.fail(
                        AlertDescription::InternalError,
                        "PSK longer than 65535 bytes",
                    ));
                }
                let cke = PskClientKeyExchange {
                    identity: identity.clone(),
                };
                self.push(
                    &mut items,
                    0,
                    HandshakeType::ClientKeyExchange,
                    cke.encode(),
                )?;
                crypto::psk_pre_master(key)
            }
            (ClientAuth::Key(key), KeyExchange::EcdheEcdsa) => {
                if self.cert_requested {
                    let cert = if self.client_cert_type == CERT_TYPE_RAW_PUBLIC_KEY {
                        CertificateBody::RawPublicKey(key.spki.clone())
                    } else {
                        CertificateBody::X509(key.chain.clone())
                    };
                    self.push(&mut items, 0, HandshakeType::Certificate, cert.encode())?;
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
                )?;
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
            self.push(&mut items, 0, HandshakeType::CertificateVerify, cv.encode())?;
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
        )?;
        self.flight = Flight::new(items, now, &cfg.timers, true);
        self.writer
            .encode(&self.flight.items, cfg.max_datagram, rng, out)
            .map_err(unencodable)?;
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
