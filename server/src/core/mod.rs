//! The LwM2M server core, sans-IO: registrations, the command path with queue mode,
//! observations and Send, on top of one [`coap::Endpoint`].
//!
//! Like the CoAP endpoint it wraps, it never touches a socket or reads the clock:
//! - **Inputs**: [`handle_datagram`](ServerCore::handle_datagram),
//!   [`handle_timeout`](ServerCore::handle_timeout), and the commands
//!   [`submit`](ServerCore::submit) and [`cancel_observation`](ServerCore::cancel_observation).
//! - **Outputs**, after each input: [`poll_transmit`](ServerCore::poll_transmit) (datagrams),
//!   [`poll_store`](ServerCore::poll_store) (writes for the durable store, in order),
//!   [`poll_event`](ServerCore::poll_event) (the [`DeviceEvent`] stream), and
//!   [`poll_timeout`](ServerCore::poll_timeout).
//!
//! One file per LwM2M interface (OMA LwM2M TS 1.2 Core), the CoAP details living in `lwm2m`:
//! - `registration`: the Registration interface (Core §6.2): Register, Update, De-register,
//!   lifetime expiry.
//! - `commands`: the Device Management and Service Enablement interface (Core §6.3) as the
//!   one command path, with queue mode (Transport §6.5) for sleeping devices.
//! - `reporting`: the Information Reporting interface (Core §6.4): Observe, Notify, Cancel
//!   Observation, and Send.
//! - `firmware`: pull downloads of firmware packages (Core Appendix E.6, RFC 7959 Block2).
//! - [`persist`] and `restore`: the core's records in the store and bringing them back.
//! - [`types`]: the values crossing the core's boundary.
//!
//! This file routes what the CoAP endpoint produces: requests from devices to the
//! Registration interface (`/rd`), to Send (`/dp`) or to the firmware packages
//! (`/{firmware.path}/{id}`), responses to the command path or to the observations.
//!
//! [`coap::Endpoint`]: lwm2m::coap::Endpoint
pub mod clients;
mod commands;
mod firmware;
pub mod persist;
mod registration;
mod reporting;
mod restore;
pub mod shared;
#[cfg(test)]
mod tests;
pub mod types;

pub use firmware::{Download, FirmwareAccess};

use lwm2m::coap::{
    CoapOption, Endpoint, EndpointConfig, Event, IncomingRequest, MessageClass, Peer, RequestId,
    RequestType, Transmit,
};
use lwm2m::content::negotiate::ClientFormats;
use lwm2m::model::Registry;
use lwm2m::ops::Lwm2mError;
use persist::StoreOp;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt::Display;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use types::{CommandId, DeviceEvent, ObservationId, Registration};

/// What [`ServerCore::restore`] found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// Registrations restored.
    pub registrations: usize,
    /// Registrations that expired while the server was down.
    pub expired: usize,
    /// Observations restored.
    pub observations: usize,
    /// Queued commands restored.
    pub queued: usize,
    /// Records skipped (unreadable, or belonging to no restored device).
    pub unreadable: usize,
}

/// Settings of the core.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// The CoAP endpoint's settings.
    pub coap: EndpointConfig,
    /// Extra time after a registration's lifetime before it is removed, for Updates delayed
    /// in the network.
    pub registration_grace: Duration,
    /// How long a queue-mode device counts as awake after it sent something
    /// (Transport §6.5; MAX_TRANSMIT_WAIT by default).
    pub awake_window: Duration,
    /// Commands pending per device: queued for it while it sleeps or sent and awaiting its
    /// answer. Beyond it, new commands fail with `QueueFull`.
    pub max_queue_per_device: usize,
    /// Commands pending in the whole server (queued or awaiting an answer). Beyond it, new
    /// commands fail with `Overloaded`, so no backend can grow the server's memory without
    /// end.
    pub max_pending_commands: usize,
    /// How long a command may wait for a sleeping device when it says nothing itself.
    pub default_command_ttl: Duration,
    /// Registrations held. Beyond it, Register is answered 5.03.
    pub max_registrations: usize,
    /// Observations held per device. Beyond it, Observe fails with 5.03 locally.
    pub max_observations_per_device: usize,
    /// Seed for registration locations. The shell seeds it from the operating system.
    pub rng_seed: u64,
    /// The low byte of every command and observation id this core hands out (the cluster
    /// node id): ids stay unique across the nodes of a cluster, whose devices (and their
    /// queued commands) move between them.
    pub id_node: u8,
}

impl Default for CoreConfig {
    fn default() -> Self {
        let coap = EndpointConfig::default();
        Self {
            registration_grace: Duration::from_secs(15),
            awake_window: coap.transmission.max_transmit_wait(),
            max_queue_per_device: 64,
            max_pending_commands: 100_000,
            default_command_ttl: Duration::from_secs(24 * 3600),
            max_registrations: 1_000_000,
            max_observations_per_device: 64,
            rng_seed: 0,
            id_node: 0,
            coap,
        }
    }
}

/// One registered device.
#[derive(Debug)]
struct Device<P> {
    reg: Registration,
    peer: P,
    formats: ClientFormats,
    /// When the registration lapses (lifetime + grace).
    expires: Instant,
    /// Until when a queue-mode device can be reached.
    awake_until: Option<Instant>,
    /// Commands waiting for the device to wake, in submission order.
    queue: VecDeque<commands::Queued>,
    /// Observations on this device.
    observations: Vec<ObservationId>,
    /// Commands sent to it and awaiting its answer, counted against
    /// [`CoreConfig::max_queue_per_device`] with the queue.
    inflight: usize,
}

impl<P> Device<P> {
    /// Whether a command can be sent to it now: always, unless it is a queue-mode device
    /// not heard from within the awake window (Transport §6.5).
    fn reachable(&self, now: Instant) -> bool {
        !self.reg.queue_mode || self.awake_until.is_some_and(|t| t > now)
    }
}

/// Decides which endpoints must come over DTLS: an endpoint with a
/// credential may not register, update or de-register without it.
pub trait SecurityPolicy: Send + Sync {
    /// Whether `endpoint` has a credential and so must authenticate.
    fn requires_dtls(&self, endpoint: &str) -> bool;
}

/// Who an authenticated peer is, from its DTLS handshake.
#[derive(Debug, Clone)]
struct Authenticated {
    /// The endpoint name its credential is bound to.
    principal: Arc<str>,
    /// Where it is now, for the registration's address.
    addr: std::net::SocketAddr,
}

/// The LwM2M server core for peers of type `P` (`SocketAddr` for plain UDP).
pub struct ServerCore<P: Peer> {
    coap: Endpoint<P>,
    config: CoreConfig,
    schema: Arc<Registry>,
    /// Maps monotonic time to wall-clock time for what is persisted.
    clock_base: (Instant, SystemTime),
    rng: StdRng,
    /// Boxed: a map keeps spare slots (up to a third empty after it grows), and a slot of a
    /// few hundred bytes per spare would cost more than the pointer.
    devices: HashMap<String, Box<Device<P>>>,
    /// Location id (`/rd/{id}`) to endpoint name.
    locations: HashMap<String, String>,
    /// Peer to endpoint name, for Send (`/dp` carries no location).
    by_peer: HashMap<P, String>,
    /// Registration expiry: exactly one entry per device, moved on every Update and removed
    /// with the device, so re-registering devices leave nothing behind.
    expiry: BTreeSet<(Instant, String)>,
    /// When each awake queue-mode device falls asleep: one entry per awake device, moved
    /// whenever it is heard from, so that `Sleeping` is reported without a timer per device.
    sleep_at: BTreeSet<(Instant, String)>,
    /// Queued commands' time-to-live.
    queue_expiry: BTreeMap<(Instant, CommandId), String>,
    /// Commands sent and awaiting the device's answer.
    inflight: HashMap<RequestId, commands::InFlight>,
    observations: HashMap<ObservationId, reporting::Observation>,
    observation_by_request: HashMap<RequestId, ObservationId>,
    next_command: u64,
    next_observation: u64,
    events: VecDeque<DeviceEvent>,
    store_ops: VecDeque<StoreOp>,
    /// Peers authenticated by DTLS and who they are.
    authenticated: HashMap<P, Authenticated>,
    policy: Option<Arc<dyn SecurityPolicy>>,
    /// Firmware packages served for pull downloads, if any.
    firmware: Option<firmware::Serving>,
    /// With registrations shared between nodes: requests waiting for the shared store.
    parking: Option<shared::Parking<P>>,
    /// While a device taken over from the shared store is installed: its current session,
    /// which its stored registration's peer (another node's) gives way to.
    adopting: Option<P>,
}

impl<P: Peer + Display + FromStr> ServerCore<P> {
    /// A core with no devices. `clock_base` pairs one monotonic instant with the wall-clock
    /// time at that instant; `schema` types the values devices send.
    pub fn new(
        config: CoreConfig,
        schema: Arc<Registry>,
        clock_base: (Instant, SystemTime),
    ) -> Self {
        let wall_ms = lwm2m::time::unix_millis(clock_base.1);
        Self {
            coap: Endpoint::new(config.coap.clone()),
            rng: StdRng::seed_from_u64(config.rng_seed),
            schema,
            clock_base,
            devices: HashMap::new(),
            locations: HashMap::new(),
            by_peer: HashMap::new(),
            expiry: BTreeSet::new(),
            queue_expiry: BTreeMap::new(),
            sleep_at: BTreeSet::new(),
            inflight: HashMap::new(),
            observations: HashMap::new(),
            observation_by_request: HashMap::new(),
            // Command ids start from the wall clock so they stay unique across restarts.
            next_command: wall_ms << 8,
            next_observation: wall_ms << 8,
            events: VecDeque::new(),
            store_ops: VecDeque::new(),
            authenticated: HashMap::new(),
            policy: None,
            firmware: None,
            parking: None,
            adopting: None,
            config,
        }
    }

    /// Sets who must authenticate; without a policy, NoSec peers may use any name.
    pub fn set_security_policy(&mut self, policy: Arc<dyn SecurityPolicy>) {
        self.policy = Some(policy);
    }

    /// `peer` completed a DTLS handshake with a credential bound to `principal`.
    pub fn peer_authenticated(&mut self, peer: P, principal: Arc<str>, addr: std::net::SocketAddr) {
        self.authenticated
            .insert(peer, Authenticated { principal, addr });
    }

    /// An authenticated peer moved to `addr` (DTLS Connection ID, RFC 9146).
    pub fn peer_moved(&mut self, peer: P, addr: std::net::SocketAddr) {
        if let Some(a) = self.authenticated.get_mut(&peer) {
            a.addr = addr;
        }
        if let Some(dev) = self
            .by_peer
            .get(&peer)
            .and_then(|ep| self.devices.get_mut(ep))
        {
            dev.reg.address = addr.to_string();
        }
    }

    /// An authenticated peer's session ended.
    pub fn peer_closed(&mut self, peer: P) {
        self.authenticated.remove(&peer);
    }

    /// A device's credential was revoked: its registration ends now.
    pub fn revoke(&mut self, now: Instant, endpoint: &str) -> bool {
        self.remove_device(now, endpoint, types::DeregisterReason::Revoked)
            .is_some()
    }

    /// The address to report for `peer`.
    fn address_of(&self, peer: &P) -> String {
        match self.authenticated.get(peer) {
            Some(a) => a.addr.to_string(),
            None => peer.to_string(),
        }
    }

    /// Whether `peer` may act as `endpoint`: an authenticated peer only as the endpoint its
    /// credential is bound to, an unauthenticated one only as an endpoint without a
    /// credential. A refusal is reported as [`DeviceEvent::AuthFailed`] for the audit log.
    fn authorize(&mut self, peer: &P, endpoint: &str) -> Result<(), lwm2m::ops::Lwm2mError> {
        let reason = match self.authenticated.get(peer) {
            Some(a) if &*a.principal == endpoint => return Ok(()),
            Some(_) => "endpoint name is not the one bound to the DTLS credential",
            None if self
                .policy
                .as_ref()
                .is_some_and(|p| p.requires_dtls(endpoint)) =>
            {
                "endpoint has a credential and must use DTLS"
            }
            None => return Ok(()),
        };
        let principal = self
            .authenticated
            .get(peer)
            .map(|a| a.principal.to_string());
        tracing::warn!(endpoint, peer = %self.address_of(peer), principal = principal.as_deref().unwrap_or(""), reason, "request refused: 4.03");
        self.events.push_back(DeviceEvent::AuthFailed {
            endpoint: endpoint.to_string(),
            peer: self.address_of(peer),
            principal,
            reason,
        });
        Err(lwm2m::ops::Lwm2mError::Forbidden)
    }

    /// Wall-clock time at `now`.
    fn wall(&self, now: Instant) -> SystemTime {
        match now.checked_duration_since(self.clock_base.0) {
            Some(d) => lwm2m::time::wall_deadline(self.clock_base.1, d),
            None => {
                lwm2m::time::wall_before(self.clock_base.1, self.clock_base.0.duration_since(now))
            }
        }
    }

    /// Monotonic time of wall-clock time `t` (clamped to `now` for the past).
    fn instant_of(&self, t: SystemTime, now: Instant) -> Instant {
        let wall_now = self.wall(now);
        match t.duration_since(wall_now) {
            Ok(ahead) => lwm2m::time::deadline(now, ahead),
            Err(_) => now,
        }
    }

    /// The registration of `endpoint`.
    pub fn registration(&self, endpoint: &str) -> Option<&Registration> {
        self.devices.get(endpoint).map(|d| &d.reg)
    }

    /// The peer `endpoint` is registered from (its address, or its DTLS session).
    pub fn peer_of(&self, endpoint: &str) -> Option<&P> {
        self.devices.get(endpoint).map(|d| &d.peer)
    }

    /// Every registration.
    pub fn registrations(&self) -> impl Iterator<Item = &Registration> {
        self.devices.values().map(|d| &d.reg)
    }

    /// Number of registered devices.
    pub fn device_count(&self) -> usize {
        self.devices.len()
    }

    /// Commands waiting for `endpoint` to wake.
    pub fn queued(&self, endpoint: &str) -> usize {
        self.devices.get(endpoint).map_or(0, |d| d.queue.len())
    }

    /// The CoAP endpoint's counters and table sizes.
    pub fn coap(&self) -> &Endpoint<P> {
        &self.coap
    }

    /// While `on`, notifications and LwM2M Sends are left unacknowledged (devices retransmit
    /// them) instead of taken: what they would become cannot be kept now (the MQTT outbox is
    /// full).
    /// Returns whether they were refused before.
    pub fn refuse_reports(&mut self, on: bool) -> bool {
        self.coap.refuse_reports(on)
    }

    /// Processes one datagram from `peer`.
    pub fn handle_datagram(&mut self, now: Instant, peer: P, data: &[u8]) {
        self.coap.handle_datagram(now, peer, data);
        self.process(now);
    }

    /// Runs what is due at `now`: CoAP timers, registration expiry, queued-command expiry.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.coap.handle_timeout(now);
        self.process(now);
        self.expire_registrations(now);
        self.expire_queued(now);
        self.fall_asleep(now);
        self.process(now);
    }

    /// Reports each queue-mode device whose awake window has passed as sleeping
    /// (Transport §6.5: the server may no longer send to it until it is heard from).
    fn fall_asleep(&mut self, now: Instant) {
        while self.sleep_at.first().is_some_and(|(t, _)| *t <= now) {
            let Some((_, endpoint)) = self.sleep_at.pop_first() else {
                break;
            };
            if self.devices.contains_key(&endpoint) {
                self.events.push_back(DeviceEvent::Sleeping { endpoint });
            }
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let reg = self.expiry.first().map(|(t, _)| *t);
        let queue = self.queue_expiry.first_key_value().map(|((t, _), _)| *t);
        let sleep = self.sleep_at.first().map(|(t, _)| *t);
        [self.coap.poll_timeout(), reg, queue, sleep]
            .into_iter()
            .flatten()
            .min()
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit<P>> {
        self.coap.poll_transmit()
    }

    /// The next write for the store.
    pub fn poll_store(&mut self) -> Option<StoreOp> {
        self.store_ops.pop_front()
    }

    /// The next device event.
    pub fn poll_event(&mut self) -> Option<DeviceEvent> {
        self.events.pop_front()
    }

    /// Routes what the CoAP endpoint produced.
    fn process(&mut self, now: Instant) {
        while let Some(ev) = self.coap.poll_event() {
            match ev {
                Event::Request(req) => self.on_request(now, req),
                Event::Response { id, response, .. } => self.on_response(now, id, Ok(response)),
                Event::Failed { id, error, .. } => self.on_response(now, id, Err(error)),
                Event::Notification {
                    id, response, seq, ..
                } => self.on_notification(now, id, response, seq),
                // The server pings nobody and serves no observers.
                Event::Pong { .. } | Event::ObserverGone { .. } => {}
            }
        }
    }

    /// A request from a device: the Registration interface (`/rd`), Send (`/dp`), or a
    /// firmware package.
    fn on_request(&mut self, now: Instant, req: IncomingRequest<P>) {
        let req = if self.parking.is_some() {
            let segments = uri_path(&req.request);
            let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
            match self.park(now, req, &segs) {
                Some(req) => req,
                None => return,
            }
        } else {
            req
        };
        self.serve(now, req);
    }

    /// Serves a request from a device.
    fn serve(&mut self, now: Instant, req: IncomingRequest<P>) {
        let segments = uri_path(&req.request);
        let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
        let method = req.request.header.code;
        let post = MessageClass::Request(RequestType::Post);
        let delete = MessageClass::Request(RequestType::Delete);
        let seen =
            |r: Result<(lwm2m::coap::Packet, String), Lwm2mError>| r.map(|(p, e)| (p, Some(e)));
        let result = match segs.as_slice() {
            ["rd"] if method == post => seen(self.register(now, req.peer, &req.request)),
            ["rd", id] if method == post => seen(self.update(now, req.peer, id, &req.request)),
            ["rd", id] if method == delete => seen(self.deregister(now, req.peer, id)),
            ["dp"] if method == post => seen(self.on_send(now, req.peer, &req.request)),
            ["rd"] | ["rd", _] | ["dp"] => Err(Lwm2mError::MethodNotAllowed),
            [fw, id] if self.is_firmware_path(fw) => {
                self.serve_firmware(&req.peer, method, id, req.block2)
            }
            _ => Err(Lwm2mError::NotFound),
        };
        let (response, heard) = match result {
            Ok((response, endpoint)) => (response, endpoint),
            Err(e) => {
                tracing::debug!(peer = %req.peer, error = %e, "registration interface request refused");
                (e.to_response(), None)
            }
        };
        if let Err(e) = self.coap.respond(now, req.id, response) {
            tracing::warn!(peer = %req.peer, error = %e, "could not answer");
        }
        // After the answer, so a queue-mode device gets its 2.01/2.04 before queued requests.
        if let Some(endpoint) = heard {
            self.heard_from(now, &endpoint);
        }
    }

    /// A device was heard from: a queue-mode device is awake now, so its queue can drain.
    fn heard_from(&mut self, now: Instant, endpoint: &str) {
        let window = self.config.awake_window;
        let Some(dev) = self.devices.get_mut(endpoint) else {
            return;
        };
        if dev.reg.queue_mode {
            let was_asleep = dev.awake_until.is_none_or(|t| t <= now);
            let until = lwm2m::time::deadline(now, window);
            let mut missed_sleep = false;
            if let Some(before) = dev.awake_until.replace(until) {
                // Its window passed but no timeout ran since: it did sleep meanwhile.
                missed_sleep = self.sleep_at.remove(&(before, endpoint.to_string())) && was_asleep;
            }
            self.sleep_at.insert((until, endpoint.to_string()));
            if missed_sleep {
                self.events.push_back(DeviceEvent::Sleeping {
                    endpoint: endpoint.to_string(),
                });
            }
            if was_asleep {
                self.events.push_back(DeviceEvent::Awake {
                    endpoint: endpoint.to_string(),
                });
            }
            self.drain_queue(now, endpoint);
        }
    }

    /// Loads the state a previous run stored (registrations, observations, queued commands,
    /// each as the values of its table in key order). Registrations whose lifetime passed
    /// while the server was down expire at once; the others keep counting from their last
    /// update. Records this version cannot read, or whose values are out of range, are
    /// skipped, counted and logged (see [`restore_entries`](Self::restore_entries), which
    /// also checks and deletes them by their keys).
    pub fn restore(
        &mut self,
        now: Instant,
        registrations: Vec<Vec<u8>>,
        observations: Vec<Vec<u8>>,
        queued: Vec<Vec<u8>>,
    ) -> RestoreReport {
        let keyless = |values: Vec<Vec<u8>>| values.into_iter().map(|v| (None, v)).collect();
        self.restore_records(
            now,
            keyless(registrations),
            keyless(observations),
            keyless(queued),
        )
    }

    fn next_command_id(&mut self) -> CommandId {
        self.next_command = next_id(self.next_command, self.config.id_node);
        CommandId(self.next_command)
    }

    /// Whether `id` was handed out by this core's node (its low byte), so that counting on
    /// from it after a restart keeps ids unique.
    fn own_id(&self, id: u64) -> bool {
        id & 0xff == u64::from(self.config.id_node)
    }
}

/// A request's path segments.
fn uri_path(request: &lwm2m::coap::Packet) -> Vec<String> {
    request
        .get_option(CoapOption::UriPath)
        .into_iter()
        .flatten()
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

/// How far apart the ids one core hands out are: the low byte is its node's.
pub const ID_STEP: u64 = 256;

/// The id after `last`, with `node` as its low byte.
fn next_id(last: u64, node: u8) -> u64 {
    (((last >> 8) + 1) << 8) | u64::from(node)
}
