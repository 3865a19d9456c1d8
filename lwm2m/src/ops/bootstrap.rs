//! The Bootstrap interface (OMA LwM2M TS 1.2 Core §6.1; Transport §6.1) as typed
//! values, both from and to CoAP, so the bootstrap server parses what the client role builds
//! and the other way round:
//!
//! - Bootstrap-Request (client to server): `POST /bs?ep={name}&pct={format}`; 2.04.
//! - Bootstrap-Pack-Request (1.2, client to server): `GET /bspack?ep={name}`, with Accept;
//!   2.05 with the whole configuration in one payload.
//! - Bootstrap-Discover: `GET /` or `GET /{object}` with Accept: application/link-format;
//!   2.05 with the instances the client has and the `ssid` and `uri` of each Security and
//!   Server instance ([`Discovery`]).
//! - Bootstrap-Read (1.1+): `GET /1[/{instance}]` or `GET /2[/{instance}]`: only the Server
//!   and Access Control objects may be read (Core §6.1.7); 2.05.
//! - Bootstrap-Write: `PUT /{object}[/{instance}[/{resource}]]` with content; 2.04.
//! - Bootstrap-Delete: `DELETE /`, `DELETE /{object}` or `DELETE /{object}/{instance}`; 2.02.
//! - Bootstrap-Finish: `POST /bs`; 2.04, or 4.06 when the client finds its configuration
//!   unusable.
use super::options::{
    endpoint_name, option_format, query_param, query_params, request_path, set_format,
};
use super::Lwm2mError;
use crate::coap::link_format;
use crate::coap::{msg, CoapOption, MessageClass, Packet, RequestType};
use crate::content::ContentFormat;
use crate::model::Path;
use std::collections::BTreeSet;

/// The Security object (Core Appendix E.1).
pub const SECURITY: u16 = 0;
/// The Server object (Core Appendix E.2).
pub const SERVER: u16 = 1;
/// The Access Control object (Core Appendix E.3).
pub const ACCESS_CONTROL: u16 = 2;

/// The path of Bootstrap-Request and Bootstrap-Finish.
const BS: &str = "/bs";
/// The path of Bootstrap-Pack-Request.
const BSPACK: &str = "/bspack";

/// A Bootstrap-Request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapRequest {
    /// `ep`: the endpoint client name.
    pub endpoint: String,
    /// `pct` (1.1+): the content format the client prefers for the bootstrap server's Writes.
    pub preferred_format: Option<ContentFormat>,
    /// Query parameters this version does not define, kept as given.
    pub extra: Vec<(String, Option<String>)>,
}

impl BootstrapRequest {
    /// A request from `endpoint` with no preference.
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            preferred_format: None,
            extra: Vec::new(),
        }
    }

    /// Reads a Bootstrap-Request (the caller has checked it is a POST to `/bs`). A `pct`
    /// naming a format this crate does not know is refused 4.00: the bootstrap server could
    /// not honour it.
    pub fn from_coap(packet: &Packet) -> Result<Self, Lwm2mError> {
        let mut endpoint = None;
        let mut preferred_format = None;
        let mut extra = Vec::new();
        for (k, v) in query_params(packet)? {
            match k.as_str() {
                "ep" => endpoint = v,
                "pct" => {
                    let code = v.as_deref().unwrap_or_default();
                    preferred_format = Some(
                        code.parse::<u16>()
                            .ok()
                            .and_then(ContentFormat::from_code)
                            .ok_or_else(|| {
                                Lwm2mError::BadRequest(format!(
                                    "pct {:?} is not a content format this server knows",
                                    code.chars().take(16).collect::<String>()
                                ))
                            })?,
                    );
                }
                _ => extra.push((k, v)),
            }
        }
        Ok(Self {
            endpoint: endpoint_name(endpoint)?,
            preferred_format,
            extra,
        })
    }

    /// Builds the request for the bootstrap server's `/bs`.
    pub fn to_coap(&self) -> Packet {
        let mut p = msg::request(RequestType::Post, BS);
        p.add_option(
            CoapOption::UriQuery,
            query_param("ep", Some(&self.endpoint)).into_bytes(),
        );
        if let Some(f) = self.preferred_format {
            p.add_option(
                CoapOption::UriQuery,
                query_param("pct", Some(&f.code().to_string())).into_bytes(),
            );
        }
        for (k, v) in &self.extra {
            p.add_option(
                CoapOption::UriQuery,
                query_param(k, v.as_deref()).into_bytes(),
            );
        }
        p
    }
}

/// A Bootstrap-Pack-Request (1.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackRequest {
    /// `ep`: the endpoint client name.
    pub endpoint: String,
    /// The format the pack must come in (SenML CBOR or LwM2M CBOR, say).
    pub accept: Option<ContentFormat>,
}

impl PackRequest {
    /// Reads a Bootstrap-Pack-Request (the caller has checked it is a GET to `/bspack`).
    pub fn from_coap(packet: &Packet) -> Result<Self, Lwm2mError> {
        let mut endpoint = None;
        for (k, v) in query_params(packet)? {
            if k == "ep" {
                endpoint = v;
            }
        }
        Ok(Self {
            endpoint: endpoint_name(endpoint)?,
            accept: option_format(packet, CoapOption::Accept)?,
        })
    }

    /// Builds the request for the bootstrap server's `/bspack`.
    pub fn to_coap(&self) -> Packet {
        let mut p = msg::request(RequestType::Get, BSPACK);
        p.add_option(
            CoapOption::UriQuery,
            query_param("ep", Some(&self.endpoint)).into_bytes(),
        );
        if let Some(f) = self.accept {
            set_format(&mut p, CoapOption::Accept, f);
        }
        p
    }
}

/// What the bootstrap server asks of the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootstrapOp {
    /// Bootstrap-Discover of the root or of one object.
    Discover(Path),
    /// Bootstrap-Read of the Server or Access Control object, or one of their instances.
    Read {
        /// `/1`, `/1/{i}`, `/2` or `/2/{i}`.
        path: Path,
        /// The format the answer must come in.
        accept: Option<ContentFormat>,
    },
    /// Bootstrap-Write of an object, an instance or a resource.
    Write {
        /// Where the value goes.
        path: Path,
        /// How `payload` is encoded.
        format: ContentFormat,
        /// The encoded value.
        payload: Vec<u8>,
    },
    /// Bootstrap-Delete of everything (the root), an object's instances, or one instance.
    Delete(Path),
    /// Bootstrap-Finish.
    Finish,
}

/// Whether a path names the root, an object or an instance: the depths Discover (root and
/// object) and Delete (all three) address.
fn at_most_instance(path: &Path) -> bool {
    path.resource_id().is_none()
}

impl BootstrapOp {
    /// Checks the op's path is one its operation may address (Core §6.1.7): a refused path is
    /// a 4.00 on the client, so a server finds out before sending.
    pub fn check(&self) -> Result<(), Lwm2mError> {
        let bad = |what: &str, path: &Path| {
            Err(Lwm2mError::BadRequest(format!(
                "Bootstrap-{what} cannot address {path}"
            )))
        };
        match self {
            Self::Discover(p) if p.instance_id().is_some() => bad("Discover", p),
            Self::Read { path, .. }
                if !matches!(path.object_id(), Some(SERVER | ACCESS_CONTROL))
                    || !at_most_instance(path) =>
            {
                bad("Read", path)
            }
            Self::Write { path, .. } if path.object_id().is_none() => bad("Write", path),
            Self::Delete(p) if !at_most_instance(p) => bad("Delete", p),
            _ => Ok(()),
        }
    }

    /// Builds the request the bootstrap server sends.
    pub fn to_coap(&self) -> Packet {
        match self {
            Self::Discover(path) => {
                let mut p = msg::request(RequestType::Get, &path.to_string());
                set_format(&mut p, CoapOption::Accept, ContentFormat::LinkFormat);
                p
            }
            Self::Read { path, accept } => {
                let mut p = msg::request(RequestType::Get, &path.to_string());
                if let Some(f) = accept {
                    set_format(&mut p, CoapOption::Accept, *f);
                }
                p
            }
            Self::Write {
                path,
                format,
                payload,
            } => {
                let mut p = msg::request(RequestType::Put, &path.to_string());
                set_format(&mut p, CoapOption::ContentFormat, *format);
                p.payload = payload.clone();
                p
            }
            Self::Delete(path) => msg::request(RequestType::Delete, &path.to_string()),
            Self::Finish => msg::request(RequestType::Post, BS),
        }
    }

    /// Reads a request from the bootstrap server, as the client role receives it. A GET
    /// asking for link-format is a Discover, any other GET a Read.
    pub fn from_coap(packet: &Packet) -> Result<Self, Lwm2mError> {
        let MessageClass::Request(method) = packet.header.code else {
            return Err(Lwm2mError::MethodNotAllowed);
        };
        let op = match method {
            RequestType::Post if msg::uri_path(packet) == BS => Self::Finish,
            RequestType::Get => {
                let path = request_path(packet)?;
                match option_format(packet, CoapOption::Accept)? {
                    Some(ContentFormat::LinkFormat) => Self::Discover(path),
                    accept => Self::Read { path, accept },
                }
            }
            RequestType::Put => Self::Write {
                path: request_path(packet)?,
                format: option_format(packet, CoapOption::ContentFormat)?.ok_or_else(|| {
                    Lwm2mError::BadRequest("Bootstrap-Write without Content-Format".into())
                })?,
                payload: packet.payload.clone(),
            },
            RequestType::Delete => Self::Delete(request_path(packet)?),
            _ => return Err(Lwm2mError::MethodNotAllowed),
        };
        op.check()?;
        Ok(op)
    }
}

/// One instance a Bootstrap-Discover answer lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveredInstance {
    /// `/{object}/{instance}`.
    pub path: Path,
    /// `ssid`: the Short Server ID of a Security or Server instance (none for the bootstrap
    /// server's own Security instance).
    pub ssid: Option<u16>,
    /// `uri`: the server URI of a Security instance.
    pub uri: Option<String>,
}

/// The answer to a Bootstrap-Discover (Core §6.1.7): the enabler version, the objects the
/// client has, and its instances with their `ssid` and `uri`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Discovery {
    /// `lwm2m` on the root link (`</>;lwm2m=1.1`), if given.
    pub version: Option<String>,
    /// Objects listed (with or without instances).
    pub objects: BTreeSet<u16>,
    /// Instances listed, in payload order.
    pub instances: Vec<DiscoveredInstance>,
}

impl Discovery {
    /// Reads a Bootstrap-Discover answer. Links that are not object-model paths are skipped
    /// (a client may list other resources); an `ssid` outside 1..=`MAX_ID` is ignored rather
    /// than failing the whole answer.
    pub fn parse(payload: &[u8]) -> Result<Self, Lwm2mError> {
        let links = link_format::parse(payload).map_err(|e| {
            Lwm2mError::BadRequest(format!("invalid Bootstrap-Discover answer: {e}"))
        })?;
        let mut out = Discovery::default();
        for link in links {
            if link.target == "/" {
                out.version = link.attr("lwm2m").map(str::to_owned);
                continue;
            }
            let Ok(path) = Path::parse(&link.target) else {
                continue;
            };
            let Some(object) = path.object_id() else {
                continue;
            };
            out.objects.insert(object);
            if path.instance_id().is_some() && path.resource_id().is_none() {
                out.instances.push(DiscoveredInstance {
                    path,
                    ssid: link
                        .attr("ssid")
                        .and_then(|s| s.parse::<u16>().ok())
                        .filter(|s| (1..=crate::model::MAX_ID).contains(s)),
                    uri: link.attr("uri").map(str::to_owned),
                });
            }
        }
        Ok(out)
    }

    /// The instances of `object`.
    pub fn instances_of(&self, object: u16) -> impl Iterator<Item = &DiscoveredInstance> {
        self.instances
            .iter()
            .filter(move |i| i.path.object_id() == Some(object))
    }

    /// The bootstrap server's own Security instance: the one without an `ssid` (Core
    /// §6.1.7; the Bootstrap-Delete of the Security object must spare it).
    pub fn bootstrap_security_instance(&self) -> Option<u16> {
        self.instances_of(SECURITY)
            .find(|i| i.ssid.is_none())
            .and_then(|i| i.path.instance_id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_bootstrap_request_round_trips_and_names_its_preferred_format() {
        let req = BootstrapRequest {
            endpoint: "meter-17".into(),
            preferred_format: Some(ContentFormat::SenmlCbor),
            extra: vec![("x".into(), None)],
        };
        let p = req.to_coap();
        assert_eq!(msg::uri_path(&p), "/bs");
        assert_eq!(BootstrapRequest::from_coap(&p), Ok(req));
        let p = BootstrapRequest::new("meter-18").to_coap();
        assert_eq!(
            BootstrapRequest::from_coap(&p).map(|r| r.preferred_format),
            Ok(None)
        );
    }

    #[test]
    fn a_bootstrap_request_without_a_name_or_with_an_unknown_format_is_refused() {
        let mut p = msg::request(RequestType::Post, "/bs");
        assert!(matches!(
            BootstrapRequest::from_coap(&p),
            Err(Lwm2mError::BadRequest(m)) if m.contains("ep")
        ));
        p.add_option(CoapOption::UriQuery, b"ep=a".to_vec());
        p.add_option(CoapOption::UriQuery, b"pct=65000".to_vec());
        assert!(matches!(
            BootstrapRequest::from_coap(&p),
            Err(Lwm2mError::BadRequest(m)) if m.contains("pct")
        ));
    }

    #[test]
    fn a_pack_request_round_trips() {
        let req = PackRequest {
            endpoint: "meter-17".into(),
            accept: Some(ContentFormat::SenmlCbor),
        };
        let p = req.to_coap();
        assert_eq!(msg::uri_path(&p), "/bspack");
        assert_eq!(PackRequest::from_coap(&p), Ok(req));
    }

    #[test]
    fn every_server_operation_round_trips_through_coap() {
        for op in [
            BootstrapOp::Discover(Path::ROOT),
            BootstrapOp::Discover(Path::object(SECURITY)),
            BootstrapOp::Read {
                path: Path::instance(SERVER, 0),
                accept: Some(ContentFormat::Tlv),
            },
            BootstrapOp::Read {
                path: Path::object(ACCESS_CONTROL),
                accept: None,
            },
            BootstrapOp::Write {
                path: Path::instance(SECURITY, 1),
                format: ContentFormat::Tlv,
                payload: vec![0xc8, 0, 3, b'u', b'r', b'i'],
            },
            BootstrapOp::Delete(Path::ROOT),
            BootstrapOp::Delete(Path::instance(SERVER, 0)),
            BootstrapOp::Finish,
        ] {
            assert_eq!(
                BootstrapOp::from_coap(&op.to_coap()),
                Ok(op.clone()),
                "{op:?}"
            );
        }
    }

    #[test]
    fn operations_outside_what_bootstrap_may_address_are_refused() {
        for op in [
            BootstrapOp::Read {
                path: Path::object(3),
                accept: None,
            },
            BootstrapOp::Read {
                path: Path::resource(SERVER, 0, 1),
                accept: None,
            },
            BootstrapOp::Discover(Path::instance(SECURITY, 0)),
            BootstrapOp::Delete(Path::resource(SECURITY, 0, 0)),
            BootstrapOp::Write {
                path: Path::ROOT,
                format: ContentFormat::Tlv,
                payload: Vec::new(),
            },
        ] {
            assert!(op.check().is_err(), "{op:?}");
            assert!(BootstrapOp::from_coap(&op.to_coap()).is_err(), "{op:?}");
        }
        let post = msg::request(RequestType::Post, "/1/0");
        assert_eq!(
            BootstrapOp::from_coap(&post),
            Err(Lwm2mError::MethodNotAllowed)
        );
    }

    /// An answer in the shape of the Core specification's example (a 1.1 client with a bootstrap server, one LwM2M
    /// server and its Server instance).
    #[test]
    fn a_discover_answer_names_the_bootstrap_server_s_own_instance() {
        let answer = br#"</>;lwm2m=1.1,</0/0>;uri="coap://bootstrap.example.com",</0/1>;ssid=101;uri="coaps://server_1.example.com",</1>,</1/0>;ssid=101,</2/0>,</2/1>,</3/0>,</4/0>,</5>"#;
        let d = Discovery::parse(answer).unwrap();
        assert_eq!(d.version.as_deref(), Some("1.1"));
        assert_eq!(
            d.objects,
            BTreeSet::from([SECURITY, SERVER, ACCESS_CONTROL, 3, 4, 5])
        );
        assert_eq!(d.bootstrap_security_instance(), Some(0));
        let servers: Vec<_> = d
            .instances_of(SECURITY)
            .filter(|i| i.ssid.is_some())
            .collect();
        assert_eq!(servers.len(), 1);
        assert_eq!(servers[0].ssid, Some(101));
        assert_eq!(
            servers[0].uri.as_deref(),
            Some("coaps://server_1.example.com")
        );
        assert_eq!(d.instances_of(SERVER).count(), 1);
    }

    #[test]
    fn a_discover_answer_without_a_bootstrap_instance_says_so() {
        let d = Discovery::parse(b"</>;lwm2m=1.0,</0/3>;ssid=7,</1/0>;ssid=7").unwrap();
        assert_eq!(d.bootstrap_security_instance(), None);
        assert!(Discovery::parse(b"<unterminated").is_err());
    }

    proptest! {
        #[test]
        fn reading_any_request_or_answer_never_panics(
            payload in proptest::collection::vec(any::<u8>(), 0..300),
            query in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..4),
            path in "(/[0-9a-z]{0,6}){0,5}",
            method in 1u8..=4,
        ) {
            let _ = Discovery::parse(&payload);
            let method = match method {
                1 => RequestType::Get,
                2 => RequestType::Post,
                3 => RequestType::Put,
                _ => RequestType::Delete,
            };
            let mut p = msg::request(method, if path.is_empty() { "/" } else { &path });
            for q in query {
                p.add_option(CoapOption::UriQuery, q);
            }
            p.payload = payload;
            let _ = BootstrapRequest::from_coap(&p);
            let _ = PackRequest::from_coap(&p);
            let _ = BootstrapOp::from_coap(&p);
        }
    }
}
