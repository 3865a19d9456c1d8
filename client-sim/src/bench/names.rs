//! Device identities: endpoint names from a pattern, and their pre-shared keys, derived from
//! a seed or read from the CSV file that `lwm2m-server device import` also reads.
use anyhow::{bail, Context};
use std::collections::HashMap;
use std::path::Path;

/// Length of a derived key: AES-128, as TLS_PSK_WITH_AES_128_CCM_8 uses it.
const DERIVED_KEY_LEN: usize = 16;
/// Lines read from a key file at most (the simulator's device bound, plus comments).
const MAX_KEY_LINES: usize = 2_000_000;

/// `{n}` or `{n:06}` in a fixed text.
#[derive(Debug, Clone)]
pub(crate) struct NamePattern {
    prefix: String,
    width: usize,
    suffix: String,
}

impl NamePattern {
    pub(crate) fn parse(p: &str) -> anyhow::Result<Self> {
        let Some(open) = p.find("{n") else {
            bail!("name pattern needs a {{n}} placeholder: {p:?}");
        };
        let (prefix, rest) = p.split_at(open);
        let Some(close) = rest.find('}') else {
            bail!("name pattern: unclosed placeholder in {p:?}");
        };
        let (spec, suffix) = rest.split_at(close);
        let spec = spec.trim_start_matches("{n");
        let suffix = suffix.trim_start_matches('}');
        let width = match spec {
            "" => 0,
            s => s
                .strip_prefix(':')
                .map(|w| w.trim_start_matches('0'))
                .and_then(|w| {
                    if w.is_empty() {
                        Some(0)
                    } else {
                        w.parse().ok()
                    }
                })
                .filter(|w| *w <= 20)
                .with_context(|| format!("name pattern: bad placeholder {{n{s}}}"))?,
        };
        if suffix.contains("{n") {
            bail!("name pattern: one {{n}} placeholder only");
        }
        Ok(Self {
            prefix: prefix.to_owned(),
            width,
            suffix: suffix.to_owned(),
        })
    }

    pub(crate) fn name(&self, n: u64) -> String {
        format!("{}{n:0w$}{}", self.prefix, self.suffix, w = self.width)
    }

    /// The number of `name`, if the pattern made it.
    pub(crate) fn number(&self, name: &str) -> Option<u64> {
        let digits = name
            .strip_prefix(&self.prefix)?
            .strip_suffix(&self.suffix)?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let n: u64 = digits.parse().ok()?;
        (self.name(n) == name).then_some(n)
    }
}

/// A device's PSK identity and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Psk {
    pub identity: String,
    pub key: Vec<u8>,
}

/// Where keys come from.
#[derive(Debug)]
pub(crate) enum Keys {
    Derived(Vec<u8>),
    /// By endpoint name.
    File(HashMap<String, Psk>),
}

impl Keys {
    pub(crate) fn derived(seed: &str) -> Self {
        Self::Derived(seed.as_bytes().to_vec())
    }

    /// Reads `endpoint,psk_identity,psk_key_hex` lines; `#` comments, blank lines and the
    /// header line are skipped.
    pub(crate) fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading keys from {}", path.display()))?;
        let mut keys = HashMap::new();
        for (n, line) in text.lines().enumerate().take(MAX_KEY_LINES) {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line == "endpoint,psk_identity,psk_key" {
                continue;
            }
            let mut cols = line.split(',');
            let (Some(ep), Some(id), Some(hex), None) =
                (cols.next(), cols.next(), cols.next(), cols.next())
            else {
                bail!(
                    "{}:{}: expected endpoint,psk_identity,psk_key_hex",
                    path.display(),
                    n + 1
                );
            };
            let key = hex::decode(hex.trim())
                .ok()
                .filter(|k| !k.is_empty())
                .with_context(|| format!("{}:{}: bad key", path.display(), n + 1))?;
            keys.insert(
                ep.trim().to_owned(),
                Psk {
                    identity: id.trim().to_owned(),
                    key,
                },
            );
        }
        Ok(Self::File(keys))
    }

    /// The key of `endpoint`, if it has one.
    pub(crate) fn get(&self, endpoint: &str) -> Option<Psk> {
        match self {
            Self::Derived(seed) => {
                let mac = dtls::crypto::hmac_sha256(seed, &[endpoint.as_bytes()]);
                Some(Psk {
                    identity: endpoint.to_owned(),
                    key: mac.get(..DERIVED_KEY_LEN).unwrap_or(&mac).to_vec(),
                })
            }
            Self::File(map) => map.get(endpoint).cloned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_patterns() {
        let p = NamePattern::parse("sim-{n:06}").unwrap();
        assert_eq!(p.name(42), "sim-000042");
        assert_eq!(p.name(1_234_567), "sim-1234567");
        assert_eq!(NamePattern::parse("dev{n}x").unwrap().name(7), "dev7x");
        assert_eq!(NamePattern::parse("{n:0}").unwrap().name(7), "7");
        assert_eq!(p.number("sim-000042"), Some(42));
        assert_eq!(p.number("sim-42"), None);
        assert_eq!(p.number("sim-00004x"), None);
        assert_eq!(p.number("other-000042"), None);
        for bad in ["sim", "sim-{n", "{n:x}", "{n}{n}", "{n:099}"] {
            assert!(NamePattern::parse(bad).is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn patterns_never_panic_and_numbers_round_trip(p in ".{0,24}", n in 0u64..10_000_000) {
            if let Ok(pat) = NamePattern::parse(&p) {
                let name = pat.name(n);
                proptest::prop_assert_eq!(pat.number(&name), Some(n));
            }
        }

        #[test]
        fn key_files_never_panic(text in "[a-f0-9,#\\n x-]{0,200}") {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("k.csv");
            std::fs::write(&path, &text).unwrap();
            let _ = Keys::read(&path);
        }
    }

    #[test]
    fn derived_keys_differ_per_device_and_seed() {
        let a = Keys::derived("s1");
        let b = Keys::derived("s2");
        let k1 = a.get("dev-1").unwrap();
        assert_eq!(k1.identity, "dev-1");
        assert_eq!(k1.key.len(), 16);
        assert_eq!(a.get("dev-1"), Some(k1.clone()));
        assert_ne!(a.get("dev-2").unwrap().key, k1.key);
        assert_ne!(b.get("dev-1").unwrap().key, k1.key);
    }

    #[test]
    fn key_files_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.csv");
        let k = Keys::derived("x").get("d1").unwrap();
        std::fs::write(
            &path,
            format!(
                "endpoint,psk_identity,psk_key\n# c\n\nd1,id-1,{}\n",
                hex::encode(&k.key)
            ),
        )
        .unwrap();
        let keys = Keys::read(&path).unwrap();
        assert_eq!(
            keys.get("d1"),
            Some(Psk {
                identity: "id-1".into(),
                key: k.key
            })
        );
        assert_eq!(keys.get("d2"), None);
        std::fs::write(&path, "d1,id,zz\n").unwrap();
        assert!(Keys::read(&path).is_err());
        std::fs::write(&path, "d1,id\n").unwrap();
        assert!(Keys::read(&path).is_err());
    }
}
