//! Who each DTLS peer proved to be (Transport §5: the endpoint its credential is bound to),
//! in a table with a bound.
//!
//! At the bound the peer authenticated longest ago is forgotten to make room. A forgotten
//! peer that still asks to be bootstrapped is then seen without a principal, as a NoSec peer
//! would be, so the bound must exceed the sessions the DTLS layer keeps open; the embedding
//! server tells the core of every closed session ([`peer_closed`]), which is what keeps the
//! table small in practice.
//!
//! [`peer_closed`]: super::BootstrapCore::peer_closed
use lwm2m::coap::Peer;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Principals by peer, oldest first.
#[derive(Debug)]
pub(super) struct Principals<P> {
    /// At least 1.
    cap: usize,
    /// Each peer's principal, with the key of its entry in `order`.
    by_peer: HashMap<P, (u64, Arc<str>)>,
    /// Peers in the order they authenticated, for eviction.
    order: BTreeMap<u64, P>,
    next: u64,
}

impl<P: Peer> Principals<P> {
    pub(super) fn new(cap: usize) -> Self {
        Self {
            cap: cap.max(1),
            by_peer: HashMap::new(),
            order: BTreeMap::new(),
            next: 0,
        }
    }

    /// Binds `peer` to `principal`, forgetting the oldest peer if the table is full.
    pub(super) fn insert(&mut self, peer: P, principal: Arc<str>) {
        if let Some((key, _)) = self.by_peer.remove(&peer) {
            self.order.remove(&key);
        }
        while self.by_peer.len() >= self.cap {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            tracing::warn!(peer = ?oldest, "bootstrap principal table full: oldest peer forgotten");
            self.by_peer.remove(&oldest);
        }
        self.next += 1;
        self.order.insert(self.next, peer);
        self.by_peer.insert(peer, (self.next, principal));
    }

    pub(super) fn remove(&mut self, peer: &P) {
        if let Some((key, _)) = self.by_peer.remove(peer) {
            self.order.remove(&key);
        }
    }

    pub(super) fn get(&self, peer: &P) -> Option<&Arc<str>> {
        self.by_peer.get(peer).map(|(_, p)| p)
    }

    pub(super) fn len(&self) -> usize {
        self.by_peer.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_forgets_the_oldest_peer_at_its_bound() {
        let mut t = Principals::new(2);
        t.insert(1u8, Arc::from("a"));
        t.insert(2u8, Arc::from("b"));
        t.insert(1u8, Arc::from("a2"));
        t.insert(3u8, Arc::from("c"));
        assert_eq!(t.len(), 2);
        assert_eq!(t.get(&2), None, "2 authenticated longest ago");
        assert_eq!(t.get(&1).map(|p| &**p), Some("a2"));
        t.remove(&1);
        assert_eq!(t.get(&1), None);
        assert_eq!(t.len(), 1);
    }
}
