//! The one value tree every codec reads and writes (OMA LwM2M TS 1.2 Core §7.1: objects,
//! object instances, single and multiple resources, resource instances).
//!
//! Nodes carry no ids of their own: a node is always paired with the [`Path`] it sits at, and
//! children are keyed by id in ordered maps, so there is one place an id can be.
use super::path::{Path, PathError, PathLevel};
use super::value::Value;
use std::collections::BTreeMap;

/// The resources of one object instance, by resource id.
pub type Instance = BTreeMap<u16, Resource>;

/// A resource: one value, or resource instances by id.
#[derive(Debug, Clone, PartialEq)]
pub enum Resource {
    /// A single-instance resource.
    Single(Value),
    /// A multiple-instance resource (possibly with no instances).
    Multiple(BTreeMap<u16, Value>),
}

/// A subtree of the object model, at the level of the path it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// `/o`: the instances of an object.
    Object(BTreeMap<u16, Instance>),
    /// `/o/i`: the resources of an instance.
    Instance(Instance),
    /// `/o/i/r`: a resource.
    Resource(Resource),
    /// `/o/i/r/ri`: one resource instance.
    ResourceInstance(Value),
}

/// Why values could not be assembled into a node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// A value's path is not below the node's path.
    #[error("{entry} is not under {at}")]
    OutsideTarget {
        /// The node's path.
        at: Path,
        /// The offending value's path.
        entry: Path,
    },
    /// A value sits at object or instance level, where only containers are.
    #[error("a value cannot sit at {0}")]
    NotAValuePath(Path),
    /// The same resource appears both as single and as multiple, or twice.
    #[error("conflicting or repeated values for {0}")]
    Conflict(Path),
    /// A single resource or resource instance was expected and nothing came.
    #[error("no value for {0}")]
    Missing(Path),
    /// A node cannot sit at the root.
    #[error("no node kind sits at the root path")]
    Root,
    /// An id is out of range.
    #[error(transparent)]
    Path(#[from] PathError),
}

impl Node {
    /// The path level this node belongs at.
    pub fn level(&self) -> PathLevel {
        match self {
            Node::Object(_) => PathLevel::Object,
            Node::Instance(_) => PathLevel::Instance,
            Node::Resource(_) => PathLevel::Resource,
            Node::ResourceInstance(_) => PathLevel::ResourceInstance,
        }
    }

    /// The value of a single resource or resource instance.
    pub fn value(&self) -> Option<&Value> {
        match self {
            Node::Resource(Resource::Single(v)) | Node::ResourceInstance(v) => Some(v),
            _ => None,
        }
    }

    /// Every value in the subtree with its full path, in path order. Empty containers
    /// contribute nothing.
    pub fn flatten(&self, at: &Path) -> Result<Vec<(Path, Value)>, PathError> {
        let mut out = Vec::new();
        match self {
            Node::Object(instances) => {
                for (i, inst) in instances {
                    flatten_instance(&at.child(*i)?, inst, &mut out)?;
                }
            }
            Node::Instance(inst) => flatten_instance(at, inst, &mut out)?,
            Node::Resource(r) => flatten_resource(at, r, &mut out)?,
            Node::ResourceInstance(v) => out.push((*at, v.clone())),
        }
        Ok(out)
    }

    /// Assembles the node at `at` from values with full paths (the inverse of
    /// [`flatten`](Self::flatten)). A value at resource level makes a single resource; values
    /// at resource-instance level make a multiple resource.
    pub fn from_values(
        at: &Path,
        values: impl IntoIterator<Item = (Path, Value)>,
    ) -> Result<Node, NodeError> {
        let mut instances: BTreeMap<u16, Instance> = BTreeMap::new();
        let mut single_seen = std::collections::BTreeSet::new();
        for (path, value) in values {
            if !path.starts_with(at) {
                return Err(NodeError::OutsideTarget {
                    at: *at,
                    entry: path,
                });
            }
            let (Some(o), Some(i), Some(r)) =
                (path.object_id(), path.instance_id(), path.resource_id())
            else {
                return Err(NodeError::NotAValuePath(path));
            };
            let _ = o;
            let resources = instances.entry(i).or_default();
            match path.resource_instance_id() {
                None => {
                    if resources.insert(r, Resource::Single(value)).is_some() {
                        return Err(NodeError::Conflict(path));
                    }
                    single_seen.insert((i, r));
                }
                Some(ri) => match resources
                    .entry(r)
                    .or_insert_with(|| Resource::Multiple(BTreeMap::new()))
                {
                    Resource::Multiple(m) => {
                        if m.insert(ri, value).is_some() {
                            return Err(NodeError::Conflict(path));
                        }
                    }
                    Resource::Single(_) => return Err(NodeError::Conflict(path)),
                },
            }
        }
        Ok(match at.level() {
            PathLevel::Root => return Err(NodeError::Root),
            PathLevel::Object => Node::Object(instances),
            PathLevel::Instance => {
                Node::Instance(instances.into_values().next().unwrap_or_default())
            }
            PathLevel::Resource => {
                let r = at.resource_id().unwrap_or_default();
                let res = instances
                    .into_values()
                    .next()
                    .and_then(|mut inst| inst.remove(&r));
                Node::Resource(res.unwrap_or_else(|| Resource::Multiple(BTreeMap::new())))
            }
            PathLevel::ResourceInstance => {
                let (r, ri) = (
                    at.resource_id().unwrap_or_default(),
                    at.resource_instance_id().unwrap_or_default(),
                );
                let v = instances
                    .into_values()
                    .next()
                    .and_then(|mut inst| inst.remove(&r))
                    .and_then(|res| match res {
                        Resource::Multiple(mut m) => m.remove(&ri),
                        Resource::Single(_) => None,
                    });
                Node::ResourceInstance(v.ok_or(NodeError::Missing(*at))?)
            }
        })
    }
}

fn flatten_instance(
    at: &Path,
    inst: &Instance,
    out: &mut Vec<(Path, Value)>,
) -> Result<(), PathError> {
    for (r, res) in inst {
        flatten_resource(&at.child(*r)?, res, out)?;
    }
    Ok(())
}

fn flatten_resource(
    at: &Path,
    res: &Resource,
    out: &mut Vec<(Path, Value)>,
) -> Result<(), PathError> {
    match res {
        Resource::Single(v) => out.push((*at, v.clone())),
        Resource::Multiple(m) => {
            for (ri, v) in m {
                out.push((at.child(*ri)?, v.clone()));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> Node {
        let mut inst = Instance::new();
        inst.insert(
            0,
            Resource::Single(Value::String("Open Mobile Alliance".into())),
        );
        inst.insert(
            7,
            Resource::Multiple(BTreeMap::from([
                (0, Value::Integer(3800)),
                (1, Value::Integer(5000)),
            ])),
        );
        Node::Object(BTreeMap::from([(0, inst)]))
    }

    #[test]
    fn flatten_and_rebuild_round_trip_at_every_level() {
        let obj = device();
        let flat = obj.flatten(&Path::object(3)).unwrap();
        assert_eq!(
            flat.iter().map(|(p, _)| p.to_string()).collect::<Vec<_>>(),
            ["/3/0/0", "/3/0/7/0", "/3/0/7/1"]
        );
        assert_eq!(
            Node::from_values(&Path::object(3), flat.clone()).unwrap(),
            obj
        );
        let inst = Node::from_values(&Path::instance(3, 0), flat.clone()).unwrap();
        assert!(matches!(&inst, Node::Instance(r) if r.len() == 2));
        let res = Node::from_values(&Path::resource(3, 0, 7), flat[1..].to_vec()).unwrap();
        assert!(matches!(&res, Node::Resource(Resource::Multiple(m)) if m.len() == 2));
        let ri =
            Node::from_values(&Path::resource_instance(3, 0, 7, 1), flat[2..].to_vec()).unwrap();
        assert_eq!(ri, Node::ResourceInstance(Value::Integer(5000)));
    }

    #[test]
    fn rebuild_rejects_values_outside_or_conflicting() {
        let v = Value::Integer(1);
        assert!(matches!(
            Node::from_values(
                &Path::instance(3, 0),
                [(Path::resource(3, 1, 0), v.clone())]
            ),
            Err(NodeError::OutsideTarget { .. })
        ));
        assert!(matches!(
            Node::from_values(&Path::object(3), [(Path::instance(3, 1), v.clone())]),
            Err(NodeError::NotAValuePath(_))
        ));
        assert!(matches!(
            Node::from_values(
                &Path::object(3),
                [
                    (Path::resource(3, 0, 7), v.clone()),
                    (Path::resource_instance(3, 0, 7, 0), v)
                ]
            ),
            Err(NodeError::Conflict(_))
        ));
    }
}
