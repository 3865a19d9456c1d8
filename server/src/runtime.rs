//! The tokio driver of the [`Stack`]s: `lwm2m::net::machine` runs the LwM2M server's stack on
//! two socket groups (plain CoAP and CoAP over DTLS) and the bootstrap server's, if enabled,
//! on two more; this file only carries out what the stacks ask for —
//! store writes to the group-committing writer, audit notes to the audit log, device events
//! to the MQTT bridge, to callers waiting for a result and to the broadcast channel — and
//! feeds it what the tasks around it bring: commands, admin operations, downlink messages,
//! finished store commits — and installs the credential a bootstrapped device was given in
//! the LwM2M server's index before it reads the next datagram. No protocol logic lives here.
mod admin;
mod bootstrap;
pub(crate) mod firmware;
pub(crate) mod inputs;
pub(crate) mod ownership;
pub(crate) mod replication;

use crate::bootstrap::BootstrapRole;
use crate::bridge::sink::{Bridge, CommandPath};
use crate::bridge::Running;
use crate::cluster::{Cluster, Socket};
use crate::core::persist::StoreOp;
use crate::core::types::{Command, CommandId, DeviceEvent, Link, Outcome};
use crate::core::ServerCore;
use crate::handle::{CancelTarget, ClientInfo, Control};
use crate::metrics::Transport;
use crate::provisioning::secrets::SecretsKey;
use crate::provisioning::security::SharedCredentials;
use crate::stack::{AuditNote, Stack, StackEvent};
use crate::store::Store;
use inputs::{CommitWait, Commits, Input};
use lwm2m::coap::Transmit;
use lwm2m::model::Path;
use lwm2m::net::machine::{Listener, Machine};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{broadcast, oneshot};
use tokio::task::JoinHandle;

/// The socket group of plain CoAP.
pub(crate) const PLAIN: Listener = 0;
/// The socket group of CoAP over DTLS.
pub(crate) const SECURE: Listener = 1;
/// The bootstrap server's plain CoAP socket group.
pub(crate) const BOOTSTRAP_PLAIN: Listener = 2;
/// The bootstrap server's CoAP-over-DTLS socket group.
pub(crate) const BOOTSTRAP_SECURE: Listener = 3;
/// The socket other cluster nodes forward devices' datagrams to.
pub(crate) const INTERNAL: Listener = 4;

/// The server task's state: the stack and the sinks of what it produces.
pub(crate) struct Shell {
    /// Everything protocol: the driver only feeds it and carries out what it asks.
    pub(crate) stack: Stack,
    /// The bootstrap server's stack, if `[bootstrap]` is enabled.
    pub(crate) bootstrap: Option<Stack<BootstrapRole>>,
    /// Credentials installed for bootstraps about to finish, by endpoint: at most one per
    /// sequence in progress, each removed when its sequence ends.
    pub(crate) installed: HashMap<String, bootstrap::Installed>,
    /// Bootstrap sessions to close once the bootstrap stack has sent what it queued: at most
    /// one per sequence that ended since the last send.
    pub(crate) closing: Vec<dtls::ConnId>,
    /// Where the stack's writes go, group-committed by the store's writer thread.
    pub(crate) store: Store,
    /// For the store part of admin operations (credentials are sealed with it).
    pub(crate) secrets: Arc<SecretsKey>,
    /// The credential index the admin operations change (the stack's DTLS lookups read it).
    pub(crate) creds: SharedCredentials,
    /// The bootstrap server's credential index, changed by the `bootstrap-*` admin operations.
    pub(crate) bootstrap_creds: SharedCredentials,
    /// The firmware packages the `fw-*` admin operations change (the core serves them).
    pub(crate) firmware: crate::firmware::FirmwareStore,
    /// Device events for the handles' subscribers.
    pub(crate) events: broadcast::Sender<DeviceEvent>,
    /// Callers of `execute` waiting for their command's result.
    pub(crate) waiters: HashMap<CommandId, oneshot::Sender<Outcome>>,
    /// When the commands not yet answered were submitted, for their latency.
    pub(crate) submitted: Submissions,
    /// The caller of `shutdown`, told once the store is committed.
    pub(crate) done: Option<oneshot::Sender<()>>,
    /// The MQTT bridge, if enabled.
    pub(crate) bridge: Option<Bridge>,
    /// Firmware update campaigns.
    pub(crate) campaigns: crate::firmware::campaigns::Campaigns,
    /// Where started commits go to be awaited (see [`inputs::Inputs`]).
    pub(crate) commits: Commits,
    /// The tasks stopped with the server.
    pub(crate) tasks: Tasks,
    /// This node's part of a cluster, if `[cluster]` is enabled.
    pub(crate) cluster: Option<Cluster>,
    /// The cluster's shared admin log, if `[cluster] store` is set.
    pub(crate) replication: Option<replication::Replication>,
    /// The devices' state shared with the other nodes, if `[cluster] store` is set.
    pub(crate) ownership: Option<ownership::Ownership>,
}

/// Commands timed from submission to result at most (well above the default cap on pending
/// commands; beyond it the oldest are forgotten, and go untimed).
const MAX_TIMED_COMMANDS: usize = 65_536;

/// When the commands not yet answered were submitted, by id. Every path that submits (the
/// handle's `Control::Submit`, MQTT downlinks, firmware campaigns, admin operations) goes
/// through the core, whose ids only grow: the ids it handed out since the last look were
/// submitted during the input being handled, and the first entry is the oldest command.
#[derive(Debug, Default)]
pub(crate) struct Submissions {
    /// The last id looked at; `None` before the first input (commands restored from the
    /// store were submitted by an earlier run, at a time unknown here: they go untimed).
    seen: Option<u64>,
    at: BTreeMap<u64, Instant>,
}

impl Submissions {
    /// The core's ids up to `last` were handed out by `now` (they are
    /// [`ID_STEP`](crate::core::ID_STEP) apart).
    fn catch_up(&mut self, last: CommandId, now: Instant) {
        let Some(seen) = self.seen.replace(last.0) else {
            return;
        };
        let step = crate::core::ID_STEP;
        let mut id = last.0;
        let mut added = 0;
        while id > seen && added < MAX_TIMED_COMMANDS {
            if self.at.len() >= MAX_TIMED_COMMANDS {
                self.at.pop_first();
            }
            self.at.insert(id, now);
            added += 1;
            id = id.saturating_sub(step);
        }
    }

    /// The command `id` got its result: when it was submitted, if known.
    fn finished(&mut self, id: CommandId) -> Option<Instant> {
        self.at.remove(&id.0)
    }

    /// When the oldest command not yet answered was submitted.
    fn oldest(&self) -> Option<Instant> {
        self.at.first_key_value().map(|(_, t)| *t)
    }
}

/// The tasks around the server task, stopped with it.
pub(crate) struct Tasks {
    /// The admin socket's (its connections with it).
    pub(crate) admin: Option<JoinHandle<()>>,
    /// The HTTP API's (its connections with it).
    pub(crate) http: Option<JoinHandle<()>>,
    /// The MQTT link's and the embedded broker's lifetimes.
    pub(crate) mqtt: Option<Running>,
}

/// The core as the bridge's command path, at one instant.
struct CoreAt<'a> {
    core: &'a mut ServerCore<Link>,
    now: Instant,
}

impl CommandPath for CoreAt<'_> {
    fn submit(&mut self, command: Command) -> CommandId {
        self.core.submit(self.now, command)
    }

    fn cancel_observation(&mut self, endpoint: &str, path: Path) -> CommandId {
        self.core.cancel_observation(self.now, endpoint, path)
    }

    fn bootstrap_trigger(
        &mut self,
        endpoint: &str,
        ttl: Option<Duration>,
        timeout: Option<Duration>,
    ) -> CommandId {
        self.core
            .bootstrap_trigger(self.now, endpoint, ttl, timeout)
    }

    fn secure(&self, endpoint: &str) -> Option<bool> {
        secure(self.core, endpoint)
    }
}

/// Whether `endpoint` is registered over DTLS; `None` if it is not registered.
fn secure(core: &ServerCore<Link>, endpoint: &str) -> Option<bool> {
    core.peer_of(endpoint).map(|l| matches!(l, Link::Dtls(_)))
}

impl Machine for Shell {
    type Command = Input;

    fn handle_datagram(&mut self, now: Instant, l: Listener, peer: SocketAddr, data: &[u8]) {
        self.note_submissions(now);
        let (mut peer, mut data, mut l) = (peer, data, l);
        // With a cluster: through which node a device's datagram came (`Some(None)`: directly).
        let mut via = None;
        if let Some(cluster) = self.cluster.as_mut() {
            if l == SECURE {
                if cluster.on_public(peer, data) {
                    return;
                }
                via = Some(None);
            }
            if l == INTERNAL {
                let Some(f) = cluster.on_internal(peer, data) else {
                    return;
                };
                (peer, data, l, via) = (f.peer, f.payload, SECURE, Some(Some(f.node)));
            }
            self.stack.take_authenticated();
        }
        // After a pause, devices' requests and answers for this node (stale ones buffered
        // meanwhile included) wait until it knows which devices are still its own: they are
        // retransmitted. Handshakes go on, and records for other nodes' sessions were passed
        // on above (neither acts on a device here): DTLS records of application data (23) or
        // with a Connection ID (25, RFC 9146) are what is held back.
        let device_data = match l {
            PLAIN => true,
            SECURE => matches!(data.first(), Some(23 | 25)),
            _ => false,
        };
        if device_data && self.ownership.as_mut().is_some_and(|o| o.fenced(now)) {
            return;
        }
        let transport = if l == PLAIN || l == BOOTSTRAP_PLAIN {
            Transport::Udp
        } else {
            Transport::Dtls
        };
        if l == PLAIN || l == SECURE {
            let refusing = self.backpressure();
            self.stack.handle_datagram(now, transport, peer, data);
            if let (Some(via), Some(c)) = (via, self.cluster.as_mut()) {
                if self.stack.take_authenticated() {
                    c.authenticated(peer, via);
                }
            }
            if refusing {
                if let Some(b) = &self.bridge {
                    let stats = self.stack.core().coap().stats();
                    b.note_refused(stats.notifications_refused, stats.sends_refused);
                }
            }
        } else if let Some(bs) = self.bootstrap.as_mut() {
            bs.handle_datagram(now, transport, peer, data);
        }
        self.drain(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.note_submissions(now);
        // After a pause, nothing is sent to devices (retransmissions, queued commands,
        // expiries) until the node knows which are still its own.
        if !self.ownership.as_mut().is_some_and(|o| o.fenced(now)) {
            self.stack.handle_timeout(now);
            self.campaigns_timeout(now);
        }
        if let Some(bs) = self.bootstrap.as_mut() {
            bs.handle_timeout(now);
        }
        self.drain(now);
    }

    fn handle_command(&mut self, now: Instant, input: Input) -> ControlFlow<()> {
        self.note_submissions(now);
        match input {
            Input::Control(Control::Submit(cmd, id_tx, waiter)) => {
                let id = self.stack.core_mut().submit(now, cmd);
                self.answer(id, id_tx, waiter);
            }
            Input::Control(Control::Dispatch(cmd, id_tx, waiter)) => {
                let endpoint = cmd.endpoint.clone();
                let id = self.stack.core_mut().submit(now, cmd);
                // Queued, not refused at once (a full queue, a bad format...).
                let queued = self.stack.core().is_queued(&endpoint, id);
                self.waiters.insert(id, waiter);
                let _ = id_tx.send((id, queued));
            }
            Input::Control(Control::Cancel(endpoint, target, id_tx, waiter)) => {
                let core = self.stack.core_mut();
                let id = match target {
                    CancelTarget::Path(path) => core.cancel_observation(now, &endpoint, path),
                    CancelTarget::Composite(paths) => {
                        core.cancel_composite_observation(now, &endpoint, &paths)
                    }
                };
                self.answer(id, id_tx, waiter);
            }
            Input::Control(Control::Registrations(tx)) => {
                let _ = tx.send(self.stack.core().registrations().cloned().collect());
            }
            Input::Control(Control::Client(endpoint, tx)) => {
                let core = self.stack.core();
                let info = core.client_state(now, &endpoint).map(|state| ClientInfo {
                    state,
                    credential: self
                        .creds
                        .0
                        .read()
                        .ok()
                        .and_then(|c| c.get(&endpoint).map(|d| d.summary())),
                });
                let _ = tx.send(info);
            }
            Input::Control(Control::Clients(q, tx)) => {
                let page =
                    self.stack
                        .core()
                        .clients_page(now, &q.prefix, q.after.as_deref(), q.limit);
                let _ = tx.send(page);
            }
            Input::Control(Control::Admin(req)) | Input::Admin(req) => self.admin(now, req),
            Input::Replicated(r) => self.replicated(now, r),
            Input::Owned(o) => self.owned(now, o),
            Input::Downlink(d) => self.take_downlink(now, d),
            Input::Committed(generation, result) => {
                if let Err(e) = result {
                    tracing::error!(error = %e, "store commit failed; releasing held datagrams");
                }
                // The MQTT link publishes what is committed.
                if let Some(bridge) = &self.bridge {
                    bridge.shared().committed.notify_one();
                }
                // Devices another node took while this commit's writes were on their way:
                // forgotten (their sessions closed) before what waited is released.
                let lost = self
                    .ownership
                    .as_ref()
                    .map(ownership::Ownership::take_lost)
                    .unwrap_or_default();
                for refused in lost {
                    self.owned(now, ownership::Owned::Lost(refused));
                }
                self.stack.handle_committed(now, generation);
            }
            Input::Control(Control::Shutdown(done)) => {
                self.done = Some(done);
                return ControlFlow::Break(());
            }
        }
        self.drain(now);
        ControlFlow::Continue(())
    }

    fn poll_transmit(&mut self) -> Option<(Listener, Transmit<SocketAddr>)> {
        let cluster_socket = |s| match s {
            Socket::Public => SECURE,
            Socket::Internal => INTERNAL,
        };
        if let Some((socket, t)) = self.cluster.as_mut().and_then(Cluster::poll_transmit) {
            return Some((cluster_socket(socket), t));
        }
        if let Some((transport, t)) = self.stack.poll_transmit() {
            return Some(match (transport, self.cluster.as_mut()) {
                (Transport::Udp, _) => (PLAIN, t),
                (Transport::Dtls, None) => (SECURE, t),
                (Transport::Dtls, Some(c)) => {
                    let (socket, t) = c.route(t);
                    (cluster_socket(socket), t)
                }
            });
        }
        let bs = self.bootstrap.as_mut()?;
        loop {
            if let Some((transport, t)) = bs.poll_transmit() {
                let listener = match transport {
                    Transport::Udp => BOOTSTRAP_PLAIN,
                    Transport::Dtls => BOOTSTRAP_SECURE,
                };
                return Some((listener, t));
            }
            // Everything for them has left: their close_notify goes next.
            let conn = self.closing.pop()?;
            bs.close(Instant::now(), conn);
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let bs = self.bootstrap.as_ref().and_then(Stack::poll_timeout);
        let beat = self.ownership.as_ref().map(ownership::Ownership::next_beat);
        [
            self.stack.poll_timeout(),
            bs,
            self.campaigns.poll_timeout(),
            beat,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn flush(&mut self) {
        self.drain(Instant::now());
        while let Some(generation) = self.stack.poll_commit() {
            let mut wait: CommitWait = match self.store.committed() {
                Ok(c) => Box::pin(c),
                Err(e) => Box::pin(std::future::ready(Err(e))),
            };
            if let Some(o) = &self.ownership {
                let shared = o.barrier();
                wait = Box::pin(async move {
                    let committed = wait.await;
                    shared.await;
                    committed
                });
            }
            // The receiving end lives as long as the driver that calls this.
            let _ = self.commits.send((generation, wait));
        }
    }
}

impl Shell {
    /// A downlink message for the bridge, which runs it here.
    fn downlink(&mut self, now: Instant, d: crate::bridge::link::Downlink) {
        self.with_bridge(now, |bridge, path| bridge.on_downlink(d, path));
    }

    /// Runs `f` on the MQTT bridge, if any, with the core as its command path.
    fn with_bridge(&mut self, now: Instant, f: impl FnOnce(&mut Bridge, &mut firmware::ShellPath)) {
        if let Some(bridge) = self.bridge.as_mut() {
            let mut path = firmware::ShellPath {
                core: self.stack.core_mut(),
                campaigns: &mut self.campaigns,
                packages: &self.firmware.shared,
                now,
            };
            f(bridge, &mut path);
        }
    }

    /// Backpressure: while the MQTT outbox is full, devices' notifications and Sends are
    /// left unacknowledged (they retransmit with backoff) rather than taken and then dropped.
    /// Returns whether they are refused now.
    fn backpressure(&mut self) -> bool {
        let full = self.bridge.as_ref().is_some_and(Bridge::outbox_full);
        let was = self.stack.core_mut().refuse_reports(full);
        if full && !was {
            tracing::warn!("MQTT outbox full: notifications and Sends are not acknowledged until it drains (devices retransmit them)");
        } else if was && !full {
            tracing::info!("MQTT outbox has room again: notifications and Sends are taken");
        }
        full
    }

    /// Carries out what the stacks produced: store writes, audit entries, device events. A
    /// finished bootstrap changes the LwM2M server's credentials, whose stack then has
    /// more to hand out: both are drained until neither has anything.
    fn drain(&mut self, now: Instant) {
        loop {
            while let Some(ev) = self.stack.poll_event() {
                match ev {
                    StackEvent::Store(op) => self.write(op),
                    StackEvent::Audit(note) => self.audit(note),
                    StackEvent::Device(ev) => self.device_event(now, ev),
                }
            }
            // The campaigns' commands give the stack more to hand out, and its events give
            // the campaigns more to do: both are drained until neither has anything.
            if self.drain_campaigns(now) {
                continue;
            }
            // A device the shared store cannot be asked about now is served at once, which
            // gives the stack more to hand out.
            if self.claim_misses(now) {
                continue;
            }
            let Some(ev) = self.bootstrap.as_mut().and_then(Stack::poll_event) else {
                break;
            };
            match ev {
                StackEvent::Store(op) => self.write(op),
                StackEvent::Audit(note) => self.audit(note),
                StackEvent::Device(ev) => self.bootstrap_event(now, ev),
            }
        }
        // Whatever wrote the outbox (an event, a downlink refused at once, a shadow), the
        // acknowledgements the stack sends from now on wait for the commit that makes it
        // durable; the hold decides at `poll_transmit`, which comes after this.
        if self.bridge.as_mut().is_some_and(Bridge::take_written) {
            self.stack.outbox_written();
        }
        if let (Some(b), Some(o)) = (self.bridge.as_mut(), self.ownership.as_mut()) {
            o.bridge_writes(b.take_shared());
        }
        // Likewise for the devices' shared state: the commit the datagrams wait for includes
        // Redis having it (see `flush`).
        if self
            .ownership
            .as_mut()
            .is_some_and(ownership::Ownership::take_wrote)
        {
            self.stack.outbox_written();
        }
        self.note_submissions(now);
        self.note_command_queue();
    }

    /// The pending-commands gauges from the core's queues.
    fn note_command_queue(&mut self) {
        let (queued, in_flight) = self.stack.core().commands_pending();
        if queued + in_flight == 0 {
            // Every result is out: whatever is left was never going to get one.
            self.submitted.at.clear();
        }
        let oldest = (queued > 0).then(|| self.submitted.oldest()).flatten();
        self.stack
            .metrics()
            .set_command_queue(queued + in_flight, oldest);
    }

    /// Notes the commands submitted since the last look as submitted at `now`.
    fn note_submissions(&mut self, now: Instant) {
        let last = self.stack.core().last_command_id();
        self.submitted.catch_up(last, now);
    }

    fn write(&mut self, op: StoreOp) {
        if let Some(o) = self.ownership.as_mut() {
            o.write(&op);
        }
        let r = match op {
            StoreOp::Put(t, k, v) => self.store.put(t, k, v),
            StoreOp::Delete(t, k) => self.store.delete(t, k),
            StoreOp::DeletePrefix(t, p) => self.store.delete_prefix(t, p),
        };
        if let Err(e) = r {
            tracing::error!(error = %e, "store write failed");
        }
    }

    fn audit(&self, note: AuditNote) {
        crate::provisioning::audit::record(&self.store, &note.at(SystemTime::now()));
    }

    /// A device event to the callers waiting for it, the MQTT bridge and the subscribers.
    fn device_event(&mut self, now: Instant, ev: DeviceEvent) {
        if let DeviceEvent::CommandResult {
            id,
            outcome,
            operation,
            ..
        } = &ev
        {
            self.note_submissions(now);
            if let Some(at) = self.submitted.finished(*id) {
                let took = now.saturating_duration_since(at);
                self.stack.metrics().command_finished(operation, took);
            }
            // After the metrics: a caller that has its result sees it counted, and no longer
            // pending.
            self.note_command_queue();
            if let Some(w) = self.waiters.remove(id) {
                let _ = w.send(outcome.clone());
            }
        }
        self.campaigns_see(now, &ev);
        self.with_bridge(now, |bridge, path| bridge.on_event(&ev, path));
        // No subscriber is not an error: events are for whoever listens.
        let _ = self.events.send(ev);
    }

    fn answer(
        &mut self,
        id: CommandId,
        id_tx: oneshot::Sender<CommandId>,
        waiter: Option<oneshot::Sender<Outcome>>,
    ) {
        if let Some(w) = waiter {
            self.waiters.insert(id, w);
        }
        let _ = id_tx.send(id);
    }

    /// After the driver stopped: save the DTLS sessions, commit the store, close it, tell
    /// `shutdown`'s caller.
    pub(crate) async fn finish(mut self) -> anyhow::Result<()> {
        // First the admin socket, so a CLI call cannot reach a server that is going away
        // and the socket file is gone when `shutdown` returns.
        for t in [self.tasks.admin.take(), self.tasks.http.take()]
            .into_iter()
            .flatten()
        {
            t.abort();
            let _ = t.await;
        }
        if let Some(mqtt) = self.tasks.mqtt.take() {
            mqtt.stop().await;
        }
        if self.stack.dtls().is_some() {
            let sessions = self.stack.save_sessions();
            self.drain(Instant::now());
            tracing::info!(sessions, "DTLS sessions saved");
        }
        self.store.flush().await?;
        self.store.close()?;
        tracing::info!("server stopped; store flushed");
        if let Some(done) = self.done.take() {
            let _ = done.send(());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `n`th id of node 3.
    fn id(n: u64) -> CommandId {
        CommandId(n * crate::core::ID_STEP + 3)
    }

    #[test]
    fn commands_are_timed_from_the_input_that_submitted_them() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(5);
        let mut s = Submissions::default();
        // Ids handed out before the first input (an earlier run's) are not timed.
        s.catch_up(id(10), t0);
        assert_eq!(s.finished(id(10)), None);
        s.catch_up(id(12), t0);
        s.catch_up(id(13), t1);
        assert_eq!(s.oldest(), Some(t0));
        assert_eq!(s.finished(id(11)), Some(t0));
        assert_eq!(s.finished(id(13)), Some(t1));
        assert_eq!(s.finished(id(13)), None, "once");
        assert_eq!(s.oldest(), Some(t0), "12 still waits");
        s.finished(id(12));
        assert_eq!(s.oldest(), None);
    }

    #[test]
    fn the_submission_times_are_bounded() {
        let now = Instant::now();
        let mut s = Submissions::default();
        s.catch_up(id(0), now);
        s.catch_up(id(3 * MAX_TIMED_COMMANDS as u64), now);
        assert_eq!(s.at.len(), MAX_TIMED_COMMANDS);
        // The newest are kept.
        assert!(s.finished(id(3 * MAX_TIMED_COMMANDS as u64)).is_some());
    }
}
