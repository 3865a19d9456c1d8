//! Firmware update end to end (OMA LwM2M TS 1.2 Core Appendix E.6, RFC 7959): real devices
//! (`lwm2m::client` with Object 5, behind real DTLS clients) and the real server, through a
//! lossy relay on loopback. A 300 KB package reaches one device by pull and another by push
//! across 20 % loss, each checks the SHA-256 and reports the new version; a pull cut off
//! midway resumes where it stopped; a campaign over 200 devices, some made to fail, finishes
//! across a server restart with every device's outcome.
#![allow(clippy::unwrap_used)]
use lwm2m::client::{firmware_instance, firmware_package, ClientConfig, ClientEvent, ObjectStore};
use lwm2m_e2e_tests::lossy::LossyRelay;
use lwm2m_e2e_tests::{free_port, Device, TestServer};
use lwm2m_server::core::types::{DeviceEvent, FirmwareOutcome};
use lwm2m_server::provisioning::admin::AdminOp;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

const KEY: &[u8] = b"firmware-key-016";

/// A package of `size` payload bytes for version `version`, stored on the server; its id.
async fn add_package(s: &TestServer, dir: &Path, version: &str, size: usize) -> String {
    let payload: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
    let file = dir.join(format!("fw-{version}.bin"));
    std::fs::write(&file, firmware_package(version, &payload)).unwrap();
    let reply = s
        .handle()
        .admin(AdminOp::FwAdd {
            path: file,
            version: version.into(),
            name: String::new(),
        })
        .await
        .unwrap();
    assert!(reply.ok, "{reply:?}");
    reply.package.unwrap().id
}

async fn campaign(
    s: &TestServer,
    package: &str,
    endpoints: &[String],
    method: &str,
    n: usize,
) -> String {
    let reply = s
        .handle()
        .admin(AdminOp::FwUpdate {
            package: package.into(),
            endpoints: endpoints.to_vec(),
            all: false,
            model: None,
            from_version: None,
            method: Some(method.into()),
            concurrency: Some(n),
            require_version: false,
        })
        .await
        .unwrap();
    assert!(reply.ok, "{reply:?}");
    reply.campaign.unwrap()
}

/// Waits until every one of `endpoints` has an outcome (at most `within`); returns them with
/// the version read.
async fn outcomes(
    s: &mut TestServer,
    endpoints: &[String],
    within: Duration,
) -> HashMap<String, (FirmwareOutcome, Option<String>)> {
    let mut done = HashMap::new();
    collect(s, &mut done, endpoints.len(), within).await;
    for ep in endpoints {
        assert!(done.contains_key(ep), "no outcome for {ep}: {done:?}");
    }
    done
}

/// Collects outcomes into `done` until it holds `want` (at most `within`).
async fn collect(
    s: &mut TestServer,
    done: &mut HashMap<String, (FirmwareOutcome, Option<String>)>,
    want: usize,
    within: Duration,
) {
    let deadline = tokio::time::Instant::now() + within;
    while done.len() < want {
        let ev = tokio::time::timeout_at(deadline, s.events.recv())
            .await
            .unwrap_or_else(|_| panic!("{} outcomes after {within:?}: {done:?}", done.len()));
        if let Ok(DeviceEvent::Firmware {
            endpoint,
            outcome: Some(o),
            version,
            ..
        }) = ev
        {
            done.insert(endpoint, (o, version));
        }
    }
}

/// A device with Object 5 behind DTLS PSK, reaching the server at `via`.
async fn firmware_device(
    s: &TestServer,
    ep: &str,
    via: SocketAddr,
    config: ClientConfig,
) -> Device {
    s.provision_psk(ep, ep, KEY).await;
    let mut store = ObjectStore::standard_with_server(ep, &format!("coaps://{via}"));
    store.add_instance(5, 0, firmware_instance()).unwrap();
    let dtls = dtls::ClientConfig::psk(ep.as_bytes().to_vec(), KEY.to_vec());
    Device::start_secure_with(via, config, store, dtls)
        .await
        .unwrap()
}

/// Fast CoAP timers on both sides, so that 20 % loss costs seconds, not minutes.
fn fast(ep: &str) -> ClientConfig {
    let mut c = ClientConfig::new(ep);
    c.coap.transmission.ack_timeout = Duration::from_millis(150);
    c.coap.transmission.ack_random_factor = 1.2;
    c.coap.transmission.max_retransmit = 8;
    c
}

/// A server whose Package URIs name the relay its devices go through.
async fn server(dir: &Path, relay_port: u16, secure_port: u16, extra: &str) -> TestServer {
    let config = format!(
        "[firmware]\ncoaps_uri = \"coaps://127.0.0.1:{relay_port}\"\npush_block_size = 1024\n[coap]\nack_timeout_ms = 150\nack_random_factor = 1.2\nmax_retransmit = 8\n{extra}"
    );
    TestServer::start_on(dir, 0, secure_port, &config)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_300_kb_package_arrives_by_pull_and_by_push_across_20_percent_loss() {
    let dir = tempfile::tempdir().unwrap();
    let secure_port = free_port();
    let upstream = SocketAddr::from(([127, 0, 0, 1], secure_port));
    let relay = LossyRelay::start(upstream, 0.2, 7).await.unwrap();
    let mut s = server(dir.path(), relay.addr.port(), secure_port, "").await;
    let package = add_package(&s, dir.path(), "2.0.0", 300 * 1024).await;
    let mut puller = firmware_device(&s, "fw-pull", relay.addr, fast("fw-pull")).await;
    let mut pusher = firmware_device(&s, "fw-push", relay.addr, fast("fw-push")).await;
    puller.registered().await;
    pusher.registered().await;

    campaign(&s, &package, &["fw-pull".into()], "pull", 1).await;
    campaign(&s, &package, &["fw-push".into()], "push", 1).await;
    let done = outcomes(
        &mut s,
        &["fw-pull".into(), "fw-push".into()],
        Duration::from_secs(300),
    )
    .await;
    for ep in ["fw-pull", "fw-push"] {
        assert_eq!(
            done[ep],
            (FirmwareOutcome::Success, Some("2.0.0".to_string())),
            "{ep}"
        );
    }
    assert!(
        relay
            .stats
            .dropped
            .load(std::sync::atomic::Ordering::Relaxed)
            > 100
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_cut_off_midway_resumes_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let secure_port = free_port();
    let upstream = SocketAddr::from(([127, 0, 0, 1], secure_port));
    let relay = LossyRelay::start(upstream, 0.0, 1).await.unwrap();
    let mut s = server(dir.path(), relay.addr.port(), secure_port, "").await;
    let size = 200 * 1024;
    let package = add_package(&s, dir.path(), "3.0.0", size).await;
    let mut dev = firmware_device(&s, "fw-cut", relay.addr, fast("fw-cut")).await;
    dev.registered().await;
    let before = relay.stats.down.load(std::sync::atomic::Ordering::Relaxed);
    campaign(&s, &package, &["fw-cut".into()], "pull", 1).await;
    // Out of coverage once a third of the blocks arrived, for a few seconds.
    let blocks = size / 1024;
    while relay.stats.down.load(std::sync::atomic::Ordering::Relaxed) - before < blocks as u64 / 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    relay.cut(true);
    tokio::time::sleep(Duration::from_secs(4)).await;
    relay.cut(false);
    let done = outcomes(&mut s, &["fw-cut".into()], Duration::from_secs(120)).await;
    assert_eq!(done["fw-cut"].0, FirmwareOutcome::Success);
    let down = relay.stats.down.load(std::sync::atomic::Ordering::Relaxed) - before;
    assert!(
        down < 2 * blocks as u64,
        "{down} datagrams to the device for {blocks} blocks: the download started over"
    );
}

/// A campaign over 200 NoSec devices, 20 at a time, twenty of them made to fail; the server
/// restarts in the middle. Every device ends with one outcome: the failing ones with their
/// Update Result, and none updated twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_over_200_devices_survives_a_server_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (port, secure_port) = (free_port(), free_port());
    let extra = format!("[firmware]\ncoap_uri = \"coap://127.0.0.1:{port}\"\n");
    let mut s = TestServer::start_on(dir.path(), port, secure_port, &extra)
        .await
        .unwrap();
    let package = add_package(&s, dir.path(), "5.0.0", 8 * 1024).await;
    let endpoints: Vec<String> = (0..200).map(|i| format!("fleet-{i:03}")).collect();
    let mut devices = Vec::new();
    for (i, ep) in endpoints.iter().enumerate() {
        let mut config = ClientConfig::new(ep);
        config.firmware_fail_with = match i {
            0..=9 => Some(5),
            10..=19 => Some(6),
            _ => None,
        };
        let mut store = ObjectStore::standard_with_server(ep, &format!("coap://127.0.0.1:{port}"));
        store.add_instance(5, 0, firmware_instance()).unwrap();
        devices.push(Device::start_with(s.addr, config, store).await.unwrap());
    }
    for d in &mut devices {
        d.registered().await;
    }
    let id = campaign(&s, &package, &endpoints, "pull", 20).await;

    // Half-way, the server stops and starts again on the same ports and data.
    let mut before = HashMap::new();
    collect(&mut s, &mut before, 90, Duration::from_secs(120)).await;
    assert!(before.len() < 200, "the restart must come in the middle");
    s.stop().await;
    let s = TestServer::start_on(dir.path(), port, secure_port, &extra)
        .await
        .unwrap();

    // The campaign goes on where it was, and ends with every device's outcome.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    let status = loop {
        let reply = s
            .handle()
            .admin(AdminOp::FwStatus {
                campaign: id.clone(),
            })
            .await
            .unwrap();
        let status = reply.firmware.unwrap();
        if status["finished"] == true {
            break status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not finished: {}",
            status["totals"]
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let totals = &status["totals"];
    assert_eq!(totals["done:success"], 180, "{totals}");
    assert_eq!(totals["done:integrity_failure"], 10, "{totals}");
    assert_eq!(totals["done:unsupported_package"], 10, "{totals}");
    for d in status["devices"].as_array().unwrap() {
        let ep = d["endpoint"].as_str().unwrap();
        let i: usize = ep.trim_start_matches("fleet-").parse().unwrap();
        let (outcome, result) = match i {
            0..=9 => ("integrity_failure", 5),
            10..=19 => ("unsupported_package", 6),
            _ => ("success", 1),
        };
        assert_eq!(
            (d["outcome"].as_str(), d["result"].as_i64()),
            (Some(outcome), Some(result)),
            "{d}"
        );
    }
    // No device was updated twice: each one that succeeded updated exactly once.
    for (i, d) in devices.iter_mut().enumerate() {
        let mut updates = 0;
        while let Ok(ev) = d.events.try_recv() {
            updates += usize::from(matches!(ev, ClientEvent::FirmwareUpdated { .. }));
        }
        assert_eq!(updates, usize::from(i >= 20), "fleet-{i:03}");
    }
}
