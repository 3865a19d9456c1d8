//! The device event stream over HTTP as server-sent events (WHATWG HTML §9.2
//! "Server-sent events"), Leshan's `GET /api/event` and ours, `GET /api/events`: every
//! [`DeviceEvent`] numbered in order, its JSON built once and kept (the newest
//! `[http] event_retention`), so that a client reconnecting with `Last-Event-ID` (which
//! browsers' `EventSource` send by themselves) gets what it missed, without a gap or a
//! repeat. `?ep=` keeps one device's events.
//!
//! Event names and bodies are Leshan's where Leshan has the event (REGISTRATION, UPDATED,
//! DEREGISTRATION, SLEEPING, AWAKE, NOTIFICATION, SEND) and ours otherwise
//! (COMMAND_RESULT, BOOTSTRAP, FIRMWARE, OBSERVATION_ENDED, AUTH_FAILED).
//!
//! One task numbers the events; a subscriber that falls behind the live channel reads
//! again from the retained events, and only loses events if it is more than the retention
//! behind.
//!
//! Notifications and Sends, which depend on nothing but their own values, keep their values
//! and have their JSON built the first time a stream sends them: under telemetry nobody is
//! usually watching, and building JSON nobody reads cost a tenth of the server's CPU.
use super::clients::registration_json;
use super::dm::Shown;
use super::dm::{records_json, result_json};
use super::node_json::node_json;
use super::requests::{shown_fields, Requests};
use super::{ApiError, ApiState};
use crate::bridge::envelope;
use crate::core::types::{Content, DeregisterReason, DeviceEvent};
use crate::handle::ServerHandle;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use lwm2m::model::{Node, Path, Resource, Value};
use serde::Deserialize;
use serde_json::{json, Value as Json};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::broadcast;

/// Events a subscriber may be behind on the live channel before it reads the retained ones.
const LIVE_CAPACITY: usize = 4096;
/// The event that tells a stream events are missing: the server's own stream fell behind,
/// or this stream resumed (or fell) further back than the retained events reach. A client
/// refetches the state it keeps on seeing it.
const GAP: &str = "GAP";
/// A comment line this often keeps proxies from closing a quiet stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// One event as sent.
#[derive(Debug)]
pub struct SseEvent {
    /// Its number, from 1, in the order the server emitted the events.
    pub id: u64,
    /// Its name (`REGISTRATION`, `NOTIFICATION`...).
    pub kind: &'static str,
    /// The device it is about.
    pub endpoint: String,
    body: Body,
    /// What it counts against [`MAX_RETAINED_BYTES`]: its JSON's length, or an estimate of
    /// it before the JSON is built.
    charge: usize,
}

/// An event's JSON, or what it is built from.
#[derive(Debug)]
enum Body {
    Json(String),
    /// A notification or Send: built on first use.
    Later(Box<DeviceEvent>, OnceLock<String>),
}

impl SseEvent {
    fn ready(id: u64, kind: &'static str, endpoint: String, data: String) -> Self {
        SseEvent {
            id,
            kind,
            endpoint,
            charge: data.len(),
            body: Body::Json(data),
        }
    }

    /// Its JSON.
    pub fn data(&self) -> &str {
        match &self.body {
            Body::Json(s) => s,
            Body::Later(event, built) => built.get_or_init(|| match later_json(event) {
                Some(json) => json.to_string(),
                None => "null".to_string(),
            }),
        }
    }
}

/// Bytes of event JSON kept at most, whatever `[http] event_retention` says: a device
/// sending large values must not make the retained events grow to gigabytes.
const MAX_RETAINED_BYTES: usize = 64 << 20;

/// The retained events and the next id.
#[derive(Debug)]
struct Ring {
    events: VecDeque<Arc<SseEvent>>,
    /// Bytes of JSON in `events`.
    bytes: usize,
    next_id: u64,
}

/// The numbered, retained events.
pub struct EventLog {
    retention: usize,
    retained: Mutex<Ring>,
    live: broadcast::Sender<Arc<SseEvent>>,
    /// Streams open now, against `[http] max_event_streams`.
    streams: AtomicUsize,
}

impl EventLog {
    /// An empty log keeping the newest `retention` events. Ids start at the wall-clock time
    /// in microseconds, so that an id a client kept from before a restart is older than
    /// every id of this run (it is then sent what is retained, after a `GAP`).
    pub fn new(retention: usize) -> Self {
        let first = lwm2m::time::unix_millis(std::time::SystemTime::now()).saturating_mul(1000);
        Self {
            retention: retention.max(1),
            retained: Mutex::new(Ring {
                events: VecDeque::new(),
                bytes: 0,
                next_id: first.max(1),
            }),
            live: broadcast::channel(LIVE_CAPACITY).0,
            streams: AtomicUsize::new(0),
        }
    }

    /// A log fed by `handle`'s events until the server stops. `requests` gives the path of
    /// a command answered `202`, for its result's node.
    pub fn start(handle: &ServerHandle, requests: Arc<Requests>, retention: usize) -> Arc<Self> {
        let log = Arc::new(Self::new(retention));
        let mut rx = handle.subscribe();
        let feed = log.clone();
        tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(event) => {
                        if let Some(kind) = later_kind(&event) {
                            feed.push_later(kind, event);
                        } else if let Some((kind, endpoint, data)) = describe(&event, &requests) {
                            feed.push(kind, endpoint, data);
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "HTTP event stream fell behind the server");
                        // Every stream learns that events are missing, whatever its filter.
                        feed.push(GAP, String::new(), json!({ "missed": n }));
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        log
    }

    /// Numbers and keeps an event, and sends it to the streams.
    pub fn push(&self, kind: &'static str, endpoint: String, data: Json) {
        // Serialized before the lock: streams reading the retained events wait on it.
        let data = data.to_string();
        self.keep(|id| SseEvent::ready(id, kind, endpoint, data));
    }

    /// Numbers and keeps a notification or Send whose JSON is built when a stream first
    /// sends it.
    fn push_later(&self, kind: &'static str, event: DeviceEvent) {
        let (endpoint, charge) = match &event {
            DeviceEvent::Notification {
                endpoint, content, ..
            } => (endpoint.clone(), content_bytes(content)),
            DeviceEvent::Send { endpoint, records } => (endpoint.clone(), records_bytes(records)),
            _ => (String::new(), 0),
        };
        self.keep(|id| SseEvent {
            id,
            kind,
            // The values kept, and once a stream has read it, its JSON too.
            charge: 2 * (charge + endpoint.len() + 128),
            endpoint,
            body: Body::Later(Box::new(event), OnceLock::new()),
        });
    }

    fn keep(&self, event: impl FnOnce(u64) -> SseEvent) {
        let Ok(mut ring) = self.retained.lock() else {
            return;
        };
        let id = ring.next_id;
        ring.next_id += 1;
        let event = Arc::new(event(id));
        ring.bytes += event.charge;
        ring.events.push_back(event.clone());
        while ring.events.len() > self.retention || ring.bytes > MAX_RETAINED_BYTES {
            match ring.events.pop_front() {
                Some(old) => ring.bytes -= old.charge,
                None => break,
            }
        }
        // Under the lock, so that a subscriber's snapshot and its live channel meet exactly.
        let _ = self.live.send(event);
    }

    /// The retained events after `after`, oldest first, at most `limit`.
    fn since(&self, after: u64, limit: usize) -> Vec<Arc<SseEvent>> {
        let Ok(ring) = self.retained.lock() else {
            return Vec::new();
        };
        let start = ring.events.partition_point(|e| e.id <= after);
        ring.events.range(start..).take(limit).cloned().collect()
    }

    /// The id of the newest event given out (retained or not).
    fn newest(&self) -> u64 {
        self.retained
            .lock()
            .map(|r| r.next_id.saturating_sub(1))
            .unwrap_or(0)
    }

    /// A live channel, taken together with the id of the newest event: events up to it
    /// come from the retained ones, later ones from the channel. `after` comes back no
    /// later than that id (a client cannot have seen later ones).
    fn subscribe(&self, after: u64) -> (broadcast::Receiver<Arc<SseEvent>>, u64, u64) {
        let ring = self.retained.lock();
        let rx = self.live.subscribe();
        let newest = match &ring {
            Ok(r) => r.next_id.saturating_sub(1),
            Err(_) => 0,
        };
        (rx, after.min(newest), newest)
    }
}

/// The routes.
pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/events", get(stream))
        .route("/api/event", get(stream))
}

#[derive(Debug, Deserialize)]
struct StreamQuery {
    ep: Option<String>,
    #[serde(rename = "lastEventId")]
    last_event_id: Option<u64>,
}

/// Counts an open stream; dropped with the stream.
struct StreamSlot(Arc<EventLog>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.streams.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn stream(
    State(state): State<ApiState>,
    Query(q): Query<StreamQuery>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    let max = state.config.http.max_event_streams;
    let log = state.events.clone();
    if log.streams.fetch_add(1, Ordering::Relaxed) >= max {
        log.streams.fetch_sub(1, Ordering::Relaxed);
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{max} event streams are open, the most [http] max_event_streams allows"),
        ));
    }
    let slot = StreamSlot(log.clone());
    let header_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    // A new subscriber starts with what happens from now on.
    let after = header_id.or(q.last_event_id).unwrap_or(u64::MAX);
    let (rx, after, live_from) = log.subscribe(after);
    let state = Cursor {
        log,
        rx,
        last: after,
        live_from,
        pending: VecDeque::new(),
        ep: q.ep,
        _slot: slot,
    };
    let events = futures_util::stream::unfold(state, |mut c| async move {
        let e = c.next().await?;
        let mut event = Event::default().event(e.kind).data(e.data());
        if e.id != 0 {
            event = event.id(e.id.to_string());
        }
        Some((Ok::<_, Infallible>(event), c))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

/// Where one stream is: the retained events it still has to send, then the live ones.
struct Cursor {
    log: Arc<EventLog>,
    rx: broadcast::Receiver<Arc<SseEvent>>,
    /// The last event sent (or skipped by the filter).
    last: u64,
    /// Events up to this id are read from the retained ones, later ones from `rx`.
    live_from: u64,
    pending: VecDeque<Arc<SseEvent>>,
    ep: Option<String>,
    _slot: StreamSlot,
}

impl Cursor {
    /// The next event for this stream; `None` once the server stops.
    async fn next(&mut self) -> Option<Arc<SseEvent>> {
        loop {
            if self.pending.is_empty() && self.last < self.live_from {
                self.pending.extend(self.log.since(self.last, 256));
                if self.pending.is_empty() {
                    // Nothing retained after `last` up to `live_from`: they were dropped.
                    let gap = self.gap(self.live_from + 1);
                    self.last = self.live_from;
                    return Some(gap);
                }
                // A long replay must not hold a runtime thread.
                tokio::task::yield_now().await;
            }
            let e = match self.pending.pop_front() {
                Some(e) => e,
                None => match self.rx.recv().await {
                    Ok(e) => e,
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        // Read what was missed from the retained events instead.
                        self.live_from = self.log.newest();
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
            };
            if e.id <= self.last {
                continue;
            }
            if e.id > self.last + 1 {
                // Events between were dropped before this stream got them.
                let gap = self.gap(e.id);
                self.pending.push_front(e);
                self.last = gap_end(&self.pending);
                return Some(gap);
            }
            self.last = e.id;
            if e.kind == GAP || self.ep.as_ref().is_none_or(|ep| *ep == e.endpoint) {
                return Some(e);
            }
        }
    }

    /// A `GAP` event (without an id, so it does not move the client's Last-Event-ID) for
    /// the events after `last` and before `resumed_at`.
    fn gap(&self, resumed_at: u64) -> Arc<SseEvent> {
        Arc::new(SseEvent::ready(
            0,
            GAP,
            String::new(),
            json!({ "after": self.last, "resumedAt": resumed_at }).to_string(),
        ))
    }
}

/// The id just before the first pending event (which follows a gap).
fn gap_end(pending: &VecDeque<Arc<SseEvent>>) -> u64 {
    pending.front().map_or(0, |e| e.id.saturating_sub(1))
}

/// An event's name, device and JSON; `None` for events the stream does not carry.
fn describe(event: &DeviceEvent, requests: &Requests) -> Option<(&'static str, String, Json)> {
    Some(match event {
        DeviceEvent::Registered { registration, .. } => (
            "REGISTRATION",
            registration.endpoint.clone(),
            awake_registration(registration),
        ),
        DeviceEvent::Updated { registration } => (
            "UPDATED",
            registration.endpoint.clone(),
            json!({ "registration": awake_registration(registration) }),
        ),
        DeviceEvent::Deregistered { endpoint, reason } => (
            "DEREGISTRATION",
            endpoint.clone(),
            json!({"endpoint": endpoint, "reason": reason_name(*reason)}),
        ),
        DeviceEvent::Awake { endpoint } => ("AWAKE", endpoint.clone(), json!({ "ep": endpoint })),
        DeviceEvent::Sleeping { endpoint } => {
            ("SLEEPING", endpoint.clone(), json!({ "ep": endpoint }))
        }
        // Kept with their values, their JSON built when read: `EventLog::push_later`.
        DeviceEvent::Notification { .. } | DeviceEvent::Send { .. } => return None,
        DeviceEvent::CommandResult {
            id,
            endpoint,
            operation,
            observation,
            outcome,
        } => {
            // A request made through the API is known with its path; others (MQTT,
            // campaigns) are shown without one.
            let shown = requests.shown_of(id.0);
            let mut data = json!({
                "ep": endpoint,
                "requestId": id.0.to_string(),
                "operation": operation,
            });
            if let Some(shown) = &shown {
                shown_fields(shown, &mut data);
            }
            if let Some(o) = observation {
                data["observation"] = json!(o.0);
            }
            let shown = shown.unwrap_or(Shown::Node(Path::ROOT));
            if let (Json::Object(d), Json::Object(r)) = (&mut data, result_json(&shown, outcome)) {
                d.extend(r);
            }
            ("COMMAND_RESULT", endpoint.clone(), data)
        }
        // The same bodies as the MQTT bridge's `up/bootstrap` and `up/firmware` data.
        DeviceEvent::Bootstrap {
            endpoint, stage, ..
        } => (
            "BOOTSTRAP",
            endpoint.clone(),
            data_of(envelope::bootstrap(endpoint, stage)),
        ),
        DeviceEvent::Firmware { endpoint, .. } => {
            let mut data = data_of(envelope::firmware(event)?);
            data["ep"] = json!(endpoint);
            ("FIRMWARE", endpoint.clone(), data)
        }
        DeviceEvent::ObservationEnded {
            endpoint,
            observation,
        } => (
            "OBSERVATION_ENDED",
            endpoint.clone(),
            json!({"ep": endpoint, "observation": observation.0}),
        ),
        DeviceEvent::AuthFailed {
            endpoint,
            peer,
            principal,
            reason,
        } => (
            "AUTH_FAILED",
            endpoint.clone(),
            json!({"ep": endpoint, "peer": peer, "principal": principal, "reason": reason}),
        ),
    })
}

/// The name of an event whose JSON waits for its first reader.
fn later_kind(event: &DeviceEvent) -> Option<&'static str> {
    match event {
        DeviceEvent::Notification { .. } => Some("NOTIFICATION"),
        DeviceEvent::Send { .. } => Some("SEND"),
        _ => None,
    }
}

/// The JSON of a notification or Send.
fn later_json(event: &DeviceEvent) -> Option<Json> {
    Some(match event {
        DeviceEvent::Notification {
            endpoint,
            observation,
            path,
            content,
            seq,
        } => match content {
            Content::Node(node) => json!({
                "ep": endpoint,
                "kind": "single",
                "res": path.to_string(),
                "val": node_json(path, node),
                "observation": observation.0,
                "seq": seq,
            }),
            Content::Records(records) => {
                let mut paths: Vec<String> = records.iter().map(|r| r.path.to_string()).collect();
                paths.dedup();
                json!({
                    "ep": endpoint,
                    "kind": "composite",
                    "paths": paths,
                    "val": records_json(records),
                    "observation": observation.0,
                    "seq": seq,
                })
            }
        },
        DeviceEvent::Send { endpoint, records } => {
            json!({"ep": endpoint, "val": records_json(records)})
        }
        _ => return None,
    })
}

/// At least the bytes of a value's JSON (`value_json`): a string with every character
/// JSON escapes counted six times, opaque as hex, anything else a fixed allowance.
fn value_bytes(v: &Value) -> usize {
    match v {
        Value::String(s) | Value::CoreLink(s) => {
            let escaped = s
                .bytes()
                .filter(|b| *b < 0x20 || *b == b'"' || *b == b'\\')
                .count();
            2 + s.len() + 5 * escaped
        }
        Value::Opaque(b) => 2 + 2 * b.len(),
        _ => 32,
    }
}

/// At least the bytes of a notification's or Send's values in JSON (the names, kinds and
/// types of each node or record included).
fn content_bytes(content: &Content) -> usize {
    match content {
        Content::Records(records) => records_bytes(records),
        Content::Node(node) => node_bytes(node),
    }
}

fn records_bytes(records: &[lwm2m::content::Record]) -> usize {
    records
        .iter()
        .map(|r| 128 + r.value.as_ref().map_or(0, value_bytes))
        .sum()
}

fn node_bytes(node: &Node) -> usize {
    let resource = |r: &Resource| match r {
        Resource::Single(v) => 96 + value_bytes(v),
        Resource::Multiple(m) => 96 + m.values().map(|v| 16 + value_bytes(v)).sum::<usize>(),
    };
    let instance = |i: &lwm2m::model::Instance| 64 + i.values().map(resource).sum::<usize>();
    64 + match node {
        Node::Object(o) => o.values().map(instance).sum(),
        Node::Instance(i) => instance(i),
        Node::Resource(r) => resource(r),
        Node::ResourceInstance(v) => 96 + value_bytes(v),
    }
}

/// A registration just sent or updated: a queue-mode device is awake (Leshan's `sleeping`).
fn awake_registration(reg: &crate::core::types::Registration) -> Json {
    let mut r = registration_json(reg);
    if reg.queue_mode {
        r["sleeping"] = json!(false);
    }
    r
}

/// The `data` of an MQTT envelope.
fn data_of(mut envelope: Json) -> Json {
    envelope
        .get_mut("data")
        .map(Json::take)
        .unwrap_or(Json::Null)
}

fn reason_name(r: DeregisterReason) -> &'static str {
    match r {
        DeregisterReason::Requested => "requested",
        DeregisterReason::Expired => "expired",
        DeregisterReason::Replaced => "replaced",
        DeregisterReason::Revoked => "revoked",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_with(n: u64, retention: usize) -> Arc<EventLog> {
        let log = Arc::new(EventLog::new(retention));
        for i in 0..n {
            log.push("AWAKE", format!("ep{}", i % 2), json!({"i": i}));
        }
        log
    }

    /// The id of the `n`th event pushed (from 1).
    fn nth(log: &EventLog, pushed: u64, n: u64) -> u64 {
        log.newest() - pushed + n
    }

    fn cursor(log: &Arc<EventLog>, after: u64, ep: Option<&str>) -> Cursor {
        log.streams.fetch_add(1, Ordering::Relaxed);
        let (rx, after, live_from) = log.subscribe(after);
        Cursor {
            log: log.clone(),
            rx,
            last: after,
            live_from,
            pending: VecDeque::new(),
            ep: ep.map(str::to_string),
            _slot: StreamSlot(log.clone()),
        }
    }

    #[tokio::test]
    async fn a_stream_resumes_after_its_last_event_then_goes_live_without_gap_or_repeat() {
        let log = log_with(10, 100);
        let mut c = cursor(&log, nth(&log, 10, 4), None);
        for want in 5..=10 {
            assert_eq!(c.next().await.unwrap().id, nth(&log, 10, want));
        }
        log.push("SLEEPING", "ep0".into(), json!({}));
        assert_eq!(c.next().await.unwrap().id, nth(&log, 11, 11));
    }

    #[tokio::test]
    async fn a_new_stream_starts_with_what_happens_next() {
        let log = log_with(10, 100);
        let mut c = cursor(&log, u64::MAX, None);
        log.push("SLEEPING", "ep0".into(), json!({}));
        let e = c.next().await.unwrap();
        assert_eq!((e.id, e.kind), (log.newest(), "SLEEPING"));
    }

    #[tokio::test]
    async fn the_endpoint_filter_keeps_one_device() {
        let log = log_with(6, 100);
        let mut c = cursor(&log, nth(&log, 6, 0), Some("ep1"));
        let mut ids = Vec::new();
        for _ in 0..3 {
            ids.push(c.next().await.unwrap().id);
        }
        assert_eq!(ids, [2, 4, 6].map(|n| nth(&log, 6, n)));
    }

    #[tokio::test]
    async fn a_subscriber_far_behind_the_live_channel_reads_the_retained_events() {
        let log = log_with(0, 100_000);
        let mut c = cursor(&log, u64::MAX, None);
        let n = LIVE_CAPACITY as u64 + 100;
        // More than the live channel holds arrive before the stream reads any.
        for i in 0..n {
            log.push("AWAKE", "ep".into(), json!({ "i": i }));
        }
        for want in 1..=n {
            assert_eq!(c.next().await.unwrap().id, nth(&log, n, want));
        }
    }

    #[tokio::test]
    async fn resuming_from_before_the_retained_events_or_a_restart_says_gap_first() {
        let log = log_with(10, 3);
        // Events 1..=7 were dropped: a client that saw 2 learns it, then gets 8, 9, 10.
        let mut c = cursor(&log, nth(&log, 10, 2), None);
        let gap = c.next().await.unwrap();
        assert_eq!((gap.kind, gap.id), (GAP, 0));
        for want in 8..=10 {
            assert_eq!(c.next().await.unwrap().id, nth(&log, 10, want));
        }
        // An id from before a restart is older than every id of this run.
        let mut c = cursor(&log, 17, None);
        assert_eq!(c.next().await.unwrap().kind, GAP);
        assert_eq!(c.next().await.unwrap().id, nth(&log, 10, 8));
    }

    #[test]
    fn retention_keeps_the_newest_by_count_and_by_bytes() {
        let log = log_with(10, 3);
        let ids: Vec<u64> = log.since(0, 100).iter().map(|e| e.id).collect();
        assert_eq!(ids, [8, 9, 10].map(|n| nth(&log, 10, n)));
        drop(cursor(&log, 0, None));
        assert_eq!(log.streams.load(Ordering::Relaxed), 0);
        let log = EventLog::new(1_000_000);
        let big = "x".repeat(1 << 20);
        for _ in 0..100 {
            log.push("SEND", "ep".into(), json!({ "v": big }));
        }
        let kept = log.since(0, usize::MAX).len();
        assert!((60..=64).contains(&kept), "{kept}");
    }

    #[test]
    fn values_kept_for_later_count_against_the_byte_bound_and_build_their_json_once_read() {
        let log = EventLog::new(1_000_000);
        let send = |b: u8| DeviceEvent::Send {
            endpoint: "ep".into(),
            records: vec![lwm2m::content::Record {
                path: Path::resource(3, 0, 0),
                value: Some(Value::Opaque(vec![b; 1 << 20])),
                time: None,
            }],
        };
        for i in 0..100u8 {
            log.push_later("SEND", send(i));
        }
        // 1 MiB of opaque is 2 MiB of hex in JSON, counted twice (values and JSON): 64 MiB
        // hold 15 of them.
        let kept = log.since(0, usize::MAX);
        assert!((14..=16).contains(&kept.len()), "{}", kept.len());
        let newest = kept.last().unwrap();
        let json: Json = serde_json::from_str(newest.data()).unwrap();
        assert_eq!(json["ep"], "ep");
        assert_eq!(json, later_json(&send(99)).unwrap());
    }

    #[test]
    fn what_an_event_kept_for_later_counts_covers_its_json() {
        use lwm2m::model::{Instance, Resource};
        let nasty = "\u{1}\"\\".repeat(300);
        let values = [
            Value::String(nasty.clone()),
            Value::CoreLink(nasty),
            Value::Opaque(vec![0xff; 777]),
            Value::Float(-1.234_567_890_123e-300),
            Value::Integer(i64::MIN),
            Value::Boolean(false),
            Value::Time(i64::MAX),
            Value::ObjectLink(lwm2m::model::ObjectLink {
                object: 65535,
                instance: 65535,
            }),
        ];
        let records = values
            .iter()
            .enumerate()
            .map(|(i, v)| lwm2m::content::Record {
                path: Path::resource_instance(65535, 65535, 65535, i as u16),
                value: Some(v.clone()),
                time: None,
            })
            .collect::<Vec<_>>();
        let multi: std::collections::BTreeMap<u16, Value> = values
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, v)| (i as u16, v))
            .collect();
        let instance: Instance = [(1u16, Resource::Multiple(multi))]
            .into_iter()
            .chain(
                values
                    .iter()
                    .cloned()
                    .enumerate()
                    .map(|(i, v)| (100 + i as u16, Resource::Single(v))),
            )
            .collect();
        let events = [
            DeviceEvent::Send {
                endpoint: "ep".into(),
                records,
            },
            DeviceEvent::Notification {
                endpoint: "ep".into(),
                observation: crate::core::types::ObservationId(u64::MAX),
                path: Path::object(65535),
                content: Content::Node(Node::Object([(65535u16, instance)].into_iter().collect())),
                seq: Some(u32::MAX),
            },
        ];
        let log = EventLog::new(10);
        for e in events {
            log.push_later(later_kind(&e).unwrap(), e);
        }
        for e in log.since(0, 10) {
            assert!(
                e.charge >= 2 * e.data().len(),
                "{} < 2 x {}",
                e.charge,
                e.data().len()
            );
        }
    }
}
