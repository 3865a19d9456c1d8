//! Virtual-time tests of the client against a bare CoAP [`Endpoint`] playing the LwM2M
//! server, over a [`netsim::Net`] (time jumping from one deadline to the next, no sockets).
//!
//! Address 0 is the client, 1 the server. The server answers registration requests through
//! a replaceable `registrar` closure; tests send DM requests from the server endpoint and
//! read the answers and notifications it receives.
#![allow(clippy::unwrap_used)]

mod dm;
mod firmware;
mod observe;
mod props;
mod queue;
mod registration;

use super::{Client, ClientConfig, ClientEvent, ObjectStore};
use crate::coap::{
    msg, Endpoint, EndpointConfig, Event, IncomingRequest, Packet, RequestId, RequestOptions,
    RequestType, ResponseType,
};
use crate::content::{self, ContentFormat};
use crate::model::{Node, Path};
use crate::ops::dm::DownlinkRequest;
use netsim::{Datagram, Faults, Harness};
use std::time::{Duration, Instant};

pub(super) type Addr = u8;
pub(super) const CLIENT: Addr = 0;
pub(super) const SERVER: Addr = 1;

/// How the server answers what reaches `/rd` and `/dp`; `None` leaves it unanswered.
pub(super) type Registrar = Box<dyn FnMut(&Packet) -> Option<Packet>>;

/// A registration request the server received.
#[derive(Debug, Clone)]
pub(super) struct Seen {
    pub(super) at: Duration,
    pub(super) request: Packet,
}

pub(super) struct Net {
    /// The wire and the clock; `wire.down(SERVER, true)` takes the server off the network.
    pub(super) wire: netsim::Net<Addr>,
    pub(super) client: Client<Addr>,
    pub(super) server: Endpoint<Addr>,
    pub(super) registrar: Registrar,
    /// How the server answers what reaches `/fw/...` (firmware downloads), if it serves.
    pub(super) files: Option<Registrar>,
    /// Every client event, in order, with its time since start.
    pub(super) events: Vec<(Duration, ClientEvent)>,
    /// Registration and Send requests the server received.
    pub(super) seen: Vec<Seen>,
    /// Events of the server endpoint other than the requests the registrar answered.
    pub(super) server_events: Vec<(Duration, Event<Addr>)>,
}

/// A registrar that accepts everything: Register 2.01 at `/rd/<n>`, Update 2.04,
/// De-register 2.02, Send 2.04.
pub(super) fn accept_all() -> Registrar {
    let mut n = 0;
    Box::new(move |req: &Packet| {
        let path = msg::uri_path(req);
        Some(match (req.header.code, path.as_str()) {
            (crate::coap::MessageClass::Request(RequestType::Post), "/rd") => {
                n += 1;
                let mut r = msg::response(ResponseType::Created);
                r.add_option(crate::coap::CoapOption::LocationPath, b"rd".to_vec());
                r.add_option(
                    crate::coap::CoapOption::LocationPath,
                    format!("r{n}").into_bytes(),
                );
                r
            }
            (crate::coap::MessageClass::Request(RequestType::Delete), _) => {
                msg::response(ResponseType::Deleted)
            }
            _ => msg::response(ResponseType::Changed),
        })
    })
}

impl Net {
    pub(super) fn new(config: ClientConfig, store: ObjectStore) -> Self {
        Self {
            wire: netsim::Net::new(1).with_faults(Faults {
                latency: Duration::from_millis(50),
                ..Faults::default()
            }),
            client: Client::new(config, SERVER, store),
            server: Endpoint::new(EndpointConfig {
                rng_seed: 77,
                ..EndpointConfig::default()
            }),
            registrar: accept_all(),
            files: None,
            events: Vec::new(),
            seen: Vec::new(),
            server_events: Vec::new(),
        }
    }

    /// A standard device with jitter off.
    pub(super) fn standard() -> Self {
        Self::new(config(), ObjectStore::standard("dev-1"))
    }

    /// A started, registered standard device; events so far cleared.
    pub(super) fn registered() -> Self {
        Self::registered_with(config(), ObjectStore::standard("dev-1"))
    }

    pub(super) fn registered_with(config: ClientConfig, store: ObjectStore) -> Self {
        let mut net = Self::new(config, store);
        net.start_client();
        assert!(net.run_until(Duration::from_secs(5), |n| n.client.is_registered()));
        net.events.clear();
        net.seen.clear();
        net
    }

    pub(super) fn now(&self) -> Instant {
        self.wire.now()
    }

    pub(super) fn elapsed(&self) -> Duration {
        self.wire.elapsed()
    }

    /// Takes the server off the network (every datagram to or from it is lost) or back on.
    pub(super) fn server_down(&mut self, down: bool) {
        self.wire.down(SERVER, down);
    }

    /// Datagrams the client put on the wire (lost or not), with their time, oldest first.
    pub(super) fn client_tx(&self) -> Vec<(Duration, Packet)> {
        self.wire
            .sent()
            .iter()
            .filter(|s| s.from == CLIENT)
            .map(|s| {
                (
                    s.at - self.wire.start(),
                    Packet::from_bytes(&s.bytes).unwrap(),
                )
            })
            .collect()
    }

    pub(super) fn start_client(&mut self) {
        let now = self.now();
        self.client.start(now).unwrap();
        self.flush();
    }

    fn on_server_event(&mut self, ev: Event<Addr>) {
        if let Event::Request(IncomingRequest { id, request, .. }) = &ev {
            let path = msg::uri_path(request);
            if path.starts_with("/rd") || path == "/dp" {
                self.seen.push(Seen {
                    at: self.elapsed(),
                    request: request.clone(),
                });
                if let Some(resp) = (self.registrar)(request) {
                    let now = self.now();
                    self.server.respond(now, *id, resp).unwrap();
                }
                return;
            }
            if let (true, Some(files)) = (path.starts_with("/fw/"), self.files.as_mut()) {
                if let Some(resp) = files(request) {
                    let now = self.now();
                    self.server.respond(now, *id, resp).unwrap();
                }
                return;
            }
        }
        self.server_events.push((self.elapsed(), ev));
    }

    /// Sends a request from the server to the client.
    pub(super) fn send(&mut self, req: Packet) -> RequestId {
        let now = self.now();
        let id = self
            .server
            .send_request(now, CLIENT, req, RequestOptions::default())
            .unwrap();
        self.flush();
        id
    }

    /// The answer (or failure) the server got for `id`, if it came.
    pub(super) fn outcome(
        &self,
        id: RequestId,
    ) -> Option<Result<Packet, crate::coap::ExchangeError>> {
        self.server_events.iter().find_map(|(_, e)| match e {
            Event::Response {
                id: i, response, ..
            } if *i == id => Some(Ok(response.clone())),
            Event::Failed { id: i, error, .. } if *i == id => Some(Err(*error)),
            _ => None,
        })
    }

    /// Sends a request from the server and returns the client's answer.
    pub(super) fn ask(&mut self, req: Packet) -> Packet {
        let id = self.send(req);
        assert!(self.run_until(Duration::from_secs(10), |n| n.outcome(id).is_some()));
        self.outcome(id).unwrap().unwrap()
    }

    /// Sends a typed DM request (in `format`) and returns the raw answer.
    pub(super) fn dm(&mut self, req: &DownlinkRequest, format: ContentFormat) -> Packet {
        self.ask(req.to_coap(format).unwrap())
    }

    /// Notifications the server received, with their time, oldest first.
    pub(super) fn notifications(&self, id: RequestId) -> Vec<(Duration, Packet)> {
        self.server_events
            .iter()
            .filter_map(|(at, e)| match e {
                Event::Notification {
                    id: i, response, ..
                } if *i == id => Some((*at, response.clone())),
                _ => None,
            })
            .collect()
    }

    /// The client events matching `pick`, in order.
    pub(super) fn client_events<T>(
        &self,
        mut pick: impl FnMut(&ClientEvent) -> Option<T>,
    ) -> Vec<T> {
        self.events.iter().filter_map(|(_, e)| pick(e)).collect()
    }

    /// Registration requests the server received whose path is `path`, with their times.
    pub(super) fn seen_at(&self, path: &str) -> Vec<Duration> {
        self.seen
            .iter()
            .filter(|s| msg::uri_path(&s.request) == path)
            .map(|s| s.at)
            .collect()
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
        [self.client.poll_timeout(), self.server.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
    }

    fn deliver(&mut self, d: Datagram<Addr>) {
        let now = self.now();
        if d.to == CLIENT {
            self.client.handle_datagram(now, d.from, &d.bytes);
        } else {
            self.server.handle_datagram(now, d.from, &d.bytes);
        }
    }

    fn timeout(&mut self) {
        let now = self.now();
        if self.client.poll_timeout().is_some_and(|t| t <= now) {
            self.client.handle_timeout(now);
        }
        if self.server.poll_timeout().is_some_and(|t| t <= now) {
            self.server.handle_timeout(now);
        }
    }

    /// Moves every datagram onto the wire and every event where it belongs.
    fn flush(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(t) = self.client.poll_transmit() {
                progressed = true;
                self.wire.send(CLIENT, t.peer, t.payload);
            }
            while let Some(ev) = self.client.poll_event() {
                progressed = true;
                self.events.push((self.elapsed(), ev));
            }
            while let Some(t) = self.server.poll_transmit() {
                progressed = true;
                self.wire.send(SERVER, t.peer, t.payload);
            }
            while let Some(ev) = self.server.poll_event() {
                progressed = true;
                self.on_server_event(ev);
            }
            if !progressed {
                break;
            }
        }
    }
}

/// A client configuration without retry jitter.
pub(super) fn config() -> ClientConfig {
    let mut c = ClientConfig::new("dev-1");
    c.retry_jitter = 0.0;
    c
}

/// The code of a response as "2.05".
pub(super) fn code(p: &Packet) -> String {
    msg::code_string(p)
}

/// A request for `path` with an optional Accept.
pub(super) fn request(method: RequestType, path: &str, accept: Option<ContentFormat>) -> Packet {
    let mut p = msg::request(method, path);
    if let Some(f) = accept {
        msg::set_uint_option(&mut p, crate::coap::CoapOption::Accept, u32::from(f.code()));
    }
    p
}

/// A request with a payload in `format`.
pub(super) fn with_payload(mut p: Packet, format: ContentFormat, payload: &[u8]) -> Packet {
    msg::set_uint_option(
        &mut p,
        crate::coap::CoapOption::ContentFormat,
        u32::from(format.code()),
    );
    p.payload = payload.to_vec();
    p
}

/// The Content-Format of a response.
pub(super) fn format_of(p: &Packet) -> Option<ContentFormat> {
    msg::uint_option(p, crate::coap::CoapOption::ContentFormat)
        .and_then(|c| u16::try_from(c).ok())
        .and_then(ContentFormat::from_code)
}

/// Decodes a single value answer.
pub(super) fn decode_at(p: &Packet, path: &str) -> Node {
    content::decode(
        format_of(p).unwrap(),
        &Path::parse(path).unwrap(),
        &p.payload,
        &*super::bundled_registry(),
    )
    .unwrap()
}
