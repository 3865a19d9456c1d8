//! The password file of the embedded MQTT broker, in mosquitto's format, so that a file made
//! by `mosquitto_passwd` (or `lwm2m-server mqtt-passwd`) works unchanged.
//!
//! One `user:hash` per line; blank lines and lines starting with `#` are ignored. The two hash
//! formats mosquitto writes:
//!
//! - `$7$<iterations>$<salt>$<hash>`: PBKDF2-HMAC-SHA512 (RFC 8018 section 5.2) of the
//!   password with the salt, the hash 64 bytes long (mosquitto 2.0's default, 101 iterations);
//! - `$6$<salt>$<hash>`: SHA-512 of the password's bytes followed by the salt's (mosquitto 1.6
//!   and earlier).
//!
//! Salt and hash are standard base64 (RFC 4648 section 4) with padding.
//!
//! The work a client can cause is bounded when the file is loaded: at most 1,000,000
//! iterations, no entry line longer than 1 KiB. A user name that is not in the file is checked
//! against a fixed dummy `$7$` hash of 101 iterations (and a `$6$` entry does the same work
//! beside its own), so that how long a refusal takes does not tell which users exist when the
//! file has mosquitto's default cost.
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha512};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use subtle::ConstantTimeEq;

/// The most PBKDF2 iterations an entry may ask for: beyond this, one CONNECT would keep a core
/// busy for about a second or more.
const MAX_ITERATIONS: u32 = 1_000_000;
/// The longest entry line: a mosquitto line is about 130 bytes plus the user name.
const MAX_LINE_BYTES: usize = 1024;
/// The length of both hashes (SHA-512's output; mosquitto's PBKDF2 output length).
const HASH_BYTES: usize = 64;
/// The longest salt accepted (mosquitto writes 12 bytes).
const MAX_SALT_BYTES: usize = 64;
/// The iterations of a new entry: mosquitto 2.0's, and the dummy's, so that a user added by
/// [`hash_password`] cannot be told from an unknown one by timing.
const NEW_ITERATIONS: u32 = 101;
/// The salt length of a new entry, as mosquitto.
const NEW_SALT_BYTES: usize = 12;
/// The salt of the dummy hash checked for an unknown user; the result is thrown away, so any
/// value does.
const DUMMY_SALT: [u8; NEW_SALT_BYTES] = *b"no-such-user";

/// Why a password file cannot be used. Never shows a hash or a password.
#[derive(Debug, thiserror::Error)]
pub enum PasswordFileError {
    /// The file cannot be read.
    #[error("reading {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// A line is not a valid entry; the file is refused whole.
    #[error("line {line}: {reason}")]
    Line {
        /// The line's number, from 1.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
}

/// One user's stored hash.
#[derive(Clone)]
enum Stored {
    /// `$7$`: PBKDF2-HMAC-SHA512.
    Pbkdf2 {
        iterations: u32,
        salt: Vec<u8>,
        hash: [u8; HASH_BYTES],
    },
    /// `$6$`: SHA-512(password || salt).
    Sha512 {
        salt: Vec<u8>,
        hash: [u8; HASH_BYTES],
    },
}

impl Stored {
    fn matches(&self, password: &[u8]) -> bool {
        match self {
            Stored::Pbkdf2 {
                iterations,
                salt,
                hash,
            } => pbkdf2_matches(password, salt, *iterations, hash),
            Stored::Sha512 { salt, hash } => {
                // The dummy's work too, so that a `$6$` user costs what an unknown one does.
                std::hint::black_box(dummy_check(password));
                let mut digest = Sha512::new();
                digest.update(password);
                digest.update(salt);
                bool::from(digest.finalize().as_slice().ct_eq(hash))
            }
        }
    }
}

fn pbkdf2_matches(password: &[u8], salt: &[u8], iterations: u32, hash: &[u8; HASH_BYTES]) -> bool {
    let mut out = [0u8; HASH_BYTES];
    pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out);
    bool::from(out.ct_eq(hash))
}

/// The check of an unknown user: the cost of a `$7$` entry of [`NEW_ITERATIONS`].
fn dummy_check(password: &[u8]) -> bool {
    pbkdf2_matches(
        password,
        &DUMMY_SALT,
        NEW_ITERATIONS,
        &std::hint::black_box([0u8; HASH_BYTES]),
    )
}

/// The users of a password file and their stored hashes.
#[derive(Clone)]
pub struct PasswordFile {
    users: HashMap<String, Stored>,
}

impl std::fmt::Debug for PasswordFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the hashes.
        f.debug_struct("PasswordFile")
            .field("users", &self.users.len())
            .finish_non_exhaustive()
    }
}

impl PasswordFile {
    /// Reads and parses the file at `path` (see [`PasswordFile::parse`]).
    pub fn load(path: &Path) -> Result<PasswordFile, PasswordFileError> {
        let bytes = std::fs::read(path).map_err(|source| PasswordFileError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        match String::from_utf8(bytes) {
            Ok(text) => Self::parse(&text),
            Err(e) => {
                let bytes = e.as_bytes();
                let valid = bytes.get(..e.utf8_error().valid_up_to()).unwrap_or(bytes);
                let line = 1 + valid.iter().filter(|b| **b == b'\n').count();
                Err(PasswordFileError::Line {
                    line,
                    reason: "not valid UTF-8".into(),
                })
            }
        }
    }

    /// Parses the text of a password file. The first bad line refuses the whole file: an
    /// entry that does not parse, a user name given twice, more than 1,000,000 iterations, or
    /// an entry line over 1 KiB.
    pub fn parse(text: &str) -> Result<PasswordFile, PasswordFileError> {
        let mut users = HashMap::new();
        let mut lines_of: HashMap<String, usize> = HashMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i.saturating_add(1);
            let err = |reason: String| PasswordFileError::Line { line, reason };
            let Some((user, stored)) = parse_line(raw).map_err(err)? else {
                continue;
            };
            if let Some(first) = lines_of.get(&user) {
                return Err(err(format!("user `{user}` is already on line {first}")));
            }
            lines_of.insert(user.clone(), line);
            users.insert(user, stored);
        }
        Ok(PasswordFile { users })
    }

    /// true only if `user` is in the file and `password` matches its hash; constant-time
    /// compare; an unknown user costs about the same as a known one (no user enumeration by timing).
    pub fn check(&self, user: &str, password: &[u8]) -> bool {
        match self.users.get(user) {
            Some(stored) => stored.matches(password),
            None => {
                std::hint::black_box(dummy_check(password));
                false
            }
        }
    }

    /// How many users the file has.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether the file has no user (every client would be refused).
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

/// A new `$7$` line's hash part for `password` (random 12-byte salt, 101 iterations as mosquitto 2.0,
/// or more), for the CLI.
pub fn hash_password(password: &[u8]) -> String {
    let mut salt = [0u8; NEW_SALT_BYTES];
    // The thread generator is a CSPRNG seeded from the operating system's.
    rand::rng().fill_bytes(&mut salt);
    let mut hash = [0u8; HASH_BYTES];
    pbkdf2::pbkdf2_hmac::<Sha512>(password, &salt, NEW_ITERATIONS, &mut hash);
    format!(
        "$7${NEW_ITERATIONS}${}${}",
        STANDARD.encode(salt),
        STANDARD.encode(hash)
    )
}

/// One line: `None` for a blank line or a comment. The reasons never quote the hash part,
/// which may be a plain-text password in a file that was never hashed.
fn parse_line(raw: &str) -> Result<Option<(String, Stored)>, String> {
    let trimmed = raw.trim();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return Ok(None);
    }
    if raw.len() > MAX_LINE_BYTES {
        return Err(format!(
            "the line is {} bytes long, more than {MAX_LINE_BYTES}",
            raw.len()
        ));
    }
    // As mosquitto: the user name ends at the first `:`, blanks around both parts are dropped.
    let Some((user, hash)) = trimmed.split_once(':') else {
        return Err("no `:` between a user name and a hash".into());
    };
    let user = user.trim();
    if user.is_empty() {
        return Err("the user name is empty".into());
    }
    let stored = parse_hash(hash.trim()).map_err(|why| format!("user `{user}`: {why}"))?;
    Ok(Some((user.to_string(), stored)))
}

fn parse_hash(hash: &str) -> Result<Stored, String> {
    let parts: Vec<&str> = hash.split('$').collect();
    match parts.as_slice() {
        ["", "7", iterations, salt, hash] => {
            // Digits only: `parse` would also take a leading `+`, which mosquitto does not write.
            if iterations.is_empty() || !iterations.bytes().all(|b| b.is_ascii_digit()) {
                return Err("the iteration count is not a number".into());
            }
            let iterations = match iterations.parse::<u32>() {
                Ok(0) => return Err("the iteration count is 0".into()),
                Ok(n) if n <= MAX_ITERATIONS => n,
                _ => {
                    return Err(format!(
                        "the iteration count is more than the limit of {MAX_ITERATIONS}"
                    ))
                }
            };
            Ok(Stored::Pbkdf2 {
                iterations,
                salt: decode_salt(salt)?,
                hash: decode_hash(hash)?,
            })
        }
        ["", "6", salt, hash] => Ok(Stored::Sha512 {
            salt: decode_salt(salt)?,
            hash: decode_hash(hash)?,
        }),
        _ => Err(
            "the password is not a `$7$` or `$6$` hash (a plain-text file needs \
             `mosquitto_passwd -U` first)"
                .into(),
        ),
    }
}

fn decode_salt(b64: &str) -> Result<Vec<u8>, String> {
    let salt = STANDARD
        .decode(b64)
        .map_err(|_| "the salt is not valid base64".to_string())?;
    if salt.is_empty() || salt.len() > MAX_SALT_BYTES {
        return Err(format!(
            "the salt is {} bytes, not 1 to {MAX_SALT_BYTES}",
            salt.len()
        ));
    }
    Ok(salt)
}

fn decode_hash(b64: &str) -> Result<[u8; HASH_BYTES], String> {
    let hash = STANDARD
        .decode(b64)
        .map_err(|_| "the hash is not valid base64".to_string())?;
    let len = hash.len();
    <[u8; HASH_BYTES]>::try_from(hash)
        .map_err(|_| format!("the hash is {len} bytes, not {HASH_BYTES}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // Made by the installed mosquitto 2.0.11:
    //   mosquitto_passwd -c -b f alice secret
    //   mosquitto_passwd -H sha512 -c -b f bob hunter2
    //   mosquitto_passwd -b f carol 'pä ss:w0rd'
    const ALICE: &str = "alice:$7$101$0xZPjUEU1Ijh4XCf$lFZu8YkXt3ps2kxp1N2R5MJ5YEa0LlyH9MvAXXuJBwXeS9OJqGvBu/U4iKewSZWwCa391ZvR7ksoG3qHa7Okxg==";
    const BOB: &str = "bob:$6$uvD/mFyS0oqyocZs$8rFRzTWvcFfmZ0mKdhuOVb7rmcKbEND/0PBti6a35/qkGX/ryrygFi5FuM09qRjMNTp2kE8qKnPzfXv9tH3Gww==";
    const CAROL: &str = "carol:$7$101$wrIN+YBFx2mtafKO$qOaFD2JmlJaJlCLqkZu3znqkT4DAkfJHCaQ44UMaLI3Ca47UEcPgWGtS/LwuLi502dF6cAWFM+ttK/PLqRiSfg==";
    // mosquitto_passwd 2.0.11 cannot set the iteration count: this one was computed with
    // python3's hashlib.pbkdf2_hmac('sha512', b'correct horse', bytes(range(1, 13)), 1000, 64).
    const ERIN: &str = "erin:$7$1000$AQIDBAUGBwgJCgsM$tGLKLWHdOOVi5QYCTE/yQauJjKZT84XrUlTHmijBs37klJudr8jcrIxUoQxxYAlNJe7LFgnnMgBruKze4qSrbg==";

    fn file() -> PasswordFile {
        let text = format!(
            "# made by mosquitto_passwd\n\n{ALICE}\n   \n{BOB}\r\n  # indented comment\n{CAROL}\n{ERIN}"
        );
        PasswordFile::parse(&text).unwrap()
    }

    fn line_error(text: &str) -> (usize, String) {
        match PasswordFile::parse(text) {
            Err(PasswordFileError::Line { line, reason }) => (line, reason),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn mosquitto_entries_accept_their_password() {
        let f = file();
        assert_eq!(f.len(), 4);
        assert!(!f.is_empty());
        assert!(f.check("alice", b"secret"));
        assert!(f.check("bob", b"hunter2"));
        assert!(f.check("carol", "pä ss:w0rd".as_bytes()));
        assert!(f.check("erin", b"correct horse"));
    }

    #[test]
    fn wrong_passwords_are_refused() {
        let f = file();
        assert!(!f.check("alice", b"Secret"));
        assert!(!f.check("alice", b"secret\n"));
        assert!(!f.check("alice", b""));
        assert!(!f.check("bob", b"hunter"));
        assert!(!f.check("bob", b"secret"));
        assert!(!f.check("carol", b"p"));
        assert!(!f.check("erin", b"correct horse battery"));
        // Another user's password.
        assert!(!f.check("alice", b"hunter2"));
    }

    #[test]
    fn unknown_users_are_refused() {
        let f = file();
        assert!(!f.check("mallory", b"secret"));
        assert!(!f.check("", b""));
        assert!(!f.check("Alice", b"secret"));
        assert!(!f.check("alice ", b"secret"));
        assert!(!PasswordFile::parse("").unwrap().check("alice", b"secret"));
    }

    #[test]
    fn comments_and_blank_lines_are_ignored() {
        let f = PasswordFile::parse("# only: $7$ a comment\n\n \t \n#bob:x\n").unwrap();
        assert!(f.is_empty());
        assert_eq!(f.len(), 0);
        let f = PasswordFile::parse(&format!("\n# users\n{ALICE}\n\n")).unwrap();
        assert_eq!(f.len(), 1);
        // Blanks around the parts are dropped, as mosquitto does.
        let (user, hash) = ALICE.split_once(':').unwrap();
        let f = PasswordFile::parse(&format!("  {user} :\t{hash}  \r\n")).unwrap();
        assert!(f.check("alice", b"secret"));
    }

    #[test]
    fn bad_lines_are_refused_with_their_number() {
        let cases: &[(&str, usize, &str)] = &[
            ("# c\n\nalice\n", 3, "no `:`"),
            (":$6$uvD/mFyS0oqyocZs$AA==\n", 1, "user name is empty"),
            ("alice:secret\n", 1, "not a `$7$` or `$6$` hash"),
            ("alice:$5$abc$def\n", 1, "not a `$7$` or `$6$` hash"),
            (
                "alice:$7$101$0xZPjUEU1Ijh4XCf\n",
                1,
                "not a `$7$` or `$6$` hash",
            ),
            ("alice:$7$x$AAAA$AAAA\n", 1, "not a number"),
            ("alice:$7$0$AAAA$AAAA\n", 1, "iteration count is 0"),
            ("alice:$7$-1$AAAA$AAAA\n", 1, "not a number"),
            ("alice:$7$1000001$AAAA$AAAA\n", 1, "more than the limit"),
            ("alice:$7$99999999999$AAAA$AAAA\n", 1, "more than the limit"),
            ("alice:$7$+101$AAAA$AAAA\n", 1, "not a number"),
            ("alice:$7$101$*$AAAA\n", 1, "salt is not valid base64"),
            ("alice:$7$101$$AAAA\n", 1, "salt is 0 bytes"),
            ("alice:$7$101$AAAA$AAAA\n", 1, "hash is 3 bytes"),
            ("alice:$6$AAAA$not base64!\n", 1, "hash is not valid base64"),
        ];
        for (text, line, reason) in cases {
            let (l, r) = line_error(text);
            assert_eq!(l, *line, "{text}");
            assert!(r.contains(reason), "{text}: {r}");
        }
        // The first bad line is named, after good ones.
        let (l, r) = line_error(&format!("{ALICE}\n# x\n{BOB}\nbob:$6$x\n{CAROL}\n"));
        assert_eq!(l, 4);
        assert!(r.contains("bob"), "{r}");
        // A user given twice.
        let (l, r) = line_error(&format!("{ALICE}\n{BOB}\n{ALICE}\n"));
        assert_eq!((l, r.as_str()), (3, "user `alice` is already on line 1"));
    }

    #[test]
    fn errors_never_show_a_hash_or_a_plain_password() {
        let (_, r) = line_error("alice:my-plain-password\n");
        assert!(!r.contains("my-plain-password"), "{r}");
        // A hash cut short.
        let text = "alice:$7$101$0xZPjUEU1Ijh4XCf$lFZu8YkXt3ps2kxp1N2R5MJ5YEa0LlyH9M==\n";
        let e = PasswordFile::parse(text).unwrap_err().to_string();
        assert!(e.starts_with("line 1: user `alice`: "), "{e}");
        assert!(!e.contains("0xZPj") && !e.contains("lFZu8"), "{e}");
        assert!(!format!("{:?}", file()).contains("lFZu8"));
    }

    #[test]
    fn long_lines_are_refused_but_long_comments_are_not() {
        let (user, hash) = ALICE.split_once(':').unwrap();
        let padded = format!("{user}{}:{hash}", " ".repeat(1025 - ALICE.len()));
        assert_eq!(padded.len(), 1024 + 1);
        let (l, r) = line_error(&format!("# x\n{padded}\n"));
        assert_eq!(l, 2);
        assert!(r.contains("1025 bytes"), "{r}");
        let just = format!("{user}{}:{hash}", " ".repeat(1024 - ALICE.len()));
        assert!(PasswordFile::parse(&just)
            .unwrap()
            .check("alice", b"secret"));
        let comment = format!("#{}\n{ALICE}\n", "x".repeat(4096));
        assert_eq!(PasswordFile::parse(&comment).unwrap().len(), 1);
    }

    #[test]
    fn load_reads_a_file_and_names_what_fails() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passwd");
        std::fs::write(&path, format!("{ALICE}\n{BOB}\n")).unwrap();
        let f = PasswordFile::load(&path).unwrap();
        assert!(f.check("bob", b"hunter2"));
        let missing = dir.path().join("missing");
        let e = PasswordFile::load(&missing).unwrap_err();
        assert!(matches!(e, PasswordFileError::Io { .. }), "{e:?}");
        assert!(e.to_string().contains("missing"), "{e}");
        std::fs::write(&path, [ALICE.as_bytes(), b"\nb\xffb:x\n"].concat()).unwrap();
        let e = PasswordFile::load(&path).unwrap_err().to_string();
        assert_eq!(e, "line 2: not valid UTF-8");
    }

    #[test]
    fn hash_password_round_trips() {
        let hash = hash_password("pä ss".as_bytes());
        assert!(hash.starts_with("$7$101$"), "{hash}");
        let f = PasswordFile::parse(&format!("dave:{hash}\n")).unwrap();
        assert!(f.check("dave", "pä ss".as_bytes()));
        assert!(!f.check("dave", b"p"));
        // A fresh salt each time.
        assert_ne!(hash_password(b"x"), hash_password(b"x"));
    }

    #[test]
    fn hash_password_writes_mosquittos_layout() {
        // `$7$101$` then a 12-byte salt and a 64-byte hash, standard base64 with padding.
        let hash = hash_password(b"secret");
        let parts: Vec<&str> = hash.split('$').collect();
        assert_eq!(parts.len(), 5, "{hash}");
        assert_eq!((parts[0], parts[1], parts[2]), ("", "7", "101"));
        assert_eq!(STANDARD.decode(parts[3]).unwrap().len(), 12);
        assert_eq!(parts[4].len(), 88);
        assert_eq!(STANDARD.decode(parts[4]).unwrap().len(), 64);
    }

    /// Base64 of `lens` random bytes, or text that is mostly not base64.
    fn b64(lens: std::ops::Range<usize>) -> BoxedStrategy<String> {
        prop_oneof![
            3 => proptest::collection::vec(any::<u8>(), lens).prop_map(|b| STANDARD.encode(b)),
            1 => "[A-Za-z0-9+/=*]{0,90}",
        ]
        .boxed()
    }

    /// Lines close to entries: right or wrong kinds, counts, salt and hash lengths.
    fn near_entry() -> impl Strategy<Value = String> {
        (
            "[ #a-z:]{0,4}",
            prop_oneof![
                Just("$6$".to_string()),
                (0u32..300).prop_map(|n| format!("$7${n}$")),
                "\\$[0-9]\\$[0-9+-]{0,3}\\$",
            ],
            b64(0..20),
            b64(63..66),
            "[ \r]{0,2}",
        )
            .prop_map(|(user, kind, salt, hash, end)| format!("{user}:{kind}{salt}${hash}{end}"))
    }

    proptest! {
        #[test]
        fn parse_never_panics(text in any::<String>()) {
            let _ = PasswordFile::parse(&text);
        }

        #[test]
        fn parse_and_check_never_panic_on_near_entries(
            lines in proptest::collection::vec(near_entry(), 0..6),
            password in proptest::collection::vec(any::<u8>(), 0..80),
        ) {
            let _ = PasswordFile::parse(&lines.join("\n"));
            for line in &lines {
                if let (Ok(f), Some((user, _))) = (PasswordFile::parse(line), line.split_once(':')) {
                    // Random hashes: no password matches them.
                    prop_assert!(!f.check(user.trim(), &password));
                }
            }
        }
    }
}
