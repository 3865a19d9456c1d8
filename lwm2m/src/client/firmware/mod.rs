//! Firmware Update, Object 5, on the device side (OMA LwM2M TS 1.2 Core Appendix E.6;
//! block-wise transfer of RFC 7959).
//!
//! State (`/5/0/3`): 0 Idle, 1 Downloading, 2 Downloaded, 3 Updating. Update Result
//! (`/5/0/5`) says how the last download or update ended. Both change through the store and
//! the reporting path, so the server's observations of them notify.
//!
//! - **Push**: the server writes the package to `/5/0/0` with Block1. The CoAP endpoint
//!   reassembles it (up to `firmware_max_package` of [`ClientConfig`](super::ClientConfig));
//!   the first block already moves State to Downloading, a package over the limit sets
//!   Result 2 (the endpoint answers 4.13 with Size1), and the whole package is checked when
//!   the Write arrives:
//!   State 2, or State 0 with Result 5 (digest) or 6 (not the format). A push abandoned
//!   midway falls back to Idle with Result 4 once the endpoint forgets it.
//! - **Pull**: the server writes a `coap://` or `coaps://` URI to `/5/0/1`. The device
//!   GETs it one Block2 block at a time over its connection to the server, so it must
//!   name that server (host and port of the Security object's Server URI; anything else is
//!   Result 7, another scheme Result 9). A block that gets no answer is asked again with a
//!   growing pause, and the download goes on from the first block it lacks; it starts over
//!   only when the ETag changes (RFC 7959 §2.4). It ends with State 2, or Idle with Result
//!   2 (too large), 4 (connection lost after `firmware_download_retries` failures in a
//!   row), 5 (digest or ETag mismatch), 6 or 7 (the server refused the URI). An empty URI,
//!   or a Package of a single NUL byte, resets to Idle with Result 0.
//! - **Update**: Execute of `/5/0/2` in State 2 (else 4.05) moves to Updating for
//!   `firmware_update_time`, then `/3/0/3` becomes the package's version, State 0, Result
//!   1, [`ClientEvent::FirmwareUpdated`] is reported and the device registers anew as after
//!   a reboot into the new firmware. `firmware_fail_with` makes the update fail instead
//!   (State 0 with that Result). Cancel (`/5/0/10`) stops anything but an update in
//!   progress (4.05 then): State 0, Result 10.
//!
//! The package is checked as it arrives and not kept: only its version is, which is all the
//! simulated install needs.
mod package;
mod pull;

pub use package::{firmware_package, package_etag, PACKAGE_MAGIC};

use super::config::ClientEvent;
use super::Client;
use crate::coap::{msg, CoapOption, Packet, Peer};
use crate::model::{Instance, Path, Resource, Value};
use crate::ops::Lwm2mError;
use package::PackageCheck;
use std::collections::BTreeMap;
use std::time::Instant;

/// The Firmware Update object.
pub(super) const OBJECT: u16 = 5;
const PACKAGE: u16 = 0;
const PACKAGE_URI: u16 = 1;
const UPDATE: u16 = 2;
const STATE: u16 = 3;
const RESULT: u16 = 5;
const PKG_VERSION: u16 = 7;
const CANCEL: u16 = 10;

const IDLE: i64 = 0;
const DOWNLOADING: i64 = 1;
const DOWNLOADED: i64 = 2;
const UPDATING: i64 = 3;

const NOT_ENOUGH_STORAGE: i64 = 2;
const CONNECTION_LOST: i64 = 4;
const INVALID_URI: i64 = 7;
const UNSUPPORTED_PROTOCOL: i64 = 9;
const CANCELLED: i64 = 10;
/// ETag changes tolerated in one download before it fails (the server keeps replacing it).
const MAX_RESTARTS: u32 = 4;

/// The values of a Firmware Update instance (`/5/0`) before anything happened: Idle,
/// Result 0, both delivery methods, CoAP and CoAPS for pull. Add it to a store with
/// `store.add_instance(5, 0, firmware_instance())`; the client then runs it.
pub fn firmware_instance() -> Instance {
    let int = |v| Resource::Single(Value::Integer(v));
    Instance::from([
        (PACKAGE_URI, Resource::Single(Value::String(String::new()))),
        (STATE, int(IDLE)),
        (RESULT, int(0)),
        (
            8,
            Resource::Multiple(BTreeMap::from([
                (0, Value::Integer(0)),
                (1, Value::Integer(1)),
            ])),
        ),
        (9, int(2)),
    ])
}

/// What a request to Object 5 asks of the firmware state machine, once it is answered.
#[derive(Debug)]
pub(super) enum FwAction {
    /// A package was written to `/5/0/0`.
    Package(Vec<u8>),
    /// A URI was written to `/5/0/1`.
    Uri(String),
    /// `/5/0/2` was executed (in State 2).
    Update,
    /// `/5/0/10` was executed.
    Cancel,
}

/// The firmware state machine of one client.
#[derive(Debug, Default)]
pub(super) struct Firmware {
    /// The verified package's version, in State 2 and 3.
    downloaded: Option<String>,
    /// The download in progress (pull).
    pull: Option<Box<pull::Pull>>,
    /// A Block1 push is arriving; past this instant the endpoint has forgotten it.
    push_until: Option<Instant>,
    /// The update in progress ends then.
    update_at: Option<Instant>,
}

impl Firmware {
    /// Whether a download keeps the device awake.
    pub(super) fn busy(&self) -> bool {
        self.pull.is_some() || self.update_at.is_some()
    }

    pub(super) fn deadline(&self) -> Option<Instant> {
        [
            self.pull.as_ref().and_then(|p| p.retry_at),
            self.push_until,
            self.update_at,
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

impl<P: Peer> Client<P> {
    /// Whether the store holds the Firmware Update instance this client runs.
    pub(super) fn has_firmware(&self) -> bool {
        self.store.instance(OBJECT, 0).is_some()
    }

    fn fw_int(&self, r: u16) -> i64 {
        match self.store.value(&Path::resource(OBJECT, 0, r)) {
            Some(Value::Integer(v)) => *v,
            _ => 0,
        }
    }

    /// Sets a resource of `/5/0` (or `/3/0/3`) and notifies its observers.
    fn fw_set(&mut self, now: Instant, path: Path, value: Value) {
        match self.store.set_value(&path, value) {
            Ok(true) => self.values_changed(now, &[path]),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(endpoint = %self.config.endpoint, %path, error = %e, "firmware resource not set")
            }
        }
    }

    fn fw_state(&mut self, now: Instant, state: i64, result: i64) {
        // Result first: an observer of State that reads Result on a change sees the new one.
        self.fw_set(
            now,
            Path::resource(OBJECT, 0, RESULT),
            Value::Integer(result),
        );
        self.fw_set(now, Path::resource(OBJECT, 0, STATE), Value::Integer(state));
    }

    /// Checks a request to Object 5 before it is answered; `Some` takes it away from the
    /// plain object store.
    pub(super) fn firmware_request(
        &self,
        path: &Path,
        node: Option<&crate::model::Node>,
    ) -> Option<Result<FwAction, Lwm2mError>> {
        use crate::model::Node;
        if path.object_id() != Some(OBJECT) || path.instance_id() != Some(0) {
            return None;
        }
        if !self.has_firmware() {
            return None;
        }
        let state = self.fw_int(STATE);
        let Some(r) = path.resource_id() else {
            // Package and Package URI start transfers: they are written on their own.
            let carries = |n: &Node| matches!(n, Node::Instance(i) if i.contains_key(&PACKAGE) || i.contains_key(&PACKAGE_URI));
            return node.filter(|n| carries(n)).map(|_| {
                Err(Lwm2mError::BadRequest(
                    "write /5/0/0 and /5/0/1 on their own".into(),
                ))
            });
        };
        let Some(node) = node else {
            // Execute.
            return match r {
                UPDATE if state == DOWNLOADED && self.fw.downloaded.is_some() => {
                    Some(Ok(FwAction::Update))
                }
                UPDATE => Some(Err(Lwm2mError::MethodNotAllowed)),
                CANCEL if state == UPDATING => Some(Err(Lwm2mError::MethodNotAllowed)),
                CANCEL => Some(Ok(FwAction::Cancel)),
                _ => None,
            };
        };
        if r != PACKAGE && r != PACKAGE_URI {
            return None;
        }
        if state == UPDATING {
            return Some(Err(Lwm2mError::MethodNotAllowed));
        }
        let value = match node {
            Node::Resource(Resource::Single(v)) => v.clone(),
            _ => return Some(Err(Lwm2mError::BadRequest(format!("{path}: not a value")))),
        };
        Some(match (r, value) {
            (PACKAGE, Value::Opaque(b)) => Ok(FwAction::Package(b)),
            (PACKAGE, Value::String(s)) => Ok(FwAction::Package(s.into_bytes())),
            (PACKAGE_URI, Value::String(s)) if s.len() <= 255 => Ok(FwAction::Uri(s)),
            (PACKAGE_URI, Value::Opaque(b)) if b.len() <= 255 => String::from_utf8(b)
                .map(FwAction::Uri)
                .map_err(|_| Lwm2mError::BadRequest("Package URI is not UTF-8".into())),
            _ => Err(Lwm2mError::BadRequest(format!("{path}: wrong type"))),
        })
    }

    /// Runs what an answered request to Object 5 asked.
    pub(super) fn firmware_action(&mut self, now: Instant, action: FwAction) {
        match action {
            FwAction::Package(bytes) => self.fw_push(now, &bytes),
            FwAction::Uri(uri) => self.fw_pull(now, uri),
            FwAction::Update => {
                self.fw_state(now, UPDATING, 0);
                self.fw.update_at =
                    Some(crate::time::deadline(now, self.config.firmware_update_time));
            }
            FwAction::Cancel => {
                self.fw_abort(now);
                self.fw_state(now, IDLE, CANCELLED);
            }
        }
    }

    /// Forgets any download and the package.
    fn fw_abort(&mut self, now: Instant) {
        if let Some(id) = self.fw.pull.take().and_then(|p| p.request) {
            let _ = self.endpoint.cancel(now, id);
        }
        self.fw.downloaded = None;
        self.fw.push_until = None;
    }

    fn fw_failed(&mut self, now: Instant, result: i64) {
        tracing::info!(endpoint = %self.config.endpoint, result, "firmware download failed");
        self.fw_abort(now);
        self.fw_state(now, IDLE, result);
    }

    fn fw_downloaded(&mut self, now: Instant, version: String) {
        tracing::info!(endpoint = %self.config.endpoint, %version, "firmware downloaded");
        self.fw.pull = None;
        self.fw.push_until = None;
        self.fw_set(
            now,
            Path::resource(OBJECT, 0, PKG_VERSION),
            Value::String(version.clone()),
        );
        self.fw.downloaded = Some(version);
        self.fw_state(now, DOWNLOADED, 0);
    }

    /// A whole package written to `/5/0/0`.
    fn fw_push(&mut self, now: Instant, bytes: &[u8]) {
        self.fw_abort(now);
        if bytes.is_empty() || bytes == [0] {
            self.fw_state(now, IDLE, 0);
            return;
        }
        if bytes.len() > self.config.firmware_max_package {
            self.fw_state(now, IDLE, NOT_ENOUGH_STORAGE);
            return;
        }
        match PackageCheck::check(bytes) {
            Ok(v) => self.fw_downloaded(now, v.version),
            Err(r) => self.fw_failed(now, r.result()),
        }
    }

    /// Looks at a datagram before the endpoint takes it: a Block1 push to `/5/0/0` is
    /// under way (State 1) or too large (Result 2; the endpoint answers 4.13).
    pub(super) fn firmware_screen(&mut self, now: Instant, data: &[u8]) {
        // Only POST (0.02) and PUT (0.03) can carry a package.
        if !matches!(data.get(1), Some(2 | 3)) || !self.has_firmware() {
            return;
        }
        let Ok(p) = Packet::from_bytes(data) else {
            return;
        };
        let Some(b1) = msg::block_option(&p, CoapOption::Block1) else {
            return;
        };
        if msg::uri_path(&p) != "/5/0/0" || self.fw_int(STATE) == UPDATING {
            return;
        }
        let limit = self.config.firmware_max_package;
        let size1 = msg::uint_option(&p, CoapOption::Size1).map_or(0, |s| s as usize);
        if size1 > limit || b1.offset().saturating_add(p.payload.len()) > limit {
            self.fw_failed(now, NOT_ENOUGH_STORAGE);
            return;
        }
        if b1.more {
            if self.fw.push_until.is_none() {
                self.fw_abort(now);
                self.fw_state(now, DOWNLOADING, 0);
            }
            self.fw.push_until = Some(crate::time::deadline(now, self.config.coap.block_lifetime));
        }
    }

    /// Runs the firmware deadlines due at `now`: a pull block asked again, a push given
    /// up, an update finished.
    pub(super) fn on_firmware_timer(&mut self, now: Instant) {
        if self
            .fw
            .pull
            .as_ref()
            .and_then(|p| p.retry_at)
            .is_some_and(|t| t <= now)
        {
            self.fw_request_block(now);
        }
        if self.fw.push_until.is_some_and(|t| t <= now) {
            self.fw.push_until = None;
            if self.fw_int(STATE) == DOWNLOADING && self.fw.pull.is_none() {
                self.fw_failed(now, CONNECTION_LOST);
            }
        }
        if self.fw.update_at.is_some_and(|t| t <= now) {
            self.fw.update_at = None;
            self.fw_install(now);
        }
    }

    /// The end of Updating: the new firmware runs, or the configured failure.
    fn fw_install(&mut self, now: Instant) {
        let Some(version) = self.fw.downloaded.take() else {
            return self.fw_state(now, IDLE, 8);
        };
        if let Some(result) = self.config.firmware_fail_with {
            tracing::info!(endpoint = %self.config.endpoint, result, "firmware update failed (as configured)");
            return self.fw_state(now, IDLE, i64::from(result));
        }
        tracing::info!(endpoint = %self.config.endpoint, %version, "firmware updated; registering anew");
        self.ensure_awake(now, false);
        self.fw_set(now, Path::resource(3, 0, 3), Value::String(version.clone()));
        self.fw_state(now, IDLE, 1);
        self.push_event(ClientEvent::FirmwareUpdated { version });
        // Core E.6: the device reboots into the new firmware and registers again.
        if self.registration_started() {
            self.send_register(now);
        }
    }
}
