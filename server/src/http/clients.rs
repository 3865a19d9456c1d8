//! `GET /api/clients`, `GET /api/clients/{ep}`.
use super::ApiState;
use axum::Router;

/// The routes.
pub(super) fn routes() -> Router<ApiState> {
    Router::new()
}
