//! CoAP over DTLS for a client (RFC 7252 §9; OMA LwM2M TS 1.2 Transport §5.2): one
//! [`dtls::client::Client`] between a CoAP or LwM2M client and its server, sans-IO like both.
//!
//! The CoAP layer hands its datagrams to [`SecureLink::send`] whether or not the handshake
//! has finished: until it has, they wait in a small bounded queue, so a device's Register
//! leaves the moment the session is up instead of after a CoAP retransmission timeout. When
//! the server ends the session (revocation, restart without saved sessions) or a handshake
//! fails, the link handshakes again after a pause, resuming the session if it can.
use dtls::client::{Client, ClientEvent, Resumption};
use dtls::ClientConfig;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// CoAP datagrams held while the handshake runs; older ones are dropped first (CoAP
/// retransmits what matters).
const PENDING: usize = 16;
/// Pause before a new handshake after a failure or a close.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// What the link reports besides data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// A session is up.
    Connected {
        /// By an abbreviated handshake (session resumption).
        resumed: bool,
    },
    /// The session ended or a handshake failed; the link retries after a pause.
    Down {
        /// What happened.
        reason: String,
    },
}

/// A DTLS client session that reconnects by itself.
pub struct SecureLink {
    config: Arc<ClientConfig>,
    client: Client,
    seed: u64,
    pending: VecDeque<Vec<u8>>,
    retry_at: Option<Instant>,
    events: VecDeque<LinkEvent>,
    handshakes: u64,
}

impl std::fmt::Debug for SecureLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecureLink")
            .field("established", &self.client.is_established())
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

fn seed_bytes(seed: u64, n: u64) -> [u8; 32] {
    let mut s = [0u8; 32];
    s[..8].copy_from_slice(&seed.to_le_bytes());
    s[8..16].copy_from_slice(&n.to_le_bytes());
    s
}

impl SecureLink {
    /// Starts the first handshake. `seed` feeds the session's randomness (the shell seeds it
    /// from the operating system); `resume` offers a saved session.
    pub fn connect(
        config: Arc<ClientConfig>,
        now: Instant,
        seed: u64,
        resume: Option<Resumption>,
    ) -> Self {
        let client = Client::connect(config.clone(), now, seed_bytes(seed, 0), resume);
        Self {
            config,
            client,
            seed,
            pending: VecDeque::new(),
            retry_at: None,
            events: VecDeque::new(),
            handshakes: 1,
        }
    }

    /// Whether a session is up.
    pub fn is_established(&self) -> bool {
        self.client.is_established()
    }

    /// Handshakes started so far (1 after `connect`).
    pub fn handshakes(&self) -> u64 {
        self.handshakes
    }

    /// The DTLS client (its session, its resumption state).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Sends a CoAP datagram now, or once the session is up.
    pub fn send(&mut self, datagram: Vec<u8>) {
        if self.client.is_established() {
            if self.client.send(&datagram).is_err() {
                self.down("sequence numbers exhausted".into());
            }
            return;
        }
        if self.pending.len() >= PENDING {
            self.pending.pop_front();
        }
        self.pending.push_back(datagram);
    }

    /// A datagram from the server; the CoAP datagrams it carried are appended to `out`.
    pub fn handle_datagram(&mut self, now: Instant, data: &[u8], out: &mut Vec<Vec<u8>>) {
        self.client.handle_datagram(now, data);
        self.drain(now, out);
    }

    /// Retransmits handshake flights and retries after failures.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.retry_at.is_some_and(|t| t <= now) {
            self.reconnect(now);
            return;
        }
        self.client.handle_timeout(now);
        let mut sink = Vec::new();
        self.drain(now, &mut sink);
    }

    /// Starts a new handshake now (resuming if possible), as after a reboot or a NAT
    /// rebinding without Connection ID.
    pub fn reconnect(&mut self, now: Instant) {
        self.retry_at = None;
        self.handshakes += 1;
        let resume = self.client.resumption().cloned();
        self.client = Client::connect(
            self.config.clone(),
            now,
            seed_bytes(self.seed, self.handshakes),
            resume,
        );
    }

    fn down(&mut self, reason: String) {
        self.events.push_back(LinkEvent::Down { reason });
    }

    fn drain(&mut self, now: Instant, out: &mut Vec<Vec<u8>>) {
        while let Some(ev) = self.client.poll_event() {
            match ev {
                ClientEvent::Data(d) => out.push(d),
                ClientEvent::Connected { resumed, .. } => {
                    self.events.push_back(LinkEvent::Connected { resumed });
                    while let Some(d) = self.pending.pop_front() {
                        let _ = self.client.send(&d);
                    }
                }
                ClientEvent::Closed(alert) => {
                    self.down(format!("server closed the session ({alert})"));
                    self.retry_at = Some(now + RETRY_AFTER);
                }
                ClientEvent::Failed(f) => {
                    self.down(format!("handshake failed: {f}"));
                    self.retry_at = Some(now + RETRY_AFTER);
                }
            }
        }
    }

    /// The next datagram for the server.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.client.poll_transmit()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<LinkEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.client.poll_timeout(), self.retry_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}
