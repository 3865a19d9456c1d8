//! Registrations another node of a cluster may hold: when devices' state is shared between
//! nodes, a registration interface request (Core §6.2: Register, Update, De-register) or a
//! Send (Core §6.4.4) from an authenticated device this node does not hold is parked, and
//! the core asks its driver, by a [`Miss`], to fetch the device's state from the shared store
//! and take the device over. The driver answers with [`ServerCore::adopt`]: the registration,
//! its observations and its queued commands are installed as a restart would restore them,
//! but bound to the device's current session, and the parked requests are then served as if
//! they had just arrived — so a device that had to handshake again with another node keeps
//! its registration (its Update is answered 2.04, not 4.04) and what was queued for it.
//!
//! The device is told nothing while it waits: a confirmable request left unanswered gets an
//! empty ACK and a separate response (RFC 7252 §5.2.2) from the CoAP endpoint.
//!
//! The other way, [`ServerCore::hand_over`] forgets a device another node took over, without
//! reporting it deregistered (it is not) and without failing its queued commands (the new
//! owner has them).
use super::restore::Record;
use super::{persist, RestoreReport, ServerCore};
use crate::core::persist::StoreOp;
use crate::store::Table;
use lwm2m::coap::{IncomingRequest, Peer};
use lwm2m::ops::Lwm2mError;
use std::collections::{HashMap, VecDeque};
use std::fmt::Display;
use std::str::FromStr;
use std::time::Instant;

/// Requests parked at once, over all devices: each waits for one shared-store round trip,
/// so this is only reached when the store is stalled; beyond it requests are answered 5.03
/// (the device retries later).
pub const MAX_PARKED: usize = 4096;

/// A device this node does not hold sent a request that needs its registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Miss {
    /// The endpoint its DTLS credential is bound to.
    pub endpoint: String,
    /// The location id (`/rd/{id}`) its request names, if any: only that registration may
    /// be taken over for it (a Register or a Send takes over whichever registration there is).
    pub location: Option<String>,
}

/// A device's records as the core stores them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Records {
    /// The registration record.
    pub registration: Vec<u8>,
    /// Observation records by their [`Table::Observations`] key.
    pub observations: Vec<(Vec<u8>, Vec<u8>)>,
    /// Queued command records by their [`Table::Queue`] key, in key order.
    pub queued: Vec<(Vec<u8>, Vec<u8>)>,
}

/// What the shared store gave for a [`Miss`].
#[derive(Debug)]
pub enum Found {
    /// The device's records; this node now owns the device.
    Device(Records),
    /// No registration (or not the one asked for): the requests are served as they are.
    Nothing,
    /// The store could not be asked: a Register is served here alone; the rest are answered
    /// 5.03, so the device tries again rather than register anew.
    Unavailable,
}

/// The parked requests and the misses not yet taken by the driver.
#[derive(Debug)]
pub(super) struct Parking<P> {
    by_endpoint: HashMap<String, Vec<IncomingRequest<P>>>,
    count: usize,
    misses: VecDeque<Miss>,
}

impl<P> Default for Parking<P> {
    fn default() -> Self {
        Self {
            by_endpoint: HashMap::new(),
            count: 0,
            misses: VecDeque::new(),
        }
    }
}

/// Whether a request needs the device's registration, and which: `Some(None)` for any,
/// `Some(Some(id))` for the one at `/rd/{id}`.
fn needs_registration(segments: &[&str]) -> Option<Option<String>> {
    match segments {
        ["rd"] | ["dp"] => Some(None),
        ["rd", id] => Some(Some((*id).to_string())),
        _ => None,
    }
}

impl<P: Peer + Display + FromStr> ServerCore<P> {
    /// Devices' registrations may be held by other nodes: requests of devices this node does
    /// not hold are parked and reported by [`poll_miss`](Self::poll_miss).
    pub fn share_registrations(&mut self) {
        self.parking.get_or_insert_with(Parking::default);
    }

    /// The next device whose state the driver should fetch and answer with
    /// [`adopt`](Self::adopt).
    pub fn poll_miss(&mut self) -> Option<Miss> {
        self.parking.as_mut()?.misses.pop_front()
    }

    /// Parks `req` if it comes from an authenticated device this node does not hold and needs
    /// its registration; gives it back otherwise.
    pub(super) fn park(
        &mut self,
        now: Instant,
        req: IncomingRequest<P>,
        segments: &[&str],
    ) -> Option<IncomingRequest<P>> {
        let Some(parking) = self.parking.as_mut() else {
            return Some(req);
        };
        let Some(location) = needs_registration(segments) else {
            return Some(req);
        };
        let Some(endpoint) = self
            .authenticated
            .get(&req.peer)
            .map(|a| a.principal.clone())
        else {
            return Some(req);
        };
        if self.devices.contains_key(&*endpoint) {
            return Some(req);
        }
        if parking.count >= MAX_PARKED {
            tracing::warn!(endpoint = %endpoint, peer = %req.peer, "too many requests waiting for the shared store: 5.03");
            let _ = self
                .coap
                .respond(now, req.id, Lwm2mError::ServiceUnavailable.to_response());
            return None;
        }
        let waiting = parking.by_endpoint.entry(endpoint.to_string()).or_default();
        if waiting.is_empty() {
            parking.misses.push_back(Miss {
                endpoint: endpoint.to_string(),
                location,
            });
        }
        waiting.push(req);
        parking.count += 1;
        None
    }

    /// The shared store's answer for `endpoint`'s [`Miss`]: its state installed (bound to the
    /// session its requests came from) and the requests it parked served.
    pub fn adopt(&mut self, now: Instant, endpoint: &str, found: Found) -> RestoreReport {
        let Some(parking) = self.parking.as_mut() else {
            return RestoreReport::default();
        };
        let Some(requests) = parking.by_endpoint.remove(endpoint) else {
            return RestoreReport::default();
        };
        parking.count = parking.count.saturating_sub(requests.len());
        let mut report = RestoreReport::default();
        let unavailable = matches!(found, Found::Unavailable);
        if let (Found::Device(records), Some(first)) = (found, requests.first()) {
            if !self.devices.contains_key(endpoint) {
                report = self.install_adopted(now, endpoint, first.peer, records);
                tracing::info!(endpoint, peer = %first.peer, observations = report.observations, queued = report.queued, "registration taken over from the shared store");
            }
        }
        for req in requests {
            let register = req
                .request
                .get_option(lwm2m::coap::CoapOption::UriPath)
                .is_some_and(|p| p.len() == 1);
            if unavailable && !register {
                let _ =
                    self.coap
                        .respond(now, req.id, Lwm2mError::ServiceUnavailable.to_response());
            } else {
                self.serve(now, req);
            }
        }
        self.process(now);
        report
    }

    /// Installs a device's records taken from the shared store. The observations and queued
    /// commands are written to this node's store too (a restart restores them from it).
    fn install_adopted(
        &mut self,
        now: Instant,
        endpoint: &str,
        peer: P,
        records: Records,
    ) -> RestoreReport {
        let Records {
            registration,
            observations,
            queued,
        } = records;
        for (table, records) in [
            (Table::Observations, &observations),
            (Table::Queue, &queued),
        ] {
            for (k, v) in records {
                self.store_ops
                    .push_back(StoreOp::Put(table, k.clone(), v.clone()));
            }
        }
        let keyed = |e: Vec<(Vec<u8>, Vec<u8>)>| -> Vec<Record> {
            e.into_iter().map(|(k, v)| (Some(k), v)).collect()
        };
        self.adopting = Some(peer);
        let report = self.restore_records(
            now,
            vec![(Some(endpoint.as_bytes().to_vec()), registration)],
            keyed(observations),
            keyed(queued),
        );
        self.adopting = None;
        report
    }

    /// Forgets `endpoint`, which another node took over: no event (it is still registered,
    /// there), its queued commands dropped here without a result (the new owner sends them),
    /// its records removed from this node's store. Returns whether it was held.
    pub fn hand_over(&mut self, now: Instant, endpoint: &str) -> bool {
        let Some(dev) = self.detach(now, endpoint) else {
            return false;
        };
        for q in &dev.queue {
            self.drop_queued(q, endpoint);
        }
        self.store_ops.push_back(StoreOp::Delete(
            Table::Registrations,
            endpoint.as_bytes().to_vec(),
        ));
        self.store_ops.push_back(StoreOp::DeletePrefix(
            Table::Observations,
            persist::device_prefix(endpoint),
        ));
        tracing::info!(endpoint, "registration handed over to another node");
        true
    }

    /// Forgets commands `ids` sent to a device another node took just before they left (the
    /// shared store did not record them as sent, so the new owner sends them): no result here,
    /// no retransmission.
    pub fn forget_commands(&mut self, now: Instant, ids: &[super::types::CommandId]) {
        if ids.is_empty() {
            return;
        }
        let requests: Vec<_> = self
            .inflight
            .iter()
            .filter(|(_, f)| ids.contains(&f.id))
            .map(|(r, _)| *r)
            .collect();
        for r in requests {
            if let Some(f) = self.inflight.remove(&r) {
                if let Some(dev) = self.devices.get_mut(&f.endpoint) {
                    dev.inflight = dev.inflight.saturating_sub(1);
                }
            }
            let _ = self.coap.cancel(now, r);
        }
    }

    /// Whether any request waits for the shared store.
    pub fn parked(&self) -> usize {
        self.parking.as_ref().map_or(0, |p| p.count)
    }
}
