//! Measures the endpoint's memory per peer entry, by resident set size before and after
//! creating many entries of one kind (Linux `/proc/self/statm`; no allocator hooks, so no
//! `unsafe`). Prints bytes per entry for each kind of state a peer can leave behind.
use lwm2m::coap::{
    msg, CoapOption, Endpoint, EndpointConfig, Event, MessageClass, MessageType, Packet,
    RequestOptions, RequestType, ResponseType, Usage,
};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

const N: u32 = 200_000;

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn peer(i: u32) -> SocketAddr {
    let ip = Ipv4Addr::from(0x7f00_0000 | (i >> 8));
    SocketAddr::V4(SocketAddrV4::new(ip, (i & 0xff) as u16 + 10_000))
}

fn config() -> EndpointConfig {
    EndpointConfig {
        dedup_capacity: 2 * N as usize,
        ..EndpointConfig::default()
    }
}

fn content() -> Packet {
    let mut p = msg::response(ResponseType::Content);
    p.payload = b"22.5".to_vec();
    p
}

/// The piggybacked answer a device would give to the request in `datagram`.
fn answer(datagram: &[u8], observe: Option<u32>) -> Vec<u8> {
    let mut resp = Packet::from_bytes(datagram).unwrap_or_default();
    resp.header.set_type(MessageType::Acknowledgement);
    resp.header.code = MessageClass::Response(ResponseType::Content);
    resp.clear_all_options();
    if let Some(seq) = observe {
        msg::set_uint_option(&mut resp, CoapOption::Observe, seq);
    }
    resp.payload = b"22.5".to_vec();
    resp.to_bytes().unwrap_or_default()
}

fn report(what: &str, before: u64, usage: Usage) {
    let per_peer = rss_bytes().saturating_sub(before) / u64::from(N);
    println!("{what:<58} {per_peer:>5} bytes/peer  {usage:?}");
}

fn main() {
    let now = Instant::now();
    println!("{N} peers per case, SocketAddr peer keys");
    // 1. Server role: each peer sent one CON request that was answered. The endpoint keeps a
    //    duplicate-detection record with the cached answer for EXCHANGE_LIFETIME.
    {
        let before = rss_bytes();
        let mut ep: Endpoint<SocketAddr> = Endpoint::new(config());
        for i in 0..N {
            let mut req = msg::request(RequestType::Get, "/3303/0/5700");
            req.header.set_type(MessageType::Confirmable);
            req.header.message_id = i as u16;
            req.set_token(i.to_be_bytes().to_vec());
            ep.handle_datagram(now, peer(i), &req.to_bytes().unwrap_or_default());
            while let Some(ev) = ep.poll_event() {
                if let Event::Request(r) = ev {
                    ep.respond(now, r.id, content()).ok();
                }
            }
            while ep.poll_transmit().is_some() {}
        }
        report(
            "answered request, within EXCHANGE_LIFETIME",
            before,
            ep.usage(),
        );
        ep.handle_timeout(now + Duration::from_secs(300));
        println!("  after EXCHANGE_LIFETIME: {:?}", ep.usage());
    }
    // 2. Client role: we sent each peer a request and it answered (the LwM2M server reading
    //    a device). The peer's message-ID counter stays for EXCHANGE_LIFETIME.
    {
        let before = rss_bytes();
        let mut ep: Endpoint<SocketAddr> = Endpoint::new(config());
        for i in 0..N {
            let get = msg::request(RequestType::Get, "/3/0");
            if ep
                .send_request(now, peer(i), get, RequestOptions::default())
                .is_err()
            {
                continue;
            }
            let Some(t) = ep.poll_transmit() else {
                continue;
            };
            ep.handle_datagram(now, peer(i), &answer(&t.payload, None));
            while ep.poll_event().is_some() {}
        }
        report(
            "request sent and answered, within EXCHANGE_LIFETIME",
            before,
            ep.usage(),
        );
        ep.handle_timeout(now + Duration::from_secs(300));
        println!("  after EXCHANGE_LIFETIME: {:?}", ep.usage());
    }
    // 3. Observer role: one established observation per peer (the server observing a
    //    device's sensor). It lives until cancelled.
    {
        let before = rss_bytes();
        let mut ep: Endpoint<SocketAddr> = Endpoint::new(config());
        for i in 0..N {
            let mut req = msg::request(RequestType::Get, "/3303/0/5700");
            msg::set_uint_option(&mut req, CoapOption::Observe, 0);
            if ep
                .send_request(now, peer(i), req, RequestOptions::default())
                .is_err()
            {
                continue;
            }
            let Some(t) = ep.poll_transmit() else {
                continue;
            };
            ep.handle_datagram(now, peer(i), &answer(&t.payload, Some(1)));
            while ep.poll_event().is_some() {}
        }
        ep.handle_timeout(now + Duration::from_secs(300));
        report(
            "established observation, idle, after lifetimes",
            before,
            ep.usage(),
        );
    }
}
