//! End to end over loopback: what devices do shows in `GET /metrics` (OpenMetrics text) of
//! the real server runtime, read over a real TCP connection as a scraper would, and in
//! `ServerHandle::metrics`.
use lwm2m::client::{ClientConfig, ClientEvent};
use lwm2m::model::{Path, Value};
use lwm2m::ops::dm::DownlinkRequest;
use lwm2m_e2e_tests::{sensor_store, Device, TestServer, PATIENCE};
use lwm2m_server::core::types::{Command, DeregisterReason, DeviceEvent};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `GET path` with a plain HTTP/1.0 request: the status code and the body.
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let (status, _, body) = get_with_head(addr, path).await;
    (status, body)
}

/// `GET path`: the status code, the head (status line and headers) and the body.
async fn get_with_head(addr: SocketAddr, path: &str) -> (u16, String, String) {
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
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (status, head.to_string(), body.to_string())
}

/// The value of one series (`name` or `name{labels}`, labels as the server writes them).
fn value(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
}

/// The value of a histogram's `_count` (whatever the order of its labels).
fn count(text: &str, histogram: &str, label: Option<(&str, &str)>) -> u64 {
    let name = format!("{histogram}_count");
    text.lines()
        .filter_map(|l| l.rsplit_once(' '))
        .find(|(series, _)| match label {
            None => *series == name,
            Some((k, v)) => {
                series.starts_with(&format!("{name}{{")) && series.contains(&format!("{k}=\"{v}\""))
            }
        })
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} {label:?} in:\n{text}"))
}

async fn scrape(s: &TestServer) -> String {
    let addr = s.handle().http_addr().expect("the HTTP API runs");
    let (status, head, body) = get_with_head(addr, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text; version=1.0.0"),
        "{head}"
    );
    assert!(body.ends_with("# EOF\n"), "{body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_lifecycle_shows_in_the_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = TestServer::start(dir.path(), 0, "").await.unwrap();
    let before = scrape(&s).await;
    assert_eq!(value(&before, "lwm2m_registrations_total"), 0);
    assert!(before.contains("# TYPE lwm2m_registered_clients gauge"));
    assert!(before.contains("# TYPE lwm2m_registration_duration_seconds histogram"));
    assert_eq!(
        count(&before, "lwm2m_registration_duration_seconds", None),
        0
    );

    let mut dev = Device::start(s.addr, ClientConfig::new("dev-metrics"))
        .await
        .unwrap();
    dev.registered().await;
    s.wait_for(|e| matches!(e, DeviceEvent::Registered { .. }).then_some(()))
        .await;
    let text = scrape(&s).await;
    assert_eq!(value(&text, "lwm2m_registered_clients"), 1);
    // The device saw its answer, so the answer left and was timed.
    assert_eq!(count(&text, "lwm2m_registration_duration_seconds", None), 1);

    // A command, timed from submission to result under its operation.
    let read = DownlinkRequest::Read {
        path: Path::resource(3, 0, 0),
    };
    let outcome = s.execute(Command::new("dev-metrics", read)).await;
    assert!(outcome.is_ok(), "{outcome:?}");
    let text = scrape(&s).await;
    assert_eq!(
        count(
            &text,
            "lwm2m_command_duration_seconds",
            Some(("operation", "read"))
        ),
        1
    );
    assert_eq!(value(&text, "lwm2m_commands_total{result=\"success\"}"), 1);
    assert_eq!(value(&text, "lwm2m_commands_pending"), 0);
    assert!(
        text.contains("lwm2m_command_queue_oldest_age_seconds 0.0\n"),
        "{text}"
    );

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
    assert_eq!(value(&text, "lwm2m_reregistrations_total"), 0);
    // Register and Update answered, each timed.
    assert_eq!(count(&text, "lwm2m_registration_duration_seconds", None), 2);
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
    assert_eq!((m.registration_answers, m.command_results_timed), (2, 1));

    // Beside the API, on the same listener.
    let addr = s.handle().http_addr().unwrap();
    assert_eq!(get(addr, "/api/clients").await.0, 200);
    assert_eq!(get(addr, "/no-such-page").await.0, 404);
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
    assert_eq!(
        value(
            &text,
            "lwm2m_provisioning_failures_total{reason=\"dtls_required\"}"
        ),
        1
    );
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_is_timed_until_the_broker_acknowledges_it() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _broker) = TestServer::start_with_embedded_broker(dir.path(), "")
        .await
        .unwrap();
    let dev = Device::start_with(
        s.addr,
        ClientConfig::new("mq-metrics"),
        sensor_store("mq-metrics", 20.0),
    )
    .await
    .unwrap();
    s.registered("mq-metrics").await;
    let temperature = Path::resource(3303, 0, 5700);
    let observe = DownlinkRequest::Observe { path: temperature };
    let outcome = s.execute(Command::new("mq-metrics", observe)).await;
    assert!(outcome.is_ok(), "{outcome:?}");
    dev.with(move |c, now| {
        c.set_value(now, &temperature, Value::Float(21.5)).unwrap();
    })
    .await;
    s.wait_for(|e| matches!(e, DeviceEvent::Notification { .. }).then_some(()))
        .await;
    // The broker's acknowledgement comes when it comes: scrape until it has.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let text = loop {
        let text = scrape(&s).await;
        if count(&text, "lwm2m_notification_to_mqtt_seconds", None) >= 1 {
            break text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the notification was never acknowledged:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(text.contains("# TYPE lwm2m_mqtt_reconnect_duration_seconds histogram"));
    assert_eq!(value(&text, "lwm2m_mqtt_reconnects_total"), 0);
    assert!(
        value(&text, "mqtt_acknowledged_total") >= 2,
        "register, notify"
    );
    let timed = s.handle().metrics().mqtt.map(|m| m.notifications_timed);
    assert!(timed >= Some(1), "{timed:?}");
    dev.kill();
    s.stop().await;
}
