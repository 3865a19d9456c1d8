//! RFC 7959: Block2 and Block1 in both roles, size negotiation, limits, and 200 KB
//! transfers that finish across 30 % loss with duplication and reordering.
use super::*;
use crate::coap::event::ExchangeError;
use crate::coap::{BlockOpt, CoapOption, MessageClass, MessageType};
use std::cell::RefCell;
use std::rc::Rc;

fn lossy(net: &mut Net) {
    net.wire.faults.loss = 0.3;
    net.wire.faults.duplicate = 0.1;
    net.wire.faults.latency = Duration::from_millis(50);
    net.wire.faults.jitter = Duration::from_millis(800);
}

fn code(p: &Packet) -> MessageClass {
    p.header.code
}

#[test]
fn block2_download_of_200_kb_survives_30_percent_loss_with_duplication_and_reordering() {
    for seed in 0..3 {
        let expected = body(200_000);
        let served = expected.clone();
        let mut net = Net::pair(
            EndpointConfig::default(),
            seed,
            Box::new(move |_| Some(content(&served))),
        );
        lossy(&mut net);
        let id = net.request(0, 1, get("/5/0/0"), RequestOptions::default());
        let done = net.run_until(Duration::from_secs(24 * 3600), |n| {
            n.outcome(0, id).is_some()
        });
        assert!(done, "seed {seed}: no outcome");
        let resp = net
            .outcome(0, id)
            .unwrap()
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert_eq!(resp.payload.len(), expected.len());
        assert!(resp.payload == expected, "seed {seed}: body differs");
        assert!(!msg::has_option(&resp, CoapOption::Block2));
        assert!(net.ep(0).stats().retransmissions > 0, "the loss was real");
    }
}

#[test]
fn block1_upload_of_200_kb_survives_30_percent_loss_with_duplication_and_reordering() {
    for seed in 0..3 {
        let expected = body(200_000);
        let received = Rc::new(RefCell::new(Vec::new()));
        let sink = received.clone();
        let mut net = Net::pair(
            EndpointConfig::default(),
            seed,
            Box::new(move |req| {
                sink.borrow_mut().push(req.request.payload.clone());
                Some(msg::response(ResponseType::Changed))
            }),
        );
        lossy(&mut net);
        let mut req = msg::request(RequestType::Put, "/5/0/0");
        req.payload = expected.clone();
        let id = net.request(0, 1, req, RequestOptions::default());
        let done = net.run_until(Duration::from_secs(24 * 3600), |n| {
            n.outcome(0, id).is_some()
        });
        assert!(done, "seed {seed}: no outcome");
        let resp = net
            .outcome(0, id)
            .unwrap()
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert_eq!(code(&resp), MessageClass::Response(ResponseType::Changed));
        let got = received.borrow();
        assert_eq!(
            got.len(),
            1,
            "seed {seed}: the application gets the upload exactly once"
        );
        assert!(got[0] == expected, "seed {seed}: body differs");
    }
}

#[test]
fn later_blocks_are_served_from_the_cache_without_the_application() {
    let calls = Rc::new(RefCell::new(0));
    let c = calls.clone();
    let mut net = Net::pair(
        EndpointConfig::default(),
        1,
        Box::new(move |_| {
            *c.borrow_mut() += 1;
            Some(content(&body(10_000)))
        }),
    );
    let id = net.request(0, 1, get("/big"), RequestOptions::default());
    net.run_until(Duration::from_secs(60), |n| n.outcome(0, id).is_some());
    assert_eq!(net.outcome(0, id).unwrap().unwrap().payload, body(10_000));
    assert_eq!(*calls.borrow(), 1);
    // 10 blocks of 1024 bytes: 10 requests, 10 responses.
    assert_eq!(net.sent().len(), 20);
    let first = parse(&net.sent()[1].bytes);
    assert_eq!(msg::uint_option(&first, CoapOption::Size2), Some(10_000));
}

#[test]
fn client_can_ask_for_smaller_blocks() {
    let mut net = Net::pair(
        EndpointConfig::default(),
        1,
        Box::new(|_| Some(content(&body(1000)))),
    );
    let opts = RequestOptions {
        block_szx: Some(2),
        ..RequestOptions::default()
    };
    let id = net.request(0, 1, get("/x"), opts);
    net.run_until(Duration::from_secs(60), |n| n.outcome(0, id).is_some());
    assert_eq!(net.outcome(0, id).unwrap().unwrap().payload, body(1000));
    let server_payloads: Vec<_> = net
        .sent()
        .iter()
        .filter(|s| s.from == 1)
        .map(|s| parse(&s.bytes).payload.len())
        .collect();
    assert_eq!(server_payloads.len(), 16, "1000 bytes in 64-byte blocks");
    assert!(server_payloads.iter().all(|l| *l <= 64));
}

#[test]
fn server_can_ask_for_smaller_upload_blocks() {
    let got = Rc::new(RefCell::new(Vec::new()));
    let sink = got.clone();
    let config = EndpointConfig {
        block_szx: 4,
        ..EndpointConfig::default()
    };
    let mut net = Net::new(2, EndpointConfig::default(), 1);
    net.nodes[1].ep = Endpoint::new(config);
    net.nodes[1].responder = Some(Box::new(move |req| {
        sink.borrow_mut().push(req.request.payload.clone());
        Some(msg::response(ResponseType::Changed))
    }));
    let mut req = msg::request(RequestType::Post, "/up");
    req.payload = body(3000);
    let id = net.request(0, 1, req, RequestOptions::default());
    net.run_until(Duration::from_secs(60), |n| n.outcome(0, id).is_some());
    assert!(net.outcome(0, id).unwrap().is_ok());
    assert_eq!(got.borrow()[0], body(3000));
    let client_payloads: Vec<_> = net
        .sent()
        .iter()
        .filter(|s| s.from == 0)
        .map(|s| parse(&s.bytes).payload.len())
        .collect();
    // One 1024-byte block, then 256-byte blocks as the server asked: 1024 + 7*256 + 184.
    assert_eq!(client_payloads[0], 1024);
    assert!(
        client_payloads[1..].iter().all(|l| *l <= 256),
        "{client_payloads:?}"
    );
    assert_eq!(client_payloads.iter().sum::<usize>(), 3000);
}

#[test]
fn upload_larger_than_allowed_is_refused_with_4_13_and_size1() {
    let config = EndpointConfig {
        max_body_size: 2048,
        ..EndpointConfig::default()
    };
    let mut net = Net::new(2, EndpointConfig::default(), 1);
    net.nodes[1].ep = Endpoint::new(config);
    net.nodes[1].responder = Some(Box::new(|_| panic!("must not reach the application")));
    let mut req = msg::request(RequestType::Put, "/fw");
    req.payload = body(10_000);
    let id = net.request(0, 1, req, RequestOptions::default());
    net.run_until(Duration::from_secs(60), |n| n.outcome(0, id).is_some());
    let resp = net.outcome(0, id).unwrap().unwrap();
    assert_eq!(
        code(&resp),
        MessageClass::Response(ResponseType::RequestEntityTooLarge)
    );
    assert_eq!(msg::uint_option(&resp, CoapOption::Size1), Some(2048));
}

#[test]
fn block1_out_of_order_is_refused_with_4_08() {
    let mut net = Net::pair(
        EndpointConfig::default(),
        1,
        Box::new(|_| panic!("not delivered")),
    );
    let mut p = msg::request(RequestType::Put, "/fw");
    p.header.set_type(MessageType::Confirmable);
    p.header.message_id = 1;
    p.payload = vec![0; 64];
    msg::set_block_option(
        &mut p,
        CoapOption::Block1,
        BlockOpt {
            num: 3,
            more: true,
            szx: 2,
        },
    );
    net.inject(0, 1, &p.to_bytes().unwrap());
    let resp = parse(&net.sent()[0].bytes);
    assert_eq!(
        code(&resp),
        MessageClass::Response(ResponseType::RequestEntityIncomplete)
    );
}

#[test]
fn download_larger_than_allowed_fails_with_body_too_large() {
    let config = EndpointConfig {
        max_body_size: 4096,
        ..EndpointConfig::default()
    };
    let mut net = Net::new(2, config, 1);
    net.nodes[1].ep = Endpoint::new(EndpointConfig::default());
    net.nodes[1].responder = Some(Box::new(|_| Some(content(&body(50_000)))));
    let id = net.request(0, 1, get("/huge"), RequestOptions::default());
    net.run_until(Duration::from_secs(60), |n| n.outcome(0, id).is_some());
    assert_eq!(net.outcome(0, id), Some(Err(ExchangeError::BodyTooLarge)));
}

#[test]
fn post_with_block1_and_block2_response_joins_both_directions() {
    let mut net = Net::pair(
        EndpointConfig::default(),
        3,
        Box::new(|req| {
            let mut r = content(&req.request.payload);
            r.payload.extend_from_slice(&req.request.payload);
            Some(r)
        }),
    );
    let mut req = msg::request(RequestType::Post, "/echo2");
    req.payload = body(5000);
    let id = net.request(0, 1, req, RequestOptions::default());
    net.run_until(Duration::from_secs(60), |n| n.outcome(0, id).is_some());
    let resp = net.outcome(0, id).unwrap().unwrap();
    assert_eq!(resp.payload.len(), 10_000);
    assert_eq!(&resp.payload[..5000], &body(5000)[..]);
}

#[test]
fn a_request_naming_its_block_gets_that_block_as_it_comes() {
    let served = body(5000);
    let mut net = Net::pair(
        EndpointConfig::default(),
        1,
        Box::new(move |_| Some(content(&served))),
    );
    let mut req = get("/fw/pkg");
    let asked = BlockOpt {
        num: 2,
        more: false,
        szx: 6,
    };
    msg::set_block_option(&mut req, CoapOption::Block2, asked);
    let id = net.request(0, 1, req, RequestOptions::default());
    assert!(net.run_until(Duration::from_secs(10), |n| n.outcome(0, id).is_some()));
    let resp = net.outcome(0, id).unwrap().unwrap();
    let b2 = msg::block_option(&resp, CoapOption::Block2).unwrap();
    assert_eq!((b2.num, b2.more), (2, true), "block 2 alone, not the rest");
    assert_eq!(resp.payload, body(5000)[2048..3072]);
}
