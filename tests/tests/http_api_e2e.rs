//! The HTTP API end to end: a real server and devices running the real `lwm2m::client` over
//! loopback, driven through `reqwest` as a backend would: the devices list, every device
//! management operation of Leshan's demo API (OMA LwM2M TS 1.2 Core §6.3, §6.4) with its
//! errors, queue mode's `202` and the result that follows (Transport §6.5), and the event
//! stream with `Last-Event-ID`.
#![allow(clippy::unwrap_used)]
use lwm2m::client::{ClientConfig, ClientEvent};
use lwm2m::model::{Path, Value};
use lwm2m_e2e_tests::{sensor_store, Device, TestServer};
use lwm2m_server::core::types::DeviceEvent;
use reqwest::StatusCode;
use serde_json::{json, Value as Json};
use std::time::Duration;

/// A server with its HTTP API on a free loopback port, and the API's base URL.
async fn server(dir: &std::path::Path, extra: &str) -> (TestServer, String) {
    let s = TestServer::start(dir, 0, extra).await.unwrap();
    let base = format!("http://{}", s.handle().http_addr().unwrap());
    (s, base)
}

async fn device(s: &mut TestServer, ep: &str) -> Device {
    let d = Device::start_with(s.addr, ClientConfig::new(ep), sensor_store(ep, 20.5))
        .await
        .unwrap();
    s.registered(ep).await;
    d
}

async fn get(url: &str) -> (StatusCode, Json) {
    let r = reqwest::get(url).await.unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Json::Null))
}

async fn send(method: reqwest::Method, url: &str, body: Option<Json>) -> (StatusCode, Json) {
    let mut req = reqwest::Client::new().request(method, url);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Json::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_are_listed_paged_and_shown_without_keys() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, base) = server(dir.path(), "").await;
    let mut devices = Vec::new();
    for ep in ["meter-2", "meter-1", "meter-3", "valve-1"] {
        devices.push(device(&mut s, ep).await);
    }
    let (st, all) = get(&format!("{base}/api/clients")).await;
    assert_eq!(st, StatusCode::OK);
    let names: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["endpoint"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["meter-1", "meter-2", "meter-3", "valve-1"]);

    // A page of two meters, then the next one through the Link header.
    let r = reqwest::get(format!("{base}/api/clients?prefix=meter-&limit=2"))
        .await
        .unwrap();
    assert_eq!(r.headers()["x-total-count"], "3");
    let link = r.headers()["link"].to_str().unwrap().to_string();
    let page: Json = r.json().await.unwrap();
    assert_eq!(page.as_array().unwrap().len(), 2);
    let next = link
        .strip_prefix('<')
        .and_then(|l| l.split('>').next())
        .unwrap();
    let (_, rest) = get(&format!("{base}{next}")).await;
    assert_eq!(rest[0]["endpoint"], "meter-3");
    assert_eq!(rest.as_array().unwrap().len(), 1);

    let (st, one) = get(&format!("{base}/api/clients/meter-1")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(one["lwM2mVersion"], "1.1");
    assert_eq!(one["bindingMode"], "U");
    assert_eq!(one["queuemode"], false);
    assert_eq!(one["secure"], false);
    assert_eq!(one.get("identity"), Some(&Json::Null), "{one}");
    assert!(one["availableInstances"]["3303"]
        .as_array()
        .unwrap()
        .contains(&json!(0)));
    assert!(one["objectLinks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["url"] == "/3/0"));
    assert!(one["registrationId"]
        .as_str()
        .is_some_and(|s| !s.is_empty()));

    let (st, err) = get(&format!("{base}/api/clients/nobody")).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert!(err["message"].as_str().unwrap().contains("nobody"));
    let (st, _) = get(&format!("{base}/api/clients?limit=0")).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    s.stop().await;
}

/// Leshan's request and response bodies, as its demo API documents them, work unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_management_speaks_leshans_demo_api() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, base) = server(dir.path(), "").await;
    let _dev = device(&mut s, "dev-1").await;
    let c = format!("{base}/api/clients/dev-1");

    // Read: GET /api/clients/{ep}/3/0/0?format=TLV&timeout=5
    let (st, r) = get(&format!("{c}/3/0/0?format=TLV&timeout=5")).await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(r["status"], "CONTENT(205)");
    assert_eq!(r["valid"], true);
    assert_eq!(r["success"], true);
    assert_eq!(r["failure"], false);
    assert_eq!(r["content"]["id"], 0);
    assert_eq!(r["content"]["kind"], "singleResource");
    assert_eq!(r["content"]["type"], "STRING");
    assert!(r["content"]["value"].is_string());

    // An instance in the device's default format, with a float as Leshan 2 writes it.
    let (_, r) = get(&format!("{c}/3303/0")).await;
    assert_eq!(r["content"]["kind"], "instance");
    let temp = r["content"]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == 5700)
        .unwrap()
        .clone();
    assert_eq!(
        temp,
        json!({"id":5700,"kind":"singleResource","type":"FLOAT","value":"20.5"})
    );

    // Write: PUT with Leshan's body, lower-case type as its UI sends, then read back.
    let body = json!({"id":14,"kind":"singleResource","value":"+02","type":"string"});
    let (st, r) = send(reqwest::Method::PUT, &format!("{c}/3/0/14"), Some(body)).await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(
        r,
        json!({"status":"CHANGED(204)","valid":true,"success":true,"failure":false})
    );
    let (_, r) = get(&format!("{c}/3/0/14")).await;
    assert_eq!(r["content"]["value"], "+02");
    // A partial update of an instance.
    let body = json!({"id":0,"kind":"instance","resources":[
        {"id":15,"kind":"singleResource","value":"Europe/Paris","type":"STRING"}]});
    let (st, r) = send(
        reqwest::Method::PUT,
        &format!("{c}/3/0?replace=false"),
        Some(body),
    )
    .await;
    assert_eq!(
        (st, r["success"].clone()),
        (StatusCode::OK, json!(true)),
        "{r}"
    );
    // A single value as text/plain.
    let r = reqwest::Client::new()
        .put(format!("{c}/1/0/1"))
        .header("content-type", "text/plain")
        .body("120")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (_, r) = get(&format!("{c}/1/0/1")).await;
    assert_eq!(r["content"]["value"], "120");

    // Execute: POST on a resource, arguments as text.
    let (st, r) = send(reqwest::Method::POST, &format!("{c}/3/0/4"), None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(r["status"], "CHANGED(204)");

    // Discover: the object's links with attributes.
    let (st, r) = get(&format!("{c}/3/discover")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(r["status"], "CONTENT(205)");
    let urls: Vec<&str> = r["objectLinks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["url"].as_str().unwrap())
        .collect();
    assert!(urls.contains(&"/3/0/0"), "{urls:?}");

    // Observe, a notification as an event, then cancel.
    let mut events = s.handle().subscribe();
    let (st, r) = send(
        reqwest::Method::POST,
        &format!("{c}/3303/0/5700/observe"),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(r["status"], "CONTENT(205)");
    assert_eq!(r["content"]["value"], "20.5");
    _dev.with(|c, now| {
        c.set_value(now, &Path::resource(3303, 0, 5700), Value::Float(23.0))
            .unwrap();
    })
    .await;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
            Ok(Ok(DeviceEvent::Notification { endpoint, .. })) if endpoint == "dev-1" => break,
            Ok(Ok(_)) => {}
            other => panic!("no notification: {other:?}"),
        }
    }
    let (st, r) = send(
        reqwest::Method::DELETE,
        &format!("{c}/3303/0/5700/observe"),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    let (st, r) = send(
        reqwest::Method::DELETE,
        &format!("{c}/3303/0/5700/observe"),
        None,
    )
    .await;
    assert_eq!(
        (st, r["status"].clone()),
        (StatusCode::OK, json!("NOT_FOUND(404)"))
    );

    // Write-Attributes.
    let (st, r) = send(
        reqwest::Method::PUT,
        &format!("{c}/3303/0/5700/attributes?pmin=5&pmax=60"),
        None,
    )
    .await;
    assert_eq!(
        (st, r["status"].clone()),
        (StatusCode::OK, json!("CHANGED(204)")),
        "{r}"
    );

    // Composite read and write (LwM2M 1.1), keyed by the paths asked for (as Leshan).
    let (st, r) = get(&format!("{c}/composite?paths=/3/0/0,/3303/0")).await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(r["content"]["/3303/0"]["kind"], "instance", "{r}");
    let (st, r) = get(&format!("{c}/composite?paths=/3/0/0,/3303/0/5700")).await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(r["content"]["/3303/0/5700"]["value"], "23.0");
    assert!(r["content"]["/3/0/0"]["value"].is_string());
    let body = json!({"/3/0/14": {"id":14,"kind":"singleResource","value":"+03","type":"STRING"}});
    let (st, r) = send(reqwest::Method::PUT, &format!("{c}/composite"), Some(body)).await;
    assert_eq!(
        (st, r["status"].clone()),
        (StatusCode::OK, json!("CHANGED(204)")),
        "{r}"
    );
    let (_, r) = get(&format!("{c}/3/0/14")).await;
    assert_eq!(r["content"]["value"], "+03");
    let (st, r) = send(
        reqwest::Method::POST,
        &format!("{c}/composite/observe?paths=/3303/0/5700"),
        None,
    )
    .await;
    assert_eq!(
        (st, r["success"].clone()),
        (StatusCode::OK, json!(true)),
        "{r}"
    );
    // Cancelling names the composite by its paths: another set cancels nothing.
    let (st, r) = send(
        reqwest::Method::DELETE,
        &format!("{c}/composite/observe?paths=/3/0/0,/3303/0/5700"),
        None,
    )
    .await;
    assert_eq!(
        (st, r["status"].clone()),
        (StatusCode::OK, json!("NOT_FOUND(404)")),
        "{r}"
    );
    for want in ["CHANGED(204)", "NOT_FOUND(404)"] {
        let (st, r) = send(
            reqwest::Method::DELETE,
            &format!("{c}/composite/observe?paths=/3303/0/5700"),
            None,
        )
        .await;
        assert_eq!(
            (st, r["status"].clone()),
            (StatusCode::OK, json!(want)),
            "{r}"
        );
    }

    // Create and delete an instance.
    let body = json!({"id":1,"kind":"instance","resources":[
        {"id":5700,"kind":"singleResource","value":"3.5","type":"FLOAT"}]});
    let (st, r) = send(reqwest::Method::POST, &format!("{c}/3303"), Some(body)).await;
    assert_eq!(
        (st, r["status"].clone()),
        (StatusCode::OK, json!("CREATED(201)")),
        "{r}"
    );
    let (_, r) = get(&format!("{c}/3303/1/5700")).await;
    assert_eq!(r["content"]["value"], "3.5");
    let (st, r) = send(reqwest::Method::DELETE, &format!("{c}/3303/1"), None).await;
    assert_eq!(
        (st, r["status"].clone()),
        (StatusCode::OK, json!("DELETED(202)")),
        "{r}"
    );

    // The device's own error answers are Leshan's failure bodies.
    let (st, r) = get(&format!("{c}/3303/9/5700")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(r["status"], "NOT_FOUND(404)");
    assert_eq!(
        (r["success"].clone(), r["failure"].clone()),
        (json!(false), json!(true))
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_say_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, base) = server(dir.path(), "").await;
    let dev = device(&mut s, "dev-2").await;
    let c = format!("{base}/api/clients/dev-2");
    for (method, url, body, status, words) in [
        (
            reqwest::Method::GET,
            format!("{c}/3/x/0"),
            None,
            400,
            "3/x/0",
        ),
        (
            reqwest::Method::GET,
            format!("{c}/3/0/0?format=xml"),
            None,
            400,
            "xml",
        ),
        (
            reqwest::Method::GET,
            format!("{c}/3/0/0?timeout=-1"),
            None,
            400,
            "timeout",
        ),
        (
            reqwest::Method::PUT,
            format!("{c}/1/0/1"),
            Some(json!({"id":1,"kind":"singleResource","value":"soon","type":"INTEGER"})),
            400,
            "integer",
        ),
        (
            reqwest::Method::PUT,
            format!("{c}/1/0/1"),
            Some(json!({"id":1,"kind":"singleResource","value":"1","type":"STRING"})),
            400,
            "INTEGER in the object model",
        ),
        (
            reqwest::Method::PUT,
            format!("{c}/3"),
            Some(json!({})),
            400,
            "instance or a resource",
        ),
        (
            reqwest::Method::POST,
            format!("{c}/3/0"),
            None,
            400,
            "POST executes",
        ),
        (
            reqwest::Method::DELETE,
            format!("{c}/3/0/1"),
            None,
            400,
            "object instance",
        ),
        (
            reqwest::Method::GET,
            format!("{c}/composite"),
            None,
            400,
            "paths",
        ),
        (
            reqwest::Method::PUT,
            format!("{c}/3/0/1/attributes"),
            None,
            400,
            "no attribute",
        ),
        (
            reqwest::Method::GET,
            format!("{base}/api/clients/ghost/3/0/0"),
            None,
            404,
            "ghost",
        ),
        (
            reqwest::Method::GET,
            format!("{base}/api/nothing-here"),
            None,
            404,
            "no such route",
        ),
        (
            reqwest::Method::GET,
            format!("{base}/api/clients?limit=abc"),
            None,
            400,
            "query string",
        ),
        (
            reqwest::Method::PATCH,
            format!("{base}/api/clients"),
            None,
            405,
            "Method Not Allowed",
        ),
    ] {
        let (st, r) = send(method.clone(), &url, body).await;
        assert_eq!(st.as_u16(), status, "{method} {url}: {r}");
        let msg = r["message"].as_str().unwrap_or_default();
        assert!(
            msg.contains(words),
            "{method} {url}: {msg:?} lacks {words:?}"
        );
    }
    // A web page the operator opens cannot drive the API that asks for no token.
    let r = reqwest::Client::new()
        .post(format!("{c}/3/0/4"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = reqwest::Client::new()
        .get(format!("{c}/3/0/0"))
        .header("host", "rebound.example:8080")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // A device that stopped answering: 504 after the timeout asked for.
    dev.kill();
    let (st, r) = get(&format!("{c}/3/0/0?timeout=1")).await;
    assert_eq!(st, StatusCode::GATEWAY_TIMEOUT, "{r}");
    s.stop().await;
}

/// Queue mode: a command for a sleeping device is answered 202 at once; when the device
/// wakes it gets the command, and the result is an event and a request resource.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleeping_device_is_answered_202_and_its_result_follows() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, base) = server(dir.path(), "[queue]\nawake_window_secs = 1\n").await;
    let config = ClientConfig {
        queue_mode: true,
        awake_time: Duration::from_secs(2),
        ..ClientConfig::new("sleepy")
    };
    let mut dev = Device::start_with(s.addr, config, sensor_store("sleepy", 19.0))
        .await
        .unwrap();
    s.registered("sleepy").await;
    s.wait_for(|e| {
        matches!(e, DeviceEvent::Sleeping { endpoint } if endpoint == "sleepy").then_some(())
    })
    .await;
    dev.wait_for(|e| matches!(e, ClientEvent::Sleeping).then_some(()))
        .await;
    let (_, one) = get(&format!("{base}/api/clients/sleepy")).await;
    assert_eq!(
        (one["queuemode"].clone(), one["sleeping"].clone()),
        (json!(true), json!(true))
    );

    let (st, r) = get(&format!("{base}/api/clients/sleepy/3303/0/5700")).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{r}");
    assert_eq!(r["delayed"], true);
    assert_eq!(r["path"], "/3303/0/5700");
    let id = r["requestId"].as_str().unwrap().to_string();
    let (st, pending) = get(&format!("{base}/api/requests/{id}")).await;
    assert_eq!(
        (st, pending["state"].clone()),
        (StatusCode::OK, json!("pending"))
    );

    // The stream of the device's events, then the device wakes.
    let mut stream = Sse::open(&format!("{base}/api/events?ep=sleepy"), None).await;
    dev.with(|c, now| c.wake(now)).await;
    let result = stream.until("COMMAND_RESULT").await;
    assert_eq!(result.data["requestId"], json!(id));
    assert_eq!(result.data["response"]["content"]["value"], "19.0");
    assert_eq!(result.data["path"], "/3303/0/5700");
    assert_eq!(result.data["response"]["content"]["id"], 5700);
    let (_, done) = get(&format!("{base}/api/requests/{id}")).await;
    assert_eq!(done["state"], "done");
    assert_eq!(done["response"]["status"], "CONTENT(205)");
    let (st, _) = get(&format!("{base}/api/requests/999999")).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    s.stop().await;
}

/// One server-sent event.
#[derive(Debug, Clone)]
struct SseEvent {
    id: u64,
    kind: String,
    data: Json,
}

/// A minimal server-sent events reader (WHATWG HTML §9.2.6) over a streamed body.
struct Sse {
    body: reqwest::Response,
    buf: String,
}

impl Sse {
    async fn open(url: &str, last_event_id: Option<u64>) -> Self {
        let mut req = reqwest::Client::new().get(url);
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id.to_string());
        }
        let body = req.send().await.unwrap();
        assert_eq!(body.status(), StatusCode::OK);
        assert!(body.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"));
        Self {
            body,
            buf: String::new(),
        }
    }

    async fn next(&mut self) -> SseEvent {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let (mut id, mut kind, mut data) = (None, String::new(), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = v.trim().parse().ok();
                    } else if let Some(v) = line.strip_prefix("event:") {
                        kind = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if let Some(id) = id {
                    return SseEvent {
                        id,
                        kind,
                        data: serde_json::from_str(&data).unwrap(),
                    };
                }
                continue; // a keep-alive comment
            }
            let chunk = tokio::time::timeout(Duration::from_secs(15), self.body.chunk())
                .await
                .expect("an event within 15 s")
                .unwrap()
                .expect("the stream stays open");
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    async fn until(&mut self, kind: &str) -> SseEvent {
        loop {
            let e = self.next().await;
            if e.kind == kind {
                return e;
            }
        }
    }
}

/// Registration and notification events arrive in order, and a client that reconnects with
/// `Last-Event-ID` gets exactly what it missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_is_ordered_and_resumes_without_a_gap() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, base) = server(dir.path(), "").await;
    let url = format!("{base}/api/events");
    let mut stream = Sse::open(&url, None).await;
    let dev = device(&mut s, "sensor-1").await;
    let reg = stream.until("REGISTRATION").await;
    assert_eq!(reg.data["endpoint"], "sensor-1");

    let c = format!("{base}/api/clients/sensor-1");
    let (st, _) = send(
        reqwest::Method::POST,
        &format!("{c}/3303/0/5700/observe"),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let mut values = Vec::new();
    for v in [21.0, 22.0, 23.0] {
        dev.with(move |c, now| {
            c.set_value(now, &Path::resource(3303, 0, 5700), Value::Float(v))
                .unwrap();
        })
        .await;
        let n = stream.until("NOTIFICATION").await;
        assert_eq!(n.data["ep"], "sensor-1");
        assert_eq!(n.data["res"], "/3303/0/5700");
        values.push((n.id, n.data["val"]["value"].clone()));
    }
    assert_eq!(
        values.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>(),
        [json!("21.0"), json!("22.0"), json!("23.0")]
    );
    assert!(values.windows(2).all(|w| w[0].0 < w[1].0));
    let last_seen = values[2].0;
    drop(stream);

    // Missed while disconnected: three notifications and another device's registration.
    for v in [24.0, 25.0, 26.0] {
        dev.with(move |c, now| {
            c.set_value(now, &Path::resource(3303, 0, 5700), Value::Float(v))
                .unwrap();
        })
        .await;
        s.wait_for(|e| matches!(e, DeviceEvent::Notification { .. }).then_some(()))
            .await;
    }
    let _other = device(&mut s, "sensor-2").await;
    let mut resumed = Sse::open(&url, Some(last_seen)).await;
    let mut got = Vec::new();
    while got.len() < 4 {
        let e = resumed.next().await;
        got.push(e);
    }
    // No gap, no repeat: the ids follow the last one seen.
    for (i, e) in got.iter().enumerate() {
        assert_eq!(e.id, last_seen + 1 + i as u64, "{got:?}");
    }
    let kinds: Vec<&str> = got.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "NOTIFICATION").count(),
        3,
        "{kinds:?}"
    );
    assert!(kinds.contains(&"REGISTRATION"), "{kinds:?}");
    // Leshan's endpoint and the endpoint filter.
    let mut leshan = Sse::open(&format!("{base}/api/event?ep=sensor-2"), Some(0)).await;
    let e = leshan.next().await;
    assert_eq!(
        (e.kind.as_str(), e.data["endpoint"].clone()),
        ("REGISTRATION", json!("sensor-2"))
    );
    s.stop().await;
}

/// A DTLS device shows as secure with its PSK identity, and no key anywhere in the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dtls_device_shows_its_identity_and_never_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, base) = server(dir.path(), "").await;
    let key = b"0123456789abcdef";
    s.provision_psk("secure-1", "id-secure-1", key).await;
    let _dev = Device::start_secure(
        s.secure_addr,
        ClientConfig::new("secure-1"),
        dtls::ClientConfig::psk("id-secure-1", key.to_vec()),
    )
    .await
    .unwrap();
    s.registered("secure-1").await;
    let r = reqwest::get(format!("{base}/api/clients/secure-1"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let text = r.text().await.unwrap();
    let one: Json = serde_json::from_str(&text).unwrap();
    assert_eq!(one["secure"], true);
    assert_eq!(one["identity"]["kind"], "psk");
    assert_eq!(one["identity"]["id"], "id-secure-1");
    for leak in [hex_of(key), String::from_utf8_lossy(key).into_owned()] {
        assert!(!text.contains(&leak), "{text}");
    }
    // Device management works over DTLS just the same.
    let (st, r) = get(&format!("{base}/api/clients/secure-1/3/0/0")).await;
    assert_eq!(
        (st, r["status"].clone()),
        (StatusCode::OK, json!("CONTENT(205)"))
    );
    s.stop().await;
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
