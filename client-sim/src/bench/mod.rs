//! `bench`: a scenario of simulated devices against a running server, with live progress
//! and a final report (`--json` for scripts).
//!
//! A run has up to three parts:
//! - **the fleet**: N real LwM2M clients (`lwm2m::client`, over DTLS with
//!   `lwm2m::net::secure`), each on a UDP socket of its own, driven in shards (module
//!   `shard`). One socket per device is what the field looks like to a server (its own
//!   address and port, or with `distinct_ips` its own address in 127/8), and what makes NAT
//!   rebinding and per-device DTLS sessions real; the price is one file descriptor per
//!   device, so a fleet larger than the open-file limit is split over child processes of
//!   this same binary (module `children`), which report to this one as JSON lines;
//! - **the backend** (optional): an MQTT client in place of the operator's application,
//!   observing devices and sending them commands through the server's MQTT bridge (module
//!   `backend`);
//! - **the server's process** (`--server-pid`): its CPU and memory over the run.
//!
//! The run ends `duration_secs` after it starts, once the backend's commands are answered
//! (or time out); the devices then de-register.
mod backend;
mod campaign;
mod children;
mod live;
mod names;
mod objects;
mod plan;
mod procstat;
mod report;
mod scenario;
mod shard;
mod wake;

use anyhow::{bail, Context};
use backend::{BackendLive, BackendPlan};
use live::{BackendSnapshot, Display, Live};
use names::NamePattern;
use plan::{Plan, Setup};
use report::{epoch_us, BackendCounts, DeviceCounts, Report};
use scenario::{Scenario, Security};
use shard::Shard;
use std::io::Write as _;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Semaphore};

/// File descriptors a process keeps for itself besides its devices' sockets.
const SPARE_FDS: u64 = 256;

/// Command-line arguments of `bench`.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct Args {
    /// A shipped scenario (demo, storm, telemetry, sleepy, bootstrap, firmware, cluster) or the path of a
    /// scenario TOML.
    #[arg(long, default_value = "demo")]
    scenario: String,
    /// Override a scenario key, e.g. `--set fleet.devices=1000 --set behaviour.queue_mode=true`
    /// (the value in TOML syntax).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// The server's address (overrides `server.address`).
    #[arg(long)]
    server: Option<SocketAddr>,
    /// Devices (overrides `fleet.devices`).
    #[arg(long)]
    devices: Option<u64>,
    /// Seconds (overrides `duration_secs`).
    #[arg(long)]
    duration: Option<u64>,
    /// The bootstrap server's URI, e.g. `coaps://127.0.0.1:5784` (overrides
    /// `bootstrap.server`; the `bootstrap` scenario has one).
    #[arg(long)]
    bootstrap_server: Option<String>,
    /// The MQTT broker of the backend (overrides `backend.broker`).
    #[arg(long)]
    broker: Option<SocketAddr>,
    /// Run without the MQTT backend even if the scenario has one.
    #[arg(long)]
    no_backend: bool,
    /// Sample this process's CPU and memory (the server's) over the run.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// No progress display.
    #[arg(long)]
    quiet: bool,
    /// Internal: run devices `START..END` of the run as a child process (see `children`).
    #[arg(long, hide = true, value_parser = parse_range)]
    child: Option<Range<u64>>,
}

fn parse_range(s: &str) -> Result<Range<u64>, String> {
    let (a, b) = s.split_once("..").ok_or("expected START..END")?;
    let a: u64 = a.parse().map_err(|e| format!("{e}"))?;
    let b: u64 = b.parse().map_err(|e| format!("{e}"))?;
    if a >= b {
        return Err("empty range".into());
    }
    Ok(a..b)
}

/// Command-line arguments of `credentials`.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct CredentialArgs {
    /// A shipped scenario or the path of a scenario TOML.
    #[arg(long, default_value = "demo")]
    scenario: String,
    /// Override a scenario key (as for `bench`).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Devices (overrides `fleet.devices`).
    #[arg(long)]
    devices: Option<u64>,
    /// Write here instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
}

fn scenario_of(name: &str, sets: &[String], devices: Option<u64>) -> anyhow::Result<Scenario> {
    let mut sets = sets.to_vec();
    if let Some(d) = devices {
        sets.push(format!("fleet.devices={d}"));
    }
    Scenario::load_with(name, &sets)
}

/// `credentials`: the PSK of every device of the scenario, as `lwm2m-server device import`
/// reads them; for a scenario with `[bootstrap]`, the factory PSKs the devices hold for the
/// bootstrap server, as `lwm2m-server bootstrap import` reads them (the same columns).
pub(crate) fn credentials(args: CredentialArgs) -> anyhow::Result<()> {
    let s = scenario_of(&args.scenario, &args.sets, args.devices)?;
    let pattern = NamePattern::parse(&s.fleet.name_pattern)?;
    let keys = match (&s.bootstrap, &s.psk.file) {
        (Some(b), _) => names::Keys::derived(&b.seed),
        (None, Some(f)) => names::Keys::read(f)?,
        (None, None) => names::Keys::derived(&s.psk.seed),
    };
    let mut out: Box<dyn std::io::Write> = match &args.out {
        Some(p) => Box::new(std::fs::File::create(p).with_context(|| format!("{}", p.display()))?),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = std::io::BufWriter::new(&mut out);
    writeln!(out, "endpoint,psk_identity,psk_key")?;
    for n in s.fleet.first..s.fleet.first + s.fleet.devices {
        let ep = pattern.name(n);
        let psk = keys
            .get(&ep)
            .with_context(|| format!("no key for {ep} in the key file"))?;
        writeln!(out, "{ep},{},{}", psk.identity, hex::encode(&psk.key))?;
    }
    out.flush()?;
    Ok(())
}

/// `bench`.
pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let mut sets = args.sets.clone();
    if let Some(a) = args.server {
        sets.push(format!("server.address=\"{a}\""));
    }
    if let Some(d) = args.devices {
        sets.push(format!("fleet.devices={d}"));
    }
    if let Some(d) = args.duration {
        sets.push(format!("duration_secs={d}"));
    }
    if let Some(b) = args.broker {
        sets.push(format!("backend.broker=\"{b}\""));
    }
    if let Some(b) = &args.bootstrap_server {
        sets.push(format!(
            "bootstrap.server={}",
            toml::Value::String(b.clone())
        ));
    }
    let mut s = Scenario::load_with(&args.scenario, &sets)?;
    if args.no_backend {
        s.backend = None;
    }
    if let Some(range) = args.child.clone() {
        return children::child(&s, range);
    }
    let report = parent(&s, &args)?;
    report.print();
    if let Some(path) = &args.json {
        report.write_json(path)?;
    }
    Ok(())
}

/// Builds a runtime for the fleet of one process.
fn runtime(threads: u16) -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(usize::from(threads))
            .enable_all()
            .build()?
    })
}

/// How many processes the fleet needs: one socket per device within the open-file limit
/// (raised to its hard limit first).
fn processes_for(s: &Scenario) -> u64 {
    if s.fleet.processes > 0 {
        return u64::from(s.fleet.processes);
    }
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024);
    let per = limit.saturating_sub(SPARE_FDS).max(64);
    s.fleet.devices.div_ceil(per).max(1)
}

/// Binds the sockets of devices `range` (indices in the run) of the scenario, in shards.
fn build(s: &Scenario, range: Range<u64>, live: &Arc<Live>) -> anyhow::Result<Vec<Shard>> {
    let setup = Arc::new(Setup::new(s)?);
    let shard_size = u64::from(s.fleet.shard_size.max(1));
    let mut shards = Vec::new();
    let mut first = range.start;
    while first < range.end {
        let count = shard_size.min(range.end - first);
        shards.push(Shard::new(
            setup.clone(),
            first,
            s.fleet.first,
            count as usize,
            live.clone(),
        )?);
        first += count;
    }
    tracing::debug!(devices = range.end - range.start, server = %setup.server, "sockets bound");
    Ok(shards)
}

/// Runs the shards from run start `t0` until `stop` or the plan's end.
async fn drive(
    s: &Scenario,
    shards: Vec<Shard>,
    window: u32,
    t0: Instant,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<DeviceCounts> {
    let mut plan = Plan::new(s, t0);
    // Leave the backend time to collect the answers of its last commands; it signals the
    // stop itself once they are in.
    plan.end += command_timeout(s);
    let window = (window > 0).then(|| Arc::new(Semaphore::new(window as usize)));
    let mut tasks = tokio::task::JoinSet::new();
    for shard in shards {
        tasks.spawn(shard.run(plan, window.clone(), stop.clone()));
    }
    drop(stop);
    let mut total = DeviceCounts::default();
    while let Some(r) = tasks.join_next().await {
        total.merge(&r.context("a shard task failed")?);
    }
    Ok(total)
}

/// The window of each of `processes` processes.
fn window_share(s: &Scenario, processes: u64) -> u32 {
    if s.fleet.window == 0 {
        0
    } else {
        u32::try_from(u64::from(s.fleet.window).div_ceil(processes)).unwrap_or(u32::MAX)
    }
}

/// The whole run, as seen from the process the user started.
fn parent(s: &Scenario, args: &Args) -> anyhow::Result<Report> {
    let processes = processes_for(s);
    let rt = runtime(s.fleet.threads)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let (issuing_tx, issuing_rx) = watch::channel(true);
    let backend_live = Arc::new(BackendLive::default());
    let mut backend = match &s.backend {
        Some(b) => Some(backend::spawn(
            BackendPlan {
                section: b.clone(),
                commands: s.commands()?,
                pattern: NamePattern::parse(&s.fleet.name_pattern)?,
                numbers: s.fleet.first..s.fleet.first + s.fleet.devices,
                firmware: s
                    .firmware
                    .as_ref()
                    .map(|f| (f.clone(), firmware_package_id(f))),
            },
            backend_live.clone(),
            stop_rx.clone(),
            issuing_rx,
        )?),
        None => None,
    };
    let mut sampler = args
        .server_pid
        .map(procstat::Sampler::start)
        .transpose()
        .context("--server-pid")?;
    wait_subscribed(&backend_live, &backend)?;
    if let Some(h) = backend.take_if(|h| h.is_finished()) {
        h.join()
            .map_err(|_| anyhow::anyhow!("the backend thread panicked"))??;
        bail!("the MQTT backend stopped before the run began");
    }
    let live = Arc::new(Live::default());
    let mut display = Display::new(s.fleet.devices, args.quiet);
    let run_start = Instant::now();
    let result = rt.block_on(async {
        let mut children = if processes > 1 {
            Some(children::Children::spawn(s, processes).await?)
        } else {
            None
        };
        let t0 = Instant::now();
        let t0_epoch = epoch_us();
        let fleet_task = match &mut children {
            Some(c) => {
                c.go(t0_epoch).await;
                None
            }
            None => {
                let shards = build(s, 0..s.fleet.devices, &live)?;
                Some(tokio::spawn({
                    let s = s.clone();
                    let stop = stop_rx.clone();
                    async move { drive(&s, shards, s.fleet.window, t0, stop).await }
                }))
            }
        };
        let end = t0 + Duration::from_secs(s.duration_secs);
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut sample = tokio::time::interval(procstat::Sampler::EVERY);
        let mut stopped = false;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = sample.tick() => {
                    if let Some(sm) = &mut sampler {
                        sm.tick();
                    }
                    continue;
                }
                _ = tokio::signal::ctrl_c() => {
                    let _ = issuing_tx.send(false);
                    let _ = stop_tx.send(true);
                }
            }
            if let Some(c) = &mut children {
                c.poll_progress();
            }
            let snap = match &children {
                Some(c) => c.snapshot(),
                None => live.snapshot(),
            };
            display.update(
                snap,
                BackendSnapshot {
                    delivered: backend_live.delivered.load(Relaxed),
                    commands_answered: backend_live.commands_answered.load(Relaxed),
                },
            );
            let now = Instant::now();
            if now >= end && *issuing_tx.borrow() {
                let _ = issuing_tx.send(false);
                if let Some(sm) = &mut sampler {
                    sm.mark_stop(u64::try_from(snap.registered_now).unwrap_or(0));
                }
            }
            let drained =
                backend_live.pending_commands.load(Relaxed) == 0 || now >= end + command_timeout(s);
            if !stopped && now >= end && drained {
                stopped = true;
                let _ = stop_tx.send(true);
                if let Some(c) = &mut children {
                    c.stop().await;
                }
            }
            if stopped {
                let done = match (&fleet_task, &mut children) {
                    (Some(t), _) => t.is_finished(),
                    (None, Some(c)) => c.all_done(),
                    (None, None) => true,
                };
                if done {
                    break;
                }
            }
        }
        let counts = match (fleet_task, children) {
            (Some(t), _) => t.await.context("the fleet task failed")??,
            (None, Some(c)) => c.finish().await?,
            (None, None) => DeviceCounts::default(),
        };
        anyhow::Ok(counts)
    });
    display.finish();
    let _ = stop_tx.send(true);
    let backend_counts = match backend {
        Some(h) => h
            .join()
            .map_err(|_| anyhow::anyhow!("the backend thread panicked"))??,
        None => BackendCounts::default(),
    };
    let counts = result?;
    let server_process = sampler.map(|sm| sm.finish(counts.registered_at_stop));
    Ok(report(
        s,
        processes,
        run_start.elapsed(),
        counts,
        backend_counts,
        server_process,
    ))
}

fn command_timeout(s: &Scenario) -> Duration {
    s.backend
        .as_ref()
        .filter(|b| b.command_rate > 0.0)
        .map_or(Duration::ZERO, |b| {
            Duration::from_secs(b.command_timeout_secs)
        })
}

/// Waits until the backend has subscribed, so it sees the first registration.
fn wait_subscribed(
    live: &BackendLive,
    handle: &Option<std::thread::JoinHandle<anyhow::Result<BackendCounts>>>,
) -> anyhow::Result<()> {
    while !live.subscribed.load(Relaxed) {
        // A failed connect ends the backend's thread; its error is reported at the join.
        if handle.as_ref().is_none_or(|h| h.is_finished()) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// The report from what everything counted.
fn report(
    s: &Scenario,
    processes: u64,
    elapsed: Duration,
    c: DeviceCounts,
    b: BackendCounts,
    server_process: Option<report::ServerUsage>,
) -> Report {
    let ramp = c.last_registered_us.saturating_sub(c.first_sent_us) as f64 / 1e6;
    let hs_ramp = c.last_first_handshake_us.saturating_sub(c.first_sent_us) as f64 / 1e6;
    let per_sec = |n: u64, secs: f64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
    let active = s.duration_secs as f64;
    let mut errors = c.errors.clone();
    errors.merge(&b.errors);
    Report {
        scenario: s.name.clone(),
        server: s.server.address.to_string(),
        security: match s.server.security {
            Security::NoSec => "nosec".into(),
            Security::Psk => "psk".into(),
        },
        devices: s.fleet.devices,
        processes: u32::try_from(processes).unwrap_or(u32::MAX),
        duration_secs: s.duration_secs,
        run_seconds: elapsed.as_secs_f64(),
        started: c.started,
        registered: c.registered,
        registered_at_stop: c.registered_at_stop,
        registrations: c.registrations,
        registration_failures: c.registration_failures,
        ramp_seconds: ramp,
        registrations_per_second: per_sec(c.registered, ramp),
        registration_latency_us: c.registration_latency.summary(),
        handshakes: c.handshakes_full + c.handshakes_resumed,
        handshakes_resumed: c.handshakes_resumed,
        handshakes_per_second: per_sec(c.first_handshakes, hs_ramp),
        handshake_latency_us: c.handshake_latency.summary(),
        sessions_lost: c.sessions_lost,
        updates: c.updates,
        deregistered: c.deregistered,
        requests_answered: c.requests_answered,
        notifications_sent: c.notifications_sent,
        notifications_sent_per_second: per_sec(c.notifications_sent, active),
        notifications_delivered: b.notifications,
        notifications_delivered_per_second: per_sec(b.notifications, active),
        notification_duplicates: b.notification_duplicates,
        notification_latency_us: b.notification_latency.summary(),
        sends: c.sends,
        sends_acknowledged: c.sends_acknowledged,
        sends_delivered: b.sends,
        sensor_changes: c.sensor_changes,
        sleeps: c.sleeps,
        wakes: c.wakes,
        reboots: c.reboots,
        rebinds: c.rebinds,
        observations: b.observations,
        commands_sent: b.commands_sent,
        commands_answered: b.commands_answered,
        command_failures: b.command_failures,
        command_latency_us: b.command_latency.summary(),
        timeouts: c.timeouts + b.command_timeouts,
        command_timeouts: b.command_timeouts,
        command_duplicates: b.command_duplicates,
        results_redelivered: b.results_redelivered,
        commands_answered_late: b.commands_answered_late,
        errors_total: errors.total(),
        errors: errors.0,
        server_process,
        bootstrap: s
            .bootstrap
            .as_ref()
            .map(|_| c.bootstrap.report(c.first_sent_us)),
        firmware: s.firmware.as_ref().map(|f| {
            b.firmware
                .clone()
                .unwrap_or_default()
                .report(&firmware_package_id(f), f.method)
        }),
    }
}

/// The id of the package a `[firmware]` campaign names: the one given, or that of the
/// package `firmware-package` writes for its version, size and seed.
fn firmware_package_id(f: &scenario::FirmwareSection) -> String {
    match &f.package {
        Some(id) => id.clone(),
        None => crate::firmware_package::package_id(&crate::firmware_package::package(
            &f.version, f.size, f.seed,
        )),
    }
}
