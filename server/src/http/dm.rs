//! Device management (Core §6.3, §6.4) on `/api/clients/{ep}/{path}`.
use super::ApiState;
use axum::Router;

/// The routes.
pub(super) fn routes() -> Router<ApiState> {
    Router::new()
}
