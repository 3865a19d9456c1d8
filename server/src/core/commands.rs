//! The Device Management and Service Enablement interface, server side (OMA LwM2M TS 1.2
//! Core §6.3: Read, Discover, Write, Write-Attributes, Execute, Create, Delete and the
//! composites), as the one command path: every northbound operation arrives as a
//! [`Command`], is sent at once to an awake device or queued durably for a sleeping one
//! (Transport §6.5, queue mode), and ends in exactly one [`DeviceEvent::CommandResult`].
//! Observe commands take this path too; what follows their first response is in `reporting`.
use super::persist::{self, QueuedRecord, StoreOp};
use super::types::{
    Command, CommandError, CommandId, DeviceEvent, ObservationId, Outcome, UploadOptions,
    COMMAND_TIMEOUT_RANGE, COMMAND_TTL_RANGE,
};
use super::ServerCore;
use crate::store::Table;
use lwm2m::coap::{ExchangeError, Packet, Peer, RequestId, RequestOptions, SendError};
use lwm2m::content::negotiate::ClientFormats;
use lwm2m::content::ContentFormat;
use lwm2m::model::{Path, PathLevel, Registry};
use lwm2m::ops::dm::{DmResponse, DownlinkRequest};
use std::fmt::Display;
use std::str::FromStr;
use std::time::{Duration, Instant};

/// A command waiting for its device to wake.
#[derive(Debug)]
pub(crate) struct Queued {
    pub(super) id: CommandId,
    pub(super) request: DownlinkRequest,
    /// The CoAP request, ready to send (the format was chosen at submission).
    pub(super) packet: Packet,
    pub(super) timeout: Option<Duration>,
    /// How to upload a large payload block-wise; not stored, so a command restored after a
    /// restart uploads from block 0.
    pub(super) upload: Option<UploadOptions>,
    pub(super) expires: Instant,
}

/// A command sent and awaiting the device's answer.
#[derive(Debug)]
pub(super) struct InFlight {
    pub(super) id: CommandId,
    pub(super) endpoint: String,
    pub(super) request: DownlinkRequest,
    /// Kept for an Observe: the stored form of the observation.
    pub(super) packet: Option<Packet>,
}

/// Refuses a command whose `timeout` or `ttl` lies outside its documented range, whoever
/// submitted it: the MQTT envelope checks the same ranges, this keeps any other source
/// (HTTP, CLI, campaigns) from reaching the deadline arithmetic with them.
fn check_ranges(cmd: &Command) -> Result<(), CommandError> {
    let out = |name: &str, d: Duration, r: &std::ops::RangeInclusive<Duration>| {
        CommandError::Invalid(format!(
            "{name} {} s is outside {}..={} s",
            d.as_secs_f64(),
            r.start().as_secs_f64(),
            r.end().as_secs_f64()
        ))
    };
    let upload = cmd.upload.unwrap_or_default();
    match (cmd.timeout, cmd.ttl) {
        (Some(t), _) if !COMMAND_TIMEOUT_RANGE.contains(&t) => {
            Err(out("timeout", t, &COMMAND_TIMEOUT_RANGE))
        }
        (_, Some(t)) if !COMMAND_TTL_RANGE.contains(&t) => Err(out("ttl", t, &COMMAND_TTL_RANGE)),
        // RFC 7959 §2.2: SZX 7 is reserved (BERT over TCP only).
        _ if upload.szx.is_some_and(|s| s > 6) => Err(CommandError::Invalid(format!(
            "block size exponent {} is outside 0..=6",
            upload.szx.unwrap_or_default()
        ))),
        _ => match upload.interval {
            Some(t) if !COMMAND_TIMEOUT_RANGE.contains(&t) => {
                Err(out("upload interval", t, &COMMAND_TIMEOUT_RANGE))
            }
            _ => Ok(()),
        },
    }
}

/// The format for `request` to a device with `formats`.
fn choose_format(
    formats: &ClientFormats,
    request: &DownlinkRequest,
    schema: &Registry,
) -> Result<ContentFormat, CommandError> {
    use DownlinkRequest::*;
    match request {
        ReadComposite { .. } | WriteComposite { .. } | ObserveComposite { .. } => {
            formats.for_composite().ok_or_else(|| {
                CommandError::NotSupported(format!(
                    "{} needs LwM2M 1.1 and a composite format",
                    request.name()
                ))
            })
        }
        _ => {
            let path = request.path();
            let resource = match path.level() {
                PathLevel::Resource | PathLevel::ResourceInstance => {
                    schema.resource(&path).map(|r| (r.kind, r.multiple))
                }
                _ => None,
            };
            Ok(formats.for_read(path.level(), resource))
        }
    }
}

impl<P: Peer + Display + FromStr> ServerCore<P> {
    /// Commands not yet answered: (queued for sleeping devices, sent and awaiting the answer).
    pub fn commands_pending(&self) -> (usize, usize) {
        (self.queue_expiry.len(), self.inflight.len())
    }

    /// The id the last submitted command got (each command's id is above every earlier one's).
    pub fn last_command_id(&self) -> CommandId {
        CommandId(self.next_command)
    }

    /// Makes `endpoint` bootstrap again: Execute of Bootstrap-Request Trigger `/1/x/9` (Core
    /// Appendix E.2) on its Server object instance, through the command path like any command
    /// (queued while a queue-mode device sleeps, for `ttl`). The instance is the first `/1`
    /// instance the device registered; a device that lists none fails the command as not
    /// supported.
    pub fn bootstrap_trigger(
        &mut self,
        now: Instant,
        endpoint: &str,
        ttl: Option<Duration>,
        timeout: Option<Duration>,
    ) -> CommandId {
        let instance = self.registration(endpoint).map(|reg| {
            reg.links.objects.iter().find_map(|(p, _)| {
                (p.object_id() == Some(1))
                    .then(|| p.instance_id())
                    .flatten()
            })
        });
        match instance {
            Some(None) => {
                let id = self.next_command_id();
                self.finish(
                    id,
                    endpoint,
                    "execute",
                    None,
                    Err(CommandError::NotSupported(
                        "the device registered no Server object instance (/1/x) to execute Bootstrap-Request Trigger on".into(),
                    )),
                );
                id
            }
            // Unknown devices fail in `submit`, like any other command.
            instance => {
                let path = Path::resource(1, instance.flatten().unwrap_or(0), 9);
                let cmd = Command {
                    ttl,
                    timeout,
                    ..Command::new(endpoint, DownlinkRequest::Execute { path, args: None })
                };
                self.submit(now, cmd)
            }
        }
    }

    /// Submits a command. Its result comes later as [`DeviceEvent::CommandResult`] with the
    /// returned id: at once for an unknown device, after the device answers, or after its
    /// time-to-live if it never wakes.
    pub fn submit(&mut self, now: Instant, cmd: Command) -> CommandId {
        let id = self.next_command_id();
        let op = cmd.request.name();
        if let Err(e) = check_ranges(&cmd) {
            self.finish(id, &cmd.endpoint, op, None, Err(e));
            return id;
        }
        let Some(dev) = self.devices.get(&cmd.endpoint) else {
            self.finish(
                id,
                &cmd.endpoint,
                op,
                None,
                Err(CommandError::UnknownDevice),
            );
            return id;
        };
        let pending = self.inflight.len() + self.queue_expiry.len();
        if pending >= self.config.max_pending_commands {
            tracing::warn!(endpoint = %cmd.endpoint, pending, "too many pending commands");
            self.finish(
                id,
                &cmd.endpoint,
                op,
                None,
                Err(CommandError::Overloaded(pending)),
            );
            return id;
        }
        if dev.queue.len() + dev.inflight >= self.config.max_queue_per_device {
            tracing::warn!(endpoint = %cmd.endpoint, "too many pending commands for the device");
            self.finish(id, &cmd.endpoint, op, None, Err(CommandError::QueueFull));
            return id;
        }
        if matches!(
            cmd.request,
            DownlinkRequest::Observe { .. } | DownlinkRequest::ObserveComposite { .. }
        ) && dev.observations.len() >= self.config.max_observations_per_device
        {
            self.finish(
                id,
                &cmd.endpoint,
                op,
                None,
                Err(CommandError::Unavailable("too many observations".into())),
            );
            return id;
        }
        let format = match cmd
            .format
            .map(Ok)
            .unwrap_or_else(|| choose_format(&dev.formats, &cmd.request, &self.schema))
        {
            Ok(f) => f,
            Err(e) => {
                self.finish(id, &cmd.endpoint, op, None, Err(e));
                return id;
            }
        };
        let packet = match cmd.request.to_coap(format) {
            Ok(p) => p,
            Err(e) => {
                self.finish(id, &cmd.endpoint, op, None, Err(e.into()));
                return id;
            }
        };
        let awake = dev.reachable(now);
        if awake {
            let how = (cmd.timeout, cmd.upload);
            self.send_now(now, id, &cmd.endpoint, cmd.request, packet, how);
            return id;
        }
        let ttl = cmd.ttl.unwrap_or(self.config.default_command_ttl);
        let queued = Queued {
            id,
            request: cmd.request,
            packet,
            timeout: cmd.timeout,
            upload: cmd.upload,
            expires: lwm2m::time::deadline(now, ttl),
        };
        self.enqueue(now, &cmd.endpoint, queued);
        id
    }

    fn enqueue(&mut self, now: Instant, endpoint: &str, q: Queued) {
        let max = self.config.max_queue_per_device;
        let wall_expiry = lwm2m::time::unix_millis(self.wall(q.expires));
        let Some(dev) = self.devices.get_mut(endpoint) else {
            return;
        };
        if dev.queue.len() >= max {
            tracing::warn!(endpoint, "command queue full");
            let op = q.request.name();
            self.finish(q.id, endpoint, op, None, Err(CommandError::QueueFull));
            return;
        }
        let mut bare = q.packet.clone();
        bare.set_token(Vec::new());
        let record = QueuedRecord {
            id: q.id.0,
            endpoint: endpoint.to_string(),
            request: bare.to_bytes_unlimited().unwrap_or_default(),
            timeout_ms: q.timeout.map(lwm2m::time::millis),
            expires_at_ms: wall_expiry,
        };
        let key = persist::sub_key(endpoint, &q.id.0.to_be_bytes());
        self.store_ops
            .push_back(StoreOp::Put(Table::Queue, key, persist::encode(&record)));
        self.queue_expiry
            .insert((q.expires, q.id), endpoint.to_string());
        tracing::debug!(endpoint, command = q.id.0, "queued for a sleeping device");
        dev.queue.push_back(q);
        let _ = now;
    }

    /// A queued command leaves the queue (sent, expired, or its device gone): forget its
    /// deadline and its stored record, so neither outlives it.
    pub(super) fn drop_queued(&mut self, q: &Queued, endpoint: &str) {
        self.queue_expiry.remove(&(q.expires, q.id));
        let key = persist::sub_key(endpoint, &q.id.0.to_be_bytes());
        self.store_ops.push_back(StoreOp::Delete(Table::Queue, key));
    }

    /// Sends every queued command of an awake device, in submission order.
    pub(super) fn drain_queue(&mut self, now: Instant, endpoint: &str) {
        let Some(dev) = self.devices.get_mut(endpoint) else {
            return;
        };
        let queued: Vec<Queued> = dev.queue.drain(..).collect();
        for q in queued {
            self.drop_queued(&q, endpoint);
            if q.expires <= now {
                self.finish(
                    q.id,
                    endpoint,
                    q.request.name(),
                    None,
                    Err(CommandError::Expired),
                );
                continue;
            }
            let how = (q.timeout, q.upload);
            self.send_now(now, q.id, endpoint, q.request, q.packet, how);
        }
    }

    fn send_now(
        &mut self,
        now: Instant,
        id: CommandId,
        endpoint: &str,
        request: DownlinkRequest,
        packet: Packet,
        (timeout, upload): (Option<Duration>, Option<UploadOptions>),
    ) {
        let Some(peer) = self.devices.get(endpoint).map(|d| d.peer) else {
            self.finish(
                id,
                endpoint,
                request.name(),
                None,
                Err(CommandError::UnknownDevice),
            );
            return;
        };
        let keep = matches!(
            request,
            DownlinkRequest::Observe { .. } | DownlinkRequest::ObserveComposite { .. }
        );
        let stored = keep.then(|| packet.clone());
        let opts = RequestOptions {
            timeout,
            block_szx: upload.and_then(|u| u.szx),
            block1_start: upload.map(|u| u.start_block).filter(|b| *b > 0),
            block_interval: upload.and_then(|u| u.interval),
            ..RequestOptions::default()
        };
        match self.coap.send_request(now, peer, packet, opts) {
            Ok(rid) => {
                if let Some(dev) = self.devices.get_mut(endpoint) {
                    dev.inflight += 1;
                }
                self.inflight.insert(
                    rid,
                    InFlight {
                        id,
                        endpoint: endpoint.to_string(),
                        request,
                        packet: stored,
                    },
                );
            }
            Err(e) => {
                let error = match e {
                    SendError::BlockOutOfRange => CommandError::Invalid(e.to_string()),
                    e => CommandError::Unavailable(e.to_string()),
                };
                self.finish(id, endpoint, request.name(), None, Err(error))
            }
        }
    }

    /// The answer (or failure) of a CoAP request the core sent.
    pub(super) fn on_response(
        &mut self,
        now: Instant,
        rid: RequestId,
        result: Result<Packet, ExchangeError>,
    ) {
        if let Some(obs) = self.observation_by_request.get(&rid).copied() {
            self.on_observation_end(now, obs, result);
            return;
        }
        let Some(f) = self.inflight.remove(&rid) else {
            return;
        };
        if let Some(dev) = self.devices.get_mut(&f.endpoint) {
            dev.inflight = dev.inflight.saturating_sub(1);
        }
        let outcome: Outcome = match result {
            Ok(resp) => {
                self.heard_from(now, &f.endpoint);
                f.request
                    .parse_response(&resp, self.schema.as_ref())
                    .map_err(CommandError::Lwm2m)
            }
            Err(ExchangeError::Timeout) => Err(CommandError::Timeout),
            Err(ExchangeError::Reset) => Err(CommandError::Reset),
            Err(ExchangeError::Interrupted { next_block, szx }) => {
                Err(CommandError::Interrupted { next_block, szx })
            }
            Err(e) => Err(CommandError::Unavailable(e.to_string())),
        };
        let observation = match (&outcome, f.packet) {
            (Ok(DmResponse::Content { .. } | DmResponse::Composite { .. }), Some(packet)) => {
                Some(self.start_observation(now, rid, &f.endpoint, f.request.clone(), packet))
            }
            _ => None,
        };
        self.finish(f.id, &f.endpoint, f.request.name(), observation, outcome);
    }

    /// Expires queued commands whose time-to-live passed.
    pub(super) fn expire_queued(&mut self, now: Instant) {
        while let Some(((t, _), _)) = self.queue_expiry.first_key_value() {
            if *t > now {
                break;
            }
            let Some(((_, id), endpoint)) = self.queue_expiry.pop_first() else {
                break;
            };
            let Some(dev) = self.devices.get_mut(&endpoint) else {
                continue;
            };
            let Some(pos) = dev.queue.iter().position(|q| q.id == id) else {
                continue;
            };
            let Some(q) = dev.queue.remove(pos) else {
                continue;
            };
            self.drop_queued(&q, &endpoint);
            tracing::debug!(endpoint = %endpoint, command = id.0, "queued command expired");
            self.finish(
                id,
                &endpoint,
                q.request.name(),
                None,
                Err(CommandError::Expired),
            );
        }
    }

    /// Reports a command's one result.
    pub(super) fn finish(
        &mut self,
        id: CommandId,
        endpoint: &str,
        operation: &'static str,
        observation: Option<ObservationId>,
        outcome: Outcome,
    ) {
        self.events.push_back(DeviceEvent::CommandResult {
            id,
            endpoint: endpoint.to_string(),
            operation,
            observation,
            outcome,
        });
    }
}
