//! A closed-loop CoAP load generator (RFC 7252 CON GET, piggybacked responses).
//!
//! Each of `--sockets` UDP sockets keeps `--window` confirmable GETs outstanding; every answer
//! is matched by message ID, timed, and replaced by a new request. A request unanswered after
//! `--timeout-ms` counts as a timeout and is replaced too, so a lossy or overloaded server
//! shows up in the report instead of stalling the run. Requests are pre-encoded once and only
//! their message ID and token are patched, so the generator costs little CPU per request and
//! the server stays the bottleneck.
use anyhow::{bail, Context};
use coap_lite::{MessageClass, MessageType, Packet, RequestType};
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;

/// Command-line arguments of `coap-bench`.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct Args {
    /// The server, e.g. 127.0.0.1:5683. Only loopback addresses are accepted.
    #[arg(long)]
    target: SocketAddr,
    /// Resource to GET.
    #[arg(long, default_value = "/hello")]
    path: String,
    /// UDP sockets (each a distinct peer for the server).
    #[arg(long, default_value_t = 8)]
    sockets: usize,
    /// Requests outstanding per socket.
    #[arg(long, default_value_t = 8)]
    window: usize,
    /// Seconds to run after the warm-up.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Seconds of warm-up not counted.
    #[arg(long, default_value_t = 1)]
    warmup: u64,
    /// A request unanswered after this many milliseconds counts as a timeout.
    #[arg(long, default_value_t = 2000)]
    timeout_ms: u64,
    /// Write the report as JSON to this file.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

/// What one run measured.
#[derive(Debug, Default, Serialize)]
struct Report {
    target: String,
    sockets: usize,
    window: usize,
    seconds: f64,
    responses: u64,
    requests_per_second: f64,
    timeouts: u64,
    errors: u64,
    latency_us_p50: u64,
    latency_us_p90: u64,
    latency_us_p99: u64,
    latency_us_max: u64,
}

struct Counts {
    responses: u64,
    timeouts: u64,
    errors: u64,
    latency: Histogram<u64>,
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    if !args.target.ip().is_loopback() {
        bail!(
            "coap-bench only sends to loopback addresses, not {}",
            args.target
        );
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = rt.block_on(bench(args.clone()))?;
    println!(
        "{} responses in {:.1} s: {:.0} requests/s; latency p50 {} us, p90 {} us, p99 {} us, max {} us; {} timeouts, {} errors",
        report.responses,
        report.seconds,
        report.requests_per_second,
        report.latency_us_p50,
        report.latency_us_p90,
        report.latency_us_p99,
        report.latency_us_max,
        report.timeouts,
        report.errors
    );
    if let Some(path) = args.json {
        std::fs::write(&path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

async fn bench(args: Args) -> anyhow::Result<Report> {
    let mut template = Packet::new();
    template.header.set_type(MessageType::Confirmable);
    template.header.code = MessageClass::Request(RequestType::Get);
    for seg in args.path.split('/').filter(|s| !s.is_empty()) {
        template.add_option(coap_lite::CoapOption::UriPath, seg.as_bytes().to_vec());
    }
    template.set_token(vec![0; 4]);
    let template = template.to_bytes()?;
    let start = Instant::now();
    let measure_from = start + Duration::from_secs(args.warmup);
    let end = measure_from + Duration::from_secs(args.duration);
    let mut tasks = Vec::new();
    for i in 0..args.sockets {
        let bind: SocketAddr = if args.target.is_ipv4() {
            "127.0.0.1:0".parse()?
        } else {
            "[::1]:0".parse()?
        };
        let sock = UdpSocket::bind(bind).await?;
        sock.connect(args.target).await?;
        tasks.push(tokio::spawn(one_socket(
            sock,
            template.clone(),
            args.window,
            Duration::from_millis(args.timeout_ms),
            measure_from,
            end,
            i as u16,
        )));
    }
    let mut total = Counts {
        responses: 0,
        timeouts: 0,
        errors: 0,
        latency: Histogram::new(3)?,
    };
    for t in tasks {
        let c = t.await??;
        total.responses += c.responses;
        total.timeouts += c.timeouts;
        total.errors += c.errors;
        total.latency.add(&c.latency)?;
    }
    let seconds = args.duration as f64;
    Ok(Report {
        target: args.target.to_string(),
        sockets: args.sockets,
        window: args.window,
        seconds,
        responses: total.responses,
        requests_per_second: total.responses as f64 / seconds,
        timeouts: total.timeouts,
        errors: total.errors,
        latency_us_p50: total.latency.value_at_quantile(0.5),
        latency_us_p90: total.latency.value_at_quantile(0.9),
        latency_us_p99: total.latency.value_at_quantile(0.99),
        latency_us_max: total.latency.max(),
    })
}

/// Drives one socket's window until `end`.
async fn one_socket(
    sock: UdpSocket,
    mut msg: Vec<u8>,
    window: usize,
    timeout: Duration,
    measure_from: Instant,
    end: Instant,
    salt: u16,
) -> anyhow::Result<Counts> {
    let mut c = Counts {
        responses: 0,
        timeouts: 0,
        errors: 0,
        latency: Histogram::new(3)?,
    };
    let mut outstanding: HashMap<u16, Instant> = HashMap::with_capacity(window * 2);
    let mut mid: u16 = salt.wrapping_mul(7919);
    let mut buf = vec![0u8; 2048];
    let mut send = |outstanding: &mut HashMap<u16, Instant>, msg: &mut Vec<u8>| {
        mid = mid.wrapping_add(1);
        let [hi, lo] = mid.to_be_bytes();
        if let Some(h) = msg.get_mut(2..4) {
            h.copy_from_slice(&[hi, lo]);
        }
        // Token = message ID, so a server that answers separately is matched too.
        if let Some(t) = msg.get_mut(4..8) {
            t.copy_from_slice(&[hi, lo, 0, 0]);
        }
        outstanding.insert(mid, Instant::now());
        sock.try_send(msg).is_ok()
    };
    for _ in 0..window {
        send(&mut outstanding, &mut msg);
    }
    let mut sweep = tokio::time::interval(timeout / 4);
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        tokio::select! {
            r = sock.recv(&mut buf) => {
                let n = r?;
                let Some(datagram) = buf.get(..n) else { continue };
                let Ok(p) = Packet::from_bytes(datagram) else { c.errors += 1; continue };
                if p.header.get_type() == MessageType::Acknowledgement && p.payload.is_empty() && p.header.code == MessageClass::Empty {
                    continue; // empty ACK of a separate response; the response follows
                }
                let key = match p.get_token() {
                    [hi, lo, ..] => u16::from_be_bytes([*hi, *lo]),
                    _ => p.header.message_id,
                };
                if let Some(sent) = outstanding.remove(&key) {
                    let now = Instant::now();
                    if now >= measure_from {
                        c.responses += 1;
                        let us = now.duration_since(sent).as_micros() as u64;
                        c.latency.record(us.max(1)).ok();
                        if !matches!(p.header.code, MessageClass::Response(r) if !r.is_error()) {
                            c.errors += 1;
                        }
                    }
                    send(&mut outstanding, &mut msg);
                }
            }
            _ = sweep.tick() => {
                let now = Instant::now();
                let expired: Vec<u16> = outstanding.iter().filter(|(_, t)| now.duration_since(**t) > timeout).map(|(m, _)| *m).collect();
                for m in expired {
                    outstanding.remove(&m);
                    if now >= measure_from {
                        c.timeouts += 1;
                    }
                    send(&mut outstanding, &mut msg);
                }
            }
        }
    }
    Ok(c)
}
