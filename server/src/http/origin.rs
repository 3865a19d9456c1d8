//! What keeps a web page the operator happens to open from using an API that asks for no
//! token (the default, on loopback): a page may send requests to `127.0.0.1:8080` (a form
//! post to Execute `/3/0/4` would reboot a device) and, through DNS rebinding, read the
//! answers. Without a token, a request is served only if its `Host` names this server by a
//! loopback name or address (RFC 9110 §7.2; a rebound name is refused) and the browser did
//! not mark it as coming from another site (`Sec-Fetch-Site`, Fetch Metadata) or another
//! origin (`Origin`, RFC 6454). With a token no page can act for the operator: browsers do
//! not add a bearer token by themselves.
use super::{ApiError, ApiState};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::IpAddr;

/// Serves the request if a token is configured, or if it comes from this server's own
/// pages or a non-browser client; `403` otherwise.
pub(super) async fn same_origin(
    State(state): State<ApiState>,
    request: Request,
    next: Next,
) -> Response {
    if state.token.is_some() {
        return next.run(request).await;
    }
    match check(request.headers(), state.config.http.bind.ip()) {
        Ok(()) => next.run(request).await,
        Err(why) => {
            tracing::warn!(path = %request.uri().path(), %why, "HTTP request refused");
            ApiError::new(StatusCode::FORBIDDEN, why).into_response()
        }
    }
}

fn check(headers: &HeaderMap, bind: IpAddr) -> Result<(), String> {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    if !host.is_empty() && !local_host(host, bind) {
        return Err(format!(
            "Host {host:?} is not this server's loopback name or address (without a token \
             the API answers only to localhost, 127.0.0.1, [::1] or {bind})"
        ));
    }
    let site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("none");
    if site == "cross-site" || site == "same-site" {
        return Err("a request from another web site (Sec-Fetch-Site) is refused".into());
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let authority = origin.split("://").nth(1).unwrap_or_default();
        if authority != host {
            return Err(format!(
                "a request from the page of another origin ({origin}) is refused"
            ));
        }
    }
    Ok(())
}

/// Whether `host` (a Host header: name or address, optional port) is a loopback name, a
/// loopback address, or the address the API is bound to.
fn local_host(host: &str, bind: IpAddr) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match name.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback() || ip == bind,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(items: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in items {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    const LOOP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn local_clients_and_the_servers_own_pages_pass() {
        for host in [
            "127.0.0.1:8080",
            "localhost:8080",
            "[::1]:8080",
            "LOCALHOST",
            "127.0.0.2",
        ] {
            assert!(check(&headers(&[("host", host)]), LOOP).is_ok(), "{host}");
        }
        let own = headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080"),
            ("sec-fetch-site", "same-origin"),
        ]);
        assert!(check(&own, LOOP).is_ok());
        // curl and backends send neither Origin nor Sec-Fetch-Site.
        assert!(check(&headers(&[("host", "127.0.0.1:8080")]), LOOP).is_ok());
    }

    #[test]
    fn rebound_names_and_other_sites_are_refused() {
        let e = check(&headers(&[("host", "evil.example:8080")]), LOOP).unwrap_err();
        assert!(e.contains("evil.example"), "{e}");
        let cross = headers(&[("host", "127.0.0.1:8080"), ("sec-fetch-site", "cross-site")]);
        assert!(check(&cross, LOOP).is_err());
        let origin = headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "https://evil.example"),
        ]);
        assert!(check(&origin, LOOP).unwrap_err().contains("evil.example"));
        let null = headers(&[("host", "127.0.0.1:8080"), ("origin", "null")]);
        assert!(check(&null, LOOP).is_err());
    }
}
