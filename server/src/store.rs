//! The one durable store: everything that must survive a restart
//! lives in one redb database.
//!
//! Writes go through a single writer thread. It takes the first pending write, then every
//! write that queued up behind it (up to `max_batch`), applies them in one transaction and
//! commits once: while one commit waits for the disk, the next batch gathers. Under light load
//! each write commits alone and at once. Under load (the last commit, of several writes, ended
//! moments ago) the writer first sleeps `gather` (4 ms by default, `[server]
//! store_commit_gather_ms`) while more writes queue, then commits them together, so that a
//! stream of small writes (a notification's outbox entry each) shares one fsync among dozens
//! instead of a handful: the fsync, not the writes, is most of the store's CPU. Callers that need to know a write is durable await [`Store::flush`]; the hot
//! path (registration updates, queued commands) does not.
//!
//! Reads use redb's MVCC read transactions from any thread and never wait for the writer.
//! Keys and values are bytes; the typed records above this layer choose their encoding.
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

/// The tables of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// Registrations by endpoint name.
    Registrations,
    /// Observations by endpoint name and token.
    Observations,
    /// Commands queued for sleeping devices, by endpoint name and sequence.
    Queue,
    /// Small facts about the store itself (schema version, counters).
    Meta,
    /// Device credentials by endpoint name (see [`crate::provisioning::credentials`]).
    Credentials,
    /// The security audit log, keyed by time (see [`crate::provisioning::audit`]).
    Audit,
    /// Established DTLS sessions by handle, sealed with the secrets key, so devices continue
    /// after a restart without a handshake.
    Sessions,
    /// MQTT messages not yet acknowledged by the broker, by sequence number (see
    /// [`crate::bridge`]).
    Outbox,
    /// The MQTT bridge's own state: requests awaiting their result, observations' request
    /// ids, device shadows.
    Bridge,
    /// The bootstrap server's credentials by endpoint name: the factory bootstrap accounts
    /// devices are born with (OMA LwM2M TS 1.2 Core §5.2.2), in the record format of
    /// [`Table::Credentials`].
    BootstrapCredentials,
    /// Endpoints whose certificates are refused even though they chain to a trusted CA (a
    /// device known only through the PKI, revoked), by endpoint name.
    DeniedEndpoints,
    /// Firmware packages' metadata by package id (see [`crate::firmware::packages`]); the
    /// bytes are files under `{data_dir}/firmware/`.
    FirmwarePackages,
    /// Firmware update campaigns and each target device's phase (see
    /// [`crate::firmware::campaigns`]).
    FirmwareCampaigns,
}

impl Table {
    fn def(self) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
        TableDefinition::new(self.name())
    }

    /// The table's name in the database, as log lines show it.
    pub fn name(self) -> &'static str {
        match self {
            Table::Registrations => "registrations",
            Table::Observations => "observations",
            Table::Queue => "queue",
            Table::Meta => "meta",
            Table::Credentials => "credentials",
            Table::Audit => "audit",
            Table::Sessions => "dtls_sessions",
            Table::Outbox => "mqtt_outbox",
            Table::Bridge => "mqtt_bridge",
            Table::BootstrapCredentials => "bootstrap_credentials",
            Table::DeniedEndpoints => "denied_endpoints",
            Table::FirmwarePackages => "firmware_packages",
            Table::FirmwareCampaigns => "firmware_campaigns",
        }
    }

    /// Every table.
    pub const ALL: [Table; 13] = [
        Table::Registrations,
        Table::Observations,
        Table::Queue,
        Table::Meta,
        Table::Credentials,
        Table::Audit,
        Table::Sessions,
        Table::Outbox,
        Table::Bridge,
        Table::BootstrapCredentials,
        Table::DeniedEndpoints,
        Table::FirmwarePackages,
        Table::FirmwareCampaigns,
    ];
}

/// Longest key shown whole in a log line.
const MAX_SHOWN_KEY: usize = 64;

/// A stored key as log lines show it: as text if it is short printable UTF-8, else as hex
/// (cut after `MAX_SHOWN_KEY` bytes), so that a garbled key can neither flood the log nor
/// forge a line in it.
pub fn display_key(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(s) if key.len() <= MAX_SHOWN_KEY && !s.chars().any(char::is_control) => s.to_string(),
        _ => {
            let shown = key.get(..MAX_SHOWN_KEY).unwrap_or(key);
            let more = if shown.len() < key.len() { "…" } else { "" };
            format!("0x{}{more}", hex::encode(shown))
        }
    }
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// redb reported an error.
    #[error("store: {0}")]
    Db(#[from] redb::Error),
    /// The writer thread is gone (the store was closed, or it failed earlier).
    #[error("store writer stopped")]
    Closed,
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(impl From<$t> for StoreError {
        fn from(e: $t) -> Self {
            StoreError::Db(e.into())
        }
    })*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

enum Op {
    Put(Table, Vec<u8>, Vec<u8>),
    /// Writes that must commit together: one op is never split across transactions.
    PutBatch(Vec<Write>),
    Delete(Table, Vec<u8>),
    DeletePrefix(Table, Vec<u8>),
    DeleteRange(Table, Vec<u8>, Vec<u8>),
    Flush(tokio::sync::oneshot::Sender<Result<(), String>>),
    Stop,
}

/// One entry of a table: key and value.
pub type Entry = (Vec<u8>, Vec<u8>);

/// Entries of a table, as (key, value) pairs in key order.
pub type Entries = Vec<Entry>;

/// One write of a batch: table, key, value.
pub type Write = (Table, Vec<u8>, Vec<u8>);

/// Tuning of the writer.
#[derive(Debug, Clone, Copy)]
pub struct StoreConfig {
    /// Writes waiting for the writer before [`Store::put`] blocks the caller.
    pub queue_capacity: usize,
    /// Writes applied in one transaction at most.
    pub max_batch: usize,
    /// Under load (the last commit ended less than this ago), how long the writer waits from a
    /// batch's first write for more before it commits: fewer, larger commits (one fsync each)
    /// for at most this much more latency. Idle, a write commits at once.
    pub gather: std::time::Duration,
    /// redb's page cache. Its default (1 GiB) would keep every page ever written in memory;
    /// the server holds its live state itself and reads the store only at start, so a small
    /// cache costs nothing and keeps memory per device small.
    pub cache_bytes: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 65_536,
            max_batch: 8192,
            gather: std::time::Duration::from_millis(4),
            cache_bytes: 32 << 20,
        }
    }
}

/// Counters of the writer, for metrics and the group-commit measurement.
#[derive(Debug, Default)]
pub struct StoreStats {
    /// Writes applied.
    pub writes: std::sync::atomic::AtomicU64,
    /// Transactions committed.
    pub commits: std::sync::atomic::AtomicU64,
}

/// A handle to the store. Cheap to clone; the writer stops when [`Store::close`] is called.
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
    tx: mpsc::SyncSender<Op>,
    writer: Arc<std::sync::Mutex<Option<JoinHandle<()>>>>,
    stats: Arc<StoreStats>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (or creates) the database at `path` and starts its writer thread.
    pub fn open(path: &Path, config: StoreConfig) -> Result<Self, StoreError> {
        let db = Arc::new(
            redb::Builder::new()
                .set_cache_size(config.cache_bytes)
                .create(path)?,
        );
        // Create every table up front so that readers never meet a missing one.
        let txn = db.begin_write()?;
        for t in Table::ALL {
            txn.open_table(t.def())?;
        }
        txn.commit()?;
        let (tx, rx) = mpsc::sync_channel(config.queue_capacity.max(1));
        let stats = Arc::new(StoreStats::default());
        let writer = {
            let db = db.clone();
            let stats = stats.clone();
            std::thread::Builder::new()
                .name("store-writer".into())
                .spawn(move || writer_loop(&db, &rx, &config, &stats))
                .map_err(|e| StoreError::Db(redb::Error::Io(e)))?
        };
        Ok(Self {
            db,
            tx,
            writer: Arc::new(std::sync::Mutex::new(Some(writer))),
            stats,
        })
    }

    fn send(&self, op: Op) -> Result<(), StoreError> {
        self.tx.send(op).map_err(|_| StoreError::Closed)
    }

    /// Queues a write of `value` under `key`. Durable after the next commit.
    pub fn put(&self, table: Table, key: Vec<u8>, value: Vec<u8>) -> Result<(), StoreError> {
        self.send(Op::Put(table, key, value))
    }

    /// Queues writes that are applied in one transaction: after a crash either all of them
    /// are in the store or none is. Durable after the next commit.
    pub fn put_batch(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        self.send(Op::PutBatch(writes))
    }

    /// Queues the removal of `key`.
    pub fn delete(&self, table: Table, key: Vec<u8>) -> Result<(), StoreError> {
        self.send(Op::Delete(table, key))
    }

    /// Queues the removal of every key from `from` (included) to `to` (excluded).
    pub fn delete_range(&self, table: Table, from: Vec<u8>, to: Vec<u8>) -> Result<(), StoreError> {
        self.send(Op::DeleteRange(table, from, to))
    }

    /// Queues the removal of every key that starts with `prefix`.
    pub fn delete_prefix(&self, table: Table, prefix: Vec<u8>) -> Result<(), StoreError> {
        self.send(Op::DeletePrefix(table, prefix))
    }

    /// Waits until every write queued before this call is committed.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.committed()?.await
    }

    /// A future that completes once every write queued before this call is committed; it
    /// borrows nothing, so a caller that must not wait (the server task) can hand it to
    /// another task.
    pub fn committed(
        &self,
    ) -> Result<
        impl std::future::Future<Output = Result<(), StoreError>> + Send + 'static,
        StoreError,
    > {
        let (done, wait) = tokio::sync::oneshot::channel();
        self.send(Op::Flush(done))?;
        Ok(async move {
            match wait.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(StoreError::Db(redb::Error::Corrupted(e))),
                Err(_) => Err(StoreError::Closed),
            }
        })
    }

    /// The value under `key`, as of the last commit.
    pub fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(table.def())?;
        Ok(t.get(key)?.map(|v| v.value().to_vec()))
    }

    /// Every entry whose key starts with `prefix` (all entries for an empty prefix), in key
    /// order, as of the last commit.
    /// Up to `limit` entries with keys from `from` on, in key order, as of the last commit.
    pub fn range(&self, table: Table, from: &[u8], limit: usize) -> Result<Entries, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(table.def())?;
        let mut out = Vec::new();
        for entry in t.range(from..)?.take(limit) {
            let (k, v) = entry?;
            out.push((k.value().to_vec(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// Number of entries in a table, as of the last commit.
    pub fn len(&self, table: Table) -> Result<u64, StoreError> {
        use redb::ReadableTableMetadata;
        let txn = self.db.begin_read()?;
        let t = txn.open_table(table.def())?;
        Ok(t.len()?)
    }

    /// The last entry of a table, as of the last commit.
    pub fn last(&self, table: Table) -> Result<Option<Entry>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(table.def())?;
        let last = t
            .last()?
            .map(|(k, v)| (k.value().to_vec(), v.value().to_vec()));
        Ok(last)
    }

    /// Entries of `table` whose keys start with `prefix`, in key order, as of the last commit.
    pub fn scan(&self, table: Table, prefix: &[u8]) -> Result<Entries, StoreError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(table.def())?;
        let mut out = Vec::new();
        for entry in t.range(prefix..)? {
            let (k, v) = entry?;
            if !k.value().starts_with(prefix) {
                break;
            }
            out.push((k.value().to_vec(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// Writes applied and transactions committed so far.
    pub fn stats(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.stats.writes.load(Relaxed),
            self.stats.commits.load(Relaxed),
        )
    }

    /// The writer's live counters, to read without holding the store (metrics, benchmarks).
    pub fn stats_handle(&self) -> Arc<StoreStats> {
        self.stats.clone()
    }

    /// Commits what is queued and stops the writer. Later writes fail with `Closed`.
    pub fn close(&self) -> Result<(), StoreError> {
        let _ = self.tx.send(Op::Stop);
        let handle = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(h) = handle {
            h.join().map_err(|_| StoreError::Closed)?;
        }
        Ok(())
    }
}

/// Writes in the last batch from which the writer takes the next one as load and gathers.
const GATHER_MIN_BATCH: usize = 4;

fn writer_loop(db: &Database, rx: &mpsc::Receiver<Op>, config: &StoreConfig, stats: &StoreStats) {
    use std::sync::atomic::Ordering::Relaxed;
    use std::time::Instant;
    let max_batch = config.max_batch.max(1);
    let mut stop = false;
    let mut last_commit: Option<Instant> = None;
    let mut last_batch = 0usize;
    while !stop {
        let Ok(first) = rx.recv() else { return };
        let mut batch = vec![first];
        // Under load, sleep through the gathering time instead of waiting on the channel: a
        // receiver blocked on it is woken (a futex call) by every write sent, one per
        // notification; asleep, the writes just queue.
        // Load is a stream of writes, not the two or three of one command or registration:
        // those still commit at once.
        if last_batch >= GATHER_MIN_BATCH
            && last_commit.is_some_and(|t| t.elapsed() < config.gather)
        {
            std::thread::sleep(config.gather);
        }
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        last_batch = batch.len();
        let mut flushes = Vec::new();
        let mut writes = 0u64;
        let result = (|| -> Result<(), StoreError> {
            let mut txn = db.begin_write()?;
            txn.set_durability(Durability::Immediate)?;
            for op in batch {
                match op {
                    Op::Put(t, k, v) => {
                        txn.open_table(t.def())?
                            .insert(k.as_slice(), v.as_slice())?;
                        writes += 1;
                    }
                    Op::PutBatch(batch) => {
                        for (t, k, v) in batch {
                            txn.open_table(t.def())?
                                .insert(k.as_slice(), v.as_slice())?;
                            writes += 1;
                        }
                    }
                    Op::Delete(t, k) => {
                        txn.open_table(t.def())?.remove(k.as_slice())?;
                        writes += 1;
                    }
                    Op::DeletePrefix(t, p) => {
                        let mut table = txn.open_table(t.def())?;
                        let keys: Vec<Vec<u8>> = table
                            .range(p.as_slice()..)?
                            .map_while(|e| e.ok().map(|(k, _)| k.value().to_vec()))
                            .take_while(|k| k.starts_with(&p))
                            .collect();
                        for k in keys {
                            table.remove(k.as_slice())?;
                        }
                        writes += 1;
                    }
                    Op::DeleteRange(t, from, to) => {
                        let mut table = txn.open_table(t.def())?;
                        table.retain_in(from.as_slice()..to.as_slice(), |_, _| false)?;
                        writes += 1;
                    }
                    Op::Flush(done) => flushes.push(done),
                    Op::Stop => stop = true,
                }
            }
            txn.commit()?;
            Ok(())
        })();
        last_commit = Some(Instant::now());
        stats.writes.fetch_add(writes, Relaxed);
        stats.commits.fetch_add(1, Relaxed);
        if let Err(e) = &result {
            tracing::error!(error = %e, "store commit failed");
        }
        for f in flushes {
            let _ = f.send(result.as_ref().map(|_| ()).map_err(|e| e.to_string()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        {
            let s = Store::open(&path, StoreConfig::default()).unwrap();
            s.put(Table::Registrations, b"dev1".to_vec(), b"a".to_vec())
                .unwrap();
            s.put(Table::Registrations, b"dev2".to_vec(), b"b".to_vec())
                .unwrap();
            s.delete(Table::Registrations, b"dev1".to_vec()).unwrap();
            s.close().unwrap();
        }
        let s = Store::open(&path, StoreConfig::default()).unwrap();
        assert_eq!(s.get(Table::Registrations, b"dev1").unwrap(), None);
        assert_eq!(
            s.get(Table::Registrations, b"dev2").unwrap(),
            Some(b"b".to_vec())
        );
        s.close().unwrap();
    }

    #[tokio::test]
    async fn flush_makes_writes_visible_and_prefix_scans_and_deletes_work() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.redb"), StoreConfig::default()).unwrap();
        for (k, v) in [("a/1", "x"), ("a/2", "y"), ("b/1", "z")] {
            s.put(Table::Queue, k.into(), v.into()).unwrap();
        }
        s.flush().await.unwrap();
        let a: Vec<_> = s
            .scan(Table::Queue, b"a/")
            .unwrap()
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        assert_eq!(a, vec![b"x".to_vec(), b"y".to_vec()]);
        s.delete_prefix(Table::Queue, b"a/".to_vec()).unwrap();
        s.flush().await.unwrap();
        assert_eq!(s.scan(Table::Queue, b"").unwrap().len(), 1);
        s.close().unwrap();
        assert!(matches!(
            s.put(Table::Queue, vec![1], vec![1]),
            Err(StoreError::Closed)
        ));
    }

    #[tokio::test]
    async fn ranges_read_and_delete_in_key_order() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("r.redb"), StoreConfig::default()).unwrap();
        for n in 1u64..=10 {
            s.put(Table::Outbox, n.to_be_bytes().to_vec(), vec![n as u8])
                .unwrap();
        }
        s.flush().await.unwrap();
        assert_eq!(s.len(Table::Outbox).unwrap(), 10);
        let page = s.range(Table::Outbox, &4u64.to_be_bytes(), 3).unwrap();
        assert_eq!(
            page.iter().map(|(_, v)| v[0]).collect::<Vec<_>>(),
            vec![4, 5, 6]
        );
        s.delete_range(
            Table::Outbox,
            2u64.to_be_bytes().to_vec(),
            9u64.to_be_bytes().to_vec(),
        )
        .unwrap();
        s.flush().await.unwrap();
        let left: Vec<u8> = s
            .scan(Table::Outbox, b"")
            .unwrap()
            .iter()
            .map(|(_, v)| v[0])
            .collect();
        assert_eq!(left, vec![1, 9, 10]);
        assert_eq!(s.last(Table::Outbox).unwrap().map(|(_, v)| v[0]), Some(10));
        s.close().unwrap();
    }

    #[tokio::test]
    async fn a_batch_commits_in_one_transaction() {
        let dir = tempfile::tempdir().unwrap();
        // One op per transaction: the batch still commits whole, in a single transaction.
        let config = StoreConfig {
            queue_capacity: 16,
            max_batch: 1,
            ..StoreConfig::default()
        };
        let s = Store::open(&dir.path().join("b.redb"), config).unwrap();
        s.flush().await.unwrap();
        let (_, commits_before) = s.stats();
        let batch: Vec<Write> = (0..3000u32)
            .map(|i| (Table::Credentials, i.to_be_bytes().to_vec(), vec![1]))
            .chain([(Table::Audit, b"a".to_vec(), b"x".to_vec())])
            .collect();
        s.put_batch(batch).unwrap();
        s.flush().await.unwrap();
        let (writes, commits) = s.stats();
        assert_eq!(writes, 3001);
        assert_eq!(commits - commits_before, 2, "the batch's and the flush's");
        assert_eq!(s.len(Table::Credentials).unwrap(), 3000);
        assert_eq!(s.get(Table::Audit, b"a").unwrap(), Some(b"x".to_vec()));
        s.close().unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_share_commits() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("g.redb"), StoreConfig::default()).unwrap();
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for i in 0..2000u32 {
                        s.put(
                            Table::Registrations,
                            format!("{w}/{i}").into_bytes(),
                            vec![0; 64],
                        )
                        .unwrap();
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        s.flush().await.unwrap();
        let (writes, commits) = s.stats();
        assert_eq!(writes, 8000);
        assert!(
            commits < writes,
            "{commits} commits for {writes} writes: no grouping"
        );
        assert_eq!(s.scan(Table::Registrations, b"").unwrap().len(), 8000);
        s.close().unwrap();
    }
}
