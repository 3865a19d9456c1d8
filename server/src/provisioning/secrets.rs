//! Encryption at rest of the secrets the server keeps (device PSKs, and whatever else must not
//! be readable from a copy of the store).
//!
//! One 256-bit key, kept in its own file apart from the database, seals values with
//! AES-256-GCM. A sealed value is `nonce (12 bytes) || ciphertext || tag (16 bytes)`; the nonce
//! is random per seal, which is safe for far more values than a server ever stores under one
//! key (the 2^32 bound of random GCM nonces). The caller's associated data binds a value to
//! its place (for a PSK, the endpoint it belongs to), so a sealed key copied onto another
//! record fails to open instead of handing one device's key to another.
//!
//! The key file holds 64 hex digits. It is created on first use with mode 0600; an existing
//! file that is malformed or readable by group or others is refused rather than repaired,
//! since either means someone else touched it.
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::Aes256Gcm;
use rand::{RngCore, TryRngCore};
use std::io::Write;
use std::path::{Path, PathBuf};
use zeroize::{Zeroize, Zeroizing};

/// Bytes of the nonce in front of every sealed value.
pub const NONCE_LEN: usize = 12;
/// Bytes of the authentication tag at the end of every sealed value.
pub const TAG_LEN: usize = 16;

/// Why a key could not be loaded or a value could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretsError {
    /// Reading or creating the key file failed.
    #[error("secrets key {}: {source}", path.display())]
    Io {
        /// The key file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The key file does not hold exactly 64 hex digits.
    #[error("secrets key {} is malformed: {reason}", path.display())]
    Malformed {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The key file can be read by group or others.
    #[error("secrets key {} has mode {mode:04o}: it must not be accessible to group or others (chmod 600)", path.display())]
    Permissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The value was sealed under another key (or altered since).
    #[error("secrets key does not match the store: a sealed value fails authentication (was the key file replaced or lost?)")]
    WrongKey,
    /// The value is too short to be a sealed value at all.
    #[error("sealed value is truncated ({0} bytes)")]
    Truncated(usize),
}

/// The key that seals secrets at rest. Zeroed when dropped; never printed.
pub struct SecretsKey {
    key: [u8; 32],
}

impl Drop for SecretsKey {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

impl std::fmt::Debug for SecretsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretsKey(<redacted>)")
    }
}

impl SecretsKey {
    /// A key from its bytes (tests, or a key held elsewhere).
    pub fn from_bytes(key: [u8; 32]) -> Self {
        Self { key }
    }

    /// A fresh random key from the operating system's generator.
    pub fn generate() -> Result<Self, SecretsError> {
        let mut key = [0u8; 32];
        rand::rngs::OsRng
            .try_fill_bytes(&mut key)
            .map_err(|e| SecretsError::Io {
                path: PathBuf::from("<os random generator>"),
                source: std::io::Error::other(e.to_string()),
            })?;
        Ok(Self { key })
    }

    /// Loads the key from `path`, or creates the file with a new random key (mode 0600) if
    /// it does not exist. The parent directory is created if missing.
    pub fn load_or_create(path: &Path) -> Result<Self, SecretsError> {
        let io = |source| SecretsError::Io {
            path: path.to_path_buf(),
            source,
        };
        match std::fs::metadata(path) {
            Ok(_) => return Self::load(path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let key = Self::generate()?;
        let mut text = Zeroizing::new(hex_encode(&key.key));
        text.push('\n');
        let mut options = std::fs::OpenOptions::new();
        // create_new: if another process created the file between the check above and here,
        // its key wins and is loaded below instead of being overwritten.
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = match options.open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Self::load(path),
            Err(e) => return Err(io(e)),
        };
        file.write_all(text.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        tracing::info!(
            path = %path.display(),
            "created a new secrets key; back it up apart from the data: without it the stored device keys cannot be read"
        );
        Ok(key)
    }

    fn load(path: &Path) -> Result<Self, SecretsError> {
        let io = |source| SecretsError::Io {
            path: path.to_path_buf(),
            source,
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path).map_err(io)?.permissions().mode() & 0o7777;
            if mode & 0o077 != 0 {
                return Err(SecretsError::Permissions {
                    path: path.to_path_buf(),
                    mode,
                });
            }
        }
        let malformed = |reason: &str| SecretsError::Malformed {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        };
        let text = Zeroizing::new(std::fs::read(path).map_err(io)?);
        // A trailing newline (as written here, or by an editor) is fine; nothing else is.
        let digits = text.trim_ascii_end();
        if digits.len() != 64 {
            return Err(malformed(&format!(
                "expected 64 hex digits, found {} bytes",
                digits.len()
            )));
        }
        let mut key = [0u8; 32];
        if hex::decode_to_slice(digits, &mut key).is_err() {
            key.zeroize();
            return Err(malformed("expected 64 hex digits, found other characters"));
        }
        Ok(Self { key })
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(&self.key.into())
    }

    /// Encrypts `plaintext`, authenticating `aad` with it: `nonce || ciphertext || tag`.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self.cipher().encrypt(
            &nonce.into(),
            Payload {
                msg: plaintext,
                aad,
            },
        );
        match sealed {
            Ok(ct) => {
                let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
                out.extend_from_slice(&nonce);
                out.extend_from_slice(&ct);
                out
            }
            // AES-GCM refuses only inputs beyond 64 GiB, which nothing here seals. Should it
            // ever happen, an empty value fails to open ("truncated") instead of panicking.
            Err(_) => {
                tracing::error!(len = plaintext.len(), "AES-GCM refused to seal a value");
                Vec::new()
            }
        }
    }

    /// Decrypts a value made by [`SecretsKey::seal`] with the same `aad`.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, SecretsError> {
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return Err(SecretsError::Truncated(sealed.len()));
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce
            .try_into()
            .map_err(|_| SecretsError::Truncated(sealed.len()))?;
        self.cipher()
            .decrypt(&nonce.into(), Payload { msg: ct, aad })
            .map_err(|_| SecretsError::WrongKey)
    }
}

/// Lower-case hex of `bytes`.
pub fn hex_encode(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// Decodes hex digits (either case); `None` for an odd length or a non-hex character.
pub fn hex_decode(digits: &str) -> Option<Vec<u8>> {
    hex::decode(digits).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_and_open_round_trip_and_bind_the_aad() {
        let k = SecretsKey::generate().unwrap();
        let sealed = k.seal(b"dev-1", b"secret psk");
        assert_eq!(sealed.len(), NONCE_LEN + 10 + TAG_LEN);
        assert_eq!(k.open(b"dev-1", &sealed).unwrap(), b"secret psk");
        // Random nonces: sealing twice gives different bytes.
        assert_ne!(k.seal(b"dev-1", b"secret psk"), sealed);
        assert!(matches!(
            k.open(b"dev-2", &sealed),
            Err(SecretsError::WrongKey)
        ));
        let other = SecretsKey::generate().unwrap();
        let e = other.open(b"dev-1", &sealed).unwrap_err();
        assert!(
            e.to_string()
                .contains("secrets key does not match the store"),
            "{e}"
        );
        assert!(matches!(
            k.open(b"dev-1", &sealed[..20]),
            Err(SecretsError::Truncated(20))
        ));
        let mut flipped = sealed.clone();
        flipped[NONCE_LEN] ^= 1;
        assert!(k.open(b"dev-1", &flipped).is_err());
    }

    #[test]
    fn debug_does_not_show_the_key() {
        let k = SecretsKey::from_bytes([0xab; 32]);
        let d = format!("{k:?}");
        assert!(!d.contains("ab") && !d.contains("171"), "{d}");
    }

    #[cfg(unix)]
    #[test]
    fn key_file_is_created_once_with_mode_0600_and_reloaded() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/secrets.key");
        let k1 = SecretsKey::load_or_create(&path).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.trim_end().len(), 64);
        assert!(text.trim_end().bytes().all(|b| b.is_ascii_hexdigit()));
        let k2 = SecretsKey::load_or_create(&path).unwrap();
        assert_eq!(k1.key, k2.key);
        let sealed = k1.seal(b"a", b"b");
        assert_eq!(k2.open(b"a", &sealed).unwrap(), b"b");
    }

    #[cfg(unix)]
    #[test]
    fn malformed_or_exposed_key_files_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.key");
        let write = |text: &str, mode: u32| {
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        write(&"0".repeat(63), 0o600);
        let e = SecretsKey::load_or_create(&path).unwrap_err().to_string();
        assert!(
            e.contains("malformed") && e.contains("64 hex digits"),
            "{e}"
        );
        write(&format!("{}zz", "0".repeat(62)), 0o600);
        let e = SecretsKey::load_or_create(&path).unwrap_err().to_string();
        assert!(e.contains("malformed"), "{e}");
        write(&"0".repeat(64), 0o640);
        let e = SecretsKey::load_or_create(&path).unwrap_err().to_string();
        assert!(e.contains("0640") && e.contains("chmod 600"), "{e}");
        // Upper-case digits and a trailing newline are accepted.
        write(&format!("{}\n", "AB".repeat(32)), 0o400);
        let k = SecretsKey::load_or_create(&path).unwrap();
        assert_eq!(k.key, [0xab; 32]);
    }

    #[test]
    fn hex_helpers() {
        assert_eq!(hex_encode(&[0, 0x7f, 0xff]), "007fff");
        assert_eq!(hex_decode("007FfF"), Some(vec![0, 0x7f, 0xff]));
        assert_eq!(hex_decode("abc"), None);
        assert_eq!(hex_decode("zz"), None);
        assert_eq!(hex_decode(""), Some(vec![]));
    }
}
