//! All deadlines of an [`Endpoint`](super::Endpoint) in two shapes.
//!
//! - [`TimerSet`]: one-shot timers (retransmissions, request timeouts) ordered by deadline,
//!   and cancellable: a confirmable exchange that is acknowledged cancels its retransmission
//!   timer at once. (A lazily-deleted binary heap was tried first: at 60k requests/s it held
//!   some 150k dead retransmission timers and `BinaryHeap::pop` became the hottest function
//!   of the server. Now the set holds live exchanges only.)
//! - [`ExpiryQueue`]: entries that all live for the same span (duplicate-detection records,
//!   cached blocks, idle peers) expire in insertion order, so a FIFO is enough and costs no
//!   ordered insert per message.
//!
//! This replaces the per-connection `TimerTable` of quinn: one endpoint here serves tens of
//! thousands of peers, so timers have to scale with the number of live exchanges.
use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

/// One-shot timers ordered by deadline; the id breaks ties so that timers armed earlier fire
/// first, which keeps runs deterministic.
#[derive(Debug)]
pub(crate) struct TimerSet<T> {
    timers: BTreeMap<(Instant, u64), T>,
    seq: u64,
}

impl<T> Default for TimerSet<T> {
    fn default() -> Self {
        Self {
            timers: BTreeMap::new(),
            seq: 0,
        }
    }
}

impl<T> TimerSet<T> {
    /// Arms `timer` at `when` and returns its id; `(when, id)` cancels it.
    pub(crate) fn arm(&mut self, when: Instant, timer: T) -> u64 {
        self.seq += 1;
        self.timers.insert((when, self.seq), timer);
        self.seq
    }

    /// Next id that [`arm`](Self::arm) will return, for timers that embed their own id.
    pub(crate) fn next_id(&self) -> u64 {
        self.seq + 1
    }

    /// Cancels the timer armed at `when` with `id`, if it has not fired.
    pub(crate) fn cancel(&mut self, when: Instant, id: u64) {
        self.timers.remove(&(when, id));
    }

    /// The earliest deadline.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.timers.first_key_value().map(|((when, _), _)| *when)
    }

    /// Removes and returns a timer whose deadline is at or before `now`.
    pub(crate) fn pop_expired(&mut self, now: Instant) -> Option<T> {
        if self.next_deadline()? <= now {
            self.timers.pop_first().map(|(_, t)| t)
        } else {
            None
        }
    }

    /// Timers armed and not yet fired or cancelled.
    pub(crate) fn len(&self) -> usize {
        self.timers.len()
    }
}

/// Keys that expire in roughly the order they were inserted.
#[derive(Debug)]
pub(crate) struct ExpiryQueue<K> {
    queue: VecDeque<(Instant, K)>,
}

impl<K> Default for ExpiryQueue<K> {
    fn default() -> Self {
        Self {
            queue: VecDeque::new(),
        }
    }
}

impl<K> ExpiryQueue<K> {
    /// Queues `key` to expire at `when`.
    pub(crate) fn push(&mut self, when: Instant, key: K) {
        self.queue.push_back((when, key));
    }

    /// The deadline at the front.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.queue.front().map(|(t, _)| *t)
    }

    /// Removes the front key if it has expired at `now`.
    pub(crate) fn pop_expired(&mut self, now: Instant) -> Option<K> {
        if self.queue.front()?.0 <= now {
            self.queue.pop_front().map(|(_, k)| k)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timers_fire_earliest_first_and_in_arming_order_on_ties() {
        let t0 = Instant::now();
        let mut h = TimerSet::default();
        h.arm(t0 + Duration::from_secs(3), "c");
        h.arm(t0 + Duration::from_secs(1), "a");
        h.arm(t0 + Duration::from_secs(1), "b");
        assert_eq!(h.next_deadline(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(h.pop_expired(t0), None);
        let fired: Vec<_> =
            std::iter::from_fn(|| h.pop_expired(t0 + Duration::from_secs(2))).collect();
        assert_eq!(fired, vec!["a", "b"]);
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn cancelled_timers_never_fire() {
        let t0 = Instant::now();
        let mut h = TimerSet::default();
        let when = t0 + Duration::from_secs(1);
        let id = h.arm(when, "x");
        h.arm(when, "y");
        h.cancel(when, id);
        assert_eq!(h.len(), 1);
        assert_eq!(h.pop_expired(when), Some("y"));
        assert_eq!(h.pop_expired(when), None);
    }

    #[test]
    fn expiry_queue_pops_only_expired() {
        let t0 = Instant::now();
        let mut q = ExpiryQueue::default();
        q.push(t0, 1);
        q.push(t0 + Duration::from_secs(5), 2);
        assert_eq!(q.pop_expired(t0), Some(1));
        assert_eq!(q.pop_expired(t0), None);
        assert_eq!(q.next_deadline(), Some(t0 + Duration::from_secs(5)));
        assert_eq!(q.pop_expired(t0 + Duration::from_secs(5)), Some(2));
        assert_eq!(q.next_deadline(), None);
    }
}
