//! End to end through MQTT: the real server runtime with its bridge, a real
//! broker (the embedded rmqtt), devices running the real `lwm2m::client`, and an MQTT
//! client standing in for the operator's backend. Registration, read, observe, queue mode
//! with MQTT 5 Message Expiry, malformed commands, shadows, and a broker outage during a
//! stream of notifications.
use lwm2m::client::ClientConfig;
use lwm2m::model::{Path, Value};
use lwm2m_e2e_tests::{
    free_port, mqtt_config, sensor_store, wait_for, Device, TestServer, PATIENCE,
};
use lwm2m_server::bridge::broker::{BrokerSettings, EmbeddedBroker};
use lwm2m_server::core::types::DeviceEvent;
use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use serde_json::{json, Value as Json};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// The operator's backend: an MQTT 5 client subscribed to everything the bridge publishes.
struct Backend {
    client: AsyncClient,
    messages: mpsc::Receiver<(String, Json)>,
}

impl Backend {
    async fn connect(broker: SocketAddr, id: &str) -> Self {
        let mut options = MqttOptions::new(id, broker.ip().to_string(), broker.port());
        options.set_keep_alive(Duration::from_secs(5));
        options.set_clean_start(false);
        options.set_session_expiry_interval(Some(3600));
        let (client, mut eventloop) = AsyncClient::new(options, 1000);
        client
            .subscribe("lwm2m/+/up/#", QoS::AtLeastOnce)
            .await
            .expect("subscribe");
        client
            .subscribe("lwm2m/+/shadow/#", QoS::AtLeastOnce)
            .await
            .expect("subscribe");
        let (tx, messages) = mpsc::channel(100_000);
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let topic = String::from_utf8_lossy(&p.topic).into_owned();
                        let json = serde_json::from_slice(&p.payload).unwrap_or(Json::Null);
                        if tx.send((topic, json)).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        Self { client, messages }
    }

    async fn command(&self, endpoint: &str, body: Json, expiry_secs: Option<u32>) {
        self.raw(
            endpoint,
            serde_json::to_vec(&body).expect("json"),
            expiry_secs,
        )
        .await;
    }

    async fn raw(&self, endpoint: &str, payload: Vec<u8>, expiry_secs: Option<u32>) {
        let props = PublishProperties {
            message_expiry_interval: expiry_secs,
            ..PublishProperties::default()
        };
        self.client
            .publish_with_properties(
                format!("lwm2m/{endpoint}/dn/cmd"),
                QoS::AtLeastOnce,
                false,
                payload,
                props,
            )
            .await
            .expect("publish");
    }

    /// The first message on a topic ending in `suffix` that `pick` accepts.
    async fn wait_for<T>(&mut self, suffix: &str, mut pick: impl FnMut(&Json) -> Option<T>) -> T {
        wait_for(&mut self.messages, "MQTT", |(topic, json)| {
            topic.ends_with(suffix).then(|| pick(json)).flatten()
        })
        .await
    }

    /// The next message, whatever its topic.
    async fn next(&mut self) -> (String, Json) {
        match tokio::time::timeout(PATIENCE, self.messages.recv()).await {
            Ok(Some(m)) => m,
            Ok(None) => panic!("subscriber stopped"),
            Err(_) => panic!("no message within {PATIENCE:?}"),
        }
    }

    /// The response to request `req`.
    async fn resp(&mut self, req: i64) -> Json {
        self.wait_for("/up/resp", |j| {
            (j["reqID"] == json!(req)).then(|| j.clone())
        })
        .await
    }

    /// Observes `ep`'s temperature (`/3303/0/5700`) as request `req`; its answer.
    async fn observe_temperature(&mut self, ep: &str, req: i64) -> Json {
        self.command(
            ep,
            json!({"reqID": req, "msgType": "observe", "data": {"path": "/3303/0/5700"}}),
            None,
        )
        .await;
        self.resp(req).await
    }
}

/// Sets the device's temperature (`/3303/0/5700`): an observer gets a notification.
async fn set_temperature(dev: &Device, celsius: f64) {
    dev.with(move |c, now| {
        if let Err(e) = c.set_value(now, &Path::resource(3303, 0, 5700), Value::Float(celsius)) {
            panic!("setting the temperature: {e}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_read_observe_and_malformed_commands_over_mqtt() {
    let dir = tempfile::tempdir().unwrap();
    let (s, broker) = TestServer::start_with_embedded_broker(dir.path(), "")
        .await
        .expect("server");
    let mut backend = Backend::connect(broker, "backend-1").await;
    let dev = Device::start_with(
        s.addr,
        ClientConfig::new("mq-1"),
        sensor_store("mq-1", 20.0),
    )
    .await
    .unwrap();
    let reg = backend
        .wait_for("mq-1/up/register", |j| Some(j.clone()))
        .await;
    assert_eq!(reg["msgType"], "register");
    assert_eq!(reg["data"]["ep"], "mq-1");
    assert!(reg["data"]["objectList"]
        .as_array()
        .unwrap()
        .contains(&json!("/3303/0")));

    // A read on dn comes back on up/resp with its value and reqID.
    backend
        .command(
            "mq-1",
            json!({"reqID": 1, "msgType": "read", "data": {"path": "/3303/0/5700"}}),
            None,
        )
        .await;
    let resp = backend.resp(1).await;
    assert_eq!(resp["msgType"], "read");
    assert_eq!(resp["data"]["code"], "2.05");
    assert_eq!(resp["data"]["content"][0]["value"], json!(20.0));

    // Observe: the response, then a notification per change.
    assert_eq!(
        backend.observe_temperature("mq-1", 2).await["data"]["code"],
        "2.05"
    );
    for v in [21.5, 22.5] {
        set_temperature(&dev, v).await;
        let n = backend
            .wait_for("mq-1/up/notify", |j| Some(j.clone()))
            .await;
        assert_eq!(n["reqID"], 2, "a notification carries its observe's reqID");
        assert_eq!(n["data"]["content"][0]["value"], json!(v));
    }

    // Every malformed shape is answered on up/resp, and the bridge goes on.
    let bad: Vec<Vec<u8>> = vec![
        b"not json".to_vec(),
        b"[1, 2]".to_vec(),
        br#"{"reqID": 10, "data": {"path": "/3/0/0"}}"#.to_vec(),
        br#"{"reqID": 11, "msgType": "reboot", "data": {}}"#.to_vec(),
        br#"{"msgType": "read", "data": {"path": "/3/0/0"}}"#.to_vec(),
        br#"{"reqID": 12, "msgType": "read"}"#.to_vec(),
        br#"{"reqID": 13, "msgType": "read", "data": {"path": "/x/y"}}"#.to_vec(),
        br#"{"reqID": 14, "msgType": "write", "data": {"path": "/3303/0/5700"}}"#.to_vec(),
        br#"{"reqID": 15, "msgType": "write", "data": {"path": "/3303/0/5700", "type": "Float", "value": "warm"}}"#.to_vec(),
    ];
    // One at a time: each answer must come on its own, not carried out by the next command's
    // commit (a refusal is written to the outbox like any answer, and needs its own commit).
    for payload in bad {
        backend.raw("mq-1", payload, None).await;
        let code = backend
            .wait_for("mq-1/up/resp", |j| Some(j["data"]["code"].clone()))
            .await;
        assert_eq!(code, "4.00");
    }
    backend
        .command(
            "nobody",
            json!({"reqID": 16, "msgType": "read", "data": {"path": "/3/0/0"}}),
            None,
        )
        .await;
    let resp = backend.resp(16).await;
    assert_eq!(resp["data"]["code"], "4.04");
    // Still working.
    backend
        .command(
            "mq-1",
            json!({"reqID": 17, "msgType": "read", "data": {"path": "/3/0/0"}}),
            None,
        )
        .await;
    assert_eq!(backend.resp(17).await["data"]["code"], "2.05");
    dev.kill();
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_mode_command_is_answered_when_the_device_wakes_and_expiry_is_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, broker) =
        TestServer::start_with_embedded_broker(dir.path(), "[queue]\nawake_window_secs = 2\n")
            .await
            .expect("server");
    let mut backend = Backend::connect(broker, "backend-2").await;
    let mut config = ClientConfig::new("sleepy");
    config.queue_mode = true;
    config.awake_time = Duration::from_millis(1500);
    let dev = Device::start_with(s.addr, config, sensor_store("sleepy", 20.0))
        .await
        .unwrap();
    backend.wait_for("sleepy/up/register", |_| Some(())).await;
    // Let the device fall asleep, as far as the server can tell. The device stays awake
    // 1.5 s after an exchange, so a reply the server holds for an outbox commit on a loaded
    // machine still finds it listening.
    tokio::time::sleep(Duration::from_secs(4)).await;
    backend
        .command(
            "sleepy",
            json!({"reqID": 1, "msgType": "read", "data": {"path": "/3303/0/5700"}}),
            Some(120),
        )
        .await;
    backend
        .command(
            "sleepy",
            json!({"reqID": 2, "msgType": "read", "data": {"path": "/3/0/0"}}),
            Some(1),
        )
        .await;
    // Nothing comes back for the first while it sleeps; the second expires after its 1 s.
    let mut early = Vec::new();
    let until = tokio::time::Instant::now() + Duration::from_millis(2500);
    while let Ok(Some(m)) = tokio::time::timeout_at(until, backend.messages.recv()).await {
        early.push(m);
    }
    let resp_to = |req: i64| {
        move |(t, j): &(String, Json)| t.ends_with("up/resp") && j["reqID"] == json!(req)
    };
    assert!(
        !early.iter().any(resp_to(1)),
        "answered while asleep: {early:?}"
    );
    let expired = early
        .iter()
        .find(|m| resp_to(2)(m))
        .map(|(_, j)| j.clone())
        .expect("the expired command is answered when its expiry passes");
    assert_eq!(expired["data"]["code"], "5.04", "{expired}");
    assert_eq!(expired["data"]["error"], "expired", "{expired}");
    // It wakes: the first command is delivered.
    dev.with(|c, now| c.wake(now)).await;
    let answered = backend.resp(1).await;
    assert_eq!(answered["data"]["code"], "2.05");
    s.wait_for(|e| matches!(e, DeviceEvent::Updated { .. }).then_some(()))
        .await;
    dev.kill();
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_converges_when_the_device_wakes() {
    let dir = tempfile::tempdir().unwrap();
    let (s, broker) = TestServer::start_with_embedded_broker(dir.path(), "")
        .await
        .expect("server");
    let mut backend = Backend::connect(broker, "backend-3").await;
    // Desired state set before the device is even registered.
    backend
        .client
        .publish(
            "lwm2m/twin/shadow/desired",
            QoS::AtLeastOnce,
            false,
            serde_json::to_vec(&json!({"state": {"/3/0/14": "+02:00"}})).unwrap(),
        )
        .await
        .unwrap();
    let delta = backend
        .wait_for("twin/shadow/delta", |j| Some(j["state"].clone()))
        .await;
    assert_eq!(delta, json!({"/3/0/14": "+02:00"}));
    let dev = Device::start(s.addr, ClientConfig::new("twin"))
        .await
        .unwrap();
    // On registration the bridge writes the desired value; once written, the delta is empty.
    let delta = backend
        .wait_for("twin/shadow/delta", |j| Some(j["state"].clone()))
        .await;
    assert_eq!(delta, json!({}));
    let (tx, rx) = tokio::sync::oneshot::channel();
    dev.with(move |c, _| {
        let _ = tx.send(c.store().value(&Path::resource(3, 0, 14)).cloned());
    })
    .await;
    assert_eq!(rx.await.unwrap(), Some(Value::String("+02:00".into())));
    dev.kill();
    s.stop().await;
}

/// A TCP proxy between the bridge and the broker that the test can cut, as a broker outage
/// or a network partition would.
struct Proxy {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    generation: Arc<std::sync::atomic::AtomicU64>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let up = Arc::new(AtomicBool::new(true));
        let generation = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (u, g) = (up.clone(), generation.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if !u.load(Ordering::SeqCst) {
                    continue; // refused: dropped at once
                }
                let (u, g) = (u.clone(), g.clone());
                let mine = g.load(Ordering::SeqCst);
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    let cut = async {
                        while u.load(Ordering::SeqCst) && g.load(Ordering::SeqCst) == mine {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        () = cut => {}
                    }
                });
            }
        });
        Self {
            addr,
            up,
            generation,
        }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_lost_while_the_broker_is_away() {
    const DEVICES: usize = 4;
    const PER_DEVICE: u32 = 2500;
    let dir = tempfile::tempdir().unwrap();
    let broker_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let _broker = EmbeddedBroker::start(BrokerSettings::open(broker_addr)).unwrap();
    let proxy = Proxy::start(broker_addr).await;
    let s = TestServer::start(dir.path(), 0, &mqtt_config(proxy.addr, false))
        .await
        .unwrap();
    let mut backend = Backend::connect(broker_addr, "backend-4").await;
    let mut devices = Vec::new();
    for i in 0..DEVICES {
        let ep = format!("stream-{i}");
        devices.push(
            Device::start_with(s.addr, ClientConfig::new(&ep), sensor_store(&ep, 20.0))
                .await
                .unwrap(),
        );
        backend
            .wait_for(&format!("{ep}/up/register"), |_| Some(()))
            .await;
        backend.observe_temperature(&ep, i as i64).await;
    }
    let mut server_events = s.server.handle.subscribe();
    // The devices stream; halfway through, the broker becomes unreachable for two seconds.
    for n in 1..=PER_DEVICE {
        for d in &devices {
            set_temperature(d, f64::from(n)).await;
        }
        if n == PER_DEVICE / 4 {
            proxy.cut();
        }
        if n == PER_DEVICE * 3 / 4 {
            tokio::time::sleep(Duration::from_secs(2)).await;
            proxy.restore();
        }
        if n % 50 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    // Count what the server accepted, then what reached the backend.
    let mut accepted = vec![0u32; DEVICES];
    let quiet = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        match tokio::time::timeout_at(quiet, server_events.recv()).await {
            Ok(Ok(DeviceEvent::Notification { endpoint, .. })) => {
                let i: usize = endpoint.trim_start_matches("stream-").parse().unwrap();
                accepted[i] += 1;
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("server event stream: {e}"),
            Err(_) => break,
        }
    }
    let total: u32 = accepted.iter().sum();
    assert!(total > 0);
    eprintln!(
        "{total} of {} notifications reached the server",
        DEVICES as u32 * PER_DEVICE
    );
    let mut last = [0.0f64; DEVICES];
    let mut received = vec![0u32; DEVICES];
    let mut seen: Vec<std::collections::HashMap<u64, Json>> = vec![Default::default(); DEVICES];
    let mut duplicates = 0u32;
    while received.iter().zip(&accepted).any(|(r, a)| r < a) {
        let (topic, j) = backend.next().await;
        let Some(ep) = topic.strip_suffix("/up/notify") else {
            continue;
        };
        let i: usize = ep.trim_start_matches("lwm2m/stream-").parse().unwrap();
        let v = j["data"]["content"][0]["value"].as_f64().unwrap();
        if v <= last[i] {
            // A message resent after the reconnect: allowed, and recognisable by its msgId.
            // A value never seen before arriving after a newer one is a reordering, not a
            // duplicate (the resends after a reconnect must go out in publish order).
            let first = seen[i].get(&v.to_bits());
            assert!(
                first.is_some(),
                "stream-{i}: {v} arrived after {} without having arrived before",
                last[i]
            );
            assert_eq!(
                first.map(|f| &f["msgId"]),
                Some(&j["msgId"]),
                "a duplicate keeps its msgId"
            );
            duplicates += 1;
            continue;
        }
        seen[i].insert(v.to_bits(), j.clone());
        last[i] = v;
        received[i] += 1;
    }
    // Every notification the server accepted reached the backend, in order, none missing.
    assert_eq!(received, accepted);
    eprintln!("{duplicates} duplicates after the outage");
    // The outage shows in the metrics as a reconnect.
    let m = s.handle().metrics().mqtt.expect("the bridge runs");
    assert!(m.reconnects >= 1, "{m:?}");
    for d in devices {
        d.kill();
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bridge_speaks_mqtt_3_1_1_too() {
    let dir = tempfile::tempdir().unwrap();
    // One broker, one port: MQTT 3.1.1 for the bridge, MQTT 5 for the backend.
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let (v4, v5) = (addr, addr);
    let _broker = EmbeddedBroker::start(BrokerSettings::open(addr)).unwrap();
    let config = format!(
        "[mqtt]\nenabled = true\nbroker = \"{v4}\"\nembedded_broker = false\nversion = 3\nreconnect_min_ms = 100\n"
    );
    let s = TestServer::start(dir.path(), 0, &config).await.unwrap();
    let mut backend = Backend::connect(v5, "backend-311").await;
    let dev = Device::start_with(
        s.addr,
        ClientConfig::new("old-1"),
        sensor_store("old-1", 20.0),
    )
    .await
    .unwrap();
    backend.wait_for("old-1/up/register", |_| Some(())).await;
    backend
        .command(
            "old-1",
            json!({"reqID": "r1", "msgType": "read", "data": {"path": "/3303/0/5700"}}),
            None,
        )
        .await;
    let resp = backend
        .wait_for("old-1/up/resp", |j| (j["reqID"] == "r1").then(|| j.clone()))
        .await;
    assert_eq!(resp["data"]["content"][0]["value"], json!(20.0));
    dev.kill();
    s.stop().await;
}

/// Backpressure: with the broker away and the outbox full, the server leaves a device's
/// confirmable notifications unacknowledged (the device retransmits) instead of taking them
/// and dropping them; when the broker is back, the newest value arrives and nothing was
/// dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_outbox_leaves_notifications_unacknowledged_instead_of_dropping_them() {
    const MAX_OUTBOX: u64 = 10;
    let dir = tempfile::tempdir().unwrap();
    let broker_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let _broker = EmbeddedBroker::start(BrokerSettings::open(broker_addr)).unwrap();
    let proxy = Proxy::start(broker_addr).await;
    let config = format!(
        "{}max_outbox = {MAX_OUTBOX}\n",
        mqtt_config(proxy.addr, false)
    );
    let s = TestServer::start(dir.path(), 0, &config).await.unwrap();
    let mut backend = Backend::connect(broker_addr, "backend-full").await;
    let mut device = ClientConfig::new("full-1");
    device.notify_con_every = 1;
    device.coap.transmission.ack_timeout = Duration::from_millis(200);
    device.coap.transmission.ack_random_factor = 1.2;
    device.coap.transmission.max_retransmit = 8;
    let dev = Device::start_with(s.addr, device, sensor_store("full-1", 0.0))
        .await
        .unwrap();
    backend.wait_for("full-1/up/register", |_| Some(())).await;
    backend.observe_temperature("full-1", 1).await;
    let mut server_events = s.server.handle.subscribe();

    // The broker goes away; the device keeps changing its value, far past what the outbox
    // may hold.
    proxy.cut();
    for n in 1..=60u32 {
        set_temperature(&dev, f64::from(n)).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut taken = 0u64;
    while let Ok(ev) = server_events.try_recv() {
        if matches!(ev, DeviceEvent::Notification { .. }) {
            taken += 1;
        }
    }
    let m = s.handle().metrics().mqtt.expect("the bridge runs");
    assert_eq!(
        m.dropped, 0,
        "nothing dropped while the outbox was full: {m:?}"
    );
    assert!(m.notifications_refused > 0, "refusals counted: {m:?}");
    // A message or two in flight when the link was cut may still have been acknowledged,
    // making room; far fewer than the 60 the device sent.
    assert!(
        taken <= MAX_OUTBOX + 2,
        "the server took {taken} notifications with room for {MAX_OUTBOX}"
    );

    // The broker is back: the outbox drains, the device's retransmission is taken, and the
    // newest value reaches the backend after the older ones.
    proxy.restore();
    let mut last = 0.0f64;
    while last < 60.0 {
        let (topic, j) = backend.next().await;
        if topic.ends_with("/up/notify") {
            let v = j["data"]["content"][0]["value"].as_f64().unwrap();
            assert!(v >= last, "{v} after {last}");
            last = v;
        }
    }
    let m = s.handle().metrics().mqtt.expect("the bridge runs");
    assert_eq!(m.dropped, 0, "{m:?}");
    dev.kill();
    s.stop().await;
}
