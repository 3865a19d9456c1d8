//! Values both ways: an LwM2M value as JSON with its type name (Core Appendix C), and a JSON
//! value read as the type a resource has, with the leniencies EMQX allows.
use base64::engine::{general_purpose, DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use lwm2m::model::{ResourceType, Value};
use serde_json::Value as Json;

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
/// `kind` (from [`Registry::resource`](lwm2m::model::Registry::resource)), else guessed from the JSON (a boolean, an integer,
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

pub(super) fn typed_value(
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
    hex::decode(s).map_err(|_| {
        if s.len().is_multiple_of(2) {
            format!("not hex: {:?}", truncate(s))
        } else {
            "a hex value needs an even number of digits".into()
        }
    })
}

/// A short description of a JSON value for error messages.
pub(super) fn describe(json: &Json) -> String {
    match json {
        Json::Null => "null".into(),
        Json::Bool(b) => b.to_string(),
        Json::Number(n) => n.to_string(),
        Json::String(s) => format!("{:?}", truncate(s)),
        Json::Array(_) => "an array".into(),
        Json::Object(_) => "an object".into(),
    }
}

pub(super) fn truncate(s: &str) -> String {
    const MAX: usize = 40;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(MAX).collect();
        t.push('…');
        t
    }
}
