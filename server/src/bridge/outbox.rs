//! The bridge's durable outbox: every uplink MQTT message is written to the store before it
//! is published, and removed only when the broker has acknowledged it (MQTT 3.1.1 §4.3.2 /
//! MQTT 5 §4.3.2: PUBACK for QoS 1).
//!
//! rumqttc keeps unacknowledged publishes only in memory, and drops them outright when the
//! broker comes back without our session; the outbox is what makes "nothing lost" true
//! across a broker outage, a server crash, or both. Every message carries a `msgId` (a string),
//! so the few a consumer may see twice are recognisable: redelivered from the outbox, a
//! message keeps its id; a notification a device sends again after a server crash (its ACK was
//! lost with the server) gets the same id too, made of its observation and Observe sequence
//! number.
use crate::store::{Store, StoreError, Table};
use minicbor::{Decode, Encode};
use prometheus_client::metrics::histogram::Histogram;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Upper bounds, in seconds, of the server's latency histograms: 0.5 ms (a datagram answered
/// at once) to 30 s (a sleeping device, a broker away), roughly ×2.5 apart.
pub const LATENCY_BUCKETS: [f64; 15] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Outbox messages whose queue time is kept at most. Beyond this (a broker away for long) new
/// messages go untimed: the oldest, which the age figure needs, are kept.
const MAX_TIMED: usize = 65_536;

/// Counters of the bridge, readable from any thread.
#[derive(Debug, Default)]
pub struct BridgeStats {
    /// Messages written to the outbox.
    pub queued: AtomicU64,
    /// Messages handed to the MQTT client.
    pub published: AtomicU64,
    /// Messages the broker acknowledged (and so removed from the outbox).
    pub acked: AtomicU64,
    /// Messages lost: dropped because the outbox was full, or refused by the broker.
    pub dropped: AtomicU64,
    /// Messages in the outbox now.
    pub outbox_len: AtomicU64,
    /// Downlink commands received.
    pub downlink: AtomicU64,
    /// Downlink commands refused as malformed.
    pub downlink_errors: AtomicU64,
    /// Connections to the broker made (1 after the first).
    pub connects: AtomicU64,
    /// Connections made again after the link had been connected and lost the broker.
    pub reconnects: AtomicU64,
    /// Notifications whose time from queued to acknowledged was measured.
    pub notifications_timed: AtomicU64,
    /// Notifications left unacknowledged to their device because the outbox was full.
    pub notifications_refused: AtomicU64,
    /// LwM2M Sends left unacknowledged to their device because the outbox was full.
    pub sends_refused: AtomicU64,
}

/// When a message in the outbox was queued.
#[derive(Debug, Clone, Copy)]
struct Stamp {
    at: Instant,
    /// A device's notification (the latency figure is about those).
    notification: bool,
}

/// What the outbox and the MQTT link share.
#[derive(Debug)]
pub struct Shared {
    /// Rung when messages were committed to the outbox.
    pub committed: Notify,
    /// Counters.
    pub stats: BridgeStats,
    /// When the messages in the outbox were queued, by sequence number (in memory only: a
    /// message stored by an earlier run counts from when this run opened the outbox, and its
    /// latency is not measured). At most `MAX_TIMED`.
    queued_at: Mutex<BTreeMap<u64, Stamp>>,
    /// Seconds from a notification's arrival (its queueing, on the event that carries it) to
    /// the broker's acknowledgement of its publish.
    pub notification_latency: Histogram,
    /// Seconds from losing the broker to being connected again.
    pub reconnect_duration: Histogram,
}

impl Default for Shared {
    fn default() -> Self {
        Self {
            committed: Notify::new(),
            stats: BridgeStats::default(),
            queued_at: Mutex::new(BTreeMap::new()),
            notification_latency: Histogram::new(LATENCY_BUCKETS),
            reconnect_duration: Histogram::new(LATENCY_BUCKETS),
        }
    }
}

impl Shared {
    fn stamp(&self, seq: u64, stamp: Stamp) {
        if let Ok(mut q) = self.queued_at.lock() {
            if q.len() < MAX_TIMED {
                q.insert(seq, stamp);
            }
        }
    }

    /// The broker acknowledged message `seq` at `now`: a notification's latency is measured.
    pub fn acknowledged(&self, seq: u64, now: Instant) {
        self.acknowledged_all(&[seq], now);
    }

    /// The broker acknowledged messages `seqs` (in sequence order) at `now`, under one lock.
    pub fn acknowledged_all(&self, seqs: &[u64], now: Instant) {
        let Ok(mut q) = self.queued_at.lock() else {
            return;
        };
        for &seq in seqs {
            let stamp = q.remove(&seq);
            // Acknowledgements come in sequence order, and the link deletes the outbox up to
            // the one acknowledged: an older message still here was passed over, and is gone.
            if q.first_key_value().is_some_and(|(k, _)| *k < seq) {
                let newer = q.split_off(&seq);
                *q = newer;
            }
            if let Some(s) = stamp.filter(|s| s.notification) {
                let waited = now.saturating_duration_since(s.at);
                self.notification_latency.observe(waited.as_secs_f64());
                self.stats.notifications_timed.fetch_add(1, Relaxed);
            }
        }
    }

    /// When the oldest message still in the outbox was queued, if any is.
    pub fn oldest_queued(&self) -> Option<Instant> {
        if self.stats.outbox_len.load(Relaxed) == 0 {
            return None;
        }
        let q = self.queued_at.lock().ok()?;
        q.first_key_value().map(|(_, s)| s.at)
    }

    /// The link is connected again, `down_for` after it lost the broker.
    pub fn reconnected(&self, down_for: Duration) {
        self.stats.reconnects.fetch_add(1, Relaxed);
        self.reconnect_duration.observe(down_for.as_secs_f64());
    }
}

/// One message as stored.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct Message {
    /// Full topic.
    #[n(0)]
    pub topic: String,
    /// Payload (JSON).
    #[n(1)]
    #[cbor(with = "minicbor::bytes")]
    pub payload: Vec<u8>,
}

/// The largest sequence number a stored message may have. Numbers count up by one from 1; one
/// near `u64::MAX` could only come from a damaged record, and counting on from it would
/// overflow.
pub const MAX_SEQ: u64 = 1 << 62;

/// Messages read per store transaction while the outbox is checked at open.
const CHECK_PAGE: usize = 4096;

/// The writing end, owned by the server task.
pub struct Outbox {
    store: Store,
    next_seq: u64,
    max: u64,
    shared: Arc<Shared>,
    warned_full: bool,
    /// Stored messages [`open`](Self::open) skipped and deleted.
    skipped: usize,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("next_seq", &self.next_seq)
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

/// The key of message `seq`: big-endian, so the table's order is the sending order.
pub fn key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

/// The sequence number of a stored key.
pub fn seq_of(key: &[u8]) -> Option<u64> {
    key.try_into().ok().map(u64::from_be_bytes)
}

/// Why a stored message cannot be sent, if it cannot: its key is not a sequence number in
/// 1..=[`MAX_SEQ`], it is not a message, or it is one the MQTT client would refuse (a topic
/// that is empty, too long or has wildcards; a packet over the size the client accepts). Such
/// a message would otherwise be counted in the outbox for ever, or block it at every
/// reconnect.
fn check_stored(key: &[u8], value: &[u8]) -> Result<(), String> {
    let seq = seq_of(key).ok_or("the key is not a sequence number")?;
    if !(1..=MAX_SEQ).contains(&seq) {
        return Err(format!("sequence number {seq}: must be 1..={MAX_SEQ}"));
    }
    let m: Message =
        minicbor::decode(value).map_err(|e| format!("not a message this version can read: {e}"))?;
    if m.topic.is_empty()
        || m.topic.len() > usize::from(u16::MAX)
        || m.topic.contains(['+', '#', '\0'])
    {
        return Err("the topic is not 1..=65535 bytes without wildcards".into());
    }
    let size = m
        .payload
        .len()
        .saturating_add(m.topic.len())
        .saturating_add(64);
    if size > super::connect::MAX_PACKET_BYTES {
        return Err(format!(
            "the message is {size} bytes: must be at most {}",
            super::connect::MAX_PACKET_BYTES
        ));
    }
    Ok(())
}

impl Outbox {
    /// Opens the outbox in `store`, continuing after what a previous run left. Every stored
    /// message is checked first: one that could never be sent (`check_stored`) is skipped,
    /// counted ([`skipped`](Self::skipped)), logged and deleted.
    pub fn open(store: Store, max: u64) -> Result<Self, StoreError> {
        let mut last = 0u64;
        let mut len = 0u64;
        let mut skipped = 0usize;
        let mut from: Vec<u8> = Vec::new();
        let shared = Arc::new(Shared::default());
        let opened = Instant::now();
        loop {
            let page = store.range(Table::Outbox, &from, CHECK_PAGE)?;
            let Some((k, _)) = page.last() else { break };
            // The next page starts just after this one's last key.
            from = k.clone();
            from.push(0);
            let full = page.len() == CHECK_PAGE;
            for (k, v) in page {
                match check_stored(&k, &v) {
                    Ok(()) => {
                        let seq = seq_of(&k).unwrap_or(0);
                        last = last.max(seq);
                        len += 1;
                        let stamp = Stamp {
                            at: opened,
                            notification: false,
                        };
                        shared.stamp(seq, stamp);
                    }
                    Err(reason) => {
                        skipped += 1;
                        tracing::warn!(table = Table::Outbox.name(), key = %crate::store::display_key(&k), reason, "stored MQTT message skipped and deleted");
                        store.delete(Table::Outbox, k)?;
                    }
                }
            }
            if !full {
                break;
            }
        }
        shared.stats.outbox_len.store(len, Relaxed);
        Ok(Self {
            store,
            next_seq: last.saturating_add(1),
            max,
            shared,
            warned_full: false,
            skipped,
        })
    }

    /// Stored messages [`open`](Self::open) skipped.
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    /// Whether the outbox holds as many messages as it may: new ones would be dropped.
    pub fn is_full(&self) -> bool {
        self.shared.stats.outbox_len.load(Relaxed) >= self.max
    }

    /// The bridge's counters.
    pub fn stats(&self) -> &BridgeStats {
        &self.shared.stats
    }

    /// What the MQTT link needs.
    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Queues a message. Its payload gets `msgId`: `id` if given (a notification's, derived
    /// from what the device sent, so a device's retransmission after a server crash gets the
    /// same one), else the message's sequence number. Returns false if the outbox is full and
    /// the message was dropped (counted, and logged once per episode).
    pub fn push(&mut self, topic: String, payload: serde_json::Value, id: Option<String>) -> bool {
        self.push_as(topic, payload, id, false)
    }

    /// [`push`](Self::push), for a message that carries a device's notification if
    /// `notification`: its time to the broker's acknowledgement is measured.
    pub fn push_as(
        &mut self,
        topic: String,
        mut payload: serde_json::Value,
        id: Option<String>,
        notification: bool,
    ) -> bool {
        let stats = &self.shared.stats;
        if stats.outbox_len.load(Relaxed) >= self.max {
            stats.dropped.fetch_add(1, Relaxed);
            if !self.warned_full {
                self.warned_full = true;
                tracing::warn!(
                    max = self.max,
                    "MQTT outbox full (broker away too long): dropping new messages"
                );
            }
            return false;
        }
        self.warned_full = false;
        let seq = self.next_seq;
        self.next_seq = self.next_seq.saturating_add(1);
        if let Some(obj) = payload.as_object_mut() {
            obj.insert("msgId".into(), id.unwrap_or_else(|| seq.to_string()).into());
        }
        let message = Message {
            topic,
            payload: serde_json::to_vec(&payload).unwrap_or_default(),
        };
        // A message the client could never send would block the outbox on every reconnect.
        if message.payload.len() + message.topic.len() + 64 > super::connect::MAX_PACKET_BYTES {
            stats.dropped.fetch_add(1, Relaxed);
            tracing::warn!(topic = %message.topic, bytes = message.payload.len(), "MQTT message too large for the broker; dropped");
            return false;
        }
        let bytes = minicbor::to_vec(&message).unwrap_or_default();
        if let Err(e) = self.store.put(Table::Outbox, key(seq).to_vec(), bytes) {
            tracing::error!(error = %e, "MQTT outbox write failed");
            return false;
        }
        let stamp = Stamp {
            at: Instant::now(),
            notification,
        };
        self.shared.stamp(seq, stamp);
        stats.outbox_len.fetch_add(1, Relaxed);
        stats.queued.fetch_add(1, Relaxed);
        true
    }
}

/// Reads committed messages from `from` on, at most `limit`. A message that could never be
/// sent (`check_stored`; [`Outbox::open`] deletes those) is passed over.
pub fn read(store: &Store, from: u64, limit: usize) -> Result<Vec<(u64, Message)>, StoreError> {
    Ok(store
        .range(Table::Outbox, &key(from), limit)?
        .into_iter()
        .filter(|(k, v)| check_stored(k, v).is_ok())
        .filter_map(|(k, v)| Some((seq_of(&k)?, minicbor::decode(&v).ok()?)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreConfig;

    fn message(topic: &str, payload_len: usize) -> Vec<u8> {
        minicbor::to_vec(&Message {
            topic: topic.into(),
            payload: vec![b'x'; payload_len],
        })
        .unwrap()
    }

    #[tokio::test]
    async fn a_notification_is_timed_until_the_broker_acknowledges_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb"), StoreConfig::default()).unwrap();
        let mut outbox = Outbox::open(store.clone(), 100).unwrap();
        let shared = outbox.shared();
        assert_eq!(shared.oldest_queued(), None, "empty");
        let before = Instant::now();
        assert!(outbox.push("lwm2m/a/up/register".into(), serde_json::json!({}), None));
        assert!(outbox.push_as(
            "lwm2m/a/up/notify".into(),
            serde_json::json!({}),
            None,
            true
        ));
        let oldest = shared.oldest_queued().unwrap();
        assert!(oldest >= before);
        // Acknowledged in order: the registration's message is not a notification.
        shared.acknowledged(1, Instant::now());
        assert_eq!(shared.stats.notifications_timed.load(Relaxed), 0);
        shared.stats.outbox_len.fetch_sub(1, Relaxed);
        assert!(
            shared.oldest_queued().unwrap() >= oldest,
            "the next one is the oldest"
        );
        shared.acknowledged(2, Instant::now());
        assert_eq!(shared.stats.notifications_timed.load(Relaxed), 1);
        shared.stats.outbox_len.fetch_sub(1, Relaxed);
        assert_eq!(shared.oldest_queued(), None);
        // A message the link passed over is gone once a newer one is acknowledged.
        assert!(outbox.push("lwm2m/a/up/send".into(), serde_json::json!({}), None));
        assert!(outbox.push("lwm2m/a/up/send".into(), serde_json::json!({}), None));
        let third = Instant::now();
        assert!(outbox.push("lwm2m/a/up/send".into(), serde_json::json!({}), None));
        shared.acknowledged(4, Instant::now());
        shared.stats.outbox_len.fetch_sub(2, Relaxed);
        assert!(shared.oldest_queued().unwrap() >= third);
        shared.acknowledged(5, Instant::now());
        shared.stats.outbox_len.fetch_sub(1, Relaxed);
        // A message the next run finds in the outbox is aged from when that run opened it.
        assert!(outbox.push("lwm2m/a/up/update".into(), serde_json::json!({}), None));
        store.flush().await.unwrap();
        let reopened = Instant::now();
        let again = Outbox::open(store.clone(), 100).unwrap();
        assert!(again.shared().oldest_queued().unwrap() >= reopened);
        store.close().unwrap();
    }

    #[tokio::test]
    async fn messages_that_could_never_be_sent_are_skipped_and_deleted_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb"), StoreConfig::default()).unwrap();
        let put = |k: Vec<u8>, v: Vec<u8>| store.put(Table::Outbox, k, v).unwrap();
        put(key(1).to_vec(), message("lwm2m/a/up/send", 10));
        put(key(7).to_vec(), message("lwm2m/b/up/send", 10));
        // Unreadable, out of range, or refused by the MQTT client.
        put(key(3).to_vec(), b"\xff".to_vec());
        put(key(0).to_vec(), message("lwm2m/c/up/send", 10));
        put(key(MAX_SEQ + 1).to_vec(), message("lwm2m/d/up/send", 10));
        put(key(u64::MAX).to_vec(), message("lwm2m/e/up/send", 10));
        put(key(4).to_vec(), message("lwm2m/+/up/send", 10));
        put(key(5).to_vec(), message("", 10));
        put(
            key(6).to_vec(),
            message("lwm2m/f/up/send", super::super::connect::MAX_PACKET_BYTES),
        );
        put(b"short".to_vec(), message("lwm2m/g/up/send", 10));
        store.flush().await.unwrap();

        let mut outbox = Outbox::open(store.clone(), 100).unwrap();
        assert_eq!(outbox.skipped(), 8);
        assert_eq!(outbox.shared().stats.outbox_len.load(Relaxed), 2);
        assert_eq!(outbox.next_seq, 8, "continues after the last valid message");
        let sent: Vec<u64> = read(&store, 0, 100)
            .unwrap()
            .iter()
            .map(|(s, _)| *s)
            .collect();
        assert_eq!(sent, [1, 7]);
        assert!(outbox.push("lwm2m/a/up/send".into(), serde_json::json!({}), None));
        store.flush().await.unwrap();
        assert_eq!(
            store.len(Table::Outbox).unwrap(),
            3,
            "the skipped ones are gone"
        );
        let again = Outbox::open(store.clone(), 100).unwrap();
        assert_eq!(again.skipped(), 0);
        assert_eq!(again.next_seq, 9);
        store.close().unwrap();
    }
}
