//! Block1 uploads of the client role (RFC 7959 §2.5): a request body larger than a block
//! goes one block per 2.31 Continue (lock-step), optionally no faster than one block per
//! `block_interval`, starting at block 0 or, to resume an upload the peer kept the earlier
//! blocks of, at `block1_start`. A 4.13 with a smaller Block1 size (§2.9.3) continues at the
//! same byte offset in smaller blocks; a 4.08 on a later block (§2.9.2: the peer lost the
//! earlier ones) fails the request with `ExchangeError::Block`; a timeout after the peer
//! acknowledged a block fails it with `ExchangeError::Interrupted`, naming where to resume.
use super::super::{Endpoint, Timer};
use crate::coap::event::{ExchangeError, Peer, RequestId};
use crate::coap::msg::{self, block_size, BlockOpt};
use coap_lite::{CoapOption, MessageClass, Packet, ResponseType};
use std::time::Instant;

#[derive(Debug)]
pub(super) struct Upload {
    body: Vec<u8>,
    /// The block being sent, counted in `szx`.
    num: u32,
    szx: u8,
    /// The peer answered a block with 2.31 Continue: it holds part of the body, so a
    /// timeout from here on is an interruption the caller can resume.
    acked: bool,
    /// When the current block was last sent afresh, for `block_interval`.
    sent_at: Option<Instant>,
}

/// Block numbers a Block1 option carries: 20 bits (RFC 7959 §2.2).
const BLOCK_NUMBERS: usize = 1 << 20;

/// Whether a body of `len` bytes can be sent in blocks of `szx` without running out of
/// block numbers (a larger one would go out with its high bits cut off).
pub(super) fn numbered(len: usize, szx: u8) -> bool {
    len <= BLOCK_NUMBERS.saturating_mul(block_size(szx))
}

impl Upload {
    /// An upload of `body` in blocks of `szx`, starting at block `num`.
    pub(super) fn new(body: Vec<u8>, num: u32, szx: u8) -> Self {
        Self {
            body,
            num,
            szx,
            acked: false,
            sent_at: None,
        }
    }

    /// Puts the current block into `p` (the request without payload), sent at `now`.
    pub(super) fn fill(&mut self, p: &mut Packet, now: Instant) {
        self.sent_at = Some(now);
        let size = block_size(self.szx);
        let start = (self.num as usize).saturating_mul(size);
        let end = start.saturating_add(size).min(self.body.len());
        p.payload = self.body.get(start..end).unwrap_or_default().to_vec();
        msg::set_block_option(
            p,
            CoapOption::Block1,
            BlockOpt {
                num: self.num,
                more: end < self.body.len(),
                szx: self.szx,
            },
        );
        if self.num == 0 {
            msg::set_uint_option(p, CoapOption::Size1, self.body.len() as u32);
        }
    }

    /// How a timeout ends the request: resumable once the peer acknowledged a block.
    pub(super) fn timeout_error(&self) -> ExchangeError {
        if self.acked {
            ExchangeError::Interrupted {
                next_block: self.num,
                szx: self.szx,
            }
        } else {
            ExchangeError::Timeout
        }
    }
}

impl<P: Peer> Endpoint<P> {
    /// The peer's answer to a block of request `req`'s upload. Returns true if the upload
    /// goes on or the request failed; false if `resp` is the final response (the upload is
    /// then over and the response is handled like any other).
    pub(super) fn on_upload_answer(&mut self, now: Instant, req: RequestId, resp: &Packet) -> bool {
        let block_retries = self.config.block_retries;
        let Some(r) = self.requests.get_mut(&req) else {
            return true;
        };
        let Some(up) = r.upload.as_mut() else {
            return false;
        };
        let code = resp.header.code;
        let b1 = msg::block_option(resp, CoapOption::Block1);
        if code == MessageClass::Response(ResponseType::Continue) {
            let Some(b) = b1.filter(|b| b.num == up.num) else {
                self.fail_request(now, req, ExchangeError::Block);
                return true;
            };
            let sent_end = (up.num as usize)
                .saturating_add(1)
                .saturating_mul(block_size(up.szx));
            if sent_end >= up.body.len() {
                self.fail_request(now, req, ExchangeError::Block);
                return true;
            }
            // §2.5: the server may ask for smaller blocks from here on, unless the body
            // would then need more blocks than can be numbered.
            if !numbered(up.body.len(), up.szx.min(b.szx)) {
                self.fail_request(now, req, ExchangeError::Block);
                return true;
            }
            up.szx = up.szx.min(b.szx);
            up.num = (sent_end / block_size(up.szx)) as u32;
            up.acked = true;
            r.retries_left = block_retries;
            let next_at = up
                .sent_at
                .zip(r.opts.block_interval)
                .map(|(at, pause)| crate::time::deadline(at, pause))
                .filter(|at| *at > now);
            match next_at {
                Some(at) => self.pace(req, at),
                None => self.transmit_current(now, req),
            }
            return true;
        }
        if code == MessageClass::Response(ResponseType::RequestEntityTooLarge) {
            // §2.9.3: a smaller size in the answer's Block1 asks us to go on at the same
            // byte offset in blocks of that size (a power of two, so the offset divides).
            if let Some(b) = b1.filter(|b| b.szx < up.szx) {
                if !numbered(up.body.len(), b.szx) {
                    self.fail_request(now, req, ExchangeError::Block);
                    return true;
                }
                let offset = (up.num as usize).saturating_mul(block_size(up.szx));
                up.szx = b.szx;
                up.num = (offset / block_size(b.szx)) as u32;
                self.transmit_current(now, req);
                return true;
            }
        }
        if code == MessageClass::Response(ResponseType::RequestEntityIncomplete) && up.num > 0 {
            // §2.9.2: the peer no longer has the earlier blocks (it restarted, or its state
            // expired, or a resumed upload came too late).
            self.fail_request(now, req, ExchangeError::Block);
            return true;
        }
        r.upload = None;
        false
    }

    /// Holds request `id`'s next block until `at`. The pause takes the slot of the deadline
    /// timer: nothing is in flight meanwhile, and whatever ends the request cancels it.
    fn pace(&mut self, id: RequestId, at: Instant) {
        self.set_deadline(id, None);
        let Some(r) = self.requests.get_mut(&id) else {
            return;
        };
        let t = self.timers.next_id();
        self.timers.arm(at, Timer::BlockPace { req: id, id: t });
        r.deadline = t;
        r.deadline_due = at;
    }

    /// The pause between two blocks of an upload (`block_interval`) is over.
    pub(in crate::coap::endpoint) fn on_block_pace(
        &mut self,
        now: Instant,
        req: RequestId,
        id: u64,
    ) {
        let Some(r) = self.requests.get_mut(&req) else {
            return;
        };
        if r.deadline == id {
            r.deadline = 0;
            self.transmit_current(now, req);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_past_two_to_the_twenty_blocks_cannot_be_numbered() {
        assert!(numbered(16 << 20, 0));
        assert!(!numbered((16 << 20) + 1, 0));
        assert!(numbered(1 << 30, 6));
        assert!(!numbered((1 << 30) + 1, 6));
    }
}
