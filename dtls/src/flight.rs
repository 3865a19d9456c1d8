//! Handshake flights: the messages one side sends before it waits for the other, their
//! fragmentation into records that fit a datagram, and their retransmission with exponential
//! backoff until the peer's next flight shows they arrived (RFC 6347 §4.2.4, §4.2.3).
//!
//! A retransmitted flight is re-encoded: every record gets a fresh sequence number (RFC 6347
//! §4.2.4 requires it), and epoch-1 records are sealed again under the new number.
//!
//! Encoding a flight can fail: the epoch-0 sequence number continues from the peer's
//! ClientHello record (RFC 6347 §4.2.1), so a peer can start it just below 2^48 and leave no
//! numbers for our records, and a configured certificate chain can exceed what a handshake
//! message can carry. Both are an [`EncodeError`] that ends the handshake, never a sequence
//! number or length cut to its low bits. Timer arithmetic goes through
//! [`crate::time::deadline`], so no configured duration can overflow the clock.
use crate::codec::EncodeError;
use crate::config::Timers;
use crate::crypto::DirectionKeys;
use crate::handshake::{fragment, HandshakeType};
use crate::record::Cid;
use crate::record::{
    write_plaintext, ContentType, DTLS_1_2, HEADER_LEN, MAX_PLAINTEXT_LEN, MAX_SEQ,
};
use crate::time::deadline;
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

    /// Appends one record of `content_type` in `epoch` to `out`. A sequence number past
    /// 2^48 - 1 is refused (and not consumed), since it cannot be written.
    fn record(
        &mut self,
        content_type: ContentType,
        epoch: u16,
        payload: &[u8],
        rng: &mut impl rand::Rng,
        out: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        let slot = usize::from(epoch.min(1));
        let Some(seq) = self.seq.get_mut(slot) else {
            return Ok(());
        };
        let n = *seq;
        if n > MAX_SEQ {
            return Err(EncodeError {
                field: "record sequence_number",
                value: n,
                max: MAX_SEQ,
            });
        }
        // At most MAX_SEQ + 1 afterwards: far from overflowing a u64.
        *seq += 1;
        match (epoch, &self.keys) {
            (0, _) | (_, None) => write_plaintext(content_type, self.version, 0, n, payload, out),
            (_, Some(k)) => {
                let cid = self
                    .cid
                    .as_ref()
                    .map(Cid::as_bytes)
                    .filter(|c| !c.is_empty());
                k.seal(content_type, DTLS_1_2, epoch, n, cid, payload, rng, out)
            }
        }
    }

    /// Encodes a whole flight into datagrams of at most `max_datagram` bytes (and records
    /// of at most 2^14 bytes of handshake data, whatever `max_datagram` says). On error
    /// nothing is added to `out`: half a flight would only make the peer wait for the rest.
    pub fn encode(
        &mut self,
        items: &[Item],
        max_datagram: usize,
        rng: &mut impl rand::Rng,
        out: &mut Vec<Vec<u8>>,
    ) -> Result<(), EncodeError> {
        let mut datagrams = Vec::new();
        self.encode_into(items, max_datagram, rng, &mut datagrams)?;
        out.append(&mut datagrams);
        Ok(())
    }

    fn encode_into(
        &mut self,
        items: &[Item],
        max_datagram: usize,
        rng: &mut impl rand::Rng,
        out: &mut Vec<Vec<u8>>,
    ) -> Result<(), EncodeError> {
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
                    self.record(ContentType::ChangeCipherSpec, 0, &[1], rng, &mut rec)?;
                    push(rec, &mut datagram, out);
                }
                Item::Handshake {
                    epoch,
                    msg_type,
                    seq,
                    body,
                } => {
                    // A record carries at most 2^14 bytes (RFC 5246 §6.2.1) however large
                    // the configured datagram.
                    let room = max_datagram
                        .saturating_sub(HEADER_LEN + self.expansion(*epoch))
                        .clamp(64, MAX_PLAINTEXT_LEN);
                    for frag in fragment(*msg_type, *seq, body, room)? {
                        let mut rec = Vec::with_capacity(frag.len() + HEADER_LEN + 32);
                        self.record(ContentType::Handshake, *epoch, &frag, rng, &mut rec)?;
                        push(rec, &mut datagram, out);
                    }
                }
            }
        }
        if !datagram.is_empty() {
            out.push(datagram);
        }
        Ok(())
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
            retransmit_at: expects_reply.then(|| deadline(now, timers.initial)),
            timeout: timers.initial,
        }
    }

    /// Backs off after a retransmission (RFC 6347 §4.2.4.1: double, up to the maximum).
    /// Doubling saturates: a configured timer near `Duration::MAX` stays there instead of
    /// overflowing.
    pub fn backoff(&mut self, now: Instant, timers: &Timers) {
        self.timeout = self.timeout.saturating_mul(2).min(timers.max);
        if self.retransmit_at.is_some() {
            self.retransmit_at = Some(deadline(now, self.timeout));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::{parse_fragments, Reassembler};
    use crate::record::split_records;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn handshake_records(datagrams: &[Vec<u8>]) -> Vec<(u64, Vec<u8>)> {
        datagrams
            .iter()
            .flat_map(|d| split_records(d, 0))
            .map(|r| {
                let r = r.unwrap();
                (r.seq, r.fragment.to_vec())
            })
            .collect()
    }

    #[test]
    fn a_datagram_limit_above_the_record_limit_still_fits_records() {
        // A configured datagram size larger than a record may carry (2^14) once made the
        // writer build records it then refused to write (a debug-build panic).
        let body: Vec<u8> = (0..20_000u32).map(|i| i as u8).collect();
        let items = [Item::Handshake {
            epoch: 0,
            msg_type: HandshakeType::Certificate,
            seq: 0,
            body: body.clone(),
        }];
        let mut out = Vec::new();
        let mut rng = StdRng::seed_from_u64(1);
        Writer::new(0)
            .encode(&items, 100_000, &mut rng, &mut out)
            .unwrap();
        let records = handshake_records(&out);
        assert!(records.len() >= 2);
        let mut r = Reassembler::new(0, 32_000, 64_000);
        for (_, fragment) in &records {
            assert!(fragment.len() <= MAX_PLAINTEXT_LEN);
            for f in parse_fragments(fragment) {
                let (h, data) = f.unwrap();
                r.insert(&h, data).unwrap();
            }
        }
        assert_eq!(r.pop().map(|m| m.2), Some(body));
    }

    #[test]
    fn a_flight_that_would_run_past_the_last_sequence_number_is_refused_whole() {
        let items = [
            Item::Handshake {
                epoch: 0,
                msg_type: HandshakeType::ServerHello,
                seq: 0,
                body: vec![1; 40],
            },
            Item::ChangeCipherSpec,
        ];
        let mut rng = StdRng::seed_from_u64(2);
        let mut out = Vec::new();
        // Two records fit exactly below 2^48.
        let mut w = Writer::new(MAX_SEQ - 1);
        w.encode(&items, 1280, &mut rng, &mut out).unwrap();
        let seqs: Vec<u64> = handshake_records(&out).iter().map(|r| r.0).collect();
        assert_eq!(seqs, [MAX_SEQ - 1, MAX_SEQ]);
        // One more and nothing is sent: no record numbered 0 after 2^48 - 1.
        let mut out = Vec::new();
        let mut w = Writer::new(MAX_SEQ);
        let err = w.encode(&items, 1280, &mut rng, &mut out).unwrap_err();
        assert_eq!(err.field, "record sequence_number");
        assert!(out.is_empty());
    }

    #[test]
    fn backoff_saturates_instead_of_overflowing() {
        let timers = Timers {
            initial: Duration::MAX,
            max: Duration::MAX,
            handshake_timeout: Duration::MAX,
        };
        let now = Instant::now();
        let mut flight = Flight::new(Vec::new(), now, &timers, true);
        for _ in 0..3 {
            flight.backoff(now, &timers);
        }
        assert!(flight.retransmit_at.is_some_and(|t| t > now));
    }
}
