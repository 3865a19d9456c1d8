//! Provisioning and firmware over HTTP: the admin operations of the CLI.
use super::ApiState;
use axum::Router;

/// The routes.
pub(super) fn routes() -> Router<ApiState> {
    Router::new()
}
