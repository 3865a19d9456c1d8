//! Leshan's JSON for LwM2M nodes (OMA LwM2M TS 1.2 Core §7.1: objects, instances, single
//! and multiple resources, resource instances), both ways, so that tools written for
//! Leshan's demo API work unchanged:
//!
//! ```json
//! {"id": 0, "kind": "singleResource", "type": "STRING", "value": "Open Mobile Alliance"}
//! {"id": 7, "kind": "multiResource", "type": "INTEGER", "values": {"0": "3800", "1": "5000"}}
//! {"id": 0, "kind": "instance", "resources": [ ... ]}
//! {"id": 3, "kind": "obj", "instances": [ ... ]}
//! {"id": 1, "kind": "resourceInstance", "type": "INTEGER", "value": "3800"}
//! ```
//!
//! As Leshan 2 writes them: integers and floats as strings (a JavaScript number loses
//! integers past 2^53), opaque values as hex, times as Unix milliseconds, object links as
//! `{"objectId", "objectInstanceId"}`. Read back, numbers are accepted as well, `type` may be
//! left out (the object model gives it), and a value is checked against the object model's
//! type before anything is sent to the device. Hand-written because the shape is Leshan's
//! own: no crate speaks it.
use lwm2m::model::{
    Instance, Node, ObjectLink, Path, PathLevel, Registry, Resource, ResourceType, Value,
};
use serde_json::{json, Map, Value as Json};
use std::collections::BTreeMap;

/// Leshan's name of a resource type.
pub fn type_name(ty: ResourceType) -> &'static str {
    match ty {
        ResourceType::String => "STRING",
        ResourceType::Integer => "INTEGER",
        ResourceType::UnsignedInteger => "UNSIGNED_INTEGER",
        ResourceType::Float => "FLOAT",
        ResourceType::Boolean => "BOOLEAN",
        ResourceType::Opaque => "OPAQUE",
        ResourceType::Time => "TIME",
        ResourceType::ObjectLink => "OBJLNK",
        ResourceType::CoreLink => "CORELINK",
        ResourceType::None => "NONE",
    }
}

/// The resource type a Leshan type name (any case) stands for.
pub fn parse_type(name: &str) -> Option<ResourceType> {
    Some(match name.to_ascii_uppercase().as_str() {
        "STRING" => ResourceType::String,
        "INTEGER" => ResourceType::Integer,
        "UNSIGNED_INTEGER" | "UNSIGNED" => ResourceType::UnsignedInteger,
        "FLOAT" => ResourceType::Float,
        "BOOLEAN" => ResourceType::Boolean,
        "OPAQUE" => ResourceType::Opaque,
        "TIME" => ResourceType::Time,
        "OBJLNK" => ResourceType::ObjectLink,
        "CORELINK" | "CORELNK" => ResourceType::CoreLink,
        _ => return None,
    })
}

/// One value as Leshan writes it.
pub fn value_json(v: &Value) -> Json {
    match v {
        Value::String(s) | Value::CoreLink(s) => Json::String(s.clone()),
        Value::Integer(i) => Json::String(i.to_string()),
        Value::UnsignedInteger(u) => Json::String(u.to_string()),
        Value::Float(f) => Json::String(float_text(*f)),
        Value::Boolean(b) => Json::Bool(*b),
        Value::Opaque(bytes) => Json::String(hex::encode(bytes)),
        Value::Time(secs) => json!(secs.saturating_mul(1000)),
        Value::ObjectLink(l) => json!({"objectId": l.object, "objectInstanceId": l.instance}),
    }
}

/// A float as Java's `Double.toString` writes the usual ones (`21.5`, `19.0`), so that
/// Leshan's clients see the text they expect.
fn float_text(f: f64) -> String {
    let s = lwm2m::model::format_float(f);
    if s.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
        format!("{s}.0")
    } else {
        s
    }
}

/// The node at `path` as Leshan's JSON. `path` gives the node's id; `/` (a composite's
/// whole tree) has none.
pub fn node_json(path: &Path, node: &Node) -> Json {
    let id = path.ids().last().copied();
    let mut out = match node {
        Node::Object(instances) => json!({
            "kind": "obj",
            "instances": instances
                .iter()
                .map(|(i, inst)| instance_json(*i, inst))
                .collect::<Vec<_>>(),
        }),
        Node::Instance(inst) => return without_id(instance_json(id.unwrap_or(0), inst), id),
        Node::Resource(r) => return without_id(resource_json(id.unwrap_or(0), r), id),
        Node::ResourceInstance(v) => json!({
            "kind": "resourceInstance",
            "type": type_name(v.resource_type()),
            "value": value_json(v),
        }),
    };
    if let (Some(id), Json::Object(m)) = (id, &mut out) {
        m.insert("id".into(), json!(id));
    }
    out
}

/// Drops the placeholder `id` of a node whose path is not known (a command that did not
/// come through the API).
fn without_id(mut node: Json, id: Option<u16>) -> Json {
    if id.is_none() {
        if let Json::Object(m) = &mut node {
            m.remove("id");
        }
    }
    node
}

fn instance_json(id: u16, inst: &Instance) -> Json {
    json!({
        "id": id,
        "kind": "instance",
        "resources": inst.iter().map(|(r, res)| resource_json(*r, res)).collect::<Vec<_>>(),
    })
}

fn resource_json(id: u16, r: &Resource) -> Json {
    match r {
        Resource::Single(v) => json!({
            "id": id,
            "kind": "singleResource",
            "type": type_name(v.resource_type()),
            "value": value_json(v),
        }),
        Resource::Multiple(values) => {
            let ty = values
                .values()
                .next()
                .map_or("NONE", |v| type_name(v.resource_type()));
            let map: Map<String, Json> = values
                .iter()
                .map(|(i, v)| (i.to_string(), value_json(v)))
                .collect();
            json!({"id": id, "kind": "multiResource", "type": ty, "values": map})
        }
    }
}

/// Reads a node written at `path` (a PUT or POST body). The node's kind must suit the path:
/// a resource path takes a single or multiple resource, an instance path an instance, an
/// object path (Create) an instance or an object; `id`, when given, must be the path's.
pub fn parse_node(path: &Path, json: &Json, schema: &Registry) -> Result<Node, String> {
    let obj = json
        .as_object()
        .ok_or_else(|| format!("the body must be a JSON object, not {}", kind_of(json)))?;
    let kind = node_kind(obj)?;
    let id = match obj.get("id") {
        None | Some(Json::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .and_then(|n| u16::try_from(n).ok())
                .ok_or_else(|| format!("\"id\" must be an integer 0..=65535, not {v}"))?,
        ),
    };
    let own_id = path.ids().last().copied();
    match (path.level(), kind) {
        (PathLevel::Resource, Kind::Single | Kind::Multiple) => {
            check_id(id, own_id)?;
            Ok(Node::Resource(parse_resource(path, obj, kind, schema)?))
        }
        (PathLevel::ResourceInstance, Kind::ResourceInstance | Kind::Single) => {
            check_id(id, own_id)?;
            let ty = declared_type(obj, path, schema)?;
            let value = obj
                .get("value")
                .ok_or("a resource instance needs a \"value\"")?;
            Ok(Node::ResourceInstance(parse_value(value, ty, path)?))
        }
        (PathLevel::Instance, Kind::Instance) => {
            check_id(id, own_id)?;
            Ok(Node::Instance(parse_instance(path, obj, schema)?))
        }
        (PathLevel::Object, Kind::Instance) => {
            let id = id.ok_or(
                "the instance to create needs an \"id\": this server asks the device for the \
                 instance id it names",
            )?;
            let at = path.child(id).map_err(|e| e.to_string())?;
            let inst = parse_instance(&at, obj, schema)?;
            Ok(Node::Object(BTreeMap::from([(id, inst)])))
        }
        (PathLevel::Object, Kind::Object) => {
            check_id(id, own_id)?;
            let mut instances = BTreeMap::new();
            for item in array(obj, "instances")? {
                let inst_obj = item.as_object().ok_or("each instance must be an object")?;
                let iid = inst_obj
                    .get("id")
                    .and_then(Json::as_u64)
                    .and_then(|n| u16::try_from(n).ok())
                    .ok_or("each instance needs an integer \"id\"")?;
                let at = path.child(iid).map_err(|e| e.to_string())?;
                if instances
                    .insert(iid, parse_instance(&at, inst_obj, schema)?)
                    .is_some()
                {
                    return Err(format!("instance {iid} is given twice"));
                }
            }
            Ok(Node::Object(instances))
        }
        (level, kind) => Err(format!(
            "a {} cannot be written at {path} (a {})",
            kind.name(),
            level_name(level)
        )),
    }
}

/// Reads the values of a Write-Composite body: `{"/3/0/14": node, ...}` into one value per
/// resource or resource instance.
pub fn parse_composite(
    json: &Json,
    schema: &Registry,
) -> Result<Vec<(Path, Option<Value>)>, String> {
    let obj = json
        .as_object()
        .ok_or("the body must be a JSON object of path to node")?;
    if obj.is_empty() {
        return Err("the body names no path".into());
    }
    let mut out = Vec::new();
    for (p, node) in obj {
        let path = Path::parse(p).map_err(|e| format!("{p:?}: {e}"))?;
        if node.is_null() {
            // As in SenML: a path without a value removes that resource instance.
            out.push((path, None));
            continue;
        }
        match parse_node(&path, node, schema).map_err(|e| format!("{p}: {e}"))? {
            Node::Resource(Resource::Single(v)) | Node::ResourceInstance(v) => {
                out.push((path, Some(v)))
            }
            Node::Resource(Resource::Multiple(values)) => {
                for (i, v) in values {
                    out.push((path.child(i).map_err(|e| e.to_string())?, Some(v)));
                }
            }
            _ => return Err(format!("{p}: Write-Composite writes resources only")),
        }
    }
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Object,
    Instance,
    Single,
    Multiple,
    ResourceInstance,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Object => "object",
            Kind::Instance => "instance",
            Kind::Single => "single resource",
            Kind::Multiple => "multiple resource",
            Kind::ResourceInstance => "resource instance",
        }
    }
}

/// As Leshan decides: `kind` if given, else the fields present.
fn node_kind(obj: &Map<String, Json>) -> Result<Kind, String> {
    match obj.get("kind").and_then(Json::as_str) {
        Some("obj") => Ok(Kind::Object),
        Some("instance") => Ok(Kind::Instance),
        Some("singleResource") => Ok(Kind::Single),
        Some("multiResource") => Ok(Kind::Multiple),
        Some("resourceInstance") => Ok(Kind::ResourceInstance),
        Some(other) => Err(format!(
            "unknown \"kind\" {other:?}: one of obj, instance, singleResource, multiResource, \
             resourceInstance"
        )),
        None if obj.contains_key("instances") => Ok(Kind::Object),
        None if obj.contains_key("resources") => Ok(Kind::Instance),
        None if obj.contains_key("values") => Ok(Kind::Multiple),
        None if obj.contains_key("value") => Ok(Kind::Single),
        None => {
            Err("the node has no \"kind\" and none of value, values, resources, instances".into())
        }
    }
}

fn check_id(given: Option<u16>, own: Option<u16>) -> Result<(), String> {
    match (given, own) {
        (Some(g), Some(o)) if g != o => Err(format!("\"id\" {g} is not the path's id {o}")),
        _ => Ok(()),
    }
}

fn array<'a>(obj: &'a Map<String, Json>, key: &str) -> Result<&'a Vec<Json>, String> {
    obj.get(key)
        .and_then(Json::as_array)
        .ok_or_else(|| format!("\"{key}\" must be an array"))
}

fn parse_instance(
    path: &Path,
    obj: &Map<String, Json>,
    schema: &Registry,
) -> Result<Instance, String> {
    let mut inst = Instance::new();
    for item in array(obj, "resources")? {
        let r = item.as_object().ok_or("each resource must be an object")?;
        let rid = r
            .get("id")
            .and_then(Json::as_u64)
            .and_then(|n| u16::try_from(n).ok())
            .ok_or("each resource needs an integer \"id\"")?;
        let at = path.child(rid).map_err(|e| e.to_string())?;
        let kind = node_kind(r)?;
        if !matches!(kind, Kind::Single | Kind::Multiple) {
            return Err(format!(
                "{at}: an instance holds resources, not a {}",
                kind.name()
            ));
        }
        if inst
            .insert(rid, parse_resource(&at, r, kind, schema)?)
            .is_some()
        {
            return Err(format!("resource {at} is given twice"));
        }
    }
    Ok(inst)
}

fn parse_resource(
    path: &Path,
    obj: &Map<String, Json>,
    kind: Kind,
    schema: &Registry,
) -> Result<Resource, String> {
    let ty = declared_type(obj, path, schema)?;
    let multiple = schema.resource(path).map(|d| d.multiple);
    match kind {
        Kind::Multiple => {
            if multiple == Some(false) {
                return Err(format!(
                    "{path} is a single-instance resource: give \"value\""
                ));
            }
            let values = obj
                .get("values")
                .and_then(Json::as_object)
                .ok_or("a multiple resource needs \"values\": {\"0\": value, ...}")?;
            let mut out = BTreeMap::new();
            for (k, v) in values {
                let i: u16 = k
                    .parse()
                    .map_err(|_| format!("{path}: resource instance id {k:?} is not 0..=65535"))?;
                let at = path.child(i).map_err(|e| e.to_string())?;
                out.insert(i, parse_value(v, ty, &at)?);
            }
            Ok(Resource::Multiple(out))
        }
        _ => {
            if multiple == Some(true) {
                return Err(format!(
                    "{path} is a multiple-instance resource: give \"values\""
                ));
            }
            let v = obj
                .get("value")
                .ok_or("a single resource needs a \"value\"")?;
            Ok(Resource::Single(parse_value(v, ty, path)?))
        }
    }
}

/// The type to read a value as: the object model's when it knows the resource (a `type`
/// that disagrees is refused), else the `type` given.
fn declared_type(
    obj: &Map<String, Json>,
    path: &Path,
    schema: &Registry,
) -> Result<ResourceType, String> {
    let given = match obj.get("type") {
        None | Some(Json::Null) => None,
        // What this server writes for an empty multiple resource: no type to check.
        Some(Json::String(s)) if s.eq_ignore_ascii_case("NONE") => None,
        Some(Json::String(s)) => {
            Some(parse_type(s).ok_or_else(|| format!("unknown \"type\" {s:?}"))?)
        }
        Some(other) => return Err(format!("\"type\" must be a string, not {other}")),
    };
    let model = schema
        .resource(&resource_of(path))
        .map(|d| d.kind)
        .filter(|k| *k != ResourceType::None);
    match (model, given) {
        (Some(m), Some(g)) if m != g => Err(format!(
            "{path} is {} in the object model, not {}",
            type_name(m),
            type_name(g)
        )),
        (Some(m), _) => Ok(m),
        (None, Some(g)) => Ok(g),
        (None, None) => Err(format!(
            "{path} is not in the object model: give its \"type\""
        )),
    }
}

fn resource_of(path: &Path) -> Path {
    if path.level() == PathLevel::ResourceInstance {
        path.parent().unwrap_or(*path)
    } else {
        *path
    }
}

/// One value of type `ty`, as Leshan writes it or as a plain JSON number or boolean.
pub fn parse_value(v: &Json, ty: ResourceType, path: &Path) -> Result<Value, String> {
    let bad = |want: &str| format!("{path}: {v} is not {want}");
    Ok(match ty {
        ResourceType::String => {
            Value::String(v.as_str().ok_or_else(|| bad("a string"))?.to_owned())
        }
        ResourceType::CoreLink => {
            Value::CoreLink(v.as_str().ok_or_else(|| bad("a string"))?.to_owned())
        }
        ResourceType::Integer => Value::Integer(match v {
            Json::String(s) => s.trim().parse().map_err(|_| bad("an integer"))?,
            _ => v.as_i64().ok_or_else(|| bad("an integer"))?,
        }),
        ResourceType::UnsignedInteger => Value::UnsignedInteger(match v {
            Json::String(s) => s.trim().parse().map_err(|_| bad("an unsigned integer"))?,
            _ => v.as_u64().ok_or_else(|| bad("an unsigned integer"))?,
        }),
        ResourceType::Float => {
            let f = match v {
                Json::String(s) => s.trim().parse::<f64>().map_err(|_| bad("a number"))?,
                _ => v.as_f64().ok_or_else(|| bad("a number"))?,
            };
            if !f.is_finite() {
                return Err(bad("a finite number"));
            }
            Value::Float(f)
        }
        ResourceType::Boolean => Value::Boolean(match v {
            Json::Bool(b) => *b,
            Json::String(s) if s == "true" => true,
            Json::String(s) if s == "false" => false,
            _ => return Err(bad("true or false")),
        }),
        ResourceType::Opaque => Value::Opaque(
            hex::decode(v.as_str().ok_or_else(|| bad("a hex string"))?)
                .map_err(|_| bad("a hex string"))?,
        ),
        ResourceType::Time => {
            let ms = match v {
                Json::String(s) => s
                    .trim()
                    .parse::<i64>()
                    .map_err(|_| bad("Unix milliseconds"))?,
                _ => v.as_i64().ok_or_else(|| bad("Unix milliseconds"))?,
            };
            Value::Time(ms.div_euclid(1000))
        }
        ResourceType::ObjectLink => {
            let o = v
                .as_object()
                .ok_or_else(|| bad("{\"objectId\", \"objectInstanceId\"}"))?;
            let id = |k: &str| {
                o.get(k)
                    .and_then(Json::as_u64)
                    .and_then(|n| u16::try_from(n).ok())
                    .ok_or_else(|| bad("{\"objectId\", \"objectInstanceId\"} of 0..=65535"))
            };
            Value::ObjectLink(ObjectLink {
                object: id("objectId")?,
                instance: id("objectInstanceId")?,
            })
        }
        ResourceType::None => {
            return Err(format!("{path} takes no value (an executable resource)"))
        }
    })
}

fn kind_of(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

fn level_name(level: PathLevel) -> &'static str {
    match level {
        PathLevel::Root => "root",
        PathLevel::Object => "object",
        PathLevel::Instance => "object instance",
        PathLevel::Resource => "resource",
        PathLevel::ResourceInstance => "resource instance",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn schema() -> Registry {
        Registry::bundled()
    }

    fn p(s: &str) -> Path {
        Path::parse(s).unwrap()
    }

    #[test]
    fn leshan_write_bodies_read_as_typed_nodes() {
        let s = schema();
        // The body Leshan's demo sends for a string resource, and one with a number.
        let n = parse_node(
            &p("/3/0/14"),
            &json!({"id":14,"kind":"singleResource","value":"+02","type":"string"}),
            &s,
        )
        .unwrap();
        assert_eq!(
            n,
            Node::Resource(Resource::Single(Value::String("+02".into())))
        );
        let n = parse_node(
            &p("/1/0/1"),
            &json!({"id":1,"kind":"singleResource","value":"300","type":"INTEGER"}),
            &s,
        )
        .unwrap();
        assert_eq!(n, Node::Resource(Resource::Single(Value::Integer(300))));
        // Numbers are tolerated, and the type may be left to the object model.
        let n = parse_node(&p("/1/0/1"), &json!({"id":1,"value":60}), &s).unwrap();
        assert_eq!(n, Node::Resource(Resource::Single(Value::Integer(60))));
        // An instance with a multiple resource.
        let n = parse_node(
            &p("/3/0"),
            &json!({"id":0,"kind":"instance","resources":[
                {"id":14,"kind":"singleResource","value":"+01","type":"STRING"},
                {"id":15,"kind":"singleResource","value":"Europe/Paris","type":"STRING"}]}),
            &s,
        )
        .unwrap();
        let Node::Instance(inst) = n else { panic!() };
        assert_eq!(inst.len(), 2);
    }

    #[test]
    fn wrong_values_and_shapes_say_what_is_wrong() {
        let s = schema();
        let e = parse_node(&p("/1/0/1"), &json!({"id":1,"value":"soon"}), &s).unwrap_err();
        assert!(e.contains("/1/0/1") && e.contains("integer"), "{e}");
        let e = parse_node(
            &p("/1/0/1"),
            &json!({"id":1,"value":"x","type":"STRING"}),
            &s,
        )
        .unwrap_err();
        assert!(e.contains("INTEGER in the object model"), "{e}");
        let e = parse_node(&p("/1/0/1"), &json!({"id":2,"value":1}), &s).unwrap_err();
        assert!(e.contains("not the path's id"), "{e}");
        let e = parse_node(&p("/3/0"), &json!({"id":0,"value":1}), &s).unwrap_err();
        assert!(e.contains("cannot be written at /3/0"), "{e}");
        let e = parse_node(&p("/3/0/7"), &json!({"id":7,"value":"1"}), &s).unwrap_err();
        assert!(e.contains("multiple-instance"), "{e}");
        let e = parse_node(&p("/3/0/1"), &json!([1]), &s).unwrap_err();
        assert!(e.contains("JSON object"), "{e}");
        assert!(parse_node(&p("/3303/0/5700"), &json!({"value":"NaN"}), &s).is_err());
    }

    #[test]
    fn read_nodes_are_written_as_leshan_does() {
        let node = Node::Resource(Resource::Single(Value::String(
            "Open Mobile Alliance".into(),
        )));
        assert_eq!(
            node_json(&p("/3/0/0"), &node),
            json!({"id":0,"kind":"singleResource","type":"STRING","value":"Open Mobile Alliance"})
        );
        let node = Node::Resource(Resource::Multiple(BTreeMap::from([
            (0, Value::Integer(3800)),
            (1, Value::Integer(5000)),
        ])));
        assert_eq!(
            node_json(&p("/3/0/7"), &node),
            json!({"id":7,"kind":"multiResource","type":"INTEGER","values":{"0":"3800","1":"5000"}})
        );
        let inst = Instance::from([(5700, Resource::Single(Value::Float(21.5)))]);
        assert_eq!(
            node_json(&p("/3303/0"), &Node::Instance(inst.clone())),
            json!({"id":0,"kind":"instance","resources":[
                {"id":5700,"kind":"singleResource","type":"FLOAT","value":"21.5"}]})
        );
        let obj = Node::Object(BTreeMap::from([(1, inst)]));
        let j = node_json(&p("/3303"), &obj);
        assert_eq!(j["kind"], "obj");
        assert_eq!(j["id"], 3303);
        assert_eq!(j["instances"][0]["id"], 1);
        let link = Value::ObjectLink(ObjectLink {
            object: 3,
            instance: 0,
        });
        assert_eq!(
            value_json(&link),
            json!({"objectId":3,"objectInstanceId":0})
        );
        assert_eq!(
            value_json(&Value::Time(1_700_000_000)),
            json!(1_700_000_000_000i64)
        );
        assert_eq!(value_json(&Value::Opaque(vec![0xca, 0xfe])), json!("cafe"));
    }

    #[test]
    fn composite_bodies_become_one_value_per_resource() {
        let s = schema();
        let v = parse_composite(
            &json!({
                "/3/0/14": {"id":14,"kind":"singleResource","value":"+02","type":"STRING"},
                "/1/0/1": {"id":1,"kind":"singleResource","value":"120","type":"INTEGER"}
            }),
            &s,
        )
        .unwrap();
        assert_eq!(v.len(), 2);
        assert!(v.contains(&(p("/1/0/1"), Some(Value::Integer(120)))));
        assert!(parse_composite(&json!({}), &s).is_err());
        assert!(parse_composite(&json!({"/3/0": {"id":0,"resources":[]}}), &s).is_err());
    }

    fn value_of(ty: u8) -> impl Strategy<Value = Value> {
        match ty % 6 {
            0 => any::<String>().prop_map(Value::String).boxed(),
            1 => any::<i64>().prop_map(Value::Integer).boxed(),
            2 => any::<u64>().prop_map(Value::UnsignedInteger).boxed(),
            3 => (-1e300f64..1e300).prop_map(Value::Float).boxed(),
            4 => any::<bool>().prop_map(Value::Boolean).boxed(),
            _ => proptest::collection::vec(any::<u8>(), 0..16)
                .prop_map(Value::Opaque)
                .boxed(),
        }
    }

    proptest! {
        /// Whatever the server writes for a value it reads back as the same value.
        #[test]
        fn values_round_trip(v in (0u8..6).prop_flat_map(value_of)) {
            let path = p("/32769/0/1");
            let back = parse_value(&value_json(&v), v.resource_type(), &path).unwrap();
            match (&v, &back) {
                (Value::Float(a), Value::Float(b)) => prop_assert!((a - b).abs() <= a.abs() * 1e-15),
                _ => prop_assert_eq!(&v, &back),
            }
        }

        /// Any JSON is a node or an error, never a panic.
        #[test]
        fn any_json_is_read_without_panic(text in "\\PC{0,200}") {
            if let Ok(json) = serde_json::from_str::<Json>(&text) {
                for path in ["/3", "/3/0", "/3/0/1", "/3/0/7/0", "/1"] {
                    let _ = parse_node(&p(path), &json, &schema());
                }
                let _ = parse_composite(&json, &schema());
            }
        }
    }
}
