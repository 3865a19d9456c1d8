//! Property tests: whatever the server (or anyone) sends, the client never panics and its
//! state stays within its bounds.
use super::*;
use crate::client::{MAX_ATTRIBUTE_PATHS, MAX_INSTANCES_PER_OBJECT};
use crate::coap::{CoapOption, MessageClass, MessageType};
use proptest::prelude::*;

/// CoAP requests aimed at the client's objects, with random methods, options and payloads.
fn request_bytes() -> impl Strategy<Value = Vec<u8>> {
    let segment = prop_oneof![
        Just("0".to_string()),
        Just("1".to_string()),
        Just("3".to_string()),
        Just("3303".to_string()),
        Just("dp".to_string()),
        (0u32..70_000).prop_map(|n| n.to_string()),
        "[a-z]{0,3}",
    ];
    (
        0u8..2,
        prop_oneof![1u8..8, Just(0x45), Just(0x84)],
        any::<u16>(),
        proptest::collection::vec(any::<u8>(), 0..4),
        proptest::collection::vec(segment, 0..5),
        proptest::option::of(prop_oneof![
            Just(0u32),
            Just(40),
            Just(42),
            Just(60),
            Just(110),
            Just(112),
            Just(11542),
            Just(11543),
            Just(11544),
            any::<u32>()
        ]),
        proptest::option::of(prop_oneof![
            Just(0u32),
            Just(40),
            Just(112),
            Just(11542),
            Just(11544),
            any::<u32>()
        ]),
        proptest::option::of(0u32..3),
        proptest::collection::vec("(pmin|pmax|gt|lt|st|epmin)(=[0-9.-]{0,4})?", 0..3),
        proptest::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(
            |(ty, code, mid, token, path, cf, accept, obs, query, payload)| {
                let mut p = Packet::new();
                p.header.set_type(if ty == 0 {
                    MessageType::Confirmable
                } else {
                    MessageType::NonConfirmable
                });
                p.header.code = MessageClass::from(code);
                p.header.message_id = mid;
                p.set_token(token);
                for seg in path {
                    p.add_option(CoapOption::UriPath, seg.into_bytes());
                }
                for q in query {
                    p.add_option(CoapOption::UriQuery, q.into_bytes());
                }
                if let Some(cf) = cf {
                    msg::set_uint_option(&mut p, CoapOption::ContentFormat, cf);
                }
                if let Some(a) = accept {
                    msg::set_uint_option(&mut p, CoapOption::Accept, a);
                }
                if let Some(o) = obs {
                    msg::set_uint_option(&mut p, CoapOption::Observe, o);
                }
                p.payload = payload;
                p.to_bytes().unwrap_or_default()
            },
        )
}

fn datagram() -> impl Strategy<Value = (bool, Vec<u8>)> {
    (
        any::<bool>(),
        prop_oneof![
            3 => request_bytes(),
            1 => proptest::collection::vec(any::<u8>(), 0..80),
        ],
    )
}

fn check_bounds(net: &Net) {
    let c = net.client.config();
    let u = net.client.usage();
    assert!(u.observations <= c.max_observations, "{u:?}");
    assert!(u.pending_sends <= c.max_pending_sends, "{u:?}");
    assert!(u.events <= c.max_events, "{u:?}");
    assert!(u.attribute_paths <= MAX_ATTRIBUTE_PATHS, "{u:?}");
    assert!(u.endpoint.dedup <= c.coap.dedup_capacity, "{u:?}");
    assert!(u.endpoint.incoming <= c.coap.max_pending_incoming, "{u:?}");
    assert!(u.endpoint.observers <= c.max_observations, "{u:?}");
    let store = net.client.store();
    for o in store.object_ids() {
        assert!(store.instance_ids(o).count() <= MAX_INSTANCES_PER_OBJECT);
        for i in store.instance_ids(o) {
            let Some(Node::Instance(inst)) = store.get(&Path::instance(o, i)) else {
                panic!("listed instance missing");
            };
            assert!(inst.len() <= crate::client::MAX_RESOURCES_PER_INSTANCE);
            for r in inst.values() {
                if let crate::model::Resource::Multiple(m) = r {
                    assert!(m.len() <= crate::client::MAX_RESOURCE_INSTANCES);
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn arbitrary_datagrams_never_panic_and_state_stays_bounded(
        queue_mode in any::<bool>(),
        datagrams in proptest::collection::vec(datagram(), 1..60),
        changes in proptest::collection::vec((0u16..12, -5i64..120), 0..20),
    ) {
        let mut c = config();
        c.queue_mode = queue_mode;
        c.max_events = 32;
        let mut store = ObjectStore::standard("prop");
        store.add_object(3303);
        let mut net = Net::registered_with(c, store);
        let mut changes = changes.into_iter();
        for (foreign, bytes) in datagrams {
            let now = net.now();
            let from = if foreign { 7 } else { SERVER };
            net.client.handle_datagram(now, from, &bytes);
            net.flush();
            if let Some((r, v)) = changes.next() {
                let now = net.now();
                let _ = net.client.set_value(now, &Path::resource(3, 0, r), crate::model::Value::Integer(v));
                net.flush();
            }
            net.run_for(Duration::from_millis(700));
            check_bounds(&net);
        }
        // Hours later everything has settled: timers left are the registration's and the
        // attributes' own, and the client still answers.
        net.run_for(Duration::from_secs(3 * 3600));
        check_bounds(&net);
        let u = net.client.usage();
        prop_assert_eq!(u.endpoint.unacked, 0);
        prop_assert_eq!(u.endpoint.incoming, 0);
        prop_assert!(net.client.poll_timeout().is_some(), "the registration stays alive");
    }
}

/// One server operation, typed, on paths and values that mostly exist.
fn operation() -> impl Strategy<Value = Packet> {
    let path = prop_oneof![
        Just("/3/0/9"),
        Just("/3/0/13"),
        Just("/3/0/11"),
        Just("/3/0"),
        Just("/3303"),
        Just("/3303/0"),
        Just("/3303/1/5750"),
        Just("/1/0/1"),
        Just("/1/0/2"),
    ];
    (
        0u8..8,
        path,
        0u16..4,
        -10i64..100,
        "(pmin|pmax|gt|lt|st)=[0-9]{1,2}",
    )
        .prop_map(|(op, path, id, v, attr)| {
            let p = Path::parse(path).unwrap();
            let req = match op {
                0 => DownlinkRequest::Read { path: p },
                1 => DownlinkRequest::Observe { path: p },
                2 => DownlinkRequest::Discover { path: p },
                3 => DownlinkRequest::Delete {
                    path: Path::instance(3303, id),
                },
                4 => DownlinkRequest::Create {
                    path: Path::object(3303),
                    node: Node::Object(std::collections::BTreeMap::from([(
                        id,
                        Default::default(),
                    )])),
                },
                5 => DownlinkRequest::Write {
                    path: p,
                    mode: crate::ops::dm::WriteMode::Replace,
                    node: match p.level() {
                        crate::model::PathLevel::Resource => Node::Resource(
                            crate::model::Resource::Single(crate::model::Value::Integer(v)),
                        ),
                        _ => Node::Instance(Default::default()),
                    },
                },
                6 => DownlinkRequest::ObserveComposite {
                    paths: vec![p, Path::resource(3, 0, 10)],
                },
                _ => {
                    return msg::request(RequestType::Put, &format!("{path}?{attr}"));
                }
            };
            req.to_coap(ContentFormat::SenmlCbor)
                .unwrap_or_else(|_| msg::request(RequestType::Get, path))
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn operations_in_any_order_keep_state_consistent(
        ops in proptest::collection::vec((operation(), -10i64..100), 1..40),
    ) {
        let mut store = ObjectStore::standard("prop");
        store.add_object(3303);
        let mut net = Net::registered_with(config(), store);
        for (req, v) in ops {
            let id = net.send(req);
            net.run_until(Duration::from_secs(30), |n| n.outcome(id).is_some());
            let now = net.now();
            let _ = net.client.set_value(now, &Path::resource(3, 0, 9), crate::model::Value::Integer(v));
            net.flush();
            net.run_for(Duration::from_secs(2));
            check_bounds(&net);
            // Every observation the client tracks is one the endpoint serves.
            prop_assert_eq!(net.client.observation_count(), net.client.usage().endpoint.observers);
        }
        prop_assert!(net.client.is_registered());
    }
}
