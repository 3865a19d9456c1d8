//! The established sessions: turning a finished handshake into one, records for it
//! (RFC 6347 §4.1; migration by Connection ID, RFC 9146 §6), our final flight resent on
//! demand (RFC 6347 §4.2.4), eviction when the table is full, and saving and restoring
//! sessions across a restart.
use super::handshake::Established;
use super::{CloseReason, ConnId, Entry, FinalFlight, Server, ServerEvent, MAX_CONN_ID};
use crate::alert::{Alert, AlertDescription, AlertLevel};
use crate::handshake::{full_message, HandshakeType};
use crate::record::{write_plaintext, ContentType, Record};
use crate::session::Session;
use std::net::SocketAddr;
use std::time::Instant;

impl Server {
    pub(super) fn establish(&mut self, peer: SocketAddr, est: Established, seq0: u64) {
        let id = u64::from_be_bytes(est.session_id[..8].try_into().unwrap_or([0; 8]));
        let mut check = [0u8; 8];
        check.copy_from_slice(&est.session_id[8..]);
        // A session already at this address belongs to the device's previous life.
        if let Some(old) = self.by_addr.get(&peer).copied() {
            if old != id {
                self.remove_session(old, CloseReason::Replaced);
            }
        }
        match self.sessions.remove(&id) {
            Some(old) => {
                // Resumption keeps the handle; drop the old address and CID mappings.
                if self.by_addr.get(&old.peer) == Some(&id) {
                    self.by_addr.remove(&old.peer);
                }
                if let Some(c) = old.session.recv_cid {
                    self.by_cid.remove(&c);
                }
            }
            None => {
                self.make_room();
                self.clock.push_back(id);
            }
        }
        if let Some(c) = est.session.recv_cid {
            self.by_cid.insert(c, id);
        }
        self.by_addr.insert(peer, id);
        let principal = est.session.principal.clone();
        let suite = est.session.suite;
        self.sessions.insert(
            id,
            Entry {
                session: est.session,
                peer,
                check,
                master: est.resumable.master,
                ems: est.resumable.extended_master_secret,
                // A new session sits at the back of the CLOCK queue: the hand reaches it
                // last, so it needs no reference bit to survive its first round.
                referenced: false,
                final_flight: (!est.resumed).then(|| {
                    Box::new(FinalFlight {
                        verify: est.final_verify,
                        seq0,
                        message_seq: est.final_seq,
                    })
                }),
            },
        );
        self.stats.handshakes_completed += 1;
        if est.resumed {
            self.stats.resumptions += 1;
        }
        self.events.push_back(ServerEvent::Established {
            conn: ConnId(id),
            peer,
            principal,
            suite,
            resumed: est.resumed,
        });
    }

    /// Evicts the least recently active session if the table is full.
    pub(super) fn make_room(&mut self) {
        let mut budget = self.clock.len().saturating_mul(2).saturating_add(1);
        while self.sessions.len() >= self.config.max_sessions.max(1) && budget > 0 {
            budget -= 1;
            let Some(id) = self.clock.pop_front() else {
                return;
            };
            match self.sessions.get_mut(&id) {
                Some(e) if e.referenced => {
                    e.referenced = false;
                    self.clock.push_back(id);
                }
                Some(_) => {
                    self.stats.evictions += 1;
                    self.remove_session(id, CloseReason::Evicted);
                }
                None => {}
            }
        }
    }

    pub(super) fn session_record(
        &mut self,
        _now: Instant,
        id: u64,
        from: SocketAddr,
        record: &Record<'_>,
    ) {
        let Some(entry) = self.sessions.get_mut(&id) else {
            self.stats.records_dropped += 1;
            return;
        };
        if record.epoch == 0 {
            // The client repeating its last flight: our Finished was lost.
            if record.content_type == ContentType::Handshake as u8 && entry.final_flight.is_some() {
                self.resend_final_flight(id);
                return;
            }
            self.stats.records_dropped += 1;
            return;
        }
        let newest = record.seq > entry.session.replay.top || entry.session.replay.bitmap == 0;
        let Ok((ct, data)) = entry.session.open(record) else {
            self.stats.records_dropped += 1;
            return;
        };
        entry.referenced = true;
        if from != entry.peer && newest {
            let old = std::mem::replace(&mut entry.peer, from);
            if self.by_addr.get(&old) == Some(&id) {
                self.by_addr.remove(&old);
            }
            if let Some(other) = self.by_addr.insert(from, id) {
                if other != id {
                    self.remove_session(other, CloseReason::Replaced);
                }
            }
            self.stats.migrations += 1;
            self.events.push_back(ServerEvent::Migrated {
                conn: ConnId(id),
                from: old,
                to: from,
            });
        }
        let Some(entry) = self.sessions.get_mut(&id) else {
            return;
        };
        match ContentType::from_u8(ct) {
            Some(ContentType::ApplicationData) => {
                entry.final_flight = None;
                self.events.push_back(ServerEvent::Data {
                    conn: ConnId(id),
                    data,
                });
            }
            Some(ContentType::Alert) => {
                let reason = match Alert::decode(&data) {
                    Ok(a) if a.description == AlertDescription::CloseNotify => {
                        CloseReason::PeerClosed
                    }
                    Ok(a) if a.level == AlertLevel::Fatal => CloseReason::PeerAlert(a.description),
                    Ok(_) => return,
                    Err(_) => CloseReason::PeerAlert(AlertDescription::DecodeError),
                };
                self.remove_session(id, reason);
            }
            Some(ContentType::Handshake) => {
                // An encrypted handshake message after the handshake: the client's Finished
                // again (ours was lost), or a renegotiation we do not do.
                self.resend_final_flight(id);
            }
            _ => {}
        }
    }

    /// Seals our ChangeCipherSpec and Finished again for a client that did not get them
    /// (RFC 6347 §4.2.4: the last flight is answered by retransmission, not by a timer).
    pub(super) fn resend_final_flight(&mut self, id: u64) {
        let Some(entry) = self.sessions.get_mut(&id) else {
            return;
        };
        let Some(ff) = entry.final_flight.as_mut() else {
            return;
        };
        let mut out = Vec::new();
        // Each resend takes an epoch-0 number; once they run out (2^48, or a client that
        // started near the top) the CCS cannot be written and nothing is resent.
        if write_plaintext(
            ContentType::ChangeCipherSpec,
            crate::record::DTLS_1_2,
            0,
            ff.seq0,
            &[1],
            &mut out,
        )
        .is_err()
        {
            return;
        }
        ff.seq0 = ff.seq0.saturating_add(1);
        // A 12-byte body always fits.
        let Ok(fin) = full_message(HandshakeType::Finished, ff.message_seq, &ff.verify) else {
            return;
        };
        if entry
            .session
            .seal(ContentType::Handshake, &fin, &mut self.rng, &mut out)
            .is_ok()
        {
            self.transmits.push_back((entry.peer, out));
        }
    }

    pub(super) fn remove_session(&mut self, id: u64, reason: CloseReason) {
        let Some(entry) = self.sessions.remove(&id) else {
            return;
        };
        if self.by_addr.get(&entry.peer) == Some(&id) {
            self.by_addr.remove(&entry.peer);
        }
        if let Some(c) = entry.session.recv_cid {
            if self.by_cid.get(&c) == Some(&id) {
                self.by_cid.remove(&c);
            }
        }
        // The CLOCK queue entry goes when the hand reaches it; bound the queue meanwhile.
        if self.clock.len() > 2 * self.sessions.len() + 1024 {
            let sessions = &self.sessions;
            self.clock.retain(|id| sessions.contains_key(id));
        }
        tracing::debug!(peer = %entry.peer, principal = %entry.session.principal, ?reason, "DTLS session closed");
        self.events.push_back(ServerEvent::Closed {
            conn: ConnId(id),
            principal: entry.session.principal,
            reason,
        });
    }

    /// Every established session as bytes (containing keys: store them as secrets).
    pub fn save_sessions(&self) -> Vec<(ConnId, Vec<u8>)> {
        self.conns()
            .into_iter()
            .filter_map(|c| self.save_session(c).map(|b| (c, b)))
            .collect()
    }

    /// One session as bytes, for [`restore_session`](Self::restore_session) in a later run.
    pub fn save_session(&self, conn: ConnId) -> Option<Vec<u8>> {
        let e = self.sessions.get(&conn.0)?;
        let mut buf = Vec::with_capacity(320);
        let mut enc = minicbor::Encoder::new(&mut buf);
        let written = (|| -> Result<(), crate::session::SaveError> {
            enc.array(6)?
                .u64(conn.0)?
                .str(&e.peer.to_string())?
                .bytes(&e.check)?
                .bytes(&e.master)?
                .bool(e.ems)?;
            e.session.save(&mut enc)
        })();
        written.ok().map(|()| buf)
    }

    /// Brings back a session saved by [`save_sessions`](Self::save_sessions).
    ///
    /// The bytes may come from a damaged store, so besides [`Session::restore`]'s checks the
    /// handle must lie in 1..=[`MAX_CONN_ID`], nothing may follow the session, and neither
    /// the handle nor the Connection ID may belong to a session already here. A Connection
    /// ID must also have this server's `cid_len`: records are split by that length, so a
    /// session with another could never be found by its CID (the device does a new
    /// handshake instead); with [`ServerConfig::cid_node`](crate::ServerConfig::cid_node), it
    /// must start with that byte.
    pub fn restore_session(
        &mut self,
        bytes: &[u8],
    ) -> Result<ConnId, crate::session::RestoreError> {
        use crate::session::RestoreError;
        let mut d = minicbor::Decoder::new(bytes);
        if d.array()? != Some(6) {
            return Err(RestoreError::Format);
        }
        let id = d.u64()?;
        RestoreError::check("connection handle", id, 1, MAX_CONN_ID)?;
        let peer: SocketAddr = d.str()?.parse().map_err(|_| RestoreError::Format)?;
        let check: [u8; 8] = d.bytes()?.try_into().map_err(|_| RestoreError::Format)?;
        let master: [u8; 48] = d.bytes()?.try_into().map_err(|_| RestoreError::Format)?;
        let ems = d.bool()?;
        let session = Session::restore(&mut d)?;
        let unread = bytes.len().saturating_sub(d.position());
        if unread > 0 {
            return Err(RestoreError::Trailing(unread));
        }
        if self.sessions.contains_key(&id) {
            return Err(RestoreError::InUse("connection handle"));
        }
        if let Some(c) = session.recv_cid.filter(|c| !c.is_empty()) {
            let len = crate::codec::wide(c.as_bytes().len());
            let want = crate::codec::wide(self.cid_len());
            RestoreError::check("recv_cid length", len, want, want)?;
            // A node of a cluster forwards records by the CID's first byte: a session saved
            // before the node had its number (or under another) would have its records sent
            // to whichever node that byte names.
            if let (Some(node), Some(first)) = (self.config.cid_node, c.as_bytes().first()) {
                RestoreError::check("recv_cid node byte", *first, node.into(), node.into())?;
            }
            if self.by_cid.contains_key(&c) {
                return Err(RestoreError::InUse("connection ID"));
            }
        }
        self.make_room();
        if let Some(c) = session.recv_cid {
            self.by_cid.insert(c, id);
        }
        self.by_addr.insert(peer, id);
        self.clock.push_back(id);
        self.sessions.insert(
            id,
            Entry {
                session,
                peer,
                check,
                master,
                ems,
                referenced: false,
                final_flight: None,
            },
        );
        // `id` is at most MAX_CONN_ID, so this cannot overflow.
        self.next_id = self.next_id.max(id.saturating_add(1));
        Ok(ConnId(id))
    }
}
