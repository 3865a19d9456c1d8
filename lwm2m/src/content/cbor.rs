//! application/cbor (Content-Format 60): one resource or resource-instance value as a single
//! CBOR data item (OMA LwM2M TS 1.2 Core §7.4.6, and the "CBOR" column of Appendix C's data
//! type mapping; RFC 8949 for CBOR itself).
//!
//! | LwM2M type | encoded as | also decoded from |
//! | --- | --- | --- |
//! | Integer | major type 0/1 integer | |
//! | Unsigned Integer | major type 0 integer | |
//! | Float | float32 when exact, else float64 | float16 |
//! | Boolean | `true` / `false` | |
//! | String, Corelnk | text string | indefinite-length text |
//! | Opaque | byte string | indefinite-length bytes |
//! | Time | tag 1 (epoch seconds) + integer, as Leshan sends it | untagged integer; tag 1 + float; tag 0 + RFC 3339 string |
//! | Objlnk | text string `"o:i"` | |
//!
//! Decoding is typed by the [`Schema`]: the CBOR item is read in its natural type and then
//! converted with [`Value::coerce`] (plus `"o:i"` parsing for Objlnk), so an integer sent for
//! a Float resource is accepted but 1.5 sent for an Integer is not. Unknown resources keep the
//! natural type: tag 0/1 items become Time, integers Integer (or Unsigned Integer above
//! `i64::MAX`), text String, bytes Opaque.
//!
//! minicbor does the CBOR framing. Two pieces are by hand: float16, which minicbor only reads
//! with its `half` feature (RFC 8949 Appendix D's conversion is ten lines), and the RFC 3339
//! date of tag 0, which needs no calendar crate for the one form RFC 3339 allows.
#![deny(clippy::indexing_slicing)]

use super::text::single_node;
use super::{CodecError, ContentFormat};
use crate::model::{Node, Path, ResourceType, Schema, Value};
use crate::reader::Reader;
use minicbor::data::{Tag, Type};
use minicbor::{Decoder, Encoder};

const FORMAT: ContentFormat = ContentFormat::Cbor;

/// RFC 8949 §3.4.1: standard date/time string.
const TAG_DATE_TIME: u64 = 0;
/// RFC 8949 §3.4.2: epoch-based date/time.
const TAG_EPOCH: u64 = 1;

fn malformed(reason: impl Into<String>) -> CodecError {
    CodecError::malformed(FORMAT, reason)
}

/// Encodes a single resource or resource instance as one CBOR item.
pub(super) fn encode(node: &Node) -> Result<Vec<u8>, CodecError> {
    let value = node.value().ok_or(CodecError::Unsupported {
        format: FORMAT,
        level: node.level(),
    })?;
    let mut e = Encoder::new(Vec::new());
    let written = match value {
        Value::Integer(i) => e.i64(*i),
        Value::UnsignedInteger(u) => e.u64(*u),
        Value::Float(f) => {
            let narrow = *f as f32;
            if f64::from(narrow) == *f {
                e.f32(narrow)
            } else {
                e.f64(*f)
            }
        }
        Value::Boolean(b) => e.bool(*b),
        Value::String(s) | Value::CoreLink(s) => e.str(s),
        Value::Opaque(b) => e.bytes(b),
        Value::Time(t) => e.tag(Tag::new(TAG_EPOCH)).and_then(|e| e.i64(*t)),
        Value::ObjectLink(l) => e.str(&l.to_string()),
    };
    // Writing to a Vec cannot fail; the mapping only avoids an unwrap.
    written.map_err(|err| malformed(format!("cannot encode: {err}")))?;
    Ok(e.into_writer())
}

/// Decodes one CBOR item as the value of the resource or resource instance at `path`.
pub(super) fn decode(path: &Path, bytes: &[u8], schema: &dyn Schema) -> Result<Node, CodecError> {
    let (object, resource) = super::single_value_target(FORMAT, path, schema)?;
    let mut d = Decoder::new(bytes);
    let natural = read_item(&mut d)?;
    if d.position() != bytes.len() {
        return Err(malformed(format!(
            "{} bytes after the CBOR item",
            bytes.len().saturating_sub(d.position())
        )));
    }
    let value = match schema.resource_type(object, resource) {
        None | Some(ResourceType::None) => natural,
        Some(ResourceType::ObjectLink) => match natural {
            Value::String(s) => Value::from_text(ResourceType::ObjectLink, &s)?,
            other => other.coerce(ResourceType::ObjectLink)?,
        },
        Some(ty) => natural.coerce(ty)?,
    };
    Ok(single_node(path, value))
}

/// Reads one top-level item in its natural LwM2M type.
fn read_item(d: &mut Decoder<'_>) -> Result<Value, CodecError> {
    let cbor = |e: minicbor::decode::Error| malformed(e.to_string());
    Ok(match d.datatype().map_err(cbor)? {
        Type::Bool => Value::Boolean(d.bool().map_err(cbor)?),
        Type::U8
        | Type::U16
        | Type::U32
        | Type::U64
        | Type::I8
        | Type::I16
        | Type::I32
        | Type::I64
        | Type::Int => {
            let int = d.int().map_err(cbor)?;
            match i64::try_from(int) {
                Ok(i) => Value::Integer(i),
                Err(_) => Value::UnsignedInteger(
                    u64::try_from(int).map_err(|_| malformed("integer below -2^63"))?,
                ),
            }
        }
        Type::F16 => Value::Float(read_f16(d)?),
        Type::F32 | Type::F64 => Value::Float(d.f64().map_err(cbor)?),
        Type::String => Value::String(d.str().map_err(cbor)?.to_owned()),
        Type::StringIndef => {
            let mut s = String::new();
            for chunk in d.str_iter().map_err(cbor)? {
                s.push_str(chunk.map_err(cbor)?);
            }
            Value::String(s)
        }
        Type::Bytes => Value::Opaque(d.bytes().map_err(cbor)?.to_vec()),
        Type::BytesIndef => {
            let mut b = Vec::new();
            for chunk in d.bytes_iter().map_err(cbor)? {
                b.extend_from_slice(chunk.map_err(cbor)?);
            }
            Value::Opaque(b)
        }
        Type::Tag => Value::Time(read_time(d)?),
        other => return Err(malformed(format!("a CBOR {other} is not a resource value"))),
    })
}

/// Reads a tag 0 or tag 1 date as Unix seconds (Core Appendix C: "Represented as an
/// unsigned integer or a date/time string, as defined in Section 2.4.1 of RFC 7049").
/// Fractions of a second are dropped: LwM2M Time counts whole seconds.
fn read_time(d: &mut Decoder<'_>) -> Result<i64, CodecError> {
    let cbor = |e: minicbor::decode::Error| malformed(e.to_string());
    let tag = d.tag().map_err(cbor)?.as_u64();
    match (tag, d.datatype().map_err(cbor)?) {
        (TAG_EPOCH, Type::F16 | Type::F32 | Type::F64) => {
            let f = if d.datatype().map_err(cbor)? == Type::F16 {
                read_f16(d)?
            } else {
                d.f64().map_err(cbor)?
            };
            let secs = f.floor();
            // The range check also refuses NaN.
            if (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&secs) {
                Ok(secs as i64)
            } else {
                Err(malformed(format!("epoch time {f} is out of range")))
            }
        }
        (TAG_EPOCH, _) => i64::try_from(d.int().map_err(cbor)?)
            .map_err(|_| malformed("epoch time is out of range")),
        (TAG_DATE_TIME, _) => {
            let s = d.str().map_err(cbor)?;
            parse_rfc3339(s).ok_or_else(|| malformed(format!("{s:?} is not an RFC 3339 date-time")))
        }
        (other, _) => Err(malformed(format!(
            "CBOR tag {other} is not a resource value"
        ))),
    }
}

/// Reads a float16 item (minicbor reads them only with its `half` feature).
fn read_f16(d: &mut Decoder<'_>) -> Result<f64, CodecError> {
    let start = d.position();
    let mut r = Reader::new(d.input());
    let bits = r
        .take(start)
        .and_then(|_| r.take_u8())
        .filter(|b| *b == 0xf9)
        .and_then(|_| r.be_uint(2))
        .ok_or_else(|| malformed("truncated float16"))?;
    d.set_position(r.position());
    Ok(f16_to_f64(u16::try_from(bits).unwrap_or(u16::MAX)))
}

/// IEEE 754 binary16 to f64 (RFC 8949 Appendix D).
fn f16_to_f64(bits: u16) -> f64 {
    let exp = i32::from((bits >> 10) & 0x1f);
    let mant = f64::from(bits & 0x3ff);
    let magnitude = match exp {
        0 => mant * 2f64.powi(-24),
        31 if mant == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        _ => (mant + 1024.0) * 2f64.powi(exp - 25),
    };
    if bits & 0x8000 != 0 {
        -magnitude
    } else {
        magnitude
    }
}

/// Parses RFC 3339 `date-time` (`2013-03-21T20:04:00Z`, `...T22:04:00.5+02:00`) into Unix
/// seconds, dropping any fraction.
fn parse_rfc3339(s: &str) -> Option<i64> {
    let mut r = Reader::new(s.as_bytes());
    let year = digits(&mut r, 4)?;
    let month = r.expect(b'-').then(|| digits(&mut r, 2))??;
    let day = r.expect(b'-').then(|| digits(&mut r, 2))??;
    if !(r.expect(b'T') || r.expect(b't')) {
        return None;
    }
    let hour = digits(&mut r, 2)?;
    let minute = r.expect(b':').then(|| digits(&mut r, 2))??;
    let second = r.expect(b':').then(|| digits(&mut r, 2))??;
    if r.expect(b'.') && r.take_while(|b| b.is_ascii_digit()).is_empty() {
        return None;
    }
    let offset = match r.take_u8()? {
        b'Z' | b'z' => 0,
        sign @ (b'+' | b'-') => {
            let h = digits(&mut r, 2)?;
            let m = r.expect(b':').then(|| digits(&mut r, 2))??;
            if h > 23 || m > 59 {
                return None;
            }
            let off = h * 3600 + m * 60;
            if sign == b'-' {
                -off
            } else {
                off
            }
        }
        _ => return None,
    };
    let valid = r.is_empty()
        && (1..=12).contains(&month)
        && (1..=days_in_month(year, month)).contains(&day)
        && hour <= 23
        && minute <= 59
        && second <= 60; // a leap second counts into the next minute, as Unix time does
    valid.then(|| {
        days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset
    })
}

/// Exactly `n` ASCII digits as a number.
fn digits(r: &mut Reader<'_>, n: usize) -> Option<i64> {
    let bytes = r.take(n)?;
    bytes.iter().try_fold(0i64, |acc, b| {
        b.is_ascii_digit().then(|| acc * 10 + i64::from(b - b'0'))
    })
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12; // March = 0
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)] // tests may unwrap and index
mod tests {
    use super::*;
    use crate::content::testutil::{
        arb_path, arb_single_value, arb_type, hex, CyclingSchema, MapSchema,
    };
    use crate::model::PathLevel;
    use crate::model::{NoSchema, ObjectLink, Resource, ValueError};
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn single(v: Value) -> Node {
        Node::Resource(Resource::Single(v))
    }

    fn at() -> Path {
        Path::resource(1024, 0, 1)
    }

    /// Encodings from RFC 8949 Appendix A, for each LwM2M type.
    #[test]
    fn encodes_rfc_8949_appendix_a_vectors() {
        let cases: Vec<(Value, &str)> = vec![
            (Value::Integer(0), "00"),
            (Value::Integer(100), "1864"),
            (Value::Integer(1000), "1903e8"),
            (Value::Integer(-1), "20"),
            (Value::Integer(-1000), "3903e7"),
            (Value::UnsignedInteger(1_000_000), "1a000f4240"),
            (
                Value::UnsignedInteger(18_446_744_073_709_551_615),
                "1bffffffffffffffff",
            ),
            (Value::Float(100000.0), "fa47c35000"),
            (Value::Float(3.4028234663852886e+38), "fa7f7fffff"),
            (Value::Float(1.1), "fb3ff199999999999a"),
            (Value::Float(-4.1), "fbc010666666666666"),
            (Value::Boolean(false), "f4"),
            (Value::Boolean(true), "f5"),
            (Value::String("IETF".into()), "6449455446"),
            (Value::String("\u{6c34}".into()), "63e6b0b4"),
            (Value::Opaque(vec![1, 2, 3, 4]), "4401020304"),
            (Value::Time(1_363_896_240), "c11a514b67b0"),
            (
                Value::ObjectLink(ObjectLink {
                    object: 3,
                    instance: 0,
                }),
                "63333a30",
            ),
            (Value::CoreLink("</3/0>".into()), "663c2f332f303e"),
        ];
        for (value, bytes) in cases {
            assert_eq!(
                encode(&single(value.clone())).unwrap(),
                hex(bytes),
                "{value:?}"
            );
        }
    }

    #[test]
    fn decodes_rfc_8949_vectors_without_a_schema() {
        let cases: Vec<(&str, Value)> = vec![
            ("1bffffffffffffffff", Value::UnsignedInteger(u64::MAX)),
            ("3b7fffffffffffffff", Value::Integer(i64::MIN)),
            ("f93e00", Value::Float(1.5)),
            ("f97bff", Value::Float(65504.0)),
            ("f90001", Value::Float(5.960464477539063e-8)),
            ("f90400", Value::Float(0.00006103515625)),
            ("f9c400", Value::Float(-4.0)),
            ("fa47c35000", Value::Float(100000.0)),
            ("fb7e37e43c8800759c", Value::Float(1.0e+300)),
            ("f4", Value::Boolean(false)),
            ("6161", Value::String("a".into())),
            (
                "7f657374726561646d696e67ff",
                Value::String("streaming".into()),
            ),
            ("5f42010243030405ff", Value::Opaque(vec![1, 2, 3, 4, 5])),
            // The same instant three ways: tag 0 string, tag 1 integer, tag 1 float.
            (
                "c074323031332d30332d32315432303a30343a30305a",
                Value::Time(1_363_896_240),
            ),
            ("c11a514b67b0", Value::Time(1_363_896_240)),
            ("c1fb41d452d9ec200000", Value::Time(1_363_896_240)),
        ];
        for (bytes, value) in cases {
            assert_eq!(
                decode(&at(), &hex(bytes), &NoSchema).unwrap(),
                single(value),
                "{bytes}"
            );
        }
        let inf = decode(&at(), &hex("f97c00"), &NoSchema).unwrap();
        assert_eq!(inf, single(Value::Float(f64::INFINITY)));
        let nan = decode(&at(), &hex("f97e00"), &NoSchema).unwrap();
        assert!(matches!(nan.value(), Some(Value::Float(f)) if f.is_nan()));
    }

    #[test]
    fn schema_types_the_natural_value() {
        use ResourceType as T;
        let schema = MapSchema::new()
            .with(9, 0, T::Float, false)
            .with(9, 1, T::UnsignedInteger, false)
            .with(9, 2, T::Time, false)
            .with(9, 3, T::ObjectLink, false)
            .with(9, 4, T::CoreLink, false)
            .with(9, 5, T::Integer, false);
        let at = |r| Path::resource(9, 0, r);
        assert_eq!(
            decode(&at(0), &hex("1864"), &schema).unwrap(),
            single(Value::Float(100.0))
        );
        assert_eq!(
            decode(&at(1), &hex("1864"), &schema).unwrap(),
            single(Value::UnsignedInteger(100))
        );
        assert_eq!(
            decode(&at(2), &hex("1a514b67b0"), &schema).unwrap(),
            single(Value::Time(1_363_896_240))
        );
        assert_eq!(
            decode(&at(3), &hex("6b36353533353a3635353335"), &schema).unwrap(),
            single(Value::ObjectLink(ObjectLink::NULL))
        );
        assert_eq!(
            decode(&at(4), &hex("663c2f332f303e"), &schema).unwrap(),
            single(Value::CoreLink("</3/0>".into()))
        );
        assert_eq!(
            decode(&at(5), &hex("f93c00"), &schema).unwrap(),
            single(Value::Integer(1))
        );
        // Inexact or mismatched types are refused, not guessed.
        assert!(matches!(
            decode(&at(5), &hex("f93e00"), &schema),
            Err(CodecError::Value(ValueError::Incompatible { .. }))
        ));
        assert!(matches!(
            decode(&at(1), &hex("20"), &schema),
            Err(CodecError::Value(_))
        ));
        assert!(matches!(
            decode(&at(3), &hex("6133"), &schema),
            Err(CodecError::Value(_))
        ));
        assert!(matches!(
            decode(&at(0), &hex("f5"), &schema),
            Err(CodecError::Value(_))
        ));
    }

    #[test]
    fn rejects_malformed_items() {
        for bytes in [
            "",
            "18",
            "1864ff",
            "f6",
            "f7",
            "80",
            "a0",
            "c2420100",
            "c06161",
            "c074323031332d30322d32395430303a30303a30305a",
            "ff",
            "7f6161",
        ] {
            assert!(
                matches!(
                    decode(&at(), &hex(bytes), &NoSchema),
                    Err(CodecError::Malformed {
                        format: ContentFormat::Cbor,
                        ..
                    })
                ),
                "{bytes}"
            );
        }
    }

    #[test]
    fn refuses_containers_and_multiple_resources() {
        assert_eq!(
            encode(&Node::Resource(Resource::Multiple(BTreeMap::new()))),
            Err(CodecError::Unsupported {
                format: ContentFormat::Cbor,
                level: PathLevel::Resource
            })
        );
        assert!(matches!(
            decode(
                &Path::resource(3, 0, 7),
                &hex("00"),
                &MapSchema::spec_examples()
            ),
            Err(CodecError::Unsupported { .. })
        ));
        assert_eq!(
            decode(
                &Path::resource_instance(3, 0, 7, 1),
                &hex("191388"),
                &MapSchema::spec_examples()
            )
            .unwrap(),
            Node::ResourceInstance(Value::Integer(5000))
        );
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2013-03-21T20:04:00Z"), Some(1_363_896_240));
        assert_eq!(
            parse_rfc3339("2013-03-21T22:04:00.999+02:00"),
            Some(1_363_896_240)
        );
        assert_eq!(
            parse_rfc3339("2000-02-29T00:00:00+01:00"),
            Some(951_778_800)
        );
        assert_eq!(parse_rfc3339("1969-12-31t23:59:59z"), Some(-1));
        assert_eq!(parse_rfc3339("0000-03-01T00:00:00Z"), Some(-62_162_035_200));
        for bad in [
            "2013-02-29T00:00:00Z",
            "2013-13-01T00:00:00Z",
            "2013-03-21 20:04:00Z",
            "2013-03-21T20:04:00",
            "2013-03-21T24:00:00Z",
            "2013-03-21T20:04:00.Z",
            "2013-03-21T20:04:00+2:00",
            "+013-03-21T20:04:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    proptest! {
        #[test]
        fn round_trips_every_type((path, node, schema) in arb_single_value(arb_type().boxed())) {
            let bytes = encode(&node).unwrap();
            prop_assert_eq!(decode(&path, &bytes, &schema).unwrap(), node);
        }

        #[test]
        fn floats_use_the_narrowest_exact_width(f in crate::content::testutil::arb_finite_f64()) {
            let bytes = encode(&single(Value::Float(f))).unwrap();
            let expected = if f64::from(f as f32) == f { 5 } else { 9 };
            prop_assert_eq!(bytes.len(), expected);
        }

        #[test]
        fn f16_matches_f32_widening(bits in any::<u16>()) {
            // Every finite binary16 is exactly representable as f32; check against the
            // bit-level widening (sign, rebiased exponent, shifted mantissa) for normals.
            let exp = (bits >> 10) & 0x1f;
            if exp != 0 && exp != 31 {
                let f32_bits = (u32::from(bits & 0x8000) << 16) | ((u32::from(exp) + 112) << 23) | (u32::from(bits & 0x3ff) << 13);
                prop_assert_eq!(f16_to_f64(bits), f64::from(f32::from_bits(f32_bits)));
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(path in arb_path(), bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode(&path, &bytes, &NoSchema);
            let _ = decode(&path, &bytes, &CyclingSchema);
        }

        #[test]
        fn arbitrary_date_strings_never_panic(s in "[0-9T:Zz.+-]{0,30}") {
            let _ = parse_rfc3339(&s);
        }
    }
}
