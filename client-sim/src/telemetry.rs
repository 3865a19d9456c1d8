//! End-to-end telemetry through the MQTT bridge (issue 6's measurement; issue 7's `telemetry`
//! scenario to come): N simulated devices (real `lwm2m::client`s, one UDP socket each) change
//! a temperature at a fixed rate; an MQTT client, standing in for the operator's backend,
//! observes each device by publishing the EMQX `observe` command on `dn` as soon as the device
//! appears on `up/register`, and times every `up/notify` that arrives.
//!
//! The value a device reports is the time it reported it (microseconds since the run began),
//! so the subscriber measures the latency from the device's send to its own receive, whatever
//! broker lies between. Notifications are non-confirmable by default (LwM2M's default
//! notification mode); at the end every value sent is looked for at the subscriber, so loss is
//! exact, not estimated.
use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use lwm2m::client::{Client, ClientConfig, ObjectStore};
use lwm2m::model::{Instance, Path, Resource, Value};
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use serde::Serialize;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;

/// Command-line arguments of `mqtt-telemetry`.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct Args {
    /// The LwM2M server's CoAP address (NoSec), e.g. 127.0.0.1:5683. Loopback only.
    #[arg(long)]
    server: SocketAddr,
    /// The MQTT broker the server's bridge publishes to (MQTT 5), e.g. 127.0.0.1:1883.
    #[arg(long)]
    broker: SocketAddr,
    /// Topic prefix of the bridge.
    #[arg(long, default_value = "lwm2m")]
    prefix: String,
    /// Simulated devices.
    #[arg(long, default_value_t = 100)]
    devices: usize,
    /// Notifications per device per second.
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// Seconds measured, after the warm-up.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Seconds of warm-up (devices register and get observed) not measured.
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// Every Nth notification confirmable (0: all non-confirmable).
    #[arg(long, default_value_t = 0)]
    con_every: u32,
    /// Endpoint name prefix.
    #[arg(long, default_value = "telemetry")]
    name: String,
    /// Write the report as JSON to this file.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

#[derive(Debug, Default, Serialize)]
struct Report {
    devices: usize,
    observed: usize,
    seconds: f64,
    sent: u64,
    received: u64,
    lost: u64,
    duplicates: u64,
    notifications_per_second: f64,
    latency_us_p50: u64,
    latency_us_p90: u64,
    latency_us_p99: u64,
    latency_us_max: u64,
}

struct Shared {
    base: Instant,
    measure_from: Instant,
    end: Instant,
    observed: Vec<AtomicBool>,
    /// Values (µs) sent, per device, after it was observed.
    sent: Vec<Mutex<Vec<u64>>>,
    received: Vec<Mutex<HashSet<u64>>>,
    duplicates: AtomicU64,
    latency: Mutex<Histogram<u64>>,
    in_window: AtomicU64,
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    if !args.server.ip().is_loopback() || !args.broker.ip().is_loopback() {
        bail!("mqtt-telemetry only talks to loopback addresses");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let report = rt.block_on(bench(args.clone()))?;
    println!(
        "{} devices ({} observed): {} notifications sent, {} received ({} lost, {} duplicates); {:.0} notifications/s into MQTT; latency p50 {} us, p90 {} us, p99 {} us, max {} us",
        report.devices,
        report.observed,
        report.sent,
        report.received,
        report.lost,
        report.duplicates,
        report.notifications_per_second,
        report.latency_us_p50,
        report.latency_us_p90,
        report.latency_us_p99,
        report.latency_us_max
    );
    if let Some(path) = args.json {
        std::fs::write(&path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

async fn bench(args: Args) -> anyhow::Result<Report> {
    let base = Instant::now();
    let measure_from = base + Duration::from_secs(args.warmup);
    let end = measure_from + Duration::from_secs(args.duration);
    let shared = Arc::new(Shared {
        base,
        measure_from,
        end,
        observed: (0..args.devices).map(|_| AtomicBool::new(false)).collect(),
        sent: (0..args.devices).map(|_| Mutex::new(Vec::new())).collect(),
        received: (0..args.devices)
            .map(|_| Mutex::new(HashSet::new()))
            .collect(),
        duplicates: AtomicU64::new(0),
        latency: Mutex::new(Histogram::new(3)?),
        in_window: AtomicU64::new(0),
    });
    let subscriber = tokio::spawn(subscribe(args.clone(), shared.clone()));
    // Give the subscription a moment before the first registration.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut devices = Vec::new();
    for i in 0..args.devices {
        devices.push(tokio::spawn(device(args.clone(), shared.clone(), i)));
    }
    for d in devices {
        d.await??;
    }
    // Let the last notifications arrive: wait until nothing new has come for a second (at
    // most 30 s), so a backlog counts as late, not as lost.
    let count = |sh: &Shared| -> usize {
        sh.received
            .iter()
            .map(|r| r.lock().map(|r| r.len()).unwrap_or(0))
            .sum()
    };
    let mut last = count(&shared);
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = count(&shared);
        if now == last {
            break;
        }
        last = now;
    }
    subscriber.abort();
    let mut sent = 0u64;
    let mut received = 0u64;
    for i in 0..args.devices {
        let s = shared.sent[i].lock().map(|v| v.clone()).unwrap_or_default();
        let r = shared.received[i]
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default();
        sent += s.len() as u64;
        received += s.iter().filter(|v| r.contains(v)).count() as u64;
    }
    let h = shared
        .latency
        .lock()
        .map(|h| h.clone())
        .unwrap_or(Histogram::new(3)?);
    let seconds = args.duration as f64;
    Ok(Report {
        devices: args.devices,
        observed: shared.observed.iter().filter(|o| o.load(Relaxed)).count(),
        seconds,
        sent,
        received,
        lost: sent - received,
        duplicates: shared.duplicates.load(Relaxed),
        notifications_per_second: shared.in_window.load(Relaxed) as f64 / seconds,
        latency_us_p50: h.value_at_quantile(0.5),
        latency_us_p90: h.value_at_quantile(0.9),
        latency_us_p99: h.value_at_quantile(0.99),
        latency_us_max: h.max(),
    })
}

fn index_of(args: &Args, topic: &str) -> Option<usize> {
    let rest = topic.strip_prefix(&args.prefix)?.strip_prefix('/')?;
    let (ep, _) = rest.split_once('/')?;
    ep.strip_prefix(&args.name)?.strip_prefix('-')?.parse().ok()
}

/// The backend: observes every device that registers and times its notifications.
async fn subscribe(args: Args, shared: Arc<Shared>) -> anyhow::Result<()> {
    let mut options = MqttOptions::new(
        format!("{}-backend", args.name),
        args.broker.ip().to_string(),
        args.broker.port(),
    );
    options.set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(options, 10_000);
    client
        .subscribe(format!("{}/+/up/#", args.prefix), QoS::AtLeastOnce)
        .await?;
    loop {
        let ev = match eventloop.poll().await {
            Ok(ev) => ev,
            Err(e) => {
                tracing::warn!(error = %e, "MQTT subscriber");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let Event::Incoming(Packet::Publish(p)) = ev else {
            continue;
        };
        let now = Instant::now();
        let topic = String::from_utf8_lossy(&p.topic).into_owned();
        let Some(i) = index_of(&args, &topic) else {
            continue;
        };
        let json: serde_json::Value = serde_json::from_slice(&p.payload).unwrap_or_default();
        if topic.ends_with("/up/register") {
            let cmd = serde_json::json!({
                "reqID": i, "msgType": "observe", "data": {"path": "/3303/0/5700"}
            });
            let dn = format!("{}/{}-{i}/dn/cmd", args.prefix, args.name);
            client
                .try_publish(dn, QoS::AtLeastOnce, false, serde_json::to_vec(&cmd)?)
                .ok();
        } else if topic.ends_with("/up/resp") {
            if json["msgType"] == "observe" && json["data"]["code"] == "2.05" {
                if let Some(o) = shared.observed.get(i) {
                    o.store(true, Relaxed);
                }
            }
        } else if topic.ends_with("/up/notify") {
            let Some(v) = json["data"]["content"][0]["value"].as_f64() else {
                continue;
            };
            let sent_us = v as u64;
            let fresh = shared
                .received
                .get(i)
                .and_then(|r| r.lock().ok().map(|mut r| r.insert(sent_us)))
                .unwrap_or(false);
            if !fresh {
                shared.duplicates.fetch_add(1, Relaxed);
                continue;
            }
            if now >= shared.measure_from && now < shared.end {
                let now_us = now.duration_since(shared.base).as_micros() as u64;
                if let Ok(mut h) = shared.latency.lock() {
                    h.record(now_us.saturating_sub(sent_us).max(1)).ok();
                }
                shared.in_window.fetch_add(1, Relaxed);
            }
        }
    }
}

/// One device: registers, then reports a new temperature `rate` times a second once observed.
async fn device(args: Args, shared: Arc<Shared>, i: usize) -> anyhow::Result<()> {
    let sock = UdpSocket::bind("127.0.0.1:0").await?;
    let server = args.server;
    let ep = format!("{}-{i}", args.name);
    let mut config = ClientConfig::new(&ep);
    config.notify_con_every = args.con_every;
    config.rng_seed = i as u64;
    let mut store = ObjectStore::standard(&ep);
    let mut inst = Instance::new();
    inst.insert(5700, Resource::Single(Value::Float(0.0)));
    store.add_instance(3303, 0, inst).context("3303")?;
    let mut client = Client::new(config, server, store);
    let path = Path::resource(3303, 0, 5700);
    let period = Duration::from_secs_f64(1.0 / args.rate.max(0.001));
    // Spread the devices' ticks over one period.
    let mut next_tick = Instant::now() + period.mul_f64(i as f64 / args.devices.max(1) as f64);
    client.start(Instant::now()).ok();
    let mut buf = vec![0u8; 2048];
    let stop = shared.end + Duration::from_millis(200);
    loop {
        while let Some(t) = client.poll_transmit() {
            sock.send_to(&t.payload, server).await?;
        }
        let now = Instant::now();
        if now >= stop {
            break;
        }
        let wake = client
            .poll_timeout()
            .map_or(next_tick, |t| t.min(next_tick))
            .min(stop);
        tokio::select! {
            r = sock.recv_from(&mut buf) => {
                let (n, from) = r?;
                client.handle_datagram(Instant::now(), from, buf.get(..n).unwrap_or_default());
            }
            () = tokio::time::sleep_until(wake.into()) => {
                let now = Instant::now();
                client.handle_timeout(now);
                if now >= next_tick {
                    next_tick += period;
                    let observed = shared.observed.get(i).is_some_and(|o| o.load(Relaxed));
                    if observed && now < shared.end {
                        let us = now.duration_since(shared.base).as_micros() as u64;
                        if client.set_value(now, &path, Value::Float(us as f64)).unwrap_or(false) {
                            if let Some(s) = shared.sent.get(i) {
                                if let Ok(mut s) = s.lock() {
                                    s.push(us);
                                }
                            }
                        }
                    }
                }
            }
        }
        while client.poll_event().is_some() {}
    }
    Ok(())
}
