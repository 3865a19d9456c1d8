//! RFC 7641: registration, notifications in order (stale ones dropped), confirmable
//! notifications that replace each other, block-wise notifications, and every way an
//! observation ends.
use super::*;
use crate::coap::event::{CancelMode, ObserverGoneReason};
use crate::coap::{CoapOption, MessageType, ObserverId};

/// A pair where the client (0) observes /obs on the server (1).
fn observed(seed: u64) -> (Net, RequestId, ObserverId) {
    let mut net = Net::pair(
        EndpointConfig::default(),
        seed,
        Box::new(|_| Some(content(b"initial"))),
    );
    let id = net.request(0, 1, observe("/obs"), RequestOptions::default());
    net.run_until(Duration::from_secs(10), |n| n.outcome(0, id).is_some());
    let first = net.outcome(0, id).unwrap().unwrap();
    assert_eq!(first.payload, b"initial");
    assert!(msg::observe(&first).is_some());
    let oid = net.nodes[1].observers[0];
    (net, id, oid)
}

fn notifications(net: &mut Net) -> Vec<(Vec<u8>, Option<u32>)> {
    net.take_events(0, |e| match e {
        Event::Notification { response, seq, .. } => Some((response.payload.clone(), *seq)),
        _ => None,
    })
}

fn gone(net: &mut Net) -> Vec<ObserverGoneReason> {
    net.take_events(1, |e| match e {
        Event::ObserverGone { reason, .. } => Some(*reason),
        _ => None,
    })
}

fn notify(net: &mut Net, oid: ObserverId, payload: &[u8], con: bool) {
    let now = net.now();
    net.ep(1).notify(now, oid, content(payload), con).unwrap();
    net.flush();
}

#[test]
fn notifications_arrive_in_order_confirmable_or_not() {
    let (mut net, id, oid) = observed(1);
    for (i, con) in [(1, true), (2, false), (3, true)] {
        notify(&mut net, oid, format!("v{i}").as_bytes(), con);
        net.run_until(Duration::from_secs(1), |_| false);
    }
    let got = notifications(&mut net);
    assert_eq!(
        got.iter().map(|g| g.0.clone()).collect::<Vec<_>>(),
        vec![b"v1".to_vec(), b"v2".to_vec(), b"v3".to_vec()]
    );
    assert!(
        got.windows(2).all(|w| w[0].1 < w[1].1),
        "sequence numbers increase"
    );
    // The observation does not hold the peer's NSTART slot: another request goes through.
    let other = net.request(0, 1, get("/other"), RequestOptions::default());
    net.run_until(Duration::from_secs(5), |n| n.outcome(0, other).is_some());
    assert!(net.outcome(0, other).unwrap().is_ok());
    assert_eq!(
        net.ep(0).usage().outgoing,
        1,
        "only the observation is left: {id:?}"
    );
}

#[test]
fn out_of_order_notifications_are_dropped() {
    let (mut net, _id, _oid) = observed(2);
    let token = parse(&net.sent()[0].bytes).get_token().to_vec();
    let note = |seq: u32, mid: u16| {
        let mut n = content(format!("seq {seq}").as_bytes());
        n.header.set_type(MessageType::NonConfirmable);
        n.header.message_id = mid;
        n.set_token(token.clone());
        msg::set_uint_option(&mut n, CoapOption::Observe, seq);
        n.to_bytes().unwrap()
    };
    let base = msg::observe(&net.outcome(0, _id).unwrap().unwrap()).unwrap();
    net.inject(1, 0, &note(base + 10, 100));
    net.inject(1, 0, &note(base + 12, 101));
    net.inject(1, 0, &note(base + 11, 102)); // overtaken by +12: stale
    net.inject(1, 0, &note(base + 5, 103)); // older still
    let got: Vec<_> = notifications(&mut net)
        .into_iter()
        .map(|n| n.1.unwrap() - base)
        .collect();
    assert_eq!(got, vec![10, 12]);
    // RFC 7641 §3.4: after 128 s, any notification counts as newer.
    net.run_until(Duration::from_secs(129), |_| false);
    net.inject(1, 0, &note(base + 1, 104));
    assert_eq!(notifications(&mut net).len(), 1);
}

#[test]
fn passive_cancel_resets_the_next_notification() {
    for con in [true, false] {
        let (mut net, id, oid) = observed(3);
        let now = net.now();
        net.ep(0)
            .cancel_observe(now, id, CancelMode::Passive)
            .unwrap();
        net.flush();
        notify(&mut net, oid, b"unwanted", con);
        net.run_until(Duration::from_secs(5), |_| false);
        assert!(notifications(&mut net).is_empty());
        assert_eq!(gone(&mut net), vec![ObserverGoneReason::Reset], "con={con}");
        assert_eq!(net.ep(1).usage().observers, 0);
    }
}

#[test]
fn active_cancel_deregisters_with_observe_1() {
    let (mut net, id, _oid) = observed(4);
    let now = net.now();
    net.ep(0)
        .cancel_observe(now, id, CancelMode::Active)
        .unwrap();
    net.flush();
    net.run_until(Duration::from_secs(5), |_| false);
    assert_eq!(gone(&mut net), vec![ObserverGoneReason::Deregistered]);
    let last_request = net.nodes[1].events.iter().rev().find_map(|e| match e {
        Event::Request(r) => Some(r.request.clone()),
        _ => None,
    });
    assert_eq!(last_request.and_then(|r| msg::observe(&r)), Some(1));
    let responses = net.take_events(0, |e| {
        matches!(e, Event::Response { id: i, .. } if *i == id).then_some(())
    });
    assert_eq!(
        responses.len(),
        2,
        "registration and cancellation each got a response"
    );
    assert_eq!(net.ep(0).usage().outgoing, 0);
}

#[test]
fn unacknowledged_confirmable_notification_removes_the_observer() {
    let (mut net, _id, oid) = observed(5);
    net.wire.faults.loss = 1.0;
    notify(&mut net, oid, b"lost", true);
    net.run_until(Duration::from_secs(200), |_| false);
    assert_eq!(gone(&mut net), vec![ObserverGoneReason::Timeout]);
}

#[test]
fn newer_confirmable_notification_replaces_the_one_waiting() {
    let (mut net, _id, oid) = observed(6);
    net.wire.faults.loss = 1.0;
    notify(&mut net, oid, b"a", true);
    notify(&mut net, oid, b"b", true);
    notify(&mut net, oid, b"c", true);
    // Only "a" went out; "c" displaced "b" in the queue.
    let sent_before = net.sent().len();
    net.wire.faults.loss = 0.0;
    net.run_until(Duration::from_secs(20), |n| {
        !n.nodes[0]
            .events
            .iter()
            .all(|e| !matches!(e, Event::Notification { .. }))
    });
    let payloads: Vec<_> = net.sent()[sent_before - 1..]
        .iter()
        .filter(|s| s.from == 1)
        .map(|s| parse(&s.bytes).payload)
        .collect();
    assert_eq!(payloads.first().map(|p| p.as_slice()), Some(&b"a"[..]));
    // The retransmission carries the newest state, "b" is never sent.
    let got: Vec<_> = notifications(&mut net).into_iter().map(|n| n.0).collect();
    assert_eq!(got, vec![b"c".to_vec()]);
    assert!(!net.sent().iter().any(|s| parse(&s.bytes).payload == b"b"));
}

#[test]
fn large_notification_is_fetched_block_wise_and_delivered_whole() {
    let (mut net, _id, oid) = observed(7);
    notify(&mut net, oid, &body(3000), false);
    net.run_until(Duration::from_secs(10), |_| false);
    let got = notifications(&mut net);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, body(3000));
}

#[test]
fn error_notification_ends_the_observation() {
    let (mut net, _id, oid) = observed(8);
    let now = net.now();
    net.ep(1)
        .notify(now, oid, msg::response(ResponseType::NotFound), false)
        .unwrap();
    net.flush();
    net.run_until(Duration::from_secs(5), |_| false);
    let got = notifications(&mut net);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1, None, "final notification");
    assert_eq!(net.ep(0).usage().outgoing, 0);
    assert_eq!(net.ep(1).usage().observers, 0);
}

#[test]
fn reregistration_with_the_same_token_replaces_the_observer() {
    let (mut net, _id, _oid) = observed(9);
    // Resend the registration datagram under a new message ID (same token).
    let mut again = parse(&net.sent()[0].bytes);
    again.header.message_id = again.header.message_id.wrapping_add(1000);
    net.inject(0, 1, &again.to_bytes().unwrap());
    assert_eq!(gone(&mut net), vec![ObserverGoneReason::Deregistered]);
    assert_eq!(net.ep(1).usage().observers, 1);
}

#[test]
fn restored_observation_receives_notifications_after_a_restart() {
    let (mut net, id, oid) = observed(10);
    let token = net.ep(0).request_token(id).unwrap();
    // The observer restarts: a new endpoint that knows nothing but what was stored.
    net.nodes[0].ep = Endpoint::new(EndpointConfig {
        rng_seed: 77,
        ..EndpointConfig::default()
    });
    net.nodes[0].events.clear();
    notify(&mut net, oid, b"lost before restore", true);
    net.run_until(Duration::from_secs(1), |_| false);
    assert!(
        notifications(&mut net).is_empty(),
        "unknown token: reset, not delivered"
    );
    // That RST removed the observer; register a fresh one on the server side as the device
    // would still have it, and restore on the client side.
    let (mut net, id, oid) = observed(11);
    let token2 = net.ep(0).request_token(id).unwrap();
    assert_ne!(token, token2);
    net.nodes[0].ep = Endpoint::new(EndpointConfig {
        rng_seed: 78,
        ..EndpointConfig::default()
    });
    let now = net.now();
    let restored = net
        .ep(0)
        .restore_observation(now, 1, token2, observe("/obs"), RequestOptions::default())
        .unwrap();
    notify(&mut net, oid, b"after restart", true);
    net.run_until(Duration::from_secs(1), |_| false);
    let got = net.take_events(0, |e| match e {
        Event::Notification { id, response, .. } => Some((*id, response.payload.clone())),
        _ => None,
    });
    assert_eq!(got, vec![(restored, b"after restart".to_vec())]);
    assert!(gone(&mut net).is_empty(), "the server's observer is intact");
}
