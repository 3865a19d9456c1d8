//! The Registration interface, server side (OMA LwM2M TS 1.2 Core §6.2; Transport §6.2):
//! Register (`POST /rd`), Update (`POST /rd/{location}`), De-register
//! (`DELETE /rd/{location}`), lifetime expiry, and the durable record of each registration.
use super::persist::{self, StoreOp};
use super::types::{DeregisterReason, DeviceEvent, Registration};
use super::{Device, ServerCore};
use crate::store::Table;
use lwm2m::coap::{msg, CoapOption, Packet, Peer, ResponseType};
use lwm2m::content::negotiate::ClientFormats;
use lwm2m::ops::registration::{Register, Update};
use lwm2m::ops::Lwm2mError;
use rand::Rng;
use std::collections::VecDeque;
use std::fmt::Display;
use std::str::FromStr;
use std::time::{Duration, Instant};

/// Location ids carry 64 random bits, so a device cannot guess another's registration.
fn location_id<R: Rng>(rng: &mut R) -> String {
    format!("{:016x}", rng.random::<u64>())
}

impl<P: Peer + Display + FromStr> ServerCore<P> {
    pub(super) fn register(
        &mut self,
        now: Instant,
        peer: P,
        packet: &Packet,
    ) -> Result<(Packet, String), Lwm2mError> {
        let r = Register::from_coap(packet)?;
        self.authorize(&peer, &r.endpoint)?;
        if self.devices.len() >= self.config.max_registrations
            && !self.devices.contains_key(&r.endpoint)
        {
            return Err(Lwm2mError::ServiceUnavailable);
        }
        // Commands queued for the old registration carry over: they are for the device.
        let previous = self.remove_device(now, &r.endpoint, DeregisterReason::Replaced);
        let replaced = previous.is_some();
        let queue = previous.map(|d| d.queue).unwrap_or_default();
        let id = location_id(&mut self.rng);
        let wall = self.wall(now);
        let reg = Registration {
            endpoint: r.endpoint.clone(),
            location: format!("/rd/{id}"),
            address: self.address_of(&peer),
            lifetime: r.lifetime,
            version: r.version,
            binding: r.binding,
            queue_mode: r.queue_mode,
            sms: r.sms,
            links: r.links,
            registered_at: wall,
            updated_at: wall,
        };
        tracing::info!(endpoint = %reg.endpoint, peer = %peer, lifetime = reg.lifetime, queue = reg.queue_mode, "registered");
        self.insert_device(now, reg.clone(), peer, queue);
        self.events.push_back(DeviceEvent::Registered {
            registration: reg,
            replaced,
        });
        let mut resp = msg::response(ResponseType::Created);
        resp.add_option(CoapOption::LocationPath, b"rd".to_vec());
        resp.add_option(CoapOption::LocationPath, id.into_bytes());
        Ok((resp, r.endpoint))
    }

    pub(super) fn insert_device(
        &mut self,
        now: Instant,
        reg: Registration,
        peer: P,
        queue: VecDeque<super::commands::Queued>,
    ) {
        let expires = lwm2m::time::deadline(
            self.instant_of(reg.expires_at(), now),
            self.config.registration_grace,
        );
        let endpoint = reg.endpoint.clone();
        if let Some(id) = reg.location.strip_prefix("/rd/") {
            self.locations.insert(id.to_string(), endpoint.clone());
        }
        self.persist_registration(&reg, &peer);
        self.expiry.insert((expires, endpoint.clone()));
        self.by_peer.insert(peer, endpoint.clone());
        let formats = ClientFormats::new(reg.version, &reg.links.content_formats);
        self.devices.insert(
            endpoint,
            Box::new(Device {
                reg,
                peer,
                formats,
                expires,
                awake_until: None,
                queue,
                observations: Vec::new(),
                inflight: 0,
            }),
        );
    }

    fn persist_registration(&mut self, reg: &Registration, peer: &P) {
        let value = persist::encode_registration(reg, &peer.to_string());
        self.store_ops.push_back(StoreOp::Put(
            Table::Registrations,
            reg.endpoint.as_bytes().to_vec(),
            value,
        ));
    }

    pub(super) fn update(
        &mut self,
        now: Instant,
        peer: P,
        id: &str,
        packet: &Packet,
    ) -> Result<(Packet, String), Lwm2mError> {
        let endpoint = self
            .locations
            .get(id)
            .cloned()
            .ok_or(Lwm2mError::NotFound)?;
        self.authorize(&peer, &endpoint)?;
        let u = Update::from_coap(packet)?;
        let address = self.address_of(&peer);
        let wall = self.wall(now);
        let grace = self.config.registration_grace;
        let Some(dev) = self.devices.get_mut(&endpoint) else {
            return Err(Lwm2mError::NotFound);
        };
        if let Some(lt) = u.lifetime {
            dev.reg.lifetime = lt;
        }
        if let Some((binding, queue)) = u.binding {
            dev.reg.binding = binding;
            if queue {
                dev.reg.queue_mode = true;
            }
        }
        if let Some(sms) = u.sms {
            dev.reg.sms = Some(sms);
        }
        if let Some(links) = u.links {
            dev.formats = ClientFormats::new(dev.reg.version, &links.content_formats);
            dev.reg.links = links;
        }
        // A device behind NAT may come back from a new address (Transport §6.2.2).
        let old_peer = std::mem::replace(&mut dev.peer, peer);
        dev.reg.address = address;
        dev.reg.updated_at = wall;
        let old_expiry = dev.expires;
        dev.expires = lwm2m::time::deadline(
            now,
            Duration::from_secs(u64::from(dev.reg.lifetime)).saturating_add(grace),
        );
        self.expiry.remove(&(old_expiry, endpoint.clone()));
        self.expiry.insert((dev.expires, endpoint.clone()));
        let reg = dev.reg.clone();
        if old_peer != peer {
            if self.by_peer.get(&old_peer) == Some(&endpoint) {
                self.by_peer.remove(&old_peer);
            }
            self.by_peer.insert(peer, endpoint.clone());
        }
        tracing::debug!(endpoint = %endpoint, peer = %peer, "registration updated");
        self.persist_registration(&reg, &peer);
        self.events
            .push_back(DeviceEvent::Updated { registration: reg });
        Ok((msg::response(ResponseType::Changed), endpoint))
    }

    pub(super) fn deregister(
        &mut self,
        now: Instant,
        peer: P,
        id: &str,
    ) -> Result<(Packet, String), Lwm2mError> {
        let endpoint = self
            .locations
            .get(id)
            .cloned()
            .ok_or(Lwm2mError::NotFound)?;
        self.authorize(&peer, &endpoint)?;
        tracing::info!(endpoint = %endpoint, "deregistered");
        self.remove_device(now, &endpoint, DeregisterReason::Requested);
        // Nothing to drain for a device that just left; `heard_from` finds no device.
        Ok((msg::response(ResponseType::Deleted), endpoint))
    }

    /// Removes a device and everything attached to it, and reports it.
    pub(super) fn remove_device(
        &mut self,
        now: Instant,
        endpoint: &str,
        reason: DeregisterReason,
    ) -> Option<Device<P>> {
        let mut dev = self.detach(now, endpoint)?;
        if reason != DeregisterReason::Replaced {
            self.store_ops.push_back(StoreOp::Delete(
                Table::Registrations,
                endpoint.as_bytes().to_vec(),
            ));
            for q in std::mem::take(&mut dev.queue) {
                self.drop_queued(&q, endpoint);
                self.finish(
                    q.id,
                    endpoint,
                    q.request.name(),
                    None,
                    Err(super::types::CommandError::Deregistered),
                );
            }
        }
        self.events.push_back(DeviceEvent::Deregistered {
            endpoint: endpoint.to_string(),
            reason,
        });
        Some(dev)
    }

    /// Takes a device out of every index and ends its observations; its queue is left to
    /// the caller.
    pub(super) fn detach(&mut self, now: Instant, endpoint: &str) -> Option<Device<P>> {
        let mut dev = self.devices.remove(endpoint)?;
        self.expiry.remove(&(dev.expires, endpoint.to_string()));
        if let Some(t) = dev.awake_until {
            self.sleep_at.remove(&(t, endpoint.to_string()));
        }
        if let Some(id) = dev.reg.location.strip_prefix("/rd/") {
            self.locations.remove(id);
        }
        if self.by_peer.get(&dev.peer).map(String::as_str) == Some(endpoint) {
            self.by_peer.remove(&dev.peer);
        }
        for obs in std::mem::take(&mut dev.observations) {
            self.forget_observation(now, obs);
        }
        Some(*dev)
    }

    pub(super) fn expire_registrations(&mut self, now: Instant) {
        while self.expiry.first().is_some_and(|(t, _)| *t <= now) {
            let Some((_, endpoint)) = self.expiry.pop_first() else {
                break;
            };
            tracing::info!(endpoint = %endpoint, "registration expired");
            self.remove_device(now, &endpoint, DeregisterReason::Expired);
        }
    }
}
