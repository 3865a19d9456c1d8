//! RFC 7252 §4.2 and §4.8: the retransmission schedule, its randomisation, the single
//! timeout report, NSTART, separate responses and ping.
use super::*;
use crate::coap::event::ExchangeError;
use crate::coap::{MessageType, TransmissionParams};

fn fixed_timing() -> EndpointConfig {
    EndpointConfig {
        transmission: TransmissionParams {
            ack_random_factor: 1.0,
            ..TransmissionParams::default()
        },
        ..EndpointConfig::default()
    }
}

/// Transmission times of datagrams from `from`, relative to the start, in seconds.
fn send_times(net: &Net, from: Addr) -> Vec<f64> {
    net.sent()
        .iter()
        .filter(|s| s.from == from)
        .map(|s| (s.at - net.wire.start()).as_secs_f64())
        .collect()
}

#[test]
fn retransmission_schedule_is_exactly_rfc7252() {
    // Node 9 does not exist: every datagram vanishes.
    let mut net = Net::new(1, fixed_timing(), 1);
    let id = net.request(0, 9, get("/3/0"), RequestOptions::default());
    net.run_idle(Duration::from_secs(600));
    // ACK_TIMEOUT 2 s, doubling, MAX_RETRANSMIT 4: sends at 0, 2, 6, 14, 30 ...
    assert_eq!(send_times(&net, 0), vec![0.0, 2.0, 6.0, 14.0, 30.0]);
    // ... and gives up after the last timeout: 62 s = MAX_TRANSMIT_WAIT at factor 1.0.
    let failures = net.take_events(0, |e| match e {
        Event::Failed { id: i, error, .. } => Some((*i, *error)),
        _ => None,
    });
    assert_eq!(failures, vec![(id, ExchangeError::Timeout)]);
    assert_eq!(net.ep(0).stats().retransmissions, 4);
    // All the state is gone once the records expire.
    let u = net.ep(0).usage();
    assert_eq!((u.outgoing, u.unacked, u.peers), (0, 0, 0));
}

#[test]
fn nb_iot_parameters_stretch_the_schedule() {
    let config = EndpointConfig {
        transmission: TransmissionParams {
            ack_random_factor: 1.0,
            max_retransmit: 2,
            ..TransmissionParams::nb_iot()
        },
        ..EndpointConfig::default()
    };
    let mut net = Net::new(1, config, 1);
    net.request(0, 9, get("/3/0"), RequestOptions::default());
    net.run_idle(Duration::from_secs(600));
    assert_eq!(send_times(&net, 0), vec![0.0, 9.0, 27.0]);
}

#[test]
fn initial_timeout_is_randomised_between_ack_timeout_and_factor() {
    for seed in 0..20 {
        let mut net = Net::new(1, EndpointConfig::default(), seed);
        net.request(0, 9, get("/"), RequestOptions::default());
        net.run_idle(Duration::from_secs(600));
        let t = send_times(&net, 0);
        let first = t[1] - t[0];
        assert!(
            (2.0..=3.0).contains(&first),
            "seed {seed}: first timeout {first}"
        );
        // Every later timeout doubles the previous one exactly.
        for w in t.windows(3) {
            assert!(((w[2] - w[1]) - 2.0 * (w[1] - w[0])).abs() < 1e-6, "{t:?}");
        }
    }
}

#[test]
fn timeout_is_reported_once_even_if_the_ack_arrives_late() {
    let mut net = Net::new(2, fixed_timing(), 3);
    net.wire.faults.loss = 1.0;
    let id = net.request(0, 1, get("/"), RequestOptions::default());
    net.run_until(Duration::from_secs(600), |n| n.outcome(0, id).is_some());
    let mid = parse(&net.sent()[0].bytes).header.message_id;
    // The ACK comes after all: it must not produce a second outcome.
    let late_ack = msg::empty_bytes(MessageType::Acknowledgement, mid);
    net.inject(1, 0, &late_ack);
    let mut piggy = content(b"late");
    piggy.header.set_type(MessageType::Acknowledgement);
    piggy.header.message_id = mid;
    piggy.set_token(parse(&net.sent()[0].bytes).get_token().to_vec());
    net.inject(1, 0, &piggy.to_bytes().unwrap());
    net.run_idle(Duration::from_secs(600));
    let outcomes = net.take_events(0, |e| match e {
        Event::Failed { .. } | Event::Response { .. } => Some(()),
        _ => None,
    });
    assert_eq!(outcomes.len(), 1);
}

#[test]
fn request_and_piggybacked_response_round_trip() {
    let mut net = Net::pair(
        EndpointConfig::default(),
        1,
        Box::new(|req| {
            assert_eq!(msg::uri_path(&req.request), "/3/0/0");
            Some(content(b"Open Mobile Alliance"))
        }),
    );
    let id = net.request(0, 1, get("/3/0/0"), RequestOptions::default());
    net.run_until(Duration::from_secs(10), |n| n.outcome(0, id).is_some());
    let resp = net.outcome(0, id).unwrap().unwrap();
    assert_eq!(resp.payload, b"Open Mobile Alliance");
    // Exactly one request and one (piggybacked) answer crossed the wire.
    assert_eq!(net.sent().len(), 2);
    assert_eq!(
        parse(&net.sent()[1].bytes).header.get_type(),
        MessageType::Acknowledgement
    );
}

#[test]
fn nstart_holds_the_second_request_until_the_first_completes() {
    let mut net = Net::pair(EndpointConfig::default(), 1, Box::new(|_| None));
    let a = net.request(0, 1, get("/a"), RequestOptions::default());
    let b = net.request(0, 1, get("/b"), RequestOptions::default());
    net.run_until(Duration::from_millis(100), |_| false);
    // Only /a reached the server.
    let seen: Vec<_> = net.nodes[1]
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Request(r) => Some((r.id, msg::uri_path(&r.request))),
            _ => None,
        })
        .collect();
    assert_eq!(
        seen.iter().map(|s| s.1.as_str()).collect::<Vec<_>>(),
        vec!["/a"]
    );
    let now = net.now();
    net.ep(1).respond(now, seen[0].0, content(b"A")).unwrap();
    net.flush();
    net.run_until(Duration::from_millis(100), |_| false);
    assert!(net.outcome(0, a).is_some_and(|r| r.is_ok()));
    assert!(net.outcome(0, b).is_none());
    let paths: Vec<_> = net.nodes[1]
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Request(r) => Some(msg::uri_path(&r.request)),
            _ => None,
        })
        .collect();
    assert_eq!(paths, vec!["/a", "/b"]);
}

#[test]
fn slow_answer_becomes_a_separate_response_and_stops_retransmission() {
    let mut net = Net::pair(fixed_timing(), 5, Box::new(|_| None));
    let id = net.request(0, 1, get("/slow"), RequestOptions::default());
    // The application takes 20 s; the endpoint ACKs after 1 s so the client stops.
    net.run_until(Duration::from_secs(20), |_| false);
    let client_sends = net.sent().iter().filter(|s| s.from == 0).count();
    assert_eq!(client_sends, 1, "no retransmission after the empty ACK");
    let inc = net.take_events(1, |e| match e {
        Event::Request(r) => Some(r.id),
        _ => None,
    });
    let now = net.now();
    net.ep(1).respond(now, inc[0], content(b"done")).unwrap();
    net.flush();
    net.run_until(Duration::from_secs(10), |n| n.outcome(0, id).is_some());
    assert_eq!(net.outcome(0, id).unwrap().unwrap().payload, b"done");
    // The separate response went CON and the client acknowledged it.
    let kinds: Vec<_> = net
        .sent()
        .iter()
        .map(|s| (s.from, parse(&s.bytes).header.get_type()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (0, MessageType::Confirmable),
            (1, MessageType::Acknowledgement),
            (1, MessageType::Confirmable),
            (0, MessageType::Acknowledgement),
        ]
    );
}

#[test]
fn per_request_timeout_fails_a_request_that_is_acked_but_never_answered() {
    let mut net = Net::pair(fixed_timing(), 5, Box::new(|_| None));
    let opts = RequestOptions {
        timeout: Some(Duration::from_secs(30)),
        ..RequestOptions::default()
    };
    let id = net.request(0, 1, get("/never"), opts);
    net.run_until(Duration::from_secs(600), |n| n.outcome(0, id).is_some());
    assert_eq!(net.outcome(0, id), Some(Err(ExchangeError::Timeout)));
    let at = net.elapsed().as_secs();
    assert!((30..=31).contains(&at), "failed after {at} s");
}

#[test]
fn nonconfirmable_request_gets_nonconfirmable_response() {
    let mut net = Net::pair(
        EndpointConfig::default(),
        1,
        Box::new(|_| Some(content(b"x"))),
    );
    let opts = RequestOptions {
        confirmable: false,
        ..RequestOptions::default()
    };
    let id = net.request(0, 1, get("/x"), opts);
    net.run_until(Duration::from_secs(5), |n| n.outcome(0, id).is_some());
    assert_eq!(net.outcome(0, id).unwrap().unwrap().payload, b"x");
    assert_eq!(
        parse(&net.sent()[1].bytes).header.get_type(),
        MessageType::NonConfirmable
    );
}

#[test]
fn ping_is_answered_with_reset() {
    let mut net = Net::pair(EndpointConfig::default(), 1, Box::new(|_| None));
    let now = net.now();
    let id = net.ep(0).ping(now, 1).unwrap();
    net.flush();
    net.run_until(Duration::from_secs(5), |n| {
        n.nodes[0]
            .events
            .iter()
            .any(|e| matches!(e, Event::Pong { id: i, .. } if *i == id))
    });
    assert!(net.nodes[0]
        .events
        .iter()
        .any(|e| matches!(e, Event::Pong { .. })));
    assert_eq!(
        parse(&net.sent()[1].bytes).header.get_type(),
        MessageType::Reset
    );
}

#[test]
fn reset_fails_the_request() {
    let mut net = Net::new(2, EndpointConfig::default(), 1);
    let id = net.request(0, 1, get("/x"), RequestOptions::default());
    let mid = parse(&net.sent()[0].bytes).header.message_id;
    net.inject(1, 0, &msg::empty_bytes(MessageType::Reset, mid));
    assert_eq!(net.outcome(0, id), Some(Err(ExchangeError::Reset)));
}

#[test]
fn unknown_critical_option_in_request_is_refused_with_4_02() {
    let mut net = Net::pair(
        EndpointConfig::default(),
        1,
        Box::new(|_| Some(content(b"no"))),
    );
    let mut req = get("/x");
    req.add_option(coap_lite::CoapOption::Unknown(2049), vec![1]);
    let id = net.request(0, 1, req, RequestOptions::default());
    net.run_until(Duration::from_secs(5), |n| n.outcome(0, id).is_some());
    let resp = net.outcome(0, id).unwrap().unwrap();
    assert_eq!(
        resp.header.code,
        coap_lite::MessageClass::Response(ResponseType::BadOption)
    );
    assert!(
        net.nodes[1].events.is_empty(),
        "the application never saw it"
    );
}

#[test]
fn message_ids_towards_one_peer_never_repeat_within_a_lifetime() {
    let mut net = Net::pair(
        EndpointConfig::default(),
        9,
        Box::new(|_| Some(content(b""))),
    );
    let opts = RequestOptions {
        confirmable: false,
        ..RequestOptions::default()
    };
    let mut mids = std::collections::HashSet::new();
    for _ in 0..5000 {
        net.request(0, 1, get("/x"), opts);
        net.run_until(Duration::from_millis(30), |_| false);
    }
    for s in net.sent().iter().filter(|s| s.from == 0) {
        assert!(
            mids.insert(parse(&s.bytes).header.message_id),
            "message ID reused"
        );
    }
}

#[test]
fn answered_requests_leave_no_timers_behind() {
    let mut net = Net::pair(
        EndpointConfig::default(),
        1,
        Box::new(|_| Some(content(b"x"))),
    );
    for _ in 0..100 {
        let id = net.request(0, 1, get("/3/0/9"), RequestOptions::default());
        net.run_until(Duration::from_millis(50), |n| n.outcome(0, id).is_some());
    }
    // Retransmission and deadline timers of answered exchanges are cancelled, not left to
    // expire: only live exchanges hold timers.
    assert_eq!(net.ep(0).usage().timers, 0);
    assert_eq!(net.ep(0).usage().outgoing, 0);
}
