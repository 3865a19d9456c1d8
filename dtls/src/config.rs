//! What the application decides: suites, timers, bounds, this side's keys, and how a peer's
//! credential is judged (RFC 7925 §4 for the LwM2M profile's choices).
use crate::alert::AlertDescription;
use crate::pki::{OwnKey, Roots};
use crate::suite::CipherSuite;
use crate::time::WallClock;
use std::sync::Arc;
use std::time::Duration;

/// The longest Connection ID this engine issues or accepts (RFC 9146 allows 255; a few bytes
/// identify millions of sessions and every byte is paid in each record).
pub const MAX_CID_LEN: usize = 16;

/// Retransmission timers for handshake flights (RFC 6347 §4.2.4.1; RFC 7925 §11 advises a
/// longer initial timer on slow radio links).
#[derive(Debug, Clone, Copy)]
pub struct Timers {
    /// First retransmission timeout; doubled after each retransmission.
    pub initial: Duration,
    /// The timeout stops doubling here.
    pub max: Duration,
    /// A handshake not finished after this long is abandoned.
    pub handshake_timeout: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            handshake_timeout: Duration::from_secs(120),
        }
    }
}

/// Settings of a server endpoint.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Suites in order of preference.
    pub suites: Vec<CipherSuite>,
    /// Length of the Connection IDs issued to clients that ask (0: never). Capped at
    /// [`MAX_CID_LEN`]; a larger value issues and expects CIDs of that length.
    pub cid_len: usize,
    /// The first byte of every Connection ID issued, the rest being random: a cluster
    /// node's id, so that whichever node a record reaches can tell, from the record alone
    /// ([`crate::server::cid_node`]), which node holds its session. `None`: all random.
    pub cid_node: Option<u8>,
    pub timers: Timers,
    /// Handshakes in progress at once; beyond it new ones are refused (after the cookie).
    pub max_handshakes: usize,
    /// New handshakes each source IP address may start per second (after the cookie).
    pub handshakes_per_source_per_sec: u32,
    /// Established sessions held; beyond it the least recently active is dropped.
    pub max_sessions: usize,
    /// Refuse clients that do not offer Extended Master Secret (RFC 7627).
    pub require_extended_master_secret: bool,
    /// Largest datagram sent (handshake flights are fragmented to fit; RFC 7925 §11).
    pub max_datagram: usize,
    /// This server's key for ECDHE-ECDSA suites, with its certificate chain if it has one.
    pub key: Option<Arc<OwnKey>>,
    /// How often the cookie secret changes.
    pub cookie_rotation: Duration,
    /// The time of day, for [`ServerCredentials::verify_client`] to judge certificate
    /// validity by (`None`: the callback gets no time).
    pub wall_clock: Option<WallClock>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            suites: CipherSuite::ALL.to_vec(),
            cid_len: 6,
            cid_node: None,
            timers: Timers::default(),
            max_handshakes: 10_000,
            handshakes_per_source_per_sec: 20,
            max_sessions: 1_000_000,
            require_extended_master_secret: false,
            max_datagram: 1280,
            key: None,
            cookie_rotation: Duration::from_secs(120),
            wall_clock: None,
        }
    }
}

/// A client credential presented in a handshake, for the application to judge.
#[derive(Debug, Clone, Copy)]
pub enum PeerKey<'a> {
    /// A raw public key (RFC 7250): SubjectPublicKeyInfo DER.
    RawPublicKey(&'a [u8]),
    /// A certificate chain, end entity first, DER.
    Certificates(&'a [Vec<u8>]),
}

/// A pre-shared key found for an identity.
#[derive(Clone)]
pub struct PskEntry {
    pub key: Vec<u8>,
    /// Who this identity is (the device's endpoint name in LwM2M).
    pub principal: Arc<str>,
}

impl std::fmt::Debug for PskEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PskEntry")
            .field("principal", &self.principal)
            .finish_non_exhaustive()
    }
}

/// How a server judges clients. Called synchronously during the handshake, so lookups must be
/// in memory.
pub trait ServerCredentials {
    /// The key for a PSK identity, or `None` for an unknown identity.
    fn psk(&self, identity: &[u8]) -> Option<PskEntry>;
    /// Accepts a client's public key or certificate chain (already proven to hold the private
    /// key by the caller only after this returns) and says who it is, or refuses it with the
    /// alert to send. `unix_time` is the time of day (seconds since 1970) to judge a
    /// certificate's validity at, from the server's [`WallClock`]; `None` when the
    /// configuration gives none.
    fn verify_client(
        &self,
        key: PeerKey<'_>,
        unix_time: Option<u64>,
    ) -> Result<Arc<str>, AlertDescription>;

    /// Who a key or certificate that [`verify_client`](Self::verify_client) just refused
    /// claims to be (the name a certificate carries, say), for the failure report: logs and
    /// the application's audit, as a PSK identity is reported. `None` (the default): nobody
    /// worth naming.
    fn refused_identity(&self, key: PeerKey<'_>, unix_time: Option<u64>) -> Option<String> {
        let _ = (key, unix_time);
        None
    }
}

/// How a client authenticates.
#[derive(Clone)]
pub enum ClientAuth {
    Psk {
        identity: Vec<u8>,
        key: Vec<u8>,
    },
    /// ECDHE-ECDSA with this key, sent as a raw public key or (if the key has a chain) as
    /// certificates, whichever the server accepts.
    Key(Arc<OwnKey>),
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientAuth::Psk { identity, .. } => f
                .debug_struct("Psk")
                .field("identity", &String::from_utf8_lossy(identity))
                .finish_non_exhaustive(),
            ClientAuth::Key(k) => f.debug_tuple("Key").field(k).finish(),
        }
    }
}

/// How a client checks the server's key in ECDHE-ECDSA suites.
#[derive(Debug, Clone)]
pub enum ServerTrust {
    /// Only this raw public key (SubjectPublicKeyInfo DER), or a certificate carrying it.
    PinnedKey(Vec<u8>),
    /// A certificate chain leading to these roots.
    Roots(Roots),
    /// Anything (tests and load generators only: no authentication of the server).
    Unverified,
}

/// Settings of one client connection.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub suites: Vec<CipherSuite>,
    pub auth: ClientAuth,
    pub trust: ServerTrust,
    /// Ask the server for a Connection ID; the CID this client wants to receive (empty: none,
    /// but the server may still be sent one).
    pub connection_id: Option<Vec<u8>>,
    pub timers: Timers,
    pub max_datagram: usize,
    /// Offer Extended Master Secret (RFC 7627).
    pub extended_master_secret: bool,
    /// The time of day, to check a server certificate chain's validity by
    /// ([`ServerTrust::Roots`] refuses every chain without it).
    pub wall_clock: Option<WallClock>,
}

impl ClientConfig {
    /// A PSK client with the usual choices.
    pub fn psk(identity: impl Into<Vec<u8>>, key: impl Into<Vec<u8>>) -> Self {
        Self {
            suites: vec![CipherSuite::PskAes128Ccm8, CipherSuite::PskAes128CbcSha256],
            auth: ClientAuth::Psk {
                identity: identity.into(),
                key: key.into(),
            },
            trust: ServerTrust::Unverified,
            connection_id: None,
            timers: Timers::default(),
            max_datagram: 1280,
            extended_master_secret: true,
            wall_clock: None,
        }
    }

    /// An ECDHE-ECDSA client presenting `key`.
    pub fn with_key(key: Arc<OwnKey>, trust: ServerTrust) -> Self {
        Self {
            suites: vec![
                CipherSuite::EcdheEcdsaAes128Ccm8,
                CipherSuite::EcdheEcdsaAes128GcmSha256,
            ],
            auth: ClientAuth::Key(key),
            trust,
            connection_id: None,
            timers: Timers::default(),
            max_datagram: 1280,
            extended_master_secret: true,
            wall_clock: None,
        }
    }
}
