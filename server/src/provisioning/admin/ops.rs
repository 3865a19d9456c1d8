//! The credential operations of the admin channel, applied to the store and the credential
//! index: the same functions serve the running server (which then also closes the sessions
//! of revoked and replaced credentials) and the CLI when no server runs, so both paths
//! behave, and audit, alike. Also how the CLI opens the store when no server runs.
use super::protocol::{
    AdminOp, AdminReply, ImportReport, RefusedEntry, MAX_AUDIT_LIMIT, MAX_IMPORT_CHUNK,
};
use crate::config::Config;
use crate::provisioning::audit::{self, AuditEvent, AuditKind};
use crate::provisioning::credentials::{
    CredentialError, CredentialSummary, Credentials, DeviceCredential, NewCredential,
};
use crate::provisioning::secrets::SecretsKey;
use crate::store::{Store, StoreConfig, StoreError};
use std::io;
use std::path::PathBuf;
use std::time::SystemTime;

/// Applies `op` to the store and the credential index directly, recording audit events for
/// changes. Used by the CLI when no server runs, and by the runtime for the store part of a
/// request (the runtime then closes sessions itself). Writes are durable after the next
/// commit: await [`Store::flush`] before sending the reply.
pub fn apply_offline(
    store: &Store,
    key: &SecretsKey,
    creds: &mut Credentials,
    op: AdminOp,
) -> AdminReply {
    match op {
        AdminOp::DeviceAdd { credential } => {
            let NewCredential { endpoint, secret } = credential;
            let replaced = creds.get(&endpoint).map(DeviceCredential::summary);
            let cred = DeviceCredential {
                endpoint: endpoint.clone(),
                secret,
                added_at: SystemTime::now(),
            };
            if let Err(e) = creds.add(store, key, cred) {
                return AdminReply::error(e.to_string());
            }
            let Some(device) = creds.get(&endpoint).map(DeviceCredential::summary) else {
                return AdminReply::error("credential vanished after it was added");
            };
            audit::record(store, &added_event(&device, replaced.as_ref()));
            AdminReply {
                device: Some(device),
                replaced,
                ..AdminReply::ok()
            }
        }
        AdminOp::DeviceRotate { .. } => AdminReply::error(ROTATE_NEEDS_SERVER),
        AdminOp::DeviceList => AdminReply {
            devices: Some(creds.list()),
            ..AdminReply::ok()
        },
        AdminOp::DeviceRevoke { endpoint } => match creds.revoke(store, &endpoint) {
            Ok(Some(old)) => {
                let device = old.summary();
                audit::record(
                    store,
                    &AuditEvent::new(
                        AuditKind::CredentialRevoked,
                        format!("{} {}", device.kind, device.id),
                    )
                    .with_endpoint(&endpoint),
                );
                AdminReply {
                    device: Some(device),
                    ..AdminReply::ok()
                }
            }
            Ok(None) => AdminReply::error(format!("endpoint {endpoint:?} has no credential")),
            Err(e) => AdminReply::error(e.to_string()),
        },
        AdminOp::DeviceImport { credentials, check } => {
            apply_import(store, key, creds, credentials, check).0
        }
        AdminOp::Audit { limit } => match audit::recent(store, limit.min(MAX_AUDIT_LIMIT)) {
            Ok(events) => AdminReply {
                events: Some(events),
                ..AdminReply::ok()
            },
            Err(e) => AdminReply::error(e.to_string()),
        },
    }
}

/// Why `device rotate` cannot be applied to the store alone.
pub const ROTATE_NEEDS_SERVER: &str = "rotation needs the running server: it asks the device to bootstrap again (Execute /1/x/9), and the bootstrap server gives it a fresh credential";

/// The audit event of an added credential, as `device-add` and `device-import` record it.
fn added_event(device: &CredentialSummary, replaced: Option<&CredentialSummary>) -> AuditEvent {
    let mut detail = format!("{} {}", device.kind, device.id);
    if let Some(r) = replaced {
        detail.push_str(&format!(" (replaces {} {})", r.kind, r.id));
    }
    AuditEvent::new(AuditKind::CredentialAdded, detail).with_endpoint(&device.endpoint)
}

/// Applies a `device-import` request (with `check`, only checks it): every credential, and
/// its audit entry, in one store transaction. Also returns the endpoints whose credential was
/// replaced, whose live sessions the runtime closes as it does for `device-add`.
pub fn apply_import(
    store: &Store,
    key: &SecretsKey,
    creds: &mut Credentials,
    credentials: Vec<NewCredential>,
    check: bool,
) -> (AdminReply, Vec<String>) {
    if credentials.len() > MAX_IMPORT_CHUNK {
        return (
            AdminReply::error(format!(
                "{} credentials in one device-import request; at most {MAX_IMPORT_CHUNK}",
                credentials.len()
            )),
            Vec::new(),
        );
    }
    let now = SystemTime::now();
    let batch: Vec<DeviceCredential> = credentials
        .into_iter()
        .map(|c| DeviceCredential {
            endpoint: c.endpoint,
            secret: c.secret,
            added_at: now,
        })
        .collect();
    let refused: Vec<RefusedEntry> = creds
        .check_batch(&batch)
        .into_iter()
        .map(|(index, e)| RefusedEntry {
            index,
            bound_to: match &e {
                CredentialError::Conflict { endpoint, .. } => Some(endpoint.clone()),
                _ => None,
            },
            error: e.to_string(),
        })
        .collect();
    if !refused.is_empty() {
        let mut reply = AdminReply::error(format!(
            "{} of {} credentials refused; none imported",
            refused.len(),
            batch.len()
        ));
        reply.import = Some(ImportReport {
            refused,
            ..ImportReport::default()
        });
        return (reply, Vec::new());
    }
    let imported = batch.len();
    if check {
        let replaced = batch
            .iter()
            .filter(|c| creds.has_credential(&c.endpoint))
            .count();
        let reply = AdminReply {
            import: Some(ImportReport {
                imported,
                replaced,
                refused: Vec::new(),
            }),
            ..AdminReply::ok()
        };
        return (reply, Vec::new());
    }
    let events: Vec<AuditEvent> = batch
        .iter()
        .map(|c| {
            let replaced = creds.get(&c.endpoint).map(DeviceCredential::summary);
            added_event(&c.summary(), replaced.as_ref())
        })
        .collect();
    let entries = events.iter().map(audit::entry).collect();
    match creds.add_batch(store, key, batch, entries) {
        Ok(replaced) => {
            audit::recorded(store, &events);
            let reply = AdminReply {
                import: Some(ImportReport {
                    imported,
                    replaced: replaced.len(),
                    refused: Vec::new(),
                }),
                ..AdminReply::ok()
            };
            (reply, replaced.into_iter().map(|c| c.endpoint).collect())
        }
        Err(e) => (AdminReply::error(e.to_string()), Vec::new()),
    }
}

/// Why the store could not be opened by a CLI command with no server running.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OfflineError {
    /// Another process (a server whose admin socket does not answer) holds the store.
    #[error(
        "the store {} is in use by a running server, but its admin socket {} does not answer: \
         is that server older than the admin channel, or was the socket removed? \
         Restart the server, or stop it to manage devices offline",
        store.display(),
        socket.display()
    )]
    InUse {
        /// The store file.
        store: PathBuf,
        /// The admin socket that did not answer.
        socket: PathBuf,
    },
    /// The data directory could not be created.
    #[error("creating {}: {source}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The store would not open.
    #[error("opening {}: {source}", path.display())]
    Store {
        /// The store file.
        path: PathBuf,
        /// Why.
        source: StoreError,
    },
}

/// Opens the store of `config` for a CLI command while no server runs (creating the data
/// directory if `create`).
pub fn open_offline(config: &Config, create: bool) -> Result<Store, OfflineError> {
    if create {
        let dir = &config.server.data_dir;
        std::fs::create_dir_all(dir).map_err(|source| OfflineError::CreateDir {
            path: dir.clone(),
            source,
        })?;
    }
    let path = config.store_path();
    match Store::open(&path, StoreConfig::default()) {
        Ok(s) => Ok(s),
        Err(StoreError::Db(redb::Error::DatabaseAlreadyOpen)) => Err(OfflineError::InUse {
            store: path,
            socket: config.admin_socket_path(),
        }),
        Err(source) => Err(OfflineError::Store { path, source }),
    }
}
