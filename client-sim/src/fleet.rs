//! `fleet`: N simulated LwM2M devices against one server, over loopback.
//!
//! Every device is a real [`lwm2m::client::Client`] with the standard objects (0, 1, 3) and a
//! temperature sensor (3303/0) whose value random-walks, on a UDP socket of its own, so the
//! server sees N peers as it would in the field, and answers every request the server sends
//! (that is the client's job, not the simulator's). The run registers the fleet at a set
//! pace, keeps it up for `--duration` seconds, de-registers it and reports registration
//! throughput and latency, requests answered and errors by kind.
//!
//! # Why shards and not a task per device
//! Devices are grouped in shards of `--shard-size`; one tokio task drives a shard. A task per
//! device would work (tokio tasks are cheap), but each would carry its own receive buffer,
//! its own timer in tokio's wheel and its own future; a shard has one receive buffer (64 KiB
//! for hundreds of devices instead of each), one timer over a heap of its devices' deadlines,
//! and one loop that can pace starts and de-registrations. Readiness stays O(1) per datagram:
//! each socket is polled with a waker of its own that lists the device as ready for its
//! shard (module `wake`), so the shard reads only the sockets that have data. On the default
//! current-thread runtime the shards simply interleave; with `--threads` they spread over the
//! worker threads.
//!
//! # Pacing
//! `--rate` starts that many devices per second; `--rate 0` starts them as fast as the server
//! answers. Either way at most `--window` Register (and later De-register) exchanges are
//! outstanding at once (0: no limit). A window is what makes "as fast as possible" measure
//! the server: 10,000 Registers sent in one burst overflow the server's socket receive
//! buffer, and the run then measures the kernel's drops and CoAP's 2-3 s retransmission
//! timer instead. The default, 128, stays within Linux's default receive buffer
//! (`net.core.rmem_default`, 212,992 bytes, about 150 small datagrams on loopback); 256
//! already overflowed it now and then.
//!
//! # Bounds
//! Everything is bounded: devices (`MAX_DEVICES`), the datagrams read per device per turn,
//! the timers run per turn, the kinds of errors kept, the time a stop may take
//! (`--stop-timeout`). Peer bytes only ever reach the client, whose parsers return errors.
//! Only loopback addresses are used, on both ends.
mod wake;

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use lwm2m::client::{Client, ClientConfig, ClientEvent, ObjectStore};
use lwm2m::model::{Instance, Path, Resource, Value};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::{Duration, Instant};
use tokio::io::ReadBuf;
use tokio::net::UdpSocket;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use wake::{DeviceWake, ShardWake};

/// Devices one run simulates at most.
const MAX_DEVICES: usize = 1_000_000;
/// Datagrams read from one socket before the shard turns to others.
const DATAGRAMS_PER_TURN: usize = 16;
/// Device timers run in one turn of a shard before it yields.
const TIMERS_PER_TURN: usize = 1024;
/// Distinct error kinds kept; the rest count as `other`.
const MAX_ERROR_KINDS: usize = 64;
/// Receive buffer of a shard: the largest UDP payload, so nothing is truncated.
const RECV_BUFFER: usize = 65_536;

/// Command-line arguments of `fleet`.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct Args {
    /// The LwM2M server (CoAP, NoSec), e.g. 127.0.0.1:5683. Only loopback is accepted.
    #[arg(long)]
    server: SocketAddr,
    /// Devices to simulate.
    #[arg(long, default_value_t = 100)]
    devices: usize,
    /// Endpoint names: the placeholder `{n:06}` becomes the device's number zero-padded to six
    /// digits (`{n:0}`: not padded).
    #[arg(long, default_value = "sim-{n:06}")]
    name_pattern: String,
    /// Number of the first device, so that several fleets can share one server.
    #[arg(long, default_value_t = 0)]
    first: u64,
    /// Devices that start registering per second; 0 = as fast as the server answers.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Register and De-register exchanges outstanding at once, fleet-wide; 0 = no limit.
    /// The default fits a server socket with Linux's default 208 KiB receive buffer.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    window: u32,
    /// Seconds from the first Register to the de-registration of the fleet.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=604_800))]
    duration: u64,
    /// Leave the devices registered at the end (they expire with their lifetime).
    #[arg(long)]
    no_deregister: bool,
    /// Seconds the de-registration may take before the run ends anyway.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=3600))]
    stop_timeout: u64,
    /// Milliseconds between temperature changes of each device; 0 = the value never moves.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=86_400_000))]
    telemetry_interval_ms: u64,
    /// Registration lifetime in seconds; devices send Updates before it runs out.
    #[arg(long, default_value_t = 300)]
    lifetime: u32,
    /// Bind each device to its own address 127.0.x.y instead of all to 127.0.0.1.
    #[arg(long)]
    distinct_ips: bool,
    /// Runtime threads: 1 = tokio's current-thread runtime.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: u16,
    /// Devices driven by one task.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    shard_size: u32,
    /// Also stop (and de-register) when standard input closes: a parent process that dies
    /// takes the fleet down with it.
    #[arg(long)]
    stdin_stop: bool,
    /// Write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// What one run measured.
#[derive(Debug, Default, Serialize)]
struct Report {
    server: String,
    devices: usize,
    threads: usize,
    shard_size: usize,
    rate: f64,
    window: usize,
    /// Devices that sent a Register (the others never got a slot of the window or their
    /// start time before the stop).
    started: u64,
    /// Devices that registered at least once.
    registered: u64,
    /// Devices registered when the stop began.
    registered_at_stop: u64,
    /// Register or Update attempts that failed (the client retries by itself).
    registration_failures: u64,
    /// From the first Register sent to the last device's first registration.
    ramp_seconds: f64,
    registrations_per_second: f64,
    /// From Register sent to Registered, per device (its first registration; retries and
    /// retransmissions included).
    registration_latency_us_p50: u64,
    registration_latency_us_p90: u64,
    registration_latency_us_p99: u64,
    registration_latency_us_max: u64,
    /// Requests from the server the devices answered.
    requests_answered: u64,
    /// Notifications the devices sent.
    notifications_sent: u64,
    /// Temperature changes made.
    telemetry_updates: u64,
    /// De-registrations the server acknowledged (or that timed out in the client).
    deregistered: u64,
    /// Seconds from the first Register to the end of the stop.
    run_seconds: f64,
    /// Errors by kind.
    errors: BTreeMap<String, u64>,
}

/// `{n}` or `{n:06}` in a fixed text.
#[derive(Debug, Clone)]
struct NamePattern {
    prefix: String,
    width: usize,
    suffix: String,
}

impl NamePattern {
    fn parse(p: &str) -> anyhow::Result<Self> {
        let Some(open) = p.find("{n") else {
            bail!("--name-pattern needs a {{n}} placeholder: {p:?}");
        };
        let (prefix, rest) = p.split_at(open);
        let Some(close) = rest.find('}') else {
            bail!("--name-pattern: unclosed placeholder in {p:?}");
        };
        let (spec, suffix) = rest.split_at(close);
        let spec = spec.trim_start_matches("{n");
        let suffix = suffix.trim_start_matches('}');
        let width = match spec {
            "" => 0,
            s => s
                .strip_prefix(':')
                .map(|w| w.trim_start_matches('0'))
                .and_then(|w| {
                    if w.is_empty() {
                        Some(0)
                    } else {
                        w.parse().ok()
                    }
                })
                .filter(|w| *w <= 20)
                .with_context(|| format!("--name-pattern: bad placeholder {{n{s}}}"))?,
        };
        if suffix.contains("{n") {
            bail!("--name-pattern: one {{n}} placeholder only");
        }
        Ok(Self {
            prefix: prefix.to_owned(),
            width,
            suffix: suffix.to_owned(),
        })
    }

    fn name(&self, n: u64) -> String {
        format!("{}{n:0w$}{}", self.prefix, self.suffix, w = self.width)
    }
}

/// Error counts by kind, with a bounded number of kinds.
#[derive(Debug, Default)]
struct Errors(BTreeMap<String, u64>);

impl Errors {
    fn add(&mut self, kind: impl Into<String>) {
        self.add_n(kind.into(), 1);
    }

    fn add_n(&mut self, kind: String, n: u64) {
        if n == 0 {
            return;
        }
        let key = if self.0.len() < MAX_ERROR_KINDS || self.0.contains_key(&kind) {
            kind
        } else {
            "other".to_owned()
        };
        *self.0.entry(key).or_default() += n;
    }

    fn merge(&mut self, other: Errors) {
        for (k, n) in other.0 {
            self.add_n(k, n);
        }
    }
}

/// Where a device is in the run, as the simulator accounts for it (the client holds the
/// protocol state).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Not started.
    Idle,
    /// Register sent, not yet answered 2.01.
    Registering,
    /// Registered at least once.
    Up,
    /// De-register sent.
    Leaving,
    /// De-registered.
    Gone,
}

/// One simulated device.
struct Device {
    client: Client<SocketAddr>,
    socket: UdpSocket,
    /// Its readiness flag on the shard's ready list.
    wake: Arc<DeviceWake>,
    /// The same, as the waker its socket is polled with.
    waker: Waker,
    /// The earliest deadline of this device on the shard's timer heap.
    armed: Option<Instant>,
    /// When its first Register went out.
    started: Option<Instant>,
    /// Whether it was registered at some point.
    ever_registered: bool,
    phase: Phase,
    /// Its slot of the fleet's window while a Register or De-register is outstanding.
    permit: Option<OwnedSemaphorePermit>,
    temperature: f64,
}

/// What a shard measured; merged into the [`Report`].
struct ShardReport {
    started: u64,
    registered: u64,
    registered_at_stop: u64,
    failures: u64,
    first_sent: Option<Instant>,
    last_registered: Option<Instant>,
    latency: Histogram<u64>,
    requests: u64,
    notifications: u64,
    telemetry: u64,
    deregistered: u64,
    errors: Errors,
}

impl ShardReport {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            started: 0,
            registered: 0,
            registered_at_stop: 0,
            failures: 0,
            first_sent: None,
            last_registered: None,
            latency: Histogram::new(3)?,
            requests: 0,
            notifications: 0,
            telemetry: 0,
            deregistered: 0,
            errors: Errors::default(),
        })
    }
}

/// The run's schedule, the same for every shard.
#[derive(Debug, Clone, Copy)]
struct Plan {
    /// When device 0 may start.
    t0: Instant,
    /// Devices started per second; 0 for no pacing.
    rate: f64,
    /// When the fleet stops.
    end: Instant,
    stop_timeout: Duration,
    telemetry: Option<Duration>,
    deregister: bool,
}

impl Plan {
    /// When device `global` (counted from 0) may start.
    fn start_at(&self, global: usize) -> Instant {
        if self.rate > 0.0 {
            Duration::try_from_secs_f64(global as f64 / self.rate)
                .ok()
                .and_then(|d| self.t0.checked_add(d))
                // Past the end: the device never starts.
                .map_or(self.end, |t| t.min(self.end))
        } else {
            self.t0
        }
    }
}

/// Counters the main task logs while shards run.
#[derive(Default)]
struct Progress {
    registered: AtomicU64,
    failures: AtomicU64,
}

/// The temperature resource.
fn temperature() -> Path {
    Path::resource(3303, 0, 5700)
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let pattern = NamePattern::parse(&args.name_pattern)?;
    if !args.server.ip().is_loopback() {
        bail!(
            "fleet only talks to loopback addresses, not {}",
            args.server
        );
    }
    if args.devices == 0 || args.devices > MAX_DEVICES {
        bail!("--devices must be 1..={MAX_DEVICES}");
    }
    if args.distinct_ips && (!args.server.is_ipv4() || args.devices > 250 * 256 * 254) {
        bail!("--distinct-ips needs an IPv4 server and at most 16,256,000 devices");
    }
    if !(args.rate == 0.0 || (0.001..=1e9).contains(&args.rate)) {
        bail!("--rate must be 0 or from 0.001 to 1e9 devices/s");
    }
    let rt = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(usize::from(args.threads))
            .enable_all()
            .build()?
    };
    let report = rt.block_on(fleet(args.clone(), pattern))?;
    println!(
        "{}/{} devices registered ({} started) in {:.2} s: {:.0} registrations/s; latency p50 {} us, p90 {} us, p99 {} us, max {} us; {} registration failures; {} requests answered; {} de-registered; errors: {:?}",
        report.registered,
        report.devices,
        report.started,
        report.ramp_seconds,
        report.registrations_per_second,
        report.registration_latency_us_p50,
        report.registration_latency_us_p90,
        report.registration_latency_us_p99,
        report.registration_latency_us_max,
        report.registration_failures,
        report.requests_answered,
        report.deregistered,
        report.errors,
    );
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// The local address of device `i`.
fn bind_addr(args: &Args, i: usize) -> SocketAddr {
    if !args.server.is_ipv4() {
        return SocketAddr::new(IpAddr::from(std::net::Ipv6Addr::LOCALHOST), 0);
    }
    if !args.distinct_ips {
        return SocketAddr::new(IpAddr::from(Ipv4Addr::LOCALHOST), 0);
    }
    // 127.b.c.d with d in 1..=254 and b from 0: all of it is loopback on Linux.
    let d = (i % 254) as u8 + 1;
    let c = ((i / 254) % 256) as u8;
    let b = (i / (254 * 256)) as u8;
    SocketAddr::new(IpAddr::from(Ipv4Addr::new(127, b, c, d)), 0)
}

async fn fleet(args: Args, pattern: NamePattern) -> anyhow::Result<Report> {
    // Bind every socket first: running out of descriptors or ports fails the run before a
    // single Register is sent.
    let mut sockets = Vec::with_capacity(args.devices);
    for i in 0..args.devices {
        let addr = bind_addr(&args, i);
        let s = std::net::UdpSocket::bind(addr).with_context(|| {
            format!("binding device {i} to {addr} (is `ulimit -n` high enough?)")
        })?;
        s.set_nonblocking(true)?;
        sockets.push(s);
    }
    tracing::info!(devices = args.devices, server = %args.server, "sockets bound");

    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_tx = Arc::new(stop_tx);
    spawn_stop_sources(&args, &stop_tx)?;
    let window = (args.window > 0).then(|| Arc::new(Semaphore::new(args.window as usize)));
    let progress = Arc::new(Progress::default());
    let seed: u64 = rand::random();
    let t0 = Instant::now();
    let plan = Plan {
        t0,
        rate: args.rate,
        end: t0 + Duration::from_secs(args.duration),
        stop_timeout: Duration::from_secs(args.stop_timeout),
        telemetry: (args.telemetry_interval_ms > 0)
            .then(|| Duration::from_millis(args.telemetry_interval_ms)),
        deregister: !args.no_deregister,
    };
    let server_uri = format!("coap://{}", args.server);
    let mut shards = tokio::task::JoinSet::new();
    let mut sockets = sockets.into_iter();
    let shard_size = (args.shard_size as usize).max(1);
    let mut first = 0usize;
    while first < args.devices {
        let count = shard_size.min(args.devices - first);
        let shared = Arc::new(ShardWake::default());
        let mut devices = Vec::with_capacity(count);
        for (k, socket) in sockets.by_ref().take(count).enumerate() {
            let global = first + k;
            let name = pattern.name(args.first + global as u64);
            let mut config = ClientConfig::new(name.clone());
            config.lifetime = args.lifetime;
            config.rng_seed = seed ^ (global as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let mut store = ObjectStore::standard_with_server(&name, &server_uri);
            let temperature = 20.0 + (global % 50) as f64 / 10.0;
            store.add_instance(
                3303,
                0,
                Instance::from([
                    (5700, Resource::Single(Value::Float(temperature))),
                    (5701, Resource::Single(Value::String("Cel".into()))),
                ]),
            )?;
            let (wake, waker) = DeviceWake::waker(k as u32, shared.clone());
            devices.push(Device {
                client: Client::new(config, args.server, store),
                socket: UdpSocket::from_std(socket)?,
                wake,
                waker,
                armed: None,
                started: None,
                ever_registered: false,
                phase: Phase::Idle,
                permit: None,
                temperature,
            });
        }
        let shard = Shard {
            devices,
            first,
            shared,
            timers: BinaryHeap::new(),
            buf: vec![0; RECV_BUFFER],
            report: ShardReport::new()?,
            rng: StdRng::seed_from_u64(seed ^ first as u64),
            progress: progress.clone(),
        };
        shards.spawn(shard.run(plan, window.clone(), stop_rx.clone()));
        first += count;
    }
    drop(stop_rx);

    let mut total = ShardReport::new()?;
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    tick.tick().await;
    loop {
        tokio::select! {
            joined = shards.join_next() => match joined {
                Some(r) => {
                    let r = r.context("a shard task failed")?;
                    merge(&mut total, r)?;
                }
                None => break,
            },
            _ = tick.tick() => tracing::info!(
                registered = progress.registered.load(Ordering::Relaxed),
                failures = progress.failures.load(Ordering::Relaxed),
                "progress"
            ),
        }
    }
    let ramp = match (total.first_sent, total.last_registered) {
        (Some(a), Some(b)) => b.saturating_duration_since(a).as_secs_f64(),
        _ => 0.0,
    };
    let q = |q: f64| total.latency.value_at_quantile(q);
    Ok(Report {
        server: args.server.to_string(),
        devices: args.devices,
        threads: usize::from(args.threads.max(1)),
        shard_size,
        rate: args.rate,
        window: args.window as usize,
        started: total.started,
        registered: total.registered,
        registered_at_stop: total.registered_at_stop,
        registration_failures: total.failures,
        ramp_seconds: ramp,
        registrations_per_second: if ramp > 0.0 {
            total.registered as f64 / ramp
        } else {
            0.0
        },
        registration_latency_us_p50: q(0.5),
        registration_latency_us_p90: q(0.9),
        registration_latency_us_p99: q(0.99),
        registration_latency_us_max: total.latency.max(),
        requests_answered: total.requests,
        notifications_sent: total.notifications,
        telemetry_updates: total.telemetry,
        deregistered: total.deregistered,
        run_seconds: t0.elapsed().as_secs_f64(),
        errors: total.errors.0,
    })
}

fn merge(total: &mut ShardReport, r: ShardReport) -> anyhow::Result<()> {
    total.started += r.started;
    total.registered += r.registered;
    total.registered_at_stop += r.registered_at_stop;
    total.failures += r.failures;
    total.first_sent = [total.first_sent, r.first_sent].into_iter().flatten().min();
    total.last_registered = [total.last_registered, r.last_registered]
        .into_iter()
        .flatten()
        .max();
    total.latency.add(&r.latency)?;
    total.requests += r.requests;
    total.notifications += r.notifications;
    total.telemetry += r.telemetry;
    total.deregistered += r.deregistered;
    total.errors.merge(r.errors);
    Ok(())
}

/// Ctrl-C, SIGTERM and (with `--stdin-stop`) the end of standard input stop the fleet.
fn spawn_stop_sources(args: &Args, stop: &Arc<watch::Sender<bool>>) -> anyhow::Result<()> {
    let tx = stop.clone();
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = term.recv() => {}
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("signal: stopping");
        let _ = tx.send(true);
    });
    if args.stdin_stop {
        let tx = stop.clone();
        // A blocking read has no place on the runtime; a thread that waits for EOF does.
        std::thread::Builder::new()
            .name("stdin-stop".into())
            .spawn(move || {
                let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
                tracing::info!("standard input closed: stopping");
                let _ = tx.send(true);
            })?;
    }
    Ok(())
}

/// Devices driven by one task.
struct Shard {
    devices: Vec<Device>,
    /// Global number (from 0) of `devices[0]`.
    first: usize,
    shared: Arc<ShardWake>,
    /// Device deadlines, earliest first; stale entries are skipped when they pop.
    timers: BinaryHeap<Reverse<(Instant, u32)>>,
    buf: Vec<u8>,
    report: ShardReport,
    rng: StdRng,
    progress: Arc<Progress>,
}

/// Waits for a slot of the window; never resolves without a window (the branch is then
/// disabled anyway).
async fn acquire(window: Option<Arc<Semaphore>>) -> Option<OwnedSemaphorePermit> {
    match window {
        Some(w) => w.acquire_owned().await.ok(),
        None => std::future::pending().await,
    }
}

impl Shard {
    async fn run(
        mut self,
        plan: Plan,
        window: Option<Arc<Semaphore>>,
        mut stop: watch::Receiver<bool>,
    ) -> ShardReport {
        for i in 0..self.devices.len() {
            if let Some(d) = self.devices.get(i) {
                // Tokio takes a fresh socket for unwritable until its driver has seen it once.
                let _ = d.socket.writable().await;
            }
            // Poll each socket once so that its waker is registered with the driver.
            self.receive(i, Instant::now());
        }
        let mut ready = Vec::new();
        let mut next_start = 0usize;
        let mut next_leave = 0usize;
        let mut permit: Option<OwnedSemaphorePermit> = None;
        let mut stopping: Option<Instant> = None;
        let mut stop_open = true;
        let mut tel_done = 0u64;
        loop {
            let now = Instant::now();
            self.shared.take(&mut ready);
            for &i in &ready {
                self.receive(i as usize, now);
            }
            self.run_timers(now);
            if stopping.is_none() && (now >= plan.end || *stop.borrow()) {
                tracing::debug!(shard = self.first, "stopping");
                stopping = Some(now + plan.stop_timeout);
                self.report.registered_at_stop = self
                    .devices
                    .iter()
                    .filter(|d| d.client.is_registered())
                    .count() as u64;
            }
            // The next thing that wants a slot of the window, and when.
            let mut wants_slot: Option<Instant> = None;
            if let Some(deadline) = stopping {
                if !plan.deregister || now >= deadline || self.all_gone() {
                    break;
                }
                while let Some(d) = self.devices.get(next_leave) {
                    match d.phase {
                        Phase::Up => {}
                        // Not registered yet: stopping cancels the Register, no exchange.
                        Phase::Registering => {
                            self.leave(next_leave, now, None);
                            next_leave += 1;
                            continue;
                        }
                        _ => {
                            next_leave += 1;
                            continue;
                        }
                    }
                    if window.is_some() && permit.is_none() {
                        wants_slot = Some(now);
                        break;
                    }
                    self.leave(next_leave, now, permit.take());
                    next_leave += 1;
                }
            } else {
                while next_start < self.devices.len() {
                    let at = plan.start_at(self.first + next_start);
                    if at > now {
                        wants_slot = Some(at);
                        break;
                    }
                    if window.is_some() && permit.is_none() {
                        wants_slot = Some(now);
                        break;
                    }
                    self.start(next_start, now, permit.take());
                    next_start += 1;
                }
                if let Some(every) = plan.telemetry {
                    tel_done = self.telemetry(now, plan.t0, every, tel_done);
                }
            }
            if self.shared.any_ready() || self.timers_due(now) {
                // More work already: let the driver and the other shards have a turn first.
                tokio::task::yield_now().await;
                continue;
            }
            let mut wake_at = [
                self.timers.peek().map(|Reverse((t, _))| *t),
                wants_slot.filter(|t| *t > now),
                stopping.or(Some(plan.end)),
            ]
            .into_iter()
            .flatten()
            .min();
            if let (Some(every), None) = (plan.telemetry, stopping) {
                // Change number `tel_done` (from 0) is due at t0 + every * (tel_done + 1) / n.
                let n = self.devices.len().max(1) as u128;
                let us = every.as_micros() * (u128::from(tel_done) + 1) / n;
                let next = u64::try_from(us)
                    .ok()
                    .and_then(|us| plan.t0.checked_add(Duration::from_micros(us)))
                    .unwrap_or(plan.end);
                wake_at = wake_at.map(|w| w.min(next)).or(Some(next));
            }
            let want_permit = wants_slot.is_some_and(|t| t <= now) && permit.is_none();
            let sleep_to = wake_at.unwrap_or(now + Duration::from_secs(3600));
            tokio::select! {
                () = self.shared.ready() => {}
                () = tokio::time::sleep_until(sleep_to.into()) => {}
                p = acquire(window.clone()), if want_permit => permit = p,
                r = stop.changed(), if stop_open && stopping.is_none() => {
                    if r.is_err() {
                        stop_open = false;
                    }
                }
            }
        }
        self.finish()
    }

    fn all_gone(&self) -> bool {
        self.devices
            .iter()
            .all(|d| matches!(d.phase, Phase::Idle | Phase::Gone))
    }

    fn timers_due(&self, now: Instant) -> bool {
        self.timers.peek().is_some_and(|Reverse((t, _))| *t <= now)
    }

    /// Starts device `i`: it sends Register at once.
    fn start(&mut self, i: usize, now: Instant, permit: Option<OwnedSemaphorePermit>) {
        let Some(d) = self.devices.get_mut(i) else {
            return;
        };
        d.permit = permit;
        d.started = Some(now);
        d.phase = Phase::Registering;
        self.report.started += 1;
        self.report.first_sent = self.report.first_sent.or(Some(now));
        if let Err(e) = d.client.start(now) {
            self.report.errors.add(format!("start: {e}"));
        }
        self.after(i, now);
    }

    /// De-registers device `i` (or stops its registering).
    fn leave(&mut self, i: usize, now: Instant, permit: Option<OwnedSemaphorePermit>) {
        let Some(d) = self.devices.get_mut(i) else {
            return;
        };
        d.permit = permit;
        // Only a registered device has a De-register to send; one still registering just
        // stops.
        d.phase = if d.phase == Phase::Up {
            Phase::Leaving
        } else {
            Phase::Gone
        };
        if d.client.deregister(now).is_err() {
            d.phase = Phase::Gone;
            d.permit = None;
        }
        self.after(i, now);
    }

    /// Reads what device `i`'s socket holds (a bounded number of datagrams).
    fn receive(&mut self, i: usize, now: Instant) {
        let Some(d) = self.devices.get_mut(i) else {
            return;
        };
        d.wake.clear();
        let mut cx = TaskContext::from_waker(&d.waker);
        let mut got = 0;
        loop {
            if got == DATAGRAMS_PER_TURN {
                // More may be waiting: come back after the others had their turn.
                d.waker.wake_by_ref();
                break;
            }
            let mut rb = ReadBuf::new(&mut self.buf);
            match d.socket.poll_recv_from(&mut cx, &mut rb) {
                Poll::Ready(Ok(peer)) => {
                    d.client.handle_datagram(now, peer, rb.filled());
                    got += 1;
                }
                Poll::Ready(Err(e)) => {
                    self.report.errors.add(format!("recv: {}", e.kind()));
                    d.waker.wake_by_ref();
                    break;
                }
                Poll::Pending => break,
            }
        }
        if got > 0 {
            self.after(i, now);
        }
    }

    /// Runs the device timers that are due, a bounded number per turn.
    fn run_timers(&mut self, now: Instant) {
        for _ in 0..TIMERS_PER_TURN {
            let Some(&Reverse((t, i))) = self.timers.peek() else {
                break;
            };
            if t > now {
                break;
            }
            self.timers.pop();
            let i = i as usize;
            let Some(d) = self.devices.get_mut(i) else {
                continue;
            };
            if d.armed != Some(t) {
                continue; // superseded by an earlier deadline that already ran
            }
            d.armed = None;
            d.client.handle_timeout(now);
            self.after(i, now);
        }
        // Stale entries pile up only when deadlines keep moving earlier; keep the heap
        // proportional to the shard anyway.
        if self.timers.len() > 4 * self.devices.len() + 64 {
            self.timers = self
                .devices
                .iter()
                .enumerate()
                .filter_map(|(i, d)| d.armed.map(|t| Reverse((t, i as u32))))
                .collect();
        }
    }

    /// Moves the temperature of the devices whose turn it is: each device once per `every`,
    /// spread evenly over the shard. Returns the number of changes due so far.
    fn telemetry(&mut self, now: Instant, t0: Instant, every: Duration, done: u64) -> u64 {
        let n = self.devices.len().max(1) as u128;
        let elapsed = now.saturating_duration_since(t0).as_micros();
        let due = (elapsed * n / every.as_micros().max(1)) as u64;
        // Fallen behind by more than a round: skip ahead instead of a burst.
        let from = done.max(due.saturating_sub(n as u64));
        for k in from..due {
            let i = (k % n as u64) as usize;
            let step: f64 = self.rng.random_range(-0.25..=0.25);
            let Some(d) = self.devices.get_mut(i) else {
                continue;
            };
            if d.phase != Phase::Up {
                continue;
            }
            d.temperature = (d.temperature + step).clamp(-20.0, 60.0);
            let value = Value::Float((d.temperature * 100.0).round() / 100.0);
            match d.client.set_value(now, &temperature(), value) {
                Ok(_) => self.report.telemetry += 1,
                Err(e) => self.report.errors.add(format!("telemetry: {e}")),
            }
            self.after(i, now);
        }
        due.max(done)
    }

    /// Sends what device `i` produced, handles its events and re-arms its timer.
    fn after(&mut self, i: usize, now: Instant) {
        let Some(d) = self.devices.get_mut(i) else {
            return;
        };
        while let Some(t) = d.client.poll_transmit() {
            if let Err(e) = d.socket.try_send_to(&t.payload, t.peer) {
                // Dropped like a lost datagram: CoAP retransmits confirmable ones.
                self.report.errors.add(format!("send: {}", e.kind()));
            }
        }
        while let Some(ev) = d.client.poll_event() {
            on_event(d, &mut self.report, &self.progress, ev, now);
        }
        if let Some(t) = d.client.poll_timeout() {
            if d.armed.is_none_or(|a| t < a) {
                d.armed = Some(t);
                self.timers.push(Reverse((t, i as u32)));
            }
        }
    }

    /// Collects the counters of every device.
    fn finish(mut self) -> ShardReport {
        for d in &self.devices {
            let s = d.client.stats();
            self.report.requests += s.requests;
            self.report.notifications += s.notifications;
            self.report
                .errors
                .add_n("dropped_foreign_datagram".into(), s.dropped_foreign);
            self.report
                .errors
                .add_n("dropped_client_event".into(), s.dropped_events);
            if d.started.is_some() && !d.ever_registered {
                self.report.errors.add("never_registered");
            }
            if d.phase == Phase::Leaving {
                self.report.errors.add("deregister_unfinished");
            }
        }
        self.report
    }
}

/// Accounts for one event of a device's client.
fn on_event(
    d: &mut Device,
    r: &mut ShardReport,
    progress: &Progress,
    ev: ClientEvent,
    now: Instant,
) {
    match ev {
        ClientEvent::Registered { .. } => match d.phase {
            Phase::Registering => {
                d.phase = Phase::Up;
                d.ever_registered = true;
                d.permit = None;
                r.registered += 1;
                r.last_registered = Some(now);
                progress.registered.fetch_add(1, Ordering::Relaxed);
                if let Some(t0) = d.started {
                    let us = now.saturating_duration_since(t0).as_micros();
                    let _ = r
                        .latency
                        .record(u64::try_from(us).unwrap_or(u64::MAX).max(1));
                }
            }
            // Registered again after the server forgot it (an Update answered 4.04).
            Phase::Up => r.errors.add("registered_again"),
            _ => {}
        },
        ClientEvent::RegistrationFailed { error } => {
            r.failures += 1;
            progress.failures.fetch_add(1, Ordering::Relaxed);
            let what = if d.phase == Phase::Registering {
                // The client retries later by itself; the slot goes to the next device.
                d.permit = None;
                "register"
            } else {
                "update"
            };
            r.errors.add(format!("{what}: {error}"));
        }
        ClientEvent::Deregistered => {
            if d.phase == Phase::Leaving {
                r.deregistered += 1;
            }
            d.phase = Phase::Gone;
            d.permit = None;
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_patterns() {
        let p = NamePattern::parse("sim-{n:06}").unwrap();
        assert_eq!(p.name(42), "sim-000042");
        assert_eq!(p.name(1_234_567), "sim-1234567");
        assert_eq!(NamePattern::parse("dev{n}x").unwrap().name(7), "dev7x");
        assert_eq!(NamePattern::parse("{n:0}").unwrap().name(7), "7");
        for bad in ["sim", "sim-{n", "{n:x}", "{n}{n}", "{n:099}"] {
            assert!(NamePattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn distinct_addresses_are_loopback_and_distinct() {
        let args = Args {
            server: "127.0.0.1:5683".parse().unwrap(),
            devices: 70_000,
            name_pattern: String::new(),
            first: 0,
            rate: 0.0,
            window: 0,
            duration: 1,
            no_deregister: false,
            stop_timeout: 1,
            telemetry_interval_ms: 0,
            lifetime: 300,
            distinct_ips: true,
            threads: 1,
            shard_size: 1,
            stdin_stop: false,
            json: None,
        };
        let all: std::collections::HashSet<_> =
            (0..70_000).map(|i| bind_addr(&args, i).ip()).collect();
        assert_eq!(all.len(), 70_000);
        assert!(all.iter().all(|a| a.is_loopback()));
    }

    #[test]
    fn error_kinds_are_bounded() {
        let mut e = Errors::default();
        for i in 0..1000 {
            e.add(format!("kind {i}"));
        }
        assert_eq!(e.0.len(), MAX_ERROR_KINDS + 1);
        assert_eq!(e.0.get("other"), Some(&(1000 - MAX_ERROR_KINDS as u64)));
    }
}
