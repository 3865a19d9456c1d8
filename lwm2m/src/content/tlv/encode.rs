//! Writes a [`Node`] as LwM2M TLV (OMA LwM2M TS 1.2 Core §7.4.3): the shape each path level
//! gets on the wire, and the entry headers with the shortest identifier and length fields.
#![deny(clippy::indexing_slicing)]

use super::value::encode_value;
use super::{malformed, Kind, FORMAT, MAX_LEN};
use crate::content::CodecError;
use crate::model::{Instance, Node, Path, PathError, Resource, MAX_ID};

/// Encodes `node`, which sits at `path`.
pub(in crate::content) fn encode(path: &Path, node: &Node) -> Result<Vec<u8>, CodecError> {
    let unsupported = || CodecError::Unsupported {
        format: FORMAT,
        level: path.level(),
    };
    let mut out = Vec::new();
    match node {
        Node::Object(instances) => {
            for (i, inst) in instances {
                write_tlv(&mut out, Kind::ObjectInstance, *i, &encode_instance(inst)?)?;
            }
        }
        Node::Instance(inst) => out = encode_instance(inst)?,
        Node::Resource(res) => {
            encode_resource(&mut out, path.resource_id().ok_or_else(unsupported)?, res)?
        }
        Node::ResourceInstance(v) => {
            let ri = path.resource_instance_id().ok_or_else(unsupported)?;
            write_tlv(&mut out, Kind::ResourceInstance, ri, &encode_value(v))?;
        }
    }
    Ok(out)
}

fn encode_instance(inst: &Instance) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::new();
    for (r, res) in inst {
        encode_resource(&mut out, *r, res)?;
    }
    Ok(out)
}

fn encode_resource(out: &mut Vec<u8>, r: u16, res: &Resource) -> Result<(), CodecError> {
    match res {
        Resource::Single(v) => write_tlv(out, Kind::ResourceValue, r, &encode_value(v)),
        Resource::Multiple(instances) => {
            let mut body = Vec::new();
            for (ri, v) in instances {
                write_tlv(&mut body, Kind::ResourceInstance, *ri, &encode_value(v))?;
            }
            write_tlv(out, Kind::MultipleResource, r, &body)
        }
    }
}

/// Appends one TLV with the shortest identifier and length fields.
fn write_tlv(out: &mut Vec<u8>, kind: Kind, id: u16, value: &[u8]) -> Result<(), CodecError> {
    if id > MAX_ID {
        return Err(PathError::InvalidSegment(id.to_string()).into());
    }
    let len = value.len();
    if len > MAX_LEN {
        return Err(malformed(format!(
            "a {len}-byte value exceeds the 24-bit TLV length"
        )));
    }
    let wide_id = id > 0xFF;
    let (length_type, length_bytes) = match len {
        0..=7 => (len as u8, 0),
        8..=0xFF => (0b01 << 3, 1),
        0x100..=0xFFFF => (0b10 << 3, 2),
        _ => (0b11 << 3, 3),
    };
    out.push(kind.type_bits() | if wide_id { 0x20 } else { 0 } | length_type);
    if wide_id {
        out.extend_from_slice(&id.to_be_bytes());
    } else {
        out.push(id as u8);
    }
    let len_be = (len as u32).to_be_bytes();
    out.extend_from_slice(len_be.get(4 - length_bytes..).unwrap_or_default());
    out.extend_from_slice(value);
    Ok(())
}
