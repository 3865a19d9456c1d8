//! The bearer token (RFC 6750) every route but `/metrics` needs when one is configured
//! (`[http] token_file`; required off loopback).
//!
//! The token comes in `Authorization: Bearer TOKEN` (RFC 6750 §2.1); the event stream routes
//! also take it as `?access_token=TOKEN` (§2.3), since a browser's `EventSource` cannot set
//! headers. The console's static files (`/`, `/console/...`) are served without it: they hold
//! no data, and the console needs to load before it can ask for the token; every API call it
//! makes carries it. `/metrics` is routed outside this layer (a Prometheus scraper has no
//! token).
use super::{ApiError, ApiState};
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The routes that take the token in the query string: the event streams.
const QUERY_TOKEN_PATHS: [&str; 2] = ["/api/events", "/api/event"];

/// Lets a request through if no token is configured or it carries the token; answers `401`
/// with `WWW-Authenticate: Bearer` otherwise.
pub(super) async fn require_token(
    State(state): State<ApiState>,
    request: Request,
    next: Next,
) -> Response {
    let Some(expected) = state.token.as_deref() else {
        return next.run(request).await;
    };
    if is_public(request.uri().path()) {
        return next.run(request).await;
    }
    match presented(&request) {
        Some(t) if same(t.as_bytes(), expected.as_bytes()) => next.run(request).await,
        Some(_) => {
            tracing::debug!(path = %request.uri().path(), "HTTP request with a wrong bearer token");
            unauthorized(
                "Bearer realm=\"lwm2m-server\", error=\"invalid_token\"",
                "the bearer token is wrong",
            )
        }
        None => unauthorized(
            "Bearer realm=\"lwm2m-server\"",
            "a bearer token is required: Authorization: Bearer TOKEN",
        ),
    }
}

/// The console's static files.
pub(super) fn is_public(path: &str) -> bool {
    path == "/" || path.starts_with("/console/")
}

#[derive(Deserialize)]
struct AccessToken {
    access_token: Option<String>,
}

/// The token the request carries: the `Authorization` header's, else, on the event stream
/// routes, the `access_token` query parameter's.
fn presented(request: &Request) -> Option<String> {
    if let Some(value) = request.headers().get(header::AUTHORIZATION) {
        // A header that is not a bearer token counts as a wrong token, not a missing one.
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim().to_string());
        return Some(token.unwrap_or_default());
    }
    if QUERY_TOKEN_PATHS.contains(&request.uri().path()) {
        return Query::<AccessToken>::try_from_uri(request.uri())
            .ok()
            .and_then(|q| q.0.access_token);
    }
    None
}

/// Compares in constant time: both sides are hashed first, so neither the position of the
/// first difference nor the length of the token shows in the time taken.
fn same(given: &[u8], expected: &[u8]) -> bool {
    let (a, b) = (Sha256::digest(given), Sha256::digest(expected));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

fn unauthorized(challenge: &'static str, message: &str) -> Response {
    let mut response = ApiError::new(StatusCode::UNAUTHORIZED, message).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_same_token_matches() {
        assert!(same(b"0123456789abcdef", b"0123456789abcdef"));
        assert!(!same(b"0123456789abcdeF", b"0123456789abcdef"));
        assert!(!same(b"0123456789abcdef0", b"0123456789abcdef"));
        assert!(!same(b"", b"0123456789abcdef"));
    }

    fn request(uri: &str, authorization: Option<&str>) -> Request {
        let mut b = axum::http::Request::builder().uri(uri);
        if let Some(a) = authorization {
            b = b.header(header::AUTHORIZATION, a);
        }
        b.body(axum::body::Body::empty()).unwrap()
    }

    #[test]
    fn the_token_is_read_from_the_header_or_on_event_streams_from_the_query() {
        let t = |uri, auth| presented(&request(uri, auth));
        assert_eq!(t("/api/clients", Some("Bearer abc")), Some("abc".into()));
        assert_eq!(t("/api/clients", Some("bearer  abc ")), Some("abc".into()));
        assert_eq!(t("/api/clients", Some("Basic abc")), Some(String::new()));
        assert_eq!(t("/api/clients", None), None);
        assert_eq!(t("/api/clients?access_token=abc", None), None);
        assert_eq!(
            t("/api/events?ep=x&access_token=a%2Bb", None),
            Some("a+b".into())
        );
        assert_eq!(t("/api/event?access_token=abc", None), Some("abc".into()));
        assert!(is_public("/") && is_public("/console/app.js"));
        assert!(!is_public("/api/openapi.json") && !is_public("/consolex"));
    }
}
