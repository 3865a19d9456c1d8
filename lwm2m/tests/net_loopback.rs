//! The tokio UDP driver over real loopback sockets, IPv4 and IPv6: one socket serves, another
//! asks. Everything protocol-level is covered with virtual time in the core's own tests; here
//! the point is that bytes, deadlines, commands and events really flow through the driver.
//!
//! `timeout` only guards against hangs (30 s); nothing asserts a duration.
#![cfg(feature = "net")]
use lwm2m::coap::{
    msg, CancelMode, ContentFormat, EndpointConfig, ExchangeError, ObserverGoneReason, Packet,
    RequestOptions, RequestType, ResponseType, TransmissionParams,
};
use lwm2m::net::{CoapSocket, Handle, Incoming, NetError, ObserverGone};
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::timeout;

const GUARD: Duration = Duration::from_secs(30);

async fn guarded<T>(f: impl Future<Output = T>) -> T {
    match timeout(GUARD, f).await {
        Ok(v) => v,
        Err(_) => panic!("test hung for {GUARD:?}"),
    }
}

fn sock(s: &str) -> SocketAddr {
    s.parse().expect("a socket address")
}

fn large_body() -> Vec<u8> {
    (0..3200)
        .flat_map(|i| format!("line {i:06} 0123456789abcdefghi\n").into_bytes())
        .collect()
}

fn text(code: ResponseType, body: impl Into<Vec<u8>>) -> Packet {
    let mut p = msg::response(code);
    p.set_content_format(ContentFormat::TextPlain);
    p.payload = body.into();
    p
}

/// The application side of the test server: /hello, /echo, /large and an observable /obs
/// notified every 20 ms. Observer-gone events are forwarded to `gone`.
async fn serve(handle: Handle, mut incoming: Incoming, gone: mpsc::Sender<ObserverGone>) {
    let mut observers = Vec::new();
    let mut count = 0u32;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        tokio::select! {
            r = incoming.requests.recv() => {
                let Some(r) = r else { return };
                let path = msg::uri_path(&r.request);
                let method = r.request.header.code;
                use lwm2m::coap::MessageClass::Request as M;
                let resp = match (method, path.as_str()) {
                    (M(RequestType::Get), "/hello") => text(ResponseType::Content, "hello"),
                    (M(RequestType::Post), "/echo") => {
                        text(ResponseType::Changed, r.request.payload.clone())
                    }
                    (M(RequestType::Get), "/large") => text(ResponseType::Content, large_body()),
                    (M(RequestType::Get), "/obs") => {
                        text(ResponseType::Content, format!("count={count}"))
                    }
                    _ => msg::response(ResponseType::NotFound),
                };
                if let Ok(Some(o)) = handle.respond(r.id, resp).await {
                    observers.push(o);
                }
            }
            g = incoming.observers_gone.recv() => {
                let Some(g) = g else { return };
                observers.retain(|o| *o != g.observer);
                let _ = gone.send(g).await;
            }
            _ = tick.tick(), if !observers.is_empty() => {
                count += 1;
                for o in observers.clone() {
                    let n = text(ResponseType::Content, format!("count={count}"));
                    if handle.notify(o, n, count.is_multiple_of(2)).await.is_err() {
                        observers.retain(|x| *x != o);
                    }
                }
            }
        }
    }
}

struct Setup {
    client: Handle,
    server: SocketAddr,
    gone: mpsc::Receiver<ObserverGone>,
}

/// A served socket and a client socket on `ip`, or `None` (with a note) if the address
/// family is not available here.
async fn setup(ip: &str) -> Option<Setup> {
    let any: SocketAddr = format!("{ip}:0").parse().ok()?;
    let server = match CoapSocket::builder(any).rng_seed(1).bind().await {
        Ok(s) => s,
        Err(e) => {
            println!("note: skipping {ip}: cannot bind ({e})");
            return None;
        }
    };
    let addr = server.local_addr();
    let (handle, incoming, _) = server.spawn();
    let (gone_tx, gone) = mpsc::channel(8);
    tokio::spawn(serve(handle, incoming, gone_tx));
    let client = CoapSocket::bind(any, EndpointConfig::default())
        .await
        .ok()?;
    let (client, _, _) = client.spawn();
    Some(Setup {
        client,
        server: addr,
        gone,
    })
}

const FAMILIES: [&str; 2] = ["127.0.0.1", "[::1]"];

#[tokio::test]
async fn get_returns_hello() {
    for ip in FAMILIES {
        let Some(s) = setup(ip).await else { continue };
        let req = msg::request(RequestType::Get, "/hello");
        let resp = guarded(s.client.request(s.server, req, RequestOptions::default())).await;
        let resp = resp.expect("GET /hello");
        assert_eq!(msg::code_string(&resp), "2.05", "{ip}");
        assert_eq!(resp.payload, b"hello", "{ip}");
    }
}

#[tokio::test]
async fn confirmable_post_of_5kb_goes_block1_and_echoes() {
    for ip in FAMILIES {
        let Some(s) = setup(ip).await else { continue };
        let body: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let mut req = msg::request(RequestType::Post, "/echo");
        req.payload = body.clone();
        let resp = guarded(s.client.request(s.server, req, RequestOptions::default())).await;
        let resp = resp.expect("POST /echo");
        assert_eq!(msg::code_string(&resp), "2.04", "{ip}");
        assert_eq!(resp.payload, body, "{ip}");
        let stats = s.client.stats().await.expect("stats");
        // 5 Block1 blocks up, then 4 requests for the rest of the Block2 echo.
        assert!(stats.tx >= 9, "{ip}: {stats:?}");
    }
}

#[tokio::test]
async fn get_of_100kb_goes_block2() {
    for ip in FAMILIES {
        let Some(s) = setup(ip).await else { continue };
        let req = msg::request(RequestType::Get, "/large");
        let opts = RequestOptions {
            block_szx: Some(4), // 256-byte blocks
            ..RequestOptions::default()
        };
        let resp = guarded(s.client.request(s.server, req, opts)).await;
        let resp = resp.expect("GET /large");
        assert_eq!(msg::code_string(&resp), "2.05", "{ip}");
        assert_eq!(resp.payload.len(), 102_400, "{ip}");
        assert!(resp.payload == large_body(), "{ip}: body differs");
        // 256-byte blocks asked for (RFC 7959 §2.4): some 400 exchanges, not 100.
        let stats = s.client.stats().await.expect("stats");
        assert!(stats.tx >= 397, "{ip}: block size not honoured: {stats:?}");
    }
}

#[tokio::test]
async fn observe_three_notifications_then_active_cancel() {
    for ip in FAMILIES {
        let Some(mut s) = setup(ip).await else {
            continue;
        };
        guarded(async {
            let req = msg::request(RequestType::Get, "/obs");
            let mut obs = s
                .client
                .observe(s.server, req, RequestOptions::default())
                .await
                .expect("observe /obs");
            assert_eq!(msg::code_string(obs.response()), "2.05", "{ip}");
            assert!(
                msg::observe(obs.response()).is_some(),
                "{ip}: not established"
            );
            let mut seqs = Vec::new();
            while seqs.len() < 3 {
                let n = obs
                    .next()
                    .await
                    .expect("stream open")
                    .expect("notification");
                assert!(String::from_utf8_lossy(&n.response.payload).starts_with("count="));
                seqs.push(n.seq.expect("an ordinary notification"));
            }
            assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{ip}: {seqs:?}");
            obs.cancel(CancelMode::Active).await.expect("cancel");
            // Notifications that crossed the cancel may come first; the last item is the
            // response to the deregistering GET.
            let mut last = None;
            while let Some(item) = obs.next().await {
                last = Some(item.expect("no failure"));
            }
            let last = last.expect("a final item");
            assert_eq!(last.seq, None, "{ip}");
            assert_eq!(msg::code_string(&last.response), "2.05", "{ip}");
            assert!(msg::observe(&last.response).is_none(), "{ip}");
            let gone = s.gone.recv().await.expect("observer gone");
            assert_eq!(gone.reason, ObserverGoneReason::Deregistered, "{ip}");
        })
        .await;
    }
}

#[tokio::test]
async fn observe_sent_as_plain_request_is_cancelled_by_the_driver() {
    let Some(mut s) = setup("127.0.0.1").await else {
        return;
    };
    let mut req = msg::request(RequestType::Get, "/obs");
    req.set_observe_value(0);
    let resp = guarded(s.client.request(s.server, req, RequestOptions::default())).await;
    assert!(msg::observe(&resp.expect("response")).is_some());
    // Nobody reads the notifications, so the first one is dropped and the observation
    // cancelled; the server's next notification is answered with RST (RFC 7641 §3.6).
    let gone = guarded(s.gone.recv()).await.expect("observer gone");
    assert_eq!(gone.reason, ObserverGoneReason::Reset);
    assert_eq!(s.client.usage().await.expect("usage").outgoing, 0);
}

#[tokio::test]
async fn dropping_an_observation_cancels_it() {
    let Some(mut s) = setup("127.0.0.1").await else {
        return;
    };
    let req = msg::request(RequestType::Get, "/obs");
    let obs = guarded(s.client.observe(s.server, req, RequestOptions::default())).await;
    drop(obs.expect("observe"));
    let gone = guarded(s.gone.recv()).await.expect("observer gone");
    assert_eq!(gone.reason, ObserverGoneReason::Reset);
}

#[tokio::test]
async fn ping_is_answered() {
    for ip in FAMILIES {
        let Some(s) = setup(ip).await else { continue };
        guarded(s.client.ping(s.server)).await.expect("pong");
    }
}

#[tokio::test]
async fn ipv4_peer_is_reachable_from_a_dual_stack_socket() {
    let Some(s) = setup("127.0.0.1").await else {
        return;
    };
    let client = match CoapSocket::bind(sock("[::]:0"), EndpointConfig::default()).await {
        Ok(c) => c,
        Err(e) => return println!("note: skipping, cannot bind [::]: {e}"),
    };
    let (client, _, _) = client.spawn();
    let req = msg::request(RequestType::Get, "/hello");
    match guarded(client.request(s.server, req, RequestOptions::default())).await {
        Ok(resp) => assert_eq!(resp.payload, b"hello"),
        // An IPV6_V6ONLY host cannot do this at all; that is not the driver's fault.
        Err(e) => println!("note: dual-stack not available here: {e}"),
    }
}

#[tokio::test]
async fn shutdown_ends_the_driver_and_fails_later_calls() {
    let socket = CoapSocket::bind(sock("127.0.0.1:0"), EndpointConfig::default())
        .await
        .expect("bind");
    let (handle, mut incoming, driver) = socket.spawn();
    guarded(handle.shutdown()).await;
    guarded(driver).await.expect("driver task ends cleanly");
    let req = msg::request(RequestType::Get, "/hello");
    let peer = sock("127.0.0.1:9");
    let r = handle.request(peer, req, RequestOptions::default()).await;
    assert_eq!(r.err(), Some(NetError::Closed));
    assert!(incoming.recv().await.is_none());
    handle.shutdown().await; // a second shutdown returns at once
}

#[tokio::test]
async fn dropping_every_handle_ends_the_driver() {
    let socket = CoapSocket::bind(sock("127.0.0.1:0"), EndpointConfig::default())
        .await
        .expect("bind");
    let (handle, _incoming, driver) = socket.split();
    let task = tokio::spawn(driver.run());
    drop(handle);
    guarded(task).await.expect("driver task ends cleanly");
}

#[tokio::test]
async fn request_to_a_silent_peer_times_out() {
    let silent = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let config = EndpointConfig {
        transmission: TransmissionParams {
            ack_timeout: Duration::from_millis(20),
            ack_random_factor: 1.0,
            max_retransmit: 2,
            ..TransmissionParams::default()
        },
        ..EndpointConfig::default()
    };
    let socket = CoapSocket::bind(sock("127.0.0.1:0"), config)
        .await
        .expect("bind");
    let (client, _, _) = socket.spawn();
    let peer = silent.local_addr().expect("addr");
    let req = msg::request(RequestType::Get, "/hello");
    let r = guarded(client.request(peer, req, RequestOptions::default())).await;
    assert_eq!(r.err(), Some(NetError::Exchange(ExchangeError::Timeout)));
    let stats = client.stats().await.expect("stats");
    assert_eq!(stats.retransmissions, 2);
}

#[tokio::test]
async fn requests_are_answered_404_once_incoming_is_dropped() {
    let server = CoapSocket::bind(sock("127.0.0.1:0"), EndpointConfig::default())
        .await
        .expect("bind");
    let addr = server.local_addr();
    let (_server, incoming, _) = server.spawn();
    drop(incoming);
    let client = CoapSocket::bind(sock("127.0.0.1:0"), EndpointConfig::default())
        .await
        .expect("bind");
    let (client, _, _) = client.spawn();
    let req = msg::request(RequestType::Get, "/hello");
    let resp = guarded(client.request(addr, req, RequestOptions::default()))
        .await
        .expect("answer");
    assert_eq!(msg::code_string(&resp), "4.04");
}

#[tokio::test]
async fn a_full_request_channel_holds_requests_back_without_losing_them() {
    let server = CoapSocket::builder(sock("127.0.0.1:0"))
        .channel_capacity(1)
        .bind()
        .await
        .expect("bind");
    let addr = server.local_addr();
    let (server, mut incoming, _) = server.spawn();
    let mut clients = Vec::new();
    for _ in 0..4 {
        let c = CoapSocket::bind(sock("127.0.0.1:0"), EndpointConfig::default())
            .await
            .expect("bind");
        clients.push(c.spawn().0);
    }
    let asks: Vec<_> = clients
        .iter()
        .map(|c| {
            let c = c.clone();
            tokio::spawn(async move {
                let req = msg::request(RequestType::Get, "/hello");
                c.request(addr, req, RequestOptions::default()).await
            })
        })
        .collect();
    // Start serving only once the channel has certainly filled up.
    tokio::time::sleep(Duration::from_millis(100)).await;
    guarded(async {
        for _ in 0..4 {
            let r = incoming.recv().await.expect("request");
            let resp = text(ResponseType::Content, "hello");
            server.respond(r.id, resp).await.expect("respond");
        }
        for a in asks {
            let resp = a.await.expect("task").expect("answer");
            assert_eq!(resp.payload, b"hello");
        }
    })
    .await;
}
