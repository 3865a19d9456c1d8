//! The handshakes in progress: routing records to them, their retransmission and give-up
//! timers in one ordered set (RFC 6347 §4.2.4), and how a failed one is reported.
use super::handshake::{Ctx, Step};
use super::{Server, ServerEvent};
use crate::alert::{Alert, AlertDescription};
use crate::config::ServerCredentials;
use crate::error::{Failure, HandshakeError};
use crate::record::{write_plaintext, ContentType, Record};
use crate::time::deadline;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

impl Server {
    pub(super) fn handshake_record(
        &mut self,
        now: Instant,
        from: SocketAddr,
        record: &Record<'_>,
        creds: &dyn ServerCredentials,
    ) {
        let Some(hs) = self.handshakes.remove(&from) else {
            return;
        };
        let mut ctx = Ctx {
            config: &self.config,
            creds,
            rng: &mut self.rng,
            now,
        };
        let mut out = Vec::new();
        let step = match hs.handle_record(&mut ctx, record, &mut out) {
            Step::Retransmit(mut hs) => match hs.retransmit(&mut ctx, &mut out) {
                Ok(()) => Step::Retransmit(hs),
                Err(failure) => Step::Failed {
                    failure,
                    seq0: hs.next_plain_seq(),
                },
            },
            other => other,
        };
        for d in out {
            self.transmits.push_back((from, d));
        }
        match step {
            Step::Continue(hs) | Step::Retransmit(hs) => {
                self.handshakes.insert(from, hs);
                self.schedule(from);
            }
            Step::Done { established, seq0 } => {
                self.unschedule(from);
                self.establish(from, *established, seq0);
            }
            Step::Failed { failure, seq0 } => {
                self.unschedule(from);
                if let Some(alert) = failure.error.alert_to_send() {
                    // Before the client's CCS it reads epoch 0; an alert it can read beats
                    // one sealed under keys it may not have.
                    self.send_plain_alert(from, alert, seq0);
                }
                self.fail(from, failure);
            }
        }
    }

    /// Queues a fatal alert in an epoch-0 record numbered `seq`. A number past 48 bits
    /// (the peer started its sequence at the top) cannot be written, so no alert goes out;
    /// the handshake ends all the same.
    pub(super) fn send_plain_alert(&mut self, to: SocketAddr, alert: AlertDescription, seq: u64) {
        let mut out = Vec::new();
        match write_plaintext(
            ContentType::Alert,
            crate::record::DTLS_1_2,
            0,
            seq,
            &Alert::fatal(alert).encode(),
            &mut out,
        ) {
            Ok(()) => self.transmits.push_back((to, out)),
            Err(e) => tracing::debug!(peer = %to, error = %e, "alert not sent"),
        }
    }

    pub(super) fn fail(&mut self, peer: SocketAddr, failure: Failure) {
        self.stats.handshakes_failed += 1;
        tracing::info!(%peer, identity = failure.identity.as_deref().unwrap_or(""), alert = %failure.error.alert(), reason = %failure.error, "DTLS handshake failed");
        self.events
            .push_back(ServerEvent::HandshakeFailed { peer, failure });
    }

    pub(super) fn remove_handshake(&mut self, peer: SocketAddr) {
        if self.handshakes.remove(&peer).is_some() {
            self.unschedule(peer);
        }
    }

    pub(super) fn schedule(&mut self, peer: SocketAddr) {
        self.unschedule(peer);
        let Some(hs) = self.handshakes.get(&peer) else {
            return;
        };
        let give_up = deadline(hs.started(), self.config.timers.handshake_timeout);
        let at = hs.retransmit_at().map_or(give_up, |r| r.min(give_up));
        self.timers.insert((at, peer));
        self.scheduled.insert(peer, at);
    }

    pub(super) fn unschedule(&mut self, peer: SocketAddr) {
        if let Some(at) = self.scheduled.remove(&peer) {
            self.timers.remove(&(at, peer));
        }
    }

    /// Retransmits flights and abandons stalled handshakes whose time has come.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(at, peer)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            self.scheduled.remove(&peer);
            let Some(mut hs) = self.handshakes.remove(&peer) else {
                continue;
            };
            if now >= deadline(hs.started(), self.config.timers.handshake_timeout) {
                self.fail(peer, Failure::anonymous(HandshakeError::Timeout));
                continue;
            }
            let mut out = Vec::new();
            let mut ctx = Ctx {
                config: &self.config,
                creds: &NoCredentials,
                rng: &mut self.rng,
                now,
            };
            if let Err(failure) = hs.retransmit(&mut ctx, &mut out) {
                self.fail(peer, failure);
                continue;
            }
            for d in out {
                self.transmits.push_back((peer, d));
            }
            self.handshakes.insert(peer, hs);
            self.schedule(peer);
        }
    }
}

/// Used where no credential can be asked for (timers).
struct NoCredentials;

impl ServerCredentials for NoCredentials {
    fn psk(&self, _identity: &[u8]) -> Option<crate::config::PskEntry> {
        None
    }
    fn verify_client(
        &self,
        _key: crate::config::PeerKey<'_>,
        _unix_time: Option<u64>,
    ) -> Result<Arc<str>, AlertDescription> {
        Err(AlertDescription::InternalError)
    }
}
