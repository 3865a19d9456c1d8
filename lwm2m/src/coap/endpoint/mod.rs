//! [`Endpoint`]: the sans-IO CoAP exchange layer for many peers (RFC 7252 §4, §5).
//!
//! The message layer lives here: message IDs per peer, confirmable retransmission with
//! exponential backoff (§4.2), duplicate detection with replay of the cached answer (§4.5),
//! ACK/RST matching, ping (§4.3) and all timers. The request/response roles are split out:
//! `client` (requests we send, Block1 upload, Block2 download, Observe as observer) and
//! `server` (requests we receive, Block1 reassembly, Block2 serving, Observe as notifier).
mod client;
mod server;

use super::config::EndpointConfig;
use super::event::{
    Event, ExchangeError, IncomingId, ObserverGoneReason, ObserverId, Peer, RequestId, SendError,
    Stats, Transmit, Usage,
};
use super::expiring::ExpiringMap;
use super::msg::{self, Kind};
use super::timer::{ExpiryQueue, TimerSet};
use super::FastMap;
use coap_lite::{MessageType, Packet};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

use client::OutRequest;
use server::{Block1In, Block2Body, InRequest, Observer};

/// One CoAP endpoint: the protocol state for every peer reached through one socket.
///
/// It never does I/O and never reads the clock. The driver feeds it and drains it:
///
/// - **Inputs**: [`handle_datagram`](Self::handle_datagram) for each datagram received,
///   [`handle_timeout`](Self::handle_timeout) when the deadline from
///   [`poll_timeout`](Self::poll_timeout) passes (calling it early or often is harmless).
/// - **Commands**: [`send_request`](Self::send_request), [`respond`](Self::respond),
///   [`notify`](Self::notify), [`ping`](Self::ping), [`cancel`](Self::cancel),
///   [`cancel_observe`](Self::cancel_observe), [`remove_observer`](Self::remove_observer).
/// - **Outputs**, after any input or command, in this order: drain
///   [`poll_transmit`](Self::poll_transmit) and send each datagram, drain
///   [`poll_event`](Self::poll_event), then re-arm the timer from
///   [`poll_timeout`](Self::poll_timeout).
///
/// Every table is bounded by [`EndpointConfig`]; [`usage`](Self::usage) reports how full.
pub struct Endpoint<P: Peer> {
    config: EndpointConfig,
    /// Seeded from the config so that a test run can be replayed exactly.
    rng: StdRng,
    timers: TimerSet<Timer<P>>,
    transmits: VecDeque<Transmit<P>>,
    events: VecDeque<Event<P>>,
    stats: Stats,

    /// Message-ID counters. An entry lives for EXCHANGE_LIFETIME after its last use, so a
    /// message ID is never reused towards a peer that may still remember it; after that a
    /// fresh random start is as good, and idle peers cost nothing.
    peers: FastMap<P, PeerState>,
    peer_expiry: ExpiryQueue<P>,
    /// Our confirmable messages not yet acknowledged, by (peer, message ID).
    unacked: FastMap<(P, u16), Unacked>,
    /// Message IDs received recently, with what we answered, for duplicate detection.
    dedup: ExpiringMap<(P, u16), Reply>,
    /// See [`Endpoint::refuse_reports`].
    refusing_reports: bool,

    next_id: u64,
    /// Requests we sent (client role).
    requests: FastMap<RequestId, OutRequest<P>>,
    /// Response matching: (peer, token) to the request it belongs to.
    tokens: FastMap<(P, msg::Token), RequestId>,

    /// Requests delivered to the application and not yet answered (server role).
    incoming: ExpiringMap<IncomingId, InRequest<P>>,
    /// When a confirmable request still unanswered gets an empty ACK.
    ack_due: ExpiryQueue<IncomingId>,
    block1: ExpiringMap<(P, u64), Block1In>,
    block1_bytes: usize,
    block2: ExpiringMap<(P, u64), Block2Body>,
    block2_bytes: usize,
    observers: FastMap<ObserverId, Observer<P>>,
    observer_keys: FastMap<(P, msg::Token), ObserverId>,
    /// Message IDs of recent non-confirmable notifications, so an RST to one finds its
    /// observer (RFC 7641 §3.6).
    non_notified: ExpiringMap<(P, u16), ObserverId>,
}

#[derive(Debug)]
struct PeerState {
    next_mid: u16,
    /// Requests holding one of the peer's NSTART slots.
    active: u8,
    /// Requests waiting for a slot, in submission order.
    queue: VecDeque<RequestId>,
    /// The entry may be dropped after this, if nothing is active or queued.
    expires: Instant,
}

/// A confirmable message of ours awaiting ACK or RST.
#[derive(Debug)]
struct Unacked {
    bytes: Vec<u8>,
    /// Retransmissions so far.
    attempt: u8,
    timeout: Duration,
    /// Id of the armed retransmission timer.
    timer: u64,
    /// When that timer fires: with the id, what cancels it once the message is answered.
    due: Instant,
    owner: Owner,
}

/// What an acknowledged or reset confirmable message belongs to.
#[derive(Debug, Clone, Copy)]
enum Owner {
    Request(RequestId),
    Ping(RequestId),
    SeparateResponse,
    Notification(ObserverId),
}

/// What we answered to a message, kept for duplicates of it.
#[derive(Debug, Clone)]
enum Reply {
    /// Nothing is sent again (a NON with no answer yet, or a message we ignored).
    Nothing,
    /// The application has the request and has not answered yet.
    Pending(IncomingId),
    /// These bytes are sent again.
    Bytes(Box<[u8]>),
    /// An empty message of this type (the ACK of a notification, a Reset) with the
    /// duplicate's message ID, rebuilt when needed: one is kept per notification received,
    /// so it holds no allocation of its own.
    Empty(MessageType),
}

#[derive(Debug, Clone, Copy)]
enum Timer<P> {
    Retransmit {
        peer: P,
        mid: u16,
        id: u64,
    },
    RequestDeadline {
        req: RequestId,
        id: u64,
    },
    /// The pause before the next block of an upload (`RequestOptions::block_interval`).
    BlockPace {
        req: RequestId,
        id: u64,
    },
}

impl<P: Peer> Endpoint<P> {
    /// A new endpoint.
    pub fn new(config: EndpointConfig) -> Self {
        let mut rng = StdRng::seed_from_u64(config.rng_seed);
        let hasher =
            ahash::RandomState::with_seeds(rng.random(), rng.random(), rng.random(), rng.random());
        Self {
            rng,
            timers: TimerSet::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            peers: FastMap::with_hasher(hasher.clone()),
            peer_expiry: ExpiryQueue::default(),
            unacked: FastMap::with_hasher(hasher.clone()),
            dedup: ExpiringMap::new(config.dedup_capacity, hasher.clone()),
            refusing_reports: false,
            next_id: 0,
            requests: FastMap::with_hasher(hasher.clone()),
            tokens: FastMap::with_hasher(hasher.clone()),
            incoming: ExpiringMap::new(config.max_pending_incoming, hasher.clone()),
            ack_due: ExpiryQueue::default(),
            block1: ExpiringMap::new(config.max_block1_transfers, hasher.clone()),
            block1_bytes: 0,
            block2: ExpiringMap::new(config.max_block2_bodies, hasher.clone()),
            block2_bytes: 0,
            observers: FastMap::with_hasher(hasher.clone()),
            observer_keys: FastMap::with_hasher(hasher.clone()),
            non_notified: ExpiringMap::new(config.max_observers.clamp(1, 1 << 20), hasher.clone()),
            config,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &EndpointConfig {
        &self.config
    }

    /// While `on`, the data devices report on their own are neither acknowledged nor
    /// delivered: notifications (RFC 7641 §4.2) and LwM2M Send requests (`POST /dp`, OMA
    /// LwM2M TS 1.2 Transport §6.4.1), because the application cannot take them now (its
    /// outbox is full). A confirmable one is then retransmitted by its sender with the usual
    /// backoff (RFC 7252 §4.2) and delivered once this is off again; a non-confirmable one is
    /// lost, as it could be on the network. Nothing is remembered of a refused message, so
    /// its retransmission is a new arrival. Returns whether they were refused before.
    pub fn refuse_reports(&mut self, on: bool) -> bool {
        std::mem::replace(&mut self.refusing_reports, on)
    }

    /// Counters since creation.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// How much state is held now.
    pub fn usage(&self) -> Usage {
        Usage {
            peers: self.peers.len(),
            unacked: self.unacked.len(),
            outgoing: self.requests.len(),
            dedup: self.dedup.len(),
            incoming: self.incoming.len(),
            block1_bytes: self.block1_bytes,
            block2_bytes: self.block2_bytes,
            observers: self.observers.len(),
            timers: self.timers.len(),
            events: self.events.len(),
            transmits: self.transmits.len(),
        }
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit<P>> {
        self.transmits.pop_front()
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<Event<P>> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.timers.next_deadline(),
            self.peer_expiry.next_deadline(),
            self.dedup.next_deadline(),
            self.incoming.next_deadline(),
            self.ack_due.next_deadline(),
            self.block1.next_deadline(),
            self.block2.next_deadline(),
            self.non_notified.next_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Processes one datagram from `peer`.
    pub fn handle_datagram(&mut self, now: Instant, peer: P, data: &[u8]) {
        self.stats.rx += 1;
        let packet = match Packet::from_bytes(data) {
            Ok(p) if p.header.get_version() == 1 => p,
            Ok(_) => return, // RFC 7252 §3: unknown version numbers are silently ignored.
            Err(_) => {
                self.stats.malformed += 1;
                self.reject_malformed(peer, data);
                return;
            }
        };
        let mid = packet.header.message_id;
        let ty = packet.header.get_type();
        match msg::kind(&packet) {
            Kind::Empty => {
                if !packet.get_token().is_empty()
                    || !packet.payload.is_empty()
                    || packet.options().next().is_some()
                {
                    // §4.1: an empty message with content is a format error.
                    self.stats.malformed += 1;
                    self.reject_malformed(peer, data);
                    return;
                }
                match ty {
                    // §4.3: a CON empty message is a ping; the answer is RST.
                    MessageType::Confirmable => self.send_reset(peer, mid),
                    MessageType::NonConfirmable => {}
                    MessageType::Acknowledgement => self.on_ack(now, peer, mid, None),
                    MessageType::Reset => self.on_reset(now, peer, mid),
                }
            }
            Kind::Request => match ty {
                MessageType::Confirmable | MessageType::NonConfirmable => {
                    self.on_request(now, peer, packet)
                }
                _ => self.stats.malformed += 1,
            },
            Kind::Response => match ty {
                MessageType::Acknowledgement => self.on_ack(now, peer, mid, Some(packet)),
                MessageType::Confirmable | MessageType::NonConfirmable => {
                    self.on_separate_response(now, peer, packet)
                }
                MessageType::Reset => self.stats.malformed += 1,
            },
            Kind::Reserved => {
                self.stats.malformed += 1;
                if ty == MessageType::Confirmable {
                    self.send_reset(peer, mid);
                }
            }
        }
    }

    /// Runs every timer due at `now`: retransmissions, request deadlines, expiry of records.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(t) = self.timers.pop_expired(now) {
            match t {
                Timer::Retransmit { peer, mid, id } => self.on_retransmit_timer(now, peer, mid, id),
                Timer::RequestDeadline { req, id } => self.on_request_deadline(now, req, id),
                Timer::BlockPace { req, id } => self.on_block_pace(now, req, id),
            }
        }
        while self.dedup.pop_expired(now).is_some() {}
        while let Some(((_, _), _)) = self.non_notified.pop_expired(now) {}
        while let Some(id) = self.ack_due.pop_expired(now) {
            self.send_due_ack(now, id);
        }
        while self.incoming.pop_expired(now).is_some() {}
        while let Some((_, b)) = self.block1.pop_expired(now) {
            self.block1_bytes -= b.body.len();
        }
        while let Some((_, b)) = self.block2.pop_expired(now) {
            self.block2_bytes -= b.body.len();
        }
        while let Some(peer) = self.peer_expiry.pop_expired(now) {
            let lifetime = self.config.transmission.exchange_lifetime();
            let Some(ps) = self.peers.get(&peer) else {
                continue;
            };
            if ps.active > 0 || !ps.queue.is_empty() {
                self.peer_expiry
                    .push(crate::time::deadline(now, lifetime), peer);
            } else if ps.expires > now {
                self.peer_expiry.push(ps.expires, peer);
            } else {
                self.peers.remove(&peer);
            }
        }
    }

    /// Sends a CoAP ping (an empty CON, RFC 7252 §4.3). Answered by [`Event::Pong`], or
    /// [`Event::Failed`] with `Timeout` after the retransmissions. Pings count against
    /// `max_outgoing` like requests.
    pub fn ping(&mut self, now: Instant, peer: P) -> Result<RequestId, SendError> {
        if self.requests.len() + self.unacked.len() >= self.config.max_outgoing {
            self.stats.overload_rejections += 1;
            return Err(SendError::Busy);
        }
        let id = self.next_request_id();
        let mid = self.next_mid(now, peer);
        let bytes = msg::empty_bytes(MessageType::Confirmable, mid);
        self.send_con(now, peer, mid, bytes, Owner::Ping(id));
        Ok(id)
    }

    // ----- message layer -----

    fn next_request_id(&mut self) -> RequestId {
        self.next_id += 1;
        RequestId(self.next_id)
    }

    fn peer_state(&mut self, now: Instant, peer: P) -> &mut PeerState {
        let lifetime = self.config.transmission.exchange_lifetime();
        let rng = &mut self.rng;
        let peer_expiry = &mut self.peer_expiry;
        self.peers.entry(peer).or_insert_with(|| {
            peer_expiry.push(crate::time::deadline(now, lifetime), peer);
            PeerState {
                next_mid: rng.random(),
                active: 0,
                queue: VecDeque::new(),
                expires: crate::time::deadline(now, lifetime),
            }
        })
    }

    fn next_mid(&mut self, now: Instant, peer: P) -> u16 {
        let lifetime = self.config.transmission.exchange_lifetime();
        let ps = self.peer_state(now, peer);
        let mid = ps.next_mid;
        ps.next_mid = ps.next_mid.wrapping_add(1);
        ps.expires = crate::time::deadline(now, lifetime);
        mid
    }

    fn transmit(&mut self, peer: P, payload: Vec<u8>) {
        self.stats.tx += 1;
        self.transmits.push_back(Transmit { peer, payload });
    }

    fn send_reset(&mut self, peer: P, mid: u16) {
        self.stats.resets_sent += 1;
        self.transmit(peer, msg::empty_bytes(MessageType::Reset, mid));
    }

    /// RFC 7252 §4.2/§4.3: a confirmable message we cannot parse is rejected with RST, if at
    /// least its header can be read; anything else is silently dropped.
    fn reject_malformed(&mut self, peer: P, data: &[u8]) {
        if let [first, _, hi, lo, ..] = *data {
            let version = first >> 6;
            let ty = (first >> 4) & 0x3;
            if version == 1 && ty == 0 {
                self.send_reset(peer, u16::from_be_bytes([hi, lo]));
            }
        }
    }

    /// The initial retransmission timeout, drawn from [ACK_TIMEOUT, ACK_TIMEOUT * factor].
    fn initial_timeout(&mut self) -> Duration {
        let t = &self.config.transmission;
        let factor = if t.ack_random_factor > 1.0 {
            self.rng.random_range(1.0..t.ack_random_factor)
        } else {
            1.0
        };
        t.ack_timeout.mul_f64(factor)
    }

    fn send_con(&mut self, now: Instant, peer: P, mid: u16, bytes: Vec<u8>, owner: Owner) {
        let timeout = self.initial_timeout();
        self.send_con_with(now, peer, mid, bytes, owner, 0, timeout);
    }

    #[allow(clippy::too_many_arguments)]
    fn send_con_with(
        &mut self,
        now: Instant,
        peer: P,
        mid: u16,
        bytes: Vec<u8>,
        owner: Owner,
        attempt: u8,
        timeout: Duration,
    ) {
        let id = self.timers.next_id();
        self.timers.arm(
            crate::time::deadline(now, timeout),
            Timer::Retransmit { peer, mid, id },
        );
        self.transmit(peer, bytes.clone());
        self.unacked.insert(
            (peer, mid),
            Unacked {
                bytes,
                attempt,
                timeout,
                timer: id,
                due: crate::time::deadline(now, timeout),
                owner,
            },
        );
    }

    /// Forgets our confirmable message (peer, mid) — answered, reset, superseded or given
    /// up — and cancels its retransmission timer.
    fn drop_unacked(&mut self, peer: P, mid: u16) -> Option<Unacked> {
        let u = self.unacked.remove(&(peer, mid))?;
        self.timers.cancel(u.due, u.timer);
        Some(u)
    }

    fn on_retransmit_timer(&mut self, now: Instant, peer: P, mid: u16, id: u64) {
        let max = self.config.transmission.max_retransmit;
        let Some(u) = self.unacked.get_mut(&(peer, mid)) else {
            return;
        };
        if u.timer != id {
            return;
        }
        if u.attempt >= max {
            let owner = u.owner;
            self.drop_unacked(peer, mid);
            match owner {
                Owner::Request(req) => self.on_exchange_timeout(now, req),
                Owner::Ping(req) => {
                    self.stats.timeouts += 1;
                    self.events.push_back(Event::Failed {
                        id: req,
                        peer,
                        error: ExchangeError::Timeout,
                    });
                }
                Owner::SeparateResponse => {
                    tracing::debug!(?peer, mid, "separate response never acknowledged");
                }
                Owner::Notification(obs) => {
                    self.drop_observer(obs, Some(ObserverGoneReason::Timeout))
                }
            }
            return;
        }
        let attempt = u.attempt + 1;
        let timeout = u.timeout * 2;
        let owner = u.owner;
        if let Owner::Request(req) = owner {
            // A per-request timeout shorter than the retransmission schedule ends it here.
            if self
                .requests
                .get(&req)
                .is_some_and(|r| r.deadline_at <= now)
            {
                self.drop_unacked(peer, mid);
                self.on_exchange_timeout(now, req);
                return;
            }
        }
        // RFC 7641 §4.5.2: a newer notification takes over the retransmission of the older
        // one, keeping its counter and timeout.
        if let Owner::Notification(obs) = owner {
            if let Some(newer) = self.observers.get_mut(&obs).and_then(|o| o.queued.take()) {
                self.drop_unacked(peer, mid);
                self.send_notification_con(now, obs, newer, attempt, timeout);
                self.stats.retransmissions += 1;
                return;
            }
        }
        let Some(u) = self.unacked.get_mut(&(peer, mid)) else {
            return;
        };
        u.attempt = attempt;
        u.timeout = timeout;
        let new_id = self.timers.next_id();
        u.timer = new_id;
        u.due = crate::time::deadline(now, timeout);
        let bytes = u.bytes.clone();
        self.timers.arm(
            crate::time::deadline(now, timeout),
            Timer::Retransmit {
                peer,
                mid,
                id: new_id,
            },
        );
        self.stats.retransmissions += 1;
        self.transmit(peer, bytes);
    }

    /// An ACK, empty or with a piggybacked response.
    fn on_ack(&mut self, now: Instant, peer: P, mid: u16, response: Option<Packet>) {
        let Some(u) = self.drop_unacked(peer, mid) else {
            return;
        };
        match u.owner {
            Owner::Request(req) => match response {
                None => self.on_request_acked(now, req),
                Some(r) => self.on_response(now, peer, req, r),
            },
            Owner::Ping(req) => self.events.push_back(Event::Pong { id: req, peer }),
            Owner::SeparateResponse => {}
            Owner::Notification(obs) => self.on_notification_acked(now, obs),
        }
    }

    fn on_reset(&mut self, now: Instant, peer: P, mid: u16) {
        match self.drop_unacked(peer, mid).map(|u| u.owner) {
            Some(Owner::Request(req)) => self.fail_request(now, req, ExchangeError::Reset),
            Some(Owner::Ping(req)) => self.events.push_back(Event::Pong { id: req, peer }),
            Some(Owner::SeparateResponse) => {}
            Some(Owner::Notification(obs)) => {
                self.drop_observer(obs, Some(ObserverGoneReason::Reset))
            }
            None => {
                if let Some(obs) = self.non_notified.remove(&(peer, mid)) {
                    self.drop_observer(obs, Some(ObserverGoneReason::Reset));
                }
            }
        }
    }

    /// Duplicate detection (RFC 7252 §4.5) for a CON or NON message. Returns true if it is
    /// a duplicate, after answering it from the cache.
    fn is_duplicate(&mut self, now: Instant, peer: P, mid: u16, con: bool) -> bool {
        match self.dedup.get(&(peer, mid), now).cloned() {
            Some(reply) => {
                self.stats.duplicates += 1;
                match reply {
                    Reply::Nothing => {}
                    Reply::Bytes(b) => self.transmit(peer, b.into_vec()),
                    Reply::Empty(t) => self.transmit(peer, msg::empty_bytes(t, mid)),
                    Reply::Pending(id) => {
                        // The peer is retransmitting while the application works: ACK now
                        // so it stops, and answer later as a separate response (§5.2.2).
                        if con {
                            self.send_due_ack(now, id);
                        }
                    }
                }
                true
            }
            None => {
                let t = &self.config.transmission;
                let life = if con {
                    t.exchange_lifetime()
                } else {
                    t.non_lifetime()
                };
                let evicted = self.dedup.insert(
                    (peer, mid),
                    Reply::Nothing,
                    crate::time::deadline(now, life),
                );
                self.stats.dedup_evictions += u64::from(evicted.is_some());
                false
            }
        }
    }

    /// Records what was answered to (peer, mid), for its duplicates.
    fn remember_reply(&mut self, now: Instant, peer: P, mid: u16, reply: Reply) {
        if let Some(r) = self.dedup.get_mut(&(peer, mid), now) {
            *r = reply;
        }
    }
}

#[cfg(test)]
mod tests;
