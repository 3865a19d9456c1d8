//! The TLV examples of the TS and Leshan byte for byte, the shapes peers send, hostile
//! structure and values, and round-trip properties.
use super::value::{decode_value, encode_value};
use super::{decode, encode, MAX_LEN};
use crate::content::testutil::{arb_path, arb_tree_node, hex, CyclingSchema, MapSchema};
use crate::content::CodecError;
use crate::model::{
    Instance, NoSchema, Node, NodeError, ObjectLink, Path, Resource, ResourceType, Value,
};
use proptest::prelude::*;
use std::collections::BTreeMap;

// The examples of OMA LwM2M TS 1.0 §6.4.3 (kept in TS 1.1/1.2 Core §7.4.3), as quoted byte
// for byte in Leshan's `LwM2mNodeDecoderTest` (leshan-lwm2m-core).

/// Read /3/0: the Device object instance as resource TLVs (TS "Single Object Instance").
const DEVICE: &str = "C800144F70656E204D6F62696C6520416C6C69616E6365C801164C69676874776569676874204D324D20436C69656E74C80209333435303030313233C303312E30860641000141010588070842000ED842011388870841007D42010384C10964C10A0F830B410000C40D5182428FC60E2B30323A3030C11055";
/// The same instance wrapped in its object instance TLV (TS example A).
const DEVICE_IN_INSTANCE: &str = "080079C800144F70656E204D6F62696C6520416C6C69616E6365C801164C69676874776569676874204D324D20436C69656E74C80209333435303030313233C303312E30860641000141010588070842000ED842011388870841007D42010384C10964C10A0F830B410000C40D5182428FC60E2B30323A3030C11055";
/// Read /2: two Access Control instances (TS example B).
const ACL: &str = "08000EC10001C101008302417F07C1037F080212C10003C101008702417F0761013601C1037F";
/// Read /1: one Server instance (TS example C).
const SERVER: &str = "08000FC10001C40100015180C10601C10755";
/// Read /65/0: object links in a multiple resource (TS §6.4.3.3 example 1).
const OBJ65: &str = "88000C440000420000440100420001C8010D38363133383030373535353030C40212345678";
/// Read /66: two instances with an object link each, one the null link (example 2).
const OBJ66: &str = "080026C8000B6D79536572766963652031C8010F496E7465726E65742E31352E323334C40200430000080126C8000B6D79536572766963652032C8010F496E7465726E65742E31352E323335C402FFFFFFFF";
/// Leshan's `ENCODED_OBJ3442`: a Corelnk resource (id 180) holding a registration payload.
const OBJ3442: &str = "080072c8b46f3c2f3e3b72743d226f6d612e6c776d326d223b63743d223630203131302031313220313534322031353433203131353432203131353433222c3c2f313e3b7665723d312e312c3c2f312f303e2c3c2f323e2c3c2f333e3b7665723d312e312c3c2f332f303e2c3c2f333434322f303e";

fn s(v: &str) -> Resource {
    Resource::Single(Value::String(v.into()))
}
fn int(v: i64) -> Resource {
    Resource::Single(Value::Integer(v))
}
fn ints(vs: &[(u16, i64)]) -> Resource {
    Resource::Multiple(vs.iter().map(|&(k, v)| (k, Value::Integer(v))).collect())
}
fn link(object: u16, instance: u16) -> Value {
    Value::ObjectLink(ObjectLink { object, instance })
}

fn device() -> Instance {
    Instance::from([
        (0, s("Open Mobile Alliance")),
        (1, s("Lightweight M2M Client")),
        (2, s("345000123")),
        (3, s("1.0")),
        (6, ints(&[(0, 1), (1, 5)])),
        (7, ints(&[(0, 3800), (1, 5000)])),
        (8, ints(&[(0, 125), (1, 900)])),
        (9, int(100)),
        (10, int(15)),
        (11, ints(&[(0, 0)])),
        (13, Resource::Single(Value::Time(0x5182_428F))),
        (14, s("+02:00")),
        (16, s("U")),
    ])
}

fn acl() -> Node {
    Node::Object(BTreeMap::from([
        (
            0,
            Instance::from([
                (0, int(1)),
                (1, int(0)),
                (2, ints(&[(127, 7)])),
                (3, int(127)),
            ]),
        ),
        (
            2,
            Instance::from([
                (0, int(3)),
                (1, int(0)),
                (2, ints(&[(127, 7), (310, 1)])),
                (3, int(127)),
            ]),
        ),
    ]))
}

fn server() -> Node {
    Node::Object(BTreeMap::from([(
        0,
        Instance::from([
            (0, int(1)),
            (1, int(86400)),
            (6, Resource::Single(Value::Boolean(true))),
            (7, s("U")),
        ]),
    )]))
}

fn obj65() -> Node {
    Node::Instance(Instance::from([
        (
            0,
            Resource::Multiple(BTreeMap::from([(0, link(66, 0)), (1, link(66, 1))])),
        ),
        (1, s("8613800755500")),
        (2, int(0x1234_5678)),
    ]))
}

fn obj66() -> Node {
    let inst = |name: &str, apn: &str, l: Value| {
        Instance::from([(0, s(name)), (1, s(apn)), (2, Resource::Single(l))])
    };
    Node::Object(BTreeMap::from([
        (0, inst("myService 1", "Internet.15.234", link(67, 0))),
        (
            1,
            inst(
                "myService 2",
                "Internet.15.235",
                Value::ObjectLink(ObjectLink::NULL),
            ),
        ),
    ]))
}

fn round_trip_exact(path: Path, node: &Node, bytes: &str) {
    let schema = MapSchema::spec_examples();
    assert_eq!(encode(&path, node).unwrap(), hex(bytes), "encode {path}");
    assert_eq!(
        &decode(&path, &hex(bytes), &schema).unwrap(),
        node,
        "decode {path}"
    );
}

#[test]
fn device_instance_matches_the_spec_bytes() {
    round_trip_exact(Path::instance(3, 0), &Node::Instance(device()), DEVICE);
    round_trip_exact(
        Path::object(3),
        &Node::Object(BTreeMap::from([(0, device())])),
        DEVICE_IN_INSTANCE,
    );
}

#[test]
fn device_instance_decodes_in_either_shape_at_either_level() {
    let schema = MapSchema::spec_examples();
    let inst = Node::Instance(device());
    let obj = Node::Object(BTreeMap::from([(0, device())]));
    assert_eq!(
        decode(&Path::instance(3, 0), &hex(DEVICE_IN_INSTANCE), &schema).unwrap(),
        inst
    );
    // Resources straight under /3: instance 0 of the single-instance Device object.
    assert_eq!(
        decode(&Path::object(3), &hex(DEVICE), &schema).unwrap(),
        obj
    );
    // The wrapper must name the path's instance.
    assert!(matches!(
        decode(&Path::instance(3, 1), &hex(DEVICE_IN_INSTANCE), &schema),
        Err(CodecError::Malformed { .. })
    ));
}

#[test]
fn multi_instance_object_examples_match_the_spec_bytes() {
    round_trip_exact(Path::object(2), &acl(), ACL);
    round_trip_exact(Path::object(1), &server(), SERVER);
    round_trip_exact(Path::instance(65, 0), &obj65(), OBJ65);
    round_trip_exact(Path::object(66), &obj66(), OBJ66);
}

#[test]
fn core_link_resource_is_a_string() {
    let text = r#"</>;rt="oma.lwm2m";ct="60 110 112 1542 1543 11542 11543",</1>;ver=1.1,</1/0>,</2>,</3>;ver=1.1,</3/0>,</3442/0>"#;
    let schema = MapSchema::new().with(3442, 180, ResourceType::CoreLink, false);
    let node = Node::Instance(Instance::from([(
        180,
        Resource::Single(Value::CoreLink(text.into())),
    )]));
    assert_eq!(
        decode(&Path::instance(3442, 0), &hex(OBJ3442), &schema).unwrap(),
        node
    );
    let wrapped = Node::Object(BTreeMap::from([(
        0,
        Instance::from([(180, Resource::Single(Value::CoreLink(text.into())))]),
    )]));
    assert_eq!(encode(&Path::object(3442), &wrapped).unwrap(), hex(OBJ3442));
}

/// TS "Multiple resource" example: Available Power Sources /3/0/6 = {0: 1, 1: 5}.
#[test]
fn multiple_resource_and_resource_instance() {
    let schema = MapSchema::spec_examples();
    let at = Path::resource(3, 0, 6);
    let node = Node::Resource(ints(&[(0, 1), (1, 5)]));
    round_trip_exact(at, &node, "8606410001410105");
    // A bare list of resource instances, as some clients send (Leshan accepts it too).
    assert_eq!(decode(&at, &hex("410001410105"), &schema).unwrap(), node);
    // Wrapped in the object instance TLV of the path's instance.
    assert_eq!(
        decode(&at, &hex("0800088606410001410105"), &schema).unwrap(),
        node
    );
    round_trip_exact(
        Path::resource_instance(3, 0, 7, 1),
        &Node::ResourceInstance(Value::Integer(5000)),
        "42011388",
    );
    assert_eq!(
        decode(
            &Path::resource_instance(3, 0, 7, 1),
            &hex("88070442011388"),
            &schema
        )
        .unwrap(),
        Node::ResourceInstance(Value::Integer(5000))
    );
    round_trip_exact(Path::resource(3, 0, 9), &Node::Resource(int(100)), "C10964");
}

#[test]
fn empty_payloads_follow_leshan() {
    let schema = MapSchema::spec_examples();
    assert_eq!(
        decode(&Path::object(2), b"", &schema).unwrap(),
        Node::Object(BTreeMap::new())
    );
    assert_eq!(
        decode(&Path::instance(2, 0), b"", &schema).unwrap(),
        Node::Instance(Instance::new())
    );
    assert_eq!(
        decode(&Path::resource(3, 0, 6), b"", &schema).unwrap(),
        Node::Resource(Resource::Multiple(BTreeMap::new()))
    );
    assert_eq!(
        decode(&Path::resource(1024, 0, 6), b"", &NoSchema).unwrap(),
        Node::Resource(Resource::Multiple(BTreeMap::new()))
    );
    assert!(matches!(
        decode(&Path::resource(2, 0, 0), b"", &schema),
        Err(CodecError::Node(NodeError::Missing(_)))
    ));
    assert!(matches!(
        decode(&Path::resource_instance(3, 0, 6, 0), b"", &schema),
        Err(CodecError::Node(NodeError::Missing(_)))
    ));
}

#[test]
fn unknown_resources_keep_their_bytes() {
    let node = decode(&Path::instance(3, 0), &hex(DEVICE), &NoSchema).unwrap();
    let Node::Instance(inst) = node else {
        panic!("not an instance")
    };
    assert_eq!(
        inst[&0],
        Resource::Single(Value::Opaque(b"Open Mobile Alliance".to_vec()))
    );
    assert_eq!(
        inst[&7],
        Resource::Multiple(BTreeMap::from([
            (0, Value::Opaque(vec![0x0E, 0xD8])),
            (1, Value::Opaque(vec![0x13, 0x88]))
        ]))
    );
    assert_eq!(
        inst[&13],
        Resource::Single(Value::Opaque(vec![0x51, 0x82, 0x42, 0x8F]))
    );
}

/// Header forms of Core §7.4.3 Table "TLV format": 16-bit identifiers, 8/16/24-bit lengths.
#[test]
fn header_forms() {
    let at = |r| Path::resource(1024, 0, r);
    let schema = MapSchema::new()
        .with(1024, 300, ResourceType::Opaque, false)
        .with(1024, 0, ResourceType::Opaque, false);
    let cases: [(u16, usize, &str); 5] = [
        (0, 7, "C700"),
        (0, 8, "C80008"),
        (300, 255, "E8012CFF"),
        (300, 300, "F0012C012C"),
        (0, 70_000, "D800011170"),
    ];
    for (r, len, header) in cases {
        let node = Node::Resource(Resource::Single(Value::Opaque(vec![0xAB; len])));
        let bytes = encode(&at(r), &node).unwrap();
        assert_eq!(
            &bytes[..header.len() / 2],
            hex(header).as_slice(),
            "{r} {len}"
        );
        assert_eq!(bytes.len(), header.len() / 2 + len);
        assert_eq!(decode(&at(r), &bytes, &schema).unwrap(), node);
    }
    let too_big = Node::Resource(Resource::Single(Value::Opaque(vec![0; MAX_LEN + 1])));
    assert!(matches!(
        encode(&at(0), &too_big),
        Err(CodecError::Malformed { .. })
    ));
}

/// Appendix C: integers in the shortest of 1, 2, 4, 8 bytes; floats in 4 or 8.
#[test]
fn value_encodings() {
    let cases: Vec<(Value, &str)> = vec![
        (Value::Integer(0), "00"),
        (Value::Integer(127), "7F"),
        (Value::Integer(128), "0080"),
        (Value::Integer(-128), "80"),
        (Value::Integer(-129), "FF7F"),
        (Value::Integer(32768), "00008000"),
        (Value::Integer(-2_147_483_649), "FFFFFFFF7FFFFFFF"),
        (Value::Time(1_367_491_215), "5182428F"),
        (Value::UnsignedInteger(127), "7F"),
        (Value::UnsignedInteger(200), "00C8"),
        (Value::UnsignedInteger(u64::MAX), "FFFFFFFFFFFFFFFF"),
        (Value::Float(1.5), "3FC00000"),
        (Value::Float(0.1), "3FB999999999999A"),
        (Value::Boolean(true), "01"),
        (
            Value::ObjectLink(ObjectLink {
                object: 0x1234,
                instance: 0x5678,
            }),
            "12345678",
        ),
    ];
    for (v, bytes) in cases {
        assert_eq!(encode_value(&v), hex(bytes), "{v:?}");
        assert_eq!(
            decode_value(Some(v.resource_type()), &hex(bytes), &Path::ROOT).unwrap(),
            v
        );
    }
    // A spec-minimal unsigned byte is read as unsigned.
    assert_eq!(
        decode_value(Some(ResourceType::UnsignedInteger), &hex("C8"), &Path::ROOT).unwrap(),
        Value::UnsignedInteger(200)
    );
    assert_eq!(
        decode_value(Some(ResourceType::Float), &hex("3F800000"), &Path::ROOT).unwrap(),
        Value::Float(1.0)
    );
}

#[test]
fn rejects_bad_values() {
    use ResourceType as T;
    for (ty, bytes) in [
        (T::Integer, "010203"),
        (T::Integer, ""),
        (T::Time, "010203040506070809"),
        (T::UnsignedInteger, "0102030405"),
        (T::Float, "010203"),
        (T::Boolean, "02"),
        (T::Boolean, "0000"),
        (T::ObjectLink, "123456"),
        (T::String, "C328"),
    ] {
        assert!(
            matches!(
                decode_value(Some(ty), &hex(bytes), &Path::ROOT),
                Err(CodecError::Malformed { .. })
            ),
            "{ty:?} {bytes}"
        );
    }
}

/// Leshan's `TlvDecoderTest` broken inputs, and the structural errors of
/// `LwM2mNodeDecoderTest`.
#[test]
fn rejects_bad_structure() {
    let schema = MapSchema::spec_examples();
    let malformed = |path: Path, bytes: &str| {
        let got = decode(&path, &hex(bytes), &schema);
        assert!(
            matches!(
                got,
                Err(CodecError::Malformed { .. } | CodecError::Node(_) | CodecError::Path(_))
            ),
            "{path} {bytes}: {got:?}"
        );
    };
    // Declared length 200, no value bytes.
    malformed(Path::resource(3, 0, 0), "C800C8");
    malformed(Path::object(3), "0011223344556677889900");
    // Two instances 1, two resources 1, two resource instances 0.
    malformed(Path::object(2), "00010001");
    malformed(Path::instance(3, 0), "C001C001");
    malformed(Path::resource(3, 0, 22), "8616410001410002");
    // A wrapper with the wrong instance id, a resource TLV with the wrong id.
    malformed(Path::resource(3, 0, 1), "080109C80106636C69656E74");
    malformed(Path::resource(3, 0, 1), "C1020A");
    malformed(Path::resource_instance(3, 0, 7, 1), "42001388");
    // Levels out of place: resource instances at object or instance level, instances in
    // an instance, resource TLVs in a multiple resource, and a mix at object level.
    malformed(Path::object(3), "410001");
    malformed(Path::instance(3, 0), "410001");
    malformed(Path::instance(3, 0), "00000000");
    malformed(Path::resource(3, 0, 6), "8306C10001");
    malformed(Path::object(3), "0000C10964");
    malformed(Path::object(3), "C109640000");
    // Reserved id 65535, and trailing TLVs after a single resource.
    malformed(Path::object(3), "20FFFF00");
    malformed(Path::resource(3, 0, 9), "C10964C10A0F");
}

#[test]
fn errors_in_nested_tlvs_give_payload_positions() {
    let err = decode(&Path::object(3), &hex("080003C80105"), &NoSchema).unwrap_err();
    let CodecError::Malformed { reason, .. } = err else {
        panic!("{err:?}")
    };
    assert_eq!(reason, "TLV at byte 3 declares 5 value bytes, 0 remain");
}

proptest! {
    #[test]
    fn round_trips_every_node_kind((path, node, schema) in arb_tree_node()) {
        let bytes = encode(&path, &node).unwrap();
        prop_assert_eq!(decode(&path, &bytes, &schema).unwrap(), node);
    }

    #[test]
    fn arbitrary_bytes_never_panic(path in arb_path(), bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
        let _ = decode(&path, &bytes, &NoSchema);
        let _ = decode(&path, &bytes, &CyclingSchema);
    }

    /// Damaged valid payloads reach the deeper levels that random bytes rarely do.
    #[test]
    fn damaged_payloads_never_panic(
        (path, node, schema) in arb_tree_node(),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
        cut in any::<usize>(),
    ) {
        let mut bytes = encode(&path, &node).unwrap();
        if !bytes.is_empty() {
            for (at, b) in edits {
                let i = at % bytes.len();
                bytes[i] = b;
            }
            bytes.truncate(cut % (bytes.len() + 1));
        }
        let _ = decode(&path, &bytes, &schema);
        let _ = decode(&path, &bytes, &NoSchema);
    }
}
