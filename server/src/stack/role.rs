//! What the stack needs from the role core behind it: the LwM2M server's [`ServerCore`]
//! today, a bootstrap server's core next. A trait rather than the concrete type, so that the
//! DTLS glue, the hold and the session saves serve either role unchanged; a generic
//! parameter rather than a trait object, so the datagram path stays statically dispatched
//! and the role's own commands (submit, cancel, registrations) stay reachable through
//! [`Stack::core_mut`](super::Stack::core_mut) with their real types.
use super::AuditNote;
use crate::core::persist::StoreOp;
use crate::core::types::{DeviceEvent, Link};
use crate::core::ServerCore;
use crate::metrics::Metrics;
use crate::provisioning::audit::AuditKind;
use lwm2m::coap::Transmit;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// A sans-IO role core over [`Link`] peers, as the stack drives it.
pub trait Role {
    /// What the core reports to the rest of the server.
    type Event;
    /// Whether the role's DTLS sessions are saved to the store, so that devices continue
    /// after a restart without a new handshake. The LwM2M server's are; a bootstrap
    /// session lasts one sequence, not worth a store write each.
    const SAVES_SESSIONS: bool = true;
    /// Sets the gauge of the role's established DTLS sessions.
    fn sessions_gauge(metrics: &Metrics, sessions: usize) {
        metrics.set_dtls_sessions(sessions);
    }
    /// One datagram (decrypted, for a DTLS peer) from `peer`.
    fn handle_datagram(&mut self, now: Instant, peer: Link, data: &[u8]);
    /// The deadline from [`poll_timeout`](Self::poll_timeout) passed (early calls are fine).
    fn handle_timeout(&mut self, now: Instant);
    /// When [`handle_timeout`](Self::handle_timeout) should next run.
    fn poll_timeout(&self) -> Option<Instant>;
    /// The next datagram to send.
    fn poll_transmit(&mut self) -> Option<Transmit<Link>>;
    /// The next write for the durable store.
    fn poll_store(&mut self) -> Option<StoreOp>;
    /// The next event.
    fn poll_event(&mut self) -> Option<Self::Event>;
    /// `peer` completed a DTLS handshake with a credential bound to `principal`.
    fn peer_authenticated(&mut self, peer: Link, principal: Arc<str>, addr: SocketAddr);
    /// An authenticated peer moved to `addr` (DTLS Connection ID, RFC 9146).
    fn peer_moved(&mut self, peer: Link, addr: SocketAddr);
    /// An authenticated peer's session ended.
    fn peer_closed(&mut self, peer: Link);
    /// `endpoint`'s credential was revoked: whatever the core holds for it ends now.
    fn revoke(&mut self, now: Instant, endpoint: &str);
    /// Counts `event` in `metrics` (and sets the gauges the core knows) just before the event
    /// is handed out, and says what the audit log records of it, if anything.
    fn observe(&self, event: &Self::Event, metrics: &Metrics) -> Option<AuditNote>;
    /// The peer whose Register or Update `event` reports accepted, so the stack can time
    /// its answer; `None` for any other event, and for a role without registrations.
    fn registration_peer(&self, _event: &Self::Event) -> Option<Link> {
        None
    }
}

impl Role for ServerCore<Link> {
    type Event = DeviceEvent;

    fn handle_datagram(&mut self, now: Instant, peer: Link, data: &[u8]) {
        ServerCore::handle_datagram(self, now, peer, data);
    }

    fn handle_timeout(&mut self, now: Instant) {
        ServerCore::handle_timeout(self, now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        ServerCore::poll_timeout(self)
    }

    fn poll_transmit(&mut self) -> Option<Transmit<Link>> {
        ServerCore::poll_transmit(self)
    }

    fn poll_store(&mut self) -> Option<StoreOp> {
        ServerCore::poll_store(self)
    }

    fn poll_event(&mut self) -> Option<DeviceEvent> {
        ServerCore::poll_event(self)
    }

    fn peer_authenticated(&mut self, peer: Link, principal: Arc<str>, addr: SocketAddr) {
        ServerCore::peer_authenticated(self, peer, principal, addr);
    }

    fn peer_moved(&mut self, peer: Link, addr: SocketAddr) {
        ServerCore::peer_moved(self, peer, addr);
    }

    fn peer_closed(&mut self, peer: Link) {
        ServerCore::peer_closed(self, peer);
    }

    fn revoke(&mut self, now: Instant, endpoint: &str) {
        ServerCore::revoke(self, now, endpoint);
    }

    fn registration_peer(&self, event: &DeviceEvent) -> Option<Link> {
        match event {
            DeviceEvent::Registered { registration, .. }
            | DeviceEvent::Updated { registration } => {
                self.peer_of(&registration.endpoint).copied()
            }
            _ => None,
        }
    }

    fn observe(&self, event: &DeviceEvent, metrics: &Metrics) -> Option<AuditNote> {
        // Before the event leaves: whoever sees an event sees a gauge at least as new.
        metrics.set_registered_clients(self.device_count());
        metrics.on_event(event);
        let DeviceEvent::AuthFailed {
            endpoint,
            peer,
            principal,
            reason,
        } = event
        else {
            return None;
        };
        let (kind, detail) = match principal {
            Some(p) => (
                AuditKind::EndpointMismatch,
                format!("{reason} (credential of {p})"),
            ),
            None => (AuditKind::NoSecRefused, reason.to_string()),
        };
        Some(AuditNote {
            kind,
            endpoint: Some(endpoint.clone()),
            peer: Some(peer.clone()),
            detail,
        })
    }
}
