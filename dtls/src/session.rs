//! An established session: exactly what the record layer needs once the handshake is over
//! (RFC 6347 §4.1; RFC 9146 for Connection IDs), and nothing else — keys, epoch, sequence
//! numbers, the replay window, the Connection IDs and who the peer is. About 250 bytes, so a
//! server holds a large fleet's sessions in little memory, and [`Session::save`] turns one into
//! a few hundred bytes that survive a restart.
//!
//! Saved bytes come back from a store that may have been damaged or written by another
//! version, so [`Session::restore`] checks every field against the range a live session can
//! have (a 48-bit sequence number, epoch 1 or later, Connection IDs of at most
//! [`MAX_CID_LEN`](crate::config::MAX_CID_LEN) bytes) and refuses the rest with a
//! [`RestoreError`] naming the field.
use crate::codec::{wide, EncodeError};
use crate::crypto::DirectionKeys;
use crate::record::{Cid, ContentType, EpochReader, Record, RecordError, Refused, DTLS_1_2};
use crate::replay::ReplayWindow;
use crate::suite::CipherSuite;
use std::sync::Arc;

/// Highest record sequence number (48 bits); a session that reaches it must end, since a
/// sequence number must never repeat under one key.
const MAX_SEQ: u64 = crate::record::MAX_SEQ;

/// After a restore, the write sequence number jumps this far ahead of the saved one: the
/// session may have sent records after it was last saved (periodic saves; a crash), and
/// reusing a sequence number would reuse an AEAD nonce. 2^24 records is far more than any
/// device exchanges between two saves, and the peer's replay window accepts any jump forward.
pub const RESTORE_SEQ_GAP: u64 = 1 << 24;

/// Why a session cannot send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("record sequence numbers exhausted")]
    SeqExhausted,
    #[error("unknown connection")]
    Unknown,
    #[error("payload too large for one record")]
    TooLarge,
    /// The record could not be written (a field too large for the record header).
    #[error("record not written: {0}")]
    Encode(#[from] EncodeError),
}

/// The record-layer state of one established DTLS session.
#[derive(Clone)]
pub struct Session {
    pub(crate) suite: CipherSuite,
    pub(crate) read: DirectionKeys,
    pub(crate) write: DirectionKeys,
    pub(crate) epoch: u16,
    pub(crate) write_seq: u64,
    pub(crate) replay: ReplayWindow,
    /// The CID put in records sent (the peer asked for it).
    pub(crate) send_cid: Option<Cid>,
    /// The CID records from the peer carry (this side issued it).
    pub(crate) recv_cid: Option<Cid>,
    pub(crate) principal: Arc<str>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("suite", &self.suite)
            .field("principal", &self.principal)
            .field("epoch", &self.epoch)
            .field("write_seq", &self.write_seq)
            .field("send_cid", &self.send_cid)
            .field("recv_cid", &self.recv_cid)
            .finish_non_exhaustive()
    }
}

impl Session {
    pub fn suite(&self) -> CipherSuite {
        self.suite
    }

    /// Who the peer is (for a server: the principal its credential maps to).
    pub fn principal(&self) -> &Arc<str> {
        &self.principal
    }

    /// The close_notify alert (RFC 5246 §7.2.1) as one protected record, or `None` if the
    /// session can send no more records: closing then needs no word to the peer.
    pub fn close_notify(&mut self, rng: &mut impl rand::Rng) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        self.seal(
            ContentType::Alert,
            &crate::alert::Alert::close_notify().encode(),
            rng,
            &mut out,
        )
        .ok()?;
        Some(out)
    }

    /// Appends one protected record carrying `payload` to `out`.
    pub fn seal(
        &mut self,
        content_type: ContentType,
        payload: &[u8],
        rng: &mut impl rand::Rng,
        out: &mut Vec<u8>,
    ) -> Result<(), SessionError> {
        if self.write_seq >= MAX_SEQ {
            return Err(SessionError::SeqExhausted);
        }
        if payload.len() > 1 << 14 {
            return Err(SessionError::TooLarge);
        }
        let cid = self
            .send_cid
            .as_ref()
            .map(Cid::as_bytes)
            .filter(|c| !c.is_empty());
        self.write.seal(
            content_type,
            DTLS_1_2,
            self.epoch,
            self.write_seq,
            cid,
            payload,
            rng,
            out,
        )?;
        // Below MAX_SEQ (checked above), so this cannot overflow.
        self.write_seq += 1;
        Ok(())
    }

    /// Authenticates and decrypts a record of this session: the content type and plaintext.
    /// Replayed, stale-epoch and forged records are errors and leave the state unchanged.
    pub fn open(&mut self, record: &Record<'_>) -> Result<(u8, Vec<u8>), RecordError> {
        EpochReader {
            keys: &self.read,
            epoch: self.epoch,
            replay: &mut self.replay,
            cid: self.recv_cid.as_ref(),
        }
        .open(record)
        .map_err(|refused| match refused {
            Refused::NotOurs => RecordError::BadRecordMac,
            Refused::Unauthentic(e) => e,
        })
    }

    /// The session as bytes, for saving across a restart. Contains the session keys: store
    /// it as a secret.
    pub fn save(&self, e: &mut minicbor::Encoder<&mut Vec<u8>>) -> Result<(), SaveError> {
        e.array(11)?
            .u16(self.suite.id())?
            .bytes(&keys_bytes(&self.read))?
            .bytes(&keys_bytes(&self.write))?
            .u16(self.epoch)?
            .u64(self.write_seq)?
            .u64(self.replay.top)?
            .u64(self.replay.bitmap)?;
        match &self.send_cid {
            Some(c) => e.bytes(c.as_bytes())?,
            None => e.null()?,
        };
        match &self.recv_cid {
            Some(c) => e.bytes(c.as_bytes())?,
            None => e.null()?,
        };
        e.str(&self.principal)?;
        e.u8(1)?; // format version
        Ok(())
    }

    /// The inverse of [`save`](Self::save); the write sequence jumps [`RESTORE_SEQ_GAP`] ahead.
    ///
    /// Accepted ranges: epoch 1..=65535 (epoch 0 has no keys), write sequence number and
    /// replay window top 0..=2^48-1, keys exactly 52 bytes, Connection IDs 0..=16 bytes,
    /// principal 0..=[`MAX_PRINCIPAL_LEN`] bytes, format version 1.
    pub fn restore(d: &mut minicbor::Decoder<'_>) -> Result<Self, RestoreError> {
        if d.array()? != Some(11) {
            return Err(RestoreError::Format);
        }
        let suite = CipherSuite::from_id(d.u16()?).ok_or(RestoreError::Format)?;
        let cipher = suite.record_cipher();
        let read = keys_from(cipher, d.bytes()?)?;
        let write = keys_from(cipher, d.bytes()?)?;
        let epoch = d.u16()?;
        RestoreError::check("epoch", epoch, 1, u16::MAX.into())?;
        let write_seq = d.u64()?;
        RestoreError::check("write_seq", write_seq, 0, MAX_SEQ)?;
        // Saturates at MAX_SEQ: such a session can restore but not send (SeqExhausted).
        let write_seq = write_seq.saturating_add(RESTORE_SEQ_GAP).min(MAX_SEQ);
        let replay = ReplayWindow {
            top: d.u64()?,
            bitmap: d.u64()?,
        };
        RestoreError::check("replay window top", replay.top, 0, MAX_SEQ)?;
        let send_cid = opt_cid(d, "send_cid length")?;
        let recv_cid = opt_cid(d, "recv_cid length")?;
        let principal = d.str()?;
        RestoreError::check(
            "principal length",
            wide(principal.len()),
            0,
            MAX_PRINCIPAL_LEN,
        )?;
        let principal: Arc<str> = principal.into();
        if d.u8()? != 1 {
            return Err(RestoreError::Format);
        }
        Ok(Self {
            suite,
            read,
            write,
            epoch,
            write_seq,
            replay,
            send_cid,
            recv_cid,
            principal,
        })
    }
}

/// Longest principal a restored session may name. Principals are endpoint names or
/// identities, far shorter; the bound keeps a damaged record from pinning megabytes per
/// session.
pub const MAX_PRINCIPAL_LEN: u64 = 4096;

fn opt_cid(
    d: &mut minicbor::Decoder<'_>,
    field: &'static str,
) -> Result<Option<Cid>, RestoreError> {
    if d.datatype()? == minicbor::data::Type::Null {
        d.skip()?;
        return Ok(None);
    }
    let bytes = d.bytes()?;
    RestoreError::check(
        field,
        wide(bytes.len()),
        0,
        wide(crate::config::MAX_CID_LEN),
    )?;
    Cid::new(bytes).map(Some).ok_or(RestoreError::Format)
}

fn keys_bytes(k: &DirectionKeys) -> Vec<u8> {
    let mut v = Vec::with_capacity(52);
    v.extend_from_slice(&k.enc_key);
    v.extend_from_slice(&k.mac_key);
    v.extend_from_slice(&k.fixed_iv);
    v
}

fn keys_from(cipher: crate::suite::RecordCipher, b: &[u8]) -> Result<DirectionKeys, RestoreError> {
    RestoreError::check("keys length", wide(b.len()), 52, 52)?;
    let mut k = DirectionKeys {
        cipher,
        enc_key: [0; 16],
        mac_key: [0; 32],
        fixed_iv: [0; 4],
    };
    k.enc_key
        .copy_from_slice(b.get(..16).ok_or(RestoreError::Format)?);
    k.mac_key
        .copy_from_slice(b.get(16..48).ok_or(RestoreError::Format)?);
    k.fixed_iv
        .copy_from_slice(b.get(48..52).ok_or(RestoreError::Format)?);
    Ok(k)
}

/// A session could not be written.
#[derive(Debug, thiserror::Error)]
#[error("saving a session: {0}")]
pub struct SaveError(#[from] minicbor::encode::Error<std::convert::Infallible>);

/// Saved bytes are not a session this version understands.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("saved session unreadable: {0}")]
    Decode(#[from] minicbor::decode::Error),
    #[error("saved session has an unknown format")]
    Format,
    /// A field holds a value no live session can have.
    #[error("saved session's {field} is {value}, outside {min}..={max}")]
    OutOfRange {
        field: &'static str,
        value: u64,
        min: u64,
        max: u64,
    },
    /// Bytes follow the session.
    #[error("saved session is followed by {0} unread bytes")]
    Trailing(usize),
    /// The session would take a handle or Connection ID another session already has.
    #[error("saved session's {0} is already in use")]
    InUse(&'static str),
}

impl RestoreError {
    /// `Ok` if `min <= value <= max`, else [`RestoreError::OutOfRange`] naming `field`: the
    /// same check as the wire's [`DecodeError::check`](crate::codec::DecodeError::check),
    /// reported as a restore error.
    pub fn check(
        field: &'static str,
        value: impl Into<u64>,
        min: u64,
        max: u64,
    ) -> Result<(), Self> {
        crate::codec::DecodeError::check(field, value, min, max).map_err(|e| match e {
            crate::codec::DecodeError::OutOfRange {
                field,
                value,
                min,
                max,
            } => Self::OutOfRange {
                field,
                value,
                min,
                max,
            },
            crate::codec::DecodeError::Malformed => Self::Format,
        })
    }
}
