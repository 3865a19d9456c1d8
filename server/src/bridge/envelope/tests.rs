//! Every command shape (EMQX's own examples first), every uplink shape, the value types
//! both ways, and arbitrary input.
use super::downlink::*;
use super::uplink::*;
use super::values::*;
use super::*;
use crate::core::types::{Command, CommandError, Content, DeregisterReason, Outcome, Registration};
use lwm2m::attributes::NotificationAttributes;
use lwm2m::content::link::{DiscoverEntry, ObjectLinks};
use lwm2m::content::negotiate::Lwm2mVersion;
use lwm2m::content::{ContentFormat, Record};
use lwm2m::model::ObjectLink;
use lwm2m::model::{Instance, Node, Path, Registry, Resource, ResourceType, Value};
use lwm2m::ops::dm::{DmResponse, DownlinkRequest, WriteMode};
use lwm2m::ops::registration::Binding;
use lwm2m::ops::Lwm2mError;
use proptest::prelude::*;
use serde_json::json;
use serde_json::{Map, Value as Json};
use std::collections::BTreeMap;
use std::time::Duration;
use std::time::SystemTime;

fn schema() -> Registry {
    Registry::bundled()
}

fn parse(v: Json) -> Result<Parsed, EnvelopeError> {
    parse_command("dev-1", v.to_string().as_bytes(), &schema())
}

/// The DownlinkRequest of a command that must parse.
fn request(v: Json) -> DownlinkRequest {
    match parse(v.clone()) {
        Ok(Parsed {
            action: Action::Command(cmd),
            ..
        }) => {
            assert_eq!(cmd.endpoint, "dev-1");
            cmd.request
        }
        other => panic!("{v} gave {other:?}"),
    }
}

/// The message of a command that must fail.
fn refused(v: Json) -> EnvelopeError {
    match parse(v.clone()) {
        Err(e) => e,
        Ok(p) => panic!("{v} was accepted: {p:?}"),
    }
}

fn p(s: &str) -> Path {
    Path::parse(s).unwrap()
}

fn instance(entries: &[(u16, Resource)]) -> Instance {
    entries.iter().cloned().collect()
}

// ----- downlink: EMQX documentation examples -----

#[test]
fn emqx_doc_read_discover_observe() {
    let read = parse(json!({"reqID": 1, "msgType": "read", "data": {"path": "/3/0/1"}})).unwrap();
    assert_eq!(read.req_id, json!(1));
    assert_eq!(read.msg_type, "read");
    assert_eq!(
        read.action,
        Action::Command(Command::new(
            "dev-1",
            DownlinkRequest::Read { path: p("/3/0/1") }
        ))
    );
    assert_eq!(
        request(json!({"reqID": 2, "msgType": "discover", "data": {"path": "/3/0"}})),
        DownlinkRequest::Discover { path: p("/3/0") }
    );
    assert_eq!(
        request(json!({"reqID": 10, "msgType": "observe", "data": {"path": "/31024/0/1"}})),
        DownlinkRequest::Observe {
            path: p("/31024/0/1")
        }
    );
}

#[test]
fn emqx_doc_single_and_batch_write() {
    assert_eq!(
        request(json!({"reqID": 3, "msgType": "write", "data": {
            "path": "/31024/11/1", "type": "String", "value": "write_an_example_value"}})),
        DownlinkRequest::Write {
            path: p("/31024/11/1"),
            mode: WriteMode::Replace,
            node: Node::Resource(Resource::Single(Value::String(
                "write_an_example_value".into()
            ))),
        }
    );
    assert_eq!(
        request(json!({"reqID": 3, "msgType": "write", "data": {
            "basePath": "/31024/11/", "content": [
                {"path": "1", "type": "String", "value": "write_the_1st_value"},
                {"path": "2", "type": "String", "value": "write_the_2nd_value"}]}})),
        DownlinkRequest::Write {
            path: p("/31024/11"),
            mode: WriteMode::Update,
            node: Node::Instance(instance(&[
                (
                    1,
                    Resource::Single(Value::String("write_the_1st_value".into()))
                ),
                (
                    2,
                    Resource::Single(Value::String("write_the_2nd_value".into()))
                ),
            ])),
        }
    );
}

// ----- downlink: EMQX test suite (emqx_lwm2m_SUITE.erl) examples -----

#[test]
fn emqx_suite_writes() {
    // case20_single_write: an Integer given as a string, for the Time resource /3/0/13.
    assert_eq!(
        request(json!({"reqID": 307, "msgType": "write", "data": {
            "path": "/3/0/13", "type": "Integer", "value": "12345"}})),
        DownlinkRequest::Write {
            path: p("/3/0/13"),
            mode: WriteMode::Replace,
            node: Node::Resource(Resource::Single(Value::Time(12345))),
        }
    );
    // case20_write: a batch at resource level, the one entry without a path.
    assert_eq!(
        request(json!({"reqID": 307, "msgType": "write", "data": {
            "basePath": "/3/0/13", "content": [{"type": "Float", "value": "12345.0"}]}})),
        DownlinkRequest::Write {
            path: p("/3/0/13"),
            mode: WriteMode::Replace,
            node: Node::Resource(Resource::Single(Value::Time(12345))),
        }
    );
    // case21_write_object: an instance, one entry a resource instance.
    assert_eq!(
        request(json!({"reqID": 307, "msgType": "write", "data": {
            "basePath": "/3/0/", "content": [
                {"path": "13", "type": "Integer", "value": "12345"},
                {"path": "14", "type": "String", "value": "87x"},
                {"path": "6/0", "type": "Integer", "value": "1"}]}})),
        DownlinkRequest::Write {
            path: p("/3/0"),
            mode: WriteMode::Update,
            node: Node::Instance(instance(&[
                (
                    6,
                    Resource::Multiple(BTreeMap::from([(0, Value::Integer(1))]))
                ),
                (13, Resource::Single(Value::Time(12345))),
                (14, Resource::Single(Value::String("87x".into()))),
            ])),
        }
    );
    // case23_write_multi_resource_instance: the last value for a path wins.
    let link = |object, instance| Value::ObjectLink(ObjectLink { object, instance });
    assert_eq!(
        request(
            json!({"reqID": 400, "msgType": "write", "mheaders": {"ttl": 0}, "data": {
            "basePath": "/3/0/22", "content": [
                {"path": "0", "type": "Objlnk", "value": "1:2"},
                {"path": "1", "type": "Objlnk", "value": "1:3"},
                {"path": "1", "type": "Objlnk", "value": "1:4"}]}})
        ),
        DownlinkRequest::Write {
            path: p("/3/0/22"),
            mode: WriteMode::Replace,
            node: Node::Resource(Resource::Multiple(BTreeMap::from([
                (0, link(1, 2)),
                (1, link(1, 4))
            ]))),
        }
    );
    // case26_write_object_instance_mixed, the part that fits the Device object: leading
    // slashes in relative paths, numbers as JSON numbers, a repeated path.
    assert_eq!(
        request(json!({"reqID": 560, "msgType": "write", "data": {
            "basePath": "/3/0", "content": [
                {"path": "/6/0", "type": "Integer", "value": 1},
                {"path": "6/1", "type": "Integer", "value": 2},
                {"path": "13", "type": "Time", "value": 10},
                {"path": "13", "type": "Time", "value": 11},
                {"path": "300", "type": "Opaque", "value": "QkJC"}]}})),
        DownlinkRequest::Write {
            path: p("/3/0"),
            mode: WriteMode::Update,
            node: Node::Instance(instance(&[
                (
                    6,
                    Resource::Multiple(BTreeMap::from([
                        (0, Value::Integer(1)),
                        (1, Value::Integer(2))
                    ]))
                ),
                (13, Resource::Single(Value::Time(11))),
                (300, Resource::Single(Value::Opaque(b"BBB".to_vec()))),
            ])),
        }
    );
    // The rest of case26 contradicts the Device object; EMQX sends it anyway, we refuse.
    let e = refused(json!({"reqID": 560, "msgType": "write", "data": {
        "basePath": "/3/0", "content": [{"path": "11", "type": "Boolean", "value": "true"}]}}));
    assert!(e.message.contains("multiple-instance"), "{}", e.message);
    let e = refused(json!({"reqID": 560, "msgType": "write", "data": {
        "basePath": "/3/0", "content": [{"path": "12", "type": "Boolean", "value": "false"}]}}));
    assert!(e.message.contains("executable"), "{}", e.message);
    let e = refused(json!({"reqID": 560, "msgType": "write", "data": {
        "basePath": "/3/0", "content": [{"path": "14", "type": "Float", "value": 1.5}]}}));
    assert!(e.message.contains("does not fit"), "{}", e.message);
}

#[test]
fn emqx_suite_hex_encoding() {
    // case27_write_hex_encoding
    assert_eq!(
        request(
            json!({"reqID": 308, "msgType": "write", "encoding": "hex", "data": {
            "path": "/3/0/1", "type": "String", "value": "48656C6C6F"}})
        ),
        DownlinkRequest::Write {
            path: p("/3/0/1"),
            mode: WriteMode::Replace,
            node: Node::Resource(Resource::Single(Value::String("Hello".into()))),
        }
    );
    assert_eq!(
        request(
            json!({"reqID": 308, "msgType": "write", "encoding": "hex", "data": {
            "path": "/5/0/0", "type": "Opaque", "value": "00ff10"}})
        ),
        DownlinkRequest::Write {
            path: p("/5/0/0"),
            mode: WriteMode::Replace,
            node: Node::Resource(Resource::Single(Value::Opaque(vec![0, 255, 16]))),
        }
    );
    // case27_write_hex_encoding_invalid: 4.00, nothing sent.
    let e = refused(
        json!({"reqID": 309, "msgType": "write", "encoding": "hex", "data": {
        "path": "/3/0/1", "type": "String", "value": "ZZ"}}),
    );
    assert!(e.message.contains("not hex"), "{}", e.message);
    assert_eq!(e.req_id, Some(json!(309)));
    assert_eq!(e.msg_type.as_deref(), Some("write"));
}

#[test]
fn emqx_suite_create_delete_execute() {
    // case_create_basic
    assert_eq!(
        request(
            json!({"msgType": "create", "reqID": 307, "data": {"content": [], "basePath": "/5"}})
        ),
        DownlinkRequest::Create {
            path: p("/5"),
            node: Node::Object(BTreeMap::new()),
        }
    );
    // case_create_with_content: paths are instance/resource below the object.
    assert_eq!(
        request(
            json!({"msgType": "create", "reqID": 308, "data": {"content": [
            {"path": "0/0", "type": "Float", "value": "1.5"},
            {"path": "0/4", "type": "Opaque", "value": "AQID"},
            {"path": "0/21", "type": "Integer", "value": "-129"},
            {"path": "1/0", "type": "Float", "value": "2.5"}], "basePath": "/6"}})
        ),
        DownlinkRequest::Create {
            path: p("/6"),
            node: Node::Object(BTreeMap::from([
                (
                    0,
                    instance(&[
                        (0, Resource::Single(Value::Float(1.5))),
                        (4, Resource::Single(Value::Opaque(vec![1, 2, 3]))),
                        (21, Resource::Single(Value::Integer(-129))),
                    ])
                ),
                (1, instance(&[(0, Resource::Single(Value::Float(2.5)))])),
            ])),
        }
    );
    // case_delete_basic
    assert_eq!(
        request(json!({"reqID": 307, "msgType": "delete", "data": {"path": "/5/0"}})),
        DownlinkRequest::Delete { path: p("/5/0") }
    );
    // case30_execute: "undefined" arguments are none; case31_execute_error: "2,7".
    assert_eq!(
        request(
            json!({"reqID": 307, "msgType": "execute", "data": {"path": "/3/0/4", "args": "undefined"}})
        ),
        DownlinkRequest::Execute {
            path: p("/3/0/4"),
            args: None
        }
    );
    assert_eq!(
        request(
            json!({"reqID": 307, "msgType": "execute", "data": {"path": "/3/0/4", "args": "2,7"}})
        ),
        DownlinkRequest::Execute {
            path: p("/3/0/4"),
            args: Some("2,7".into())
        }
    );
    assert_eq!(
        request(json!({"reqID": 7, "msgType": "execute", "data": {"path": "/3/0/4"}})),
        DownlinkRequest::Execute {
            path: p("/3/0/4"),
            args: None
        }
    );
}

#[test]
fn emqx_suite_write_attr_and_observe() {
    // case50_write_attribute: strings, a null and an unknown key ignored.
    assert_eq!(
        request(json!({"reqID": 307, "msgType": "write-attr", "data": {
            "path": "/3/0/9", "pmin": "1", "pmax": "5", "lt": "5", "st": null, "ignored": "1"}})),
        DownlinkRequest::WriteAttributes {
            path: p("/3/0/9"),
            attributes: NotificationAttributes {
                pmin: Some(1),
                pmax: Some(5),
                lt: Some(5.0),
                ..Default::default()
            },
            remove: vec![],
        }
    );
    // Ours: JSON numbers, epmin/epmax, removals.
    assert_eq!(
        request(json!({"reqID": 8, "msgType": "write-attr", "data": {
            "path": "/3303/0/5700", "gt": 20.5, "st": 0.5, "epmin": 1, "epmax": 30,
            "remove": ["pmax"]}})),
        DownlinkRequest::WriteAttributes {
            path: p("/3303/0/5700"),
            attributes: NotificationAttributes {
                gt: Some(20.5),
                st: Some(0.5),
                epmin: Some(1),
                epmax: Some(30),
                ..Default::default()
            },
            remove: vec!["pmax".into()],
        }
    );
    // case60_observe, then its cancel-observe.
    assert_eq!(
        request(json!({"reqID": 307, "msgType": "observe", "data": {"path": "/3/0/10"}})),
        DownlinkRequest::Observe { path: p("/3/0/10") }
    );
    let cancel =
        parse(json!({"reqID": 308, "msgType": "cancel-observe", "data": {"path": "/3/0/10"}}))
            .unwrap();
    assert_eq!(cancel.action, Action::CancelObserve(p("/3/0/10")));
    assert_eq!(cancel.msg_type, "cancel-observe");
}

#[test]
fn a_query_after_the_path_is_ignored_and_string_req_ids_are_kept() {
    // case14_read_text_types sends "/6/0/0?foo=bar&baz=1".
    let read =
        parse(json!({"reqID": "a-1", "msgType": "read", "data": {"path": "/6/0/0?foo=bar&baz=1"}}))
            .unwrap();
    assert_eq!(read.req_id, json!("a-1"));
    assert_eq!(
        read.action,
        Action::Command(Command::new(
            "dev-1",
            DownlinkRequest::Read { path: p("/6/0/0") }
        ))
    );
    // For write-attr the query holds attributes, as EMQX passes it on as Uri-Query.
    assert_eq!(
        request(
            json!({"reqID": 1, "msgType": "write-attr", "data": {"path": "/3/0/9?pmin=3", "pmax": 9}})
        ),
        DownlinkRequest::WriteAttributes {
            path: p("/3/0/9"),
            attributes: NotificationAttributes {
                pmin: Some(3),
                pmax: Some(9),
                ..Default::default()
            },
            remove: vec![],
        }
    );
}

// ----- downlink: our additions -----

#[test]
fn composites() {
    assert_eq!(
        request(
            json!({"reqID": 1, "msgType": "read-composite", "data": {"paths": ["/3/0/0", "/1/0", "/"]}})
        ),
        DownlinkRequest::ReadComposite {
            paths: vec![p("/3/0/0"), p("/1/0"), Path::ROOT]
        }
    );
    assert_eq!(
        request(
            json!({"reqID": 1, "msgType": "observe-composite", "data": {"paths": ["/3303/0/5700"]}})
        ),
        DownlinkRequest::ObserveComposite {
            paths: vec![p("/3303/0/5700")]
        }
    );
    assert_eq!(
        request(
            json!({"reqID": 1, "msgType": "write-composite", "data": {"content": [
            {"path": "/3/0/14", "value": "+02:00"},
            {"path": "/3303/0/5701", "type": "String", "value": "Cel"},
            {"path": "/3/0/7/1", "value": null}]}})
        ),
        DownlinkRequest::WriteComposite {
            records: vec![
                Record {
                    path: p("/3/0/7/1"),
                    value: None,
                    time: None
                },
                Record {
                    path: p("/3/0/14"),
                    value: Some(Value::String("+02:00".into())),
                    time: None
                },
                Record {
                    path: p("/3303/0/5701"),
                    value: Some(Value::String("Cel".into())),
                    time: None
                },
            ]
        }
    );
    assert_eq!(
        request(
            json!({"reqID": 1, "msgType": "write-composite", "data": {"basePath": "/3/0",
            "content": [{"path": "13", "value": 1700000000}]}})
        ),
        DownlinkRequest::WriteComposite {
            records: vec![Record {
                path: p("/3/0/13"),
                value: Some(Value::Time(1_700_000_000)),
                time: None
            }]
        }
    );
}

#[test]
fn options_and_write_mode() {
    let parsed = parse(
        json!({"reqID": 1, "msgType": "read", "format": "senml-cbor",
        "timeout": 5, "ttl": 3600.5, "data": {"path": "/3/0"}}),
    )
    .unwrap();
    let Action::Command(cmd) = parsed.action else {
        panic!("not a command")
    };
    assert_eq!(cmd.format, Some(ContentFormat::SenmlCbor));
    assert_eq!(cmd.timeout, Some(Duration::from_secs(5)));
    assert_eq!(cmd.ttl, Some(Duration::from_millis(3_600_500)));
    for (format, want) in [
        (json!(11542), ContentFormat::Tlv),
        (
            json!("application/vnd.oma.lwm2m+cbor"),
            ContentFormat::Lwm2mCbor,
        ),
        (json!("TLV"), ContentFormat::Tlv),
        (json!("110"), ContentFormat::SenmlJson),
    ] {
        let parsed = parse(
            json!({"reqID": 1, "msgType": "read", "format": format, "data": {"path": "/3/0"}}),
        )
        .unwrap();
        assert!(matches!(parsed.action, Action::Command(c) if c.format == Some(want)));
    }
    assert_eq!(
        request(
            json!({"reqID": 1, "msgType": "write", "data": {"mode": "replace", "basePath": "/3/0",
            "content": [{"path": "14", "value": "+01:00"}]}})
        ),
        DownlinkRequest::Write {
            path: p("/3/0"),
            mode: WriteMode::Replace,
            node: Node::Instance(instance(&[(
                14,
                Resource::Single(Value::String("+01:00".into()))
            )])),
        }
    );
    assert_eq!(
        request(
            json!({"reqID": 1, "msgType": "write", "data": {"mode": "update",
            "path": "/3/0/7/0", "value": 3800}})
        ),
        DownlinkRequest::Write {
            path: p("/3/0/7/0"),
            mode: WriteMode::Update,
            node: Node::ResourceInstance(Value::Integer(3800)),
        }
    );
}

#[test]
fn types_come_from_the_object_model_when_absent() {
    for (path, value, want) in [
        ("/3/0/13", json!(1_700_000_000), Value::Time(1_700_000_000)),
        ("/3/0/13", json!("1700000000"), Value::Time(1_700_000_000)),
        ("/3303/0/5700", json!(21), Value::Float(21.0)),
        ("/3303/0/5700", json!("21.5"), Value::Float(21.5)),
        ("/5/0/14", json!("true"), Value::Boolean(true)),
        ("/5/0/13", json!(60), Value::UnsignedInteger(60)),
        ("/5/0/0", json!("AQID"), Value::Opaque(vec![1, 2, 3])),
        ("/5/0/0", json!("AQI"), Value::Opaque(vec![1, 2])),
        ("/31024/0/1", json!(7), Value::Integer(7)),
        ("/31024/0/1", json!("x"), Value::String("x".into())),
        ("/31024/0/1", json!(2.5), Value::Float(2.5)),
    ] {
        assert_eq!(
            request(
                json!({"reqID": 1, "msgType": "write", "data": {"path": path, "value": value}})
            ),
            DownlinkRequest::Write {
                path: p(path),
                mode: WriteMode::Replace,
                node: Node::Resource(Resource::Single(want)),
            },
            "{path} {value}"
        );
    }
}

// ----- downlink: every malformed shape -----

#[test]
fn every_malformed_shape_is_an_error_that_says_why() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"not json".to_vec(), "not JSON"),
        (b"".to_vec(), "not JSON"),
        (b"\xff\xfe".to_vec(), "not JSON"),
        (b"[1,2]".to_vec(), "must be a JSON object, not an array"),
        (b"42".to_vec(), "must be a JSON object"),
        (br#"{"msgType":"read","data":{"path":"/3/0/0"}}"#.to_vec(), "missing reqID"),
        (br#"{"reqID":null,"msgType":"read","data":{"path":"/3/0/0"}}"#.to_vec(), "missing reqID"),
        (br#"{"reqID":{"a":1},"msgType":"read","data":{}}"#.to_vec(), "reqID must be a number or a string"),
        (br#"{"reqID":1,"data":{}}"#.to_vec(), "missing msgType"),
        (br#"{"reqID":1,"msgType":5,"data":{}}"#.to_vec(), "msgType must be a string"),
        (br#"{"reqID":1,"msgType":"frob","data":{}}"#.to_vec(), "unknown msgType \"frob\""),
        (br#"{"reqID":1,"msgType":"READ","data":{}}"#.to_vec(), "unknown msgType"),
        (br#"{"reqID":1,"msgType":"read"}"#.to_vec(), "missing data"),
        (br#"{"reqID":1,"msgType":"read","data":"/3/0/0"}"#.to_vec(), "data must be an object"),
        (br#"{"reqID":1,"msgType":"read","data":{}}"#.to_vec(), "missing data.path"),
        (br#"{"reqID":1,"msgType":"read","data":{"path":3}}"#.to_vec(), "data.path must be a string"),
        (br#"{"reqID":1,"msgType":"read","data":{"path":"/3/x"}}"#.to_vec(), "invalid path segment"),
        (br#"{"reqID":1,"msgType":"read","data":{"path":"/3/0/0/0/0"}}"#.to_vec(), "at most 4"),
        (br#"{"reqID":1,"msgType":"read","data":{"path":"/65535"}}"#.to_vec(), "invalid path segment"),
        (br#"{"reqID":1,"msgType":"read","data":{"path":"/"}}"#.to_vec(), "data.path / must be"),
        (br#"{"reqID":1,"msgType":"observe","data":{"path":""}}"#.to_vec(), "must be"),
        (br#"{"reqID":1,"msgType":"execute","data":{"path":"/3/0"}}"#.to_vec(), "must be a resource"),
        (br#"{"reqID":1,"msgType":"execute","data":{"path":"/3/0/4","args":5}}"#.to_vec(), "data.args must be a string"),
        (br#"{"reqID":1,"msgType":"delete","data":{"path":"/3"}}"#.to_vec(), "must be an object instance"),
        (br#"{"reqID":1,"msgType":"write","data":{"path":"/3/0/14"}}"#.to_vec(), "missing data.value"),
        (br#"{"reqID":1,"msgType":"write","data":{"value":1}}"#.to_vec(), "missing data.path"),
        (br#"{"reqID":1,"msgType":"write","data":{"path":"/3/0","value":1}}"#.to_vec(), "a resource or resource instance"),
        (br#"{"reqID":1,"msgType":"write","data":{"path":"/3/0/9","value":"abc"}}"#.to_vec(), "expected an integer"),
        (br#"{"reqID":1,"msgType":"write","data":{"path":"/3/0/9","type":"Float","value":1.5}}"#.to_vec(), "does not fit"),
        (br#"{"reqID":1,"msgType":"write","data":{"path":"/3/0/4","value":1}}"#.to_vec(), "executable"),
        (br#"{"reqID":1,"msgType":"write","data":{"path":"/3/0/7","value":1}}"#.to_vec(), "multiple-instance"),
        (br#"{"reqID":1,"msgType":"write","data":{"path":"/3/0/9/0","value":1}}"#.to_vec(), "single-instance"),
        (br#"{"reqID":1,"msgType":"write","data":{"path":"/31024/0/1","type":"Quaternion","value":1}}"#.to_vec(), "unknown type"),
        (br#"{"reqID":1,"msgType":"write","data":{"path":"/31024/0/1","type":7,"value":1}}"#.to_vec(), "data.type must be a string"),
        (br#"{"reqID":1,"msgType":"write","data":{"path":"/31024/0/1","value":[1]}}"#.to_vec(), "expected a value"),
        (br#"{"reqID":1,"msgType":"write","data":{"path":"/5/0/0","value":"!!!"}}"#.to_vec(), "not base64"),
        (br#"{"reqID":1,"msgType":"write","data":{"path":"/5/0/0","value":5}}"#.to_vec(), "expected a base64 string"),
        (br#"{"reqID":1,"msgType":"write","data":{"path":"/3/0/22/0","value":"3"}}"#.to_vec(), "object link"),
        (br#"{"reqID":1,"msgType":"write","data":{"path":"/5/0/14","value":"yes"}}"#.to_vec(), "expected a boolean"),
        (br#"{"reqID":1,"msgType":"write","data":{"path":"/5/0/13","value":-1}}"#.to_vec(), "expected an unsigned integer"),
        (br#"{"reqID":1,"msgType":"write","data":{"path":"/3303/0/5700","value":"NaN"}}"#.to_vec(), "expected a number"),
        (br#"{"reqID":1,"msgType":"write","data":{"path":"/3/0/14","value":1,"mode":"merge"}}"#.to_vec(), "data.mode"),
        (br#"{"reqID":1,"msgType":"write","data":{"basePath":5}}"#.to_vec(), "data.basePath must be a string"),
        (br#"{"reqID":1,"msgType":"write","data":{"basePath":"/3/0"}}"#.to_vec(), "missing data.content"),
        (br#"{"reqID":1,"msgType":"write","data":{"basePath":"/3/0","content":{}}}"#.to_vec(), "must be an array"),
        (br#"{"reqID":1,"msgType":"write","data":{"basePath":"/3/0","content":[]}}"#.to_vec(), "nothing to write"),
        (br#"{"reqID":1,"msgType":"write","data":{"basePath":"/3/0","content":[5]}}"#.to_vec(), "data.content[0] must be an object"),
        (br#"{"reqID":1,"msgType":"write","data":{"basePath":"/3/0","content":[{"path":"14"}]}}"#.to_vec(), "missing value"),
        (br#"{"reqID":1,"msgType":"write","data":{"basePath":"/3/0","content":[{"path":"14","value":null}]}}"#.to_vec(), "missing value"),
        (br#"{"reqID":1,"msgType":"write","data":{"basePath":"/3/0","content":[{"path":"x","value":1}]}}"#.to_vec(), "invalid path segment"),
        (br#"{"reqID":1,"msgType":"write","data":{"basePath":"/3/0","content":[{"path":"7/1/2","value":1}]}}"#.to_vec(), "deeper"),
        (br#"{"reqID":1,"msgType":"write","data":{"basePath":"/3","content":[{"path":"0/14","value":"x"}]}}"#.to_vec(), "data.basePath /3 must be"),
        (br#"{"reqID":1,"msgType":"write","data":{"basePath":"/3/0","content":[{"path":"14","value":"a"},{"path":"14/0","value":"b"}]}}"#.to_vec(), "single-instance"),
        (br#"{"reqID":1,"msgType":"create","data":{"content":[]}}"#.to_vec(), "missing data.basePath"),
        (br#"{"reqID":1,"msgType":"create","data":{"basePath":"/6/0","content":[]}}"#.to_vec(), "must be an object"),
        (br#"{"reqID":1,"msgType":"create","data":{"basePath":"/6","content":[{"path":"0","value":1}]}}"#.to_vec(), "a resource or resource instance"),
        (br#"{"reqID":1,"msgType":"write-attr","data":{"path":"/3/0/9"}}"#.to_vec(), "no attribute"),
        (br#"{"reqID":1,"msgType":"write-attr","data":{"path":"/3/0/9","pmin":"x"}}"#.to_vec(), "bad attribute"),
        (br#"{"reqID":1,"msgType":"write-attr","data":{"path":"/3/0/9","pmin":-1}}"#.to_vec(), "bad attribute"),
        (br#"{"reqID":1,"msgType":"write-attr","data":{"path":"/3/0/9","pmin":true}}"#.to_vec(), "bad attribute"),
        (br#"{"reqID":1,"msgType":"write-attr","data":{"path":"/3/0/9","gt":"NaN"}}"#.to_vec(), "bad attribute"),
        (br#"{"reqID":1,"msgType":"write-attr","data":{"path":"/3/0/9","remove":["foo"]}}"#.to_vec(), "bad attribute"),
        (br#"{"reqID":1,"msgType":"write-attr","data":{"path":"/3/0/9","remove":"pmin"}}"#.to_vec(), "data.remove must be an array"),
        (br#"{"reqID":1,"msgType":"read-composite","data":{}}"#.to_vec(), "missing data.paths"),
        (br#"{"reqID":1,"msgType":"read-composite","data":{"paths":[]}}"#.to_vec(), "data.paths is empty"),
        (br#"{"reqID":1,"msgType":"read-composite","data":{"paths":"/3/0"}}"#.to_vec(), "must be an array"),
        (br#"{"reqID":1,"msgType":"observe-composite","data":{"paths":[3]}}"#.to_vec(), "data.paths[0] must be a string"),
        (br#"{"reqID":1,"msgType":"observe-composite","data":{"paths":["/3/0?pmin=1"]}}"#.to_vec(), "no query"),
        (br#"{"reqID":1,"msgType":"write-composite","data":{"content":[]}}"#.to_vec(), "nothing to write"),
        (br#"{"reqID":1,"msgType":"write-composite","data":{"content":[{"path":"/3/0/14","value":null}]}}"#.to_vec(), "null deletes only"),
        (br#"{"reqID":1,"msgType":"write-composite","data":{"content":[{"path":"/3/0","value":1}]}}"#.to_vec(), "a resource or resource instance"),
        (br#"{"reqID":1,"msgType":"read","encoding":"base32","data":{"path":"/3/0"}}"#.to_vec(), "unsupported encoding"),
        (br#"{"reqID":1,"msgType":"read","format":"xml","data":{"path":"/3/0"}}"#.to_vec(), "unknown format"),
        (br#"{"reqID":1,"msgType":"read","format":99,"data":{"path":"/3/0"}}"#.to_vec(), "unknown format"),
        (br#"{"reqID":1,"msgType":"read","timeout":-1,"data":{"path":"/3/0"}}"#.to_vec(), "timeout must be"),
        (br#"{"reqID":1,"msgType":"read","ttl":"1h","data":{"path":"/3/0"}}"#.to_vec(), "ttl must be"),
    ];
    for (payload, want) in cases {
        let text = String::from_utf8_lossy(&payload).into_owned();
        let e = match parse_command("dev-1", &payload, &schema()) {
            Err(e) => e,
            Ok(p) => panic!("{text} was accepted: {p:?}"),
        };
        assert!(
            e.message.contains(want),
            "{text}: {:?} lacks {want:?}",
            e.message
        );
        // Every error is answerable, echoing what could be read.
        let resp = e.to_response();
        assert_eq!(resp["data"]["code"], "4.00", "{text}");
        assert_eq!(resp["data"]["codeMsg"], "bad_request", "{text}");
        assert_eq!(resp["data"]["message"], json!(e.message), "{text}");
        if let Ok(Json::Object(obj)) = serde_json::from_slice::<Json>(&payload) {
            match obj.get("reqID").filter(|v| !v.is_null()) {
                Some(id) => assert_eq!(&resp["reqID"], id, "{text}"),
                None => assert!(resp.get("reqID").is_none(), "{text}"),
            }
            match obj.get("msgType").and_then(Json::as_str) {
                Some(t) => assert_eq!(resp["msgType"], t, "{text}"),
                None => assert_eq!(resp["msgType"], "error", "{text}"),
            }
        }
    }
}

// ----- uplink -----

fn registration(queue_mode: bool, root: &str) -> Registration {
    Registration {
        endpoint: "urn:oma:lwm2m:oma:3".into(),
        location: "/rd/0123456789abcdef".into(),
        address: "192.0.2.1:5683".into(),
        lifetime: 345,
        version: Lwm2mVersion::V1_1,
        binding: Binding::UDP,
        queue_mode,
        sms: None,
        links: ObjectLinks {
            root_path: root.into(),
            content_formats: vec![],
            objects: vec![(p("/1/0"), None), (p("/2/0"), None), (p("/3/0"), None)],
        },
        registered_at: SystemTime::UNIX_EPOCH,
        updated_at: SystemTime::UNIX_EPOCH,
    }
}

#[test]
fn register_and_update_match_emqx() {
    // emqx_lwm2m_SUITE case08_reregister, plus our fields.
    assert_eq!(
        registered(&registration(false, "/lwm2m")),
        json!({"msgType": "register", "data": {
            "alternatePath": "/lwm2m", "ep": "urn:oma:lwm2m:oma:3", "lt": 345, "lwm2m": "1.1",
            "b": "U", "objectList": ["/1/0", "/2/0", "/3/0"],
            "queueMode": false, "location": "/rd/0123456789abcdef", "address": "192.0.2.1:5683"}})
    );
    let mut reg = registration(true, "/");
    reg.sms = Some("+15550100".into());
    reg.links.content_formats = vec![60, 110];
    reg.links.objects.push((p("/3303"), Some("1.1".into())));
    assert_eq!(
        updated(&reg),
        json!({"msgType": "update", "data": {
            "alternatePath": "/", "ep": "urn:oma:lwm2m:oma:3", "lt": 345, "lwm2m": "1.1",
            "b": "UQ", "sms": "+15550100", "objectList": ["/1/0", "/2/0", "/3/0", "/3303"],
            "queueMode": true, "location": "/rd/0123456789abcdef", "address": "192.0.2.1:5683",
            "ct": [60, 110], "objectVersions": {"/3303": "1.1"}}})
    );
    reg.binding = Binding {
        udp: true,
        sms: true,
        ..Binding::default()
    };
    assert_eq!(updated(&reg)["data"]["b"], "UQS");
    reg.binding = Binding {
        sms: true,
        ..Binding::default()
    };
    assert_eq!(updated(&reg)["data"]["b"], "SQ");
}

#[test]
fn deregister_message() {
    for (reason, name) in [
        (DeregisterReason::Requested, "requested"),
        (DeregisterReason::Expired, "expired"),
        (DeregisterReason::Replaced, "replaced"),
        (DeregisterReason::Revoked, "revoked"),
    ] {
        assert_eq!(
            deregistered("dev-1", reason),
            json!({"msgType": "deregister", "data": {"ep": "dev-1", "reason": name}})
        );
    }
}

#[test]
fn bootstrap_messages_say_how_far_it_got_and_never_carry_a_key() {
    use crate::core::types::BootstrapStage;
    assert_eq!(
        bootstrap("dev-1", &BootstrapStage::Started),
        json!({"msgType": "bootstrap", "data": {"ep": "dev-1", "status": "started"}})
    );
    assert_eq!(
        bootstrap(
            "dev-1",
            &BootstrapStage::Finished {
                security: "psk",
                identity: Some("3f2a".into()),
                version: Some("1.1".into()),
            }
        ),
        json!({"msgType": "bootstrap", "data": {"ep": "dev-1", "status": "finished",
            "security": "psk", "identity": "3f2a", "lwm2m": "1.1"}})
    );
    assert_eq!(
        bootstrap(
            "dev-1",
            &BootstrapStage::Failed {
                step: "write /0/1".into(),
                reason: "the device answered 4.00".into(),
            }
        ),
        json!({"msgType": "bootstrap", "data": {"ep": "dev-1", "status": "failed",
            "step": "write /0/1", "reason": "the device answered 4.00"}})
    );
}

#[test]
fn bootstrap_trigger_needs_no_path_and_takes_ttl_and_timeout() {
    let parsed = parse(
        json!({"reqID": 9, "msgType": "bootstrap-trigger", "data": {},
        "ttl": 3600, "timeout": 30}),
    )
    .expect("parses");
    assert_eq!(parsed.msg_type, "bootstrap-trigger");
    assert_eq!(
        parsed.action,
        Action::BootstrapTrigger {
            timeout: Some(Duration::from_secs(30)),
            ttl: Some(Duration::from_secs(3600)),
        }
    );
    let e = refused(json!({"reqID": 9, "msgType": "bootstrap-trigger", "data": {}, "ttl": -1}));
    assert!(e.message.contains("ttl"), "{}", e.message);
}

#[test]
fn notify_matches_emqx() {
    // emqx_lwm2m_SUITE case60_observe, ReadResult2, plus "type".
    let content = Content::Node(Node::Resource(Resource::Single(Value::Integer(4096))));
    assert_eq!(
        notify(Some(&json!(307)), &p("/3/0/10"), &content, Some(3)),
        json!({"reqID": 307, "msgType": "notify", "seqNum": 3, "data": {
            "reqPath": "/3/0/10", "code": "2.05", "codeMsg": "content",
            "content": [{"path": "/3/0/10", "type": "Integer", "value": 4096}]}})
    );
    // A composite notification: records, with their time; no reqID or seqNum known.
    let records = Content::Records(vec![
        Record {
            path: p("/3303/0/5700"),
            value: Some(Value::Float(21.5)),
            time: Some(1_700_000_000.0),
        },
        Record {
            path: p("/3/0/9"),
            value: Some(Value::Integer(80)),
            time: None,
        },
    ]);
    assert_eq!(
        notify(None, &Path::ROOT, &records, None),
        json!({"msgType": "notify", "data": {
            "reqPath": "/", "code": "2.05", "codeMsg": "content", "content": [
                {"path": "/3303/0/5700", "type": "Float", "value": 21.5, "time": 1_700_000_000.0},
                {"path": "/3/0/9", "type": "Integer", "value": 80}]}})
    );
}

#[test]
fn send_message() {
    let records = [
        Record {
            path: p("/3303/0/5700"),
            value: Some(Value::Float(-3.25)),
            time: Some(1_700_000_001.5),
        },
        Record {
            path: p("/6/0/4"),
            value: Some(Value::Opaque(vec![1, 2, 3])),
            time: None,
        },
    ];
    assert_eq!(
        send("dev-1", &records),
        json!({"msgType": "send", "data": {"ep": "dev-1", "content": [
            {"path": "/3303/0/5700", "type": "Float", "value": -3.25, "time": 1_700_000_001.5},
            {"path": "/6/0/4", "type": "Opaque", "value": "AQID"}]}})
    );
}

fn ok_content(node: Node) -> Outcome {
    Ok(DmResponse::Content {
        format: ContentFormat::Tlv,
        node,
    })
}

#[test]
fn read_results_match_emqx() {
    // case60_observe's first answer.
    assert_eq!(
        response(
            &json!(307),
            "observe",
            &ok_content(Node::Resource(Resource::Single(Value::Integer(2048)))),
            Some(&p("/3/0/10"))
        ),
        json!({"reqID": 307, "msgType": "observe", "data": {
            "reqPath": "/3/0/10", "code": "2.05", "codeMsg": "content",
            "content": [{"path": "/3/0/10", "type": "Integer", "value": 2048}]}})
    );
    // case10_read ReadResult3: a multiple resource, one entry per instance.
    assert_eq!(
        response(
            &json!(612),
            "read",
            &ok_content(Node::Resource(Resource::Multiple(BTreeMap::from([
                (0, Value::Integer(1)),
                (1, Value::Integer(2))
            ])))),
            Some(&p("/3/0/6"))
        )["data"]["content"],
        json!([
            {"path": "/3/0/6/0", "type": "Integer", "value": 1},
            {"path": "/3/0/6/1", "type": "Integer", "value": 2}])
    );
    // case15_read_tlv_types: an instance, flattened; time, objlnk, opaque.
    let inst = instance(&[
        (13, Resource::Single(Value::Time(10))),
        (
            22,
            Resource::Multiple(BTreeMap::from([
                (
                    0,
                    Value::ObjectLink(ObjectLink {
                        object: 1,
                        instance: 2,
                    }),
                ),
                (
                    1,
                    Value::ObjectLink(ObjectLink {
                        object: 1,
                        instance: 3,
                    }),
                ),
            ])),
        ),
    ]);
    assert_eq!(
        response(
            &json!(321),
            "read",
            &ok_content(Node::Instance(inst)),
            Some(&p("/3/0"))
        ),
        json!({"reqID": 321, "msgType": "read", "data": {
            "reqPath": "/3/0", "code": "2.05", "codeMsg": "content", "content": [
                {"path": "/3/0/13", "type": "Time", "value": 10},
                {"path": "/3/0/22/0", "type": "Objlnk", "value": "1:2"},
                {"path": "/3/0/22/1", "type": "Objlnk", "value": "1:3"}]}})
    );
    // case16_read_tlv_object_instances: an object, every instance.
    let object = Node::Object(BTreeMap::from([
        (
            0,
            instance(&[(0, Resource::Single(Value::String("A".into())))]),
        ),
        (
            1,
            instance(&[(0, Resource::Single(Value::String("B".into())))]),
        ),
    ]));
    assert_eq!(
        response(&json!(330), "read", &ok_content(object), Some(&p("/3")))["data"]["content"],
        json!([
            {"path": "/3/0/0", "type": "String", "value": "A"},
            {"path": "/3/1/0", "type": "String", "value": "B"}])
    );
    // A composite read.
    let composite = Ok(DmResponse::Composite {
        format: ContentFormat::SenmlCbor,
        records: vec![Record {
            path: p("/3/0/0"),
            value: Some(Value::String("ACME".into())),
            time: None,
        }],
    });
    assert_eq!(
        response(
            &json!("r1"),
            "read-composite",
            &composite,
            Some(&Path::ROOT)
        ),
        json!({"reqID": "r1", "msgType": "read-composite", "data": {
            "reqPath": "/", "code": "2.05", "codeMsg": "content",
            "content": [{"path": "/3/0/0", "type": "String", "value": "ACME"}]}})
    );
}

#[test]
fn other_results_match_emqx() {
    // case40_discover
    let links = Ok(DmResponse::Links(vec![
        DiscoverEntry::new(p("/3/0/7"))
            .with_attr("dim", Some("8"))
            .with_attr("pmin", Some("10"))
            .with_attr("pmax", Some("60"))
            .with_attr("gt", Some("50"))
            .with_attr("lt", Some("42.2")),
        DiscoverEntry::new(p("/3/0/8")),
    ]));
    assert_eq!(
        response(&json!(307), "discover", &links, Some(&p("/3/0/7"))),
        json!({"reqID": 307, "msgType": "discover", "data": {
            "reqPath": "/3/0/7", "code": "2.05", "codeMsg": "content",
            "content": ["</3/0/7>;dim=8;pmin=10;pmax=60;gt=50;lt=42.2", "</3/0/8>"]}})
    );
    // case20_single_write, case30_execute, case50_write_attribute
    for t in ["write", "execute", "write-attr", "write-composite"] {
        assert_eq!(
            response(
                &json!(307),
                t,
                &Ok(DmResponse::Changed),
                Some(&p("/3/0/13"))
            ),
            json!({"reqID": 307, "msgType": t, "data": {
                "reqPath": "/3/0/13", "code": "2.04", "codeMsg": "changed"}})
        );
    }
    // case_create_basic (plus the location we know), case_delete_basic
    assert_eq!(
        response(
            &json!(307),
            "create",
            &Ok(DmResponse::Created(None)),
            Some(&p("/5"))
        ),
        json!({"reqID": 307, "msgType": "create", "data": {
            "reqPath": "/5", "code": "2.01", "codeMsg": "created"}})
    );
    assert_eq!(
        response(
            &json!(307),
            "create",
            &Ok(DmResponse::Created(Some(p("/5/1")))),
            Some(&p("/5"))
        )["data"]["location"],
        "/5/1"
    );
    assert_eq!(
        response(
            &json!(307),
            "delete",
            &Ok(DmResponse::Deleted),
            Some(&p("/5/0"))
        ),
        json!({"reqID": 307, "msgType": "delete", "data": {
            "reqPath": "/5/0", "code": "2.02", "codeMsg": "deleted"}})
    );
}

#[test]
fn failures_follow_the_documented_mapping() {
    // The device's own codes, as EMQX reports them (case41, case31, case10_read_bad_request).
    for (e, code, msg) in [
        (Lwm2mError::NotFound, "4.04", "not_found"),
        (Lwm2mError::Unauthorized, "4.01", "unauthorized"),
        (Lwm2mError::BadRequest("no".into()), "4.00", "bad_request"),
        (Lwm2mError::MethodNotAllowed, "4.05", "method_not_allowed"),
        (Lwm2mError::Conflict, "4.09", "conflict"),
        (
            Lwm2mError::UnsupportedContentFormat,
            "4.15",
            "unsupported_content_format",
        ),
        (
            Lwm2mError::ServiceUnavailable,
            "5.03",
            "service_unavailable",
        ),
        (
            Lwm2mError::Other("4.29".into()),
            "4.29",
            "too_many_requests",
        ),
        (
            Lwm2mError::Other("odd".into()),
            "5.00",
            "internal_server_error",
        ),
    ] {
        let out = response(
            &json!(407),
            "discover",
            &Err(CommandError::Lwm2m(e.clone())),
            Some(&p("/3/0/7")),
        );
        assert_eq!(
            out,
            json!({"reqID": 407, "msgType": "discover", "data": {
                "reqPath": "/3/0/7", "code": code, "codeMsg": msg, "message": e.to_string()}}),
            "{e:?}"
        );
    }
    // Ours, with an `error` name; timeouts and resets under EMQX's msgType.
    for (e, code, error, msg_type) in [
        (
            CommandError::UnknownDevice,
            "4.04",
            "unknown_device",
            "read",
        ),
        (CommandError::Deregistered, "4.04", "deregistered", "read"),
        (CommandError::Timeout, "5.04", "timeout", "coap_timeout"),
        (CommandError::Reset, "5.02", "reset", "coap_reset"),
        (CommandError::Expired, "5.04", "expired", "read"),
        (CommandError::QueueFull, "5.03", "queue_full", "read"),
        (
            CommandError::Overloaded(100_000),
            "5.03",
            "overloaded",
            "read",
        ),
        (
            CommandError::Invalid("timeout 1e19 s is outside 0.001..=86400 s".into()),
            "4.00",
            "bad_request",
            "read",
        ),
        (
            CommandError::NotSupported("composite".into()),
            "5.01",
            "not_supported",
            "read",
        ),
        (
            CommandError::Unavailable("shutting down".into()),
            "5.03",
            "unavailable",
            "read",
        ),
    ] {
        let out = response(&json!("x"), "read", &Err(e.clone()), None);
        assert_eq!(
            out,
            json!({"reqID": "x", "msgType": msg_type, "data": {
                "code": code, "codeMsg": code_msg(code), "error": error,
                "message": e.to_string()}}),
            "{e:?}"
        );
    }
}

#[test]
fn an_interrupted_upload_says_try_again_and_where_to_resume() {
    let e = CommandError::Interrupted {
        next_block: 10,
        szx: 5,
    };
    let out = response(&json!(9), "write", &Err(e.clone()), None);
    assert_eq!(
        out,
        json!({"reqID": 9, "msgType": "write", "data": {
            "code": "5.03", "codeMsg": "service_unavailable", "error": "interrupted",
            "message": "the upload was interrupted at block 10",
            "nextBlock": 10, "blockSzx": 5}})
    );
}

#[test]
fn error_response_shapes() {
    assert_eq!(
        error_response(Some(&json!(5)), Some("write"), "4.00", "missing data.value"),
        json!({"reqID": 5, "msgType": "write", "data": {
            "code": "4.00", "codeMsg": "bad_request", "message": "missing data.value"}})
    );
    assert_eq!(
        error_response(None, None, "4.00", "not JSON"),
        json!({"msgType": "error", "data": {
            "code": "4.00", "codeMsg": "bad_request", "message": "not JSON"}})
    );
    assert_eq!(code_msg("2.05"), "content");
    assert_eq!(code_msg("9.99"), "unknown");
}

// ----- values -----

fn samples() -> Vec<Value> {
    vec![
        Value::String("Open Mobile Alliance".into()),
        Value::Integer(-129),
        Value::UnsignedInteger(u64::MAX),
        Value::Float(21.5),
        Value::Boolean(false),
        Value::Opaque(vec![0, 1, 254, 255]),
        Value::Time(1_700_000_000),
        Value::ObjectLink(ObjectLink {
            object: 3,
            instance: 0,
        }),
        Value::ObjectLink(ObjectLink::NULL),
        Value::CoreLink("</3/0>;ct=60".into()),
    ]
}

#[test]
fn values_round_trip_through_json() {
    for v in samples() {
        let (ty, json) = value_to_json(&v);
        assert_eq!(type_name(v.resource_type()), ty);
        assert_eq!(
            value_from_json(Some(ty), &json, None),
            Ok(v.clone()),
            "{ty}"
        );
        assert_eq!(
            value_from_json(None, &json, Some(v.resource_type())),
            Ok(v.clone()),
            "{ty}"
        );
        assert_eq!(
            value_from_json(Some(ty), &json, Some(v.resource_type())),
            Ok(v.clone())
        );
    }
    assert_eq!(
        value_to_json(&Value::Opaque(vec![1, 2, 3])).1,
        json!("AQID")
    );
    assert_eq!(value_to_json(&Value::Float(f64::NAN)).1, Json::Null);
    assert_eq!(value_to_json(&Value::Float(f64::INFINITY)).1, Json::Null);
}

#[test]
fn json_values_as_emqx_accepts_them() {
    let ok = |t: &str, j: Json, v: Value| {
        assert_eq!(value_from_json(Some(t), &j, None), Ok(v), "{t} {j}");
    };
    ok("Integer", json!("12345"), Value::Integer(12345));
    ok("Integer", json!(" -7 "), Value::Integer(-7));
    ok("Integer", json!(5.0), Value::Integer(5));
    ok("Integer", json!("5.0"), Value::Integer(5));
    ok("Float", json!("12345.0"), Value::Float(12345.0));
    ok("Float", json!(3), Value::Float(3.0));
    ok("Time", json!("1700000000"), Value::Time(1_700_000_000));
    ok("Boolean", json!("true"), Value::Boolean(true));
    ok("Boolean", json!("false"), Value::Boolean(false));
    ok("Boolean", json!(1), Value::Boolean(true));
    ok("Boolean", json!(true), Value::Boolean(true));
    ok(
        "Objlnk",
        json!("1:2"),
        Value::ObjectLink(ObjectLink {
            object: 1,
            instance: 2,
        }),
    );
    ok(
        "unsigned integer",
        json!("18446744073709551615"),
        Value::UnsignedInteger(u64::MAX),
    );
    ok("UnsignedInteger", json!(7), Value::UnsignedInteger(7));
    ok(
        "ObjectLink",
        json!("0:0"),
        Value::ObjectLink(ObjectLink {
            object: 0,
            instance: 0,
        }),
    );
    ok("CoreLink", json!("</1>"), Value::CoreLink("</1>".into()));
    ok("Opaque", json!("AQID"), Value::Opaque(vec![1, 2, 3]));
    ok("Opaque", json!(""), Value::Opaque(vec![]));
    // Guessed without a type or object model.
    assert_eq!(
        value_from_json(None, &json!(true), None),
        Ok(Value::Boolean(true))
    );
    assert_eq!(
        value_from_json(None, &json!(-1), None),
        Ok(Value::Integer(-1))
    );
    assert_eq!(
        value_from_json(None, &json!(u64::MAX), None),
        Ok(Value::UnsignedInteger(u64::MAX))
    );
    assert_eq!(
        value_from_json(None, &json!(0.5), None),
        Ok(Value::Float(0.5))
    );
    assert_eq!(
        value_from_json(None, &json!("s"), None),
        Ok(Value::String("s".into()))
    );
    // The object model's type wins over a guess, and a declared type must fit it.
    assert_eq!(
        value_from_json(None, &json!(21), Some(ResourceType::Float)),
        Ok(Value::Float(21.0))
    );
    assert_eq!(
        value_from_json(Some("Integer"), &json!(7), Some(ResourceType::Float)),
        Ok(Value::Float(7.0))
    );
    for (t, j, k) in [
        (Some("Float"), json!(1.5), Some(ResourceType::Integer)),
        (Some("String"), json!("1"), Some(ResourceType::Integer)),
        (None, json!(1), Some(ResourceType::None)),
        (Some("Integer"), json!(9.5), None),
        (Some("Integer"), json!("9223372036854775808"), None),
        (Some("Time"), json!(true), None),
        (Some("String"), json!(1), None),
        (Some("Objlnk"), json!("1:70000"), None),
        (None, Json::Null, None),
        (None, json!({"a": 1}), None),
        (Some("none"), json!(1), None),
    ] {
        assert!(value_from_json(t, &j, k).is_err(), "{t:?} {j} {k:?}");
    }
}

#[test]
fn flatten_reaches_resource_instances() {
    let node = Node::Object(BTreeMap::from([(
        0,
        instance(&[
            (0, Resource::Single(Value::String("ACME".into()))),
            (
                7,
                Resource::Multiple(BTreeMap::from([
                    (0, Value::Integer(3800)),
                    (1, Value::Integer(5000)),
                ])),
            ),
            (8, Resource::Multiple(BTreeMap::new())),
        ]),
    )]));
    let flat = flatten(&p("/3"), &Content::Node(node));
    assert_eq!(
        flat,
        vec![
            (p("/3/0/0"), Value::String("ACME".into())),
            (p("/3/0/7/0"), Value::Integer(3800)),
            (p("/3/0/7/1"), Value::Integer(5000)),
        ]
    );
    let records = Content::Records(vec![
        Record {
            path: p("/3/0/9"),
            value: Some(Value::Integer(80)),
            time: None,
        },
        Record {
            path: p("/3/0/7/1"),
            value: None,
            time: None,
        },
    ]);
    assert_eq!(
        flatten(&Path::ROOT, &records),
        vec![(p("/3/0/9"), Value::Integer(80))]
    );
    assert_eq!(
        flatten(
            &p("/3/0/7/1"),
            &Content::Node(Node::ResourceInstance(Value::Integer(1)))
        ),
        vec![(p("/3/0/7/1"), Value::Integer(1))]
    );
}

// ----- arbitrary input -----

fn arb_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        ".{0,20}".prop_map(Value::String),
        any::<i64>().prop_map(Value::Integer),
        any::<u64>().prop_map(Value::UnsignedInteger),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::Float),
        any::<bool>().prop_map(Value::Boolean),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(Value::Opaque),
        any::<i64>().prop_map(Value::Time),
        (any::<u16>(), any::<u16>())
            .prop_map(|(object, instance)| Value::ObjectLink(ObjectLink { object, instance })),
        ".{0,20}".prop_map(Value::CoreLink),
    ]
}

const KEYS: [&str; 20] = [
    "path", "basePath", "content", "type", "value", "paths", "args", "pmin", "pmax", "gt", "lt",
    "st", "epmin", "remove", "mode", "reqID", "msgType", "data", "encoding", "format",
];

fn arb_json() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        any::<i64>().prop_map(Json::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Json::Null, Json::Number)),
        "[/0-9a-zA-Z:?.=&+ -]{0,12}".prop_map(Json::String),
        prop::sample::select(vec![
            "/3/0/0", "/3/0", "/3", "/3/0/7/1", "/", "0/1", "/3/0/13", "/5/0/0", "/65535",
            "/3/0/4", "/6", "Integer", "Float", "Opaque", "Objlnk", "Boolean", "true", "1:2",
            "AQID", "10", "hex", "update", "pmin",
        ])
        .prop_map(|s| Json::String(s.into())),
    ];
    leaf.prop_recursive(4, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Json::Array),
            proptest::collection::btree_map(prop::sample::select(KEYS.to_vec()), inner, 0..6)
                .prop_map(|m| Json::Object(
                    m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
                )),
        ]
    })
}

fn check_never_panics(payload: &[u8]) {
    match parse_command("dev-1", payload, &schema()) {
        Ok(parsed) => {
            if let Action::Command(cmd) = &parsed.action {
                // What parses is something the core can encode (or refuse) without panic.
                for f in [
                    ContentFormat::Tlv,
                    ContentFormat::SenmlJson,
                    ContentFormat::Text,
                ] {
                    let _ = cmd.request.to_coap(f);
                }
            }
            assert!(COMMAND_TYPES.contains(&parsed.msg_type.as_str()));
        }
        Err(e) => {
            assert!(!e.message.is_empty());
            let resp = e.to_response();
            assert!(resp["msgType"].is_string());
            assert_eq!(resp["data"]["code"], "4.00");
        }
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(payload in proptest::collection::vec(any::<u8>(), 0..512)) {
        check_never_panics(&payload);
    }

    #[test]
    fn arbitrary_commands_never_panic(
        msg_type in prop::sample::select(COMMAND_TYPES.to_vec()),
        req_id in arb_json(),
        data in arb_json(),
        extra in arb_json(),
    ) {
        let mut obj = match extra {
            Json::Object(m) => m,
            _ => Map::new(),
        };
        obj.insert("msgType".into(), msg_type.into());
        obj.insert("reqID".into(), req_id);
        obj.insert("data".into(), data);
        check_never_panics(Json::Object(obj).to_string().as_bytes());
    }

    #[test]
    fn typed_values_round_trip(v in arb_value()) {
        let (ty, json) = value_to_json(&v);
        prop_assert_eq!(value_from_json(Some(ty), &json, None), Ok(v.clone()));
        prop_assert_eq!(value_from_json(None, &json, Some(v.resource_type())), Ok(v.clone()));
        // Through text, as it travels over MQTT.
        let back: Json = serde_json::from_str(&json.to_string()).unwrap();
        prop_assert_eq!(value_from_json(Some(ty), &back, None), Ok(v));
    }

    #[test]
    fn written_values_come_back_in_results(v in arb_value()) {
        let path = p("/31024/0/1");
        let (ty, json) = value_to_json(&v);
        let cmd = json!({"reqID": 1, "msgType": "write", "data": {"path": "/31024/0/1", "type": ty, "value": json}});
        let node = match parse(cmd) {
            Ok(Parsed { action: Action::Command(Command { request: DownlinkRequest::Write { node, .. }, .. }), .. }) => node,
            other => panic!("{other:?}"),
        };
        let out = response(&json!(1), "read", &ok_content(node), Some(&path));
        prop_assert_eq!(&out["data"]["content"][0]["type"], ty);
        prop_assert_eq!(
            value_from_json(out["data"]["content"][0]["type"].as_str(), &out["data"]["content"][0]["value"], None),
            Ok(v)
        );
    }
}

#[test]
fn firmware_update_takes_a_package_and_a_method() {
    let parsed = parse(json!({"reqID": 4, "msgType": "firmware-update",
        "data": {"package": "0123456789abcdef", "method": "push", "concurrency": 1}}))
    .expect("parses");
    assert_eq!(
        parsed.action,
        Action::FirmwareUpdate {
            package: "0123456789abcdef".into(),
            method: Some("push".into()),
        }
    );
    let parsed = parse(json!({"reqID": 4, "msgType": "firmware-update",
        "data": {"package": "0123456789abcdef"}}))
    .expect("parses");
    assert!(matches!(
        parsed.action,
        Action::FirmwareUpdate { method: None, .. }
    ));
    for (data, field) in [
        (json!({}), "package"),
        (json!({"package": 7}), "package"),
        (json!({"package": "a", "method": "ftp"}), "method"),
        (json!({"package": "a", "concurrency": 0}), "concurrency"),
        (json!({"package": "a", "concurrency": "two"}), "concurrency"),
    ] {
        let e = refused(json!({"reqID": 4, "msgType": "firmware-update", "data": data}));
        assert!(e.message.contains(field), "{data}: {}", e.message);
    }
}

#[test]
fn firmware_messages() {
    use crate::core::types::{FirmwareOutcome, FirmwarePhase};
    let event = crate::core::types::DeviceEvent::Firmware {
        endpoint: "dev".into(),
        campaign: "17".into(),
        package: "0123456789abcdef".into(),
        phase: FirmwarePhase::Done,
        state: Some(0),
        result: Some(5),
        outcome: Some(FirmwareOutcome::IntegrityFailure),
        bytes: Some(300),
        version: None,
    };
    assert_eq!(
        firmware(&event),
        Some(json!({"msgType": "firmware", "data": {"campaign": "17",
            "package": "0123456789abcdef", "phase": "done", "state": 0, "result": 5,
            "outcome": "integrity_failure", "bytes": 300}}))
    );
    assert_eq!(
        firmware_started(&json!(4), Ok("17")),
        json!({"reqID": 4, "msgType": "firmware-update",
            "data": {"code": "2.01", "codeMsg": "created", "campaign": "17"}})
    );
    let refused = firmware_started(&json!(4), Err("no package x"));
    assert_eq!(refused["data"]["code"], "4.00");
    assert_eq!(refused["data"]["message"], "no package x");
}
