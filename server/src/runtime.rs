//! The tokio shell around [`ServerCore`]: sockets, the store, the command channel and the
//! event stream. No protocol logic lives here (DESIGN.md: binaries and shells stay thin).
//!
//! One task owns the core. Each UDP socket has a reader task that forwards datagrams to it
//! through a bounded channel (so two sockets, IPv4 and IPv6, need no `select!` over a
//! variable set); replies are sent straight from the core task. Store writes leave through
//! the store's group-committing writer, device events through a bounded broadcast channel.
use crate::config::Config;
use crate::core::types::{Command, CommandId, DeviceEvent, Outcome, Registration};
use crate::core::ServerCore;
use crate::store::{Store, StoreConfig, StoreError, StoreStats, Table};
use anyhow::Context;
use lwm2m::model::{Path, Registry};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Datagrams waiting between the socket readers and the core.
const INBOUND_CAPACITY: usize = 8192;
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

/// IPv4 peers are kept in plain form whichever socket they came through, so a device has one
/// address whether the server listens on `0.0.0.0` or a dual-stack `[::]`.
fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

/// Picks the socket (and address form) to reach `peer` through.
fn route<'a>(
    sockets: &'a [Arc<UdpSocket>],
    addrs: &[SocketAddr],
    peer: SocketAddr,
) -> Option<(&'a Arc<UdpSocket>, SocketAddr)> {
    let same = addrs.iter().position(|a| a.is_ipv4() == peer.is_ipv4());
    if let Some(i) = same {
        return sockets.get(i).map(|s| (s, peer));
    }
    // An IPv4 peer reached through a dual-stack IPv6 socket.
    let i = addrs.iter().position(|a| a.is_ipv6())?;
    let mapped = match peer {
        SocketAddr::V4(v4) => SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port()),
        v6 => v6,
    };
    sockets.get(i).map(|s| (s, mapped))
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

    let mut sockets = Vec::new();
    let mut addrs = Vec::new();
    for bind in &config.server.coap_bind {
        let s = bind_udp(*bind, config.server.udp_recv_buffer_bytes)
            .with_context(|| format!("binding CoAP socket {bind}"))?;
        let local = s.local_addr()?;
        tracing::info!(addr = %local, "CoAP (NoSec) listening");
        addrs.push(local);
        sockets.push(Arc::new(s));
    }
    let (inbound_tx, inbound) = mpsc::channel(INBOUND_CAPACITY);
    let readers: Vec<JoinHandle<()>> = sockets
        .iter()
        .map(|s| tokio::spawn(read_socket(s.clone(), inbound_tx.clone())))
        .collect();
    drop(inbound_tx);
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
        sockets,
        addrs,
        events,
        waiters: HashMap::new(),
    };
    let task = tokio::spawn(shell.run(inbound, control, readers));
    Ok(Server { handle, task })
}

/// Binds a UDP socket with a receive buffer of `recv_buffer` bytes. The kernel default
/// (about 200 KB, some 150 small datagrams) overflows when thousands of devices re-register
/// at once after a restart, and every datagram dropped there costs the device a 2-3 s
/// retransmission. The kernel caps the size at `net.core.rmem_max`; the size obtained is
/// logged.
fn bind_udp(addr: SocketAddr, recv_buffer: usize) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        // `[::]` serves IPv4 too (as mapped addresses), which `route` relies on.
        socket.set_only_v6(false).ok();
    }
    if recv_buffer > 0 {
        if let Err(e) = socket.set_recv_buffer_size(recv_buffer) {
            tracing::warn!(%addr, error = %e, "could not set the UDP receive buffer");
        }
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    let got = socket.recv_buffer_size().unwrap_or(0);
    if got < recv_buffer {
        tracing::warn!(%addr, wanted = recv_buffer, got, "UDP receive buffer capped by the kernel (raise net.core.rmem_max)");
    }
    UdpSocket::from_std(socket.into())
}

async fn read_socket(socket: Arc<UdpSocket>, to_core: mpsc::Sender<(SocketAddr, Vec<u8>)>) {
    let mut buf = vec![0u8; 65_536];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((n, peer)) => {
                let data = buf.get(..n).unwrap_or_default().to_vec();
                if to_core.send((canonical(peer), data)).await.is_err() {
                    return;
                }
            }
            Err(e) => tracing::debug!(error = %e, "UDP receive failed"),
        }
    }
}

struct Shell {
    core: ServerCore<SocketAddr>,
    store: Store,
    sockets: Vec<Arc<UdpSocket>>,
    addrs: Vec<SocketAddr>,
    events: broadcast::Sender<DeviceEvent>,
    /// Callers of `execute` waiting for their command's result.
    waiters: HashMap<CommandId, oneshot::Sender<Outcome>>,
}

impl Shell {
    async fn run(
        mut self,
        mut inbound: mpsc::Receiver<(SocketAddr, Vec<u8>)>,
        mut control: mpsc::Receiver<Control>,
        readers: Vec<JoinHandle<()>>,
    ) -> anyhow::Result<()> {
        let sleep = tokio::time::sleep_until(Instant::now());
        tokio::pin!(sleep);
        let done = loop {
            self.drain().await;
            let deadline = self.core.poll_timeout();
            if let Some(t) = deadline {
                sleep.as_mut().reset(t.into());
            }
            tokio::select! {
                Some((peer, data)) = inbound.recv() => {
                    let now = Instant::now().into_std();
                    self.core.handle_datagram(now, peer, &data);
                    // Take whatever else already arrived before answering (batching).
                    for _ in 0..64 {
                        match inbound.try_recv() {
                            Ok((peer, data)) => self.core.handle_datagram(now, peer, &data),
                            Err(_) => break,
                        }
                    }
                }
                () = &mut sleep, if deadline.is_some() => self.core.handle_timeout(Instant::now().into_std()),
                msg = control.recv() => match msg {
                    Some(Control::Shutdown(done)) => break Some(done),
                    Some(c) => self.on_control(c),
                    None => break None,
                },
            }
        };
        for r in readers {
            r.abort();
        }
        self.drain().await;
        self.store.flush().await?;
        self.store.close()?;
        tracing::info!("server stopped; store flushed");
        if let Some(done) = done {
            let _ = done.send(());
        }
        Ok(())
    }

    fn on_control(&mut self, c: Control) {
        let now = Instant::now().into_std();
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
            Control::Shutdown(_) => {}
        }
    }

    /// Sends, stores and publishes everything the core produced.
    async fn drain(&mut self) {
        while let Some(t) = self.core.poll_transmit() {
            let Some((socket, to)) = route(&self.sockets, &self.addrs, t.peer) else {
                continue;
            };
            let sent = match socket.try_send_to(&t.payload, to) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    socket.send_to(&t.payload, to).await
                }
                r => r,
            };
            if let Err(e) = sent {
                tracing::debug!(peer = %t.peer, error = %e, "UDP send failed");
            }
        }
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
