//! One CoAP datagram as a device sends it: coap-lite's codec, then everything of ours that
//! reads a parsed packet (option helpers, the LwM2M operation parsers on both sides, the
//! response parsers the server runs on device answers), then the exchange layer itself.
//!
//! The operation parsers are where option values turn into numbers and paths, so they are
//! the ones that must range-check; the endpoint is fed the datagram too (twice, to reach the
//! duplicate path) because that is what the server really does with it.
use super::content::{node_round_trip, records_round_trip};
use super::{registry, same};
use lwm2m::coap::msg::{self, BlockOpt};
use lwm2m::coap::{
    CoapOption, Endpoint, EndpointConfig, Event, MessageClass, Packet, ResponseType,
};
use lwm2m::content::ContentFormat;
use lwm2m::model::Path;
use lwm2m::ops::dm::{DmResponse, DownlinkRequest};
use lwm2m::ops::registration::{Register, Update};
use lwm2m::ops::reporting::SendRequest;
use lwm2m::ops::Lwm2mError;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Options whose value is an unsigned integer (RFC 7252 §5.10, RFC 7641, RFC 7959).
const UINT_OPTIONS: [CoapOption; 8] = [
    CoapOption::Observe,
    CoapOption::UriPort,
    CoapOption::ContentFormat,
    CoapOption::MaxAge,
    CoapOption::Accept,
    CoapOption::Size1,
    CoapOption::Size2,
    CoapOption::NoResponse,
];

/// The fuzz target.
pub fn coap_message(data: &[u8]) {
    if let Ok(packet) = Packet::from_bytes(data) {
        options(&packet);
        registration(&packet);
        device_requests(&packet);
        device_answers(&packet);
        // Whatever we parsed, coap-lite can write again.
        let _ = packet.to_bytes();
    }
    endpoint(data);
}

/// The option helpers of `lwm2m::coap::msg`.
fn options(packet: &Packet) {
    let _ = msg::uri_path(packet);
    let _ = msg::uri_query(packet);
    let _ = msg::location_path(packet);
    let _ = msg::is_success(packet);
    let _ = msg::code_string(packet);
    let _ = msg::observe(packet);
    let token = msg::Token::new(packet.get_token());
    if let Some(t) = token {
        assert_eq!(t.as_bytes(), packet.get_token());
    }
    for opt in UINT_OPTIONS {
        let _ = msg::has_option(packet, opt);
        if let Some(v) = msg::uint_option(packet, opt) {
            // An unsigned option value survives its own encoding (RFC 7252 §3.2).
            assert_eq!(msg::decode_uint(&msg::encode_uint(v)), Some(v));
        }
    }
    for opt in [CoapOption::Block1, CoapOption::Block2] {
        for value in packet.get_option(opt).into_iter().flatten() {
            if let Some(block) = BlockOpt::decode(value) {
                assert!(block.szx <= 6, "{block:?}");
                let _ = block.size();
                let _ = block.offset();
                assert_eq!(BlockOpt::decode(&block.encode()), Some(block));
            }
        }
        let _ = msg::block_option(packet, opt);
    }
    // What a Write-Attributes request carries (Core §5.1.2).
    let query = msg::uri_query(packet);
    let query: Vec<&str> = query.iter().map(String::as_str).collect();
    if let Ok(attrs) = lwm2m::attributes::NotificationAttributes::from_query(&query) {
        let back: Vec<String> = attrs.to_query();
        let items: Vec<&str> = back.iter().map(String::as_str).collect();
        same(
            &lwm2m::attributes::NotificationAttributes::from_query(&items),
            &attrs,
            || format!("{attrs:?} written as {back:?}"),
        );
    }
}

/// Register and Update as the server reads them (`ep`, `lt`, `b`, `lwm2m`, the links).
fn registration(packet: &Packet) {
    if let Ok(r) = Register::from_coap(packet) {
        // ops::registration's tests: what the server reads, the client can write again.
        assert_eq!(Register::from_coap(&r.to_coap()).as_ref(), Ok(&r));
    }
    if let Ok(u) = Update::from_coap(packet) {
        assert_eq!(Update::from_coap(&u.to_coap("/rd/x")).as_ref(), Ok(&u));
    }
    let _ = Lwm2mError::from_response(packet).map(|e| e.to_response());
}

/// Requests as the client role and the server's Send handler read them.
fn device_requests(packet: &Packet) {
    let schema = registry();
    if let Ok((req, _accept)) = DownlinkRequest::from_coap(packet, schema) {
        let _ = req.path();
        let _ = req.name();
        for f in [
            ContentFormat::SenmlJson,
            ContentFormat::Tlv,
            ContentFormat::Text,
        ] {
            let _ = req.to_coap(f);
        }
        // ops::dm's tests: every request survives to_coap -> from_coap, here in the format
        // it came in. Values follow the content round trip (content::node_round_trip).
        let format = msg::uint_option(packet, CoapOption::ContentFormat)
            .and_then(|c| u16::try_from(c).ok())
            .and_then(ContentFormat::from_code)
            .unwrap_or(ContentFormat::SenmlJson);
        if let Ok(again) = req.to_coap(format) {
            let back = DownlinkRequest::from_coap(&again, schema).map(|(r, _)| r);
            match &req {
                DownlinkRequest::Write { path, node, .. }
                | DownlinkRequest::Create { path, node } => {
                    assert!(back.is_ok(), "{req:?} encoded as {again:?}: {back:?}");
                    node_round_trip(format, path, node);
                }
                DownlinkRequest::WriteComposite { records } => {
                    assert!(back.is_ok(), "{req:?} encoded as {again:?}: {back:?}");
                    records_round_trip(format, records.clone());
                }
                _ => same(&back, &req, || format!("{req:?} encoded as {again:?}")),
            }
        }
    }
    if let Ok((send, format)) = SendRequest::from_coap(packet, schema) {
        let _ = send.to_coap(format);
    }
}

/// The requests whose answers `device_answers` parses: one of each shape.
fn requests() -> [DownlinkRequest; 8] {
    [
        DownlinkRequest::Read {
            path: Path::instance(3, 0),
        },
        DownlinkRequest::Read {
            path: Path::resource(3, 0, 0),
        },
        DownlinkRequest::Observe {
            path: Path::resource(3303, 0, 5700),
        },
        DownlinkRequest::Discover {
            path: Path::object(3),
        },
        DownlinkRequest::ReadComposite {
            paths: vec![Path::resource(3, 0, 0), Path::instance(1, 0)],
        },
        DownlinkRequest::Create {
            path: Path::object(1),
            node: lwm2m::model::Node::Object(Default::default()),
        },
        DownlinkRequest::Delete {
            path: Path::instance(1, 0),
        },
        DownlinkRequest::Execute {
            path: Path::resource(3, 0, 4),
            args: None,
        },
    ]
}

/// A device's answer, as the server parses it for each kind of request.
fn device_answers(packet: &Packet) {
    if !matches!(packet.header.code, MessageClass::Response(_)) {
        return;
    }
    let schema = registry();
    for req in requests() {
        let Ok(answer) = req.parse_response(packet, schema) else {
            continue;
        };
        // ops::dm's tests: every answer survives DmResponse::to_coap -> parse_response;
        // values follow the content round trip (content::node_round_trip).
        let format = match &answer {
            DmResponse::Content { format, .. } | DmResponse::Composite { format, .. } => *format,
            _ => ContentFormat::SenmlJson,
        };
        let Ok(again) = answer.to_coap(&req.path(), format) else {
            continue;
        };
        let back = req.parse_response(&again, schema);
        match &answer {
            DmResponse::Content { node, .. } => {
                assert!(back.is_ok(), "{answer:?} encoded as {again:?}: {back:?}");
                node_round_trip(format, &req.path(), node);
            }
            DmResponse::Composite { records, .. } => {
                assert!(back.is_ok(), "{answer:?} encoded as {again:?}: {back:?}");
                records_round_trip(format, records.clone());
            }
            _ => same(&back, &answer, || {
                format!("{answer:?} encoded as {again:?}")
            }),
        }
    }
}

/// The exchange layer, as a server endpoint, with one datagram delivered twice and every
/// request answered (with a body large enough for Block2 when the request asks for a lot).
fn endpoint(data: &[u8]) {
    let peer: SocketAddr = ([192, 0, 2, 1], 5683).into();
    let mut ep: Endpoint<SocketAddr> = Endpoint::new(EndpointConfig::default());
    let mut now = Instant::now();
    for _ in 0..2 {
        ep.handle_datagram(now, peer, data);
        while let Some(event) = ep.poll_event() {
            if let Event::Request(req) = event {
                let mut response = msg::response(ResponseType::Content);
                response.payload = vec![b'x'; (data.len() * 7) % 3000];
                let _ = ep.respond(now, req.id, response);
            }
        }
        while ep.poll_transmit().is_some() {}
        now += Duration::from_millis(10);
    }
    // Let every timer run out: retransmissions, dedup and block expiry.
    for _ in 0..64 {
        let Some(at) = ep.poll_timeout() else { break };
        now = now.max(at);
        ep.handle_timeout(now);
        while ep.poll_transmit().is_some() {}
        while ep.poll_event().is_some() {}
    }
}
