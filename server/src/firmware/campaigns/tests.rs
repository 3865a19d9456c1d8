//! Campaigns against the real server core and scripted devices that implement the Firmware
//! Update object (OMA LwM2M TS 1.2 Core E.6) at the CoAP level, on a [`netsim::Net`] in
//! virtual time: each device answers reads, observes, writes and executes of `/5/0/x` and
//! `/3/0/x`, downloads, installs and re-registers as its script says.
use super::*;
use crate::core::persist::MemoryStore;
use crate::core::types::{Command, CommandError, FirmwareOutcome, Outcome};
use crate::core::{CoreConfig, ServerCore};
use crate::firmware::packages::PackageMeta;
use lwm2m::coap::{
    msg, CoapOption, Endpoint, EndpointConfig, Event, MessageClass, ObserverId, Packet,
    RequestOptions, ResponseType,
};
use lwm2m::content::link::parse_registration_links;
use lwm2m::content::ContentFormat;
use lwm2m::model::Registry;
use lwm2m::model::{Node, Resource, Value};
use lwm2m::ops::dm::DownlinkRequest;
use lwm2m::ops::registration::Register;
use netsim::{Datagram, Faults, Harness};
use std::sync::Arc;

const SERVER: u8 = 0;
const PACKAGE_ID: &str = "0123456789abcdef";
const DOWNLOAD: Duration = Duration::from_secs(5);
const INSTALL: Duration = Duration::from_secs(10);

/// What a scripted device does with a package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Script {
    /// Downloads, installs, comes back with the package's version and result 1.
    Good,
    /// Downloads, then finds the package corrupt: State 0, Update Result 5.
    Corrupt,
    /// Starts downloading and never finishes.
    Stuck,
    /// Installs but reports another version.
    OldVersion,
    /// Downloads in `DOWNLOAD * 12`.
    Slow,
    /// Answers its first push only after a while (the server meanwhile sees an
    /// interruption).
    Silent,
}

/// Things a device does later.
#[derive(Debug, Clone, Copy)]
enum Change {
    State(i64),
    Result(i64),
    Reboot,
}

#[derive(Debug)]
struct Fw {
    name: String,
    script: Script,
    state: i64,
    result: i64,
    version: String,
    model: String,
    observers: BTreeMap<u16, ObserverId>,
    later: Vec<(Instant, Change)>,
    /// Package URIs written, in order.
    uris: Vec<String>,
    /// Package lengths pushed.
    pushed: Vec<usize>,
    executes: usize,
    requests: usize,
    /// Registers in queue mode (Transport §6.5).
    queue: bool,
    /// Its registration's location.
    location: String,
}

/// The command path at the world's instant, recording what campaigns submit.
struct Path0<'a> {
    core: &'a mut ServerCore<u8>,
    now: Instant,
    log: &'a mut Vec<Command>,
}

impl CommandPath for Path0<'_> {
    fn submit(&mut self, command: Command) -> CommandId {
        self.log.push(command.clone());
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
        self.core.peer_of(endpoint).map(|_| false)
    }
}

struct World {
    net: netsim::Net<u8>,
    core: ServerCore<u8>,
    campaigns: Campaigns,
    devices: BTreeMap<u8, Endpoint<u8>>,
    fw: BTreeMap<u8, Fw>,
    fw_events: Vec<DeviceEvent>,
    store: MemoryStore,
    submitted: Vec<Command>,
    targets: SharedFirmware,
    /// Most devices of the campaigns in progress at once, seen after every step.
    max_in_progress: usize,
    /// Answers a device gives late: when, who, to which request.
    deferred: Vec<(Instant, u8, lwm2m::coap::IncomingId, Packet)>,
}

fn settings() -> CampaignSettings {
    CampaignSettings::from_config(&FirmwareSection::default())
}

fn package() -> Package {
    let bytes: Arc<[u8]> = Arc::from(vec![7u8; 3000]);
    Package {
        meta: PackageMeta {
            id: PackageId(PACKAGE_ID.into()),
            sha256: [0; 32],
            size: 3000,
            version: "2.0".into(),
            name: "test".into(),
            added_at: SystemTime::UNIX_EPOCH,
        },
        bytes,
    }
}

fn spec(endpoints: &[&str], method: Method, concurrency: usize) -> CampaignSpec {
    CampaignSpec {
        package: PackageId(PACKAGE_ID.into()),
        method,
        targets: Targets::Endpoints(endpoints.iter().map(|s| s.to_string()).collect()),
        concurrency: Some(concurrency),
        require_version: false,
    }
}

fn content(path: &Path, value: Value) -> Packet {
    let mut p = msg::response(ResponseType::Content);
    p.payload = lwm2m::content::encode(
        ContentFormat::Tlv,
        path,
        &Node::Resource(Resource::Single(value)),
    )
    .unwrap();
    msg::set_uint_option(&mut p, CoapOption::ContentFormat, 11542);
    p
}

impl World {
    fn new() -> Self {
        let net = netsim::Net::new(5).with_faults(Faults {
            latency: Duration::from_millis(20),
            ..Faults::default()
        });
        let now = net.now();
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let core = ServerCore::new(
            CoreConfig {
                rng_seed: 5,
                ..CoreConfig::default()
            },
            Arc::new(Registry::bundled()),
            (now, wall),
        );
        let targets = SharedFirmware::default();
        let mut campaigns = Campaigns::new(settings(), (now, wall));
        campaigns.set_targets(targets.clone());
        Self {
            net,
            core,
            campaigns,
            devices: BTreeMap::new(),
            fw: BTreeMap::new(),
            fw_events: Vec::new(),
            store: MemoryStore::new(),
            submitted: Vec::new(),
            targets,
            max_in_progress: 0,
            deferred: Vec::new(),
        }
    }

    fn now(&self) -> Instant {
        self.net.now()
    }

    /// A device at `addr` named `name`, registered, running version 1.0 of model M1.
    fn device(&mut self, addr: u8, name: &str, script: Script) {
        self.devices.insert(
            addr,
            Endpoint::new(EndpointConfig {
                rng_seed: u64::from(addr),
                ..EndpointConfig::default()
            }),
        );
        self.fw.insert(
            addr,
            Fw {
                name: name.into(),
                script,
                state: 0,
                result: 0,
                version: "1.0".into(),
                model: "M1".into(),
                observers: BTreeMap::new(),
                later: Vec::new(),
                uris: Vec::new(),
                pushed: Vec::new(),
                executes: 0,
                requests: 0,
                queue: false,
                location: String::new(),
            },
        );
        self.register(addr);
        self.run(Duration::from_millis(200));
        assert!(self.core.registration(name).is_some(), "{name} registered");
    }

    fn register(&mut self, addr: u8) {
        let name = self.fw[&addr].name.clone();
        let mut r = Register::new(
            &name,
            parse_registration_links(b"</>;rt=\"oma.lwm2m\";ct=11542,</1/0>,</3/0>,</5/0>")
                .unwrap(),
        );
        r.lifetime = 86_400;
        r.queue_mode = self.fw[&addr].queue;
        let now = self.now();
        if let Some(d) = self.devices.get_mut(&addr) {
            d.send_request(now, SERVER, r.to_coap(), RequestOptions::default())
                .unwrap();
        }
    }

    fn start(&mut self, spec: CampaignSpec) -> CampaignId {
        let now = self.now();
        let mut registered = self
            .core
            .registrations()
            .map(|r| r.endpoint.clone())
            .collect::<Vec<_>>()
            .into_iter();
        let mut path = Path0 {
            core: &mut self.core,
            now,
            log: &mut self.submitted,
        };
        let id = self
            .campaigns
            .start(now, spec, package(), &mut registered, &mut path)
            .unwrap();
        self.flush();
        id
    }

    fn cancel(&mut self, id: CampaignId) {
        let now = self.now();
        let mut path = Path0 {
            core: &mut self.core,
            now,
            log: &mut self.submitted,
        };
        self.campaigns.cancel(now, id, &mut path).unwrap();
        self.flush();
    }

    /// Feeds the campaigns an event as if the core had emitted it.
    fn inject(&mut self, ev: DeviceEvent) {
        let now = self.now();
        let mut path = Path0 {
            core: &mut self.core,
            now,
            log: &mut self.submitted,
        };
        self.campaigns.on_event(now, &ev, &mut path);
        self.flush();
    }

    fn device_status(&self, id: CampaignId, ep: &str) -> DeviceStatus {
        self.campaigns
            .status(id)
            .unwrap()
            .devices
            .into_iter()
            .find(|d| d.endpoint == ep)
            .unwrap()
    }

    fn outcome(&self, id: CampaignId, ep: &str) -> Option<String> {
        self.device_status(id, ep).outcome
    }

    fn phases_of(&self, ep: &str) -> Vec<FirmwarePhase> {
        let mut v: Vec<FirmwarePhase> = self
            .fw_events
            .iter()
            .filter_map(|e| match e {
                DeviceEvent::Firmware {
                    endpoint, phase, ..
                } if endpoint == ep => Some(*phase),
                _ => None,
            })
            .collect();
        v.dedup();
        v
    }

    /// Schedules a change on the device.
    fn later(&mut self, addr: u8, after: Duration, change: Change) {
        let at = self.now() + after;
        if let Some(f) = self.fw.get_mut(&addr) {
            f.later.push((at, change));
        }
    }

    /// Applies a change: a new value, notified to its observer, or a reboot into the new
    /// firmware with a new registration.
    fn apply(&mut self, addr: u8, change: Change) {
        let now = self.now();
        let Some(f) = self.fw.get_mut(&addr) else {
            return;
        };
        let (res, value) = match change {
            Change::State(v) => {
                f.state = v;
                (3, v)
            }
            Change::Result(v) => {
                f.result = v;
                (5, v)
            }
            Change::Reboot => {
                f.state = 0;
                f.result = 1;
                f.observers.clear();
                if f.script != Script::OldVersion {
                    f.version = "2.0".into();
                }
                self.register(addr);
                return;
            }
        };
        if let (Some(o), Some(d)) = (f.observers.get(&res).copied(), self.devices.get_mut(&addr)) {
            let p = content(&Path::resource(5, 0, res), Value::Integer(value));
            let _ = d.notify(now, o, p, false);
        }
    }

    /// The device's answer to one request, and what it does next.
    fn answer(&mut self, addr: u8, req: &Packet) -> Packet {
        let path = msg::uri_path(&req.clone());
        let code = req.header.code;
        let f = self.fw.get_mut(&addr).unwrap();
        f.requests += 1;
        let value = |f: &Fw, p: &str| -> Option<Value> {
            Some(match p {
                "/3/0/1" => Value::String(f.model.clone()),
                "/3/0/3" => Value::String(f.version.clone()),
                "/5/0/3" => Value::Integer(f.state),
                "/5/0/5" => Value::Integer(f.result),
                _ => return None,
            })
        };
        let decode = |req: &Packet, p: &Path| -> Option<Value> {
            let cf = msg::uint_option(req, CoapOption::ContentFormat)
                .and_then(|c| ContentFormat::from_code(u16::try_from(c).ok()?))?;
            match lwm2m::content::decode(cf, p, &req.payload, &Registry::bundled()).ok()? {
                Node::Resource(Resource::Single(v)) => Some(v),
                _ => None,
            }
        };
        match (code, path.as_str()) {
            (MessageClass::Request(lwm2m::coap::RequestType::Get), p) => match value(f, p) {
                Some(v) => content(&Path::parse(p).unwrap(), v),
                None => msg::response(ResponseType::NotFound),
            },
            (MessageClass::Request(lwm2m::coap::RequestType::Put), "/5/0/1") => {
                let uri = match decode(req, &Path::resource(5, 0, 1)) {
                    Some(Value::String(s)) => s,
                    _ => return msg::response(ResponseType::BadRequest),
                };
                f.uris.push(uri.clone());
                let script = f.script;
                if uri.is_empty() {
                    f.state = 0;
                    f.result = 0;
                } else {
                    f.result = 0;
                    self.later(addr, Duration::from_millis(100), Change::State(1));
                    match script {
                        Script::Stuck => {}
                        Script::Corrupt => {
                            self.later(addr, DOWNLOAD, Change::State(0));
                            self.later(addr, DOWNLOAD, Change::Result(5));
                        }
                        Script::Slow => self.later(addr, DOWNLOAD * 12, Change::State(2)),
                        _ => self.later(addr, DOWNLOAD, Change::State(2)),
                    }
                }
                msg::response(ResponseType::Changed)
            }
            (MessageClass::Request(lwm2m::coap::RequestType::Put), "/5/0/0") => {
                f.pushed.push(req.payload.len());
                if f.script == Script::Silent {
                    f.script = Script::Good;
                    let mut late = msg::response(ResponseType::ServiceUnavailable);
                    late.payload.clear();
                    return late;
                }
                if !req.payload.is_empty() {
                    f.result = 0;
                    self.later(addr, Duration::from_millis(100), Change::State(2));
                }
                msg::response(ResponseType::Changed)
            }
            (MessageClass::Request(lwm2m::coap::RequestType::Post), "/5/0/2") => {
                f.executes += 1;
                self.later(addr, Duration::from_millis(100), Change::State(3));
                self.later(addr, INSTALL, Change::Reboot);
                msg::response(ResponseType::Changed)
            }
            _ => msg::response(ResponseType::MethodNotAllowed),
        }
    }

    fn in_progress(&self) -> usize {
        self.campaigns
            .phase_counts()
            .iter()
            .filter(|(p, _)| p.in_progress())
            .map(|(_, n)| n)
            .sum()
    }

    fn run(&mut self, d: Duration) {
        self.flush();
        self.run_for(d);
        self.flush();
    }
}

impl Harness for World {
    type Addr = u8;

    fn net(&self) -> &netsim::Net<u8> {
        &self.net
    }

    fn net_mut(&mut self) -> &mut netsim::Net<u8> {
        &mut self.net
    }

    fn next_timer(&self) -> Option<Instant> {
        self.devices
            .values()
            .filter_map(|e| e.poll_timeout())
            .chain(self.core.poll_timeout())
            .chain(self.campaigns.poll_timeout())
            .chain(
                self.fw
                    .values()
                    .flat_map(|f| f.later.iter().map(|(t, _)| *t)),
            )
            .chain(self.deferred.iter().map(|(t, ..)| *t))
            .min()
    }

    fn deliver(&mut self, d: Datagram<u8>) {
        let now = self.now();
        if d.to == SERVER {
            self.core.handle_datagram(now, d.from, &d.bytes);
        } else if let Some(dev) = self.devices.get_mut(&d.to) {
            dev.handle_datagram(now, d.from, &d.bytes);
        }
    }

    fn timeout(&mut self) {
        let now = self.now();
        self.core.handle_timeout(now);
        for d in self.devices.values_mut() {
            d.handle_timeout(now);
        }
        let mut path = Path0 {
            core: &mut self.core,
            now,
            log: &mut self.submitted,
        };
        self.campaigns.handle_timeout(now, &mut path);
        let mut due = Vec::new();
        for (addr, f) in &mut self.fw {
            f.later.retain(|(t, c)| {
                if *t <= now {
                    due.push((*addr, *c));
                    false
                } else {
                    true
                }
            });
        }
        for (addr, c) in due {
            self.apply(addr, c);
        }
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.deferred)
            .into_iter()
            .partition(|(t, ..)| *t <= now);
        self.deferred = later;
        for (_, addr, id, resp) in due {
            if let Some(d) = self.devices.get_mut(&addr) {
                let _ = d.respond(now, id, resp);
            }
        }
    }

    fn flush(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(t) = self.core.poll_transmit() {
                progressed = true;
                self.net.send(SERVER, t.peer, t.payload);
            }
            while let Some(op) = self.core.poll_store() {
                op.apply_to(&mut self.store);
            }
            let now = self.now();
            while let Some(e) = self.core.poll_event() {
                progressed = true;
                let mut path = Path0 {
                    core: &mut self.core,
                    now,
                    log: &mut self.submitted,
                };
                self.campaigns.on_event(now, &e, &mut path);
            }
            while let Some(op) = self.campaigns.poll_store() {
                op.apply_to(&mut self.store);
            }
            while let Some(e) = self.campaigns.poll_event() {
                self.fw_events.push(e);
            }
            self.max_in_progress = self.max_in_progress.max(self.in_progress());
            let addrs: Vec<u8> = self.devices.keys().copied().collect();
            for a in addrs {
                while let Some(t) = self.devices.get_mut(&a).and_then(|d| d.poll_transmit()) {
                    progressed = true;
                    self.net.send(a, SERVER, t.payload);
                }
                while let Some(ev) = self.devices.get_mut(&a).and_then(|d| d.poll_event()) {
                    progressed = true;
                    if let Event::Response { response, .. } = &ev {
                        if response.header.code == MessageClass::Response(ResponseType::Created) {
                            if let Some(f) = self.fw.get_mut(&a) {
                                f.location = msg::location_path(response);
                            }
                        }
                    }
                    if let Event::Request(req) = ev {
                        let resp = self.answer(a, &req.request);
                        if resp.header.code
                            == MessageClass::Response(ResponseType::ServiceUnavailable)
                        {
                            let at = now + Duration::from_secs(20);
                            self.deferred.push((at, a, req.id, resp));
                            continue;
                        }
                        let observe = msg::observe(&req.request) == Some(0);
                        let res = Path::parse(&msg::uri_path(&req.request))
                            .ok()
                            .and_then(|p| p.resource_id());
                        if let Some(d) = self.devices.get_mut(&a) {
                            if let Ok(Some(o)) = d.respond(now, req.id, resp) {
                                if let (true, Some(r), Some(f)) =
                                    (observe, res, self.fw.get_mut(&a))
                                {
                                    f.observers.insert(r, o);
                                }
                            }
                        }
                    }
                }
            }
            while let Some(d) = self.net.deliver_due() {
                progressed = true;
                self.deliver(d);
            }
            if !progressed {
                return;
            }
        }
    }
}

fn outcome_str(o: FirmwareOutcome) -> Option<String> {
    Some(o.as_str().to_string())
}

#[test]
fn pull_update_through_every_phase() {
    let mut w = World::new();
    w.device(1, "dev-1", Script::Good);
    let id = w.start(spec(&["dev-1"], Method::Pull, 1));
    let pkg = PackageId(PACKAGE_ID.into());
    w.run(Duration::from_secs(1));
    assert_eq!(
        w.fw[&1].uris,
        vec![format!("coap://127.0.0.1:5683/fw/{PACKAGE_ID}")]
    );
    assert!(
        w.targets.is_target("dev-1", &pkg),
        "a target while it downloads"
    );
    assert!(w.campaigns.uses(&pkg));
    w.run(DOWNLOAD + INSTALL + Duration::from_secs(5));
    assert_eq!(w.fw[&1].executes, 1);
    assert_eq!(
        w.phases_of("dev-1"),
        vec![
            FirmwarePhase::Downloading,
            FirmwarePhase::Downloaded,
            FirmwarePhase::Updating,
            FirmwarePhase::Done
        ]
    );
    let d = w.device_status(id, "dev-1");
    assert_eq!(d.outcome, outcome_str(FirmwareOutcome::Success));
    assert_eq!(d.version.as_deref(), Some("2.0"));
    assert_eq!(d.warning, None);
    assert!(!w.targets.is_target("dev-1", &pkg));
    let status = w.campaigns.status(id).unwrap();
    assert!(status.finished);
    assert_eq!(status.totals.get("done:success"), Some(&1));
    assert!(!w.campaigns.uses(&pkg));
    // The last event carries the outcome and the version.
    assert!(matches!(
        w.fw_events.last(),
        Some(DeviceEvent::Firmware { outcome: Some(FirmwareOutcome::Success), version: Some(v), .. }) if v == "2.0"
    ));
}

#[test]
fn integrity_failure_is_named() {
    let mut w = World::new();
    w.device(1, "dev-1", Script::Corrupt);
    let id = w.start(spec(&["dev-1"], Method::Pull, 1));
    w.run(DOWNLOAD + Duration::from_secs(2));
    assert_eq!(
        w.outcome(id, "dev-1"),
        outcome_str(FirmwareOutcome::IntegrityFailure)
    );
    assert_eq!(w.device_status(id, "dev-1").result, Some(5));
    assert_eq!(w.fw[&1].executes, 0, "no update of a corrupt package");
}

#[test]
fn version_mismatch_warns_unless_required() {
    for require in [false, true] {
        let mut w = World::new();
        w.device(1, "dev-1", Script::OldVersion);
        let mut s = spec(&["dev-1"], Method::Pull, 1);
        s.require_version = require;
        let id = w.start(s);
        w.run(DOWNLOAD + INSTALL + Duration::from_secs(5));
        let d = w.device_status(id, "dev-1");
        let want = if require {
            FirmwareOutcome::VersionMismatch
        } else {
            FirmwareOutcome::Success
        };
        assert_eq!(d.outcome, outcome_str(want), "require_version {require}");
        assert_eq!(d.version.as_deref(), Some("1.0"));
        assert!(d.warning.unwrap().contains("1.0"));
    }
}

#[test]
fn stuck_device_times_out_and_its_download_is_cancelled() {
    let mut w = World::new();
    w.device(1, "dev-1", Script::Stuck);
    let id = w.start(spec(&["dev-1"], Method::Pull, 1));
    w.run(Duration::from_secs(60));
    assert_eq!(w.outcome(id, "dev-1"), None);
    w.run(settings().download_timeout);
    assert_eq!(
        w.outcome(id, "dev-1"),
        outcome_str(FirmwareOutcome::Timeout)
    );
    // Core E.6: an empty Package URI cancels the download.
    assert_eq!(w.fw[&1].uris.last().map(String::as_str), Some(""));
    assert!(!w.targets.is_target("dev-1", &PackageId(PACKAGE_ID.into())));
}

#[test]
fn push_resumes_after_an_interruption() {
    let mut w = World::new();
    w.device(1, "dev-1", Script::Silent);
    let id = w.start(spec(&["dev-1"], Method::Push, 1));
    w.run(Duration::from_millis(500));
    let first = w
        .submitted
        .iter()
        .find(|c| matches!(&c.request, DownlinkRequest::Write { path, .. } if *path == Path::resource(5, 0, 0)))
        .cloned()
        .unwrap();
    assert_eq!(first.upload.map(|u| u.start_block), Some(0));
    assert_eq!(first.upload.and_then(|u| u.szx), Some(5), "512-byte blocks");
    // The transfer's exchange reports an interruption after the device took 3 blocks.
    let (cmd, _) = w
        .campaigns
        .commands
        .iter()
        .find(|(_, (_, _, s))| *s == Step::Transfer)
        .map(|(k, v)| (*k, v.clone()))
        .unwrap();
    let pushes = w.submitted.len();
    w.inject(DeviceEvent::CommandResult {
        id: cmd,
        endpoint: "dev-1".into(),
        operation: "write",
        observation: None,
        outcome: Err(CommandError::Interrupted {
            next_block: 3,
            szx: 4,
        }),
    });
    let resumed = w.submitted[pushes..]
        .iter()
        .find(|c| matches!(&c.request, DownlinkRequest::Write { path, .. } if *path == Path::resource(5, 0, 0)))
        .cloned()
        .unwrap();
    let up = resumed.upload.unwrap();
    assert_eq!((up.start_block, up.szx), (3, Some(4)));
    // The interrupted exchange holds the device's one exchange at a time (RFC 7252 NSTART)
    // until the device's late answer, which no step awaits any more.
    w.run(Duration::from_secs(60));
    assert_eq!(
        w.outcome(id, "dev-1"),
        outcome_str(FirmwareOutcome::Success)
    );
    assert_eq!(w.fw[&1].pushed.len(), 2);
    assert_eq!(
        w.fw[&1].pushed.last(),
        Some(&3000),
        "the whole package, block-wise"
    );
}

#[test]
fn push_restarts_from_zero_after_other_errors_a_bounded_number_of_times() {
    let mut w = World::new();
    w.device(1, "dev-1", Script::Stuck);
    w.fw.get_mut(&1).unwrap().script = Script::Silent;
    let id = w.start(spec(&["dev-1"], Method::Push, 1));
    w.run(Duration::from_millis(500));
    for round in 0..=device::MAX_PUSH_RESTARTS {
        let (cmd, _) = w
            .campaigns
            .commands
            .iter()
            .find(|(_, (_, _, s))| *s == Step::Transfer)
            .map(|(k, v)| (*k, v.clone()))
            .unwrap();
        let before = w.submitted.len();
        w.inject(DeviceEvent::CommandResult {
            id: cmd,
            endpoint: "dev-1".into(),
            operation: "write",
            observation: None,
            outcome: Err(CommandError::Timeout),
        });
        if round < device::MAX_PUSH_RESTARTS {
            let again = w.submitted[before..]
                .iter()
                .find(|c| matches!(&c.request, DownlinkRequest::Write { .. }))
                .and_then(|c| c.upload)
                .unwrap();
            assert_eq!(again.start_block, 0);
        }
    }
    assert_eq!(
        w.outcome(id, "dev-1"),
        outcome_str(FirmwareOutcome::CommandFailed)
    );
}

#[test]
fn concurrency_is_respected_over_fifty_devices() {
    let mut w = World::new();
    let names: Vec<String> = (1..=50).map(|i| format!("dev-{i}")).collect();
    for (i, n) in names.iter().enumerate() {
        w.device(u8::try_from(i + 1).unwrap(), n, Script::Good);
    }
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let id = w.start(spec(&refs, Method::Pull, 7));
    w.run(Duration::from_secs(600));
    let status = w.campaigns.status(id).unwrap();
    assert!(status.finished, "{:?}", status.totals);
    assert_eq!(status.totals.get("done:success"), Some(&50));
    assert_eq!(w.max_in_progress, 7);
}

#[test]
fn all_with_filters_reads_model_and_version() {
    let mut w = World::new();
    w.device(1, "dev-1", Script::Good);
    w.device(2, "dev-2", Script::Good);
    w.device(3, "dev-3", Script::Good);
    w.fw.get_mut(&2).unwrap().model = "M2".into();
    w.fw.get_mut(&3).unwrap().version = "0.9".into();
    let id = w.start(CampaignSpec {
        targets: Targets::All {
            model: Some("M1".into()),
            from_version: Some("1.0".into()),
        },
        ..spec(&[], Method::Pull, 3)
    });
    w.run(DOWNLOAD + INSTALL + Duration::from_secs(5));
    assert_eq!(
        w.outcome(id, "dev-1"),
        outcome_str(FirmwareOutcome::Success)
    );
    for ep in ["dev-2", "dev-3"] {
        assert_eq!(w.device_status(id, ep).phase, "skipped");
    }
    assert!(w.fw[&2].uris.is_empty() && w.fw[&3].uris.is_empty());
}

#[test]
fn restart_resumes_every_device_in_its_phase() {
    let mut w = World::new();
    w.device(1, "dev-1", Script::Good);
    w.device(2, "dev-2", Script::Slow);
    w.device(3, "dev-3", Script::Good);
    let id = w.start(spec(&["dev-1", "dev-2", "dev-3"], Method::Pull, 2));
    w.run(DOWNLOAD + Duration::from_secs(3));
    let phase = |w: &World, ep| w.device_status(id, ep).phase;
    assert_eq!(phase(&w, "dev-1"), "updating");
    assert_eq!(phase(&w, "dev-2"), "downloading");
    assert_eq!(phase(&w, "dev-3"), "queued");

    // A new server: the campaigns come back from the stored records alone.
    let now = w.now();
    let records: Vec<(Vec<u8>, Vec<u8>)> = w
        .store
        .iter()
        .filter(|((t, _), _)| *t == Table::FirmwareCampaigns)
        .map(|((_, k), v)| (k.clone(), v.clone()))
        .collect();
    let targets = SharedFirmware::default();
    let mut restored = Campaigns::new(
        settings(),
        (
            now,
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_100),
        ),
    );
    restored.set_targets(targets.clone());
    let skipped = restored.restore(now, records, &|p| (p.0 == PACKAGE_ID).then(package));
    assert_eq!(skipped, 0);
    w.campaigns = restored;
    w.targets = targets;
    assert_eq!(phase(&w, "dev-1"), "updating");
    assert_eq!(phase(&w, "dev-2"), "downloading");
    assert_eq!(phase(&w, "dev-3"), "queued");
    assert!(w.targets.is_target("dev-2", &PackageId(PACKAGE_ID.into())));

    w.run(DOWNLOAD * 14 + INSTALL * 2);
    let status = w.campaigns.status(id).unwrap();
    assert!(status.finished, "{status:?}");
    assert_eq!(status.totals.get("done:success"), Some(&3));
    // Nothing was downloaded twice: the restored download went on where it was.
    assert_eq!(w.fw[&2].uris.len(), 1);
    assert_eq!(w.fw[&1].executes, 1);
}

#[test]
fn cancel_stops_downloads_and_waiting_devices() {
    let mut w = World::new();
    w.device(1, "dev-1", Script::Stuck);
    w.device(2, "dev-2", Script::Good);
    w.device(3, "dev-3", Script::Good);
    let id = w.start(spec(&["dev-1", "dev-2", "dev-3"], Method::Pull, 1));
    w.run(Duration::from_secs(2));
    let pkg = PackageId(PACKAGE_ID.into());
    assert!(w.campaigns.uses(&pkg));
    w.cancel(id);
    w.run(Duration::from_secs(2));
    for ep in ["dev-1", "dev-2", "dev-3"] {
        assert_eq!(w.outcome(id, ep), outcome_str(FirmwareOutcome::Cancelled));
    }
    assert_eq!(w.fw[&1].uris.last().map(String::as_str), Some(""));
    assert_eq!(w.fw[&2].requests + w.fw[&3].requests, 0);
    assert!(w.campaigns.status(id).unwrap().finished);
    assert!(!w.campaigns.uses(&pkg));
    assert_eq!(w.in_progress(), 0);
}

#[test]
fn outcome_of_a_failed_update_comes_after_the_reboot() {
    // Update Result 8 after the new registration: the update failed.
    let mut w = World::new();
    w.device(1, "dev-1", Script::Good);
    let id = w.start(spec(&["dev-1"], Method::Pull, 1));
    w.run(DOWNLOAD + Duration::from_secs(1));
    assert_eq!(w.device_status(id, "dev-1").phase, "updating");
    let ep = "dev-1".to_string();
    let result: Outcome = Ok(lwm2m::ops::dm::DmResponse::Content {
        format: ContentFormat::Tlv,
        node: Node::Resource(Resource::Single(Value::Integer(8))),
    });
    let cmd = *w
        .campaigns
        .commands
        .iter()
        .find(|(_, (_, e, _))| *e == ep)
        .map(|(k, _)| k)
        .unwrap_or(&CommandId(u64::MAX));
    // Whatever is in flight, a read of Update Result 8 settles it.
    w.campaigns
        .commands
        .insert(cmd, (id, ep.clone(), Step::ReadResult));
    w.inject(DeviceEvent::CommandResult {
        id: cmd,
        endpoint: ep,
        operation: "read",
        observation: None,
        outcome: result,
    });
    assert_eq!(
        w.outcome(id, "dev-1"),
        outcome_str(FirmwareOutcome::UpdateFailed)
    );
}

#[test]
fn a_sleeping_device_gets_its_update_when_it_wakes() {
    let mut w = World::new();
    w.device(1, "dev-1", Script::Good);
    // Registered again in queue mode, then asleep (its radio off).
    w.fw.get_mut(&1).unwrap().queue = true;
    w.register(1);
    w.run(Duration::from_secs(200));
    assert!(w.core.registration("dev-1").unwrap().queue_mode);
    w.net.down(1, true);
    let id = w.start(spec(&["dev-1"], Method::Pull, 1));
    w.run(Duration::from_secs(600));
    assert!(
        w.fw[&1].uris.is_empty(),
        "nothing reaches a sleeping device"
    );
    assert_eq!(w.device_status(id, "dev-1").phase, "downloading");
    // It wakes and updates its registration: the queued commands go out.
    w.net.down(1, false);
    let loc = w.fw[&1].location.clone();
    let now = w.now();
    let update = lwm2m::ops::registration::Update::default().to_coap(&loc);
    w.devices
        .get_mut(&1)
        .unwrap()
        .send_request(now, SERVER, update, RequestOptions::default())
        .unwrap();
    w.run(DOWNLOAD + INSTALL + Duration::from_secs(10));
    assert_eq!(w.fw[&1].uris.len(), 1);
    assert_eq!(
        w.outcome(id, "dev-1"),
        outcome_str(FirmwareOutcome::Success)
    );
}

#[test]
fn unreadable_records_are_skipped() {
    let w = World::new();
    let now = w.now();
    let mut c = Campaigns::new(settings(), (now, SystemTime::UNIX_EPOCH));
    let id = CampaignId(9);
    let good = serde_json::json!({"spec": {"package": PACKAGE_ID, "method": "pull",
        "targets": {"endpoints": ["a"]}, "concurrency": 1, "require_version": false},
        "version": "2.0", "size": 3, "concurrency": 1, "cancelled": false, "started_ms": 0});
    let mut zero = good.clone();
    zero["concurrency"] = 0.into();
    let records = vec![
        (campaign::campaign_key(id), good.to_string().into_bytes()),
        (
            campaign::campaign_key(CampaignId(10)),
            zero.to_string().into_bytes(),
        ),
        (campaign::campaign_key(CampaignId(11)), b"{".to_vec()),
        (b"c12".to_vec(), b"{}".to_vec()),
        (
            campaign::device_key(id, "a"),
            br#"{"phase":"updating","szx":9,"deadline_ms":5}"#.to_vec(),
        ),
        (
            campaign::device_key(id, "b"),
            br#"{"phase":"flying"}"#.to_vec(),
        ),
        (
            campaign::device_key(id, "c\n"),
            br#"{"phase":"queued"}"#.to_vec(),
        ),
        (
            campaign::device_key(CampaignId(77), "d"),
            br#"{"phase":"queued"}"#.to_vec(),
        ),
        (b"x".to_vec(), vec![0xff]),
    ];
    assert_eq!(c.restore(now, records, &|_| None), 7);
    let s = c.status(id).unwrap();
    assert_eq!(s.devices.len(), 1);
    assert_eq!(s.devices[0].phase, "updating");
    assert_eq!(
        c.poll_timeout(),
        Some(now),
        "the restored device is brought back in step"
    );
}

#[test]
fn a_campaign_needs_targets_a_sane_concurrency_and_its_package() {
    let mut w = World::new();
    w.device(1, "dev-1", Script::Good);
    let now = w.now();
    let mut path = Path0 {
        core: &mut w.core,
        now,
        log: &mut w.submitted,
    };
    let mut start = |s: CampaignSpec, p: Package| {
        w.campaigns
            .start(now, s, p, &mut std::iter::empty(), &mut path)
    };
    assert_eq!(
        start(spec(&[], Method::Pull, 1), package()),
        Err(CampaignError::NoTargets)
    );
    assert_eq!(
        start(spec(&["dev-1"], Method::Pull, 0), package()),
        Err(CampaignError::Concurrency)
    );
    assert!(matches!(
        start(spec(&["bad\nname"], Method::Pull, 1), package()),
        Err(CampaignError::BadEndpoint(_))
    ));
    let mut other = package();
    other.meta.id = PackageId("fedcba9876543210".into());
    assert!(matches!(
        start(spec(&["dev-1"], Method::Pull, 1), other),
        Err(CampaignError::WrongPackage(_))
    ));
    assert!(w.campaigns.list().is_empty());
}
