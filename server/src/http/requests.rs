//! Commands answered `202` because their device sleeps (queue mode, OMA LwM2M TS 1.2
//! Transport §6.5): kept until their result arrives and then until forgotten (the newest
//! `[http] request_retention`), for `GET /api/requests/{id}`. The result is also an event
//! (`COMMAND_RESULT`) on the event stream.
use super::dm::Shown;
use super::{ApiError, ApiState};
use axum::extract::{Path as UrlPath, State};
use axum::routing::get;
use axum::{Json as JsonBody, Router};
use serde_json::{json, Value as Json};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// One request and where it is.
#[derive(Debug, Clone)]
struct Entry {
    endpoint: String,
    operation: &'static str,
    shown: Shown,
    /// The answer, once there is one (`{"response": ...}` or `{"error": ...}`).
    result: Option<Json>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<u64, Entry>,
    /// Ids oldest first, to forget the oldest past the retention.
    order: VecDeque<u64>,
}

/// The requests known, at most `retention` of them.
#[derive(Debug)]
pub struct Requests {
    retention: usize,
    inner: Mutex<Inner>,
}

impl Requests {
    /// Keeps at most `retention` requests.
    pub fn new(retention: usize) -> Self {
        Self {
            retention: retention.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Remembers a pending request, forgetting the oldest past the retention.
    pub(super) fn pending(&self, id: u64, endpoint: &str, operation: &'static str, shown: Shown) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        inner.entries.insert(
            id,
            Entry {
                endpoint: endpoint.to_string(),
                operation,
                shown,
                result: None,
            },
        );
        inner.order.push_back(id);
        while inner.order.len() > self.retention {
            if let Some(old) = inner.order.pop_front() {
                inner.entries.remove(&old);
            }
        }
    }

    /// Records a request's result (ignored if it was forgotten meanwhile).
    pub(super) fn done(&self, id: u64, result: Json) {
        if let Ok(mut inner) = self.inner.lock() {
            if let Some(e) = inner.entries.get_mut(&id) {
                e.result = Some(result);
            }
        }
    }

    /// What a known request's answer is keyed by.
    pub(super) fn shown_of(&self, id: u64) -> Option<Shown> {
        let inner = self.inner.lock().ok()?;
        inner.entries.get(&id).map(|e| e.shown.clone())
    }

    fn get(&self, id: u64) -> Option<Entry> {
        let inner = self.inner.lock().ok()?;
        inner.entries.get(&id).cloned()
    }
}

/// The routes.
pub(super) fn routes() -> Router<ApiState> {
    Router::new().route("/api/requests/:id", get(one))
}

async fn one(
    State(state): State<ApiState>,
    UrlPath(id): UrlPath<String>,
) -> Result<JsonBody<Json>, ApiError> {
    let n: u64 = id
        .parse()
        .map_err(|_| ApiError::bad_request(format!("request id {id:?} is not a number")))?;
    let e = state.requests.get(n).ok_or_else(|| {
        ApiError::not_found(format!(
            "no request {n}: never answered 202, or one of the oldest, forgotten"
        ))
    })?;
    let mut body = json!({
        "requestId": id,
        "ep": e.endpoint,
        "operation": e.operation,
        "state": if e.result.is_some() { "done" } else { "pending" },
    });
    shown_fields(&e.shown, &mut body);
    if let (Some(Json::Object(result)), Json::Object(b)) = (e.result, &mut body) {
        b.extend(result);
    }
    Ok(JsonBody(body))
}

/// `"path"` of a request on one node, `"paths"` of a composite.
pub(super) fn shown_fields(shown: &Shown, body: &mut Json) {
    match shown {
        Shown::Node(p) => body["path"] = json!(p.to_string()),
        Shown::Composite(paths) => {
            body["paths"] = json!(paths.iter().map(ToString::to_string).collect::<Vec<_>>())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_requests_are_forgotten_past_the_retention() {
        let r = Requests::new(2);
        let at = |s: &str| Shown::Node(lwm2m::model::Path::parse(s).unwrap());
        r.pending(1, "a", "read", at("/3/0/0"));
        r.pending(2, "a", "read", at("/3/0/1"));
        r.done(1, json!({"response": {"status": "CONTENT(205)"}}));
        assert!(r.get(1).unwrap().result.is_some());
        r.pending(3, "b", "write", at("/3/0/14"));
        assert!(r.get(1).is_none());
        assert_eq!(r.shown_of(2), Some(at("/3/0/1")));
        assert!(r.get(3).unwrap().result.is_none());
        // A result for a forgotten request changes nothing.
        r.done(1, json!({}));
        assert!(r.get(1).is_none());
    }
}
