//! The value bytes of LwM2M TLV (OMA LwM2M TS 1.2 Core Appendix C, "TLV Format"):
//! big-endian integers of 1, 2, 4 or 8 bytes, floats of 4 or 8, booleans, UTF-8 strings,
//! object links and opaque bytes. TLV carries no type, so decoding takes the one the schema
//! gives.
#![deny(clippy::indexing_slicing)]

use super::malformed;
use crate::content::CodecError;
use crate::model::{ObjectLink, Path, ResourceType, Value};
use crate::reader::Reader;

/// The value bytes (Core Appendix C, "TLV Format").
pub(super) fn encode_value(v: &Value) -> Vec<u8> {
    match v {
        Value::Integer(i) | Value::Time(i) => signed_bytes(*i),
        // Written with a clear top bit whenever the value allows it, i.e. one byte longer than
        // the shortest unsigned form for 128..=255 and the like. A spec reader (binary
        // unsigned of 1, 2, 4 or 8 bytes) reads the same number, and so does a reader that
        // treats every TLV integer as signed, as LwM2M 1.0-era stacks including Leshan do.
        Value::UnsignedInteger(u) => match i64::try_from(*u) {
            Ok(i) => signed_bytes(i),
            Err(_) => u.to_be_bytes().to_vec(),
        },
        Value::Float(f) => {
            let narrow = *f as f32;
            if f64::from(narrow) == *f {
                narrow.to_be_bytes().to_vec()
            } else {
                f.to_be_bytes().to_vec()
            }
        }
        Value::Boolean(b) => vec![u8::from(*b)],
        Value::String(s) | Value::CoreLink(s) => s.as_bytes().to_vec(),
        Value::Opaque(b) => b.clone(),
        Value::ObjectLink(l) => [l.object.to_be_bytes(), l.instance.to_be_bytes()].concat(),
    }
}

/// The shortest of the 1, 2, 4 or 8-byte two's-complement forms.
fn signed_bytes(i: i64) -> Vec<u8> {
    let n = if i8::try_from(i).is_ok() {
        1
    } else if i16::try_from(i).is_ok() {
        2
    } else if i32::try_from(i).is_ok() {
        4
    } else {
        8
    };
    let bytes = i.to_be_bytes();
    bytes.get(8 - n..).unwrap_or(&bytes).to_vec()
}

/// Reads a value of type `ty` (Core Appendix C); unknown and executable resources keep
/// their bytes.
pub(super) fn decode_value(
    ty: Option<ResourceType>,
    raw: &[u8],
    at: &Path,
) -> Result<Value, CodecError> {
    use ResourceType as T;
    let bad = |what: &str| malformed(format!("{at}: {what}, got {} bytes", raw.len()));
    let utf8 = || {
        String::from_utf8(raw.to_vec())
            .map_err(|e| malformed(format!("{at}: string is not UTF-8 ({e})")))
    };
    Ok(match ty {
        None | Some(T::None) | Some(T::Opaque) => Value::Opaque(raw.to_vec()),
        Some(T::String) => Value::String(utf8()?),
        Some(T::CoreLink) => Value::CoreLink(utf8()?),
        Some(T::Integer) => {
            Value::Integer(signed(raw).ok_or_else(|| bad("an integer takes 1, 2, 4 or 8 bytes"))?)
        }
        Some(T::Time) => {
            Value::Time(signed(raw).ok_or_else(|| bad("a time takes 1, 2, 4 or 8 bytes"))?)
        }
        Some(T::UnsignedInteger) => Value::UnsignedInteger(
            unsigned(raw).ok_or_else(|| bad("an unsigned integer takes 1, 2, 4 or 8 bytes"))?,
        ),
        Some(T::Float) => Value::Float(match raw.len() {
            4 => f64::from(f32::from_bits(
                unsigned(raw)
                    .and_then(|u| u32::try_from(u).ok())
                    .unwrap_or_default(),
            )),
            8 => f64::from_bits(unsigned(raw).unwrap_or_default()),
            _ => return Err(bad("a float takes 4 or 8 bytes")),
        }),
        Some(T::Boolean) => match raw {
            [0] => Value::Boolean(false),
            [1] => Value::Boolean(true),
            _ => return Err(bad("a boolean is one byte, 0 or 1")),
        },
        Some(T::ObjectLink) => {
            let mut r = Reader::new(raw);
            match (r.be_uint(2), r.be_uint(2), r.is_empty()) {
                (Some(o), Some(i), true) => Value::ObjectLink(ObjectLink {
                    object: u16::try_from(o).unwrap_or(u16::MAX),
                    instance: u16::try_from(i).unwrap_or(u16::MAX),
                }),
                _ => return Err(bad("an object link takes 4 bytes")),
            }
        }
    })
}

/// A 1, 2, 4 or 8-byte big-endian unsigned integer.
fn unsigned(raw: &[u8]) -> Option<u64> {
    if !matches!(raw.len(), 1 | 2 | 4 | 8) {
        return None;
    }
    Reader::new(raw).be_uint(raw.len())
}

/// A 1, 2, 4 or 8-byte big-endian two's-complement integer.
fn signed(raw: &[u8]) -> Option<i64> {
    let u = unsigned(raw)?;
    // `unsigned` admits 1 to 8 bytes only, so the shift is 0..=56.
    let shift = 64 - 8 * u32::try_from(raw.len()).ok()?;
    // Move the sign bit to bit 63, then shift back arithmetically to extend it.
    Some(((u << shift) as i64) >> shift)
}
