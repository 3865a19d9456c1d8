//! Virtual-time simulation of clients and a server over a lossy network: handshakes under
//! loss, reordering and duplication, replay, Connection ID address changes, resumption,
//! sessions restored after a restart, refusals, bounds.
#![allow(clippy::field_reassign_with_default)]
use crate::client::{Client, ClientEvent};
use crate::config::*;
use crate::pki::OwnKey;
use crate::server::{CloseReason, ConnId, Server, ServerEvent};
use crate::{AlertDescription, CipherSuite};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Credentials of the simulated fleet: PSK identities "dev-N" with key [N; 16], and
/// any raw public key or certificate whose principal is its first 4 bytes of hash.
#[derive(Default)]
struct Creds {
    psk: HashMap<Vec<u8>, (Vec<u8>, Arc<str>)>,
    keys: HashMap<Vec<u8>, Arc<str>>,
}

impl ServerCredentials for Creds {
    fn psk(&self, identity: &[u8]) -> Option<PskEntry> {
        self.psk.get(identity).map(|(k, p)| PskEntry {
            key: k.clone(),
            principal: p.clone(),
        })
    }
    fn verify_client(&self, key: PeerKey<'_>) -> Result<Arc<str>, AlertDescription> {
        let k = match key {
            PeerKey::RawPublicKey(spki) => spki.to_vec(),
            PeerKey::Certificates(chain) => chain.first().cloned().unwrap_or_default(),
        };
        self.keys
            .get(&k)
            .cloned()
            .ok_or(AlertDescription::AccessDenied)
    }
}

fn creds(n: u8) -> Creds {
    let mut c = Creds::default();
    for i in 0..n {
        c.psk.insert(
            format!("dev-{i}").into_bytes(),
            (vec![i; 16], Arc::from(format!("ep-{i}"))),
        );
    }
    c
}

/// One simulated network: a server at SERVER and clients at their own addresses.
struct Net {
    now: Instant,
    rng: StdRng,
    server: Server,
    creds: Creds,
    clients: Vec<(SocketAddr, Client)>,
    /// Datagrams in flight: (deliver at, to server?, client index or server, from, bytes).
    wire: Vec<(Instant, Option<usize>, SocketAddr, Vec<u8>)>,
    loss: f64,
    dup: f64,
    jitter_ms: u64,
    server_events: Vec<ServerEvent>,
    client_events: Vec<Vec<ClientEvent>>,
}

const SERVER: &str = "10.0.0.1:5684";

fn server_addr() -> SocketAddr {
    SERVER.parse().unwrap()
}

fn client_addr(i: usize) -> SocketAddr {
    format!("10.1.{}.{}:{}", i / 250, i % 250 + 1, 40000 + i)
        .parse()
        .unwrap()
}

impl Net {
    fn new(config: ServerConfig, creds: Creds, seed: u64) -> Self {
        let mut seed_bytes = [0u8; 32];
        seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
        Self {
            now: Instant::now(),
            rng: StdRng::seed_from_u64(seed),
            server: Server::new(config, seed_bytes),
            creds,
            clients: Vec::new(),
            wire: Vec::new(),
            loss: 0.0,
            dup: 0.0,
            jitter_ms: 0,
            server_events: Vec::new(),
            client_events: Vec::new(),
        }
    }

    fn add_client(&mut self, config: ClientConfig) -> usize {
        self.add_client_resuming(config, None)
    }

    fn add_client_resuming(
        &mut self,
        config: ClientConfig,
        resume: Option<crate::client::Resumption>,
    ) -> usize {
        let i = self.clients.len();
        let seed: [u8; 32] = self.rng.random();
        let c = Client::connect(Arc::new(config), self.now, seed, resume);
        self.clients.push((client_addr(i), c));
        self.client_events.push(Vec::new());
        i
    }

    fn send(&mut self, to_client: Option<usize>, from: SocketAddr, data: Vec<u8>) {
        if self.rng.random_bool(self.loss) {
            return;
        }
        let copies = if self.rng.random_bool(self.dup) { 2 } else { 1 };
        for _ in 0..copies {
            let delay = Duration::from_millis(
                1 + if self.jitter_ms > 0 {
                    self.rng.random_range(0..self.jitter_ms)
                } else {
                    0
                },
            );
            self.wire
                .push((self.now + delay, to_client, from, data.clone()));
        }
    }

    /// Moves every output onto the wire.
    fn flush(&mut self) {
        while let Some((to, d)) = self.server.poll_transmit() {
            let idx = self.clients.iter().position(|(a, _)| *a == to);
            if let Some(i) = idx {
                self.send(Some(i), server_addr(), d);
            }
        }
        while let Some(e) = self.server.poll_event() {
            self.server_events.push(e);
        }
        for i in 0..self.clients.len() {
            while let Some(d) = self.clients[i].1.poll_transmit() {
                let from = self.clients[i].0;
                self.send(None, from, d);
            }
            while let Some(e) = self.clients[i].1.poll_event() {
                self.client_events[i].push(e);
            }
        }
    }

    /// Runs the network for `d` of virtual time.
    fn run(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            self.flush();
            let next_wire = self.wire.iter().map(|w| w.0).min();
            let mut next = [next_wire, self.server.poll_timeout()]
                .into_iter()
                .flatten()
                .chain(self.clients.iter().filter_map(|(_, c)| c.poll_timeout()))
                .min();
            if next.is_none_or(|n| n > end) {
                next = None;
            }
            let Some(at) = next else {
                self.now = end;
                return;
            };
            self.now = self.now.max(at);
            let now = self.now;
            let (due, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.wire)
                .into_iter()
                .partition(|w| w.0 <= now);
            self.wire = rest;
            for (_, to, from, data) in due {
                match to {
                    None => self.server.handle_datagram(now, from, &data, &self.creds),
                    Some(i) => {
                        if self.clients[i].0 == from || from == server_addr() {
                            self.clients[i].1.handle_datagram(now, &data)
                        }
                    }
                }
            }
            if self.server.poll_timeout().is_some_and(|t| t <= now) {
                self.server.handle_timeout(now);
            }
            for (_, c) in &mut self.clients {
                if c.poll_timeout().is_some_and(|t| t <= now) {
                    c.handle_timeout(now);
                }
            }
        }
    }

    fn server_data(&self) -> Vec<(ConnId, Vec<u8>)> {
        self.server_events
            .iter()
            .filter_map(|e| match e {
                ServerEvent::Data { conn, data } => Some((*conn, data.clone())),
                _ => None,
            })
            .collect()
    }

    fn client_data(&self, i: usize) -> Vec<Vec<u8>> {
        self.client_events[i]
            .iter()
            .filter_map(|e| match e {
                ClientEvent::Data(d) => Some(d.clone()),
                _ => None,
            })
            .collect()
    }

    fn conn_of(&self, principal: &str) -> ConnId {
        self.server_events
            .iter()
            .rev()
            .find_map(|e| match e {
                ServerEvent::Established {
                    conn, principal: p, ..
                } if &**p == principal => Some(*conn),
                _ => None,
            })
            .expect("established")
    }
}

fn psk_client(i: u8) -> ClientConfig {
    ClientConfig::psk(format!("dev-{i}"), vec![i; 16])
}

fn echo_round_trip(net: &mut Net, i: usize, principal: &str) {
    let before = net.server_data().len();
    net.clients[i].1.send(b"ping").unwrap();
    net.run(Duration::from_secs(1));
    let got = net.server_data();
    assert_eq!(got.len(), before + 1, "server got the client's data");
    assert_eq!(got.last().unwrap().1, b"ping");
    let conn = net.conn_of(principal);
    net.server.send(conn, b"pong").unwrap();
    net.run(Duration::from_secs(1));
    assert_eq!(
        net.client_data(i).last().map(Vec::as_slice),
        Some(&b"pong"[..])
    );
}

#[test]
fn psk_handshake_with_cookie_then_data_both_ways_each_psk_suite() {
    for suite in [CipherSuite::PskAes128Ccm8, CipherSuite::PskAes128CbcSha256] {
        let mut net = Net::new(ServerConfig::default(), creds(4), 1);
        let mut cfg = psk_client(1);
        cfg.suites = vec![suite];
        net.add_client(cfg);
        net.run(Duration::from_secs(2));
        assert!(net.clients[0].1.is_established(), "{suite:?}");
        assert_eq!(net.server.stats().cookies_sent, 1);
        match &net.server_events[0] {
            ServerEvent::Established {
                principal,
                suite: s,
                resumed,
                ..
            } => {
                assert_eq!(&**principal, "ep-1");
                assert_eq!(*s, suite);
                assert!(!resumed);
            }
            e => panic!("{e:?}"),
        }
        echo_round_trip(&mut net, 0, "ep-1");
        assert_eq!(net.server.usage().handshakes, 0);
    }
}

#[test]
fn no_state_is_kept_before_the_cookie_returns() {
    let mut net = Net::new(ServerConfig::default(), creds(1), 2);
    net.add_client(psk_client(0));
    // Deliver only the first ClientHello; drop everything the server says.
    net.flush();
    let (_, _, from, data) = net.wire.remove(0);
    net.server.handle_datagram(net.now, from, &data, &net.creds);
    assert!(
        net.server.poll_transmit().is_some(),
        "HelloVerifyRequest sent"
    );
    assert_eq!(net.server.usage().handshakes, 0);
    assert_eq!(net.server.usage().timers, 0);
    // A thousand spoofed hellos from a thousand addresses: still nothing kept.
    for i in 0..1000u32 {
        let spoofed: SocketAddr = format!("192.0.2.{}:{}", i % 250, 1000 + i).parse().unwrap();
        net.server
            .handle_datagram(net.now, spoofed, &data, &net.creds);
    }
    assert_eq!(net.server.usage().handshakes, 0);
}

#[test]
fn a_first_client_hello_in_record_version_fe00_is_answered() {
    // mbedTLS 2.x sends its first ClientHello in a record of version 0xFE00.
    let mut net = Net::new(ServerConfig::default(), creds(1), 15);
    net.add_client(psk_client(0));
    net.flush();
    let (_, _, from, mut data) = net.wire.remove(0);
    data[1..3].copy_from_slice(&[0xFE, 0x00]);
    net.server.handle_datagram(net.now, from, &data, &net.creds);
    let (_, hvr) = net.server.poll_transmit().expect("HelloVerifyRequest");
    assert_eq!(hvr[0], 22, "a handshake record");
    assert_eq!(hvr[13], 3, "HelloVerifyRequest");
    // The rest of the handshake proceeds as usual.
    net.clients[0].1.handle_datagram(net.now, &hvr);
    net.run(Duration::from_secs(2));
    assert!(net.clients[0].1.is_established());
}

#[test]
fn handshakes_survive_loss_reordering_and_duplication() {
    for seed in 0..12 {
        let mut net = Net::new(ServerConfig::default(), creds(8), seed);
        net.loss = 0.3;
        net.dup = 0.2;
        net.jitter_ms = 400;
        for i in 0..8 {
            let mut cfg = psk_client(i);
            if i % 2 == 0 {
                cfg.connection_id = Some(vec![i, 0xcc]);
            }
            net.add_client(cfg);
        }
        net.run(Duration::from_secs(100));
        for i in 0..8 {
            assert!(net.clients[i].1.is_established(), "seed {seed} client {i}");
        }
        // Every client is known exactly once to the server, whatever was duplicated.
        assert_eq!(net.server.usage().sessions, 8, "seed {seed}");
        net.loss = 0.0;
        net.dup = 0.0;
        for i in 0..8 {
            echo_round_trip(&mut net, i, &format!("ep-{i}"));
        }
    }
}

#[test]
fn a_lost_final_flight_is_sent_again_when_the_client_repeats_its_own() {
    let mut net = Net::new(ServerConfig::default(), creds(1), 16);
    net.add_client(psk_client(0));
    let from = net.clients[0].0;
    let now = net.now;
    // Pump by hand: every client datagram reaches the server, every server datagram reaches
    // the client, except the server's final flight (ChangeCipherSpec, Finished).
    let mut dropped = false;
    for _ in 0..6 {
        while let Some(d) = net.clients[0].1.poll_transmit() {
            net.server.handle_datagram(now, from, &d, &net.creds);
        }
        while let Some((_, d)) = net.server.poll_transmit() {
            if net.server.usage().sessions == 1 && !dropped {
                dropped = true;
                continue;
            }
            net.clients[0].1.handle_datagram(now, &d);
        }
    }
    assert!(dropped && net.server.usage().sessions == 1);
    assert!(!net.clients[0].1.is_established());
    // The client's retransmission timer repeats its flight; the server answers it again.
    net.run(Duration::from_secs(3));
    assert!(net.clients[0].1.is_established());
    assert_eq!(net.server.usage().sessions, 1);
    echo_round_trip(&mut net, 0, "ep-0");
}

#[test]
fn replayed_records_are_rejected() {
    let mut net = Net::new(ServerConfig::default(), creds(1), 3);
    net.add_client(psk_client(0));
    net.run(Duration::from_secs(2));
    net.clients[0].1.send(b"once").unwrap();
    let d = net.clients[0].1.poll_transmit().unwrap();
    let from = net.clients[0].0;
    for _ in 0..3 {
        net.server.handle_datagram(net.now, from, &d, &net.creds);
    }
    net.flush();
    assert_eq!(net.server_data().len(), 1);
    assert!(net.server.stats().records_dropped >= 2);
}

#[test]
fn address_change_with_cid_keeps_the_session_without_cid_needs_a_handshake() {
    let mut cfg = ServerConfig::default();
    cfg.cid_len = 4;
    let mut net = Net::new(cfg, creds(2), 4);
    let mut with_cid = psk_client(0);
    with_cid.connection_id = Some(Vec::new()); // supports CIDs, wants none itself
    net.add_client(with_cid);
    net.add_client(psk_client(1));
    net.run(Duration::from_secs(2));
    assert!(net.clients[0].1.session().unwrap().send_cid.is_some());
    let conn0 = net.conn_of("ep-0");
    // Both devices' NATs rebind.
    let new0: SocketAddr = "10.9.9.9:1111".parse().unwrap();
    let new1: SocketAddr = "10.9.9.9:2222".parse().unwrap();
    net.clients[0].0 = new0;
    net.clients[1].0 = new1;
    net.clients[0].1.send(b"moved").unwrap();
    net.clients[1].1.send(b"moved").unwrap();
    net.run(Duration::from_secs(1));
    let data = net.server_data();
    assert_eq!(data.len(), 1, "only the CID session continues");
    assert_eq!(data[0].0, conn0);
    assert!(net.server_events.iter().any(
        |e| matches!(e, ServerEvent::Migrated { conn, to, .. } if *conn == conn0 && *to == new0)
    ));
    assert_eq!(net.server.peer(conn0), Some(new0));
    net.server.send(conn0, b"to the new address").unwrap();
    net.run(Duration::from_secs(1));
    assert_eq!(net.client_data(0), vec![b"to the new address".to_vec()]);
    // The device without CID resumes its session from the new address: same handle.
    let conn1 = net.conn_of("ep-1");
    net.clients[1].1.reconnect(net.now);
    net.run(Duration::from_secs(2));
    assert!(net.clients[1].1.is_established());
    assert!(matches!(
        net.client_events[1].last(),
        Some(ClientEvent::Connected { resumed: true, .. })
    ));
    assert_eq!(net.server.peer(conn1), Some(new1));
    echo_round_trip(&mut net, 1, "ep-1");
}

#[test]
fn resumption_is_abbreviated_and_keeps_the_connection_handle() {
    let mut net = Net::new(ServerConfig::default(), creds(1), 5);
    net.add_client(psk_client(0));
    net.run(Duration::from_secs(2));
    let conn = net.conn_of("ep-0");
    let resume = net.clients[0].1.resumption().cloned();
    // The device reboots with its session saved: a new client object, same address.
    net.clients.pop();
    net.client_events.pop();
    net.add_client_resuming(psk_client(0), resume);
    net.run(Duration::from_secs(2));
    assert!(matches!(
        net.client_events[0].last(),
        Some(ClientEvent::Connected { resumed: true, .. })
    ));
    assert_eq!(net.server.stats().resumptions, 1);
    assert_eq!(net.conn_of("ep-0"), conn);
    assert_eq!(net.server.usage().sessions, 1);
    echo_round_trip(&mut net, 0, "ep-0");
}

#[test]
fn a_restored_session_decrypts_the_next_record_after_a_restart() {
    let mut net = Net::new(ServerConfig::default(), creds(1), 6);
    let mut cfg = psk_client(0);
    cfg.connection_id = Some(vec![1, 2, 3]);
    net.add_client(cfg);
    net.run(Duration::from_secs(2));
    echo_round_trip(&mut net, 0, "ep-0");
    let conn = net.conn_of("ep-0");
    let saved = net.server.save_sessions();
    assert_eq!(saved.len(), 1);
    assert!(
        saved[0].1.len() < 400,
        "saved session is {} bytes",
        saved[0].1.len()
    );
    // A new process: another seed, the sessions restored.
    let mut fresh = Server::new(ServerConfig::default(), [9; 32]);
    assert_eq!(fresh.restore_session(&saved[0].1).unwrap(), conn);
    net.server = fresh;
    net.server_events.clear();
    net.clients[0].1.send(b"after restart").unwrap();
    net.run(Duration::from_secs(1));
    assert_eq!(net.server_data(), vec![(conn, b"after restart".to_vec())]);
    net.server.send(conn, b"welcome back").unwrap();
    net.run(Duration::from_secs(1));
    assert_eq!(net.client_data(0).last().unwrap(), b"welcome back");
    assert_eq!(net.server.stats().handshakes_started, 0);
}

fn failure_of(net: &Net) -> (AlertDescription, String) {
    net.server_events
        .iter()
        .find_map(|e| match e {
            ServerEvent::HandshakeFailed { failure, .. } => {
                Some((failure.alert, failure.identity.clone().unwrap_or_default()))
            }
            _ => None,
        })
        .expect("a handshake failure")
}

#[test]
fn wrong_key_and_unknown_identity_are_refused_with_the_right_alert() {
    let mut net = Net::new(ServerConfig::default(), creds(2), 7);
    net.add_client(ClientConfig::psk("dev-1", vec![0xee; 16]));
    net.run(Duration::from_secs(3));
    assert_eq!(
        failure_of(&net),
        (AlertDescription::BadRecordMac, "dev-1".into())
    );
    assert!(matches!(
        net.client_events[0].last(),
        Some(ClientEvent::Failed(_))
    ));
    assert!(!net.clients[0].1.is_established());

    let mut net = Net::new(ServerConfig::default(), creds(2), 8);
    net.add_client(ClientConfig::psk("nobody", vec![0; 16]));
    net.add_client(psk_client(1));
    net.run(Duration::from_secs(3));
    assert_eq!(
        failure_of(&net),
        (AlertDescription::UnknownPskIdentity, "nobody".into())
    );
    match net.client_events[0].last() {
        Some(ClientEvent::Failed(f)) => assert_eq!(f.reason, "server: unknown PSK identity"),
        e => panic!("{e:?}"),
    }
    // Nothing else disturbed.
    assert!(net.clients[1].1.is_established());
    assert_eq!(net.server.usage().handshakes, 0);
}

fn ecdhe_setup(chain: bool) -> (ServerConfig, Creds, Arc<OwnKey>) {
    let (server_key, device_key) = if chain {
        let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let mk = |name: &str| {
            let k = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
            let p = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
            let c = p.signed_by(&k, &issuer).unwrap();
            Arc::new(
                OwnKey::from_pkcs8_der(
                    &k.serialize_der(),
                    vec![c.der().to_vec(), ca_cert.der().to_vec()],
                )
                .unwrap(),
            )
        };
        (mk("server.example"), mk("device-7"))
    } else {
        (
            Arc::new(OwnKey::from_secret_bytes(&[3; 32], vec![]).unwrap()),
            Arc::new(OwnKey::from_secret_bytes(&[4; 32], vec![]).unwrap()),
        )
    };
    let mut cfg = ServerConfig::default();
    cfg.key = Some(server_key);
    let mut creds = Creds::default();
    let ident = device_key
        .chain
        .first()
        .cloned()
        .unwrap_or_else(|| device_key.spki.clone());
    creds.keys.insert(ident, Arc::from("device-7"));
    (cfg, creds, device_key)
}

#[test]
fn ecdhe_ecdsa_with_raw_public_keys_and_certificates_each_suite() {
    for chain in [false, true] {
        for suite in [
            CipherSuite::EcdheEcdsaAes128Ccm8,
            CipherSuite::EcdheEcdsaAes128GcmSha256,
        ] {
            let (scfg, creds, key) = ecdhe_setup(chain);
            let server_spki = scfg.key.as_ref().unwrap().spki.clone();
            let mut net = Net::new(scfg, creds, 9);
            let mut cfg = ClientConfig::with_key(key, ServerTrust::PinnedKey(server_spki));
            cfg.suites = vec![suite];
            cfg.max_datagram = 300; // the certificate chain travels in fragments
            net.add_client(cfg);
            net.run(Duration::from_secs(3));
            assert!(
                net.clients[0].1.is_established(),
                "chain {chain} {suite:?}: {:?}",
                net.server_events
            );
            echo_round_trip(&mut net, 0, "device-7");
        }
    }
}

#[test]
fn an_unknown_client_key_is_refused() {
    let (scfg, creds, _) = ecdhe_setup(false);
    let mut net = Net::new(scfg, creds, 10);
    let stranger = Arc::new(OwnKey::from_secret_bytes(&[5; 32], vec![]).unwrap());
    net.add_client(ClientConfig::with_key(stranger, ServerTrust::Unverified));
    net.run(Duration::from_secs(3));
    assert_eq!(failure_of(&net).0, AlertDescription::AccessDenied);
    assert!(!net.clients[0].1.is_established());
}

#[test]
fn a_stalled_handshake_is_abandoned_and_others_proceed() {
    let mut net = Net::new(ServerConfig::default(), creds(2), 11);
    net.add_client(psk_client(0));
    // Run until the server holds the handshake, then silence the client forever.
    for _ in 0..4 {
        net.run(Duration::from_millis(1));
    }
    net.flush();
    assert!(net.server.usage().handshakes <= 1);
    net.clients[0].0 = "10.200.0.1:1".parse().unwrap(); // its replies now go nowhere
    net.add_client(psk_client(1));
    net.run(Duration::from_secs(5));
    assert!(net.clients[1].1.is_established());
    net.run(Duration::from_secs(200));
    assert_eq!(net.server.usage().handshakes, 0);
    assert_eq!(net.server.usage().timers, 0);
}

#[test]
fn closing_a_principal_ends_its_session_at_once() {
    let mut net = Net::new(ServerConfig::default(), creds(2), 12);
    net.add_client(psk_client(0));
    net.add_client(psk_client(1));
    net.run(Duration::from_secs(2));
    assert_eq!(net.server.close_principal("ep-0"), 1);
    net.run(Duration::from_secs(1));
    assert!(matches!(
        net.client_events[0].last(),
        Some(ClientEvent::Closed(AlertDescription::CloseNotify))
    ));
    assert!(net.server_events.iter().any(|e| matches!(e, ServerEvent::Closed { reason: CloseReason::Local, principal, .. } if &**principal == "ep-0")));
    // Its records are no longer accepted; the other device is untouched.
    echo_round_trip(&mut net, 1, "ep-1");
    assert_eq!(net.server.usage().sessions, 1);
}

#[test]
fn the_session_table_is_bounded_and_evicts_the_idle() {
    let mut cfg = ServerConfig::default();
    cfg.max_sessions = 4;
    cfg.handshakes_per_source_per_sec = 100;
    let mut net = Net::new(cfg, creds(8), 13);
    for i in 0..4 {
        net.add_client(psk_client(i));
    }
    net.run(Duration::from_secs(2));
    // Devices 0 and 1 stay active; 2 and 3 go quiet.
    for _ in 0..2 {
        for i in 0..2 {
            net.clients[i].1.send(b"alive").unwrap();
        }
        net.run(Duration::from_secs(1));
        for i in 4..6 {
            net.add_client(psk_client(i as u8));
            net.run(Duration::from_secs(2));
        }
    }
    assert_eq!(net.server.usage().sessions, 4);
    assert!(net.server.stats().evictions >= 2);
    let evicted: Vec<String> = net
        .server_events
        .iter()
        .filter_map(|e| match e {
            ServerEvent::Closed {
                principal,
                reason: CloseReason::Evicted,
                ..
            } => Some(principal.to_string()),
            _ => None,
        })
        .collect();
    assert!(
        !evicted.contains(&"ep-0".to_string()) && !evicted.contains(&"ep-1".to_string()),
        "{evicted:?}"
    );
}

#[test]
fn a_source_over_its_rate_is_refused() {
    let mut cfg = ServerConfig::default();
    cfg.handshakes_per_source_per_sec = 2;
    let mut net = Net::new(cfg, creds(5), 14);
    // Five devices behind one address (same IP, other ports).
    for i in 0..5 {
        net.add_client(psk_client(i));
        let a: SocketAddr = format!("10.5.5.5:{}", 1000 + u32::from(i)).parse().unwrap();
        net.clients[i as usize].0 = a;
    }
    net.run(Duration::from_millis(500));
    assert_eq!(net.server.stats().handshakes_refused, 3);
    // Refused ones retry and get in once the second is over.
    net.run(Duration::from_secs(20));
    assert!(net.clients.iter().all(|(_, c)| c.is_established()));
}

mod props {
    use super::*;
    use proptest::prelude::*;

    /// Real datagrams of a PSK and an ECDHE handshake, to mutate.
    fn corpus() -> &'static [Vec<u8>] {
        static CORPUS: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
        CORPUS.get_or_init(make_corpus)
    }

    fn make_corpus() -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let (scfg, creds, key) = ecdhe_setup(false);
        let mut net = Net::new(scfg, creds, 21);
        net.creds.psk = super::creds(1).psk;
        net.add_client(psk_client(0));
        let mut c = ClientConfig::with_key(key, ServerTrust::Unverified);
        c.connection_id = Some(vec![7, 7]);
        net.add_client(c);
        for _ in 0..20 {
            net.run(Duration::from_millis(5));
            out.extend(net.wire.iter().map(|w| w.3.clone()));
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Arbitrary and mutated datagrams from several sources, to a server holding live
        /// sessions and handshakes: no panic, every table within its bound.
        #[test]
        fn server_never_panics_and_stays_bounded(
            inputs in proptest::collection::vec((0usize..4, any::<u16>(), any::<u8>(), proptest::collection::vec(any::<u8>(), 0..300), any::<bool>()), 1..40)
        ) {
            let corpus = corpus();
            let mut cfg = ServerConfig::default();
            cfg.max_handshakes = 4;
            cfg.max_sessions = 3;
            let mut server = Server::new(cfg, [1; 32]);
            let creds = super::creds(2);
            let now = Instant::now();
            for (i, (src, pos, byte, junk, mutate)) in inputs.into_iter().enumerate() {
                let from = client_addr(src);
                let data = if mutate && !corpus.is_empty() {
                    let mut d = corpus[i % corpus.len()].clone();
                    if !d.is_empty() {
                        let p = usize::from(pos) % d.len();
                        d[p] = byte;
                    }
                    d
                } else {
                    junk
                };
                server.handle_datagram(now + Duration::from_millis(i as u64), from, &data, &creds);
                server.handle_timeout(now + Duration::from_secs(i as u64));
                while server.poll_transmit().is_some() {}
                while server.poll_event().is_some() {}
                let u = server.usage();
                prop_assert!(u.handshakes <= 4 && u.sessions <= 3);
            }
        }

        /// Arbitrary bytes into a client at any stage never panic.
        #[test]
        fn client_never_panics(datagrams in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..20)) {
            let now = Instant::now();
            let mut c = Client::connect(Arc::new(psk_client(0)), now, [2; 32], None);
            for d in datagrams {
                c.handle_datagram(now, &d);
                c.handle_timeout(now + Duration::from_secs(3));
                while c.poll_transmit().is_some() {}
                while c.poll_event().is_some() {}
            }
        }
    }
}
