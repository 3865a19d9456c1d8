//! A lossy UDP relay between devices and a server, on loopback: every datagram either way is
//! dropped with a given probability (from a seed, so a failing run can be replayed), and the
//! relay can be cut altogether for a while (a device out of coverage, asleep). Each device
//! gets its own upstream socket, so the server still sees one address per device.
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// What the relay counted.
#[derive(Debug, Default)]
pub struct RelayStats {
    /// Datagrams from devices to the server, dropped ones included.
    pub up: AtomicU64,
    /// Datagrams from the server to devices, dropped ones included.
    pub down: AtomicU64,
    /// Datagrams dropped (either way).
    pub dropped: AtomicU64,
}

/// The relay; stops when dropped.
pub struct LossyRelay {
    /// Where devices send to.
    pub addr: SocketAddr,
    /// Its counters.
    pub stats: Arc<RelayStats>,
    cut: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl LossyRelay {
    /// A relay to `server` dropping each datagram with probability `loss`.
    pub async fn start(server: SocketAddr, loss: f64, seed: u64) -> std::io::Result<Self> {
        let front = Arc::new(UdpSocket::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?);
        let addr = front.local_addr()?;
        let stats = Arc::new(RelayStats::default());
        let cut = Arc::new(AtomicBool::new(false));
        let rng = Arc::new(Mutex::new(rand::rngs::StdRng::seed_from_u64(seed)));
        let task = tokio::spawn(relay(front, server, loss, rng, stats.clone(), cut.clone()));
        Ok(Self {
            addr,
            stats,
            cut,
            task,
        })
    }

    /// Drops everything (`true`) until called with `false`.
    pub fn cut(&self, cut: bool) {
        self.cut.store(cut, Relaxed);
    }
}

impl Drop for LossyRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Rng64 = Arc<Mutex<rand::rngs::StdRng>>;

fn lost(rng: &Rng64, loss: f64, cut: &AtomicBool) -> bool {
    cut.load(Relaxed) || rng.lock().is_ok_and(|mut r| r.random_bool(loss))
}

async fn relay(
    front: Arc<UdpSocket>,
    server: SocketAddr,
    loss: f64,
    rng: Rng64,
    stats: Arc<RelayStats>,
    cut: Arc<AtomicBool>,
) {
    let mut upstream: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
    let mut back = AbortOnDrop(Vec::new());
    let mut buf = vec![0u8; 65_536];
    loop {
        let Ok((n, device)) = front.recv_from(&mut buf).await else {
            continue;
        };
        stats.up.fetch_add(1, Relaxed);
        let up = match upstream.get(&device) {
            Some(s) => s.clone(),
            None => {
                let Ok(s) = UdpSocket::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await else {
                    continue;
                };
                let s = Arc::new(s);
                upstream.insert(device, s.clone());
                // The server's answers to this device, back through the front socket.
                let (s2, front2, rng2, stats2, cut2) = (
                    s.clone(),
                    front.clone(),
                    rng.clone(),
                    stats.clone(),
                    cut.clone(),
                );
                back.0.push(tokio::spawn(async move {
                    let mut buf = vec![0u8; 65_536];
                    while let Ok((n, _)) = s2.recv_from(&mut buf).await {
                        stats2.down.fetch_add(1, Relaxed);
                        if lost(&rng2, loss, &cut2) {
                            stats2.dropped.fetch_add(1, Relaxed);
                            continue;
                        }
                        let _ = front2
                            .send_to(buf.get(..n).unwrap_or_default(), device)
                            .await;
                    }
                }));
                s
            }
        };
        if lost(&rng, loss, &cut) {
            stats.dropped.fetch_add(1, Relaxed);
            continue;
        }
        let _ = up.send_to(buf.get(..n).unwrap_or_default(), server).await;
    }
}

/// The relay's per-device tasks, stopped with it.
struct AbortOnDrop(Vec<JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}
