//! Tests of the admin channel: the JSON shapes, the operations, the socket.
use super::protocol::read_line;
use super::*;
use crate::provisioning::audit::{self, AuditKind};
use crate::provisioning::credentials::tests::psk;
use crate::provisioning::credentials::{Credentials, NewCredential};
use crate::provisioning::secrets::SecretsKey;
use crate::store::{Store, StoreConfig};
use std::io;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::mpsc;

fn add_psk(endpoint: &str, identity: &str, key: &[u8]) -> AdminOp {
    AdminOp::DeviceAdd {
        credential: NewCredential {
            endpoint: endpoint.into(),
            secret: psk(endpoint, identity, key).secret,
        },
    }
}

#[test]
fn request_and_reply_json_shapes() {
    let op: AdminOp = serde_json::from_str(
        r#"{"op":"device-add","credential":{"endpoint":"E","kind":"psk","identity":"I","key":"00ff"}}"#,
    )
    .unwrap();
    assert_eq!(op, add_psk("E", "I", &[0, 0xff]));
    assert_eq!(
        serde_json::from_str::<AdminOp>(r#"{"op":"device-list"}"#).unwrap(),
        AdminOp::DeviceList
    );
    assert_eq!(
        serde_json::from_str::<AdminOp>(r#"{"op":"device-revoke","endpoint":"E"}"#).unwrap(),
        AdminOp::DeviceRevoke {
            endpoint: "E".into()
        }
    );
    assert_eq!(
        serde_json::from_str::<AdminOp>(r#"{"op":"audit"}"#).unwrap(),
        AdminOp::Audit { limit: 50 }
    );
    let import: AdminOp = serde_json::from_str(
        r#"{"op":"device-import","credentials":[{"endpoint":"E","kind":"psk","identity":"I","key":"00ff"}]}"#,
    )
    .unwrap();
    let AdminOp::DeviceAdd { credential } = add_psk("E", "I", &[0, 0xff]) else {
        unreachable!()
    };
    assert_eq!(
        import,
        AdminOp::DeviceImport {
            credentials: vec![credential],
            check: false
        }
    );
    assert!(serde_json::from_str::<AdminOp>(r#"{"op":"shutdown"}"#).is_err());
    assert_eq!(
        serde_json::to_string(&AdminReply::error("no")).unwrap(),
        r#"{"ok":false,"error":"no"}"#
    );
    assert_eq!(
        serde_json::to_string(&AdminReply::ok()).unwrap(),
        r#"{"ok":true}"#
    );
}

#[tokio::test]
async fn apply_offline_adds_lists_revokes_and_audits() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.redb"), StoreConfig::default()).unwrap();
    let key = SecretsKey::generate().unwrap();
    let mut creds = Credentials::new();
    let r = apply_offline(&store, &key, &mut creds, add_psk("dev-1", "id-1", b"k1"));
    assert!(r.ok, "{r:?}");
    assert_eq!(r.device.as_ref().unwrap().id, "id-1");
    assert!(r.replaced.is_none());
    let r = apply_offline(&store, &key, &mut creds, add_psk("dev-2", "id-1", b"k2"));
    assert!(!r.ok);
    assert!(r
        .error
        .unwrap()
        .contains("already bound to endpoint \"dev-1\""));
    let r = apply_offline(&store, &key, &mut creds, add_psk("dev-1", "id-1b", b"k3"));
    assert_eq!(r.replaced.unwrap().id, "id-1");
    let r = apply_offline(&store, &key, &mut creds, AdminOp::DeviceList);
    assert_eq!(r.devices.unwrap().len(), 1);
    let revoke = AdminOp::DeviceRevoke {
        endpoint: "dev-1".into(),
    };
    let r = apply_offline(&store, &key, &mut creds, revoke.clone());
    assert!(r.ok && r.device.unwrap().id == "id-1b");
    let r = apply_offline(&store, &key, &mut creds, revoke);
    assert!(!r.ok && r.error.unwrap().contains("has no credential"));
    store.flush().await.unwrap();
    let r = apply_offline(&store, &key, &mut creds, AdminOp::Audit { limit: 10 });
    let kinds: Vec<_> = r.events.unwrap().iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            AuditKind::CredentialAdded,
            AuditKind::CredentialAdded,
            AuditKind::CredentialRevoked,
            // Its factory credential must not get it back in through the bootstrap server.
            AuditKind::EndpointDenied
        ]
    );
    assert!(creds.is_denied("dev-1"));
    store.close().unwrap();
}

fn new_psk(endpoint: &str, identity: &str, key: &[u8]) -> NewCredential {
    NewCredential {
        endpoint: endpoint.into(),
        secret: psk(endpoint, identity, key).secret,
    }
}

#[tokio::test]
async fn an_import_is_checked_whole_then_applied_with_an_audit_entry_each() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.redb"), StoreConfig::default()).unwrap();
    let key = SecretsKey::generate().unwrap();
    let mut creds = Credentials::new();
    assert!(apply_offline(&store, &key, &mut creds, add_psk("old", "id-old", b"k")).ok);
    let chunk = vec![
        new_psk("old", "id-old2", b"k2"),
        new_psk("new-1", "id-1", b"k1"),
        new_psk("new-2", "id-2", b"k2"),
    ];

    // A check changes nothing and says what would happen.
    let (r, closing) = apply_import(&store, &key, &mut creds, chunk.clone(), true);
    assert!(r.ok, "{r:?}");
    let report = r.import.unwrap();
    assert_eq!((report.imported, report.replaced), (3, 1));
    assert!(closing.is_empty());
    assert_eq!(creds.len(), 1);

    // One bad entry refuses the chunk, naming it and the endpoint in the way.
    let mut bad = chunk.clone();
    bad.push(new_psk("thief", "id-old", b"k"));
    assert!(apply_offline(&store, &key, &mut creds, add_psk("keeper", "id-k", b"k")).ok);
    bad.push(new_psk("thief-2", "id-k", b"k"));
    let (r, _) = apply_import(&store, &key, &mut creds, bad, false);
    assert!(!r.ok);
    assert!(r.error.unwrap().contains("1 of 5 credentials refused"));
    let refused = r.import.unwrap().refused;
    assert_eq!(
        refused.len(),
        1,
        "id-old is freed by the same chunk: {refused:?}"
    );
    assert_eq!(refused[0].index, 4);
    assert_eq!(refused[0].bound_to.as_deref(), Some("keeper"));
    assert_eq!(creds.len(), 2);

    let (r, closing) = apply_import(&store, &key, &mut creds, chunk, false);
    assert!(r.ok, "{r:?}");
    assert_eq!(r.import.map(|i| (i.imported, i.replaced)), Some((3, 1)));
    assert_eq!(closing, ["old"]);
    assert_eq!(creds.psk(b"id-old2"), Some(("old", &b"k2"[..])));
    assert_eq!(creds.psk(b"id-old"), None);
    store.flush().await.unwrap();
    let events = audit::recent(&store, 100).unwrap();
    let added: Vec<_> = events
        .iter()
        .filter(|e| e.kind == AuditKind::CredentialAdded)
        .map(|e| (e.endpoint.clone().unwrap(), e.detail.clone()))
        .collect();
    assert_eq!(added.len(), 5, "{added:?}");
    assert!(added.contains(&("old".into(), "psk id-old2 (replaces psk id-old)".into())));
    assert!(added.contains(&("new-2".into(), "psk id-2".into())));

    let too_many = vec![new_psk("x", "y", b"z"); MAX_IMPORT_CHUNK + 1];
    let (r, _) = apply_import(&store, &key, &mut creds, too_many, true);
    assert!(r.error.unwrap().contains("at most 5000"));
    store.close().unwrap();
}

/// A stand-in for the runtime: applies requests with `apply_offline`.
fn runtime(store: Store, mut rx: mpsc::Receiver<AdminRequest>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let key = SecretsKey::from_bytes([7; 32]);
        let mut creds = Credentials::new();
        while let Some(req) = rx.recv().await {
            let reply = apply_offline(&store, &key, &mut creds, req.op);
            let _ = store.flush().await;
            let _ = req.reply.send(reply);
        }
    })
}

#[tokio::test]
async fn the_socket_serves_requests_and_refuses_bad_ones() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.redb"), StoreConfig::default()).unwrap();
    let sock = dir.path().join("admin.sock");
    // No server yet: the client sees NotFound, the CLI's cue to work offline.
    let e = call(&sock, &AdminOp::DeviceList).await.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::NotFound);
    // A stale socket file (its server died) is ConnectionRefused, and is replaced.
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    let e = call(&sock, &AdminOp::DeviceList).await.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);

    let (tx, rx) = mpsc::channel(8);
    let rt = runtime(store.clone(), rx);
    let listener = bind(&sock).unwrap();
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // A second server on the same socket is refused.
    assert_eq!(bind(&sock).unwrap_err().kind(), io::ErrorKind::AddrInUse);
    let server = tokio::spawn(listener.run(tx));

    let r = call(&sock, &add_psk("dev-1", "id-1", b"0123456789abcdef"))
        .await
        .unwrap();
    assert!(r.ok, "{r:?}");
    let r = call(&sock, &AdminOp::DeviceList).await.unwrap();
    let devices = r.devices.unwrap();
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0].endpoint, "dev-1");
    let r = call(&sock, &AdminOp::Audit { limit: 5 }).await.unwrap();
    assert_eq!(r.events.unwrap()[0].kind, AuditKind::CredentialAdded);

    // Malformed and oversized requests get an error reply, not a hang.
    let mut s = UnixStream::connect(&sock).await.unwrap();
    s.write_all(b"{\"op\":\"nope\"}\n").await.unwrap();
    let mut rd = BufReader::new(&mut s);
    let line = read_line(&mut rd, 4096).await.unwrap().unwrap();
    let r: AdminReply = serde_json::from_slice(&line).unwrap();
    assert!(!r.ok && r.error.unwrap().contains("bad request"));
    let big = vec![b'x'; MAX_REQUEST_LEN + 10];
    let mut s = UnixStream::connect(&sock).await.unwrap();
    let (mut r_half, mut w_half) = s.split();
    let writer = async {
        let _ = w_half.write_all(&big).await;
        let _ = w_half.write_all(b"\n").await;
    };
    let reader = async {
        let mut rd = BufReader::new(&mut r_half);
        read_line(&mut rd, 4096).await.unwrap().unwrap()
    };
    let (_, line) = tokio::join!(writer, reader);
    let r: AdminReply = serde_json::from_slice(&line).unwrap();
    assert!(r.error.unwrap().contains("longer than"));

    // The runtime going away ends the server and removes the socket.
    rt.abort();
    let _ = rt.await;
    server.await.unwrap().unwrap();
    assert!(!sock.exists());
    store.close().unwrap();
}

fn bootstrap_add(endpoint: &str, identity: &str, key: &[u8]) -> AdminOp {
    AdminOp::BootstrapAdd {
        credential: new_psk(endpoint, identity, key),
    }
}

#[test]
fn bootstrap_requests_have_the_device_requests_shapes() {
    assert_eq!(
        serde_json::from_str::<AdminOp>(
            r#"{"op":"bootstrap-add","credential":{"endpoint":"E","kind":"psk","identity":"I","key":"00ff"}}"#,
        )
        .unwrap(),
        bootstrap_add("E", "I", &[0, 0xff])
    );
    assert_eq!(
        serde_json::from_str::<AdminOp>(r#"{"op":"bootstrap-list"}"#).unwrap(),
        AdminOp::BootstrapList
    );
    assert_eq!(
        serde_json::from_str::<AdminOp>(r#"{"op":"bootstrap-remove","endpoint":"E"}"#).unwrap(),
        AdminOp::BootstrapRemove {
            endpoint: "E".into()
        }
    );
    assert_eq!(
        serde_json::from_str::<AdminOp>(
            r#"{"op":"bootstrap-import","credentials":[{"endpoint":"E","kind":"psk","identity":"I","key":"00ff"}],"check":true}"#,
        )
        .unwrap(),
        AdminOp::BootstrapImport {
            credentials: vec![new_psk("E", "I", &[0, 0xff])],
            check: true
        }
    );
    assert_eq!(
        AdminOp::BootstrapList.credential_set(),
        Some(crate::provisioning::credentials::CredentialSet::Bootstrap)
    );
    assert_eq!(AdminOp::Audit { limit: 1 }.credential_set(), None);
}

/// The factory bootstrap accounts are a set of their own: stored in their own table, audited
/// as such, unique within the set only, and kept across a restart.
#[tokio::test]
async fn bootstrap_credentials_are_managed_like_device_credentials_in_their_own_set() {
    use crate::provisioning::credentials::CredentialSet;
    use crate::store::Table;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let store = Store::open(&path, StoreConfig::default()).unwrap();
    let key = SecretsKey::generate().unwrap();
    let mut devices = Credentials::new();
    let mut boot = Credentials::empty_bootstrap(&devices);
    assert!(
        apply_offline(
            &store,
            &key,
            &mut devices,
            add_psk("dev-1", "shared-id", b"k1")
        )
        .ok
    );
    // The same identity in the other set is no conflict.
    let r = apply_offline(
        &store,
        &key,
        &mut boot,
        bootstrap_add("dev-1", "shared-id", b"f1"),
    );
    assert!(r.ok, "{r:?}");
    let r = apply_offline(
        &store,
        &key,
        &mut boot,
        bootstrap_add("dev-2", "shared-id", b"f2"),
    );
    assert!(
        !r.ok
            && r.error
                .unwrap()
                .contains("already bound to endpoint \"dev-1\""),
        "unique within the set"
    );
    // A device op given the bootstrap index (or the reverse) is refused, not misapplied.
    assert!(!apply_offline(&store, &key, &mut boot, AdminOp::DeviceList).ok);
    assert!(!apply_offline(&store, &key, &mut devices, AdminOp::BootstrapList).ok);
    let r = apply_offline(
        &store,
        &key,
        &mut boot,
        AdminOp::BootstrapImport {
            credentials: vec![
                new_psk("dev-2", "f-2", b"f2"),
                new_psk("dev-3", "f-3", b"f3"),
            ],
            check: false,
        },
    );
    assert_eq!(r.import.unwrap().imported, 2);
    let listed = apply_offline(&store, &key, &mut boot, AdminOp::BootstrapList);
    let names: Vec<String> = listed
        .devices
        .unwrap()
        .into_iter()
        .map(|d| d.endpoint)
        .collect();
    assert_eq!(names, ["dev-1", "dev-2", "dev-3"]);
    let r = apply_offline(
        &store,
        &key,
        &mut boot,
        AdminOp::BootstrapRemove {
            endpoint: "dev-2".into(),
        },
    );
    assert_eq!(r.device.unwrap().id, "f-2");
    let r = apply_offline(
        &store,
        &key,
        &mut boot,
        AdminOp::BootstrapRemove {
            endpoint: "dev-2".into(),
        },
    );
    assert!(!r.ok && r.error.unwrap().contains("has no bootstrap credential"));
    // The device set did not change.
    assert_eq!(devices.len(), 1);
    assert_eq!(devices.psk(b"shared-id").unwrap(), ("dev-1", &b"k1"[..]));
    store.flush().await.unwrap();
    assert_eq!(store.len(Table::BootstrapCredentials).unwrap(), 2);
    assert_eq!(store.len(Table::Credentials).unwrap(), 1);
    let events = audit::recent(&store, 20).unwrap();
    let kinds: Vec<AuditKind> = events.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            AuditKind::CredentialAdded,
            AuditKind::BootstrapCredentialAdded,
            AuditKind::BootstrapCredentialAdded,
            AuditKind::BootstrapCredentialAdded,
            AuditKind::BootstrapCredentialRemoved,
        ]
    );
    store.close().unwrap();
    drop(store);

    // A restart reads each set back from its own table.
    let store = Store::open(&path, StoreConfig::default()).unwrap();
    let devices = Credentials::load(&store, &key).unwrap();
    let boot = Credentials::load_bootstrap(&store, &key, &devices).unwrap();
    assert_eq!(boot.set(), CredentialSet::Bootstrap);
    assert_eq!(boot.psk(b"shared-id").unwrap(), ("dev-1", &b"f1"[..]));
    assert_eq!(boot.psk(b"f-3").unwrap(), ("dev-3", &b"f3"[..]));
    assert!(boot.psk(b"f-2").is_none());
    assert_eq!(devices.psk(b"shared-id").unwrap(), ("dev-1", &b"k1"[..]));
    assert_eq!(devices.len(), 1);
    store.close().unwrap();
}

/// With a trusted CA, revoking a device denies its endpoint (a device known only through the
/// CA has nothing else to revoke); adding a credential lifts the deny; both sets see the
/// list, and it survives a restart.
#[tokio::test]
async fn revoking_with_a_trusted_ca_denies_the_endpoint_until_it_is_added_again() {
    use crate::config::CertificateEndpoint;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let store = Store::open(&path, StoreConfig::default()).unwrap();
    let key = SecretsKey::generate().unwrap();
    let revoke = |ep: &str| AdminOp::DeviceRevoke {
        endpoint: ep.into(),
    };

    // No trusted CA: an endpoint without a credential has nothing to revoke.
    let mut devices = Credentials::new();
    let r = apply_offline(&store, &key, &mut devices, revoke("pki-1"));
    assert!(!r.ok && r.error.unwrap().contains("has no credential"));
    assert!(!devices.is_denied("pki-1"));

    devices.set_pki(Some(CertificateEndpoint::CnOrSan));
    let boot = Credentials::empty_bootstrap(&devices);
    let r = apply_offline(&store, &key, &mut devices, revoke("pki-1"));
    assert!(r.ok, "{r:?}");
    assert!(r.device.is_none());
    assert_eq!(r.denied.as_deref(), Some(&["pki-1".to_string()][..]));
    assert!(devices.is_denied("pki-1") && boot.is_denied("pki-1"));
    // Again: still denied, nothing new recorded.
    assert!(apply_offline(&store, &key, &mut devices, revoke("pki-1")).ok);
    // A name no certificate can carry is refused.
    let r = apply_offline(&store, &key, &mut devices, revoke("a/b"));
    assert!(!r.ok && r.error.unwrap().contains("MQTT"));
    // A pinned device revoked is denied too: its CA certificate must not let it back in.
    assert!(apply_offline(&store, &key, &mut devices, add_psk("dev-9", "id-9", b"k")).ok);
    let r = apply_offline(&store, &key, &mut devices, revoke("dev-9"));
    assert!(r.ok && r.device.is_some() && r.denied.is_some());
    let list = apply_offline(&store, &key, &mut devices, AdminOp::DeviceList);
    assert_eq!(
        list.denied.unwrap(),
        ["dev-9".to_string(), "pki-1".to_string()]
    );
    // A bootstrap credential does not lift a device's revocation.
    let mut boot = boot;
    assert!(apply_offline(&store, &key, &mut boot, bootstrap_add("pki-1", "f", b"k")).ok);
    assert!(devices.is_denied("pki-1"));
    store.flush().await.unwrap();
    store.close().unwrap();
    drop(store);

    // The deny list survives a restart, and both sets share it.
    let store = Store::open(&path, StoreConfig::default()).unwrap();
    let mut devices = Credentials::load(&store, &key).unwrap();
    devices.set_pki(Some(CertificateEndpoint::CnOrSan));
    let boot = Credentials::load_bootstrap(&store, &key, &devices).unwrap();
    assert!(devices.is_denied("pki-1") && boot.is_denied("dev-9"));
    let r = apply_offline(&store, &key, &mut devices, add_psk("pki-1", "id-p", b"k"));
    assert!(r.ok && r.deny_lifted);
    assert!(!devices.is_denied("pki-1") && !boot.is_denied("pki-1"));
    let r = apply_offline(
        &store,
        &key,
        &mut devices,
        AdminOp::DeviceImport {
            credentials: vec![new_psk("dev-9", "id-9b", b"k")],
            check: false,
        },
    );
    assert!(r.ok);
    assert!(!boot.is_denied("dev-9"), "an import lifts the deny too");
    store.flush().await.unwrap();
    let kinds: Vec<AuditKind> = audit::recent(&store, 20)
        .unwrap()
        .iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == AuditKind::EndpointDenied)
            .count(),
        2,
        "{kinds:?}"
    );
    let last = audit::recent(&store, 1).unwrap();
    assert!(
        last[0].detail.contains("lifts the endpoint's deny"),
        "{last:?}"
    );
    store.close().unwrap();
    drop(store);
    let store = Store::open(&path, StoreConfig::default()).unwrap();
    let devices = Credentials::load(&store, &key).unwrap();
    assert!(devices.denied().is_empty());
    store.close().unwrap();
}

#[tokio::test]
async fn firmware_operations_apply_offline_and_survive_a_reopen() {
    use crate::firmware::packages::{self, Limits, PackageId, Packages};
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("s.redb");
    let dir = packages::package_dir(tmp.path());
    let limits = Limits {
        max_package_bytes: 2000,
        max_total_bytes: 5000,
    };
    let file = tmp.path().join("fw.bin");
    std::fs::write(&file, vec![7u8; 1500]).unwrap();
    let store = Store::open(&db, StoreConfig::default()).unwrap();
    let mut pkgs = Packages::default();
    let never = |_: &PackageId| false;
    let op: AdminOp = serde_json::from_str(&format!(
        r#"{{"op":"fw-add","path":{:?},"version":"1.0"}}"#,
        file.display().to_string()
    ))
    .unwrap();
    let reply = apply_firmware(&store, &dir, limits, &mut pkgs, op.clone(), &never);
    assert!(reply.ok, "{reply:?}");
    assert!(!reply.existed);
    let added = reply.package.unwrap();
    assert_eq!((added.size, added.version.as_str()), (1500, "1.0"));
    // The same bytes again: the same id, said to be there already, nothing changed.
    let again = apply_firmware(&store, &dir, limits, &mut pkgs, op, &never);
    assert!(again.ok && again.existed);
    assert_eq!(again.package.unwrap(), added);
    // A relative path, a missing file and a file over the limit are refused.
    for (path, why) in [
        ("fw.bin".into(), "absolute"),
        (tmp.path().join("none.bin"), "No such file"),
    ] {
        let r = apply_firmware(
            &store,
            &dir,
            limits,
            &mut pkgs,
            AdminOp::FwAdd {
                path,
                version: "1".into(),
                name: String::new(),
            },
            &never,
        );
        assert!(!r.ok && r.error.as_deref().unwrap().contains(why), "{r:?}");
    }
    std::fs::write(&file, vec![8u8; 2001]).unwrap();
    let big = AdminOp::FwAdd {
        path: file.clone(),
        version: "1".into(),
        name: String::new(),
    };
    let r = apply_firmware(&store, &dir, limits, &mut pkgs, big, &never);
    assert!(!r.ok && r.error.unwrap().contains("max_package_bytes"));
    store.flush().await.unwrap();
    store.close().unwrap();
    drop(store);

    // After a reopen (a restart), the list shows it; a campaign's use refuses removal.
    let store = Store::open(&db, StoreConfig::default()).unwrap();
    let mut pkgs = packages::load(&store, &dir, limits.max_total_bytes)
        .unwrap()
        .packages;
    let list = apply_firmware(&store, &dir, limits, &mut pkgs, AdminOp::FwList, &never);
    assert_eq!(list.packages.unwrap(), vec![added.clone()]);
    let remove = AdminOp::FwRemove {
        id: added.id.clone(),
    };
    let busy = |_: &PackageId| true;
    let r = apply_firmware(&store, &dir, limits, &mut pkgs, remove.clone(), &busy);
    assert!(!r.ok && r.error.unwrap().contains("campaign"));
    let r = apply_firmware(&store, &dir, limits, &mut pkgs, remove, &never);
    assert!(r.ok);
    assert_eq!(r.package.unwrap().id, added.id);
    let list = apply_firmware(&store, &dir, limits, &mut pkgs, AdminOp::FwList, &never);
    assert_eq!(list.packages.unwrap(), Vec::new());
    // The credential path refuses firmware operations rather than ignoring them.
    let key = SecretsKey::from_bytes([1; 32]);
    let mut creds = Credentials::new();
    assert!(!apply_offline(&store, &key, &mut creds, AdminOp::FwList).ok);
    store.close().unwrap();
}

#[test]
fn firmware_requests_json_shapes() {
    let op: AdminOp = serde_json::from_str(
        r#"{"op":"fw-update","package":"0123456789abcdef","endpoints":["a","b"],"method":"push","concurrency":3}"#,
    )
    .unwrap();
    assert_eq!(
        op,
        AdminOp::FwUpdate {
            package: "0123456789abcdef".into(),
            endpoints: vec!["a".into(), "b".into()],
            all: false,
            model: None,
            from_version: None,
            method: Some("push".into()),
            concurrency: Some(3),
            require_version: false,
        }
    );
    assert!(op.is_campaign_op() && op.credential_set().is_none());
    let op: AdminOp = serde_json::from_str(r#"{"op":"fw-status","campaign":"17"}"#).unwrap();
    assert_eq!(
        op,
        AdminOp::FwStatus {
            campaign: "17".into()
        }
    );
    // Only a running server runs campaigns.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.redb"), Default::default()).unwrap();
    let key = SecretsKey::generate().unwrap();
    let mut creds = Credentials::new();
    let reply = apply_offline(&store, &key, &mut creds, op);
    assert!(!reply.ok);
    assert!(reply.error.unwrap().contains("running server"));
}
