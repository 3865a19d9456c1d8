//! CoAP datagrams of the flood (RFC 7252 §3): messages with every option kind, Registers and
//! Sends with hostile payloads, and malformed headers.
use super::*;

pub(super) const CON: u8 = 0;
pub(super) const NON: u8 = 1;
pub(super) const ACK: u8 = 2;
pub(super) const RST: u8 = 3;
pub(super) const GET: u8 = 1;
pub(super) const POST: u8 = 2;

/// A CoAP message: header, token, options (sorted by number, stable, so repeats stay in the
/// order drawn) as deltas (RFC 7252 §3.1), payload after the marker.
pub(super) struct Coap {
    pub(super) version: u8,
    pub(super) kind: u8,
    pub(super) code: u8,
    pub(super) mid: u16,
    pub(super) token: Vec<u8>,
    pub(super) options: Vec<(u16, Vec<u8>)>,
    pub(super) payload: Vec<u8>,
}

impl Coap {
    pub(super) fn request(rng: &mut Gen, kind: u8, code: u8) -> Self {
        let mut token = vec![0u8; rng.random_range(0..=8)];
        rng.fill_bytes(&mut token);
        Self {
            version: 1,
            kind,
            code,
            mid: rng.random(),
            token,
            options: Vec::new(),
            payload: Vec::new(),
        }
    }

    pub(super) fn opt(&mut self, number: u16, value: impl Into<Vec<u8>>) {
        self.options.push((number, value.into()));
    }

    pub(super) fn path(&mut self, path: &str) {
        for seg in path.split('/').filter(|s| !s.is_empty()) {
            self.opt(11, seg.as_bytes());
        }
    }

    pub(super) fn encode(mut self, out: &mut Vec<u8>) {
        let tkl = self.token.len().min(8) as u8;
        out.push((self.version & 3) << 6 | (self.kind & 3) << 4 | tkl);
        out.push(self.code);
        put_u16(out, self.mid);
        out.extend_from_slice(self.token.get(..usize::from(tkl)).unwrap_or_default());
        self.options.sort_by_key(|(n, _)| *n);
        let mut last = 0u16;
        for (n, v) in &self.options {
            option_header(out, u32::from(n - last), v.len() as u32);
            out.extend_from_slice(v);
            last = *n;
        }
        if !self.payload.is_empty() {
            out.push(0xFF);
            out.extend_from_slice(&self.payload);
        }
    }
}

/// An option's delta and length nibbles with their extended bytes (RFC 7252 §3.1).
pub(super) fn option_header(out: &mut Vec<u8>, delta: u32, len: u32) {
    pub(super) fn nibble(v: u32) -> (u8, Vec<u8>) {
        match v {
            0..=12 => (v as u8, vec![]),
            13..=268 => (13, vec![(v - 13) as u8]),
            _ => (14, ((v - 269).min(0xFFFF) as u16).to_be_bytes().to_vec()),
        }
    }
    let (d, dx) = nibble(delta);
    let (l, lx) = nibble(len);
    out.push(d << 4 | l);
    out.extend_from_slice(&dx);
    out.extend_from_slice(&lx);
}

/// An unsigned integer option value in its shortest form (RFC 7252 §3.2).
pub(super) fn uint(v: u64) -> Vec<u8> {
    let b = v.to_be_bytes();
    let skip = b.iter().take_while(|x| **x == 0).count();
    b.get(skip..).unwrap_or_default().to_vec()
}

/// `v` in exactly `n` bytes (leading zeros or cut), for values longer than the option allows.
pub(super) fn uint_n(v: u64, n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n.saturating_sub(8)];
    let b = v.to_be_bytes();
    out.extend_from_slice(b.get(8usize.saturating_sub(n)..).unwrap_or_default());
    out
}

/// A Block1/Block2 value (RFC 7959 §2.2): block number, more flag, size exponent; the number
/// beyond 2^20 - 1 takes more than the 3 bytes allowed.
pub(super) fn block(num: u64, more: bool, szx: u8) -> Vec<u8> {
    uint(num << 4 | u64::from(more) << 3 | u64::from(szx & 7))
}

/// Paths a request may go to: the LwM2M interfaces, objects, and nonsense.
pub(super) const PATHS: [&str; 12] = [
    "/rd",
    "/rd/0123456789abcdef",
    "/dp",
    "/bs",
    "/3/0/0",
    "/65535/65535/65535/65535",
    "/.well-known/core",
    "/",
    "/rd/../../etc",
    "/%00/%ff",
    "/rd/rd/rd/rd/rd/rd/rd/rd",
    "/dp/3/0",
];

/// Queries of the registration interface with values out of every range (OMA LwM2M
/// Transport §6.2.1), and some that are no query at all.
pub(super) const QUERIES: [&str; 30] = [
    "lt=99999999999999999999",
    "lt=-1",
    "lt=0",
    "lt=18446744073709551616",
    "lt=4294967296",
    "lt=1.5",
    "lt=",
    "lt=abc",
    "lt=86400",
    "lwm2m=1.1",
    "lwm2m=9.99",
    "lwm2m=",
    "lwm2m=1.1.1.1",
    "b=U",
    "b=UQ",
    "b=XYZ",
    "b=",
    "sms=+0000",
    "Q",
    "Q=1",
    "pmin=-1",
    "pmax=99999999999999999999",
    "pmin=18446744073709551615",
    "epmin=-1",
    "epmax=1e99",
    "gt=NaN",
    "st=-0",
    "=",
    "&",
    "ep",
];

/// An endpoint name: ordinary, empty, 10 KB, or with bytes that are not a name.
pub(super) fn endpoint_name(rng: &mut Gen) -> Vec<u8> {
    let len = match rng.random_range(0..10) {
        0 => 10 * 1024,
        1 => 0,
        2 => 300,
        _ => rng.random_range(1..=32),
    };
    let mut name = Vec::with_capacity(len + 8);
    name.extend_from_slice(b"flood-");
    if rng.random_bool(0.1) {
        random_bytes(rng, &mut name, len);
    } else {
        let len = len.min(rng.names.len());
        let at = rng.random_range(0..=rng.names.len() - len);
        name.extend_from_slice(rng.names.get(at..at + len).unwrap_or_default());
    }
    name
}

/// Adds one option from the whole registry of RFC 7252 §12.2 and its extensions, and unknown
/// critical and elective ones, with a value that is usually out of range or too long.
pub(super) fn some_option(rng: &mut Gen, m: &mut Coap) {
    match rng.random_range(0..24) {
        0 => {
            let n = one_of(rng, &[0, 4, 8, 9, 40], 8);
            let mut v = vec![0u8; n];
            rng.fill_bytes(&mut v);
            m.opt(1, v); // If-Match
        }
        1 => m.opt(3, vec![b'h'; one_of(rng, &[1, 255, 256, 1000], 255)]), // Uri-Host
        2 => m.opt(4, vec![7u8; one_of(rng, &[0, 1, 8, 9, 64], 9)]),       // ETag
        3 => m.opt(5, vec![0u8; one_of(rng, &[0, 1, 4], 1)]),              // If-None-Match
        4 => {
            // Observe: at most 3 bytes (RFC 7641 §2); here up to 9.
            let v = one_of(
                rng,
                &[0xFF_FFFF, 1 << 24, u64::from(u32::MAX), u64::MAX, 1],
                1,
            );
            let n = one_of(rng, &[0, 3, 4, 8, 9], 3);
            m.opt(6, if n == 0 { uint(v) } else { uint_n(v, n) });
        }
        5 => m.opt(7, uint_n(rng.random(), one_of(rng, &[0, 2, 4], 4))), // Uri-Port
        6 => m.opt(8, vec![b'l'; rng.random_range(0..300)]),             // Location-Path
        7 => m.opt(9, vec![0x09; rng.random_range(0..40)]),              // OSCORE
        8 => {
            // Uri-Path, longer than 255 or many times.
            if rng.random_bool(0.5) {
                m.opt(11, vec![b'p'; rng.random_range(256..2000)]);
            } else {
                for _ in 0..rng.random_range(10..200) {
                    m.opt(11, b"3".to_vec());
                }
            }
        }
        9 => {
            // Content-Format, twice now and then.
            let v = one_of(rng, &[0, 40, 110, 112, 11542, 11543, 0xFFFF, 65000], 0);
            m.opt(12, uint(v));
            if rng.random_bool(0.3) {
                m.opt(12, uint_n(u64::from(u32::MAX), 4));
            }
        }
        10 => m.opt(14, uint_n(u64::MAX, one_of(rng, &[4, 5, 8], 4))), // Max-Age
        11 => {
            let q = one_of(rng, &QUERIES, "lt=-1");
            m.opt(15, q.as_bytes());
        }
        12 => m.opt(16, uint_n(rng.random(), one_of(rng, &[0, 1, 2], 1))), // Hop-Limit
        13 => m.opt(17, uint_n(rng.random(), one_of(rng, &[1, 2, 4], 2))), // Accept
        14 => {
            // Block2 / Block1 / Q-Block1 / Q-Block2: huge numbers, SZX 7 (reserved).
            let number = one_of(rng, &[23, 27, 19, 31], 23);
            let szx = one_of(rng, &[7, 6, 0, 7], 7);
            let num = one_of(rng, &[(1u64 << 20) - 1, 1 << 20, 1 << 27, 0], 0);
            m.opt(number, block(num, rng.random(), szx));
            if rng.random_bool(0.3) {
                m.opt(number, block(rng.random_range(0..1 << 20), true, 7));
            }
        }
        15 => m.opt(20, vec![b'q'; rng.random_range(0..300)]), // Location-Query
        16 => m.opt(28, uint_n(u64::MAX, one_of(rng, &[4, 8, 9], 4))), // Size2
        17 => m.opt(35, vec![b'u'; rng.random_range(0..1100)]), // Proxy-Uri
        18 => m.opt(39, b"coap+tcp".to_vec()),                 // Proxy-Scheme
        19 => m.opt(60, uint_n(u64::MAX, one_of(rng, &[4, 8], 4))), // Size1
        20 => m.opt(
            one_of(rng, &[252, 258, 292], 252),
            vec![1u8; rng.random_range(0..50)],
        ),
        21 => {
            // Unknown critical (odd): must be refused with 4.02 (RFC 7252 §5.4.1).
            let n = one_of(rng, &[13, 25, 2049, 65001, 65535], 13);
            let n = if rng.random_bool(0.3) {
                rng.random::<u16>() | 1
            } else {
                n
            };
            m.opt(n, vec![0xAB; rng.random_range(0..20)]);
        }
        22 => {
            // Unknown elective (even): ignored.
            let n = rng.random::<u16>() & !1;
            m.opt(n, vec![0xCD; rng.random_range(0..20)]);
        }
        _ => {
            // One option many times over, repeatable or not.
            let n = one_of(rng, &[6, 12, 14, 17, 23, 27, 60, 15], 6);
            for _ in 0..rng.random_range(2..30) {
                m.opt(n, uint(rng.random_range(0..1 << 24)));
            }
        }
    }
}

/// A request with a random method (or a code that is no method) to a random path, with up to
/// a dozen options drawn from [`some_option`].
pub(super) fn coap_options(rng: &mut Gen, out: &mut Vec<u8>) {
    let kind = one_of(rng, &[CON, CON, CON, NON, NON, ACK, RST], CON);
    let code = if rng.random_bool(0.9) {
        rng.random_range(1..=7)
    } else {
        rng.random()
    };
    let mut m = Coap::request(rng, kind, code);
    m.path(one_of(rng, &PATHS, "/rd"));
    for _ in 0..rng.random_range(1..=12) {
        some_option(rng, &mut m);
    }
    if rng.random_bool(0.3) {
        let n = some_len(rng, 2000);
        random_bytes(rng, &mut m.payload, n);
    }
    m.encode(out);
}

/// Link-format payloads (RFC 6690 §2) of a Register, broken in the ways a parser meets.
pub(super) fn link_payload(rng: &mut Gen, out: &mut Vec<u8>) {
    match rng.random_range(0..12) {
        0 => out.extend_from_slice(b"</1/0>,</3/0>"),
        1 => out.extend_from_slice(b"</1/0>,</3/0>,</65535/65535>,</4294967296/0>"),
        2 => out.extend_from_slice(
            b"</>;rt=\"oma.lwm2m\";ct=99999999999999999999,</1/0>;ver=99999999999999999999",
        ),
        3 => out.extend_from_slice(&b"<".repeat(rng.random_range(1..4000))),
        4 => {
            out.extend_from_slice(b"</");
            out.extend_from_slice(&b"1/".repeat(rng.random_range(1..2000)));
            out.push(b'>');
        }
        5 => out.extend_from_slice(b"</3/0"),
        6 => out.extend_from_slice(b"</3/0>;ct=\"unterminated"),
        7 => out.extend_from_slice(b";;;;,,,,<<>>\"\"\\"),
        8 => out.extend_from_slice(b"</-1/-1>,</3/-0>,</3/0/0/0/0/0/0>"),
        9 => out.extend_from_slice(&b"</3/0>,".repeat(rng.random_range(100..1500))),
        10 => {}
        _ => {
            let n = some_len(rng, 4000);
            random_bytes(rng, out, n);
        }
    }
}

/// A Register (POST /rd, OMA LwM2M Transport §6.2.1) with queries out of range, endpoint
/// names from empty to 10 KB, and garbage link-format payloads.
pub(super) fn coap_register(rng: &mut Gen, out: &mut Vec<u8>) {
    let kind = one_of(rng, &[CON, CON, CON, NON], CON);
    let mut m = Coap::request(rng, kind, POST);
    m.path(one_of(rng, &["/rd", "/rd", "/rd", "/rd/x", "/RD"], "/rd"));
    m.opt(12, uint(one_of(rng, &[40, 40, 40, 0, 110, 65535], 40)));
    let mut ep = b"ep=".to_vec();
    ep.extend_from_slice(&endpoint_name(rng));
    if rng.random_bool(0.9) {
        m.opt(15, ep);
    }
    for _ in 0..rng.random_range(0..6) {
        let q = one_of(rng, &QUERIES, "lt=-1");
        m.opt(15, q.as_bytes());
    }
    if rng.random_bool(0.2) {
        some_option(rng, &mut m);
    }
    link_payload(rng, &mut m.payload);
    m.encode(out);
}

/// SenML JSON (RFC 8428 §5) and LwM2M JSON that a decoder must refuse or bound.
pub(super) const SENML_JSON: [&str; 9] = [
    r#"[{"bn":"/3/0/","n":"0","vs":"x"}]"#,
    r#"[{"n":"/3/0/0","v":1e999}]"#,
    r#"[{"bt":-1e308,"n":"/3/0/13","t":1e308,"v":1}]"#,
    r#"[{"n":"/65535/65535/65535/65535","v":-0}]"#,
    r#"[{"n":"/3/0/0","vd":"!!!not base64"}]"#,
    r#"[{"n":"/3/0/0","vlo":"99999999999999999999:99999999999999999999"}]"#,
    r#"[{"n":"/3/0/0","vb":"yes"},{"n":"/3/0/0"}]"#,
    r#"[{"bn":"/3/0/","bt":99999999999999999999,"n":"13","v":18446744073709551616}]"#,
    r#"{"bn":"/3/0/","e":[{"n":"0","sv":"x"}]}"#,
];

/// SenML CBOR (RFC 8428 §6) heads that claim more than there is, or nest without end.
pub(super) fn senml_cbor(rng: &mut Gen, out: &mut Vec<u8>) {
    match rng.random_range(0..7) {
        0 => out.extend_from_slice(&[0x9F].repeat(rng.random_range(1..5000))),
        1 => out.extend_from_slice(&[0x81].repeat(rng.random_range(1..5000))),
        2 => out.extend_from_slice(&[0x81, 0xA1, 0x00, 0x5B, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]),
        3 => out.extend_from_slice(&[0x9B, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]),
        4 => out.extend_from_slice(&[
            0x81, 0xA2, 0x21, 0x66, b'/', b'3', b'/', b'0', b'/', b'0', 0x02, 0xFB, 0x7F, 0xF8, 0,
            0, 0, 0, 0, 0,
        ]),
        5 => out.extend_from_slice(&[0xC1].repeat(rng.random_range(1..5000))),
        _ => {
            let n = some_len(rng, 4000);
            random_bytes(rng, out, n);
        }
    }
}

/// A Send (POST /dp, OMA LwM2M Transport §6.4.1) with garbage SenML JSON or CBOR, the
/// content format sometimes not the one the payload is in.
pub(super) fn coap_send(rng: &mut Gen, out: &mut Vec<u8>) {
    let kind = one_of(rng, &[CON, CON, NON], CON);
    let code = one_of(rng, &[POST, POST, POST, GET, 3], POST);
    let mut m = Coap::request(rng, kind, code);
    m.path(one_of(rng, &["/dp", "/dp", "/dp/3/0", "/dp/"], "/dp"));
    let json = rng.random_bool(0.5);
    let format = match (json, rng.random_range(0..4)) {
        (_, 0) => one_of(rng, &[0, 40, 60, 50, 65535, 11544], 0),
        (true, 1) => 11542,
        (true, _) => 110,
        (false, 1) => 11543,
        (false, _) => 112,
    };
    m.opt(12, uint(format));
    if json {
        match rng.random_range(0..5) {
            0 => {
                let n = rng.random_range(1..5000);
                m.payload.extend_from_slice(&b"[".repeat(n));
                if rng.random_bool(0.5) {
                    m.payload.extend_from_slice(&b"]".repeat(n));
                }
            }
            1 => {
                m.payload.extend_from_slice(b"{\"");
                m.payload
                    .extend_from_slice(&b"a".repeat(rng.random_range(1..8000)));
            }
            2 => {
                m.payload.push(b'[');
                let n = rng.random_range(1..500);
                m.payload
                    .extend_from_slice(&br#"{"n":"/3/0/0","v":1},"#.repeat(n));
                m.payload.push(b']');
            }
            _ => {
                let s = one_of(rng, &SENML_JSON, "[]");
                m.payload.extend_from_slice(s.as_bytes());
            }
        }
    } else {
        senml_cbor(rng, &mut m.payload);
    }
    m.encode(out);
}

/// Messages that break the CoAP header or option format itself (RFC 7252 §3): wrong
/// versions, token lengths 9-15 (reserved), the reserved nibble 15 outside the payload
/// marker, options running past the end, a payload marker with no payload, empty messages
/// that are not empty, reserved code classes; and valid pings, ACKs and RSTs nobody asked
/// for.
pub(super) fn coap_malformed(rng: &mut Gen, out: &mut Vec<u8>) {
    let start = out.len();
    let mut m = Coap::request(rng, CON, GET);
    m.path(one_of(rng, &PATHS, "/rd"));
    match rng.random_range(0..12) {
        0 => {
            m.version = one_of(rng, &[0, 2, 3], 0);
            m.encode(out);
        }
        1 => {
            m.encode(out);
            if let Some(b) = out.get_mut(start) {
                *b = (*b & 0xF0) | rng.random_range(9..=15);
            }
        }
        2 => {
            m.token.clear();
            m.options.clear();
            m.encode(out);
            out.push(0xF0 | rng.random_range(0..15)); // delta 15, not the marker
            random_bytes(rng, out, 4);
        }
        3 => {
            m.token.clear();
            m.options.clear();
            m.encode(out);
            out.push(0xBF); // Uri-Path, length 15 (reserved)
        }
        4 => {
            m.token.clear();
            m.options.clear();
            m.encode(out);
            out.push(one_of(rng, &[0xD0, 0xE0, 0x0D, 0x0E], 0xD0)); // extended bytes missing
        }
        5 => {
            m.encode(out);
            out.push(0xB8); // Uri-Path of 8 bytes, 2 there
            out.extend_from_slice(b"rd");
        }
        6 => {
            m.encode(out);
            out.push(0xFF); // payload marker, no payload
        }
        7 => {
            // An Empty message (code 0.00) with a token, options or a payload.
            m.code = 0;
            m.kind = one_of(rng, &[CON, ACK, RST], CON);
            if rng.random_bool(0.5) {
                m.payload = b"not empty".to_vec();
            }
            m.encode(out);
        }
        8 => {
            let n = rng.random_range(1..4);
            random_bytes(rng, out, n);
            if let Some(b) = out.get_mut(start) {
                *b = 0x40 | (*b & 0x3F);
            }
        }
        9 => {
            // A ping (CON Empty): answered with RST; or an ACK/RST nobody waits for.
            let t = one_of(rng, &[CON, ACK, RST], CON);
            out.push(0x40 | t << 4);
            out.push(0);
            put_u16(out, rng.random());
        }
        10 => {
            // Reserved code classes 1, 6, 7, and responses sent to a server.
            m.code = one_of(rng, &[0x20, 0xC0, 0xE0, 0xFF, 0x45, 0x84], 0x20);
            m.encode(out);
        }
        _ => {
            // Option numbers whose deltas run past 65535.
            m.options.clear();
            m.encode(out);
            for _ in 0..rng.random_range(2..10) {
                option_header(out, 65_000, 0);
            }
        }
    }
}
