//! The client's handshake as a chain of states (RFC 6347 §4.2; RFC 5246 §7.4; RFC 4279 PSK;
//! RFC 8422 ECDHE-ECDSA; RFC 7250 raw public keys; RFC 7627 Extended Master Secret; RFC 9146
//! Connection ID negotiation).
//!
//! Each state is a type holding what that point of the handshake needs and nothing more;
//! handling a message consumes it and returns the next. What every state shares (the
//! transcript, reassembly, our flight and its record writer, the record reader) lives in
//! [`Common`]. The ClientHello and its cookie exchange are in [`hello`].
mod hello;

use crate::alert::AlertDescription;
use crate::client::Resumption;
use crate::codec::EncodeError;
use crate::config::{ClientAuth, ClientConfig, ServerTrust};
use crate::crypto::{self, KeyBlock};
use crate::error::HandshakeError;
use crate::flight::{Flight, Item, Writer};
use crate::handshake::extensions::{
    CERT_TYPE_RAW_PUBLIC_KEY, GROUP_SECP256R1, SIG_ECDSA_SECP256R1_SHA256,
};
use crate::handshake::messages::{
    CertificateBody, CertificateVerify, EcdheClientKeyExchange, EcdheServerKeyExchange, Finished,
    PskClientKeyExchange,
};
use crate::handshake::reassembly::Reassembler;
use crate::handshake::{full_message, parse_fragments, HandshakeType};
use crate::pki::{self, Ephemeral};
use crate::record::Cid;
use crate::record::{write_plaintext, ContentType, HandshakeReader, Inbound, Record, DTLS_1_2};
use crate::session::Session;
use crate::suite::{CipherSuite, KeyExchange};
pub(super) use hello::start;
use hello::ExpectServerHello;
use rand::rngs::StdRng;
use std::sync::Arc;
use std::time::Instant;

/// Largest handshake message accepted from the server (a certificate chain fits easily).
pub(super) const MAX_MESSAGE: usize = 16 * 1024;
/// Bytes of out-of-order handshake data buffered per handshake.
pub(super) const MAX_BUFFERED: usize = 32 * 1024;

/// What one call lends the handshake.
pub(super) struct Ctx<'a> {
    pub cfg: &'a ClientConfig,
    pub rng: &'a mut StdRng,
    pub now: Instant,
    /// Datagrams to send.
    pub out: &'a mut Vec<Vec<u8>>,
}

/// State every step of the handshake shares.
pub(super) struct Common {
    pub started: Instant,
    pub client_random: [u8; 32],
    /// The handshake messages so far, as hashed for Finished and Extended Master Secret.
    pub transcript: Vec<u8>,
    pub reassembler: Reassembler,
    /// The message_seq of our next handshake message.
    pub out_seq: u16,
    pub writer: Writer,
    pub flight: Flight,
    pub reader: HandshakeReader,
    /// The CID we asked to receive (dropped when the server does not agree to CIDs).
    pub own_cid: Option<Cid>,
    /// The CID the server asked us to send.
    pub peer_cid: Option<Cid>,
}

impl Common {
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
    ) -> Result<(), HandshakeError> {
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

    /// Makes `items` our current flight and sends it.
    pub fn send_flight(
        &mut self,
        ctx: &mut Ctx<'_>,
        items: Vec<Item>,
        expects_reply: bool,
    ) -> Result<(), HandshakeError> {
        self.flight = Flight::new(items, ctx.now, &ctx.cfg.timers, expects_reply);
        self.writer
            .encode(&self.flight.items, ctx.cfg.max_datagram, ctx.rng, ctx.out)
            .map_err(unencodable)
    }

    /// The epoch-1 write keys from `master`, which our records use from here on.
    fn derive_keys(&mut self, neg: &Negotiated, master: &[u8; 48]) -> KeyBlock {
        let kb = crypto::key_block(master, &self.client_random, &neg.server_random, neg.suite);
        self.writer.keys = Some(kb.client_write);
        kb
    }
}

/// What the ServerHello settled.
pub(super) struct Negotiated {
    pub suite: CipherSuite,
    pub server_random: [u8; 32],
    pub session_id: Vec<u8>,
    pub ems: bool,
    /// The certificate type we send if asked (ECDHE only).
    pub client_cert_type: u8,
}

/// Waiting for the server's Certificate (ECDHE-ECDSA).
pub(super) struct ExpectCertificate {
    pub neg: Negotiated,
    pub server_cert_type: u8,
}

/// Waiting for the ServerKeyExchange (ECDHE: required, signed by `server_key`; PSK: an
/// optional identity hint, so a ServerHelloDone may come instead).
pub(super) struct ExpectServerKeyExchange {
    neg: Negotiated,
    /// The server's authenticated key (SubjectPublicKeyInfo DER), from its Certificate: raw,
    /// or read from its X.509 leaf.
    server_key: Option<Vec<u8>>,
}

/// Waiting for the ServerHelloDone, perhaps after a CertificateRequest.
pub(super) struct ExpectServerHelloDone {
    neg: Negotiated,
    /// The server's ECDHE public key (ECDHE suites).
    server_point: Option<Vec<u8>>,
    cert_requested: bool,
}

/// Keys are derived; waiting for the server's ChangeCipherSpec.
pub(super) struct ExpectChangeCipherSpec {
    pub neg: Negotiated,
    pub master: [u8; 48],
    pub keys: KeyBlock,
    /// An abbreviated handshake: the server's Finished comes first and ours answers it.
    pub resumed: bool,
}

/// Reading epoch 1; waiting for the server's Finished.
pub(super) struct ExpectFinished {
    neg: Negotiated,
    master: [u8; 48],
    keys: KeyBlock,
    resumed: bool,
}

/// Where the handshake is.
pub(super) enum Expect {
    ServerHello(ExpectServerHello),
    Certificate(ExpectCertificate),
    ServerKeyExchange(ExpectServerKeyExchange),
    ServerHelloDone(ExpectServerHelloDone),
    ChangeCipherSpec(ExpectChangeCipherSpec),
    Finished(ExpectFinished),
}

/// One handshake in progress. `common` is boxed because the state moves by value at every
/// transition: moving a pointer instead of its ~400 bytes is measurable in the handshake rate.
pub(super) struct Handshake {
    pub common: Box<Common>,
    pub expect: Expect,
}

/// A finished handshake.
pub(super) struct Established {
    pub session: Session,
    pub resumption: Resumption,
    pub resumed: bool,
    /// Our last flight, for a server that repeats its own (abbreviated handshake).
    pub final_flight: Option<(Vec<Item>, Writer)>,
}

/// What a record did to the handshake.
pub(super) enum Outcome {
    Continue(Box<Handshake>),
    Done(Box<Established>),
    /// The handshake failed; `alert` is a fatal alert to send, already encoded.
    Failed {
        error: HandshakeError,
        alert: Option<Vec<u8>>,
    },
}

/// What a message did to the state. Only ever a return value, moved once, so the size of
/// the waiting state costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
enum Next {
    Wait(Expect),
    Done(Box<Established>),
}

impl Handshake {
    /// Handles one record from the server.
    pub fn handle_record(self: Box<Self>, ctx: &mut Ctx<'_>, record: &Record<'_>) -> Outcome {
        let Handshake { mut common, expect } = *self;
        match step(&mut common, expect, ctx, record) {
            Ok(Next::Wait(expect)) => Outcome::Continue(Box::new(Handshake { common, expect })),
            Ok(Next::Done(done)) => Outcome::Done(done),
            Err(error) => {
                let alert = error.alert_to_send().and_then(|a| {
                    let mut out = Vec::new();
                    // Not written once the epoch-0 numbers ran out; the handshake fails
                    // all the same.
                    write_plaintext(
                        ContentType::Alert,
                        DTLS_1_2,
                        0,
                        common.writer.seq[0],
                        &crate::alert::Alert::fatal(a).encode(),
                        &mut out,
                    )
                    .ok()
                    .map(|()| out)
                });
                Outcome::Failed { error, alert }
            }
        }
    }

    /// Sends the current flight again and backs its timer off.
    pub fn retransmit(&mut self, ctx: &mut Ctx<'_>) -> Result<(), HandshakeError> {
        let c = &mut self.common;
        c.writer
            .encode(&c.flight.items, ctx.cfg.max_datagram, ctx.rng, ctx.out)
            .map_err(unencodable)?;
        c.flight.backoff(ctx.now, &ctx.cfg.timers);
        Ok(())
    }
}

fn step(
    c: &mut Common,
    expect: Expect,
    ctx: &mut Ctx<'_>,
    record: &Record<'_>,
) -> Result<Next, HandshakeError> {
    match c.reader.read(record) {
        Inbound::Handshake { epoch, payload } => handle_handshake(c, expect, ctx, &payload, epoch),
        Inbound::ChangeCipherSpec => Ok(Next::Wait(match expect {
            Expect::ChangeCipherSpec(s) => Expect::Finished(s.change_cipher_spec(c)),
            other => other,
        })),
        Inbound::Alert(desc) => Err(HandshakeError::ServerAlert(desc)),
        // An undecryptable record from the server is dropped (RFC 6347 §4.1.2.7): a server
        // only sends its Finished after verifying ours (full handshake) or from the master
        // secret we share (resumption), so only damage or forgery makes one, and failing on
        // it would let a forger end the handshake.
        Inbound::Undecryptable | Inbound::Dropped => Ok(Next::Wait(expect)),
    }
}

fn handle_handshake(
    c: &mut Common,
    mut expect: Expect,
    ctx: &mut Ctx<'_>,
    payload: &[u8],
    epoch: u16,
) -> Result<Next, HandshakeError> {
    for frag in parse_fragments(payload) {
        let Ok((header, data)) = frag else {
            return Ok(Next::Wait(expect));
        };
        // Only the Finished travels in epoch 1, and it only there.
        if (epoch == 1) != (header.msg_type == HandshakeType::Finished as u8) {
            continue;
        }
        // Unauthenticated fragments that contradict what we hold are dropped.
        let _ = c.reassembler.insert(&header, data);
    }
    while let Some((msg_type, seq, body)) = c.reassembler.pop() {
        let t = HandshakeType::from_u8(msg_type).ok_or(HandshakeError::UnknownMessage)?;
        match expect.handle(c, ctx, t, seq, &body)? {
            Next::Wait(next) => expect = next,
            done @ Next::Done(_) => return Ok(done),
        }
    }
    Ok(Next::Wait(expect))
}

impl Expect {
    fn handle(
        self,
        c: &mut Common,
        ctx: &mut Ctx<'_>,
        t: HandshakeType,
        seq: u16,
        body: &[u8],
    ) -> Result<Next, HandshakeError> {
        // The reassembler caps bodies at 16 KiB, far below the 2^24 the header can carry.
        let full = full_message(t, seq, body).map_err(unencodable)?;
        match (self, t) {
            (Expect::ServerHello(s), HandshakeType::HelloVerifyRequest) => {
                s.hello_verify_request(c, ctx, seq, body).map(Next::Wait)
            }
            (Expect::ServerHello(s), HandshakeType::ServerHello) => {
                s.server_hello(c, ctx.cfg, body, &full).map(Next::Wait)
            }
            (Expect::Certificate(s), HandshakeType::Certificate) => s
                .certificate(c, ctx, body, &full)
                .map(|s| Next::Wait(Expect::ServerKeyExchange(s))),
            (Expect::ServerKeyExchange(s), HandshakeType::ServerKeyExchange) => s
                .server_key_exchange(c, body, &full)
                .map(|s| Next::Wait(Expect::ServerHelloDone(s))),
            (Expect::ServerKeyExchange(s), HandshakeType::ServerHelloDone)
                if s.neg.suite.key_exchange() == KeyExchange::Psk =>
            {
                c.transcript.extend_from_slice(&full);
                let done = ExpectServerHelloDone {
                    neg: s.neg,
                    server_point: None,
                    cert_requested: false,
                };
                done.client_flight(c, ctx).map(Next::Wait)
            }
            (Expect::ServerHelloDone(mut s), HandshakeType::CertificateRequest)
                if !s.cert_requested =>
            {
                s.cert_requested = true;
                c.transcript.extend_from_slice(&full);
                Ok(Next::Wait(Expect::ServerHelloDone(s)))
            }
            (Expect::ServerHelloDone(s), HandshakeType::ServerHelloDone) => {
                c.transcript.extend_from_slice(&full);
                s.client_flight(c, ctx).map(Next::Wait)
            }
            (Expect::Finished(s), HandshakeType::Finished) => {
                s.finished(c, ctx, body, &full).map(Next::Done)
            }
            _ => Err(HandshakeError::OutOfOrder),
        }
    }
}

impl ExpectCertificate {
    fn certificate(
        self,
        c: &mut Common,
        ctx: &Ctx<'_>,
        body: &[u8],
        full: &[u8],
    ) -> Result<ExpectServerKeyExchange, HandshakeError> {
        let parsed = if self.server_cert_type == CERT_TYPE_RAW_PUBLIC_KEY {
            CertificateBody::parse_raw_public_key(body)
        } else {
            CertificateBody::parse_x509(body)
        }
        .map_err(|e| malformed("server Certificate", e))?;
        let key = match parsed {
            CertificateBody::RawPublicKey(spki) => {
                match &ctx.cfg.trust {
                    ServerTrust::PinnedKey(p) if *p != spki => {
                        return Err(HandshakeError::ServerKeyNotPinned)
                    }
                    ServerTrust::Roots(_) => return Err(HandshakeError::CertificateRequired),
                    _ => {}
                }
                spki
            }
            CertificateBody::X509(chain) => {
                let leaf = chain.first().ok_or(HandshakeError::NoServerCertificate)?;
                // Only the key is kept: the certificate is judged here, by its chain or by
                // the pinned key it must carry.
                let spki = pki::certificate_spki(leaf)
                    .ok_or(HandshakeError::NoServerCertificate)?
                    .to_vec();
                match &ctx.cfg.trust {
                    ServerTrust::Roots(roots) => {
                        let clock = ctx.cfg.wall_clock.ok_or(HandshakeError::NoWallClock)?;
                        roots
                            .verify(&chain, clock.unix_secs(ctx.now), false)
                            .map_err(HandshakeError::ServerCertificateUntrusted)?;
                    }
                    ServerTrust::PinnedKey(p) if *p != spki => {
                        return Err(HandshakeError::ServerKeyNotPinned)
                    }
                    _ => {}
                }
                spki
            }
        };
        c.transcript.extend_from_slice(full);
        Ok(ExpectServerKeyExchange {
            neg: self.neg,
            server_key: Some(key),
        })
    }
}

impl ExpectServerKeyExchange {
    /// For PSK suites without ECDHE: the server's first message after its hello.
    pub(super) fn psk(neg: Negotiated) -> Self {
        Self {
            neg,
            server_key: None,
        }
    }

    fn server_key_exchange(
        self,
        c: &mut Common,
        body: &[u8],
        full: &[u8],
    ) -> Result<ExpectServerHelloDone, HandshakeError> {
        let mut server_point = None;
        if self.neg.suite.key_exchange() == KeyExchange::EcdheEcdsa {
            let ske = EcdheServerKeyExchange::parse(body)
                .map_err(|e| malformed("ServerKeyExchange", e))?;
            if ske.params.named_curve != GROUP_SECP256R1
                || ske.signature_scheme != SIG_ECDSA_SECP256R1_SHA256
            {
                return Err(HandshakeError::UnsupportedCurveOrSignature);
            }
            let signed = ske
                .params
                .signed_data(&c.client_random, &self.neg.server_random)
                .map_err(unencodable)?;
            match &self.server_key {
                Some(spki) => pki::verify_with_spki(spki, &signed, &ske.signature),
                None => Err(AlertDescription::UnexpectedMessage),
            }
            .map_err(HandshakeError::BadServerKeyExchange)?;
            server_point = Some(ske.params.public_key);
        }
        // A PSK identity hint is allowed and ignored (RFC 4279 §2).
        c.transcript.extend_from_slice(full);
        Ok(ExpectServerHelloDone {
            neg: self.neg,
            server_point,
            cert_requested: false,
        })
    }
}

impl ExpectServerHelloDone {
    /// Our second flight: \[Certificate\], ClientKeyExchange, \[CertificateVerify\],
    /// ChangeCipherSpec, Finished.
    fn client_flight(self, c: &mut Common, ctx: &mut Ctx<'_>) -> Result<Expect, HandshakeError> {
        let cfg = ctx.cfg;
        let mut items = Vec::new();
        let pre_master = match (&cfg.auth, self.neg.suite.key_exchange()) {
            (ClientAuth::Psk { identity, key }, KeyExchange::Psk) => {
                if key.len() > crypto::MAX_PSK_LEN {
                    // RFC 4279 §5.3; refused rather than cut, which would fail at the server
                    // as a wrong key.
                    return Err(HandshakeError::PskTooLong);
                }
                let cke = PskClientKeyExchange {
                    identity: identity.clone(),
                };
                c.push(
                    &mut items,
                    0,
                    HandshakeType::ClientKeyExchange,
                    cke.encode(),
                )?;
                crypto::psk_pre_master(key)
            }
            (ClientAuth::Key(key), KeyExchange::EcdheEcdsa) => {
                if self.cert_requested {
                    let cert = if self.neg.client_cert_type == CERT_TYPE_RAW_PUBLIC_KEY {
                        CertificateBody::RawPublicKey(key.spki.clone())
                    } else {
                        CertificateBody::X509(key.chain.clone())
                    };
                    c.push(&mut items, 0, HandshakeType::Certificate, cert.encode())?;
                }
                let point = self.server_point.ok_or(HandshakeError::OutOfOrder)?;
                let eph = Ephemeral::generate(ctx.rng);
                let pm = eph.agree(&point).map_err(HandshakeError::BadEcdhePoint)?;
                let cke = EcdheClientKeyExchange {
                    public_key: eph.public.clone(),
                };
                c.push(
                    &mut items,
                    0,
                    HandshakeType::ClientKeyExchange,
                    cke.encode(),
                )?;
                pm.to_vec()
            }
            _ => return Err(HandshakeError::CredentialMismatch),
        };
        let master = if self.neg.ems {
            crypto::extended_master_secret(&pre_master, &crypto::sha256(&[&c.transcript]))
        } else {
            crypto::master_secret(&pre_master, &c.client_random, &self.neg.server_random)
        };
        if let (ClientAuth::Key(key), true) = (&cfg.auth, self.cert_requested) {
            let cv = CertificateVerify {
                signature_scheme: SIG_ECDSA_SECP256R1_SHA256,
                signature: key.sign(&c.transcript),
            };
            c.push(&mut items, 0, HandshakeType::CertificateVerify, cv.encode())?;
        }
        let keys = c.derive_keys(&self.neg, &master);
        items.push(Item::ChangeCipherSpec);
        let verify = crypto::finished(&master, b"client finished", &c.transcript);
        let fin = Finished {
            verify_data: verify,
        };
        c.push(&mut items, 1, HandshakeType::Finished, fin.encode())?;
        c.send_flight(ctx, items, true)?;
        Ok(Expect::ChangeCipherSpec(ExpectChangeCipherSpec {
            neg: self.neg,
            master,
            keys,
            resumed: false,
        }))
    }
}

impl ExpectChangeCipherSpec {
    /// An abbreviated handshake: keys from the resumed session's master secret.
    pub(super) fn resumed(c: &mut Common, neg: Negotiated, master: [u8; 48]) -> Self {
        let keys = c.derive_keys(&neg, &master);
        Self {
            neg,
            master,
            keys,
            resumed: true,
        }
    }

    /// The server's ChangeCipherSpec: its records are protected from here on.
    fn change_cipher_spec(self, c: &mut Common) -> ExpectFinished {
        c.reader.activate(self.keys.server_write, c.own_cid);
        ExpectFinished {
            neg: self.neg,
            master: self.master,
            keys: self.keys,
            resumed: self.resumed,
        }
    }
}

impl ExpectFinished {
    fn finished(
        self,
        c: &mut Common,
        ctx: &mut Ctx<'_>,
        body: &[u8],
        full: &[u8],
    ) -> Result<Box<Established>, HandshakeError> {
        let fin = Finished::parse(body).map_err(|e| malformed("Finished", e))?;
        if !crypto::finished_matches(
            &self.master,
            b"server finished",
            &c.transcript,
            &fin.verify_data,
        ) {
            return Err(HandshakeError::FinishedMismatch);
        }
        c.transcript.extend_from_slice(full);
        let final_flight = if self.resumed {
            let verify = crypto::finished(&self.master, b"client finished", &c.transcript);
            let seq = c.next_seq();
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
            c.writer
                .encode(&items, ctx.cfg.max_datagram, ctx.rng, ctx.out)
                .map_err(unencodable)?;
            Some((items, c.writer.clone()))
        } else {
            None
        };
        let neg = self.neg;
        let session = Session {
            suite: neg.suite,
            read: self.keys.server_write,
            write: self.keys.client_write,
            epoch: 1,
            write_seq: c.writer.seq[1],
            replay: c.reader.replay(),
            send_cid: c.peer_cid,
            recv_cid: c.own_cid,
            principal: Arc::from(""),
        };
        Ok(Box::new(Established {
            session,
            resumption: Resumption {
                session_id: neg.session_id,
                master: self.master,
                suite: neg.suite,
                extended_master_secret: neg.ems,
            },
            resumed: self.resumed,
            final_flight,
        }))
    }
}

/// The failure for a message or flight of ours that cannot be encoded (a configured value
/// too large for its field); the field is logged, since the error cannot say it.
pub(super) fn unencodable(e: EncodeError) -> HandshakeError {
    tracing::warn!(error = %e, "DTLS handshake message cannot be encoded");
    HandshakeError::Unencodable
}

/// The failure for a server message that does not parse, with the field logged.
pub(super) fn malformed(what: &'static str, e: crate::codec::DecodeError) -> HandshakeError {
    tracing::debug!(error = %e, what, "malformed DTLS handshake message");
    HandshakeError::Malformed { what }
}
