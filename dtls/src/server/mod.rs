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
mod admission;
mod handshake;
mod handshake_table;
mod sessions;

pub use handshake::{Resumable, SESSION_ID_LEN};

use crate::alert::AlertDescription;
use crate::config::ServerConfig;
use crate::config::ServerCredentials;
use crate::cookie::CookieJar;
use crate::error::Failure;
use crate::record::Cid;
use crate::record::{split_records, ContentType, Record};
use crate::session::{Session, SessionError};
use crate::suite::CipherSuite;
use handshake::ServerHandshake;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

type FastMap<K, V> = HashMap<K, V, ahash::RandomState>;

/// Source addresses whose handshake rate is tracked per second (a few MB at most).
const RATE_SOURCES: usize = 1 << 16;

/// Highest session handle accepted from saved bytes. New handles count up by one from below
/// 2^32 or from the highest restored one, so with this bound the counter needs more than
/// 2^63 handshakes to reach `u64::MAX`: it never runs out, and a damaged store cannot make it.
pub const MAX_CONN_ID: u64 = 1 << 62;

/// The node named by the Connection ID of a datagram's first record (its first byte, see
/// [`ServerConfig::cid_node`]), if that record carries one (`tls12_cid`, RFC 9146 §4) of a
/// server issuing `cid_len`-byte CIDs. Nothing is decrypted: a node uses it to pass the
/// datagram to the node holding the session; that node authenticates it.
pub fn cid_node(datagram: &[u8], cid_len: usize) -> Option<u8> {
    let cid_len = cid_len.min(crate::config::MAX_CID_LEN);
    let record = split_records(datagram, cid_len).next()?.ok()?;
    if record.content_type != ContentType::Tls12Cid as u8 {
        return None;
    }
    record.cid.first().copied()
}

/// Whether a datagram's first record is a ClientHello in the clear (epoch 0: a handshake
/// begins; RFC 6347 §4.2.1). Unauthenticated, like every ClientHello: a node of a cluster only
/// uses it to answer the handshake's sender from where it came.
pub fn starts_handshake(datagram: &[u8]) -> bool {
    let Some(Ok(record)) = split_records(datagram, 0).next() else {
        return false;
    };
    record.content_type == ContentType::Handshake as u8
        && record.epoch == 0
        && admission::is_client_hello(record.fragment)
}

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
    /// A handshake failed; the alert of `failure.error.alert_to_send()`, if any, was sent.
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
    /// Entries of the index of handshakes by start time (live ones and not yet pruned ended
    /// ones): at most twice the most handshakes live at once, plus 65.
    pub by_start: usize,
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
            && admission::is_client_hello(record.fragment)
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
            if let Some(out) = entry.session.close_notify(&mut self.rng) {
                self.transmits.push_back((entry.peer, out));
            }
            self.remove_session(conn.0, CloseReason::Local);
        }
    }

    /// Whether `principal` holds an established session (a scan, without copying them).
    pub fn has_principal(&self, principal: &str) -> bool {
        self.sessions
            .values()
            .any(|e| &*e.session.principal == principal)
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
            by_start: self.by_start.len(),
        }
    }

    /// Every established session's handle.
    pub fn conns(&self) -> Vec<ConnId> {
        self.sessions.keys().map(|id| ConnId(*id)).collect()
    }
}
