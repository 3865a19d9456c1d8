//! Queue mode (OMA LwM2M TS 1.2 Transport §6.5; Core §6.2.1 `Q` parameter): the client
//! keeps its radio on for `awake_time` after its last exchange, then sleeps. Asleep it
//! sends nothing and every datagram that arrives is dropped, as a modem in PSM would; the
//! server queues its requests meanwhile. Whatever the client has to send wakes it: the
//! registration timer, a notification, a Send, or the application calling
//! [`wake`](Client::wake). A wake-up that is not itself the Update sends one, since a
//! Registration Update is what tells the server the client is reachable; the server's queued
//! requests then arrive and are answered.
//!
//! The cycle is visible as [`is_awake`](Client::is_awake) and the `Sleeping` and `Woke`
//! events, so a simulator can account radio time (PSM, eDRX).
use super::config::ClientEvent;
use super::Client;
use crate::coap::Peer;
use std::time::{Duration, Instant};

/// The radio state of a queue-mode client.
#[derive(Debug, Default)]
pub(super) struct Radio {
    /// The radio is off.
    pub(super) asleep: bool,
    /// When the awake time ends, counted from the last datagram sent or received.
    pub(super) awake_until: Option<Instant>,
}

impl<P: Peer> Client<P> {
    /// Whether the client is awake (always, without queue mode).
    pub fn is_awake(&self) -> bool {
        !self.radio.asleep
    }

    /// Wakes the client, as the application does on a button press or a scheduled uplink.
    /// If it was asleep and is registered, sends an Update so the server knows it can
    /// deliver what it queued. Harmless when awake.
    pub fn wake(&mut self, now: Instant) {
        self.ensure_awake(now, true);
        self.drive(now);
    }

    /// Wakes the client if it sleeps; `update` sends a Registration Update if it did (the
    /// Update itself and Register pass false).
    pub(super) fn ensure_awake(&mut self, now: Instant, update: bool) {
        if !self.config.queue_mode {
            return;
        }
        self.radio.awake_until = Some(crate::time::deadline(now, self.config.awake_time));
        if !self.radio.asleep {
            return;
        }
        self.radio.asleep = false;
        tracing::debug!(endpoint = %self.config.endpoint, "woke");
        self.push_event(ClientEvent::Woke);
        if update {
            self.send_update(now);
        }
    }

    /// Traffic went out or came in: the awake time starts again.
    pub(super) fn touch_radio(&mut self, now: Instant) {
        if self.config.queue_mode && !self.radio.asleep {
            self.radio.awake_until = Some(crate::time::deadline(now, self.config.awake_time));
        }
    }

    /// Goes to sleep if the awake time is over and no exchange is in flight; if one is,
    /// looks again a second later (its answer restarts the awake time anyway).
    pub(super) fn on_radio_timer(&mut self, now: Instant) {
        if !self.config.queue_mode || self.radio.asleep {
            return;
        }
        if self.radio.awake_until.is_some_and(|t| t > now) {
            return;
        }
        let u = self.endpoint.usage();
        // A firmware download in progress keeps the radio on between its blocks.
        let busy =
            u.unacked > 0 || u.outgoing > 0 || u.incoming > 0 || u.transmits > 0 || self.fw.busy();
        if busy {
            self.radio.awake_until = Some(crate::time::deadline(now, Duration::from_secs(1)));
            return;
        }
        tracing::debug!(endpoint = %self.config.endpoint, "sleeping");
        self.radio.asleep = true;
        self.radio.awake_until = None;
        self.push_event(ClientEvent::Sleeping);
    }

    /// When the radio state may change next.
    pub(super) fn radio_deadline(&self) -> Option<Instant> {
        if self.config.queue_mode && !self.radio.asleep {
            self.radio.awake_until
        } else {
            None
        }
    }
}
