//! The flood's datagrams, one builder per kind (see the parent module for why each exists).
//! Every builder appends to a buffer and draws everything from the caller's seeded generator;
//! none produces more than about 40 KB, well under a UDP datagram's 65,507 bytes.
use rand::rngs::SmallRng;
use rand::{Rng, RngCore, SeedableRng};

/// Bytes of the pool random payloads are cut from: more than any one datagram takes.
const POOL: usize = 1 << 20;

/// The flood's randomness. A fast seeded generator (`SmallRng`: the same datagrams for the
/// same seed with the same build, and cheap enough to keep up with the sockets even in an
/// unoptimised test build) and a pool of random bytes drawn from it once, from which random
/// payloads are copied at random offsets: filling every datagram afresh would cost more than
/// sending it, and a parser cannot tell.
pub(super) struct Gen {
    rng: SmallRng,
    pool: Vec<u8>,
    /// The pool mapped to letters and digits, for endpoint names.
    names: Vec<u8>,
}

impl Gen {
    pub(super) fn new(seed: u64) -> Self {
        const ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789-";
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut pool = vec![0u8; POOL];
        rng.fill_bytes(&mut pool);
        let names = pool
            .iter()
            .take(16 * 1024)
            .map(|b| {
                ALNUM
                    .get(usize::from(*b) % ALNUM.len())
                    .copied()
                    .unwrap_or(b'x')
            })
            .collect();
        Self { rng, pool, names }
    }
}

impl RngCore for Gen {
    fn next_u32(&mut self) -> u32 {
        self.rng.next_u32()
    }
    fn next_u64(&mut self) -> u64 {
        self.rng.next_u64()
    }
    fn fill_bytes(&mut self, dst: &mut [u8]) {
        self.rng.fill_bytes(dst)
    }
}

/// What a datagram is, for the counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    RandomBytes,
    DtlsTruncated,
    DtlsOversized,
    DtlsEpoch1,
    DtlsCid,
    MangledHello,
    /// A well-formed ClientHello without a cookie, starting a cookie exchange.
    ClientHello,
    /// The same ClientHello again with the server's cookie.
    CookieEcho,
    CoapOptions,
    CoapRegister,
    CoapSend,
    CoapMalformed,
}

/// Every kind, in the order of their discriminants (the index of their counters).
pub(super) const KINDS: [Kind; 12] = [
    Kind::RandomBytes,
    Kind::DtlsTruncated,
    Kind::DtlsOversized,
    Kind::DtlsEpoch1,
    Kind::DtlsCid,
    Kind::MangledHello,
    Kind::ClientHello,
    Kind::CookieEcho,
    Kind::CoapOptions,
    Kind::CoapRegister,
    Kind::CoapSend,
    Kind::CoapMalformed,
];

/// How often each kind is drawn (the cookie echo is sent in answer, never drawn). Oversized
/// records are large, hence rarer; CoAP with options has the most variants, hence commoner.
const WEIGHTS: [(Kind, u32); 11] = [
    (Kind::RandomBytes, 10),
    (Kind::DtlsTruncated, 10),
    (Kind::DtlsOversized, 3),
    (Kind::DtlsEpoch1, 10),
    (Kind::DtlsCid, 10),
    (Kind::MangledHello, 10),
    (Kind::ClientHello, 10),
    (Kind::CoapOptions, 15),
    (Kind::CoapRegister, 10),
    (Kind::CoapSend, 6),
    (Kind::CoapMalformed, 8),
];

impl Kind {
    pub(super) fn name(self) -> &'static str {
        match self {
            Kind::RandomBytes => "random_bytes",
            Kind::DtlsTruncated => "dtls_truncated",
            Kind::DtlsOversized => "dtls_oversized",
            Kind::DtlsEpoch1 => "dtls_epoch1",
            Kind::DtlsCid => "dtls_cid",
            Kind::MangledHello => "dtls_mangled_client_hello",
            Kind::ClientHello => "dtls_client_hello",
            Kind::CookieEcho => "dtls_client_hello_with_cookie",
            Kind::CoapOptions => "coap_options",
            Kind::CoapRegister => "coap_register",
            Kind::CoapSend => "coap_send",
            Kind::CoapMalformed => "coap_malformed",
        }
    }

    /// Whether it is meant for the DTLS port (it goes to the other one now and then too).
    pub(super) fn is_dtls(self) -> bool {
        matches!(
            self,
            Kind::DtlsTruncated
                | Kind::DtlsOversized
                | Kind::DtlsEpoch1
                | Kind::DtlsCid
                | Kind::MangledHello
                | Kind::ClientHello
                | Kind::CookieEcho
        )
    }

    /// The kinds that are drawn, with their weights; only those named in `only` if it is
    /// not empty (names as in [`Kind::name`]; the cookie echo comes with the hello).
    pub(super) fn weights(only: &[String]) -> anyhow::Result<Vec<(Kind, u32)>> {
        for name in only {
            if !WEIGHTS.iter().any(|(k, _)| k.name() == name) {
                let known: Vec<&str> = WEIGHTS.iter().map(|(k, _)| k.name()).collect();
                anyhow::bail!("unknown kind {name:?}; the kinds are {}", known.join(", "));
            }
        }
        Ok(WEIGHTS
            .iter()
            .filter(|(k, _)| only.is_empty() || only.iter().any(|n| n == k.name()))
            .copied()
            .collect())
    }

    /// A kind drawn from `weights` (from [`Kind::weights`]).
    pub(super) fn pick(rng: &mut Gen, weights: &[(Kind, u32)]) -> Kind {
        let total: u32 = weights.iter().map(|(_, w)| w).sum();
        let mut x = rng.random_range(0..total.max(1));
        for &(k, w) in weights {
            if x < w {
                return k;
            }
            x -= w;
        }
        Kind::RandomBytes
    }
}

/// Appends a datagram of `kind` to `out` (not [`Kind::ClientHello`] or [`Kind::CookieEcho`],
/// which belong to a source's cookie exchange; asked for, they give a mangled hello).
pub(super) fn build(kind: Kind, rng: &mut Gen, out: &mut Vec<u8>) {
    match kind {
        Kind::RandomBytes => random_datagram(rng, out),
        Kind::DtlsTruncated => dtls_truncated(rng, out),
        Kind::DtlsOversized => dtls_oversized(rng, out),
        Kind::DtlsEpoch1 => dtls_epoch1(rng, out),
        Kind::DtlsCid => dtls_cid(rng, out),
        Kind::MangledHello | Kind::ClientHello | Kind::CookieEcho => mangled_hello(rng, out),
        Kind::CoapOptions => coap_options(rng, out),
        Kind::CoapRegister => coap_register(rng, out),
        Kind::CoapSend => coap_send(rng, out),
        Kind::CoapMalformed => coap_malformed(rng, out),
    }
}

// ---------------------------------------------------------------------------------------
// Helpers

/// Appends `n` random bytes (at most [`POOL`]), a slice of the pool.
fn random_bytes(g: &mut Gen, out: &mut Vec<u8>, n: usize) {
    let n = n.min(POOL);
    let at = g.rng.random_range(0..=POOL - n);
    out.extend_from_slice(g.pool.get(at..at + n).unwrap_or_default());
}

fn one_of<T: Copy>(rng: &mut Gen, items: &[T], default: T) -> T {
    items
        .get(rng.random_range(0..items.len().max(1)))
        .copied()
        .unwrap_or(default)
}

/// A length drawn so that small, typical and large all come up.
fn some_len(rng: &mut Gen, max: usize) -> usize {
    match rng.random_range(0..10) {
        0..=4 => rng.random_range(0..=64.min(max)),
        5..=8 => rng.random_range(0..=1500.min(max)),
        _ => rng.random_range(0..=max),
    }
}

fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_u24(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes()[1..]);
}

fn put_u48(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes()[2..]);
}

fn random_datagram(rng: &mut Gen, out: &mut Vec<u8>) {
    let n = some_len(rng, 9000);
    random_bytes(rng, out, n);
}

// ---------------------------------------------------------------------------------------
// DTLS (RFC 6347 §4.1 record layer, §4.2 handshake; RFC 9146 §4 CID records)

/// Content types: change_cipher_spec, alert, handshake, application_data, tls12_cid, and
/// one nobody defined.
const CONTENT_TYPES: [u8; 6] = [20, 21, 22, 23, 25, 99];
/// DTLS 1.2, DTLS 1.0, TLS 1.2, and garbage.
const VERSIONS: [u16; 4] = [0xFEFD, 0xFEFF, 0x0303, 0x1234];
/// The largest length a DTLS 1.2 ciphertext record may claim (RFC 6347 §4.1 via RFC 5246
/// §6.2.3: 2^14 + 2048).
const MAX_CIPHERTEXT: usize = (1 << 14) + 2048;

/// A record header (13 bytes) claiming `len` bytes follow.
fn record_header(out: &mut Vec<u8>, ct: u8, version: u16, epoch: u16, seq: u64, len: u16) {
    out.push(ct);
    put_u16(out, version);
    put_u16(out, epoch);
    put_u48(out, seq);
    put_u16(out, len);
}

fn random_header(rng: &mut Gen, out: &mut Vec<u8>, len: u16) {
    let ct = one_of(rng, &CONTENT_TYPES, 22);
    let version = one_of(rng, &VERSIONS, 0xFEFD);
    let epoch = one_of(rng, &[0, 1, 2, 0xFFFF], 0);
    let seq = rng.random::<u64>() & 0xFFFF_FFFF_FFFF;
    record_header(out, ct, version, epoch, seq, len);
}

/// Records whose length field promises more than the datagram holds: a lone header cut
/// short, a header with a short body, or a good record followed by a cut one.
fn dtls_truncated(rng: &mut Gen, out: &mut Vec<u8>) {
    match rng.random_range(0..4) {
        0 => {
            // Fewer than 13 bytes of a header.
            let claimed = rng.random();
            random_header(rng, out, claimed);
            let keep = rng.random_range(1..13);
            out.truncate(keep);
        }
        1 | 2 => {
            let claimed = rng.random_range(1..=MAX_CIPHERTEXT) as u16;
            random_header(rng, out, claimed);
            let n = rng.random_range(0..usize::from(claimed));
            random_bytes(rng, out, n);
        }
        _ => {
            let n = rng.random_range(0..200u16);
            random_header(rng, out, n);
            random_bytes(rng, out, usize::from(n));
            let claimed = rng.random_range(1..=2000u16);
            random_header(rng, out, claimed);
            let n = rng.random_range(0..usize::from(claimed));
            random_bytes(rng, out, n);
        }
    }
}

/// Records longer than any record may be, records followed by trailing bytes, and handshake
/// messages claiming up to 16 MB in a small fragment (the reassembly buffer must not believe
/// them, RFC 6347 §4.2.3).
fn dtls_oversized(rng: &mut Gen, out: &mut Vec<u8>) {
    match rng.random_range(0..3) {
        0 => {
            let n = rng.random_range(MAX_CIPHERTEXT + 1..=MAX_CIPHERTEXT + 12_000);
            random_header(rng, out, n as u16);
            random_bytes(rng, out, n);
        }
        1 => {
            // The length field says less than follows: the rest is "another record".
            let n = rng.random_range(0..300u16);
            random_header(rng, out, n);
            let extra = rng.random_range(1..3000);
            random_bytes(rng, out, usize::from(n) + extra);
        }
        _ => {
            // A handshake message (any type but ClientHello) of up to 2^24 - 1 bytes, one
            // fragment of it anywhere.
            let body = rng.random_range(0..1200u32);
            let msg_type = one_of(rng, &[0, 2, 11, 12, 14, 15, 16, 20, 255], 16);
            let total = one_of(rng, &[0xFF_FFFF, 1 << 20, body, body + 1], body);
            let offset = one_of(rng, &[0, 0xFF_FFFF, total.saturating_sub(body), 1], 0);
            record_header(
                out,
                22,
                0xFEFD,
                one_of(rng, &[0, 1], 0),
                rng.random::<u64>() & 0xFFFF_FFFF_FFFF,
                (12 + body) as u16,
            );
            out.push(msg_type);
            put_u24(out, total);
            put_u16(out, rng.random_range(0..4));
            put_u24(out, offset);
            put_u24(out, body);
            random_bytes(rng, out, body as usize);
        }
    }
}

/// Epoch 1 records of random "ciphertext" in the shapes real suites produce (CCM_8: 8-byte
/// explicit nonce and 8-byte tag; CBC: 16-byte IV and whole blocks with a 32-byte MAC).
fn dtls_epoch1(rng: &mut Gen, out: &mut Vec<u8>) {
    let n = match rng.random_range(0..3) {
        0 => 8 + rng.random_range(0..1200) + 8,
        1 => 16 + 16 * rng.random_range(2..80),
        _ => rng.random_range(0..64),
    };
    let ct = one_of(rng, &[23, 23, 23, 22, 20, 21], 23);
    let seq = rng.random_range(0..1 << 20);
    record_header(out, ct, 0xFEFD, 1, seq, n as u16);
    random_bytes(rng, out, n);
    if rng.random_bool(0.2) {
        // Several in one datagram.
        let m = rng.random_range(16..200);
        record_header(out, 23, 0xFEFD, 1, seq + 1, m as u16);
        random_bytes(rng, out, m);
    }
}

/// `tls12_cid` records (RFC 9146 §4) with Connection IDs of every length, 6 most often (the
/// server's default), matching no session; the length field honest or not.
fn dtls_cid(rng: &mut Gen, out: &mut Vec<u8>) {
    let cid_len = one_of(rng, &[6, 6, 6, 0, 1, 4, 8, 16, 255], 6);
    let n: usize = 8 + rng.random_range(0..600) + 8;
    out.push(25);
    put_u16(out, 0xFEFD);
    put_u16(out, one_of(rng, &[1, 1, 0, 2, 0xFFFF], 1));
    put_u48(out, rng.random::<u64>() & 0xFFFF_FFFF_FFFF);
    random_bytes(rng, out, cid_len);
    let claimed = if rng.random_bool(0.7) {
        n as u16
    } else {
        rng.random()
    };
    put_u16(out, claimed);
    random_bytes(rng, out, n);
}

/// A ClientHello this generator can send twice: once without a cookie and once with the
/// cookie of the HelloVerifyRequest (RFC 6347 §4.2.1), identical otherwise, as the server's
/// cookie covers the rest of the hello.
#[derive(Debug, Clone)]
pub(super) struct ClientHello {
    random: [u8; 32],
    session_id: Vec<u8>,
    suites: Vec<u16>,
    extensions: Vec<u8>,
    message_seq: u16,
}

impl ClientHello {
    /// A well-formed hello offering the LwM2M PSK suites (RFC 7925 §4.2), with or without
    /// the Extended Master Secret (RFC 7627) and Connection ID (RFC 9146 §3) extensions.
    pub(super) fn random(rng: &mut Gen) -> Self {
        let mut random = [0u8; 32];
        rng.fill_bytes(&mut random);
        // TLS_PSK_WITH_AES_128_CCM_8, TLS_PSK_WITH_AES_128_CBC_SHA256, then a few others.
        let mut suites = vec![0xC0A8, 0x00AE];
        for _ in 0..rng.random_range(0..4) {
            suites.push(rng.random());
        }
        let mut extensions = Vec::new();
        if rng.random_bool(0.5) {
            put_u16(&mut extensions, 23); // extended_master_secret
            put_u16(&mut extensions, 0);
        }
        if rng.random_bool(0.5) {
            put_u16(&mut extensions, 54); // connection_id, with an empty CID of our own
            put_u16(&mut extensions, 1);
            extensions.push(0);
        }
        let session_id = if rng.random_bool(0.1) {
            let mut s = vec![0u8; 16];
            rng.fill_bytes(&mut s);
            s
        } else {
            Vec::new()
        };
        Self {
            random,
            session_id,
            suites,
            extensions,
            message_seq: 0,
        }
    }

    /// The same hello with another handshake message sequence number.
    pub(super) fn with_seq(mut self, message_seq: u16) -> Self {
        self.message_seq = message_seq;
        self
    }

    /// Appends the hello, with `cookie`, as one epoch 0 record with sequence number
    /// `record_seq`.
    pub(super) fn encode(&self, cookie: &[u8], record_seq: u64, out: &mut Vec<u8>) {
        let mut body = Vec::with_capacity(128);
        put_u16(&mut body, 0xFEFD);
        body.extend_from_slice(&self.random);
        body.push(self.session_id.len() as u8);
        body.extend_from_slice(&self.session_id);
        body.push(cookie.len().min(255) as u8);
        body.extend_from_slice(cookie.get(..255.min(cookie.len())).unwrap_or_default());
        put_u16(&mut body, (self.suites.len() * 2) as u16);
        for s in &self.suites {
            put_u16(&mut body, *s);
        }
        body.extend_from_slice(&[1, 0]);
        if !self.extensions.is_empty() {
            put_u16(&mut body, self.extensions.len() as u16);
            body.extend_from_slice(&self.extensions);
        }
        let len = body.len() as u32;
        record_header(
            out,
            22,
            0xFEFD,
            0,
            record_seq & 0xFFFF_FFFF_FFFF,
            (12 + body.len()) as u16,
        );
        out.push(1); // client_hello
        put_u24(out, len);
        put_u16(out, self.message_seq);
        put_u24(out, 0);
        put_u24(out, len);
        out.extend_from_slice(&body);
    }
}

/// A ClientHello broken in one to three ways: a length field overwritten, bytes flipped, cut
/// short, a fragment of it only (RFC 6347 §4.2.3; a server may insist on whole hellos), a
/// cookie it was never given, or two hellos in one datagram.
fn mangled_hello(rng: &mut Gen, out: &mut Vec<u8>) {
    let start = out.len();
    let hello = ClientHello::random(rng);
    let mut cookie = vec![0u8; one_of(rng, &[0, 16, 32, 255], 16)];
    rng.fill_bytes(&mut cookie);
    hello.encode(&cookie, rng.random::<u64>(), out);
    for _ in 0..rng.random_range(1..=3) {
        let len = out.len() - start;
        match rng.random_range(0..6) {
            0 => {
                // One of the length fields: record, handshake, fragment offset and length,
                // session id, cookie.
                let (at, width) = one_of(
                    rng,
                    &[(11, 2), (14, 3), (19, 3), (22, 3), (59, 1), (60, 1)],
                    (11, 2),
                );
                for i in 0..width {
                    if let Some(b) = out.get_mut(start + at + i) {
                        *b = rng.random();
                    }
                }
            }
            1 => {
                for _ in 0..rng.random_range(1..8) {
                    let at = start + rng.random_range(0..len.max(1));
                    if let Some(b) = out.get_mut(at) {
                        *b = rng.random();
                    }
                }
            }
            2 => out.truncate(start + rng.random_range(0..len.max(1))),
            3 => {
                // Fragment: the handshake length stays, fragment_length says less.
                if let Some(f) = out.get_mut(start + 22..start + 25) {
                    let short = (len.saturating_sub(25) / 2) as u32;
                    f.copy_from_slice(&short.to_be_bytes()[1..]);
                }
            }
            4 => {
                let again = out.get(start..).map(<[u8]>::to_vec).unwrap_or_default();
                out.extend_from_slice(&again);
            }
            _ => {
                // Garbage extensions with a lying total length.
                let n = rng.random_range(0..300);
                put_u16(out, rng.random());
                random_bytes(rng, out, n);
            }
        }
    }
}

/// What a datagram from the DTLS port was.
pub(super) enum DtlsAnswer<'a> {
    /// A HelloVerifyRequest, with its cookie.
    HelloVerify(&'a [u8]),
    /// The ServerHello flight: the server started a handshake.
    ServerHello,
    Alert,
    Other,
}

/// Looks at the first record of a datagram from the DTLS port.
pub(super) fn classify_dtls(d: &[u8]) -> DtlsAnswer<'_> {
    match (d.first(), d.get(13)) {
        (Some(21), _) => DtlsAnswer::Alert,
        (Some(22), Some(3)) => {
            // Record header 13, handshake header 12, server_version 2, then the cookie.
            let Some(&n) = d.get(27) else {
                return DtlsAnswer::Other;
            };
            match d.get(28..28 + usize::from(n)) {
                Some(cookie) => DtlsAnswer::HelloVerify(cookie),
                None => DtlsAnswer::Other,
            }
        }
        (Some(22), Some(2)) => DtlsAnswer::ServerHello,
        _ => DtlsAnswer::Other,
    }
}

/// The cookie length of a well-formed ClientHello datagram (for the tests' fake server).
#[cfg(test)]
pub(super) fn hello_cookie_len(d: &[u8]) -> Option<u8> {
    if d.first() != Some(&22) || d.get(13) != Some(&1) {
        return None;
    }
    // Record 13 + handshake 12 + version 2 + random 32, then the session id.
    let sid = usize::from(*d.get(59)?);
    d.get(60 + sid).copied()
}

// ---------------------------------------------------------------------------------------
// CoAP (RFC 7252 §3)

const CON: u8 = 0;
const NON: u8 = 1;
const ACK: u8 = 2;
const RST: u8 = 3;
const GET: u8 = 1;
const POST: u8 = 2;

/// A CoAP message: header, token, options (sorted by number, stable, so repeats stay in the
/// order drawn) as deltas (RFC 7252 §3.1), payload after the marker.
struct Coap {
    version: u8,
    kind: u8,
    code: u8,
    mid: u16,
    token: Vec<u8>,
    options: Vec<(u16, Vec<u8>)>,
    payload: Vec<u8>,
}

impl Coap {
    fn request(rng: &mut Gen, kind: u8, code: u8) -> Self {
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

    fn opt(&mut self, number: u16, value: impl Into<Vec<u8>>) {
        self.options.push((number, value.into()));
    }

    fn path(&mut self, path: &str) {
        for seg in path.split('/').filter(|s| !s.is_empty()) {
            self.opt(11, seg.as_bytes());
        }
    }

    fn encode(mut self, out: &mut Vec<u8>) {
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
fn option_header(out: &mut Vec<u8>, delta: u32, len: u32) {
    fn nibble(v: u32) -> (u8, Vec<u8>) {
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
fn uint(v: u64) -> Vec<u8> {
    let b = v.to_be_bytes();
    let skip = b.iter().take_while(|x| **x == 0).count();
    b.get(skip..).unwrap_or_default().to_vec()
}

/// `v` in exactly `n` bytes (leading zeros or cut), for values longer than the option allows.
fn uint_n(v: u64, n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n.saturating_sub(8)];
    let b = v.to_be_bytes();
    out.extend_from_slice(b.get(8usize.saturating_sub(n)..).unwrap_or_default());
    out
}

/// A Block1/Block2 value (RFC 7959 §2.2): block number, more flag, size exponent; the number
/// beyond 2^20 - 1 takes more than the 3 bytes allowed.
fn block(num: u64, more: bool, szx: u8) -> Vec<u8> {
    uint(num << 4 | u64::from(more) << 3 | u64::from(szx & 7))
}

/// Paths a request may go to: the LwM2M interfaces, objects, and nonsense.
const PATHS: [&str; 12] = [
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
const QUERIES: [&str; 30] = [
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
fn endpoint_name(rng: &mut Gen) -> Vec<u8> {
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
fn some_option(rng: &mut Gen, m: &mut Coap) {
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
fn coap_options(rng: &mut Gen, out: &mut Vec<u8>) {
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
fn link_payload(rng: &mut Gen, out: &mut Vec<u8>) {
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
fn coap_register(rng: &mut Gen, out: &mut Vec<u8>) {
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
const SENML_JSON: [&str; 9] = [
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
fn senml_cbor(rng: &mut Gen, out: &mut Vec<u8>) {
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
fn coap_send(rng: &mut Gen, out: &mut Vec<u8>) {
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
fn coap_malformed(rng: &mut Gen, out: &mut Vec<u8>) {
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A HelloVerifyRequest with `cookie`, as a server sends it.
    pub(crate) fn hello_verify_request(cookie: &[u8]) -> Vec<u8> {
        let mut body = vec![0xFE, 0xFF, cookie.len() as u8];
        body.extend_from_slice(cookie);
        let mut out = Vec::new();
        record_header(&mut out, 22, 0xFEFF, 0, 0, (12 + body.len()) as u16);
        out.push(3);
        put_u24(&mut out, body.len() as u32);
        put_u16(&mut out, 0);
        put_u24(&mut out, 0);
        put_u24(&mut out, body.len() as u32);
        out.extend_from_slice(&body);
        out
    }

    #[test]
    fn the_cookie_of_a_hello_verify_request_is_found() {
        let hvr = hello_verify_request(&[1, 2, 3, 4]);
        match classify_dtls(&hvr) {
            DtlsAnswer::HelloVerify(c) => assert_eq!(c, &[1, 2, 3, 4]),
            _ => panic!("not a HelloVerifyRequest"),
        }
        assert!(matches!(
            classify_dtls(&hvr[..20]),
            DtlsAnswer::Other | DtlsAnswer::HelloVerify(_)
        ));
        assert!(matches!(classify_dtls(&hvr[..27]), DtlsAnswer::Other));
    }

    /// The hello is what the project's own DTLS engine accepts: it parses, and the cookie
    /// sits where the fake server of the flood's test looks for it.
    #[test]
    fn a_client_hello_is_well_formed() {
        let mut rng = Gen::new(1);
        for _ in 0..100 {
            let h = ClientHello::random(&mut rng);
            let mut a = Vec::new();
            h.encode(&[], 5, &mut a);
            let mut b = Vec::new();
            h.clone().with_seq(1).encode(&[9; 16], 6, &mut b);
            assert_eq!(hello_cookie_len(&a), Some(0));
            assert_eq!(hello_cookie_len(&b), Some(16));
            // The record length covers exactly the rest.
            let len = u16::from_be_bytes([a[11], a[12]]) as usize;
            assert_eq!(a.len(), 13 + len);
            assert_eq!(b.len(), a.len() + 16);
        }
    }

    /// Well-formed CoAP from the builders parses with coap-lite (the option encoding is
    /// right), and nothing any builder makes is too large for a UDP datagram.
    #[test]
    fn builders_stay_within_a_datagram_and_encode_options_right() {
        let mut rng = Gen::new(2);
        for kind in KINDS {
            for _ in 0..2000 {
                let mut out = Vec::new();
                build(kind, &mut rng, &mut out);
                assert!(out.len() <= 65_507, "{kind:?}: {}", out.len());
            }
        }
        let mut m = Coap::request(&mut rng, CON, POST);
        m.path("/rd");
        m.opt(15, b"ep=x".to_vec());
        m.opt(23, block((1 << 20) - 1, false, 6));
        m.opt(2049, vec![1]);
        m.opt(60, vec![b'a'; 300]);
        m.payload = b"</1/0>".to_vec();
        let mut out = Vec::new();
        m.encode(&mut out);
        let p = coap_lite::Packet::from_bytes(&out).unwrap();
        assert_eq!(p.payload, b"</1/0>");
        assert_eq!(
            p.get_option(coap_lite::CoapOption::Block2)
                .and_then(|v| v.front().cloned()),
            Some(vec![0xFF, 0xFF, 0xF6])
        );
        assert_eq!(
            p.get_option(coap_lite::CoapOption::Unknown(2049))
                .map(|v| v.len()),
            Some(1)
        );
    }

    #[test]
    fn integers_encode_as_asked() {
        assert_eq!(uint(0), Vec::<u8>::new());
        assert_eq!(uint(0x1234), vec![0x12, 0x34]);
        assert_eq!(uint_n(1, 4), vec![0, 0, 0, 1]);
        assert_eq!(
            uint_n(u64::MAX, 9),
            vec![0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]
        );
        assert_eq!(uint_n(0x0102_0304, 2), vec![3, 4]);
        assert_eq!(block(1, true, 7), vec![0x1F]);
    }
}
