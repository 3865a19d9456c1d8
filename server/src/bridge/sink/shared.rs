//! The bridge's records of one device — the MQTT requests awaiting a command's result
//! (`reqID`, `msgType`) and the `reqID` of each observation — kept with the device's state when
//! nodes of a cluster share it: the node that takes a device over answers the commands another
//! node queued for it with their own `reqID`, and its notifications carry their observation's.
//!
//! Each change is handed to the driver as a field of the device's shared state
//! ([`SharedWrite`]): `p<command id>` and `b<observation id>` (big-endian), the record's JSON
//! as value (none: deleted).
use super::{key, Bridge, Observed, Pending, OBSERVATION, PENDING};
use crate::bridge::link::{Downlink, DownlinkKind};
use crate::core::types::{CommandId, ObservationId};
use crate::store::Table;

/// Field prefix of a request awaiting a command's result.
const PENDING_FIELD: u8 = b'p';
/// Field prefix of an observation's request.
const OBSERVED_FIELD: u8 = b'b';
/// Changes waiting for the driver at most (it takes them after every input).
const MAX_WRITES: usize = 65_536;

/// A change of a device's bridge records, for its shared state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedWrite {
    /// The device.
    pub endpoint: String,
    /// The field.
    pub field: Vec<u8>,
    /// The new value; `None`: deleted.
    pub value: Option<Vec<u8>>,
}

fn field(prefix: u8, id: u64) -> Vec<u8> {
    let mut f = vec![prefix];
    f.extend_from_slice(&id.to_be_bytes());
    f
}

/// The id of a field of `prefix`.
fn id_of(field: &[u8], prefix: u8) -> Option<u64> {
    let (p, rest) = field.split_first()?;
    (*p == prefix).then_some(())?;
    Some(u64::from_be_bytes(rest.try_into().ok()?))
}

impl Bridge {
    /// Hands every change of a device's records to the driver
    /// ([`take_shared`](Self::take_shared)).
    pub fn share_device_records(&mut self) {
        self.shared_writes.get_or_insert_with(Vec::new);
    }

    /// The changes since the last call.
    pub fn take_shared(&mut self) -> Vec<SharedWrite> {
        self.shared_writes
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    fn share(&mut self, endpoint: &str, field: Vec<u8>, value: Option<Vec<u8>>) {
        if let Some(w) = self.shared_writes.as_mut() {
            if w.len() < MAX_WRITES {
                w.push(SharedWrite {
                    endpoint: endpoint.to_string(),
                    field,
                    value,
                });
            }
        }
    }

    pub(super) fn share_pending(&mut self, endpoint: &str, id: CommandId, value: Option<Vec<u8>>) {
        self.share(endpoint, field(PENDING_FIELD, id.0), value);
    }

    pub(super) fn share_observed(
        &mut self,
        endpoint: &str,
        id: ObservationId,
        value: Option<Vec<u8>>,
    ) {
        self.share(endpoint, field(OBSERVED_FIELD, id.0), value);
    }

    /// Whether `field` is one of the bridge's.
    pub fn is_bridge_field(field: &[u8]) -> bool {
        matches!(field.first(), Some(&PENDING_FIELD | &OBSERVED_FIELD))
    }

    /// Takes over `endpoint`'s records from the shared state of a device this node took
    /// over; unreadable ones are skipped. Returns how many were taken.
    pub fn adopt(&mut self, endpoint: &str, fields: Vec<(Vec<u8>, Vec<u8>)>) -> usize {
        let mut taken = 0;
        for (f, v) in fields {
            if let Some(id) = id_of(&f, PENDING_FIELD) {
                let Ok(p) = serde_json::from_slice::<Pending>(&v) else {
                    continue;
                };
                let _ = self
                    .store
                    .put(Table::Bridge, key(PENDING, &id.to_be_bytes()), v);
                self.pending.insert(CommandId(id), p);
                taken += 1;
            } else if let Some(id) = id_of(&f, OBSERVED_FIELD) {
                let Ok(o) = serde_json::from_slice::<Observed>(&v) else {
                    continue;
                };
                if o.endpoint != endpoint {
                    continue;
                }
                let id = ObservationId(id);
                let _ = self
                    .store
                    .put(Table::Bridge, key(OBSERVATION, &id.0.to_be_bytes()), v);
                let ids = self.observed_by.entry(endpoint.to_string()).or_default();
                if !ids.contains(&id) {
                    ids.push(id);
                }
                self.observations.insert(id, o);
                taken += 1;
            }
        }
        taken
    }

    /// Forgets `endpoint`'s observations: another node took the device over (the requests
    /// awaiting results of its commands go when a restart finds the core without them).
    pub fn hand_over(&mut self, endpoint: &str) {
        self.forget_observations(endpoint, None);
    }

    /// Forgets the requests awaiting commands `ids`' results: the node that took the device
    /// answers them.
    pub fn forget_pending(&mut self, ids: &[CommandId]) {
        for id in ids {
            if self.pending.remove(id).is_some() {
                let _ = self
                    .store
                    .delete(Table::Bridge, key(PENDING, &id.0.to_be_bytes()));
            }
        }
    }

    /// The MQTT messages of commands `ids`, queued here for `endpoint` after another node had
    /// taken it (the shared store refused them): forgotten here, to be handed to the owner,
    /// which runs them as if they had come from the broker (their `reqID`s unchanged).
    pub fn requeue(&mut self, endpoint: &str, ids: &[CommandId]) -> Vec<Downlink> {
        let now = lwm2m::time::unix_millis(std::time::SystemTime::now());
        let mut out = Vec::new();
        for id in ids {
            let Some(p) = self.pending.remove(id) else {
                continue;
            };
            let _ = self
                .store
                .delete(Table::Bridge, key(PENDING, &id.0.to_be_bytes()));
            if let Some((payload, until)) = p.message {
                out.push(Downlink {
                    endpoint: endpoint.to_string(),
                    kind: DownlinkKind::Command,
                    payload: payload.into_bytes(),
                    expiry: until.map(|u| std::time::Duration::from_millis(u.saturating_sub(now))),
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_name_their_record_and_id() {
        assert_eq!(id_of(&field(PENDING_FIELD, 7), PENDING_FIELD), Some(7));
        assert_eq!(id_of(&field(PENDING_FIELD, 7), OBSERVED_FIELD), None);
        assert_eq!(id_of(b"p123", PENDING_FIELD), None);
        assert!(Bridge::is_bridge_field(&field(OBSERVED_FIELD, 1)));
        assert!(!Bridge::is_bridge_field(b"r"));
        assert!(!Bridge::is_bridge_field(b".owner"));
    }
}
