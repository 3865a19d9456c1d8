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
            AuditKind::CredentialRevoked
        ]
    );
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
