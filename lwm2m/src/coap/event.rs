//! The values that cross the boundary of an [`Endpoint`](super::Endpoint): handles, events,
//! datagrams to send, errors, and counters.
use coap_lite::Packet;
use std::fmt::Debug;
use std::hash::Hash;
use std::time::Duration;

/// What identifies a peer. For plain UDP it is the `SocketAddr`; under DTLS the driver may use
/// a session handle instead, so that a peer keeps its identity when its address changes
/// (RFC 9146 Connection ID).
pub trait Peer: Copy + Eq + Hash + Debug + Send + 'static {}
impl<T: Copy + Eq + Hash + Debug + Send + 'static> Peer for T {}

/// A request this endpoint sent (as CoAP client), from `send_request` to its last event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub(crate) u64);

/// A request this endpoint received (as CoAP server) and that awaits the application's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IncomingId(pub(crate) u64);

/// An observation this endpoint serves as notifier (RFC 7641 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObserverId(pub(crate) u64);

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Transmit<P> {
    /// Destination.
    pub peer: P,
    /// The serialized CoAP message.
    pub payload: Vec<u8>,
}

/// A request received from a peer, whole (Block1 already reassembled).
#[derive(Debug, Clone)]
pub struct IncomingRequest<P> {
    /// Pass to [`Endpoint::respond`](super::Endpoint::respond).
    pub id: IncomingId,
    /// Who sent it.
    pub peer: P,
    /// The request. Block1 and Block2 options are removed; the payload is complete.
    pub request: Packet,
    /// The Block2 option the peer sent (RFC 7959 §2.4), for an application that answers
    /// with one block it cuts itself ([`msg::slice_block`](super::msg::slice_block)); any
    /// other response is cut and cached by the endpoint.
    pub block2: Option<super::msg::BlockOpt>,
}

/// Something that happened, for the application.
#[derive(Debug, Clone)]
pub enum Event<P> {
    /// A peer sent a request; answer it with `respond`.
    Request(IncomingRequest<P>),
    /// The final response to a request (all Block2 blocks joined). For an Observe
    /// registration this is the first response; notifications follow as `Notification`.
    Response {
        /// The request.
        id: RequestId,
        /// The peer it went to.
        peer: P,
        /// The response.
        response: Packet,
    },
    /// A notification for an observation (RFC 7641 §3.2), in order: stale ones are dropped.
    Notification {
        /// The Observe registration it belongs to.
        id: RequestId,
        /// The notifier.
        peer: P,
        /// The notification (all Block2 blocks joined).
        response: Packet,
        /// The Observe sequence number; `None` when the notification ends the observation
        /// (an error or a response without Observe, RFC 7641 §3.2).
        seq: Option<u32>,
    },
    /// A request ended without a response. Reported exactly once per request.
    Failed {
        /// The request.
        id: RequestId,
        /// The peer it went to.
        peer: P,
        /// Why.
        error: ExchangeError,
    },
    /// A CoAP ping was answered (RFC 7252 §4.3).
    Pong {
        /// The ping.
        id: RequestId,
        /// The peer.
        peer: P,
    },
    /// An observer of ours is gone.
    ObserverGone {
        /// The observation.
        observer: ObserverId,
        /// The observer.
        peer: P,
        /// Why.
        reason: ObserverGoneReason,
    },
}

/// Why a request ended without a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExchangeError {
    /// No acknowledgement after all retransmissions, or no response before the deadline.
    #[error("the peer did not answer in time")]
    Timeout,
    /// The peer answered with RST.
    #[error("the peer reset the exchange")]
    Reset,
    /// The application cancelled the request.
    #[error("cancelled")]
    Cancelled,
    /// The response body exceeded `max_body_size`.
    #[error("the response body is larger than allowed")]
    BodyTooLarge,
    /// The block-wise transfer went wrong in a way retrying it as it was will not fix. This
    /// includes a peer that answered a block after the first with 4.08 Request Entity
    /// Incomplete (RFC 7959 §2.9.2): it lost the upload's state, so a resumed upload has
    /// to start again from block 0.
    #[error("block-wise transfer failed")]
    Block,
    /// A Block1 upload timed out after the peer had acknowledged at least one of its blocks
    /// (2.31 Continue, RFC 7959 §2.5). The peer may still hold the blocks received so far:
    /// sending the request again with [`RequestOptions::block1_start`] set to `next_block`
    /// and [`RequestOptions::block_szx`] to `szx` resumes the upload where it stopped.
    #[error("the upload was interrupted at block {next_block}")]
    Interrupted {
        /// The first block the peer did not acknowledge.
        next_block: u32,
        /// The block size exponent that block number counts in (size = 2^(szx+4)).
        szx: u8,
    },
    /// The response was malformed or had an unknown critical option.
    #[error("malformed response")]
    BadResponse,
    /// A block of the request could not be encoded within `max_message_size`.
    #[error("the request cannot be encoded")]
    Encode,
}

/// Why an observer is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ObserverGoneReason {
    /// The observer answered a notification with RST.
    Reset,
    /// A confirmable notification was never acknowledged.
    Timeout,
    /// The observer deregistered (GET with Observe=1) or registered anew with the same token.
    Deregistered,
    /// The application removed it.
    Removed,
}

/// How to cancel an observation (RFC 7641 §3.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelMode {
    /// Forget it; the next notification is answered with RST.
    Passive,
    /// Send a GET with Observe=1; its response ends the request.
    Active,
}

/// Per-request options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestOptions {
    /// Send as CON (retransmitted until acknowledged) or NON.
    pub confirmable: bool,
    /// How long to wait for the response after the request is acknowledged (or sent, for
    /// NON). `None` means EXCHANGE_LIFETIME.
    pub timeout: Option<Duration>,
    /// Block size exponent for this request, overriding the endpoint's.
    pub block_szx: Option<u8>,
    /// Start a Block1 upload at this block instead of block 0 (counted in `block_szx`, or
    /// the endpoint's size): resumes an upload the peer kept the earlier blocks of, after
    /// [`ExchangeError::Interrupted`]. If the peer lost them it answers 4.08 and the request
    /// fails with [`ExchangeError::Block`]; if it times out before the peer acknowledges any
    /// block of this request, with [`ExchangeError::Timeout`] (resume at the same block
    /// again). The block must lie within the payload, else `send_request` refuses it with
    /// [`SendError::BlockOutOfRange`].
    pub block1_start: Option<u32>,
    /// At least this long between sending one block of a Block1 upload and sending the next,
    /// so that a slow link (NB-IoT) is not flooded; `None`: each block goes as soon as the
    /// previous one is acknowledged (RFC 7959 §2.5 lock-step).
    pub block_interval: Option<Duration>,
}

impl Default for RequestOptions {
    fn default() -> Self {
        Self {
            confirmable: true,
            timeout: None,
            block_szx: None,
            block1_start: None,
            block_interval: None,
        }
    }
}

/// Why a request could not be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The packet is not a request.
    #[error("not a request")]
    NotARequest,
    /// Too many requests outstanding or queued.
    #[error("too many outstanding requests")]
    Busy,
    /// The request cannot be serialized (options too large).
    #[error("the request cannot be encoded")]
    Encode,
    /// The request id is not known (already finished).
    #[error("no such request")]
    UnknownRequest,
    /// `block1_start` lies past the end of the payload, or the payload needs more blocks
    /// than a Block1 option can number (2^20, RFC 7959 §2.2) at the block size.
    #[error("the first block to upload lies past the end of the payload, or the payload needs more than 2^20 blocks")]
    BlockOutOfRange,
}

/// Why a response or notification could not be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RespondError {
    /// The request is not known: answered already, or expired.
    #[error("no such request, or already answered")]
    UnknownRequest,
    /// The observer is gone.
    #[error("no such observer")]
    UnknownObserver,
    /// The packet is not a response.
    #[error("not a response")]
    NotAResponse,
    /// The response cannot be serialized.
    #[error("the response cannot be encoded")]
    Encode,
}

/// Counters, for metrics. They only grow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams received.
    pub rx: u64,
    /// Datagrams sent, retransmissions included.
    pub tx: u64,
    /// Retransmissions of confirmable messages.
    pub retransmissions: u64,
    /// Duplicate messages detected and answered from the cache.
    pub duplicates: u64,
    /// Duplicate-detection records dropped early because the cache was full.
    pub dedup_evictions: u64,
    /// Datagrams that were not valid CoAP.
    pub malformed: u64,
    /// Requests that failed with a timeout.
    pub timeouts: u64,
    /// RST messages sent.
    pub resets_sent: u64,
    /// Requests refused because a bound was hit.
    pub overload_rejections: u64,
    /// Notifications left unacknowledged (a confirmable one is retransmitted by its sender)
    /// or dropped (a non-confirmable one) while the application refused them
    /// ([`super::Endpoint::refuse_reports`]).
    pub notifications_refused: u64,
    /// LwM2M Send requests left unacknowledged or dropped, as notifications above.
    pub sends_refused: u64,
}

/// How much state the endpoint holds now, to check the bounds and to size deployments.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Peers with a message-ID counter or queued requests.
    pub peers: usize,
    /// Confirmable messages awaiting acknowledgement.
    pub unacked: usize,
    /// Outgoing requests not yet completed (including established observations).
    pub outgoing: usize,
    /// Duplicate-detection records.
    pub dedup: usize,
    /// Incoming requests awaiting the application.
    pub incoming: usize,
    /// Bytes held for Block1 reassembly.
    pub block1_bytes: usize,
    /// Bytes held in cached Block2 bodies.
    pub block2_bytes: usize,
    /// Observers served.
    pub observers: usize,
    /// Timers armed.
    pub timers: usize,
    /// Events not yet polled.
    pub events: usize,
    /// Datagrams not yet polled.
    pub transmits: usize,
}
