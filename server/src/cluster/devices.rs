//! Devices' state shared between the nodes of a cluster, in Redis: each registered device's
//! registration, observations and queued commands, the MQTT bridge's records of it, the
//! commands waiting for it, and which node owns it at which epoch, so that a device which
//! reaches another node (its node died, or it handshook again elsewhere) is taken over there
//! with everything it had (see [`crate::core::shared`]).
//!
//! Two keys per device, in one Redis Cluster slot (the braces are a hash tag):
//! `lwm2m:{<endpoint>}:dev`, a hash of
//! - `r`: the registration record, `.loc`: its location id, as the core stores them;
//! - `o<token>`: an observation record, `q<sequence>`: a queued command record (the keys of
//!   [`Table::Observations`] and [`Table::Queue`] below the endpoint);
//! - `.owner`: the node that owns the device, `.epoch`: how many times it was taken (the dot
//!   keeps them apart from the records' prefixes);
//! - any other field: the MQTT bridge's records of the device (see
//!   [`crate::bridge::sink::SharedWrite`]), taken over with it;
//!
//! and `lwm2m:{<endpoint>}:cmds`, a list of the commands another node took from the broker
//! for the device, waiting for its owner ([`WaitingDownlink`]).
//!
//! Every change is a Lua script, so it is atomic without client-side locks:
//! - [`CLAIM`]: a node takes a device over (for a request the device sent it): the epoch goes
//!   up by one, the owner becomes the node, the previous owner is told on its channel
//!   `lwm2m:node:<id>` (`"<epoch> <endpoint>"`), and the device's fields come back. An Update
//!   claims only the registration it names.
//! - [`WRITE`]: the owner's writes, refused (`0`) unless the owner and epoch are still the
//!   writer's: a node that was paused, or cut off, cannot overwrite what the device's new
//!   node wrote; it learns it lost the device and forgets it. The key expires a while after
//!   its registration would (an owner that never comes back leaves nothing behind).
//! - [`OWNED`]: at start, whether each registration a node restored is still its own.
//! - [`FORWARD`] and [`TAKE`]: a command taken from the broker by a node that does not hold
//!   the device is queued for the owner, which is woken on its channel (`"cmd <endpoint>"`)
//!   and takes it; a claim takes what waits too.
//!
//! The scripts run as `EVAL` (Redis caches them by their digest); one device's keys per call,
//! so they run unchanged on Redis Cluster.
use crate::core::persist::{self, RegistrationRecord, StoreOp};
use crate::core::shared::{Found, Records};
use crate::store::Table;
use redis::Value;

/// Field of the registration record.
pub const REGISTRATION: &[u8] = b"r";
/// Field of the registration's location id.
const LOCATION: &[u8] = b".loc";
/// Prefix of observation fields.
const OBSERVATION: u8 = b'o';
/// Prefix of queued command fields.
const QUEUED: u8 = b'q';
/// How long a device's key outlives its registration's end, for a late Update to find it.
pub const KEEP_AFTER_EXPIRY_MS: u64 = 3_600_000;

/// Takes a device over. `KEYS[1]`: the device's key, `KEYS[2]`: its commands' key; `ARGV[1]`:
/// the node; `ARGV[2]`: the location id the request names, or empty; `ARGV[3]`: the endpoint
/// name (for the message). Returns nil when the request names another registration than the
/// one held (nothing changes), else `{epoch, {field, value, ...}, {command, ...}}`: the
/// commands that were waiting for the device are the new owner's to send (and gone from the
/// store).
pub const CLAIM: &str = r#"
local reg = redis.call('HGET', KEYS[1], 'r')
if ARGV[2] ~= '' and (not reg or redis.call('HGET', KEYS[1], '.loc') ~= ARGV[2]) then
  return false
end
local prev = redis.call('HGET', KEYS[1], '.owner')
local epoch = redis.call('HINCRBY', KEYS[1], '.epoch', 1)
redis.call('HSET', KEYS[1], '.owner', ARGV[1])
if prev and prev ~= ARGV[1] then
  redis.call('PUBLISH', 'lwm2m:node:' .. prev, epoch .. ' ' .. ARGV[3])
end
if not reg then
  redis.call('PEXPIRE', KEYS[1], 600000)
end
local commands = redis.call('LRANGE', KEYS[2], 0, -1)
redis.call('DEL', KEYS[2])
return {epoch, redis.call('HGETALL', KEYS[1]), commands}
"#;

/// A command taken from the broker by a node that does not hold the device. `KEYS[1]`: the
/// device's key, `KEYS[2]`: its commands' key; `ARGV[1]`: the encoded command; `ARGV[2]`: how
/// long it may wait (ms); `ARGV[3]`: the endpoint name. Returns -1 if no node knows the
/// device, or -3 if [`MAX_WAITING_COMMANDS`] wait already (either way the taker answers it
/// as for an unknown device), else the owner's node id (-2 when none: the command waits for
/// the device's next contact), which is woken on its channel (`"cmd <endpoint>"`). The list
/// lives as long as its longest-waiting command may.
pub const FORWARD: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then
  return -1
end
if redis.call('LLEN', KEYS[2]) >= 256 then
  return -3
end
redis.call('RPUSH', KEYS[2], ARGV[1])
if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
local owner = redis.call('HGET', KEYS[1], '.owner')
if not owner then
  return -2
end
redis.call('PUBLISH', 'lwm2m:node:' .. owner, 'cmd ' .. ARGV[3])
return tonumber(owner)
"#;

/// The owner takes the commands waiting for a device. `KEYS[1]`: the device's key, `KEYS[2]`:
/// its commands' key; `ARGV[1]`: the node; `ARGV[2]`: its epoch. Returns the commands (and
/// removes them), or nil if the node no longer owns the device (they wait for the owner).
pub const TAKE: &str = r#"
if redis.call('HGET', KEYS[1], '.owner') ~= ARGV[1] or redis.call('HGET', KEYS[1], '.epoch') ~= ARGV[2] then
  return false
end
local commands = redis.call('LRANGE', KEYS[2], 0, -1)
redis.call('DEL', KEYS[2])
return commands
"#;

/// An owner's writes. `KEYS[1]`: the device's key; `ARGV[1]`: the node; `ARGV[2]`: its epoch;
/// `ARGV[3]`: when the key may expire (Unix ms) or empty; then operations: `P field value`
/// (set), `D field` (delete), `X prefix` (delete the fields starting with it). Returns 0 if
/// the node no longer owns the device at that epoch (nothing written), 1 when written, 2 when
/// the device has no registration left (its key is deleted).
pub const WRITE: &str = r#"
if redis.call('HGET', KEYS[1], '.owner') ~= ARGV[1] or redis.call('HGET', KEYS[1], '.epoch') ~= ARGV[2] then
  return 0
end
local i = 4
while i <= #ARGV do
  local op = ARGV[i]
  if op == 'P' then
    redis.call('HSET', KEYS[1], ARGV[i + 1], ARGV[i + 2])
    i = i + 3
  elseif op == 'D' then
    redis.call('HDEL', KEYS[1], ARGV[i + 1])
    i = i + 2
  else
    local p = ARGV[i + 1]
    for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
      if string.sub(f, 1, #p) == p then
        redis.call('HDEL', KEYS[1], f)
      end
    end
    i = i + 2
  end
end
if redis.call('HEXISTS', KEYS[1], 'r') == 0 then
  redis.call('DEL', KEYS[1])
  return 2
end
if ARGV[3] ~= '' then
  redis.call('PEXPIREAT', KEYS[1], ARGV[3])
end
return 1
"#;

/// Whether a node still owns a device. `KEYS[1]`: the device's key; `ARGV[1]`: the node.
/// Returns the epoch if it does (and the registration is there), -1 if no node has anything
/// of the device, else 0.
pub const OWNED: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then
  return -1
end
if redis.call('HGET', KEYS[1], '.owner') == ARGV[1] and redis.call('HEXISTS', KEYS[1], 'r') == 1 then
  return tonumber(redis.call('HGET', KEYS[1], '.epoch'))
end
return 0
"#;

/// The key of `endpoint`'s state.
pub fn key(endpoint: &str) -> Vec<u8> {
    let mut k = b"lwm2m:{".to_vec();
    k.extend_from_slice(endpoint.as_bytes());
    k.extend_from_slice(b"}:dev");
    k
}

/// The key of the commands waiting for `endpoint` (the same slot as its state).
pub fn commands_key(endpoint: &str) -> Vec<u8> {
    let mut k = b"lwm2m:{".to_vec();
    k.extend_from_slice(endpoint.as_bytes());
    k.extend_from_slice(b"}:cmds");
    k
}

/// A downlink message (a command, a shadow's desired state) as it waits in the store.
#[derive(Debug, Clone, PartialEq, Eq, minicbor::Encode, minicbor::Decode)]
pub struct WaitingDownlink {
    /// 0: a command, 1: a shadow's desired state.
    #[n(0)]
    pub kind: u8,
    /// The MQTT payload.
    #[n(1)]
    #[cbor(with = "minicbor::bytes")]
    pub payload: Vec<u8>,
    /// Until when it may wait (Unix ms), if its publisher said.
    #[n(2)]
    pub expires_at_ms: Option<u64>,
}

/// Commands waiting in the store for one device at most (the `256` in [`FORWARD`]).
pub const MAX_WAITING_COMMANDS: usize = 256;

/// How long a command may wait in the store when its publisher did not say: the longest a
/// command may wait for a sleeping device.
pub const COMMAND_WAIT_MS: u64 = 24 * 3600 * 1000;

/// What a node hears on its channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    /// Another node claimed the device at this epoch.
    Lost(u64, String),
    /// Commands wait for the device.
    Commands(String),
}

/// A message from a node's channel.
pub fn heard(payload: &[u8]) -> Option<Heard> {
    let text = std::str::from_utf8(payload).ok()?;
    if let Some(endpoint) = text.strip_prefix("cmd ") {
        return Some(Heard::Commands(endpoint.to_string()));
    }
    let (epoch, endpoint) = text.split_once(' ')?;
    Some(Heard::Lost(epoch.parse().ok()?, endpoint.to_string()))
}

/// The pub/sub channel node `node` hears of devices it lost on.
pub fn channel(node: u8) -> String {
    format!("lwm2m:node:{node}")
}

/// The command id of a queued command's field (`q` and the id, big-endian).
pub fn queued_id(field: &[u8]) -> Option<u64> {
    let (p, rest) = field.split_first()?;
    (*p == QUEUED).then_some(())?;
    Some(u64::from_be_bytes(rest.try_into().ok()?))
}

/// One write of a device's state: the hash operation for [`WRITE`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldOp {
    /// Set a field.
    Put(Vec<u8>, Vec<u8>),
    /// Delete a field.
    Delete(Vec<u8>),
    /// Delete the fields starting with the prefix.
    DeletePrefix(Vec<u8>),
}

impl FieldOp {
    /// The script arguments of the operation.
    pub fn args(&self) -> Vec<&[u8]> {
        match self {
            FieldOp::Put(f, v) => vec![b"P", f, v],
            FieldOp::Delete(f) => vec![b"D", f],
            FieldOp::DeletePrefix(p) => vec![b"X", p],
        }
    }
}

/// What a store write of the core means for the shared state: the device and its field
/// operations, plus, for a registration, when its key may expire (Unix ms). `None` for the
/// tables that are not shared (sessions, outbox, audit...) and for keys that name no device.
pub fn shared_write(op: &StoreOp) -> Option<(String, Vec<FieldOp>, Option<u64>)> {
    let (table, key) = match op {
        StoreOp::Put(t, k, _) | StoreOp::Delete(t, k) | StoreOp::DeletePrefix(t, k) => (*t, k),
    };
    let prefix = match table {
        Table::Registrations => None,
        Table::Observations => Some(OBSERVATION),
        Table::Queue => Some(QUEUED),
        _ => return None,
    };
    let Some(prefix) = prefix else {
        let endpoint = String::from_utf8(key.clone()).ok()?;
        return Some(match op {
            StoreOp::Put(_, _, v) => {
                let rec: RegistrationRecord = minicbor::decode(v).ok()?;
                let location = rec.location.strip_prefix("/rd/").unwrap_or(&rec.location);
                let expires = rec
                    .updated_at_ms
                    .saturating_add(u64::from(rec.lifetime).saturating_mul(1000))
                    .saturating_add(KEEP_AFTER_EXPIRY_MS);
                let ops = vec![
                    FieldOp::Put(REGISTRATION.to_vec(), v.clone()),
                    FieldOp::Put(LOCATION.to_vec(), location.as_bytes().to_vec()),
                ];
                (endpoint, ops, Some(expires))
            }
            _ => (
                endpoint,
                vec![
                    FieldOp::Delete(REGISTRATION.to_vec()),
                    FieldOp::Delete(LOCATION.to_vec()),
                ],
                None,
            ),
        });
    };
    let split = key.iter().position(|b| *b == 0)?;
    let endpoint = String::from_utf8(key.get(..split)?.to_vec()).ok()?;
    let mut field = vec![prefix];
    field.extend_from_slice(key.get(split + 1..)?);
    let op = match op {
        StoreOp::Put(_, _, v) => FieldOp::Put(field, v.clone()),
        StoreOp::Delete(..) => FieldOp::Delete(field),
        StoreOp::DeletePrefix(..) => FieldOp::DeletePrefix(field),
    };
    Some((endpoint, vec![op], None))
}

/// The answer of [`CLAIM`] for `endpoint`: the epoch the node now owns it at, if it claimed
/// it, and what it holds. `Err` for an answer of another shape.
pub fn claimed(endpoint: &str, answer: Value) -> Result<Claimed, &'static str> {
    let items = match answer {
        Value::Nil | Value::Boolean(false) => {
            return Ok(Claimed {
                epoch: None,
                found: Found::Nothing,
                commands: Vec::new(),
                bridge: Vec::new(),
            })
        }
        Value::Array(items) => items,
        _ => return Err("CLAIM"),
    };
    let mut items = items.into_iter();
    let epoch = match items.next() {
        Some(Value::Int(e)) => u64::try_from(e).map_err(|_| "CLAIM epoch")?,
        _ => return Err("CLAIM epoch"),
    };
    let fields = match items.next() {
        Some(Value::Array(f)) => f
            .chunks_exact(2)
            .map(|pair| match pair {
                [Value::BulkString(k), Value::BulkString(v)] => Ok((k.clone(), v.clone())),
                _ => Err("CLAIM fields"),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(Value::Map(f)) => f
            .into_iter()
            .map(|pair| match pair {
                (Value::BulkString(k), Value::BulkString(v)) => Ok((k, v)),
                _ => Err("CLAIM fields"),
            })
            .collect::<Result<Vec<_>, _>>()?,
        _ => return Err("CLAIM fields"),
    };
    let commands = match items.next() {
        None => Vec::new(),
        Some(list) => bulk_list(list).ok_or("CLAIM commands")?,
    };
    let (bridge, fields): (Vec<_>, Vec<_>) = fields.into_iter().partition(|(f, _)| {
        !matches!(f.first(), Some(&OBSERVATION | &QUEUED | b'.')) && f != REGISTRATION
    });
    Ok(Claimed {
        epoch: Some(epoch),
        found: found(endpoint, fields),
        commands,
        bridge,
    })
}

/// What [`CLAIM`] gave.
#[derive(Debug)]
pub struct Claimed {
    /// The epoch the node owns the device at, if it claimed it.
    pub epoch: Option<u64>,
    /// The device's records.
    pub found: Found,
    /// The commands that waited for it, encoded ([`WaitingDownlink`]).
    pub commands: Vec<Vec<u8>>,
    /// The MQTT bridge's records of the device, by field.
    pub bridge: Vec<(Vec<u8>, Vec<u8>)>,
}

/// A list of byte strings (`LRANGE`); `None` for any other shape.
pub fn bulk_list(v: Value) -> Option<Vec<Vec<u8>>> {
    match v {
        Value::Array(items) => items
            .into_iter()
            .map(|i| match i {
                Value::BulkString(b) => Some(b),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

/// A device's records from its hash's fields, under the core's store keys.
fn found(endpoint: &str, fields: Vec<(Vec<u8>, Vec<u8>)>) -> Found {
    let mut registration = None;
    let (mut observations, mut queued) = (Vec::new(), Vec::new());
    for (field, value) in fields {
        match field.split_first() {
            _ if field == REGISTRATION => registration = Some(value),
            Some((&OBSERVATION, rest)) => {
                observations.push((persist::sub_key(endpoint, rest), value))
            }
            Some((&QUEUED, rest)) => queued.push((persist::sub_key(endpoint, rest), value)),
            _ => {}
        }
    }
    // The core restores queued commands in the order given: their keys' order.
    queued.sort();
    match registration {
        Some(registration) => Found::Device(Records {
            registration,
            observations,
            queued,
        }),
        None => Found::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn registration(endpoint: &str) -> Vec<u8> {
        minicbor::to_vec(RegistrationRecord {
            endpoint: endpoint.into(),
            location: "/rd/00ab".into(),
            address: "192.0.2.1:5684".into(),
            lifetime: 300,
            version: "1.1".into(),
            binding: "U".into(),
            queue_mode: true,
            sms: None,
            links: "</3/0>".into(),
            registered_at_ms: 1_000,
            updated_at_ms: 2_000,
            peer: None,
        })
        .unwrap()
    }

    #[test]
    fn the_core_writes_map_to_one_hash_per_device() {
        let rec = registration("meter-1");
        let (ep, ops, expires) = shared_write(&StoreOp::Put(
            Table::Registrations,
            b"meter-1".to_vec(),
            rec.clone(),
        ))
        .unwrap();
        assert_eq!(ep, "meter-1");
        assert_eq!(
            ops,
            vec![
                FieldOp::Put(b"r".to_vec(), rec),
                FieldOp::Put(b".loc".to_vec(), b"00ab".to_vec())
            ]
        );
        assert_eq!(expires, Some(2_000 + 300_000 + KEEP_AFTER_EXPIRY_MS));
        let obs = persist::sub_key("meter-1", b"\x01\x02");
        assert_eq!(
            shared_write(&StoreOp::Put(Table::Observations, obs, b"v".to_vec())),
            Some((
                "meter-1".into(),
                vec![FieldOp::Put(b"o\x01\x02".to_vec(), b"v".to_vec())],
                None
            ))
        );
        assert_eq!(
            shared_write(&StoreOp::DeletePrefix(
                Table::Observations,
                persist::device_prefix("meter-1")
            )),
            Some((
                "meter-1".into(),
                vec![FieldOp::DeletePrefix(b"o".to_vec())],
                None
            ))
        );
        let q = persist::sub_key("meter-1", &7u64.to_be_bytes());
        assert_eq!(
            shared_write(&StoreOp::Delete(Table::Queue, q)).map(|w| w.1),
            Some(vec![FieldOp::Delete(b"q\0\0\0\0\0\0\0\x07".to_vec())])
        );
        // What is not a device's stays with the node.
        assert_eq!(
            shared_write(&StoreOp::Put(Table::Sessions, b"k".to_vec(), b"v".to_vec())),
            None
        );
        assert_eq!(key("a}b"), b"lwm2m:{a}b}:dev".to_vec());
    }

    #[test]
    fn a_claim_gives_back_the_records_under_the_core_keys() {
        let bulk = |b: &[u8]| Value::BulkString(b.to_vec());
        let rec = registration("m");
        let answer = Value::Array(vec![
            Value::Int(3),
            Value::Array(vec![
                bulk(b".owner"),
                bulk(b"2"),
                bulk(b".epoch"),
                bulk(b"3"),
                bulk(b".loc"),
                bulk(b"00ab"),
                bulk(b"r"),
                bulk(&rec),
                bulk(b"q\0\0\0\0\0\0\0\x09"),
                bulk(b"late"),
                bulk(b"q\0\0\0\0\0\0\0\x02"),
                bulk(b"early"),
                bulk(b"oTT"),
                bulk(b"obs"),
                bulk(b"p\0\0\0\0\0\0\0\x09"),
                bulk(b"{}"),
            ]),
        ]);
        let Claimed {
            epoch,
            found,
            commands,
            bridge,
        } = claimed("m", answer).unwrap();
        assert_eq!(epoch, Some(3));
        assert!(commands.is_empty());
        assert_eq!(
            bridge,
            vec![(b"p\0\0\0\0\0\0\0\x09".to_vec(), b"{}".to_vec())],
            "the bridge's records, apart"
        );
        let Found::Device(Records {
            registration,
            observations,
            queued,
        }) = found
        else {
            panic!("a device");
        };
        assert_eq!(registration, rec);
        assert_eq!(
            observations,
            vec![(persist::sub_key("m", b"TT"), b"obs".to_vec())]
        );
        assert_eq!(
            queued.iter().map(|(_, v)| v.as_slice()).collect::<Vec<_>>(),
            vec![b"early".as_slice(), b"late"],
            "in sequence order"
        );
        assert!(matches!(
            claimed("m", Value::Nil),
            Ok(Claimed {
                epoch: None,
                found: Found::Nothing,
                ..
            })
        ));
        // Claimed, but no registration yet (a Register): nothing to install; the commands
        // that waited for it come along.
        let empty = Value::Array(vec![
            Value::Int(1),
            Value::Array(vec![]),
            Value::Array(vec![bulk(b"c1"), bulk(b"c2")]),
        ]);
        let c = claimed("m", empty).unwrap();
        assert!(matches!((c.epoch, c.found), (Some(1), Found::Nothing)));
        assert_eq!(c.commands, vec![b"c1".to_vec(), b"c2".to_vec()]);
        assert!(claimed("m", Value::Int(1)).is_err());
    }

    #[test]
    fn channel_messages_name_the_device() {
        assert_eq!(heard(b"7 meter 1"), Some(Heard::Lost(7, "meter 1".into())));
        assert_eq!(
            heard(b"cmd meter 1"),
            Some(Heard::Commands("meter 1".into()))
        );
        assert_eq!(heard(b"x meter"), None);
        assert_eq!(heard(b"7"), None);
        assert_eq!(heard(&[0xff, b' ', b'a']), None);
    }

    #[test]
    fn a_waiting_command_round_trips() {
        let w = WaitingDownlink {
            kind: 0,
            payload: br#"{"reqID":"1"}"#.to_vec(),
            expires_at_ms: Some(5),
        };
        let bytes = minicbor::to_vec(&w).unwrap();
        assert_eq!(minicbor::decode::<WaitingDownlink>(&bytes).unwrap(), w);
        assert!(minicbor::decode::<WaitingDownlink>(b"junk").is_err());
    }

    proptest! {
        #[test]
        fn any_store_write_maps_without_panicking(key in proptest::collection::vec(any::<u8>(), 0..24), value in proptest::collection::vec(any::<u8>(), 0..64), t in 0usize..4) {
            let table = [Table::Registrations, Table::Observations, Table::Queue, Table::Meta][t];
            let _ = shared_write(&StoreOp::Put(table, key.clone(), value));
            let _ = shared_write(&StoreOp::DeletePrefix(table, key));
        }

        #[test]
        fn any_claim_answer_is_read_or_refused(items in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..8), 0..8), epoch in any::<i64>()) {
            let fields = Value::Array(items.into_iter().map(Value::BulkString).collect());
            let _ = claimed("m", Value::Array(vec![Value::Int(epoch), fields]));
            let _ = heard(&epoch.to_be_bytes());
        }
    }
}
