//! Pull delivery of Firmware Update (OMA LwM2M TS 1.2 Core Appendix E.6, Package URI
//! `/5/0/1`): the package is fetched one Block2 block at a time (RFC 7959 §2.4) over the
//! connection to the LwM2M server, resumed at the first block missing after a failure, and
//! started over only when the ETag changes. See the parent module for the state machine.
use super::package::{PackageCheck, Reject};
use super::{
    CONNECTION_LOST, DOWNLOADING, IDLE, INVALID_URI, MAX_RESTARTS, NOT_ENOUGH_STORAGE, OBJECT,
    PACKAGE_URI, UNSUPPORTED_PROTOCOL,
};
use crate::client::Client;
use crate::coap::{msg, BlockOpt, CoapOption, Packet, Peer, RequestType, ResponseType};
use crate::coap::{ExchangeError, MessageClass, RequestId, RequestOptions};
use crate::model::{Path, Value};
use std::time::{Duration, Instant};

/// One pull download.
#[derive(Debug)]
pub(super) struct Pull {
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
    pub(super) request: Option<RequestId>,
    /// When to ask again after a failure.
    pub(super) retry_at: Option<Instant>,
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
    let server = crate::client::ServerUri::parse(uri).map_err(|_| INVALID_URI)?;
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

impl<P: Peer> Client<P> {
    /// A URI written to `/5/0/1`.
    pub(super) fn fw_pull(&mut self, now: Instant, uri: String) {
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
            crate::client::ServerUri::parse(uri).is_ok_and(|s| {
                s.secure == t.secure && s.port == t.port && s.host.eq_ignore_ascii_case(&t.host)
            })
        })
    }

    /// Asks for the next block of the pull.
    pub(super) fn fw_request_block(&mut self, now: Instant) {
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
    pub(in crate::client) fn on_firmware_answer(
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
