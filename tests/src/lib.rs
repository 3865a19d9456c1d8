//! Support for the end-to-end tests in `tests/tests/`: the real server runtime on loopback
//! with a temporary data directory, and devices that run the real `lwm2m::client` over their
//! own UDP sockets.
//!
//! A device is the sans-IO client run by `lwm2m::net::machine`, the same driver as the
//! server's, so what the tests exercise is the protocol code itself.
#![warn(missing_docs)]

pub mod lossy;

use lwm2m::client::{Client, ClientConfig, ClientEvent, ObjectStore};
use lwm2m::model::{Instance, Resource, Value};
use lwm2m::net::machine::{self, Listener, Machine, Sockets};
use lwm2m::net::secure::{LinkEvent, SecureLink};
use lwm2m_server::config::Config;
use lwm2m_server::core::types::{Command, DeregisterReason, DeviceEvent, ObservationId, Outcome};
use lwm2m_server::provisioning::admin::AdminOp;
use lwm2m_server::provisioning::credentials::{NewCredential, Secret};
use lwm2m_server::{Server, ServerHandle};
use std::future::Future;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

/// Generous bound for anything a test waits for; only there so a broken build fails instead
/// of hanging. Tests never assert on timings.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A stream of events a test reads: a device's, a DTLS link's, the server's, an MQTT
/// subscriber's.
pub trait Events {
    /// What the stream carries.
    type Item;
    /// The next event; `None` once the stream ended.
    fn next_event(&mut self) -> impl Future<Output = Option<Self::Item>> + Send;
}

impl<E: Send> Events for mpsc::Receiver<E> {
    type Item = E;
    async fn next_event(&mut self) -> Option<E> {
        self.recv().await
    }
}

impl<E: Clone + Send> Events for broadcast::Receiver<E> {
    type Item = E;
    async fn next_event(&mut self) -> Option<E> {
        loop {
            match self.recv().await {
                Ok(e) => return Some(e),
                // A test that fell behind still looks at what comes next.
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

/// Waits for the first event of `events` that `pick` accepts, skipping others; panics
/// (naming `what`) if the stream ends or nothing matches within [`PATIENCE`].
pub async fn wait_for<S: Events, T>(
    events: &mut S,
    what: &str,
    mut pick: impl FnMut(&S::Item) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match tokio::time::timeout_at(deadline, events.next_event()).await {
            Ok(Some(ev)) => {
                if let Some(t) = pick(&ev) {
                    return t;
                }
            }
            Ok(None) => panic!("the {what} stream ended"),
            Err(_) => panic!("no matching {what} event within {PATIENCE:?}"),
        }
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago (for a broker the test starts).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A `redis-server` (Debian package `redis-server`) on a free loopback port, without
/// persistence, for the cluster's shared store; stopped when dropped.
pub struct RedisServer {
    child: std::process::Child,
    /// `redis://127.0.0.1:{port}/0`.
    pub url: String,
}

impl RedisServer {
    /// Starts it and waits until it answers.
    pub async fn start() -> anyhow::Result<Self> {
        use anyhow::Context;
        let port = free_port();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .context("starting redis-server (Debian package redis-server)")?;
        let server = Self {
            child,
            url: format!("redis://127.0.0.1:{port}/0"),
        };
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Ok(server);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!("redis-server did not listen on {port} within 5 s")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `[mqtt]` section for a bridge to `broker` (embedded in the server or not), MQTT 5,
/// reconnecting quickly.
pub fn mqtt_config(broker: SocketAddr, embedded: bool) -> String {
    format!(
        "[mqtt]\nenabled = true\nbroker = \"{broker}\"\nembedded_broker = {embedded}\nversion = 5\nreconnect_min_ms = 100\nreconnect_max_ms = 500\n"
    )
}

/// The standard objects plus a temperature sensor (`/3303/0`) reading `celsius`.
pub fn sensor_store(endpoint: &str, celsius: f64) -> ObjectStore {
    let mut store = ObjectStore::standard(endpoint);
    let mut inst = Instance::new();
    inst.insert(5700, Resource::Single(Value::Float(celsius)));
    inst.insert(5701, Resource::Single(Value::String("Cel".into())));
    store
        .add_instance(3303, 0, inst)
        .expect("3303 is a known object");
    store
}

fn psk_credential(endpoint: &str, identity: &str, key: &[u8]) -> NewCredential {
    NewCredential {
        endpoint: endpoint.into(),
        secret: Secret::Psk {
            identity: identity.as_bytes().to_vec(),
            key: key.to_vec(),
        },
    }
}

/// A server started for one test.
pub struct TestServer {
    /// The running server.
    pub server: Server,
    /// Its CoAP address.
    pub addr: SocketAddr,
    /// Its CoAP-over-DTLS address.
    pub secure_addr: SocketAddr,
    /// Its event stream, subscribed before any device could register.
    pub events: broadcast::Receiver<DeviceEvent>,
}

impl TestServer {
    /// Starts a server on 127.0.0.1 with `data_dir`, on `port` (0 for any), and with extra
    /// TOML appended to the configuration.
    pub async fn start(data_dir: &Path, port: u16, extra: &str) -> anyhow::Result<Self> {
        Self::start_on(data_dir, port, 0, extra).await
    }

    /// Like [`start`](Self::start), with the MQTT bridge and its embedded broker on a free
    /// port; also returns the broker's address.
    pub async fn start_with_embedded_broker(
        data_dir: &Path,
        extra: &str,
    ) -> anyhow::Result<(Self, SocketAddr)> {
        let broker = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let s = Self::start(
            data_dir,
            0,
            &format!("{}{extra}", mqtt_config(broker, true)),
        )
        .await?;
        Ok((s, broker))
    }

    /// Like [`start`](Self::start), with the DTLS port too (0 for any).
    pub async fn start_on(
        data_dir: &Path,
        port: u16,
        secure_port: u16,
        extra: &str,
    ) -> anyhow::Result<Self> {
        let text = format!(
            "[server]\ncoap_bind = [\"127.0.0.1:{port}\"]\ncoaps_bind = [\"127.0.0.1:{secure_port}\"]\ndata_dir = \"{}\"\n{extra}",
            data_dir.display()
        );
        // The MQTT bridge and its embedded broker only where a test asks for them, so tests
        // in parallel do not fight over one broker port.
        let text = if extra.contains("[mqtt]") {
            text
        } else {
            format!("{text}\n[mqtt]\nenabled = false\n")
        };
        // The bootstrap server beside it on free ports, for the same reason.
        let text = if extra.contains("[bootstrap]") {
            text
        } else {
            format!("{text}\n[bootstrap]\ncoap_bind = [\"127.0.0.1:0\"]\ncoaps_bind = [\"127.0.0.1:0\"]\n")
        };
        // The HTTP API on any free port, for the same reason.
        let text = if extra.contains("[http]") {
            text
        } else {
            format!("{text}\n[http]\nbind = \"127.0.0.1:0\"\n")
        };
        let config = Config::parse(&text)?;
        let server = lwm2m_server::start(&config).await?;
        let events = server.handle.subscribe();
        let addr = *server
            .handle
            .local_addrs()
            .first()
            .ok_or_else(|| anyhow::anyhow!("no socket"))?;
        let secure_addr = *server
            .handle
            .secure_addrs()
            .first()
            .ok_or_else(|| anyhow::anyhow!("no DTLS socket"))?;
        Ok(Self {
            server,
            addr,
            secure_addr,
            events,
        })
    }

    /// The handle.
    pub fn handle(&self) -> &ServerHandle {
        &self.server.handle
    }

    /// Waits for the first event that `pick` accepts, skipping others.
    pub async fn wait_for<T>(&mut self, pick: impl FnMut(&DeviceEvent) -> Option<T>) -> T {
        wait_for(&mut self.events, "server", pick).await
    }

    /// Waits until a device is refused for who it is; returns the endpoint name it used and
    /// the endpoint its credential is bound to.
    pub async fn auth_failed(&mut self) -> (String, Option<String>) {
        self.wait_for(|e| match e {
            DeviceEvent::AuthFailed {
                endpoint,
                principal,
                ..
            } => Some((endpoint.clone(), principal.clone())),
            _ => None,
        })
        .await
    }

    /// Waits until `endpoint` registers; returns the address it registered from.
    pub async fn registered(&mut self, endpoint: &str) -> String {
        self.wait_for(|e| match e {
            DeviceEvent::Registered { registration, .. } if registration.endpoint == endpoint => {
                Some(registration.address.clone())
            }
            _ => None,
        })
        .await
    }

    /// Waits until `endpoint`'s registration ends; returns why.
    pub async fn deregistered(&mut self, endpoint: &str) -> DeregisterReason {
        self.wait_for(|e| match e {
            DeviceEvent::Deregistered {
                endpoint: ep,
                reason,
            } if ep == endpoint => Some(*reason),
            _ => None,
        })
        .await
    }

    /// Runs `cmd` and returns its outcome.
    pub async fn execute(&self, cmd: Command) -> Outcome {
        self.handle().execute(cmd).await.expect("server running").1
    }

    /// Adds a PSK credential for `endpoint` through the admin interface.
    pub async fn provision_psk(&self, endpoint: &str, identity: &str, key: &[u8]) {
        let credential = psk_credential(endpoint, identity, key);
        self.admin_ok(AdminOp::DeviceAdd { credential }).await;
    }

    /// Gives `endpoint` a factory PSK for the bootstrap server (`bootstrap add`).
    pub async fn provision_bootstrap_psk(&self, endpoint: &str, identity: &str, key: &[u8]) {
        let credential = psk_credential(endpoint, identity, key);
        self.admin_ok(AdminOp::BootstrapAdd { credential }).await;
    }

    async fn admin_ok(&self, op: AdminOp) {
        let reply = self.handle().admin(op).await.expect("server running");
        assert!(reply.ok, "{reply:?}");
    }

    /// The id of the next observation a command started.
    pub async fn observation_started(&mut self) -> ObservationId {
        self.wait_for(|e| match e {
            DeviceEvent::CommandResult {
                observation: Some(o),
                ..
            } => Some(*o),
            _ => None,
        })
        .await
    }

    /// Stops the server and waits until its store is committed.
    pub async fn stop(self) {
        self.server.handle.shutdown().await;
        let _ = self.server.task.await;
    }
}

type Job = Box<dyn FnOnce(&mut Client<SocketAddr>, Instant, Option<&mut SecureLink>) + Send>;

/// A device: one `lwm2m::client::Client` on its own UDP socket, driven by a tokio task.
pub struct Device {
    jobs: mpsc::Sender<Job>,
    /// Everything the client reported, in order.
    pub events: mpsc::Receiver<ClientEvent>,
    /// The device's address, as the server sees it.
    pub addr: SocketAddr,
    /// What its DTLS link reported (sessions up and down), for a secure device.
    pub link_events: mpsc::Receiver<LinkEvent>,
    task: JoinHandle<()>,
}

impl Device {
    /// Starts a device with `config` and the standard objects, and registers it.
    pub async fn start(server: SocketAddr, config: ClientConfig) -> anyhow::Result<Self> {
        let store = ObjectStore::standard(&config.endpoint);
        Self::start_with(server, config, store).await
    }

    /// Starts a device with `config` and `store`, and registers it.
    pub async fn start_with(
        server: SocketAddr,
        config: ClientConfig,
        store: ObjectStore,
    ) -> anyhow::Result<Self> {
        Self::spawn(server, config, store, None).await
    }

    /// Starts a device that talks to the server over DTLS with `dtls`, and registers it.
    pub async fn start_secure(
        server: SocketAddr,
        config: ClientConfig,
        dtls: dtls::ClientConfig,
    ) -> anyhow::Result<Self> {
        let store = ObjectStore::standard(&config.endpoint);
        Self::spawn(server, config, store, Some(dtls)).await
    }

    /// Starts a device with `store` that talks to the server over DTLS with `dtls`, and
    /// registers it.
    pub async fn start_secure_with(
        server: SocketAddr,
        config: ClientConfig,
        store: ObjectStore,
        dtls: dtls::ClientConfig,
    ) -> anyhow::Result<Self> {
        Self::spawn(server, config, store, Some(dtls)).await
    }

    async fn spawn(
        server: SocketAddr,
        config: ClientConfig,
        store: ObjectStore,
        dtls: Option<dtls::ClientConfig>,
    ) -> anyhow::Result<Self> {
        let sockets = Sockets::bind(&[SocketAddr::from(([127, 0, 0, 1], 0))], 0)?;
        let addr = *sockets
            .local_addrs()
            .first()
            .ok_or_else(|| anyhow::anyhow!("no socket"))?;
        let client = Client::new(config, server, store);
        let (jobs, jobs_rx) = mpsc::channel::<Job>(64);
        let (events_tx, events) = mpsc::channel(1024);
        let (link_tx, link_events) = mpsc::channel(64);
        let link =
            dtls.map(|c| SecureLink::connect(Arc::new(c), Instant::now(), rand::random(), None));
        let task = tokio::spawn(async move {
            machine::run(
                sockets,
                DeviceMachine {
                    client,
                    server,
                    link,
                    events: events_tx,
                    link_events: link_tx,
                },
                jobs_rx,
            )
            .await;
        });
        let dev = Self {
            jobs,
            events,
            addr,
            link_events,
            task,
        };
        dev.with(|c, now| {
            let _ = c.start(now);
        })
        .await;
        Ok(dev)
    }

    /// Runs `f` on the client inside its task (then sends what it produced).
    pub async fn with(&self, f: impl FnOnce(&mut Client<SocketAddr>, Instant) + Send + 'static) {
        let _ = self.jobs.send(Box::new(move |c, now, _| f(c, now))).await;
    }

    /// Waits for the first client event that `pick` accepts, skipping others.
    pub async fn wait_for<T>(&mut self, pick: impl FnMut(&ClientEvent) -> Option<T>) -> T {
        wait_for(&mut self.events, "device", pick).await
    }

    /// Waits until the device registered.
    pub async fn registered(&mut self) {
        self.wait_for(|e| matches!(e, ClientEvent::Registered { .. }).then_some(()))
            .await;
    }

    /// Waits until a registration attempt fails; returns the error as text.
    pub async fn registration_failed(&mut self) -> String {
        self.wait_for(|e| match e {
            ClientEvent::RegistrationFailed { error } => Some(error.to_string()),
            _ => None,
        })
        .await
    }

    /// Makes the device send an Update now.
    pub async fn update(&self) {
        self.with(|c, now| {
            let _ = c.update(now);
        })
        .await;
    }

    /// Makes the device de-register now.
    pub async fn deregister(&self) {
        self.with(|c, now| {
            let _ = c.deregister(now);
        })
        .await;
    }

    /// Runs `f` on the device's DTLS link inside its task (a secure device only).
    pub async fn with_link(&self, f: impl FnOnce(&mut SecureLink, Instant) + Send + 'static) {
        let _ = self
            .jobs
            .send(Box::new(move |_, now, link| {
                if let Some(l) = link {
                    f(l, now);
                }
            }))
            .await;
    }

    /// Waits for the first link event that `pick` accepts, skipping others.
    pub async fn wait_link<T>(&mut self, pick: impl FnMut(&LinkEvent) -> Option<T>) -> T {
        wait_for(&mut self.link_events, "link", pick).await
    }

    /// Waits until the device's DTLS session goes down; returns why.
    pub async fn link_down(&mut self) -> String {
        self.wait_link(|e| match e {
            LinkEvent::Down { reason } => Some(reason.clone()),
            _ => None,
        })
        .await
    }

    /// Stops the device at once, like pulling its battery: nothing more is sent.
    pub fn kill(self) {
        self.task.abort();
    }
}

/// A device as a [`Machine`]: the client (behind a DTLS link for a secure device), its jobs
/// as commands, its events to the test.
struct DeviceMachine {
    client: Client<SocketAddr>,
    server: SocketAddr,
    link: Option<SecureLink>,
    events: mpsc::Sender<ClientEvent>,
    link_events: mpsc::Sender<LinkEvent>,
}

impl Machine for DeviceMachine {
    type Command = Job;

    fn handle_datagram(&mut self, now: Instant, _l: Listener, peer: SocketAddr, data: &[u8]) {
        match &mut self.link {
            None => self.client.handle_datagram(now, peer, data),
            Some(link) => {
                let mut plain = Vec::new();
                link.handle_datagram(now, data, &mut plain);
                for d in plain {
                    self.client.handle_datagram(now, self.server, &d);
                }
            }
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.client.handle_timeout(now);
        if let Some(link) = &mut self.link {
            link.handle_timeout(now);
        }
    }

    fn handle_command(&mut self, now: Instant, job: Job) -> ControlFlow<()> {
        job(&mut self.client, now, self.link.as_mut());
        ControlFlow::Continue(())
    }

    fn poll_transmit(&mut self) -> Option<(Listener, lwm2m::coap::Transmit<SocketAddr>)> {
        let Some(link) = &mut self.link else {
            return self.client.poll_transmit().map(|t| (0, t));
        };
        while let Some(t) = self.client.poll_transmit() {
            link.send(t.payload);
        }
        link.poll_transmit().map(|payload| {
            (
                0,
                lwm2m::coap::Transmit {
                    peer: self.server,
                    payload,
                },
            )
        })
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let link = self.link.as_ref().and_then(SecureLink::poll_timeout);
        match (self.client.poll_timeout(), link) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn flush(&mut self) {
        if let Some(link) = &mut self.link {
            while let Some(ev) = link.poll_event() {
                if matches!(ev, LinkEvent::Connected { .. }) {
                    self.client.reconnected(Instant::now());
                }
                let _ = self.link_events.try_send(ev);
            }
        }
        while let Some(ev) = self.client.poll_event() {
            // An unanswered Update: the session may be gone with the node that held it.
            if ev == ClientEvent::Unreachable {
                if let Some(link) = &mut self.link {
                    link.reconnect(Instant::now());
                }
            }
            // A test that stopped reading has its answer already.
            let _ = self.events.try_send(ev);
        }
    }
}

/// How a [`bootstrap`] run ends early, to play a device that drops out mid-sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropout {
    /// Run to Finish (or failure).
    Never,
    /// Stop answering once this many datagrams came from the bootstrap server (its answer to
    /// the Bootstrap-Request included).
    AfterRequests(usize),
}

/// Bootstraps a device born with only a factory PSK (`identity`, `key`) for the bootstrap
/// server at `server`, with a real `lwm2m::client::Bootstrapper` behind a real DTLS client on
/// its own UDP socket. Returns the device's object store after Finish, holding the account
/// it was given; an error if the bootstrap failed, took over 30 s, or dropped out.
pub async fn bootstrap(
    server: SocketAddr,
    endpoint: &str,
    identity: &[u8],
    key: &[u8],
    dropout: Dropout,
) -> anyhow::Result<ObjectStore> {
    use lwm2m::client::{BootstrapEvent, Bootstrapper, BootstrapperConfig, SecurityMode};
    let socket = tokio::net::UdpSocket::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let dtls = dtls::ClientConfig::psk(identity.to_vec(), key.to_vec());
    let start = Instant::now();
    let mut link = SecureLink::connect(Arc::new(dtls), start, rand::random(), None);
    let factory = ObjectStore::factory(
        endpoint,
        &format!("coaps://{server}"),
        &SecurityMode::Psk {
            identity: identity.to_vec(),
            key: key.to_vec(),
        },
    );
    let mut device = Bootstrapper::new(BootstrapperConfig::new(endpoint), server, factory);
    device.start(start)?;
    let deadline = start + Duration::from_secs(30);
    let mut requests = 0usize;
    let mut buf = vec![0u8; 4096];
    loop {
        while let Some(t) = device.poll_transmit() {
            link.send(t.payload);
        }
        while let Some(d) = link.poll_transmit() {
            socket.send_to(&d, server).await?;
        }
        if let Some(ev) = device.poll_event() {
            return match ev {
                BootstrapEvent::Finished => Ok(device.into_store()),
                BootstrapEvent::Failed { reason } => {
                    Err(anyhow::anyhow!("bootstrap failed: {reason}"))
                }
                other => Err(anyhow::anyhow!("unexpected {other:?}")),
            };
        }
        let wake = [device.poll_timeout(), link.poll_timeout(), Some(deadline)]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(deadline);
        tokio::select! {
            r = socket.recv_from(&mut buf) => {
                let (n, from) = r?;
                if from != server {
                    continue;
                }
                let now = Instant::now();
                let mut data = Vec::new();
                link.handle_datagram(now, buf.get(..n).unwrap_or_default(), &mut data);
                for d in data {
                    requests += 1;
                    if let Dropout::AfterRequests(k) = dropout {
                        if requests > k {
                            anyhow::bail!("dropped out after {k} requests");
                        }
                    }
                    device.handle_datagram(now, server, &d);
                }
            }
            _ = tokio::time::sleep_until(wake.into()) => {
                let now = Instant::now();
                link.handle_timeout(now);
                device.handle_timeout(now);
            }
        }
        if Instant::now() >= deadline {
            anyhow::bail!("no Finish within 30 s");
        }
    }
}

/// The PSK account a bootstrapped device was given: (URI, identity, key).
pub fn psk_account(store: &ObjectStore) -> Option<(String, Vec<u8>, Vec<u8>)> {
    store
        .server_accounts()
        .into_iter()
        .find_map(|a| match a.security {
            lwm2m::client::SecurityMode::Psk { identity, key } => Some((a.uri, identity, key)),
            _ => None,
        })
}
