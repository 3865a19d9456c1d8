//! The bridge's part on the server task: device events in, MQTT
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
use crate::core::persist::{check_endpoint, MAX_STORED_ID};
use crate::core::types::{Command, CommandId, DeviceEvent, ObservationId, COMMAND_TTL_RANGE};
use crate::store::{Store, StoreError, Table};
use lwm2m::model::{Path, Registry};
use lwm2m::ops::dm::DmResponse;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

mod shared;
pub use shared::SharedWrite;

/// The command path, as the bridge uses it.
pub trait CommandPath {
    /// Submits a command; its result comes back as a `CommandResult` event.
    fn submit(&mut self, command: Command) -> CommandId;
    /// Cancels the observation of `path` on `endpoint`; the result comes back likewise.
    fn cancel_observation(&mut self, endpoint: &str, path: Path) -> CommandId;
    /// Makes `endpoint` bootstrap again (Execute `/1/x/9`); the result comes back likewise.
    fn bootstrap_trigger(
        &mut self,
        endpoint: &str,
        ttl: Option<Duration>,
        timeout: Option<Duration>,
    ) -> CommandId;
    /// Whether `endpoint` is registered over DTLS (`None`: not known), for the Package URI
    /// a firmware campaign gives it (coaps or coap).
    fn secure(&self, _endpoint: &str) -> Option<bool> {
        None
    }
    /// Starts a firmware update campaign of `package` for `endpoint` alone (OMA LwM2M TS 1.2
    /// Core E.6); `method` is `pull` or `push`. Returns the campaign's id, or why not.
    fn firmware_update(
        &mut self,
        _endpoint: &str,
        _package: &str,
        _method: Option<&str>,
    ) -> Result<String, String> {
        Err("firmware update is not available".into())
    }
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
    /// With devices' state shared between nodes: the message as it came (payload, and until
    /// when it may wait, Unix ms), to hand it to the device's new owner if it was queued
    /// here just as another node took the device (see `shared`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    message: Option<(String, Option<u64>)>,
    /// The device (absent in records of earlier versions), to answer on its topic a command
    /// a restart lost.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    endpoint: String,
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
    /// Stored records [`open`](Self::open) skipped (unreadable or out of range).
    skipped: usize,
    wrote: bool,
    /// How large a command may be.
    limits: envelope::CommandLimits,
    /// With devices' state shared between nodes: the changes of devices' records not yet
    /// taken (see `shared`).
    shared_writes: Option<Vec<SharedWrite>>,
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
        let Stored {
            pending,
            observations,
            shadows,
            skipped,
        } = Stored::load(&store)?;
        let skipped = skipped + outbox.skipped();
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
            skipped,
            wrote: false,
            limits: envelope::CommandLimits::default(),
            shared_writes: None,
        })
    }

    /// Sets how large a command may be (`[mqtt] max_command_bytes`).
    pub fn with_limits(mut self, limits: envelope::CommandLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Whether the outbox is full: notifications are then refused to devices (left
    /// unacknowledged, so they retransmit) rather than taken and dropped.
    pub fn outbox_full(&self) -> bool {
        self.outbox.is_full()
    }

    /// Records the CoAP endpoint's counts of notifications and Sends refused while the
    /// outbox was full.
    pub fn note_refused(&self, notifications: u64, sends: u64) {
        let stats = self.outbox.stats();
        let relaxed = std::sync::atomic::Ordering::Relaxed;
        stats.notifications_refused.store(notifications, relaxed);
        stats.sends_refused.store(sends, relaxed);
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
        let topic = format!("{}/{endpoint}/{suffix}", self.prefix);
        // A message the full outbox dropped needs no commit and holds no acknowledgement.
        self.wrote |= self.outbox.push(topic, payload, None);
    }

    /// Queues a notification's message under `id` (its time to the broker is measured).
    fn publish_notification(
        &mut self,
        endpoint: &str,
        payload: serde_json::Value,
        id: Option<String>,
    ) {
        let topic = format!("{}/{endpoint}/up/notify", self.prefix);
        self.wrote |= self.outbox.push_as(topic, payload, id, true);
    }

    fn remember(&mut self, endpoint: &str, id: CommandId, p: Pending) {
        if let Ok(v) = serde_json::to_vec(&p) {
            self.share_pending(endpoint, id, Some(v.clone()));
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
            // The EMQX gateway's message set has no presence message; the HTTP event stream
            // reports it.
            DeviceEvent::Sleeping { .. } => {}
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
                self.publish_notification(
                    endpoint,
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
                    self.share_pending(endpoint, *id, None);
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
                            self.share_observed(endpoint, *obs, Some(v.clone()));
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
            DeviceEvent::Bootstrap {
                endpoint, stage, ..
            } => self.publish(
                endpoint,
                "up/bootstrap",
                envelope::bootstrap(endpoint, stage),
            ),
            DeviceEvent::Firmware { endpoint, .. } => {
                if let Some(message) = envelope::firmware(event) {
                    self.publish(endpoint, "up/firmware", message);
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
        let mut forgotten = Vec::new();
        ids.retain(|id| {
            let matches = observations
                .get(id)
                .is_none_or(|o| path.is_none() || o.path.as_deref() == path);
            if matches {
                observations.remove(id);
                let _ = store.delete(Table::Bridge, key(OBSERVATION, &id.0.to_be_bytes()));
                forgotten.push(*id);
            }
            !matches
        });
        if ids.is_empty() {
            self.observed_by.remove(endpoint);
        }
        for id in forgotten {
            self.share_observed(endpoint, id, None);
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
                match envelope::parse_command_with(
                    &d.endpoint,
                    &d.payload,
                    &self.schema,
                    &self.limits,
                ) {
                    Ok(parsed) => {
                        let path = parsed_path(&parsed.action);
                        let id = match parsed.action {
                            Action::FirmwareUpdate { package, method } => {
                                // Not a command of its own: its answer is the campaign.
                                let r =
                                    core.firmware_update(&d.endpoint, &package, method.as_deref());
                                let r = r.as_deref().map_err(String::as_str);
                                let payload = envelope::firmware_started(&parsed.req_id, r);
                                self.publish(&d.endpoint, "up/resp", payload);
                                return;
                            }
                            Action::Command(mut cmd) => {
                                // MQTT 5 Message Expiry: the command may wait that long for a
                                // sleeping device, and no longer. The broker allows up to 136
                                // years; past the longest ttl a command may ask for, it means
                                // "as long as allowed".
                                if let Some(expiry) = d.expiry {
                                    cmd.ttl = Some(expiry.min(*COMMAND_TTL_RANGE.end()));
                                }
                                core.submit(cmd)
                            }
                            Action::CancelObserve(path) => {
                                core.cancel_observation(&d.endpoint, path)
                            }
                            Action::BootstrapTrigger { timeout, mut ttl } => {
                                if let Some(expiry) = d.expiry {
                                    ttl = Some(expiry.min(*COMMAND_TTL_RANGE.end()));
                                }
                                core.bootstrap_trigger(&d.endpoint, ttl, timeout)
                            }
                        };
                        let message = self.shared_writes.is_some().then(|| {
                            let now = lwm2m::time::unix_millis(std::time::SystemTime::now());
                            let until = d.expiry.map(|e| {
                                now.saturating_add(u64::try_from(e.as_millis()).unwrap_or(u64::MAX))
                            });
                            (String::from_utf8_lossy(&d.payload).into_owned(), until)
                        });
                        self.remember(
                            &d.endpoint,
                            id,
                            Pending {
                                req_id: parsed.req_id,
                                msg_type: parsed.msg_type,
                                path,
                                message,
                                endpoint: d.endpoint.clone(),
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
                let desired = self
                    .limits
                    .check(&d.payload)
                    .and_then(|()| self.shadows.desired(&d.endpoint, &d.payload, &self.schema));
                match desired {
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

/// The bridge's state as read back from the store, every record checked: a record that cannot
/// be read or is out of range is skipped, counted, logged with its key and deleted, so that it
/// neither stops the start nor comes back at the next one.
struct Stored {
    pending: HashMap<CommandId, Pending>,
    observations: HashMap<ObservationId, Observed>,
    shadows: Shadows,
    skipped: usize,
}

/// A `reqID` as a command may have it: a number, or a string no longer than a command.
fn check_req_id(req_id: &serde_json::Value) -> Result<(), String> {
    match req_id {
        serde_json::Value::Number(_) => Ok(()),
        serde_json::Value::String(s) if s.len() <= super::connect::MAX_PACKET_BYTES => Ok(()),
        _ => Err("reqID is not a number or a string of at most 1 MiB".into()),
    }
}

/// A stored path, if any, as commands give it.
fn check_path(path: Option<&str>) -> Result<(), String> {
    match path.map(Path::parse) {
        Some(Err(e)) => Err(format!("path: {e}")),
        _ => Ok(()),
    }
}

/// The id after `prefix` in a key: 8 bytes, 1..=[`MAX_STORED_ID`].
fn stored_id(key: &[u8], prefix: &[u8]) -> Result<u64, String> {
    let id = key
        .get(prefix.len()..)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_be_bytes)
        .ok_or("the key does not end in an 8-byte id")?;
    if (1..=MAX_STORED_ID).contains(&id) {
        Ok(id)
    } else {
        Err(format!("id {id}: must be 1..={MAX_STORED_ID}"))
    }
}

impl Stored {
    fn load(store: &Store) -> Result<Self, StoreError> {
        let mut state = Self {
            pending: HashMap::new(),
            observations: HashMap::new(),
            shadows: Shadows::default(),
            skipped: 0,
        };
        for (k, v) in store.scan(Table::Bridge, b"")? {
            if let Err(reason) = state.read(&k, &v) {
                state.skipped += 1;
                tracing::warn!(table = Table::Bridge.name(), key = %crate::store::display_key(&k), reason, "stored MQTT bridge record skipped and deleted");
                store.delete(Table::Bridge, k)?;
            }
        }
        Ok(state)
    }

    fn read(&mut self, k: &[u8], v: &[u8]) -> Result<(), String> {
        let json = |e: serde_json::Error| format!("not a record this version can read: {e}");
        if k.starts_with(PENDING) {
            let id = stored_id(k, PENDING)?;
            let p: Pending = serde_json::from_slice(v).map_err(json)?;
            check_req_id(&p.req_id)?;
            if !envelope::COMMAND_TYPES.contains(&p.msg_type.as_str()) {
                return Err(format!("unknown msgType {:?}", p.msg_type));
            }
            check_path(p.path.as_deref())?;
            self.pending.insert(CommandId(id), p);
        } else if k.starts_with(OBSERVATION) {
            let id = stored_id(k, OBSERVATION)?;
            let o: Observed = serde_json::from_slice(v).map_err(json)?;
            check_req_id(&o.req_id)?;
            check_path(o.path.as_deref())?;
            check_endpoint(&o.endpoint)?;
            self.observations.insert(ObservationId(id), o);
        } else if let Some(ep) = k.strip_prefix(SHADOW) {
            let ep = std::str::from_utf8(ep).map_err(|_| "the endpoint is not UTF-8")?;
            check_endpoint(ep)?;
            let doc: shadow::Doc = serde_json::from_slice(v).map_err(json)?;
            self.shadows.restore(ep, doc)?;
        } else {
            return Err("no record of this bridge has such a key".into());
        }
        Ok(())
    }
}

impl Bridge {
    /// Stored records [`open`](Self::open) skipped (in the outbox and the bridge's own table).
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    /// Whether a request awaits the result of command `id`.
    #[cfg(test)]
    pub(crate) fn has_pending(&self, id: CommandId) -> bool {
        self.pending.contains_key(&id)
    }

    /// Whether the `reqID` of observation `id` is kept.
    #[cfg(test)]
    pub(crate) fn has_observation(&self, id: ObservationId) -> bool {
        self.observations.contains_key(&id)
    }

    /// Whether `endpoint` has a shadow.
    #[cfg(test)]
    pub(crate) fn has_shadow(&self, endpoint: &str) -> bool {
        self.shadows.get(endpoint).is_some()
    }

    /// After a restart: forgets (and deletes) the requests awaiting the result of a command
    /// the core no longer has (it was in flight when the server stopped, so no result will
    /// come) and the `reqID`s of observations the core did not restore. Returns how many.
    pub(crate) fn forget_unknown(
        &mut self,
        commands: &HashSet<CommandId>,
        observations: &HashSet<ObservationId>,
    ) -> usize {
        let gone: Vec<CommandId> = self
            .pending
            .keys()
            .filter(|id| !commands.contains(id))
            .copied()
            .collect();
        for id in &gone {
            if let Some(p) = self.pending.remove(id) {
                tracing::warn!(command = id.0, msg_type = %p.msg_type, endpoint = %p.endpoint, "MQTT command lost in the restart (it was sent, its answer not in): answered 5.04");
                // Its one answer: the device may or may not have run it.
                if !p.endpoint.is_empty() {
                    let payload = envelope::error_response(
                        Some(&p.req_id),
                        Some(&p.msg_type),
                        "5.04",
                        "the server restarted while the command was with the device: its outcome is unknown",
                    );
                    self.publish(&p.endpoint, "up/resp", payload);
                }
            }
            let _ = self
                .store
                .delete(Table::Bridge, key(PENDING, &id.0.to_be_bytes()));
        }
        let unobserved: Vec<(ObservationId, String)> = self
            .observations
            .iter()
            .filter(|(id, _)| !observations.contains(id))
            .map(|(id, o)| (*id, o.endpoint.clone()))
            .collect();
        for (id, endpoint) in &unobserved {
            self.observations.remove(id);
            if let Some(ids) = self.observed_by.get_mut(endpoint) {
                ids.retain(|o| o != id);
                if ids.is_empty() {
                    self.observed_by.remove(endpoint);
                }
            }
            let _ = self
                .store
                .delete(Table::Bridge, key(OBSERVATION, &id.0.to_be_bytes()));
        }
        gone.len() + unobserved.len()
    }
}

fn parsed_path(action: &Action) -> Option<String> {
    match action {
        Action::Command(cmd) => Some(cmd.request.path().to_string()),
        Action::CancelObserve(p) => Some(p.to_string()),
        Action::BootstrapTrigger { .. } | Action::FirmwareUpdate { .. } => None,
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
        fn bootstrap_trigger(
            &mut self,
            _: &str,
            _: Option<Duration>,
            _: Option<Duration>,
        ) -> CommandId {
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

    #[test]
    fn stored_bridge_records_out_of_range_are_skipped_and_stale_ones_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb"), StoreConfig::default()).unwrap();
        let put = |k: Vec<u8>, v: &str| store.put(Table::Bridge, k, v.into()).unwrap();
        let pending = r#"{"req_id":1,"msg_type":"read","path":"/3/0/0"}"#;
        put(key(PENDING, &5u64.to_be_bytes()), pending);
        put(key(PENDING, &6u64.to_be_bytes()), pending);
        put(
            key(OBSERVATION, &8u64.to_be_bytes()),
            r#"{"endpoint":"a","path":"/3/0/9","req_id":2}"#,
        );
        put(
            key(SHADOW, b"a"),
            r#"{"desired":{"/3/0/14":"+02:00"},"reported":{}}"#,
        );
        // Out of range or unreadable, each for its own reason.
        put(key(PENDING, &0u64.to_be_bytes()), pending);
        put(key(PENDING, &u64::MAX.to_be_bytes()), pending);
        put(key(PENDING, b"short"), pending);
        put(
            key(PENDING, &9u64.to_be_bytes()),
            r#"{"req_id":1,"msg_type":"format-disk"}"#,
        );
        put(
            key(PENDING, &10u64.to_be_bytes()),
            r#"{"req_id":[1],"msg_type":"read"}"#,
        );
        put(
            key(OBSERVATION, &11u64.to_be_bytes()),
            r#"{"endpoint":"","req_id":2}"#,
        );
        put(key(SHADOW, b"b"), r#"{"desired":{"/3/0":1},"reported":{}}"#);
        put(key(SHADOW, b"c\n"), r#"{"desired":{},"reported":{}}"#);
        let many: serde_json::Map<String, serde_json::Value> = (0..=shadow::MAX_DESIRED)
            .map(|i| (format!("/3/0/{}", 1000 + i), serde_json::json!(1)))
            .collect();
        let doc = serde_json::json!({ "desired": many, "reported": {} }).to_string();
        put(key(SHADOW, b"d"), &doc);
        put(b"other/1".to_vec(), "{}");
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(store.flush())
            .unwrap();
        let schema = Arc::new(Registry::bundled());
        let mut bridge = Bridge::open(store.clone(), "lwm2m".into(), 1000, schema).unwrap();
        assert_eq!(bridge.skipped(), 10);
        assert_eq!(bridge.pending.len(), 2);
        assert!(bridge.has_observation(ObservationId(8)) && bridge.has_shadow("a"));
        // The core restored command 5 only, and no observation: the rest will never end.
        let forgotten = bridge.forget_unknown(&HashSet::from([CommandId(5)]), &HashSet::new());
        assert_eq!(forgotten, 2);
        assert!(bridge.has_pending(CommandId(5)) && !bridge.has_pending(CommandId(6)));
        assert!(!bridge.has_observation(ObservationId(8)));
        assert!(bridge.observed_by.is_empty());
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(store.flush())
            .unwrap();
        assert_eq!(
            store.scan(Table::Bridge, b"").unwrap().len(),
            2,
            "pending 5 and shadow a"
        );
    }

    /// A command path that starts firmware campaigns.
    struct Firmware(Counter);

    impl CommandPath for Firmware {
        fn submit(&mut self, c: Command) -> CommandId {
            self.0.submit(c)
        }
        fn cancel_observation(&mut self, e: &str, p: Path) -> CommandId {
            self.0.cancel_observation(e, p)
        }
        fn bootstrap_trigger(
            &mut self,
            e: &str,
            ttl: Option<Duration>,
            timeout: Option<Duration>,
        ) -> CommandId {
            self.0.bootstrap_trigger(e, ttl, timeout)
        }
        fn firmware_update(
            &mut self,
            endpoint: &str,
            package: &str,
            method: Option<&str>,
        ) -> Result<String, String> {
            match (endpoint, package, method) {
                ("a", "p1", Some("push")) => Ok("17".into()),
                _ => Err(format!("no package {package}")),
            }
        }
    }

    #[test]
    fn firmware_update_is_answered_with_the_campaign_and_phases_go_up() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb"), StoreConfig::default()).unwrap();
        let schema = Arc::new(Registry::bundled());
        let mut bridge = Bridge::open(store.clone(), "lwm2m".into(), 1000, schema).unwrap();
        let mut core = Firmware(Counter(0));
        for payload in [
            r#"{"reqID": 1, "msgType": "firmware-update", "data": {"package": "p1", "method": "push"}}"#,
            r#"{"reqID": 2, "msgType": "firmware-update", "data": {"package": "p2"}}"#,
        ] {
            bridge.on_downlink(
                Downlink {
                    endpoint: "a".into(),
                    kind: DownlinkKind::Command,
                    payload: payload.as_bytes().to_vec(),
                    expiry: None,
                },
                &mut core,
            );
        }
        bridge.on_event(
            &DeviceEvent::Firmware {
                endpoint: "a".into(),
                campaign: "17".into(),
                package: "p1".into(),
                phase: crate::core::types::FirmwarePhase::Downloading,
                state: Some(1),
                result: Some(0),
                outcome: None,
                bytes: None,
                version: None,
            },
            &mut core,
        );
        assert_eq!(core.0 .0, 0, "no command of its own");
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(store.flush())
            .unwrap();
        let messages = super::super::outbox::read(&store, 0, 10).unwrap();
        let topics: Vec<&str> = messages.iter().map(|(_, m)| m.topic.as_str()).collect();
        assert_eq!(
            topics,
            ["lwm2m/a/up/resp", "lwm2m/a/up/resp", "lwm2m/a/up/firmware"]
        );
        let json = |i: usize| -> serde_json::Value {
            serde_json::from_slice(&messages[i].1.payload).unwrap()
        };
        assert_eq!(json(0)["data"]["campaign"], "17");
        assert_eq!(json(1)["data"]["code"], "4.00");
        assert_eq!(json(2)["data"]["phase"], "downloading");
        assert_eq!(json(2)["data"]["state"], 1);
    }
}
