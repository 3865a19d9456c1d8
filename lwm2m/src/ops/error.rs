//! LwM2M response codes as typed errors (OMA LwM2M TS 1.2 Core §6 tables of each operation,
//! Transport §6.1: LwM2M error codes map onto CoAP response codes).
use crate::coap::{MessageClass, Packet, ResponseType};

/// An LwM2M operation's failure, as a peer reports it or as we report it to a peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Lwm2mError {
    /// 4.00: the request is malformed (bad parameter, undecodable payload).
    #[error("4.00 Bad Request: {0}")]
    BadRequest(String),
    /// 4.01: the peer is not authenticated.
    #[error("4.01 Unauthorized")]
    Unauthorized,
    /// 4.02: an option is not understood.
    #[error("4.02 Bad Option")]
    BadOption,
    /// 4.03: access denied (Access Control, or an endpoint name bound to another credential).
    #[error("4.03 Forbidden")]
    Forbidden,
    /// 4.04: no such object, instance, resource or registration.
    #[error("4.04 Not Found")]
    NotFound,
    /// 4.05: the operation is not allowed on this target.
    #[error("4.05 Method Not Allowed")]
    MethodNotAllowed,
    /// 4.06: none of the acceptable content formats is supported.
    #[error("4.06 Not Acceptable")]
    NotAcceptable,
    /// 4.08: a block-wise transfer is incomplete.
    #[error("4.08 Request Entity Incomplete")]
    RequestEntityIncomplete,
    /// 4.09: the request conflicts with the current state (LwM2M 1.1+).
    #[error("4.09 Conflict")]
    Conflict,
    /// 4.12: a precondition failed (LwM2M 1.1+).
    #[error("4.12 Precondition Failed")]
    PreconditionFailed,
    /// 4.13: the payload is too large.
    #[error("4.13 Request Entity Too Large")]
    RequestEntityTooLarge,
    /// 4.15: the payload's content format is not supported.
    #[error("4.15 Unsupported Content-Format")]
    UnsupportedContentFormat,
    /// 5.00: the peer failed internally.
    #[error("5.00 Internal Server Error: {0}")]
    InternalServerError(String),
    /// 5.01: not implemented.
    #[error("5.01 Not Implemented")]
    NotImplemented,
    /// 5.03: the peer is overloaded.
    #[error("5.03 Service Unavailable")]
    ServiceUnavailable,
    /// Any other error code, as "c.dd".
    #[error("{0} (unexpected response code)")]
    Other(String),
}

impl Lwm2mError {
    /// The CoAP response code of this error.
    pub fn response_type(&self) -> ResponseType {
        match self {
            Lwm2mError::BadRequest(_) => ResponseType::BadRequest,
            Lwm2mError::Unauthorized => ResponseType::Unauthorized,
            Lwm2mError::BadOption => ResponseType::BadOption,
            Lwm2mError::Forbidden => ResponseType::Forbidden,
            Lwm2mError::NotFound => ResponseType::NotFound,
            Lwm2mError::MethodNotAllowed => ResponseType::MethodNotAllowed,
            Lwm2mError::NotAcceptable => ResponseType::NotAcceptable,
            Lwm2mError::RequestEntityIncomplete => ResponseType::RequestEntityIncomplete,
            Lwm2mError::Conflict => ResponseType::Conflict,
            Lwm2mError::PreconditionFailed => ResponseType::PreconditionFailed,
            Lwm2mError::RequestEntityTooLarge => ResponseType::RequestEntityTooLarge,
            Lwm2mError::UnsupportedContentFormat => ResponseType::UnsupportedContentFormat,
            Lwm2mError::InternalServerError(_) | Lwm2mError::Other(_) => {
                ResponseType::InternalServerError
            }
            Lwm2mError::NotImplemented => ResponseType::NotImplemented,
            Lwm2mError::ServiceUnavailable => ResponseType::ServiceUnavailable,
        }
    }

    /// The error a response reports, or `None` for a success (2.xx).
    pub fn from_response(packet: &Packet) -> Option<Self> {
        let code: u8 = packet.header.code.into();
        if code >> 5 == 2 {
            return None;
        }
        let diagnostic = || {
            String::from_utf8_lossy(&packet.payload)
                .chars()
                .take(200)
                .collect::<String>()
        };
        Some(match packet.header.code {
            MessageClass::Response(ResponseType::BadRequest) => {
                Lwm2mError::BadRequest(diagnostic())
            }
            MessageClass::Response(ResponseType::Unauthorized) => Lwm2mError::Unauthorized,
            MessageClass::Response(ResponseType::BadOption) => Lwm2mError::BadOption,
            MessageClass::Response(ResponseType::Forbidden) => Lwm2mError::Forbidden,
            MessageClass::Response(ResponseType::NotFound) => Lwm2mError::NotFound,
            MessageClass::Response(ResponseType::MethodNotAllowed) => Lwm2mError::MethodNotAllowed,
            MessageClass::Response(ResponseType::NotAcceptable) => Lwm2mError::NotAcceptable,
            MessageClass::Response(ResponseType::RequestEntityIncomplete) => {
                Lwm2mError::RequestEntityIncomplete
            }
            MessageClass::Response(ResponseType::Conflict) => Lwm2mError::Conflict,
            MessageClass::Response(ResponseType::PreconditionFailed) => {
                Lwm2mError::PreconditionFailed
            }
            MessageClass::Response(ResponseType::RequestEntityTooLarge) => {
                Lwm2mError::RequestEntityTooLarge
            }
            MessageClass::Response(ResponseType::UnsupportedContentFormat) => {
                Lwm2mError::UnsupportedContentFormat
            }
            MessageClass::Response(ResponseType::InternalServerError) => {
                Lwm2mError::InternalServerError(diagnostic())
            }
            MessageClass::Response(ResponseType::NotImplemented) => Lwm2mError::NotImplemented,
            MessageClass::Response(ResponseType::ServiceUnavailable) => {
                Lwm2mError::ServiceUnavailable
            }
            other => Lwm2mError::Other(other.to_string()),
        })
    }

    /// A response carrying this error, with a diagnostic payload where there is one
    /// (RFC 7252 §5.5.2).
    pub fn to_response(&self) -> Packet {
        let mut p = crate::coap::msg::response(self.response_type());
        if let Lwm2mError::BadRequest(d) | Lwm2mError::InternalServerError(d) = self {
            p.payload = d.as_bytes().to_vec();
        }
        p
    }
}

impl From<crate::content::CodecError> for Lwm2mError {
    fn from(e: crate::content::CodecError) -> Self {
        Lwm2mError::BadRequest(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_round_trips_through_its_response() {
        let all = [
            Lwm2mError::BadRequest("bad ep".into()),
            Lwm2mError::Unauthorized,
            Lwm2mError::BadOption,
            Lwm2mError::Forbidden,
            Lwm2mError::NotFound,
            Lwm2mError::MethodNotAllowed,
            Lwm2mError::NotAcceptable,
            Lwm2mError::RequestEntityIncomplete,
            Lwm2mError::Conflict,
            Lwm2mError::PreconditionFailed,
            Lwm2mError::RequestEntityTooLarge,
            Lwm2mError::UnsupportedContentFormat,
            Lwm2mError::InternalServerError("oops".into()),
            Lwm2mError::NotImplemented,
            Lwm2mError::ServiceUnavailable,
        ];
        for e in all {
            assert_eq!(Lwm2mError::from_response(&e.to_response()), Some(e));
        }
        assert_eq!(
            Lwm2mError::from_response(&crate::coap::msg::response(ResponseType::Content)),
            None
        );
    }
}
