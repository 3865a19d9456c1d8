//! Which devices may download which package over CoAPs (OMA LwM2M TS 1.2 Core E.6 pull): a
//! campaign registers a device as a target of its package while the device downloads, and
//! removes it when the download phase ends, so a DTLS principal gets only what a campaign
//! sends it.
use super::packages::PackageId;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

/// The download targets, shared by the campaigns (which change them) and what serves the
/// packages (which asks). Bounded by the devices in progress in campaigns.
#[derive(Debug, Clone, Default)]
pub struct DownloadTargets {
    inner: Arc<Mutex<HashMap<String, BTreeSet<PackageId>>>>,
}

impl DownloadTargets {
    /// `endpoint` may download `package`.
    pub fn target(&self, endpoint: &str, package: &PackageId) {
        let mut m = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        m.entry(endpoint.to_string())
            .or_default()
            .insert(package.clone());
    }

    /// `endpoint` may no longer download `package`.
    pub fn untarget(&self, endpoint: &str, package: &PackageId) {
        let mut m = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(set) = m.get_mut(endpoint) {
            set.remove(package);
            if set.is_empty() {
                m.remove(endpoint);
            }
        }
    }

    /// Whether `endpoint` may download `package`.
    pub fn is_target(&self, endpoint: &str, package: &PackageId) -> bool {
        let m = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        m.get(endpoint).is_some_and(|s| s.contains(package))
    }
}
