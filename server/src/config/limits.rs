//! The range of every numeric key, checked when the file is loaded
//! ([`Config::parse`](super::Config::parse)) and documented beside the key in
//! `config/server.toml` (a test holds the file to these).
//!
//! The bounds are chosen so that no value inside them can overflow what is computed from it
//! (a CoAP exchange lasts up to `ack_timeout * (2^(max_retransmit + 1) - 1) *
//! ack_random_factor`, a deadline is `now + secs`) or let one setting claim memory without end;
//! a lower bound of 1 where 0 would mean "never" or "none" and nothing useful.
use std::ops::RangeInclusive;

/// `[server] coap_bind`, `coaps_bind`: addresses per list; each is a socket.
pub const BIND_ADDRESSES: RangeInclusive<usize> = 0..=64;
/// `[server] udp_recv_buffer_bytes`: 0 (the kernel's default) to 1 GiB, which the kernel's
/// `int` socket option holds.
pub const UDP_RECV_BUFFER_BYTES: RangeInclusive<u64> = 0..=1 << 30;
/// `[server] store_cache_bytes`: 1 MiB to 16 GiB.
pub const STORE_CACHE_BYTES: RangeInclusive<u64> = 1 << 20..=16 << 30;
/// `[server] store_commit_gather_ms`: what a notification's acknowledgement may wait for its
/// commit to gather company, at most.
pub const STORE_COMMIT_GATHER_MS: RangeInclusive<u64> = 0..=50;
/// `[registration] grace_secs`: up to a day.
pub const GRACE_SECS: RangeInclusive<u64> = 0..=86_400;
/// `[registration] max_registrations`: ten times the default.
pub const MAX_REGISTRATIONS: RangeInclusive<u64> = 1..=10_000_000;
/// `[queue] awake_window_secs`: a second to a day.
pub const AWAKE_WINDOW_SECS: RangeInclusive<u64> = 1..=86_400;
/// `[queue] max_per_device`: commands pending per device.
pub const QUEUE_MAX_PER_DEVICE: RangeInclusive<u64> = 1..=1024;
/// `[queue] command_ttl_secs`: a second to 30 days, the longest `ttl` a command may ask for.
pub const COMMAND_TTL_SECS: RangeInclusive<u64> = 1..=2_592_000;
/// `[queue] max_pending`: commands pending in the whole server; each holds its CoAP
/// request (about 200 bytes), so ten million stay within a few GiB.
pub const QUEUE_MAX_PENDING: RangeInclusive<u64> = 1..=10_000_000;
/// `[coap] ack_timeout_ms`: 100 ms to 10 minutes.
pub const ACK_TIMEOUT_MS: RangeInclusive<u64> = 100..=600_000;
/// `[coap] ack_random_factor`: RFC 7252 requires at least 1.0; NaN is outside.
pub const ACK_RANDOM_FACTOR: RangeInclusive<f64> = 1.0..=4.0;
/// `[coap] max_retransmit`: with the largest ACK_TIMEOUT and factor, an exchange then
/// lasts at most about 57 days.
pub const MAX_RETRANSMIT: RangeInclusive<u8> = 0..=10;
/// `[coap] nstart`: requests in flight per device.
pub const NSTART: RangeInclusive<u8> = 1..=32;
/// `[coap] dedup_capacity`: answers kept for duplicate detection.
pub const DEDUP_CAPACITY: RangeInclusive<u64> = 1_000..=10_000_000;
/// `[coap] block_size`, a power of two.
pub const BLOCK_SIZE: RangeInclusive<usize> = 16..=1024;
/// The longest Connection ID the server hands out. RFC 9146 allows 255 bytes, but every CID
/// byte is paid in every record on a narrowband link, and 16 random bytes are already far
/// beyond any collision risk.
pub const MAX_CONNECTION_ID_LENGTH: u8 = 16;
/// `[dtls] connection_id_length`: see [`MAX_CONNECTION_ID_LENGTH`].
pub const CONNECTION_ID_LENGTH: RangeInclusive<u8> = 0..=MAX_CONNECTION_ID_LENGTH;
/// `[dtls] retransmit_initial_ms`: 100 ms to a minute.
pub const DTLS_RETRANSMIT_INITIAL_MS: RangeInclusive<u64> = 100..=60_000;
/// `[dtls] retransmit_max_ms`: from `retransmit_initial_ms` to this (10 minutes).
pub const DTLS_RETRANSMIT_MAX_MS_CAP: u64 = 600_000;
/// `[dtls] max_handshakes`: handshakes in progress at once.
pub const MAX_HANDSHAKES: RangeInclusive<u64> = 1..=1_000_000;
/// `[dtls] handshakes_per_source_per_sec`.
pub const HANDSHAKES_PER_SOURCE_PER_SEC: RangeInclusive<u32> = 1..=100_000;
/// `[dtls] max_sessions`: ten times the default.
pub const MAX_SESSIONS: RangeInclusive<u64> = 1..=10_000_000;
/// `[dtls] session_save_interval_secs`: 0 (only at shutdown) to a day.
pub const SESSION_SAVE_INTERVAL_SECS: RangeInclusive<u64> = 0..=86_400;
/// `[mqtt] qos`.
pub const MQTT_QOS: RangeInclusive<u8> = 0..=2;
/// `[mqtt] client_id` in bytes: an MQTT string holds 65535.
pub const MQTT_CLIENT_ID_BYTES: RangeInclusive<u64> = 1..=65_535;
/// `[mqtt] topic_prefix` in bytes, leaving room in a topic (65535 bytes) for the endpoint.
pub const MQTT_TOPIC_PREFIX_BYTES: RangeInclusive<u64> = 1..=1024;
/// `[mqtt] username` and `password` in bytes: an MQTT string holds 65535.
pub const MQTT_CREDENTIAL_BYTES: RangeInclusive<u64> = 0..=65_535;
/// `[mqtt] keep_alive_secs`: rumqttc's MQTT 5 client panics under 5 s; MQTT carries it in
/// 16 bits.
pub const MQTT_KEEP_ALIVE_SECS: RangeInclusive<u64> = 5..=65_535;
/// `[mqtt] session_expiry_secs`: MQTT 5 carries it in 32 bits; 0 would end the session at
/// each disconnect.
pub const MQTT_SESSION_EXPIRY_SECS: RangeInclusive<u32> = 1..=u32::MAX;
/// `[mqtt] max_outbox`: messages waiting in the store for the broker.
pub const MQTT_MAX_OUTBOX: RangeInclusive<u64> = 1..=10_000_000;
/// `[mqtt] max_command_bytes`: a command needs well under 256 bytes unless it writes a
/// large value; the top is the largest MQTT packet the bridge takes.
pub const MQTT_MAX_COMMAND_BYTES: RangeInclusive<u64> = 256..=1 << 20;
/// `[mqtt] reconnect_min_ms`: 10 ms to 10 minutes.
pub const MQTT_RECONNECT_MIN_MS: RangeInclusive<u64> = 10..=600_000;
/// `[mqtt] reconnect_max_ms`: from `reconnect_min_ms` to this (an hour).
pub const MQTT_RECONNECT_MAX_MS_CAP: u64 = 3_600_000;
/// `[bootstrap] lifetime`: the registration lifetime written to devices, a minute to 30
/// days (Core E.2 allows any `u32`, but a device that registers once a month is lost for a
/// month when it goes wrong).
pub const BOOTSTRAP_LIFETIME: RangeInclusive<u64> = 60..=2_592_000;
/// `[bootstrap] short_server_id`: Core E.2 reserves 0 and 65535.
pub const SHORT_SERVER_ID: RangeInclusive<u64> = 1..=65_534;
/// `[bootstrap] sequence_timeout_secs`: a second to an hour.
pub const BOOTSTRAP_SEQUENCE_TIMEOUT_SECS: RangeInclusive<u64> = 1..=3600;
/// `[bootstrap] max_sequences`: bootstraps in progress at once.
pub const BOOTSTRAP_MAX_SEQUENCES: RangeInclusive<u64> = 1..=1_000_000;
/// `[firmware] max_package_bytes`: one package, 1 KiB to 1 GiB.
pub const MAX_PACKAGE_BYTES: RangeInclusive<u64> = 1024..=1 << 30;
/// `[firmware] max_total_bytes`: every package together (they are kept in memory).
pub const MAX_TOTAL_PACKAGE_BYTES: RangeInclusive<u64> = 1024..=16 << 30;
/// `[firmware] push_block_size`, a power of two (RFC 7959 block sizes).
pub const PUSH_BLOCK_SIZE: RangeInclusive<usize> = 16..=1024;
/// `[firmware] push_block_interval_ms`: up to a minute between blocks.
pub const PUSH_BLOCK_INTERVAL_MS: RangeInclusive<u64> = 0..=60_000;
/// `[firmware] *_timeout_secs`: a minute to 30 days (a sleeping device downloads slowly).
pub const FIRMWARE_PHASE_TIMEOUT_SECS: RangeInclusive<u64> = 60..=2_592_000;
/// `[firmware] default_concurrency`: devices updated at once per campaign.
pub const FIRMWARE_CONCURRENCY: RangeInclusive<u64> = 1..=100_000;
/// `[http] event_retention`: events kept for `Last-Event-ID`.
pub const HTTP_EVENT_RETENTION: RangeInclusive<usize> = 100..=1_000_000;
/// `[http] max_event_streams`.
pub const HTTP_MAX_EVENT_STREAMS: RangeInclusive<usize> = 1..=10_000;
/// `[http] max_connections`.
pub const HTTP_MAX_CONNECTIONS: RangeInclusive<usize> = 4..=100_000;
/// `[http] request_retention`: results of commands answered 202.
pub const HTTP_REQUEST_RETENTION: RangeInclusive<usize> = 100..=1_000_000;
