//! The CoAP options every LwM2M interface reads and writes the same way (OMA LwM2M TS 1.2
//! Transport §6): Content-Format and Accept as typed [`ContentFormat`]s, and Uri-Path as an
//! object-model [`Path`]; and the query parameters Registration and Bootstrap share.
use super::Lwm2mError;
use crate::coap::{msg, CoapOption, Packet};
use crate::content::ContentFormat;
use crate::model::Path;

/// The longest endpoint name accepted; longer ones are refused 4.00 so that a peer cannot
/// make a server store arbitrary amounts per device.
pub const MAX_ENDPOINT_LEN: usize = 255;

/// The Content-Format or Accept option. A format this crate does not know is refused the way
/// Transport §6.3 says: 4.06 for Accept, 4.15 for Content-Format.
pub(super) fn option_format(
    packet: &Packet,
    opt: CoapOption,
) -> Result<Option<ContentFormat>, Lwm2mError> {
    match msg::uint_option(packet, opt) {
        None => Ok(None),
        Some(code) => match u16::try_from(code).ok().and_then(ContentFormat::from_code) {
            Some(f) => Ok(Some(f)),
            None if opt == CoapOption::Accept => Err(Lwm2mError::NotAcceptable),
            None => Err(Lwm2mError::UnsupportedContentFormat),
        },
    }
}

pub(super) fn set_format(packet: &mut Packet, opt: CoapOption, format: ContentFormat) {
    msg::set_uint_option(packet, opt, u32::from(format.code()));
}

/// The request's Uri-Path as a path; one that is not an object-model path is a 4.00.
pub(super) fn request_path(packet: &Packet) -> Result<Path, Lwm2mError> {
    let segs = packet.get_option(CoapOption::UriPath).into_iter().flatten();
    Path::from_segments(segs).map_err(|e| Lwm2mError::BadRequest(e.to_string()))
}

/// The `name=value` query parameters of a request, decoded as UTF-8.
pub(super) fn query_params(packet: &Packet) -> Result<Vec<(String, Option<String>)>, Lwm2mError> {
    let mut out = Vec::new();
    for q in packet
        .get_option(CoapOption::UriQuery)
        .into_iter()
        .flatten()
    {
        let q = std::str::from_utf8(q)
            .map_err(|_| Lwm2mError::BadRequest("query is not UTF-8".into()))?;
        match q.split_once('=') {
            Some((k, v)) => out.push((k.to_string(), Some(v.to_string()))),
            None => out.push((q.to_string(), None)),
        }
    }
    Ok(out)
}

/// The `ep` query parameter: an endpoint name of 1 to [`MAX_ENDPOINT_LEN`] bytes.
pub(super) fn endpoint_name(v: Option<String>) -> Result<String, Lwm2mError> {
    v.filter(|e| !e.is_empty() && e.len() <= MAX_ENDPOINT_LEN)
        .ok_or_else(|| {
            Lwm2mError::BadRequest(format!(
                "ep (the endpoint name) must be 1 to {MAX_ENDPOINT_LEN} bytes"
            ))
        })
}

/// A query parameter as written: `name=value`, or a bare `name`.
pub(super) fn query_param(name: &str, value: Option<&str>) -> String {
    match value {
        Some(v) => format!("{name}={v}"),
        None => name.to_string(),
    }
}
