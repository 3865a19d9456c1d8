//! Which devices this node reaches through another node: a device whose datagrams arrive
//! forwarded (its session lives here, the balancer sends it to another node) is answered
//! through that node, so the answer leaves from the address the device sent to. One entry per
//! such device, set by each of its authenticated records that comes through another node,
//! removed by one that comes directly or by a handshake that begins here.
//!
//! Bounded: beyond the capacity the oldest entry is dropped. A dropped entry costs little:
//! an answer goes out directly, the balancer's NAT drops it, the device retransmits, and its
//! retransmission comes forwarded again and restores the entry.
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;

/// The map. Insertion order (not use) decides eviction: a device that keeps sending through
/// another node is inserted again by every authenticated record, so its entry stays young.
#[derive(Debug)]
pub struct Routes {
    by_peer: HashMap<SocketAddr, (u8, u64)>,
    /// Insertions, oldest first; one whose generation no longer matches was replaced or removed.
    order: VecDeque<(SocketAddr, u64)>,
    next: u64,
    capacity: usize,
}

impl Routes {
    /// An empty map holding at most `capacity` devices (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            by_peer: HashMap::new(),
            order: VecDeque::new(),
            next: 0,
            capacity: capacity.max(1),
        }
    }

    /// `peer`'s datagrams arrive through `node`.
    pub fn insert(&mut self, peer: SocketAddr, node: u8) {
        while self.by_peer.len() >= self.capacity && !self.by_peer.contains_key(&peer) {
            let Some((old, generation)) = self.order.pop_front() else {
                break;
            };
            if self
                .by_peer
                .get(&old)
                .is_some_and(|(_, g)| *g == generation)
            {
                self.by_peer.remove(&old);
            }
        }
        self.next += 1;
        self.by_peer.insert(peer, (node, self.next));
        self.order.push_back((peer, self.next));
        // Every authenticated record of a device inserts it again, leaving a stale record
        // behind: drop them in one pass once they outnumber the live entries (not the
        // capacity: one chatty device must not grow the queue towards twice the fleet).
        if self.order.len() > 2 * self.by_peer.len() {
            let live = &self.by_peer;
            self.order
                .retain(|(p, g)| live.get(p).is_some_and(|(_, lg)| lg == g));
        }
    }

    /// `peer`'s datagrams arrive here directly.
    pub fn remove(&mut self, peer: &SocketAddr) {
        self.by_peer.remove(peer);
    }

    /// The node `peer` is reached through, if not directly.
    pub fn get(&self, peer: &SocketAddr) -> Option<u8> {
        self.by_peer.get(peer).map(|(n, _)| *n)
    }

    /// Devices reached through another node.
    pub fn len(&self) -> usize {
        self.by_peer.len()
    }

    /// Whether every device is reached directly.
    pub fn is_empty(&self) -> bool {
        self.by_peer.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn a(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn a_route_is_replaced_removed_and_the_oldest_dropped_beyond_capacity() {
        let mut r = Routes::new(2);
        r.insert(a(1), 7);
        r.insert(a(1), 8);
        assert_eq!(r.get(&a(1)), Some(8));
        r.insert(a(2), 7);
        r.insert(a(3), 7);
        assert_eq!(
            (r.get(&a(1)), r.get(&a(2)), r.get(&a(3))),
            (None, Some(7), Some(7))
        );
        r.remove(&a(2));
        assert_eq!(r.get(&a(2)), None);
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn a_chatty_device_keeps_the_records_small_whatever_the_capacity() {
        let mut r = Routes::new(1_000_000);
        for _ in 0..10_000 {
            r.insert(a(1), 7);
        }
        assert_eq!(r.get(&a(1)), Some(7));
        assert!(
            r.order.len() <= 2,
            "{} records for one device",
            r.order.len()
        );
    }

    proptest! {
        #[test]
        fn never_more_than_capacity_and_records_stay_bounded(
            ops in proptest::collection::vec((0u16..20, 0u8..3, any::<bool>()), 0..500),
            capacity in 1usize..8,
        ) {
            let mut r = Routes::new(capacity);
            let mut last = None;
            for (port, node, insert) in ops {
                if insert {
                    r.insert(a(port), node);
                    last = Some((a(port), node));
                } else {
                    r.remove(&a(port));
                    if last.is_some_and(|(p, _)| p == a(port)) {
                        last = None;
                    }
                }
                prop_assert!(r.len() <= capacity);
                prop_assert!(r.order.len() <= 2 * capacity + 1);
                // The newest route is always kept.
                if let Some((p, n)) = last {
                    prop_assert_eq!(r.get(&p), Some(n));
                }
            }
        }
    }
}
