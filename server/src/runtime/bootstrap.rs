//! What the driver does with the bootstrap server's events.
//!
//! - `Finishing` (every Write acknowledged): the account's credential is installed in the
//!   LwM2M server's index and store — the old one stops working and its sessions close — and
//!   only then is Finish approved, so the device's first handshake after it finds the
//!   credential however the two sockets' datagrams are ordered on their way in. If it cannot
//!   be installed (the endpoint was revoked meanwhile, the store failed), Finish is refused
//!   and never sent: the device keeps asking instead of using an account nobody accepts.
//! - `Failed` after that: the credential is taken back — the previous one restored, or the
//!   new one removed — unless the device already holds a session made with it (it got
//!   Finish; only the acknowledgement was lost), or an operator changed the endpoint since.
//! - `Finished`, `Failed`: reported (counted and audited by the role, then the event stream
//!   and MQTT), and the bootstrap session closed once what is queued for it has left.
use super::Shell;
use crate::bootstrap::{audit_note, event_of, installed_credential};
use crate::core::types::{BootstrapStage, DeviceEvent, Link};
use crate::provisioning::admin::{self, AdminOp};
use crate::provisioning::audit::{self, AuditEvent, AuditKind};
use crate::provisioning::credentials::{DeviceCredential, NewCredential, Secret};
use lwm2m_bootstrap::{Account, AccountSecurity, Event, Failure, Step};
use std::time::Instant;

/// A credential installed at `Finishing`, until its sequence ends.
#[derive(Debug)]
pub(crate) struct Installed {
    /// The device's bootstrap session: only its sequence's end concerns this entry.
    peer: Link,
    /// What the endpoint had before, to put back if the device does not finish.
    previous: Option<DeviceCredential>,
    /// What was installed (`None`: no credential, for a NoSec account).
    secret: Option<Secret>,
    /// What identifies it, for the report.
    identity: Option<String>,
    /// An operator changed the endpoint's credential since: theirs stands, whatever the
    /// sequence's end.
    superseded: bool,
}

impl Installed {
    /// An operator changed the endpoint's credential: nothing is to be taken back.
    pub(crate) fn supersede(&mut self) {
        self.superseded = true;
    }
}

impl Shell {
    /// One event of the bootstrap stack.
    pub(super) fn bootstrap_event(&mut self, now: Instant, ev: Event<Link>) {
        match ev {
            Event::Finishing {
                endpoint,
                peer,
                account,
            } => self.finishing(now, endpoint, peer, &account),
            Event::Finished {
                endpoint,
                peer,
                account,
                version,
                ..
            } => {
                let result = match self.installed.remove(&endpoint) {
                    Some(i) if i.peer == peer => Ok(i.identity),
                    // A pack (no Finishing before it): its answer leaves after this.
                    _ => self.install(now, &endpoint, installed_credential(&account)),
                };
                let stage = match result {
                    Ok(identity) => BootstrapStage::Finished {
                        security: security_name(&account),
                        identity,
                        version,
                    },
                    Err(reason) => BootstrapStage::Failed {
                        step: "install".into(),
                        reason,
                    },
                };
                let device = DeviceEvent::Bootstrap {
                    endpoint,
                    peer: peer.to_string(),
                    stage,
                };
                self.stack.metrics().on_event(&device);
                if let Some(note) = audit_note(&device) {
                    self.audit(note);
                }
                self.device_event(now, device);
                self.close_bootstrap_session(peer);
            }
            Event::Failed {
                ref endpoint,
                peer,
                ref step,
                ref failure,
            } => {
                // A refused request is not the end of the sequence that may be running for
                // the same name (anyone can send `ep=` of another).
                let refused_request = matches!(step, Step::Request | Step::Pack);
                if !refused_request && self.installed.get(endpoint).is_some_and(|i| i.peer == peer)
                {
                    if let Some(i) = self.installed.remove(endpoint) {
                        self.take_back(now, endpoint, i);
                    }
                }
                // `Gone`: the session is over already, or the device started again on it.
                if !refused_request && *failure != Failure::Gone {
                    self.close_bootstrap_session(peer);
                }
                if let Some(device) = event_of(&ev) {
                    self.device_event(now, device);
                }
            }
            // Counted and audited by the role as it left the stack.
            ev @ Event::Started { .. } => {
                if let Some(device) = event_of(&ev) {
                    self.device_event(now, device);
                }
            }
        }
    }

    /// Installs the credential the device is about to be told to use, then lets Finish go.
    fn finishing(&mut self, now: Instant, endpoint: String, peer: Link, account: &Account) {
        let previous = self
            .creds
            .0
            .read()
            .ok()
            .and_then(|c| c.get(&endpoint).cloned());
        let secret = installed_credential(account);
        let result = self.install(now, &endpoint, secret.clone());
        let Some(bs) = self.bootstrap.as_mut() else {
            return;
        };
        match result {
            Ok(identity) => {
                self.installed.insert(
                    endpoint.clone(),
                    Installed {
                        peer,
                        previous,
                        secret,
                        identity,
                        superseded: false,
                    },
                );
                bs.core_mut().approve_finish(now, &endpoint, peer);
            }
            Err(reason) => {
                tracing::warn!(%endpoint, %reason, "bootstrapped device's credential not installed: Finish refused");
                bs.core_mut().refuse_finish(now, &endpoint, peer, reason);
            }
        }
    }

    /// Undoes the install of a bootstrap that did not finish.
    fn take_back(&mut self, now: Instant, endpoint: &str, i: Installed) {
        if i.superseded {
            return;
        }
        // Every session made with the old credential closed at the install: one open now was
        // made with the new one, which the device therefore holds.
        if self.stack.has_session_of(endpoint) {
            tracing::info!(%endpoint, "bootstrap unfinished but the device uses its new credential: kept");
            return;
        }
        let Ok(creds) = self.creds.0.read() else {
            return;
        };
        let current = creds.get(endpoint).map(|c| c.secret.clone());
        let denied = creds.is_denied(endpoint);
        drop(creds);
        if current != i.secret {
            // Someone else changed it since: theirs stands.
            return;
        }
        let back = match i.previous {
            Some(prev) if !denied => Some(prev.secret),
            _ => None,
        };
        if let Err(reason) = self.install(now, endpoint, back) {
            tracing::error!(%endpoint, %reason, "the credential of an unfinished bootstrap could not be taken back");
        }
    }

    /// Ends the DTLS session of a bootstrap that is over, once what is queued for it (a
    /// refusal, an acknowledgement) has left: a device that bootstraps again handshakes
    /// again, and the bootstrap server holds no session per device it served.
    fn close_bootstrap_session(&mut self, peer: Link) {
        if let (true, Link::Dtls(conn)) = (self.bootstrap.is_some(), peer) {
            self.closing.push(conn);
        }
    }

    /// Makes the LwM2M server accept `secret` for `endpoint` (none: no credential, as NoSec
    /// needs) in place of what it had, whose sessions close. Refused for a revoked (denied)
    /// endpoint: a bootstrap never undoes a revocation. Returns what identifies the
    /// credential.
    fn install(
        &mut self,
        now: Instant,
        endpoint: &str,
        secret: Option<Secret>,
    ) -> Result<Option<String>, String> {
        let Ok(mut creds) = self.creds.0.write() else {
            return Err("credential index unavailable".into());
        };
        let Some(secret) = secret else {
            // Removed from the index, not revoked: a revocation would also deny the
            // endpoint, which this device did nothing to deserve.
            let removed = creds
                .revoke(&self.store, endpoint)
                .map_err(|e| e.to_string())?;
            drop(creds);
            if let Some(old) = removed {
                let old = old.summary();
                audit::record(
                    &self.store,
                    &AuditEvent::new(
                        AuditKind::CredentialRevoked,
                        format!("{} {} (bootstrap)", old.kind, old.id),
                    )
                    .with_endpoint(endpoint),
                );
                self.stack
                    .credentials_changed(now, &[endpoint.to_string()], Some(endpoint));
            }
            return Ok(None);
        };
        if creds.is_denied(endpoint) {
            return Err(format!("{endpoint} was revoked"));
        }
        let identity = secret.public_id();
        let op = AdminOp::DeviceAdd {
            credential: NewCredential {
                endpoint: endpoint.to_string(),
                secret,
            },
        };
        let reply = admin::apply_offline(&self.store, &self.secrets, &mut creds, op);
        drop(creds);
        if !reply.ok {
            return Err(reply.error.unwrap_or_default());
        }
        // Whatever the device was connected with before (a replaced credential, or a
        // certificate named by the factory CA) stops here, so that a session seen after a
        // failure can only be one made with the new credential.
        self.stack
            .credentials_changed(now, &[endpoint.to_string()], None);
        Ok(Some(identity))
    }
}

fn security_name(account: &Account) -> &'static str {
    match account.security {
        AccountSecurity::NoSec => "nosec",
        AccountSecurity::Psk { .. } => "psk",
        AccountSecurity::Rpk { .. } => "rpk",
        AccountSecurity::Certificate { .. } => "x509",
    }
}
