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
mod handshake;

use crate::alert::{Alert, AlertDescription, AlertLevel};
use crate::config::ClientConfig;
use crate::error::HandshakeError;
use crate::flight::{Item, Writer};
use crate::record::{split_records, ContentType, Record};
use crate::session::{Session, SessionError};
use crate::suite::CipherSuite;
use crate::time::deadline;
use handshake::start as start_handshake;
use handshake::{Ctx, Handshake, Outcome};
use rand::rngs::StdRng;
use rand::SeedableRng;
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
    Failed(HandshakeError),
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
        let mut out = Vec::new();
        let mut ctx = Ctx {
            cfg: &cfg,
            rng: &mut self.rng,
            now,
            out: &mut out,
        };
        match start_handshake(&mut ctx, &mut self.resumption) {
            Ok(hs) => {
                self.transmits.extend(out);
                self.state = State::Handshaking(hs);
            }
            Err(e) => self.fail(e),
        }
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
            State::Handshaking(hs) => hs.common.own_cid.map_or(0, |c| c.as_bytes().len()),
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
            State::Handshaking(_) => {
                let State::Handshaking(hs) = std::mem::replace(&mut self.state, State::Closed)
                else {
                    return;
                };
                let cfg = self.config.clone();
                let mut out = Vec::new();
                let mut ctx = Ctx {
                    cfg: &cfg,
                    rng: &mut self.rng,
                    now,
                    out: &mut out,
                };
                let outcome = hs.handle_record(&mut ctx, record);
                self.transmits.extend(out);
                match outcome {
                    Outcome::Continue(hs) => self.state = State::Handshaking(hs),
                    Outcome::Done(est) => {
                        let suite = est.session.suite;
                        self.resumption = Some(est.resumption);
                        self.state = State::Established {
                            session: est.session,
                            final_flight: est.final_flight,
                        };
                        self.events.push_back(ClientEvent::Connected {
                            suite,
                            resumed: est.resumed,
                        });
                    }
                    Outcome::Failed { error, alert } => {
                        self.transmits.extend(alert);
                        // A server that refuses a resumption must get a full handshake next.
                        if error.alert_to_send().is_some() {
                            self.resumption = None;
                        }
                        self.fail(error);
                    }
                }
            }
        }
    }

    fn fail(&mut self, f: HandshakeError) {
        self.state = State::Closed;
        self.events.push_back(ClientEvent::Failed(f));
    }

    /// Retransmits the current flight or gives up, as the time says.
    pub fn handle_timeout(&mut self, now: Instant) {
        let State::Handshaking(hs) = &mut self.state else {
            return;
        };
        if now >= deadline(hs.common.started, self.config.timers.handshake_timeout) {
            self.fail(HandshakeError::Timeout);
            return;
        }
        if hs.common.flight.retransmit_at.is_some_and(|t| t <= now) {
            let mut out = Vec::new();
            let mut ctx = Ctx {
                cfg: &self.config,
                rng: &mut self.rng,
                now,
                out: &mut out,
            };
            if let Err(e) = hs.retransmit(&mut ctx) {
                self.fail(e);
                return;
            }
            self.transmits.extend(out);
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.state {
            State::Handshaking(hs) => {
                let give_up = deadline(hs.common.started, self.config.timers.handshake_timeout);
                Some(
                    hs.common
                        .flight
                        .retransmit_at
                        .map_or(give_up, |r| r.min(give_up)),
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
            self.transmits.extend(session.close_notify(&mut self.rng));
        }
        self.state = State::Closed;
    }
}
