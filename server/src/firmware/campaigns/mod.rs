//! Firmware update campaigns (OMA LwM2M TS 1.2 Core Appendix E.6, Object 5): a package
//! brought to many devices, a bounded number at a time, through the one command path (so
//! queue mode holds commands for a sleeping device), each device's phase kept in the store
//! so a restarted server carries on.
//!
//! Sans-IO like the server core: inputs are [`Campaigns::start`], [`Campaigns::cancel`],
//! every [`DeviceEvent`] ([`Campaigns::on_event`]) and [`Campaigns::handle_timeout`];
//! outputs are commands (submitted through a [`CommandPath`]), store writes
//! ([`Campaigns::poll_store`]), [`DeviceEvent::Firmware`] events ([`Campaigns::poll_event`])
//! and the next deadline ([`Campaigns::poll_timeout`]).
//!
//! - `campaign`: the campaign, its records in the store, its status.
//! - `device`: one device's update, step by step.
//! - `outcome`: Update Result codes as named outcomes.
//! - `steps`: the command of each step.
//! - `persist`: the records in the store, and the restore.
mod campaign;
mod device;
mod outcome;
mod persist;
pub use persist::stored_campaigns_use;
mod steps;
#[cfg(test)]
mod tests;

pub use campaign::{CampaignId, CampaignSpec, CampaignStatus, DeviceStatus, Method, Targets};

use crate::bridge::sink::CommandPath;
use crate::config::FirmwareSection;
use crate::core::persist::StoreOp;
use crate::core::types::{CommandId, DeviceEvent, FirmwarePhase};
use crate::firmware::packages::{Package, PackageId};
use crate::firmware::SharedFirmware;
use crate::store::Table;
use campaign::{Campaign, CampaignRecord};
use device::{Ctx, DeviceUpdate, Effects, Step};
use lwm2m::model::Path;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant, SystemTime};

/// Campaigns held, running or finished; the oldest finished one goes when a new one needs
/// room.
pub const MAX_CAMPAIGNS: usize = 256;
/// Devices one campaign targets.
pub const MAX_TARGETS: usize = 1_000_000;
/// Events and store writes waiting to be taken: far above what one input produces.
const MAX_PENDING_OUTPUTS: usize = 1 << 20;

const STATE: Path = Path::resource(5, 0, 3);
const RESULT: Path = Path::resource(5, 0, 5);

/// What the campaigns need of `[firmware]`.
#[derive(Debug, Clone)]
pub struct CampaignSettings {
    /// Packages are served under `{coaps_uri or coap_uri}/{path}/{id}`.
    pub path: String,
    /// Base URI for devices registered over DTLS.
    pub coaps_uri: String,
    /// Base URI for devices registered over plain CoAP.
    pub coap_uri: String,
    /// Block size of a push.
    pub push_block_size: usize,
    /// Pause between a push's blocks.
    pub push_block_interval: Duration,
    /// Longest a device may take to get the package.
    pub download_timeout: Duration,
    /// Longest from Execute Update to the result.
    pub update_timeout: Duration,
    /// Devices in progress per campaign unless it says otherwise.
    pub default_concurrency: usize,
}

impl CampaignSettings {
    /// The settings `[firmware]` gives.
    pub fn from_config(c: &FirmwareSection) -> Self {
        Self {
            path: c.path.clone(),
            coaps_uri: c.coaps_uri.clone(),
            coap_uri: c.coap_uri.clone(),
            push_block_size: c.push_block_size,
            push_block_interval: Duration::from_millis(c.push_block_interval_ms),
            download_timeout: Duration::from_secs(c.download_timeout_secs),
            update_timeout: Duration::from_secs(c.update_timeout_secs),
            default_concurrency: c.default_concurrency,
        }
    }
}

/// Why a campaign could not be started or changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CampaignError {
    /// No campaign has that id.
    #[error("no campaign {0}")]
    Unknown(CampaignId),
    /// The campaign targets no device.
    #[error("the campaign targets no device")]
    NoTargets,
    /// Too many devices.
    #[error("a campaign targets at most {MAX_TARGETS} devices")]
    TooManyTargets,
    /// As many campaigns run as are held.
    #[error("{MAX_CAMPAIGNS} campaigns are running; cancel one or wait")]
    TooManyCampaigns,
    /// Concurrency 0 or above the limit.
    #[error("concurrency must be 1 to 100000")]
    Concurrency,
    /// The package given is not the one the spec names.
    #[error("package {0} is not the one the campaign names")]
    WrongPackage(PackageId),
    /// An endpoint name no device can have.
    #[error("{0:?} is not an endpoint name")]
    BadEndpoint(String),
    /// The campaign has already finished.
    #[error("campaign {0} has finished")]
    Finished(CampaignId),
}

/// Every campaign.
pub struct Campaigns {
    settings: CampaignSettings,
    clock_base: (Instant, SystemTime),
    campaigns: BTreeMap<CampaignId, Campaign>,
    /// The bytes of each campaign's package (absent if it was removed meanwhile).
    packages: HashMap<CampaignId, Package>,
    /// Which command is which device's step.
    commands: HashMap<CommandId, (CampaignId, String, Step)>,
    /// The campaign each device in progress belongs to: one at a time.
    busy: HashMap<String, CampaignId>,
    deadlines: BTreeSet<(Instant, CampaignId, String)>,
    /// Devices restored in progress, to be brought back in step at the next timeout.
    resume: Vec<(CampaignId, String)>,
    resume_at: Option<Instant>,
    targets: SharedFirmware,
    next_id: u64,
    store_ops: VecDeque<StoreOp>,
    events: VecDeque<DeviceEvent>,
    /// Devices per phase over every campaign, in the order of [`FirmwarePhase::ALL`], kept
    /// as phases change so metrics need no scan.
    counts: [usize; FirmwarePhase::ALL.len()],
}

/// The index of `p` in [`FirmwarePhase::ALL`].
fn phase_index(p: FirmwarePhase) -> usize {
    FirmwarePhase::ALL.iter().position(|q| *q == p).unwrap_or(0)
}

impl std::fmt::Debug for Campaigns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Campaigns")
            .field("campaigns", &self.campaigns.len())
            .field("busy", &self.busy.len())
            .finish_non_exhaustive()
    }
}

impl Campaigns {
    /// No campaigns. `clock_base` pairs a monotonic instant with the wall-clock time then,
    /// for deadlines kept in the store.
    pub fn new(settings: CampaignSettings, clock_base: (Instant, SystemTime)) -> Self {
        Self {
            settings,
            next_id: lwm2m::time::unix_millis(clock_base.1),
            clock_base,
            campaigns: BTreeMap::new(),
            packages: HashMap::new(),
            commands: HashMap::new(),
            busy: HashMap::new(),
            deadlines: BTreeSet::new(),
            resume: Vec::new(),
            resume_at: None,
            targets: SharedFirmware::default(),
            store_ops: VecDeque::new(),
            events: VecDeque::new(),
            counts: [0; FirmwarePhase::ALL.len()],
        }
    }

    fn count(&mut self, p: FirmwarePhase, add: bool) {
        if let Some(n) = self.counts.get_mut(phase_index(p)) {
            *n = if add { *n + 1 } else { n.saturating_sub(1) };
        }
    }

    /// Where devices in their download phase are registered as the package's targets.
    pub fn set_targets(&mut self, targets: SharedFirmware) {
        self.targets = targets;
    }

    /// Starts a campaign bringing `package` (the one `spec` names) to the devices it
    /// targets; `registered` are the devices registered now, for [`Targets::All`].
    pub fn start(
        &mut self,
        now: Instant,
        spec: CampaignSpec,
        package: Package,
        registered: &mut dyn Iterator<Item = String>,
        path: &mut dyn CommandPath,
    ) -> Result<CampaignId, CampaignError> {
        if package.meta.id != spec.package {
            return Err(CampaignError::WrongPackage(package.meta.id));
        }
        let concurrency = spec
            .concurrency
            .unwrap_or(self.settings.default_concurrency);
        if !(1..=100_000).contains(&concurrency) {
            return Err(CampaignError::Concurrency);
        }
        let mut endpoints: Vec<String> = match &spec.targets {
            Targets::Endpoints(e) => e.clone(),
            Targets::All { .. } => registered.take(MAX_TARGETS + 1).collect(),
        };
        if let Some(bad) = endpoints
            .iter()
            .find(|e| crate::core::persist::check_endpoint(e).is_err())
        {
            return Err(CampaignError::BadEndpoint(bad.chars().take(64).collect()));
        }
        endpoints.sort();
        endpoints.dedup();
        if endpoints.is_empty() {
            return Err(CampaignError::NoTargets);
        }
        if endpoints.len() > MAX_TARGETS {
            return Err(CampaignError::TooManyTargets);
        }
        self.make_room()?;
        self.next_id += 1;
        let id = CampaignId(self.next_id);
        let record = CampaignRecord {
            spec,
            version: package.meta.version.clone(),
            size: package.meta.size,
            concurrency,
            cancelled: false,
            started_ms: lwm2m::time::unix_millis(self.wall(now)),
        };
        self.put_campaign(id, &record);
        let mut c = Campaign {
            record,
            devices: BTreeMap::new(),
            queue: VecDeque::new(),
            in_progress: 0,
        };
        for ep in endpoints {
            let d = DeviceUpdate::new(ep.clone());
            self.store_ops.push_back(StoreOp::Put(
                Table::FirmwareCampaigns,
                campaign::device_key(id, &ep),
                self.device_record(&d),
            ));
            c.queue.push_back(ep.clone());
            c.devices.insert(ep, d);
            self.count(FirmwarePhase::Queued, true);
        }
        // Only a push reads the package's bytes (a pull is served from the package store).
        if c.record.spec.method == Method::Push {
            self.packages.insert(id, package);
        }
        self.campaigns.insert(id, c);
        self.fill(now, id, path);
        Ok(id)
    }

    /// Drops the oldest finished campaign if as many as are held exist.
    fn make_room(&mut self) -> Result<(), CampaignError> {
        if self.campaigns.len() < MAX_CAMPAIGNS {
            return Ok(());
        }
        let Some(old) = self
            .campaigns
            .iter()
            .find(|(_, c)| c.finished())
            .map(|(id, _)| *id)
        else {
            return Err(CampaignError::TooManyCampaigns);
        };
        if let Some(c) = self.campaigns.remove(&old) {
            for d in c.devices.values() {
                self.count(d.phase, false);
            }
        }
        self.packages.remove(&old);
        self.store_ops.push_back(StoreOp::DeletePrefix(
            Table::FirmwareCampaigns,
            campaign::devices_prefix(old),
        ));
        self.store_ops.push_back(StoreOp::Delete(
            Table::FirmwareCampaigns,
            campaign::campaign_key(old),
        ));
        Ok(())
    }

    /// Cancels a campaign: devices waiting never start, downloads are stopped (an empty
    /// Package URI or Package, E.6), updates already executing finish.
    pub fn cancel(
        &mut self,
        now: Instant,
        id: CampaignId,
        path: &mut dyn CommandPath,
    ) -> Result<(), CampaignError> {
        let c = self
            .campaigns
            .get_mut(&id)
            .ok_or(CampaignError::Unknown(id))?;
        if c.finished() {
            return Err(CampaignError::Finished(id));
        }
        c.record.cancelled = true;
        let record = c.record.clone();
        let endpoints: Vec<String> = c
            .devices
            .values()
            .filter(|d| !d.phase.is_final())
            .map(|d| d.endpoint.clone())
            .collect();
        c.queue.clear();
        self.put_campaign(id, &record);
        for ep in endpoints {
            self.with_device(now, id, &ep, path, |d, _, fx| {
                d.cancel(fx);
            });
        }
        Ok(())
    }

    /// A campaign's status.
    pub fn status(&self, id: CampaignId) -> Option<CampaignStatus> {
        self.campaigns.get(&id).map(|c| c.status(id))
    }

    /// Every campaign's id, whether it finished, and its package.
    pub fn list(&self) -> Vec<(CampaignId, bool, PackageId)> {
        self.campaigns
            .iter()
            .map(|(id, c)| (*id, c.finished(), c.record.spec.package.clone()))
            .collect()
    }

    /// Whether a campaign that has not finished uses `package`: such a package cannot be
    /// removed.
    pub fn uses(&self, package: &PackageId) -> bool {
        self.campaigns
            .values()
            .any(|c| !c.finished() && c.record.spec.package == *package)
    }

    /// Devices per phase over every campaign, for metrics.
    pub fn phase_counts(&self) -> BTreeMap<FirmwarePhase, usize> {
        FirmwarePhase::ALL.into_iter().zip(self.counts).collect()
    }

    /// Everything that happens to devices: command results, notifications of State and
    /// Update Result, registrations.
    pub fn on_event(&mut self, now: Instant, ev: &DeviceEvent, path: &mut dyn CommandPath) {
        match ev {
            DeviceEvent::CommandResult { id, outcome, .. } => {
                let Some((cid, ep, step)) = self.commands.remove(id) else {
                    return;
                };
                self.with_device(now, cid, &ep, path, |d, ctx, fx| {
                    *fx = d.on_result_of(now, step, outcome, ctx);
                });
            }
            DeviceEvent::Notification {
                endpoint,
                path: p,
                content,
                ..
            } if *p == STATE || *p == RESULT => {
                let Some(cid) = self.busy.get(endpoint).copied() else {
                    return;
                };
                let Some(v) = device::int_of_content(content) else {
                    return;
                };
                let state = *p == STATE;
                self.with_device(now, cid, endpoint, path, |d, ctx, fx| {
                    if state {
                        d.on_state(now, v, ctx, fx);
                    } else {
                        d.on_result(v, fx);
                    }
                });
            }
            DeviceEvent::Registered { registration, .. }
            | DeviceEvent::Updated { registration } => {
                let registered = matches!(ev, DeviceEvent::Registered { .. });
                let ep = &registration.endpoint;
                let Some(cid) = self.busy.get(ep).copied() else {
                    return;
                };
                self.with_device(now, cid, ep, path, |d, _, fx| {
                    d.on_registration(registered, fx);
                });
            }
            _ => {}
        }
    }

    /// Runs the deadlines due at `now`, and brings restored devices back in step.
    pub fn handle_timeout(&mut self, now: Instant, path: &mut dyn CommandPath) {
        if self.resume_at.is_some_and(|t| t <= now) {
            self.resume_at = None;
            for (cid, ep) in std::mem::take(&mut self.resume) {
                self.with_device(now, cid, &ep, path, |d, ctx, fx| d.resume(now, ctx, fx));
            }
            let ids: Vec<CampaignId> = self.campaigns.keys().copied().collect();
            for id in ids {
                self.fill(now, id, path);
            }
        }
        while let Some(first) = self.deadlines.first().cloned() {
            if first.0 > now {
                break;
            }
            self.deadlines.remove(&first);
            let (_, cid, ep) = first;
            self.with_device(now, cid, &ep, path, |d, _, fx| d.on_deadline(fx));
        }
    }

    /// The next deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let d = self.deadlines.first().map(|(t, _, _)| *t);
        [d, self.resume_at].into_iter().flatten().min()
    }

    /// The next store write.
    pub fn poll_store(&mut self) -> Option<StoreOp> {
        self.store_ops.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<DeviceEvent> {
        self.events.pop_front()
    }

    /// Gives queued devices of campaign `id` the slots it has free.
    fn fill(&mut self, now: Instant, id: CampaignId, path: &mut dyn CommandPath) {
        loop {
            let Some(c) = self.campaigns.get_mut(&id) else {
                return;
            };
            if c.in_progress >= c.record.concurrency || c.record.cancelled {
                return;
            }
            let Some(ep) = c.queue.pop_front() else {
                return;
            };
            if let Some(other) = self.busy.get(&ep).copied() {
                // One update at a time per device: this campaign leaves it out.
                self.with_device(now, id, &ep, path, |d, _, fx| {
                    d.phase = FirmwarePhase::Skipped;
                    d.warning = Some(format!("in progress in campaign {other}"));
                    fx.changed = true;
                });
                continue;
            }
            c.in_progress += 1;
            self.busy.insert(ep.clone(), id);
            self.with_device(now, id, &ep, path, |d, ctx, fx| d.begin(now, ctx, fx));
        }
    }

    /// Runs `f` on one device, then carries out what it asked for and what its change of
    /// phase means for the campaign.
    fn with_device(
        &mut self,
        now: Instant,
        id: CampaignId,
        ep: &str,
        path: &mut dyn CommandPath,
        f: impl FnOnce(&mut DeviceUpdate, &Ctx<'_>, &mut Effects),
    ) {
        let settings = &self.settings;
        let Some(c) = self.campaigns.get_mut(&id) else {
            return;
        };
        let Some(d) = c.devices.get_mut(ep) else {
            return;
        };
        let (model_filter, version_filter) = match &c.record.spec.targets {
            Targets::All {
                model,
                from_version,
            } => (model.as_deref(), from_version.as_deref()),
            Targets::Endpoints(_) => (None, None),
        };
        let ctx = Ctx {
            push: c.record.spec.method == Method::Push,
            version: &c.record.version,
            size: c.record.size,
            require_version: c.record.spec.require_version,
            model_filter,
            version_filter,
            download_timeout: settings.download_timeout,
            update_timeout: settings.update_timeout,
        };
        let (before, deadline_before) = (d.phase, d.deadline);
        let mut fx = Effects::default();
        f(d, &ctx, &mut fx);
        let after = d.phase;
        let d = d.clone();
        let package = c.record.spec.package.clone();
        if d.deadline != deadline_before {
            if let Some(t) = deadline_before {
                self.deadlines.remove(&(t, id, ep.to_string()));
            }
            if let Some(t) = d.deadline {
                self.deadlines.insert((t, id, ep.to_string()));
            }
        }
        for step in fx.steps {
            self.run(id, &d, step, path);
        }
        if before != after {
            self.count(before, false);
            self.count(after, true);
        }
        let downloading = |p| matches!(p, FirmwarePhase::Downloading | FirmwarePhase::Downloaded);
        if downloading(after) && !downloading(before) {
            self.targets.target(ep, &package);
        } else if downloading(before) && !downloading(after) {
            self.targets.untarget(ep, &package);
        }
        if fx.changed || before != after {
            self.store_ops.push_back(StoreOp::Put(
                Table::FirmwareCampaigns,
                campaign::device_key(id, ep),
                self.device_record(&d),
            ));
            if self.events.len() < MAX_PENDING_OUTPUTS {
                self.events.push_back(DeviceEvent::Firmware {
                    endpoint: ep.to_string(),
                    campaign: id.to_string(),
                    package: package.0.clone(),
                    phase: after,
                    state: d.state,
                    result: d.result,
                    outcome: d.outcome,
                    bytes: d.bytes,
                    version: d.version.clone(),
                });
            }
        }
        if before.in_progress() && !after.in_progress() {
            if matches!(
                before,
                FirmwarePhase::Downloading | FirmwarePhase::Downloaded | FirmwarePhase::Updating
            ) {
                // The campaign's observations end with it.
                path.cancel_observation(ep, STATE);
                path.cancel_observation(ep, RESULT);
            }
            if self.busy.get(ep) == Some(&id) {
                self.busy.remove(ep);
            }
            if let Some(c) = self.campaigns.get_mut(&id) {
                c.in_progress = c.in_progress.saturating_sub(1);
            }
            self.commands
                .retain(|_, (cid, e, _)| !(*cid == id && e == ep));
            self.fill(now, id, path);
            if self.campaigns.get(&id).is_some_and(Campaign::finished) {
                // Its bytes are read by pushes only, while they run: a finished campaign
                // must not keep a package alive that `fw remove` dropped.
                self.packages.remove(&id);
            }
        }
    }
}
