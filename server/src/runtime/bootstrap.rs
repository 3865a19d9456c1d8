//! What the driver does with the bootstrap server's events: a finished bootstrap's credential
//! installed in the LwM2M server's index and store (the device's old one stops working, and
//! its sessions close), then reported — counted, audited, on the event stream and MQTT.
use super::Shell;
use crate::bootstrap::{audit_note, event_of, installed_credential};
use crate::core::types::{BootstrapStage, DeviceEvent, Link};
use crate::provisioning::admin::{self, AdminOp};
use crate::provisioning::credentials::NewCredential;
use lwm2m_bootstrap::{Account, Event};
use std::time::Instant;

impl Shell {
    /// One event of the bootstrap stack.
    pub(super) fn bootstrap_event(&mut self, now: Instant, ev: Event<Link>) {
        let Event::Finished {
            endpoint,
            peer,
            account,
            version,
            ..
        } = ev
        else {
            // Counted and audited by the role as it left the stack.
            if let Some(device) = event_of(&ev) {
                self.device_event(now, device);
            }
            return;
        };
        let stage = match self.install(now, &endpoint, &account) {
            Ok(identity) => BootstrapStage::Finished {
                security: security_name(&account),
                identity,
                version,
            },
            Err(reason) => {
                tracing::warn!(%endpoint, %reason, "bootstrapped device's credential not installed");
                BootstrapStage::Failed {
                    step: "install".into(),
                    reason,
                }
            }
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
    }

    /// Makes the LwM2M server accept `account`'s credential for `endpoint`, in place of the
    /// one it had (whose sessions close). Returns what identifies the credential.
    fn install(
        &mut self,
        now: Instant,
        endpoint: &str,
        account: &Account,
    ) -> Result<Option<String>, String> {
        let Ok(mut creds) = self.creds.0.write() else {
            return Err("credential index unavailable".into());
        };
        let Some(secret) = installed_credential(account) else {
            // NoSec: a credential left from before would make the server insist on DTLS.
            if !creds.has_credential(endpoint) {
                return Ok(None);
            }
            let op = AdminOp::DeviceRevoke {
                endpoint: endpoint.to_string(),
            };
            let reply = admin::apply_offline(&self.store, &self.secrets, &mut creds, op);
            drop(creds);
            if !reply.ok {
                return Err(reply.error.unwrap_or_default());
            }
            self.stack
                .credentials_changed(now, &[endpoint.to_string()], Some(endpoint));
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
        lwm2m_bootstrap::AccountSecurity::NoSec => "nosec",
        lwm2m_bootstrap::AccountSecurity::Psk { .. } => "psk",
        lwm2m_bootstrap::AccountSecurity::Rpk { .. } => "rpk",
        lwm2m_bootstrap::AccountSecurity::Certificate { .. } => "x509",
    }
}
