//! `[queue]`: commands for sleeping devices (queue mode, OMA LwM2M TS 1.2 Transport §6.5):
//! how long a device counts as awake, and how many commands wait, and for how long.
use super::limits::{AWAKE_WINDOW_SECS, COMMAND_TTL_SECS, QUEUE_MAX_PENDING, QUEUE_MAX_PER_DEVICE};
use super::{as_u64, check, ConfigError};
use serde::Deserialize;

/// `[queue]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueSection {
    /// Seconds a queue-mode device counts as awake after an uplink; 1..=86400
    /// ([`super::limits::AWAKE_WINDOW_SECS`]).
    pub awake_window_secs: u64,
    /// Commands pending per device at most; 1..=1024 ([`super::limits::QUEUE_MAX_PER_DEVICE`]).
    pub max_per_device: usize,
    /// Default seconds a command waits for a sleeping device; 1..=2592000 (30 days, the
    /// longest `ttl` a command may ask for; [`super::limits::COMMAND_TTL_SECS`]).
    pub command_ttl_secs: u64,
    /// Commands pending in the whole server at most (queued or awaiting an answer); more
    /// fail with "overloaded". 1..=10000000 ([`super::limits::QUEUE_MAX_PENDING`]).
    pub max_pending: usize,
}

impl Default for QueueSection {
    fn default() -> Self {
        Self {
            awake_window_secs: 93,
            max_per_device: 64,
            command_ttl_secs: 86_400,
            max_pending: 100_000,
        }
    }
}

impl QueueSection {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        check(
            "queue.awake_window_secs",
            self.awake_window_secs,
            &AWAKE_WINDOW_SECS,
        )?;
        check(
            "queue.max_per_device",
            as_u64(self.max_per_device),
            &QUEUE_MAX_PER_DEVICE,
        )?;
        check(
            "queue.command_ttl_secs",
            self.command_ttl_secs,
            &COMMAND_TTL_SECS,
        )?;
        check(
            "queue.max_pending",
            as_u64(self.max_pending),
            &QUEUE_MAX_PENDING,
        )
    }
}
