//! The tokio shell around [`ServerCore`]: the store, the command channel and the event
//! stream. No protocol logic lives here (DESIGN.md: binaries and shells stay thin), and no
//! socket code either: `lwm2m::net::machine` drives the core on the sockets, this file only
//! says what happens to the core's outputs — store writes go to the group-committing writer,
//! device events to a bounded broadcast channel and to callers waiting for a result.
use crate::config::Config;
use crate::core::types::{Command, CommandId, DeviceEvent, Outcome, Registration};
use crate::core::ServerCore;
use crate::store::{Store, StoreConfig, StoreError, StoreStats, Table};
use anyhow::Context;
use lwm2m::coap::Transmit;
use lwm2m::model::{Path, Registry};
use lwm2m::net::machine::{self, Machine, Sockets};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::SystemTime;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Device events a slow subscriber may fall behind by before it misses some.
const EVENT_CAPACITY: usize = 16_384;

/// The server is gone.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the server has stopped")]
pub struct ServerStopped;

enum Control {
    Submit(
        Command,
        oneshot::Sender<CommandId>,
        Option<oneshot::Sender<Outcome>>,
    ),
    Cancel(
        String,
        Path,
        oneshot::Sender<CommandId>,
        Option<oneshot::Sender<Outcome>>,
    ),
    Registrations(oneshot::Sender<Vec<Registration>>),
    Shutdown(oneshot::Sender<()>),
}

/// Talks to a running server. Cheap to clone.
#[derive(Clone)]
pub struct ServerHandle {
    control: mpsc::Sender<Control>,
    events: broadcast::Sender<DeviceEvent>,
    local_addrs: Arc<Vec<SocketAddr>>,
    store_stats: Arc<StoreStats>,
}

impl ServerHandle {
    /// Submits a command; its result arrives on the event stream.
    pub async fn submit(&self, cmd: Command) -> Result<CommandId, ServerStopped> {
        let (tx, rx) = oneshot::channel();
        self.control
            .send(Control::Submit(cmd, tx, None))
            .await
            .map_err(|_| ServerStopped)?;
        rx.await.map_err(|_| ServerStopped)
    }

    /// Submits a command and waits for its result (for a sleeping device, until it wakes
    /// or the command expires).
    pub async fn execute(&self, cmd: Command) -> Result<(CommandId, Outcome), ServerStopped> {
        let (tx, rx) = oneshot::channel();
        let (done, result) = oneshot::channel();
        self.control
            .send(Control::Submit(cmd, tx, Some(done)))
            .await
            .map_err(|_| ServerStopped)?;
        let id = rx.await.map_err(|_| ServerStopped)?;
        Ok((id, result.await.map_err(|_| ServerStopped)?))
    }

    /// Cancels the observation of `path` on `endpoint` and waits for the result.
    pub async fn cancel_observation(
        &self,
        endpoint: &str,
        path: Path,
    ) -> Result<Outcome, ServerStopped> {
        let (tx, rx) = oneshot::channel();
        let (done, result) = oneshot::channel();
        self.control
            .send(Control::Cancel(endpoint.to_string(), path, tx, Some(done)))
            .await
            .map_err(|_| ServerStopped)?;
        rx.await.map_err(|_| ServerStopped)?;
        result.await.map_err(|_| ServerStopped)
    }

    /// Every current registration.
    pub async fn registrations(&self) -> Result<Vec<Registration>, ServerStopped> {
        let (tx, rx) = oneshot::channel();
        self.control
            .send(Control::Registrations(tx))
            .await
            .map_err(|_| ServerStopped)?;
        rx.await.map_err(|_| ServerStopped)
    }

    /// The device event stream from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<DeviceEvent> {
        self.events.subscribe()
    }

    /// The addresses the CoAP sockets are bound to.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// The store writer's counters so far: writes applied and transactions committed (their
    /// ratio is the group commit's batching).
    pub fn store_stats(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.store_stats.writes.load(Relaxed),
            self.store_stats.commits.load(Relaxed),
        )
    }

    /// Stops the server: sends what is queued, commits the store, and returns when done.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.control.send(Control::Shutdown(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

/// A started server.
pub struct Server {
    /// Its handle.
    pub handle: ServerHandle,
    /// The core task; ends after shutdown, with the store closed.
    pub task: JoinHandle<anyhow::Result<()>>,
}

/// Opens the store, restores the previous state, binds the sockets and starts the server.
pub async fn start(config: &Config) -> anyhow::Result<Server> {
    let mut schema = Registry::bundled();
    if !config.server.objects_dir.as_os_str().is_empty() {
        let report = schema
            .load_dir(&config.server.objects_dir)
            .with_context(|| {
                format!(
                    "loading objects from {}",
                    config.server.objects_dir.display()
                )
            })?;
        for f in &report.failures {
            tracing::warn!(error = %f, "object definition not loaded");
        }
        tracing::info!(loaded = report.loaded.len(), "object definitions loaded");
    }
    std::fs::create_dir_all(&config.server.data_dir)
        .with_context(|| format!("creating {}", config.server.data_dir.display()))?;
    let store_path = config.server.data_dir.join("lwm2m.redb");
    let store = Store::open(&store_path, StoreConfig::default())
        .with_context(|| format!("opening the store at {}", store_path.display()))?;

    let mut core_config = config.core();
    core_config.rng_seed = rand::random();
    core_config.coap.rng_seed = rand::random();
    let now = Instant::now().into_std();
    let mut core: ServerCore<SocketAddr> =
        ServerCore::new(core_config, Arc::new(schema), (now, SystemTime::now()));
    let values = |t: Table| -> Result<Vec<Vec<u8>>, StoreError> {
        Ok(store.scan(t, b"")?.into_iter().map(|(_, v)| v).collect())
    };
    let report = core.restore(
        now,
        values(Table::Registrations)?,
        values(Table::Observations)?,
        values(Table::Queue)?,
    );
    tracing::info!(?report, "state restored");

    let sockets = Sockets::bind_available(
        &config.server.coap_bind,
        config.server.udp_recv_buffer_bytes,
    )
    .with_context(|| format!("binding CoAP sockets {:?}", config.server.coap_bind))?;
    let addrs = sockets.local_addrs().to_vec();
    for a in &addrs {
        tracing::info!(addr = %a, "CoAP (NoSec) listening");
    }
    let (control_tx, control) = mpsc::channel(1024);
    let (events, _) = broadcast::channel(EVENT_CAPACITY);
    let handle = ServerHandle {
        control: control_tx,
        events: events.clone(),
        local_addrs: Arc::new(addrs.clone()),
        store_stats: store.stats_handle(),
    };
    let shell = Shell {
        core,
        store,
        events,
        waiters: HashMap::new(),
        done: None,
    };
    let task = tokio::spawn(async move {
        let shell = machine::run(sockets, shell, control).await;
        shell.finish().await
    });
    Ok(Server { handle, task })
}

struct Shell {
    core: ServerCore<SocketAddr>,
    store: Store,
    events: broadcast::Sender<DeviceEvent>,
    /// Callers of `execute` waiting for their command's result.
    waiters: HashMap<CommandId, oneshot::Sender<Outcome>>,
    /// The caller of `shutdown`, told once the store is committed.
    done: Option<oneshot::Sender<()>>,
}

impl Machine for Shell {
    type Command = Control;

    fn handle_datagram(&mut self, now: std::time::Instant, peer: SocketAddr, data: &[u8]) {
        self.core.handle_datagram(now, peer, data);
    }

    fn handle_timeout(&mut self, now: std::time::Instant) {
        self.core.handle_timeout(now);
    }

    fn handle_command(&mut self, now: std::time::Instant, c: Control) -> ControlFlow<()> {
        match c {
            Control::Submit(cmd, id_tx, waiter) => {
                let id = self.core.submit(now, cmd);
                if let Some(w) = waiter {
                    self.waiters.insert(id, w);
                }
                let _ = id_tx.send(id);
            }
            Control::Cancel(endpoint, path, id_tx, waiter) => {
                let id = self.core.cancel_observation(now, &endpoint, path);
                if let Some(w) = waiter {
                    self.waiters.insert(id, w);
                }
                let _ = id_tx.send(id);
            }
            Control::Registrations(tx) => {
                let _ = tx.send(self.core.registrations().cloned().collect());
            }
            Control::Shutdown(done) => {
                self.done = Some(done);
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    }

    fn poll_transmit(&mut self) -> Option<Transmit<SocketAddr>> {
        self.core.poll_transmit()
    }

    fn poll_timeout(&self) -> Option<std::time::Instant> {
        self.core.poll_timeout()
    }

    /// Store writes go to the group-committing writer; events to the broadcast and to the
    /// callers waiting for a result.
    fn flush(&mut self) {
        while let Some(op) = self.core.poll_store() {
            let r = match op {
                crate::core::persist::StoreOp::Put(t, k, v) => self.store.put(t, k, v),
                crate::core::persist::StoreOp::Delete(t, k) => self.store.delete(t, k),
                crate::core::persist::StoreOp::DeletePrefix(t, p) => self.store.delete_prefix(t, p),
            };
            if let Err(e) = r {
                tracing::error!(error = %e, "store write failed");
            }
        }
        while let Some(ev) = self.core.poll_event() {
            if let DeviceEvent::CommandResult { id, outcome, .. } = &ev {
                if let Some(w) = self.waiters.remove(id) {
                    let _ = w.send(outcome.clone());
                }
            }
            // No subscriber is not an error: events are for whoever listens.
            let _ = self.events.send(ev);
        }
    }
}

impl Shell {
    /// After the driver stopped: commit the store, close it, tell `shutdown`'s caller.
    async fn finish(self) -> anyhow::Result<()> {
        self.store.flush().await?;
        self.store.close()?;
        tracing::info!("server stopped; store flushed");
        if let Some(done) = self.done {
            let _ = done.send(());
        }
        Ok(())
    }
}
