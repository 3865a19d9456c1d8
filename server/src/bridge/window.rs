//! The publishes the bridge has in flight to the broker, matched to their acknowledgements by
//! packet identifier (MQTT 3.1.1 §2.3.1 and §4.3.2, MQTT 5 §2.2.1 and §4.3.2).
//!
//! A message leaves the outbox only when it and every older one are acknowledged, so a crash
//! never loses one a PUBACK did not cover. Acknowledgements are matched by packet id rather
//! than by position: a broker acknowledges in the order it received, but after a reconnect
//! the client resends what was in flight, and rumqttc's MQTT 5 client gathers those by packet
//! id, not by age (ids wrap around at the receive maximum, so the order it resends in is not
//! the order they were published in). [`Window::order_resends`] puts them back in publish
//! order before they go out again, so a subscriber never sees a newer notification before
//! an older one of the same device.
use std::collections::VecDeque;

/// One publish handed to the MQTT client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    /// Its outbox sequence number.
    seq: u64,
    /// Its packet id once the client has sent it (0 until then).
    pkid: u16,
    /// The broker acknowledged it.
    acked: bool,
}

/// The publishes in flight, oldest first.
#[derive(Debug)]
pub struct Window {
    entries: VecDeque<Entry>,
    /// How many of the newest entries the client has not sent yet (it sends in order, so
    /// they are the last ones): the next packet id seen goes to the first of them.
    unsent: usize,
    /// Packet ids sent and not yet acknowledged, one bit each: a resend and an
    /// acknowledgement are told apart in O(1) instead of a scan of up to a thousand entries
    /// per message, which a window draining after a broker outage would pay.
    unacked_ids: Box<[u64; 1024]>,
}

impl Default for Window {
    fn default() -> Self {
        Window {
            entries: VecDeque::new(),
            unsent: 0,
            unacked_ids: Box::new([0; 1024]),
        }
    }
}

/// The word and bit of packet id `pkid` in [`Window::unacked_ids`].
fn bit(pkid: u16) -> (usize, u64) {
    (usize::from(pkid >> 6), 1u64 << (pkid & 63))
}

impl Window {
    /// Publishes handed to the client and not yet retired.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Message `seq` was handed to the client (which sends in the order it was handed them).
    pub fn push(&mut self, seq: u64) {
        self.entries.push_back(Entry {
            seq,
            pkid: 0,
            acked: false,
        });
        self.unsent += 1;
    }

    fn is_unacked(&self, pkid: u16) -> bool {
        let (w, b) = bit(pkid);
        self.unacked_ids.get(w).is_some_and(|x| x & b != 0)
    }

    fn mark(&mut self, pkid: u16, unacked: bool) {
        let (w, b) = bit(pkid);
        if let Some(x) = self.unacked_ids.get_mut(w) {
            if unacked {
                *x |= b;
            } else {
                *x &= !b;
            }
        }
    }

    /// The client sent a publish with packet id `pkid`: the first one handed over and not yet
    /// sent gets it, unless it is the resend of one already in flight with that id.
    pub fn sent(&mut self, pkid: u16) {
        if pkid == 0 || self.is_unacked(pkid) || self.unsent == 0 {
            return;
        }
        let Some(first_unsent) = self.entries.len().checked_sub(self.unsent) else {
            return;
        };
        if let Some(e) = self.entries.get_mut(first_unsent) {
            e.pkid = pkid;
            self.unsent -= 1;
            self.mark(pkid, true);
        }
    }

    /// The broker acknowledged packet `pkid`; false if no publish in flight has that id.
    pub fn acked(&mut self, pkid: u16) -> bool {
        if pkid == 0 || !self.is_unacked(pkid) {
            return false;
        }
        self.mark(pkid, false);
        // Acknowledgements mostly come in order: the match is at or near the front.
        match self.entries.iter_mut().find(|e| e.pkid == pkid && !e.acked) {
            Some(e) => {
                e.acked = true;
                true
            }
            None => false,
        }
    }

    /// A QoS 0 publish left: it needs no acknowledgement, and they leave in order.
    pub fn sent_unacknowledged(&mut self) {
        if let Some(e) = self.entries.iter_mut().find(|e| !e.acked) {
            e.acked = true;
            self.unsent = self.unsent.saturating_sub(1);
        }
    }

    /// The oldest message if it is acknowledged, removed: call until `None` to retire, in
    /// order, every message that it and all older ones are acknowledged.
    pub fn retire(&mut self) -> Option<u64> {
        if self.entries.front().is_some_and(|e| e.acked) {
            let seq = self.entries.pop_front().map(|e| e.seq);
            self.unsent = self.unsent.min(self.entries.len());
            seq
        } else {
            None
        }
    }

    /// The broker kept nothing of this session: everything in flight is to be published
    /// again. Returns the oldest message's sequence number, where publishing resumes.
    pub fn rewind(&mut self) -> Option<u64> {
        let oldest = self.entries.front().map(|e| e.seq);
        self.entries.clear();
        self.unsent = 0;
        self.unacked_ids.fill(0);
        oldest
    }

    /// Sorts the client's list of requests to resend so that the publishes in flight go out
    /// in the order they were first published. Requests this window does not know (publishes
    /// not yet sent, subscriptions) keep their order after them.
    pub fn order_resends<R>(&self, pending: &mut VecDeque<R>, pkid_of: impl Fn(&R) -> Option<u16>) {
        let rank = |r: &R| {
            pkid_of(r)
                .filter(|p| *p != 0)
                .and_then(|p| self.entries.iter().position(|e| e.pkid == p && !e.acked))
                .unwrap_or(usize::MAX)
        };
        pending.make_contiguous().sort_by_key(|r| rank(r));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retired(w: &mut Window) -> Vec<u64> {
        std::iter::from_fn(|| w.retire()).collect()
    }

    #[test]
    fn acknowledgements_retire_in_publish_order_only() {
        let mut w = Window::default();
        for (seq, pkid) in [(10, 7), (11, 8), (12, 1)] {
            w.push(seq);
            w.sent(pkid);
        }
        // The newest is acknowledged first: nothing may leave the outbox yet.
        assert!(w.acked(1));
        assert_eq!(retired(&mut w), Vec::<u64>::new());
        assert!(w.acked(7));
        assert_eq!(retired(&mut w), vec![10]);
        assert!(!w.acked(7), "an acknowledgement counts once");
        assert!(w.acked(8));
        assert_eq!(retired(&mut w), vec![11, 12]);
        assert!(w.is_empty());
    }

    #[test]
    fn a_resend_keeps_its_message_and_a_reused_id_gets_a_new_one() {
        let mut w = Window::default();
        w.push(1);
        w.sent(5);
        w.push(2);
        w.sent(5); // the resend of seq 1 after a reconnect
        w.sent(6);
        assert!(w.acked(5));
        assert!(w.acked(6));
        assert_eq!(retired(&mut w), vec![1, 2]);
        // Id 5 is free again and goes to the next message.
        w.push(3);
        w.sent(5);
        assert!(w.acked(5));
        assert_eq!(retired(&mut w), vec![3]);
    }

    #[test]
    fn resends_gathered_by_packet_id_go_out_in_publish_order() {
        // Ids wrapped around: seq 100..=103 were sent as 9, 10, 1, 2.
        let mut w = Window::default();
        for (seq, pkid) in [(100, 9), (101, 10), (102, 1), (103, 2)] {
            w.push(seq);
            w.sent(pkid);
        }
        w.push(104); // handed over, not sent yet: it waits in the client's channel
                     // What the client collects, by packet id, then its channel (id 0), then a subscribe.
        let mut pending: VecDeque<(&str, u16)> = [
            ("pub", 1),
            ("pub", 2),
            ("pub", 9),
            ("pub", 10),
            ("pub", 0),
            ("sub", 0),
        ]
        .into_iter()
        .collect();
        w.order_resends(&mut pending, |r| (r.0 == "pub").then_some(r.1));
        let ids: Vec<_> = pending.iter().map(|r| (r.0, r.1)).collect();
        assert_eq!(
            ids,
            [
                ("pub", 9),
                ("pub", 10),
                ("pub", 1),
                ("pub", 2),
                ("pub", 0),
                ("sub", 0)
            ]
        );
    }

    #[test]
    fn rewind_starts_again_from_the_oldest() {
        let mut w = Window::default();
        assert_eq!(w.rewind(), None);
        w.push(40);
        w.sent(1);
        w.push(41);
        assert!(w.acked(1));
        assert_eq!(w.rewind(), Some(40));
        assert!(w.is_empty());
    }

    #[test]
    fn qos0_publishes_retire_as_they_leave() {
        let mut w = Window::default();
        w.push(1);
        w.push(2);
        w.sent_unacknowledged();
        assert_eq!(retired(&mut w), vec![1]);
        w.sent_unacknowledged();
        assert_eq!(retired(&mut w), vec![2]);
    }
}
