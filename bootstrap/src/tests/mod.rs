//! Virtual-time tests of the bootstrap core against scripted devices on a [`netsim::Net`]:
//! no sockets, no sleeps. Each device is a real CoAP endpoint with the client role's object
//! store, so a test asserts what a device holds after its sequence, not only what the core
//! reports.
mod admission;
mod device;
mod props;
mod sequences;

use crate::{
    Account, AccountRequest, AccountSecurity, Accounts, BootstrapConfig, BootstrapCore, Event,
    Refusal,
};
use device::Device;
use lwm2m::coap::EndpointConfig;
use lwm2m::model::{Path, Value};
use netsim::{Datagram, Faults, Harness, Net};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The bootstrap server's address.
pub(crate) const SERVER: u8 = 0;

/// The account the test accounts give `endpoint`: its own Short Server ID and PSK.
pub(crate) fn account_for(endpoint: &str) -> Account {
    let ssid = 100 + endpoint.bytes().map(u16::from).sum::<u16>() % 100;
    Account {
        server_uri: format!("coaps://lwm2m.example:5684/{endpoint}"),
        short_server_id: ssid,
        lifetime: 600,
        binding: "U".into(),
        notification_storing: true,
        security: AccountSecurity::Psk {
            identity: endpoint.as_bytes().to_vec(),
            key: endpoint.bytes().rev().collect(),
        },
    }
}

/// The requests the test accounts were asked, as (endpoint, principal).
pub(crate) type Asked = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// Accounts for every endpoint except those starting with `unknown`; every request asked
/// is recorded.
#[derive(Clone, Default)]
pub(crate) struct TestAccounts {
    pub(crate) asked: Asked,
}

impl Accounts for TestAccounts {
    fn account(&mut self, request: &AccountRequest<'_>) -> Result<Account, Refusal> {
        self.asked.lock().unwrap().push((
            request.endpoint.to_string(),
            request.principal.map(str::to_owned),
        ));
        if request.endpoint.starts_with("unknown") {
            return Err(Refusal("no such device".into()));
        }
        Ok(account_for(request.endpoint))
    }
}

/// The core, the devices, and the network between them.
pub(crate) struct World {
    pub(crate) net: Net<u8>,
    pub(crate) core: BootstrapCore<u8>,
    pub(crate) devices: BTreeMap<u8, Device>,
    /// The core's events, with the virtual time they came at.
    pub(crate) events: Vec<(Duration, Event<u8>)>,
    pub(crate) accounts: TestAccounts,
}

/// The configuration the tests start from: a fixed seed.
pub(crate) fn config() -> BootstrapConfig {
    BootstrapConfig {
        coap: EndpointConfig {
            rng_seed: 11,
            ..EndpointConfig::default()
        },
        ..BootstrapConfig::default()
    }
}

impl World {
    pub(crate) fn new(config: BootstrapConfig) -> Self {
        Self::with_net(config, Net::new(5))
    }

    pub(crate) fn with_net(config: BootstrapConfig, net: Net<u8>) -> Self {
        let accounts = TestAccounts::default();
        Self {
            net,
            core: BootstrapCore::new(config, Box::new(accounts.clone())),
            devices: BTreeMap::new(),
            events: Vec::new(),
            accounts,
        }
    }

    /// A world on a lossy network.
    pub(crate) fn lossy(seed: u64, faults: Faults) -> Self {
        Self::with_net(config(), Net::new(seed).with_faults(faults))
    }

    pub(crate) fn now(&self) -> Instant {
        self.net.now()
    }

    pub(crate) fn add(&mut self, addr: u8, device: Device) {
        self.devices.insert(addr, device);
    }

    pub(crate) fn device(&mut self, addr: u8) -> &mut Device {
        self.devices.get_mut(&addr).unwrap()
    }

    /// Device `addr` sends a Bootstrap-Request.
    pub(crate) fn request(&mut self, addr: u8, pct: Option<lwm2m::content::ContentFormat>) {
        let now = self.now();
        self.device(addr).request(now, pct);
        self.flush();
    }

    /// The events about `addr`.
    pub(crate) fn events_of(&self, addr: u8) -> Vec<Event<u8>> {
        self.events
            .iter()
            .filter(|(_, e)| peer_of(e) == addr)
            .map(|(_, e)| e.clone())
            .collect()
    }

    /// Whether `addr`'s sequence has ended (finished or failed).
    pub(crate) fn ended(&self, addr: u8) -> bool {
        self.events_of(addr)
            .last()
            .is_some_and(|e| !matches!(e, Event::Started { .. } | Event::Finishing { .. }))
    }

    /// Runs until `addr`'s sequence ends, for at most ten minutes.
    pub(crate) fn run_to_end(&mut self, addr: u8) {
        assert!(
            self.run_until(Duration::from_secs(600), |w| w.ended(addr)),
            "the sequence of {addr} did not end: {:?}",
            self.events
        );
    }

    /// Datagrams the server sent to `addr` at or after `since` (virtual time).
    pub(crate) fn sent_to_since(&self, addr: u8, since: Duration) -> usize {
        let start = self.net.start();
        self.net
            .sent()
            .iter()
            .filter(|s| s.from == SERVER && s.to == addr && s.at - start >= since)
            .count()
    }

    /// A resource value on device `addr`.
    pub(crate) fn value(&self, addr: u8, path: Path) -> Option<Value> {
        self.devices[&addr].store.value(&path).cloned()
    }

    /// The instance ids of `object` on device `addr`.
    pub(crate) fn instances(&self, addr: u8, object: u16) -> Vec<u16> {
        self.devices[&addr].store.instance_ids(object).collect()
    }
}

pub(crate) fn peer_of(e: &Event<u8>) -> u8 {
    match e {
        Event::Started { peer, .. }
        | Event::Finishing { peer, .. }
        | Event::Finished { peer, .. }
        | Event::Failed { peer, .. } => *peer,
    }
}

impl Harness for World {
    type Addr = u8;

    fn net(&self) -> &Net<u8> {
        &self.net
    }

    fn net_mut(&mut self) -> &mut Net<u8> {
        &mut self.net
    }

    fn next_timer(&self) -> Option<Instant> {
        self.devices
            .values()
            .filter_map(|d| d.ep.poll_timeout())
            .chain(self.core.poll_timeout())
            .min()
    }

    fn deliver(&mut self, d: Datagram<u8>) {
        let now = self.now();
        if d.to == SERVER {
            self.core.handle_datagram(now, d.from, &d.bytes);
        } else if let Some(dev) = self.devices.get_mut(&d.to) {
            dev.ep.handle_datagram(now, d.from, &d.bytes);
            dev.process(now);
        }
    }

    fn timeout(&mut self) {
        let now = self.now();
        self.core.handle_timeout(now);
        for dev in self.devices.values_mut() {
            dev.ep.handle_timeout(now);
            dev.process(now);
        }
    }

    fn flush(&mut self) {
        let elapsed = self.net.elapsed();
        loop {
            while let Some(t) = self.core.poll_transmit() {
                self.net.send(SERVER, t.peer, t.payload);
            }
            let mut finishing = Vec::new();
            while let Some(e) = self.core.poll_event() {
                if let Event::Finishing { endpoint, peer, .. } = &e {
                    finishing.push((endpoint.clone(), *peer));
                }
                self.events.push((elapsed, e));
            }
            if finishing.is_empty() {
                break;
            }
            // The embedder's part: ready for the account, except where it cannot be.
            let now = self.now();
            for (endpoint, peer) in finishing {
                if endpoint.starts_with("uninstallable") {
                    let reason = "the credential could not be installed".to_string();
                    self.core.refuse_finish(now, &endpoint, peer, reason);
                } else {
                    self.core.approve_finish(now, &endpoint, peer);
                }
            }
        }
        for (addr, dev) in &mut self.devices {
            while let Some(t) = dev.ep.poll_transmit() {
                self.net.send(*addr, t.peer, t.payload);
            }
            if dev.silent {
                self.net.down(*addr, true);
            }
        }
    }
}
