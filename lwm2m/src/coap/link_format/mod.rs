//! CoRE Link Format codec: parses and writes the `application/link-format`
//! payloads of RFC 6690 §2.
//!
//! LwM2M uses this format for the Register and Update payloads (OMA LwM2M TS
//! 1.2 Core §6.2 and Transport §6, e.g. `</>;rt="oma.lwm2m";ct=11543,</3/0>`)
//! and for Discover answers (`</3/0>;pmin=10;pmax=60`). This module knows the
//! grammar and treats every attribute as a name and an optional string; the
//! meaning LwM2M gives them is elsewhere: the notification attributes in
//! [`crate::attributes`], paths and registration links in
//! [`crate::content::link`].
//!
//! Why hand-written: coap-lite's `link_format` module does not handle
//! quoted-string escaping or multi-value `ct="60 110"` lists, and no well-kept
//! crate implements RFC 6690 with them. The grammar is small enough that a
//! direct parser is the safest option: going through `crate::reader::Reader`
//! it never indexes peer bytes, so a hostile payload can produce an error but
//! never a panic.
//!
//! The parser (in `parser`) is liberal where real devices deviate harmlessly (whitespace
//! around separators, non-ASCII UTF-8 in unquoted values, any backslash escape
//! in quoted strings) and strict about structure (`<`, `>`, closing quotes and
//! attribute names must be there). Serialization is canonical: no whitespace,
//! and quoting chosen so that LwM2M registration payloads round-trip byte for
//! byte.

mod parser;
#[cfg(test)]
mod tests;

use std::fmt;

use parser::{is_ptoken_char, Parser};

/// Most links one payload may hold; more is treated as hostile.
///
/// A link can be as short as `<>,` (3 bytes) but costs far more than that once
/// parsed, so the count is capped independently of the payload size.
pub const MAX_LINKS: usize = 65_535;

/// Longest attribute value accepted, in bytes after unescaping (4 KiB).
///
/// Real values are a few bytes (`oma.lwm2m`, `11543`); the cap keeps a single
/// attribute from pinning a large allocation.
pub const MAX_VALUE_LEN: usize = 4 * 1024;

/// Attributes that RFC 6690 (§2, §3) and LwM2M write as quoted strings even
/// when their value would be a valid token, so we emit them the way peers and
/// test vectors expect.
const ALWAYS_QUOTED: [&str; 8] = ["rt", "if", "rel", "anchor", "title", "rev", "type", "uri"];

/// Why a link-format payload was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LinkFormatError {
    /// The payload is not UTF-8; `position` is the first byte that is not.
    #[error("link-format payload is not valid UTF-8 at byte {position}")]
    InvalidUtf8 {
        /// Byte offset of the first invalid byte.
        position: usize,
    },
    /// A link did not start with `<`.
    #[error("expected `<` to open a link target at byte {position}")]
    MissingTargetStart {
        /// Byte offset where `<` was expected.
        position: usize,
    },
    /// A link target was not closed with `>` before the next `<` or the end.
    #[error("link target opened at byte {position} is not closed with `>`")]
    UnterminatedTarget {
        /// Byte offset of the `<` that opened the target.
        position: usize,
    },
    /// A `;` was not followed by an attribute name.
    #[error("empty attribute name at byte {position}")]
    EmptyAttributeName {
        /// Byte offset where the name was expected.
        position: usize,
    },
    /// A quoted attribute value has no closing `"`.
    #[error("quoted string opened at byte {position} is never closed")]
    UnterminatedQuotedString {
        /// Byte offset of the opening `"`.
        position: usize,
    },
    /// A character that the grammar does not allow where it appears.
    #[error("unexpected character {found:?} at byte {position}")]
    UnexpectedCharacter {
        /// The offending character.
        found: char,
        /// Its byte offset.
        position: usize,
    },
    /// The payload holds more than [`MAX_LINKS`] links.
    #[error("more than {max} links; the link starting at byte {position} is one too many")]
    TooManyLinks {
        /// Byte offset of the first link past the cap.
        position: usize,
        /// The cap, [`MAX_LINKS`].
        max: usize,
    },
    /// An attribute value is longer than [`MAX_VALUE_LEN`].
    #[error("attribute value at byte {position} is longer than {max} bytes")]
    ValueTooLong {
        /// Byte offset where the value starts.
        position: usize,
        /// The cap, [`MAX_VALUE_LEN`].
        max: usize,
    },
}

impl LinkFormatError {
    /// Byte offset in the parsed payload that the error refers to.
    pub fn position(&self) -> usize {
        match self {
            Self::InvalidUtf8 { position }
            | Self::MissingTargetStart { position }
            | Self::UnterminatedTarget { position }
            | Self::EmptyAttributeName { position }
            | Self::UnterminatedQuotedString { position }
            | Self::UnexpectedCharacter { position, .. }
            | Self::TooManyLinks { position, .. }
            | Self::ValueTooLong { position, .. } => *position,
        }
    }
}

/// One link of a link-format payload: `<target>;attr;attr=value...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The URI reference between `<` and `>`, as written (for LwM2M an object
    /// path such as `/3/0`).
    pub target: String,
    /// The attributes in payload order; names may repeat.
    pub attributes: Vec<LinkAttribute>,
}

/// One `;name` or `;name=value` attribute of a [`Link`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkAttribute {
    /// The attribute name (RFC 6690 `parmname`, optionally ending in `*`).
    pub name: String,
    /// The value without quotes or escapes; `None` for a bare `;obs`.
    pub value: Option<String>,
}

impl LinkAttribute {
    /// An attribute with the given name and value.
    pub fn new(name: impl Into<String>, value: Option<&str>) -> Self {
        Self {
            name: name.into(),
            value: value.map(str::to_owned),
        }
    }
}

impl Link {
    /// A link to `target` with no attributes.
    pub fn new(target: impl Into<String>) -> Self {
        Self {
            target: target.into(),
            attributes: Vec::new(),
        }
    }

    /// Appends an attribute (builder style); `None` makes a bare attribute.
    pub fn with_attr(mut self, name: impl Into<String>, value: Option<&str>) -> Self {
        self.attributes.push(LinkAttribute::new(name, value));
        self
    }

    /// The value of the first attribute called `name`, if it has one.
    ///
    /// Names compare ASCII-case-insensitively, as RFC 8288 §3 says link
    /// parameter names do.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
            .and_then(|a| a.value.as_deref())
    }

    /// Whether an attribute called `name` is present, with or without value.
    pub fn has_attr(&self, name: &str) -> bool {
        self.attributes
            .iter()
            .any(|a| a.name.eq_ignore_ascii_case(name))
    }
}

/// Registration-level helpers (LwM2M TS 1.2 Core §6.2.1 and Transport §6).
impl Link {
    /// The content formats advertised by `ct`, either `ct=11543` or the
    /// quoted list `ct="60 110 112"`. Entries that are not a `u16` are skipped
    /// rather than failing the whole registration over one odd entry.
    pub fn content_formats(&self) -> Vec<u16> {
        self.attributes
            .iter()
            .filter(|a| a.name.eq_ignore_ascii_case("ct"))
            .filter_map(|a| a.value.as_deref())
            .flat_map(str::split_ascii_whitespace)
            .filter_map(|entry| entry.parse().ok())
            .collect()
    }

    /// The LwM2M enabler version from the `ver` attribute (e.g. `1.1`).
    pub fn lwm2m_version(&self) -> Option<&str> {
        self.attr("ver")
    }
}

impl fmt::Display for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        encode_link(self, &mut out);
        f.write_str(&out)
    }
}

/// Parses an `application/link-format` payload.
///
/// An empty (or all-whitespace) payload is an empty list.
///
/// # Errors
///
/// [`LinkFormatError::InvalidUtf8`] for non-UTF-8 input, the other syntax
/// variants for malformed structure, and [`LinkFormatError::TooManyLinks`] or
/// [`LinkFormatError::ValueTooLong`] past the caps; all carry the byte offset
/// of the problem.
pub fn parse(input: &[u8]) -> Result<Vec<Link>, LinkFormatError> {
    let text = std::str::from_utf8(input).map_err(|e| LinkFormatError::InvalidUtf8 {
        position: e.valid_up_to(),
    })?;
    parse_str(text)
}

/// [`parse`] for input that is already a `str`.
///
/// # Errors
///
/// As [`parse`], except that the input cannot be invalid UTF-8.
pub fn parse_str(input: &str) -> Result<Vec<Link>, LinkFormatError> {
    Parser::new(input).links()
}

/// Writes links as one `application/link-format` payload, without whitespace.
///
/// Values are quoted (escaping `"` and `\`) when they are empty, contain a
/// character outside RFC 6690's `ptokenchar`, or belong to an attribute that
/// is conventionally quoted (`rt`, `if`, `rel`, `anchor`, `title`, `rev`,
/// `type`); so `ct=11543` stays bare while `ct="60 110"` is quoted. A `<` or
/// `>` inside a target, which no URI reference may contain, is written
/// percent-encoded so the output still parses. Attribute names are written
/// as given and must be valid `parmname`s to be parsed back.
pub fn serialize(links: &[Link]) -> String {
    let mut out = String::new();
    for (i, link) in links.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        encode_link(link, &mut out);
    }
    out
}

fn encode_link(link: &Link, out: &mut String) {
    out.push('<');
    for c in link.target.chars() {
        match c {
            '<' => out.push_str("%3C"),
            '>' => out.push_str("%3E"),
            c => out.push(c),
        }
    }
    out.push('>');
    for attr in &link.attributes {
        out.push(';');
        out.push_str(&attr.name);
        if let Some(value) = &attr.value {
            out.push('=');
            if needs_quotes(&attr.name, value) {
                out.push('"');
                for c in value.chars() {
                    if c == '"' || c == '\\' {
                        out.push('\\');
                    }
                    out.push(c);
                }
                out.push('"');
            } else {
                out.push_str(value);
            }
        }
    }
}

fn needs_quotes(name: &str, value: &str) -> bool {
    value.is_empty()
        || !value.bytes().all(is_ptoken_char)
        || ALWAYS_QUOTED.iter().any(|q| q.eq_ignore_ascii_case(name))
}
