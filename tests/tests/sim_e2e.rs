//! The client simulator against the real server: the shipped `demo` scenario (50 devices
//! over DTLS with PSKs imported from the simulator's own `credentials` output, sensors,
//! Send, NAT rebinding with Connection IDs, an MQTT backend observing and sending commands,
//! reboots by Execute) runs for 20 s without a single error, its JSON report has every
//! field filled, and its counts agree with what the server itself counted.
use lwm2m_e2e_tests::TestServer;
use lwm2m_server::config::Config;
use lwm2m_server::provisioning::import;
use serde_json::Value;

/// The names of the fields that are null, anywhere in `v`.
fn nulls(v: &Value, at: &str, out: &mut Vec<String>) {
    match v {
        Value::Null => out.push(at.to_owned()),
        Value::Object(m) => {
            for (k, v) in m {
                nulls(v, &format!("{at}.{k}"), out);
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                nulls(v, &format!("{at}[{i}]"), out);
            }
        }
        _ => {}
    }
}

fn sim(args: &[String]) -> anyhow::Result<()> {
    let mut all = vec!["lwm2m-client-sim".to_owned()];
    all.extend_from_slice(args);
    lwm2m_client_sim::run(all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_scenario_runs_clean_and_agrees_with_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let (s, broker) = TestServer::start_with_embedded_broker(dir.path(), "")
        .await
        .unwrap();

    // The simulator's credentials, imported into the running server as an operator would.
    let keys = dir.path().join("demo-keys.csv");
    let a = vec![
        "credentials".to_owned(),
        "--scenario".into(),
        "demo".into(),
        "--out".into(),
        keys.display().to_string(),
    ];
    tokio::task::spawn_blocking(move || sim(&a))
        .await
        .unwrap()
        .unwrap();
    let config = Config::parse(&format!(
        "[server]\ndata_dir = \"{}\"\n[mqtt]\nenabled = false\n[http]\nenabled = false\n",
        dir.path().display()
    ))
    .unwrap();
    let lines = import::parse_csv(&std::fs::read_to_string(&keys).unwrap()).unwrap();
    let summary = import::import(&config, &lines).await.unwrap();
    assert_eq!(summary.imported, 50);

    let json = dir.path().join("demo.json");
    let a = vec![
        "bench".to_owned(),
        "--scenario".into(),
        "demo".into(),
        "--duration".into(),
        "20".into(),
        "--server".into(),
        s.secure_addr.to_string(),
        "--broker".into(),
        broker.to_string(),
        "--server-pid".into(),
        std::process::id().to_string(),
        "--json".into(),
        json.display().to_string(),
        "--quiet".into(),
    ];
    tokio::task::spawn_blocking(move || sim(&a))
        .await
        .unwrap()
        .unwrap();
    let r: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let n = |k: &str| {
        r[k].as_u64()
            .unwrap_or_else(|| panic!("{k} is not a count in {r:#}"))
    };

    // Every field filled.
    let mut missing = Vec::new();
    nulls(&r, "report", &mut missing);
    assert!(missing.is_empty(), "null fields {missing:?} in {r:#}");
    // Zero errors, and each behaviour of the scenario visibly happened.
    assert_eq!(n("errors_total"), 0, "{r:#}");
    assert_eq!(n("timeouts"), 0, "{r:#}");
    assert_eq!(n("registered"), 50);
    assert_eq!(n("deregistered"), n("registered_at_stop"));
    for k in [
        "handshakes",
        "notifications_sent",
        "notifications_delivered",
        "sends_acknowledged",
        "sensor_changes",
        "observations",
        "commands_answered",
        "rebinds",
        "requests_answered",
    ] {
        assert!(n(k) > 0, "{k} is 0 in {r:#}");
    }
    assert!(r["command_latency_us"]["count"].as_u64().unwrap() > 0);
    assert!(r["server_process"]["rss_max_bytes"].as_u64().unwrap() > 0);
    // Over DTLS with Connection IDs a rebinding needs no handshake: one per boot.
    assert_eq!(n("handshakes"), 50 + n("reboots"));
    assert_eq!(n("handshakes_resumed"), 0);

    // The server counted the same.
    let m = s.handle().metrics();
    assert_eq!(m.registrations, n("registrations"), "{m:?}\n{r:#}");
    assert_eq!(m.deregistrations_requested, n("deregistered"), "{m:?}");
    assert_eq!(m.registered_clients, 0, "{m:?}");
    assert_eq!(m.dtls_handshakes_ok, n("handshakes"), "{m:?}");
    assert_eq!(m.dtls_handshakes_failed, 0, "{m:?}");
    assert_eq!(m.sends, n("sends_acknowledged"), "{m:?}");
    assert_eq!(m.notifications, n("notifications_sent"), "{m:?}");
    assert_eq!(n("notifications_delivered"), n("notifications_sent"));
    assert_eq!(m.registration_updates, n("updates"), "{m:?}");
    // Every command the backend sent (write-attr and observe included) reached a device
    // and was answered.
    assert_eq!(
        m.commands_success + m.commands_failure + m.commands_timeout,
        n("requests_answered"),
        "{m:?}"
    );
    assert_eq!(m.commands_failure + m.commands_timeout, 0, "{m:?}");
    s.stop().await;
}
