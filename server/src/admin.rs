//! The admin channel: how `lwm2m-server device ...` and `lwm2m-server audit` reach a running
//! server.
//!
//! The store allows one process at a time (redb locks its file), and revoking a device must
//! close its live DTLS session at once, so the CLI cannot just write to the database: it asks
//! the server. The channel is a Unix domain socket at `{data_dir}/admin.sock`, mode 0600 (the
//! file system is the access control: only the server's user, and root, may connect),
//! carrying newline-delimited JSON, one request and one reply per line:
//!
//! ```text
//! {"op":"device-add","credential":{"endpoint":"E","kind":"psk","identity":"I","key":"00ff.."}}
//! {"op":"device-add","credential":{"endpoint":"E","kind":"rpk","spki_der":"3059.."}}
//! {"op":"device-add","credential":{"endpoint":"E","kind":"x509","cert_der":"3082.."}}
//! {"op":"device-list"}
//! {"op":"device-revoke","endpoint":"E"}
//! {"op":"device-import","credentials":[{"endpoint":"E","kind":"psk","identity":"I","key":"00ff.."},...],"check":false}
//! {"op":"audit","limit":50}
//! -> {"ok":true,...}  or  {"ok":false,"error":"..."}
//! ```
//!
//! [`serve`] only parses requests and forwards them to the runtime, which owns the store and
//! the sessions; the runtime applies the store part with [`apply_offline`], the same function
//! the CLI uses when no server is running, so both paths behave (and audit) alike.
//!
//! `device-import` adds up to [`MAX_IMPORT_CHUNK`] credentials as one store transaction, with
//! the semantics of as many `device-add`s (rotation, audit entries); with `"check":true` it
//! only says what it would refuse. `lwm2m-server device import` (see [`crate::import`]) sends
//! a large file as a series of such chunks.
//!
//! Bounds: a request line is at most [`MAX_REQUEST_LEN`] bytes, at most
//! [`MAX_CONNECTIONS`] connections are served at once (others get a "busy" reply), and an
//! idle connection is closed after [`IDLE_TIMEOUT`].
use crate::audit::{self, AuditEvent, AuditKind};
use crate::config::Config;
use crate::credentials::{
    CredentialError, CredentialSummary, Credentials, DeviceCredential, NewCredential,
};
use crate::secrets::SecretsKey;
use crate::store::{Store, StoreConfig, StoreError};
use serde::{Deserialize, Serialize};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader,
};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot, Semaphore};

/// Longest request line, in bytes: a `device-import` chunk of [`MAX_IMPORT_CHUNK`] typical
/// PSK credentials (about 100-130 bytes of JSON each) fits; the CLI makes chunks of longer
/// ones smaller. With [`MAX_CONNECTIONS`], the admin socket buffers at most 4 MiB.
pub const MAX_REQUEST_LEN: usize = 1024 * 1024;
/// Most credentials in one `device-import` request.
pub const MAX_IMPORT_CHUNK: usize = 5000;
/// Longest reply line the client reads (a list of a million devices fits).
pub const MAX_REPLY_LEN: usize = 512 * 1024 * 1024;
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 4;
/// A connection that sends nothing for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a request waits for the runtime to answer it.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the client waits for a reply.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);
/// Most audit events returned by one request.
pub const MAX_AUDIT_LIMIT: usize = 10_000;

fn default_audit_limit() -> usize {
    50
}

/// A request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case", deny_unknown_fields)]
pub enum AdminOp {
    /// Add a credential, or replace (rotate) the endpoint's current one.
    DeviceAdd {
        /// The credential.
        credential: NewCredential,
    },
    /// List every credential (never the keys).
    DeviceList,
    /// Revoke an endpoint's credential; the runtime also closes its live session.
    DeviceRevoke {
        /// The endpoint.
        endpoint: String,
    },
    /// Add or replace many credentials in one store transaction, as many `DeviceAdd`s would
    /// (at most [`MAX_IMPORT_CHUNK`]); refused whole if any one is refused.
    DeviceImport {
        /// The credentials.
        credentials: Vec<NewCredential>,
        /// Only check: say what would be refused, change nothing.
        #[serde(default)]
        check: bool,
    },
    /// The newest audit events, oldest first.
    Audit {
        /// How many (default 50, at most [`MAX_AUDIT_LIMIT`]).
        #[serde(default = "default_audit_limit")]
        limit: usize,
    },
}

/// A reply: `ok` and, by operation, the fields that apply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminReply {
    /// Whether the operation was applied.
    pub ok: bool,
    /// Why not, when `ok` is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// device-add: the credential now in force; device-revoke: the one revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<CredentialSummary>,
    /// device-add: the credential it replaced, if any (its session should be closed too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced: Option<CredentialSummary>,
    /// device-list: every credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<Vec<CredentialSummary>>,
    /// audit: the events, oldest first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<AuditEvent>>,
    /// device-import: what was imported (or, with `check`, would be), or what was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub import: Option<ImportReport>,
}

/// What a `device-import` request did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportReport {
    /// Credentials added or replaced (with `check`: that would be).
    pub imported: usize,
    /// Of those, the ones that replaced an endpoint's credential.
    pub replaced: usize,
    /// The entries refused, if any (then nothing was imported).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<RefusedEntry>,
}

/// One refused entry of a `device-import` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedEntry {
    /// Its index in the request's `credentials`.
    pub index: usize,
    /// Why.
    pub error: String,
    /// For a PSK identity (public key, certificate) already bound elsewhere: that endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound_to: Option<String>,
}

impl AdminReply {
    /// A success with no data.
    pub fn ok() -> Self {
        Self {
            ok: true,
            ..Self::default()
        }
    }

    /// A refusal.
    pub fn error(message: impl Into<String>) -> Self {
        Self {
            ok: false,
            error: Some(message.into()),
            ..Self::default()
        }
    }
}

/// A request forwarded to the runtime, with where to send its reply.
#[derive(Debug)]
pub struct AdminRequest {
    /// What to do.
    pub op: AdminOp,
    /// Where the reply goes (dropping it answers "the server dropped the request").
    pub reply: oneshot::Sender<AdminReply>,
}

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

/// A bound admin socket, not yet serving. Removes its socket file when dropped.
#[derive(Debug)]
pub struct AdminListener {
    listener: UnixListener,
    path: PathBuf,
}

impl Drop for AdminListener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Binds the admin socket at `path` with mode 0600, replacing a stale socket file left by a
/// server that died. Fails if another server answers there, or if `path` is not a socket.
/// Must run inside a tokio runtime.
pub fn bind(path: &Path) -> io::Result<AdminListener> {
    use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::AddrInUse,
                        format!("another server answers on {}", path.display()),
                    ))
                }
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    tracing::info!(path = %path.display(), "removing stale admin socket");
                    std::fs::remove_file(path)?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    // Bind inside a private (0700) directory, restrict the socket to 0600, then move it into
    // place: the socket is never reachable by others, whatever the process umask is.
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = parent.join(format!(".admin-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::DirBuilder::new().mode(0o700).create(&tmp)?;
    let result = (|| -> io::Result<UnixListener> {
        let tmp_sock = tmp.join("s");
        let listener = UnixListener::bind(&tmp_sock)?;
        std::fs::set_permissions(&tmp_sock, std::fs::Permissions::from_mode(0o600))?;
        std::fs::rename(&tmp_sock, path)?;
        Ok(listener)
    })();
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(AdminListener {
        listener: result?,
        path: path.to_path_buf(),
    })
}

impl AdminListener {
    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serves connections, forwarding each request to `requests`, until that channel closes.
    pub async fn run(self, requests: mpsc::Sender<AdminRequest>) -> io::Result<()> {
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        loop {
            let accepted = tokio::select! {
                _ = requests.closed() => return Ok(()),
                a = self.listener.accept() => a,
            };
            let stream = match accepted {
                Ok((s, _)) => s,
                Err(e) => {
                    // Out of descriptors and the like: wait instead of spinning.
                    tracing::warn!(error = %e, "admin socket accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            match slots.clone().try_acquire_owned() {
                Ok(permit) => {
                    let requests = requests.clone();
                    tokio::spawn(async move {
                        if let Err(e) = connection(stream, requests).await {
                            tracing::debug!(error = %e, "admin connection ended");
                        }
                        drop(permit);
                    });
                }
                Err(_) => {
                    tokio::spawn(async move {
                        let mut stream = stream;
                        let busy = AdminReply::error("admin channel busy: too many connections");
                        let _ = tokio::time::timeout(
                            Duration::from_secs(1),
                            write_reply(&mut stream, &busy),
                        )
                        .await;
                    });
                }
            }
        }
    }
}

/// Binds `path` (see [`bind`]) and serves it until `requests` closes.
pub async fn serve(path: PathBuf, requests: mpsc::Sender<AdminRequest>) -> io::Result<()> {
    bind(&path)?.run(requests).await
}

/// One line of at most `max` bytes, without its newline; `None` at the end of the stream.
/// A longer line is an `InvalidData` error.
async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    let n = (&mut *reader)
        .take(limit)
        .read_until(b'\n', &mut line)
        .await?;
    if n == 0 {
        return Ok(None);
    }
    if line.last() == Some(&b'\n') {
        line.pop();
    } else if line.len() > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("line longer than {max} bytes"),
        ));
    }
    Ok(Some(line))
}

/// Writes one reply line; a client that stops reading is dropped after [`IDLE_TIMEOUT`].
async fn write_reply<W: AsyncWrite + Unpin>(w: &mut W, reply: &AdminReply) -> io::Result<()> {
    let mut text = serde_json::to_vec(reply).map_err(io::Error::other)?;
    text.push(b'\n');
    let write = async {
        w.write_all(&text).await?;
        w.flush().await
    };
    tokio::time::timeout(IDLE_TIMEOUT, write)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "admin client stopped reading"))?
}

async fn connection(stream: UnixStream, requests: mpsc::Sender<AdminRequest>) -> io::Result<()> {
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::new(rd);
    loop {
        let line =
            match tokio::time::timeout(IDLE_TIMEOUT, read_line(&mut rd, MAX_REQUEST_LEN)).await {
                Err(_) => return Ok(()),
                Ok(Ok(None)) => return Ok(()),
                Ok(Ok(Some(line))) => line,
                Ok(Err(e)) if e.kind() == io::ErrorKind::InvalidData => {
                    let reply =
                        AdminReply::error(format!("request longer than {MAX_REQUEST_LEN} bytes"));
                    return write_reply(&mut wr, &reply).await;
                }
                Ok(Err(e)) => return Err(e),
            };
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let reply = match serde_json::from_slice::<AdminOp>(&line) {
            Err(e) => AdminReply::error(format!("bad request: {e}")),
            Ok(op) => forward(&requests, op).await,
        };
        write_reply(&mut wr, &reply).await?;
    }
}

async fn forward(requests: &mpsc::Sender<AdminRequest>, op: AdminOp) -> AdminReply {
    let (reply, answer) = oneshot::channel();
    // One deadline for queueing and answering: a stalled runtime must not hold a connection
    // slot forever.
    let exchange = async {
        if requests.send(AdminRequest { op, reply }).await.is_err() {
            return AdminReply::error("the server is shutting down");
        }
        match answer.await {
            Ok(reply) => reply,
            Err(_) => AdminReply::error("the server dropped the request"),
        }
    };
    match tokio::time::timeout(REPLY_TIMEOUT, exchange).await {
        Ok(reply) => reply,
        Err(_) => AdminReply::error(format!(
            "the server did not answer within {} s",
            REPLY_TIMEOUT.as_secs()
        )),
    }
}

/// Sends `op` to the server listening on `path` and returns its reply. A missing socket
/// (`NotFound`) or one nobody listens on (`ConnectionRefused`) means no server is running.
pub async fn call(path: &Path, op: &AdminOp) -> io::Result<AdminReply> {
    let mut stream = UnixStream::connect(path).await?;
    let mut text = serde_json::to_vec(op).map_err(io::Error::other)?;
    text.push(b'\n');
    let exchange = async {
        stream.write_all(&text).await?;
        stream.flush().await?;
        let mut rd = BufReader::new(&mut stream);
        let line = read_line(&mut rd, MAX_REPLY_LEN).await?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the admin connection without a reply",
            )
        })?;
        serde_json::from_slice::<AdminReply>(&line).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unreadable reply from the server: {e}"),
            )
        })
    };
    tokio::time::timeout(CLIENT_TIMEOUT, exchange)
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the server did not answer within {} s",
                    CLIENT_TIMEOUT.as_secs()
                ),
            )
        })?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::tests::psk;
    use crate::store::StoreConfig;

    fn add_psk(endpoint: &str, identity: &str, key: &[u8]) -> AdminOp {
        AdminOp::DeviceAdd {
            credential: NewCredential {
                endpoint: endpoint.into(),
                secret: psk(endpoint, identity, key).secret,
            },
        }
    }

    #[test]
    fn request_and_reply_json_shapes() {
        let op: AdminOp = serde_json::from_str(
            r#"{"op":"device-add","credential":{"endpoint":"E","kind":"psk","identity":"I","key":"00ff"}}"#,
        )
        .unwrap();
        assert_eq!(op, add_psk("E", "I", &[0, 0xff]));
        assert_eq!(
            serde_json::from_str::<AdminOp>(r#"{"op":"device-list"}"#).unwrap(),
            AdminOp::DeviceList
        );
        assert_eq!(
            serde_json::from_str::<AdminOp>(r#"{"op":"device-revoke","endpoint":"E"}"#).unwrap(),
            AdminOp::DeviceRevoke {
                endpoint: "E".into()
            }
        );
        assert_eq!(
            serde_json::from_str::<AdminOp>(r#"{"op":"audit"}"#).unwrap(),
            AdminOp::Audit { limit: 50 }
        );
        let import: AdminOp = serde_json::from_str(
            r#"{"op":"device-import","credentials":[{"endpoint":"E","kind":"psk","identity":"I","key":"00ff"}]}"#,
        )
        .unwrap();
        let AdminOp::DeviceAdd { credential } = add_psk("E", "I", &[0, 0xff]) else {
            unreachable!()
        };
        assert_eq!(
            import,
            AdminOp::DeviceImport {
                credentials: vec![credential],
                check: false
            }
        );
        assert!(serde_json::from_str::<AdminOp>(r#"{"op":"shutdown"}"#).is_err());
        assert_eq!(
            serde_json::to_string(&AdminReply::error("no")).unwrap(),
            r#"{"ok":false,"error":"no"}"#
        );
        assert_eq!(
            serde_json::to_string(&AdminReply::ok()).unwrap(),
            r#"{"ok":true}"#
        );
    }

    #[tokio::test]
    async fn apply_offline_adds_lists_revokes_and_audits() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb"), StoreConfig::default()).unwrap();
        let key = SecretsKey::generate().unwrap();
        let mut creds = Credentials::new();
        let r = apply_offline(&store, &key, &mut creds, add_psk("dev-1", "id-1", b"k1"));
        assert!(r.ok, "{r:?}");
        assert_eq!(r.device.as_ref().unwrap().id, "id-1");
        assert!(r.replaced.is_none());
        let r = apply_offline(&store, &key, &mut creds, add_psk("dev-2", "id-1", b"k2"));
        assert!(!r.ok);
        assert!(r
            .error
            .unwrap()
            .contains("already bound to endpoint \"dev-1\""));
        let r = apply_offline(&store, &key, &mut creds, add_psk("dev-1", "id-1b", b"k3"));
        assert_eq!(r.replaced.unwrap().id, "id-1");
        let r = apply_offline(&store, &key, &mut creds, AdminOp::DeviceList);
        assert_eq!(r.devices.unwrap().len(), 1);
        let revoke = AdminOp::DeviceRevoke {
            endpoint: "dev-1".into(),
        };
        let r = apply_offline(&store, &key, &mut creds, revoke.clone());
        assert!(r.ok && r.device.unwrap().id == "id-1b");
        let r = apply_offline(&store, &key, &mut creds, revoke);
        assert!(!r.ok && r.error.unwrap().contains("has no credential"));
        store.flush().await.unwrap();
        let r = apply_offline(&store, &key, &mut creds, AdminOp::Audit { limit: 10 });
        let kinds: Vec<_> = r.events.unwrap().iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [
                AuditKind::CredentialAdded,
                AuditKind::CredentialAdded,
                AuditKind::CredentialRevoked
            ]
        );
        store.close().unwrap();
    }

    fn new_psk(endpoint: &str, identity: &str, key: &[u8]) -> NewCredential {
        NewCredential {
            endpoint: endpoint.into(),
            secret: psk(endpoint, identity, key).secret,
        }
    }

    #[tokio::test]
    async fn an_import_is_checked_whole_then_applied_with_an_audit_entry_each() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb"), StoreConfig::default()).unwrap();
        let key = SecretsKey::generate().unwrap();
        let mut creds = Credentials::new();
        assert!(apply_offline(&store, &key, &mut creds, add_psk("old", "id-old", b"k")).ok);
        let chunk = vec![
            new_psk("old", "id-old2", b"k2"),
            new_psk("new-1", "id-1", b"k1"),
            new_psk("new-2", "id-2", b"k2"),
        ];

        // A check changes nothing and says what would happen.
        let (r, closing) = apply_import(&store, &key, &mut creds, chunk.clone(), true);
        assert!(r.ok, "{r:?}");
        let report = r.import.unwrap();
        assert_eq!((report.imported, report.replaced), (3, 1));
        assert!(closing.is_empty());
        assert_eq!(creds.len(), 1);

        // One bad entry refuses the chunk, naming it and the endpoint in the way.
        let mut bad = chunk.clone();
        bad.push(new_psk("thief", "id-old", b"k"));
        assert!(apply_offline(&store, &key, &mut creds, add_psk("keeper", "id-k", b"k")).ok);
        bad.push(new_psk("thief-2", "id-k", b"k"));
        let (r, _) = apply_import(&store, &key, &mut creds, bad, false);
        assert!(!r.ok);
        assert!(r.error.unwrap().contains("1 of 5 credentials refused"));
        let refused = r.import.unwrap().refused;
        assert_eq!(
            refused.len(),
            1,
            "id-old is freed by the same chunk: {refused:?}"
        );
        assert_eq!(refused[0].index, 4);
        assert_eq!(refused[0].bound_to.as_deref(), Some("keeper"));
        assert_eq!(creds.len(), 2);

        let (r, closing) = apply_import(&store, &key, &mut creds, chunk, false);
        assert!(r.ok, "{r:?}");
        assert_eq!(r.import.map(|i| (i.imported, i.replaced)), Some((3, 1)));
        assert_eq!(closing, ["old"]);
        assert_eq!(creds.psk(b"id-old2"), Some(("old", &b"k2"[..])));
        assert_eq!(creds.psk(b"id-old"), None);
        store.flush().await.unwrap();
        let events = audit::recent(&store, 100).unwrap();
        let added: Vec<_> = events
            .iter()
            .filter(|e| e.kind == AuditKind::CredentialAdded)
            .map(|e| (e.endpoint.clone().unwrap(), e.detail.clone()))
            .collect();
        assert_eq!(added.len(), 5, "{added:?}");
        assert!(added.contains(&("old".into(), "psk id-old2 (replaces psk id-old)".into())));
        assert!(added.contains(&("new-2".into(), "psk id-2".into())));

        let too_many = vec![new_psk("x", "y", b"z"); MAX_IMPORT_CHUNK + 1];
        let (r, _) = apply_import(&store, &key, &mut creds, too_many, true);
        assert!(r.error.unwrap().contains("at most 5000"));
        store.close().unwrap();
    }

    /// A stand-in for the runtime: applies requests with `apply_offline`.
    fn runtime(store: Store, mut rx: mpsc::Receiver<AdminRequest>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let key = SecretsKey::from_bytes([7; 32]);
            let mut creds = Credentials::new();
            while let Some(req) = rx.recv().await {
                let reply = apply_offline(&store, &key, &mut creds, req.op);
                let _ = store.flush().await;
                let _ = req.reply.send(reply);
            }
        })
    }

    #[tokio::test]
    async fn the_socket_serves_requests_and_refuses_bad_ones() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb"), StoreConfig::default()).unwrap();
        let sock = dir.path().join("admin.sock");
        // No server yet: the client sees NotFound, the CLI's cue to work offline.
        let e = call(&sock, &AdminOp::DeviceList).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        // A stale socket file (its server died) is ConnectionRefused, and is replaced.
        drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
        let e = call(&sock, &AdminOp::DeviceList).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);

        let (tx, rx) = mpsc::channel(8);
        let rt = runtime(store.clone(), rx);
        let listener = bind(&sock).unwrap();
        let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // A second server on the same socket is refused.
        assert_eq!(bind(&sock).unwrap_err().kind(), io::ErrorKind::AddrInUse);
        let server = tokio::spawn(listener.run(tx));

        let r = call(&sock, &add_psk("dev-1", "id-1", b"0123456789abcdef"))
            .await
            .unwrap();
        assert!(r.ok, "{r:?}");
        let r = call(&sock, &AdminOp::DeviceList).await.unwrap();
        let devices = r.devices.unwrap();
        assert_eq!(devices.len(), 1);
        assert_eq!(devices[0].endpoint, "dev-1");
        let r = call(&sock, &AdminOp::Audit { limit: 5 }).await.unwrap();
        assert_eq!(r.events.unwrap()[0].kind, AuditKind::CredentialAdded);

        // Malformed and oversized requests get an error reply, not a hang.
        let mut s = UnixStream::connect(&sock).await.unwrap();
        s.write_all(b"{\"op\":\"nope\"}\n").await.unwrap();
        let mut rd = BufReader::new(&mut s);
        let line = read_line(&mut rd, 4096).await.unwrap().unwrap();
        let r: AdminReply = serde_json::from_slice(&line).unwrap();
        assert!(!r.ok && r.error.unwrap().contains("bad request"));
        let big = vec![b'x'; MAX_REQUEST_LEN + 10];
        let mut s = UnixStream::connect(&sock).await.unwrap();
        let (mut r_half, mut w_half) = s.split();
        let writer = async {
            let _ = w_half.write_all(&big).await;
            let _ = w_half.write_all(b"\n").await;
        };
        let reader = async {
            let mut rd = BufReader::new(&mut r_half);
            read_line(&mut rd, 4096).await.unwrap().unwrap()
        };
        let (_, line) = tokio::join!(writer, reader);
        let r: AdminReply = serde_json::from_slice(&line).unwrap();
        assert!(r.error.unwrap().contains("longer than"));

        // The runtime going away ends the server and removes the socket.
        rt.abort();
        let _ = rt.await;
        server.await.unwrap().unwrap();
        assert!(!sock.exists());
        store.close().unwrap();
    }
}
