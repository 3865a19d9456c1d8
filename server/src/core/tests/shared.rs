//! A device that moves to another node of a cluster, in virtual time: the node it reaches
//! parks its requests, takes its state over from the shared store, and serves them as if the
//! device had always been there; the node it left forgets it without a word.
use super::*;
use crate::core::shared::{Found, Miss, Records};

/// What the shared store holds for `endpoint`, as node A wrote it.
fn found_in(store: &BTreeMap<(Table, Vec<u8>), Vec<u8>>, endpoint: &str) -> Found {
    let prefix = persist::device_prefix(endpoint);
    let records = |t: Table| -> Vec<(Vec<u8>, Vec<u8>)> {
        store
            .iter()
            .filter(|((tt, k), _)| *tt == t && k.starts_with(&prefix))
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect()
    };
    match store.get(&(Table::Registrations, endpoint.as_bytes().to_vec())) {
        Some(r) => Found::Device(Records {
            registration: r.clone(),
            observations: records(Table::Observations),
            queued: records(Table::Queue),
        }),
        None => Found::Nothing,
    }
}

/// Node B: a core of the same cluster, sharing registrations, with `peer` authenticated as
/// `endpoint` there.
fn node_b(w: &World, peer: u8, endpoint: &str) -> ServerCore<u8> {
    let base = (w.now(), w.core.wall(w.now()));
    let mut core = ServerCore::new(
        CoreConfig {
            rng_seed: 9,
            // Another node's message ids: the device's duplicate detection must not take
            // node B's first request for one of node A's.
            coap: EndpointConfig {
                rng_seed: 99,
                ..EndpointConfig::default()
            },
            ..CoreConfig::default()
        },
        Arc::new(Registry::bundled()),
        base,
    );
    core.share_registrations();
    let addr: std::net::SocketAddr = "198.51.100.9:5000".parse().unwrap();
    core.peer_authenticated(peer, Arc::from(endpoint), addr);
    core
}

#[test]
fn a_device_taken_over_keeps_its_registration_observation_and_queued_command() {
    let mut w = World::new();
    let a_addr: std::net::SocketAddr = "192.0.2.7:4000".parse().unwrap();
    w.core.peer_authenticated(1, Arc::from("meter-a"), a_addr);
    let loc = w.register(1, "meter-a", 3600, true);
    let path = Path::resource(3303, 0, 5700);
    w.submit("meter-a", DownlinkRequest::Observe { path });
    let obs = w
        .events
        .iter()
        .find_map(|e| match e {
            DeviceEvent::CommandResult {
                observation: Some(o),
                ..
            } => Some(*o),
            _ => None,
        })
        .expect("observing");
    w.advance(w.core.config.awake_window + Duration::from_secs(1));
    w.sleep(1, true);
    let queued = w.submit("meter-a", read(Path::resource(3, 0, 0)));
    w.advance(Duration::from_secs(60));
    // Node A dies; the device handshakes with node B and sends its Update there.
    let shared = w.store.clone();
    let b = node_b(&w, 1, "meter-a");
    let mut a = std::mem::replace(&mut w.core, b);
    w.events.clear();
    w.sleep(1, false);
    let id = w.send_from(1, Update::default().to_coap(&loc));
    assert!(w.reply(1, id).is_none(), "waits for the shared store");
    let location = loc.trim_start_matches("/rd/").to_string();
    assert_eq!(
        w.core.poll_miss(),
        Some(Miss {
            endpoint: "meter-a".into(),
            location: Some(location)
        })
    );
    assert_eq!(w.core.poll_miss(), None, "one miss per device");
    let now = w.now();
    let report = w.core.adopt(now, "meter-a", found_in(&shared, "meter-a"));
    w.flush();
    assert_eq!(
        (report.registrations, report.observations, report.queued),
        (1, 1, 1)
    );
    assert_eq!(
        w.reply(1, id).map(|r| r.header.code),
        Some(MessageClass::Response(ResponseType::Changed)),
        "the Update succeeds: no new Register"
    );
    assert!(
        w.results().iter().any(|(i, o)| *i == queued && o.is_ok()),
        "the command queued on node A reached the device through node B: {:?}",
        w.events
    );
    notify_from(&mut w, 1, &path, 30.0);
    assert_eq!(notifications(&w), vec![(obs, Some(Value::Float(30.0)))]);
    assert!(
        !w.events.iter().any(|e| matches!(
            e,
            DeviceEvent::Registered { .. } | DeviceEvent::Deregistered { .. }
        )),
        "{:?}",
        w.events
    );
    assert_eq!(
        w.core.registration("meter-a").unwrap().address,
        "198.51.100.9:5000"
    );
    // Node A, back, hands the device over: nothing reported, nothing failed, nothing kept.
    while a.poll_event().is_some() {}
    assert!(a.hand_over(now, "meter-a"));
    assert!(a.poll_event().is_none());
    assert_eq!(a.device_count(), 0);
    let mut a_store = shared;
    while let Some(op) = a.poll_store() {
        op.apply_to(&mut a_store);
    }
    assert!(
        !a_store
            .keys()
            .any(|(t, _)| matches!(t, Table::Registrations | Table::Observations | Table::Queue)),
        "{a_store:?}"
    );
}

#[test]
fn without_a_shared_registration_an_update_is_refused_and_a_register_goes_on() {
    let mut w = World::new();
    w.core = node_b(&w, 1, "meter-a");
    // An Update of a registration the cluster does not hold: 4.04, so the device registers.
    let id = w.send_from(1, Update::default().to_coap("/rd/0123456789abcdef"));
    let now = w.now();
    assert!(w.core.poll_miss().is_some());
    w.core.adopt(now, "meter-a", Found::Nothing);
    w.flush();
    assert_eq!(
        w.reply(1, id).map(|r| r.header.code),
        Some(MessageClass::Response(ResponseType::NotFound))
    );
    // The shared store unreachable: an Update is asked again later (5.03), not refused...
    let id = w.send_from(1, Update::default().to_coap("/rd/0123456789abcdef"));
    assert!(w.core.poll_miss().is_some());
    w.core.adopt(now, "meter-a", Found::Unavailable);
    w.flush();
    assert_eq!(
        w.reply(1, id).map(|r| r.header.code),
        Some(MessageClass::Response(ResponseType::ServiceUnavailable))
    );
    // ...and a Register is served by this node alone.
    let r = Register::new("meter-a", parse_registration_links(b"</3/0>").unwrap());
    let id = w.send_from(1, r.to_coap());
    assert!(w.core.poll_miss().is_some());
    w.core.adopt(now, "meter-a", Found::Unavailable);
    w.flush();
    assert_eq!(
        w.reply(1, id).map(|r| r.header.code),
        Some(MessageClass::Response(ResponseType::Created))
    );
    // Held now: its next Update is served at once, without the store.
    let loc = w.core.registration("meter-a").unwrap().location.clone();
    let id = w.send_from(1, Update::default().to_coap(&loc));
    assert_eq!(w.core.poll_miss(), None);
    assert_eq!(
        w.reply(1, id).map(|r| r.header.code),
        Some(MessageClass::Response(ResponseType::Changed))
    );
    // A NoSec device is never parked: it has no name before its request is read.
    w.register(2, "sensor-1", 300, false);
    assert_eq!(w.core.poll_miss(), None);
    assert_eq!(w.core.parked(), 0);
}
