//! The client side of the Device Management and Service Enablement interface (OMA LwM2M
//! TS 1.2 Core §6.3): every request from the server is decoded here, turned into an
//! operation on the [`ObjectStore`](super::ObjectStore) and answered, with content
//! negotiation on the client side (Core §7.4, Transport §6.3). An Observe or
//! Observe-Composite (Core §6.4.1, §6.4.3) is answered like a Read and then tracked by the
//! `reporting` module.
//!
//! Formats:
//! - an answer is in the Accept format when the server gives one and the client supports
//!   it for the node; an Accept the client does not support, or that cannot carry the node
//!   (text for an instance, opaque for an integer), is answered 4.06;
//! - without Accept: a single opaque value as application/octet-stream, anything else in
//!   the preferred format ([`ClientConfig::preferred_format`](super::ClientConfig));
//! - composite answers in Accept, else the request's format, else the preferred composite
//!   format;
//! - payloads are decoded in whatever supported format they come; an unsupported
//!   Content-Format is answered 4.15.
use super::firmware::FwAction;
use super::reporting::Target;
use super::Client;
use crate::coap::{msg, CoapOption, IncomingRequest, MessageClass, Packet, Peer, RequestType};
use crate::content::negotiate::Lwm2mVersion;
use crate::content::{self, ContentFormat, Record};
use crate::model::{Node, Path, PathLevel, Resource, Value};
use crate::ops::dm::{DmResponse, DownlinkRequest};
use crate::ops::Lwm2mError;
use std::time::Instant;

use super::config::ClientEvent;

/// What handling a request leaves to do once it is answered.
#[derive(Debug, Default)]
struct Effects {
    /// An Observe to track if the endpoint accepts the observer.
    observe: Option<(Target, ContentFormat)>,
    /// Values that changed (for notifications).
    changed: Vec<Path>,
    /// Instances appeared or disappeared: the server needs new object links.
    links: bool,
    /// Attributes changed: observations resolve theirs again.
    attributes: bool,
    /// Execute of Registration Update Trigger (`/1/x/8`).
    update: bool,
    /// What a request to the Firmware Update object starts.
    firmware: Option<FwAction>,
}

fn bad(reason: impl Into<String>) -> Lwm2mError {
    Lwm2mError::BadRequest(reason.into())
}

/// The format a request's Content-Format option names, if any.
fn request_format(p: &Packet) -> Result<Option<ContentFormat>, Lwm2mError> {
    match msg::uint_option(p, CoapOption::ContentFormat) {
        None => Ok(None),
        Some(code) => u16::try_from(code)
            .ok()
            .and_then(ContentFormat::from_code)
            .map(Some)
            .ok_or(Lwm2mError::UnsupportedContentFormat),
    }
}

/// Whether a TLV Create payload starts with resources rather than an instance: the server
/// left the instance id to the client (Core §6.3.6).
fn tlv_without_instance(payload: &[u8]) -> bool {
    payload.first().is_some_and(|b| b >> 6 >= 2)
}

/// Whether a node is one opaque value.
fn single_opaque(node: &Node) -> bool {
    matches!(
        node,
        Node::Resource(Resource::Single(Value::Opaque(_)))
            | Node::ResourceInstance(Value::Opaque(_))
    )
}

impl<P: Peer> Client<P> {
    /// Answers one request from the server and applies what it changed.
    pub(super) fn on_request(&mut self, now: Instant, req: IncomingRequest<P>) {
        let mut fx = Effects::default();
        let response = match self.handle_dm(&req.request, &mut fx) {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(endpoint = %self.config.endpoint, path = %msg::uri_path(&req.request), error = %e, "request refused");
                e.to_response()
            }
        };
        match self.endpoint.respond(now, req.id, response) {
            Ok(Some(observer)) => {
                if let Some((target, format)) = fx.observe.take() {
                    self.start_observation(now, observer, target, format);
                } else {
                    self.endpoint.remove_observer(observer);
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(endpoint = %self.config.endpoint, error = %e, "answer not sent")
            }
        }
        if fx.attributes || fx.changed.iter().any(|p| p.object_id() == Some(1)) {
            self.refresh_attributes();
        }
        if fx.changed.iter().any(|p| p.object_id() == Some(1)) {
            self.server_params_changed(now);
        }
        if fx.links {
            self.links_changed(now);
        }
        if fx.update {
            self.send_update(now);
        }
        self.values_changed(now, &fx.changed);
        if let Some(action) = fx.firmware.take() {
            self.firmware_action(now, action);
        }
    }

    fn handle_dm(&mut self, p: &Packet, fx: &mut Effects) -> Result<Packet, Lwm2mError> {
        let method = p.header.code;
        let composite = matches!(
            method,
            MessageClass::Request(RequestType::Fetch | RequestType::IPatch)
        );
        if composite && self.config.version == Lwm2mVersion::V1_0 {
            return Err(Lwm2mError::MethodNotAllowed);
        }
        let format = request_format(p)?;
        if format.is_some_and(|f| !self.config.supports(f) || f == ContentFormat::LinkFormat) {
            return Err(Lwm2mError::UnsupportedContentFormat);
        }
        if composite && !format.is_some_and(ContentFormat::supports_composite) {
            return Err(Lwm2mError::UnsupportedContentFormat);
        }
        let path = Path::from_segments(p.get_option(CoapOption::UriPath).into_iter().flatten())
            .map_err(|e| bad(e.to_string()))?;
        if path.object_id() == Some(0) {
            // Core Appendix E.1: bootstrap-only.
            return Err(Lwm2mError::MethodNotAllowed);
        }
        let (req, accept) = DownlinkRequest::from_coap(p, &*self.store.registry)?;
        match req {
            DownlinkRequest::Read { path } => {
                let node = self.store.dm_read(&path)?;
                self.content_response(&path, node, accept)
            }
            DownlinkRequest::Observe { path } => {
                let node = self.store.dm_read(&path)?;
                let (packet, format) = self.encode_node(&path, node, accept)?;
                fx.observe = Some((Target::Path(path), format));
                Ok(packet)
            }
            DownlinkRequest::Discover { path } => {
                let links = self.store.dm_discover(&path)?;
                DmResponse::Links(links).to_coap(&path, ContentFormat::LinkFormat)
            }
            DownlinkRequest::Write { path, mode, node } => {
                if let Some(action) = self.firmware_request(&path, Some(&node)) {
                    fx.firmware = Some(action?);
                    self.push_event(ClientEvent::Written { path });
                    return Ok(msg::response(crate::coap::ResponseType::Changed));
                }
                let changed = self.store.dm_write(&path, mode, node)?;
                self.push_event(ClientEvent::Written { path });
                fx.changed = changed;
                Ok(msg::response(crate::coap::ResponseType::Changed))
            }
            DownlinkRequest::WriteAttributes {
                path,
                attributes,
                remove,
            } => {
                self.store
                    .dm_write_attributes(&path, &attributes, &remove)?;
                fx.attributes = true;
                Ok(msg::response(crate::coap::ResponseType::Changed))
            }
            DownlinkRequest::Execute { path, args } => {
                self.store.dm_check_execute(&path)?;
                if let Some(action) = self.firmware_request(&path, None) {
                    fx.firmware = Some(action?);
                    self.push_event(ClientEvent::Executed { path, args });
                    return Ok(msg::response(crate::coap::ResponseType::Changed));
                }
                match (path.object_id(), path.instance_id(), path.resource_id()) {
                    (Some(1), _, Some(8)) => fx.update = true,
                    (Some(1), Some(i), Some(9)) => {
                        let short_server_id = self.store.server_ssid(i).unwrap_or_default();
                        self.push_event(ClientEvent::BootstrapRequested { short_server_id });
                        return Ok(msg::response(crate::coap::ResponseType::Changed));
                    }
                    _ => {}
                }
                self.push_event(ClientEvent::Executed { path, args });
                Ok(msg::response(crate::coap::ResponseType::Changed))
            }
            DownlinkRequest::Create { path, node } => {
                let choose = p.payload.is_empty()
                    || (format == Some(ContentFormat::Tlv) && tlv_without_instance(&p.payload));
                let created = self.store.dm_create(&path, node, choose)?;
                fx.links = true;
                for c in &created {
                    self.push_event(ClientEvent::InstanceCreated { path: *c });
                }
                let location = match created.as_slice() {
                    [one] => Some(*one),
                    _ => None,
                };
                DmResponse::Created(location).to_coap(&path, ContentFormat::Text)
            }
            DownlinkRequest::Delete { path } => {
                self.store.dm_delete(&path)?;
                fx.links = true;
                fx.changed.push(path);
                self.push_event(ClientEvent::InstanceDeleted { path });
                Ok(msg::response(crate::coap::ResponseType::Deleted))
            }
            DownlinkRequest::ReadComposite { paths } => {
                let records = self.store.dm_read_composite(&paths)?;
                let format = self.composite_response_format(accept, format)?;
                composite_response(format, &records)
            }
            DownlinkRequest::ObserveComposite { paths } => {
                let records = self.store.dm_read_composite(&paths)?;
                let format = self.composite_response_format(accept, format)?;
                let packet = composite_response(format, &records)?;
                fx.observe = Some((Target::Composite(paths.into_boxed_slice()), format));
                Ok(packet)
            }
            DownlinkRequest::WriteComposite { records } => {
                let paths: Vec<Path> = records.iter().map(|r| r.path).collect();
                let changed = self.store.dm_write_composite(records)?;
                for path in paths {
                    self.push_event(ClientEvent::Written { path });
                }
                fx.changed = changed;
                Ok(msg::response(crate::coap::ResponseType::Changed))
            }
        }
    }

    /// A 2.05 with `node` in the negotiated format.
    fn content_response(
        &self,
        path: &Path,
        node: Node,
        accept: Option<ContentFormat>,
    ) -> Result<Packet, Lwm2mError> {
        self.encode_node(path, node, accept).map(|(p, _)| p)
    }

    fn encode_node(
        &self,
        path: &Path,
        node: Node,
        accept: Option<ContentFormat>,
    ) -> Result<(Packet, ContentFormat), Lwm2mError> {
        let format = match accept {
            Some(f) if !self.config.supports(f) || !f.supports(path.level()) => {
                return Err(Lwm2mError::NotAcceptable)
            }
            Some(f) => f,
            None if single_opaque(&node) && self.config.supports(ContentFormat::Opaque) => {
                ContentFormat::Opaque
            }
            None => match self.config.preferred_format() {
                Some(f) => f,
                None if path.level() >= PathLevel::Resource => ContentFormat::Text,
                None => return Err(Lwm2mError::NotAcceptable),
            },
        };
        let payload = content::encode(format, path, &node).map_err(|e| {
            if accept.is_some() {
                Lwm2mError::NotAcceptable
            } else {
                Lwm2mError::InternalServerError(e.to_string())
            }
        })?;
        let mut p = msg::response(crate::coap::ResponseType::Content);
        msg::set_uint_option(&mut p, CoapOption::ContentFormat, u32::from(format.code()));
        p.payload = payload;
        Ok((p, format))
    }

    fn composite_response_format(
        &self,
        accept: Option<ContentFormat>,
        request: Option<ContentFormat>,
    ) -> Result<ContentFormat, Lwm2mError> {
        match accept {
            Some(f) if f.supports_composite() && self.config.supports(f) => Ok(f),
            Some(_) => Err(Lwm2mError::NotAcceptable),
            None => request
                .filter(|f| f.supports_composite() && self.config.supports(*f))
                .or_else(|| self.config.composite_format())
                .ok_or(Lwm2mError::NotAcceptable),
        }
    }
}

fn composite_response(format: ContentFormat, records: &[Record]) -> Result<Packet, Lwm2mError> {
    let payload = content::encode_composite(format, records)
        .map_err(|e| Lwm2mError::InternalServerError(e.to_string()))?;
    let mut p = msg::response(crate::coap::ResponseType::Content);
    msg::set_uint_option(&mut p, CoapOption::ContentFormat, u32::from(format.code()));
    p.payload = payload;
    Ok(p)
}
