//! A bounded map whose entries expire, oldest first.
//!
//! Duplicate-detection records (RFC 7252 §4.5), cached Block2 bodies and Block1 reassemblies
//! (RFC 7959) all live for a fixed span and must never exceed a fixed count, whatever a peer
//! sends. One structure gives all three the same two guarantees: expiry in O(1) per entry
//! through a FIFO, and eviction of the oldest entry when the capacity is reached.
use super::timer::ExpiryQueue;
use super::FastMap;
use std::hash::Hash;
use std::time::Instant;

#[derive(Debug)]
struct Slot<V> {
    /// Matches the FIFO record that owns this slot; a replaced entry leaves its old record
    /// behind, and the mismatch tells the sweep to skip it.
    generation: u64,
    expires: Instant,
    value: V,
}

/// A map of at most `capacity` entries, each with its own deadline.
#[derive(Debug)]
pub(crate) struct ExpiringMap<K, V> {
    map: FastMap<K, Slot<V>>,
    fifo: ExpiryQueue<(K, u64)>,
    generation: u64,
    capacity: usize,
}

impl<K: Clone + Eq + Hash, V> ExpiringMap<K, V> {
    /// A map of at most `capacity` entries whose keys hash with `hasher` (keyed, so a peer
    /// cannot aim its message IDs at one bucket).
    pub(crate) fn new(capacity: usize, hasher: ahash::RandomState) -> Self {
        Self {
            map: FastMap::with_hasher(hasher),
            fifo: ExpiryQueue::default(),
            generation: 0,
            capacity: capacity.max(1),
        }
    }

    /// Inserts or replaces `key`, and returns the entry evicted to stay within capacity
    /// (one insertion can push out at most one).
    pub(crate) fn insert(&mut self, key: K, value: V, expires: Instant) -> Option<(K, V)> {
        self.generation += 1;
        self.fifo.push(expires, (key.clone(), self.generation));
        self.map.insert(
            key,
            Slot {
                generation: self.generation,
                expires,
                value,
            },
        );
        let evicted = if self.map.len() > self.capacity {
            self.pop_oldest()
        } else {
            None
        };
        // Stale records of replaced entries must not accumulate without bound either.
        if self.fifo.len() > 2 * self.capacity + 16 {
            self.compact();
        }
        evicted
    }

    fn compact(&mut self) {
        let mut fresh = ExpiryQueue::default();
        while let Some((k, g)) = self.fifo.pop_oldest() {
            if let Some(s) = self.map.get(&k) {
                if s.generation == g {
                    fresh.push(s.expires, (k, g));
                }
            }
        }
        self.fifo = fresh;
    }

    /// The live entry for `key` at `now`.
    pub(crate) fn get(&self, key: &K, now: Instant) -> Option<&V> {
        self.map
            .get(key)
            .filter(|s| s.expires > now)
            .map(|s| &s.value)
    }

    /// The live entry for `key` at `now`, mutably.
    pub(crate) fn get_mut(&mut self, key: &K, now: Instant) -> Option<&mut V> {
        self.map
            .get_mut(key)
            .filter(|s| s.expires > now)
            .map(|s| &mut s.value)
    }

    /// Moves the deadline of `key` to `expires`.
    pub(crate) fn touch(&mut self, key: &K, expires: Instant) {
        self.generation += 1;
        if let Some(s) = self.map.get_mut(key) {
            s.generation = self.generation;
            s.expires = expires;
            self.fifo.push(expires, (key.clone(), self.generation));
        }
        if self.fifo.len() > 2 * self.capacity + 16 {
            self.compact();
        }
    }

    /// Removes `key`.
    pub(crate) fn remove(&mut self, key: &K) -> Option<V> {
        self.map.remove(key).map(|s| s.value)
    }

    /// Removes and returns one entry that has expired at `now`.
    pub(crate) fn pop_expired(&mut self, now: Instant) -> Option<(K, V)> {
        while let Some((k, g)) = self.fifo.pop_expired(now) {
            if self.map.get(&k).is_some_and(|s| s.generation == g) {
                return self.map.remove(&k).map(|s| (k, s.value));
            }
        }
        None
    }

    /// Removes the oldest entry whatever its deadline, to make room.
    pub(crate) fn pop_oldest(&mut self) -> Option<(K, V)> {
        while let Some((k, g)) = self.fifo.pop_oldest() {
            if self.map.get(&k).is_some_and(|s| s.generation == g) {
                return self.map.remove(&k).map(|s| (k, s.value));
            }
        }
        None
    }

    /// The earliest deadline, possibly of a replaced entry (an early wake-up is harmless).
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.fifo.next_deadline()
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Expiry records held, live or stale: what bounds this map's memory besides `len`.
    #[cfg(test)]
    pub(crate) fn records(&self) -> usize {
        self.fifo.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn evicts_oldest_at_capacity_and_expires_in_order() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut m = ExpiringMap::new(2, ahash::RandomState::with_seeds(1, 2, 3, 4));
        assert!(m.insert(1, "a", t0 + s).is_none());
        assert!(m.insert(2, "b", t0 + 2 * s).is_none());
        assert_eq!(m.insert(3, "c", t0 + 3 * s), Some((1, "a")));
        assert_eq!(m.get(&2, t0), Some(&"b"));
        assert_eq!(m.get(&2, t0 + 2 * s), None, "expired entries are invisible");
        assert_eq!(m.pop_expired(t0 + 2 * s), Some((2, "b")));
        assert_eq!(m.pop_expired(t0 + 2 * s), None);
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn replaced_entry_is_not_removed_by_its_old_record() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut m = ExpiringMap::new(10, ahash::RandomState::with_seeds(1, 2, 3, 4));
        m.insert(1, "old", t0 + s);
        m.insert(1, "new", t0 + 5 * s);
        assert_eq!(m.pop_expired(t0 + 2 * s), None);
        assert_eq!(m.get(&1, t0 + 2 * s), Some(&"new"));
    }

    #[test]
    fn stale_records_stay_bounded() {
        let t0 = Instant::now();
        let mut m = ExpiringMap::new(4, ahash::RandomState::with_seeds(1, 2, 3, 4));
        for i in 0..10_000u32 {
            m.insert(i % 3, i, t0 + Duration::from_secs(100));
        }
        assert!(m.fifo.len() <= 2 * 4 + 16);
        assert_eq!(m.len(), 3);
    }
}
