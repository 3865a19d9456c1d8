//! The backend's side of a firmware update campaign (OMA LwM2M TS 1.2 Core Appendix E.6):
//! which device to update next, at most `concurrency` at a time, and what each one's
//! `up/firmware` messages say until its outcome.
//!
//! Each device gets its own request, `firmware-update` on `{prefix}/{ep}/dn/cmd` with
//! `{"package", "method", "concurrency"}`; the server runs it as a one-device campaign and
//! publishes the device's progress on `{prefix}/{ep}/up/firmware`
//! (`{"campaign", "package", "state", "result", "outcome", "bytes"}`). A message with an
//! outcome ends the device's update: it counts as updated when its Update Result is 1.
use super::report::FirmwareCounts;
use super::scenario::{FirmwareMethod, FirmwareSection};
use serde_json::{json, Value as Json};
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

/// Distinct outcome names counted; more are counted as "other".
const MAX_OUTCOMES: usize = 32;

/// The campaign's state in the backend.
pub(crate) struct Campaign {
    section: FirmwareSection,
    package: String,
    start: Instant,
    /// Registered devices not yet asked, in the order they registered.
    waiting: VecDeque<String>,
    /// Every device queued or asked once (a device registers again after its update).
    seen: HashSet<String>,
    /// Devices updating, since when.
    active: HashMap<String, Instant>,
    first_request: Option<Instant>,
    pub(crate) counts: FirmwareCounts,
}

impl Campaign {
    pub(crate) fn new(section: FirmwareSection, package: String, now: Instant) -> Self {
        Self {
            start: now + Duration::from_secs(section.start_after_secs),
            section,
            package,
            waiting: VecDeque::new(),
            seen: HashSet::new(),
            active: HashMap::new(),
            first_request: None,
            counts: FirmwareCounts::default(),
        }
    }

    /// A device registered: it is updated in its turn, once.
    pub(crate) fn registered(&mut self, ep: &str) {
        if self.seen.insert(ep.to_owned()) {
            self.waiting.push_back(ep.to_owned());
        }
    }

    /// The requests to publish now: `(endpoint, data)` of `firmware-update`.
    pub(crate) fn due(&mut self, now: Instant) -> Vec<(String, Json)> {
        let mut out = Vec::new();
        if now < self.start {
            return out;
        }
        let method = match self.section.method {
            FirmwareMethod::Pull => "pull",
            FirmwareMethod::Push => "push",
        };
        while self.active.len() < self.section.concurrency as usize {
            let Some(ep) = self.waiting.pop_front() else {
                break;
            };
            self.active.insert(ep.clone(), now);
            self.first_request.get_or_insert(now);
            self.counts.requested += 1;
            let data = json!({
                "package": self.package,
                "method": method,
                "concurrency": self.section.concurrency,
            });
            out.push((ep, data));
        }
        out
    }

    /// The server refused to start the device's update: it ends there.
    pub(crate) fn refused(&mut self, ep: &str, now: Instant, code: &str) {
        if self.active.remove(ep).is_some() {
            self.finish(now, &format!("refused {code}"), None, 0, None);
        }
    }

    /// An `up/firmware` message of `ep`.
    pub(crate) fn message(&mut self, ep: &str, json: &Json, now: Instant) {
        // The fields may come at the top level or under `data`, as other uplinks do.
        let d = if json["data"].is_object() {
            &json["data"]
        } else {
            json
        };
        let outcome = match &d["outcome"] {
            Json::Null => return,
            Json::String(s) => s.clone(),
            other => other.to_string(),
        };
        let Some(since) = self.active.remove(ep) else {
            return; // not ours, or already ended
        };
        let result = d["result"].as_i64();
        let bytes = d["bytes"].as_u64().unwrap_or(0);
        self.finish(
            now,
            &outcome,
            result,
            bytes,
            Some(now.duration_since(since)),
        );
    }

    fn finish(
        &mut self,
        now: Instant,
        outcome: &str,
        result: Option<i64>,
        bytes: u64,
        took: Option<Duration>,
    ) {
        let c = &mut self.counts;
        c.finished += 1;
        c.bytes += bytes;
        let key = if c.outcomes.len() < MAX_OUTCOMES || c.outcomes.contains_key(outcome) {
            outcome.to_owned()
        } else {
            "other".to_owned()
        };
        *c.outcomes.entry(key).or_default() += 1;
        if let Some(r) = result {
            *c.results.entry(r.clamp(-1, 255)).or_default() += 1;
        }
        if let Some(t) = took {
            c.time.record(t);
        }
        if result == Some(1) {
            c.updated += 1;
            if let Some(first) = self.first_request {
                c.span = now.duration_since(first);
            }
        }
    }

    /// Devices past `device_timeout_secs` end as timed out.
    pub(crate) fn sweep(&mut self, now: Instant) {
        let limit = Duration::from_secs(self.section.device_timeout_secs);
        let late: Vec<String> = self
            .active
            .iter()
            .filter(|(_, since)| now.duration_since(**since) > limit)
            .map(|(ep, _)| ep.clone())
            .collect();
        for ep in late {
            self.active.remove(&ep);
            self.counts.timed_out += 1;
            self.finish(now, "timeout", None, 0, None);
        }
    }

    /// Whether devices are still updating.
    pub(crate) fn busy(&self) -> bool {
        !self.active.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(concurrency: u32) -> FirmwareSection {
        FirmwareSection {
            concurrency,
            start_after_secs: 0,
            ..FirmwareSection::default()
        }
    }

    #[test]
    fn devices_are_paced_by_concurrency_and_timed_to_their_outcome() {
        let t0 = Instant::now();
        let mut c = Campaign::new(section(2), "00ff".into(), t0);
        for ep in ["a", "b", "c", "a"] {
            c.registered(ep);
        }
        let first = c.due(t0);
        assert_eq!(first.len(), 2);
        assert_eq!(first[0].1["package"], "00ff");
        assert_eq!(first[0].1["method"], "pull");
        assert!(c.due(t0).is_empty(), "two at a time");
        // Progress without an outcome changes nothing.
        c.message("a", &json!({"state": 1, "outcome": null}), t0);
        assert!(c.due(t0).is_empty());
        let t1 = t0 + Duration::from_secs(30);
        c.message(
            "a",
            &json!({"campaign": "x", "package": "00ff", "state": 0, "result": 1, "outcome": "updated", "bytes": 1000}),
            t1,
        );
        assert_eq!(c.due(t1).len(), 1, "c takes a's place");
        c.message(
            "b",
            &json!({"data": {"result": 8, "outcome": "failed"}}),
            t1,
        );
        // A device registering again after its update is not asked twice.
        c.registered("a");
        assert!(c.due(t1).is_empty());
        c.sweep(t1 + Duration::from_secs(3600));
        let r = c.counts.report("00ff", FirmwareMethod::Pull);
        assert_eq!(
            (r.requested, r.finished, r.updated, r.timed_out),
            (3, 3, 1, 1)
        );
        assert_eq!(r.outcomes.get("updated"), Some(&1));
        assert_eq!(r.outcomes.get("failed"), Some(&1));
        assert_eq!(r.results.get(&8), Some(&1));
        assert_eq!(r.bytes, 1000);
        assert_eq!(r.time_per_device_us.count, 2);
        assert!((r.updated_per_minute - 2.0).abs() < 1e-9, "1 in 30 s");
        assert!(!c.busy());
    }

    #[test]
    fn nothing_starts_before_start_after() {
        let t0 = Instant::now();
        let mut c = Campaign::new(
            FirmwareSection {
                start_after_secs: 10,
                ..FirmwareSection::default()
            },
            "1".into(),
            t0,
        );
        c.registered("a");
        assert!(c.due(t0 + Duration::from_secs(5)).is_empty());
        assert_eq!(c.due(t0 + Duration::from_secs(10)).len(), 1);
        c.refused("a", t0, "4.04");
        assert_eq!(c.counts.outcomes.get("refused 4.04"), Some(&1));
    }
}
