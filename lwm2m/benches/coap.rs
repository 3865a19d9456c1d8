//! Cost of the sans-IO CoAP core per exchange, without sockets: what one core can do before
//! the kernel's UDP path is counted. `lwm2m-client-sim coap-bench` measures the same over
//! real sockets.
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use lwm2m::coap::{
    msg, Endpoint, EndpointConfig, Event, Packet, RequestOptions, RequestType, ResponseType,
};
use std::hint::black_box;
use std::time::{Duration, Instant};

fn content(payload: &[u8]) -> Packet {
    let mut p = msg::response(ResponseType::Content);
    p.payload = payload.to_vec();
    p
}

/// A confirmable GET from a client endpoint, answered by a server endpoint, piggybacked.
fn round_trip(c: &mut Criterion) {
    let mut g = c.benchmark_group("exchange");
    g.throughput(Throughput::Elements(1));
    g.bench_function("con_get_piggybacked_round_trip", |b| {
        let mut client: Endpoint<u32> = Endpoint::new(EndpointConfig::default());
        let mut server: Endpoint<u32> = Endpoint::new(EndpointConfig::default());
        let mut now = Instant::now();
        let req = msg::request(RequestType::Get, "/3/0/0");
        let mut peer = 0u32;
        b.iter(|| {
            now += Duration::from_micros(50);
            peer = (peer + 1) % 10_000;
            client
                .send_request(now, peer, req.clone(), RequestOptions::default())
                .ok();
            while let Some(t) = client.poll_transmit() {
                server.handle_datagram(now, peer, &t.payload);
            }
            while let Some(ev) = server.poll_event() {
                if let Event::Request(r) = ev {
                    server
                        .respond(now, r.id, content(b"Open Mobile Alliance"))
                        .ok();
                }
            }
            while let Some(t) = server.poll_transmit() {
                client.handle_datagram(now, t.peer, &t.payload);
            }
            while let Some(ev) = client.poll_event() {
                black_box(ev);
            }
            if client.poll_timeout().is_some_and(|t| t <= now) {
                client.handle_timeout(now);
            }
            if server.poll_timeout().is_some_and(|t| t <= now) {
                server.handle_timeout(now);
            }
        });
    });
    g.bench_function("server_side_request", |b| {
        let mut server: Endpoint<u32> = Endpoint::new(EndpointConfig::default());
        let mut now = Instant::now();
        let mut req = msg::request(RequestType::Get, "/3/0/0");
        req.header.set_type(lwm2m::coap::MessageType::Confirmable);
        req.set_token(vec![1, 2, 3, 4]);
        let mut mid = 0u16;
        b.iter(|| {
            now += Duration::from_micros(50);
            mid = mid.wrapping_add(1);
            req.header.message_id = mid;
            let bytes = req.to_bytes().unwrap_or_default();
            server.handle_datagram(now, u32::from(mid), &bytes);
            while let Some(ev) = server.poll_event() {
                if let Event::Request(r) = ev {
                    server
                        .respond(now, r.id, content(b"Open Mobile Alliance"))
                        .ok();
                }
            }
            while let Some(t) = server.poll_transmit() {
                let _ = black_box(t);
            }
            if server.poll_timeout().is_some_and(|t| t <= now) {
                server.handle_timeout(now);
            }
        });
    });
    g.finish();
}

criterion_group!(benches, round_trip);
criterion_main!(benches);
