//! The embedded MQTT broker of the default configuration, so that a first run of the server
//! needs no broker of its own: rmqtt (a maintained Rust broker, used as a library) with MQTT
//! 3.1, 3.1.1 (OASIS, 2014) and 5.0 (OASIS, 2019) on one port, the version taken from each
//! client's CONNECT, so that `mosquitto_sub` with its defaults and an MQTT 5 backend both
//! just connect. Nagle is off on every connection (`TCP_NODELAY`): a PUBACK or a command must
//! not wait for the peer's delayed ACK.
//!
//! Optional, for a broker that is reachable from elsewhere:
//! - **Passwords** ([`super::passwords`]): with a password file, every client must log in
//!   with a user name and password from it, except the bridge itself, which logs in with a
//!   secret made up at start and never written anywhere.
//! - **TLS** (rustls, the *ring* provider as everywhere in the server): a second listener
//!   that terminates TLS and passes the connection to the broker over loopback. rmqtt's own
//!   TLS would bring a second cryptographic library (aws-lc) into the build.
//!
//! A client refused for its login, or for a failed TLS handshake, gets a log line at WARN
//! ("embedded MQTT broker refused a client") with its client id, user name, address and the
//! reason. rmqtt reports every refused CONNECT (and connections that never send one) itself,
//! at INFO under targets `rmqtt::v3`, `rmqtt::v5` and `rmqtt::server`, which
//! [`LOG_DIRECTIVE`] lets through. A client that came in through the TLS front shows the
//! front's loopback address in the broker's lines; the front's own line has its address.
//!
//! MQTT behaviour the bridge relies on: QoS 1 (PUBACK once the broker has routed the message)
//! and QoS 2; persistent sessions (MQTT 3.1.1 `CleanSession = 0`, MQTT 5 `Clean Start = 0`
//! with a Session Expiry Interval) that keep a disconnected client's subscriptions and the
//! messages matching them, up to [`BrokerSettings::max_queued`] per session; MQTT 5 shared
//! subscriptions (`$share/{group}/{filter}`). Nothing is kept across a restart of the server:
//! the bridge's own outbox is what makes the uplink durable.
//!
//! The broker runs on a thread of its own with a single-threaded tokio runtime, so its CPU
//! time is its own (the `mqtt-broker` thread) and it cannot stall the server task.
//! [`EmbeddedBroker::stop`] (or dropping it) ends the thread and drops the runtime: the
//! listeners close, every connection is dropped, and the ports are free when it returns.
//!
//! The bridge's uplink does not go through a TCP connection to its own broker: a
//! [`Handoff`] routes its messages straight into the subscribers' sessions, on the broker's
//! thread, as the broker does with a PUBLISH it has received and decoded, and returns once
//! they are routed (what a PUBACK would have said). That saves, per notification, the MQTT
//! encoding, a `writev`, the broker's read and decode, and a PUBACK both ways: about a third
//! of the server's CPU under telemetry. Commands still reach the bridge through its MQTT
//! subscription.
use super::connect::MAX_PACKET_BYTES;
use super::passwords::PasswordFile;
use crate::config::MqttQos;
use rmqtt::context::ServerContext;
use rmqtt::hook::{Handler, HookResult, Parameter, ReturnType, Type};
use rmqtt::net::Builder;
use rmqtt::server::MqttServer;
use rmqtt::types::AuthResult;
use std::net::SocketAddr;
use std::num::NonZeroU16;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

/// `tracing` filter directives for rmqtt (which logs through the `log` crate): its warnings
/// and errors, and its INFO lines about connections refused (no CONNECT in time, a CONNECT
/// it refuses before any hook runs, an invalid client id).
pub const LOG_DIRECTIVE: &str =
    "rmqtt=warn,rmqtt::server=info,rmqtt::v3=info,rmqtt::v5=info,rmqtt_net=warn";

/// The server's log filter with [`LOG_DIRECTIVE`] appended, unless the filter already says
/// something about `rmqtt` (then the operator asked for it).
pub fn quiet_log_filter(filter: &str) -> String {
    if filter.contains("rmqtt") {
        filter.to_string()
    } else if filter.trim().is_empty() {
        LOG_DIRECTIVE.to_string()
    } else {
        format!("{filter},{LOG_DIRECTIVE}")
    }
}

/// TLS clients connected at once at most: backend consumers and tools.
const MAX_CONNECTIONS: usize = 4096;
/// Sessions the broker keeps at most, connected or not (each queues up to
/// [`BrokerSettings::max_queued`] messages: this bounds the total).
const MAX_SESSIONS: isize = 256;
/// Password checks running at once (each a PBKDF2 of up to a million rounds, on the blocking
/// pool): more wait their turn rather than freeze the broker's one thread.
const CONCURRENT_PASSWORD_CHECKS: usize = 2;
/// Clients at once between TCP accept and CONNACK.
const MAX_HANDSHAKING: usize = 256;
/// Time a new connection has to send its CONNECT.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// QoS 1 and 2 messages sent to one client and not yet acknowledged (its window): room for a
/// backend consuming telemetry at tens of thousands of messages a second.
const MAX_INFLIGHT: u16 = 512;
/// How long a persistent MQTT 3.1.1 session (which has no expiry of its own) outlives its
/// connection, and the most an MQTT 5 client may ask for.
const SESSION_EXPIRY: Duration = Duration::from_secs(24 * 3600);
/// A message without an MQTT 5 expiry has none (rmqtt's default would give it five minutes,
/// and send subscribers an expiry the publisher never set): zero means none to rmqtt. Queues
/// are bounded by length instead ([`BrokerSettings::max_queued`]).
const MESSAGE_EXPIRY: Duration = Duration::ZERO;

/// The embedded broker's settings (from `[mqtt]`).
#[derive(Clone)]
pub struct BrokerSettings {
    /// Where plain MQTT listens.
    pub bind: SocketAddr,
    /// Users who may connect; `None`: anyone may (keep the broker on loopback then).
    pub passwords: Option<Arc<PasswordFile>>,
    /// An MQTT-over-TLS listener in front of the same broker.
    pub tls: Option<TlsListener>,
    /// Messages queued at most for one session whose client is away or slow (the oldest are
    /// dropped past it, as every broker must bound them).
    pub max_queued: usize,
    /// The bridge's client id and its login (user name, secret): only a client with that
    /// login may take that client id (and with it the bridge's session and the commands
    /// queued in it), with or without a password file.
    pub bridge: Option<BridgeLogin>,
}

/// The bridge's client id and login on its own broker.
#[derive(Clone)]
pub struct BridgeLogin {
    /// Its MQTT client id (`mqtt.client_id`).
    pub client_id: String,
    /// Its user name.
    pub username: String,
    /// Its secret, made up at each start and never written anywhere.
    pub secret: String,
}

impl std::fmt::Debug for BrokerSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerSettings")
            .field("bind", &self.bind)
            .field("users", &self.passwords.as_ref().map(|p| p.len()))
            .field("tls", &self.tls.as_ref().map(|t| t.bind))
            .field("max_queued", &self.max_queued)
            .finish_non_exhaustive()
    }
}

impl BrokerSettings {
    /// Plain MQTT on `bind`, anyone may connect.
    pub fn open(bind: SocketAddr) -> BrokerSettings {
        BrokerSettings {
            bind,
            passwords: None,
            tls: None,
            max_queued: 100_000,
            bridge: None,
        }
    }
}

/// The TLS listener's address and configuration.
#[derive(Clone)]
pub struct TlsListener {
    /// Where it listens.
    pub bind: SocketAddr,
    /// Certificate chain and key.
    pub config: Arc<rustls::ServerConfig>,
}

/// Why the embedded broker did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// Port 0: the bridge would not know where to connect.
    #[error("the embedded MQTT broker needs a fixed port, not {0}")]
    PortZero(SocketAddr),
    /// A listener could not bind its address (in use, not a local address, no permission).
    #[error("the embedded MQTT broker cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The broker's thread or runtime could not be created, or the thread died.
    #[error("the embedded MQTT broker could not start: {0}")]
    Start(#[source] std::io::Error),
}

/// A running embedded broker. Stopped by [`EmbeddedBroker::stop`] or when dropped.
pub struct EmbeddedBroker {
    addr: SocketAddr,
    tls_addr: Option<SocketAddr>,
    scx: ServerContext,
    rt: tokio::runtime::Handle,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for EmbeddedBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBroker")
            .field("addr", &self.addr)
            .field("tls_addr", &self.tls_addr)
            .finish_non_exhaustive()
    }
}

/// Publishes into the embedded broker from inside the process, with no connection: each
/// message is routed to the matching subscriptions (queued in each subscriber's session, as
/// for a PUBLISH from a client), on the broker's own thread.
#[derive(Clone)]
pub struct Handoff {
    scx: ServerContext,
    from: rmqtt::types::From,
    /// The broker thread's runtime: the routing runs there, so a publisher can run no further
    /// ahead of the broker than the batch it waits on.
    rt: tokio::runtime::Handle,
}

impl std::fmt::Debug for Handoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handoff").finish_non_exhaustive()
    }
}

impl Handoff {
    /// Routes `messages` (topic, payload; not retained) to the broker's subscribers, in
    /// order, and returns true once all are in every matching session's queue (or dropped,
    /// as the broker drops any message nobody subscribes to): what the broker's PUBACKs would
    /// have meant. False if the broker has stopped: then none may be taken as delivered.
    pub async fn publish_all(&self, messages: Vec<(String, Vec<u8>)>, qos: MqttQos) -> bool {
        use rmqtt::codec::types::QoS;
        let qos = match qos {
            MqttQos::AtMostOnce => QoS::AtMostOnce,
            MqttQos::AtLeastOnce => QoS::AtLeastOnce,
            MqttQos::ExactlyOnce => QoS::ExactlyOnce,
        };
        let (scx, from) = (self.scx.clone(), self.from.clone());
        let route = async move {
            for (topic, payload) in messages {
                let publish = rmqtt::types::Publish::from(rmqtt::types::CodecPublish {
                    dup: false,
                    retain: false,
                    qos,
                    topic: bytestring::ByteString::from(topic),
                    packet_id: None,
                    payload: bytes::Bytes::from(payload),
                    // Present, if empty, as a decoded MQTT 5 PUBLISH has them: the broker
                    // adds an MQTT 5 subscriber's Subscription Identifiers to them.
                    properties: Some(rmqtt::codec::v5::PublishProperties::default()),
                })
                .create_time(rmqtt::utils::timestamp_millis());
                // Delivery failures (a subscriber gone) go to the broker's own hooks, as for
                // a client's PUBLISH; an error here comes only from the retain and delayed
                // features, which this broker does not build.
                if let Err(e) =
                    rmqtt::session::SessionState::forwards(&scx, from.clone(), publish, false, None)
                        .await
                {
                    tracing::debug!(error = %e, "the embedded MQTT broker did not route a message");
                }
            }
        };
        // A runtime that has shut down (the broker stopped) cancels the task at once.
        self.rt.spawn(route).await.is_ok()
    }
}

impl EmbeddedBroker {
    /// Starts a broker on `settings.bind` (and the TLS listener, if any). Returns once every
    /// listener listens; the broker runs on its own thread. An address that cannot be bound
    /// is an error ([`BrokerError::Bind`]).
    pub fn start(settings: BrokerSettings) -> Result<EmbeddedBroker, BrokerError> {
        for addr in std::iter::once(settings.bind).chain(settings.tls.as_ref().map(|t| t.bind)) {
            if addr.port() == 0 {
                return Err(BrokerError::PortZero(addr));
            }
        }
        let addr = settings.bind;
        let tls_addr = settings.tls.as_ref().map(|t| t.bind);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (shutdown_tx, shutdown_rx) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("mqtt-broker".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(BrokerError::Start(e)));
                        return;
                    }
                };
                rt.block_on(serve(settings, ready_tx, shutdown_rx));
                // Dropping the runtime here drops every connection task: clients see the
                // connection close.
            })
            .map_err(BrokerError::Start)?;

        match ready_rx.recv() {
            Ok(Ok((scx, rt))) => Ok(EmbeddedBroker {
                addr,
                tls_addr,
                scx,
                rt,
                shutdown: Some(shutdown_tx),
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                // The thread ended without a word: it panicked.
                let _ = thread.join();
                Err(BrokerError::Start(std::io::Error::other(
                    "the broker thread ended while starting",
                )))
            }
        }
    }

    /// Publishing into this broker from inside the process, as `client_id` (the bridge's
    /// client id: what the broker's hooks and logs see as the message's origin).
    pub fn handoff(&self, client_id: &str) -> Handoff {
        let id = rmqtt::types::Id::from(
            self.scx.node.id(),
            rmqtt::types::ClientId::from(client_id.to_string()),
        );
        Handoff {
            scx: self.scx.clone(),
            from: rmqtt::types::From::from_bridge(id),
            rt: self.rt.clone(),
        }
    }

    /// The plain MQTT listener's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The TLS listener's address, if there is one.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// Stops listening and drops every client connection; the ports are free on return.
    /// Blocks for as long as the broker's thread takes to end (milliseconds). What the broker
    /// held (sessions, queued messages) is gone: a broker started again is a new, empty one,
    /// as after a broker restart without persistence.
    pub fn stop(mut self) {
        self.shut_down();
    }

    fn shut_down(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::warn!("the embedded MQTT broker's thread panicked");
            }
        }
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// The rmqtt listener for `addr` with the bounds above.
fn listener(
    name: &str,
    addr: SocketAddr,
    settings: &BrokerSettings,
) -> Result<rmqtt::net::Listener, BrokerError> {
    Builder::new()
        .name(name)
        .laddr(addr)
        .nodelay(true)
        .max_connections(MAX_CONNECTIONS)
        .max_handshaking_limit(MAX_HANDSHAKING)
        .handshake_timeout(CONNECT_TIMEOUT)
        // The bridge's largest message plus room for the topic and properties.
        .max_packet_size(u32::try_from(MAX_PACKET_BYTES + (64 << 10)).unwrap_or(u32::MAX))
        .max_inflight(NonZeroU16::new(MAX_INFLIGHT).unwrap_or(NonZeroU16::MIN))
        .max_mqueue_len(settings.max_queued)
        .session_expiry_interval(SESSION_EXPIRY)
        .max_session_expiry_interval(SESSION_EXPIRY)
        .message_expiry_interval(MESSAGE_EXPIRY)
        // Always through the authentication hook: it guards the bridge's client id even
        // where anyone may connect.
        .allow_anonymous(false)
        // A restart must not wait for the last run's connections to leave TIME-WAIT.
        .reuseaddr(Some(true))
        .bind()
        .and_then(|l| l.tcp())
        .map_err(|e| BrokerError::Bind {
            addr,
            source: match e.downcast_ref::<std::io::Error>() {
                Some(io) => std::io::Error::new(io.kind(), io.to_string()),
                None => std::io::Error::other(e.to_string()),
            },
        })
}

/// Runs the broker until `shutdown` fires (or its sender is dropped), after telling `ready`
/// whether every listener bound its address.
async fn serve(
    settings: BrokerSettings,
    ready: std::sync::mpsc::Sender<Result<(ServerContext, tokio::runtime::Handle), BrokerError>>,
    shutdown: oneshot::Receiver<()>,
) {
    let plain = match listener("mqtt", settings.bind, &settings) {
        Ok(l) => l,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let tls = match &settings.tls {
        Some(t) => match tokio::net::TcpListener::bind(t.bind).await {
            Ok(l) => Some((l, t.config.clone())),
            Err(source) => {
                let _ = ready.send(Err(BrokerError::Bind {
                    addr: t.bind,
                    source,
                }));
                return;
            }
        },
        None => None,
    };
    let scx = ServerContext::new()
        .mqtt_max_sessions(MAX_SESSIONS)
        // rmqtt would refuse every CONNECT (the bridge's too) while the host's load average
        // or CPU is high; the bounds above are the broker's own.
        .busy_check_enable(false)
        .build()
        .await;
    let register = scx.extends.hook_mgr().register();
    register
        .add(
            Type::ClientAuthenticate,
            Box::new(Authenticate {
                passwords: settings.passwords.clone(),
                bridge: settings.bridge.clone(),
                checks: Arc::new(tokio::sync::Semaphore::new(CONCURRENT_PASSWORD_CHECKS)),
            }),
        )
        .await;
    register
        .add(Type::ClientConnack, Box::new(LogRefusals))
        .await;
    register
        .add(Type::MessagePublish, Box::new(ExpiryRoundsUp))
        .await;
    register
        .add(Type::MessageExpiryCheck, Box::new(ExpiredByArrival))
        .await;
    register.start().await;
    *scx.extends.shared_subscription_mut().await = Box::new(RandomMember);
    if ready
        .send(Ok((scx.clone(), tokio::runtime::Handle::current())))
        .is_err()
    {
        return;
    }
    let broker = MqttServer::new(scx).listener(plain).build().run();
    let front = async {
        match tls {
            Some((l, config)) => tls_front(l, config, settings.bind).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = shutdown => tracing::debug!("embedded MQTT broker stopping"),
        r = broker => tracing::error!(result = ?r.err(), "embedded MQTT broker stopped"),
        () = front => {}
    }
    drop(register);
}

/// Accepts TLS connections and passes each, decrypted, to the plain listener on `inner`.
async fn tls_front(
    listener: tokio::net::TcpListener,
    config: Arc<rustls::ServerConfig>,
    inner: SocketAddr,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let limit = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = limit.clone().acquire_owned().await else {
            return;
        };
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "MQTT TLS listener: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = tcp.set_nodelay(true);
            let tls = match tokio::time::timeout(CONNECT_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::warn!(%peer, reason = %e, "embedded MQTT broker refused a client (TLS handshake)");
                    return;
                }
                Err(_) => {
                    tracing::warn!(%peer, "embedded MQTT broker refused a client (no TLS handshake within 10 s)");
                    return;
                }
            };
            // The CONNECT must follow: a client silent after its handshake is dropped rather
            // than hold a connection slot.
            let mut tls = tls;
            let mut first = [0u8; 1];
            match tokio::time::timeout(CONNECT_TIMEOUT, tls.read(&mut first)).await {
                Ok(Ok(1)) => {}
                _ => {
                    tracing::warn!(%peer, "embedded MQTT broker refused a client (no CONNECT within 10 s of its TLS handshake)");
                    return;
                }
            }
            let inner = match tokio::net::TcpStream::connect(inner).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "MQTT TLS listener: the broker is not reachable");
                    return;
                }
            };
            let _ = inner.set_nodelay(true);
            let mut inner = inner;
            if inner.write_all(&first).await.is_err() {
                return;
            }
            let _ = tokio::io::copy_bidirectional(&mut tls, &mut inner).await;
            let _ = tls.shutdown().await;
        });
    }
}

/// The authentication hook: the bridge's client id only with the bridge's login; anyone
/// else with a user and password from the password file, or freely without one.
struct Authenticate {
    passwords: Option<Arc<PasswordFile>>,
    bridge: Option<BridgeLogin>,
    checks: Arc<tokio::sync::Semaphore>,
}

impl Authenticate {
    async fn decide(
        &self,
        client_id: &str,
        user: &str,
        password: &[u8],
    ) -> Result<bool, &'static str> {
        use subtle::ConstantTimeEq;
        if let Some(b) = &self.bridge {
            let is_bridge = b.username == user && bool::from(b.secret.as_bytes().ct_eq(password));
            if is_bridge {
                return Ok(true);
            }
            if b.client_id == client_id {
                return Err("the bridge's client id, without the bridge's login");
            }
        }
        let Some(passwords) = &self.passwords else {
            return Ok(false);
        };
        if user.is_empty() {
            return Err("no user name");
        }
        // PBKDF2 is CPU work of up to a second: on the blocking pool, a few at a time.
        let Ok(_permit) = self.checks.acquire().await else {
            return Err("shutting down");
        };
        let (passwords, user_owned, password) =
            (passwords.clone(), user.to_string(), password.to_vec());
        let ok = tokio::task::spawn_blocking(move || passwords.check(&user_owned, &password))
            .await
            .unwrap_or(false);
        if ok {
            Ok(false)
        } else {
            Err("bad user name or password")
        }
    }
}

#[async_trait::async_trait]
impl Handler for Authenticate {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        let Parameter::ClientAuthenticate(info) = param else {
            return (true, acc);
        };
        let id = info.id();
        let user = info.username().map(|u| u.to_string()).unwrap_or_default();
        let password = info.password().map(|p| p.to_vec()).unwrap_or_default();
        let result = match self.decide(&id.client_id, &user, &password).await {
            Ok(superuser) => AuthResult::Allow(superuser, None),
            Err(reason) => {
                // rmqtt answers a refused login without running the CONNACK hook: logged
                // here. Peer-chosen strings are logged escaped (`?`): no forged log lines.
                tracing::warn!(
                    client_id = ?&*id.client_id,
                    username = ?user,
                    peer = %id.remote_addr.map(|a| a.to_string()).unwrap_or_default(),
                    reason,
                    "embedded MQTT broker refused a client"
                );
                AuthResult::BadUsernameOrPassword
            }
        };
        (false, Some(HookResult::AuthResult(result)))
    }
}

/// MQTT 5 shared subscriptions (§4.8.2): each message to one member of the group, picked at
/// random (fair over time, for every group and filter alike, with no state to keep) and
/// skipping those whose client is not connected (their persistent session would hold the
/// message until they return while the others are idle); if none is connected, the one
/// picked gets it queued.
#[derive(Default)]
struct RandomMember;

#[async_trait::async_trait]
impl rmqtt::subscribe::SharedSubscription for RandomMember {
    fn is_supported(&self) -> bool {
        true
    }

    async fn choice(
        &self,
        scx: &ServerContext,
        _group: &rmqtt::types::SharedGroup,
        _publisher: &rmqtt::types::Id,
        _topic: &rmqtt::types::TopicName,
        members: &[(
            rmqtt::types::NodeId,
            rmqtt::types::ClientId,
            rmqtt::types::SubscriptionOptions,
            Option<Vec<rmqtt::types::SubscriptionIdentifier>>,
            Option<rmqtt::types::IsOnline>,
        )],
    ) -> Option<(usize, rmqtt::types::IsOnline)> {
        let n = members.len();
        if n == 0 {
            return None;
        }
        let start = rand::random_range(0..n);
        for k in 0..n {
            let i = (start + k) % n;
            let Some((node, client, _, _, known)) = members.get(i) else {
                continue;
            };
            let online = match known {
                Some(o) => *o,
                None => scx.extends.router().await.is_online(*node, client).await,
            };
            if online {
                return Some((i, true));
            }
        }
        Some((start, false))
    }
}

/// The publish hook: MQTT 5 Message Expiry Intervals reach subscribers rounded up, not down.
///
/// rmqtt forwards `(expiry_ms - waited_ms) / 1000` whole seconds, rounded down, and drops the
/// property when that is 0: a command published with a 1 s expiry reached the bridge with
/// none and waited for its sleeping device forever, and every other expiry arrived a second
/// short. MQTT 5 §3.3.2.3.3 asks for the received value minus the time waited. Moving the
/// message's arrival time 999 ms later (it serves only this computation) turns the
/// rounded-down figure into the rounded-up one: a subscriber gets the publisher's value, less
/// each whole second waited. The same hook, at delivery, drops a message whose expiry has
/// passed by the true arrival time (rmqtt alone would deliver it up to 999 ms late, with no
/// expiry at all).
struct ExpiryRoundsUp;

/// See [`ExpiryRoundsUp`].
const ROUND_UP_MS: i64 = 999;

#[async_trait::async_trait]
impl Handler for ExpiryRoundsUp {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        let Parameter::MessagePublish(_, _, publish) = param else {
            return (true, acc);
        };
        let current = match &acc {
            Some(HookResult::Publish(p)) => p,
            _ => *publish,
        };
        let has_expiry = current
            .properties
            .as_ref()
            .is_some_and(|p| p.message_expiry_interval.is_some());
        let Some(arrived) = current.create_time.filter(|_| has_expiry) else {
            return (true, acc);
        };
        let mut p = current.clone();
        p.create_time = Some(arrived.saturating_add(ROUND_UP_MS));
        (true, Some(HookResult::Publish(p)))
    }
}

/// The delivery side of [`ExpiryRoundsUp`]: expired by the true arrival time.
struct ExpiredByArrival;

#[async_trait::async_trait]
impl Handler for ExpiredByArrival {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        let Parameter::MessageExpiryCheck(_, _, publish) = param else {
            return (true, acc);
        };
        let expiry_ms = publish
            .properties
            .as_ref()
            .and_then(|p| p.message_expiry_interval)
            .map(|e| i64::from(e.get()).saturating_mul(1000));
        let (Some(expiry_ms), Some(shifted)) = (expiry_ms, publish.create_time) else {
            return (true, acc);
        };
        let arrived = shifted.saturating_sub(ROUND_UP_MS);
        let now = rmqtt::utils::timestamp_millis();
        if now.saturating_sub(arrived) >= expiry_ms {
            return (false, Some(HookResult::MessageExpiry));
        }
        (true, acc)
    }
}

/// The CONNACK hook: one log line for each client refused.
struct LogRefusals;

#[async_trait::async_trait]
impl Handler for LogRefusals {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        if let Parameter::ClientConnack(info, reason) = param {
            if !reason.success() {
                let id = info.id();
                tracing::warn!(
                    client_id = ?&*id.client_id,
                    username = ?info.username().map(|u| u.to_string()).unwrap_or_default(),
                    peer = %id.remote_addr.map(|a| a.to_string()).unwrap_or_default(),
                    reason = reason.reason(),
                    "embedded MQTT broker refused a client"
                );
            }
        }
        (true, acc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A loopback address with a port free right now.
    fn free_addr() -> SocketAddr {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    }

    const WAIT: Duration = Duration::from_secs(10);

    /// MQTT 5: subscribe, publish QoS 1 with a persistent session, get the PUBACK and the
    /// message back.
    async fn roundtrip_v5(addr: SocketAddr, login: Option<(&str, &str)>) {
        use rumqttc::v5::mqttbytes::v5::Packet;
        use rumqttc::v5::mqttbytes::QoS;
        use rumqttc::v5::{AsyncClient, Event, MqttOptions};
        let mut o = MqttOptions::new("test-v5", addr.ip().to_string(), addr.port());
        o.set_clean_start(false)
            .set_session_expiry_interval(Some(60));
        if let Some((u, p)) = login {
            o.set_credentials(u, p);
        }
        let (client, mut events) = AsyncClient::new(o, 100);
        client
            .subscribe("lwm2m/+/up/#", QoS::AtLeastOnce)
            .await
            .unwrap();
        // Nobody subscribes to this one: acknowledged all the same, connection kept.
        client
            .publish("nobody/listens", QoS::AtLeastOnce, false, "x")
            .await
            .unwrap();
        client
            .publish(
                "lwm2m/dev-1/up/notify",
                QoS::AtLeastOnce,
                false,
                "{\"v\":5}",
            )
            .await
            .unwrap();
        let (mut pubacks, mut received) = (0, None);
        tokio::time::timeout(WAIT, async {
            while pubacks < 2 || received.is_none() {
                match events.poll().await.unwrap() {
                    Event::Incoming(Packet::PubAck(_)) => pubacks += 1,
                    Event::Incoming(Packet::Publish(p)) => {
                        received = Some((p.topic, p.payload, p.qos));
                    }
                    Event::Incoming(Packet::Disconnect(d)) => panic!("disconnected: {d:?}"),
                    _ => {}
                }
            }
        })
        .await
        .expect("PUBACKs and the message within 10 s");
        let (topic, payload, qos) = received.unwrap();
        assert_eq!(&topic[..], b"lwm2m/dev-1/up/notify");
        assert_eq!(&payload[..], b"{\"v\":5}");
        assert_eq!(qos, QoS::AtLeastOnce);
    }

    /// MQTT 3.1.1: the same, with `CleanSession = 0`.
    async fn roundtrip_v311(addr: SocketAddr) {
        use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
        let mut o = MqttOptions::new("test-v311", addr.ip().to_string(), addr.port());
        o.set_clean_session(false);
        let (client, mut events) = AsyncClient::new(o, 100);
        client
            .subscribe("lwm2m/+/dn/#", QoS::AtLeastOnce)
            .await
            .unwrap();
        client
            .publish(
                "lwm2m/dev-2/dn/read",
                QoS::AtLeastOnce,
                false,
                "{\"reqID\":1}",
            )
            .await
            .unwrap();
        let (mut puback, mut received) = (false, None);
        tokio::time::timeout(WAIT, async {
            while !puback || received.is_none() {
                match events.poll().await.unwrap() {
                    Event::Incoming(Packet::PubAck(_)) => puback = true,
                    Event::Incoming(Packet::Publish(p)) => {
                        received = Some((p.topic, p.payload, p.qos));
                    }
                    _ => {}
                }
            }
        })
        .await
        .expect("PUBACK and the message within 10 s");
        let (topic, payload, qos) = received.unwrap();
        assert_eq!(topic, "lwm2m/dev-2/dn/read");
        assert_eq!(&payload[..], b"{\"reqID\":1}");
        assert_eq!(qos, QoS::AtLeastOnce);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn v5_and_v311_clients_publish_qos1_through_one_port() {
        let addr = free_addr();
        let broker = EmbeddedBroker::start(BrokerSettings::open(addr)).unwrap();
        assert_eq!(broker.addr(), addr);
        roundtrip_v5(addr, None).await;
        roundtrip_v311(addr).await;
        broker.stop();
    }

    /// Messages handed over in process reach MQTT 3.1.1 and 5 subscribers in order, with
    /// the QoS asked for and an MQTT 5 subscriber's Subscription Identifier, are queued for a
    /// persistent session whose client is away, and are refused once the broker stopped.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn handed_over_messages_reach_subscribers_in_order_and_wait_for_absent_ones() {
        use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
        let addr = free_addr();
        let broker = EmbeddedBroker::start(BrokerSettings::open(addr)).unwrap();
        let handoff = broker.handoff("lwm2m-server");
        let n = |i: usize| format!("{{\"n\":{i}}}");
        let batch = |from: usize| -> Vec<(String, Vec<u8>)> {
            (from..from + 25)
                .map(|i| (format!("lwm2m/dev-{}/up/notify", i % 3), n(i).into_bytes()))
                .collect()
        };

        // An MQTT 5 subscriber with a Subscription Identifier, connected.
        let v5 = {
            use rumqttc::v5::mqttbytes::v5::{Packet, SubscribeProperties};
            use rumqttc::v5::{AsyncClient, Event, MqttOptions};
            let o = MqttOptions::new("backend-5", addr.ip().to_string(), addr.port());
            let (client, mut events) = AsyncClient::new(o, 100);
            let props = SubscribeProperties {
                id: Some(7),
                user_properties: Vec::new(),
            };
            client
                .subscribe_with_properties(
                    "lwm2m/+/up/#",
                    rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
                    props,
                )
                .await
                .unwrap();
            tokio::time::timeout(WAIT, async {
                while !matches!(
                    events.poll().await.unwrap(),
                    Event::Incoming(Packet::SubAck(_))
                ) {}
            })
            .await
            .expect("SUBACK within 10 s");
            tokio::spawn(async move {
                let _client = client;
                let mut got = Vec::new();
                while got.len() < 50 {
                    if let Ok(Event::Incoming(Packet::Publish(p))) = events.poll().await {
                        let ids = p.properties.map(|pr| pr.subscription_identifiers);
                        got.push((String::from_utf8(p.payload.to_vec()).unwrap(), ids));
                    }
                }
                got
            })
        };

        // An MQTT 3.1.1 subscriber with a persistent session, away.
        let options = || {
            let mut o = MqttOptions::new("backend-311", addr.ip().to_string(), addr.port());
            o.set_clean_session(false);
            o
        };
        let (client, mut events) = AsyncClient::new(options(), 100);
        client
            .subscribe("lwm2m/+/up/#", QoS::AtLeastOnce)
            .await
            .unwrap();
        tokio::time::timeout(WAIT, async {
            while !matches!(
                events.poll().await.unwrap(),
                Event::Incoming(Packet::SubAck(_))
            ) {}
        })
        .await
        .expect("SUBACK within 10 s");
        client.disconnect().await.unwrap();
        tokio::time::timeout(WAIT, async {
            while let Ok(e) = events.poll().await {
                if let Event::Outgoing(rumqttc::Outgoing::Disconnect) = e {
                    break;
                }
            }
        })
        .await
        .expect("DISCONNECT sent within 10 s");
        drop(events);
        // Until the broker has seen it go, a message for it would go to the closing connection.
        tokio::time::timeout(WAIT, async {
            loop {
                let shared = broker.scx.extends.shared().await;
                if shared
                    .session_status("backend-311")
                    .await
                    .is_some_and(|s| !s.online)
                {
                    break;
                }
                drop(shared);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the session offline within 10 s");

        assert!(handoff.publish_all(batch(0), MqttQos::AtLeastOnce).await);
        assert!(handoff.publish_all(batch(25), MqttQos::AtLeastOnce).await);
        // Nobody subscribes here: dropped, as the broker drops any such message.
        assert!(
            handoff
                .publish_all(
                    vec![("elsewhere/x".into(), b"-".to_vec())],
                    MqttQos::AtLeastOnce
                )
                .await
        );
        let want: Vec<String> = (0..50).map(n).collect();

        let got = tokio::time::timeout(WAIT, v5)
            .await
            .expect("50 messages within 10 s")
            .unwrap();
        assert_eq!(got.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>(), want);
        assert!(
            got.iter().all(|(_, ids)| ids.as_deref() == Some(&[7][..])),
            "{:?}",
            got[0]
        );

        let (_client, mut events) = AsyncClient::new(options(), 100);
        let mut got = Vec::new();
        tokio::time::timeout(WAIT, async {
            while got.len() < 50 {
                if let Event::Incoming(Packet::Publish(p)) = events.poll().await.unwrap() {
                    assert_eq!(p.qos, QoS::AtLeastOnce);
                    got.push(String::from_utf8(p.payload.to_vec()).unwrap());
                }
            }
        })
        .await
        .expect("the 50 queued messages within 10 s");
        assert_eq!(got, want);

        broker.stop();
        assert!(
            !handoff.publish_all(batch(50), MqttQos::AtLeastOnce).await,
            "a stopped broker takes nothing"
        );
    }

    /// A persistent session keeps a QoS 1 message published while its subscriber was away.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_persistent_session_gets_what_was_published_while_away() {
        use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
        let addr = free_addr();
        let _broker = EmbeddedBroker::start(BrokerSettings::open(addr)).unwrap();
        let options = |id: &str| {
            let mut o = MqttOptions::new(id, addr.ip().to_string(), addr.port());
            o.set_clean_session(false);
            o
        };
        // Subscribe, then go away.
        let (sub, mut sub_events) = AsyncClient::new(options("consumer"), 10);
        sub.subscribe("lwm2m/+/up/#", QoS::AtLeastOnce)
            .await
            .unwrap();
        tokio::time::timeout(WAIT, async {
            while !matches!(
                sub_events.poll().await.unwrap(),
                Event::Incoming(Packet::SubAck(_))
            ) {}
        })
        .await
        .unwrap();
        sub.disconnect().await.unwrap();
        // DISCONNECT sent, then the connection dropped with the event loop.
        tokio::time::timeout(WAIT, async {
            while !matches!(
                sub_events.poll().await,
                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) | Err(_)
            ) {}
        })
        .await
        .unwrap();
        drop(sub_events);
        tokio::time::sleep(Duration::from_millis(200)).await;

        let (publisher, mut pub_events) = AsyncClient::new(options("bridge"), 10);
        publisher
            .publish("lwm2m/dev-3/up/send", QoS::AtLeastOnce, false, "while away")
            .await
            .unwrap();
        tokio::time::timeout(WAIT, async {
            while !matches!(
                pub_events.poll().await.unwrap(),
                Event::Incoming(Packet::PubAck(_))
            ) {}
        })
        .await
        .unwrap();

        let (_sub, mut sub_events) = AsyncClient::new(options("consumer"), 10);
        let got = tokio::time::timeout(WAIT, async {
            loop {
                match sub_events.poll().await.unwrap() {
                    Event::Incoming(Packet::ConnAck(c)) => assert!(c.session_present),
                    Event::Incoming(Packet::Publish(p)) => return p,
                    _ => {}
                }
            }
        })
        .await
        .expect("the message kept for the session");
        assert_eq!(&got.payload[..], b"while away");
    }

    #[test]
    fn an_address_in_use_is_an_error_and_stop_frees_it() {
        let addr = free_addr();
        let first = EmbeddedBroker::start(BrokerSettings::open(addr)).unwrap();
        match EmbeddedBroker::start(BrokerSettings::open(addr)) {
            Err(BrokerError::Bind { addr: a, source }) => {
                assert_eq!(a, addr);
                assert_eq!(source.kind(), std::io::ErrorKind::AddrInUse);
            }
            other => panic!("second broker on {addr}: {other:?}"),
        }
        first.stop();
        // Stopped: the port is free again, and a new broker takes it.
        let again = EmbeddedBroker::start(BrokerSettings::open(addr)).unwrap();
        drop(again);
        std::net::TcpListener::bind(addr).expect("dropping the broker frees its port");
    }

    /// CONNECT with this login; the CONNACK's reason.
    async fn connack_v5(addr: SocketAddr, id: &str, login: Option<(&str, &str)>) -> String {
        use rumqttc::v5::mqttbytes::v5::Packet;
        use rumqttc::v5::{AsyncClient, Event, MqttOptions};
        let mut o = MqttOptions::new(id, addr.ip().to_string(), addr.port());
        if let Some((u, p)) = login {
            o.set_credentials(u, p);
        }
        let (_client, mut events) = AsyncClient::new(o, 10);
        tokio::time::timeout(WAIT, async {
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(c))) => return format!("{:?}", c.code),
                    Ok(_) => {}
                    Err(e) => return e.to_string(),
                }
            }
        })
        .await
        .expect("a CONNACK within 10 s")
    }

    fn bridge_login() -> BridgeLogin {
        BridgeLogin {
            client_id: "lwm2m-server".into(),
            username: "lwm2m-server-bridge".into(),
            secret: "f00d".into(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nobody_but_the_bridge_takes_the_bridges_client_id() {
        let addr = free_addr();
        let settings = BrokerSettings {
            bridge: Some(bridge_login()),
            ..BrokerSettings::open(addr)
        };
        let _broker = EmbeddedBroker::start(settings).unwrap();
        // Without a password file anyone gets in, under any other client id...
        assert_eq!(connack_v5(addr, "backend", None).await, "Success");
        // ...but the bridge's (whose session holds the commands queued for it) only with the
        // bridge's login.
        let taken = connack_v5(addr, "lwm2m-server", None).await;
        assert!(taken.contains("BadUserNamePassword"), "{taken}");
        let guessed = connack_v5(addr, "lwm2m-server", Some(("lwm2m-server-bridge", "beef"))).await;
        assert!(guessed.contains("BadUserNamePassword"), "{guessed}");
        assert_eq!(
            connack_v5(addr, "lwm2m-server", Some(("lwm2m-server-bridge", "f00d"))).await,
            "Success"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn with_a_password_file_only_its_users_and_the_bridge_get_in() {
        let addr = free_addr();
        let file = format!(
            "# users\nalice:{}\n",
            crate::bridge::passwords::hash_password(b"secret")
        );
        let settings = BrokerSettings {
            passwords: Some(Arc::new(PasswordFile::parse(&file).unwrap())),
            bridge: Some(bridge_login()),
            ..BrokerSettings::open(addr)
        };
        let _broker = EmbeddedBroker::start(settings).unwrap();
        assert!(connack_v5(addr, "a", None)
            .await
            .contains("BadUserNamePassword"));
        let wrong = connack_v5(addr, "b", Some(("alice", "guess"))).await;
        assert!(wrong.contains("BadUserNamePassword"), "{wrong}");
        let unknown = connack_v5(addr, "c", Some(("mallory", "secret"))).await;
        assert!(unknown.contains("BadUserNamePassword"), "{unknown}");
        // The bridge's secret is not a password for another user name.
        let borrowed = connack_v5(addr, "d", Some(("alice", "f00d"))).await;
        assert!(borrowed.contains("BadUserNamePassword"), "{borrowed}");
        roundtrip_v5(addr, Some(("alice", "secret"))).await;
        assert_eq!(
            connack_v5(addr, "e", Some(("lwm2m-server-bridge", "f00d"))).await,
            "Success"
        );
    }

    #[test]
    fn port_zero_is_refused() {
        let zero: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let e = EmbeddedBroker::start(BrokerSettings::open(zero)).unwrap_err();
        assert!(matches!(e, BrokerError::PortZero(_)), "{e}");
    }

    #[test]
    fn the_log_filter_quiets_rmqtt_unless_asked_for() {
        assert_eq!(quiet_log_filter("info"), format!("info,{LOG_DIRECTIVE}"));
        assert_eq!(quiet_log_filter(""), LOG_DIRECTIVE);
        assert_eq!(quiet_log_filter("debug,rmqtt=info"), "debug,rmqtt=info");
        // What the server builds its filter from must accept it.
        let f = quiet_log_filter("info,lwm2m_server=debug");
        tracing_subscriber::EnvFilter::try_new(&f).unwrap();
    }
}
