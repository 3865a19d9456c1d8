//! Anti-replay sliding window for received records (RFC 6347 §4.1.2.6, the algorithm of
//! RFC 4303 §3.4.3), 64 records wide.
//!
//! DTLS runs over a datagram transport that may reorder and duplicate, so a receiver
//! accepts a record whose sequence number is new and not too far behind the newest one
//! seen. The window is per epoch: callers start a fresh one when the epoch changes.
//!
//! Only authenticated records may move the window ([`ReplayWindow::mark`]); checking
//! ([`ReplayWindow::is_fresh`]) happens before decryption so replays cost no crypto.

/// Width of the window in records.
pub const WINDOW: u64 = 64;

/// The newest sequence number seen and which of the 63 before it were seen too.
///
/// Bit `i` of `bitmap` stands for sequence number `top - i`. The fields are public because
/// established sessions are serialized; `Default` is the state before any record arrived.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayWindow {
    pub top: u64,
    pub bitmap: u64,
}

impl ReplayWindow {
    /// Whether a record with sequence number `seq` may be accepted: newer than `top`, or
    /// within the 64 numbers ending at `top` and not yet marked.
    pub fn is_fresh(&self, seq: u64) -> bool {
        if seq > self.top {
            return true;
        }
        let behind = self.top - seq;
        // Older than the window: its bit has been shifted out, so it cannot be told apart
        // from a replay and RFC 6347 §4.1.2.6 says to discard it.
        behind < WINDOW && self.bitmap & (1 << behind) == 0
    }

    /// Records `seq` as received. Call only after the record authenticated, or forged
    /// records could slide the window and make genuine ones look stale.
    pub fn mark(&mut self, seq: u64) {
        if seq > self.top {
            let shift = seq - self.top;
            // `<<` by 64 or more would overflow; a jump that far clears the window.
            self.bitmap = if shift >= WINDOW {
                0
            } else {
                self.bitmap << shift
            };
            self.bitmap |= 1;
            self.top = seq;
        } else {
            let behind = self.top - seq;
            if behind < WINDOW {
                self.bitmap |= 1 << behind;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    #[test]
    fn first_record_zero() {
        let mut w = ReplayWindow::default();
        assert!(w.is_fresh(0));
        w.mark(0);
        assert!(!w.is_fresh(0));
        assert!(w.is_fresh(1));
        assert_eq!(w, ReplayWindow { top: 0, bitmap: 1 });
    }

    #[test]
    fn first_record_nonzero_leaves_earlier_ones_fresh() {
        let mut w = ReplayWindow::default();
        w.mark(10);
        assert!(!w.is_fresh(10));
        for s in 0..10 {
            assert!(w.is_fresh(s), "{s}");
        }
        w.mark(3);
        assert!(!w.is_fresh(3));
    }

    #[test]
    fn in_order_and_duplicates() {
        let mut w = ReplayWindow::default();
        for s in 0..200 {
            assert!(w.is_fresh(s));
            w.mark(s);
            assert!(!w.is_fresh(s));
        }
        assert!(!w.is_fresh(150));
        assert!(w.is_fresh(200));
    }

    #[test]
    fn exactly_63_behind_is_in_window_64_is_not() {
        let mut w = ReplayWindow::default();
        w.mark(100);
        assert!(w.is_fresh(100 - 63));
        assert!(!w.is_fresh(100 - 64));
        w.mark(100 - 63);
        assert!(!w.is_fresh(100 - 63));
        assert_eq!(w.bitmap, 1 | (1 << 63));
        // Marking something outside the window changes nothing.
        w.mark(100 - 64);
        assert_eq!(w.bitmap, 1 | (1 << 63));
    }

    #[test]
    fn reordering_within_window() {
        let mut w = ReplayWindow::default();
        for s in [5, 3, 9, 4, 8] {
            assert!(w.is_fresh(s));
            w.mark(s);
        }
        for s in [3, 4, 5, 8, 9] {
            assert!(!w.is_fresh(s));
        }
        for s in [0, 1, 2, 6, 7, 10] {
            assert!(w.is_fresh(s));
        }
    }

    #[test]
    fn jumps() {
        let mut w = ReplayWindow::default();
        w.mark(1);
        w.mark(64); // 63 ahead: 1 is now exactly 63 behind and still remembered
        assert!(!w.is_fresh(1));
        w.mark(65); // 1 slides out
        assert!(!w.is_fresh(1));
        assert!(w.is_fresh(2));
        w.mark(65 + 64); // exactly 64 ahead clears everything
        assert_eq!(w.bitmap, 1);
        assert!(!w.is_fresh(65));
        w.mark(1000); // far ahead
        assert_eq!(
            w,
            ReplayWindow {
                top: 1000,
                bitmap: 1
            }
        );
        assert!(w.is_fresh(999));
        assert!(!w.is_fresh(936));
        assert!(w.is_fresh(937));
        let max = (1u64 << 48) - 1;
        w.mark(max);
        assert!(!w.is_fresh(max));
        assert!(w.is_fresh(max - 1));
    }

    proptest! {
        #[test]
        fn matches_naive_model(ops in proptest::collection::vec((0u64..300, any::<bool>()), 0..200)) {
            let mut w = ReplayWindow::default();
            let mut seen = HashSet::new();
            let mut max: Option<u64> = None;
            for (seq, do_mark) in ops {
                // The model: never seen, and not more than 63 behind the newest seen.
                let fresh = !seen.contains(&seq) && max.is_none_or(|m| seq + 63 >= m);
                prop_assert_eq!(w.is_fresh(seq), fresh, "seq {} max {:?}", seq, max);
                if do_mark && fresh {
                    w.mark(seq);
                    seen.insert(seq);
                    max = Some(max.map_or(seq, |m| m.max(seq)));
                }
            }
        }
    }
}
