//! The tokio task that runs one [`Endpoint`] on one UDP socket.
//!
//! Its whole job is to carry bytes and time between the socket and the sans-IO core: each
//! datagram goes to `handle_datagram`, each expired deadline to `handle_timeout`, each
//! command from a [`Handle`] to the matching endpoint call; after every input it sends what
//! `poll_transmit` yields and routes what `poll_event` yields. Message IDs, retransmission,
//! deduplication, block-wise and Observe (RFC 7252, 7959, 7641) all stay in the core.
//!
//! Why one task per socket and none per peer: a CoAP server faces tens of thousands of
//! mostly idle devices, and the endpoint already keeps all their state in bounded tables
//! with one deadline for the lot. A task (and a timer) per peer would add memory and wake-ups
//! per device and split state the core needs in one place. Datagrams are read in batches
//! (one `recv_from`, then up to [`RECV_BATCH`] `try_recv_from`) so that under load the
//! replies of a whole batch leave together. Every channel is bounded; a full one either
//! makes the driver wait (requests to the application, see [`Incoming`]) or drops what an
//! application can recover from (notifications, observer-gone events).
use super::handle::{Command, Handle, Incoming, NetError, Notification, NotificationItem};
use super::handle::{ObserverGone, Reply};
use crate::coap::{msg, Endpoint, EndpointConfig, Event, IncomingRequest, Packet, RequestId};
use crate::coap::{CancelMode, ResponseType, Transmit};
use std::collections::{HashMap, VecDeque};
use std::io::{self, ErrorKind};
use std::net::SocketAddr;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, Instant};

/// Datagrams read with `try_recv_from` after each `recv_from` before sending replies.
pub const RECV_BATCH: usize = 64;
/// Receive buffer: the largest UDP payload, so no datagram is ever truncated.
const RECV_BUF: usize = 64 * 1024;

/// Configures and binds a [`CoapSocket`].
#[derive(Debug, Clone)]
pub struct Builder {
    addr: SocketAddr,
    config: EndpointConfig,
    /// A fixed RNG seed (tests); `None` takes one from the operating system.
    seed: Option<u64>,
    channel_capacity: usize,
    notification_capacity: usize,
}

impl Builder {
    /// The endpoint configuration. Its `rng_seed` is replaced by OS randomness, since
    /// predictable message IDs and tokens would let off-path attackers spoof answers
    /// (RFC 7252 §5.3.1), unless [`rng_seed`](Self::rng_seed) fixes one.
    pub fn config(mut self, config: EndpointConfig) -> Self {
        self.config = config;
        self
    }

    /// Fixes the RNG seed, to make a test run reproducible. Never in production.
    pub fn rng_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Capacity of the command queue, the incoming-request queue and the observer-gone
    /// queue (default 1024).
    pub fn channel_capacity(mut self, n: usize) -> Self {
        self.channel_capacity = n.max(1);
        self
    }

    /// Capacity of each observation's notification channel (default 32).
    pub fn notification_capacity(mut self, n: usize) -> Self {
        self.notification_capacity = n.max(1);
        self
    }

    /// Binds the socket. This is the only failure that does not happen inside the driver.
    pub async fn bind(mut self) -> io::Result<CoapSocket> {
        let socket = UdpSocket::bind(self.addr).await?;
        let local_addr = socket.local_addr()?;
        self.config.rng_seed = self.seed.unwrap_or_else(rand::random);
        let (cmd_tx, commands) = mpsc::channel(self.channel_capacity);
        let (req_tx, requests) = mpsc::channel(self.channel_capacity);
        let (gone_tx, observers_gone) = mpsc::channel(self.channel_capacity);
        Ok(CoapSocket {
            handle: Handle::new(cmd_tx, local_addr, self.notification_capacity),
            incoming: Incoming {
                requests,
                observers_gone,
            },
            driver: Driver {
                socket,
                local_addr,
                endpoint: Endpoint::new(self.config),
                commands,
                requests: req_tx,
                observers_gone: gone_tx,
                pending: HashMap::new(),
                backlog: VecDeque::new(),
            },
        })
    }
}

/// A bound CoAP UDP socket, before its driver runs: split it into the [`Handle`], the
/// [`Incoming`] side and the [`Driver`] future, or [`spawn`](Self::spawn) it.
#[derive(Debug)]
pub struct CoapSocket {
    handle: Handle,
    incoming: Incoming,
    driver: Driver,
}

impl CoapSocket {
    /// A builder for a socket bound to `addr` (IPv4 or IPv6; port 0 picks a free port).
    pub fn builder(addr: SocketAddr) -> Builder {
        Builder {
            addr,
            config: EndpointConfig::default(),
            seed: None,
            channel_capacity: 1024,
            notification_capacity: 32,
        }
    }

    /// Binds to `addr` with `config` and default channel sizes.
    pub async fn bind(addr: SocketAddr, config: EndpointConfig) -> io::Result<Self> {
        Self::builder(addr).config(config).bind().await
    }

    /// The bound address, with the real port.
    pub fn local_addr(&self) -> SocketAddr {
        self.driver.local_addr
    }

    /// The three parts; run the [`Driver`] on any executor.
    pub fn split(self) -> (Handle, Incoming, Driver) {
        (self.handle, self.incoming, self.driver)
    }

    /// Spawns the driver on the current tokio runtime.
    pub fn spawn(self) -> (Handle, Incoming, JoinHandle<()>) {
        let (handle, incoming, driver) = self.split();
        (handle, incoming, tokio::spawn(driver.run()))
    }
}

/// What a pending request of a [`Handle`] is waiting for.
#[derive(Debug)]
enum Pending {
    Request(Reply<Packet>),
    Ping(Reply<()>),
    /// `first` is taken by the first response; `notes` then carries the rest.
    Observe {
        first: Option<Reply<(RequestId, Packet)>>,
        notes: mpsc::Sender<NotificationItem>,
    },
}

/// The task: owns the socket and the endpoint. Ends on [`Handle::shutdown`] or when every
/// [`Handle`] is dropped.
#[must_use = "the socket does nothing unless the driver runs"]
pub struct Driver {
    socket: UdpSocket,
    /// Needed to map IPv4 destinations on an IPv6 socket.
    local_addr: SocketAddr,
    endpoint: Endpoint<SocketAddr>,
    commands: mpsc::Receiver<Command>,
    requests: mpsc::Sender<IncomingRequest<SocketAddr>>,
    observers_gone: mpsc::Sender<ObserverGone>,
    /// Callers waiting for their requests; bounded by the endpoint's `max_outgoing`.
    pending: HashMap<RequestId, Pending>,
    /// Requests the application's full channel could not take yet. The socket is not read
    /// while it is non-empty, so it holds at most one receive batch.
    backlog: VecDeque<IncomingRequest<SocketAddr>>,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("local_addr", &self.local_addr)
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

fn now() -> std::time::Instant {
    Instant::now().into_std()
}

impl Driver {
    /// Runs until shutdown, then sends the datagrams still queued and returns.
    pub async fn run(mut self) {
        let mut buf = vec![0u8; RECV_BUF];
        let sleep = sleep_until(Instant::now());
        tokio::pin!(sleep);
        let done = loop {
            self.drain().await;
            let deadline = self.endpoint.poll_timeout();
            if let Some(t) = deadline {
                sleep.as_mut().reset(t.into());
            }
            tokio::select! {
                r = self.socket.recv_from(&mut buf), if self.backlog.is_empty() => {
                    self.on_recv(r, &mut buf);
                }
                () = &mut sleep, if deadline.is_some() => self.endpoint.handle_timeout(now()),
                // Room again (or the channel closed): `drain` moves the backlog on.
                _ = async { self.requests.reserve().await.map(drop) },
                    if !self.backlog.is_empty() => {}
                cmd = self.commands.recv() => match cmd {
                    Some(Command::Shutdown(done)) => break Some(done),
                    Some(cmd) => self.on_command(cmd),
                    None => break None,
                },
            }
        };
        while let Some(t) = self.endpoint.poll_transmit() {
            self.send(t).await;
        }
        tracing::debug!(local = %self.local_addr, "CoAP socket driver stopped");
        drop(self); // Fails every pending call with `Closed` before `shutdown` returns.
        if let Some(done) = done {
            let _ = done.send(());
        }
    }

    fn on_recv(&mut self, first: io::Result<(usize, SocketAddr)>, buf: &mut [u8]) {
        let (mut next, mut left) = (first, RECV_BATCH);
        loop {
            match next {
                Ok((n, peer)) => {
                    let data = buf.get(..n).unwrap_or_default();
                    self.endpoint.handle_datagram(now(), peer, data);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                // Unconnected UDP reports no peer; ICMP errors or a full buffer are transient.
                Err(e) => return tracing::warn!(error = %e, "UDP receive failed"),
            }
            if left == 0 {
                return;
            }
            left -= 1;
            next = self.socket.try_recv_from(buf);
        }
    }

    async fn send(&self, t: Transmit<SocketAddr>) {
        let r = match self.socket.try_send_to(&t.payload, t.peer) {
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                self.socket.send_to(&t.payload, t.peer).await
            }
            r => r,
        };
        if let Err(e) = r {
            // The datagram is lost; CON messages are retransmitted by the endpoint.
            tracing::warn!(peer = %t.peer, error = %e, "UDP send failed");
        }
    }

    /// Sends and routes everything the endpoint has produced, until it has nothing left
    /// (routing an event may produce more: a cancel, a 4.04).
    async fn drain(&mut self) {
        loop {
            self.flush_backlog();
            let mut any = false;
            while let Some(ev) = self.endpoint.poll_event() {
                any = true;
                self.on_event(ev);
            }
            while let Some(t) = self.endpoint.poll_transmit() {
                self.send(t).await;
            }
            if !any {
                return;
            }
        }
    }

    fn flush_backlog(&mut self) {
        while let Some(r) = self.backlog.pop_front() {
            match self.requests.try_send(r) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(r)) => return self.backlog.push_front(r),
                Err(mpsc::error::TrySendError::Closed(r)) => self.refuse(r),
            }
        }
    }

    /// Nobody serves requests on this socket any more (the application dropped them).
    fn refuse(&mut self, r: IncomingRequest<SocketAddr>) {
        let _ = self
            .endpoint
            .respond(now(), r.id, msg::response(ResponseType::NotFound));
    }

    fn on_event(&mut self, ev: Event<SocketAddr>) {
        match ev {
            Event::Request(r) => {
                self.backlog.push_back(r);
                self.flush_backlog();
            }
            Event::Response { id, response, .. } => match self.pending.remove(&id) {
                Some(Pending::Request(tx)) => drop(tx.send(Ok(response))),
                Some(Pending::Observe {
                    first: Some(tx),
                    notes,
                }) => {
                    // RFC 7641 §3.1: only a 2.xx with Observe establishes the observation;
                    // otherwise the endpoint has ended the request and the stream ends.
                    let open = msg::is_success(&response) && msg::observe(&response).is_some();
                    let wanted = tx.send(Ok((id, response))).is_ok();
                    if open && wanted {
                        let first = None;
                        self.pending.insert(id, Pending::Observe { first, notes });
                    } else if open {
                        let _ = self.endpoint.cancel_observe(now(), id, CancelMode::Passive);
                    }
                }
                // The answer to an active cancel: the last item of the stream.
                Some(Pending::Observe { notes, .. }) => {
                    let _ = notes.try_send(Ok(Notification {
                        response,
                        seq: None,
                    }));
                }
                Some(Pending::Ping(tx)) => drop(tx.send(Ok(()))),
                None => {}
            },
            Event::Notification {
                id,
                peer,
                response,
                seq,
            } => {
                let Some(Pending::Observe { notes, .. }) = self.pending.get(&id) else {
                    return;
                };
                let item = Ok(Notification { response, seq });
                match notes.try_send(item) {
                    Ok(()) if seq.is_some() => return,
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) if seq.is_some() => {
                        return tracing::debug!(%peer, "notification dropped: channel full");
                    }
                    Err(mpsc::error::TrySendError::Full(_)) => {}
                    Err(mpsc::error::TrySendError::Closed(_)) => {
                        let _ = self.endpoint.cancel_observe(now(), id, CancelMode::Passive);
                    }
                }
                self.pending.remove(&id);
            }
            Event::Failed { id, error, .. } => {
                let e = NetError::Exchange(error);
                match self.pending.remove(&id) {
                    Some(Pending::Request(tx)) => drop(tx.send(Err(e))),
                    Some(Pending::Ping(tx)) => drop(tx.send(Err(e))),
                    Some(Pending::Observe {
                        first: Some(tx), ..
                    }) => drop(tx.send(Err(e))),
                    Some(Pending::Observe { notes, .. }) => drop(notes.try_send(Err(e))),
                    None => {}
                }
            }
            Event::Pong { id, .. } => {
                if let Some(Pending::Ping(tx)) = self.pending.remove(&id) {
                    let _ = tx.send(Ok(()));
                }
            }
            Event::ObserverGone {
                observer,
                peer,
                reason,
            } => {
                let gone = ObserverGone {
                    observer,
                    peer,
                    reason,
                };
                if self.observers_gone.try_send(gone).is_err() {
                    tracing::debug!(%peer, ?observer, "observer-gone event not delivered");
                }
            }
        }
    }

    fn on_command(&mut self, cmd: Command) {
        let ep = &mut self.endpoint;
        match cmd {
            Command::Request {
                peer,
                request,
                opts,
                reply,
            } => match ep.send_request(now(), map_peer(self.local_addr, peer), request, opts) {
                Ok(id) => drop(self.pending.insert(id, Pending::Request(reply))),
                Err(e) => drop(reply.send(Err(e.into()))),
            },
            Command::Observe {
                peer,
                request,
                opts,
                reply,
                notifications: notes,
            } => match ep.send_request(now(), map_peer(self.local_addr, peer), request, opts) {
                Ok(id) => {
                    let first = Some(reply);
                    self.pending.insert(id, Pending::Observe { first, notes });
                }
                Err(e) => drop(reply.send(Err(e.into()))),
            },
            Command::Ping { peer, reply } => {
                let id = ep.ping(now(), map_peer(self.local_addr, peer));
                self.pending.insert(id, Pending::Ping(reply));
            }
            Command::Respond {
                id,
                response,
                reply,
            } => drop(reply.send(ep.respond(now(), id, response).map_err(Into::into))),
            Command::Notify {
                observer,
                response,
                confirmable,
                reply,
            } => {
                let r = ep.notify(now(), observer, response, confirmable);
                let _ = reply.send(r.map_err(Into::into));
            }
            Command::CancelObserve { id, mode, reply } => {
                let _ = reply.send(ep.cancel_observe(now(), id, mode).map_err(Into::into));
            }
            Command::RemoveObserver { observer, reply } => {
                let _ = reply.send(Ok(ep.remove_observer(observer)));
            }
            Command::Stats(reply) => drop(reply.send(Ok(ep.stats()))),
            Command::Usage(reply) => drop(reply.send(Ok(ep.usage()))),
            Command::Shutdown(done) => drop(done.send(())), // Handled in `run`.
        }
    }
}

/// An IPv6 socket reaches IPv4 peers through IPv4-mapped addresses (RFC 4291 §2.5.5.2),
/// which is also how their datagrams are reported, so both directions use one peer key.
fn map_peer(local: SocketAddr, peer: SocketAddr) -> SocketAddr {
    match (local, peer) {
        (SocketAddr::V6(_), SocketAddr::V4(v4)) => {
            SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port())
        }
        _ => peer,
    }
}
