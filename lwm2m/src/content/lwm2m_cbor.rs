//! application/vnd.oma.lwm2m+cbor (Content-Format 11544): the LwM2M CBOR format of OMA
//! LwM2M TS 1.2 Core §7.4.6, for any node and for composite payloads.
//!
//! A payload is a CBOR map keyed by path ids, nested level by level from the object id down:
//! `{3: {0: {0: "Open Mobile Alliance", 7: {0: 3800, 1: 5000}}}}`. A key may also be an
//! array of ids that stands for several levels at once (`{[3, 0]: {0: ...}}`,
//! `{[3, 0, 7, 1]: 5000}`), and one payload may mix both forms and name several objects. The
//! values at the leaves are typed as in application/cbor (Integer and Unsigned Integer as CBOR
//! integers, Float as a float, Time as tag 1 + integer, Objlnk as text `"o:i"`, Opaque as a
//! byte string); `null` stands for a path without a value (Read-Composite and
//! Observe-Composite requests). The format carries no timestamps.
//!
//! We decode every form (definite or indefinite lengths, compact or nested keys, decimal
//! fractions and float16 numbers) and write the nested form with definite lengths, the
//! node's full path as the outer keys, floats as float32 when exact, like application/cbor.
//!
//! minicbor does CBOR (through [`super::senml_cbor`]'s bounded item reader); the LwM2M
//! mapping is ours, and shares value typing and record checks with SenML ([`super::senml`]).
#![deny(clippy::indexing_slicing)]

use super::senml;
use super::senml_cbor::{item_value, parse, put_float, put_int, Item, WriteError, TAG_EPOCH};
use super::{CodecError, ContentFormat, Record};
use crate::model::{Node, NodeError, Path, PathLevel, Schema, Value};
use minicbor::data::Tag;
use minicbor::Encoder;

const FORMAT: ContentFormat = ContentFormat::Lwm2mCbor;

fn malformed(reason: impl Into<String>) -> CodecError {
    CodecError::malformed(FORMAT, reason)
}

/// The entries of one map level of the payload being written, in insertion order.
type Level = Vec<(u16, Entry)>;

/// What sits under one key of the payload being written.
enum Entry {
    /// A value, or `null` for a path without one.
    Leaf(Option<Value>),
    /// A deeper map level.
    Map(Level),
}

/// Encodes `node` (at `path`) as nested maps from the object id down.
pub(super) fn encode(path: &Path, node: &Node) -> Result<Vec<u8>, CodecError> {
    let mut root = Level::new();
    match node.value() {
        Some(value) => insert(&mut root, path, path.ids(), Some(Some(value.clone())))?,
        None => {
            // The container itself, so an empty instance still reads back at its path.
            insert(&mut root, path, path.ids(), None)?;
            for (p, value) in node.flatten(path)? {
                insert(&mut root, &p, p.ids(), Some(Some(value)))?;
            }
        }
    }
    write(&root)
}

/// Decodes a payload into the node at `path`; every leaf must carry a value under `path`.
pub(super) fn decode(path: &Path, bytes: &[u8], schema: &dyn Schema) -> Result<Node, CodecError> {
    senml::into_node(path, decode_records(bytes, schema)?)
}

/// Encodes a composite payload: records with or without values, grouped into nested maps
/// in order of first appearance. Records with a time (the format has none), at the root, or
/// at a path that is also another record's container are refused.
pub(super) fn encode_records(records: &[Record]) -> Result<Vec<u8>, CodecError> {
    let mut root = Level::new();
    for rec in records {
        if rec.time.is_some() || rec.path.is_root() {
            return Err(CodecError::Unsupported {
                format: FORMAT,
                level: rec.path.level(),
            });
        }
        insert(
            &mut root,
            &rec.path,
            rec.path.ids(),
            Some(rec.value.clone()),
        )?;
    }
    write(&root)
}

/// Decodes a composite payload into records in payload order (depth first), typed through
/// `schema`; `null` leaves are records without a value.
pub(super) fn decode_records(bytes: &[u8], schema: &dyn Schema) -> Result<Vec<Record>, CodecError> {
    let Item::Map(entries) = parse(FORMAT, bytes)? else {
        return Err(malformed("an LwM2M CBOR payload is a CBOR map"));
    };
    let mut leaves = Vec::new();
    walk(Path::ROOT, entries, &mut leaves)?;
    senml::check_and_type(FORMAT, leaves, schema)
}

/// Collects the leaves under `at`, depth first. Recursion is bounded: every level adds at
/// least one id and a path has at most four.
fn walk(
    at: Path,
    entries: Vec<(Item, Item)>,
    out: &mut Vec<(Path, Option<senml::RawValue>, Option<f64>)>,
) -> Result<(), CodecError> {
    for (key, value) in entries {
        let path = extend(at, key)?;
        match value {
            Item::Map(inner) => walk(path, inner, out)?,
            leaf => {
                if out.len() >= senml::MAX_RECORDS {
                    return Err(malformed(format!(
                        "more than {} values",
                        senml::MAX_RECORDS
                    )));
                }
                out.push((path, item_value(leaf).map_err(malformed)?, None));
            }
        }
    }
    Ok(())
}

/// The path a key leads to: one id, or a non-empty array of ids.
fn extend(at: Path, key: Item) -> Result<Path, CodecError> {
    let id = |item: &Item| match item {
        Item::Int(i) => u16::try_from(*i).map_err(|_| malformed(format!("id {i} out of range"))),
        _ => Err(malformed("a path id is an unsigned integer")),
    };
    match key {
        Item::Array(ids) if !ids.is_empty() => {
            let mut path = at;
            for item in &ids {
                path = path.child(id(item)?)?;
            }
            Ok(path)
        }
        Item::Array(_) => Err(malformed("an empty array as a key")),
        other => Ok(at.child(id(&other)?)?),
    }
}

/// Puts a leaf (`Some(value)`, `Some(None)` for null) or a container (`None`) at `ids`
/// below `level`. `full` is the whole path, for errors.
fn insert(
    level: &mut Level,
    full: &Path,
    ids: &[u16],
    leaf: Option<Option<Value>>,
) -> Result<(), CodecError> {
    let Some((&id, rest)) = ids.split_first() else {
        // The root: it is the payload's map itself, and holds no value.
        return match leaf {
            None => Ok(()),
            Some(_) => Err(CodecError::Unsupported {
                format: FORMAT,
                level: PathLevel::Root,
            }),
        };
    };
    // Paths arrive mostly in order: try the last entry before searching.
    let found = match level.last() {
        Some((last, _)) if *last == id => Some(level.len().saturating_sub(1)),
        _ => level.iter().position(|(k, _)| *k == id),
    };
    let conflict = || CodecError::Node(NodeError::Conflict(*full));
    if rest.is_empty() {
        return match (found, leaf) {
            (None, None) => {
                level.push((id, Entry::Map(Level::new())));
                Ok(())
            }
            (None, Some(value)) => {
                level.push((id, Entry::Leaf(value)));
                Ok(())
            }
            (Some(i), None) if matches!(level.get(i), Some((_, Entry::Map(_)))) => Ok(()),
            (Some(_), _) => Err(conflict()),
        };
    }
    let i = match found {
        Some(i) => i,
        None => {
            level.push((id, Entry::Map(Level::new())));
            level.len().saturating_sub(1)
        }
    };
    match level.get_mut(i) {
        Some((_, Entry::Map(children))) => insert(children, full, rest, leaf),
        _ => Err(conflict()),
    }
}

fn write(root: &Level) -> Result<Vec<u8>, CodecError> {
    let mut e = Encoder::new(Vec::new());
    write_level(&mut e, root).map_err(|err| malformed(format!("cannot encode: {err}")))?;
    Ok(e.into_writer())
}

fn write_level(e: &mut Encoder<Vec<u8>>, level: &Level) -> Result<(), WriteError> {
    e.map(level.len() as u64)?;
    for (id, entry) in level {
        e.u16(*id)?;
        match entry {
            Entry::Leaf(None) => {
                e.null()?;
            }
            Entry::Leaf(Some(value)) => put_value(e, value)?,
            Entry::Map(inner) => write_level(e, inner)?,
        }
    }
    Ok(())
}

/// A value as application/cbor writes it (Core §7.4.3's table, shared by LwM2M CBOR).
fn put_value(e: &mut Encoder<Vec<u8>>, value: &Value) -> Result<(), WriteError> {
    match value {
        Value::String(s) | Value::CoreLink(s) => {
            e.str(s)?;
        }
        Value::Integer(i) => put_int(e, i128::from(*i))?,
        Value::UnsignedInteger(u) => put_int(e, i128::from(*u))?,
        Value::Float(f) => put_float(e, *f)?,
        Value::Boolean(b) => {
            e.bool(*b)?;
        }
        Value::Opaque(b) => {
            e.bytes(b)?;
        }
        Value::Time(t) => {
            e.tag(Tag::new(TAG_EPOCH))?;
            put_int(e, i128::from(*t))?;
        }
        Value::ObjectLink(l) => {
            e.str(&l.to_string())?;
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
    use crate::content::testutil::hex;
    use crate::model::{Instance, NoSchema, ObjectLink, Resource, ResourceType};
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn p(s: &str) -> Path {
        Path::parse(s).unwrap()
    }

    fn single(v: Value) -> Node {
        Node::Resource(Resource::Single(v))
    }

    #[test]
    fn decodes_every_key_form_of_anjay_tests() {
        // Anjay tests/core/io/lwm2m_cbor_in.c, all meaning /13/26/1 = 42.
        let forty_two = single(Value::Integer(42));
        for (name, h) in [
            (
                "single_resource {[13, 26, 1]: 42}",
                "A1 83 0D 18 1A 01 18 2A",
            ),
            (
                "single_resource_indefinite",
                "BF 9F 0D 18 1A 01 FF 18 2A FF",
            ),
            (
                "single_resource_nested {13: {26: {1: 42}}}",
                "A1 0D A1 18 1A A1 01 18 2A",
            ),
            (
                "single_resource_nested_arrays",
                "A1 81 0D A1 81 18 1A A1 81 01 18 2A",
            ),
            (
                "..._all_indefinite",
                "BF 9F 0D FF BF 9F 18 1A FF BF 9F 01 FF 18 2A FF FF FF",
            ),
        ] {
            assert_eq!(
                decode(&p("/13/26/1"), &hex(h), &NoSchema).unwrap(),
                forty_two,
                "{name}"
            );
        }
        // We write the nested form, which is Anjay's `single_resource_nested` byte for byte.
        assert_eq!(
            encode(&p("/13/26/1"), &forty_two).unwrap(),
            hex("A1 0D A1 18 1A A1 01 18 2A")
        );
        assert_eq!(
            decode(&p("/13/26/1"), &hex("A1 83 0D 18 1A 01 F5"), &NoSchema).unwrap(),
            single(Value::Boolean(true))
        );
        // max_possible_nesting: {[13]: {[26]: {[1]: {[2]: 4([-1, 45])}}}} is 4.5.
        let h = "A1 81 0D A1 81 18 1A A1 81 01 A1 81 02 C4 82 20 18 2D";
        assert_eq!(
            decode(&p("/13/26/1/2"), &hex(h), &NoSchema).unwrap(),
            Node::ResourceInstance(Value::Float(4.5))
        );
    }

    #[test]
    fn decodes_mixed_key_forms_and_chunked_values() {
        let both = Node::Instance(Instance::from([
            (1, Resource::Single(Value::Integer(42))),
            (2, Resource::Single(Value::Integer(21))),
        ]));
        for h in [
            "A1 82 0D 18 1A A2 01 18 2A 02 15", // {[13, 26]: {1: 42, 2: 21}}
            "A2 83 0D 18 1A 01 18 2A 83 0D 18 1A 02 15", // {[13, 26, 1]: 42, [13, 26, 2]: 21}
            "A2 82 0D 18 1A A1 01 18 2A 83 0D 18 1A 02 15", // {[13, 26]: {1: 42}, [13, 26, 2]: 21}
            "A2 83 0D 18 1A 01 18 2A 82 0D 18 1A A1 81 02 15", // {[13, 26, 1]: 42, [13, 26]: {[2]: 21}}
        ] {
            assert_eq!(
                decode(&p("/13/26"), &hex(h), &NoSchema).unwrap(),
                both,
                "{h}"
            );
        }
        assert_eq!(
            encode(&p("/13/26"), &both).unwrap(),
            hex("A1 0D A1 18 1A A2 01 18 2A 02 15")
        );
        // Anjay `bytes_indefinite`: (_ h'0011223344556677', h'8899AABBCCDDEEFF').
        let h = "A1 83 0D 18 1A 01 5F 48 0011223344556677 48 8899AABBCCDDEEFF FF";
        let want = single(Value::Opaque(hex("00112233445566778899AABBCCDDEEFF")));
        assert_eq!(decode(&p("/13/26/1"), &hex(h), &NoSchema).unwrap(), want);
        // Anjay `string`.
        let mut bytes = hex("A1 83 0D 18 1A 01 70");
        bytes.extend(b"c--cossiezepsulo");
        let want = single(Value::String("c--cossiezepsulo".into()));
        assert_eq!(decode(&p("/13/26/1"), &bytes, &NoSchema).unwrap(), want);
    }

    /// Anjay Lite tests/anj/io/lwm2m_cbor_encoder.c `all_data_types_notify_msg` (without its
    /// external-data entry): {8: {8: {0: 25, 1: 100, 2: 1(3), 3: "X"*50, 4: h'44'*50,
    /// 5: false, 6: "17:18", 7: 1.1}}} with indefinite-length maps.
    fn all_types_indefinite() -> Vec<u8> {
        let mut b = hex("BF 08 BF 08 BF 00 18 19 01 18 64 02 C1 03 03 78 32");
        b.extend([b'X'; 50]);
        b.extend(hex("04 58 32"));
        b.extend([b'D'; 50]);
        b.extend(hex(
            "05 F4 06 65 31 37 3A 31 38 07 FB 3F F1 99 99 99 99 99 9A FF FF FF",
        ));
        b
    }

    #[test]
    fn all_data_types_of_anjay_lite() {
        use ResourceType as T;
        let schema = TestSchema::with(&[
            (8, 0, T::Integer, false),
            (8, 1, T::UnsignedInteger, false),
            (8, 2, T::Time, false),
            (8, 3, T::String, false),
            (8, 4, T::Opaque, false),
            (8, 5, T::Boolean, false),
            (8, 6, T::ObjectLink, false),
            (8, 7, T::Float, false),
        ]);
        let node = Node::Instance(Instance::from([
            (0, Resource::Single(Value::Integer(25))),
            (1, Resource::Single(Value::UnsignedInteger(100))),
            (2, Resource::Single(Value::Time(3))),
            (3, Resource::Single(Value::String("X".repeat(50)))),
            (4, Resource::Single(Value::Opaque(vec![b'D'; 50]))),
            (5, Resource::Single(Value::Boolean(false))),
            (
                6,
                Resource::Single(Value::ObjectLink(ObjectLink {
                    object: 17,
                    instance: 18,
                })),
            ),
            (7, Resource::Single(Value::Float(1.1))),
        ]));
        assert_eq!(
            decode(&p("/8/8"), &all_types_indefinite(), &schema).unwrap(),
            node
        );
        // Our encoding is the same payload with definite lengths: A1 08 A1 08 A8 ... no breaks.
        let mut definite = all_types_indefinite();
        definite.truncate(definite.len() - 3);
        definite.splice(0..5, hex("A1 08 A1 08 A8"));
        assert_eq!(encode(&p("/8/8"), &node).unwrap(), definite);
        // Untyped, the tag still says Time and the link stays text.
        let Node::Instance(raw) = decode(&p("/8/8"), &definite, &NoSchema).unwrap() else {
            panic!()
        };
        assert_eq!(raw[&2], Resource::Single(Value::Time(3)));
        assert_eq!(raw[&6], Resource::Single(Value::String("17:18".into())));
    }

    #[test]
    fn composite_send_and_read_requests() {
        // Anjay Lite `send_two_records_different_obj`: {3: {3: {3: 25}}, 1: {1: {1: 11}}}.
        let h = "BF 03 BF 03 BF 03 18 19 FF FF 01 BF 01 BF 01 0B FF FF FF";
        let records = decode_records(&hex(h), &NoSchema).unwrap();
        let want = [
            Record {
                path: p("/3/3/3"),
                value: Some(Value::Integer(25)),
                time: None,
            },
            Record {
                path: p("/1/1/1"),
                value: Some(Value::Integer(11)),
                time: None,
            },
        ];
        assert_eq!(records, want);
        assert_eq!(
            encode_records(&want).unwrap(),
            hex("A2 03 A1 03 A1 03 18 19 01 A1 01 A1 01 0B")
        );
        // Anjay Lite `biggest_possible_record`.
        let h = "BF 19 FF FE BF 19 FF FE BF 19 FF FE BF 19 FF FE 6B 36 35 35 33 34 3A 36 35 35 33 34 FF FF FF FF";
        let schema = TestSchema::with(&[(65534, 65534, ResourceType::ObjectLink, true)]);
        let records = decode_records(&hex(h), &schema).unwrap();
        assert_eq!(
            records[0].value,
            Some(Value::ObjectLink(ObjectLink {
                object: 65534,
                instance: 65534
            }))
        );
        // A Read-Composite request: paths with null, compact keys: {[3, 0]: {1: null, 2: null}, 1: {0: {1: null}}}.
        let request = hex("A2 82 03 00 A2 01 F6 02 F6 01 A1 00 A1 01 F6");
        let records = decode_records(&request, &NoSchema).unwrap();
        let paths: Vec<_> = records
            .iter()
            .map(|r| (r.path.to_string(), r.value.clone()))
            .collect();
        assert_eq!(
            paths,
            [
                ("/3/0/1".into(), None),
                ("/3/0/2".into(), None),
                ("/1/0/1".into(), None)
            ]
        );
        assert_eq!(
            encode_records(&records).unwrap(),
            hex("A2 03 A1 00 A2 01 F6 02 F6 01 A1 00 A1 01 F6")
        );
        // Paths above resource level, as Observe-Composite may name them.
        let coarse = [
            Record {
                path: p("/3/0"),
                value: None,
                time: None,
            },
            Record {
                path: p("/1"),
                value: None,
                time: None,
            },
        ];
        assert_eq!(
            decode_records(&encode_records(&coarse).unwrap(), &NoSchema).unwrap(),
            coarse
        );
    }

    #[test]
    fn device_instance_writes_full_path_as_outer_keys() {
        let node = device_instance();
        let bytes = encode(&p("/3/0"), &node).unwrap();
        // {3: {0: {13 resources}}}
        assert_eq!(bytes[..5], hex("A1 03 A1 00 AD")[..]);
        assert_eq!(
            decode(&p("/3/0"), &bytes, &TestSchema::device()).unwrap(),
            node
        );
        // Empty containers read back at their path.
        let empty = Node::Resource(Resource::Multiple(BTreeMap::new()));
        let bytes = encode(&p("/3/0/7"), &empty).unwrap();
        assert_eq!(bytes, hex("A1 03 A1 00 A1 07 A0"));
        assert_eq!(decode(&p("/3/0/7"), &bytes, &NoSchema).unwrap(), empty);
    }

    #[test]
    fn rejects_malformed_payloads() {
        for (why, h) in [
            ("not a map", "83 03 00 01"),
            ("text key", "A1 61 33 01"),
            ("empty array key", "A1 80 01"),
            ("id 65535", "A1 83 19 FF FF 00 01 01"),
            ("negative id", "A1 83 20 00 01 01"),
            ("five levels", "A1 85 01 02 03 04 05 01"),
            ("value at an instance", "A1 82 03 00 01"),
            ("same leaf twice", "A2 83 03 00 01 01 03 A1 00 A1 01 02"),
            ("array value", "A1 83 03 00 01 80"),
            ("tag 1 on text", "A1 83 03 00 01 C1 61 31"),
            ("trailing byte", "A1 83 03 00 01 01 00"),
            ("truncated", "A1 83 03 00"),
        ] {
            assert!(decode_records(&hex(h), &NoSchema).is_err(), "{why}");
        }
        let null = hex("A1 83 03 00 01 F6");
        assert!(matches!(
            decode(&p("/3/0/1"), &null, &NoSchema),
            Err(CodecError::Node(NodeError::Missing(_)))
        ));
        let outside = hex("A1 83 03 01 01 01");
        assert!(matches!(
            decode(&p("/3/0"), &outside, &NoSchema),
            Err(CodecError::Node(NodeError::OutsideTarget { .. }))
        ));
        let timed = [Record {
            path: p("/3/0/1"),
            value: None,
            time: Some(1.0),
        }];
        assert!(matches!(
            encode_records(&timed),
            Err(CodecError::Unsupported { .. })
        ));
        let root = [Record {
            path: Path::ROOT,
            value: None,
            time: None,
        }];
        assert!(matches!(
            encode_records(&root),
            Err(CodecError::Unsupported { .. })
        ));
        let nested = [
            Record {
                path: p("/3/0"),
                value: None,
                time: None,
            },
            Record {
                path: p("/3/0/1"),
                value: None,
                time: None,
            },
        ];
        assert!(matches!(
            encode_records(&nested),
            Err(CodecError::Node(NodeError::Conflict(_)))
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
        fn records_round_trip(records in arb_records(false).prop_map(lwm2m_cbor_representable)) {
            let schema = schema_for_records(&records);
            let bytes = encode_records(&records).unwrap();
            prop_assert_eq!(decode_records(&bytes, &schema).unwrap(), records);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            decode_arbitrary(&bytes, decode, decode_records);
        }

        #[test]
        fn mutated_payloads_never_panic((path, node) in arb_node(), at in any::<usize>(), byte in any::<u8>()) {
            decode_mutated(&path, &node, at, byte, encode, decode, decode_records);
        }
    }
}
