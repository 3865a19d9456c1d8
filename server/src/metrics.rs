//! The server's counters and gauges, and their rendering in the Prometheus text exposition
//! format 0.0.4 for `GET /metrics` (see [`crate::http`]).
//!
//! The numbers are counted where the facts are, in the protocol stack ([`crate::stack`]):
//! device events as the core emits them (before they are broadcast, so a lagging subscriber
//! cannot make the counts lose events), DTLS handshakes where the stack handles the engine's
//! events, datagrams where the stack takes them in and hands them out. Each is a relaxed
//! atomic behind an `Arc` shared with the HTTP task: counting costs one uncontended add on
//! the server task, and a scrape never waits for it. One exception: failed handshakes by
//! reason sit in a small map behind a mutex, taken only when a handshake fails (after a
//! cookie round trip, so from a real address) and for the length of a scrape's copy.
//!
//! The text is written by hand rather than with the `prometheus` or `metrics` crates: about
//! twenty series need no registry, and those crates keep a process-wide registry or recorder,
//! so two servers in one process (as the end-to-end tests run them) would mix their numbers.
use crate::bridge::outbox::Shared as BridgeShared;
use crate::core::types::{
    BootstrapStage, CommandError, DeregisterReason, DeviceEvent, FirmwareOutcome, FirmwarePhase,
};
use crate::store::StoreStats;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

/// The `Content-Type` of [`MetricsSnapshot::render`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The live counters of one server. Written by the server task, read by scrapes.
#[derive(Debug, Default)]
pub struct Metrics {
    registrations: AtomicU64,
    registration_updates: AtomicU64,
    deregistrations_requested: AtomicU64,
    deregistrations_expired: AtomicU64,
    deregistrations_replaced: AtomicU64,
    deregistrations_revoked: AtomicU64,
    /// Set from the core's registration table after every batch of events (a gauge kept by
    /// increments could drift if an event kind were missed; the table cannot).
    registered_clients: AtomicU64,
    notifications: AtomicU64,
    sends: AtomicU64,
    commands_success: AtomicU64,
    commands_failure: AtomicU64,
    commands_timeout: AtomicU64,
    auth_failures: AtomicU64,
    dtls_handshakes_ok: AtomicU64,
    dtls_handshakes_failed: AtomicU64,
    /// Failed handshakes by the engine's failure label (`dtls::HandshakeError::label`): a
    /// fixed set of static names, so the map is bounded by the engine's failure kinds. Locked
    /// only when a handshake fails and when a scrape reads it.
    dtls_handshake_failures: Mutex<BTreeMap<&'static str, u64>>,
    /// Set from the DTLS engine's session table, for the same reason as `registered_clients`.
    dtls_sessions: AtomicU64,
    /// The bootstrap server's DTLS sessions, kept apart from the LwM2M server's.
    bootstrap_dtls_sessions: AtomicU64,
    bootstraps_started: AtomicU64,
    bootstraps_finished: AtomicU64,
    bootstraps_failed: AtomicU64,
    datagrams_received_udp: AtomicU64,
    datagrams_received_dtls: AtomicU64,
    datagrams_sent_udp: AtomicU64,
    datagrams_sent_dtls: AtomicU64,
    /// Firmware updates ended, by outcome, in the order of [`FirmwareOutcome::NAMES`].
    firmware_updates: [AtomicU64; FirmwareOutcome::NAMES.len()],
    /// Gauge: devices in firmware campaigns by phase, in the order of [`FirmwarePhase::ALL`],
    /// set from the campaigns' table like `registered_clients`.
    firmware_devices: [AtomicU64; FirmwarePhase::ALL.len()],
    /// The MQTT bridge's own counters, when it runs: read at scrape time, not copied.
    mqtt: Option<Arc<BridgeShared>>,
    /// The store writer's counters, read at scrape time.
    store: Option<Arc<StoreStats>>,
}

/// Which socket group a datagram went through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Plain CoAP (NoSec).
    Udp,
    /// CoAP over DTLS (handshake datagrams included).
    Dtls,
}

impl Metrics {
    /// Counters at zero that also report the store's and, if given, the MQTT bridge's.
    pub fn new(store: Arc<StoreStats>, mqtt: Option<Arc<BridgeShared>>) -> Self {
        Self {
            store: Some(store),
            mqtt,
            ..Self::default()
        }
    }

    /// Counts a device event (called for every event the core emits).
    pub fn on_event(&self, event: &DeviceEvent) {
        let counter = match event {
            DeviceEvent::Registered { .. } => &self.registrations,
            DeviceEvent::Updated { .. } => &self.registration_updates,
            DeviceEvent::Deregistered { reason, .. } => match reason {
                DeregisterReason::Requested => &self.deregistrations_requested,
                DeregisterReason::Expired => &self.deregistrations_expired,
                DeregisterReason::Replaced => &self.deregistrations_replaced,
                DeregisterReason::Revoked => &self.deregistrations_revoked,
            },
            DeviceEvent::Notification { .. } => &self.notifications,
            DeviceEvent::Send { .. } => &self.sends,
            DeviceEvent::CommandResult { outcome, .. } => match outcome {
                Ok(_) => &self.commands_success,
                Err(CommandError::Timeout) => &self.commands_timeout,
                Err(_) => &self.commands_failure,
            },
            DeviceEvent::AuthFailed { .. } => &self.auth_failures,
            DeviceEvent::Bootstrap { stage, .. } => match stage {
                BootstrapStage::Started => &self.bootstraps_started,
                BootstrapStage::Finished { .. } => &self.bootstraps_finished,
                BootstrapStage::Failed { .. } => &self.bootstraps_failed,
            },
            DeviceEvent::Firmware {
                phase: FirmwarePhase::Done,
                outcome: Some(o),
                ..
            } => {
                let Some(i) = FirmwareOutcome::NAMES.iter().position(|n| *n == o.as_str()) else {
                    return;
                };
                match self.firmware_updates.get(i) {
                    Some(c) => c,
                    None => return,
                }
            }
            DeviceEvent::Awake { .. }
            | DeviceEvent::Sleeping { .. }
            | DeviceEvent::ObservationEnded { .. }
            | DeviceEvent::Firmware { .. } => return,
        };
        counter.fetch_add(1, Relaxed);
    }

    /// Sets the number of devices in firmware campaigns in each phase.
    pub fn set_firmware_devices(&self, by_phase: &BTreeMap<FirmwarePhase, usize>) {
        for (phase, gauge) in FirmwarePhase::ALL.iter().zip(&self.firmware_devices) {
            gauge.store(as_u64(by_phase.get(phase).copied().unwrap_or(0)), Relaxed);
        }
    }

    /// Sets the number of current registrations.
    pub fn set_registered_clients(&self, n: usize) {
        self.registered_clients.store(as_u64(n), Relaxed);
    }

    /// Counts a DTLS handshake that ended: established (a resumption included) or failed.
    pub fn dtls_handshake(&self, ok: bool) {
        let c = if ok {
            &self.dtls_handshakes_ok
        } else {
            &self.dtls_handshakes_failed
        };
        c.fetch_add(1, Relaxed);
    }

    /// Counts a failed DTLS handshake under `reason`, the engine's label for why it failed.
    pub fn dtls_handshake_failed(&self, reason: &'static str) {
        self.dtls_handshake(false);
        if let Ok(mut by) = self.dtls_handshake_failures.lock() {
            *by.entry(reason).or_default() += 1;
        }
    }

    /// Sets the number of established DTLS sessions.
    pub fn set_dtls_sessions(&self, n: usize) {
        self.dtls_sessions.store(as_u64(n), Relaxed);
    }

    /// Sets the number of the bootstrap server's established DTLS sessions.
    pub fn set_bootstrap_dtls_sessions(&self, n: usize) {
        self.bootstrap_dtls_sessions.store(as_u64(n), Relaxed);
    }

    /// Counts a datagram received on a CoAP or CoAPs socket.
    pub fn datagram_received(&self, t: Transport) {
        match t {
            Transport::Udp => &self.datagrams_received_udp,
            Transport::Dtls => &self.datagrams_received_dtls,
        }
        .fetch_add(1, Relaxed);
    }

    /// Counts a datagram handed to a CoAP or CoAPs socket.
    pub fn datagram_sent(&self, t: Transport) {
        match t {
            Transport::Udp => &self.datagrams_sent_udp,
            Transport::Dtls => &self.datagrams_sent_dtls,
        }
        .fetch_add(1, Relaxed);
    }

    /// The numbers now. Each is read on its own (relaxed), so two that move together may be
    /// one event apart: fine for monitoring, which is all they are for.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let get = |a: &AtomicU64| a.load(Relaxed);
        MetricsSnapshot {
            registrations: get(&self.registrations),
            registration_updates: get(&self.registration_updates),
            deregistrations_requested: get(&self.deregistrations_requested),
            deregistrations_expired: get(&self.deregistrations_expired),
            deregistrations_replaced: get(&self.deregistrations_replaced),
            deregistrations_revoked: get(&self.deregistrations_revoked),
            registered_clients: get(&self.registered_clients),
            notifications: get(&self.notifications),
            sends: get(&self.sends),
            commands_success: get(&self.commands_success),
            commands_failure: get(&self.commands_failure),
            commands_timeout: get(&self.commands_timeout),
            auth_failures: get(&self.auth_failures),
            dtls_handshakes_ok: get(&self.dtls_handshakes_ok),
            dtls_handshakes_failed: get(&self.dtls_handshakes_failed),
            dtls_handshake_failures: self
                .dtls_handshake_failures
                .lock()
                .map(|by| by.iter().map(|(k, v)| (*k, *v)).collect())
                .unwrap_or_default(),
            dtls_sessions: get(&self.dtls_sessions),
            bootstrap_dtls_sessions: get(&self.bootstrap_dtls_sessions),
            bootstraps_started: get(&self.bootstraps_started),
            bootstraps_finished: get(&self.bootstraps_finished),
            bootstraps_failed: get(&self.bootstraps_failed),
            coap_datagrams_received_udp: get(&self.datagrams_received_udp),
            coap_datagrams_received_dtls: get(&self.datagrams_received_dtls),
            coap_datagrams_sent_udp: get(&self.datagrams_sent_udp),
            coap_datagrams_sent_dtls: get(&self.datagrams_sent_dtls),
            firmware_updates: FirmwareOutcome::NAMES
                .iter()
                .zip(&self.firmware_updates)
                .map(|(n, c)| (*n, get(c)))
                .collect(),
            firmware_devices: FirmwarePhase::ALL
                .iter()
                .zip(&self.firmware_devices)
                .map(|(p, c)| (p.as_str(), get(c)))
                .collect(),
            store_writes: self.store.as_ref().map_or(0, |s| get(&s.writes)),
            store_commits: self.store.as_ref().map_or(0, |s| get(&s.commits)),
            mqtt: self.mqtt.as_ref().map(|m| MqttSnapshot {
                published: get(&m.stats.published),
                acknowledged: get(&m.stats.acked),
                dropped: get(&m.stats.dropped),
                outbox_messages: get(&m.stats.outbox_len),
            }),
        }
    }
}

fn as_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// The server's numbers at one moment ([`crate::ServerHandle::metrics`]): what `/metrics`
/// shows, as a plain struct. Counters count since the server started; gauges are current.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// Registers accepted (a re-registration included).
    pub registrations: u64,
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
    /// DTLS handshakes completed (resumptions included).
    pub dtls_handshakes_ok: u64,
    /// DTLS handshakes failed (wrong key, unknown identity, timeouts, ...).
    pub dtls_handshakes_failed: u64,
    /// Failed DTLS handshakes by reason (`wrong_psk`-like labels of the engine), those seen so
    /// far, in name order.
    pub dtls_handshake_failures: Vec<(&'static str, u64)>,
    /// Gauge: established DTLS sessions.
    pub dtls_sessions: u64,
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
}

/// Writes one metric family: `# HELP`, `# TYPE`, then one line per series, each sample given
/// as (labels without braces, value).
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(&str, u64)]) {
    // Writing to a String cannot fail.
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {value}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
}

const COUNTER: &str = "counter";
const GAUGE: &str = "gauge";

impl MetricsSnapshot {
    /// The Prometheus text exposition format 0.0.4: for each family a `# HELP` and a
    /// `# TYPE` line, then one `name{labels} value` line per series.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let o = &mut out;
        family(
            o,
            "lwm2m_registrations_total",
            COUNTER,
            "Registers accepted, re-registrations included.",
            &[("", self.registrations)],
        );
        family(
            o,
            "lwm2m_registration_updates_total",
            COUNTER,
            "Registration Updates accepted.",
            &[("", self.registration_updates)],
        );
        family(
            o,
            "lwm2m_deregistrations_total",
            COUNTER,
            "Registrations ended, by reason.",
            &[
                ("reason=\"requested\"", self.deregistrations_requested),
                ("reason=\"expired\"", self.deregistrations_expired),
                ("reason=\"replaced\"", self.deregistrations_replaced),
                ("reason=\"revoked\"", self.deregistrations_revoked),
            ],
        );
        family(
            o,
            "lwm2m_registered_clients",
            GAUGE,
            "Devices registered now.",
            &[("", self.registered_clients)],
        );
        family(
            o,
            "lwm2m_bootstraps_total",
            COUNTER,
            "Bootstraps ended, by result (finished: the device holds its account).",
            &[
                ("result=\"finished\"", self.bootstraps_finished),
                ("result=\"failed\"", self.bootstraps_failed),
            ],
        );
        let labelled = |label: &str, v: &[(&'static str, u64)]| -> Vec<(String, u64)> {
            v.iter()
                .map(|(n, c)| (format!("{label}=\"{n}\""), *c))
                .collect()
        };
        let updates = labelled("outcome", &self.firmware_updates);
        let updates: Vec<(&str, u64)> = updates.iter().map(|(l, c)| (l.as_str(), *c)).collect();
        family(
            o,
            "lwm2m_firmware_updates_total",
            COUNTER,
            "Firmware updates ended, by outcome.",
            &updates,
        );
        let devices = labelled("phase", &self.firmware_devices);
        let devices: Vec<(&str, u64)> = devices.iter().map(|(l, c)| (l.as_str(), *c)).collect();
        family(
            o,
            "lwm2m_firmware_devices",
            GAUGE,
            "Devices in firmware update campaigns, by phase.",
            &devices,
        );
        family(
            o,
            "lwm2m_bootstraps_started_total",
            COUNTER,
            "Bootstrap-Requests accepted.",
            &[("", self.bootstraps_started)],
        );
        family(
            o,
            "lwm2m_bootstrap_dtls_sessions",
            GAUGE,
            "The bootstrap server's established DTLS sessions.",
            &[("", self.bootstrap_dtls_sessions)],
        );
        family(
            o,
            "lwm2m_notifications_total",
            COUNTER,
            "Notifications received from devices.",
            &[("", self.notifications)],
        );
        family(
            o,
            "lwm2m_send_total",
            COUNTER,
            "LwM2M Send operations received from devices.",
            &[("", self.sends)],
        );
        family(
            o,
            "lwm2m_commands_total",
            COUNTER,
            "Commands ended, by result.",
            &[
                ("result=\"success\"", self.commands_success),
                ("result=\"failure\"", self.commands_failure),
                ("result=\"timeout\"", self.commands_timeout),
            ],
        );
        family(
            o,
            "lwm2m_auth_failures_total",
            COUNTER,
            "Registrations refused for who the device is: endpoint name not bound to its credential, or a provisioned device over NoSec.",
            &[("", self.auth_failures)],
        );
        family(
            o,
            "dtls_handshakes_total",
            COUNTER,
            "DTLS handshakes ended, by result (resumptions count as ok).",
            &[
                ("result=\"ok\"", self.dtls_handshakes_ok),
                ("result=\"failed\"", self.dtls_handshakes_failed),
            ],
        );
        let by_reason: Vec<(String, u64)> = self
            .dtls_handshake_failures
            .iter()
            .map(|(reason, n)| (format!("reason=\"{reason}\""), *n))
            .collect();
        let by_reason: Vec<(&str, u64)> = by_reason.iter().map(|(l, n)| (l.as_str(), *n)).collect();
        family(
            o,
            "dtls_handshake_failures_total",
            COUNTER,
            "DTLS handshakes failed, by reason (the engine's failure kinds seen so far).",
            &by_reason,
        );
        family(
            o,
            "dtls_sessions",
            GAUGE,
            "Established DTLS sessions.",
            &[("", self.dtls_sessions)],
        );
        family(
            o,
            "coap_datagrams_received_total",
            COUNTER,
            "UDP datagrams received on the CoAP (udp) and CoAP-over-DTLS (dtls) sockets.",
            &[
                ("transport=\"udp\"", self.coap_datagrams_received_udp),
                ("transport=\"dtls\"", self.coap_datagrams_received_dtls),
            ],
        );
        family(
            o,
            "coap_datagrams_sent_total",
            COUNTER,
            "UDP datagrams sent on the CoAP (udp) and CoAP-over-DTLS (dtls) sockets.",
            &[
                ("transport=\"udp\"", self.coap_datagrams_sent_udp),
                ("transport=\"dtls\"", self.coap_datagrams_sent_dtls),
            ],
        );
        family(
            o,
            "lwm2m_store_writes_total",
            COUNTER,
            "Writes applied to the store.",
            &[("", self.store_writes)],
        );
        family(
            o,
            "lwm2m_store_commits_total",
            COUNTER,
            "Store transactions committed (writes per commit is the group commit's batching).",
            &[("", self.store_commits)],
        );
        if let Some(m) = &self.mqtt {
            family(
                o,
                "mqtt_published_total",
                COUNTER,
                "MQTT messages handed to the MQTT client (again after a reconnect if unacknowledged).",
                &[("", m.published)],
            );
            family(
                o,
                "mqtt_acknowledged_total",
                COUNTER,
                "MQTT messages the broker acknowledged.",
                &[("", m.acknowledged)],
            );
            family(
                o,
                "mqtt_dropped_total",
                COUNTER,
                "MQTT messages dropped because the outbox was full.",
                &[("", m.dropped)],
            );
            family(
                o,
                "mqtt_outbox_messages",
                GAUGE,
                "MQTT messages in the outbox, not yet acknowledged by the broker.",
                &[("", m.outbox_messages)],
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::types::CommandId;

    fn lines(text: &str) -> Vec<&str> {
        text.lines().collect()
    }

    #[test]
    fn events_are_counted_by_kind_reason_and_result() {
        let m = Metrics::new(Arc::new(StoreStats::default()), None);
        let dereg = |reason| DeviceEvent::Deregistered {
            endpoint: "e".into(),
            reason,
        };
        let result = |outcome| DeviceEvent::CommandResult {
            id: CommandId(1),
            endpoint: "e".into(),
            operation: "read",
            observation: None,
            outcome,
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
    fn rendering_follows_the_text_format() {
        let s = MetricsSnapshot {
            registrations: 3,
            deregistrations_replaced: 2,
            registered_clients: 1,
            commands_timeout: 5,
            dtls_handshake_failures: vec![("unknown_psk_identity", 4)],
            ..MetricsSnapshot::default()
        };
        let text = s.render();
        let l = lines(&text);
        // Each family: HELP, TYPE, then its series, with the family's name.
        let at = l
            .iter()
            .position(|x| *x == "# TYPE lwm2m_registrations_total counter")
            .unwrap();
        assert!(l[at - 1].starts_with("# HELP lwm2m_registrations_total "));
        assert_eq!(l[at + 1], "lwm2m_registrations_total 3");
        assert!(l.contains(&"# TYPE lwm2m_registered_clients gauge"));
        assert!(l.contains(&"lwm2m_registered_clients 1"));
        assert!(l.contains(&"lwm2m_deregistrations_total{reason=\"replaced\"} 2"));
        assert!(l.contains(&"lwm2m_deregistrations_total{reason=\"requested\"} 0"));
        assert!(l.contains(&"lwm2m_commands_total{result=\"timeout\"} 5"));
        assert!(l.contains(&"dtls_handshakes_total{result=\"failed\"} 0"));
        assert!(l.contains(&"dtls_handshake_failures_total{reason=\"unknown_psk_identity\"} 4"));
        assert!(l.contains(&"coap_datagrams_sent_total{transport=\"dtls\"} 0"));
        // No bridge, no MQTT families.
        assert!(!text.contains("mqtt_"), "{text}");
        assert!(text.ends_with('\n'));
        // Every line is a comment or `name[{labels}] integer`; every family is declared once.
        let mut declared = std::collections::HashSet::new();
        for line in &l {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap();
                assert!(declared.insert(name.to_string()), "{name} twice");
                continue;
            }
            if line.starts_with("# HELP ") {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').unwrap();
            assert!(value.parse::<u64>().is_ok(), "{line}");
            let name = series.split('{').next().unwrap();
            assert!(declared.contains(name), "{line} before its TYPE");
            assert!(
                name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "{line}"
            );
        }
    }

    #[test]
    fn the_bridge_families_appear_when_it_runs() {
        let shared = Arc::new(BridgeShared::default());
        shared.stats.published.store(9, Relaxed);
        shared.stats.outbox_len.store(4, Relaxed);
        let m = Metrics::new(Arc::new(StoreStats::default()), Some(shared));
        let text = m.snapshot().render();
        let l = lines(&text);
        assert!(l.contains(&"# TYPE mqtt_published_total counter"));
        assert!(l.contains(&"mqtt_published_total 9"));
        assert!(l.contains(&"# TYPE mqtt_outbox_messages gauge"));
        assert!(l.contains(&"mqtt_outbox_messages 4"));
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
        let text = m.snapshot().render();
        let l = lines(&text);
        assert!(l.contains(&"lwm2m_firmware_updates_total{outcome=\"success\"} 1"));
        assert!(l.contains(&"lwm2m_firmware_updates_total{outcome=\"unknown_result\"} 1"));
        assert!(l.contains(&"lwm2m_firmware_updates_total{outcome=\"timeout\"} 0"));
        assert!(l.contains(&"lwm2m_firmware_devices{phase=\"updating\"} 3"));
        assert!(l.contains(&"lwm2m_firmware_devices{phase=\"queued\"} 0"));
    }
}
