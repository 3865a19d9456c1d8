//! The client side of the Bootstrap interface, sans-IO (OMA LwM2M TS 1.2 Core §6.1, and
//! §5.2.3 client-initiated bootstrap; Transport §6.1).
//!
//! A [`Bootstrapper`] is one device talking to its bootstrap server through one CoAP
//! [`Endpoint`]: it sends the Bootstrap-Request (`POST /bs?ep=..`), answers what the
//! bootstrap server asks of its [`ObjectStore`] (Discover, Read, Write, Delete) and
//! accepts Bootstrap-Finish when the store holds an LwM2M server account. Then the driver
//! takes the store back ([`Bootstrapper::into_store`]), reads the account it was given
//! ([`ObjectStore::server_accounts`]) and builds the [`Client`](super::Client) that
//! registers with it.
//!
//! ```text
//!   start ──► Requesting ──2.04──► Accepted ──Finish (account present)──► Finished
//!                 │                    │
//!      4.xx, 5.xx, no answer     no Finish within finish_timeout ──► Failed
//! ```
//!
//! Requests from the bootstrap server are answered in every state but `Failed`, also before
//! the 2.04 to the Bootstrap-Request arrives (the server may have sent its first request
//! before our answer reached us). Whether to try again after `Failed` is the driver's
//! decision (Core §6.1.6: the client retries after a while, or turns to another bootstrap
//! server).
mod store;

use super::config::ClientConfig;
use super::objects::ObjectStore;
use crate::coap::{
    msg, CoapOption, Endpoint, EndpointConfig, Event, ExchangeError, IncomingRequest, Packet, Peer,
    RequestId, RequestOptions, ResponseType, SendError, Transmit,
};
use crate::content::link::encode_discover;
use crate::content::negotiate::Lwm2mVersion;
use crate::content::{self, ContentFormat};
use crate::model::{Node, Path, PathLevel};
use crate::ops::bootstrap::{BootstrapOp, BootstrapRequest};
use crate::ops::Lwm2mError;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// What a [`Bootstrapper`] is configured with. Build it with [`BootstrapperConfig::new`].
#[derive(Debug, Clone)]
pub struct BootstrapperConfig {
    /// The endpoint client name (`ep`).
    pub endpoint: String,
    /// The LwM2M version: 1.0 answers Bootstrap-Discover without attributes and sends no
    /// `pct`.
    pub version: Lwm2mVersion,
    /// `pct` (1.1+): the format the client prefers for the bootstrap server's Writes.
    pub preferred_format: Option<ContentFormat>,
    /// The formats the client reads and writes, preferred first (as
    /// [`ClientConfig::content_formats`]); link format is always supported for Discover.
    pub content_formats: Vec<ContentFormat>,
    /// How long after [`start`](Bootstrapper::start) Bootstrap-Finish must have come;
    /// past it the bootstrap has failed.
    pub finish_timeout: Duration,
    /// Events not yet polled; beyond it the oldest is dropped.
    pub max_events: usize,
    /// Seeds the CoAP endpoint (message ids, tokens).
    pub rng_seed: u64,
    /// The CoAP endpoint's configuration; `rng_seed` is overwritten from the one above.
    pub coap: EndpointConfig,
}

impl BootstrapperConfig {
    /// LwM2M 1.1, SenML CBOR preferred, Finish within 60 s.
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            version: Lwm2mVersion::V1_1,
            preferred_format: None,
            content_formats: ClientConfig::formats_for(Lwm2mVersion::V1_1, false),
            finish_timeout: Duration::from_secs(60),
            max_events: 16,
            rng_seed: 0,
            coap: ClientConfig::device_endpoint_config(),
        }
    }

    /// Switches to `version`, with that version's formats (for 1.2, LwM2M CBOR too, last:
    /// a bootstrap server may write in it, and reads are answered in the others first).
    pub fn with_version(mut self, version: Lwm2mVersion) -> Self {
        self.version = version;
        self.content_formats = ClientConfig::formats_for(version, false);
        if version == Lwm2mVersion::V1_2 {
            self.content_formats.push(ContentFormat::Lwm2mCbor);
        }
        self
    }

    fn supports(&self, format: ContentFormat) -> bool {
        format != ContentFormat::LinkFormat && self.content_formats.contains(&format)
    }
}

/// What happened, for the driver.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum BootstrapEvent {
    /// Bootstrap-Finish was accepted (2.04): the store holds at least one LwM2M server
    /// account.
    Finished,
    /// The bootstrap did not complete; the driver decides when to try again.
    Failed {
        /// Why.
        reason: BootstrapError,
    },
}

/// Why a bootstrap failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BootstrapError {
    /// `start` was called twice.
    #[error("already started")]
    AlreadyStarted,
    /// The bootstrap server refused the Bootstrap-Request.
    #[error("the bootstrap server answered {0}")]
    Refused(Lwm2mError),
    /// The Bootstrap-Request got no answer (or a RST).
    #[error(transparent)]
    Exchange(#[from] ExchangeError),
    /// The Bootstrap-Request could not be sent.
    #[error("cannot send: {0}")]
    Send(#[from] SendError),
    /// No Bootstrap-Finish came within the finish timeout.
    #[error("no Bootstrap-Finish within {0:?}")]
    Timeout(Duration),
}

/// Counters, for metrics and tests. They only grow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BootstrapStats {
    /// Requests from the bootstrap server answered.
    pub requests: u64,
    /// Datagrams dropped because they came from another peer.
    pub dropped_foreign: u64,
    /// Events dropped because nobody polled them.
    pub dropped_events: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    Requesting(RequestId),
    Accepted,
    Finished,
    Failed,
}

/// One device bootstrapping with one bootstrap server at address `P`.
///
/// It never does I/O and never reads the clock. Feed it with
/// [`handle_datagram`](Self::handle_datagram) and [`handle_timeout`](Self::handle_timeout);
/// after each input drain [`poll_transmit`](Self::poll_transmit), then
/// [`poll_event`](Self::poll_event), then re-arm the timer from
/// [`poll_timeout`](Self::poll_timeout). Every queue is bounded by its config.
pub struct Bootstrapper<P: Peer> {
    config: BootstrapperConfig,
    server: P,
    endpoint: Endpoint<P>,
    store: ObjectStore,
    state: State,
    /// When the bootstrap fails unless Finish came.
    deadline: Option<Instant>,
    events: VecDeque<BootstrapEvent>,
    stats: BootstrapStats,
}

impl<P: Peer> Bootstrapper<P> {
    /// A bootstrapper for the bootstrap server at `bootstrap_server`, writing into `store`.
    pub fn new(mut config: BootstrapperConfig, bootstrap_server: P, store: ObjectStore) -> Self {
        config.coap.rng_seed = config.rng_seed;
        Self {
            endpoint: Endpoint::new(config.coap.clone()),
            config,
            server: bootstrap_server,
            store,
            state: State::Idle,
            deadline: None,
            events: VecDeque::new(),
            stats: BootstrapStats::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &BootstrapperConfig {
        &self.config
    }

    /// The object tree as the bootstrap server left it so far.
    pub fn store(&self) -> &ObjectStore {
        &self.store
    }

    /// The object tree, to build the [`Client`](super::Client) from after
    /// [`BootstrapEvent::Finished`].
    pub fn into_store(self) -> ObjectStore {
        self.store
    }

    /// Whether Bootstrap-Finish was accepted.
    pub fn is_finished(&self) -> bool {
        self.state == State::Finished
    }

    /// Counters since creation.
    pub fn stats(&self) -> BootstrapStats {
        self.stats
    }

    /// Sends the Bootstrap-Request and starts the finish timer.
    pub fn start(&mut self, now: Instant) -> Result<(), BootstrapError> {
        if self.state != State::Idle {
            return Err(BootstrapError::AlreadyStarted);
        }
        let mut req = BootstrapRequest::new(self.config.endpoint.clone());
        if self.config.version != Lwm2mVersion::V1_0 {
            req.preferred_format = self.config.preferred_format;
        }
        self.deadline = Some(crate::time::deadline(now, self.config.finish_timeout));
        match self
            .endpoint
            .send_request(now, self.server, req.to_coap(), RequestOptions::default())
        {
            Ok(id) => {
                tracing::debug!(endpoint = %self.config.endpoint, "bootstrap-request");
                self.state = State::Requesting(id);
            }
            Err(e) => self.fail(BootstrapError::Send(e)),
        }
        self.drive(now);
        Ok(())
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit<P>> {
        self.endpoint.poll_transmit()
    }

    /// The next event for the driver.
    pub fn poll_event(&mut self) -> Option<BootstrapEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let finish = match self.state {
            State::Requesting(_) | State::Accepted => self.deadline,
            _ => None,
        };
        [self.endpoint.poll_timeout(), finish]
            .into_iter()
            .flatten()
            .min()
    }

    /// Processes one datagram. Dropped when it does not come from the bootstrap server or
    /// the bootstrap has failed.
    pub fn handle_datagram(&mut self, now: Instant, from: P, data: &[u8]) {
        if from != self.server {
            self.stats.dropped_foreign += 1;
            return;
        }
        if self.state == State::Failed {
            return;
        }
        self.endpoint.handle_datagram(now, from, data);
        self.drive(now);
    }

    /// Runs CoAP retransmissions and the finish timer.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.endpoint.handle_timeout(now);
        self.drive(now);
        if matches!(self.state, State::Requesting(_) | State::Accepted)
            && self.deadline.is_some_and(|d| d <= now)
        {
            if let State::Requesting(id) = self.state {
                let _ = self.endpoint.cancel(now, id);
            }
            self.fail(BootstrapError::Timeout(self.config.finish_timeout));
            self.drive(now);
        }
    }

    fn push_event(&mut self, event: BootstrapEvent) {
        if self.events.len() >= self.config.max_events.max(1) {
            self.events.pop_front();
            self.stats.dropped_events += 1;
        }
        self.events.push_back(event);
    }

    fn fail(&mut self, reason: BootstrapError) {
        tracing::info!(endpoint = %self.config.endpoint, %reason, "bootstrap failed");
        self.state = State::Failed;
        self.deadline = None;
        self.push_event(BootstrapEvent::Failed { reason });
    }

    fn drive(&mut self, now: Instant) {
        while let Some(ev) = self.endpoint.poll_event() {
            match ev {
                Event::Request(req) => {
                    self.stats.requests += 1;
                    self.on_request(now, req);
                }
                Event::Response { id, response, .. } => {
                    if self.state == State::Requesting(id) {
                        match Lwm2mError::from_response(&response) {
                            None => self.state = State::Accepted,
                            Some(e) => self.fail(BootstrapError::Refused(e)),
                        }
                    }
                }
                Event::Failed { id, error, .. } => {
                    if self.state == State::Requesting(id) {
                        self.fail(BootstrapError::Exchange(error));
                    }
                }
                Event::Notification { .. } | Event::Pong { .. } | Event::ObserverGone { .. } => {}
            }
        }
    }

    fn on_request(&mut self, now: Instant, req: IncomingRequest<P>) {
        if self.state == State::Failed {
            return;
        }
        let mut finished = false;
        let response = BootstrapOp::from_coap(&req.request)
            .and_then(|op| self.apply(op, &mut finished))
            .unwrap_or_else(|e| {
                tracing::debug!(endpoint = %self.config.endpoint, path = %msg::uri_path(&req.request), error = %e, "bootstrap request refused");
                e.to_response()
            });
        if let Err(e) = self.endpoint.respond(now, req.id, response) {
            tracing::debug!(endpoint = %self.config.endpoint, error = %e, "answer not sent");
        }
        if finished && self.state != State::Finished {
            tracing::info!(endpoint = %self.config.endpoint, "bootstrapped");
            self.state = State::Finished;
            self.deadline = None;
            self.push_event(BootstrapEvent::Finished);
        }
    }

    /// Performs one operation of the bootstrap server; `finished` is set by an accepted
    /// Bootstrap-Finish.
    fn apply(&mut self, op: BootstrapOp, finished: &mut bool) -> Result<Packet, Lwm2mError> {
        match op {
            BootstrapOp::Discover(path) => {
                let links = self.store.bs_discover(&path, self.config.version)?;
                let mut p = msg::response(ResponseType::Content);
                set_format(&mut p, ContentFormat::LinkFormat);
                p.payload = encode_discover(&links).into_bytes();
                Ok(p)
            }
            BootstrapOp::Read { path, accept } => {
                let node = self.store.bs_read(&path)?;
                self.content(&path, &node, accept)
            }
            BootstrapOp::Write {
                path,
                format,
                payload,
            } => {
                if !self.config.supports(format) {
                    return Err(Lwm2mError::UnsupportedContentFormat);
                }
                let node = content::decode(format, &path, &payload, &*self.store.registry)?;
                let written = self.store.bs_write(&path, node)?;
                tracing::debug!(endpoint = %self.config.endpoint, %path, instances = written.len(), "bootstrap-write");
                Ok(msg::response(ResponseType::Changed))
            }
            BootstrapOp::Delete(path) => {
                let deleted = self.store.bs_delete(&path)?;
                tracing::debug!(endpoint = %self.config.endpoint, %path, instances = deleted.len(), "bootstrap-delete");
                Ok(msg::response(ResponseType::Deleted))
            }
            BootstrapOp::Finish => {
                if !self.store.has_server_account() {
                    // Core §6.1.7.7: the configuration is not usable; the bootstrap server
                    // may still complete it before the finish timer runs out.
                    return Err(Lwm2mError::NotAcceptable);
                }
                *finished = true;
                Ok(msg::response(ResponseType::Changed))
            }
        }
    }

    /// A 2.05 with `node` in the Accept format, or the preferred one.
    fn content(
        &self,
        path: &Path,
        node: &Node,
        accept: Option<ContentFormat>,
    ) -> Result<Packet, Lwm2mError> {
        let format = match accept {
            Some(f) if self.config.supports(f) && f.supports(path.level()) => f,
            Some(_) => return Err(Lwm2mError::NotAcceptable),
            None => self
                .config
                .content_formats
                .iter()
                .copied()
                .find(|f| f.supports(PathLevel::Object))
                .ok_or(Lwm2mError::NotAcceptable)?,
        };
        let payload = content::encode(format, path, node)
            .map_err(|e| Lwm2mError::InternalServerError(e.to_string()))?;
        let mut p = msg::response(ResponseType::Content);
        set_format(&mut p, format);
        p.payload = payload;
        Ok(p)
    }
}

fn set_format(p: &mut Packet, format: ContentFormat) {
    msg::set_uint_option(p, CoapOption::ContentFormat, u32::from(format.code()));
}

#[cfg(test)]
mod tests;
