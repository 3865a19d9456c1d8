//! Virtual-time tests of the [`Bootstrapper`] against a scripted bootstrap server: a bare
//! CoAP [`Endpoint`] sending [`BootstrapOp`]s, datagrams handed over directly (no sockets,
//! no loss), time jumping from one deadline to the next.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use super::*;
use crate::client::accounts::security_instance;
use crate::client::{BootstrapAccount, SecurityMode, ServerAccount};
use crate::coap::{msg, RequestType};
use crate::model::{Instance, Resource, Value};
use crate::ops::bootstrap::{Discovery, SECURITY, SERVER};
use proptest::prelude::*;

const DEVICE: u8 = 0;
const BS: u8 = 1;
const BS_URI: &str = "coaps://127.0.0.1:5784";

fn factory_psk() -> SecurityMode {
    SecurityMode::Psk {
        identity: b"factory-dev-1".to_vec(),
        key: vec![0x11; 16],
    }
}

fn new_psk() -> SecurityMode {
    SecurityMode::Psk {
        identity: b"dev-1".to_vec(),
        key: vec![0x22; 16],
    }
}

/// The scripted bootstrap server and the device, wired together.
struct Bench {
    now: Instant,
    start: Instant,
    device: Bootstrapper<u8>,
    server: Endpoint<u8>,
    /// How the server answers the Bootstrap-Request; `None` leaves it unanswered.
    answer_request: Option<ResponseType>,
    /// Bootstrap-Requests the server received.
    requests: Vec<Packet>,
    answers: Vec<(RequestId, Result<Packet, ExchangeError>)>,
    events: Vec<(Duration, BootstrapEvent)>,
}

impl Bench {
    fn new(config: BootstrapperConfig) -> Self {
        let store = ObjectStore::factory("dev-1", BS_URI, &factory_psk());
        let now = Instant::now();
        Self {
            now,
            start: now,
            device: Bootstrapper::new(config, BS, store),
            server: Endpoint::new(EndpointConfig {
                rng_seed: 9,
                ..EndpointConfig::default()
            }),
            answer_request: Some(ResponseType::Changed),
            requests: Vec::new(),
            answers: Vec::new(),
            events: Vec::new(),
        }
    }

    fn started() -> Self {
        let mut b = Self::new(BootstrapperConfig::new("dev-1"));
        b.start();
        b
    }

    fn start(&mut self) {
        self.device.start(self.now).unwrap();
        self.flush();
        assert_eq!(self.requests.len(), 1);
    }

    fn flush(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(t) = self.device.poll_transmit() {
                progressed = true;
                assert_eq!(t.peer, BS);
                self.server.handle_datagram(self.now, DEVICE, &t.payload);
            }
            while let Some(t) = self.server.poll_transmit() {
                progressed = true;
                self.device.handle_datagram(self.now, BS, &t.payload);
            }
            while let Some(ev) = self.device.poll_event() {
                progressed = true;
                self.events.push((self.now - self.start, ev));
            }
            while let Some(ev) = self.server.poll_event() {
                progressed = true;
                match ev {
                    Event::Request(req) => {
                        self.requests.push(req.request.clone());
                        if let Some(code) = self.answer_request {
                            let now = self.now;
                            self.server
                                .respond(now, req.id, msg::response(code))
                                .unwrap();
                        }
                    }
                    Event::Response { id, response, .. } => self.answers.push((id, Ok(response))),
                    Event::Failed { id, error, .. } => self.answers.push((id, Err(error))),
                    _ => {}
                }
            }
            if !progressed {
                break;
            }
        }
    }

    /// Runs timers until `d` from now.
    fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        loop {
            let next = [self.device.poll_timeout(), self.server.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(t) if t <= until => {
                    self.now = self.now.max(t);
                    self.device.handle_timeout(self.now);
                    self.server.handle_timeout(self.now);
                    self.flush();
                }
                _ => break,
            }
        }
        self.now = until;
    }

    /// Sends `op` from the bootstrap server and returns the device's answer.
    fn ask(&mut self, op: &BootstrapOp) -> Packet {
        self.ask_raw(op.to_coap())
    }

    fn ask_raw(&mut self, req: Packet) -> Packet {
        let id = self
            .server
            .send_request(self.now, DEVICE, req, RequestOptions::default())
            .unwrap();
        self.flush();
        let (_, answer) = self.answers.iter().find(|(i, _)| *i == id).unwrap();
        answer.clone().unwrap()
    }

    fn write(&mut self, path: Path, format: ContentFormat, node: &Node) -> Packet {
        self.ask(&BootstrapOp::Write {
            path,
            format,
            payload: content::encode(format, &path, node).unwrap(),
        })
    }

    fn finished(&self) -> bool {
        self.events
            .iter()
            .any(|(_, e)| matches!(e, BootstrapEvent::Finished))
    }
}

fn code(p: &Packet) -> String {
    msg::code_string(p)
}

fn server_instance(ssid: i64) -> Instance {
    Instance::from([
        (0, Resource::Single(Value::Integer(ssid))),
        (1, Resource::Single(Value::Integer(600))),
        (6, Resource::Single(Value::Boolean(true))),
        (7, Resource::Single(Value::String("U".into()))),
    ])
}

fn account_security() -> Instance {
    security_instance("coaps://127.0.0.1:5684", false, &new_psk(), Some(101))
}

#[test]
fn a_whole_bootstrap_in_each_format_leaves_the_account_and_the_bootstrap_server_s() {
    for (format, version) in [
        (ContentFormat::Tlv, Lwm2mVersion::V1_1),
        (ContentFormat::SenmlCbor, Lwm2mVersion::V1_1),
        (ContentFormat::SenmlJson, Lwm2mVersion::V1_1),
        (ContentFormat::Lwm2mCbor, Lwm2mVersion::V1_2),
    ] {
        let mut b = Bench::new(BootstrapperConfig::new("dev-1").with_version(version));
        b.start();
        let request = BootstrapRequest::from_coap(&b.requests[0]).unwrap();
        assert_eq!(request.endpoint, "dev-1");

        let answer = b.ask(&BootstrapOp::Discover(Path::ROOT));
        assert_eq!(code(&answer), "2.05");
        let d = Discovery::parse(&answer.payload).unwrap();
        assert_eq!(d.version.as_deref(), Some(version.as_str()), "{format:?}");
        assert_eq!(d.bootstrap_security_instance(), Some(0));
        assert_eq!(
            d.instances_of(SECURITY).next().unwrap().uri.as_deref(),
            Some(BS_URI)
        );
        assert!(d.objects.contains(&SERVER) && d.objects.contains(&3));

        assert_eq!(
            code(&b.ask(&BootstrapOp::Delete(Path::object(SECURITY)))),
            "2.02"
        );
        assert_eq!(
            code(&b.ask(&BootstrapOp::Delete(Path::object(SERVER)))),
            "2.02"
        );
        assert!(b.device.store().bootstrap_account().is_some());

        let sec = Node::Instance(account_security());
        assert_eq!(
            code(&b.write(Path::instance(SECURITY, 1), format, &sec)),
            "2.04"
        );
        let srv = Node::Instance(server_instance(101));
        assert_eq!(
            code(&b.write(Path::instance(SERVER, 0), format, &srv)),
            "2.04"
        );

        let read = b.ask(&BootstrapOp::Read {
            path: Path::instance(SERVER, 0),
            accept: Some(format),
        });
        assert_eq!(code(&read), "2.05");
        let node = content::decode(
            format,
            &Path::instance(SERVER, 0),
            &read.payload,
            &*crate::client::bundled_registry(),
        )
        .unwrap();
        assert_eq!(node, srv, "{format:?}");

        // The second Discover names the new account with its ssid and uri.
        let d = Discovery::parse(&b.ask(&BootstrapOp::Discover(Path::ROOT)).payload).unwrap();
        let acct: Vec<_> = d
            .instances_of(SECURITY)
            .filter(|i| i.ssid.is_some())
            .collect();
        assert_eq!(acct.len(), 1);
        assert_eq!(acct[0].ssid, Some(101));
        assert_eq!(acct[0].uri.as_deref(), Some("coaps://127.0.0.1:5684"));
        assert_eq!(d.instances_of(SERVER).next().unwrap().ssid, Some(101));

        assert_eq!(code(&b.ask(&BootstrapOp::Finish)), "2.04");
        assert!(b.finished());
        assert!(b.device.is_finished());
        let store = b.device.into_store();
        assert_eq!(
            store.server_accounts(),
            [ServerAccount {
                security_instance: 1,
                server_instance: 0,
                uri: "coaps://127.0.0.1:5684".into(),
                short_server_id: 101,
                security: new_psk(),
                lifetime: Some(600),
                binding: Some(crate::ops::registration::Binding::UDP),
            }]
        );
        assert_eq!(
            store.bootstrap_account(),
            Some(BootstrapAccount {
                security_instance: 0,
                uri: BS_URI.into(),
                security: factory_psk(),
                client_hold_off: None,
                account_timeout: None,
            })
        );
        assert!(store.get(&Path::instance(3, 0)).is_some());

        // The client built on it registers with the account's settings.
        let account = &store.server_accounts()[0];
        let config = ClientConfig::new("dev-1").with_account(account);
        let client = crate::client::Client::new(config, 2u8, store.clone());
        assert_eq!(client.config().short_server_id, 101);
        assert_eq!(client.store().lifetime(101), Some(600));
    }
}

#[test]
fn the_request_names_the_preferred_format_from_1_1_on() {
    let mut config = BootstrapperConfig::new("dev-1");
    config.preferred_format = Some(ContentFormat::SenmlCbor);
    let mut b = Bench::new(config.clone());
    b.start();
    let r = BootstrapRequest::from_coap(&b.requests[0]).unwrap();
    assert_eq!(r.preferred_format, Some(ContentFormat::SenmlCbor));

    let mut b = Bench::new(config.with_version(Lwm2mVersion::V1_0));
    b.start();
    let r = BootstrapRequest::from_coap(&b.requests[0]).unwrap();
    assert_eq!(r.preferred_format, None);
}

#[test]
fn a_write_of_a_whole_object_or_one_resource_merges_into_the_store() {
    let mut b = Bench::started();
    let both = Node::Object(
        [(1, account_security())]
            .into_iter()
            .collect::<std::collections::BTreeMap<_, _>>(),
    );
    assert_eq!(
        code(&b.write(Path::object(SECURITY), ContentFormat::Tlv, &both)),
        "2.04"
    );
    // A resource of an instance that does not exist yet creates it.
    let ssid = Node::Resource(Resource::Single(Value::Integer(101)));
    assert_eq!(
        code(&b.write(Path::resource(SERVER, 3, 0), ContentFormat::Tlv, &ssid)),
        "2.04"
    );
    let lifetime = Node::Resource(Resource::Single(Value::Integer(45)));
    assert_eq!(
        code(&b.write(
            Path::resource(SERVER, 3, 1),
            ContentFormat::SenmlCbor,
            &lifetime
        )),
        "2.04"
    );
    let store = b.device.store();
    assert_eq!(
        store.value(&Path::resource(SERVER, 3, 0)),
        Some(&Value::Integer(101))
    );
    assert_eq!(store.server_accounts()[0].lifetime, Some(45));
    // The bootstrap server's instance was not touched by writing the object.
    assert_eq!(store.bootstrap_account().unwrap().security, factory_psk());
    // The new Server instance implements the Bootstrap-Request Trigger.
    assert!(store
        .dm_check_execute(&Path::resource(SERVER, 3, 9))
        .is_ok());
}

#[test]
fn writes_the_store_cannot_take_are_refused_and_change_nothing() {
    let mut b = Bench::started();
    let before = b.device.store().get(&Path::object(SECURITY));
    // A string where the Security Mode integer goes.
    let mut sec = account_security();
    sec.insert(2, Resource::Single(Value::String("psk".into())));
    let answer = b.write(
        Path::instance(SECURITY, 1),
        ContentFormat::SenmlJson,
        &Node::Instance(sec),
    );
    assert_eq!(code(&answer), "4.00");
    // A format the client does not speak.
    let answer = b.ask(&BootstrapOp::Write {
        path: Path::instance(SECURITY, 1),
        format: ContentFormat::Lwm2mJson,
        payload: b"{}".to_vec(),
    });
    assert_eq!(code(&answer), "4.15");
    // An object the device does not have.
    let node = Node::Instance(Instance::from([(0, Resource::Single(Value::Integer(1)))]));
    assert_eq!(
        code(&b.write(Path::instance(9999, 0), ContentFormat::Tlv, &node)),
        "4.04"
    );
    assert_eq!(b.device.store().get(&Path::object(SECURITY)), before);
}

#[test]
fn finish_without_an_account_is_not_acceptable_and_the_server_may_complete_it() {
    let mut b = Bench::started();
    assert_eq!(code(&b.ask(&BootstrapOp::Finish)), "4.06");
    assert!(!b.finished());
    // A Security instance without its Server instance is no account either.
    b.write(
        Path::instance(SECURITY, 1),
        ContentFormat::Tlv,
        &Node::Instance(account_security()),
    );
    assert_eq!(code(&b.ask(&BootstrapOp::Finish)), "4.06");
    // Nor a Server instance with another Short Server ID.
    b.write(
        Path::instance(SERVER, 0),
        ContentFormat::Tlv,
        &Node::Instance(server_instance(7)),
    );
    assert_eq!(code(&b.ask(&BootstrapOp::Finish)), "4.06");
    b.write(
        Path::instance(SERVER, 1),
        ContentFormat::Tlv,
        &Node::Instance(server_instance(101)),
    );
    assert_eq!(code(&b.ask(&BootstrapOp::Finish)), "2.04");
    assert!(b.finished());
    assert_eq!(b.device.store().server_accounts()[0].server_instance, 1);
}

#[test]
fn delete_of_everything_spares_the_bootstrap_account_and_the_device() {
    let mut b = Bench::started();
    b.write(
        Path::instance(SECURITY, 1),
        ContentFormat::Tlv,
        &Node::Instance(account_security()),
    );
    b.write(
        Path::instance(SERVER, 0),
        ContentFormat::Tlv,
        &Node::Instance(server_instance(101)),
    );
    assert_eq!(code(&b.ask(&BootstrapOp::Delete(Path::ROOT))), "2.02");
    let store = b.device.store();
    assert_eq!(store.instance_ids(SECURITY).collect::<Vec<_>>(), [0]);
    assert_eq!(store.instance_ids(SERVER).count(), 0);
    assert_eq!(store.instance_ids(3).collect::<Vec<_>>(), [0]);
    assert!(store.bootstrap_account().is_some());
    // Named one by one, they are refused; a missing instance is not found.
    assert_eq!(
        code(&b.ask(&BootstrapOp::Delete(Path::instance(SECURITY, 0)))),
        "4.00"
    );
    assert_eq!(
        code(&b.ask(&BootstrapOp::Delete(Path::instance(3, 0)))),
        "4.00"
    );
    assert_eq!(
        code(&b.ask(&BootstrapOp::Delete(Path::instance(SERVER, 4)))),
        "4.04"
    );
    // The objects stay supported, without instances.
    let d = Discovery::parse(&b.ask(&BootstrapOp::Discover(Path::ROOT)).payload).unwrap();
    assert!(d.objects.contains(&SERVER));
    assert_eq!(d.instances_of(SERVER).count(), 0);
}

#[test]
fn only_the_server_and_access_control_objects_can_be_read() {
    let mut b = Bench::started();
    for path in ["/3", "/3/0", "/0", "/0/0", "/1/0/1"] {
        let mut req = msg::request(RequestType::Get, path);
        msg::set_uint_option(
            &mut req,
            CoapOption::Accept,
            u32::from(ContentFormat::Tlv.code()),
        );
        assert_eq!(code(&b.ask_raw(req)), "4.00", "{path}");
    }
    b.write(
        Path::instance(SERVER, 0),
        ContentFormat::Tlv,
        &Node::Instance(server_instance(5)),
    );
    let read = b.ask(&BootstrapOp::Read {
        path: Path::object(SERVER),
        accept: None,
    });
    assert_eq!(code(&read), "2.05");
    assert_eq!(
        msg::uint_option(&read, CoapOption::ContentFormat),
        Some(u32::from(ContentFormat::SenmlCbor.code()))
    );
    let read = b.ask(&BootstrapOp::Read {
        path: Path::object(SERVER),
        accept: Some(ContentFormat::Text),
    });
    assert_eq!(code(&read), "4.06");
    let read = b.ask(&BootstrapOp::Read {
        path: Path::instance(2, 0),
        accept: None,
    });
    assert_eq!(code(&read), "4.04");
}

#[test]
fn discover_of_one_object_and_a_1_0_client_s_discover() {
    let mut b = Bench::started();
    b.write(
        Path::instance(SECURITY, 1),
        ContentFormat::Tlv,
        &Node::Instance(account_security()),
    );
    let answer = b.ask(&BootstrapOp::Discover(Path::object(SECURITY)));
    let text = String::from_utf8(answer.payload).unwrap();
    assert!(
        text.contains("</0/1>;ssid=101;uri=\"coaps://127.0.0.1:5684\""),
        "{text}"
    );
    assert!(
        text.starts_with("</>;lwm2m=1.1,") && !text.contains("</3"),
        "{text}"
    );
    assert_eq!(
        code(&b.ask(&BootstrapOp::Discover(Path::object(4)))),
        "4.04"
    );

    let mut b = Bench::new(BootstrapperConfig::new("dev-1").with_version(Lwm2mVersion::V1_0));
    b.start();
    let answer = b.ask(&BootstrapOp::Discover(Path::ROOT));
    let text = String::from_utf8(answer.payload).unwrap();
    assert!(
        !text.contains("lwm2m=") && !text.contains("uri=") && !text.contains("ver="),
        "{text}"
    );
    assert!(text.contains("</0/0>"), "{text}");
}

#[test]
fn no_finish_within_the_timeout_fails_once() {
    let mut config = BootstrapperConfig::new("dev-1");
    config.finish_timeout = Duration::from_secs(30);
    let mut b = Bench::new(config);
    b.start();
    b.run_for(Duration::from_secs(29));
    assert!(b.events.is_empty());
    b.run_for(Duration::from_secs(120));
    assert_eq!(
        b.events,
        [(
            Duration::from_secs(30),
            BootstrapEvent::Failed {
                reason: BootstrapError::Timeout(Duration::from_secs(30))
            }
        )]
    );
    // A late Finish gets nothing: the device has given up.
    let id = b
        .server
        .send_request(
            b.now,
            DEVICE,
            BootstrapOp::Finish.to_coap(),
            RequestOptions::default(),
        )
        .unwrap();
    b.flush();
    assert!(b.answers.iter().all(|(i, _)| *i != id));
    assert_eq!(b.events.len(), 1);
}

#[test]
fn a_refused_or_unanswered_request_fails() {
    let mut b = Bench::new(BootstrapperConfig::new("dev-1"));
    b.answer_request = Some(ResponseType::Forbidden);
    b.start();
    assert_eq!(
        b.events,
        [(
            Duration::ZERO,
            BootstrapEvent::Failed {
                reason: BootstrapError::Refused(Lwm2mError::Forbidden)
            }
        )]
    );

    let mut config = BootstrapperConfig::new("dev-1");
    config.finish_timeout = Duration::from_secs(3600);
    let mut b = Bench::new(config);
    b.answer_request = None;
    b.device.start(b.now).unwrap();
    // The server never even receives it.
    while b.device.poll_transmit().is_some() {}
    b.run_for(Duration::from_secs(600));
    assert!(matches!(
        b.events.as_slice(),
        [(
            _,
            BootstrapEvent::Failed {
                reason: BootstrapError::Exchange(ExchangeError::Timeout)
            }
        )]
    ));
    assert_eq!(b.device.start(b.now), Err(BootstrapError::AlreadyStarted));
}

#[test]
fn datagrams_from_anyone_else_are_dropped() {
    let mut b = Bench::started();
    let finish = BootstrapOp::Finish.to_coap().to_bytes().unwrap();
    b.device.handle_datagram(b.now, 7, &finish);
    assert_eq!(b.device.stats().dropped_foreign, 1);
    assert!(b.device.poll_transmit().is_none());
}

/// Requests a bootstrap server might send, right or wrong.
fn request_bytes() -> impl Strategy<Value = Vec<u8>> {
    let segment = prop_oneof![
        Just("0".to_string()),
        Just("1".to_string()),
        Just("2".to_string()),
        Just("3".to_string()),
        Just("bs".to_string()),
        (0u32..70_000).prop_map(|n| n.to_string()),
        "[a-z]{0,3}",
    ];
    (
        prop_oneof![1u8..8, Just(0x44), Just(0x45)],
        any::<u16>(),
        proptest::collection::vec(segment, 0..5),
        proptest::option::of(prop_oneof![
            Just(40u32),
            Just(60),
            Just(110),
            Just(112),
            Just(11542),
            Just(11544),
            any::<u32>()
        ]),
        proptest::option::of(prop_oneof![
            Just(40u32),
            Just(112),
            Just(11542),
            any::<u32>()
        ]),
        proptest::collection::vec(any::<u8>(), 0..96),
    )
        .prop_map(|(code, mid, path, cf, accept, payload)| {
            let mut p = Packet::new();
            p.header.set_type(crate::coap::MessageType::Confirmable);
            p.header.code = MessageClass::from(code);
            p.header.message_id = mid;
            p.set_token(mid.to_be_bytes().to_vec());
            for seg in path {
                p.add_option(CoapOption::UriPath, seg.into_bytes());
            }
            if let Some(cf) = cf {
                msg::set_uint_option(&mut p, CoapOption::ContentFormat, cf);
            }
            if let Some(a) = accept {
                msg::set_uint_option(&mut p, CoapOption::Accept, a);
            }
            p.payload = payload;
            p.to_bytes().unwrap_or_default()
        })
}

use crate::coap::MessageClass;

proptest! {
    #[test]
    fn anything_the_bootstrap_server_sends_never_panics_or_loses_its_account(
        datagrams in proptest::collection::vec(
            prop_oneof![request_bytes(), proptest::collection::vec(any::<u8>(), 0..64)],
            0..24,
        ),
    ) {
        let mut b = Bench::started();
        for d in datagrams {
            b.device.handle_datagram(b.now, BS, &d);
            b.flush();
            b.now += Duration::from_millis(100);
            b.device.handle_timeout(b.now);
            b.flush();
        }
        prop_assert!(b.device.store().get(&Path::instance(SECURITY, 0)).is_some());
        prop_assert!(b.device.store().get(&Path::instance(3, 0)).is_some());
        prop_assert!(b.events.len() <= 1);
    }
}
