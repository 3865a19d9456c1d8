//! Two cluster nodes behind a balancer that moves a device to the other node mid-session (as
//! an address-sticky balancer does after a NAT rebinding): the device's DTLS records, whose
//! Connection ID names the first node, reach it through the second, and every answer comes
//! back from the address the device sent to — its Update succeeds, a Read from the first node
//! reaches it, and no new handshake happens.
use lwm2m::client::{ClientConfig, ClientEvent};
use lwm2m::model::{Path, Value};
use lwm2m::ops::dm::{DmResponse, DownlinkRequest};
use lwm2m_e2e_tests::{free_port, Device, TestServer};
use lwm2m_server::core::types::{Command, DeviceEvent};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::UdpSocket;
use tokio::sync::watch;

/// The balancer: one socket facing the device; for each backend it is switched to, a new
/// upstream socket (a new source port, as a balancer's UDP session to another node has).
/// Stops when dropped.
struct Balancer {
    addr: SocketAddr,
    to: watch::Sender<SocketAddr>,
    task: tokio::task::JoinHandle<()>,
}

impl Balancer {
    async fn start(first: SocketAddr) -> std::io::Result<Self> {
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
        let addr = front.local_addr()?;
        let (to, mut target) = watch::channel(first);
        let task = tokio::spawn(async move {
            let mut device = None;
            let mut buf = vec![0u8; 65_536];
            let mut up_buf = vec![0u8; 65_536];
            loop {
                let backend = *target.borrow_and_update();
                let Ok(up) = UdpSocket::bind("127.0.0.1:0").await else {
                    return;
                };
                if up.connect(backend).await.is_err() {
                    return;
                }
                loop {
                    tokio::select! {
                        r = front.recv_from(&mut buf) => {
                            let Ok((n, from)) = r else { return };
                            device = Some(from);
                            let _ = up.send(&buf[..n]).await;
                        }
                        r = up.recv(&mut up_buf) => {
                            let Ok(n) = r else { continue };
                            if let Some(d) = device {
                                let _ = front.send_to(&up_buf[..n], d).await;
                            }
                        }
                        r = target.changed() => {
                            if r.is_err() { return; }
                            break;
                        }
                    }
                }
            }
        });
        Ok(Self { addr, to, task })
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn node(
    dir: &std::path::Path,
    id: u8,
    internal: [u16; 2],
    secret: &std::path::Path,
) -> anyhow::Result<TestServer> {
    node_sharing(dir, id, internal, secret, None).await
}

/// A node of the two, sharing devices' state through the Redis at `store` if given.
async fn node_sharing(
    dir: &std::path::Path,
    id: u8,
    internal: [u16; 2],
    secret: &std::path::Path,
    store: Option<&str>,
) -> anyhow::Result<TestServer> {
    let (own, other) = if id == 1 {
        (internal[0], internal[1])
    } else {
        (internal[1], internal[0])
    };
    // The bootstrap server is refused beside a shared store (its credentials stay per node).
    let (store, bootstrap) = match store {
        Some(url) => (
            format!("store = \"{url}\"\n"),
            "[bootstrap]\nenabled = false\n",
        ),
        None => (String::new(), ""),
    };
    // Both nodes seal credentials with the same key, as the shared store requires.
    let key = secret.with_file_name("secrets.key");
    let extra = format!(
        "{bootstrap}[security]\nsecrets_key_file = \"{}\"\n[cluster]\nenabled = true\nnode_id = {id}\ninternal_bind = \"127.0.0.1:{own}\"\nsecret_file = \"{}\"\n{store}peers = [{{ node_id = {}, internal = \"127.0.0.1:{other}\" }}]\n",
        key.display(),
        secret.display(),
        3 - id,
    );
    TestServer::start(dir, 0, &extra).await
}

fn count(m: &[(&'static str, u64)], kind: &str) -> u64 {
    m.iter().find(|(k, _)| *k == kind).map_or(0, |(_, v)| *v)
}

/// Two nodes on fresh data directories sharing a secret, and a device `endpoint` (PSK `key`,
/// Connection ID asked for) registered with node 1 through a balancer.
struct Moving {
    dirs: [tempfile::TempDir; 2],
    secret: std::path::PathBuf,
    internal: [u16; 2],
    one: TestServer,
    two: TestServer,
    balancer: Balancer,
    dev: Device,
    /// The address node 1 registered the device from.
    first: String,
}

async fn moving(endpoint: &str, identity: &str, key: &[u8]) -> anyhow::Result<Moving> {
    let dirs = [tempfile::tempdir()?, tempfile::tempdir()?];
    let secret = dirs[0].path().join("cluster.secret");
    std::fs::write(
        &secret,
        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n",
    )?;
    let internal = [free_port(), free_port()];
    let mut one = node(dirs[0].path(), 1, internal, &secret).await?;
    let two = node(dirs[1].path(), 2, internal, &secret).await?;
    one.provision_psk(endpoint, identity, key).await;
    let balancer = Balancer::start(one.secure_addr).await?;
    let mut dtls = dtls::ClientConfig::psk(identity, key.to_vec());
    dtls.connection_id = Some(Vec::new());
    let mut dev = Device::start_secure(balancer.addr, ClientConfig::new(endpoint), dtls).await?;
    dev.registered().await;
    let first = one.registered(endpoint).await;
    Ok(Moving {
        dirs,
        secret,
        internal,
        one,
        two,
        balancer,
        dev,
        first,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_moved_to_another_node_keeps_its_session_and_registration() {
    // The data directories live as long as the nodes.
    let Moving {
        dirs: _dirs,
        mut one,
        two,
        balancer,
        mut dev,
        first,
        ..
    } = moving("moving-1", "id-m1", b"0123456789abcdef")
        .await
        .unwrap();

    // The balancer now sends the device to node 2, from a new source port.
    balancer.to.send(two.secure_addr).unwrap();
    dev.update().await;
    dev.wait_for(|e| matches!(e, ClientEvent::Updated).then_some(()))
        .await;
    let address = one
        .wait_for(|e| match e {
            DeviceEvent::Updated { registration } => Some(registration.address.clone()),
            _ => None,
        })
        .await;
    // Node 1 sees the device at the address node 2 saw: the balancer's new upstream socket.
    assert_ne!(address, first);

    // A command from the session's node reaches the device through node 2.
    let read = one
        .execute(Command::new(
            "moving-1",
            DownlinkRequest::Read {
                path: Path::instance(3, 0),
            },
        ))
        .await;
    assert!(matches!(read, Ok(DmResponse::Content { .. })), "{read:?}");

    let (m1, m2) = (one.handle().metrics(), two.handle().metrics());
    // One handshake, on node 1; node 2 holds no session and no registration.
    assert_eq!((m1.dtls_handshakes_ok, m2.dtls_handshakes_ok), (1, 0));
    assert_eq!((m1.registered_clients, m2.registered_clients), (1, 0));
    let (c1, c2) = (&m1.cluster_datagrams, &m2.cluster_datagrams);
    assert!(count(c2, "forwarded") >= 2, "{c2:?}"); // the Update and the Read's answer
    assert_eq!(count(c2, "forwarded"), count(c1, "taken"), "{c1:?} {c2:?}");
    assert!(count(c1, "answered_through") >= 2, "{c1:?}"); // the Update's answer, the Read
    assert_eq!(count(c1, "answered_through"), count(c2, "sent_for"));
    assert_eq!(count(c1, "rejected") + count(c2, "rejected"), 0);
    drop(balancer);
    dev.kill();
    one.stop().await;
    two.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_refuses_to_start_without_its_secret() {
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "[cluster]\nenabled = true\nnode_id = 1\ninternal_bind = \"127.0.0.1:{}\"\nsecret_file = \"{}\"\n",
        free_port(),
        dir.path().join("nope").display()
    );
    let e = TestServer::start(dir.path(), 0, &extra)
        .await
        .err()
        .unwrap();
    assert!(format!("{e:#}").contains("cluster secret"), "{e:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_takes_its_devices_back_through_the_other_node_without_a_handshake() {
    let Moving {
        dirs,
        secret,
        internal,
        one,
        two,
        balancer,
        mut dev,
        first: _,
    } = moving("moving-2", "id-m2", b"fedcba9876543210")
        .await
        .unwrap();
    balancer.to.send(two.secure_addr).unwrap();

    // Node 1 restarts (its sessions and registrations are in its store).
    one.stop().await;
    let mut one = node(dirs[0].path(), 1, internal, &secret).await.unwrap();
    dev.update().await;
    dev.wait_for(|e| matches!(e, ClientEvent::Updated).then_some(()))
        .await;
    one.wait_for(|e| matches!(e, DeviceEvent::Updated { .. }).then_some(()))
        .await;
    let m = one.handle().metrics();
    assert_eq!(m.dtls_handshakes_ok, 0, "{m:?}");
    assert_eq!(m.registered_clients, 1);
    assert!(count(&m.cluster_datagrams, "taken") >= 1);
    drop(balancer);
    dev.kill();
    one.stop().await;
    two.stop().await;
}

/// Whether the Redis at `url` holds `endpoint`'s registration (the node that registered it
/// mirrored it there).
async fn shared(url: &str, endpoint: &str) -> bool {
    let Ok(client) = redis::Client::open(url) else {
        return false;
    };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return false;
    };
    let key = format!("lwm2m:{{{endpoint}}}:dev");
    redis::cmd("HEXISTS")
        .arg(key)
        .arg("r")
        .query_async::<bool>(&mut conn)
        .await
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_whose_node_is_gone_keeps_its_registration_and_observation_on_another() {
    let redis = lwm2m_e2e_tests::RedisServer::start().await.unwrap();
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let secret = dirs[0].path().join("cluster.secret");
    std::fs::write(
        &secret,
        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n",
    )
    .unwrap();
    let internal = [free_port(), free_port()];
    let store = Some(redis.url.as_str());
    let mut one = node_sharing(dirs[0].path(), 1, internal, &secret, store)
        .await
        .unwrap();
    let mut two = node_sharing(dirs[1].path(), 2, internal, &secret, store)
        .await
        .unwrap();
    // Through node 1's admin log: node 2 learns the credential too.
    one.provision_psk("failover-1", "id-f1", b"0123456789abcdef")
        .await;
    let balancer = Balancer::start(one.secure_addr).await.unwrap();
    let mut dtls = dtls::ClientConfig::psk("id-f1", b"0123456789abcdef".to_vec());
    dtls.connection_id = Some(Vec::new());
    let mut config = ClientConfig::new("failover-1");
    // An unanswered Update is given up after about 1.5 s, not 93 s.
    config.coap.transmission.ack_timeout = std::time::Duration::from_millis(200);
    config.coap.transmission.max_retransmit = 2;
    let store_3303 = lwm2m_e2e_tests::sensor_store("failover-1", 21.0);
    let mut dev = Device::start_secure_with(balancer.addr, config, store_3303, dtls)
        .await
        .unwrap();
    dev.registered().await;
    one.registered("failover-1").await;
    let observed = one
        .execute(Command::new(
            "failover-1",
            DownlinkRequest::Observe {
                path: Path::resource(3303, 0, 5700),
            },
        ))
        .await;
    assert!(observed.is_ok(), "{observed:?}");
    let observation = one.observation_started().await;
    for _ in 0..100 {
        if shared(&redis.url, "failover-1").await {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(shared(&redis.url, "failover-1").await, "mirrored to Redis");

    // Node 1 goes away; the balancer sends the device to node 2. Its Update (under node 1's
    // Connection ID) goes unanswered, it handshakes with node 2 and tries the Update again.
    one.stop().await;
    balancer.to.send(two.secure_addr).unwrap();
    dev.update().await;
    dev.wait_for(|e| matches!(e, ClientEvent::Updated).then_some(()))
        .await;
    two.wait_for(|e| match e {
        DeviceEvent::Updated { registration } if registration.endpoint == "failover-1" => Some(()),
        DeviceEvent::Registered { .. } => panic!("registered anew: {e:?}"),
        _ => None,
    })
    .await;
    let m2 = two.handle().metrics();
    assert_eq!(m2.registered_clients, 1);
    assert_eq!(count(&m2.cluster_devices, "taken_over"), 1, "{m2:?}");
    assert_eq!(
        m2.dtls_handshakes_ok, 1,
        "the device handshook with node 2 once"
    );

    // Its observation goes on at node 2, under the id node 1 gave it.
    dev.with(|c, now| {
        let _ = c.set_value(now, &Path::resource(3303, 0, 5700), Value::Float(30.5));
    })
    .await;
    let (id, value) = two
        .wait_for(|e| match e {
            DeviceEvent::Notification {
                observation,
                content,
                ..
            } => Some((*observation, format!("{content:?}"))),
            _ => None,
        })
        .await;
    assert_eq!(id, observation);
    assert!(value.contains("30.5"), "{value}");

    // Node 1 comes back: the device is node 2's now, so node 1 forgets it.
    let one = node_sharing(dirs[0].path(), 1, internal, &secret, store)
        .await
        .unwrap();
    assert_eq!(one.handle().metrics().registered_clients, 0);
    assert!(two.handle().metrics().registered_clients == 1);
    drop(balancer);
    dev.kill();
    one.stop().await;
    two.stop().await;
}
