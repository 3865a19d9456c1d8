//! Bounds-checked reading and writing of the TLS presentation language (RFC 5246 §4):
//! big-endian integers of 1, 2, 3 and 6 bytes and length-prefixed vectors.
//!
//! Every parser in this crate reads peer bytes through [`Reader`], so a short or lying length
//! becomes [`DecodeError`], never a panic or an out-of-bounds index.

/// The bytes ended early, or a length field pointed past them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("truncated or malformed message")]
pub struct DecodeError;

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
            return Err(DecodeError);
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
        self.take(n as usize)
    }

    /// Fails unless every byte was read: trailing bytes in a message are an error.
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError)
        }
    }
}

/// Appends TLS-encoded values to a `Vec<u8>`.
pub trait Writer {
    fn put_u8(&mut self, v: u8);
    fn put_u16(&mut self, v: u16);
    fn put_u24(&mut self, v: u32);
    fn put_u48(&mut self, v: u64);
    /// `data` with a one-byte length prefix (callers keep it under 256 bytes).
    fn put_vec8(&mut self, data: &[u8]);
    /// `data` with a two-byte length prefix (callers keep it under 64 KiB).
    fn put_vec16(&mut self, data: &[u8]);
    /// `data` with a three-byte length prefix.
    fn put_vec24(&mut self, data: &[u8]);
    /// Writes a two-byte length placeholder and returns its position for [`Writer::patch_len16`].
    fn begin_len16(&mut self) -> usize;
    /// Fills the placeholder at `at` with the number of bytes written after it.
    fn patch_len16(&mut self, at: usize);
}

impl Writer for Vec<u8> {
    fn put_u8(&mut self, v: u8) {
        self.push(v);
    }
    fn put_u16(&mut self, v: u16) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_u24(&mut self, v: u32) {
        self.extend_from_slice(&v.to_be_bytes()[1..]);
    }
    fn put_u48(&mut self, v: u64) {
        self.extend_from_slice(&v.to_be_bytes()[2..]);
    }
    fn put_vec8(&mut self, data: &[u8]) {
        debug_assert!(data.len() <= usize::from(u8::MAX));
        self.push(data.len() as u8);
        self.extend_from_slice(data);
    }
    fn put_vec16(&mut self, data: &[u8]) {
        debug_assert!(data.len() <= usize::from(u16::MAX));
        self.put_u16(data.len() as u16);
        self.extend_from_slice(data);
    }
    fn put_vec24(&mut self, data: &[u8]) {
        self.put_u24(data.len() as u32);
        self.extend_from_slice(data);
    }
    fn begin_len16(&mut self) -> usize {
        let at = self.len();
        self.extend_from_slice(&[0, 0]);
        at
    }
    fn patch_len16(&mut self, at: usize) {
        let n = (self.len() - at - 2) as u16;
        if let Some(slot) = self.get_mut(at..at + 2) {
            slot.copy_from_slice(&n.to_be_bytes());
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
        w.put_u24(0x040506);
        w.put_u48(0x0708090a0b0c);
        w.put_vec8(b"ab");
        let at = w.begin_len16();
        w.put_vec24(b"xyz");
        w.patch_len16(at);
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
        assert_eq!(Reader::new(&[5, 1, 2]).vec8(), Err(DecodeError));
        assert_eq!(Reader::new(&[0, 9]).vec16(), Err(DecodeError));
        assert_eq!(Reader::new(&[1, 2]).u24(), Err(DecodeError));
        assert!(Reader::new(&[1]).finish().is_err());
    }
}
