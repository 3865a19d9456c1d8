//! Whatever peers send, the core never panics and its tables stay within their bounds.
use super::config;
use super::TestAccounts;
use crate::{BootstrapConfig, BootstrapCore};
use lwm2m::coap::{msg, CoapOption, MessageType, Packet, ResponseType};
use lwm2m::content::ContentFormat;
use lwm2m::ops::bootstrap::{BootstrapRequest, PackRequest};
use proptest::prelude::*;
use std::sync::Arc;
use std::time::Duration;

const MAX_SEQUENCES: usize = 3;
const MAX_PEERS: usize = 2;

/// What a peer can do to the core.
#[derive(Debug, Clone)]
enum Input {
    /// A datagram of arbitrary bytes.
    Bytes(u8, Vec<u8>),
    /// A well-formed Bootstrap-Request, Pack-Request, or answer with a message id and
    /// token the core may or may not be waiting for.
    Request(u8, u8, Option<u16>),
    Pack(u8, u8, Option<u16>),
    Answer {
        peer: u8,
        mid: u16,
        token: Vec<u8>,
        code: u8,
        payload: Vec<u8>,
    },
    Authenticated(u8, u8),
    Closed(u8),
    Revoke(u8),
    Wait(u16),
}

fn name(n: u8) -> String {
    format!("dev-{}", n % 5)
}

fn input() -> impl Strategy<Value = Input> {
    let peer = 1u8..8;
    prop_oneof![
        (peer.clone(), proptest::collection::vec(any::<u8>(), 0..64))
            .prop_map(|(p, b)| Input::Bytes(p, b)),
        (
            peer.clone(),
            any::<u8>(),
            proptest::option::of(any::<u16>())
        )
            .prop_map(|(p, n, f)| Input::Request(p, n, f)),
        (
            peer.clone(),
            any::<u8>(),
            proptest::option::of(any::<u16>())
        )
            .prop_map(|(p, n, f)| Input::Pack(p, n, f)),
        (
            peer.clone(),
            any::<u16>(),
            proptest::collection::vec(any::<u8>(), 0..8),
            prop_oneof![
                Just(0x41u8),
                Just(0x42),
                Just(0x44),
                Just(0x45),
                Just(0x84),
                Just(0x8f),
                any::<u8>()
            ],
            proptest::collection::vec(any::<u8>(), 0..40),
        )
            .prop_map(|(peer, mid, token, code, payload)| Input::Answer {
                peer,
                mid,
                token,
                code,
                payload
            }),
        (peer.clone(), any::<u8>()).prop_map(|(p, n)| Input::Authenticated(p, n)),
        peer.clone().prop_map(Input::Closed),
        any::<u8>().prop_map(Input::Revoke),
        any::<u16>().prop_map(Input::Wait),
    ]
}

fn bytes_of(mut p: Packet, mid: u16) -> Vec<u8> {
    p.header.set_type(MessageType::Confirmable);
    p.header.message_id = mid;
    p.set_token(vec![mid as u8, 1]);
    p.to_bytes().unwrap_or_default()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn arbitrary_datagrams_never_panic_and_the_tables_stay_bounded(
        inputs in proptest::collection::vec(input(), 1..60)
    ) {
        let mut core = BootstrapCore::<u8>::new(
            BootstrapConfig {
                max_sequences: MAX_SEQUENCES,
                max_peers: MAX_PEERS,
                sequence_timeout: Duration::from_secs(30),
                ..config()
            },
            Box::new(TestAccounts::default()),
        );
        let mut now = std::time::Instant::now();
        let mut mid = 0u16;
        // Tokens the core used, so that answers can match its requests.
        let mut tokens: Vec<(u8, Vec<u8>, u16)> = Vec::new();
        for input in inputs {
            mid = mid.wrapping_add(1);
            match input {
                Input::Bytes(peer, b) => core.handle_datagram(now, peer, &b),
                Input::Request(peer, n, pct) => {
                    let mut req = BootstrapRequest::new(name(n));
                    req.preferred_format = pct.and_then(ContentFormat::from_code);
                    core.handle_datagram(now, peer, &bytes_of(req.to_coap(), mid));
                }
                Input::Pack(peer, n, accept) => {
                    let mut req = PackRequest { endpoint: name(n), accept: None }.to_coap();
                    if let Some(a) = accept {
                        msg::set_uint_option(&mut req, CoapOption::Accept, u32::from(a));
                    }
                    core.handle_datagram(now, peer, &bytes_of(req, mid));
                }
                Input::Answer { peer, mid: m, token, code, payload } => {
                    // Half the time, answer a request the core really sent.
                    let (peer, token, m) = match tokens.pop() {
                        Some(t) if m % 2 == 0 => t,
                        _ => (peer, token, m),
                    };
                    let mut p = msg::response(ResponseType::Content);
                    p.header.code = code.into();
                    p.header.set_type(MessageType::Acknowledgement);
                    p.header.message_id = m;
                    p.set_token(token);
                    p.payload = payload;
                    if let Ok(b) = p.to_bytes() {
                        core.handle_datagram(now, peer, &b);
                    }
                }
                Input::Authenticated(peer, n) => core.peer_authenticated(peer, Arc::from(name(n))),
                Input::Closed(peer) => core.peer_closed(peer),
                Input::Revoke(n) => core.revoke(now, &name(n)),
                Input::Wait(ms) => {
                    now += Duration::from_millis(u64::from(ms));
                    core.handle_timeout(now);
                }
            }
            while let Some(t) = core.poll_transmit() {
                if let Ok(p) = Packet::from_bytes(&t.payload) {
                    if p.header.get_type() == MessageType::Confirmable {
                        tokens.push((t.peer, p.get_token().to_vec(), p.header.message_id));
                        tokens.truncate(16);
                    }
                }
            }
            while core.poll_event().is_some() {}
            let usage = core.usage();
            prop_assert!(usage.sequences <= MAX_SEQUENCES, "{usage:?}");
            prop_assert!(usage.peers <= MAX_PEERS, "{usage:?}");
            prop_assert!(core.coap().usage().outgoing <= MAX_SEQUENCES, "one request per sequence");
        }
        // Every sequence ends by its deadline, and leaves nothing behind.
        now += Duration::from_secs(31);
        core.handle_timeout(now);
        prop_assert_eq!(core.usage().sequences, 0);
        prop_assert_eq!(core.coap().usage().outgoing, 0);
    }
}
