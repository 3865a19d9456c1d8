//! What a [`Client`](super::Client) is configured with, what it reports, and how it fails.
use crate::coap::{EndpointConfig, ExchangeError, SendError};
use crate::content::negotiate::Lwm2mVersion;
use crate::content::{CodecError, ContentFormat};
use crate::model::{Path, ValueError};
use crate::ops::registration::Binding;
use crate::ops::Lwm2mError;
use std::time::Duration;

/// Everything a [`Client`](super::Client) needs to know. Build it with
/// [`ClientConfig::new`] and change what differs.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The endpoint client name (`ep`, Core §6.2.1), also the `endpoint` field of every log
    /// line of this client.
    pub endpoint: String,
    /// Registration lifetime in seconds (`lt`). Written into the Server object instance at
    /// start; from then on that resource (`/1/x/1`) is the live value a server may change.
    pub lifetime: u32,
    /// The LwM2M version registered with (`lwm2m`); it decides which formats and
    /// operations exist (Send and composites need 1.1).
    pub version: Lwm2mVersion,
    /// The binding (`b`). Written into `/1/x/7` at start, like the lifetime.
    pub binding: Binding,
    /// Queue mode (Transport §6.5): the client sleeps between exchanges.
    pub queue_mode: bool,
    /// How long the client stays awake after its last exchange in queue mode. The default is
    /// MAX_TRANSMIT_WAIT (93 s with the RFC 7252 parameters), as Transport §6.5 recommends.
    pub awake_time: Duration,
    /// The Short Server ID of the server this client talks to: it selects the Server object
    /// instance (`/1/x/0`) whose lifetime, binding and default periods apply.
    pub short_server_id: u16,
    /// The content formats the client reads and writes, preferred first. Link format is
    /// always supported for Discover and is not listed. The first multi-value format is
    /// the one answers use when the server gives no Accept, and the first composite one is
    /// used for Send and composite answers (see [`ClientConfig::formats_for`]).
    pub content_formats: Vec<ContentFormat>,
    /// Every Nth notification of an observation is confirmable; 0 means all are
    /// non-confirmable. The Server object's Default Notification Mode (`/1/x/26` = 1), when
    /// set, makes all confirmable.
    pub notify_con_every: u32,
    /// First delay before registering again after a failed Register.
    pub retry_initial: Duration,
    /// Longest delay between Register attempts; the delay doubles up to it.
    pub retry_max: Duration,
    /// Fraction (0..=1) of each retry delay drawn at random and taken off, so that a fleet
    /// that lost its server does not come back in lockstep. 0 makes retries exact.
    pub retry_jitter: f64,
    /// Seed of the client's jitter generator and of its CoAP endpoint. A simulator gives
    /// each device its own; tests fix it.
    pub rng_seed: u64,
    /// Observations served at once. Beyond it an Observe is answered as a plain Read
    /// (RFC 7641 §4.1 allows that).
    pub max_observations: usize,
    /// Send operations awaiting their answer. Beyond it `send` returns `Busy`.
    pub max_pending_sends: usize,
    /// Events not yet polled. Beyond it the oldest is dropped (and a warning logged), so a
    /// simulator that never polls cannot grow without bound.
    pub max_events: usize,
    /// Largest firmware package (Object 5) taken, pushed or pulled; beyond it Update Result
    /// is 2 (not enough storage). With a Firmware Update instance in the store the CoAP
    /// endpoint's body limits are raised to it, since a push arrives as one Block1 body.
    pub firmware_max_package: usize,
    /// How long Updating (State 3) lasts before the new firmware runs.
    pub firmware_update_time: Duration,
    /// Failed block exchanges in a row before a pull gives up (Update Result 4).
    pub firmware_download_retries: u32,
    /// Make every firmware update fail with this Update Result (e.g. 8) instead of
    /// installing, for tests and the simulator.
    pub firmware_fail_with: Option<u8>,
    /// The CoAP endpoint's configuration. [`ClientConfig::new`] sets small bounds that fit a
    /// device talking to one server; `rng_seed` is overwritten from the client's.
    pub coap: EndpointConfig,
}

impl ClientConfig {
    /// LwM2M 1.1 over UDP, 300 s lifetime, no queue mode, SenML CBOR preferred.
    pub fn new(endpoint: impl Into<String>) -> Self {
        let coap = Self::device_endpoint_config();
        Self {
            endpoint: endpoint.into(),
            lifetime: 300,
            version: Lwm2mVersion::V1_1,
            binding: Binding::UDP,
            queue_mode: false,
            awake_time: coap.transmission.max_transmit_wait(),
            short_server_id: 1,
            content_formats: Self::formats_for(Lwm2mVersion::V1_1, false),
            notify_con_every: 0,
            retry_initial: Duration::from_secs(10),
            retry_max: Duration::from_secs(3600),
            retry_jitter: 0.25,
            rng_seed: 0,
            max_observations: 16,
            max_pending_sends: 8,
            max_events: 256,
            firmware_max_package: 2 << 20,
            firmware_update_time: Duration::from_secs(2),
            firmware_download_retries: 8,
            firmware_fail_with: None,
            coap,
        }
    }

    /// Switches to `version`, with that version's default formats (`lwm2m_cbor` puts LwM2M
    /// CBOR first for 1.2).
    pub fn with_version(mut self, version: Lwm2mVersion, lwm2m_cbor: bool) -> Self {
        self.version = version;
        self.content_formats = Self::formats_for(version, lwm2m_cbor);
        self
    }

    /// The formats a client of `version` supports, preferred first: TLV for 1.0 (Core
    /// §7.4: mandatory there); SenML CBOR, SenML JSON, TLV and CBOR for 1.1 and 1.2, with
    /// LwM2M CBOR first for 1.2 when `lwm2m_cbor` is set. Text and opaque always.
    /// LwM2M JSON (1.0's optional JSON) is not offered.
    pub fn formats_for(version: Lwm2mVersion, lwm2m_cbor: bool) -> Vec<ContentFormat> {
        use ContentFormat::*;
        match version {
            Lwm2mVersion::V1_0 => vec![Tlv, Text, Opaque],
            Lwm2mVersion::V1_1 => vec![SenmlCbor, SenmlJson, Tlv, Cbor, Text, Opaque],
            Lwm2mVersion::V1_2 if lwm2m_cbor => {
                vec![Lwm2mCbor, SenmlCbor, SenmlJson, Tlv, Cbor, Text, Opaque]
            }
            Lwm2mVersion::V1_2 => vec![SenmlCbor, SenmlJson, Tlv, Cbor, Text, Opaque],
        }
    }

    /// CoAP endpoint bounds for one device talking to one server: a few dozen messages
    /// remembered, a handful of requests in flight, 64 KiB bodies.
    pub fn device_endpoint_config() -> EndpointConfig {
        EndpointConfig {
            dedup_capacity: 64,
            max_pending_incoming: 8,
            max_outgoing: 16,
            max_queued_per_peer: 16,
            max_body_size: 64 << 10,
            max_block1_transfers: 2,
            max_block1_bytes: 64 << 10,
            max_block2_bodies: 4,
            max_block2_bytes: 64 << 10,
            max_observers: 16,
            ..EndpointConfig::default()
        }
    }

    /// Whether the client reads and writes `format` (link format always).
    pub fn supports(&self, format: ContentFormat) -> bool {
        format == ContentFormat::LinkFormat || self.content_formats.contains(&format)
    }

    /// The format for answers without Accept: the first listed that carries any node.
    pub fn preferred_format(&self) -> Option<ContentFormat> {
        self.content_formats
            .iter()
            .copied()
            .find(|f| f.supports(crate::model::PathLevel::Object))
    }

    /// The format for composite answers and Send: the first composite one listed, none
    /// for LwM2M 1.0.
    pub fn composite_format(&self) -> Option<ContentFormat> {
        if self.version == Lwm2mVersion::V1_0 {
            return None;
        }
        self.content_formats
            .iter()
            .copied()
            .find(|f| f.supports_composite())
    }
}

/// Identifies one [`Send`](super::Client::send) until its [`ClientEvent::SendCompleted`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SendId(pub(crate) u64);

/// Something that happened, for the application.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// The server accepted the Register (2.01); `location` is the registration's path.
    Registered {
        /// The Location-Path, e.g. `/rd/5a3f`.
        location: String,
    },
    /// The server accepted an Update (2.04).
    Updated,
    /// A Register or Update failed; the client registers again after a delay.
    RegistrationFailed {
        /// Why.
        error: ClientError,
    },
    /// The registration ended (De-register answered or timed out, or stopped before it
    /// was registered).
    Deregistered,
    /// An Update went unanswered: the server may have lost the secure session (restarted,
    /// or failed over to another node). A driver with a DTLS link handshakes again now and
    /// calls [`reconnected`](super::Client::reconnected) once it is up; the client tries the
    /// Update once more (on the new session) before it registers anew.
    Unreachable,
    /// The server executed a resource; it was answered 2.04.
    Executed {
        /// The resource.
        path: Path,
        /// The arguments (Core §5.4.5), as sent.
        args: Option<String>,
    },
    /// The server executed the Bootstrap-Request Trigger (`/1/x/9`, Core E.2); it was
    /// answered 2.04. The driver bootstraps again (a
    /// [`Bootstrapper`](super::Bootstrapper) on this client's store).
    BootstrapRequested {
        /// The Short Server ID of the Server instance executed (`/1/x/0`).
        short_server_id: u16,
    },
    /// The server wrote values at or below `path` (Write, Write-Composite).
    Written {
        /// The path written.
        path: Path,
    },
    /// The server created an object instance.
    InstanceCreated {
        /// The new instance.
        path: Path,
    },
    /// The server deleted an object instance.
    InstanceDeleted {
        /// The deleted instance.
        path: Path,
    },
    /// A Send completed.
    SendCompleted {
        /// Which.
        id: SendId,
        /// 2.04, or why not.
        result: Result<(), ClientError>,
    },
    /// The firmware update (Object 5) installed `version`: `/3/0/3` holds it and the client
    /// registers anew, as a device does after rebooting into new firmware.
    FirmwareUpdated {
        /// The version now running.
        version: String,
    },
    /// Queue mode: the awake time passed with nothing in flight; the radio is off now.
    Sleeping,
    /// Queue mode: the client woke up (by [`wake`](super::Client::wake) or because it has
    /// something to send).
    Woke,
}

/// Why a client operation failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The operation needs a registration and there is none.
    #[error("not registered")]
    NotRegistered,
    /// `start` was called on a client already started.
    #[error("already started")]
    AlreadyStarted,
    /// The server answered with an error code.
    #[error("the server answered {0}")]
    Rejected(Lwm2mError),
    /// The exchange failed (no answer, RST).
    #[error(transparent)]
    Exchange(#[from] ExchangeError),
    /// The CoAP endpoint refused the request.
    #[error("cannot send: {0}")]
    Send(#[from] SendError),
    /// The answer to Register carried no Location-Path.
    #[error("the Register answer has no Location-Path")]
    NoLocation,
    /// The operation does not exist in the configured LwM2M version or formats.
    #[error("{0} is not available with this configuration")]
    Unsupported(&'static str),
    /// The server muted Send (`/1/x/23`).
    #[error("Send is muted by the server")]
    Muted,
    /// Too many Send operations outstanding.
    #[error("too many operations outstanding")]
    Busy,
    /// The payload could not be encoded.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// An object store operation failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why the application's change to the [`ObjectStore`](super::ObjectStore) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No such object, instance or resource.
    #[error("{0} not found")]
    NotFound(Path),
    /// The object definition has no such resource.
    #[error("{0}: the object definition has no such resource")]
    UnknownResource(Path),
    /// The value does not fit the resource's type.
    #[error("{path}: {source}")]
    Type {
        /// The resource.
        path: Path,
        /// The conversion error.
        source: ValueError,
    },
    /// A single resource given as multiple, or the reverse; or a path at the wrong level.
    #[error("{0}: wrong multiplicity or level")]
    Shape(Path),
    /// The instance exists already.
    #[error("{0} exists already")]
    Exists(Path),
    /// The resource is not executable, or an executable resource was given a value.
    #[error("{0}: not executable")]
    NotExecutable(Path),
    /// A bound of the store was reached.
    #[error("too many instances or attributes")]
    Full,
}
