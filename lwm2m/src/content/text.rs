//! text/plain (Content-Format 0): one resource or resource-instance value as UTF-8 text
//! (OMA LwM2M TS 1.2 Core §7.4.1, and the "Text Format" column of Appendix C's data type
//! mapping).
//!
//! The text forms themselves live in [`Value::to_text`] and [`Value::from_text`]; this module
//! only frames them: the payload must be UTF-8, the value's type comes from the [`Schema`],
//! and a resource the schema does not know stays a [`Value::String`] so no data is lost.
//!
//! Opaque values have no text form in LwM2M 1.2 (they travel as application/octet-stream,
//! see `opaque.rs`), so encoding one is refused. LwM2M 1.0/1.1 carried them as Base64 text;
//! for compatibility the decoder still accepts Base64 when the schema says a resource is
//! Opaque.
//!
//! Hand-written because there is nothing to delegate: the framing is a UTF-8 check and a
//! match on the node kind.
#![deny(clippy::indexing_slicing)]

use super::{CodecError, ContentFormat};
use crate::model::{Node, Path, PathLevel, Resource, ResourceType, Schema, Value};
use base64::Engine as _;

const FORMAT: ContentFormat = ContentFormat::Text;

/// Encodes a single resource or a resource instance as its text form.
pub(super) fn encode(node: &Node) -> Result<Vec<u8>, CodecError> {
    let value = single_value(node)?;
    // Opaque has no text form (Core §7.4.1); the caller should use octet-stream.
    let text = value.to_text().ok_or(CodecError::Unsupported {
        format: FORMAT,
        level: node.level(),
    })?;
    Ok(text.into_bytes())
}

/// The one value a single-value format can carry, or `Unsupported`.
fn single_value(node: &Node) -> Result<&Value, CodecError> {
    node.value().ok_or(CodecError::Unsupported {
        format: FORMAT,
        level: node.level(),
    })
}

/// Decodes the text payload for the resource or resource instance at `path`.
pub(super) fn decode(path: &Path, bytes: &[u8], schema: &dyn Schema) -> Result<Node, CodecError> {
    let (object, resource) = super::single_value_target(FORMAT, path, schema)?;
    let text = std::str::from_utf8(bytes).map_err(|e| {
        CodecError::malformed(
            FORMAT,
            format!("payload is not UTF-8 (invalid byte at {})", e.valid_up_to()),
        )
    })?;
    let value = match schema.resource_type(object, resource) {
        // Unknown or executable resource: keep the text itself.
        None | Some(ResourceType::None) => Value::String(text.to_owned()),
        Some(ResourceType::Opaque) => Value::Opaque(
            base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map_err(|e| {
                    CodecError::malformed(FORMAT, format!("opaque value is not Base64: {e}"))
                })?,
        ),
        Some(ty) => Value::from_text(ty, text)?,
    };
    Ok(single_node(path, value))
}

/// The node for one decoded value at `path` (resource or resource-instance level).
pub(super) fn single_node(path: &Path, value: Value) -> Node {
    if path.level() == PathLevel::ResourceInstance {
        Node::ResourceInstance(value)
    } else {
        Node::Resource(Resource::Single(value))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)] // tests may unwrap and index
mod tests {
    use super::*;
    use crate::content::testutil::{
        arb_path, arb_single_value, arb_type, CyclingSchema, MapSchema,
    };
    use crate::model::{NoSchema, ObjectLink, ValueError};
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn single(v: Value) -> Node {
        Node::Resource(Resource::Single(v))
    }

    /// Core §7.4.1's example, and the per-type examples of Appendix C ("Text Format").
    #[test]
    fn encodes_the_spec_examples() {
        let cases: [(Value, &str); 9] = [
            (
                Value::String("Open Mobile Alliance".into()),
                "Open Mobile Alliance",
            ),
            (Value::Integer(-750), "-750"),
            (Value::UnsignedInteger(18), "18"),
            (Value::Float(6.667e-11), "0.00000000006667"),
            (Value::Boolean(true), "1"),
            (Value::Boolean(false), "0"),
            (Value::Time(1_476_186_613), "1476186613"),
            (
                Value::ObjectLink(ObjectLink {
                    object: 3,
                    instance: 0,
                }),
                "3:0",
            ),
            (
                Value::CoreLink("</3303/0/5700>;gt=23".into()),
                "</3303/0/5700>;gt=23",
            ),
        ];
        for (value, text) in cases {
            assert_eq!(
                encode(&single(value.clone())).unwrap(),
                text.as_bytes(),
                "{value:?}"
            );
            assert_eq!(
                encode(&Node::ResourceInstance(value)).unwrap(),
                text.as_bytes()
            );
        }
    }

    #[test]
    fn decodes_the_spec_examples_with_their_types() {
        let schema = MapSchema::new()
            .with(9, 0, ResourceType::Integer, false)
            .with(9, 1, ResourceType::UnsignedInteger, false)
            .with(9, 2, ResourceType::Float, false)
            .with(9, 3, ResourceType::Time, false)
            .with(9, 4, ResourceType::ObjectLink, true)
            .with(9, 5, ResourceType::Boolean, false);
        let at = |r| Path::resource(9, 0, r);
        assert_eq!(
            decode(&at(0), b"-750", &schema).unwrap(),
            single(Value::Integer(-750))
        );
        assert_eq!(
            decode(&at(1), b"18", &schema).unwrap(),
            single(Value::UnsignedInteger(18))
        );
        assert_eq!(
            decode(&at(2), b"0.00000000006667", &schema).unwrap(),
            single(Value::Float(6.667e-11))
        );
        assert_eq!(
            decode(&at(3), b"1476186613", &schema).unwrap(),
            single(Value::Time(1_476_186_613))
        );
        assert_eq!(
            decode(&at(5), b"1", &schema).unwrap(),
            single(Value::Boolean(true))
        );
        assert_eq!(
            decode(
                &Path::resource_instance(9, 0, 4, 2),
                b"65535:65535",
                &schema
            )
            .unwrap(),
            Node::ResourceInstance(Value::ObjectLink(ObjectLink::NULL))
        );
        let device = MapSchema::spec_examples();
        assert_eq!(
            decode(&Path::resource(3, 0, 0), b"Open Mobile Alliance", &device).unwrap(),
            single(Value::String("Open Mobile Alliance".into()))
        );
        assert_eq!(
            decode(&Path::resource(3, 0, 9), b"100", &device).unwrap(),
            single(Value::Integer(100))
        );
    }

    /// Appendix C: `{1,2,3,4,5}` is "AQIDBAU=" in Base64 (the LwM2M 1.0/1.1 text form).
    #[test]
    fn accepts_base64_for_opaque_resources_and_refuses_to_encode_opaque() {
        let schema = MapSchema::spec_examples();
        assert_eq!(
            decode(&Path::resource(5, 0, 0), b"AQIDBAU=", &schema).unwrap(),
            single(Value::Opaque(vec![1, 2, 3, 4, 5]))
        );
        assert!(matches!(
            decode(&Path::resource(5, 0, 0), b"!,-INVALID$_'", &schema),
            Err(CodecError::Malformed {
                format: ContentFormat::Text,
                ..
            })
        ));
        assert_eq!(
            encode(&single(Value::Opaque(vec![1]))),
            Err(CodecError::Unsupported {
                format: ContentFormat::Text,
                level: PathLevel::Resource
            })
        );
    }

    #[test]
    fn unknown_and_executable_resources_stay_strings() {
        assert_eq!(
            decode(&Path::resource(3, 0, 4), b"x", &MapSchema::spec_examples()).unwrap(),
            single(Value::String("x".into()))
        );
        assert_eq!(
            decode(&Path::resource(1024, 0, 1), b" 12 ", &NoSchema).unwrap(),
            single(Value::String(" 12 ".into()))
        );
    }

    #[test]
    fn rejects_bad_text() {
        let schema = MapSchema::spec_examples();
        assert!(matches!(
            decode(&Path::resource(3, 0, 0), b"Open \xff", &schema),
            Err(CodecError::Malformed {
                format: ContentFormat::Text,
                ..
            })
        ));
        assert!(matches!(
            decode(&Path::resource(3, 0, 9), b"12a", &schema),
            Err(CodecError::Value(ValueError::InvalidText { .. }))
        ));
        assert!(matches!(
            decode(&Path::resource(1, 0, 6), b"2", &schema),
            Err(CodecError::Value(_))
        ));
    }

    #[test]
    fn refuses_containers_and_multiple_resources() {
        let multiple = Node::Resource(Resource::Multiple(BTreeMap::from([(0, Value::Integer(1))])));
        assert_eq!(
            encode(&multiple),
            Err(CodecError::Unsupported {
                format: ContentFormat::Text,
                level: PathLevel::Resource
            })
        );
        assert_eq!(
            encode(&Node::Instance(Default::default())),
            Err(CodecError::Unsupported {
                format: ContentFormat::Text,
                level: PathLevel::Instance
            })
        );
        assert!(matches!(
            decode(&Path::resource(3, 0, 6), b"1", &MapSchema::spec_examples()),
            Err(CodecError::Unsupported { .. })
        ));
        // A resource instance of that multiple resource is fine.
        assert_eq!(
            decode(
                &Path::resource_instance(3, 0, 6, 1),
                b"5",
                &MapSchema::spec_examples()
            )
            .unwrap(),
            Node::ResourceInstance(Value::Integer(5))
        );
    }

    fn text_types() -> BoxedStrategy<ResourceType> {
        arb_type()
            .prop_filter("opaque has no text form", |t| *t != ResourceType::Opaque)
            .boxed()
    }

    proptest! {
        #[test]
        fn round_trips_every_text_type((path, node, schema) in arb_single_value(text_types())) {
            let bytes = encode(&node).unwrap();
            prop_assert_eq!(decode(&path, &bytes, &schema).unwrap(), node);
        }

        #[test]
        fn round_trips_opaque_through_base64(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let text = base64::engine::general_purpose::STANDARD.encode(&bytes);
            let node = decode(&Path::resource(5, 0, 0), text.as_bytes(), &MapSchema::spec_examples()).unwrap();
            prop_assert_eq!(node, single(Value::Opaque(bytes)));
        }

        #[test]
        fn arbitrary_bytes_never_panic(path in arb_path(), bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode(&path, &bytes, &NoSchema);
            let _ = decode(&path, &bytes, &CyclingSchema);
        }
    }
}
