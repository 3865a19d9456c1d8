//! Property tests: whatever bytes peers send, the endpoint never panics and its memory stays
//! within the configured bounds, and everything is forgotten once the lifetimes pass.
use super::*;
use crate::coap::{BlockOpt, CoapOption, MessageClass, MessageType};
use proptest::prelude::*;

fn tight() -> EndpointConfig {
    EndpointConfig {
        dedup_capacity: 64,
        max_pending_incoming: 16,
        max_block1_transfers: 4,
        max_block1_bytes: 8192,
        max_block2_bodies: 4,
        max_block2_bytes: 8192,
        max_observers: 8,
        max_body_size: 4096,
        ..EndpointConfig::default()
    }
}

fn check_bounds(ep: &Endpoint<Addr>, c: &EndpointConfig) {
    let u = ep.usage();
    assert!(u.dedup <= c.dedup_capacity, "{u:?}");
    assert!(u.incoming <= c.max_pending_incoming, "{u:?}");
    assert!(u.block1_bytes <= c.max_block1_bytes, "{u:?}");
    assert!(u.block2_bytes <= c.max_block2_bytes, "{u:?}");
    assert!(u.observers <= c.max_observers, "{u:?}");
    assert!(u.peers <= 256, "{u:?}");
}

/// CoAP messages that parse, with the options that reach deep paths.
fn message() -> impl Strategy<Value = Vec<u8>> {
    (
        0u8..4,
        prop_oneof![Just(0u8), 1u8..8, 0x41u8..0x46, Just(0x5f), 0x80u8..0xa6],
        0u16..8,
        proptest::collection::vec(any::<u8>(), 0..3),
        proptest::option::of((0u32..40, any::<bool>(), 0u8..7)),
        proptest::option::of((0u32..40, any::<bool>(), 0u8..7)),
        proptest::option::of(0u32..4),
        proptest::option::of(0u32..100_000),
        0usize..1100,
    )
        .prop_map(|(ty, code, mid, token, b1, b2, obs, size1, len)| {
            let mut p = Packet::new();
            p.header.set_type(match ty {
                0 => MessageType::Confirmable,
                1 => MessageType::NonConfirmable,
                2 => MessageType::Acknowledgement,
                _ => MessageType::Reset,
            });
            p.header.code = MessageClass::from(code);
            p.header.message_id = mid;
            p.set_token(token);
            p.add_option(CoapOption::UriPath, b"r".to_vec());
            if let Some((num, more, szx)) = b1 {
                msg::set_block_option(&mut p, CoapOption::Block1, BlockOpt { num, more, szx });
            }
            if let Some((num, more, szx)) = b2 {
                msg::set_block_option(&mut p, CoapOption::Block2, BlockOpt { num, more, szx });
            }
            if let Some(o) = obs {
                msg::set_uint_option(&mut p, CoapOption::Observe, o);
            }
            if let Some(s) = size1 {
                msg::set_uint_option(&mut p, CoapOption::Size1, s);
            }
            p.payload = vec![0x5a; len];
            p.to_bytes_with_limit(4096).unwrap_or_default()
        })
}

fn datagram() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![proptest::collection::vec(any::<u8>(), 0..64), message()]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_datagrams_never_panic_and_state_stays_bounded(
        inputs in proptest::collection::vec((0u8..4, datagram(), 0u64..5000, 0u8..4), 1..120),
    ) {
        let config = tight();
        let mut ep: Endpoint<Addr> = Endpoint::new(config.clone());
        let mut now = Instant::now();
        let mut pending = Vec::new();
        for (peer, bytes, advance_ms, action) in inputs {
            now += Duration::from_millis(advance_ms);
            ep.handle_datagram(now, peer, &bytes);
            ep.handle_timeout(now);
            while ep.poll_transmit().is_some() {}
            while let Some(ev) = ep.poll_event() {
                if let Event::Request(r) = ev {
                    pending.push(r.id);
                }
            }
            // The application answers some requests (large, to exercise Block2 and Observe),
            // sends some requests of its own, and leaves the rest hanging.
            match action {
                0 => if let Some(id) = pending.pop() {
                    let _ = ep.respond(now, id, content(&body(3000)));
                },
                1 => { let _ = ep.send_request(now, peer, get("/r"), RequestOptions::default()); }
                _ => {}
            }
            check_bounds(&ep, &config);
        }
        // Long after every lifetime (and every queued request's own retransmissions),
        // nothing is left but the observers the application accepted.
        let end = now + Duration::from_secs(24 * 3600);
        while let Some(t) = ep.poll_timeout().filter(|t| *t <= end) {
            ep.handle_timeout(t.max(now));
            now = t.max(now);
            while ep.poll_transmit().is_some() {}
            while ep.poll_event().is_some() {}
        }
        let u = ep.usage();
        prop_assert_eq!(
            (u.dedup, u.incoming, u.block1_bytes, u.block2_bytes, u.unacked, u.outgoing, u.peers),
            (0, 0, 0, 0, 0, 0, 0)
        );
        prop_assert!(ep.poll_timeout().is_none());
    }

    #[test]
    fn packet_codec_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = Packet::from_bytes(&bytes);
        let _ = BlockOpt::decode(&bytes);
        let _ = msg::decode_uint(&bytes);
    }

    #[test]
    fn block_option_round_trips(num in 0u32..(1 << 20), more: bool, szx in 0u8..7) {
        let b = BlockOpt { num, more, szx };
        prop_assert_eq!(BlockOpt::decode(&b.encode()), Some(b));
    }
}
