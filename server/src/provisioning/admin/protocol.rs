//! The admin channel's wire protocol: one request per line as JSON ([`AdminOp`]), one reply
//! per line ([`AdminReply`]), the bounds on both, and how a line is read off the stream.
use crate::provisioning::audit::AuditEvent;
use crate::provisioning::credentials::{CredentialSet, CredentialSummary, NewCredential};
use serde::{Deserialize, Serialize};
use std::io;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};
use tokio::sync::oneshot;

/// Longest request line, in bytes: a `device-import` chunk of [`MAX_IMPORT_CHUNK`] typical
/// PSK credentials (about 100-130 bytes of JSON each) fits; the CLI makes chunks of longer
/// ones smaller. With [`MAX_CONNECTIONS`](super::MAX_CONNECTIONS), the admin socket buffers at most 4 MiB.
pub const MAX_REQUEST_LEN: usize = 1024 * 1024;
/// Most credentials in one `device-import` request.
pub const MAX_IMPORT_CHUNK: usize = 5000;
/// Longest reply line the client reads (a list of a million devices fits).
pub const MAX_REPLY_LEN: usize = 512 * 1024 * 1024;
/// Most audit events returned by one request.
pub const MAX_AUDIT_LIMIT: usize = 10_000;

fn default_audit_limit() -> usize {
    50
}

/// A request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case", deny_unknown_fields)]
pub enum AdminOp {
    /// Add a credential, or replace (rotate) the endpoint's current one.
    DeviceAdd {
        /// The credential.
        credential: NewCredential,
    },
    /// List every credential (never the keys).
    DeviceList,
    /// Make a registered device bootstrap again (Execute `/1/x/9`, queued while it sleeps),
    /// so that it gets a fresh credential; only a running server can.
    DeviceRotate {
        /// The endpoint.
        endpoint: String,
    },
    /// Revoke an endpoint's credential; the runtime also closes its live session.
    DeviceRevoke {
        /// The endpoint.
        endpoint: String,
    },
    /// Add or replace many credentials in one store transaction, as many `DeviceAdd`s would
    /// (at most [`MAX_IMPORT_CHUNK`]); refused whole if any one is refused.
    DeviceImport {
        /// The credentials.
        credentials: Vec<NewCredential>,
        /// Only check: say what would be refused, change nothing.
        #[serde(default)]
        check: bool,
    },
    /// Add a bootstrap-server credential (a factory bootstrap account), or replace the
    /// endpoint's current one; as `DeviceAdd`, in the bootstrap set.
    BootstrapAdd {
        /// The credential.
        credential: NewCredential,
    },
    /// List every bootstrap-server credential (never the keys).
    BootstrapList,
    /// Remove an endpoint's bootstrap-server credential.
    BootstrapRemove {
        /// The endpoint.
        endpoint: String,
    },
    /// Add or replace many bootstrap-server credentials in one store transaction; as
    /// `DeviceImport`, in the bootstrap set.
    BootstrapImport {
        /// The credentials.
        credentials: Vec<NewCredential>,
        /// Only check: say what would be refused, change nothing.
        #[serde(default)]
        check: bool,
    },
    /// Store the file at `path` as a firmware package (OMA LwM2M TS 1.2 Core Appendix E.6),
    /// content-addressed; the same bytes again change nothing. The path is absolute: the
    /// server reads the file itself (the socket admits only the server's own user, on the
    /// same host, so the request can name no file that user could not read anyway).
    FwAdd {
        /// The package file, an absolute path.
        path: std::path::PathBuf,
        /// The firmware version it carries.
        version: String,
        /// A name for people.
        #[serde(default)]
        name: String,
    },
    /// List the firmware packages.
    FwList,
    /// Remove a firmware package, unless a campaign uses it.
    FwRemove {
        /// The package id.
        id: String,
    },
    /// Start a firmware update campaign (OMA LwM2M TS 1.2 Core E.6); only a running server
    /// can.
    FwUpdate {
        /// The package id.
        package: String,
        /// The devices, unless `all`.
        #[serde(default)]
        endpoints: Vec<String>,
        /// Every registered device matching `model` and `from_version`.
        #[serde(default)]
        all: bool,
        /// With `all`: only devices of this Model Number (`/3/0/1`).
        #[serde(default)]
        model: Option<String>,
        /// With `all`: only devices running this Firmware Version (`/3/0/3`).
        #[serde(default)]
        from_version: Option<String>,
        /// `pull` (default) or `push`.
        #[serde(default)]
        method: Option<String>,
        /// Devices in progress at once (default `[firmware] default_concurrency`).
        #[serde(default)]
        concurrency: Option<usize>,
        /// A device reporting another version afterwards failed (else a warning).
        #[serde(default)]
        require_version: bool,
    },
    /// A campaign's status: each device's phase and outcome, and totals.
    FwStatus {
        /// The campaign id.
        campaign: String,
    },
    /// Cancel a campaign.
    FwCancel {
        /// The campaign id.
        campaign: String,
    },
    /// Every campaign held (at most the campaigns' bound), by id: its package and whether it
    /// finished; only a running server can.
    FwCampaigns,
    /// The newest audit events, oldest first.
    Audit {
        /// How many (default 50, at most [`MAX_AUDIT_LIMIT`]).
        #[serde(default = "default_audit_limit")]
        limit: usize,
    },
}

impl AdminOp {
    /// Whether it is a campaign operation, which only a running server applies.
    pub fn is_campaign_op(&self) -> bool {
        matches!(
            self,
            AdminOp::FwUpdate { .. }
                | AdminOp::FwStatus { .. }
                | AdminOp::FwCancel { .. }
                | AdminOp::FwCampaigns
        )
    }

    /// The credential set the operation reads or changes; `None` for the audit log and the
    /// firmware operations.
    pub fn credential_set(&self) -> Option<CredentialSet> {
        match self {
            AdminOp::DeviceAdd { .. }
            | AdminOp::DeviceList
            | AdminOp::DeviceRevoke { .. }
            | AdminOp::DeviceImport { .. }
            | AdminOp::DeviceRotate { .. } => Some(CredentialSet::Devices),
            AdminOp::BootstrapAdd { .. }
            | AdminOp::BootstrapList
            | AdminOp::BootstrapRemove { .. }
            | AdminOp::BootstrapImport { .. } => Some(CredentialSet::Bootstrap),
            AdminOp::Audit { .. }
            | AdminOp::FwAdd { .. }
            | AdminOp::FwList
            | AdminOp::FwRemove { .. }
            | AdminOp::FwUpdate { .. }
            | AdminOp::FwStatus { .. }
            | AdminOp::FwCancel { .. }
            | AdminOp::FwCampaigns => None,
        }
    }

    /// Whether the operation changes credentials (adds, replaces, revokes, imports; a check
    /// of an import changes nothing): what goes through a cluster's admin log.
    pub fn changes_credentials(&self) -> bool {
        matches!(
            self,
            AdminOp::DeviceAdd { .. }
                | AdminOp::DeviceRevoke { .. }
                | AdminOp::DeviceImport { check: false, .. }
                | AdminOp::BootstrapAdd { .. }
                | AdminOp::BootstrapRemove { .. }
                | AdminOp::BootstrapImport { check: false, .. }
        )
    }

    /// Whether the operation is on the firmware packages.
    pub fn is_package_op(&self) -> bool {
        matches!(
            self,
            AdminOp::FwAdd { .. } | AdminOp::FwList | AdminOp::FwRemove { .. }
        )
    }

    /// An import request of `set`'s kind.
    pub fn import(set: CredentialSet, credentials: Vec<NewCredential>, check: bool) -> Self {
        match set {
            CredentialSet::Devices => AdminOp::DeviceImport { credentials, check },
            CredentialSet::Bootstrap => AdminOp::BootstrapImport { credentials, check },
        }
    }
}

/// A reply: `ok` and, by operation, the fields that apply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminReply {
    /// Whether the operation was applied.
    pub ok: bool,
    /// Why not, when `ok` is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What kind of refusal it is, when it is one of these (the HTTP API's status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<Refusal>,
    /// device-add, bootstrap-add: the credential now in force; device-revoke,
    /// bootstrap-remove: the one removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<CredentialSummary>,
    /// device-add: the credential it replaced, if any (its session should be closed too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced: Option<CredentialSummary>,
    /// device-list, bootstrap-list: every credential of the set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<Vec<CredentialSummary>>,
    /// device-revoke: the endpoint, if the revocation put it on the deny list (a trusted CA
    /// is configured, so a certificate naming it would otherwise still be accepted);
    /// device-list: every denied endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denied: Option<Vec<String>>,
    /// device-add: the endpoint was on the deny list, and no longer is.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deny_lifted: bool,
    /// audit: the events, oldest first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<AuditEvent>>,
    /// device-import: what was imported (or, with `check`, would be), or what was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub import: Option<ImportReport>,
    /// fw-add: the package stored; fw-remove: the one removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<PackageSummary>,
    /// fw-add: the same bytes were stored already (the version and name given were not
    /// applied: the first add's stand).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub existed: bool,
    /// fw-list: every package.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packages: Option<Vec<PackageSummary>>,
    /// fw-update: the campaign started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<String>,
    /// fw-status: the campaign's status (its id, spec, devices and totals).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firmware: Option<serde_json::Value>,
    /// fw-campaigns: every campaign held, by id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaigns: Option<Vec<CampaignSummary>>,
}

/// A firmware campaign as `fw-campaigns` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignSummary {
    /// Its id.
    pub id: String,
    /// The package it brings.
    pub package: String,
    /// Every device is done or skipped (or it was cancelled).
    pub finished: bool,
}

/// A firmware package as the admin channel shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageSummary {
    /// Its id (the first 16 hex digits of its SHA-256).
    pub id: String,
    /// Its SHA-256, hex.
    pub sha256: String,
    /// The firmware version.
    pub version: String,
    /// Size in bytes.
    pub size: u64,
    /// Its name, may be empty.
    pub name: String,
    /// When it was added (Unix milliseconds in JSON).
    #[serde(with = "crate::provisioning::credentials::json::unix_ms")]
    pub added_at: std::time::SystemTime,
}

impl From<&crate::firmware::packages::PackageMeta> for PackageSummary {
    fn from(m: &crate::firmware::packages::PackageMeta) -> Self {
        Self {
            id: m.id.0.clone(),
            sha256: hex::encode(m.sha256),
            version: m.version.clone(),
            size: m.size,
            name: m.name.clone(),
            added_at: m.added_at,
        }
    }
}

/// What a `device-import` request did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportReport {
    /// Credentials added or replaced (with `check`: that would be).
    pub imported: usize,
    /// Of those, the ones that replaced an endpoint's credential.
    pub replaced: usize,
    /// The entries refused, if any (then nothing was imported).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<RefusedEntry>,
}

/// A refusal that is not simply a bad request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Refusal {
    /// What the request names does not exist (a credential, package, campaign, device).
    NotFound,
    /// It clashes with what exists (a package a campaign uses, an identity bound elsewhere).
    Conflict,
    /// The server failed (its store).
    Internal,
}

/// One refused entry of a `device-import` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedEntry {
    /// Its index in the request's `credentials`.
    pub index: usize,
    /// Why.
    pub error: String,
    /// For a PSK identity (public key, certificate) already bound elsewhere: that endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound_to: Option<String>,
}

impl AdminReply {
    /// A success with no data.
    pub fn ok() -> Self {
        Self {
            ok: true,
            ..Self::default()
        }
    }

    /// A refusal.
    pub fn error(message: impl Into<String>) -> Self {
        Self {
            ok: false,
            error: Some(message.into()),
            ..Self::default()
        }
    }

    /// A refusal of a kind.
    pub fn refused(kind: Refusal, message: impl Into<String>) -> Self {
        Self {
            refusal: Some(kind),
            ..Self::error(message)
        }
    }
}

/// A request forwarded to the runtime, with where to send its reply.
#[derive(Debug)]
pub struct AdminRequest {
    /// What to do.
    pub op: AdminOp,
    /// Where the reply goes (dropping it answers "the server dropped the request").
    pub reply: oneshot::Sender<AdminReply>,
}

/// One line of at most `max` bytes, without its newline; `None` at the end of the stream.
/// A longer line is an `InvalidData` error.
pub(super) async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    let n = (&mut *reader)
        .take(limit)
        .read_until(b'\n', &mut line)
        .await?;
    if n == 0 {
        return Ok(None);
    }
    if line.last() == Some(&b'\n') {
        line.pop();
    } else if line.len() > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("line longer than {max} bytes"),
        ));
    }
    Ok(Some(line))
}
