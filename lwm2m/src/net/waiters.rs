//! Callers of a [`Handle`](super::Handle) waiting for the outcome of a request, a ping or an
//! observation, by request id.
//!
//! Kept out of the driver loop so that the loop stays about sockets and time; this is only
//! the matching of the endpoint's client-role events to the channels the callers wait on.
//! It grows no larger than the endpoint's own request table (`max_outgoing`), since every
//! entry ends with exactly one final event from it.
use super::handle::{NetError, Notification, NotificationItem, Reply};
use crate::coap::{msg, ExchangeError, Packet, RequestId};
use std::collections::HashMap;
use std::net::SocketAddr;
use tokio::sync::mpsc::{self, error::TrySendError};

/// What a caller is waiting for.
#[derive(Debug)]
pub(super) enum Waiter {
    Request(Reply<Packet>),
    Ping(Reply<()>),
    /// `first` is taken by the first response; `notes` then carries the rest.
    Observe {
        first: Option<Reply<(RequestId, Packet)>>,
        notes: mpsc::Sender<NotificationItem>,
    },
}

/// The waiting callers.
#[derive(Debug, Default)]
pub(super) struct Waiters(HashMap<RequestId, Waiter>);

/// An observation whose caller is gone: the driver cancels it passively, so that the
/// server's next notification gets an RST (RFC 7641 §3.6).
pub(super) type Unwanted = Option<RequestId>;

impl Waiters {
    pub(super) fn insert(&mut self, id: RequestId, waiter: Waiter) {
        self.0.insert(id, waiter);
    }

    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    pub(super) fn on_response(&mut self, id: RequestId, response: Packet) -> Unwanted {
        match self.0.remove(&id)? {
            Waiter::Request(tx) => drop(tx.send(Ok(response))),
            Waiter::Ping(tx) => drop(tx.send(Ok(()))),
            Waiter::Observe {
                first: Some(tx),
                notes,
            } => {
                // RFC 7641 §3.1: only a 2.xx with Observe establishes the observation;
                // otherwise the endpoint has ended the request, and dropping `notes` ends
                // the stream.
                let open = msg::is_success(&response) && msg::observe(&response).is_some();
                let wanted = tx.send(Ok((id, response))).is_ok();
                if open && !wanted {
                    return Some(id);
                }
                if open {
                    let first = None;
                    self.0.insert(id, Waiter::Observe { first, notes });
                }
            }
            // The answer to an active cancel: the last item of the stream.
            Waiter::Observe { notes, .. } => {
                let _ = notes.try_send(Ok(Notification {
                    response,
                    seq: None,
                }));
            }
        }
        None
    }

    pub(super) fn on_notification(
        &mut self,
        id: RequestId,
        peer: SocketAddr,
        response: Packet,
        seq: Option<u32>,
    ) -> Unwanted {
        let Some(Waiter::Observe { notes, .. }) = self.0.get(&id) else {
            // An Observe sent through `Handle::request`: nobody reads its notifications.
            return Some(id);
        };
        let unwanted = match notes.try_send(Ok(Notification { response, seq })) {
            Ok(()) => None,
            Err(TrySendError::Full(_)) => {
                tracing::debug!(%peer, "notification dropped: the application's channel is full");
                None
            }
            Err(TrySendError::Closed(_)) => Some(id),
        };
        if seq.is_none() || unwanted.is_some() {
            self.0.remove(&id);
        }
        unwanted
    }

    pub(super) fn on_pong(&mut self, id: RequestId) {
        if let Some(Waiter::Ping(tx)) = self.0.remove(&id) {
            let _ = tx.send(Ok(()));
        }
    }

    pub(super) fn on_failed(&mut self, id: RequestId, error: ExchangeError) {
        let e = NetError::Exchange(error);
        match self.0.remove(&id) {
            Some(Waiter::Request(tx)) => drop(tx.send(Err(e))),
            Some(Waiter::Ping(tx)) => drop(tx.send(Err(e))),
            Some(Waiter::Observe {
                first: Some(tx), ..
            }) => drop(tx.send(Err(e))),
            Some(Waiter::Observe { notes, .. }) => drop(notes.try_send(Err(e))),
            None => {}
        }
    }
}
