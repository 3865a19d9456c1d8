//! Downlink: a command read from `dn/...` into a [`Command`] for the command path, checked
//! against the object model and the size limits before anything is sent to the device.
use super::values::{describe, truncate, typed_value};
use super::{Action, EnvelopeError, Parsed, COMMAND_TYPES};
use crate::core::types::{Command, COMMAND_TIMEOUT_RANGE, COMMAND_TTL_RANGE};
use lwm2m::attributes::{NotificationAttributes, NOTIFICATION_ATTRIBUTES};
use lwm2m::content::{ContentFormat, Record};
use lwm2m::model::{Node, Path, PathLevel, Registry, Resource, ResourceType, Value};
use lwm2m::ops::dm::{DownlinkRequest, WriteMode};
use serde_json::{Map, Value as Json};
use std::collections::BTreeMap;
use std::time::Duration;

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
            Request::Firmware { package, method } => Ok(Action::FirmwareUpdate { package, method }),
            Request::BootstrapTrigger => Ok(Action::BootstrapTrigger {
                timeout: seconds_option(obj.get("timeout"), "timeout", COMMAND_TIMEOUT_RANGE)?,
                ttl: seconds_option(obj.get("ttl"), "ttl", COMMAND_TTL_RANGE)?,
            }),
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
    BootstrapTrigger,
    Firmware {
        package: String,
        method: Option<String>,
    },
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
        // Core E.2 /1/x/9, on the instance the core finds: nothing to say in `data`.
        "bootstrap-trigger" => return Ok(Request::BootstrapTrigger),
        "firmware-update" => return firmware_update(data),
        other => return Err(format!("unknown msgType {other:?}")),
    }))
}

/// `firmware-update`: `{"package": id, "method"?: "pull" | "push", "concurrency"?: n}`; one
/// device is updated, so a concurrency, if given, must be a positive number.
fn firmware_update(data: &Map<String, Json>) -> Result<Request, String> {
    let package = match data.get("package") {
        Some(Json::String(s)) if !s.is_empty() && s.len() <= 64 => s.clone(),
        Some(Json::String(_)) => return Err("data.package must be 1 to 64 characters".into()),
        None | Some(Json::Null) => return Err("missing data.package".into()),
        Some(other) => {
            return Err(format!(
                "data.package must be a string, not {}",
                describe(other)
            ))
        }
    };
    let method = match data.get("method") {
        None | Some(Json::Null) => None,
        Some(Json::String(s)) if s == "pull" || s == "push" => Some(s.clone()),
        Some(other) => {
            return Err(format!(
                "data.method must be \"pull\" or \"push\", not {}",
                truncate(&other.to_string())
            ))
        }
    };
    match data.get("concurrency") {
        None | Some(Json::Null) => {}
        Some(Json::Number(n)) if n.as_u64().is_some_and(|n| n >= 1) => {}
        Some(other) => {
            return Err(format!(
                "data.concurrency must be a positive integer, not {}",
                truncate(&other.to_string())
            ))
        }
    }
    Ok(Request::Firmware { package, method })
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
