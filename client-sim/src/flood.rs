//! `flood`: garbage at a server's CoAP and CoAP-over-DTLS ports, at full speed, for a bounded
//! time, to show that nothing a peer sends can stop the server or crowd out real devices.
//!
//! What it sends, from `--sources` sockets each bound to its own loopback address
//! (127.0.0.2, 127.0.0.3, ... 127.0.x.y; all of 127.0.0.0/8 is routed to `lo` on Linux), round
//! robin, to both ports (the datagram generators are in [`datagrams`]):
//!
//! - **random bytes** of every length from 0 to 9 KB: whatever a parser gets first;
//! - **DTLS records with lying lengths** (RFC 6347 §4.1): valid-looking 13-byte headers whose
//!   length field is larger or smaller than what follows, records longer than the 2^14 + 2048
//!   a ciphertext may be, several records in one datagram with the last one cut short,
//!   handshake fragments claiming messages of 16 MB. RFC 6347 §4.1.2.7: invalid records are
//!   silently discarded, never fatal;
//! - **epoch 1 records** of random "ciphertext" in the shapes of the LwM2M suites, as a peer
//!   that never finished a handshake would send application data: they fail authentication
//!   and are discarded (RFC 6347 §4.1.2.7);
//! - **records claiming a Connection ID** (RFC 9146 §4, content type `tls12_cid`) with CIDs of
//!   every length, matching no session;
//! - **ClientHellos**: mangled ones (length fields that overrun, fragments of a hello, flipped
//!   bytes, cookies never issued, two hellos in one datagram; RFC 6347 §4.2.2-4.2.3), and
//!   well-formed ones whose cookie exchange this generator completes (RFC 6347 §4.2.1): it
//!   parses the HelloVerifyRequest and sends the ClientHello again with the cookie, from the
//!   same address and port, so the server has verified the peer and starts a handshake (a
//!   slot of its handshake table) and sends its ServerHello flight. The source then moves to
//!   a new port and the old one falls silent, as a client that vanished mid-handshake: the
//!   server holds that slot until it gives up on it. This is the part of the flood that
//!   costs the server state; what bounds it is the server's handshake table and its
//!   per-source rate (`--only dtls_client_hello` sends nothing else);
//! - **CoAP requests with every option** (RFC 7252 §3.1, §5.4, §5.10): unknown critical
//!   options (which must be answered 4.02, RFC 7252 §5.4.1), options repeated that must not
//!   be, options longer than their definition, Block1/Block2 with the largest block numbers
//!   and the reserved SZX 7 (RFC 7959 §2.2), Observe with values beyond its 3 bytes (RFC 7641
//!   §2), Uri-Query `lt=99999999999999999999`, `pmin=-1`, `ep=` with a 10 KB name; Registers
//!   to `/rd` (OMA LwM2M Transport §6.2) with garbage link-format payloads (RFC 6690), and Send
//!   to `/dp` (OMA LwM2M Transport §6.4) with garbage SenML JSON and CBOR (RFC 8428);
//! - **malformed CoAP** (RFC 7252 §3): wrong versions, token lengths 9-15, the reserved option
//!   nibble 15, options that run past the datagram, a payload marker with nothing after it.
//!
//! It only sends to 127.0.0.0/8 or ::1 (anything else is refused), stops by itself after
//! `--duration` seconds or `--max-datagrams` datagrams, whichever comes first, and prints a
//! JSON summary: datagrams and bytes sent per kind, and what came back. Everything random
//! comes from one generator seeded with `--seed` (printed in the summary), so a run that
//! breaks a server can be repeated, as far as the server's own timing allows.
mod datagrams;

use anyhow::{bail, Context};
use datagrams::{ClientHello, Gen, Kind, KINDS};
use rand::Rng;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The longest run `--duration` accepts, in seconds.
const MAX_DURATION_SECS: u64 = 3600;
/// The most sources (each up to two sockets: the current one and the last cookie echo's).
const MAX_SOURCES: usize = 4096;
/// Datagrams sent between two looks at the clock and at the sockets' receive queues.
const BATCH: usize = 64;
/// Datagrams read from one of a source's sockets per look, so one chatty source cannot starve
/// the sending.
const RECV_PER_LOOK: usize = 32;
/// A source waits this long for the HelloVerifyRequest before it starts its next cookie
/// exchange anyway (a flooded server answers late or not at all).
const EXCHANGE_PATIENCE: Duration = Duration::from_secs(1);

/// Command-line arguments of `flood`.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct Args {
    /// The server's address: 127.0.0.0/8 or ::1 only; anything else is refused.
    #[arg(long)]
    target: IpAddr,
    /// The server's CoAP port.
    #[arg(long, default_value_t = 5683)]
    coap_port: u16,
    /// The server's CoAP-over-DTLS port.
    #[arg(long, default_value_t = 5684)]
    coaps_port: u16,
    /// Seconds to flood (1 to 3600).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Source sockets, each on its own loopback address from 127.0.0.2 on (1 to 4096; all on
    /// ::1 for an IPv6 target).
    #[arg(long, default_value_t = 64)]
    sources: usize,
    /// Seed of everything random (default: a random seed, printed in the summary).
    #[arg(long)]
    seed: Option<u64>,
    /// Send only these kinds (comma-separated, names as in the summary; `dtls_client_hello`
    /// brings its cookie echo), e.g. `--only dtls_client_hello` to see what the cookie
    /// exchanges alone do to the server's handshake table.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Stop after this many datagrams even if the duration has not passed.
    #[arg(long, default_value_t = 100_000_000)]
    max_datagrams: u64,
    /// Also write the summary to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// Datagrams and bytes of one kind.
#[derive(Debug, Default, Clone, Copy, Serialize)]
struct Sent {
    datagrams: u64,
    bytes: u64,
}

/// What came back from the server.
#[derive(Debug, Default, Clone, Serialize)]
struct Responses {
    /// Datagrams from the CoAP port.
    coap: u64,
    /// Datagrams from the CoAP-over-DTLS port.
    coaps: u64,
    bytes: u64,
    /// CoAP answers by code (`4.02`, ...; `0.00` for the Empty RST and ACK), `malformed` if
    /// shorter than a header.
    coap_codes: BTreeMap<String, u64>,
    /// DTLS: cookie requests, ServerHello flights (a handshake slot taken), alerts.
    hello_verify_requests: u64,
    server_hellos: u64,
    alerts: u64,
    dtls_other: u64,
}

/// The summary printed at the end.
#[derive(Debug, Serialize)]
struct Summary {
    target: String,
    coap_port: u16,
    coaps_port: u16,
    seed: u64,
    sources: usize,
    seconds: f64,
    /// `duration` or `max_datagrams`.
    stopped_by: &'static str,
    datagrams: u64,
    bytes: u64,
    datagrams_per_second: f64,
    /// Sends the kernel refused (full buffers); not counted in `datagrams`.
    send_errors: u64,
    kinds: BTreeMap<&'static str, Sent>,
    responses: Responses,
    /// ClientHellos sent again with the server's cookie: each one a handshake the server
    /// starts unless its table or the source's rate is full (`responses.server_hellos` counts
    /// the ServerHellos that came back before the source moved to a new port).
    cookies_echoed: u64,
    /// New ports taken by sources after echoing a cookie.
    source_rebinds: u64,
    /// New ports that could not be had (the old one went on).
    rebind_errors: u64,
}

/// One source address: its socket, and where its cookie exchange is (RFC 6347 §4.2.1).
struct Source {
    ip: IpAddr,
    /// Everything this source sends leaves from here.
    sock: UdpSocket,
    /// The socket that echoed the last cookie, kept only to count the server's answer: once
    /// it has echoed a cookie, a socket sends nothing more, so the handshake the server
    /// started for its address is never disturbed and holds a slot until the server gives up
    /// on it, as a client that vanished mid-handshake would.
    previous: Option<UdpSocket>,
    /// A ClientHello sent without a cookie, waiting for the HelloVerifyRequest.
    waiting: Option<(ClientHello, Instant)>,
    /// The next DTLS record sequence number of this socket's ClientHellos.
    record_seq: u64,
}

impl Source {
    fn bind(ip: IpAddr) -> anyhow::Result<UdpSocket> {
        let sock = UdpSocket::bind(SocketAddr::new(ip, 0))
            .with_context(|| format!("binding a UDP socket on {ip}"))?;
        sock.set_nonblocking(true)?;
        Ok(sock)
    }
}

/// Only 127.0.0.0/8 and ::1: the flood never leaves the machine.
fn check_target(ip: IpAddr) -> anyhow::Result<()> {
    match ip {
        IpAddr::V4(a) if a.is_loopback() => Ok(()),
        IpAddr::V6(a) if a == Ipv6Addr::LOCALHOST => Ok(()),
        _ => bail!("flood only sends to 127.0.0.0/8 or ::1, not {ip}"),
    }
}

/// The address of source `k`: 127.0.0.2 upwards (127.b.c.d, d in 1..=254, never 127.0.0.1,
/// which the real devices of a test use); ::1 for an IPv6 target.
fn source_ip(target: IpAddr, k: usize) -> IpAddr {
    if target.is_ipv6() {
        return IpAddr::V6(Ipv6Addr::LOCALHOST);
    }
    let n = k + 1;
    let d = (n % 254) as u8 + 1;
    let c = ((n / 254) % 256) as u8;
    let b = ((n / (254 * 256)) % 256) as u8;
    IpAddr::V4(Ipv4Addr::new(127, b, c, d))
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    check_target(args.target)?;
    if !(1..=MAX_DURATION_SECS).contains(&args.duration) {
        bail!(
            "--duration must be 1 to {MAX_DURATION_SECS} seconds, not {}",
            args.duration
        );
    }
    if !(1..=MAX_SOURCES).contains(&args.sources) {
        bail!("--sources must be 1 to {MAX_SOURCES}, not {}", args.sources);
    }
    if args.max_datagrams == 0 {
        bail!("--max-datagrams must be positive");
    }
    // Two sockets per source at most, and a few descriptors besides.
    let fds = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024);
    let needed = 2 * args.sources as u64 + 64;
    if fds < needed {
        bail!(
            "{} sources need {needed} file descriptors, the limit is {fds} (ulimit -n)",
            args.sources
        );
    }
    let summary = flood(&args)?;
    let text = serde_json::to_string_pretty(&summary)?;
    println!("{text}");
    if let Some(path) = &args.json {
        std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// The state of one run.
struct Flood<'a> {
    args: &'a Args,
    rng: Gen,
    /// The kinds drawn, with their weights.
    weights: Vec<(Kind, u32)>,
    sources: Vec<Source>,
    kinds: [Sent; KINDS.len()],
    responses: Responses,
    send_errors: u64,
    cookies_echoed: u64,
    source_rebinds: u64,
    rebind_errors: u64,
    /// Datagrams sent so far, and the most the run may send.
    sent: u64,
    max_datagrams: u64,
    /// Scratch buffers: the datagram being built, one being received.
    out: Vec<u8>,
    inbound: Vec<u8>,
}

fn flood(args: &Args) -> anyhow::Result<Summary> {
    let seed = args.seed.unwrap_or_else(rand::random);
    let weights = Kind::weights(&args.only)?;
    let mut sources = Vec::with_capacity(args.sources);
    for k in 0..args.sources {
        let ip = source_ip(args.target, k);
        sources.push(Source {
            ip,
            sock: Source::bind(ip)?,
            previous: None,
            waiting: None,
            record_seq: 0,
        });
    }
    let mut f = Flood {
        args,
        rng: Gen::new(seed),
        weights,
        sources,
        kinds: [Sent::default(); KINDS.len()],
        responses: Responses::default(),
        send_errors: 0,
        cookies_echoed: 0,
        source_rebinds: 0,
        rebind_errors: 0,
        sent: 0,
        max_datagrams: args.max_datagrams,
        out: Vec::with_capacity(64 * 1024),
        inbound: vec![0u8; 64 * 1024],
    };
    let start = Instant::now();
    let end = start + Duration::from_secs(args.duration);
    let mut next = 0usize;
    let stopped_by = 'run: loop {
        let now = Instant::now();
        if now >= end {
            break 'run "duration";
        }
        let first = next;
        for _ in 0..BATCH {
            if f.sent >= f.max_datagrams {
                break 'run "max_datagrams";
            }
            let k = next % f.sources.len();
            next = next.wrapping_add(1);
            f.send_one(k, now);
        }
        // The sources that just sent, so each is read as often as it sends.
        for j in 0..BATCH.min(f.sources.len()) {
            f.receive(first.wrapping_add(j) % f.sources.len());
        }
    };
    let seconds = start.elapsed().as_secs_f64().max(1e-3);
    // What the server still had on its way back, counted but not answered: nothing more is
    // sent once the run is over.
    f.max_datagrams = f.sent;
    std::thread::sleep(Duration::from_millis(50));
    for k in 0..f.sources.len() {
        f.receive(k);
    }
    let datagrams: u64 = f.kinds.iter().map(|s| s.datagrams).sum();
    let bytes: u64 = f.kinds.iter().map(|s| s.bytes).sum();
    Ok(Summary {
        target: args.target.to_string(),
        coap_port: args.coap_port,
        coaps_port: args.coaps_port,
        seed,
        sources: args.sources,
        seconds,
        stopped_by,
        datagrams,
        bytes,
        datagrams_per_second: datagrams as f64 / seconds,
        send_errors: f.send_errors,
        kinds: KINDS
            .iter()
            .zip(f.kinds.iter())
            .map(|(k, s)| (k.name(), *s))
            .collect(),
        responses: f.responses,
        cookies_echoed: f.cookies_echoed,
        source_rebinds: f.source_rebinds,
        rebind_errors: f.rebind_errors,
    })
}

impl Flood<'_> {
    /// Builds one datagram of a random kind and sends it from source `k`.
    fn send_one(&mut self, k: usize, now: Instant) {
        let mut kind = Kind::pick(&mut self.rng, &self.weights);
        if kind == Kind::ClientHello {
            match self.start_exchange(k, now) {
                Some(hello) => kind = hello,
                None if self.weights.iter().any(|(k, _)| *k == Kind::MangledHello) => {
                    kind = Kind::MangledHello;
                }
                // This source waits for its HelloVerifyRequest and has nothing else to send.
                None => return,
            }
        }
        if kind != Kind::ClientHello {
            self.out.clear();
            datagrams::build(kind, &mut self.rng, &mut self.out);
        }
        let to_coaps = match kind {
            Kind::ClientHello => true,
            Kind::RandomBytes => self.rng.random_bool(0.5),
            k if k.is_dtls() => self.rng.random_bool(0.8),
            _ => self.rng.random_bool(0.2),
        };
        let port = if to_coaps {
            self.args.coaps_port
        } else {
            self.args.coap_port
        };
        self.send(k, kind, port);
    }

    /// Starts a cookie exchange from source `k` (its ClientHello in `out`) unless one is
    /// already waiting (`None`).
    fn start_exchange(&mut self, k: usize, now: Instant) -> Option<Kind> {
        let src = self.sources.get_mut(k)?;
        if src
            .waiting
            .as_ref()
            .is_some_and(|(_, at)| now.duration_since(*at) < EXCHANGE_PATIENCE)
        {
            return None;
        }
        let hello = ClientHello::random(&mut self.rng);
        self.out.clear();
        hello.encode(&[], src.record_seq, &mut self.out);
        src.record_seq += 1;
        src.waiting = Some((hello, now));
        Some(Kind::ClientHello)
    }

    /// Sends `out` from source `k` to `port`, counted as `kind`, unless the run has sent
    /// its `--max-datagrams`. False if not sent.
    fn send(&mut self, k: usize, kind: Kind, port: u16) -> bool {
        if self.sent >= self.max_datagrams {
            return false;
        }
        let Some(src) = self.sources.get(k) else {
            return false;
        };
        match src
            .sock
            .send_to(&self.out, SocketAddr::new(self.args.target, port))
        {
            Ok(n) => {
                self.sent += 1;
                if let Some(s) = self.kinds.get_mut(kind as usize) {
                    s.datagrams += 1;
                    s.bytes += n as u64;
                }
                true
            }
            Err(_) => {
                self.send_errors += 1;
                false
            }
        }
    }

    /// Reads what came back to source `k` (on both its sockets), and answers a
    /// HelloVerifyRequest to its current socket with the cookie.
    fn receive(&mut self, k: usize) {
        for previous in [false, true] {
            for _ in 0..RECV_PER_LOOK {
                let Some(src) = self.sources.get(k) else {
                    return;
                };
                let sock = if previous {
                    match &src.previous {
                        Some(s) => s,
                        None => break,
                    }
                } else {
                    &src.sock
                };
                let Ok((n, from)) = sock.recv_from(&mut self.inbound) else {
                    // Nothing more (WouldBlock), or an ICMP error: next time.
                    break;
                };
                let data = self.inbound.get(..n).unwrap_or_default();
                let r = &mut self.responses;
                r.bytes += n as u64;
                if from.port() == self.args.coaps_port {
                    r.coaps += 1;
                    match datagrams::classify_dtls(data) {
                        datagrams::DtlsAnswer::HelloVerify(cookie) => {
                            r.hello_verify_requests += 1;
                            if !previous {
                                let cookie = cookie.to_vec();
                                self.echo_cookie(k, &cookie);
                            }
                        }
                        datagrams::DtlsAnswer::ServerHello => r.server_hellos += 1,
                        datagrams::DtlsAnswer::Alert => r.alerts += 1,
                        datagrams::DtlsAnswer::Other => r.dtls_other += 1,
                    }
                } else {
                    r.coap += 1;
                    let code = match data.get(1) {
                        Some(c) if data.len() >= 4 => format!("{}.{:02}", c >> 5, c & 0x1F),
                        _ => "malformed".to_owned(),
                    };
                    *r.coap_codes.entry(code).or_default() += 1;
                }
            }
        }
    }

    /// Sends source `k`'s waiting ClientHello again, now with `cookie` (RFC 6347 §4.2.1),
    /// and moves the source to a new port: the server has a handshake for the old one.
    fn echo_cookie(&mut self, k: usize, cookie: &[u8]) {
        let Some(src) = self.sources.get_mut(k) else {
            return;
        };
        let Some((hello, _)) = src.waiting.take() else {
            return;
        };
        self.out.clear();
        hello
            .with_seq(1)
            .encode(cookie, src.record_seq, &mut self.out);
        if self.send(k, Kind::CookieEcho, self.args.coaps_port) {
            self.cookies_echoed += 1;
        }
        let Some(src) = self.sources.get_mut(k) else {
            return;
        };
        match Source::bind(src.ip) {
            Ok(sock) => {
                src.previous = Some(std::mem::replace(&mut src.sock, sock));
                src.record_seq = 0;
                self.source_rebinds += 1;
            }
            Err(_) => {
                src.record_seq += 1;
                self.rebind_errors += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets_are_accepted() {
        for ok in ["127.0.0.1", "127.1.2.3", "::1"] {
            assert!(check_target(ok.parse().unwrap()).is_ok(), "{ok}");
        }
        for bad in [
            "10.0.0.1",
            "0.0.0.0",
            "192.168.1.1",
            "8.8.8.8",
            "::",
            "::ffff:127.0.0.1",
            "fe80::1",
            "255.255.255.255",
        ] {
            let e = check_target(bad.parse().unwrap()).unwrap_err().to_string();
            assert!(e.contains("127.0.0.0/8 or ::1"), "{bad}: {e}");
        }
        let e = crate::run([
            "lwm2m-client-sim",
            "flood",
            "--target",
            "192.0.2.1",
            "--duration",
            "1",
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("127.0.0.0/8 or ::1"), "{e}");
    }

    #[test]
    fn sources_are_distinct_loopback_addresses_never_127_0_0_1() {
        let t: IpAddr = "127.0.0.1".parse().unwrap();
        let ips: std::collections::HashSet<IpAddr> =
            (0..MAX_SOURCES).map(|k| source_ip(t, k)).collect();
        assert_eq!(ips.len(), MAX_SOURCES);
        assert!(!ips.contains(&t));
        assert_eq!(source_ip(t, 0), "127.0.0.2".parse::<IpAddr>().unwrap());
        assert!(ips.iter().all(|ip| match ip {
            IpAddr::V4(a) => a.is_loopback() && a.octets()[3] != 0 && a.octets()[3] != 255,
            IpAddr::V6(_) => false,
        }));
        assert_eq!(
            source_ip("::1".parse().unwrap(), 7),
            "::1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn only_restricts_the_kinds() {
        let e = crate::run([
            "lwm2m-client-sim",
            "flood",
            "--target",
            "127.0.0.1",
            "--only",
            "coap_send,nonsense",
        ])
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("\"nonsense\"") && e.contains("coap_register"),
            "{e}"
        );
        let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = sink.local_addr().unwrap().port();
        let s = flood(&Args {
            target: "127.0.0.1".parse().unwrap(),
            coap_port: port,
            coaps_port: port,
            duration: 5,
            sources: 2,
            seed: Some(1),
            only: vec!["coap_send".into(), "random_bytes".into()],
            max_datagrams: 1000,
            json: None,
        })
        .unwrap();
        assert_eq!(s.datagrams, 1000);
        for (name, sent) in &s.kinds {
            let wanted = *name == "coap_send" || *name == "random_bytes";
            assert_eq!(sent.datagrams > 0, wanted, "{name}: {s:#?}");
        }
    }

    /// A short flood against a plain UDP socket that plays a DTLS server's cookie exchange:
    /// every kind is sent, the run stops by itself at the count, and cookies are echoed.
    #[test]
    fn a_short_flood_sends_every_kind_and_echoes_cookies() {
        let coap = UdpSocket::bind("127.0.0.1:0").unwrap();
        let coaps = UdpSocket::bind("127.0.0.1:0").unwrap();
        coaps
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let coaps_port = coaps.local_addr().unwrap().port();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = stop.clone();
        // Answers every well-formed ClientHello without a cookie with a HelloVerifyRequest,
        // and counts the hellos that come back with it.
        let server = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            let mut echoed = 0u64;
            while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok((n, from)) = coaps.recv_from(&mut buf) else {
                    continue;
                };
                let d = &buf[..n];
                if let Some(cookie_len) = datagrams::hello_cookie_len(d) {
                    if cookie_len == 0 {
                        let hvr = datagrams::tests::hello_verify_request(&[7; 16]);
                        coaps.send_to(&hvr, from).unwrap();
                    } else {
                        echoed += 1;
                        // The start of a ServerHello: enough for the flood to count it.
                        let mut sh = vec![22, 0xFE, 0xFD, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1];
                        sh.push(2);
                        coaps.send_to(&sh, from).unwrap();
                    }
                }
            }
            echoed
        });
        let args = Args {
            target: "127.0.0.1".parse().unwrap(),
            coap_port: coap.local_addr().unwrap().port(),
            coaps_port,
            duration: 5,
            sources: 8,
            seed: Some(7),
            only: Vec::new(),
            max_datagrams: 20_000,
            json: None,
        };
        let s = flood(&args).unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let echoed_seen = server.join().unwrap();
        assert_eq!(s.stopped_by, "max_datagrams");
        assert_eq!(s.datagrams, 20_000);
        for (name, sent) in &s.kinds {
            assert!(sent.datagrams > 0, "no {name} in {s:#?}");
        }
        assert!(s.responses.hello_verify_requests > 0, "{s:#?}");
        assert!(s.cookies_echoed > 0, "{s:#?}");
        assert!(echoed_seen > 0);
        assert!(s.responses.server_hellos > 0, "{s:#?}");
        assert!(s.source_rebinds > 0, "{s:#?}");
    }
}
