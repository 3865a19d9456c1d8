//! `[firmware]`: firmware update (OMA LwM2M TS 1.2 Core Appendix E.6, Object 5): where
//! packages are served for pull (RFC 7959 Block2), how they are pushed (Block1), how long a
//! device may take in each phase of an update, and the size limits of the package store.
use super::limits::{
    FIRMWARE_CONCURRENCY, FIRMWARE_PHASE_TIMEOUT_SECS, MAX_PACKAGE_BYTES, MAX_TOTAL_PACKAGE_BYTES,
    PUSH_BLOCK_INTERVAL_MS, PUSH_BLOCK_SIZE,
};
use super::{as_u64, check, ConfigError};
use serde::Deserialize;

/// `[firmware]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FirmwareSection {
    /// Serve packages and run campaigns.
    pub enabled: bool,
    /// The URI path packages are served under: `{path}/{package id}`.
    pub path: String,
    /// The base URI a device registered over DTLS pulls from (the Package URI written to
    /// `/5/0/1` is `{coaps_uri}/{path}/{id}`): this server's CoAPs address as devices reach it.
    pub coaps_uri: String,
    /// The same for devices registered over plain CoAP.
    pub coap_uri: String,
    /// Largest package accepted, in bytes.
    pub max_package_bytes: u64,
    /// All packages together, in bytes (they are held in memory to be served).
    pub max_total_bytes: u64,
    /// Block size of a push (Block1), a power of two in 16..=1024; a device may ask for
    /// smaller blocks (4.13).
    pub push_block_size: usize,
    /// Pause between two blocks of a push, in milliseconds (0: lock-step only), so that one
    /// narrowband device is not flooded.
    pub push_block_interval_ms: u64,
    /// Seconds a device may take to get the package (pull or push) before it is stuck.
    pub download_timeout_secs: u64,
    /// Seconds from Execute Update to the device's registration with the new firmware.
    pub update_timeout_secs: u64,
    /// Devices updated at once per campaign unless the campaign says otherwise.
    pub default_concurrency: usize,
}

impl Default for FirmwareSection {
    fn default() -> Self {
        Self {
            enabled: true,
            path: "fw".to_string(),
            coaps_uri: "coaps://127.0.0.1:5684".to_string(),
            coap_uri: "coap://127.0.0.1:5683".to_string(),
            max_package_bytes: 16 << 20,
            max_total_bytes: 256 << 20,
            push_block_size: 512,
            push_block_interval_ms: 0,
            download_timeout_secs: 3600,
            update_timeout_secs: 900,
            default_concurrency: 10,
        }
    }
}

impl FirmwareSection {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        check(
            "firmware.max_package_bytes",
            self.max_package_bytes,
            &MAX_PACKAGE_BYTES,
        )?;
        check(
            "firmware.max_total_bytes",
            self.max_total_bytes,
            &MAX_TOTAL_PACKAGE_BYTES,
        )?;
        check(
            "firmware.push_block_size",
            self.push_block_size,
            &PUSH_BLOCK_SIZE,
        )?;
        if !self.push_block_size.is_power_of_two() {
            return bad(format!(
                "firmware.push_block_size = {} must be a power of two",
                self.push_block_size
            ));
        }
        check(
            "firmware.push_block_interval_ms",
            self.push_block_interval_ms,
            &PUSH_BLOCK_INTERVAL_MS,
        )?;
        check(
            "firmware.download_timeout_secs",
            self.download_timeout_secs,
            &FIRMWARE_PHASE_TIMEOUT_SECS,
        )?;
        check(
            "firmware.update_timeout_secs",
            self.update_timeout_secs,
            &FIRMWARE_PHASE_TIMEOUT_SECS,
        )?;
        check(
            "firmware.default_concurrency",
            as_u64(self.default_concurrency),
            &FIRMWARE_CONCURRENCY,
        )?;
        if self.path.is_empty()
            || self.path.contains(['/', '?', '#'])
            || self.path == "rd"
            || self.path == "dp"
            || self.path == "bs"
        {
            return bad(format!(
                "firmware.path {:?} must be one URI path segment other than rd, dp and bs",
                self.path
            ));
        }
        for (key, uri, scheme) in [
            ("firmware.coaps_uri", &self.coaps_uri, "coaps://"),
            ("firmware.coap_uri", &self.coap_uri, "coap://"),
        ] {
            if !uri.starts_with(scheme) || uri.ends_with('/') {
                return bad(format!(
                    "{key} {uri:?} must start with {scheme} and not end with /"
                ));
            }
        }
        Ok(())
    }
}
