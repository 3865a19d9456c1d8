//! A firmware update campaign (OMA LwM2M TS 1.2 Core Appendix E.6): what it brings to which
//! devices, how, how many at once, and the records that keep it across a restart.
//!
//! Records are JSON under [`Table::FirmwareCampaigns`](crate::store::Table): the campaign
//! under `c` + its id (8 bytes, big-endian), each device under `d` + id + endpoint, so a
//! prefix scan finds one campaign's devices.
use super::device::DeviceUpdate;
use crate::core::types::{FirmwareOutcome, FirmwarePhase};
use crate::firmware::packages::PackageId;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// Identifies a campaign; unique across restarts (counted from the wall clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CampaignId(pub u64);

impl std::fmt::Display for CampaignId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for CampaignId {
    type Err = std::num::ParseIntError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(Self)
    }
}

/// How the package reaches the device (Core E.6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// The device downloads it from the Package URI the server writes to `/5/0/1`.
    #[default]
    Pull,
    /// The server writes it to `/5/0/0`, block-wise (RFC 7959 Block1).
    Push,
}

impl Method {
    /// `pull` or `push`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pull => "pull",
            Self::Push => "push",
        }
    }
}

impl std::str::FromStr for Method {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pull" => Ok(Self::Pull),
            "push" => Ok(Self::Push),
            other => Err(format!("method {other:?} is neither pull nor push")),
        }
    }
}

/// Which devices a campaign updates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Targets {
    /// These endpoints.
    Endpoints(Vec<String>),
    /// Every device registered when the campaign starts whose Model Number (`/3/0/1`) and
    /// Firmware Version (`/3/0/3`) match the filters given.
    All {
        /// Only devices of this model.
        model: Option<String>,
        /// Only devices running this version.
        from_version: Option<String>,
    },
}

/// What an operator asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignSpec {
    /// The package.
    #[serde(with = "package_id")]
    pub package: PackageId,
    /// Pull or push.
    pub method: Method,
    /// Which devices.
    pub targets: Targets,
    /// Devices in progress at once; `None`: `[firmware] default_concurrency`.
    pub concurrency: Option<usize>,
    /// A device reporting another version than the package's after the update failed
    /// (otherwise it is a warning).
    pub require_version: bool,
}

/// A package id as its text (the package store's type has no serde of its own).
mod package_id {
    use crate::firmware::packages::PackageId;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(id: &PackageId, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&id.0)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PackageId, D::Error> {
        String::deserialize(d).map(PackageId)
    }
}

/// The stored form of a campaign.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct CampaignRecord {
    pub spec: CampaignSpec,
    /// The package's version, compared with what devices report.
    pub version: String,
    /// The package's size in bytes.
    pub size: u64,
    pub concurrency: usize,
    pub cancelled: bool,
    /// When it started, Unix milliseconds.
    pub started_ms: u64,
}

/// The stored form of one device's update; a field a later version adds is absent from an
/// older record.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub(super) struct DeviceRecord {
    pub phase: String,
    pub outcome: Option<String>,
    pub state: Option<i64>,
    pub result: Option<i64>,
    pub version: Option<String>,
    pub warning: Option<String>,
    pub bytes: Option<u64>,
    /// The package was written (pull: its URI; push: all of it) and acknowledged.
    pub transferred: bool,
    /// Where a push resumes.
    pub next_block: u32,
    pub szx: Option<u8>,
    /// The phase's deadline, Unix milliseconds.
    pub deadline_ms: Option<u64>,
}

/// The phase named `name`.
pub(super) fn phase_from_name(name: &str) -> Option<FirmwarePhase> {
    FirmwarePhase::ALL.into_iter().find(|p| p.as_str() == name)
}

/// A campaign in memory.
#[derive(Debug)]
pub(super) struct Campaign {
    pub record: CampaignRecord,
    /// Every target device, by endpoint.
    pub devices: BTreeMap<String, DeviceUpdate>,
    /// Devices waiting for a slot, in order.
    pub queue: VecDeque<String>,
    /// Devices holding a slot.
    pub in_progress: usize,
}

impl Campaign {
    /// Whether every device is done or skipped.
    pub(super) fn finished(&self) -> bool {
        self.queue.is_empty() && self.in_progress == 0
    }
}

/// Key of a campaign's record.
pub(super) fn campaign_key(id: CampaignId) -> Vec<u8> {
    let mut k = b"c".to_vec();
    k.extend_from_slice(&id.0.to_be_bytes());
    k
}

/// Prefix of a campaign's device records.
pub(super) fn devices_prefix(id: CampaignId) -> Vec<u8> {
    let mut k = b"d".to_vec();
    k.extend_from_slice(&id.0.to_be_bytes());
    k
}

/// Key of one device's record.
pub(super) fn device_key(id: CampaignId, endpoint: &str) -> Vec<u8> {
    let mut k = devices_prefix(id);
    k.extend_from_slice(endpoint.as_bytes());
    k
}

/// The campaign id and endpoint of a device record's key.
pub(super) fn parse_device_key(key: &[u8]) -> Option<(CampaignId, String)> {
    let rest = key.strip_prefix(b"d")?;
    let (id, ep) = (rest.get(..8)?, rest.get(8..)?);
    let id = u64::from_be_bytes(id.try_into().ok()?);
    Some((CampaignId(id), String::from_utf8(ep.to_vec()).ok()?))
}

/// The campaign id of a campaign record's key.
pub(super) fn parse_campaign_key(key: &[u8]) -> Option<CampaignId> {
    let id = key.strip_prefix(b"c")?;
    Some(CampaignId(u64::from_be_bytes(id.try_into().ok()?)))
}

/// One device as `fw status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceStatus {
    /// The endpoint.
    pub endpoint: String,
    /// Its phase.
    pub phase: String,
    /// How it ended, if it did.
    pub outcome: Option<String>,
    /// Its last State and Update Result.
    pub state: Option<i64>,
    /// Its last Update Result.
    pub result: Option<i64>,
    /// The version it reported after the update.
    pub version: Option<String>,
    /// Something to look at that did not fail it (another version than the package's).
    pub warning: Option<String>,
}

/// A campaign as `fw status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignStatus {
    /// Its id.
    pub id: CampaignId,
    /// What it asked for.
    pub spec: CampaignSpec,
    /// Cancelled by an operator.
    pub cancelled: bool,
    /// Every device is done or skipped.
    pub finished: bool,
    /// Each device.
    pub devices: Vec<DeviceStatus>,
    /// Devices per phase and, for those done, per outcome (`done:success`).
    pub totals: BTreeMap<String, usize>,
}

impl Campaign {
    pub(super) fn status(&self, id: CampaignId) -> CampaignStatus {
        let mut totals = BTreeMap::new();
        let devices = self
            .devices
            .values()
            .map(|d| {
                let key = match d.outcome {
                    Some(o) => format!("{}:{}", d.phase.as_str(), o.as_str()),
                    None => d.phase.as_str().to_string(),
                };
                *totals.entry(key).or_insert(0) += 1;
                DeviceStatus {
                    endpoint: d.endpoint.clone(),
                    phase: d.phase.as_str().to_string(),
                    outcome: d.outcome.map(|o| o.as_str().to_string()),
                    state: d.state,
                    result: d.result,
                    version: d.version.clone(),
                    warning: d.warning.clone(),
                }
            })
            .collect();
        CampaignStatus {
            id,
            spec: self.record.spec.clone(),
            cancelled: self.record.cancelled,
            finished: self.finished(),
            devices,
            totals,
        }
    }
}

/// The outcome named in a stored record.
pub(super) fn outcome_of(r: &DeviceRecord) -> Option<FirmwareOutcome> {
    r.outcome
        .as_deref()
        .and_then(|n| FirmwareOutcome::from_name(n, r.result))
}
