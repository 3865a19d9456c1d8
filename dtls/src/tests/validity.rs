//! Certificate validity judged at the time of day the caller injects, for both roles: a
//! chain valid in [a, b] is accepted at a time inside and refused, with the alert webpki's
//! verdict maps to and a typed error, before a and after b. No clock is read: the wall clock
//! is an anchor at the simulation's start, so the outcome is the same on every run.
use super::*;
use crate::pki::Roots;
use crate::{HandshakeError, WallClock};
use std::time::UNIX_EPOCH;

/// 2030-01-01T00:00:00Z and 2031-01-01T00:00:00Z: the leaf certificates' validity.
const A: u64 = 1_893_456_000;
const B: u64 = 1_924_992_000;
const DAY: u64 = 86_400;

struct Pki {
    roots: Roots,
    server: Arc<OwnKey>,
    device: Arc<OwnKey>,
}

/// A CA valid for a century, and a server and a device certificate valid in [A, B].
fn pki() -> Pki {
    let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.not_before = rcgen::date_time_ymd(2000, 1, 1);
    ca.not_after = rcgen::date_time_ymd(2100, 1, 1);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let leaf = |name: &str, usage: rcgen::ExtendedKeyUsagePurpose| {
        let k = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut p = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
        p.not_before = rcgen::date_time_ymd(2030, 1, 1);
        p.not_after = rcgen::date_time_ymd(2031, 1, 1);
        p.extended_key_usages = vec![usage];
        let c = p.signed_by(&k, &issuer).unwrap();
        let chain = vec![c.der().to_vec(), ca_cert.der().to_vec()];
        Arc::new(OwnKey::from_pkcs8_der(&k.serialize_der(), chain).unwrap())
    };
    Pki {
        roots: Roots::from_der(&[ca_cert.der().to_vec()]).unwrap(),
        server: leaf("server.example", rcgen::ExtendedKeyUsagePurpose::ServerAuth),
        device: leaf("device-7", rcgen::ExtendedKeyUsagePurpose::ClientAuth),
    }
}

/// The simulation's clock reads `unix` seconds at its start.
fn clock_at(net: &Net, unix: u64) -> Option<WallClock> {
    Some(WallClock::new(
        net.sim.now(),
        UNIX_EPOCH + Duration::from_secs(unix),
    ))
}

fn client_failure(net: &Net) -> Option<&HandshakeError> {
    net.client_events[0].iter().find_map(|e| match e {
        ClientEvent::Failed(f) => Some(f),
        _ => None,
    })
}

/// The client checks the server's chain against its roots at the injected time.
fn client_judges_server_at(unix: u64) -> Net {
    let pki = pki();
    let mut cfg = ServerConfig::default();
    cfg.key = Some(pki.server.clone());
    let mut creds = Creds::default();
    creds
        .keys
        .insert(pki.device.chain[0].clone(), Arc::from("device-7"));
    let mut net = Net::new(cfg, creds, 21);
    let mut client = ClientConfig::with_key(pki.device, ServerTrust::Roots(pki.roots));
    client.wall_clock = clock_at(&net, unix);
    net.add_client(client);
    net.run(Duration::from_secs(3));
    net
}

/// The server's credential callback checks the device's chain at the time the engine gives.
fn server_judges_device_at(unix: u64) -> Net {
    let pki = pki();
    let mut cfg = ServerConfig::default();
    cfg.key = Some(pki.server);
    let mut creds = Creds::default();
    creds
        .keys
        .insert(pki.device.chain[0].clone(), Arc::from("device-7"));
    creds.roots = Some(pki.roots);
    let mut net = Net::new(cfg.clone(), creds, 22);
    cfg.wall_clock = clock_at(&net, unix);
    net.server = Server::new(cfg, [22; 32]);
    net.add_client(ClientConfig::with_key(pki.device, ServerTrust::Unverified));
    net.run(Duration::from_secs(3));
    net
}

#[test]
fn the_client_accepts_a_server_certificate_inside_its_validity() {
    let mut net = client_judges_server_at((A + B) / 2);
    assert!(net.clients[0].1.is_established(), "{:?}", net.client_events);
    echo_round_trip(&mut net, 0, "device-7");
}

#[test]
fn the_client_refuses_a_server_certificate_before_and_after_its_validity() {
    for (unix, alert) in [
        // webpki's "not valid yet" has no alert of its own: bad_certificate.
        (A - DAY, AlertDescription::BadCertificate),
        (B + DAY, AlertDescription::CertificateExpired),
    ] {
        let net = client_judges_server_at(unix);
        assert!(!net.clients[0].1.is_established());
        let error = client_failure(&net).expect("the client failed");
        assert_eq!(*error, HandshakeError::ServerCertificateUntrusted(alert));
        assert_eq!(error.alert(), alert);
        assert_eq!(error.alert_to_send(), Some(alert));
        // The server hears why: the alert the client sent.
        assert_eq!(failure_of(&net).0, alert);
    }
}

#[test]
fn a_client_without_a_wall_clock_refuses_a_certificate_chain() {
    let pki = pki();
    let mut cfg = ServerConfig::default();
    cfg.key = Some(pki.server);
    let mut net = Net::new(cfg, Creds::default(), 23);
    net.add_client(ClientConfig::with_key(
        pki.device,
        ServerTrust::Roots(pki.roots),
    ));
    net.run(Duration::from_secs(3));
    assert_eq!(client_failure(&net), Some(&HandshakeError::NoWallClock));
}

#[test]
fn the_server_accepts_a_device_certificate_inside_its_validity() {
    let mut net = server_judges_device_at((A + B) / 2);
    assert!(net.clients[0].1.is_established(), "{:?}", net.server_events);
    echo_round_trip(&mut net, 0, "device-7");
}

#[test]
fn the_server_refuses_a_device_certificate_before_and_after_its_validity() {
    for (unix, alert) in [
        (A - DAY, AlertDescription::BadCertificate),
        (B + DAY, AlertDescription::CertificateExpired),
    ] {
        let net = server_judges_device_at(unix);
        assert!(!net.clients[0].1.is_established());
        let failure = net
            .server_events
            .iter()
            .find_map(|e| match e {
                ServerEvent::HandshakeFailed { failure, .. } => Some(failure),
                _ => None,
            })
            .expect("the server failed the handshake");
        assert_eq!(
            failure.error,
            HandshakeError::ClientCredentialRefused(alert)
        );
        assert_eq!(failure.error.alert(), alert);
        assert!(failure.error.is_security_event());
        assert_eq!(
            client_failure(&net),
            Some(&HandshakeError::ServerAlert(alert))
        );
    }
}

#[test]
fn a_refused_certificate_is_reported_as_who_it_claims_to_be() {
    for claim in [None, Some("device-7")] {
        let pki = pki();
        let mut cfg = ServerConfig::default();
        cfg.key = Some(pki.server);
        // No pinned key: the application refuses the certificate, and says whose it is.
        let creds = Creds {
            refused_as: claim.map(str::to_string),
            ..Creds::default()
        };
        let mut net = Net::new(cfg.clone(), creds, 23);
        cfg.wall_clock = clock_at(&net, (A + B) / 2);
        net.server = Server::new(cfg, [23; 32]);
        net.add_client(ClientConfig::with_key(pki.device, ServerTrust::Unverified));
        net.run(Duration::from_secs(3));
        let failure = net
            .server_events
            .iter()
            .find_map(|e| match e {
                ServerEvent::HandshakeFailed { failure, .. } => Some(failure),
                _ => None,
            })
            .expect("the server failed the handshake");
        assert_eq!(
            failure.error,
            HandshakeError::ClientCredentialRefused(AlertDescription::AccessDenied)
        );
        assert_eq!(failure.identity.as_deref(), claim);
    }
}

#[test]
fn the_wall_clock_advances_with_the_simulation() {
    // Valid until B: a handshake that starts a day before B succeeds, one started two days
    // later by the same server, with the same anchor, does not.
    let pki = pki();
    let mut cfg = ServerConfig::default();
    cfg.key = Some(pki.server);
    let mut creds = Creds::default();
    creds
        .keys
        .insert(pki.device.chain[0].clone(), Arc::from("device-7"));
    creds.roots = Some(pki.roots);
    let mut net = Net::new(cfg.clone(), creds, 24);
    cfg.wall_clock = clock_at(&net, B - DAY);
    net.server = Server::new(cfg, [24; 32]);
    net.add_client(ClientConfig::with_key(
        pki.device.clone(),
        ServerTrust::Unverified,
    ));
    net.run(Duration::from_secs(3));
    assert!(net.clients[0].1.is_established());
    net.run(Duration::from_secs(2 * DAY));
    let i = net.add_client(ClientConfig::with_key(pki.device, ServerTrust::Unverified));
    net.run(Duration::from_secs(3));
    assert!(!net.clients[i].1.is_established());
    assert!(net.server_events.iter().any(|e| matches!(
        e,
        ServerEvent::HandshakeFailed { failure, .. }
            if failure.error
                == HandshakeError::ClientCredentialRefused(AlertDescription::CertificateExpired)
    )));
}
