//! Observe as observer (RFC 7641 §3): the state of an observation we hold, the freshness
//! rule that drops reordered notifications (§3.4), cancellation (§3.6) and re-creating an
//! observation after a restart.
use super::OutRequest;
use crate::coap::endpoint::Endpoint;
use crate::coap::event::{
    CancelMode, Event, ExchangeError, Peer, RequestId, RequestOptions, SendError,
};
use crate::coap::msg::{self, Token};
use coap_lite::{CoapOption, Packet};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum ObserveState {
    None,
    Registering,
    Established {
        seq: u32,
        at: Instant,
    },
    /// Restored from storage after a restart: the first notification is taken whatever
    /// its sequence number, since the last one seen before the restart is unknown.
    Restored,
    Cancelling,
}

/// RFC 7641 §3.4: is notification `new` (received at `now`) fresher than `last` (at `at`)?
fn is_fresher(last: u32, at: Instant, new: u32, now: Instant) -> bool {
    const HALF: u32 = 1 << 23;
    (last < new && new - last < HALF)
        || (last > new && last - new > HALF)
        || now > at + Duration::from_secs(128)
}

impl<P: Peer> Endpoint<P> {
    /// Re-creates an established observation without sending anything, after a restart
    /// (the peer still notifies with `token`). `request` is the original registration
    /// (method, path, options); it is used for an active cancellation and for fetching the
    /// blocks of large notifications. The first notification is accepted whatever its
    /// sequence number.
    pub fn restore_observation(
        &mut self,
        now: Instant,
        peer: P,
        token: Token,
        mut request: Packet,
        opts: RequestOptions,
    ) -> Result<RequestId, SendError> {
        self.admit(&request)?;
        if self.tokens.contains_key(&(peer, token)) {
            return Err(SendError::Busy);
        }
        request.set_token(Vec::new());
        let encoded = request
            .to_bytes_with_limit(self.config.max_message_size)
            .map_err(|_| SendError::Encode)?;
        let id = self.next_request_id();
        self.peer_state(now, peer);
        self.tokens.insert((peer, token), id);
        self.requests.insert(
            id,
            OutRequest {
                observe: ObserveState::Restored,
                ..OutRequest::new(peer, token, encoded, opts, self.config.block_retries, now)
            },
        );
        Ok(id)
    }

    /// Cancels an observation (RFC 7641 §3.6). `Passive` forgets it at once (it ends with
    /// `Failed { Cancelled }`); `Active` sends a GET with Observe=1, whose response ends it.
    pub fn cancel_observe(
        &mut self,
        now: Instant,
        id: RequestId,
        mode: CancelMode,
    ) -> Result<(), SendError> {
        let Some(r) = self.requests.get_mut(&id) else {
            return Err(SendError::UnknownRequest);
        };
        match mode {
            CancelMode::Passive => self.fail_request(now, id, ExchangeError::Cancelled),
            CancelMode::Active => {
                r.observe = ObserveState::Cancelling;
                let mut p = Packet::from_bytes(&r.request).unwrap_or_default();
                msg::set_uint_option(&mut p, CoapOption::Observe, 1);
                if let Ok(b) = p.to_bytes_unlimited() {
                    r.request = b.into_boxed_slice();
                }
                let peer = r.peer;
                if let Some(dl) = r.download.take() {
                    self.tokens.remove(&(peer, dl.token));
                }
                self.acquire_slot(now, id);
            }
        }
        Ok(())
    }

    pub(super) fn on_notification(
        &mut self,
        now: Instant,
        req: RequestId,
        resp: Packet,
        seq: Option<u32>,
    ) {
        let Some(r) = self.requests.get_mut(&req) else {
            return;
        };
        if let Some(new) = seq {
            if let ObserveState::Established { seq: last, at } = r.observe {
                if !is_fresher(last, at, new, now) {
                    return; // §3.4: older than what we have; drop it.
                }
            }
            r.observe = ObserveState::Established { seq: new, at: now };
            if msg::is_success(&resp) {
                if let Some(b2) = msg::block_option(&resp, CoapOption::Block2).filter(|b| b.more) {
                    self.start_download(now, req, resp, b2, Some(new));
                } else {
                    let peer = r.peer;
                    self.events.push_back(Event::Notification {
                        id: req,
                        peer,
                        response: resp,
                        seq: Some(new),
                    });
                }
                return;
            }
        }
        // §3.2: a notification without Observe, or an error, ends the observation.
        if let Some(r) = self.take_request(now, req) {
            self.events.push_back(Event::Notification {
                id: req,
                peer: r.peer,
                response: resp,
                seq: None,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freshness_follows_rfc7641_section_3_4() {
        let t = Instant::now();
        assert!(is_fresher(5, t, 6, t));
        assert!(!is_fresher(6, t, 5, t));
        assert!(!is_fresher(6, t, 6, t));
        // Wrap-around of the 24-bit space counts as newer.
        assert!(is_fresher((1 << 24) - 1, t, 0, t));
        // After 128 s anything is newer.
        assert!(is_fresher(6, t, 5, t + Duration::from_secs(129)));
    }
}
