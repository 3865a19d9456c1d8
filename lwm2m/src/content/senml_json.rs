//! application/senml+json (Content-Format 110): RFC 8428 §5 JSON representation as profiled
//! by OMA LwM2M TS 1.2 Core §7.4.4, for any node, composite payloads and timestamped data.
//!
//! A pack is a JSON array of record objects with the labels `bn`, `bt`, `bv`, `bver`, `n`,
//! `t`, `v`, `vs`, `vb`, `vd` (base64url without padding) and LwM2M's `vlo` (Objlnk
//! `"o:i"`). The record model and its resolution live in [`super::senml`]; this file only maps
//! JSON onto it. Records are written with their keys in the order the TS examples use (`bn`,
//! `bt`, `n`, value, `t`), so output compares byte for byte with them.
//!
//! serde_json parses and escapes JSON; the SenML meaning is ours. On input, unknown labels
//! are ignored except must-understand ones (ending in `_`, RFC 8428 §4.4); JSON objects with
//! a repeated key keep the last value, as serde_json reads them.
#![deny(clippy::indexing_slicing)]

use super::senml::{self, Number, RawValue, SenmlRecord};
use super::{CodecError, ContentFormat, Record};
use crate::model::{Node, Path, ResourceType, Schema, ValueError};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value as Json;

const FORMAT: ContentFormat = ContentFormat::SenmlJson;

fn malformed(reason: impl Into<String>) -> CodecError {
    CodecError::malformed(FORMAT, reason)
}

/// Encodes `node` (at `path`) as a SenML JSON pack: `bn` is the node's path.
pub(super) fn encode(path: &Path, node: &Node) -> Result<Vec<u8>, CodecError> {
    let records = senml::node_records(path, node)?;
    write_pack(&senml::wire_records(&records, Some(*path))?)
}

/// Decodes a pack into the node at `path`; every record must carry a value under `path`.
pub(super) fn decode(path: &Path, bytes: &[u8], schema: &dyn Schema) -> Result<Node, CodecError> {
    senml::into_node(path, decode_records(bytes, schema)?)
}

/// Encodes composite or timestamped records in order; `bn` is their common prefix.
pub(super) fn encode_records(records: &[Record]) -> Result<Vec<u8>, CodecError> {
    write_pack(&senml::wire_records(records, None)?)
}

/// Decodes a pack into records in payload order, typed through `schema`.
pub(super) fn decode_records(bytes: &[u8], schema: &dyn Schema) -> Result<Vec<Record>, CodecError> {
    let doc: Json = serde_json::from_slice(bytes).map_err(|e| malformed(e.to_string()))?;
    let Json::Array(items) = doc else {
        return Err(malformed("a SenML pack is a JSON array"));
    };
    if items.len() > senml::MAX_RECORDS {
        return Err(malformed(format!(
            "more than {} records",
            senml::MAX_RECORDS
        )));
    }
    let wire = items
        .iter()
        .map(read_record)
        .collect::<Result<Vec<_>, _>>()?;
    senml::resolve(FORMAT, wire, schema)
}

fn read_record(item: &Json) -> Result<SenmlRecord, CodecError> {
    let Json::Object(fields) = item else {
        return Err(malformed("a SenML record is a JSON object"));
    };
    let mut rec = SenmlRecord::default();
    for (key, v) in fields {
        let value = match key.as_str() {
            "bn" => {
                rec.base_name = Some(string(key, v)?.to_owned());
                None
            }
            "bt" => {
                rec.base_time = Some(number(key, v)?.as_f64());
                None
            }
            "bv" => {
                rec.base_value = Some(number(key, v)?);
                None
            }
            "bver" => match number(key, v)? {
                Number::Int(i) => {
                    rec.version = Some(i);
                    None
                }
                Number::Float(_) => return Err(malformed("bver must be an integer")),
            },
            "n" => {
                rec.name = Some(string(key, v)?.to_owned());
                None
            }
            "t" => {
                rec.time = Some(number(key, v)?.as_f64());
                None
            }
            "v" => Some(RawValue::Number(number(key, v)?)),
            "vs" => Some(RawValue::Text(string(key, v)?.to_owned())),
            "vb" => Some(RawValue::Bool(v.as_bool().ok_or_else(|| wrong_kind(key))?)),
            "vd" => Some(RawValue::Bytes(
                senml::decode_base64(string(key, v)?)
                    .ok_or_else(|| malformed("vd is not base64url"))?,
            )),
            "vlo" => Some(RawValue::ObjectLink(string(key, v)?.to_owned())),
            k if k.ends_with('_') => {
                return Err(malformed(format!(
                    "unsupported must-understand label {k:?}"
                )))
            }
            _ => None, // units, sums and extensions LwM2M does not use
        };
        if let Some(value) = value {
            if rec.value.replace(value).is_some() {
                return Err(malformed("a record carries more than one value"));
            }
        }
    }
    Ok(rec)
}

fn wrong_kind(key: &str) -> CodecError {
    malformed(format!("{key} has the wrong JSON type"))
}

fn string<'a>(key: &str, v: &'a Json) -> Result<&'a str, CodecError> {
    v.as_str().ok_or_else(|| wrong_kind(key))
}

fn number(key: &str, v: &Json) -> Result<Number, CodecError> {
    json_number(v).ok_or_else(|| wrong_kind(key))
}

/// A JSON number as SenML sees it: integer literals stay exact, the rest are floats.
pub(super) fn json_number(v: &Json) -> Option<Number> {
    let n = v.as_number()?;
    if let Some(i) = n.as_i64() {
        Some(Number::Int(i128::from(i)))
    } else if let Some(u) = n.as_u64() {
        Some(Number::Int(i128::from(u)))
    } else {
        n.as_f64().map(Number::Float)
    }
}

/// Appends `s` as a JSON string literal.
pub(super) fn push_str(out: &mut String, s: &str) {
    out.push_str(&Json::from(s).to_string());
}

/// Appends a number: integers as integer literals, floats in serde_json's shortest form that
/// reads back exactly (`22.4`, `23.0`, `1e300`). JSON has no NaN or infinity.
pub(super) fn push_number(out: &mut String, n: Number) -> Result<(), CodecError> {
    match n {
        Number::Int(i) => out.push_str(&i.to_string()),
        Number::Float(f) if f.is_finite() => out.push_str(&Json::from(f).to_string()),
        Number::Float(f) => {
            return Err(ValueError::InvalidText {
                ty: ResourceType::Float,
                text: f.to_string(),
            }
            .into())
        }
    }
    Ok(())
}

/// Appends a time: whole seconds as an integer (`"bt":1367491215`), others as floats.
pub(super) fn push_time(out: &mut String, t: f64) -> Result<(), CodecError> {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    if t.fract() == 0.0 && t.abs() <= EXACT {
        push_number(out, Number::Int(t as i128))
    } else {
        push_number(out, Number::Float(t))
    }
}

fn push_key(out: &mut String, first: &mut bool, key: &str) {
    if !*first {
        out.push(',');
    }
    *first = false;
    push_str(out, key);
    out.push(':');
}

fn write_pack(records: &[SenmlRecord]) -> Result<Vec<u8>, CodecError> {
    let mut out = String::from("[");
    for (i, rec) in records.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_record(&mut out, rec)?;
    }
    out.push(']');
    Ok(out.into_bytes())
}

fn write_record(out: &mut String, rec: &SenmlRecord) -> Result<(), CodecError> {
    let first = &mut true;
    out.push('{');
    if let Some(v) = rec.version {
        push_key(out, first, "bver");
        push_number(out, Number::Int(v))?;
    }
    if let Some(bn) = &rec.base_name {
        push_key(out, first, "bn");
        push_str(out, bn);
    }
    if let Some(bt) = rec.base_time {
        push_key(out, first, "bt");
        push_time(out, bt)?;
    }
    if let Some(bv) = rec.base_value {
        push_key(out, first, "bv");
        push_number(out, bv)?;
    }
    if let Some(n) = &rec.name {
        push_key(out, first, "n");
        push_str(out, n);
    }
    match &rec.value {
        None => {}
        Some(RawValue::Number(n) | RawValue::Time(n)) => {
            push_key(out, first, "v");
            push_number(out, *n)?;
        }
        Some(RawValue::Text(s) | RawValue::TextOrBase64(s)) => {
            push_key(out, first, "vs");
            push_str(out, s);
        }
        Some(RawValue::Bool(b)) => {
            push_key(out, first, "vb");
            out.push_str(if *b { "true" } else { "false" });
        }
        Some(RawValue::Bytes(b)) => {
            push_key(out, first, "vd");
            push_str(out, &URL_SAFE_NO_PAD.encode(b));
        }
        Some(RawValue::ObjectLink(s)) => {
            push_key(out, first, "vlo");
            push_str(out, s);
        }
    }
    if let Some(t) = rec.time {
        push_key(out, first, "t");
        push_time(out, t)?;
    }
    out.push('}');
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)] // tests may unwrap and index
mod tests {
    use super::super::senml::test_support::*;
    use super::*;
    use crate::content::roundtrip::*;
    use crate::model::{NoSchema, NodeError, ObjectLink, Resource, Value};
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn p(s: &str) -> Path {
        Path::parse(s).unwrap()
    }

    fn text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).unwrap()
    }

    /// OMA LwM2M TS 1.1 Core Table 7.4.4-2 (Read /3/0 in SenML JSON); the same string is
    /// Leshan's `senml_json_encode_device_object_instance` and Wakaama's `senml_json_test_1`.
    const DEVICE: &str = concat!(
        r#"[{"bn":"/3/0/","n":"0","vs":"Open Mobile Alliance"},"#,
        r#"{"n":"1","vs":"Lightweight M2M Client"},"#,
        r#"{"n":"2","vs":"345000123"},"#,
        r#"{"n":"3","vs":"1.0"},"#,
        r#"{"n":"6/0","v":1},"#,
        r#"{"n":"6/1","v":5},"#,
        r#"{"n":"7/0","v":3800},"#,
        r#"{"n":"7/1","v":5000},"#,
        r#"{"n":"8/0","v":125},"#,
        r#"{"n":"8/1","v":900},"#,
        r#"{"n":"9","v":100},"#,
        r#"{"n":"10","v":15},"#,
        r#"{"n":"11/0","v":0},"#,
        r#"{"n":"13","v":1367491215},"#,
        r#"{"n":"14","vs":"+02:00"},"#,
        r#"{"n":"16","vs":"U"}]"#
    );

    #[test]
    fn device_instance_matches_core_table_7_4_4_2() {
        let node = device_instance();
        assert_eq!(text(encode(&p("/3/0"), &node).unwrap()), DEVICE);
        assert_eq!(
            decode(&p("/3/0"), DEVICE.as_bytes(), &TestSchema::device()).unwrap(),
            node
        );
        // Without a schema the Time resource stays an Integer.
        let raw = decode(&p("/3/0"), DEVICE.as_bytes(), &NoSchema).unwrap();
        let Node::Instance(inst) = raw else { panic!() };
        assert_eq!(inst[&13], Resource::Single(Value::Integer(1_367_491_215)));
    }

    #[test]
    fn single_multiple_and_opaque_resources_match_leshan() {
        // Core Table 7.4.4-5 (Read /3/0/0), Leshan `senml_json_encode_single_resource`.
        let single = Node::Resource(Resource::Single(Value::String(
            "Open Mobile Alliance".into(),
        )));
        let want = r#"[{"bn":"/3/0/0","vs":"Open Mobile Alliance"}]"#;
        assert_eq!(text(encode(&p("/3/0/0"), &single).unwrap()), want);
        assert_eq!(
            decode(&p("/3/0/0"), want.as_bytes(), &NoSchema).unwrap(),
            single
        );
        // Leshan `senml_json_encode_multiple_resource`.
        let multi = Node::Resource(Resource::Multiple(BTreeMap::from([
            (0, Value::Integer(3800)),
            (1, Value::Integer(5000)),
        ])));
        let want = r#"[{"bn":"/3/0/7/","n":"0","v":3800},{"n":"1","v":5000}]"#;
        assert_eq!(text(encode(&p("/3/0/7"), &multi).unwrap()), want);
        assert_eq!(
            decode(&p("/3/0/7"), want.as_bytes(), &NoSchema).unwrap(),
            multi
        );
        // Leshan `senml_json_encode_opaque_resource`: vd is base64url without padding.
        let opaque = Node::Resource(Resource::Single(Value::Opaque(vec![0xAB, 0xCD, 0xEF])));
        let want = r#"[{"bn":"/0/0/3","vd":"q83v"}]"#;
        assert_eq!(text(encode(&p("/0/0/3"), &opaque).unwrap()), want);
        assert_eq!(
            decode(&p("/0/0/3"), want.as_bytes(), &NoSchema).unwrap(),
            opaque
        );
    }

    #[test]
    fn composite_examples_of_core_tables_7_4_4_6_to_8() {
        // Table 7.4.4-6: Read-Composite request, paths only.
        let req = r#"[{"n":"/3/0/0"},{"n":"/3/0/9"},{"n":"/1/0/1"}]"#;
        let paths = [p("/3/0/0"), p("/3/0/9"), p("/1/0/1")];
        let records: Vec<_> = paths
            .iter()
            .map(|&path| Record {
                path,
                value: None,
                time: None,
            })
            .collect();
        assert_eq!(text(encode_records(&records).unwrap()), req);
        assert_eq!(decode_records(req.as_bytes(), &NoSchema).unwrap(), records);
        // Table 7.4.4-7: its response.
        let resp = r#"[{"n":"/3/0/0","vs":"Open Mobile Alliance"},{"n":"/3/0/9","v":95},{"n":"/1/0/1","v":86400}]"#;
        let values = [
            Value::String("Open Mobile Alliance".into()),
            Value::Integer(95),
            Value::Integer(86400),
        ];
        let records: Vec<_> = paths
            .iter()
            .zip(values)
            .map(|(&path, v)| Record {
                path,
                value: Some(v),
                time: None,
            })
            .collect();
        assert_eq!(text(encode_records(&records).unwrap()), resp);
        assert_eq!(
            decode_records(resp.as_bytes(), &TestSchema::device()).unwrap(),
            records
        );
        // Table 7.4.4-8: Write-Composite.
        let write = r#"[{"n":"/3311/0/5850","vb":false},{"n":"/3311/1/5850","vb":false},{"n":"/3311/2/5851","v":20},{"n":"/3308/0/5900","v":18}]"#;
        let records = decode_records(write.as_bytes(), &NoSchema).unwrap();
        assert_eq!(
            records[2],
            Record {
                path: p("/3311/2/5851"),
                value: Some(Value::Integer(20)),
                time: None
            }
        );
        assert_eq!(text(encode_records(&records).unwrap()), write);
    }

    #[test]
    fn timestamped_notification_of_core_table_7_4_4_3() {
        let json = r#"[{"bn":"/72/","bt":25462634,"n":"1/2","v":22.4,"t":-5},{"n":"1/2","v":22.9,"t":-30},{"n":"1/2","v":24.1,"t":-50}]"#;
        let records = decode_records(json.as_bytes(), &NoSchema).unwrap();
        let got: Vec<_> = records
            .iter()
            .map(|r| (r.path, r.value.clone(), r.time))
            .collect();
        assert_eq!(
            got,
            [
                (p("/72/1/2"), Some(Value::Float(22.4)), Some(25_462_629.0)),
                (p("/72/1/2"), Some(Value::Float(22.9)), Some(25_462_604.0)),
                (p("/72/1/2"), Some(Value::Float(24.1)), Some(25_462_584.0)),
            ]
        );
        // Ours: bn is the one path, bt the first time, t relative to it.
        let ours =
            r#"[{"bn":"/72/1/2","bt":25462629,"v":22.4},{"v":22.9,"t":-25},{"v":24.1,"t":-45}]"#;
        assert_eq!(text(encode_records(&records).unwrap()), ours);
        assert_eq!(decode_records(ours.as_bytes(), &NoSchema).unwrap(), records);
        // A time series is not one node.
        assert!(matches!(
            decode(&p("/72"), json.as_bytes(), &NoSchema),
            Err(CodecError::Node(NodeError::Conflict(_)))
        ));
    }

    #[test]
    fn decodes_leshan_timestamped_packs() {
        // Leshan `senml_encode_timestamped_resources`: bn and bt on every record.
        let json = r#"[{"bn":"/1024/0/1","bt":268500000,"v":22.9},{"bn":"/1024/0/1","bt":268500010,"v":22.4},{"bn":"/1024/0/1","bt":268500020,"v":24.1}]"#;
        let records = decode_records(json.as_bytes(), &TestSchema::device()).unwrap();
        let times: Vec<_> = records.iter().map(|r| r.time.unwrap()).collect();
        assert_eq!(times, [268_500_000.0, 268_500_010.0, 268_500_020.0]);
        assert_eq!(records[1].value, Some(Value::Float(22.4)));
        // Leshan `senml_json_encode_timestamped_nodes`: two nodes at different times.
        let json = r#"[{"bn":"/0/0/0","bt":500000001,"vs":"TestString"},{"bn":"/0/1/","bt":500000002,"n":"1","vb":true},{"n":"2","v":123}]"#;
        let records = decode_records(json.as_bytes(), &NoSchema).unwrap();
        assert_eq!(
            records[2],
            Record {
                path: p("/0/1/2"),
                value: Some(Value::Integer(123)),
                time: Some(500_000_002.0)
            }
        );
    }

    #[test]
    fn decodes_objlnk_pack_of_core_table_7_4_4_4() {
        // As quoted by Wakaama `senml_json_test_3` (/66/1/2 corrected to decimal).
        let json = concat!(
            r#"[{"bn":"/","n":"65/0/0/0","vlo":"66:0"},{"n":"65/0/0/1","vlo":"66:1"},"#,
            r#"{"n":"65/0/1","vs":"8613800755500"},{"n":"65/0/2","v":1},"#,
            r#"{"n":"66/0/0","vs":"myService1"},{"n":"66/0/1","vs":"Internet.15.234"},"#,
            r#"{"n":"66/0/2","vlo":"67:0"},{"n":"66/1/0","vs":"myService2"},"#,
            r#"{"n":"66/1/1","vs":"Internet.15.235"},{"n":"66/1/2","vlo":"65535:65535"},"#,
            r#"{"n":"67/0/0","vs":"85.76.76.84"},{"n":"67/0/1","vs":"85.76.255.255"}]"#
        );
        let records = decode_records(json.as_bytes(), &NoSchema).unwrap();
        assert_eq!(records.len(), 12);
        assert_eq!(records[0].path, p("/65/0/0/0"));
        assert_eq!(
            records[0].value,
            Some(Value::ObjectLink(ObjectLink {
                object: 66,
                instance: 0
            }))
        );
        assert_eq!(records[9].value, Some(Value::ObjectLink(ObjectLink::NULL)));
        let node = decode(&p("/66"), json.as_bytes(), &NoSchema);
        assert!(matches!(
            node,
            Err(CodecError::Node(NodeError::OutsideTarget { .. }))
        ));
    }

    #[test]
    fn accepts_any_key_order_and_late_base_fields() {
        // Wakaama `senml_json_test_10`: bn and bt after n and v in the first record.
        let json = r#"[{"n":"1","v":1234,"bn" : "/12/0/","bt" : 1234567}, {"n":"3","v":56.789}, {"n":"2/0","v":0.23}, {"n":"2/1","v":-52.0006}]"#;
        let records = decode_records(json.as_bytes(), &NoSchema).unwrap();
        assert_eq!(
            records[0],
            Record {
                path: p("/12/0/1"),
                value: Some(Value::Integer(1234)),
                time: Some(1_234_567.0)
            }
        );
        assert_eq!(records[3].value, Some(Value::Float(-52.0006)));
    }

    #[test]
    fn rejects_malformed_packs() {
        for bad in [
            r#"{"n":"/3/0/0"}"#,
            r#"[{"n":"/3/0/0"}] x"#,
            r#"["/3/0/0"]"#,
            r#"[{"n":3}]"#,
            r#"[{"n":"/3/0/0","v":"1"}]"#,
            r#"[{"n":"/3/0/0","v":1,"vs":"1"}]"#,
            r#"[{"n":"/3/0/0","vs":"1","x_":1}]"#,
            r#"[{"n":"/3/0/0","vd":"***"}]"#,
            r#"[{"n":"/3/0/0","bver":10.5}]"#,
            r#"[{"n":"/3/0/0","vlo":"3"}]"#,
            r#"[{"n":"/3/0/0","vb":1}]"#,
            r#"[{"n":"/3/0/0","t":1e308,"bt":1e308}]"#,
        ] {
            assert!(decode_records(bad.as_bytes(), &NoSchema).is_err(), "{bad}");
        }
        // Unknown labels are ignored; decode needs a value in every record.
        let ok = r#"[{"n":"/3/0/0","vs":"a","u":"Cel","xyz":[1]}]"#;
        assert!(decode_records(ok.as_bytes(), &NoSchema).is_ok());
        let pathless = r#"[{"n":"/3/0/0"}]"#;
        assert!(matches!(
            decode(&p("/3/0"), pathless.as_bytes(), &NoSchema),
            Err(CodecError::Node(NodeError::Missing(_)))
        ));
        // JSON has no NaN.
        let nan = Node::ResourceInstance(Value::Float(f64::NAN));
        assert!(encode(&p("/3/0/7/0"), &nan).is_err());
    }

    proptest! {
        #[test]
        fn nodes_round_trip((path, node) in arb_node()) {
            let schema = schema_for_node(&path, &node);
            let bytes = encode(&path, &node).unwrap();
            prop_assert_eq!(decode(&path, &bytes, &schema).unwrap(), node);
        }

        #[test]
        fn nodes_of_shared_generator_round_trip(
            (path, node, schema) in crate::content::testutil::arb_tree_node()
        ) {
            let bytes = encode(&path, &node).unwrap();
            prop_assert_eq!(decode(&path, &bytes, &schema).unwrap(), without_empty_children(node));
        }

        #[test]
        fn records_round_trip(records in arb_records(true)) {
            let schema = schema_for_records(&records);
            let bytes = encode_records(&records).unwrap();
            prop_assert_eq!(decode_records(&bytes, &schema).unwrap(), senml_times(&records));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            decode_arbitrary(&bytes, decode, decode_records);
        }

        #[test]
        fn mutated_packs_never_panic((path, node) in arb_node(), at in any::<usize>(), byte in any::<u8>()) {
            decode_mutated(&path, &node, at, byte, encode, decode, decode_records);
        }
    }
}
