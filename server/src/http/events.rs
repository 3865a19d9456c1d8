//! The device event stream over HTTP: server-sent events (WHATWG HTML §9.2) numbered and
//! retained so that a client reconnecting with `Last-Event-ID` misses nothing.
use super::ApiState;
use crate::handle::ServerHandle;
use axum::Router;
use lwm2m::model::Registry;
use std::sync::Arc;

/// The numbered, retained events.
pub struct EventLog {}

impl EventLog {
    /// Starts numbering `handle`'s events, keeping the newest `retention`.
    pub fn start(_handle: &ServerHandle, _schema: Arc<Registry>, _retention: usize) -> Arc<Self> {
        Arc::new(Self {})
    }
}

/// The routes.
pub(super) fn routes() -> Router<ApiState> {
    Router::new()
}
