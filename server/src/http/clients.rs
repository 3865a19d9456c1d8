//! `GET /api/clients` and `GET /api/clients/{ep}`: the registered devices (OMA LwM2M TS 1.2
//! Core §6.2) in the shape of Leshan's demo API, with what Leshan leaves out: when the
//! registration expires, the commands waiting, the observations and the DTLS identity (never
//! a key).
use super::{ApiError, ApiState};
use crate::core::clients::ClientState;
use crate::core::types::Registration;
use crate::handle::{ClientInfo, ClientQuery};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json as JsonBody, Router};
use serde::Deserialize;
use serde_json::{json, Map, Value as Json};
use std::collections::BTreeMap;
use std::time::SystemTime;

/// Devices in one page unless `limit` says otherwise.
const DEFAULT_PAGE: usize = 1000;
/// Most devices in one page.
const MAX_PAGE: usize = 10_000;

/// The routes.
pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/clients", get(list))
        .route("/api/clients/:ep", get(one))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    #[serde(default)]
    prefix: String,
    after: Option<String>,
    limit: Option<usize>,
}

async fn list(
    State(state): State<ApiState>,
    Query(q): Query<ListQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be 1..={MAX_PAGE}, not {limit}"
        )));
    }
    let page = state
        .handle
        .clients(ClientQuery {
            prefix: q.prefix.clone(),
            after: q.after.clone(),
            limit,
        })
        .await?;
    let mut headers = HeaderMap::new();
    headers.insert("x-total-count", HeaderValue::from(page.total));
    if page.clients.len() == limit {
        if let Some(last) = page.clients.last() {
            let next = format!(
                "</api/clients?prefix={}&after={}&limit={limit}>; rel=\"next\"",
                encode(&q.prefix),
                encode(&last.registration.endpoint)
            );
            if let Ok(v) = HeaderValue::from_str(&next) {
                headers.insert(header::LINK, v);
            }
        }
    }
    let body: Vec<Json> = page.clients.iter().map(|c| client_json(c, None)).collect();
    Ok((headers, JsonBody(body)))
}

async fn one(
    State(state): State<ApiState>,
    UrlPath(ep): UrlPath<String>,
) -> Result<JsonBody<Json>, ApiError> {
    match state.handle.client(&ep).await? {
        Some(ClientInfo { state, credential }) => {
            let identity = credential.map(|c| {
                json!({
                    "kind": c.kind,
                    "id": c.id,
                    "addedAt": lwm2m::time::unix_millis(c.added_at),
                })
            });
            Ok(JsonBody(client_json(
                &state,
                Some(identity.unwrap_or(Json::Null)),
            )))
        }
        None => Err(unknown_device(&ep)),
    }
}

/// 404 for a device that is not registered.
pub(super) fn unknown_device(ep: &str) -> ApiError {
    ApiError::not_found(format!("no registered client with endpoint name {ep:?}"))
}

/// A device with its state as the API shows it; `identity` only where it was looked up.
fn client_json(c: &ClientState, identity: Option<Json>) -> Json {
    let mut m = registration_map(&c.registration);
    m.insert("secure".into(), json!(c.secure));
    if let Some(sleeping) = c.sleeping {
        m.insert("sleeping".into(), json!(sleeping));
    }
    m.insert("queued".into(), json!(c.queued));
    m.insert("inflight".into(), json!(c.inflight));
    m.insert(
        "observations".into(),
        c.observations
            .iter()
            .map(|(id, paths)| {
                json!({
                    "id": id.0,
                    "paths": paths.iter().map(ToString::to_string).collect::<Vec<_>>(),
                })
            })
            .collect(),
    );
    if let Some(identity) = identity {
        m.insert("identity".into(), identity);
    }
    Json::Object(m)
}

/// A registration as Leshan's demo API writes it, plus `expiresAt`.
pub(super) fn registration_json(reg: &Registration) -> Json {
    Json::Object(registration_map(reg))
}

fn registration_map(reg: &Registration) -> Map<String, Json> {
    let mut available: BTreeMap<u16, Vec<u16>> = BTreeMap::new();
    let links: Vec<Json> = reg
        .links
        .objects
        .iter()
        .map(|(path, ver)| {
            if let (Some(o), Some(i)) = (path.object_id(), path.instance_id()) {
                available.entry(o).or_default().push(i);
            }
            let mut attributes = Map::new();
            if let Some(v) = ver {
                attributes.insert("ver".into(), json!(v));
            }
            json!({"url": path.to_string(), "attributes": attributes})
        })
        .collect();
    let mut m = Map::new();
    m.insert("endpoint".into(), json!(reg.endpoint));
    m.insert(
        "registrationId".into(),
        json!(reg.location.strip_prefix("/rd/").unwrap_or(&reg.location)),
    );
    m.insert("registrationDate".into(), json!(rfc3339(reg.registered_at)));
    m.insert("lastUpdate".into(), json!(rfc3339(reg.updated_at)));
    m.insert("address".into(), json!(reg.address));
    if let Some(sms) = &reg.sms {
        m.insert("smsNumber".into(), json!(sms));
    }
    m.insert("lwM2mVersion".into(), json!(reg.version.as_str()));
    m.insert("lifetime".into(), json!(reg.lifetime));
    m.insert("bindingMode".into(), json!(reg.binding.to_string()));
    m.insert("rootPath".into(), json!(reg.links.root_path));
    m.insert("objectLinks".into(), Json::Array(links));
    m.insert("additionalRegistrationAttributes".into(), json!({}));
    m.insert("queuemode".into(), json!(reg.queue_mode));
    m.insert("availableInstances".into(), json!(available));
    m.insert("expiresAt".into(), json!(rfc3339(reg.expires_at())));
    m
}

/// RFC 3339 in UTC with milliseconds, as JavaScript's `Date` reads it.
pub(super) fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Percent-encodes a query value (RFC 3986 unreserved characters kept).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(encode("a b&c/é"), "a%20b%26c%2F%C3%A9");
        assert_eq!(encode("meter-7_x.y~"), "meter-7_x.y~");
    }
}
