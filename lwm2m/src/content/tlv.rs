//! application/vnd.oma.lwm2m+tlv (Content-Format 11542): the binary TLV format of OMA LwM2M
//! TS 1.2 Core §7.4.3 (value encodings in Appendix C, "TLV Format").
//!
//! Each entry is a type byte, an 8- or 16-bit identifier, an optional 8/16/24-bit length and
//! the value:
//!
//! ```text
//! type byte: bits 7-6  00 object instance   (value: resource TLVs)
//!                      01 resource instance (value: a resource value)
//!                      10 multiple resource (value: resource instance TLVs)
//!                      11 resource with value
//!            bit 5     identifier is 16 bits (else 8)
//!            bits 4-3  length field of 0 (length in bits 2-0), 8, 16 or 24 bits
//! ```
//!
//! The format nests at most three deep (instance, multiple resource, resource instance), so
//! the decoder walks those levels explicitly instead of recursing on peer input, and every
//! length is checked against the remaining input by [`Reader`] before anything is taken, so
//! nothing is allocated on a peer's say-so.
//!
//! What goes on the wire for each node (as Leshan writes it, and as the TS examples show):
//!
//! | node at | payload |
//! | --- | --- |
//! | `/o` | one object-instance TLV per instance |
//! | `/o/i` | the resource TLVs, without the instance TLV |
//! | `/o/i/r` | one resource TLV (resource with value, or multiple resource) |
//! | `/o/i/r/ri` | one resource-instance TLV |
//!
//! The decoder accepts what peers send besides: at `/o/i` the instance wrapped in its
//! object-instance TLV (TS example "single object instance"), at `/o/i/r` a wrapping
//! object-instance TLV with the right id or a bare list of resource-instance TLVs, at
//! `/o/i/r/ri` a wrapping multiple-resource TLV. At `/o`, resource TLVs without an instance
//! TLV are what a single-instance object's Read returns, so they are read as instance 0, as
//! Leshan does when the object is single-instance or unknown; mixing them with instance TLVs
//! is ambiguous and refused. (Leshan reads such a payload for a *multiple*-instance object as
//! a Create without instance id; a [`Node`] cannot express a missing id and the [`Schema`]
//! does not tell object multiplicity, so that case also decodes as instance 0.)
//!
//! Values carry no type in TLV: the [`Schema`] gives it. A resource the schema does not know
//! (or an executable one) keeps its raw bytes as [`Value::Opaque`].
//!
//! Hand-written because no maintained crate implements LwM2M TLV.
#![deny(clippy::indexing_slicing)]

use super::{CodecError, ContentFormat};
use crate::model::{
    Instance, Node, NodeError, ObjectLink, Path, PathError, PathLevel, Resource, ResourceType,
    Schema, Value, MAX_ID,
};
use crate::reader::Reader;
use std::collections::BTreeMap;

const FORMAT: ContentFormat = ContentFormat::Tlv;

/// The largest value the 24-bit length field can describe.
const MAX_LEN: usize = 0xFF_FFFF;

fn malformed(reason: impl Into<String>) -> CodecError {
    CodecError::malformed(FORMAT, reason)
}

/// The identifier type of a TLV (type byte bits 7-6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    ObjectInstance,
    ResourceInstance,
    MultipleResource,
    ResourceValue,
}

impl Kind {
    fn from_type_byte(b: u8) -> Self {
        match b >> 6 {
            0b00 => Kind::ObjectInstance,
            0b01 => Kind::ResourceInstance,
            0b10 => Kind::MultipleResource,
            _ => Kind::ResourceValue,
        }
    }

    fn type_bits(self) -> u8 {
        let bits = match self {
            Kind::ObjectInstance => 0b00,
            Kind::ResourceInstance => 0b01,
            Kind::MultipleResource => 0b10,
            Kind::ResourceValue => 0b11,
        };
        bits << 6
    }

    fn name(self) -> &'static str {
        match self {
            Kind::ObjectInstance => "object instance",
            Kind::ResourceInstance => "resource instance",
            Kind::MultipleResource => "multiple resource",
            Kind::ResourceValue => "resource",
        }
    }
}

/// One TLV, its value borrowed from the input.
#[derive(Debug)]
struct Tlv<'a> {
    /// What the value holds, and so which level may contain this TLV.
    kind: Kind,
    /// Object instance, resource or resource instance id, by `kind`.
    id: u16,
    /// The value bytes: a resource value, or the TLVs of the next level.
    value: &'a [u8],
    /// Where `value` starts in the whole payload, so errors in nested TLVs can say where.
    value_at: usize,
}

/// The TLVs of one nesting level, read one at a time. Stops after the first error.
struct Tlvs<'a> {
    /// The level's bytes: the whole payload, or the value of the enclosing TLV.
    r: Reader<'a>,
    /// Where the level starts in the whole payload, for error positions.
    base: usize,
    /// Set after an error: the rest of the level cannot be framed.
    failed: bool,
}

impl<'a> Tlvs<'a> {
    /// The top level of a payload.
    fn new(bytes: &'a [u8]) -> Self {
        Tlvs {
            r: Reader::new(bytes),
            base: 0,
            failed: false,
        }
    }

    /// The TLVs inside `t`'s value.
    fn within(t: &Tlv<'a>) -> Self {
        Tlvs {
            r: Reader::new(t.value),
            base: t.value_at,
            failed: false,
        }
    }

    fn read(&mut self) -> Result<Tlv<'a>, CodecError> {
        let start = self.base.saturating_add(self.r.position());
        let truncated = |what: &str| malformed(format!("TLV at byte {start}: truncated {what}"));
        let type_byte = self.r.take_u8().ok_or_else(|| truncated("type"))?;
        let id_len = if type_byte & 0x20 != 0 { 2 } else { 1 };
        let id = self
            .r
            .be_uint(id_len)
            .ok_or_else(|| truncated("identifier"))?;
        let id = u16::try_from(id).map_err(|_| truncated("identifier"))?;
        let len = match (type_byte >> 3) & 0b11 {
            0 => u64::from(type_byte & 0b111),
            n => self
                .r
                .be_uint(usize::from(n))
                .ok_or_else(|| truncated("length"))?,
        };
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        let remaining = self.r.remaining();
        let value = self.r.take(len).ok_or_else(|| {
            malformed(format!(
                "TLV at byte {start} declares {len} value bytes, {remaining} remain"
            ))
        })?;
        Ok(Tlv {
            kind: Kind::from_type_byte(type_byte),
            id,
            value,
            value_at: self
                .base
                .saturating_add(self.r.position())
                .saturating_sub(len),
        })
    }
}

impl<'a> Iterator for Tlvs<'a> {
    type Item = Result<Tlv<'a>, CodecError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.r.is_empty() {
            return None;
        }
        let item = self.read();
        self.failed = item.is_err();
        Some(item)
    }
}

/// Encodes `node`, which sits at `path`.
pub(super) fn encode(path: &Path, node: &Node) -> Result<Vec<u8>, CodecError> {
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

/// The value bytes (Core Appendix C, "TLV Format").
fn encode_value(v: &Value) -> Vec<u8> {
    match v {
        Value::Integer(i) | Value::Time(i) => signed_bytes(*i),
        // Written with a clear top bit whenever the value allows it, i.e. one byte longer than
        // the shortest unsigned form for 128..=255 and the like. A spec reader (binary
        // unsigned of 1, 2, 4 or 8 bytes) reads the same number, and so does a reader that
        // treats every TLV integer as signed, as LwM2M 1.0-era stacks including Leshan do.
        Value::UnsignedInteger(u) => match i64::try_from(*u) {
            Ok(i) => signed_bytes(i),
            Err(_) => u.to_be_bytes().to_vec(),
        },
        Value::Float(f) => {
            let narrow = *f as f32;
            if f64::from(narrow) == *f {
                narrow.to_be_bytes().to_vec()
            } else {
                f.to_be_bytes().to_vec()
            }
        }
        Value::Boolean(b) => vec![u8::from(*b)],
        Value::String(s) | Value::CoreLink(s) => s.as_bytes().to_vec(),
        Value::Opaque(b) => b.clone(),
        Value::ObjectLink(l) => [l.object.to_be_bytes(), l.instance.to_be_bytes()].concat(),
    }
}

/// The shortest of the 1, 2, 4 or 8-byte two's-complement forms.
fn signed_bytes(i: i64) -> Vec<u8> {
    let n = if i8::try_from(i).is_ok() {
        1
    } else if i16::try_from(i).is_ok() {
        2
    } else if i32::try_from(i).is_ok() {
        4
    } else {
        8
    };
    let bytes = i.to_be_bytes();
    bytes.get(8 - n..).unwrap_or(&bytes).to_vec()
}

/// Decodes a TLV payload addressed to `path`, typing values through `schema`.
pub(super) fn decode(path: &Path, bytes: &[u8], schema: &dyn Schema) -> Result<Node, CodecError> {
    let ids = (
        path.object_id(),
        path.instance_id(),
        path.resource_id(),
        path.resource_instance_id(),
    );
    let mut tlvs = Tlvs::new(bytes);
    let first = tlvs.next().transpose()?;
    match (path.level(), ids) {
        (PathLevel::Object, (Some(o), ..)) => decode_object(Path::object(o), first, tlvs, schema),
        (PathLevel::Instance, (Some(o), Some(i), ..)) => {
            let at = Path::instance(o, i);
            Ok(Node::Instance(match first {
                Some(t) if t.kind == Kind::ObjectInstance => {
                    expect_id(&at, &t, i)?;
                    expect_end(&at, tlvs)?;
                    decode_resources(&at, Tlvs::within(&t), schema)?
                }
                first => decode_resources(&at, first.into_iter().map(Ok).chain(tlvs), schema)?,
            }))
        }
        (PathLevel::Resource, (Some(o), Some(i), Some(r), _)) => {
            let at = Path::resource(o, i, r);
            let res = match first {
                // A wrapping instance TLV is tolerated when it names the path's instance.
                Some(t) if t.kind == Kind::ObjectInstance => {
                    expect_id(&at, &t, i)?;
                    expect_end(&at, tlvs)?;
                    let mut inner = Tlvs::within(&t);
                    let first = inner.next().transpose()?;
                    decode_resource_payload(&at, first, inner, schema)?
                }
                first => decode_resource_payload(&at, first, tlvs, schema)?,
            };
            Ok(Node::Resource(res))
        }
        (PathLevel::ResourceInstance, (Some(_), Some(_), Some(r), Some(ri))) => {
            let at = *path;
            let t = first.ok_or(NodeError::Missing(at))?;
            expect_end(&at, tlvs)?;
            let t = if t.kind == Kind::MultipleResource {
                expect_id(&at, &t, r)?;
                let mut inner = Tlvs::within(&t);
                let only = inner.next().transpose()?.ok_or(NodeError::Missing(at))?;
                expect_end(&at, inner)?;
                only
            } else {
                t
            };
            expect_kind(&at, &t, Kind::ResourceInstance)?;
            expect_id(&at, &t, ri)?;
            Ok(Node::ResourceInstance(decode_value(
                schema_type(schema, &at),
                t.value,
                &at,
            )?))
        }
        _ => Err(CodecError::Unsupported {
            format: FORMAT,
            level: path.level(),
        }),
    }
}

/// `/o`: instance TLVs, or (single-instance object) the resources of instance 0.
fn decode_object<'a>(
    at: Path,
    first: Option<Tlv<'a>>,
    rest: Tlvs<'a>,
    schema: &dyn Schema,
) -> Result<Node, CodecError> {
    let mut instances = BTreeMap::new();
    match first {
        None => {}
        Some(t) if t.kind == Kind::ObjectInstance => {
            for t in std::iter::once(Ok(t)).chain(rest) {
                let t = t?;
                expect_kind(&at, &t, Kind::ObjectInstance)?;
                let inst_at = at.child(t.id)?;
                let inst = decode_resources(&inst_at, Tlvs::within(&t), schema)?;
                if instances.insert(t.id, inst).is_some() {
                    return Err(NodeError::Conflict(inst_at).into());
                }
            }
        }
        Some(t) if t.kind == Kind::ResourceInstance => {
            return Err(malformed(format!(
                "{at}: a resource instance TLV cannot sit at object level"
            )));
        }
        Some(t) => {
            // Resources without their instance: instance 0 of a single-instance object.
            let inst = decode_resources(&at.child(0)?, std::iter::once(Ok(t)).chain(rest), schema)?;
            instances.insert(0, inst);
        }
    }
    Ok(Node::Object(instances))
}

/// The resource TLVs of one instance.
fn decode_resources<'a>(
    at: &Path,
    tlvs: impl Iterator<Item = Result<Tlv<'a>, CodecError>>,
    schema: &dyn Schema,
) -> Result<Instance, CodecError> {
    let mut inst = Instance::new();
    for t in tlvs {
        let t = t?;
        let res_at = at.child(t.id)?;
        let res = match t.kind {
            Kind::ResourceValue => Resource::Single(decode_value(
                schema_type(schema, &res_at),
                t.value,
                &res_at,
            )?),
            Kind::MultipleResource => Resource::Multiple(decode_resource_instances(
                &res_at,
                Tlvs::within(&t),
                schema,
            )?),
            other => return Err(unexpected(&res_at, other, "a resource")),
        };
        if inst.insert(t.id, res).is_some() {
            return Err(NodeError::Conflict(res_at).into());
        }
    }
    Ok(inst)
}

/// The payload of a resource path: one resource TLV, or a bare list of resource instances.
fn decode_resource_payload<'a>(
    at: &Path,
    first: Option<Tlv<'a>>,
    rest: Tlvs<'a>,
    schema: &dyn Schema,
) -> Result<Resource, CodecError> {
    let (Some(o), Some(r)) = (at.object_id(), at.resource_id()) else {
        return Err(CodecError::Unsupported {
            format: FORMAT,
            level: at.level(),
        });
    };
    match first {
        // Nothing: an empty multiple resource, unless the model says it is single.
        None if schema.is_multiple(o, r) == Some(false) => Err(NodeError::Missing(*at).into()),
        None => Ok(Resource::Multiple(BTreeMap::new())),
        Some(t) if t.kind == Kind::ResourceInstance => {
            decode_resource_instances(at, std::iter::once(Ok(t)).chain(rest), schema)
                .map(Resource::Multiple)
        }
        Some(t) if matches!(t.kind, Kind::ResourceValue | Kind::MultipleResource) => {
            expect_id(at, &t, r)?;
            expect_end(at, rest)?;
            let mut inst =
                decode_resources(&at.parent().unwrap_or(*at), std::iter::once(Ok(t)), schema)?;
            inst.remove(&r)
                .ok_or_else(|| NodeError::Missing(*at).into())
        }
        Some(t) => Err(unexpected(at, t.kind, "a resource")),
    }
}

/// The resource-instance TLVs of one multiple resource.
fn decode_resource_instances<'a>(
    at: &Path,
    tlvs: impl Iterator<Item = Result<Tlv<'a>, CodecError>>,
    schema: &dyn Schema,
) -> Result<BTreeMap<u16, Value>, CodecError> {
    let ty = schema_type(schema, at);
    let mut values = BTreeMap::new();
    for t in tlvs {
        let t = t?;
        let ri_at = at.child(t.id)?;
        expect_kind(&ri_at, &t, Kind::ResourceInstance)?;
        if values
            .insert(t.id, decode_value(ty, t.value, &ri_at)?)
            .is_some()
        {
            return Err(NodeError::Conflict(ri_at).into());
        }
    }
    Ok(values)
}

fn schema_type(schema: &dyn Schema, at: &Path) -> Option<ResourceType> {
    schema.resource_type(at.object_id()?, at.resource_id()?)
}

fn expect_kind(at: &Path, t: &Tlv<'_>, kind: Kind) -> Result<(), CodecError> {
    if t.kind == kind {
        Ok(())
    } else {
        Err(unexpected(at, t.kind, kind.name()))
    }
}

fn unexpected(at: &Path, found: Kind, expected: &str) -> CodecError {
    malformed(format!(
        "{at}: expected {expected} TLV, found {} TLV",
        found.name()
    ))
}

fn expect_id(at: &Path, t: &Tlv<'_>, id: u16) -> Result<(), CodecError> {
    if t.id == id {
        Ok(())
    } else {
        Err(malformed(format!(
            "{at}: {} TLV has id {}, the path says {id}",
            t.kind.name(),
            t.id
        )))
    }
}

/// Refuses any TLV after the one a path level allows.
fn expect_end(at: &Path, mut rest: Tlvs<'_>) -> Result<(), CodecError> {
    match rest.next().transpose()? {
        None => Ok(()),
        Some(t) => Err(malformed(format!(
            "{at}: unexpected extra {} TLV {}",
            t.kind.name(),
            t.id
        ))),
    }
}

/// Reads a value of type `ty` (Core Appendix C); unknown and executable resources keep
/// their bytes.
fn decode_value(ty: Option<ResourceType>, raw: &[u8], at: &Path) -> Result<Value, CodecError> {
    use ResourceType as T;
    let bad = |what: &str| malformed(format!("{at}: {what}, got {} bytes", raw.len()));
    let utf8 = || {
        String::from_utf8(raw.to_vec())
            .map_err(|e| malformed(format!("{at}: string is not UTF-8 ({e})")))
    };
    Ok(match ty {
        None | Some(T::None) | Some(T::Opaque) => Value::Opaque(raw.to_vec()),
        Some(T::String) => Value::String(utf8()?),
        Some(T::CoreLink) => Value::CoreLink(utf8()?),
        Some(T::Integer) => {
            Value::Integer(signed(raw).ok_or_else(|| bad("an integer takes 1, 2, 4 or 8 bytes"))?)
        }
        Some(T::Time) => {
            Value::Time(signed(raw).ok_or_else(|| bad("a time takes 1, 2, 4 or 8 bytes"))?)
        }
        Some(T::UnsignedInteger) => Value::UnsignedInteger(
            unsigned(raw).ok_or_else(|| bad("an unsigned integer takes 1, 2, 4 or 8 bytes"))?,
        ),
        Some(T::Float) => Value::Float(match raw.len() {
            4 => f64::from(f32::from_bits(
                unsigned(raw)
                    .and_then(|u| u32::try_from(u).ok())
                    .unwrap_or_default(),
            )),
            8 => f64::from_bits(unsigned(raw).unwrap_or_default()),
            _ => return Err(bad("a float takes 4 or 8 bytes")),
        }),
        Some(T::Boolean) => match raw {
            [0] => Value::Boolean(false),
            [1] => Value::Boolean(true),
            _ => return Err(bad("a boolean is one byte, 0 or 1")),
        },
        Some(T::ObjectLink) => {
            let mut r = Reader::new(raw);
            match (r.be_uint(2), r.be_uint(2), r.is_empty()) {
                (Some(o), Some(i), true) => Value::ObjectLink(ObjectLink {
                    object: u16::try_from(o).unwrap_or(u16::MAX),
                    instance: u16::try_from(i).unwrap_or(u16::MAX),
                }),
                _ => return Err(bad("an object link takes 4 bytes")),
            }
        }
    })
}

/// A 1, 2, 4 or 8-byte big-endian unsigned integer.
fn unsigned(raw: &[u8]) -> Option<u64> {
    if !matches!(raw.len(), 1 | 2 | 4 | 8) {
        return None;
    }
    Reader::new(raw).be_uint(raw.len())
}

/// A 1, 2, 4 or 8-byte big-endian two's-complement integer.
fn signed(raw: &[u8]) -> Option<i64> {
    let u = unsigned(raw)?;
    // `unsigned` admits 1 to 8 bytes only, so the shift is 0..=56.
    let shift = 64 - 8 * u32::try_from(raw.len()).ok()?;
    // Move the sign bit to bit 63, then shift back arithmetically to extend it.
    Some(((u << shift) as i64) >> shift)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)] // tests may unwrap and index
mod tests {
    use super::*;
    use crate::content::testutil::{arb_path, arb_tree_node, CyclingSchema, MapSchema};
    use crate::model::NoSchema;
    use proptest::prelude::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    // The examples of OMA LwM2M TS 1.0 §6.4.3 (kept in TS 1.1/1.2 Core §7.4.3), as quoted byte
    // for byte in Leshan's `LwM2mNodeDecoderTest` (leshan-lwm2m-core).

    /// Read /3/0: the Device object instance as resource TLVs (TS "Single Object Instance").
    const DEVICE: &str = "C800144F70656E204D6F62696C6520416C6C69616E6365C801164C69676874776569676874204D324D20436C69656E74C80209333435303030313233C303312E30860641000141010588070842000ED842011388870841007D42010384C10964C10A0F830B410000C40D5182428FC60E2B30323A3030C11055";
    /// The same instance wrapped in its object instance TLV (TS example A).
    const DEVICE_IN_INSTANCE: &str = "080079C800144F70656E204D6F62696C6520416C6C69616E6365C801164C69676874776569676874204D324D20436C69656E74C80209333435303030313233C303312E30860641000141010588070842000ED842011388870841007D42010384C10964C10A0F830B410000C40D5182428FC60E2B30323A3030C11055";
    /// Read /2: two Access Control instances (TS example B).
    const ACL: &str =
        "08000EC10001C101008302417F07C1037F080212C10003C101008702417F0761013601C1037F";
    /// Read /1: one Server instance (TS example C).
    const SERVER: &str = "08000FC10001C40100015180C10601C10755";
    /// Read /65/0: object links in a multiple resource (TS §6.4.3.3 example 1).
    const OBJ65: &str =
        "88000C440000420000440100420001C8010D38363133383030373535353030C40212345678";
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
}
