//! Adding, removing and loading firmware packages (OMA LwM2M TS 1.2 Core Appendix E.6): the
//! bytes content-addressed in `{data_dir}/firmware/{sha256 hex}`, the metadata in the
//! store's `FirmwarePackages` table. The same functions serve the running server's admin
//! path and the CLI when no server runs.
//!
//! A file is written to a temporary name and renamed, so a crash never leaves a partial
//! package under its final name; its hash is checked again at every start, so a file changed
//! on disk is never served.
use super::record::{self, MAX_LABEL};
use super::{Package, PackageId, PackageMeta, Packages};
use crate::store::{display_key, Store, StoreError, Table};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

/// Why a package operation was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PackageError {
    /// Larger than `[firmware] max_package_bytes`.
    #[error("the package is {size} bytes, more than firmware.max_package_bytes = {max}")]
    TooLarge {
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// Would take the packages beyond `[firmware] max_total_bytes`.
    #[error("the packages would take {total} bytes, more than firmware.max_total_bytes = {max}: remove one first")]
    TotalExceeded {
        /// All packages with this one.
        total: u64,
        /// The limit.
        max: u64,
    },
    /// An empty package.
    #[error("the package is empty")]
    Empty,
    /// A version or name that cannot be stored.
    #[error("{0}")]
    BadLabel(String),
    /// No package has this id.
    #[error("no package {0}")]
    NotFound(String),
    /// A campaign uses it.
    #[error("package {0} is used by a campaign: end the campaign first")]
    InUse(PackageId),
    /// Another package has the same id (the first 64 bits of two hashes agree).
    #[error("package {0} exists with different bytes (the ids of two packages collide)")]
    Collision(PackageId),
    /// The file could not be written or removed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What [`add`] did.
#[derive(Debug, Clone)]
pub struct Added {
    /// The package as stored.
    pub meta: PackageMeta,
    /// The same bytes were stored already: nothing changed, and the version and name given
    /// were not applied (the first add's stand).
    pub existed: bool,
}

/// Where the package files live.
pub fn package_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("firmware")
}

fn file_of(dir: &Path, sha256: &[u8; 32]) -> PathBuf {
    dir.join(hex::encode(sha256))
}

fn check_label(what: &str, s: &str, required: bool) -> Result<(), PackageError> {
    if required && s.is_empty() {
        return Err(PackageError::BadLabel(format!("the {what} is empty")));
    }
    if s.len() > MAX_LABEL || s.chars().any(char::is_control) {
        return Err(PackageError::BadLabel(format!(
            "the {what} must be at most {MAX_LABEL} bytes without control characters"
        )));
    }
    Ok(())
}

/// Limits of the package store (`[firmware] max_package_bytes`, `max_total_bytes`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest package.
    pub max_package_bytes: u64,
    /// All packages together.
    pub max_total_bytes: u64,
}

impl From<&crate::config::FirmwareSection> for Limits {
    fn from(c: &crate::config::FirmwareSection) -> Self {
        Self {
            max_package_bytes: c.max_package_bytes,
            max_total_bytes: c.max_total_bytes,
        }
    }
}

/// Stores `bytes` as a package: the file, the record (durable after the store's next
/// commit), and the package in `packages`. [`prepare`] then [`commit`].
pub fn add(
    store: &Store,
    dir: &Path,
    packages: &mut Packages,
    limits: Limits,
    bytes: Vec<u8>,
    version: &str,
    name: &str,
) -> Result<Added, PackageError> {
    let prepared = prepare(dir, limits, bytes, version, name)?;
    commit(store, dir, packages, limits, prepared)
}

/// A package hashed and written to its file, not yet in the store or the package set.
#[derive(Debug)]
pub struct Prepared {
    sha256: [u8; 32],
    bytes: Arc<[u8]>,
    version: String,
    name: String,
}

/// The slow half of [`add`], which touches no shared state: checks the size, hashes the
/// bytes and writes them to their content-addressed file (the same bytes again make the
/// same file). Run it off the server task: a package may be a gigabyte.
pub fn prepare(
    dir: &Path,
    limits: Limits,
    bytes: Vec<u8>,
    version: &str,
    name: &str,
) -> Result<Prepared, PackageError> {
    let size = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    if size == 0 {
        return Err(PackageError::Empty);
    }
    if size > limits.max_package_bytes {
        return Err(PackageError::TooLarge {
            size,
            max: limits.max_package_bytes,
        });
    }
    let sha256: [u8; 32] = Sha256::digest(&bytes).into();
    write_file(dir, &sha256, &bytes)?;
    Ok(Prepared {
        sha256,
        bytes: Arc::from(bytes),
        version: version.to_string(),
        name: name.to_string(),
    })
}

/// The quick half of [`add`]: the record and the package set. The same bytes stored
/// already change nothing (the first add's version and name stand); a refused package's
/// file is removed unless a stored package has it.
pub fn commit(
    store: &Store,
    dir: &Path,
    packages: &mut Packages,
    limits: Limits,
    prepared: Prepared,
) -> Result<Added, PackageError> {
    let Prepared {
        sha256,
        bytes,
        version,
        name,
    } = prepared;
    let id = PackageId::of(&sha256);
    if let Some(existing) = packages.get(&id) {
        if existing.meta.sha256 != sha256 {
            return Err(PackageError::Collision(id));
        }
        return Ok(Added {
            meta: existing.meta.clone(),
            existed: true,
        });
    }
    let size = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    let refused = |e: PackageError| {
        let _ = std::fs::remove_file(file_of(dir, &sha256));
        e
    };
    check_label("version", &version, true).map_err(refused)?;
    check_label("name", &name, false).map_err(refused)?;
    let total = packages.total_bytes().saturating_add(size);
    if total > limits.max_total_bytes {
        return Err(refused(PackageError::TotalExceeded {
            total,
            max: limits.max_total_bytes,
        }));
    }
    let meta = PackageMeta {
        id: id.clone(),
        sha256,
        size,
        version,
        name,
        // Whole milliseconds, as stored: the package reads back after a restart as it was.
        added_at: lwm2m::time::from_unix_millis(lwm2m::time::unix_millis(SystemTime::now())),
    };
    store.put(
        Table::FirmwarePackages,
        id.0.clone().into_bytes(),
        record::encode(&meta),
    )?;
    packages.insert(Package {
        meta: meta.clone(),
        bytes,
    });
    Ok(Added {
        meta,
        existed: false,
    })
}

/// Writes the file under a temporary name, flushes it to disk, and renames it into place,
/// readable by all (0644: a package is no secret, and other tools may serve it).
fn write_file(dir: &Path, sha256: &[u8; 32], bytes: &[u8]) -> Result<(), PackageError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| PackageError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let path = file_of(dir, sha256);
    let tmp = dir.join(format!(".{}.tmp", hex::encode(sha256)));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o644);
    let written = (|| {
        let mut f = options.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        #[cfg(unix)]
        f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
        std::fs::rename(&tmp, &path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(&path)(e));
    }
    Ok(())
}

/// Removes the package `id` unless `in_use` says a campaign uses it: its record (durable
/// after the store's next commit), its file, and its bytes in `packages`. A record whose
/// file was missing or damaged at start (so not in `packages`) is removed too.
pub fn remove(
    store: &Store,
    dir: &Path,
    packages: &mut Packages,
    id: &str,
    in_use: &dyn Fn(&PackageId) -> bool,
) -> Result<PackageMeta, PackageError> {
    if !PackageId::is_valid(id) {
        return Err(PackageError::NotFound(id.to_string()));
    }
    let id = PackageId(id.to_string());
    let meta = match packages.get(&id) {
        Some(p) => p.meta.clone(),
        None => store
            .get(Table::FirmwarePackages, id.0.as_bytes())?
            .and_then(|v| record::decode(id.0.as_bytes(), &v).ok())
            .ok_or_else(|| PackageError::NotFound(id.0.clone()))?,
    };
    if in_use(&id) {
        return Err(PackageError::InUse(id));
    }
    store.delete(Table::FirmwarePackages, id.0.clone().into_bytes())?;
    let path = file_of(dir, &meta.sha256);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        // The record is gone, so the package is: a file left behind is only disk space.
        Err(e) => tracing::warn!(path = %path.display(), error = %e, "package file not removed"),
    }
    packages.remove(&id);
    Ok(meta)
}

/// What [`load`] found.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The packages whose file is intact.
    pub packages: Packages,
    /// Records that could not be read (deleted).
    pub unreadable: usize,
    /// Packages not loaded: file missing or changed, or beyond `max_total_bytes` (their
    /// records stay, so putting the file back or `fw add` of the same bytes repairs them).
    pub skipped: usize,
}

/// Loads every stored package whose file still holds the bytes its record names, up to
/// `max_total_bytes` together. Unreadable records are deleted (durable after the store's
/// next commit); the others that cannot be loaded are logged and kept.
pub fn load(store: &Store, dir: &Path, max_total_bytes: u64) -> Result<Loaded, StoreError> {
    let mut out = Loaded::default();
    for (key, value) in store.scan(Table::FirmwarePackages, b"")? {
        let meta = match record::decode(&key, &value) {
            Ok(m) => m,
            Err(reason) => {
                tracing::warn!(table = Table::FirmwarePackages.name(), key = %display_key(&key), %reason, "unreadable record skipped and deleted");
                store.delete(Table::FirmwarePackages, key)?;
                out.unreadable += 1;
                continue;
            }
        };
        let path = file_of(dir, &meta.sha256);
        let skip = |reason: &str| tracing::warn!(package = %meta.id, path = %path.display(), reason, "firmware package not loaded");
        if out.packages.total_bytes().saturating_add(meta.size) > max_total_bytes {
            skip("firmware.max_total_bytes reached");
            out.skipped += 1;
            continue;
        }
        // The length is checked before reading, so a file grown on disk is not read whole.
        match std::fs::metadata(&path) {
            Ok(m) if m.len() == meta.size => {}
            Ok(_) => {
                skip("the file's size is not the recorded one");
                out.skipped += 1;
                continue;
            }
            Err(_) => {
                skip("the file is missing");
                out.skipped += 1;
                continue;
            }
        }
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                skip(&format!("unreadable: {e}"));
                out.skipped += 1;
                continue;
            }
        };
        let sha256: [u8; 32] = Sha256::digest(&bytes).into();
        if sha256 != meta.sha256 || u64::try_from(bytes.len()).ok() != Some(meta.size) {
            skip("the file's SHA-256 is not the recorded one");
            out.skipped += 1;
            continue;
        }
        out.packages.insert(Package {
            meta,
            bytes: Arc::from(bytes),
        });
    }
    Ok(out)
}
