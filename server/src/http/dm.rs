//! Device management over HTTP (OMA LwM2M TS 1.2 Core §6.3 Read, Discover, Write,
//! Write-Attributes, Execute, Create, Delete, Read-/Write-Composite; §6.4 Observe,
//! Observe-Composite, Cancel) on `/api/clients/{ep}/{path}`, as Leshan's demo API routes and
//! answers them, through the one command path every northbound source uses.
//!
//! A device that answers is answered `200` with Leshan's response body, its errors included
//! (`"success": false`, as Leshan). A sleeping queue-mode device (Transport §6.5) gets the
//! command when it wakes: the request is answered `202` with a request id at once, or after
//! waiting up to `?timeout=` seconds for it to wake; the result then arrives as a
//! `COMMAND_RESULT` event and at `GET /api/requests/{id}`. A device that does not answer in
//! `?timeout=` seconds (5 by default, as Leshan) is `504`.
use super::clients::unknown_device;
use super::node_json::{node_json, parse_composite, parse_node};
use super::{ApiError, ApiState};
use crate::core::types::{Command, CommandError, Outcome};
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json as JsonBody, Router};
use lwm2m::attributes::NotificationAttributes;
use lwm2m::content::{ContentFormat, Record};
use lwm2m::model::{Node, Path, PathLevel, Registry, Resource, Value};
use lwm2m::ops::dm::{DmResponse, DownlinkRequest, WriteMode};
use lwm2m::ops::Lwm2mError;
use serde_json::{json, Map, Value as Json};
use std::time::Duration;

/// How long a request waits for the device when `?timeout=` is not given (Leshan's).
pub(super) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest `?timeout=`: an HTTP request is not a place to wait for a device for hours
/// (a sleeping device's command waits in its queue, and its result comes as an event).
pub(super) const MAX_TIMEOUT: Duration = Duration::from_secs(600);
/// Time given to the server, past the device's deadline, to report the timeout itself.
const MARGIN: Duration = Duration::from_secs(2);

/// The routes.
pub(super) fn routes() -> Router<ApiState> {
    Router::new().route(
        "/api/clients/:ep/*rest",
        get(get_op).put(put_op).post(post_op).delete(delete_op),
    )
}

/// The query of a device management request.
#[derive(Debug, Default)]
struct Params {
    format: Option<ContentFormat>,
    /// `?timeout=` as given.
    timeout: Option<Duration>,
    replace: bool,
    paths: Option<Vec<Path>>,
    /// Notification attributes as CoAP query items (`pmin=10`, or a bare `pmin` to remove).
    attributes: Vec<String>,
}

fn params(query: Vec<(String, String)>) -> Result<Params, ApiError> {
    let mut p = Params {
        replace: true,
        ..Params::default()
    };
    for (k, v) in query {
        match k.as_str() {
            "format" | "nodeformat" | "pathformat" => {
                p.format = Some(parse_format(&v)?);
            }
            "timeout" => {
                let secs: f64 = v.trim().parse().map_err(|_| {
                    ApiError::bad_request(format!("timeout must be a number of seconds, not {v:?}"))
                })?;
                let t = Duration::try_from_secs_f64(secs)
                    .ok()
                    .filter(|t| *t >= Duration::from_millis(1) && *t <= MAX_TIMEOUT)
                    .ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "timeout must be 0.001 to {} seconds, not {v}",
                            MAX_TIMEOUT.as_secs()
                        ))
                    })?;
                p.timeout = Some(t);
            }
            "replace" => {
                p.replace = match v.as_str() {
                    "true" | "" => true,
                    "false" => false,
                    _ => {
                        return Err(ApiError::bad_request(format!(
                            "replace must be true or false, not {v:?}"
                        )))
                    }
                }
            }
            "paths" => {
                let mut paths = Vec::new();
                for s in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    paths.push(parse_path(s)?);
                }
                if paths.is_empty() {
                    return Err(ApiError::bad_request("paths names no path"));
                }
                p.paths = Some(paths);
            }
            // Leshan's active cancel: cancelling is always active when the device is
            // reachable, passive while it sleeps.
            "active" => {}
            name if lwm2m::attributes::NOTIFICATION_ATTRIBUTES.contains(&name) => {
                p.attributes
                    .push(if v.is_empty() { k } else { format!("{k}={v}") });
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter {other:?}"
                )))
            }
        }
    }
    Ok(p)
}

/// A content format by Leshan's name (`TLV`, `SENML_JSON`, …, any case) or number.
fn parse_format(s: &str) -> Result<ContentFormat, ApiError> {
    let f = match s.to_ascii_uppercase().replace('-', "_").as_str() {
        "TLV" => Some(ContentFormat::Tlv),
        "JSON" | "LWM2M_JSON" => Some(ContentFormat::Lwm2mJson),
        "SENML_JSON" => Some(ContentFormat::SenmlJson),
        "SENML_CBOR" => Some(ContentFormat::SenmlCbor),
        "LWM2M_CBOR" => Some(ContentFormat::Lwm2mCbor),
        "CBOR" => Some(ContentFormat::Cbor),
        "TEXT" | "PLAIN_TEXT" => Some(ContentFormat::Text),
        "OPAQUE" | "OCTET_STREAM" => Some(ContentFormat::Opaque),
        "LINK" => Some(ContentFormat::LinkFormat),
        n => n.parse().ok().and_then(ContentFormat::from_code),
    };
    f.ok_or_else(|| {
        ApiError::bad_request(format!(
            "unknown format {s:?}: TLV, SENML_JSON, SENML_CBOR, LWM2M_CBOR, JSON, TEXT, CBOR, \
             OPAQUE or a CoAP content-format number"
        ))
    })
}

fn parse_path(s: &str) -> Result<Path, ApiError> {
    let with_slash;
    let s = if s.starts_with('/') {
        s
    } else {
        with_slash = format!("/{s}");
        &with_slash
    };
    Path::parse(s).map_err(|e| ApiError::bad_request(format!("bad path {s:?}: {e}")))
}

/// What the URL after `/api/clients/{ep}/` asks for.
enum Target {
    /// `composite` (or `composite/observe` with `observe`).
    Composite { observe: bool },
    /// A path, and the suffix after it (`discover`, `observe`, `attributes`).
    Node {
        path: Path,
        suffix: Option<&'static str>,
    },
}

fn target(rest: &str) -> Result<Target, ApiError> {
    let rest = rest.trim_matches('/');
    match rest {
        "composite" => return Ok(Target::Composite { observe: false }),
        "composite/observe" => return Ok(Target::Composite { observe: true }),
        _ => {}
    }
    let mut suffix = None;
    let mut node = rest;
    for s in ["discover", "observe", "attributes"] {
        if let Some(before) = rest.strip_suffix(s).and_then(|b| b.strip_suffix('/')) {
            suffix = Some(s);
            node = before;
        }
    }
    let path = parse_path(node)?;
    if path.is_root() {
        return Err(ApiError::bad_request(
            "name an object, instance or resource after the endpoint",
        ));
    }
    Ok(Target::Node { path, suffix })
}

fn need_paths(p: &Params) -> Result<Vec<Path>, ApiError> {
    p.paths
        .clone()
        .ok_or_else(|| ApiError::bad_request("give the paths: ?paths=/3/0/0,/3/0/1"))
}

async fn get_op(
    State(state): State<ApiState>,
    UrlPath((ep, rest)): UrlPath<(String, String)>,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let p = params(query)?;
    let request = match target(&rest)? {
        Target::Composite { observe: false } => DownlinkRequest::ReadComposite {
            paths: need_paths(&p)?,
        },
        Target::Node { path, suffix: None } => DownlinkRequest::Read { path },
        Target::Node {
            path,
            suffix: Some("discover"),
        } => DownlinkRequest::Discover { path },
        _ => return Err(method_not_allowed()),
    };
    run(&state, ep, request, &p).await
}

async fn put_op(
    State(state): State<ApiState>,
    UrlPath((ep, rest)): UrlPath<(String, String)>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let p = params(query)?;
    let request = match target(&rest)? {
        Target::Composite { observe: false } => {
            let json = json_body(&headers, &body)?;
            let values = parse_composite(&json, &state.schema).map_err(ApiError::bad_request)?;
            DownlinkRequest::WriteComposite {
                records: values
                    .into_iter()
                    .map(|(path, value)| Record {
                        path,
                        value,
                        time: None,
                    })
                    .collect(),
            }
        }
        Target::Node {
            path,
            suffix: Some("attributes"),
        } => {
            let items: Vec<&str> = p.attributes.iter().map(String::as_str).collect();
            let (attributes, remove) = NotificationAttributes::from_query_with_removals(&items)
                .map_err(|e| ApiError::bad_request(format!("bad attribute: {e}")))?;
            if attributes.is_empty() && remove.is_empty() {
                return Err(ApiError::bad_request(
                    "no attribute to write: give pmin, pmax, gt, lt, st, epmin or epmax",
                ));
            }
            DownlinkRequest::WriteAttributes {
                path,
                attributes,
                remove,
            }
        }
        Target::Node { path, suffix: None } => {
            if !matches!(
                path.level(),
                PathLevel::Instance | PathLevel::Resource | PathLevel::ResourceInstance
            ) {
                return Err(ApiError::bad_request(format!(
                    "Write addresses an instance or a resource, not {path}"
                )));
            }
            let node = written_node(&state.schema, &path, &headers, &body)?;
            let mode = if p.replace {
                WriteMode::Replace
            } else {
                WriteMode::Update
            };
            DownlinkRequest::Write { path, mode, node }
        }
        _ => return Err(method_not_allowed()),
    };
    run(&state, ep, request, &p).await
}

async fn post_op(
    State(state): State<ApiState>,
    UrlPath((ep, rest)): UrlPath<(String, String)>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let p = params(query)?;
    let request = match target(&rest)? {
        Target::Composite { observe: true } => DownlinkRequest::ObserveComposite {
            paths: need_paths(&p)?,
        },
        Target::Node {
            path,
            suffix: Some("observe"),
        } => DownlinkRequest::Observe { path },
        Target::Node { path, suffix: None } => match path.level() {
            PathLevel::Resource => {
                let args = std::str::from_utf8(&body)
                    .map_err(|_| ApiError::bad_request("Execute arguments must be text"))?
                    .trim();
                DownlinkRequest::Execute {
                    path,
                    args: (!args.is_empty()).then(|| args.to_string()),
                }
            }
            PathLevel::Object => {
                let json = json_body(&headers, &body)?;
                let node =
                    parse_node(&path, &json, &state.schema).map_err(ApiError::bad_request)?;
                DownlinkRequest::Create { path, node }
            }
            _ => {
                return Err(ApiError::bad_request(format!(
                    "POST executes a resource or creates an instance of an object, not {path}"
                )))
            }
        },
        _ => return Err(method_not_allowed()),
    };
    run(&state, ep, request, &p).await
}

async fn delete_op(
    State(state): State<ApiState>,
    UrlPath((ep, rest)): UrlPath<(String, String)>,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let p = params(query)?;
    let timeout = p.timeout.unwrap_or(DEFAULT_TIMEOUT) + MARGIN;
    let (path, cancelled) = match target(&rest)? {
        Target::Composite { observe: true } => {
            let paths = need_paths(&p)?;
            let wait = state.handle.cancel_composite_observation(&ep, paths);
            (Path::ROOT, tokio::time::timeout(timeout, wait).await)
        }
        Target::Node {
            path,
            suffix: Some("observe"),
        } => {
            let wait = state.handle.cancel_observation(&ep, path);
            (path, tokio::time::timeout(timeout, wait).await)
        }
        Target::Node { path, suffix: None } => {
            if path.level() != PathLevel::Instance {
                return Err(ApiError::bad_request(format!(
                    "Delete addresses an object instance, not {path}"
                )));
            }
            return run(&state, ep, DownlinkRequest::Delete { path }, &p).await;
        }
        _ => return Err(method_not_allowed()),
    };
    match cancelled {
        Ok(Ok(Err(CommandError::UnknownDevice))) => Err(unknown_device(&ep)),
        Ok(outcome) => Ok(outcome_response(&Shown::Node(path), outcome?)),
        Err(_) => Err(timed_out()),
    }
}

fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "this method does not apply to that path",
    )
}

fn json_body(headers: &HeaderMap, body: &[u8]) -> Result<Json, ApiError> {
    let ct = content_type(headers);
    if !ct.is_empty() && ct != "application/json" {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("the body must be application/json, not {ct}"),
        ));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))
}

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
}

/// The node a Write sends: Leshan's node JSON, or for a single resource its value as text.
fn written_node(
    schema: &Registry,
    path: &Path,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Node, ApiError> {
    if content_type(headers) == "text/plain" {
        let text = std::str::from_utf8(body)
            .map_err(|_| ApiError::bad_request("the text body is not UTF-8"))?;
        let def = schema.resource(path).ok_or_else(|| {
            ApiError::bad_request(format!(
                "{path} is not a resource in the object model: send JSON with its type"
            ))
        })?;
        if def.multiple && path.level() == PathLevel::Resource {
            return Err(ApiError::bad_request(format!(
                "{path} is a multiple-instance resource: write it as JSON with \"values\", or \
                 write one instance at {path}/ID"
            )));
        }
        let value = Value::from_text(def.kind, text)
            .map_err(|e| ApiError::bad_request(format!("{path}: {e}")))?;
        return Ok(match path.level() {
            PathLevel::ResourceInstance => Node::ResourceInstance(value),
            _ => Node::Resource(Resource::Single(value)),
        });
    }
    let json = json_body(headers, body)?;
    parse_node(path, &json, schema).map_err(ApiError::bad_request)
}

/// Sends `request` to `ep` and answers with its result, or `202` while the device sleeps.
async fn run(
    state: &ApiState,
    ep: String,
    request: DownlinkRequest,
    p: &Params,
) -> Result<Response, ApiError> {
    let path = request.path();
    let operation = request.name();
    // What the answer is keyed by: the path, or a composite's paths.
    let shown = Shown::of(&request);
    let timeout = p.timeout.unwrap_or(DEFAULT_TIMEOUT);
    let command = Command {
        format: p.format,
        timeout: Some(timeout),
        ..Command::new(ep.clone(), request)
    };
    let mut d = state.handle.dispatch(command).await?;
    // Every request is known by id, for its event's path and for GET /api/requests/{id}.
    let id = d.id.0;
    state.requests.pending(id, &ep, operation, shown.clone());
    if d.queued {
        if let Some(wait) = p.timeout {
            if let Ok(Ok(outcome)) = tokio::time::timeout(wait, &mut d.result).await {
                state.requests.answered(id);
                return Ok(outcome_response(&shown, outcome));
            }
        }
        state.requests.delayed(id);
        let requests = state.requests.clone();
        tokio::spawn(async move {
            if let Ok(outcome) = d.result.await {
                requests.done(id, result_json(&shown, &outcome));
            }
        });
        let body = json!({
            "ep": ep,
            "path": path.to_string(),
            "requestId": id.to_string(),
            "delayed": true,
        });
        return Ok((StatusCode::ACCEPTED, JsonBody(body)).into_response());
    }
    match tokio::time::timeout(timeout + MARGIN, d.result).await {
        Ok(Ok(Err(CommandError::UnknownDevice))) => Err(unknown_device(&ep)),
        Ok(Ok(outcome)) => {
            state.requests.answered(id);
            Ok(outcome_response(&shown, outcome))
        }
        Ok(Err(_)) => Err(ApiError::stopped()),
        Err(_) => Err(timed_out()),
    }
}

fn timed_out() -> ApiError {
    ApiError::new(
        StatusCode::GATEWAY_TIMEOUT,
        "the device did not answer in time",
    )
}

/// Where a request's answer belongs: a node at its path, or a composite's nodes at the
/// paths asked for (Leshan keys a composite answer by the requested paths).
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Shown {
    /// A single node at this path.
    Node(Path),
    /// Several nodes, one per path.
    Composite(Vec<Path>),
}

impl Shown {
    fn of(request: &DownlinkRequest) -> Self {
        match request {
            DownlinkRequest::ReadComposite { paths }
            | DownlinkRequest::ObserveComposite { paths } => Shown::Composite(paths.clone()),
            DownlinkRequest::WriteComposite { .. } => Shown::Composite(Vec::new()),
            other => Shown::Node(other.path()),
        }
    }

    /// The path a node answer sits at; `/` for a composite.
    pub(super) fn path(&self) -> Path {
        match self {
            Shown::Node(p) => *p,
            Shown::Composite(_) => Path::ROOT,
        }
    }
}

/// The HTTP answer for a command's result: a device's answer (success or error) is `200`
/// with Leshan's response body; the server's own failures are errors with a status.
pub(super) fn outcome_response(shown: &Shown, outcome: Outcome) -> Response {
    match outcome {
        Ok(r) => JsonBody(response_json(shown, &r)).into_response(),
        Err(CommandError::Lwm2m(e)) => JsonBody(error_json(&e)).into_response(),
        Err(e) => command_error(&e).into_response(),
    }
}

/// The error status and message of a command that got no answer from the device.
pub(super) fn command_error(e: &CommandError) -> ApiError {
    let status = match e {
        CommandError::UnknownDevice | CommandError::Deregistered => StatusCode::NOT_FOUND,
        CommandError::Timeout | CommandError::Expired => StatusCode::GATEWAY_TIMEOUT,
        CommandError::Reset | CommandError::Interrupted { .. } | CommandError::Lwm2m(_) => {
            StatusCode::BAD_GATEWAY
        }
        CommandError::Invalid(_) | CommandError::NotSupported(_) => StatusCode::BAD_REQUEST,
        CommandError::QueueFull | CommandError::Overloaded(_) => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    ApiError::new(status, e.to_string())
}

/// A result as `GET /api/requests/{id}` and the event stream give it: `{"response": ...}`
/// for the device's answer, `{"error": {"status", "message"}}` otherwise.
pub(super) fn result_json(shown: &Shown, outcome: &Outcome) -> Json {
    match outcome {
        Ok(r) => json!({ "response": response_json(shown, r) }),
        Err(CommandError::Lwm2m(e)) => json!({ "response": error_json(e) }),
        Err(e) => {
            let err = command_error(e);
            json!({"error": {"status": err.status.as_u16(), "message": err.message}})
        }
    }
}

/// Leshan's status name of a CoAP response code (`CONTENT(205)`).
fn status(name: &str, code: u16) -> String {
    format!("{name}({code})")
}

/// Leshan's response body for a successful answer.
pub(super) fn response_json(shown: &Shown, r: &DmResponse) -> Json {
    let mut m = Map::new();
    let (name, code) = match r {
        DmResponse::Content { .. } | DmResponse::Composite { .. } | DmResponse::Links(_) => {
            ("CONTENT", 205)
        }
        DmResponse::Changed => ("CHANGED", 204),
        DmResponse::Created(_) => ("CREATED", 201),
        DmResponse::Deleted => ("DELETED", 202),
    };
    m.insert("status".into(), json!(status(name, code)));
    m.insert("valid".into(), json!(true));
    m.insert("success".into(), json!(true));
    m.insert("failure".into(), json!(false));
    match r {
        DmResponse::Content { node, .. } => {
            m.insert("content".into(), node_json(&shown.path(), node));
        }
        DmResponse::Composite { records, .. } => {
            let content = match shown {
                Shown::Composite(asked) if !asked.is_empty() => grouped_json(asked, records),
                _ => records_json(records),
            };
            m.insert("content".into(), Json::Object(content));
        }
        DmResponse::Links(entries) => {
            let links: Vec<Json> = entries
                .iter()
                .map(|e| {
                    let attrs: Map<String, Json> = e
                        .attributes
                        .iter()
                        .map(|a| {
                            (
                                a.name.clone(),
                                a.value.clone().map_or(Json::Null, Json::String),
                            )
                        })
                        .collect();
                    json!({"url": e.path.to_string(), "attributes": attrs})
                })
                .collect();
            m.insert("objectLinks".into(), Json::Array(links));
        }
        DmResponse::Created(Some(p)) => {
            m.insert("location".into(), json!(p.to_string()));
        }
        _ => {}
    }
    Json::Object(m)
}

/// Values of several paths as Leshan's composite content: path to node.
pub(super) fn records_json(records: &[Record]) -> Map<String, Json> {
    records
        .iter()
        .filter_map(|r| {
            let v = r.value.as_ref()?;
            let node = match r.path.level() {
                PathLevel::ResourceInstance => Node::ResourceInstance(v.clone()),
                _ => Node::Resource(Resource::Single(v.clone())),
            };
            Some((r.path.to_string(), node_json(&r.path, &node)))
        })
        .collect()
}

/// A composite answer keyed by the paths asked for, each the node of the values under it.
fn grouped_json(asked: &[Path], records: &[Record]) -> Map<String, Json> {
    asked
        .iter()
        .filter_map(|p| {
            let values = records
                .iter()
                .filter(|r| r.path.starts_with(p))
                .filter_map(|r| Some((r.path, r.value.clone()?)));
            let node = Node::from_values(p, values).ok()?;
            Some((p.to_string(), node_json(p, &node)))
        })
        .collect()
}

/// Leshan's response body for a device's error answer.
fn error_json(e: &Lwm2mError) -> Json {
    let (name, code) = match e {
        Lwm2mError::BadRequest(_) => ("BAD_REQUEST", 400),
        Lwm2mError::Unauthorized => ("UNAUTHORIZED", 401),
        Lwm2mError::BadOption => ("BAD_OPTION", 402),
        Lwm2mError::Forbidden => ("FORBIDDEN", 403),
        Lwm2mError::NotFound => ("NOT_FOUND", 404),
        Lwm2mError::MethodNotAllowed => ("METHOD_NOT_ALLOWED", 405),
        Lwm2mError::NotAcceptable => ("NOT_ACCEPTABLE", 406),
        Lwm2mError::RequestEntityIncomplete => ("REQUEST_ENTITY_INCOMPLETE", 408),
        Lwm2mError::Conflict => ("CONFLICT", 409),
        Lwm2mError::PreconditionFailed => ("PRECONDITION_FAILED", 412),
        Lwm2mError::RequestEntityTooLarge => ("REQUEST_ENTITY_TOO_LARGE", 413),
        Lwm2mError::UnsupportedContentFormat => ("UNSUPPORTED_CONTENT_FORMAT", 415),
        Lwm2mError::NotImplemented => ("NOT_IMPLEMENTED", 501),
        Lwm2mError::ServiceUnavailable => ("SERVICE_UNAVAILABLE", 503),
        _ => ("INTERNAL_SERVER_ERROR", 500),
    };
    json!({
        "status": status(name, code),
        "valid": true,
        "success": false,
        "failure": true,
        "errormessage": e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn targets_name_the_operation() {
        assert!(matches!(
            target("3/0/0").unwrap(),
            Target::Node { suffix: None, .. }
        ));
        assert!(matches!(
            target("3/0/discover").unwrap(),
            Target::Node {
                suffix: Some("discover"),
                ..
            }
        ));
        assert!(matches!(
            target("3/0/13/observe").unwrap(),
            Target::Node {
                suffix: Some("observe"),
                ..
            }
        ));
        assert!(matches!(
            target("composite/observe").unwrap(),
            Target::Composite { observe: true }
        ));
        let e = target("3/x/1").err().unwrap();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.contains("3/x/1"), "{}", e.message);
        assert!(target("observe").is_err());
    }

    #[test]
    fn query_parameters_are_checked() {
        let p = params(q(&[
            ("format", "senml_json"),
            ("timeout", "2"),
            ("replace", "false"),
        ]))
        .unwrap();
        assert_eq!(p.format, Some(ContentFormat::SenmlJson));
        assert_eq!(p.timeout, Some(Duration::from_secs(2)));
        assert!(!p.replace);
        let p = params(q(&[
            ("paths", "/3/0/0,3/0/1"),
            ("pmin", "10"),
            ("pmax", ""),
        ]))
        .unwrap();
        assert_eq!(p.paths.unwrap().len(), 2);
        assert_eq!(p.attributes, ["pmin=10", "pmax"]);
        for bad in [
            ("format", "xml"),
            ("timeout", "0"),
            ("timeout", "-1"),
            ("timeout", "1e9"),
            ("replace", "maybe"),
            ("paths", "/3/a"),
            ("what", "1"),
        ] {
            let e = params(q(&[bad])).err().unwrap();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{bad:?}");
        }
        assert_eq!(parse_format("11542").unwrap(), ContentFormat::Tlv);
    }

    #[test]
    fn answers_are_leshan_response_bodies() {
        let path = Shown::Node(Path::parse("/3/0/0").unwrap());
        let r = DmResponse::Content {
            format: ContentFormat::Tlv,
            node: Node::Resource(Resource::Single(Value::String(
                "Open Mobile Alliance".into(),
            ))),
        };
        assert_eq!(
            response_json(&path, &r),
            json!({"status":"CONTENT(205)","valid":true,"success":true,"failure":false,
                   "content":{"id":0,"kind":"singleResource","type":"STRING","value":"Open Mobile Alliance"}})
        );
        assert_eq!(
            response_json(&path, &DmResponse::Changed),
            json!({"status":"CHANGED(204)","valid":true,"success":true,"failure":false})
        );
        let e = error_json(&Lwm2mError::NotFound);
        assert_eq!(e["status"], "NOT_FOUND(404)");
        assert_eq!(e["success"], false);
        assert_eq!(
            command_error(&CommandError::Timeout).status,
            StatusCode::GATEWAY_TIMEOUT
        );
        assert_eq!(
            command_error(&CommandError::UnknownDevice).status,
            StatusCode::NOT_FOUND
        );
    }
}
