//! A closed-loop DTLS load generator (RFC 6347 handshakes with cookie exchange; CoAP over
//! DTLS, RFC 7252 §9) for any CoAP server that speaks DTLS with a pre-shared key.
//!
//! - `--mode handshakes`: each of `--concurrency` slots handshakes, closes with close_notify
//!   and handshakes again, each time from a new socket (a new device to the server). By
//!   default the sockets are bound to random addresses in 127.0.0.0/8, as devices would
//!   come from many addresses, so per-source rate limits see what they see in the field.
//! - `--mode requests`: each slot establishes one session, then keeps one confirmable GET
//!   outstanding on it; message IDs are never reused (see `coap-bench`).
//!
//! It uses the project's `dtls` client; the same load can be pointed at libcoap's
//! `coap-server-openssl -k KEY` for comparison.
use anyhow::{bail, Context};
use coap_lite::Packet;
use dtls::client::{Client, ClientEvent};
use dtls::{CipherSuite, ClientConfig};
use hdrhistogram::Histogram;
use rand::Rng;
use serde::Serialize;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;

/// How long one handshake may take before it counts as failed.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Mode {
    Handshakes,
    Requests,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Suite {
    Ccm8,
    Cbc,
}

/// Command-line arguments of `dtls-bench`.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct Args {
    /// The server's DTLS address, e.g. 127.0.0.1:5684. Only loopback addresses are accepted.
    #[arg(long)]
    target: SocketAddr,
    #[arg(long, value_enum, default_value_t = Mode::Handshakes)]
    mode: Mode,
    /// PSK identity.
    #[arg(long, default_value = "bench")]
    identity: String,
    /// PSK as text (libcoap's `-k` takes text too).
    #[arg(long, default_value = "bench-key-0123456")]
    key: String,
    #[arg(long, value_enum, default_value_t = Suite::Ccm8)]
    suite: Suite,
    /// Handshakes or sessions in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Seconds to run after the warm-up.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Seconds of warm-up not counted.
    #[arg(long, default_value_t = 1)]
    warmup: u64,
    /// Resource to GET in `requests` mode.
    #[arg(long, default_value = "/")]
    path: String,
    /// Send every handshake from 127.0.0.1 instead of random loopback addresses.
    #[arg(long)]
    one_source: bool,
    /// In `handshakes` mode, leave every session open (no close_notify), as idle devices
    /// would: with `--count`, this fills the server with established sessions to measure
    /// its memory per session.
    #[arg(long)]
    keep: bool,
    /// In `handshakes` mode, stop after this many handshakes in all (0: run for the duration).
    #[arg(long, default_value_t = 0)]
    count: u64,
    /// Write the report as JSON to this file.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

#[derive(Debug, Default, Serialize)]
struct Report {
    target: String,
    mode: Option<Mode>,
    concurrency: usize,
    seconds: f64,
    completed: u64,
    per_second: f64,
    failures: u64,
    timeouts: u64,
    latency_us_p50: u64,
    latency_us_p90: u64,
    latency_us_p99: u64,
    latency_us_max: u64,
}

struct Counts {
    completed: u64,
    failures: u64,
    timeouts: u64,
    latency: Histogram<u64>,
}

impl Counts {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            completed: 0,
            failures: 0,
            timeouts: 0,
            latency: Histogram::new(3)?,
        })
    }
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    if !args.target.ip().is_loopback() {
        bail!(
            "dtls-bench only sends to loopback addresses, not {}",
            args.target
        );
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = rt.block_on(bench(args.clone()))?;
    let what = match args.mode {
        Mode::Handshakes => "handshakes",
        Mode::Requests => "requests",
    };
    println!(
        "{} {what} in {:.1} s: {:.0} {what}/s; latency p50 {} us, p90 {} us, p99 {} us, max {} us; {} failures, {} timeouts",
        report.completed,
        report.seconds,
        report.per_second,
        report.latency_us_p50,
        report.latency_us_p90,
        report.latency_us_p99,
        report.latency_us_max,
        report.failures,
        report.timeouts,
    );
    if let Some(path) = args.json {
        std::fs::write(&path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

async fn bench(args: Args) -> anyhow::Result<Report> {
    let mut config = ClientConfig::psk(args.identity.clone(), args.key.clone().into_bytes());
    config.suites = vec![match args.suite {
        Suite::Ccm8 => CipherSuite::PskAes128Ccm8,
        Suite::Cbc => CipherSuite::PskAes128CbcSha256,
    }];
    let config = Arc::new(config);
    let start = Instant::now();
    let measure_from = start + Duration::from_secs(args.warmup);
    let end = measure_from + Duration::from_secs(args.duration);
    let budget = Arc::new(std::sync::atomic::AtomicU64::new(if args.count == 0 {
        u64::MAX
    } else {
        args.count
    }));
    let mut tasks = Vec::new();
    for i in 0..args.concurrency {
        let a = args.clone();
        let c = config.clone();
        let b = budget.clone();
        tasks.push(tokio::spawn(async move {
            match a.mode {
                Mode::Handshakes => handshakes(a, c, measure_from, end, i as u64, b).await,
                Mode::Requests => requests(a, c, measure_from, end, i as u64).await,
            }
        }));
    }
    let mut total = Counts::new()?;
    for t in tasks {
        let c = t.await??;
        total.completed += c.completed;
        total.failures += c.failures;
        total.timeouts += c.timeouts;
        total.latency.add(&c.latency)?;
    }
    // A run cut short by `--count` is measured over the time it took.
    let ran = Instant::now()
        .min(end)
        .saturating_duration_since(measure_from);
    let seconds = ran.as_secs_f64().max(1e-3);
    Ok(Report {
        target: args.target.to_string(),
        mode: Some(args.mode),
        concurrency: args.concurrency,
        seconds,
        completed: total.completed,
        per_second: total.completed as f64 / seconds,
        failures: total.failures,
        timeouts: total.timeouts,
        latency_us_p50: total.latency.value_at_quantile(0.5),
        latency_us_p90: total.latency.value_at_quantile(0.9),
        latency_us_p99: total.latency.value_at_quantile(0.99),
        latency_us_max: total.latency.max(),
    })
}

/// A UDP socket connected to the target, from a random loopback address unless told not to.
async fn socket(args: &Args) -> anyhow::Result<UdpSocket> {
    let ip = if args.one_source || !args.target.is_ipv4() {
        args.target.ip()
    } else {
        let mut rng = rand::rng();
        Ipv4Addr::new(
            127,
            rng.random_range(1..255),
            rng.random(),
            rng.random_range(1..255),
        )
        .into()
    };
    let sock = UdpSocket::bind(SocketAddr::new(ip, 0)).await?;
    sock.connect(args.target).await?;
    Ok(sock)
}

/// Sends everything the client has queued.
async fn flush(sock: &UdpSocket, client: &mut Client) -> anyhow::Result<()> {
    while let Some(d) = client.poll_transmit() {
        sock.send(&d).await?;
    }
    Ok(())
}

/// Runs one handshake to completion: `Ok(true)` when connected, `Ok(false)` when refused or
/// timed out.
async fn handshake(
    sock: &UdpSocket,
    client: &mut Client,
    buf: &mut [u8],
) -> anyhow::Result<Result<(), bool>> {
    let give_up = Instant::now() + HANDSHAKE_TIMEOUT;
    loop {
        flush(sock, client).await?;
        while let Some(ev) = client.poll_event() {
            match ev {
                ClientEvent::Connected { .. } => return Ok(Ok(())),
                ClientEvent::Failed(_) | ClientEvent::Closed(_) => return Ok(Err(false)),
                ClientEvent::Data(_) => {}
            }
        }
        let wake = client.poll_timeout().unwrap_or(give_up).min(give_up);
        tokio::select! {
            r = sock.recv(buf) => {
                let n = r?;
                client.handle_datagram(Instant::now(), buf.get(..n).unwrap_or_default());
            }
            () = tokio::time::sleep_until(wake.into()) => {
                if Instant::now() >= give_up {
                    return Ok(Err(true));
                }
                client.handle_timeout(Instant::now());
            }
        }
    }
}

async fn handshakes(
    args: Args,
    config: Arc<ClientConfig>,
    measure_from: Instant,
    end: Instant,
    slot: u64,
    budget: Arc<std::sync::atomic::AtomicU64>,
) -> anyhow::Result<Counts> {
    use std::sync::atomic::Ordering::Relaxed;
    let mut c = Counts::new()?;
    let mut buf = vec![0u8; 4096];
    let mut n = 0u64;
    while Instant::now() < end
        && budget
            .fetch_update(Relaxed, Relaxed, |b| b.checked_sub(1))
            .is_ok()
    {
        let sock = socket(&args).await?;
        n += 1;
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&slot.to_le_bytes());
        seed[8..16].copy_from_slice(&n.to_le_bytes());
        let t0 = Instant::now();
        let mut client = Client::connect(config.clone(), t0, seed, None);
        let result = handshake(&sock, &mut client, &mut buf).await?;
        let done = Instant::now();
        if done >= measure_from && done < end {
            match result {
                Ok(()) => {
                    c.completed += 1;
                    c.latency
                        .record(lwm2m::time::micros(done.duration_since(t0)).max(1))
                        .ok();
                }
                Err(true) => c.timeouts += 1,
                Err(false) => c.failures += 1,
            }
        }
        // close_notify lets the server free the session at once, as a departing device would.
        if !args.keep {
            client.close();
            flush(&sock, &mut client).await?;
        }
    }
    Ok(c)
}

async fn requests(
    args: Args,
    config: Arc<ClientConfig>,
    measure_from: Instant,
    end: Instant,
    slot: u64,
) -> anyhow::Result<Counts> {
    let mut c = Counts::new()?;
    let mut buf = vec![0u8; 4096];
    let sock = socket(&args).await?;
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&slot.to_le_bytes());
    let mut client = Client::connect(config, Instant::now(), seed, None);
    if handshake(&sock, &mut client, &mut buf).await?.is_err() {
        c.failures += 1;
        return Ok(c);
    }
    let mut msg = crate::coap_bench::get_request(&args.path)?;
    let mut mid = (slot as u16).wrapping_mul(7919);
    let mut sent_count = 0u32;
    while Instant::now() < end && sent_count < 60_000 {
        mid = mid.wrapping_add(1);
        sent_count += 1;
        crate::coap_bench::set_id(&mut msg, mid);
        let t0 = Instant::now();
        client.send(&msg)?;
        flush(&sock, &mut client).await?;
        let deadline = t0 + Duration::from_secs(2);
        let answered = loop {
            tokio::select! {
                r = sock.recv(&mut buf) => {
                    let n = r?;
                    client.handle_datagram(Instant::now(), buf.get(..n).unwrap_or_default());
                    let mut got = false;
                    while let Some(ev) = client.poll_event() {
                        if let ClientEvent::Data(d) = ev {
                            if let Ok(p) = Packet::from_bytes(&d) {
                                if p.header.message_id == mid {
                                    got = true;
                                }
                            }
                        }
                    }
                    if got {
                        break true;
                    }
                }
                () = tokio::time::sleep_until(deadline.into()) => break false,
            }
        };
        let done = Instant::now();
        if done >= measure_from && done < end {
            if answered {
                c.completed += 1;
                c.latency
                    .record(lwm2m::time::micros(done.duration_since(t0)).max(1))
                    .ok();
            } else {
                c.timeouts += 1;
            }
        }
    }
    client.close();
    flush(&sock, &mut client).await?;
    Ok(c)
}
