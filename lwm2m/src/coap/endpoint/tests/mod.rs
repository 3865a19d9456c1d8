//! Virtual-time simulation of endpoints over a lossy network (the quinn `Pair` pattern).
//!
//! Nodes are endpoints at small integer addresses. Datagrams travel through a simulated
//! network that can drop, duplicate and delay (and so reorder) them; time jumps from one
//! deadline to the next, so minutes of retransmission run in microseconds and every run is
//! reproducible from its seed.
mod block;
mod dedup;
mod observe;
mod props;
mod retransmit;

use super::Endpoint;
use crate::coap::event::{Event, IncomingRequest, RequestId, RequestOptions};
use crate::coap::{msg, EndpointConfig};
use coap_lite::{Packet, RequestType, ResponseType};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::{Duration, Instant};

pub(super) type Addr = u8;

/// What a node does with the requests it receives.
pub(super) type Responder = Box<dyn FnMut(&IncomingRequest<Addr>) -> Option<Packet>>;

pub(super) struct Node {
    pub(super) ep: Endpoint<Addr>,
    /// Events not consumed by the responder, oldest first.
    pub(super) events: VecDeque<Event<Addr>>,
    pub(super) responder: Option<Responder>,
    /// Observers created by the responder's answers, oldest first.
    pub(super) observers: Vec<crate::coap::ObserverId>,
}

/// A datagram as it left a node, before the network had its way with it.
#[derive(Debug, Clone)]
pub(super) struct Sent {
    pub(super) at: Instant,
    pub(super) from: Addr,
    /// Kept for debugging failed scenarios.
    #[allow(dead_code)]
    pub(super) to: Addr,
    pub(super) bytes: Vec<u8>,
}

/// A datagram on the wire: (delivery time, sequence for a stable order, from, to, bytes).
type InFlight = (Instant, u64, Addr, Addr, Vec<u8>);

pub(super) struct Net {
    pub(super) start: Instant,
    pub(super) now: Instant,
    pub(super) nodes: Vec<Node>,
    /// In flight, earliest delivery first.
    wire: BinaryHeap<Reverse<InFlight>>,
    seq: u64,
    pub(super) loss: f64,
    pub(super) duplicate: f64,
    pub(super) latency: Duration,
    /// Extra random delay up to this, which reorders datagrams.
    pub(super) jitter: Duration,
    rng: StdRng,
    pub(super) sent: Vec<Sent>,
}

impl Net {
    /// `n` nodes with the same config (each seeded differently).
    pub(super) fn new(n: usize, config: EndpointConfig, seed: u64) -> Self {
        let start = Instant::now();
        let nodes = (0..n)
            .map(|i| Node {
                ep: Endpoint::new(EndpointConfig {
                    rng_seed: seed ^ ((i as u64 + 1) * 0x9e37_79b9),
                    ..config.clone()
                }),
                events: VecDeque::new(),
                responder: None,
                observers: Vec::new(),
            })
            .collect();
        Self {
            start,
            now: start,
            nodes,
            wire: BinaryHeap::new(),
            seq: 0,
            loss: 0.0,
            duplicate: 0.0,
            latency: Duration::from_millis(10),
            jitter: Duration::ZERO,
            rng: StdRng::seed_from_u64(seed),
            sent: Vec::new(),
        }
    }

    /// A pair: node 0 is the client, node 1 the server answering with `responder`.
    pub(super) fn pair(config: EndpointConfig, seed: u64, responder: Responder) -> Self {
        let mut net = Self::new(2, config, seed);
        net.nodes[1].responder = Some(responder);
        net
    }

    pub(super) fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    pub(super) fn ep(&mut self, addr: Addr) -> &mut Endpoint<Addr> {
        &mut self.nodes[usize::from(addr)].ep
    }

    /// Sends a request from `from` to `to` and flushes what that produced.
    pub(super) fn request(
        &mut self,
        from: Addr,
        to: Addr,
        req: Packet,
        opts: RequestOptions,
    ) -> RequestId {
        let now = self.now;
        let id = self
            .ep(from)
            .send_request(now, to, req, opts)
            .expect("request accepted");
        self.flush();
        id
    }

    /// Injects raw bytes into `to` as if sent by `from`, bypassing the network.
    pub(super) fn inject(&mut self, from: Addr, to: Addr, bytes: &[u8]) {
        let now = self.now;
        self.ep(to).handle_datagram(now, from, bytes);
        self.flush();
    }

    /// Moves every transmit onto the wire and every event to its node (or its responder).
    pub(super) fn flush(&mut self) {
        loop {
            let mut progressed = false;
            for i in 0..self.nodes.len() {
                while let Some(t) = self.nodes[i].ep.poll_transmit() {
                    progressed = true;
                    self.put_on_wire(i as Addr, t.peer, t.payload);
                }
                while let Some(ev) = self.nodes[i].ep.poll_event() {
                    progressed = true;
                    let node = &mut self.nodes[i];
                    if let (Event::Request(req), Some(responder)) = (&ev, node.responder.as_mut()) {
                        if let Some(resp) = responder(req) {
                            let now = self.now;
                            if let Some(o) = node.ep.respond(now, req.id, resp).expect("respond") {
                                node.observers.push(o);
                            }
                        }
                    }
                    node.events.push_back(ev);
                }
            }
            if !progressed {
                break;
            }
        }
    }

    fn put_on_wire(&mut self, from: Addr, to: Addr, bytes: Vec<u8>) {
        self.sent.push(Sent {
            at: self.now,
            from,
            to,
            bytes: bytes.clone(),
        });
        if usize::from(to) >= self.nodes.len() {
            return; // nobody there
        }
        let copies = if self.rng.random_bool(self.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            if self.rng.random_bool(self.loss) {
                continue;
            }
            let jitter = if self.jitter.is_zero() {
                Duration::ZERO
            } else {
                self.jitter.mul_f64(self.rng.random::<f64>())
            };
            self.seq += 1;
            self.wire.push(Reverse((
                self.now + self.latency + jitter,
                self.seq,
                from,
                to,
                bytes.clone(),
            )));
        }
    }

    /// The next moment something happens.
    fn next_time(&self) -> Option<Instant> {
        let wire = self.wire.peek().map(|Reverse((t, ..))| *t);
        self.nodes
            .iter()
            .filter_map(|n| n.ep.poll_timeout())
            .chain(wire)
            .min()
    }

    /// Advances to the next moment something happens and processes it. False when idle.
    pub(super) fn step(&mut self) -> bool {
        let Some(t) = self.next_time() else {
            return false;
        };
        self.now = self.now.max(t);
        let now = self.now;
        while self.wire.peek().is_some_and(|Reverse((t, ..))| *t <= now) {
            let Some(Reverse((_, _, from, to, bytes))) = self.wire.pop() else {
                break;
            };
            self.nodes[usize::from(to)]
                .ep
                .handle_datagram(now, from, &bytes);
            self.flush();
        }
        for i in 0..self.nodes.len() {
            if self.nodes[i].ep.poll_timeout().is_some_and(|d| d <= now) {
                self.nodes[i].ep.handle_timeout(now);
            }
        }
        self.flush();
        true
    }

    /// Steps until `done` holds or `limit` of virtual time has passed. Returns `done`.
    pub(super) fn run_until(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&mut Net) -> bool,
    ) -> bool {
        let end = self.now + limit;
        loop {
            if done(self) {
                return true;
            }
            match self.next_time() {
                Some(t) if t <= end => {
                    self.step();
                }
                _ => {
                    self.now = self.now.max(end);
                    return done(self);
                }
            }
        }
    }

    /// Steps until nothing is left to do (all records expired), at most `limit`.
    pub(super) fn run_idle(&mut self, limit: Duration) {
        let end = self.now + limit;
        while self.next_time().is_some_and(|t| t <= end) {
            self.step();
        }
    }

    /// Removes and returns the events of `addr` that `pick` selects.
    pub(super) fn take_events<T>(
        &mut self,
        addr: Addr,
        mut pick: impl FnMut(&Event<Addr>) -> Option<T>,
    ) -> Vec<T> {
        let node = &mut self.nodes[usize::from(addr)];
        let mut out = Vec::new();
        node.events.retain(|e| match pick(e) {
            Some(t) => {
                out.push(t);
                false
            }
            None => true,
        });
        out
    }

    /// The final response or failure for `id` at the client `addr`, if it has come.
    pub(super) fn outcome(
        &self,
        addr: Addr,
        id: RequestId,
    ) -> Option<Result<Packet, crate::coap::ExchangeError>> {
        self.nodes[usize::from(addr)]
            .events
            .iter()
            .find_map(|e| match e {
                Event::Response {
                    id: i, response, ..
                } if *i == id => Some(Ok(response.clone())),
                Event::Failed { id: i, error, .. } if *i == id => Some(Err(*error)),
                _ => None,
            })
    }
}

/// A GET for `path`.
pub(super) fn get(path: &str) -> Packet {
    msg::request(RequestType::Get, path)
}

/// A 2.05 Content response with `payload`.
pub(super) fn content(payload: &[u8]) -> Packet {
    let mut p = msg::response(ResponseType::Content);
    p.payload = payload.to_vec();
    p
}

/// Deterministic, non-repeating test body of `len` bytes.
pub(super) fn body(len: usize) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(len as u64);
    (0..len).map(|_| rng.random()).collect()
}

/// An Observe registration (GET with Observe=0) for `path`.
pub(super) fn observe(path: &str) -> Packet {
    let mut p = get(path);
    msg::set_uint_option(&mut p, coap_lite::CoapOption::Observe, 0);
    p
}

/// Parses a datagram the simulation captured.
pub(super) fn parse(bytes: &[u8]) -> Packet {
    Packet::from_bytes(bytes).expect("valid CoAP")
}
