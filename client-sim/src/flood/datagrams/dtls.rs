//! DTLS datagrams of the flood: damaged records, oversized and truncated ones, records of
//! epochs and Connection IDs no session has, and mangled ClientHellos (RFC 6347 §4.1 record
//! layer, §4.2 handshake; RFC 9146 §4 CID records); and the classification of the server's
//! answers.
use super::*;

/// Content types: change_cipher_spec, alert, handshake, application_data, tls12_cid, and
/// one nobody defined.
pub(super) const CONTENT_TYPES: [u8; 6] = [20, 21, 22, 23, 25, 99];
/// DTLS 1.2, DTLS 1.0, TLS 1.2, and garbage.
pub(super) const VERSIONS: [u16; 4] = [0xFEFD, 0xFEFF, 0x0303, 0x1234];
/// The largest length a DTLS 1.2 ciphertext record may claim (RFC 6347 §4.1 via RFC 5246
/// §6.2.3: 2^14 + 2048).
pub(super) const MAX_CIPHERTEXT: usize = (1 << 14) + 2048;

/// A record header (13 bytes) claiming `len` bytes follow.
pub(super) fn record_header(
    out: &mut Vec<u8>,
    ct: u8,
    version: u16,
    epoch: u16,
    seq: u64,
    len: u16,
) {
    out.push(ct);
    put_u16(out, version);
    put_u16(out, epoch);
    put_u48(out, seq);
    put_u16(out, len);
}

pub(super) fn random_header(rng: &mut Gen, out: &mut Vec<u8>, len: u16) {
    let ct = one_of(rng, &CONTENT_TYPES, 22);
    let version = one_of(rng, &VERSIONS, 0xFEFD);
    let epoch = one_of(rng, &[0, 1, 2, 0xFFFF], 0);
    let seq = rng.random::<u64>() & 0xFFFF_FFFF_FFFF;
    record_header(out, ct, version, epoch, seq, len);
}

/// Records whose length field promises more than the datagram holds: a lone header cut
/// short, a header with a short body, or a good record followed by a cut one.
pub(super) fn dtls_truncated(rng: &mut Gen, out: &mut Vec<u8>) {
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
pub(super) fn dtls_oversized(rng: &mut Gen, out: &mut Vec<u8>) {
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
pub(super) fn dtls_epoch1(rng: &mut Gen, out: &mut Vec<u8>) {
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
pub(super) fn dtls_cid(rng: &mut Gen, out: &mut Vec<u8>) {
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
pub(crate) struct ClientHello {
    random: [u8; 32],
    session_id: Vec<u8>,
    suites: Vec<u16>,
    extensions: Vec<u8>,
    message_seq: u16,
}

impl ClientHello {
    /// A well-formed hello offering the LwM2M PSK suites (RFC 7925 §4.2), with or without
    /// the Extended Master Secret (RFC 7627) and Connection ID (RFC 9146 §3) extensions.
    pub(crate) fn random(rng: &mut Gen) -> Self {
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
    pub(crate) fn with_seq(mut self, message_seq: u16) -> Self {
        self.message_seq = message_seq;
        self
    }

    /// Appends the hello, with `cookie`, as one epoch 0 record with sequence number
    /// `record_seq`.
    pub(crate) fn encode(&self, cookie: &[u8], record_seq: u64, out: &mut Vec<u8>) {
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
pub(super) fn mangled_hello(rng: &mut Gen, out: &mut Vec<u8>) {
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
pub(crate) enum DtlsAnswer<'a> {
    /// A HelloVerifyRequest, with its cookie.
    HelloVerify(&'a [u8]),
    /// The ServerHello flight: the server started a handshake.
    ServerHello,
    Alert,
    Other,
}

/// Looks at the first record of a datagram from the DTLS port.
pub(crate) fn classify_dtls(d: &[u8]) -> DtlsAnswer<'_> {
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
pub(crate) fn hello_cookie_len(d: &[u8]) -> Option<u8> {
    if d.first() != Some(&22) || d.get(13) != Some(&1) {
        return None;
    }
    // Record 13 + handshake 12 + version 2 + random 32, then the session id.
    let sid = usize::from(*d.get(59)?);
    d.get(60 + sid).copied()
}
