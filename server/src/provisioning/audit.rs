//! The security audit log: who was let in or turned away, and which credentials changed.
//!
//! Every event goes to two places: the store (table `audit`, so `lwm2m-server audit` can show
//! it after the fact, across restarts) and a tracing event (warn for refusals, info for the
//! rest) for the operator's log pipeline. Keys are the event time in nanoseconds (big-endian)
//! and a process-wide counter, so a scan returns events in time order and two events in the
//! same nanosecond do not overwrite each other.
//!
//! The table is bounded: events can be caused by anyone on the network (failed handshakes,
//! refused registrations), so an unbounded log would be a way to fill the disk. Every
//! [`PRUNE_EVERY`] events a background thread deletes the oldest beyond [`MAX_EVENTS`].
//! Fields that can carry attacker-chosen text are cut to a bounded length and stripped of
//! control characters before they reach the store or the log, so they cannot forge log lines.
use crate::provisioning::credentials::json::unix_ms;
use crate::store::{Store, StoreError, Table};
use minicbor::{Decode, Encode};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Events kept at most (the newest); older ones are pruned in batches.
pub const MAX_EVENTS: usize = 100_000;
/// Events recorded between two prunes.
pub const PRUNE_EVERY: u64 = 1000;
/// Longest `detail` kept, in bytes.
pub const MAX_DETAIL_LEN: usize = 512;
/// Longest `endpoint` or `peer` kept, in bytes.
pub const MAX_FIELD_LEN: usize = 256;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuditKind {
    /// A credential was added or replaced.
    CredentialAdded,
    /// A credential was revoked.
    CredentialRevoked,
    /// A DTLS handshake failed authentication (unknown identity, wrong key, untrusted
    /// certificate).
    AuthFailed,
    /// A device authenticated as one endpoint and tried to register as another.
    EndpointMismatch,
    /// A device that has a credential tried to register over NoSec, or NoSec is disabled.
    NoSecRefused,
    /// A DTLS session was closed (revoked credential, alert, eviction).
    SessionClosed,
    /// A device asked the bootstrap server for its account and was accepted.
    BootstrapStarted,
    /// A device was bootstrapped: it holds its LwM2M server account and credential.
    BootstrapFinished,
    /// A bootstrap failed or was refused (the step and why).
    BootstrapFailed,
    /// A device was asked to bootstrap again for a fresh credential (`device rotate`).
    RotationRequested,
    /// A bootstrap-server credential (a factory bootstrap account) was added or replaced.
    BootstrapCredentialAdded,
    /// A bootstrap-server credential was removed.
    BootstrapCredentialRemoved,
    /// An endpoint was put on the deny list: its certificates are refused even though they
    /// chain to a trusted CA, until a credential is added for it again.
    EndpointDenied,
}

impl AuditKind {
    /// The kebab-case name, as in JSON.
    pub const fn as_str(self) -> &'static str {
        match self {
            AuditKind::CredentialAdded => "credential-added",
            AuditKind::CredentialRevoked => "credential-revoked",
            AuditKind::AuthFailed => "auth-failed",
            AuditKind::EndpointMismatch => "endpoint-mismatch",
            AuditKind::NoSecRefused => "no-sec-refused",
            AuditKind::SessionClosed => "session-closed",
            AuditKind::BootstrapStarted => "bootstrap-started",
            AuditKind::BootstrapFinished => "bootstrap-finished",
            AuditKind::BootstrapFailed => "bootstrap-failed",
            AuditKind::RotationRequested => "rotation-requested",
            AuditKind::BootstrapCredentialAdded => "bootstrap-credential-added",
            AuditKind::BootstrapCredentialRemoved => "bootstrap-credential-removed",
            AuditKind::EndpointDenied => "endpoint-denied",
        }
    }

    /// Every kind.
    const ALL: [AuditKind; 13] = [
        AuditKind::CredentialAdded,
        AuditKind::CredentialRevoked,
        AuditKind::AuthFailed,
        AuditKind::EndpointMismatch,
        AuditKind::NoSecRefused,
        AuditKind::SessionClosed,
        AuditKind::BootstrapStarted,
        AuditKind::BootstrapFinished,
        AuditKind::BootstrapFailed,
        AuditKind::RotationRequested,
        AuditKind::BootstrapCredentialAdded,
        AuditKind::BootstrapCredentialRemoved,
        AuditKind::EndpointDenied,
    ];

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether the event is a refusal (logged as a warning).
    pub const fn is_refusal(self) -> bool {
        matches!(
            self,
            AuditKind::AuthFailed | AuditKind::EndpointMismatch | AuditKind::NoSecRefused
        )
    }
}

impl std::fmt::Display for AuditKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One audit event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// When (Unix milliseconds in JSON; nanoseconds in the store).
    #[serde(with = "unix_ms")]
    pub at: SystemTime,
    /// What.
    pub kind: AuditKind,
    /// The endpoint concerned, if known.
    pub endpoint: Option<String>,
    /// The network peer (`address:port`), if any.
    pub peer: Option<String>,
    /// Free text: the reason, the identity tried, the fingerprint...
    pub detail: String,
}

impl AuditEvent {
    /// An event happening now.
    pub fn new(kind: AuditKind, detail: impl Into<String>) -> Self {
        Self {
            at: SystemTime::now(),
            kind,
            endpoint: None,
            peer: None,
            detail: detail.into(),
        }
    }

    /// The same event about `endpoint`.
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// The same event from `peer`.
    pub fn with_peer(mut self, peer: impl std::fmt::Display) -> Self {
        self.peer = Some(peer.to_string());
        self
    }
}

/// An audit event as stored.
#[derive(Debug, Encode, Decode)]
pub(crate) struct AuditRecord {
    #[n(0)]
    pub(crate) at_ns: u64,
    #[n(1)]
    pub(crate) kind: String,
    #[n(2)]
    pub(crate) endpoint: Option<String>,
    #[n(3)]
    pub(crate) peer: Option<String>,
    #[n(4)]
    pub(crate) detail: String,
}

/// Bytes of a key: the time in nanoseconds and the process-wide sequence, both big-endian.
const KEY_LEN: usize = 12;

/// Cuts `s` to at most `max` bytes (on a character boundary) and replaces control
/// characters, so that attacker-chosen text can neither bloat the log nor forge lines in it.
fn clean(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max));
    for c in s.chars() {
        let c = if c.is_control() { '\u{fffd}' } else { c };
        if out.len() + c.len_utf8() > max {
            out.push('…');
            break;
        }
        out.push(c);
    }
    out
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Counts keys within one process so events in the same nanosecond stay distinct.
static SEQUENCE: AtomicU32 = AtomicU32::new(0);
/// Events recorded by this process, to pace the pruning.
static RECORDED: AtomicU64 = AtomicU64::new(0);
/// Whether a prune is running, so that a burst of events starts at most one.
static PRUNING: AtomicBool = AtomicBool::new(false);

/// An event's fields as they are kept: bounded and without control characters.
struct Cleaned {
    endpoint: Option<String>,
    peer: Option<String>,
    detail: String,
}

fn cleaned(event: &AuditEvent) -> Cleaned {
    Cleaned {
        endpoint: event.endpoint.as_deref().map(|e| clean(e, MAX_FIELD_LEN)),
        peer: event.peer.as_deref().map(|p| clean(p, MAX_FIELD_LEN)),
        detail: clean(&event.detail, MAX_DETAIL_LEN),
    }
}

/// The tracing side of an event: a warning for refusals, info for the rest.
fn log(kind: AuditKind, c: &Cleaned) {
    let endpoint = c.endpoint.as_deref().unwrap_or("-");
    let peer = c.peer.as_deref().unwrap_or("-");
    let detail = &c.detail;
    let kind_name = kind.as_str();
    if kind.is_refusal() {
        tracing::warn!(kind = kind_name, endpoint, peer, "audit: {detail}");
    } else {
        tracing::info!(kind = kind_name, endpoint, peer, "audit: {detail}");
    }
}

fn encode(event: &AuditEvent, c: Cleaned) -> (Vec<u8>, Vec<u8>) {
    let at_ns = nanos(event.at);
    let mut key = at_ns.to_be_bytes().to_vec();
    key.extend_from_slice(&SEQUENCE.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    let rec = AuditRecord {
        at_ns,
        kind: event.kind.as_str().to_string(),
        endpoint: c.endpoint,
        peer: c.peer,
        detail: c.detail,
    };
    (key, minicbor::to_vec(&rec).unwrap_or_default())
}

/// Records an event: in the store (durable after the next commit) and as a tracing event.
/// Never fails the caller: a store error is logged, since refusing the device or the
/// operator's command because the log is unavailable would help no one.
pub fn record(store: &Store, event: &AuditEvent) {
    let c = cleaned(event);
    log(event.kind, &c);
    let (key, value) = encode(event, c);
    if let Err(e) = store.put(Table::Audit, key, value) {
        tracing::error!(error = %e, "audit event not stored");
        return;
    }
    counted(store, 1);
}

/// The store write of an event, for a caller that commits it in one transaction with the
/// change it records ([`Store::put_batch`]); once that is queued, [`recorded`] logs it.
pub fn entry(event: &AuditEvent) -> (Table, Vec<u8>, Vec<u8>) {
    let (key, value) = encode(event, cleaned(event));
    (Table::Audit, key, value)
}

/// Batches larger than this are logged as one line (each event at debug): a bulk import of
/// 100,000 devices would otherwise bury the log. The store keeps every event either way.
const LOG_EACH_UP_TO: usize = 16;

/// Logs events whose [`entry`]s were written, and counts them towards the next prune.
pub fn recorded(store: &Store, events: &[AuditEvent]) {
    if events.len() <= LOG_EACH_UP_TO {
        for e in events {
            log(e.kind, &cleaned(e));
        }
    } else {
        tracing::info!(
            events = events.len(),
            "audit: batch recorded (`lwm2m-server audit` lists them)"
        );
        for e in events {
            let c = cleaned(e);
            tracing::debug!(
                kind = e.kind.as_str(),
                endpoint = c.endpoint.as_deref().unwrap_or("-"),
                "audit: {}",
                c.detail
            );
        }
    }
    counted(store, u64::try_from(events.len()).unwrap_or(u64::MAX));
}

/// Counts `n` stored events and starts a prune each time the count passes a multiple of
/// [`PRUNE_EVERY`].
fn counted(store: &Store, n: u64) {
    let before = RECORDED.fetch_add(n, Ordering::Relaxed);
    let after = before.saturating_add(n);
    if before / PRUNE_EVERY != after / PRUNE_EVERY && !PRUNING.swap(true, Ordering::AcqRel) {
        // A prune reads the whole table; off the caller's thread, so a flood of refused
        // handshakes does not stall the event loop that records them.
        let store = store.clone();
        let spawned = std::thread::Builder::new()
            .name("audit-prune".into())
            .spawn(move || {
                if let Err(e) = prune(&store, MAX_EVENTS) {
                    tracing::warn!(error = %e, "audit log prune failed");
                }
                PRUNING.store(false, Ordering::Release);
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "audit log prune not started");
            PRUNING.store(false, Ordering::Release);
        }
    }
}

/// Deletes the oldest events beyond the newest `keep` (as of the last commit); returns how
/// many it queued for deletion.
pub fn prune(store: &Store, keep: usize) -> Result<usize, StoreError> {
    let entries = store.scan(Table::Audit, b"")?;
    let excess = entries.len().saturating_sub(keep);
    for (k, _) in entries.into_iter().take(excess) {
        store.delete(Table::Audit, k)?;
    }
    if excess > 0 {
        tracing::debug!(pruned = excess, kept = keep, "audit log pruned");
    }
    Ok(excess)
}

/// The newest `n` events (as of the last commit), oldest first. A record this version cannot
/// read, or whose fields are out of range, is skipped and logged (see `read_event`).
pub fn recent(store: &Store, n: usize) -> Result<Vec<AuditEvent>, StoreError> {
    Ok(recent_counted(store, n)?.0)
}

/// [`recent`] with the number of records skipped.
pub(crate) fn recent_counted(
    store: &Store,
    n: usize,
) -> Result<(Vec<AuditEvent>, usize), StoreError> {
    let entries = store.scan(Table::Audit, b"")?;
    let skip = entries.len().saturating_sub(n);
    let mut skipped = 0;
    let mut events = Vec::new();
    for (k, v) in entries.into_iter().skip(skip) {
        match read_event(&k, &v) {
            Ok(e) => events.push(e),
            Err(reason) => {
                skipped += 1;
                tracing::warn!(table = Table::Audit.name(), key = %crate::store::display_key(&k), reason, "stored audit event skipped");
            }
        }
    }
    Ok((events, skipped))
}

/// Reads one stored event, checking what [`record`] guarantees: a key of the event's time
/// and a sequence number, a known kind, and fields cut to their bounds without control
/// characters. The time is only shown, never computed with, so one far off is shown as it
/// is (any `u64` of nanoseconds is a representable time).
fn read_event(key: &[u8], value: &[u8]) -> Result<AuditEvent, String> {
    let rec: AuditRecord = minicbor::decode(value)
        .map_err(|e| format!("not an audit record this version can read: {e}"))?;
    if key.len() != KEY_LEN || !key.starts_with(&rec.at_ns.to_be_bytes()) {
        return Err("stored under another key than its time".into());
    }
    let at = lwm2m::time::wall_deadline(UNIX_EPOCH, Duration::from_nanos(rec.at_ns));
    let kind = AuditKind::parse(&rec.kind).ok_or_else(|| format!("unknown kind {:?}", rec.kind))?;
    // `clean` may end a cut field with an ellipsis past the bound.
    let check = |field: &str, s: &str, max: usize| {
        if s.len() > max + '…'.len_utf8() || s.chars().any(char::is_control) {
            Err(format!(
                "{field} is not at most {max} bytes without control characters"
            ))
        } else {
            Ok(())
        }
    };
    if let Some(e) = &rec.endpoint {
        check("endpoint", e, MAX_FIELD_LEN)?;
    }
    if let Some(p) = &rec.peer {
        check("peer", p, MAX_FIELD_LEN)?;
    }
    check("detail", &rec.detail, MAX_DETAIL_LEN)?;
    Ok(AuditEvent {
        at,
        kind,
        endpoint: rec.endpoint,
        peer: rec.peer,
        detail: rec.detail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreConfig;

    #[tokio::test]
    async fn events_are_stored_in_time_order_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("a.redb"), StoreConfig::default()).unwrap();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        // Recorded out of order and two at the same instant: read back by time, none lost.
        let events = [
            (t0 + Duration::from_secs(2), AuditKind::AuthFailed),
            (t0, AuditKind::CredentialAdded),
            (t0, AuditKind::SessionClosed),
            (t0 + Duration::from_secs(1), AuditKind::NoSecRefused),
        ];
        for (at, kind) in events {
            let mut e = AuditEvent::new(kind, format!("{kind}"))
                .with_endpoint("dev-1")
                .with_peer("192.0.2.1:5684");
            e.at = at;
            record(&store, &e);
        }
        store.flush().await.unwrap();
        let got = recent(&store, 10).unwrap();
        let kinds: Vec<_> = got.iter().map(|e| e.kind).collect();
        assert_eq!(kinds.len(), 4);
        assert_eq!(kinds[3], AuditKind::AuthFailed);
        assert_eq!(kinds[2], AuditKind::NoSecRefused);
        assert_eq!(got[0].at, t0);
        assert_eq!(got[3].endpoint.as_deref(), Some("dev-1"));
        assert_eq!(got[3].peer.as_deref(), Some("192.0.2.1:5684"));
        assert_eq!(got[3].detail, "auth-failed");
        let last2 = recent(&store, 2).unwrap();
        assert_eq!(last2, got[2..].to_vec());
        store.close().unwrap();
    }

    #[tokio::test]
    async fn prune_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("a.redb"), StoreConfig::default()).unwrap();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        for i in 0..50u64 {
            let mut e = AuditEvent::new(AuditKind::AuthFailed, format!("{i}"));
            e.at = t0 + Duration::from_millis(i);
            record(&store, &e);
        }
        store.flush().await.unwrap();
        assert_eq!(prune(&store, 20).unwrap(), 30);
        store.flush().await.unwrap();
        let left = recent(&store, 100).unwrap();
        assert_eq!(left.len(), 20);
        assert_eq!(left[0].detail, "30");
        assert_eq!(left[19].detail, "49");
        assert_eq!(prune(&store, 20).unwrap(), 0);
        store.close().unwrap();
    }

    #[test]
    fn attacker_text_is_bounded_and_cannot_forge_lines() {
        assert_eq!(
            clean("dev\n2024 fake line", 100),
            "dev\u{fffd}2024 fake line"
        );
        let long = clean(&"é".repeat(1000), MAX_DETAIL_LEN);
        assert!(long.len() <= MAX_DETAIL_LEN + '…'.len_utf8());
        assert!(long.ends_with('…'));
    }

    #[test]
    fn kinds_serialize_kebab_case() {
        assert_eq!(
            serde_json::to_string(&AuditKind::NoSecRefused).unwrap(),
            "\"no-sec-refused\""
        );
        for k in AuditKind::ALL {
            assert_eq!(serde_json::to_string(&k).unwrap(), format!("\"{k}\""));
            assert_eq!(AuditKind::parse(k.as_str()), Some(k));
        }
    }

    #[tokio::test]
    async fn stored_events_out_of_range_are_skipped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("a.redb"), StoreConfig::default()).unwrap();
        record(&store, &AuditEvent::new(AuditKind::AuthFailed, "kept"));
        let raw = |at_ns: u64, kind: &str, detail: String| {
            minicbor::to_vec(AuditRecord {
                at_ns,
                kind: kind.into(),
                endpoint: None,
                peer: None,
                detail,
            })
            .unwrap()
        };
        let key = |at_ns: u64| {
            let mut k = at_ns.to_be_bytes().to_vec();
            k.extend_from_slice(&[0, 0, 0, 1]);
            k
        };
        let put = |k: Vec<u8>, v: Vec<u8>| store.put(Table::Audit, k, v).unwrap();
        put(key(1), b"\xff".to_vec());
        put(key(2), raw(2, "no-such-kind", "x".into()));
        put(key(3), raw(3, "auth-failed", "forged\nline".into()));
        put(
            key(4),
            raw(4, "auth-failed", "d".repeat(MAX_DETAIL_LEN + 4)),
        );
        put(
            key(5),
            raw(6, "auth-failed", "time differs from the key".into()),
        );
        put(b"short".to_vec(), raw(7, "auth-failed", "x".into()));
        // The extremes of the time: shown as they are.
        put(key(u64::MAX), raw(u64::MAX, "auth-failed", "far".into()));
        store.flush().await.unwrap();
        let (events, skipped) = recent_counted(&store, 100).unwrap();
        assert_eq!(skipped, 6);
        let details: Vec<&str> = events.iter().map(|e| e.detail.as_str()).collect();
        assert_eq!(details, ["kept", "far"]);
        assert_eq!(recent(&store, 100).unwrap().len(), 2);
        store.close().unwrap();
    }
}
