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
//! Commands (MQTT 5 shared subscription: each reaches one node) for a device this node does
//! not hold are queued in Redis beside the device's state and its owner is woken on its
//! channel; the owner takes them (if it still owns the device) and runs them as if they had
//! come from the broker, so it is the one that sends them and publishes their result. A
//! command for a device whose owner is gone waits there until a node claims the device.
//!
//! The server task never waits for Redis: writes are queued (bounded; a write that does not
//! fit is counted and logged, and that device's shared state is behind until its next write),
//! and a device waiting to be claimed waits in the core, its requests parked.
use super::Shell;
use crate::bridge::link::{Downlink, DownlinkKind};
use crate::cluster::devices::{self, FieldOp, Heard, WaitingDownlink};
use crate::core::persist::StoreOp;
use crate::core::shared::{Found, Miss};
use crate::core::types::CommandId;
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
/// A gap this long between two beats of the server task means the process was stopped (or
/// starved): other nodes may have taken its devices meanwhile, so it acts on none until it
/// has checked which are still its own.
const PAUSE: Duration = Duration::from_secs(5);
/// How often the server task beats (it has a timer at least this often).
const BEAT: Duration = Duration::from_secs(1);
/// Downlink messages held while the node checks its devices after a pause, at most (beyond,
/// they are run at once).
const MAX_HELD: usize = 10_000;

/// A device whose write Redis refused (another node took it), with the ids of the commands
/// those writes queued (the new owner does not have them: they go to it) and of those they
/// recorded as sent (the new owner still has them queued: they must not leave here).
pub(crate) type Refused = (String, Vec<u64>, Vec<u64>);

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
    /// Answered by [`Owned::Checked`] once the jobs before it are done.
    Checked,
    /// Answered once the jobs before it are done (the writes of an input, before what the
    /// input made the core send leaves), with the devices whose writes were refused since the
    /// last barrier: what the core sends them must not leave (see [`Ownership::take_lost`]).
    Barrier(tokio::sync::oneshot::Sender<Vec<Refused>>),
    /// A downlink message for a device this node does not hold: queued for its owner.
    Forward(Downlink),
    /// Commands wait for a device (heard on this node's channel): taken if it is this node's.
    Take(String),
    /// Take the commands waiting for every device this node owns (at start, and after its
    /// channel reconnected: wake-ups may have been missed).
    TakeAll,
    /// Mirror changes of a device's MQTT bridge records.
    Fields(String, Vec<FieldOp>),
}

/// What the Redis task tells the server task.
#[derive(Debug)]
pub(crate) enum Owned {
    /// The answer to a claim, with the commands that waited for the device and the MQTT
    /// bridge's records of it.
    Adopt {
        endpoint: String,
        found: Found,
        commands: Vec<Downlink>,
        bridge: Vec<(Vec<u8>, Vec<u8>)>,
    },
    /// Another node owns the device now (see [`Refused`]).
    Lost(Refused),
    /// Downlink messages to run here: taken for a device this node owns, or for a device no
    /// node knows (answered as the bridge answers for an unknown device).
    Downlinks(Vec<Downlink>),
    /// The check asked after a pause is done (the devices lost were reported before).
    Checked,
}

/// The server task's side.
#[derive(Debug)]
pub(crate) struct Ownership {
    jobs: mpsc::Sender<Job>,
    metrics: Arc<Metrics>,
    /// The server task's last beat.
    beat: Instant,
    /// After a pause, until the check of every device held is done: devices' datagrams are
    /// dropped (they retransmit), timers wait, downlinks are held.
    fenced: bool,
    held: std::collections::VecDeque<Downlink>,
    /// Writes were queued since [`take_wrote`](Self::take_wrote).
    wrote: bool,
    /// Devices lost, reported by the barriers that completed (with the commands whose
    /// queueing was refused): the server task forgets them before it releases what waited
    /// for the barrier.
    lost: Arc<std::sync::Mutex<Vec<Refused>>>,
}

impl Ownership {
    /// Whether writes were queued since the last call: what the core sends from now on waits
    /// until Redis has them ([`barrier`](Self::barrier)), so that a device is never told of
    /// something (its registration, a command sent) the node taking it over would not know.
    pub(crate) fn take_wrote(&mut self) -> bool {
        std::mem::take(&mut self.wrote)
    }

    /// Done when everything queued before it reached Redis (or failed to).
    pub(crate) fn barrier(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let queued = self.jobs.try_send(Job::Barrier(tx)).is_ok();
        if !queued {
            self.metrics
                .cluster_devices(ClusterDevices::WritesFailed, 1);
        }
        let lost = self.lost.clone();
        async move {
            if !queued {
                return;
            }
            if let Ok(refused) = rx.await {
                if let Ok(mut l) = lost.lock() {
                    l.extend(refused);
                }
            }
        }
    }

    /// Devices whose writes Redis refused before the barriers that completed: another node
    /// took them. A write refused means its datagram (a command whose removal from the queue
    /// Redis did not take, say) must not leave: forgetting the device first closes its
    /// session, so it does not.
    pub(crate) fn take_lost(&self) -> Vec<Refused> {
        self.lost
            .lock()
            .map(|mut l| std::mem::take(&mut *l))
            .unwrap_or_default()
    }

    /// Beats at `now`; `true` while the node must not act on its devices (a pause was just
    /// seen, or its check is not done).
    pub(crate) fn fenced(&mut self, now: Instant) -> bool {
        let gap = now.saturating_duration_since(self.beat);
        self.beat = self.beat.max(now);
        if gap >= PAUSE && !self.fenced {
            tracing::warn!(paused_ms = u64::try_from(gap.as_millis()).unwrap_or(u64::MAX), "this node was stopped for a while: it acts on no device until it has checked which are still its own");
            // Both fit, or the check is asked by the next beat.
            if self.jobs.try_send(Job::Recheck).is_ok() && self.jobs.try_send(Job::Checked).is_ok()
            {
                self.fenced = true;
            } else {
                self.beat = now.checked_sub(PAUSE).unwrap_or(now);
            }
        }
        self.fenced
    }

    /// When the server task must beat next.
    pub(crate) fn next_beat(&self) -> Instant {
        self.beat + BEAT
    }
    /// Mirrors `op` if it is a device's shared state.
    pub(crate) fn write(&mut self, op: &StoreOp) {
        let (StoreOp::Put(t, ..) | StoreOp::Delete(t, _) | StoreOp::DeletePrefix(t, _)) = op;
        if !matches!(t, Table::Registrations | Table::Observations | Table::Queue) {
            return;
        }
        self.wrote = true;
        if self.jobs.try_send(Job::Write(op.clone())).is_err() {
            self.metrics
                .cluster_devices(ClusterDevices::WritesFailed, 1);
            tracing::error!("shared store queue full: a device's write is not mirrored");
        }
    }

    /// Mirrors the MQTT bridge's changes of devices' records.
    pub(crate) fn bridge_writes(&mut self, writes: Vec<crate::bridge::sink::SharedWrite>) {
        for w in writes {
            self.wrote = true;
            let op = match w.value {
                Some(v) => FieldOp::Put(w.field, v),
                None => FieldOp::Delete(w.field),
            };
            if self
                .jobs
                .try_send(Job::Fields(w.endpoint, vec![op]))
                .is_err()
            {
                self.metrics
                    .cluster_devices(ClusterDevices::WritesFailed, 1);
            }
        }
    }

    /// Claims `miss`'s device; `false` if it cannot be asked now.
    pub(crate) fn claim(&self, miss: Miss) -> bool {
        self.jobs.try_send(Job::Claim(miss)).is_ok()
    }

    /// Queues `d` for the owner of its device; `Err` gives it back when it cannot be queued now.
    pub(crate) fn forward(&self, d: Downlink) -> Result<(), Downlink> {
        match self.jobs.try_send(Job::Forward(d)) {
            Ok(()) => Ok(()),
            Err(e) => match e.into_inner() {
                Job::Forward(d) => Err(d),
                // What was sent comes back: a Forward.
                _ => Ok(()),
            },
        }
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
    /// A downlink message from the broker (or the store): run here if this node holds the
    /// device (or shares nothing), else queued for the device's owner.
    pub(super) fn take_downlink(&mut self, now: Instant, d: Downlink) {
        if let Some(o) = self.ownership.as_mut() {
            if o.fenced(now) && o.held.len() < MAX_HELD {
                o.held.push_back(d);
                return;
            }
        }
        let held = self.stack.core().registration(&d.endpoint).is_some();
        let d = match (&self.ownership, held) {
            (Some(o), false) => match o.forward(d) {
                Ok(()) => return,
                Err(d) => {
                    tracing::warn!(endpoint = %d.endpoint, "shared store queue full: a command for a device held elsewhere is answered here");
                    d
                }
            },
            _ => d,
        };
        self.downlink(now, d);
    }

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
            Owned::Adopt {
                endpoint,
                found,
                commands,
                bridge,
            } => {
                // First the bridge's records: the parked requests served next may bring the
                // results of the commands they name.
                if let Some(b) = self.bridge.as_mut() {
                    b.adopt(&endpoint, bridge);
                }
                let report = self.stack.core_mut().adopt(now, &endpoint, found);
                if report.registrations > 0 {
                    self.stack
                        .metrics()
                        .cluster_devices(ClusterDevices::TakenOver, 1);
                }
                self.drain(now);
                for d in commands {
                    self.downlink(now, d);
                }
            }
            Owned::Downlinks(downlinks) => {
                for d in downlinks {
                    self.downlink(now, d);
                }
            }
            Owned::Checked => {
                let held = match self.ownership.as_mut() {
                    Some(o) => {
                        o.fenced = false;
                        std::mem::take(&mut o.held)
                    }
                    None => Default::default(),
                };
                tracing::info!(
                    held = held.len(),
                    "devices checked after the pause: acting again"
                );
                for d in held {
                    self.take_downlink(now, d);
                }
            }
            Owned::Lost((endpoint, queued, sent)) => {
                // Commands queued here as the device left: to its new owner, through Redis.
                let queued: Vec<CommandId> = queued.into_iter().map(CommandId).collect();
                // Commands whose sending Redis did not record: the new owner sends them.
                let sent: Vec<CommandId> = sent.into_iter().map(CommandId).collect();
                self.stack.core_mut().forget_commands(now, &sent);
                let requeued = match self.bridge.as_mut() {
                    Some(b) => {
                        b.hand_over(&endpoint);
                        b.forget_pending(&sent);
                        b.requeue(&endpoint, &queued)
                    }
                    None => Vec::new(),
                };
                if let Some(o) = &self.ownership {
                    for d in requeued {
                        if let Err(d) = o.forward(d) {
                            tracing::warn!(endpoint = %d.endpoint, "shared store queue full: a command queued as its device left is lost");
                        }
                    }
                }
                if self.stack.hand_over(now, &endpoint) {
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
    /// The device, the epoch, the commands the write queued and those it took off the queue.
    Write(String, u64, Vec<u64>, Vec<u64>),
    Claim(String),
    Check(String, u64),
    Forward(Downlink),
    Take(String),
}

/// `d` as it waits in the store.
fn waiting(d: &Downlink, now_ms: u64) -> (Vec<u8>, u64) {
    let wait_ms = d.expiry.map_or(devices::COMMAND_WAIT_MS, |e| {
        u64::try_from(e.as_millis()).unwrap_or(u64::MAX).max(1)
    });
    let w = WaitingDownlink {
        kind: match d.kind {
            DownlinkKind::Command => 0,
            DownlinkKind::Desired => 1,
        },
        payload: d.payload.clone(),
        expires_at_ms: d.expiry.map(|_| now_ms.saturating_add(wait_ms)),
    };
    (minicbor::to_vec(&w).unwrap_or_default(), wait_ms)
}

/// The downlink messages that waited in the store for `endpoint`, with what is left of
/// their expiry (none left: they expire at once, and their result says so).
fn waited(endpoint: &str, encoded: Vec<Vec<u8>>, now_ms: u64) -> Vec<Downlink> {
    encoded
        .into_iter()
        .filter_map(|bytes| match minicbor::decode::<WaitingDownlink>(&bytes) {
            Ok(w) => Some(Downlink {
                endpoint: endpoint.to_string(),
                kind: if w.kind == 1 {
                    DownlinkKind::Desired
                } else {
                    DownlinkKind::Command
                },
                payload: w.payload,
                expiry: w
                    .expires_at_ms
                    .map(|at| Duration::from_millis(at.saturating_sub(now_ms))),
            }),
            Err(e) => {
                tracing::warn!(endpoint, error = %e, "a command waiting in the shared store is unreadable; dropped");
                None
            }
        })
        .collect()
}

fn now_ms() -> u64 {
    lwm2m::time::unix_millis(SystemTime::now())
}

/// The Redis task's state.
struct Mirror {
    conn: ConnectionManager,
    node: u8,
    /// The epoch each device this node owns is held at.
    epochs: HashMap<String, u64>,
    /// Devices lost, whose forgetting the core has not finished: their writes are skipped.
    handing_over: HashSet<String>,
    /// Devices whose writes were refused since the last barrier, with the commands queued
    /// in those writes (bounded by the devices held: each is reported once, as it is lost).
    refused: Vec<Refused>,
    /// Commands queued for devices while they were being handed over (their writes skipped),
    /// by device: sent back with the device's marker, for its new owner.
    skipped: HashMap<String, Vec<u64>>,
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
        refused: Vec::new(),
        skipped: HashMap::new(),
        to_server,
        metrics: metrics.clone(),
    };
    // Commands may have waited for this node's devices while it was down.
    let _ = jobs.try_send(Job::TakeAll);
    tokio::spawn(mirror.serve(rx));
    tokio::spawn(listen(client, pubsub, node, jobs.clone()));
    let ownership = Ownership {
        jobs,
        metrics,
        beat: Instant::now(),
        fenced: false,
        held: std::collections::VecDeque::new(),
        wrote: false,
        lost: Default::default(),
    };
    (ownership, owned)
}

impl Mirror {
    async fn serve(mut self, mut jobs: mpsc::Receiver<Job>) {
        loop {
            let Some(first) = jobs.recv().await else {
                return;
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
                Job::Fields(endpoint, ops) => {
                    self.write_fields(&mut pipe, &mut sent, endpoint, &ops, None)
                }
                Job::TakeAll => {
                    let held: Vec<(String, u64)> =
                        self.epochs.iter().map(|(k, v)| (k.clone(), *v)).collect();
                    for chunk in held.chunks(BATCH) {
                        let mut take = redis::pipe();
                        take.ignore_errors();
                        let mut taking = Vec::new();
                        for (endpoint, epoch) in chunk {
                            take.cmd("EVAL")
                                .arg(devices::TAKE)
                                .arg(2)
                                .arg(devices::key(endpoint))
                                .arg(devices::commands_key(endpoint))
                                .arg(self.node)
                                .arg(*epoch);
                            taking.push(Sent::Take(endpoint.clone()));
                        }
                        self.send(take, taking).await?;
                    }
                }
                Job::Claim(miss) => {
                    pipe.cmd("EVAL")
                        .arg(devices::CLAIM)
                        .arg(2)
                        .arg(devices::key(&miss.endpoint))
                        .arg(devices::commands_key(&miss.endpoint))
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
                    if let Some(queued) = self.skipped.remove(&endpoint) {
                        if !queued.is_empty() {
                            let again = Owned::Lost((endpoint, queued, Vec::new()));
                            self.to_server.send(again).await.map_err(|_| ())?;
                        }
                    }
                }
                // Everything before it has been sent: answered once it is answered.
                Job::Checked => {
                    self.flush(&mut pipe, &mut sent).await?;
                    self.to_server.send(Owned::Checked).await.map_err(|_| ())?;
                }
                Job::Barrier(done) => {
                    self.flush(&mut pipe, &mut sent).await?;
                    let _ = done.send(std::mem::take(&mut self.refused));
                }
                Job::Forward(d) => {
                    let (bytes, wait_ms) = waiting(&d, now_ms());
                    pipe.cmd("EVAL")
                        .arg(devices::FORWARD)
                        .arg(2)
                        .arg(devices::key(&d.endpoint))
                        .arg(devices::commands_key(&d.endpoint))
                        .arg(bytes)
                        .arg(wait_ms)
                        .arg(&d.endpoint);
                    sent.push(Sent::Forward(d));
                }
                Job::Take(endpoint) => {
                    let Some(epoch) = self.epochs.get(&endpoint).copied() else {
                        continue;
                    };
                    pipe.cmd("EVAL")
                        .arg(devices::TAKE)
                        .arg(2)
                        .arg(devices::key(&endpoint))
                        .arg(devices::commands_key(&endpoint))
                        .arg(self.node)
                        .arg(epoch);
                    sent.push(Sent::Take(endpoint));
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

    /// Sends what the batch gathered so far.
    async fn flush(&mut self, pipe: &mut redis::Pipeline, sent: &mut Vec<Sent>) -> Result<(), ()> {
        if sent.is_empty() {
            return Ok(());
        }
        let mut next = redis::pipe();
        next.ignore_errors();
        let gathered = std::mem::replace(pipe, next);
        self.send(gathered, std::mem::take(sent)).await
    }

    fn write(&mut self, pipe: &mut redis::Pipeline, sent: &mut Vec<Sent>, op: &StoreOp) {
        let Some((endpoint, ops, expires)) = devices::shared_write(op) else {
            return;
        };
        self.write_fields(pipe, sent, endpoint, &ops, expires);
    }

    fn write_fields(
        &mut self,
        pipe: &mut redis::Pipeline,
        sent: &mut Vec<Sent>,
        endpoint: String,
        ops: &[FieldOp],
        expires: Option<u64>,
    ) {
        if self.handing_over.contains(&endpoint) {
            // Commands queued for it as it left: for its new owner, once it is forgotten here.
            let queued = ops.iter().filter_map(|o| match o {
                FieldOp::Put(f, _) => devices::queued_id(f),
                _ => None,
            });
            self.skipped.entry(endpoint).or_default().extend(queued);
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
        for o in ops {
            for a in FieldOp::args(o) {
                cmd.arg(a);
            }
        }
        let queued = ops
            .iter()
            .filter_map(|o| match o {
                FieldOp::Put(f, _) => devices::queued_id(f),
                _ => None,
            })
            .collect();
        let removed = ops
            .iter()
            .filter_map(|o| match o {
                FieldOp::Delete(f) => devices::queued_id(f),
                _ => None,
            })
            .collect();
        sent.push(Sent::Write(endpoint, epoch, queued, removed));
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
                Sent::Write(endpoint, epoch, queued, removed) => match answer {
                    Ok(Value::Int(0)) => {
                        self.metrics
                            .cluster_devices(ClusterDevices::WritesRefused, 1);
                        // The first refusal reports the device lost; later ones in the same
                        // pipeline only add the commands they queued.
                        if let Some(r) = self.refused.iter_mut().find(|(e, ..)| *e == endpoint) {
                            r.1.extend(queued);
                            r.2.extend(removed);
                        } else if self.epochs.get(&endpoint) == Some(&epoch) {
                            tracing::info!(endpoint = %endpoint, "another node owns the device now");
                            self.refused.push((endpoint.clone(), queued, removed));
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
                    let (found, commands, bridge) = match answer
                        .map(|a| devices::claimed(&endpoint, a))
                    {
                        Ok(Ok(c)) => {
                            if let Some(e) = c.epoch {
                                self.epochs.insert(endpoint.clone(), e);
                            }
                            (c.found, waited(&endpoint, c.commands, now_ms()), c.bridge)
                        }
                        Ok(Err(what)) => {
                            tracing::warn!(endpoint = %endpoint, what, "unexpected answer from the shared store");
                            (Found::Unavailable, Vec::new(), Vec::new())
                        }
                        Err(e) => {
                            tracing::warn!(endpoint = %endpoint, error = %e, "claiming a device failed");
                            (Found::Unavailable, Vec::new(), Vec::new())
                        }
                    };
                    let adopt = Owned::Adopt {
                        endpoint,
                        found,
                        commands,
                        bridge,
                    };
                    self.to_server.send(adopt).await.map_err(|_| ())?;
                }
                Sent::Forward(d) => match answer {
                    // No node knows the device, or too many commands wait for it: answered
                    // here (as for an unknown device).
                    Ok(Value::Int(-1 | -3)) => {
                        self.to_server
                            .send(Owned::Downlinks(vec![d]))
                            .await
                            .map_err(|_| ())?;
                    }
                    Ok(Value::Int(owner)) => {
                        tracing::debug!(endpoint = %d.endpoint, owner, "command queued for the device's owner");
                        // The owner may be this node after all (it claimed the device since):
                        // its channel wakes it like any other.
                    }
                    Ok(other) => {
                        tracing::warn!(endpoint = %d.endpoint, answer = ?other, "unexpected answer from the shared store; the command is answered here");
                        self.to_server
                            .send(Owned::Downlinks(vec![d]))
                            .await
                            .map_err(|_| ())?;
                    }
                    Err(e) => {
                        tracing::warn!(endpoint = %d.endpoint, error = %e, "queueing a command for the device's owner failed; it is answered here");
                        self.to_server
                            .send(Owned::Downlinks(vec![d]))
                            .await
                            .map_err(|_| ())?;
                    }
                },
                Sent::Take(endpoint) => match answer.map(devices::bulk_list) {
                    Ok(Some(list)) if !list.is_empty() => {
                        let downlinks = waited(&endpoint, list, now_ms());
                        self.to_server
                            .send(Owned::Downlinks(downlinks))
                            .await
                            .map_err(|_| ())?;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(endpoint = %endpoint, error = %e, "taking the commands waiting for a device failed; they wait for its next contact")
                    }
                },
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
            .send(Owned::Lost((endpoint, Vec::new(), Vec::new())))
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
                let job = match devices::heard(msg.get_payload_bytes()) {
                    Some(Heard::Lost(epoch, endpoint)) => Job::Lost { epoch, endpoint },
                    Some(Heard::Commands(endpoint)) => Job::Take(endpoint),
                    None => continue,
                };
                if jobs.send(job).await.is_err() {
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
                if jobs.send(Job::Recheck).await.is_err() || jobs.send(Job::TakeAll).await.is_err()
                {
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
                .arg(2)
                .arg(devices::key(endpoint))
                .arg(devices::commands_key(endpoint))
                .arg(node)
                .arg("")
                .arg(endpoint);
        }
        let answers: Vec<Value> = pipe.query_async(conn).await?;
        for (endpoint, answer) in chunk.iter().zip(answers) {
            if let Ok(devices::Claimed {
                epoch: Some(epoch), ..
            }) = devices::claimed(endpoint, answer)
            {
                claimed.insert(endpoint.clone(), epoch);
            }
        }
    }
    Ok(claimed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ownership() -> (Ownership, mpsc::Receiver<Job>) {
        let (jobs, rx) = mpsc::channel(16);
        let o = Ownership {
            jobs,
            metrics: Arc::new(Metrics::new(Default::default(), None)),
            beat: Instant::now(),
            fenced: false,
            held: Default::default(),
            wrote: false,
            lost: Default::default(),
        };
        (o, rx)
    }

    #[test]
    fn a_pause_fences_the_node_until_its_devices_are_checked() {
        let (mut o, mut rx) = ownership();
        let t0 = o.beat;
        assert!(!o.fenced(t0 + BEAT));
        assert!(!o.fenced(t0 + BEAT * 4), "beats a second apart: no pause");
        assert!(rx.try_recv().is_err());
        // Stopped for 30 s: fenced, and the check asked, once.
        let resumed = t0 + BEAT * 4 + Duration::from_secs(30);
        assert!(o.fenced(resumed));
        assert!(matches!(rx.try_recv(), Ok(Job::Recheck)));
        assert!(matches!(rx.try_recv(), Ok(Job::Checked)));
        assert!(o.fenced(resumed + BEAT * 10), "until the check is done");
        assert!(rx.try_recv().is_err());
        o.fenced = false; // Owned::Checked
        assert!(!o.fenced(resumed + BEAT * 11));
    }

    #[test]
    fn a_waiting_command_keeps_what_is_left_of_its_expiry() {
        let d = Downlink {
            endpoint: "m".into(),
            kind: DownlinkKind::Desired,
            payload: b"{}".to_vec(),
            expiry: Some(Duration::from_secs(60)),
        };
        let (bytes, wait_ms) = waiting(&d, 1_000_000);
        assert_eq!(wait_ms, 60_000);
        let back = waited("m", vec![bytes.clone(), b"junk".to_vec()], 1_010_000);
        assert_eq!(back.len(), 1, "the unreadable one is dropped");
        assert_eq!(back[0].kind, DownlinkKind::Desired);
        assert_eq!(back[0].payload, b"{}");
        assert_eq!(back[0].expiry, Some(Duration::from_secs(50)));
        // Past its expiry: it expires at once where it is run.
        let late = waited("m", vec![bytes], 2_000_000);
        assert_eq!(late[0].expiry, Some(Duration::ZERO));
        // Without an expiry it waits as long as a command may.
        let forever = Downlink { expiry: None, ..d };
        let (bytes, wait_ms) = waiting(&forever, 0);
        assert_eq!(wait_ms, devices::COMMAND_WAIT_MS);
        assert_eq!(waited("m", vec![bytes], 5)[0].expiry, None);
    }
}
