//! The HTTP API's provisioning, firmware and access control end to end: the real server
//! runtime and its HTTP listener, real devices, requests over real TCP (and TLS) connections
//! as an operator's script would send them. Credentials and bootstrap accounts are added,
//! listed (never with a key) and removed; a firmware package is uploaded and updates a
//! registered device through a campaign; a token guards every route but `/metrics` when the
//! API listens beyond loopback; HTTPS works with a generated certificate.
#![allow(clippy::unwrap_used)]
use lwm2m::client::{firmware_instance, firmware_package, ClientConfig, ObjectStore};
use lwm2m_e2e_tests::{free_port, Device, TestServer, PATIENCE};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const PSK_KEY_HEX: &str = "000102030405060708090a0b0c0d0e0f";
const TOKEN: &str = "test-token-0123456789abcdef";

/// An answer: status, headers (names lower-cased), body.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// An HTTP/1.0 client of the API (one connection per request; 1.0 so the server closes it
/// and never chunks), over TLS when `tls` is set.
struct Api {
    addr: SocketAddr,
    token: Option<String>,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Api {
    fn new(s: &TestServer) -> Self {
        let port = s.handle().http_addr().expect("the HTTP API runs").port();
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            token: None,
            tls: None,
        }
    }

    async fn get(&self, path: &str) -> Answer {
        self.send("GET", path, &[], b"").await
    }

    async fn delete(&self, path: &str) -> Answer {
        self.send("DELETE", path, &[], b"").await
    }

    async fn post_json(&self, path: &str, body: &Value) -> Answer {
        let body = serde_json::to_vec(body).unwrap();
        self.send("POST", path, &[("Content-Type", "application/json")], &body)
            .await
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Answer {
        self.exchange(method, path, headers, body, false).await
    }

    /// Only the status line and headers: for an event stream, whose body never ends.
    async fn head_of(&self, path: &str) -> Answer {
        self.exchange("GET", path, &[], b"", true).await
    }

    async fn exchange(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        head_only: bool,
    ) -> Answer {
        let mut request = format!("{method} {path} HTTP/1.0\r\nHost: localhost\r\n");
        if let Some(t) = &self.token {
            request.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        for (n, v) in headers {
            request.push_str(&format!("{n}: {v}\r\n"));
        }
        request.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        let mut bytes = request.into_bytes();
        bytes.extend_from_slice(body);
        self.raw(&bytes, head_only).await
    }

    /// Sends `bytes` as they are and reads the answer.
    async fn raw(&self, bytes: &[u8], head_only: bool) -> Answer {
        let exchange = async {
            let tcp = tokio::net::TcpStream::connect(self.addr).await.unwrap();
            match &self.tls {
                None => talk(tcp, bytes, head_only).await,
                Some(config) => {
                    let connector = tokio_rustls::TlsConnector::from(config.clone());
                    let name = ServerName::try_from("localhost").unwrap();
                    let tls = connector.connect(name, tcp).await.unwrap();
                    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
                    talk(tls, bytes, head_only).await
                }
            }
        };
        let raw = tokio::time::timeout(PATIENCE, exchange)
            .await
            .expect("the HTTP API answers");
        parse(&raw)
    }
}

async fn talk<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    request: &[u8],
    head_only: bool,
) -> Vec<u8> {
    s.write_all(request).await.unwrap();
    s.flush().await.unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            // A TLS peer closing without close_notify after its answer, or a server resetting
            // the connection after answering before the whole body was read (413).
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
                ) && !raw.is_empty() =>
            {
                break
            }
            Err(e) => panic!("reading the answer: {e}"),
        }
        if head_only && raw.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    raw
}

fn parse(raw: &[u8]) -> Answer {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Answer {
        status,
        headers,
        body: raw[end + 4..].to_vec(),
    }
}

fn psk(endpoint: &str, identity: &str) -> Value {
    json!({"endpoint": endpoint, "kind": "psk", "identity": identity, "key": PSK_KEY_HEX})
}

fn endpoints(list: &Value) -> Vec<String> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["endpoint"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_and_bootstrap_accounts_are_managed_over_http_and_never_show_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path(), 0, "").await.unwrap();
    let api = Api::new(&s);

    let a = api
        .post_json("/api/devices", &psk("http-dev", "http-id"))
        .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let reply = a.json();
    assert_eq!(reply["ok"], true);
    assert_eq!(reply["device"]["endpoint"], "http-dev");
    assert_eq!(reply["device"]["kind"], "psk");
    assert_eq!(reply["device"]["id"], "http-id");
    assert!(!a.text().contains(PSK_KEY_HEX), "{}", a.text());

    let a = api.get("/api/devices").await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(endpoints(&a.json()["devices"]), vec!["http-dev"]);
    assert!(!a.text().contains(PSK_KEY_HEX), "{}", a.text());

    // Refusals: a body that is no credential, an identity bound elsewhere, a body too large.
    let a = api
        .post_json("/api/devices", &json!({"endpoint": "x"}))
        .await;
    assert_eq!(a.status, 400, "{}", a.text());
    assert!(a.json()["message"].is_string());
    let a = api
        .post_json("/api/devices", &psk("other-dev", "http-id"))
        .await;
    assert_eq!(a.status, 409, "{}", a.text());
    assert!(a.json()["message"].as_str().unwrap().contains("http-dev"));
    let huge = json!({"endpoint": "big", "kind": "x509", "cert_der": "00".repeat(100_000)});
    let a = api.post_json("/api/devices", &huge).await;
    assert_eq!(a.status, 413, "{}", a.text());
    assert!(a.json()["message"].is_string());
    let a = api
        .send("POST", "/api/devices/nobody/rotate", &[], b"")
        .await;
    assert_eq!(a.status, 404, "{}", a.text());

    // Revoked: gone from the list, the endpoint denied; a device never added is 404.
    let a = api.delete("/api/devices/http-dev").await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.json()["device"]["endpoint"], "http-dev");
    let list = api.get("/api/devices").await.json();
    assert!(endpoints(&list["devices"]).is_empty(), "{list}");
    assert_eq!(list["denied"], json!(["http-dev"]));
    let a = api.delete("/api/devices/nobody").await;
    assert_eq!(a.status, 404, "{}", a.text());
    assert!(a.json()["message"].as_str().unwrap().contains("nobody"));

    // Factory bootstrap accounts.
    let a = api
        .post_json("/api/bootstrap", &psk("factory-dev", "factory-id"))
        .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let a = api.get("/api/bootstrap").await;
    assert_eq!(endpoints(&a.json()["devices"]), vec!["factory-dev"]);
    assert!(!a.text().contains(PSK_KEY_HEX), "{}", a.text());
    let a = api.delete("/api/bootstrap/factory-dev").await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(endpoints(&api.get("/api/bootstrap").await.json()["devices"]).is_empty());
    let a = api.delete("/api/bootstrap/factory-dev").await;
    assert_eq!(a.status, 404, "{}", a.text());

    // The audit log saw it all, in order.
    let a = api.get("/api/audit?limit=100").await;
    assert_eq!(a.status, 200, "{}", a.text());
    let kinds: Vec<String> = a.json()["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["endpoint"] == "http-dev" || e["endpoint"] == "factory-dev")
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        kinds,
        [
            "credential-added",
            "credential-revoked",
            "endpoint-denied",
            "bootstrap-credential-added",
            "bootstrap-credential-removed"
        ],
        "{}",
        a.text()
    );
    assert!(!a.text().contains(PSK_KEY_HEX));
    let a = api.get("/api/audit?limit=1").await;
    assert_eq!(a.json()["events"].as_array().unwrap().len(), 1);
    let a = api.get("/api/audit?limit=0").await;
    assert_eq!(a.status, 400, "{}", a.text());
    let a = api.get("/api/audit?limit=many").await;
    assert_eq!(a.status, 400, "{}", a.text());
    s.stop().await;
}

/// The files left in the data directory by uploads (none should be).
fn leftover_uploads(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".upload-"))
        .collect()
}

/// Polls a campaign's status until `done` accepts it.
async fn status_until(api: &Api, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let a = api.get(&format!("/api/firmware/campaigns/{id}")).await;
        assert_eq!(a.status, 200, "{}", a.text());
        let status = a.json()["firmware"].clone();
        if done(&status) {
            return status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "campaign {id} still: {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn firmware_device(s: &TestServer, port: u16, ep: &str) -> Device {
    let mut store = ObjectStore::standard_with_server(ep, &format!("coap://127.0.0.1:{port}"));
    store.add_instance(5, 0, firmware_instance()).unwrap();
    let mut d = Device::start_with(s.addr, ClientConfig::new(ep), store)
        .await
        .unwrap();
    d.registered().await;
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_package_uploaded_over_http_updates_a_device_through_a_campaign() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let extra =
        format!("[firmware]\ncoap_uri = \"coap://127.0.0.1:{port}\"\nmax_package_bytes = 65536\n");
    let s = TestServer::start_on(dir.path(), port, 0, &extra)
        .await
        .unwrap();
    let api = Api::new(&s);
    let octets = [("Content-Type", "application/octet-stream")];

    // Refused uploads leave nothing behind.
    let package = firmware_package("2.0.0", &[7u8; 4096]);
    let a = api
        .send("POST", "/api/firmware/packages", &octets, &package)
        .await;
    assert_eq!(a.status, 400, "{}", a.text());
    assert!(a.json()["message"].as_str().unwrap().contains("version"));
    let a = api
        .send(
            "POST",
            "/api/firmware/packages?version=9",
            &octets,
            &vec![1u8; 70_000],
        )
        .await;
    assert_eq!(a.status, 413, "{}", a.text());
    assert!(a.json()["message"]
        .as_str()
        .unwrap()
        .contains("max_package_bytes"));
    // Without a length given, the limit is counted as the body arrives.
    let mut chunked = b"POST /api/firmware/packages?version=9 HTTP/1.1\r\nHost: localhost\r\n\
        Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        .to_vec();
    for _ in 0..9 {
        chunked.extend_from_slice(b"2000\r\n");
        chunked.extend_from_slice(&[2u8; 0x2000]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let a = api.raw(&chunked, false).await;
    assert_eq!(a.status, 413, "{}", a.text());
    let a = api
        .send("POST", "/api/firmware/packages?version=9", &octets, b"")
        .await;
    assert_eq!(a.status, 400, "{}", a.text());
    assert!(leftover_uploads(dir.path()).is_empty());

    let a = api
        .send(
            "POST",
            "/api/firmware/packages?version=2.0.0&name=http%20build",
            &octets,
            &package,
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let stored = a.json()["package"].clone();
    assert_eq!(stored["version"], "2.0.0");
    assert_eq!(stored["name"], "http build");
    assert_eq!(stored["size"], package.len());
    let id = stored["id"].as_str().unwrap().to_string();
    assert!(leftover_uploads(dir.path()).is_empty());
    let list = api.get("/api/firmware/packages").await.json();
    assert_eq!(list["packages"][0]["id"], id.as_str());

    // A registered device is updated.
    let _dev = firmware_device(&s, port, "fw-http").await;
    let start = json!({"package": id, "endpoints": ["fw-http"], "method": "pull"});
    let a = api.post_json("/api/firmware/campaigns", &start).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let first = a.json()["campaign"].as_str().unwrap().to_string();
    let status = status_until(&api, &first, |s| s["finished"] == true).await;
    assert_eq!(status["devices"][0]["endpoint"], "fw-http");
    assert_eq!(status["devices"][0]["outcome"], "success", "{status}");
    assert_eq!(status["devices"][0]["version"], "2.0.0", "{status}");

    // A device that stopped answering keeps its campaign running: the package is in use
    // until the campaign is cancelled (its first command alone takes the CoAP exchange
    // lifetime, tens of seconds, to fail).
    let gone = firmware_device(&s, port, "fw-http-gone").await;
    gone.kill();
    let start = json!({"package": id, "endpoints": ["fw-http-gone"]});
    let campaign = api
        .post_json("/api/firmware/campaigns", &start)
        .await
        .json()["campaign"]
        .as_str()
        .unwrap()
        .to_string();
    let a = api.delete(&format!("/api/firmware/packages/{id}")).await;
    assert_eq!(a.status, 409, "{}", a.text());
    let list = api.get("/api/firmware/campaigns").await;
    assert_eq!(list.status, 200, "{}", list.text());
    let list = list.json()["campaigns"].clone();
    assert_eq!(
        list,
        json!([
            {"id": first, "package": id, "finished": true},
            {"id": campaign, "package": id, "finished": false}
        ])
    );
    let a = api
        .delete(&format!("/api/firmware/campaigns/{campaign}"))
        .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let status = status_until(&api, &campaign, |s| s["finished"] == true).await;
    assert_eq!(status["cancelled"], true);
    let a = api.delete(&format!("/api/firmware/packages/{id}")).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.json()["package"]["id"], id.as_str());
    let list = api.get("/api/firmware/packages").await.json();
    assert_eq!(list["packages"], json!([]));

    // Names that name nothing.
    let a = api.delete(&format!("/api/firmware/packages/{id}")).await;
    assert_eq!(a.status, 404, "{}", a.text());
    let a = api.get("/api/firmware/campaigns/424242").await;
    assert_eq!(a.status, 404, "{}", a.text());
    let a = api
        .post_json(
            "/api/firmware/campaigns",
            &json!({"package": id, "endpoints": ["fw-http"]}),
        )
        .await;
    assert_eq!(a.status, 404, "{}", a.text());
    let a = api
        .post_json(
            "/api/firmware/campaigns",
            &json!({"package": id, "endpoint": ["fw-http"]}),
        )
        .await;
    assert_eq!(a.status, 400, "{}", a.text());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_loopback_a_token_guards_every_route_but_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("http-token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let extra = format!(
        "[http]\nbind = \"0.0.0.0:0\"\ntoken_file = \"{}\"\n",
        token_file.display()
    );
    let s = TestServer::start(dir.path(), 0, &extra).await.unwrap();
    let mut api = Api::new(&s);

    for path in [
        "/api/devices",
        "/api/audit",
        "/api/openapi.json",
        "/api/no-such-route",
    ] {
        let a = api.get(path).await;
        assert_eq!(a.status, 401, "{path}: {}", a.text());
        assert!(
            a.header("www-authenticate")
                .unwrap_or_default()
                .starts_with("Bearer"),
            "{path}: {:?}",
            a.headers
        );
        assert!(a.json()["message"].is_string());
    }
    let a = api
        .post_json("/api/devices", &psk("sneaky", "sneaky-id"))
        .await;
    assert_eq!(a.status, 401, "{}", a.text());
    // Only the event streams take the token in the query.
    let a = api.get(&format!("/api/devices?access_token={TOKEN}")).await;
    assert_eq!(a.status, 401, "{}", a.text());
    let a = api
        .head_of("/api/events?access_token=wrong-token-0123456789")
        .await;
    assert_eq!(a.status, 401);
    for path in ["/api/events", "/api/event?ep=nobody"] {
        let sep = if path.contains('?') { '&' } else { '?' };
        let a = api
            .head_of(&format!("{path}{sep}access_token={TOKEN}"))
            .await;
        assert_eq!(a.status, 200, "{path}: {a:?}");
        assert_eq!(
            a.header("content-type"),
            Some("text/event-stream"),
            "{path}"
        );
    }
    // Prometheus and the console's static page need none.
    let a = api.get("/metrics").await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(a.text().contains("lwm2m_registered_clients"));
    assert_ne!(api.get("/").await.status, 401);

    api.token = Some("wrong-token-0123456789".into());
    let a = api.get("/api/devices").await;
    assert_eq!(a.status, 401, "{}", a.text());
    api.token = Some(TOKEN.into());
    let a = api.get("/api/devices").await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(api.head_of("/api/events").await.status, 200);
    let a = api
        .post_json("/api/devices", &psk("allowed", "allowed-id"))
        .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let a = api.get("/api/openapi.json").await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(a.json()["openapi"].as_str().unwrap().starts_with("3."));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_generated_certificate_serves_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (cert_file, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    let extra = format!(
        "[http]\nbind = \"127.0.0.1:0\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
        cert_file.display(),
        key_file.display()
    );
    let s = TestServer::start(dir.path(), 0, &extra).await.unwrap();

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(cert.der().to_vec()))
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let mut api = Api::new(&s);
    api.tls = Some(Arc::new(config));
    let a = api
        .post_json("/api/devices", &psk("tls-dev", "tls-id"))
        .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let a = api.get("/api/devices").await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(endpoints(&a.json()["devices"]), vec!["tls-dev"]);
    let a = api.get("/metrics").await;
    assert_eq!(a.status, 200);

    // Plain HTTP on the HTTPS port gets no HTTP answer.
    let mut tcp = tokio::net::TcpStream::connect(api.addr).await.unwrap();
    tcp.write_all(b"GET /metrics HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, tcp.read_to_end(&mut raw)).await;
    assert!(
        !raw.starts_with(b"HTTP/"),
        "{:?}",
        String::from_utf8_lossy(&raw)
    );
    s.stop().await;
}
