//! One device's firmware update, as the Firmware Update object (OMA LwM2M TS 1.2 Core
//! Appendix E.6, Object 5) drives it: the package written (pull: its URI to `/5/0/1`; push:
//! its bytes to `/5/0/0`), State (`/5/0/3`) and Update Result (`/5/0/5`) observed, Update
//! (`/5/0/2`) executed once State is 2 Downloaded, and the result read once the device
//! registers again with the new firmware, with its version (`/3/0/3`).
//!
//! Sans-IO and without commands of its own: each input returns the [`Step`]s to run next;
//! the campaign engine turns them into commands and feeds their results back.
use crate::core::types::{CommandError, Content, FirmwareOutcome, FirmwarePhase, Outcome};
use crate::firmware::packages::MAX_LABEL;
use lwm2m::model::{Node, Resource, Value};
use lwm2m::ops::dm::DmResponse;
use std::time::{Duration, Instant};

/// A push restarted from block 0 after an error other than an interruption, at most this
/// often; interruptions (the device acknowledged blocks) resume at most
/// [`MAX_RESUMES`] times.
pub(super) const MAX_PUSH_RESTARTS: u8 = 3;
/// Resumes of an interrupted push.
pub(super) const MAX_RESUMES: u8 = 16;

/// A command the engine runs for a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// Read `/3/0/1` (Model Number) to match the campaign's filter.
    ReadModel,
    /// Read `/3/0/3` (Firmware Version) to match the campaign's filter.
    ReadCurrentVersion,
    /// Observe `/5/0/3`.
    ObserveState,
    /// Observe `/5/0/5`.
    ObserveResult,
    /// Read `/5/0/3`.
    ReadState,
    /// Read `/5/0/5`.
    ReadResult,
    /// Write the package's URI (pull) or its bytes (push) from `next_block`.
    Transfer,
    /// Execute `/5/0/2` (Update).
    Execute,
    /// Read `/3/0/3` after a successful update.
    ReadNewVersion,
    /// Write an empty Package URI (pull) or Package (push): cancels a download (E.6).
    Abort,
}

/// What a device's update depends on in its campaign.
#[derive(Debug, Clone)]
pub(super) struct Ctx<'a> {
    /// Push (the server writes the package) rather than pull.
    pub(super) push: bool,
    pub(super) version: &'a str,
    pub(super) size: u64,
    pub(super) require_version: bool,
    pub(super) model_filter: Option<&'a str>,
    pub(super) version_filter: Option<&'a str>,
    pub(super) download_timeout: Duration,
    pub(super) update_timeout: Duration,
}

/// One device's update.
#[derive(Debug, Clone)]
pub(super) struct DeviceUpdate {
    pub(super) endpoint: String,
    pub(super) phase: FirmwarePhase,
    pub(super) outcome: Option<FirmwareOutcome>,
    pub(super) state: Option<i64>,
    pub(super) result: Option<i64>,
    pub(super) version: Option<String>,
    pub(super) warning: Option<String>,
    pub(super) bytes: Option<u64>,
    pub(super) transferred: bool,
    pub(super) next_block: u32,
    pub(super) szx: Option<u8>,
    pub(super) deadline: Option<Instant>,
    /// Push restarts and resumes used.
    pub(super) restarts: u8,
    pub(super) resumes: u8,
    /// Filter reads still awaited while checking; whether every answer so far matched.
    pub(super) checks: u8,
    pub(super) matches: bool,
    /// Update executed and awaiting the device's answer.
    pub(super) executing: bool,
    /// The read of the new version is on its way.
    pub(super) reading_version: bool,
}

/// What an input changed.
#[derive(Debug, Default)]
pub(super) struct Effects {
    pub(super) steps: Vec<Step>,
    /// Something `fw status` or `up/firmware` shows changed.
    pub(super) changed: bool,
}

impl Effects {
    fn step(&mut self, s: Step) {
        self.steps.push(s);
    }
}

impl DeviceUpdate {
    pub(super) fn new(endpoint: String) -> Self {
        Self {
            endpoint,
            phase: FirmwarePhase::Queued,
            outcome: None,
            state: None,
            result: None,
            version: None,
            warning: None,
            bytes: None,
            transferred: false,
            next_block: 0,
            szx: None,
            deadline: None,
            restarts: 0,
            resumes: 0,
            checks: 0,
            matches: true,
            executing: false,
            reading_version: false,
        }
    }

    /// It got a slot: check its model and version if the campaign filters, else download.
    pub(super) fn begin(&mut self, now: Instant, ctx: &Ctx<'_>, fx: &mut Effects) {
        fx.changed = true;
        self.matches = true;
        self.checks = 0;
        if ctx.model_filter.is_some() {
            self.checks += 1;
            fx.step(Step::ReadModel);
        }
        if ctx.version_filter.is_some() {
            self.checks += 1;
            fx.step(Step::ReadCurrentVersion);
        }
        if self.checks > 0 {
            self.phase = FirmwarePhase::Checking;
            self.deadline = Some(lwm2m::time::deadline(now, ctx.download_timeout));
        } else {
            self.download(now, ctx, fx);
        }
    }

    fn download(&mut self, now: Instant, ctx: &Ctx<'_>, fx: &mut Effects) {
        self.phase = FirmwarePhase::Downloading;
        self.deadline = Some(lwm2m::time::deadline(now, ctx.download_timeout));
        self.state = None;
        self.result = None;
        self.transferred = false;
        fx.changed = true;
        // The write first: it resets Update Result to 0 on the device (E.6), so the
        // observations' first values are of this download, not of an earlier one.
        fx.step(Step::Transfer);
        fx.step(Step::ObserveState);
        fx.step(Step::ObserveResult);
    }

    /// Brings a restored device back in step with the device: what it does next depends on
    /// what State and Update Result say now.
    pub(super) fn resume(&mut self, now: Instant, ctx: &Ctx<'_>, fx: &mut Effects) {
        match self.phase {
            FirmwarePhase::Checking => self.begin(now, ctx, fx),
            FirmwarePhase::Downloading | FirmwarePhase::Downloaded => {
                if !self.transferred {
                    fx.step(Step::Transfer);
                }
                fx.step(Step::ObserveState);
                fx.step(Step::ObserveResult);
            }
            FirmwarePhase::Updating => fx.step(Step::ReadResult),
            _ => {}
        }
    }

    /// It registered (`registered`) or updated its registration: a device updating has
    /// rebooted into its new firmware; a device downloading in queue mode is awake.
    pub(super) fn on_registration(&mut self, registered: bool, fx: &mut Effects) {
        match self.phase {
            FirmwarePhase::Updating => fx.step(Step::ReadResult),
            FirmwarePhase::Downloading | FirmwarePhase::Downloaded if registered => {
                // A new registration ends the observations of the old one (Core §6.4).
                fx.step(Step::ObserveState);
                fx.step(Step::ObserveResult);
            }
            FirmwarePhase::Downloading | FirmwarePhase::Downloaded => {
                fx.step(Step::ReadState);
                fx.step(Step::ReadResult);
            }
            _ => {}
        }
    }

    /// A value of State (`/5/0/3`), from an observation or a read.
    pub(super) fn on_state(&mut self, now: Instant, v: i64, ctx: &Ctx<'_>, fx: &mut Effects) {
        if self.phase.is_final() || self.phase == FirmwarePhase::Queued {
            return;
        }
        if self.state != Some(v) {
            self.state = Some(v);
            fx.changed = true;
        }
        let downloading = matches!(
            self.phase,
            FirmwarePhase::Downloading | FirmwarePhase::Downloaded
        );
        match v {
            // Downloaded: a State of 2 before our write was acknowledged may be an earlier
            // package's.
            2 if downloading && self.transferred && !self.executing => {
                self.phase = FirmwarePhase::Downloaded;
                self.bytes = Some(ctx.size);
                self.executing = true;
                fx.changed = true;
                fx.step(Step::Execute);
            }
            3 if downloading && self.transferred => self.updating(now, ctx, fx),
            _ => {}
        }
    }

    fn updating(&mut self, now: Instant, ctx: &Ctx<'_>, fx: &mut Effects) {
        if self.phase != FirmwarePhase::Updating {
            self.phase = FirmwarePhase::Updating;
            self.deadline = Some(lwm2m::time::deadline(now, ctx.update_timeout));
            fx.changed = true;
        }
    }

    /// A value of Update Result (`/5/0/5`).
    pub(super) fn on_result(&mut self, v: i64, fx: &mut Effects) {
        if self.phase.is_final() || self.phase == FirmwarePhase::Queued {
            return;
        }
        if self.result != Some(v) {
            self.result = Some(v);
            fx.changed = true;
        }
        match self.phase {
            // 1 cannot come before the update; 0 is "nothing yet".
            FirmwarePhase::Downloading | FirmwarePhase::Downloaded
                if self.transferred && v >= 2 =>
            {
                self.finish(FirmwareOutcome::from_result(v), fx);
            }
            FirmwarePhase::Updating => match FirmwareOutcome::from_result(v) {
                Some(FirmwareOutcome::Success) if !self.reading_version => {
                    self.reading_version = true;
                    fx.step(Step::ReadNewVersion);
                }
                Some(FirmwareOutcome::Success) | None => {}
                failed => self.finish(failed, fx),
            },
            _ => {}
        }
    }

    /// The result of one of its commands.
    pub(super) fn on_result_of(
        &mut self,
        now: Instant,
        step: Step,
        out: &Outcome,
        ctx: &Ctx<'_>,
    ) -> Effects {
        let mut fx = Effects::default();
        if self.phase.is_final() {
            return fx;
        }
        match (step, out) {
            (Step::ReadModel, _) | (Step::ReadCurrentVersion, _) => {
                if self.phase != FirmwarePhase::Checking {
                    return fx;
                }
                let want = if step == Step::ReadModel {
                    ctx.model_filter
                } else {
                    ctx.version_filter
                };
                let got = text_of(out);
                self.matches &= got.is_some() && got.as_deref() == want;
                self.checks = self.checks.saturating_sub(1);
                if self.checks == 0 {
                    if self.matches {
                        self.download(now, ctx, &mut fx);
                    } else {
                        self.phase = FirmwarePhase::Skipped;
                        self.deadline = None;
                        fx.changed = true;
                    }
                }
            }
            (Step::ObserveState | Step::ReadState, Ok(r)) => {
                if let Some(v) = int_of(r) {
                    self.on_state(now, v, ctx, &mut fx);
                }
            }
            (Step::ObserveResult | Step::ReadResult, Ok(r)) => {
                if let Some(v) = int_of(r) {
                    self.on_result(v, &mut fx);
                }
            }
            (Step::Transfer, Ok(_)) => {
                self.transferred = true;
                fx.changed = true;
                if ctx.push {
                    self.bytes = Some(ctx.size);
                    // Most devices report Downloaded by the notification; a read makes sure.
                    fx.step(Step::ReadState);
                }
            }
            (Step::Transfer, Err(e)) => self.transfer_failed(e, ctx, &mut fx),
            (Step::Execute, Ok(_)) => {
                self.executing = false;
                self.updating(now, ctx, &mut fx);
            }
            // A device may reboot into the update before its answer gets through (or
            // register again before the answer's exchange ends): the update phase goes on,
            // and Update Result says how it went, now if it already registered again, else
            // after its next registration or by the phase's deadline.
            (Step::Execute, Err(CommandError::Timeout | CommandError::Deregistered)) => {
                self.executing = false;
                self.updating(now, ctx, &mut fx);
                fx.step(Step::ReadResult);
            }
            (Step::Execute, Err(_)) => {
                self.executing = false;
                self.finish(Some(FirmwareOutcome::CommandFailed), &mut fx);
            }
            (Step::ReadNewVersion, out) => {
                self.reading_version = false;
                let got = text_of(out);
                let same = got.as_deref() == Some(ctx.version);
                let outcome = if same {
                    FirmwareOutcome::Success
                } else {
                    self.warning = Some(format!(
                        "the device reports version {:?}, the package is {:?}",
                        got.as_deref().unwrap_or("(unread)"),
                        ctx.version
                    ));
                    if ctx.require_version {
                        FirmwareOutcome::VersionMismatch
                    } else {
                        FirmwareOutcome::Success
                    }
                };
                self.version = got;
                self.finish(Some(outcome), &mut fx);
            }
            // Observations and reads that failed leave the phase's deadline to decide.
            _ => {}
        }
        fx
    }

    fn transfer_failed(&mut self, e: &CommandError, ctx: &Ctx<'_>, fx: &mut Effects) {
        if !ctx.push {
            return self.finish(Some(FirmwareOutcome::CommandFailed), fx);
        }
        match e {
            CommandError::Interrupted { next_block, szx } if self.resumes < MAX_RESUMES => {
                self.resumes += 1;
                self.next_block = *next_block;
                self.szx = Some(*szx);
                let block = lwm2m::coap::msg::block_size(*szx) as u64;
                self.bytes = Some((u64::from(*next_block) * block).min(ctx.size));
                fx.changed = true;
                fx.step(Step::Transfer);
            }
            // The device refused the package itself: sending it again changes nothing.
            CommandError::Lwm2m(_) => self.finish(Some(FirmwareOutcome::CommandFailed), fx),
            _ if self.restarts < MAX_PUSH_RESTARTS => {
                self.restarts += 1;
                self.next_block = 0;
                self.bytes = Some(0);
                fx.changed = true;
                fx.step(Step::Transfer);
            }
            _ => self.finish(Some(FirmwareOutcome::CommandFailed), fx),
        }
    }

    /// Its phase's deadline passed.
    pub(super) fn on_deadline(&mut self, fx: &mut Effects) {
        if matches!(
            self.phase,
            FirmwarePhase::Downloading | FirmwarePhase::Downloaded
        ) {
            fx.step(Step::Abort);
        }
        self.finish(Some(FirmwareOutcome::Timeout), fx);
    }

    /// Cancelled by the operator: a download stops (an empty Package URI or Package cancels
    /// it, E.6); an update already executing cannot be called back and goes on.
    pub(super) fn cancel(&mut self, fx: &mut Effects) -> bool {
        match self.phase {
            FirmwarePhase::Queued | FirmwarePhase::Checking => {}
            FirmwarePhase::Downloading | FirmwarePhase::Downloaded => fx.step(Step::Abort),
            _ => return false,
        }
        self.finish(Some(FirmwareOutcome::Cancelled), fx);
        true
    }

    fn finish(&mut self, outcome: Option<FirmwareOutcome>, fx: &mut Effects) {
        self.phase = FirmwarePhase::Done;
        self.outcome = Some(outcome.unwrap_or(FirmwareOutcome::NoResult));
        self.deadline = None;
        fx.changed = true;
    }
}

/// The integer a read, observe or notification carries.
pub(super) fn int_of(r: &DmResponse) -> Option<i64> {
    match r {
        DmResponse::Content { node, .. } => int_of_node(node),
        _ => None,
    }
}

pub(super) fn int_of_node(node: &Node) -> Option<i64> {
    match node {
        Node::Resource(Resource::Single(v)) | Node::ResourceInstance(v) => match v {
            Value::Integer(i) => Some(*i),
            Value::UnsignedInteger(u) => i64::try_from(*u).ok(),
            _ => None,
        },
        _ => None,
    }
}

/// The integer of a notification's content.
pub(super) fn int_of_content(c: &Content) -> Option<i64> {
    match c {
        Content::Node(n) => int_of_node(n),
        Content::Records(_) => None,
    }
}

/// A text resource's value, cut to [`MAX_LABEL`] characters.
fn text_of(out: &Outcome) -> Option<String> {
    match out {
        Ok(DmResponse::Content {
            node: Node::Resource(Resource::Single(Value::String(s))),
            ..
        // A version is a label: what a device says beyond that is not kept, stored and
        // published (it could send megabytes).
        }) => Some(s.chars().take(MAX_LABEL).collect()),
        _ => None,
    }
}
