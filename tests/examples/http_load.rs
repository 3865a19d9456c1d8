//! Measures the HTTP API against a running server and a simulated fleet (for instance
//! `lwm2m-client-sim bench --scenario telemetry --no-backend`): device reads through
//! `GET /api/clients/{ep}/3/0/0` from many connections at once (rate, p50, p99), or the
//! events delivered over server-sent events to several subscribers while the fleet's
//! sensors are observed through the API. Not a test: nothing here is asserted.
//!
//! ```text
//! cargo run --release -p lwm2m-e2e-tests --example http_load -- \
//!     reads  http://127.0.0.1:8080 telemetry-{n:04} 1000 32 30
//! cargo run --release -p lwm2m-e2e-tests --example http_load -- \
//!     events http://127.0.0.1:8080 telemetry-{n:04} 300 10 30
//! ```
//! (mode, API base URL, endpoint name pattern with `{n:WIDTH}`, devices, connections or
//! subscribers, seconds).
use hdrhistogram::Histogram;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn name(pattern: &str, n: u64) -> String {
    let Some(start) = pattern.find("{n") else {
        return format!("{pattern}{n}");
    };
    let end = pattern[start..]
        .find('}')
        .map_or(pattern.len(), |e| start + e);
    let width: usize = pattern[start + 2..end]
        .trim_start_matches(':')
        .parse()
        .unwrap_or(0);
    format!(
        "{}{n:0width$}{}",
        &pattern[..start],
        &pattern[(end + 1).min(pattern.len())..]
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, d: &str| args.get(i).cloned().unwrap_or_else(|| d.to_string());
    let mode = arg(0, "reads");
    let base = arg(1, "http://127.0.0.1:8080");
    let pattern = arg(2, "telemetry-{n:04}");
    let devices: u64 = arg(3, "1000").parse()?;
    let width: usize = arg(4, "32").parse()?;
    let secs: u64 = arg(5, "30").parse()?;
    let first: u64 = arg(6, "1").parse()?;
    let names: Arc<Vec<String>> = Arc::new(
        (first..first + devices)
            .map(|n| name(&pattern, n))
            .collect(),
    );
    match mode.as_str() {
        "reads" => reads(&base, names, width, Duration::from_secs(secs)).await,
        "events" => events(&base, names, width, Duration::from_secs(secs)).await,
        other => anyhow::bail!("unknown mode {other}: reads or events"),
    }
}

async fn reads(
    base: &str,
    names: Arc<Vec<String>>,
    connections: usize,
    run: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + run;
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for w in 0..connections {
        // One client per task: its own kept-alive connection.
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .build()?;
        let names = names.clone();
        let base = base.to_string();
        let errors = errors.clone();
        tasks.push(tokio::spawn(async move {
            let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
            let mut i = w;
            while Instant::now() < deadline {
                let ep = &names[i % names.len()];
                i += connections;
                let t = Instant::now();
                let ok = match client
                    .get(format!("{base}/api/clients/{ep}/3/0/0"))
                    .send()
                    .await
                {
                    Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                if ok {
                    let _ = h.record(t.elapsed().as_micros().max(1) as u64);
                } else {
                    errors.fetch_add(1, Relaxed);
                }
            }
            h
        }));
    }
    let mut total = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for t in tasks {
        total.add(t.await?)?;
    }
    println!(
        "reads: {} ok, {} errors in {:?} over {connections} connections to {} devices: {:.0}/s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        total.len(),
        errors.load(Relaxed),
        run,
        names.len(),
        total.len() as f64 / run.as_secs_f64(),
        total.value_at_quantile(0.5) as f64 / 1000.0,
        total.value_at_quantile(0.99) as f64 / 1000.0,
        total.max() as f64 / 1000.0,
    );
    Ok(())
}

async fn events(
    base: &str,
    names: Arc<Vec<String>>,
    subscribers: usize,
    run: Duration,
) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    // Observe every device's temperature through the API, 16 at a time.
    let mut observed = 0;
    for chunk in names.chunks(16) {
        let mut calls = Vec::new();
        for ep in chunk {
            calls.push(
                client
                    .post(format!("{base}/api/clients/{ep}/3303/0/5700/observe"))
                    .send(),
            );
        }
        for r in futures_util::future::join_all(calls).await {
            if r.is_ok_and(|r| r.status().is_success()) {
                observed += 1;
            }
        }
    }
    println!("observing {observed} of {} devices", names.len());
    let counts: Arc<Vec<AtomicU64>> =
        Arc::new((0..subscribers).map(|_| AtomicU64::new(0)).collect());
    let start = Instant::now();
    let mut tasks = Vec::new();
    for s in 0..subscribers {
        let mut r = client.get(format!("{base}/api/events")).send().await?;
        let counts = counts.clone();
        tasks.push(tokio::spawn(async move {
            let deadline = Instant::now() + run;
            // Each event has one `event:` field; the tail of a chunk is kept so that a field
            // split between chunks is still counted once.
            let mut tail: Vec<u8> = Vec::new();
            while let Ok(Ok(Some(chunk))) =
                tokio::time::timeout_at(deadline.into(), r.chunk()).await
            {
                tail.extend_from_slice(&chunk);
                let n = tail.windows(7).filter(|w| *w == b"\nevent:").count();
                counts[s].fetch_add(n as u64, Relaxed);
                let keep = tail.len().min(6);
                tail.drain(..tail.len() - keep);
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let took = start.elapsed().as_secs_f64();
    let per: Vec<u64> = counts.iter().map(|c| c.load(Relaxed)).collect();
    let total: u64 = per.iter().sum();
    println!(
        "events: {total} delivered to {subscribers} subscribers in {took:.1} s: {:.0}/s in all, {:.0}/s per subscriber (min {}, max {})",
        total as f64 / took,
        total as f64 / took / subscribers as f64,
        per.iter().min().unwrap_or(&0),
        per.iter().max().unwrap_or(&0),
    );
    Ok(())
}
