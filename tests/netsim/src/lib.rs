//! A simulated datagram network in virtual time, shared by the tests of every sans-IO machine
//! in the workspace (the CoAP endpoint, the DTLS engine, the LwM2M client, the server core and
//! the server's secure stack) — the shape of quinn's test `Pair`, without the machines.
//!
//! A machine under test is driven by its test; the [`Net`] only carries its datagrams. The test
//! hands every datagram a machine produced to [`Net::send`], asks [`Net::step`] what happens
//! next (a datagram arrives, or the earliest machine deadline it was given passes), and feeds
//! that to the machine. Time jumps from one event to the next, so hours of lifetimes,
//! retransmissions and sleep cycles run in milliseconds, and every run is reproducible from its
//! seed.
//!
//! What the network can do to a datagram, decided per datagram by a seeded RNG:
//! - lose it ([`Faults::loss`]), or lose everything to or from a node that is [`Net::down`]
//!   (a sleeping radio, a cable pulled);
//! - duplicate it ([`Faults::duplicate`]);
//! - delay it by [`Faults::latency`] plus up to [`Faults::jitter`], which reorders datagrams;
//! - rewrite its source address ([`Net::rebind`]): a NAT that gave the node a new port.
//!
//! Every datagram sent is logged ([`Net::sent`]), so a test can assert what went over the wire,
//! when, and how often.
//!
//! A test harness that implements [`Harness`] (how its machines take a datagram, a timeout,
//! and hand over what they produced) gets the event loop: [`Harness::step`],
//! [`Harness::run_until`] and [`Harness::run_idle`].
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::fmt::Debug;
use std::time::{Duration, Instant};

/// What the network does to datagrams. The default is a perfect network with 10 ms latency.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Faults {
    /// Probability that a datagram is lost.
    pub loss: f64,
    /// Probability that a datagram is delivered twice.
    pub duplicate: f64,
    /// Delay of every datagram.
    pub latency: Duration,
    /// Extra random delay, up to this; nonzero jitter reorders datagrams.
    pub jitter: Duration,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            loss: 0.0,
            duplicate: 0.0,
            latency: Duration::from_millis(10),
            jitter: Duration::ZERO,
        }
    }
}

/// A datagram as it arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram<A> {
    /// The source address the receiver sees (after any rebinding).
    pub from: A,
    /// The destination.
    pub to: A,
    /// The payload.
    pub bytes: Vec<u8>,
}

/// A datagram as it left its sender, before the network had its way with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent<A> {
    /// When it was sent.
    pub at: Instant,
    /// The sender's own address (before rebinding).
    pub from: A,
    /// The destination.
    pub to: A,
    /// The payload.
    pub bytes: Vec<u8>,
    /// Whether the network delivers it (at least once).
    pub delivered: bool,
}

/// What happens next on the network, as [`Net::step`] reports it. The clock has moved to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step<A> {
    /// A datagram arrives now.
    Deliver(Datagram<A>),
    /// The deadline the test passed in is now: run the machines' timers.
    Timeout,
}

/// The network and the virtual clock.
#[derive(Debug)]
pub struct Net<A> {
    start: Instant,
    now: Instant,
    /// What the network does to the next datagrams; may be changed at any time.
    pub faults: Faults,
    /// In flight: (delivery time, sequence for a stable order) -> datagram.
    wire: BinaryHeap<Reverse<(Instant, u64)>>,
    in_flight: BTreeMap<u64, Datagram<A>>,
    seq: u64,
    rng: StdRng,
    rebound: BTreeMap<A, A>,
    down: BTreeSet<A>,
    sent: Vec<Sent<A>>,
}

impl<A: Copy + Ord + Debug> Net<A> {
    /// A perfect network whose random choices follow `seed`.
    pub fn new(seed: u64) -> Self {
        let start = Instant::now();
        Self {
            start,
            now: start,
            faults: Faults::default(),
            wire: BinaryHeap::new(),
            in_flight: BTreeMap::new(),
            seq: 0,
            rng: StdRng::seed_from_u64(seed),
            rebound: BTreeMap::new(),
            down: BTreeSet::new(),
            sent: Vec::new(),
        }
    }

    /// The same network with these faults.
    pub fn with_faults(mut self, faults: Faults) -> Self {
        self.faults = faults;
        self
    }

    /// The virtual time now.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// The virtual time since the network was made.
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// The instant the network was made: the origin of [`elapsed`](Self::elapsed).
    pub fn start(&self) -> Instant {
        self.start
    }

    /// Moves the clock forward to `t` (never back). Datagrams due before `t` stay queued: they
    /// come out of the next [`step`](Self::step) or [`deliver_due`](Self::deliver_due).
    pub fn advance_to(&mut self, t: Instant) {
        self.now = self.now.max(t);
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&mut self, d: Duration) {
        self.now += d;
    }

    /// Puts a datagram on the wire, now.
    pub fn send(&mut self, from: A, to: A, bytes: Vec<u8>) {
        let lost = self.down.contains(&from)
            || self.down.contains(&to)
            || self.rng.random_bool(self.faults.loss.clamp(0.0, 1.0));
        self.sent.push(Sent {
            at: self.now,
            from,
            to,
            bytes: bytes.clone(),
            delivered: !lost,
        });
        if lost {
            return;
        }
        let copies = if self.rng.random_bool(self.faults.duplicate.clamp(0.0, 1.0)) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let at = self.now + self.faults.latency + self.jitter();
            self.enqueue(at, from, to, bytes.clone());
        }
    }

    /// Puts a datagram on the wire to arrive exactly `after` from now, with none of the
    /// random [`Faults`]: for a test that is itself the fault (a datagram held back past later
    /// ones, a flight replayed, a tampered copy). Nodes that are down and rebinding still
    /// apply.
    pub fn send_after(&mut self, from: A, to: A, bytes: Vec<u8>, after: Duration) {
        let lost = self.down.contains(&from) || self.down.contains(&to);
        self.sent.push(Sent {
            at: self.now,
            from,
            to,
            bytes: bytes.clone(),
            delivered: !lost,
        });
        if !lost {
            self.enqueue(self.now + after, from, to, bytes);
        }
    }

    fn enqueue(&mut self, at: Instant, from: A, to: A, bytes: Vec<u8>) {
        let from = self.rebound.get(&from).copied().unwrap_or(from);
        self.seq += 1;
        self.wire.push(Reverse((at, self.seq)));
        self.in_flight
            .insert(self.seq, Datagram { from, to, bytes });
    }

    fn jitter(&mut self) -> Duration {
        let max = u64::try_from(self.faults.jitter.as_micros()).unwrap_or(u64::MAX);
        if max == 0 {
            Duration::ZERO
        } else {
            Duration::from_micros(self.rng.random_range(0..=max))
        }
    }

    /// When the next datagram arrives, if any is in flight.
    pub fn next_delivery(&self) -> Option<Instant> {
        self.wire.peek().map(|Reverse((at, _))| *at)
    }

    /// A datagram whose delivery time has come, if any (the clock does not move).
    pub fn deliver_due(&mut self) -> Option<Datagram<A>> {
        let Reverse((at, seq)) = *self.wire.peek()?;
        if at > self.now {
            return None;
        }
        self.wire.pop();
        self.in_flight.remove(&seq)
    }

    /// What happens next: the next datagram's arrival, or `deadline` (the earliest timer of the
    /// machines under test) if it comes first or nothing is in flight. Moves the clock there.
    /// `None` when nothing is in flight and there is no deadline: the simulation is quiet.
    pub fn step(&mut self, deadline: Option<Instant>) -> Option<Step<A>> {
        match (self.next_delivery(), deadline) {
            (Some(at), Some(d)) if d < at => {
                self.advance_to(d);
                Some(Step::Timeout)
            }
            (Some(at), _) => {
                self.advance_to(at);
                self.deliver_due().map(Step::Deliver)
            }
            (None, Some(d)) => {
                self.advance_to(d);
                Some(Step::Timeout)
            }
            (None, None) => None,
        }
    }

    /// From now on, datagrams `node` sends arrive from `seen_as` (a NAT rebinding); `node`
    /// still receives at its own address. Rebinding to `node` itself undoes it.
    pub fn rebind(&mut self, node: A, seen_as: A) {
        if node == seen_as {
            self.rebound.remove(&node);
        } else {
            self.rebound.insert(node, seen_as);
        }
    }

    /// Takes `node` off the network (`true`: every datagram to or from it is lost, as for a
    /// sleeping radio) or puts it back.
    pub fn down(&mut self, node: A, down: bool) {
        if down {
            self.down.insert(node);
        } else {
            self.down.remove(&node);
        }
    }

    /// Whether `node` is off the network.
    pub fn is_down(&self, node: A) -> bool {
        self.down.contains(&node)
    }

    /// Every datagram sent so far, oldest first.
    pub fn sent(&self) -> &[Sent<A>] {
        &self.sent
    }

    /// Forgets the log of sent datagrams (a long test's memory).
    pub fn clear_sent(&mut self) {
        self.sent.clear();
    }

    /// Datagrams in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }
}

/// The machines under test as a harness connects them to a [`Net`]; the provided methods
/// are the event loop every harness would otherwise write again.
pub trait Harness {
    /// The machines' address type.
    type Addr: Copy + Ord + Debug;

    /// The network the machines are on.
    fn net(&self) -> &Net<Self::Addr>;

    /// The same, to send on and to move its clock.
    fn net_mut(&mut self) -> &mut Net<Self::Addr>;

    /// The earliest timer of any machine.
    fn next_timer(&self) -> Option<Instant>;

    /// Hands a datagram that arrived to the machine at its destination.
    fn deliver(&mut self, datagram: Datagram<Self::Addr>);

    /// Runs the timers that are due at the network's now.
    fn timeout(&mut self);

    /// Puts every datagram the machines produced on the network and takes their events.
    fn flush(&mut self);

    /// The next moment something happens: a timer or a datagram's arrival.
    fn next_event(&self) -> Option<Instant> {
        let wire = self.net().next_delivery();
        match (self.next_timer(), wire) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Advances to the next moment something happens and processes it. False when quiet.
    fn step(&mut self) -> bool {
        let deadline = self.next_timer();
        match self.net_mut().step(deadline) {
            Some(Step::Deliver(d)) => self.deliver(d),
            Some(Step::Timeout) => self.timeout(),
            None => return false,
        }
        self.flush();
        true
    }

    /// Steps until `done` holds or `limit` of virtual time has passed (the clock is then at
    /// the limit). Returns `done`.
    fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&mut Self) -> bool) -> bool
    where
        Self: Sized,
    {
        let end = self.net().now() + limit;
        loop {
            if done(self) {
                return true;
            }
            match self.next_event() {
                Some(t) if t <= end => {
                    self.step();
                }
                _ => {
                    self.net_mut().advance_to(end);
                    return done(self);
                }
            }
        }
    }

    /// Lets `d` of virtual time pass, running everything that happens in it.
    fn run_for(&mut self, d: Duration)
    where
        Self: Sized,
    {
        self.run_until(d, |_| false);
    }

    /// Steps until nothing is left to do, for at most `limit`; the clock stays at the last
    /// event.
    fn run_idle(&mut self, limit: Duration) {
        let end = self.net().now() + limit;
        while self.next_event().is_some_and(|t| t <= end) {
            self.step();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(net: &mut Net<u8>) -> Vec<(Duration, Datagram<u8>)> {
        let mut out = Vec::new();
        while let Some(step) = net.step(None) {
            if let Step::Deliver(d) = step {
                out.push((net.elapsed(), d));
            }
        }
        out
    }

    /// Two machines: 1 echoes what it gets back to 2; 2 sends `ping` every second.
    struct PingPong {
        net: Net<u8>,
        next_ping: Instant,
        outbox: Vec<(u8, u8, Vec<u8>)>,
        pongs: Vec<Duration>,
    }

    impl Harness for PingPong {
        type Addr = u8;
        fn net(&self) -> &Net<u8> {
            &self.net
        }
        fn net_mut(&mut self) -> &mut Net<u8> {
            &mut self.net
        }
        fn next_timer(&self) -> Option<Instant> {
            Some(self.next_ping)
        }
        fn deliver(&mut self, d: Datagram<u8>) {
            if d.to == 1 {
                self.outbox.push((1, d.from, d.bytes));
            } else {
                self.pongs.push(self.net.elapsed());
            }
        }
        fn timeout(&mut self) {
            if self.next_ping <= self.net.now() {
                self.outbox.push((2, 1, b"ping".to_vec()));
                self.next_ping += Duration::from_secs(1);
            }
        }
        fn flush(&mut self) {
            for (from, to, bytes) in std::mem::take(&mut self.outbox) {
                self.net.send(from, to, bytes);
            }
        }
    }

    #[test]
    fn a_harness_runs_timers_and_round_trips_until_done_or_the_limit() {
        let net = Net::new(1);
        let start = net.now();
        let mut h = PingPong {
            net,
            next_ping: start + Duration::from_secs(1),
            outbox: Vec::new(),
            pongs: Vec::new(),
        };
        assert!(h.run_until(Duration::from_secs(10), |h| h.pongs.len() == 2));
        let ms = Duration::from_millis;
        assert_eq!(h.pongs, [ms(1020), ms(2020)]);
        assert_eq!(h.net.elapsed(), ms(2020), "stops when done");
        assert!(!h.run_until(Duration::from_millis(500), |h| h.pongs.len() == 3));
        assert_eq!(h.net.elapsed(), ms(2520), "or at the limit");
        // Down, nothing comes back; the timers still run.
        h.net.down(1, true);
        h.run_for(Duration::from_secs(3));
        assert_eq!(h.pongs.len(), 2);
        assert_eq!(h.next_ping, start + Duration::from_secs(6));
    }

    #[test]
    fn a_perfect_network_delivers_in_order_after_its_latency() {
        let mut net = Net::new(1);
        net.send(1, 2, b"a".to_vec());
        net.send(1, 2, b"b".to_vec());
        let got = drain(&mut net);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0, Duration::from_millis(10));
        assert_eq!(got[0].1.bytes, b"a");
        assert_eq!(got[1].1.bytes, b"b");
    }

    #[test]
    fn a_deadline_before_the_next_datagram_comes_first() {
        let mut net = Net::new(1);
        net.send(1, 2, b"a".to_vec());
        let soon = net.now() + Duration::from_millis(3);
        assert_eq!(net.step(Some(soon)), Some(Step::Timeout));
        assert_eq!(net.elapsed(), Duration::from_millis(3));
        let later = net.now() + Duration::from_secs(1);
        assert!(matches!(net.step(Some(later)), Some(Step::Deliver(_))));
        assert_eq!(net.elapsed(), Duration::from_millis(10));
        assert_eq!(net.step(None), None);
    }

    #[test]
    fn loss_and_duplication_follow_the_seed() {
        let run = |seed| {
            let mut net = Net::new(seed).with_faults(Faults {
                loss: 0.3,
                duplicate: 0.2,
                ..Faults::default()
            });
            for i in 0..1000u16 {
                net.send(1, 2, i.to_be_bytes().to_vec());
            }
            drain(&mut net)
                .into_iter()
                .map(|(_, d)| d.bytes)
                .collect::<Vec<_>>()
        };
        let a = run(7);
        assert_eq!(a, run(7), "the same seed gives the same run");
        let distinct: BTreeSet<_> = a.iter().collect();
        assert!(
            (600..800).contains(&distinct.len()),
            "about 70% arrive: {}",
            distinct.len()
        );
        assert!(a.len() > distinct.len(), "some arrive twice");
    }

    #[test]
    fn a_scripted_delay_overtakes_and_ignores_the_random_faults() {
        let mut net = Net::new(1).with_faults(Faults {
            loss: 1.0,
            ..Faults::default()
        });
        net.send_after(1, 2, b"late".to_vec(), Duration::from_millis(50));
        net.send_after(1, 2, b"early".to_vec(), Duration::from_millis(1));
        let got = drain(&mut net);
        assert_eq!(
            got.len(),
            2,
            "scripted datagrams are not lost to the random loss"
        );
        assert_eq!(
            got[0],
            (
                Duration::from_millis(1),
                Datagram {
                    from: 1,
                    to: 2,
                    bytes: b"early".to_vec()
                }
            )
        );
        assert_eq!(got[1].0, Duration::from_millis(50));
        net.down(2, true);
        net.send_after(1, 2, b"lost".to_vec(), Duration::ZERO);
        assert!(
            drain(&mut net).is_empty(),
            "a node that is down still hears nothing"
        );
    }

    #[test]
    fn jitter_reorders() {
        let mut net = Net::new(3).with_faults(Faults {
            jitter: Duration::from_millis(50),
            ..Faults::default()
        });
        for i in 0..100u8 {
            net.send(1, 2, vec![i]);
        }
        let order: Vec<u8> = drain(&mut net)
            .into_iter()
            .map(|(_, d)| d.bytes[0])
            .collect();
        assert_eq!(order.len(), 100);
        assert!(order.windows(2).any(|w| w[0] > w[1]));
    }

    #[test]
    fn a_rebound_node_is_seen_from_its_new_address_and_still_receives() {
        let mut net = Net::new(1);
        net.rebind(1, 9);
        net.send(1, 2, b"up".to_vec());
        net.send(2, 1, b"down".to_vec());
        let got = drain(&mut net);
        assert_eq!((got[0].1.from, got[0].1.to), (9, 2));
        assert_eq!((got[1].1.from, got[1].1.to), (2, 1));
        net.rebind(1, 1);
        net.send(1, 2, b"again".to_vec());
        assert_eq!(drain(&mut net)[0].1.from, 1);
    }

    #[test]
    fn a_node_that_is_down_neither_sends_nor_receives() {
        let mut net = Net::new(1);
        net.down(2, true);
        net.send(1, 2, b"lost".to_vec());
        net.send(2, 1, b"lost too".to_vec());
        assert!(drain(&mut net).is_empty());
        assert!(net.sent().iter().all(|s| !s.delivered));
        net.down(2, false);
        net.send(1, 2, b"arrives".to_vec());
        assert_eq!(drain(&mut net).len(), 1);
    }
}
