//! The Device Management operations on the [`ObjectStore`] as a server may perform them
//! (OMA LwM2M TS 1.2 Core §6.3, response codes of Transport §6.3): every operation checks
//! the path and the operations the object definition allows before it touches anything, and
//! writes are all-or-nothing.
//!
//! - Read: 4.04 for a missing path, 4.05 for a resource that is not readable; object and
//!   instance reads leave unreadable resources out.
//! - Write: 4.05 for a resource that is not writable, 4.04 for an instance or a resource the
//!   definition does not have, 4.00 for values of the wrong type or shape. Replace (PUT) on
//!   an instance removes the optional writable resources the payload leaves out; partial
//!   update (POST) only adds and changes (Core §6.3.3).
//! - Create: 4.04 for an object the client does not support, 4.00 for an instance that
//!   exists or a second instance of a single-instance object.
//! - Delete: instances only; the Server object's instances, mandatory single-instance
//!   objects (Device) and everything above instance level are refused 4.05.
//! - Discover (Core §6.3.2): the object, its instances and their resources with `dim` for
//!   multiple resources and the attributes attached at each level; at resource level the
//!   inherited attributes too.
//! - Write-Attributes (Core §5.1.2, §6.3.4): gt/lt/st only on numeric resources, and
//!   `lt + 2*st < gt`; a bare attribute name unsets it.
//!
//! Writes and Creates that would take the store past its bounds
//! ([`MAX_INSTANCES_PER_OBJECT`], `MAX_RESOURCES_PER_INSTANCE`, `MAX_RESOURCE_INSTANCES`,
//! [`MAX_ATTRIBUTE_PATHS`]) are refused 4.00 and change nothing.
//!
//! The Security object (0) is bootstrap-only (Core Appendix E.1: "MUST NOT be accessible by
//! any other LwM2M Server"); the DM layer refuses it before these run.
use super::config::StoreError;
use super::objects::{
    check_bounds, numeric, overlay, Def, ObjectStore, Stored, MAX_ATTRIBUTE_PATHS,
    MAX_INSTANCES_PER_OBJECT,
};
use crate::attributes::NotificationAttributes;
use crate::content::link::DiscoverEntry;
use crate::content::Record;
use crate::model::{Instance, Node, Path, PathLevel, Resource, ResourceType, Value};
use crate::ops::dm::WriteMode;
use crate::ops::registration::Binding;
use crate::ops::Lwm2mError;
use std::collections::BTreeMap;

fn bad(reason: impl Into<String>) -> Lwm2mError {
    Lwm2mError::BadRequest(reason.into())
}

impl From<StoreError> for Lwm2mError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(_) | StoreError::UnknownResource(_) => Lwm2mError::NotFound,
            StoreError::NotExecutable(_) => Lwm2mError::MethodNotAllowed,
            StoreError::Full => bad("no room for more instances or attributes"),
            other => bad(other.to_string()),
        }
    }
}

impl ObjectStore {
    fn readable(&self, o: u16, r: u16) -> bool {
        match self.def(o, r) {
            Def::Known(d) => d.operations.is_readable(),
            Def::FreeForm => true,
            Def::Unknown => false,
        }
    }

    fn readable_instance(&self, o: u16, inst: &Stored) -> Instance {
        inst.resources
            .iter()
            .filter(|(r, _)| self.readable(o, **r))
            .map(|(r, v)| (*r, v.clone()))
            .collect()
    }

    /// Read (Core §6.3.1) of one path.
    pub(super) fn dm_read(&self, path: &Path) -> Result<Node, Lwm2mError> {
        let Some(o) = path.object_id() else {
            return Err(Lwm2mError::MethodNotAllowed);
        };
        let obj = self.objects.get(&o).ok_or(Lwm2mError::NotFound)?;
        let Some(i) = path.instance_id() else {
            return Ok(Node::Object(
                obj.iter()
                    .map(|(i, s)| (*i, self.readable_instance(o, s)))
                    .collect(),
            ));
        };
        let inst = obj.get(&i).ok_or(Lwm2mError::NotFound)?;
        let Some(r) = path.resource_id() else {
            return Ok(Node::Instance(self.readable_instance(o, inst)));
        };
        match self.def(o, r) {
            Def::Unknown => return Err(Lwm2mError::NotFound),
            Def::Known(d) if !d.operations.is_readable() => {
                return Err(Lwm2mError::MethodNotAllowed)
            }
            _ => {}
        }
        let res = inst.resources.get(&r).ok_or(Lwm2mError::NotFound)?;
        match (path.resource_instance_id(), res) {
            (None, res) => Ok(Node::Resource(res.clone())),
            (Some(ri), Resource::Multiple(m)) => m
                .get(&ri)
                .cloned()
                .map(Node::ResourceInstance)
                .ok_or(Lwm2mError::NotFound),
            (Some(_), Resource::Single(_)) => Err(Lwm2mError::NotFound),
        }
    }

    /// The records of a Read-Composite (Core §6.3.8): the readable values under each path,
    /// the root meaning every object the server may see. Paths that do not exist or cannot
    /// be read are left out; 4.04 when nothing at all is left.
    pub(super) fn dm_read_composite(&self, paths: &[Path]) -> Result<Vec<Record>, Lwm2mError> {
        let mut out = Vec::new();
        let mut found = false;
        for path in paths {
            let nodes: Vec<(Path, Node)> = if path.is_root() {
                self.objects
                    .keys()
                    .filter(|o| **o != 0)
                    .filter_map(|o| {
                        let p = Path::object(*o);
                        self.dm_read(&p).ok().map(|n| (p, n))
                    })
                    .collect()
            } else if path.object_id() == Some(0) {
                Vec::new()
            } else {
                self.dm_read(path)
                    .ok()
                    .map(|n| (*path, n))
                    .into_iter()
                    .collect()
            };
            for (at, node) in nodes {
                found = true;
                let values = node
                    .flatten(&at)
                    .map_err(|e| Lwm2mError::InternalServerError(e.to_string()))?;
                out.extend(values.into_iter().map(|(path, value)| Record {
                    path,
                    value: Some(value),
                    time: None,
                }));
            }
        }
        if found {
            Ok(out)
        } else {
            Err(Lwm2mError::NotFound)
        }
    }

    /// Whether the server may write the resource of `path`.
    fn check_writable(&self, path: &Path) -> Result<(u16, u16), Lwm2mError> {
        let (Some(o), Some(r)) = (path.object_id(), path.resource_id()) else {
            return Err(Lwm2mError::MethodNotAllowed);
        };
        match self.def(o, r) {
            Def::Unknown => Err(Lwm2mError::NotFound),
            Def::Known(d) if !d.operations.is_writable() => Err(Lwm2mError::MethodNotAllowed),
            _ => Ok((o, r)),
        }
    }

    /// Checks that a value the server writes to `path` is allowed, and converts it.
    fn writable_value(&self, path: &Path, value: Value) -> Result<Value, Lwm2mError> {
        let (o, r) = self.check_writable(path)?;
        let value = self.coerce(path, value)?;
        if o == 1 {
            check_server_value(r, &value)?;
        }
        Ok(value)
    }

    fn writable_resource(&self, path: &Path, res: Resource) -> Result<Resource, Lwm2mError> {
        let (o, r) = self.check_writable(path)?;
        let res = self.check_resource(path, res)?;
        if let (1, Resource::Single(v)) = (o, &res) {
            check_server_value(r, v)?;
        }
        Ok(res)
    }

    /// Write (Core §6.3.3). Returns the resources whose value changed.
    pub(super) fn dm_write(
        &mut self,
        path: &Path,
        mode: WriteMode,
        node: Node,
    ) -> Result<Vec<Path>, Lwm2mError> {
        let (Some(o), Some(i)) = (path.object_id(), path.instance_id()) else {
            return Err(Lwm2mError::MethodNotAllowed);
        };
        if self.instance(o, i).is_none() {
            return Err(Lwm2mError::NotFound);
        }
        // Check and convert everything first: a write applies whole or not at all.
        let mut updates: Vec<(u16, Option<Resource>)> = Vec::new();
        let mut instance_updates: Vec<(u16, u16, Value)> = Vec::new();
        match (path.level(), node) {
            (PathLevel::Instance, Node::Instance(values)) => {
                for (r, res) in values {
                    let rp = path.child(r).map_err(|e| bad(e.to_string()))?;
                    updates.push((r, Some(self.writable_resource(&rp, res)?)));
                }
                if mode == WriteMode::Replace {
                    let given: Vec<u16> = updates.iter().map(|(r, _)| *r).collect();
                    let stored = self
                        .instance(o, i)
                        .map(|s| s.resources.keys().copied().collect::<Vec<_>>());
                    for r in stored.unwrap_or_default() {
                        let removable = match self.def(o, r) {
                            Def::Known(d) => d.operations.is_writable() && !d.mandatory,
                            Def::FreeForm => true,
                            Def::Unknown => false,
                        };
                        if removable && !given.contains(&r) {
                            updates.push((r, None));
                        }
                    }
                }
            }
            (PathLevel::Resource, Node::Resource(res)) => {
                let r = path.resource_id().unwrap_or_default();
                let res = self.writable_resource(path, res)?;
                let merged = match (mode, res, self.resource(o, i, r)) {
                    (WriteMode::Update, Resource::Multiple(new), Some(Resource::Multiple(old))) => {
                        let mut m = old.clone();
                        m.extend(new);
                        Resource::Multiple(m)
                    }
                    (_, res, _) => res,
                };
                updates.push((r, Some(merged)));
            }
            (PathLevel::ResourceInstance, Node::ResourceInstance(v)) => {
                let r = path.resource_id().unwrap_or_default();
                let ri = path.resource_instance_id().unwrap_or_default();
                let multiple = match self.def(o, r) {
                    Def::Known(d) => d.multiple,
                    _ => matches!(self.resource(o, i, r), Some(Resource::Multiple(_))),
                };
                if !multiple {
                    return Err(bad(format!("{path}: not a multiple resource")));
                }
                instance_updates.push((r, ri, self.writable_value(path, v)?));
            }
            _ => return Err(Lwm2mError::MethodNotAllowed),
        }
        // Applied to a copy, so that a write that would exceed the bounds changes nothing.
        let mut inst = self.instance(o, i).cloned().ok_or(Lwm2mError::NotFound)?;
        let mut changed = Vec::new();
        for (r, res) in updates {
            let old = match res {
                Some(res) => inst.resources.insert(r, res),
                None => inst.resources.remove(&r),
            };
            if old.as_ref() != inst.resources.get(&r) {
                changed.push(Path::resource(o, i, r));
            }
        }
        for (r, ri, v) in instance_updates {
            if let Resource::Multiple(m) = inst
                .resources
                .entry(r)
                .or_insert_with(|| Resource::Multiple(BTreeMap::new()))
            {
                if m.insert(ri, v.clone()) != Some(v) {
                    changed.push(Path::resource_instance(o, i, r, ri));
                }
            }
        }
        check_bounds(&inst.resources)?;
        if let Some(slot) = self.instance_mut(o, i) {
            *slot = inst;
        }
        Ok(changed)
    }

    fn resource(&self, o: u16, i: u16, r: u16) -> Option<&Resource> {
        self.instance(o, i)?.resources.get(&r)
    }

    /// Write-Composite (Core §6.3.9): partial updates of several resources or resource
    /// instances, and deletions of resource instances (records without value), all or
    /// nothing. Returns the paths whose value changed.
    pub(super) fn dm_write_composite(
        &mut self,
        records: Vec<Record>,
    ) -> Result<Vec<Path>, Lwm2mError> {
        let mut checked = Vec::with_capacity(records.len());
        for rec in records {
            let p = rec.path;
            let (Some(o), Some(i), Some(r)) = (p.object_id(), p.instance_id(), p.resource_id())
            else {
                return Err(bad(format!("{p}: Write-Composite needs resource paths")));
            };
            if o == 0 {
                return Err(Lwm2mError::MethodNotAllowed);
            }
            if self.instance(o, i).is_none() {
                return Err(Lwm2mError::NotFound);
            }
            let value = match (rec.value, p.resource_instance_id()) {
                (Some(v), _) => Some(self.writable_value(&p, v)?),
                (None, Some(_)) => {
                    self.check_writable(&p)?;
                    None
                }
                (None, None) => return Err(bad(format!("{p}: no value"))),
            };
            let multiple = match self.def(o, r) {
                Def::Known(d) => Some(d.multiple),
                _ => None,
            };
            if multiple.is_some_and(|m| m != p.resource_instance_id().is_some()) {
                return Err(bad(format!("{p}: wrong level for the resource")));
            }
            checked.push((p, value));
        }
        // Applied to copies of the instances concerned, committed only within the bounds.
        let mut copies: BTreeMap<(u16, u16), Stored> = BTreeMap::new();
        let mut changed = Vec::new();
        for (p, value) in checked {
            let (Some(o), Some(i), Some(r)) = (p.object_id(), p.instance_id(), p.resource_id())
            else {
                continue;
            };
            let inst = match copies.entry((o, i)) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => {
                    let Some(stored) = self.objects.get(&o).and_then(|obj| obj.get(&i)) else {
                        continue;
                    };
                    e.insert(stored.clone())
                }
            };
            let did = match (p.resource_instance_id(), value) {
                (None, Some(v)) => {
                    let new = Resource::Single(v);
                    inst.resources.insert(r, new.clone()) != Some(new)
                }
                (Some(ri), v) => match inst
                    .resources
                    .entry(r)
                    .or_insert_with(|| Resource::Multiple(BTreeMap::new()))
                {
                    Resource::Multiple(m) => match v {
                        Some(v) => m.insert(ri, v.clone()) != Some(v),
                        None => m.remove(&ri).is_some(),
                    },
                    Resource::Single(_) => false,
                },
                (None, None) => false,
            };
            if did {
                changed.push(p);
            }
        }
        for inst in copies.values() {
            check_bounds(&inst.resources)?;
        }
        for ((o, i), inst) in copies {
            if let Some(slot) = self.instance_mut(o, i) {
                *slot = inst;
            }
        }
        Ok(changed)
    }

    /// Execute (Core §6.3.5): whether the server may execute `path`.
    pub(super) fn dm_check_execute(&self, path: &Path) -> Result<(), Lwm2mError> {
        let (Some(o), Some(i), Some(r), PathLevel::Resource) = (
            path.object_id(),
            path.instance_id(),
            path.resource_id(),
            path.level(),
        ) else {
            return Err(Lwm2mError::MethodNotAllowed);
        };
        let inst = self.instance(o, i).ok_or(Lwm2mError::NotFound)?;
        match self.def(o, r) {
            Def::Unknown => Err(Lwm2mError::NotFound),
            Def::Known(d) if !d.operations.is_executable() => Err(Lwm2mError::MethodNotAllowed),
            Def::FreeForm if !inst.executables.contains(&r) => {
                if inst.resources.contains_key(&r) {
                    Err(Lwm2mError::MethodNotAllowed)
                } else {
                    Err(Lwm2mError::NotFound)
                }
            }
            _ if inst.executables.contains(&r) => Ok(()),
            _ => Err(Lwm2mError::NotFound),
        }
    }

    /// Create (Core §6.3.6). `choose_id` asks the client to pick the instance id (the
    /// request named none). Returns the instances created.
    pub(super) fn dm_create(
        &mut self,
        path: &Path,
        node: Node,
        choose_id: bool,
    ) -> Result<Vec<Path>, Lwm2mError> {
        let (Some(o), PathLevel::Object) = (path.object_id(), path.level()) else {
            return Err(Lwm2mError::MethodNotAllowed);
        };
        if o == 1 {
            return Err(Lwm2mError::MethodNotAllowed);
        }
        let existing = self.objects.get(&o).ok_or(Lwm2mError::NotFound)?;
        let Node::Object(mut instances) = node else {
            return Err(bad("Create needs object instances"));
        };
        if instances.is_empty() {
            instances.insert(0, Instance::new());
        }
        if choose_id {
            let values: Vec<Instance> = instances.into_values().collect();
            instances = BTreeMap::new();
            let mut next = 0u16;
            for v in values {
                while existing.contains_key(&next) || instances.contains_key(&next) {
                    next = next
                        .checked_add(1)
                        .ok_or_else(|| bad("no free instance id"))?;
                }
                instances.insert(next, v);
            }
        }
        let single = self.registry.get(o).is_some_and(|d| !d.multiple);
        if single && existing.len() + instances.len() > 1 {
            return Err(bad(format!("/{o} is single-instance and has its instance")));
        }
        if existing.len() + instances.len() > MAX_INSTANCES_PER_OBJECT {
            return Err(StoreError::Full.into());
        }
        let mut checked = Vec::new();
        for (i, values) in instances {
            let at = Path::instance(o, i);
            if existing.contains_key(&i) {
                return Err(bad(format!("{at} exists already")));
            }
            let mut resources = Instance::new();
            for (r, res) in values {
                let rp = at.child(r).map_err(|e| bad(e.to_string()))?;
                let res = self.check_resource(&rp, res).map_err(|e| match e {
                    StoreError::UnknownResource(p) => bad(format!("{p}: no such resource")),
                    e => e.into(),
                })?;
                resources.insert(r, res);
            }
            checked.push((i, resources));
        }
        let mut created = Vec::new();
        for (i, resources) in checked {
            self.add_instance(o, i, resources)?;
            created.push(Path::instance(o, i));
        }
        Ok(created)
    }

    /// Delete (Core §6.3.7) of an object instance.
    pub(super) fn dm_delete(&mut self, path: &Path) -> Result<(), Lwm2mError> {
        let (Some(o), Some(i), PathLevel::Instance) =
            (path.object_id(), path.instance_id(), path.level())
        else {
            return Err(Lwm2mError::MethodNotAllowed);
        };
        let mandatory_single = self
            .registry
            .get(o)
            .is_some_and(|d| d.mandatory && !d.multiple);
        if o == 0 || o == 1 || mandatory_single {
            return Err(Lwm2mError::MethodNotAllowed);
        }
        self.remove_instance(o, i)?;
        Ok(())
    }

    /// Discover (Core §6.3.2).
    pub(super) fn dm_discover(&self, path: &Path) -> Result<Vec<DiscoverEntry>, Lwm2mError> {
        let Some(o) = path.object_id() else {
            return Err(Lwm2mError::MethodNotAllowed);
        };
        let obj = self.objects.get(&o).ok_or(Lwm2mError::NotFound)?;
        let mut out = Vec::new();
        match (path.instance_id(), path.resource_id(), path.level()) {
            (None, ..) => {
                let mut e = DiscoverEntry::new(*path);
                if let Some(v) = self.registry.get(o).map(|d| d.version.as_str()) {
                    if v != "1.0" && v != "1" {
                        e = e.with_attr("ver", Some(v));
                    }
                }
                out.push(self.with_attributes(e, path));
                for (i, inst) in obj {
                    self.discover_instance(Path::instance(o, *i), inst, &mut out);
                }
            }
            (Some(i), None, _) => {
                let inst = obj.get(&i).ok_or(Lwm2mError::NotFound)?;
                self.discover_instance(*path, inst, &mut out);
            }
            (Some(i), Some(r), PathLevel::Resource) => {
                let inst = obj.get(&i).ok_or(Lwm2mError::NotFound)?;
                if !inst.resources.contains_key(&r) && !inst.executables.contains(&r) {
                    return Err(Lwm2mError::NotFound);
                }
                let mut e = DiscoverEntry::new(*path);
                let mut instances = Vec::new();
                if let Some(Resource::Multiple(m)) = inst.resources.get(&r) {
                    e = e.with_attr("dim", Some(&m.len().to_string()));
                    instances.extend(m.keys().copied());
                }
                let mut inherited = NotificationAttributes::default();
                for at in [Path::object(o), Path::instance(o, i), *path] {
                    if let Some(a) = self.attributes.get(&at) {
                        overlay(&mut inherited, a);
                    }
                }
                e.attributes.extend(inherited.to_link_attributes());
                out.push(e);
                for ri in instances {
                    let p = Path::resource_instance(o, i, r, ri);
                    out.push(self.with_attributes(DiscoverEntry::new(p), &p));
                }
            }
            _ => return Err(bad("Discover on a resource instance")),
        }
        Ok(out)
    }

    fn discover_instance(&self, at: Path, inst: &Stored, out: &mut Vec<DiscoverEntry>) {
        out.push(self.with_attributes(DiscoverEntry::new(at), &at));
        let mut ids: Vec<u16> = inst.resources.keys().copied().collect();
        ids.extend(inst.executables.iter().copied());
        ids.sort_unstable();
        ids.dedup();
        for r in ids {
            let Ok(p) = at.child(r) else { continue };
            let mut e = DiscoverEntry::new(p);
            if let Some(Resource::Multiple(m)) = inst.resources.get(&r) {
                e = e.with_attr("dim", Some(&m.len().to_string()));
            }
            out.push(self.with_attributes(e, &p));
        }
    }

    fn with_attributes(&self, mut e: DiscoverEntry, at: &Path) -> DiscoverEntry {
        if let Some(a) = self.attributes.get(at) {
            e.attributes.extend(a.to_link_attributes());
        }
        e
    }

    /// Write-Attributes (Core §6.3.4): sets `set`, removes the attributes named in `unset`.
    pub(super) fn dm_write_attributes(
        &mut self,
        path: &Path,
        set: &NotificationAttributes,
        unset: &[String],
    ) -> Result<(), Lwm2mError> {
        let Some(o) = path.object_id() else {
            return Err(Lwm2mError::MethodNotAllowed);
        };
        let obj = self.objects.get(&o).ok_or(Lwm2mError::NotFound)?;
        let mut numeric_target = false;
        if let Some(i) = path.instance_id() {
            let inst = obj.get(&i).ok_or(Lwm2mError::NotFound)?;
            if let Some(r) = path.resource_id() {
                let res = inst.resources.get(&r);
                if res.is_none() && !inst.executables.contains(&r) {
                    return Err(Lwm2mError::NotFound);
                }
                numeric_target = match self.def(o, r) {
                    Def::Known(d) => matches!(
                        d.kind,
                        ResourceType::Integer
                            | ResourceType::UnsignedInteger
                            | ResourceType::Float
                            | ResourceType::Time
                    ),
                    _ => match (res, path.resource_instance_id()) {
                        (Some(Resource::Single(v)), None) => numeric(v).is_some(),
                        (Some(Resource::Multiple(m)), Some(ri)) => {
                            m.get(&ri).and_then(numeric).is_some()
                        }
                        _ => false,
                    },
                };
            }
        }
        let mut merged = self.attributes.get(path).cloned().unwrap_or_default();
        for name in unset {
            match name.to_ascii_lowercase().as_str() {
                "pmin" => merged.pmin = None,
                "pmax" => merged.pmax = None,
                "gt" => merged.gt = None,
                "lt" => merged.lt = None,
                "st" => merged.st = None,
                "epmin" => merged.epmin = None,
                "epmax" => merged.epmax = None,
                _ => {}
            }
        }
        overlay(&mut merged, set);
        let thresholds = merged.gt.is_some() || merged.lt.is_some() || merged.st.is_some();
        if thresholds && !numeric_target {
            return Err(bad("gt, lt and st apply to numeric resources only"));
        }
        if merged.st.is_some_and(|st| st < 0.0) {
            return Err(bad("st must not be negative"));
        }
        if let (Some(gt), Some(lt)) = (merged.gt, merged.lt) {
            if lt + 2.0 * merged.st.unwrap_or(0.0) >= gt {
                return Err(bad("lt + 2*st must be below gt"));
            }
        }
        if merged.is_empty() {
            self.attributes.remove(path);
        } else {
            if !self.attributes.contains_key(path) && self.attributes.len() >= MAX_ATTRIBUTE_PATHS {
                return Err(StoreError::Full.into());
            }
            self.attributes.insert(*path, merged);
        }
        Ok(())
    }
}

/// Values of the Server object that the client itself depends on must make sense.
fn check_server_value(resource: u16, value: &Value) -> Result<(), Lwm2mError> {
    match (resource, value) {
        (1, Value::Integer(v)) if *v <= 0 || *v > i64::from(u32::MAX) => {
            Err(bad("the lifetime must be positive"))
        }
        (2 | 3, Value::Integer(v)) if *v < 0 || *v > i64::from(u32::MAX) => {
            Err(bad("periods must not be negative"))
        }
        (7, Value::String(s)) => Binding::parse(s).map(|_| ()),
        _ => Ok(()),
    }
}
