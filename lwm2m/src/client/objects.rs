//! The client's object tree (OMA LwM2M TS 1.2 Core §7.1): objects, instances and resource
//! values, typed by the object definitions of a [`Registry`], plus the notification
//! attributes servers attach to its paths (Core §5.1.2).
//!
//! The application (or the simulator) owns the values: it builds the tree before start and
//! changes it through [`Client`](super::Client), which turns changes into notifications and
//! registration updates. The server reaches the tree through the checked DM operations of
//! `access.rs`. Nothing here is specific to objects 0, 1 and 3 except
//! [`ObjectStore::standard`]: any object the registry defines (Firmware Update, IPSO
//! sensors) or even one it does not (taken as readable and writable) can be added, which is
//! the seam for firmware. The bootstrap server reaches the tree through `bootstrap/store.rs`
//! and the accounts it wrote are read back through `accounts.rs`.
use super::config::StoreError;
use crate::attributes::NotificationAttributes;
use crate::model::{
    Instance, Node, ObjectDef, Path, PathLevel, Registry, Resource, ResourceDef, ResourceType,
    Value,
};
use crate::ops::registration::Binding;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

/// Most instances one object may hold; Create beyond it is refused.
pub const MAX_INSTANCES_PER_OBJECT: usize = 256;
/// Most paths carrying notification attributes; Write-Attributes beyond it is refused.
pub const MAX_ATTRIBUTE_PATHS: usize = 256;
/// Most resources one instance may hold (it matters for objects without definition, whose
/// resource ids are not limited by one).
pub const MAX_RESOURCES_PER_INSTANCE: usize = 256;
/// Most instances one multiple resource may hold; writes beyond it are refused.
pub const MAX_RESOURCE_INSTANCES: usize = 256;

/// One object instance: its values and the executable resources it implements (they carry
/// no value, so the value map cannot say they exist).
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Stored {
    pub(super) resources: Instance,
    pub(super) executables: Vec<u16>,
}

/// The object tree of one client.
///
/// Memory is the values themselves plus one shared `Arc<Registry>`: thousands of simulated
/// devices share one registry.
#[derive(Debug, Clone)]
pub struct ObjectStore {
    /// Definitions: types, multiplicity, operations. Shared between stores.
    pub(super) registry: Arc<Registry>,
    /// Objects by id; an object with no instances is supported but empty (`</o>`).
    pub(super) objects: BTreeMap<u16, BTreeMap<u16, Stored>>,
    /// Notification attributes by path, as Write-Attributes set them (one server, so no
    /// per-server split).
    pub(super) attributes: BTreeMap<Path, NotificationAttributes>,
}

/// The bundled registry, built once per process and shared by every standard store.
pub fn bundled_registry() -> Arc<Registry> {
    static BUNDLED: OnceLock<Arc<Registry>> = OnceLock::new();
    BUNDLED
        .get_or_init(|| Arc::new(Registry::bundled()))
        .clone()
}

/// What the store knows of a resource's definition.
#[derive(Debug, Clone, Copy)]
pub(super) enum Def<'a> {
    /// The object and the resource are defined.
    Known(&'a ResourceDef),
    /// The object has no definition: the resource is free-form (readable and writable).
    FreeForm,
    /// The object is defined and has no such resource.
    Unknown,
}

impl ObjectStore {
    /// An empty store typed by `registry`.
    pub fn new(registry: Arc<Registry>) -> Self {
        Self {
            registry,
            objects: BTreeMap::new(),
            attributes: BTreeMap::new(),
        }
    }

    /// A device with objects 0 (NoSec security for `coap://localhost:5683`), 1 (server 1,
    /// 300 s, UDP) and 3 (Device) filled with realistic values derived from the endpoint
    /// name. See [`standard_with_server`](Self::standard_with_server).
    pub fn standard(endpoint_name: &str) -> Self {
        Self::standard_with_server(endpoint_name, "coap://localhost:5683")
    }

    /// Like [`standard`](Self::standard), for the server at `server_uri`.
    pub fn standard_with_server(endpoint_name: &str, server_uri: &str) -> Self {
        let mut s = Self::new(bundled_registry());
        let str_ = |v: &str| Resource::Single(Value::String(v.to_owned()));
        let int = |v: i64| Resource::Single(Value::Integer(v));
        let security = Instance::from([
            (0, str_(server_uri)),
            (1, Resource::Single(Value::Boolean(false))),
            (2, int(3)), // NoSec
            (3, Resource::Single(Value::Opaque(Vec::new()))),
            (4, Resource::Single(Value::Opaque(Vec::new()))),
            (5, Resource::Single(Value::Opaque(Vec::new()))),
            (10, int(1)),
        ]);
        let server = Instance::from([
            (0, int(1)),
            (1, int(300)),
            (6, Resource::Single(Value::Boolean(true))),
            (7, str_("U")),
        ]);
        // A serial number that differs per device and stays the same across runs.
        let hash = endpoint_name
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            });
        let device = Instance::from([
            (0, str_("Acme Sensors")),
            (1, str_("NB-Sense 200")),
            (2, str_(&format!("AS{:010}", hash % 10_000_000_000))),
            (3, str_("1.4.2")),
            (9, int(87)),
            (10, int(412)),
            (
                11,
                Resource::Multiple(BTreeMap::from([(0, Value::Integer(0))])),
            ),
            (13, Resource::Single(Value::Time(1_700_000_000))),
            (14, str_("+00:00")),
            (16, str_("UQ")),
        ]);
        // The bundled definitions cover every value above; a failure would be a bug in this
        // table, caught by the tests, and would leave the object out rather than panic.
        let _ = s.add_instance(0, 0, security);
        let _ = s.add_instance(1, 0, server);
        let _ = s.add_instance(3, 0, device);
        let _ = s.add_executable(Path::resource(3, 0, 5));
        s
    }

    /// The object definitions.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The definition of object `object`, if the registry has one.
    pub fn object_def(&self, object: u16) -> Option<&ObjectDef> {
        self.registry.get(object)
    }

    pub(super) fn def(&self, object: u16, resource: u16) -> Def<'_> {
        match self.registry.get(object) {
            None => Def::FreeForm,
            Some(o) => o.resource(resource).map_or(Def::Unknown, Def::Known),
        }
    }

    /// Declares object `object` supported, with no instances yet (registered as `</o>`,
    /// and a server may Create instances of it).
    pub fn add_object(&mut self, object: u16) {
        self.objects.entry(object).or_default();
    }

    /// Adds instance `instance` of `object` with `values`, checked against the object's
    /// definition (types are converted where no information is lost). Mandatory executable
    /// resources of the definition are implemented at once; add optional ones with
    /// [`add_executable`](Self::add_executable).
    pub fn add_instance(
        &mut self,
        object: u16,
        instance: u16,
        values: Instance,
    ) -> Result<(), StoreError> {
        let at = Path::new(&[object, instance]).map_err(|_| StoreError::Shape(Path::ROOT))?;
        if self.instance(object, instance).is_some() {
            return Err(StoreError::Exists(at));
        }
        if self.objects.get(&object).map_or(0, BTreeMap::len) >= MAX_INSTANCES_PER_OBJECT {
            return Err(StoreError::Full);
        }
        let mut resources = Instance::new();
        for (r, res) in values {
            let path = at.child(r).map_err(|_| StoreError::UnknownResource(at))?;
            resources.insert(r, self.check_resource(&path, res)?);
        }
        check_bounds(&resources)?;
        let executables = self.default_executables(object);
        self.objects.entry(object).or_default().insert(
            instance,
            Stored {
                resources,
                executables,
            },
        );
        Ok(())
    }

    /// The executable resources a new instance of `object` implements: the mandatory ones of
    /// its definition, and on a Server instance the Bootstrap-Request Trigger (`/1/x/9`,
    /// Core E.2), since this client can be bootstrapped again.
    pub(super) fn default_executables(&self, object: u16) -> Vec<u16> {
        let Some(def) = self.registry.get(object) else {
            return Vec::new();
        };
        def.resources
            .values()
            .filter(|r| r.operations.is_executable() && (r.mandatory || (object == 1 && r.id == 9)))
            .map(|r| r.id)
            .collect()
    }

    /// Marks the executable resource at `path` (`/o/i/r`) implemented.
    pub fn add_executable(&mut self, path: Path) -> Result<(), StoreError> {
        let (Some(o), Some(i), Some(r), PathLevel::Resource) = (
            path.object_id(),
            path.instance_id(),
            path.resource_id(),
            path.level(),
        ) else {
            return Err(StoreError::Shape(path));
        };
        match self.def(o, r) {
            Def::Known(d) if !d.operations.is_executable() => {
                return Err(StoreError::NotExecutable(path))
            }
            Def::Unknown => return Err(StoreError::UnknownResource(path)),
            _ => {}
        }
        let inst = self.instance_mut(o, i).ok_or(StoreError::NotFound(path))?;
        if !inst.executables.contains(&r) {
            inst.executables.push(r);
        }
        Ok(())
    }

    /// Removes an instance, and the attributes attached at and below it. Returns its values.
    pub fn remove_instance(&mut self, object: u16, instance: u16) -> Result<Instance, StoreError> {
        let at = Path::instance(object, instance);
        let removed = self
            .objects
            .get_mut(&object)
            .and_then(|o| o.remove(&instance))
            .ok_or(StoreError::NotFound(at))?;
        self.attributes.retain(|p, _| !p.starts_with(&at));
        Ok(removed.resources)
    }

    /// The node at `path` as stored, whatever the operations allow (the application's
    /// view; the server's goes through the operation checks). `None` for the root and for
    /// paths that do not exist.
    pub fn get(&self, path: &Path) -> Option<Node> {
        let o = path.object_id()?;
        let obj = self.objects.get(&o)?;
        let Some(i) = path.instance_id() else {
            return Some(Node::Object(
                obj.iter().map(|(i, s)| (*i, s.resources.clone())).collect(),
            ));
        };
        let inst = &obj.get(&i)?.resources;
        let Some(r) = path.resource_id() else {
            return Some(Node::Instance(inst.clone()));
        };
        let res = inst.get(&r)?;
        match (path.resource_instance_id(), res) {
            (None, res) => Some(Node::Resource(res.clone())),
            (Some(ri), Resource::Multiple(m)) => m.get(&ri).cloned().map(Node::ResourceInstance),
            (Some(_), Resource::Single(_)) => None,
        }
    }

    /// The value of a single resource or resource instance.
    pub fn value(&self, path: &Path) -> Option<&Value> {
        let inst = self.instance(path.object_id()?, path.instance_id()?)?;
        match (
            inst.resources.get(&path.resource_id()?)?,
            path.resource_instance_id(),
        ) {
            (Resource::Single(v), None) => Some(v),
            (Resource::Multiple(m), Some(ri)) => m.get(&ri),
            _ => None,
        }
    }

    /// Sets a single resource (`/o/i/r`) or a resource instance (`/o/i/r/ri`) of an existing
    /// instance; the resource is added when the definition has it and the instance does not
    /// yet. Returns whether the value changed. Notifications are the
    /// [`Client`](super::Client)'s job: use [`Client::set_value`](super::Client::set_value)
    /// once the client runs.
    pub fn set_value(&mut self, path: &Path, value: Value) -> Result<bool, StoreError> {
        let (Some(o), Some(i), Some(r)) =
            (path.object_id(), path.instance_id(), path.resource_id())
        else {
            return Err(StoreError::Shape(*path));
        };
        let multiple = match self.def(o, r) {
            Def::Known(d) if d.operations.is_executable() => {
                return Err(StoreError::NotExecutable(*path))
            }
            Def::Known(d) => Some(d.multiple),
            Def::Unknown => return Err(StoreError::UnknownResource(*path)),
            Def::FreeForm => None,
        };
        let value = self.coerce(path, value)?;
        let inst = self.instance_mut(o, i).ok_or(StoreError::NotFound(*path))?;
        let grows_instance = !inst.resources.contains_key(&r);
        let grows_resource = match (inst.resources.get(&r), path.resource_instance_id()) {
            (Some(Resource::Multiple(m)), Some(ri)) => {
                !m.contains_key(&ri) && m.len() >= MAX_RESOURCE_INSTANCES
            }
            _ => false,
        };
        if (grows_instance && inst.resources.len() >= MAX_RESOURCES_PER_INSTANCE) || grows_resource
        {
            return Err(StoreError::Full);
        }
        match path.resource_instance_id() {
            None => {
                if multiple == Some(true)
                    || matches!(inst.resources.get(&r), Some(Resource::Multiple(_)))
                {
                    return Err(StoreError::Shape(*path));
                }
                let new = Resource::Single(value);
                Ok(inst.resources.insert(r, new.clone()) != Some(new))
            }
            Some(ri) => {
                if multiple == Some(false) {
                    return Err(StoreError::Shape(*path));
                }
                match inst
                    .resources
                    .entry(r)
                    .or_insert_with(|| Resource::Multiple(BTreeMap::new()))
                {
                    Resource::Multiple(m) => Ok(m.insert(ri, value.clone()) != Some(value)),
                    Resource::Single(_) => Err(StoreError::Shape(*path)),
                }
            }
        }
    }

    /// The ids of the objects held, in order.
    pub fn object_ids(&self) -> impl Iterator<Item = u16> + '_ {
        self.objects.keys().copied()
    }

    /// The instance ids of `object`, in order.
    pub fn instance_ids(&self, object: u16) -> impl Iterator<Item = u16> + '_ {
        self.objects
            .get(&object)
            .into_iter()
            .flat_map(|o| o.keys().copied())
    }

    /// The attributes Write-Attributes attached exactly at `path`.
    pub fn attributes(&self, path: &Path) -> Option<&NotificationAttributes> {
        self.attributes.get(path)
    }

    /// The attributes that apply at `path` (Core §5.1.2): those attached at the object, the
    /// instance, the resource and the resource instance, the most specific winning for each
    /// attribute; pmin and pmax fall back to the Server object's Default Minimum and Maximum
    /// Period (`/1/x/2`, `/1/x/3`) of server `ssid`.
    pub fn effective_attributes(&self, path: &Path, ssid: u16) -> NotificationAttributes {
        let mut out = NotificationAttributes::default();
        if let Some(server) = self.server_instance(ssid) {
            let period = |r| match self.value(&Path::resource(1, server, r)) {
                Some(Value::Integer(v)) => u32::try_from(*v).ok(),
                _ => None,
            };
            out.pmin = period(2);
            out.pmax = period(3);
        }
        let mut at = Path::ROOT;
        for id in path.ids() {
            let Ok(next) = at.child(*id) else { break };
            at = next;
            if let Some(a) = self.attributes.get(&at) {
                overlay(&mut out, a);
            }
        }
        out
    }

    /// The instance id of the Server object instance with Short Server ID `ssid`.
    pub fn server_instance(&self, ssid: u16) -> Option<u16> {
        self.instance_ids(1).find(|i| {
            self.value(&Path::resource(1, *i, 0)) == Some(&Value::Integer(i64::from(ssid)))
        })
    }

    /// The lifetime (`/1/x/1`) of server `ssid`, if set and positive.
    pub fn lifetime(&self, ssid: u16) -> Option<u32> {
        let i = self.server_instance(ssid)?;
        match self.value(&Path::resource(1, i, 1))? {
            Value::Integer(v) => u32::try_from(*v).ok().filter(|v| *v > 0),
            _ => None,
        }
    }

    /// The binding (`/1/x/7`) of server `ssid`, if set and valid.
    pub fn binding(&self, ssid: u16) -> Option<Binding> {
        let i = self.server_instance(ssid)?;
        match self.value(&Path::resource(1, i, 7))? {
            Value::String(s) => Binding::parse(s).ok().map(|(b, _)| b),
            _ => None,
        }
    }

    /// A boolean resource of server `ssid`'s Server object instance.
    pub(super) fn server_flag(&self, ssid: u16, resource: u16) -> Option<bool> {
        let i = self.server_instance(ssid)?;
        match self.value(&Path::resource(1, i, resource))? {
            Value::Boolean(b) => Some(*b),
            Value::Integer(v) => Some(*v != 0),
            _ => None,
        }
    }

    /// The object links of Register and Update (Core §6.2.1): every object but Security,
    /// `</o>;ver=x.y` when its version is not 1.0, then its instances (or `</o>` alone when
    /// it has none).
    pub fn object_links(&self) -> Vec<(Path, Option<String>)> {
        let mut out = Vec::new();
        for (o, instances) in &self.objects {
            if *o == 0 {
                continue;
            }
            let version = self
                .registry
                .get(*o)
                .map(|d| d.version.clone())
                .filter(|v| v != "1.0" && v != "1");
            if version.is_some() || instances.is_empty() {
                out.push((Path::object(*o), version));
            }
            for i in instances.keys() {
                out.push((Path::instance(*o, *i), None));
            }
        }
        out
    }

    pub(super) fn instance(&self, object: u16, instance: u16) -> Option<&Stored> {
        self.objects.get(&object)?.get(&instance)
    }

    pub(super) fn instance_mut(&mut self, object: u16, instance: u16) -> Option<&mut Stored> {
        self.objects.get_mut(&object)?.get_mut(&instance)
    }

    /// Converts `value` to the type the definition declares for `path`'s resource.
    pub(super) fn coerce(&self, path: &Path, value: Value) -> Result<Value, StoreError> {
        let (Some(o), Some(r)) = (path.object_id(), path.resource_id()) else {
            return Err(StoreError::Shape(*path));
        };
        match self.def(o, r) {
            Def::Known(d) if d.kind == ResourceType::None => Err(StoreError::NotExecutable(*path)),
            Def::Known(d) => value.coerce(d.kind).map_err(|source| StoreError::Type {
                path: *path,
                source,
            }),
            Def::Unknown => Err(StoreError::UnknownResource(*path)),
            Def::FreeForm => Ok(value),
        }
    }

    /// Checks a whole resource against its definition and converts its values.
    pub(super) fn check_resource(
        &self,
        path: &Path,
        res: Resource,
    ) -> Result<Resource, StoreError> {
        let (Some(o), Some(r)) = (path.object_id(), path.resource_id()) else {
            return Err(StoreError::Shape(*path));
        };
        let multiple = match self.def(o, r) {
            Def::Known(d) => Some(d.multiple),
            Def::Unknown => return Err(StoreError::UnknownResource(*path)),
            Def::FreeForm => None,
        };
        match res {
            Resource::Single(v) if multiple != Some(true) => {
                Ok(Resource::Single(self.coerce(path, v)?))
            }
            Resource::Multiple(m) if multiple != Some(false) => {
                let mut out = BTreeMap::new();
                for (ri, v) in m {
                    out.insert(ri, self.coerce(path, v)?);
                }
                Ok(Resource::Multiple(out))
            }
            _ => Err(StoreError::Shape(*path)),
        }
    }
}

/// Whether an instance's resources stay within [`MAX_RESOURCES_PER_INSTANCE`] and
/// [`MAX_RESOURCE_INSTANCES`].
pub(super) fn check_bounds(resources: &Instance) -> Result<(), StoreError> {
    let too_many_instances = resources
        .values()
        .any(|r| matches!(r, Resource::Multiple(m) if m.len() > MAX_RESOURCE_INSTANCES));
    if resources.len() > MAX_RESOURCES_PER_INSTANCE || too_many_instances {
        return Err(StoreError::Full);
    }
    Ok(())
}

/// Copies the attributes set in `top` over `base`.
pub(super) fn overlay(base: &mut NotificationAttributes, top: &NotificationAttributes) {
    let NotificationAttributes {
        pmin,
        pmax,
        gt,
        lt,
        st,
        epmin,
        epmax,
    } = *top;
    base.pmin = pmin.or(base.pmin);
    base.pmax = pmax.or(base.pmax);
    base.gt = gt.or(base.gt);
    base.lt = lt.or(base.lt);
    base.st = st.or(base.st);
    base.epmin = epmin.or(base.epmin);
    base.epmax = epmax.or(base.epmax);
}

/// A value as a number, for the gt/lt/st attributes.
pub(super) fn numeric(v: &Value) -> Option<f64> {
    match v {
        Value::Integer(i) | Value::Time(i) => Some(*i as f64),
        Value::UnsignedInteger(u) => Some(*u as f64),
        Value::Float(f) => Some(*f),
        _ => None,
    }
}
