//! What the driver does with the bootstrap server's events. The credential of the account a
//! device is given is installed in the LwM2M server's index and store when every Write was
//! accepted and just before Finish is sent (`Finishing`): a device that accepts Finish
//! connects to the LwM2M server at once, and its handshake must find the credential however
//! the datagrams of the two sockets are ordered on their way in. The old credential stops
//! working then, and its sessions close. Should the device refuse Finish or go away, the old
//! credential is put back (or the new one removed if there was none): nothing of an
//! unfinished bootstrap stays. Then the outcome is reported — counted, audited, on the event
//! stream and MQTT — and the bootstrap session closed, its sequence being over.
use super::Shell;
use crate::bootstrap::{audit_note, event_of, installed_credential};
use crate::core::types::{BootstrapStage, DeviceEvent, Link};
use crate::provisioning::admin::{self, AdminOp};
use crate::provisioning::audit::{self, AuditEvent, AuditKind};
use crate::provisioning::credentials::{DeviceCredential, NewCredential, Secret};
use lwm2m_bootstrap::{Account, AccountSecurity, Event};
use std::time::Instant;

/// A credential installed at `Finishing`, until its sequence ends.
#[derive(Debug)]
pub(crate) struct Installed {
    /// What the endpoint had before, to put back if the device does not finish.
    previous: Option<DeviceCredential>,
    /// What identifies the new credential, or why it could not be installed.
    result: Result<Option<String>, String>,
}

impl Shell {
    /// One event of the bootstrap stack.
    pub(super) fn bootstrap_event(&mut self, now: Instant, ev: Event<Link>) {
        match ev {
            Event::Finishing {
                endpoint, account, ..
            } => {
                let previous = self
                    .creds
                    .0
                    .read()
                    .ok()
                    .and_then(|c| c.get(&endpoint).cloned());
                let result = self.install(now, &endpoint, installed_credential(&account));
                if let Err(reason) = &result {
                    tracing::warn!(%endpoint, %reason, "bootstrapped device's credential not installed");
                }
                self.installed
                    .insert(endpoint, Installed { previous, result });
            }
            Event::Finished {
                endpoint,
                peer,
                account,
                version,
                ..
            } => {
                let result = match self.installed.remove(&endpoint) {
                    Some(i) => i.result,
                    // A pack: nothing announced it; the answer leaves after this.
                    None => self.install(now, &endpoint, installed_credential(&account)),
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
            ev @ (Event::Started { .. } | Event::Failed { .. }) => {
                if let Event::Failed { endpoint, peer, .. } = &ev {
                    if let Some(i) = self.installed.remove(endpoint) {
                        if i.result.is_ok() {
                            let previous = i.previous.map(|c| c.secret);
                            if let Err(reason) = self.install(now, endpoint, previous) {
                                tracing::error!(%endpoint, %reason, "the credential of an unfinished bootstrap could not be taken back");
                            }
                        }
                    }
                    self.close_bootstrap_session(*peer);
                }
                // Counted and audited by the role as it left the stack.
                if let Some(device) = event_of(&ev) {
                    self.device_event(now, device);
                }
            }
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
    /// needs) in place of what it had, whose sessions close. Returns what identifies the
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
            // A credential left from before would make the server insist on DTLS. Removed
            // from the index, not revoked: a revocation would also deny the endpoint's
            // certificates, which this device did nothing to deserve.
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
        if reply.replaced.is_some() {
            self.stack
                .credentials_changed(now, &[endpoint.to_string()], None);
        }
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
