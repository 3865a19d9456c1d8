//! Devices' state shared with the other nodes of a cluster ([`crate::cluster::devices`]),
//! driven for the server task: the core's writes of registrations, observations and queued
//! commands are mirrored to Redis as the device's owner (at the epoch this node holds it);
//! a device the core does not hold is claimed and its state handed to the core
//! ([`ServerCore::adopt`](crate::core::ServerCore::adopt)); a device another node took over
//! is handed back to the core to forget ([`ServerCore::hand_over`](crate::core::ServerCore::hand_over)).
//!
//! One task talks to Redis for this node, in the order the server task asked: a device's
//! writes cannot overtake its claim, and everything waiting is sent as one pipeline, so the
//! cost per write is a share of one round trip. The node learns it lost a device three ways:
//! the claiming node publishes it on this node's channel; a write is refused; or a check of
//! every device it holds — at start, after the channel reconnected, and after the node was
//! stopped for a while (its clock jumped), when messages may have been missed.
//!
//! The server task never waits for Redis: writes are queued (bounded; a write that does not
//! fit is counted and logged, and that device's shared state is behind until its next write),
//! and a device waiting to be claimed waits in the core, its requests parked.
use super::Shell;
use crate::cluster::devices::{self, FieldOp};
use crate::core::persist::StoreOp;
use crate::core::shared::{Found, Miss};
use crate::metrics::{ClusterDevices, Metrics};
use crate::store::Table;
use futures_util::StreamExt;
use redis::aio::ConnectionManager;
use redis::{RedisResult, Value};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc;

/// Jobs waiting for the Redis task at most.
const MAX_JOBS: usize = 65_536;
/// Jobs sent to Redis as one pipeline at most.
const BATCH: usize = 512;
/// A gap this long between two ticks of the Redis task means the process was stopped (or
/// starved): messages on its channel may be lost, so every device it holds is checked.
const PAUSE: Duration = Duration::from_secs(5);
/// How often the Redis task looks at the clock for [`PAUSE`].
const TICK: Duration = Duration::from_secs(1);

/// What the server task asks of the Redis task.
#[derive(Debug)]
pub(crate) enum Job {
    /// Mirror a write of the core.
    Write(StoreOp),
    /// Claim a device the core does not hold.
    Claim(Miss),
    /// Another node claimed the device at this epoch (heard on this node's channel).
    Lost { epoch: u64, endpoint: String },
    /// The core forgot the device: its writes since [`Owned::Lost`] were its forgetting,
    /// which are not mirrored.
    HandedOver(String),
    /// Check every device held.
    Recheck,
}

/// What the Redis task tells the server task.
#[derive(Debug)]
pub(crate) enum Owned {
    /// The answer to a claim.
    Adopt { endpoint: String, found: Found },
    /// Another node owns the device now.
    Lost(String),
}

/// The server task's side.
#[derive(Debug)]
pub(crate) struct Ownership {
    jobs: mpsc::Sender<Job>,
    metrics: Arc<Metrics>,
}

impl Ownership {
    /// Mirrors `op` if it is a device's shared state.
    pub(crate) fn write(&self, op: &StoreOp) {
        let (StoreOp::Put(t, ..) | StoreOp::Delete(t, _) | StoreOp::DeletePrefix(t, _)) = op;
        if !matches!(t, Table::Registrations | Table::Observations | Table::Queue) {
            return;
        }
        if self.jobs.try_send(Job::Write(op.clone())).is_err() {
            self.metrics
                .cluster_devices(ClusterDevices::WritesFailed, 1);
            tracing::error!("shared store queue full: a device's write is not mirrored");
        }
    }

    /// Claims `miss`'s device; `false` if it cannot be asked now.
    pub(crate) fn claim(&self, miss: Miss) -> bool {
        self.jobs.try_send(Job::Claim(miss)).is_ok()
    }

    /// The core forgot `endpoint` (and wrote so).
    pub(crate) fn handed_over(&self, endpoint: String) {
        // Waiting would stall the server task; when the queue is full the marker is late,
        // and the device's writes are skipped until it arrives, which is what is wanted.
        let jobs = self.jobs.clone();
        if let Err(mpsc::error::TrySendError::Full(job)) = jobs.try_send(Job::HandedOver(endpoint))
        {
            tokio::spawn(async move {
                let _ = jobs.send(job).await;
            });
        }
    }
}

impl Shell {
    /// Claims the devices the core asked for; one that cannot be asked is answered at once.
    /// Returns whether the core was given anything.
    pub(super) fn claim_misses(&mut self, now: Instant) -> bool {
        let mut gave = false;
        while let Some(miss) = self.stack.core_mut().poll_miss() {
            let Some(o) = self.ownership.as_ref() else {
                break;
            };
            let endpoint = miss.endpoint.clone();
            if !o.claim(miss) {
                tracing::warn!(endpoint = %endpoint, "shared store queue full: the device's requests are answered without it");
                self.stack
                    .core_mut()
                    .adopt(now, &endpoint, Found::Unavailable);
                gave = true;
            }
        }
        gave
    }

    /// What the Redis task found.
    pub(super) fn owned(&mut self, now: Instant, owned: Owned) {
        match owned {
            Owned::Adopt { endpoint, found } => {
                let report = self.stack.core_mut().adopt(now, &endpoint, found);
                if report.registrations > 0 {
                    self.stack
                        .metrics()
                        .cluster_devices(ClusterDevices::TakenOver, 1);
                }
            }
            Owned::Lost(endpoint) => {
                if self.stack.core_mut().hand_over(now, &endpoint) {
                    self.stack
                        .metrics()
                        .cluster_devices(ClusterDevices::HandedOver, 1);
                }
                // Its forgetting goes to the store (and past the Redis task) before the
                // marker that lets the device's writes through again.
                self.drain(now);
                if let Some(o) = &self.ownership {
                    o.handed_over(endpoint);
                }
            }
        }
    }
}

/// A job sent in a pipeline, for reading its answer.
enum Sent {
    Write(String, u64),
    Claim(String),
    Check(String, u64),
}

/// The Redis task's state.
struct Mirror {
    conn: ConnectionManager,
    node: u8,
    /// The epoch each device this node owns is held at.
    epochs: HashMap<String, u64>,
    /// Devices lost, whose forgetting the core has not finished: their writes are skipped.
    handing_over: HashSet<String>,
    to_server: mpsc::Sender<Owned>,
    metrics: Arc<Metrics>,
}

/// Starts the Redis task, owning the devices `epochs` (checked at start), and the listener
/// of this node's channel (`pubsub`, subscribed before the check). Returns the server task's
/// side and where the task's answers arrive.
pub(crate) fn start(
    conn: ConnectionManager,
    client: redis::Client,
    pubsub: redis::aio::PubSub,
    node: u8,
    epochs: HashMap<String, u64>,
    metrics: Arc<Metrics>,
) -> (Ownership, mpsc::Receiver<Owned>) {
    let (jobs, rx) = mpsc::channel(MAX_JOBS);
    let (to_server, owned) = mpsc::channel(1024);
    let mirror = Mirror {
        conn,
        node,
        epochs,
        handing_over: HashSet::new(),
        to_server,
        metrics: metrics.clone(),
    };
    tokio::spawn(mirror.serve(rx));
    tokio::spawn(listen(client, pubsub, node, jobs.clone()));
    (Ownership { jobs, metrics }, owned)
}

impl Mirror {
    async fn serve(mut self, mut jobs: mpsc::Receiver<Job>) {
        let mut last_tick = SystemTime::now();
        let mut tick = tokio::time::interval(TICK);
        loop {
            let first = tokio::select! {
                job = jobs.recv() => match job {
                    Some(j) => j,
                    None => return,
                },
                _ = tick.tick() => {
                    let now = SystemTime::now();
                    let gap = now.duration_since(last_tick).unwrap_or_default();
                    last_tick = now;
                    if gap < PAUSE {
                        continue;
                    }
                    tracing::warn!(paused_s = gap.as_secs(), "this node was stopped for a while: checking which devices it still owns");
                    Job::Recheck
                }
            };
            let mut batch = vec![first];
            while batch.len() < BATCH {
                match jobs.try_recv() {
                    Ok(j) => batch.push(j),
                    Err(_) => break,
                }
            }
            if self.batch(batch).await.is_err() {
                return;
            }
        }
    }

    /// Sends one batch of jobs as a pipeline and reads the answers. `Err`: the server task
    /// is gone.
    async fn batch(&mut self, batch: Vec<Job>) -> Result<(), ()> {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        let mut sent = Vec::new();
        for job in batch {
            match job {
                Job::Write(op) => self.write(&mut pipe, &mut sent, &op),
                Job::Claim(miss) => {
                    pipe.cmd("EVAL")
                        .arg(devices::CLAIM)
                        .arg(1)
                        .arg(devices::key(&miss.endpoint))
                        .arg(self.node)
                        .arg(miss.location.as_deref().unwrap_or(""))
                        .arg(&miss.endpoint);
                    sent.push(Sent::Claim(miss.endpoint));
                }
                Job::Lost { epoch, endpoint } => {
                    if self.epochs.get(&endpoint).is_some_and(|e| *e < epoch) {
                        self.lost(endpoint).await?;
                    }
                }
                Job::HandedOver(endpoint) => {
                    self.handing_over.remove(&endpoint);
                }
                Job::Recheck => {
                    let held: Vec<(String, u64)> =
                        self.epochs.iter().map(|(k, v)| (k.clone(), *v)).collect();
                    for chunk in held.chunks(BATCH) {
                        let mut check = redis::pipe();
                        check.ignore_errors();
                        let mut checked = Vec::new();
                        for (endpoint, epoch) in chunk {
                            check
                                .cmd("EVAL")
                                .arg(devices::OWNED)
                                .arg(1)
                                .arg(devices::key(endpoint))
                                .arg(self.node);
                            checked.push(Sent::Check(endpoint.clone(), *epoch));
                        }
                        self.send(check, checked).await?;
                    }
                }
            }
        }
        if sent.is_empty() {
            return Ok(());
        }
        self.send(pipe, sent).await
    }

    fn write(&mut self, pipe: &mut redis::Pipeline, sent: &mut Vec<Sent>, op: &StoreOp) {
        let Some((endpoint, ops, expires)) = devices::shared_write(op) else {
            return;
        };
        if self.handing_over.contains(&endpoint) {
            return;
        }
        // Not owned (lost, or taken while the store was away): nothing of it is written.
        let Some(epoch) = self.epochs.get(&endpoint).copied() else {
            return;
        };
        let cmd = pipe
            .cmd("EVAL")
            .arg(devices::WRITE)
            .arg(1)
            .arg(devices::key(&endpoint))
            .arg(self.node)
            .arg(epoch)
            .arg(expires.map(|e| e.to_string()).unwrap_or_default());
        for o in &ops {
            for a in FieldOp::args(o) {
                cmd.arg(a);
            }
        }
        sent.push(Sent::Write(endpoint, epoch));
    }

    async fn send(&mut self, pipe: redis::Pipeline, sent: Vec<Sent>) -> Result<(), ()> {
        let answers: RedisResult<Vec<RedisResult<Value>>> = pipe.query_async(&mut self.conn).await;
        let answers = match answers {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, jobs = sent.len(), "shared store unreachable");
                (0..sent.len())
                    .map(|_| {
                        Err(redis::RedisError::from((
                            redis::ErrorKind::Io,
                            "unreachable",
                        )))
                    })
                    .collect()
            }
        };
        for (s, answer) in sent.into_iter().zip(answers) {
            match s {
                Sent::Write(endpoint, epoch) => match answer {
                    Ok(Value::Int(0)) => {
                        self.metrics
                            .cluster_devices(ClusterDevices::WritesRefused, 1);
                        if self.epochs.get(&endpoint) == Some(&epoch) {
                            tracing::info!(endpoint = %endpoint, "another node owns the device now");
                            self.lost(endpoint).await?;
                        }
                    }
                    // The registration ended: nothing of it is left to own.
                    Ok(Value::Int(2)) => {
                        if self.epochs.get(&endpoint) == Some(&epoch) {
                            self.epochs.remove(&endpoint);
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        self.metrics
                            .cluster_devices(ClusterDevices::WritesFailed, 1);
                        tracing::warn!(endpoint = %endpoint, error = %e, "shared store write failed");
                    }
                },
                Sent::Claim(endpoint) => {
                    let found = match answer.map(|a| devices::claimed(&endpoint, a)) {
                        Ok(Ok((epoch, found))) => {
                            if let Some(e) = epoch {
                                self.epochs.insert(endpoint.clone(), e);
                            }
                            found
                        }
                        Ok(Err(what)) => {
                            tracing::warn!(endpoint = %endpoint, what, "unexpected answer from the shared store");
                            Found::Unavailable
                        }
                        Err(e) => {
                            tracing::warn!(endpoint = %endpoint, error = %e, "claiming a device failed");
                            Found::Unavailable
                        }
                    };
                    let adopt = Owned::Adopt { endpoint, found };
                    self.to_server.send(adopt).await.map_err(|_| ())?;
                }
                Sent::Check(endpoint, epoch) => match answer {
                    Ok(Value::Int(e)) if u64::try_from(e).ok() == Some(epoch) => {}
                    Ok(_) => {
                        if self.epochs.get(&endpoint) == Some(&epoch) {
                            self.lost(endpoint).await?;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(endpoint = %endpoint, error = %e, "checking a device's owner failed")
                    }
                },
            }
        }
        Ok(())
    }

    async fn lost(&mut self, endpoint: String) -> Result<(), ()> {
        self.epochs.remove(&endpoint);
        self.handing_over.insert(endpoint.clone());
        self.to_server
            .send(Owned::Lost(endpoint))
            .await
            .map_err(|_| ())
    }
}

/// Hears this node's channel: each device another node claimed from it. When the channel
/// reconnects, every device held is checked (messages may have been missed meanwhile).
async fn listen(
    client: redis::Client,
    first: redis::aio::PubSub,
    node: u8,
    jobs: mpsc::Sender<Job>,
) {
    let mut pubsub = Some(first);
    loop {
        if let Some(ps) = pubsub.take() {
            let mut messages = ps.into_on_message();
            while let Some(msg) = messages.next().await {
                let Some((epoch, endpoint)) = devices::lost_message(msg.get_payload_bytes()) else {
                    continue;
                };
                if jobs.send(Job::Lost { epoch, endpoint }).await.is_err() {
                    return;
                }
            }
            tracing::warn!(node, "shared store channel closed; reconnecting");
        }
        if jobs.is_closed() {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        match subscribe(&client, node).await {
            Ok(ps) => {
                pubsub = Some(ps);
                if jobs.send(Job::Recheck).await.is_err() {
                    return;
                }
            }
            Err(e) => tracing::warn!(error = %e, "shared store channel: subscribing failed"),
        }
    }
}

/// A connection subscribed to `node`'s channel.
pub(crate) async fn subscribe(client: &redis::Client, node: u8) -> RedisResult<redis::aio::PubSub> {
    let mut ps = client.get_async_pubsub().await?;
    ps.subscribe(devices::channel(node)).await?;
    Ok(ps)
}

/// At start: of the devices restored from this node's store, the ones it still owns, with
/// their epochs, and the ones no node has anything of (registered while the store was away,
/// or before the node joined a cluster). The others were taken over while it was down, or
/// ended.
pub(crate) async fn owned_at_start(
    conn: &mut ConnectionManager,
    node: u8,
    endpoints: &[String],
) -> RedisResult<(HashMap<String, u64>, Vec<String>)> {
    let mut owned = HashMap::new();
    let mut unshared = Vec::new();
    for chunk in endpoints.chunks(BATCH) {
        let mut pipe = redis::pipe();
        for endpoint in chunk {
            pipe.cmd("EVAL")
                .arg(devices::OWNED)
                .arg(1)
                .arg(devices::key(endpoint))
                .arg(node);
        }
        let epochs: Vec<i64> = pipe.query_async(conn).await?;
        for (endpoint, epoch) in chunk.iter().zip(epochs) {
            match epoch {
                -1 => unshared.push(endpoint.clone()),
                1.. => {
                    owned.insert(endpoint.clone(), epoch.unsigned_abs());
                }
                _ => {}
            }
        }
    }
    Ok((owned, unshared))
}

/// At start: claims the devices no node has anything of, so this node's records of them are
/// shared from now on. Returns their epochs.
pub(crate) async fn claim_unshared(
    conn: &mut ConnectionManager,
    node: u8,
    endpoints: &[String],
) -> RedisResult<HashMap<String, u64>> {
    let mut claimed = HashMap::new();
    for chunk in endpoints.chunks(BATCH) {
        let mut pipe = redis::pipe();
        for endpoint in chunk {
            pipe.cmd("EVAL")
                .arg(devices::CLAIM)
                .arg(1)
                .arg(devices::key(endpoint))
                .arg(node)
                .arg("")
                .arg(endpoint);
        }
        let answers: Vec<Value> = pipe.query_async(conn).await?;
        for (endpoint, answer) in chunk.iter().zip(answers) {
            if let Ok((Some(epoch), _)) = devices::claimed(endpoint, answer) {
                claimed.insert(endpoint.clone(), epoch);
            }
        }
    }
    Ok(claimed)
}
