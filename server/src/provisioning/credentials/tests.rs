//! Tests of the credential model, its store records and the index.
use super::model::*;
use super::record::*;
use super::*;
use crate::provisioning::secrets::{hex_encode, SecretsKey};
use crate::store::StoreConfig;
use crate::store::{Store, Table};
use std::path::Path;
use std::time::Duration;
use std::time::SystemTime;

pub(crate) const RPK_PEM: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEZVJY6Z1EkUWjMhQNDtfMaLN6mJeD
zcOPvC+AKCh4P0Hm1breX/R3raOfE836BbH/SJ44qWsdxMh3uO9XQL33JA==
-----END PUBLIC KEY-----
";
const RPK2_PEM: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEKH3bNsTo41fK0X4KOghhcJetFuJq
aAVvh7dnoMNNUxNti8jeesebk7GoicTDerGmP2i3WuQBIbKxa5A38H5JmQ==
-----END PUBLIC KEY-----
";
const ED25519_PEM: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAzibYHC7UDkyegeQO/Rq2mQAcKGf4oVVEOjckM1Elo7I=
-----END PUBLIC KEY-----
";
pub(crate) const CERT_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBfDCCASOgAwIBAgIUMyeiMfL3pL6F50G/tI0E8h0mrmAwCgYIKoZIzj0EAwIw
EzERMA8GA1UEAwwIZGV2LXg1MDkwIBcNMjYxMTI1MTU1MDQ4WhgPMjEyNjExMDEx
NTUwNDhaMBMxETAPBgNVBAMMCGRldi14NTA5MFkwEwYHKoZIzj0CAQYIKoZIzj0D
AQcDQgAEZVJY6Z1EkUWjMhQNDtfMaLN6mJeDzcOPvC+AKCh4P0Hm1breX/R3raOf
E836BbH/SJ44qWsdxMh3uO9XQL33JKNTMFEwHQYDVR0OBBYEFDOsR7ENKeXlzaUV
o9BwuFOVOwg1MB8GA1UdIwQYMBaAFDOsR7ENKeXlzaUVo9BwuFOVOwg1MA8GA1Ud
EwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDRwAwRAIgf6Efj0h0ofeVEDbLu91ue2Rx
AwC1vtXyOp28CzxOhhICIGLCr2dwJ54NDRDRq460WnlBEkq8mQGZaNtl73RxcGaw
-----END CERTIFICATE-----
";

pub(crate) fn pem_file(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

pub(crate) fn psk(endpoint: &str, identity: &str, key: &[u8]) -> DeviceCredential {
    DeviceCredential {
        endpoint: endpoint.into(),
        secret: Secret::Psk {
            identity: identity.into(),
            key: key.to_vec(),
        },
        added_at: SystemTime::now(),
    }
}

#[tokio::test]
async fn credentials_round_trip_through_the_store_with_the_psk_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.redb");
    let key = SecretsKey::generate().unwrap();
    let rpk = read_public_key_pem(&pem_file(dir.path(), "k.pem", RPK_PEM)).unwrap();
    let cert = read_certificate_pem(&pem_file(dir.path(), "c.pem", CERT_PEM)).unwrap();
    let psk_key = b"\x5e\xc7\x3e\x7a\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb\xcc";
    let added = {
        let store = Store::open(&db, StoreConfig::default()).unwrap();
        let mut c = Credentials::load(&store, &key).unwrap();
        assert!(c.is_empty());
        c.add(&store, &key, psk("dev-psk", "id-1", psk_key))
            .unwrap();
        let r = DeviceCredential {
            endpoint: "dev-rpk".into(),
            secret: Secret::Rpk {
                spki_der: rpk.clone(),
            },
            added_at: SystemTime::now(),
        };
        c.add(&store, &key, r).unwrap();
        let x = DeviceCredential {
            endpoint: "dev-x509".into(),
            secret: Secret::X509 {
                cert_der: cert.clone(),
            },
            added_at: SystemTime::now(),
        };
        c.add(&store, &key, x).unwrap();
        store.flush().await.unwrap();

        // At rest: the PSK is nowhere in the raw record, the identity is.
        let raw = store.get(Table::Credentials, b"dev-psk").unwrap().unwrap();
        assert!(!raw.windows(psk_key.len()).any(|w| w == psk_key));
        assert!(raw.windows(4).any(|w| w == b"id-1"));
        let added: Vec<_> = ["dev-psk", "dev-rpk", "dev-x509"]
            .iter()
            .map(|e| c.get(e).unwrap().clone())
            .collect();
        store.close().unwrap();
        added
    };
    let store = Store::open(&db, StoreConfig::default()).unwrap();
    let c = Credentials::load(&store, &key).unwrap();
    assert_eq!(c.len(), 3);
    for a in &added {
        assert_eq!(c.get(&a.endpoint), Some(a));
    }
    assert_eq!(c.psk(b"id-1"), Some(("dev-psk", &psk_key[..])));
    assert_eq!(c.psk(b"id-2"), None);
    assert_eq!(c.by_public_key(&rpk), Some("dev-rpk"));
    assert_eq!(c.by_certificate(&cert), Some("dev-x509"));
    assert_eq!(c.by_public_key(&cert), None);
    assert!(c.has_credential("dev-rpk") && !c.has_credential("dev-other"));

    let list = c.list();
    assert_eq!(
        list.iter()
            .map(|s| (s.endpoint.as_str(), s.kind.as_str()))
            .collect::<Vec<_>>(),
        [("dev-psk", "psk"), ("dev-rpk", "rpk"), ("dev-x509", "x509")]
    );
    assert_eq!(list[0].id, "id-1");
    assert_eq!(list[1].id, hex_encode(&fingerprint(&rpk)));
    assert_eq!(list[1].id.len(), 64);
    // Neither the list nor Debug shows the key.
    let shown = format!("{list:?} {:?}", c.get("dev-psk"));
    assert!(!shown.contains(&hex_encode(psk_key)), "{shown}");
    assert!(shown.contains("redacted"), "{shown}");
    store.close().unwrap();
}

#[tokio::test]
async fn a_wrong_secrets_key_fails_the_load_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.redb");
    {
        let store = Store::open(&db, StoreConfig::default()).unwrap();
        let key = SecretsKey::generate().unwrap();
        let mut c = Credentials::new();
        c.add(&store, &key, psk("dev-1", "id-1", b"0123456789abcdef"))
            .unwrap();
        store.close().unwrap();
    }
    let store = Store::open(&db, StoreConfig::default()).unwrap();
    let e = Credentials::load(&store, &SecretsKey::generate().unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("secrets key does not match the store") && e.contains("dev-1"),
        "{e}"
    );
    store.close().unwrap();
}

#[tokio::test]
async fn conflicts_rotation_and_revocation() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.redb");
    let key = SecretsKey::generate().unwrap();
    let rpk = read_public_key_pem(&pem_file(dir.path(), "k.pem", RPK_PEM)).unwrap();
    let rpk2 = read_public_key_pem(&pem_file(dir.path(), "k2.pem", RPK2_PEM)).unwrap();
    let store = Store::open(&db, StoreConfig::default()).unwrap();
    let mut c = Credentials::new();
    c.add(&store, &key, psk("a", "shared", b"k1")).unwrap();
    // Another endpoint may not take the same identity.
    let e = c.add(&store, &key, psk("b", "shared", b"k2")).unwrap_err();
    assert!(
        matches!(&e, CredentialError::Conflict { endpoint, .. } if endpoint == "a"),
        "{e}"
    );
    assert!(e.to_string().contains("PSK identity \"shared\""), "{e}");
    assert!(!c.has_credential("b"));
    // Rotation: the same endpoint replaces its key, then its whole identity.
    c.add(&store, &key, psk("a", "shared", b"k3")).unwrap();
    assert_eq!(c.psk(b"shared"), Some(("a", &b"k3"[..])));
    c.add(&store, &key, psk("a", "new-id", b"k4")).unwrap();
    assert_eq!(c.psk(b"shared"), None, "the old identity is unbound");
    c.add(&store, &key, psk("b", "shared", b"k2")).unwrap();
    // Rotation across kinds, and public-key conflicts.
    let rpk_cred = |e: &str, spki: &[u8]| DeviceCredential {
        endpoint: e.into(),
        secret: Secret::Rpk {
            spki_der: spki.to_vec(),
        },
        added_at: SystemTime::now(),
    };
    c.add(&store, &key, rpk_cred("a", &rpk)).unwrap();
    assert_eq!(c.psk(b"new-id"), None);
    assert_eq!(c.by_public_key(&rpk), Some("a"));
    let e = c.add(&store, &key, rpk_cred("b", &rpk)).unwrap_err();
    assert!(e.to_string().contains("public key sha256:"), "{e}");
    assert_eq!(c.psk(b"shared"), Some(("b", &b"k2"[..])), "b untouched");
    c.add(&store, &key, rpk_cred("a", &rpk2)).unwrap();
    assert_eq!(c.by_public_key(&rpk), None);
    // Revocation.
    let old = c.revoke(&store, "a").unwrap().unwrap();
    assert_eq!(
        old.secret,
        Secret::Rpk {
            spki_der: rpk2.clone()
        }
    );
    assert_eq!(c.by_public_key(&rpk2), None);
    assert!(!c.has_credential("a"));
    assert!(c.revoke(&store, "a").unwrap().is_none());
    store.flush().await.unwrap();
    let reloaded = Credentials::load(&store, &key).unwrap();
    assert_eq!(reloaded.list(), c.list());
    assert_eq!(reloaded.len(), 1);
    store.close().unwrap();
}

#[tokio::test]
async fn a_batch_is_checked_whole_and_added_in_one_go() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.redb");
    let key = SecretsKey::generate().unwrap();
    let store = Store::open(&db, StoreConfig::default()).unwrap();
    let mut c = Credentials::new();
    c.add(&store, &key, psk("a", "id-a", b"ka")).unwrap();
    c.add(&store, &key, psk("b", "id-b", b"kb")).unwrap();
    c.add(&store, &key, psk("outsider", "id-o", b"ko")).unwrap();

    // Refusals name the entry: bad value, endpoint or identity twice, an identity held
    // by an endpoint the batch does not touch. Nothing is added.
    let bad = vec![
        psk("n1", "id-n1", b"k"),
        psk("n2", "", b"k"),
        psk("n1", "id-n1b", b"k"),
        psk("n3", "id-n1", b"k"),
        psk("n4", "id-o", b"k"),
    ];
    let refused = c.check_batch(&bad);
    let got: Vec<(usize, String)> = refused.iter().map(|(i, e)| (*i, e.to_string())).collect();
    assert_eq!(got.len(), 4, "{got:?}");
    assert_eq!(got[0].0, 1);
    assert!(got[0].1.contains("PSK identity"), "{got:?}");
    assert!(
        got[1].0 == 2 && got[1].1.contains("more than once"),
        "{got:?}"
    );
    assert!(got[2].0 == 3 && got[2].1.contains("also given to endpoint \"n1\""));
    assert!(
        matches!(&refused[3], (4, CredentialError::Conflict { endpoint, .. }) if endpoint == "outsider"),
        "{got:?}"
    );
    assert!(c.add_batch(&store, &key, bad, Vec::new()).is_err());
    assert!(!c.has_credential("n1"));

    // Rotation of a, a swap of identities between a and b (fine within one batch: each
    // lets go of its old one), and a new endpoint.
    let batch = vec![
        psk("a", "id-b", b"ka2"),
        psk("b", "id-a", b"kb2"),
        psk("c", "id-c", b"kc"),
    ];
    assert!(c.check_batch(&batch).is_empty());
    let note = (Table::Audit, b"note".to_vec(), b"x".to_vec());
    let replaced = c.add_batch(&store, &key, batch, vec![note]).unwrap();
    let mut ids: Vec<_> = replaced.iter().map(|r| r.secret.public_id()).collect();
    ids.sort();
    assert_eq!(ids, ["id-a", "id-b"]);
    assert_eq!(c.psk(b"id-b"), Some(("a", &b"ka2"[..])));
    assert_eq!(c.psk(b"id-a"), Some(("b", &b"kb2"[..])));
    assert_eq!(c.psk(b"id-c"), Some(("c", &b"kc"[..])));
    assert_eq!(c.len(), 4);
    store.flush().await.unwrap();
    assert_eq!(
        store.get(Table::Audit, b"note").unwrap(),
        Some(b"x".to_vec())
    );
    let reloaded = Credentials::load(&store, &key).unwrap();
    assert_eq!(reloaded.list(), c.list());
    assert_eq!(reloaded.psk(b"id-a"), Some(("b", &b"kb2"[..])));
    store.close().unwrap();
}

#[test]
fn parsing_helpers_refuse_bad_input() {
    assert_eq!(parse_psk_key_hex(" 00ff10 ").unwrap(), vec![0, 0xff, 0x10]);
    for (bad, says) in [
        ("", "empty"),
        ("abc", "odd"),
        ("zz", "hex"),
        (&"00".repeat(65), "1 to 64 bytes"),
    ] {
        let e = parse_psk_key_hex(bad).unwrap_err().to_string();
        assert!(e.contains(says), "{bad:?}: {e}");
    }
    assert_eq!(parse_psk_key_hex(&"ab".repeat(64)).unwrap().len(), 64);

    let dir = tempfile::tempdir().unwrap();
    let e = read_public_key_pem(&pem_file(dir.path(), "ed.pem", ED25519_PEM))
        .unwrap_err()
        .to_string();
    assert!(e.contains("P-256"), "{e}");
    let e = read_public_key_pem(&pem_file(dir.path(), "c.pem", CERT_PEM))
        .unwrap_err()
        .to_string();
    assert!(e.contains("BEGIN PUBLIC KEY"), "{e}");
    let e = read_certificate_pem(&pem_file(dir.path(), "k.pem", RPK_PEM))
        .unwrap_err()
        .to_string();
    assert!(e.contains("BEGIN CERTIFICATE"), "{e}");
    let e = read_certificate_pem(&dir.path().join("missing.pem"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing.pem"), "{e}");

    assert!(validate_endpoint("urn:imei:123456789012345").is_ok());
    assert!(validate_endpoint("").is_err());
    assert!(validate_endpoint("a\0b").is_err());
    assert!(validate_endpoint(&"e".repeat(253)).is_err());
    let e = validate(
        "ok",
        &Secret::Psk {
            identity: vec![],
            key: vec![1],
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("PSK identity"), "{e}");
    assert!(validate(
        "ok",
        &Secret::X509 {
            cert_der: vec![1, 2]
        }
    )
    .is_err());
}

#[test]
fn new_credential_json_shape() {
    let n: NewCredential =
        serde_json::from_str(r#"{"endpoint":"E","kind":"psk","identity":"I","key":"0a0B"}"#)
            .unwrap();
    assert_eq!(
        n.secret,
        Secret::Psk {
            identity: b"I".to_vec(),
            key: vec![10, 11]
        }
    );
    let back = serde_json::to_value(&n).unwrap();
    assert_eq!(back["key"], "0a0b");
    assert_eq!(back["kind"], "psk");
    assert!(serde_json::from_str::<NewCredential>(
        r#"{"endpoint":"E","kind":"psk","identity":"I","key":"0g"}"#
    )
    .is_err());
    assert!(serde_json::from_str::<NewCredential>(r#"{"endpoint":"E","kind":"nope"}"#).is_err());
    assert_eq!(display_identity(b"\x00\x01"), "0x0001");
}

/// Writes a record as `encode_record` does, under `store_key`, bypassing every check.
fn put_raw(store: &Store, store_key: &str, bytes: Vec<u8>) {
    store
        .put(Table::Credentials, store_key.as_bytes().to_vec(), bytes)
        .unwrap();
}

#[tokio::test]
async fn unreadable_or_out_of_range_records_are_skipped_and_lock_their_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.redb"), StoreConfig::default()).unwrap();
    let key = SecretsKey::generate().unwrap();
    let mut c = Credentials::new();
    c.add(&store, &key, psk("good", "id-good", b"k")).unwrap();
    put_raw(&store, "garbled", b"\xff\x00 not cbor".to_vec());
    let long_key = psk("long-key", "id-long", &[7; MAX_PSK_KEY_LEN + 1]);
    put_raw(
        &store,
        "long-key",
        encode_record(CredentialSet::Devices, &key, &long_key),
    );
    let no_identity = psk("no-identity", "", b"k");
    put_raw(
        &store,
        "no-identity",
        encode_record(CredentialSet::Devices, &key, &no_identity),
    );
    let moved = psk("elsewhere", "id-moved", b"k");
    put_raw(
        &store,
        "moved",
        encode_record(CredentialSet::Devices, &key, &moved),
    );
    let odd_rpk = DeviceCredential {
        endpoint: "odd-rpk".into(),
        secret: Secret::Rpk {
            spki_der: vec![0x30; 10],
        },
        added_at: SystemTime::now(),
    };
    put_raw(
        &store,
        "odd-rpk",
        encode_record(CredentialSet::Devices, &key, &odd_rpk),
    );
    let future = DeviceCredential {
        added_at: SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(u32::MAX) * 1000),
        ..psk("future", "id-future", b"k")
    };
    put_raw(
        &store,
        "future",
        encode_record(CredentialSet::Devices, &key, &future),
    );
    store.flush().await.unwrap();

    let mut c = Credentials::load(&store, &key).unwrap();
    assert_eq!(c.unreadable(), 5, "every bad record is counted");
    assert_eq!(c.psk(b"id-good"), Some(("good", &b"k"[..])));
    assert!(
        c.get("future").is_some(),
        "added_at is only shown: any time is taken"
    );
    for locked in ["garbled", "long-key", "no-identity", "moved", "odd-rpk"] {
        assert!(c.has_credential(locked), "{locked} must still use DTLS");
        assert!(c.get(locked).is_none(), "{locked} has no usable credential");
    }
    assert_eq!(
        c.locked(),
        ["garbled", "long-key", "moved", "no-identity", "odd-rpk"]
    );
    assert_eq!(c.psk(b"id-long"), None);
    // A new credential unlocks; a revocation removes the record and unlocks.
    c.add(&store, &key, psk("garbled", "id-new", b"k2"))
        .unwrap();
    assert_eq!(c.psk(b"id-new"), Some(("garbled", &b"k2"[..])));
    assert!(c.revoke(&store, "moved").unwrap().is_none());
    assert!(!c.has_credential("moved"));
    store.flush().await.unwrap();
    let c = Credentials::load(&store, &key).unwrap();
    assert_eq!(c.unreadable(), 3);
    assert_eq!(c.locked(), ["long-key", "no-identity", "odd-rpk"]);
    store.close().unwrap();
}

#[tokio::test]
async fn two_records_claiming_one_identity_lock_both_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.redb"), StoreConfig::default()).unwrap();
    let key = SecretsKey::generate().unwrap();
    for ep in ["a", "b"] {
        put_raw(
            &store,
            ep,
            encode_record(CredentialSet::Devices, &key, &psk(ep, "shared", b"k")),
        );
    }
    put_raw(
        &store,
        "c",
        encode_record(CredentialSet::Devices, &key, &psk("c", "own", b"k")),
    );
    store.flush().await.unwrap();
    let c = Credentials::load(&store, &key).unwrap();
    assert_eq!(c.unreadable(), 2);
    assert_eq!(c.psk(b"shared"), None, "neither may use it");
    assert!(c.has_credential("a") && c.has_credential("b"));
    assert_eq!(c.psk(b"own"), Some(("c", &b"k"[..])));
    store.close().unwrap();
}

#[tokio::test]
async fn a_sealed_psk_that_does_not_open_beside_ones_that_do_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.redb"), StoreConfig::default()).unwrap();
    let key = SecretsKey::generate().unwrap();
    let other = SecretsKey::generate().unwrap();
    put_raw(
        &store,
        "ok",
        encode_record(CredentialSet::Devices, &key, &psk("ok", "id-ok", b"k")),
    );
    put_raw(
        &store,
        "alien",
        encode_record(CredentialSet::Devices, &other, &psk("alien", "id-a", b"k")),
    );
    store.flush().await.unwrap();
    // The key opens one PSK, so it is the right key and the other record is damaged.
    let c = Credentials::load(&store, &key).unwrap();
    assert_eq!(c.unreadable(), 1);
    assert!(c.has_credential("alien") && c.psk(b"id-a").is_none());
    // A key that opens none is the wrong key: that stops the start.
    let e = Credentials::load(&store, &SecretsKey::generate().unwrap()).unwrap_err();
    assert!(e.to_string().contains("secrets key does not match"), "{e}");
    store.close().unwrap();
}

#[test]
fn new_endpoint_names_are_one_mqtt_topic_level() {
    for bad in ["a/b", "a+", "#", "dev/"] {
        let e = validate_endpoint(bad).unwrap_err().to_string();
        assert!(
            e.contains("endpoint name") && e.contains("'/'"),
            "{bad}: {e}"
        );
    }
    assert!(validate_endpoint("urn:dev:ops:32473-Widget 1").is_ok());
}

/// A bootstrap-server PSK is sealed for its set: copied into the device table it does not
/// open (its endpoint is locked there), so a store edit cannot turn a factory bootstrap key
/// into a key for the LwM2M server.
#[tokio::test]
async fn a_sealed_psk_opens_only_in_its_own_set() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.redb"), StoreConfig::default()).unwrap();
    let key = SecretsKey::generate().unwrap();
    let mut devices = Credentials::load(&store, &key).unwrap();
    devices
        .add(&store, &key, psk("dev-ok", "id-ok", b"k-ok"))
        .unwrap();
    let mut boot = Credentials::load_bootstrap(&store, &key, &devices).unwrap();
    boot.add(&store, &key, psk("dev-1", "f-1", b"factory"))
        .unwrap();
    store.flush().await.unwrap();
    let raw = store
        .get(Table::BootstrapCredentials, b"dev-1")
        .unwrap()
        .unwrap();
    store
        .put(Table::Credentials, b"dev-1".to_vec(), raw)
        .unwrap();
    store.flush().await.unwrap();
    let devices = Credentials::load(&store, &key).unwrap();
    assert!(devices.psk(b"f-1").is_none());
    assert_eq!(devices.unreadable(), 1);
    assert!(devices.has_credential("dev-1"), "locked, not open to NoSec");
    assert_eq!(devices.psk(b"id-ok"), Some(("dev-ok", &b"k-ok"[..])));
    let boot = Credentials::load_bootstrap(&store, &key, &devices).unwrap();
    assert_eq!(boot.psk(b"f-1"), Some(("dev-1", &b"factory"[..])));
    assert_eq!(boot.unreadable(), 0);
    store.close().unwrap();
}
