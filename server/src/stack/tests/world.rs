//! A [`Stack`] and real devices — an LwM2M client behind a DTLS link each — on a simulated
//! network in virtual time: no sockets, no tokio, no sleeps. The test plays the driver: it
//! applies the stack's store writes to a map, keeps its audit notes and device events, and
//! reports commits when it chooses.
use crate::config::Config;
use crate::core::persist::StoreOp;
use crate::core::types::{DeviceEvent, Link};
use crate::core::{CoreConfig, ServerCore};
use crate::metrics::{Metrics, Transport};
use crate::provisioning::audit::AuditKind;
use crate::provisioning::credentials::{tests::psk, Credentials};
use crate::provisioning::secrets::SecretsKey;
use crate::provisioning::security::SharedCredentials;
use crate::stack::{AuditNote, Secure, Stack, StackEvent};
use crate::store::{Store, StoreConfig, Table};
use lwm2m::client::{Client, ClientConfig, ClientEvent, ObjectStore};
use lwm2m::model::Registry;
use lwm2m::net::secure::{LinkEvent, SecureLink};
use netsim::{Datagram, Net, Step};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The server's address.
pub(super) const SERVER: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 100)),
    5684,
);
/// Between two periodic session saves.
pub(super) const SAVE_EVERY: Duration = Duration::from_secs(60);
/// Long enough for a handshake and a few exchanges, short of any CoAP retransmission.
pub(super) const MOMENT: Duration = Duration::from_millis(500);

/// The wall-clock time at the start of every test: fixed, so nothing depends on the day.
fn wall_at_start() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

/// One device: its LwM2M client, its DTLS link, what both reported.
pub(super) struct Device {
    pub(super) addr: SocketAddr,
    pub(super) client: Client<SocketAddr>,
    pub(super) link: SecureLink,
    pub(super) events: Vec<ClientEvent>,
    pub(super) link_events: Vec<LinkEvent>,
}

/// The stack, its devices, the network, and what the stack asked its driver to do.
pub(super) struct World {
    pub(super) net: Net<SocketAddr>,
    pub(super) stack: Stack,
    pub(super) devices: Vec<Device>,
    /// The store as the driver would have written it.
    pub(super) store: BTreeMap<(Table, Vec<u8>), Vec<u8>>,
    /// Every store write, in order.
    pub(super) writes: Vec<StoreOp>,
    pub(super) audit: Vec<AuditNote>,
    pub(super) events: Vec<DeviceEvent>,
    /// Commits the stack asked for and the test has not reported.
    pub(super) commits: Vec<u64>,
    /// Whether commits are reported as soon as asked for (a store that keeps up).
    pub(super) auto_commit: bool,
    pub(super) metrics: Arc<Metrics>,
    pub(super) creds: SharedCredentials,
    pub(super) secrets: Arc<SecretsKey>,
    /// The durable store the credentials live in (and a restart reads).
    pub(super) disk: Option<Store>,
    pub(super) dir: tempfile::TempDir,
}

/// The configuration the stack's parts are built from.
pub(super) fn config() -> Config {
    Config::parse("[mqtt]\nenabled = false\n").unwrap()
}

/// The server core at `now`, with `creds` deciding who must authenticate.
pub(super) fn core(now: Instant, wall: SystemTime, creds: &SharedCredentials) -> ServerCore<Link> {
    let config = CoreConfig {
        rng_seed: 7,
        ..CoreConfig::default()
    };
    let mut core = ServerCore::new(config, Arc::new(Registry::bundled()), (now, wall));
    core.set_security_policy(Arc::new(creds.clone()));
    core
}

/// The DTLS engine (PSK only: no server key).
pub(super) fn engine(seed: u8) -> dtls::Server {
    dtls::Server::new(
        crate::provisioning::security::dtls_config(
            &config(),
            None,
            (Instant::now(), wall_at_start()),
        ),
        [seed; 32],
    )
}

impl World {
    /// A stack with one PSK credential per `(endpoint, identity, key)`.
    pub(super) fn new(credentials: &[(&str, &str, &[u8])]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let disk = Store::open(&dir.path().join("lwm2m.redb"), StoreConfig::default()).unwrap();
        let secrets = Arc::new(SecretsKey::from_bytes([9; 32]));
        let mut index = Credentials::new();
        for (endpoint, identity, key) in credentials {
            index
                .add(&disk, &secrets, psk(endpoint, identity, key))
                .unwrap();
        }
        let creds = SharedCredentials(Arc::new(RwLock::new(index)));
        let net = Net::new(1);
        let now = net.now();
        let metrics = Arc::new(Metrics::default());
        let secure = Secure {
            server: engine(3),
            creds: creds.clone(),
            roots: dtls::pki::Roots::default(),
            secrets: secrets.clone(),
        };
        let stack = Stack::new(
            core(now, wall_at_start(), &creds),
            Some(secure),
            metrics.clone(),
            Some(SAVE_EVERY),
            now,
        );
        Self {
            net,
            stack,
            devices: Vec::new(),
            store: BTreeMap::new(),
            writes: Vec::new(),
            audit: Vec::new(),
            events: Vec::new(),
            commits: Vec::new(),
            auto_commit: true,
            metrics,
            creds,
            secrets,
            disk: Some(disk),
            dir,
        }
    }

    /// The wall-clock time now.
    pub(super) fn wall(&self) -> SystemTime {
        wall_at_start() + self.net.elapsed()
    }

    /// Adds a device named `endpoint` that authenticates with a PSK, and starts it (it
    /// handshakes, then registers). Returns its index.
    pub(super) fn device(&mut self, endpoint: &str, identity: &str, key: &[u8]) -> usize {
        self.device_with(endpoint, identity, key, |_| {})
    }

    /// Like [`device`](Self::device), with `tune` applied to the client's configuration.
    pub(super) fn device_with(
        &mut self,
        endpoint: &str,
        identity: &str,
        key: &[u8],
        tune: impl FnOnce(&mut ClientConfig),
    ) -> usize {
        let n = self.devices.len();
        let addr = SocketAddr::from(([198, 51, 100, 1 + n as u8], 40_000));
        let now = self.net.now();
        let mut config = ClientConfig::new(endpoint);
        config.rng_seed = 100 + n as u64;
        tune(&mut config);
        let mut client = Client::new(config, SERVER, ObjectStore::standard(endpoint));
        client.start(now).unwrap();
        let dtls = dtls::ClientConfig::psk(identity.as_bytes(), key);
        let link = SecureLink::connect(Arc::new(dtls), now, 200 + n as u64, None);
        self.devices.push(Device {
            addr,
            client,
            link,
            events: Vec::new(),
            link_events: Vec::new(),
        });
        n
    }

    /// Moves everything the machines produced at this instant until all are quiet.
    pub(super) fn pump(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(ev) = self.stack.poll_event() {
                progressed = true;
                match ev {
                    StackEvent::Store(op) => self.apply(op),
                    StackEvent::Audit(note) => self.audit.push(note),
                    StackEvent::Device(ev) => {
                        // The MQTT bridge publishes these: an outbox write each.
                        if matches!(
                            ev,
                            DeviceEvent::Registered { .. }
                                | DeviceEvent::Updated { .. }
                                | DeviceEvent::Deregistered { .. }
                                | DeviceEvent::Notification { .. }
                                | DeviceEvent::Send { .. }
                        ) {
                            self.stack.outbox_written();
                        }
                        self.events.push(ev);
                    }
                }
            }
            while let Some((transport, t)) = self.stack.poll_transmit() {
                assert_eq!(transport, Transport::Dtls);
                progressed = true;
                self.net.send(SERVER, t.peer, t.payload);
            }
            while let Some(generation) = self.stack.poll_commit() {
                progressed = true;
                if self.auto_commit {
                    self.stack.handle_committed(self.net.now(), generation);
                } else {
                    self.commits.push(generation);
                }
            }
            for d in &mut self.devices {
                while let Some(t) = d.client.poll_transmit() {
                    d.link.send(t.payload);
                }
                while let Some(bytes) = d.link.poll_transmit() {
                    progressed = true;
                    self.net.send(d.addr, SERVER, bytes);
                }
                d.events
                    .extend(std::iter::from_fn(|| d.client.poll_event()));
                d.link_events
                    .extend(std::iter::from_fn(|| d.link.poll_event()));
            }
            if !progressed {
                return;
            }
        }
    }

    fn apply(&mut self, op: StoreOp) {
        self.writes.push(op.clone());
        op.apply_to(&mut self.store);
    }

    fn deadline(&self) -> Option<Instant> {
        let devices = self
            .devices
            .iter()
            .flat_map(|d| [d.client.poll_timeout(), d.link.poll_timeout()]);
        devices.chain([self.stack.poll_timeout()]).flatten().min()
    }

    fn deliver(&mut self, dg: Datagram<SocketAddr>) {
        let now = self.net.now();
        if dg.to == SERVER {
            self.stack
                .handle_datagram(now, Transport::Dtls, dg.from, &dg.bytes);
            return;
        }
        let Some(d) = self.devices.iter_mut().find(|d| d.addr == dg.to) else {
            return;
        };
        let mut plain = Vec::new();
        d.link.handle_datagram(now, &dg.bytes, &mut plain);
        for p in plain {
            d.client.handle_datagram(now, SERVER, &p);
        }
    }

    /// Runs the world for `d` of virtual time: every datagram and deadline on the way.
    pub(super) fn run_for(&mut self, d: Duration) {
        let end = self.net.now() + d;
        loop {
            self.pump();
            let next = self.deadline().map_or(end, |t| t.min(end));
            match self.net.step(Some(next)) {
                Some(Step::Deliver(dg)) => self.deliver(dg),
                Some(Step::Timeout) | None => {
                    let now = self.net.now();
                    self.stack.handle_timeout(now);
                    for d in &mut self.devices {
                        d.client.handle_timeout(now);
                        d.link.handle_timeout(now);
                    }
                    if now >= end {
                        self.pump();
                        return;
                    }
                }
            }
        }
    }

    /// Runs `f` on device `n`'s client now, then lets the world settle for a [`MOMENT`].
    pub(super) fn with_client(
        &mut self,
        n: usize,
        f: impl FnOnce(&mut Client<SocketAddr>, Instant),
    ) {
        let now = self.net.now();
        f(&mut self.devices[n].client, now);
        self.run_for(MOMENT);
    }

    /// Whether device `n` has reported an event `pick` accepts.
    pub(super) fn saw(&self, n: usize, pick: impl Fn(&ClientEvent) -> bool) -> bool {
        self.devices[n].events.iter().any(pick)
    }

    /// The audit notes of `kind`.
    pub(super) fn audited(&self, kind: AuditKind) -> Vec<&AuditNote> {
        self.audit.iter().filter(|n| n.kind == kind).collect()
    }

    /// The store writes of DTLS sessions so far: (put or delete, connection key).
    pub(super) fn session_writes(&self) -> Vec<(bool, Vec<u8>)> {
        self.writes
            .iter()
            .filter_map(|op| match op {
                StoreOp::Put(Table::Sessions, k, _) => Some((true, k.clone())),
                StoreOp::Delete(Table::Sessions, k) => Some((false, k.clone())),
                _ => None,
            })
            .collect()
    }

    /// Stops the server as a restart does — its sessions saved, every write on disk — and
    /// starts a fresh stack from what the disk holds, with the devices kept as they are.
    pub(super) fn restart(&mut self) {
        self.restart_with(&Default::default());
    }

    /// [`restart`](Self::restart), as a cluster node whose catching up found the credentials
    /// of `stale` changed elsewhere.
    pub(super) fn restart_with(&mut self, stale: &std::collections::HashSet<String>) {
        self.stack.save_sessions();
        self.pump();
        let Some(disk) = self.disk.take() else {
            panic!("no store");
        };
        for ((t, k), v) in &self.store {
            disk.put(*t, k.clone(), v.clone()).unwrap();
        }
        disk.close().unwrap();
        drop(disk);
        let disk =
            Store::open(&self.dir.path().join("lwm2m.redb"), StoreConfig::default()).unwrap();
        let now = self.net.now();
        let schema = Arc::new(Registry::bundled());
        let mut server = engine(4);
        let mut core = core(now, self.wall(), &SharedCredentials::default());
        let restored = crate::restore::restore_state(
            &config(),
            &disk,
            &self.secrets,
            &mut core,
            Some(&mut server),
            stale,
            schema,
            now,
        )
        .unwrap();
        self.creds = SharedCredentials(Arc::new(RwLock::new(restored.credentials)));
        core.set_security_policy(Arc::new(self.creds.clone()));
        self.metrics = Arc::new(Metrics::default());
        let secure = Secure {
            server,
            creds: self.creds.clone(),
            roots: dtls::pki::Roots::default(),
            secrets: self.secrets.clone(),
        };
        self.stack = Stack::new(
            core,
            Some(secure),
            self.metrics.clone(),
            Some(SAVE_EVERY),
            now,
        );
        self.disk = Some(disk);
    }
}
