//! The package store on a real store and real files: add, idempotent add, list, remove,
//! limits, reload after a restart, a tampered file skipped.
use super::*;
use crate::store::{Store, StoreConfig, Table};
use sha2::{Digest, Sha256};

const LIMITS: Limits = Limits {
    max_package_bytes: 4096,
    max_total_bytes: 10_000,
};

fn bytes(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect()
}

fn never(_: &PackageId) -> bool {
    false
}

async fn reopen(path: &std::path::Path, store: Store) -> Store {
    store.flush().await.unwrap();
    store.close().unwrap();
    drop(store);
    Store::open(path, StoreConfig::default()).unwrap()
}

#[tokio::test]
async fn add_list_idempotent_add_remove_and_reload() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("s.redb");
    let dir = package_dir(tmp.path());
    let mut store = Store::open(&db, StoreConfig::default()).unwrap();
    let mut pkgs = Packages::default();
    let a = bytes(3000, 1);
    let added = add(&store, &dir, &mut pkgs, LIMITS, a.clone(), "1.0", "first").unwrap();
    assert!(!added.existed);
    let sha: [u8; 32] = Sha256::digest(&a).into();
    assert_eq!(added.meta.sha256, sha);
    assert_eq!(added.meta.id.0, hex::encode(&sha[..8]));
    assert_eq!(added.meta.etag(), sha[..8]);
    let file = dir.join(hex::encode(sha));
    assert_eq!(std::fs::read(&file).unwrap(), a);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
    }
    // The same bytes again: same id, the first version and name kept, nothing written.
    let again = add(&store, &dir, &mut pkgs, LIMITS, a.clone(), "2.0", "other").unwrap();
    assert!(again.existed);
    assert_eq!(again.meta, added.meta);
    assert_eq!(pkgs.len(), 1);
    let b = bytes(100, 2);
    let b_id = add(&store, &dir, &mut pkgs, LIMITS, b.clone(), "1.1", "")
        .unwrap()
        .meta
        .id;
    let list = pkgs.list();
    assert_eq!(list.len(), 2);
    assert!(list.windows(2).all(|w| w[0].id < w[1].id), "listed by id");
    assert_eq!(pkgs.total_bytes(), 3100);

    // A restart finds both, bytes and metadata alike.
    store = reopen(&db, store).await;
    let loaded = load(&store, &dir, LIMITS.max_total_bytes).unwrap();
    assert_eq!((loaded.unreadable, loaded.skipped), (0, 0));
    assert_eq!(loaded.packages.list(), pkgs.list());
    assert_eq!(&*loaded.packages.get(&added.meta.id).unwrap().bytes, &a[..]);

    // Removal is refused while in use, then removes record, file and bytes.
    let busy = |id: &PackageId| *id == b_id;
    let err = remove(&store, &dir, &mut pkgs, &b_id.0, &busy).unwrap_err();
    assert!(matches!(err, PackageError::InUse(_)), "{err}");
    assert!(pkgs.get(&b_id).is_some());
    remove(&store, &dir, &mut pkgs, &b_id.0, &never).unwrap();
    assert!(pkgs.get(&b_id).is_none());
    let b_sha: [u8; 32] = Sha256::digest(&b).into();
    assert!(!dir.join(hex::encode(b_sha)).exists());
    store.flush().await.unwrap();
    assert!(matches!(
        remove(&store, &dir, &mut pkgs, &b_id.0, &never),
        Err(PackageError::NotFound(_))
    ));
    assert!(matches!(
        remove(&store, &dir, &mut pkgs, "../../etc/passwd", &never),
        Err(PackageError::NotFound(_))
    ));
    store = reopen(&db, store).await;
    let loaded = load(&store, &dir, LIMITS.max_total_bytes).unwrap();
    assert_eq!(loaded.packages.len(), 1);
    assert_eq!(pkgs.total_bytes(), 3000);
    store.close().unwrap();
}

#[tokio::test]
async fn limits_refuse_large_packages_and_a_full_store() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("s.redb"), StoreConfig::default()).unwrap();
    let dir = package_dir(tmp.path());
    let mut pkgs = Packages::default();
    let err = add(&store, &dir, &mut pkgs, LIMITS, bytes(4097, 1), "1", "").unwrap_err();
    assert!(
        matches!(
            err,
            PackageError::TooLarge {
                size: 4097,
                max: 4096
            }
        ),
        "{err}"
    );
    for seed in 0..2 {
        add(&store, &dir, &mut pkgs, LIMITS, bytes(4096, seed), "1", "").unwrap();
    }
    let err = add(&store, &dir, &mut pkgs, LIMITS, bytes(2000, 9), "1", "").unwrap_err();
    assert!(
        matches!(err, PackageError::TotalExceeded { total: 10_192, .. }),
        "{err}"
    );
    // What still fits is accepted.
    add(&store, &dir, &mut pkgs, LIMITS, bytes(1808, 9), "1", "").unwrap();
    assert!(matches!(
        add(&store, &dir, &mut pkgs, LIMITS, Vec::new(), "1", ""),
        Err(PackageError::Empty)
    ));
    assert!(matches!(
        add(&store, &dir, &mut pkgs, LIMITS, bytes(10, 7), "", ""),
        Err(PackageError::BadLabel(_))
    ));
    assert!(matches!(
        add(&store, &dir, &mut pkgs, LIMITS, bytes(10, 7), "1\n2", ""),
        Err(PackageError::BadLabel(_))
    ));
    assert_eq!(pkgs.len(), 3);
    store.close().unwrap();
}

#[tokio::test]
async fn a_tampered_or_missing_file_is_skipped_and_a_bad_record_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("s.redb");
    let dir = package_dir(tmp.path());
    let mut store = Store::open(&db, StoreConfig::default()).unwrap();
    let mut pkgs = Packages::default();
    let good = add(&store, &dir, &mut pkgs, LIMITS, bytes(500, 1), "1", "")
        .unwrap()
        .meta;
    let tampered = add(&store, &dir, &mut pkgs, LIMITS, bytes(500, 2), "2", "")
        .unwrap()
        .meta;
    let missing = add(&store, &dir, &mut pkgs, LIMITS, bytes(500, 3), "3", "")
        .unwrap()
        .meta;
    // Same length, one byte changed: only the hash tells.
    let path = dir.join(hex::encode(tampered.sha256));
    let mut b = std::fs::read(&path).unwrap();
    b[100] ^= 1;
    std::fs::write(&path, b).unwrap();
    std::fs::remove_file(dir.join(hex::encode(missing.sha256))).unwrap();
    store
        .put(Table::FirmwarePackages, b"garbage".to_vec(), b"{".to_vec())
        .unwrap();
    store = reopen(&db, store).await;
    let loaded = load(&store, &dir, LIMITS.max_total_bytes).unwrap();
    assert_eq!(loaded.packages.list(), vec![good.clone()]);
    assert_eq!((loaded.unreadable, loaded.skipped), (1, 2));
    // The unreadable record is gone; the others stay, so `fw add` of the bytes repairs.
    store = reopen(&db, store).await;
    assert_eq!(store.len(Table::FirmwarePackages).unwrap(), 3);
    let mut pkgs = loaded.packages;
    let repaired = add(&store, &dir, &mut pkgs, LIMITS, bytes(500, 2), "2", "").unwrap();
    assert!(!repaired.existed);
    // And a record whose file is gone can be removed.
    remove(&store, &dir, &mut pkgs, &missing.id.0, &never).unwrap();
    store = reopen(&db, store).await;
    let loaded = load(&store, &dir, 999).unwrap();
    assert_eq!(
        loaded.packages.len(),
        1,
        "the total limit holds at load too"
    );
    assert_eq!(loaded.skipped, 1);
    store.close().unwrap();
}
