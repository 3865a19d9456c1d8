//! The bootstrap server's driver (OMA LwM2M TS 1.2 Core §6.1, Transport §6.1): one CoAP
//! [`Endpoint`] for every device, the table of sequences in progress, their deadlines, and
//! who each DTLS peer is.
//!
//! - **Inputs**: [`handle_datagram`](BootstrapCore::handle_datagram),
//!   [`handle_timeout`](BootstrapCore::handle_timeout), and what the embedding server knows
//!   of peers: [`peer_authenticated`](BootstrapCore::peer_authenticated),
//!   [`peer_closed`](BootstrapCore::peer_closed), [`revoke`](BootstrapCore::revoke).
//! - **Outputs**, after each input: [`poll_transmit`](BootstrapCore::poll_transmit),
//!   [`poll_event`](BootstrapCore::poll_event), then
//!   [`poll_timeout`](BootstrapCore::poll_timeout).
//!
//! The device's requests (`/bs`, `/bspack`) are read in `incoming`; the steps of a sequence
//! are [`Sequence`]'s. Each sequence has at most one request in flight, so the tables of
//! requests, peers and deadlines are bounded by [`BootstrapConfig::max_sequences`] too.
mod incoming;
mod principals;

use crate::account::Accounts;
use crate::event::{Event, Failure, Step};
use crate::sequence::Sequence;
use lwm2m::coap::{
    self, Endpoint, EndpointConfig, ExchangeError, Peer, RequestId, RequestOptions, Transmit,
};
use lwm2m::model::Registry;
use lwm2m::ops::bootstrap::BootstrapOp;
use principals::Principals;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The bootstrap core's settings.
#[derive(Debug, Clone)]
pub struct BootstrapConfig {
    /// The CoAP endpoint's (retransmission, limits).
    pub coap: EndpointConfig,
    /// Sequences in progress at once; a Bootstrap-Request beyond it is answered 5.03. Plain
    /// CoAP peers (no DTLS) hold at most half of them, so that forged requests cannot keep
    /// devices with factory credentials out.
    pub max_sequences: usize,
    /// How long one sequence may take from Bootstrap-Request to Finish.
    pub sequence_timeout: Duration,
    /// Answer Bootstrap-Pack-Request (1.2).
    pub serve_pack: bool,
    /// Read the Server instance back from a 1.1+ device after writing it (Bootstrap-Read),
    /// and fail the sequence if the Short Server ID or Lifetime differ: a device that
    /// silently dropped the Write is caught before Finish.
    pub verify_server_write: bool,
    /// Authenticated peers remembered at once (at least 1); at the bound the peer that
    /// authenticated longest ago is forgotten, and is then treated as unauthenticated.
    /// Keep it above the DTLS sessions the server holds.
    pub max_peers: usize,
}

impl Default for BootstrapConfig {
    fn default() -> Self {
        let max_sequences = 10_000;
        Self {
            coap: EndpointConfig::default(),
            max_sequences,
            sequence_timeout: Duration::from_secs(300),
            serve_pack: true,
            verify_server_write: true,
            max_peers: max_sequences * 4,
        }
    }
}

/// How much state the core holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BootstrapUsage {
    /// Sequences in progress.
    pub sequences: usize,
    /// Authenticated peers known.
    pub peers: usize,
}

/// A sequence in progress and where it stands on the wire.
#[derive(Debug)]
struct Running<P> {
    seq: Sequence,
    peer: P,
    /// When it fails with `Timeout` if not finished.
    deadline: Instant,
    /// Its request awaiting the device's answer.
    request: Option<RequestId>,
    /// Every Write is done and [`Event::Finishing`] went out: Finish waits for the
    /// embedder's [`approve_finish`](BootstrapCore::approve_finish).
    awaiting_approval: bool,
    /// The peer came over DTLS (counted apart from plain CoAP peers).
    authenticated: bool,
}

/// The bootstrap server's core over peers of type `P`.
pub struct BootstrapCore<P: Peer> {
    config: BootstrapConfig,
    accounts: Box<dyn Accounts + Send>,
    coap: Endpoint<P>,
    /// Types the values a device reads back (Bootstrap-Read answers in TLV carry none).
    schema: Registry,
    events: VecDeque<Event<P>>,
    principals: Principals<P>,
    /// Sequences by an id of their own, so that a request of a sequence that ended is never
    /// mistaken for one of its successor on the same device.
    sequences: HashMap<u64, Running<P>>,
    by_endpoint: HashMap<String, u64>,
    by_peer: HashMap<P, u64>,
    by_request: HashMap<RequestId, u64>,
    deadlines: BTreeSet<(Instant, u64)>,
    next_sequence: u64,
    /// Sequences of plain CoAP peers: their address is unproven, so a forger could hold
    /// every slot with requests nobody answers; they get at most half of them.
    unauthenticated: usize,
    /// The latest `now` given, for the inputs that come without one ([`peer_closed`]).
    ///
    /// [`peer_closed`]: Self::peer_closed
    last_now: Option<Instant>,
}

impl<P: Peer> BootstrapCore<P> {
    /// A core that asks `accounts` what each device gets.
    pub fn new(config: BootstrapConfig, accounts: Box<dyn Accounts + Send>) -> Self {
        Self {
            coap: Endpoint::new(config.coap.clone()),
            schema: Registry::bundled(),
            principals: Principals::new(config.max_peers),
            accounts,
            events: VecDeque::new(),
            sequences: HashMap::new(),
            by_endpoint: HashMap::new(),
            by_peer: HashMap::new(),
            by_request: HashMap::new(),
            deadlines: BTreeSet::new(),
            next_sequence: 0,
            unauthenticated: 0,
            last_now: None,
            config,
        }
    }

    /// One datagram (decrypted, for a DTLS peer) from `peer`.
    pub fn handle_datagram(&mut self, now: Instant, peer: P, data: &[u8]) {
        self.last_now = Some(now);
        self.coap.handle_datagram(now, peer, data);
        self.process(now);
    }

    /// The deadline from [`poll_timeout`](Self::poll_timeout) passed (early calls are fine).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.last_now = Some(now);
        self.coap.handle_timeout(now);
        self.process(now);
        while let Some(&(deadline, id)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            // Removed here too, so an entry without its sequence cannot stall the loop.
            self.deadlines.remove(&(deadline, id));
            self.fail(now, id, None, Failure::Timeout);
        }
        self.process(now);
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let sequence = self.deadlines.first().map(|(t, _)| *t);
        [self.coap.poll_timeout(), sequence]
            .into_iter()
            .flatten()
            .min()
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit<P>> {
        self.coap.poll_transmit()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event<P>> {
        self.events.pop_front()
    }

    /// `peer` completed a DTLS handshake with a credential bound to `principal` (an
    /// endpoint name): only that endpoint may bootstrap through it.
    pub fn peer_authenticated(&mut self, peer: P, principal: Arc<str>) {
        self.principals.insert(peer, principal);
    }

    /// `peer`'s session ended: its sequence, if any, fails ([`Failure::Gone`](crate::Failure)).
    pub fn peer_closed(&mut self, peer: P) {
        self.principals.remove(&peer);
        if let (Some(&id), Some(now)) = (self.by_peer.get(&peer), self.last_now) {
            self.fail(now, id, None, Failure::Gone);
            self.process(now);
        }
    }

    /// `endpoint`'s bootstrap credential was revoked: its sequence, if any, ends now.
    pub fn revoke(&mut self, now: Instant, endpoint: &str) {
        self.last_now = Some(now);
        if let Some(&id) = self.by_endpoint.get(endpoint) {
            self.fail(now, id, None, Failure::Refused("credential revoked".into()));
            self.process(now);
        }
    }

    /// The embedder is ready for `endpoint` (at `peer`) to use the account of its
    /// [`Event::Finishing`]: Finish is sent now. Ignored unless that sequence awaits it.
    pub fn approve_finish(&mut self, now: Instant, endpoint: &str, peer: P) {
        self.last_now = Some(now);
        let Some(id) = self.awaiting(endpoint, peer) else {
            return;
        };
        self.send(now, id, BootstrapOp::Finish);
        self.process(now);
    }

    /// The embedder cannot take the account of `endpoint`'s [`Event::Finishing`] (it could
    /// not install its credential): the sequence fails at Finish, which is never sent, so
    /// the device keeps asking instead of using an account the LwM2M server would refuse.
    pub fn refuse_finish(&mut self, now: Instant, endpoint: &str, peer: P, reason: String) {
        self.last_now = Some(now);
        if let Some(id) = self.awaiting(endpoint, peer) {
            self.fail(now, id, Some(Step::Finish), Failure::Refused(reason));
            self.process(now);
        }
    }

    /// The sequence of `endpoint` at `peer` waiting for Finish to be approved.
    fn awaiting(&self, endpoint: &str, peer: P) -> Option<u64> {
        let id = *self.by_endpoint.get(endpoint)?;
        let run = self.sequences.get(&id)?;
        (run.peer == peer && run.awaiting_approval && run.request.is_none()).then_some(id)
    }

    /// The state held now.
    pub fn usage(&self) -> BootstrapUsage {
        BootstrapUsage {
            sequences: self.sequences.len(),
            peers: self.principals.len(),
        }
    }

    /// The CoAP endpoint's counters and table sizes.
    pub fn coap(&self) -> &Endpoint<P> {
        &self.coap
    }

    /// Routes what the CoAP endpoint produced.
    fn process(&mut self, now: Instant) {
        while let Some(ev) = self.coap.poll_event() {
            match ev {
                coap::Event::Request(req) => self.on_request(now, req),
                coap::Event::Response { id, response, .. } => self.on_answer(now, id, Ok(response)),
                coap::Event::Failed { id, error, .. } => self.on_answer(now, id, Err(error)),
                // The bootstrap server pings nobody and serves no observers.
                coap::Event::Notification { .. }
                | coap::Event::Pong { .. }
                | coap::Event::ObserverGone { .. } => {}
            }
        }
    }

    /// The device answered a step, or the exchange ended without an answer. Answers to
    /// requests of sequences that ended are not found here and are ignored.
    fn on_answer(
        &mut self,
        now: Instant,
        id: RequestId,
        answer: Result<coap::Packet, ExchangeError>,
    ) {
        let Some(seq_id) = self.by_request.remove(&id) else {
            return;
        };
        let Some(run) = self.sequences.get_mut(&seq_id) else {
            return;
        };
        run.request = None;
        let step = run.seq.step();
        let next = match answer {
            Ok(response) => run.seq.on_response(&response, &self.schema),
            Err(error) => Err(exchange_failure(error)),
        };
        match next {
            Ok(Some(op)) => self.send(now, seq_id, op),
            Ok(None) => self.finish(now, seq_id),
            Err(failure) => self.fail(now, seq_id, Some(step), failure),
        }
    }

    /// Sends the next operation of a sequence.
    fn send(&mut self, now: Instant, seq_id: u64, op: BootstrapOp) {
        let Some(run) = self.sequences.get_mut(&seq_id) else {
            return;
        };
        tracing::debug!(endpoint = %run.seq.endpoint, peer = ?run.peer, step = %run.seq.step(), "bootstrap step");
        if op == BootstrapOp::Finish && !run.awaiting_approval {
            // The device uses the account the moment it accepts Finish: the embedder must
            // be ready for that first, and may refuse.
            run.awaiting_approval = true;
            self.events.push_back(Event::Finishing {
                endpoint: run.seq.endpoint.clone(),
                peer: run.peer,
                account: run.seq.account.clone(),
            });
            return;
        }
        match self
            .coap
            .send_request(now, run.peer, op.to_coap(), RequestOptions::default())
        {
            Ok(request) => {
                run.request = Some(request);
                self.by_request.insert(request, seq_id);
            }
            Err(e) => self.fail(
                now,
                seq_id,
                None,
                Failure::Refused(format!("the request could not be sent: {e}")),
            ),
        }
    }

    /// Starts a sequence the device's Bootstrap-Request was accepted for: its first step.
    fn begin(&mut self, now: Instant, seq_id: u64) {
        let op = match self.sequences.get(&seq_id).map(|r| r.seq.op()) {
            Some(Ok(op)) => op,
            Some(Err(failure)) => return self.fail(now, seq_id, None, failure),
            None => return,
        };
        self.send(now, seq_id, op);
    }

    /// Takes in a new sequence; any sequence of the same peer or endpoint must have ended.
    fn insert(&mut self, now: Instant, peer: P, seq: Sequence) -> u64 {
        self.next_sequence += 1;
        let id = self.next_sequence;
        let deadline = lwm2m::time::deadline(now, self.config.sequence_timeout);
        self.by_endpoint.insert(seq.endpoint.clone(), id);
        self.by_peer.insert(peer, id);
        self.deadlines.insert((deadline, id));
        let authenticated = self.principals.get(&peer).is_some();
        if !authenticated {
            self.unauthenticated += 1;
        }
        self.sequences.insert(
            id,
            Running {
                seq,
                peer,
                deadline,
                request: None,
                awaiting_approval: false,
                authenticated,
            },
        );
        id
    }

    /// Removes a sequence from every table; its request in flight, if any, is cancelled so
    /// nothing more goes to the device for it.
    fn remove(&mut self, now: Instant, id: u64) -> Option<Running<P>> {
        let run = self.sequences.remove(&id)?;
        if !run.authenticated {
            self.unauthenticated = self.unauthenticated.saturating_sub(1);
        }
        if self.by_endpoint.get(&run.seq.endpoint) == Some(&id) {
            self.by_endpoint.remove(&run.seq.endpoint);
        }
        if self.by_peer.get(&run.peer) == Some(&id) {
            self.by_peer.remove(&run.peer);
        }
        self.deadlines.remove(&(run.deadline, id));
        if let Some(request) = run.request {
            self.by_request.remove(&request);
            // Unknown only if it already ended, which is what cancelling is for.
            let _ = self.coap.cancel(now, request);
        }
        Some(run)
    }

    /// The device accepted Finish: it holds the account now.
    fn finish(&mut self, now: Instant, id: u64) {
        let Some(run) = self.remove(now, id) else {
            return;
        };
        tracing::info!(endpoint = %run.seq.endpoint, peer = ?run.peer, "bootstrap finished");
        let version = run.seq.version().map(str::to_owned);
        let format = run.seq.format();
        self.events.push_back(Event::Finished {
            endpoint: run.seq.endpoint,
            peer: run.peer,
            account: run.seq.account,
            version,
            format,
        });
    }

    /// Ends a sequence with `failure` at `step` (by default the step in progress).
    fn fail(&mut self, now: Instant, id: u64, step: Option<Step>, failure: Failure) {
        let Some(run) = self.remove(now, id) else {
            return;
        };
        let step = step.unwrap_or_else(|| run.seq.step());
        tracing::info!(endpoint = %run.seq.endpoint, peer = ?run.peer, %step, %failure, "bootstrap failed");
        self.events.push_back(Event::Failed {
            endpoint: run.seq.endpoint,
            peer: run.peer,
            step,
            failure,
        });
    }
}

/// Why a step failed when the exchange ended without the device's answer.
fn exchange_failure(error: ExchangeError) -> Failure {
    match error {
        ExchangeError::Timeout => Failure::Timeout,
        // The device no longer knows the exchange: it restarted, or its session did.
        ExchangeError::Reset => Failure::Gone,
        other => Failure::Malformed(other.to_string()),
    }
}
