//! Reads LwM2M TLV (OMA LwM2M TS 1.2 Core §7.4.3) into a [`Node`] at a given path: the
//! canonical shape of each level and the wrapped or bare variants peers send, three levels
//! deep at most and without recursion on peer input.
#![deny(clippy::indexing_slicing)]

use super::value::decode_value;
use super::{malformed, Kind, Tlv, Tlvs, FORMAT};
use crate::content::CodecError;
use crate::model::{
    Instance, Node, NodeError, Path, PathLevel, Resource, ResourceType, Schema, Value,
};
use std::collections::BTreeMap;

/// Decodes a TLV payload addressed to `path`, typing values through `schema`.
pub(in crate::content) fn decode(
    path: &Path,
    bytes: &[u8],
    schema: &dyn Schema,
) -> Result<Node, CodecError> {
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
