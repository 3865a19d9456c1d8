//! A bounded map whose entries expire, oldest first.
//!
//! Duplicate-detection records (RFC 7252 §4.5), cached Block2 bodies and Block1 reassemblies
//! (RFC 7959) all live for a fixed span and must never exceed a fixed count, whatever a peer
//! sends. One structure gives all three the same two guarantees: expiry in O(1) per entry,
//! and eviction of the oldest entry when the capacity is reached.
//!
//! Memory matters here: the duplicate-detection map holds hundreds of thousands of entries
//! under telemetry. Each entry is stored once, in a ring in insertion order (which is also
//! roughly expiry order, as each map gives its entries one or two lifetimes); the hash index
//! holds only the entry's sequence number (8 bytes a slot, where a map keyed by the peer's
//! address would hold the key again, and a second queue of expiry records a third time).
//! `hashbrown`'s `HashTable` is what lets the index find a key it does not store.
use hashbrown::HashTable;
use std::collections::VecDeque;
use std::hash::Hash;
use std::time::Instant;

#[derive(Debug)]
struct Entry<K, V> {
    key: K,
    expires: Instant,
    value: V,
}

/// A map of at most `capacity` entries, each with its own deadline.
#[derive(Debug)]
pub(crate) struct ExpiringMap<K, V> {
    /// Entries in insertion order; `None` where one was removed or replaced. The front is
    /// always a live entry (or the ring is empty).
    ring: VecDeque<Option<Entry<K, V>>>,
    /// The sequence number of `ring[0]`; entry `seq` is at `ring[seq - head]`.
    head: u64,
    /// The sequence numbers of the live entries, hashed by their keys.
    index: HashTable<u64>,
    hasher: ahash::RandomState,
    live: usize,
    capacity: usize,
}

impl<K: Clone + Eq + Hash, V> ExpiringMap<K, V> {
    /// A map of at most `capacity` entries whose keys hash with `hasher` (keyed, so a peer
    /// cannot aim its message IDs at one bucket).
    pub(crate) fn new(capacity: usize, hasher: ahash::RandomState) -> Self {
        Self {
            ring: VecDeque::new(),
            head: 0,
            index: HashTable::new(),
            hasher,
            live: 0,
            capacity: capacity.max(1),
        }
    }

    /// The sequence number of `key`'s entry.
    fn find(&self, key: &K) -> Option<u64> {
        let (ring, head) = (&self.ring, self.head);
        self.index
            .find(self.hasher.hash_one(key), |&seq| {
                holds(ring, head, seq, key)
            })
            .copied()
    }

    /// Takes `key`'s entry out of the ring and the index.
    fn take(&mut self, key: &K) -> Option<Entry<K, V>> {
        let (ring, head) = (&self.ring, self.head);
        let seq = match self.index.find_entry(self.hasher.hash_one(key), |&seq| {
            holds(ring, head, seq, key)
        }) {
            Ok(entry) => entry.remove().0,
            Err(_) => return None,
        };
        let entry = self.ring.get_mut(position(head, seq)?)?.take();
        if entry.is_some() {
            self.live -= 1;
        }
        self.trim();
        entry
    }

    /// Drops removed entries from the front, so that the front is a live entry.
    fn trim(&mut self) {
        while matches!(self.ring.front(), Some(None)) {
            self.ring.pop_front();
            self.head += 1;
        }
        // Removed entries behind a long-lived front must not accumulate without bound.
        if self.ring.len() > 2 * self.capacity + 16 {
            self.compact();
        }
    }

    /// Closes the gaps of removed entries and renumbers the rest.
    fn compact(&mut self) {
        let old = std::mem::take(&mut self.ring);
        self.head += old.len() as u64;
        self.index.clear();
        for e in old.into_iter().flatten() {
            self.push_back(e);
        }
    }

    fn push_back(&mut self, e: Entry<K, V>) {
        let seq = self.head + self.ring.len() as u64;
        let hash = self.hasher.hash_one(&e.key);
        let (ring, head, hasher) = (&self.ring, self.head, &self.hasher);
        self.index.insert_unique(hash, seq, |&s| {
            entry_at(ring, head, s).map_or(0, |e| hasher.hash_one(&e.key))
        });
        self.ring.push_back(Some(e));
        if self.ring.len() > 2 * self.capacity + 16 {
            self.compact();
        }
    }

    /// Inserts or replaces `key`, and returns the entry evicted to stay within capacity
    /// (one insertion can push out at most one).
    pub(crate) fn insert(&mut self, key: K, value: V, expires: Instant) -> Option<(K, V)> {
        let replaced = self.take(&key).is_some();
        self.push_back(Entry {
            key,
            expires,
            value,
        });
        self.live += 1;
        if !replaced && self.live > self.capacity {
            self.pop_oldest()
        } else {
            None
        }
    }

    /// The live entry for `key` at `now`.
    pub(crate) fn get(&self, key: &K, now: Instant) -> Option<&V> {
        entry_at(&self.ring, self.head, self.find(key)?)
            .filter(|e| e.expires > now)
            .map(|e| &e.value)
    }

    /// The live entry for `key` at `now`, mutably.
    pub(crate) fn get_mut(&mut self, key: &K, now: Instant) -> Option<&mut V> {
        let i = position(self.head, self.find(key)?)?;
        self.ring
            .get_mut(i)?
            .as_mut()
            .filter(|e| e.expires > now)
            .map(|e| &mut e.value)
    }

    /// Moves the deadline of `key` to `expires` (the entry becomes the newest).
    pub(crate) fn touch(&mut self, key: &K, expires: Instant) {
        if let Some(mut e) = self.take(key) {
            e.expires = expires;
            self.push_back(e);
            self.live += 1;
        }
    }

    /// Removes `key`.
    pub(crate) fn remove(&mut self, key: &K) -> Option<V> {
        self.take(key).map(|e| e.value)
    }

    /// Removes and returns one entry that has expired at `now`.
    pub(crate) fn pop_expired(&mut self, now: Instant) -> Option<(K, V)> {
        let front = self.ring.front()?.as_ref()?;
        if front.expires > now {
            return None;
        }
        self.pop_oldest()
    }

    /// Removes the oldest entry whatever its deadline, to make room.
    pub(crate) fn pop_oldest(&mut self) -> Option<(K, V)> {
        let key = self.ring.front()?.as_ref()?.key.clone();
        self.take(&key).map(|e| (e.key, e.value))
    }

    /// The deadline of the oldest entry (a newer one may expire first; an early or late
    /// wake-up is harmless: [`get`](Self::get) checks each entry's own deadline).
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.ring.front()?.as_ref().map(|e| e.expires)
    }

    pub(crate) fn len(&self) -> usize {
        self.live
    }

    /// Slots held, live or removed: what bounds this map's memory besides `len`.
    #[cfg(test)]
    pub(crate) fn records(&self) -> usize {
        self.ring.len()
    }
}

/// Where entry `seq` sits in a ring whose front is entry `head`.
fn position(head: u64, seq: u64) -> Option<usize> {
    usize::try_from(seq.checked_sub(head)?).ok()
}

/// Entry `seq`, if it is live.
fn entry_at<K, V>(
    ring: &VecDeque<Option<Entry<K, V>>>,
    head: u64,
    seq: u64,
) -> Option<&Entry<K, V>> {
    ring.get(position(head, seq)?)?.as_ref()
}

/// Whether entry `seq` is live and `key`'s.
fn holds<K: Eq, V>(ring: &VecDeque<Option<Entry<K, V>>>, head: u64, seq: u64, key: &K) -> bool {
    entry_at(ring, head, seq).is_some_and(|e| e.key == *key)
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
    fn replaced_entries_behind_a_long_lived_one_are_compacted_away() {
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(100);
        let mut m = ExpiringMap::new(4, ahash::RandomState::with_seeds(1, 2, 3, 4));
        m.insert(100, 0, later);
        for i in 0..10_000u32 {
            m.insert(i % 2, i, later);
            if i % 7 == 0 {
                m.touch(&(i % 2), later);
            }
            assert!(m.records() <= 2 * 4 + 16, "{}", m.records());
        }
        assert_eq!(m.len(), 3);
        assert_eq!(m.get(&100, t0), Some(&0));
        assert_eq!(m.get(&0, t0), Some(&9998));
        assert_eq!(m.get(&1, t0), Some(&9999));
        assert_eq!(m.pop_oldest(), Some((100, 0)));
    }

    #[test]
    fn stale_records_stay_bounded() {
        let t0 = Instant::now();
        let mut m = ExpiringMap::new(4, ahash::RandomState::with_seeds(1, 2, 3, 4));
        for i in 0..10_000u32 {
            m.insert(i % 3, i, t0 + Duration::from_secs(100));
        }
        assert!(m.records() <= 2 * 4 + 16);
        assert_eq!(m.len(), 3);
    }

    /// The same operations on a plain list in insertion order.
    #[derive(Default)]
    struct Model {
        entries: Vec<(u8, u32, Instant)>,
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u8, u32, u64),
        Remove(u8),
        Touch(u8, u64),
        Get(u8, u64),
        PopExpired(u64),
        PopOldest,
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        let key = 0u8..12;
        let at = 0u64..50;
        prop_oneof![
            (key.clone(), any::<u32>(), at.clone()).prop_map(|(k, v, t)| Op::Insert(k, v, t)),
            key.clone().prop_map(Op::Remove),
            (key.clone(), at.clone()).prop_map(|(k, t)| Op::Touch(k, t)),
            (key, at.clone()).prop_map(|(k, t)| Op::Get(k, t)),
            at.prop_map(Op::PopExpired),
            Just(Op::PopOldest),
        ]
    }

    proptest::proptest! {
        #[test]
        fn behaves_as_a_list_in_insertion_order(ops in proptest::collection::vec(op(), 1..400), cap in 1usize..8) {
            let t0 = Instant::now();
            let at = |s: u64| t0 + Duration::from_secs(s);
            let mut m = ExpiringMap::new(cap, ahash::RandomState::with_seeds(5, 6, 7, 8));
            let mut model = Model::default();
            for op in ops {
                match op {
                    Op::Insert(k, v, t) => {
                        let replaced = model.entries.iter().position(|e| e.0 == k).map(|i| model.entries.remove(i));
                        model.entries.push((k, v, at(t)));
                        let want = if replaced.is_none() && model.entries.len() > cap {
                            let (k, v, _) = model.entries.remove(0);
                            Some((k, v))
                        } else {
                            None
                        };
                        proptest::prop_assert_eq!(m.insert(k, v, at(t)), want);
                    }
                    Op::Remove(k) => {
                        let want = model.entries.iter().position(|e| e.0 == k).map(|i| model.entries.remove(i).1);
                        proptest::prop_assert_eq!(m.remove(&k), want);
                    }
                    Op::Touch(k, t) => {
                        if let Some(i) = model.entries.iter().position(|e| e.0 == k) {
                            let (k, v, _) = model.entries.remove(i);
                            model.entries.push((k, v, at(t)));
                        }
                        m.touch(&k, at(t));
                    }
                    Op::Get(k, t) => {
                        let want = model.entries.iter().find(|e| e.0 == k && e.2 > at(t)).map(|e| e.1);
                        proptest::prop_assert_eq!(m.get(&k, at(t)).copied(), want);
                        proptest::prop_assert_eq!(m.get_mut(&k, at(t)).map(|v| *v), want);
                    }
                    Op::PopExpired(t) => {
                        let want = match model.entries.first() {
                            Some(e) if e.2 <= at(t) => {
                                let (k, v, _) = model.entries.remove(0);
                                Some((k, v))
                            }
                            _ => None,
                        };
                        proptest::prop_assert_eq!(m.pop_expired(at(t)), want);
                    }
                    Op::PopOldest => {
                        let want = (!model.entries.is_empty()).then(|| model.entries.remove(0)).map(|(k, v, _)| (k, v));
                        proptest::prop_assert_eq!(m.pop_oldest(), want);
                    }
                }
                proptest::prop_assert_eq!(m.len(), model.entries.len());
                proptest::prop_assert_eq!(m.next_deadline(), model.entries.first().map(|e| e.2));
                proptest::prop_assert!(m.records() <= 2 * cap + 16);
            }
        }
    }
}
