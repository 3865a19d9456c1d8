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
    /// Answered `202`: its result is kept for whoever asks.
    delayed: bool,
    /// Answered in the HTTP response itself: nothing to keep.
    answered: bool,
    /// A delayed request's result, once there is one (`{"response": ...}` or
    /// `{"error": ...}`), and its size as JSON text.
    result: Option<(Json, usize)>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<u64, Entry>,
    /// Ids oldest first, to forget the oldest past the retention.
    order: VecDeque<u64>,
    /// Bytes of the results kept.
    bytes: usize,
}

/// Bytes of results kept at most, whatever `[http] request_retention` says: a read of a
/// large value for many sleeping devices must not pile up gigabytes.
const MAX_RESULT_BYTES: usize = 64 << 20;

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
                delayed: false,
                answered: false,
                result: None,
            },
        );
        inner.order.push_back(id);
        Self::trim(&mut inner, self.retention);
    }

    /// Forgets the oldest requests past the retention or the byte bound.
    fn trim(inner: &mut Inner, retention: usize) {
        while inner.order.len() > retention || inner.bytes > MAX_RESULT_BYTES {
            let Some(old) = inner.order.pop_front() else {
                break;
            };
            if let Some(e) = inner.entries.remove(&old) {
                inner.bytes -= e.result.map_or(0, |(_, n)| n);
            }
        }
    }

    /// The request was answered `202`: its result is to be kept.
    pub(super) fn delayed(&self, id: u64) {
        if let Ok(mut inner) = self.inner.lock() {
            if let Some(e) = inner.entries.get_mut(&id) {
                e.delayed = true;
            }
        }
    }

    /// The request was answered in its HTTP response.
    pub(super) fn answered(&self, id: u64) {
        if let Ok(mut inner) = self.inner.lock() {
            if let Some(e) = inner.entries.get_mut(&id) {
                e.answered = true;
            }
        }
    }

    /// Records a delayed request's result (ignored if it was forgotten meanwhile).
    pub(super) fn done(&self, id: u64, result: Json) {
        let size = result.to_string().len();
        if let Ok(mut inner) = self.inner.lock() {
            let Some(e) = inner.entries.get_mut(&id) else {
                return;
            };
            e.answered = true;
            if !e.delayed {
                return;
            }
            e.result = Some((result, size));
            inner.bytes += size;
            Self::trim(&mut inner, self.retention);
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
        "state": if e.answered { "done" } else { "pending" },
    });
    shown_fields(&e.shown, &mut body);
    if let (Some((Json::Object(result), _)), Json::Object(b)) = (e.result, &mut body) {
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
        r.delayed(1);
        r.done(1, json!({"response": {"status": "CONTENT(205)"}}));
        assert!(r.get(1).unwrap().result.is_some());
        r.pending(3, "b", "write", at("/3/0/14"));
        assert!(r.get(1).is_none());
        assert_eq!(r.shown_of(2), Some(at("/3/0/1")));
        assert!(r.get(3).unwrap().result.is_none());
        // A result for a forgotten request changes nothing.
        r.done(1, json!({}));
        assert!(r.get(1).is_none());
        // A request answered in its HTTP response keeps no result.
        r.done(2, json!({"response": {}}));
        let e = r.get(2).unwrap();
        assert!(e.answered && e.result.is_none());
    }

    #[test]
    fn results_are_bounded_by_bytes() {
        let r = Requests::new(1_000_000);
        let big = "x".repeat(1 << 20);
        for id in 0..100 {
            r.pending(id, "a", "read", Shown::Node(lwm2m::model::Path::ROOT));
            r.delayed(id);
            r.done(id, json!({ "response": big }));
        }
        let inner = r.inner.lock().unwrap();
        assert!(inner.bytes <= MAX_RESULT_BYTES);
        assert!(
            (60..=64).contains(&inner.entries.len()),
            "{}",
            inner.entries.len()
        );
    }
}
