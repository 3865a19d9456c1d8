//! The server role: requests this endpoint receives (RFC 7252 §5.2), answered piggybacked or
//! separately; Block1 reassembly and Block2 serving (RFC 7959 §2.3, §2.4, §2.5); and Observe
//! as notifier (RFC 7641 §4), including confirmable notifications that replace each other.
use super::{Endpoint, Owner, Reply};
use crate::coap::event::{
    Event, IncomingId, IncomingRequest, ObserverGoneReason, ObserverId, Peer, RespondError,
};
use crate::coap::msg::{self, block_size, BlockOpt, Kind, Token};
use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::{Duration, Instant};

/// A request delivered to the application, until it answers.
#[derive(Debug)]
pub(super) struct InRequest<P> {
    peer: P,
    mid: u16,
    token: Token,
    con: bool,
    /// An empty ACK went out, so the answer must be a separate response.
    acked: bool,
    /// Identifies the resource for Block1/Block2 state (see [`request_key`]).
    key: u64,
    /// Set when the request completed a Block1 upload: the option to echo in the response.
    block1: Option<BlockOpt>,
    /// The Block2 option of the request: which block, and the size the client prefers.
    block2: Option<BlockOpt>,
    /// A GET/FETCH with Observe=0: a success response adds an observer.
    observe_register: bool,
}

/// A Block1 upload being reassembled.
#[derive(Debug)]
pub(crate) struct Block1In {
    pub(crate) body: Vec<u8>,
    /// The last block received, to recognise a repeat of it.
    last: Option<BlockOpt>,
    completed: bool,
    /// The response to the completed upload, replayed when the last block comes again.
    done: Option<Packet>,
}

/// A response body served block by block.
#[derive(Debug)]
pub(crate) struct Block2Body {
    /// The response without payload: code and options of every block.
    template: Packet,
    pub(crate) body: Vec<u8>,
}

/// One observation we serve.
#[derive(Debug)]
pub(super) struct Observer<P> {
    peer: P,
    token: Token,
    key: u64,
    seq: u32,
    szx: u8,
    /// Our confirmable notification awaiting ACK.
    in_flight: Option<u16>,
    /// A newer notification waiting for the one in flight (RFC 7641 §4.5.2).
    pub(super) queued: Option<Packet>,
}

enum Block1Step {
    /// Answer at once, without the application.
    Reply(Packet),
    /// Say nothing (a repeat whose answer the application has not given yet).
    Ignore,
    /// The upload is complete; the payload now holds the whole body.
    Complete,
}

/// A hash of what identifies the resource a request addresses, so that the blocks of one
/// transfer find each other. Token, message ID, Observe and block options are left out on
/// purpose: they change from block to block.
fn request_key(p: &Packet) -> u64 {
    let mut h = DefaultHasher::new();
    u8::from(p.header.code).hash(&mut h);
    for opt in [
        CoapOption::UriHost,
        CoapOption::UriPort,
        CoapOption::UriPath,
        CoapOption::UriQuery,
        CoapOption::Accept,
        // RFC 9175 Request-Tag: tells apart concurrent uploads to one resource.
        CoapOption::Unknown(292),
    ] {
        if let Some(vals) = p.get_option(opt) {
            u16::from(opt).hash(&mut h);
            for v in vals {
                v.hash(&mut h);
            }
        }
    }
    if p.header.code == MessageClass::Request(RequestType::Fetch) {
        p.payload.hash(&mut h);
    }
    h.finish()
}

impl<P: Peer> Endpoint<P> {
    pub(super) fn on_request(&mut self, now: Instant, peer: P, mut packet: Packet) {
        let mid = packet.header.message_id;
        let con = packet.header.get_type() == MessageType::Confirmable;
        if self.refusing_reports && is_send(&packet) && self.dedup.get(&(peer, mid), now).is_none()
        {
            // As a refused notification: no ACK, no duplicate-detection record.
            self.stats.sends_refused += 1;
            return;
        }
        if self.is_duplicate(now, peer, mid, con) {
            return;
        }
        let token = Token::new(packet.get_token()).unwrap_or_default();
        let code: u8 = packet.header.code.into();
        if !(1..=7).contains(&code) {
            return self.reply_now(
                now,
                peer,
                mid,
                token,
                con,
                msg::response(ResponseType::MethodNotAllowed),
            );
        }
        if packet.get_option(CoapOption::ProxyUri).is_some()
            || packet.get_option(CoapOption::ProxyScheme).is_some()
        {
            return self.reply_now(
                now,
                peer,
                mid,
                token,
                con,
                msg::response(ResponseType::ProxyingNotSupported),
            );
        }
        let bad_block =
            |o| packet.get_first_option(o).is_some() && msg::block_option(&packet, o).is_none();
        if msg::unknown_critical_option(&packet).is_some()
            || bad_block(CoapOption::Block1)
            || bad_block(CoapOption::Block2)
        {
            return self.reply_now(
                now,
                peer,
                mid,
                token,
                con,
                msg::response(ResponseType::BadOption),
            );
        }
        let key = request_key(&packet);
        let block2 = msg::block_option(&packet, CoapOption::Block2);
        if let Some(b2) = block2.filter(|b| b.num > 0) {
            let szx = b2.szx.min(self.config.block_szx);
            if let Some(cached) = self.block2.get(&(peer, key), now) {
                let resp = msg::slice_block(&cached.template, &cached.body, b2.num, szx);
                return self.reply_now(now, peer, mid, token, con, resp);
            }
        }
        let mut block1 = None;
        if let Some(b1) = msg::block_option(&packet, CoapOption::Block1) {
            match self.receive_block1(now, peer, key, b1, &mut packet) {
                Block1Step::Reply(resp) => return self.reply_now(now, peer, mid, token, con, resp),
                Block1Step::Ignore => return,
                Block1Step::Complete => block1 = Some(b1),
            }
        }
        if self.incoming.len() >= self.config.max_pending_incoming {
            self.stats.overload_rejections += 1;
            return self.reply_now(
                now,
                peer,
                mid,
                token,
                con,
                msg::response(ResponseType::ServiceUnavailable),
            );
        }
        let is_get = matches!(
            packet.header.code,
            MessageClass::Request(RequestType::Get | RequestType::Fetch)
        );
        let observe = if is_get { msg::observe(&packet) } else { None };
        if observe.is_some() {
            // RFC 7641 §3.6/§4.1: deregistration, or re-registration replacing the entry.
            if let Some(old) = self.observer_keys.get(&(peer, token)).copied() {
                self.drop_observer(old, Some(ObserverGoneReason::Deregistered));
            }
        }
        packet.clear_option(CoapOption::Block1);
        packet.clear_option(CoapOption::Block2);
        packet.clear_option(CoapOption::Size1);
        self.next_id += 1;
        let id = IncomingId(self.next_id);
        self.incoming.insert(
            id,
            InRequest {
                peer,
                mid,
                token,
                con,
                acked: false,
                key,
                block1,
                block2,
                observe_register: observe == Some(0),
            },
            // An unanswered request is forgotten after EXCHANGE_LIFETIME; the peer gave up.
            crate::time::deadline(now, self.config.transmission.exchange_lifetime()),
        );
        self.remember_reply(now, peer, mid, Reply::Pending(id));
        if con {
            self.ack_due.push(
                crate::time::deadline(now, self.config.separate_response_after),
                id,
            );
        }
        self.events.push_back(Event::Request(IncomingRequest {
            id,
            peer,
            request: packet,
            block2,
        }));
    }

    fn receive_block1(
        &mut self,
        now: Instant,
        peer: P,
        key: u64,
        b1: BlockOpt,
        packet: &mut Packet,
    ) -> Block1Step {
        let max_body = self.config.max_body_size;
        let too_large = || {
            let mut r = msg::response(ResponseType::RequestEntityTooLarge);
            msg::set_uint_option(&mut r, CoapOption::Size1, max_body as u32);
            Block1Step::Reply(r)
        };
        if msg::uint_option(packet, CoapOption::Size1).is_some_and(|s| s as usize > max_body) {
            return too_large();
        }
        let len = packet.payload.len();
        if len > b1.size() || (b1.more && len != b1.size()) {
            return Block1Step::Reply(msg::response(ResponseType::BadRequest));
        }
        let k = (peer, key);
        if b1.num == 0
            && self
                .block1
                .get(&k, now)
                .is_none_or(|st| st.last != Some(b1))
        {
            if let Some(old) = self.block1.remove(&k) {
                self.block1_bytes -= old.body.len();
            }
            let fresh = Block1In {
                body: Vec::new(),
                last: None,
                completed: false,
                done: None,
            };
            if let Some((_, ev)) = self.block1.insert(
                k,
                fresh,
                crate::time::deadline(now, self.config.block_lifetime),
            ) {
                self.block1_bytes -= ev.body.len();
            }
        }
        let our_szx = b1.szx.min(self.config.block_szx);
        let cont = |num| {
            let mut r = msg::response(ResponseType::Continue);
            msg::set_block_option(
                &mut r,
                CoapOption::Block1,
                BlockOpt {
                    num,
                    more: true,
                    szx: our_szx,
                },
            );
            Block1Step::Reply(r)
        };
        let Some(st) = self.block1.get_mut(&k, now) else {
            return Block1Step::Reply(msg::response(ResponseType::RequestEntityIncomplete));
        };
        if st.last == Some(b1) {
            // The same block again under a new message ID: its answer was lost.
            return match (st.completed, &st.done) {
                (false, _) => cont(b1.num),
                (true, Some(resp)) => Block1Step::Reply(resp.clone()),
                (true, None) => Block1Step::Ignore,
            };
        }
        if st.completed || b1.offset() != st.body.len() {
            return Block1Step::Reply(msg::response(ResponseType::RequestEntityIncomplete));
        }
        if st.body.len() + len > max_body {
            if let Some(old) = self.block1.remove(&k) {
                self.block1_bytes -= old.body.len();
            }
            return too_large();
        }
        if self.block1_bytes + len > self.config.max_block1_bytes {
            self.stats.overload_rejections += 1;
            return Block1Step::Reply(msg::response(ResponseType::ServiceUnavailable));
        }
        st.body.extend_from_slice(&packet.payload);
        self.block1_bytes += len;
        st.last = Some(b1);
        // A slow upload lives as long as blocks keep coming, not a fixed span from its start.
        self.block1
            .touch(&k, crate::time::deadline(now, self.config.block_lifetime));
        let Some(st) = self.block1.get_mut(&k, now) else {
            return Block1Step::Reply(msg::response(ResponseType::RequestEntityIncomplete));
        };
        if b1.more {
            return cont(b1.num);
        }
        st.completed = true;
        packet.payload = std::mem::take(&mut st.body);
        self.block1_bytes -= packet.payload.len();
        Block1Step::Complete
    }

    /// Answers a request at once, without the application (errors, Continue, cached blocks).
    fn reply_now(
        &mut self,
        now: Instant,
        peer: P,
        mid: u16,
        token: Token,
        con: bool,
        mut resp: Packet,
    ) {
        resp.set_token(token.as_bytes().to_vec());
        if con {
            resp.header.set_type(MessageType::Acknowledgement);
            resp.header.message_id = mid;
        } else {
            resp.header.set_type(MessageType::NonConfirmable);
            resp.header.message_id = self.next_mid(now, peer);
        }
        if let Ok(bytes) = resp.to_bytes_with_limit(self.config.max_message_size) {
            self.transmit(peer, bytes.clone());
            self.remember_reply(now, peer, mid, Reply::Bytes(bytes.into()));
        }
    }

    /// Answers request `id`. Returns the new observer if the request was an Observe
    /// registration that `response` accepts (a 2.xx; RFC 7641 §4.1).
    ///
    /// The response goes piggybacked on the ACK if the request is still unacknowledged,
    /// else as a separate confirmable response. A payload larger than the block size (or
    /// the size the client asked for) is sent block-wise, the rest of the blocks served
    /// from a cache without involving the application again.
    pub fn respond(
        &mut self,
        now: Instant,
        id: IncomingId,
        mut response: Packet,
    ) -> Result<Option<ObserverId>, RespondError> {
        if msg::kind(&response) != Kind::Response {
            return Err(RespondError::NotAResponse);
        }
        let inc = self
            .incoming
            .remove(&id)
            .ok_or(RespondError::UnknownRequest)?;
        if let Some(b1) = inc.block1 {
            msg::set_block_option(
                &mut response,
                CoapOption::Block1,
                BlockOpt { more: false, ..b1 },
            );
            if let Some(st) = self.block1.get_mut(&(inc.peer, inc.key), now) {
                st.done = Some(response.clone());
            }
        }
        let szx = inc
            .block2
            .map_or(self.config.block_szx, |b| b.szx.min(self.config.block_szx));
        let mut observer = None;
        if inc.observe_register
            && msg::is_success(&response)
            && self.observers.len() < self.config.max_observers
        {
            self.next_id += 1;
            let oid = ObserverId(self.next_id);
            let seq = (self.next_id & 0xFF_FFFF) as u32;
            msg::set_uint_option(&mut response, CoapOption::Observe, seq);
            self.observers.insert(
                oid,
                Observer {
                    peer: inc.peer,
                    token: inc.token,
                    key: inc.key,
                    seq,
                    szx,
                    in_flight: None,
                    queued: None,
                },
            );
            self.observer_keys.insert((inc.peer, inc.token), oid);
            observer = Some(oid);
        } else if inc.observe_register {
            response.clear_option(CoapOption::Observe);
        }
        let num = inc.block2.map_or(0, |b| b.num);
        // A response that already is one block (the application cut it from a body it
        // keeps itself, such as a firmware package) goes out as it is, and nothing is cached.
        let sliced = msg::block_option(&response, CoapOption::Block2).is_some();
        if !sliced && (response.payload.len() > block_size(szx) || num > 0) {
            response = self.cache_and_slice(now, inc.peer, inc.key, response, num, szx);
        }
        self.send_response(now, &inc, response);
        Ok(observer)
    }

    fn send_response(&mut self, now: Instant, inc: &InRequest<P>, mut resp: Packet) {
        resp.set_token(inc.token.as_bytes().to_vec());
        let peer = inc.peer;
        if inc.con && !inc.acked {
            resp.header.set_type(MessageType::Acknowledgement);
            resp.header.message_id = inc.mid;
        } else {
            resp.header.set_type(if inc.con {
                MessageType::Confirmable
            } else {
                MessageType::NonConfirmable
            });
            resp.header.message_id = self.next_mid(now, peer);
        }
        let bytes = match resp.to_bytes_with_limit(self.config.max_message_size) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(?peer, error = %e, "response cannot be encoded; answering 5.00");
                let mut fallback = msg::response(ResponseType::InternalServerError);
                fallback.header = resp.header.clone();
                fallback.header.code = MessageClass::Response(ResponseType::InternalServerError);
                fallback.set_token(inc.token.as_bytes().to_vec());
                match fallback.to_bytes() {
                    Ok(b) => b,
                    Err(_) => return,
                }
            }
        };
        match resp.header.get_type() {
            MessageType::Confirmable => {
                let mid = resp.header.message_id;
                self.send_con(now, peer, mid, bytes, Owner::SeparateResponse);
            }
            _ => {
                self.transmit(peer, bytes.clone());
                if !inc.acked {
                    self.remember_reply(now, peer, inc.mid, Reply::Bytes(bytes.into()));
                }
            }
        }
    }

    /// Keeps `response`'s body for the later blocks and returns block `num`.
    fn cache_and_slice(
        &mut self,
        now: Instant,
        peer: P,
        key: u64,
        mut response: Packet,
        num: u32,
        szx: u8,
    ) -> Packet {
        let body = std::mem::take(&mut response.payload);
        if !msg::has_option(&response, CoapOption::ETag) {
            // RFC 7959 §2.4: lets the client notice that the representation changed between
            // two blocks (a new notification, a resource written meanwhile).
            let mut h = DefaultHasher::new();
            body.hash(&mut h);
            response.add_option(
                CoapOption::ETag,
                h.finish()
                    .to_be_bytes()
                    .get(..4)
                    .unwrap_or_default()
                    .to_vec(),
            );
        }
        let first = msg::slice_block(&response, &body, num, szx);
        let k = (peer, key);
        if let Some(old) = self.block2.remove(&k) {
            self.block2_bytes -= old.body.len();
        }
        if body.len() <= self.config.max_block2_bytes {
            while self.block2_bytes + body.len() > self.config.max_block2_bytes {
                match self.block2.pop_oldest() {
                    Some((_, old)) => self.block2_bytes -= old.body.len(),
                    None => break,
                }
            }
            self.block2_bytes += body.len();
            let entry = Block2Body {
                template: response,
                body,
            };
            if let Some((_, ev)) = self.block2.insert(
                k,
                entry,
                crate::time::deadline(now, self.config.block_lifetime),
            ) {
                self.block2_bytes -= ev.body.len();
            }
        }
        first
    }

    /// Sends the empty ACK for a confirmable request the application has not answered yet;
    /// its answer becomes a separate response. Sent again for each duplicate, since the
    /// first may have been lost.
    pub(super) fn send_due_ack(&mut self, now: Instant, id: IncomingId) {
        let Some(inc) = self.incoming.get_mut(&id, now) else {
            return;
        };
        if !inc.con {
            return;
        }
        inc.acked = true;
        let (peer, mid) = (inc.peer, inc.mid);
        self.transmit(peer, msg::empty_bytes(MessageType::Acknowledgement, mid));
    }

    /// Sends a notification to `observer` (RFC 7641 §4.2). `response` carries the code,
    /// options and payload; token and Observe sequence number are set here. A non-2.xx
    /// notification ends the observation. Of several confirmable notifications, only one is
    /// in flight at a time and only the newest waits behind it (§4.5.2).
    pub fn notify(
        &mut self,
        now: Instant,
        observer: ObserverId,
        mut response: Packet,
        confirmable: bool,
    ) -> Result<(), RespondError> {
        if msg::kind(&response) != Kind::Response {
            return Err(RespondError::NotAResponse);
        }
        let Some(o) = self.observers.get_mut(&observer) else {
            return Err(RespondError::UnknownObserver);
        };
        o.seq = (o.seq + 1) & 0xFF_FFFF;
        let (peer, token, key, szx, seq, busy) =
            (o.peer, o.token, o.key, o.szx, o.seq, o.in_flight.is_some());
        let ends = !msg::is_success(&response);
        if ends {
            response.clear_option(CoapOption::Observe);
        } else {
            msg::set_uint_option(&mut response, CoapOption::Observe, seq);
        }
        response.set_token(token.as_bytes().to_vec());
        if response.payload.len() > block_size(szx) {
            response = self.cache_and_slice(now, peer, key, response, 0, szx);
        }
        if confirmable && busy && !ends {
            if let Some(o) = self.observers.get_mut(&observer) {
                o.queued = Some(response);
            }
            return Ok(());
        }
        if confirmable {
            let timeout = self.initial_timeout();
            self.send_notification_con(now, observer, response, 0, timeout);
        } else {
            let mid = self.next_mid(now, peer);
            response.header.set_type(MessageType::NonConfirmable);
            response.header.message_id = mid;
            let bytes = response
                .to_bytes_with_limit(self.config.max_message_size)
                .map_err(|_| RespondError::Encode)?;
            self.transmit(peer, bytes);
            let life = self.config.transmission.non_lifetime();
            self.non_notified
                .insert((peer, mid), observer, crate::time::deadline(now, life));
        }
        if ends {
            self.drop_observer(observer, None);
        }
        Ok(())
    }

    pub(super) fn send_notification_con(
        &mut self,
        now: Instant,
        oid: ObserverId,
        mut packet: Packet,
        attempt: u8,
        timeout: Duration,
    ) {
        let Some(peer) = self.observers.get(&oid).map(|o| o.peer) else {
            return;
        };
        let mid = self.next_mid(now, peer);
        packet.header.set_type(MessageType::Confirmable);
        packet.header.message_id = mid;
        let Ok(bytes) = packet.to_bytes_with_limit(self.config.max_message_size) else {
            return;
        };
        if let Some(old) = self
            .observers
            .get_mut(&oid)
            .and_then(|o| o.in_flight.replace(mid))
        {
            self.drop_unacked(peer, old);
        }
        self.send_con_with(
            now,
            peer,
            mid,
            bytes,
            Owner::Notification(oid),
            attempt,
            timeout,
        );
    }

    pub(super) fn on_notification_acked(&mut self, now: Instant, oid: ObserverId) {
        let Some(o) = self.observers.get_mut(&oid) else {
            return;
        };
        o.in_flight = None;
        if let Some(next) = o.queued.take() {
            let timeout = self.initial_timeout();
            self.send_notification_con(now, oid, next, 0, timeout);
        }
    }

    /// Stops serving `observer` without telling the peer (its next notification would have
    /// been the place to). Returns whether it existed.
    pub fn remove_observer(&mut self, observer: ObserverId) -> bool {
        let existed = self.observers.contains_key(&observer);
        self.drop_observer(observer, None);
        existed
    }

    pub(super) fn drop_observer(&mut self, oid: ObserverId, reason: Option<ObserverGoneReason>) {
        let Some(o) = self.observers.remove(&oid) else {
            return;
        };
        self.observer_keys.remove(&(o.peer, o.token));
        if let Some(mid) = o.in_flight {
            self.drop_unacked(o.peer, mid);
        }
        if let Some(reason) = reason {
            self.events.push_back(Event::ObserverGone {
                observer: oid,
                peer: o.peer,
                reason,
            });
        }
    }
}

/// An LwM2M Send: `POST /dp` (OMA LwM2M TS 1.2 Transport §6.4.1).
fn is_send(packet: &Packet) -> bool {
    packet.header.code == MessageClass::Request(RequestType::Post)
        && packet
            .get_option(CoapOption::UriPath)
            .is_some_and(|p| p.len() == 1 && p.front().is_some_and(|s| s.as_slice() == b"dp"))
}
