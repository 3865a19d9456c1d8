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
//! - `firmware-update` (`{"package": id, "method": "pull" | "push", "concurrency": n}`)
//!   starts a firmware update campaign for the device; `up/resp` carries `"campaign"`, and
//!   each phase of the update goes to `up/firmware` as `{"campaign", "package", "state",
//!   "result", "outcome", "bytes", "phase", "version"}` (OMA LwM2M TS 1.2 Core E.6).
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
//!
//! # Files
//!
//! - `uplink`: events and results to JSON.
//! - `values`: LwM2M values to and from JSON.
//! - `downlink`: commands from JSON.
mod downlink;
mod uplink;
mod values;

pub use downlink::{parse_command, parse_command_with, CommandLimits};
pub use uplink::{
    bootstrap, code_msg, deregistered, error_response, firmware, firmware_started, flatten, notify,
    registered, response, send, updated,
};
pub use values::{type_name, value_from_json, value_to_json};

use crate::core::types::Command;
use lwm2m::model::Path;
use serde_json::Value as Json;

/// Every `msgType` a command may have.
pub const COMMAND_TYPES: [&str; 14] = [
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
    "bootstrap-trigger",
    "firmware-update",
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
    /// Make the device bootstrap again (`bootstrap-trigger`): Execute `/1/x/9` on its Server
    /// object instance, which the core finds from the registration.
    BootstrapTrigger {
        /// How long to wait for the device's answer once sent.
        timeout: Option<std::time::Duration>,
        /// How long the command may wait for a sleeping device.
        ttl: Option<std::time::Duration>,
    },
    /// Start a firmware update campaign for this one device (`firmware-update`, OMA LwM2M TS
    /// 1.2 Core E.6): `{"package": id, "method": "pull" | "push", "concurrency": n}`.
    FirmwareUpdate {
        /// The package id.
        package: String,
        /// `pull` or `push`, if given.
        method: Option<String>,
    },
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

#[cfg(test)]
mod tests;
