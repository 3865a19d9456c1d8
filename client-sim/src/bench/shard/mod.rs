//! One shard: a task that drives a few hundred simulated devices, each a real
//! [`lwm2m::client::Client`] (and, over DTLS, a [`SecureLink`]) on a UDP socket of its own.
//!
//! # Why shards and not a task per device
//! A task per device would work (tokio tasks are cheap), but each would carry its own
//! receive buffer, its own timer in tokio's wheel and its own future; a shard has one receive
//! buffer, one timer over a heap of its devices' deadlines, and one loop that paces starts,
//! behaviours and de-registrations. Readiness stays O(1) per datagram: each socket is polled
//! with a waker of its own that lists the device as ready for its shard (module `wake`), so
//! the shard reads only the sockets that have data.
//!
//! # Behaviours
//! Periodic behaviours (sensor changes, Sends, queue-mode wake-ups, reboots, NAT rebindings)
//! each run once per device per period, spread evenly over the shard's devices, so a fleet
//! produces a steady load rather than bursts on the period's boundary.
//!
//! # Bootstrap
//! In the `bootstrap` scenario a device starts from its factory credentials: module
//! `bootstrapping` runs its bootstrap (a session with the bootstrap server and a
//! `Bootstrapper`), then hands the device to the usual path with the client built from the
//! account it was given. Module `events` accounts for what clients and sessions report.
//!
//! # Bounds
//! Devices per shard, datagrams read per device per turn, timers run per turn, error kinds
//! kept, the time a stop may take. Peer bytes only ever reach the DTLS and LwM2M clients,
//! whose parsers return errors.
mod bootstrapping;
mod events;

use super::live::Live;
use super::objects::SensorKind;
use super::plan::{Cadence, Plan, Setup};
use super::report::{epoch_us, DeviceCounts};
use super::wake::{DeviceWake, ShardWake};
use anyhow::Context as _;
use bootstrapping::Bootstrapping;
use events::{account, on_event, on_link_event};
use lwm2m::client::{Client, ClientError, ClientStats};
use lwm2m::model::Value;
use lwm2m::net::secure::SecureLink;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::{Duration, Instant};
use tokio::io::ReadBuf;
use tokio::net::UdpSocket;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

/// Datagrams read from one socket before the shard turns to others.
const DATAGRAMS_PER_TURN: usize = 16;
/// Device timers run in one turn of a shard before it yields.
const TIMERS_PER_TURN: usize = 1024;
/// Receive buffer of a shard: the largest UDP payload, so nothing is truncated.
const RECV_BUFFER: usize = 65_536;

/// Where a device is in the run, as the simulator accounts for it (the client holds the
/// protocol state).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Not started.
    Idle,
    /// Bootstrapping from factory credentials (the `bootstrap` scenario).
    Bootstrapping,
    /// Register sent, not yet answered 2.01.
    Registering,
    /// Registered.
    Up,
    /// De-register sent.
    Leaving,
    /// De-registered.
    Gone,
}

/// One simulated device.
struct Device {
    /// Its number in the fleet (the `{n}` of its name).
    n: u64,
    name: String,
    client: Client<SocketAddr>,
    /// The LwM2M server: the scenario's, or the one a bootstrap named.
    server: SocketAddr,
    /// While bootstrapping: the attempt, or the wait before the next.
    bootstrapping: Option<Box<Bootstrapping>>,
    /// When the bootstrap that gave the current account began, until it registers.
    bootstrapped_since: Option<Instant>,
    /// Over DTLS: its session with the server, once started.
    link: Option<SecureLink>,
    dtls: Option<Arc<dtls::ClientConfig>>,
    socket: UdpSocket,
    /// Its readiness flag on the shard's ready list, and the same as the socket's waker.
    wake: Arc<DeviceWake>,
    waker: Waker,
    /// The earliest deadline of this device on the shard's timer heap.
    armed: Option<Instant>,
    /// When its current Register (first, or after a reboot) went out.
    registering_since: Option<Instant>,
    /// When its current handshake started.
    handshaking_since: Option<Instant>,
    ever_registered: bool,
    /// It installed new firmware: its next Register is the new firmware's, not the server
    /// having forgotten it.
    firmware_updated: bool,
    ever_connected: bool,
    phase: Phase,
    /// Its slot of the fleet's window while a Register or De-register is outstanding.
    permit: Option<OwnedSemaphorePermit>,
    sensors: Vec<f64>,
    boots: u32,
    /// The client's counters already accounted for.
    seen: ClientStats,
    reboot_due: bool,
}

/// A shard and what it measures.
pub(crate) struct Shard {
    devices: Vec<Device>,
    /// Index in the run of its first device.
    first: u64,
    setup: Arc<Setup>,
    shared: Arc<ShardWake>,
    timers: BinaryHeap<Reverse<(Instant, u32)>>,
    buf: Vec<u8>,
    datagrams: Vec<Vec<u8>>,
    counts: DeviceCounts,
    rng: StdRng,
    live: Arc<Live>,
}

impl Shard {
    /// Binds the sockets of devices `first..first + count` of this run, whose numbers start
    /// at `first_number`. Binding everything first makes a shortage of descriptors or ports
    /// fail the run before a single Register is sent.
    pub(crate) fn new(
        setup: Arc<Setup>,
        first: u64,
        first_number: u64,
        count: usize,
        live: Arc<Live>,
    ) -> anyhow::Result<Self> {
        let shared = Arc::new(ShardWake::default());
        let mut devices = Vec::with_capacity(count);
        for k in 0..count {
            let n = first_number + first + k as u64;
            let name = setup.pattern.name(n);
            let socket = bind(setup.bind_addr(n))?;
            let (wake, waker) = DeviceWake::waker(k as u32, shared.clone());
            devices.push(Device {
                n,
                client: setup.client(&name, n, 0)?,
                server: setup.server,
                bootstrapping: None,
                bootstrapped_since: None,
                dtls: setup.dtls_config(&name, n)?,
                name,
                link: None,
                socket,
                wake,
                waker,
                armed: None,
                registering_since: None,
                handshaking_since: None,
                ever_registered: false,
                firmware_updated: false,
                ever_connected: false,
                phase: Phase::Idle,
                permit: None,
                sensors: setup
                    .sensors
                    .iter()
                    .map(|&o| SensorKind::of(o).start)
                    .collect(),
                boots: 0,
                seen: ClientStats::default(),
                reboot_due: false,
            });
        }
        Ok(Self {
            devices,
            first,
            rng: StdRng::seed_from_u64(setup.seed ^ first),
            setup,
            shared,
            timers: BinaryHeap::new(),
            buf: vec![0; RECV_BUFFER],
            datagrams: Vec::new(),
            counts: DeviceCounts::default(),
            live,
        })
    }

    /// Runs the shard to the end of the plan and its stop.
    pub(crate) async fn run(
        mut self,
        plan: Plan,
        window: Option<Arc<Semaphore>>,
        mut stop: watch::Receiver<bool>,
    ) -> DeviceCounts {
        // Poll each socket once so that its waker is registered with the driver.
        for i in 0..self.devices.len() {
            self.receive(i, Instant::now());
        }
        let n = self.devices.len();
        let mut cadences = [
            Cadence::new(plan.sensor_every),
            Cadence::new(plan.send_every),
            Cadence::new(plan.wake_every),
            Cadence::new(plan.reboot_every),
            Cadence::new(plan.rebind_every),
        ];
        let mut ready = Vec::new();
        let mut next_start = 0usize;
        let mut next_leave = 0usize;
        let mut permit: Option<OwnedSemaphorePermit> = None;
        let mut stopping: Option<Instant> = None;
        let mut stop_open = true;
        loop {
            let now = Instant::now();
            self.shared.take(&mut ready);
            for &i in &ready {
                self.receive(i as usize, now);
            }
            self.run_timers(now);
            if stopping.is_none() && (now >= plan.end || *stop.borrow()) {
                tracing::debug!(shard = self.first, "stopping");
                stopping = Some(now + plan.stop_timeout);
                self.counts.registered_at_stop = self
                    .devices
                    .iter()
                    .filter(|d| d.client.is_registered())
                    .count() as u64;
            }
            // The next thing that wants a slot of the window, and when.
            let mut wants_slot: Option<Instant> = None;
            if let Some(deadline) = stopping {
                if !plan.deregister || now >= deadline || self.all_gone() {
                    break;
                }
                while let Some(d) = self.devices.get(next_leave) {
                    match d.phase {
                        Phase::Up => {}
                        // Not registered yet: stopping cancels the Register (or the
                        // bootstrap), no exchange.
                        Phase::Registering | Phase::Bootstrapping => {
                            self.leave(next_leave, now, None);
                            next_leave += 1;
                            continue;
                        }
                        _ => {
                            next_leave += 1;
                            continue;
                        }
                    }
                    if window.is_some() && permit.is_none() {
                        wants_slot = Some(now);
                        break;
                    }
                    self.leave(next_leave, now, permit.take());
                    next_leave += 1;
                }
            } else {
                while next_start < n {
                    let at = plan.start_at(self.first + next_start as u64);
                    if at > now {
                        wants_slot = Some(at);
                        break;
                    }
                    if window.is_some() && permit.is_none() {
                        wants_slot = Some(now);
                        break;
                    }
                    self.start(next_start, now, permit.take());
                    next_start += 1;
                }
                self.behaviours(now, plan.t0, &mut cadences);
            }
            if self.shared.any_ready() || self.timers_due(now) {
                // More work already: let the driver and the other shards have a turn first.
                tokio::task::yield_now().await;
                continue;
            }
            let behaviour_at = if stopping.is_none() {
                cadences.iter().flatten().map(|c| c.next(plan.t0, n)).min()
            } else {
                None
            };
            let wake_at = [
                self.timers.peek().map(|Reverse((t, _))| *t),
                wants_slot.filter(|t| *t > now),
                stopping.or(Some(plan.end)),
                behaviour_at,
            ]
            .into_iter()
            .flatten()
            .min();
            let want_permit = wants_slot.is_some_and(|t| t <= now) && permit.is_none();
            let sleep_to = wake_at.unwrap_or(now + Duration::from_secs(3600));
            tokio::select! {
                () = self.shared.ready() => {}
                () = tokio::time::sleep_until(sleep_to.into()) => {}
                p = acquire(window.clone()), if want_permit => permit = p,
                r = stop.changed(), if stop_open && stopping.is_none() => {
                    if r.is_err() {
                        stop_open = false;
                    }
                }
            }
        }
        self.finish()
    }

    fn all_gone(&self) -> bool {
        self.devices
            .iter()
            .all(|d| matches!(d.phase, Phase::Idle | Phase::Gone))
    }

    fn timers_due(&self, now: Instant) -> bool {
        self.timers.peek().is_some_and(|Reverse((t, _))| *t <= now)
    }

    /// Starts device `i`: over DTLS the handshake begins and the Register waits for it.
    fn start(&mut self, i: usize, now: Instant, permit: Option<OwnedSemaphorePermit>) {
        let Some(d) = self.devices.get_mut(i) else {
            return;
        };
        d.permit = permit;
        self.counts.started += 1;
        if self.counts.first_sent_us == 0 {
            self.counts.first_sent_us = epoch_us();
        }
        self.boot(i, now);
    }

    /// Powers device `i` on: a bootstrap from its factory credentials (the `bootstrap`
    /// scenario), or a new session (over DTLS) and a Register.
    fn boot(&mut self, i: usize, now: Instant) {
        if self.setup.bootstrap.is_some() {
            self.begin_bootstrap(i, now);
            self.flush(i, now);
        } else {
            self.connect_and_register(i, now);
        }
    }

    /// A new session with device `i`'s LwM2M server (over DTLS) and a Register.
    fn connect_and_register(&mut self, i: usize, now: Instant) {
        let Some(d) = self.devices.get_mut(i) else {
            return;
        };
        d.phase = Phase::Registering;
        d.registering_since = Some(now);
        if let Some(config) = &d.dtls {
            let seed = self.setup.seed ^ d.n.rotate_left(17) ^ u64::from(d.boots);
            d.link = Some(SecureLink::connect(config.clone(), now, seed, None));
            d.handshaking_since = Some(now);
        }
        if let Err(e) = d.client.start(now) {
            self.counts.errors.add(format!("start: {e}"));
        }
        self.flush(i, now);
    }

    /// Reboots device `i`: what it held in RAM is gone (registration, observations,
    /// session), and it comes back from a new source port as a modem does.
    fn reboot(&mut self, i: usize, now: Instant) {
        let setup = self.setup.clone();
        let Some(d) = self.devices.get_mut(i) else {
            return;
        };
        if matches!(d.phase, Phase::Idle | Phase::Leaving | Phase::Gone) {
            return;
        }
        account(&mut self.counts, &self.live, &mut d.seen, d.client.stats());
        d.boots = d.boots.wrapping_add(1);
        match setup.client(&d.name, d.n, d.boots) {
            Ok(c) => d.client = c,
            Err(e) => {
                self.counts.errors.add(format!("reboot: {e:#}"));
                return;
            }
        }
        d.seen = ClientStats::default();
        if d.phase == Phase::Up {
            self.live.registered_now_sub();
        }
        d.link = None;
        d.bootstrapping = None;
        d.bootstrapped_since = None;
        d.server = setup.server;
        d.armed = None;
        d.reboot_due = false;
        self.counts.reboots += 1;
        self.rebind_socket(i, now);
        self.boot(i, now);
    }

    /// A NAT rebinding: device `i`'s traffic now comes from a new source port. Over DTLS
    /// with a Connection ID the session carries on; without one the device resumes its
    /// session (an abbreviated handshake); either way an Update tells the server where the
    /// device is now.
    fn rebind(&mut self, i: usize, now: Instant) {
        let cid = self.setup.cid;
        let Some(d) = self.devices.get(i) else {
            return;
        };
        if d.phase != Phase::Up || !d.client.is_awake() {
            return;
        }
        if !self.rebind_socket(i, now) {
            return;
        }
        self.counts.rebinds += 1;
        let Some(d) = self.devices.get_mut(i) else {
            return;
        };
        if let Some(link) = &mut d.link {
            if !cid {
                link.reconnect(now);
                d.handshaking_since = Some(now);
            }
        }
        if let Err(e) = d.client.update(now) {
            self.counts.errors.add(format!("update: {e}"));
        }
        self.flush(i, now);
    }

    /// Moves device `i` to a new socket on the same address; false if none could be bound.
    fn rebind_socket(&mut self, i: usize, now: Instant) -> bool {
        let Some(d) = self.devices.get_mut(i) else {
            return false;
        };
        match bind(self.setup.bind_addr(d.n)) {
            Ok(s) => {
                d.socket = s;
                // Poll the new socket once so that its waker is registered.
                self.receive(i, now);
                true
            }
            Err(e) => {
                self.counts.errors.add(format!("rebind: {e:#}"));
                false
            }
        }
    }

    /// De-registers device `i` (or stops its registering).
    fn leave(&mut self, i: usize, now: Instant, permit: Option<OwnedSemaphorePermit>) {
        let Some(d) = self.devices.get_mut(i) else {
            return;
        };
        d.permit = permit;
        d.bootstrapping = None;
        // Only a registered device has a De-register to send; one still registering just
        // stops.
        d.phase = if d.phase == Phase::Up {
            Phase::Leaving
        } else {
            Phase::Gone
        };
        if d.client.deregister(now).is_err() {
            d.phase = Phase::Gone;
            d.permit = None;
        }
        self.flush(i, now);
    }

    /// The periodic behaviours due now.
    fn behaviours(&mut self, now: Instant, t0: Instant, cadences: &mut [Option<Cadence>; 5]) {
        let n = self.devices.len().max(1) as u64;
        let [sensor, send, wake, reboot, rebind] = cadences;
        if let Some(c) = sensor {
            for k in c.due(now, t0, n as usize) {
                self.sense((k % n) as usize, now);
            }
        }
        if let Some(c) = send {
            for k in c.due(now, t0, n as usize) {
                self.send((k % n) as usize, now);
            }
        }
        if let Some(c) = wake {
            for k in c.due(now, t0, n as usize) {
                let i = (k % n) as usize;
                if let Some(d) = self.devices.get_mut(i) {
                    if d.phase == Phase::Up && !d.client.is_awake() {
                        d.client.wake(now);
                        self.flush(i, now);
                    }
                }
            }
        }
        if let Some(c) = reboot {
            for k in c.due(now, t0, n as usize) {
                self.reboot((k % n) as usize, now);
            }
        }
        if let Some(c) = rebind {
            for k in c.due(now, t0, n as usize) {
                self.rebind((k % n) as usize, now);
            }
        }
    }

    /// New readings on device `i`'s sensors; observed ones are notified by the client.
    fn sense(&mut self, i: usize, now: Instant) {
        let timestamps = self.setup.timestamps;
        let Some(d) = self.devices.get_mut(i) else {
            return;
        };
        if d.phase != Phase::Up {
            return;
        }
        let setup = &self.setup;
        for ((&object, path), v) in setup
            .sensors
            .iter()
            .zip(&setup.sensor_paths)
            .zip(&mut d.sensors)
        {
            *v = if timestamps {
                epoch_us() as f64
            } else {
                SensorKind::of(object).walk(*v, self.rng.random_range(-1.0..=1.0))
            };
            match d.client.set_value(now, path, Value::Float(*v)) {
                Ok(_) => self.counts.sensor_changes += 1,
                Err(e) => self.counts.errors.add(format!("sensor: {e}")),
            }
        }
        self.flush(i, now);
    }

    /// An LwM2M Send of device `i`'s sensor values.
    fn send(&mut self, i: usize, now: Instant) {
        let Some(d) = self.devices.get_mut(i) else {
            return;
        };
        if d.phase != Phase::Up {
            return;
        }
        match d.client.send_paths(now, &self.setup.sensor_paths) {
            Ok(_) => {
                self.counts.sends += 1;
                self.live.add_send();
            }
            Err(ClientError::Busy) => self.counts.errors.add("send: too many pending"),
            Err(e) => self.counts.errors.add(format!("send: {e}")),
        }
        self.flush(i, now);
    }

    /// Reads what device `i`'s socket holds (a bounded number of datagrams).
    fn receive(&mut self, i: usize, now: Instant) {
        let Some(d) = self.devices.get_mut(i) else {
            return;
        };
        let server = d.server;
        d.wake.clear();
        let mut cx = TaskContext::from_waker(&d.waker);
        let mut got = 0;
        loop {
            if got == DATAGRAMS_PER_TURN {
                // More may be waiting: come back after the others had their turn.
                d.waker.wake_by_ref();
                break;
            }
            let mut rb = ReadBuf::new(&mut self.buf);
            match d.socket.poll_recv_from(&mut cx, &mut rb) {
                Poll::Ready(Ok(peer)) => {
                    got += 1;
                    if let Some(b) = &mut d.bootstrapping {
                        b.handle_datagram(now, peer, rb.filled(), &mut self.datagrams);
                        continue;
                    }
                    match &mut d.link {
                        Some(link) if peer == server => {
                            link.handle_datagram(now, rb.filled(), &mut self.datagrams);
                            for data in self.datagrams.drain(..) {
                                d.client.handle_datagram(now, server, &data);
                            }
                        }
                        // Anyone else's datagram, or any over DTLS before the device
                        // started: dropped as the client would drop a stranger's.
                        Some(_) => {}
                        None if d.dtls.is_some() => {}
                        None => d.client.handle_datagram(now, peer, rb.filled()),
                    }
                }
                Poll::Ready(Err(e)) => {
                    self.counts.errors.add(format!("recv: {}", e.kind()));
                    d.waker.wake_by_ref();
                    break;
                }
                Poll::Pending => break,
            }
        }
        if got > 0 {
            self.flush(i, now);
        }
    }

    /// Runs the device timers that are due, a bounded number per turn.
    fn run_timers(&mut self, now: Instant) {
        for _ in 0..TIMERS_PER_TURN {
            let Some(&Reverse((t, i))) = self.timers.peek() else {
                break;
            };
            if t > now {
                break;
            }
            self.timers.pop();
            let i = i as usize;
            let Some(d) = self.devices.get_mut(i) else {
                continue;
            };
            if d.armed != Some(t) {
                continue; // superseded by an earlier deadline that already ran
            }
            d.armed = None;
            d.client.handle_timeout(now);
            if let Some(link) = &mut d.link {
                link.handle_timeout(now);
            }
            self.bootstrap_timeout(i, now);
            self.flush(i, now);
        }
        // Stale entries pile up only when deadlines keep moving earlier; keep the heap
        // proportional to the shard anyway.
        if self.timers.len() > 4 * self.devices.len() + 64 {
            self.timers = self
                .devices
                .iter()
                .enumerate()
                .filter_map(|(i, d)| d.armed.map(|t| Reverse((t, i as u32))))
                .collect();
        }
    }

    /// Sends what device `i` produced, handles its events and re-arms its timer.
    fn flush(&mut self, i: usize, now: Instant) {
        self.flush_bootstrap(i, now);
        let Some(d) = self.devices.get_mut(i) else {
            return;
        };
        let server = d.server;
        while let Some(t) = d.client.poll_transmit() {
            match &mut d.link {
                Some(link) => link.send(t.payload),
                None => {
                    if let Err(e) = send_to(&d.socket, &t.payload, t.peer) {
                        // Dropped like a lost datagram: CoAP retransmits confirmable ones.
                        self.counts.errors.add(format!("send: {}", e.kind()));
                    }
                }
            }
        }
        if let Some(link) = &mut d.link {
            while let Some(datagram) = link.poll_transmit() {
                if let Err(e) = send_to(&d.socket, &datagram, server) {
                    self.counts.errors.add(format!("send: {}", e.kind()));
                }
            }
        }
        while let Some(ev) = d.link.as_mut().and_then(|l| l.poll_event()) {
            on_link_event(d, &mut self.counts, &self.live, ev, now);
        }
        while let Some(ev) = d.client.poll_event() {
            on_event(d, &mut self.counts, &self.live, ev, now);
        }
        account(&mut self.counts, &self.live, &mut d.seen, d.client.stats());
        let reboot = std::mem::take(&mut d.reboot_due);
        let deadline = [
            d.client.poll_timeout(),
            d.link.as_ref().and_then(|l| l.poll_timeout()),
            d.bootstrapping.as_ref().and_then(|b| b.poll_timeout()),
        ]
        .into_iter()
        .flatten()
        .min();
        if let Some(t) = deadline {
            if d.armed.is_none_or(|a| t < a) {
                d.armed = Some(t);
                self.timers.push(Reverse((t, i as u32)));
            }
        }
        if reboot {
            self.reboot(i, now);
        }
    }

    /// What is left to count at the end.
    fn finish(mut self) -> DeviceCounts {
        for d in &self.devices {
            let s = d.client.stats();
            self.counts
                .errors
                .add_n("dropped_foreign_datagram".into(), s.dropped_foreign);
            self.counts
                .errors
                .add_n("dropped_client_event".into(), s.dropped_events);
            if d.phase != Phase::Idle && !d.ever_registered {
                self.counts.errors.add("never_registered");
            }
            if d.phase == Phase::Leaving {
                self.counts.errors.add("deregister_unfinished");
            }
        }
        self.counts
    }
}

/// Sends a datagram now. tokio's `try_send_to` refuses until the reactor has seen the
/// socket writable once, which a socket bound a moment ago (a reboot, a rebinding) has not;
/// a UDP send never waits for anything but buffer space, so the simulator makes the system
/// call directly on the same descriptor.
fn send_to(socket: &UdpSocket, data: &[u8], to: SocketAddr) -> std::io::Result<usize> {
    socket2::SockRef::from(socket).send_to(data, &to.into())
}

fn bind(addr: SocketAddr) -> anyhow::Result<UdpSocket> {
    let s = std::net::UdpSocket::bind(addr).with_context(|| {
        format!("binding a device socket to {addr} (is `ulimit -n` high enough?)")
    })?;
    s.set_nonblocking(true)?;
    Ok(UdpSocket::from_std(s)?)
}

async fn acquire(window: Option<Arc<Semaphore>>) -> Option<OwnedSemaphorePermit> {
    match window {
        Some(w) => w.acquire_owned().await.ok(),
        None => std::future::pending().await,
    }
}
