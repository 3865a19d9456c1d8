//! The tokio task that runs one [`Endpoint`] on one UDP socket (CoAP over UDP, RFC 7252).
//!
//! Its whole job is to carry bytes and time between the socket and the sans-IO core: each
//! datagram goes to `handle_datagram`, each expired deadline to `handle_timeout`, each
//! command from a [`Handle`] to the matching endpoint call; after every input it sends what
//! `poll_transmit` yields and routes what `poll_event` yields. Message IDs, retransmission,
//! deduplication, block-wise and Observe (RFC 7252, 7959, 7641) all stay in the core.
//!
//! Why one task per socket and none per peer: a CoAP server faces tens of thousands of
//! mostly idle devices, and the endpoint already keeps all their state in bounded tables
//! with one deadline for the lot. A task (and a timer) per peer would add memory and
//! wake-ups per device and split state the core needs in one place. Datagrams are read in
//! batches (one `recv_from`, then up to [`RECV_BATCH`] `try_recv_from`) so that under load
//! the replies of a whole batch leave together. Every channel is bounded; a full one either
//! makes the driver wait (requests to the application, see [`Incoming`]) or drops what an
//! application can recover from (notifications, observer-gone events).
//!
//! [`Handle`]: super::Handle
//! [`Incoming`]: super::Incoming
use super::handle::{Command, ObserverGone};
use super::waiters::{Waiter, Waiters};
use crate::coap::{msg, CancelMode, Endpoint, EndpointConfig, Event, IncomingRequest};
use crate::coap::{ResponseType, Transmit};
use std::collections::VecDeque;
use std::io::{self, ErrorKind};
use std::net::SocketAddr;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};

/// Datagrams read with `try_recv_from` after each `recv_from` before sending replies.
pub const RECV_BATCH: usize = 64;
/// Receive buffer: the largest UDP payload, so no datagram is ever truncated.
const RECV_BUF: usize = 64 * 1024;

/// The task: owns the socket and the endpoint. Ends on
/// [`Handle::shutdown`](super::Handle::shutdown) or when every handle is dropped.
#[must_use = "the socket does nothing unless the driver runs"]
pub struct Driver {
    socket: UdpSocket,
    /// Needed to map IPv4 destinations on an IPv6 socket.
    local_addr: SocketAddr,
    endpoint: Endpoint<SocketAddr>,
    commands: mpsc::Receiver<Command>,
    requests: mpsc::Sender<IncomingRequest<SocketAddr>>,
    observers_gone: mpsc::Sender<ObserverGone>,
    /// Callers waiting for their requests, pings and observations.
    waiters: Waiters,
    /// Requests the application's full channel could not take yet. The socket is not read
    /// while it is non-empty, so it holds at most one receive batch.
    backlog: VecDeque<IncomingRequest<SocketAddr>>,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("local_addr", &self.local_addr)
            .field("waiters", &self.waiters.len())
            .finish_non_exhaustive()
    }
}

fn now() -> std::time::Instant {
    Instant::now().into_std()
}

impl Driver {
    pub(super) fn new(
        socket: UdpSocket,
        local_addr: SocketAddr,
        config: EndpointConfig,
        commands: mpsc::Receiver<Command>,
        requests: mpsc::Sender<IncomingRequest<SocketAddr>>,
        observers_gone: mpsc::Sender<ObserverGone>,
    ) -> Self {
        Self {
            socket,
            local_addr,
            endpoint: Endpoint::new(config),
            commands,
            requests,
            observers_gone,
            waiters: Waiters::default(),
            backlog: VecDeque::new(),
        }
    }

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
        let unwanted = match ev {
            Event::Request(r) => {
                self.backlog.push_back(r);
                return self.flush_backlog();
            }
            Event::Response { id, response, .. } => self.waiters.on_response(id, response),
            Event::Notification {
                id,
                peer,
                response,
                seq,
            } => self.waiters.on_notification(id, peer, response, seq),
            Event::Failed { id, error, .. } => return self.waiters.on_failed(id, error),
            Event::Pong { id, .. } => return self.waiters.on_pong(id),
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
                return;
            }
        };
        if let Some(id) = unwanted {
            let _ = self.endpoint.cancel_observe(now(), id, CancelMode::Passive);
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
                Ok(id) => self.waiters.insert(id, Waiter::Request(reply)),
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
                    self.waiters.insert(id, Waiter::Observe { first, notes });
                }
                Err(e) => drop(reply.send(Err(e.into()))),
            },
            Command::Ping { peer, reply } => {
                match ep.ping(now(), map_peer(self.local_addr, peer)) {
                    Ok(id) => self.waiters.insert(id, Waiter::Ping(reply)),
                    Err(e) => drop(reply.send(Err(e.into()))),
                }
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
