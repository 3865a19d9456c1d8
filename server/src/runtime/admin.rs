//! Admin operations on a running server: the store part as the CLI applies it offline, then
//! what only the running server can do, through the stack — close the sessions of a revoked
//! or rotated credential, end the revoked device's registration. `bootstrap-*` operations
//! change the bootstrap server's credential index instead of the devices'. Each reply waits
//! for its change to be committed.
use super::Shell;
use crate::provisioning::admin::{self, AdminOp, AdminReply, AdminRequest};
use crate::provisioning::credentials::CredentialSet;
use std::time::Instant;

impl Shell {
    /// Applies `req` and answers it once the store has committed what it changed. The audit
    /// log is read after the writes queued so far are committed, so it includes what just
    /// happened. Neither wait holds up the server task.
    pub(super) fn admin(&mut self, now: Instant, req: AdminRequest) {
        let (reply, audit_limit) = match req.op {
            AdminOp::Audit { limit } => (AdminReply::ok(), Some(limit)),
            op => (self.apply(now, op), None),
        };
        // The side effects (closed sessions' deletes, audit entries, the core's writes) reach
        // the store before the commit the reply waits for.
        self.drain(now);
        let store = self.store.clone();
        match self.store.committed() {
            Ok(committed) => {
                tokio::spawn(async move {
                    let reply = match (committed.await, audit_limit) {
                        (Err(e), _) => AdminReply::error(format!("store: {e}")),
                        (Ok(()), None) => reply,
                        (Ok(()), Some(n)) => {
                            match crate::provisioning::audit::recent(
                                &store,
                                n.min(admin::MAX_AUDIT_LIMIT),
                            ) {
                                Ok(events) => AdminReply {
                                    events: Some(events),
                                    ..AdminReply::ok()
                                },
                                Err(e) => AdminReply::error(format!("store: {e}")),
                            }
                        }
                    };
                    let _ = req.reply.send(reply);
                });
            }
            Err(e) => {
                let _ = req.reply.send(AdminReply::error(format!("store: {e}")));
            }
        }
    }

    /// The store part, then the stack's side effects for the endpoints whose credential
    /// changed.
    fn apply(&mut self, now: Instant, op: AdminOp) -> AdminReply {
        if op.credential_set() == Some(CredentialSet::Bootstrap) {
            return self.apply_bootstrap(op);
        }
        let Ok(mut creds) = self.creds.0.write() else {
            return AdminReply::error("credential index unavailable");
        };
        let revoked = match &op {
            AdminOp::DeviceRevoke { endpoint } => Some(endpoint.clone()),
            _ => None,
        };
        let (reply, changed) = match op {
            AdminOp::DeviceImport { credentials, check } => {
                admin::apply_import(&self.store, &self.secrets, &mut creds, credentials, check)
            }
            op => {
                let endpoint = match &op {
                    AdminOp::DeviceRevoke { endpoint } => Some(endpoint.clone()),
                    AdminOp::DeviceAdd { credential } => Some(credential.endpoint.clone()),
                    _ => None,
                };
                let reply = admin::apply_offline(&self.store, &self.secrets, &mut creds, op);
                // A new credential closes sessions only if it replaced one (rotation).
                let changed = match endpoint {
                    Some(_) if revoked.is_none() && reply.replaced.is_none() => Vec::new(),
                    Some(e) => vec![e],
                    None => Vec::new(),
                };
                (reply, changed)
            }
        };
        drop(creds);
        if reply.ok && !changed.is_empty() {
            self.stack
                .credentials_changed(now, &changed, revoked.as_deref());
        }
        reply
    }

    /// A `bootstrap-*` operation: the store part, on the bootstrap server's index, whose
    /// handshakes read the change at once.
    fn apply_bootstrap(&mut self, op: AdminOp) -> AdminReply {
        let Ok(mut creds) = self.bootstrap_creds.0.write() else {
            return AdminReply::error("bootstrap credential index unavailable");
        };
        admin::apply_offline(&self.store, &self.secrets, &mut creds, op)
    }
}
