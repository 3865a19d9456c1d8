//! What a bench run measured: the counters and histograms each shard keeps, merged per
//! process and across processes, and the final report printed and written as JSON.
//!
//! Histograms travel between processes in hdrhistogram's V2 serialization (base64), so
//! percentiles of a run split over several processes are exact, not averages of averages.
use anyhow::Context;
use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Distinct error kinds kept; the rest count as `other`.
const MAX_ERROR_KINDS: usize = 64;

/// Microseconds since the Unix epoch: one clock for every process of a run.
pub(crate) fn epoch_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_micros()
        .try_into()
        .unwrap_or(u64::MAX)
}

/// A latency histogram in microseconds, 3 significant digits.
#[derive(Debug, Clone)]
pub(crate) struct Latency(pub Histogram<u64>);

impl Default for Latency {
    fn default() -> Self {
        // Constant, valid bounds (1 µs to an hour, 3 digits): this cannot fail.
        Self(
            Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .expect("constant histogram bounds are valid"),
        )
    }
}

impl Latency {
    pub(crate) fn record(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1);
        self.0.saturating_record(us);
    }

    pub(crate) fn merge(&mut self, other: &Latency) {
        // Bounds are the same everywhere; a failure would only lose that histogram.
        let _ = self.0.add(&other.0);
    }

    pub(crate) fn summary(&self) -> Percentiles {
        let h = &self.0;
        Percentiles {
            count: h.len(),
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            max: h.max(),
        }
    }
}

impl Serialize for Latency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = Vec::new();
        V2Serializer::new()
            .serialize(&self.0, &mut buf)
            .map_err(serde::ser::Error::custom)?;
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(buf))
    }
}

impl<'de> Deserialize<'de> for Latency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(serde::de::Error::custom)?;
        let h = Deserializer::new()
            .deserialize(&mut bytes.as_slice())
            .map_err(serde::de::Error::custom)?;
        Ok(Self(h))
    }
}

/// Error counts by kind, with a bounded number of kinds.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub(crate) struct Errors(pub BTreeMap<String, u64>);

impl Errors {
    pub(crate) fn add(&mut self, kind: impl Into<String>) {
        self.add_n(kind.into(), 1);
    }

    pub(crate) fn add_n(&mut self, kind: String, n: u64) {
        if n == 0 {
            return;
        }
        let key = if self.0.len() < MAX_ERROR_KINDS || self.0.contains_key(&kind) {
            kind
        } else {
            "other".to_owned()
        };
        *self.0.entry(key).or_default() += n;
    }

    pub(crate) fn merge(&mut self, other: &Errors) {
        for (k, n) in &other.0 {
            self.add_n(k.clone(), *n);
        }
    }

    pub(crate) fn total(&self) -> u64 {
        self.0.values().sum()
    }
}

/// What the devices of one shard, one process or the whole fleet did.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub(crate) struct DeviceCounts {
    /// Devices that sent a first Register.
    pub started: u64,
    /// Devices registered at least once.
    pub registered: u64,
    /// Devices registered when the stop began.
    pub registered_at_stop: u64,
    /// Registrations accepted (2.01), including those after reboots.
    pub registrations: u64,
    pub registration_failures: u64,
    pub updates: u64,
    pub deregistered: u64,
    pub handshakes_full: u64,
    pub handshakes_resumed: u64,
    /// Devices whose first handshake completed, and when the last of them did.
    pub first_handshakes: u64,
    pub last_first_handshake_us: u64,
    /// Sessions that went down (failed handshakes, sessions closed by the server).
    pub sessions_lost: u64,
    pub requests_answered: u64,
    pub notifications_sent: u64,
    pub sends: u64,
    pub sends_acknowledged: u64,
    pub sensor_changes: u64,
    pub sleeps: u64,
    pub wakes: u64,
    pub reboots: u64,
    pub rebinds: u64,
    /// Exchanges the server never answered (after CoAP's retransmissions).
    pub timeouts: u64,
    /// First Register sent and last first registration, µs since the epoch (0: none).
    pub first_sent_us: u64,
    pub last_registered_us: u64,
    pub registration_latency: Latency,
    pub handshake_latency: Latency,
    pub errors: Errors,
    pub bootstrap: BootstrapCounts,
}

/// What bootstrapping devices did (the `bootstrap` scenario).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub(crate) struct BootstrapCounts {
    /// Bootstrap attempts begun (a handshake with the bootstrap server and a
    /// Bootstrap-Request), retries included.
    pub attempts: u64,
    /// Bootstrap-Finish accepted.
    pub finished: u64,
    /// Devices registered with the credential they were given: complete bootstraps.
    pub complete: u64,
    /// When the last complete bootstrap ended, µs since the epoch (0: none).
    pub last_complete_us: u64,
    /// From the start of an attempt to the registration with the new credential.
    pub latency: Latency,
    /// From the start of an attempt to Bootstrap-Finish.
    pub sequence_latency: Latency,
    /// Failed attempts by cause.
    pub failures: Errors,
}

impl BootstrapCounts {
    pub(crate) fn merge(&mut self, o: &BootstrapCounts) {
        self.attempts += o.attempts;
        self.finished += o.finished;
        self.complete += o.complete;
        self.last_complete_us = self.last_complete_us.max(o.last_complete_us);
        self.latency.merge(&o.latency);
        self.sequence_latency.merge(&o.sequence_latency);
        self.failures.merge(&o.failures);
    }

    /// The report's part, `first_sent_us` being when the first device started.
    pub(crate) fn report(&self, first_sent_us: u64) -> BootstrapReport {
        let secs = self.last_complete_us.saturating_sub(first_sent_us) as f64 / 1e6;
        BootstrapReport {
            attempts: self.attempts,
            finished: self.finished,
            complete: self.complete,
            ramp_seconds: secs,
            complete_per_second: if secs > 0.0 {
                self.complete as f64 / secs
            } else {
                0.0
            },
            latency_us: self.latency.summary(),
            sequence_latency_us: self.sequence_latency.summary(),
            failures_total: self.failures.total(),
            failures: self.failures.0.clone(),
        }
    }
}

/// The bootstrap part of the report.
#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub(crate) struct BootstrapReport {
    pub attempts: u64,
    pub finished: u64,
    /// Devices bootstrapped and registered with their new credential.
    pub complete: u64,
    /// From the first device's start to the last complete bootstrap.
    pub ramp_seconds: f64,
    pub complete_per_second: f64,
    /// One complete bootstrap: handshake, bootstrap sequence, handshake and Register with
    /// the new credential.
    pub latency_us: Percentiles,
    /// The bootstrap server's part: handshake, Bootstrap-Request to Bootstrap-Finish.
    pub sequence_latency_us: Percentiles,
    pub failures_total: u64,
    /// Failed attempts by cause.
    pub failures: BTreeMap<String, u64>,
}

impl DeviceCounts {
    pub(crate) fn merge(&mut self, o: &DeviceCounts) {
        self.started += o.started;
        self.registered += o.registered;
        self.registered_at_stop += o.registered_at_stop;
        self.registrations += o.registrations;
        self.registration_failures += o.registration_failures;
        self.updates += o.updates;
        self.deregistered += o.deregistered;
        self.handshakes_full += o.handshakes_full;
        self.handshakes_resumed += o.handshakes_resumed;
        self.first_handshakes += o.first_handshakes;
        self.last_first_handshake_us = self.last_first_handshake_us.max(o.last_first_handshake_us);
        self.sessions_lost += o.sessions_lost;
        self.requests_answered += o.requests_answered;
        self.notifications_sent += o.notifications_sent;
        self.sends += o.sends;
        self.sends_acknowledged += o.sends_acknowledged;
        self.sensor_changes += o.sensor_changes;
        self.sleeps += o.sleeps;
        self.wakes += o.wakes;
        self.reboots += o.reboots;
        self.rebinds += o.rebinds;
        self.timeouts += o.timeouts;
        self.first_sent_us = min_nonzero(self.first_sent_us, o.first_sent_us);
        self.last_registered_us = self.last_registered_us.max(o.last_registered_us);
        self.registration_latency.merge(&o.registration_latency);
        self.handshake_latency.merge(&o.handshake_latency);
        self.errors.merge(&o.errors);
        self.bootstrap.merge(&o.bootstrap);
    }
}

fn min_nonzero(a: u64, b: u64) -> u64 {
    match (a, b) {
        (0, b) => b,
        (a, 0) => a,
        (a, b) => a.min(b),
    }
}

/// What the MQTT backend saw.
#[derive(Debug, Default, Clone)]
pub(crate) struct BackendCounts {
    pub registrations_seen: u64,
    pub observations: u64,
    pub notifications: u64,
    pub notification_duplicates: u64,
    pub sends: u64,
    pub commands_sent: u64,
    pub commands_answered: u64,
    pub command_failures: u64,
    pub command_timeouts: u64,
    /// Answers for a command answered already (the server ran it twice).
    pub command_duplicates: u64,
    /// Results received again with the same `msgId` (MQTT redelivery, not a second run).
    pub results_redelivered: u64,
    /// Answers for a command that had timed out here.
    pub commands_answered_late: u64,
    pub command_latency: Latency,
    pub notification_latency: Latency,
    pub errors: Errors,
    /// With `[firmware]`: the campaign.
    pub firmware: Option<FirmwareCounts>,
}

/// p50/p90/p99/max of a latency, in microseconds.
#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq, Eq)]
pub(crate) struct Percentiles {
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
}

/// The server process's CPU and memory over the run (`--server-pid`).
#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub(crate) struct ServerUsage {
    pub pid: u32,
    /// CPU seconds the server used during the run.
    pub cpu_seconds: f64,
    /// Its average and highest CPU use (one core = 100) over one-second samples.
    pub cpu_percent_avg: f64,
    pub cpu_percent_max: f64,
    /// Resident memory before the first device, at its highest, and when the stop began.
    pub rss_start_bytes: u64,
    pub rss_max_bytes: u64,
    pub rss_at_stop_bytes: u64,
    /// (RSS at stop − RSS at start) / devices registered at stop.
    pub rss_per_registered_device_bytes: u64,
}

/// The final report; `--json` writes it as is.
#[derive(Debug, Default, Clone, Serialize)]
pub(crate) struct Report {
    pub scenario: String,
    pub server: String,
    pub security: String,
    pub devices: u64,
    pub processes: u32,
    pub duration_secs: u64,
    /// From the first Register to the end of the stop.
    pub run_seconds: f64,
    pub started: u64,
    pub registered: u64,
    pub registered_at_stop: u64,
    pub registrations: u64,
    pub registration_failures: u64,
    /// From the first Register sent to the last device's first registration.
    pub ramp_seconds: f64,
    /// First registrations per second of the ramp.
    pub registrations_per_second: f64,
    pub registration_latency_us: Percentiles,
    pub handshakes: u64,
    pub handshakes_resumed: u64,
    /// First handshakes per second, from the first Register to the last device's first
    /// session.
    pub handshakes_per_second: f64,
    pub handshake_latency_us: Percentiles,
    pub sessions_lost: u64,
    pub updates: u64,
    pub deregistered: u64,
    pub requests_answered: u64,
    pub notifications_sent: u64,
    pub notifications_sent_per_second: f64,
    /// Notifications that reached the backend over MQTT (the end-to-end acknowledgement).
    pub notifications_delivered: u64,
    pub notifications_delivered_per_second: f64,
    pub notification_duplicates: u64,
    pub notification_latency_us: Percentiles,
    pub sends: u64,
    pub sends_acknowledged: u64,
    pub sends_delivered: u64,
    pub sensor_changes: u64,
    pub sleeps: u64,
    pub wakes: u64,
    pub reboots: u64,
    pub rebinds: u64,
    pub observations: u64,
    pub commands_sent: u64,
    pub commands_answered: u64,
    pub command_failures: u64,
    pub command_latency_us: Percentiles,
    /// Device exchanges and backend commands that timed out.
    pub timeouts: u64,
    pub command_timeouts: u64,
    /// Answers for a command answered already: a command run twice.
    pub command_duplicates: u64,
    /// Results received again with the same `msgId`: MQTT's at-least-once, not a second run.
    pub results_redelivered: u64,
    /// Answers for a command after it had timed out here (it waited longer for its device).
    pub commands_answered_late: u64,
    pub errors_total: u64,
    pub errors: BTreeMap<String, u64>,
    /// With `--server-pid`.
    pub server_process: Option<ServerUsage>,
    /// In the `bootstrap` scenario; absent from the JSON otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bootstrap: Option<BootstrapReport>,
    /// In the `firmware` scenario; absent from the JSON otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub firmware: Option<FirmwareReport>,
}

impl Report {
    /// Prints the report for people.
    pub(crate) fn print(&self) {
        let l = |p: &Percentiles| {
            format!(
                "p50 {} p90 {} p99 {} max {} ({} samples)",
                us(p.p50),
                us(p.p90),
                us(p.p99),
                us(p.max),
                p.count
            )
        };
        println!(
            "scenario {} against {} ({}), {} devices in {} process(es), {:.1} s",
            self.scenario,
            self.server,
            self.security,
            self.devices,
            self.processes,
            self.run_seconds
        );
        println!(
            "  registered     {} of {} started ({} at stop), {:.0}/s over {:.2} s; {} registrations, {} failures, {} updates, {} de-registered",
            self.registered,
            self.started,
            self.registered_at_stop,
            self.registrations_per_second,
            self.ramp_seconds,
            self.registrations,
            self.registration_failures,
            self.updates,
            self.deregistered
        );
        println!("  registration   {}", l(&self.registration_latency_us));
        if let Some(b) = &self.bootstrap {
            println!(
                "  bootstrap      {} complete of {} attempts ({} finished), {:.1}/s over {:.2} s; {} failed {:?}",
                b.complete,
                b.attempts,
                b.finished,
                b.complete_per_second,
                b.ramp_seconds,
                b.failures_total,
                b.failures
            );
            println!("    complete     {}", l(&b.latency_us));
            println!("    sequence     {}", l(&b.sequence_latency_us));
        }
        if let Some(f) = &self.firmware {
            println!(
                "  firmware       {} {} of {} requested updated ({} finished, {} timed out), {:.1}/min; outcomes {:?}; results {:?}; {} bytes",
                f.method,
                f.updated,
                f.requested,
                f.finished,
                f.timed_out,
                f.updated_per_minute,
                f.outcomes,
                f.results,
                f.bytes
            );
            println!("    per device   {}", l(&f.time_per_device_us));
        }
        if self.security != "nosec" {
            println!(
                "  handshakes     {} ({} resumed), {:.0}/s; {}; {} sessions lost",
                self.handshakes,
                self.handshakes_resumed,
                self.handshakes_per_second,
                l(&self.handshake_latency_us),
                self.sessions_lost
            );
        }
        println!(
            "  notifications  {} sent ({:.0}/s), {} delivered over MQTT ({:.0}/s), {} duplicates; {}",
            self.notifications_sent,
            self.notifications_sent_per_second,
            self.notifications_delivered,
            self.notifications_delivered_per_second,
            self.notification_duplicates,
            l(&self.notification_latency_us)
        );
        println!(
            "  commands       {} sent, {} answered, {} failed, {} timed out ({} answered later), {} answered twice; {}",
            self.commands_sent,
            self.commands_answered,
            self.command_failures,
            self.command_timeouts,
            self.commands_answered_late,
            self.command_duplicates,
            l(&self.command_latency_us)
        );
        println!(
            "  devices        {} requests answered, {} sends ({} acknowledged, {} delivered), {} sensor changes, {} observations, {} sleeps, {} wakes, {} reboots, {} rebinds",
            self.requests_answered,
            self.sends,
            self.sends_acknowledged,
            self.sends_delivered,
            self.sensor_changes,
            self.observations,
            self.sleeps,
            self.wakes,
            self.reboots,
            self.rebinds
        );
        if let Some(s) = &self.server_process {
            println!(
                "  server pid {}  cpu {:.1} s (avg {:.0} %, max {:.0} %), rss {:.1} MB at start, {:.1} MB max, {:.1} MB at stop, {} B per registered device",
                s.pid,
                s.cpu_seconds,
                s.cpu_percent_avg,
                s.cpu_percent_max,
                s.rss_start_bytes as f64 / 1e6,
                s.rss_max_bytes as f64 / 1e6,
                s.rss_at_stop_bytes as f64 / 1e6,
                s.rss_per_registered_device_bytes
            );
        }
        println!(
            "  timeouts {}, errors {} {:?}",
            self.timeouts, self.errors_total, self.errors
        );
    }

    pub(crate) fn write_json(&self, path: &std::path::Path) -> anyhow::Result<()> {
        std::fs::write(path, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("writing {}", path.display()))
    }
}

fn us(v: u64) -> String {
    if v >= 10_000_000 {
        format!("{:.1} s", v as f64 / 1e6)
    } else if v >= 10_000 {
        format!("{:.1} ms", v as f64 / 1e3)
    } else {
        format!("{v} us")
    }
}

/// What the campaign counted, merged into the report.
#[derive(Debug, Default, Clone)]
pub(crate) struct FirmwareCounts {
    pub requested: u64,
    pub finished: u64,
    pub updated: u64,
    pub timed_out: u64,
    pub outcomes: BTreeMap<String, u64>,
    pub results: BTreeMap<i64, u64>,
    /// From the request to the outcome, per device.
    pub time: Latency,
    /// Package bytes the server reported moved, summed over finished devices.
    pub bytes: u64,
    /// From the first request to the last update.
    pub span: Duration,
}

/// The campaign in the report.
#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub(crate) struct FirmwareReport {
    pub package: String,
    pub method: String,
    pub requested: u64,
    pub finished: u64,
    pub updated: u64,
    pub updated_per_minute: f64,
    pub timed_out: u64,
    pub outcomes: BTreeMap<String, u64>,
    pub results: BTreeMap<i64, u64>,
    pub bytes: u64,
    pub time_per_device_us: Percentiles,
}

impl FirmwareCounts {
    pub(crate) fn report(
        &self,
        package: &str,
        method: super::scenario::FirmwareMethod,
    ) -> FirmwareReport {
        let minutes = self.span.as_secs_f64() / 60.0;
        FirmwareReport {
            package: package.to_owned(),
            method: format!("{method:?}").to_lowercase(),
            requested: self.requested,
            finished: self.finished,
            updated: self.updated,
            updated_per_minute: if minutes > 0.0 {
                self.updated as f64 / minutes
            } else {
                0.0
            },
            timed_out: self.timed_out,
            outcomes: self.outcomes.clone(),
            results: self.results.clone(),
            bytes: self.bytes,
            time_per_device_us: self.time.summary(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_kinds_are_bounded() {
        let mut e = Errors::default();
        for i in 0..1000 {
            e.add(format!("kind {i}"));
        }
        assert_eq!(e.0.len(), MAX_ERROR_KINDS + 1);
        assert_eq!(e.0.get("other"), Some(&(1000 - MAX_ERROR_KINDS as u64)));
    }

    #[test]
    fn counts_cross_processes_exactly() {
        let mut a = DeviceCounts::default();
        let mut b = DeviceCounts::default();
        for ms in 1..=100 {
            a.registration_latency.record(Duration::from_millis(ms));
        }
        b.registration_latency.record(Duration::from_secs(5));
        a.first_sent_us = 10;
        b.first_sent_us = 5;
        b.errors.add("x");
        let b: DeviceCounts = serde_json::from_str(&serde_json::to_string(&b).unwrap()).unwrap();
        a.merge(&b);
        let p = a.registration_latency.summary();
        assert_eq!(p.count, 101);
        assert!(p.max >= 5_000_000 && p.p50 < 60_000, "{p:?}");
        assert_eq!(a.first_sent_us, 5);
        assert_eq!(a.errors.total(), 1);
    }

    #[test]
    fn bootstrap_counts_merge_and_report_a_rate_over_the_ramp() {
        let mut a = BootstrapCounts::default();
        let mut b = BootstrapCounts::default();
        a.attempts = 3;
        a.complete = 2;
        a.last_complete_us = 1_500_000;
        for ms in [100, 200] {
            a.latency.record(Duration::from_millis(ms));
        }
        a.failures.add("no finish");
        b.attempts = 2;
        b.complete = 2;
        b.last_complete_us = 2_000_000;
        b.latency.record(Duration::from_secs(3));
        b.failures.add("no finish");
        b.failures.add("refused 4.03");
        let b: BootstrapCounts = serde_json::from_str(&serde_json::to_string(&b).unwrap()).unwrap();
        a.merge(&b);
        let r = a.report(1_000_000);
        assert_eq!((r.attempts, r.complete), (5, 4));
        assert_eq!(r.ramp_seconds, 1.0);
        assert_eq!(r.complete_per_second, 4.0);
        assert_eq!(r.latency_us.count, 3);
        assert!(
            r.latency_us.p50 < 250_000 && r.latency_us.max >= 3_000_000,
            "{r:?}"
        );
        assert_eq!(r.failures_total, 3);
        assert_eq!(r.failures.get("no finish"), Some(&2));
        // Nothing complete: no rate, not a division by zero.
        assert_eq!(
            BootstrapCounts::default().report(5).complete_per_second,
            0.0
        );
    }
}
