//! `GET /api/openapi.json`: the OpenAPI 3.0 document (OpenAPI Specification 3.0.3) of every
//! route, written by hand in `openapi.json` and embedded in the binary.
//!
//! [`ROUTES`] lists what the router serves; the tests hold the document, [`ROUTES`] and the
//! router to each other, so a route added without its description (or described but not
//! routed) fails them.
use super::ApiState;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

/// The document.
pub(crate) const DOCUMENT: &str = include_str!("openapi.json");

/// Every route the router serves: the method and the OpenAPI path template (read by the
/// tests, which hold it to the document and to the router).
#[cfg(test)]
pub(crate) const ROUTES: &[(&str, &str)] = &[
    ("GET", "/api/clients"),
    ("GET", "/api/clients/{ep}"),
    ("GET", "/api/clients/{ep}/{path}"),
    ("PUT", "/api/clients/{ep}/{path}"),
    ("POST", "/api/clients/{ep}/{path}"),
    ("DELETE", "/api/clients/{ep}/{path}"),
    ("GET", "/api/clients/{ep}/{path}/discover"),
    ("PUT", "/api/clients/{ep}/{path}/attributes"),
    ("POST", "/api/clients/{ep}/{path}/observe"),
    ("DELETE", "/api/clients/{ep}/{path}/observe"),
    ("GET", "/api/clients/{ep}/composite"),
    ("PUT", "/api/clients/{ep}/composite"),
    ("POST", "/api/clients/{ep}/composite/observe"),
    ("DELETE", "/api/clients/{ep}/composite/observe"),
    ("GET", "/api/requests/{id}"),
    ("GET", "/api/events"),
    ("GET", "/api/event"),
    ("GET", "/api/devices"),
    ("POST", "/api/devices"),
    ("DELETE", "/api/devices/{ep}"),
    ("POST", "/api/devices/{ep}/rotate"),
    ("GET", "/api/bootstrap"),
    ("POST", "/api/bootstrap"),
    ("DELETE", "/api/bootstrap/{ep}"),
    ("GET", "/api/firmware/packages"),
    ("POST", "/api/firmware/packages"),
    ("DELETE", "/api/firmware/packages/{id}"),
    ("GET", "/api/firmware/campaigns"),
    ("POST", "/api/firmware/campaigns"),
    ("GET", "/api/firmware/campaigns/{id}"),
    ("DELETE", "/api/firmware/campaigns/{id}"),
    ("GET", "/api/audit"),
    ("GET", "/api/objectspecs"),
    ("GET", "/api/openapi.json"),
    ("GET", "/metrics"),
    ("GET", "/"),
    ("GET", "/console/app.js"),
    ("GET", "/console/style.css"),
];

/// The routes.
pub(super) fn routes() -> Router<ApiState> {
    Router::new().route("/api/openapi.json", get(document))
}

async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT)
}

#[cfg(test)]
mod tests;
