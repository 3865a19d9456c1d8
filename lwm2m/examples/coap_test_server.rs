//! A small CoAP server on [`lwm2m::net`], for interop tests against other implementations
//! (see `interop/run.sh`, which drives it with libcoap's `coap-client`).
//!
//! Resources, chosen to exercise each part of the core once:
//! - `GET /` and `GET /hello`: a plain piggybacked 2.05;
//! - `POST /echo`, `PUT /echo`: 2.04 with the request payload (Block1 for large ones);
//! - `GET /large`: a 100 KiB deterministic text, which a client can only get with Block2;
//! - `GET /obs`: a counter, observable (RFC 7641), notified every `--notify-interval-ms`,
//!   every fifth notification confirmable;
//! - `GET /.well-known/core`: the link format of the above (RFC 6690).
//!
//! It prints `listening on ADDR` on stdout once bound (scripts wait for that line; with
//! `--bind 127.0.0.1:0` it carries the port picked) and logs with tracing on stderr
//! (`RUST_LOG=debug` for every request).
use clap::Parser;
use lwm2m::coap::link_format::{self, Link};
use lwm2m::coap::{
    msg, CoapOption, EndpointConfig, IncomingRequest, MessageClass, ObserverId, Packet,
    RequestType, ResponseType,
};
use lwm2m::net::{CoapSocket, Handle};
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(about = "CoAP test server built on lwm2m::net")]
struct Args {
    /// Address to listen on; port 0 picks a free port (printed at start).
    #[arg(long, default_value = "[::]:5683")]
    bind: SocketAddr,
    /// Interval between notifications of /obs.
    #[arg(long, default_value_t = 500)]
    notify_interval_ms: u64,
    /// Print the body of /large on stdout and exit (the expected output of interop tests).
    #[arg(long)]
    print_large: bool,
}

const HELLO: &str = "Hello from lwm2m-rs";
const INDEX: &str = "This is a test server made with lwm2m-rs (CoAP over UDP, RFC 7252)\n";
const CT_TEXT: u32 = 0;
const CT_LINK_FORMAT: u32 = 40;

/// 100 KiB of text in 3200 lines of 32 bytes: `line 000001 0123456789abcdefghi\n`.
fn large_body() -> Vec<u8> {
    (1..=3200)
        .flat_map(|i| format!("line {i:06} 0123456789abcdefghi\n").into_bytes())
        .collect()
}

fn well_known_core() -> String {
    link_format::serialize(&[
        Link::new("/")
            .with_attr("title", Some("General Info"))
            .with_attr("ct", Some("0")),
        Link::new("/hello").with_attr("ct", Some("0")),
        Link::new("/echo").with_attr("title", Some("Echo")),
        Link::new("/large")
            .with_attr("ct", Some("0"))
            .with_attr("sz", Some("102400")),
        Link::new("/obs")
            .with_attr("obs", None)
            .with_attr("ct", Some("0")),
    ])
}

fn content(code: ResponseType, ct: u32, body: impl Into<Vec<u8>>) -> Packet {
    let mut p = msg::response(code);
    msg::set_uint_option(&mut p, CoapOption::ContentFormat, ct);
    p.payload = body.into();
    p
}

/// The application's state: the counter of /obs and who observes it.
struct App {
    count: u64,
    observers: Vec<ObserverId>,
    large: Vec<u8>,
}

impl App {
    fn answer(&self, r: &IncomingRequest<SocketAddr>) -> Packet {
        use RequestType::{Get, Post, Put};
        let MessageClass::Request(method) = r.request.header.code else {
            return msg::response(ResponseType::BadRequest);
        };
        match (method, msg::uri_path(&r.request).as_str()) {
            (Get, "/") => content(ResponseType::Content, CT_TEXT, INDEX),
            (Get, "/hello") => content(ResponseType::Content, CT_TEXT, HELLO),
            (Post | Put, "/echo") => {
                let mut p = msg::response(ResponseType::Changed);
                if let Some(ct) = r.request.get_first_option(CoapOption::ContentFormat) {
                    p.add_option(CoapOption::ContentFormat, ct.clone());
                }
                p.payload = r.request.payload.clone();
                p
            }
            (Get, "/large") => content(ResponseType::Content, CT_TEXT, self.large.clone()),
            (Get, "/obs") => content(ResponseType::Content, CT_TEXT, self.counter()),
            (Get, "/.well-known/core") => {
                content(ResponseType::Content, CT_LINK_FORMAT, well_known_core())
            }
            (_, "/" | "/hello" | "/echo" | "/large" | "/obs" | "/.well-known/core") => {
                msg::response(ResponseType::MethodNotAllowed)
            }
            _ => msg::response(ResponseType::NotFound),
        }
    }

    fn counter(&self) -> String {
        format!("count={}", self.count)
    }

    async fn notify_all(&mut self, handle: &Handle) {
        self.count += 1;
        let confirmable = self.count.is_multiple_of(5);
        let mut alive = Vec::with_capacity(self.observers.len());
        for o in self.observers.drain(..) {
            let n = content(
                ResponseType::Content,
                CT_TEXT,
                format!("count={}", self.count),
            );
            match handle.notify(o, n, confirmable).await {
                Ok(()) => alive.push(o),
                Err(e) => tracing::debug!(observer = ?o, error = %e, "observer dropped"),
            }
        }
        self.observers = alive;
    }
}

// One thread: the server's work is one driver task and one handler task, and a single-core
// deployment (and the benchmark, pinned to one core) pays for every cross-thread wake-up.
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.print_large {
        use std::io::Write;
        std::io::stdout().write_all(&large_body())?;
        return Ok(());
    }
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();

    let socket = CoapSocket::bind(args.bind, EndpointConfig::default()).await?;
    println!("listening on {}", socket.local_addr());
    let (handle, mut incoming, driver) = socket.spawn();

    let mut app = App {
        count: 0,
        observers: Vec::new(),
        large: large_body(),
    };
    let period = Duration::from_millis(args.notify_interval_ms.max(1));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            r = incoming.requests.recv() => {
                let Some(r) = r else { break };
                tracing::debug!(peer = %r.peer, method = %r.request.header.code,
                    path = %msg::uri_path(&r.request), "request");
                let response = app.answer(&r);
                match handle.respond(r.id, response).await {
                    Ok(Some(observer)) => app.observers.push(observer),
                    Ok(None) => {}
                    Err(e) => tracing::warn!(peer = %r.peer, error = %e, "cannot respond"),
                }
            }
            Some(gone) = incoming.observers_gone.recv() => {
                tracing::debug!(peer = %gone.peer, reason = ?gone.reason, "observer gone");
                app.observers.retain(|o| *o != gone.observer);
            }
            _ = tick.tick() => {
                if app.observers.is_empty() {
                    app.count += 1;
                } else {
                    app.notify_all(&handle).await;
                }
            }
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    handle.shutdown().await;
    driver.await?;
    Ok(())
}
