//! Load benchmark of the server runtime: registrations/s, memory per registered device,
//! reads/s with latency, and the store's group commit, printed as one JSON report.
//!
//! The real server (`lwm2m_server::start`) runs in this process on a current-thread tokio
//! runtime, so its protocol work uses one core; pin the process to it with
//! `taskset -c 0`. The devices are `lwm2m-client-sim fleet`, a child process pinned to
//! another core (`taskset -c 1` by default), so device work does not steal the server's
//! core. Phases:
//!
//! 1. **Registrations/s**: the fleet registers `--devices` devices as fast as the server
//!    answers (within the fleet's window); measured from the first to the N-th
//!    `DeviceEvent::Registered` seen on the server's event stream.
//! 2. **Memory**: VmRSS of this process before any device and after all registered and
//!    `--idle-secs` of quiet. The difference per device includes this benchmark's own driver
//!    and the allocator's slack, and the CoAP duplicate cache's entries of the Register
//!    exchanges (kept EXCHANGE_LIFETIME, 247 s).
//! 3. **Reads/s**: `--in-flight` workers each loop `ServerHandle::execute` of a Read of
//!    `/3/0/9` (battery level) over the devices round-robin for `--read-secs`.
//! 4. **Store**: writes and commits of the store's group-committing writer
//!    (`ServerHandle::store_stats`).
//!
//! Then the fleet's standard input is closed, which makes it de-register every device and
//! exit; the server shuts down last. Should this process die first, the pipe closes all the
//! same, and the fleet also has a deadline of its own. Everything is bounded in time; only
//! 127.0.0.1 is used.
//!
//! Rates depend on which side saturates first (on a 2-core machine both do), so each phase
//! also reports the CPU time of both processes (the store's writer thread separately), the
//! kernel's UDP drops, and the CPU cost per operation. The whole process is pinned, so the
//! store's writer thread shares the server's core.
//!
//! ```text
//! cargo build --release -p lwm2m-client-sim
//! cargo build --release -p lwm2m-server --example load
//! taskset -c 0 target/release/examples/load --devices 10000
//! ```
use anyhow::{bail, Context};
use clap::Parser;
use hdrhistogram::Histogram;
use lwm2m::model::Path;
use lwm2m::ops::dm::{DmResponse, DownlinkRequest};
use lwm2m_server::config::Config;
use lwm2m_server::core::types::{Command, DeviceEvent};
use lwm2m_server::ServerHandle;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

#[derive(Parser, Debug, Clone)]
#[command(about = "Load benchmark of lwm2m-server against lwm2m-client-sim fleet")]
struct Args {
    /// Devices to register.
    #[arg(long, default_value_t = 10_000)]
    devices: usize,
    /// Reads outstanding at once in the read phase.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    in_flight: u32,
    /// Seconds of the read phase.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    read_secs: u64,
    /// A read unanswered after this many milliseconds fails (the CoAP exchange deadline).
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    read_timeout_ms: u64,
    /// Seconds of quiet between the last registration and the memory reading.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(0..=3600))]
    idle_secs: u64,
    /// Seconds the registration phase may take at most.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=3600))]
    register_timeout_secs: u64,
    /// UDP port of the server on 127.0.0.1; 0 for any free one.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// The simulator binary.
    #[arg(long, default_value = "target/release/lwm2m-client-sim")]
    sim: PathBuf,
    /// CPU list for `taskset -c` of the simulator; empty to run it unpinned.
    #[arg(long, default_value = "1")]
    sim_cpus: String,
    /// Threads of the simulator's runtime.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    sim_threads: u16,
    /// The simulator's window: Register exchanges outstanding at once (0: unbounded, a
    /// reconnect storm; the server's `udp_recv_buffer_bytes` is what absorbs it).
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    sim_window: u32,
    /// The simulator's `--distinct-ips`: each device on its own 127.x.y.z address.
    #[arg(long)]
    distinct_ips: bool,
    /// Log filter of the server (per-registration lines at `info` cost throughput).
    #[arg(long, default_value = "warn")]
    log: String,
}

#[derive(Debug, Serialize)]
struct Report {
    machine: Machine,
    devices: usize,
    registration: RegistrationPhase,
    memory: MemoryPhase,
    reads: ReadPhase,
    store: StorePhase,
    stop: StopPhase,
    /// CPU time per operation: unlike the rates, this does not depend on whether the server
    /// or the simulator was the bottleneck.
    cost: Cost,
    /// CPU, drops and store activity per phase.
    phases: BTreeMap<&'static str, PhaseStats>,
    /// The simulator's own report.
    fleet: serde_json::Value,
}

#[derive(Debug, Serialize)]
struct Machine {
    cpu: String,
    cpus_online: usize,
    cpus_allowed: String,
    kernel: String,
}

#[derive(Debug, Serialize)]
struct RegistrationPhase {
    registered: usize,
    complete: bool,
    seconds_first_to_last: f64,
    registrations_per_second: f64,
    /// The same up to the 99th percentile registration: the rate without the tail of
    /// retransmitted Registers.
    seconds_first_to_99_percent: f64,
    registrations_per_second_99_percent: f64,
    /// Events this benchmark missed because it fell behind the broadcast (counted as
    /// registrations when they happened in this phase).
    lagged_events: u64,
}

#[derive(Debug, Serialize)]
struct MemoryPhase {
    rss_before_server_bytes: u64,
    rss_before_devices_bytes: u64,
    rss_after_devices_bytes: u64,
    bytes_per_device: f64,
    /// VmRSS of the simulator with every device registered.
    fleet_rss_bytes: Option<u64>,
    note: &'static str,
}

#[derive(Debug, Serialize)]
struct ReadPhase {
    in_flight: usize,
    seconds: f64,
    completed: u64,
    succeeded: u64,
    reads_per_second: f64,
    latency_us_p50: u64,
    latency_us_p90: u64,
    latency_us_p99: u64,
    latency_us_max: u64,
    /// Reads that ended after the phase's end (not in the rate).
    finished_late: u64,
    errors: BTreeMap<String, u64>,
}

#[derive(Debug, Serialize)]
struct StorePhase {
    /// From the fleet's start to the end of the idle time.
    registration_writes: u64,
    registration_commits: u64,
    registration_writes_per_commit: f64,
}

#[derive(Debug, Serialize)]
struct Cost {
    server_cpu_us_per_registration: f64,
    server_cpu_us_per_read: f64,
    server_cpu_us_per_deregistration: f64,
    fleet_cpu_us_per_registration: f64,
    fleet_cpu_us_per_read: f64,
}

/// What happened between two phase boundaries.
#[derive(Debug, Serialize)]
struct PhaseStats {
    /// Wall time (the registration phase includes the fleet's start: binding its sockets).
    seconds: f64,
    /// CPU time of this process (server, store writer thread, benchmark driver).
    server_cpu_seconds: f64,
    /// Of which the store's writer thread (redb transactions and their fsyncs).
    store_writer_cpu_seconds: f64,
    /// CPU time of the simulator (absent once it has exited).
    fleet_cpu_seconds: Option<f64>,
    /// UDP datagrams the kernel dropped for a full receive buffer, system-wide
    /// (/proc/net/snmp `RcvbufErrors`).
    udp_rcvbuf_errors: u64,
    /// Of those, at the server's socket (the `drops` column of /proc/net/udp).
    server_socket_drops: u64,
    store_writes: u64,
    store_commits: u64,
}

#[derive(Debug, Serialize)]
struct StopPhase {
    deregistered_events: usize,
    seconds: f64,
    fleet_exit: String,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&args.log))
        .with_writer(std::io::stderr)
        .init();
    if args.devices == 0 || args.in_flight == 0 {
        bail!("--devices and --in-flight must be positive");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = rt.block_on(bench(&args))?;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &report)?;
    writeln!(out)?;
    Ok(())
}

async fn bench(args: &Args) -> anyhow::Result<Report> {
    let rss_before_server = rss()?;
    let dir = tempfile::tempdir()?;
    let config = Config::parse(&format!(
        "[server]\ncoap_bind = [\"127.0.0.1:{}\"]\ncoaps_bind = []\ndata_dir = \"{}\"\n[mqtt]\nenabled = false\n[http]\nbind = \"127.0.0.1:0\"\n",
        args.port,
        dir.path().display()
    ))?;
    let server = lwm2m_server::start(&config).await?;
    let handle = server.handle.clone();
    let addr = *handle
        .local_addrs()
        .first()
        .context("the server has no socket")?;
    let mut events = handle.subscribe();
    let rss_before_devices = rss()?;
    let port = addr.port();
    let mut phases = BTreeMap::new();

    let fleet_json = dir.path().join("fleet.json");
    let mut child = spawn_fleet(args, addr, &fleet_json)?;
    let fleet_pid = Some(child.id());
    let mut mark = Snapshot::take(&handle, port, fleet_pid);
    let mark_store = mark.store;
    let registration = match register_phase(args, &mut events).await {
        Ok(r) => r,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
    };
    let after_registration = Snapshot::take(&handle, port, fleet_pid);
    phases.insert("registration", after_registration.since(&mark));
    tracing::info!(?registration, "registration phase done");

    tokio::time::sleep(Duration::from_secs(args.idle_secs)).await;
    let rss_after_devices = rss()?;
    // The writer commits behind the core: the registrations' writes are all counted once
    // the fleet has been quiet for a while.
    let store_after_idle = handle.store_stats();
    let fleet_rss = fleet_pid.and_then(|pid| rss_of(&pid.to_string()).ok());
    let registered = handle.registrations().await?.len();
    let memory = MemoryPhase {
        rss_before_server_bytes: rss_before_server,
        rss_before_devices_bytes: rss_before_devices,
        rss_after_devices_bytes: rss_after_devices,
        bytes_per_device: rss_after_devices.saturating_sub(rss_before_devices) as f64
            / registered.max(1) as f64,
        fleet_rss_bytes: fleet_rss,
        note: "VmRSS of the whole process: server, this benchmark's driver and event \
               subscriber, allocator slack, and the CoAP duplicate cache of the Register \
               exchanges",
    };

    let endpoints: Vec<String> = handle
        .registrations()
        .await?
        .into_iter()
        .map(|r| r.endpoint)
        .collect();
    mark = Snapshot::take(&handle, port, fleet_pid);
    let reads = read_phase(args, &handle, Arc::new(endpoints)).await?;
    let after_reads = Snapshot::take(&handle, port, fleet_pid);
    phases.insert("reads", after_reads.since(&mark));
    tracing::info!(?reads, "read phase done");

    let stop = stop_fleet(&mut child, &mut events).await;
    // The fleet has exited: its CPU time is no longer readable, so none is reported.
    phases.insert(
        "stop",
        Snapshot::take(&handle, port, None).since(&after_reads),
    );
    let fleet = std::fs::read(&fleet_json)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(serde_json::Value::Null);
    handle.shutdown().await;
    server.task.await??;

    let per = |phase: &str, n: u64, fleet: bool| -> f64 {
        let cpu = phases.get(phase).map_or(0.0, |p| {
            if fleet {
                p.fleet_cpu_seconds.unwrap_or(0.0)
            } else {
                p.server_cpu_seconds
            }
        });
        cpu * 1e6 / n.max(1) as f64
    };
    let cost = Cost {
        server_cpu_us_per_registration: per("registration", registration.registered as u64, false),
        server_cpu_us_per_read: per("reads", reads.completed + reads.finished_late, false),
        server_cpu_us_per_deregistration: per("stop", stop.deregistered_events as u64, false),
        fleet_cpu_us_per_registration: per("registration", registration.registered as u64, true),
        fleet_cpu_us_per_read: per("reads", reads.completed + reads.finished_late, true),
    };
    let writes = store_after_idle.0.saturating_sub(mark_store.0);
    let commits = store_after_idle.1.saturating_sub(mark_store.1);
    Ok(Report {
        machine: machine(),
        devices: args.devices,
        registration,
        memory,
        reads,
        store: StorePhase {
            registration_writes: writes,
            registration_commits: commits,
            registration_writes_per_commit: writes as f64 / commits.max(1) as f64,
        },
        stop,
        cost,
        phases,
        fleet,
    })
}

/// Counters read at a phase boundary. Reading /proc/net/udp walks every UDP socket of the
/// machine (0.1 s with the fleet's 10,000), so the time and CPU it takes are left out of
/// both phases: `at` and `server_cpu` are read before it, `resumed`/`server_cpu_resumed`
/// after.
struct Snapshot {
    at: Instant,
    server_cpu: f64,
    writer_cpu: f64,
    fleet_cpu: Option<f64>,
    rcvbuf_errors: u64,
    socket_drops: u64,
    store: (u64, u64),
    resumed: Instant,
    server_cpu_resumed: f64,
}

impl Snapshot {
    fn take(handle: &ServerHandle, port: u16, fleet: Option<u32>) -> Self {
        let at = Instant::now();
        let server_cpu = cpu_seconds("self").unwrap_or(0.0);
        let writer_cpu = thread_cpu_seconds("store-writer").unwrap_or(0.0);
        let fleet_cpu = fleet.and_then(|pid| cpu_seconds(&pid.to_string()));
        let store = handle.store_stats();
        let rcvbuf_errors = udp_rcvbuf_errors();
        let socket_drops = socket_drops(port);
        Self {
            at,
            server_cpu,
            writer_cpu,
            fleet_cpu,
            rcvbuf_errors,
            socket_drops,
            store,
            resumed: Instant::now(),
            server_cpu_resumed: cpu_seconds("self").unwrap_or(server_cpu),
        }
    }

    fn since(&self, earlier: &Snapshot) -> PhaseStats {
        PhaseStats {
            seconds: self
                .at
                .saturating_duration_since(earlier.resumed)
                .as_secs_f64(),
            server_cpu_seconds: (self.server_cpu - earlier.server_cpu_resumed).max(0.0),
            store_writer_cpu_seconds: self.writer_cpu - earlier.writer_cpu,
            fleet_cpu_seconds: self.fleet_cpu.zip(earlier.fleet_cpu).map(|(b, a)| b - a),
            udp_rcvbuf_errors: self.rcvbuf_errors.saturating_sub(earlier.rcvbuf_errors),
            server_socket_drops: self.socket_drops.saturating_sub(earlier.socket_drops),
            store_writes: self.store.0.saturating_sub(earlier.store.0),
            store_commits: self.store.1.saturating_sub(earlier.store.1),
        }
    }
}

/// CPU seconds of this process's thread named `name`.
fn thread_cpu_seconds(name: &str) -> Option<f64> {
    std::fs::read_dir("/proc/self/task").ok()?.find_map(|t| {
        let t = t.ok()?.file_name();
        let tid = t.to_str()?;
        let comm = std::fs::read_to_string(format!("/proc/self/task/{tid}/comm")).ok()?;
        (comm.trim() == name)
            .then(|| cpu_seconds(&format!("self/task/{tid}")))
            .flatten()
    })
}

/// CPU seconds (user + system, all threads) of `/proc/{pid}`.
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    // USER_HZ is 100 on every Linux architecture this runs on.
    Some((utime + stime) as f64 / 100.0)
}

/// Starts `lwm2m-client-sim fleet` against `addr`, pinned with taskset unless told not to.
/// Its standard input is a pipe: closing it stops the fleet.
fn spawn_fleet(
    args: &Args,
    addr: std::net::SocketAddr,
    json: &std::path::Path,
) -> anyhow::Result<Child> {
    if !args.sim.exists() {
        bail!(
            "{} not found: build it with `cargo build --release -p lwm2m-client-sim` or pass --sim",
            args.sim.display()
        );
    }
    let mut cmd = if args.sim_cpus.is_empty() {
        std::process::Command::new(&args.sim)
    } else {
        let mut c = std::process::Command::new("taskset");
        c.arg("-c").arg(&args.sim_cpus).arg(&args.sim);
        c
    };
    // The fleet's own deadline, should this process die without closing the pipe.
    let backstop = args.register_timeout_secs + args.idle_secs + 2 * args.read_secs + 120;
    cmd.arg("fleet")
        .args(["--server", &addr.to_string()])
        .args(["--devices", &args.devices.to_string()])
        .args(["--rate", "0"])
        .args(["--window", &args.sim_window.to_string()])
        .args(["--threads", &args.sim_threads.to_string()])
        .args(["--duration", &backstop.to_string()])
        .args(["--stop-timeout", "60"])
        .arg("--stdin-stop")
        .arg("--json")
        .arg(json)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    if args.distinct_ips {
        cmd.arg("--distinct-ips");
    }
    if std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", "warn,lwm2m_client_sim=info");
    }
    cmd.spawn()
        .with_context(|| format!("starting {}", args.sim.display()))
}

/// Counts `Registered` events until every device registered or the phase times out.
async fn register_phase(
    args: &Args,
    events: &mut broadcast::Receiver<DeviceEvent>,
) -> anyhow::Result<RegistrationPhase> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.register_timeout_secs);
    // When each registration was seen (lagged ones at the time the lag was noticed).
    let mut seen: Vec<Instant> = Vec::with_capacity(args.devices);
    let mut lagged = 0u64;
    while seen.len() < args.devices {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Ok(DeviceEvent::Registered { .. })) => seen.push(Instant::now()),
            Ok(Ok(_)) => {}
            Ok(Err(broadcast::error::RecvError::Lagged(n))) => {
                lagged += n;
                let now = Instant::now();
                let missing = args.devices - seen.len();
                seen.extend(std::iter::repeat_n(now, missing.min(n as usize)));
            }
            Ok(Err(broadcast::error::RecvError::Closed)) => bail!("the server stopped"),
            Err(_) => {
                tracing::warn!(count = seen.len(), "registration phase timed out");
                break;
            }
        }
    }
    let span = |n: usize| -> f64 {
        match (seen.first(), seen.get(n.saturating_sub(1))) {
            (Some(a), Some(b)) if n > 1 => b.duration_since(*a).as_secs_f64(),
            _ => 0.0,
        }
    };
    // N registrations span N - 1 intervals.
    let rate = |n: usize| {
        let s = span(n);
        if s > 0.0 {
            n.saturating_sub(1) as f64 / s
        } else {
            0.0
        }
    };
    let n99 = (seen.len() * 99).div_ceil(100);
    Ok(RegistrationPhase {
        registered: seen.len(),
        complete: seen.len() >= args.devices,
        seconds_first_to_last: span(seen.len()),
        registrations_per_second: rate(seen.len()),
        seconds_first_to_99_percent: span(n99),
        registrations_per_second_99_percent: rate(n99),
        lagged_events: lagged,
    })
}

/// What one read worker saw.
struct Worker {
    completed: u64,
    succeeded: u64,
    late: u64,
    latency: Histogram<u64>,
    errors: BTreeMap<String, u64>,
}

async fn read_phase(
    args: &Args,
    handle: &ServerHandle,
    endpoints: Arc<Vec<String>>,
) -> anyhow::Result<ReadPhase> {
    if endpoints.is_empty() {
        bail!("no device registered: nothing to read");
    }
    let start = Instant::now();
    let end = start + Duration::from_secs(args.read_secs);
    let next = Arc::new(AtomicUsize::new(0));
    let timeout = Duration::from_millis(args.read_timeout_ms);
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..args.in_flight {
        workers.spawn(read_worker(
            handle.clone(),
            endpoints.clone(),
            next.clone(),
            end,
            timeout,
        ));
    }
    let mut total = Worker {
        completed: 0,
        succeeded: 0,
        late: 0,
        latency: Histogram::new(3)?,
        errors: BTreeMap::new(),
    };
    while let Some(w) = workers.join_next().await {
        let w = w??;
        total.completed += w.completed;
        total.succeeded += w.succeeded;
        total.late += w.late;
        total.latency.add(&w.latency)?;
        for (k, n) in w.errors {
            *total.errors.entry(k).or_default() += n;
        }
    }
    let seconds = end.duration_since(start).as_secs_f64();
    let q = |q: f64| total.latency.value_at_quantile(q);
    Ok(ReadPhase {
        in_flight: args.in_flight as usize,
        seconds,
        completed: total.completed,
        succeeded: total.succeeded,
        reads_per_second: total.succeeded as f64 / seconds,
        latency_us_p50: q(0.5),
        latency_us_p90: q(0.9),
        latency_us_p99: q(0.99),
        latency_us_max: total.latency.max(),
        finished_late: total.late,
        errors: total.errors,
    })
}

/// Reads `/3/0/9` from the devices round-robin, one at a time, until `end`.
async fn read_worker(
    handle: ServerHandle,
    endpoints: Arc<Vec<String>>,
    next: Arc<AtomicUsize>,
    end: Instant,
    timeout: Duration,
) -> anyhow::Result<Worker> {
    let mut w = Worker {
        completed: 0,
        succeeded: 0,
        late: 0,
        latency: Histogram::new(3)?,
        errors: BTreeMap::new(),
    };
    let battery = Path::resource(3, 0, 9);
    while Instant::now() < end {
        let i = next.fetch_add(1, Ordering::Relaxed) % endpoints.len();
        let Some(endpoint) = endpoints.get(i) else {
            break;
        };
        let mut cmd = Command::new(endpoint.clone(), DownlinkRequest::Read { path: battery });
        cmd.timeout = Some(timeout);
        let sent = Instant::now();
        // The server bounds the exchange by `timeout`; this only guards the benchmark.
        let result = tokio::time::timeout(timeout * 2, handle.execute(cmd)).await;
        let done = Instant::now();
        if done > end {
            w.late += 1;
            continue;
        }
        w.completed += 1;
        let kind = match result {
            Ok(Ok((_, Ok(DmResponse::Content { .. })))) => {
                w.succeeded += 1;
                let us = u64::try_from(done.duration_since(sent).as_micros()).unwrap_or(u64::MAX);
                w.latency.record(us.max(1))?;
                continue;
            }
            Ok(Ok((_, Ok(other)))) => format!("unexpected answer: {other:?}"),
            Ok(Ok((_, Err(e)))) => e.to_string(),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "no result in time".to_owned(),
        };
        *w.errors.entry(kind).or_default() += 1;
    }
    Ok(w)
}

/// Closes the fleet's standard input (it de-registers and exits) and waits for it, counting
/// the `Deregistered` events meanwhile. Kills it if it takes too long.
async fn stop_fleet(child: &mut Child, events: &mut broadcast::Receiver<DeviceEvent>) -> StopPhase {
    let start = Instant::now();
    drop(child.stdin.take());
    let deadline = start + Duration::from_secs(90);
    let mut deregistered = 0usize;
    let mut poll = tokio::time::interval(Duration::from_millis(100));
    let exit = loop {
        tokio::select! {
            ev = events.recv() => match ev {
                Ok(DeviceEvent::Deregistered { .. }) => deregistered += 1,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => break "server stopped".to_owned(),
            },
            _ = poll.tick() => {
                match child.try_wait() {
                    Ok(Some(status)) => break status.to_string(),
                    Ok(None) if Instant::now() < deadline => {}
                    Ok(None) => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break "killed after 90 s".to_owned();
                    }
                    Err(e) => break format!("wait failed: {e}"),
                }
            }
        }
    };
    // What the server answered before the fleet exited is already in the channel.
    while let Ok(ev) = events.try_recv() {
        if matches!(ev, DeviceEvent::Deregistered { .. }) {
            deregistered += 1;
        }
    }
    StopPhase {
        deregistered_events: deregistered,
        seconds: start.elapsed().as_secs_f64(),
        fleet_exit: exit,
    }
}

/// VmRSS of this process, in bytes.
fn rss() -> anyhow::Result<u64> {
    rss_of("self")
}

/// VmRSS of `/proc/{pid}`, in bytes.
fn rss_of(pid: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .context("no VmRSS in /proc/self/status")?;
    Ok(kb * 1024)
}

/// The `Udp: RcvbufErrors` counter of /proc/net/snmp (0 if unreadable).
fn udp_rcvbuf_errors() -> u64 {
    let Ok(snmp) = std::fs::read_to_string("/proc/net/snmp") else {
        return 0;
    };
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// The `drops` column of /proc/net/udp for the socket bound to 127.0.0.1:`port` (0 if not
/// found).
fn socket_drops(port: u16) -> u64 {
    let Ok(table) = std::fs::read_to_string("/proc/net/udp") else {
        return 0;
    };
    let local = format!("0100007F:{port:04X}");
    table
        .lines()
        .skip(1)
        .find(|l| l.split_whitespace().nth(1) == Some(local.as_str()))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|d| d.parse().ok())
        .unwrap_or(0)
}

fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    Machine {
        cpu: cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
            .unwrap_or_default(),
        cpus_online: cpuinfo
            .lines()
            .filter(|l| l.starts_with("processor"))
            .count(),
        cpus_allowed: status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .map(|v| v.trim().to_owned())
            .unwrap_or_default(),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default(),
    }
}
