//! The Registration interface (OMA LwM2M TS 1.2 Core §6.2; Transport §6.2, Table 6.2.1-1):
//! Register, Update and De-register as typed values, both from and to CoAP, so the server
//! parses what the client role builds.
//!
//! - Register: `POST /rd?ep={name}&lt={s}&lwm2m={v}&b={binding}&sms={msisdn}&Q` with the
//!   object links as payload; answered 2.01 with the registration's Location-Path.
//! - Update: `POST /rd/{location}?lt=..&b=..&sms=..` with object links only if they changed;
//!   answered 2.04.
//! - De-register: `DELETE /rd/{location}`; answered 2.02.
use super::options::{endpoint_name, query_param, query_params};
use super::Lwm2mError;
use crate::coap::{msg, CoapOption, ContentFormat as CoapContentFormat, Packet, RequestType};
use crate::content::link::ObjectLinks;
use crate::content::negotiate::Lwm2mVersion;
use std::fmt;

/// The default registration lifetime when `lt` is absent (Core §6.2.1).
pub const DEFAULT_LIFETIME: u32 = 86_400;
pub use super::options::MAX_ENDPOINT_LEN;

/// The transports a client can be reached over (Core §6.2.1.1 "b" parameter).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Binding {
    /// U: UDP.
    pub udp: bool,
    /// T: TCP (1.1+).
    pub tcp: bool,
    /// S: SMS.
    pub sms: bool,
    /// N: Non-IP (1.1+).
    pub non_ip: bool,
}

impl Binding {
    /// UDP only, the default.
    pub const UDP: Binding = Binding {
        udp: true,
        tcp: false,
        sms: false,
        non_ip: false,
    };

    /// Parses a binding string. LwM2M 1.0 wrote queue mode into it (`UQ`, `UQS`); that `Q`
    /// is returned as the second value.
    pub fn parse(s: &str) -> Result<(Binding, bool), Lwm2mError> {
        let mut b = Binding::default();
        let mut queue = false;
        for c in s.chars() {
            match c {
                'U' => b.udp = true,
                'T' => b.tcp = true,
                'S' => b.sms = true,
                'N' => b.non_ip = true,
                'Q' => queue = true,
                _ => return Err(Lwm2mError::BadRequest(format!("invalid binding {s:?}"))),
            }
        }
        if b == Binding::default() {
            return Err(Lwm2mError::BadRequest(format!("invalid binding {s:?}")));
        }
        Ok((b, queue))
    }
}

impl fmt::Display for Binding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (on, c) in [
            (self.udp, "U"),
            (self.tcp, "T"),
            (self.sms, "S"),
            (self.non_ip, "N"),
        ] {
            if on {
                f.write_str(c)?;
            }
        }
        Ok(())
    }
}

/// A Register request.
#[derive(Debug, Clone, PartialEq)]
pub struct Register {
    /// `ep`: the endpoint client name.
    pub endpoint: String,
    /// `lt`: lifetime in seconds.
    pub lifetime: u32,
    /// `lwm2m`: the enabler version.
    pub version: Lwm2mVersion,
    /// `b`: the binding.
    pub binding: Binding,
    /// `Q` (or `Q` in a 1.0 binding): the client sleeps between exchanges (Transport §6.5).
    pub queue_mode: bool,
    /// `sms`: the MSISDN.
    pub sms: Option<String>,
    /// The object links of the payload.
    pub links: ObjectLinks,
    /// Query parameters this version does not define, kept as given.
    pub extra: Vec<(String, Option<String>)>,
}

/// An Update request. `None` means "unchanged".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Update {
    /// `lt`
    pub lifetime: Option<u32>,
    /// `b`, and the queue flag a 1.0 binding carries.
    pub binding: Option<(Binding, bool)>,
    /// `sms`
    pub sms: Option<String>,
    /// The object links, when the client sent them.
    pub links: Option<ObjectLinks>,
}

/// `lt` (Core §6.2.1: the Lifetime resource, an unsigned 32-bit number of seconds) must be
/// 1..=4294967295; 0 would expire at once.
fn parse_lifetime(v: Option<&str>) -> Result<u32, Lwm2mError> {
    v.and_then(|v| v.parse::<u32>().ok())
        .filter(|lt| *lt > 0)
        .ok_or_else(|| {
            Lwm2mError::BadRequest(format!(
                "lt must be a whole number of seconds from 1 to {}, not {:?}",
                u32::MAX,
                v.unwrap_or_default().chars().take(32).collect::<String>()
            ))
        })
}

fn parse_links(packet: &Packet) -> Result<Option<ObjectLinks>, Lwm2mError> {
    if packet.payload.is_empty() {
        return Ok(None);
    }
    crate::content::link::parse_registration_links(&packet.payload)
        .map(Some)
        .map_err(|e| Lwm2mError::BadRequest(format!("invalid object links: {e}")))
}

impl Register {
    /// A registration with defaults for everything but the name and the links.
    pub fn new(endpoint: impl Into<String>, links: ObjectLinks) -> Self {
        Self {
            endpoint: endpoint.into(),
            lifetime: DEFAULT_LIFETIME,
            version: Lwm2mVersion::V1_1,
            binding: Binding::UDP,
            queue_mode: false,
            sms: None,
            links,
            extra: Vec::new(),
        }
    }

    /// Reads a Register request (the caller has checked it is a POST to `/rd`).
    pub fn from_coap(packet: &Packet) -> Result<Self, Lwm2mError> {
        let mut endpoint = None;
        let mut lifetime = DEFAULT_LIFETIME;
        let mut version = None;
        let mut binding = None;
        let mut queue = false;
        let mut sms = None;
        let mut extra = Vec::new();
        for (k, v) in query_params(packet)? {
            match k.as_str() {
                "ep" => endpoint = v,
                "lt" => lifetime = parse_lifetime(v.as_deref())?,
                "lwm2m" => version = Some(v),
                "b" => binding = Some(Binding::parse(v.as_deref().unwrap_or_default())?),
                "sms" => sms = v,
                "Q" => queue = true,
                _ => extra.push((k, v)),
            }
        }
        let endpoint = endpoint_name(endpoint)?;
        let version = match version {
            None => Lwm2mVersion::V1_0,
            Some(v) => Lwm2mVersion::parse(v.as_deref()).ok_or_else(|| {
                Lwm2mError::BadRequest(format!(
                    "unsupported LwM2M version {:?}: only 1.x is served",
                    v.unwrap_or_default().chars().take(16).collect::<String>()
                ))
            })?,
        };
        let (binding, binding_queue) = binding.unwrap_or((Binding::UDP, false));
        let links = parse_links(packet)?.unwrap_or_default();
        Ok(Self {
            endpoint,
            lifetime,
            version,
            binding,
            queue_mode: queue || binding_queue,
            sms,
            links,
            extra,
        })
    }

    /// Builds the Register request for the server's registration URI (`/rd`).
    pub fn to_coap(&self) -> Packet {
        let mut p = msg::request(RequestType::Post, "/rd");
        let mut query = vec![
            format!("ep={}", self.endpoint),
            format!("lt={}", self.lifetime),
        ];
        if self.version != Lwm2mVersion::V1_0 {
            query.push(format!("lwm2m={}", self.version.as_str()));
        }
        if self.version == Lwm2mVersion::V1_0 && self.queue_mode {
            query.push(format!("b={}Q", self.binding));
        } else {
            query.push(format!("b={}", self.binding));
        }
        if let Some(sms) = &self.sms {
            query.push(format!("sms={sms}"));
        }
        for (k, v) in &self.extra {
            query.push(query_param(k, v.as_deref()));
        }
        if self.queue_mode && self.version != Lwm2mVersion::V1_0 {
            query.push("Q".into());
        }
        for q in query {
            p.add_option(CoapOption::UriQuery, q.into_bytes());
        }
        p.set_content_format(CoapContentFormat::ApplicationLinkFormat);
        p.payload = self.links.to_link_format().into_bytes();
        p
    }
}

impl Update {
    /// Reads an Update request (the caller has matched the registration's location).
    pub fn from_coap(packet: &Packet) -> Result<Self, Lwm2mError> {
        let mut u = Update::default();
        for (k, v) in query_params(packet)? {
            match k.as_str() {
                "lt" => u.lifetime = Some(parse_lifetime(v.as_deref())?),
                "b" => u.binding = Some(Binding::parse(v.as_deref().unwrap_or_default())?),
                "sms" => u.sms = v,
                _ => {}
            }
        }
        u.links = parse_links(packet)?;
        Ok(u)
    }

    /// Builds the Update request for the registration at `location` (`/rd/abc`).
    pub fn to_coap(&self, location: &str) -> Packet {
        let mut p = msg::request(RequestType::Post, location);
        if let Some(lt) = self.lifetime {
            p.add_option(CoapOption::UriQuery, format!("lt={lt}").into_bytes());
        }
        if let Some((b, q)) = self.binding {
            let q = if q { "Q" } else { "" };
            p.add_option(CoapOption::UriQuery, format!("b={b}{q}").into_bytes());
        }
        if let Some(sms) = &self.sms {
            p.add_option(CoapOption::UriQuery, format!("sms={sms}").into_bytes());
        }
        if let Some(links) = &self.links {
            p.set_content_format(CoapContentFormat::ApplicationLinkFormat);
            // No objects is `</>`: an empty payload would mean "links unchanged".
            let text = links.to_link_format();
            p.payload = if text.is_empty() {
                b"</>".to_vec()
            } else {
                text.into_bytes()
            };
        }
        p
    }
}

/// The De-register request for the registration at `location`.
pub fn deregister(location: &str) -> Packet {
    msg::request(RequestType::Delete, location)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn links(s: &str) -> ObjectLinks {
        crate::content::link::parse_registration_links(s.as_bytes()).unwrap()
    }

    #[test]
    fn register_round_trips_through_coap() {
        let mut r = Register::new(
            "urn:imei:490154203237518",
            links("</>;rt=\"oma.lwm2m\";ct=110,</1/0>,</3/0>;ver=1.1"),
        );
        r.lifetime = 300;
        r.queue_mode = true;
        r.sms = Some("+4915".into());
        let p = r.to_coap();
        assert_eq!(msg::uri_path(&p), "/rd");
        assert!(msg::uri_query(&p).contains(&"Q".to_string()));
        assert_eq!(Register::from_coap(&p).unwrap(), r);
    }

    #[test]
    fn register_1_0_carries_queue_in_the_binding() {
        let mut r = Register::new("dev", links("</1/0>,</3/0>"));
        r.version = Lwm2mVersion::V1_0;
        r.queue_mode = true;
        let p = r.to_coap();
        assert!(msg::uri_query(&p).contains(&"b=UQ".to_string()));
        let back = Register::from_coap(&p).unwrap();
        assert!(back.queue_mode);
        assert_eq!(back.binding, Binding::UDP);
    }

    #[test]
    fn an_update_to_no_objects_keeps_saying_so() {
        let mut p = msg::request(RequestType::Post, "/rd/x");
        p.payload = b"</>".to_vec();
        let u = Update::from_coap(&p).unwrap();
        assert!(u.links.is_some(), "</> replaces the object list");
        assert_eq!(Update::from_coap(&u.to_coap("/rd/x")), Ok(u));
    }

    #[test]
    fn register_defaults_and_refusals() {
        let p = msg::request(RequestType::Post, "/rd?ep=dev1");
        let r = Register::from_coap(&p).unwrap();
        assert_eq!(
            (r.lifetime, r.version, r.binding, r.queue_mode),
            (DEFAULT_LIFETIME, Lwm2mVersion::V1_0, Binding::UDP, false)
        );
        for bad in [
            "/rd",
            "/rd?ep=",
            "/rd?ep=a&lt=0",
            "/rd?ep=a&lt=x",
            "/rd?ep=a&b=X",
            "/rd?ep=a&lwm2m=9.9",
        ] {
            assert!(
                matches!(
                    Register::from_coap(&msg::request(RequestType::Post, bad)),
                    Err(Lwm2mError::BadRequest(_))
                ),
                "{bad}"
            );
        }
        let long = format!("/rd?ep={}", "x".repeat(MAX_ENDPOINT_LEN + 1));
        assert!(Register::from_coap(&msg::request(RequestType::Post, &long)).is_err());
    }

    #[test]
    fn update_round_trips_and_keeps_unchanged_fields_empty() {
        let u = Update {
            lifetime: Some(60),
            binding: Some((Binding::UDP, false)),
            sms: None,
            links: Some(links("</3/0>,</3303/0>")),
        };
        let p = u.to_coap("/rd/5a3f");
        assert_eq!(msg::uri_path(&p), "/rd/5a3f");
        assert_eq!(Update::from_coap(&p).unwrap(), u);
        assert_eq!(
            Update::from_coap(&msg::request(RequestType::Post, "/rd/5a3f")).unwrap(),
            Update::default()
        );
    }

    #[test]
    fn binding_strings() {
        assert_eq!(
            Binding::parse("UQS").unwrap(),
            (
                Binding {
                    udp: true,
                    sms: true,
                    ..Binding::default()
                },
                true
            )
        );
        assert_eq!(Binding::parse("UT").unwrap().0.to_string(), "UT");
        assert!(Binding::parse("").is_err());
    }
}
