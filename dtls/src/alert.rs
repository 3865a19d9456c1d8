//! Alert messages (RFC 5246 §7.2): the reason a connection ends, sent to the peer and
//! reported to the application.
use crate::codec::{DecodeError, Reader};

/// Alert level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertLevel {
    Warning = 1,
    Fatal = 2,
}

/// The alert descriptions this engine sends or understands; others are kept by number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertDescription {
    CloseNotify,
    UnexpectedMessage,
    BadRecordMac,
    RecordOverflow,
    HandshakeFailure,
    BadCertificate,
    UnsupportedCertificate,
    CertificateRevoked,
    CertificateExpired,
    CertificateUnknown,
    IllegalParameter,
    UnknownCa,
    AccessDenied,
    DecodeError,
    DecryptError,
    ProtocolVersion,
    InsufficientSecurity,
    InternalError,
    UnsupportedExtension,
    UnknownPskIdentity,
    Other(u8),
}

impl AlertDescription {
    pub fn code(self) -> u8 {
        match self {
            Self::CloseNotify => 0,
            Self::UnexpectedMessage => 10,
            Self::BadRecordMac => 20,
            Self::RecordOverflow => 22,
            Self::HandshakeFailure => 40,
            Self::BadCertificate => 42,
            Self::UnsupportedCertificate => 43,
            Self::CertificateRevoked => 44,
            Self::CertificateExpired => 45,
            Self::CertificateUnknown => 46,
            Self::IllegalParameter => 47,
            Self::UnknownCa => 48,
            Self::AccessDenied => 49,
            Self::DecodeError => 50,
            Self::DecryptError => 51,
            Self::ProtocolVersion => 70,
            Self::InsufficientSecurity => 71,
            Self::InternalError => 80,
            Self::UnsupportedExtension => 110,
            Self::UnknownPskIdentity => 115,
            Self::Other(c) => c,
        }
    }

    pub fn from_code(code: u8) -> Self {
        [
            Self::CloseNotify,
            Self::UnexpectedMessage,
            Self::BadRecordMac,
            Self::RecordOverflow,
            Self::HandshakeFailure,
            Self::BadCertificate,
            Self::UnsupportedCertificate,
            Self::CertificateRevoked,
            Self::CertificateExpired,
            Self::CertificateUnknown,
            Self::IllegalParameter,
            Self::UnknownCa,
            Self::AccessDenied,
            Self::DecodeError,
            Self::DecryptError,
            Self::ProtocolVersion,
            Self::InsufficientSecurity,
            Self::InternalError,
            Self::UnsupportedExtension,
            Self::UnknownPskIdentity,
        ]
        .into_iter()
        .find(|d| d.code() == code)
        .unwrap_or(Self::Other(code))
    }
}

/// One alert message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Alert {
    pub level: AlertLevel,
    pub description: AlertDescription,
}

impl Alert {
    pub fn fatal(description: AlertDescription) -> Self {
        Self {
            level: AlertLevel::Fatal,
            description,
        }
    }

    pub fn close_notify() -> Self {
        Self {
            level: AlertLevel::Warning,
            description: AlertDescription::CloseNotify,
        }
    }

    pub fn encode(self) -> [u8; 2] {
        [self.level as u8, self.description.code()]
    }

    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(buf);
        let level = match r.u8()? {
            1 => AlertLevel::Warning,
            2 => AlertLevel::Fatal,
            other => {
                return Err(DecodeError::OutOfRange {
                    field: "AlertLevel",
                    value: other.into(),
                    min: 1,
                    max: 2,
                })
            }
        };
        let description = AlertDescription::from_code(r.u8()?);
        r.finish()?;
        Ok(Self { level, description })
    }
}

impl std::fmt::Display for AlertDescription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Other(c) => write!(f, "alert {c}"),
            d => write!(f, "{d:?}"),
        }
    }
}
