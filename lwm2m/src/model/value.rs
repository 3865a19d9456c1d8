//! Resource values and data types (OMA LwM2M TS 1.2 Core Appendix C, "Data Types"), with
//! their text form (Core §7.4.1, text/plain) and the conversions decoders need when a format
//! carries less type information than the object model (Core §7.4).
use std::fmt;

/// The data type of a resource, as an object definition declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceType {
    /// UTF-8 string.
    String,
    /// Signed integer, up to 64 bits.
    Integer,
    /// Unsigned integer, up to 64 bits (LwM2M 1.1+).
    UnsignedInteger,
    /// IEEE 754 float, 32 or 64 bits.
    Float,
    /// Boolean.
    Boolean,
    /// Opaque bytes.
    Opaque,
    /// Unix time in seconds, signed.
    Time,
    /// Object link `o:i`.
    ObjectLink,
    /// CoRE link (RFC 6690) as a string (LwM2M 1.1+).
    CoreLink,
    /// Executable resources carry no value.
    None,
}

impl ResourceType {
    /// The type for a DDF `<Type>` string (`Integer`, `Unsigned Integer`, `Objlnk`, ...);
    /// an empty string is `None` (executable).
    pub fn from_ddf(s: &str) -> Option<Self> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "string" => ResourceType::String,
            "integer" => ResourceType::Integer,
            "unsigned integer" | "unsignedinteger" => ResourceType::UnsignedInteger,
            "float" => ResourceType::Float,
            "boolean" => ResourceType::Boolean,
            "opaque" => ResourceType::Opaque,
            "time" => ResourceType::Time,
            "objlnk" => ResourceType::ObjectLink,
            "corelnk" => ResourceType::CoreLink,
            "" | "none" => ResourceType::None,
            _ => return None,
        })
    }
}

/// An object link: object id and instance id (Core Appendix C, "Objlnk").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectLink {
    /// Object id; 65535 with instance 65535 is the null link.
    pub object: u16,
    /// Object instance id.
    pub instance: u16,
}

impl ObjectLink {
    /// The null link `65535:65535`.
    pub const NULL: ObjectLink = ObjectLink {
        object: u16::MAX,
        instance: u16::MAX,
    };
}

impl fmt::Display for ObjectLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.object, self.instance)
    }
}

/// One resource value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// String.
    String(String),
    /// Signed integer.
    Integer(i64),
    /// Unsigned integer.
    UnsignedInteger(u64),
    /// Float.
    Float(f64),
    /// Boolean.
    Boolean(bool),
    /// Opaque bytes.
    Opaque(Vec<u8>),
    /// Unix time in seconds.
    Time(i64),
    /// Object link.
    ObjectLink(ObjectLink),
    /// CoRE link string.
    CoreLink(String),
}

/// Why a value could not be read or converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValueError {
    /// The text is not a valid value of the type.
    #[error("{text:?} is not a valid {ty:?}")]
    InvalidText {
        /// The expected type.
        ty: ResourceType,
        /// The text, truncated.
        text: String,
    },
    /// The value cannot be represented as the type.
    #[error("a {from:?} value cannot be read as {to:?}")]
    Incompatible {
        /// The value's type.
        from: ResourceType,
        /// The wanted type.
        to: ResourceType,
    },
}

impl Value {
    /// The value's type.
    pub fn resource_type(&self) -> ResourceType {
        match self {
            Value::String(_) => ResourceType::String,
            Value::Integer(_) => ResourceType::Integer,
            Value::UnsignedInteger(_) => ResourceType::UnsignedInteger,
            Value::Float(_) => ResourceType::Float,
            Value::Boolean(_) => ResourceType::Boolean,
            Value::Opaque(_) => ResourceType::Opaque,
            Value::Time(_) => ResourceType::Time,
            Value::ObjectLink(_) => ResourceType::ObjectLink,
            Value::CoreLink(_) => ResourceType::CoreLink,
        }
    }

    /// The text/plain form (Core §7.4.1). Opaque values have none (they travel as
    /// application/octet-stream) and give `None`.
    pub fn to_text(&self) -> Option<String> {
        Some(match self {
            Value::String(s) | Value::CoreLink(s) => s.clone(),
            Value::Integer(v) | Value::Time(v) => v.to_string(),
            Value::UnsignedInteger(v) => v.to_string(),
            Value::Float(v) => format_float(*v),
            Value::Boolean(b) => if *b { "1" } else { "0" }.to_string(),
            Value::ObjectLink(l) => l.to_string(),
            Value::Opaque(_) => return None,
        })
    }

    /// Reads the text/plain form of a value of type `ty`.
    pub fn from_text(ty: ResourceType, text: &str) -> Result<Value, ValueError> {
        let bad = || ValueError::InvalidText {
            ty,
            text: text.chars().take(64).collect(),
        };
        Ok(match ty {
            ResourceType::String => Value::String(text.to_string()),
            ResourceType::CoreLink => Value::CoreLink(text.to_string()),
            ResourceType::Integer => Value::Integer(text.trim().parse().map_err(|_| bad())?),
            ResourceType::Time => Value::Time(text.trim().parse().map_err(|_| bad())?),
            ResourceType::UnsignedInteger => {
                Value::UnsignedInteger(text.trim().parse().map_err(|_| bad())?)
            }
            ResourceType::Float => {
                let v: f64 = text.trim().parse().map_err(|_| bad())?;
                if !v.is_finite() {
                    return Err(bad());
                }
                Value::Float(v)
            }
            ResourceType::Boolean => match text.trim() {
                "1" | "true" => Value::Boolean(true),
                "0" | "false" => Value::Boolean(false),
                _ => return Err(bad()),
            },
            ResourceType::ObjectLink => {
                let (o, i) = text.trim().split_once(':').ok_or_else(bad)?;
                Value::ObjectLink(ObjectLink {
                    object: o.parse().map_err(|_| bad())?,
                    instance: i.parse().map_err(|_| bad())?,
                })
            }
            ResourceType::Opaque | ResourceType::None => return Err(bad()),
        })
    }

    /// Converts a value to type `ty` where no information is lost: a format that only knows
    /// "number" (SenML, JSON) gives a Float that the model says is an Integer, a Time, etc.
    pub fn coerce(self, ty: ResourceType) -> Result<Value, ValueError> {
        let from = self.resource_type();
        if from == ty {
            return Ok(self);
        }
        let incompatible = ValueError::Incompatible { from, to: ty };
        let as_i64 = |v: &Value| -> Option<i64> {
            match v {
                Value::Integer(i) | Value::Time(i) => Some(*i),
                Value::UnsignedInteger(u) => i64::try_from(*u).ok(),
                Value::Float(f)
                    if f.fract() == 0.0
                        && *f >= -9.223_372_036_854_776e18
                        && *f < 9.223_372_036_854_776e18 =>
                {
                    Some(*f as i64)
                }
                _ => None,
            }
        };
        Ok(match ty {
            ResourceType::Integer => Value::Integer(as_i64(&self).ok_or(incompatible)?),
            ResourceType::Time => Value::Time(as_i64(&self).ok_or(incompatible)?),
            ResourceType::UnsignedInteger => match self {
                Value::Float(f)
                    if f.fract() == 0.0 && (0.0..1.844_674_407_370_955_2e19).contains(&f) =>
                {
                    Value::UnsignedInteger(f as u64)
                }
                other => Value::UnsignedInteger(
                    as_i64(&other)
                        .and_then(|i| u64::try_from(i).ok())
                        .ok_or(incompatible)?,
                ),
            },
            ResourceType::Float => match self {
                Value::Integer(i) | Value::Time(i) => Value::Float(i as f64),
                Value::UnsignedInteger(u) => Value::Float(u as f64),
                _ => return Err(incompatible),
            },
            ResourceType::String => match self {
                Value::CoreLink(s) => Value::String(s),
                _ => return Err(incompatible),
            },
            ResourceType::CoreLink => match self {
                Value::String(s) => Value::CoreLink(s),
                _ => return Err(incompatible),
            },
            ResourceType::Boolean
            | ResourceType::Opaque
            | ResourceType::ObjectLink
            | ResourceType::None => return Err(incompatible),
        })
    }
}

/// Decimal text for a float: integral values without a fraction (`20`), others as Rust
/// prints them shortest-exact (`20.5`, `0.1`).
pub fn format_float(v: f64) -> String {
    format!("{v}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_forms_follow_core_7_4_1() {
        assert_eq!(Value::Boolean(true).to_text().as_deref(), Some("1"));
        assert_eq!(Value::Float(22.5).to_text().as_deref(), Some("22.5"));
        assert_eq!(
            Value::ObjectLink(ObjectLink {
                object: 3,
                instance: 0
            })
            .to_text()
            .as_deref(),
            Some("3:0")
        );
        assert_eq!(Value::Opaque(vec![1]).to_text(), None);
        assert_eq!(
            Value::from_text(ResourceType::Boolean, "0"),
            Ok(Value::Boolean(false))
        );
        assert_eq!(
            Value::from_text(ResourceType::Time, "1700000000"),
            Ok(Value::Time(1_700_000_000))
        );
        assert!(Value::from_text(ResourceType::Integer, "12a").is_err());
        assert!(Value::from_text(ResourceType::Float, "NaN").is_err());
        assert!(Value::from_text(ResourceType::ObjectLink, "3").is_err());
    }

    #[test]
    fn coercion_keeps_exact_values_only() {
        assert_eq!(
            Value::Float(3.0).coerce(ResourceType::Integer),
            Ok(Value::Integer(3))
        );
        assert!(Value::Float(3.5).coerce(ResourceType::Integer).is_err());
        assert_eq!(
            Value::Integer(7).coerce(ResourceType::Float),
            Ok(Value::Float(7.0))
        );
        assert!(Value::Integer(-1)
            .coerce(ResourceType::UnsignedInteger)
            .is_err());
        assert_eq!(
            Value::Float(1e3).coerce(ResourceType::Time),
            Ok(Value::Time(1000))
        );
        assert!(Value::Boolean(true).coerce(ResourceType::Integer).is_err());
    }

    #[test]
    fn ddf_type_names() {
        assert_eq!(
            ResourceType::from_ddf("Unsigned Integer"),
            Some(ResourceType::UnsignedInteger)
        );
        assert_eq!(
            ResourceType::from_ddf("Objlnk"),
            Some(ResourceType::ObjectLink)
        );
        assert_eq!(ResourceType::from_ddf(""), Some(ResourceType::None));
        assert_eq!(ResourceType::from_ddf("Quaternion"), None);
    }
}
