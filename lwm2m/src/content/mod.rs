//! The LwM2M content formats (OMA LwM2M TS 1.2 Core §7.4; Transport §7): encode and decode
//! [`Node`]s and composite payloads.
//!
//! | format | code | carries |
//! | --- | --- | --- |
//! | text/plain | 0 | one value |
//! | application/link-format | 40 | Discover answers (paths with attributes) |
//! | application/octet-stream | 42 | one opaque value |
//! | application/cbor | 60 | one value |
//! | application/senml+json | 110 | any node, composites, timestamps |
//! | application/senml+cbor | 112 | any node, composites, timestamps |
//! | application/vnd.oma.lwm2m+tlv | 11542 | object, instance, resource, resource instance |
//! | application/vnd.oma.lwm2m+json | 11543 | any node, timestamps (LwM2M 1.0 JSON) |
//! | application/vnd.oma.lwm2m+cbor | 11544 | any node, composites (LwM2M 1.2) |
//!
//! Formats that do not carry types (TLV, text) type values through a [`Schema`]; for
//! resources the schema does not know, decoders keep the raw value (opaque bytes for TLV, a
//! string for text) instead of dropping data.
mod cbor;
pub mod link;
mod lwm2m_cbor;
mod lwm2m_json;
pub mod negotiate;
mod opaque;
#[cfg(any(test, feature = "test-support"))]
pub mod roundtrip;
mod senml;
mod senml_cbor;
mod senml_json;
/// Test schema and proptest strategies shared by the codecs' tests.
#[cfg(test)]
mod testutil;
mod text;
mod tlv;

use crate::model::{Node, NodeError, Path, PathError, PathLevel, Schema, Value, ValueError};

/// A content format of LwM2M, by its CoAP Content-Format code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContentFormat {
    /// text/plain (0).
    Text,
    /// application/link-format (40).
    LinkFormat,
    /// application/octet-stream (42).
    Opaque,
    /// application/cbor (60): a single value.
    Cbor,
    /// application/senml+json (110).
    SenmlJson,
    /// application/senml+cbor (112).
    SenmlCbor,
    /// application/vnd.oma.lwm2m+tlv (11542).
    Tlv,
    /// application/vnd.oma.lwm2m+json (11543).
    Lwm2mJson,
    /// application/vnd.oma.lwm2m+cbor (11544).
    Lwm2mCbor,
}

impl ContentFormat {
    /// Every format, in code order.
    pub const ALL: [ContentFormat; 9] = [
        ContentFormat::Text,
        ContentFormat::LinkFormat,
        ContentFormat::Opaque,
        ContentFormat::Cbor,
        ContentFormat::SenmlJson,
        ContentFormat::SenmlCbor,
        ContentFormat::Tlv,
        ContentFormat::Lwm2mJson,
        ContentFormat::Lwm2mCbor,
    ];

    /// The CoAP Content-Format code.
    pub const fn code(self) -> u16 {
        match self {
            ContentFormat::Text => 0,
            ContentFormat::LinkFormat => 40,
            ContentFormat::Opaque => 42,
            ContentFormat::Cbor => 60,
            ContentFormat::SenmlJson => 110,
            ContentFormat::SenmlCbor => 112,
            ContentFormat::Tlv => 11542,
            ContentFormat::Lwm2mJson => 11543,
            ContentFormat::Lwm2mCbor => 11544,
        }
    }

    /// The format for a Content-Format code. The pre-registration codes of LwM2M 1.0
    /// (1541 TLV, 1543 JSON) are accepted too, since old devices still send them.
    pub fn from_code(code: u16) -> Option<Self> {
        Some(match code {
            0 => ContentFormat::Text,
            40 => ContentFormat::LinkFormat,
            42 => ContentFormat::Opaque,
            60 => ContentFormat::Cbor,
            110 => ContentFormat::SenmlJson,
            112 => ContentFormat::SenmlCbor,
            11542 | 1542 => ContentFormat::Tlv,
            11543 | 1543 => ContentFormat::Lwm2mJson,
            11544 => ContentFormat::Lwm2mCbor,
            _ => return None,
        })
    }

    /// The media type.
    pub const fn media_type(self) -> &'static str {
        match self {
            ContentFormat::Text => "text/plain",
            ContentFormat::LinkFormat => "application/link-format",
            ContentFormat::Opaque => "application/octet-stream",
            ContentFormat::Cbor => "application/cbor",
            ContentFormat::SenmlJson => "application/senml+json",
            ContentFormat::SenmlCbor => "application/senml+cbor",
            ContentFormat::Tlv => "application/vnd.oma.lwm2m+tlv",
            ContentFormat::Lwm2mJson => "application/vnd.oma.lwm2m+json",
            ContentFormat::Lwm2mCbor => "application/vnd.oma.lwm2m+cbor",
        }
    }

    /// Whether the format can carry a node at `level` (single-value formats carry only
    /// resources and resource instances; link format carries no values).
    pub fn supports(self, level: PathLevel) -> bool {
        match self {
            ContentFormat::Text | ContentFormat::Opaque | ContentFormat::Cbor => {
                matches!(level, PathLevel::Resource | PathLevel::ResourceInstance)
            }
            ContentFormat::LinkFormat => false,
            _ => level != PathLevel::Root,
        }
    }

    /// Whether the format carries several paths in one payload (Read-/Write-/
    /// Observe-Composite and Send, TS Core §6.3.x, §6.4.x).
    pub fn supports_composite(self) -> bool {
        matches!(
            self,
            ContentFormat::SenmlJson | ContentFormat::SenmlCbor | ContentFormat::Lwm2mCbor
        )
    }
}

/// One entry of a composite or time-stamped payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Where the value belongs. In a Read-Composite or Observe-Composite request, or a
    /// Write-Composite deletion, the path may be above resource level.
    pub path: Path,
    /// The value; `None` in a request that names paths only.
    pub value: Option<Value>,
    /// Absolute time in seconds (SenML base time plus time), when the payload carries one.
    pub time: Option<f64>,
}

/// Why a payload could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The format cannot carry this node kind (or composite payloads).
    #[error("{format:?} cannot carry a node at {level:?}")]
    Unsupported {
        /// The format.
        format: ContentFormat,
        /// The node's level.
        level: PathLevel,
    },
    /// The bytes are not a valid payload of the format.
    #[error("malformed {format:?} payload: {reason}")]
    Malformed {
        /// The format.
        format: ContentFormat,
        /// What is wrong, for logs and error responses.
        reason: String,
    },
    /// A value does not fit the type the format or the model requires.
    #[error(transparent)]
    Value(#[from] ValueError),
    /// A path in the payload is invalid.
    #[error(transparent)]
    Path(#[from] PathError),
    /// The values do not form a node at the requested path.
    #[error(transparent)]
    Node(#[from] NodeError),
}

/// The (object, resource) that a single-value format (text, CBOR) can carry at `path`: a
/// resource instance, or a resource the schema does not call multiple-instance — one value
/// without its instance id would be ambiguous.
pub(crate) fn single_value_target(
    format: ContentFormat,
    path: &Path,
    schema: &dyn Schema,
) -> Result<(u16, u16), CodecError> {
    let unsupported = || CodecError::Unsupported {
        format,
        level: path.level(),
    };
    let (Some(object), Some(resource)) = (path.object_id(), path.resource_id()) else {
        return Err(unsupported());
    };
    if path.level() == PathLevel::Resource && schema.is_multiple(object, resource) == Some(true) {
        return Err(unsupported());
    }
    Ok((object, resource))
}

impl CodecError {
    pub(crate) fn malformed(format: ContentFormat, reason: impl Into<String>) -> Self {
        CodecError::Malformed {
            format,
            reason: reason.into(),
        }
    }
}

/// Encodes `node`, which sits at `path`, in `format`.
pub fn encode(format: ContentFormat, path: &Path, node: &Node) -> Result<Vec<u8>, CodecError> {
    if !format.supports(node.level()) || node.level() != path.level() {
        return Err(CodecError::Unsupported {
            format,
            level: node.level(),
        });
    }
    match format {
        ContentFormat::Text => text::encode(node),
        ContentFormat::Opaque => opaque::encode(node),
        ContentFormat::Cbor => cbor::encode(node),
        ContentFormat::Tlv => tlv::encode(path, node),
        ContentFormat::SenmlJson => senml_json::encode(path, node),
        ContentFormat::SenmlCbor => senml_cbor::encode(path, node),
        ContentFormat::Lwm2mJson => lwm2m_json::encode(path, node),
        ContentFormat::Lwm2mCbor => lwm2m_cbor::encode(path, node),
        ContentFormat::LinkFormat => Err(CodecError::Unsupported {
            format,
            level: node.level(),
        }),
    }
}

/// Decodes a payload in `format` addressed to `path` (the request's or response's path)
/// into the node at that path.
pub fn decode(
    format: ContentFormat,
    path: &Path,
    bytes: &[u8],
    schema: &dyn Schema,
) -> Result<Node, CodecError> {
    if !format.supports(path.level()) {
        return Err(CodecError::Unsupported {
            format,
            level: path.level(),
        });
    }
    match format {
        ContentFormat::Text => text::decode(path, bytes, schema),
        ContentFormat::Opaque => opaque::decode(path, bytes),
        ContentFormat::Cbor => cbor::decode(path, bytes, schema),
        ContentFormat::Tlv => tlv::decode(path, bytes, schema),
        ContentFormat::SenmlJson => senml_json::decode(path, bytes, schema),
        ContentFormat::SenmlCbor => senml_cbor::decode(path, bytes, schema),
        ContentFormat::Lwm2mJson => lwm2m_json::decode(path, bytes, schema),
        ContentFormat::Lwm2mCbor => lwm2m_cbor::decode(path, bytes, schema),
        ContentFormat::LinkFormat => Err(CodecError::Unsupported {
            format,
            level: path.level(),
        }),
    }
}

/// Encodes a composite payload: several paths, with or without values and times.
pub fn encode_composite(format: ContentFormat, records: &[Record]) -> Result<Vec<u8>, CodecError> {
    match format {
        ContentFormat::SenmlJson => senml_json::encode_records(records),
        ContentFormat::SenmlCbor => senml_cbor::encode_records(records),
        ContentFormat::Lwm2mCbor => lwm2m_cbor::encode_records(records),
        ContentFormat::Lwm2mJson => lwm2m_json::encode_records(records),
        _ => Err(CodecError::Unsupported {
            format,
            level: PathLevel::Root,
        }),
    }
}

/// Decodes a composite or time-stamped payload (Read-Composite answers, Send, notifications
/// with history) into records in payload order, typed through `schema`.
pub fn decode_composite(
    format: ContentFormat,
    bytes: &[u8],
    schema: &dyn Schema,
) -> Result<Vec<Record>, CodecError> {
    match format {
        ContentFormat::SenmlJson => senml_json::decode_records(bytes, schema),
        ContentFormat::SenmlCbor => senml_cbor::decode_records(bytes, schema),
        ContentFormat::Lwm2mCbor => lwm2m_cbor::decode_records(bytes, schema),
        ContentFormat::Lwm2mJson => lwm2m_json::decode_records(bytes, schema),
        _ => Err(CodecError::Unsupported {
            format,
            level: PathLevel::Root,
        }),
    }
}
