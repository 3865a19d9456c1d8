//! Admitting new handshakes (RFC 6347 §4.2.1): the stateless cookie exchange, then a slot in
//! the handshake table within `max_handshakes` and the per-source rate, and the session id
//! and Connection ID a new handshake gets; resumption (RFC 5246 §7.3) finds its session by
//! the handle in the session id.
use super::handshake::{Ctx, ServerHandshake};
use super::{Resumable, Server, ServerEvent, RATE_SOURCES, SESSION_ID_LEN};
use crate::codec::Reader;
use crate::config::ServerCredentials;
use crate::error::{Failure, HandshakeError};
use crate::handshake::messages::{ClientHello, HelloVerifyRequest};
use crate::handshake::{full_message, parse_fragments, HandshakeType};
use crate::record::Cid;
use crate::record::{write_plaintext, ContentType, Record, DTLS_1_0};
use rand::{Rng, RngCore};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

impl Server {
    pub(super) fn client_hello(
        &mut self,
        now: Instant,
        from: SocketAddr,
        record: &Record<'_>,
        creds: &dyn ServerCredentials,
    ) {
        // Stateless processing needs the whole hello in one record (RFC 6347 §4.2.1 lets
        // a server insist; every client sends it whole).
        let Some(Ok((header, body))) = parse_fragments(record.fragment).next() else {
            self.stats.records_dropped += 1;
            return;
        };
        if header.fragment_offset != 0 || header.fragment_length != header.length {
            self.stats.records_dropped += 1;
            return;
        }
        let Ok(hello) = ClientHello::parse(body) else {
            self.stats.records_dropped += 1;
            return;
        };
        let Some(cookie_input) = hello_without_cookie(body) else {
            self.stats.records_dropped += 1;
            return;
        };
        if let Some(hs) = self.handshakes.get(&from) {
            if hs.client_random() == hello.random {
                // The same hello again: our flight was lost.
                self.handshake_record(now, from, record, creds);
                return;
            }
        }
        let rng = &mut self.rng;
        self.cookies.maybe_rotate(now, || rng.random());
        if !self.cookies.verify(from, &cookie_input, &hello.cookie) {
            let cookie = self.cookies.make(from, &cookie_input);
            // A 16-byte cookie in a 19-byte body: nothing here can exceed its field, and the
            // record number is the hello's, which parsed as 48 bits.
            let hvr = HelloVerifyRequest {
                server_version: DTLS_1_0,
                cookie: cookie.to_vec(),
            }
            .encode()
            .and_then(|body| {
                full_message(HandshakeType::HelloVerifyRequest, header.message_seq, &body)
            })
            .and_then(|frag| {
                let mut out = Vec::with_capacity(frag.len() + 13);
                write_plaintext(
                    ContentType::Handshake,
                    DTLS_1_0,
                    0,
                    record.seq,
                    &frag,
                    &mut out,
                )
                .map(|()| out)
            });
            match hvr {
                Ok(out) => {
                    self.transmits.push_back((from, out));
                    self.stats.cookies_sent += 1;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "HelloVerifyRequest cannot be encoded");
                    self.stats.records_dropped += 1;
                }
            }
            return;
        }
        if !self.admit(now, from) {
            self.stats.handshakes_refused += 1;
            tracing::debug!(peer = %from, "handshake refused: table full or source over its rate");
            return;
        }
        self.remove_handshake(from);
        let resume = self.resumable(&hello.session_id);
        let session_id = match &resume {
            Some(_) => {
                let mut id = [0u8; SESSION_ID_LEN];
                id.copy_from_slice(
                    hello
                        .session_id
                        .get(..SESSION_ID_LEN)
                        .unwrap_or(&[0; SESSION_ID_LEN]),
                );
                id
            }
            None => {
                let id = self.next_id;
                let Some(next) = id.checked_add(1) else {
                    // Unreachable (see MAX_CONN_ID); refusing beats wrapping to a handle that
                    // may belong to a live session.
                    self.stats.handshakes_refused += 1;
                    return;
                };
                self.next_id = next;
                let mut sid = [0u8; SESSION_ID_LEN];
                sid[..8].copy_from_slice(&id.to_be_bytes());
                self.rng.fill_bytes(&mut sid[8..]);
                sid
            }
        };
        let own_cid = (self.config.cid_len > 0)
            .then(|| self.fresh_cid())
            .flatten();
        // The hello came whole in one record, so it is far below the 2^24 a header can carry.
        let Ok(msg) = full_message(HandshakeType::ClientHello, header.message_seq, body) else {
            self.stats.records_dropped += 1;
            return;
        };
        let mut ctx = Ctx {
            config: &self.config,
            creds,
            rng: &mut self.rng,
            now,
        };
        self.stats.handshakes_started += 1;
        match ServerHandshake::start(
            &mut ctx,
            &hello,
            &msg,
            header.message_seq,
            record.seq,
            resume,
            session_id,
            own_cid,
        ) {
            Ok((hs, out)) => {
                for d in out {
                    self.transmits.push_back((from, d));
                }
                self.by_start.insert((hs.started(), from));
                self.handshakes.insert(from, hs);
                self.prune_by_start();
                self.schedule(from);
            }
            Err(failure) => {
                if let Some(alert) = failure.error.alert_to_send() {
                    self.send_plain_alert(from, alert, record.seq);
                }
                self.fail(from, failure);
            }
        }
    }

    /// Whether a new handshake from `from` may take a slot now.
    ///
    /// A full table does not refuse: it gives up the handshake that started longest ago.
    /// Every hello here returned a valid cookie, so a flood from addresses it can receive at
    /// can still start handshakes and then go silent; refusing new ones would lock every
    /// real device out until the stalled ones time out (`handshake_timeout`, minutes for
    /// NB-IoT). Evicting the oldest keeps the table turning over, so a device's handshake
    /// only has to outlast `max_handshakes` newer ones (RFC 6347 §4.2.1 leaves this
    /// resource management to the server).
    pub(super) fn admit(&mut self, now: Instant, from: SocketAddr) -> bool {
        if !self.rate_allows(now, from) {
            return false;
        }
        if self.handshakes.len() >= self.config.max_handshakes
            && !self.handshakes.contains_key(&from)
            && !self.evict_oldest_handshake(from)
        {
            return false;
        }
        true
    }

    /// Drops the entries of handshakes that ended (established, failed, timed out): they
    /// are left in `by_start` when a handshake leaves the table, and rebuilt away once they
    /// outnumber the live ones, so the index stays within twice the table (amortised O(log n)
    /// per handshake started).
    fn prune_by_start(&mut self) {
        if self.by_start.len() > 2 * self.handshakes.len() + 64 {
            self.by_start = self
                .handshakes
                .iter()
                .map(|(peer, hs)| (hs.started(), *peer))
                .collect();
        }
    }

    /// Gives up the handshake that started longest ago (not `keep`'s), to make room.
    pub(super) fn evict_oldest_handshake(&mut self, keep: SocketAddr) -> bool {
        self.prune_by_start();
        while let Some((started, peer)) = self.by_start.pop_first() {
            let live = peer != keep
                && self
                    .handshakes
                    .get(&peer)
                    .is_some_and(|hs| hs.started() == started);
            if live {
                self.remove_handshake(peer);
                self.stats.handshakes_evicted += 1;
                self.stats.handshakes_failed += 1;
                // Not `fail`'s info line: under a flood this happens thousands of times a
                // second, and the counter says it.
                tracing::debug!(%peer, "DTLS handshake evicted: the handshake table is full");
                self.events.push_back(ServerEvent::HandshakeFailed {
                    peer,
                    failure: Failure::anonymous(HandshakeError::Evicted),
                });
                return true;
            }
        }
        false
    }

    /// Whether `from`'s address is within `handshakes_per_source_per_sec`.
    pub(super) fn rate_allows(&mut self, now: Instant, from: SocketAddr) -> bool {
        match self.rate_window {
            Some(start) if now.saturating_duration_since(start) < Duration::from_secs(1) => {}
            _ => {
                self.rate.clear();
                self.rate_window = Some(now);
            }
        }
        let ip = from.ip();
        if !self.rate.contains_key(&ip) && self.rate.len() >= RATE_SOURCES {
            // More distinct sources this second than tracked: every one of them answered a
            // cookie, so they are real; `max_handshakes` still bounds the work.
            return true;
        }
        let n = self.rate.entry(ip).or_insert(0);
        if *n >= self.config.handshakes_per_source_per_sec {
            return false;
        }
        *n += 1;
        true
    }

    pub(super) fn fresh_cid(&mut self) -> Option<Cid> {
        let len = self.cid_len();
        for _ in 0..8 {
            let mut b = [0u8; crate::config::MAX_CID_LEN];
            self.rng.fill_bytes(&mut b);
            if let Some(node) = self.config.cid_node {
                b[0] = node;
            }
            let cid = Cid::new(b.get(..len)?)?;
            if !self.by_cid.contains_key(&cid) {
                return Some(cid);
            }
        }
        None
    }

    /// The resumption state for a session id the client offers, if it is one of ours.
    pub(super) fn resumable(&self, session_id: &[u8]) -> Option<Resumable> {
        if session_id.len() != SESSION_ID_LEN {
            return None;
        }
        let id = u64::from_be_bytes(session_id.get(..8)?.try_into().ok()?);
        let entry = self.sessions.get(&id)?;
        let check = session_id.get(8..)?;
        if !bool::from(subtle::ConstantTimeEq::ct_eq(&entry.check[..], check)) {
            return None;
        }
        Some(Resumable {
            master: entry.master,
            suite: entry.session.suite,
            extended_master_secret: entry.ems,
            principal: entry.session.principal.clone(),
        })
    }
}

pub(super) fn is_client_hello(fragment: &[u8]) -> bool {
    fragment.first() == Some(&(HandshakeType::ClientHello as u8))
}

/// The ClientHello body with the cookie field emptied: what the cookie is computed over.
fn hello_without_cookie(body: &[u8]) -> Option<Vec<u8>> {
    let mut r = Reader::new(body);
    r.take(2 + 32).ok()?;
    r.vec8().ok()?;
    let before = body.len() - r.remaining();
    r.vec8().ok()?;
    let after = body.len() - r.remaining();
    let mut out = Vec::with_capacity(body.len());
    out.extend_from_slice(body.get(..before)?);
    out.push(0);
    out.extend_from_slice(body.get(after..)?);
    Some(out)
}
