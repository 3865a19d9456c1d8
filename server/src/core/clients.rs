//! What the core tells about its devices beyond their registrations, for the HTTP API and
//! the console: whether a queue-mode device is asleep (Transport §6.5), its pending
//! commands and its observations, one device or one page of devices at a time.
use super::types::{ObservationId, Registration};
use super::ServerCore;
use lwm2m::coap::Peer;
use lwm2m::model::Path;
use lwm2m::ops::dm::DownlinkRequest;
use std::collections::BinaryHeap;
use std::fmt::Display;
use std::str::FromStr;
use std::time::Instant;

/// One device as the server holds it now.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientState {
    /// Its registration.
    pub registration: Registration,
    /// For a queue-mode device, whether it is asleep (not heard from within the awake
    /// window); `None` for a device that is always reachable.
    pub sleeping: Option<bool>,
    /// Commands waiting for it to wake.
    pub queued: usize,
    /// Commands sent to it and awaiting its answer.
    pub inflight: usize,
    /// Its observations and the paths each observes (several for a composite).
    pub observations: Vec<(ObservationId, Vec<Path>)>,
    /// Whether it is reached over DTLS, authenticated.
    pub secure: bool,
}

/// One page of devices, in endpoint name order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientPage {
    /// Devices whose name starts with the prefix asked for.
    pub total: usize,
    /// The page.
    pub clients: Vec<ClientState>,
}

impl<P: Peer + Display + FromStr> ServerCore<P> {
    /// `endpoint`'s state, if it is registered.
    pub fn client_state(&self, now: Instant, endpoint: &str) -> Option<ClientState> {
        let dev = self.devices.get(endpoint)?;
        let observations = dev
            .observations
            .iter()
            .filter_map(|id| {
                let paths = match &self.observations.get(id)?.request {
                    DownlinkRequest::Observe { path } => vec![*path],
                    DownlinkRequest::ObserveComposite { paths } => paths.clone(),
                    _ => Vec::new(),
                };
                Some((*id, paths))
            })
            .collect();
        Some(ClientState {
            registration: dev.reg.clone(),
            sleeping: dev.reg.queue_mode.then(|| !dev.reachable(now)),
            queued: dev.queue.len(),
            inflight: dev.inflight,
            observations,
            secure: self.authenticated.contains_key(&dev.peer),
        })
    }

    /// Whether a command for `endpoint` would wait for it to wake (a queue-mode device not
    /// heard from within the awake window).
    pub fn is_asleep(&self, now: Instant, endpoint: &str) -> bool {
        self.devices
            .get(endpoint)
            .is_some_and(|d| !d.reachable(now))
    }

    /// Whether command `id` waits in `endpoint`'s queue for the device to wake.
    pub fn is_queued(&self, endpoint: &str, id: super::types::CommandId) -> bool {
        self.devices
            .get(endpoint)
            .is_some_and(|d| d.queue.iter().any(|q| q.id == id))
    }

    /// The devices whose endpoint name starts with `prefix`, in name order, from just after
    /// `after` (the last name of the previous page), at most `limit` of them. One pass over
    /// the devices keeping the `limit` smallest names: no sorted index to keep in memory
    /// for every device, and no sort of them all per page.
    pub fn clients_page(
        &self,
        now: Instant,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> ClientPage {
        let mut total = 0;
        let mut smallest: BinaryHeap<&str> = BinaryHeap::with_capacity(limit.min(4096) + 1);
        for name in self.devices.keys() {
            if !name.starts_with(prefix) {
                continue;
            }
            total += 1;
            if after.is_some_and(|a| name.as_str() <= a) || limit == 0 {
                continue;
            }
            if smallest.len() < limit {
                smallest.push(name);
            } else if smallest
                .peek()
                .is_some_and(|largest| name.as_str() < *largest)
            {
                smallest.pop();
                smallest.push(name);
            }
        }
        let names = smallest.into_sorted_vec();
        ClientPage {
            total,
            clients: names
                .into_iter()
                .filter_map(|n| self.client_state(now, n))
                .collect(),
        }
    }
}
