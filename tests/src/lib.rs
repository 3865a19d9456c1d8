//! Support for the end-to-end tests in `tests/tests/`: the real server runtime on loopback
//! with a temporary data directory, and devices that run the real `lwm2m::client` over their
//! own UDP sockets.
//!
//! The device driver is the thinnest possible shell around the sans-IO client (socket in,
//! timer, commands, socket out), so what the tests exercise is the protocol code itself.
#![warn(missing_docs)]

use lwm2m::client::{Client, ClientConfig, ClientEvent, ObjectStore};
use lwm2m_server::config::Config;
use lwm2m_server::core::types::DeviceEvent;
use lwm2m_server::{Server, ServerHandle};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

/// Generous bound for anything a test waits for; only there so a broken build fails instead
/// of hanging. Tests never assert on timings.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A server started for one test.
pub struct TestServer {
    /// The running server.
    pub server: Server,
    /// Its CoAP address.
    pub addr: SocketAddr,
    /// Its event stream, subscribed before any device could register.
    pub events: broadcast::Receiver<DeviceEvent>,
}

impl TestServer {
    /// Starts a server on 127.0.0.1 with `data_dir`, on `port` (0 for any), and with extra
    /// TOML appended to the configuration.
    pub async fn start(data_dir: &Path, port: u16, extra: &str) -> anyhow::Result<Self> {
        let text = format!(
            "[server]\ncoap_bind = [\"127.0.0.1:{port}\"]\ndata_dir = \"{}\"\n{extra}",
            data_dir.display()
        );
        let config = Config::parse(&text)?;
        let server = lwm2m_server::start(&config).await?;
        let events = server.handle.subscribe();
        let addr = *server
            .handle
            .local_addrs()
            .first()
            .ok_or_else(|| anyhow::anyhow!("no socket"))?;
        Ok(Self {
            server,
            addr,
            events,
        })
    }

    /// The handle.
    pub fn handle(&self) -> &ServerHandle {
        &self.server.handle
    }

    /// Waits for the first event that `pick` accepts, skipping others.
    pub async fn wait_for<T>(&mut self, mut pick: impl FnMut(&DeviceEvent) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Ok(ev)) => {
                    if let Some(t) = pick(&ev) {
                        return t;
                    }
                }
                Ok(Err(broadcast::error::RecvError::Lagged(_))) => continue,
                Ok(Err(e)) => panic!("server event stream ended: {e}"),
                Err(_) => panic!("no matching server event within {PATIENCE:?}"),
            }
        }
    }

    /// Stops the server and waits until its store is committed.
    pub async fn stop(self) {
        self.server.handle.shutdown().await;
        let _ = self.server.task.await;
    }
}

type Job = Box<dyn FnOnce(&mut Client<SocketAddr>, Instant) + Send>;

/// A device: one `lwm2m::client::Client` on its own UDP socket, driven by a tokio task.
pub struct Device {
    jobs: mpsc::Sender<Job>,
    /// Everything the client reported, in order.
    pub events: mpsc::Receiver<ClientEvent>,
    /// The device's address, as the server sees it.
    pub addr: SocketAddr,
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
        let socket = UdpSocket::bind("127.0.0.1:0").await?;
        let addr = socket.local_addr()?;
        let client = Client::new(config, server, store);
        let (jobs, jobs_rx) = mpsc::channel::<Job>(64);
        let (events_tx, events) = mpsc::channel(1024);
        let task = tokio::spawn(drive(socket, client, jobs_rx, events_tx));
        let dev = Self {
            jobs,
            events,
            addr,
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
        let _ = self.jobs.send(Box::new(f)).await;
    }

    /// Waits for the first client event that `pick` accepts, skipping others.
    pub async fn wait_for<T>(&mut self, mut pick: impl FnMut(&ClientEvent) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(ev)) => {
                    if let Some(t) = pick(&ev) {
                        return t;
                    }
                }
                Ok(None) => panic!("device stopped"),
                Err(_) => panic!("no matching device event within {PATIENCE:?}"),
            }
        }
    }

    /// Stops the device at once, like pulling its battery: nothing more is sent.
    pub fn kill(self) {
        self.task.abort();
    }
}

async fn drive(
    socket: UdpSocket,
    mut client: Client<SocketAddr>,
    mut jobs: mpsc::Receiver<Job>,
    events: mpsc::Sender<ClientEvent>,
) {
    let mut buf = vec![0u8; 65_536];
    loop {
        while let Some(t) = client.poll_transmit() {
            let _ = socket.send_to(&t.payload, t.peer).await;
        }
        while let Some(ev) = client.poll_event() {
            if events.send(ev).await.is_err() {
                return;
            }
        }
        let deadline = client.poll_timeout().map(tokio::time::Instant::from_std);
        tokio::select! {
            r = socket.recv_from(&mut buf) => {
                if let Ok((n, peer)) = r {
                    client.handle_datagram(Instant::now(), peer, buf.get(..n).unwrap_or_default());
                }
            }
            () = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            } => client.handle_timeout(Instant::now()),
            job = jobs.recv() => match job {
                Some(f) => f(&mut client, Instant::now()),
                None => return,
            },
        }
    }
}
