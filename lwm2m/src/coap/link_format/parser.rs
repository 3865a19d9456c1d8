//! The RFC 6690 §2 grammar of `application/link-format`, as a recursive-descent parser
//! that reads peer bytes only through [`Reader`], so hostile input gives an error, never a
//! panic; and the character classes the serializer shares with it.
use super::{Link, LinkAttribute, LinkFormatError, MAX_LINKS, MAX_VALUE_LEN};
use crate::reader::Reader;

/// RFC 6690 §2 `ptokenchar`: what an unquoted value may contain.
pub(super) fn is_ptoken_char(b: u8) -> bool {
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
pub(super) struct Parser<'a> {
    src: &'a str,
    r: Reader<'a>,
}

impl<'a> Parser<'a> {
    pub(super) fn new(src: &'a str) -> Self {
        Self {
            src,
            r: Reader::new(src.as_bytes()),
        }
    }

    pub(super) fn links(mut self) -> Result<Vec<Link>, LinkFormatError> {
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
