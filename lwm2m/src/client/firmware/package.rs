//! The firmware package format the simulated devices install, and its streaming check
//! (OMA LwM2M TS 1.2 Core Appendix E.6 leaves the package format to the device; Update
//! Result 5 "integrity check failure" and 6 "unsupported package type" are what a device
//! reports when a package fails these checks).
//!
//! A package is `b"LWM2MFW1\n" + version + b"\n" + hex(sha256(payload)) + b"\n" + payload`:
//! the version is what `/3/0/3` becomes after the update. A pulled package's ETag is the
//! first 8 bytes of the SHA-256 of the whole package.
//!
//! The check runs over the bytes as they arrive, so a device keeps two hash states and the
//! header, not the package: thousands of simulated devices can download at once.
use sha2::{Digest, Sha256};

/// The first line of every package.
pub const PACKAGE_MAGIC: &[u8] = b"LWM2MFW1\n";
/// Longest version accepted (PkgVersion `/5/0/7` is a string of 0..255 bytes).
const MAX_VERSION: usize = 255;
/// Longest header: magic, version and newline, 64 hex digits and newline.
const MAX_HEADER: usize = PACKAGE_MAGIC.len() + MAX_VERSION + 1 + 64 + 1;

/// Builds a package carrying `payload` as firmware `version`.
pub fn firmware_package(version: &str, payload: &[u8]) -> Vec<u8> {
    let digest = Sha256::digest(payload);
    let mut out = Vec::with_capacity(PACKAGE_MAGIC.len() + version.len() + 66 + payload.len());
    out.extend_from_slice(PACKAGE_MAGIC);
    out.extend_from_slice(version.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(hex::encode(digest).as_bytes());
    out.push(b'\n');
    out.extend_from_slice(payload);
    out
}

/// The ETag a server gives a package it serves for pull: the first 8 bytes of its SHA-256.
pub fn package_etag(package: &[u8]) -> [u8; 8] {
    let digest = Sha256::digest(package);
    let mut etag = [0; 8];
    etag.copy_from_slice(digest.get(..8).unwrap_or(&[0; 8]));
    etag
}

fn unhex(text: &[u8]) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

/// Why a package was refused, as the Update Result (`/5/0/5`) it sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reject {
    /// 5: the payload's SHA-256, or the ETag, does not match.
    Integrity,
    /// 6: not a package in this format.
    Unsupported,
}

impl Reject {
    pub(crate) fn result(self) -> i64 {
        match self {
            Reject::Integrity => 5,
            Reject::Unsupported => 6,
        }
    }
}

/// A package checked whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Verified {
    /// The firmware version it carries.
    pub(crate) version: String,
    /// SHA-256 of the whole package (its first 8 bytes are the pull ETag).
    pub(crate) digest: [u8; 32],
}

/// The streaming check of one package.
#[derive(Debug, Clone, Default)]
pub(crate) struct PackageCheck {
    /// Header bytes until the header is complete (at most `MAX_HEADER`).
    header: Vec<u8>,
    /// Version and expected payload digest, once the header is read.
    parsed: Option<(String, [u8; 32])>,
    payload: Sha256,
    whole: Sha256,
}

impl PackageCheck {
    /// Takes the next bytes of the package. Fails as soon as the header is not the format.
    pub(crate) fn feed(&mut self, mut data: &[u8]) -> Result<(), Reject> {
        self.whole.update(data);
        while self.parsed.is_none() && !data.is_empty() {
            let (first, rest) = data.split_at(1);
            self.header.extend_from_slice(first);
            data = rest;
            self.header_step()?;
        }
        if self.parsed.is_some() {
            self.payload.update(data);
        }
        Ok(())
    }

    /// Looks at the header after one more byte.
    fn header_step(&mut self) -> Result<(), Reject> {
        let h = &self.header;
        let magic = PACKAGE_MAGIC.len();
        if h.len() <= magic {
            return if PACKAGE_MAGIC.starts_with(h) {
                Ok(())
            } else {
                Err(Reject::Unsupported)
            };
        }
        if h.len() > MAX_HEADER {
            return Err(Reject::Unsupported);
        }
        let body = h.get(magic..).unwrap_or_default();
        let mut lines = body.split(|b| *b == b'\n');
        let (Some(version), Some(digest), Some(_)) = (lines.next(), lines.next(), lines.next())
        else {
            if body.len() > MAX_VERSION + 1 && !body.contains(&b'\n') {
                return Err(Reject::Unsupported);
            }
            return Ok(());
        };
        let version = std::str::from_utf8(version).map_err(|_| Reject::Unsupported)?;
        if version.is_empty() || version.len() > MAX_VERSION {
            return Err(Reject::Unsupported);
        }
        let digest = unhex(digest).ok_or(Reject::Unsupported)?;
        self.parsed = Some((version.to_owned(), digest));
        Ok(())
    }

    /// The package is complete: checks the payload's digest.
    pub(crate) fn finish(self) -> Result<Verified, Reject> {
        let Some((version, want)) = self.parsed else {
            return Err(Reject::Unsupported);
        };
        if self.payload.finalize().as_slice() != want.as_slice() {
            return Err(Reject::Integrity);
        }
        let mut digest = [0u8; 32];
        digest.copy_from_slice(self.whole.finalize().as_slice());
        Ok(Verified { version, digest })
    }

    /// Checks a whole package at once.
    pub(crate) fn check(bytes: &[u8]) -> Result<Verified, Reject> {
        let mut c = Self::default();
        c.feed(bytes)?;
        c.finish()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_package_checks_whole_and_in_pieces() {
        let pkg = firmware_package("2.0.1", &[7u8; 5000]);
        let v = PackageCheck::check(&pkg).unwrap();
        assert_eq!(v.version, "2.0.1");
        assert_eq!(v.digest.get(..8).unwrap(), package_etag(&pkg));
        for piece in [1, 3, 16, 1024] {
            let mut c = PackageCheck::default();
            for chunk in pkg.chunks(piece) {
                c.feed(chunk).unwrap();
            }
            assert_eq!(c.finish().unwrap(), v);
        }
    }

    #[test]
    fn a_changed_payload_fails_integrity_and_a_foreign_file_is_unsupported() {
        let mut pkg = firmware_package("2", b"payload bytes");
        let last = pkg.len() - 1;
        pkg[last] ^= 1;
        assert_eq!(PackageCheck::check(&pkg), Err(Reject::Integrity));
        assert_eq!(
            PackageCheck::check(b"\x7fELF not ours"),
            Err(Reject::Unsupported)
        );
        assert_eq!(PackageCheck::check(b"LWM2MFW1\n"), Err(Reject::Unsupported));
        let bad_hex = b"LWM2MFW1\n1\nzz\npayload";
        assert_eq!(PackageCheck::check(bad_hex), Err(Reject::Unsupported));
        let long = [PACKAGE_MAGIC, &[b'v'; 400][..]].concat();
        assert_eq!(PackageCheck::check(&long), Err(Reject::Unsupported));
    }
}
