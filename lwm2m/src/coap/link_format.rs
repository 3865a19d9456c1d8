//! CoRE Link Format codec: parses and writes the `application/link-format`
//! payloads of RFC 6690 §2, with the attributes LwM2M puts in them.
//!
//! LwM2M uses this format for the Register and Update payloads (OMA LwM2M TS
//! 1.2 Core §6.2 and Transport §6, e.g. `</>;rt="oma.lwm2m";ct=11543,</3/0>`)
//! and for Discover answers carrying the notification attributes of Core
//! §5.1.2 (`</3/0>;pmin=10;pmax=60`). [`NotificationAttributes`] is the typed
//! view of the latter and also reads the Uri-Query form of Write-Attributes.
//!
//! Why hand-written: coap-lite's `link_format` module does not handle
//! quoted-string escaping, multi-value `ct="60 110"` lists or the LwM2M
//! attributes, and no well-kept crate implements RFC 6690 with them. The
//! grammar is small enough that a direct parser is the safest option: going
//! through `crate::reader::Reader` it never indexes peer bytes, so a hostile
//! payload can produce an error but never a panic.
//!
//! The parser is liberal where real devices deviate harmlessly (whitespace
//! around separators, non-ASCII UTF-8 in unquoted values, any backslash escape
//! in quoted strings) and strict about structure (`<`, `>`, closing quotes and
//! attribute names must be there). Serialization is canonical: no whitespace,
//! and quoting chosen so that LwM2M registration payloads round-trip byte for
//! byte.

use std::fmt;
use std::str::FromStr;

use crate::reader::Reader;

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

/// The notification attributes of OMA LwM2M TS Core §5.1.2, by their query names.
pub const NOTIFICATION_ATTRIBUTES: [&str; 7] = ["pmin", "pmax", "gt", "lt", "st", "epmin", "epmax"];

/// Attributes that RFC 6690 (§2, §3) and LwM2M write as quoted strings even
/// when their value would be a valid token, so we emit them the way peers and
/// test vectors expect.
const ALWAYS_QUOTED: [&str; 8] = ["rt", "if", "rel", "anchor", "title", "rev", "type", "uri"];

/// Why a link-format payload or a notification attribute was rejected.
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
    /// A notification attribute was given without `=value`.
    #[error("attribute `{name}` needs a value")]
    MissingValue {
        /// The attribute name as given.
        name: String,
    },
    /// A notification attribute's value is not a valid number for it.
    #[error("invalid value {value:?} for attribute `{name}`")]
    InvalidValue {
        /// The attribute name as given.
        name: String,
        /// The rejected value.
        value: String,
    },
    /// A notification attribute was given more than once.
    #[error("attribute `{name}` is given more than once")]
    DuplicateAttribute {
        /// The attribute name as given.
        name: String,
    },
}

impl LinkFormatError {
    /// Byte offset in the parsed payload that the error refers to, for the
    /// syntax errors of [`parse`]; `None` for errors about attribute values
    /// that have no payload position.
    pub fn position(&self) -> Option<usize> {
        match self {
            Self::InvalidUtf8 { position }
            | Self::MissingTargetStart { position }
            | Self::UnterminatedTarget { position }
            | Self::EmptyAttributeName { position }
            | Self::UnterminatedQuotedString { position }
            | Self::UnexpectedCharacter { position, .. }
            | Self::TooManyLinks { position, .. }
            | Self::ValueTooLong { position, .. } => Some(*position),
            Self::MissingValue { .. }
            | Self::InvalidValue { .. }
            | Self::DuplicateAttribute { .. } => None,
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

/// RFC 6690 §2 `ptokenchar`: what an unquoted value may contain.
fn is_ptoken_char(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'/'
                | b':'
                | b'<'
                | b'='
                | b'>'
                | b'?'
                | b'@'
                | b'['
                | b']'
                | b'^'
                | b'_'
                | b'`'
                | b'{'
                | b'|'
                | b'}'
                | b'~'
        )
}

/// RFC 5987 §3.2.1 `parmname`, which RFC 6690 uses for attribute names.
fn is_parmname_char(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#' | b'$' | b'&' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~'
        )
}

fn is_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// Recursive-descent parser over the payload. `src` is kept beside the
/// reader only to name the offending character in errors.
struct Parser<'a> {
    src: &'a str,
    r: Reader<'a>,
}

impl<'a> Parser<'a> {
    fn new(src: &'a str) -> Self {
        Self {
            src,
            r: Reader::new(src.as_bytes()),
        }
    }

    fn links(mut self) -> Result<Vec<Link>, LinkFormatError> {
        let mut links = Vec::new();
        self.skip_whitespace();
        if self.r.is_empty() {
            return Ok(links);
        }
        loop {
            if links.len() >= MAX_LINKS {
                return Err(LinkFormatError::TooManyLinks {
                    position: self.r.position(),
                    max: MAX_LINKS,
                });
            }
            links.push(self.link()?);
            self.skip_whitespace();
            if self.r.is_empty() {
                return Ok(links);
            }
            if !self.r.expect(b',') {
                return Err(self.unexpected());
            }
            // A trailing `,` is left to fail in `link` as a missing `<`:
            // RFC 6690 has no empty link-value.
            self.skip_whitespace();
        }
    }

    fn link(&mut self) -> Result<Link, LinkFormatError> {
        let open = self.r.position();
        if !self.r.expect(b'<') {
            return Err(LinkFormatError::MissingTargetStart { position: open });
        }
        // A raw `<` cannot occur in a URI reference, so meeting one means the
        // `>` was forgotten; stopping there avoids silently swallowing the
        // next link into this target.
        let target = self.r.take_while(|b| b != b'>' && b != b'<');
        let target = utf8(target, open.saturating_add(1))?;
        if !self.r.expect(b'>') {
            return Err(LinkFormatError::UnterminatedTarget { position: open });
        }
        let mut link = Link::new(target);
        loop {
            self.skip_whitespace();
            if !self.r.expect(b';') {
                return Ok(link);
            }
            self.skip_whitespace();
            link.attributes.push(self.attribute()?);
        }
    }

    fn attribute(&mut self) -> Result<LinkAttribute, LinkFormatError> {
        let start = self.r.position();
        let name = self.r.take_while(is_parmname_char);
        if name.is_empty() {
            return Err(LinkFormatError::EmptyAttributeName { position: start });
        }
        let mut name = utf8(name, start)?;
        // RFC 8187 extended parameters (`title*=UTF-8''...`) are
        // `parmname "*"`; accepting the star keeps such links parseable.
        if self.r.expect(b'*') {
            name.push('*');
        }
        self.skip_whitespace();
        let value = if self.r.expect(b'=') {
            self.skip_whitespace();
            Some(self.value()?)
        } else {
            None
        };
        Ok(LinkAttribute { name, value })
    }

    fn value(&mut self) -> Result<String, LinkFormatError> {
        let start = self.r.position();
        if self.r.peek() == Some(b'"') {
            return self.quoted_string();
        }
        // Non-ASCII bytes are not ptokenchars, but devices do send UTF-8 in
        // bare values and the input is already known to be UTF-8, so taking
        // them loses nothing and spares a pointless rejection.
        let token = self.r.take_while(|b| is_ptoken_char(b) || !b.is_ascii());
        if token.len() > MAX_VALUE_LEN {
            return Err(LinkFormatError::ValueTooLong {
                position: start,
                max: MAX_VALUE_LEN,
            });
        }
        utf8(token, start)
    }

    fn quoted_string(&mut self) -> Result<String, LinkFormatError> {
        let open = self.r.position();
        self.r.take_u8();
        let too_long = || LinkFormatError::ValueTooLong {
            position: open,
            max: MAX_VALUE_LEN,
        };
        let unterminated = || LinkFormatError::UnterminatedQuotedString { position: open };
        // Unescaping only removes ASCII backslashes from valid UTF-8, so the
        // bytes stay valid UTF-8 and can be collected before converting.
        let mut bytes = Vec::new();
        loop {
            let chunk = self.r.take_while(|b| b != b'"' && b != b'\\');
            if bytes.len().saturating_add(chunk.len()) > MAX_VALUE_LEN {
                return Err(too_long());
            }
            bytes.extend_from_slice(chunk);
            match self.r.take_u8() {
                Some(b'"') => break,
                // RFC 2616 `quoted-pair` allows escaping any character, not
                // only `"` and `\`; take the next byte literally.
                Some(_) => {
                    let escaped = self.r.take_u8().ok_or_else(unterminated)?;
                    if bytes.len() >= MAX_VALUE_LEN {
                        return Err(too_long());
                    }
                    bytes.push(escaped);
                }
                None => return Err(unterminated()),
            }
        }
        String::from_utf8(bytes).map_err(|e| LinkFormatError::InvalidUtf8 {
            position: open.saturating_add(e.utf8_error().valid_up_to()),
        })
    }

    fn skip_whitespace(&mut self) {
        self.r.take_while(is_whitespace);
    }

    /// The error for whatever character sits at the cursor.
    fn unexpected(&self) -> LinkFormatError {
        let position = self.r.position();
        let found = self
            .src
            .get(position..)
            .and_then(|rest| rest.chars().next())
            .unwrap_or(char::REPLACEMENT_CHARACTER);
        LinkFormatError::UnexpectedCharacter { found, position }
    }
}

/// Slices handed here always start and end at ASCII bytes of a `str`, so this
/// cannot fail in practice; it is fallible only so that fact is not trusted.
fn utf8(bytes: &[u8], position: usize) -> Result<String, LinkFormatError> {
    std::str::from_utf8(bytes)
        .map(str::to_owned)
        .map_err(|e| LinkFormatError::InvalidUtf8 {
            position: position.saturating_add(e.valid_up_to()),
        })
}

/// Notification attributes of LwM2M TS Core §5.1.2 (Write-Attributes /
/// Discover).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NotificationAttributes {
    /// Minimum period between notifications, in seconds.
    pub pmin: Option<u32>,
    /// Maximum period between notifications, in seconds.
    pub pmax: Option<u32>,
    /// Greater-than threshold: notify when the value crosses above it.
    pub gt: Option<f64>,
    /// Less-than threshold: notify when the value crosses below it.
    pub lt: Option<f64>,
    /// Step: notify when the value changed by at least this much.
    pub st: Option<f64>,
    /// Minimum evaluation period, in seconds.
    pub epmin: Option<u32>,
    /// Maximum evaluation period, in seconds.
    pub epmax: Option<u32>,
}

impl NotificationAttributes {
    /// Reads the notification attributes of a Discover link.
    ///
    /// Other attributes (`dim`, `ver`, ...) are ignored; a notification
    /// attribute without a value, with a malformed or non-finite number, or
    /// given twice is an error.
    ///
    /// # Errors
    ///
    /// [`LinkFormatError::MissingValue`], [`LinkFormatError::InvalidValue`] or
    /// [`LinkFormatError::DuplicateAttribute`] for the first bad attribute.
    pub fn from_link(link: &Link) -> Result<Self, LinkFormatError> {
        let mut attrs = Self::default();
        for attr in &link.attributes {
            attrs.apply(&attr.name, attr.value.as_deref())?;
        }
        Ok(attrs)
    }

    /// The attributes that are set, in the order pmin, pmax, gt, lt, st,
    /// epmin, epmax.
    pub fn to_link_attributes(&self) -> Vec<LinkAttribute> {
        self.entries()
            .into_iter()
            .map(|(name, value)| LinkAttribute {
                name: name.to_owned(),
                value: Some(value),
            })
            .collect()
    }

    /// Reads the Uri-Query items of a Write-Attributes request, such as
    /// `pmin=10` or `gt=20.5`.
    ///
    /// Items naming other attributes are ignored, so attributes of later
    /// LwM2M versions (`edge`, `con`, ...) do not fail the request. A bare
    /// `pmin` (the "unset" form) is out of scope and rejected as
    /// [`LinkFormatError::MissingValue`].
    ///
    /// # Errors
    ///
    /// [`LinkFormatError::MissingValue`], [`LinkFormatError::InvalidValue`] or
    /// [`LinkFormatError::DuplicateAttribute`] for the first bad item.
    pub fn from_query(query: &[&str]) -> Result<Self, LinkFormatError> {
        let mut attrs = Self::default();
        for item in query {
            match item.split_once('=') {
                Some((name, value)) => attrs.apply(name, Some(value))?,
                None => attrs.apply(item, None)?,
            }
        }
        Ok(attrs)
    }

    /// Reads a Write-Attributes query in which a bare name (`pmin`, no value) removes that
    /// attribute (OMA LwM2M TS Core §5.1.2). Returns the attributes to set and the names to
    /// remove (lower case); an unknown bare name is refused.
    pub fn from_query_with_removals(
        query: &[&str],
    ) -> Result<(Self, Vec<String>), LinkFormatError> {
        let mut attrs = Self::default();
        let mut removed = Vec::new();
        for item in query {
            match item.split_once('=') {
                Some((name, value)) => attrs.apply(name, Some(value))?,
                None => {
                    let name = item.to_ascii_lowercase();
                    if !NOTIFICATION_ATTRIBUTES.contains(&name.as_str()) {
                        return Err(LinkFormatError::MissingValue { name });
                    }
                    if !removed.contains(&name) {
                        removed.push(name);
                    }
                }
            }
        }
        Ok((attrs, removed))
    }

    /// The attributes that are set as Uri-Query items (`name=value`), in the
    /// same order as [`Self::to_link_attributes`].
    pub fn to_query(&self) -> Vec<String> {
        self.entries()
            .into_iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect()
    }

    /// Whether no attribute is set.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Set attributes with their wire form; `f64`'s `Display` is the
    /// shortest text that parses back to the same number and never uses an
    /// exponent, so every value is a valid bare ptoken.
    fn entries(&self) -> Vec<(&'static str, String)> {
        let ints = |v: Option<u32>| v.map(|v| v.to_string());
        let floats = |v: Option<f64>| v.map(|v| v.to_string());
        [
            ("pmin", ints(self.pmin)),
            ("pmax", ints(self.pmax)),
            ("gt", floats(self.gt)),
            ("lt", floats(self.lt)),
            ("st", floats(self.st)),
            ("epmin", ints(self.epmin)),
            ("epmax", ints(self.epmax)),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.map(|v| (name, v)))
        .collect()
    }

    fn apply(&mut self, name: &str, value: Option<&str>) -> Result<(), LinkFormatError> {
        let is = |known: &str| name.eq_ignore_ascii_case(known);
        let any = |_: &u32| true;
        let finite = |v: &f64| v.is_finite();
        if is("pmin") {
            set(&mut self.pmin, name, value, any)
        } else if is("pmax") {
            set(&mut self.pmax, name, value, any)
        } else if is("gt") {
            set(&mut self.gt, name, value, finite)
        } else if is("lt") {
            set(&mut self.lt, name, value, finite)
        } else if is("st") {
            set(&mut self.st, name, value, finite)
        } else if is("epmin") {
            set(&mut self.epmin, name, value, any)
        } else if is("epmax") {
            set(&mut self.epmax, name, value, any)
        } else {
            Ok(())
        }
    }
}

/// Parses one notification attribute into its slot. `valid` exists because
/// `f64::from_str` accepts `NaN` and `inf`, which no threshold can be.
fn set<T: FromStr>(
    slot: &mut Option<T>,
    name: &str,
    value: Option<&str>,
    valid: impl Fn(&T) -> bool,
) -> Result<(), LinkFormatError> {
    if slot.is_some() {
        return Err(LinkFormatError::DuplicateAttribute {
            name: name.to_owned(),
        });
    }
    let value = value.ok_or_else(|| LinkFormatError::MissingValue {
        name: name.to_owned(),
    })?;
    let parsed = value
        .parse::<T>()
        .ok()
        .filter(|v| valid(v))
        .ok_or_else(|| LinkFormatError::InvalidValue {
            name: name.to_owned(),
            value: value.to_owned(),
        })?;
    *slot = Some(parsed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    type TestResult = Result<(), LinkFormatError>;

    const REGISTRATION: &str =
        r#"</>;rt="oma.lwm2m";ct=11543,</1/0>,</3/0>;ver=1.1,</3303/0>,</3303/1>"#;

    #[test]
    fn parses_rfc6690_sensor_example() -> TestResult {
        let links = parse(
            br#"</sensors/temp>;rt="temperature-c";if="sensor",</sensors/light>;rt="light-lux";if="sensor""#,
        )?;
        assert_eq!(
            links,
            vec![
                Link::new("/sensors/temp")
                    .with_attr("rt", Some("temperature-c"))
                    .with_attr("if", Some("sensor")),
                Link::new("/sensors/light")
                    .with_attr("rt", Some("light-lux"))
                    .with_attr("if", Some("sensor")),
            ]
        );
        Ok(())
    }

    #[test]
    fn parses_rfc6690_anchor_and_rel_example_with_line_breaks() -> TestResult {
        // RFC 6690 §5 prints its examples with a line break after each comma.
        let payload = "</sensors>;ct=40;title=\"Sensor Index\",\r\n\
             </sensors/temp>;rt=\"temperature-c\";if=\"sensor\",\r\n\
             </sensors/light>;rt=\"light-lux\";if=\"sensor\",\r\n\
             <http://www.example.com/sensors/t123>;anchor=\"/sensors/temp\";rel=\"describedby\",\r\n\
             </t>;anchor=\"/sensors/temp\";rel=\"alternate\"";
        let links = parse_str(payload)?;
        assert_eq!(links.len(), 5);
        assert_eq!(
            links.first().and_then(|l| l.attr("title")),
            Some("Sensor Index")
        );
        assert_eq!(links.first().map(Link::content_formats), Some(vec![40]));
        let t123 = Link::new("http://www.example.com/sensors/t123")
            .with_attr("anchor", Some("/sensors/temp"))
            .with_attr("rel", Some("describedby"));
        assert_eq!(links.get(3), Some(&t123));
        assert_eq!(
            links.get(4),
            Some(
                &Link::new("/t")
                    .with_attr("anchor", Some("/sensors/temp"))
                    .with_attr("rel", Some("alternate"))
            )
        );
        assert_eq!(
            serialize(&[t123]),
            r#"<http://www.example.com/sensors/t123>;anchor="/sensors/temp";rel="describedby""#
        );
        Ok(())
    }

    #[test]
    fn parses_registration_payload_with_rt_and_ct() -> TestResult {
        let links = parse(REGISTRATION.as_bytes())?;
        assert_eq!(
            links,
            vec![
                Link::new("/")
                    .with_attr("rt", Some("oma.lwm2m"))
                    .with_attr("ct", Some("11543")),
                Link::new("/1/0"),
                Link::new("/3/0").with_attr("ver", Some("1.1")),
                Link::new("/3303/0"),
                Link::new("/3303/1"),
            ]
        );
        let root = links.first();
        assert_eq!(root.map(Link::content_formats), Some(vec![11543]));
        assert_eq!(links.get(2).and_then(Link::lwm2m_version), Some("1.1"));
        Ok(())
    }

    #[test]
    fn registration_payload_round_trips_byte_exact() -> TestResult {
        assert_eq!(serialize(&parse_str(REGISTRATION)?), REGISTRATION);
        let short = r#"</>;rt="oma.lwm2m";ct=11543,</1/0>,</3/0>;ver=1.1"#;
        assert_eq!(serialize(&parse_str(short)?), short);
        Ok(())
    }

    #[test]
    fn parses_discover_answer_with_notification_attributes() -> TestResult {
        let payload = "</3/0>;pmin=10;pmax=60,</3/0/1>,</3/0/7>;dim=8,</3/0/13>;gt=50.5";
        let links = parse_str(payload)?;
        assert_eq!(links.len(), 4);
        assert_eq!(
            serialize(&links),
            payload,
            "numeric attributes stay unquoted"
        );

        let object = links
            .first()
            .map(NotificationAttributes::from_link)
            .transpose()?;
        assert_eq!(
            object,
            Some(NotificationAttributes {
                pmin: Some(10),
                pmax: Some(60),
                ..Default::default()
            })
        );
        assert_eq!(links.get(2).and_then(|l| l.attr("dim")), Some("8"));
        let dim_only = links
            .get(2)
            .map(NotificationAttributes::from_link)
            .transpose()?;
        assert!(
            dim_only.is_some_and(|a| a.is_empty()),
            "dim is not a notification attribute"
        );
        let gt = links
            .get(3)
            .map(NotificationAttributes::from_link)
            .transpose()?;
        assert_eq!(gt.and_then(|a| a.gt), Some(50.5));
        Ok(())
    }

    #[test]
    fn parses_quoted_multi_value_ct_list() -> TestResult {
        let links = parse_str(r#"</>;rt="oma.lwm2m";ct="60 110 112 11543""#)?;
        let root = links.first();
        assert_eq!(root.and_then(|l| l.attr("ct")), Some("60 110 112 11543"));
        assert_eq!(
            root.map(Link::content_formats),
            Some(vec![60, 110, 112, 11543])
        );
        assert_eq!(
            serialize(&links),
            r#"</>;rt="oma.lwm2m";ct="60 110 112 11543""#,
            "a ct list is written quoted"
        );
        Ok(())
    }

    #[test]
    fn content_formats_skip_garbage_entries() {
        let link = Link::new("/")
            .with_attr("ct", Some("60 abc  -1 70000 110"))
            .with_attr("CT", Some("112"))
            .with_attr("ct", None);
        assert_eq!(link.content_formats(), vec![60, 110, 112]);
        assert_eq!(Link::new("/").content_formats(), Vec::<u16>::new());
    }

    #[test]
    fn tolerates_whitespace_around_separators() -> TestResult {
        let links = parse_str(" </1/0>, </3/0> ;\tver = 1.1 ,\n</5/0> ; obs \r\n")?;
        assert_eq!(
            links,
            vec![
                Link::new("/1/0"),
                Link::new("/3/0").with_attr("ver", Some("1.1")),
                Link::new("/5/0").with_attr("obs", None),
            ]
        );
        Ok(())
    }

    #[test]
    fn parses_bare_obs_attribute_as_none() -> TestResult {
        let links = parse_str("</3/0/13>;obs;rt=\"x\"")?;
        let link = links.first();
        assert_eq!(
            link.and_then(|l| l.attributes.first()),
            Some(&LinkAttribute::new("obs", None))
        );
        assert!(link.is_some_and(|l| l.has_attr("obs") && l.has_attr("OBS")));
        assert_eq!(link.and_then(|l| l.attr("obs")), None);
        assert_eq!(link.and_then(|l| l.attr("RT")), Some("x"));
        assert_eq!(serialize(&links), "</3/0/13>;obs;rt=\"x\"");
        Ok(())
    }

    #[test]
    fn parses_quoted_value_with_escaped_quote_and_backslash() -> TestResult {
        let links = parse_str(r#"</a>;title="say \"hi\", \\o/; \x";b=ok"#)?;
        let link = links.first();
        assert_eq!(
            link.and_then(|l| l.attr("title")),
            Some(r#"say "hi", \o/; x"#)
        );
        assert_eq!(link.and_then(|l| l.attr("b")), Some("ok"));
        assert_eq!(
            serialize(&links),
            r#"</a>;title="say \"hi\", \\o/; x";b=ok"#
        );
        Ok(())
    }

    #[test]
    fn accepts_utf8_in_quoted_and_bare_values() -> TestResult {
        let links = parse_str("</a>;title=\"Température\";x=né")?;
        let link = links.first();
        assert_eq!(link.and_then(|l| l.attr("title")), Some("Température"));
        assert_eq!(link.and_then(|l| l.attr("x")), Some("né"));
        assert_eq!(serialize(&links), "</a>;title=\"Température\";x=\"né\"");
        Ok(())
    }

    #[test]
    fn accepts_extended_star_attribute_names_and_ptoken_punctuation() -> TestResult {
        let links = parse_str("<>;title*=UTF-8'de'n%c3%a4chstes;u=coap://h:5683/a?b=c+d")?;
        let link = links.first();
        assert_eq!(link.map(|l| l.target.as_str()), Some(""));
        assert_eq!(
            link.and_then(|l| l.attr("title*")),
            Some("UTF-8'de'n%c3%a4chstes")
        );
        assert_eq!(
            link.and_then(|l| l.attr("u")),
            Some("coap://h:5683/a?b=c+d")
        );
        Ok(())
    }

    #[test]
    fn empty_value_is_kept_and_written_quoted() -> TestResult {
        let links = parse_str(r#"</a>;x=;y="""#)?;
        let link = links.first();
        assert_eq!(link.and_then(|l| l.attr("x")), Some(""));
        assert_eq!(link.and_then(|l| l.attr("y")), Some(""));
        assert_eq!(serialize(&links), r#"</a>;x="";y="""#);
        Ok(())
    }

    #[test]
    fn empty_or_blank_payload_parses_to_no_links() -> TestResult {
        assert_eq!(parse(b"")?, Vec::new());
        assert_eq!(parse(b" \r\n\t")?, Vec::new());
        assert_eq!(serialize(&[]), "");
        Ok(())
    }

    #[test]
    fn serializer_quotes_conventional_attributes_and_leaves_numbers_bare() {
        let link = Link::new("/3/0")
            .with_attr("rt", Some("a"))
            .with_attr("if", Some("b"))
            .with_attr("rel", Some("c"))
            .with_attr("anchor", Some("/d"))
            .with_attr("title", Some("e"))
            .with_attr("rev", Some("f"))
            .with_attr("type", Some("g"))
            .with_attr("ct", Some("40"))
            .with_attr("pmin", Some("1"))
            .with_attr("pmax", Some("2"))
            .with_attr("gt", Some("3.5"))
            .with_attr("lt", Some("-4"))
            .with_attr("st", Some("0.5"))
            .with_attr("epmin", Some("5"))
            .with_attr("epmax", Some("6"))
            .with_attr("ver", Some("1.2"))
            .with_attr("ssid", Some("101"))
            .with_attr("dim", Some("8"));
        assert_eq!(
            link.to_string(),
            r#"</3/0>;rt="a";if="b";rel="c";anchor="/d";title="e";rev="f";type="g";ct=40;pmin=1;pmax=2;gt=3.5;lt=-4;st=0.5;epmin=5;epmax=6;ver=1.2;ssid=101;dim=8"#
        );
    }

    #[test]
    fn display_matches_serialize_for_one_link() {
        let link = Link::new("/1/0")
            .with_attr("ssid", Some("1"))
            .with_attr("obs", None);
        assert_eq!(link.to_string(), serialize(std::slice::from_ref(&link)));
        assert_eq!(link.to_string(), "</1/0>;ssid=1;obs");
    }

    #[test]
    fn serializer_percent_encodes_angle_brackets_in_targets() -> TestResult {
        let text = serialize(&[Link::new("/a<b>c")]);
        assert_eq!(text, "</a%3Cb%3Ec>");
        assert_eq!(parse_str(&text)?, vec![Link::new("/a%3Cb%3Ec")]);
        Ok(())
    }

    #[test]
    fn rejects_missing_opening_angle_bracket() {
        assert_eq!(
            parse(b"/1/0>"),
            Err(LinkFormatError::MissingTargetStart { position: 0 })
        );
        assert_eq!(
            parse(b"</1/0>, /3/0>"),
            Err(LinkFormatError::MissingTargetStart { position: 8 })
        );
    }

    #[test]
    fn rejects_trailing_comma() {
        assert_eq!(
            parse(b"</1/0>,"),
            Err(LinkFormatError::MissingTargetStart { position: 7 })
        );
    }

    #[test]
    fn rejects_missing_closing_angle_bracket() {
        assert_eq!(
            parse(b"</1/0"),
            Err(LinkFormatError::UnterminatedTarget { position: 0 })
        );
        // Without the `<` check this would parse as one link whose target
        // swallowed the next one.
        assert_eq!(
            parse(b"</1/0>,</3/0;ver=1.1,</5/0>"),
            Err(LinkFormatError::UnterminatedTarget { position: 7 })
        );
    }

    #[test]
    fn rejects_unterminated_quoted_string() {
        assert_eq!(
            parse(br#"</>;rt="oma.lwm2m"#),
            Err(LinkFormatError::UnterminatedQuotedString { position: 7 })
        );
        assert_eq!(
            parse(br#"</>;rt="a\"#),
            Err(LinkFormatError::UnterminatedQuotedString { position: 7 })
        );
        assert_eq!(
            parse(br#"</>;rt="a\""#),
            Err(LinkFormatError::UnterminatedQuotedString { position: 7 })
        );
    }

    #[test]
    fn rejects_empty_attribute_name() {
        assert_eq!(
            parse(b"</1/0>;=5"),
            Err(LinkFormatError::EmptyAttributeName { position: 7 })
        );
        assert_eq!(
            parse(b"</1/0>;,</2/0>"),
            Err(LinkFormatError::EmptyAttributeName { position: 7 })
        );
        assert_eq!(
            parse(b"</1/0>;"),
            Err(LinkFormatError::EmptyAttributeName { position: 7 })
        );
    }

    #[test]
    fn rejects_invalid_utf8_with_its_position() {
        let err = parse(b"</1/0>;title=\"\xff\"");
        assert_eq!(err, Err(LinkFormatError::InvalidUtf8 { position: 14 }));
        assert_eq!(err.err().and_then(|e| e.position()), Some(14));
    }

    #[test]
    fn rejects_garbage_between_links() {
        assert_eq!(
            parse_str("</1/0> x"),
            Err(LinkFormatError::UnexpectedCharacter {
                found: 'x',
                position: 7
            })
        );
        assert_eq!(
            parse_str("</1/0>;rt=a b"),
            Err(LinkFormatError::UnexpectedCharacter {
                found: 'b',
                position: 12
            })
        );
        assert_eq!(
            parse_str(r#"</1/0>;rt="a"b"#),
            Err(LinkFormatError::UnexpectedCharacter {
                found: 'b',
                position: 13
            })
        );
    }

    #[test]
    fn rejects_value_over_the_cap_and_accepts_one_at_it() -> TestResult {
        let at_cap = "a".repeat(MAX_VALUE_LEN);
        let links = parse_str(&format!("</>;x={at_cap};y=\"{at_cap}\""))?;
        let link = links.first();
        assert_eq!(
            link.and_then(|l| l.attr("x")).map(str::len),
            Some(MAX_VALUE_LEN)
        );
        assert_eq!(
            link.and_then(|l| l.attr("y")).map(str::len),
            Some(MAX_VALUE_LEN)
        );

        let over = "a".repeat(MAX_VALUE_LEN + 1);
        let too_long = Err(LinkFormatError::ValueTooLong {
            position: 6,
            max: MAX_VALUE_LEN,
        });
        assert_eq!(parse_str(&format!("</>;x={over}")), too_long);
        assert_eq!(parse_str(&format!("</>;x=\"{over}\"")), too_long);
        // Escapes count after unescaping, and the cap trips on the escape too.
        let escaped_over = format!("</>;x=\"{}\\\"\"", "a".repeat(MAX_VALUE_LEN));
        assert_eq!(parse_str(&escaped_over), too_long);
        Ok(())
    }

    #[test]
    fn rejects_more_links_than_the_cap() -> TestResult {
        let at_cap = vec!["<>"; MAX_LINKS].join(",");
        assert_eq!(parse_str(&at_cap)?.len(), MAX_LINKS);
        let over = format!("{at_cap},<>");
        assert_eq!(
            parse_str(&over),
            Err(LinkFormatError::TooManyLinks {
                position: at_cap.len() + 1,
                max: MAX_LINKS
            })
        );
        Ok(())
    }

    #[test]
    fn notification_attributes_from_query() -> TestResult {
        let attrs = NotificationAttributes::from_query(&[
            "pmin=10", "pmax=60", "gt=20.5", "lt=-3", "st=0.25", "epmin=1", "epmax=30", "edge=1",
        ])?;
        assert_eq!(
            attrs,
            NotificationAttributes {
                pmin: Some(10),
                pmax: Some(60),
                gt: Some(20.5),
                lt: Some(-3.0),
                st: Some(0.25),
                epmin: Some(1),
                epmax: Some(30),
            }
        );
        assert_eq!(
            attrs.to_query(),
            vec!["pmin=10", "pmax=60", "gt=20.5", "lt=-3", "st=0.25", "epmin=1", "epmax=30"]
        );
        Ok(())
    }

    #[test]
    fn notification_floats_use_shortest_display() {
        let attrs = NotificationAttributes {
            gt: Some(20.0),
            lt: Some(20.5),
            ..Default::default()
        };
        assert_eq!(attrs.to_query(), vec!["gt=20", "lt=20.5"]);
        assert_eq!(
            attrs.to_link_attributes(),
            vec![
                LinkAttribute::new("gt", Some("20")),
                LinkAttribute::new("lt", Some("20.5")),
            ]
        );
    }

    #[test]
    fn notification_attributes_keep_spec_order_in_links() {
        let attrs = NotificationAttributes {
            epmax: Some(7),
            st: Some(1.5),
            pmin: Some(1),
            ..Default::default()
        };
        let link = Link {
            target: "/3303/0/5700".to_owned(),
            attributes: attrs.to_link_attributes(),
        };
        assert_eq!(link.to_string(), "</3303/0/5700>;pmin=1;st=1.5;epmax=7");
    }

    #[test]
    fn notification_attributes_reject_bare_pmin_query() {
        assert_eq!(
            NotificationAttributes::from_query(&["pmin"]),
            Err(LinkFormatError::MissingValue {
                name: "pmin".to_owned()
            })
        );
        assert_eq!(
            NotificationAttributes::from_link(&Link::new("/3/0").with_attr("gt", None)),
            Err(LinkFormatError::MissingValue {
                name: "gt".to_owned()
            })
        );
    }

    #[test]
    fn notification_attributes_reject_bad_numbers() {
        for (item, name, value) in [
            ("pmin=-1", "pmin", "-1"),
            ("pmax=1.5", "pmax", "1.5"),
            ("epmin=", "epmin", ""),
            ("epmax=4294967296", "epmax", "4294967296"),
            ("gt=NaN", "gt", "NaN"),
            ("lt=inf", "lt", "inf"),
            ("st=1e400", "st", "1e400"),
            ("gt=abc", "gt", "abc"),
        ] {
            assert_eq!(
                NotificationAttributes::from_query(&[item]),
                Err(LinkFormatError::InvalidValue {
                    name: name.to_owned(),
                    value: value.to_owned()
                }),
                "{item}"
            );
        }
    }

    #[test]
    fn notification_attributes_reject_duplicates() {
        assert_eq!(
            NotificationAttributes::from_query(&["pmin=1", "PMIN=2"]),
            Err(LinkFormatError::DuplicateAttribute {
                name: "PMIN".to_owned()
            })
        );
    }

    #[test]
    fn notification_attributes_empty_by_default() {
        assert!(NotificationAttributes::default().is_empty());
        assert!(NotificationAttributes::default().to_query().is_empty());
        assert!(NotificationAttributes::default()
            .to_link_attributes()
            .is_empty());
        assert!(!NotificationAttributes {
            st: Some(0.0),
            ..Default::default()
        }
        .is_empty());
    }

    #[test]
    fn syntax_errors_report_a_position_and_value_errors_do_not() {
        assert_eq!(
            LinkFormatError::UnterminatedTarget { position: 3 }.position(),
            Some(3)
        );
        assert_eq!(
            LinkFormatError::MissingValue {
                name: "pmin".to_owned()
            }
            .position(),
            None
        );
    }

    fn link_strategy() -> impl Strategy<Value = Link> {
        let name = "[A-Za-z0-9!#$&+.^_`|~-]{1,8}";
        let value = prop_oneof![
            "[ -~]{0,16}",
            "[a-z0-9.:/+-]{1,8}",
            "\\PC{0,12}",
            Just(r#"\""#.to_owned()),
        ];
        let attribute = (name, proptest::option::of(value))
            .prop_map(|(name, value)| LinkAttribute { name, value });
        (
            "/[0-9a-z/._-]{0,20}",
            proptest::collection::vec(attribute, 0..5),
        )
            .prop_map(|(target, attributes)| Link { target, attributes })
    }

    fn finite_f64() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<f64>().prop_filter("finite", |v| v.is_finite()),
            (-1_000_000i32..1_000_000).prop_map(|v| f64::from(v) / 4.0),
        ]
    }

    fn notification_strategy() -> impl Strategy<Value = NotificationAttributes> {
        use proptest::option::of;
        (
            of(any::<u32>()),
            of(any::<u32>()),
            of(finite_f64()),
            of(finite_f64()),
            of(finite_f64()),
            of(any::<u32>()),
            of(any::<u32>()),
        )
            .prop_map(
                |(pmin, pmax, gt, lt, st, epmin, epmax)| NotificationAttributes {
                    pmin,
                    pmax,
                    gt,
                    lt,
                    st,
                    epmin,
                    epmax,
                },
            )
    }

    proptest! {
        #[test]
        fn parse_never_panics_on_arbitrary_bytes(
            bytes in proptest::collection::vec(any::<u8>(), 0..256),
        ) {
            let _ = parse(&bytes);
        }

        #[test]
        fn parse_never_panics_on_link_format_like_text(
            text in r#"[<>;=,"\\ \t/a-z0-9.*é]{0,96}"#,
        ) {
            if let Err(e) = parse_str(&text) {
                prop_assert!(e.position().is_some_and(|p| p <= text.len()));
            }
        }

        #[test]
        fn serialize_then_parse_round_trips(
            links in proptest::collection::vec(link_strategy(), 0..6),
        ) {
            let text = serialize(&links);
            prop_assert_eq!(parse_str(&text), Ok(links));
        }

        #[test]
        fn notification_attributes_round_trip_through_query(attrs in notification_strategy()) {
            let query = attrs.to_query();
            let items: Vec<&str> = query.iter().map(String::as_str).collect();
            prop_assert_eq!(NotificationAttributes::from_query(&items), Ok(attrs));
        }

        #[test]
        fn notification_attributes_round_trip_through_link(attrs in notification_strategy()) {
            let link = Link { target: "/3/0".to_owned(), attributes: attrs.to_link_attributes() };
            prop_assert_eq!(NotificationAttributes::from_link(&link), Ok(attrs.clone()));
            let reparsed = parse_str(&link.to_string())?;
            prop_assert_eq!(reparsed.first().map(NotificationAttributes::from_link), Some(Ok(attrs)));
        }
    }
}
