//! The bootstrap core as a role of the secure stack ([`Role`]): datagrams and peers in, its
//! events out, each started or failed bootstrap counted and audited as it leaves. Finishing
//! and finished ones are left to the driver, which installs the device's new credential
//! before Finish leaves and reports the outcome after (a credential that could not be
//! installed is a failed bootstrap).
use crate::core::persist::StoreOp;
use crate::core::types::{BootstrapStage, DeviceEvent, Link};
use crate::metrics::Metrics;
use crate::provisioning::audit::AuditKind;
use crate::stack::{AuditNote, Role};
use lwm2m::coap::Transmit;
use lwm2m_bootstrap::{BootstrapCore, Event};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// The bootstrap core over the stack's peers.
pub type BootstrapRole = BootstrapCore<Link>;

impl Role for BootstrapRole {
    type Event = Event<Link>;
    const SAVES_SESSIONS: bool = false;

    fn sessions_gauge(metrics: &Metrics, sessions: usize) {
        metrics.set_bootstrap_dtls_sessions(sessions);
    }

    fn handle_datagram(&mut self, now: Instant, peer: Link, data: &[u8]) {
        BootstrapCore::handle_datagram(self, now, peer, data);
    }

    fn handle_timeout(&mut self, now: Instant) {
        BootstrapCore::handle_timeout(self, now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        BootstrapCore::poll_timeout(self)
    }

    fn poll_transmit(&mut self) -> Option<Transmit<Link>> {
        BootstrapCore::poll_transmit(self)
    }

    fn poll_store(&mut self) -> Option<StoreOp> {
        // Nothing of a sequence is durable: a device that was not finished asks again.
        None
    }

    fn poll_event(&mut self) -> Option<Event<Link>> {
        BootstrapCore::poll_event(self)
    }

    fn peer_authenticated(&mut self, peer: Link, principal: Arc<str>, _addr: SocketAddr) {
        BootstrapCore::peer_authenticated(self, peer, principal);
    }

    fn peer_moved(&mut self, _peer: Link, _addr: SocketAddr) {
        // The core knows peers by their session, which a move keeps.
    }

    fn peer_closed(&mut self, peer: Link) {
        BootstrapCore::peer_closed(self, peer);
    }

    fn revoke(&mut self, now: Instant, endpoint: &str) {
        BootstrapCore::revoke(self, now, endpoint);
    }

    fn observe(&self, event: &Event<Link>, metrics: &Metrics) -> Option<AuditNote> {
        if matches!(event, Event::Finishing { .. } | Event::Finished { .. }) {
            return None;
        }
        let device = event_of(event)?;
        metrics.on_event(&device);
        audit_note(&device)
    }
}

/// The device event of a bootstrap event, as the sinks see it; for a finished one, once its
/// credential is installed (`identity` is what identifies the credential, never a key).
pub fn event_of(event: &Event<Link>) -> Option<DeviceEvent> {
    let (endpoint, peer, stage) = match event {
        Event::Started { endpoint, peer } => (endpoint, peer, BootstrapStage::Started),
        Event::Failed {
            endpoint,
            peer,
            step,
            failure,
        } => (
            endpoint,
            peer,
            BootstrapStage::Failed {
                step: step.to_string(),
                reason: failure.to_string(),
            },
        ),
        Event::Finishing { .. } | Event::Finished { .. } => return None,
    };
    Some(DeviceEvent::Bootstrap {
        endpoint: endpoint.clone(),
        peer: peer.to_string(),
        stage,
    })
}

/// What the audit log records of a bootstrap event.
pub fn audit_note(event: &DeviceEvent) -> Option<AuditNote> {
    let DeviceEvent::Bootstrap {
        endpoint,
        peer,
        stage,
    } = event
    else {
        return None;
    };
    let (kind, detail) = match stage {
        BootstrapStage::Started => (AuditKind::BootstrapStarted, String::new()),
        BootstrapStage::Finished {
            security, identity, ..
        } => (
            AuditKind::BootstrapFinished,
            match identity {
                Some(id) => format!("{security} {id}"),
                None => security.to_string(),
            },
        ),
        BootstrapStage::Failed { step, reason } => {
            (AuditKind::BootstrapFailed, format!("{step}: {reason}"))
        }
    };
    Some(AuditNote {
        kind,
        endpoint: Some(endpoint.clone()),
        peer: Some(peer.clone()),
        detail,
    })
}
