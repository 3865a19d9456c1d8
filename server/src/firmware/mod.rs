//! Firmware update (OMA LwM2M TS 1.2 Core Appendix E.6, Object 5): the packages the server
//! hosts, and the campaigns that bring them to devices.
//!
//! - [`packages`]: the package store: content-addressed files under `data_dir`, their
//!   metadata in the store, the bytes served for pull downloads and pushed for push.
//! - [`campaigns`]: update campaigns: each target device through download, update and
//!   result, a bounded number at a time.
//! - this file: [`SharedFirmware`], the packages and who may download which, shared by the
//!   admin path (which adds and removes packages), the campaigns (which target devices) and
//!   the core (which serves pull downloads, RFC 7959 Block2, through its `FirmwareAccess`).
pub mod campaigns;
pub mod packages;

use crate::core::{Download, FirmwareAccess};
use packages::{Package, PackageId, Packages};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

/// The packages and the campaigns' targets.
#[derive(Debug, Default)]
pub struct FirmwareState {
    /// The packages, bytes in memory.
    pub packages: Packages,
    /// Which packages each endpoint may download over DTLS: those a campaign targets it
    /// with. Bounded by the campaigns' devices (an entry per device in a running campaign,
    /// removed when its update ends).
    targets: HashMap<String, HashSet<PackageId>>,
}

impl FirmwareState {
    /// State with `packages` and no targets.
    pub fn new(packages: Packages) -> Self {
        Self {
            packages,
            targets: HashMap::new(),
        }
    }

    /// A campaign targets `endpoint` with package `id`: it may download it over DTLS.
    pub fn target(&mut self, endpoint: &str, id: PackageId) {
        self.targets
            .entry(endpoint.to_string())
            .or_default()
            .insert(id);
    }

    /// The campaign's update of `endpoint` with `id` ended.
    pub fn untarget(&mut self, endpoint: &str, id: &PackageId) {
        if let Some(set) = self.targets.get_mut(endpoint) {
            set.remove(id);
            if set.is_empty() {
                self.targets.remove(endpoint);
            }
        }
    }

    /// Whether `endpoint` is targeted with `id`.
    pub fn is_targeted(&self, endpoint: &str, id: &PackageId) -> bool {
        self.targets.get(endpoint).is_some_and(|s| s.contains(id))
    }
}

/// The package store as the admin path changes it: the shared state, where the files live,
/// and the size limits.
#[derive(Debug, Clone)]
pub struct FirmwareStore {
    /// The packages and targets.
    pub shared: SharedFirmware,
    /// `{data_dir}/firmware`.
    pub dir: std::path::PathBuf,
    /// `[firmware] max_package_bytes`, `max_total_bytes`.
    pub limits: packages::Limits,
}

/// [`FirmwareState`] shared between the server task, the admin path and the core.
#[derive(Debug, Clone, Default)]
pub struct SharedFirmware(pub Arc<RwLock<FirmwareState>>);

impl SharedFirmware {
    /// Shares `packages`, with no targets yet.
    pub fn new(packages: Packages) -> Self {
        Self(Arc::new(RwLock::new(FirmwareState::new(packages))))
    }
}

impl FirmwareAccess for SharedFirmware {
    fn download(&self, principal: Option<&str>, id: &str) -> Option<Download> {
        if !PackageId::is_valid(id) {
            return None;
        }
        let id = PackageId(id.to_string());
        // A poisoned lock means a panic elsewhere; nothing is served then.
        let state = self.0.read().ok()?;
        // Over DTLS only what a campaign sends this device: a credential grants its own
        // updates, not every package. Over plain CoAP there is nobody to tell apart, and
        // NoSec is served only where the operator opened it.
        if let Some(endpoint) = principal {
            if !state.is_targeted(endpoint, &id) {
                return None;
            }
        }
        state.packages.get(&id).map(|p| Download {
            bytes: p.bytes.clone(),
            etag: p.meta.etag(),
        })
    }

    fn exists(&self, id: &str) -> bool {
        PackageId::is_valid(id)
            && self
                .0
                .read()
                .is_ok_and(|s| s.packages.get(&PackageId(id.to_string())).is_some())
    }
}

impl SharedFirmware {
    /// A campaign lets `endpoint` download `package` over DTLS while it downloads.
    pub fn target(&self, endpoint: &str, package: &PackageId) {
        if let Ok(mut s) = self.0.write() {
            s.target(endpoint, package.clone());
        }
    }

    /// The campaign's download phase for `endpoint` ended.
    pub fn untarget(&self, endpoint: &str, package: &PackageId) {
        if let Ok(mut s) = self.0.write() {
            s.untarget(endpoint, package);
        }
    }

    /// The package `id` (its bytes shared, not copied), read under a short lock: the
    /// campaigns take it before they change the targets.
    pub fn package(&self, id: &PackageId) -> Option<Package> {
        self.0.read().ok()?.packages.get(id).cloned()
    }

    /// Whether `endpoint` may download `package` (what the campaigns' tests check; serving
    /// asks [`FirmwareState::is_targeted`] under the lock it already holds).
    #[cfg(test)]
    pub fn is_target(&self, endpoint: &str, package: &PackageId) -> bool {
        self.0
            .read()
            .is_ok_and(|s| s.is_targeted(endpoint, package))
    }
}
