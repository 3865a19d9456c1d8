//! A scripted LwM2M device for the bootstrap core's tests: a real CoAP [`Endpoint`], the
//! client role's [`ObjectStore`] (bundled object definitions), and the Bootstrap operations
//! as the client role reads them ([`BootstrapOp::from_coap`]). It applies Writes and Deletes
//! to its store the way Core §6.1.7 says a client does, answers Discover with real link
//! format, and can be told to misbehave the ways real devices do.
use lwm2m::client::{bundled_registry, ObjectStore};
use lwm2m::coap::{
    msg, CoapOption, Endpoint, EndpointConfig, Event, MessageClass, Packet, RequestOptions,
    ResponseType,
};
use lwm2m::content::{self, ContentFormat};
use lwm2m::model::{Instance, Node, Path, Resource, Value};
use lwm2m::ops::bootstrap::{BootstrapOp, BootstrapRequest, PackRequest};
use lwm2m::ops::Lwm2mError;
use std::time::Instant;

use super::SERVER;

/// The URI of the old LwM2M server account every device starts with.
pub(crate) const OLD_URI: &str = "coaps://old.example:5684";
/// The URI of the device's bootstrap server.
pub(crate) const BS_URI: &str = "coaps://bs.example:5784";

/// One scripted device.
pub(crate) struct Device {
    pub(crate) name: String,
    pub(crate) ep: Endpoint<u8>,
    pub(crate) store: ObjectStore,
    /// The `lwm2m` version its Discover answer announces.
    pub(crate) version: Option<&'static str>,
    /// The formats it takes Writes in; others are answered 4.15.
    pub(crate) formats: Vec<ContentFormat>,
    /// Answers 4.05 to a Delete of a whole object (some devices only delete instances).
    pub(crate) refuse_object_delete: bool,
    /// Answers 4.04 to Bootstrap-Discover, as a 1.0 device that does not know it.
    pub(crate) refuse_discover: bool,
    /// Stores at least this Lifetime whatever is written (a device with a floor of its own).
    pub(crate) lifetime_floor: Option<i64>,
    /// What it answers to Bootstrap-Finish.
    pub(crate) finish: ResponseType,
    /// Goes off the network, unanswering, at the first request whose log line starts so.
    pub(crate) silent_at: Option<String>,
    /// At the first request whose log line starts so, sends a new Bootstrap-Request, then
    /// answers the request all the same (late for the server).
    pub(crate) restart_at: Option<String>,
    /// Set when it went silent: the world takes it off the network.
    pub(crate) silent: bool,
    /// The bootstrap server's requests as `METHOD /path [content-format]`, in order.
    pub(crate) log: Vec<String>,
    /// The codes the bootstrap server answered its own requests with, in order.
    pub(crate) answers: Vec<String>,
    /// The last answer with a payload (a pack).
    pub(crate) last_answer: Option<Packet>,
    /// Whether it accepted Bootstrap-Finish.
    pub(crate) finished: bool,
}

fn single(v: Value) -> Resource {
    Resource::Single(v)
}

impl Device {
    /// A device with a bootstrap server account at `/0/0`, an old LwM2M server (ssid 3) at
    /// `/0/3` and `/1/3`, and a Device object, announcing `version`.
    pub(crate) fn new(addr: u8, name: &str, version: Option<&'static str>) -> Self {
        let mut store = ObjectStore::new(bundled_registry());
        let opaque = |b: &[u8]| single(Value::Opaque(b.to_vec()));
        let bootstrap = Instance::from([
            (0, single(Value::String(BS_URI.into()))),
            (1, single(Value::Boolean(true))),
            (2, single(Value::Integer(0))),
            (3, opaque(b"bs-identity")),
            (4, opaque(b"")),
            (5, opaque(b"bs-key")),
        ]);
        let old_security = Instance::from([
            (0, single(Value::String(OLD_URI.into()))),
            (1, single(Value::Boolean(false))),
            (2, single(Value::Integer(0))),
            (3, opaque(b"old-identity")),
            (4, opaque(b"")),
            (5, opaque(b"old-key")),
            (10, single(Value::Integer(3))),
        ]);
        let old_server = Instance::from([
            (0, single(Value::Integer(3))),
            (1, single(Value::Integer(60))),
            (6, single(Value::Boolean(false))),
            (7, single(Value::String("U".into()))),
        ]);
        let device = Instance::from([(0, single(Value::String("Acme".into())))]);
        store.add_instance(0, 0, bootstrap).unwrap();
        store.add_instance(0, 3, old_security).unwrap();
        store.add_instance(1, 3, old_server).unwrap();
        store.add_instance(3, 0, device).unwrap();
        Self {
            name: name.into(),
            ep: Endpoint::new(EndpointConfig {
                rng_seed: u64::from(addr),
                ..EndpointConfig::default()
            }),
            store,
            version,
            formats: vec![
                ContentFormat::Tlv,
                ContentFormat::SenmlCbor,
                ContentFormat::SenmlJson,
                ContentFormat::Lwm2mCbor,
            ],
            refuse_object_delete: false,
            refuse_discover: false,
            lifetime_floor: None,
            finish: ResponseType::Changed,
            silent_at: None,
            restart_at: None,
            silent: false,
            log: Vec::new(),
            answers: Vec::new(),
            last_answer: None,
            finished: false,
        }
    }

    /// Sends a Bootstrap-Request.
    pub(crate) fn request(&mut self, now: Instant, pct: Option<ContentFormat>) {
        let req = BootstrapRequest {
            endpoint: self.name.clone(),
            preferred_format: pct,
            extra: Vec::new(),
        };
        self.send(now, req.to_coap());
    }

    /// Sends a Bootstrap-Pack-Request.
    pub(crate) fn request_pack(&mut self, now: Instant, accept: Option<ContentFormat>) {
        let req = PackRequest {
            endpoint: self.name.clone(),
            accept,
        };
        self.send(now, req.to_coap());
    }

    /// Sends any request to the bootstrap server.
    pub(crate) fn send(&mut self, now: Instant, packet: Packet) {
        self.ep
            .send_request(now, SERVER, packet, RequestOptions::default())
            .unwrap();
    }

    /// Takes what its endpoint produced: answers the server's requests, records the
    /// answers to its own.
    pub(crate) fn process(&mut self, now: Instant) {
        while let Some(ev) = self.ep.poll_event() {
            match ev {
                Event::Request(req) => {
                    let restart = self.take_restart(&req.request);
                    if restart {
                        self.request(now, None);
                    }
                    if let Some(answer) = self.answer(&req.request) {
                        self.ep.respond(now, req.id, answer).unwrap();
                    }
                }
                Event::Response { response, .. } => {
                    self.answers.push(msg::code_string(&response));
                    if !response.payload.is_empty() {
                        self.last_answer = Some(response);
                    }
                }
                Event::Failed { error, .. } => self.answers.push(format!("failed: {error}")),
                _ => {}
            }
        }
    }

    fn take_restart(&mut self, req: &Packet) -> bool {
        let line = describe(req);
        if self
            .restart_at
            .as_ref()
            .is_some_and(|r| line.starts_with(r))
        {
            self.restart_at = None;
            return true;
        }
        false
    }

    /// The device's answer to a request of the bootstrap server; `None` when it went silent.
    fn answer(&mut self, req: &Packet) -> Option<Packet> {
        let line = describe(req);
        self.log.push(line.clone());
        if self.silent || self.silent_at.as_ref().is_some_and(|s| line.starts_with(s)) {
            self.silent = true;
            return None;
        }
        let op = match BootstrapOp::from_coap(req) {
            Ok(op) => op,
            Err(e) => return Some(e.to_response()),
        };
        Some(match op {
            BootstrapOp::Discover(_) if self.refuse_discover => Lwm2mError::NotFound.to_response(),
            BootstrapOp::Discover(_) => {
                let mut p = msg::response(ResponseType::Content);
                msg::set_uint_option(&mut p, CoapOption::ContentFormat, 40);
                p.payload = self.discover().into_bytes();
                p
            }
            BootstrapOp::Read { path, accept } => {
                let format = accept.unwrap_or(ContentFormat::Tlv);
                match self.store.get(&path) {
                    Some(node) => {
                        let mut p = msg::response(ResponseType::Content);
                        msg::set_uint_option(
                            &mut p,
                            CoapOption::ContentFormat,
                            u32::from(format.code()),
                        );
                        p.payload = content::encode(format, &path, &node).unwrap();
                        p
                    }
                    None => Lwm2mError::NotFound.to_response(),
                }
            }
            BootstrapOp::Write {
                path,
                format,
                payload,
            } => {
                if !self.formats.contains(&format) {
                    return Some(Lwm2mError::UnsupportedContentFormat.to_response());
                }
                match self.write(&path, format, &payload) {
                    Ok(()) => msg::response(ResponseType::Changed),
                    Err(e) => Lwm2mError::BadRequest(e).to_response(),
                }
            }
            BootstrapOp::Delete(path) => self.delete(&path),
            BootstrapOp::Finish => {
                self.finished = self.finish == ResponseType::Changed;
                msg::response(self.finish)
            }
        })
    }

    /// The Discover answer (the shape of the Core specification's example).
    pub(crate) fn discover(&self) -> String {
        let mut links = Vec::new();
        if let Some(v) = self.version {
            links.push(format!("</>;lwm2m={v}"));
        }
        for o in self.store.object_ids() {
            let ids: Vec<u16> = self.store.instance_ids(o).collect();
            if ids.is_empty() {
                links.push(format!("</{o}>"));
            }
            for i in ids {
                let mut link = format!("</{o}/{i}>");
                let value = |r| self.store.value(&Path::resource(o, i, r));
                let ssid = match o {
                    0 if value(1) != Some(&Value::Boolean(true)) => value(10),
                    1 => value(0),
                    _ => None,
                };
                if let Some(Value::Integer(s)) = ssid {
                    link.push_str(&format!(";ssid={s}"));
                }
                if let (0, Some(Value::String(uri))) = (o, value(0)) {
                    link.push_str(&format!(";uri=\"{uri}\""));
                }
                links.push(link);
            }
        }
        links.join(",")
    }

    /// Bootstrap-Write: creates the instance or replaces the resources given.
    fn write(&mut self, path: &Path, format: ContentFormat, payload: &[u8]) -> Result<(), String> {
        let node = content::decode(format, path, payload, self.store.registry())
            .map_err(|e| e.to_string())?;
        let (Some(o), Some(i), Node::Instance(mut values)) =
            (path.object_id(), path.instance_id(), node)
        else {
            return Err(format!(
                "this device takes instance Writes only, not {path}"
            ));
        };
        if let (1, Some(floor), Some(Resource::Single(Value::Integer(l)))) =
            (o, self.lifetime_floor, values.get(&1))
        {
            let l = (*l).max(floor);
            values.insert(1, single(Value::Integer(l)));
        }
        let mut merged = match self.store.get(&Path::instance(o, i)) {
            Some(Node::Instance(old)) => {
                self.store
                    .remove_instance(o, i)
                    .map_err(|e| e.to_string())?;
                old
            }
            _ => Instance::new(),
        };
        merged.extend(values);
        self.store
            .add_instance(o, i, merged)
            .map_err(|e| e.to_string())
    }

    fn is_bootstrap_instance(&self, o: u16, i: u16) -> bool {
        o == 0 && self.store.value(&Path::resource(0, i, 1)) == Some(&Value::Boolean(true))
    }

    /// Bootstrap-Delete: never the bootstrap server's own Security instance (Core §6.1.7.5).
    fn delete(&mut self, path: &Path) -> Packet {
        let deleted = msg::response(ResponseType::Deleted);
        match (path.object_id(), path.instance_id()) {
            (Some(_), None) if self.refuse_object_delete => {
                Lwm2mError::MethodNotAllowed.to_response()
            }
            (Some(o), Some(i)) => {
                if self.is_bootstrap_instance(o, i) {
                    return Lwm2mError::BadRequest("the bootstrap account stays".into())
                        .to_response();
                }
                match self.store.remove_instance(o, i) {
                    Ok(_) => deleted,
                    Err(_) => Lwm2mError::NotFound.to_response(),
                }
            }
            (object, _) => {
                let objects: Vec<u16> = match object {
                    Some(o) => vec![o],
                    None => self.store.object_ids().collect(),
                };
                for o in objects {
                    let ids: Vec<u16> = self.store.instance_ids(o).collect();
                    for i in ids {
                        if !self.is_bootstrap_instance(o, i) && o != 3 {
                            self.store.remove_instance(o, i).unwrap();
                        }
                    }
                }
                deleted
            }
        }
    }
}

/// A request as `METHOD /path [content-format]`.
pub(crate) fn describe(req: &Packet) -> String {
    let method = match req.header.code {
        MessageClass::Request(m) => format!("{m:?}").to_uppercase(),
        other => other.to_string(),
    };
    let mut line = format!("{method} {}", msg::uri_path(req));
    if let Some(cf) = msg::uint_option(req, CoapOption::ContentFormat) {
        line.push_str(&format!(" {cf}"));
    }
    line
}
