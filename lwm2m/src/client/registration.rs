//! The client side of the Registration interface (OMA LwM2M TS 1.2 Core §6.2; Transport
//! §6.2): Register, periodic Update before the lifetime runs out, Update when the objects,
//! the lifetime or the binding change, Register again when the server has forgotten us, and
//! De-register.
//!
//! ```text
//!   start ──► Registering ──2.01──► Registered ──(timer, change)──► Update in flight
//!                │  ▲                   ▲    │                        │    │
//!     error/timeout  │ retry (backoff)   └────┼───────2.04─────────────┘    │ 4.04, error,
//!                ▼  │                        │                             │ timeout
//!              Waiting ◄──────────────── failed Register ◄──── Register ◄──┘
//!                         deregister ──► Deregistering ──any answer──► Stopped
//! ```
//!
//! Update timing: at 90 % of the lifetime or 30 s before it ends, whichever is earlier; for
//! lifetimes of 30 s and less (where a 30 s margin is impossible) at half the lifetime;
//! never sooner than 1 s. Failed Registers are retried after `retry_initial`, doubling up
//! to `retry_max`, minus up to `retry_jitter` of the delay.
use super::config::{ClientError, ClientEvent};
use super::Client;
use crate::coap::{msg, Packet, Peer, RequestId, RequestOptions, ResponseType};
use crate::coap::{ExchangeError, MessageClass};
use crate::content::link::ObjectLinks;
use crate::content::negotiate::Lwm2mVersion;
use crate::content::ContentFormat;
use crate::ops::registration::{deregister, Binding, Register, Update};
use crate::ops::Lwm2mError;
use std::time::{Duration, Instant};

/// Where the registration stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum RegState {
    /// Not started, or De-registered.
    Stopped,
    /// Register sent, awaiting the answer.
    Registering(RequestId),
    /// Registered at `location`; Updates go there.
    Registered {
        /// The Location-Path of the 2.01.
        location: String,
    },
    /// Register failed; the next attempt is at the registration timer.
    Waiting,
    /// De-register sent, awaiting the answer.
    Deregistering(RequestId),
}

/// Registration state of one client.
#[derive(Debug)]
pub(super) struct Registration {
    pub(super) state: RegState,
    /// When the next Update is due (registered) or the next Register attempt (waiting).
    pub(super) timer: Option<Instant>,
    /// Register attempts failed in a row, for the backoff.
    failures: u32,
    /// The Update in flight.
    updating: Option<RequestId>,
    /// The Update in flight is the one retry after an unanswered one.
    retrying: bool,
    /// Another Update is wanted once the one in flight is answered.
    again: bool,
    /// The object links changed since the server last got them.
    links_dirty: bool,
    /// Lifetime and binding as the server knows them, to send only what changed.
    sent_lifetime: u32,
    sent_binding: Binding,
}

impl Registration {
    pub(super) fn new() -> Self {
        Self {
            state: RegState::Stopped,
            timer: None,
            failures: 0,
            updating: None,
            retrying: false,
            again: false,
            links_dirty: false,
            sent_lifetime: 0,
            sent_binding: Binding::UDP,
        }
    }
}

/// When to send the next Update after a successful Register or Update.
pub(super) fn update_delay(lifetime: u32) -> Duration {
    let lt = Duration::from_secs(u64::from(lifetime));
    let d = if lifetime > 30 {
        lt.mul_f64(0.9).min(lt - Duration::from_secs(30))
    } else {
        lt / 2
    };
    d.max(Duration::from_secs(1))
}

/// What a response to one of our registration requests says.
fn outcome(resp: &Packet, want: ResponseType) -> Result<(), ClientError> {
    if resp.header.code == MessageClass::Response(want) {
        return Ok(());
    }
    Err(ClientError::Rejected(
        Lwm2mError::from_response(resp)
            .unwrap_or_else(|| Lwm2mError::Other(msg::code_string(resp))),
    ))
}

impl<P: Peer> Client<P> {
    /// The lifetime in force: the Server object's, else the configured one.
    pub(super) fn lifetime(&self) -> u32 {
        self.store
            .lifetime(self.config.short_server_id)
            .unwrap_or(self.config.lifetime)
    }

    fn binding(&self) -> Binding {
        self.store
            .binding(self.config.short_server_id)
            .unwrap_or(self.config.binding)
    }

    fn object_links(&self) -> ObjectLinks {
        let content_formats = if self.config.version == Lwm2mVersion::V1_0 {
            Vec::new()
        } else {
            self.config
                .content_formats
                .iter()
                .filter(|f| {
                    !matches!(
                        f,
                        ContentFormat::Text | ContentFormat::Opaque | ContentFormat::LinkFormat
                    )
                })
                .map(|f| f.code())
                .collect()
        };
        ObjectLinks {
            root_path: "/".to_owned(),
            content_formats,
            objects: self.store.object_links(),
        }
    }

    /// Starts registering: sends Register at once.
    pub fn start(&mut self, now: Instant) -> Result<(), ClientError> {
        if self.reg.state != RegState::Stopped {
            return Err(ClientError::AlreadyStarted);
        }
        self.ensure_awake(now, false);
        self.send_register(now);
        self.drive(now);
        Ok(())
    }

    /// Ends the registration. When registered, sends De-register ([`ClientEvent::Deregistered`]
    /// follows its answer or its failure); otherwise stops registering at once. Observations
    /// end either way. `NotRegistered` if the client was not started.
    pub fn deregister(&mut self, now: Instant) -> Result<(), ClientError> {
        let state = std::mem::replace(&mut self.reg.state, RegState::Stopped);
        self.reg.timer = None;
        if let Some(up) = self.reg.updating.take() {
            let _ = self.endpoint.cancel(now, up);
        }
        self.drop_all_observations();
        match state {
            RegState::Registered { location } => {
                self.ensure_awake(now, false);
                match self.endpoint.send_request(
                    now,
                    self.server,
                    deregister(&location),
                    RequestOptions::default(),
                ) {
                    Ok(id) => self.reg.state = RegState::Deregistering(id),
                    Err(_) => self.push_event(ClientEvent::Deregistered),
                }
            }
            RegState::Registering(id) | RegState::Deregistering(id) => {
                let _ = self.endpoint.cancel(now, id);
                self.push_event(ClientEvent::Deregistered);
            }
            RegState::Waiting => self.push_event(ClientEvent::Deregistered),
            RegState::Stopped => return Err(ClientError::NotRegistered),
        }
        tracing::debug!(endpoint = %self.config.endpoint, "deregistering");
        self.drive(now);
        Ok(())
    }

    /// Sends a Registration Update now (what Execute on `/1/x/8` does).
    pub fn update(&mut self, now: Instant) -> Result<(), ClientError> {
        if !matches!(self.reg.state, RegState::Registered { .. }) {
            return Err(ClientError::NotRegistered);
        }
        self.ensure_awake(now, false);
        self.send_update(now);
        self.drive(now);
        Ok(())
    }

    /// The driver's secure session with the server is up again after
    /// [`ClientEvent::Unreachable`]: the Update waiting to be tried once more goes now, on the
    /// new session (its time starts when it can be sent, not while the handshake runs).
    pub fn reconnected(&mut self, now: Instant) {
        if !self.reg.retrying
            || self.reg.updating.is_some()
            || !matches!(self.reg.state, RegState::Registered { .. })
        {
            return;
        }
        self.reg.timer = None;
        self.ensure_awake(now, false);
        self.send_update(now);
        self.drive(now);
    }

    /// The registration's Location-Path, while registered.
    pub fn location(&self) -> Option<&str> {
        match &self.reg.state {
            RegState::Registered { location } => Some(location),
            _ => None,
        }
    }

    /// Whether the client is registered.
    pub fn is_registered(&self) -> bool {
        matches!(self.reg.state, RegState::Registered { .. })
    }

    /// Whether the client was started and not stopped or de-registering.
    pub(super) fn registration_started(&self) -> bool {
        !matches!(
            self.reg.state,
            RegState::Stopped | RegState::Deregistering(_)
        )
    }

    pub(super) fn send_register(&mut self, now: Instant) {
        // A new registration starts from nothing on the server: its observations are gone.
        self.drop_all_observations();
        if let Some(up) = self.reg.updating.take() {
            let _ = self.endpoint.cancel(now, up);
        }
        let lifetime = self.lifetime();
        let binding = self.binding();
        let mut reg = Register::new(self.config.endpoint.clone(), self.object_links());
        reg.lifetime = lifetime;
        reg.version = self.config.version;
        reg.binding = binding;
        reg.queue_mode = self.config.queue_mode;
        self.reg.links_dirty = false;
        self.reg.again = false;
        self.reg.sent_lifetime = lifetime;
        self.reg.sent_binding = binding;
        self.reg.timer = None;
        match self
            .endpoint
            .send_request(now, self.server, reg.to_coap(), RequestOptions::default())
        {
            Ok(id) => {
                tracing::debug!(endpoint = %self.config.endpoint, lifetime, "register");
                self.reg.state = RegState::Registering(id);
            }
            Err(e) => self.register_failed(now, ClientError::Send(e)),
        }
    }

    fn register_failed(&mut self, now: Instant, error: ClientError) {
        self.reg.failures = self.reg.failures.saturating_add(1);
        let delay = self.retry_delay(self.reg.failures);
        tracing::info!(endpoint = %self.config.endpoint, %error, ?delay, "registration failed");
        self.reg.state = RegState::Waiting;
        self.reg.timer = Some(crate::time::deadline(now, delay));
        self.push_event(ClientEvent::RegistrationFailed { error });
    }

    /// The delay before Register attempt `failures + 1`.
    pub(super) fn retry_delay(&mut self, failures: u32) -> Duration {
        let doubling = 1u32 << failures.saturating_sub(1).min(20);
        let d = self
            .config
            .retry_initial
            .saturating_mul(doubling)
            .min(self.config.retry_max);
        let jitter = self.config.retry_jitter.clamp(0.0, 1.0);
        if jitter == 0.0 {
            return d;
        }
        d.mul_f64(1.0 - jitter * self.random_unit())
    }

    /// Asks for an Update: sent now if registered and none is in flight, after the current
    /// one otherwise, with the next Register if not registered.
    pub(super) fn send_update(&mut self, now: Instant) {
        let RegState::Registered { location } = &self.reg.state else {
            return;
        };
        if self.reg.updating.is_some() {
            self.reg.again = true;
            return;
        }
        let lifetime = self.lifetime();
        let binding = self.binding();
        let legacy_queue = self.config.queue_mode && self.config.version == Lwm2mVersion::V1_0;
        let update = Update {
            lifetime: (lifetime != self.reg.sent_lifetime).then_some(lifetime),
            binding: (binding != self.reg.sent_binding).then_some((binding, legacy_queue)),
            sms: None,
            links: self.reg.links_dirty.then(|| self.object_links()),
        };
        let packet = update.to_coap(location);
        match self
            .endpoint
            .send_request(now, self.server, packet, RequestOptions::default())
        {
            Ok(id) => {
                tracing::debug!(endpoint = %self.config.endpoint, ?update.lifetime, links = update.links.is_some(), "update");
                self.reg.updating = Some(id);
                self.reg.again = false;
                self.reg.links_dirty = false;
                self.reg.sent_lifetime = lifetime;
                self.reg.sent_binding = binding;
                self.reg.timer = None;
            }
            Err(e) => {
                tracing::warn!(endpoint = %self.config.endpoint, error = %e, "update not sent");
                self.reg.timer = Some(crate::time::deadline(now, Duration::from_secs(1)));
            }
        }
    }

    /// The object links changed (instances created or deleted).
    pub(super) fn links_changed(&mut self, now: Instant) {
        self.reg.links_dirty = true;
        if self.is_registered() {
            self.ensure_awake(now, false);
            self.send_update(now);
        }
    }

    /// The lifetime or binding in the Server object may have changed.
    pub(super) fn server_params_changed(&mut self, now: Instant) {
        if self.is_registered()
            && (self.lifetime() != self.reg.sent_lifetime
                || self.binding() != self.reg.sent_binding)
        {
            self.send_update(now);
        }
    }

    /// A response to a request of ours: registration's, or a Send's. Returns whether it was
    /// a registration request.
    pub(super) fn on_registration_answer(
        &mut self,
        now: Instant,
        id: RequestId,
        answer: Result<&Packet, ExchangeError>,
    ) -> bool {
        match &self.reg.state {
            RegState::Registering(r) if *r == id => {
                let result = answer.map_err(ClientError::Exchange).and_then(|resp| {
                    outcome(resp, ResponseType::Created)?;
                    let location = msg::location_path(resp);
                    if location.is_empty() {
                        return Err(ClientError::NoLocation);
                    }
                    Ok(location)
                });
                match result {
                    Ok(location) => {
                        tracing::info!(endpoint = %self.config.endpoint, %location, "registered");
                        self.reg.failures = 0;
                        self.reg.timer = Some(crate::time::deadline(
                            now,
                            update_delay(self.reg.sent_lifetime),
                        ));
                        self.reg.state = RegState::Registered {
                            location: location.clone(),
                        };
                        self.push_event(ClientEvent::Registered { location });
                        if self.reg.links_dirty || self.reg.again {
                            self.send_update(now);
                        } else {
                            self.server_params_changed(now);
                        }
                    }
                    Err(error) => self.register_failed(now, error),
                }
                true
            }
            RegState::Deregistering(r) if *r == id => {
                tracing::info!(endpoint = %self.config.endpoint, "deregistered");
                self.reg.state = RegState::Stopped;
                self.push_event(ClientEvent::Deregistered);
                true
            }
            _ if self.reg.updating == Some(id) => {
                self.reg.updating = None;
                let result = answer
                    .map_err(ClientError::Exchange)
                    .and_then(|resp| outcome(resp, ResponseType::Changed));
                let retried = std::mem::take(&mut self.reg.retrying);
                match result {
                    Ok(()) => {
                        self.reg.timer = Some(crate::time::deadline(
                            now,
                            update_delay(self.reg.sent_lifetime),
                        ));
                        self.push_event(ClientEvent::Updated);
                        if self.reg.again || self.reg.links_dirty {
                            self.send_update(now);
                        } else {
                            self.server_params_changed(now);
                        }
                    }
                    Err(ClientError::Exchange(ExchangeError::Timeout)) if !retried => {
                        // No answer at all: the server may have lost the session (a restart,
                        // a failover to another node) but not the registration. The driver
                        // handshakes again and the Update is tried once more on the new
                        // session (`reconnected`), which keeps the registration, its
                        // observations and what is queued for it; a second silence means
                        // registering anew. A driver that never says (no secure session to
                        // renew) gets the retry after twice as long as an exchange may take
                        // (room for a handshake with a server that is slow to come back).
                        tracing::info!(endpoint = %self.config.endpoint, "update unanswered; trying it once more");
                        self.reg.retrying = true;
                        let wait = self.config.coap.transmission.max_transmit_wait() * 2;
                        self.reg.timer = Some(crate::time::deadline(now, wait));
                        self.push_event(ClientEvent::Unreachable);
                    }
                    Err(error) => {
                        // 4.04: the server forgot us; anything else leaves us unsure. Either
                        // way a fresh Register puts things straight (Core §6.2.2).
                        tracing::info!(endpoint = %self.config.endpoint, %error, "update failed; registering again");
                        self.push_event(ClientEvent::RegistrationFailed { error });
                        self.send_register(now);
                    }
                }
                true
            }
            _ => false,
        }
    }

    /// The registration timer fired.
    pub(super) fn on_registration_timer(&mut self, now: Instant) {
        if self.reg.timer.is_none_or(|t| t > now) {
            return;
        }
        self.reg.timer = None;
        match self.reg.state {
            RegState::Registered { .. } => {
                self.ensure_awake(now, false);
                self.send_update(now);
            }
            RegState::Waiting => {
                self.ensure_awake(now, false);
                self.send_register(now);
            }
            _ => {}
        }
    }
}
