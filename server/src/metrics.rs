//! The server's counters, gauges and latency histograms, and their OpenMetrics text
//! exposition (OpenMetrics 1.0, which Prometheus scrapes) for `GET /metrics` (see
//! [`crate::http`]), encoded by the `prometheus-client` crate.
//!
//! The numbers are counted where the facts are, in the protocol stack ([`crate::stack`]):
//! device events as the core emits them (before they are broadcast, so a lagging subscriber
//! cannot make the counts lose events), DTLS handshakes where the stack handles the engine's
//! events, datagrams where the stack takes them in and hands them out, a registration's
//! latency where its answer leaves the hold; command latencies and queue figures on the
//! server task's runtime. Counters and gauges are relaxed atomics shared with the HTTP task:
//! counting costs one uncontended add on the server task, and a scrape never waits for it.
//! Histograms take a short uncontended lock per observation. Failed handshakes by reason sit
//! in a small map behind a mutex, taken only when a handshake fails (after a cookie round
//! trip, so from a real address).
//!
//! Each server has its own [`Registry`] (no process-wide registry or recorder), so two
//! servers in one process, as the end-to-end tests run them, keep their numbers apart.
//! What other parts keep (the store writer's counters, the MQTT bridge's, the ages of the
//! oldest queued command and outbox message) is read at scrape time by a collector.
//!
//! Counters are registered without `_total`: the encoder adds it to the sample's name, so
//! the series keep the names dashboards know (`lwm2m_registrations_total`, ...).
use crate::bridge::outbox::{Shared as BridgeShared, LATENCY_BUCKETS};
use crate::core::types::{
    BootstrapStage, CommandError, DeregisterReason, DeviceEvent, FirmwareOutcome, FirmwarePhase,
};
use crate::store::StoreStats;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::TypedMetric;
use prometheus_client::registry::{Registry, Unit};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The `Content-Type` of [`Metrics::render`]'s text (OpenMetrics 1.0).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// One label of a series: (name, value), both from fixed sets.
type Label = [(&'static str, &'static str); 1];
/// A gauge of a count.
type CountGauge = Gauge<u64, AtomicU64>;
/// Histograms by label, each with the latency buckets.
type Histograms = Family<Label, Histogram, fn() -> Histogram>;

/// The `reason` label of `lwm2m_provisioning_failures_total`: the bootstrap step that failed
/// (its operation, without the path, so the set stays fixed), the credential install after
/// a bootstrap, or why a registration was refused for who the device is.
const PROVISIONING_REASONS: [&str; 11] = [
    "bootstrap_request",
    "bootstrap_pack",
    "bootstrap_discover",
    "bootstrap_read",
    "bootstrap_delete",
    "bootstrap_write",
    "bootstrap_finish",
    "bootstrap_other",
    "credential_install",
    "endpoint_mismatch",
    "dtls_required",
];

/// The provisioning failure `event` reports, as a [`PROVISIONING_REASONS`] name.
fn provisioning_failure(event: &DeviceEvent) -> Option<&'static str> {
    match event {
        // A credential bound to another endpoint name.
        DeviceEvent::AuthFailed {
            principal: Some(_), ..
        } => Some("endpoint_mismatch"),
        // A device with a credential that came over NoSec.
        DeviceEvent::AuthFailed {
            principal: None, ..
        } => Some("dtls_required"),
        DeviceEvent::Bootstrap {
            stage: BootstrapStage::Failed { step, .. },
            ..
        } => Some(match step.split(' ').next().unwrap_or_default() {
            "request" => "bootstrap_request",
            "pack" => "bootstrap_pack",
            "discover" => "bootstrap_discover",
            "read" => "bootstrap_read",
            "delete" => "bootstrap_delete",
            "write" => "bootstrap_write",
            "finish" => "bootstrap_finish",
            "install" => "credential_install",
            _ => "bootstrap_other",
        }),
        _ => None,
    }
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// The live metrics of one server. Written by the server task, read by scrapes.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    registrations: Counter,
    registration_updates: Counter,
    /// Registers that replaced a registration the device had not ended.
    reregistrations: Counter,
    /// By [`DeregisterReason`]: requested, expired, replaced, revoked.
    deregistrations: [Counter; 4],
    /// Set from the core's registration table after every batch of events (a gauge kept by
    /// increments could drift if an event kind were missed; the table cannot).
    registered_clients: CountGauge,
    notifications: Counter,
    sends: Counter,
    /// By result: success, failure, timeout.
    commands: [Counter; 3],
    auth_failures: Counter,
    /// By result: ok, failed.
    dtls_handshakes: [Counter; 2],
    /// Failed handshakes by the engine's failure label (`dtls::HandshakeError::label`).
    dtls_failures_family: Family<Label, Counter>,
    /// The same series, by label, for [`snapshot`](Self::snapshot): a fixed set of static
    /// names, so the map is bounded by the engine's failure kinds. Locked only when a
    /// handshake fails and when a snapshot reads it.
    dtls_handshake_failures: Mutex<BTreeMap<&'static str, Counter>>,
    /// Set from the DTLS engine's session table, for the same reason as `registered_clients`.
    dtls_sessions: CountGauge,
    /// The bootstrap server's DTLS sessions, kept apart from the LwM2M server's.
    bootstrap_dtls_sessions: CountGauge,
    bootstraps_started: Counter,
    /// By result: finished, failed.
    bootstraps: [Counter; 2],
    /// By transport: udp, dtls.
    datagrams_received: [Counter; 2],
    datagrams_sent: [Counter; 2],
    /// Datagrams between cluster nodes, by [`ClusterCount`].
    cluster_datagrams: [Counter; 5],
    /// Devices' shared state between cluster nodes, by [`ClusterDevices`].
    cluster_devices: [Counter; 4],
    /// Firmware updates ended, by outcome, in the order of [`FirmwareOutcome::NAMES`].
    firmware_updates: Vec<Counter>,
    /// Devices in firmware campaigns by phase, in the order of [`FirmwarePhase::ALL`], set
    /// from the campaigns' table like `registered_clients`.
    firmware_devices: Vec<CountGauge>,
    /// In the order of [`PROVISIONING_REASONS`].
    provisioning_failures: Vec<Counter>,
    /// From a Register or Update's arrival to its answer leaving the server.
    registration_duration: Histogram,
    registration_answers: AtomicU64,
    /// From a command's submission to its result, by operation.
    command_duration: Histograms,
    command_results_timed: AtomicU64,
    /// Commands queued for sleeping devices or in flight.
    commands_pending: CountGauge,
    /// Shared with the scrape-time collector.
    scraped: Arc<AtScrape>,
}

/// Which socket group a datagram went through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Plain CoAP (NoSec).
    Udp,
    /// CoAP over DTLS (handshake datagrams included).
    Dtls,
}

impl Transport {
    fn index(self) -> usize {
        match self {
            Transport::Udp => 0,
            Transport::Dtls => 1,
        }
    }
}

/// What [`Metrics::cluster_devices`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterDevices {
    /// A device another node held (or that no node held) taken over from the shared store.
    TakenOver,
    /// A device another node took over, forgotten here.
    HandedOver,
    /// Writes to the shared store refused: this node no longer owned the device.
    WritesRefused,
    /// Writes to the shared store lost: it could not be reached, or the queue to it was full.
    WritesFailed,
}

impl ClusterDevices {
    /// Every kind, in the order of their label names.
    pub const NAMES: [&'static str; 4] = [
        "taken_over",
        "handed_over",
        "writes_refused",
        "writes_failed",
    ];
}

/// What [`Metrics::cluster_datagram`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterCount {
    /// A device's datagram passed on to the node holding its session.
    Forwarded,
    /// A device's datagram another node passed on, for a session here.
    Taken,
    /// An answer sent back through the node the device's datagrams arrive at.
    AnsweredThrough,
    /// An answer another node asked this node to send to a device.
    SentFor,
    /// An internal datagram refused (not authenticated, malformed, unknown node).
    Rejected,
}

impl ClusterCount {
    /// Every kind, in the order of their label names.
    pub const NAMES: [&'static str; 5] = [
        "forwarded",
        "taken",
        "answered_through",
        "sent_for",
        "rejected",
    ];

    /// Its index in [`NAMES`](Self::NAMES).
    pub fn index(self) -> usize {
        self as usize
    }
}

/// What a scrape reads from elsewhere, and the ages it computes at its own time.
#[derive(Debug)]
struct AtScrape {
    /// When the oldest unanswered command was submitted, while any command is queued. Set
    /// once per input the server task handles, read by scrapes: both hold it for a copy.
    oldest_command: Mutex<Option<Instant>>,
    /// The store writer's counters.
    store: Option<Arc<StoreStats>>,
    /// The MQTT bridge's numbers, when it runs.
    mqtt: Option<Arc<BridgeShared>>,
}

impl AtScrape {
    fn oldest_command_age(&self, now: Instant) -> Option<Duration> {
        let at = (*self.oldest_command.lock().ok()?)?;
        Some(now.saturating_duration_since(at))
    }
}

fn const_counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let c = ConstCounter::new(v);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

fn const_gauge<T>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    v: T,
) -> std::fmt::Result
where
    ConstGauge<T>: EncodeMetric + TypedMetric,
{
    let g = ConstGauge::new(v);
    g.encode(e.encode_descriptor(name, help, unit, g.metric_type())?)
}

impl Collector for AtScrape {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let now = Instant::now();
        let e = &mut e;
        let age = self.oldest_command_age(now).unwrap_or_default();
        const_gauge(
            e,
            "lwm2m_command_queue_oldest_age",
            "While commands wait for sleeping devices: how long ago the oldest command not yet answered (queued or in flight) was submitted; 0 when none is queued. Commands queued before a restart are not included.",
            Some(&Unit::Seconds),
            age.as_secs_f64(),
        )?;
        let load = |a: &AtomicU64| a.load(Relaxed);
        let (writes, commits) = self
            .store
            .as_ref()
            .map_or((0, 0), |s| (load(&s.writes), load(&s.commits)));
        const_counter(
            e,
            "lwm2m_store_writes",
            "Writes applied to the store.",
            writes,
        )?;
        const_counter(
            e,
            "lwm2m_store_commits",
            "Store transactions committed (writes per commit is the group commit's batching).",
            commits,
        )?;
        let Some(m) = &self.mqtt else {
            return Ok(());
        };
        let s = &m.stats;
        const_counter(
            e,
            "mqtt_published",
            "MQTT messages handed to the MQTT client (again after a reconnect if unacknowledged).",
            load(&s.published),
        )?;
        const_counter(
            e,
            "mqtt_acknowledged",
            "MQTT messages the broker acknowledged.",
            load(&s.acked),
        )?;
        const_counter(
            e,
            "mqtt_dropped",
            "MQTT messages lost: dropped because the outbox was full, or refused by the broker.",
            load(&s.dropped),
        )?;
        const_counter(
            e,
            "lwm2m_mqtt_notifications_refused",
            "Notifications left unacknowledged to their device (which retransmits them) because the MQTT outbox was full.",
            load(&s.notifications_refused),
        )?;
        const_counter(
            e,
            "lwm2m_mqtt_sends_refused",
            "LwM2M Sends left unacknowledged to their device (which retransmits them) because the MQTT outbox was full.",
            load(&s.sends_refused),
        )?;
        let outbox = load(&s.outbox_len);
        const_gauge(
            e,
            "mqtt_outbox_messages",
            "MQTT messages in the outbox, not yet acknowledged by the broker.",
            None,
            outbox,
        )?;
        const_gauge(
            e,
            "lwm2m_mqtt_outbox_messages",
            "MQTT messages in the outbox, not yet acknowledged by the broker (same as mqtt_outbox_messages).",
            None,
            outbox,
        )?;
        let age = m
            .oldest_queued()
            .map(|at| now.saturating_duration_since(at))
            .unwrap_or_default();
        const_gauge(
            e,
            "lwm2m_mqtt_outbox_oldest_age",
            "How long the oldest message in the MQTT outbox has waited (messages stored by an earlier run count from this run's start); 0 when it is empty.",
            Some(&Unit::Seconds),
            age.as_secs_f64(),
        )?;
        const_counter(
            e,
            "lwm2m_mqtt_reconnects",
            "Connections to the MQTT broker made again after the bridge lost it.",
            load(&s.reconnects),
        )
    }
}

fn counter(r: &mut Registry, name: &str, help: &str) -> Counter {
    let c = Counter::default();
    r.register(name, help, c.clone());
    c
}

fn gauge(r: &mut Registry, name: &str, help: &str) -> CountGauge {
    let g = CountGauge::default();
    r.register(name, help, g.clone());
    g
}

/// A family with one series per value of `label`, all shown from the start (at 0).
fn by_label<M, const N: usize>(
    r: &mut Registry,
    name: &str,
    help: &str,
    label: &'static str,
    values: [&'static str; N],
) -> [M; N]
where
    M: Default + Clone + EncodeMetric + TypedMetric + std::fmt::Debug + Send + Sync + 'static,
{
    let family = Family::<Label, M>::default();
    r.register(name, help, family.clone());
    values.map(|v| family.get_or_create_owned(&[(label, v)]))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::build(None, None)
    }
}

impl Metrics {
    /// Metrics at zero that also report the store's and, if given, the MQTT bridge's.
    pub fn new(store: Arc<StoreStats>, mqtt: Option<Arc<BridgeShared>>) -> Self {
        Self::build(Some(store), mqtt)
    }

    fn build(store: Option<Arc<StoreStats>>, mqtt: Option<Arc<BridgeShared>>) -> Self {
        let mut r = Registry::default();
        let r = &mut r;
        let registrations = counter(
            r,
            "lwm2m_registrations",
            "Registers accepted, re-registrations included",
        );
        let registration_updates = counter(
            r,
            "lwm2m_registration_updates",
            "Registration Updates accepted",
        );
        let reregistrations = counter(
            r,
            "lwm2m_reregistrations",
            "Registers of a device that was still registered (it came back without de-registering)",
        );
        let deregistrations = by_label(
            r,
            "lwm2m_deregistrations",
            "Registrations ended, by reason",
            "reason",
            ["requested", "expired", "replaced", "revoked"],
        );
        let registered_clients = gauge(r, "lwm2m_registered_clients", "Devices registered now");
        let bootstraps = by_label(
            r,
            "lwm2m_bootstraps",
            "Bootstraps ended, by result (finished: the device holds its account)",
            "result",
            ["finished", "failed"],
        );
        let updates = Family::<Label, Counter>::default();
        r.register(
            "lwm2m_firmware_updates",
            "Firmware updates ended, by outcome",
            updates.clone(),
        );
        let firmware_updates = FirmwareOutcome::NAMES
            .iter()
            .map(|n| updates.get_or_create_owned(&[("outcome", n)]))
            .collect();
        let devices = Family::<Label, CountGauge>::default();
        r.register(
            "lwm2m_firmware_devices",
            "Devices in firmware update campaigns, by phase",
            devices.clone(),
        );
        let firmware_devices = FirmwarePhase::ALL
            .iter()
            .map(|p| devices.get_or_create_owned(&[("phase", p.as_str())]))
            .collect();
        let bootstraps_started =
            counter(r, "lwm2m_bootstraps_started", "Bootstrap-Requests accepted");
        let bootstrap_dtls_sessions = gauge(
            r,
            "lwm2m_bootstrap_dtls_sessions",
            "The bootstrap server's established DTLS sessions",
        );
        let notifications = counter(
            r,
            "lwm2m_notifications",
            "Notifications received from devices",
        );
        let sends = counter(
            r,
            "lwm2m_send",
            "LwM2M Send operations received from devices",
        );
        let commands = by_label(
            r,
            "lwm2m_commands",
            "Commands ended, by result",
            "result",
            ["success", "failure", "timeout"],
        );
        let auth_failures = counter(
            r,
            "lwm2m_auth_failures",
            "Registrations refused for who the device is: endpoint name not bound to its credential, or a provisioned device over NoSec",
        );
        let failures = Family::<Label, Counter>::default();
        r.register(
            "lwm2m_provisioning_failures",
            "Provisioning failures, by reason: the bootstrap step that failed, the credential install after a bootstrap, a registration refused for who the device is",
            failures.clone(),
        );
        let provisioning_failures = PROVISIONING_REASONS
            .iter()
            .map(|n| failures.get_or_create_owned(&[("reason", n)]))
            .collect();
        let dtls_handshakes = by_label(
            r,
            "dtls_handshakes",
            "DTLS handshakes ended, by result (resumptions count as ok)",
            "result",
            ["ok", "failed"],
        );
        let dtls_failures_family = Family::<Label, Counter>::default();
        r.register(
            "dtls_handshake_failures",
            "DTLS handshakes failed, by reason (the engine's failure kinds seen so far)",
            dtls_failures_family.clone(),
        );
        let dtls_sessions = gauge(r, "dtls_sessions", "Established DTLS sessions");
        let datagrams_received = by_label(
            r,
            "coap_datagrams_received",
            "UDP datagrams received on the CoAP (udp) and CoAP-over-DTLS (dtls) sockets",
            "transport",
            ["udp", "dtls"],
        );
        let datagrams_sent = by_label(
            r,
            "coap_datagrams_sent",
            "UDP datagrams sent on the CoAP (udp) and CoAP-over-DTLS (dtls) sockets",
            "transport",
            ["udp", "dtls"],
        );
        let cluster_datagrams = by_label(
            r,
            "lwm2m_cluster_datagrams",
            "Datagrams that went between cluster nodes: devices' datagrams forwarded to the node holding their session and taken from other nodes, answers sent back through the receiving node and sent for another node, internal datagrams rejected",
            "kind",
            ClusterCount::NAMES,
        );
        let cluster_devices = by_label(
            r,
            "lwm2m_cluster_devices",
            "Devices' state shared between cluster nodes: devices taken over from the shared store, devices handed over to another node, writes the shared store refused (the device had moved) or that were lost (store unreachable)",
            "kind",
            ClusterDevices::NAMES,
        );
        let registration_duration = latency_histogram();
        r.register_with_unit(
            "lwm2m_registration_duration",
            "From a Register or Update datagram's arrival to its answer leaving the server (after the store made what it caused durable)",
            Unit::Seconds,
            registration_duration.clone(),
        );
        let command_duration: Histograms = Family::new_with_constructor(latency_histogram);
        r.register_with_unit(
            "lwm2m_command_duration",
            "From a command's submission (API, MQTT downlink, firmware campaign) to its result, by operation; commands submitted before a restart are not included",
            Unit::Seconds,
            command_duration.clone(),
        );
        let commands_pending = gauge(
            r,
            "lwm2m_commands_pending",
            "Commands not yet answered: queued for sleeping devices, or sent and awaiting the answer",
        );
        if let Some(m) = &mqtt {
            r.register_with_unit(
                "lwm2m_notification_to_mqtt",
                "From a notification's arrival to the MQTT broker's acknowledgement of its message (notifications stored by an earlier run are not included)",
                Unit::Seconds,
                m.notification_latency.clone(),
            );
            r.register_with_unit(
                "lwm2m_mqtt_reconnect_duration",
                "From the MQTT bridge losing the broker to being connected again",
                Unit::Seconds,
                m.reconnect_duration.clone(),
            );
        }
        let scraped = Arc::new(AtScrape {
            oldest_command: Mutex::new(None),
            store,
            mqtt,
        });
        r.register_collector(Box::new(scraped.clone()));
        Self {
            registry: std::mem::take(r),
            registrations,
            registration_updates,
            reregistrations,
            deregistrations,
            registered_clients,
            notifications,
            sends,
            commands,
            auth_failures,
            dtls_handshakes,
            dtls_failures_family,
            dtls_handshake_failures: Mutex::new(BTreeMap::new()),
            dtls_sessions,
            bootstrap_dtls_sessions,
            bootstraps_started,
            bootstraps,
            datagrams_received,
            datagrams_sent,
            cluster_datagrams,
            cluster_devices,
            firmware_updates,
            firmware_devices,
            provisioning_failures,
            registration_duration,
            registration_answers: AtomicU64::new(0),
            command_duration,
            command_results_timed: AtomicU64::new(0),
            commands_pending,
            scraped,
        }
    }

    /// Counts a device event (called for every event the core emits).
    pub fn on_event(&self, event: &DeviceEvent) {
        if let Some(reason) = provisioning_failure(event) {
            let i = PROVISIONING_REASONS.iter().position(|r| *r == reason);
            if let Some(c) = i.and_then(|i| self.provisioning_failures.get(i)) {
                c.inc();
            }
        }
        let counter = match event {
            DeviceEvent::Registered { replaced, .. } => {
                if *replaced {
                    self.reregistrations.inc();
                }
                &self.registrations
            }
            DeviceEvent::Updated { .. } => &self.registration_updates,
            DeviceEvent::Deregistered { reason, .. } => {
                &self.deregistrations[match reason {
                    DeregisterReason::Requested => 0,
                    DeregisterReason::Expired => 1,
                    DeregisterReason::Replaced => 2,
                    DeregisterReason::Revoked => 3,
                }]
            }
            DeviceEvent::Notification { .. } => &self.notifications,
            DeviceEvent::Send { .. } => &self.sends,
            DeviceEvent::CommandResult { outcome, .. } => {
                &self.commands[match outcome {
                    Ok(_) => 0,
                    Err(CommandError::Timeout) => 2,
                    Err(_) => 1,
                }]
            }
            DeviceEvent::AuthFailed { .. } => &self.auth_failures,
            DeviceEvent::Bootstrap { stage, .. } => match stage {
                BootstrapStage::Started => &self.bootstraps_started,
                BootstrapStage::Finished { .. } => &self.bootstraps[0],
                BootstrapStage::Failed { .. } => &self.bootstraps[1],
            },
            DeviceEvent::Firmware {
                phase: FirmwarePhase::Done,
                outcome: Some(o),
                ..
            } => {
                let i = FirmwareOutcome::NAMES.iter().position(|n| *n == o.as_str());
                match i.and_then(|i| self.firmware_updates.get(i)) {
                    Some(c) => c,
                    None => return,
                }
            }
            DeviceEvent::Awake { .. }
            | DeviceEvent::Sleeping { .. }
            | DeviceEvent::ObservationEnded { .. }
            | DeviceEvent::Firmware { .. } => return,
        };
        counter.inc();
    }

    /// Sets the number of devices in firmware campaigns in each phase.
    pub fn set_firmware_devices(&self, by_phase: &BTreeMap<FirmwarePhase, usize>) {
        for (phase, gauge) in FirmwarePhase::ALL.iter().zip(&self.firmware_devices) {
            gauge.set(as_u64(by_phase.get(phase).copied().unwrap_or(0)));
        }
    }

    /// Sets the number of current registrations.
    pub fn set_registered_clients(&self, n: usize) {
        self.registered_clients.set(as_u64(n));
    }

    /// Counts a DTLS handshake that ended: established (a resumption included) or failed.
    pub fn dtls_handshake(&self, ok: bool) {
        self.dtls_handshakes[usize::from(!ok)].inc();
    }

    /// Counts a failed DTLS handshake under `reason`, the engine's label for why it failed.
    pub fn dtls_handshake_failed(&self, reason: &'static str) {
        self.dtls_handshake(false);
        if let Ok(mut by) = self.dtls_handshake_failures.lock() {
            by.entry(reason)
                .or_insert_with(|| {
                    self.dtls_failures_family
                        .get_or_create_owned(&[("reason", reason)])
                })
                .inc();
        }
    }

    /// Sets the number of established DTLS sessions.
    pub fn set_dtls_sessions(&self, n: usize) {
        self.dtls_sessions.set(as_u64(n));
    }

    /// Sets the number of the bootstrap server's established DTLS sessions.
    pub fn set_bootstrap_dtls_sessions(&self, n: usize) {
        self.bootstrap_dtls_sessions.set(as_u64(n));
    }

    /// Counts a datagram received on a CoAP or CoAPs socket.
    pub fn datagram_received(&self, t: Transport) {
        self.datagrams_received[t.index()].inc();
    }

    /// Counts a datagram handed to a CoAP or CoAPs socket.
    pub fn datagram_sent(&self, t: Transport) {
        self.datagrams_sent[t.index()].inc();
    }

    /// Counts a datagram between cluster nodes.
    pub fn cluster_datagram(&self, kind: ClusterCount) {
        if let Some(c) = self.cluster_datagrams.get(kind.index()) {
            c.inc();
        }
    }

    /// Counts an event of the devices' shared state.
    pub fn cluster_devices(&self, kind: ClusterDevices, n: u64) {
        if let Some(c) = self.cluster_devices.get(kind as usize) {
            c.inc_by(n);
        }
    }

    /// The answer to a Register or Update left, `took` after the request arrived.
    pub fn registration_answered(&self, took: Duration) {
        self.registration_duration.observe(took.as_secs_f64());
        self.registration_answers.fetch_add(1, Relaxed);
    }

    /// A command of `operation` got its result, `took` after it was submitted.
    pub fn command_finished(&self, operation: &'static str, took: Duration) {
        self.command_duration
            .get_or_create(&[("operation", operation)])
            .observe(took.as_secs_f64());
        self.command_results_timed.fetch_add(1, Relaxed);
    }

    /// Sets the commands not yet answered (`pending`: queued and in flight) and, while any is
    /// queued, when the oldest unanswered one was submitted.
    pub fn set_command_queue(&self, pending: usize, oldest: Option<Instant>) {
        self.commands_pending.set(as_u64(pending));
        if let Ok(mut at) = self.scraped.oldest_command.lock() {
            if *at != oldest {
                *at = oldest;
            }
        }
    }

    /// The OpenMetrics text of every family, ending with `# EOF`.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8192);
        // Writing to a String cannot fail; a collector's error would only cut the text short.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "encoding the metrics failed");
        }
        out
    }

    /// The numbers now. Each is read on its own (relaxed), so two that move together may be
    /// one event apart: fine for monitoring, which is all they are for.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let get = |a: &AtomicU64| a.load(Relaxed);
        let s = &self.scraped;
        MetricsSnapshot {
            registrations: self.registrations.get(),
            registration_updates: self.registration_updates.get(),
            reregistrations: self.reregistrations.get(),
            deregistrations_requested: self.deregistrations[0].get(),
            deregistrations_expired: self.deregistrations[1].get(),
            deregistrations_replaced: self.deregistrations[2].get(),
            deregistrations_revoked: self.deregistrations[3].get(),
            registered_clients: self.registered_clients.get(),
            notifications: self.notifications.get(),
            sends: self.sends.get(),
            commands_success: self.commands[0].get(),
            commands_failure: self.commands[1].get(),
            commands_timeout: self.commands[2].get(),
            auth_failures: self.auth_failures.get(),
            dtls_handshakes_ok: self.dtls_handshakes[0].get(),
            dtls_handshakes_failed: self.dtls_handshakes[1].get(),
            dtls_handshake_failures: self
                .dtls_handshake_failures
                .lock()
                .map(|by| by.iter().map(|(k, v)| (*k, v.get())).collect())
                .unwrap_or_default(),
            dtls_sessions: self.dtls_sessions.get(),
            bootstrap_dtls_sessions: self.bootstrap_dtls_sessions.get(),
            bootstraps_started: self.bootstraps_started.get(),
            bootstraps_finished: self.bootstraps[0].get(),
            bootstraps_failed: self.bootstraps[1].get(),
            coap_datagrams_received_udp: self.datagrams_received[0].get(),
            coap_datagrams_received_dtls: self.datagrams_received[1].get(),
            coap_datagrams_sent_udp: self.datagrams_sent[0].get(),
            coap_datagrams_sent_dtls: self.datagrams_sent[1].get(),
            cluster_datagrams: ClusterCount::NAMES
                .iter()
                .copied()
                .zip(self.cluster_datagrams.iter().map(Counter::get))
                .collect(),
            cluster_devices: ClusterDevices::NAMES
                .iter()
                .copied()
                .zip(self.cluster_devices.iter().map(Counter::get))
                .collect(),
            firmware_updates: FirmwareOutcome::NAMES
                .iter()
                .zip(&self.firmware_updates)
                .map(|(n, c)| (*n, c.get()))
                .collect(),
            firmware_devices: FirmwarePhase::ALL
                .iter()
                .zip(&self.firmware_devices)
                .map(|(p, g)| (p.as_str(), g.get()))
                .collect(),
            provisioning_failures: PROVISIONING_REASONS
                .iter()
                .zip(&self.provisioning_failures)
                .map(|(n, c)| (*n, c.get()))
                .collect(),
            registration_answers: get(&self.registration_answers),
            command_results_timed: get(&self.command_results_timed),
            commands_pending: self.commands_pending.get(),
            command_queue_oldest_age: s.oldest_command_age(Instant::now()),
            store_writes: s.store.as_ref().map_or(0, |s| get(&s.writes)),
            store_commits: s.store.as_ref().map_or(0, |s| get(&s.commits)),
            mqtt: s.mqtt.as_ref().map(|m| MqttSnapshot {
                published: get(&m.stats.published),
                acknowledged: get(&m.stats.acked),
                dropped: get(&m.stats.dropped),
                outbox_messages: get(&m.stats.outbox_len),
                notifications_timed: get(&m.stats.notifications_timed),
                reconnects: get(&m.stats.reconnects),
                notifications_refused: get(&m.stats.notifications_refused),
                sends_refused: get(&m.stats.sends_refused),
            }),
        }
    }
}

fn as_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// The server's numbers at one moment ([`crate::ServerHandle::metrics`]): what `/metrics`
/// shows, as a plain struct (histograms by their number of observations). Counters count
/// since the server started; gauges are current.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// Registers accepted (a re-registration included).
    pub registrations: u64,
    /// Registers of a device still registered (it came back without de-registering).
    pub reregistrations: u64,
    /// Firmware updates ended, by outcome (OMA LwM2M TS 1.2 Core E.6).
    pub firmware_updates: Vec<(&'static str, u64)>,
    /// Gauge: devices in firmware campaigns, by phase.
    pub firmware_devices: Vec<(&'static str, u64)>,
    /// Registration Updates accepted.
    pub registration_updates: u64,
    /// Registrations ended by the device's De-register.
    pub deregistrations_requested: u64,
    /// Registrations that expired (lifetime and grace passed without an Update).
    pub deregistrations_expired: u64,
    /// Registrations replaced by a new Register of the same endpoint.
    pub deregistrations_replaced: u64,
    /// Registrations ended because the device's credential was revoked.
    pub deregistrations_revoked: u64,
    /// Gauge: devices registered now.
    pub registered_clients: u64,
    /// Notifications received from devices.
    pub notifications: u64,
    /// LwM2M Send operations received.
    pub sends: u64,
    /// Commands that ended in success.
    pub commands_success: u64,
    /// Commands that ended in an error other than a timeout (error code, expiry, ...).
    pub commands_failure: u64,
    /// Commands the device did not answer in time.
    pub commands_timeout: u64,
    /// Registrations refused for who the device is (endpoint not bound to its DTLS
    /// credential, or a device with a credential over NoSec).
    pub auth_failures: u64,
    /// Provisioning failures by reason (bootstrap step, credential install, refusal), every
    /// reason in a fixed order.
    pub provisioning_failures: Vec<(&'static str, u64)>,
    /// DTLS handshakes completed (resumptions included).
    pub dtls_handshakes_ok: u64,
    /// DTLS handshakes failed (wrong key, unknown identity, timeouts, ...).
    pub dtls_handshakes_failed: u64,
    /// Failed DTLS handshakes by reason (`wrong_psk`-like labels of the engine), those seen so
    /// far, in name order.
    pub dtls_handshake_failures: Vec<(&'static str, u64)>,
    /// Gauge: established DTLS sessions.
    pub dtls_sessions: u64,
    /// Datagrams between cluster nodes, by kind (every kind, in the order of
    /// [`ClusterCount::NAMES`]).
    pub cluster_datagrams: Vec<(&'static str, u64)>,
    /// Devices' shared state between cluster nodes, by kind (in the order of
    /// [`ClusterDevices::NAMES`]).
    pub cluster_devices: Vec<(&'static str, u64)>,
    /// Gauge: the bootstrap server's established DTLS sessions.
    pub bootstrap_dtls_sessions: u64,
    /// Bootstraps started (a Bootstrap-Request accepted).
    pub bootstraps_started: u64,
    /// Bootstraps finished: the device accepted Finish and its credential was installed.
    pub bootstraps_finished: u64,
    /// Bootstraps failed (a step refused or unanswered, a refused device).
    pub bootstraps_failed: u64,
    /// Datagrams received on the plain CoAP sockets.
    pub coap_datagrams_received_udp: u64,
    /// Datagrams received on the CoAP-over-DTLS sockets.
    pub coap_datagrams_received_dtls: u64,
    /// Datagrams sent on the plain CoAP sockets.
    pub coap_datagrams_sent_udp: u64,
    /// Datagrams sent on the CoAP-over-DTLS sockets.
    pub coap_datagrams_sent_dtls: u64,
    /// Observations of `lwm2m_registration_duration_seconds`: Register and Update answers
    /// timed.
    pub registration_answers: u64,
    /// Observations of `lwm2m_command_duration_seconds`: command results timed.
    pub command_results_timed: u64,
    /// Gauge: commands queued for sleeping devices or in flight.
    pub commands_pending: u64,
    /// While commands are queued: the age of the oldest command not yet answered.
    pub command_queue_oldest_age: Option<Duration>,
    /// Store writes applied.
    pub store_writes: u64,
    /// Store transactions committed.
    pub store_commits: u64,
    /// The MQTT bridge's numbers; `None` when the bridge is off.
    pub mqtt: Option<MqttSnapshot>,
}

/// The MQTT bridge's numbers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MqttSnapshot {
    /// Messages handed to the MQTT client (a message published again after a reconnect
    /// counts again).
    pub published: u64,
    /// Messages the broker acknowledged.
    pub acknowledged: u64,
    /// Messages dropped because the outbox was full.
    pub dropped: u64,
    /// Gauge: messages in the outbox (not yet acknowledged).
    pub outbox_messages: u64,
    /// Observations of `lwm2m_notification_to_mqtt_seconds`: notifications timed from
    /// arrival to the broker's acknowledgement.
    pub notifications_timed: u64,
    /// Connections to the broker made again after losing it.
    pub reconnects: u64,
    /// Notifications left unacknowledged to their device because the outbox was full.
    pub notifications_refused: u64,
    /// LwM2M Sends left unacknowledged to their device because the outbox was full.
    pub sends_refused: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::types::{CommandId, Registration};
    use lwm2m::content::link::ObjectLinks;
    use lwm2m::content::negotiate::Lwm2mVersion;
    use lwm2m::ops::registration::Binding;
    use std::collections::{BTreeMap, HashSet};

    /// The text, checked against OpenMetrics 1.0's rules as a scraper reads them: every
    /// family has one `# HELP` and one `# TYPE` (and a `# UNIT` matching a `_seconds` name),
    /// before its samples; a sample's name is its family's, with the suffixes its type
    /// allows; each value is a number; a histogram's buckets are cumulative, end at `+Inf`
    /// and equal its `_count`; the text ends with `# EOF`. Returns each sample's value.
    fn parse(text: &str) -> BTreeMap<String, f64> {
        assert!(text.ends_with("# EOF\n"), "{text}");
        let mut kinds: BTreeMap<String, String> = BTreeMap::new();
        let mut helped = HashSet::new();
        let mut samples = BTreeMap::new();
        let mut buckets: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        let mut current: Option<String> = None;
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if *line == "# EOF" {
                assert_eq!(i + 1, lines.len(), "# EOF is the last line");
                continue;
            }
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap();
                assert!(helped.insert(name.to_string()), "HELP of {name} twice");
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(helped.contains(name), "TYPE of {name} before its HELP");
                let old = kinds.insert(name.to_string(), kind.to_string());
                assert!(old.is_none(), "{name} declared twice");
                current = Some(name.to_string());
                continue;
            }
            if let Some(rest) = line.strip_prefix("# UNIT ") {
                let (name, unit) = rest.split_once(' ').unwrap();
                assert_eq!(Some(name), current.as_deref());
                assert!(name.ends_with(&format!("_{unit}")), "{line}");
                continue;
            }
            assert!(!line.starts_with('#'), "unknown comment: {line}");
            let (series, value) = line.rsplit_once(' ').unwrap();
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("{line}"));
            let (name, labels) = split(series);
            assert!(
                name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "{line}"
            );
            let family = current.as_deref().unwrap_or_else(|| panic!("{line} first"));
            let suffix = name
                .strip_prefix(family)
                .unwrap_or_else(|| panic!("{line} under {family}"));
            let allowed: &[&str] = match kinds[family].as_str() {
                "counter" => &["_total", "_created"],
                "gauge" => &[""],
                "histogram" => &["_bucket", "_count", "_sum", "_created"],
                k => panic!("type {k}"),
            };
            assert!(allowed.contains(&suffix), "{line}");
            if suffix == "_bucket" {
                let le = labels.iter().find(|(k, _)| k == "le").unwrap();
                let le = if le.1 == "+Inf" {
                    f64::INFINITY
                } else {
                    le.1.parse().unwrap()
                };
                let rest: Vec<_> = labels.iter().filter(|(k, _)| k != "le").cloned().collect();
                buckets
                    .entry(join(&format!("{family}_count"), &rest))
                    .or_default()
                    .push((le, value));
            }
            let key = join(name, &labels);
            assert!(samples.insert(key, value).is_none(), "{series} twice");
        }
        for (count, b) in &buckets {
            assert!(
                b.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
                "buckets of {count} not cumulative: {b:?}"
            );
            let (le, last) = *b.last().unwrap();
            assert_eq!(le, f64::INFINITY, "{count} ends at +Inf");
            assert_eq!(samples.get(count), Some(&last), "{count}");
        }
        samples
    }

    /// A series' name and labels (values here hold no `,` or `"`), sorted by label name.
    fn split(series: &str) -> (&str, Vec<(String, String)>) {
        let Some((name, rest)) = series.split_once('{') else {
            return (series, Vec::new());
        };
        let mut labels: Vec<(String, String)> = rest
            .trim_end_matches('}')
            .split(',')
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap();
                (k.to_string(), v.trim_matches('"').to_string())
            })
            .collect();
        labels.sort();
        (name, labels)
    }

    /// A series as [`parse`] keys it: labels sorted by name.
    fn join(name: &str, labels: &[(String, String)]) -> String {
        if labels.is_empty() {
            return name.to_string();
        }
        let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        format!("{name}{{{}}}", l.join(","))
    }

    fn registration() -> Registration {
        Registration {
            endpoint: "e".into(),
            location: "/rd/1".into(),
            address: "127.0.0.1:5683".into(),
            lifetime: 60,
            version: Lwm2mVersion::V1_1,
            binding: Binding::UDP,
            queue_mode: false,
            sms: None,
            links: ObjectLinks {
                root_path: "/".into(),
                content_formats: vec![],
                objects: vec![],
            },
            registered_at: std::time::SystemTime::UNIX_EPOCH,
            updated_at: std::time::SystemTime::UNIX_EPOCH,
        }
    }

    fn result(outcome: crate::core::types::Outcome) -> DeviceEvent {
        DeviceEvent::CommandResult {
            id: CommandId(1),
            endpoint: "e".into(),
            operation: "read",
            observation: None,
            outcome,
        }
    }

    #[test]
    fn events_are_counted_by_kind_reason_and_result() {
        let m = Metrics::new(Arc::new(StoreStats::default()), None);
        let dereg = |reason| DeviceEvent::Deregistered {
            endpoint: "e".into(),
            reason,
        };
        for ev in [
            dereg(DeregisterReason::Requested),
            dereg(DeregisterReason::Expired),
            dereg(DeregisterReason::Expired),
            dereg(DeregisterReason::Revoked),
            result(Err(CommandError::Timeout)),
            result(Err(CommandError::Expired)),
            result(Err(CommandError::UnknownDevice)),
            DeviceEvent::Awake {
                endpoint: "e".into(),
            },
        ] {
            m.on_event(&ev);
        }
        m.set_registered_clients(7);
        m.dtls_handshake(true);
        m.dtls_handshake_failed("timeout");
        m.dtls_handshake_failed("finished_mismatch");
        m.datagram_received(Transport::Dtls);
        m.datagram_sent(Transport::Udp);
        let s = m.snapshot();
        assert_eq!(
            (
                s.deregistrations_requested,
                s.deregistrations_expired,
                s.deregistrations_replaced,
                s.deregistrations_revoked
            ),
            (1, 2, 0, 1)
        );
        assert_eq!(
            (s.commands_success, s.commands_failure, s.commands_timeout),
            (0, 2, 1)
        );
        assert_eq!(s.registered_clients, 7);
        assert_eq!((s.dtls_handshakes_ok, s.dtls_handshakes_failed), (1, 2));
        assert_eq!(
            s.dtls_handshake_failures,
            vec![("finished_mismatch", 1), ("timeout", 1)]
        );
        assert_eq!(
            (s.coap_datagrams_received_dtls, s.coap_datagrams_sent_udp),
            (1, 1)
        );
        assert_eq!(s.registrations, 0);
        assert!(s.mqtt.is_none());
    }

    #[test]
    fn provisioning_failures_by_reason_and_reregistrations() {
        let m = Metrics::default();
        let refused = |principal: Option<&str>| DeviceEvent::AuthFailed {
            endpoint: "e".into(),
            peer: "127.0.0.1:5683".into(),
            principal: principal.map(str::to_string),
            reason: "refused",
        };
        let failed = |step: &str| DeviceEvent::Bootstrap {
            endpoint: "e".into(),
            peer: "p".into(),
            stage: BootstrapStage::Failed {
                step: step.into(),
                reason: "the device answered 4.04".into(),
            },
        };
        for ev in [
            refused(Some("other")),
            refused(None),
            refused(None),
            failed("write /0/1"),
            failed("write /1/0"),
            failed("install"),
            failed("something new"),
        ] {
            m.on_event(&ev);
        }
        let registration = registration();
        for replaced in [false, true] {
            m.on_event(&DeviceEvent::Registered {
                registration: registration.clone(),
                replaced,
            });
        }
        let s = m.snapshot();
        assert_eq!((s.registrations, s.reregistrations), (2, 1));
        let by: BTreeMap<_, _> = s.provisioning_failures.iter().copied().collect();
        assert_eq!(by["endpoint_mismatch"], 1);
        assert_eq!(by["dtls_required"], 2);
        assert_eq!(by["bootstrap_write"], 2);
        assert_eq!(by["credential_install"], 1);
        assert_eq!(by["bootstrap_other"], 1);
        assert_eq!(by["bootstrap_finish"], 0);
        assert_eq!(s.bootstraps_failed, 4);
        let v = parse(&m.render());
        assert_eq!(v["lwm2m_reregistrations_total"], 1.0);
        assert_eq!(
            v["lwm2m_provisioning_failures_total{reason=\"bootstrap_write\"}"],
            2.0
        );
        assert_eq!(
            v["lwm2m_provisioning_failures_total{reason=\"bootstrap_request\"}"],
            0.0
        );
    }

    #[test]
    fn rendering_follows_openmetrics_and_keeps_the_series_names() {
        let m = Metrics::new(Arc::new(StoreStats::default()), None);
        for _ in 0..3 {
            m.on_event(&DeviceEvent::Updated {
                registration: registration(),
            });
        }
        m.on_event(&DeviceEvent::Deregistered {
            endpoint: "e".into(),
            reason: DeregisterReason::Replaced,
        });
        m.set_registered_clients(1);
        m.on_event(&result(Err(CommandError::Timeout)));
        m.dtls_handshake_failed("unknown_psk_identity");
        m.registration_answered(Duration::from_micros(300));
        m.registration_answered(Duration::from_millis(40));
        m.registration_answered(Duration::from_secs(60));
        m.command_finished("read", Duration::from_millis(2));
        m.command_finished("write", Duration::from_secs(3));
        let text = m.render();
        let v = parse(&text);
        for (series, value) in [
            ("lwm2m_registrations_total", 0.0),
            ("lwm2m_registration_updates_total", 3.0),
            ("lwm2m_registered_clients", 1.0),
            ("lwm2m_deregistrations_total{reason=\"replaced\"}", 1.0),
            ("lwm2m_deregistrations_total{reason=\"requested\"}", 0.0),
            ("lwm2m_commands_total{result=\"timeout\"}", 1.0),
            ("lwm2m_bootstraps_total{result=\"finished\"}", 0.0),
            ("lwm2m_bootstraps_started_total", 0.0),
            ("lwm2m_notifications_total", 0.0),
            ("lwm2m_send_total", 0.0),
            ("lwm2m_auth_failures_total", 0.0),
            ("dtls_handshakes_total{result=\"failed\"}", 1.0),
            (
                "dtls_handshake_failures_total{reason=\"unknown_psk_identity\"}",
                1.0,
            ),
            ("dtls_sessions", 0.0),
            ("lwm2m_bootstrap_dtls_sessions", 0.0),
            ("coap_datagrams_sent_total{transport=\"dtls\"}", 0.0),
            ("coap_datagrams_received_total{transport=\"udp\"}", 0.0),
            ("lwm2m_store_writes_total", 0.0),
            ("lwm2m_store_commits_total", 0.0),
            ("lwm2m_firmware_updates_total{outcome=\"success\"}", 0.0),
            ("lwm2m_firmware_devices{phase=\"queued\"}", 0.0),
            ("lwm2m_commands_pending", 0.0),
            ("lwm2m_command_queue_oldest_age_seconds", 0.0),
            ("lwm2m_registration_duration_seconds_count", 3.0),
            (
                "lwm2m_registration_duration_seconds_bucket{le=\"0.0005\"}",
                1.0,
            ),
            (
                "lwm2m_registration_duration_seconds_bucket{le=\"0.05\"}",
                2.0,
            ),
            (
                "lwm2m_registration_duration_seconds_bucket{le=\"30.0\"}",
                2.0,
            ),
            (
                "lwm2m_registration_duration_seconds_bucket{le=\"+Inf\"}",
                3.0,
            ),
            (
                "lwm2m_command_duration_seconds_count{operation=\"read\"}",
                1.0,
            ),
            (
                "lwm2m_command_duration_seconds_bucket{le=\"2.5\",operation=\"write\"}",
                0.0,
            ),
            (
                "lwm2m_command_duration_seconds_bucket{le=\"5.0\",operation=\"write\"}",
                1.0,
            ),
        ] {
            assert_eq!(v.get(series), Some(&value), "{series} in:\n{text}");
        }
        assert!(text.contains("# TYPE lwm2m_registration_duration_seconds histogram\n"));
        assert!(text.contains("# TYPE lwm2m_registrations counter\n"));
        assert!(text.contains("# TYPE lwm2m_registered_clients gauge\n"));
        // No bridge, no MQTT families.
        assert!(!text.contains("mqtt_"), "{text}");
        let s = m.snapshot();
        assert_eq!((s.registration_answers, s.command_results_timed), (3, 2));
    }

    #[test]
    fn the_age_of_the_oldest_queued_command_is_read_at_scrape_time() {
        let m = Metrics::default();
        let submitted = Instant::now().checked_sub(Duration::from_secs(90)).unwrap();
        m.set_command_queue(4, Some(submitted));
        let v = parse(&m.render());
        assert_eq!(v["lwm2m_commands_pending"], 4.0);
        let age = v["lwm2m_command_queue_oldest_age_seconds"];
        assert!((90.0..3600.0).contains(&age), "{age}");
        assert!(m.snapshot().command_queue_oldest_age >= Some(Duration::from_secs(90)));
        m.set_command_queue(0, None);
        let v = parse(&m.render());
        assert_eq!(v["lwm2m_command_queue_oldest_age_seconds"], 0.0);
        assert_eq!(m.snapshot().command_queue_oldest_age, None);
    }

    #[test]
    fn the_bridge_families_appear_when_it_runs() {
        let shared = Arc::new(BridgeShared::default());
        shared.stats.published.store(9, Relaxed);
        shared.stats.outbox_len.store(4, Relaxed);
        shared.reconnected(Duration::from_millis(700));
        let m = Metrics::new(Arc::new(StoreStats::default()), Some(shared));
        let text = m.render();
        let v = parse(&text);
        assert!(text.contains("# TYPE mqtt_published counter\n"));
        assert_eq!(v["mqtt_published_total"], 9.0);
        assert!(text.contains("# TYPE mqtt_outbox_messages gauge\n"));
        assert_eq!(v["mqtt_outbox_messages"], 4.0);
        assert_eq!(v["lwm2m_mqtt_outbox_messages"], 4.0);
        assert_eq!(v["lwm2m_mqtt_reconnects_total"], 1.0);
        assert_eq!(v["lwm2m_mqtt_reconnect_duration_seconds_count"], 1.0);
        assert_eq!(
            v["lwm2m_mqtt_reconnect_duration_seconds_bucket{le=\"0.5\"}"],
            0.0
        );
        assert_eq!(
            v["lwm2m_mqtt_reconnect_duration_seconds_bucket{le=\"1.0\"}"],
            1.0
        );
        assert_eq!(v["lwm2m_notification_to_mqtt_seconds_count"], 0.0);
        // Messages counted but none timed (as after a restart): no age to report.
        assert_eq!(v["lwm2m_mqtt_outbox_oldest_age_seconds"], 0.0);
        assert_eq!(m.snapshot().mqtt.map(|s| s.reconnects), Some(1));
    }

    #[test]
    fn firmware_updates_by_outcome_and_devices_by_phase() {
        let m = Metrics::default();
        let ev = |phase, outcome| DeviceEvent::Firmware {
            endpoint: "dev-1".into(),
            campaign: "1".into(),
            package: "p".into(),
            phase,
            state: None,
            result: None,
            outcome,
            bytes: None,
            version: None,
        };
        m.on_event(&ev(FirmwarePhase::Downloading, None));
        m.on_event(&ev(FirmwarePhase::Done, Some(FirmwareOutcome::Success)));
        m.on_event(&ev(
            FirmwarePhase::Done,
            Some(FirmwareOutcome::UnknownResult(40)),
        ));
        let mut by_phase = BTreeMap::new();
        by_phase.insert(FirmwarePhase::Updating, 3);
        m.set_firmware_devices(&by_phase);
        let v = parse(&m.render());
        assert_eq!(v["lwm2m_firmware_updates_total{outcome=\"success\"}"], 1.0);
        assert_eq!(
            v["lwm2m_firmware_updates_total{outcome=\"unknown_result\"}"],
            1.0
        );
        assert_eq!(v["lwm2m_firmware_updates_total{outcome=\"timeout\"}"], 0.0);
        assert_eq!(v["lwm2m_firmware_devices{phase=\"updating\"}"], 3.0);
        assert_eq!(v["lwm2m_firmware_devices{phase=\"queued\"}"], 0.0);
    }

    #[test]
    fn two_servers_keep_their_numbers_apart() {
        let (a, b) = (Metrics::default(), Metrics::default());
        a.on_event(&result(Err(CommandError::Timeout)));
        let timeouts = "lwm2m_commands_total{result=\"timeout\"}";
        assert_eq!(parse(&a.render())[timeouts], 1.0);
        assert_eq!(parse(&b.render())[timeouts], 0.0);
    }
}
