//! Virtual-time simulation of endpoints over a lossy network (the quinn `Pair` pattern).
//!
//! Nodes are endpoints at small integer addresses on a [`netsim::Net`], which can drop,
//! duplicate and delay (and so reorder) datagrams; time jumps from one deadline to the next,
//! so minutes of retransmission run in microseconds and every run is reproducible from its
//! seed. This module only connects the endpoints to it.
mod block;
mod dedup;
mod observe;
mod props;
mod push;
mod retransmit;

use super::Endpoint;
use crate::coap::event::{Event, IncomingRequest, RequestId, RequestOptions};
use crate::coap::{msg, EndpointConfig};
use coap_lite::{Packet, RequestType, ResponseType};
use netsim::{Datagram, Harness};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::VecDeque;
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

pub(super) struct Net {
    /// The wire, the clock and the faults; tests set `wire.faults` and read `wire.sent()`.
    pub(super) wire: netsim::Net<Addr>,
    pub(super) nodes: Vec<Node>,
}

impl Net {
    /// `n` nodes with the same config (each seeded differently).
    pub(super) fn new(n: usize, config: EndpointConfig, seed: u64) -> Self {
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
            wire: netsim::Net::new(seed),
            nodes,
        }
    }

    /// A pair: node 0 is the client, node 1 the server answering with `responder`.
    pub(super) fn pair(config: EndpointConfig, seed: u64, responder: Responder) -> Self {
        let mut net = Self::new(2, config, seed);
        net.nodes[1].responder = Some(responder);
        net
    }

    pub(super) fn now(&self) -> Instant {
        self.wire.now()
    }

    pub(super) fn elapsed(&self) -> Duration {
        self.wire.elapsed()
    }

    /// Every datagram the nodes sent, oldest first.
    pub(super) fn sent(&self) -> &[netsim::Sent<Addr>] {
        self.wire.sent()
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
        let now = self.now();
        let id = self
            .ep(from)
            .send_request(now, to, req, opts)
            .expect("request accepted");
        self.flush();
        id
    }

    /// Injects raw bytes into `to` as if sent by `from`, bypassing the network.
    pub(super) fn inject(&mut self, from: Addr, to: Addr, bytes: &[u8]) {
        let now = self.now();
        self.ep(to).handle_datagram(now, from, bytes);
        self.flush();
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

impl Harness for Net {
    type Addr = Addr;

    fn net(&self) -> &netsim::Net<Addr> {
        &self.wire
    }

    fn net_mut(&mut self) -> &mut netsim::Net<Addr> {
        &mut self.wire
    }

    fn next_timer(&self) -> Option<Instant> {
        self.nodes.iter().filter_map(|n| n.ep.poll_timeout()).min()
    }

    fn deliver(&mut self, d: Datagram<Addr>) {
        let now = self.now();
        // A datagram to an address where no node is: nobody there.
        if let Some(node) = self.nodes.get_mut(usize::from(d.to)) {
            node.ep.handle_datagram(now, d.from, &d.bytes);
        }
    }

    fn timeout(&mut self) {
        let now = self.now();
        for node in &mut self.nodes {
            if node.ep.poll_timeout().is_some_and(|t| t <= now) {
                node.ep.handle_timeout(now);
            }
        }
    }

    /// Moves every transmit onto the wire and every event to its node (or its responder).
    fn flush(&mut self) {
        loop {
            let mut progressed = false;
            for i in 0..self.nodes.len() {
                while let Some(t) = self.nodes[i].ep.poll_transmit() {
                    progressed = true;
                    self.wire.send(i as Addr, t.peer, t.payload);
                }
                while let Some(ev) = self.nodes[i].ep.poll_event() {
                    progressed = true;
                    let node = &mut self.nodes[i];
                    if let (Event::Request(req), Some(responder)) = (&ev, node.responder.as_mut()) {
                        if let Some(resp) = responder(req) {
                            let now = self.wire.now();
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
