//! Clients and a server on the shared simulated network (`netsim`, virtual time): handshakes under
//! loss, reordering and duplication, replay, Connection ID address changes, resumption,
//! sessions restored after a restart, refusals, bounds.
#![allow(clippy::field_reassign_with_default)]
use crate::client::{Client, ClientEvent};
use crate::config::*;
use crate::pki::OwnKey;
use crate::server::{CloseReason, ConnId, Server, ServerEvent};
use crate::{AlertDescription, CipherSuite, HandshakeError};
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
    /// When set, a certificate chain must also lead to these roots at the time the engine
    /// gives.
    roots: Option<crate::pki::Roots>,
    /// Who a refused key claims to be, as `refused_identity` reports it.
    refused_as: Option<String>,
}

impl ServerCredentials for Creds {
    fn psk(&self, identity: &[u8]) -> Option<PskEntry> {
        self.psk.get(identity).map(|(k, p)| PskEntry {
            key: k.clone(),
            principal: p.clone(),
        })
    }
    fn verify_client(
        &self,
        key: PeerKey<'_>,
        unix_time: Option<u64>,
    ) -> Result<Arc<str>, AlertDescription> {
        if let (Some(roots), PeerKey::Certificates(chain)) = (&self.roots, key) {
            roots.verify(
                chain,
                unix_time.ok_or(AlertDescription::InternalError)?,
                true,
            )?;
        }
        let k = match key {
            PeerKey::RawPublicKey(spki) => spki.to_vec(),
            PeerKey::Certificates(chain) => chain.first().cloned().unwrap_or_default(),
        };
        self.keys
            .get(&k)
            .cloned()
            .ok_or(AlertDescription::AccessDenied)
    }

    fn refused_identity(&self, _key: PeerKey<'_>, _unix_time: Option<u64>) -> Option<String> {
        self.refused_as.clone()
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

/// One server at SERVER and clients at their own addresses on a simulated network
/// ([`netsim`]: virtual time, loss, duplication, jitter).
struct Net {
    sim: netsim::Net<SocketAddr>,
    /// The test's own randomness (client seeds), apart from the network's.
    rng: StdRng,
    server: Server,
    creds: Creds,
    clients: Vec<(SocketAddr, Client)>,
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

/// A network with a millisecond of latency and nothing else wrong.
fn quick_network() -> netsim::Faults {
    netsim::Faults {
        latency: Duration::from_millis(1),
        ..netsim::Faults::default()
    }
}

impl Net {
    fn new(config: ServerConfig, creds: Creds, seed: u64) -> Self {
        let mut seed_bytes = [0u8; 32];
        seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
        Self {
            sim: netsim::Net::new(seed).with_faults(quick_network()),
            rng: StdRng::seed_from_u64(seed),
            server: Server::new(config, seed_bytes),
            creds,
            clients: Vec::new(),
            server_events: Vec::new(),
            client_events: Vec::new(),
        }
    }

    fn now(&self) -> Instant {
        self.sim.now()
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
        let c = Client::connect(Arc::new(config), self.now(), seed, resume);
        self.clients.push((client_addr(i), c));
        self.client_events.push(Vec::new());
        i
    }

    /// Moves every output onto the wire.
    fn flush(&mut self) {
        while let Some((to, d)) = self.server.poll_transmit() {
            // Only to an address a client holds now: a datagram to one where nobody listens
            // is gone, not kept for whoever takes the address later.
            if self.clients.iter().any(|(a, _)| *a == to) {
                self.sim.send(server_addr(), to, d);
            }
        }
        while let Some(e) = self.server.poll_event() {
            self.server_events.push(e);
        }
        for i in 0..self.clients.len() {
            while let Some(d) = self.clients[i].1.poll_transmit() {
                let from = self.clients[i].0;
                self.sim.send(from, server_addr(), d);
            }
            while let Some(e) = self.clients[i].1.poll_event() {
                self.client_events[i].push(e);
            }
        }
    }

    /// The next datagram in flight, taken off the wire undelivered (the clock moves to its
    /// arrival).
    fn intercept(&mut self) -> netsim::Datagram<SocketAddr> {
        match self.sim.step(None) {
            Some(netsim::Step::Deliver(d)) => d,
            other => panic!("no datagram in flight: {other:?}"),
        }
    }

    /// Drops every datagram in flight (the clock moves to the last one's arrival).
    fn drop_in_flight(&mut self) {
        while let Some(at) = self.sim.next_delivery() {
            self.sim.advance_to(at);
            while self.sim.deliver_due().is_some() {}
        }
    }

    fn deliver(&mut self, d: netsim::Datagram<SocketAddr>) {
        let now = self.now();
        if d.to == server_addr() {
            self.server
                .handle_datagram(now, d.from, &d.bytes, &self.creds);
        } else if let Some((_, c)) = self.clients.iter_mut().find(|(a, _)| *a == d.to) {
            c.handle_datagram(now, &d.bytes);
        }
    }

    /// Runs the network for `d` of virtual time.
    fn run(&mut self, d: Duration) {
        let end = self.now() + d;
        loop {
            self.flush();
            let deadline = [self.server.poll_timeout()]
                .into_iter()
                .flatten()
                .chain(self.clients.iter().filter_map(|(_, c)| c.poll_timeout()))
                .min();
            let next = deadline.into_iter().chain(self.sim.next_delivery()).min();
            if next.is_none_or(|n| n > end) {
                self.sim.advance_to(end);
                return;
            }
            if let Some(netsim::Step::Deliver(d)) = self.sim.step(deadline) {
                self.deliver(d);
                while let Some(d) = self.sim.deliver_due() {
                    self.deliver(d);
                }
            }
            let now = self.now();
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
    let hello = net.intercept();
    let (from, data) = (hello.from, hello.bytes);
    net.server
        .handle_datagram(net.sim.now(), from, &data, &net.creds);
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
            .handle_datagram(net.sim.now(), spoofed, &data, &net.creds);
    }
    assert_eq!(net.server.usage().handshakes, 0);
}

#[test]
fn a_first_client_hello_in_record_version_fe00_is_answered() {
    // mbedTLS 2.x sends its first ClientHello in a record of version 0xFE00.
    let mut net = Net::new(ServerConfig::default(), creds(1), 15);
    net.add_client(psk_client(0));
    net.flush();
    let hello = net.intercept();
    let (from, mut data) = (hello.from, hello.bytes);
    data[1..3].copy_from_slice(&[0xFE, 0x00]);
    net.server
        .handle_datagram(net.sim.now(), from, &data, &net.creds);
    let (_, hvr) = net.server.poll_transmit().expect("HelloVerifyRequest");
    assert_eq!(hvr[0], 22, "a handshake record");
    assert_eq!(hvr[13], 3, "HelloVerifyRequest");
    // The rest of the handshake proceeds as usual.
    net.clients[0].1.handle_datagram(net.sim.now(), &hvr);
    net.run(Duration::from_secs(2));
    assert!(net.clients[0].1.is_established());
}

#[test]
fn handshakes_survive_loss_reordering_and_duplication() {
    for seed in 0..12 {
        let mut net = Net::new(ServerConfig::default(), creds(8), seed);
        net.sim.faults = netsim::Faults {
            loss: 0.3,
            duplicate: 0.2,
            jitter: Duration::from_millis(400),
            ..quick_network()
        };
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
        net.sim.faults = quick_network();
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
    let now = net.sim.now();
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
        net.server
            .handle_datagram(net.sim.now(), from, &d, &net.creds);
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
    net.clients[1].1.reconnect(net.sim.now());
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
            ServerEvent::HandshakeFailed { failure, .. } => Some((
                failure.error.alert(),
                failure.identity.clone().unwrap_or_default(),
            )),
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
        Some(ClientEvent::Failed(f)) => {
            assert_eq!(
                *f,
                HandshakeError::ServerAlert(AlertDescription::UnknownPskIdentity)
            );
            assert_eq!(f.to_string(), "server: unknown PSK identity");
        }
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

/// A device certificate of X.509 version 1 (what `openssl x509 -req` makes without extensions),
/// pinned by its exact bytes: its CertificateVerify is checked with the key the certificate
/// holds, whatever its version (webpki reads only v3).
#[test]
fn a_pinned_version_1_device_certificate_is_accepted() {
    use rustls_pki_types::pem::PemObject;
    let cert = rustls_pki_types::CertificateDer::from_pem_slice(include_bytes!(
        "testdata/v1-device-cert.pem"
    ))
    .unwrap()
    .to_vec();
    let key = rustls_pki_types::PrivatePkcs8KeyDer::from_pem_slice(include_bytes!(
        "testdata/v1-device-key.pem"
    ))
    .unwrap();
    let device =
        Arc::new(OwnKey::from_pkcs8_der(key.secret_pkcs8_der(), vec![cert.clone()]).unwrap());
    let (scfg, mut creds, _) = ecdhe_setup(false);
    creds.keys.insert(cert, Arc::from("v1-device"));
    let server_spki = scfg.key.as_ref().unwrap().spki.clone();
    let mut net = Net::new(scfg, creds, 12);
    net.add_client(ClientConfig::with_key(
        device,
        ServerTrust::PinnedKey(server_spki),
    ));
    net.run(Duration::from_secs(3));
    assert!(net.clients[0].1.is_established(), "{:?}", net.server_events);
    echo_round_trip(&mut net, 0, "v1-device");
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

/// Handshakes that end leave their start time in the index the eviction uses; however many
/// end, the index stays within twice the most handshakes live at once (the table here is
/// never full, so no eviction ever prunes it).
#[test]
fn ended_handshakes_do_not_pile_up_in_the_eviction_index() {
    let mut net = Net::new(ServerConfig::default(), creds(4), 21);
    for i in 0..4 {
        net.add_client(psk_client(i));
    }
    net.run(Duration::from_secs(3));
    for round in 0..60 {
        for i in 0..4 {
            // A full handshake again each time (no resumption), as after a reboot.
            net.clients[i].1 = Client::connect(
                Arc::new(psk_client(i as u8)),
                net.sim.now(),
                [round; 32],
                None,
            );
        }
        net.run(Duration::from_secs(3));
        let usage = net.server.usage();
        // Four handshakes live at most: pruned whenever it passes 2 * 4 + 64.
        assert!(usage.by_start <= 2 * 4 + 65, "round {round}: {usage:?}");
    }
    assert!(net.clients.iter().all(|c| c.1.is_established()));
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

/// A flood of clients that return their cookie and then go silent must not keep a real
/// device out: a full handshake table gives up its oldest handshake instead of refusing.
#[test]
fn a_full_handshake_table_gives_way_to_a_new_device() {
    let mut cfg = ServerConfig::default();
    cfg.max_handshakes = 4;
    cfg.handshakes_per_source_per_sec = 1000;
    let mut net = Net::new(cfg, creds(8), 15);
    // Four clients return their cookie, so the server holds their handshakes, and vanish
    // before its flight reaches them.
    for i in 0..4u8 {
        net.add_client(psk_client(i));
    }
    // Bounded: a server that stops holding handshakes fails here instead of hanging.
    for _ in 0..1000 {
        if net.server.usage().handshakes >= 4 {
            break;
        }
        net.run(Duration::from_millis(1));
    }
    assert_eq!(net.server.usage().handshakes, 4);
    net.drop_in_flight();
    net.clients.clear();
    net.client_events.clear();
    // A real device arrives from elsewhere: it gets in at once, long before the stalled ones
    // would time out.
    let dev = net.add_client(psk_client(4));
    net.clients[dev].0 = "10.9.9.9:9".parse().unwrap();
    net.run(Duration::from_secs(2));
    assert!(net.clients[dev].1.is_established());
    assert_eq!(net.server.stats().handshakes_evicted, 1);
    assert_eq!(net.server.usage().handshakes, 3);
    echo_round_trip(&mut net, dev, "ep-4");
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

// ------------------------------------------------------- regressions from the range audit

/// The records of a datagram: (content type, epoch, sequence number).
fn record_headers(datagram: &[u8]) -> Vec<(u8, u16, u64)> {
    crate::record::split_records(datagram, 0)
        .map(|r| r.map(|r| (r.content_type, r.epoch, r.seq)).unwrap())
        .collect()
}

/// Rewrites the sequence number of the first record of a datagram.
fn set_first_record_seq(datagram: &mut [u8], seq: u64) {
    datagram[5..11].copy_from_slice(&seq.to_be_bytes()[2..]);
}

#[test]
fn a_second_hello_verify_request_is_answered_with_the_next_message_seq() {
    // The first cookie comes from one server instance and the second from another (a
    // restart, or a cookie secret that rotated twice): the client's third hello must take
    // message_seq 2, the number the server's ServerHello then uses.
    let now = Instant::now();
    let creds = creds(1);
    let from = client_addr(0);
    let mut first = Server::new(ServerConfig::default(), [1; 32]);
    let mut second = Server::new(ServerConfig::default(), [2; 32]);
    let mut client = Client::connect(Arc::new(psk_client(0)), now, [3; 32], None);
    let hello = client.poll_transmit().unwrap();
    first.handle_datagram(now, from, &hello, &creds);
    let (_, hvr) = first.poll_transmit().unwrap();
    client.handle_datagram(now, &hvr);
    // The hello with the first cookie reaches the other instance, which asks again.
    for _ in 0..8 {
        while let Some(d) = client.poll_transmit() {
            second.handle_datagram(now, from, &d, &creds);
        }
        while let Some((_, d)) = second.poll_transmit() {
            client.handle_datagram(now, &d);
        }
    }
    assert!(client.is_established());
    assert_eq!(second.stats().cookies_sent, 1);
    assert_eq!(second.usage().sessions, 1);
}

#[test]
fn a_hello_numbered_at_the_top_of_the_sequence_space_is_refused_not_wrapped() {
    // The server numbers its epoch-0 records from the ClientHello's record (RFC 6347
    // §4.2.1). A hello at 2^48 - 1 leaves no number for a second record: the flight must be
    // refused, not sent with numbers cut to 48 bits (0, 1, ...).
    use crate::record::MAX_SEQ;
    let now = Instant::now();
    let creds = creds(1);
    let from = client_addr(0);
    let mut server = Server::new(ServerConfig::default(), [5; 32]);
    let mut client = Client::connect(Arc::new(psk_client(0)), now, [6; 32], None);
    let mut hello = client.poll_transmit().unwrap();
    set_first_record_seq(&mut hello, MAX_SEQ);
    server.handle_datagram(now, from, &hello, &creds);
    let (_, hvr) = server.poll_transmit().unwrap();
    assert_eq!(record_headers(&hvr)[0].2, MAX_SEQ);
    client.handle_datagram(now, &hvr);
    let mut hello = client.poll_transmit().unwrap();
    set_first_record_seq(&mut hello, MAX_SEQ);
    server.handle_datagram(now, from, &hello, &creds);
    let mut sent = Vec::new();
    while let Some((_, d)) = server.poll_transmit() {
        sent.extend(record_headers(&d));
    }
    assert!(
        sent.iter()
            .all(|&(_, epoch, seq)| epoch != 0 || seq == MAX_SEQ),
        "{sent:?}"
    );
    let failed = std::iter::from_fn(|| server.poll_event()).any(|e| {
        matches!(e, ServerEvent::HandshakeFailed { failure, .. }
            if failure.error.alert() == AlertDescription::InternalError)
    });
    assert!(failed);
    assert_eq!(server.usage().handshakes, 0);
}

#[test]
fn huge_configured_timers_neither_panic_nor_fire() {
    // `Instant + Duration::MAX` panics; a timer meaning "never" must saturate instead.
    let timers = Timers {
        initial: Duration::MAX,
        max: Duration::MAX,
        handshake_timeout: Duration::MAX,
    };
    let mut cfg = ServerConfig::default();
    cfg.timers = timers;
    let mut net = Net::new(cfg, creds(1), 30);
    let mut client = psk_client(0);
    client.timers = timers;
    net.add_client(client);
    net.run(Duration::from_secs(2));
    assert!(net.clients[0].1.is_established());
    echo_round_trip(&mut net, 0, "ep-0");
    // A handshake left hanging waits, far in the future, without panicking on the way.
    let mut stalled = Client::connect(
        Arc::new(ClientConfig {
            timers,
            ..psk_client(0)
        }),
        net.sim.now(),
        [7; 32],
        None,
    );
    let at = stalled.poll_timeout().unwrap();
    assert!(at > net.sim.now() + Duration::from_secs(1 << 30));
    stalled.handle_timeout(net.sim.now() + Duration::from_secs(1 << 20));
    assert!(
        stalled.poll_transmit().is_some(),
        "the hello, not a retransmission"
    );
    assert!(stalled.poll_transmit().is_none());
    assert!(stalled.poll_event().is_none());
}

#[test]
fn a_server_connection_id_longer_than_supported_fails_the_handshake() {
    use crate::handshake::messages::ServerHello;
    use crate::handshake::{full_message, HandshakeType, ServerExtensions};
    use crate::record::{write_plaintext, ContentType, DTLS_1_2};
    let now = Instant::now();
    let mut cfg = psk_client(0);
    cfg.connection_id = Some(vec![1, 2]);
    let mut client = Client::connect(Arc::new(cfg), now, [8; 32], None);
    while client.poll_transmit().is_some() {}
    // RFC 9146 allows 255 bytes; this engine holds at most MAX_CID_LEN and cannot send
    // records with a longer one.
    let sh = ServerHello {
        server_version: DTLS_1_2,
        random: [5; 32],
        session_id: Vec::new(),
        cipher_suite: CipherSuite::PskAes128Ccm8.id(),
        compression_method: 0,
        extensions: ServerExtensions {
            present: true,
            connection_id: Some(vec![9; MAX_CID_LEN + 1]),
            ..Default::default()
        },
    }
    .encode()
    .unwrap();
    let frag = full_message(HandshakeType::ServerHello, 0, &sh).unwrap();
    let mut d = Vec::new();
    write_plaintext(ContentType::Handshake, DTLS_1_2, 0, 0, &frag, &mut d).unwrap();
    client.handle_datagram(now, &d);
    match client.poll_event() {
        Some(ClientEvent::Failed(f)) => {
            assert_eq!(f, HandshakeError::ServerConnectionIdTooLong);
            assert_eq!(f.alert(), AlertDescription::HandshakeFailure);
            assert!(f.to_string().contains("Connection ID"), "{f}");
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn issued_cids_name_the_node_and_a_record_tells_which() {
    let mut cfg = ServerConfig::default();
    cfg.cid_len = 6;
    cfg.cid_node = Some(42);
    let mut net = Net::new(cfg, creds(3), 77);
    for i in 0..3 {
        let mut client = psk_client(i);
        client.connection_id = Some(Vec::new());
        net.add_client(client);
    }
    net.run(Duration::from_secs(2));
    let cids: Vec<Vec<u8>> = (0..3)
        .map(|i| {
            net.clients[i]
                .1
                .session()
                .unwrap()
                .send_cid
                .unwrap()
                .as_bytes()
                .to_vec()
        })
        .collect();
    assert!(cids.iter().all(|c| c.len() == 6 && c[0] == 42), "{cids:?}");
    assert!(
        cids[0] != cids[1] && cids[1] != cids[2],
        "the rest is random"
    );
    echo_round_trip(&mut net, 0, "ep-0");

    // A tls12_cid record header (content type 25, DTLS 1.2, epoch 1, sequence 7), its CID,
    // length 3, and 3 bytes of (encrypted) fragment.
    let record = |cid: &[u8]| {
        let mut d = vec![25, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 7];
        d.extend_from_slice(cid);
        d.extend_from_slice(&[0, 3, 1, 2, 3]);
        d
    };
    assert_eq!(crate::server::cid_node(&record(&cids[1]), 6), Some(42));
    assert_eq!(
        crate::server::cid_node(&record(&[9, 1, 2, 3, 4, 5]), 6),
        Some(9)
    );
    // A record without a CID (a handshake, or an application_data record) names no node.
    let mut plain = record(&[]);
    plain[0] = 23;
    assert_eq!(crate::server::cid_node(&plain, 0), None);
    assert_eq!(crate::server::cid_node(&[25, 0xfe], 6), None, "truncated");

    // A client's first flight starts a handshake; a CID record or a truncated one does not.
    let mut client = Client::connect(
        std::sync::Arc::new(psk_client(0)),
        std::time::Instant::now(),
        [3; 32],
        None,
    );
    let hello = client.poll_transmit().unwrap();
    assert!(crate::server::starts_handshake(&hello));
    assert!(!crate::server::starts_handshake(&record(&cids[1])));
    assert!(!crate::server::starts_handshake(&hello[..12]));
}

proptest::proptest! {
    #[test]
    fn reading_a_datagram_s_cid_node_never_panics(
        data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80),
        cid_len in 0usize..40,
    ) {
        if let Some(node) = crate::server::cid_node(&data, cid_len) {
            proptest::prop_assert_eq!(data.first(), Some(&25));
            proptest::prop_assert_eq!(data.get(11), Some(&node));
        }
        if crate::server::starts_handshake(&data) {
            proptest::prop_assert_eq!(data.first(), Some(&22));
            proptest::prop_assert_eq!(data.get(13), Some(&1));
        }
    }
}

#[test]
fn a_configured_cid_length_above_the_cap_is_used_consistently() {
    // Issued CIDs are capped at MAX_CID_LEN; records must be split by the same length, or
    // every record carrying one is misread.
    let mut cfg = ServerConfig::default();
    cfg.cid_len = 40;
    let mut net = Net::new(cfg, creds(1), 31);
    let mut client = psk_client(0);
    client.connection_id = Some(Vec::new());
    net.add_client(client);
    net.run(Duration::from_secs(2));
    let cid = net.clients[0].1.session().unwrap().send_cid.unwrap();
    assert_eq!(cid.as_bytes().len(), MAX_CID_LEN);
    net.clients[0].0 = "10.9.9.9:1111".parse().unwrap();
    echo_round_trip(&mut net, 0, "ep-0");
}

#[test]
fn a_resent_final_flight_does_not_reuse_a_record_sequence_number() {
    // In an abbreviated handshake the client's Finished is the last flight. When the
    // server's flight arrives again, the client resends its own; those epoch-1 records used
    // to be numbered from a copy of the handshake's counter, so the next application record
    // took the same number: the same AEAD nonce under the same key, and a record the server
    // then dropped as a replay.
    let mut net = Net::new(ServerConfig::default(), creds(1), 40);
    net.add_client(psk_client(0));
    net.run(Duration::from_secs(2));
    net.clients[0].1.reconnect(net.sim.now());
    let from = net.clients[0].0;
    let now = net.sim.now();
    let mut from_server = Vec::new();
    let mut from_client = Vec::new();
    for _ in 0..4 {
        while let Some(d) = net.clients[0].1.poll_transmit() {
            net.server.handle_datagram(now, from, &d, &net.creds);
            from_client.push(d);
        }
        while let Some((_, d)) = net.server.poll_transmit() {
            net.clients[0].1.handle_datagram(now, &d);
            from_server.push(d);
        }
    }
    assert!(matches!(
        std::iter::from_fn(|| net.clients[0].1.poll_event()).last(),
        Some(ClientEvent::Connected { resumed: true, .. })
    ));
    // The server's last flight again, as a duplicating network delivers it.
    net.clients[0]
        .1
        .handle_datagram(now, from_server.last().unwrap());
    net.clients[0].1.send(b"up").unwrap();
    while let Some(d) = net.clients[0].1.poll_transmit() {
        net.server.handle_datagram(now, from, &d, &net.creds);
        from_client.push(d);
    }
    let mut epoch1: Vec<u64> = from_client
        .iter()
        .flat_map(|d| record_headers(d))
        .filter(|&(_, epoch, _)| epoch == 1)
        .map(|(_, _, seq)| seq)
        .collect();
    let sent = epoch1.len();
    epoch1.sort_unstable();
    epoch1.dedup();
    assert_eq!(
        epoch1.len(),
        sent,
        "an epoch-1 sequence number was used twice"
    );
    let got = std::iter::from_fn(|| net.server.poll_event())
        .any(|e| matches!(e, ServerEvent::Data { data, .. } if data == b"up"));
    assert!(got, "the data after the resent flight arrived");
}

/// A full handshake, then `reconnect` (which resumes), pumped by hand until the client has
/// sent its final flight: returns that flight, not yet delivered.
fn resume_until_the_clients_finished(net: &mut Net) -> Vec<Vec<u8>> {
    net.add_client(psk_client(0));
    net.run(Duration::from_secs(2));
    net.clients[0].1.reconnect(net.sim.now());
    let from = net.clients[0].0;
    let now = net.sim.now();
    for _ in 0..3 {
        if net.clients[0].1.is_established() {
            break;
        }
        while let Some(d) = net.clients[0].1.poll_transmit() {
            net.server.handle_datagram(now, from, &d, &net.creds);
        }
        while let Some((_, d)) = net.server.poll_transmit() {
            net.clients[0].1.handle_datagram(now, &d);
        }
    }
    assert!(net.clients[0].1.is_established());
    while let Some(e) = net.clients[0].1.poll_event() {
        net.client_events[0].push(e);
    }
    std::iter::from_fn(|| net.clients[0].1.poll_transmit()).collect()
}

#[test]
fn a_damaged_finished_in_a_resumed_handshake_is_dropped_and_recovered() {
    // The client finishes an abbreviated handshake first. If the server failed it because
    // the client's Finished arrived damaged, the client would count itself connected to a
    // server that is not; instead the record is dropped and retransmission recovers.
    let mut net = Net::new(ServerConfig::default(), creds(1), 41);
    let mut last = resume_until_the_clients_finished(&mut net);
    let d = last.last_mut().unwrap();
    let n = d.len();
    d[n - 1] ^= 0x40; // in the epoch-1 record's tag
    let from = net.clients[0].0;
    for d in &last {
        net.server
            .handle_datagram(net.sim.now(), from, d, &net.creds);
    }
    net.flush();
    assert!(
        !net.server_events
            .iter()
            .any(|e| matches!(e, ServerEvent::HandshakeFailed { .. })),
        "{:?}",
        net.server_events
    );
    // The server's flight timer fires, the client answers it with its flight again.
    net.run(Duration::from_secs(3));
    assert_eq!(net.server.usage().handshakes, 0);
    assert_eq!(net.server.stats().resumptions, 1);
    echo_round_trip(&mut net, 0, "ep-0");
}

#[test]
fn a_fatal_alert_before_a_resumption_is_confirmed_closes_the_client() {
    use crate::alert::Alert;
    use crate::record::{write_plaintext, ContentType, DTLS_1_2};
    let mut net = Net::new(ServerConfig::default(), creds(1), 42);
    resume_until_the_clients_finished(&mut net);
    // The server failed its side and says so, unencrypted as its alerts before the
    // client's Finished are.
    let mut alert = Vec::new();
    let fatal = Alert::fatal(AlertDescription::HandshakeFailure).encode();
    write_plaintext(ContentType::Alert, DTLS_1_2, 0, 9, &fatal, &mut alert).unwrap();
    net.clients[0].1.handle_datagram(net.sim.now(), &alert);
    assert!(!net.clients[0].1.is_established());
    assert!(matches!(
        net.clients[0].1.poll_event(),
        Some(ClientEvent::Closed(AlertDescription::HandshakeFailure))
    ));
    // Once the server's data confirmed the session, an unencrypted alert is just noise.
    let mut net = Net::new(ServerConfig::default(), creds(1), 43);
    let last = resume_until_the_clients_finished(&mut net);
    let from = net.clients[0].0;
    for d in &last {
        net.server
            .handle_datagram(net.sim.now(), from, d, &net.creds);
    }
    net.run(Duration::from_secs(1));
    echo_round_trip(&mut net, 0, "ep-0");
    net.clients[0].1.handle_datagram(net.sim.now(), &alert);
    assert!(net.clients[0].1.is_established());
    echo_round_trip(&mut net, 0, "ep-0");
}

/// The fields of a saved session, to write back altered.
#[derive(Clone)]
struct Saved {
    id: u64,
    peer: String,
    check: Vec<u8>,
    master: Vec<u8>,
    ems: bool,
    suite: u16,
    read: Vec<u8>,
    write: Vec<u8>,
    epoch: u64,
    write_seq: u64,
    top: u64,
    bitmap: u64,
    send_cid: Option<Vec<u8>>,
    recv_cid: Option<Vec<u8>>,
    principal: String,
    version: u8,
    trailing: Vec<u8>,
}

impl Saved {
    fn read(bytes: &[u8]) -> Self {
        let mut d = minicbor::Decoder::new(bytes);
        assert_eq!(d.array().unwrap(), Some(6));
        let id = d.u64().unwrap();
        let peer = d.str().unwrap().to_string();
        let check = d.bytes().unwrap().to_vec();
        let master = d.bytes().unwrap().to_vec();
        let ems = d.bool().unwrap();
        assert_eq!(d.array().unwrap(), Some(11));
        let suite = d.u16().unwrap();
        let read = d.bytes().unwrap().to_vec();
        let write = d.bytes().unwrap().to_vec();
        let epoch = d.u64().unwrap();
        let write_seq = d.u64().unwrap();
        let top = d.u64().unwrap();
        let bitmap = d.u64().unwrap();
        let mut cid = || {
            if d.datatype().unwrap() == minicbor::data::Type::Null {
                d.skip().unwrap();
                None
            } else {
                Some(d.bytes().unwrap().to_vec())
            }
        };
        let send_cid = cid();
        let recv_cid = cid();
        let principal = d.str().unwrap().to_string();
        let version = d.u8().unwrap();
        Self {
            id,
            peer,
            check,
            master,
            ems,
            suite,
            read,
            write,
            epoch,
            write_seq,
            top,
            bitmap,
            send_cid,
            recv_cid,
            principal,
            version,
            trailing: Vec::new(),
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        let mut e = minicbor::Encoder::new(&mut buf);
        e.array(6).unwrap();
        e.u64(self.id).unwrap();
        e.str(&self.peer).unwrap();
        e.bytes(&self.check).unwrap();
        e.bytes(&self.master).unwrap();
        e.bool(self.ems).unwrap();
        e.array(11).unwrap();
        e.u16(self.suite).unwrap();
        e.bytes(&self.read).unwrap();
        e.bytes(&self.write).unwrap();
        e.u64(self.epoch).unwrap();
        e.u64(self.write_seq).unwrap();
        e.u64(self.top).unwrap();
        e.u64(self.bitmap).unwrap();
        for cid in [&self.send_cid, &self.recv_cid] {
            match cid {
                Some(c) => e.bytes(c).unwrap(),
                None => e.null().unwrap(),
            };
        }
        e.str(&self.principal).unwrap();
        e.u8(self.version).unwrap();
        buf.extend_from_slice(&self.trailing);
        buf
    }
}

#[test]
fn restored_sessions_are_refused_outside_their_ranges() {
    use crate::server::MAX_CONN_ID;
    use crate::session::RestoreError;
    let mut net = Net::new(ServerConfig::default(), creds(1), 32);
    let mut cfg = psk_client(0);
    cfg.connection_id = Some(vec![1, 2, 3]);
    net.add_client(cfg);
    net.run(Duration::from_secs(2));
    let (conn, bytes) = net.server.save_sessions().pop().unwrap();
    let good = Saved::read(&bytes);
    assert_eq!(good.bytes(), bytes, "the test's own encoding matches");
    let restore =
        |s: &Saved| Server::new(ServerConfig::default(), [9; 32]).restore_session(&s.bytes());
    assert_eq!(restore(&good).unwrap(), conn);

    let out_of_range = |s: Saved, field: &str| match restore(&s) {
        Err(RestoreError::OutOfRange { field: f, .. }) => assert_eq!(f, field),
        other => panic!("{field}: {other:?}"),
    };
    // Before the range check a handle of u64::MAX overflowed `id + 1` (a panic in debug
    // builds, a wrapped handle counter in release ones).
    out_of_range(
        Saved {
            id: u64::MAX,
            ..good.clone()
        },
        "connection handle",
    );
    out_of_range(
        Saved {
            id: MAX_CONN_ID + 1,
            ..good.clone()
        },
        "connection handle",
    );
    out_of_range(
        Saved {
            id: 0,
            ..good.clone()
        },
        "connection handle",
    );
    out_of_range(
        Saved {
            epoch: 0,
            ..good.clone()
        },
        "epoch",
    );
    out_of_range(
        Saved {
            write_seq: 1 << 48,
            ..good.clone()
        },
        "write_seq",
    );
    out_of_range(
        Saved {
            top: u64::MAX,
            ..good.clone()
        },
        "replay window top",
    );
    out_of_range(
        Saved {
            read: vec![0; 51],
            ..good.clone()
        },
        "keys length",
    );
    out_of_range(
        Saved {
            send_cid: Some(vec![0; MAX_CID_LEN + 1]),
            ..good.clone()
        },
        "send_cid length",
    );
    out_of_range(
        Saved {
            recv_cid: Some(vec![0; 255]),
            ..good.clone()
        },
        "recv_cid length",
    );
    // A CID of another length than this server issues could never be found by its records.
    out_of_range(
        Saved {
            recv_cid: Some(vec![7; 4]),
            ..good.clone()
        },
        "recv_cid length",
    );
    out_of_range(
        Saved {
            principal: "p".repeat(5000),
            ..good.clone()
        },
        "principal length",
    );
    assert!(matches!(
        restore(&Saved {
            epoch: 1 << 16,
            ..good.clone()
        }),
        Err(RestoreError::Decode(_))
    ));
    assert!(matches!(
        restore(&Saved {
            trailing: vec![0],
            ..good.clone()
        }),
        Err(RestoreError::Trailing(1))
    ));

    // The handle and the CID may each belong to one session only.
    let mut server = Server::new(ServerConfig::default(), [9; 32]);
    server.restore_session(&bytes).unwrap();
    assert!(matches!(
        server.restore_session(&bytes),
        Err(RestoreError::InUse("connection handle"))
    ));
    assert!(matches!(
        server.restore_session(
            &Saved {
                id: good.id + 1,
                ..good.clone()
            }
            .bytes()
        ),
        Err(RestoreError::InUse("connection ID"))
    ));

    // The highest handle in range restores, and new handshakes still get handles after it.
    let mut server = Server::new(ServerConfig::default(), [9; 32]);
    let top = Saved {
        id: MAX_CONN_ID,
        ..good.clone()
    };
    assert_eq!(
        server.restore_session(&top.bytes()).unwrap(),
        ConnId(MAX_CONN_ID)
    );
    net.server = server;
    net.server_events.clear();
    let i = net.add_client(psk_client(0));
    net.run(Duration::from_secs(2));
    assert!(net.clients[i].1.is_established());
    assert_eq!(net.conn_of("ep-0"), ConnId(MAX_CONN_ID + 1));
}

mod validity;

mod props {
    use super::*;
    use proptest::prelude::*;

    /// Real datagrams of a PSK and an ECDHE handshake, to mutate.
    pub(super) fn corpus() -> &'static [Vec<u8>] {
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
            out.extend(net.sim.sent().iter().map(|s| s.bytes.clone()));
            net.sim.clear_sent();
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

/// Property tests through the whole engine, both roles, against what a hostile network can
/// send: nothing a device sends may stop the server. Every case runs in virtual
/// time and drains every output. The properties: no panic; the server's tables stay within
/// their bounds; afterwards the same server instance still completes a handshake with a
/// genuine PSK device and carries its data both ways; and a handshake whose flight was
/// tampered with either completes or ends with an event (never hangs, never half-succeeds).
mod robustness {
    use super::*;
    use crate::record::Cid;
    use crate::record::MAX_SEQ;
    use proptest::prelude::*;
    use proptest::sample::Index;

    /// The length field of a generated record: right, off by a little, or anything.
    #[derive(Debug, Clone)]
    enum Length {
        Exact,
        Off(i16),
        Raw(u16),
    }

    /// A record whose header fields are the ones a fuzzer would pick: the real content
    /// types and epochs and random ones, sequence numbers at the edges of their range.
    #[derive(Debug, Clone)]
    struct RecordSpec {
        content_type: u8,
        version: u16,
        epoch: u16,
        seq: u64,
        /// Written after the sequence number when the type is `tls12_cid`.
        cid: Vec<u8>,
        length: Length,
        payload: Vec<u8>,
    }

    impl RecordSpec {
        fn write(&self, cid: Option<&[u8]>, out: &mut Vec<u8>) {
            out.push(self.content_type);
            out.extend_from_slice(&self.version.to_be_bytes());
            out.extend_from_slice(&self.epoch.to_be_bytes());
            out.extend_from_slice(&self.seq.to_be_bytes()[2..]);
            if self.content_type == 25 {
                out.extend_from_slice(cid.unwrap_or(&self.cid));
            }
            let len = self.payload.len() as i64;
            let field = match self.length {
                Length::Exact => len,
                Length::Off(d) => len + i64::from(d),
                Length::Raw(v) => i64::from(v),
            };
            out.extend_from_slice(&(field.clamp(0, 0xffff) as u16).to_be_bytes());
            out.extend_from_slice(&self.payload);
        }
    }

    /// A handshake-looking payload: a header with a real or random type and lengths that
    /// agree or not, then some data; sometimes two fragments in one record.
    fn handshake_payload() -> impl Strategy<Value = Vec<u8>> {
        let header = (
            prop_oneof![
                Just(1u8),
                Just(2),
                Just(3),
                Just(11),
                Just(12),
                Just(14),
                Just(16),
                Just(20),
                any::<u8>()
            ],
            prop_oneof![0u32..64, 0u32..0x4100, Just(0xff_ffff)],
            prop_oneof![0u16..4, any::<u16>()],
            prop_oneof![
                Just(0u32),
                0u32..64,
                any::<u32>().prop_map(|v| v & 0xff_ffff)
            ],
            proptest::collection::vec(any::<u8>(), 0..80),
            any::<bool>(),
        );
        proptest::collection::vec(header, 1..3).prop_map(|frags| {
            let mut out = Vec::new();
            for (msg_type, length, seq, offset, data, consistent) in frags {
                let frag_len = if consistent {
                    data.len() as u32
                } else {
                    length
                };
                out.push(msg_type);
                out.extend_from_slice(&length.to_be_bytes()[1..]);
                out.extend_from_slice(&seq.to_be_bytes());
                out.extend_from_slice(&offset.to_be_bytes()[1..]);
                out.extend_from_slice(&frag_len.to_be_bytes()[1..]);
                out.extend_from_slice(&data);
            }
            out
        })
    }

    fn record_spec() -> impl Strategy<Value = RecordSpec> {
        (
            prop_oneof![
                Just(20u8),
                Just(21),
                Just(22),
                Just(23),
                Just(25),
                any::<u8>()
            ],
            prop_oneof![Just(0xfefd_u16), Just(0xfeff), any::<u16>()],
            prop_oneof![Just(0u16), Just(1), Just(2), any::<u16>()],
            prop_oneof![Just(0u64), 0u64..8, Just(MAX_SEQ), 0..=MAX_SEQ],
            proptest::collection::vec(any::<u8>(), 0..8),
            prop_oneof![
                4 => Just(Length::Exact),
                1 => (-20i16..20).prop_map(Length::Off),
                1 => any::<u16>().prop_map(Length::Raw),
            ],
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..120),
                handshake_payload(),
                Just(vec![1]),
                Just(vec![2, 40]),
                // Longer than any record may be: the oversized case.
                Just(vec![0; 16_400]),
            ],
        )
            .prop_map(
                |(content_type, version, epoch, seq, cid, length, payload)| RecordSpec {
                    content_type,
                    version,
                    epoch,
                    seq,
                    cid,
                    length,
                    payload,
                },
            )
    }

    /// One hostile datagram for the server.
    #[derive(Debug, Clone)]
    enum Hostile {
        /// Random bytes.
        Junk(Vec<u8>),
        /// Records that look well formed.
        Records(Vec<RecordSpec>),
        /// A datagram of a real handshake (another server's) with bytes replaced, maybe cut.
        Mutated {
            which: Index,
            edits: Vec<(Index, u8)>,
            cut: Option<Index>,
        },
        /// A genuine ClientHello that earns its cookie, so a handshake slot is taken and the
        /// records that follow reach the handshake state machine.
        Cookied { ecdhe: bool, then: Vec<RecordSpec> },
        /// Records carrying the live session's Connection ID, which reach session lookup.
        WithSessionCid(Vec<RecordSpec>),
    }

    fn hostile() -> impl Strategy<Value = Hostile> {
        let records = || proptest::collection::vec(record_spec(), 1..4);
        prop_oneof![
            2 => proptest::collection::vec(any::<u8>(), 0..200).prop_map(Hostile::Junk),
            4 => records().prop_map(Hostile::Records),
            3 => (
                any::<Index>(),
                proptest::collection::vec((any::<Index>(), any::<u8>()), 1..4),
                proptest::option::of(any::<Index>()),
            )
                .prop_map(|(which, edits, cut)| Hostile::Mutated { which, edits, cut }),
            2 => (any::<bool>(), proptest::collection::vec(record_spec(), 0..4))
                .prop_map(|(ecdhe, then)| Hostile::Cookied { ecdhe, then }),
            1 => records().prop_map(Hostile::WithSessionCid),
        ]
    }

    /// How long virtual time runs on after a step: often not at all, sometimes past a
    /// retransmission, now and then past the handshake timeout.
    fn pause() -> impl Strategy<Value = u64> {
        prop_oneof![3 => Just(0u64), 3 => 0u64..3_000, 1 => Just(125_000)]
    }

    fn records_bytes(specs: &[RecordSpec], cid: Option<&[u8]>) -> Vec<u8> {
        let mut out = Vec::new();
        for r in specs {
            r.write(cid, &mut out);
        }
        out
    }

    /// Drains what the server says: transmits go nowhere, events are kept.
    fn drain(net: &mut Net) {
        while net.server.poll_transmit().is_some() {}
        while let Some(e) = net.server.poll_event() {
            net.server_events.push(e);
        }
    }

    /// Sends a genuine ClientHello from `from` through the cookie exchange; afterwards the
    /// server holds a handshake for `from`.
    fn cookied_hello(net: &mut Net, from: SocketAddr, client: ClientConfig) {
        let seed: [u8; 32] = rand::Rng::random(&mut net.rng);
        let mut c = Client::connect(Arc::new(client), net.sim.now(), seed, None);
        for _ in 0..2 {
            while let Some(d) = c.poll_transmit() {
                net.server
                    .handle_datagram(net.sim.now(), from, &d, &net.creds);
            }
            while let Some((to, d)) = net.server.poll_transmit() {
                if to == from {
                    c.handle_datagram(net.sim.now(), &d);
                }
            }
        }
        drain(net);
    }

    fn check_bounds(net: &Net, cfg: &ServerConfig) -> Result<(), TestCaseError> {
        let u = net.server.usage();
        prop_assert!(u.handshakes <= cfg.max_handshakes, "{u:?}");
        prop_assert!(u.sessions <= cfg.max_sessions, "{u:?}");
        prop_assert!(u.by_addr <= u.sessions && u.by_cid <= u.sessions, "{u:?}");
        prop_assert_eq!(u.timers, u.handshakes);
        Ok(())
    }

    /// What a device whose handshake was tampered with ended up with.
    fn settled(events: &[ClientEvent], established: bool) -> bool {
        established
            || events
                .iter()
                .any(|e| matches!(e, ClientEvent::Failed(_) | ClientEvent::Closed(_)))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        /// (a) Server: random bytes, well-formed-looking records, truncated and oversized
        /// records, mutated real datagrams, hellos that earn a cookie and then send junk, and
        /// records carrying a live session's CID, from four addresses (one of them the live
        /// session's), with time advancing. Afterwards the live session still carries data,
        /// a new device handshakes from one of those addresses, and stalled handshakes are
        /// gone once the timeout passes.
        #[test]
        fn server_survives_hostile_datagrams_and_still_serves(
            steps in proptest::collection::vec((0usize..4, hostile(), pause()), 1..32),
            seed in any::<u64>(),
        ) {
            let corpus = props::corpus();
            let (mut cfg, mut creds, device_key) = ecdhe_setup(false);
            creds.psk = super::creds(3).psk;
            cfg.max_handshakes = 16;
            let bounds = cfg.clone();
            let mut net = Net::new(cfg, creds, seed);
            let mut live = psk_client(0);
            live.connection_id = Some(vec![0xaa]);
            net.add_client(live);
            net.run(Duration::from_secs(2));
            prop_assert!(net.clients[0].1.is_established());
            let cid = net.clients[0].1.session().and_then(|s| s.send_cid);
            drain(&mut net);

            for (source, input, pause) in steps {
                let from = client_addr(source);
                let datagram = match input {
                    Hostile::Junk(bytes) => Some(bytes),
                    Hostile::Records(specs) => Some(records_bytes(&specs, None)),
                    Hostile::Mutated { which, edits, cut } => {
                        let mut d = which.get(corpus).clone();
                        if !d.is_empty() {
                            for (at, byte) in edits {
                                let i = at.index(d.len());
                                d[i] = byte;
                            }
                            if let Some(cut) = cut {
                                d.truncate(cut.index(d.len()));
                            }
                        }
                        Some(d)
                    }
                    Hostile::Cookied { ecdhe, then } => {
                        let client = if ecdhe {
                            ClientConfig::with_key(device_key.clone(), ServerTrust::Unverified)
                        } else {
                            psk_client(2)
                        };
                        let before = net.server.stats();
                        cookied_hello(&mut net, from, client);
                        // The lever works: the hello got past the cookie.
                        let after = net.server.stats();
                        prop_assert!(
                            after.handshakes_started + after.handshakes_refused
                                > before.handshakes_started + before.handshakes_refused
                        );
                        Some(records_bytes(&then, None))
                    }
                    Hostile::WithSessionCid(mut specs) => {
                        for s in &mut specs {
                            s.content_type = 25;
                        }
                        Some(records_bytes(&specs, cid.as_ref().map(Cid::as_bytes)))
                    }
                };
                if let Some(d) = datagram {
                    net.server.handle_datagram(net.sim.now(), from, &d, &net.creds);
                }
                drain(&mut net);
                check_bounds(&net, &bounds)?;
                if pause > 0 {
                    net.sim.advance(Duration::from_millis(pause));
                    net.server.handle_timeout(net.sim.now());
                    drain(&mut net);
                    check_bounds(&net, &bounds)?;
                }
            }
            // The live device's session: nothing hostile could end it or steal it.
            net.drop_in_flight();
            echo_round_trip(&mut net, 0, "ep-0");
            // A new device, from an address the hostile input came from.
            let i = net.add_client(psk_client(1));
            prop_assert_eq!(net.clients[i].0, client_addr(1));
            net.run(Duration::from_secs(10));
            prop_assert!(net.clients[i].1.is_established(), "{:?}", net.server.stats());
            echo_round_trip(&mut net, i, "ep-1");
            // Stalled hostile handshakes hold their slot only until the timeout.
            net.run(Duration::from_secs(200));
            prop_assert_eq!(net.server.usage().handshakes, 0);
            prop_assert_eq!(net.server.usage().timers, 0);
        }

        /// (a) Client: hostile datagrams "from the server" interleaved in virtual time with a
        /// genuine handshake and the data after it, at any stage. The client never panics,
        /// ends established or with an event, and a reconnect (if it failed) completes and
        /// carries data.
        #[test]
        fn client_survives_hostile_datagrams_and_still_connects(
            steps in proptest::collection::vec(
                (
                    prop_oneof![0u64..15, 0u64..5_000],
                    prop_oneof![
                        proptest::collection::vec(any::<u8>(), 0..200),
                        proptest::collection::vec(record_spec(), 1..4)
                            .prop_map(|r| records_bytes(&r, None)),
                        (any::<Index>(), any::<Index>(), any::<u8>()).prop_map(|(w, at, b)| {
                            let mut d = w.get(props::corpus()).clone();
                            if !d.is_empty() {
                                let i = at.index(d.len());
                                d[i] = b;
                            }
                            d
                        }),
                    ],
                ),
                1..24,
            ),
            with_cid in any::<bool>(),
            seed in any::<u64>(),
        ) {
            let mut net = Net::new(ServerConfig::default(), creds(1), seed);
            let mut cfg = psk_client(0);
            if with_cid {
                cfg.connection_id = Some(vec![0xbb, 0xcc]);
            }
            net.add_client(cfg);
            for (at, bytes) in steps {
                net.sim
                    .send_after(server_addr(), client_addr(0), bytes, Duration::from_millis(at));
            }
            net.run(Duration::from_secs(6));
            if net.clients[0].1.is_established() {
                // Data right after the hostile input: the session is intact.
                echo_round_trip(&mut net, 0, "ep-0");
            }
            net.run(Duration::from_secs(300));
            let established = net.clients[0].1.is_established();
            prop_assert!(settled(&net.client_events[0], established));
            if !established {
                net.clients[0].1.reconnect(net.sim.now());
                net.run(Duration::from_secs(10));
                prop_assert!(net.clients[0].1.is_established());
            }
            echo_round_trip(&mut net, 0, "ep-0");
        }
    }

    // ------------------------------------------------------------- tampered transcripts

    /// What happens to one flight of a real handshake.
    #[derive(Debug, Clone)]
    enum Tamper {
        Flip {
            which: Index,
            at: Index,
            mask: u8,
        },
        Truncate {
            which: Index,
            keep: Index,
        },
        Duplicate {
            which: Index,
            later_ms: u64,
        },
        /// The flight's datagrams in reverse order.
        Reverse,
        /// One datagram overtaken by later flights.
        Delay {
            which: Index,
            ms: u64,
        },
        Drop {
            which: Index,
        },
        Append {
            which: Index,
            junk: Vec<u8>,
        },
        /// A stretch of one datagram replaced by random bytes.
        Overwrite {
            which: Index,
            at: Index,
            bytes: Vec<u8>,
        },
    }

    fn tamper() -> impl Strategy<Value = Tamper> {
        prop_oneof![
            4 => (any::<Index>(), any::<Index>(), 1u8..=255)
                .prop_map(|(which, at, mask)| Tamper::Flip { which, at, mask }),
            2 => (any::<Index>(), any::<Index>())
                .prop_map(|(which, keep)| Tamper::Truncate { which, keep }),
            2 => (any::<Index>(), 0u64..3_000)
                .prop_map(|(which, later_ms)| Tamper::Duplicate { which, later_ms }),
            1 => Just(Tamper::Reverse),
            2 => (any::<Index>(), 1u64..5_000).prop_map(|(which, ms)| Tamper::Delay { which, ms }),
            1 => any::<Index>().prop_map(|which| Tamper::Drop { which }),
            1 => (any::<Index>(), proptest::collection::vec(any::<u8>(), 1..40))
                .prop_map(|(which, junk)| Tamper::Append { which, junk }),
            2 => (any::<Index>(), any::<Index>(), proptest::collection::vec(any::<u8>(), 1..16))
                .prop_map(|(which, at, bytes)| Tamper::Overwrite { which, at, bytes }),
        ]
    }

    impl Tamper {
        /// Applies to a flight given as (delay ms, datagram) pairs.
        fn apply(&self, flight: &mut Vec<(u64, Vec<u8>)>) {
            if flight.is_empty() {
                return;
            }
            let n = flight.len();
            match self {
                Tamper::Flip { which, at, mask } => {
                    let d = &mut flight[which.index(n)].1;
                    if !d.is_empty() {
                        let i = at.index(d.len());
                        d[i] ^= mask;
                    }
                }
                Tamper::Truncate { which, keep } => {
                    let d = &mut flight[which.index(n)].1;
                    let keep = keep.index(d.len().max(1));
                    d.truncate(keep);
                }
                Tamper::Duplicate { which, later_ms } => {
                    let (ms, d) = flight[which.index(n)].clone();
                    flight.push((ms + later_ms, d));
                }
                Tamper::Reverse => flight.reverse(),
                Tamper::Delay { which, ms } => flight[which.index(n)].0 += ms,
                Tamper::Drop { which } => {
                    flight.remove(which.index(n));
                }
                Tamper::Append { which, junk } => flight[which.index(n)].1.extend(junk),
                Tamper::Overwrite { which, at, bytes } => {
                    let d = &mut flight[which.index(n)].1;
                    if !d.is_empty() {
                        let start = at.index(d.len());
                        for (dst, src) in d[start..].iter_mut().zip(bytes) {
                            *dst = *src;
                        }
                    }
                }
            }
        }
    }

    /// One device and one server on the shared simulated network, every flight (the datagrams
    /// one side emits between two polls, retransmissions included) numbered, and one of them
    /// tampered with: the tampering decides each datagram's delay, the network nothing else.
    struct Duo {
        net: netsim::Net<SocketAddr>,
        server: Server,
        creds: Creds,
        client: Client,
        addr: SocketAddr,
        flights: usize,
        target: Option<(usize, Tamper)>,
        server_events: Vec<ServerEvent>,
        client_events: Vec<ClientEvent>,
    }

    impl Duo {
        fn send(&mut self, to_server: bool, batch: Vec<Vec<u8>>) {
            if batch.is_empty() {
                return;
            }
            let mut flight: Vec<(u64, Vec<u8>)> = batch.into_iter().map(|d| (1, d)).collect();
            if let Some((k, tamper)) = &self.target {
                if *k == self.flights {
                    tamper.apply(&mut flight);
                }
            }
            self.flights += 1;
            let (from, to) = if to_server {
                (self.addr, server_addr())
            } else {
                (server_addr(), self.addr)
            };
            for (ms, d) in flight {
                self.net.send_after(from, to, d, Duration::from_millis(ms));
            }
        }

        fn flush(&mut self) {
            let mut batch = Vec::new();
            while let Some((to, d)) = self.server.poll_transmit() {
                if to == self.addr {
                    batch.push(d);
                }
            }
            self.send(false, batch);
            let batch: Vec<_> = std::iter::from_fn(|| self.client.poll_transmit()).collect();
            self.send(true, batch);
            self.server_events
                .extend(std::iter::from_fn(|| self.server.poll_event()));
            self.client_events
                .extend(std::iter::from_fn(|| self.client.poll_event()));
        }

        fn run(&mut self, d: Duration) {
            let end = self.net.now() + d;
            loop {
                self.flush();
                let next = [
                    self.net.next_delivery(),
                    self.server.poll_timeout(),
                    self.client.poll_timeout(),
                ]
                .into_iter()
                .flatten()
                .min()
                .filter(|t| *t <= end);
                let Some(at) = next else {
                    self.net.advance_to(end);
                    return;
                };
                self.net.advance_to(at);
                let now = self.net.now();
                while let Some(d) = self.net.deliver_due() {
                    if d.to == server_addr() {
                        self.server
                            .handle_datagram(now, d.from, &d.bytes, &self.creds);
                    } else {
                        self.client.handle_datagram(now, &d.bytes);
                    }
                }
                if self.server.poll_timeout().is_some_and(|t| t <= now) {
                    self.server.handle_timeout(now);
                }
                if self.client.poll_timeout().is_some_and(|t| t <= now) {
                    self.client.handle_timeout(now);
                }
            }
        }

        /// Data both ways on the established session.
        fn echo(&mut self) -> Result<(), TestCaseError> {
            let conn = self
                .server_events
                .iter()
                .rev()
                .find_map(|e| match e {
                    ServerEvent::Established { conn, .. } => Some(*conn),
                    _ => None,
                })
                .ok_or_else(|| TestCaseError::fail("no session on the server"))?;
            self.client
                .send(b"up")
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            self.server
                .send(conn, b"down")
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            self.run(Duration::from_secs(1));
            let up = self.server_events.iter().any(
                |e| matches!(e, ServerEvent::Data { conn: c, data } if *c == conn && data == b"up"),
            );
            let down = self
                .client_events
                .iter()
                .any(|e| matches!(e, ClientEvent::Data(d) if d == b"down"));
            prop_assert!(up && down, "up {} down {}", up, down);
            Ok(())
        }
    }

    /// A handshake in which flight `k` (counted from the first ClientHello, both directions)
    /// is tampered with, run until every timer has expired: the device ends established
    /// (and then data flows) or with a failure event, the server holds no handshake, and a
    /// reconnect then succeeds against the same server.
    fn tampered_handshake(
        client: ClientConfig,
        server: ServerConfig,
        creds: Creds,
        resume_first: bool,
        k: usize,
        tamper: Tamper,
        seed: u64,
    ) -> Result<(), TestCaseError> {
        let net = netsim::Net::new(seed);
        let now = net.now();
        let client = Arc::new(client);
        let mut duo = Duo {
            net,
            server: Server::new(server, seed.to_le_bytes().repeat(4).try_into().unwrap()),
            creds,
            client: Client::connect(client.clone(), now, [seed as u8; 32], None),
            addr: client_addr(0),
            flights: 0,
            target: None,
            server_events: Vec::new(),
            client_events: Vec::new(),
        };
        if resume_first {
            // A clean full handshake, then the tampering hits the abbreviated one.
            duo.run(Duration::from_secs(2));
            prop_assert!(duo.client.is_established());
            duo.client.reconnect(duo.net.now());
        }
        duo.target = Some((duo.flights + k, tamper));
        duo.run(Duration::from_secs(300));
        // Only the handshake is tampered with; what follows is a clean network.
        duo.target = None;
        let established = duo.client.is_established();
        prop_assert!(
            settled(&duo.client_events, established),
            "neither established nor failed: {:?}",
            duo.client_events
        );
        prop_assert_eq!(duo.server.usage().handshakes, 0);
        if established {
            duo.echo()?;
        }
        duo.client.reconnect(duo.net.now());
        duo.run(Duration::from_secs(10));
        prop_assert!(duo.client.is_established(), "{:?}", duo.client_events);
        duo.echo()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(192))]

        /// (b) PSK: every suite, with and without Connection ID, full and resumed, whole
        /// flights and (with a small datagram size) flights split over several datagrams.
        #[test]
        fn a_tampered_psk_flight_fails_cleanly_or_completes(
            k in 0usize..8,
            tamper in tamper(),
            cbc in any::<bool>(),
            cid in any::<bool>(),
            small_datagrams in any::<bool>(),
            resume in any::<bool>(),
            seed in any::<u64>(),
        ) {
            let mut client = psk_client(0);
            client.suites = vec![if cbc {
                CipherSuite::PskAes128CbcSha256
            } else {
                CipherSuite::PskAes128Ccm8
            }];
            if cid {
                client.connection_id = Some(vec![0xcd]);
            }
            let mut server = ServerConfig::default();
            if small_datagrams {
                // Room for the ClientHello whole (the server takes it only unfragmented),
                // too little for the server's first flight in one datagram.
                client.max_datagram = 120;
                server.max_datagram = 120;
            }
            tampered_handshake(client, server, creds(1), resume, k, tamper, seed)?;
        }
    }

    proptest! {
        // ECDSA and ECDH on P-256 cost milliseconds each in a debug build: fewer cases.
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// (b) ECDHE-ECDSA with raw public keys, flights fragmented over small datagrams.
        #[test]
        fn a_tampered_ecdhe_flight_fails_cleanly_or_completes(
            k in 0usize..8,
            tamper in tamper(),
            seed in any::<u64>(),
        ) {
            let (server, creds, key) = ecdhe_setup(false);
            let server_spki = server.key.as_ref().unwrap().spki.clone();
            let mut client = ClientConfig::with_key(key, ServerTrust::PinnedKey(server_spki));
            client.max_datagram = 200;
            tampered_handshake(client, server, creds, false, k, tamper, seed)?;
        }
    }
}

#[test]
fn a_node_restores_only_sessions_whose_connection_id_carries_its_byte() {
    let mut cfg = ServerConfig::default();
    cfg.cid_node = Some(7);
    let mut net = Net::new(cfg.clone(), creds(1), 6);
    let mut client = psk_client(0);
    client.connection_id = Some(vec![1, 2, 3]);
    net.add_client(client);
    net.run(Duration::from_secs(2));
    let saved = net.server.save_sessions();
    assert_eq!(saved.len(), 1);
    // The same node after a restart takes it back.
    assert!(Server::new(cfg.clone(), [9; 32])
        .restore_session(&saved[0].1)
        .is_ok());
    // Another node number (or none given when it was saved): its records would be routed
    // elsewhere, so it is refused and the device does a new handshake.
    cfg.cid_node = Some(8);
    let e = Server::new(cfg, [9; 32])
        .restore_session(&saved[0].1)
        .unwrap_err();
    assert!(e.to_string().contains("node byte"), "{e}");
}
