//! The client role: requests this endpoint sends and their responses (RFC 7252 §5.2), and
//! NSTART queuing (RFC 7252 §4.7). Three parts of it have their own files: `upload` sends a
//! large request body with Block1 (RFC 7959 §2.5: lock-step, optionally paced, resumable at
//! a block), `download` fetches Block2 responses and notifications (RFC 7959 §3), and
//! `observe` keeps the observations we hold (RFC 7641 §3).
mod download;
mod observe;
mod upload;

use super::{Endpoint, Owner, Reply, Timer};
use crate::coap::event::{Event, ExchangeError, Peer, RequestId, RequestOptions, SendError};
use crate::coap::msg::{self, block_size, BlockOpt, Kind, Token};
use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType};
use rand::Rng;
use std::time::Instant;

use download::Download;
use observe::ObserveState;
use upload::Upload;

/// A request from `send_request` until its last event.
#[derive(Debug)]
pub(super) struct OutRequest<P> {
    pub(super) peer: P,
    /// The token of the request and, for Observe, of every notification.
    token: Token,
    /// The request as the application gave it (without its payload when uploading
    /// block-wise), encoded: each message of the exchange is built from it. Kept as bytes
    /// because a decoded `Packet` costs about a kilobyte, and an established observation
    /// keeps this for as long as it lives.
    request: Box<[u8]>,
    opts: RequestOptions,
    upload: Option<Box<Upload>>,
    download: Option<Box<Download>>,
    observe: ObserveState,
    /// Our CON message in flight, so that a response stops its retransmission.
    current_mid: Option<u16>,
    /// Whether the request holds one of the peer's NSTART slots.
    holds_slot: bool,
    /// The application put a Block2 option in the request: it fetches one block at a
    /// time itself (RFC 7959 §2.4 lets a client ask for any block), so the response is
    /// handed on as it is, not completed with the blocks that follow.
    single_block: bool,
    /// Fresh sends left for the current block after its exchange timed out.
    retries_left: u8,
    /// Id of the armed deadline timer; 0 when none is armed.
    deadline: u64,
    /// When that timer fires: with the id, what cancels it.
    deadline_due: Instant,
    /// When the current exchange times out without a response. For a CON message the
    /// timer is only armed once an empty ACK says a separate response is coming; until
    /// then the retransmission timer checks it, so a piggybacked exchange leaves no
    /// long-lived timer behind.
    pub(super) deadline_at: Instant,
}

impl<P> OutRequest<P> {
    /// A request with nothing in flight, no block transfer, no observation and no slot.
    fn new(
        peer: P,
        token: Token,
        encoded: Vec<u8>,
        opts: RequestOptions,
        retries: u8,
        now: Instant,
    ) -> Self {
        Self {
            peer,
            token,
            request: encoded.into_boxed_slice(),
            opts,
            upload: None,
            download: None,
            observe: ObserveState::None,
            current_mid: None,
            holds_slot: false,
            single_block: false,
            retries_left: retries,
            deadline: 0,
            deadline_due: now,
            deadline_at: now,
        }
    }
}

impl<P: Peer> Endpoint<P> {
    /// Sends `request` (method, options and payload as built by the application; the token,
    /// message ID and type are set here) to `peer`.
    ///
    /// A payload larger than the block size is uploaded with Block1, a response with Block2
    /// is downloaded whole (unless the request carries a Block2 option of its own: then the
    /// application asked for that one block and gets the response as it comes), and a GET
    /// carrying Observe=0 stays open for notifications. The
    /// request waits for a free NSTART slot if the peer has too many outstanding. Every
    /// request ends in exactly one of [`Event::Response`] or [`Event::Failed`] (or, for an
    /// observation, a final [`Event::Notification`] with `seq: None`).
    pub fn send_request(
        &mut self,
        now: Instant,
        peer: P,
        mut request: Packet,
        opts: RequestOptions,
    ) -> Result<RequestId, SendError> {
        self.admit(&request)?;
        let szx = opts.block_szx.unwrap_or(self.config.block_szx).min(6);
        let start = opts.block1_start.unwrap_or(0);
        if start > 0 && (start as usize).saturating_mul(block_size(szx)) >= request.payload.len() {
            return Err(SendError::BlockOutOfRange);
        }
        if !upload::numbered(request.payload.len(), szx) {
            return Err(SendError::BlockOutOfRange);
        }
        let upload = (request.payload.len() > block_size(szx)).then(|| {
            Box::new(Upload::new(
                std::mem::take(&mut request.payload),
                start,
                szx,
            ))
        });
        let is_get = matches!(
            request.header.code,
            MessageClass::Request(RequestType::Get | RequestType::Fetch)
        );
        let single_block = msg::has_option(&request, CoapOption::Block2);
        if opts.block_szx.is_some() && is_get && !single_block {
            // RFC 7959 §2.4: early negotiation of a smaller block size.
            msg::set_block_option(
                &mut request,
                CoapOption::Block2,
                BlockOpt {
                    num: 0,
                    more: false,
                    szx,
                },
            );
        }
        // Options that cannot be encoded fail here, not in the middle of a transfer.
        request.set_token(Vec::new());
        let Ok(encoded) = request.to_bytes_with_limit(self.config.max_message_size) else {
            return Err(SendError::Encode);
        };
        // Room for what each message adds to the stored request: a token of up to 8 bytes
        // and, for an upload, a block of payload with its marker, Block1 and Size1 options.
        let overhead = 8 + upload.as_ref().map_or(0, |_| block_size(szx) + 16);
        if encoded.len() + overhead > self.config.max_message_size {
            return Err(SendError::Encode);
        }
        let observe = match msg::observe(&request) {
            Some(0) => ObserveState::Registering,
            _ => ObserveState::None,
        };
        let nstart = self.config.transmission.nstart.max(1);
        let max_queued = self.config.max_queued_per_peer;
        let ps = self.peer_state(now, peer);
        let start = ps.active < nstart;
        if !start && ps.queue.len() >= max_queued {
            self.stats.overload_rejections += 1;
            return Err(SendError::Busy);
        }
        let id = self.next_request_id();
        let token = self.fresh_token(peer);
        let ps = self.peer_state(now, peer);
        if start {
            ps.active += 1;
        } else {
            ps.queue.push_back(id);
        }
        self.tokens.insert((peer, token), id);
        self.requests.insert(
            id,
            OutRequest {
                upload,
                observe,
                holds_slot: start,
                single_block,
                ..OutRequest::new(peer, token, encoded, opts, self.config.block_retries, now)
            },
        );
        if start {
            // The first message is built from the packet at hand, not parsed back.
            self.transmit_with(now, id, Some(request));
        }
        Ok(id)
    }

    /// Cancels a request. It ends with [`Event::Failed`] and [`ExchangeError::Cancelled`];
    /// a response that still arrives is answered with RST.
    pub fn cancel(&mut self, now: Instant, id: RequestId) -> Result<(), SendError> {
        if !self.requests.contains_key(&id) {
            return Err(SendError::UnknownRequest);
        }
        self.fail_request(now, id, ExchangeError::Cancelled);
        Ok(())
    }

    /// The token of request `id`: what identifies its notifications on the wire, and what
    /// to store so that the observation can be restored after a restart.
    pub fn request_token(&self, id: RequestId) -> Option<Token> {
        self.requests.get(&id).map(|r| r.token)
    }

    /// Checks that `request` is one and that there is room for another outgoing request.
    fn admit(&mut self, request: &Packet) -> Result<(), SendError> {
        if msg::kind(request) != Kind::Request {
            return Err(SendError::NotARequest);
        }
        if self.requests.len() >= self.config.max_outgoing {
            self.stats.overload_rejections += 1;
            return Err(SendError::Busy);
        }
        Ok(())
    }

    /// Gives `id` an NSTART slot and sends it, or queues it behind the peer's others.
    fn acquire_slot(&mut self, now: Instant, id: RequestId) {
        let nstart = self.config.transmission.nstart.max(1);
        let Some(peer) = self.requests.get(&id).map(|r| r.peer) else {
            return;
        };
        let ps = self.peer_state(now, peer);
        if ps.active < nstart {
            ps.active += 1;
            if let Some(r) = self.requests.get_mut(&id) {
                r.holds_slot = true;
            }
            self.transmit_current(now, id);
        } else {
            ps.queue.push_back(id);
        }
    }

    fn fresh_token(&mut self, peer: P) -> Token {
        let len = usize::from(self.config.token_len.clamp(1, 8));
        loop {
            let bytes: [u8; 8] = self.rng.random();
            if let Some(t) = bytes.get(..len).and_then(Token::new) {
                if !self.tokens.contains_key(&(peer, t)) {
                    return t;
                }
            }
        }
    }

    /// Builds and sends the message the request is at: the next Block1 block, the next
    /// Block2 request, or the request itself.
    pub(super) fn transmit_current(&mut self, now: Instant, id: RequestId) {
        self.transmit_with(now, id, None);
    }

    /// [`transmit_current`](Self::transmit_current), starting from `template` (the request
    /// without token) when the caller has it decoded already.
    fn transmit_with(&mut self, now: Instant, id: RequestId, template: Option<Packet>) {
        // Whatever was in flight for this request is superseded: its retransmissions and a
        // late ACK of it must not be taken for the new message's.
        if let Some((peer, mid)) = self
            .requests
            .get_mut(&id)
            .and_then(|r| r.current_mid.take().map(|m| (r.peer, m)))
        {
            self.drop_unacked(peer, mid);
        }
        // A block request gets a token of its own each time it is sent.
        if let Some((peer, old)) = self
            .requests
            .get(&id)
            .and_then(|r| r.download.as_ref().map(|d| (r.peer, d.token)))
        {
            self.tokens.remove(&(peer, old));
            let t = self.fresh_token(peer);
            self.tokens.insert((peer, t), id);
            if let Some(dl) = self.requests.get_mut(&id).and_then(|r| r.download.as_mut()) {
                dl.token = t;
            }
        }
        let Some(r) = self.requests.get_mut(&id) else {
            return;
        };
        let peer = r.peer;
        // Our own encoding, so it parses; the default only keeps a bug from panicking.
        let mut p = match template {
            Some(p) => p,
            None => Packet::from_bytes(&r.request).unwrap_or_default(),
        };
        let mut token = r.token;
        if let Some(up) = r.upload.as_mut() {
            up.fill(&mut p, now);
        } else if let Some(dl) = &r.download {
            token = dl.token;
            p.clear_option(CoapOption::Observe);
            p.clear_option(CoapOption::Block1);
            p.clear_option(CoapOption::Size1);
            p.payload.clear();
            msg::set_block_option(
                &mut p,
                CoapOption::Block2,
                BlockOpt {
                    num: dl.next,
                    more: false,
                    szx: dl.szx,
                },
            );
        }
        let con = r.opts.confirmable;
        let timeout = r
            .opts
            .timeout
            .unwrap_or_else(|| self.config.transmission.exchange_lifetime());
        p.set_token(token.as_bytes().to_vec());
        let mid = self.next_mid(now, peer);
        p.header.message_id = mid;
        p.header.set_type(if con {
            MessageType::Confirmable
        } else {
            MessageType::NonConfirmable
        });
        let Ok(bytes) = p.to_bytes_with_limit(self.config.max_message_size) else {
            self.fail_request(now, id, ExchangeError::Encode);
            return;
        };
        if let Some(r) = self.requests.get_mut(&id) {
            r.deadline_at = crate::time::deadline(now, timeout);
            r.current_mid = con.then_some(mid);
        }
        // A CON message's deadline is armed when an empty ACK says a separate response is
        // coming; until then its retransmission timer watches `deadline_at`.
        self.set_deadline(id, (!con).then_some(crate::time::deadline(now, timeout)));
        if con {
            self.send_con(now, peer, mid, bytes, Owner::Request(id));
        } else {
            self.transmit(peer, bytes);
        }
    }

    /// The empty ACK of a separate response (RFC 7252 §5.2.2): the response comes later.
    pub(super) fn on_request_acked(&mut self, now: Instant, id: RequestId) {
        let Some(r) = self.requests.get_mut(&id) else {
            return;
        };
        r.current_mid = None;
        let at = r.deadline_at.max(now);
        self.set_deadline(id, Some(at));
    }

    /// Arms the deadline timer of request `id` at `at`, or with `None` disarms it; the
    /// timer armed before is cancelled either way.
    fn set_deadline(&mut self, id: RequestId, at: Option<Instant>) {
        let Some(r) = self.requests.get_mut(&id) else {
            return;
        };
        if r.deadline != 0 {
            self.timers.cancel(r.deadline_due, r.deadline);
            r.deadline = 0;
        }
        if let Some(at) = at {
            let t = self.timers.next_id();
            self.timers
                .arm(at, Timer::RequestDeadline { req: id, id: t });
            r.deadline = t;
            r.deadline_due = at;
        }
    }

    pub(super) fn on_request_deadline(&mut self, now: Instant, req: RequestId, id: u64) {
        let live = self.requests.get(&req).is_some_and(|r| {
            r.deadline == id
                && !matches!(r.observe, ObserveState::Established { .. } | ObserveState::Restored if r.download.is_none())
        });
        if live {
            self.on_exchange_timeout(now, req);
        }
    }

    /// The current exchange got no answer. A block of a block-wise transfer is sent afresh
    /// (up to `block_retries` times): that is what carries large transfers over lossy links.
    pub(super) fn on_exchange_timeout(&mut self, now: Instant, req: RequestId) {
        let Some(r) = self.requests.get_mut(&req) else {
            return;
        };
        let peer = r.peer;
        if let Some(mid) = r.current_mid.take() {
            // Disjoint fields: `r` still borrows `self.requests`.
            if let Some(u) = self.unacked.remove(&(peer, mid)) {
                self.timers.cancel(u.due, u.timer);
            }
        }
        if r.deadline != 0 {
            self.timers.cancel(r.deadline_due, r.deadline);
            r.deadline = 0;
        }
        let blockwise = r.upload.is_some() || r.download.is_some();
        if blockwise && r.retries_left > 0 {
            r.retries_left -= 1;
            self.transmit_current(now, req);
            return;
        }
        if matches!(
            r.observe,
            ObserveState::Established { .. } | ObserveState::Restored
        ) {
            // A notification's remaining blocks could not be fetched; the observation
            // itself is fine and the next notification brings the current state.
            if let Some(dl) = r.download.take() {
                self.tokens.remove(&(peer, dl.token));
            }
            return;
        }
        // An upload the peer has acknowledged part of can be resumed where it stopped.
        let error = r
            .upload
            .as_deref()
            .map_or(ExchangeError::Timeout, Upload::timeout_error);
        self.stats.timeouts += 1;
        self.fail_request(now, req, error);
    }

    /// A CON or NON response that is not piggybacked: a separate response or a notification.
    pub(super) fn on_separate_response(&mut self, now: Instant, peer: P, packet: Packet) {
        let mid = packet.header.message_id;
        let con = packet.header.get_type() == MessageType::Confirmable;
        let observe = packet.get_option(coap_lite::CoapOption::Observe).is_some();
        if self.refusing_reports && observe && self.dedup.get(&(peer, mid), now).is_none() {
            // No ACK, no duplicate-detection record: the sender's retransmission is a new
            // arrival, taken once the application can.
            self.stats.notifications_refused += 1;
            return;
        }
        // A non-confirmable notification needs no duplicate-detection record (RFC 7252
        // §4.5): its duplicate carries the same Observe value, which RFC 7641 §3.4's
        // ordering rule drops as not fresher. Under telemetry such records would be nearly
        // all of this endpoint's memory (one per notification, kept NON_LIFETIME).
        if (con || !observe) && self.is_duplicate(now, peer, mid, con) {
            return;
        }
        let token = Token::new(packet.get_token()).unwrap_or_default();
        match self.tokens.get(&(peer, token)).copied() {
            Some(req) => {
                if con {
                    let ack = msg::empty_bytes(MessageType::Acknowledgement, mid);
                    self.transmit(peer, ack);
                    self.remember_reply(now, peer, mid, Reply::Empty(MessageType::Acknowledgement));
                }
                self.on_response(now, peer, req, packet);
            }
            None => {
                // RFC 7252 §5.3.2 / RFC 7641 §3.6: nobody wants this; tell the sender.
                self.send_reset(peer, mid);
                self.remember_reply(now, peer, mid, Reply::Empty(MessageType::Reset));
            }
        }
    }

    /// A response (piggybacked or separate) matched to request `req`.
    pub(super) fn on_response(&mut self, now: Instant, peer: P, req: RequestId, resp: Packet) {
        let Some(r) = self.requests.get_mut(&req) else {
            return;
        };
        let token = Token::new(resp.get_token()).unwrap_or_default();
        let for_download = r.download.as_ref().is_some_and(|d| d.token == token);
        if !for_download && token != r.token {
            return; // §5.3.2: a piggybacked response must carry the request's token.
        }
        // A response implies the request arrived, even if its ACK was lost.
        if let Some(mid) = r.current_mid.take() {
            // Disjoint fields: `r` still borrows `self.requests`.
            if let Some(u) = self.unacked.remove(&(peer, mid)) {
                self.timers.cancel(u.due, u.timer);
            }
        }
        if msg::unknown_critical_option(&resp).is_some() {
            self.fail_request(now, req, ExchangeError::BadResponse);
            return;
        }
        if for_download {
            self.on_download_block(now, req, resp);
            return;
        }
        if r.upload.is_some() && self.on_upload_answer(now, req, &resp) {
            return;
        }
        let Some(r) = self.requests.get_mut(&req) else {
            return;
        };
        let seq = msg::observe(&resp);
        let single_block = r.single_block;
        match r.observe {
            ObserveState::Registering => {
                if msg::is_success(&resp) && seq.is_some() {
                    r.observe = ObserveState::Established {
                        seq: seq.unwrap_or_default(),
                        at: now,
                    };
                    if r.deadline != 0 {
                        self.timers.cancel(r.deadline_due, r.deadline);
                        r.deadline = 0;
                    }
                    self.release_slot(now, req);
                } else {
                    r.observe = ObserveState::None;
                }
            }
            ObserveState::Established { .. } | ObserveState::Restored => {
                self.on_notification(now, req, resp, seq);
                return;
            }
            // A notification that crossed our cancellation; the answer to the cancel has
            // no Observe option.
            ObserveState::Cancelling if seq.is_some() => return,
            ObserveState::Cancelling | ObserveState::None => {}
        }
        match msg::block_option(&resp, CoapOption::Block2) {
            Some(b2) if b2.more && !single_block => self.start_download(now, req, resp, b2, None),
            _ => self.finish(now, req, resp),
        }
    }

    /// The final response: the request ends, unless it is an observation now established.
    fn finish(&mut self, now: Instant, req: RequestId, response: Packet) {
        let Some(r) = self.requests.get(&req) else {
            return;
        };
        let peer = r.peer;
        if !matches!(
            r.observe,
            ObserveState::Established { .. } | ObserveState::Restored
        ) {
            self.take_request(now, req);
        }
        self.events.push_back(Event::Response {
            id: req,
            peer,
            response,
        });
    }

    pub(super) fn fail_request(&mut self, now: Instant, req: RequestId, error: ExchangeError) {
        if let Some(r) = self.take_request(now, req) {
            self.events.push_back(Event::Failed {
                id: req,
                peer: r.peer,
                error,
            });
        }
    }

    /// Removes a request and everything that points at it.
    fn take_request(&mut self, now: Instant, req: RequestId) -> Option<OutRequest<P>> {
        let r = self.requests.remove(&req)?;
        if r.deadline != 0 {
            self.timers.cancel(r.deadline_due, r.deadline);
        }
        self.tokens.remove(&(r.peer, r.token));
        if let Some(dl) = &r.download {
            self.tokens.remove(&(r.peer, dl.token));
        }
        if let Some(mid) = r.current_mid {
            self.drop_unacked(r.peer, mid);
        }
        if r.holds_slot {
            self.free_slot(now, r.peer);
        } else if let Some(ps) = self.peers.get_mut(&r.peer) {
            ps.queue.retain(|q| *q != req);
        }
        Some(r)
    }

    fn release_slot(&mut self, now: Instant, req: RequestId) {
        let Some(r) = self.requests.get_mut(&req) else {
            return;
        };
        if r.holds_slot {
            r.holds_slot = false;
            let peer = r.peer;
            self.free_slot(now, peer);
        }
    }

    /// A slot of `peer` is free: start the next queued request.
    fn free_slot(&mut self, now: Instant, peer: P) {
        let Some(ps) = self.peers.get_mut(&peer) else {
            return;
        };
        ps.active = ps.active.saturating_sub(1);
        let nstart = self.config.transmission.nstart.max(1);
        while ps.active < nstart {
            let Some(next) = ps.queue.pop_front() else {
                break;
            };
            if let Some(r) = self.requests.get_mut(&next) {
                r.holds_slot = true;
                ps.active += 1;
                self.transmit_current(now, next);
                return;
            }
        }
    }
}
