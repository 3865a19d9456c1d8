//! The server endpoint: every DTLS peer of one UDP socket, sans-IO (RFC 6347; RFC 9146 for
//! Connection IDs).
//!
//! - **Demultiplexing.** A record with a Connection ID finds its session by that ID, whatever
//!   address it came from; other records by the source address. A verified record with a CID
//!   from a new address moves the session there (RFC 9146 §6: only if it is the newest record
//!   seen, so a replayed record cannot redirect traffic).
//! - **No state before the cookie.** A ClientHello without a valid cookie is answered with a
//!   HelloVerifyRequest and forgotten (see [`crate::cookie`]). Only then does a handshake take
//!   a slot, within `max_handshakes` and a per-source-address rate, so spoofed floods cost
//!   nothing and one noisy source cannot fill the table.
//! - **No task or timer per peer.** Handshake retransmissions sit in one ordered set; an
//!   established session has no timer at all. A stalled handshake only holds its own slot
//!   until `handshake_timeout`.
//! - **Compact sessions.** An established session is a [`Session`] plus its address and what
//!   resumption needs. Session ids carry the session's handle, so resumption (RFC 5246 §7.3)
//!   finds the session without another table. When `max_sessions` is reached the least
//!   recently active session goes (CLOCK second-chance eviction).
//! - **Restarts.** [`Server::save_sessions`] and [`Server::restore_session`] carry every session
//!   across a restart, so devices continue without a handshake.
mod handshake;

pub use handshake::{Resumable, SESSION_ID_LEN};

use crate::alert::{Alert, AlertDescription, AlertLevel};
use crate::codec::Reader;
use crate::config::{ServerConfig, ServerCredentials};
use crate::cookie::CookieJar;
use crate::error::{Failure, HandshakeError};
use crate::handshake::messages::{ClientHello, HelloVerifyRequest};
use crate::handshake::{full_message, parse_fragments, HandshakeType};
use crate::record::{split_records, write_plaintext, ContentType, Record, DTLS_1_0};
use crate::session::{Cid, Session, SessionError};
use crate::suite::CipherSuite;
use crate::time::deadline;
use handshake::{Ctx, ServerHandshake, Step};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

type FastMap<K, V> = HashMap<K, V, ahash::RandomState>;

/// Source addresses whose handshake rate is tracked per second (a few MB at most).
const RATE_SOURCES: usize = 1 << 16;

/// Highest session handle accepted from saved bytes. New handles count up by one from below
/// 2^32 or from the highest restored one, so with this bound the counter needs more than
/// 2^63 handshakes to reach `u64::MAX`: it never runs out, and a damaged store cannot make it.
pub const MAX_CONN_ID: u64 = 1 << 62;

/// An established session of this server. Stable for the session's life, across address
/// changes, resumption and restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "dtls#{}", self.0)
    }
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer sent close_notify.
    PeerClosed,
    /// The peer sent a fatal alert.
    PeerAlert(AlertDescription),
    /// A new handshake from the same address replaced it (the device restarted).
    Replaced,
    /// Dropped to make room (`max_sessions`).
    Evicted,
    /// The application closed it.
    Local,
    /// Its sequence numbers ran out.
    Exhausted,
}

/// What happened, for the application.
#[derive(Debug)]
pub enum ServerEvent {
    /// A handshake finished (or a session was resumed, keeping its `conn`).
    Established {
        conn: ConnId,
        peer: SocketAddr,
        principal: Arc<str>,
        suite: CipherSuite,
        resumed: bool,
    },
    /// Application data arrived.
    Data { conn: ConnId, data: Vec<u8> },
    /// A session moved to another address (Connection ID, RFC 9146).
    Migrated {
        conn: ConnId,
        from: SocketAddr,
        to: SocketAddr,
    },
    /// A session ended.
    Closed {
        conn: ConnId,
        principal: Arc<str>,
        reason: CloseReason,
    },
    /// A handshake failed; the alert in `failure` was sent (unless the peer sent one).
    HandshakeFailed { peer: SocketAddr, failure: Failure },
}

/// Counters, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerStats {
    pub cookies_sent: u64,
    pub handshakes_started: u64,
    pub handshakes_completed: u64,
    pub handshakes_failed: u64,
    pub resumptions: u64,
    /// ClientHellos refused by `max_handshakes` or the per-source rate.
    pub handshakes_refused: u64,
    /// Handshakes given up to make room for a new one in a full table.
    pub handshakes_evicted: u64,
    /// Records dropped: undecryptable, replayed, for no session, malformed.
    pub records_dropped: u64,
    pub migrations: u64,
    pub evictions: u64,
}

/// Table sizes, to check the bounds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerUsage {
    pub handshakes: usize,
    pub sessions: usize,
    pub by_addr: usize,
    pub by_cid: usize,
    pub timers: usize,
    pub rate_entries: usize,
}

/// One established session and what the endpoint knows about it.
struct Entry {
    session: Session,
    peer: SocketAddr,
    /// Random half of the session id (the other half is the `ConnId`).
    check: [u8; 8],
    master: [u8; 48],
    ems: bool,
    /// Seen since the eviction clock last passed (CLOCK second chance).
    referenced: bool,
    /// Our final Finished, until the client shows it has it by sending application data.
    final_flight: Option<Box<FinalFlight>>,
}

struct FinalFlight {
    verify: [u8; 12],
    /// The next epoch-0 record sequence number (for the ChangeCipherSpec).
    seq0: u64,
    /// Our Finished's handshake message_seq.
    message_seq: u16,
}

/// A DTLS server endpoint for one socket.
pub struct Server {
    config: ServerConfig,
    rng: StdRng,
    cookies: CookieJar,
    handshakes: FastMap<SocketAddr, ServerHandshake>,
    /// (when, peer) for every handshake: retransmission or give-up time.
    timers: BTreeSet<(Instant, SocketAddr)>,
    /// (start, peer) of handshakes, oldest first, to evict the longest-stalled one when the
    /// table is full. Entries of handshakes that ended are dropped lazily (when met at the
    /// front, or by a rebuild once they outnumber the live ones), so no removal path has to
    /// remember it.
    by_start: BTreeSet<(Instant, SocketAddr)>,
    scheduled: FastMap<SocketAddr, Instant>,
    sessions: FastMap<u64, Entry>,
    by_addr: FastMap<SocketAddr, u64>,
    by_cid: FastMap<Cid, u64>,
    clock: VecDeque<u64>,
    rate: FastMap<IpAddr, u32>,
    rate_window: Option<Instant>,
    next_id: u64,
    transmits: VecDeque<(SocketAddr, Vec<u8>)>,
    events: VecDeque<ServerEvent>,
    stats: ServerStats,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("usage", &self.usage())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// A server with `config`; `seed` feeds every random choice (randoms, cookies, CIDs,
    /// ephemeral keys), so the shell seeds it from the operating system and tests fix it.
    pub fn new(config: ServerConfig, seed: [u8; 32]) -> Self {
        let mut rng = StdRng::from_seed(seed);
        let hasher =
            ahash::RandomState::with_seeds(rng.random(), rng.random(), rng.random(), rng.random());
        let cookies = CookieJar::new(rng.random(), config.cookie_rotation);
        Self {
            config,
            cookies,
            handshakes: HashMap::with_hasher(hasher.clone()),
            timers: BTreeSet::new(),
            by_start: BTreeSet::new(),
            scheduled: HashMap::with_hasher(hasher.clone()),
            sessions: HashMap::with_hasher(hasher.clone()),
            by_addr: HashMap::with_hasher(hasher.clone()),
            by_cid: HashMap::with_hasher(hasher.clone()),
            clock: VecDeque::new(),
            rate: HashMap::with_hasher(hasher),
            rate_window: None,
            next_id: rng.random_range(1..1 << 32),
            rng,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: ServerStats::default(),
        }
    }

    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// The length of the Connection IDs this server issues, which is also the length it
    /// splits `tls12_cid` records by: `cid_len` capped at
    /// [`MAX_CID_LEN`](crate::config::MAX_CID_LEN). One value for both, or a configured
    /// length above the cap would issue 16-byte CIDs and then misread every record carrying
    /// one.
    fn cid_len(&self) -> usize {
        self.config.cid_len.min(crate::config::MAX_CID_LEN)
    }

    /// One datagram from `from`.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        data: &[u8],
        creds: &dyn ServerCredentials,
    ) {
        for record in split_records(data, self.cid_len()) {
            let Ok(record) = record else {
                self.stats.records_dropped += 1;
                return;
            };
            self.handle_record(now, from, &record, creds);
        }
    }

    fn handle_record(
        &mut self,
        now: Instant,
        from: SocketAddr,
        record: &Record<'_>,
        creds: &dyn ServerCredentials,
    ) {
        let ct = record.content_type;
        if ct == ContentType::Tls12Cid as u8 {
            let id = Cid::new(record.cid).and_then(|c| self.by_cid.get(&c).copied());
            match id {
                Some(id) => self.session_record(now, id, from, record),
                None if self.handshakes.contains_key(&from) => {
                    self.handshake_record(now, from, record, creds)
                }
                None => self.stats.records_dropped += 1,
            }
            return;
        }
        if record.epoch == 0
            && ct == ContentType::Handshake as u8
            && is_client_hello(record.fragment)
        {
            self.client_hello(now, from, record, creds);
            return;
        }
        if ct != ContentType::ApplicationData as u8 && self.handshakes.contains_key(&from) {
            self.handshake_record(now, from, record, creds);
            return;
        }
        match self.by_addr.get(&from).copied() {
            Some(id) => self.session_record(now, id, from, record),
            None => self.stats.records_dropped += 1,
        }
    }

    fn client_hello(
        &mut self,
        now: Instant,
        from: SocketAddr,
        record: &Record<'_>,
        creds: &dyn ServerCredentials,
    ) {
        // Stateless processing needs the whole hello in one record (RFC 6347 §4.2.1 lets
        // a server insist; every client sends it whole).
        let Some(Ok((header, body))) = parse_fragments(record.fragment).next() else {
            self.stats.records_dropped += 1;
            return;
        };
        if header.fragment_offset != 0 || header.fragment_length != header.length {
            self.stats.records_dropped += 1;
            return;
        }
        let Ok(hello) = ClientHello::parse(body) else {
            self.stats.records_dropped += 1;
            return;
        };
        let Some(cookie_input) = hello_without_cookie(body) else {
            self.stats.records_dropped += 1;
            return;
        };
        if let Some(hs) = self.handshakes.get(&from) {
            if hs.client_random() == hello.random {
                // The same hello again: our flight was lost.
                self.handshake_record(now, from, record, creds);
                return;
            }
        }
        let rng = &mut self.rng;
        self.cookies.maybe_rotate(now, || rng.random());
        if !self.cookies.verify(from, &cookie_input, &hello.cookie) {
            let cookie = self.cookies.make(from, &cookie_input);
            // A 16-byte cookie in a 19-byte body: nothing here can exceed its field, and the
            // record number is the hello's, which parsed as 48 bits.
            let hvr = HelloVerifyRequest {
                server_version: DTLS_1_0,
                cookie: cookie.to_vec(),
            }
            .encode()
            .and_then(|body| {
                full_message(HandshakeType::HelloVerifyRequest, header.message_seq, &body)
            })
            .and_then(|frag| {
                let mut out = Vec::with_capacity(frag.len() + 13);
                write_plaintext(
                    ContentType::Handshake,
                    DTLS_1_0,
                    0,
                    record.seq,
                    &frag,
                    &mut out,
                )
                .map(|()| out)
            });
            match hvr {
                Ok(out) => {
                    self.transmits.push_back((from, out));
                    self.stats.cookies_sent += 1;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "HelloVerifyRequest cannot be encoded");
                    self.stats.records_dropped += 1;
                }
            }
            return;
        }
        if !self.admit(now, from) {
            self.stats.handshakes_refused += 1;
            tracing::debug!(peer = %from, "handshake refused: table full or source over its rate");
            return;
        }
        self.remove_handshake(from);
        let resume = self.resumable(&hello.session_id);
        let (session_id, new_id) = match &resume {
            Some(_) => {
                let mut id = [0u8; SESSION_ID_LEN];
                id.copy_from_slice(
                    hello
                        .session_id
                        .get(..SESSION_ID_LEN)
                        .unwrap_or(&[0; SESSION_ID_LEN]),
                );
                (id, None)
            }
            None => {
                let id = self.next_id;
                let Some(next) = id.checked_add(1) else {
                    // Unreachable (see MAX_CONN_ID); refusing beats wrapping to a handle that
                    // may belong to a live session.
                    self.stats.handshakes_refused += 1;
                    return;
                };
                self.next_id = next;
                let mut sid = [0u8; SESSION_ID_LEN];
                sid[..8].copy_from_slice(&id.to_be_bytes());
                self.rng.fill_bytes(&mut sid[8..]);
                (sid, Some(id))
            }
        };
        let _ = new_id;
        let own_cid = (self.config.cid_len > 0)
            .then(|| self.fresh_cid())
            .flatten();
        // The hello came whole in one record, so it is far below the 2^24 a header can carry.
        let Ok(msg) = full_message(HandshakeType::ClientHello, header.message_seq, body) else {
            self.stats.records_dropped += 1;
            return;
        };
        let mut ctx = Ctx {
            config: &self.config,
            creds,
            rng: &mut self.rng,
            now,
        };
        self.stats.handshakes_started += 1;
        match ServerHandshake::start(
            &mut ctx,
            &hello,
            &msg,
            header.message_seq,
            record.seq,
            resume,
            session_id,
            own_cid,
        ) {
            Ok((hs, out)) => {
                for d in out {
                    self.transmits.push_back((from, d));
                }
                self.by_start.insert((hs.started(), from));
                self.handshakes.insert(from, hs);
                self.schedule(from);
            }
            Err(failure) => {
                if let Some(alert) = failure.error.alert_to_send() {
                    self.send_plain_alert(from, alert, record.seq);
                }
                self.fail(from, failure);
            }
        }
    }

    /// Whether a new handshake from `from` may take a slot now.
    ///
    /// A full table does not refuse: it gives up the handshake that started longest ago.
    /// Every hello here returned a valid cookie, so a flood from addresses it can receive at
    /// can still start handshakes and then go silent; refusing new ones would lock every
    /// real device out until the stalled ones time out (`handshake_timeout`, minutes for
    /// NB-IoT). Evicting the oldest keeps the table turning over, so a device's handshake
    /// only has to outlast `max_handshakes` newer ones (RFC 6347 §4.2.1 leaves this
    /// resource management to the server).
    fn admit(&mut self, now: Instant, from: SocketAddr) -> bool {
        if !self.rate_allows(now, from) {
            return false;
        }
        if self.handshakes.len() >= self.config.max_handshakes
            && !self.handshakes.contains_key(&from)
            && !self.evict_oldest_handshake(from)
        {
            return false;
        }
        true
    }

    /// Gives up the handshake that started longest ago (not `keep`'s), to make room.
    fn evict_oldest_handshake(&mut self, keep: SocketAddr) -> bool {
        if self.by_start.len() > 2 * self.handshakes.len() + 64 {
            self.by_start = self
                .handshakes
                .iter()
                .map(|(peer, hs)| (hs.started(), *peer))
                .collect();
        }
        while let Some((started, peer)) = self.by_start.pop_first() {
            let live = peer != keep
                && self
                    .handshakes
                    .get(&peer)
                    .is_some_and(|hs| hs.started() == started);
            if live {
                self.remove_handshake(peer);
                self.stats.handshakes_evicted += 1;
                self.stats.handshakes_failed += 1;
                // Not `fail`'s info line: under a flood this happens thousands of times a
                // second, and the counter says it.
                tracing::debug!(%peer, "DTLS handshake evicted: the handshake table is full");
                self.events.push_back(ServerEvent::HandshakeFailed {
                    peer,
                    failure: Failure::anonymous(HandshakeError::Evicted),
                });
                return true;
            }
        }
        false
    }

    /// Whether `from`'s address is within `handshakes_per_source_per_sec`.
    fn rate_allows(&mut self, now: Instant, from: SocketAddr) -> bool {
        match self.rate_window {
            Some(start) if now.saturating_duration_since(start) < Duration::from_secs(1) => {}
            _ => {
                self.rate.clear();
                self.rate_window = Some(now);
            }
        }
        let ip = from.ip();
        if !self.rate.contains_key(&ip) && self.rate.len() >= RATE_SOURCES {
            // More distinct sources this second than tracked: every one of them answered a
            // cookie, so they are real; `max_handshakes` still bounds the work.
            return true;
        }
        let n = self.rate.entry(ip).or_insert(0);
        if *n >= self.config.handshakes_per_source_per_sec {
            return false;
        }
        *n += 1;
        true
    }

    fn fresh_cid(&mut self) -> Option<Cid> {
        let len = self.cid_len();
        for _ in 0..8 {
            let mut b = [0u8; crate::config::MAX_CID_LEN];
            self.rng.fill_bytes(&mut b);
            let cid = Cid::new(b.get(..len)?)?;
            if !self.by_cid.contains_key(&cid) {
                return Some(cid);
            }
        }
        None
    }

    /// The resumption state for a session id the client offers, if it is one of ours.
    fn resumable(&self, session_id: &[u8]) -> Option<Resumable> {
        if session_id.len() != SESSION_ID_LEN {
            return None;
        }
        let id = u64::from_be_bytes(session_id.get(..8)?.try_into().ok()?);
        let entry = self.sessions.get(&id)?;
        let check = session_id.get(8..)?;
        if !bool::from(subtle::ConstantTimeEq::ct_eq(&entry.check[..], check)) {
            return None;
        }
        Some(Resumable {
            master: entry.master,
            suite: entry.session.suite,
            extended_master_secret: entry.ems,
            principal: entry.session.principal.clone(),
        })
    }

    fn handshake_record(
        &mut self,
        now: Instant,
        from: SocketAddr,
        record: &Record<'_>,
        creds: &dyn ServerCredentials,
    ) {
        let Some(hs) = self.handshakes.remove(&from) else {
            return;
        };
        let mut ctx = Ctx {
            config: &self.config,
            creds,
            rng: &mut self.rng,
            now,
        };
        let mut out = Vec::new();
        let step = match hs.handle_record(&mut ctx, record, &mut out) {
            Step::Retransmit(mut hs) => match hs.retransmit(&mut ctx, &mut out) {
                Ok(()) => Step::Retransmit(hs),
                Err(failure) => Step::Failed {
                    failure,
                    seq0: hs.next_plain_seq(),
                },
            },
            other => other,
        };
        for d in out {
            self.transmits.push_back((from, d));
        }
        match step {
            Step::Continue(hs) | Step::Retransmit(hs) => {
                self.handshakes.insert(from, hs);
                self.schedule(from);
            }
            Step::Done { established, seq0 } => {
                self.unschedule(from);
                self.establish(from, *established, seq0);
            }
            Step::Failed { failure, seq0 } => {
                self.unschedule(from);
                if let Some(alert) = failure.error.alert_to_send() {
                    // Before the client's CCS it reads epoch 0; an alert it can read beats
                    // one sealed under keys it may not have.
                    self.send_plain_alert(from, alert, seq0);
                }
                self.fail(from, failure);
            }
        }
    }

    /// Queues a fatal alert in an epoch-0 record numbered `seq`. A number past 48 bits
    /// (the peer started its sequence at the top) cannot be written, so no alert goes out;
    /// the handshake ends all the same.
    fn send_plain_alert(&mut self, to: SocketAddr, alert: AlertDescription, seq: u64) {
        let mut out = Vec::new();
        match write_plaintext(
            ContentType::Alert,
            crate::record::DTLS_1_2,
            0,
            seq,
            &Alert::fatal(alert).encode(),
            &mut out,
        ) {
            Ok(()) => self.transmits.push_back((to, out)),
            Err(e) => tracing::debug!(peer = %to, error = %e, "alert not sent"),
        }
    }

    fn fail(&mut self, peer: SocketAddr, failure: Failure) {
        self.stats.handshakes_failed += 1;
        tracing::info!(%peer, identity = failure.identity.as_deref().unwrap_or(""), alert = %failure.error.alert(), reason = %failure.error, "DTLS handshake failed");
        self.events
            .push_back(ServerEvent::HandshakeFailed { peer, failure });
    }

    fn establish(&mut self, peer: SocketAddr, est: handshake::Established, seq0: u64) {
        let id = u64::from_be_bytes(est.session_id[..8].try_into().unwrap_or([0; 8]));
        let mut check = [0u8; 8];
        check.copy_from_slice(&est.session_id[8..]);
        // A session already at this address belongs to the device's previous life.
        if let Some(old) = self.by_addr.get(&peer).copied() {
            if old != id {
                self.remove_session(old, CloseReason::Replaced);
            }
        }
        let fresh = match self.sessions.remove(&id) {
            Some(old) => {
                // Resumption keeps the handle; drop the old address and CID mappings.
                if self.by_addr.get(&old.peer) == Some(&id) {
                    self.by_addr.remove(&old.peer);
                }
                if let Some(c) = old.session.recv_cid {
                    self.by_cid.remove(&c);
                }
                false
            }
            None => {
                self.make_room();
                self.clock.push_back(id);
                true
            }
        };
        let _ = fresh;
        if let Some(c) = est.session.recv_cid {
            self.by_cid.insert(c, id);
        }
        self.by_addr.insert(peer, id);
        let principal = est.session.principal.clone();
        let suite = est.session.suite;
        self.sessions.insert(
            id,
            Entry {
                session: est.session,
                peer,
                check,
                master: est.resumable.master,
                ems: est.resumable.extended_master_secret,
                // A new session sits at the back of the CLOCK queue: the hand reaches it
                // last, so it needs no reference bit to survive its first round.
                referenced: false,
                final_flight: (!est.resumed).then(|| {
                    Box::new(FinalFlight {
                        verify: est.final_verify,
                        seq0,
                        message_seq: est.final_seq,
                    })
                }),
            },
        );
        self.stats.handshakes_completed += 1;
        if est.resumed {
            self.stats.resumptions += 1;
        }
        self.events.push_back(ServerEvent::Established {
            conn: ConnId(id),
            peer,
            principal,
            suite,
            resumed: est.resumed,
        });
    }

    /// Evicts the least recently active session if the table is full.
    fn make_room(&mut self) {
        let mut budget = self.clock.len().saturating_mul(2).saturating_add(1);
        while self.sessions.len() >= self.config.max_sessions.max(1) && budget > 0 {
            budget -= 1;
            let Some(id) = self.clock.pop_front() else {
                return;
            };
            match self.sessions.get_mut(&id) {
                Some(e) if e.referenced => {
                    e.referenced = false;
                    self.clock.push_back(id);
                }
                Some(_) => {
                    self.stats.evictions += 1;
                    self.remove_session(id, CloseReason::Evicted);
                }
                None => {}
            }
        }
    }

    fn session_record(&mut self, _now: Instant, id: u64, from: SocketAddr, record: &Record<'_>) {
        let Some(entry) = self.sessions.get_mut(&id) else {
            self.stats.records_dropped += 1;
            return;
        };
        if record.epoch == 0 {
            // The client repeating its last flight: our Finished was lost.
            if record.content_type == ContentType::Handshake as u8 && entry.final_flight.is_some() {
                self.resend_final_flight(id);
                return;
            }
            self.stats.records_dropped += 1;
            return;
        }
        let newest = record.seq > entry.session.replay.top || entry.session.replay.bitmap == 0;
        let Ok((ct, data)) = entry.session.open(record) else {
            self.stats.records_dropped += 1;
            return;
        };
        entry.referenced = true;
        if from != entry.peer && newest {
            let old = std::mem::replace(&mut entry.peer, from);
            if self.by_addr.get(&old) == Some(&id) {
                self.by_addr.remove(&old);
            }
            if let Some(other) = self.by_addr.insert(from, id) {
                if other != id {
                    self.remove_session(other, CloseReason::Replaced);
                }
            }
            self.stats.migrations += 1;
            self.events.push_back(ServerEvent::Migrated {
                conn: ConnId(id),
                from: old,
                to: from,
            });
        }
        let Some(entry) = self.sessions.get_mut(&id) else {
            return;
        };
        match ContentType::from_u8(ct) {
            Some(ContentType::ApplicationData) => {
                entry.final_flight = None;
                self.events.push_back(ServerEvent::Data {
                    conn: ConnId(id),
                    data,
                });
            }
            Some(ContentType::Alert) => {
                let reason = match Alert::decode(&data) {
                    Ok(a) if a.description == AlertDescription::CloseNotify => {
                        CloseReason::PeerClosed
                    }
                    Ok(a) if a.level == AlertLevel::Fatal => CloseReason::PeerAlert(a.description),
                    Ok(_) => return,
                    Err(_) => CloseReason::PeerAlert(AlertDescription::DecodeError),
                };
                self.remove_session(id, reason);
            }
            Some(ContentType::Handshake) => {
                // An encrypted handshake message after the handshake: the client's Finished
                // again (ours was lost), or a renegotiation we do not do.
                self.resend_final_flight(id);
            }
            _ => {}
        }
    }

    /// Seals our ChangeCipherSpec and Finished again for a client that did not get them
    /// (RFC 6347 §4.2.4: the last flight is answered by retransmission, not by a timer).
    fn resend_final_flight(&mut self, id: u64) {
        let Some(entry) = self.sessions.get_mut(&id) else {
            return;
        };
        let Some(ff) = entry.final_flight.as_mut() else {
            return;
        };
        let mut out = Vec::new();
        // Each resend takes an epoch-0 number; once they run out (2^48, or a client that
        // started near the top) the CCS cannot be written and nothing is resent.
        if write_plaintext(
            ContentType::ChangeCipherSpec,
            crate::record::DTLS_1_2,
            0,
            ff.seq0,
            &[1],
            &mut out,
        )
        .is_err()
        {
            return;
        }
        ff.seq0 = ff.seq0.saturating_add(1);
        // A 12-byte body always fits.
        let Ok(fin) = full_message(HandshakeType::Finished, ff.message_seq, &ff.verify) else {
            return;
        };
        if entry
            .session
            .seal(ContentType::Handshake, &fin, &mut self.rng, &mut out)
            .is_ok()
        {
            self.transmits.push_back((entry.peer, out));
        }
    }

    fn remove_session(&mut self, id: u64, reason: CloseReason) {
        let Some(entry) = self.sessions.remove(&id) else {
            return;
        };
        if self.by_addr.get(&entry.peer) == Some(&id) {
            self.by_addr.remove(&entry.peer);
        }
        if let Some(c) = entry.session.recv_cid {
            if self.by_cid.get(&c) == Some(&id) {
                self.by_cid.remove(&c);
            }
        }
        // The CLOCK queue entry goes when the hand reaches it; bound the queue meanwhile.
        if self.clock.len() > 2 * self.sessions.len() + 1024 {
            let sessions = &self.sessions;
            self.clock.retain(|id| sessions.contains_key(id));
        }
        tracing::debug!(peer = %entry.peer, principal = %entry.session.principal, ?reason, "DTLS session closed");
        self.events.push_back(ServerEvent::Closed {
            conn: ConnId(id),
            principal: entry.session.principal,
            reason,
        });
    }

    fn remove_handshake(&mut self, peer: SocketAddr) {
        if self.handshakes.remove(&peer).is_some() {
            self.unschedule(peer);
        }
    }

    fn schedule(&mut self, peer: SocketAddr) {
        self.unschedule(peer);
        let Some(hs) = self.handshakes.get(&peer) else {
            return;
        };
        let give_up = deadline(hs.started(), self.config.timers.handshake_timeout);
        let at = hs.retransmit_at().map_or(give_up, |r| r.min(give_up));
        self.timers.insert((at, peer));
        self.scheduled.insert(peer, at);
    }

    fn unschedule(&mut self, peer: SocketAddr) {
        if let Some(at) = self.scheduled.remove(&peer) {
            self.timers.remove(&(at, peer));
        }
    }

    /// Retransmits flights and abandons stalled handshakes whose time has come.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(at, peer)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            self.scheduled.remove(&peer);
            let Some(mut hs) = self.handshakes.remove(&peer) else {
                continue;
            };
            if now >= deadline(hs.started(), self.config.timers.handshake_timeout) {
                self.fail(peer, Failure::anonymous(HandshakeError::Timeout));
                continue;
            }
            let mut out = Vec::new();
            let mut ctx = Ctx {
                config: &self.config,
                creds: &NoCredentials,
                rng: &mut self.rng,
                now,
            };
            if let Err(failure) = hs.retransmit(&mut ctx, &mut out) {
                self.fail(peer, failure);
                continue;
            }
            for d in out {
                self.transmits.push_back((peer, d));
            }
            self.handshakes.insert(peer, hs);
            self.schedule(peer);
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.first().map(|(at, _)| *at)
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }

    /// Sends application data on a session.
    pub fn send(&mut self, conn: ConnId, data: &[u8]) -> Result<(), SessionError> {
        let entry = self
            .sessions
            .get_mut(&conn.0)
            .ok_or(SessionError::Unknown)?;
        let mut out = Vec::with_capacity(data.len() + 64);
        match entry
            .session
            .seal(ContentType::ApplicationData, data, &mut self.rng, &mut out)
        {
            Ok(()) => {
                self.transmits.push_back((entry.peer, out));
                Ok(())
            }
            Err(SessionError::SeqExhausted) => {
                self.remove_session(conn.0, CloseReason::Exhausted);
                Err(SessionError::SeqExhausted)
            }
            Err(e) => Err(e),
        }
    }

    /// Ends a session: close_notify to the peer, and a `Closed` event.
    pub fn close(&mut self, conn: ConnId) {
        if let Some(entry) = self.sessions.get_mut(&conn.0) {
            let mut out = Vec::new();
            if entry
                .session
                .seal(
                    ContentType::Alert,
                    &Alert::close_notify().encode(),
                    &mut self.rng,
                    &mut out,
                )
                .is_ok()
            {
                self.transmits.push_back((entry.peer, out));
            }
            self.remove_session(conn.0, CloseReason::Local);
        }
    }

    /// Ends every session of `principal` (a revoked credential); returns how many.
    pub fn close_principal(&mut self, principal: &str) -> usize {
        let ids: Vec<u64> = self
            .sessions
            .iter()
            .filter(|(_, e)| &*e.session.principal == principal)
            .map(|(id, _)| *id)
            .collect();
        for id in &ids {
            self.close(ConnId(*id));
        }
        ids.len()
    }

    /// The address a session is at now.
    pub fn peer(&self, conn: ConnId) -> Option<SocketAddr> {
        self.sessions.get(&conn.0).map(|e| e.peer)
    }

    /// Who a session's peer is.
    pub fn principal(&self, conn: ConnId) -> Option<&Arc<str>> {
        self.sessions.get(&conn.0).map(|e| &e.session.principal)
    }

    pub fn stats(&self) -> ServerStats {
        self.stats
    }

    pub fn usage(&self) -> ServerUsage {
        ServerUsage {
            handshakes: self.handshakes.len(),
            sessions: self.sessions.len(),
            by_addr: self.by_addr.len(),
            by_cid: self.by_cid.len(),
            timers: self.timers.len(),
            rate_entries: self.rate.len(),
        }
    }

    /// Every established session's handle.
    pub fn conns(&self) -> Vec<ConnId> {
        self.sessions.keys().map(|id| ConnId(*id)).collect()
    }

    /// Every established session as bytes (containing keys: store them as secrets).
    pub fn save_sessions(&self) -> Vec<(ConnId, Vec<u8>)> {
        self.conns()
            .into_iter()
            .filter_map(|c| self.save_session(c).map(|b| (c, b)))
            .collect()
    }

    /// One session as bytes, for [`restore_session`](Self::restore_session) in a later run.
    pub fn save_session(&self, conn: ConnId) -> Option<Vec<u8>> {
        let e = self.sessions.get(&conn.0)?;
        let mut buf = Vec::with_capacity(320);
        let mut enc = minicbor::Encoder::new(&mut buf);
        let written = (|| -> Result<(), crate::session::SaveError> {
            enc.array(6)?
                .u64(conn.0)?
                .str(&e.peer.to_string())?
                .bytes(&e.check)?
                .bytes(&e.master)?
                .bool(e.ems)?;
            e.session.save(&mut enc)
        })();
        written.ok().map(|()| buf)
    }

    /// Brings back a session saved by [`save_sessions`](Self::save_sessions).
    ///
    /// The bytes may come from a damaged store, so besides [`Session::restore`]'s checks the
    /// handle must lie in 1..=[`MAX_CONN_ID`], nothing may follow the session, and neither
    /// the handle nor the Connection ID may belong to a session already here. A Connection
    /// ID must also have this server's `cid_len`: records are split by that length, so a
    /// session with another could never be found by its CID (the device does a new
    /// handshake instead).
    pub fn restore_session(
        &mut self,
        bytes: &[u8],
    ) -> Result<ConnId, crate::session::RestoreError> {
        use crate::session::RestoreError;
        let mut d = minicbor::Decoder::new(bytes);
        if d.array()? != Some(6) {
            return Err(RestoreError::Format);
        }
        let id = d.u64()?;
        RestoreError::check("connection handle", id, 1, MAX_CONN_ID)?;
        let peer: SocketAddr = d.str()?.parse().map_err(|_| RestoreError::Format)?;
        let check: [u8; 8] = d.bytes()?.try_into().map_err(|_| RestoreError::Format)?;
        let master: [u8; 48] = d.bytes()?.try_into().map_err(|_| RestoreError::Format)?;
        let ems = d.bool()?;
        let session = Session::restore(&mut d)?;
        let unread = bytes.len().saturating_sub(d.position());
        if unread > 0 {
            return Err(RestoreError::Trailing(unread));
        }
        if self.sessions.contains_key(&id) {
            return Err(RestoreError::InUse("connection handle"));
        }
        if let Some(c) = session.recv_cid.filter(|c| !c.is_empty()) {
            let len = crate::codec::wide(c.as_bytes().len());
            let want = crate::codec::wide(self.cid_len());
            RestoreError::check("recv_cid length", len, want, want)?;
            if self.by_cid.contains_key(&c) {
                return Err(RestoreError::InUse("connection ID"));
            }
        }
        self.make_room();
        if let Some(c) = session.recv_cid {
            self.by_cid.insert(c, id);
        }
        self.by_addr.insert(peer, id);
        self.clock.push_back(id);
        self.sessions.insert(
            id,
            Entry {
                session,
                peer,
                check,
                master,
                ems,
                referenced: false,
                final_flight: None,
            },
        );
        // `id` is at most MAX_CONN_ID, so this cannot overflow.
        self.next_id = self.next_id.max(id.saturating_add(1));
        Ok(ConnId(id))
    }
}

fn is_client_hello(fragment: &[u8]) -> bool {
    fragment.first() == Some(&(HandshakeType::ClientHello as u8))
}

/// The ClientHello body with the cookie field emptied: what the cookie is computed over.
fn hello_without_cookie(body: &[u8]) -> Option<Vec<u8>> {
    let mut r = Reader::new(body);
    r.take(2 + 32).ok()?;
    r.vec8().ok()?;
    let before = body.len() - r.remaining();
    r.vec8().ok()?;
    let after = body.len() - r.remaining();
    let mut out = Vec::with_capacity(body.len());
    out.extend_from_slice(body.get(..before)?);
    out.push(0);
    out.extend_from_slice(body.get(after..)?);
    Some(out)
}

/// Used where no credential can be asked for (timers).
struct NoCredentials;

impl ServerCredentials for NoCredentials {
    fn psk(&self, _identity: &[u8]) -> Option<crate::config::PskEntry> {
        None
    }
    fn verify_client(
        &self,
        _key: crate::config::PeerKey<'_>,
        _unix_time: Option<u64>,
    ) -> Result<Arc<str>, AlertDescription> {
        Err(AlertDescription::InternalError)
    }
}
