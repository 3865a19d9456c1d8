//! RFC 7252 §4.5: duplicates are answered from the cache and never delivered twice; the
//! cache is bounded.
use super::*;
use crate::coap::MessageType;

fn con_get(mid: u16, path: &str) -> Vec<u8> {
    let mut p = get(path);
    p.header.set_type(MessageType::Confirmable);
    p.header.message_id = mid;
    p.set_token(vec![1, 2, 3, 4]);
    p.to_bytes().unwrap()
}

/// Datagrams node `from` sent with message ID `mid` (its ACKs or answers to that message).
fn sent_with_mid(net: &Net, from: Addr, mid: u16) -> usize {
    net.sent()
        .iter()
        .filter(|s| s.from == from && parse(&s.bytes).header.message_id == mid)
        .count()
}

fn requests_seen(net: &Net, addr: Addr) -> usize {
    net.nodes[usize::from(addr)]
        .events
        .iter()
        .filter(|e| matches!(e, Event::Request(_)))
        .count()
}

#[test]
fn duplicate_con_request_is_answered_from_cache_without_redelivery() {
    let mut calls = 0;
    let mut net = Net::pair(
        EndpointConfig::default(),
        1,
        Box::new(move |_| {
            calls += 1;
            Some(content(format!("call {calls}").as_bytes()))
        }),
    );
    let req = con_get(0x1234, "/3/0");
    net.inject(0, 1, &req);
    net.inject(0, 1, &req);
    net.inject(0, 1, &req);
    assert_eq!(requests_seen(&net, 1), 1);
    let answers: Vec<_> = net
        .sent()
        .iter()
        .filter(|s| s.from == 1)
        .map(|s| s.bytes.clone())
        .collect();
    assert_eq!(answers.len(), 3);
    assert!(
        answers.iter().all(|a| a == &answers[0]),
        "the same bytes every time"
    );
    assert_eq!(parse(&answers[0]).payload, b"call 1");
    assert_eq!(net.ep(1).stats().duplicates, 2);
}

#[test]
fn duplicate_while_the_application_works_gets_an_empty_ack() {
    let mut net = Net::pair(EndpointConfig::default(), 1, Box::new(|_| None));
    let req = con_get(7, "/slow");
    net.inject(0, 1, &req);
    assert!(net.sent().is_empty());
    net.inject(0, 1, &req);
    assert_eq!(requests_seen(&net, 1), 1);
    let ack = parse(&net.sent()[0].bytes);
    assert_eq!(
        (ack.header.get_type(), ack.header.message_id),
        (MessageType::Acknowledgement, 7)
    );
    assert!(ack.payload.is_empty());
}

#[test]
fn duplicate_non_request_is_dropped() {
    let mut net = Net::pair(
        EndpointConfig::default(),
        1,
        Box::new(|_| Some(content(b"x"))),
    );
    let mut p = get("/x");
    p.header.set_type(MessageType::NonConfirmable);
    p.header.message_id = 99;
    let bytes = p.to_bytes().unwrap();
    net.inject(0, 1, &bytes);
    net.inject(0, 1, &bytes);
    assert_eq!(requests_seen(&net, 1), 1);
}

#[test]
fn same_message_id_from_another_peer_is_not_a_duplicate() {
    let mut net = Net::new(3, EndpointConfig::default(), 1);
    net.nodes[1].responder = Some(Box::new(|_| Some(content(b"x"))));
    let req = con_get(5, "/x");
    net.inject(0, 1, &req);
    net.inject(2, 1, &req);
    assert_eq!(requests_seen(&net, 1), 2);
}

#[test]
fn message_id_is_forgotten_after_exchange_lifetime() {
    let mut net = Net::pair(
        EndpointConfig::default(),
        1,
        Box::new(|_| Some(content(b"x"))),
    );
    let req = con_get(5, "/x");
    net.inject(0, 1, &req);
    net.run_until(Duration::from_secs(248), |_| false);
    net.inject(0, 1, &req);
    assert_eq!(requests_seen(&net, 1), 2);
    assert_eq!(net.ep(1).usage().dedup, 1);
}

#[test]
fn dedup_cache_stays_within_its_capacity() {
    let config = EndpointConfig {
        dedup_capacity: 100,
        ..EndpointConfig::default()
    };
    let mut net = Net::pair(config, 1, Box::new(|_| Some(content(b"x"))));
    for mid in 0..1000u16 {
        net.inject(0, 1, &con_get(mid, "/x"));
    }
    assert_eq!(net.ep(1).usage().dedup, 100);
    assert_eq!(net.ep(1).stats().dedup_evictions, 900);
}

#[test]
fn duplicate_confirmable_notification_is_acked_again_but_delivered_once() {
    // A client observing /obs; the server's notification is duplicated by the network.
    let (mut net, token) = observing(4);
    let bytes = con_notification(token, 4242, 1_000_000);
    net.inject(1, 0, &bytes);
    net.inject(1, 0, &bytes);
    let notes = net.take_events(0, |e| matches!(e, Event::Notification { .. }).then_some(()));
    assert_eq!(notes.len(), 1);
    assert_eq!(sent_with_mid(&net, 0, 4242), 2);
}

#[test]
fn answered_requests_do_not_pile_up_expiry_records() {
    // Each request the application answers used to leave a record until EXCHANGE_LIFETIME;
    // at 80k requests/s that is 20M records. They are bounded by the pending-request cap.
    let config = EndpointConfig {
        max_pending_incoming: 100,
        ..EndpointConfig::default()
    };
    let mut net = Net::new(2, config, 1);
    net.nodes[1].responder = Some(Box::new(|_| Some(content(b"x"))));
    for mid in 0..10_000u16 {
        net.inject(0, 1, &con_get(mid, "/x"));
    }
    assert_eq!(requests_seen(&net, 1), 10_000);
    assert!(
        net.ep(1).incoming.records() <= 2 * 100 + 16,
        "{}",
        net.ep(1).incoming.records()
    );
    assert_eq!(net.ep(1).usage().incoming, 0);
}

#[test]
fn a_duplicate_non_notification_is_delivered_once_without_a_dedup_record() {
    let (mut net, token) = observing(11);
    let non = |mid: u16, observe: u32| {
        let mut n = content(b"21.5");
        n.header.set_type(MessageType::NonConfirmable);
        n.header.message_id = mid;
        n.set_token(token.clone());
        msg::set_uint_option(&mut n, coap_lite::CoapOption::Observe, observe);
        n.to_bytes().unwrap()
    };
    let dedup_before = net.ep(0).usage().dedup;
    let bytes = non(5150, 9);
    net.inject(1, 0, &bytes);
    net.inject(1, 0, &bytes);
    let notes = net.take_events(0, |e| matches!(e, Event::Notification { .. }).then_some(()));
    assert_eq!(
        notes.len(),
        1,
        "the duplicate is dropped by the Observe ordering"
    );
    assert_eq!(
        net.ep(0).usage().dedup,
        dedup_before,
        "no record kept for it"
    );
    // The next value is taken.
    net.inject(1, 0, &non(5151, 10));
    let notes = net.take_events(0, |e| matches!(e, Event::Notification { .. }).then_some(()));
    assert_eq!(notes.len(), 1);
}

#[test]
fn a_refused_notification_is_not_acknowledged_and_its_retransmission_is_taken_later() {
    // The application's outbox is full: the notification must stay the sender's to retransmit.
    let (mut net, token) = observing(5);
    let bytes = con_notification(token, 777, 5);
    let acks = |net: &Net| sent_with_mid(net, 0, 777);

    net.ep(0).refuse_reports(true);
    net.inject(1, 0, &bytes);
    assert_eq!(acks(&net), 0, "refused: no ACK");
    let notes = net.take_events(0, |e| matches!(e, Event::Notification { .. }).then_some(()));
    assert!(notes.is_empty(), "refused: not delivered");
    assert_eq!(net.ep(0).stats().notifications_refused, 1);

    // The application can take it again: the sender's retransmission is acknowledged and
    // delivered, once.
    net.ep(0).refuse_reports(false);
    net.inject(1, 0, &bytes);
    net.inject(1, 0, &bytes);
    assert_eq!(
        acks(&net),
        2,
        "the retransmission and its duplicate are acknowledged"
    );
    let notes = net.take_events(0, |e| matches!(e, Event::Notification { .. }).then_some(()));
    assert_eq!(notes.len(), 1);
}

#[test]
fn a_refused_send_is_not_acknowledged_and_its_retransmission_is_taken_later() {
    let mut net = Net::new(2, EndpointConfig::default(), 9);
    net.nodes[0].responder = Some(Box::new(|_| Some(msg::response(ResponseType::Changed))));
    let mut send = msg::request(RequestType::Post, "/dp");
    send.header.set_type(MessageType::Confirmable);
    send.header.message_id = 901;
    send.set_token(vec![9, 9]);
    send.payload = b"[]".to_vec();
    let send = send.to_bytes().unwrap();
    let answers = |net: &Net| sent_with_mid(net, 0, 901);

    net.ep(0).refuse_reports(true);
    net.inject(1, 0, &send);
    assert_eq!(answers(&net), 0, "refused: no ACK");
    assert_eq!(requests_seen(&net, 0), 0, "refused: not delivered");
    assert_eq!(net.ep(0).stats().sends_refused, 1);
    // Other requests from devices are still taken.
    net.inject(1, 0, &con_get(902, "/x"));
    assert_eq!(requests_seen(&net, 0), 1);

    net.ep(0).refuse_reports(false);
    net.inject(1, 0, &send);
    net.inject(1, 0, &send);
    assert_eq!(
        answers(&net),
        2,
        "the retransmission and its duplicate are answered"
    );
    assert_eq!(requests_seen(&net, 0), 2, "delivered once");
}

/// Node 0 observing `/obs` on node 1 (network seed `seed`), and the observation's token.
fn observing(seed: u64) -> (Net, Vec<u8>) {
    let mut net = Net::pair(
        EndpointConfig::default(),
        seed,
        Box::new(|_| Some(content(b"0"))),
    );
    let mut req = get("/obs");
    msg::set_uint_option(&mut req, coap_lite::CoapOption::Observe, 0);
    let id = net.request(0, 1, req, RequestOptions::default());
    net.run_until(Duration::from_secs(5), |n| n.outcome(0, id).is_some());
    let token = parse(&net.sent()[0].bytes).get_token().to_vec();
    (net, token)
}

/// A confirmable notification of that observation, with message id `mid`.
fn con_notification(token: Vec<u8>, mid: u16, observe: u32) -> Vec<u8> {
    let mut n = content(b"1");
    n.header.set_type(MessageType::Confirmable);
    n.header.message_id = mid;
    n.set_token(token);
    msg::set_uint_option(&mut n, coap_lite::CoapOption::Observe, observe);
    n.to_bytes().unwrap()
}
