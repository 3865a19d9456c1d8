//! Pushing a firmware package (OMA LwM2M TS 1.2 Core E.6: a Write of the package to
//! /5/0/0) with Block1 (RFC 7959 §2.5): a 300 KB body in 512-byte blocks, across loss,
//! interrupted and resumed at a block (§2.9.2 4.08 when the peer lost the earlier blocks),
//! paced by `block_interval`, and a block size the peer lowers mid-upload (§2.9.3 4.13).
use super::*;
use crate::coap::event::{ExchangeError, SendError};
use crate::coap::{BlockOpt, CoapOption, MessageClass, MessageType};
use std::cell::RefCell;
use std::rc::Rc;

const PACKAGE: usize = 300_000;

/// 512-byte blocks.
const SZX: u8 = 5;

/// A pair whose server (node 1) records every whole body it receives and answers 2.04.
fn recording_pair(config: EndpointConfig, seed: u64) -> (Net, Rc<RefCell<Vec<Vec<u8>>>>) {
    let received = Rc::new(RefCell::new(Vec::new()));
    let sink = received.clone();
    let net = Net::pair(
        config,
        seed,
        Box::new(move |req| {
            sink.borrow_mut().push(req.request.payload.clone());
            Some(msg::response(ResponseType::Changed))
        }),
    );
    (net, received)
}

fn write_package(len: usize) -> Packet {
    let mut req = msg::request(RequestType::Put, "/5/0/0");
    req.payload = body(len);
    req
}

fn push_opts() -> RequestOptions {
    RequestOptions {
        block_szx: Some(SZX),
        ..RequestOptions::default()
    }
}

/// The Block1 option of every request node 0 sent, with when it was sent.
fn client_blocks(net: &Net) -> Vec<(Instant, BlockOpt)> {
    net.sent()
        .iter()
        .filter(|s| s.from == 0)
        .filter_map(|s| {
            Some((
                s.at,
                msg::block_option(&parse(&s.bytes), CoapOption::Block1)?,
            ))
        })
        .collect()
}

fn continues_sent_by(net: &Net, addr: Addr) -> usize {
    net.sent()
        .iter()
        .filter(|s| {
            s.from == addr
                && parse(&s.bytes).header.code == MessageClass::Response(ResponseType::Continue)
        })
        .count()
}

fn finish(net: &mut Net, id: RequestId, limit: Duration) -> Result<Packet, ExchangeError> {
    assert!(
        net.run_until(limit, |n| n.outcome(0, id).is_some()),
        "no outcome"
    );
    net.outcome(0, id).expect("outcome")
}

#[test]
fn a_300_kb_package_in_512_byte_blocks_arrives_whole() {
    let (mut net, received) = recording_pair(EndpointConfig::default(), 1);
    let id = net.request(0, 1, write_package(PACKAGE), push_opts());
    let resp = finish(&mut net, id, Duration::from_secs(3600)).expect("upload");
    assert_eq!(
        resp.header.code,
        MessageClass::Response(ResponseType::Changed)
    );
    assert_eq!(received.borrow().len(), 1);
    assert!(received.borrow()[0] == body(PACKAGE), "body differs");
    let blocks = client_blocks(&net);
    assert_eq!(
        blocks.len(),
        PACKAGE.div_ceil(512),
        "one datagram per block"
    );
    assert!(blocks.iter().all(|(_, b)| b.szx == SZX));
    assert!(blocks
        .iter()
        .enumerate()
        .all(|(i, (_, b))| b.num == i as u32));
}

#[test]
fn a_300_kb_package_survives_20_percent_loss() {
    for seed in 0..3 {
        let (mut net, received) = recording_pair(EndpointConfig::default(), seed);
        net.wire.faults.loss = 0.2;
        let id = net.request(0, 1, write_package(PACKAGE), push_opts());
        let resp = finish(&mut net, id, Duration::from_secs(24 * 3600))
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert!(msg::is_success(&resp), "seed {seed}");
        assert_eq!(received.borrow().len(), 1, "seed {seed}: delivered once");
        assert!(received.borrow()[0] == body(PACKAGE), "seed {seed}");
        assert!(net.ep(0).stats().retransmissions > 0, "the loss was real");
    }
}

/// Uploads until the peer has acknowledged ten blocks, then takes the peer off the network
/// until the upload fails.
fn interrupted_after_ten_blocks(net: &mut Net) -> Result<Packet, ExchangeError> {
    let id = net.request(0, 1, write_package(PACKAGE), push_opts());
    assert!(net.run_until(Duration::from_secs(60), |n| continues_sent_by(n, 1) == 10));
    net.wire.down(1, true);
    let outcome = finish(net, id, Duration::from_secs(3600));
    net.wire.down(1, false);
    outcome
}

/// Client retries a silent block once, so that the interruption is reported within the
/// peer's default `block_lifetime` (247 s) and the peer still holds the first blocks.
fn quick_to_give_up() -> EndpointConfig {
    EndpointConfig {
        block_retries: 1,
        ..EndpointConfig::default()
    }
}

#[test]
fn an_upload_whose_peer_goes_silent_is_interrupted_at_the_next_block_and_resumes_there() {
    let (mut net, received) = recording_pair(quick_to_give_up(), 2);
    let started = net.now();
    assert_eq!(
        interrupted_after_ten_blocks(&mut net).err(),
        Some(ExchangeError::Interrupted {
            next_block: 10,
            szx: SZX
        })
    );
    assert!(received.borrow().is_empty());
    assert!(net.now() - started < EndpointConfig::default().block_lifetime);

    net.wire.clear_sent();
    let opts = RequestOptions {
        block1_start: Some(10),
        ..push_opts()
    };
    let id = net.request(0, 1, write_package(PACKAGE), opts);
    let resp = finish(&mut net, id, Duration::from_secs(3600)).expect("resumed upload");
    assert!(msg::is_success(&resp));
    let blocks = client_blocks(&net);
    assert_eq!(blocks.first().map(|(_, b)| b.num), Some(10));
    assert_eq!(
        blocks.len(),
        PACKAGE.div_ceil(512) - 10,
        "blocks 0..10 not sent again"
    );
    assert_eq!(received.borrow().len(), 1);
    assert!(
        received.borrow()[0] == body(PACKAGE),
        "reassembled body differs"
    );
}

#[test]
fn an_upload_that_nothing_acknowledged_times_out() {
    let (mut net, _) = recording_pair(quick_to_give_up(), 3);
    net.wire.down(1, true);
    let id = net.request(0, 1, write_package(PACKAGE), push_opts());
    assert_eq!(
        finish(&mut net, id, Duration::from_secs(3600)),
        Err(ExchangeError::Timeout)
    );
}

#[test]
fn resuming_at_a_peer_that_lost_the_upload_fails_with_block() {
    let (mut net, received) = recording_pair(quick_to_give_up(), 4);
    assert!(matches!(
        interrupted_after_ten_blocks(&mut net),
        Err(ExchangeError::Interrupted { next_block: 10, .. })
    ));
    // The device restarted: a fresh endpoint without the first ten blocks.
    net.nodes[1].ep = Endpoint::new(EndpointConfig::default());
    let opts = RequestOptions {
        block1_start: Some(10),
        ..push_opts()
    };
    let id = net.request(0, 1, write_package(PACKAGE), opts);
    assert_eq!(
        finish(&mut net, id, Duration::from_secs(3600)),
        Err(ExchangeError::Block)
    );
    assert!(received.borrow().is_empty());
}

#[test]
fn a_first_block_past_the_end_is_refused() {
    let mut ep = Endpoint::<Addr>::new(EndpointConfig::default());
    let opts = RequestOptions {
        block1_start: Some(2),
        ..push_opts()
    };
    // 1024 bytes are blocks 0 and 1 at 512 bytes.
    assert_eq!(
        ep.send_request(Instant::now(), 1, write_package(1024), opts),
        Err(SendError::BlockOutOfRange)
    );
}

#[test]
fn block_interval_spaces_the_blocks() {
    let (mut net, received) = recording_pair(EndpointConfig::default(), 5);
    let pause = Duration::from_secs(3);
    let opts = RequestOptions {
        block_interval: Some(pause),
        ..push_opts()
    };
    let id = net.request(0, 1, write_package(10 * 512 + 100), opts);
    assert!(finish(&mut net, id, Duration::from_secs(3600)).is_ok());
    assert!(received.borrow()[0] == body(10 * 512 + 100));
    let blocks = client_blocks(&net);
    assert_eq!(blocks.len(), 11);
    for pair in blocks.windows(2) {
        let gap = pair[1].0 - pair[0].0;
        // At least the pause; no more than it either, on a link that answers at once.
        assert_eq!(gap, pause, "blocks {:?} and {:?}", pair[0].1, pair[1].1);
    }
    // Without the option the same upload goes lock-step, as fast as the answers come.
    let (mut net, _) = recording_pair(EndpointConfig::default(), 5);
    let id = net.request(0, 1, write_package(10 * 512 + 100), push_opts());
    assert!(finish(&mut net, id, Duration::from_secs(3600)).is_ok());
    assert!(net.elapsed() < pause);
}

/// A peer that takes blocks of at most 256 bytes from block 3 on: it answers a larger block
/// after the third with 4.13 and Block1 SZX 4 (RFC 7959 §2.9.3), and reassembles the rest.
fn answer_as_picky_peer(bytes: &[u8], got: &mut Vec<u8>) -> Packet {
    let req = parse(bytes);
    let b1 = msg::block_option(&req, CoapOption::Block1).expect("Block1");
    let mut resp = if b1.num >= 3 && b1.szx > 4 {
        let mut r = msg::response(ResponseType::RequestEntityTooLarge);
        msg::set_block_option(
            &mut r,
            CoapOption::Block1,
            BlockOpt {
                num: 0,
                more: false,
                szx: 4,
            },
        );
        r
    } else {
        assert_eq!(b1.offset(), got.len(), "at the same byte offset");
        got.extend_from_slice(&req.payload);
        let mut r = msg::response(if b1.more {
            ResponseType::Continue
        } else {
            ResponseType::Changed
        });
        msg::set_block_option(&mut r, CoapOption::Block1, b1);
        r
    };
    resp.header.set_type(MessageType::Acknowledgement);
    resp.header.message_id = req.header.message_id;
    resp.set_token(req.get_token().to_vec());
    resp
}

#[test]
fn a_4_13_with_a_smaller_size_mid_upload_continues_at_the_same_offset() {
    let mut ep = Endpoint::<Addr>::new(EndpointConfig::default());
    let now = Instant::now();
    let len = 5000;
    let id = ep
        .send_request(now, 1, write_package(len), RequestOptions::default())
        .expect("sent");
    let mut got = Vec::new();
    let mut sent = Vec::new();
    let mut outcome = None;
    for _ in 0..100 {
        let Some(t) = ep.poll_transmit() else {
            break;
        };
        let req = parse(&t.payload);
        sent.push((
            msg::block_option(&req, CoapOption::Block1).expect("Block1"),
            req.payload.len(),
        ));
        let resp = answer_as_picky_peer(&t.payload, &mut got);
        ep.handle_datagram(now, 1, &resp.to_bytes().expect("encodes"));
        while let Some(ev) = ep.poll_event() {
            outcome = Some(ev);
        }
    }
    assert!(
        matches!(outcome, Some(Event::Response { id: i, ref response, .. })
            if i == id && response.header.code == MessageClass::Response(ResponseType::Changed)),
        "{outcome:?}"
    );
    assert!(got == body(len), "body differs");
    // Blocks 0..3 of 1024 bytes, block 3 refused, then block 12 of 256 bytes (byte 3072).
    let nums: Vec<(u32, u8)> = sent.iter().map(|(b, _)| (b.num, b.szx)).collect();
    assert_eq!(&nums[..5], &[(0, 6), (1, 6), (2, 6), (3, 6), (12, 4)]);
    assert!(sent[4..].iter().all(|(b, l)| b.szx == 4 && *l <= 256));
    assert_eq!(sent.len(), 4 + (len - 3072).div_ceil(256));
}
