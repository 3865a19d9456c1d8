//! End to end over loopback with DTLS (OMA LwM2M TS 1.2 Transport §5.2): devices running the
//! real `lwm2m::client` behind the real `dtls` client register with the real server runtime; the endpoint name is bound to the credential; revocation closes
//! the session; sessions survive a server restart without a handshake.
use lwm2m::client::ClientConfig;
use lwm2m::model::Path;
use lwm2m::ops::dm::{DmResponse, DownlinkRequest};
use lwm2m_e2e_tests::{Device, TestServer};
use lwm2m_server::core::types::{Command, DeregisterReason, DeviceEvent};
use lwm2m_server::provisioning::admin::{AdminOp, AdminReply};
use lwm2m_server::provisioning::audit::AuditKind;

async fn audit(s: &TestServer) -> AdminReply {
    s.handle()
        .admin(AdminOp::Audit { limit: 100 })
        .await
        .expect("server running")
}

fn psk(identity: &str, key: &[u8]) -> dtls::ClientConfig {
    dtls::ClientConfig::psk(identity, key.to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_psk_device_registers_and_is_managed_over_dtls() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = TestServer::start(dir.path(), 0, "").await.unwrap();
    s.provision_psk("secure-1", "id-1", b"0123456789abcdef")
        .await;
    let mut dev = Device::start_secure(
        s.secure_addr,
        ClientConfig::new("secure-1"),
        psk("id-1", b"0123456789abcdef"),
    )
    .await
    .unwrap();
    // The registration shows where the device is, not the session's handle.
    assert_eq!(s.registered("secure-1").await, dev.addr.to_string());
    dev.registered().await;
    let read = s
        .handle()
        .execute(Command::new(
            "secure-1",
            DownlinkRequest::Read {
                path: Path::instance(3, 0),
            },
        ))
        .await
        .unwrap()
        .1;
    assert!(matches!(read, Ok(DmResponse::Content { .. })), "{read:?}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoint_name_is_bound_to_the_credential() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = TestServer::start(dir.path(), 0, "").await.unwrap();
    s.provision_psk("meter-a", "id-a", b"aaaaaaaaaaaaaaaa")
        .await;
    // Meter A's key, another meter's name.
    let mut thief = Device::start_secure(
        s.secure_addr,
        ClientConfig::new("meter-b"),
        psk("id-a", b"aaaaaaaaaaaaaaaa"),
    )
    .await
    .unwrap();
    let failure = thief.registration_failed().await;
    assert!(failure.contains("4.03"), "{failure}");
    let (endpoint, principal) = s.auth_failed().await;
    assert_eq!(
        (endpoint.as_str(), principal.as_deref()),
        ("meter-b", Some("meter-a"))
    );
    thief.kill();
    // Meter A itself over NoSec: refused, it has a credential.
    let mut plain = Device::start(s.addr, ClientConfig::new("meter-a"))
        .await
        .unwrap();
    let failure = plain.registration_failed().await;
    assert!(failure.contains("4.03"), "{failure}");
    plain.kill();
    // Both refusals are in the audit log.
    let events = audit(&s).await.events.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.kind == AuditKind::EndpointMismatch
                && e.endpoint.as_deref() == Some("meter-b"))
    );
    assert!(events
        .iter()
        .any(|e| e.kind == AuditKind::NoSecRefused && e.endpoint.as_deref() == Some("meter-a")));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_is_refused_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path(), 0, "").await.unwrap();
    s.provision_psk("meter-k", "id-k", b"kkkkkkkkkkkkkkkk")
        .await;
    let mut dev = Device::start_secure(
        s.secure_addr,
        ClientConfig::new("meter-k"),
        psk("id-k", b"not-the-key-0000"),
    )
    .await
    .unwrap();
    let reason = dev.link_down().await;
    assert!(reason.contains("handshake failed"), "{reason}");
    dev.kill();
    let events = audit(&s).await.events.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.kind == AuditKind::AuthFailed && e.endpoint.as_deref() == Some("meter-k")),
        "{events:?}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_closes_the_session_and_ends_the_registration() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = TestServer::start(dir.path(), 0, "").await.unwrap();
    s.provision_psk("meter-r", "id-r", b"rrrrrrrrrrrrrrrr")
        .await;
    let mut dev = Device::start_secure(
        s.secure_addr,
        ClientConfig::new("meter-r"),
        psk("id-r", b"rrrrrrrrrrrrrrrr"),
    )
    .await
    .unwrap();
    s.registered("meter-r").await;
    let reply = s
        .handle()
        .admin(AdminOp::DeviceRevoke {
            endpoint: "meter-r".into(),
        })
        .await
        .unwrap();
    assert!(reply.ok, "{reply:?}");
    let reason = s.deregistered("meter-r").await;
    assert_eq!(reason, DeregisterReason::Revoked);
    // The device is told at once (close_notify), and cannot come back.
    let down = dev.link_down().await;
    assert!(down.contains("closed"), "{down}");
    dev.kill();
    let events = audit(&s).await.events.unwrap();
    assert!(events
        .iter()
        .any(|e| e.kind == AuditKind::CredentialRevoked));
    assert!(events.iter().any(|e| e.kind == AuditKind::SessionClosed));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dtls_sessions_survive_a_server_restart_without_a_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = TestServer::start(dir.path(), 0, "").await.unwrap();
    s.provision_psk("meter-s", "id-s", b"ssssssssssssssss")
        .await;
    let (port, secure_port) = (s.addr.port(), s.secure_addr.port());
    let dev = Device::start_secure(
        s.secure_addr,
        ClientConfig::new("meter-s"),
        psk("id-s", b"ssssssssssssssss"),
    )
    .await
    .unwrap();
    s.registered("meter-s").await;
    s.stop().await;

    let mut s = TestServer::start_on(dir.path(), port, secure_port, "")
        .await
        .unwrap();
    // The device updates on the session it had: the restarted server reads it.
    dev.update().await;
    let updated = s
        .wait_for(|e| match e {
            DeviceEvent::Updated { registration } => Some(registration.endpoint.clone()),
            _ => None,
        })
        .await;
    assert_eq!(updated, "meter-s");
    let (tx, rx) = tokio::sync::oneshot::channel();
    dev.with_link(move |link, _| {
        let _ = tx.send(link.handshakes());
    })
    .await;
    assert_eq!(rx.await.unwrap(), 1, "no second handshake");
    // And the server can reach it the other way.
    let read = s
        .handle()
        .execute(Command::new(
            "meter-s",
            DownlinkRequest::Read {
                path: Path::resource(3, 0, 0),
            },
        ))
        .await
        .unwrap()
        .1;
    assert!(matches!(read, Ok(DmResponse::Content { .. })), "{read:?}");
    s.stop().await;
}
