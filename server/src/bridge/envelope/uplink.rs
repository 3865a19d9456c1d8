//! Uplink: device events and command results as the JSON published on `up/...`
//! (`register`, `update`, `deregister`, `notify`, `send`, `resp`, `bootstrap`), and the response
//! codes.
use super::values::value_to_json;
use super::ERROR_MSG_TYPE;
use crate::core::types::{
    BootstrapStage, CommandError, Content, DeregisterReason, DeviceEvent, FirmwareOutcome, Outcome,
    Registration,
};
use lwm2m::coap::MessageClass;
use lwm2m::content::link::encode_discover;
use lwm2m::content::Record;
use lwm2m::model::{Instance, Node, Path, Resource, Value};
use lwm2m::ops::dm::DmResponse;
use lwm2m::ops::Lwm2mError;
use serde_json::{Map, Value as Json};

/// `up/firmware`: a device's firmware update changed phase (OMA LwM2M TS 1.2 Core E.6);
/// `None` for any other event.
pub fn firmware(event: &DeviceEvent) -> Option<Json> {
    let DeviceEvent::Firmware {
        campaign,
        package,
        phase,
        state,
        result,
        outcome,
        bytes,
        version,
        ..
    } = event
    else {
        return None;
    };
    let mut data = Map::new();
    data.insert("campaign".into(), campaign.as_str().into());
    data.insert("package".into(), package.as_str().into());
    data.insert("phase".into(), phase.as_str().into());
    data.insert("state".into(), (*state).into());
    data.insert("result".into(), (*result).into());
    data.insert(
        "outcome".into(),
        outcome.map(FirmwareOutcome::as_str).into(),
    );
    data.insert("bytes".into(), (*bytes).into());
    if let Some(v) = version {
        data.insert("version".into(), v.as_str().into());
    }
    Some(envelope(None, "firmware", data))
}

/// `up/resp` for `firmware-update`: the campaign started, or why not.
pub fn firmware_started(req_id: &Json, result: Result<&str, &str>) -> Json {
    let mut data = Map::new();
    match result {
        Ok(campaign) => {
            data.insert("code".into(), "2.01".into());
            data.insert("codeMsg".into(), "created".into());
            data.insert("campaign".into(), campaign.into());
        }
        Err(message) => {
            data.insert("code".into(), "4.00".into());
            data.insert("codeMsg".into(), "bad_request".into());
            data.insert("message".into(), message.into());
        }
    }
    envelope(Some(req_id), "firmware-update", data)
}

/// `up/register`: a device registered (Core §6.2.1).
pub fn registered(reg: &Registration) -> Json {
    registration_message("register", reg)
}

/// `up/update`: a device updated its registration (Core §6.2.2). EMQX sends the whole
/// registration after the update, as here.
pub fn updated(reg: &Registration) -> Json {
    registration_message("update", reg)
}

fn registration_message(msg_type: &str, reg: &Registration) -> Json {
    let mut data = Map::new();
    data.insert("ep".into(), reg.endpoint.clone().into());
    data.insert("lt".into(), reg.lifetime.into());
    data.insert("lwm2m".into(), reg.version.as_str().into());
    data.insert("b".into(), binding_text(reg).into());
    if let Some(sms) = &reg.sms {
        data.insert("sms".into(), sms.clone().into());
    }
    data.insert("alternatePath".into(), reg.links.root_path.clone().into());
    let objects: Vec<Json> = reg
        .links
        .objects
        .iter()
        .map(|(p, _)| p.to_string().into())
        .collect();
    data.insert("objectList".into(), objects.into());
    // Ours: what EMQX leaves to its own session state.
    data.insert("queueMode".into(), reg.queue_mode.into());
    data.insert("location".into(), reg.location.clone().into());
    data.insert("address".into(), reg.address.clone().into());
    if !reg.links.content_formats.is_empty() {
        let ct: Vec<Json> = reg
            .links
            .content_formats
            .iter()
            .map(|c| (*c).into())
            .collect();
        data.insert("ct".into(), ct.into());
    }
    let versions: Map<String, Json> = reg
        .links
        .objects
        .iter()
        .filter_map(|(p, v)| Some((p.to_string(), v.clone()?.into())))
        .collect();
    if !versions.is_empty() {
        data.insert("objectVersions".into(), versions.into());
    }
    envelope(None, msg_type, data)
}

/// The binding as a LwM2M 1.0 `b` parameter, queue mode included (`UQ`, `UQS`), because
/// that is what EMQX echoes and what its backends test for queue mode.
fn binding_text(reg: &Registration) -> String {
    let b = reg.binding.to_string();
    if !reg.queue_mode {
        return b;
    }
    match b.strip_prefix('U') {
        Some(rest) => format!("UQ{rest}"),
        None => format!("{b}Q"),
    }
}

/// `up/deregister`: a registration ended (ours; EMQX publishes nothing). `reason` is
/// `requested`, `expired`, `replaced` or `revoked`.
pub fn deregistered(endpoint: &str, reason: DeregisterReason) -> Json {
    let reason = match reason {
        DeregisterReason::Requested => "requested",
        DeregisterReason::Expired => "expired",
        DeregisterReason::Replaced => "replaced",
        DeregisterReason::Revoked => "revoked",
    };
    let mut data = Map::new();
    data.insert("ep".into(), endpoint.into());
    data.insert("reason".into(), reason.into());
    envelope(None, "deregister", data)
}

/// `up/bootstrap`: a device's bootstrap started, finished (with the generated PSK identity or
/// the bound key's fingerprint, never a key) or failed (the step and why). Ours; EMQX has no
/// bootstrap server.
pub fn bootstrap(endpoint: &str, stage: &BootstrapStage) -> Json {
    let mut data = Map::new();
    data.insert("ep".into(), endpoint.into());
    data.insert("status".into(), stage.as_str().into());
    match stage {
        BootstrapStage::Started => {}
        BootstrapStage::Finished {
            security,
            identity,
            version,
        } => {
            data.insert("security".into(), (*security).into());
            if let Some(id) = identity {
                data.insert("identity".into(), id.clone().into());
            }
            if let Some(v) = version {
                data.insert("lwm2m".into(), v.clone().into());
            }
        }
        BootstrapStage::Failed { step, reason } => {
            data.insert("step".into(), step.clone().into());
            data.insert("reason".into(), reason.clone().into());
        }
    }
    envelope(None, "bootstrap", data)
}

/// `up/notify`: a notification (Core §6.4.2), with the `reqID` of the observe command that
/// started it when known and the Observe sequence number as `seqNum`, as EMQX sends it.
pub fn notify(req_id: Option<&Json>, path: &Path, content: &Content, seq: Option<u32>) -> Json {
    let mut data = Map::new();
    data.insert("reqPath".into(), path.to_string().into());
    data.insert("code".into(), "2.05".into());
    data.insert("codeMsg".into(), "content".into());
    data.insert("content".into(), content_items(path, content).into());
    let mut msg = envelope(req_id, "notify", data);
    if let (Some(seq), Json::Object(m)) = (seq, &mut msg) {
        m.insert("seqNum".into(), seq.into());
    }
    msg
}

/// `up/send`: values the device sent on its own (Core §6.4.4, LwM2M 1.1+; ours).
pub fn send(endpoint: &str, records: &[Record]) -> Json {
    let mut data = Map::new();
    data.insert("ep".into(), endpoint.into());
    data.insert(
        "content".into(),
        records.iter().map(record_item).collect::<Vec<_>>().into(),
    );
    envelope(None, "send", data)
}

/// `up/resp`: the one result of a command, echoing its `reqID` and `msgType`.
///
/// `req_path` is the command's path ([`DownlinkRequest::path`](lwm2m::ops::dm::DownlinkRequest::path)); it becomes `reqPath`, and
/// the values of a Read or Observe answer are placed below it, so give it for those.
///
/// Success codes are EMQX's: Read, Observe, Discover and the composite reads `2.05
/// content` with `content`; Write, Write-Attributes, Execute and Write-Composite `2.04
/// changed`; Create `2.01 created` (with `location`, ours); Delete `2.02 deleted`.
///
/// Failures:
///
/// | outcome | code | codeMsg | error | msgType |
/// | --- | --- | --- | --- | --- |
/// | the device answered an error | its code (`4.04`) | its name (`not_found`) | — | as given |
/// | `UnknownDevice` | `4.04` | `not_found` | `unknown_device` | as given |
/// | `Deregistered` | `4.04` | `not_found` | `deregistered` | as given |
/// | `Timeout` | `5.04` | `gateway_timeout` | `timeout` | `coap_timeout` (EMQX) |
/// | `Reset` | `5.02` | `bad_gateway` | `reset` | `coap_reset` (EMQX) |
/// | `Expired` | `5.04` | `gateway_timeout` | `expired` | as given |
/// | `QueueFull` | `5.03` | `service_unavailable` | `queue_full` | as given |
/// | `NotSupported` | `5.01` | `not_implemented` | `not_supported` | as given |
/// | `Unavailable` | `5.03` | `service_unavailable` | `unavailable` | as given |
/// | `Overloaded` (the server's total of pending commands) | `5.03` | `service_unavailable` | `overloaded` | as given |
/// | `Invalid` (a `timeout` or `ttl` out of range) | `4.00` | `bad_request` | `bad_request` | as given |
/// | `Interrupted` (a block-wise upload timed out part-way) | `5.03` | `service_unavailable` | `interrupted` | as given |
///
/// Every failure also carries `message`, the error as text. `Interrupted` is 5.03, "try
/// again", rather than 5.04 like `Timeout`: the device acknowledged part of the upload and
/// may still hold it, so sending again resumes rather than repeats it; `nextBlock` and
/// `blockSzx` (ours) say where (the first block not acknowledged, and the block size
/// exponent it counts in).
pub fn response(req_id: &Json, msg_type: &str, outcome: &Outcome, req_path: Option<&Path>) -> Json {
    let mut data = Map::new();
    if let Some(p) = req_path {
        data.insert("reqPath".into(), p.to_string().into());
    }
    let mut msg_type = msg_type;
    match outcome {
        Ok(answer) => {
            let (code, content) = match answer {
                DmResponse::Content { node, .. } => {
                    let at = req_path.copied().unwrap_or(Path::ROOT);
                    let items = content_items(&at, &Content::Node(node.clone()));
                    ("2.05", Some(Json::from(items)))
                }
                DmResponse::Composite { records, .. } => {
                    let items: Vec<Json> = records.iter().map(record_item).collect();
                    ("2.05", Some(items.into()))
                }
                DmResponse::Links(entries) => {
                    // One link per entry, as EMQX splits the Discover payload at commas.
                    let links: Vec<Json> = entries
                        .iter()
                        .map(|e| encode_discover(std::slice::from_ref(e)).into())
                        .collect();
                    ("2.05", Some(links.into()))
                }
                DmResponse::Changed => ("2.04", None),
                DmResponse::Created(location) => {
                    if let Some(l) = location {
                        data.insert("location".into(), l.to_string().into());
                    }
                    ("2.01", None)
                }
                DmResponse::Deleted => ("2.02", None),
            };
            data.insert("code".into(), code.into());
            data.insert("codeMsg".into(), code_msg(code).into());
            if let Some(c) = content {
                data.insert("content".into(), c);
            }
        }
        Err(e) => {
            let failure = failure(e);
            data.insert("code".into(), failure.code.clone().into());
            data.insert("codeMsg".into(), code_msg(&failure.code).into());
            if let Some(name) = failure.error {
                data.insert("error".into(), name.into());
            }
            data.insert("message".into(), e.to_string().into());
            if let CommandError::Interrupted { next_block, szx } = e {
                data.insert("nextBlock".into(), (*next_block).into());
                data.insert("blockSzx".into(), (*szx).into());
            }
            if let Some(t) = failure.msg_type {
                msg_type = t;
            }
        }
    }
    envelope(Some(req_id), msg_type, data)
}

/// How a failed command is reported.
struct Failure {
    code: String,
    error: Option<&'static str>,
    msg_type: Option<&'static str>,
}

fn failure(e: &CommandError) -> Failure {
    let ours = |code: &str, error: &'static str| Failure {
        code: code.into(),
        error: Some(error),
        msg_type: None,
    };
    match e {
        CommandError::Lwm2m(e) => Failure {
            code: lwm2m_code(e),
            error: None,
            msg_type: None,
        },
        CommandError::UnknownDevice => ours("4.04", "unknown_device"),
        CommandError::Deregistered => ours("4.04", "deregistered"),
        CommandError::Timeout => Failure {
            msg_type: Some("coap_timeout"),
            ..ours("5.04", "timeout")
        },
        CommandError::Reset => Failure {
            msg_type: Some("coap_reset"),
            ..ours("5.02", "reset")
        },
        CommandError::Expired => ours("5.04", "expired"),
        CommandError::QueueFull => ours("5.03", "queue_full"),
        CommandError::NotSupported(_) => ours("5.01", "not_supported"),
        CommandError::Unavailable(_) => ours("5.03", "unavailable"),
        CommandError::Overloaded(_) => ours("5.03", "overloaded"),
        CommandError::Invalid(_) => ours("4.00", "bad_request"),
        CommandError::Interrupted { .. } => ours("5.03", "interrupted"),
    }
}

/// The `c.dd` code of a device's error answer.
fn lwm2m_code(e: &Lwm2mError) -> String {
    if let Lwm2mError::Other(text) = e {
        // `Other` holds the code the device sent ("4.10 …"); keep it when it is one.
        if let Some(code) = text.get(..4).filter(|c| is_code(c)) {
            return code.to_string();
        }
    }
    // MessageClass displays as "c.dd".
    MessageClass::Response(e.response_type()).to_string()
}

fn is_code(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 4
        && b.first().is_some_and(u8::is_ascii_digit)
        && b.get(1) == Some(&b'.')
        && b.get(2..).is_some_and(|d| d.iter().all(u8::is_ascii_digit))
}

/// The `up/resp` message for a command refused before reaching the device (malformed
/// JSON, an unknown `msgType`, a bad path or value): `data` is `{"code", "codeMsg",
/// "message"}`. Without a `msgType` to echo, `msgType` is `"error"`; without a `reqID`,
/// there is none.
pub fn error_response(
    req_id: Option<&Json>,
    msg_type: Option<&str>,
    code: &str,
    message: &str,
) -> Json {
    let mut data = Map::new();
    data.insert("code".into(), code.into());
    data.insert("codeMsg".into(), code_msg(code).into());
    data.insert("message".into(), message.into());
    envelope(req_id, msg_type.unwrap_or(ERROR_MSG_TYPE), data)
}

/// The name EMQX gives a CoAP response code (`"4.04"` → `"not_found"`); `"unknown"` for a
/// code it has no name for.
pub fn code_msg(code: &str) -> &'static str {
    match code {
        "2.01" => "created",
        "2.02" => "deleted",
        "2.03" => "valid",
        "2.04" => "changed",
        "2.05" => "content",
        "2.31" => "continue",
        "4.00" => "bad_request",
        "4.01" => "unauthorized",
        "4.02" => "bad_option",
        "4.03" => "forbidden",
        "4.04" => "not_found",
        "4.05" => "method_not_allowed",
        "4.06" => "not_acceptable",
        "4.08" => "request_entity_incomplete",
        "4.09" => "conflict",
        "4.12" => "precondition_failed",
        "4.13" => "request_entity_too_large",
        "4.15" => "unsupported_content_format",
        "4.29" => "too_many_requests",
        "5.00" => "internal_server_error",
        "5.01" => "not_implemented",
        "5.02" => "bad_gateway",
        "5.03" => "service_unavailable",
        "5.04" => "gateway_timeout",
        "5.05" => "proxying_not_supported",
        _ => "unknown",
    }
}

fn envelope(req_id: Option<&Json>, msg_type: &str, data: Map<String, Json>) -> Json {
    let mut m = Map::new();
    if let Some(id) = req_id {
        m.insert("reqID".into(), id.clone());
    }
    m.insert("msgType".into(), msg_type.into());
    m.insert("data".into(), data.into());
    Json::Object(m)
}

/// Every value of `content` with its full path, at resource or resource-instance level:
/// a node at an object or instance path is flattened to its resources, a multiple resource
/// to its instances; records without a value are left out.
pub fn flatten(path: &Path, content: &Content) -> Vec<(Path, Value)> {
    let mut out = Vec::new();
    match content {
        Content::Node(node) => flatten_node(path, node, &mut out),
        Content::Records(records) => out.extend(
            records
                .iter()
                .filter_map(|r| Some((r.path, r.value.clone()?))),
        ),
    }
    out
}

// Node::flatten gives up on the whole tree at one bad id; a notification should lose only
// the bad entry.
fn flatten_node(at: &Path, node: &Node, out: &mut Vec<(Path, Value)>) {
    match node {
        Node::Object(instances) => {
            for (i, inst) in instances {
                if let Ok(p) = at.child(*i) {
                    flatten_instance(&p, inst, out);
                }
            }
        }
        Node::Instance(inst) => flatten_instance(at, inst, out),
        Node::Resource(r) => flatten_resource(at, r, out),
        Node::ResourceInstance(v) => out.push((*at, v.clone())),
    }
}

fn flatten_instance(at: &Path, inst: &Instance, out: &mut Vec<(Path, Value)>) {
    for (r, res) in inst {
        if let Ok(p) = at.child(*r) {
            flatten_resource(&p, res, out);
        }
    }
}

fn flatten_resource(at: &Path, res: &Resource, out: &mut Vec<(Path, Value)>) {
    match res {
        Resource::Single(v) => out.push((*at, v.clone())),
        Resource::Multiple(m) => {
            for (ri, v) in m {
                if let Ok(p) = at.child(*ri) {
                    out.push((p, v.clone()));
                }
            }
        }
    }
}

/// The `content` list of a message: `{"path", "type", "value"}` per value, plus `"time"`
/// for timestamped records.
fn content_items(path: &Path, content: &Content) -> Vec<Json> {
    match content {
        Content::Node(_) => flatten(path, content)
            .iter()
            .map(|(p, v)| value_item(p, Some(v), None))
            .collect(),
        Content::Records(records) => records.iter().map(record_item).collect(),
    }
}

fn record_item(r: &Record) -> Json {
    value_item(&r.path, r.value.as_ref(), r.time)
}

fn value_item(path: &Path, value: Option<&Value>, time: Option<f64>) -> Json {
    let mut m = Map::new();
    m.insert("path".into(), path.to_string().into());
    match value {
        Some(v) => {
            let (ty, v) = value_to_json(v);
            m.insert("type".into(), ty.into());
            m.insert("value".into(), v);
        }
        None => {
            m.insert("value".into(), Json::Null);
        }
    }
    if let Some(t) = time.and_then(serde_json::Number::from_f64) {
        m.insert("time".into(), t.into());
    }
    Json::Object(m)
}
