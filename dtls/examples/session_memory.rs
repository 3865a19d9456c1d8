//! Memory of a DTLS server per established session: runs N real PSK handshakes (cookie
//! exchange, CCM_8, Connection ID) between one `dtls::Server` and throw-away clients in
//! memory, keeps every session, and reports the growth of the process's resident set per
//! session. Linux only (reads /proc/self/statm; no allocator hooks, so no `unsafe`).
//!
//! `cargo run --release -p dtls --example session_memory -- 10000 100000`
use dtls::client::Client;
use dtls::{ClientConfig, PskEntry, Server, ServerConfig, ServerCredentials};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

struct OneKey;

impl ServerCredentials for OneKey {
    fn psk(&self, identity: &[u8]) -> Option<PskEntry> {
        Some(PskEntry {
            key: b"bench-key-0123456".to_vec(),
            principal: Arc::from(String::from_utf8_lossy(identity).as_ref()),
        })
    }
    fn verify_client(
        &self,
        _: dtls::PeerKey<'_>,
        _: Option<u64>,
    ) -> Result<Arc<str>, dtls::AlertDescription> {
        Err(dtls::AlertDescription::AccessDenied)
    }
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn handshake(server: &mut Server, creds: &OneKey, now: Instant, i: u64) -> bool {
    let addr = SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 5000));
    let mut config = ClientConfig::psk(format!("device-{i:06}"), b"bench-key-0123456".to_vec());
    config.connection_id = Some(Vec::new());
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&i.to_le_bytes());
    let mut client = Client::connect(Arc::new(config), now, seed, None);
    for _ in 0..10 {
        while let Some(d) = client.poll_transmit() {
            server.handle_datagram(now, addr, &d, creds);
        }
        while let Some((_, d)) = server.poll_transmit() {
            client.handle_datagram(now, &d);
        }
        if client.is_established() {
            return true;
        }
    }
    false
}

fn main() {
    let counts: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let counts = if counts.is_empty() {
        vec![10_000, 100_000]
    } else {
        counts
    };
    for n in counts {
        let mut server = Server::new(ServerConfig::default(), [7; 32]);
        let creds = OneKey;
        let now = Instant::now();
        let before = rss_bytes();
        let started = Instant::now();
        let mut ok = 0u64;
        for i in 0..n {
            // Time passes as it would at 20,000 handshakes/s, so per-second limits reset.
            let now = now + std::time::Duration::from_micros(50 * i);
            ok += u64::from(handshake(&mut server, &creds, now, i));
            while server.poll_event().is_some() {}
        }
        let took = started.elapsed();
        let grown = rss_bytes().saturating_sub(before);
        let held = server.usage().sessions.max(1);
        println!(
            "{n} sessions ({ok} established, {held} held): RSS +{:.1} MB, {:.0} bytes per session; \
             {:.0} handshakes/s on one thread running server and client both",
            grown as f64 / 1e6,
            grown as f64 / held as f64,
            n as f64 / took.as_secs_f64().max(1e-9),
        );
        let saved: usize = server.save_sessions().iter().map(|(_, b)| b.len()).sum();
        println!(
            "  saved form: {:.0} bytes per session",
            saved as f64 / held as f64
        );
    }
}
