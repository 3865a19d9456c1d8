//! The firmware package store (OMA LwM2M TS 1.2 Core Appendix E.6: the package a device
//! downloads, by pull over CoAP Block2 per RFC 7959 §2.4 or pushed to `/5/0/0` with Block1).
//!
//! A package is stored content-addressed: its bytes in `{data_dir}/firmware/{sha256 hex}`,
//! its metadata in the store's `FirmwarePackages` table under its id (the first 16 hex
//! digits of the SHA-256). The server keeps every package's bytes in memory ([`Packages`]),
//! bounded by `[firmware] max_total_bytes`, so that serving a block never touches the disk.
//!
//! - this file: the types and the in-memory set.
//! - `files`: adding, removing and loading packages (files and records).
//! - `record`: the metadata's encoding in the store.
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

mod files;
mod record;
pub(crate) use record::MAX_LABEL;
#[cfg(test)]
mod tests;

pub use files::{
    add, commit, load, package_dir, prepare, remove, Added, Limits, Loaded, PackageError, Prepared,
};

/// A package's id: the first 16 hex digits of its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PackageId(pub String);

impl PackageId {
    /// The id of a package whose SHA-256 is `sha256`.
    pub fn of(sha256: &[u8; 32]) -> Self {
        PackageId(hex::encode(sha256.get(..8).unwrap_or_default()))
    }

    /// Whether `s` has an id's shape (16 lower-case hex digits): anything else is refused
    /// before it reaches a file name or a key.
    pub fn is_valid(s: &str) -> bool {
        s.len() == 16 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    }
}

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

impl PackageMeta {
    /// The ETag of a pull download (RFC 7252 §5.10.6): the first 8 bytes of the SHA-256,
    /// the same for every block, so a device notices if the package changed under it.
    pub fn etag(&self) -> [u8; 8] {
        let mut tag = [0u8; 8];
        tag.copy_from_slice(self.sha256.get(..8).unwrap_or(&[0u8; 8]));
        tag
    }
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
#[derive(Debug, Clone, Default)]
pub struct Packages {
    by_id: BTreeMap<PackageId, Package>,
    /// Sum of the packages' sizes, checked against `max_total_bytes` on every add.
    total: u64,
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

    /// Number of packages.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// All packages' bytes together.
    pub fn total_bytes(&self) -> u64 {
        self.total
    }

    /// Holds `package` (replacing one with its id).
    pub(crate) fn insert(&mut self, package: Package) {
        self.total = self.total.saturating_add(package.meta.size);
        if let Some(old) = self.by_id.insert(package.meta.id.clone(), package) {
            self.total = self.total.saturating_sub(old.meta.size);
        }
    }

    /// Drops the package `id`.
    pub(crate) fn remove(&mut self, id: &PackageId) -> Option<Package> {
        let old = self.by_id.remove(id)?;
        self.total = self.total.saturating_sub(old.meta.size);
        Some(old)
    }
}
