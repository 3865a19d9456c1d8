//! Transmission parameters (RFC 7252 §4.8, §4.8.2) and the bounds of an [`Endpoint`].
//!
//! NB-IoT and LTE-M links have round trips of seconds, so the defaults of RFC 7252 are only
//! defaults: every parameter can be set per endpoint, and the derived times
//! (EXCHANGE_LIFETIME, NON_LIFETIME, MAX_TRANSMIT_WAIT) follow from them as §4.8.2 defines.
//!
//! [`Endpoint`]: super::Endpoint
use std::time::Duration;

/// The message-layer parameters of RFC 7252 §4.8.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TransmissionParams {
    /// ACK_TIMEOUT: the base retransmission timeout of a confirmable message.
    pub ack_timeout: Duration,
    /// ACK_RANDOM_FACTOR: the initial timeout is drawn from
    /// `[ack_timeout, ack_timeout * ack_random_factor]`. Must be at least 1.0.
    pub ack_random_factor: f64,
    /// MAX_RETRANSMIT: retransmissions after the first transmission.
    pub max_retransmit: u8,
    /// NSTART: outstanding interactions (requests awaiting a response) per peer.
    pub nstart: u8,
    /// MAX_LATENCY: the longest a datagram is expected to take in the network.
    pub max_latency: Duration,
    /// PROCESSING_DELAY: how long a peer may take before acknowledging.
    pub processing_delay: Duration,
}

impl Default for TransmissionParams {
    fn default() -> Self {
        Self {
            ack_timeout: Duration::from_secs(2),
            ack_random_factor: 1.5,
            max_retransmit: 4,
            nstart: 1,
            max_latency: Duration::from_secs(100),
            processing_delay: Duration::from_secs(2),
        }
    }
}

impl TransmissionParams {
    /// MAX_TRANSMIT_SPAN: time from the first transmission to the last retransmission.
    pub fn max_transmit_span(&self) -> Duration {
        let factor = ((1u64 << self.max_retransmit) - 1) as f64 * self.ack_random_factor;
        self.ack_timeout.mul_f64(factor)
    }

    /// MAX_TRANSMIT_WAIT: time from the first transmission until the sender gives up.
    pub fn max_transmit_wait(&self) -> Duration {
        let factor =
            ((1u64 << (u32::from(self.max_retransmit) + 1)) - 1) as f64 * self.ack_random_factor;
        self.ack_timeout.mul_f64(factor)
    }

    /// EXCHANGE_LIFETIME: how long a message ID must not be reused, and how long the
    /// receiver remembers it for duplicate detection.
    pub fn exchange_lifetime(&self) -> Duration {
        self.max_transmit_span() + 2 * self.max_latency + self.processing_delay
    }

    /// NON_LIFETIME: the same for non-confirmable messages.
    pub fn non_lifetime(&self) -> Duration {
        self.max_transmit_span() + self.max_latency
    }

    /// Parameters with a longer ACK_TIMEOUT for NB-IoT, whose radio round trips (with PSM and
    /// eDRX wake-ups) routinely exceed the 2 s of RFC 7252.
    pub fn nb_iot() -> Self {
        Self {
            ack_timeout: Duration::from_secs(9),
            ..Self::default()
        }
    }
}

/// Everything an [`Endpoint`](super::Endpoint) needs to know, including every bound on its
/// memory. Each bound says what happens when it is hit.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// RFC 7252 §4.8 parameters.
    pub transmission: TransmissionParams,
    /// Seed of the RNG for message IDs, tokens and retransmission jitter. The network driver
    /// seeds it from the operating system; tests fix it to replay a run exactly.
    pub rng_seed: u64,
    /// Length of the tokens this endpoint generates (1..=8). Eight random bytes make tokens
    /// unguessable for off-path attackers (RFC 7252 §5.3.1).
    pub token_len: u8,
    /// Preferred block size exponent (SZX, 0..=6 for 16..1024 bytes) for Block1 and Block2.
    pub block_szx: u8,
    /// Largest datagram this endpoint sends or accepts.
    pub max_message_size: usize,
    /// Largest body reassembled from Block1 (as server) or Block2 (as client). Larger
    /// transfers are refused with 4.13 (and Size1) or fail with `BodyTooLarge`.
    pub max_body_size: usize,
    /// Message IDs remembered for duplicate detection. When full, the oldest entry is dropped
    /// early (counted in [`Stats::dedup_evictions`](super::Stats)).
    pub dedup_capacity: usize,
    /// Requests delivered to the application and not yet answered. Beyond it, new requests
    /// are answered 5.03 at once.
    pub max_pending_incoming: usize,
    /// Requests this endpoint has sent or queued and not yet completed. Beyond it,
    /// `send_request` returns `Busy`.
    pub max_outgoing: usize,
    /// Requests queued per peer behind NSTART. Beyond it, `send_request` returns `Busy`.
    pub max_queued_per_peer: usize,
    /// Block1 uploads being reassembled at once (as server). Beyond it, the oldest is dropped.
    pub max_block1_transfers: usize,
    /// Total bytes of Block1 uploads being reassembled.
    pub max_block1_bytes: usize,
    /// Block2 response bodies kept so that later blocks are served without asking the
    /// application again. Beyond it, the oldest is dropped (a later block then goes to the
    /// application again, which is still correct).
    pub max_block2_bodies: usize,
    /// Total bytes of cached Block2 bodies.
    pub max_block2_bytes: usize,
    /// How long a cached Block2 body or a Block1 reassembly lives.
    pub block_lifetime: std::time::Duration,
    /// Observers (as notifier) kept at once. Beyond it, an Observe registration is served as a
    /// plain GET (RFC 7641 §4.1 allows the server to not add the observer).
    pub max_observers: usize,
    /// If the application has not answered a confirmable request after this long, an empty
    /// ACK is sent and the answer becomes a separate response (RFC 7252 §5.2.2), so the peer
    /// stops retransmitting.
    pub separate_response_after: std::time::Duration,
    /// Times a block of a block-wise transfer is sent afresh (new message ID) after its
    /// exchange timed out, before the whole transfer fails. This is what lets large
    /// transfers finish over links that lose a third of their datagrams.
    pub block_retries: u8,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        Self {
            transmission: TransmissionParams::default(),
            rng_seed: 0,
            token_len: 8,
            block_szx: 6,
            max_message_size: 1152,
            max_body_size: 4 << 20,
            dedup_capacity: 200_000,
            max_pending_incoming: 65_536,
            max_outgoing: 1 << 20,
            max_queued_per_peer: 64,
            max_block1_transfers: 1024,
            max_block1_bytes: 64 << 20,
            max_block2_bodies: 4096,
            max_block2_bytes: 128 << 20,
            block_lifetime: std::time::Duration::from_secs(247),
            max_observers: 1 << 20,
            separate_response_after: std::time::Duration::from_secs(1),
            block_retries: 8,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_times_match_rfc7252_defaults() {
        let p = TransmissionParams::default();
        assert_eq!(p.max_transmit_span(), Duration::from_secs(45));
        assert_eq!(p.max_transmit_wait(), Duration::from_secs(93));
        assert_eq!(p.exchange_lifetime(), Duration::from_secs(247));
        assert_eq!(p.non_lifetime(), Duration::from_secs(145));
    }
}
