//! A closed-loop CoAP load generator (RFC 7252 CON GET, piggybacked responses).
//!
//! Each of `--sockets` UDP sockets keeps `--window` confirmable GETs outstanding; every answer
//! is matched by token, timed, and replaced by a new request. A request unanswered after
//! `--timeout-ms` counts as a timeout and is replaced too, so a lossy or overloaded server
//! shows up in the report instead of stalling the run. Requests are pre-encoded once and only
//! their message ID and token are patched, so the generator costs little CPU per request and
//! the server stays the bottleneck.
//!
//! A socket never reuses a message ID: RFC 7252 §4.5 lets a server answer a reused ID from
//! its duplicate cache without doing the work, which would flatter the server. So each socket
//! sends at most [`MAX_PER_SOCKET`] requests and then stops (reported as `exhausted_sockets`);
//! spread the load over enough sockets for the run's length.
use anyhow::{bail, Context};
use coap_lite::{MessageClass, MessageType, Packet, RequestType};
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;

/// Requests one socket sends at most, safely below the 65,536 message IDs.
const MAX_PER_SOCKET: u32 = 60_000;

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
    #[arg(long, default_value_t = 64)]
    sockets: usize,
    /// Requests outstanding per socket.
    #[arg(long, default_value_t = 1)]
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
    exhausted_sockets: u64,
    latency_us_p50: u64,
    latency_us_p90: u64,
    latency_us_p99: u64,
    latency_us_max: u64,
}

struct Counts {
    responses: u64,
    timeouts: u64,
    errors: u64,
    exhausted: bool,
    latency: Histogram<u64>,
}

impl Counts {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            responses: 0,
            timeouts: 0,
            errors: 0,
            exhausted: false,
            latency: Histogram::new(3)?,
        })
    }
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
        "{} responses in {:.1} s: {:.0} requests/s; latency p50 {} us, p90 {} us, p99 {} us, max {} us; {} timeouts, {} errors, {} sockets exhausted",
        report.responses,
        report.seconds,
        report.requests_per_second,
        report.latency_us_p50,
        report.latency_us_p90,
        report.latency_us_p99,
        report.latency_us_max,
        report.timeouts,
        report.errors,
        report.exhausted_sockets
    );
    if let Some(path) = args.json {
        std::fs::write(&path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

async fn bench(args: Args) -> anyhow::Result<Report> {
    let template = get_request(&args.path)?;
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
        let timeout = Duration::from_millis(args.timeout_ms);
        tasks.push(tokio::spawn(one_socket(
            sock,
            template.clone(),
            args.window,
            timeout,
            measure_from,
            end,
            i as u16,
        )));
    }
    let mut total = Counts::new()?;
    let mut exhausted = 0;
    for t in tasks {
        let c = t.await??;
        total.responses += c.responses;
        total.timeouts += c.timeouts;
        total.errors += c.errors;
        exhausted += u64::from(c.exhausted);
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
        exhausted_sockets: exhausted,
        latency_us_p50: total.latency.value_at_quantile(0.5),
        latency_us_p90: total.latency.value_at_quantile(0.9),
        latency_us_p99: total.latency.value_at_quantile(0.99),
        latency_us_max: total.latency.max(),
    })
}

/// A confirmable GET of `path` with a 4-byte token, encoded once; [`set_id`] stamps each copy.
pub(crate) fn get_request(path: &str) -> anyhow::Result<Vec<u8>> {
    let mut p = Packet::new();
    p.header.set_type(MessageType::Confirmable);
    p.header.code = MessageClass::Request(RequestType::Get);
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        p.add_option(coap_lite::CoapOption::UriPath, seg.as_bytes().to_vec());
    }
    p.set_token(vec![0; 4]);
    Ok(p.to_bytes()?)
}

/// Sets the message ID of a request from [`get_request`], and its token to the same value,
/// so a server that answers separately is matched too.
pub(crate) fn set_id(msg: &mut [u8], mid: u16) {
    let [hi, lo] = mid.to_be_bytes();
    if let Some(h) = msg.get_mut(2..4) {
        h.copy_from_slice(&[hi, lo]);
    }
    if let Some(t) = msg.get_mut(4..8) {
        t.copy_from_slice(&[hi, lo, 0, 0]);
    }
}

/// One socket's message IDs and what it has outstanding.
struct Sender {
    sock: UdpSocket,
    msg: Vec<u8>,
    mid: u16,
    sent: u32,
    outstanding: HashMap<u16, Instant>,
}

impl Sender {
    /// Patches the next message ID and token in and sends. False once the socket has used up
    /// its message IDs or the kernel refused (the request is then not outstanding).
    fn send(&mut self) -> bool {
        if self.sent >= MAX_PER_SOCKET {
            return false;
        }
        self.mid = self.mid.wrapping_add(1);
        self.sent += 1;
        set_id(&mut self.msg, self.mid);
        if self.sock.try_send(&self.msg).is_ok() {
            self.outstanding.insert(self.mid, Instant::now());
            true
        } else {
            false
        }
    }
}

/// Drives one socket's window until `end`.
async fn one_socket(
    sock: UdpSocket,
    msg: Vec<u8>,
    window: usize,
    timeout: Duration,
    measure_from: Instant,
    end: Instant,
    salt: u16,
) -> anyhow::Result<Counts> {
    let mut c = Counts::new()?;
    // Tokio reports a fresh socket as not writable until it has been polled once.
    sock.writable().await?;
    let mut s = Sender {
        sock,
        msg,
        mid: salt.wrapping_mul(7919),
        sent: 0,
        outstanding: HashMap::with_capacity(window * 2),
    };
    for _ in 0..window {
        s.send();
    }
    let mut buf = vec![0u8; 2048];
    let mut sweep = tokio::time::interval(timeout / 4);
    loop {
        if Instant::now() >= end {
            break;
        }
        if s.outstanding.is_empty() {
            // Out of message IDs (or every send refused): this socket is done.
            c.exhausted = s.sent >= MAX_PER_SOCKET;
            tokio::time::sleep_until(end.into()).await;
            break;
        }
        tokio::select! {
            r = s.sock.recv(&mut buf) => {
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
                if let Some(sent) = s.outstanding.remove(&key) {
                    let now = Instant::now();
                    if now >= measure_from {
                        c.responses += 1;
                        let us = lwm2m::time::micros(now.duration_since(sent));
                        c.latency.record(us.max(1)).ok();
                        if !matches!(p.header.code, MessageClass::Response(r) if !r.is_error()) {
                            c.errors += 1;
                        }
                    }
                    s.send();
                }
            }
            _ = sweep.tick() => {
                let now = Instant::now();
                let expired: Vec<u16> = s.outstanding.iter().filter(|(_, t)| now.duration_since(**t) > timeout).map(|(m, _)| *m).collect();
                for m in expired {
                    s.outstanding.remove(&m);
                    if now >= measure_from {
                        c.timeouts += 1;
                    }
                    s.send();
                }
            }
        }
    }
    Ok(c)
}
