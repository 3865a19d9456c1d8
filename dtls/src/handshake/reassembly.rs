//! Reassembly of the peer's handshake messages (RFC 6347 §4.2.2, §4.2.3): datagrams are lost,
//! duplicated and reordered, and a message may arrive in fragments that overlap, so fragments
//! are collected per `message_seq` and complete messages are released strictly in sequence.
//!
//! Memory is bounded by the caller's limits: a message longer than `max_message_len` is an
//! error, the sum of buffers for incomplete messages may not exceed `max_buffered_bytes`,
//! and only [`WINDOW`] messages ahead of the next expected one are buffered at all (a flight
//! has at most five messages, so anything further ahead is not from the current flight).

use super::HandshakeHeader;

/// How many message sequence numbers, counting from the next expected one, are buffered.
pub const WINDOW: u16 = 8;

/// What became of an inserted fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// Stored (or already had): call [`Reassembler::pop`] to see if a message is complete.
    Buffered,
    /// A fragment of a message already delivered: the peer is retransmitting its previous
    /// flight, presumably because ours was lost, so the caller may retransmit its last flight
    /// (RFC 6347 §4.2.4).
    Old,
    /// Too far ahead of the next expected message to be buffered; dropped.
    Ignored,
}

/// A fragment that cannot be accepted; the handshake should fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReassemblyError {
    /// The message's `length` field is above the reassembler's `max_message_len`, or
    /// buffering it would exceed `max_buffered_bytes`.
    #[error("handshake message length above the limit, or buffer full")]
    TooLarge,
    /// A fragment disagrees with earlier ones of the same message on its type or length, or
    /// its data does not match its header.
    #[error("inconsistent handshake fragments")]
    Inconsistent,
}

/// One incomplete (or complete, not yet popped) message.
#[derive(Debug, Clone)]
struct Pending {
    seq: u16,
    msg_type: u8,
    /// The whole body, allocated at its announced length when the first fragment arrives.
    body: Vec<u8>,
    /// One bit per body byte that has been received. A bitmap rather than a range list so
    /// that its size is fixed by the message length, however the peer slices it.
    received: Vec<u64>,
    /// Body bytes not yet received; the message is complete at zero.
    missing: usize,
}

impl Pending {
    /// Bytes charged against `max_buffered_bytes`: the body and the bitmap.
    fn cost(length: usize) -> usize {
        length + length.div_ceil(64) * 8
    }

    /// Marks `offset..offset + data.len()` received and copies `data` there. The caller has
    /// checked that the range lies within the body.
    fn fill(&mut self, offset: usize, data: &[u8]) {
        if let Some(dst) = self.body.get_mut(offset..offset + data.len()) {
            dst.copy_from_slice(data);
        }
        for i in offset..offset + data.len() {
            if let Some(word) = self.received.get_mut(i / 64) {
                let bit = 1u64 << (i % 64);
                if *word & bit == 0 {
                    *word |= bit;
                    self.missing -= 1;
                }
            }
        }
    }
}

/// Collects fragments of the peer's handshake messages and yields them whole and in order.
#[derive(Debug, Clone)]
pub struct Reassembler {
    next_seq: u16,
    max_message_len: usize,
    max_buffered_bytes: usize,
    buffered: usize,
    /// At most [`WINDOW`] entries, so a linear search is the fastest lookup.
    pending: Vec<Pending>,
}

impl Reassembler {
    /// A reassembler expecting `next_seq` first (0 for a fresh handshake; a server that
    /// verified a cookie continues from the ClientHello's sequence number).
    pub fn new(next_seq: u16, max_message_len: usize, max_buffered_bytes: usize) -> Self {
        Self {
            next_seq,
            max_message_len,
            max_buffered_bytes,
            buffered: 0,
            pending: Vec::new(),
        }
    }

    /// The sequence number of the next message [`Reassembler::pop`] will return.
    pub fn next_seq(&self) -> u16 {
        self.next_seq
    }

    /// Bytes currently held for incomplete or unpopped messages.
    pub fn buffered_bytes(&self) -> usize {
        self.buffered
    }

    /// Adds one fragment. `data` must be the fragment's bytes, `fragment_length` long.
    pub fn insert(
        &mut self,
        header: &HandshakeHeader,
        data: &[u8],
    ) -> Result<Inserted, ReassemblyError> {
        if header.message_seq < self.next_seq {
            return Ok(Inserted::Old);
        }
        if header.message_seq - self.next_seq >= WINDOW {
            return Ok(Inserted::Ignored);
        }
        // The 24-bit fields fit usize on every target with 32-bit or wider pointers; where
        // they would not, the message could not fit memory either.
        let length = usize::try_from(header.length).map_err(|_| ReassemblyError::TooLarge)?;
        if length > self.max_message_len {
            return Err(ReassemblyError::TooLarge);
        }
        let offset =
            usize::try_from(header.fragment_offset).map_err(|_| ReassemblyError::Inconsistent)?;
        let fragment_length =
            usize::try_from(header.fragment_length).map_err(|_| ReassemblyError::Inconsistent)?;
        // The header may not come from `parse_fragments`, so its ranges are checked again.
        if data.len() != fragment_length
            || offset
                .checked_add(data.len())
                .is_none_or(|end| end > length)
        {
            return Err(ReassemblyError::Inconsistent);
        }
        let index = match self
            .pending
            .iter()
            .position(|p| p.seq == header.message_seq)
        {
            Some(i) => {
                let p = self.pending.get(i).ok_or(ReassemblyError::Inconsistent)?;
                if p.msg_type != header.msg_type || p.body.len() != length {
                    return Err(ReassemblyError::Inconsistent);
                }
                i
            }
            None => {
                let cost = Pending::cost(length);
                if self.buffered.saturating_add(cost) > self.max_buffered_bytes {
                    return Err(ReassemblyError::TooLarge);
                }
                self.buffered += cost;
                self.pending.push(Pending {
                    seq: header.message_seq,
                    msg_type: header.msg_type,
                    body: vec![0; length],
                    received: vec![0; length.div_ceil(64)],
                    missing: length,
                });
                self.pending.len() - 1
            }
        };
        if let Some(p) = self.pending.get_mut(index) {
            p.fill(offset, data);
        }
        Ok(Inserted::Buffered)
    }

    /// The next message in sequence, if it is complete: `(msg_type, message_seq, body)`.
    pub fn pop(&mut self) -> Option<(u8, u16, Vec<u8>)> {
        let i = self
            .pending
            .iter()
            .position(|p| p.seq == self.next_seq && p.missing == 0)?;
        let p = self.pending.swap_remove(i);
        self.buffered -= Pending::cost(p.body.len());
        self.next_seq = self.next_seq.wrapping_add(1);
        Some((p.msg_type, p.seq, p.body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::{fragment, parse_fragments, HandshakeType};

    fn header(seq: u16, length: u32, offset: u32, frag: u32) -> HandshakeHeader {
        HandshakeHeader {
            msg_type: HandshakeType::Certificate as u8,
            length,
            message_seq: seq,
            fragment_offset: offset,
            fragment_length: frag,
        }
    }

    #[test]
    fn overlapping_fragments_complete_once_covered() {
        let body: Vec<u8> = (0..100u8).collect();
        let mut r = Reassembler::new(0, 1000, 4000);
        let ins = |r: &mut Reassembler, off: u32, len: u32| {
            let data = &body[off as usize..(off + len) as usize];
            r.insert(&header(0, 100, off, len), data)
        };
        assert_eq!(ins(&mut r, 10, 50), Ok(Inserted::Buffered));
        assert_eq!(ins(&mut r, 40, 60), Ok(Inserted::Buffered));
        assert_eq!(r.pop(), None);
        assert_eq!(ins(&mut r, 0, 11), Ok(Inserted::Buffered));
        assert_eq!(r.pop(), Some((11, 0, body.clone())));
        assert_eq!(r.next_seq(), 1);
        assert_eq!(r.buffered_bytes(), 0);
        assert_eq!(ins(&mut r, 0, 5), Ok(Inserted::Old));
    }

    #[test]
    fn messages_come_out_in_order() {
        let mut r = Reassembler::new(2, 100, 1000);
        r.insert(&header(3, 1, 0, 1), &[3]).unwrap();
        assert_eq!(r.pop(), None);
        r.insert(&header(2, 1, 0, 1), &[2]).unwrap();
        assert_eq!(r.pop(), Some((11, 2, vec![2])));
        assert_eq!(r.pop(), Some((11, 3, vec![3])));
        assert_eq!(r.pop(), None);
        assert_eq!(r.next_seq(), 4);
    }

    #[test]
    fn empty_message_is_complete_at_once() {
        let mut r = Reassembler::new(0, 100, 100);
        let frags = fragment(HandshakeType::ServerHelloDone, 0, &[], 100).unwrap();
        let (h, d) = parse_fragments(&frags[0]).next().unwrap().unwrap();
        assert_eq!(r.insert(&h, d), Ok(Inserted::Buffered));
        assert_eq!(r.pop(), Some((14, 0, vec![])));
    }

    #[test]
    fn limits_and_inconsistencies() {
        let mut r = Reassembler::new(0, 100, 150);
        assert_eq!(
            r.insert(&header(0, 101, 0, 1), &[0]),
            Err(ReassemblyError::TooLarge)
        );
        r.insert(&header(0, 100, 0, 1), &[0]).unwrap();
        // A second 100-byte message would exceed the 150-byte budget.
        assert_eq!(
            r.insert(&header(1, 100, 0, 1), &[0]),
            Err(ReassemblyError::TooLarge)
        );
        assert_eq!(
            r.insert(&header(0, 99, 0, 1), &[0]),
            Err(ReassemblyError::Inconsistent)
        );
        let mut other_type = header(0, 100, 0, 1);
        other_type.msg_type = 12;
        assert_eq!(
            r.insert(&other_type, &[0]),
            Err(ReassemblyError::Inconsistent)
        );
        // Data that does not match the header, or a range past the end.
        assert_eq!(
            r.insert(&header(0, 100, 0, 2), &[0]),
            Err(ReassemblyError::Inconsistent)
        );
        assert_eq!(
            r.insert(&header(0, 100, 99, 2), &[0, 0]),
            Err(ReassemblyError::Inconsistent)
        );
        assert_eq!(
            r.insert(&header(WINDOW, 1, 0, 1), &[0]),
            Ok(Inserted::Ignored)
        );
        assert!(r.buffered_bytes() <= 150);
    }
}
