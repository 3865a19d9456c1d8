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
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use tokio::sync::Notify;

/// Counters of the bridge, readable from any thread (the metrics of issue 6).
#[derive(Debug, Default)]
pub struct BridgeStats {
    /// Messages written to the outbox.
    pub queued: AtomicU64,
    /// Messages handed to the MQTT client.
    pub published: AtomicU64,
    /// Messages the broker acknowledged (and so removed from the outbox).
    pub acked: AtomicU64,
    /// Messages dropped because the outbox was full.
    pub dropped: AtomicU64,
    /// Messages in the outbox now.
    pub outbox_len: AtomicU64,
    /// Downlink commands received.
    pub downlink: AtomicU64,
    /// Downlink commands refused as malformed.
    pub downlink_errors: AtomicU64,
    /// Connections to the broker made (1 after the first).
    pub connects: AtomicU64,
}

/// What the outbox and the MQTT link share.
#[derive(Debug, Default)]
pub struct Shared {
    /// Rung when messages were committed to the outbox.
    pub committed: Notify,
    /// Counters.
    pub stats: BridgeStats,
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

/// The writing end, owned by the server task.
pub struct Outbox {
    store: Store,
    next_seq: u64,
    max: u64,
    shared: Arc<Shared>,
    warned_full: bool,
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

impl Outbox {
    /// Opens the outbox in `store`, continuing after what a previous run left.
    pub fn open(store: Store, max: u64) -> Result<Self, StoreError> {
        let next_seq = store
            .last(Table::Outbox)?
            .and_then(|(k, _)| seq_of(&k))
            .map_or(1, |s| s + 1);
        let shared = Arc::new(Shared::default());
        let len = store.len(Table::Outbox)?;
        shared.stats.outbox_len.store(len, Relaxed);
        Ok(Self {
            store,
            next_seq,
            max,
            shared,
            warned_full: false,
        })
    }

    /// What the MQTT link needs.
    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Queues a message. Its payload gets `msgId`: `id` if given (a notification's, derived
    /// from what the device sent, so a device's retransmission after a server crash gets the
    /// same one), else the message's sequence number. Returns false if the outbox is full and
    /// the message was dropped (counted, and logged once per episode).
    pub fn push(
        &mut self,
        topic: String,
        mut payload: serde_json::Value,
        id: Option<String>,
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
        self.next_seq += 1;
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
        stats.outbox_len.fetch_add(1, Relaxed);
        stats.queued.fetch_add(1, Relaxed);
        true
    }
}

/// Reads committed messages from `from` on, at most `limit`.
pub fn read(store: &Store, from: u64, limit: usize) -> Result<Vec<(u64, Message)>, StoreError> {
    Ok(store
        .range(Table::Outbox, &key(from), limit)?
        .into_iter()
        .filter_map(|(k, v)| Some((seq_of(&k)?, minicbor::decode(&v).ok()?)))
        .collect())
}
