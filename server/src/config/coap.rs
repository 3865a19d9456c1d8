//! `[coap]`: the CoAP transmission parameters (RFC 7252 §4.8) and the block size of
//! block-wise transfers (RFC 7959).
use super::limits::{
    ACK_RANDOM_FACTOR, ACK_TIMEOUT_MS, BLOCK_SIZE, DEDUP_CAPACITY, MAX_RETRANSMIT, NSTART,
};
use super::{check, range_text, ConfigError};
use lwm2m::coap::{EndpointConfig, TransmissionParams};
use serde::Deserialize;
use std::time::Duration;

/// `[coap]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CoapSection {
    /// ACK_TIMEOUT in milliseconds; 100..=600000 ([`super::limits::ACK_TIMEOUT_MS`]).
    pub ack_timeout_ms: u64,
    /// ACK_RANDOM_FACTOR; 1.0..=4.0 ([`super::limits::ACK_RANDOM_FACTOR`]; NaN is refused).
    pub ack_random_factor: f64,
    /// MAX_RETRANSMIT; 0..=10 ([`super::limits::MAX_RETRANSMIT`]): the backoff doubles per
    /// retransmission, so this bounds an exchange's lifetime.
    pub max_retransmit: u8,
    /// NSTART; 1..=32 ([`super::limits::NSTART`]).
    pub nstart: u8,
    /// Block size in bytes: a power of two in 16..=1024 ([`super::limits::BLOCK_SIZE`]).
    pub block_size: usize,
    /// Answers kept for duplicate detection (RFC 7252 §4.5) at most, the oldest dropped first;
    /// 1000..=10000000 ([`super::limits::DEDUP_CAPACITY`]).
    pub dedup_capacity: usize,
}

impl Default for CoapSection {
    fn default() -> Self {
        Self {
            ack_timeout_ms: 2000,
            ack_random_factor: 1.5,
            max_retransmit: 4,
            nstart: 1,
            block_size: 1024,
            dedup_capacity: 200_000,
        }
    }
}

impl CoapSection {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        check("coap.ack_timeout_ms", self.ack_timeout_ms, &ACK_TIMEOUT_MS)?;
        check(
            "coap.ack_random_factor",
            self.ack_random_factor,
            &ACK_RANDOM_FACTOR,
        )?;
        check("coap.max_retransmit", self.max_retransmit, &MAX_RETRANSMIT)?;
        check("coap.nstart", self.nstart, &NSTART)?;
        check(
            "coap.dedup_capacity",
            u64::try_from(self.dedup_capacity).unwrap_or(u64::MAX),
            &DEDUP_CAPACITY,
        )?;
        if !BLOCK_SIZE.contains(&self.block_size) || !self.block_size.is_power_of_two() {
            return Err(ConfigError::OutOfRange {
                key: "coap.block_size",
                value: self.block_size.to_string(),
                range: format!("a power of two in {}", range_text(&BLOCK_SIZE)),
            });
        }
        Ok(())
    }

    /// The CoAP endpoint settings.
    pub(super) fn endpoint(&self) -> EndpointConfig {
        EndpointConfig {
            transmission: TransmissionParams {
                ack_timeout: Duration::from_millis(self.ack_timeout_ms),
                ack_random_factor: self.ack_random_factor,
                max_retransmit: self.max_retransmit,
                nstart: self.nstart,
                ..TransmissionParams::default()
            },
            // 16..=1024 bytes (checked at load) are SZX 0..=6.
            block_szx: lwm2m::coap::msg::szx_of(self.block_size),
            dedup_capacity: self.dedup_capacity,
            ..EndpointConfig::default()
        }
    }
}
