//! The Update Result codes of the Firmware Update object (OMA LwM2M TS 1.2 Core Appendix
//! E.6, `/5/0/5`, codes 0 to 11) as named outcomes, and the outcomes' names as stored.
use crate::core::types::FirmwareOutcome;

impl FirmwareOutcome {
    /// The outcome an Update Result code names; `None` for 0 (Initial value: nothing yet).
    pub const fn from_result(code: i64) -> Option<Self> {
        Some(match code {
            0 => return None,
            1 => Self::Success,
            2 => Self::NotEnoughFlash,
            3 => Self::OutOfRam,
            4 => Self::ConnectionLost,
            5 => Self::IntegrityFailure,
            6 => Self::UnsupportedPackage,
            7 => Self::InvalidUri,
            8 => Self::UpdateFailed,
            9 => Self::UnsupportedProtocol,
            10 => Self::Cancelled,
            11 => Self::Deferred,
            other => Self::UnknownResult(other),
        })
    }

    /// The outcome named `name` (as [`as_str`](Self::as_str) gives it); `result` is the
    /// device's code, which `unknown_result` carries.
    pub fn from_name(name: &str, result: Option<i64>) -> Option<Self> {
        Some(match name {
            "success" => Self::Success,
            "not_enough_flash" => Self::NotEnoughFlash,
            "out_of_ram" => Self::OutOfRam,
            "connection_lost" => Self::ConnectionLost,
            "integrity_failure" => Self::IntegrityFailure,
            "unsupported_package" => Self::UnsupportedPackage,
            "invalid_uri" => Self::InvalidUri,
            "update_failed" => Self::UpdateFailed,
            "unsupported_protocol" => Self::UnsupportedProtocol,
            "cancelled" => Self::Cancelled,
            "deferred" => Self::Deferred,
            "unknown_result" => Self::UnknownResult(result.unwrap_or(-1)),
            "timeout" => Self::Timeout,
            "command_failed" => Self::CommandFailed,
            "no_result" => Self::NoResult,
            "version_mismatch" => Self::VersionMismatch,
            _ => return None,
        })
    }

    /// Whether the device runs the new firmware.
    pub const fn is_success(self) -> bool {
        matches!(self, Self::Success)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_named_and_names_round_trip() {
        assert_eq!(FirmwareOutcome::from_result(0), None);
        let mut names = std::collections::BTreeSet::new();
        for code in 1..=11 {
            let o = FirmwareOutcome::from_result(code).unwrap();
            assert!(!matches!(o, FirmwareOutcome::UnknownResult(_)), "{code}");
            assert_eq!(FirmwareOutcome::from_name(o.as_str(), Some(code)), Some(o));
            names.insert(o.as_str());
        }
        assert_eq!(names.len(), 11);
        assert_eq!(
            FirmwareOutcome::from_result(5),
            Some(FirmwareOutcome::IntegrityFailure)
        );
        assert_eq!(
            FirmwareOutcome::from_result(12),
            Some(FirmwareOutcome::UnknownResult(12))
        );
        for name in FirmwareOutcome::NAMES {
            let o = FirmwareOutcome::from_name(name, Some(40)).unwrap();
            assert_eq!(o.as_str(), name);
        }
    }
}
