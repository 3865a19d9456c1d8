//! The content-format decoders: what a device sends in a Read answer, a notification, a Send
//! or (for the client role) a Write, decoded through the one dispatch function the server
//! uses, at paths of every level and with and without the bundled object definitions.
//!
//! Each codec's tests claim that what it encodes it decodes back the same, given a schema
//! that knows the types; checked here on decoded values, which reach corners (odd numbers,
//! empty instances, unknown objects, NaN) that the tests' generated values rarely do.
use super::{registry, same};
use lwm2m::content::link::{decode_discover, encode_discover};
use lwm2m::content::roundtrip::{lwm2m_cbor_representable, senml_times, without_empty_children};
use lwm2m::content::{self, ContentFormat, Record};
use lwm2m::model::{NoSchema, Node, Path, ResourceType, Schema};
use std::collections::HashMap;

/// Paths the payload is decoded at: every level, objects the bundled registry defines (with
/// single, multiple, opaque, integer and float resources) and one it does not.
const PATHS: [Path; 12] = [
    Path::object(3),
    Path::instance(3, 0),
    Path::resource(3, 0, 0),
    Path::resource(3, 0, 9),
    Path::resource(3, 0, 7),
    Path::resource_instance(3, 0, 7, 0),
    Path::object(1),
    Path::instance(1, 0),
    Path::resource(5, 0, 0),
    Path::resource(3303, 0, 5700),
    Path::instance(3303, 0),
    Path::resource(31024, 0, 1),
];

/// Decodes `data` in `format` at every path with both schemas, and as a composite payload,
/// and checks each decoded value's round trip.
fn decode_everywhere(format: ContentFormat, data: &[u8]) {
    let schemas: [&dyn Schema; 2] = [registry(), &NoSchema];
    for path in &PATHS {
        for schema in schemas {
            let Ok(node) = content::decode(format, path, data, schema) else {
                continue;
            };
            assert_eq!(node.level(), path.level(), "{node:?} decoded at {path}");
            node_round_trip(format, path, &node);
        }
    }
    for schema in schemas {
        if let Ok(records) = content::decode_composite(format, data, schema) {
            records_round_trip(format, records);
        }
    }
}

/// The round trip every codec's tests claim (`nodes_round_trip` and the like): a node
/// encodes, and decodes back with a schema that knows its types (`schema_for_node`) as
/// itself; the record formats drop containers that hold no value
/// (`without_empty_children`).
pub(super) fn node_round_trip(format: ContentFormat, path: &Path, node: &Node) {
    let Ok(bytes) = content::encode(format, path, node) else {
        return;
    };
    let Ok(flat) = node.flatten(path) else {
        return;
    };
    let Some(schema) = Learned::from(flat.iter().map(|(p, v)| (p, v.resource_type()))) else {
        return;
    };
    let expected = if is_record_format(format) {
        without_empty_children(node.clone())
    } else {
        node.clone()
    };
    let again = content::decode(format, path, &bytes, &schema);
    same(&again, &expected, || {
        format!("{format:?} at {path}: decoded {node:?}, encoded as {bytes:02x?}")
    });
}

/// The composite round trip of the record formats' tests (`records_round_trip`): with a
/// schema of the records' types, the records come back; SenML repeats a base time on the
/// records after a timed one (`senml_times`), LwM2M JSON carries records with values, LwM2M
/// CBOR carries leaf paths in path order (`representable`).
pub(super) fn records_round_trip(format: ContentFormat, records: Vec<Record>) {
    let records = match format {
        ContentFormat::Lwm2mJson => records.into_iter().filter(|r| r.value.is_some()).collect(),
        ContentFormat::Lwm2mCbor => lwm2m_cbor_representable(records),
        _ => records,
    };
    let Ok(bytes) = content::encode_composite(format, &records) else {
        return;
    };
    let typed = records
        .iter()
        .filter_map(|r| Some((&r.path, r.value.as_ref()?.resource_type())));
    let Some(schema) = Learned::from(typed) else {
        return;
    };
    let expected = match format {
        ContentFormat::SenmlJson | ContentFormat::SenmlCbor => senml_times(&records),
        _ => records.clone(),
    };
    let again = content::decode_composite(format, &bytes, &schema);
    same(&again, &expected, || {
        format!("{format:?} composite: decoded {records:?}, encoded as {bytes:02x?}")
    });
}

fn is_record_format(format: ContentFormat) -> bool {
    matches!(
        format,
        ContentFormat::SenmlJson
            | ContentFormat::SenmlCbor
            | ContentFormat::Lwm2mJson
            | ContentFormat::Lwm2mCbor
    )
}

/// A schema that knows the type of every resource a decoded value holds, as the codecs'
/// tests decode with.
struct Learned(HashMap<(u16, u16), ResourceType>);

impl Learned {
    /// `None` when one resource has values of two types (a schema cannot say both).
    fn from<'a>(typed: impl Iterator<Item = (&'a Path, ResourceType)>) -> Option<Self> {
        let mut types = HashMap::new();
        for (path, ty) in typed {
            let (Some(o), Some(r)) = (path.object_id(), path.resource_id()) else {
                continue;
            };
            if *types.entry((o, r)).or_insert(ty) != ty {
                return None;
            }
        }
        Some(Learned(types))
    }
}

impl Schema for Learned {
    fn resource_type(&self, object: u16, resource: u16) -> Option<ResourceType> {
        self.0.get(&(object, resource)).copied()
    }
    fn is_multiple(&self, _: u16, _: u16) -> Option<bool> {
        None
    }
}

/// text/plain (0).
pub fn content_text(data: &[u8]) {
    decode_everywhere(ContentFormat::Text, data);
}

/// application/octet-stream (42).
pub fn content_opaque(data: &[u8]) {
    decode_everywhere(ContentFormat::Opaque, data);
}

/// application/cbor (60).
pub fn content_cbor(data: &[u8]) {
    decode_everywhere(ContentFormat::Cbor, data);
}

/// application/vnd.oma.lwm2m+tlv (11542).
pub fn content_tlv(data: &[u8]) {
    decode_everywhere(ContentFormat::Tlv, data);
}

/// application/vnd.oma.lwm2m+json (11543).
pub fn content_lwm2m_json(data: &[u8]) {
    decode_everywhere(ContentFormat::Lwm2mJson, data);
}

/// application/senml+json (110).
pub fn content_senml_json(data: &[u8]) {
    decode_everywhere(ContentFormat::SenmlJson, data);
}

/// application/senml+cbor (112).
pub fn content_senml_cbor(data: &[u8]) {
    decode_everywhere(ContentFormat::SenmlCbor, data);
}

/// application/vnd.oma.lwm2m+cbor (11544).
pub fn content_lwm2m_cbor(data: &[u8]) {
    decode_everywhere(ContentFormat::Lwm2mCbor, data);
}

/// application/link-format (40) as a Discover answer, with the attribute accessors the
/// server reads; `content::link`'s tests claim Discover answers round-trip.
pub fn content_link(data: &[u8]) {
    // Through the dispatcher too: link format carries no values, so it must refuse.
    assert!(content::decode(ContentFormat::LinkFormat, &Path::object(3), data, &NoSchema).is_err());
    let Ok(entries) = decode_discover(data) else {
        return;
    };
    for e in &entries {
        let _ = e.dim();
        let _ = e.version();
        let _ = e.ssid();
        let _ = e.notification_attributes();
    }
    let text = encode_discover(&entries);
    assert_eq!(
        decode_discover(text.as_bytes()).as_ref(),
        Ok(&entries),
        "encoded as {text:?}"
    );
}
