//! Durable before acknowledged: while MQTT messages caused by a datagram are not yet
//! committed to the outbox, nothing the role core sends (its ACK above all) leaves. A device
//! whose notification was acknowledged can then rely on it reaching the broker even if the
//! server is killed the next moment.
//!
//! Transmits are tagged with the commit generation that covers them and released when that
//! commit is done, so under steady load one commit releases a whole batch while the next
//! gathers.
use std::collections::VecDeque;

/// Datagrams held for an outbox commit at most. A store that stops committing must not hold
/// the server's memory hostage: beyond this, datagrams leave unheld (and a crash in that
/// window could lose notifications the devices saw acknowledged).
pub(crate) const MAX_HELD: usize = 65_536;

/// The held datagrams and the commit generations they wait for.
#[derive(Debug)]
pub(crate) struct Hold<T> {
    /// Outbox writes since the last commit request.
    dirty: bool,
    /// Generation the next commit request will have.
    open: u64,
    /// Last generation requested; a commit is in flight while it is above `committed`.
    requested: u64,
    /// Last generation reported committed.
    committed: u64,
    /// Datagrams waiting, oldest first, each with the generation that releases it.
    held: VecDeque<(u64, T)>,
    /// Released datagrams, to leave before anything newer.
    ready: VecDeque<T>,
}

impl<T> Default for Hold<T> {
    fn default() -> Self {
        Self {
            dirty: false,
            open: 1,
            requested: 0,
            committed: 0,
            held: VecDeque::new(),
            ready: VecDeque::new(),
        }
    }
}

impl<T> Hold<T> {
    /// The outbox was written: what the core sends from now on waits for the next commit.
    pub(crate) fn written(&mut self) {
        self.dirty = true;
    }

    /// A commit to ask the store for, if writes wait for one and none is in flight (one at a
    /// time: the next gathers what arrives meanwhile).
    pub(crate) fn poll_commit(&mut self) -> Option<u64> {
        if !self.dirty || self.in_flight() {
            return None;
        }
        let generation = self.open;
        self.open += 1;
        self.requested = generation;
        self.dirty = false;
        Some(generation)
    }

    /// The store committed everything queued up to `generation`'s request.
    pub(crate) fn committed(&mut self, generation: u64) {
        self.committed = self.committed.max(generation);
        while self.held.front().is_some_and(|(g, _)| *g <= self.committed) {
            if let Some((_, t)) = self.held.pop_front() {
                self.ready.push_back(t);
            }
        }
    }

    /// Takes `t` to hold if a commit it must wait for is pending; gives it back otherwise.
    pub(crate) fn admit(&mut self, t: T) -> Option<T> {
        if !(self.dirty || self.in_flight()) || self.held.len() >= MAX_HELD {
            return Some(t);
        }
        let generation = if self.dirty {
            self.open
        } else {
            self.requested
        };
        self.held.push_back((generation, t));
        None
    }

    /// The next released datagram.
    pub(crate) fn pop_ready(&mut self) -> Option<T> {
        self.ready.pop_front()
    }

    fn in_flight(&self) -> bool {
        self.committed < self.requested
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_held_without_outbox_writes() {
        let mut h = Hold::default();
        assert_eq!(h.admit(1), Some(1));
        assert_eq!(h.poll_commit(), None);
    }

    #[test]
    fn a_commit_releases_what_it_covers_and_not_what_came_after() {
        let mut h = Hold::default();
        h.written();
        assert_eq!(h.admit(1), None);
        let first = h.poll_commit().unwrap();
        // Written while the first commit is in flight: waits for the next one.
        assert_eq!(h.admit(2), None);
        h.written();
        assert_eq!(h.admit(3), None);
        assert_eq!(h.poll_commit(), None, "one commit in flight at a time");
        h.committed(first);
        assert_eq!(h.pop_ready(), Some(1));
        assert_eq!(h.pop_ready(), Some(2), "the in-flight commit covered it");
        assert_eq!(h.pop_ready(), None);
        let second = h.poll_commit().unwrap();
        assert!(second > first);
        h.committed(second);
        assert_eq!(h.pop_ready(), Some(3));
        assert_eq!(h.admit(4), Some(4));
    }

    #[test]
    fn a_store_that_stops_committing_holds_a_bounded_number() {
        let mut h = Hold::default();
        h.written();
        for i in 0..MAX_HELD {
            assert_eq!(h.admit(i), None);
        }
        assert_eq!(h.admit(MAX_HELD), Some(MAX_HELD));
    }
}
