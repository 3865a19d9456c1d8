//! All deadlines of an [`Endpoint`](super::Endpoint) in two shapes.
//!
//! - [`TimerHeap`]: one-shot timers (retransmissions, request timeouts, the separate-response
//!   ACK) in a binary heap. A timer is never removed when its exchange ends early; instead
//!   each carries the id it was armed with, and the owner ignores a timer whose id no longer
//!   matches (lazy deletion). That keeps cancel O(1) and the heap free of back-pointers.
//! - [`ExpiryQueue`]: entries that all live for the same span (duplicate-detection records,
//!   cached blocks, idle peers) expire in insertion order, so a FIFO is enough and costs no
//!   heap operation per message.
//!
//! This replaces the per-connection `TimerTable` of quinn: one endpoint here serves tens of
//! thousands of peers, so timers have to scale with the number of live exchanges.
use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};
use std::time::Instant;

/// A deadline in a [`TimerHeap`].
#[derive(Debug)]
struct Entry<T> {
    when: Instant,
    /// Breaks ties so that timers armed earlier fire first, which keeps runs deterministic.
    seq: u64,
    timer: T,
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        self.when == other.when && self.seq == other.seq
    }
}
impl<T> Eq for Entry<T> {}
impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Entry<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: BinaryHeap is a max-heap and the earliest deadline must come out first.
        (other.when, other.seq).cmp(&(self.when, self.seq))
    }
}

/// One-shot timers ordered by deadline.
#[derive(Debug)]
pub(crate) struct TimerHeap<T> {
    heap: BinaryHeap<Entry<T>>,
    seq: u64,
}

impl<T> Default for TimerHeap<T> {
    fn default() -> Self {
        Self {
            heap: BinaryHeap::new(),
            seq: 0,
        }
    }
}

impl<T> TimerHeap<T> {
    /// Arms `timer` at `when` and returns a fresh id that the owner stores to recognise it.
    pub(crate) fn arm(&mut self, when: Instant, timer: T) -> u64 {
        self.seq += 1;
        self.heap.push(Entry {
            when,
            seq: self.seq,
            timer,
        });
        self.seq
    }

    /// Next id that [`arm`](Self::arm) will return, for timers that embed their own id.
    pub(crate) fn next_id(&self) -> u64 {
        self.seq + 1
    }

    /// The earliest deadline, possibly of a timer that its owner has since abandoned.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|e| e.when)
    }

    /// Removes and returns a timer whose deadline is at or before `now`.
    pub(crate) fn pop_expired(&mut self, now: Instant) -> Option<T> {
        if self.heap.peek()?.when <= now {
            self.heap.pop().map(|e| e.timer)
        } else {
            None
        }
    }

    /// Timers armed, including abandoned ones not yet popped.
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
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

    /// Removes the front key whatever its deadline, to make room.
    pub(crate) fn pop_oldest(&mut self) -> Option<K> {
        self.queue.pop_front().map(|(_, k)| k)
    }

    /// Keys queued.
    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn heap_fires_earliest_first_and_in_arming_order_on_ties() {
        let t0 = Instant::now();
        let mut h = TimerHeap::default();
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
    fn expiry_queue_pops_only_expired() {
        let t0 = Instant::now();
        let mut q = ExpiryQueue::default();
        q.push(t0, 1);
        q.push(t0 + Duration::from_secs(5), 2);
        assert_eq!(q.pop_expired(t0), Some(1));
        assert_eq!(q.pop_expired(t0), None);
        assert_eq!(q.pop_oldest(), Some(2));
        assert_eq!(q.len(), 0);
    }
}
