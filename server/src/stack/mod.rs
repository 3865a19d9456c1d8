//! The server's protocol stack, sans-IO: DTLS (RFC 6347, RFC 9146) in front of a role core
//! (the LwM2M server's, OMA LwM2M TS 1.2), with the policies between them — who a DTLS peer
//! is, which sessions are saved and when, what the audit log records, and the hold that
//! keeps acknowledgements back until what they acknowledge is durable.
//!
//! Like the cores it wraps it never touches a socket or the store, and reads no clock: every
//! input takes `now` (the DTLS engine derives the time of day certificates are checked against
//! from it and the clock base in its configuration), and everything it wants done comes out of a `poll_*` method
//! for the driver (the server task's runtime) to carry out.
//!
//! - **Inputs**: [`handle_datagram`](Stack::handle_datagram),
//!   [`handle_timeout`](Stack::handle_timeout), [`handle_committed`](Stack::handle_committed)
//!   (the store finished a commit the stack asked for), [`outbox_written`](Stack::outbox_written)
//!   (a sink queued MQTT messages caused by the last input), and the application commands
//!   [`credentials_changed`](Stack::credentials_changed) and, for the role's own commands,
//!   [`core_mut`](Stack::core_mut).
//! - **Outputs**, after each input, in this order: [`poll_event`](Stack::poll_event) until
//!   `None` (store writes, audit notes, the core's events — a sink that wrote the outbox
//!   calls `outbox_written` before `poll_transmit`), then [`poll_transmit`](Stack::poll_transmit),
//!   then [`poll_commit`](Stack::poll_commit) (a commit to request, reported back through
//!   `handle_committed`), then [`poll_timeout`](Stack::poll_timeout). Events first: whether a
//!   datagram is held is decided when it is polled, by the outbox writes reported so far.
//!
//! Metrics are counted as the facts happen, in the shared [`Metrics`]; a registration's
//! latency runs from the input that brought the Register or Update (its `now`) to the input
//! after which its answer leaves (for an answer held for a commit, the
//! [`handle_committed`](Stack::handle_committed) that releases it).
//!
//! # Layout
//! - [`role`]: what the stack needs from a role core.
//! - `secure`: the DTLS engine's events to the core, refused handshakes to the audit log.
//! - `sessions`: saved DTLS sessions and the periodic save's schedule.
//! - `hold`: durable before acknowledged.
mod hold;
pub mod role;
mod secure;
mod sessions;
#[cfg(test)]
mod tests;

pub use role::Role;
pub use secure::Secure;

use crate::core::persist::StoreOp;
use crate::core::types::{DeviceEvent, Link};
use crate::core::ServerCore;
use crate::metrics::{Metrics, Transport};
use crate::provisioning::audit::{AuditEvent, AuditKind};
use hold::Hold;
use lwm2m::coap::Transmit;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Something for the driver to carry out.
#[derive(Debug)]
pub enum StackEvent<E = DeviceEvent> {
    /// A write for the durable store, in order with the others.
    Store(StoreOp),
    /// An entry for the audit log.
    Audit(AuditNote),
    /// An event of the role core, for the sinks (MQTT bridge, subscribers, waiting callers).
    Device(E),
}

/// An audit event without its time: the driver stamps it as it records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditNote {
    /// What happened.
    pub kind: AuditKind,
    /// The endpoint concerned, if known.
    pub endpoint: Option<String>,
    /// The network peer, if any.
    pub peer: Option<String>,
    /// The reason, the identity tried...
    pub detail: String,
}

impl AuditNote {
    /// The audit event, as happened at `at`.
    pub fn at(self, at: SystemTime) -> AuditEvent {
        AuditEvent {
            at,
            kind: self.kind,
            endpoint: self.endpoint,
            peer: self.peer,
            detail: self.detail,
        }
    }
}

/// Registrations whose answer is timed at most: one per device between its Register and the
/// answer, which leaves at once or after one commit.
const MAX_TIMED_ANSWERS: usize = 4096;

/// DTLS and a role core between the sockets and the rest of the server.
pub struct Stack<C: Role = ServerCore<Link>> {
    core: C,
    /// CoAP over DTLS, if the server serves it.
    secure: Option<Secure>,
    /// Counted where the facts are; read by `/metrics`.
    metrics: Arc<Metrics>,
    /// The core's datagrams waiting for an outbox commit.
    hold: Hold<Transmit<Link>>,
    /// The periodic session save.
    saves: sessions::Schedule,
    /// Store writes and audit notes of the DTLS side, ahead of the core's outputs.
    events: VecDeque<StackEvent<C::Event>>,
    /// The time of the input being handled (the last one given).
    clock: Instant,
    /// Peers whose Register or Update was accepted and not yet answered, with the time it
    /// came in: the next datagram to such a peer is the answer (the core answers a request
    /// before it sends the peer anything it caused).
    answering: HashMap<Link, Instant>,
    /// Whether a DTLS peer was authenticated since [`take_authenticated`](Self::take_authenticated).
    authenticated: bool,
}

impl<C: Role> Stack<C> {
    /// A stack around `core` (restored already), serving DTLS through `secure` if given, saving
    /// its sessions every `save_every` from `now`.
    pub fn new(
        core: C,
        secure: Option<Secure>,
        metrics: Arc<Metrics>,
        save_every: Option<Duration>,
        now: Instant,
    ) -> Self {
        let saves = match &secure {
            Some(_) => sessions::Schedule::new(save_every, now),
            None => sessions::Schedule::off(),
        };
        if let Some(s) = &secure {
            C::sessions_gauge(&metrics, s.server.usage().sessions);
        }
        Self {
            core,
            secure,
            metrics,
            hold: Hold::default(),
            saves,
            events: VecDeque::new(),
            clock: now,
            answering: HashMap::new(),
            authenticated: false,
        }
    }

    /// The role core, for its own queries.
    pub fn core(&self) -> &C {
        &self.core
    }

    /// The role core, for its own commands (their datagrams and events come out of this
    /// stack's `poll_*` like any others).
    pub fn core_mut(&mut self) -> &mut C {
        &mut self.core
    }

    /// The counters the stack writes.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The DTLS engine, if the server serves DTLS.
    pub fn dtls(&self) -> Option<&dtls::Server> {
        self.secure.as_ref().map(|s| &s.server)
    }

    /// One datagram from `from`, received on a socket of `transport`.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        transport: Transport,
        from: SocketAddr,
        data: &[u8],
    ) {
        self.clock = now;
        match transport {
            Transport::Udp => {
                self.metrics.datagram_received(Transport::Udp);
                self.core.handle_datagram(now, Link::Udp(from), data);
            }
            Transport::Dtls => {
                let Some(secure) = self.secure.as_mut() else {
                    return;
                };
                self.metrics.datagram_received(Transport::Dtls);
                secure.handle_datagram(now, from, data);
                self.secure_events(now);
            }
        }
    }

    /// Runs what is due at `now`: the core's timers, DTLS retransmissions, a chunk of the
    /// periodic session save.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.clock = now;
        self.core.handle_timeout(now);
        let Some(secure) = self.secure.as_mut() else {
            return;
        };
        secure.server.handle_timeout(now);
        self.secure_events(now);
        let Some(secure) = self.secure.as_ref() else {
            return;
        };
        for conn in self.saves.due(now, || secure.server.conns()) {
            self.events.extend(secure.save(conn).map(StackEvent::Store));
        }
    }

    /// The credentials of `endpoints` changed (in the index the DTLS lookups share): their
    /// sessions close, with an audit note per endpoint that had any. `revoked`, if given,
    /// lost its credential altogether: its state in the core ends too.
    pub fn credentials_changed(
        &mut self,
        now: Instant,
        endpoints: &[String],
        revoked: Option<&str>,
    ) {
        self.clock = now;
        let closed = match self.secure.as_mut() {
            Some(s) => s.close_sessions(endpoints),
            None => Vec::new(),
        };
        self.secure_events(now);
        if let Some(endpoint) = revoked {
            self.core.revoke(now, endpoint);
        }
        for (endpoint, n) in closed {
            self.events.push_back(StackEvent::Audit(AuditNote {
                kind: AuditKind::SessionClosed,
                endpoint: Some(endpoint),
                peer: None,
                detail: format!("{n} DTLS session(s) closed: credential changed"),
            }));
        }
    }

    /// Whether `principal` holds an established DTLS session (a scan of the sessions: for
    /// rare checks only).
    pub fn has_session_of(&self, principal: &str) -> bool {
        self.dtls().is_some_and(|d| d.has_principal(principal))
    }

    /// Ends one DTLS session (close_notify to the peer); the core hears of it as for any
    /// closed session.
    pub fn close(&mut self, now: Instant, conn: dtls::ConnId) {
        self.clock = now;
        if let Some(s) = self.secure.as_mut() {
            s.server.close(conn);
        }
        self.secure_events(now);
    }

    /// A sink queued outbox writes caused by the input just handled: what the core sends
    /// from now on waits for the commit that makes them durable.
    pub fn outbox_written(&mut self) {
        self.hold.written();
    }

    /// A commit to ask the store for: once every write handed out so far is committed,
    /// report it with [`handle_committed`](Self::handle_committed).
    pub fn poll_commit(&mut self) -> Option<u64> {
        self.hold.poll_commit()
    }

    /// The store committed what was queued when `generation` was asked for (or failed to:
    /// the held datagrams leave either way, as a store gone wrong must not silence the server);
    /// the driver heard of it at `now`.
    pub fn handle_committed(&mut self, now: Instant, generation: u64) {
        self.clock = now;
        self.hold.committed(generation);
    }

    /// Every established session as store writes (at shutdown); returns how many.
    pub fn save_sessions(&mut self) -> usize {
        let Some(secure) = self.secure.as_ref().filter(|_| C::SAVES_SESSIONS) else {
            return 0;
        };
        let conns = secure.server.conns();
        for conn in &conns {
            self.events
                .extend(secure.save(*conn).map(StackEvent::Store));
        }
        conns.len()
    }

    /// The next thing for the driver to carry out.
    pub fn poll_event(&mut self) -> Option<StackEvent<C::Event>> {
        if let Some(ev) = self.events.pop_front() {
            return Some(ev);
        }
        if let Some(op) = self.core.poll_store() {
            return Some(StackEvent::Store(op));
        }
        let ev = self.core.poll_event()?;
        if let Some(peer) = self.core.registration_peer(&ev) {
            // Every Register and Update is answered, at once or after one commit: a full
            // table is a burst waiting for that commit. The answers past the bound go
            // untimed rather than dropping the ones already waiting (the slowest).
            if self.answering.len() < MAX_TIMED_ANSWERS {
                self.answering.insert(peer, self.clock);
            }
        }
        match self.core.observe(&ev, &self.metrics) {
            // The refusal is recorded before the sinks see the event.
            Some(note) => {
                self.events.push_back(StackEvent::Device(ev));
                Some(StackEvent::Audit(note))
            }
            None => Some(StackEvent::Device(ev)),
        }
    }

    /// The next datagram to send, and the socket group it leaves from.
    pub fn poll_transmit(&mut self) -> Option<(Transport, Transmit<SocketAddr>)> {
        loop {
            if let Some((peer, payload)) =
                self.secure.as_mut().and_then(|s| s.server.poll_transmit())
            {
                self.metrics.datagram_sent(Transport::Dtls);
                return Some((Transport::Dtls, Transmit { peer, payload }));
            }
            let t = match self.hold.pop_ready() {
                Some(t) => t,
                None => match self.hold.admit(self.core.poll_transmit()?) {
                    Some(t) => t,
                    None => continue,
                },
            };
            if let Some(arrived) = (!self.answering.is_empty())
                .then(|| self.answering.remove(&t.peer))
                .flatten()
            {
                let took = self.clock.saturating_duration_since(arrived);
                self.metrics.registration_answered(took);
            }
            match t.peer {
                Link::Udp(peer) => {
                    self.metrics.datagram_sent(Transport::Udp);
                    return Some((
                        Transport::Udp,
                        Transmit {
                            peer,
                            payload: t.payload,
                        },
                    ));
                }
                Link::Dtls(conn) => {
                    if let Some(secure) = self.secure.as_mut() {
                        if let Err(e) = secure.server.send(conn, &t.payload) {
                            // The session is gone; CoAP retransmission gives up in its time.
                            tracing::debug!(peer = %conn, error = %e, "no DTLS session to send on");
                        }
                    }
                }
            }
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.core.poll_timeout(),
            self.dtls().and_then(dtls::Server::poll_timeout),
            self.saves.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn secure_events(&mut self, now: Instant) {
        if let Some(secure) = self.secure.as_mut() {
            self.authenticated |=
                secure.events(now, &mut self.core, &self.metrics, &mut self.events);
        }
    }

    /// Whether a DTLS record was decrypted and verified (or a handshake finished) since the
    /// last call: after one datagram, whether its sender proved it holds a session, which
    /// the cluster's routes trust and unauthenticated bytes must not move.
    pub fn take_authenticated(&mut self) -> bool {
        std::mem::take(&mut self.authenticated)
    }
}

impl Stack<ServerCore<Link>> {
    /// Another node of the cluster took `endpoint` over: its sessions here close (the device
    /// has a newer one there; a stale datagram through an old one must not take the device
    /// back) and the core forgets it. Returns whether the core held it.
    pub fn hand_over(&mut self, now: Instant, endpoint: &str) -> bool {
        self.clock = now;
        if let Some(s) = self.secure.as_mut() {
            s.close_sessions(&[endpoint.to_string()]);
        }
        self.secure_events(now);
        self.core.hand_over(now, endpoint)
    }
}
