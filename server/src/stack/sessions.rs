//! DTLS sessions in the store: each saved when it is established, all of them again
//! periodically (a resumed session's record counters move on), and deleted when it ends, so
//! a restarted server resumes them (RFC 6347 §4.2.6 resumption needs no new handshake). A
//! periodic save goes in chunks, so a large fleet's save never stalls the server for long.
use crate::core::persist::StoreOp;
use crate::provisioning::secrets::SecretsKey;
use crate::store::Table;
use dtls::ConnId;
use std::time::{Duration, Instant};

/// Sessions saved per timer tick during a periodic save.
pub(crate) const SAVE_CHUNK: usize = 2000;
/// Pause between two chunks of one periodic save.
const CHUNK_PAUSE: Duration = Duration::from_millis(50);

/// The store key of a session: its connection id, big-endian.
pub(crate) fn key(conn: ConnId) -> Vec<u8> {
    conn.0.to_be_bytes().to_vec()
}

/// The store write of one session, sealed with the secrets key (it holds session keys);
/// `None` if the session is gone.
pub(crate) fn save(server: &dtls::Server, secrets: &SecretsKey, conn: ConnId) -> Option<StoreOp> {
    let bytes = server.save_session(conn)?;
    let key = key(conn);
    let sealed = secrets.seal(&key, &bytes);
    Some(StoreOp::Put(Table::Sessions, key, sealed))
}

/// The store write that forgets an ended session.
pub(crate) fn delete(conn: ConnId) -> StoreOp {
    StoreOp::Delete(Table::Sessions, key(conn))
}

/// When the next periodic save runs, and what is left of the current one.
#[derive(Debug)]
pub(crate) struct Schedule {
    /// Between two periodic saves; `None`: sessions are saved only when established and at
    /// shutdown.
    every: Option<Duration>,
    /// When the next chunk is due.
    next: Option<Instant>,
    /// Sessions still to save in the current periodic save.
    saving: Vec<ConnId>,
}

impl Schedule {
    /// The first periodic save `every` after `now`.
    pub(crate) fn new(every: Option<Duration>, now: Instant) -> Self {
        Self {
            every,
            next: every.map(|d| now + d),
            saving: Vec::new(),
        }
    }

    /// Never saves (no DTLS).
    pub(crate) fn off() -> Self {
        Self {
            every: None,
            next: None,
            saving: Vec::new(),
        }
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.next
    }

    /// The sessions to save now, if a chunk is due, and the next deadline set. `conns` lists
    /// the established sessions; it is asked once per periodic save, at its first chunk.
    pub(crate) fn due(&mut self, now: Instant, conns: impl FnOnce() -> Vec<ConnId>) -> Vec<ConnId> {
        if self.next.is_none_or(|t| t > now) {
            return Vec::new();
        }
        if self.saving.is_empty() {
            self.saving = conns();
        }
        let at = self.saving.len().saturating_sub(SAVE_CHUNK);
        let chunk = self.saving.split_off(at);
        self.next = if self.saving.is_empty() {
            self.every.map(|d| now + d)
        } else {
            Some(now + CHUNK_PAUSE)
        };
        chunk
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_fleet_is_saved_in_chunks_each_session_once_then_the_next_save_waits() {
        let start = Instant::now();
        let every = Duration::from_secs(300);
        let fleet: Vec<ConnId> = (1..=4500).map(ConnId).collect();
        let mut schedule = Schedule::new(Some(every), start);
        let mut asked = 0;
        let mut conns = || {
            asked += 1;
            fleet.clone()
        };
        assert!(schedule.due(start + every / 2, &mut conns).is_empty());
        assert_eq!(schedule.poll_timeout(), Some(start + every));
        let mut now = start + every;
        let mut saved = Vec::new();
        let mut chunks = Vec::new();
        while let Some(t) = schedule.poll_timeout().filter(|t| *t <= now) {
            now = t;
            let chunk = schedule.due(now, &mut conns);
            chunks.push(chunk.len());
            saved.extend(chunk);
            now += CHUNK_PAUSE;
        }
        assert_eq!(chunks, vec![SAVE_CHUNK, SAVE_CHUNK, 500]);
        saved.sort();
        assert_eq!(saved, fleet, "every session saved, each once");
        assert_eq!(asked, 1, "the session list is taken once per save");
        let last = start + every + 2 * CHUNK_PAUSE;
        assert_eq!(schedule.poll_timeout(), Some(last + every));
    }

    #[test]
    fn without_a_period_nothing_is_saved_periodically() {
        let now = Instant::now();
        let mut schedule = Schedule::new(None, now);
        assert_eq!(schedule.poll_timeout(), None);
        assert!(schedule
            .due(now + Duration::from_secs(86_400), || vec![ConnId(1)])
            .is_empty());
    }
}
