//! The flood's datagrams, one builder per kind (see the parent module for why each exists).
//! Every builder appends to a buffer and draws everything from the caller's seeded generator;
//! none produces more than about 40 KB, well under a UDP datagram's 65,507 bytes.
use rand::rngs::SmallRng;
use rand::{Rng, RngCore, SeedableRng};

mod coap;
mod dtls;

use coap::*;
#[cfg(test)]
pub(super) use dtls::hello_cookie_len;
use dtls::*;
pub(super) use dtls::{classify_dtls, ClientHello, DtlsAnswer};

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
