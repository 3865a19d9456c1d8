//! application/vnd.oma.lwm2m+tlv (Content-Format 11542): the binary TLV format of OMA LwM2M
//! TS 1.2 Core §7.4.3 (value encodings in Appendix C, "TLV Format").
//!
//! Each entry is a type byte, an 8- or 16-bit identifier, an optional 8/16/24-bit length and
//! the value:
//!
//! ```text
//! type byte: bits 7-6  00 object instance   (value: resource TLVs)
//!                      01 resource instance (value: a resource value)
//!                      10 multiple resource (value: resource instance TLVs)
//!                      11 resource with value
//!            bit 5     identifier is 16 bits (else 8)
//!            bits 4-3  length field of 0 (length in bits 2-0), 8, 16 or 24 bits
//! ```
//!
//! The format nests at most three deep (instance, multiple resource, resource instance), so
//! the decoder walks those levels explicitly instead of recursing on peer input, and every
//! length is checked against the remaining input by [`Reader`] before anything is taken, so
//! nothing is allocated on a peer's say-so.
//!
//! What goes on the wire for each node (as Leshan writes it, and as the TS examples show):
//!
//! | node at | payload |
//! | --- | --- |
//! | `/o` | one object-instance TLV per instance |
//! | `/o/i` | the resource TLVs, without the instance TLV |
//! | `/o/i/r` | one resource TLV (resource with value, or multiple resource) |
//! | `/o/i/r/ri` | one resource-instance TLV |
//!
//! The decoder accepts what peers send besides: at `/o/i` the instance wrapped in its
//! object-instance TLV (TS example "single object instance"), at `/o/i/r` a wrapping
//! object-instance TLV with the right id or a bare list of resource-instance TLVs, at
//! `/o/i/r/ri` a wrapping multiple-resource TLV. At `/o`, resource TLVs without an instance
//! TLV are what a single-instance object's Read returns, so they are read as instance 0, as
//! Leshan does when the object is single-instance or unknown; mixing them with instance TLVs
//! is ambiguous and refused. (Leshan reads such a payload for a *multiple*-instance object as
//! a Create without instance id; a [`Node`] cannot express a missing id and the [`Schema`]
//! does not tell object multiplicity, so that case also decodes as instance 0.)
//!
//! Values carry no type in TLV: the [`Schema`] gives it. A resource the schema does not know
//! (or an executable one) keeps its raw bytes as [`Value::Opaque`].
//!
//! Hand-written because no maintained crate implements LwM2M TLV.
//!
//! # Layout
//! - this file: the entry framing (type byte, identifier, length) shared by both directions;
//! - `encode`: a [`Node`] to TLV entries;
//! - `decode`: TLV entries to a [`Node`], accepting the shapes peers send;
//! - `value`: the value bytes of Appendix C, typed by the [`Schema`].
//!
//! [`Node`]: crate::model::Node
//! [`Schema`]: crate::model::Schema
//! [`Value::Opaque`]: crate::model::Value::Opaque
#![deny(clippy::indexing_slicing)]

use super::{CodecError, ContentFormat};
use crate::reader::Reader;

mod decode;
mod encode;
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)] // tests may unwrap and index
mod tests;
mod value;

pub(super) use decode::decode;
pub(super) use encode::encode;

const FORMAT: ContentFormat = ContentFormat::Tlv;

/// The largest value the 24-bit length field can describe.
const MAX_LEN: usize = 0xFF_FFFF;

fn malformed(reason: impl Into<String>) -> CodecError {
    CodecError::malformed(FORMAT, reason)
}

/// The identifier type of a TLV (type byte bits 7-6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    ObjectInstance,
    ResourceInstance,
    MultipleResource,
    ResourceValue,
}

impl Kind {
    fn from_type_byte(b: u8) -> Self {
        match b >> 6 {
            0b00 => Kind::ObjectInstance,
            0b01 => Kind::ResourceInstance,
            0b10 => Kind::MultipleResource,
            _ => Kind::ResourceValue,
        }
    }

    fn type_bits(self) -> u8 {
        let bits = match self {
            Kind::ObjectInstance => 0b00,
            Kind::ResourceInstance => 0b01,
            Kind::MultipleResource => 0b10,
            Kind::ResourceValue => 0b11,
        };
        bits << 6
    }

    fn name(self) -> &'static str {
        match self {
            Kind::ObjectInstance => "object instance",
            Kind::ResourceInstance => "resource instance",
            Kind::MultipleResource => "multiple resource",
            Kind::ResourceValue => "resource",
        }
    }
}

/// One TLV, its value borrowed from the input.
#[derive(Debug)]
struct Tlv<'a> {
    /// What the value holds, and so which level may contain this TLV.
    kind: Kind,
    /// Object instance, resource or resource instance id, by `kind`.
    id: u16,
    /// The value bytes: a resource value, or the TLVs of the next level.
    value: &'a [u8],
    /// Where `value` starts in the whole payload, so errors in nested TLVs can say where.
    value_at: usize,
}

/// The TLVs of one nesting level, read one at a time. Stops after the first error.
struct Tlvs<'a> {
    /// The level's bytes: the whole payload, or the value of the enclosing TLV.
    r: Reader<'a>,
    /// Where the level starts in the whole payload, for error positions.
    base: usize,
    /// Set after an error: the rest of the level cannot be framed.
    failed: bool,
}

impl<'a> Tlvs<'a> {
    /// The top level of a payload.
    fn new(bytes: &'a [u8]) -> Self {
        Tlvs {
            r: Reader::new(bytes),
            base: 0,
            failed: false,
        }
    }

    /// The TLVs inside `t`'s value.
    fn within(t: &Tlv<'a>) -> Self {
        Tlvs {
            r: Reader::new(t.value),
            base: t.value_at,
            failed: false,
        }
    }

    fn read(&mut self) -> Result<Tlv<'a>, CodecError> {
        let start = self.base.saturating_add(self.r.position());
        let truncated = |what: &str| malformed(format!("TLV at byte {start}: truncated {what}"));
        let type_byte = self.r.take_u8().ok_or_else(|| truncated("type"))?;
        let id_len = if type_byte & 0x20 != 0 { 2 } else { 1 };
        let id = self
            .r
            .be_uint(id_len)
            .ok_or_else(|| truncated("identifier"))?;
        let id = u16::try_from(id).map_err(|_| truncated("identifier"))?;
        let len = match (type_byte >> 3) & 0b11 {
            0 => u64::from(type_byte & 0b111),
            n => self
                .r
                .be_uint(usize::from(n))
                .ok_or_else(|| truncated("length"))?,
        };
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        let remaining = self.r.remaining();
        let value = self.r.take(len).ok_or_else(|| {
            malformed(format!(
                "TLV at byte {start} declares {len} value bytes, {remaining} remain"
            ))
        })?;
        Ok(Tlv {
            kind: Kind::from_type_byte(type_byte),
            id,
            value,
            value_at: self
                .base
                .saturating_add(self.r.position())
                .saturating_sub(len),
        })
    }
}

impl<'a> Iterator for Tlvs<'a> {
    type Item = Result<Tlv<'a>, CodecError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.r.is_empty() {
            return None;
        }
        let item = self.read();
        self.failed = item.is_err();
        Some(item)
    }
}
