//! Test helpers shared by the record-format codecs' tests (SenML JSON/CBOR, LwM2M JSON/CBOR):
//! a schema that knows the generated types, the TS device instance, and proptest strategies
//! for nodes and records that every record format can represent.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)] // tests may unwrap and index

use super::super::Record;
use super::time_key;
use crate::model::{Instance, Node, ObjectLink, Path, Resource, ResourceType, Schema, Value};
use proptest::prelude::*;
use std::collections::{BTreeMap, HashMap, HashSet};

/// A schema backed by a map, for tests.
#[derive(Debug, Clone, Default)]
pub(crate) struct TestSchema {
    /// Type of each (object, resource).
    pub(crate) types: HashMap<(u16, u16), ResourceType>,
    /// Multiplicity of each (object, resource).
    pub(crate) multiple: HashMap<(u16, u16), bool>,
}

impl TestSchema {
    /// A schema with the given resources.
    pub(crate) fn with(entries: &[(u16, u16, ResourceType, bool)]) -> Self {
        let mut s = TestSchema::default();
        for (o, r, ty, m) in entries {
            s.types.insert((*o, *r), *ty);
            s.multiple.insert((*o, *r), *m);
        }
        s
    }

    /// The device object (3) as the TS examples use it.
    pub(crate) fn device() -> Self {
        use ResourceType::*;
        let mut entries = vec![
            (3, 0, String, false),
            (3, 1, String, false),
            (3, 2, String, false),
            (3, 3, String, false),
            (3, 6, Integer, true),
            (3, 7, Integer, true),
            (3, 8, Integer, true),
            (3, 9, Integer, false),
            (3, 10, Integer, false),
            (3, 11, Integer, true),
            (3, 13, Time, false),
            (3, 14, String, false),
            (3, 15, String, false),
            (3, 16, String, false),
            (1, 1, Integer, false),
        ];
        entries.extend([(72, 2, Float, false), (1024, 0, String, false)]);
        entries.extend([(1024, 1, Float, false), (1024, 2, Boolean, false)]);
        TestSchema::with(&entries)
    }
}

impl Schema for TestSchema {
    fn resource_type(&self, object: u16, resource: u16) -> Option<ResourceType> {
        self.types.get(&(object, resource)).copied()
    }
    fn is_multiple(&self, object: u16, resource: u16) -> Option<bool> {
        self.multiple.get(&(object, resource)).copied()
    }
}

/// The device object instance of the TS examples (Core Table 7.4.4-2, TLV §7.4.3).
pub(crate) fn device_instance() -> Node {
    let s = |v: &str| Resource::Single(Value::String(v.into()));
    let m = |a: i64, b: Option<i64>| {
        let mut map = BTreeMap::from([(0, Value::Integer(a))]);
        if let Some(b) = b {
            map.insert(1, Value::Integer(b));
        }
        Resource::Multiple(map)
    };
    let mut inst = Instance::new();
    inst.insert(0, s("Open Mobile Alliance"));
    inst.insert(1, s("Lightweight M2M Client"));
    inst.insert(2, s("345000123"));
    inst.insert(3, s("1.0"));
    inst.insert(6, m(1, Some(5)));
    inst.insert(7, m(3800, Some(5000)));
    inst.insert(8, m(125, Some(900)));
    inst.insert(9, Resource::Single(Value::Integer(100)));
    inst.insert(10, Resource::Single(Value::Integer(15)));
    inst.insert(11, m(0, None));
    inst.insert(13, Resource::Single(Value::Time(1_367_491_215)));
    inst.insert(14, s("+02:00"));
    inst.insert(16, s("U"));
    Node::Instance(inst)
}

const TYPES: [ResourceType; 9] = [
    ResourceType::String,
    ResourceType::Integer,
    ResourceType::UnsignedInteger,
    ResourceType::Float,
    ResourceType::Boolean,
    ResourceType::Opaque,
    ResourceType::Time,
    ResourceType::ObjectLink,
    ResourceType::CoreLink,
];

/// The type the generators give resource `r` of object `o`, so that every generated
/// payload agrees with one schema.
pub(crate) fn type_for(o: u16, r: u16) -> ResourceType {
    TYPES[(usize::from(o) + usize::from(r)) % TYPES.len()]
}

/// A schema knowing `type_for` for the given objects and resources.
pub(crate) fn schema_for(pairs: impl IntoIterator<Item = (u16, u16)>) -> TestSchema {
    let mut s = TestSchema::default();
    for (o, r) in pairs {
        s.types.insert((o, r), type_for(o, r));
    }
    s
}

/// Finite floats of every magnitude, including subnormals and -0.0.
fn finite_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>().prop_filter("finite", |f| f.is_finite()),
        (-1_000_000i64..1_000_000).prop_map(|i| i as f64 / 8.0),
        Just(-0.0),
    ]
}

/// Values of type `ty`.
pub(crate) fn arb_value(ty: ResourceType) -> BoxedStrategy<Value> {
    match ty {
        ResourceType::String => ".{0,12}".prop_map(Value::String).boxed(),
        ResourceType::CoreLink => "[ -~]{0,12}".prop_map(Value::CoreLink).boxed(),
        ResourceType::Integer => any::<i64>().prop_map(Value::Integer).boxed(),
        ResourceType::UnsignedInteger => any::<u64>().prop_map(Value::UnsignedInteger).boxed(),
        ResourceType::Float => finite_f64().prop_map(Value::Float).boxed(),
        ResourceType::Boolean => any::<bool>().prop_map(Value::Boolean).boxed(),
        ResourceType::Opaque => proptest::collection::vec(any::<u8>(), 0..16)
            .prop_map(Value::Opaque)
            .boxed(),
        ResourceType::Time => any::<i64>().prop_map(Value::Time).boxed(),
        ResourceType::ObjectLink => (any::<u16>(), any::<u16>())
            .prop_map(|(object, instance)| Value::ObjectLink(ObjectLink { object, instance }))
            .boxed(),
        ResourceType::None => Just(Value::Boolean(false)).boxed(),
    }
}

fn arb_id() -> impl Strategy<Value = u16> {
    prop_oneof![4 => 0u16..6, 1 => 0u16..=crate::model::MAX_ID]
}

/// A non-empty resource (empty multiple resources vanish inside larger nodes).
fn arb_resource(o: u16, r: u16, multiple: bool) -> BoxedStrategy<Resource> {
    let v = arb_value(type_for(o, r));
    if multiple {
        proptest::collection::btree_map(arb_id(), v, 1..4)
            .prop_map(Resource::Multiple)
            .boxed()
    } else {
        v.prop_map(Resource::Single).boxed()
    }
}

fn arb_instance(o: u16, min: usize) -> BoxedStrategy<Instance> {
    proptest::collection::btree_map(arb_id(), any::<bool>(), min..5)
        .prop_flat_map(move |shape| {
            shape
                .into_iter()
                .map(|(r, multiple)| arb_resource(o, r, multiple).prop_map(move |res| (r, res)))
                .collect::<Vec<_>>()
        })
        .prop_map(|v| v.into_iter().collect())
        .boxed()
}

/// A node of any kind with the path it sits at. Containers inside the node are never
/// empty (no record format can say "empty instance inside an object"); the node itself
/// may be.
pub(crate) fn arb_node() -> impl Strategy<Value = (Path, Node)> {
    (arb_id(), arb_id(), arb_id(), arb_id(), 0..5u8).prop_flat_map(|(o, i, r, ri, kind)| match kind
    {
        0 => proptest::collection::btree_map(arb_id(), arb_instance(o, 1), 0..3)
            .prop_map(move |m| (Path::object(o), Node::Object(m)))
            .boxed(),
        1 => arb_instance(o, 0)
            .prop_map(move |inst| (Path::instance(o, i), Node::Instance(inst)))
            .boxed(),
        2 => arb_resource(o, r, false)
            .prop_map(move |res| (Path::resource(o, i, r), Node::Resource(res)))
            .boxed(),
        3 => proptest::collection::btree_map(arb_id(), arb_value(type_for(o, r)), 0..4)
            .prop_map(move |m| {
                (
                    Path::resource(o, i, r),
                    Node::Resource(Resource::Multiple(m)),
                )
            })
            .boxed(),
        _ => arb_value(type_for(o, r))
            .prop_map(move |v| {
                (
                    Path::resource_instance(o, i, r, ri),
                    Node::ResourceInstance(v),
                )
            })
            .boxed(),
    })
}

/// The schema for the resources of `node`.
pub(crate) fn schema_for_node(path: &Path, node: &Node) -> TestSchema {
    let flat = node.flatten(path).unwrap();
    let mut s = schema_for(
        flat.iter()
            .filter_map(|(p, _)| Some((p.object_id()?, p.resource_id()?))),
    );
    if let (Some(o), Some(r)) = (path.object_id(), path.resource_id()) {
        s.types.insert((o, r), type_for(o, r));
    }
    s
}

fn arb_path() -> impl Strategy<Value = Path> {
    proptest::collection::vec(arb_id(), 0..=4).prop_map(|ids| Path::new(&ids).unwrap())
}

fn arb_time() -> impl Strategy<Value = f64> {
    prop_oneof![
        (0i64..2_000_000_000).prop_map(|t| t as f64),
        (-1000i64..1000).prop_map(|t| t as f64),
        any::<f64>().prop_filter("finite", |f| f.is_finite()),
    ]
}

/// One record: paths at every level; values only at resource levels (of the path's
/// `type_for`); times optional.
pub(crate) fn arb_record(with_time: bool) -> impl Strategy<Value = Record> {
    let time = if with_time {
        proptest::option::of(arb_time()).boxed()
    } else {
        Just(None).boxed()
    };
    (arb_path(), any::<bool>(), time).prop_flat_map(|(path, has_value, time)| {
        let value = match (path.object_id(), path.resource_id()) {
            (Some(o), Some(r)) if has_value => arb_value(type_for(o, r)).prop_map(Some).boxed(),
            _ => Just(None).boxed(),
        };
        value.prop_map(move |value| Record { path, value, time })
    })
}

/// Records, without two at the same path and time, either as given or as a SenML round
/// trip gives them back ([`senml_times`]).
pub(crate) fn arb_records(with_time: bool) -> impl Strategy<Value = Vec<Record>> {
    proptest::collection::vec(arb_record(with_time), 0..8).prop_map(|mut v| {
        let (mut raw, mut norm) = (HashSet::new(), HashSet::new());
        let mut timed = false;
        v.retain(|r| {
            let t = if r.time.is_some() || !timed {
                r.time
            } else {
                Some(0.0)
            };
            let keep = !raw.contains(&(r.path, r.time.map(time_key)))
                && !norm.contains(&(r.path, t.map(time_key)));
            if keep {
                raw.insert((r.path, r.time.map(time_key)));
                norm.insert((r.path, t.map(time_key)));
                timed |= r.time.is_some();
            }
            keep
        });
        v
    })
}

/// The schema for the resources the records name.
pub(crate) fn schema_for_records(records: &[Record]) -> TestSchema {
    schema_for(
        records
            .iter()
            .filter_map(|r| Some((r.path.object_id()?, r.path.resource_id()?))),
    )
}

/// A node decoder of one of the record formats (`decode` of each codec module).
pub(crate) type DecodeNode =
    fn(&Path, &[u8], &dyn Schema) -> Result<Node, super::super::CodecError>;
/// A record decoder of one of the record formats (`decode_records` of each codec module).
pub(crate) type DecodeRecords =
    fn(&[u8], &dyn Schema) -> Result<Vec<Record>, super::super::CodecError>;
/// A node encoder of one of the record formats (`encode` of each codec module).
pub(crate) type EncodeNode = fn(&Path, &Node) -> Result<Vec<u8>, super::super::CodecError>;

/// The paths arbitrary payloads are decoded at: every level of a Device object.
pub(crate) fn device_paths() -> [Path; 4] {
    [
        Path::object(3),
        Path::instance(3, 0),
        Path::resource(3, 0, 7),
        Path::resource_instance(3, 0, 7, 1),
    ]
}

/// The "arbitrary bytes never panic" property shared by the record formats: `bytes` go to
/// both decoders, at every level, with a typed schema and with none.
pub(crate) fn decode_arbitrary(bytes: &[u8], decode: DecodeNode, decode_records: DecodeRecords) {
    let schema = TestSchema::device();
    for path in device_paths() {
        let _ = decode(&path, bytes, &crate::model::NoSchema);
        let _ = decode(&path, bytes, &schema);
    }
    let _ = decode_records(bytes, &crate::model::NoSchema);
    let _ = decode_records(bytes, &schema);
}

/// The "a valid payload with one byte changed never panics" property shared by the record
/// formats.
pub(crate) fn decode_mutated(
    path: &Path,
    node: &Node,
    at: usize,
    byte: u8,
    encode: EncodeNode,
    decode: DecodeNode,
    decode_records: DecodeRecords,
) {
    let Ok(mut bytes) = encode(path, node) else {
        return;
    };
    let len = bytes.len();
    if let Some(b) = bytes.get_mut(at % len.max(1)) {
        *b = byte;
    }
    let _ = decode(path, &bytes, &schema_for_node(path, node));
    let _ = decode_records(&bytes, &crate::model::NoSchema);
}
