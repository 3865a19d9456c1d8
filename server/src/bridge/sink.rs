//! The bridge's part on the server task (DESIGN.md principle 2): device events in, MQTT
//! messages into the durable outbox; downlink commands in, typed `Command`s into the one
//! command path; each command's one result back out on `up/resp` with the caller's `reqID`.
//!
//! Runs synchronously in the server task's flush, so no event can be missed (the broadcast
//! channel other sinks use may lag) and the outbox write is ordered with the event itself.
//! What must survive a restart — requests awaiting their result, the `reqID` of each
//! observation, shadows — is kept in the store's bridge table.
use super::envelope::{self, Action};
use super::link::{Downlink, DownlinkKind};
use super::outbox::{Outbox, Shared};
use super::shadow::{self, Shadows};
use crate::core::types::{Command, CommandId, DeviceEvent, ObservationId};
use crate::store::{Store, StoreError, Table};
use lwm2m::model::{Path, Registry};
use lwm2m::ops::dm::DmResponse;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

/// The command path, as the bridge uses it.
pub trait CommandPath {
    /// Submits a command; its result comes back as a `CommandResult` event.
    fn submit(&mut self, command: Command) -> CommandId;
    /// Cancels the observation of `path` on `endpoint`; the result comes back likewise.
    fn cancel_observation(&mut self, endpoint: &str, path: Path) -> CommandId;
}

/// An observation started from MQTT: whose, on what, and the `reqID` its notifications carry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Observed {
    endpoint: String,
    path: Option<String>,
    req_id: serde_json::Value,
}

/// A command from MQTT awaiting its result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Pending {
    req_id: serde_json::Value,
    msg_type: String,
    path: Option<String>,
}

const PENDING: &[u8] = b"req/";
const OBSERVATION: &[u8] = b"obs/";
const SHADOW: &[u8] = b"shadow/";

fn key(prefix: &[u8], id: &[u8]) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(id);
    k
}

/// The bridge state on the server task.
pub struct Bridge {
    outbox: Outbox,
    store: Store,
    prefix: String,
    schema: Arc<Registry>,
    pending: HashMap<CommandId, Pending>,
    observations: HashMap<ObservationId, Observed>,
    /// The observations of each endpoint, so a departing device's go without a scan.
    observed_by: HashMap<String, Vec<ObservationId>>,
    shadows: Shadows,
    wrote: bool,
}

impl std::fmt::Debug for Bridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridge")
            .field("pending", &self.pending.len())
            .field("observations", &self.observations.len())
            .finish_non_exhaustive()
    }
}

impl Bridge {
    /// Opens the bridge's state in `store`.
    pub fn open(
        store: Store,
        prefix: String,
        max_outbox: u64,
        schema: Arc<Registry>,
    ) -> Result<Self, StoreError> {
        let outbox = Outbox::open(store.clone(), max_outbox)?;
        let mut pending = HashMap::new();
        for (k, v) in store.scan(Table::Bridge, PENDING)? {
            let id = k
                .get(PENDING.len()..)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes);
            if let (Some(id), Ok(p)) = (id, serde_json::from_slice::<Pending>(&v)) {
                pending.insert(CommandId(id), p);
            }
        }
        let mut observations = HashMap::new();
        for (k, v) in store.scan(Table::Bridge, OBSERVATION)? {
            let id = k
                .get(OBSERVATION.len()..)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes);
            if let (Some(id), Ok(r)) = (id, serde_json::from_slice::<Observed>(&v)) {
                observations.insert(ObservationId(id), r);
            }
        }
        let mut shadows = Shadows::default();
        for (k, v) in store.scan(Table::Bridge, SHADOW)? {
            let ep = k.get(SHADOW.len()..).map(String::from_utf8_lossy);
            if let (Some(ep), Ok(doc)) = (ep, serde_json::from_slice::<shadow::Doc>(&v)) {
                shadows.insert(ep.into_owned(), doc);
            }
        }
        Ok(Self {
            outbox,
            store,
            prefix,
            schema,
            pending,
            observed_by: observations.iter().fold(
                HashMap::new(),
                |mut m: HashMap<String, Vec<ObservationId>>, (id, o)| {
                    m.entry(o.endpoint.clone()).or_default().push(*id);
                    m
                },
            ),
            observations,
            shadows,
            wrote: false,
        })
    }

    /// What the MQTT link shares with the outbox.
    pub fn shared(&self) -> Arc<Shared> {
        self.outbox.shared()
    }

    /// Whether messages were queued since the last call (they must be committed before the
    /// server acknowledges what caused them).
    pub fn take_written(&mut self) -> bool {
        std::mem::take(&mut self.wrote)
    }

    fn publish(&mut self, endpoint: &str, suffix: &str, payload: serde_json::Value) {
        self.publish_as(endpoint, suffix, payload, None);
    }

    fn publish_as(
        &mut self,
        endpoint: &str,
        suffix: &str,
        payload: serde_json::Value,
        id: Option<String>,
    ) {
        let topic = format!("{}/{endpoint}/{suffix}", self.prefix);
        self.outbox.push(topic, payload, id);
        self.wrote = true;
    }

    fn remember(&mut self, id: CommandId, p: Pending) {
        if let Ok(v) = serde_json::to_vec(&p) {
            let _ = self
                .store
                .put(Table::Bridge, key(PENDING, &id.0.to_be_bytes()), v);
        }
        self.pending.insert(id, p);
    }

    /// Turns one device event into MQTT messages (and shadow writes).
    pub fn on_event(&mut self, event: &DeviceEvent, core: &mut dyn CommandPath) {
        match event {
            DeviceEvent::Registered { registration, .. } => {
                self.publish(
                    &registration.endpoint,
                    "up/register",
                    envelope::registered(registration),
                );
                self.wake(&registration.endpoint, core);
            }
            DeviceEvent::Updated { registration } => {
                self.publish(
                    &registration.endpoint,
                    "up/update",
                    envelope::updated(registration),
                );
                self.wake(&registration.endpoint, core);
            }
            DeviceEvent::Deregistered { endpoint, reason } => {
                self.publish(
                    endpoint,
                    "up/deregister",
                    envelope::deregistered(endpoint, *reason),
                );
                // The core ends a departing device's observations without an event each.
                self.forget_observations(endpoint, None);
            }
            DeviceEvent::Awake { endpoint } => self.wake(endpoint, core),
            DeviceEvent::Notification {
                endpoint,
                observation,
                path,
                content,
                seq,
            } => {
                let req = self.observations.get(observation).map(|o| o.req_id.clone());
                // The same notification sent again (its ACK lost in a server crash) carries
                // the same observation and sequence number: same id.
                let id = seq.map(|n| format!("n{}-{n}", observation.0));
                self.publish_as(
                    endpoint,
                    "up/notify",
                    envelope::notify(req.as_ref(), path, content, *seq),
                    id,
                );
                let fx = self
                    .shadows
                    .reported(endpoint, envelope::flatten(path, content));
                self.apply(endpoint, fx, core);
            }
            DeviceEvent::Send { endpoint, records } => {
                self.publish(endpoint, "up/send", envelope::send(endpoint, records));
                let values = records
                    .iter()
                    .filter_map(|r| Some((r.path, r.value.clone()?)))
                    .collect();
                let fx = self.shadows.reported(endpoint, values);
                self.apply(endpoint, fx, core);
            }
            DeviceEvent::CommandResult {
                id,
                endpoint,
                observation,
                outcome,
                ..
            } => {
                if let Some(p) = self.pending.remove(id) {
                    let _ = self
                        .store
                        .delete(Table::Bridge, key(PENDING, &id.0.to_be_bytes()));
                    let path = p.path.as_deref().and_then(|s| Path::parse(s).ok());
                    if let (Some(obs), Ok(_)) = (observation, outcome) {
                        let o = Observed {
                            endpoint: endpoint.clone(),
                            path: p.path.clone(),
                            req_id: p.req_id.clone(),
                        };
                        if let Ok(v) = serde_json::to_vec(&o) {
                            let _ = self.store.put(
                                Table::Bridge,
                                key(OBSERVATION, &obs.0.to_be_bytes()),
                                v,
                            );
                        }
                        self.observed_by
                            .entry(endpoint.clone())
                            .or_default()
                            .push(*obs);
                        self.observations.insert(*obs, o);
                    }
                    if p.msg_type == "cancel-observe" && outcome.is_ok() {
                        self.forget_observations(endpoint, p.path.as_deref());
                    }
                    self.publish(
                        endpoint,
                        "up/resp",
                        envelope::response(&p.req_id, &p.msg_type, outcome, path.as_ref()),
                    );
                    if let (Ok(DmResponse::Content { node, .. }), Some(path)) = (outcome, path) {
                        let content = crate::core::types::Content::Node(node.clone());
                        let fx = self
                            .shadows
                            .reported(endpoint, envelope::flatten(&path, &content));
                        self.apply(endpoint, fx, core);
                    }
                } else if let Some((ep, fx)) = self.shadows.write_result(*id, outcome.is_ok()) {
                    self.apply(&ep, fx, core);
                }
            }
            DeviceEvent::ObservationEnded { observation, .. } => {
                if let Some(o) = self.observations.remove(observation) {
                    let _ = self.store.delete(
                        Table::Bridge,
                        key(OBSERVATION, &observation.0.to_be_bytes()),
                    );
                    if let Some(ids) = self.observed_by.get_mut(&o.endpoint) {
                        ids.retain(|id| id != observation);
                        if ids.is_empty() {
                            self.observed_by.remove(&o.endpoint);
                        }
                    }
                }
            }
            DeviceEvent::AuthFailed { .. } => {}
        }
    }

    /// Drops the `reqID`s of `endpoint`'s observations (of `path` only, if given).
    fn forget_observations(&mut self, endpoint: &str, path: Option<&str>) {
        let Some(ids) = self.observed_by.get_mut(endpoint) else {
            return;
        };
        let observations = &mut self.observations;
        let store = &self.store;
        ids.retain(|id| {
            let matches = observations
                .get(id)
                .is_none_or(|o| path.is_none() || o.path.as_deref() == path);
            if matches {
                observations.remove(id);
                let _ = store.delete(Table::Bridge, key(OBSERVATION, &id.0.to_be_bytes()));
            }
            !matches
        });
        if ids.is_empty() {
            self.observed_by.remove(endpoint);
        }
    }

    fn wake(&mut self, endpoint: &str, core: &mut dyn CommandPath) {
        let fx = self.shadows.wake(endpoint, &self.schema);
        self.apply(endpoint, fx, core);
    }

    /// Carries out a shadow change: submit its writes, publish its state, store it.
    fn apply(&mut self, endpoint: &str, fx: shadow::Effects, core: &mut dyn CommandPath) {
        for (path, cmd) in fx.writes {
            let id = core.submit(cmd);
            self.shadows.track(id, endpoint, path);
        }
        if let Some(state) = fx.reported {
            self.publish(
                endpoint,
                "shadow/reported",
                shadow_message("shadow-reported", state),
            );
        }
        if let Some(state) = fx.delta {
            self.publish(
                endpoint,
                "shadow/delta",
                shadow_message("shadow-delta", state),
            );
        }
        if fx.changed {
            if let Some(doc) = self.shadows.get(endpoint) {
                if let Ok(v) = serde_json::to_vec(doc) {
                    let _ = self
                        .store
                        .put(Table::Bridge, key(SHADOW, endpoint.as_bytes()), v);
                }
            }
        }
    }

    /// A message from the broker: a command to carry out, or a shadow's desired state.
    pub fn on_downlink(&mut self, d: Downlink, core: &mut dyn CommandPath) {
        match d.kind {
            DownlinkKind::Command => {
                match envelope::parse_command(&d.endpoint, &d.payload, &self.schema) {
                    Ok(parsed) => {
                        let path = parsed_path(&parsed.action);
                        let id = match parsed.action {
                            Action::Command(mut cmd) => {
                                // MQTT 5 Message Expiry: the command may wait that long for a
                                // sleeping device, and no longer.
                                if d.expiry.is_some() {
                                    cmd.ttl = d.expiry;
                                }
                                core.submit(cmd)
                            }
                            Action::CancelObserve(path) => {
                                core.cancel_observation(&d.endpoint, path)
                            }
                        };
                        self.remember(
                            id,
                            Pending {
                                req_id: parsed.req_id,
                                msg_type: parsed.msg_type,
                                path,
                            },
                        );
                    }
                    Err(e) => {
                        self.shared().stats.downlink_errors.fetch_add(1, Relaxed);
                        tracing::info!(endpoint = %d.endpoint, error = %e.message, "malformed MQTT command");
                        let payload = envelope::error_response(
                            e.req_id.as_ref(),
                            e.msg_type.as_deref(),
                            "4.00",
                            &e.message,
                        );
                        self.publish(&d.endpoint, "up/resp", payload);
                    }
                }
            }
            DownlinkKind::Desired => {
                match self.shadows.desired(&d.endpoint, &d.payload, &self.schema) {
                    Ok(fx) => self.apply(&d.endpoint, fx, core),
                    Err(message) => {
                        self.shared().stats.downlink_errors.fetch_add(1, Relaxed);
                        let payload = envelope::error_response(
                            None,
                            Some("shadow-desired"),
                            "4.00",
                            &message,
                        );
                        self.publish(&d.endpoint, "up/resp", payload);
                    }
                }
            }
        }
    }
}

fn parsed_path(action: &Action) -> Option<String> {
    match action {
        Action::Command(cmd) => Some(cmd.request.path().to_string()),
        Action::CancelObserve(p) => Some(p.to_string()),
    }
}

fn shadow_message(kind: &str, state: BTreeMap<String, serde_json::Value>) -> serde_json::Value {
    serde_json::json!({ "msgType": kind, "state": state })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreConfig;
    use lwm2m::ops::dm::DmResponse;

    struct Counter(u64);

    impl CommandPath for Counter {
        fn submit(&mut self, _: Command) -> CommandId {
            self.0 += 1;
            CommandId(self.0)
        }
        fn cancel_observation(&mut self, _: &str, _: Path) -> CommandId {
            self.0 += 1;
            CommandId(self.0)
        }
    }

    fn observe(bridge: &mut Bridge, core: &mut Counter, ep: &str, req: u64) -> ObservationId {
        let payload =
            format!(r#"{{"reqID": {req}, "msgType": "observe", "data": {{"path": "/3/0/9"}}}}"#);
        bridge.on_downlink(
            Downlink {
                endpoint: ep.into(),
                kind: DownlinkKind::Command,
                payload: payload.into_bytes(),
                expiry: None,
            },
            core,
        );
        let obs = ObservationId(100 + req);
        bridge.on_event(
            &DeviceEvent::CommandResult {
                id: CommandId(core.0),
                endpoint: ep.into(),
                operation: "observe",
                observation: Some(obs),
                outcome: Ok(DmResponse::Changed),
            },
            core,
        );
        obs
    }

    #[test]
    fn observation_request_ids_are_kept_across_a_restart_and_dropped_with_the_device() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb"), StoreConfig::default()).unwrap();
        let schema = Arc::new(Registry::bundled());
        let mut core = Counter(0);
        let mut bridge = Bridge::open(store.clone(), "lwm2m".into(), 1000, schema.clone()).unwrap();
        observe(&mut bridge, &mut core, "a", 1);
        observe(&mut bridge, &mut core, "b", 2);
        assert!(bridge.take_written());
        assert_eq!(bridge.observations.len(), 2);
        // A restart finds them in the store.
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(store.flush())
            .unwrap();
        let mut bridge = Bridge::open(store, "lwm2m".into(), 1000, schema).unwrap();
        assert_eq!(bridge.observations.len(), 2);
        assert!(
            bridge.pending.is_empty(),
            "answered commands are not pending"
        );
        bridge.on_event(
            &DeviceEvent::Deregistered {
                endpoint: "a".into(),
                reason: crate::core::types::DeregisterReason::Requested,
            },
            &mut core,
        );
        assert_eq!(bridge.observations.len(), 1);
        assert!(!bridge.observed_by.contains_key("a"));
    }
}
