//! The LwM2M client role, sans-IO (OMA LwM2M TS 1.2 Core §6: the client side of
//! Registration §6.2, Device Management §6.3 and Information Reporting §6.4; Transport §6.5
//! queue mode).
//!
//! A [`Client`] is one device talking to one LwM2M server through one CoAP
//! [`Endpoint`]. It holds the device's [`ObjectStore`], registers and keeps the
//! registration alive, answers the server's requests with content negotiation, notifies
//! observations by their attributes, sends Send, and sleeps and wakes in queue mode. Like the
//! endpoint it never touches a socket, a clock or the operating system's randomness: time
//! comes in as `now`, datagrams come in and go out through the caller. That is what lets the
//! end-to-end tests and the device simulator run thousands of clients in one process over
//! virtual time.
//!
//! # Layout
//! One module per LwM2M interface, and the state they share:
//! - `registration`: the Client Registration interface (Core §6.2): Register, Update,
//!   De-register, retries.
//! - `dm`: the Device Management and Service Enablement interface (Core §6.3) as the server
//!   reaches it: requests decoded, dispatched and answered, with content negotiation; an
//!   Observe arrives here too and is handed to `reporting`.
//! - `reporting`: the Information Reporting interface (Core §6.4): observations and when
//!   they notify (pmin/pmax/gt/lt/st); Send is [`Client::send`] in this file.
//! - `queue`: queue mode's awake and sleep cycle (Transport §6.5).
//! - `objects`: [`ObjectStore`], the object tree and its attributes (Core §7.1);
//!   `access`: the DM operations on it with their permission checks (Core §6.3).
//! - `config`: [`ClientConfig`], [`ClientEvent`], [`ClientError`], [`StoreError`].
//! - `bootstrap`: [`Bootstrapper`], the device side of the Bootstrap interface (Core §6.1):
//!   a separate state machine that fills the store before a `Client` is built from it;
//!   `accounts`: the server accounts the store holds, typed ([`ServerAccount`]).
//!   A registered client reports an Execute of the Bootstrap-Request Trigger (`/1/x/9`) as
//!   [`ClientEvent::BootstrapRequested`], and the driver bootstraps again.
//!
//! - `firmware`: Firmware Update (Object 5, Core Appendix E.6) when the store has `/5/0`:
//!   push, pull over the server connection, the update and the new registration after it.
//!
//! Other objects' Execute and Write reach the application as events.
mod access;
mod accounts;
mod bootstrap;
mod config;
mod dm;
mod firmware;
mod objects;
mod queue;
mod registration;
mod reporting;

pub use accounts::{
    security_instance, BootstrapAccount, SecurityMode, ServerAccount, ServerUri, UriError,
};
pub use bootstrap::{
    BootstrapError, BootstrapEvent, BootstrapStats, Bootstrapper, BootstrapperConfig,
};
pub use config::{ClientConfig, ClientError, ClientEvent, SendId, StoreError};
pub use firmware::{firmware_instance, firmware_package, package_etag, PACKAGE_MAGIC};
pub use objects::{
    bundled_registry, ObjectStore, MAX_ATTRIBUTE_PATHS, MAX_INSTANCES_PER_OBJECT,
    MAX_RESOURCES_PER_INSTANCE, MAX_RESOURCE_INSTANCES,
};

use crate::coap::Usage;
use crate::coap::{Endpoint, Event, ExchangeError, Peer, RequestId, Transmit};
use crate::model::{Instance, Path, Value};
use std::collections::VecDeque;
use std::time::Instant;

use queue::Radio;
use registration::Registration;
use reporting::Observation;

/// One LwM2M client (device) and its connection to one LwM2M server at address `P`.
///
/// It never does I/O and never reads the clock. The driver (a socket loop, a test network,
/// the simulator) feeds it and drains it:
///
/// - **Inputs**: [`handle_datagram`](Self::handle_datagram) for each datagram from the
///   server, [`handle_timeout`](Self::handle_timeout) when the deadline from
///   [`poll_timeout`](Self::poll_timeout) passes (calling it early or often is harmless).
/// - **Commands**: [`start`](Self::start), [`deregister`](Self::deregister),
///   [`update`](Self::update), [`set_value`](Self::set_value),
///   [`add_instance`](Self::add_instance), [`remove_instance`](Self::remove_instance),
///   [`send`](Self::send), [`send_paths`](Self::send_paths), [`wake`](Self::wake).
/// - **Outputs**, after any input or command, in this order: drain
///   [`poll_transmit`](Self::poll_transmit) and send each datagram to its peer, drain
///   [`poll_event`](Self::poll_event), then re-arm the timer from
///   [`poll_timeout`](Self::poll_timeout).
/// - **Getters**: [`store`](Self::store), [`location`](Self::location),
///   [`is_registered`](Self::is_registered), [`is_awake`](Self::is_awake),
///   [`usage`](Self::usage), [`stats`](Self::stats).
///
/// Every queue it holds is bounded by [`ClientConfig`] and the endpoint's config.
pub struct Client<P: Peer> {
    config: ClientConfig,
    /// The LwM2M server; datagrams from anyone else are dropped.
    server: P,
    endpoint: Endpoint<P>,
    store: ObjectStore,
    reg: Registration,
    /// Observations served; at most `max_observations` (the endpoint enforces it).
    observations: Vec<Observation>,
    /// Send requests awaiting their answer.
    sends: Vec<(RequestId, SendId)>,
    next_send: u64,
    radio: Radio,
    /// Firmware Update (Object 5) downloads and updates.
    fw: firmware::Firmware,
    events: VecDeque<ClientEvent>,
    /// State of the jitter generator (SplitMix64): 8 bytes instead of a full RNG per device.
    rng: u64,
    stats: ClientStats,
}

/// Counters, for metrics and tests. They only grow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Requests from the server answered.
    pub requests: u64,
    /// Notifications sent (the first answer to an Observe not counted).
    pub notifications: u64,
    /// Datagrams dropped because the client was asleep.
    pub dropped_asleep: u64,
    /// Datagrams dropped because they came from another peer than the server.
    pub dropped_foreign: u64,
    /// Events dropped because nobody polled them.
    pub dropped_events: u64,
}

/// How much state the client holds now, to check the bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientUsage {
    /// Observations served.
    pub observations: usize,
    /// Send operations awaiting an answer.
    pub pending_sends: usize,
    /// Events not yet polled.
    pub events: usize,
    /// Paths with notification attributes.
    pub attribute_paths: usize,
    /// The CoAP endpoint's state.
    pub endpoint: Usage,
}

impl<P: Peer> Client<P> {
    /// A client for the server at `server`, with the objects of `store`. The configured
    /// lifetime and binding are written into the store's Server object instance for
    /// `short_server_id` (if it has one), which holds them from then on.
    pub fn new(mut config: ClientConfig, server: P, mut store: ObjectStore) -> Self {
        config.coap.rng_seed = config.rng_seed;
        config.coap.max_observers = config.max_observations;
        if let Some(i) = store.server_instance(config.short_server_id) {
            let _ = store.set_value(
                &Path::resource(1, i, 1),
                Value::Integer(i64::from(config.lifetime)),
            );
            let _ = store.set_value(
                &Path::resource(1, i, 7),
                Value::String(config.binding.to_string()),
            );
        }
        if store.instance(firmware::OBJECT, 0).is_some() {
            // A pushed package arrives as one Block1 body: let the endpoint take it whole.
            let limit = config.firmware_max_package;
            config.coap.max_body_size = config.coap.max_body_size.max(limit);
            config.coap.max_block1_bytes = config.coap.max_block1_bytes.max(limit);
            let _ = store.add_executable(Path::resource(firmware::OBJECT, 0, 10));
        }
        Self {
            endpoint: Endpoint::new(config.coap.clone()),
            rng: config.rng_seed ^ 0x9e37_79b9_7f4a_7c15,
            config,
            server,
            store,
            reg: Registration::new(),
            observations: Vec::new(),
            sends: Vec::new(),
            next_send: 0,
            radio: Radio::default(),
            fw: firmware::Firmware::default(),
            events: VecDeque::new(),
            stats: ClientStats::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The object tree. Change it through the client's commands so that notifications and
    /// registration updates follow.
    pub fn store(&self) -> &ObjectStore {
        &self.store
    }

    /// The server's address.
    pub fn server(&self) -> P {
        self.server
    }

    /// Counters since creation.
    pub fn stats(&self) -> ClientStats {
        self.stats
    }

    /// How much state is held now.
    pub fn usage(&self) -> ClientUsage {
        ClientUsage {
            observations: self.observations.len(),
            pending_sends: self.sends.len(),
            events: self.events.len(),
            attribute_paths: self.store.attributes.len(),
            endpoint: self.endpoint.usage(),
        }
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit<P>> {
        self.endpoint.poll_transmit()
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.endpoint.poll_timeout(),
            self.reg.timer,
            self.notifier_deadline(),
            self.radio_deadline(),
            self.fw.deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Processes one datagram. Dropped when it does not come from the server, or when the
    /// client is asleep in queue mode (the radio is off).
    pub fn handle_datagram(&mut self, now: Instant, peer: P, data: &[u8]) {
        if peer != self.server {
            self.stats.dropped_foreign += 1;
            return;
        }
        if self.radio.asleep {
            self.stats.dropped_asleep += 1;
            return;
        }
        self.touch_radio(now);
        self.firmware_screen(now, data);
        self.endpoint.handle_datagram(now, peer, data);
        self.drive(now);
    }

    /// Runs everything due at `now`: CoAP retransmissions, registration updates and retries,
    /// pmin/pmax notifications, and going to sleep in queue mode.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.endpoint.handle_timeout(now);
        self.drive(now);
        self.on_registration_timer(now);
        self.on_notifier_timer(now);
        self.on_firmware_timer(now);
        self.drive(now);
        self.on_radio_timer(now);
    }

    /// Sets a resource value, as a sensor reading or the application does, and notifies
    /// the observations it concerns. Returns whether the value changed.
    pub fn set_value(
        &mut self,
        now: Instant,
        path: &Path,
        value: Value,
    ) -> Result<bool, ClientError> {
        let changed = self.store.set_value(path, value)?;
        if changed {
            if path.object_id() == Some(1) {
                self.refresh_attributes();
                self.server_params_changed(now);
            }
            self.values_changed(now, &[*path]);
            self.drive(now);
        }
        Ok(changed)
    }

    /// Adds an object instance; a registered client tells the server with an Update.
    pub fn add_instance(
        &mut self,
        now: Instant,
        object: u16,
        instance: u16,
        values: Instance,
    ) -> Result<(), ClientError> {
        self.store.add_instance(object, instance, values)?;
        self.links_changed(now);
        self.values_changed(now, &[Path::instance(object, instance)]);
        self.drive(now);
        Ok(())
    }

    /// Removes an object instance; observations of it end with 4.04 and a registered client
    /// tells the server with an Update.
    pub fn remove_instance(
        &mut self,
        now: Instant,
        object: u16,
        instance: u16,
    ) -> Result<Instance, ClientError> {
        let removed = self.store.remove_instance(object, instance)?;
        self.links_changed(now);
        self.values_changed(now, &[Path::instance(object, instance)]);
        self.drive(now);
        Ok(removed)
    }

    fn push_event(&mut self, event: ClientEvent) {
        if self.events.len() >= self.config.max_events.max(1) {
            self.events.pop_front();
            self.stats.dropped_events += 1;
            tracing::warn!(endpoint = %self.config.endpoint, "event queue full; oldest event dropped");
        }
        self.events.push_back(event);
    }

    /// A number in [0, 1) from the jitter generator (SplitMix64).
    fn random_unit(&mut self) -> f64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Handles everything the endpoint reported, then restarts the awake time if anything
    /// is about to go out.
    fn drive(&mut self, now: Instant) {
        while let Some(ev) = self.endpoint.poll_event() {
            match ev {
                Event::Request(req) => {
                    self.stats.requests += 1;
                    self.on_request(now, req);
                }
                Event::Response { id, response, .. } => self.on_answer(now, id, Ok(&response)),
                Event::Failed { id, error, .. } => self.on_answer(now, id, Err(error)),
                Event::ObserverGone { observer, .. } => self.drop_observation(observer),
                Event::Notification { .. } | Event::Pong { .. } => {}
            }
        }
        if self.endpoint.usage().transmits > 0 {
            if self.radio.asleep {
                // Only commands produce traffic and they wake the client first; this is a
                // safety net so that nothing goes out while the radio is off.
                self.ensure_awake(now, false);
            }
            self.touch_radio(now);
        }
    }

    fn on_answer(
        &mut self,
        now: Instant,
        id: RequestId,
        answer: Result<&crate::coap::Packet, ExchangeError>,
    ) {
        if self.on_registration_answer(now, id, answer) || self.on_firmware_answer(now, id, answer)
        {
            return;
        }
        self.on_send_answer(id, answer);
    }
}

#[cfg(test)]
mod tests;
