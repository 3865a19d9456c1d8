//! SKELETON: the public surface of the bootstrap core, to be implemented (see the crate doc).
use crate::account::Accounts;
use crate::event::Event;
use lwm2m::coap::{EndpointConfig, Peer, Transmit};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The bootstrap core's settings.
#[derive(Debug, Clone)]
pub struct BootstrapConfig {
    /// The CoAP endpoint's (retransmission, limits).
    pub coap: EndpointConfig,
    /// Sequences in progress at once; a Bootstrap-Request beyond it is answered 5.03.
    pub max_sequences: usize,
    /// How long one sequence may take from Bootstrap-Request to Finish.
    pub sequence_timeout: Duration,
    /// Answer Bootstrap-Pack-Request (1.2).
    pub serve_pack: bool,
}

impl Default for BootstrapConfig {
    fn default() -> Self {
        Self {
            coap: EndpointConfig::default(),
            max_sequences: 10_000,
            sequence_timeout: Duration::from_secs(300),
            serve_pack: true,
        }
    }
}

/// How much state the core holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BootstrapUsage {
    /// Sequences in progress.
    pub sequences: usize,
    /// Authenticated peers known.
    pub peers: usize,
}

/// The bootstrap server's core over peers of type `P`.
pub struct BootstrapCore<P: Peer> {
    config: BootstrapConfig,
    accounts: Box<dyn Accounts + Send>,
    events: VecDeque<Event<P>>,
    transmits: VecDeque<Transmit<P>>,
    principals: std::collections::HashMap<P, Arc<str>>,
}

impl<P: Peer> BootstrapCore<P> {
    /// A core that asks `accounts` what each device gets.
    pub fn new(config: BootstrapConfig, accounts: Box<dyn Accounts + Send>) -> Self {
        Self {
            config,
            accounts,
            events: VecDeque::new(),
            transmits: VecDeque::new(),
            principals: Default::default(),
        }
    }

    /// One datagram (decrypted, for a DTLS peer) from `peer`.
    pub fn handle_datagram(&mut self, now: Instant, peer: P, data: &[u8]) {
        let _ = (now, peer, data, &self.config, &mut self.accounts);
    }

    /// The deadline from [`poll_timeout`](Self::poll_timeout) passed (early calls are fine).
    pub fn handle_timeout(&mut self, now: Instant) {
        let _ = now;
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit<P>> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event<P>> {
        self.events.pop_front()
    }

    /// `peer` completed a DTLS handshake with a credential bound to `principal` (an
    /// endpoint name): only that endpoint may bootstrap through it.
    pub fn peer_authenticated(&mut self, peer: P, principal: Arc<str>) {
        self.principals.insert(peer, principal);
    }

    /// `peer`'s session ended: its sequence, if any, fails ([`Failure::Gone`](crate::Failure)).
    pub fn peer_closed(&mut self, peer: P) {
        self.principals.remove(&peer);
    }

    /// `endpoint`'s bootstrap credential was revoked: its sequence, if any, ends now.
    pub fn revoke(&mut self, now: Instant, endpoint: &str) {
        let _ = (now, endpoint);
    }

    /// The state held now.
    pub fn usage(&self) -> BootstrapUsage {
        BootstrapUsage {
            sequences: 0,
            peers: self.principals.len(),
        }
    }
}
