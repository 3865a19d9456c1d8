//! The `bootstrap` scenario of the `lwm2m-client-sim` binary end to end, over real sockets
//! and DTLS: every device holds only its factory PSK, bootstraps with a bootstrap server
//! played here (a `dtls::Server` and a CoAP `Endpoint` sending the usual sequence: Delete
//! `/0`, Delete `/1`, Write the Security and Server instances of a NoSec account, Finish),
//! then registers with the real LwM2M server that account names. The report counts every
//! bootstrap complete, and the server counted the registrations.
#![allow(clippy::unwrap_used)]
use dtls::config::{PeerKey, PskEntry, ServerCredentials};
use dtls::{AlertDescription, ConnId, ServerEvent};
use lwm2m::client::{security_instance, SecurityMode};
use lwm2m::coap::{msg, Endpoint, EndpointConfig, Event, RequestId, RequestOptions, ResponseType};
use lwm2m::content::{self, ContentFormat};
use lwm2m::model::{Instance, Node, Path, Resource, Value};
use lwm2m::ops::bootstrap::BootstrapOp;
use std::collections::HashMap;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;

/// The factory keys of the scenario's devices, as the simulator derives them.
struct Factory(Vec<u8>);

impl ServerCredentials for Factory {
    fn psk(&self, identity: &[u8]) -> Option<PskEntry> {
        let mac = dtls::crypto::hmac_sha256(&self.0, &[identity]);
        Some(PskEntry {
            key: mac.get(..16)?.to_vec(),
            principal: Arc::from(String::from_utf8_lossy(identity).as_ref()),
        })
    }

    fn verify_client(&self, _: PeerKey<'_>, _: Option<u64>) -> Result<Arc<str>, AlertDescription> {
        Err(AlertDescription::AccessDenied)
    }
}

/// The sequence each device is sent after its Bootstrap-Request.
fn sequence(lwm2m_uri: &str) -> Vec<BootstrapOp> {
    let write = |path: Path, inst: Instance| BootstrapOp::Write {
        path,
        format: ContentFormat::Tlv,
        payload: content::encode(ContentFormat::Tlv, &path, &Node::Instance(inst)).unwrap(),
    };
    let server = Instance::from([
        (0, Resource::Single(Value::Integer(1))),
        (1, Resource::Single(Value::Integer(300))),
        (6, Resource::Single(Value::Boolean(false))),
        (7, Resource::Single(Value::String("U".into()))),
    ]);
    vec![
        BootstrapOp::Delete(Path::object(0)),
        BootstrapOp::Delete(Path::object(1)),
        write(
            Path::instance(0, 1),
            security_instance(lwm2m_uri, false, &SecurityMode::NoSec, Some(1)),
        ),
        write(Path::instance(1, 0), server),
        BootstrapOp::Finish,
    ]
}

/// Plays the bootstrap server on `socket` until `stop`; returns the Finishes answered 2.04.
async fn bootstrap_server(
    socket: UdpSocket,
    seed: &str,
    lwm2m_uri: String,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> u64 {
    let creds = Factory(seed.as_bytes().to_vec());
    let config = dtls::ServerConfig {
        handshakes_per_source_per_sec: 10_000,
        ..dtls::ServerConfig::default()
    };
    let mut dtls = dtls::Server::new(config, [7; 32]);
    let mut coap: Endpoint<ConnId> = Endpoint::new(EndpointConfig::default());
    let ops = sequence(&lwm2m_uri);
    let mut next_step: HashMap<ConnId, usize> = HashMap::new();
    let mut pending: HashMap<RequestId, ConnId> = HashMap::new();
    let mut finished = 0;
    let mut buf = vec![0u8; 65_536];
    loop {
        let now = Instant::now();
        loop {
            let mut progressed = false;
            while let Some(ev) = dtls.poll_event() {
                progressed = true;
                if let ServerEvent::Data { conn, data } = ev {
                    coap.handle_datagram(now, conn, &data);
                }
            }
            while let Some(ev) = coap.poll_event() {
                progressed = true;
                let (conn, step) = match ev {
                    Event::Request(req) => {
                        let ok = msg::uri_path(&req.request) == "/bs";
                        let code = if ok {
                            ResponseType::Changed
                        } else {
                            ResponseType::BadRequest
                        };
                        coap.respond(now, req.id, msg::response(code)).unwrap();
                        if !ok {
                            continue;
                        }
                        (req.peer, 0)
                    }
                    Event::Response { id, response, .. } => {
                        let Some(conn) = pending.remove(&id) else {
                            continue;
                        };
                        let step = next_step.get(&conn).copied().unwrap_or_default();
                        if !msg::code_string(&response).starts_with('2') {
                            continue; // the device refused: this one fails
                        }
                        if step == ops.len() {
                            finished += 1;
                            continue;
                        }
                        (conn, step)
                    }
                    _ => continue,
                };
                if let Some(op) = ops.get(step) {
                    let id = coap
                        .send_request(now, conn, op.to_coap(), RequestOptions::default())
                        .unwrap();
                    pending.insert(id, conn);
                    next_step.insert(conn, step + 1);
                }
            }
            while let Some(t) = coap.poll_transmit() {
                progressed = true;
                let _ = dtls.send(t.peer, &t.payload);
            }
            while let Some((to, bytes)) = dtls.poll_transmit() {
                progressed = true;
                let _ = socket.send_to(&bytes, to).await;
            }
            if !progressed {
                break;
            }
        }
        let wake = [dtls.poll_timeout(), coap.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(now + Duration::from_secs(1));
        tokio::select! {
            r = socket.recv_from(&mut buf) => {
                if let Ok((n, from)) = r {
                    if let Some(data) = buf.get(..n) {
                        dtls.handle_datagram(Instant::now(), from, data, &creds);
                    }
                }
            }
            () = tokio::time::sleep_until(wake.into()) => {
                let now = Instant::now();
                dtls.handle_timeout(now);
                coap.handle_timeout(now);
            }
            _ = stop.changed() => return finished,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_factory_fleet_bootstraps_and_registers_with_the_account_it_was_given() {
    let dir = tempfile::tempdir().unwrap();
    let config = lwm2m_server::config::Config::parse(&format!(
        "[server]\ncoap_bind = [\"127.0.0.1:0\"]\ncoaps_bind = []\ndata_dir = \"{}\"\n[mqtt]\nenabled = false\n[http]\nenabled = false\n",
        dir.path().display()
    ))
    .unwrap();
    let server = lwm2m_server::start(&config).await.unwrap();
    let lwm2m_addr = server.handle.local_addrs()[0];

    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let bs_addr = socket.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let bs = tokio::spawn(bootstrap_server(
        socket,
        "test-factory",
        format!("coap://{lwm2m_addr}"),
        stop_rx,
    ));

    let json = dir.path().join("report.json");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lwm2m-client-sim"));
    cmd.args([
        "bench",
        "--scenario",
        "bootstrap",
        "--set",
        "bootstrap.seed=\"test-factory\"",
        "--devices",
        "20",
        "--duration",
        "3",
        "--quiet",
    ])
    .arg("--bootstrap-server")
    .arg(format!("coaps://{bs_addr}"))
    .arg("--json")
    .arg(&json);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap();
    let _ = stop_tx.send(true);
    let finished = bs.await.unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(r["bootstrap"]["complete"], 20, "{r:#}");
    assert_eq!(r["bootstrap"]["finished"], 20, "{r:#}");
    assert_eq!(r["bootstrap"]["failures_total"], 0, "{r:#}");
    assert_eq!(r["bootstrap"]["latency_us"]["count"], 20, "{r:#}");
    assert!(
        r["bootstrap"]["complete_per_second"].as_f64().unwrap() > 0.0,
        "{r:#}"
    );
    assert_eq!(r["registered"], 20, "{r:#}");
    assert_eq!(finished, 20);
    assert_eq!(server.handle.metrics().registrations, 20);
    server.handle.shutdown().await;
    let _ = server.task.await;
}
