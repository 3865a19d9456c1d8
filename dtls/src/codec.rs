//! Bounds-checked reading and writing of the TLS presentation language (RFC 5246 §4):
//! big-endian integers of 1, 2, 3 and 6 bytes and length-prefixed vectors.
//!
//! Every parser in this crate reads peer bytes through [`Reader`], so a short or lying length
//! becomes [`DecodeError`], never a panic or an out-of-bounds index. A length or number the
//! wire format can carry but the protocol does not allow is refused as
//! [`DecodeError::OutOfRange`], which names the field and the accepted range.
//!
//! Everything this crate sends is written through [`Writer`], whose length prefixes and
//! 24- and 48-bit integers are checked: a value that does not fit its field is an
//! [`EncodeError`] naming the field, never a length cut to its low bytes (which the peer would
//! read as a different message).

/// Largest value of a 24-bit field (RFC 5246 §4.4 `uint24`).
pub const MAX_U24: u32 = (1 << 24) - 1;
/// Largest value of a 48-bit field (the DTLS record sequence number, RFC 6347 §4.1).
pub const MAX_U48: u64 = (1 << 48) - 1;

/// `n` as a u64, for error reports and range bounds. usize is at most 64 bits on every
/// supported target; the fallback saturates rather than wraps if that ever changes.
pub fn wide(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// Peer bytes that do not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes ended early, a length field pointed past them, bytes were left over, or the
    /// structure is otherwise not what the RFC describes.
    #[error("truncated or malformed message")]
    Malformed,
    /// A number the peer sent lies outside the range the RFC (or this engine) accepts.
    #[error("{field} is {value}, outside the accepted range {min}..={max}")]
    OutOfRange {
        field: &'static str,
        value: u64,
        min: u64,
        max: u64,
    },
}

impl DecodeError {
    /// `Ok` if `min <= value <= max`, else [`DecodeError::OutOfRange`] naming `field`.
    pub fn check(
        field: &'static str,
        value: impl Into<u64>,
        min: u64,
        max: u64,
    ) -> Result<(), Self> {
        let value = value.into();
        if (min..=max).contains(&value) {
            Ok(())
        } else {
            Err(Self::OutOfRange {
                field,
                value,
                min,
                max,
            })
        }
    }
}

/// A value of ours too long for the length field (or too large for the integer field) that
/// has to carry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{field} is {value}, more than its field can carry ({max})")]
pub struct EncodeError {
    pub field: &'static str,
    pub value: u64,
    pub max: u64,
}

impl EncodeError {
    /// The error for a `value` of `field` above `max`.
    pub fn new(field: &'static str, value: usize, max: u64) -> Self {
        Self {
            field,
            value: wide(value),
            max,
        }
    }

    /// `Ok(())` if `value <= max`, else the error naming `field`.
    pub fn check(field: &'static str, value: usize, max: u64) -> Result<(), Self> {
        let err = Self::new(field, value, max);
        if err.value <= max {
            Ok(())
        } else {
            Err(err)
        }
    }
}

/// A cursor over peer bytes.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    /// Bytes not yet read.
    pub fn rest(&self) -> &'a [u8] {
        self.buf
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Takes the next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.buf.len() {
            return Err(DecodeError::Malformed);
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    /// Takes exactly `N` bytes as an array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub fn u24(&mut self) -> Result<u32, DecodeError> {
        let [a, b, c] = self.array()?;
        Ok(u32::from_be_bytes([0, a, b, c]))
    }

    pub fn u48(&mut self) -> Result<u64, DecodeError> {
        let [a, b, c, d, e, f] = self.array()?;
        Ok(u64::from_be_bytes([0, 0, a, b, c, d, e, f]))
    }

    /// A vector with a one-byte length prefix.
    pub fn vec8(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.u8()?;
        self.take(n.into())
    }

    /// A vector with a two-byte length prefix.
    pub fn vec16(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.u16()?;
        self.take(n.into())
    }

    /// A vector with a three-byte length prefix.
    pub fn vec24(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.u24()?;
        // A u24 fits usize on every target with at least 32-bit pointers; on a smaller one
        // it cannot fit the buffer either.
        self.take(usize::try_from(n).map_err(|_| DecodeError::Malformed)?)
    }

    /// A vector with a one-byte length prefix whose length must lie in `min..=max` (the
    /// `<min..max>` of the RFC's presentation language, or a tighter limit of this engine).
    /// The length is checked before the bytes are taken, so a refused length names the field
    /// even when the bytes are also missing.
    pub fn vec8_in(
        &mut self,
        field: &'static str,
        min: u64,
        max: u64,
    ) -> Result<&'a [u8], DecodeError> {
        let n = self.u8()?;
        DecodeError::check(field, n, min, max)?;
        self.take(n.into())
    }

    /// [`Reader::vec8_in`] with a two-byte length prefix.
    pub fn vec16_in(
        &mut self,
        field: &'static str,
        min: u64,
        max: u64,
    ) -> Result<&'a [u8], DecodeError> {
        let n = self.u16()?;
        DecodeError::check(field, n, min, max)?;
        self.take(n.into())
    }

    /// [`Reader::vec8_in`] with a three-byte length prefix.
    pub fn vec24_in(
        &mut self,
        field: &'static str,
        min: u64,
        max: u64,
    ) -> Result<&'a [u8], DecodeError> {
        let n = self.u24()?;
        DecodeError::check(field, n, min, max)?;
        self.take(usize::try_from(n).map_err(|_| DecodeError::Malformed)?)
    }

    /// Fails unless every byte was read: trailing bytes in a message are an error.
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Malformed)
        }
    }
}

/// Appends TLS-encoded values to a `Vec<u8>`.
///
/// The fixed-width `u8` and `u16` writers cannot fail. Everything whose value may not fit its
/// field takes the field's name and returns [`EncodeError`] instead of writing: a caller that
/// gets an error must drop what it was building (the output may hold a partial message).
pub trait Writer {
    fn put_u8(&mut self, v: u8);
    fn put_u16(&mut self, v: u16);
    /// A 24-bit integer; values above [`MAX_U24`] are refused.
    fn put_u24(&mut self, field: &'static str, v: u32) -> Result<(), EncodeError>;
    /// A 48-bit integer; values above [`MAX_U48`] are refused.
    fn put_u48(&mut self, field: &'static str, v: u64) -> Result<(), EncodeError>;
    /// `data` with a one-byte length prefix; longer than 255 bytes is refused.
    fn put_vec8(&mut self, field: &'static str, data: &[u8]) -> Result<(), EncodeError>;
    /// `data` with a two-byte length prefix; longer than 65535 bytes is refused.
    fn put_vec16(&mut self, field: &'static str, data: &[u8]) -> Result<(), EncodeError>;
    /// `data` with a three-byte length prefix; longer than [`MAX_U24`] bytes is refused.
    fn put_vec24(&mut self, field: &'static str, data: &[u8]) -> Result<(), EncodeError>;
    /// Writes a two-byte length placeholder and returns its position for [`Writer::patch_len16`].
    fn begin_len16(&mut self) -> usize;
    /// Fills the placeholder at `at` with the number of bytes written after it; refused if
    /// that is more than 65535.
    fn patch_len16(&mut self, field: &'static str, at: usize) -> Result<(), EncodeError>;
}

impl Writer for Vec<u8> {
    fn put_u8(&mut self, v: u8) {
        self.push(v);
    }
    fn put_u16(&mut self, v: u16) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_u24(&mut self, field: &'static str, v: u32) -> Result<(), EncodeError> {
        if v > MAX_U24 {
            return Err(EncodeError {
                field,
                value: v.into(),
                max: MAX_U24.into(),
            });
        }
        let [_, a, b, c] = v.to_be_bytes();
        self.extend_from_slice(&[a, b, c]);
        Ok(())
    }
    fn put_u48(&mut self, field: &'static str, v: u64) -> Result<(), EncodeError> {
        if v > MAX_U48 {
            return Err(EncodeError {
                field,
                value: v,
                max: MAX_U48,
            });
        }
        let [_, _, a, b, c, d, e, f] = v.to_be_bytes();
        self.extend_from_slice(&[a, b, c, d, e, f]);
        Ok(())
    }
    fn put_vec8(&mut self, field: &'static str, data: &[u8]) -> Result<(), EncodeError> {
        let n = u8::try_from(data.len())
            .map_err(|_| EncodeError::new(field, data.len(), u8::MAX.into()))?;
        self.push(n);
        self.extend_from_slice(data);
        Ok(())
    }
    fn put_vec16(&mut self, field: &'static str, data: &[u8]) -> Result<(), EncodeError> {
        let n = u16::try_from(data.len())
            .map_err(|_| EncodeError::new(field, data.len(), u16::MAX.into()))?;
        self.put_u16(n);
        self.extend_from_slice(data);
        Ok(())
    }
    fn put_vec24(&mut self, field: &'static str, data: &[u8]) -> Result<(), EncodeError> {
        let n = u32::try_from(data.len())
            .map_err(|_| EncodeError::new(field, data.len(), MAX_U24.into()))?;
        self.put_u24(field, n)?;
        self.extend_from_slice(data);
        Ok(())
    }
    fn begin_len16(&mut self) -> usize {
        let at = self.len();
        self.extend_from_slice(&[0, 0]);
        at
    }
    fn patch_len16(&mut self, field: &'static str, at: usize) -> Result<(), EncodeError> {
        let written = self.len().saturating_sub(at.saturating_add(2));
        let n = u16::try_from(written)
            .map_err(|_| EncodeError::new(field, written, u16::MAX.into()))?;
        match self.get_mut(at..at.saturating_add(2)) {
            Some(slot) => {
                slot.copy_from_slice(&n.to_be_bytes());
                Ok(())
            }
            // `at` did not come from `begin_len16` on this vector.
            None => Err(EncodeError::new(field, at, wide(self.len()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_round_trip() {
        let mut w = Vec::new();
        w.put_u8(1);
        w.put_u16(0x0203);
        w.put_u24("a", 0x040506).unwrap();
        w.put_u48("b", 0x0708090a0b0c).unwrap();
        w.put_vec8("c", b"ab").unwrap();
        let at = w.begin_len16();
        w.put_vec24("d", b"xyz").unwrap();
        w.patch_len16("e", at).unwrap();
        let mut r = Reader::new(&w);
        assert_eq!(r.u8(), Ok(1));
        assert_eq!(r.u16(), Ok(0x0203));
        assert_eq!(r.u24(), Ok(0x040506));
        assert_eq!(r.u48(), Ok(0x0708090a0b0c));
        assert_eq!(r.vec8(), Ok(&b"ab"[..]));
        let mut inner = Reader::new(r.vec16().unwrap());
        assert_eq!(inner.vec24(), Ok(&b"xyz"[..]));
        assert!(inner.finish().is_ok() && r.finish().is_ok());
    }

    #[test]
    fn lying_lengths_are_errors() {
        assert_eq!(Reader::new(&[5, 1, 2]).vec8(), Err(DecodeError::Malformed));
        assert_eq!(Reader::new(&[0, 9]).vec16(), Err(DecodeError::Malformed));
        assert_eq!(Reader::new(&[1, 2]).u24(), Err(DecodeError::Malformed));
        assert!(Reader::new(&[1]).finish().is_err());
    }

    #[test]
    fn lengths_outside_their_range_name_the_field() {
        let out_of_range = |value, min, max| DecodeError::OutOfRange {
            field: "f",
            value,
            min,
            max,
        };
        // Refused before the bytes are looked at, so the error says why.
        assert_eq!(
            Reader::new(&[33]).vec8_in("f", 0, 32),
            Err(out_of_range(33, 0, 32))
        );
        assert_eq!(
            Reader::new(&[0, 0]).vec16_in("f", 2, 10),
            Err(out_of_range(0, 2, 10))
        );
        assert_eq!(
            Reader::new(&[0, 0x40, 1]).vec24_in("f", 1, 0x4000),
            Err(out_of_range(0x4001, 1, 0x4000))
        );
        // In range but missing bytes is still a truncation.
        assert_eq!(
            Reader::new(&[3, 1]).vec8_in("f", 0, 32),
            Err(DecodeError::Malformed)
        );
        assert_eq!(
            Reader::new(&[2, 7, 8]).vec8_in("f", 2, 2),
            Ok(&[7u8, 8][..])
        );
    }

    #[test]
    fn values_too_large_for_their_field_are_refused_not_truncated() {
        let mut w = Vec::new();
        let err = |value, max| EncodeError {
            field: "f",
            value,
            max,
        };
        assert_eq!(w.put_vec8("f", &[0; 256]), Err(err(256, 255)));
        assert_eq!(w.put_vec16("f", &vec![0; 65536]), Err(err(65536, 65535)));
        assert_eq!(
            w.put_u24("f", 1 << 24),
            Err(err(1 << 24, u64::from(MAX_U24)))
        );
        assert_eq!(w.put_u48("f", 1 << 48), Err(err(1 << 48, MAX_U48)));
        assert!(w.is_empty(), "nothing written for a refused value");
        let at = w.begin_len16();
        w.extend_from_slice(&vec![0; 65536]);
        assert_eq!(w.patch_len16("f", at), Err(err(65536, 65535)));
        // The largest values that fit are written whole.
        let mut w = Vec::new();
        w.put_vec8("f", &[0; 255]).unwrap();
        w.put_u24("f", MAX_U24).unwrap();
        w.put_u48("f", MAX_U48).unwrap();
        assert_eq!(w.len(), 1 + 255 + 3 + 6);
        assert_eq!(&w[256..], &[0xff; 9]);
    }
}
