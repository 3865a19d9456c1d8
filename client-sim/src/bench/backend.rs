//! The backend: an MQTT client standing in for the operator's application, talking to the
//! server through its MQTT bridge in the EMQX LwM2M gateway's JSON (`up/...`, `dn/...`).
//!
//! It observes the configured paths of every device of the run as it registers (after
//! writing the notification attributes, if any), sends commands at a set rate to devices
//! picked at random among those registered, and times every command from its publish to its
//! `up/resp`. Notifications are counted as delivered; when the devices report timestamps
//! (`sensor_values = "timestamp"`), each is timed from the device's change to its arrival
//! here, and one that is not newer than the last of its device counts as a duplicate.
//!
//! It runs on a thread and runtime of its own, so a busy fleet does not delay what it times.
use super::campaign::Campaign;
use super::names::NamePattern;
use super::report::{epoch_us, BackendCounts};
use super::scenario::{BackendSection, Command, FirmwareSection};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use serde_json::{json, Value as Json};
use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Commands (observes included) awaiting their answer at most; beyond it none are sent.
const MAX_PENDING: usize = 1_000_000;
/// Messages the MQTT client queues toward the broker.
const MQTT_QUEUE: usize = 10_000;

/// What a pending request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    WriteAttr,
    Observe,
    Command,
    /// A `firmware-update` request for the endpoint.
    Firmware,
}

struct Pending {
    kind: Kind,
    sent: Instant,
    /// The device, for a firmware request.
    ep: Option<String>,
}

/// Counters the display reads while the backend runs.
#[derive(Debug, Default)]
pub(crate) struct BackendLive {
    pub delivered: AtomicU64,
    pub commands_answered: AtomicU64,
    /// Commands awaiting an answer, so the run can end once they are all in.
    pub pending_commands: AtomicU64,
    /// Set once the subscription to `up/#` is acknowledged.
    pub subscribed: AtomicBool,
}

/// What the backend is told.
pub(crate) struct BackendPlan {
    pub section: BackendSection,
    pub commands: Vec<Command>,
    pub pattern: NamePattern,
    /// The device numbers of this run.
    pub numbers: Range<u64>,
    /// A firmware campaign, and the id of its package.
    pub firmware: Option<(FirmwareSection, String)>,
}

/// Starts the backend on its own thread; it connects at once and runs until `stop` is true
/// and its traffic has gone quiet.
pub(crate) fn spawn(
    plan: BackendPlan,
    live: Arc<BackendLive>,
    stop: watch::Receiver<bool>,
    issuing: watch::Receiver<bool>,
) -> anyhow::Result<std::thread::JoinHandle<anyhow::Result<BackendCounts>>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(std::thread::Builder::new()
        .name("backend".into())
        .spawn(move || rt.block_on(run(plan, live, stop, issuing)))?)
}

struct Backend {
    plan: BackendPlan,
    client: AsyncClient,
    live: Arc<BackendLive>,
    /// The run is stopping: devices are leaving, so a Register that still arrives (sent
    /// just before the stop, its device since stopped) starts no observation that could
    /// never be answered.
    stopping: bool,
    counts: BackendCounts,
    pending: HashMap<u64, Pending>,
    /// Request ids in the order sent: every request has the same timeout, so the oldest
    /// are at the front and a sweep stops at the first one still in time. Ids already
    /// answered are dropped when they reach the front, so it holds at most the ids sent
    /// within one timeout, and no more than [`MAX_PENDING`] (checked before sending).
    sent_order: VecDeque<u64>,
    /// Commands no longer pending, and whether each was answered (or timed out), so that an
    /// answer that comes again (a server that ran the command twice) or late is told apart
    /// from one for another backend. The last [`MAX_PENDING`], oldest first in `done_order`.
    done: HashMap<u64, bool>,
    done_order: VecDeque<u64>,
    /// The `msgId`s of the results seen (the last [`MAX_PENDING`]): the same message again
    /// is the broker or a restarted server delivering it twice (MQTT QoS 1), not the command
    /// run twice.
    results_seen: std::collections::HashSet<String>,
    results_order: VecDeque<String>,
    next_req: u64,
    /// Registered devices of the run, to pick command targets from in O(1).
    registered: Vec<String>,
    index: HashMap<String, usize>,
    /// Last timestamp reported per device (timestamp mode).
    last_value: HashMap<String, u64>,
    rng: StdRng,
    campaign: Option<Campaign>,
}

async fn run(
    plan: BackendPlan,
    live: Arc<BackendLive>,
    mut stop: watch::Receiver<bool>,
    issuing: watch::Receiver<bool>,
) -> anyhow::Result<BackendCounts> {
    let s = &plan.section;
    let mut options = MqttOptions::new(
        format!("lwm2m-client-sim-backend-{}", std::process::id()),
        s.broker.ip().to_string(),
        s.broker.port(),
    );
    options.set_keep_alive(Duration::from_secs(30));
    // A persistent session, as a backend that must not lose telemetry runs: when the broker
    // stalls or restarts, it keeps this subscription and queues what arrives meanwhile, and
    // the backend gets it once it reconnects.
    options.set_clean_start(false);
    options.set_session_expiry_interval(Some(3600));
    options.set_max_packet_size(Some(1 << 20));
    // No Nagle delay: a lone command would otherwise wait for the broker's delayed ACK (40 ms
    // on Linux), and that would be measured as the server's latency.
    let mut network = rumqttc::NetworkOptions::new();
    network.set_tcp_nodelay(true);
    options.set_network_options(network);
    let (client, mut eventloop) = AsyncClient::new(options, MQTT_QUEUE);
    client
        .subscribe(format!("{}/+/up/#", s.prefix), QoS::AtLeastOnce)
        .await?;
    let rate = s.command_rate;
    let timeout = Duration::from_secs(s.command_timeout_secs);
    let mut b = Backend {
        plan,
        client,
        live,
        stopping: false,
        counts: BackendCounts::default(),
        pending: HashMap::new(),
        sent_order: VecDeque::new(),
        done: HashMap::new(),
        done_order: VecDeque::new(),
        results_seen: std::collections::HashSet::new(),
        results_order: VecDeque::new(),
        next_req: 1,
        registered: Vec::new(),
        index: HashMap::new(),
        last_value: HashMap::new(),
        rng: StdRng::from_os_rng(),
        campaign: None,
    };
    // Wait for the subscription before the devices start.
    let subscribed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
    })
    .await;
    match subscribed {
        Ok(Ok(())) => {}
        Ok(Err(e)) => anyhow::bail!("backend: MQTT broker {}: {e}", b.plan.section.broker),
        Err(_) => anyhow::bail!("backend: no SUBACK from {} in 10 s", b.plan.section.broker),
    }
    tracing::debug!(broker = %b.plan.section.broker, "backend subscribed");
    b.live.subscribed.store(true, Relaxed);
    let t0 = Instant::now();
    b.campaign = b
        .plan
        .firmware
        .clone()
        .map(|(section, package)| Campaign::new(section, package, t0));
    let mut issued = 0u64;
    let mut sweep = tokio::time::interval(Duration::from_millis(250));
    let mut quiet_since: Option<Instant> = None;
    let mut last_seen = 0u64;
    loop {
        let now = Instant::now();
        if *stop.borrow() {
            b.stopping = true;
            // Done once nothing has arrived for a second and no command is outstanding,
            // or after ten seconds anyway.
            let seen = b.counts.notifications + b.counts.sends + b.counts.commands_answered;
            let q = *quiet_since.get_or_insert(now);
            if seen != last_seen {
                last_seen = seen;
                quiet_since = Some(now);
            } else if now.duration_since(q) >= Duration::from_secs(1)
                && b.live.pending_commands.load(Relaxed) == 0
                && !b.campaign.as_ref().is_some_and(Campaign::busy)
            {
                break;
            }
            if now.duration_since(q) >= Duration::from_secs(10) {
                break;
            }
        }
        // Commands due by now at `rate` per second, while the run is issuing them.
        let next_command = if rate > 0.0 && *issuing.borrow() {
            let due = (now.duration_since(t0).as_secs_f64() * rate) as u64;
            // Fallen behind (no device registered yet): no burst afterwards.
            issued = issued.max(due.saturating_sub(rate.ceil() as u64));
            while issued < due {
                issued += 1;
                b.command(now);
            }
            Some(t0 + Duration::from_secs_f64((issued + 1) as f64 / rate))
        } else {
            None
        };
        let wake = next_command.unwrap_or(now + Duration::from_secs(3600));
        tokio::select! {
            ev = eventloop.poll() => match ev {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    b.incoming(&String::from_utf8_lossy(&p.topic), &p.payload);
                }
                Ok(_) => {}
                Err(e) => {
                    b.counts.errors.add(format!("backend mqtt: {e}"));
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            },
            () = tokio::time::sleep_until(wake.into()) => {}
            _ = sweep.tick() => {
                b.sweep(now, timeout);
                b.campaign_tick(now);
            }
            r = stop.changed() => if r.is_err() { break },
        }
    }
    // What never came back counts as timed out.
    b.sweep(Instant::now() + timeout + Duration::from_secs(1), timeout);
    let _ = b.client.disconnect().await;
    b.counts.firmware = b.campaign.map(|c| c.counts);
    Ok(b.counts)
}

impl Backend {
    fn topic(&self, ep: &str) -> String {
        format!("{}/{ep}/dn/cmd", self.plan.section.prefix)
    }

    /// Starts the firmware updates due and ends those past their time.
    fn campaign_tick(&mut self, now: Instant) {
        let Some(c) = self.campaign.as_mut() else {
            return;
        };
        c.sweep(now);
        for (ep, data) in c.due(now) {
            self.publish(&ep, Kind::Firmware, "firmware-update", data);
        }
    }

    fn publish(&mut self, ep: &str, kind: Kind, msg_type: &str, data: Json) {
        if self.sent_order.len() >= MAX_PENDING {
            self.counts.errors.add("backend: too many pending commands");
            return;
        }
        let req = self.next_req;
        self.next_req += 1;
        let body = json!({"reqID": req, "msgType": msg_type, "data": data});
        let topic = self.topic(ep);
        match self
            .client
            .try_publish(topic, QoS::AtLeastOnce, false, body.to_string())
        {
            Ok(()) => {
                self.pending.insert(
                    req,
                    Pending {
                        kind,
                        sent: Instant::now(),
                        ep: (kind == Kind::Firmware).then(|| ep.to_owned()),
                    },
                );
                self.sent_order.push_back(req);
                if kind == Kind::Command {
                    self.counts.commands_sent += 1;
                    self.live.pending_commands.fetch_add(1, Relaxed);
                }
            }
            Err(e) => self.counts.errors.add(format!("backend publish: {e}")),
        }
    }

    /// One command to a registered device picked at random.
    fn command(&mut self, _now: Instant) {
        if self.registered.is_empty() || self.plan.commands.is_empty() {
            return;
        }
        let ep = self.registered[self.rng.random_range(0..self.registered.len())].clone();
        let cmd = self.plan.commands[self.rng.random_range(0..self.plan.commands.len())].clone();
        let (msg_type, data) = match cmd {
            Command::Read(p) => ("read", json!({"path": p})),
            Command::Discover(p) => ("discover", json!({"path": p})),
            Command::Write(p, v) => ("write", json!({"path": p, "type": "String", "value": v})),
            Command::Execute(p) => ("execute", json!({"path": p, "args": ""})),
        };
        self.publish(&ep, Kind::Command, msg_type, data);
    }

    /// Observes the configured paths of a device that just registered.
    fn observe(&mut self, ep: &str) {
        let paths = self.plan.section.observe.clone();
        for path in paths {
            if let Some(a) = self.plan.section.attributes.clone() {
                let mut data = serde_json::Map::new();
                data.insert("path".into(), path.clone().into());
                if let Some(v) = a.pmin {
                    data.insert("pmin".into(), v.to_string().into());
                }
                if let Some(v) = a.pmax {
                    data.insert("pmax".into(), v.to_string().into());
                }
                if let Some(v) = a.st {
                    data.insert("st".into(), v.to_string().into());
                }
                self.publish(ep, Kind::WriteAttr, "write-attr", Json::Object(data));
            }
            self.publish(ep, Kind::Observe, "observe", json!({"path": path}));
        }
    }

    fn ours(&self, ep: &str) -> bool {
        self.plan
            .pattern
            .number(ep)
            .is_some_and(|n| self.plan.numbers.contains(&n))
    }

    fn incoming(&mut self, topic: &str, payload: &[u8]) {
        let Some(rest) = topic
            .strip_prefix(self.plan.section.prefix.as_str())
            .and_then(|r| r.strip_prefix('/'))
        else {
            return;
        };
        let Some((ep, what)) = rest.split_once("/up/") else {
            return;
        };
        if !self.ours(ep) {
            return;
        }
        let ep = ep.to_owned();
        let json: Json = serde_json::from_slice(payload).unwrap_or_default();
        match what {
            "register" => {
                self.counts.registrations_seen += 1;
                if !self.index.contains_key(&ep) {
                    self.index.insert(ep.clone(), self.registered.len());
                    self.registered.push(ep.clone());
                }
                if !self.stopping {
                    self.observe(&ep);
                }
                if let Some(c) = self.campaign.as_mut() {
                    c.registered(&ep);
                }
            }
            "deregister" => {
                if let Some(i) = self.index.remove(&ep) {
                    self.registered.swap_remove(i);
                    if let Some(moved) = self.registered.get(i) {
                        self.index.insert(moved.clone(), i);
                    }
                }
            }
            "notify" => self.notification(&ep, &json),
            "send" => self.counts.sends += 1,
            "resp" => self.response(&json),
            "firmware" => {
                if let Some(c) = self.campaign.as_mut() {
                    c.message(&ep, &json, Instant::now());
                }
            }
            _ => {}
        }
    }

    fn notification(&mut self, ep: &str, json: &Json) {
        self.counts.notifications += 1;
        self.live.delivered.fetch_add(1, Relaxed);
        let Some(v) = json["data"]["content"][0]["value"].as_f64() else {
            return;
        };
        // Timestamps are microseconds since the epoch, well past 2020; a random walk's
        // values never are.
        if v < 1.5e15 {
            return;
        }
        let sent = v as u64;
        match self.last_value.get_mut(ep) {
            Some(last) if sent <= *last => {
                self.counts.notification_duplicates += 1;
                return;
            }
            Some(last) => *last = sent,
            None => {
                self.last_value.insert(ep.to_owned(), sent);
            }
        }
        let now = epoch_us();
        self.counts
            .notification_latency
            .record(Duration::from_micros(now.saturating_sub(sent)));
    }

    fn response(&mut self, json: &Json) {
        let Some(req) = json["reqID"].as_u64() else {
            return;
        };
        if let Some(msg_id) = json["msgId"].as_str() {
            if !self.results_seen.insert(msg_id.to_string()) {
                self.counts.results_redelivered += 1;
                return;
            }
            self.results_order.push_back(msg_id.to_string());
            if self.results_order.len() > MAX_PENDING {
                if let Some(old) = self.results_order.pop_front() {
                    self.results_seen.remove(&old);
                }
            }
        }
        let Some(p) = self.pending.remove(&req) else {
            match self.done.get_mut(&req) {
                Some(answered @ true) => {
                    *answered = true;
                    self.counts.command_duplicates += 1;
                }
                Some(answered) => {
                    *answered = true;
                    self.counts.commands_answered_late += 1;
                }
                None => {} // another backend's
            }
            return;
        };
        if p.kind == Kind::Command {
            self.finished(req, true);
        }
        let code = json["data"]["code"].as_str().unwrap_or("");
        let ok = code.starts_with('2');
        let msg_type = json["msgType"].as_str().unwrap_or("?");
        match p.kind {
            Kind::Command => {
                self.live.pending_commands.fetch_sub(1, Relaxed);
                self.counts.command_latency.record(p.sent.elapsed());
                if ok {
                    self.counts.commands_answered += 1;
                    self.live.commands_answered.fetch_add(1, Relaxed);
                } else {
                    self.counts.command_failures += 1;
                    self.counts
                        .errors
                        .add(format!("command {msg_type}: {code}"));
                }
            }
            Kind::Firmware if ok => {}
            Kind::Firmware => {
                self.counts.errors.add(format!("{msg_type}: {code}"));
                if let (Some(c), Some(ep)) = (self.campaign.as_mut(), p.ep.as_deref()) {
                    c.refused(ep, Instant::now(), code);
                }
            }
            Kind::Observe if ok => self.counts.observations += 1,
            Kind::WriteAttr if ok => {}
            Kind::Observe | Kind::WriteAttr => {
                self.counts.errors.add(format!("{msg_type}: {code}"));
            }
        }
    }

    /// Command `req` is no longer pending: answered, or timed out.
    fn finished(&mut self, req: u64, answered: bool) {
        if self.done_order.len() >= MAX_PENDING {
            if let Some(old) = self.done_order.pop_front() {
                self.done.remove(&old);
            }
        }
        self.done.insert(req, answered);
        self.done_order.push_back(req);
    }

    /// Counts what waited longer than `timeout` as timed out.
    fn sweep(&mut self, now: Instant, timeout: Duration) {
        while let Some(&req) = self.sent_order.front() {
            let Some(p) = self.pending.get(&req) else {
                self.sent_order.pop_front(); // answered
                continue;
            };
            if now.saturating_duration_since(p.sent) <= timeout {
                break;
            }
            let kind = p.kind;
            self.sent_order.pop_front();
            self.pending.remove(&req);
            match kind {
                Kind::Command => {
                    self.finished(req, false);
                    self.counts.command_timeouts += 1;
                    self.live.pending_commands.fetch_sub(1, Relaxed);
                }
                Kind::Observe => self.counts.errors.add("observe: no answer"),
                Kind::WriteAttr => self.counts.errors.add("write-attr: no answer"),
                // The outcome comes on `up/firmware`; the campaign times the device out.
                Kind::Firmware => {}
            }
        }
    }
}
