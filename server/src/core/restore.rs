//! Bringing the core's state back from the store at start: registrations, observations and
//! queued commands, each record checked before it is believed.
//!
//! The store is crash-safe, but what it holds was written by earlier versions, may have been
//! edited by hand, or may come from a clock that was wrong. Nothing read back may stop the
//! server, so every record goes through the same ranges the live path enforces (a lifetime of
//! at least 1 s, an endpoint name a device could register with, a time stamp not far in the
//! future, an id the counters can continue from, the per-device and global bounds). A record
//! that fails is skipped, counted in [`RestoreReport::unreadable`], logged with its table and
//! key, and deleted, so it is not met again at the next start.
use super::commands::Queued;
use super::persist::{
    self, ObservationRecord, QueuedRecord, StoreOp, MAX_CLOCK_SKEW, MAX_STORED_ID,
};
use super::types::{CommandId, DeregisterReason, DeviceEvent, ObservationId};
use super::{RestoreReport, ServerCore};
use crate::store::{display_key, Entries, Table};
use lwm2m::coap::{Packet, Peer};
use lwm2m::ops::dm::DownlinkRequest;
use std::collections::{HashSet, VecDeque};
use std::fmt::Display;
use std::str::FromStr;
use std::time::{Duration, Instant, SystemTime};

/// Whether a record's time stamp lies so far in the future that this server cannot have
/// written it as it is.
fn from_the_future(t: SystemTime, wall_now: SystemTime) -> bool {
    t > lwm2m::time::wall_deadline(wall_now, MAX_CLOCK_SKEW)
}

/// A stored record: its key (`None` when [`ServerCore::restore`] is given values only) and
/// its value.
pub(super) type Record = (Option<Vec<u8>>, Vec<u8>);

/// The stored key's check: without a key only the value is checked.
fn key_matches(key: Option<&[u8]>, expected: impl FnOnce() -> Vec<u8>) -> Result<(), String> {
    match key {
        Some(k) if k != expected().as_slice() => {
            Err("stored under another key than its fields give".into())
        }
        _ => Ok(()),
    }
}

impl<P: Peer + Display + FromStr> ServerCore<P> {
    /// The registered device a stored request belongs to, if the request has a size the
    /// CoAP endpoint could have sent.
    fn device_of_stored(
        &self,
        endpoint: &str,
        request: &[u8],
    ) -> Result<&super::Device<P>, String> {
        let max = self.config.coap.max_message_size;
        if request.len() > max {
            return Err(format!(
                "request is {} bytes: must be 0..={max}",
                request.len()
            ));
        }
        self.devices
            .get(endpoint)
            .map(|d| &**d)
            .ok_or_else(|| format!("device {endpoint:?} is not registered"))
    }

    /// [`restore`](Self::restore) with each record's store key, which is checked against the
    /// record, shown when a record is skipped, and used to delete it.
    pub fn restore_entries(
        &mut self,
        now: Instant,
        registrations: Entries,
        observations: Entries,
        queued: Entries,
    ) -> RestoreReport {
        let keyed = |e: Entries| e.into_iter().map(|(k, v)| (Some(k), v)).collect();
        self.restore_records(
            now,
            keyed(registrations),
            keyed(observations),
            keyed(queued),
        )
    }

    /// Restores the records of the three tables, in this order (observations and queued
    /// commands belong to registered devices).
    pub(super) fn restore_records(
        &mut self,
        now: Instant,
        registrations: Vec<Record>,
        observations: Vec<Record>,
        queued: Vec<Record>,
    ) -> RestoreReport {
        let mut report = RestoreReport::default();
        let wall_now = self.wall(now);
        for (key, bytes) in registrations {
            match self.restore_registration(now, wall_now, key.as_deref(), &bytes) {
                Ok(true) => report.registrations += 1,
                Ok(false) => report.expired += 1,
                Err(reason) => self.skip(&mut report, Table::Registrations, key, &reason),
            }
        }
        let mut ids = HashSet::new();
        for (key, bytes) in observations {
            let restored = persist::decode::<ObservationRecord>(&bytes)
                .ok_or_else(|| "not an observation record this version can read".to_string())
                .and_then(|r| self.check_observation(key.as_deref(), r, &mut ids))
                .and_then(|r| self.restore_observation(now, r));
            match restored {
                Ok(()) => report.observations += 1,
                Err(reason) => self.skip(&mut report, Table::Observations, key, &reason),
            }
        }
        let mut ids = HashSet::new();
        for (key, bytes) in queued {
            let restored = persist::decode::<QueuedRecord>(&bytes)
                .ok_or_else(|| "not a queued command record this version can read".to_string())
                .and_then(|r| self.restore_queued(now, wall_now, key.as_deref(), r, &mut ids));
            match restored {
                Ok(()) => report.queued += 1,
                Err(reason) => self.skip(&mut report, Table::Queue, key, &reason),
            }
        }
        if report.unreadable > 0 {
            tracing::warn!(
                skipped = report.unreadable,
                "stored records skipped at restore (each logged above)"
            );
        }
        report
    }

    /// A record that will not be restored: counted, logged, and deleted when its key is known.
    fn skip(
        &mut self,
        report: &mut RestoreReport,
        table: Table,
        key: Option<Vec<u8>>,
        reason: &str,
    ) {
        report.unreadable += 1;
        let shown = key.as_deref().map(display_key).unwrap_or_default();
        tracing::warn!(table = table.name(), key = %shown, reason, "stored record skipped");
        if let Some(key) = key {
            self.store_ops.push_back(StoreOp::Delete(table, key));
        }
    }

    /// Restores one registration: `Ok(true)` if it is live, `Ok(false)` if it expired while
    /// the server was down (and is removed), `Err` with the reason to skip it.
    fn restore_registration(
        &mut self,
        now: Instant,
        wall_now: SystemTime,
        key: Option<&[u8]>,
        bytes: &[u8],
    ) -> Result<bool, String> {
        let (reg, peer) = persist::read_registration(bytes)?;
        key_matches(key, || reg.endpoint.as_bytes().to_vec())?;
        let peer = match self.adopting {
            Some(current) => current,
            None => peer
                .parse::<P>()
                .map_err(|_| format!("peer {peer:?} is not an address or session"))?,
        };
        for (name, t) in [
            ("registered_at_ms", reg.registered_at),
            ("updated_at_ms", reg.updated_at),
        ] {
            if from_the_future(t, wall_now) {
                return Err(format!(
                    "{name} = {} lies more than {} s in the future",
                    lwm2m::time::unix_millis(t),
                    MAX_CLOCK_SKEW.as_secs()
                ));
            }
        }
        let links = reg.links.to_link_format().len();
        if links > self.config.coap.max_body_size {
            return Err(format!(
                "links are {links} bytes: must be 0..={} (the largest registration payload)",
                self.config.coap.max_body_size
            ));
        }
        if self.devices.contains_key(&reg.endpoint) {
            return Err(format!("endpoint {:?} is restored already", reg.endpoint));
        }
        if let Some(other) = reg
            .location
            .strip_prefix("/rd/")
            .and_then(|id| self.locations.get(id))
        {
            return Err(format!("location {} belongs to {other:?}", reg.location));
        }
        if let Some(other) = self.by_peer.get(&peer) {
            return Err(format!("peer {peer} belongs to {other:?}"));
        }
        let lifetime = Duration::from_secs(u64::from(reg.lifetime));
        let expires = lwm2m::time::wall_deadline(
            reg.updated_at,
            lifetime.saturating_add(self.config.registration_grace),
        );
        if expires <= wall_now {
            tracing::info!(endpoint = %reg.endpoint, "registration expired while the server was down");
            self.store_ops.push_back(StoreOp::Delete(
                Table::Registrations,
                reg.endpoint.as_bytes().to_vec(),
            ));
            self.store_ops.push_back(StoreOp::DeletePrefix(
                Table::Observations,
                persist::device_prefix(&reg.endpoint),
            ));
            self.events.push_back(DeviceEvent::Deregistered {
                endpoint: reg.endpoint,
                reason: DeregisterReason::Expired,
            });
            return Ok(false);
        }
        if self.devices.len() >= self.config.max_registrations {
            return Err(format!(
                "registrations are at max_registrations ({})",
                self.config.max_registrations
            ));
        }
        self.insert_device(now, reg, peer, VecDeque::new());
        Ok(true)
    }

    /// Checks an observation record against its key, the id range, the ids seen so far and
    /// the per-device bound, before the CoAP endpoint is asked to take it back.
    fn check_observation(
        &self,
        key: Option<&[u8]>,
        r: ObservationRecord,
        ids: &mut HashSet<u64>,
    ) -> Result<ObservationRecord, String> {
        key_matches(key, || persist::sub_key(&r.endpoint, &r.token))?;
        if !(1..=MAX_STORED_ID).contains(&r.id) {
            return Err(format!("id = {}: must be 1..={MAX_STORED_ID}", r.id));
        }
        if !ids.insert(r.id) || self.observations.contains_key(&ObservationId(r.id)) {
            return Err(format!("id {} is restored already", r.id));
        }
        let dev = self.device_of_stored(&r.endpoint, &r.request)?;
        if dev.observations.len() >= self.config.max_observations_per_device {
            return Err(format!(
                "device {:?} has max_observations_per_device ({}) already",
                r.endpoint, self.config.max_observations_per_device
            ));
        }
        Ok(r)
    }

    /// Restores one queued command after checking every field's range.
    fn restore_queued(
        &mut self,
        now: Instant,
        wall_now: SystemTime,
        key: Option<&[u8]>,
        r: QueuedRecord,
        ids: &mut HashSet<u64>,
    ) -> Result<(), String> {
        key_matches(key, || persist::sub_key(&r.endpoint, &r.id.to_be_bytes()))?;
        if !(1..=MAX_STORED_ID).contains(&r.id) {
            return Err(format!("id = {}: must be 1..={MAX_STORED_ID}", r.id));
        }
        if !ids.insert(r.id) {
            return Err(format!("id {} is restored already", r.id));
        }
        let timeout = match r.timeout_ms {
            None => None,
            Some(ms) => {
                let t = Duration::from_millis(ms);
                let range = &super::types::COMMAND_TIMEOUT_RANGE;
                if !range.contains(&t) {
                    return Err(format!(
                        "timeout_ms = {ms}: must be {}..={}",
                        lwm2m::time::millis(*range.start()),
                        lwm2m::time::millis(*range.end())
                    ));
                }
                Some(t)
            }
        };
        let latest = lwm2m::time::wall_deadline(
            lwm2m::time::wall_deadline(wall_now, *super::types::COMMAND_TTL_RANGE.end()),
            MAX_CLOCK_SKEW,
        );
        let expires_at = lwm2m::time::from_unix_millis(r.expires_at_ms);
        if expires_at > latest {
            return Err(format!(
                "expires_at_ms = {} lies further ahead than the longest ttl",
                r.expires_at_ms
            ));
        }
        let dev = self.device_of_stored(&r.endpoint, &r.request)?;
        if dev.queue.len() >= self.config.max_queue_per_device {
            return Err(format!(
                "device {:?} has max_per_device ({}) commands queued already",
                r.endpoint, self.config.max_queue_per_device
            ));
        }
        if self.queue_expiry.len() >= self.config.max_pending_commands {
            return Err(format!(
                "the server holds max_pending_commands ({}) already",
                self.config.max_pending_commands
            ));
        }
        let packet = Packet::from_bytes(&r.request).map_err(|e| format!("request: {e}"))?;
        let (request, _) = DownlinkRequest::from_coap(&packet, self.schema.as_ref())
            .map_err(|e| format!("request: {e}"))?;
        let expires = self.instant_of(expires_at, now);
        let id = CommandId(r.id);
        if self.own_id(r.id) {
            self.next_command = self.next_command.max(r.id);
        }
        let Some(dev) = self.devices.get_mut(&r.endpoint) else {
            return Err(format!("device {:?} is not registered", r.endpoint));
        };
        dev.queue.push_back(Queued {
            id,
            request,
            packet,
            timeout,
            // Upload options are not stored: a restored command uploads from block 0.
            upload: None,
            expires,
        });
        self.queue_expiry.insert((expires, id), r.endpoint);
        Ok(())
    }

    /// The ids of the commands queued and the observations held, for the sinks that keep
    /// state about them (the MQTT bridge's pending requests and observation `reqID`s): after a
    /// restore nothing else is in flight.
    pub(crate) fn restored_ids(&self) -> (HashSet<CommandId>, HashSet<ObservationId>) {
        let commands = self.queue_expiry.keys().map(|(_, id)| *id).collect();
        let observations = self.observations.keys().copied().collect();
        (commands, observations)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::persist::RegistrationRecord;
    use crate::core::CoreConfig;
    use lwm2m::content::ContentFormat;
    use lwm2m::model::{Path, Registry};
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::time::UNIX_EPOCH;

    const NOW_MS: u64 = 1_700_000_000_000;

    fn core(now: Instant) -> ServerCore<SocketAddr> {
        ServerCore::new(
            CoreConfig::default(),
            Arc::new(Registry::bundled()),
            (now, UNIX_EPOCH + Duration::from_millis(NOW_MS)),
        )
    }

    fn registration(endpoint: &str) -> RegistrationRecord {
        RegistrationRecord {
            endpoint: endpoint.into(),
            location: "/rd/0123456789abcdef".into(),
            address: "192.0.2.1:5683".into(),
            lifetime: 3600,
            version: "1.1".into(),
            binding: "U".into(),
            queue_mode: false,
            sms: None,
            links: "</3/0>".into(),
            registered_at_ms: NOW_MS - 1000,
            updated_at_ms: NOW_MS - 1000,
            peer: None,
        }
    }

    fn queued(id: u64) -> QueuedRecord {
        let mut p = DownlinkRequest::Read {
            path: Path::resource(3, 0, 0),
        }
        .to_coap(ContentFormat::Tlv)
        .unwrap();
        p.set_token(Vec::new());
        QueuedRecord {
            id,
            endpoint: "dev".into(),
            request: p.to_bytes_unlimited().unwrap(),
            timeout_ms: Some(5000),
            expires_at_ms: NOW_MS + 60_000,
        }
    }

    /// Restores `dev` and the given records, and returns the report and the store writes.
    fn restore(
        registrations: Vec<RegistrationRecord>,
        queue: Vec<QueuedRecord>,
    ) -> (RestoreReport, Vec<StoreOp>, ServerCore<SocketAddr>) {
        let now = Instant::now();
        let mut c = core(now);
        let regs = registrations
            .iter()
            .map(|r| (r.endpoint.as_bytes().to_vec(), persist::encode(r)))
            .collect();
        let q = queue
            .iter()
            .map(|r| {
                (
                    persist::sub_key(&r.endpoint, &r.id.to_be_bytes()),
                    persist::encode(r),
                )
            })
            .collect();
        let report = c.restore_entries(now, regs, Vec::new(), q);
        let ops = std::iter::from_fn(|| c.poll_store()).collect();
        (report, ops, c)
    }

    fn deleted(ops: &[StoreOp], table: Table, key: &[u8]) -> bool {
        ops.contains(&StoreOp::Delete(table, key.to_vec()))
    }

    /// Makes one field of a valid record bad.
    type Spoil = fn(&mut RegistrationRecord);

    #[test]
    fn registrations_out_of_range_are_skipped_counted_and_deleted() {
        let bad: [(&str, Spoil); 11] = [
            ("lifetime 0", |r| r.lifetime = 0),
            ("updated in the future", |r| {
                r.updated_at_ms = NOW_MS + 86_400_001
            }),
            ("far future", |r| r.registered_at_ms = u64::MAX),
            ("endpoint", |r| r.endpoint = "a\nb".into()),
            ("long endpoint", |r| r.endpoint = "e".repeat(256)),
            ("location", |r| r.location = "/rd/".into()),
            ("location chars", |r| r.location = "/rd/a/b".into()),
            ("address", |r| r.address = String::new()),
            ("peer", |r| r.peer = Some("nowhere".into())),
            ("version", |r| r.version = "9.9".into()),
            ("links", |r| r.links = "<".into()),
        ];
        for (what, spoil) in bad {
            let mut r = registration("dev");
            spoil(&mut r);
            let key = r.endpoint.as_bytes().to_vec();
            let (report, ops, c) = restore(vec![r], Vec::new());
            assert_eq!((report.registrations, report.unreadable), (0, 1), "{what}");
            assert!(deleted(&ops, Table::Registrations, &key), "{what}");
            assert_eq!(c.device_count(), 0, "{what}");
        }
    }

    #[test]
    fn the_extremes_inside_the_ranges_are_restored() {
        let mut r = registration("dev");
        r.lifetime = u32::MAX;
        r.updated_at_ms = NOW_MS + 86_400_000;
        r.endpoint = "e".repeat(255);
        let (report, _, c) = restore(vec![r], Vec::new());
        assert_eq!((report.registrations, report.unreadable), (1, 0));
        assert_eq!(c.device_count(), 1);
        // Lifetime 1 s, updated at the epoch: expired, not skipped.
        let mut r = registration("old");
        r.lifetime = 1;
        r.registered_at_ms = 0;
        r.updated_at_ms = 0;
        let (report, _, _) = restore(vec![r], Vec::new());
        assert_eq!((report.expired, report.unreadable), (1, 0));
    }

    #[test]
    fn conflicting_registrations_keep_the_first() {
        let a = registration("a");
        let mut b = registration("b");
        b.address = "192.0.2.2:5683".into();
        let mut c = registration("c");
        c.location = "/rd/00000000000000ff".into();
        let (report, ops, core) = restore(vec![a, b, c], Vec::new());
        // b has a's location, c a's address.
        assert_eq!((report.registrations, report.unreadable), (1, 2));
        assert!(deleted(&ops, Table::Registrations, b"b"));
        assert!(deleted(&ops, Table::Registrations, b"c"));
        assert!(core.registration("a").is_some());
    }

    #[test]
    fn queued_commands_out_of_range_are_skipped_counted_and_deleted() {
        let now = NOW_MS;
        let bad: Vec<(&str, QueuedRecord)> = vec![
            ("id 0", queued(0)),
            ("id u64::MAX", queued(u64::MAX)),
            ("id past the max", queued(MAX_STORED_ID + 1)),
            (
                "timeout 0",
                QueuedRecord {
                    timeout_ms: Some(0),
                    ..queued(5)
                },
            ),
            (
                "timeout over a day",
                QueuedRecord {
                    timeout_ms: Some(86_400_001),
                    ..queued(6)
                },
            ),
            (
                "expiry past the longest ttl",
                QueuedRecord {
                    expires_at_ms: now + 31 * 86_400_000 + 86_400_000,
                    ..queued(7)
                },
            ),
            (
                "expiry u64::MAX",
                QueuedRecord {
                    expires_at_ms: u64::MAX,
                    ..queued(8)
                },
            ),
            (
                "no such device",
                QueuedRecord {
                    endpoint: "ghost".into(),
                    ..queued(9)
                },
            ),
            (
                "request",
                QueuedRecord {
                    request: vec![0xff; 3],
                    ..queued(10)
                },
            ),
        ];
        for (what, q) in bad {
            let key = persist::sub_key(&q.endpoint, &q.id.to_be_bytes());
            let (report, ops, c) = restore(vec![registration("dev")], vec![q]);
            assert_eq!((report.queued, report.unreadable), (0, 1), "{what}");
            assert!(deleted(&ops, Table::Queue, &key), "{what}");
            assert_eq!(c.queued("dev"), 0, "{what}");
        }
        // The same id twice: the second is skipped.
        let (report, _, c) = restore(vec![registration("dev")], vec![queued(5), queued(5)]);
        assert_eq!((report.queued, report.unreadable), (1, 1));
        assert_eq!(c.queued("dev"), 1);
        // The largest id allowed is restored, and the counter goes on from it.
        let (report, _, mut c) = restore(vec![registration("dev")], vec![queued(MAX_STORED_ID)]);
        assert_eq!((report.queued, report.unreadable), (1, 0));
        assert!(c.next_command_id().0 > MAX_STORED_ID);
    }

    #[test]
    fn a_record_under_another_key_is_skipped() {
        let now = Instant::now();
        let mut c = core(now);
        let r = registration("dev");
        let report = c.restore_entries(
            now,
            vec![(b"other".to_vec(), persist::encode(&r))],
            Vec::new(),
            Vec::new(),
        );
        assert_eq!((report.registrations, report.unreadable), (0, 1));
        // Without keys (values only), the value alone decides.
        let mut c = core(now);
        let report = c.restore(now, vec![persist::encode(&r)], Vec::new(), Vec::new());
        assert_eq!((report.registrations, report.unreadable), (1, 0));
    }
}
