//! The Bootstrap interface's operations on the [`ObjectStore`], as the client performs them
//! for its bootstrap server (OMA LwM2M TS 1.2 Core §6.1.7; Core Appendix E.1, E.2).
//!
//! Unlike the Device Management operations, these ignore the operations a definition allows
//! (the Security object is writable by the bootstrap server only, and a Server instance's
//! Short Server ID is read-only to everyone else), but still type every value by its
//! definition.
//!
//! - Discover (Core §6.1.7.3) of the root or of one object: `</>;lwm2m=1.1`, then each
//!   object as `</o>` when it has no instance (or with `ver` when its version is not 1.0),
//!   and each instance, Security and
//!   Server instances with their `ssid` (not the bootstrap server's own) and Security
//!   instances with their `uri`. A 1.0 client gives none of these attributes.
//! - Read (Core §6.1.7.6): `/1` and `/2` only, whatever the definition says is readable.
//! - Write (Core §6.1.7.1): creates the instance when missing and replaces the resources
//!   written, keeping the others; all or nothing.
//! - Delete (Core §6.1.7.5): never the bootstrap server's Security instance nor the Device
//!   object's instance.
use crate::client::config::StoreError;
use crate::client::objects::{check_bounds, ObjectStore, Stored, MAX_INSTANCES_PER_OBJECT};
use crate::content::link::DiscoverEntry;
use crate::content::negotiate::Lwm2mVersion;
use crate::model::{Instance, Node, Path, PathLevel, Resource, Value};
use crate::ops::bootstrap::{ACCESS_CONTROL, SECURITY, SERVER};
use crate::ops::Lwm2mError;
use std::collections::BTreeMap;

/// The Device object, whose instance Bootstrap-Delete spares.
const DEVICE: u16 = 3;

/// What a Bootstrap-Write gives one instance: whole resources, and single resource
/// instances (`/o/i/r/ri`) as (resource, resource instance, value).
type InstanceWrite = (Instance, Vec<(u16, u16, Value)>);

fn bad(reason: impl Into<String>) -> Lwm2mError {
    Lwm2mError::BadRequest(reason.into())
}

impl ObjectStore {
    /// Whether Bootstrap-Delete must spare instance `i` of `o`.
    fn bs_protected(&self, o: u16, i: u16) -> bool {
        o == DEVICE || (o == SECURITY && self.is_bootstrap_security(i))
    }

    /// Bootstrap-Discover of the root or of one object.
    pub(in crate::client) fn bs_discover(
        &self,
        path: &Path,
        version: Lwm2mVersion,
    ) -> Result<Vec<DiscoverEntry>, Lwm2mError> {
        let attrs = version != Lwm2mVersion::V1_0;
        let mut out = Vec::new();
        if attrs {
            out.push(DiscoverEntry::new(Path::ROOT).with_attr("lwm2m", Some(version.as_str())));
        }
        let objects: Vec<u16> = match path.object_id() {
            None => self.object_ids().collect(),
            Some(o) if self.objects.contains_key(&o) => vec![o],
            Some(_) => return Err(Lwm2mError::NotFound),
        };
        for o in objects {
            let instances: Vec<u16> = self.instance_ids(o).collect();
            let version = self
                .registry
                .get(o)
                .map(|d| d.version.as_str())
                .filter(|v| attrs && *v != "1.0" && *v != "1");
            if version.is_some() || instances.is_empty() {
                let mut e = DiscoverEntry::new(Path::object(o));
                if let Some(v) = version {
                    e = e.with_attr("ver", Some(v));
                }
                out.push(e);
            }
            for i in instances {
                let mut e = DiscoverEntry::new(Path::instance(o, i));
                if attrs {
                    let ssid = match o {
                        SECURITY if !self.is_bootstrap_security(i) => self.security_ssid(i),
                        SERVER => self.server_ssid(i),
                        _ => None,
                    };
                    if let Some(ssid) = ssid {
                        e = e.with_attr("ssid", Some(&ssid.to_string()));
                    }
                    if o == SECURITY {
                        if let Some(Value::String(uri)) = self.value(&Path::resource(o, i, 0)) {
                            e = e.with_attr("uri", Some(uri));
                        }
                    }
                }
                out.push(e);
            }
        }
        Ok(out)
    }

    /// Bootstrap-Read of `/1`, `/2` or one of their instances (the caller checked the path).
    pub(in crate::client) fn bs_read(&self, path: &Path) -> Result<Node, Lwm2mError> {
        if !matches!(path.object_id(), Some(SERVER | ACCESS_CONTROL)) {
            return Err(bad(format!("Bootstrap-Read cannot address {path}")));
        }
        self.get(path).ok_or(Lwm2mError::NotFound)
    }

    /// Bootstrap-Write of `node` at `path`. Returns the instances written.
    pub(in crate::client) fn bs_write(
        &mut self,
        path: &Path,
        node: Node,
    ) -> Result<Vec<Path>, Lwm2mError> {
        let Some(o) = path.object_id() else {
            return Err(bad("Bootstrap-Write needs an object"));
        };
        if !self.objects.contains_key(&o) && !matches!(o, SECURITY | SERVER | ACCESS_CONTROL) {
            return Err(Lwm2mError::NotFound);
        }
        let mut writes: BTreeMap<u16, InstanceWrite> = BTreeMap::new();
        match (path.level(), path.instance_id(), path.resource_id(), node) {
            (PathLevel::Object, _, _, Node::Object(instances)) => {
                for (i, values) in instances {
                    writes.entry(i).or_default().0.extend(values);
                }
            }
            (PathLevel::Instance, Some(i), _, Node::Instance(values)) => {
                writes.entry(i).or_default().0.extend(values);
            }
            (PathLevel::Resource, Some(i), Some(r), Node::Resource(res)) => {
                writes.entry(i).or_default().0.insert(r, res);
            }
            (PathLevel::ResourceInstance, Some(i), Some(r), Node::ResourceInstance(v)) => {
                let ri = path.resource_instance_id().unwrap_or_default();
                writes.entry(i).or_default().1.push((r, ri, v));
            }
            _ => return Err(bad(format!("the payload does not fit {path}"))),
        }
        // Checked and merged into copies first, so that a refused write changes nothing.
        let existing = self.objects.get(&o).map_or(0, BTreeMap::len);
        let mut new_instances = 0;
        let mut merged = Vec::with_capacity(writes.len());
        for (i, (resources, instances)) in writes {
            let at = Path::new(&[o, i]).map_err(|e| bad(e.to_string()))?;
            let mut stored = match self.instance(o, i) {
                Some(s) => s.clone(),
                None => {
                    new_instances += 1;
                    Stored {
                        resources: Instance::new(),
                        executables: self.default_executables(o),
                    }
                }
            };
            for (r, res) in resources {
                let rp = at.child(r).map_err(|e| bad(e.to_string()))?;
                let res = self.check_resource(&rp, res).map_err(refusal)?;
                stored.resources.insert(r, res);
            }
            for (r, ri, v) in instances {
                let rp = Path::new(&[o, i, r, ri]).map_err(|e| bad(e.to_string()))?;
                if self
                    .check_resource(&rp, Resource::Multiple(BTreeMap::new()))
                    .is_err()
                {
                    return Err(bad(format!("{rp}: not a multiple resource")));
                }
                let v = self.coerce(&rp, v).map_err(refusal)?;
                match stored
                    .resources
                    .entry(r)
                    .or_insert_with(|| Resource::Multiple(BTreeMap::new()))
                {
                    Resource::Multiple(m) => {
                        m.insert(ri, v);
                    }
                    Resource::Single(_) => return Err(bad(format!("{rp}: a single resource"))),
                }
            }
            check_bounds(&stored.resources).map_err(refusal)?;
            merged.push((i, stored));
        }
        if existing + new_instances > MAX_INSTANCES_PER_OBJECT {
            return Err(refusal(StoreError::Full));
        }
        let object = self.objects.entry(o).or_default();
        let mut written = Vec::with_capacity(merged.len());
        for (i, stored) in merged {
            object.insert(i, stored);
            written.push(Path::instance(o, i));
        }
        Ok(written)
    }

    /// Bootstrap-Delete of the root, an object or an instance. Returns the instances
    /// deleted. Deleting every instance of an object that has none is no error; naming a
    /// spared instance is 4.00 and a missing one 4.04.
    pub(in crate::client) fn bs_delete(&mut self, path: &Path) -> Result<Vec<Path>, Lwm2mError> {
        let targets: Vec<(u16, u16)> = match (path.object_id(), path.instance_id()) {
            (None, _) => self
                .objects
                .iter()
                .flat_map(|(o, insts)| insts.keys().map(move |i| (*o, *i)))
                .collect(),
            (Some(o), None) => self.instance_ids(o).map(|i| (o, i)).collect(),
            (Some(o), Some(i)) => {
                if self.instance(o, i).is_none() {
                    return Err(Lwm2mError::NotFound);
                }
                if self.bs_protected(o, i) {
                    return Err(bad(format!(
                        "{path} is the bootstrap server account or the device"
                    )));
                }
                vec![(o, i)]
            }
        };
        let mut deleted = Vec::new();
        for (o, i) in targets {
            if !self.bs_protected(o, i) && self.remove_instance(o, i).is_ok() {
                deleted.push(Path::instance(o, i));
            }
        }
        Ok(deleted)
    }

    /// Whether the store holds at least one usable LwM2M server account, which is what
    /// Bootstrap-Finish checks (Core §6.1.7.7).
    pub(in crate::client) fn has_server_account(&self) -> bool {
        !self.server_accounts().is_empty()
    }
}

/// A store refusal as the bootstrap server gets it: 4.00 with the reason (a resource the
/// definition lacks is a bad request here, not a missing target).
fn refusal(e: StoreError) -> Lwm2mError {
    match e {
        StoreError::UnknownResource(p) => bad(format!("{p}: no such resource")),
        StoreError::NotExecutable(p) => bad(format!("{p}: executable, takes no value")),
        e => bad(e.to_string()),
    }
}
