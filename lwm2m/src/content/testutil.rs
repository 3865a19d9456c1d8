//! Test support for the content-format codecs: a [`Schema`] backed by a map, proptest
//! strategies for values and nodes whose types that schema knows, so round-trip properties
//! can be stated as `decode(encode(x)) == x`, and [`hex`] for the byte vectors of the
//! specifications' examples.
//!
//! Compiled only for tests.
use crate::model::{
    Instance, Node, ObjectLink, Path, Resource, ResourceType, Schema, Value, MAX_ID,
};
use proptest::prelude::*;
use std::collections::HashMap;

/// The bytes a hex string spells; whitespace between bytes is allowed, so long vectors can
/// be laid out as the specification prints them. Panics on anything else: a test's own
/// constant is wrong.
#[allow(clippy::unwrap_used)]
pub(crate) fn hex(s: &str) -> Vec<u8> {
    let digits: String = s.split_whitespace().collect();
    hex::decode(digits).unwrap()
}

/// A schema that knows exactly the resources put into it.
#[derive(Debug, Clone, Default)]
pub(crate) struct MapSchema {
    /// `(object, resource)` to declared type and multiplicity.
    resources: HashMap<(u16, u16), (ResourceType, bool)>,
}

impl MapSchema {
    /// An empty schema (knows no object).
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Declares a resource (builder style).
    pub(crate) fn with(
        mut self,
        object: u16,
        resource: u16,
        ty: ResourceType,
        multiple: bool,
    ) -> Self {
        self.resources.insert((object, resource), (ty, multiple));
        self
    }

    /// The resources of LwM2M objects 1 (Server), 2 (Access Control) and 3 (Device) that the
    /// OMA TS examples use, plus the test objects 65 and 66 of TS 1.0 §6.4.3.3.
    pub(crate) fn spec_examples() -> Self {
        use ResourceType as T;
        let mut s = Self::new();
        for (r, ty, multiple) in [
            (0, T::String, false),
            (1, T::String, false),
            (2, T::String, false),
            (3, T::String, false),
            (4, T::None, false),
            (6, T::Integer, true),
            (7, T::Integer, true),
            (8, T::Integer, true),
            (9, T::Integer, false),
            (10, T::Integer, false),
            (11, T::Integer, true),
            (13, T::Time, false),
            (14, T::String, false),
            (15, T::String, false),
            (16, T::String, false),
        ] {
            s = s.with(3, r, ty, multiple);
        }
        s.with(2, 0, T::Integer, false)
            .with(2, 1, T::Integer, false)
            .with(2, 2, T::Integer, true)
            .with(2, 3, T::Integer, false)
            .with(1, 0, T::Integer, false)
            .with(1, 1, T::Integer, false)
            .with(1, 6, T::Boolean, false)
            .with(1, 7, T::String, false)
            .with(5, 0, T::Opaque, false)
            .with(65, 0, T::ObjectLink, true)
            .with(65, 1, T::String, false)
            .with(65, 2, T::Integer, false)
            .with(66, 0, T::String, false)
            .with(66, 1, T::String, false)
            .with(66, 2, T::ObjectLink, false)
    }
}

impl Schema for MapSchema {
    fn resource_type(&self, object: u16, resource: u16) -> Option<ResourceType> {
        self.resources.get(&(object, resource)).map(|(ty, _)| *ty)
    }
    fn is_multiple(&self, object: u16, resource: u16) -> Option<bool> {
        self.resources.get(&(object, resource)).map(|(_, m)| *m)
    }
}

/// Every type a value can have (not `None`, which carries no value).
pub(crate) fn arb_type() -> impl Strategy<Value = ResourceType> {
    use ResourceType as T;
    prop_oneof![
        Just(T::String),
        Just(T::Integer),
        Just(T::UnsignedInteger),
        Just(T::Float),
        Just(T::Boolean),
        Just(T::Opaque),
        Just(T::Time),
        Just(T::ObjectLink),
        Just(T::CoreLink),
    ]
}

/// Finite floats, with f32-exact values and integral values over-represented since codecs
/// pick encodings by them.
pub(crate) fn arb_finite_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>().prop_filter("finite", |v| v.is_finite()),
        any::<f32>()
            .prop_filter("finite", |v| v.is_finite())
            .prop_map(f64::from),
        any::<i32>().prop_map(f64::from),
    ]
}

/// Integers around the 1/2/4/8-byte boundaries and anywhere else.
fn arb_i64() -> impl Strategy<Value = i64> {
    prop_oneof![
        any::<i8>().prop_map(i64::from),
        any::<i16>().prop_map(i64::from),
        any::<i32>().prop_map(i64::from),
        any::<i64>()
    ]
}

fn arb_u64() -> impl Strategy<Value = u64> {
    prop_oneof![
        any::<u8>().prop_map(u64::from),
        any::<u16>().prop_map(u64::from),
        any::<u32>().prop_map(u64::from),
        any::<u64>()
    ]
}

/// A value of type `ty`.
pub(crate) fn arb_value_of(ty: ResourceType) -> BoxedStrategy<Value> {
    use ResourceType as T;
    match ty {
        T::String => ".{0,24}".prop_map(Value::String).boxed(),
        T::CoreLink => "</[0-9/]{0,8}>(;[a-z]{1,4}=[0-9]{1,3}){0,2}"
            .prop_map(Value::CoreLink)
            .boxed(),
        T::Integer => arb_i64().prop_map(Value::Integer).boxed(),
        T::Time => arb_i64().prop_map(Value::Time).boxed(),
        T::UnsignedInteger => arb_u64().prop_map(Value::UnsignedInteger).boxed(),
        T::Float => arb_finite_f64().prop_map(Value::Float).boxed(),
        T::Boolean => any::<bool>().prop_map(Value::Boolean).boxed(),
        T::Opaque => proptest::collection::vec(any::<u8>(), 0..40)
            .prop_map(Value::Opaque)
            .boxed(),
        T::ObjectLink => (any::<u16>(), any::<u16>())
            .prop_map(|(object, instance)| Value::ObjectLink(ObjectLink { object, instance }))
            .boxed(),
        T::None => Just(Value::Opaque(Vec::new())).boxed(),
    }
}

/// Ids biased to the 8/16-bit boundary that TLV headers switch on.
pub(crate) fn arb_id() -> impl Strategy<Value = u16> {
    prop_oneof![0u16..8, 250u16..260, Just(MAX_ID), 0..=MAX_ID]
}

/// The declared shape of one resource: id, type, multiple.
type Decl = (u16, ResourceType, bool);

fn arb_decls() -> impl Strategy<Value = Vec<Decl>> {
    proptest::collection::btree_map(arb_id(), (arb_type(), any::<bool>()), 1..6).prop_map(|m| {
        m.into_iter()
            .map(|(r, (ty, multiple))| (r, ty, multiple))
            .collect()
    })
}

fn arb_resource(ty: ResourceType, multiple: bool) -> BoxedStrategy<Resource> {
    if multiple {
        proptest::collection::btree_map(arb_id(), arb_value_of(ty), 0..4)
            .prop_map(Resource::Multiple)
            .boxed()
    } else {
        arb_value_of(ty).prop_map(Resource::Single).boxed()
    }
}

fn arb_instance(decls: &[Decl]) -> BoxedStrategy<Instance> {
    let parts: Vec<_> = decls
        .iter()
        .map(|&(r, ty, multiple)| {
            proptest::option::of(arb_resource(ty, multiple))
                .prop_map(move |res| res.map(|res| (r, res)))
        })
        .collect();
    parts
        .prop_map(|v| v.into_iter().flatten().collect::<Instance>())
        .boxed()
}

fn schema_for(object: u16, decls: &[Decl]) -> MapSchema {
    decls
        .iter()
        .fold(MapSchema::new(), |s, &(r, ty, m)| s.with(object, r, ty, m))
}

/// A node at object, instance, resource or resource-instance level, the path it sits at, and
/// a schema that declares every resource it may hold.
pub(crate) fn arb_tree_node() -> impl Strategy<Value = (Path, Node, MapSchema)> {
    (arb_id(), arb_decls()).prop_flat_map(|(o, decls)| {
        let schema = schema_for(o, &decls);
        let first = decls
            .first()
            .copied()
            .unwrap_or((0, ResourceType::String, false));
        let (r, ty, multiple) = first;
        let object = proptest::collection::btree_map(arb_id(), arb_instance(&decls), 0..3)
            .prop_map(move |m| (Path::object(o), Node::Object(m)))
            .boxed();
        let instance = (arb_id(), arb_instance(&decls))
            .prop_map(move |(i, inst)| (Path::instance(o, i), Node::Instance(inst)))
            .boxed();
        let resource = (arb_id(), arb_resource(ty, multiple))
            .prop_map(move |(i, res)| (Path::resource(o, i, r), Node::Resource(res)))
            .boxed();
        let resource_instance = (arb_id(), arb_id(), arb_value_of(ty))
            .prop_map(move |(i, ri, v)| {
                (
                    Path::resource_instance(o, i, r, ri),
                    Node::ResourceInstance(v),
                )
            })
            .boxed();
        // A resource instance belongs to a multiple resource; declare it so.
        let ri_schema = schema.clone().with(o, r, ty, true);
        prop_oneof![
            object.prop_map({
                let s = schema.clone();
                move |(p, n)| (p, n, s.clone())
            }),
            instance.prop_map({
                let s = schema.clone();
                move |(p, n)| (p, n, s.clone())
            }),
            resource.prop_map(move |(p, n)| (p, n, schema.clone())),
            resource_instance.prop_map(move |(p, n)| (p, n, ri_schema.clone())),
        ]
    })
}

/// A single value at resource or resource-instance level, the path, and a schema that
/// declares its type.
pub(crate) fn arb_single_value(
    types: BoxedStrategy<ResourceType>,
) -> impl Strategy<Value = (Path, Node, MapSchema)> {
    (
        types,
        arb_id(),
        arb_id(),
        arb_id(),
        proptest::option::of(arb_id()),
    )
        .prop_flat_map(|(ty, o, i, r, ri)| {
            arb_value_of(ty).prop_map(move |v| match ri {
                Some(ri) => (
                    Path::resource_instance(o, i, r, ri),
                    Node::ResourceInstance(v),
                    MapSchema::new().with(o, r, ty, true),
                ),
                None => (
                    Path::resource(o, i, r),
                    Node::Resource(Resource::Single(v)),
                    MapSchema::new().with(o, r, ty, false),
                ),
            })
        })
}

/// Paths at every level but the root, for feeding arbitrary bytes to decoders.
pub(crate) fn arb_path() -> impl Strategy<Value = Path> {
    (arb_id(), arb_id(), arb_id(), arb_id(), 1usize..=4).prop_map(|(o, i, r, ri, n)| {
        let ids = [o, i, r, ri];
        Path::new(ids.get(..n).unwrap_or(&ids)).unwrap_or(Path::object(o))
    })
}

/// A schema that knows every object: resource ids up to 64 cycle through all types (and
/// through single/multiple), higher ids are unknown. Arbitrary-bytes tests use it so that
/// decoders meet typed, executable and untyped resources alike.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CyclingSchema;

impl Schema for CyclingSchema {
    fn resource_type(&self, _object: u16, resource: u16) -> Option<ResourceType> {
        use ResourceType as T;
        const TYPES: [ResourceType; 10] = [
            T::String,
            T::Integer,
            T::UnsignedInteger,
            T::Float,
            T::Boolean,
            T::Opaque,
            T::Time,
            T::ObjectLink,
            T::CoreLink,
            T::None,
        ];
        if resource > 64 {
            return None;
        }
        TYPES.get(usize::from(resource) % TYPES.len()).copied()
    }
    fn is_multiple(&self, _object: u16, resource: u16) -> Option<bool> {
        (resource <= 64).then_some(resource.is_multiple_of(3))
    }
}
