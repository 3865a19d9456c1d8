//! `GET /api/openapi.json`: the OpenAPI 3 document of every route.
use super::ApiState;
use axum::Router;

/// The routes.
pub(super) fn routes() -> Router<ApiState> {
    Router::new()
}
