//! The client side of the Information Reporting interface (OMA LwM2M TS 1.2 Core §6.4,
//! notification attributes of §5.1.2): the observations the server holds on us (Observe
//! §6.4.1, Observe-Composite §6.4.3), when each one notifies (Notify), and Send
//! (§6.4.4). The Observe request itself arrives through the `dm` module, which answers it
//! like a Read and hands the observation here; Cancel Observation is the endpoint's
//! (RFC 7641), which reports a gone observer.
//!
//! The CoAP endpoint keeps the RFC 7641 state of each observer (token, sequence numbers,
//! confirmable notifications replacing each other); this keeps the LwM2M state beside it:
//! what is observed, in which format, the attributes in force, when the last notification
//! went out and with which value.
//!
//! Rules, with the attributes of the most specific level winning (resource instance, then
//! resource, instance, object; pmin and pmax default to the Server object's `/1/x/2` and
//! `/1/x/3`):
//! - a change notifies at once if `pmin` has passed since the last notification, else it is
//!   remembered and notifies when `pmin` ends (if it still counts then);
//! - for a single numeric value with `gt`, `lt` or `st` only a change that crosses `gt` or
//!   `lt` (either way) or moves `st` or more from the last notified value counts; without
//!   them any change counts;
//! - `pmax` notifies the current value when that long has passed without a notification
//!   (ignored when 0 or below `pmin`);
//! - an observed path that disappears notifies 4.04, which ends the observation.
//!
//! Observe-Composite observations notify composite payloads on a change under any of their
//! paths, with the largest `pmin` and the smallest `pmax` of their paths; gt/lt/st do not
//! apply to them. `epmin`/`epmax` are not evaluated: values here change only when the
//! application says so, so there is nothing to sample.
use super::config::{ClientError, ClientEvent, SendId, StoreError};
use super::objects::numeric;
use super::Client;
use crate::attributes::NotificationAttributes;
use crate::coap::{msg, CoapOption, MessageClass, ObserverId, Packet, Peer, ResponseType};
use crate::coap::{ExchangeError, RequestId, RequestOptions};
use crate::content::negotiate::Lwm2mVersion;
use crate::content::{self, ContentFormat, Record};
use crate::model::{Node, Path, PathLevel, Value};
use crate::ops::reporting::SendRequest;
use crate::ops::Lwm2mError;
use std::time::{Duration, Instant};

/// What an observation watches.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Target {
    /// Observe (Core §6.4.1).
    Path(Path),
    /// Observe-Composite (Core §6.4.3).
    Composite(Box<[Path]>),
}

impl Target {
    fn touches(&self, changed: &Path) -> bool {
        let overlaps = |p: &Path| changed.starts_with(p) || p.starts_with(changed);
        match self {
            Target::Path(p) => overlaps(p),
            Target::Composite(ps) => ps.iter().any(overlaps),
        }
    }
}

/// One observation the server holds on this client.
#[derive(Debug)]
pub(super) struct Observation {
    /// The endpoint's handle, for `notify`.
    pub(super) observer: ObserverId,
    pub(super) target: Target,
    /// The format of the first answer; every notification uses it.
    format: ContentFormat,
    /// The attributes in force, resolved when the observation starts and whenever
    /// attributes or the Server object's default periods change.
    attrs: NotificationAttributes,
    /// When the last notification (or the first answer) went out.
    last_sent: Instant,
    /// The single value last reported, for gt/lt/st and "did it change"; `None` for
    /// containers and composites.
    last_value: Option<Value>,
    /// A change waits for `pmin` to end.
    pending: bool,
    /// Notifications sent, for "every Nth is confirmable".
    sent: u32,
}

impl Observation {
    fn pmin(&self) -> Duration {
        Duration::from_secs(u64::from(self.attrs.pmin.unwrap_or(0)))
    }

    fn pmax(&self) -> Option<Duration> {
        let pmax = self
            .attrs
            .pmax
            .filter(|p| *p > 0 && *p >= self.attrs.pmin.unwrap_or(0))?;
        Some(Duration::from_secs(u64::from(pmax)))
    }

    /// When this observation next needs attention.
    pub(super) fn deadline(&self) -> Option<Instant> {
        let pending = self
            .pending
            .then(|| crate::time::deadline(self.last_sent, self.pmin()));
        let periodic = self
            .pmax()
            .map(|p| crate::time::deadline(self.last_sent, p));
        pending.into_iter().chain(periodic).min()
    }

    /// Whether `current` differs from what was last reported enough to notify.
    fn counts(&self, current: Option<&Value>) -> bool {
        let (last, current) = match (&self.last_value, current) {
            (Some(l), Some(c)) => (l, c),
            (None, None) => return true, // containers: any change under them counts
            _ => return true,
        };
        let a = &self.attrs;
        let thresholds = a.gt.is_some() || a.lt.is_some() || a.st.is_some();
        match (numeric(last), numeric(current)) {
            (Some(old), Some(new)) if thresholds => {
                let crosses = |t: Option<f64>| t.is_some_and(|t| (old > t) != (new > t));
                let below = |t: Option<f64>| t.is_some_and(|t| (old < t) != (new < t));
                crosses(a.gt) || below(a.lt) || a.st.is_some_and(|st| (new - old).abs() >= st)
            }
            _ => last != current,
        }
    }
}

impl<P: Peer> Client<P> {
    /// Resolves the attributes of a target.
    fn resolve_attributes(&self, target: &Target) -> NotificationAttributes {
        let ssid = self.config.short_server_id;
        match target {
            Target::Path(p) => {
                let mut a = self.store.effective_attributes(p, ssid);
                let single_value = match p.level() {
                    PathLevel::Resource => self.store.value(p).is_some(),
                    PathLevel::ResourceInstance => true,
                    _ => false,
                };
                if !single_value {
                    a.gt = None;
                    a.lt = None;
                    a.st = None;
                }
                a
            }
            Target::Composite(paths) => {
                let each: Vec<_> = paths
                    .iter()
                    .map(|p| self.store.effective_attributes(p, ssid))
                    .collect();
                NotificationAttributes {
                    pmin: each.iter().filter_map(|a| a.pmin).max(),
                    pmax: each.iter().filter_map(|a| a.pmax).filter(|p| *p > 0).min(),
                    ..Default::default()
                }
            }
        }
    }

    /// The single value an observation of `target` reports, if it reports one.
    fn snapshot(&self, target: &Target) -> Option<Value> {
        match target {
            Target::Path(p) if p.level() >= PathLevel::Resource => self.store.value(p).cloned(),
            _ => None,
        }
    }

    /// Starts tracking an observation the endpoint accepted.
    pub(super) fn start_observation(
        &mut self,
        now: Instant,
        observer: ObserverId,
        target: Target,
        format: ContentFormat,
    ) {
        let attrs = self.resolve_attributes(&target);
        let last_value = self.snapshot(&target);
        tracing::debug!(endpoint = %self.config.endpoint, ?target, ?format, "observed");
        self.observations.push(Observation {
            observer,
            target,
            format,
            attrs,
            last_sent: now,
            last_value,
            pending: false,
            sent: 0,
        });
    }

    /// Forgets an observation (the endpoint dropped its observer).
    pub(super) fn drop_observation(&mut self, observer: ObserverId) {
        self.observations.retain(|o| o.observer != observer);
    }

    /// Ends every observation without telling the server (it forgets them with a new
    /// registration or a de-registration).
    pub(super) fn drop_all_observations(&mut self) {
        for o in std::mem::take(&mut self.observations) {
            self.endpoint.remove_observer(o.observer);
        }
    }

    /// Attributes or default periods changed: resolve them again.
    pub(super) fn refresh_attributes(&mut self) {
        let resolved: Vec<_> = self
            .observations
            .iter()
            .map(|o| self.resolve_attributes(&o.target))
            .collect();
        for (o, a) in self.observations.iter_mut().zip(resolved) {
            o.attrs = a;
        }
    }

    /// Values at `changed` changed: notify the observations that care, now or at pmin.
    pub(super) fn values_changed(&mut self, now: Instant, changed: &[Path]) {
        if changed.is_empty() {
            return;
        }
        let mut due = Vec::new();
        for (idx, o) in self.observations.iter().enumerate() {
            if !changed.iter().any(|c| o.target.touches(c)) {
                continue;
            }
            let current = self.snapshot(&o.target);
            if !o.counts(current.as_ref()) {
                continue;
            }
            due.push((idx, now >= crate::time::deadline(o.last_sent, o.pmin())));
        }
        let mut notify = Vec::new();
        for (idx, at_once) in due {
            if let Some(o) = self.observations.get_mut(idx) {
                if at_once {
                    notify.push(o.observer);
                } else {
                    o.pending = true;
                }
            }
        }
        for observer in notify {
            self.notify_now(now, observer);
        }
    }

    /// Runs the pmin and pmax deadlines due at `now`.
    pub(super) fn on_notifier_timer(&mut self, now: Instant) {
        let due: Vec<(ObserverId, bool)> = self
            .observations
            .iter()
            .filter(|o| o.deadline().is_some_and(|d| d <= now))
            .map(|o| {
                let periodic = o
                    .pmax()
                    .is_some_and(|p| crate::time::deadline(o.last_sent, p) <= now);
                (o.observer, periodic)
            })
            .collect();
        for (observer, periodic) in due {
            let Some(o) = self.observations.iter().find(|o| o.observer == observer) else {
                continue;
            };
            let still = periodic || o.counts(self.snapshot(&o.target).as_ref());
            if still {
                self.notify_now(now, observer);
            } else if let Some(o) = self
                .observations
                .iter_mut()
                .find(|o| o.observer == observer)
            {
                o.pending = false;
            }
        }
    }

    /// The earliest pmin or pmax deadline.
    pub(super) fn notifier_deadline(&self) -> Option<Instant> {
        self.observations
            .iter()
            .filter_map(Observation::deadline)
            .min()
    }

    /// Sends a notification with the current state of the observation's target.
    fn notify_now(&mut self, now: Instant, observer: ObserverId) {
        let Some(o) = self.observations.iter().find(|o| o.observer == observer) else {
            return;
        };
        let (target, format) = (o.target.clone(), o.format);
        let sent = o.sent.wrapping_add(1);
        let packet = match self.notification(&target, format) {
            Ok(p) => p,
            Err(e) => e.to_response(),
        };
        let ends = !msg::is_success(&packet);
        let every = self.config.notify_con_every;
        let default_con = self
            .store
            .server_flag(self.config.short_server_id, 26)
            .unwrap_or(false);
        let con = default_con || (every > 0 && sent % every == 0);
        self.ensure_awake(now, true);
        let value = self.snapshot(&target);
        match self.endpoint.notify(now, observer, packet, con) {
            Ok(()) if !ends => {
                self.stats.notifications += 1;
                if let Some(o) = self
                    .observations
                    .iter_mut()
                    .find(|o| o.observer == observer)
                {
                    o.last_sent = now;
                    o.last_value = value;
                    o.pending = false;
                    o.sent = sent;
                }
            }
            Ok(()) => self.drop_observation(observer),
            Err(e) => {
                tracing::debug!(endpoint = %self.config.endpoint, error = %e, "observation gone");
                self.drop_observation(observer);
            }
        }
    }

    /// The 2.05 for a target, or the error that ends its observation.
    pub(super) fn notification(
        &self,
        target: &Target,
        format: ContentFormat,
    ) -> Result<Packet, Lwm2mError> {
        let payload = match target {
            Target::Path(p) => {
                let node: Node = self.store.dm_read(p)?;
                content::encode(format, p, &node)
            }
            Target::Composite(paths) => {
                let records = self.store.dm_read_composite(paths)?;
                content::encode_composite(format, &records)
            }
        }
        .map_err(|e| Lwm2mError::InternalServerError(e.to_string()))?;
        let mut p = msg::response(ResponseType::Content);
        msg::set_uint_option(&mut p, CoapOption::ContentFormat, u32::from(format.code()));
        p.payload = payload;
        Ok(p)
    }

    /// Send (Core §6.4.4, LwM2M 1.1+): POSTs `records` to `/dp` in the composite format
    /// ([`ClientConfig::composite_format`](super::ClientConfig::composite_format)). The answer comes as
    /// [`ClientEvent::SendCompleted`]. Refused when not registered, for LwM2M 1.0, when
    /// the server muted Send (`/1/x/23`), or with `max_pending_sends` outstanding.
    pub fn send(&mut self, now: Instant, records: Vec<Record>) -> Result<SendId, ClientError> {
        if self.config.version == Lwm2mVersion::V1_0 {
            return Err(ClientError::Unsupported("Send"));
        }
        let format = self
            .config
            .composite_format()
            .ok_or(ClientError::Unsupported("Send"))?;
        if !self.is_registered() {
            return Err(ClientError::NotRegistered);
        }
        if self.store.server_flag(self.config.short_server_id, 23) == Some(true) {
            return Err(ClientError::Muted);
        }
        if self.sends.len() >= self.config.max_pending_sends {
            return Err(ClientError::Busy);
        }
        let packet = SendRequest { records }
            .to_coap(format)
            .map_err(|e| match e {
                Lwm2mError::BadRequest(d) => {
                    ClientError::Codec(crate::content::CodecError::Malformed { format, reason: d })
                }
                other => ClientError::Rejected(other),
            })?;
        self.ensure_awake(now, true);
        let id = self
            .endpoint
            .send_request(now, self.server, packet, RequestOptions::default())?;
        self.next_send += 1;
        let send = SendId(self.next_send);
        self.sends.push((id, send));
        tracing::debug!(endpoint = %self.config.endpoint, ?send, "send");
        self.drive(now);
        Ok(send)
    }

    /// Send of the current values under `paths` (without timestamps).
    pub fn send_paths(&mut self, now: Instant, paths: &[Path]) -> Result<SendId, ClientError> {
        let records = self.store.dm_read_composite(paths).map_err(|_| {
            ClientError::Store(StoreError::NotFound(
                paths.first().copied().unwrap_or(Path::ROOT),
            ))
        })?;
        self.send(now, records)
    }

    /// Turns the server's answer to a Send into [`ClientEvent::SendCompleted`]; answers to
    /// anything else are ignored.
    pub(super) fn on_send_answer(&mut self, id: RequestId, answer: Result<&Packet, ExchangeError>) {
        let Some(pos) = self.sends.iter().position(|(r, _)| *r == id) else {
            return;
        };
        let (_, send) = self.sends.swap_remove(pos);
        let result = match answer {
            Ok(resp) if resp.header.code == MessageClass::Response(ResponseType::Changed) => Ok(()),
            Ok(resp) => Err(ClientError::Rejected(
                Lwm2mError::from_response(resp)
                    .unwrap_or_else(|| Lwm2mError::Other(msg::code_string(resp))),
            )),
            Err(e) => Err(ClientError::Exchange(e)),
        };
        self.push_event(ClientEvent::SendCompleted { id: send, result });
    }

    /// How many observations are served.
    pub fn observation_count(&self) -> usize {
        self.observations.len()
    }
}
