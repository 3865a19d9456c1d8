//! Criterion benchmarks of the DTLS engine: a full PSK handshake with cookie exchange
//! (server and client together, in memory), and one record sealed and opened per suite.
use criterion::{criterion_group, criterion_main, Criterion};
use dtls::client::Client;
use dtls::crypto::DirectionKeys;
use dtls::record::{split_records, ContentType, DTLS_1_2};
use dtls::suite::RecordCipher;
use dtls::{ClientConfig, PskEntry, Server, ServerConfig, ServerCredentials};
use rand::SeedableRng;
use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct OneKey;

impl ServerCredentials for OneKey {
    fn psk(&self, _identity: &[u8]) -> Option<PskEntry> {
        Some(PskEntry {
            key: vec![7; 16],
            principal: Arc::from("bench"),
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

fn psk_handshake(c: &mut Criterion) {
    let config = Arc::new(ClientConfig::psk("bench", vec![7; 16]));
    let creds = OneKey;
    let mut server = Server::new(
        ServerConfig {
            handshakes_per_source_per_sec: u32::MAX,
            ..ServerConfig::default()
        },
        [1; 32],
    );
    let start = Instant::now();
    let mut i = 0u64;
    c.bench_function("psk_ccm8_handshake_with_cookie", |b| {
        b.iter(|| {
            i += 1;
            let now = start + Duration::from_micros(i);
            let addr = SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 9));
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&i.to_le_bytes());
            let mut client = Client::connect(config.clone(), now, seed, None);
            while !client.is_established() {
                while let Some(d) = client.poll_transmit() {
                    server.handle_datagram(now, addr, &d, &creds);
                }
                while let Some((_, d)) = server.poll_transmit() {
                    client.handle_datagram(now, &d);
                }
            }
            while server.poll_event().is_some() {}
            black_box(client.is_established())
        })
    });
}

fn records(c: &mut Criterion) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let payload = vec![0x42u8; 100];
    for (name, cipher) in [
        ("ccm8", RecordCipher::Ccm8),
        ("gcm", RecordCipher::Gcm),
        ("cbc_sha256", RecordCipher::CbcSha256),
    ] {
        let keys = DirectionKeys {
            cipher,
            enc_key: [1; 16],
            mac_key: [2; 32],
            fixed_iv: [3; 4],
        };
        c.bench_function(&format!("record_seal_open_100B_{name}"), |b| {
            let mut seq = 0u64;
            b.iter(|| {
                seq += 1;
                let mut out = Vec::with_capacity(200);
                // 100 bytes and a sequence number far below 2^48: always written.
                let sealed = keys.seal(
                    ContentType::ApplicationData,
                    DTLS_1_2,
                    1,
                    seq,
                    None,
                    &payload,
                    &mut rng,
                    &mut out,
                );
                black_box(sealed.is_ok());
                let rec = split_records(&out, 0).next().and_then(Result::ok);
                black_box(rec.map(|r| keys.open(&r)))
            })
        });
    }
}

criterion_group!(benches, psk_handshake, records);
criterion_main!(benches);
