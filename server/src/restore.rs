//! What a start reads back from the store, in one sequence the startup calls and the tests
//! call the same way: device and bootstrap-server credentials (and the deny list), DTLS sessions, the core's registrations,
//! observations and queued commands, the firmware packages, the MQTT bridge's outbox, requests and shadows.
//!
//! Nothing read back may stop the server (a corrupt or hostile store is input like any other): each
//! record is checked against the ranges its writer keeps to, and one that fails is skipped,
//! counted, logged with its table and key, and (except a credential, which locks its endpoint
//! instead, see [`Credentials::load`]) deleted. What still fails the start is what no record can
//! cause: a store that cannot be read, or a secrets key that opens none of the stored PSKs.
use crate::bridge::sink::Bridge;
use crate::config::Config;
use crate::core::persist::MAX_STORED_ID;
use crate::core::types::Link;
use crate::core::{RestoreReport, ServerCore};
use crate::provisioning::credentials::Credentials;
use crate::provisioning::secrets::SecretsKey;
use crate::store::{display_key, Store, Table};
use anyhow::Context;
use lwm2m::model::Registry;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

/// What a start brought back from the store.
pub(crate) struct Restored {
    /// The device credentials (some endpoints possibly locked, see [`Credentials::load`]).
    pub(crate) credentials: Credentials,
    /// The bootstrap server's credentials, sharing the device credentials' deny list.
    pub(crate) bootstrap_credentials: Credentials,
    /// DTLS sessions restored.
    pub(crate) sessions: usize,
    /// The core's registrations, observations and queued commands.
    pub(crate) core: RestoreReport,
    /// The MQTT bridge's state, if the bridge is enabled.
    pub(crate) bridge: Option<Bridge>,
    /// The firmware packages whose files are intact.
    pub(crate) firmware: crate::firmware::packages::Loaded,
    /// Records skipped over every table: unreadable, out of range, or belonging to nothing
    /// that was restored.
    pub(crate) skipped: usize,
}

/// Reads back what a previous run stored, in the order the start needs it: the credentials
/// first (sessions are kept only for endpoints that still have one), then the DTLS sessions
/// into `dtls` (so the core knows who its restored peers are), then the core's state, then
/// the bridge's, trimmed to the commands and observations the core has.
#[allow(clippy::too_many_arguments)]
pub(crate) fn restore_state(
    config: &Config,
    store: &Store,
    secrets: &SecretsKey,
    core: &mut ServerCore<Link>,
    dtls: Option<&mut dtls::Server>,
    stale: &HashSet<String>,
    schema: Arc<Registry>,
    now: Instant,
) -> anyhow::Result<Restored> {
    let mut credentials =
        Credentials::load(store, secrets).context("loading device credentials")?;
    credentials.set_pki(crate::provisioning::security::pki_naming(config));
    let bootstrap_credentials = Credentials::load_bootstrap(store, secrets, &credentials)
        .context("loading bootstrap-server credentials")?;
    let (sessions, sessions_skipped) = match dtls {
        Some(server) => restore_sessions(server, store, secrets, &credentials, stale, core),
        None => (0, 0),
    };
    let entries = |t: Table| store.scan(t, b"").context("reading the store");
    let report = core.restore_entries(
        now,
        entries(Table::Registrations)?,
        entries(Table::Observations)?,
        entries(Table::Queue)?,
    );
    let firmware = crate::firmware::packages::load(
        store,
        &crate::firmware::packages::package_dir(&config.server.data_dir),
        config.firmware.max_total_bytes,
    )
    .context("loading firmware packages")?;
    let mut bridge = crate::bridge::open_state(config, store, schema)?;
    let mut bridge_skipped = 0;
    if let Some(b) = bridge.as_mut() {
        let (commands, observations) = core.restored_ids();
        bridge_skipped = b.skipped() + b.forget_unknown(&commands, &observations);
    }
    let skipped = credentials.unreadable()
        + bootstrap_credentials.unreadable()
        + sessions_skipped
        + report.unreadable
        + firmware.unreadable
        + bridge_skipped;
    if skipped > 0 {
        tracing::warn!(
            skipped,
            locked = ?credentials.locked(),
            bootstrap_locked = ?bootstrap_credentials.locked(),
            "stored records skipped at start (each logged above)"
        );
    }
    Ok(Restored {
        credentials,
        bootstrap_credentials,
        sessions,
        core: report,
        firmware,
        bridge,
        skipped,
    })
}

/// Loads the DTLS sessions a previous run saved; returns how many were restored and how many
/// records were skipped. A session whose credential is gone (revoked while the server was
/// down, or locked) is dropped, not restored; so is one of a device known only through the
/// trusted CA, whose certificate a new handshake judges again (against the deny list and the
/// CA of this run). Dropped and skipped sessions are deleted: the
/// device only needs a new handshake.
fn restore_sessions(
    server: &mut dtls::Server,
    store: &Store,
    secrets: &SecretsKey,
    creds: &Credentials,
    stale: &HashSet<String>,
    core: &mut ServerCore<Link>,
) -> (usize, usize) {
    let entries = match store.scan(Table::Sessions, b"") {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(error = %e, "DTLS sessions not restored: the store could not be read");
            return (0, 0);
        }
    };
    let mut restored = 0;
    let mut skipped = 0;
    for (key, sealed) in entries {
        let id = <[u8; 8]>::try_from(key.as_slice())
            .ok()
            .map(u64::from_be_bytes)
            .filter(|id| (1..=MAX_STORED_ID).contains(id));
        let conn = match id {
            None => Err(format!(
                "the key is not a connection id in 1..={MAX_STORED_ID}"
            )),
            Some(id) => secrets
                .open(&key, &sealed)
                .map_err(|e| e.to_string())
                .and_then(|bytes| server.restore_session(&bytes).map_err(|e| e.to_string()))
                .and_then(|conn| {
                    if conn.0 == id {
                        Ok(conn)
                    } else {
                        server.close(conn);
                        Err(format!(
                            "the session is connection {}, not its key's",
                            conn.0
                        ))
                    }
                }),
        };
        let conn = match conn {
            Ok(c) => c,
            Err(reason) => {
                skipped += 1;
                tracing::warn!(table = Table::Sessions.name(), key = %display_key(&key), reason, "stored DTLS session skipped and deleted");
                let _ = store.delete(Table::Sessions, key);
                continue;
            }
        };
        let principal = server.principal(conn).cloned();
        // A credential changed elsewhere while this node was down (the cluster's admin log):
        // the device handshakes again with its current key.
        let known = principal
            .as_deref()
            .is_some_and(|p| creds.get(p).is_some() && !stale.contains(p));
        match (principal, server.peer(conn)) {
            (Some(p), Some(addr)) if known => {
                core.peer_authenticated(Link::Dtls(conn), p, addr);
                restored += 1;
            }
            _ => {
                server.close(conn);
                let _ = store.delete(Table::Sessions, key);
            }
        }
    }
    // Closing restored sessions queued alerts and events nobody needs.
    while server.poll_transmit().is_some() {}
    while server.poll_event().is_some() {}
    (restored, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bridge::outbox::{self, Message};
    use crate::bridge::shadow::Doc;
    use crate::core::persist::{
        self, ObservationRecord, QueuedRecord, RegistrationRecord, StoreOp,
    };
    use crate::core::types::{CommandId, ObservationId};
    use crate::core::CoreConfig;
    use crate::provisioning::audit::{self, AuditEvent, AuditKind, AuditRecord};
    use crate::provisioning::credentials::record::CredentialRecord;
    use crate::provisioning::credentials::tests::psk;
    use crate::store::StoreConfig;
    use lwm2m::content::ContentFormat;
    use lwm2m::model::Path;
    use lwm2m::ops::dm::DownlinkRequest;
    use proptest::prelude::*;
    use std::collections::BTreeSet;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    /// The wall-clock time of every test start: fixed, so expiry does not depend on the day.
    const WALL_NOW_SECS: u64 = 1_800_000_000;
    /// The device whose records are valid.
    const EP: &str = "dev-ok";
    /// A denied endpoint.
    const DENIED: &str = "dev-denied";
    /// Its queued command's and its observation's ids.
    const QUEUED_ID: u64 = (WALL_NOW_SECS * 1000 - 60_000) << 8;
    const OBSERVATION_ID: u64 = QUEUED_ID + 1;
    const TOKEN: &[u8] = b"\x01\x02\x03\x04";

    fn wall_now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(WALL_NOW_SECS)
    }

    fn config() -> Config {
        Config::parse("[mqtt]\nenabled = true\n").unwrap()
    }

    /// A request as the core stores it: the CoAP packet without token and message id.
    fn stored_request(request: &DownlinkRequest) -> Vec<u8> {
        let mut p = request.to_coap(ContentFormat::Tlv).unwrap();
        p.set_token(Vec::new());
        p.to_bytes_unlimited().unwrap()
    }

    /// One valid record in every table a start reads, written the way the server writes
    /// them; returns their keys, which the garbage must not overwrite.
    fn write_valid(store: &Store, key: &SecretsKey) -> BTreeSet<(Table, Vec<u8>)> {
        let mut keys = BTreeSet::new();
        let mut creds = Credentials::new();
        creds
            .add(store, key, psk(EP, "id-ok", b"0123456789abcdef"))
            .unwrap();
        keys.insert((Table::Credentials, EP.as_bytes().to_vec()));
        let mut bootstrap = Credentials::empty_bootstrap(&creds);
        bootstrap
            .add(store, key, psk(EP, "factory-ok", b"fedcba9876543210"))
            .unwrap();
        keys.insert((Table::BootstrapCredentials, EP.as_bytes().to_vec()));
        creds.deny(store, DENIED).unwrap();
        keys.insert((Table::DeniedEndpoints, DENIED.as_bytes().to_vec()));
        let (conn, saved) = established_session(&creds);
        let session_key = conn.to_be_bytes().to_vec();
        store
            .put(
                Table::Sessions,
                session_key.clone(),
                key.seal(&session_key, &saved),
            )
            .unwrap();
        keys.insert((Table::Sessions, session_key));
        let rec = RegistrationRecord {
            endpoint: EP.into(),
            location: "/rd/00000000000000aa".into(),
            address: "192.0.2.1:5683".into(),
            lifetime: 86_400,
            version: "1.1".into(),
            binding: "U".into(),
            queue_mode: true,
            sms: None,
            links: "</3/0>".into(),
            registered_at_ms: (WALL_NOW_SECS - 120) * 1000,
            updated_at_ms: (WALL_NOW_SECS - 60) * 1000,
            peer: None,
        };
        let put = |keys: &mut BTreeSet<_>, t: Table, k: Vec<u8>, v: Vec<u8>| {
            keys.insert((t, k.clone()));
            store.put(t, k, v).unwrap();
        };
        put(
            &mut keys,
            Table::Registrations,
            EP.as_bytes().to_vec(),
            persist::encode(&rec),
        );
        let observe = DownlinkRequest::Observe {
            path: Path::resource(3, 0, 9),
        };
        put(
            &mut keys,
            Table::Observations,
            persist::sub_key(EP, TOKEN),
            persist::encode(&ObservationRecord {
                endpoint: EP.into(),
                id: OBSERVATION_ID,
                token: TOKEN.to_vec(),
                request: stored_request(&observe),
            }),
        );
        let read = DownlinkRequest::Read {
            path: Path::resource(3, 0, 0),
        };
        put(
            &mut keys,
            Table::Queue,
            persist::sub_key(EP, &QUEUED_ID.to_be_bytes()),
            persist::encode(&QueuedRecord {
                id: QUEUED_ID,
                endpoint: EP.into(),
                request: stored_request(&read),
                timeout_ms: Some(30_000),
                expires_at_ms: (WALL_NOW_SECS + 3600) * 1000,
            }),
        );
        let message = Message {
            topic: "lwm2m/dev-ok/up/register".into(),
            payload: br#"{"msgType":"register","msgId":"1"}"#.to_vec(),
        };
        put(
            &mut keys,
            Table::Outbox,
            outbox::key(1).to_vec(),
            minicbor::to_vec(&message).unwrap(),
        );
        let mut k = b"req/".to_vec();
        k.extend_from_slice(&QUEUED_ID.to_be_bytes());
        put(
            &mut keys,
            Table::Bridge,
            k,
            br#"{"req_id":7,"msg_type":"read","path":"/3/0/0"}"#.to_vec(),
        );
        let mut k = b"obs/".to_vec();
        k.extend_from_slice(&OBSERVATION_ID.to_be_bytes());
        put(
            &mut keys,
            Table::Bridge,
            k,
            br#"{"endpoint":"dev-ok","path":"/3/0/9","req_id":"r-8"}"#.to_vec(),
        );
        let mut doc = Doc::default();
        doc.desired
            .insert("/3/0/14".into(), serde_json::json!("+02:00"));
        put(
            &mut keys,
            Table::Bridge,
            b"shadow/dev-ok".to_vec(),
            serde_json::to_vec(&doc).unwrap(),
        );
        let (_, k, v) = audit::entry(&AuditEvent::new(AuditKind::CredentialAdded, "valid"));
        put(&mut keys, Table::Audit, k, v);
        keys
    }

    /// A DTLS session of the valid device, handshaken in memory and saved as the server saves
    /// it at shutdown: its connection id and bytes.
    fn established_session(creds: &Credentials) -> (u64, Vec<u8>) {
        let now = Instant::now();
        let peer: std::net::SocketAddr = "192.0.2.1:40000".parse().unwrap();
        let roots = dtls::pki::Roots::default();
        let lookup = crate::provisioning::security::Lookup {
            creds,
            roots: &roots,
        };
        let mut server = dtls::Server::new(
            crate::provisioning::security::dtls_config(
                &config(),
                None,
                (Instant::now(), SystemTime::now()),
            ),
            [3; 32],
        );
        let client_config = dtls::ClientConfig::psk(&b"id-ok"[..], &b"0123456789abcdef"[..]);
        let mut client = dtls::client::Client::connect(Arc::new(client_config), now, [4; 32], None);
        for _ in 0..20 {
            while let Some(d) = client.poll_transmit() {
                server.handle_datagram(now, peer, &d, &lookup);
            }
            while let Some((_, d)) = server.poll_transmit() {
                client.handle_datagram(now, &d);
            }
            while let Some(ev) = server.poll_event() {
                if let dtls::ServerEvent::Established { conn, .. } = ev {
                    if let Some(saved) = server.save_session(conn) {
                        return (conn.0, saved);
                    }
                }
            }
        }
        panic!("the in-memory handshake did not complete");
    }

    /// Arbitrary bytes for a key or a value.
    fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..max)
    }

    /// A number that is often at an edge of its type.
    fn extreme_u64() -> impl Strategy<Value = u64> {
        prop_oneof![
            Just(0u64),
            Just(1),
            Just(u64::MAX),
            Just(u64::MAX - 1),
            Just(1 << 62),
            Just((1 << 62) + 1),
            Just(u64::from(u32::MAX)),
            Just(WALL_NOW_SECS * 1000),
            any::<u64>(),
        ]
    }

    /// A time stamp in milliseconds: around now, far in the past or the future, or extreme.
    fn time_ms() -> impl Strategy<Value = u64> {
        let now = WALL_NOW_SECS * 1000;
        prop_oneof![
            (now - 10_000_000_000..now + 10_000_000_000),
            Just(now + 86_400_000),
            Just(now + 86_400_001),
            extreme_u64(),
        ]
    }

    fn extreme_u32() -> impl Strategy<Value = u32> {
        prop_oneof![Just(0u32), Just(1), Just(u32::MAX), any::<u32>()]
    }

    /// Text that is sometimes fine, sometimes empty, long, or full of control characters.
    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z0-9-]{1,12}",
            Just(String::new()),
            Just("x".repeat(300)),
            Just("a\0b".to_string()),
            Just("a/+#".to_string()),
            any::<String>(),
        ]
    }

    /// A stored request: a valid one, or bytes.
    fn request() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(stored_request(&DownlinkRequest::Read {
                path: Path::resource(3, 0, 1)
            })),
            Just(stored_request(&DownlinkRequest::Observe {
                path: Path::resource(3, 0, 13)
            })),
            bytes(64),
            Just(vec![0x40; 5000]),
        ]
    }

    /// An endpoint for a well-typed record: the valid device (so the record meets a
    /// registered device) or another name.
    fn endpoint() -> impl Strategy<Value = String> {
        prop_oneof![Just(EP.to_string()), text()]
    }

    /// A well-typed record with extreme values for one table, as (key, value).
    fn typed(table: Table) -> BoxedStrategy<(Vec<u8>, Vec<u8>)> {
        match table {
            Table::Registrations => (
                ("x-[a-z]{1,8}", "[0-9a-f]{16}", any::<u16>(), extreme_u32()),
                (time_ms(), time_ms(), any::<bool>()),
                (0u8..10, text()),
            )
                .prop_map(
                    |((ep, id, port, lifetime), (r, u, queue_mode), (broken, bad))| {
                        // A registration the server could have written, with extreme numbers,
                        // and now and then one field replaced by bad text.
                        let mut rec = RegistrationRecord {
                            endpoint: ep,
                            location: format!("/rd/{id}"),
                            address: format!("198.51.100.7:{port}"),
                            lifetime,
                            version: "1.1".into(),
                            binding: "UQ".into(),
                            queue_mode,
                            sms: None,
                            links: "</3/0>,</1/0>".into(),
                            registered_at_ms: r,
                            updated_at_ms: u,
                            peer: None,
                        };
                        match broken {
                            1 => rec.endpoint = bad,
                            2 => rec.location = bad,
                            3 => rec.address = bad,
                            4 => rec.version = bad,
                            5 => rec.binding = bad,
                            6 => rec.links = bad,
                            7 => rec.sms = Some(bad),
                            8 => rec.peer = Some(bad),
                            _ => {}
                        }
                        (rec.endpoint.as_bytes().to_vec(), persist::encode(&rec))
                    },
                )
                .boxed(),
            Table::Observations => (
                endpoint(),
                extreme_u64(),
                bytes(12),
                request(),
                any::<bool>(),
            )
                .prop_map(|(endpoint, id, token, request, keyed)| {
                    let key = if keyed {
                        persist::sub_key(&endpoint, &token)
                    } else {
                        token.clone()
                    };
                    let rec = ObservationRecord {
                        endpoint,
                        id,
                        token,
                        request,
                    };
                    (key, persist::encode(&rec))
                })
                .boxed(),
            Table::Queue => (
                endpoint(),
                extreme_u64(),
                request(),
                proptest::option::of(extreme_u64()),
                extreme_u64(),
            )
                .prop_map(|(endpoint, id, request, timeout_ms, expires_at_ms)| {
                    let key = persist::sub_key(&endpoint, &id.to_be_bytes());
                    let rec = QueuedRecord {
                        id,
                        endpoint,
                        request,
                        timeout_ms,
                        expires_at_ms,
                    };
                    (key, persist::encode(&rec))
                })
                .boxed(),
            Table::FirmwareCampaigns => (bytes(24), bytes(200)).boxed(),
            Table::DeniedEndpoints => (endpoint(), bytes(12))
                .prop_map(|(endpoint, at)| (endpoint.into_bytes(), at))
                .boxed(),
            Table::Credentials | Table::BootstrapCredentials => (
                endpoint(),
                prop_oneof![
                    Just("psk".to_string()),
                    Just("rpk".to_string()),
                    Just("x509".to_string()),
                    text()
                ],
                bytes(200),
                bytes(200),
                extreme_u64(),
            )
                .prop_map(|(endpoint, kind, identity, data, added_at_ms)| {
                    let key = endpoint.as_bytes().to_vec();
                    let rec = CredentialRecord {
                        endpoint,
                        kind,
                        identity,
                        data,
                        added_at_ms,
                    };
                    (key, minicbor::to_vec(&rec).unwrap())
                })
                .boxed(),
            Table::Outbox => (
                extreme_u64(),
                text(),
                prop_oneof![bytes(64), Just(vec![b'x'; (1 << 20) + 1])],
            )
                .prop_map(|(seq, topic, payload)| {
                    let m = Message { topic, payload };
                    (outbox::key(seq).to_vec(), minicbor::to_vec(&m).unwrap())
                })
                .boxed(),
            Table::Bridge => {
                let json = prop_oneof![
                    Just(serde_json::json!(1)),
                    Just(serde_json::json!(-1.5e308)),
                    Just(serde_json::json!("r")),
                    Just(serde_json::json!([[[[]]]])),
                    Just(serde_json::json!({"a": {"b": null}})),
                    Just(serde_json::Value::Null),
                    Just(serde_json::json!(u64::MAX)),
                ];
                (
                    prop_oneof![Just(&b"req/"[..]), Just(&b"obs/"[..]), Just(&b"shadow/"[..])],
                    extreme_u64(),
                    endpoint(),
                    json,
                    prop_oneof![Just("read".to_string()), text()],
                    proptest::option::of(prop_oneof![Just("/3/0/1".to_string()), text()]),
                    0usize..300,
                )
                    .prop_map(|(prefix, id, endpoint, req_id, msg_type, path, desired)| {
                        let mut key = prefix.to_vec();
                        let value = match prefix {
                            b"req/" => {
                                key.extend_from_slice(&id.to_be_bytes());
                                serde_json::json!({"req_id": req_id, "msg_type": msg_type, "path": path})
                            }
                            b"obs/" => {
                                key.extend_from_slice(&id.to_be_bytes());
                                serde_json::json!({"endpoint": endpoint, "path": path, "req_id": req_id})
                            }
                            _ => {
                                key.extend_from_slice(endpoint.as_bytes());
                                let desired: serde_json::Map<String, serde_json::Value> = (0
                                    ..desired)
                                    .map(|i| {
                                        let p = match &path {
                                            Some(p) if i == 0 => p.clone(),
                                            _ => format!("/3/0/{}", 1000 + i),
                                        };
                                        (p, req_id.clone())
                                    })
                                    .collect();
                                serde_json::json!({"desired": desired, "reported": {}})
                            }
                        };
                        (key, serde_json::to_vec(&value).unwrap())
                    })
                    .boxed()
            }
            Table::Sessions => (extreme_u64(), bytes(300))
                .prop_map(|(id, bytes)| (id.to_be_bytes().to_vec(), bytes))
                .boxed(),
            Table::Audit => (extreme_u64(), text(), proptest::option::of(text()), text())
                .prop_map(|(at_ns, kind, endpoint, detail)| {
                    let mut key = at_ns.to_be_bytes().to_vec();
                    key.extend_from_slice(&[0, 0, 0, 9]);
                    let rec = AuditRecord {
                        at_ns,
                        kind,
                        endpoint,
                        peer: None,
                        detail,
                    };
                    (key, minicbor::to_vec(&rec).unwrap())
                })
                .boxed(),
            Table::Meta => (bytes(16), bytes(64)).boxed(),
            Table::FirmwarePackages => (
                "[0-9a-f]{16}",
                "[0-9a-f]{64}",
                extreme_u64(),
                text(),
                extreme_u64(),
            )
                .prop_map(|(id, sha, size, version, ms)| {
                    let v = serde_json::json!({"v": 1, "sha256": sha, "size": size,
                        "version": version, "name": "", "added_ms": ms});
                    (id.into_bytes(), serde_json::to_vec(&v).unwrap())
                })
                .boxed(),
        }
    }

    /// What goes into one table: arbitrary bytes, bytes no reader can take (a CBOR break
    /// code first, which neither CBOR records nor JSON start with), and well-typed records.
    #[derive(Debug, Clone)]
    struct Garbage {
        table: Table,
        arbitrary: Vec<(Vec<u8>, Vec<u8>)>,
        unreadable: Vec<(Vec<u8>, Vec<u8>)>,
        typed: Vec<(Vec<u8>, Vec<u8>)>,
    }

    fn garbage(table: Table) -> impl Strategy<Value = Garbage> {
        let entry = || (bytes(40), bytes(200));
        (
            proptest::collection::vec(entry(), 0..3),
            proptest::collection::vec(entry(), 0..3),
            proptest::collection::vec(typed(table), 0..4),
        )
            .prop_map(move |(arbitrary, unreadable, typed)| Garbage {
                table,
                arbitrary,
                unreadable: unreadable
                    .into_iter()
                    .map(|(k, mut v)| {
                        v.insert(0, 0xff);
                        (k, v)
                    })
                    .collect(),
                typed,
            })
    }

    fn all_garbage() -> impl Strategy<Value = Vec<Garbage>> {
        Table::ALL.iter().map(|t| garbage(*t)).collect::<Vec<_>>()
    }

    /// The tables a start reads every record of.
    const READ_AT_START: [Table; 9] = [
        Table::Registrations,
        Table::Observations,
        Table::Queue,
        Table::Credentials,
        Table::BootstrapCredentials,
        Table::Sessions,
        Table::Outbox,
        Table::Bridge,
        Table::FirmwarePackages,
    ];

    /// A start as the runtime makes it, on the stored state, at the fixed test time; the
    /// core's store writes (its deletions of skipped records) are applied as the runtime
    /// applies them.
    fn start(store: &Store, secrets: &SecretsKey) -> (ServerCore<Link>, Restored) {
        let config = config();
        let now = Instant::now();
        let schema = Arc::new(Registry::bundled());
        let mut core = ServerCore::new(
            CoreConfig {
                rng_seed: 1,
                ..config.core()
            },
            schema.clone(),
            (now, wall_now()),
        );
        let mut server = dtls::Server::new(
            crate::provisioning::security::dtls_config(
                &config,
                None,
                (Instant::now(), SystemTime::now()),
            ),
            [5; 32],
        );
        let restored = restore_state(
            &config,
            store,
            secrets,
            &mut core,
            Some(&mut server),
            &HashSet::new(),
            schema,
            now,
        )
        .expect("a start never fails on what the store holds");
        while let Some(op) = core.poll_store() {
            match op {
                StoreOp::Put(t, k, v) => store.put(t, k, v).unwrap(),
                StoreOp::Delete(t, k) => store.delete(t, k).unwrap(),
                StoreOp::DeletePrefix(t, p) => store.delete_prefix(t, p).unwrap(),
            }
        }
        (core, restored)
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    /// Runs one case: the valid records and the garbage, then a start, then a second start.
    fn check(garbage: &[Garbage]) -> Result<(), TestCaseError> {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb"), StoreConfig::default()).unwrap();
        let secrets = SecretsKey::from_bytes([7; 32]);
        let valid = write_valid(&store, &secrets);
        let mut must_skip = 0;
        for g in garbage {
            let sealed: Vec<(Vec<u8>, Vec<u8>)> = if g.table == Table::Sessions {
                // Sealed with the right key, so the bytes reach the DTLS engine's parser.
                g.typed
                    .iter()
                    .map(|(k, v)| (k.clone(), secrets.seal(k, v)))
                    .collect()
            } else {
                g.typed.clone()
            };
            let mut written = BTreeSet::new();
            for (set, counted) in [
                (&g.arbitrary, false),
                (&g.unreadable, true),
                (&sealed, false),
            ] {
                for (k, v) in set {
                    if valid.contains(&(g.table, k.clone())) || !written.insert(k.clone()) {
                        continue;
                    }
                    store.put(g.table, k.clone(), v.clone()).unwrap();
                    if counted && READ_AT_START.contains(&g.table) {
                        must_skip += 1;
                    }
                }
            }
        }
        block_on(store.flush()).unwrap();

        let (core, first) = start(&store, &secrets);
        // Every valid record is back, whatever lies beside it.
        prop_assert_eq!(first.sessions, 1);
        prop_assert_eq!(
            first.credentials.psk(b"id-ok"),
            Some((EP, &b"0123456789abcdef"[..]))
        );
        prop_assert_eq!(
            first.bootstrap_credentials.psk(b"factory-ok"),
            Some((EP, &b"fedcba9876543210"[..]))
        );
        prop_assert!(first.credentials.is_denied(DENIED));
        prop_assert!(first.bootstrap_credentials.is_denied(DENIED));
        prop_assert!(core.registration(EP).is_some());
        let (commands, observations) = core.restored_ids();
        prop_assert!(commands.contains(&CommandId(QUEUED_ID)));
        prop_assert!(observations.contains(&ObservationId(OBSERVATION_ID)));
        let bridge = first.bridge.as_ref().expect("the bridge is enabled");
        prop_assert!(bridge.has_pending(CommandId(QUEUED_ID)));
        prop_assert!(bridge.has_observation(ObservationId(OBSERVATION_ID)));
        prop_assert!(bridge.has_shadow(EP));
        let sent = outbox::read(&store, 1, 1).unwrap();
        prop_assert_eq!(sent.first().map(|(seq, _)| *seq), Some(1));
        // Every record no reader can take is skipped and counted.
        prop_assert!(
            first.skipped >= must_skip,
            "{} skipped, at least {} expected",
            first.skipped,
            must_skip
        );
        prop_assert!(
            first.skipped
                >= first.credentials.unreadable()
                    + first.bootstrap_credentials.unreadable()
                    + first.core.unreadable
        );
        let (events, _) = audit::recent_counted(&store, 1000).unwrap();
        prop_assert!(events.iter().any(|e| e.detail == "valid"));
        drop(core);
        drop(first);
        block_on(store.flush()).unwrap();

        // What was skipped was deleted: a second start meets only what the first kept,
        // except the credentials, which stay (and keep their endpoints locked) until the
        // operator acts.
        let (core, second) = start(&store, &secrets);
        prop_assert_eq!(
            second.skipped,
            second.credentials.unreadable() + second.bootstrap_credentials.unreadable()
        );
        prop_assert_eq!(second.sessions, 1);
        prop_assert!(core.registration(EP).is_some());
        store.close().unwrap();
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

        /// Arbitrary bytes and well-typed records with extreme values in every table of the
        /// store: a start neither panics nor fails, restores every valid record beside them,
        /// and reports what it skipped.
        #[test]
        fn a_start_survives_any_store_content(garbage in all_garbage()) {
            check(&garbage)?;
        }
    }

    #[test]
    fn a_start_on_an_empty_store_restores_nothing_and_skips_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb"), StoreConfig::default()).unwrap();
        let (core, restored) = start(&store, &SecretsKey::from_bytes([1; 32]));
        assert_eq!(restored.skipped, 0);
        assert_eq!(core.device_count(), 0);
        assert!(restored.credentials.is_empty());
        assert_eq!(restored.sessions, 0);
        store.close().unwrap();
    }
}
