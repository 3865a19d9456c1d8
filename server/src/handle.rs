//! How the rest of the world talks to a running server: [`ServerHandle`] (commands,
//! registrations, the event stream, admin operations, shutdown) and the messages it sends
//! the server task.
use crate::core::clients::{ClientPage, ClientState};
use crate::core::types::{Command, CommandId, DeviceEvent, Outcome, Registration};
use crate::metrics::{Metrics, MetricsSnapshot};
use crate::provisioning::admin::{AdminOp, AdminReply, AdminRequest};
use crate::provisioning::credentials::CredentialSummary;
use crate::store::StoreStats;
use lwm2m::model::Path;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;

/// The server is gone.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the server has stopped")]
pub struct ServerStopped;

/// A request from a [`ServerHandle`] to the server task.
pub(crate) enum Control {
    /// A command, where to send its id, and who waits for its result.
    Submit(
        Command,
        oneshot::Sender<CommandId>,
        Option<oneshot::Sender<Outcome>>,
    ),
    /// A command, where to send its id and whether it waits for a sleeping device, and who
    /// waits for its result.
    Dispatch(
        Command,
        oneshot::Sender<(CommandId, bool)>,
        oneshot::Sender<Outcome>,
    ),
    /// The cancellation of an observation, likewise.
    Cancel(
        String,
        CancelTarget,
        oneshot::Sender<CommandId>,
        Option<oneshot::Sender<Outcome>>,
    ),
    /// Every current registration.
    Registrations(oneshot::Sender<Vec<Registration>>),
    /// One device's state and credential.
    Client(String, oneshot::Sender<Option<ClientInfo>>),
    /// A page of devices (prefix, after, limit).
    Clients(ClientQuery, oneshot::Sender<ClientPage>),
    /// An admin operation (as from the admin socket).
    Admin(AdminRequest),
    /// Stop, and say so once the store is closed.
    Shutdown(oneshot::Sender<()>),
}

/// One device as the server holds it, with who its DTLS credential says it is.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientInfo {
    /// Its registration, queue state, pending commands and observations.
    pub state: ClientState,
    /// Its credential, never the key; `None` for a NoSec device.
    pub credential: Option<CredentialSummary>,
}

/// A command [`ServerHandle::dispatch`]ed.
#[derive(Debug)]
pub struct Dispatched {
    /// Its id, as in its `CommandResult` event.
    pub id: CommandId,
    /// It waits for a sleeping queue-mode device to wake.
    pub queued: bool,
    /// Its result, once there is one.
    pub result: oneshot::Receiver<Outcome>,
}

/// Which page of devices [`ServerHandle::clients`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientQuery {
    /// Only endpoint names starting with this.
    pub prefix: String,
    /// Only names after this one (the last of the previous page).
    pub after: Option<String>,
    /// At most this many.
    pub limit: usize,
}

/// Which observation a cancellation ends.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum CancelTarget {
    /// The Observe of this path (`/` for the first Observe-Composite).
    Path(Path),
    /// The Observe-Composite of exactly these paths.
    Composite(Vec<Path>),
}

/// Talks to a running server. Cheap to clone.
#[derive(Clone)]
pub struct ServerHandle {
    pub(crate) control: mpsc::Sender<Control>,
    pub(crate) events: broadcast::Sender<DeviceEvent>,
    pub(crate) local_addrs: Arc<Vec<SocketAddr>>,
    pub(crate) secure_addrs: Arc<Vec<SocketAddr>>,
    /// The bootstrap server's plain CoAP and DTLS sockets.
    pub(crate) bootstrap_addrs: Arc<(Vec<SocketAddr>, Vec<SocketAddr>)>,
    pub(crate) store_stats: Arc<StoreStats>,
    /// The counters the server task writes and `/metrics` reads.
    pub(crate) metrics: Arc<Metrics>,
    /// Where the HTTP API listens, if it runs.
    pub(crate) http_addr: Option<SocketAddr>,
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

    /// Submits a command; says at once whether it waits for a sleeping device, and gives the
    /// receiver of its result (for a sleeping device, when it wakes or the command expires).
    pub async fn dispatch(&self, cmd: Command) -> Result<Dispatched, ServerStopped> {
        let (tx, rx) = oneshot::channel();
        let (done, result) = oneshot::channel();
        self.control
            .send(Control::Dispatch(cmd, tx, done))
            .await
            .map_err(|_| ServerStopped)?;
        let (id, queued) = rx.await.map_err(|_| ServerStopped)?;
        Ok(Dispatched { id, queued, result })
    }

    /// Cancels the observation of `path` on `endpoint` and waits for the result.
    pub async fn cancel_observation(
        &self,
        endpoint: &str,
        path: Path,
    ) -> Result<Outcome, ServerStopped> {
        self.cancel(endpoint, CancelTarget::Path(path)).await
    }

    /// Cancels the Observe-Composite of exactly `paths` on `endpoint` and waits for the
    /// result.
    pub async fn cancel_composite_observation(
        &self,
        endpoint: &str,
        paths: Vec<Path>,
    ) -> Result<Outcome, ServerStopped> {
        self.cancel(endpoint, CancelTarget::Composite(paths)).await
    }

    async fn cancel(&self, endpoint: &str, target: CancelTarget) -> Result<Outcome, ServerStopped> {
        let (tx, rx) = oneshot::channel();
        let (done, result) = oneshot::channel();
        self.control
            .send(Control::Cancel(
                endpoint.to_string(),
                target,
                tx,
                Some(done),
            ))
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

    /// One device's registration, queue state, observations and credential summary;
    /// `None` if it is not registered.
    pub async fn client(&self, endpoint: &str) -> Result<Option<ClientInfo>, ServerStopped> {
        let (tx, rx) = oneshot::channel();
        self.control
            .send(Control::Client(endpoint.to_string(), tx))
            .await
            .map_err(|_| ServerStopped)?;
        rx.await.map_err(|_| ServerStopped)
    }

    /// A page of registered devices in endpoint name order.
    pub async fn clients(&self, query: ClientQuery) -> Result<ClientPage, ServerStopped> {
        let (tx, rx) = oneshot::channel();
        self.control
            .send(Control::Clients(query, tx))
            .await
            .map_err(|_| ServerStopped)?;
        rx.await.map_err(|_| ServerStopped)
    }

    /// The device event stream from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<DeviceEvent> {
        self.events.subscribe()
    }

    /// The addresses the plain CoAP sockets are bound to (none if NoSec is off).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// The addresses the CoAP-over-DTLS sockets are bound to.
    pub fn secure_addrs(&self) -> &[SocketAddr] {
        &self.secure_addrs
    }

    /// The bootstrap server's plain CoAP sockets (empty unless `[bootstrap]` is enabled and
    /// NoSec allowed).
    pub fn bootstrap_addrs(&self) -> &[SocketAddr] {
        &self.bootstrap_addrs.0
    }

    /// The bootstrap server's DTLS sockets (empty unless `[bootstrap]` is enabled).
    pub fn bootstrap_secure_addrs(&self) -> &[SocketAddr] {
        &self.bootstrap_addrs.1
    }

    /// The address the HTTP API (`/metrics`) is bound to; `None` if `[http] enabled = false`.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// The server's counters and gauges now: the numbers `GET /metrics` shows.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.metrics.snapshot()
    }

    /// Applies an admin operation (device credentials, audit log) as the admin socket does.
    pub async fn admin(&self, op: AdminOp) -> Result<AdminReply, ServerStopped> {
        let (reply, rx) = oneshot::channel();
        self.control
            .send(Control::Admin(AdminRequest { op, reply }))
            .await
            .map_err(|_| ServerStopped)?;
        rx.await.map_err(|_| ServerStopped)
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
