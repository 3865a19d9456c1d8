//! Firmware Update, Object 5, on the device side (OMA LwM2M TS 1.2 Core Appendix E.6;
//! block-wise transfer of RFC 7959).
//!
//! State (`/5/0/3`): 0 Idle, 1 Downloading, 2 Downloaded, 3 Updating. Update Result
//! (`/5/0/5`) says how the last download or update ended. Both change through the store and
//! the reporting path, so the server's observations of them notify.
//!
//! - **Push**: the server writes the package to `/5/0/0` with Block1. The CoAP endpoint
//!   reassembles it (up to [`ClientConfig::firmware_max_package`]); the first block already
//!   moves State to Downloading, a package over the limit sets Result 2 (the endpoint
//!   answers 4.13 with Size1), and the whole package is checked when the Write arrives:
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

pub use package::{firmware_package, package_etag, PACKAGE_MAGIC};

use super::config::ClientEvent;
use super::Client;
use crate::coap::{msg, BlockOpt, CoapOption, Packet, Peer, RequestType, ResponseType};
use crate::coap::{ExchangeError, MessageClass, RequestId, RequestOptions};
use crate::model::{Instance, Path, Resource, Value};
use crate::ops::Lwm2mError;
use package::{PackageCheck, Reject};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

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
    pull: Option<Box<Pull>>,
    /// A Block1 push is arriving; past this instant the endpoint has forgotten it.
    push_until: Option<Instant>,
    /// The update in progress ends then.
    update_at: Option<Instant>,
}

/// One pull download.
#[derive(Debug)]
struct Pull {
    /// Uri-Path and Uri-Query of the package.
    path: Vec<String>,
    query: Vec<String>,
    /// The next block to ask for, at size `szx`.
    next: u32,
    szx: u8,
    /// Bytes received and checked so far.
    received: usize,
    etag: Option<Vec<u8>>,
    check: PackageCheck,
    /// The block request in flight.
    request: Option<RequestId>,
    /// When to ask again after a failure.
    retry_at: Option<Instant>,
    /// Failed exchanges in a row.
    failures: u32,
    restarts: u32,
}

/// A URI taken apart for a GET over the server connection.
struct Target {
    secure: bool,
    host: String,
    port: u16,
    path: Vec<String>,
    query: Vec<String>,
}

/// Parses a `coap://` or `coaps://` URI; `Err` is the Update Result (7 or 9).
fn parse_uri(uri: &str) -> Result<Target, i64> {
    let (scheme, rest) = uri.split_once("://").ok_or(INVALID_URI)?;
    let secure = match scheme.to_ascii_lowercase().as_str() {
        "coap" => false,
        "coaps" => true,
        _ => return Err(UNSUPPORTED_PROTOCOL),
    };
    let server = super::ServerUri::parse(uri).map_err(|_| INVALID_URI)?;
    let after = rest
        .find(['/', '?'])
        .map_or("", |i| rest.get(i..).unwrap_or(""));
    let (path, query) = after.split_once('?').unwrap_or((after, ""));
    let split = |s: &str, sep| {
        s.split(sep)
            .filter(|x: &&str| !x.is_empty())
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let path = split(path, '/');
    if path.is_empty() {
        return Err(INVALID_URI);
    }
    Ok(Target {
        secure,
        host: server.host.to_ascii_lowercase(),
        port: server.port,
        path,
        query: split(query, '&'),
    })
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

    /// A URI written to `/5/0/1`.
    fn fw_pull(&mut self, now: Instant, uri: String) {
        self.fw_abort(now);
        self.fw_set(
            now,
            Path::resource(OBJECT, 0, PACKAGE_URI),
            Value::String(uri.clone()),
        );
        if uri.is_empty() {
            self.fw_state(now, IDLE, 0);
            return;
        }
        let target = match parse_uri(&uri) {
            Ok(t) => t,
            Err(result) => return self.fw_failed(now, result),
        };
        if !self.is_our_server(&target) {
            tracing::info!(endpoint = %self.config.endpoint, %uri, "package URI is not our server");
            return self.fw_failed(now, INVALID_URI);
        }
        self.fw.pull = Some(Box::new(Pull {
            path: target.path,
            query: target.query,
            next: 0,
            szx: self.config.coap.block_szx.min(6),
            received: 0,
            etag: None,
            check: PackageCheck::default(),
            request: None,
            retry_at: None,
            failures: 0,
            restarts: 0,
        }));
        self.fw_state(now, DOWNLOADING, 0);
        self.fw_request_block(now);
    }

    /// Whether `t` names the server this client talks to (the Server URI of the Security
    /// instance with our Short Server ID).
    fn is_our_server(&self, t: &Target) -> bool {
        let ssid = i64::from(self.config.short_server_id);
        self.store.instance_ids(0).any(|i| {
            let v = |r| self.store.value(&Path::resource(0, i, r));
            if v(10) != Some(&Value::Integer(ssid)) || v(1) == Some(&Value::Boolean(true)) {
                return false;
            }
            let Some(Value::String(uri)) = v(0) else {
                return false;
            };
            super::ServerUri::parse(uri).is_ok_and(|s| {
                s.secure == t.secure && s.port == t.port && s.host.eq_ignore_ascii_case(&t.host)
            })
        })
    }

    /// Asks for the next block of the pull.
    fn fw_request_block(&mut self, now: Instant) {
        let Some(pull) = self.fw.pull.as_mut() else {
            return;
        };
        pull.retry_at = None;
        let mut p = Packet::new();
        p.header.code = MessageClass::Request(RequestType::Get);
        for seg in &pull.path {
            p.add_option(CoapOption::UriPath, seg.as_bytes().to_vec());
        }
        for q in &pull.query {
            p.add_option(CoapOption::UriQuery, q.as_bytes().to_vec());
        }
        msg::set_block_option(
            &mut p,
            CoapOption::Block2,
            BlockOpt {
                num: pull.next,
                more: false,
                szx: pull.szx,
            },
        );
        self.ensure_awake(now, true);
        match self
            .endpoint
            .send_request(now, self.server, p, RequestOptions::default())
        {
            Ok(id) => {
                if let Some(pull) = self.fw.pull.as_mut() {
                    pull.request = Some(id);
                }
            }
            Err(e) => {
                tracing::debug!(endpoint = %self.config.endpoint, error = %e, "block request not sent");
                self.fw_block_failed(now);
            }
        }
    }

    /// A block exchange failed: ask again after a pause, or give up.
    fn fw_block_failed(&mut self, now: Instant) {
        let retries = self.config.firmware_download_retries;
        let Some(pull) = self.fw.pull.as_mut() else {
            return;
        };
        pull.request = None;
        pull.failures += 1;
        if pull.failures > retries {
            return self.fw_failed(now, CONNECTION_LOST);
        }
        let pause = Duration::from_secs(1 << pull.failures.min(6));
        pull.retry_at = Some(crate::time::deadline(now, pause));
    }

    /// The answer to a request of ours: a pull block's. Returns whether it was one.
    pub(super) fn on_firmware_answer(
        &mut self,
        now: Instant,
        id: RequestId,
        answer: Result<&Packet, ExchangeError>,
    ) -> bool {
        if self.fw.pull.as_ref().and_then(|p| p.request) != Some(id) {
            return false;
        }
        match answer {
            Err(_) => self.fw_block_failed(now),
            Ok(resp) => self.fw_block(now, resp),
        }
        true
    }

    fn fw_block(&mut self, now: Instant, resp: &Packet) {
        let limit = self.config.firmware_max_package;
        if !msg::is_success(resp) {
            return match resp.header.code {
                MessageClass::Response(ResponseType::RequestEntityTooLarge) => {
                    self.fw_failed(now, NOT_ENOUGH_STORAGE)
                }
                MessageClass::Response(
                    ResponseType::BadRequest
                    | ResponseType::Unauthorized
                    | ResponseType::BadOption
                    | ResponseType::Forbidden
                    | ResponseType::NotFound
                    | ResponseType::MethodNotAllowed,
                ) => self.fw_failed(now, INVALID_URI),
                _ => self.fw_block_failed(now),
            };
        }
        if msg::uint_option(resp, CoapOption::Size2).is_some_and(|s| s as usize > limit) {
            return self.fw_failed(now, NOT_ENOUGH_STORAGE);
        }
        let Some(pull) = self.fw.pull.as_mut() else {
            return;
        };
        pull.request = None;
        let etag = resp.get_first_option(CoapOption::ETag).cloned();
        let Some(b2) = msg::block_option(resp, CoapOption::Block2) else {
            // No Block2: the server sent the whole package in one response.
            pull.received = 0;
            pull.check = PackageCheck::default();
            pull.etag = etag;
            if resp.payload.len() > limit {
                return self.fw_failed(now, NOT_ENOUGH_STORAGE);
            }
            if let Err(r) = pull.check.feed(&resp.payload) {
                return self.fw_failed(now, r.result());
            }
            pull.received = resp.payload.len();
            return self.fw_pull_complete(now);
        };
        if pull.received > 0 && etag != pull.etag {
            // RFC 7959 §2.4: the representation changed; what we have is of another one.
            pull.restarts += 1;
            if pull.restarts > MAX_RESTARTS {
                return self.fw_failed(now, CONNECTION_LOST);
            }
            pull.received = 0;
            pull.next = 0;
            pull.check = PackageCheck::default();
            pull.etag = None;
            if b2.num != 0 {
                return self.fw_request_block(now);
            }
        }
        let len = resp.payload.len();
        if b2.offset() != pull.received || len > b2.size() || (b2.more && len != b2.size()) {
            // Not the block we lack: ask for it again.
            return self.fw_block_failed(now);
        }
        if pull.received + len > limit {
            return self.fw_failed(now, NOT_ENOUGH_STORAGE);
        }
        pull.etag = etag;
        if let Err(r) = pull.check.feed(&resp.payload) {
            return self.fw_failed(now, r.result());
        }
        pull.received += len;
        pull.failures = 0;
        if b2.more {
            // §2.4: the server may have answered with smaller blocks than we asked.
            pull.szx = pull.szx.min(b2.szx);
            pull.next = (pull.received / msg::block_size(pull.szx)) as u32;
            return self.fw_request_block(now);
        }
        self.fw_pull_complete(now);
    }

    /// The last byte of the pull arrived: checks the package and its ETag.
    fn fw_pull_complete(&mut self, now: Instant) {
        let Some(pull) = self.fw.pull.take() else {
            return;
        };
        let etag = pull.etag.clone();
        match pull.check.finish() {
            Err(r) => self.fw_failed(now, r.result()),
            Ok(v) if etag.is_some_and(|e| e != v.digest.get(..8).unwrap_or_default()) => {
                self.fw_failed(now, Reject::Integrity.result())
            }
            Ok(v) => self.fw_downloaded(now, v.version),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_are_taken_apart() {
        let t = parse_uri("coaps://Server.example:5684/fw/0123456789abcdef?x=1").ok();
        let t = t.map(|t| (t.secure, t.host, t.port, t.path, t.query));
        assert_eq!(
            t,
            Some((
                true,
                "server.example".to_owned(),
                5684,
                vec!["fw".to_owned(), "0123456789abcdef".to_owned()],
                vec!["x=1".to_owned()]
            ))
        );
        assert_eq!(parse_uri("http://x/fw").err(), Some(UNSUPPORTED_PROTOCOL));
        assert_eq!(parse_uri("coap://x").err(), Some(INVALID_URI));
        assert_eq!(parse_uri("nonsense").err(), Some(INVALID_URI));
    }
}
