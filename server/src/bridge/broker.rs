//! The embedded MQTT broker of the default configuration, so that a first run of the server
//! needs no broker of its own: rumqttd, with an MQTT 3.1.1 (OASIS, 2014) listener, an MQTT 5.0
//! (OASIS, 2019) listener, or both, on plain TCP (meant for loopback: no TLS, no
//! authentication, nothing kept across restarts). Production configurations point the bridge
//! at an external broker instead.
//!
//! rumqttd's own `Broker::start` blocks its caller for the broker's lifetime, logs a listener
//! that cannot bind instead of returning the error, and cannot be stopped. So this module
//! assembles the broker from rumqttd's public parts instead: the `Router` (rumqttd's thread
//! holding sessions, subscriptions and the message logs) and one `Server` per listener, run
//! on a thread of our own with a single-threaded tokio runtime. That gives:
//!
//! - **Bind errors as errors.** A rumqttd `Server` binds its listener on the first poll of
//!   its `start` future (tokio binds a `SocketAddr` without awaiting anything) and then waits
//!   in `accept`; so a future that is ready after one poll failed to bind, and its error is
//!   returned by [`EmbeddedBroker::start`]. Each address is also tried with a plain
//!   `std::net::TcpListener` first, so the usual case (address in use) is refused before
//!   rumqttd's router thread exists.
//! - **Stop.** [`EmbeddedBroker::stop`] (or dropping the value) ends our thread and drops its
//!   runtime: the listeners close and every client connection is dropped, and the ports are
//!   free when it returns. rumqttd's router thread cannot be stopped (it holds a sender to its
//!   own channel and has no shutdown event): it stays parked on that channel, idle, with the
//!   sessions it held, until the process exits. One such thread is left per stopped broker.
//!
//! MQTT behaviour the bridge relies on, provided by rumqttd: QoS 1 (PUBACK once the router
//! has the message) and QoS 2; persistent sessions (MQTT 3.1.1 `CleanSession = 0`, MQTT 5
//! `Clean Start = 0`) that keep a disconnected client's subscriptions and the messages
//! matching them, within the bounds of `router_config`. A publish on a topic nobody
//! subscribes to is acknowledged and dropped. Each listener speaks one protocol version: a
//! 3.1.1 client must use the v4 listener, an MQTT 5 client the v5 one.
//!
//! Logging: rumqttd logs through `tracing` under targets `rumqttd::...`: at `info` every
//! accepted connection, CONNECT, subscription and disconnect, and at `error` ("router-drop")
//! every *clean* client DISCONNECT. [`LOG_DIRECTIVE`] (or [`quiet_log_filter`]) keeps the
//! router's warnings and errors and silences the per-connection listener code, whose other
//! messages are a client's own failures (a bad CONNECT, a dropped link), and whose bind error
//! [`EmbeddedBroker::start`] returns instead.
use super::connect::MAX_PACKET_BYTES;
use rumqttd::protocol::{v4::V4, v5::V5};
use rumqttd::{ConnectionSettings, LinkType, Router, RouterConfig, Server, ServerSettings};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::Poll;
use std::thread::JoinHandle;
use tokio::sync::oneshot;

/// `tracing` filter directives for rumqttd: the router's warnings and errors, nothing from
/// the listeners (see the module documentation).
pub const LOG_DIRECTIVE: &str = "rumqttd=warn,rumqttd::server::broker=off";

/// The server's log filter with [`LOG_DIRECTIVE`] appended, unless the filter already says
/// something about `rumqttd` (then the operator asked for it).
pub fn quiet_log_filter(filter: &str) -> String {
    if filter.contains("rumqttd") {
        filter.to_string()
    } else if filter.trim().is_empty() {
        LOG_DIRECTIVE.to_string()
    } else {
        format!("{filter},{LOG_DIRECTIVE}")
    }
}

/// Clients connected at once at most (rumqttd preallocates its tables for them): the bridge
/// and a few backend consumers on loopback.
const MAX_CONNECTIONS: usize = 1024;

/// Bytes in one segment of a subscription's message log, and segments kept per subscription.
/// A subscriber that falls further behind than these (a persistent session whose client is
/// away) loses the oldest messages: at 64 MiB per subscription, hours of a small fleet's
/// notifications.
const SEGMENT_BYTES: usize = 8 << 20;
const SEGMENTS: usize = 8;

/// Milliseconds a new connection may take to send its CONNECT.
const CONNECT_TIMEOUT_MS: u16 = 10_000;

/// Why the embedded broker did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// Neither a v4 nor a v5 address.
    #[error("the embedded MQTT broker needs at least one listener address (MQTT 3.1.1 or MQTT 5)")]
    NoListener,
    /// Both listeners on one address.
    #[error("the embedded MQTT broker's MQTT 3.1.1 and MQTT 5 listeners cannot share {0}")]
    SameAddress(SocketAddr),
    /// Port 0: rumqttd would pick a port without telling which.
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
#[derive(Debug)]
pub struct EmbeddedBroker {
    v4: Option<SocketAddr>,
    v5: Option<SocketAddr>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Debug, Clone, Copy)]
enum Version {
    V311,
    V5,
}

/// A listener's `start` future, reduced to the error it ends with.
type Listening = Pin<Box<dyn Future<Output = BrokerError>>>;

impl EmbeddedBroker {
    /// Starts a broker with an MQTT 3.1.1 listener on `v4` and an MQTT 5 listener on `v5`
    /// (either may be `None`, not both). Returns once both listen; the broker runs on its own
    /// threads. An address that cannot be bound is an error ([`BrokerError::Bind`]).
    pub fn start(
        v4: Option<SocketAddr>,
        v5: Option<SocketAddr>,
    ) -> Result<EmbeddedBroker, BrokerError> {
        let listeners: Vec<(Version, SocketAddr)> = [(Version::V311, v4), (Version::V5, v5)]
            .into_iter()
            .filter_map(|(v, a)| Some((v, a?)))
            .collect();
        if listeners.is_empty() {
            return Err(BrokerError::NoListener);
        }
        if let (Some(a), Some(b)) = (v4, v5) {
            if a == b {
                return Err(BrokerError::SameAddress(a));
            }
        }
        for &(_, addr) in &listeners {
            if addr.port() == 0 {
                return Err(BrokerError::PortZero(addr));
            }
            // The common failure, refused before rumqttd's router thread (which cannot be
            // stopped) exists. The listener is closed again at once; the real bind below
            // still reports a port taken in between.
            std::net::TcpListener::bind(addr)
                .map_err(|source| BrokerError::Bind { addr, source })?;
        }

        let router_tx = Router::new(0, router_config()).spawn();
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
                let servers: Vec<(SocketAddr, Listening)> = listeners
                    .into_iter()
                    .map(|(version, addr)| {
                        let settings = server_settings(version, addr);
                        let f: Listening = match version {
                            Version::V311 => {
                                let mut s = Server::new(settings, router_tx.clone(), V4);
                                Box::pin(async move {
                                    listener_error(addr, s.start(LinkType::Remote).await)
                                })
                            }
                            Version::V5 => {
                                let mut s = Server::new(settings, router_tx.clone(), V5);
                                Box::pin(async move {
                                    listener_error(addr, s.start(LinkType::Remote).await)
                                })
                            }
                        };
                        (addr, f)
                    })
                    .collect();
                drop(router_tx);
                rt.block_on(serve(servers, ready_tx, shutdown_rx));
                // Dropping the runtime here drops every connection task: clients see the
                // connection close.
            })
            .map_err(BrokerError::Start)?;

        match ready_rx.recv() {
            Ok(Ok(())) => {
                tracing::debug!(?v4, ?v5, "embedded MQTT broker listening");
                Ok(EmbeddedBroker {
                    v4,
                    v5,
                    shutdown: Some(shutdown_tx),
                    thread: Some(thread),
                })
            }
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

    /// The MQTT 3.1.1 listener's address.
    pub fn v4_addr(&self) -> Option<SocketAddr> {
        self.v4
    }

    /// The MQTT 5 listener's address.
    pub fn v5_addr(&self) -> Option<SocketAddr> {
        self.v5
    }

    /// Stops listening and drops every client connection; the ports are free on return.
    /// Blocks for as long as the broker's thread takes to end (milliseconds). What rumqttd
    /// held (sessions, retained messages) is gone: a broker started again is a new, empty
    /// one, as after a broker restart without persistence.
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

/// Runs the listeners until `shutdown` fires (or its sender is dropped), after telling
/// `ready` whether every one of them bound its address.
async fn serve(
    mut servers: Vec<(SocketAddr, Listening)>,
    ready: std::sync::mpsc::Sender<Result<(), BrokerError>>,
    shutdown: oneshot::Receiver<()>,
) {
    for (_, f) in servers.iter_mut() {
        // One poll: rumqttd binds its listener, then waits in accept (see the module
        // documentation). Ready now means the bind failed.
        let first = std::future::poll_fn(|cx| Poll::Ready(f.as_mut().poll(cx))).await;
        if let Poll::Ready(e) = first {
            let _ = ready.send(Err(e));
            return;
        }
    }
    if ready.send(Ok(())).is_err() {
        return;
    }
    // A listener that fails later (its accept loop only ends on a bind error, so this is not
    // expected) ends the broker; the bridge then sees its connection refused and retries.
    let failed = std::future::poll_fn(|cx| {
        for (addr, f) in servers.iter_mut() {
            if let Poll::Ready(e) = f.as_mut().poll(cx) {
                return Poll::Ready((*addr, e));
            }
        }
        Poll::Pending
    });
    tokio::select! {
        _ = shutdown => tracing::debug!("embedded MQTT broker stopping"),
        (addr, e) = failed => tracing::error!(%addr, error = %e, "embedded MQTT broker stopped"),
    }
}

/// The error a listener's `start` ended with, as a [`BrokerError::Bind`]. rumqttd's error
/// type is not public; its I/O cause (an `io::Error` source) keeps its kind.
fn listener_error<E: std::error::Error + 'static>(
    addr: SocketAddr,
    result: Result<(), E>,
) -> BrokerError {
    let source = match result {
        Ok(()) => std::io::Error::other("the listener stopped"),
        Err(e) => match e.source().and_then(|s| s.downcast_ref::<std::io::Error>()) {
            Some(io) => std::io::Error::new(io.kind(), io.to_string()),
            None => std::io::Error::other(e.to_string()),
        },
    };
    BrokerError::Bind { addr, source }
}

/// The router's bounds: see [`MAX_CONNECTIONS`], [`SEGMENT_BYTES`] and [`SEGMENTS`].
fn router_config() -> RouterConfig {
    RouterConfig {
        max_connections: MAX_CONNECTIONS,
        // Messages handed to a QoS 0 subscriber per scheduling round (QoS 1/2 subscribers
        // are bounded by rumqttd's fixed window of 100 unacknowledged messages instead).
        max_outgoing_packet_count: 200,
        max_segment_size: SEGMENT_BYTES,
        max_segment_count: SEGMENTS,
        custom_segment: None,
        initialized_filters: None,
        shared_subscriptions_strategy: Default::default(),
    }
}

fn server_settings(version: Version, addr: SocketAddr) -> ServerSettings {
    ServerSettings {
        name: match version {
            Version::V311 => format!("mqtt-v311-{addr}"),
            Version::V5 => format!("mqtt-v5-{addr}"),
        },
        listen: addr,
        tls: None,
        // No pause between accepts: on loopback a burst of connections is the test suite,
        // not an attack.
        next_connection_delay_ms: 0,
        connections: ConnectionSettings {
            connection_timeout_ms: CONNECT_TIMEOUT_MS,
            // The largest packet accepted: the bridge's own limit plus room for the topic
            // and properties.
            max_payload_size: MAX_PACKET_BYTES + (64 << 10),
            // Packets read from one connection before they go to the router as a batch.
            max_inflight_count: 500,
            auth: None,
            external_auth: None,
            // Would create a message log per topic published with no subscriber; rumqttd
            // 0.20 acknowledges and drops those publishes either way.
            dynamic_filters: false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A loopback address with a port free right now.
    fn free_addr() -> SocketAddr {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    }

    const WAIT: Duration = Duration::from_secs(10);

    /// MQTT 5: subscribe, publish QoS 1 with a persistent session, get the PUBACK and the
    /// message back.
    async fn roundtrip_v5(addr: SocketAddr) {
        use rumqttc::v5::mqttbytes::v5::Packet;
        use rumqttc::v5::mqttbytes::QoS;
        use rumqttc::v5::{AsyncClient, Event, MqttOptions};
        let mut o = MqttOptions::new("test-v5", addr.ip().to_string(), addr.port());
        o.set_clean_start(false)
            .set_session_expiry_interval(Some(60));
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
    async fn v5_and_v311_clients_publish_qos1_through_it() {
        let (a4, a5) = (free_addr(), free_addr());
        let broker = EmbeddedBroker::start(Some(a4), Some(a5)).unwrap();
        assert_eq!((broker.v4_addr(), broker.v5_addr()), (Some(a4), Some(a5)));
        roundtrip_v5(a5).await;
        roundtrip_v311(a4).await;
        broker.stop();
    }

    /// A persistent session keeps a QoS 1 message published while its subscriber was away.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_persistent_session_gets_what_was_published_while_away() {
        use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
        let addr = free_addr();
        let _broker = EmbeddedBroker::start(Some(addr), None).unwrap();
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
        tokio::time::timeout(WAIT, async { while sub_events.poll().await.is_ok() {} })
            .await
            .unwrap();
        drop(sub_events);

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
        let first = EmbeddedBroker::start(None, Some(addr)).unwrap();
        match EmbeddedBroker::start(None, Some(addr)) {
            Err(BrokerError::Bind { addr: a, source }) => {
                assert_eq!(a, addr);
                assert_eq!(source.kind(), std::io::ErrorKind::AddrInUse);
            }
            other => panic!("second broker on {addr}: {other:?}"),
        }
        // Either listener of a pair.
        let e = EmbeddedBroker::start(Some(free_addr()), Some(addr)).unwrap_err();
        assert!(e.to_string().contains(&addr.to_string()), "{e}");
        first.stop();
        // Stopped: the port is free again, and a new broker takes it.
        let again = EmbeddedBroker::start(None, Some(addr)).unwrap();
        drop(again);
        std::net::TcpListener::bind(addr).expect("dropping the broker frees its port");
    }

    /// The path the pre-check does not cover (a port taken between the check and rumqttd's
    /// bind): rumqttd's own bind error comes back through `serve`, not only as a log line.
    #[test]
    fn a_bind_failure_inside_rumqttd_is_returned() {
        let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = holder.local_addr().unwrap();
        let router_tx = Router::new(0, router_config()).spawn();
        let mut server = Server::new(server_settings(Version::V5, addr), router_tx, V5);
        let f: Listening =
            Box::pin(async move { listener_error(addr, server.start(LinkType::Remote).await) });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (_shutdown_tx, shutdown_rx) = oneshot::channel();
        rt.block_on(serve(vec![(addr, f)], ready_tx, shutdown_rx));
        match ready_rx.recv().unwrap() {
            Err(BrokerError::Bind { addr: a, source }) => {
                assert_eq!(a, addr);
                assert_eq!(source.kind(), std::io::ErrorKind::AddrInUse);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn listener_errors_keep_their_kind() {
        let addr: SocketAddr = "127.0.0.1:1883".parse().unwrap();
        #[derive(Debug, thiserror::Error)]
        #[error("I/O {0}")]
        struct Wrapped(#[from] std::io::Error);
        let e = listener_error(
            addr,
            Err(Wrapped(std::io::Error::from(std::io::ErrorKind::AddrInUse))),
        );
        match e {
            BrokerError::Bind { source, .. } => {
                assert_eq!(source.kind(), std::io::ErrorKind::AddrInUse)
            }
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn the_log_filter_quiets_rumqttd_unless_asked_for() {
        assert_eq!(
            quiet_log_filter("info"),
            "info,rumqttd=warn,rumqttd::server::broker=off"
        );
        assert_eq!(quiet_log_filter(""), LOG_DIRECTIVE);
        assert_eq!(quiet_log_filter("debug,rumqttd=info"), "debug,rumqttd=info");
        // What the server builds its filter from must accept it.
        let f = quiet_log_filter("info,lwm2m_server=debug");
        tracing_subscriber::EnvFilter::try_new(&f).unwrap();
    }

    #[test]
    fn bad_listener_sets_are_refused() {
        assert!(matches!(
            EmbeddedBroker::start(None, None),
            Err(BrokerError::NoListener)
        ));
        let a = free_addr();
        assert!(matches!(
            EmbeddedBroker::start(Some(a), Some(a)),
            Err(BrokerError::SameAddress(_))
        ));
        let zero: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let e = EmbeddedBroker::start(Some(zero), None).unwrap_err();
        assert!(matches!(e, BrokerError::PortZero(_)), "{e}");
    }
}
