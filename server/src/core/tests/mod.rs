//! Virtual-time tests of the server core against scripted CoAP devices on a [`netsim::Net`]:
//! no sockets, no sleeps; hours of lifetimes and sleep cycles run in milliseconds.
use super::types::*;
use super::*;
use crate::store::Table;
use lwm2m::coap::{
    msg, CoapOption, Endpoint, EndpointConfig, Event, IncomingRequest, MessageClass, Packet,
    RequestOptions, ResponseType,
};
use lwm2m::content::link::parse_registration_links;
use lwm2m::content::ContentFormat;
use lwm2m::model::{Node, Path, Resource, Value};
use lwm2m::ops::dm::{DmResponse, DownlinkRequest};
use lwm2m::ops::registration::{Register, Update};
use netsim::{Datagram, Faults, Harness};
use std::collections::BTreeMap;

const SERVER: u8 = 0;

/// How a scripted device answers a request; `None` leaves it unanswered.
type Answer = Box<dyn FnMut(u8, &IncomingRequest<u8>) -> Option<Packet>>;

/// The server core, devices as bare CoAP endpoints, and a loss-free network between them.
struct World {
    /// The wire, without latency: a datagram arrives in the instant it is sent. A device that
    /// sleeps is down (`net.down(addr, true)`): datagrams to and from it are lost, and
    /// `net.sent()` still shows whether the server tried.
    net: netsim::Net<u8>,
    core: ServerCore<u8>,
    devices: BTreeMap<u8, Endpoint<u8>>,
    /// What each device answers to a request; `None` leaves it unanswered.
    answer: Answer,
    /// Events of the server core.
    events: Vec<DeviceEvent>,
    /// Events of each device's endpoint (responses to its Register etc).
    device_events: Vec<(u8, Event<u8>)>,
    /// The store as the shell would have written it.
    store: BTreeMap<(Table, Vec<u8>), Vec<u8>>,
    /// Observers the devices' endpoints created, per device, newest last.
    observers: Vec<(u8, lwm2m::coap::ObserverId)>,
}

fn tlv_content(path: &Path, value: Value) -> Packet {
    let mut p = msg::response(ResponseType::Content);
    p.payload = lwm2m::content::encode(
        ContentFormat::Tlv,
        path,
        &Node::Resource(Resource::Single(value)),
    )
    .unwrap();
    msg::set_uint_option(&mut p, CoapOption::ContentFormat, 11542);
    p
}

/// What a device answers to a read of `path`: a value of the type the object model gives it.
fn typed_answer(path: &str) -> Packet {
    let path = Path::parse(path).unwrap_or(Path::ROOT);
    let kind = Registry::bundled().resource(&path).map(|r| r.kind);
    let value = match kind {
        Some(lwm2m::model::ResourceType::Float) => Value::Float(21.5),
        Some(lwm2m::model::ResourceType::Integer) => Value::Integer(42),
        Some(lwm2m::model::ResourceType::Time) => Value::Time(1_700_000_000),
        _ => Value::String(format!("value of {path}")),
    };
    tlv_content(&path, value)
}

impl World {
    fn new() -> Self {
        let net = netsim::Net::new(7).with_faults(Faults {
            latency: Duration::ZERO,
            ..Faults::default()
        });
        let now = net.now();
        let config = CoreConfig {
            rng_seed: 7,
            ..CoreConfig::default()
        };
        let core = ServerCore::new(
            config,
            Arc::new(Registry::bundled()),
            (
                now,
                SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            ),
        );
        Self {
            net,
            core,
            devices: BTreeMap::new(),
            answer: Box::new(|_, req| Some(typed_answer(&msg::uri_path(&req.request)))),
            events: Vec::new(),
            device_events: Vec::new(),
            store: BTreeMap::new(),
            observers: Vec::new(),
        }
    }

    fn now(&self) -> Instant {
        self.net.now()
    }

    /// Takes a device's radio off (it sleeps) or back on.
    fn sleep(&mut self, addr: u8, asleep: bool) {
        self.net.down(addr, asleep);
    }

    /// Datagrams the server sent to `addr` (delivered or lost) from the `since`th sent on.
    fn sent_to(&self, addr: u8, since: usize) -> usize {
        self.net
            .sent()
            .iter()
            .skip(since)
            .filter(|s| s.from == SERVER && s.to == addr)
            .count()
    }

    fn device(&mut self, addr: u8) -> &mut Endpoint<u8> {
        self.devices.entry(addr).or_insert_with(|| {
            Endpoint::new(EndpointConfig {
                rng_seed: u64::from(addr),
                ..EndpointConfig::default()
            })
        })
    }

    /// Advances virtual time by `d`, running every deadline on the way.
    fn advance(&mut self, d: Duration) {
        self.flush();
        self.run_for(d);
        self.flush();
    }

    fn send_from(&mut self, addr: u8, packet: Packet) -> lwm2m::coap::RequestId {
        let now = self.now();
        let id = self
            .device(addr)
            .send_request(now, SERVER, packet, RequestOptions::default())
            .unwrap();
        self.flush();
        id
    }

    /// The device's response to its request `id`.
    fn reply(&self, addr: u8, id: lwm2m::coap::RequestId) -> Option<Packet> {
        self.device_events.iter().find_map(|(a, e)| match e {
            Event::Response {
                id: i, response, ..
            } if *a == addr && *i == id => Some(response.clone()),
            _ => None,
        })
    }

    fn register(&mut self, addr: u8, name: &str, lifetime: u32, queue: bool) -> String {
        let mut r = Register::new(
            name,
            parse_registration_links(b"</>;rt=\"oma.lwm2m\";ct=11542,</1/0>,</3/0>,</3303/0>")
                .unwrap(),
        );
        r.lifetime = lifetime;
        r.queue_mode = queue;
        let id = self.send_from(addr, r.to_coap());
        let resp = self.reply(addr, id).expect("register answered");
        assert_eq!(
            resp.header.code,
            MessageClass::Response(ResponseType::Created)
        );
        msg::location_path(&resp)
    }

    /// Registers `name` at `addr` in queue mode, lets the server's awake window pass and
    /// turns the device's radio off. Returns its location and how many datagrams had been
    /// sent by then (for [`sent_to`](Self::sent_to)).
    fn register_and_sleep(&mut self, addr: u8, name: &str, lifetime: u32) -> (String, usize) {
        let loc = self.register(addr, name, lifetime, true);
        self.advance(self.core.config.awake_window + Duration::from_secs(1));
        self.sleep(addr, true);
        (loc, self.net.sent().len())
    }

    fn results(&self) -> Vec<(CommandId, Outcome)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                DeviceEvent::CommandResult { id, outcome, .. } => Some((*id, outcome.clone())),
                _ => None,
            })
            .collect()
    }

    fn submit(&mut self, endpoint: &str, request: DownlinkRequest) -> CommandId {
        let now = self.now();
        let id = self.core.submit(now, Command::new(endpoint, request));
        self.flush();
        id
    }

    /// Submits a command that may wait for a sleeping device at most `ttl`.
    fn submit_ttl(&mut self, endpoint: &str, request: DownlinkRequest, ttl: Duration) -> CommandId {
        let now = self.now();
        let command = Command {
            ttl: Some(ttl),
            ..Command::new(endpoint, request)
        };
        let id = self.core.submit(now, command);
        self.flush();
        id
    }

    fn requests_seen_by(&self, addr: u8) -> usize {
        self.device_events
            .iter()
            .filter(|(a, e)| *a == addr && matches!(e, Event::Request(_)))
            .count()
    }
}

impl Harness for World {
    type Addr = u8;

    fn net(&self) -> &netsim::Net<u8> {
        &self.net
    }

    fn net_mut(&mut self) -> &mut netsim::Net<u8> {
        &mut self.net
    }

    fn next_timer(&self) -> Option<Instant> {
        self.devices
            .values()
            .filter_map(|e| e.poll_timeout())
            .chain(self.core.poll_timeout())
            .min()
    }

    fn deliver(&mut self, d: Datagram<u8>) {
        let now = self.now();
        if d.to == SERVER {
            self.core.handle_datagram(now, d.from, &d.bytes);
        } else {
            self.device(d.to).handle_datagram(now, d.from, &d.bytes);
        }
    }

    fn timeout(&mut self) {
        let now = self.now();
        self.core.handle_timeout(now);
        for d in self.devices.values_mut() {
            d.handle_timeout(now);
        }
    }

    /// Moves datagrams, events and store writes until everything is quiet.
    fn flush(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(t) = self.core.poll_transmit() {
                progressed = true;
                self.net.send(SERVER, t.peer, t.payload);
            }
            while let Some(op) = self.core.poll_store() {
                op.apply_to(&mut self.store);
            }
            while let Some(e) = self.core.poll_event() {
                self.events.push(e);
            }
            let now = self.now();
            let addrs: Vec<u8> = self.devices.keys().copied().collect();
            for a in addrs {
                while let Some(t) = self.devices.get_mut(&a).and_then(|d| d.poll_transmit()) {
                    progressed = true;
                    self.net.send(a, SERVER, t.payload);
                }
                while let Some(ev) = self.devices.get_mut(&a).and_then(|d| d.poll_event()) {
                    progressed = true;
                    if let Event::Request(req) = &ev {
                        if let Some(resp) = (self.answer)(a, req) {
                            if let Some(d) = self.devices.get_mut(&a) {
                                if let Ok(Some(o)) = d.respond(now, req.id, resp) {
                                    self.observers.push((a, o));
                                }
                            }
                        }
                    }
                    self.device_events.push((a, ev));
                }
            }
            while let Some(d) = self.net.deliver_due() {
                progressed = true;
                self.deliver(d);
            }
            if !progressed {
                return;
            }
        }
    }
}

fn read(path: Path) -> DownlinkRequest {
    DownlinkRequest::Read { path }
}

#[test]
fn register_update_deregister() {
    let mut w = World::new();
    let loc = w.register(1, "dev-1", 300, false);
    assert!(loc.starts_with("/rd/") && loc.len() == 4 + 16, "{loc}");
    assert!(
        matches!(&w.events[0], DeviceEvent::Registered { registration, replaced: false } if registration.endpoint == "dev-1" && registration.lifetime == 300)
    );
    assert!(w
        .store
        .contains_key(&(Table::Registrations, b"dev-1".to_vec())));

    let id = w.send_from(
        1,
        Update {
            lifetime: Some(600),
            ..Update::default()
        }
        .to_coap(&loc),
    );
    assert_eq!(
        w.reply(1, id).unwrap().header.code,
        MessageClass::Response(ResponseType::Changed)
    );
    assert_eq!(w.core.registration("dev-1").unwrap().lifetime, 600);

    let id = w.send_from(1, Update::default().to_coap("/rd/0000000000000000"));
    assert_eq!(
        w.reply(1, id).unwrap().header.code,
        MessageClass::Response(ResponseType::NotFound)
    );

    let id = w.send_from(1, lwm2m::ops::registration::deregister(&loc));
    assert_eq!(
        w.reply(1, id).unwrap().header.code,
        MessageClass::Response(ResponseType::Deleted)
    );
    assert_eq!(w.core.device_count(), 0);
    assert!(w.events.iter().any(|e| matches!(
        e,
        DeviceEvent::Deregistered {
            reason: DeregisterReason::Requested,
            ..
        }
    )));
    assert!(!w
        .store
        .contains_key(&(Table::Registrations, b"dev-1".to_vec())));
}

#[test]
fn lifetime_expiry_removes_the_registration_after_the_grace() {
    let mut w = World::new();
    w.register(1, "dev-1", 60, false);
    w.advance(Duration::from_secs(70));
    assert_eq!(
        w.core.device_count(),
        1,
        "still within lifetime + 15 s grace"
    );
    w.advance(Duration::from_secs(10));
    assert_eq!(w.core.device_count(), 0);
    assert!(w.events.iter().any(|e| matches!(
        e,
        DeviceEvent::Deregistered {
            reason: DeregisterReason::Expired,
            ..
        }
    )));
}

#[test]
fn updates_keep_a_registration_alive() {
    let mut w = World::new();
    let loc = w.register(1, "dev-1", 60, false);
    for _ in 0..10 {
        w.advance(Duration::from_secs(50));
        w.send_from(1, Update::default().to_coap(&loc));
    }
    assert_eq!(w.core.device_count(), 1);
}

#[test]
fn second_register_replaces_the_first_and_cancels_its_observations() {
    let mut w = World::new();
    let old = w.register(1, "dev-1", 300, false);
    w.submit(
        "dev-1",
        DownlinkRequest::Observe {
            path: Path::resource(3303, 0, 5700),
        },
    );
    assert_eq!(w.core.observations.len(), 1);
    let new = w.register(1, "dev-1", 300, false);
    assert_ne!(old, new);
    assert_eq!(w.core.observations.len(), 0);
    assert!(w
        .events
        .iter()
        .any(|e| matches!(e, DeviceEvent::Registered { replaced: true, .. })));
    let id = w.send_from(1, Update::default().to_coap(&old));
    assert_eq!(
        w.reply(1, id).unwrap().header.code,
        MessageClass::Response(ResponseType::NotFound),
        "the old location is gone"
    );
}

#[test]
fn command_to_an_awake_device_returns_its_value() {
    let mut w = World::new();
    w.register(1, "dev-1", 300, false);
    let id = w.submit("dev-1", read(Path::resource(3, 0, 0)));
    let results = w.results();
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].0, id);
    match &results[0].1 {
        Ok(DmResponse::Content {
            format: ContentFormat::Tlv,
            node,
        }) => {
            assert_eq!(node.value(), Some(&Value::String("value of /3/0/0".into())));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn bootstrap_trigger_executes_1_x_9_on_the_server_instance_the_device_registered() {
    let mut w = World::new();
    w.answer = Box::new(|_, _| Some(msg::response(ResponseType::Changed)));
    let r = Register::new(
        "rotated",
        parse_registration_links(b"</1/4>,</3/0>").unwrap(),
    );
    w.send_from(1, r.to_coap());
    let mark = w.net.sent().len();
    let now = w.now();
    let id = w.core.bootstrap_trigger(now, "rotated", None, None);
    w.flush();
    let sent = packets_to(&w, 1, mark);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(msg::uri_path(&sent[0]), "/1/4/9");
    assert_eq!(
        sent[0].header.code,
        MessageClass::Request(RequestType::Post)
    );
    assert!(w.results().iter().any(|(i, o)| *i == id && o.is_ok()));

    // A device that lists no Server instance cannot be asked; one that is not registered
    // fails like any command.
    let r = Register::new("bare", parse_registration_links(b"</3/0>").unwrap());
    w.send_from(2, r.to_coap());
    let now = w.now();
    let id = w.core.bootstrap_trigger(now, "bare", None, None);
    w.flush();
    assert!(w
        .results()
        .iter()
        .any(|(i, o)| *i == id && matches!(o, Err(CommandError::NotSupported(_)))));
    let id = w.core.bootstrap_trigger(now, "nobody", None, None);
    w.flush();
    assert!(w
        .results()
        .iter()
        .any(|(i, o)| *i == id && *o == Err(CommandError::UnknownDevice)));
}

#[test]
fn a_bootstrap_trigger_for_a_sleeping_device_waits_for_it_to_wake() {
    let mut w = World::new();
    w.answer = Box::new(|_, _| Some(msg::response(ResponseType::Changed)));
    let (loc, mark) = w.register_and_sleep(1, "sleepy", 86_400);
    let now = w.now();
    let id = w
        .core
        .bootstrap_trigger(now, "sleepy", Some(Duration::from_secs(7200)), None);
    w.flush();
    w.advance(Duration::from_secs(600));
    assert_eq!(w.sent_to(1, mark), 0, "nothing goes to a sleeping device");
    w.sleep(1, false);
    let wake = w.net.sent().len();
    w.send_from(1, Update::default().to_coap(&loc));
    let sent = packets_to(&w, 1, wake);
    assert!(
        sent.iter().any(|p| msg::uri_path(p) == "/1/0/9"),
        "{sent:?}"
    );
    assert!(w.results().iter().any(|(i, o)| *i == id && o.is_ok()));
}

#[test]
fn command_for_an_unknown_device_fails_at_once() {
    let mut w = World::new();
    w.submit("nobody", read(Path::resource(3, 0, 0)));
    assert_eq!(w.results()[0].1, Err(CommandError::UnknownDevice));
}

#[test]
fn composite_for_a_1_0_device_is_not_supported() {
    let mut w = World::new();
    let mut r = Register::new("old", parse_registration_links(b"</1/0>,</3/0>").unwrap());
    r.version = lwm2m::content::negotiate::Lwm2mVersion::V1_0;
    w.send_from(1, r.to_coap());
    w.submit(
        "old",
        DownlinkRequest::ReadComposite {
            paths: vec![Path::resource(3, 0, 0)],
        },
    );
    assert!(matches!(
        w.results()[0].1,
        Err(CommandError::NotSupported(_))
    ));
}

#[test]
fn silent_device_times_out_without_blocking_another() {
    let mut w = World::new();
    w.register(1, "silent", 3600, false);
    w.register(2, "chatty", 3600, false);
    w.sleep(1, true);
    let a = w.submit("silent", read(Path::resource(3, 0, 0)));
    let b = w.submit("chatty", read(Path::resource(3, 0, 0)));
    assert!(
        w.results().iter().any(|(id, o)| *id == b && o.is_ok()),
        "answered at once"
    );
    w.advance(Duration::from_secs(200));
    let results = w.results();
    assert_eq!(results.iter().filter(|(id, _)| *id == a).count(), 1);
    assert!(results
        .iter()
        .any(|(id, o)| *id == a && *o == Err(CommandError::Timeout)));
}

#[test]
fn queued_command_is_delivered_once_when_the_device_wakes() {
    let mut w = World::new();
    let (loc, mark) = w.register_and_sleep(1, "sleepy", 3600);
    let id = w.submit("sleepy", read(Path::resource(3, 0, 9)));
    assert_eq!(w.core.queued("sleepy"), 1);
    assert!(w.results().is_empty());
    assert_eq!(
        w.store.keys().filter(|(t, _)| *t == Table::Queue).count(),
        1,
        "queued durably"
    );
    w.advance(Duration::from_secs(600));
    assert!(
        w.results().is_empty(),
        "nothing is sent to a sleeping device"
    );
    assert_eq!(w.requests_seen_by(1), 0);
    assert_eq!(w.sent_to(1, mark), 0, "the server does not even try");
    // It wakes and updates: the command goes out right after the 2.04.
    w.sleep(1, false);
    w.send_from(1, Update::default().to_coap(&loc));
    let results = w.results();
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].0, id);
    assert!(results[0].1.is_ok());
    assert_eq!(w.requests_seen_by(1), 1);
    assert_eq!(
        w.store.keys().filter(|(t, _)| *t == Table::Queue).count(),
        0
    );
    // Nothing more ever comes for it.
    w.advance(Duration::from_secs(600));
    assert_eq!(w.results().len(), 1);
}

#[test]
fn a_queue_mode_device_is_reported_asleep_once_its_awake_window_passes() {
    let mut w = World::new();
    let loc = w.register(1, "sleepy", 3600, true);
    w.register(2, "always-on", 3600, false);
    let now = w.now();
    assert_eq!(
        w.core.client_state(now, "sleepy").unwrap().sleeping,
        Some(false)
    );
    assert_eq!(
        w.core.client_state(now, "always-on").unwrap().sleeping,
        None
    );
    let sleeping = |w: &World| {
        w.events
            .iter()
            .filter(|e| matches!(e, DeviceEvent::Sleeping { endpoint } if endpoint == "sleepy"))
            .count()
    };
    // Heard from again within the window: the window moves, no Sleeping yet.
    w.advance(w.core.config.awake_window / 2);
    w.send_from(1, Update::default().to_coap(&loc));
    w.advance(w.core.config.awake_window / 2 + Duration::from_millis(10));
    assert_eq!(sleeping(&w), 0);
    w.advance(w.core.config.awake_window);
    assert_eq!(sleeping(&w), 1, "{:?}", w.events);
    let now = w.now();
    assert_eq!(
        w.core.client_state(now, "sleepy").unwrap().sleeping,
        Some(true)
    );
    // Once asleep, nothing more until it wakes; then Awake, and Sleeping again later.
    w.advance(Duration::from_secs(600));
    assert_eq!(sleeping(&w), 1);
    w.send_from(1, Update::default().to_coap(&loc));
    w.advance(w.core.config.awake_window + Duration::from_secs(1));
    assert_eq!(sleeping(&w), 2);
    assert!(!w
        .events
        .iter()
        .any(|e| matches!(e, DeviceEvent::Sleeping { endpoint } if endpoint == "always-on")));
}

#[test]
fn client_pages_walk_every_matching_device_once_in_name_order() {
    let mut w = World::new();
    for (addr, ep) in [
        (1, "b-2"),
        (2, "a-1"),
        (3, "b-1"),
        (4, "b-10"),
        (5, "c-1"),
        (6, "b-3"),
    ] {
        w.register(addr, ep, 3600, false);
    }
    let now = w.now();
    let names = |p: &clients::ClientPage| {
        p.clients
            .iter()
            .map(|c| c.registration.endpoint.clone())
            .collect::<Vec<_>>()
    };
    let page = w.core.clients_page(now, "b-", None, 2);
    assert_eq!(page.total, 4);
    assert_eq!(names(&page), ["b-1", "b-10"]);
    let page = w.core.clients_page(now, "b-", Some("b-10"), 2);
    assert_eq!(names(&page), ["b-2", "b-3"]);
    assert!(w
        .core
        .clients_page(now, "b-", Some("b-3"), 2)
        .clients
        .is_empty());
    assert_eq!(w.core.clients_page(now, "", None, 100).total, 6);
    assert_eq!(names(&w.core.clients_page(now, "", None, 100)).len(), 6);
}

/// The datagrams the server sent to `addr` from the `since`th sent on, parsed, oldest first.
fn packets_to(w: &World, addr: u8, since: usize) -> Vec<Packet> {
    w.net
        .sent()
        .iter()
        .skip(since)
        .filter(|s| s.from == SERVER && s.to == addr)
        .map(|s| Packet::from_bytes(&s.bytes).unwrap())
        .collect()
}

#[test]
fn a_command_for_a_sleeping_device_waits_unsent_until_its_register_wakes_it() {
    let mut w = World::new();
    let (_, mark) = w.register_and_sleep(1, "sleepy", 86_400);
    let id = w.submit("sleepy", read(Path::resource(3, 0, 9)));
    for _ in 0..6 {
        w.advance(Duration::from_secs(600));
        assert!(w.results().is_empty(), "no result while it sleeps");
        assert_eq!(w.sent_to(1, mark), 0, "no datagram to a sleeping device");
    }
    // It wakes and registers again: its 2.01 first, then the queued command, once.
    w.sleep(1, false);
    let wake = w.net.sent().len();
    w.register(1, "sleepy", 86_400, true);
    let to_device = packets_to(&w, 1, wake);
    assert_eq!(to_device.len(), 2, "{to_device:?}");
    assert_eq!(
        to_device[0].header.code,
        MessageClass::Response(ResponseType::Created)
    );
    assert_eq!(msg::uri_path(&to_device[1]), "/3/0/9");
    assert!(matches!(
        w.results().as_slice(),
        [(i, Ok(DmResponse::Content { .. }))] if *i == id
    ));
    w.advance(Duration::from_secs(600));
    assert_eq!(w.results().len(), 1, "one result, ever");
    assert_eq!(packets_to(&w, 1, wake).len(), 2, "sent once");
}

#[test]
fn a_command_whose_ttl_passes_while_the_device_sleeps_expires_unsent() {
    let mut w = World::new();
    let (loc, mark) = w.register_and_sleep(1, "sleepy", 86_400);
    let ttl = Duration::from_secs(60);
    let id = w.submit_ttl("sleepy", read(Path::resource(3, 0, 0)), ttl);
    w.advance(Duration::from_secs(59));
    assert!(w.results().is_empty(), "still within its time-to-live");
    w.advance(Duration::from_secs(2));
    assert_eq!(w.results(), vec![(id, Err(CommandError::Expired))]);
    assert_eq!(w.core.queued("sleepy"), 0);
    assert_eq!(
        w.store.keys().filter(|(t, _)| *t == Table::Queue).count(),
        0,
        "gone from the store too"
    );
    // When it wakes, the expired command is not sent after all.
    w.sleep(1, false);
    w.send_from(1, Update::default().to_coap(&loc));
    w.advance(Duration::from_secs(60));
    assert_eq!(w.requests_seen_by(1), 0);
    let to_device = packets_to(&w, 1, mark);
    assert!(
        to_device
            .iter()
            .all(|p| matches!(p.header.code, MessageClass::Response(_))),
        "only the answer to its Update: {to_device:?}"
    );
    // `all` holds for nothing sent too: the Update was answered, once.
    assert_eq!(to_device.len(), 1, "{to_device:?}");
    assert_eq!(w.results().len(), 1);
}

#[test]
fn queued_commands_keep_their_order() {
    let mut w = World::new();
    let loc = w.register(1, "sleepy", 3600, true);
    w.advance(Duration::from_secs(100));
    let paths = [0u16, 1, 2, 3];
    for r in paths {
        w.submit("sleepy", read(Path::resource(3, 0, r)));
    }
    w.send_from(1, Update::default().to_coap(&loc));
    w.advance(Duration::from_secs(5));
    let seen: Vec<String> = w
        .device_events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Request(r) => Some(msg::uri_path(&r.request)),
            _ => None,
        })
        .collect();
    assert_eq!(seen, ["/3/0/0", "/3/0/1", "/3/0/2", "/3/0/3"]);
    assert_eq!(w.results().len(), 4);
}

#[test]
fn queued_command_expires_with_one_result() {
    let mut w = World::new();
    w.register(1, "sleepy", 3600, true);
    w.advance(Duration::from_secs(100));
    let ttl = Duration::from_secs(30);
    let id = w.submit_ttl("sleepy", read(Path::resource(3, 0, 0)), ttl);
    w.advance(Duration::from_secs(31));
    assert_eq!(w.results(), vec![(id, Err(CommandError::Expired))]);
    assert_eq!(w.core.queued("sleepy"), 0);
    w.advance(Duration::from_secs(3000));
    assert_eq!(w.results().len(), 1);
}

#[test]
fn full_queue_refuses_with_queue_full() {
    let mut w = World::new();
    w.register(1, "sleepy", 3600, true);
    w.advance(Duration::from_secs(100));
    for _ in 0..64 {
        w.submit("sleepy", read(Path::resource(3, 0, 0)));
    }
    let first = w.submit("sleepy", read(Path::resource(3, 0, 0)));
    assert_eq!(w.results(), vec![(first, Err(CommandError::QueueFull))]);
    // What the HTTP API answers 202 for: a command waiting in the queue, not one refused.
    assert!(!w.core.is_queued("sleepy", first));
    assert!(w.core.is_queued("sleepy", CommandId(first.0 - ID_STEP)));
    assert!(w.core.is_asleep(w.now(), "sleepy"));
}

fn notify_from(w: &mut World, addr: u8, path: &Path, v: f64) {
    let observer = w
        .observers
        .iter()
        .rev()
        .find(|(a, _)| *a == addr)
        .map(|(_, o)| *o)
        .expect("an observer");
    let now = w.now();
    w.devices
        .get_mut(&addr)
        .unwrap()
        .notify(now, observer, tlv_content(path, Value::Float(v)), true)
        .unwrap();
    w.flush();
}

fn notifications(w: &World) -> Vec<(ObservationId, Option<Value>)> {
    w.events
        .iter()
        .filter_map(|e| match e {
            DeviceEvent::Notification {
                observation,
                content: Content::Node(n),
                ..
            } => Some((*observation, n.value().cloned())),
            _ => None,
        })
        .collect()
}

#[test]
fn observe_notifications_and_active_cancel() {
    let mut w = World::new();
    w.register(1, "dev-1", 3600, false);
    let path = Path::resource(3303, 0, 5700);
    w.submit("dev-1", DownlinkRequest::Observe { path });
    let obs = match &w.results()[0].1 {
        Ok(_) => w.events.iter().find_map(|e| match e {
            DeviceEvent::CommandResult {
                observation: Some(o),
                ..
            } => Some(*o),
            _ => None,
        }),
        Err(e) => panic!("{e}"),
    }
    .expect("observation id");
    assert!(w.store.keys().any(|(t, _)| *t == Table::Observations));
    notify_from(&mut w, 1, &path, 21.5);
    notify_from(&mut w, 1, &path, 22.0);
    assert_eq!(
        notifications(&w),
        vec![
            (obs, Some(Value::Float(21.5))),
            (obs, Some(Value::Float(22.0)))
        ]
    );
    let now = w.now();
    let cancel = w.core.cancel_observation(now, "dev-1", path);
    w.flush();
    assert!(w.results().iter().any(|(id, o)| *id == cancel && o.is_ok()));
    // The device saw GET with Observe=1.
    assert!(w
        .device_events
        .iter()
        .any(|(_, e)| matches!(e, Event::Request(r) if msg::observe(&r.request) == Some(1))));
    assert!(!w.store.keys().any(|(t, _)| *t == Table::Observations));
    assert_eq!(w.core.observations.len(), 0);
}

#[test]
fn send_is_reported_for_the_registered_device() {
    let mut w = World::new();
    w.register(1, "dev-1", 3600, false);
    let send = lwm2m::ops::reporting::SendRequest {
        records: vec![lwm2m::content::Record {
            path: Path::resource(3303, 0, 5700),
            value: Some(Value::Float(19.5)),
            time: None,
        }],
    };
    let id = w.send_from(1, send.to_coap(ContentFormat::SenmlCbor).unwrap());
    assert_eq!(
        w.reply(1, id).unwrap().header.code,
        MessageClass::Response(ResponseType::Changed)
    );
    assert!(w.events.iter().any(|e| matches!(e, DeviceEvent::Send { endpoint, records } if endpoint == "dev-1" && records.len() == 1)));
    // From an address that never registered: refused.
    let id = w.send_from(9, send.to_coap(ContentFormat::SenmlCbor).unwrap());
    assert_eq!(
        w.reply(9, id).unwrap().header.code,
        MessageClass::Response(ResponseType::NotFound)
    );
}

#[test]
fn restart_keeps_registrations_observations_and_queues() {
    let mut w = World::new();
    let loc = w.register(1, "dev-1", 3600, false);
    let path = Path::resource(3303, 0, 5700);
    w.submit("dev-1", DownlinkRequest::Observe { path });
    let obs = w.events.iter().find_map(|e| match e {
        DeviceEvent::CommandResult {
            observation: Some(o),
            ..
        } => Some(*o),
        _ => None,
    });
    w.register(2, "sleepy", 3600, true);
    w.advance(Duration::from_secs(120));
    w.sleep(2, true);
    let queued = w.submit("sleepy", read(Path::resource(3, 0, 0)));
    w.advance(Duration::from_secs(600));

    // The server restarts: a new core restored from what was stored. 720 s have passed.
    let now = w.now();
    let base = (
        now,
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + 720),
    );
    let mut core = ServerCore::new(
        CoreConfig {
            rng_seed: 8,
            ..CoreConfig::default()
        },
        Arc::new(Registry::bundled()),
        base,
    );
    let table = |t: Table| {
        w.store
            .iter()
            .filter(|((tt, _), _)| *tt == t)
            .map(|(_, v)| v.clone())
            .collect::<Vec<_>>()
    };
    let report = core.restore(
        now,
        table(Table::Registrations),
        table(Table::Observations),
        table(Table::Queue),
    );
    assert_eq!(
        (
            report.registrations,
            report.observations,
            report.queued,
            report.unreadable
        ),
        (2, 1, 1, 0)
    );
    w.core = core;
    w.events.clear();

    // The device goes on as if nothing happened: its location is still valid...
    let id = w.send_from(1, Update::default().to_coap(&loc));
    assert_eq!(
        w.reply(1, id).unwrap().header.code,
        MessageClass::Response(ResponseType::Changed)
    );
    // ...its notifications still map to the same observation...
    notify_from(&mut w, 1, &path, 30.0);
    assert_eq!(
        notifications(&w),
        vec![(obs.unwrap(), Some(Value::Float(30.0)))]
    );
    // ...and the sleeping device gets its queued command when it wakes, with the old id.
    w.sleep(2, false);
    let loc2 = w.core.registration("sleepy").unwrap().location.clone();
    w.send_from(2, Update::default().to_coap(&loc2));
    assert!(w.results().iter().any(|(id, o)| *id == queued && o.is_ok()));
}

#[test]
fn registration_that_lapsed_during_downtime_expires_on_restore() {
    let mut w = World::new();
    w.register(1, "dev-1", 60, false);
    let now = w.now() + Duration::from_secs(3600);
    let base = (
        now,
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + 3600),
    );
    let mut core: ServerCore<u8> =
        ServerCore::new(CoreConfig::default(), Arc::new(Registry::bundled()), base);
    let regs = w
        .store
        .iter()
        .filter(|((t, _), _)| *t == Table::Registrations)
        .map(|(_, v)| v.clone())
        .collect();
    let report = core.restore(now, regs, vec![], vec![]);
    assert_eq!((report.registrations, report.expired), (0, 1));
    assert!(matches!(
        core.poll_event(),
        Some(DeviceEvent::Deregistered {
            reason: DeregisterReason::Expired,
            ..
        })
    ));
}

#[test]
fn delivered_queued_commands_leave_no_expiry_entries_behind() {
    let mut w = World::new();
    let loc = w.register(1, "sleepy", 3600, true);
    w.advance(Duration::from_secs(100));
    for _ in 0..10 {
        w.submit("sleepy", read(Path::resource(3, 0, 0)));
    }
    assert_eq!(w.core.queue_expiry.len(), 10);
    w.send_from(1, Update::default().to_coap(&loc));
    assert_eq!(w.results().len(), 10);
    assert!(
        w.core.queue_expiry.is_empty(),
        "entries go with their commands, not at their TTL"
    );
}

#[test]
fn registration_churn_keeps_one_expiry_entry_per_device() {
    let mut w = World::new();
    for _ in 0..20 {
        let loc = w.register(1, "rebooter", 86_400, false);
        w.send_from(
            1,
            Update {
                lifetime: Some(60),
                ..Update::default()
            }
            .to_coap(&loc),
        );
    }
    w.register(2, "other", 300, false);
    assert_eq!(w.core.expiry.len(), 2);
    let id = w.send_from(
        2,
        lwm2m::ops::registration::deregister(
            &w.core.registration("other").unwrap().location.clone(),
        ),
    );
    assert!(w.reply(2, id).is_some());
    assert_eq!(w.core.expiry.len(), 1);
    // The remaining one still expires on time: 60 s lifetime from the last update.
    w.advance(Duration::from_secs(80));
    assert_eq!(w.core.device_count(), 0);
    assert!(w.core.expiry.is_empty());
}

/// Endpoints `meter-*` have credentials; others do not.
struct MetersNeedDtls;

impl SecurityPolicy for MetersNeedDtls {
    fn requires_dtls(&self, endpoint: &str) -> bool {
        endpoint.starts_with("meter-")
    }
}

fn try_register(w: &mut World, addr: u8, name: &str) -> Packet {
    let r = Register::new(name, parse_registration_links(b"</3/0>").unwrap());
    let id = w.send_from(addr, r.to_coap());
    w.reply(addr, id).expect("answered")
}

fn auth_failures(w: &World) -> Vec<(String, Option<String>)> {
    w.events
        .iter()
        .filter_map(|e| match e {
            DeviceEvent::AuthFailed {
                endpoint,
                principal,
                ..
            } => Some((endpoint.clone(), principal.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn an_authenticated_peer_registers_only_as_its_credential_says() {
    let mut w = World::new();
    w.core.set_security_policy(Arc::new(MetersNeedDtls));
    // Peer 1 holds meter-a's credential; peer 2 holds none.
    let addr: std::net::SocketAddr = "192.0.2.7:4000".parse().unwrap();
    w.core.peer_authenticated(1, Arc::from("meter-a"), addr);
    let forbidden = MessageClass::Response(ResponseType::Forbidden);
    assert_eq!(try_register(&mut w, 1, "meter-b").header.code, forbidden);
    assert_eq!(try_register(&mut w, 2, "meter-a").header.code, forbidden);
    assert_eq!(
        auth_failures(&w),
        vec![
            ("meter-b".to_string(), Some("meter-a".to_string())),
            ("meter-a".to_string(), None)
        ]
    );
    assert_eq!(w.core.device_count(), 0);
    // The right name works, and the registration shows the device's address.
    let loc = w.register(1, "meter-a", 300, false);
    assert_eq!(
        w.core.registration("meter-a").unwrap().address,
        addr.to_string()
    );
    // Another peer cannot update or de-register it, even knowing its location.
    let update = Update::default().to_coap(&loc);
    let id = w.send_from(2, update);
    assert_eq!(w.reply(2, id).unwrap().header.code, forbidden);
    let mut delete = msg::request(lwm2m::coap::RequestType::Delete, &loc);
    delete
        .header
        .set_type(lwm2m::coap::MessageType::Confirmable);
    let id = w.send_from(2, delete);
    assert_eq!(w.reply(2, id).unwrap().header.code, forbidden);
    assert_eq!(w.core.device_count(), 1);
    // A NoSec device without a credential is unaffected.
    w.register(3, "sensor-1", 300, false);
    assert_eq!(w.core.device_count(), 2);
}

#[test]
fn a_moved_session_updates_the_address_and_revocation_deregisters() {
    let mut w = World::new();
    let a: std::net::SocketAddr = "192.0.2.7:4000".parse().unwrap();
    let b: std::net::SocketAddr = "198.51.100.9:5000".parse().unwrap();
    w.core.peer_authenticated(1, Arc::from("meter-a"), a);
    w.register(1, "meter-a", 300, false);
    w.core.peer_moved(1, b);
    assert_eq!(
        w.core.registration("meter-a").unwrap().address,
        b.to_string()
    );
    let now = w.now();
    assert!(w.core.revoke(now, "meter-a"));
    w.flush();
    assert!(w.events.iter().any(|e| matches!(e,
        DeviceEvent::Deregistered { endpoint, reason: DeregisterReason::Revoked } if endpoint == "meter-a")));
    assert_eq!(w.core.device_count(), 0);
}

mod firmware;
mod hostile;
mod shared;
mod upload;
