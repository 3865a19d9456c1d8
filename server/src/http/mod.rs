//! The HTTP API: Leshan's REST API for devices and device management (OMA LwM2M TS 1.2
//! Core §6.3, §6.4 through the command path), provisioning and firmware (the admin
//! operations), the device event stream as server-sent events, the web console, the OpenAPI
//! document and the Prometheus text at `/metrics`.
//!
//! axum routes; each module adds its routes to [`router`]:
//! - `clients`: `GET /api/clients`, `GET /api/clients/{ep}`.
//! - `dm`: read, write, execute, create, delete, discover, attributes, observe, composite.
//! - `node_json`: Leshan's JSON for a node (`{"id", "kind", "value", "type"}`).
//! - `requests`: commands answered `202` for a sleeping device, `GET /api/requests/{id}`.
//! - `events`: `GET /api/events` (and `/api/event`), retained for `Last-Event-ID`.
//! - `admin`: devices' credentials, bootstrap accounts, firmware packages and campaigns.
//! - `auth`: the bearer token; `tls`: HTTPS with rustls; `serve`: the bounded accept loop.
//! - `openapi`: `GET /api/openapi.json`; `console`: the web console at `/`.
mod admin;
mod auth;
mod clients;
mod console;
mod dm;
mod error;
pub mod events;
pub mod node_json;
mod openapi;
mod origin;
mod requests;
mod serve;
pub mod tls;

pub use error::ApiError;
pub use events::EventLog;
pub use serve::{serve, Listener, HEADER_READ_TIMEOUT};

use crate::config::Config;
use crate::handle::ServerHandle;
use crate::metrics::CONTENT_TYPE;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use lwm2m::model::Registry;
use std::sync::Arc;

/// What every handler reaches: the server, the object model, the event log, the pending
/// requests and the configuration. One `Arc`: every request clones the state for each layer
/// it passes, and a clone of the fields themselves (the handle's channels) costs atomics.
#[derive(Clone)]
pub struct ApiState(Arc<Api>);

/// The fields of [`ApiState`].
pub struct Api {
    /// The running server.
    pub handle: ServerHandle,
    /// The object model, to type values written and read.
    pub schema: Arc<Registry>,
    /// The device events, numbered and retained.
    pub events: Arc<EventLog>,
    /// Commands answered `202`, until their result is fetched or forgotten.
    pub requests: Arc<requests::Requests>,
    /// The configuration (`[http]`, the data directory, firmware limits).
    pub config: Arc<Config>,
    /// The bearer token, when one is required.
    pub token: Option<Arc<str>>,
    /// The object model as the console reads it, built at the first request.
    pub object_specs: std::sync::OnceLock<serde_json::Value>,
}

impl std::ops::Deref for ApiState {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.0
    }
}

impl ApiState {
    /// The state for `handle`, with an event log fed by `handle`'s event stream (its task
    /// ends with the server).
    pub fn new(
        handle: ServerHandle,
        schema: Arc<Registry>,
        config: Arc<Config>,
        token: Option<Arc<str>>,
    ) -> Self {
        let requests = Arc::new(requests::Requests::new(config.http.request_retention));
        let events = EventLog::start(&handle, requests.clone(), config.http.event_retention);
        Self(Arc::new(Api {
            handle,
            schema,
            events,
            requests,
            config,
            token,
            object_specs: std::sync::OnceLock::new(),
        }))
    }
}

/// Every route of the API.
pub fn router(state: ApiState) -> Router {
    let api = Router::new()
        .merge(clients::routes())
        .merge(dm::routes())
        .merge(requests::routes())
        .merge(events::routes())
        .merge(admin::routes())
        .merge(openapi::routes())
        .merge(console::routes())
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));
    Router::new()
        .route("/metrics", get(metrics_text))
        .merge(api)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            origin::same_origin,
        ))
        .layer(axum::middleware::map_response(error::as_json))
        .layer(axum::middleware::from_fn(serve::body_idle_timeout))
        .with_state(state)
}

async fn metrics_text(State(state): State<ApiState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        state.handle.metrics.render(),
    )
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}
