//! Device shadows (the device twin of intermittently connected devices): what the
//! backend wants a device's resources to be (`desired`), what the device last said they are
//! (`reported`), and the difference (`delta`).
//!
//! Desired values arrive on `{prefix}/{ep}/shadow/desired` as `{"state": {"/3/0/14":
//! "+02:00", ...}}` (or the map alone); `null` removes a path. Each differing path becomes a
//! Write command through the normal command path, so queue mode applies: for a sleeping
//! device it waits until the device wakes, and a failed one is tried again when the device
//! next registers, updates or wakes. Reported values come from notifications, Send and read
//! results, and from successful shadow writes. `shadow/reported` and `shadow/delta` are
//! published whenever they change; the delta is `{}` once the device has converged.
//!
//! Values are kept as the typed JSON of the uplink envelope, so a desired `21.5` and a
//! reported Float 21.5 compare equal whatever form the backend used.
use super::envelope;
use crate::core::types::{Command, CommandId};
use lwm2m::model::{Node, Path, Registry, Resource, Value};
use lwm2m::ops::dm::{DownlinkRequest, WriteMode};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};

/// Shadows kept at most: anyone who may publish on `shadow/desired` could otherwise make one
/// per made-up endpoint name.
pub const MAX_SHADOWS: usize = 1_000_000;
/// Desired paths per shadow at most.
pub const MAX_DESIRED: usize = 256;
/// Reported paths kept per shadow: a device that Sends ever new paths must not grow its
/// shadow without end; values of paths already kept still update past it.
pub const MAX_REPORTED: usize = 1024;

/// One device's shadow.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Doc {
    /// Path to wanted value.
    pub desired: BTreeMap<String, serde_json::Value>,
    /// Path to last known value.
    pub reported: BTreeMap<String, serde_json::Value>,
}

impl Doc {
    /// The desired values the device does not have yet.
    pub fn delta(&self) -> BTreeMap<String, serde_json::Value> {
        self.desired
            .iter()
            .filter(|(p, v)| self.reported.get(*p) != Some(*v))
            .map(|(p, v)| (p.clone(), v.clone()))
            .collect()
    }
}

/// What a shadow change asks of the bridge.
#[derive(Debug, Default)]
pub struct Effects {
    /// Writes to submit (path, command).
    pub writes: Vec<(String, Command)>,
    /// Publish `shadow/reported` with this state.
    pub reported: Option<BTreeMap<String, serde_json::Value>>,
    /// Publish `shadow/delta` with this state.
    pub delta: Option<BTreeMap<String, serde_json::Value>>,
    /// The shadow changed and must be stored.
    pub changed: bool,
}

/// Every device's shadow, and the writes in flight for them.
#[derive(Debug, Default)]
pub struct Shadows {
    docs: HashMap<String, Doc>,
    /// Shadow writes sent and awaiting their result.
    writes: HashMap<CommandId, (String, String, serde_json::Value)>,
    /// (endpoint, path) with a write in flight, so a wake does not write twice.
    writing: HashSet<(String, String)>,
}

impl Shadows {
    /// Loads a stored shadow.
    pub fn insert(&mut self, endpoint: String, doc: Doc) {
        self.docs.insert(endpoint, doc);
    }

    /// Loads a shadow read back from the store if it is one [`desired`](Self::desired) and
    /// the reports could have made: within [`MAX_SHADOWS`] and [`MAX_DESIRED`], every path a
    /// resource path. `Err` says what is wrong; the shadow is then not loaded.
    pub fn restore(&mut self, endpoint: &str, doc: Doc) -> Result<(), String> {
        if self.docs.len() >= MAX_SHADOWS {
            return Err(format!("shadows are at the limit of {MAX_SHADOWS}"));
        }
        if doc.desired.len() > MAX_DESIRED {
            return Err(format!(
                "{} desired paths: must be 0..={MAX_DESIRED}",
                doc.desired.len()
            ));
        }
        for p in doc.desired.keys().chain(doc.reported.keys()) {
            let path = Path::parse(p).map_err(|e| format!("path {p:?}: {e}"))?;
            if path.resource_id().is_none() {
                return Err(format!("path {p:?} is not a resource path"));
            }
        }
        self.docs.insert(endpoint.to_string(), doc);
        Ok(())
    }

    /// A device's shadow.
    pub fn get(&self, endpoint: &str) -> Option<&Doc> {
        self.docs.get(endpoint)
    }

    /// New desired state for `endpoint` from a `shadow/desired` payload.
    pub fn desired(
        &mut self,
        endpoint: &str,
        payload: &[u8],
        schema: &Registry,
    ) -> Result<Effects, String> {
        let json: serde_json::Value =
            serde_json::from_slice(payload).map_err(|e| format!("not JSON: {e}"))?;
        let map = match json.get("state").unwrap_or(&json) {
            serde_json::Value::Object(m) => m.clone(),
            _ => return Err("desired state must be an object of path: value".into()),
        };
        let mut updates = Vec::new();
        for (p, v) in map {
            let path = Path::parse(&p).map_err(|e| format!("{p}: {e}"))?;
            if path.resource_id().is_none() {
                return Err(format!(
                    "{p}: a shadow holds resources (/o/i/r or /o/i/r/ri)"
                ));
            }
            if v.is_null() {
                updates.push((path.to_string(), None));
                continue;
            }
            let kind = schema.resource(&path).map(|r| r.kind);
            let value =
                envelope::value_from_json(None, &v, kind).map_err(|e| format!("{p}: {e}"))?;
            updates.push((path.to_string(), Some(envelope::value_to_json(&value).1)));
        }
        if !self.docs.contains_key(endpoint) && self.docs.len() >= MAX_SHADOWS {
            return Err(format!("too many shadows (at most {MAX_SHADOWS})"));
        }
        let doc = self.docs.entry(endpoint.to_string()).or_default();
        let added = updates
            .iter()
            .filter(|(p, v)| v.is_some() && !doc.desired.contains_key(p))
            .count();
        if doc.desired.len() + added > MAX_DESIRED {
            return Err(format!("too many desired paths (at most {MAX_DESIRED})"));
        }
        for (p, v) in updates {
            match v {
                Some(v) => doc.desired.insert(p, v),
                None => doc.desired.remove(&p),
            };
        }
        let mut fx = Effects {
            changed: true,
            delta: Some(doc.delta()),
            ..Effects::default()
        };
        self.write_delta(endpoint, schema, &mut fx);
        Ok(fx)
    }

    /// The device is reachable (registered, updated, awake): write what it still lacks.
    pub fn wake(&mut self, endpoint: &str, schema: &Registry) -> Effects {
        let mut fx = Effects::default();
        self.write_delta(endpoint, schema, &mut fx);
        fx
    }

    fn write_delta(&mut self, endpoint: &str, schema: &Registry, fx: &mut Effects) {
        let Some(doc) = self.docs.get(endpoint) else {
            return;
        };
        for (p, v) in doc.delta() {
            let key = (endpoint.to_string(), p.clone());
            if self.writing.contains(&key) {
                continue;
            }
            let Ok(path) = Path::parse(&p) else { continue };
            let kind = schema.resource(&path).map(|r| r.kind);
            let Ok(value) = envelope::value_from_json(None, &v, kind) else {
                continue;
            };
            let node = match path.resource_instance_id() {
                Some(_) => Node::ResourceInstance(value),
                None => Node::Resource(Resource::Single(value)),
            };
            let cmd = Command::new(
                endpoint,
                DownlinkRequest::Write {
                    path,
                    mode: WriteMode::Replace,
                    node,
                },
            );
            self.writing.insert(key);
            fx.writes.push((p, cmd));
        }
    }

    /// Remembers that `id` writes `path` of `endpoint` for the shadow.
    pub fn track(&mut self, id: CommandId, endpoint: &str, path: String) {
        let value = self
            .docs
            .get(endpoint)
            .and_then(|d| d.desired.get(&path))
            .cloned()
            .unwrap_or(serde_json::Value::Null);
        self.writes.insert(id, (endpoint.to_string(), path, value));
    }

    /// A command ended; if it was a shadow write, the device now has (or lacks) the value.
    /// Returns the endpoint and effects if it was one.
    pub fn write_result(&mut self, id: CommandId, ok: bool) -> Option<(String, Effects)> {
        let (endpoint, path, value) = self.writes.remove(&id)?;
        self.writing.remove(&(endpoint.clone(), path.clone()));
        let mut fx = Effects::default();
        if ok {
            fx = self.report(&endpoint, vec![(path, value)]);
        }
        Some((endpoint, fx))
    }

    /// Values the device reported (notification, Send, read).
    pub fn reported(&mut self, endpoint: &str, values: Vec<(Path, Value)>) -> Effects {
        let values = values
            .into_iter()
            .map(|(p, v)| (p.to_string(), envelope::value_to_json(&v).1))
            .collect();
        self.report(endpoint, values)
    }

    fn report(&mut self, endpoint: &str, values: Vec<(String, serde_json::Value)>) -> Effects {
        let mut fx = Effects::default();
        // Only devices someone keeps a shadow for: the backend opts in by setting desired
        // state, so a fleet's telemetry does not fill the store with shadows nobody reads.
        let Some(doc) = self.docs.get_mut(endpoint) else {
            return fx;
        };
        let before = doc.delta();
        for (p, v) in values {
            let known = doc.reported.contains_key(&p);
            if !known && doc.reported.len() >= MAX_REPORTED {
                tracing::debug!(endpoint, path = %p, "shadow full: reported path not kept");
                continue;
            }
            if doc.reported.get(&p) != Some(&v) {
                doc.reported.insert(p, v);
                fx.changed = true;
            }
        }
        if fx.changed {
            fx.reported = Some(doc.reported.clone());
            let after = doc.delta();
            if after != before {
                fx.delta = Some(after);
            }
        }
        fx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Registry {
        Registry::bundled()
    }

    #[test]
    fn desired_state_becomes_writes_and_the_delta_shrinks_to_nothing() {
        let s = schema();
        let mut sh = Shadows::default();
        let fx = sh
            .desired(
                "dev",
                br#"{"state": {"/3/0/14": "+02:00", "/3/0/15": "Europe/Paris"}}"#,
                &s,
            )
            .unwrap();
        assert_eq!(fx.writes.len(), 2);
        assert_eq!(fx.delta.as_ref().map(BTreeMap::len), Some(2));
        // A wake while the writes are in flight writes nothing twice.
        assert!(sh.wake("dev", &s).writes.is_empty());
        for (i, (path, _)) in fx.writes.iter().enumerate() {
            sh.track(CommandId(i as u64), "dev", path.clone());
        }
        let (_, fx) = sh.write_result(CommandId(0), true).unwrap();
        assert_eq!(fx.delta.as_ref().map(BTreeMap::len), Some(1));
        // A failed write stays in the delta and is written again at the next wake.
        let (_, fx) = sh.write_result(CommandId(1), false).unwrap();
        assert!(fx.delta.is_none());
        let again = sh.wake("dev", &s);
        assert_eq!(again.writes.len(), 1);
        sh.track(CommandId(2), "dev", again.writes[0].0.clone());
        let (_, fx) = sh.write_result(CommandId(2), true).unwrap();
        assert_eq!(
            fx.delta,
            Some(BTreeMap::new()),
            "converged: the delta is empty"
        );
        assert_eq!(sh.get("dev").unwrap().reported.len(), 2);
    }

    #[test]
    fn reported_values_count_whatever_form_the_backend_used() {
        let s = schema();
        let mut sh = Shadows::default();
        // /3303/0/5700 is a Float in the object model.
        let fx = sh.desired("t", br#"{"/3303/0/5700": 21}"#, &s).unwrap();
        assert_eq!(fx.writes.len(), 1);
        let fx = sh.reported(
            "t",
            vec![(Path::resource(3303, 0, 5700), Value::Float(21.0))],
        );
        assert_eq!(fx.delta, Some(BTreeMap::new()));
        // null removes a desired path.
        let fx = sh.desired("t", br#"{"/3303/0/5700": null}"#, &s).unwrap();
        assert!(fx.writes.is_empty() && sh.get("t").unwrap().desired.is_empty());
    }

    #[test]
    fn bad_desired_state_is_refused() {
        let s = schema();
        let mut sh = Shadows::default();
        assert!(sh.desired("d", b"not json", &s).is_err());
        assert!(sh.desired("d", b"[1,2]", &s).is_err());
        assert!(sh.desired("d", br#"{"/3/0": 1}"#, &s).is_err());
        assert!(sh.desired("d", br#"{"/x/y": 1}"#, &s).is_err());
        let many: serde_json::Map<String, serde_json::Value> = (0..=MAX_DESIRED)
            .map(|i| (format!("/3/0/{}", 1000 + i), serde_json::json!(1)))
            .collect();
        let too_many = serde_json::to_vec(&many).unwrap();
        assert!(sh
            .desired("d", &too_many, &s)
            .unwrap_err()
            .contains("too many"));
    }

    #[test]
    fn devices_without_a_shadow_keep_none() {
        let mut sh = Shadows::default();
        let fx = sh.reported("x", vec![(Path::resource(3, 0, 9), Value::Integer(80))]);
        assert!(!fx.changed && sh.get("x").is_none());
    }

    #[test]
    fn reported_paths_are_bounded_per_shadow() {
        let schema = Registry::bundled();
        let mut sh = Shadows::default();
        sh.desired("dev", br#"{"/3/0/14": "+01:00"}"#, &schema)
            .unwrap();
        let many = (0..MAX_REPORTED as u16 + 10)
            .map(|i| (Path::resource(3303, i, 5700), Value::Float(1.0)))
            .collect();
        sh.reported("dev", many);
        assert_eq!(sh.get("dev").unwrap().reported.len(), MAX_REPORTED);
        // A kept path still updates.
        let fx = sh.reported(
            "dev",
            vec![(Path::resource(3303, 0, 5700), Value::Float(2.0))],
        );
        assert!(fx.changed);
    }
}
