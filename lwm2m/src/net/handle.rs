//! The application's side of a [`CoapSocket`](super::CoapSocket): [`Handle`] to send commands,
//! [`Incoming`] to receive requests, [`Observation`] for notifications.
//!
//! Everything here only talks to the driver task through bounded channels and answers on a
//! `oneshot`; no state is shared behind a lock, so the driver is the single owner of the
//! [`Endpoint`](crate::coap::Endpoint) and a slow caller can never hold it up.
use crate::coap::{
    CancelMode, ExchangeError, IncomingId, IncomingRequest, ObserverGoneReason, ObserverId, Packet,
    RequestId, RequestOptions, RespondError, SendError, Stats, Usage,
};
use std::net::SocketAddr;
use tokio::sync::{mpsc, oneshot};

/// Why a [`Handle`] call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// The exchange ended without a response (timeout, reset, cancelled, ...).
    #[error(transparent)]
    Exchange(#[from] ExchangeError),
    /// The endpoint refused to send the request (busy, not a request, ...).
    #[error(transparent)]
    Send(#[from] SendError),
    /// The endpoint refused the response or notification.
    #[error(transparent)]
    Respond(#[from] RespondError),
    /// The driver has stopped (shut down, or every handle was dropped).
    #[error("the CoAP socket driver has stopped")]
    Closed,
}

/// Where the driver puts the answer to a command.
pub(super) type Reply<T> = oneshot::Sender<Result<T, NetError>>;

/// One item of an [`Observation`]'s notification stream.
pub(super) type NotificationItem = Result<Notification, NetError>;

/// A command from a [`Handle`] to the driver task.
pub(super) enum Command {
    Request {
        peer: SocketAddr,
        request: Packet,
        opts: RequestOptions,
        reply: Reply<Packet>,
    },
    Observe {
        peer: SocketAddr,
        request: Packet,
        opts: RequestOptions,
        reply: Reply<(RequestId, Packet)>,
        notifications: mpsc::Sender<NotificationItem>,
    },
    Ping {
        peer: SocketAddr,
        reply: Reply<()>,
    },
    Respond {
        id: IncomingId,
        response: Packet,
        reply: Reply<Option<ObserverId>>,
    },
    Notify {
        observer: ObserverId,
        response: Packet,
        confirmable: bool,
        reply: Reply<()>,
    },
    CancelObserve {
        id: RequestId,
        mode: CancelMode,
        reply: Reply<()>,
    },
    RemoveObserver {
        observer: ObserverId,
        reply: Reply<bool>,
    },
    Stats(Reply<Stats>),
    Usage(Reply<Usage>),
    Shutdown(oneshot::Sender<()>),
}

/// Sends commands to a running [`CoapSocket`](super::CoapSocket). Cheap to clone; the driver
/// stops when the last clone (including those inside [`Observation`]s) is dropped.
#[derive(Debug, Clone)]
pub struct Handle {
    /// The driver's bounded command queue: a flood of calls waits here instead of growing
    /// memory inside the driver.
    tx: mpsc::Sender<Command>,
    /// Reported by [`local_addr`](Self::local_addr) without asking the driver.
    local_addr: SocketAddr,
    /// Capacity of each observation's notification channel.
    notification_capacity: usize,
}

impl Handle {
    pub(super) fn new(
        tx: mpsc::Sender<Command>,
        local_addr: SocketAddr,
        notification_capacity: usize,
    ) -> Self {
        Self {
            tx,
            local_addr,
            notification_capacity,
        }
    }

    /// The address the socket is bound to (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Sends `request` to `peer` and waits for its final response (Block1 and Block2 done by
    /// the endpoint). Token, message ID and type are set by the endpoint.
    ///
    /// Dropping the future abandons the answer; the exchange itself still runs until its
    /// response or its timeout, which bounds what it costs.
    pub async fn request(
        &self,
        peer: SocketAddr,
        request: Packet,
        opts: RequestOptions,
    ) -> Result<Packet, NetError> {
        self.call(|reply| Command::Request {
            peer,
            request,
            opts,
            reply,
        })
        .await
    }

    /// Registers an observation (RFC 7641 §3.1): sends `request` with Observe=0 (added if
    /// missing) and returns once the first response is in. If the server did not accept the
    /// registration (an error, or a response without Observe), the observation's stream is
    /// already ended.
    pub async fn observe(
        &self,
        peer: SocketAddr,
        mut request: Packet,
        opts: RequestOptions,
    ) -> Result<Observation, NetError> {
        if crate::coap::msg::observe(&request).is_none() {
            request.set_observe_value(0);
        }
        let (ntx, nrx) = mpsc::channel(self.notification_capacity);
        let (id, response) = self
            .call(|reply| Command::Observe {
                peer,
                request,
                opts,
                reply,
                notifications: ntx,
            })
            .await?;
        Ok(Observation {
            id,
            peer,
            response,
            notifications: nrx,
            handle: self.clone(),
            cancelled: false,
        })
    }

    /// Sends a CoAP ping (RFC 7252 §4.3) and waits for the RST that answers it.
    pub async fn ping(&self, peer: SocketAddr) -> Result<(), NetError> {
        self.call(|reply| Command::Ping { peer, reply }).await
    }

    /// Answers a request received through [`Incoming`]. Returns the new observer when the
    /// request was an Observe registration and `response` is a success.
    pub async fn respond(
        &self,
        id: IncomingId,
        response: Packet,
    ) -> Result<Option<ObserverId>, NetError> {
        self.call(|reply| Command::Respond {
            id,
            response,
            reply,
        })
        .await
    }

    /// Sends a notification to `observer` (RFC 7641 §4.2). A non-2.xx response ends the
    /// observation.
    pub async fn notify(
        &self,
        observer: ObserverId,
        response: Packet,
        confirmable: bool,
    ) -> Result<(), NetError> {
        self.call(|reply| Command::Notify {
            observer,
            response,
            confirmable,
            reply,
        })
        .await
    }

    /// Cancels the observation `id` (see [`Observation::cancel`]).
    pub async fn cancel_observe(&self, id: RequestId, mode: CancelMode) -> Result<(), NetError> {
        self.call(|reply| Command::CancelObserve { id, mode, reply })
            .await
    }

    /// Stops notifying `observer` without telling the peer. Returns whether it existed.
    pub async fn remove_observer(&self, observer: ObserverId) -> Result<bool, NetError> {
        self.call(|reply| Command::RemoveObserver { observer, reply })
            .await
    }

    /// The endpoint's counters.
    pub async fn stats(&self) -> Result<Stats, NetError> {
        self.call(Command::Stats).await
    }

    /// How much state the endpoint holds now.
    pub async fn usage(&self) -> Result<Usage, NetError> {
        self.call(Command::Usage).await
    }

    /// Stops the driver: queued datagrams are sent, nothing received is answered any more,
    /// and every call still waiting ends with [`NetError::Closed`]. Returns when the driver
    /// has finished (at once if it already had).
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Command::Shutdown(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    async fn call<T>(&self, command: impl FnOnce(Reply<T>) -> Command) -> Result<T, NetError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(command(tx))
            .await
            .map_err(|_| NetError::Closed)?;
        rx.await.map_err(|_| NetError::Closed)?
    }
}

/// A notification of an [`Observation`].
#[derive(Debug, Clone)]
pub struct Notification {
    /// The notification, all Block2 blocks joined.
    pub response: Packet,
    /// The Observe sequence number; `None` for the last item of the stream: a notification
    /// that ends the observation (RFC 7641 §3.2) or the response to an active cancel.
    pub seq: Option<u32>,
}

/// An established observation (client role): the first response, then the notifications.
///
/// Notifications arrive on a bounded channel. When the application lets it fill up, newer
/// notifications are dropped (and logged) rather than holding up the driver, which serves
/// every other peer too; each notification is a full representation, so the next one read
/// brings the current state (RFC 7641 §1.3, eventual consistency). Dropping the
/// `Observation` without [`cancel`](Self::cancel) cancels passively: the server's next
/// notification gets an RST.
#[derive(Debug)]
pub struct Observation {
    id: RequestId,
    peer: SocketAddr,
    response: Packet,
    notifications: mpsc::Receiver<NotificationItem>,
    /// Keeps the driver alive while the observation is, and sends the cancel.
    handle: Handle,
    /// Set by `cancel`, so that dropping afterwards does not undo an active cancel.
    cancelled: bool,
}

impl Observation {
    /// The request id of the registration.
    pub fn id(&self) -> RequestId {
        self.id
    }

    /// The notifier.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The first response (to the registration itself).
    pub fn response(&self) -> &Packet {
        &self.response
    }

    /// The next notification. `Ok` items with `seq: Some` are ordinary notifications; the
    /// stream ends (`None`) after an item with `seq: None` or an `Err` (timeout, reset,
    /// passive cancel), or when the registration was not accepted.
    pub async fn next(&mut self) -> Option<Result<Notification, NetError>> {
        self.notifications.recv().await
    }

    /// The notification channel itself, for `select!` loops.
    pub fn notifications(&mut self) -> &mut mpsc::Receiver<Result<Notification, NetError>> {
        &mut self.notifications
    }

    /// Cancels the observation (RFC 7641 §3.6). `Active` sends a GET with Observe=1; its
    /// response is the last item of the stream (`seq: None`). `Passive` forgets it at once;
    /// the stream ends with `Err(Exchange(Cancelled))`.
    pub async fn cancel(&mut self, mode: CancelMode) -> Result<(), NetError> {
        self.cancelled = true;
        self.handle.cancel_observe(self.id, mode).await
    }
}

impl Drop for Observation {
    fn drop(&mut self) {
        if !self.cancelled {
            // Best effort: with the command queue full, the driver still notices the closed
            // channel at the next notification and cancels then.
            let (reply, _) = oneshot::channel();
            let _ = self.handle.tx.try_send(Command::CancelObserve {
                id: self.id,
                mode: CancelMode::Passive,
                reply,
            });
        }
    }
}

/// A peer stopped observing one of our resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObserverGone {
    /// The observation, as returned by [`Handle::respond`].
    pub observer: ObserverId,
    /// The observer.
    pub peer: SocketAddr,
    /// Why.
    pub reason: ObserverGoneReason,
}

/// What the driver delivers to the application in the server role.
///
/// `requests` is bounded and the driver waits when it is full: it stops reading the socket
/// (the kernel buffer then drops datagrams and the peers' CON retransmissions bring them
/// again) but keeps running timers and commands, so answering the requests already taken
/// frees it. That is back-pressure a sender understands, where answering 5.03 would tell it
/// to go away. When `requests` is dropped, new requests are answered 4.04 (there is no
/// resource here). `observers_gone` is informational: when full its events are dropped,
/// since a later [`Handle::notify`] to a gone observer fails with `UnknownObserver` anyway.
#[derive(Debug)]
pub struct Incoming {
    /// Requests to answer with [`Handle::respond`].
    pub requests: mpsc::Receiver<IncomingRequest<SocketAddr>>,
    /// Observers that went away (RST, timeout, deregistration).
    pub observers_gone: mpsc::Receiver<ObserverGone>,
}

impl Incoming {
    /// The next request; `None` once the driver has stopped.
    pub async fn recv(&mut self) -> Option<IncomingRequest<SocketAddr>> {
        self.requests.recv().await
    }
}
