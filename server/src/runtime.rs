//! The tokio shell around [`ServerCore`]: the store, the command channel, the event stream,
//! and the DTLS engine in front of the core. No protocol logic lives here (DESIGN.md:
//! binaries and shells stay thin), and no socket code either: `lwm2m::net::machine` drives the
//! shell on two socket groups — plain CoAP and CoAP over DTLS — and this file only says where
//! things go: secure datagrams through [`dtls::Server`] to the core as [`Link::Dtls`] peers,
//! store writes to the group-committing writer, device events to a bounded broadcast channel
//! and to callers waiting for a result, security events to the audit log, and every fact the
//! metrics count to [`Metrics`] as it happens (served by the HTTP task, [`crate::http`]).
use crate::bridge::link::Downlink;
use crate::bridge::sink::{Bridge, CommandPath};
use crate::config::Config;
use crate::core::types::{Command, CommandId, DeviceEvent, Link, Outcome, Registration};
use crate::core::ServerCore;
use crate::metrics::{Metrics, MetricsSnapshot, Transport};
use crate::provisioning::admin::{self, AdminOp, AdminReply, AdminRequest};
use crate::provisioning::audit::{self, AuditEvent, AuditKind};
use crate::provisioning::secrets::SecretsKey;
use crate::provisioning::security::{self, Lookup, SharedCredentials};
use crate::store::{Store, StoreConfig, StoreStats, Table};
use anyhow::Context;
use dtls::pki::Roots;
use dtls::{ConnId, ServerEvent};
use lwm2m::coap::Transmit;
use lwm2m::model::{Path, Registry};
use lwm2m::net::machine::{self, Listener, Machine, Sockets};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Device events a slow subscriber may fall behind by before it misses some.
const EVENT_CAPACITY: usize = 16_384;
/// The socket group of plain CoAP.
const PLAIN: Listener = 0;
/// The socket group of CoAP over DTLS.
const SECURE: Listener = 1;
/// Datagrams held for an outbox commit at most. A store that stops committing must not hold
/// the server's memory hostage: beyond this, datagrams leave unheld (and a crash in that
/// window could lose notifications the devices saw acknowledged).
const MAX_HELD: usize = 65_536;
/// Sessions saved per timer tick during a periodic save, so a large fleet's save never
/// stalls the server for long.
const SAVE_CHUNK: usize = 2000;

/// The server is gone.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the server has stopped")]
pub struct ServerStopped;

pub(crate) enum Control {
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
    Admin(AdminRequest),
    /// A message from the MQTT broker.
    Downlink(Downlink),
    /// The store committed every write queued up to this hold generation.
    Committed(u64),
    Shutdown(oneshot::Sender<()>),
}

/// Talks to a running server. Cheap to clone.
#[derive(Clone)]
pub struct ServerHandle {
    control: mpsc::Sender<Control>,
    events: broadcast::Sender<DeviceEvent>,
    local_addrs: Arc<Vec<SocketAddr>>,
    secure_addrs: Arc<Vec<SocketAddr>>,
    store_stats: Arc<StoreStats>,
    /// The counters the server task writes and `/metrics` reads.
    metrics: Arc<Metrics>,
    /// Where the HTTP API listens, if it runs.
    http_addr: Option<SocketAddr>,
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

    /// The addresses the plain CoAP sockets are bound to (none if NoSec is off).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// The addresses the CoAP-over-DTLS sockets are bound to.
    pub fn secure_addrs(&self) -> &[SocketAddr] {
        &self.secure_addrs
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

/// Opens the store, restores the previous state (registrations, DTLS sessions), binds the
/// sockets and the admin socket, and starts the server.
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
    let store_path = config.store_path();
    let store_config = StoreConfig {
        cache_bytes: config.server.store_cache_bytes,
        ..StoreConfig::default()
    };
    let store = Store::open(&store_path, store_config)
        .with_context(|| format!("opening the store at {}", store_path.display()))?;
    let secrets = SecretsKey::load_or_create(&config.secrets_key_path())
        .with_context(|| format!("secrets key {}", config.secrets_key_path().display()))?;

    let mut core_config = config.core();
    core_config.rng_seed = rand::random();
    core_config.coap.rng_seed = rand::random();
    let now = Instant::now().into_std();
    let schema_arc = Arc::new(schema);
    let mut core: ServerCore<Link> =
        ServerCore::new(core_config, schema_arc.clone(), (now, SystemTime::now()));

    let mut dtls = None;
    let mut roots = Roots::default();
    if !config.server.coaps_bind.is_empty() {
        let key = security::server_key(config)?;
        roots = security::trusted_roots(&config.security.trusted_ca)?;
        dtls = Some(dtls::Server::new(
            security::dtls_config(config, Some(key)),
            rand::random(),
        ));
    }
    let restored = crate::restore::restore_state(
        config,
        &store,
        &secrets,
        &mut core,
        dtls.as_mut(),
        schema_arc.clone(),
        now,
    )?;
    tracing::info!(
        devices = restored.credentials.len(),
        sessions = restored.sessions,
        report = ?restored.core,
        skipped = restored.skipped,
        "state restored"
    );
    let creds = SharedCredentials(Arc::new(std::sync::RwLock::new(restored.credentials)));
    core.set_security_policy(Arc::new(creds.clone()));

    let mut sockets = Sockets::empty();
    let recv_buffer = config.server.udp_recv_buffer_bytes;
    let mut addrs = Vec::new();
    if config.security.allow_nosec && !config.server.coap_bind.is_empty() {
        addrs = sockets
            .bind_listener(&config.server.coap_bind, recv_buffer, PLAIN)
            .with_context(|| format!("binding CoAP sockets {:?}", config.server.coap_bind))?;
        for a in &addrs {
            tracing::info!(addr = %a, "CoAP (NoSec) listening");
        }
    } else {
        tracing::info!("NoSec disabled: plain CoAP is not served");
    }
    let mut secure_addrs = Vec::new();
    if dtls.is_some() {
        secure_addrs = sockets
            .bind_listener(&config.server.coaps_bind, recv_buffer, SECURE)
            .with_context(|| format!("binding CoAPs sockets {:?}", config.server.coaps_bind))?;
        for a in &secure_addrs {
            tracing::info!(addr = %a, "CoAP over DTLS listening");
        }
    }
    anyhow::ensure!(
        !addrs.is_empty() || !secure_addrs.is_empty(),
        "nothing to listen on: configure server.coaps_bind, or server.coap_bind with security.allow_nosec"
    );
    let (control_tx, control) = mpsc::channel(1024);
    let (events, _) = broadcast::channel(EVENT_CAPACITY);
    let control_tx_for_shell = control_tx.clone();
    let (bridge, mqtt) =
        match crate::bridge::start(config, &store, restored.bridge, control_tx.clone()) {
            Ok(Some((b, r))) => (Some(b), Some(r)),
            Ok(None) => (None, None),
            Err(e) => return Err(e.context("starting the MQTT bridge")),
        };
    let metrics = Arc::new(Metrics::new(
        store.stats_handle(),
        mqtt.as_ref().map(crate::bridge::Running::shared),
    ));
    metrics.set_registered_clients(core.device_count());
    if let Some(server) = &dtls {
        metrics.set_dtls_sessions(server.usage().sessions);
    }
    let http_listener = if config.http.enabled {
        let listener = tokio::net::TcpListener::bind(config.http.bind)
            .await
            .with_context(|| format!("binding the HTTP API on {}", config.http.bind))?;
        Some(listener)
    } else {
        None
    };
    #[cfg(unix)]
    let admin_tasks = spawn_admin(config, control_tx)?;
    #[cfg(not(unix))]
    let admin_tasks = Vec::new();
    let (http_addr, http_task) = match http_listener {
        Some(listener) => {
            let addr = listener.local_addr()?;
            tracing::info!(%addr, "HTTP API listening (GET /metrics)");
            let app = crate::http::router(metrics.clone());
            let task = tokio::spawn(crate::http::serve(listener, app));
            (Some(addr), Some(task))
        }
        None => (None, None),
    };
    let handle = ServerHandle {
        control: control_tx_for_shell.clone(),
        events: events.clone(),
        local_addrs: Arc::new(addrs),
        secure_addrs: Arc::new(secure_addrs),
        store_stats: store.stats_handle(),
        metrics: metrics.clone(),
        http_addr,
    };
    let save_every = config.session_save_interval();
    let shell = Shell {
        core,
        store,
        secrets,
        creds,
        roots,
        dtls,
        events,
        waiters: HashMap::new(),
        done: None,
        save_every,
        next_save: save_every.map(|d| now + d),
        saving: Vec::new(),
        admin_tasks,
        http_task,
        metrics,
        bridge,
        mqtt,
        control: control_tx_for_shell,
        hold: Hold {
            open: 1,
            ..Hold::default()
        },
    };
    let task = tokio::spawn(async move {
        let shell = machine::run(sockets, shell, control).await;
        shell.finish().await
    });
    Ok(Server { handle, task })
}

/// Serves the admin socket, forwarding its requests into the server's control channel. The
/// tasks are stopped (and the socket file removed) when the server stops.
#[cfg(unix)]
fn spawn_admin(
    config: &Config,
    control: mpsc::Sender<Control>,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let path = config.admin_socket_path();
    let listener =
        admin::bind(&path).with_context(|| format!("admin socket {}", path.display()))?;
    let (tx, mut rx) = mpsc::channel::<AdminRequest>(16);
    let serve = tokio::spawn(async move {
        if let Err(e) = listener.run(tx).await {
            tracing::warn!(error = %e, "admin socket stopped");
        }
    });
    let forward = tokio::spawn(async move {
        while let Some(req) = rx.recv().await {
            if control.send(Control::Admin(req)).await.is_err() {
                return;
            }
        }
    });
    Ok(vec![serve, forward])
}

struct Shell {
    core: ServerCore<Link>,
    store: Store,
    secrets: SecretsKey,
    creds: SharedCredentials,
    roots: Roots,
    dtls: Option<dtls::Server>,
    events: broadcast::Sender<DeviceEvent>,
    /// Callers of `execute` waiting for their command's result.
    waiters: HashMap<CommandId, oneshot::Sender<Outcome>>,
    /// The caller of `shutdown`, told once the store is committed.
    done: Option<oneshot::Sender<()>>,
    save_every: Option<Duration>,
    next_save: Option<std::time::Instant>,
    /// Sessions still to save in the current periodic save.
    saving: Vec<ConnId>,
    /// The admin socket's tasks, stopped with the server.
    admin_tasks: Vec<JoinHandle<()>>,
    /// The HTTP API's task (its connections with it), stopped with the server.
    http_task: Option<JoinHandle<()>>,
    /// Counted here, where the facts are; read by the HTTP task and [`ServerHandle::metrics`].
    metrics: Arc<Metrics>,
    /// The MQTT bridge, if enabled.
    bridge: Option<Bridge>,
    /// The MQTT link's and the embedded broker's lifetimes.
    mqtt: Option<crate::bridge::Running>,
    /// For the store's commit notices (see [`Hold`]).
    control: mpsc::Sender<Control>,
    hold: Hold,
}

/// Durable before acknowledged: while MQTT messages caused by a datagram are not yet
/// committed to the outbox, nothing the core sends (its ACK above all) leaves; a device whose
/// notification was acknowledged can rely on it reaching the broker even if the server is
/// killed the next moment. Transmits are tagged with the commit generation that covers
/// them and released when that commit is done, so under steady load one commit releases a
/// whole batch while the next gathers.
#[derive(Default)]
struct Hold {
    /// Outbox writes since the last commit request.
    dirty: bool,
    /// Generation the next commit request will have.
    open: u64,
    /// Last generation requested and last committed (a commit is in flight while they
    /// differ).
    requested: u64,
    committed: u64,
    held: std::collections::VecDeque<(u64, Transmit<Link>)>,
    ready: std::collections::VecDeque<Transmit<Link>>,
}

impl Hold {
    fn active(&self) -> bool {
        self.dirty || self.in_flight()
    }

    fn in_flight(&self) -> bool {
        self.committed < self.requested
    }
}

/// The core as the bridge's command path, at one instant.
struct CoreAt<'a> {
    core: &'a mut ServerCore<Link>,
    now: std::time::Instant,
}

impl CommandPath for CoreAt<'_> {
    fn submit(&mut self, command: Command) -> CommandId {
        self.core.submit(self.now, command)
    }

    fn cancel_observation(&mut self, endpoint: &str, path: Path) -> CommandId {
        self.core.cancel_observation(self.now, endpoint, path)
    }
}

impl Machine for Shell {
    type Command = Control;

    fn handle_datagram(
        &mut self,
        now: std::time::Instant,
        l: Listener,
        peer: SocketAddr,
        data: &[u8],
    ) {
        if l == PLAIN {
            self.metrics.datagram_received(Transport::Udp);
            self.core.handle_datagram(now, Link::Udp(peer), data);
            self.drain(now);
            return;
        }
        let Some(server) = self.dtls.as_mut() else {
            return;
        };
        self.metrics.datagram_received(Transport::Dtls);
        match self.creds.0.read() {
            Ok(creds) => {
                let lookup = Lookup {
                    creds: &creds,
                    roots: &self.roots,
                };
                server.handle_datagram(now, peer, data, &lookup);
            }
            Err(_) => return,
        }
        self.dtls_events(now);
        self.drain(now);
    }

    fn handle_timeout(&mut self, now: std::time::Instant) {
        self.core.handle_timeout(now);
        if let Some(server) = self.dtls.as_mut() {
            server.handle_timeout(now);
            self.dtls_events(now);
        }
        if self.next_save.is_some_and(|t| t <= now) {
            self.save_some(now);
        }
        self.drain(now);
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
            Control::Admin(req) => {
                // The audit log is read after the writes queued so far are committed, so it
                // includes what just happened; every other answer waits for its own change
                // to be durable. Neither holds up the server task.
                let (reply, audit_limit) = match req.op {
                    AdminOp::Audit { limit } => (AdminReply::ok(), Some(limit)),
                    op => (self.admin(now, op), None),
                };
                let store = self.store.clone();
                match self.store.committed() {
                    Ok(committed) => {
                        tokio::spawn(async move {
                            let reply = match (committed.await, audit_limit) {
                                (Err(e), _) => AdminReply::error(format!("store: {e}")),
                                (Ok(()), None) => reply,
                                (Ok(()), Some(n)) => {
                                    match audit::recent(&store, n.min(admin::MAX_AUDIT_LIMIT)) {
                                        Ok(events) => AdminReply {
                                            events: Some(events),
                                            ..AdminReply::ok()
                                        },
                                        Err(e) => AdminReply::error(format!("store: {e}")),
                                    }
                                }
                            };
                            let _ = req.reply.send(reply);
                        });
                    }
                    Err(e) => {
                        let _ = req.reply.send(AdminReply::error(format!("store: {e}")));
                    }
                }
            }
            Control::Downlink(d) => {
                if let Some(bridge) = self.bridge.as_mut() {
                    let mut path = CoreAt {
                        core: &mut self.core,
                        now,
                    };
                    bridge.on_downlink(d, &mut path);
                }
            }
            Control::Committed(generation) => self.committed(generation),
            Control::Shutdown(done) => {
                self.done = Some(done);
                return ControlFlow::Break(());
            }
        }
        self.drain(now);
        ControlFlow::Continue(())
    }

    fn poll_transmit(&mut self) -> Option<(Listener, Transmit<SocketAddr>)> {
        loop {
            if let Some((peer, payload)) = self.dtls.as_mut().and_then(dtls::Server::poll_transmit)
            {
                self.metrics.datagram_sent(Transport::Dtls);
                return Some((SECURE, Transmit { peer, payload }));
            }
            let t = match self.hold.ready.pop_front() {
                Some(t) => t,
                None => {
                    let t = self.core.poll_transmit()?;
                    if self.hold.active() && self.hold.held.len() < MAX_HELD {
                        let generation = if self.hold.dirty {
                            self.hold.open
                        } else {
                            self.hold.requested
                        };
                        self.hold.held.push_back((generation, t));
                        continue;
                    }
                    t
                }
            };
            match t.peer {
                Link::Udp(peer) => {
                    self.metrics.datagram_sent(Transport::Udp);
                    return Some((
                        PLAIN,
                        Transmit {
                            peer,
                            payload: t.payload,
                        },
                    ));
                }
                Link::Dtls(conn) => {
                    if let Some(server) = self.dtls.as_mut() {
                        if let Err(e) = server.send(conn, &t.payload) {
                            // The session is gone; CoAP retransmission gives up in its time.
                            tracing::debug!(peer = %conn, error = %e, "no DTLS session to send on");
                        }
                    }
                }
            }
        }
    }

    fn poll_timeout(&self) -> Option<std::time::Instant> {
        [
            self.core.poll_timeout(),
            self.dtls.as_ref().and_then(dtls::Server::poll_timeout),
            self.next_save,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Store writes go to the group-committing writer; events to the broadcast and to the
    /// callers waiting for a result; refusals to the audit log.
    fn flush(&mut self) {
        self.drain(std::time::Instant::now());
        if self.hold.dirty && !self.hold.in_flight() {
            self.request_commit();
        }
    }
}

impl Shell {
    /// Store writes go to the group-committing writer; events to the broadcast, to the
    /// callers waiting for a result, to the audit log and to the MQTT bridge.
    fn drain(&mut self, now: std::time::Instant) {
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
        // Before any event is broadcast: whoever sees an event sees a gauge at least as new.
        self.metrics
            .set_registered_clients(self.core.device_count());
        while let Some(ev) = self.core.poll_event() {
            match &ev {
                DeviceEvent::CommandResult { id, outcome, .. } => {
                    if let Some(w) = self.waiters.remove(id) {
                        let _ = w.send(outcome.clone());
                    }
                }
                DeviceEvent::AuthFailed {
                    endpoint,
                    peer,
                    principal,
                    reason,
                } => {
                    let kind = if principal.is_some() {
                        AuditKind::EndpointMismatch
                    } else {
                        AuditKind::NoSecRefused
                    };
                    let detail = match principal {
                        Some(p) => format!("{reason} (credential of {p})"),
                        None => reason.to_string(),
                    };
                    audit::record(
                        &self.store,
                        &AuditEvent::new(kind, detail)
                            .with_endpoint(endpoint)
                            .with_peer(peer),
                    );
                }
                _ => {}
            }
            if let Some(bridge) = self.bridge.as_mut() {
                let mut path = CoreAt {
                    core: &mut self.core,
                    now,
                };
                bridge.on_event(&ev, &mut path);
            }
            // Counted before the broadcast, which a lagging subscriber may miss events of.
            self.metrics.on_event(&ev);
            // No subscriber is not an error: events are for whoever listens.
            let _ = self.events.send(ev);
        }
        if self.bridge.as_mut().is_some_and(Bridge::take_written) {
            self.hold.dirty = true;
        }
    }

    /// Asks the store to commit what is queued, and to tell us (and the MQTT link) when done.
    fn request_commit(&mut self) {
        let generation = self.hold.open;
        self.hold.open += 1;
        self.hold.requested = generation;
        self.hold.dirty = false;
        let committed = self.store.committed();
        let shared = self.bridge.as_ref().map(Bridge::shared);
        let control = self.control.clone();
        tokio::spawn(async move {
            match committed {
                Ok(c) => {
                    if let Err(e) = c.await {
                        tracing::error!(error = %e, "store commit failed; releasing held datagrams");
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "store unavailable; releasing held datagrams")
                }
            }
            if let Some(shared) = shared {
                shared.committed.notify_one();
            }
            let _ = control.send(Control::Committed(generation)).await;
        });
    }

    /// Releases what a finished commit covers.
    fn committed(&mut self, generation: u64) {
        self.hold.committed = self.hold.committed.max(generation);
        while let Some((g, _)) = self.hold.held.front() {
            if *g > self.hold.committed {
                break;
            }
            if let Some((_, t)) = self.hold.held.pop_front() {
                self.hold.ready.push_back(t);
            }
        }
    }
    /// Hands the DTLS engine's events to the core, the store and the audit log.
    fn dtls_events(&mut self, now: std::time::Instant) {
        let Some(server) = self.dtls.as_mut() else {
            return;
        };
        while let Some(ev) = server.poll_event() {
            match ev {
                ServerEvent::Data { conn, data } => {
                    self.core.handle_datagram(now, Link::Dtls(conn), &data);
                }
                ServerEvent::Established {
                    conn,
                    peer,
                    principal,
                    suite,
                    resumed,
                } => {
                    tracing::debug!(endpoint = %principal, %peer, suite = suite.name(), resumed, "DTLS session established");
                    self.metrics.dtls_handshake(true);
                    self.core
                        .peer_authenticated(Link::Dtls(conn), principal, peer);
                    save_session(server, &self.store, &self.secrets, conn);
                }
                ServerEvent::Migrated { conn, from, to } => {
                    tracing::debug!(peer = %to, %from, %conn, "DTLS session moved (Connection ID)");
                    self.core.peer_moved(Link::Dtls(conn), to);
                }
                ServerEvent::Closed {
                    conn,
                    principal,
                    reason,
                } => {
                    tracing::debug!(endpoint = %principal, %conn, ?reason, "DTLS session closed");
                    self.core.peer_closed(Link::Dtls(conn));
                    let _ = self
                        .store
                        .delete(Table::Sessions, conn.0.to_be_bytes().to_vec());
                }
                ServerEvent::HandshakeFailed { peer, failure } => {
                    self.metrics.dtls_handshake(false);
                    // Timeouts and clients that give up are noise, not security events.
                    if failure.error.is_security_event() {
                        // The identity a device presented names its endpoint if it is one of
                        // ours (a wrong key); the audit entry says both.
                        let endpoint = failure.identity.as_deref().and_then(|id| {
                            let creds = self.creds.0.read().ok()?;
                            let ep = creds.psk(id.as_bytes()).map(|(ep, _)| ep.to_string());
                            ep.or_else(|| creds.get(id).map(|c| c.endpoint.clone()))
                        });
                        let who = match &failure.identity {
                            Some(id) => format!(" for identity {id:?}"),
                            None => String::new(),
                        };
                        let mut ev = AuditEvent::new(
                            AuditKind::AuthFailed,
                            format!(
                                "DTLS handshake refused{who}: {} ({})",
                                failure.error,
                                failure.error.alert()
                            ),
                        )
                        .with_peer(peer);
                        if let Some(ep) = endpoint {
                            ev = ev.with_endpoint(ep);
                        }
                        audit::record(&self.store, &ev);
                    }
                }
            }
        }
        self.metrics.set_dtls_sessions(server.usage().sessions);
    }

    /// Applies an admin operation: the store part as offline, then what only the running
    /// server can do — close the sessions of a revoked or rotated credential, end the
    /// revoked device's registration.
    fn admin(&mut self, now: std::time::Instant, op: AdminOp) -> AdminReply {
        let Ok(mut creds) = self.creds.0.write() else {
            return AdminReply::error("credential index unavailable");
        };
        let revoked = match &op {
            AdminOp::DeviceRevoke { endpoint } => Some(endpoint.clone()),
            _ => None,
        };
        let (reply, changed) = match op {
            AdminOp::DeviceImport { credentials, check } => {
                admin::apply_import(&self.store, &self.secrets, &mut creds, credentials, check)
            }
            op => {
                let endpoint = match &op {
                    AdminOp::DeviceRevoke { endpoint } => Some(endpoint.clone()),
                    AdminOp::DeviceAdd { credential } => Some(credential.endpoint.clone()),
                    _ => None,
                };
                let reply = admin::apply_offline(&self.store, &self.secrets, &mut creds, op);
                // A new credential closes sessions only if it replaced one (rotation).
                let changed = match endpoint {
                    Some(_) if revoked.is_none() && reply.replaced.is_none() => Vec::new(),
                    Some(e) => vec![e],
                    None => Vec::new(),
                };
                (reply, changed)
            }
        };
        drop(creds);
        if !reply.ok || changed.is_empty() {
            return reply;
        }
        let closed = self.close_sessions(&changed);
        self.dtls_events(now);
        if let Some(endpoint) = &revoked {
            self.core.revoke(now, endpoint);
        }
        for (endpoint, n) in closed {
            audit::record(
                &self.store,
                &AuditEvent::new(
                    AuditKind::SessionClosed,
                    format!("{n} DTLS session(s) closed: credential changed"),
                )
                .with_endpoint(endpoint),
            );
        }
        reply
    }

    /// Closes the DTLS sessions of `endpoints`; returns how many each had (those with any).
    /// One endpoint is looked up directly; many (an import's rotations) in a single pass over
    /// the sessions, not one pass each.
    fn close_sessions(&mut self, endpoints: &[String]) -> Vec<(String, usize)> {
        let Some(server) = self.dtls.as_mut() else {
            return Vec::new();
        };
        if let [endpoint] = endpoints {
            let n = server.close_principal(endpoint);
            return if n > 0 {
                vec![(endpoint.clone(), n)]
            } else {
                Vec::new()
            };
        }
        let wanted: std::collections::HashSet<&str> =
            endpoints.iter().map(String::as_str).collect();
        let mut closed: HashMap<String, usize> = HashMap::new();
        for conn in server.conns() {
            let Some(principal) = server.principal(conn) else {
                continue;
            };
            if wanted.contains(&**principal) {
                *closed.entry(principal.to_string()).or_default() += 1;
                server.close(conn);
            }
        }
        closed.into_iter().collect()
    }

    /// Saves the next chunk of a periodic save of the DTLS sessions.
    fn save_some(&mut self, now: std::time::Instant) {
        let Some(server) = self.dtls.as_ref() else {
            self.next_save = None;
            return;
        };
        if self.saving.is_empty() {
            self.saving = server.conns();
        }
        let at = self.saving.len().saturating_sub(SAVE_CHUNK);
        for conn in self.saving.split_off(at) {
            save_session(server, &self.store, &self.secrets, conn);
        }
        self.next_save = if self.saving.is_empty() {
            self.save_every.map(|d| now + d)
        } else {
            Some(now + Duration::from_millis(50))
        };
    }

    /// After the driver stopped: save the DTLS sessions, commit the store, close it, tell
    /// `shutdown`'s caller.
    async fn finish(self) -> anyhow::Result<()> {
        // First the admin socket, so a CLI call cannot reach a server that is going away
        // and the socket file is gone when `shutdown` returns.
        for t in &self.admin_tasks {
            t.abort();
        }
        for t in self.admin_tasks {
            let _ = t.await;
        }
        if let Some(t) = self.http_task {
            t.abort();
            let _ = t.await;
        }
        if let Some(mqtt) = self.mqtt {
            mqtt.stop().await;
        }
        if let Some(server) = &self.dtls {
            let conns = server.conns();
            for conn in &conns {
                save_session(server, &self.store, &self.secrets, *conn);
            }
            tracing::info!(sessions = conns.len(), "DTLS sessions saved");
        }
        self.store.flush().await?;
        self.store.close()?;
        tracing::info!("server stopped; store flushed");
        if let Some(done) = self.done {
            let _ = done.send(());
        }
        Ok(())
    }
}

/// Writes one session, sealed with the secrets key (it holds session keys).
fn save_session(server: &dtls::Server, store: &Store, secrets: &SecretsKey, conn: ConnId) {
    if let Some(bytes) = server.save_session(conn) {
        let key = conn.0.to_be_bytes().to_vec();
        let sealed = secrets.seal(&key, &bytes);
        if let Err(e) = store.put(Table::Sessions, key, sealed) {
            tracing::warn!(%conn, error = %e, "could not save a DTLS session");
        }
    }
}
