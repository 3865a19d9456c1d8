//! End to end over loopback: what devices do shows in `GET /metrics` (Prometheus text) of the
//! real server runtime, read over a real TCP connection as a scraper would, and in
//! `ServerHandle::metrics`.
use lwm2m::client::{ClientConfig, ClientEvent};
use lwm2m_e2e_tests::{Device, TestServer, PATIENCE};
use lwm2m_server::core::types::{DeregisterReason, DeviceEvent};
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `GET path` with a plain HTTP/1.0 request: the status code and the body.
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr)
            .await
            .expect("the HTTP API accepts");
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await
            .expect("request sent");
        let mut text = String::new();
        s.read_to_string(&mut text).await.expect("response read");
        text
    };
    let text = tokio::time::timeout(PATIENCE, exchange)
        .await
        .expect("the HTTP API answers");
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The value of one series (`name` or `name{labels}`) in Prometheus text.
fn value(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
}

async fn scrape(s: &TestServer) -> String {
    let addr = s.handle().http_addr().expect("the HTTP API runs");
    let (status, body) = get(addr, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_lifecycle_shows_in_the_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = TestServer::start(dir.path(), 0, "").await.unwrap();
    let before = scrape(&s).await;
    assert_eq!(value(&before, "lwm2m_registrations_total"), 0);
    assert!(before.contains("# TYPE lwm2m_registered_clients gauge"));

    let mut dev = Device::start(s.addr, ClientConfig::new("dev-metrics"))
        .await
        .unwrap();
    dev.registered().await;
    s.wait_for(|e| matches!(e, DeviceEvent::Registered { .. }).then_some(()))
        .await;
    assert_eq!(value(&scrape(&s).await, "lwm2m_registered_clients"), 1);

    dev.update().await;
    s.wait_for(|e| matches!(e, DeviceEvent::Updated { .. }).then_some(()))
        .await;
    dev.deregister().await;
    let reason = s.deregistered("dev-metrics").await;
    assert_eq!(reason, DeregisterReason::Requested);
    // The server's Deregistered event can come before its answer is sent (and counted); the
    // device seeing the answer proves it was.
    dev.wait_for(|e| matches!(e, ClientEvent::Deregistered).then_some(()))
        .await;

    let text = scrape(&s).await;
    assert_eq!(value(&text, "lwm2m_registrations_total"), 1);
    assert_eq!(value(&text, "lwm2m_registration_updates_total"), 1);
    assert_eq!(
        value(&text, "lwm2m_deregistrations_total{reason=\"requested\"}"),
        1
    );
    assert_eq!(
        value(&text, "lwm2m_deregistrations_total{reason=\"expired\"}"),
        0
    );
    assert_eq!(value(&text, "lwm2m_registered_clients"), 0);
    // Register, Update, De-register and their answers went through the plain CoAP socket.
    assert!(value(&text, "coap_datagrams_received_total{transport=\"udp\"}") >= 3);
    assert!(value(&text, "coap_datagrams_sent_total{transport=\"udp\"}") >= 3);
    // The MQTT bridge is off in this test: no MQTT series.
    assert!(!text.contains("mqtt_"), "{text}");

    // The same numbers in process.
    let m = s.handle().metrics();
    assert_eq!(
        (
            m.registrations,
            m.registration_updates,
            m.deregistrations_requested,
            m.registered_clients
        ),
        (1, 1, 1, 0)
    );
    assert!(m.mqtt.is_none());

    // Only /metrics is served for now.
    let addr = s.handle().http_addr().unwrap();
    assert_eq!(get(addr, "/").await.0, 404);
    assert_eq!(get(addr, "/api/clients").await.0, 404);
    dev.kill();
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dtls_handshakes_sessions_and_refusals_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = TestServer::start(dir.path(), 0, "").await.unwrap();
    s.provision_psk("meter-m", "id-m", b"mmmmmmmmmmmmmmmm")
        .await;
    let dev = Device::start_secure(
        s.secure_addr,
        ClientConfig::new("meter-m"),
        dtls::ClientConfig::psk("id-m", b"mmmmmmmmmmmmmmmm".to_vec()),
    )
    .await
    .unwrap();
    s.wait_for(|e| matches!(e, DeviceEvent::Registered { .. }).then_some(()))
        .await;
    // A wrong key: the handshake fails.
    let mut wrong = Device::start_secure(
        s.secure_addr,
        ClientConfig::new("meter-m"),
        dtls::ClientConfig::psk("id-m", b"not-the-key-0000".to_vec()),
    )
    .await
    .unwrap();
    wrong.link_down().await;
    wrong.kill();
    // The provisioned endpoint over NoSec: refused for who it is.
    let mut plain = Device::start(s.addr, ClientConfig::new("meter-m"))
        .await
        .unwrap();
    plain.registration_failed().await;
    plain.kill();

    let text = scrape(&s).await;
    assert_eq!(value(&text, "dtls_handshakes_total{result=\"ok\"}"), 1);
    assert!(value(&text, "dtls_handshakes_total{result=\"failed\"}") >= 1);
    assert_eq!(value(&text, "dtls_sessions"), 1);
    assert_eq!(value(&text, "lwm2m_auth_failures_total"), 1);
    assert_eq!(value(&text, "lwm2m_registered_clients"), 1);
    assert!(value(&text, "coap_datagrams_received_total{transport=\"dtls\"}") >= 4);
    let m = s.handle().metrics();
    assert_eq!((m.dtls_handshakes_ok, m.dtls_sessions), (1, 1));
    dev.kill();
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_api_can_be_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path(), 0, "[http]\nenabled = false\n")
        .await
        .unwrap();
    assert_eq!(s.handle().http_addr(), None);
    // The counters still count for in-process readers.
    assert_eq!(s.handle().metrics().registrations, 0);
    s.stop().await;
}
