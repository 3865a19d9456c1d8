//! The server side of one DTLS 1.2 handshake, after the cookie exchange (RFC 6347 §4.2;
//! RFC 5246 §7.4; RFC 4279 PSK; RFC 8422 ECDHE-ECDSA; RFC 7250 raw public keys; RFC 7627
//! Extended Master Secret; RFC 5746 renegotiation_info; RFC 9146 Connection ID negotiation).
//!
//! Full handshake: ClientHello → ServerHello, \[Certificate, ServerKeyExchange,
//! CertificateRequest\], ServerHelloDone → \[Certificate\], ClientKeyExchange,
//! \[CertificateVerify\], ChangeCipherSpec, Finished → ChangeCipherSpec, Finished.
//! Abbreviated (resumption by session id, RFC 5246 §7.3): ClientHello → ServerHello,
//! ChangeCipherSpec, Finished → ChangeCipherSpec, Finished.
//!
//! Each point of the handshake is a state type holding what it needs (see [`states`]);
//! handling a message consumes the state and returns the next. This module holds what
//! every state shares and the record-level handling; [`hello`] answers the ClientHello.
//!
//! Client authentication is always required for ECDHE-ECDSA (the LwM2M profile, RFC 7925
//! §4.4): the server sends CertificateRequest and refuses an empty Certificate.
mod hello;
mod states;

use crate::codec::{DecodeError, EncodeError};
use crate::config::{ServerConfig, ServerCredentials};
use crate::crypto;
use crate::error::{Failure, HandshakeError};
use crate::flight::{Flight, Item, Writer};
use crate::handshake::reassembly::{Inserted, Reassembler};
use crate::handshake::{full_message, parse_fragments, HandshakeType};
use crate::record::Cid;
use crate::record::{HandshakeReader, Inbound, Record};
use crate::session::Session;
use crate::suite::CipherSuite;
use states::Expect;
use std::sync::Arc;
use std::time::Instant;

/// Length of the session ids this server issues: the session's handle and 8 random bytes,
/// so resumption finds the session without a separate cache.
pub const SESSION_ID_LEN: usize = 16;

/// Largest handshake message accepted from a client (a certificate chain fits easily).
const MAX_MESSAGE: usize = 16 * 1024;
/// Bytes of out-of-order handshake data buffered per handshake.
const MAX_BUFFERED: usize = 32 * 1024;

/// What a resumable session leaves behind (RFC 5246 §7.4.1.2).
#[derive(Clone)]
pub struct Resumable {
    pub master: [u8; 48],
    pub suite: CipherSuite,
    pub extended_master_secret: bool,
    pub principal: Arc<str>,
}

impl std::fmt::Debug for Resumable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resumable")
            .field("suite", &self.suite)
            .field("principal", &self.principal)
            .finish_non_exhaustive()
    }
}

/// What handling a record led to.
#[derive(Debug)]
pub(crate) enum Step {
    /// Nothing to do beyond what was queued.
    Continue(ServerHandshake),
    /// The peer repeated its previous flight: ours was lost, send it again.
    Retransmit(ServerHandshake),
    /// The handshake is over; `seq0` is the next epoch-0 record number.
    Done {
        established: Box<Established>,
        seq0: u64,
    },
    /// The handshake failed; a fatal alert, if any, goes in an epoch-0 record numbered
    /// `seq0` (before the client's ChangeCipherSpec it reads epoch 0, and an alert it can
    /// read beats one sealed under keys it may not have).
    Failed { failure: Failure, seq0: u64 },
}

/// A finished handshake, for the endpoint to turn into a session.
#[derive(Debug)]
pub(crate) struct Established {
    pub session: Session,
    pub session_id: [u8; SESSION_ID_LEN],
    pub resumable: Resumable,
    pub resumed: bool,
    /// Our final Finished, kept to answer a client that did not get it.
    pub final_verify: [u8; 12],
    /// Its handshake message_seq.
    pub final_seq: u16,
}

/// State every step of the handshake shares.
pub(super) struct Common {
    pub started: Instant,
    pub client_random: [u8; 32],
    pub server_random: [u8; 32],
    pub session_id: [u8; SESSION_ID_LEN],
    /// The PSK identity or principal presented, for the failure report.
    pub identity: Option<String>,
    /// The handshake messages so far, as hashed for Finished and Extended Master Secret.
    pub transcript: Vec<u8>,
    pub reassembler: Reassembler,
    /// The message_seq of our next handshake message.
    pub out_seq: u16,
    pub writer: Writer,
    pub flight: Flight,
    pub reader: HandshakeReader,
    /// The CID we issued, which the client's records carry.
    pub own_cid: Option<Cid>,
    /// The CID the client asked for, which our records carry.
    pub peer_cid: Option<Cid>,
}

impl Common {
    /// Numbers a message of ours, adds it to the transcript, and makes it a flight item.
    /// `body` is the message's encoding, which fails only for a value too large for its
    /// field (a configured certificate chain over 2^24 bytes, say): the handshake then ends
    /// with `internal_error` rather than send a message the client would misread.
    fn message(
        &mut self,
        epoch: u16,
        msg_type: HandshakeType,
        body: Result<Vec<u8>, EncodeError>,
    ) -> Result<Item, HandshakeError> {
        let body = body.map_err(unencodable)?;
        let seq = self.out_seq;
        let full = full_message(msg_type, seq, &body).map_err(unencodable)?;
        self.out_seq = self.out_seq.wrapping_add(1);
        self.transcript.extend_from_slice(&full);
        Ok(Item::Handshake {
            epoch,
            msg_type,
            seq,
            body,
        })
    }

    /// The session keys from `master`; ours protect our records from here on.
    fn derive_keys(&mut self, suite: CipherSuite, master: &[u8; 48]) -> crypto::KeyBlock {
        let kb = crypto::key_block(master, &self.client_random, &self.server_random, suite);
        self.writer.keys = Some(kb.server_write);
        kb
    }
}

/// One handshake in progress. `common` is boxed because the state moves by value at every
/// transition and in and out of the handshake table: moving a pointer instead of its ~480
/// bytes is measurable in the handshake rate.
pub(crate) struct ServerHandshake {
    common: Box<Common>,
    expect: Expect,
}

impl std::fmt::Debug for ServerHandshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandshake")
            .field("expect", &self.expect.name())
            .finish_non_exhaustive()
    }
}

/// Everything the handshake borrows from its endpoint for one call.
pub(crate) struct Ctx<'a, R: rand::Rng> {
    pub config: &'a ServerConfig,
    pub creds: &'a dyn ServerCredentials,
    pub rng: &'a mut R,
    pub now: Instant,
}

impl<R: rand::Rng> Ctx<'_, R> {
    /// The time of day for certificate checks, from the configured wall clock.
    fn unix_time(&self) -> Option<u64> {
        self.config.wall_clock.map(|c| c.unix_secs(self.now))
    }
}

/// What a message did to the state.
enum Next {
    Wait(Expect),
    Done(Box<Established>),
}

impl ServerHandshake {
    pub fn started(&self) -> Instant {
        self.common.started
    }

    pub fn client_random(&self) -> [u8; 32] {
        self.common.client_random
    }

    pub fn retransmit_at(&self) -> Option<Instant> {
        self.common.flight.retransmit_at
    }

    /// The record's handshake, alert or change-cipher-spec content. Records of other epochs
    /// or types are ignored (RFC 6347 §4.1.2.7: invalid records are dropped silently).
    pub fn handle_record<R: rand::Rng>(
        self,
        ctx: &mut Ctx<'_, R>,
        record: &Record<'_>,
        out: &mut Vec<Vec<u8>>,
    ) -> Step {
        let ServerHandshake { mut common, expect } = self;
        match step(&mut common, expect, ctx, record, out) {
            Ok((Next::Wait(expect), retransmit)) => {
                let hs = ServerHandshake { common, expect };
                if retransmit {
                    Step::Retransmit(hs)
                } else {
                    Step::Continue(hs)
                }
            }
            Ok((Next::Done(established), _)) => Step::Done {
                established,
                seq0: common.writer.seq[0],
            },
            Err(error) => Step::Failed {
                failure: Failure {
                    error,
                    identity: common.identity,
                },
                seq0: common.writer.seq[0],
            },
        }
    }

    /// Sends the last flight again and backs the timer off. Fails when the flight can no
    /// longer be encoded (the epoch-0 sequence numbers ran out), which ends the handshake.
    pub fn retransmit<R: rand::Rng>(
        &mut self,
        ctx: &mut Ctx<'_, R>,
        out: &mut Vec<Vec<u8>>,
    ) -> Result<(), Failure> {
        let c = &mut self.common;
        c.writer
            .encode(&c.flight.items, ctx.config.max_datagram, ctx.rng, out)
            .map_err(|e| Failure {
                error: unencodable(e),
                identity: c.identity.clone(),
            })?;
        c.flight.backoff(ctx.now, &ctx.config.timers);
        Ok(())
    }

    /// The next epoch-0 record number, for an alert after a failed retransmission.
    pub fn next_plain_seq(&self) -> u64 {
        self.common.writer.seq[0]
    }
}

/// One record: the message(s) it completes, and whether it repeated an old flight.
fn step<R: rand::Rng>(
    c: &mut Common,
    expect: Expect,
    ctx: &mut Ctx<'_, R>,
    record: &Record<'_>,
    out: &mut Vec<Vec<u8>>,
) -> Result<(Next, bool), HandshakeError> {
    match c.reader.read(record) {
        Inbound::Handshake { epoch, payload } => {
            handle_handshake(c, expect, ctx, &payload, epoch, out)
        }
        Inbound::ChangeCipherSpec => Ok((Next::Wait(expect.change_cipher_spec(c)), false)),
        Inbound::Alert(desc) => Err(HandshakeError::ClientAlert(desc)),
        // The Finished does not decrypt: the client derived other keys, which means another
        // PSK (or a forged record). Failing now beats letting the client retransmit into
        // silence for a minute. Not so in a resumed handshake: its keys come from the master
        // secret both sides already share, so such a record is damaged or forged, and it is
        // dropped like any invalid record (RFC 6347 §4.1.2.7) while retransmission
        // recovers. Failing would also strand the client, which finishes an abbreviated
        // handshake first and already counts itself connected.
        Inbound::Undecryptable if expect.is_full_handshake_finished() => {
            Err(HandshakeError::FinishedUndecryptable)
        }
        Inbound::Undecryptable | Inbound::Dropped => Ok((Next::Wait(expect), false)),
    }
}

fn handle_handshake<R: rand::Rng>(
    c: &mut Common,
    mut expect: Expect,
    ctx: &mut Ctx<'_, R>,
    payload: &[u8],
    epoch: u16,
    out: &mut Vec<Vec<u8>>,
) -> Result<(Next, bool), HandshakeError> {
    let mut old = false;
    for frag in parse_fragments(payload) {
        let (header, data) = frag.map_err(|e| malformed("handshake fragment", e))?;
        // Only the Finished may travel in epoch 1, and only once we expect it.
        if epoch == 1 && header.msg_type != HandshakeType::Finished as u8 {
            return Err(HandshakeError::UnexpectedEncryptedMessage);
        }
        if epoch == 0 && header.msg_type == HandshakeType::Finished as u8 {
            return Err(HandshakeError::UnencryptedFinished);
        }
        match c.reassembler.insert(&header, data) {
            Ok(Inserted::Old) => old = true,
            Ok(_) => {}
            // Epoch-0 fragments are unauthenticated: a spoofed one that contradicts the real
            // message or overflows the buffer is dropped, not allowed to abort.
            Err(_) => {}
        }
    }
    while let Some((msg_type, seq, body)) = c.reassembler.pop() {
        match expect.handle(c, ctx, msg_type, seq, body, out)? {
            Next::Wait(next) => expect = next,
            done @ Next::Done(_) => return Ok((done, old)),
        }
    }
    Ok((Next::Wait(expect), old))
}

/// The failure for a message or flight of ours that cannot be encoded; the field is
/// logged, since the error cannot say it.
fn unencodable(e: EncodeError) -> HandshakeError {
    tracing::warn!(error = %e, "DTLS handshake message cannot be encoded");
    HandshakeError::Unencodable
}

/// The failure for a client message that does not parse; the field, when the error names
/// one, is logged at debug level (the peer chose it, so it is not worth more).
fn malformed(what: &'static str, e: DecodeError) -> HandshakeError {
    tracing::debug!(error = %e, what, "malformed DTLS handshake message");
    HandshakeError::Malformed { what }
}
