//! CoAP for LwM2M: messages, the sans-IO exchange layer, block-wise transfer, Observe and
//! CoRE link format.
//!
//! - RFC 7252 (CoAP): message IDs, tokens, CON retransmission, duplicate detection,
//!   piggybacked and separate responses, empty ACK, RST and ping.
//! - RFC 7959 (block-wise): Block1 and Block2 in both roles, with size negotiation.
//! - RFC 7641 (Observe): as observer and as notifier.
//! - RFC 6690 (CoRE link format), the grammar only; the LwM2M attributes are
//!   [`crate::attributes`].
//!
//! The central type is [`Endpoint`]: one value per socket serves any number of peers. See its
//! documentation for the order in which to call it.
mod config;
mod endpoint;
mod event;
mod expiring;
pub mod link_format;
pub mod msg;
mod timer;

pub use coap_lite::{
    CoapOption, ContentFormat, MessageClass, MessageType, Packet, RequestType, ResponseType,
};
pub use config::{EndpointConfig, TransmissionParams};
pub use endpoint::Endpoint;
pub use event::{
    CancelMode, Event, ExchangeError, IncomingId, IncomingRequest, ObserverGoneReason, ObserverId,
    Peer, RequestId, RequestOptions, RespondError, SendError, Stats, Transmit, Usage,
};
pub use msg::{BlockOpt, Token};

/// The hash map of the endpoint's tables. Keys come from peers (addresses, message IDs,
/// tokens), so the hasher is keyed — from the endpoint's seeded RNG, which keeps runs
/// reproducible in tests — and fast: SipHash showed up in profiles of the request path.
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, ahash::RandomState>;
