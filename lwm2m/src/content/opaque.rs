//! application/octet-stream (Content-Format 42): the raw bytes of one Opaque resource or
//! resource instance, such as a firmware image (OMA LwM2M TS 1.2 Core §7.4.2).
//!
//! The payload is the value: there is no framing to parse, so any byte string is valid and
//! decodes to [`Value::Opaque`]. Only Opaque values can be encoded; other types have their
//! own single-value formats (text/plain, application/cbor).
#![deny(clippy::indexing_slicing)]

use super::text::single_node;
use super::{CodecError, ContentFormat};
use crate::model::{Node, Path, ResourceType, Value, ValueError};

/// Encodes a single Opaque resource or resource instance as its bytes.
pub(super) fn encode(node: &Node) -> Result<Vec<u8>, CodecError> {
    match node.value() {
        Some(Value::Opaque(bytes)) => Ok(bytes.clone()),
        Some(other) => Err(ValueError::Incompatible {
            from: other.resource_type(),
            to: ResourceType::Opaque,
        }
        .into()),
        None => Err(CodecError::Unsupported {
            format: ContentFormat::Opaque,
            level: node.level(),
        }),
    }
}

/// Decodes the bytes as the Opaque value of the resource or resource instance at `path`.
pub(super) fn decode(path: &Path, bytes: &[u8]) -> Result<Node, CodecError> {
    if path.resource_id().is_none() {
        return Err(CodecError::Unsupported {
            format: ContentFormat::Opaque,
            level: path.level(),
        });
    }
    Ok(single_node(path, Value::Opaque(bytes.to_vec())))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)] // tests may unwrap and index
mod tests {
    use super::*;
    use crate::content::testutil::{arb_path, arb_single_value};
    use crate::model::{PathLevel, Resource};
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[test]
    fn bytes_are_the_value() {
        let image = vec![0x7f, b'E', b'L', b'F', 0, 0xff];
        let node = Node::Resource(Resource::Single(Value::Opaque(image.clone())));
        assert_eq!(encode(&node).unwrap(), image);
        assert_eq!(decode(&Path::resource(5, 0, 0), &image).unwrap(), node);
        assert_eq!(
            decode(&Path::resource_instance(5, 0, 0, 3), b"").unwrap(),
            Node::ResourceInstance(Value::Opaque(vec![]))
        );
    }

    #[test]
    fn refuses_other_types_and_containers() {
        assert!(matches!(
            encode(&Node::ResourceInstance(Value::String("x".into()))),
            Err(CodecError::Value(ValueError::Incompatible {
                from: ResourceType::String,
                to: ResourceType::Opaque
            }))
        ));
        assert_eq!(
            encode(&Node::Resource(Resource::Multiple(BTreeMap::new()))),
            Err(CodecError::Unsupported {
                format: ContentFormat::Opaque,
                level: PathLevel::Resource
            })
        );
        assert!(decode(&Path::instance(5, 0), b"x").is_err());
    }

    proptest! {
        #[test]
        fn round_trips_opaque_values((path, node, _schema) in arb_single_value(Just(ResourceType::Opaque).boxed())) {
            prop_assert_eq!(decode(&path, &encode(&node).unwrap()).unwrap(), node);
        }

        #[test]
        fn arbitrary_bytes_never_panic(path in arb_path(), bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode(&path, &bytes);
        }
    }
}
