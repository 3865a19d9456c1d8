//! The DTLS engine's parsers, and the server fed whole datagram sequences.
//!
//! Random bytes stop at the first check a real peer passes without effort (the cookie, a MAC),
//! so the server target gives the input a few levers a network attacker also has: resend
//! its last ClientHello with the cookie the server handed out, let a genuine PSK client
//! handshake and send data, replay or corrupt what that client sent, and offer saved
//! sessions as they come back from the store. That is how the inputs reach the states behind
//! the cookie and the Finished check.
use dtls::codec::{DecodeError, EncodeError};
use dtls::config::{ClientConfig, PeerKey, PskEntry, ServerConfig, ServerCredentials, Timers};
use dtls::crypto::DirectionKeys;
use dtls::handshake::messages::{
    CertificateBody, CertificateRequest, CertificateVerify, ClientHello, EcdheClientKeyExchange,
    EcdheServerKeyExchange, Finished, HelloVerifyRequest, PskClientKeyExchange,
    PskServerKeyExchange, ServerHello, ServerHelloDone,
};
use dtls::handshake::{
    self, parse_fragments, ClientExtensions, HandshakeHeader, HandshakeType, Reassembler,
    ServerExtensions,
};
use dtls::pki::OwnKey;
use dtls::record::{
    split_records, write_plaintext, ContentType, Record, HEADER_LEN, MAX_CIPHERTEXT_LEN,
    MAX_PLAINTEXT_LEN,
};
use dtls::suite::RecordCipher;
use dtls::{AlertDescription, CipherSuite, Server};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

// ------------------------------------------------------------------------------ records

/// Keys to open records with: the ones `dtls::record`'s own tests seal their vectors with,
/// so the corpus holds records that authenticate and mutations of them that do not.
fn record_keys(cipher: RecordCipher) -> DirectionKeys {
    let aead = cipher != RecordCipher::CbcSha256;
    DirectionKeys {
        cipher,
        enc_key: std::array::from_fn(|i| i as u8),
        mac_key: if aead {
            [0; 32]
        } else {
            std::array::from_fn(|i| 0x40 + i as u8)
        },
        fixed_iv: if aead {
            [0xa0, 0xa1, 0xa2, 0xa3]
        } else {
            [0; 4]
        },
    }
}

const CIPHERS: [RecordCipher; 3] = [
    RecordCipher::Ccm8,
    RecordCipher::Gcm,
    RecordCipher::CbcSha256,
];

/// The fuzz target: a datagram split into records, each opened with every cipher, and the
/// record layer's round trips (plaintext write, seal then open) on what was parsed.
pub fn dtls_record(data: &[u8]) {
    for cid_len in [0, 4, 6, 16] {
        let mut consumed = 0;
        let mut failed = false;
        for record in split_records(data, cid_len) {
            let Ok(record) = record else {
                failed = true;
                continue;
            };
            assert!(record.fragment.len() <= MAX_CIPHERTEXT_LEN);
            consumed += HEADER_LEN + record.cid.len() + record.fragment.len();
            for cipher in CIPHERS {
                if let Ok((_, plaintext)) = record_keys(cipher).open(&record) {
                    assert!(plaintext.len() <= MAX_PLAINTEXT_LEN);
                }
            }
            if cid_len == 0 || cid_len == 6 {
                round_trips(&record);
            }
        }
        // Records tile the datagram until the first malformed one.
        assert!(consumed <= data.len());
        if !failed {
            assert_eq!(consumed, data.len());
        }
    }
}

/// `write_plaintext` then `split_records` gives the record back, and `seal` then `open`
/// gives the payload back (`dtls::record`'s tests `plaintext_record_layout`,
/// `seal_open_round_trip`), with the parsed record's fields as input.
fn round_trips(record: &Record<'_>) {
    if record.fragment.len() > MAX_PLAINTEXT_LEN {
        return;
    }
    let known = ContentType::from_u8(record.content_type).filter(|t| *t != ContentType::Tls12Cid);
    if let Some(ct) = known {
        let mut out = Vec::new();
        let written = write_plaintext(
            ct,
            record.version,
            record.epoch,
            record.seq,
            record.fragment,
            &mut out,
        );
        assert_eq!(written, Ok(()));
        let mut again = split_records(&out, 0);
        assert_eq!(again.next(), Some(Ok(*record)));
        assert_eq!(again.next(), None);
    }
    let ct = known.unwrap_or(ContentType::ApplicationData);
    let cid = (record.content_type == ContentType::Tls12Cid as u8 && !record.cid.is_empty())
        .then_some(record.cid);
    let mut rng = StdRng::seed_from_u64(u64::from(record.epoch));
    for cipher in CIPHERS {
        let keys = record_keys(cipher);
        let mut out = Vec::new();
        let sealed = keys.seal(
            ct,
            record.version,
            record.epoch,
            record.seq,
            cid,
            record.fragment,
            &mut rng,
            &mut out,
        );
        assert_eq!(sealed, Ok(()));
        let mut sealed = split_records(&out, cid.map_or(0, <[u8]>::len));
        let Some(Ok(sealed_record)) = sealed.next() else {
            panic!("a sealed record does not parse: {out:02x?}");
        };
        assert_eq!(sealed.next(), None);
        assert_eq!(
            keys.open(&sealed_record),
            Ok((ct as u8, record.fragment.to_vec()))
        );
    }
}

// ---------------------------------------------------------------------------- handshake

/// Every message parser over `body`, with the round trips `dtls::handshake`'s tests claim
/// (`prop_arbitrary_bytes_never_panic`): what parses encodes, the hellos re-parse after
/// `encode`, every other message encodes back to exactly the bytes it was parsed from.
fn parse_bodies(body: &[u8]) {
    fn exact<T>(
        body: &[u8],
        parse: fn(&[u8]) -> Result<T, DecodeError>,
        encode: fn(&T) -> Result<Vec<u8>, EncodeError>,
    ) {
        if let Ok(m) = parse(body) {
            assert_eq!(encode(&m), Ok(body.to_vec()));
        }
    }
    fn again<T: std::fmt::Debug, U>(
        body: &[u8],
        parse: fn(&[u8]) -> Result<T, DecodeError>,
        encode: fn(&T) -> Result<Vec<u8>, EncodeError>,
        reparse: fn(&[u8]) -> Result<U, DecodeError>,
    ) {
        if let Ok(m) = parse(body) {
            match encode(&m) {
                Ok(bytes) => assert!(reparse(&bytes).is_ok(), "{m:?} encoded as {bytes:02x?}"),
                Err(e) => panic!("{m:?} parsed but does not encode: {e}"),
            }
        }
    }
    again(
        body,
        ClientHello::parse,
        ClientHello::encode,
        ClientHello::parse,
    );
    again(
        body,
        ServerHello::parse,
        ServerHello::encode,
        ServerHello::parse,
    );
    exact(body, HelloVerifyRequest::parse, HelloVerifyRequest::encode);
    exact(body, CertificateBody::parse_x509, CertificateBody::encode);
    exact(
        body,
        CertificateBody::parse_raw_public_key,
        CertificateBody::encode,
    );
    exact(
        body,
        EcdheServerKeyExchange::parse,
        EcdheServerKeyExchange::encode,
    );
    exact(
        body,
        PskServerKeyExchange::parse,
        PskServerKeyExchange::encode,
    );
    exact(body, CertificateRequest::parse, CertificateRequest::encode);
    exact(body, ServerHelloDone::parse, ServerHelloDone::encode);
    exact(
        body,
        PskClientKeyExchange::parse,
        PskClientKeyExchange::encode,
    );
    exact(
        body,
        EcdheClientKeyExchange::parse,
        EcdheClientKeyExchange::encode,
    );
    exact(body, CertificateVerify::parse, CertificateVerify::encode);
    exact(body, Finished::parse, Finished::encode);
    let _ = ClientExtensions::parse(body);
    let _ = ServerExtensions::parse(body);
}

/// The fuzz target: the bytes as one message body for every parser, and as a record payload
/// of handshake fragments that go through reassembly, each whole message parsed again.
pub fn dtls_handshake(data: &[u8]) {
    parse_bodies(data);

    let (max_message, max_buffered) = (4096, 8192);
    let mut reassembler = Reassembler::new(0, max_message, max_buffered);
    let items: Vec<_> = parse_fragments(data).collect();
    let mut consumed = 0;
    for (i, item) in items.iter().enumerate() {
        match item {
            Ok((header, fragment)) => {
                assert_eq!(fragment.len(), header.fragment_length as usize);
                assert!(header.fragment_offset + header.fragment_length <= header.length);
                consumed += handshake::HEADER_LEN + fragment.len();
                let _ = HandshakeType::from_u8(header.msg_type);
                let _ = header.is_complete();
                let mut written = Vec::new();
                assert_eq!(header.write(&mut written), Ok(()));
                let mut r = dtls::codec::Reader::new(&written);
                assert_eq!(HandshakeHeader::read(&mut r), Ok(*header));
                let _ = reassembler.insert(header, fragment);
                assert!(reassembler.buffered_bytes() <= max_buffered);
            }
            // An error ends the iteration.
            Err(_) => assert_eq!(i, items.len() - 1),
        }
    }
    if items.last().is_none_or(Result::is_ok) {
        assert_eq!(consumed, data.len());
    }
    let mut expected = reassembler.next_seq();
    while let Some((_msg_type, seq, body)) = reassembler.pop() {
        assert_eq!(seq, expected);
        assert!(body.len() <= max_message);
        expected = expected.wrapping_add(1);
        parse_bodies(&body);
    }
}

// ------------------------------------------------------------------------------- server

/// The PSK identities the fuzzed server knows (the OpenSSL capture's and the genuine
/// client's), and any raw public key: the engine proves possession of the key before the
/// application judges it, and the point here is to reach that proof.
struct Creds;

const CAPTURE_IDENTITY: &[u8] = b"myid";
const CAPTURE_KEY: &[u8] = b"secret1234";
const CLIENT_IDENTITY: &[u8] = b"dev-0";
const CLIENT_KEY: [u8; 16] = [7; 16];

impl ServerCredentials for Creds {
    fn psk(&self, identity: &[u8]) -> Option<PskEntry> {
        let key = match identity {
            CAPTURE_IDENTITY => CAPTURE_KEY.to_vec(),
            CLIENT_IDENTITY => CLIENT_KEY.to_vec(),
            _ => return None,
        };
        Some(PskEntry {
            key,
            principal: Arc::from(String::from_utf8_lossy(identity).as_ref()),
        })
    }

    fn verify_client(
        &self,
        key: PeerKey<'_>,
        _unix_time: Option<u64>,
    ) -> Result<Arc<str>, AlertDescription> {
        match key {
            PeerKey::RawPublicKey(_) => Ok(Arc::from("rpk-device")),
            PeerKey::Certificates(_) => Err(AlertDescription::AccessDenied),
        }
    }
}

/// The server's ECDSA key (raw public key, no certificate), made once: deriving the public
/// key is a P-256 multiplication.
pub fn server_key() -> Option<Arc<OwnKey>> {
    static KEY: OnceLock<Option<Arc<OwnKey>>> = OnceLock::new();
    KEY.get_or_init(|| {
        OwnKey::from_secret_bytes(&[0x5e; 32], Vec::new())
            .ok()
            .map(Arc::new)
    })
    .clone()
}

/// The server under test: every suite, a raw public key for ECDHE, short timers, and bounds
/// small enough to hit.
fn server_config() -> ServerConfig {
    ServerConfig {
        suites: CipherSuite::ALL.to_vec(),
        key: server_key(),
        cid_len: 6,
        timers: Timers {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(4),
            handshake_timeout: Duration::from_secs(20),
        },
        max_handshakes: 3,
        handshakes_per_source_per_sec: 4,
        max_sessions: 2,
        max_datagram: 400,
        ..ServerConfig::default()
    }
}

/// The genuine client's configuration: it asks for a Connection ID.
pub fn client_config() -> ClientConfig {
    ClientConfig {
        connection_id: Some(vec![0xc1, 0x1e]),
        ..ClientConfig::psk(CLIENT_IDENTITY, CLIENT_KEY)
    }
}

/// The four source addresses of a run; the genuine client sits at the first.
fn addr(i: u8) -> SocketAddr {
    match i & 3 {
        0 => ([192, 0, 2, 1], 40001).into(),
        1 => ([192, 0, 2, 1], 40002).into(),
        2 => ([198, 51, 100, 7], 5684).into(),
        _ => (
            std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1),
            5684,
        )
            .into(),
    }
}

/// Virtual time steps a chunk may take before it is delivered.
const STEPS_MS: [u64; 8] = [0, 1, 50, 1_000, 3_000, 30_000, 130_000, 600_000];

/// Datagrams one input may deliver.
const MAX_CHUNKS: usize = 48;

/// What a chunk asks for (`control >> 5 & 3`).
const MODE_RAW: u8 = 0;
const MODE_HELLO_AGAIN: u8 = 1;
const MODE_CLIENT: u8 = 2;
const MODE_MUTATE: u8 = 3;

/// The chunk encoding of the `dtls_server` input, for the corpus: one control byte
/// (bits 0-1 source address, 2-4 time step, 5-6 mode, 7 flag), a big-endian u16 length,
/// then that many bytes (fewer if the input ends).
pub fn chunk(addr: u8, step: u8, mode: u8, flag: bool, data: &[u8]) -> Vec<u8> {
    let control = (addr & 3) | ((step & 7) << 2) | ((mode & 3) << 5) | (u8::from(flag) << 7);
    let len = u16::try_from(data.len()).unwrap_or(u16::MAX);
    let mut out = vec![control];
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(data.get(..usize::from(len)).unwrap_or(data));
    out
}

/// Modes of a chunk, for [`chunk`].
pub mod mode {
    /// The bytes are a datagram (with the flag: a saved session to restore).
    pub const RAW: u8 = super::MODE_RAW;
    /// Resend this address's last ClientHello with the server's latest cookie.
    pub const HELLO_AGAIN: u8 = super::MODE_HELLO_AGAIN;
    /// Run the genuine client (handshake, then send the bytes as application data).
    pub const CLIENT: u8 = super::MODE_CLIENT;
    /// XOR the bytes into the client's last datagram and send it from the address (with
    /// the flag: into a saved session and restore it).
    pub const MUTATE: u8 = super::MODE_MUTATE;
}

struct Run {
    now: Instant,
    server: Server,
    config: ServerConfig,
    /// Latest cookie the server sent to each address.
    cookies: HashMap<SocketAddr, Vec<u8>>,
    /// Last datagram from each address that started with a ClientHello record.
    hellos: HashMap<SocketAddr, Vec<u8>>,
    client: Option<dtls::client::Client>,
    client_connected: bool,
    /// The genuine client's last datagram.
    last_client: Vec<u8>,
}

impl Run {
    fn new() -> Self {
        let config = server_config();
        Run {
            now: Instant::now(),
            server: Server::new(config.clone(), [0x5e; 32]),
            config,
            cookies: HashMap::new(),
            hellos: HashMap::new(),
            client: None,
            client_connected: false,
            last_client: Vec::new(),
        }
    }

    /// Delivers one datagram to the server and everything it answers to whom it is for.
    fn deliver(&mut self, from: SocketAddr, data: &[u8]) {
        if starts_with_client_hello(data) {
            self.hellos.insert(from, data.to_vec());
        }
        self.server.handle_datagram(self.now, from, data, &Creds);
        self.drain();
    }

    /// Takes the server's output: checks it, notes cookies, hands the client its datagrams.
    fn drain(&mut self) {
        while let Some((to, datagram)) = self.server.poll_transmit() {
            assert!(
                datagram.len() <= self.config.max_datagram,
                "a {}-byte datagram with max_datagram {}",
                datagram.len(),
                self.config.max_datagram
            );
            if let Some(cookie) = hello_verify_cookie(&datagram) {
                self.cookies.insert(to, cookie);
            }
            if to == addr(0) {
                if let Some(c) = self.client.as_mut() {
                    c.handle_datagram(self.now, &datagram);
                }
            }
        }
        while self.server.poll_event().is_some() {}
        if let Some(c) = self.client.as_mut() {
            while let Some(e) = c.poll_event() {
                if let dtls::client::ClientEvent::Connected { .. } = e {
                    self.client_connected = true;
                }
            }
        }
    }

    fn advance(&mut self, step: u8) {
        let ms = STEPS_MS.get(usize::from(step & 7)).copied().unwrap_or(0);
        self.now += Duration::from_millis(ms);
        for _ in 0..32 {
            match self.server.poll_timeout() {
                Some(at) if at <= self.now => self.server.handle_timeout(self.now),
                _ => break,
            }
            self.drain();
        }
        if let Some(c) = self.client.as_mut() {
            if c.poll_timeout().is_some_and(|at| at <= self.now) {
                c.handle_timeout(self.now);
            }
        }
    }

    /// Lets the genuine client and the server talk until neither has anything to send.
    fn pump(&mut self) {
        for _ in 0..16 {
            let Some(datagram) = self.client.as_mut().and_then(|c| c.poll_transmit()) else {
                return;
            };
            self.last_client = datagram.clone();
            self.deliver(addr(0), &datagram);
        }
    }

    fn client_step(&mut self, data: &[u8]) {
        if self.client.is_none() {
            let config = Arc::new(client_config());
            self.client = Some(dtls::client::Client::connect(
                config, self.now, [0xc1; 32], None,
            ));
        }
        if self.client_connected && !data.is_empty() {
            if let Some(c) = self.client.as_mut() {
                let _ = c.send(data.get(..1024).unwrap_or(data));
            }
        }
        self.pump();
    }

    fn chunk(&mut self, control: u8, data: &[u8]) {
        let from = addr(control);
        let flag = control & 0x80 != 0;
        self.advance((control >> 2) & 7);
        match ((control >> 5) & 3, flag) {
            (MODE_RAW, false) => self.deliver(from, data),
            (MODE_RAW, true) => {
                let _ = self.server.restore_session(data);
            }
            (MODE_HELLO_AGAIN, _) => {
                let again = self
                    .hellos
                    .get(&from)
                    .zip(self.cookies.get(&from))
                    .and_then(|(hello, cookie)| with_cookie(hello, cookie));
                match again {
                    Some(hello) => self.deliver(from, &hello),
                    None => self.deliver(from, data),
                }
            }
            (MODE_CLIENT, _) => self.client_step(data),
            (MODE_MUTATE, false) => {
                let mut datagram = self.last_client.clone();
                xor_into(&mut datagram, data);
                self.deliver(from, &datagram);
            }
            (MODE_MUTATE, true) => {
                let saved = self.server.save_sessions();
                if let Some((_, mut bytes)) = saved.into_iter().next() {
                    xor_into(&mut bytes, data);
                    let _ = self.server.restore_session(&bytes);
                }
            }
            _ => {}
        }
        let usage = self.server.usage();
        assert!(usage.handshakes <= self.config.max_handshakes, "{usage:?}");
        assert!(usage.sessions <= self.config.max_sessions, "{usage:?}");
    }
}

/// XORs `data` into `target` cyclically by position (no-op on an empty target).
fn xor_into(target: &mut [u8], data: &[u8]) {
    let len = target.len();
    if len == 0 {
        return;
    }
    for (i, b) in data.iter().enumerate() {
        if let Some(t) = target.get_mut(i % len) {
            *t ^= b;
        }
    }
}

/// Whether the first record of `datagram` is an epoch-0 handshake record starting with a
/// ClientHello.
fn starts_with_client_hello(datagram: &[u8]) -> bool {
    matches!(
        split_records(datagram, 0).next(),
        Some(Ok(r)) if r.content_type == ContentType::Handshake as u8
            && r.epoch == 0
            && r.fragment.first() == Some(&(HandshakeType::ClientHello as u8))
    )
}

/// The cookie of a HelloVerifyRequest in `datagram`, if it holds one.
fn hello_verify_cookie(datagram: &[u8]) -> Option<Vec<u8>> {
    for record in split_records(datagram, 0).flatten() {
        if record.content_type != ContentType::Handshake as u8 {
            continue;
        }
        for (header, body) in parse_fragments(record.fragment).flatten() {
            if header.msg_type == HandshakeType::HelloVerifyRequest as u8 && header.is_complete() {
                return HelloVerifyRequest::parse(body).ok().map(|h| h.cookie);
            }
        }
    }
    None
}

/// `datagram` with the cookie of its first record's ClientHello replaced, byte for byte
/// otherwise (the server's cookie covers the rest of the hello as it was sent). `None` if
/// the first record is not one whole ClientHello fragment.
fn with_cookie(datagram: &[u8], cookie: &[u8]) -> Option<Vec<u8>> {
    let record = split_records(datagram, 0).next()?.ok()?;
    let mut fragments = parse_fragments(record.fragment);
    let (header, body) = fragments.next()?.ok()?;
    if !header.is_complete() || header.msg_type != HandshakeType::ClientHello as u8 {
        return None;
    }
    let rest_of_record = record.fragment.get(handshake::HEADER_LEN + body.len()..)?;
    // client_version (2), random (32), session_id <0..32>, cookie <0..2^8-1>.
    let sid_len = usize::from(*body.get(34)?);
    let cookie_at = 35 + sid_len;
    let old_len = usize::from(*body.get(cookie_at)?);
    let after = body.get(cookie_at + 1 + old_len..)?;
    let mut new_body = body.get(..cookie_at)?.to_vec();
    new_body.push(u8::try_from(cookie.len()).ok()?);
    new_body.extend_from_slice(cookie);
    new_body.extend_from_slice(after);
    let length = u32::try_from(new_body.len()).ok()?;
    let mut payload = Vec::new();
    HandshakeHeader {
        length,
        fragment_offset: 0,
        fragment_length: length,
        ..header
    }
    .write(&mut payload)
    .ok()?;
    payload.extend_from_slice(&new_body);
    payload.extend_from_slice(rest_of_record);
    if payload.len() > MAX_PLAINTEXT_LEN {
        return None;
    }
    let mut out = Vec::new();
    write_plaintext(
        ContentType::Handshake,
        record.version,
        record.epoch,
        record.seq,
        &payload,
        &mut out,
    )
    .ok()?;
    let record_len = HEADER_LEN + record.fragment.len();
    out.extend_from_slice(datagram.get(record_len..)?);
    Some(out)
}

/// The fuzz target: a sequence of chunks (see [`chunk`]) run against one `dtls::Server` in
/// virtual time, then every established session saved and restored into a new server.
pub fn dtls_server(data: &[u8]) {
    let mut run = Run::new();
    let mut rest = data;
    for _ in 0..MAX_CHUNKS {
        let Some((&control, after)) = rest.split_first() else {
            break;
        };
        let (len, after) = match after {
            [hi, lo, tail @ ..] => (usize::from(u16::from_be_bytes([*hi, *lo])), tail),
            _ => (after.len(), &[][..]),
        };
        let (chunk, tail) = after.split_at(len.min(after.len()));
        run.chunk(control, chunk);
        rest = tail;
    }
    // A saved session restores in a new server under the same handle (its write sequence
    // jumps ahead, so the bytes saved again differ by design, and restore again).
    let mut restarted = Server::new(run.config.clone(), [0x5f; 32]);
    let mut again = Server::new(run.config.clone(), [0x60; 32]);
    for (conn, bytes) in run.server.save_sessions() {
        assert_eq!(restarted.restore_session(&bytes).ok(), Some(conn));
        let resaved = restarted.save_session(conn);
        assert!(resaved.is_some(), "{conn:?} restored but cannot be saved");
        if let Some(resaved) = resaved {
            assert_eq!(again.restore_session(&resaved).ok(), Some(conn));
        }
    }
}
