//! The cluster's credential changes as one ordered log in Redis (a stream: `XADD`, `XREAD`):
//! a node that is asked to add, replace or revoke a credential (device or bootstrap) appends
//! the operation to the log instead of applying it, and every node — the one that appended it
//! included — applies every entry in the log's order. All nodes then hold the same
//! credentials whichever node was asked, and two changes made at once on two nodes are
//! applied in the same order everywhere. A node remembers the last entry it applied (in its
//! store, committed with what the entry changed) and, starting, applies what it missed.
//!
//! An entry is the operation as the admin protocol writes it (JSON), sealed with the secrets
//! key (AES-256-GCM, every node the same key file): device keys are never in Redis in the
//! clear. A node checks at start that its key is the cluster's ([`AdminLog::check_key`]); an
//! entry that still does not open stops the node from applying more (it would drift apart
//! from the others unseen), with an error logged.
//!
//! The stream is the credentials' history and is never trimmed: a node that starts from an
//! empty store replays it whole. Run Redis with persistence (AOF).
use crate::provisioning::admin::AdminOp;
use crate::provisioning::secrets::SecretsKey;
use redis::aio::ConnectionManager;
use redis::Value;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The stream's key.
pub const STREAM: &str = "lwm2m:admin";
/// The stream entry's one field.
const FIELD: &str = "op";
/// Binds a sealed entry to its use (AES-GCM associated data).
const AAD: &[u8] = b"lwm2m-server cluster admin log v1";

/// How long an `XADD` may take before its outcome is reported unknown.
const APPEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Where the key check lives: a known text sealed by the first node that started.
const KEY_CHECK: &str = "lwm2m:admin:key-check";
const KEY_CHECK_TEXT: &[u8] = b"lwm2m-server cluster secrets key check";

/// Why the log could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// Redis refused or could not be reached.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// An answer of a shape `XREAD` does not give.
    #[error("unexpected answer from redis to {0}")]
    Unexpected(&'static str),
    /// An entry that does not open or parse.
    #[error("admin log entry unreadable: {0}")]
    Entry(String),
    /// This node's secrets key is not the one the cluster's log is sealed with.
    #[error("this node's secrets key is not the cluster's: every node must use the same [security] secrets_key_file")]
    WrongKey,
}

/// One entry, opened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The node that appended it.
    pub origin: u8,
    /// That node's number for the request, to answer its caller once applied.
    pub request: u64,
    /// The change.
    pub op: AdminOp,
}

impl Entry {
    /// The sealed bytes of the entry.
    pub fn seal(&self, key: &SecretsKey) -> Vec<u8> {
        // Serializing these types cannot fail (no maps with non-string keys, no floats).
        let json = serde_json::to_vec(self).unwrap_or_default();
        key.seal(AAD, &json)
    }

    /// The entry of sealed bytes.
    pub fn open(key: &SecretsKey, sealed: &[u8]) -> Result<Self, LogError> {
        let json = key
            .open(AAD, sealed)
            .map_err(|e| LogError::Entry(e.to_string()))?;
        serde_json::from_slice(&json).map_err(|e| LogError::Entry(e.to_string()))
    }
}

/// A connection to the log. Appending and reading use separate connections: a blocked
/// `XREAD` would hold up everything queued behind it on a shared one, and each has its own
/// response timeout ([`Use`]).
#[derive(Clone)]
pub struct AdminLog {
    conn: ConnectionManager,
}

impl std::fmt::Debug for AdminLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminLog")
    }
}

/// What a connection is for, which decides how long it waits for an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// `XADD`: [`APPEND_TIMEOUT`], then the outcome is unknown.
    Append,
    /// `XREAD BLOCK`: no limit of its own (the block is the command's).
    Read,
}

impl AdminLog {
    /// Connects to the Redis at `url` (`redis://` or `rediss://`); reconnects by itself later.
    pub async fn connect(url: &str, purpose: Use) -> Result<Self, LogError> {
        let client = redis::Client::open(url)?;
        let timeout = match purpose {
            Use::Append => Some(APPEND_TIMEOUT),
            Use::Read => None,
        };
        let config = redis::aio::ConnectionManagerConfig::new().set_response_timeout(timeout);
        let conn = ConnectionManager::new_with_config(client, config).await?;
        Ok(Self { conn })
    }

    /// Checks that `key` is the cluster's: the first node to start seals a known text under
    /// [`KEY_CHECK`]; every node must open it. A node with another key would seal entries the
    /// others skip and skip theirs, and its credentials would drift apart unseen.
    pub async fn check_key(&mut self, key: &SecretsKey) -> Result<(), LogError> {
        let sealed = key.seal(AAD, KEY_CHECK_TEXT);
        let _: Value = redis::cmd("SET")
            .arg(KEY_CHECK)
            .arg(&sealed)
            .arg("NX")
            .query_async(&mut self.conn)
            .await?;
        let stored: Option<Vec<u8>> = redis::cmd("GET")
            .arg(KEY_CHECK)
            .query_async(&mut self.conn)
            .await?;
        match stored.map(|s| key.open(AAD, &s)) {
            Some(Ok(text)) if text == KEY_CHECK_TEXT => Ok(()),
            _ => Err(LogError::WrongKey),
        }
    }

    /// Appends sealed bytes; returns the entry's id.
    pub async fn append(&mut self, sealed: &[u8]) -> Result<String, LogError> {
        let id: String = redis::cmd("XADD")
            .arg(STREAM)
            .arg("*")
            .arg(FIELD)
            .arg(sealed)
            .query_async(&mut self.conn)
            .await?;
        Ok(id)
    }

    /// Up to `count` entries after the id `after` ("0": from the start), waiting up to
    /// `block` for one if there is none yet.
    pub async fn read_after(
        &mut self,
        after: &str,
        count: usize,
        block: Option<Duration>,
    ) -> Result<Vec<(String, Vec<u8>)>, LogError> {
        let mut cmd = redis::cmd("XREAD");
        if let Some(b) = block {
            cmd.arg("BLOCK")
                .arg(u64::try_from(b.as_millis()).unwrap_or(u64::MAX));
        }
        let answer: Value = cmd
            .arg("COUNT")
            .arg(count)
            .arg("STREAMS")
            .arg(STREAM)
            .arg(after)
            .query_async(&mut self.conn)
            .await?;
        entries(answer)
    }
}

/// The entries of an `XREAD` answer of one stream: `[[key, [[id, [field, value]], ...]]]`
/// (RESP2), or a map of key to entries (RESP3), or nil when nothing came.
fn entries(answer: Value) -> Result<Vec<(String, Vec<u8>)>, LogError> {
    let bad = || LogError::Unexpected("XREAD");
    let per_stream = match answer {
        Value::Nil => return Ok(Vec::new()),
        Value::Array(streams) => streams
            .into_iter()
            .next()
            .map(|s| match s {
                Value::Array(pair) => pair.into_iter().nth(1).ok_or_else(bad),
                _ => Err(bad()),
            })
            .transpose()?,
        Value::Map(streams) => streams.into_iter().next().map(|(_, v)| v),
        _ => return Err(bad()),
    };
    let Some(Value::Array(list)) = per_stream else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(list.len());
    for item in list {
        let Value::Array(item) = item else {
            return Err(bad());
        };
        let mut item = item.into_iter();
        let id = match item.next() {
            Some(Value::BulkString(b)) => String::from_utf8(b).map_err(|_| bad())?,
            Some(Value::SimpleString(s)) => s,
            _ => return Err(bad()),
        };
        let Some(Value::Array(fields)) = item.next() else {
            return Err(bad());
        };
        // [field, value]: the value of the one field.
        let value = match fields.into_iter().nth(1) {
            Some(Value::BulkString(b)) => b,
            _ => return Err(bad()),
        };
        out.push((id, value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provisioning::credentials::NewCredential;
    use proptest::prelude::*;

    fn key() -> SecretsKey {
        SecretsKey::from_bytes([5; 32])
    }

    #[test]
    fn an_entry_opens_to_what_was_sealed_and_never_under_another_key() {
        let e = Entry {
            origin: 2,
            request: 77,
            op: AdminOp::DeviceRevoke {
                endpoint: "meter-1".into(),
            },
        };
        let sealed = e.seal(&key());
        assert!(
            !sealed.windows(7).any(|w| w == b"meter-1"),
            "sealed, not in the clear"
        );
        assert_eq!(Entry::open(&key(), &sealed).unwrap(), e);
        assert!(Entry::open(&SecretsKey::from_bytes([6; 32]), &sealed).is_err());
        assert!(Entry::open(&key(), b"junk").is_err());
    }

    #[test]
    fn credential_changes_are_logged_and_reads_are_not() {
        let revoke = AdminOp::DeviceRevoke {
            endpoint: "a".into(),
        };
        assert!(revoke.changes_credentials());
        assert!(!AdminOp::DeviceList.changes_credentials());
        assert!(!AdminOp::DeviceImport {
            credentials: Vec::<NewCredential>::new(),
            check: true,
        }
        .changes_credentials());
        assert!(!AdminOp::Audit { limit: 5 }.changes_credentials());
    }

    fn bulk(s: &[u8]) -> Value {
        Value::BulkString(s.to_vec())
    }

    #[test]
    fn xread_answers_are_read_in_both_protocols() {
        let entry = |id: &[u8], v: &[u8]| {
            Value::Array(vec![bulk(id), Value::Array(vec![bulk(b"op"), bulk(v)])])
        };
        let list = Value::Array(vec![entry(b"1-0", b"a"), entry(b"2-0", b"b")]);
        let want = vec![
            ("1-0".to_string(), b"a".to_vec()),
            ("2-0".to_string(), b"b".to_vec()),
        ];
        let resp2 = Value::Array(vec![Value::Array(vec![
            bulk(STREAM.as_bytes()),
            list.clone(),
        ])]);
        assert_eq!(entries(resp2).unwrap(), want);
        let resp3 = Value::Map(vec![(bulk(STREAM.as_bytes()), list)]);
        assert_eq!(entries(resp3).unwrap(), want);
        assert!(entries(Value::Nil).unwrap().is_empty());
        assert!(entries(Value::Int(3)).is_err());
    }

    proptest! {
        #[test]
        fn any_answer_shape_is_read_or_refused_without_panicking(depth in 0usize..4, seed in any::<u64>()) {
            fn make(depth: usize, seed: u64) -> Value {
                match (seed % 5, depth) {
                    (_, 0) | (0, _) => Value::BulkString(seed.to_be_bytes().to_vec()),
                    (1, _) => Value::Nil,
                    (2, _) => Value::Int(seed as i64),
                    (3, d) => Value::Array((0..(seed % 3)).map(|i| make(d - 1, seed / 5 + i)).collect()),
                    (_, d) => Value::Map(vec![(make(d - 1, seed / 7), make(d - 1, seed / 11))]),
                }
            }
            let _ = entries(make(depth, seed));
        }
    }
}
