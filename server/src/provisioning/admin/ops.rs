//! The credential and firmware package operations of the admin channel, applied to the
//! store, the credential index and the package store (OMA LwM2M TS 1.2 Core Appendix E.6): the same functions serve the running server (which then also closes the sessions
//! of revoked and replaced credentials) and the CLI when no server runs, so both paths
//! behave, and audit, alike. Also how the CLI opens the store when no server runs.
use super::protocol::{
    AdminOp, AdminReply, ImportReport, PackageSummary, Refusal, RefusedEntry, MAX_AUDIT_LIMIT,
    MAX_IMPORT_CHUNK,
};
use crate::config::Config;
use crate::firmware::packages::{self, PackageId, Packages};
use crate::provisioning::audit::{self, AuditEvent, AuditKind};
use crate::provisioning::credentials::{
    CredentialError, CredentialSet, CredentialSummary, Credentials, DeviceCredential, NewCredential,
};
use crate::provisioning::secrets::SecretsKey;
use crate::store::{Store, StoreConfig, StoreError};
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Applies `op` to the store and the credential index directly, recording audit events for
/// changes. Used by the CLI when no server runs, and by the runtime for the store part of a
/// request (the runtime then closes sessions itself). `creds` is the index of the op's set
/// ([`AdminOp::credential_set`]): the device index for `device-*`, the bootstrap index for
/// `bootstrap-*`; an op given the other one is refused. Writes are durable after the next
/// commit: await [`Store::flush`] before sending the reply.
pub fn apply_offline(
    store: &Store,
    key: &SecretsKey,
    creds: &mut Credentials,
    op: AdminOp,
) -> AdminReply {
    if let Some(set) = op.credential_set() {
        if set != creds.set() {
            return AdminReply::error(format!(
                "internal error: a {set:?} operation was given the {:?} index",
                creds.set()
            ));
        }
    }
    match op {
        AdminOp::DeviceAdd { credential } | AdminOp::BootstrapAdd { credential } => {
            add(store, key, creds, credential)
        }
        AdminOp::DeviceList | AdminOp::BootstrapList => {
            let denied: Vec<String> = match creds.set() {
                CredentialSet::Devices => creds.denied().into_iter().map(|(e, _)| e).collect(),
                CredentialSet::Bootstrap => Vec::new(),
            };
            AdminReply {
                devices: Some(creds.list()),
                denied: (!denied.is_empty()).then_some(denied),
                ..AdminReply::ok()
            }
        }
        AdminOp::DeviceRotate { .. } => AdminReply::error(ROTATE_NEEDS_SERVER),
        AdminOp::DeviceRevoke { endpoint } | AdminOp::BootstrapRemove { endpoint } => {
            revoke(store, creds, &endpoint)
        }
        AdminOp::DeviceImport { credentials, check }
        | AdminOp::BootstrapImport { credentials, check } => {
            apply_import(store, key, creds, credentials, check).0
        }
        AdminOp::FwAdd { .. } | AdminOp::FwList | AdminOp::FwRemove { .. } => {
            AdminReply::error("internal error: a firmware operation on the credential path")
        }
        AdminOp::FwUpdate { .. }
        | AdminOp::FwStatus { .. }
        | AdminOp::FwCancel { .. }
        | AdminOp::FwCampaigns => AdminReply::error(FIRMWARE_NEEDS_SERVER),
        AdminOp::Audit { limit } => match audit::recent(store, limit.min(MAX_AUDIT_LIMIT)) {
            Ok(events) => AdminReply {
                events: Some(events),
                ..AdminReply::ok()
            },
            Err(e) => AdminReply::refused(Refusal::Internal, e.to_string()),
        },
    }
}

/// Applies a firmware package operation (`fw-add`, `fw-list`, `fw-remove`) to the package
/// files under `dir`, the store and `packages`: used by the CLI when no server runs (with
/// `in_use` answering from the stored campaigns) and by the runtime (with `in_use` also
/// knowing the running campaigns). Writes are durable after the next commit.
pub fn apply_firmware(
    store: &Store,
    dir: &Path,
    limits: packages::Limits,
    pkgs: &mut Packages,
    op: AdminOp,
    in_use: &dyn Fn(&PackageId) -> bool,
) -> AdminReply {
    match op {
        AdminOp::FwAdd {
            path,
            version,
            name,
        } => match prepare_package(dir, limits, &path, &version, &name) {
            Ok(prepared) => commit_package(store, dir, pkgs, limits, prepared),
            Err(refusal) => *refusal,
        },
        AdminOp::FwList => AdminReply {
            packages: Some(pkgs.list().iter().map(PackageSummary::from).collect()),
            ..AdminReply::ok()
        },
        AdminOp::FwRemove { id } => match packages::remove(store, dir, pkgs, &id, in_use) {
            Ok(meta) => AdminReply {
                package: Some(PackageSummary::from(&meta)),
                ..AdminReply::ok()
            },
            Err(e) => package_refusal(&e),
        },
        _ => AdminReply::error("internal error: not a firmware operation"),
    }
}

/// The slow half of `fw-add`: reads the file at `path`, hashes it and writes the package
/// file (see [`packages::prepare`]); touches no shared state, so the runtime runs it off
/// the server task.
pub fn prepare_package(
    dir: &Path,
    limits: packages::Limits,
    path: &Path,
    version: &str,
    name: &str,
) -> Result<packages::Prepared, Box<AdminReply>> {
    let bytes =
        read_package(path, limits.max_package_bytes).map_err(|e| Box::new(AdminReply::error(e)))?;
    packages::prepare(dir, limits, bytes, version, name).map_err(|e| Box::new(package_refusal(&e)))
}

/// The quick half of `fw-add`: the record and the package set (see [`packages::commit`]).
pub fn commit_package(
    store: &Store,
    dir: &Path,
    pkgs: &mut Packages,
    limits: packages::Limits,
    prepared: packages::Prepared,
) -> AdminReply {
    match packages::commit(store, dir, pkgs, limits, prepared) {
        Ok(added) => AdminReply {
            package: Some(PackageSummary::from(&added.meta)),
            existed: added.existed,
            ..AdminReply::ok()
        },
        Err(e) => package_refusal(&e),
    }
}

/// A package operation's refusal, of the kind its error is.
fn package_refusal(e: &packages::PackageError) -> AdminReply {
    match e {
        packages::PackageError::NotFound(_) => {
            AdminReply::refused(Refusal::NotFound, e.to_string())
        }
        packages::PackageError::InUse(_) => AdminReply::refused(Refusal::Conflict, e.to_string()),
        packages::PackageError::Store(_) | packages::PackageError::Io { .. } => {
            AdminReply::refused(Refusal::Internal, e.to_string())
        }
        _ => AdminReply::error(e.to_string()),
    }
}

/// A credential operation's refusal, of the kind its error is.
fn credential_refusal(e: &CredentialError) -> AdminReply {
    match e {
        CredentialError::Conflict { .. } => AdminReply::refused(Refusal::Conflict, e.to_string()),
        CredentialError::Store(_) => AdminReply::refused(Refusal::Internal, e.to_string()),
        _ => AdminReply::error(e.to_string()),
    }
}

/// The bytes of the package file `path` (absolute: the server reads it, not the CLI), refused
/// before reading if larger than `max`.
fn read_package(path: &Path, max: u64) -> Result<Vec<u8>, String> {
    if !path.is_absolute() {
        return Err(format!(
            "{}: the package path must be absolute",
            path.display()
        ));
    }
    let shown = |e: io::Error| format!("{}: {e}", path.display());
    let meta = std::fs::metadata(path).map_err(shown)?;
    if !meta.is_file() {
        return Err(format!("{}: not a file", path.display()));
    }
    if meta.len() > max {
        return Err(format!(
            "{}: {} bytes, more than firmware.max_package_bytes = {max}",
            path.display(),
            meta.len()
        ));
    }
    std::fs::read(path).map_err(shown)
}

/// Why the `fw` operations cannot be applied to the store alone.
pub(super) const FIRMWARE_NEEDS_SERVER: &str =
    "firmware campaigns need the running server: it sends the commands and follows each device";

/// Why `device rotate` cannot be applied to the store alone.
pub const ROTATE_NEEDS_SERVER: &str = "rotation needs the running server: it asks the device to bootstrap again (Execute /1/x/9), and the bootstrap server gives it a fresh credential";

/// `device-add`, `bootstrap-add`.
fn add(
    store: &Store,
    key: &SecretsKey,
    creds: &mut Credentials,
    credential: NewCredential,
) -> AdminReply {
    let NewCredential { endpoint, secret } = credential;
    let replaced = creds.get(&endpoint).map(DeviceCredential::summary);
    let was_denied = creds.set() == CredentialSet::Devices && creds.is_denied(&endpoint);
    let cred = DeviceCredential {
        endpoint: endpoint.clone(),
        secret,
        added_at: SystemTime::now(),
    };
    if let Err(e) = creds.add(store, key, cred) {
        return credential_refusal(&e);
    }
    let Some(device) = creds.get(&endpoint).map(DeviceCredential::summary) else {
        return AdminReply::error("credential vanished after it was added");
    };
    let deny_lifted = was_denied && !creds.is_denied(&endpoint);
    audit::record(
        store,
        &added_event(creds.set(), &device, replaced.as_ref(), deny_lifted),
    );
    AdminReply {
        device: Some(device),
        replaced,
        deny_lifted,
        ..AdminReply::ok()
    }
}

/// `device-revoke`, `bootstrap-remove`. Revoking a device also denies its endpoint: its
/// factory credential would otherwise get it a fresh credential from the bootstrap server,
/// and a certificate from a trusted CA naming it would let it in again (a device known only
/// through the CA has no credential to remove at all). `device add` lifts the deny.
fn revoke(store: &Store, creds: &mut Credentials, endpoint: &str) -> AdminReply {
    let set = creds.set();
    let removed = match creds.revoke(store, endpoint) {
        Ok(r) => r,
        Err(e) => return AdminReply::error(e.to_string()),
    };
    let device = removed.map(|old| old.summary());
    if let Some(d) = &device {
        let kind = match set {
            CredentialSet::Devices => AuditKind::CredentialRevoked,
            CredentialSet::Bootstrap => AuditKind::BootstrapCredentialRemoved,
        };
        audit::record(
            store,
            &AuditEvent::new(kind, format!("{} {}", d.kind, d.id)).with_endpoint(endpoint),
        );
    }
    let mut denied = None;
    // A device that had a credential is denied too, with or without a CA: its factory
    // credential would otherwise get it a fresh one from the bootstrap server.
    if set == CredentialSet::Devices && (creds.pki().is_some() || device.is_some()) {
        match creds.deny(store, endpoint) {
            Ok(newly) => {
                if newly {
                    audit::record(
                        store,
                        &AuditEvent::new(
                            AuditKind::EndpointDenied,
                            "it may not bootstrap again nor come in with a certificate, even from a trusted CA",
                        )
                        .with_endpoint(endpoint),
                    );
                }
                denied = Some(vec![endpoint.to_string()]);
            }
            // Only a name no certificate can carry is refused here.
            Err(e) if device.is_none() => return AdminReply::error(e.to_string()),
            Err(_) => {}
        }
    }
    if device.is_none() && denied.is_none() {
        return AdminReply::refused(
            Refusal::NotFound,
            format!("endpoint {endpoint:?} has no {}", set.noun()),
        );
    }
    AdminReply {
        device,
        denied,
        ..AdminReply::ok()
    }
}

/// The audit event of an added credential, as `*-add` and `*-import` record it.
fn added_event(
    set: CredentialSet,
    device: &CredentialSummary,
    replaced: Option<&CredentialSummary>,
    deny_lifted: bool,
) -> AuditEvent {
    let mut detail = format!("{} {}", device.kind, device.id);
    if let Some(r) = replaced {
        detail.push_str(&format!(" (replaces {} {})", r.kind, r.id));
    }
    if deny_lifted {
        detail.push_str(" (lifts the endpoint's deny)");
    }
    let kind = match set {
        CredentialSet::Devices => AuditKind::CredentialAdded,
        CredentialSet::Bootstrap => AuditKind::BootstrapCredentialAdded,
    };
    AuditEvent::new(kind, detail).with_endpoint(&device.endpoint)
}

/// Applies a `device-import` or `bootstrap-import` request (with `check`, only checks it) to
/// `creds`, the index of its set: every credential, and its audit entry, in one store
/// transaction. Also returns the endpoints whose credential was
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
                "{} credentials in one import request; at most {MAX_IMPORT_CHUNK}",
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
    let set = creds.set();
    let events: Vec<AuditEvent> = batch
        .iter()
        .map(|c| {
            let replaced = creds.get(&c.endpoint).map(DeviceCredential::summary);
            let lifts = set == CredentialSet::Devices && creds.is_denied(&c.endpoint);
            added_event(set, &c.summary(), replaced.as_ref(), lifts)
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

/// Loads the credential index of `set` for a CLI command with no server running, as a start
/// would: the device index knows the deny list and, with
/// `security.trusted_ca` set, that certificates from it are accepted (so that revoking a
/// device denies its endpoint); the bootstrap index shares that deny list.
pub fn load_offline(
    store: &Store,
    key: &SecretsKey,
    config: &Config,
    set: CredentialSet,
) -> Result<Credentials, CredentialError> {
    let mut devices = Credentials::load(store, key)?;
    devices.set_pki(crate::provisioning::security::pki_naming(config));
    match set {
        CredentialSet::Devices => Ok(devices),
        CredentialSet::Bootstrap => Credentials::load_bootstrap(store, key, &devices),
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
