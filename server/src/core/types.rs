//! The values that cross the server core's boundary: commands in,
//! device events out ("one path out"), and the registration as the rest of the server sees it.
use lwm2m::content::link::ObjectLinks;
use lwm2m::content::negotiate::Lwm2mVersion;
use lwm2m::content::{ContentFormat, Record};
use lwm2m::model::{Node, Path};
use lwm2m::ops::dm::{DmResponse, DownlinkRequest};
use lwm2m::ops::registration::Binding;
use lwm2m::ops::Lwm2mError;
use std::time::{Duration, SystemTime};

/// Identifies a command from submission to its one result. Unique across restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CommandId(pub u64);

/// Identifies an observation the server holds on a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObservationId(pub u64);

/// An operation for one device, from any northbound source (MQTT, HTTP, CLI, campaigns).
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    /// The device's endpoint name.
    pub endpoint: String,
    /// What to do.
    pub request: DownlinkRequest,
    /// Content format to use instead of the negotiated one.
    pub format: Option<ContentFormat>,
    /// How long to wait for the device's answer once sent (CoAP exchange deadline), within
    /// [`COMMAND_TIMEOUT_RANGE`].
    pub timeout: Option<Duration>,
    /// How long the command may wait for a sleeping device before it expires, within
    /// [`COMMAND_TTL_RANGE`].
    pub ttl: Option<Duration>,
    /// How to send a payload large enough for a Block1 upload (RFC 7959 §2.5), such as a
    /// firmware package written to /5/0/0 (Core E.6): where to start, the block size and the
    /// pace. `None`: from block 0, at the endpoint's block size, lock-step.
    pub upload: Option<UploadOptions>,
}

/// The Block1 upload of a command's payload (RFC 7959 §2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UploadOptions {
    /// The first block to send: 0 for a new upload, or the `next_block` of a
    /// [`CommandError::Interrupted`] to resume one the device kept the earlier blocks of.
    /// A device that lost them answers 4.08 and the command fails with
    /// [`CommandError::Unavailable`] (then start again at 0); one that stays silent before
    /// acknowledging a block fails it with [`CommandError::Timeout`] (resume at the same
    /// block again). A block past the end of the payload is [`CommandError::Invalid`].
    pub start_block: u32,
    /// The block size exponent (0..=6: 16 to 1024 bytes) `start_block` counts in, and the
    /// size of the blocks sent; `None`: the server's. A resumed upload must give the `szx`
    /// of its interruption.
    pub szx: Option<u8>,
    /// At least this long between one block and the next, so that a slow link (NB-IoT) is
    /// not flooded; `None`: each block goes as soon as the device acknowledges the last.
    pub interval: Option<Duration>,
}

/// The `timeout` a command may ask for: 1 ms to 1 day. Longer than a day no CoAP exchange
/// lives (EXCHANGE_LIFETIME is 247 s by default, an NB-IoT device's a few minutes).
pub const COMMAND_TIMEOUT_RANGE: std::ops::RangeInclusive<Duration> =
    Duration::from_millis(1)..=Duration::from_secs(24 * 3600);

/// The `ttl` a command may ask for: 0 (expire unless the device is awake) to 30 days, the
/// longest a queue-mode device is expected to sleep between registration updates.
pub const COMMAND_TTL_RANGE: std::ops::RangeInclusive<Duration> =
    Duration::ZERO..=Duration::from_secs(30 * 24 * 3600);

impl Command {
    /// A command with default format, timeout and time-to-live.
    pub fn new(endpoint: impl Into<String>, request: DownlinkRequest) -> Self {
        Self {
            endpoint: endpoint.into(),
            request,
            format: None,
            timeout: None,
            ttl: None,
            upload: None,
        }
    }
}

/// Why a command failed. Each command ends in exactly one success or one of these.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// No device is registered under that name.
    #[error("unknown device")]
    UnknownDevice,
    /// The device answered with an error code.
    #[error(transparent)]
    Lwm2m(#[from] Lwm2mError),
    /// The device did not answer (CoAP retransmissions exhausted or deadline passed).
    #[error("the device did not answer in time")]
    Timeout,
    /// The device reset the exchange.
    #[error("the device reset the exchange")]
    Reset,
    /// The command waited for a sleeping device longer than its time-to-live.
    #[error("expired before the device woke up")]
    Expired,
    /// The device's queue is full.
    #[error("the device's command queue is full")]
    QueueFull,
    /// The operation does not exist for this device (a composite for LwM2M 1.0).
    #[error("not supported by this device: {0}")]
    NotSupported(String),
    /// The device deregistered or its registration expired before the command ran.
    #[error("the device is no longer registered")]
    Deregistered,
    /// The server is overloaded or shutting down.
    #[error("the server could not send the command: {0}")]
    Unavailable(String),
    /// The command itself is out of range (a `timeout` or `ttl` outside
    /// [`COMMAND_TIMEOUT_RANGE`] or [`COMMAND_TTL_RANGE`]).
    #[error("invalid command: {0}")]
    Invalid(String),
    /// A block-wise upload timed out after the device had acknowledged part of it. The
    /// device may still hold the blocks before `next_block`: the same command with
    /// [`UploadOptions`] `{ start_block: next_block, szx: Some(szx), .. }` resumes it.
    #[error("the upload was interrupted at block {next_block}")]
    Interrupted {
        /// The first block the device did not acknowledge.
        next_block: u32,
        /// The block size exponent `next_block` counts in.
        szx: u8,
    },
    /// The server holds as many pending commands as it allows in total.
    #[error("the server holds {0} pending commands, its limit; try again later")]
    Overloaded(usize),
}

/// The result of a command.
pub type Outcome = Result<DmResponse, CommandError>;

/// Why a registration ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeregisterReason {
    /// The device sent De-register.
    Requested,
    /// Its lifetime passed without an Update.
    Expired,
    /// It registered again; the new registration replaces this one.
    Replaced,
    /// Its credential was revoked.
    Revoked,
}

/// A registration as stored and reported.
#[derive(Debug, Clone, PartialEq)]
pub struct Registration {
    /// Endpoint client name.
    pub endpoint: String,
    /// The Location-Path given to the device (`/rd/…`).
    pub location: String,
    /// Where the device was last heard from, as text (`SocketAddr` for UDP).
    pub address: String,
    /// Lifetime in seconds.
    pub lifetime: u32,
    /// LwM2M version.
    pub version: Lwm2mVersion,
    /// Binding.
    pub binding: Binding,
    /// Queue mode (sleepy device).
    pub queue_mode: bool,
    /// MSISDN.
    pub sms: Option<String>,
    /// Objects and instances the device has.
    pub links: ObjectLinks,
    /// When it registered.
    pub registered_at: SystemTime,
    /// When it last registered or updated: the lifetime counts from here.
    pub updated_at: SystemTime,
}

impl Registration {
    /// When the registration expires (without the server's grace).
    pub fn expires_at(&self) -> SystemTime {
        lwm2m::time::wall_deadline(
            self.updated_at,
            Duration::from_secs(u64::from(self.lifetime)),
        )
    }
}

/// What a notification or read carries.
#[derive(Debug, Clone, PartialEq)]
pub enum Content {
    /// A node at one path.
    Node(Node),
    /// Several paths (composites, Send).
    Records(Vec<Record>),
}

/// Everything that happens to devices, in order, for every sink (MQTT bridge, HTTP event
/// stream, metrics, audit log).
#[derive(Debug, Clone, PartialEq)]
pub enum DeviceEvent {
    /// A device was refused for who it is: its credential does not allow the endpoint name it
    /// used, or it has a credential and came without DTLS. Goes to the audit log.
    AuthFailed {
        /// The endpoint name the device used.
        endpoint: String,
        /// Where the request came from.
        peer: String,
        /// Who its DTLS credential says it is, if it had one.
        principal: Option<String>,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A device registered.
    Registered {
        /// The registration.
        registration: Registration,
        /// It replaced an earlier registration of the same endpoint.
        replaced: bool,
    },
    /// A device updated its registration.
    Updated {
        /// The registration after the update.
        registration: Registration,
    },
    /// A registration ended.
    Deregistered {
        /// The endpoint.
        endpoint: String,
        /// Why.
        reason: DeregisterReason,
    },
    /// A queue-mode device is reachable (it sent something) until `until`.
    Awake {
        /// The endpoint.
        endpoint: String,
    },
    /// A queue-mode device's awake window passed without word from it: commands for it wait
    /// until it is heard from again (Transport §6.5).
    Sleeping {
        /// The endpoint.
        endpoint: String,
    },
    /// A notification for an observation.
    Notification {
        /// The endpoint.
        endpoint: String,
        /// The observation.
        observation: ObservationId,
        /// The observed path (`/` for a composite).
        path: Path,
        /// The values.
        content: Content,
        /// The Observe sequence number.
        seq: Option<u32>,
    },
    /// Data the device sent on its own (Send, `/dp`).
    Send {
        /// The endpoint.
        endpoint: String,
        /// The values.
        records: Vec<Record>,
    },
    /// A command ended.
    CommandResult {
        /// The command.
        id: CommandId,
        /// The endpoint.
        endpoint: String,
        /// The operation's name (`read`, `write`, …).
        operation: &'static str,
        /// The observation it started, for a successful Observe.
        observation: Option<ObservationId>,
        /// The result.
        outcome: Outcome,
    },
    /// A device's bootstrap, as the bootstrap server beside this server ran it (OMA LwM2M
    /// TS 1.2 Core §6.1).
    Bootstrap {
        /// The endpoint.
        endpoint: String,
        /// Where the device was (its address, or its DTLS connection).
        peer: String,
        /// How far it got.
        stage: BootstrapStage,
    },
    /// An observation ended without being cancelled by a command (the device reset it,
    /// or sent a final error).
    ObservationEnded {
        /// The endpoint.
        endpoint: String,
        /// The observation.
        observation: ObservationId,
    },
    /// A device's firmware update in a campaign changed phase (OMA LwM2M TS 1.2 Core E.6,
    /// Object 5).
    Firmware {
        /// The endpoint.
        endpoint: String,
        /// The campaign.
        campaign: String,
        /// The package's id.
        package: String,
        /// The phase the device is in now.
        phase: FirmwarePhase,
        /// The device's last reported State (`/5/0/3`).
        state: Option<i64>,
        /// The device's last reported Update Result (`/5/0/5`).
        result: Option<i64>,
        /// How it ended, once it did.
        outcome: Option<FirmwareOutcome>,
        /// Bytes the device has of the package, when known.
        bytes: Option<u64>,
        /// The firmware version the device reports (`/3/0/3`), once read after the update.
        version: Option<String>,
    },
}

/// Where one device is in a firmware update campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FirmwarePhase {
    /// Waiting for one of the campaign's slots.
    Queued,
    /// Its model and version are being read to see whether the campaign applies to it.
    Checking,
    /// Getting the package (State 1 Downloading, or about to).
    Downloading,
    /// It has the package (State 2 Downloaded); Update is being executed.
    Downloaded,
    /// Installing (State 3 Updating): waiting for it to register with the new firmware.
    Updating,
    /// Finished, with an outcome.
    Done,
    /// Left out: its model or version did not match the campaign's filters.
    Skipped,
}

impl FirmwarePhase {
    /// Every phase, for metrics.
    pub const ALL: [Self; 7] = [
        Self::Queued,
        Self::Checking,
        Self::Downloading,
        Self::Downloaded,
        Self::Updating,
        Self::Done,
        Self::Skipped,
    ];

    /// Its name in messages and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Checking => "checking",
            Self::Downloading => "downloading",
            Self::Downloaded => "downloaded",
            Self::Updating => "updating",
            Self::Done => "done",
            Self::Skipped => "skipped",
        }
    }

    /// Whether the device holds one of the campaign's slots.
    pub const fn in_progress(self) -> bool {
        matches!(
            self,
            Self::Checking | Self::Downloading | Self::Downloaded | Self::Updating
        )
    }

    /// Whether nothing more happens to the device in this campaign.
    pub const fn is_final(self) -> bool {
        matches!(self, Self::Done | Self::Skipped)
    }
}

/// How one device's firmware update ended: the device's Update Result codes (OMA LwM2M TS
/// 1.2 Core E.6, `/5/0/5`: 1 to 11) each by name, and the server's own reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FirmwareOutcome {
    /// 1: updated.
    Success,
    /// 2: not enough flash memory for the package.
    NotEnoughFlash,
    /// 3: out of RAM while downloading.
    OutOfRam,
    /// 4: connection lost while downloading.
    ConnectionLost,
    /// 5: the downloaded package failed its integrity check.
    IntegrityFailure,
    /// 6: unsupported package type.
    UnsupportedPackage,
    /// 7: invalid URI.
    InvalidUri,
    /// 8: the update failed.
    UpdateFailed,
    /// 9: unsupported protocol (the Package URI's scheme).
    UnsupportedProtocol,
    /// 10: the update was cancelled.
    Cancelled,
    /// 11: the device deferred the update.
    Deferred,
    /// A code the specification does not name.
    UnknownResult(i64),
    /// The device stayed in a phase longer than the configured timeout.
    Timeout,
    /// A command to the device failed (unreachable, refused, deregistered).
    CommandFailed,
    /// It registered again without a result: Update Result 0 after the update.
    NoResult,
    /// Updated, but it reports another version than the package's and the campaign
    /// requires it.
    VersionMismatch,
}

impl FirmwareOutcome {
    /// Every name [`as_str`](Self::as_str) gives, for metrics.
    pub const NAMES: [&'static str; 16] = [
        "success",
        "not_enough_flash",
        "out_of_ram",
        "connection_lost",
        "integrity_failure",
        "unsupported_package",
        "invalid_uri",
        "update_failed",
        "unsupported_protocol",
        "cancelled",
        "deferred",
        "unknown_result",
        "timeout",
        "command_failed",
        "no_result",
        "version_mismatch",
    ];

    /// Its name in messages, metrics and the store.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::NotEnoughFlash => "not_enough_flash",
            Self::OutOfRam => "out_of_ram",
            Self::ConnectionLost => "connection_lost",
            Self::IntegrityFailure => "integrity_failure",
            Self::UnsupportedPackage => "unsupported_package",
            Self::InvalidUri => "invalid_uri",
            Self::UpdateFailed => "update_failed",
            Self::UnsupportedProtocol => "unsupported_protocol",
            Self::Cancelled => "cancelled",
            Self::Deferred => "deferred",
            Self::UnknownResult(_) => "unknown_result",
            Self::Timeout => "timeout",
            Self::CommandFailed => "command_failed",
            Self::NoResult => "no_result",
            Self::VersionMismatch => "version_mismatch",
        }
    }
}

/// How far a device's bootstrap got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootstrapStage {
    /// The device asked (Bootstrap-Request) and was accepted.
    Started,
    /// The device accepted Bootstrap-Finish: it holds its LwM2M server account, and the
    /// server accepts the account's credential from now on.
    Finished {
        /// How it authenticates to the LwM2M server: `psk`, `rpk`, `x509` or `nosec`.
        security: &'static str,
        /// The generated PSK identity, or the SHA-256 of the key or certificate bound (never
        /// a key).
        identity: Option<String>,
        /// The LwM2M version the device announced, if it did.
        version: Option<String>,
    },
    /// The sequence failed at `step`; the device will ask again.
    Failed {
        /// The step (`request`, `discover /`, `write /0/1`, `finish`, `install`...).
        step: String,
        /// Why (the device's code, a timeout, a refusal).
        reason: String,
    },
}

impl BootstrapStage {
    /// `started`, `finished` or `failed`.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Started => "started",
            Self::Finished { .. } => "finished",
            Self::Failed { .. } => "failed",
        }
    }
}

/// How a device reaches the server: plain CoAP from an address, or a DTLS session (whose
/// address may change under a Connection ID, so the session itself is the peer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Link {
    /// CoAP without security (LwM2M NoSec).
    Udp(std::net::SocketAddr),
    /// CoAP over a DTLS session.
    Dtls(dtls::ConnId),
}

impl std::fmt::Display for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Link::Udp(a) => a.fmt(f),
            Link::Dtls(c) => c.fmt(f),
        }
    }
}

impl std::str::FromStr for Link {
    type Err = std::net::AddrParseError;

    /// The inverse of `Display`: `dtls#N` or a socket address.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.strip_prefix("dtls#").map(str::parse::<u64>) {
            Some(Ok(n)) => Ok(Link::Dtls(dtls::ConnId(n))),
            _ => s.parse().map(Link::Udp),
        }
    }
}
