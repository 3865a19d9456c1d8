//! Tests across the handshake layer: round trips of every message, real OpenSSL captures
//! run through framing, reassembly and parsing, and property tests for reassembly under
//! loss-free reordering, duplication and overlap, and for robustness on arbitrary bytes.

use super::extensions::*;
use super::messages::*;
use super::*;
use crate::codec::Reader;
use proptest::prelude::*;
use proptest::sample::Index;
use rand::{seq::SliceRandom, SeedableRng};

fn p256_point(fill: u8) -> Vec<u8> {
    let mut p = vec![fill; 65];
    p[0] = 4;
    p
}

// ---------------------------------------------------------------- header and fragments

#[test]
fn handshake_type_codes() {
    for t in [
        HandshakeType::HelloRequest,
        HandshakeType::ClientHello,
        HandshakeType::ServerHello,
        HandshakeType::HelloVerifyRequest,
        HandshakeType::Certificate,
        HandshakeType::ServerKeyExchange,
        HandshakeType::CertificateRequest,
        HandshakeType::ServerHelloDone,
        HandshakeType::CertificateVerify,
        HandshakeType::ClientKeyExchange,
        HandshakeType::Finished,
    ] {
        assert_eq!(HandshakeType::from_u8(t as u8), Some(t));
    }
    assert_eq!(HandshakeType::from_u8(4), None);
    assert_eq!(HandshakeType::from_u8(255), None);
}

#[test]
fn full_message_header() {
    let m = full_message(HandshakeType::Finished, 5, &[0xaa; 12]).unwrap();
    assert_eq!(
        m[..12],
        [20, 0, 0, 12, 0, 5, 0, 0, 0, 0, 0, 12],
        "type, length, seq, offset 0, fragment_length = length"
    );
    assert_eq!(m.len(), 24);
    let (h, d) = parse_fragments(&m).next().unwrap().unwrap();
    assert!(h.is_complete());
    assert_eq!(d, &[0xaa; 12]);
}

#[test]
fn fragment_sizes_and_headers() {
    let body: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
    let frags = fragment(HandshakeType::Certificate, 3, &body, 100).unwrap();
    assert_eq!(frags.len(), 12); // 88 body bytes per fragment
    let mut rebuilt = Vec::new();
    for f in &frags {
        assert!(f.len() <= 100);
        let mut it = parse_fragments(f);
        let (h, d) = it.next().unwrap().unwrap();
        assert!(it.next().is_none());
        assert_eq!((h.msg_type, h.length, h.message_seq), (11, 1000, 3));
        assert_eq!(h.fragment_offset as usize, rebuilt.len());
        rebuilt.extend_from_slice(d);
    }
    assert_eq!(rebuilt, body);
    // An empty body is one header-only fragment, equal to the full message.
    let empty = fragment(HandshakeType::ServerHelloDone, 4, &[], 13).unwrap();
    assert_eq!(
        empty,
        vec![full_message(HandshakeType::ServerHelloDone, 4, &[]).unwrap()]
    );
    // The smallest useful size carries one body byte per fragment.
    assert_eq!(
        fragment(HandshakeType::Finished, 0, &[1, 2, 3], 13)
            .unwrap()
            .len(),
        3
    );
}

#[test]
fn several_fragments_in_one_record() {
    let mut payload = full_message(HandshakeType::ServerHello, 1, b"abc").unwrap();
    payload.extend(full_message(HandshakeType::ServerHelloDone, 2, &[]).unwrap());
    let items: Vec<_> = parse_fragments(&payload).collect();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0].as_ref().unwrap().1, b"abc");
    assert_eq!(items[1].as_ref().unwrap().0.msg_type, 14);
}

#[test]
fn malformed_fragments_stop_the_iterator() {
    let good = full_message(HandshakeType::Finished, 0, &[0; 12]).unwrap();
    // Fragment beyond the message length.
    let mut bad = good.clone();
    bad[11] = 13; // fragment_length 13 > length 12
    bad.push(0);
    let mut payload = good.clone();
    payload.extend_from_slice(&bad);
    payload.extend_from_slice(&good);
    let items: Vec<_> = parse_fragments(&payload).collect();
    assert_eq!(items.len(), 2);
    assert!(items[0].is_ok());
    assert_eq!(
        items[1],
        Err(DecodeError::OutOfRange {
            field: "handshake fragment_offset + fragment_length",
            value: 13,
            min: 0,
            max: 12,
        })
    );
    // Truncated data and truncated header.
    assert_eq!(
        parse_fragments(&good[..20]).collect::<Vec<_>>(),
        vec![Err(DecodeError::Malformed)]
    );
    assert_eq!(
        parse_fragments(&good[..5]).collect::<Vec<_>>(),
        vec![Err(DecodeError::Malformed)]
    );
    assert_eq!(parse_fragments(&[]).count(), 0);
}

// ---------------------------------------------------------------- message round trips

fn sample_client_hello() -> ClientHello {
    ClientHello {
        client_version: DTLS_1_2,
        random: [7; 32],
        session_id: vec![1; 32],
        cookie: vec![2; 255],
        cipher_suites: vec![0xC0A8, 0xC0AE, TLS_EMPTY_RENEGOTIATION_INFO_SCSV],
        compression_methods: vec![0],
        extensions: ClientExtensions {
            present: true,
            extended_master_secret: true,
            renegotiation_info: None,
            connection_id: Some(vec![]),
            supported_groups: Some(vec![GROUP_SECP256R1]),
            ec_point_formats: Some(vec![POINT_FORMAT_UNCOMPRESSED]),
            signature_algorithms: Some(vec![SIG_ECDSA_SECP256R1_SHA256]),
            client_certificate_types: Some(vec![CERT_TYPE_RAW_PUBLIC_KEY]),
            server_certificate_types: Some(vec![CERT_TYPE_RAW_PUBLIC_KEY, CERT_TYPE_X509]),
            encrypt_then_mac: false,
            session_ticket: false,
            unknown: vec![],
        },
    }
}

#[test]
fn client_hello_round_trip() {
    let ch = sample_client_hello();
    assert!(ch.has_scsv());
    assert_eq!(ClientHello::parse(&ch.encode().unwrap()), Ok(ch.clone()));
    // Without any extensions block.
    let bare = ClientHello {
        extensions: ClientExtensions::default(),
        cipher_suites: vec![0xC0A8],
        ..ch
    };
    let bytes = bare.encode().unwrap();
    assert_eq!(bytes.len(), 2 + 32 + 33 + 256 + 4 + 2);
    assert_eq!(ClientHello::parse(&bytes), Ok(bare.clone()));
    assert!(!bare.has_scsv());
}

#[test]
fn client_hello_rejects_bad_lengths() {
    let ch = sample_client_hello();
    let mut bytes = ch.encode().unwrap();
    bytes.push(0);
    assert!(ClientHello::parse(&bytes).is_err(), "trailing byte");
    let long_session = ClientHello {
        session_id: vec![0; 33],
        ..ch.clone()
    };
    assert!(ClientHello::parse(&long_session.encode().unwrap()).is_err());
    let no_suites = ClientHello {
        cipher_suites: vec![],
        ..ch.clone()
    };
    assert!(ClientHello::parse(&no_suites.encode().unwrap()).is_err());
    let no_compression = ClientHello {
        compression_methods: vec![],
        ..ch
    };
    assert!(ClientHello::parse(&no_compression.encode().unwrap()).is_err());
}

#[test]
fn client_hello_by_spec() {
    // A ClientHello as RFC 6347 §4.2.1 and RFC 9146 / RFC 7250 lay it out, written by hand:
    // PSK and ECDHE suites, a 3-byte cookie, CID (54) with a 2-byte cid and a raw public key
    // server_certificate_type (20).
    let mut body = vec![0xfe, 0xfd];
    body.extend([0x11; 32]);
    body.extend([0x00]); // session_id
    body.extend([0x03, 0xc0, 0x0c, 0x1e]); // cookie
    body.extend([0x00, 0x04, 0xc0, 0xa8, 0xc0, 0xae]); // cipher_suites
    body.extend([0x01, 0x00]); // compression_methods: null
    let mut exts = vec![0x00, 0x36, 0x00, 0x03, 0x02, 0xca, 0xfe]; // connection_id
    exts.extend([0x00, 0x14, 0x00, 0x02, 0x01, 0x02]); // server_certificate_type: [RPK]
    exts.extend([0x00, 0x17, 0x00, 0x00]); // extended_master_secret
    body.extend([0x00, exts.len() as u8]);
    body.extend(&exts);
    assert_eq!(body.len(), 49 + 17);
    // Cutting the block anywhere makes the hello malformed.
    for cut in 48..body.len() {
        assert!(ClientHello::parse(&body[..cut]).is_err(), "cut at {cut}");
    }
    let ch = ClientHello::parse(&body).unwrap();
    assert_eq!(ch.cookie, vec![0xc0, 0x0c, 0x1e]);
    assert_eq!(ch.cipher_suites, vec![0xC0A8, 0xC0AE]);
    assert_eq!(ch.extensions.connection_id, Some(vec![0xca, 0xfe]));
    assert_eq!(
        ch.extensions.server_certificate_types,
        Some(vec![CERT_TYPE_RAW_PUBLIC_KEY])
    );
    assert!(ch.extensions.extended_master_secret);
    assert!(ClientHello::parse(&ch.encode().unwrap()).unwrap() == ch);
}

#[test]
fn server_hello_round_trip() {
    let sh = ServerHello {
        server_version: DTLS_1_2,
        random: [9; 32],
        session_id: vec![3; 16],
        cipher_suite: 0xC0AE,
        compression_method: 0,
        extensions: ServerExtensions {
            present: true,
            extended_master_secret: true,
            renegotiation_info: Some(vec![]),
            connection_id: Some(vec![1, 2, 3, 4, 5, 6, 7, 8]),
            ec_point_formats: Some(vec![0]),
            client_certificate_type: Some(CERT_TYPE_X509),
            server_certificate_type: Some(CERT_TYPE_RAW_PUBLIC_KEY),
            encrypt_then_mac: false,
            unknown: vec![],
        },
    };
    assert_eq!(ServerHello::parse(&sh.encode().unwrap()), Ok(sh.clone()));
    let bare = ServerHello {
        extensions: ServerExtensions::default(),
        ..sh
    };
    assert_eq!(bare.encode().unwrap().len(), 2 + 32 + 17 + 3);
    assert_eq!(ServerHello::parse(&bare.encode().unwrap()), Ok(bare));
}

#[test]
fn hello_verify_request_round_trip() {
    let hvr = HelloVerifyRequest {
        server_version: DTLS_1_0,
        cookie: vec![0x55; 32],
    };
    assert_eq!(HelloVerifyRequest::parse(&hvr.encode().unwrap()), Ok(hvr));
    assert!(HelloVerifyRequest::parse(&[0xfe, 0xff, 0x02, 0x00]).is_err());
    assert!(HelloVerifyRequest::parse(&[0xfe, 0xff, 0x00, 0x00]).is_err());
}

#[test]
fn certificate_round_trip() {
    let x509 = CertificateBody::X509(vec![vec![0x30; 300], vec![0x31; 5]]);
    let bytes = x509.encode().unwrap();
    assert_eq!(bytes[..3], [0, 1, 0x37]); // 300 + 5 + 2 * 3 = 311
    assert_eq!(CertificateBody::parse_x509(&bytes), Ok(x509));
    let empty = CertificateBody::X509(vec![]);
    assert_eq!(empty.encode().unwrap(), vec![0, 0, 0]);
    assert_eq!(CertificateBody::parse_x509(&[0, 0, 0]), Ok(empty));
    // An empty certificate inside the list is not allowed (ASN.1Cert<1..2^24-1>).
    assert!(CertificateBody::parse_x509(&[0, 0, 3, 0, 0, 0]).is_err());
    assert!(CertificateBody::parse_x509(&[0, 0, 0, 0]).is_err());
}

#[test]
fn raw_public_key_certificate_by_spec() {
    // RFC 7250 §3: a single vec24 holding the DER SubjectPublicKeyInfo (here of a P-256
    // key generated by `openssl pkey -pubout -outform der`), with no certificate_list.
    let spki = hex::decode(
        "3059301306072a8648ce3d020106082a8648ce3d030107034200047c9bd6c4906bd01e5b7c1d66f0abdb2e\
         658d4622758f62944decf05c8f9ac9343f4dfd3358cc52baaa8cdf62acb10a9f47e64a0804fd74e1a74cbf\
         ba15dfa08d",
    )
    .unwrap();
    assert_eq!(spki.len(), 91);
    let mut body = vec![0, 0, 91];
    body.extend_from_slice(&spki);
    let rpk = CertificateBody::parse_raw_public_key(&body).unwrap();
    assert_eq!(rpk, CertificateBody::RawPublicKey(spki));
    assert_eq!(rpk.encode().unwrap(), body);
    assert!(CertificateBody::parse_raw_public_key(&[0, 0, 0]).is_err());
    let mut trailing = body.clone();
    trailing.push(0);
    assert!(CertificateBody::parse_raw_public_key(&trailing).is_err());
}

#[test]
fn server_key_exchange_round_trip() {
    let ske = EcdheServerKeyExchange {
        params: EcdheParams {
            named_curve: GROUP_SECP256R1,
            public_key: p256_point(0x42),
        },
        signature_scheme: SIG_ECDSA_SECP256R1_SHA256,
        signature: vec![0x30; 71],
    };
    let bytes = ske.encode().unwrap();
    assert_eq!(bytes[..5], [3, 0, 23, 65, 4]);
    assert_eq!(EcdheServerKeyExchange::parse(&bytes), Ok(ske.clone()));
    let signed = ske.params.signed_data(&[1; 32], &[2; 32]).unwrap();
    assert_eq!(signed.len(), 64 + 4 + 65);
    assert_eq!(signed[64..], ske.params.encode_params().unwrap()[..]);
    // Explicit curves (curve_type 1, 2) are refused.
    let mut explicit = bytes;
    explicit[0] = 1;
    assert!(EcdheServerKeyExchange::parse(&explicit).is_err());

    let psk = PskServerKeyExchange {
        identity_hint: b"hint".to_vec(),
    };
    assert_eq!(psk.encode().unwrap(), b"\x00\x04hint");
    assert_eq!(PskServerKeyExchange::parse(&psk.encode().unwrap()), Ok(psk));
    assert_eq!(
        PskServerKeyExchange::parse(&[0, 0]),
        Ok(PskServerKeyExchange {
            identity_hint: vec![]
        })
    );
}

#[test]
fn certificate_request_round_trip() {
    let cr = CertificateRequest {
        certificate_types: vec![64],
        signature_schemes: vec![SIG_ECDSA_SECP256R1_SHA256, 0x0503],
        authorities: vec![vec![0x30, 0x00], vec![0x30; 20]],
    };
    assert_eq!(
        CertificateRequest::parse(&cr.encode().unwrap()),
        Ok(cr.clone())
    );
    let no_cas = CertificateRequest {
        authorities: vec![],
        ..cr.clone()
    };
    assert_eq!(
        CertificateRequest::parse(&no_cas.encode().unwrap()),
        Ok(no_cas)
    );
    let no_types = CertificateRequest {
        certificate_types: vec![],
        ..cr.clone()
    };
    assert!(CertificateRequest::parse(&no_types.encode().unwrap()).is_err());
    let no_schemes = CertificateRequest {
        signature_schemes: vec![],
        ..cr
    };
    assert!(CertificateRequest::parse(&no_schemes.encode().unwrap()).is_err());
}

#[test]
fn small_messages_round_trip() {
    assert_eq!(ServerHelloDone.encode().unwrap(), Vec::<u8>::new());
    assert_eq!(ServerHelloDone::parse(&[]), Ok(ServerHelloDone));
    assert!(ServerHelloDone::parse(&[0]).is_err());

    let psk = PskClientKeyExchange {
        identity: b"urn:imei:123456789012345".to_vec(),
    };
    assert_eq!(PskClientKeyExchange::parse(&psk.encode().unwrap()), Ok(psk));

    let ecdhe = EcdheClientKeyExchange {
        public_key: p256_point(7),
    };
    assert_eq!(ecdhe.encode().unwrap()[0], 65);
    assert_eq!(
        EcdheClientKeyExchange::parse(&ecdhe.encode().unwrap()),
        Ok(ecdhe)
    );
    assert!(EcdheClientKeyExchange::parse(&[0]).is_err());

    let cv = CertificateVerify {
        signature_scheme: SIG_ECDSA_SECP256R1_SHA256,
        signature: vec![0x30; 70],
    };
    assert_eq!(CertificateVerify::parse(&cv.encode().unwrap()), Ok(cv));

    let fin = Finished {
        verify_data: *b"0123456789ab",
    };
    assert_eq!(fin.encode().unwrap(), b"0123456789ab");
    assert_eq!(Finished::parse(&fin.encode().unwrap()), Ok(fin));
    assert!(Finished::parse(&[0; 11]).is_err());
    assert!(Finished::parse(&[0; 13]).is_err());
}

// ---------------------------------------------------------------- OpenSSL captures

/// `(from_client, datagram)` pairs from a capture file.
fn capture(text: &str) -> Vec<(bool, Vec<u8>)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (dir, data) = l.split_once(' ').unwrap();
            (dir == "C", hex::decode(data).unwrap())
        })
        .collect()
}

/// The plaintext (epoch 0) handshake records of one direction, reassembled into messages.
/// The record header (RFC 6347 §4.1) is read here directly so the test does not depend on
/// the record layer.
fn messages(text: &str, from_client: bool) -> Vec<(u8, u16, Vec<u8>)> {
    let mut reassembler = Reassembler::new(0, 1 << 14, 1 << 16);
    let mut out = Vec::new();
    for (dir, datagram) in capture(text) {
        if dir != from_client {
            continue;
        }
        let mut r = Reader::new(&datagram);
        while !r.is_empty() {
            let content_type = r.u8().unwrap();
            let _version = r.u16().unwrap();
            let epoch = r.u16().unwrap();
            let _seq = r.u48().unwrap();
            let payload = r.vec16().unwrap();
            if content_type != 22 || epoch != 0 {
                continue;
            }
            for fragment in parse_fragments(payload) {
                let (h, data) = fragment.unwrap();
                assert_eq!(reassembler.insert(&h, data), Ok(Inserted::Buffered));
                while let Some(m) = reassembler.pop() {
                    out.push(m);
                }
            }
        }
    }
    assert_eq!(reassembler.buffered_bytes(), 0);
    out
}

const PSK_CAPTURE: &str = include_str!("testdata/openssl_psk_ccm8.txt");
const ECDHE_CAPTURE: &str = include_str!("testdata/openssl_ecdhe_ecdsa_mtu400.txt");

#[test]
fn openssl_psk_client_flights() {
    let msgs = messages(PSK_CAPTURE, true);
    let types: Vec<(u8, u16)> = msgs.iter().map(|m| (m.0, m.1)).collect();
    assert_eq!(types, vec![(1, 0), (1, 1), (16, 2)]);

    let first = ClientHello::parse(&msgs[0].2).unwrap();
    assert_eq!(first.client_version, DTLS_1_2);
    assert!(first.session_id.is_empty() && first.cookie.is_empty());
    assert_eq!(
        first.cipher_suites,
        vec![0xC0A8, TLS_EMPTY_RENEGOTIATION_INFO_SCSV]
    );
    assert!(first.has_scsv());
    assert_eq!(first.compression_methods, vec![0]);
    let ext = &first.extensions;
    assert!(ext.present && ext.session_ticket && ext.encrypt_then_mac);
    assert!(ext.extended_master_secret);
    let sigalgs = ext.signature_algorithms.as_ref().unwrap();
    assert_eq!(sigalgs.len(), 20);
    assert_eq!(sigalgs[0], SIG_ECDSA_SECP256R1_SHA256);
    assert!(ext.unknown.is_empty() && ext.connection_id.is_none());
    assert_eq!(ClientHello::parse(&first.encode().unwrap()).unwrap(), first);

    let second = ClientHello::parse(&msgs[1].2).unwrap();
    assert_eq!(second.random, first.random);
    assert_eq!(second.cookie.len(), 20);

    let cke = PskClientKeyExchange::parse(&msgs[2].2).unwrap();
    assert_eq!(cke.identity, b"myid");
    assert_eq!(cke.encode().unwrap(), msgs[2].2);
}

#[test]
fn openssl_psk_server_flights() {
    let msgs = messages(PSK_CAPTURE, false);
    let types: Vec<(u8, u16)> = msgs.iter().map(|m| (m.0, m.1)).collect();
    // HelloVerifyRequest, ServerHello, ServerKeyExchange, ServerHelloDone, NewSessionTicket.
    assert_eq!(types, vec![(3, 0), (2, 1), (12, 2), (14, 3), (4, 4)]);

    let hvr = HelloVerifyRequest::parse(&msgs[0].2).unwrap();
    assert_eq!(hvr.server_version, DTLS_1_0);
    assert_eq!(hvr.encode().unwrap(), msgs[0].2);
    let second_hello = ClientHello::parse(&messages(PSK_CAPTURE, true)[1].2).unwrap();
    assert_eq!(second_hello.cookie, hvr.cookie);

    let sh = ServerHello::parse(&msgs[1].2).unwrap();
    assert_eq!(sh.server_version, DTLS_1_2);
    assert_eq!(sh.cipher_suite, 0xC0A8);
    assert_eq!(sh.compression_method, 0);
    let ext = &sh.extensions;
    assert_eq!(ext.renegotiation_info, Some(vec![]));
    assert!(ext.extended_master_secret);
    // OpenSSL answers the ticket offer; a ServerHello cannot carry session_ticket for us.
    assert_eq!(ext.unknown, vec![EXT_SESSION_TICKET]);

    let ske = PskServerKeyExchange::parse(&msgs[2].2).unwrap();
    assert_eq!(ske.identity_hint, b"hint");
    assert_eq!(ServerHelloDone::parse(&msgs[3].2), Ok(ServerHelloDone));
}

#[test]
fn openssl_ecdhe_fragmented_flights() {
    // The server's Certificate, CertificateRequest and NewSessionTicket and the client's
    // Certificate were split into several fragments to fit a 400-byte MTU.
    let server = messages(ECDHE_CAPTURE, false);
    let types: Vec<(u8, u16)> = server.iter().map(|m| (m.0, m.1)).collect();
    assert_eq!(
        types,
        vec![(3, 0), (2, 1), (11, 2), (12, 3), (13, 4), (14, 5), (4, 6)]
    );
    let sh = ServerHello::parse(&server[1].2).unwrap();
    assert_eq!(sh.cipher_suite, 0xC0AE);
    assert_eq!(sh.extensions.ec_point_formats, Some(vec![0, 1, 2]));

    let CertificateBody::X509(chain) = CertificateBody::parse_x509(&server[2].2).unwrap() else {
        panic!("x509 parser returned another form")
    };
    assert_eq!(chain.len(), 1);
    assert_eq!(chain[0].len(), 379);
    assert_eq!(chain[0][..4], [0x30, 0x82, 0x01, 0x77]);
    assert_eq!(CertificateBody::X509(chain).encode().unwrap(), server[2].2);

    let ske = EcdheServerKeyExchange::parse(&server[3].2).unwrap();
    assert_eq!(ske.params.named_curve, GROUP_SECP256R1);
    assert_eq!(ske.params.public_key.len(), 65);
    assert_eq!(ske.params.public_key[0], 4);
    assert_eq!(ske.signature_scheme, SIG_ECDSA_SECP256R1_SHA256);
    assert_eq!(ske.signature[0], 0x30, "DER ECDSA signature");
    assert_eq!(ske.encode().unwrap(), server[3].2);

    let cr = CertificateRequest::parse(&server[4].2).unwrap();
    assert!(cr.certificate_types.contains(&64), "ecdsa_sign");
    assert!(cr.signature_schemes.contains(&SIG_ECDSA_SECP256R1_SHA256));
    // The one acceptable CA is the client's self-signed certificate: CN=client.
    assert_eq!(cr.authorities.len(), 1);
    assert!(cr.authorities[0].ends_with(b"client"));
    assert_eq!(cr.encode().unwrap(), server[4].2);
    assert_eq!(ServerHelloDone::parse(&server[5].2), Ok(ServerHelloDone));

    let client = messages(ECDHE_CAPTURE, true);
    let types: Vec<(u8, u16)> = client.iter().map(|m| (m.0, m.1)).collect();
    assert_eq!(types, vec![(1, 0), (1, 1), (11, 2), (16, 3), (15, 4)]);
    let ch = ClientHello::parse(&client[1].2).unwrap();
    assert_eq!(ch.extensions.supported_groups, Some(vec![GROUP_SECP256R1]));
    let CertificateBody::X509(chain) = CertificateBody::parse_x509(&client[2].2).unwrap() else {
        panic!("x509 parser returned another form")
    };
    assert_eq!(chain.len(), 1);
    let cke = EcdheClientKeyExchange::parse(&client[3].2).unwrap();
    assert_eq!(cke.public_key.len(), 65);
    let cv = CertificateVerify::parse(&client[4].2).unwrap();
    assert_eq!(cv.signature_scheme, SIG_ECDSA_SECP256R1_SHA256);
    assert_eq!(cv.encode().unwrap(), client[4].2);
}

#[test]
fn capture_replayed_in_reverse_order_reassembles() {
    // Every epoch-0 fragment of the server's side, delivered backwards: the reassembler still
    // releases HelloVerifyRequest..ServerHelloDone in order.
    let mut fragments = Vec::new();
    for (from_client, datagram) in capture(ECDHE_CAPTURE) {
        if from_client {
            continue;
        }
        let mut r = Reader::new(&datagram);
        while !r.is_empty() {
            let content_type = r.u8().unwrap();
            r.take(2).unwrap();
            let epoch = r.u16().unwrap();
            r.take(6).unwrap();
            let payload = r.vec16().unwrap();
            if content_type == 22 && epoch == 0 {
                for f in parse_fragments(payload) {
                    let (h, d) = f.unwrap();
                    fragments.push((h, d.to_vec()));
                }
            }
        }
    }
    let forward = messages(ECDHE_CAPTURE, false);
    let mut r = Reassembler::new(0, 1 << 14, 1 << 16);
    for (h, d) in fragments.iter().rev() {
        assert_eq!(r.insert(h, d), Ok(Inserted::Buffered));
    }
    let mut out = Vec::new();
    while let Some(m) = r.pop() {
        out.push(m);
    }
    assert_eq!(out, forward);
}

// ---------------------------------------------------------------- property tests

fn opt<T: std::fmt::Debug + Clone>(
    s: impl Strategy<Value = T> + 'static,
) -> BoxedStrategy<Option<T>> {
    proptest::option::of(s).boxed()
}

prop_compose! {
    fn client_extensions()(
        present in any::<bool>(),
        ems in any::<bool>(),
        reneg in opt(prop::collection::vec(any::<u8>(), 0..40)),
        cid in opt(prop::collection::vec(any::<u8>(), 0..=255)),
        groups in opt(prop::collection::vec(any::<u16>(), 1..10)),
        formats in opt(prop::collection::vec(any::<u8>(), 1..4)),
        sigs in opt(prop::collection::vec(any::<u16>(), 1..30)),
        cct in opt(prop::collection::vec(any::<u8>(), 1..4)),
        sct in opt(prop::collection::vec(any::<u8>(), 1..4)),
        etm in any::<bool>(),
        ticket in any::<bool>(),
    ) -> ClientExtensions {
        ClientExtensions {
            present,
            extended_master_secret: ems,
            renegotiation_info: reneg,
            connection_id: cid,
            supported_groups: groups,
            ec_point_formats: formats,
            signature_algorithms: sigs,
            client_certificate_types: cct,
            server_certificate_types: sct,
            encrypt_then_mac: etm,
            session_ticket: ticket,
            unknown: vec![],
        }
    }
}

prop_compose! {
    fn server_extensions()(
        present in any::<bool>(),
        ems in any::<bool>(),
        reneg in opt(prop::collection::vec(any::<u8>(), 0..40)),
        cid in opt(prop::collection::vec(any::<u8>(), 0..=255)),
        formats in opt(prop::collection::vec(any::<u8>(), 1..4)),
        cct in opt(any::<u8>()),
        sct in opt(any::<u8>()),
        etm in any::<bool>(),
    ) -> ServerExtensions {
        ServerExtensions {
            present,
            extended_master_secret: ems,
            renegotiation_info: reneg,
            connection_id: cid,
            ec_point_formats: formats,
            client_certificate_type: cct,
            server_certificate_type: sct,
            encrypt_then_mac: etm,
            unknown: vec![],
        }
    }
}

/// Normalizes what parsing cannot tell apart: a block with extensions is always `present`.
fn parsed_client(mut e: ClientExtensions) -> ClientExtensions {
    e.present |= !e.is_empty();
    e
}

fn parsed_server(mut e: ServerExtensions) -> ServerExtensions {
    e.present |= !e.is_empty();
    e
}

/// Message bodies to fragment, and overlapping extra pieces: (message, start, end) picks.
type Pieces = Vec<(Index, Index, Index)>;

proptest! {
    #[test]
    fn prop_client_hello_round_trip(
        version in any::<u16>(),
        random in any::<[u8; 32]>(),
        session_id in prop::collection::vec(any::<u8>(), 0..=32),
        cookie in prop::collection::vec(any::<u8>(), 0..=255),
        suites in prop::collection::vec(any::<u16>(), 1..50),
        compression in prop::collection::vec(any::<u8>(), 1..4),
        extensions in client_extensions(),
    ) {
        let ch = ClientHello {
            client_version: version,
            random,
            session_id,
            cookie,
            cipher_suites: suites,
            compression_methods: compression,
            extensions,
        };
        let parsed = ClientHello::parse(&ch.encode().unwrap()).unwrap();
        prop_assert_eq!(parsed, ClientHello { extensions: parsed_client(ch.extensions.clone()), ..ch });
    }

    #[test]
    fn prop_server_hello_round_trip(
        version in any::<u16>(),
        random in any::<[u8; 32]>(),
        session_id in prop::collection::vec(any::<u8>(), 0..=32),
        suite in any::<u16>(),
        compression in any::<u8>(),
        extensions in server_extensions(),
    ) {
        let sh = ServerHello {
            server_version: version,
            random,
            session_id,
            cipher_suite: suite,
            compression_method: compression,
            extensions,
        };
        let parsed = ServerHello::parse(&sh.encode().unwrap()).unwrap();
        prop_assert_eq!(parsed, ServerHello { extensions: parsed_server(sh.extensions.clone()), ..sh });
    }

    #[test]
    fn prop_arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        // Every result is acceptable; a parser only must not panic, and what it accepts
        // must survive a re-encode.
        if let Ok(m) = ClientHello::parse(&bytes) {
            let _ = ClientHello::parse(&m.encode().unwrap()).unwrap();
        }
        if let Ok(m) = ServerHello::parse(&bytes) {
            let _ = ServerHello::parse(&m.encode().unwrap()).unwrap();
        }
        if let Ok(m) = HelloVerifyRequest::parse(&bytes) {
            prop_assert_eq!(m.encode().unwrap(), bytes.clone());
        }
        if let Ok(m) = CertificateBody::parse_x509(&bytes) {
            prop_assert_eq!(m.encode().unwrap(), bytes.clone());
        }
        if let Ok(m) = CertificateBody::parse_raw_public_key(&bytes) {
            prop_assert_eq!(m.encode().unwrap(), bytes.clone());
        }
        if let Ok(m) = EcdheServerKeyExchange::parse(&bytes) {
            prop_assert_eq!(m.encode().unwrap(), bytes.clone());
        }
        if let Ok(m) = PskServerKeyExchange::parse(&bytes) {
            prop_assert_eq!(m.encode().unwrap(), bytes.clone());
        }
        if let Ok(m) = CertificateRequest::parse(&bytes) {
            prop_assert_eq!(m.encode().unwrap(), bytes.clone());
        }
        if let Ok(m) = ServerHelloDone::parse(&bytes) {
            prop_assert_eq!(m.encode().unwrap(), bytes.clone());
        }
        if let Ok(m) = PskClientKeyExchange::parse(&bytes) {
            prop_assert_eq!(m.encode().unwrap(), bytes.clone());
        }
        if let Ok(m) = EcdheClientKeyExchange::parse(&bytes) {
            prop_assert_eq!(m.encode().unwrap(), bytes.clone());
        }
        if let Ok(m) = CertificateVerify::parse(&bytes) {
            prop_assert_eq!(m.encode().unwrap(), bytes.clone());
        }
        if let Ok(m) = Finished::parse(&bytes) {
            prop_assert_eq!(m.encode().unwrap(), bytes.clone());
        }
        let _ = ClientExtensions::parse(&bytes);
        let _ = ServerExtensions::parse(&bytes);
    }

    #[test]
    fn prop_hello_mutations_never_panic(
        flips in prop::collection::vec((any::<Index>(), any::<u8>()), 1..8),
        cut in any::<Index>(),
    ) {
        // Structured inputs reach deeper than random bytes: corrupt a valid ClientHello.
        let mut bytes = sample_client_hello().encode().unwrap();
        for (at, v) in flips {
            let i = at.index(bytes.len());
            bytes[i] = v;
        }
        let _ = ClientHello::parse(&bytes);
        let _ = ClientHello::parse(&bytes[..cut.index(bytes.len())]);
        let _ = ServerHello::parse(&bytes);
    }

    #[test]
    fn prop_parse_fragments_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let items: Vec<_> = parse_fragments(&bytes).collect();
        let mut consumed = 0;
        for (i, item) in items.iter().enumerate() {
            match item {
                Ok((h, d)) => {
                    prop_assert_eq!(d.len(), h.fragment_length as usize);
                    prop_assert!(h.fragment_offset + h.fragment_length <= h.length);
                    consumed += HEADER_LEN + d.len();
                }
                Err(_) => prop_assert_eq!(i, items.len() - 1, "an error ends the iteration"),
            }
        }
        if items.last().is_none_or(|r| r.is_ok()) {
            prop_assert_eq!(consumed, bytes.len());
        }
    }

    #[test]
    fn prop_reassembler_stays_within_bounds(
        inserts in prop::collection::vec(
            (0u8..3, 0u32..300, 0u16..12, 0u32..320, prop::collection::vec(any::<u8>(), 0..200)),
            0..60,
        ),
        raw in prop::collection::vec(any::<u8>(), 0..300),
        max_message_len in 0usize..300,
        max_buffered in 0usize..800,
    ) {
        let mut r = Reassembler::new(2, max_message_len, max_buffered);
        for (msg_type, length, seq, offset, data) in inserts {
            // Mostly consistent headers, some not: the reassembler must refuse, not panic.
            let header = HandshakeHeader {
                msg_type,
                length,
                message_seq: seq,
                fragment_offset: offset,
                fragment_length: data.len() as u32,
            };
            let _ = r.insert(&header, &data);
            prop_assert!(r.buffered_bytes() <= max_buffered);
            while let Some((_, _, body)) = r.pop() {
                prop_assert!(body.len() <= max_message_len);
            }
        }
        for (h, d) in parse_fragments(&raw).flatten() {
            let _ = r.insert(&h, d);
            prop_assert!(r.buffered_bytes() <= max_buffered);
            let _ = r.pop();
        }
    }

    #[test]
    fn prop_fragment_reorder_duplicate_overlap_reassembles(
        bodies in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..600), 1..7),
        max_fragment in 13usize..200,
        pieces in prop::collection::vec((any::<Index>(), any::<Index>(), any::<Index>()), 0..20),
        duplicates in prop::collection::vec(any::<Index>(), 0..10),
        per_record in 1usize..5,
        first_seq in 0u16..1000,
        seed in any::<u64>(),
    ) {
        let pieces: Pieces = pieces;
        let types = [HandshakeType::ServerHello, HandshakeType::Certificate, HandshakeType::ServerKeyExchange];
        let msg_type = |i: usize| types[i % types.len()];
        let mut fragments: Vec<Vec<u8>> = Vec::new();
        for (i, body) in bodies.iter().enumerate() {
            fragments.extend(fragment(msg_type(i), first_seq + i as u16, body, max_fragment).unwrap());
        }
        // Extra fragments covering arbitrary, overlapping ranges of a message.
        for (m, a, b) in &pieces {
            let i = m.index(bodies.len());
            let body = &bodies[i];
            let (a, b) = (a.index(body.len() + 1), b.index(body.len() + 1));
            let (start, end) = (a.min(b), a.max(b));
            let mut f = Vec::new();
            HandshakeHeader {
                msg_type: msg_type(i) as u8,
                length: body.len() as u32,
                message_seq: first_seq + i as u16,
                fragment_offset: start as u32,
                fragment_length: (end - start) as u32,
            }.write(&mut f).unwrap();
            f.extend_from_slice(&body[start..end]);
            fragments.push(f);
        }
        for d in &duplicates {
            let f = fragments[d.index(fragments.len())].clone();
            fragments.push(f);
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        fragments.shuffle(&mut rng);

        let max_buffered = bodies.len() * (600 + 80);
        let mut r = Reassembler::new(first_seq, 600, max_buffered);
        let mut out = Vec::new();
        // Several fragments per record, as RFC 6347 §4.2.3 allows.
        for record in fragments.chunks(per_record) {
            let payload = record.concat();
            for item in parse_fragments(&payload) {
                let (h, d) = item.unwrap();
                let res = r.insert(&h, d).unwrap();
                prop_assert!(res == Inserted::Buffered || res == Inserted::Old);
                prop_assert!(r.buffered_bytes() <= max_buffered);
                while let Some(m) = r.pop() {
                    out.push(m);
                }
            }
        }
        let expected: Vec<_> = bodies
            .iter()
            .enumerate()
            .map(|(i, b)| (msg_type(i) as u8, first_seq + i as u16, b.clone()))
            .collect();
        prop_assert_eq!(out, expected);
        prop_assert_eq!(r.next_seq(), first_seq + bodies.len() as u16);
        prop_assert_eq!(r.buffered_bytes(), 0);
    }
}

#[test]
fn openssl_signatures_verify_over_our_encodings() {
    // Checks `EcdheParams::signed_data` and `full_message` against OpenSSL's own signatures:
    // the ServerKeyExchange signs client_random || server_random || params (RFC 8422 §5.4),
    // and CertificateVerify signs the transcript of full messages, which starts at the
    // second ClientHello (RFC 6347 §4.2.1, §4.2.6). The keys are those of the capture's
    // certificates (`openssl pkey -pubout`, last 65 bytes of the SubjectPublicKeyInfo).
    use p256::ecdsa::{signature::Verifier, Signature, VerifyingKey};
    let server_key = VerifyingKey::from_sec1_bytes(&hex::decode(
        "047c9bd6c4906bd01e5b7c1d66f0abdb2e658d4622758f62944decf05c8f9ac9343f4dfd3358cc52baaa8cd\
         f62acb10a9f47e64a0804fd74e1a74cbfba15dfa08d",
    ).unwrap())
    .unwrap();
    let client_key = VerifyingKey::from_sec1_bytes(&hex::decode(
        "0486bd5e20d9f8b633c709c99bd09064c174a1e2bc6fef8244464eaef6bc1c6538dffea326f6c9da4514b41\
         c9a5adff782f73c9cfd731a8ef8743049602d66961a",
    ).unwrap())
    .unwrap();
    let server = messages(ECDHE_CAPTURE, false);
    let client = messages(ECDHE_CAPTURE, true);
    let ch = ClientHello::parse(&client[1].2).unwrap();
    let sh = ServerHello::parse(&server[1].2).unwrap();

    let ske = EcdheServerKeyExchange::parse(&server[3].2).unwrap();
    let sig = Signature::from_der(&ske.signature).unwrap();
    let signed = ske.params.signed_data(&ch.random, &sh.random).unwrap();
    assert!(server_key.verify(&signed, &sig).is_ok());
    assert!(server_key.verify(&signed[1..], &sig).is_err());

    let mut transcript = Vec::new();
    let t = |m: &(u8, u16, Vec<u8>)| {
        full_message(HandshakeType::from_u8(m.0).unwrap(), m.1, &m.2).unwrap()
    };
    transcript.extend(t(&client[1]));
    for m in &server[1..6] {
        transcript.extend(t(m));
    }
    transcript.extend(t(&client[2]));
    transcript.extend(t(&client[3]));
    let cv = CertificateVerify::parse(&client[4].2).unwrap();
    let sig = Signature::from_der(&cv.signature).unwrap();
    assert!(client_key.verify(&transcript, &sig).is_ok());
}
