//! Block-wise download (RFC 7959 §2.4, §3): a response or notification with Block2 is
//! fetched block by block, restarted when its ETag changes, capped at the body size limit,
//! and handed on whole.
use super::observe::ObserveState;
use crate::coap::endpoint::Endpoint;
use crate::coap::event::{Event, ExchangeError, Peer, RequestId};
use crate::coap::msg::{self, block_size, BlockOpt, Token};
use coap_lite::{CoapOption, Packet};
use std::time::Instant;

#[derive(Debug)]
pub(super) struct Download {
    pub(super) body: Vec<u8>,
    pub(super) next: u32,
    pub(super) szx: u8,
    /// Each block request has its own token, so a late answer to an earlier block cannot be
    /// taken for the current one.
    pub(super) token: Token,
    pub(super) etag: Option<Vec<u8>>,
    /// The first block's response without payload: code and options of the joined result.
    pub(super) head: Packet,
    /// Set when the download completes a notification, with its Observe sequence number.
    pub(super) seq: Option<u32>,
}

impl<P: Peer> Endpoint<P> {
    pub(super) fn start_download(
        &mut self,
        now: Instant,
        req: RequestId,
        mut head: Packet,
        b2: BlockOpt,
        seq: Option<u32>,
    ) {
        let max_body = self.config.max_body_size;
        let our_szx = self
            .requests
            .get(&req)
            .and_then(|r| r.opts.block_szx)
            .unwrap_or(self.config.block_szx);
        let block_retries = self.config.block_retries;
        let too_big =
            msg::uint_option(&head, CoapOption::Size2).is_some_and(|s| s as usize > max_body);
        if b2.num != 0 || head.payload.len() != b2.size() || too_big {
            let error = if too_big {
                ExchangeError::BodyTooLarge
            } else {
                ExchangeError::Block
            };
            self.fail_or_drop_download(now, req, error);
            return;
        }
        let body = std::mem::take(&mut head.payload);
        let szx = b2.szx.min(our_szx);
        let Some(r) = self.requests.get_mut(&req) else {
            return;
        };
        r.retries_left = block_retries;
        r.download = Some(Box::new(Download {
            next: (body.len() / block_size(szx)) as u32,
            body,
            szx,
            token: r.token, // replaced by transmit_current
            etag: head.get_first_option(CoapOption::ETag).cloned(),
            head,
            seq,
        }));
        self.transmit_current(now, req);
    }

    pub(super) fn on_download_block(&mut self, now: Instant, req: RequestId, resp: Packet) {
        let max_body = self.config.max_body_size;
        let block_retries = self.config.block_retries;
        let Some(r) = self.requests.get_mut(&req) else {
            return;
        };
        let Some(dl) = r.download.as_mut() else {
            return;
        };
        let b2 = msg::block_option(&resp, CoapOption::Block2);
        let ok = msg::is_success(&resp)
            && b2.is_some_and(|b| {
                b.offset() == dl.body.len() && (!b.more || resp.payload.len() == b.size())
            });
        if !ok {
            self.fail_or_drop_download(now, req, ExchangeError::Block);
            return;
        }
        if resp.get_first_option(CoapOption::ETag) != dl.etag.as_ref() {
            // §2.4: the representation changed under us; start over from the first block.
            if r.retries_left == 0 {
                self.fail_or_drop_download(now, req, ExchangeError::Block);
                return;
            }
            r.retries_left -= 1;
            dl.body.clear();
            dl.next = 0;
            dl.etag = resp.get_first_option(CoapOption::ETag).cloned();
            self.transmit_current(now, req);
            return;
        }
        if dl.body.len() + resp.payload.len() > max_body {
            self.fail_or_drop_download(now, req, ExchangeError::BodyTooLarge);
            return;
        }
        dl.body.extend_from_slice(&resp.payload);
        let Some(b2) = b2 else { return };
        if b2.more {
            dl.szx = dl.szx.min(b2.szx);
            dl.next = (dl.body.len() / block_size(dl.szx)) as u32;
            r.retries_left = block_retries;
            self.transmit_current(now, req);
            return;
        }
        let peer = r.peer;
        let Some(dl) = r.download.take() else { return };
        self.tokens.remove(&(peer, dl.token));
        let Download {
            head: mut whole,
            body,
            seq,
            ..
        } = *dl;
        whole.payload = body;
        whole.clear_option(CoapOption::Block2);
        whole.set_token(r.token.as_bytes().to_vec());
        match seq {
            Some(seq) => self.events.push_back(Event::Notification {
                id: req,
                peer,
                response: whole,
                seq: Some(seq),
            }),
            None => self.finish(now, req, whole),
        }
    }

    /// A download failed: a notification's is dropped (the observation goes on), a
    /// response's fails the request.
    fn fail_or_drop_download(&mut self, now: Instant, req: RequestId, error: ExchangeError) {
        let Some(r) = self.requests.get_mut(&req) else {
            return;
        };
        if matches!(
            r.observe,
            ObserveState::Established { .. } | ObserveState::Restored
        ) {
            let peer = r.peer;
            if let Some(dl) = r.download.take() {
                self.tokens.remove(&(peer, dl.token));
            }
            return;
        }
        self.fail_request(now, req, error);
    }
}
