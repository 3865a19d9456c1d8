//! application/vnd.oma.lwm2m+json (Content-Format 11543, 1543 before registration): the JSON
//! format of LwM2M 1.0 (OMA LwM2M TS 1.0 §6.4.4, kept by TS 1.1/1.2 for older clients), an
//! early SenML draft:
//!
//! ```json
//! {"bn":"/3/0/","bt":25462634,"e":[{"n":"0","sv":"Open Mobile Alliance"},{"n":"7/0","v":3800},
//!  {"n":"13","v":1367491215,"t":-5},{"n":"x","bv":true},{"n":"y","ov":"3:0"}]}
//! ```
//!
//! One base name and one base time for the whole payload; each entry carries a name relative
//! to it, one value (`v` number, `sv` string, `bv` boolean, `ov` Objlnk `"o:i"`; Opaque is
//! base64 in `sv`) and optionally a time `t` (resolved as `bt + t`, kept as given). Without
//! `bn`, names are relative to the request's path, as Wakaama sends them. The format has no
//! way to name a path without a value, so it carries no composite requests; it can carry
//! several paths and timestamps (notifications with history).
//!
//! We write what Leshan writes: `bn` is the node's path (or the records' common prefix), no
//! `bt`, absolute `t` per entry, keys in the order `n`, value, `t`. serde_json does JSON; the
//! LwM2M mapping, shared with SenML in [`super::senml`], is ours.
#![deny(clippy::indexing_slicing)]

use super::senml::{self, Number, RawValue, SenmlRecord};
use super::senml_json::{json_number, push_number, push_str, push_time};
use super::{CodecError, ContentFormat, Record};
use crate::model::{Node, Path, Schema, Value};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::Value as Json;

const FORMAT: ContentFormat = ContentFormat::Lwm2mJson;

fn malformed(reason: impl Into<String>) -> CodecError {
    CodecError::malformed(FORMAT, reason)
}

/// Encodes `node` (at `path`): `bn` is the node's path, names relative to it.
pub(super) fn encode(path: &Path, node: &Node) -> Result<Vec<u8>, CodecError> {
    write(&senml::node_records(path, node)?, Some(*path))
}

/// Decodes a payload addressed to `path` into the node there. Timestamps are dropped; a
/// payload with history for one path is a conflict (use [`decode_records`]).
pub(super) fn decode(path: &Path, bytes: &[u8], schema: &dyn Schema) -> Result<Node, CodecError> {
    senml::into_node(path, decode_records_at(path, bytes, schema)?)
}

/// Encodes records (timestamped values, possibly of several paths) with absolute times.
/// Records without a value cannot be written in this format: `Unsupported`.
pub(super) fn encode_records(records: &[Record]) -> Result<Vec<u8>, CodecError> {
    write(records, None)
}

/// Decodes timestamped data into records in payload order. Names without `bn` resolve from
/// the root; use [`decode_records_at`] when the request path is known.
pub(super) fn decode_records(bytes: &[u8], schema: &dyn Schema) -> Result<Vec<Record>, CodecError> {
    decode_records_at(&Path::ROOT, bytes, schema)
}

/// [`decode_records`] for a payload answering a request on `request`, against which names
/// resolve when the payload has no `bn` (TS 1.0 §6.4.4's history example has none).
pub(super) fn decode_records_at(
    request: &Path,
    bytes: &[u8],
    schema: &dyn Schema,
) -> Result<Vec<Record>, CodecError> {
    let doc: Json = serde_json::from_slice(bytes).map_err(|e| malformed(e.to_string()))?;
    let Json::Object(root) = doc else {
        return Err(malformed("an LwM2M JSON payload is a JSON object"));
    };
    let base_name = match root.get("bn") {
        None => None,
        Some(v) => Some(v.as_str().ok_or_else(|| malformed("bn must be a string"))?),
    };
    let base_time = match root.get("bt") {
        None => None,
        Some(v) => Some(
            json_number(v)
                .ok_or_else(|| malformed("bt must be a number"))?
                .as_f64(),
        ),
    };
    let Some(Json::Array(entries)) = root.get("e") else {
        return Err(malformed("an LwM2M JSON payload needs an \"e\" array"));
    };
    if entries.len() > senml::MAX_RECORDS {
        return Err(malformed(format!(
            "more than {} entries",
            senml::MAX_RECORDS
        )));
    }
    let mut wire = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let mut rec = read_entry(entry)?;
        let n = rec.name.take();
        if base_name.is_some_and(|s| s.len() > senml::MAX_NAME_LEN)
            || n.as_ref().is_some_and(|s| s.len() > senml::MAX_NAME_LEN)
        {
            return Err(malformed(format!(
                "name longer than {} bytes",
                senml::MAX_NAME_LEN
            )));
        }
        let name = match (base_name, n.as_deref()) {
            (Some(bn), n) => format!("{bn}{}", n.unwrap_or("")),
            (None, Some(n)) if n.starts_with('/') => n.to_owned(),
            (None, Some(n)) if request.is_root() => format!("/{n}"),
            (None, Some(n)) => format!("{request}/{n}"),
            (None, None) => request.to_string(),
        };
        rec.name = Some(name);
        if i == 0 {
            rec.base_time = base_time;
        }
        wire.push(rec);
    }
    senml::resolve(FORMAT, wire, schema)
}

fn read_entry(entry: &Json) -> Result<SenmlRecord, CodecError> {
    let Json::Object(fields) = entry else {
        return Err(malformed("an entry is a JSON object"));
    };
    let wrong = |key: &str| malformed(format!("{key} has the wrong JSON type"));
    let text = |key: &str, v: &Json| v.as_str().map(str::to_owned).ok_or_else(|| wrong(key));
    let mut rec = SenmlRecord::default();
    for (key, v) in fields {
        let value = match key.as_str() {
            "n" => {
                rec.name = Some(text(key, v)?);
                None
            }
            "t" => {
                rec.time = Some(json_number(v).ok_or_else(|| wrong(key))?.as_f64());
                None
            }
            "v" => Some(RawValue::Number(json_number(v).ok_or_else(|| wrong(key))?)),
            "sv" => Some(RawValue::TextOrBase64(text(key, v)?)),
            "bv" => Some(RawValue::Bool(v.as_bool().ok_or_else(|| wrong(key))?)),
            "ov" => Some(RawValue::ObjectLink(text(key, v)?)),
            _ => None,
        };
        if let Some(value) = value {
            if rec.value.replace(value).is_some() {
                return Err(malformed("an entry carries more than one value"));
            }
        }
    }
    if rec.value.is_none() {
        return Err(malformed("an entry without a value"));
    }
    Ok(rec)
}

fn write(records: &[Record], prefix: Option<Path>) -> Result<Vec<u8>, CodecError> {
    let paths: Vec<Path> = records.iter().map(|r| r.path).collect();
    let (base_name, names) = senml::split_names(&paths, prefix);
    let mut out = String::from("{");
    if let Some(bn) = base_name {
        out.push_str("\"bn\":");
        push_str(&mut out, &bn);
        out.push(',');
    }
    out.push_str("\"e\":[");
    for (i, (rec, name)) in records.iter().zip(names).enumerate() {
        let Some(value) = &rec.value else {
            return Err(CodecError::Unsupported {
                format: FORMAT,
                level: rec.path.level(),
            });
        };
        if i > 0 {
            out.push(',');
        }
        out.push('{');
        if let Some(n) = name {
            out.push_str("\"n\":");
            push_str(&mut out, &n);
            out.push(',');
        }
        write_value(&mut out, value)?;
        if let Some(t) = rec.time {
            out.push_str(",\"t\":");
            push_time(&mut out, t)?;
        }
        out.push('}');
    }
    out.push_str("]}");
    Ok(out.into_bytes())
}

fn write_value(out: &mut String, value: &Value) -> Result<(), CodecError> {
    match value {
        Value::String(s) | Value::CoreLink(s) => {
            out.push_str("\"sv\":");
            push_str(out, s);
        }
        Value::Opaque(b) => {
            out.push_str("\"sv\":");
            push_str(out, &STANDARD.encode(b));
        }
        Value::Integer(i) | Value::Time(i) => {
            out.push_str("\"v\":");
            push_number(out, Number::Int(i128::from(*i)))?;
        }
        Value::UnsignedInteger(u) => {
            out.push_str("\"v\":");
            push_number(out, Number::Int(i128::from(*u)))?;
        }
        Value::Float(f) => {
            out.push_str("\"v\":");
            push_number(out, Number::Float(*f))?;
        }
        Value::Boolean(b) => out.push_str(if *b { "\"bv\":true" } else { "\"bv\":false" }),
        Value::ObjectLink(l) => {
            out.push_str("\"ov\":");
            push_str(out, &l.to_string());
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)] // tests may unwrap and index
mod tests {
    use super::super::senml::test_support::*;
    use super::*;
    use crate::content::roundtrip::*;
    use crate::model::{NoSchema, NodeError, ObjectLink, Resource, ResourceType};
    use proptest::prelude::*;

    fn p(s: &str) -> Path {
        Path::parse(s).unwrap()
    }

    fn text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).unwrap()
    }

    fn rec(path: &str, value: Value, time: Option<f64>) -> Record {
        Record {
            path: p(path),
            value: Some(value),
            time,
        }
    }

    /// The TS 1.0 §6.4.4 device example as Leshan's `json_encode_device_object_instance`
    /// writes it (bn "/3/0/", keys n then value).
    const DEVICE: &str = concat!(
        r#"{"bn":"/3/0/","e":["#,
        r#"{"n":"0","sv":"Open Mobile Alliance"},"#,
        r#"{"n":"1","sv":"Lightweight M2M Client"},"#,
        r#"{"n":"2","sv":"345000123"},"#,
        r#"{"n":"3","sv":"1.0"},"#,
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
        r#"{"n":"14","sv":"+02:00"},"#,
        r#"{"n":"16","sv":"U"}]}"#
    );

    #[test]
    fn device_instance_matches_ts_1_0_example() {
        let node = device_instance();
        assert_eq!(text(encode(&p("/3/0"), &node).unwrap()), DEVICE);
        assert_eq!(
            decode(&p("/3/0"), DEVICE.as_bytes(), &TestSchema::device()).unwrap(),
            node
        );
    }

    #[test]
    fn decodes_names_without_base_name() {
        // Wakaama `test_3`: no bn, names relative to the request path /3/0.
        let json = r#"{"e":[{"n":"0","sv":"Open Mobile Alliance"},{"n":"6/0","v":1},{"n":"13","v":1367491215}]}"#;
        let node = decode(&p("/3/0"), json.as_bytes(), &TestSchema::device()).unwrap();
        let Node::Instance(inst) = node else { panic!() };
        assert_eq!(inst[&13], Resource::Single(Value::Time(1_367_491_215)));
        // Leshan `json_device_object_instance0_without_basename`: absolute names.
        let json = r#"{"e":[{"n":"/3/0/0","sv":"Open Mobile Alliance"},{"n":"/3/0/9","v":100}]}"#;
        assert!(decode(&p("/3/0"), json.as_bytes(), &NoSchema).is_ok());
        // Leshan `json_custom_object_instance`: bn without its leading slash.
        let json = r#"{"bn":"1024/0/", "e":[{"n":"0","sv":"a string"},{"n":"1","v":10.5},{"n":"2","bv":true}]}"#;
        let Node::Instance(inst) =
            decode(&p("/1024/0"), json.as_bytes(), &TestSchema::device()).unwrap()
        else {
            panic!()
        };
        assert_eq!(inst[&1], Resource::Single(Value::Float(10.5)));
        assert_eq!(inst[&2], Resource::Single(Value::Boolean(true)));
        // Wakaama `test_8` (TS 1.0 example of several objects under bn "/").
        let json = r#"{ "bn":"/", "e":[ {"n":"34/0/1","sv":"8613800755500"}, {"n":"34/0/2","v":1}, {"n":"66/0/0","sv":"myService1"}, {"n":"31/0/1","sv":"85.76.255.255"}]}"#;
        let records = decode_records(json.as_bytes(), &NoSchema).unwrap();
        assert_eq!(
            records[3],
            Record {
                path: p("/31/0/1"),
                value: Some(Value::String("85.76.255.255".into())),
                time: None
            }
        );
    }

    #[test]
    fn timestamped_history_of_ts_1_0() {
        // TS 1.0 §6.4.4: history without bn, answering a request on /72.
        let json = r#"{"e":[{"n":"1/2","v":22.4,"t":-5},{"n":"1/2","v":22.9,"t":-30},{"n":"1/2","v":24.1,"t":-50}],"bt":25462634}"#;
        let records = decode_records_at(&p("/72"), json.as_bytes(), &NoSchema).unwrap();
        assert_eq!(
            records,
            [
                rec("/72/1/2", Value::Float(22.4), Some(25_462_629.0)),
                rec("/72/1/2", Value::Float(22.9), Some(25_462_604.0)),
                rec("/72/1/2", Value::Float(24.1), Some(25_462_584.0)),
            ]
        );
        // From the root, "1/2" is an instance path, which carries no value.
        assert!(decode_records(json.as_bytes(), &NoSchema).is_err());
        // Leshan `json_timestamped_resources`: same history with bn.
        let json = r#"{"bn":"/1024/0/1","e":[{"v":22.9,"t":-30},{"v":22.4,"t":-5},{"v":24.1,"t":-50}],"bt":25462634}"#;
        let times: Vec<_> = decode_records(json.as_bytes(), &NoSchema)
            .unwrap()
            .iter()
            .map(|r| r.time.unwrap())
            .collect();
        assert_eq!(times, [25_462_604.0, 25_462_629.0, 25_462_584.0]);
    }

    #[test]
    fn timestamped_encoding_matches_leshan() {
        // Leshan `json_encode_timestamped_resources`.
        let records = [
            rec("/1024/0/1", Value::Float(22.9), Some(500.0)),
            rec("/1024/0/1", Value::Float(22.4), Some(510.0)),
            rec("/1024/0/1", Value::Float(24.1), Some(520.0)),
        ];
        let want =
            r#"{"bn":"/1024/0/1","e":[{"v":22.9,"t":500},{"v":22.4,"t":510},{"v":24.1,"t":520}]}"#;
        assert_eq!(text(encode_records(&records).unwrap()), want);
        assert_eq!(decode_records(want.as_bytes(), &NoSchema).unwrap(), records);
        // Leshan `json_encode_timestamped_instances`.
        let records = [
            rec("/1024/0/1", Value::Float(22.9), Some(110.0)),
            rec("/1024/0/0", Value::String("a string".into()), Some(120.0)),
            rec("/1024/0/1", Value::Float(22.4), Some(120.0)),
            rec("/1024/0/1", Value::Float(24.1), Some(130.0)),
        ];
        let want = r#"{"bn":"/1024/0/","e":[{"n":"1","v":22.9,"t":110},{"n":"0","sv":"a string","t":120},{"n":"1","v":22.4,"t":120},{"n":"1","v":24.1,"t":130}]}"#;
        assert_eq!(text(encode_records(&records).unwrap()), want);
        assert_eq!(
            decode_records(want.as_bytes(), &TestSchema::device()).unwrap(),
            records
        );
    }

    #[test]
    fn opaque_objlnk_and_unsigned_values() {
        let schema = TestSchema::with(&[
            (5, 0, ResourceType::Opaque, false),
            (5, 1, ResourceType::ObjectLink, false),
            (5, 2, ResourceType::UnsignedInteger, false),
        ]);
        let mut inst = crate::model::Instance::new();
        inst.insert(0, Resource::Single(Value::Opaque(vec![1, 2, 3, 4, 5])));
        inst.insert(
            1,
            Resource::Single(Value::ObjectLink(ObjectLink {
                object: 3,
                instance: 0,
            })),
        );
        inst.insert(2, Resource::Single(Value::UnsignedInteger(u64::MAX)));
        let node = Node::Instance(inst);
        let want = r#"{"bn":"/5/0/","e":[{"n":"0","sv":"AQIDBAU="},{"n":"1","ov":"3:0"},{"n":"2","v":18446744073709551615}]}"#;
        assert_eq!(text(encode(&p("/5/0"), &node).unwrap()), want);
        assert_eq!(decode(&p("/5/0"), want.as_bytes(), &schema).unwrap(), node);
        // Without the schema the base64 stays a string.
        let Node::Instance(raw) = decode(&p("/5/0"), want.as_bytes(), &NoSchema).unwrap() else {
            panic!()
        };
        assert_eq!(raw[&0], Resource::Single(Value::String("AQIDBAU=".into())));
    }

    #[test]
    fn rejects_malformed_payloads_and_pathless_records() {
        for bad in [
            r#"[{"n":"/3/0/0","sv":"a"}]"#,
            r#"{"bn":"/3/0/"}"#,
            r#"{"bn":"/3/0/","e":{}}"#,
            r#"{"bn":3,"e":[]}"#,
            r#"{"bt":"1","e":[]}"#,
            r#"{"bn":"/3/0/","e":[{"n":"0"}]}"#,
            r#"{"bn":"/3/0/","e":[{"n":"0","v":1,"sv":"1"}]}"#,
            r#"{"bn":"/3/0/","e":[{"n":0,"v":1}]}"#,
            r#"{"bn":"/3/0/","e":[{"n":"0","ov":"a:b"}]}"#,
            r#"{"bn":"/3/0/","e":[1]}"#,
        ] {
            assert!(decode_records(bad.as_bytes(), &NoSchema).is_err(), "{bad}");
        }
        let dup = r#"{"bn":"/3/0/","e":[{"n":"0","v":1},{"n":"0","v":2}]}"#;
        assert!(matches!(
            decode(&p("/3/0"), dup.as_bytes(), &NoSchema),
            Err(CodecError::Node(NodeError::Conflict(_)))
        ));
        let pathless = [Record {
            path: p("/3/0/1"),
            value: None,
            time: None,
        }];
        assert!(matches!(
            encode_records(&pathless),
            Err(CodecError::Unsupported { .. })
        ));
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
        fn records_round_trip(mut records in arb_records(true)) {
            records.retain(|r| r.value.is_some());
            let schema = schema_for_records(&records);
            let bytes = encode_records(&records).unwrap();
            prop_assert_eq!(decode_records(&bytes, &schema).unwrap(), records);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            decode_arbitrary(&bytes, decode, decode_records);
            // LwM2M JSON also resolves names relative to a request path.
            for path in device_paths() {
                let _ = decode_records_at(&path, &bytes, &TestSchema::device());
            }
        }

        #[test]
        fn mutated_payloads_never_panic((path, node) in arb_node(), at in any::<usize>(), byte in any::<u8>()) {
            decode_mutated(&path, &node, at, byte, encode, decode, decode_records);
        }
    }
}
