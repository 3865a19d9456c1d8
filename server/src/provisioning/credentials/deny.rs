//! The deny list: endpoints whose certificates are refused although they chain to a trusted
//! CA. A device of the factory PKI has no stored credential to revoke, so revoking it puts
//! its endpoint name here (table `denied_endpoints`, key = endpoint name, value = when, as
//! big-endian Unix milliseconds); adding a credential for it takes it off again.
//!
//! One list serves both credential sets: a revoked device is refused by the LwM2M server and
//! by the bootstrap server alike, so the bootstrap index shares the device index's list
//! instead of keeping its own.
use super::model::{check_stored_endpoint, CredentialError};
use super::record::{from_millis, millis};
use crate::store::{Store, Table};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

/// The denied endpoints and when each was denied (`None`: the stored time was unreadable).
/// Shared by the device and the bootstrap index; every change goes through the store first.
#[derive(Debug, Clone, Default)]
pub(super) struct DenyList(Arc<RwLock<HashMap<String, Option<SystemTime>>>>);

impl DenyList {
    /// Reads the table. A key that is not an endpoint name no certificate could carry is
    /// skipped and logged (a name is checked before the list is consulted, so it denied
    /// nothing); an unreadable time still denies its endpoint. Returns the list and how many
    /// records were skipped.
    pub(super) fn load(store: &Store) -> Result<(Self, usize), CredentialError> {
        let mut map = HashMap::new();
        let mut skipped = 0;
        for (k, v) in store.scan(Table::DeniedEndpoints, b"")? {
            let name = std::str::from_utf8(&k)
                .ok()
                .filter(|n| check_stored_endpoint(n).is_ok());
            let Some(name) = name else {
                skipped += 1;
                let key = crate::store::display_key(&k);
                tracing::warn!(table = Table::DeniedEndpoints.name(), %key, "stored deny entry skipped: not an endpoint name");
                continue;
            };
            let at = <[u8; 8]>::try_from(v.as_slice())
                .ok()
                .map(|b| from_millis(u64::from_be_bytes(b)));
            map.insert(name.to_string(), at);
        }
        Ok((Self(Arc::new(RwLock::new(map))), skipped))
    }

    /// Whether `endpoint` is denied. A poisoned lock (a panic elsewhere) denies.
    pub(super) fn contains(&self, endpoint: &str) -> bool {
        self.0.read().map_or(true, |m| m.contains_key(endpoint))
    }

    /// Denies `endpoint`; false if it already was.
    pub(super) fn insert(&self, store: &Store, endpoint: &str) -> Result<bool, CredentialError> {
        if self.contains(endpoint) {
            return Ok(false);
        }
        let now = from_millis(millis(SystemTime::now()));
        store.put(
            Table::DeniedEndpoints,
            endpoint.as_bytes().to_vec(),
            millis(now).to_be_bytes().to_vec(),
        )?;
        if let Ok(mut m) = self.0.write() {
            m.insert(endpoint.to_string(), Some(now));
        }
        Ok(true)
    }

    /// Lifts the deny of `endpoint`; false if it was not denied.
    pub(super) fn remove(&self, store: &Store, endpoint: &str) -> Result<bool, CredentialError> {
        if !self.0.read().is_ok_and(|m| m.contains_key(endpoint)) {
            return Ok(false);
        }
        store.delete(Table::DeniedEndpoints, endpoint.as_bytes().to_vec())?;
        if let Ok(mut m) = self.0.write() {
            m.remove(endpoint);
        }
        Ok(true)
    }

    /// Every denied endpoint, sorted, with when it was denied.
    pub(super) fn list(&self) -> Vec<(String, Option<SystemTime>)> {
        let mut out: Vec<_> = self
            .0
            .read()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default();
        out.sort();
        out
    }
}
