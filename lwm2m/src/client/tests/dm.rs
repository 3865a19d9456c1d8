//! Device Management (Core §6.3) as the server sees it: every operation answered, with the
//! error codes for missing paths (4.04), forbidden operations (4.05), formats the client
//! does not speak (4.06, 4.15), and content negotiation.
use super::*;
use crate::attributes::NotificationAttributes;
use crate::client::config::ClientError;
use crate::coap::CoapOption;
use crate::content::negotiate::Lwm2mVersion;
use crate::content::Record;
use crate::model::{Instance, Resource, Value};
use crate::ops::dm::{DmResponse, WriteMode};
use std::collections::BTreeMap;

fn p(s: &str) -> Path {
    Path::parse(s).unwrap()
}

fn text(s: &str) -> Node {
    Node::Resource(Resource::Single(Value::String(s.into())))
}

/// A standard device with a temperature sensor and a free-form object holding an opaque
/// value.
fn device() -> Net {
    let mut store = ObjectStore::standard("dev-1");
    store
        .add_instance(
            3303,
            0,
            Instance::from([
                (5700, Resource::Single(Value::Float(21.5))),
                (5701, Resource::Single(Value::String("Cel".into()))),
            ]),
        )
        .unwrap();
    store
        .add_instance(
            10_000,
            0,
            Instance::from([(0, Resource::Single(Value::Opaque(vec![1, 2, 3])))]),
        )
        .unwrap();
    Net::registered_with(config(), store)
}

#[test]
fn reads_every_level_in_the_preferred_format() {
    let mut net = device();
    let resp = net.ask(request(RequestType::Get, "/3/0/0", None));
    assert_eq!(code(&resp), "2.05");
    assert_eq!(format_of(&resp), Some(ContentFormat::SenmlCbor));
    assert_eq!(decode_at(&resp, "/3/0/0"), text("Acme Sensors"));
    let resp = net.ask(request(RequestType::Get, "/3/0", None));
    let Node::Instance(inst) = decode_at(&resp, "/3/0") else {
        panic!()
    };
    // Executable resources have no value; everything readable is there.
    assert_eq!(
        inst.keys().copied().collect::<Vec<_>>(),
        [0, 1, 2, 3, 9, 10, 11, 13, 14, 16]
    );
    let Node::Object(obj) = decode_at(&net.ask(request(RequestType::Get, "/3303", None)), "/3303")
    else {
        panic!()
    };
    assert_eq!(obj[&0][&5700], Resource::Single(Value::Float(21.5)));
    let resp = net.ask(request(RequestType::Get, "/3/0/11/0", None));
    assert_eq!(
        decode_at(&resp, "/3/0/11/0"),
        Node::ResourceInstance(Value::Integer(0))
    );
}

#[test]
fn answers_in_the_accept_format() {
    let mut net = device();
    for (path, format) in [
        ("/3/0/0", ContentFormat::Text),
        ("/3/0/9", ContentFormat::Cbor),
        ("/3/0", ContentFormat::Tlv),
        ("/3/0", ContentFormat::SenmlJson),
        ("/3303/0/5700", ContentFormat::Text),
    ] {
        let resp = net.ask(request(RequestType::Get, path, Some(format)));
        assert_eq!(code(&resp), "2.05", "{path} {format:?}");
        assert_eq!(format_of(&resp), Some(format));
        assert_eq!(
            decode_at(&resp, path),
            net.client.store().get(&p(path)).unwrap()
        );
    }
    assert_eq!(
        net.ask(request(
            RequestType::Get,
            "/3/0/0",
            Some(ContentFormat::Text)
        ))
        .payload,
        b"Acme Sensors"
    );
}

#[test]
fn single_opaque_values_go_as_octet_stream() {
    let mut net = device();
    let resp = net.ask(request(RequestType::Get, "/10000/0/0", None));
    assert_eq!(format_of(&resp), Some(ContentFormat::Opaque));
    assert_eq!(resp.payload, [1, 2, 3]);
    // Asked for text, an opaque value cannot be given.
    let resp = net.ask(request(
        RequestType::Get,
        "/10000/0/0",
        Some(ContentFormat::Text),
    ));
    assert_eq!(code(&resp), "4.06");
}

#[test]
fn read_errors() {
    let mut net = device();
    for (path, accept, want) in [
        ("/3/0/4", None, "4.05"),  // Reboot is executable only
        ("/3/0/99", None, "4.04"), // not in the Device definition
        ("/3/0/15", None, "4.04"), // defined, not implemented
        ("/3/1", None, "4.04"),
        ("/42", None, "4.04"),
        ("/0/0", None, "4.05"), // Security is bootstrap-only
        ("/0/0/0", None, "4.05"),
        ("/3/0/11/7", None, "4.04"),
        ("/3/0", Some(ContentFormat::Text), "4.06"), // text cannot carry an instance
        ("/3/0", Some(ContentFormat::Lwm2mJson), "4.06"), // not offered
        ("/3/0/9", Some(ContentFormat::Opaque), "4.06"),
    ] {
        let resp = net.ask(request(RequestType::Get, path, accept));
        assert_eq!(code(&resp), want, "{path} {accept:?}");
    }
    let mut get = request(RequestType::Get, "/3/0", None);
    msg::set_uint_option(&mut get, CoapOption::Accept, 9999);
    assert_eq!(code(&net.ask(get)), "4.06");
}

#[test]
fn lwm2m_1_0_client_prefers_tlv_and_refuses_composites() {
    let c = config().with_version(Lwm2mVersion::V1_0, false);
    let mut net = Net::registered_with(c, ObjectStore::standard("d"));
    let resp = net.ask(request(RequestType::Get, "/3/0", None));
    assert_eq!(format_of(&resp), Some(ContentFormat::Tlv));
    let read = DownlinkRequest::ReadComposite {
        paths: vec![p("/3/0/0")],
    };
    assert_eq!(code(&net.dm(&read, ContentFormat::SenmlJson)), "4.05");
    let resp = net.ask(request(
        RequestType::Get,
        "/3/0",
        Some(ContentFormat::SenmlCbor),
    ));
    assert_eq!(code(&resp), "4.06");
}

#[test]
fn writes_with_permission_and_type_checks() {
    let mut net = device();
    let put = |path: &str, f: ContentFormat, body: &[u8]| {
        with_payload(msg::request(RequestType::Put, path), f, body)
    };
    let resp = net.ask(put("/3/0/13", ContentFormat::Text, b"1700000100"));
    assert_eq!(code(&resp), "2.04");
    assert_eq!(
        net.client.store().value(&p("/3/0/13")),
        Some(&Value::Time(1_700_000_100))
    );
    assert!(net
        .events
        .iter()
        .any(|(_, e)| *e == ClientEvent::Written { path: p("/3/0/13") }));
    for (path, f, body, want) in [
        ("/3/0/0", ContentFormat::Text, &b"x"[..], "4.05"), // read-only
        ("/3/0/4", ContentFormat::Text, b"1", "4.05"),      // executable
        ("/3/0/99", ContentFormat::Text, b"1", "4.04"),
        ("/3/7/13", ContentFormat::Text, b"1", "4.04"),
        ("/3/0/13", ContentFormat::Text, b"soon", "4.00"),
        ("/3/0/13", ContentFormat::Lwm2mJson, b"{}", "4.15"), // not offered
        ("/0/0/0", ContentFormat::Text, b"coap://x", "4.05"),
        ("/3", ContentFormat::Tlv, b"\xc1\x0e\x01", "4.05"), // objects are not written
    ] {
        let resp = net.ask(put(path, f, body));
        assert_eq!(code(&resp), want, "{path}");
    }
    let mut unknown = put("/3/0/13", ContentFormat::Text, b"1");
    msg::set_uint_option(&mut unknown, CoapOption::ContentFormat, 4242);
    assert_eq!(code(&net.ask(unknown)), "4.15");
    assert_eq!(
        net.client.store().value(&p("/3/0/13")),
        Some(&Value::Time(1_700_000_100)),
        "refused writes change nothing"
    );
}

#[test]
fn replace_removes_what_partial_update_keeps() {
    let mut net = device();
    let write = |mode, values: Vec<(u16, Value)>| DownlinkRequest::Write {
        path: p("/1/0"),
        mode,
        node: Node::Instance(
            values
                .into_iter()
                .map(|(r, v)| (r, Resource::Single(v)))
                .collect(),
        ),
    };
    // Partial update: adds the default minimum period, keeps the rest.
    let resp = net.dm(
        &write(WriteMode::Update, vec![(2, Value::Integer(5))]),
        ContentFormat::SenmlCbor,
    );
    assert_eq!(code(&resp), "2.04");
    let s = net.client.store();
    assert_eq!(s.value(&p("/1/0/2")), Some(&Value::Integer(5)));
    assert_eq!(s.value(&p("/1/0/1")), Some(&Value::Integer(300)));
    // Replace: the optional writable resource not given is gone; read-only and mandatory
    // ones stay.
    let resp = net.dm(
        &write(
            WriteMode::Replace,
            vec![
                (1, Value::Integer(300)),
                (6, Value::Boolean(false)),
                (7, Value::String("U".into())),
            ],
        ),
        ContentFormat::Tlv,
    );
    assert_eq!(code(&resp), "2.04");
    let s = net.client.store();
    assert_eq!(s.value(&p("/1/0/2")), None);
    assert_eq!(s.value(&p("/1/0/0")), Some(&Value::Integer(1)));
    assert_eq!(s.value(&p("/1/0/6")), Some(&Value::Boolean(false)));
    // A write that touches a read-only resource is refused whole.
    let resp = net.dm(
        &write(
            WriteMode::Update,
            vec![(0, Value::Integer(2)), (6, Value::Boolean(true))],
        ),
        ContentFormat::SenmlCbor,
    );
    assert_eq!(code(&resp), "4.05");
    assert_eq!(
        net.client.store().value(&p("/1/0/6")),
        Some(&Value::Boolean(false))
    );
    // An invalid binding is refused.
    let resp = net.dm(
        &write(WriteMode::Update, vec![(7, Value::String("X".into()))]),
        ContentFormat::SenmlCbor,
    );
    assert_eq!(code(&resp), "4.00");
}

#[test]
fn multiple_resources_replace_or_merge() {
    let mut store = ObjectStore::standard("dev-1");
    store
        .add_instance(
            10_001,
            0,
            Instance::from([(
                1,
                Resource::Multiple(BTreeMap::from([
                    (0, Value::Integer(1)),
                    (1, Value::Integer(2)),
                ])),
            )]),
        )
        .unwrap();
    let mut net = Net::registered_with(config(), store);
    let node = |m: &[(u16, i64)]| {
        Node::Resource(Resource::Multiple(
            m.iter().map(|(k, v)| (*k, Value::Integer(*v))).collect(),
        ))
    };
    let path = p("/10001/0/1");
    let w = |mode, n| DownlinkRequest::Write {
        path,
        mode,
        node: n,
    };
    assert_eq!(
        code(&net.dm(
            &w(WriteMode::Update, node(&[(2, 3)])),
            ContentFormat::SenmlCbor
        )),
        "2.04"
    );
    assert_eq!(
        net.client.store().get(&path),
        Some(node(&[(0, 1), (1, 2), (2, 3)]))
    );
    // (TLV would do too, but carries no types: an object without definition gets opaque
    // values from it.)
    assert_eq!(
        code(&net.dm(
            &w(WriteMode::Replace, node(&[(5, 9)])),
            ContentFormat::SenmlJson
        )),
        "2.04"
    );
    assert_eq!(net.client.store().get(&path), Some(node(&[(5, 9)])));
    let one = DownlinkRequest::Write {
        path: p("/10001/0/1/6"),
        mode: WriteMode::Replace,
        node: Node::ResourceInstance(Value::Integer(4)),
    };
    assert_eq!(code(&net.dm(&one, ContentFormat::SenmlCbor)), "2.04");
    assert_eq!(net.client.store().get(&path), Some(node(&[(5, 9), (6, 4)])));
}

#[test]
fn execute_reports_to_the_application() {
    let mut net = device();
    let resp = net.ask(with_payload(
        msg::request(RequestType::Post, "/3/0/4"),
        ContentFormat::Text,
        b"0='now'",
    ));
    assert_eq!(code(&resp), "2.04");
    assert_eq!(
        code(&net.ask(msg::request(RequestType::Post, "/3/0/5"))),
        "2.04"
    );
    assert_eq!(
        net.client_events(|e| match e {
            ClientEvent::Executed { path, args } => Some((path.to_string(), args.clone())),
            _ => None,
        }),
        [
            ("/3/0/4".to_string(), Some("0='now'".to_string())),
            ("/3/0/5".to_string(), None)
        ]
    );
    for (path, want) in [
        ("/3/0/0", "4.05"),  // readable, not executable
        ("/3/0/12", "4.04"), // Reset Error Code: defined, not implemented
        ("/3/1/4", "4.04"),
        ("/3303/0/5700", "4.05"),
        ("/0/0/0", "4.05"),
    ] {
        assert_eq!(
            code(&net.ask(msg::request(RequestType::Post, path))),
            want,
            "{path}"
        );
    }
}

#[test]
fn creates_instances_with_or_without_an_id() {
    let mut net = device();
    let create = |i: u16| DownlinkRequest::Create {
        path: p("/3303"),
        node: Node::Object(BTreeMap::from([(
            i,
            Instance::from([(5700, Resource::Single(Value::Float(1.5)))]),
        )])),
    };
    let resp = net.dm(&create(5), ContentFormat::SenmlCbor);
    assert_eq!(code(&resp), "2.01");
    assert_eq!(msg::location_path(&resp), "/3303/5");
    assert_eq!(
        net.client.store().value(&p("/3303/5/5700")),
        Some(&Value::Float(1.5))
    );
    assert_eq!(
        code(&net.dm(&create(5), ContentFormat::SenmlCbor)),
        "4.00",
        "exists"
    );
    // No id: the client picks the lowest free one.
    let resp = net.ask(msg::request(RequestType::Post, "/3303"));
    assert_eq!(msg::location_path(&resp), "/3303/1");
    // TLV resources without their instance TLV: also the client's choice.
    let tlv = [0xe4, 0x16, 0x44, 0x41, 0xb0, 0x00, 0x00]; // 5700 = 22.0 as float32
    let resp = net.ask(with_payload(
        msg::request(RequestType::Post, "/3303"),
        ContentFormat::Tlv,
        &tlv,
    ));
    assert_eq!(code(&resp), "2.01");
    assert_eq!(msg::location_path(&resp), "/3303/2");
    assert_eq!(
        net.client.store().value(&p("/3303/2/5700")),
        Some(&Value::Float(22.0))
    );
    assert_eq!(
        net.client_events(|e| match e {
            ClientEvent::InstanceCreated { path } => Some(path.to_string()),
            _ => None,
        }),
        ["/3303/5", "/3303/1", "/3303/2"]
    );
    for (path, want) in [
        ("/42", "4.04"),
        ("/3", "4.00"),
        ("/1", "4.05"),
        ("/0", "4.05"),
    ] {
        assert_eq!(
            code(&net.ask(msg::request(RequestType::Post, path))),
            want,
            "{path}"
        );
    }
    let bad = DownlinkRequest::Create {
        path: p("/3303"),
        node: Node::Object(BTreeMap::from([(
            9,
            Instance::from([(1, Resource::Single(Value::Integer(1)))]),
        )])),
    };
    assert_eq!(code(&net.dm(&bad, ContentFormat::SenmlCbor)), "4.00");
}

#[test]
fn deletes_instances_only_where_allowed() {
    let mut net = device();
    assert_eq!(
        code(&net.ask(msg::request(RequestType::Delete, "/3303/0"))),
        "2.02"
    );
    assert!(net.client.store().get(&p("/3303/0")).is_none());
    for (path, want) in [
        ("/3303/0", "4.04"),
        ("/3/0", "4.05"), // the Device instance
        ("/1/0", "4.05"), // our server account
        ("/0/0", "4.05"), // bootstrap-only
        ("/3303", "4.05"),
        ("/3/0/1", "4.05"),
        ("/", "4.05"),
    ] {
        assert_eq!(
            code(&net.ask(msg::request(RequestType::Delete, path))),
            want,
            "{path}"
        );
    }
}

#[test]
fn discover_lists_resources_dims_and_attributes() {
    let mut net = device();
    let discover = |net: &mut Net, path: &str| {
        let resp = net.ask(request(
            RequestType::Get,
            path,
            Some(ContentFormat::LinkFormat),
        ));
        assert_eq!(code(&resp), "2.05");
        assert_eq!(format_of(&resp), Some(ContentFormat::LinkFormat));
        String::from_utf8(resp.payload).unwrap()
    };
    assert_eq!(
        discover(&mut net, "/3/0"),
        "</3/0>,</3/0/0>,</3/0/1>,</3/0/2>,</3/0/3>,</3/0/4>,</3/0/5>,</3/0/9>,</3/0/10>,</3/0/11>;dim=1,</3/0/13>,</3/0/14>,</3/0/16>"
    );
    let wa = |path: &str, q: &str| msg::request(RequestType::Put, &format!("{path}?{q}"));
    assert_eq!(code(&net.ask(wa("/3/0", "pmin=10&pmax=60"))), "2.04");
    assert_eq!(code(&net.ask(wa("/3/0/9", "gt=50&lt=20.5"))), "2.04");
    assert_eq!(code(&net.ask(wa("/3", "pmax=120"))), "2.04");
    assert_eq!(
        discover(&mut net, "/3"),
        "</3>;ver=1.2;pmax=120,</3/0>;pmin=10;pmax=60,</3/0/0>,</3/0/1>,</3/0/2>,</3/0/3>,</3/0/4>,</3/0/5>,</3/0/9>;gt=50;lt=20.5,</3/0/10>,</3/0/11>;dim=1,</3/0/13>,</3/0/14>,</3/0/16>"
    );
    // At resource level the inherited attributes come too.
    assert_eq!(
        discover(&mut net, "/3/0/9"),
        "</3/0/9>;pmin=10;pmax=60;gt=50;lt=20.5"
    );
    assert_eq!(
        discover(&mut net, "/3/0/11"),
        "</3/0/11>;dim=1;pmin=10;pmax=60,</3/0/11/0>"
    );
    // Unset with a bare name.
    assert_eq!(code(&net.ask(wa("/3/0", "pmin"))), "2.04");
    assert!(discover(&mut net, "/3/0").starts_with("</3/0>;pmax=60,"));
    for (path, want) in [
        ("/3/1", "4.04"),
        ("/3/0/15", "4.04"),
        ("/42", "4.04"),
        ("/0", "4.05"),
        ("/3/0/11/0", "4.00"),
    ] {
        let resp = net.ask(request(
            RequestType::Get,
            path,
            Some(ContentFormat::LinkFormat),
        ));
        assert_eq!(code(&resp), want, "{path}");
    }
}

#[test]
fn write_attributes_checks_thresholds() {
    let mut net = device();
    let wa = |path: &str, q: &str| msg::request(RequestType::Put, &format!("{path}?{q}"));
    for (path, q, want) in [
        ("/3/0/9", "gt=50&lt=49&st=1", "4.00"), // lt + 2*st must stay below gt
        ("/3/0/0", "gt=5", "4.00"),             // a string has no threshold
        ("/3/0", "st=1", "4.00"),               // not at instance level
        ("/3/0/9", "pmin=x", "4.00"),
        ("/3/0/15", "pmin=1", "4.04"),
        ("/3/9", "pmin=1", "4.04"),
        ("/3/0/9", "st=2&gt=90&lt=10", "2.04"),
        ("/3/0/4", "pmin=1", "2.04"), // any implemented resource may carry pmin
    ] {
        assert_eq!(code(&net.ask(wa(path, q))), want, "{path}?{q}");
    }
    assert_eq!(
        net.client.store().attributes(&p("/3/0/9")),
        Some(&NotificationAttributes {
            st: Some(2.0),
            gt: Some(90.0),
            lt: Some(10.0),
            ..Default::default()
        })
    );
    // Typed form from ops::dm goes the same way.
    let req = DownlinkRequest::WriteAttributes {
        path: p("/3303/0/5700"),
        attributes: NotificationAttributes {
            pmax: Some(30),
            ..Default::default()
        },
        remove: Vec::new(),
    };
    assert_eq!(code(&net.dm(&req, ContentFormat::Text)), "2.04");
    assert_eq!(
        net.client
            .store()
            .effective_attributes(&p("/3303/0/5700"), 1)
            .pmax,
        Some(30)
    );
}

#[test]
fn read_composite_skips_missing_paths() {
    let mut net = device();
    let read = |paths: &[&str]| DownlinkRequest::ReadComposite {
        paths: paths.iter().map(|s| p(s)).collect(),
    };
    for format in [ContentFormat::SenmlCbor, ContentFormat::SenmlJson] {
        let req = read(&["/3/0/0", "/3/0/9", "/1/0/1", "/3/0/99", "/0/0"]);
        let resp = net.dm(&req, format);
        assert_eq!(code(&resp), "2.05");
        assert_eq!(format_of(&resp), Some(format));
        let DmResponse::Composite { records, .. } = req
            .parse_response(&resp, &*crate::client::bundled_registry())
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(
            records,
            [
                Record {
                    path: p("/3/0/0"),
                    value: Some(Value::String("Acme Sensors".into())),
                    time: None
                },
                Record {
                    path: p("/3/0/9"),
                    value: Some(Value::Integer(87)),
                    time: None
                },
                Record {
                    path: p("/1/0/1"),
                    value: Some(Value::Integer(300)),
                    time: None
                },
            ]
        );
    }
    assert_eq!(
        code(&net.dm(&read(&["/42", "/3/0/99"]), ContentFormat::SenmlCbor)),
        "4.04"
    );
    // A composite request in a single-path format.
    let mut fetch = msg::request(RequestType::Fetch, "/");
    fetch = with_payload(fetch, ContentFormat::Tlv, &[0xc1, 0x00, 0x01]);
    assert_eq!(code(&net.ask(fetch)), "4.15");
}

#[test]
fn write_composite_is_all_or_nothing() {
    let mut net = device();
    let rec = |path: &str, v: Value| Record {
        path: p(path),
        value: Some(v),
        time: None,
    };
    let ok = DownlinkRequest::WriteComposite {
        records: vec![
            rec("/3/0/14", Value::String("+01:00".into())),
            rec("/3303/0/5750", Value::String("K".into())),
        ],
    };
    assert_eq!(code(&net.dm(&ok, ContentFormat::SenmlCbor)), "2.04");
    assert_eq!(
        net.client.store().value(&p("/3/0/14")),
        Some(&Value::String("+01:00".into()))
    );
    let refused = DownlinkRequest::WriteComposite {
        records: vec![
            rec("/3/0/14", Value::String("+02:00".into())),
            rec("/3/0/9", Value::Integer(1)),
        ],
    };
    assert_eq!(code(&net.dm(&refused, ContentFormat::SenmlJson)), "4.05");
    assert_eq!(
        net.client.store().value(&p("/3/0/14")),
        Some(&Value::String("+01:00".into()))
    );
    let missing = DownlinkRequest::WriteComposite {
        records: vec![rec("/3303/9/5750", Value::String("K".into()))],
    };
    assert_eq!(code(&net.dm(&missing, ContentFormat::SenmlCbor)), "4.04");
}

#[test]
fn unsupported_methods_and_paths() {
    let mut net = device();
    let get_root = msg::request(RequestType::Get, "/");
    assert_eq!(code(&net.ask(get_root)), "4.05");
    let patch = msg::request(RequestType::Patch, "/3/0");
    assert_eq!(code(&net.ask(patch)), "4.05");
    assert_eq!(
        code(&net.ask(msg::request(RequestType::Get, "/3/x"))),
        "4.00"
    );
}

#[test]
fn send_posts_records_and_reports_the_answer() {
    let mut net = device();
    let now = net.now();
    let id = net
        .client
        .send(
            now,
            vec![Record {
                path: p("/3303/0/5700"),
                value: Some(Value::Float(22.5)),
                time: Some(1_700_000_000.0),
            }],
        )
        .unwrap();
    net.flush();
    net.run_for(Duration::from_secs(1));
    let dp = &net.seen[0].request;
    assert_eq!(msg::uri_path(dp), "/dp");
    assert_eq!(format_of(dp), Some(ContentFormat::SenmlCbor));
    let (send, _) =
        crate::ops::reporting::SendRequest::from_coap(dp, &*crate::client::bundled_registry())
            .unwrap();
    assert_eq!(send.records[0].value, Some(Value::Float(22.5)));
    assert_eq!(
        net.client_events(|e| match e {
            ClientEvent::SendCompleted { id, result } => Some((*id, result.clone())),
            _ => None,
        }),
        [(id, Ok(()))]
    );
    // send_paths reads the current values; a refusal comes back as an error.
    net.registrar = Box::new(|_| Some(msg::response(ResponseType::NotFound)));
    let now = net.now();
    let id2 = net.client.send_paths(now, &[p("/3/0/9")]).unwrap();
    net.flush();
    net.run_for(Duration::from_secs(1));
    let (send, _) = crate::ops::reporting::SendRequest::from_coap(
        &net.seen[1].request,
        &*crate::client::bundled_registry(),
    )
    .unwrap();
    assert_eq!(send.records[0].path, p("/3/0/9"));
    assert!(net.events.iter().any(|(_, e)| *e
        == ClientEvent::SendCompleted {
            id: id2,
            result: Err(ClientError::Rejected(crate::ops::Lwm2mError::NotFound))
        }));
}

#[test]
fn send_refusals() {
    let mut net = Net::standard();
    assert_eq!(
        net.client.send(net.now(), vec![]),
        Err(ClientError::NotRegistered)
    );
    let c = config().with_version(Lwm2mVersion::V1_0, false);
    let mut net = Net::registered_with(c, ObjectStore::standard("d"));
    assert_eq!(
        net.client.send(net.now(), vec![]),
        Err(ClientError::Unsupported("Send"))
    );
    let mut net = device();
    let now = net.now();
    net.client
        .set_value(now, &p("/1/0/23"), Value::Boolean(true))
        .unwrap();
    assert_eq!(net.client.send(now, vec![]), Err(ClientError::Muted));
}

#[test]
fn lwm2m_1_2_client_speaks_lwm2m_cbor_when_configured() {
    let c = config().with_version(Lwm2mVersion::V1_2, true);
    let mut net = Net::new(c, ObjectStore::standard("d"));
    net.start_client();
    assert!(net.run_until(Duration::from_secs(5), |n| n.client.is_registered()));
    assert!(msg::uri_query(&net.seen[0].request).contains(&"lwm2m=1.2".to_string()));
    assert!(String::from_utf8(net.seen[0].request.payload.clone())
        .unwrap()
        .starts_with(r#"</>;rt="oma.lwm2m";ct="11544 112 110 11542 60""#));
    let resp = net.ask(request(RequestType::Get, "/3/0", None));
    assert_eq!(format_of(&resp), Some(ContentFormat::Lwm2mCbor));
    assert_eq!(
        decode_at(&resp, "/3/0"),
        net.client.store().get(&p("/3/0")).unwrap()
    );
    let now = net.now();
    net.client.send_paths(now, &[p("/3/0/9")]).unwrap();
    net.flush();
    net.run_for(Duration::from_secs(1));
    let dp = &net.seen.last().unwrap().request;
    assert_eq!(format_of(dp), Some(ContentFormat::Lwm2mCbor));
    let (send, _) =
        crate::ops::reporting::SendRequest::from_coap(dp, &*crate::client::bundled_registry())
            .unwrap();
    assert_eq!(send.records[0].value, Some(Value::Integer(87)));
}

#[test]
fn writes_cannot_grow_a_multiple_resource_without_bound() {
    let mut store = ObjectStore::standard("dev-1");
    store
        .add_instance(
            10_001,
            0,
            Instance::from([(1, Resource::Multiple(BTreeMap::new()))]),
        )
        .unwrap();
    let mut net = Net::registered_with(config(), store);
    let limit = crate::client::MAX_RESOURCE_INSTANCES as u16;
    for batch in 0..limit / 64 {
        let node = Node::Resource(Resource::Multiple(
            (batch * 64..(batch + 1) * 64)
                .map(|k| (k, Value::Integer(1)))
                .collect(),
        ));
        let w = DownlinkRequest::Write {
            path: p("/10001/0/1"),
            mode: WriteMode::Update,
            node,
        };
        assert_eq!(code(&net.dm(&w, ContentFormat::SenmlCbor)), "2.04");
    }
    let one_more = DownlinkRequest::Write {
        path: p(&format!("/10001/0/1/{limit}")),
        mode: WriteMode::Replace,
        node: Node::ResourceInstance(Value::Integer(1)),
    };
    assert_eq!(code(&net.dm(&one_more, ContentFormat::SenmlCbor)), "4.00");
    let rec = Record {
        path: p(&format!("/10001/0/1/{limit}")),
        value: Some(Value::Integer(1)),
        time: None,
    };
    let composite = DownlinkRequest::WriteComposite { records: vec![rec] };
    assert_eq!(code(&net.dm(&composite, ContentFormat::SenmlCbor)), "4.00");
    let Some(Node::Resource(Resource::Multiple(m))) = net.client.store().get(&p("/10001/0/1"))
    else {
        panic!()
    };
    assert_eq!(m.len(), usize::from(limit));
    // Overwriting an existing instance is still fine.
    let again = DownlinkRequest::Write {
        path: p("/10001/0/1/0"),
        mode: WriteMode::Replace,
        node: Node::ResourceInstance(Value::Integer(2)),
    };
    assert_eq!(code(&net.dm(&again, ContentFormat::SenmlCbor)), "2.04");
}
