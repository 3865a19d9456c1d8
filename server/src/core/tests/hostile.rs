//! Hostile input through the whole path into the core, in virtual time: MQTT command
//! envelopes through the bridge (parsing, the one command path, queue and CoAP deadlines,
//! the answer on `up/resp`), and arbitrary CoAP requests and request sequences from devices.
//!
//! Whatever comes in, the server must keep serving: each command gets exactly one answer,
//! and afterwards a read of a registered device is answered `2.05` and a new device
//! registers. A panic anywhere on the way fails the case.
use super::*;
use crate::bridge::envelope::COMMAND_TYPES;
use crate::bridge::link::{Downlink, DownlinkKind};
use crate::bridge::outbox::Message;
use crate::bridge::sink::{Bridge, CommandPath};
use crate::store::{Store, StoreConfig};
use lwm2m::coap_lite::{MessageType, RequestType};
use proptest::prelude::*;

/// The core as the bridge's command path at the world's instant.
struct CoreAt<'a> {
    core: &'a mut ServerCore<u8>,
    now: Instant,
}

impl CommandPath for CoreAt<'_> {
    fn submit(&mut self, command: Command) -> CommandId {
        self.core.submit(self.now, command)
    }

    fn cancel_observation(&mut self, endpoint: &str, path: Path) -> CommandId {
        self.core.cancel_observation(self.now, endpoint, path)
    }

    fn bootstrap_trigger(
        &mut self,
        endpoint: &str,
        ttl: Option<std::time::Duration>,
        timeout: Option<std::time::Duration>,
    ) -> CommandId {
        self.core
            .bootstrap_trigger(self.now, endpoint, ttl, timeout)
    }
}

/// The bridge on a real store, fed every core event the way the runtime feeds it.
struct Northbound {
    bridge: Bridge,
    store: Store,
    /// How many of the world's events the bridge has seen.
    seen: usize,
    _dir: tempfile::TempDir,
}

impl Northbound {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb"), StoreConfig::default()).unwrap();
        let bridge = Bridge::open(
            store.clone(),
            "lwm2m".into(),
            1_000_000,
            Arc::new(Registry::bundled()),
        )
        .unwrap();
        Self {
            bridge,
            store,
            seen: 0,
            _dir: dir,
        }
    }

    /// Hands the bridge the events the core produced since the last call.
    fn pump(&mut self, w: &mut World) {
        while self.seen < w.events.len() {
            let event = w.events[self.seen].clone();
            self.seen += 1;
            let mut at = CoreAt {
                core: &mut w.core,
                now: w.net.now(),
            };
            self.bridge.on_event(&event, &mut at);
            w.flush();
        }
    }

    /// Publishes `payload` on `lwm2m/{endpoint}/dn/cmd`.
    fn command(&mut self, w: &mut World, endpoint: &str, payload: &[u8], expiry: Option<Duration>) {
        let mut at = CoreAt {
            core: &mut w.core,
            now: w.net.now(),
        };
        self.bridge.on_downlink(
            Downlink {
                endpoint: endpoint.into(),
                kind: DownlinkKind::Command,
                payload: payload.to_vec(),
                expiry,
            },
            &mut at,
        );
        w.flush();
        self.pump(w);
    }

    /// Every `up/resp` payload published so far, in order.
    fn responses(&self) -> Vec<serde_json::Value> {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(self.store.flush())
            .unwrap();
        self.store
            .scan(Table::Outbox, b"")
            .unwrap()
            .into_iter()
            .filter_map(|(_, v)| minicbor::decode::<Message>(&v).ok())
            .filter(|m| m.topic.ends_with("/up/resp"))
            .map(|m| serde_json::from_slice(&m.payload).unwrap())
            .collect()
    }
}

/// What a device answers to anything: the value the object model types for a resource, and
/// `4.04` for paths it cannot encode (the hostile commands name every kind of path).
fn any_answer(_: u8, req: &IncomingRequest<u8>) -> Option<Packet> {
    let path = Path::parse(&msg::uri_path(&req.request)).unwrap_or(Path::ROOT);
    let kind = Registry::bundled().resource(&path).map(|r| r.kind);
    let value = match kind {
        Some(lwm2m::model::ResourceType::Integer) => Value::Integer(42),
        _ => Value::String(format!("value of {path}")),
    };
    let node = Node::Resource(Resource::Single(value));
    Some(
        match lwm2m::content::encode(ContentFormat::Tlv, &path, &node) {
            Ok(payload) => {
                let mut p = msg::response(ResponseType::Content);
                p.payload = payload;
                msg::set_uint_option(&mut p, CoapOption::ContentFormat, 11542);
                p
            }
            Err(_) => msg::response(ResponseType::NotFound),
        },
    )
}

/// A device registered for the whole run (a lifetime no case outlives).
fn registered_world() -> World {
    let mut w = World::new();
    w.answer = Box::new(any_answer);
    w.register(1, "dev-1", 10_000_000, false);
    w
}

/// What a user checks after the storm: a read of the device is answered `2.05` on
/// `up/resp`, and a device that was never seen registers.
fn still_serving(w: &mut World, nb: &mut Northbound) {
    let before = nb.responses().len();
    nb.command(
        w,
        "dev-1",
        br#"{"reqID": "after", "msgType": "read", "data": {"path": "/3/0/0"}}"#,
        None,
    );
    let responses = nb.responses();
    let last = responses.last().expect("an answer to the read");
    assert_eq!(responses.len(), before + 1);
    assert_eq!(last["reqID"], "after");
    assert_eq!(last["data"]["code"], "2.05", "{last}");
    w.register(250, "newcomer", 300, false);
}

#[test]
fn absurd_timeout_and_ttl_get_a_bad_request_and_the_server_keeps_serving() {
    let mut w = registered_world();
    let mut nb = Northbound::new();
    let cases: [&[u8]; 8] = [
        br#"{"reqID":1,"msgType":"read","timeout":1e19,"data":{"path":"/3/0/0"}}"#,
        br#"{"reqID":2,"msgType":"read","ttl":1e19,"data":{"path":"/3/0/0"}}"#,
        br#"{"reqID":3,"msgType":"read","timeout":-1,"data":{"path":"/3/0/0"}}"#,
        br#"{"reqID":4,"msgType":"read","timeout":0,"data":{"path":"/3/0/0"}}"#,
        br#"{"reqID":5,"msgType":"read","ttl":2592001,"data":{"path":"/3/0/0"}}"#,
        br#"{"reqID":6,"msgType":"read","timeout":86400.5,"data":{"path":"/3/0/0"}}"#,
        br#"{"reqID":7,"msgType":"read","ttl":18446744073709551616,"data":{"path":"/3/0/0"}}"#,
        br#"{"reqID":8,"msgType":"read","timeout":1e-300,"data":{"path":"/3/0/0"}}"#,
    ];
    for c in cases {
        nb.command(&mut w, "dev-1", c, None);
    }
    let responses = nb.responses();
    assert_eq!(responses.len(), cases.len());
    for (i, r) in responses.iter().enumerate() {
        assert_eq!(r["reqID"], i + 1, "{r}");
        assert_eq!(r["data"]["code"], "4.00", "{r}");
        let message = r["data"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("timeout") || message.contains("ttl"),
            "the message names the field: {message}"
        );
    }
    still_serving(&mut w, &mut nb);
}

#[test]
fn a_huge_mqtt_message_expiry_waits_as_long_as_a_ttl_may() {
    let mut w = World::new();
    w.register(2, "sleepy", 10_000_000, true);
    let mut nb = Northbound::new();
    w.advance(Duration::from_secs(100)); // asleep now
    nb.command(
        &mut w,
        "sleepy",
        br#"{"reqID":1,"msgType":"read","data":{"path":"/3/0/0"}}"#,
        Some(Duration::from_secs(u64::from(u32::MAX))),
    );
    assert!(nb.responses().is_empty(), "queued, not answered yet");
    w.advance(*COMMAND_TTL_RANGE.end() + Duration::from_secs(60));
    nb.pump(&mut w);
    let responses = nb.responses();
    assert_eq!(responses.len(), 1);
    assert_eq!(responses[0]["data"]["error"], "expired", "{}", responses[0]);
}

#[test]
fn oversized_and_deeply_nested_commands_are_refused_with_their_req_id() {
    let mut w = registered_world();
    let mut nb = Northbound::new();
    let big = format!(
        r#"{{"reqID":"big","msgType":"write","data":{{"path":"/3/0/14","type":"String","value":"{}"}}}}"#,
        "x".repeat(70 * 1024)
    );
    nb.command(&mut w, "dev-1", big.as_bytes(), None);
    let deep = format!(
        r#"{{"reqID":"deep","msgType":"read","data":{{"path":"/3/0/0","x":{}1{}}}}}"#,
        "[".repeat(1000),
        "]".repeat(1000)
    );
    nb.command(&mut w, "dev-1", deep.as_bytes(), None);
    // A shadow's desired state is held to the same limits.
    let mut at = CoreAt {
        core: &mut w.core,
        now: w.net.now(),
    };
    nb.bridge.on_downlink(
        Downlink {
            endpoint: "dev-1".into(),
            kind: DownlinkKind::Desired,
            payload: deep.clone().into_bytes(),
            expiry: None,
        },
        &mut at,
    );
    let responses = nb.responses();
    assert_eq!(responses.len(), 3);
    assert_eq!(responses[2]["msgType"], "shadow-desired");
    assert_eq!(responses[2]["data"]["code"], "4.00");
    assert_eq!(responses[0]["reqID"], "big");
    assert_eq!(responses[0]["data"]["code"], "4.00");
    assert!(responses[0]["data"]["message"]
        .as_str()
        .unwrap()
        .contains("over the limit of 65536 bytes"));
    assert_eq!(responses[1]["data"]["code"], "4.00");
    assert!(responses[1]["data"]["message"]
        .as_str()
        .unwrap()
        .contains("limit of 32"));
    still_serving(&mut w, &mut nb);
}

#[test]
fn pending_commands_are_bounded_per_device_and_in_total() {
    let mut w = World::new();
    w.core.config.max_pending_commands = 70;
    w.register(1, "dev-1", 10_000_000, false);
    w.register(2, "dev-2", 10_000_000, false);
    // Devices that never answer keep every command pending until its timeout.
    w.answer = Box::new(|_, _| None);
    let mut nb = Northbound::new();
    for i in 0..80u32 {
        let ep = if i < 50 { "dev-1" } else { "dev-2" };
        let cmd = format!(r#"{{"reqID":{i},"msgType":"read","data":{{"path":"/3/0/0"}}}}"#);
        nb.command(&mut w, ep, cmd.as_bytes(), None);
    }
    let refused: Vec<(u64, String)> = nb
        .responses()
        .iter()
        .map(|r| {
            (
                r["reqID"].as_u64().unwrap(),
                r["data"]["error"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    // dev-1 takes 50 (its limit is 64); dev-2 takes 20 before the total of 70 is reached.
    assert_eq!(refused.len(), 10, "{refused:?}");
    assert!(refused.iter().all(|(id, e)| *id >= 70 && e == "overloaded"));
    // Per device: 64 at most, whatever the total allows.
    w.core.config.max_pending_commands = 1000;
    for i in 100..120u32 {
        let cmd = format!(r#"{{"reqID":{i},"msgType":"read","data":{{"path":"/3/0/0"}}}}"#);
        nb.command(&mut w, "dev-1", cmd.as_bytes(), None);
    }
    let full = nb
        .responses()
        .iter()
        .filter(|r| r["data"]["error"] == "queue_full")
        .count();
    assert_eq!(full, 20 - (64 - 50));
    // Every pending command ends (timeout; one exchange at a time per device, NSTART = 1,
    // each given up after EXCHANGE_LIFETIME, 247 s: 64 of them take 4.4 hours), and the
    // server serves again.
    w.advance(Duration::from_secs(8 * 3600));
    nb.pump(&mut w);
    assert_eq!(nb.responses().len(), 100);
    w.answer = Box::new(any_answer);
    still_serving(&mut w, &mut nb);
}

/// A JSON number a backend may send for a duration, from the sensible to the absurd, and
/// values that are not numbers at all.
fn absurd_number() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("1e19".to_string()),
        Just("-1".to_string()),
        Just("0".to_string()),
        Just("-0.0".to_string()),
        Just("1e-320".to_string()),
        Just("1e308".to_string()),
        Just("1e400".to_string()),
        Just("18446744073709551616".to_string()),
        Just("-9223372036854775809".to_string()),
        Just("4294967296".to_string()),
        Just("\"5\"".to_string()),
        Just("NaN".to_string()),
        Just("true".to_string()),
        Just("[1]".to_string()),
        Just("{}".to_string()),
        Just("null".to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| format!("{f:e}")),
        (0u64..200_000).prop_map(|n| n.to_string()),
    ]
}

fn some_path() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("/3/0/0".to_string()),
        Just("/3/0".to_string()),
        Just("/3".to_string()),
        Just("/3/0/4".to_string()),
        Just("/3303/0/5700".to_string()),
        Just("/65535/65535/65535/65535".to_string()),
        Just("/99999999999".to_string()),
        Just("".to_string()),
        Just("/3/0/0?pmin=-1&pmax=1e19".to_string()),
        "[ -~]{0,40}",
    ]
}

/// A string that may break out of JSON, or not.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,20}".prop_map(|s| serde_json::to_string(&s).unwrap()),
        Just(format!("\"{}\"", "y".repeat(5000))),
        absurd_number(),
    ]
}

fn nesting() -> impl Strategy<Value = String> {
    (0usize..60).prop_map(|d| format!("{}0{}", "[".repeat(d), "]".repeat(d)))
}

/// A command envelope: mostly well-shaped with absurd values, sometimes raw bytes.
fn envelope() -> impl Strategy<Value = Vec<u8>> {
    let msg_type = prop_oneof![
        proptest::sample::select(COMMAND_TYPES.to_vec()).prop_map(|s| format!("\"{s}\"")),
        text(),
    ];
    let req_id = prop_oneof![
        any::<u32>().prop_map(|n| n.to_string()),
        text(),
        Just("null".to_string()),
    ];
    let data_field = prop_oneof![
        some_path().prop_map(|p| format!("\"path\":{}", serde_json::to_string(&p).unwrap())),
        some_path().prop_map(|p| format!("\"basePath\":{}", serde_json::to_string(&p).unwrap())),
        text().prop_map(|v| format!("\"value\":{v}")),
        proptest::sample::select(vec![
            "Integer", "Float", "String", "Opaque", "Time", "Boolean", "Objlnk", "x"
        ])
        .prop_map(|t| format!("\"type\":\"{t}\"")),
        absurd_number().prop_map(|v| format!("\"pmin\":{v}")),
        absurd_number().prop_map(|v| format!("\"pmax\":{v}")),
        absurd_number().prop_map(|v| format!("\"gt\":{v}")),
        text().prop_map(|v| format!("\"args\":{v}")),
        (some_path(), text()).prop_map(|(p, v)| format!(
            "\"content\":[{{\"path\":{},\"type\":\"Integer\",\"value\":{v}}}]",
            serde_json::to_string(&p).unwrap()
        )),
        proptest::collection::vec(some_path(), 0..4)
            .prop_map(|ps| format!("\"paths\":{}", serde_json::to_string(&ps).unwrap())),
        nesting().prop_map(|n| format!("\"x\":{n}")),
    ];
    let top_field = prop_oneof![
        absurd_number().prop_map(|v| format!("\"timeout\":{v}")),
        absurd_number().prop_map(|v| format!("\"ttl\":{v}")),
        text().prop_map(|v| format!("\"format\":{v}")),
        Just("\"encoding\":\"hex\"".to_string()),
        nesting().prop_map(|n| format!("\"y\":{n}")),
    ];
    let shaped = (
        req_id,
        msg_type,
        proptest::collection::vec(data_field, 0..5),
        proptest::collection::vec(top_field, 0..3),
    )
        .prop_map(|(r, m, data, top)| {
            let mut fields = vec![format!("\"reqID\":{r}"), format!("\"msgType\":{m}")];
            fields.push(format!("\"data\":{{{}}}", data.join(",")));
            fields.extend(top);
            format!("{{{}}}", fields.join(",")).into_bytes()
        });
    prop_oneof![
        8 => shaped,
        1 => proptest::collection::vec(any::<u8>(), 0..200),
    ]
}

fn expiry() -> impl Strategy<Value = Option<Duration>> {
    prop_oneof![
        Just(None),
        Just(Some(Duration::ZERO)),
        Just(Some(Duration::from_secs(u64::from(u32::MAX)))),
        (0u64..100_000).prop_map(|s| Some(Duration::from_secs(s))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Arbitrary envelopes, to a registered device, an unknown one and a sleeping one, with
    /// arbitrary MQTT expiry: each gets one answer on `up/resp` (after its deadline at the
    /// latest), and the server serves afterwards.
    #[test]
    fn arbitrary_command_envelopes_never_stop_the_server(
        commands in proptest::collection::vec((envelope(), 0usize..3, expiry()), 1..12),
    ) {
        let mut w = registered_world();
        w.register(3, "sleepy", 10_000_000, true);
        let mut nb = Northbound::new();
        let mut expected = 0;
        for (payload, target, expiry) in &commands {
            let endpoint = ["dev-1", "nobody", "sleepy"][*target];
            nb.command(&mut w, endpoint, payload, *expiry);
            expected += 1;
            w.advance(Duration::from_millis(10));
        }
        // Let every deadline pass: the longest timeout is a day, the longest ttl 30 days.
        w.advance(*COMMAND_TTL_RANGE.end() + Duration::from_secs(3600));
        nb.pump(&mut w);
        let responses = nb.responses();
        // Observations answer once too (their notifications go to up/notify).
        prop_assert_eq!(responses.len(), expected, "{:?}", responses);
        still_serving(&mut w, &mut nb);
    }

    /// Arbitrary CoAP requests and request sequences from several devices, in virtual time:
    /// whatever they send, a registered device is still read and a new one registers.
    #[test]
    fn arbitrary_coap_requests_never_stop_the_server(
        requests in proptest::collection::vec((1u8..5, coap_request(), 0u64..5_000), 1..25),
    ) {
        let mut w = registered_world();
        let mut nb = Northbound::new();
        for (from, bytes, wait_ms) in &requests {
            let now = w.now();
            w.core.handle_datagram(now, *from, bytes);
            w.flush();
            w.advance(Duration::from_millis(*wait_ms));
        }
        nb.pump(&mut w);
        still_serving(&mut w, &mut nb);
    }
}

/// A CoAP request as a device might send it, valid or not: LwM2M paths, queries with
/// absurd values, every kind of option, arbitrary payloads; sometimes raw bytes.
fn coap_request() -> impl Strategy<Value = Vec<u8>> {
    let method = proptest::sample::select(vec![
        RequestType::Get,
        RequestType::Post,
        RequestType::Put,
        RequestType::Delete,
        RequestType::Fetch,
        RequestType::Patch,
        RequestType::IPatch,
    ]);
    let segment = prop_oneof![
        Just("rd".to_string()),
        Just("dp".to_string()),
        Just("bs".to_string()),
        "[0-9a-f]{16}",
        "[ -~]{0,12}",
    ];
    let query = prop_oneof![
        Just("ep=dev-1".to_string()),
        Just("ep=intruder".to_string()),
        (0u8..1).prop_map(|_| format!("ep={}", "e".repeat(10_000))),
        absurd_number().prop_map(|n| format!("lt={n}")),
        Just("lt=99999999999999999999".to_string()),
        Just("lt=0".to_string()),
        Just("lwm2m=1.1".to_string()),
        Just("lwm2m=9.9".to_string()),
        Just("b=UQ".to_string()),
        Just("Q".to_string()),
        absurd_number().prop_map(|n| format!("pmin={n}")),
        "[ -~]{0,30}",
    ];
    let option = prop_oneof![
        (0u16..3000, proptest::collection::vec(any::<u8>(), 0..8)),
        // Block1/Block2 with every SZX, huge numbers; Observe; Size1.
        (Just(27u16), proptest::collection::vec(any::<u8>(), 0..5)),
        (Just(23u16), proptest::collection::vec(any::<u8>(), 0..5)),
        (Just(6u16), proptest::collection::vec(any::<u8>(), 0..5)),
        (Just(60u16), proptest::collection::vec(any::<u8>(), 0..5)),
        (Just(12u16), proptest::collection::vec(any::<u8>(), 0..3)),
    ];
    let payload = prop_oneof![
        Just(b"</1/0>,</3/0>".to_vec()),
        Just(b"</>;rt=\"oma.lwm2m\";ct=11542,</3/0>".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..300),
    ];
    let packet = (
        method,
        any::<bool>(),
        any::<u16>(),
        proptest::collection::vec(any::<u8>(), 0..9),
        proptest::collection::vec(segment, 0..4),
        proptest::collection::vec(query, 0..5),
        proptest::collection::vec(option, 0..4),
        payload,
    )
        .prop_map(
            |(m, con, mid, token, segments, queries, options, payload)| {
                let mut p = Packet::new();
                p.header.code = MessageClass::Request(m);
                p.header.set_type(if con {
                    MessageType::Confirmable
                } else {
                    MessageType::NonConfirmable
                });
                p.header.message_id = mid;
                p.set_token(token);
                for s in segments {
                    p.add_option(CoapOption::UriPath, s.into_bytes());
                }
                for q in queries {
                    p.add_option(CoapOption::UriQuery, q.into_bytes());
                }
                for (n, v) in options {
                    p.add_option(CoapOption::from(n), v);
                }
                p.payload = payload;
                p.to_bytes().unwrap_or_default()
            },
        );
    prop_oneof![
        6 => packet,
        1 => proptest::collection::vec(any::<u8>(), 0..100),
    ]
}
