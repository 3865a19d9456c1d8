//! The Information Reporting interface (OMA LwM2M TS 1.2 Core §6.4; Transport §6.4 for its
//! CoAP form): Observe, Observe-Composite, Cancel Observation, Notify and Send.
//!
//! | operation | CoAP |
//! | --- | --- |
//! | Observe (§6.4.1) | GET with Observe=0, Accept |
//! | Observe-Composite (§6.4.3) | FETCH / with Observe=0 and a list of paths |
//! | Notify | 2.05 responses to the Observe, same token, rising Observe numbers |
//! | Cancel Observation | RST to a notification, or GET/FETCH with Observe=1 |
//! | Send (§6.4.4) | POST /dp from client to server, SenML or LwM2M CBOR |
//!
//! Observe and Observe-Composite are variants of
//! [`DownlinkRequest`](super::dm::DownlinkRequest), the one type of server-to-client
//! requests; this module gives them their CoAP form. A notification is read like the first
//! answer, with [`DownlinkRequest::parse_response`](super::dm::DownlinkRequest::parse_response).
//! Cancelling and sequencing notifications is CoAP Observe (RFC 7641) and belongs to
//! [`crate::coap::Endpoint`]. Send, the one request a client makes on its own, is
//! [`SendRequest`].
use super::dm::read_composite_request;
use super::options::{option_format, set_format};
use super::Lwm2mError;
use crate::coap::{msg, CoapOption, Packet, RequestType};
use crate::content::{self, ContentFormat, Record};
use crate::model::{Path, Schema};

/// The Observe option value that registers an observation (RFC 7641 §2).
const OBSERVE_REGISTER: u32 = 0;

/// Observe: a Read's GET with Observe=0, so that the answer keeps coming.
pub(super) fn observe_request(path: &str, format: ContentFormat) -> Packet {
    let mut p = msg::request(RequestType::Get, path);
    msg::set_uint_option(&mut p, CoapOption::Observe, OBSERVE_REGISTER);
    set_format(&mut p, CoapOption::Accept, format);
    p
}

/// Observe-Composite: a Read-Composite's FETCH with Observe=0.
pub(super) fn observe_composite_request(
    paths: &[Path],
    format: ContentFormat,
) -> Result<Packet, Lwm2mError> {
    let mut p = read_composite_request(paths, format)?;
    msg::set_uint_option(&mut p, CoapOption::Observe, OBSERVE_REGISTER);
    Ok(p)
}

/// Whether a GET or FETCH registers an observation rather than reading once.
pub(super) fn registers_observation(packet: &Packet) -> bool {
    msg::observe(packet) == Some(OBSERVE_REGISTER)
}

/// A Send operation (Core §6.4.4, LwM2M 1.1+): `POST /dp` from client to server.
#[derive(Debug, Clone, PartialEq)]
pub struct SendRequest {
    /// The values sent, with their times when the client gave them.
    pub records: Vec<Record>,
}

impl SendRequest {
    /// Builds the CoAP request in `format` (SenML JSON/CBOR or LwM2M CBOR).
    pub fn to_coap(&self, format: ContentFormat) -> Result<Packet, Lwm2mError> {
        let mut p = msg::request(RequestType::Post, "/dp");
        p.payload = content::encode_composite(format, &self.records)?;
        set_format(&mut p, CoapOption::ContentFormat, format);
        Ok(p)
    }

    /// Reads a Send request as the server receives it.
    pub fn from_coap(
        packet: &Packet,
        schema: &dyn Schema,
    ) -> Result<(Self, ContentFormat), Lwm2mError> {
        let format = option_format(packet, CoapOption::ContentFormat)?
            .filter(|f| f.supports_composite())
            .ok_or(Lwm2mError::UnsupportedContentFormat)?;
        let records = content::decode_composite(format, &packet.payload, schema)?;
        Ok((Self { records }, format))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{NoSchema, Value};

    #[test]
    fn send_round_trips() {
        let send = SendRequest {
            records: vec![
                Record {
                    path: Path::resource(3303, 0, 5700),
                    value: Some(Value::Float(21.0)),
                    time: Some(1_700_000_000.0),
                },
                Record {
                    path: Path::resource(3303, 0, 5700),
                    value: Some(Value::Float(21.5)),
                    time: Some(1_700_000_060.0),
                },
            ],
        };
        for f in [ContentFormat::SenmlJson, ContentFormat::SenmlCbor] {
            let p = send.to_coap(f).unwrap();
            assert_eq!(msg::uri_path(&p), "/dp");
            let (back, format) = SendRequest::from_coap(&p, &NoSchema).unwrap();
            assert_eq!((back, format), (send.clone(), f));
        }
        let mut p = send.to_coap(ContentFormat::SenmlJson).unwrap();
        msg::set_uint_option(&mut p, CoapOption::ContentFormat, 11542);
        assert_eq!(
            SendRequest::from_coap(&p, &NoSchema).map(|_| ()),
            Err(Lwm2mError::UnsupportedContentFormat)
        );
    }
}
