//! The Information Reporting interface, server side (OMA LwM2M TS 1.2 Core §6.4): the
//! observations the server holds on devices (Observe, Notify, Cancel Observation,
//! §6.4.1-6.4.3), persisted so that after a restart notifications still map to their
//! observation, and Send (`POST /dp`, §6.4.4), the device's unsolicited report.
use super::persist::{self, ObservationRecord, StoreOp};
use super::types::{CommandError, CommandId, Content, DeviceEvent, ObservationId};
use super::ServerCore;
use crate::store::Table;
use lwm2m::coap::{
    msg, CancelMode, ExchangeError, Packet, Peer, RequestId, RequestOptions, ResponseType, Token,
};
use lwm2m::model::Path;
use lwm2m::ops::dm::{DmResponse, DownlinkRequest};
use lwm2m::ops::reporting::SendRequest;
use lwm2m::ops::Lwm2mError;
use std::fmt::Display;
use std::str::FromStr;
use std::time::Instant;

/// One observation on a device.
#[derive(Debug)]
pub(super) struct Observation {
    endpoint: String,
    /// The CoAP request that carries its notifications.
    coap_id: RequestId,
    pub(super) request: DownlinkRequest,
    token: Token,
    /// The command cancelling it, whose result is reported when the cancellation completes.
    cancel: Option<CommandId>,
}

impl<P: Peer + Display + FromStr> ServerCore<P> {
    /// The first response to an Observe arrived: the observation exists from now on.
    pub(super) fn start_observation(
        &mut self,
        _now: Instant,
        rid: RequestId,
        endpoint: &str,
        request: DownlinkRequest,
        mut packet: Packet,
    ) -> ObservationId {
        self.next_observation = super::next_id(self.next_observation, self.config.id_node);
        let id = ObservationId(self.next_observation);
        let token = self.coap.request_token(rid).unwrap_or_default();
        packet.set_token(Vec::new());
        let record = ObservationRecord {
            endpoint: endpoint.to_string(),
            id: id.0,
            token: token.as_bytes().to_vec(),
            request: packet.to_bytes_unlimited().unwrap_or_default(),
        };
        self.store_ops.push_back(StoreOp::Put(
            Table::Observations,
            persist::sub_key(endpoint, token.as_bytes()),
            persist::encode(&record),
        ));
        self.observations.insert(
            id,
            Observation {
                endpoint: endpoint.to_string(),
                coap_id: rid,
                request,
                token,
                cancel: None,
            },
        );
        self.observation_by_request.insert(rid, id);
        if let Some(dev) = self.devices.get_mut(endpoint) {
            dev.observations.push(id);
        }
        id
    }

    /// A notification of an established observation.
    pub(super) fn on_notification(
        &mut self,
        now: Instant,
        rid: RequestId,
        response: Packet,
        seq: Option<u32>,
    ) {
        let Some(id) = self.observation_by_request.get(&rid).copied() else {
            return;
        };
        let Some(obs) = self.observations.get(&id) else {
            return;
        };
        let endpoint = obs.endpoint.clone();
        let path = obs.request.path();
        let parsed = obs.request.parse_response(&response, self.schema.as_ref());
        self.heard_from(now, &endpoint);
        match parsed {
            Ok(DmResponse::Content { node, .. }) => {
                self.events.push_back(DeviceEvent::Notification {
                    endpoint: endpoint.clone(),
                    observation: id,
                    path,
                    content: Content::Node(node),
                    seq,
                });
            }
            Ok(DmResponse::Composite { records, .. }) => {
                self.events.push_back(DeviceEvent::Notification {
                    endpoint: endpoint.clone(),
                    observation: id,
                    path,
                    content: Content::Records(records),
                    seq,
                });
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(endpoint = %endpoint, error = %e, "undecodable notification"),
        }
        if seq.is_none() {
            // RFC 7641 §3.2: the device ended the observation.
            self.on_observation_end(now, id, Err(ExchangeError::Cancelled));
        }
    }

    /// Cancels the observation of `path` on `endpoint` (`/` for a composite one). Actively,
    /// with GET Observe=1, if the device is reachable; passively otherwise, so a sleeping
    /// device's next notification is answered with RST. The result is reported for the
    /// returned command id.
    pub fn cancel_observation(&mut self, now: Instant, endpoint: &str, path: Path) -> CommandId {
        self.cancel_matching(now, endpoint, |r| r.path() == path)
    }

    /// Cancels the Observe-Composite of exactly `paths` (in any order) on `endpoint`, as
    /// [`cancel_observation`](Self::cancel_observation) does.
    pub fn cancel_composite_observation(
        &mut self,
        now: Instant,
        endpoint: &str,
        paths: &[Path],
    ) -> CommandId {
        let mut wanted = paths.to_vec();
        wanted.sort();
        wanted.dedup();
        self.cancel_matching(now, endpoint, |r| match r {
            DownlinkRequest::ObserveComposite { paths } => {
                let mut have = paths.clone();
                have.sort();
                have.dedup();
                have == wanted
            }
            _ => false,
        })
    }

    fn cancel_matching(
        &mut self,
        now: Instant,
        endpoint: &str,
        matches: impl Fn(&DownlinkRequest) -> bool,
    ) -> CommandId {
        let id = self.next_command_id();
        let found = self.devices.get(endpoint).and_then(|dev| {
            let awake = dev.reachable(now);
            dev.observations
                .iter()
                .copied()
                .find(|o| {
                    self.observations
                        .get(o)
                        .is_some_and(|ob| matches(&ob.request))
                })
                .map(|o| (o, awake))
        });
        let Some((obs_id, awake)) = found else {
            let err = if self.devices.contains_key(endpoint) {
                CommandError::Lwm2m(Lwm2mError::NotFound)
            } else {
                CommandError::UnknownDevice
            };
            self.finish(id, endpoint, "cancel-observe", None, Err(err));
            return id;
        };
        let Some(obs) = self.observations.get_mut(&obs_id) else {
            return id;
        };
        obs.cancel = Some(id);
        let coap_id = obs.coap_id;
        let mode = if awake {
            CancelMode::Active
        } else {
            CancelMode::Passive
        };
        if self.coap.cancel_observe(now, coap_id, mode).is_err() {
            self.on_observation_end(now, obs_id, Err(ExchangeError::Cancelled));
        }
        self.process(now);
        id
    }

    /// The observation's CoAP request ended: cancelled, failed, or answered a cancellation.
    pub(super) fn on_observation_end(
        &mut self,
        _now: Instant,
        id: ObservationId,
        _result: Result<Packet, ExchangeError>,
    ) {
        let Some(obs) = self.remove_observation(id) else {
            return;
        };
        match obs.cancel {
            Some(cmd) => self.finish(
                cmd,
                &obs.endpoint,
                "cancel-observe",
                Some(id),
                Ok(DmResponse::Changed),
            ),
            None => self.events.push_back(DeviceEvent::ObservationEnded {
                endpoint: obs.endpoint,
                observation: id,
            }),
        }
    }

    /// Drops an observation without telling the device (its registration ended). The CoAP
    /// endpoint reports the passive cancellation as a failure, which finds no owner any more.
    pub(super) fn forget_observation(&mut self, now: Instant, id: ObservationId) {
        if let Some(obs) = self.remove_observation(id) {
            let _ = self
                .coap
                .cancel_observe(now, obs.coap_id, CancelMode::Passive);
        }
    }

    fn remove_observation(&mut self, id: ObservationId) -> Option<Observation> {
        let obs = self.observations.remove(&id)?;
        self.observation_by_request.remove(&obs.coap_id);
        if let Some(dev) = self.devices.get_mut(&obs.endpoint) {
            dev.observations.retain(|o| *o != id);
        }
        self.store_ops.push_back(StoreOp::Delete(
            Table::Observations,
            persist::sub_key(&obs.endpoint, obs.token.as_bytes()),
        ));
        Some(obs)
    }

    /// Re-creates a stored observation in the CoAP endpoint after a restart.
    pub(super) fn restore_observation(
        &mut self,
        now: Instant,
        record: ObservationRecord,
    ) -> Result<(), String> {
        let peer = self
            .devices
            .get(&record.endpoint)
            .map(|d| d.peer)
            .ok_or("device not registered")?;
        let token = Token::new(&record.token).ok_or("bad token")?;
        let packet = Packet::from_bytes(&record.request).map_err(|e| e.to_string())?;
        let (request, _) =
            DownlinkRequest::from_coap(&packet, self.schema.as_ref()).map_err(|e| e.to_string())?;
        let rid = self
            .coap
            .restore_observation(now, peer, token, packet, RequestOptions::default())
            .map_err(|e| e.to_string())?;
        let id = ObservationId(record.id);
        if self.own_id(record.id) {
            self.next_observation = self.next_observation.max(record.id);
        }
        self.observations.insert(
            id,
            Observation {
                endpoint: record.endpoint.clone(),
                coap_id: rid,
                request,
                token,
                cancel: None,
            },
        );
        self.observation_by_request.insert(rid, id);
        if let Some(dev) = self.devices.get_mut(&record.endpoint) {
            dev.observations.push(id);
        }
        Ok(())
    }

    /// Send (`POST /dp`): the device is known by the peer it registered from — for DTLS its
    /// session, which is its credential, not an address.
    pub(super) fn on_send(
        &mut self,
        _now: Instant,
        peer: P,
        packet: &Packet,
    ) -> Result<(Packet, String), Lwm2mError> {
        let endpoint = self
            .by_peer
            .get(&peer)
            .cloned()
            .ok_or(Lwm2mError::NotFound)?;
        let (send, _format) = SendRequest::from_coap(packet, self.schema.as_ref())?;
        self.events.push_back(DeviceEvent::Send {
            endpoint: endpoint.clone(),
            records: send.records,
        });
        Ok((msg::response(ResponseType::Changed), endpoint))
    }
}
