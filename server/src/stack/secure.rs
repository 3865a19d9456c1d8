//! The DTLS engine in front of the role core (OMA LwM2M TS 1.2 Transport §5.2, RFC 6347,
//! RFC 9146): the engine's events become the core's peers (`peer_authenticated`,
//! `peer_moved`, `peer_closed`) and datagrams, session writes for the store, and audit notes
//! for refused handshakes; a credential change closes its endpoint's sessions.
use super::{sessions, AuditNote, Role, StackEvent};
use crate::core::types::Link;
use crate::metrics::Metrics;
use crate::provisioning::audit::AuditKind;
use crate::provisioning::secrets::SecretsKey;
use crate::provisioning::security::{Lookup, SharedCredentials};
use dtls::pki::Roots;
use dtls::{ConnId, ServerEvent};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// CoAP over DTLS: the engine and what it judges devices by.
pub struct Secure {
    /// The engine.
    pub server: dtls::Server,
    /// The credential index, shared with the admin channel that changes it and with the
    /// core's security policy.
    pub creds: SharedCredentials,
    /// CAs device certificates must chain to (empty: pinned certificates only).
    pub roots: Roots,
    /// Seals saved sessions (they hold session keys).
    pub secrets: Arc<SecretsKey>,
}

impl std::fmt::Debug for Secure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secure")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl Secure {
    /// One datagram for the engine, judged against the credential index.
    pub(crate) fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        // A poisoned lock means a panic elsewhere; the datagram is dropped like a lost one.
        let Ok(creds) = self.creds.0.read() else {
            return;
        };
        let lookup = Lookup {
            creds: &creds,
            roots: &self.roots,
        };
        self.server.handle_datagram(now, from, data, &lookup);
    }

    /// Hands the engine's events to the core, and queues the store writes and audit notes
    /// they cause. Returns whether any of them shows a peer authenticated: a record
    /// decrypted and verified (data, a session moved), or a handshake finished.
    pub(crate) fn events<C: Role>(
        &mut self,
        now: Instant,
        core: &mut C,
        metrics: &Metrics,
        out: &mut VecDeque<StackEvent<C::Event>>,
    ) -> bool {
        let mut authenticated = false;
        while let Some(ev) = self.server.poll_event() {
            authenticated |= matches!(
                ev,
                ServerEvent::Data { .. }
                    | ServerEvent::Migrated { .. }
                    | ServerEvent::Established { .. }
            );
            match ev {
                ServerEvent::Data { conn, data } => {
                    core.handle_datagram(now, Link::Dtls(conn), &data);
                }
                ServerEvent::Established {
                    conn,
                    peer,
                    principal,
                    suite,
                    resumed,
                } => {
                    tracing::debug!(endpoint = %principal, %peer, suite = suite.name(), resumed, "DTLS session established");
                    metrics.dtls_handshake(true);
                    core.peer_authenticated(Link::Dtls(conn), principal, peer);
                    if C::SAVES_SESSIONS {
                        out.extend(self.save(conn).map(StackEvent::Store));
                    }
                }
                ServerEvent::Migrated { conn, from, to } => {
                    tracing::debug!(peer = %to, %from, %conn, "DTLS session moved (Connection ID)");
                    core.peer_moved(Link::Dtls(conn), to);
                }
                ServerEvent::Closed {
                    conn,
                    principal,
                    reason,
                } => {
                    tracing::debug!(endpoint = %principal, %conn, ?reason, "DTLS session closed");
                    core.peer_closed(Link::Dtls(conn));
                    if C::SAVES_SESSIONS {
                        out.push_back(StackEvent::Store(sessions::delete(conn)));
                    }
                }
                ServerEvent::HandshakeFailed { peer, failure } => {
                    metrics.dtls_handshake_failed(failure.error.label());
                    // Timeouts and clients that give up are noise, not security events.
                    if failure.error.is_security_event() {
                        out.push_back(StackEvent::Audit(self.refused(peer, &failure)));
                    }
                }
            }
        }
        C::sessions_gauge(metrics, self.server.usage().sessions);
        authenticated
    }

    /// The audit note of a refused handshake. The identity a device presented names its
    /// endpoint if it is one of ours (a wrong key); the note says both.
    fn refused(&self, peer: SocketAddr, failure: &dtls::Failure) -> AuditNote {
        let endpoint = failure.identity.as_deref().and_then(|id| {
            let creds = self.creds.0.read().ok()?;
            let ep = creds.psk(id.as_bytes()).map(|(ep, _)| ep.to_string());
            ep.or_else(|| creds.get(id).map(|c| c.endpoint.clone()))
        });
        let who = match &failure.identity {
            Some(id) => format!(" for identity {id:?}"),
            None => String::new(),
        };
        AuditNote {
            kind: AuditKind::AuthFailed,
            endpoint,
            peer: Some(peer.to_string()),
            detail: format!(
                "DTLS handshake refused{who}: {} ({})",
                failure.error,
                failure.error.alert()
            ),
        }
    }

    /// The store write of one session.
    pub(crate) fn save(&self, conn: ConnId) -> Option<crate::core::persist::StoreOp> {
        sessions::save(&self.server, &self.secrets, conn)
    }

    /// Closes the DTLS sessions of `endpoints`; returns how many each had (those with any).
    /// One endpoint is looked up directly; many (an import's rotations) in a single pass over
    /// the sessions, not one pass each.
    pub(crate) fn close_sessions(&mut self, endpoints: &[String]) -> Vec<(String, usize)> {
        let server = &mut self.server;
        if let [endpoint] = endpoints {
            let n = server.close_principal(endpoint);
            return if n > 0 {
                vec![(endpoint.clone(), n)]
            } else {
                Vec::new()
            };
        }
        let wanted: HashSet<&str> = endpoints.iter().map(String::as_str).collect();
        let mut closed: HashMap<String, usize> = HashMap::new();
        for conn in server.conns() {
            let Some(principal) = server.principal(conn) else {
                continue;
            };
            if wanted.contains(&**principal) {
                *closed.entry(principal.to_string()).or_default() += 1;
                server.close(conn);
            }
        }
        closed.into_iter().collect()
    }
}
