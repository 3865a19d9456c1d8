//! The cluster's credential changes through the shared admin log
//! ([`crate::cluster::admin_log`]): an operation asked of this node is appended, not applied;
//! every entry of the log, this node's included, is applied here in the log's order, and the
//! caller who asked is answered once its entry is applied and committed. Starting, the node
//! first applies what the log holds beyond the last entry it applied.
//!
//! The position (the last entry applied) is written after the entry's own writes, and the
//! store commits in order, so it is never ahead of them; a crash between the two applies the
//! entry again at the next start, which ends in the same credentials (every operation sets
//! state; the audit log shows the change twice).
use super::Shell;
use crate::cluster::admin_log::{AdminLog, Entry, LogError};
use crate::config::redact_url;
use crate::config::Config;
use crate::provisioning::admin::AdminOp;
use crate::provisioning::admin::{self, AdminReply, AdminRequest, Refusal};
use crate::provisioning::credentials::{CredentialSet, Credentials};
use crate::provisioning::secrets::SecretsKey;
use crate::store::{Store, Table};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Where the id of the last entry applied is kept, in [`Table::Meta`].
const LAST_APPLIED: &[u8] = b"cluster.admin_log.last";
/// Entries read from the log at once.
const READ_BATCH: usize = 512;
/// How long one `XREAD` waits for a new entry before asking again.
const READ_BLOCK: Duration = Duration::from_secs(5);
/// Requests appended by this node and not yet applied, at most (more are refused: each one
/// is an operator waiting for an answer, so this is never reached in practice).
const MAX_WAITING: usize = 4096;

/// An entry read from the log, for the server task.
#[derive(Debug)]
pub(crate) struct Replicated {
    /// Its id in the log.
    pub(crate) id: String,
    /// The entry.
    pub(crate) entry: Entry,
}

/// This node's side of the log.
#[derive(Debug)]
pub(crate) struct Replication {
    pub(crate) node: u8,
    /// For appending.
    pub(crate) log: AdminLog,
    /// Callers whose appended operation is not applied yet, by request number.
    pub(crate) waiting: HashMap<u64, oneshot::Sender<AdminReply>>,
}

impl Shell {
    /// A credential change asked of this node: appended to the log; the caller is answered
    /// when the entry comes back and is applied.
    pub(super) fn append(&mut self, req: AdminRequest) {
        let Some(r) = self.replication.as_mut() else {
            return;
        };
        r.waiting.retain(|_, w| !w.is_closed());
        if r.waiting.len() >= MAX_WAITING {
            let _ = req.reply.send(AdminReply::refused(
                Refusal::Internal,
                "too many credential changes waiting for the cluster's admin log",
            ));
            return;
        }
        let request = rand::random();
        let entry = Entry {
            origin: r.node,
            request,
            op: req.op,
        };
        let sealed = entry.seal(&self.secrets);
        let (applied, wait) = oneshot::channel();
        r.waiting.insert(request, applied);
        let mut log = r.log.clone();
        let reply = req.reply;
        let mut reply = reply;
        tokio::spawn(async move {
            let answer = match log.append(&sealed).await {
                Err(e) => AdminReply::refused(
                    Refusal::Internal,
                    format!("the cluster's admin log (redis): {e}; if the change reached the log it is applied all the same (see `device list`)"),
                ),
                Ok(_) => tokio::select! {
                    applied = wait => applied.unwrap_or_else(|_| {
                        AdminReply::error("the server stopped before the change was applied")
                    }),
                    // The caller gave up: its slot goes at the next append.
                    () = reply.closed() => return,
                },
            };
            let _ = reply.send(answer);
        });
    }

    /// An entry of the log: applied as the operation it holds, then recorded as applied; its
    /// caller, if this node appended it, answered once both are committed.
    pub(super) fn replicated(&mut self, now: Instant, r: Replicated) {
        let entry = r.entry;
        let mine = self
            .replication
            .as_ref()
            .is_some_and(|rep| rep.node == entry.origin);
        let (reply, _) = self.run(now, entry.op);
        let waiting = mine
            .then(|| {
                self.replication
                    .as_mut()
                    .and_then(|rep| rep.waiting.remove(&entry.request))
            })
            .flatten()
            .map(|w| (reply, w));
        if let Err(e) = self
            .store
            .put(Table::Meta, LAST_APPLIED.to_vec(), r.id.into_bytes())
        {
            tracing::error!(error = %e, "recording the admin log position failed");
        }
        match waiting {
            Some((reply, w)) => self.answer_admin(now, reply, None, w),
            None => self.drain(now),
        }
    }
}

/// Reads the log after `after`, handing each entry to the server task in order, until the
/// server task is gone (noticed within [`READ_BLOCK`]). Redis being away is logged and waited out.
pub(crate) async fn tail(
    mut log: AdminLog,
    key: Arc<SecretsKey>,
    mut after: String,
    to_server: mpsc::Sender<Replicated>,
) {
    let mut failing = false;
    loop {
        if to_server.is_closed() {
            return;
        }
        let batch = match log.read_after(&after, READ_BATCH, Some(READ_BLOCK)).await {
            Ok(b) => {
                if std::mem::take(&mut failing) {
                    tracing::info!("cluster admin log readable again");
                }
                b
            }
            Err(e) => {
                if !std::mem::replace(&mut failing, true) {
                    tracing::warn!(error = %e, "cluster admin log unreadable; credential changes from other nodes wait");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        for (id, sealed) in batch {
            let Some(entry) = open(&key, &id, &sealed) else {
                // Applying on past it would leave this node without a change the others
                // have; stopping keeps the gap visible (fix the key and restart: the node
                // applies from here).
                tracing::error!(%id, "cluster admin log: this node applies no more changes until it restarts with the cluster's secrets key");
                return;
            };
            after.clone_from(&id);
            if to_server.send(Replicated { id, entry }).await.is_err() {
                return;
            }
        }
    }
}

fn open(key: &SecretsKey, id: &str, sealed: &[u8]) -> Option<Entry> {
    match Entry::open(key, sealed) {
        Ok(e) => Some(e),
        Err(e) => {
            tracing::error!(%id, error = %e, "cluster admin log entry does not open: does every node use the same secrets key file?");
            None
        }
    }
}

/// The endpoints whose device credential `op` may change: their stored DTLS sessions were
/// made with what may no longer be their key.
fn endpoints_changed(op: &AdminOp) -> Vec<String> {
    match op {
        AdminOp::DeviceAdd { credential } => vec![credential.endpoint.clone()],
        AdminOp::DeviceRevoke { endpoint } => vec![endpoint.clone()],
        AdminOp::DeviceImport { credentials, .. } => {
            credentials.iter().map(|c| c.endpoint.clone()).collect()
        }
        _ => Vec::new(),
    }
}

/// What [`catch_up`] did.
pub(crate) struct CaughtUp {
    /// The id to read on from.
    pub(crate) after: String,
    /// Endpoints whose device credential may have changed: their stored sessions are not
    /// restored (the devices handshake again with their current key).
    pub(crate) stale: HashSet<String>,
}

/// Applies what the log holds beyond the last entry this node applied, straight to the store
/// (nothing runs yet).
pub(crate) async fn catch_up(
    log: &mut AdminLog,
    store: &Store,
    key: &SecretsKey,
    config: &Config,
) -> anyhow::Result<CaughtUp> {
    let mut after = match store.get(Table::Meta, LAST_APPLIED)? {
        Some(id) => String::from_utf8(id).unwrap_or_else(|_| "0".into()),
        None => "0".into(),
    };
    let mut indexes: HashMap<CredentialSet, Credentials> = HashMap::new();
    let mut applied = 0u64;
    let mut stale = HashSet::new();
    loop {
        let batch = log.read_after(&after, READ_BATCH, None).await?;
        if batch.is_empty() {
            break;
        }
        for (id, sealed) in batch {
            let Some(entry) = open(key, &id, &sealed) else {
                anyhow::bail!("cluster admin log entry {id} does not open: this node's secrets key is not the one the cluster's log is sealed with");
            };
            {
                stale.extend(endpoints_changed(&entry.op));
                let set = entry.op.credential_set().unwrap_or_default();
                let creds = match indexes.entry(set) {
                    std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                    std::collections::hash_map::Entry::Vacant(v) => {
                        v.insert(admin::load_offline(store, key, config, set)?)
                    }
                };
                admin::apply_offline(store, key, creds, entry.op);
                applied += 1;
            }
            after = id;
        }
        store.put(
            Table::Meta,
            LAST_APPLIED.to_vec(),
            after.clone().into_bytes(),
        )?;
        store.flush().await?;
    }
    tracing::info!(applied, last = %after, "cluster admin log caught up");
    Ok(CaughtUp { after, stale })
}

/// `LogError` as the start reports it.
pub(crate) fn describe(e: LogError, url: &str) -> anyhow::Error {
    anyhow::Error::new(e).context(format!("the cluster's shared store {}", redact_url(url)))
}
