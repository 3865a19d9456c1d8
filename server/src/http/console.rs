//! The web console at `/`: one page of plain HTML, CSS and JavaScript (no framework, no
//! build step, nothing fetched from elsewhere, since operators are often offline), built
//! into the binary, that uses the API itself: devices, one device's objects with Read,
//! Write, Execute and Observe, the live event stream, firmware packages and campaigns.
//!
//! Also `GET /api/objectspecs`: the object model the console types values with, in Leshan's
//! objectspecs shape (OMA LwM2M TS 1.2 Core Appendix D, the object template, as JSON).
//!
//! The page is served with a strict Content-Security-Policy: scripts and styles only from
//! this server, no inline script, no framing; a value a device sends cannot run as script
//! even if the page had a bug that put it in the document as markup.
use super::ApiState;
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use lwm2m::model::{ObjectDef, Registry, ResourceDef, ResourceType};
use serde_json::{json, Value};

const INDEX_HTML: &str = include_str!("console/index.html");
const APP_JS: &str = include_str!("console/app.js");
const STYLE_CSS: &str = include_str!("console/style.css");

/// The page's policy: everything from this origin only, and no inline script or style.
/// `connect-src 'self'` covers `fetch` and `EventSource` to the API.
pub(super) const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The routes.
pub(super) fn routes() -> Router<ApiState> {
    static_routes().route("/api/objectspecs", get(objectspecs))
}

/// The page's three files; they need no state.
fn static_routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/console/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/console/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }),
        )
}

/// One embedded file. `no-cache`: the browser revalidates, so a new server version's page is
/// never mixed with an old cached script.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CONTENT_SECURITY_POLICY),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
        ],
        body,
    )
        .into_response()
}

/// The object model does not change while the server runs: its JSON is built once.
async fn objectspecs(State(state): State<ApiState>) -> Json<Value> {
    Json(
        state
            .object_specs
            .get_or_init(|| object_specs(&state.schema))
            .clone(),
    )
}

/// The latest version of every object of `schema`, by increasing id, as Leshan's
/// `GET /api/objectspecs` gives them.
pub(super) fn object_specs(schema: &Registry) -> Value {
    Value::Array(schema.latest().map(object_spec).collect())
}

fn object_spec(def: &ObjectDef) -> Value {
    json!({
        "id": def.id,
        "name": def.name,
        "description": def.description,
        "version": def.version,
        "lwm2mversion": def.lwm2m_version,
        "urn": def.urn,
        "instancetype": instance_type(def.multiple),
        "mandatory": def.mandatory,
        "resourcedefs": def.resources.values().map(resource_spec).collect::<Vec<_>>(),
    })
}

fn resource_spec(def: &ResourceDef) -> Value {
    json!({
        "id": def.id,
        "name": def.name,
        "operations": def.operations.to_string(),
        "instancetype": instance_type(def.multiple),
        "mandatory": def.mandatory,
        "type": type_name(def.kind),
        "range": def.range.as_deref().unwrap_or(""),
        "units": def.units.as_deref().unwrap_or(""),
        "description": def.description,
    })
}

fn instance_type(multiple: bool) -> &'static str {
    if multiple {
        "multiple"
    } else {
        "single"
    }
}

/// Leshan's names for the data types (its `ResourceModel.Type`, lower case).
fn type_name(kind: ResourceType) -> &'static str {
    match kind {
        ResourceType::String => "string",
        ResourceType::Integer => "integer",
        ResourceType::UnsignedInteger => "unsigned",
        ResourceType::Float => "float",
        ResourceType::Boolean => "boolean",
        ResourceType::Opaque => "opaque",
        ResourceType::Time => "time",
        ResourceType::ObjectLink => "objlnk",
        ResourceType::CoreLink => "corelnk",
        ResourceType::None => "none",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Serves the console's routes (with `schema` behind `/api/objectspecs`) on a free
    /// loopback port through the API's own accept loop; returns the address and the task.
    async fn serve_console(
        schema: Arc<Registry>,
    ) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
        let app: Router = static_routes().route(
            "/api/objectspecs",
            get(move || {
                let schema = schema.clone();
                async move { Json(object_specs(&schema)) }
            }),
        );
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let listener = super::super::Listener {
            tcp,
            tls: None,
            max_connections: 8,
            header_timeout: super::super::HEADER_READ_TIMEOUT,
        };
        (addr, tokio::spawn(super::super::serve(listener, app)))
    }

    /// One `GET` over HTTP/1.1: the status line, the headers (names lower case) and the body.
    async fn get_raw(
        addr: std::net::SocketAddr,
        path: &str,
    ) -> (String, Vec<(String, String)>, String) {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: console\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.unwrap();
        let text = String::from_utf8(raw).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap().to_owned();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        (status, headers, body.to_owned())
    }

    fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    #[tokio::test]
    async fn the_page_and_its_files_are_served_typed_uncached_under_a_strict_policy() {
        let (addr, task) = serve_console(Arc::new(Registry::bundled())).await;
        for (path, content_type, expected) in [
            ("/", "text/html; charset=utf-8", INDEX_HTML),
            ("/console/app.js", "text/javascript; charset=utf-8", APP_JS),
            ("/console/style.css", "text/css; charset=utf-8", STYLE_CSS),
        ] {
            let (status, headers, body) = get_raw(addr, path).await;
            assert!(status.contains(" 200 "), "{path}: {status}");
            assert_eq!(
                header(&headers, "content-type"),
                Some(content_type),
                "{path}"
            );
            assert_eq!(
                header(&headers, "cache-control"),
                Some("no-cache"),
                "{path}"
            );
            let csp = header(&headers, "content-security-policy").unwrap_or_default();
            assert!(csp.contains("default-src 'self'"), "{path}: {csp}");
            assert!(csp.contains("script-src 'self'"), "{path}: {csp}");
            assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
            assert!(!csp.contains("unsafe-eval"), "{path}: {csp}");
            assert_eq!(body, expected, "{path}");
        }
        task.abort();
    }

    #[test]
    fn the_page_loads_its_script_and_style_from_this_server_and_has_no_inline_script() {
        assert!(INDEX_HTML.contains(r#"<script src="/console/app.js""#));
        assert!(INDEX_HTML.contains(r#"href="/console/style.css""#));
        // Every <script> has a src: an inline one would be refused by the policy anyway.
        assert_eq!(
            INDEX_HTML.matches("<script").count(),
            INDEX_HTML.matches("<script src=").count()
        );
        assert!(!INDEX_HTML.contains("http://") && !INDEX_HTML.contains("https://"));
        assert!(!INDEX_HTML.contains(" style=\""));
        assert!(!INDEX_HTML.contains(" onclick="));
    }

    #[tokio::test]
    async fn objectspecs_lists_the_device_object_with_its_resources() {
        let (addr, task) = serve_console(Arc::new(Registry::bundled())).await;
        let (status, headers, body) = get_raw(addr, "/api/objectspecs").await;
        task.abort();
        assert!(status.contains(" 200 "), "{status}");
        assert_eq!(header(&headers, "content-type"), Some("application/json"));
        let specs: Value = serde_json::from_str(&body).unwrap();
        let objects = specs.as_array().unwrap();
        let ids: Vec<u64> = objects.iter().filter_map(|o| o["id"].as_u64()).collect();
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "sorted, unique: {ids:?}"
        );
        let device = objects.iter().find(|o| o["id"] == 3).unwrap();
        assert_eq!(device["name"], "Device");
        assert_eq!(device["instancetype"], "single");
        let res = |id: u64| {
            device["resourcedefs"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["id"] == id)
                .unwrap()
                .clone()
        };
        let manufacturer = res(0);
        assert_eq!(manufacturer["name"], "Manufacturer");
        assert_eq!(manufacturer["operations"], "R");
        assert_eq!(manufacturer["type"], "string");
        assert_eq!(manufacturer["instancetype"], "single");
        let reboot = res(4);
        assert_eq!(reboot["operations"], "E");
        assert_eq!(reboot["type"], "none");
        let utc_offset = res(14);
        assert_eq!(utc_offset["operations"], "RW");
        let power_sources = res(6);
        assert_eq!(power_sources["instancetype"], "multiple");
        assert_eq!(power_sources["type"], "integer");
        let current_time = res(13);
        assert_eq!(current_time["type"], "time");
        // The server object's lifetime has its unit.
        let server = objects.iter().find(|o| o["id"] == 1).unwrap();
        assert_eq!(server["instancetype"], "multiple");
        let lifetime = server["resourcedefs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == 1)
            .unwrap();
        assert_eq!(lifetime["units"], "s");
    }

    #[test]
    fn every_data_type_has_leshans_name() {
        let specs = object_specs(&Registry::bundled());
        let mut seen = std::collections::BTreeSet::new();
        for o in specs.as_array().unwrap() {
            for r in o["resourcedefs"].as_array().unwrap() {
                seen.insert(r["type"].as_str().unwrap().to_owned());
            }
        }
        let known = [
            "string", "integer", "unsigned", "float", "boolean", "opaque", "time", "objlnk",
            "corelnk", "none",
        ];
        assert!(seen.iter().all(|t| known.contains(&t.as_str())), "{seen:?}");
        assert!(
            seen.contains("objlnk") && seen.contains("unsigned"),
            "{seen:?}"
        );
    }
}
