//! Firmware Update (Object 5, Core Appendix E.6) against a scripted server: push with
//! Block1, pull with Block2 over loss and across an outage, the checks of the package, the
//! update and the new registration after it.
use super::*;
use crate::client::{firmware_instance, firmware_package, package_etag};
use crate::coap::{CoapOption, MessageClass};
use crate::model::Value;
use proptest::prelude::*;
use std::cell::Cell;
use std::rc::Rc;

const SIZE: usize = 300 * 1024;

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn payload(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 + i / 7) as u8).collect()
}

fn device(c: ClientConfig) -> Net {
    let mut store = ObjectStore::standard("dev-1");
    store.add_instance(5, 0, firmware_instance()).unwrap();
    Net::registered_with(c, store)
}

fn int(net: &Net, path: &str) -> Option<i64> {
    match net.client.store().value(&Path::parse(path).unwrap()) {
        Some(Value::Integer(v)) => Some(*v),
        _ => None,
    }
}

fn string(net: &Net, path: &str) -> Option<String> {
    match net.client.store().value(&Path::parse(path).unwrap()) {
        Some(Value::String(v)) => Some(v.clone()),
        _ => None,
    }
}

/// Writes `bytes` to `/5/0/0` as opaque (Block1 when large) and returns the answer code.
fn push(net: &mut Net, bytes: &[u8]) -> String {
    let req = with_payload(
        request(RequestType::Put, "/5/0/0", None),
        ContentFormat::Opaque,
        bytes,
    );
    let id = net.send(req);
    assert!(net.run_until(secs(600.0), |n| n.outcome(id).is_some()));
    code(&net.outcome(id).unwrap().unwrap())
}

fn execute(net: &mut Net, path: &str) -> String {
    code(&net.ask(request(RequestType::Post, path, None)))
}

fn write_uri(net: &mut Net, uri: &str) -> String {
    let req = with_payload(
        request(RequestType::Put, "/5/0/1", None),
        ContentFormat::Text,
        uri.as_bytes(),
    );
    code(&net.ask(req))
}

/// A file server for `/fw/pkg` serving `package` with its ETag (the server endpoint slices
/// the blocks and keeps the body for the next ones); counts what reaches it.
fn serve(net: &mut Net, package: Vec<u8>, etag: Vec<u8>) -> Rc<Cell<u32>> {
    let count = Rc::new(Cell::new(0));
    let c = count.clone();
    net.files = Some(Box::new(move |req: &Packet| {
        c.set(c.get() + 1);
        let mut r = msg::response(ResponseType::Content);
        r.add_option(CoapOption::ETag, etag.clone());
        msg::set_uint_option(&mut r, CoapOption::ContentFormat, 42);
        r.payload = package.clone();
        let _ = req;
        Some(r)
    }));
    count
}

fn lossy(net: &mut Net, loss: f64) {
    let wire = std::mem::replace(&mut net.wire, netsim::Net::new(0));
    net.wire = wire.with_faults(netsim::Faults {
        loss,
        latency: Duration::from_millis(50),
        ..netsim::Faults::default()
    });
}

/// The block numbers the client asked for, in order.
fn blocks_asked(net: &Net) -> Vec<u32> {
    net.client_tx()
        .iter()
        .filter(|(_, p)| p.header.code == MessageClass::Request(RequestType::Get))
        .filter(|(_, p)| msg::uri_path(p) == "/fw/pkg")
        .filter_map(|(_, p)| msg::block_option(p, CoapOption::Block2).map(|b| b.num))
        .collect()
}

#[test]
fn a_pushed_package_installs_and_the_device_registers_again() {
    let mut net = device(config());
    let state = {
        let req = DownlinkRequest::Observe {
            path: Path::parse("/5/0/3").unwrap(),
        }
        .to_coap(ContentFormat::Text)
        .unwrap();
        let id = net.send(req);
        assert!(net.run_until(secs(5.0), |n| n.outcome(id).is_some()));
        id
    };
    let pkg = firmware_package("2.0.0", &payload(SIZE));
    assert_eq!(push(&mut net, &pkg), "2.04");
    net.run_for(secs(1.0));
    assert_eq!(int(&net, "/5/0/3"), Some(2));
    assert_eq!(int(&net, "/5/0/5"), Some(0));
    assert_eq!(string(&net, "/5/0/7").as_deref(), Some("2.0.0"));
    // Observers saw the push arrive and complete.
    let states: Vec<String> = net
        .notifications(state)
        .iter()
        .map(|(_, p)| String::from_utf8_lossy(&p.payload).into_owned())
        .collect();
    assert_eq!(states, ["1", "2"]);
    // The device never held the package in its object store.
    assert!(net
        .client
        .store()
        .value(&Path::parse("/5/0/0").unwrap())
        .is_none());

    assert_eq!(execute(&mut net, "/5/0/2"), "2.04");
    assert_eq!(int(&net, "/5/0/3"), Some(3));
    assert!(net.run_until(secs(10.0), |n| n.seen_at("/rd").len() == 1));
    assert_eq!(string(&net, "/3/0/3").as_deref(), Some("2.0.0"));
    assert_eq!(
        (int(&net, "/5/0/3"), int(&net, "/5/0/5")),
        (Some(0), Some(1))
    );
    let updated = net.client_events(|e| match e {
        ClientEvent::FirmwareUpdated { version } => Some(version.clone()),
        _ => None,
    });
    assert_eq!(updated, ["2.0.0"]);
    assert!(net.run_until(secs(5.0), |n| n.client.is_registered()));
    assert_eq!(
        net.client.location(),
        Some("/rd/r2"),
        "a new registration, as after a reboot"
    );
    // Updating, then Idle: notified before the new Register dropped the observation.
    let states: Vec<String> = net
        .notifications(state)
        .iter()
        .map(|(_, p)| String::from_utf8_lossy(&p.payload).into_owned())
        .collect();
    assert_eq!(states, ["1", "2", "3", "0"]);
}

#[test]
fn update_is_refused_unless_downloaded_and_fail_with_reports_its_result() {
    let mut c = config();
    c.firmware_fail_with = Some(8);
    let mut net = device(c);
    assert_eq!(execute(&mut net, "/5/0/2"), "4.05");
    let pkg = firmware_package("9", &payload(3000));
    assert_eq!(push(&mut net, &pkg), "2.04");
    assert_eq!(execute(&mut net, "/5/0/2"), "2.04");
    net.run_for(secs(10.0));
    assert_eq!(
        (int(&net, "/5/0/3"), int(&net, "/5/0/5")),
        (Some(0), Some(8))
    );
    assert_ne!(string(&net, "/3/0/3").as_deref(), Some("9"));
    assert!(net.seen_at("/rd").is_empty(), "no reboot, no new Register");
}

#[test]
fn a_corrupted_package_is_result_5_and_a_foreign_one_result_6() {
    let mut net = device(config());
    let mut pkg = firmware_package("2", &payload(5000));
    let last = pkg.len() - 1;
    pkg[last] ^= 0x40;
    assert_eq!(push(&mut net, &pkg), "2.04");
    assert_eq!(
        (int(&net, "/5/0/3"), int(&net, "/5/0/5")),
        (Some(0), Some(5))
    );
    assert_eq!(push(&mut net, b"#!/bin/sh\necho not firmware\n"), "2.04");
    assert_eq!(
        (int(&net, "/5/0/3"), int(&net, "/5/0/5")),
        (Some(0), Some(6))
    );
    // A NUL package resets the state machine.
    assert_eq!(push(&mut net, &[0]), "2.04");
    assert_eq!(
        (int(&net, "/5/0/3"), int(&net, "/5/0/5")),
        (Some(0), Some(0))
    );
}

#[test]
fn a_package_over_the_limit_is_result_2() {
    let mut c = config();
    c.firmware_max_package = 64 * 1024;
    let mut net = device(c);
    let pkg = firmware_package("2", &payload(100 * 1024));
    assert_eq!(push(&mut net, &pkg), "4.13");
    assert_eq!(
        (int(&net, "/5/0/3"), int(&net, "/5/0/5")),
        (Some(0), Some(2))
    );
}

#[test]
fn a_pull_over_20_percent_loss_completes_and_checks() {
    let mut net = device(config());
    let pkg = firmware_package("3.1", &payload(SIZE));
    let served = serve(&mut net, pkg.clone(), package_etag(&pkg).to_vec());
    assert_eq!(write_uri(&mut net, "coap://localhost:5683/fw/pkg"), "2.04");
    lossy(&mut net, 0.2);
    assert!(net.run_until(secs(6.0 * 3600.0), |n| int(n, "/5/0/3") != Some(1)));
    // State 2 with Result 0: the payload's SHA-256 and the ETag both matched.
    assert_eq!(
        (int(&net, "/5/0/3"), int(&net, "/5/0/5")),
        (Some(2), Some(0))
    );
    assert_eq!(string(&net, "/5/0/7").as_deref(), Some("3.1"));
    assert!(served.get() >= 1);
    let blocks = pkg.len().div_ceil(1024);
    let distinct: std::collections::BTreeSet<u32> = blocks_asked(&net).into_iter().collect();
    assert_eq!(distinct.len(), blocks);
}

#[test]
fn an_interrupted_pull_resumes_where_it_stopped() {
    let mut net = device(config());
    let pkg = firmware_package("4", &payload(SIZE));
    let blocks = pkg.len().div_ceil(1024);
    serve(&mut net, pkg.clone(), package_etag(&pkg).to_vec());
    assert_eq!(write_uri(&mut net, "coap://localhost:5683/fw/pkg"), "2.04");
    assert!(net.run_until(secs(600.0), |n| blocks_asked(n).len() >= 100));
    net.server_down(true);
    net.run_for(secs(400.0));
    assert_eq!(int(&net, "/5/0/3"), Some(1), "still downloading");
    let during = blocks_asked(&net);
    net.server_down(false);
    assert!(net.run_until(secs(3600.0), |n| int(n, "/5/0/3") != Some(1)));
    assert_eq!(
        (int(&net, "/5/0/3"), int(&net, "/5/0/5")),
        (Some(2), Some(0))
    );
    let asked = blocks_asked(&net);
    let distinct: std::collections::BTreeSet<u32> = asked.iter().copied().collect();
    assert_eq!(distinct.len(), blocks);
    // Every datagram asking for a block, retransmissions included.
    assert!(asked.len() < 2 * blocks, "{} for {blocks}", asked.len());
    // After the outage the device asked for the block it lacked, not block 0.
    let first_after = asked.get(during.len()).copied();
    assert_eq!(
        first_after,
        during.last().copied(),
        "resumed at the block it lacked"
    );
    assert!(first_after > Some(90));
    assert_eq!(
        asked.iter().filter(|n| **n == 0).count(),
        1,
        "never restarted"
    );
}

#[test]
fn a_wrong_etag_is_result_5() {
    let mut net = device(config());
    let pkg = firmware_package("5", &payload(20_000));
    serve(&mut net, pkg.clone(), b"wrongtag".to_vec());
    assert_eq!(write_uri(&mut net, "coap://localhost:5683/fw/pkg"), "2.04");
    assert!(net.run_until(secs(600.0), |n| int(n, "/5/0/3") != Some(1)));
    assert_eq!(
        (int(&net, "/5/0/3"), int(&net, "/5/0/5")),
        (Some(0), Some(5))
    );
}

#[test]
fn a_uri_elsewhere_is_result_7_another_scheme_9_and_empty_resets() {
    let mut net = device(config());
    assert_eq!(write_uri(&mut net, "coap://elsewhere:5683/fw/pkg"), "2.04");
    assert_eq!(
        (int(&net, "/5/0/3"), int(&net, "/5/0/5")),
        (Some(0), Some(7))
    );
    assert_eq!(write_uri(&mut net, "https://localhost/fw/pkg"), "2.04");
    assert_eq!(
        (int(&net, "/5/0/3"), int(&net, "/5/0/5")),
        (Some(0), Some(9))
    );
    assert_eq!(write_uri(&mut net, ""), "2.04");
    assert_eq!(
        (int(&net, "/5/0/3"), int(&net, "/5/0/5")),
        (Some(0), Some(0))
    );
    // A URI the server does not serve.
    net.files = Some(Box::new(|_: &Packet| {
        Some(msg::response(ResponseType::NotFound))
    }));
    assert_eq!(write_uri(&mut net, "coap://localhost/fw/none"), "2.04");
    assert!(net.run_until(secs(60.0), |n| int(n, "/5/0/3") != Some(1)));
    assert_eq!(
        (int(&net, "/5/0/3"), int(&net, "/5/0/5")),
        (Some(0), Some(7))
    );
}

#[test]
fn a_queue_mode_device_stays_awake_while_it_pulls() {
    let mut c = config();
    c.queue_mode = true;
    let mut net = device(c);
    let pkg = firmware_package("6", &payload(SIZE));
    serve(&mut net, pkg.clone(), package_etag(&pkg).to_vec());
    assert_eq!(write_uri(&mut net, "coap://localhost:5683/fw/pkg"), "2.04");
    net.run_for(secs(5.0));
    // The server is gone for longer than the awake time: the device keeps asking.
    net.server_down(true);
    net.run_for(secs(300.0));
    assert!(net.client.is_awake());
    assert_eq!(int(&net, "/5/0/3"), Some(1));
    net.server_down(false);
    assert!(net.run_until(secs(3600.0), |n| int(n, "/5/0/3") != Some(1)));
    assert_eq!(
        (int(&net, "/5/0/3"), int(&net, "/5/0/5")),
        (Some(2), Some(0))
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn any_bytes_written_as_package_never_panic(
        bytes in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..3000),
            (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..400)).prop_map(|(v, p)| {
                let mut pkg = firmware_package(&v.to_string(), &p);
                if let Some(b) = pkg.get_mut(usize::from(v) % 80) { *b ^= v; }
                pkg
            }),
        ]
    ) {
        let mut net = device(config());
        let answer = push(&mut net, &bytes);
        prop_assert_eq!(answer, "2.04");
        let state = int(&net, "/5/0/3");
        let result = int(&net, "/5/0/5");
        prop_assert!(matches!((state, result), (Some(0), Some(0 | 5 | 6)) | (Some(2), Some(0))));
    }
}

#[test]
fn a_changed_etag_restarts_the_download_from_the_first_block() {
    let mut net = device(config());
    // A server that keeps no bodies between blocks, so every block request reaches the
    // file server, which replaces the package after ten of them.
    net.server = Endpoint::new(EndpointConfig {
        rng_seed: 78,
        max_block2_bytes: 0,
        ..EndpointConfig::default()
    });
    let old = firmware_package("7.0", &payload(40_000));
    let new = firmware_package("7.1", &payload(30_000));
    let served = Rc::new(Cell::new(0u32));
    let count = served.clone();
    net.files = Some(Box::new(move |_: &Packet| {
        count.set(count.get() + 1);
        let pkg = if count.get() <= 10 { &old } else { &new };
        let mut r = msg::response(ResponseType::Content);
        r.add_option(CoapOption::ETag, package_etag(pkg).to_vec());
        r.payload = pkg.clone();
        Some(r)
    }));
    assert_eq!(write_uri(&mut net, "coap://localhost:5683/fw/pkg"), "2.04");
    assert!(net.run_until(secs(600.0), |n| int(n, "/5/0/3") != Some(1)));
    assert_eq!(
        (int(&net, "/5/0/3"), int(&net, "/5/0/5")),
        (Some(2), Some(0))
    );
    assert_eq!(string(&net, "/5/0/7").as_deref(), Some("7.1"));
    let asked = blocks_asked(&net);
    assert_eq!(asked.iter().filter(|n| **n == 0).count(), 2, "{asked:?}");
}

#[test]
fn cancel_stops_a_download_but_not_an_update() {
    let mut net = device(config());
    let pkg = firmware_package("8", &payload(SIZE));
    serve(&mut net, pkg.clone(), package_etag(&pkg).to_vec());
    assert_eq!(write_uri(&mut net, "coap://localhost:5683/fw/pkg"), "2.04");
    net.run_for(secs(1.0));
    assert_eq!(int(&net, "/5/0/3"), Some(1));
    assert_eq!(execute(&mut net, "/5/0/10"), "2.04");
    assert_eq!(
        (int(&net, "/5/0/3"), int(&net, "/5/0/5")),
        (Some(0), Some(10))
    );
    let asked = blocks_asked(&net).len();
    net.run_for(secs(60.0));
    assert_eq!(
        blocks_asked(&net).len(),
        asked,
        "no block asked after Cancel"
    );

    assert_eq!(
        push(&mut net, &firmware_package("8", &payload(2000))),
        "2.04"
    );
    assert_eq!(execute(&mut net, "/5/0/2"), "2.04");
    assert_eq!(
        execute(&mut net, "/5/0/10"),
        "4.05",
        "Updating cannot be cancelled"
    );
    assert!(net.run_until(secs(10.0), |n| int(n, "/5/0/5") == Some(1)));
}

#[test]
fn a_package_smaller_than_a_block_comes_in_one_exchange() {
    let mut net = device(config());
    let pkg = firmware_package("9.9", &payload(600));
    let body = pkg.clone();
    net.files = Some(Box::new(move |_: &Packet| {
        let mut r = msg::response(ResponseType::Content);
        r.payload = body.clone();
        Some(r)
    }));
    assert_eq!(write_uri(&mut net, "coap://localhost:5683/fw/pkg"), "2.04");
    assert!(net.run_until(secs(60.0), |n| int(n, "/5/0/3") != Some(1)));
    assert_eq!(
        (int(&net, "/5/0/3"), int(&net, "/5/0/5")),
        (Some(2), Some(0))
    );
    assert_eq!(string(&net, "/5/0/7").as_deref(), Some("9.9"));
}
