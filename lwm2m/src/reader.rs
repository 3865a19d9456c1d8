//! The crate's one byte cursor over untrusted input.
//!
//! The decoders this crate writes by hand read bytes that a peer chose: LwM2M TLV (OMA
//! LwM2M TS 1.2 Core §7.4.3), CoRE Link Format (RFC 6690 §2), and the two pieces of CBOR
//! that minicbor does not cover (float16 and the RFC 3339 date of tag 0, RFC 8949 §3.4.1,
//! Appendix D). Indexing a slice with a peer-derived offset is how such code panics, so they
//! never index: they pull bytes through [`Reader`], whose every method returns `None` (or an
//! empty slice) instead of panicking when the input runs short. This is the same split
//! rustls makes with its `codec::Reader`: one small, exhaustively tested place that knows
//! about bounds, and parsers that only express grammar. CoAP messages are parsed by
//! coap-lite, the JSON formats by serde_json and the rest of CBOR by minicbor.

/// A forward-only cursor over a borrowed byte slice.
///
/// The cursor is kept as the unread tail of the input rather than as an index,
/// so no method needs to index at all: moving forward is `split_at_checked`,
/// which cannot go out of bounds.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    /// Bytes not read yet.
    unread: &'a [u8],
    /// Length of the whole input, kept so `position` can be derived from
    /// `unread` without a second counter that could drift.
    len: usize,
}

impl<'a> Reader<'a> {
    /// A cursor at the start of `buf`.
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self {
            unread: buf,
            len: buf.len(),
        }
    }

    /// How many bytes have been consumed so far; error positions use it.
    pub(crate) fn position(&self) -> usize {
        // `unread` only ever shrinks from the original slice, so this cannot
        // underflow; saturating keeps that a non-panicking fact anyway.
        self.len.saturating_sub(self.unread.len())
    }

    /// How many bytes are left to read.
    #[allow(dead_code)]
    pub(crate) fn remaining(&self) -> usize {
        self.unread.len()
    }

    /// Whether the whole input has been consumed.
    pub(crate) fn is_empty(&self) -> bool {
        self.unread.is_empty()
    }

    /// The next byte, without consuming it.
    pub(crate) fn peek(&self) -> Option<u8> {
        self.unread.first().copied()
    }

    /// Consumes and returns the next byte.
    pub(crate) fn take_u8(&mut self) -> Option<u8> {
        let (&first, tail) = self.unread.split_first()?;
        self.unread = tail;
        Some(first)
    }

    /// Consumes exactly `n` bytes, or nothing at all when fewer remain, so a
    /// caller that gets `None` can still report the position it failed at.
    #[allow(dead_code)]
    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = self.unread.split_at_checked(n)?;
        self.unread = tail;
        Some(head)
    }

    /// Consumes the longest prefix whose bytes all satisfy `pred` (possibly
    /// empty).
    pub(crate) fn take_while(&mut self, mut pred: impl FnMut(u8) -> bool) -> &'a [u8] {
        let n = self
            .unread
            .iter()
            .position(|&b| !pred(b))
            .unwrap_or(self.unread.len());
        // `n <= len` by construction; the fallback only exists so that fact
        // is not load-bearing for panic freedom.
        let (head, tail) = self
            .unread
            .split_at_checked(n)
            .unwrap_or((self.unread, &[]));
        self.unread = tail;
        head
    }

    /// Consumes and returns everything that is left.
    #[allow(dead_code)]
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.unread)
    }

    /// Reads an `n`-byte big-endian unsigned integer, as CoAP uses for option
    /// values (RFC 7252 §3.2 `uint`) where `n` may be anything from 0 to 8.
    /// `n == 0` is the value 0; `n > 8` cannot fit a `u64` and is `None`
    /// without consuming anything.
    #[allow(dead_code)]
    pub(crate) fn be_uint(&mut self, n: usize) -> Option<u64> {
        if n > 8 {
            return None;
        }
        let bytes = self.take(n)?;
        Some(bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    /// Consumes the next byte only if it equals `byte`, so grammars can test
    /// for an optional delimiter in one call.
    pub(crate) fn expect(&mut self, byte: u8) -> bool {
        if self.peek() == Some(byte) {
            self.unread = self.unread.get(1..).unwrap_or_default();
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Reader;
    use proptest::prelude::*;

    #[test]
    fn new_reader_starts_at_zero_with_everything_remaining() {
        let r = Reader::new(b"abc");
        assert_eq!(r.position(), 0);
        assert_eq!(r.remaining(), 3);
        assert!(!r.is_empty());
        assert!(Reader::new(b"").is_empty());
    }

    #[test]
    fn peek_does_not_consume_but_take_u8_does() {
        let mut r = Reader::new(b"xy");
        assert_eq!(r.peek(), Some(b'x'));
        assert_eq!(r.position(), 0);
        assert_eq!(r.take_u8(), Some(b'x'));
        assert_eq!(r.take_u8(), Some(b'y'));
        assert_eq!(r.take_u8(), None);
        assert_eq!(r.peek(), None);
        assert_eq!(r.position(), 2);
    }

    #[test]
    fn take_is_all_or_nothing() {
        let mut r = Reader::new(b"abcd");
        assert_eq!(r.take(3), Some(b"abc".as_slice()));
        assert_eq!(r.take(2), None);
        assert_eq!(r.position(), 3, "a failed take must not move the cursor");
        assert_eq!(r.take(1), Some(b"d".as_slice()));
        assert_eq!(r.take(0), Some(b"".as_slice()));
        assert_eq!(r.take(usize::MAX), None);
    }

    #[test]
    fn take_while_stops_at_first_mismatch_and_may_be_empty() {
        let mut r = Reader::new(b"123abc");
        assert_eq!(r.take_while(|b| b.is_ascii_digit()), b"123");
        assert_eq!(r.take_while(|b| b.is_ascii_digit()), b"");
        assert_eq!(r.take_while(|_| true), b"abc");
        assert!(r.is_empty());
    }

    #[test]
    fn rest_consumes_everything() {
        let mut r = Reader::new(b"hello");
        assert_eq!(r.take_u8(), Some(b'h'));
        assert_eq!(r.rest(), b"ello");
        assert!(r.is_empty());
        assert_eq!(r.position(), 5);
        assert_eq!(r.rest(), b"");
    }

    #[test]
    fn be_uint_reads_big_endian_of_any_width_up_to_eight() {
        let mut r = Reader::new(&[
            0x01, 0x02, 0x03, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ]);
        assert_eq!(r.be_uint(0), Some(0));
        assert_eq!(r.be_uint(3), Some(0x01_02_03));
        assert_eq!(r.be_uint(8), Some(u64::MAX));
        assert!(r.is_empty());
    }

    #[test]
    fn be_uint_rejects_too_wide_or_too_short_without_moving() {
        let mut r = Reader::new(&[0u8; 9]);
        assert_eq!(r.be_uint(9), None);
        assert_eq!(r.position(), 0);
        let mut short = Reader::new(&[1, 2]);
        assert_eq!(short.be_uint(4), None);
        assert_eq!(short.position(), 0);
    }

    #[test]
    fn expect_consumes_only_a_matching_byte() {
        let mut r = Reader::new(b"<a");
        assert!(!r.expect(b'a'));
        assert_eq!(r.position(), 0);
        assert!(r.expect(b'<'));
        assert!(r.expect(b'a'));
        assert!(!r.expect(b'a'));
        assert_eq!(r.position(), 2);
    }

    /// One call on the reader, so the property test can drive random
    /// sequences of them.
    #[derive(Debug, Clone)]
    enum Op {
        Peek,
        TakeU8,
        Take(usize),
        TakeWhileBelow(u8),
        Rest,
        BeUint(usize),
        Expect(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            Just(Op::Peek),
            Just(Op::TakeU8),
            (0usize..40).prop_map(Op::Take),
            any::<usize>().prop_map(Op::Take),
            any::<u8>().prop_map(Op::TakeWhileBelow),
            Just(Op::Rest),
            (0usize..12).prop_map(Op::BeUint),
            any::<u8>().prop_map(Op::Expect),
        ]
    }

    proptest! {
        #[test]
        fn random_operations_never_panic_or_overrun(
            bytes in proptest::collection::vec(any::<u8>(), 0..64),
            ops in proptest::collection::vec(op(), 0..32),
        ) {
            let mut r = Reader::new(&bytes);
            for op in ops {
                let before = r.position();
                match op {
                    Op::Peek => {
                        r.peek();
                        prop_assert_eq!(r.position(), before);
                    }
                    Op::TakeU8 => {
                        let got = r.take_u8();
                        prop_assert_eq!(r.position(), before + usize::from(got.is_some()));
                    }
                    Op::Take(n) => match r.take(n) {
                        Some(s) => {
                            prop_assert_eq!(s.len(), n);
                            prop_assert_eq!(r.position(), before + n);
                        }
                        None => prop_assert_eq!(r.position(), before),
                    },
                    Op::TakeWhileBelow(limit) => {
                        let s = r.take_while(|b| b < limit);
                        prop_assert!(s.iter().all(|&b| b < limit));
                        prop_assert_eq!(r.position(), before + s.len());
                        prop_assert!(r.peek().is_none_or(|b| b >= limit));
                    }
                    Op::Rest => {
                        r.rest();
                        prop_assert!(r.is_empty());
                    }
                    Op::BeUint(n) => {
                        let got = r.be_uint(n);
                        let moved = if got.is_some() { n } else { 0 };
                        prop_assert_eq!(r.position(), before + moved);
                    }
                    Op::Expect(b) => {
                        let matched = r.expect(b);
                        prop_assert_eq!(r.position(), before + usize::from(matched));
                    }
                }
                prop_assert!(r.position() <= bytes.len());
                prop_assert_eq!(r.position() + r.remaining(), bytes.len());
            }
        }
    }
}
