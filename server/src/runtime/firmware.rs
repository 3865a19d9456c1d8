//! Firmware update campaigns on the server task (OMA LwM2M TS 1.2 Core Appendix E.6): the
//! campaigns see every device event and submit through the same command path as everything
//! else; what they emit (store writes, `DeviceEvent::Firmware`) goes to the same sinks as the
//! core's. The `fw` admin operations and the MQTT `firmware-update` command start, show and
//! cancel them here.
use super::{CoreAt, Shell};
use crate::bridge::sink::CommandPath;
use crate::config::Config;
use crate::core::types::{Command, CommandId, DeviceEvent, Link};
use crate::core::ServerCore;
use crate::firmware::campaigns::{
    CampaignError, CampaignId, CampaignSettings, CampaignSpec, Campaigns, Method, Targets,
    MAX_TARGETS,
};
use crate::firmware::packages::PackageId;
use crate::firmware::SharedFirmware;
use crate::provisioning::admin::{AdminOp, AdminReply, CampaignSummary, Refusal};
use crate::store::{Store, Table};
use lwm2m::model::Path;
use std::time::{Duration, Instant, SystemTime};

/// The campaigns of a previous run, read back from the store; their packages, and the
/// download targets they set, in `firmware`.
pub(crate) fn open_campaigns(
    config: &Config,
    store: &Store,
    firmware: &SharedFirmware,
    now: Instant,
    clock_base: (Instant, SystemTime),
) -> anyhow::Result<Campaigns> {
    let mut campaigns = Campaigns::new(CampaignSettings::from_config(&config.firmware), clock_base);
    campaigns.set_targets(firmware.clone());
    let entries = store.scan(Table::FirmwareCampaigns, b"")?;
    let skipped = campaigns.restore(now, entries, &|id| firmware.package(id));
    if skipped > 0 {
        tracing::warn!(
            skipped,
            "unreadable firmware campaign records skipped at start"
        );
    }
    Ok(campaigns)
}

/// The command path at one instant, with the campaigns for `firmware-update`.
pub(super) struct ShellPath<'a> {
    pub(super) core: &'a mut ServerCore<Link>,
    pub(super) campaigns: &'a mut Campaigns,
    pub(super) packages: &'a SharedFirmware,
    pub(super) now: Instant,
}

impl ShellPath<'_> {
    fn core(&mut self) -> CoreAt<'_> {
        CoreAt {
            core: self.core,
            now: self.now,
        }
    }
}

impl CommandPath for ShellPath<'_> {
    fn submit(&mut self, command: Command) -> CommandId {
        self.core().submit(command)
    }

    fn cancel_observation(&mut self, endpoint: &str, path: Path) -> CommandId {
        self.core().cancel_observation(endpoint, path)
    }

    fn bootstrap_trigger(
        &mut self,
        endpoint: &str,
        ttl: Option<Duration>,
        timeout: Option<Duration>,
    ) -> CommandId {
        self.core().bootstrap_trigger(endpoint, ttl, timeout)
    }

    fn secure(&self, endpoint: &str) -> Option<bool> {
        super::secure(self.core, endpoint)
    }

    fn firmware_update(
        &mut self,
        endpoint: &str,
        package: &str,
        method: Option<&str>,
    ) -> Result<String, String> {
        let method = method.map_or(Ok(Method::Pull), str::parse)?;
        let spec = CampaignSpec {
            package: PackageId(package.to_string()),
            method,
            targets: Targets::Endpoints(vec![endpoint.to_string()]),
            concurrency: Some(1),
            require_version: false,
        };
        start(self.core, self.campaigns, self.packages, self.now, spec)
            .map(|id| id.to_string())
            .map_err(|r| r.error.unwrap_or_default())
    }
}

/// A campaign operation's refusal, of the kind its error is.
fn campaign_refusal(e: &CampaignError) -> AdminReply {
    match e {
        CampaignError::Unknown(_) => AdminReply::refused(Refusal::NotFound, e.to_string()),
        _ => AdminReply::error(e.to_string()),
    }
}

/// Starts a campaign of a stored package.
fn start(
    core: &mut ServerCore<Link>,
    campaigns: &mut Campaigns,
    packages: &SharedFirmware,
    now: Instant,
    spec: CampaignSpec,
) -> Result<CampaignId, Box<AdminReply>> {
    let Some(package) = packages.package(&spec.package) else {
        return Err(Box::new(AdminReply::refused(
            Refusal::NotFound,
            format!("no package {}", spec.package),
        )));
    };
    // Only a campaign for every device needs the registered ones, and at most as many as
    // a campaign takes: no copy of every name for a one-device update.
    let mut registered = match spec.targets {
        Targets::All { .. } => core
            .registrations()
            .take(MAX_TARGETS + 1)
            .map(|r| r.endpoint.clone())
            .collect::<Vec<_>>(),
        Targets::Endpoints(_) => Vec::new(),
    }
    .into_iter();
    let mut path = CoreAt { core, now };
    campaigns
        .start(now, spec, package, &mut registered, &mut path)
        .map_err(|e| Box::new(campaign_refusal(&e)))
}

impl Shell {
    /// A device event for the campaigns (their own events excepted).
    pub(super) fn campaigns_see(&mut self, now: Instant, ev: &DeviceEvent) {
        if matches!(ev, DeviceEvent::Firmware { .. }) {
            self.stack.metrics().on_event(ev);
            return;
        }
        let mut path = CoreAt {
            core: self.stack.core_mut(),
            now,
        };
        self.campaigns.on_event(now, ev, &mut path);
    }

    /// The campaigns' deadlines due at `now`.
    pub(super) fn campaigns_timeout(&mut self, now: Instant) {
        let mut path = CoreAt {
            core: self.stack.core_mut(),
            now,
        };
        self.campaigns.handle_timeout(now, &mut path);
    }

    /// Hands on what the campaigns produced; true if there was anything.
    pub(super) fn drain_campaigns(&mut self, now: Instant) -> bool {
        let mut any = false;
        while let Some(op) = self.campaigns.poll_store() {
            any = true;
            self.write(op);
        }
        while let Some(ev) = self.campaigns.poll_event() {
            any = true;
            self.device_event(now, ev);
        }
        if any {
            self.stack
                .metrics()
                .set_firmware_devices(&self.campaigns.phase_counts());
        }
        any
    }

    /// `fw update`, `fw status`, `fw cancel`.
    pub(super) fn firmware_admin(&mut self, now: Instant, op: AdminOp) -> AdminReply {
        let parse = |c: &str| {
            c.parse::<CampaignId>()
                .map_err(|_| format!("{c:?} is not a campaign id"))
        };
        match op {
            AdminOp::FwUpdate {
                package,
                endpoints,
                all,
                model,
                from_version,
                method,
                concurrency,
                require_version,
            } => {
                let method = match method.as_deref().map_or(Ok(Method::Pull), str::parse) {
                    Ok(m) => m,
                    Err(e) => return AdminReply::error(e),
                };
                let targets = if all {
                    Targets::All {
                        model,
                        from_version,
                    }
                } else {
                    Targets::Endpoints(endpoints)
                };
                let spec = CampaignSpec {
                    package: PackageId(package),
                    method,
                    targets,
                    concurrency,
                    require_version,
                };
                match start(
                    self.stack.core_mut(),
                    &mut self.campaigns,
                    &self.firmware.shared,
                    now,
                    spec,
                ) {
                    Ok(id) => {
                        tracing::info!(campaign = %id, "firmware campaign started");
                        AdminReply {
                            campaign: Some(id.to_string()),
                            ..AdminReply::ok()
                        }
                    }
                    Err(refusal) => *refusal,
                }
            }
            AdminOp::FwStatus { campaign } => {
                let id = match parse(&campaign) {
                    Ok(id) => id,
                    Err(e) => return AdminReply::error(e),
                };
                match self.campaigns.status(id) {
                    Some(s) => AdminReply {
                        firmware: serde_json::to_value(s).ok(),
                        ..AdminReply::ok()
                    },
                    None => {
                        AdminReply::refused(Refusal::NotFound, format!("no campaign {campaign}"))
                    }
                }
            }
            AdminOp::FwCancel { campaign } => {
                let id = match parse(&campaign) {
                    Ok(id) => id,
                    Err(e) => return AdminReply::error(e),
                };
                let mut path = CoreAt {
                    core: self.stack.core_mut(),
                    now,
                };
                match self.campaigns.cancel(now, id, &mut path) {
                    Ok(()) => AdminReply::ok(),
                    Err(e) => campaign_refusal(&e),
                }
            }
            AdminOp::FwCampaigns => AdminReply {
                campaigns: Some(
                    self.campaigns
                        .list()
                        .into_iter()
                        .map(|(id, finished, package)| CampaignSummary {
                            id: id.to_string(),
                            package: package.0,
                            finished,
                        })
                        .collect(),
                ),
                ..AdminReply::ok()
            },
            _ => AdminReply::error("not a firmware operation"),
        }
    }
}
