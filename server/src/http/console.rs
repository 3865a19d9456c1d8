//! The web console at `/`.
use super::ApiState;
use axum::Router;

/// The routes.
pub(super) fn routes() -> Router<ApiState> {
    Router::new()
}
