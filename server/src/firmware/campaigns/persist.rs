//! The campaigns' records in the store (`Table::FirmwareCampaigns`) and bringing them back
//! after a restart, each device in the phase it was in (OMA LwM2M TS 1.2 Core E.6).
use super::campaign::{self, Campaign, CampaignRecord, DeviceRecord};
use super::device::DeviceUpdate;
use super::{phase_index, CampaignId, Campaigns, Method, MAX_CAMPAIGNS, MAX_TARGETS};
use crate::core::persist::StoreOp;
use crate::core::types::{FirmwareOutcome, FirmwarePhase};
use crate::firmware::packages::{Package, PackageId};
use crate::store::Table;
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant, SystemTime};

impl Campaigns {
    pub(super) fn put_campaign(&mut self, id: CampaignId, r: &CampaignRecord) {
        if let Ok(v) = serde_json::to_vec(r) {
            self.store_ops.push_back(StoreOp::Put(
                Table::FirmwareCampaigns,
                campaign::campaign_key(id),
                v,
            ));
        }
    }

    pub(super) fn device_record(&self, d: &DeviceUpdate) -> Vec<u8> {
        let r = DeviceRecord {
            phase: d.phase.as_str().to_string(),
            outcome: d.outcome.map(|o| o.as_str().to_string()),
            state: d.state,
            result: d.result,
            version: d.version.clone(),
            warning: d.warning.clone(),
            bytes: d.bytes,
            transferred: d.transferred,
            next_block: d.next_block,
            szx: d.szx,
            deadline_ms: d.deadline.map(|t| lwm2m::time::unix_millis(self.wall(t))),
        };
        serde_json::to_vec(&r).unwrap_or_default()
    }

    pub(super) fn wall(&self, t: Instant) -> SystemTime {
        match t.checked_duration_since(self.clock_base.0) {
            Some(after) => self.clock_base.1 + after,
            None => self.clock_base.1,
        }
    }

    fn instant_of(&self, now: Instant, unix_ms: u64) -> Instant {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(unix_ms);
        match t.duration_since(self.wall(now)) {
            Ok(ahead) => lwm2m::time::deadline(now, ahead),
            Err(_) => now,
        }
    }

    /// Rebuilds the campaigns from their stored records; `package` gives each campaign's
    /// package. Devices in progress are brought back in step at the next
    /// [`handle_timeout`](Self::handle_timeout). Returns the records skipped as unreadable.
    pub fn restore(
        &mut self,
        now: Instant,
        records: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>,
        package: &dyn Fn(&PackageId) -> Option<Package>,
    ) -> usize {
        let mut skipped = 0;
        let mut devices = Vec::new();
        for (k, v) in records {
            if let Some(id) = campaign::parse_campaign_key(&k) {
                match serde_json::from_slice::<CampaignRecord>(&v) {
                    Ok(record)
                        if self.campaigns.len() < MAX_CAMPAIGNS
                            && (1..=100_000).contains(&record.concurrency) =>
                    {
                        if record.spec.method == Method::Push {
                            if let Some(p) = package(&record.spec.package) {
                                self.packages.insert(id, p);
                            }
                        }
                        self.next_id = self.next_id.max(id.0);
                        self.campaigns.insert(
                            id,
                            Campaign {
                                record,
                                devices: BTreeMap::new(),
                                queue: VecDeque::new(),
                                in_progress: 0,
                            },
                        );
                    }
                    _ => skipped += 1,
                }
            } else if let Some((id, ep)) = campaign::parse_device_key(&k)
                .filter(|(_, ep)| crate::core::persist::check_endpoint(ep).is_ok())
            {
                match serde_json::from_slice::<DeviceRecord>(&v) {
                    Ok(r) => devices.push((id, ep, r)),
                    Err(_) => skipped += 1,
                }
            } else {
                skipped += 1;
            }
        }
        for (id, ep, r) in devices {
            let Some(phase) = campaign::phase_from_name(&r.phase) else {
                skipped += 1;
                continue;
            };
            let deadline = r.deadline_ms.map(|ms| self.instant_of(now, ms));
            let Some(c) = self.campaigns.get_mut(&id) else {
                skipped += 1;
                continue;
            };
            if c.devices.len() >= MAX_TARGETS {
                skipped += 1;
                continue;
            }
            let mut d = DeviceUpdate::new(ep.clone());
            let (phase, outcome) = if c.record.spec.method == Method::Push
                && !phase.is_final()
                && !self.packages.contains_key(&id)
            {
                // Its package is gone: nothing can be pushed any more.
                (FirmwarePhase::Done, Some(FirmwareOutcome::CommandFailed))
            } else {
                (phase, campaign::outcome_of(&r))
            };
            d.phase = phase;
            d.outcome = outcome;
            d.state = r.state;
            d.result = r.result;
            d.version = r.version;
            d.warning = r.warning;
            d.bytes = r.bytes;
            d.transferred = r.transferred;
            d.next_block = r.next_block;
            // RFC 7959 §2.2: SZX 7 is reserved.
            d.szx = r.szx.filter(|s| *s <= 6);
            d.deadline = deadline;
            if phase == FirmwarePhase::Queued {
                c.queue.push_back(ep.clone());
            } else if phase.in_progress() {
                c.in_progress += 1;
                self.busy.insert(ep.clone(), id);
                if let Some(t) = deadline {
                    self.deadlines.insert((t, id, ep.clone()));
                }
                if matches!(
                    phase,
                    FirmwarePhase::Downloading | FirmwarePhase::Downloaded
                ) {
                    self.targets.target(&ep, &c.record.spec.package);
                }
                self.resume.push((id, ep.clone()));
            }
            c.devices.insert(ep, d);
            if let Some(n) = self.counts.get_mut(phase_index(phase)) {
                *n += 1;
            }
        }
        if !self.resume.is_empty() || self.campaigns.values().any(|c| !c.queue.is_empty()) {
            self.resume_at = Some(now);
        }
        skipped
    }
}

/// Whether a campaign stored in `store` that has not finished uses `package`: what refuses
/// `fw remove` when no server runs. The campaigns are rebuilt from their records exactly as
/// a starting server would (with `packages` for their bytes), so the answer is the running
/// server's.
pub fn stored_campaigns_use(
    store: &crate::store::Store,
    packages: &crate::firmware::packages::Packages,
    package: &PackageId,
) -> Result<bool, crate::store::StoreError> {
    let now = Instant::now();
    let settings = super::CampaignSettings::from_config(&crate::config::FirmwareSection::default());
    let mut campaigns = Campaigns::new(settings, (now, std::time::SystemTime::now()));
    let records = store.scan(crate::store::Table::FirmwareCampaigns, b"")?;
    campaigns.restore(now, records, &|id| packages.get(id).cloned());
    Ok(campaigns.uses(package))
}
