//! Commands answered `202` for a sleeping queue-mode device: kept until their result arrives
//! and then until forgotten (the newest `[http] request_retention`), for
//! `GET /api/requests/{id}`.
use super::ApiState;
use axum::Router;

/// The requests known.
pub struct Requests {}

impl Requests {
    /// Keeps at most `retention` requests.
    pub fn new(_retention: usize) -> Self {
        Self {}
    }
}

/// The routes.
pub(super) fn routes() -> Router<ApiState> {
    Router::new()
}
