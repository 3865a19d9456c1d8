//! The bootstrap part of a simulated device (the `bootstrap` scenario; OMA LwM2M TS 1.2
//! Core §5.2.3 client-initiated bootstrap, §6.1): from its factory credentials, a DTLS
//! session with the bootstrap server and a [`Bootstrapper`] on the device's store; once
//! Bootstrap-Finish is accepted, the device's [`Client`](lwm2m::client::Client) is built from
//! the account it was given, with a fresh DTLS session for that server, and registers.
//!
//! A failed attempt (refused, no answer, no Finish in time, an unusable account) is counted
//! by cause and tried again after the scenario's `retry_secs`, from the factory state.
use super::{Device, Phase, Shard};
use crate::bench::report::{epoch_us, BootstrapCounts};
use lwm2m::client::{BootstrapError, BootstrapEvent, Bootstrapper};
use lwm2m::net::secure::{LinkEvent, SecureLink};
use std::net::SocketAddr;
use std::time::Instant;

/// One bootstrap attempt of a device, or the wait before the next one.
pub(super) struct Bootstrapping {
    /// The attempt under way; `None` while waiting to retry.
    attempt: Option<Attempt>,
    /// When the next attempt begins, after a failure.
    retry_at: Option<Instant>,
    /// Attempts so far, to seed each differently.
    attempts: u32,
}

struct Attempt {
    bootstrapper: Bootstrapper<SocketAddr>,
    link: SecureLink,
    server: SocketAddr,
    since: Instant,
}

impl Bootstrapping {
    /// When something of the bootstrap is due.
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        let attempt = self.attempt.as_ref().and_then(|a| {
            [a.bootstrapper.poll_timeout(), a.link.poll_timeout()]
                .into_iter()
                .flatten()
                .min()
        });
        [attempt, self.retry_at].into_iter().flatten().min()
    }

    /// A datagram from `peer`: the bootstrap server's go through the session to the
    /// bootstrapper, anyone else's are dropped.
    pub(super) fn handle_datagram(
        &mut self,
        now: Instant,
        peer: SocketAddr,
        data: &[u8],
        scratch: &mut Vec<Vec<u8>>,
    ) {
        let Some(a) = &mut self.attempt else {
            return;
        };
        if peer != a.server {
            return;
        }
        a.link.handle_datagram(now, data, scratch);
        for d in scratch.drain(..) {
            a.bootstrapper.handle_datagram(now, a.server, &d);
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        if let Some(a) = &mut self.attempt {
            a.bootstrapper.handle_timeout(now);
            a.link.handle_timeout(now);
        }
    }
}

/// Why an attempt failed, as a bounded set of kinds for the report.
fn cause(e: &BootstrapError) -> String {
    match e {
        BootstrapError::Refused(e) => {
            format!(
                "refused {}",
                lwm2m::coap::msg::code_string(&e.to_response())
            )
        }
        BootstrapError::Exchange(e) => format!("bootstrap-request: {e}"),
        BootstrapError::Timeout(_) => "no bootstrap-finish in time".into(),
        other => other.to_string(),
    }
}

impl Shard {
    /// Starts a bootstrap attempt of device `i` (its first, or a retry) from the factory
    /// state.
    pub(super) fn begin_bootstrap(&mut self, i: usize, now: Instant) {
        let setup = self.setup.clone();
        let Some(d) = self.devices.get_mut(i) else {
            return;
        };
        let Some(bs) = &setup.bootstrap else {
            return;
        };
        let state = d.bootstrapping.get_or_insert_with(|| {
            Box::new(Bootstrapping {
                attempt: None,
                retry_at: None,
                attempts: 0,
            })
        });
        state.retry_at = None;
        state.attempts = state.attempts.wrapping_add(1);
        self.counts.bootstrap.attempts += 1;
        d.phase = Phase::Bootstrapping;
        match setup.bootstrapper(&d.name, d.n, state.attempts) {
            Ok((mut bootstrapper, dtls)) => {
                let seed = setup.seed ^ d.n.rotate_left(29) ^ u64::from(state.attempts);
                let link = SecureLink::connect(dtls, now, seed, None);
                // The Bootstrap-Request waits in the link until the handshake is done.
                if let Err(e) = bootstrapper.start(now) {
                    self.counts.bootstrap.failures.add(format!("start: {e}"));
                }
                state.attempt = Some(Attempt {
                    bootstrapper,
                    link,
                    server: bs.server,
                    since: now,
                });
            }
            Err(e) => {
                self.counts.bootstrap.failures.add(format!("setup: {e:#}"));
                state.attempt = None;
                state.retry_at = Some(now + bs.retry);
            }
        }
    }

    /// Runs device `i`'s bootstrap timers.
    pub(super) fn bootstrap_timeout(&mut self, i: usize, now: Instant) {
        let Some(d) = self.devices.get_mut(i) else {
            return;
        };
        let Some(b) = &mut d.bootstrapping else {
            return;
        };
        b.handle_timeout(now);
        if b.retry_at.is_some_and(|t| t <= now) {
            self.begin_bootstrap(i, now);
        }
    }

    /// Sends what device `i`'s bootstrap produced and acts on its events: on Finish the
    /// device switches to its new account and registers; on failure it waits to retry.
    pub(super) fn flush_bootstrap(&mut self, i: usize, now: Instant) {
        let retry = self.setup.bootstrap.as_ref().map(|b| b.retry);
        let Some(d) = self.devices.get_mut(i) else {
            return;
        };
        let Some(a) = d.bootstrapping.as_mut().and_then(|b| b.attempt.as_mut()) else {
            return;
        };
        while let Some(t) = a.bootstrapper.poll_transmit() {
            a.link.send(t.payload);
        }
        while let Some(datagram) = a.link.poll_transmit() {
            if let Err(e) = super::send_to(&d.socket, &datagram, a.server) {
                self.counts.errors.add(format!("send: {}", e.kind()));
            }
        }
        while let Some(ev) = a.link.poll_event() {
            match ev {
                LinkEvent::Connected { .. } => {
                    self.counts.handshakes_full += 1;
                    self.live.add_handshake();
                }
                LinkEvent::Down { reason } => {
                    // The session retries by itself; the bootstrapper's finish timer bounds
                    // the attempt.
                    self.counts.sessions_lost += 1;
                    self.counts
                        .bootstrap
                        .failures
                        .add(format!("bootstrap session: {reason}"));
                }
            }
        }
        let mut outcome = None;
        while let Some(ev) = a.bootstrapper.poll_event() {
            outcome = Some(ev);
        }
        let since = a.since;
        match outcome {
            None => {}
            Some(BootstrapEvent::Finished) => {
                let c: &mut BootstrapCounts = &mut self.counts.bootstrap;
                c.finished += 1;
                c.sequence_latency
                    .record(now.saturating_duration_since(since));
                self.switch_to_account(i, now, since);
            }
            Some(BootstrapEvent::Failed { reason }) => {
                self.counts.bootstrap.failures.add(cause(&reason));
                self.retry_later(i, now, retry);
            }
            Some(other) => {
                self.counts.bootstrap.failures.add(format!("{other:?}"));
                self.retry_later(i, now, retry);
            }
        }
    }

    /// Drops device `i`'s failed attempt and schedules the next. Its slot of the fleet's
    /// window goes to the next device meanwhile, as after a failed Register.
    fn retry_later(&mut self, i: usize, now: Instant, retry: Option<std::time::Duration>) {
        let Some(d) = self.devices.get_mut(i) else {
            return;
        };
        d.permit = None;
        if let Some(b) = d.bootstrapping.as_mut() {
            b.attempt = None;
            b.retry_at = Some(now + retry.unwrap_or_default());
        }
    }

    /// Device `i` was bootstrapped: its client on the store it was given, a new session
    /// with the LwM2M server of its account, and a Register.
    fn switch_to_account(&mut self, i: usize, now: Instant, since: Instant) {
        let setup = self.setup.clone();
        let Some(d) = self.devices.get_mut(i) else {
            return;
        };
        let Some(attempt) = d.bootstrapping.as_mut().and_then(|b| b.attempt.take()) else {
            return;
        };
        let store = attempt.bootstrapper.into_store();
        match setup.bootstrapped_client(&d.name, d.n, d.boots, store) {
            Ok((client, dtls, server)) => {
                d.bootstrapping = None;
                d.client = client;
                d.dtls = dtls;
                d.server = server;
                d.bootstrapped_since = Some(since);
                self.connect_and_register(i, now);
            }
            Err(e) => {
                self.counts
                    .bootstrap
                    .failures
                    .add(format!("unusable account: {e:#}"));
                let retry = setup.bootstrap.as_ref().map(|b| b.retry);
                self.retry_later(i, now, retry);
            }
        }
    }
}

/// Accounts for a registration of a device: a complete bootstrap when it is the first one
/// with the credential a bootstrap gave it.
pub(super) fn on_registered(d: &mut Device, c: &mut BootstrapCounts, now: Instant) {
    if let Some(since) = d.bootstrapped_since.take() {
        c.complete += 1;
        c.last_complete_us = epoch_us();
        c.latency.record(now.saturating_duration_since(since));
    }
}
