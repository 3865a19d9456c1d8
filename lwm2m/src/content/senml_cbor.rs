//! application/senml+cbor (Content-Format 112): RFC 8428 §6 CBOR representation as profiled
//! by OMA LwM2M TS 1.2 Core §7.4.5, for any node, composite payloads and timestamped data.
//!
//! A pack is a CBOR array of maps keyed by the integer labels of RFC 8428 §6 (`bver` -1,
//! `bn` -2, `bt` -3, `bv` -5, `n` 0, `v` 2, `vs` 3, `vb` 4, `t` 6, `vd` 8, a byte string) and
//! LwM2M's text label `"vlo"` for Objlnk values. Records are written with their keys in the
//! order the TS examples use (`bn`, `bt`, `n`, value, `t`); integers in their shortest form,
//! floats as float32 when exact and float64 otherwise, as application/cbor writes them.
//! Decoding also accepts float16, indefinite-length items, decimal fractions (tag 4, as
//! Leshan writes `bt`) and the JSON label names as text keys.
//!
//! This file also holds the small CBOR layer the LwM2M CBOR codec shares: [`parse`] reads a
//! whole payload into an [`Item`] tree with bounded depth and size, and the `put_*` helpers
//! write numbers. minicbor does the CBOR framing; the SenML mapping is ours.
#![deny(clippy::indexing_slicing)]

use super::senml::{self, Number, RawValue, SenmlRecord};
use super::{CodecError, ContentFormat, Record};
use crate::model::{Node, Path, Schema};
use minicbor::data::{Tag, Type};
use minicbor::{Decoder, Encoder};
use std::collections::HashSet;

const FORMAT: ContentFormat = ContentFormat::SenmlCbor;

// RFC 8428 §6, Table 6.
const BVER: i128 = -1;
const BN: i128 = -2;
const BT: i128 = -3;
const BV: i128 = -5;
const N: i128 = 0;
const V: i128 = 2;
const VS: i128 = 3;
const VB: i128 = 4;
const T: i128 = 6;
const VD: i128 = 8;
/// Core §7.4.5: Objlnk values use the text label "vlo".
const VLO: &str = "vlo";

/// RFC 8949 §3.4.2: epoch-based date/time.
pub(super) const TAG_EPOCH: u64 = 1;
/// RFC 8949 §3.4.4: decimal fraction `[exponent, mantissa]`.
const TAG_DECIMAL: u64 = 4;

/// Deepest nesting of arrays, maps and tags we parse. LwM2M CBOR needs 5 maps plus an array
/// key, SenML 3 levels plus a decimal fraction; deeper input is refused instead of recursing.
const MAX_DEPTH: usize = 16;
/// Most data items one payload may hold, so that the parsed tree stays proportionate.
const MAX_ITEMS: usize = 1 << 20;

/// One CBOR data item, fully read (RFC 8949 §3). Maps keep their order and duplicate keys;
/// the format codecs decide what a duplicate means.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Item {
    /// Major types 0 and 1.
    Int(i128),
    /// Major type 7 floats of any width.
    Float(f64),
    /// Major type 2, definite or chunked.
    Bytes(Vec<u8>),
    /// Major type 3, definite or chunked.
    Text(String),
    /// Major type 4.
    Array(Vec<Item>),
    /// Major type 5, in payload order.
    Map(Vec<(Item, Item)>),
    /// Major type 6.
    Tag(u64, Box<Item>),
    /// `true` / `false`.
    Bool(bool),
    /// `null`.
    Null,
    /// `undefined`, other simple values.
    Other,
}

/// Reads a whole payload as one CBOR item; trailing bytes are an error.
pub(super) fn parse(format: ContentFormat, bytes: &[u8]) -> Result<Item, CodecError> {
    let mut d = Decoder::new(bytes);
    let mut budget = MAX_ITEMS;
    let item = read_item(&mut d, 0, &mut budget).map_err(|e| CodecError::malformed(format, e))?;
    if d.position() != bytes.len() {
        let extra = bytes.len().saturating_sub(d.position());
        return Err(CodecError::malformed(
            format,
            format!("{extra} bytes after the CBOR item"),
        ));
    }
    Ok(item)
}

fn read_item(d: &mut Decoder<'_>, depth: usize, budget: &mut usize) -> Result<Item, String> {
    *budget = budget.checked_sub(1).ok_or("too many CBOR items")?;
    let cbor = |e: minicbor::decode::Error| e.to_string();
    let nested = || {
        if depth >= MAX_DEPTH {
            Err(format!("CBOR nested deeper than {MAX_DEPTH}"))
        } else {
            Ok(depth + 1)
        }
    };
    Ok(match d.datatype().map_err(cbor)? {
        Type::Bool => Item::Bool(d.bool().map_err(cbor)?),
        Type::Null => {
            d.null().map_err(cbor)?;
            Item::Null
        }
        Type::Undefined => {
            d.undefined().map_err(cbor)?;
            Item::Other
        }
        Type::Simple => {
            d.simple().map_err(cbor)?;
            Item::Other
        }
        Type::U8
        | Type::U16
        | Type::U32
        | Type::U64
        | Type::I8
        | Type::I16
        | Type::I32
        | Type::I64
        | Type::Int => Item::Int(i128::from(d.int().map_err(cbor)?)),
        Type::F16 => Item::Float(read_f16(d)?),
        Type::F32 | Type::F64 => Item::Float(d.f64().map_err(cbor)?),
        Type::Bytes | Type::BytesIndef => {
            let mut bytes = Vec::new();
            for chunk in d.bytes_iter().map_err(cbor)? {
                bytes.extend_from_slice(chunk.map_err(cbor)?);
            }
            Item::Bytes(bytes)
        }
        Type::String | Type::StringIndef => {
            let mut text = String::new();
            for chunk in d.str_iter().map_err(cbor)? {
                text.push_str(chunk.map_err(cbor)?);
            }
            Item::Text(text)
        }
        Type::Array | Type::ArrayIndef => {
            let depth = nested()?;
            let len = d.array().map_err(cbor)?;
            let mut items = Vec::new();
            while more(d, len, items.len())? {
                items.push(read_item(d, depth, budget)?);
            }
            Item::Array(items)
        }
        Type::Map | Type::MapIndef => {
            let depth = nested()?;
            let len = d.map().map_err(cbor)?;
            let mut entries = Vec::new();
            while more(d, len, entries.len())? {
                let key = read_item(d, depth, budget)?;
                entries.push((key, read_item(d, depth, budget)?));
            }
            Item::Map(entries)
        }
        Type::Tag => {
            let depth = nested()?;
            let tag = d.tag().map_err(cbor)?.as_u64();
            Item::Tag(tag, Box::new(read_item(d, depth, budget)?))
        }
        Type::Break | Type::Unknown(_) => {
            return Err(format!("unexpected CBOR initial byte at {}", d.position()))
        }
    })
}

/// Whether a container has another element: definite ones count, indefinite ones end at a
/// break byte, which this consumes.
fn more(d: &mut Decoder<'_>, len: Option<u64>, done: usize) -> Result<bool, String> {
    match len {
        Some(n) => Ok((done as u64) < n),
        None => {
            if d.datatype().map_err(|e| e.to_string())? == Type::Break {
                d.set_position(d.position().saturating_add(1));
                Ok(false)
            } else {
                Ok(true)
            }
        }
    }
}

/// Reads a float16 (minicbor only does with its `half` feature, which we do not enable).
fn read_f16(d: &mut Decoder<'_>) -> Result<f64, String> {
    let at = d.position();
    let bits = d
        .input()
        .get(at.saturating_add(1)..at.saturating_add(3))
        .and_then(|b| <[u8; 2]>::try_from(b).ok())
        .ok_or("truncated float16")?;
    d.set_position(at.saturating_add(3));
    Ok(f16_to_f64(u16::from_be_bytes(bits)))
}

/// RFC 8949 Appendix D: the value of an IEEE 754 half-precision float.
fn f16_to_f64(h: u16) -> f64 {
    let sign = if h & 0x8000 == 0 { 1.0 } else { -1.0 };
    let exp = i32::from((h >> 10) & 0x1f);
    let mant = f64::from(h & 0x3ff);
    let pow2 = |e: i32| f64::from_bits(((e + 1023) as u64) << 52);
    sign * match exp {
        0 => mant * pow2(-24),
        31 if mant == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        e => (1024.0 + mant) * pow2(e - 25),
    }
}

/// An item as a number: an integer, a float, or a decimal fraction (RFC 8949 §3.4.4).
pub(super) fn item_number(item: &Item) -> Option<Number> {
    match item {
        Item::Int(i) => Some(Number::Int(*i)),
        Item::Float(f) => Some(Number::Float(*f)),
        Item::Tag(TAG_DECIMAL, inner) => match inner.as_ref() {
            Item::Array(parts) => match parts.as_slice() {
                [Item::Int(exp), Item::Int(mant)] => decimal(*exp, *mant),
                _ => None,
            },
            _ => None,
        },
        _ => None,
    }
}

fn decimal(exp: i128, mant: i128) -> Option<Number> {
    if !(-400..=400).contains(&exp) {
        return None;
    }
    let whole = u32::try_from(exp)
        .ok()
        .and_then(|e| 10i128.checked_pow(e))
        .and_then(|p| mant.checked_mul(p));
    match whole {
        Some(i) => Some(Number::Int(i)),
        None => format!("{mant}e{exp}").parse().ok().map(Number::Float),
    }
}

/// An item as a raw value, for LwM2M CBOR leaves: tag 1 marks Time; `null` is no value.
pub(super) fn item_value(item: Item) -> Result<Option<RawValue>, String> {
    Ok(Some(match item {
        Item::Null => return Ok(None),
        Item::Text(s) => RawValue::Text(s),
        Item::Bytes(b) => RawValue::Bytes(b),
        Item::Bool(b) => RawValue::Bool(b),
        Item::Tag(TAG_EPOCH, inner) => {
            RawValue::Time(item_number(&inner).ok_or("tag 1 without a number")?)
        }
        other => RawValue::Number(item_number(&other).ok_or("not an LwM2M value")?),
    }))
}

/// Error of writing CBOR into a `Vec`, which cannot happen; mapped instead of unwrapped.
pub(super) type WriteError = minicbor::encode::Error<core::convert::Infallible>;

/// Writes an integer in its shortest form.
pub(super) fn put_int(e: &mut Encoder<Vec<u8>>, i: i128) -> Result<(), WriteError> {
    if let Ok(u) = u64::try_from(i) {
        e.u64(u)?;
    } else if let Ok(s) = i64::try_from(i) {
        e.i64(s)?;
    } else {
        e.i128(i)?;
    }
    Ok(())
}

/// Writes a float as float32 when that is exact, else float64 (as application/cbor does).
pub(super) fn put_float(e: &mut Encoder<Vec<u8>>, f: f64) -> Result<(), WriteError> {
    let narrow = f as f32;
    if f64::from(narrow) == f {
        e.f32(narrow)?;
    } else {
        e.f64(f)?;
    }
    Ok(())
}

fn put_number(e: &mut Encoder<Vec<u8>>, n: Number) -> Result<(), WriteError> {
    match n {
        Number::Int(i) => put_int(e, i),
        Number::Float(f) => put_float(e, f),
    }
}

/// Writes a time: whole seconds as an integer, others as a float.
fn put_time(e: &mut Encoder<Vec<u8>>, t: f64) -> Result<(), WriteError> {
    if t.fract() == 0.0 && t.abs() < 9.2e18 {
        put_int(e, t as i128)
    } else {
        put_float(e, t)
    }
}

fn write_err(e: WriteError) -> CodecError {
    CodecError::malformed(FORMAT, format!("cannot encode: {e}"))
}

/// Encodes `node` (at `path`) as a SenML CBOR pack: `bn` is the node's path.
pub(super) fn encode(path: &Path, node: &Node) -> Result<Vec<u8>, CodecError> {
    let records = senml::node_records(path, node)?;
    write_pack(&senml::wire_records(&records, Some(*path))?)
}

/// Decodes a pack into the node at `path`; every record must carry a value under `path`.
pub(super) fn decode(path: &Path, bytes: &[u8], schema: &dyn Schema) -> Result<Node, CodecError> {
    senml::into_node(path, decode_records(bytes, schema)?)
}

/// Encodes composite or timestamped records in order; `bn` is their common prefix.
pub(super) fn encode_records(records: &[Record]) -> Result<Vec<u8>, CodecError> {
    write_pack(&senml::wire_records(records, None)?)
}

/// Decodes a pack into records in payload order, typed through `schema`.
pub(super) fn decode_records(bytes: &[u8], schema: &dyn Schema) -> Result<Vec<Record>, CodecError> {
    let Item::Array(items) = parse(FORMAT, bytes)? else {
        return Err(malformed("a SenML pack is a CBOR array"));
    };
    if items.len() > senml::MAX_RECORDS {
        return Err(malformed(format!(
            "more than {} records",
            senml::MAX_RECORDS
        )));
    }
    let wire = items
        .iter()
        .map(read_record)
        .collect::<Result<Vec<_>, _>>()?;
    senml::resolve(FORMAT, wire, schema)
}

fn malformed(reason: impl Into<String>) -> CodecError {
    CodecError::malformed(FORMAT, reason)
}

/// A record label: RFC 8428 integer labels, with the JSON names accepted as text too.
fn label(key: &Item) -> Result<Result<i128, &str>, CodecError> {
    Ok(match key {
        Item::Int(i) => Ok(*i),
        Item::Text(s) => match s.as_str() {
            "bver" => Ok(BVER),
            "bn" => Ok(BN),
            "bt" => Ok(BT),
            "bv" => Ok(BV),
            "n" => Ok(N),
            "v" => Ok(V),
            "vs" => Ok(VS),
            "vb" => Ok(VB),
            "t" => Ok(T),
            "vd" => Ok(VD),
            other => Err(other),
        },
        _ => return Err(malformed("a SenML label is an integer or a text string")),
    })
}

fn read_record(item: &Item) -> Result<SenmlRecord, CodecError> {
    let Item::Map(entries) = item else {
        return Err(malformed("a SenML record is a CBOR map"));
    };
    let mut rec = SenmlRecord::default();
    let mut seen = HashSet::with_capacity(entries.len());
    for (key, v) in entries {
        let label = label(key)?;
        if !seen.insert(label) {
            return Err(malformed("a label appears twice in a record"));
        }
        let text = || match v {
            Item::Text(s) => Ok(s.clone()),
            _ => Err(malformed("expected a text string")),
        };
        let number = || item_number(v).ok_or_else(|| malformed("expected a number"));
        let value = match label {
            Ok(BN) => {
                rec.base_name = Some(text()?);
                None
            }
            Ok(BT) => {
                rec.base_time = Some(number()?.as_f64());
                None
            }
            Ok(BV) => {
                rec.base_value = Some(number()?);
                None
            }
            Ok(BVER) => match v {
                Item::Int(i) => {
                    rec.version = Some(*i);
                    None
                }
                _ => return Err(malformed("bver must be an integer")),
            },
            Ok(N) => {
                rec.name = Some(text()?);
                None
            }
            Ok(T) => {
                rec.time = Some(number()?.as_f64());
                None
            }
            Ok(V) => Some(match v {
                Item::Tag(TAG_EPOCH, inner) => RawValue::Time(
                    item_number(inner).ok_or_else(|| malformed("expected a number"))?,
                ),
                _ => RawValue::Number(number()?),
            }),
            Ok(VS) => Some(RawValue::Text(text()?)),
            Ok(VB) => match v {
                Item::Bool(b) => Some(RawValue::Bool(*b)),
                _ => return Err(malformed("vb must be a boolean")),
            },
            Ok(VD) => match v {
                Item::Bytes(b) => Some(RawValue::Bytes(b.clone())),
                _ => return Err(malformed("vd must be a byte string")),
            },
            Err(VLO) => Some(RawValue::ObjectLink(text()?)),
            Err(other) if other.ends_with('_') => {
                return Err(malformed(format!(
                    "unsupported must-understand label {other:?}"
                )))
            }
            _ => None, // units, sums and extensions LwM2M does not use
        };
        if let Some(value) = value {
            if rec.value.replace(value).is_some() {
                return Err(malformed("a record carries more than one value"));
            }
        }
    }
    Ok(rec)
}

fn write_pack(records: &[SenmlRecord]) -> Result<Vec<u8>, CodecError> {
    let mut e = Encoder::new(Vec::new());
    e.array(records.len() as u64).map_err(write_err)?;
    for rec in records {
        write_record(&mut e, rec).map_err(write_err)?;
    }
    Ok(e.into_writer())
}

fn write_record(e: &mut Encoder<Vec<u8>>, rec: &SenmlRecord) -> Result<(), WriteError> {
    let fields = [
        rec.version.is_some(),
        rec.base_name.is_some(),
        rec.base_time.is_some(),
        rec.base_value.is_some(),
        rec.name.is_some(),
        rec.value.is_some(),
        rec.time.is_some(),
    ];
    e.map(fields.iter().filter(|f| **f).count() as u64)?;
    if let Some(v) = rec.version {
        put_int(e, BVER)?;
        put_int(e, v)?;
    }
    if let Some(bn) = &rec.base_name {
        put_int(e, BN)?;
        e.str(bn)?;
    }
    if let Some(bt) = rec.base_time {
        put_int(e, BT)?;
        put_time(e, bt)?;
    }
    if let Some(bv) = rec.base_value {
        put_int(e, BV)?;
        put_number(e, bv)?;
    }
    if let Some(n) = &rec.name {
        put_int(e, N)?;
        e.str(n)?;
    }
    match &rec.value {
        None => {}
        Some(RawValue::Number(n)) => {
            put_int(e, V)?;
            put_number(e, *n)?;
        }
        Some(RawValue::Time(n)) => {
            put_int(e, V)?;
            e.tag(Tag::new(TAG_EPOCH))?;
            put_number(e, *n)?;
        }
        Some(RawValue::Text(s) | RawValue::TextOrBase64(s)) => {
            put_int(e, VS)?;
            e.str(s)?;
        }
        Some(RawValue::Bool(b)) => {
            put_int(e, VB)?;
            e.bool(*b)?;
        }
        Some(RawValue::Bytes(b)) => {
            put_int(e, VD)?;
            e.bytes(b)?;
        }
        Some(RawValue::ObjectLink(s)) => {
            e.str(VLO)?;
            e.str(s)?;
        }
    }
    if let Some(t) = rec.time {
        put_int(e, T)?;
        put_time(e, t)?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)] // tests may unwrap and index
mod tests {
    use super::super::senml::test_support::*;
    use super::*;
    use crate::content::roundtrip::*;
    use crate::content::testutil::hex;
    use crate::model::{NoSchema, NodeError, ObjectLink, Resource, Value};
    use proptest::prelude::*;

    fn p(s: &str) -> Path {
        Path::parse(s).unwrap()
    }

    fn rec(path: &str, value: Option<Value>, time: Option<f64>) -> Record {
        Record {
            path: p(path),
            value,
            time,
        }
    }

    /// Core 1.1 Table 7.4.4-2 (Read /3/0) in SenML CBOR, as Wakaama's `senml_cbor_test_1`
    /// encodes it: [{-2: "/3/0/", 0: "0", 3: "Open Mobile Alliance"}, {0: "1", ...}, ...].
    const DEVICE: &str = "90a321652f332f302f00613003744f70656e204d6f62696c6520416c6c69616e6365a200613103764c69676874776569676874204d324d20436c69656e74a20061320369333435303030313233a20061330363312e30a20063362f300201a20063362f310205a20063372f3002190ed8a20063372f3102191388a20063382f3002187da20063382f3102190384a2006139021864a200623130020fa2006431312f300200a200623133021a5182428fa20062313403662b30323a3030a200623136036155";

    #[test]
    fn device_instance_matches_core_table_7_4_4_2() {
        let node = device_instance();
        assert_eq!(encode(&p("/3/0"), &node).unwrap(), hex(DEVICE));
        assert_eq!(
            decode(&p("/3/0"), &hex(DEVICE), &TestSchema::device()).unwrap(),
            node
        );
    }

    #[test]
    fn single_resource_and_opaque() {
        // Table 7.4.4-5, Wakaama `senml_cbor_test_4`: [{-2: "/3/0/0", 3: "Open Mobile Alliance"}].
        let want = hex("81a221662f332f302f3003744f70656e204d6f62696c6520416c6c69616e6365");
        let node = Node::Resource(Resource::Single(Value::String(
            "Open Mobile Alliance".into(),
        )));
        assert_eq!(encode(&p("/3/0/0"), &node).unwrap(), want);
        assert_eq!(decode(&p("/3/0/0"), &want, &NoSchema).unwrap(), node);
        // Leshan `senml_cbor_encode_opaque_resource`: [{-2: "/0/0/3", 8: h'ABCDEF'}].
        let want = hex("81a221662f302f302f330843abcdef");
        let node = Node::Resource(Resource::Single(Value::Opaque(vec![0xAB, 0xCD, 0xEF])));
        assert_eq!(encode(&p("/0/0/3"), &node).unwrap(), want);
        assert_eq!(decode(&p("/0/0/3"), &want, &NoSchema).unwrap(), node);
        // Wakaama `senml_cbor_test_23`: [{-2: "/34/0/2", 8: h'0102030405'}].
        let want = hex("81a221672f33342f302f3208450102030405");
        let node = Node::Resource(Resource::Single(Value::Opaque(vec![1, 2, 3, 4, 5])));
        assert_eq!(encode(&p("/34/0/2"), &node).unwrap(), want);
    }

    #[test]
    fn composite_examples_of_core_tables_7_4_4_6_to_8() {
        // Table 7.4.4-6, Wakaama `senml_cbor_test_5`: [{0: "/3/0/0"}, {0: "/3/0/9"}, {0: "/1/0/1"}].
        let req = hex("83a100662f332f302f30a100662f332f302f39a100662f312f302f31");
        let records = vec![
            rec("/3/0/0", None, None),
            rec("/3/0/9", None, None),
            rec("/1/0/1", None, None),
        ];
        assert_eq!(encode_records(&records).unwrap(), req);
        assert_eq!(decode_records(&req, &NoSchema).unwrap(), records);
        // Table 7.4.4-7, Wakaama `senml_cbor_test_6`.
        let resp = hex("83a200662f332f302f3003744f70656e204d6f62696c6520416c6c69616e6365a200662f332f302f3902185fa200662f312f302f31021a00015180");
        let records = vec![
            rec(
                "/3/0/0",
                Some(Value::String("Open Mobile Alliance".into())),
                None,
            ),
            rec("/3/0/9", Some(Value::Integer(95)), None),
            rec("/1/0/1", Some(Value::Integer(86400)), None),
        ];
        assert_eq!(encode_records(&records).unwrap(), resp);
        assert_eq!(
            decode_records(&resp, &TestSchema::device()).unwrap(),
            records
        );
        // Table 7.4.4-8, Wakaama `senml_cbor_test_7`.
        let write = hex("84a2006c2f333331312f302f3538353004f4a2006c2f333331312f312f3538353004f4a2006c2f333331312f322f353835310214a2006c2f333330382f302f353930300212");
        let records = decode_records(&write, &NoSchema).unwrap();
        assert_eq!(
            records[0],
            rec("/3311/0/5850", Some(Value::Boolean(false)), None)
        );
        assert_eq!(
            records[3],
            rec("/3308/0/5900", Some(Value::Integer(18)), None)
        );
        assert_eq!(encode_records(&records).unwrap(), write);
    }

    #[test]
    fn timestamped_notification_of_core_table_7_4_4_3() {
        // Wakaama `senml_cbor_test_2`:
        // [{-2: "/72/", -3: 25462634, 0: "1/2", 2: 22.4, 6: -5}, {0: "1/2", 2: 22.9, 6: -30}, ...]
        let cbor = hex("83a521642f37322f221a0184876a0063312f3202fb40366666666666660624a30063312f3202fb4036e6666666666606381da30063312f3202fb403819999999999a063831");
        let records = decode_records(&cbor, &TestSchema::device()).unwrap();
        assert_eq!(
            records,
            [
                rec("/72/1/2", Some(Value::Float(22.4)), Some(25_462_629.0)),
                rec("/72/1/2", Some(Value::Float(22.9)), Some(25_462_604.0)),
                rec("/72/1/2", Some(Value::Float(24.1)), Some(25_462_584.0)),
            ]
        );
        assert_eq!(
            decode_records(&encode_records(&records).unwrap(), &NoSchema).unwrap(),
            records
        );
    }

    #[test]
    fn decodes_leshan_decimal_fraction_base_times() {
        // Leshan `senml_cbor_encode_timestamped_nodes`: bt as 4([0, 500000004]).
        let cbor = hex("83a321662f302f302f3022c482001a1dcd6504036c53616d706c65537472696e67a321662f302f302f3122c482001a1dcd650504f4a321662f302f302f3222c482001a1dcd6506021901c8");
        let records = decode_records(&cbor, &NoSchema).unwrap();
        assert_eq!(
            records,
            [
                rec(
                    "/0/0/0",
                    Some(Value::String("SampleString".into())),
                    Some(500_000_004.0)
                ),
                rec("/0/0/1", Some(Value::Boolean(false)), Some(500_000_005.0)),
                rec("/0/0/2", Some(Value::Integer(456)), Some(500_000_006.0)),
            ]
        );
    }

    #[test]
    fn decodes_objlnk_pack_and_late_base_fields() {
        // Table 7.4.4-4 in CBOR, Wakaama `senml_cbor_test_3`: "vlo" is a text label.
        let cbor = hex("8ca321612f006836352f302f302f3063766c6f6436363a30a2006836352f302f302f3163766c6f6436363a31a2006636352f302f31036d38363133383030373535353030a2006636352f302f320201a2006636362f302f30036a6d795365727669636531a2006636362f302f31036f496e7465726e65742e31352e323334a2006636362f302f3263766c6f6436373a30a2006636362f312f30036a6d795365727669636532a2006636362f312f31036f496e7465726e65742e31352e323335a2006636362f312f3263766c6f6b36353533353a3635353335a2006636372f302f30036b38352e37362e37362e3834a2006636372f302f31036d38352e37362e3235352e323535");
        let records = decode_records(&cbor, &NoSchema).unwrap();
        assert_eq!(records.len(), 12);
        assert_eq!(
            records[1],
            rec(
                "/65/0/0/1",
                Some(Value::ObjectLink(ObjectLink {
                    object: 66,
                    instance: 1
                })),
                None
            )
        );
        assert_eq!(records[9].value, Some(Value::ObjectLink(ObjectLink::NULL)));
        // Re-encoding keeps "vlo" as a text key.
        let again = encode_records(&records).unwrap();
        assert_eq!(decode_records(&again, &NoSchema).unwrap(), records);
        // Wakaama `senml_cbor_test_10`: bn and bt after n and v in the first record.
        let cbor = hex("84a4006131021904d221662f31322f302f221a0012d687a200613302fb404c64fdf3b645a2a20063322f3002fb3fcd70a3d70a3d71a20063322f3102fbc04a0013a92a3055");
        let records = decode_records(&cbor, &NoSchema).unwrap();
        assert_eq!(
            records[0],
            rec("/12/0/1", Some(Value::Integer(1234)), Some(1_234_567.0))
        );
        assert_eq!(
            records[3],
            rec("/12/0/2/1", Some(Value::Float(-52.0006)), Some(1_234_567.0))
        );
    }

    #[test]
    fn versions_labels_and_base_values_of_wakaama_tests_18_to_22() {
        let ok = |h: &str| decode_records(&hex(h), &NoSchema).unwrap();
        // 18: bver 10 is ours; 19: bver 11 is not.
        assert_eq!(
            ok("81a3200a00672f33342f302f320201")[0].value,
            Some(Value::Integer(1))
        );
        assert!(decode_records(&hex("81a3200b00672f33342f302f320201"), &NoSchema).is_err());
        // 20: unknown labels are ignored; 21: must-understand ones are not.
        assert_eq!(
            ok("81a3647465737464676f6f6400672f33342f302f320201")[0].path,
            p("/34/0/2")
        );
        assert!(decode_records(
            &hex("81a421612f65746573745f646661696c006633342f302f320201"),
            &NoSchema
        )
        .is_err());
        // 22: base value 1 + value 1.
        assert_eq!(
            ok("81a3240100672f33342f302f320201")[0].value,
            Some(Value::Integer(2))
        );
    }

    #[test]
    fn accepts_indefinite_lengths_float16_and_text_labels() {
        // [_ {_ -2: "/34/0/2", 3: (_ "a", "b")}]
        let cbor = hex("9fbf21672f33342f302f32037f61616162ffffff");
        assert_eq!(
            decode_records(&cbor, &NoSchema).unwrap(),
            [rec("/34/0/2", Some(Value::String("ab".into())), None)]
        );
        // [{0: "/3/0/1", 2: 1.5 as float16}], [{"n": "/3/0/1", "v": -2.0 as float16}]
        assert_eq!(
            decode_records(&hex("81a200662f332f302f3102f93e00"), &NoSchema).unwrap()[0].value,
            Some(Value::Float(1.5))
        );
        assert_eq!(
            decode_records(&hex("81a2616e662f332f302f316176f9c000"), &NoSchema).unwrap()[0].value,
            Some(Value::Float(-2.0))
        );
        assert_eq!(f16_to_f64(0x0001), 5.960_464_477_539_063e-8);
        assert_eq!(f16_to_f64(0x7bff), 65504.0);
        assert_eq!(f16_to_f64(0xfc00), f64::NEG_INFINITY);
        assert!(f16_to_f64(0x7e00).is_nan());
    }

    #[test]
    fn rejects_malformed_packs() {
        for bad in [
            "a221672f33342f302f320360",       // 26: a record without the array
            "81a221672f33342f302f3203608100", // 27: a second array after the pack
            "82a221672f33342f302f320360",     // 28: array of 2 with 1 record
            "81a221672f33342f302f320360a0",   // 29: a record after the array
            "81a300662f332f302f310201020a",   // the same label twice
            "81a300662f332f302f3102010361",   // truncated text
            "81a300662f332f302f3102010361ff", // invalid UTF-8
            "81a200662f332f302f3102f9",       // truncated float16
            "81a2006f2f332f302f31",           // bad text length
            "81a20001020a",                   // name is not text
            "81a300662f332f302f31020104f5",   // two values
            "81a200662f332f302f31086161",     // vd is not bytes
            "81a100ff",                       // stray break
        ] {
            assert!(decode_records(&hex(bad), &NoSchema).is_err(), "{bad}");
        }
        // Nesting is bounded instead of recursing.
        let deep = vec![0x81; 100_000];
        assert!(decode_records(&deep, &NoSchema).is_err());
        let pathless = hex("81a100662f332f302f30");
        assert!(matches!(
            decode(&p("/3/0"), &pathless, &NoSchema),
            Err(CodecError::Node(NodeError::Missing(_)))
        ));
    }

    proptest! {
        #[test]
        fn nodes_round_trip((path, node) in arb_node()) {
            let schema = schema_for_node(&path, &node);
            let bytes = encode(&path, &node).unwrap();
            prop_assert_eq!(decode(&path, &bytes, &schema).unwrap(), node);
        }

        #[test]
        fn nodes_of_shared_generator_round_trip(
            (path, node, schema) in crate::content::testutil::arb_tree_node()
        ) {
            let bytes = encode(&path, &node).unwrap();
            prop_assert_eq!(decode(&path, &bytes, &schema).unwrap(), without_empty_children(node));
        }

        #[test]
        fn records_round_trip(records in arb_records(true)) {
            let schema = schema_for_records(&records);
            let bytes = encode_records(&records).unwrap();
            prop_assert_eq!(decode_records(&bytes, &schema).unwrap(), senml_times(&records));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            decode_arbitrary(&bytes, decode, decode_records);
        }

        #[test]
        fn mutated_packs_never_panic((path, node) in arb_node(), at in any::<usize>(), byte in any::<u8>()) {
            decode_mutated(&path, &node, at, byte, encode, decode, decode_records);
        }
    }
}
