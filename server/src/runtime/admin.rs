//! Admin operations on a running server: the store part as the CLI applies it offline, then
//! what only the running server can do, through the stack — close the sessions of a revoked
//! or rotated credential, end the revoked device's registration. `bootstrap-*` operations
//! change the bootstrap server's credential index instead of the devices'; `fw-*` operations
//! the firmware package store (OMA LwM2M TS 1.2 Core Appendix E.6). Each reply waits for its
//! change to be committed.
use super::Shell;
use crate::provisioning::admin::{self, AdminOp, AdminReply, AdminRequest, Refusal};
use crate::provisioning::audit::AuditKind;
use crate::provisioning::credentials::CredentialSet;
use crate::stack::AuditNote;
use std::time::Instant;

impl Shell {
    /// Applies `req` and answers it once the store has committed what it changed. The audit
    /// log is read after the writes queued so far are committed, so it includes what just
    /// happened. Neither wait holds up the server task.
    pub(super) fn admin(&mut self, now: Instant, req: AdminRequest) {
        if let AdminOp::FwAdd { .. } = &req.op {
            self.add_package(req);
            return;
        }
        if self.replication.is_some() && req.op.changes_credentials() {
            return self.append(req);
        }
        let (reply, audit_limit) = self.run(now, req.op);
        self.answer_admin(now, reply, audit_limit, req.reply);
    }

    /// Applies `op`; the reply, and how many audit entries it asks for.
    pub(super) fn run(&mut self, now: Instant, op: AdminOp) -> (AdminReply, Option<usize>) {
        match op {
            AdminOp::Audit { limit } => (AdminReply::ok(), Some(limit)),
            AdminOp::DeviceRotate { endpoint } => (self.rotate(now, &endpoint), None),
            op if op.is_package_op() => (self.apply_firmware(op), None),
            op if op.is_campaign_op() => (self.firmware_admin(now, op), None),
            op => (self.apply(now, op), None),
        }
    }

    /// Sends `reply` to `to` once what was changed so far is committed (with the
    /// `audit_limit` latest audit entries, if asked).
    pub(super) fn answer_admin(
        &mut self,
        now: Instant,
        reply: AdminReply,
        audit_limit: Option<usize>,
        to: tokio::sync::oneshot::Sender<AdminReply>,
    ) {
        // The side effects (closed sessions' deletes, audit entries, the core's writes) reach
        // the store before the commit the reply waits for.
        self.drain(now);
        let store = self.store.clone();
        match self.store.committed() {
            Ok(committed) => {
                tokio::spawn(async move {
                    let reply = match (committed.await, audit_limit) {
                        (Err(e), _) => {
                            AdminReply::refused(Refusal::Internal, format!("store: {e}"))
                        }
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
                                Err(e) => {
                                    AdminReply::refused(Refusal::Internal, format!("store: {e}"))
                                }
                            }
                        }
                    };
                    let _ = to.send(reply);
                });
            }
            Err(e) => {
                let _ = to.send(AdminReply::refused(
                    Refusal::Internal,
                    format!("store: {e}"),
                ));
            }
        }
    }

    /// Asks a registered device to bootstrap again, through the command path (so a sleeping
    /// device gets it when it wakes); its result is a command result event like any other.
    fn rotate(&mut self, now: Instant, endpoint: &str) -> AdminReply {
        if self.stack.core().registration(endpoint).is_none() {
            return AdminReply::refused(Refusal::NotFound, format!(
                "endpoint {endpoint:?} is not registered: a device is asked to bootstrap again through its registration"
            ));
        }
        let id = self
            .stack
            .core_mut()
            .bootstrap_trigger(now, endpoint, None, None);
        tracing::info!(%endpoint, command = id.0, "rotation requested: Bootstrap-Request Trigger");
        self.audit(AuditNote {
            kind: AuditKind::RotationRequested,
            endpoint: Some(endpoint.to_string()),
            peer: None,
            detail: format!("Bootstrap-Request Trigger (command {})", id.0),
        });
        AdminReply::ok()
    }

    /// `fw-add`: the package is read, hashed and written to its file on a blocking thread
    /// (it may be a gigabyte: the devices are not kept waiting), then recorded and added to
    /// the shared packages under a short lock, and answered once the store committed it.
    fn add_package(&mut self, req: AdminRequest) {
        let AdminOp::FwAdd {
            path,
            version,
            name,
        } = req.op
        else {
            return;
        };
        let (shared, dir, limits) = (
            self.firmware.shared.clone(),
            self.firmware.dir.clone(),
            self.firmware.limits,
        );
        let store = self.store.clone();
        let committed = self.store.clone();
        tokio::spawn(async move {
            let work = tokio::task::spawn_blocking(move || {
                let prepared = match admin::prepare_package(&dir, limits, &path, &version, &name) {
                    Ok(p) => p,
                    Err(refusal) => return *refusal,
                };
                let Ok(mut state) = shared.0.write() else {
                    return AdminReply::error("firmware packages unavailable");
                };
                admin::commit_package(&store, &dir, &mut state.packages, limits, prepared)
            });
            let reply = match work.await {
                // The record is durable before the answer, as for every admin operation.
                Ok(reply) if reply.ok => match committed.committed() {
                    Ok(wait) => match wait.await {
                        Ok(()) => reply,
                        Err(e) => AdminReply::refused(Refusal::Internal, format!("store: {e}")),
                    },
                    Err(e) => AdminReply::refused(Refusal::Internal, format!("store: {e}")),
                },
                Ok(reply) => reply,
                Err(e) => AdminReply::refused(
                    Refusal::Internal,
                    format!("adding the package failed: {e}"),
                ),
            };
            let _ = req.reply.send(reply);
        });
    }

    /// A `fw-*` operation on the package store. A package is in use while a running campaign
    /// targets a device with it, or a stored campaign names it.
    fn apply_firmware(&mut self, op: AdminOp) -> AdminReply {
        let fw = &self.firmware;
        let used = match &op {
            AdminOp::FwRemove { id } => self
                .campaigns
                .uses(&crate::firmware::packages::PackageId(id.clone())),
            _ => false,
        };
        let Ok(mut state) = fw.shared.0.write() else {
            return AdminReply::error("firmware packages unavailable");
        };
        let store = &self.store;
        let in_use = |_: &crate::firmware::packages::PackageId| used;
        admin::apply_firmware(store, &fw.dir, fw.limits, &mut state.packages, op, &in_use)
    }

    /// The store part, then the stack's side effects for the endpoints whose credential
    /// changed.
    fn apply(&mut self, now: Instant, op: AdminOp) -> AdminReply {
        if op.credential_set() == Some(CredentialSet::Bootstrap) {
            return self.apply_bootstrap(now, op);
        }
        let Ok(mut creds) = self.creds.0.write() else {
            return AdminReply::error("credential index unavailable");
        };
        let revoked = match &op {
            AdminOp::DeviceRevoke { endpoint } => Some(endpoint.clone()),
            _ => None,
        };
        let added: Vec<String> = match &op {
            AdminOp::DeviceAdd { credential } => vec![credential.endpoint.clone()],
            AdminOp::DeviceImport {
                credentials,
                check: false,
            } => credentials.iter().map(|c| c.endpoint.clone()).collect(),
            _ => Vec::new(),
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
        // The operator's change stands: a bootstrap finishing for these endpoints must not
        // put their previous credential back if it fails.
        if reply.ok {
            for e in changed.iter().chain(&added) {
                if let Some(i) = self.installed.get_mut(e) {
                    i.supersede();
                }
            }
        }
        // A denied endpoint gets no account from the bootstrap server: a sequence it is in
        // ends (over NoSec too), and so does a session it holds there.
        if let (Some(bs), Some(denied)) = (self.bootstrap.as_mut(), reply.denied.as_ref()) {
            for e in denied {
                if let Some(i) = self.installed.get_mut(e) {
                    i.supersede();
                }
                bs.credentials_changed(now, std::slice::from_ref(e), Some(e));
            }
        }
        reply
    }

    /// A `bootstrap-*` operation: the store part, on the bootstrap server's index, whose
    /// handshakes read the change at once.
    /// A removed or replaced factory credential ends the device's bootstrap session and its
    /// sequence, as a revoked device credential ends its LwM2M session.
    fn apply_bootstrap(&mut self, now: Instant, op: AdminOp) -> AdminReply {
        let Ok(mut creds) = self.bootstrap_creds.0.write() else {
            return AdminReply::error("bootstrap credential index unavailable");
        };
        let removed = match &op {
            AdminOp::BootstrapRemove { endpoint } => Some(endpoint.clone()),
            _ => None,
        };
        let (reply, changed) = match op {
            AdminOp::BootstrapImport { credentials, check } => {
                admin::apply_import(&self.store, &self.secrets, &mut creds, credentials, check)
            }
            op => {
                let reply = admin::apply_offline(&self.store, &self.secrets, &mut creds, op);
                let changed = match (&removed, &reply.replaced) {
                    (Some(e), _) => vec![e.clone()],
                    (None, Some(r)) => vec![r.endpoint.clone()],
                    (None, None) => Vec::new(),
                };
                (reply, changed)
            }
        };
        drop(creds);
        if let Some(bs) = self
            .bootstrap
            .as_mut()
            .filter(|_| reply.ok && !changed.is_empty())
        {
            bs.credentials_changed(now, &changed, removed.as_deref());
        }
        reply
    }
}
