//! Handshake flights: the messages one side sends before it waits for the other, their
//! fragmentation into records that fit a datagram, and their retransmission with exponential
//! backoff until the peer's next flight shows they arrived (RFC 6347 §4.2.4, §4.2.3).
//!
//! A retransmitted flight is re-encoded: every record gets a fresh sequence number (RFC 6347
//! §4.2.4 requires it), and epoch-1 records are sealed again under the new number.
use crate::config::Timers;
use crate::crypto::DirectionKeys;
use crate::handshake::{fragment, HandshakeType};
use crate::record::{write_plaintext, ContentType, DTLS_1_2, HEADER_LEN};
use crate::session::Cid;
use std::time::{Duration, Instant};

/// One message of a flight.
#[derive(Debug, Clone)]
pub(crate) enum Item {
    Handshake {
        epoch: u16,
        msg_type: HandshakeType,
        seq: u16,
        body: Vec<u8>,
    },
    ChangeCipherSpec,
}

/// Write-side record state during a handshake: one sequence counter per epoch, and the
/// epoch-1 keys once known.
#[derive(Debug, Clone, Default)]
pub(crate) struct Writer {
    pub seq: [u64; 2],
    pub keys: Option<DirectionKeys>,
    /// The CID the peer asked for, put in epoch-1 records.
    pub cid: Option<Cid>,
    /// Record version of epoch-0 records (a server answers in the version it speaks).
    pub version: u16,
}

impl Writer {
    pub fn new(first_seq: u64) -> Self {
        Self {
            seq: [first_seq, 0],
            keys: None,
            cid: None,
            version: DTLS_1_2,
        }
    }

    fn expansion(&self, epoch: u16) -> usize {
        match (epoch, &self.keys) {
            (0, _) | (_, None) => 0,
            (_, Some(k)) => {
                k.cipher.max_expansion() + 1 + self.cid.map_or(0, |c| c.as_bytes().len())
            }
        }
    }

    /// Appends one record of `content_type` in `epoch` to `out`.
    fn record(
        &mut self,
        content_type: ContentType,
        epoch: u16,
        payload: &[u8],
        rng: &mut impl rand::Rng,
        out: &mut Vec<u8>,
    ) {
        let slot = usize::from(epoch.min(1));
        let Some(seq) = self.seq.get_mut(slot) else {
            return;
        };
        let n = *seq;
        *seq += 1;
        match (epoch, &self.keys) {
            (0, _) | (_, None) => write_plaintext(content_type, self.version, 0, n, payload, out),
            (_, Some(k)) => {
                let cid = self
                    .cid
                    .as_ref()
                    .map(Cid::as_bytes)
                    .filter(|c| !c.is_empty());
                k.seal(content_type, DTLS_1_2, epoch, n, cid, payload, rng, out);
            }
        }
    }

    /// Encodes a whole flight into datagrams of at most `max_datagram` bytes.
    pub fn encode(
        &mut self,
        items: &[Item],
        max_datagram: usize,
        rng: &mut impl rand::Rng,
        out: &mut Vec<Vec<u8>>,
    ) {
        let mut datagram: Vec<u8> = Vec::new();
        let push = |record: Vec<u8>, datagram: &mut Vec<u8>, out: &mut Vec<Vec<u8>>| {
            if !datagram.is_empty() && datagram.len() + record.len() > max_datagram {
                out.push(std::mem::take(datagram));
            }
            datagram.extend_from_slice(&record);
        };
        for item in items {
            match item {
                Item::ChangeCipherSpec => {
                    let mut rec = Vec::with_capacity(HEADER_LEN + 1);
                    self.record(ContentType::ChangeCipherSpec, 0, &[1], rng, &mut rec);
                    push(rec, &mut datagram, out);
                }
                Item::Handshake {
                    epoch,
                    msg_type,
                    seq,
                    body,
                } => {
                    let room = max_datagram
                        .saturating_sub(HEADER_LEN + self.expansion(*epoch))
                        .max(64);
                    for frag in fragment(*msg_type, *seq, body, room) {
                        let mut rec = Vec::with_capacity(frag.len() + HEADER_LEN + 32);
                        self.record(ContentType::Handshake, *epoch, &frag, rng, &mut rec);
                        push(rec, &mut datagram, out);
                    }
                }
            }
        }
        if !datagram.is_empty() {
            out.push(datagram);
        }
    }
}

/// The last flight sent and when to send it again.
#[derive(Debug, Clone)]
pub(crate) struct Flight {
    pub items: Vec<Item>,
    /// Next retransmission; `None` when this flight is final and waits for nothing.
    pub retransmit_at: Option<Instant>,
    timeout: Duration,
}

impl Flight {
    pub fn new(items: Vec<Item>, now: Instant, timers: &Timers, expects_reply: bool) -> Self {
        Self {
            items,
            retransmit_at: expects_reply.then(|| now + timers.initial),
            timeout: timers.initial,
        }
    }

    /// Backs off after a retransmission (RFC 6347 §4.2.4.1: double, up to the maximum).
    pub fn backoff(&mut self, now: Instant, timers: &Timers) {
        self.timeout = (self.timeout * 2).min(timers.max);
        if self.retransmit_at.is_some() {
            self.retransmit_at = Some(now + self.timeout);
        }
    }
}
