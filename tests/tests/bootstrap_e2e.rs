//! The bootstrap server end to end (OMA LwM2M TS 1.2 Core §5.2.3, §6.1): real devices
//! (`lwm2m::client::Bootstrapper`, then `Client`, each behind a real DTLS client) against the
//! real server, whose bootstrap server runs beside it. A device born with only a factory PSK
//! gets its own PSK and registers with it; a second bootstrap replaces it and the old one is
//! refused; a device that drops out leaves nothing behind; `device rotate` makes a device,
//! awake or asleep in queue mode, bootstrap again.
#![allow(clippy::unwrap_used)]
use lwm2m::client::{ClientConfig, ClientEvent};
use lwm2m_e2e_tests::{bootstrap, free_port, psk_account, Device, Dropout, TestServer};
use lwm2m_server::core::types::{BootstrapStage, DeviceEvent};
use lwm2m_server::provisioning::admin::AdminOp;
use std::net::SocketAddr;
use std::time::Duration;

const FACTORY_KEY: &[u8] = b"factory-key-0123";

/// A server whose bootstrap server writes its own DTLS address as the LwM2M server URI.
async fn server(dir: &std::path::Path, extra: &str) -> TestServer {
    let port = free_port();
    let config = format!(
        "[bootstrap]\ncoap_bind = [\"127.0.0.1:0\"]\ncoaps_bind = [\"127.0.0.1:0\"]\nserver_uri = \"coaps://127.0.0.1:{port}\"\nsequence_timeout_secs = 3\n{extra}"
    );
    TestServer::start_on(dir, 0, port, &config).await.unwrap()
}

fn bootstrap_addr(s: &TestServer) -> SocketAddr {
    *s.handle().bootstrap_secure_addrs().first().unwrap()
}

async fn add_factory(s: &TestServer, endpoint: &str) {
    s.provision_bootstrap_psk(endpoint, &format!("factory-{endpoint}"), FACTORY_KEY)
        .await;
}

/// Waits for `endpoint`'s bootstrap to fail; returns the step it failed at.
async fn failed_at(s: &mut TestServer, endpoint: &str) -> String {
    s.wait_for(|e| match e {
        DeviceEvent::Bootstrap {
            endpoint: ep,
            stage: BootstrapStage::Failed { step, .. },
            ..
        } if ep == endpoint => Some(step.clone()),
        _ => None,
    })
    .await
}

/// Bootstraps `endpoint` with its factory PSK; returns the (identity, key) it was given.
async fn bootstrapped(s: &TestServer, endpoint: &str) -> (Vec<u8>, Vec<u8>) {
    let identity = format!("factory-{endpoint}");
    let store = bootstrap(
        bootstrap_addr(s),
        endpoint,
        identity.as_bytes(),
        FACTORY_KEY,
        Dropout::Never,
    )
    .await
    .unwrap();
    let (uri, id, key) = psk_account(&store).expect("a PSK account");
    assert_eq!(uri, format!("coaps://{}", s.secure_addr));
    assert!(
        store.bootstrap_account().is_some(),
        "the device keeps its bootstrap account"
    );
    (id, key)
}

async fn register(s: &TestServer, endpoint: &str, id: &[u8], key: &[u8]) -> Device {
    register_with(s, ClientConfig::new(endpoint), id, key).await
}

async fn register_with(s: &TestServer, config: ClientConfig, id: &[u8], key: &[u8]) -> Device {
    let dtls = dtls::ClientConfig::psk(id.to_vec(), key.to_vec());
    Device::start_secure(s.secure_addr, config, dtls)
        .await
        .unwrap()
}

/// Waits for `endpoint`'s bootstrap to finish; returns the identity reported.
async fn finished(s: &mut TestServer, endpoint: &str) -> Option<String> {
    s.wait_for(|e| match e {
        DeviceEvent::Bootstrap {
            endpoint: ep,
            stage: BootstrapStage::Finished { identity, .. },
            ..
        } if ep == endpoint => Some(identity.clone()),
        DeviceEvent::Bootstrap {
            endpoint: ep,
            stage: BootstrapStage::Failed { step, reason },
            ..
        } if ep == endpoint => panic!("bootstrap of {ep} failed at {step}: {reason}"),
        _ => None,
    })
    .await
}

/// Sends a Bootstrap-Request for `endpoint` over plain CoAP; returns the answer's code.
async fn nosec_bootstrap_request(server: SocketAddr, endpoint: &str) -> String {
    let mut request = lwm2m::ops::bootstrap::BootstrapRequest::new(endpoint).to_coap();
    request.header.message_id = 0x4242;
    request.set_token(vec![1, 2, 3, 4]);
    request
        .header
        .set_type(lwm2m::coap::MessageType::Confirmable);
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket
        .send_to(&request.to_bytes().unwrap(), server)
        .await
        .unwrap();
    let mut buf = [0u8; 1500];
    let (n, _) = tokio::time::timeout(Duration::from_secs(10), socket.recv_from(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
    let answer = lwm2m::coap::Packet::from_bytes(&buf[..n]).unwrap();
    lwm2m::coap::msg::code_string(&answer)
}

async fn listed(s: &TestServer, endpoint: &str) -> Option<String> {
    let reply = s.handle().admin(AdminOp::DeviceList).await.unwrap();
    reply
        .devices
        .unwrap_or_default()
        .into_iter()
        .find(|d| d.endpoint == endpoint)
        .map(|d| d.id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn factory_devices_get_their_own_psk_and_a_second_bootstrap_replaces_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = server(dir.path(), "").await;
    add_factory(&s, "meter-a").await;
    add_factory(&s, "meter-b").await;

    let (id_a, key_a) = bootstrapped(&s, "meter-a").await;
    assert_eq!(key_a.len(), 16);
    assert_ne!(id_a, b"factory-meter-a".to_vec(), "a fresh identity");
    assert_ne!(key_a, FACTORY_KEY.to_vec(), "a fresh key");
    let reported = finished(&mut s, "meter-a").await;
    assert_eq!(
        reported.as_deref(),
        Some(String::from_utf8_lossy(&id_a).as_ref())
    );
    assert_eq!(listed(&s, "meter-a").await.as_deref(), reported.as_deref());
    let mut dev_a = register(&s, "meter-a", &id_a, &key_a).await;
    dev_a.registered().await;
    s.registered("meter-a").await;

    let (id_b, key_b) = bootstrapped(&s, "meter-b").await;
    assert_ne!(id_a, id_b, "never shared between two devices");
    assert_ne!(key_a, key_b);
    let mut dev_b = register(&s, "meter-b", &id_b, &key_b).await;
    dev_b.registered().await;

    // Bootstrapped again: a fresh credential, the old session closed, the old key refused.
    let (id_a2, key_a2) = bootstrapped(&s, "meter-a").await;
    assert_ne!((&id_a2, &key_a2), (&id_a, &key_a));
    dev_a.link_down().await;
    dev_a.kill();
    let mut old = register(&s, "meter-a", &id_a, &key_a).await;
    let down = old.link_down().await;
    assert!(!down.is_empty());
    old.kill();
    let mut dev_a2 = register(&s, "meter-a", &id_a2, &key_a2).await;
    dev_a2.registered().await;
    dev_b.update().await;
    dev_b
        .wait_for(|e| matches!(e, ClientEvent::Updated).then_some(()))
        .await;

    let m = s.handle().metrics();
    assert_eq!(m.bootstraps_finished, 3);
    assert_eq!(m.bootstraps_failed, 0);

    // Over NoSec, anyone can send any name: the account of an endpoint that has a
    // credential is not given away (it would lock the device out).
    let plain = *s.handle().bootstrap_addrs().first().unwrap();
    s.provision_psk("direct-1", "direct-1", b"0123456789abcdef")
        .await;
    for ep in ["meter-a", "meter-b", "direct-1"] {
        assert_eq!(nosec_bootstrap_request(plain, ep).await, "4.03", "{ep}");
    }
    assert_eq!(failed_at(&mut s, "meter-a").await, "request");

    // Revoked, it cannot bootstrap its way back in with its factory credential...
    let reply = s
        .handle()
        .admin(AdminOp::DeviceRevoke {
            endpoint: "meter-b".into(),
        })
        .await
        .unwrap();
    assert!(reply.ok && reply.denied.is_some(), "{reply:?}");
    let refused = bootstrap(
        bootstrap_addr(&s),
        "meter-b",
        b"factory-meter-b",
        FACTORY_KEY,
        Dropout::Never,
    )
    .await;
    assert!(refused.is_err());
    assert_eq!(failed_at(&mut s, "meter-b").await, "request");
    // ... until the operator admits it again.
    s.provision_psk("meter-b", "admitted-b", b"0123456789abcdef")
        .await;
    let (id_b2, _) = bootstrapped(&s, "meter-b").await;
    assert_ne!(id_b2, b"admitted-b".to_vec());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_drops_out_leaves_no_credential_and_can_start_over() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = server(
        dir.path(),
        "[coap]\nack_timeout_ms = 200\nmax_retransmit = 1\n",
    )
    .await;
    add_factory(&s, "flaky").await;
    let dropped = bootstrap(
        bootstrap_addr(&s),
        "flaky",
        b"factory-flaky",
        FACTORY_KEY,
        Dropout::AfterRequests(2),
    )
    .await;
    assert!(dropped.is_err());
    assert!(!failed_at(&mut s, "flaky").await.is_empty());
    assert_eq!(listed(&s, "flaky").await, None, "nothing half-provisioned");

    let (id, key) = bootstrapped(&s, "flaky").await;
    // The device is done when it answers Finish; the server, once that answer arrives.
    finished(&mut s, "flaky").await;
    assert_eq!(
        listed(&s, "flaky").await,
        Some(String::from_utf8_lossy(&id).into_owned())
    );
    let mut dev = register(&s, "flaky", &id, &key).await;
    dev.registered().await;
    s.registered("flaky").await;

    // Bootstrapped again, it takes every Write, then never answers Finish: the credential
    // installed for it just before Finish is taken back, and the one it had works again.
    let silent = bootstrap(
        bootstrap_addr(&s),
        "flaky",
        b"factory-flaky",
        FACTORY_KEY,
        Dropout::AfterRequests(7),
    )
    .await;
    assert!(silent.is_err());
    assert_eq!(failed_at(&mut s, "flaky").await, "finish");
    assert_eq!(
        listed(&s, "flaky").await,
        Some(String::from_utf8_lossy(&id).into_owned()),
        "the credential it had is back"
    );
    dev.kill();
    let mut again = register(&s, "flaky", &id, &key).await;
    again.registered().await;
}

/// Rotation: `device rotate` executes /1/x/9 on the registered device; an awake one is asked
/// at once, a sleeping queue-mode one when it wakes. Either bootstraps again and gets a
/// fresh credential.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_asks_awake_and_sleeping_devices_to_bootstrap_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = server(dir.path(), "[queue]\nawake_window_secs = 1\n").await;
    add_factory(&s, "awake").await;
    add_factory(&s, "sleepy").await;
    let (id, key) = bootstrapped(&s, "awake").await;
    let mut awake = register(&s, "awake", &id, &key).await;
    awake.registered().await;
    s.registered("awake").await;

    let reply = s
        .handle()
        .admin(AdminOp::DeviceRotate {
            endpoint: "awake".into(),
        })
        .await
        .unwrap();
    assert!(reply.ok, "{reply:?}");
    awake
        .wait_for(|e| matches!(e, ClientEvent::BootstrapRequested { .. }).then_some(()))
        .await;
    let (id2, key2) = bootstrapped(&s, "awake").await;
    assert_ne!(id2, id);
    let mut again = register(&s, "awake", &id2, &key2).await;
    again.registered().await;

    // Queue mode: asleep when the rotation is asked, told when it wakes.
    let (id, key) = bootstrapped(&s, "sleepy").await;
    let config = ClientConfig {
        queue_mode: true,
        awake_time: Duration::from_secs(2),
        ..ClientConfig::new("sleepy")
    };
    let mut sleepy = register_with(&s, config, &id, &key).await;
    sleepy.registered().await;
    sleepy
        .wait_for(|e| matches!(e, ClientEvent::Sleeping).then_some(()))
        .await;
    let reply = s
        .handle()
        .admin(AdminOp::DeviceRotate {
            endpoint: "sleepy".into(),
        })
        .await
        .unwrap();
    assert!(reply.ok, "{reply:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    sleepy.with(|c, now| c.wake(now)).await;
    sleepy
        .wait_for(|e| match e {
            ClientEvent::BootstrapRequested { .. } => Some(()),
            _ => None,
        })
        .await;

    // Not registered: refused at once, with why.
    let reply = s
        .handle()
        .admin(AdminOp::DeviceRotate {
            endpoint: "nobody".into(),
        })
        .await
        .unwrap();
    assert!(!reply.ok);
    assert!(reply.error.unwrap_or_default().contains("not registered"));
}
