//! The OpenAPI document against [`ROUTES`], and [`ROUTES`] against the router of a running
//! server.
use super::{DOCUMENT, ROUTES};
use crate::config::Config;
use crate::http::{router, ApiState};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use hyper::service::Service as _;
use hyper_util::service::TowerToHyperService;
use std::collections::BTreeSet;
use std::sync::Arc;

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "patch", "head", "options", "trace",
];

fn document() -> serde_json::Value {
    serde_json::from_str(DOCUMENT).expect("openapi.json is JSON")
}

#[test]
fn the_document_is_openapi_3_and_describes_exactly_the_routes() {
    let doc = document();
    let version = doc["openapi"].as_str().unwrap_or_default();
    assert!(version.starts_with("3."), "openapi = {version:?}");
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    let paths = doc["paths"].as_object().expect("paths");
    let mut described = BTreeSet::new();
    for (path, item) in paths {
        let item = item.as_object().expect("a path item");
        for method in item.keys().filter(|k| METHODS.contains(&k.as_str())) {
            described.insert((method.to_uppercase(), path.clone()));
        }
    }
    let routed: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(routed.len(), ROUTES.len(), "a route is listed twice");
    let undocumented: Vec<_> = routed.difference(&described).collect();
    let unrouted: Vec<_> = described.difference(&routed).collect();
    assert!(
        undocumented.is_empty() && unrouted.is_empty(),
        "routed but not described: {undocumented:?}; described but not in ROUTES: {unrouted:?}"
    );
}

/// Every `$ref` points at something the document defines, and every operation says what it
/// answers; every path parameter of a template is declared.
#[test]
fn every_reference_resolves_and_every_path_parameter_is_declared() {
    let doc = document();
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(!refs.is_empty());
    for r in refs {
        let pointer = r.strip_prefix('#').expect("a local reference");
        assert!(doc.pointer(pointer).is_some(), "{r} does not resolve");
    }
    let resolve = |v: &serde_json::Value| -> serde_json::Value {
        match v["$ref"].as_str() {
            Some(r) => doc.pointer(&r[1..]).cloned().unwrap_or_default(),
            None => v.clone(),
        }
    };
    for (path, item) in doc["paths"].as_object().expect("paths") {
        let templated: BTreeSet<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        for (method, op) in item.as_object().expect("a path item") {
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{method} {path} has no responses"
            );
            let declared: BTreeSet<String> = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .map(resolve)
                .filter(|p| p["in"] == "path")
                .filter_map(|p| p["name"].as_str().map(str::to_string))
                .collect();
            let templated: BTreeSet<String> = templated.iter().map(|s| s.to_string()).collect();
            assert_eq!(declared, templated, "{method} {path}: path parameters");
        }
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}

fn collect_refs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v.as_str()) {
                    ("$ref", Some(r)) => out.push(r.to_string()),
                    _ => collect_refs(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// A route's template with its placeholders filled: a device that is not registered, ids
/// that name nothing, a resource path.
fn concrete(template: &str) -> String {
    template
        .replace("{ep}", "no-such-device")
        .replace("{path}", "3/0/1")
        .replace("{id}", "999999")
}

/// Whether the router's own answer for an unrouted request: the fallback's `404 no such
/// route`, or `405` for a method the path does not take.
async fn is_unrouted(app: &axum::Router, method: &str, path: &str) -> Option<String> {
    let request = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).expect("a method"))
        .uri(path)
        .body(Body::empty())
        .expect("a request");
    let response = TowerToHyperService::new(app.clone())
        .call(request)
        .await
        .expect("the router answers");
    let status = response.status();
    if status == StatusCode::METHOD_NOT_ALLOWED {
        return Some(format!("{method} {path}: 405"));
    }
    if status != StatusCode::NOT_FOUND {
        return None;
    }
    // Only a 404 is read to its end: a served event stream never ends.
    let body = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .unwrap_or_default();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    (json["message"] == "no such route").then(|| format!("{method} {path}: 404 no such route"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_listed_route_is_routed() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let text = format!(
        "[server]\ncoap_bind = [\"127.0.0.1:0\"]\ncoaps_bind = [\"127.0.0.1:0\"]\ndata_dir = \"{}\"\n\
         [mqtt]\nenabled = false\n\
         [bootstrap]\ncoap_bind = [\"127.0.0.1:0\"]\ncoaps_bind = [\"127.0.0.1:0\"]\n\
         [http]\nbind = \"127.0.0.1:0\"\n",
        dir.path().display()
    );
    let config = Config::parse(&text).expect("a valid configuration");
    let server = crate::start(&config).await.expect("the server starts");
    let state = ApiState::new(
        server.handle.clone(),
        Arc::new(lwm2m::model::Registry::bundled()),
        Arc::new(config),
        None,
    );
    let app = router(state);
    // The check itself tells an unrouted request.
    assert!(is_unrouted(&app, "GET", "/api/no-such-route")
        .await
        .is_some());
    assert!(is_unrouted(&app, "PATCH", "/api/openapi.json")
        .await
        .is_some());
    let mut missing = Vec::new();
    for (method, template) in ROUTES {
        if let Some(m) = is_unrouted(&app, method, &concrete(template)).await {
            missing.push(m);
        }
    }
    server.handle.shutdown().await;
    let _ = server.task.await;
    assert!(missing.is_empty(), "not routed: {missing:#?}");
}

/// The document says which routes need no token as the middleware decides it: `/metrics`
/// and the console's static files.
#[test]
fn the_routes_open_without_a_token_are_the_ones_the_document_says() {
    let doc = document();
    assert_eq!(doc["security"], serde_json::json!([{"bearer": []}]));
    for (method, path) in ROUTES {
        let op = &doc["paths"][path][method.to_lowercase()];
        let open = op["security"] == serde_json::json!([]);
        let exempt = *path == "/metrics" || crate::http::auth::is_public(path);
        assert_eq!(open, exempt, "{method} {path}");
    }
}
