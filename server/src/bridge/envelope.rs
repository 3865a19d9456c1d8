//! The JSON of the MQTT bridge: device events out (`up/...`) and commands in (`dn/...`), in
//! the message format of the **EMQX LwM2M gateway**, so that a backend written against EMQX
//! works unchanged; pure functions, no I/O.
//!
//! References: OMA LwM2M TS 1.2 Core §6.2 (registration), §6.3 (device management: Read,
//! Discover, Write, Write-Attributes, Execute, Create, Delete, the composites), §6.4
//! (information reporting: Observe, Notify, Send), Appendix C (data types); EMQX
//! documentation "LwM2M Gateway", section "Message Format"
//! (<https://docs.emqx.com/en/emqx/latest/gateway/lwm2m.html>) and the gateway's source in
//! `emqx/emqx`, `apps/emqx_gateway_lwm2m/`: `src/emqx_lwm2m_cmd.erl` (commands to CoAP,
//! results to JSON, response codes), `src/emqx_lwm2m_message.erl` (values),
//! `src/emqx_lwm2m_session.erl` (register/update/notify/ack/timeouts) and
//! `test/emqx_lwm2m_SUITE.erl` (the exact JSON the gateway produces).
//!
//! # What EMQX does
//!
//! Commands arrive as `{"reqID": .., "msgType": .., "data": {..}}`:
//!
//! | msgType | data |
//! | --- | --- |
//! | `read`, `discover`, `delete`, `observe`, `cancel-observe` | `{"path": "/3/0/1"}` |
//! | `write` (one resource) | `{"path": "/3/0/13", "type": "Integer", "value": "12345"}` |
//! | `write` (batch) | `{"basePath": "/3/0/", "content": [{"path": "13", "type": .., "value": ..}, ..]}`: paths relative to `basePath`; an instance `basePath` is a partial update (POST), a resource one a replace (PUT) |
//! | `write-attr` | `{"path": .., "pmin": "1", "pmax": "5", "gt": .., "lt": .., "st": ..}`; `null` and other keys ignored |
//! | `execute` | `{"path": "/3/0/4", "args": "2,7"}`; `"undefined"` or no args means none |
//! | `create` | `{"basePath": "/6", "content": [{"path": "0/0", "type": "Float", "value": "1.5"}]}`: paths are `instance/resource` relative to the object |
//!
//! Values carry an LwM2M type name (`Integer`, `Float`, `Time`, `Boolean`, `String`,
//! `Opaque`, `Objlnk`); numbers may come as strings (`"12345"`), booleans as `"true"` /
//! `"false"`, opaque values as base64, object links as `"3:0"`; a top-level
//! `"encoding": "hex"` makes String and Opaque values hex. A path may carry a query
//! (`/6/0/0?foo=bar`).
//!
//! Every result goes to `up/resp` as the command echoed with `data` replaced by
//! `{"reqPath", "code", "codeMsg", "content"?}`: `code` is the CoAP code (`"2.05"`,
//! `"4.04"`), `codeMsg` its name (`"content"`, `"not_found"`); `content` is a list of
//! `{"path", "value"}` (Read, Observe; a multiple resource gives one entry per instance) or
//! of link strings (Discover, `"</3/0/7>;dim=8"`). A malformed command is answered
//! `4.00 bad_request`. A notification goes to `up/notify` as
//! `{"reqID", "msgType": "notify", "seqNum", "data": {"reqPath", "code": "2.05",
//! "codeMsg": "content", "content"}}` carrying the observe command's `reqID`. Register and
//! Update go out as `{"msgType": "register" | "update", "data": {"ep", "lt", "lwm2m",
//! "b", "alternatePath", "objectList", ..}}` (the registration's query parameters). A
//! device that does not answer gives `msgType` `"coap_timeout"`, one that resets the
//! exchange `"coap_reset"`; an empty ACK gives `"ack"`. EMQX publishes nothing on
//! De-register and knows no composites or Send (it implements LwM2M 1.0.2).
//!
//! # What we add
//!
//! - Commands `read-composite` and `observe-composite` (`{"paths": ["/3/0/0", "/1/0"]}`) and
//!   `write-composite` (`{"content": [{"path": "/3/0/14", "type": .., "value": ..}]}`, full
//!   paths, or relative to an optional `basePath`; a `null` value deletes a resource
//!   instance), Core §6.3.8, §6.3.9, §6.4.3.
//! - `write`: an optional `"mode": "replace" | "update"` over EMQX's choice; `write-attr`:
//!   `epmin`, `epmax`, numbers as JSON numbers, and `"remove": ["pmin", ..]` to unset.
//! - Optional top-level `"format"` (content format name or code), `"timeout"` (seconds,
//!   0.001 to 86,400) and `"ttl"` (seconds, 0 to 2,592,000 = 30 days) for the command;
//!   anything outside is refused `4.00` with the range in `message`.
//! - A payload over 64 KiB (`[mqtt] max_command_bytes`) or nesting arrays and objects
//!   deeper than 32 is refused `4.00` before it is parsed.
//! - A `"type"` on every value going up (`Integer`, `Unsigned Integer`, `Float`, `Boolean`,
//!   `String`, `Opaque`, `Time`, `Objlnk`, `Corelnk`) and a `"time"` on timestamped
//!   values, so a consumer needs no object model.
//! - Values are checked against the object model before anything is sent: a type that does
//!   not fit the resource, a value for an executable resource, or a single value for a
//!   multiple-instance resource is refused with a message (EMQX sends them as they are).
//! - `up/deregister` (`{"msgType": "deregister", "data": {"ep", "reason"}}`) and `up/send`
//!   (`{"msgType": "send", "data": {"ep", "content"}}`).
//! - Register and Update also carry `queueMode`, `location`, `address`, `ct` and
//!   `objectVersions`; a successful Create carries the new instance as `location`.
//! - Failed results carry `"message"` (text) and, for failures that are not the device's
//!   answer, a stable `"error"` name; see [`response`] for the codes.
//! - A missing `reqID` is an error (EMQX accepts and echoes anything); only `reqID` is
//!   echoed, not every field of the command as EMQX does (its test suite uses
//!   `requestID`/`cacheID`, which it echoes back untouched).
//! - A query after a path is ignored, except in `write-attr`, where its items are
//!   attributes (EMQX passes it on as Uri-Query).
//! - No `ack` message: the core hides empty ACKs and separate responses, and each command
//!   gets exactly one result.
//! - Every uplink message gets a `msgId` from the outbox (not here), so a consumer can drop
//!   the duplicates a crash may cause.
use crate::core::types::{
    Command, CommandError, Content, DeregisterReason, Outcome, Registration, COMMAND_TIMEOUT_RANGE,
    COMMAND_TTL_RANGE,
};
use base64::engine::{general_purpose, DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use lwm2m::coap::link_format::{NotificationAttributes, NOTIFICATION_ATTRIBUTES};
use lwm2m::coap::MessageClass;
use lwm2m::content::link::encode_discover;
use lwm2m::content::{ContentFormat, Record};
use lwm2m::model::{Instance, Node, Path, PathLevel, Registry, Resource, ResourceType, Value};
use lwm2m::ops::dm::{DmResponse, DownlinkRequest, WriteMode};
use lwm2m::ops::Lwm2mError;
use serde_json::{Map, Value as Json};
use std::collections::BTreeMap;
use std::time::Duration;

/// Every `msgType` a command may have.
pub const COMMAND_TYPES: [&str; 12] = [
    "read",
    "discover",
    "write",
    "write-attr",
    "execute",
    "create",
    "delete",
    "observe",
    "cancel-observe",
    "read-composite",
    "write-composite",
    "observe-composite",
];

/// The `msgType` of a malformed command's error when it had none.
const ERROR_MSG_TYPE: &str = "error";

/// A command read from `dn/...`.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    /// The command's `reqID` (a number or a string), to echo in its result.
    pub req_id: Json,
    /// The command's `msgType`, to echo in its result.
    pub msg_type: String,
    /// What to do.
    pub action: Action,
}

/// What a command asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// An operation for the command path: everything but `cancel-observe`.
    Command(Command),
    /// Cancel the server's observation of this path (`cancel-observe`).
    CancelObserve(Path),
}

/// Why a command was refused before reaching the device. Answer it with
/// [`EnvelopeError::to_response`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct EnvelopeError {
    /// The command's `reqID`, when it had one.
    pub req_id: Option<Json>,
    /// The command's `msgType`, when it had one (even an unknown one).
    pub msg_type: Option<String>,
    /// What is wrong, for the backend's operator.
    pub message: String,
}

impl EnvelopeError {
    /// The `up/resp` message for this error: `4.00 bad_request` with the message.
    pub fn to_response(&self) -> Json {
        error_response(
            self.req_id.as_ref(),
            self.msg_type.as_deref(),
            "4.00",
            &self.message,
        )
    }

    fn with(&self, message: impl Into<String>) -> Self {
        EnvelopeError {
            req_id: self.req_id.clone(),
            msg_type: self.msg_type.clone(),
            message: message.into(),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Uplink
// ---------------------------------------------------------------------------------------

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
/// `req_path` is the command's path ([`DownlinkRequest::path`]); it becomes `reqPath`, and
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
///
/// Every failure also carries `message`, the error as text.
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

// ---------------------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------------------

/// The LwM2M type name of a value type, as the OMA DDF files write it (Core Appendix C).
pub fn type_name(ty: ResourceType) -> &'static str {
    match ty {
        ResourceType::String => "String",
        ResourceType::Integer => "Integer",
        ResourceType::UnsignedInteger => "Unsigned Integer",
        ResourceType::Float => "Float",
        ResourceType::Boolean => "Boolean",
        ResourceType::Opaque => "Opaque",
        ResourceType::Time => "Time",
        ResourceType::ObjectLink => "Objlnk",
        ResourceType::CoreLink => "Corelnk",
        ResourceType::None => "none",
    }
}

/// Reads a type name, ignoring case and spaces: the DDF names, and `ObjectLink`,
/// `CoreLink`, `Unsigned` as aliases.
fn parse_type_name(name: &str) -> Option<ResourceType> {
    let key: String = name
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '_' && *c != '-')
        .collect::<String>()
        .to_ascii_lowercase();
    Some(match key.as_str() {
        "string" => ResourceType::String,
        "integer" | "int" => ResourceType::Integer,
        "unsignedinteger" | "unsigned" | "uint" => ResourceType::UnsignedInteger,
        "float" => ResourceType::Float,
        "boolean" | "bool" => ResourceType::Boolean,
        "opaque" => ResourceType::Opaque,
        "time" => ResourceType::Time,
        "objlnk" | "objectlink" => ResourceType::ObjectLink,
        "corelnk" | "corelink" => ResourceType::CoreLink,
        _ => return None,
    })
}

/// A value as JSON with its type name: numbers and booleans as JSON numbers and booleans,
/// Opaque as base64 (as EMQX), Objlnk as `"3:0"`, the strings as strings. A float that is
/// not finite has no JSON form and gives `null`.
pub fn value_to_json(value: &Value) -> (&'static str, Json) {
    let ty = type_name(value.resource_type());
    let json = match value {
        Value::String(s) | Value::CoreLink(s) => Json::String(s.clone()),
        Value::Integer(i) | Value::Time(i) => Json::from(*i),
        Value::UnsignedInteger(u) => Json::from(*u),
        Value::Float(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
        Value::Boolean(b) => Json::Bool(*b),
        Value::Opaque(bytes) => Json::String(general_purpose::STANDARD.encode(bytes)),
        Value::ObjectLink(l) => Json::String(l.to_string()),
    };
    (ty, json)
}

/// Reads a value from JSON. The type is `type_name` when given, else the object model's
/// `kind` (from [`Registry::resource`]), else guessed from the JSON (a boolean, an integer,
/// a float or a string). As EMQX, numbers and booleans are also accepted as strings
/// (`"12345"`, `"true"`); Opaque is base64, Objlnk `"3:0"`. When both a type name and a
/// `kind` are given, the value must fit the resource without loss (an Integer for a Time
/// resource does, a Float 1.5 for an Integer one does not).
pub fn value_from_json(
    type_name: Option<&str>,
    json: &Json,
    kind: Option<ResourceType>,
) -> Result<Value, String> {
    typed_value(type_name, json, kind, false)
}

fn typed_value(
    declared: Option<&str>,
    json: &Json,
    kind: Option<ResourceType>,
    hex: bool,
) -> Result<Value, String> {
    if kind == Some(ResourceType::None) {
        return Err("the resource is executable and takes no value".into());
    }
    let declared = declared
        .map(|n| {
            parse_type_name(n).ok_or_else(|| {
                format!(
                    "unknown type {n:?}: expected Integer, Unsigned Integer, Float, Boolean, \
                     String, Opaque, Time, Objlnk or Corelnk"
                )
            })
        })
        .transpose()?;
    let value = match declared.or(kind) {
        Some(ty) => read_as(ty, json, hex)?,
        None => guess(json, hex)?,
    };
    match kind {
        Some(k) if value.resource_type() != k => {
            let from = type_name(value.resource_type());
            value.coerce(k).map_err(|_| {
                format!(
                    "a {from} value does not fit this {} resource",
                    self::type_name(k)
                )
            })
        }
        _ => Ok(value),
    }
}

fn read_as(ty: ResourceType, json: &Json, hex: bool) -> Result<Value, String> {
    let bad = |what: &str| format!("expected {what}, got {}", describe(json));
    Ok(match ty {
        ResourceType::String | ResourceType::CoreLink => {
            let Json::String(s) = json else {
                return Err(bad("a string"));
            };
            let s = if hex {
                String::from_utf8(hex_decode(s)?).map_err(|_| "the hex value is not UTF-8")?
            } else {
                s.clone()
            };
            if ty == ResourceType::String {
                Value::String(s)
            } else {
                Value::CoreLink(s)
            }
        }
        ResourceType::Integer => Value::Integer(int_of(json).ok_or_else(|| bad("an integer"))?),
        ResourceType::Time => Value::Time(int_of(json).ok_or_else(|| bad("a time in seconds"))?),
        ResourceType::UnsignedInteger => {
            Value::UnsignedInteger(uint_of(json).ok_or_else(|| bad("an unsigned integer"))?)
        }
        ResourceType::Float => Value::Float(float_of(json).ok_or_else(|| bad("a number"))?),
        ResourceType::Boolean => Value::Boolean(match json {
            Json::Bool(b) => *b,
            Json::String(s) if s.trim().eq_ignore_ascii_case("true") || s.trim() == "1" => true,
            Json::String(s) if s.trim().eq_ignore_ascii_case("false") || s.trim() == "0" => false,
            Json::Number(n) if n.as_u64() == Some(1) => true,
            Json::Number(n) if n.as_u64() == Some(0) => false,
            _ => return Err(bad("a boolean")),
        }),
        ResourceType::Opaque => {
            let Json::String(s) = json else {
                return Err(bad("a base64 string"));
            };
            Value::Opaque(if hex {
                hex_decode(s)?
            } else {
                BASE64_LENIENT
                    .decode(s.trim())
                    .map_err(|e| format!("not base64: {e}"))?
            })
        }
        ResourceType::ObjectLink => {
            let Json::String(s) = json else {
                return Err(bad("an object link \"object:instance\""));
            };
            Value::from_text(ResourceType::ObjectLink, s)
                .map_err(|_| bad("an object link \"object:instance\""))?
        }
        ResourceType::None => return Err("the resource is executable and takes no value".into()),
    })
}

/// Padding optional: backends differ on it and nothing is ambiguous without it.
const BASE64_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

fn guess(json: &Json, hex: bool) -> Result<Value, String> {
    Ok(match json {
        Json::Bool(b) => Value::Boolean(*b),
        Json::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Value::Integer(i),
            (None, Some(u), _) => Value::UnsignedInteger(u),
            (None, None, Some(f)) => Value::Float(f),
            _ => return Err(format!("unreadable number {n}")),
        },
        Json::String(_) => read_as(ResourceType::String, json, hex)?,
        other => {
            return Err(format!(
                "expected a value (number, boolean or string), got {}",
                describe(other)
            ))
        }
    })
}

/// -2^63 ≤ f < 2^63: the floats that convert to an i64 exactly when integral.
const I64_RANGE: std::ops::Range<f64> = -9.223_372_036_854_776e18..9.223_372_036_854_776e18;

fn int_of(json: &Json) -> Option<i64> {
    match json {
        Json::Number(n) => n.as_i64().or_else(|| n.as_f64().and_then(f64_to_i64)),
        Json::String(s) => {
            let s = s.trim();
            s.parse()
                .ok()
                .or_else(|| s.parse::<f64>().ok().and_then(f64_to_i64))
        }
        _ => None,
    }
}

fn f64_to_i64(f: f64) -> Option<i64> {
    (f.fract() == 0.0 && I64_RANGE.contains(&f)).then_some(f as i64)
}

fn uint_of(json: &Json) -> Option<u64> {
    let from_f64 = |f: f64| {
        (f.fract() == 0.0 && (0.0..1.844_674_407_370_955_2e19).contains(&f)).then_some(f as u64)
    };
    match json {
        Json::Number(n) => n.as_u64().or_else(|| n.as_f64().and_then(from_f64)),
        Json::String(s) => {
            let s = s.trim();
            s.parse()
                .ok()
                .or_else(|| s.parse::<f64>().ok().and_then(from_f64))
        }
        _ => None,
    }
}

fn float_of(json: &Json) -> Option<f64> {
    let f = match json {
        Json::Number(n) => n.as_f64(),
        Json::String(s) => s.trim().parse().ok(),
        _ => None,
    }?;
    f.is_finite().then_some(f)
}

fn hex_decode(s: &str) -> Result<Vec<u8>, String> {
    let s = s.trim();
    crate::provisioning::secrets::hex_decode(s).ok_or_else(|| {
        if s.len().is_multiple_of(2) {
            format!("not hex: {:?}", truncate(s))
        } else {
            "a hex value needs an even number of digits".into()
        }
    })
}

/// A short description of a JSON value for error messages.
fn describe(json: &Json) -> String {
    match json {
        Json::Null => "null".into(),
        Json::Bool(b) => b.to_string(),
        Json::Number(n) => n.to_string(),
        Json::String(s) => format!("{:?}", truncate(s)),
        Json::Array(_) => "an array".into(),
        Json::Object(_) => "an object".into(),
    }
}

fn truncate(s: &str) -> String {
    const MAX: usize = 40;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(MAX).collect();
        t.push('…');
        t
    }
}

// ---------------------------------------------------------------------------------------
// Downlink
// ---------------------------------------------------------------------------------------

/// How large a command may be. A backend is trusted to be well meaning, not to be right: a
/// runaway producer must cost the server one error answer, not its memory or its stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandLimits {
    /// Bytes of one command's payload (`[mqtt] max_command_bytes`, 64 KiB by default).
    pub max_bytes: usize,
    /// Nesting of JSON arrays and objects: a command needs 4 (`{"data": {"content":
    /// [{..}]}}`); 32 leaves room and keeps the parser's recursion short.
    pub max_depth: usize,
}

impl CommandLimits {
    /// Whether `payload` (a command or a shadow's desired state) is within the limits; the
    /// error says which limit it broke.
    pub fn check(&self, payload: &[u8]) -> Result<(), String> {
        if payload.len() > self.max_bytes {
            return Err(format!(
                "the message is {} bytes, over the limit of {} bytes",
                payload.len(),
                self.max_bytes
            ));
        }
        if let Some(depth) = too_deep(payload, self.max_depth) {
            return Err(format!(
                "the message nests arrays and objects {depth} levels deep, over the limit \
                 of {}",
                self.max_depth
            ));
        }
        Ok(())
    }
}

impl Default for CommandLimits {
    fn default() -> Self {
        Self {
            max_bytes: 64 * 1024,
            max_depth: 32,
        }
    }
}

/// Reads a command published on `dn/...` for device `endpoint` with the default
/// [`CommandLimits`]; see [`parse_command_with`].
pub fn parse_command(
    endpoint: &str,
    payload: &[u8],
    schema: &Registry,
) -> Result<Parsed, EnvelopeError> {
    parse_command_with(endpoint, payload, schema, &CommandLimits::default())
}

/// Reads a command published on `dn/...` for device `endpoint`. Values are typed and
/// checked with `schema`. Never panics: any payload is a command or an error that says what
/// is wrong and echoes the `reqID` and `msgType` it found. A payload over `limits` is
/// refused before it is parsed into a tree; its `reqID` and `msgType` are still read (by a
/// streaming pass that allocates nothing for the rest) so the refusal reaches its caller.
pub fn parse_command_with(
    endpoint: &str,
    payload: &[u8],
    schema: &Registry,
    limits: &CommandLimits,
) -> Result<Parsed, EnvelopeError> {
    let blank = EnvelopeError {
        req_id: None,
        msg_type: None,
        message: String::new(),
    };
    if let Err(message) = limits.check(payload) {
        let echo = if payload.len() > limits.max_bytes {
            head(payload)
        } else {
            blank
        };
        return Err(echo.with(message));
    }
    let root: Json = serde_json::from_slice(payload)
        .map_err(|e| blank.with(format!("the command is not JSON: {e}")))?;
    let Json::Object(obj) = root else {
        return Err(blank.with(format!(
            "the command must be a JSON object, not {}",
            describe(&root)
        )));
    };
    // Take reqID and msgType first, so that every later error echoes them.
    let err = EnvelopeError {
        req_id: obj.get("reqID").filter(|v| !v.is_null()).cloned(),
        msg_type: obj.get("msgType").and_then(Json::as_str).map(str::to_owned),
        message: String::new(),
    };
    let req_id = match obj.get("reqID") {
        Some(v @ (Json::Number(_) | Json::String(_))) => v.clone(),
        None | Some(Json::Null) => return Err(err.with("missing reqID")),
        Some(other) => {
            return Err(err.with(format!(
                "reqID must be a number or a string, not {}",
                describe(other)
            )))
        }
    };
    let msg_type = match obj.get("msgType") {
        Some(Json::String(s)) => s.clone(),
        None | Some(Json::Null) => return Err(err.with("missing msgType")),
        Some(other) => {
            return Err(err.with(format!("msgType must be a string, not {}", describe(other))))
        }
    };
    if !COMMAND_TYPES.contains(&msg_type.as_str()) {
        return Err(err.with(format!(
            "unknown msgType {:?}: expected one of {}",
            truncate(&msg_type),
            COMMAND_TYPES.join(", ")
        )));
    }
    let data = match obj.get("data") {
        Some(Json::Object(d)) => d,
        None | Some(Json::Null) => return Err(err.with("missing data")),
        Some(other) => {
            return Err(err.with(format!("data must be an object, not {}", describe(other))))
        }
    };
    let hex = match obj.get("encoding") {
        None | Some(Json::Null) => false,
        Some(Json::String(s)) if s.eq_ignore_ascii_case("hex") => true,
        Some(other) => {
            return Err(err.with(format!(
                "unsupported encoding {}: only \"hex\" is known",
                describe(other)
            )))
        }
    };
    let cx = Cx { schema, hex };
    let action = read_action(&msg_type, data, &cx)
        .and_then(|a| match a {
            Request::Cancel(p) => Ok(Action::CancelObserve(p)),
            Request::Dm(request) => Ok(Action::Command(Command {
                format: format_option(obj.get("format"))?,
                timeout: seconds_option(obj.get("timeout"), "timeout", COMMAND_TIMEOUT_RANGE)?,
                ttl: seconds_option(obj.get("ttl"), "ttl", COMMAND_TTL_RANGE)?,
                ..Command::new(endpoint, request)
            })),
        })
        .map_err(|m| err.with(m))?;
    Ok(Parsed {
        req_id,
        msg_type,
        action,
    })
}

/// What parsing needs besides the command.
struct Cx<'a> {
    schema: &'a Registry,
    /// `"encoding": "hex"`: String and Opaque values are hex.
    hex: bool,
}

enum Request {
    Dm(DownlinkRequest),
    Cancel(Path),
}

fn read_action(msg_type: &str, data: &Map<String, Json>, cx: &Cx<'_>) -> Result<Request, String> {
    use PathLevel::{Instance as I, Object as O, Resource as R, ResourceInstance as RI};
    let any = [O, I, R, RI];
    let path = |levels: &[PathLevel], what: &str| -> Result<Path, String> {
        let (p, _query) = path_field(data, "path")?;
        check_level(&p, "data.path", levels, what)?;
        Ok(p)
    };
    Ok(Request::Dm(match msg_type {
        "read" => DownlinkRequest::Read {
            path: path(&any, "an object, instance or resource")?,
        },
        "discover" => DownlinkRequest::Discover {
            path: path(&any, "an object, instance or resource")?,
        },
        "observe" => DownlinkRequest::Observe {
            path: path(&any, "an object, instance or resource")?,
        },
        "cancel-observe" => {
            return Ok(Request::Cancel(path(
                &any,
                "an object, instance or resource",
            )?))
        }
        // Core §6.3.7: Delete targets an object instance.
        "delete" => DownlinkRequest::Delete {
            path: path(&[I], "an object instance")?,
        },
        // Core §6.3.5: Execute targets a resource.
        "execute" => DownlinkRequest::Execute {
            path: path(&[R], "a resource")?,
            args: execute_args(data)?,
        },
        "write" => write(data, cx)?,
        "write-attr" => write_attributes(data)?,
        "create" => create(data, cx)?,
        "read-composite" => DownlinkRequest::ReadComposite {
            paths: composite_paths(data)?,
        },
        "observe-composite" => DownlinkRequest::ObserveComposite {
            paths: composite_paths(data)?,
        },
        "write-composite" => write_composite(data, cx)?,
        other => return Err(format!("unknown msgType {other:?}")),
    }))
}

/// A required path field; a query after `?` (which EMQX passes on as Uri-Query) is split
/// off and returned.
fn path_field<'a>(
    data: &'a Map<String, Json>,
    key: &str,
) -> Result<(Path, Option<&'a str>), String> {
    match data.get(key) {
        None | Some(Json::Null) => Err(format!("missing data.{key}")),
        Some(Json::String(s)) => parse_path(s, &format!("data.{key}")),
        Some(other) => Err(format!(
            "data.{key} must be a string, not {}",
            describe(other)
        )),
    }
}

fn parse_path<'a>(s: &'a str, field: &str) -> Result<(Path, Option<&'a str>), String> {
    let (p, query) = match s.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (s, None),
    };
    let path = Path::parse(p.trim()).map_err(|e| format!("{field} {:?}: {e}", truncate(s)))?;
    Ok((path, query))
}

fn check_level(path: &Path, field: &str, levels: &[PathLevel], what: &str) -> Result<(), String> {
    if levels.contains(&path.level()) {
        Ok(())
    } else {
        Err(format!("{field} {path} must be {what}"))
    }
}

fn execute_args(data: &Map<String, Json>) -> Result<Option<String>, String> {
    match data.get("args") {
        None | Some(Json::Null) => Ok(None),
        // EMQX sends no payload for "undefined" (an Erlang atom that leaked into JSON).
        Some(Json::String(s)) if s.is_empty() || s == "undefined" => Ok(None),
        Some(Json::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(format!(
            "data.args must be a string such as \"0='a',1\", not {}",
            describe(other)
        )),
    }
}

/// `write`: one resource (`path`, `type`, `value`) or, with a `basePath` other than `/`,
/// several (`content`), as EMQX.
fn write(data: &Map<String, Json>, cx: &Cx<'_>) -> Result<DownlinkRequest, String> {
    let mode = match data.get("mode") {
        None | Some(Json::Null) => None,
        Some(Json::String(s)) if s.eq_ignore_ascii_case("replace") => Some(WriteMode::Replace),
        Some(Json::String(s)) if s.eq_ignore_ascii_case("update") => Some(WriteMode::Update),
        Some(other) => {
            return Err(format!(
                "data.mode must be \"replace\" or \"update\", not {}",
                describe(other)
            ))
        }
    };
    let batch_base = match data.get("basePath") {
        None | Some(Json::Null) => None,
        Some(Json::String(s)) => {
            let (base, _query) = parse_path(s, "data.basePath")?;
            (!base.is_root()).then_some(base)
        }
        Some(other) => {
            return Err(format!(
                "data.basePath must be a string, not {}",
                describe(other)
            ))
        }
    };
    let Some(base) = batch_base else {
        let (path, _query) = path_field(data, "path")?;
        check_level(
            &path,
            "data.path",
            &[PathLevel::Resource, PathLevel::ResourceInstance],
            "a resource or resource instance (write an instance with basePath and content)",
        )?;
        check_shape(cx.schema, &path)?;
        let value = data
            .get("value")
            .filter(|v| !v.is_null())
            .ok_or("missing data.value")?;
        let ty = optional_str(data, "type", "data.type")?;
        let value = typed_value(ty, value, kind(cx.schema, &path), cx.hex)
            .map_err(|e| format!("data.value for {path}: {e}"))?;
        let node = match path.level() {
            PathLevel::ResourceInstance => Node::ResourceInstance(value),
            _ => Node::Resource(Resource::Single(value)),
        };
        return Ok(DownlinkRequest::Write {
            path,
            mode: mode.unwrap_or(WriteMode::Replace),
            node,
        });
    };
    check_level(
        &base,
        "data.basePath",
        &[
            PathLevel::Instance,
            PathLevel::Resource,
            PathLevel::ResourceInstance,
        ],
        "an object instance, resource or resource instance",
    )?;
    let entries = content_entries(data, &base, cx, false)?;
    if entries.is_empty() {
        return Err("data.content is empty: nothing to write".into());
    }
    let node =
        Node::from_values(&base, dedup(entries)).map_err(|e| format!("data.content: {e}"))?;
    // EMQX: an instance is updated (POST), a resource replaced (PUT).
    let default = if base.level() == PathLevel::Instance {
        WriteMode::Update
    } else {
        WriteMode::Replace
    };
    Ok(DownlinkRequest::Write {
        path: base,
        mode: mode.unwrap_or(default),
        node,
    })
}

/// `create`: `basePath` is the object, `content` paths are `instance/resource` below it.
fn create(data: &Map<String, Json>, cx: &Cx<'_>) -> Result<DownlinkRequest, String> {
    let (base, _query) = path_field(data, "basePath")?;
    check_level(
        &base,
        "data.basePath",
        &[PathLevel::Object],
        "an object (the instance id goes in the content paths, \"0/1\")",
    )?;
    let entries = if data.get("content").is_none_or(Json::is_null) {
        Vec::new()
    } else {
        content_entries(data, &base, cx, false)?
    };
    let node =
        Node::from_values(&base, dedup(entries)).map_err(|e| format!("data.content: {e}"))?;
    Ok(DownlinkRequest::Create { path: base, node })
}

/// `write-composite` (ours): `content` with full paths, or relative to `basePath`.
fn write_composite(data: &Map<String, Json>, cx: &Cx<'_>) -> Result<DownlinkRequest, String> {
    let base = match data.get("basePath") {
        None | Some(Json::Null) => Path::ROOT,
        Some(Json::String(s)) => parse_path(s, "data.basePath")?.0,
        Some(other) => {
            return Err(format!(
                "data.basePath must be a string, not {}",
                describe(other)
            ))
        }
    };
    let entries = content_entries(data, &base, cx, true)?;
    if entries.is_empty() {
        return Err("data.content is empty: nothing to write".into());
    }
    let mut records: BTreeMap<Path, Option<Value>> = BTreeMap::new();
    for (path, value) in entries {
        records.insert(path, value);
    }
    Ok(DownlinkRequest::WriteComposite {
        records: records
            .into_iter()
            .map(|(path, value)| Record {
                path,
                value,
                time: None,
            })
            .collect(),
    })
}

/// The entries of `data.content`, each `{"path"?, "type"?, "value"}` with `path` relative
/// to `base` (absent: `base` itself). A `null` value (a deletion) only where `allow_null`,
/// and then only for a resource instance.
fn content_entries<E: FromEntry>(
    data: &Map<String, Json>,
    base: &Path,
    cx: &Cx<'_>,
    allow_null: bool,
) -> Result<Vec<(Path, E)>, String> {
    let items = match data.get("content") {
        Some(Json::Array(items)) => items,
        None | Some(Json::Null) => return Err("missing data.content".into()),
        Some(other) => {
            return Err(format!(
                "data.content must be an array, not {}",
                describe(other)
            ))
        }
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let field = format!("data.content[{i}]");
            let Json::Object(item) = item else {
                return Err(format!("{field} must be an object, not {}", describe(item)));
            };
            let path = match item.get("path") {
                None | Some(Json::Null) => *base,
                Some(Json::String(rel)) => {
                    join(base, rel).map_err(|e| format!("{field}.path: {e}"))?
                }
                Some(other) => {
                    return Err(format!(
                        "{field}.path must be a string, not {}",
                        describe(other)
                    ))
                }
            };
            check_level(
                &path,
                &format!("{field}: path"),
                &[PathLevel::Resource, PathLevel::ResourceInstance],
                "a resource or resource instance",
            )?;
            check_shape(cx.schema, &path).map_err(|e| format!("{field}: {e}"))?;
            let value = match item.get("value") {
                None => return Err(format!("{field}: missing value")),
                Some(Json::Null) if allow_null && path.level() == PathLevel::ResourceInstance => {
                    None
                }
                Some(Json::Null) => {
                    return Err(format!(
                        "{field}: missing value (null deletes only a resource instance, in \
                         write-composite)"
                    ))
                }
                Some(v) => {
                    let ty = optional_str(item, "type", &format!("{field}.type"))?;
                    Some(
                        typed_value(ty, v, kind(cx.schema, &path), cx.hex)
                            .map_err(|e| format!("{field} ({path}): {e}"))?,
                    )
                }
            };
            Ok((
                path,
                E::from_entry(value).ok_or_else(|| format!("{field}: missing value"))?,
            ))
        })
        .collect()
}

/// What one content entry becomes: a value (Write, Create) or an optional one
/// (Write-Composite, where none deletes).
trait FromEntry: Sized {
    fn from_entry(value: Option<Value>) -> Option<Self>;
}

impl FromEntry for Value {
    fn from_entry(value: Option<Value>) -> Option<Self> {
        value
    }
}

impl FromEntry for Option<Value> {
    fn from_entry(value: Option<Value>) -> Option<Self> {
        Some(value)
    }
}

/// `base` followed by the segments of `rel`; empty segments are skipped, as EMQX does
/// (`"/6/0"` under `/3/0` is `/3/0/6/0`).
fn join(base: &Path, rel: &str) -> Result<Path, String> {
    let mut path = *base;
    for seg in rel.split('/').map(str::trim).filter(|s| !s.is_empty()) {
        let id = Path::parse(seg)
            .ok()
            .and_then(|p| match p.ids() {
                [id] => Some(*id),
                _ => None,
            })
            .ok_or_else(|| format!("invalid path segment {:?}", truncate(seg)))?;
        path = path
            .child(id)
            .map_err(|_| format!("{base} + {:?} is deeper than /o/i/r/ri", truncate(rel)))?;
    }
    Ok(path)
}

/// Keeps the last value given for a path, as EMQX does.
fn dedup(entries: Vec<(Path, Value)>) -> BTreeMap<Path, Value> {
    entries.into_iter().collect()
}

/// The object model's type of the resource at `path`, when the object is known.
fn kind(schema: &Registry, path: &Path) -> Option<ResourceType> {
    schema.resource(path).map(|d| d.kind)
}

/// Refuses a value where the object model says there can be none: an executable resource,
/// a single value for a multiple-instance resource, an instance of a single one.
fn check_shape(schema: &Registry, path: &Path) -> Result<(), String> {
    let Some(def) = schema.resource(path) else {
        return Ok(());
    };
    if def.kind == ResourceType::None {
        return Err(format!(
            "{path} ({}) is executable and takes no value",
            def.name
        ));
    }
    match path.level() {
        PathLevel::Resource if def.multiple => Err(format!(
            "{path} ({}) is a multiple-instance resource: give its instances ({path}/0, …)",
            def.name
        )),
        PathLevel::ResourceInstance if !def.multiple => Err(format!(
            "{path} ({}) is a single-instance resource and has no resource instances",
            def.name
        )),
        _ => Ok(()),
    }
}

fn optional_str<'a>(
    map: &'a Map<String, Json>,
    key: &str,
    field: &str,
) -> Result<Option<&'a str>, String> {
    match map.get(key) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(s)) => Ok(Some(s)),
        Some(other) => Err(format!("{field} must be a string, not {}", describe(other))),
    }
}

/// `write-attr`: the notification attributes (Core §5.1.2) as keys of `data`, numbers or
/// numeric strings; `null` ones are ignored and so are unknown keys, as EMQX does.
fn write_attributes(data: &Map<String, Json>) -> Result<DownlinkRequest, String> {
    let (path, query) = path_field(data, "path")?;
    check_level(
        &path,
        "data.path",
        &[
            PathLevel::Object,
            PathLevel::Instance,
            PathLevel::Resource,
            PathLevel::ResourceInstance,
        ],
        "an object, instance or resource",
    )?;
    let mut items: Vec<String> = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter(|q| !q.is_empty())
        .map(str::to_owned)
        .collect();
    for name in NOTIFICATION_ATTRIBUTES {
        match data.get(name) {
            None | Some(Json::Null) => {}
            Some(Json::Number(n)) => items.push(format!("{name}={n}")),
            Some(Json::String(s)) => items.push(format!("{name}={}", s.trim())),
            Some(other) => {
                return Err(format!(
                    "bad attribute: data.{name} must be a number, not {}",
                    describe(other)
                ))
            }
        }
    }
    match data.get("remove") {
        None | Some(Json::Null) => {}
        Some(Json::Array(names)) => {
            for n in names {
                match n.as_str() {
                    Some(name) if NOTIFICATION_ATTRIBUTES.contains(&name) => {
                        items.push(name.to_owned())
                    }
                    _ => {
                        return Err(format!(
                            "bad attribute: data.remove lists {}, not one of {}",
                            describe(n),
                            NOTIFICATION_ATTRIBUTES.join(", ")
                        ))
                    }
                }
            }
        }
        Some(other) => {
            return Err(format!(
                "data.remove must be an array of attribute names, not {}",
                describe(other)
            ))
        }
    }
    let refs: Vec<&str> = items.iter().map(String::as_str).collect();
    let (attributes, remove) = NotificationAttributes::from_query_with_removals(&refs)
        .map_err(|e| format!("bad attribute: {e}"))?;
    if attributes.is_empty() && remove.is_empty() {
        return Err(format!(
            "no attribute to write: give one of {}",
            NOTIFICATION_ATTRIBUTES.join(", ")
        ));
    }
    Ok(DownlinkRequest::WriteAttributes {
        path,
        attributes,
        remove,
    })
}

/// `data.paths` of `read-composite` and `observe-composite`.
fn composite_paths(data: &Map<String, Json>) -> Result<Vec<Path>, String> {
    let items = match data.get("paths") {
        Some(Json::Array(items)) => items,
        None | Some(Json::Null) => return Err("missing data.paths".into()),
        Some(other) => {
            return Err(format!(
                "data.paths must be an array of paths, not {}",
                describe(other)
            ))
        }
    };
    if items.is_empty() {
        return Err("data.paths is empty".into());
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            Json::String(s) if !s.contains('?') => {
                Ok(parse_path(s, &format!("data.paths[{i}]"))?.0)
            }
            Json::String(s) => Err(format!(
                "data.paths[{i}] {:?}: a composite path takes no query",
                truncate(s)
            )),
            other => Err(format!(
                "data.paths[{i}] must be a string, not {}",
                describe(other)
            )),
        })
        .collect()
}

/// Top-level `"format"` (ours): a content format by name, media type or code.
fn format_option(json: Option<&Json>) -> Result<Option<ContentFormat>, String> {
    let found = match json {
        None | Some(Json::Null) => return Ok(None),
        Some(Json::Number(n)) => n
            .as_u64()
            .and_then(|c| u16::try_from(c).ok())
            .and_then(ContentFormat::from_code),
        Some(Json::String(s)) => {
            let s = s.trim().to_ascii_lowercase();
            ContentFormat::ALL
                .into_iter()
                .find(|f| f.media_type() == s || f.code().to_string() == s)
                .or(match s.as_str() {
                    "text" => Some(ContentFormat::Text),
                    "link" => Some(ContentFormat::LinkFormat),
                    "opaque" | "octet-stream" => Some(ContentFormat::Opaque),
                    "cbor" => Some(ContentFormat::Cbor),
                    "senml-json" | "senml+json" => Some(ContentFormat::SenmlJson),
                    "senml-cbor" | "senml+cbor" => Some(ContentFormat::SenmlCbor),
                    "tlv" => Some(ContentFormat::Tlv),
                    "lwm2m-json" => Some(ContentFormat::Lwm2mJson),
                    "lwm2m-cbor" => Some(ContentFormat::Lwm2mCbor),
                    _ => None,
                })
        }
        Some(_) => None,
    };
    found.map(Some).ok_or_else(|| {
        format!(
            "unknown format {}: expected text, opaque, cbor, tlv, senml-json, senml-cbor, \
             lwm2m-json, lwm2m-cbor or a content format code",
            json.map(describe).unwrap_or_default()
        )
    })
}

/// The `reqID` and `msgType` of a payload too large to parse whole, read by a streaming
/// pass that skips every other field without building it.
fn head(payload: &[u8]) -> EnvelopeError {
    #[derive(serde::Deserialize)]
    struct Head {
        #[serde(rename = "reqID")]
        req_id: Option<Json>,
        #[serde(rename = "msgType")]
        msg_type: Option<Json>,
    }
    let (req_id, msg_type) = match serde_json::from_slice::<Head>(payload) {
        Ok(h) => (h.req_id, h.msg_type),
        Err(_) => (None, None),
    };
    EnvelopeError {
        // Only what a valid command could carry is echoed: a number or a short string.
        req_id: req_id.filter(|v| v.is_number() || v.as_str().is_some_and(|s| s.len() <= 256)),
        msg_type: msg_type
            .as_ref()
            .and_then(Json::as_str)
            .filter(|s| COMMAND_TYPES.contains(s))
            .map(str::to_owned),
        message: String::new(),
    }
}

/// The depth past `max` that `json` reaches, if it does: arrays and objects counted outside
/// strings, in one pass over the bytes, so a deep document is refused before the parser
/// recurses into it.
fn too_deep(json: &[u8], max: usize) -> Option<usize> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in json {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return Some(depth);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

/// Top-level `"timeout"` / `"ttl"` (ours), in seconds, within `range`.
fn seconds_option(
    json: Option<&Json>,
    key: &str,
    range: std::ops::RangeInclusive<Duration>,
) -> Result<Option<Duration>, String> {
    match json {
        None | Some(Json::Null) => Ok(None),
        Some(Json::Number(n)) => n
            .as_f64()
            .and_then(|s| lwm2m::time::secs_f64_in(s, range.clone()))
            .map(Some)
            .ok_or_else(|| {
                format!(
                    "{key} must be a number of seconds from {} to {}, not {n}",
                    range.start().as_secs_f64(),
                    range.end().as_secs_f64()
                )
            }),
        Some(other) => Err(format!(
            "{key} must be a number of seconds, not {}",
            describe(other)
        )),
    }
}

#[cfg(test)]
mod tests;
