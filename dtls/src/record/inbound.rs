//! Receiving records, the one path both roles use: the epoch check, the anti-replay window
//! (RFC 6347 §4.1.2.6), the Connection ID check (RFC 9146 §6), decryption, and what is
//! dropped silently rather than answered (RFC 6347 §4.1.2.7). Established sessions open
//! records through [`EpochReader`]; handshakes, which also see unprotected epoch-0 records,
//! through [`HandshakeReader`].
use super::Cid;
use super::{ContentType, Record, RecordError};
use crate::alert::{Alert, AlertDescription};
use crate::crypto::DirectionKeys;
use crate::replay::ReplayWindow;
use std::borrow::Cow;

/// Why [`EpochReader::open`] refused a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Another epoch, a sequence number already seen or behind the window, or another
    /// Connection ID: not a record for this state, whatever its contents.
    NotOurs,
    /// Ours by its header, but it does not authenticate or its content is invalid.
    Unauthentic(RecordError),
}

/// The read half of one epoch: its keys, its replay window, and the Connection ID its
/// records carry (the one this side issued), borrowed from whoever owns them.
pub(crate) struct EpochReader<'a> {
    pub keys: &'a DirectionKeys,
    pub epoch: u16,
    pub replay: &'a mut ReplayWindow,
    pub cid: Option<&'a Cid>,
}

impl EpochReader<'_> {
    /// Authenticates and decrypts `record`: its real content type and plaintext. The replay
    /// window moves only for a record that authenticated, so forged records cannot make
    /// genuine ones look stale; replays are refused before any cryptography.
    pub fn open(&mut self, record: &Record<'_>) -> Result<(u8, Vec<u8>), Refused> {
        if record.epoch != self.epoch || !self.replay.is_fresh(record.seq) {
            return Err(Refused::NotOurs);
        }
        if let Some(cid) = self.cid.filter(|c| !c.is_empty()) {
            // A record without our CID (or with another) belongs to some other session.
            if record.cid != cid.as_bytes() {
                return Err(Refused::NotOurs);
            }
        }
        let opened = self.keys.open(record).map_err(Refused::Unauthentic)?;
        self.replay.mark(record.seq);
        Ok(opened)
    }
}

/// What a record received during a handshake carries.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Inbound<'a> {
    /// Handshake fragments, from the record's epoch.
    Handshake { epoch: u16, payload: Cow<'a, [u8]> },
    /// A well-formed ChangeCipherSpec.
    ChangeCipherSpec,
    /// The peer's alert: the handshake is over.
    Alert(AlertDescription),
    /// An epoch-1 record under the peer's keys that does not authenticate. Usually dropped;
    /// a server expecting the client's Finished in a full handshake takes it as a wrong key.
    Undecryptable,
    /// Invalid, stale or not for this handshake: dropped silently (RFC 6347 §4.1.2.7).
    Dropped,
}

/// The read side of a handshake: epoch 0 in the clear, then epoch 1 once the peer's
/// ChangeCipherSpec arrived and [`activate`](Self::activate) gave the keys.
#[derive(Debug, Clone, Default)]
pub(crate) struct HandshakeReader {
    keys: Option<DirectionKeys>,
    replay: ReplayWindow,
    cid: Option<Cid>,
}

impl HandshakeReader {
    /// Starts reading epoch 1 under `keys`, whose records carry `cid`.
    pub fn activate(&mut self, keys: DirectionKeys, cid: Option<Cid>) {
        self.keys = Some(keys);
        self.cid = cid;
    }

    /// The epoch-1 replay window, which the established session continues.
    pub fn replay(&self) -> ReplayWindow {
        self.replay
    }

    /// Classifies one record. A `tls12_cid` record in epoch 0 cannot be genuine (CIDs apply
    /// from epoch 1, RFC 9146 §3); epoch-1 records before [`activate`](Self::activate) are
    /// from a future we cannot read yet and the peer's retransmission brings them again.
    pub fn read<'a>(&mut self, record: &Record<'a>) -> Inbound<'a> {
        let (content_type, payload): (u8, Cow<'a, [u8]>) = if record.epoch == 0 {
            if record.content_type == ContentType::Tls12Cid as u8 {
                return Inbound::Dropped;
            }
            (record.content_type, Cow::Borrowed(record.fragment))
        } else {
            let Some(keys) = &self.keys else {
                return Inbound::Dropped;
            };
            let mut reader = EpochReader {
                keys,
                epoch: 1,
                replay: &mut self.replay,
                cid: self.cid.as_ref(),
            };
            match reader.open(record) {
                Ok((ct, plaintext)) => (ct, Cow::Owned(plaintext)),
                Err(Refused::NotOurs) => return Inbound::Dropped,
                Err(Refused::Unauthentic(_)) => return Inbound::Undecryptable,
            }
        };
        match ContentType::from_u8(content_type) {
            Some(ContentType::Handshake) => Inbound::Handshake {
                epoch: record.epoch,
                payload,
            },
            // RFC 5246 §7.1: the message is the single byte 1. Anything else is an invalid
            // (and, in epoch 0, unauthenticated) record; retransmission brings a good one.
            Some(ContentType::ChangeCipherSpec) if *payload == [1] => Inbound::ChangeCipherSpec,
            // A record that is not a well-formed alert is invalid and dropped, not taken as
            // the peer giving up.
            Some(ContentType::Alert) => match Alert::decode(&payload) {
                Ok(alert) => Inbound::Alert(alert.description),
                Err(_) => Inbound::Dropped,
            },
            _ => Inbound::Dropped,
        }
    }
}
