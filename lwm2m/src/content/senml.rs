//! The SenML data model shared by application/senml+json (110) and application/senml+cbor
//! (112): RFC 8428 as profiled by OMA LwM2M TS 1.2 Core §7.4.4 (SenML JSON) and §7.4.5
//! (SenML CBOR). The LwM2M JSON (11543) and LwM2M CBOR (11544) codecs reuse its value typing
//! and its record checks, since their values are the same few JSON/CBOR kinds.
//!
//! A payload is a list of records. Decoding goes in two steps:
//! 1. the format codec maps its syntax onto [`SenmlRecord`]s (labels, JSON/CBOR kinds);
//! 2. [`resolve`] applies RFC 8428 §4.5: base name + name is the LwM2M path, base time + time
//!    is the record's time (times below 2^28 are "relative to now" in RFC 8428 §4.5.3; we keep
//!    them as given and never read a clock), base value + value for numbers; then types each
//!    value through the [`Schema`] ([`type_value`]).
//!
//! Encoding is the reverse ([`wire_records`]): the first record carries `bn`, the common
//! prefix, and the others carry names relative to it, as the TS examples and Leshan write
//! them; `bt` appears when records carry times, later records carry `t` relative to it.
//!
//! Written by hand because serde_json and minicbor only know JSON and CBOR: the SenML and
//! LwM2M meaning of the fields (name resolution, base values, typing by the object model) is
//! ours.
#![deny(clippy::indexing_slicing)]

use super::{CodecError, ContentFormat, Record};
use crate::model::{Node, NodeError, Path, ResourceType, Schema, Value, ValueError};
use std::collections::HashSet;

/// The most records one payload may carry; more is refused rather than allocated.
pub(super) const MAX_RECORDS: usize = 65_535;

/// The longest resolved name we accept. The longest LwM2M path, `/65534/65534/65534/65534`,
/// has 24 characters; the slack is for leading zeros some clients write.
pub(super) const MAX_NAME_LEN: usize = 64;

/// The SenML version this codec speaks (RFC 8428 §4.4); records announcing a later one are
/// refused, as the RFC requires.
const SENML_VERSION: i128 = 10;

/// A SenML number as the wire gave it: integers stay exact (CBOR reaches -2^64..2^64-1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Number {
    /// An integer literal or CBOR major type 0/1.
    Int(i128),
    /// A JSON number with fraction or exponent, or a CBOR float.
    Float(f64),
}

impl Number {
    /// The number as a float (integers beyond 2^53 round).
    pub(super) fn as_f64(self) -> f64 {
        match self {
            Number::Int(i) => i as f64,
            Number::Float(f) => f,
        }
    }

    /// `self + other` for base values: exact for integers, float otherwise.
    fn plus(self, other: Number) -> Number {
        match (self, other) {
            (Number::Int(a), Number::Int(b)) => match a.checked_add(b) {
                Some(sum) => Number::Int(sum),
                None => Number::Float(a as f64 + b as f64),
            },
            (a, b) => Number::Float(a.as_f64() + b.as_f64()),
        }
    }
}

/// A value before typing: the JSON/CBOR kind it arrived as.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum RawValue {
    /// SenML `v`, LwM2M JSON `v`, a CBOR number.
    Number(Number),
    /// A CBOR number under tag 1 (epoch time).
    Time(Number),
    /// SenML `vs`, a CBOR text string.
    Text(String),
    /// LwM2M JSON `sv`: a string, or base64 when the schema says Opaque (TS 1.0 §6.4.4).
    TextOrBase64(String),
    /// SenML `vb`, LwM2M JSON `bv`, CBOR true/false.
    Bool(bool),
    /// SenML `vd` (already base64-decoded in JSON), a CBOR byte string.
    Bytes(Vec<u8>),
    /// SenML `vlo`, LwM2M JSON `ov`: `"o:i"`.
    ObjectLink(String),
}

/// One SenML record with its fields as on the wire (RFC 8428 §4.1-4.3). Only the fields
/// LwM2M uses are kept; the format codecs ignore units and sums and refuse unknown
/// must-understand labels (those ending in `_`).
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct SenmlRecord {
    /// `bn`: replaces the base name for this and later records.
    pub(super) base_name: Option<String>,
    /// `bt`: replaces the base time for this and later records.
    pub(super) base_time: Option<f64>,
    /// `bv`: added to `v` of this and later records.
    pub(super) base_value: Option<Number>,
    /// `bver`: the version the sender speaks; checked, then forgotten.
    pub(super) version: Option<i128>,
    /// `n`: appended to the base name.
    pub(super) name: Option<String>,
    /// `t`: added to the base time.
    pub(super) time: Option<f64>,
    /// `v`, `vs`, `vb`, `vd` or `vlo`; `None` in requests that only name paths.
    pub(super) value: Option<RawValue>,
}

fn malformed(format: ContentFormat, reason: impl Into<String>) -> CodecError {
    CodecError::malformed(format, reason)
}

fn long_name(format: ContentFormat) -> CodecError {
    malformed(format, format!("name longer than {MAX_NAME_LEN} bytes"))
}

/// Applies RFC 8428 §4.5 resolution to wire records and types their values (step 2 above).
pub(super) fn resolve(
    format: ContentFormat,
    wire: Vec<SenmlRecord>,
    schema: &dyn Schema,
) -> Result<Vec<Record>, CodecError> {
    if wire.len() > MAX_RECORDS {
        return Err(malformed(
            format,
            format!("more than {MAX_RECORDS} records"),
        ));
    }
    let mut base_name = String::new();
    let mut base_time: Option<f64> = None;
    let mut base_value: Option<Number> = None;
    let mut entries = Vec::with_capacity(wire.len());
    for rec in wire {
        if let Some(v) = rec.version {
            if !(1..=SENML_VERSION).contains(&v) {
                return Err(malformed(format, format!("unsupported SenML version {v}")));
            }
        }
        // Length checks come before concatenating, so a huge `bn` is not copied per record.
        let too_long = |s: &Option<String>| s.as_ref().is_some_and(|s| s.len() > MAX_NAME_LEN);
        if too_long(&rec.base_name) || too_long(&rec.name) {
            return Err(long_name(format));
        }
        if let Some(bn) = rec.base_name {
            base_name = bn;
        }
        if rec.base_time.is_some() {
            base_time = rec.base_time;
        }
        if rec.base_value.is_some() {
            base_value = rec.base_value;
        }
        let name = format!("{base_name}{}", rec.name.as_deref().unwrap_or(""));
        if name.is_empty() {
            return Err(malformed(format, "a record has no name"));
        }
        if name.len() > MAX_NAME_LEN {
            return Err(long_name(format));
        }
        let path = Path::parse(&name)?;
        let time = match (base_time, rec.time) {
            (None, None) => None,
            (bt, t) => Some(bt.unwrap_or(0.0) + t.unwrap_or(0.0)),
        };
        let value = match (rec.value, base_value) {
            (Some(RawValue::Number(v)), Some(bv)) => Some(RawValue::Number(bv.plus(v))),
            (value, _) => value,
        };
        entries.push((path, value, time));
    }
    check_and_type(format, entries, schema)
}

/// The checks every record-based decoder shares: record count, finite times, no path twice
/// at the same time; then types each value through the schema.
pub(super) fn check_and_type(
    format: ContentFormat,
    entries: Vec<(Path, Option<RawValue>, Option<f64>)>,
    schema: &dyn Schema,
) -> Result<Vec<Record>, CodecError> {
    if entries.len() > MAX_RECORDS {
        return Err(malformed(
            format,
            format!("more than {MAX_RECORDS} records"),
        ));
    }
    let mut seen = HashSet::with_capacity(entries.len());
    let mut out = Vec::with_capacity(entries.len());
    for (path, raw, time) in entries {
        if time.is_some_and(|t| !t.is_finite()) {
            return Err(malformed(
                format,
                format!("time of {path} is not a finite number"),
            ));
        }
        if !seen.insert((path, time.map(time_key))) {
            return Err(NodeError::Conflict(path).into());
        }
        let value = raw.map(|raw| type_value(&path, raw, schema)).transpose()?;
        out.push(Record { path, value, time });
    }
    Ok(out)
}

/// The identity of a time for duplicate detection: 0.0 and -0.0 are the same instant.
pub(super) fn time_key(t: f64) -> u64 {
    (t + 0.0).to_bits()
}

/// Types a raw value for the resource at `path`: numbers become the schema's Integer,
/// Unsigned Integer, Float or Time ([`Value::coerce`]); text becomes String, Corelnk or, for
/// an Objlnk resource, a parsed link. Resources the schema does not know keep the natural
/// type: Integer for integers (Unsigned Integer above `i64::MAX`), Float, String, Boolean,
/// Opaque, Objlnk, Time for CBOR tag 1.
pub(super) fn type_value(
    path: &Path,
    raw: RawValue,
    schema: &dyn Schema,
) -> Result<Value, CodecError> {
    let (Some(object), Some(resource)) = (path.object_id(), path.resource_id()) else {
        return Err(NodeError::NotAValuePath(*path).into());
    };
    let ty = schema.resource_type(object, resource);
    let natural = match raw {
        RawValue::Number(Number::Int(i)) => int_value(i)?,
        RawValue::Number(Number::Float(f)) => Value::Float(f),
        RawValue::Time(n) => Value::Time(time_value(n)?),
        RawValue::Text(s) => text_value(s, ty)?,
        RawValue::TextOrBase64(s) if ty == Some(ResourceType::Opaque) => {
            Value::Opaque(decode_base64(&s).ok_or_else(|| ValueError::InvalidText {
                ty: ResourceType::Opaque,
                text: s.chars().take(64).collect(),
            })?)
        }
        RawValue::TextOrBase64(s) => text_value(s, ty)?,
        RawValue::Bool(b) => Value::Boolean(b),
        RawValue::Bytes(b) => Value::Opaque(b),
        RawValue::ObjectLink(s) => Value::from_text(ResourceType::ObjectLink, &s)?,
    };
    Ok(match ty {
        Some(ty) => natural.coerce(ty)?,
        None => natural,
    })
}

fn int_value(i: i128) -> Result<Value, ValueError> {
    if let Ok(v) = i64::try_from(i) {
        return Ok(Value::Integer(v));
    }
    u64::try_from(i)
        .map(Value::UnsignedInteger)
        .map_err(|_| ValueError::InvalidText {
            ty: ResourceType::Integer,
            text: i.to_string(),
        })
}

fn time_value(n: Number) -> Result<i64, ValueError> {
    let bad = || ValueError::InvalidText {
        ty: ResourceType::Time,
        text: format!("{n:?}"),
    };
    match n {
        Number::Int(i) => i64::try_from(i).map_err(|_| bad()),
        Number::Float(f) => match Value::Float(f).coerce(ResourceType::Time) {
            Ok(Value::Time(t)) => Ok(t),
            _ => Err(bad()),
        },
    }
}

fn text_value(s: String, ty: Option<ResourceType>) -> Result<Value, ValueError> {
    match ty {
        Some(ResourceType::ObjectLink) => Value::from_text(ResourceType::ObjectLink, &s),
        _ => Ok(Value::String(s)),
    }
}

/// Decodes base64 leniently: with or without padding, URL-safe or standard alphabet (RFC
/// 8428 §5 asks for base64url without padding; LwM2M JSON 1.0 senders use the standard one).
pub(super) fn decode_base64(s: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    use base64::Engine;
    let s = s.trim_end_matches('=');
    URL_SAFE_NO_PAD
        .decode(s)
        .or_else(|_| STANDARD_NO_PAD.decode(s))
        .ok()
}

/// The raw SenML form of a value (Core §7.4.4): numbers for Integer, Unsigned Integer, Float
/// and Time, `vs` for String and Corelnk, `vb`, `vd`, `vlo` for the rest.
pub(super) fn raw_of(value: &Value) -> RawValue {
    match value {
        Value::String(s) | Value::CoreLink(s) => RawValue::Text(s.clone()),
        Value::Integer(i) | Value::Time(i) => RawValue::Number(Number::Int(i128::from(*i))),
        Value::UnsignedInteger(u) => RawValue::Number(Number::Int(i128::from(*u))),
        Value::Float(f) => RawValue::Number(Number::Float(*f)),
        Value::Boolean(b) => RawValue::Bool(*b),
        Value::Opaque(b) => RawValue::Bytes(b.clone()),
        Value::ObjectLink(l) => RawValue::ObjectLink(l.to_string()),
    }
}

/// The values of `node` (at `path`) as records without times, in path order.
pub(super) fn node_records(path: &Path, node: &Node) -> Result<Vec<Record>, CodecError> {
    Ok(node
        .flatten(path)?
        .into_iter()
        .map(|(path, value)| Record {
            path,
            value: Some(value),
            time: None,
        })
        .collect())
}

/// Assembles the node at `path` from decoded records (`decode` of every record format):
/// every record must carry a value and lie under `path`; times are dropped.
pub(super) fn into_node(path: &Path, records: Vec<Record>) -> Result<Node, CodecError> {
    let mut values = Vec::with_capacity(records.len());
    for rec in records {
        let value = rec.value.ok_or(NodeError::Missing(rec.path))?;
        values.push((rec.path, value));
    }
    Ok(Node::from_values(path, values)?)
}

/// The longest path both `a` and `b` start with.
fn common_prefix(a: &Path, b: &Path) -> Path {
    let mut prefix = Path::ROOT;
    for (x, y) in a.ids().iter().zip(b.ids()) {
        match prefix.child(*x) {
            Ok(next) if x == y => prefix = next,
            _ => break,
        }
    }
    prefix
}

/// Splits paths into a base name and names relative to it, as Leshan and the TS examples
/// write them: `prefix` (the node's path, or the common prefix of all paths when `None`)
/// becomes the base name `/3/0/` with names `0`, `7/1`; a single value at the prefix itself
/// gets the base name `/3/0/0` and no name; a root prefix gives no base name and absolute
/// names `/3/0/0`.
pub(super) fn split_names(
    paths: &[Path],
    prefix: Option<Path>,
) -> (Option<String>, Vec<Option<String>>) {
    let Some(first) = paths.first() else {
        return (None, Vec::new());
    };
    let prefix = prefix.unwrap_or_else(|| paths.iter().fold(*first, |p, q| common_prefix(&p, q)));
    if prefix.is_root() {
        return (None, paths.iter().map(|p| Some(p.to_string())).collect());
    }
    if paths.iter().all(|p| *p == prefix) {
        return (Some(prefix.to_string()), vec![None; paths.len()]);
    }
    let depth = prefix.ids().len();
    let names = paths
        .iter()
        .map(|p| {
            let rest = p.ids().get(depth..).unwrap_or(&[]);
            (!rest.is_empty()).then(|| {
                rest.iter()
                    .map(u16::to_string)
                    .collect::<Vec<_>>()
                    .join("/")
            })
        })
        .collect();
    (Some(format!("{prefix}/")), names)
}

/// Encodes records as SenML wire records (the reverse of [`resolve`]): `bn` on the first,
/// names per [`split_names`]; the first timed record carries `bt`, later ones `t` relative to
/// it, or a new `bt` when the difference would not add back exactly. SenML base times
/// persist (RFC 8428 §4.5.3), so an untimed record after a timed one is written with
/// `bt` 0, SenML's "now", and decodes with time 0.
pub(super) fn wire_records(
    records: &[Record],
    prefix: Option<Path>,
) -> Result<Vec<SenmlRecord>, CodecError> {
    let paths: Vec<Path> = records.iter().map(|r| r.path).collect();
    let (base_name, names) = split_names(&paths, prefix);
    let mut out = Vec::with_capacity(records.len());
    let mut base: Option<f64> = None;
    for (i, (rec, name)) in records.iter().zip(names).enumerate() {
        let mut wire = SenmlRecord {
            base_name: if i == 0 { base_name.clone() } else { None },
            name,
            value: rec.value.as_ref().map(raw_of),
            ..SenmlRecord::default()
        };
        match (rec.time, base) {
            (Some(t), _) if !t.is_finite() => {
                return Err(ValueError::InvalidText {
                    ty: ResourceType::Time,
                    text: t.to_string(),
                }
                .into());
            }
            (None, None) => {}
            (None, Some(b)) => {
                if b != 0.0 {
                    wire.base_time = Some(0.0);
                    base = Some(0.0);
                }
            }
            (Some(t), None) => {
                wire.base_time = Some(t);
                base = Some(t);
            }
            (Some(t), Some(b)) if t == b => {}
            (Some(t), Some(b)) => {
                let offset = t - b;
                if offset.is_finite() && b + offset == t {
                    wire.time = Some(offset);
                } else {
                    wire.base_time = Some(t);
                    base = Some(t);
                }
            }
        }
        out.push(wire);
    }
    Ok(out)
}

/// Test helpers shared by the record-format test modules.
#[cfg(test)]
pub(super) mod test_support;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)] // tests may unwrap and index
mod tests {
    use super::test_support::TestSchema;
    use super::*;
    use crate::model::NoSchema;

    const F: ContentFormat = ContentFormat::SenmlJson;

    fn rec(bn: Option<&str>, n: Option<&str>, value: Option<RawValue>) -> SenmlRecord {
        SenmlRecord {
            base_name: bn.map(Into::into),
            name: n.map(Into::into),
            value,
            ..SenmlRecord::default()
        }
    }

    #[test]
    fn base_name_persists_and_concatenates() {
        let wire = vec![
            rec(Some("/3/0/"), Some("0"), Some(RawValue::Text("a".into()))),
            rec(None, Some("7/1"), Some(RawValue::Number(Number::Int(5)))),
            rec(Some("/2/3"), Some("/0"), None),
            rec(Some(""), Some("/67/0/00"), None),
        ];
        let out = resolve(F, wire, &NoSchema).unwrap();
        let paths: Vec<_> = out.iter().map(|r| r.path.to_string()).collect();
        assert_eq!(paths, ["/3/0/0", "/3/0/7/1", "/2/3/0", "/67/0/0"]);
        assert_eq!(out[1].value, Some(Value::Integer(5)));
        assert_eq!(out[2].value, None);
    }

    #[test]
    fn base_time_plus_time_kept_as_given() {
        let mut a = rec(Some("/72/"), Some("1/2"), None);
        a.base_time = Some(25_462_634.0);
        a.time = Some(-5.0);
        let mut b = rec(None, Some("1/2"), None);
        b.time = Some(-30.0);
        let c = rec(None, Some("1/3"), None);
        let out = resolve(F, vec![a, b, c], &NoSchema).unwrap();
        let times: Vec<_> = out.iter().map(|r| r.time).collect();
        assert_eq!(
            times,
            [Some(25_462_629.0), Some(25_462_604.0), Some(25_462_634.0)]
        );
    }

    #[test]
    fn base_value_adds_to_numbers() {
        let mut a = rec(
            None,
            Some("/34/0/2"),
            Some(RawValue::Number(Number::Int(1))),
        );
        a.base_value = Some(Number::Int(1));
        let out = resolve(F, vec![a], &NoSchema).unwrap();
        assert_eq!(out[0].value, Some(Value::Integer(2)));
    }

    #[test]
    fn rejects_unnamed_long_duplicate_and_future_version() {
        assert!(resolve(F, vec![rec(None, None, None)], &NoSchema).is_err());
        let long = format!("/3/0/{}", "0".repeat(80));
        assert!(resolve(F, vec![rec(None, Some(&long), None)], &NoSchema).is_err());
        // A huge base name is refused before it is copied into every record's name.
        let huge = "/".repeat(1 << 20);
        let many = (0..1000).map(|_| rec(None, Some("1"), None));
        let wire = std::iter::once(rec(Some(&huge), Some("1"), None))
            .chain(many)
            .collect();
        assert!(resolve(F, wire, &NoSchema).is_err());
        let dup = vec![
            rec(None, Some("/3/0/1"), None),
            rec(None, Some("/3/0/1"), None),
        ];
        assert!(matches!(
            resolve(F, dup, &NoSchema),
            Err(CodecError::Node(NodeError::Conflict(_)))
        ));
        let mut v = rec(None, Some("/3/0/1"), None);
        v.version = Some(11);
        assert!(resolve(F, vec![v], &NoSchema).is_err());
        let bad_path = vec![rec(Some("/3/0/"), Some("/1"), None)];
        assert!(matches!(
            resolve(F, bad_path, &NoSchema),
            Err(CodecError::Path(_))
        ));
    }

    #[test]
    fn typing_follows_schema_and_keeps_unknown_raw() {
        let s = TestSchema::device();
        let p = |s: &str| Path::parse(s).unwrap();
        let num = |n| RawValue::Number(n);
        assert_eq!(
            type_value(&p("/3/0/13"), num(Number::Int(5)), &s).unwrap(),
            Value::Time(5)
        );
        assert_eq!(
            type_value(&p("/72/0/2/0"), num(Number::Int(5)), &s).unwrap(),
            Value::Float(5.0)
        );
        assert!(type_value(&p("/3/0/9"), num(Number::Float(1.5)), &s).is_err());
        assert!(type_value(&p("/3/0/9"), RawValue::Text("1".into()), &s).is_err());
        assert_eq!(
            type_value(
                &p("/9/0/1"),
                num(Number::Int(i128::from(u64::MAX))),
                &NoSchema
            )
            .unwrap(),
            Value::UnsignedInteger(u64::MAX)
        );
        assert!(type_value(&p("/9/0/1"), num(Number::Int(-(1 << 70))), &NoSchema).is_err());
        assert_eq!(
            type_value(&p("/9/0/1"), num(Number::Float(2.0)), &NoSchema).unwrap(),
            Value::Float(2.0)
        );
        assert!(type_value(&p("/9/0"), num(Number::Int(1)), &NoSchema).is_err());
        let b64 = RawValue::TextOrBase64("AQIDBAU=".into());
        assert_eq!(
            type_value(&p("/9/0/1"), b64.clone(), &NoSchema).unwrap(),
            Value::String("AQIDBAU=".into())
        );
        let opaque = TestSchema::with(&[(9, 1, ResourceType::Opaque, false)]);
        assert_eq!(
            type_value(&p("/9/0/1"), b64, &opaque).unwrap(),
            Value::Opaque(vec![1, 2, 3, 4, 5])
        );
    }

    #[test]
    fn names_split_like_leshan() {
        let p = |s: &str| Path::parse(s).unwrap();
        let (bn, n) = split_names(&[p("/3/0/0"), p("/3/0/7/1")], Some(p("/3/0")));
        assert_eq!(bn.as_deref(), Some("/3/0/"));
        assert_eq!(n, [Some("0".to_string()), Some("7/1".to_string())]);
        let (bn, n) = split_names(&[p("/3/0/0")], Some(p("/3/0/0")));
        assert_eq!((bn.as_deref(), n), (Some("/3/0/0"), vec![None]));
        let (bn, n) = split_names(&[p("/3/0/0"), p("/1/0/1")], None);
        assert_eq!(bn, None);
        assert_eq!(n[1].as_deref(), Some("/1/0/1"));
        let (bn, _) = split_names(&[p("/3/0/0"), p("/3/0/9")], None);
        assert_eq!(bn.as_deref(), Some("/3/0/"));
    }

    #[test]
    fn times_encode_relative_to_first_and_untimed_after_timed_is_now() {
        let p = Path::parse("/1/0/1").unwrap();
        let r = |time| Record {
            path: p,
            value: None,
            time,
        };
        let wire = wire_records(
            &[
                r(None),
                r(Some(100.0)),
                r(Some(90.0)),
                r(None),
                r(Some(0.1)),
            ],
            None,
        )
        .unwrap();
        let times: Vec<_> = wire.iter().map(|w| (w.base_time, w.time)).collect();
        assert_eq!(
            times,
            [
                (None, None),
                (Some(100.0), None),
                (None, Some(-10.0)),
                (Some(0.0), None),
                (None, Some(0.1))
            ]
        );
        assert!(wire_records(&[r(Some(f64::NAN))], None).is_err());
    }
}
