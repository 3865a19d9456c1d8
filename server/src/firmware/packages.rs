//! SKELETON (being implemented): the firmware package store. A package is stored
//! content-addressed by its SHA-256 under `{data_dir}/firmware/`, its metadata in the store's
//! `FirmwarePackages` table, and its bytes kept in memory for serving (pull, Block2) and
//! pushing (Block1).
use std::sync::Arc;
use std::time::SystemTime;

/// A package's id: the first 16 hex digits of its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PackageId(pub String);

impl std::fmt::Display for PackageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the store keeps of a package besides its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageMeta {
    /// Its id.
    pub id: PackageId,
    /// SHA-256 of the bytes: the ETag of pull downloads, what a device checks.
    pub sha256: [u8; 32],
    /// Length in bytes.
    pub size: u64,
    /// The firmware version it carries (`fw add --version`), compared with `/3/0/3`.
    pub version: String,
    /// A name for people (`fw add --name`), may be empty.
    pub name: String,
    /// When it was added.
    pub added_at: SystemTime,
}

/// A package with its bytes.
#[derive(Debug, Clone)]
pub struct Package {
    /// Its metadata.
    pub meta: PackageMeta,
    /// Its bytes, shared with whatever serves or pushes it.
    pub bytes: Arc<[u8]>,
}

/// The packages in memory, loaded from the store at start and changed by the admin
/// operations. Shared by the server task (serving, campaigns) and the admin path.
#[derive(Debug, Default)]
pub struct Packages {
    by_id: std::collections::BTreeMap<PackageId, Package>,
}

impl Packages {
    /// The package `id`, if stored.
    pub fn get(&self, id: &PackageId) -> Option<&Package> {
        self.by_id.get(id)
    }

    /// Every package's metadata, by id.
    pub fn list(&self) -> Vec<PackageMeta> {
        self.by_id.values().map(|p| p.meta.clone()).collect()
    }
}
