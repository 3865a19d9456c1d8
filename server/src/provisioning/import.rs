//! Bulk import of PSK credentials, `lwm2m-server device import FILE` (and `bootstrap import
//! FILE` for the bootstrap server's): a fleet's keys (the client simulator writes 100,000 of
//! them) in one command, where `device add` per device would take a round trip and a commit
//! each.
//!
//! The file is CSV, one device per line, `endpoint,psk-identity,psk-key-hex`. Blank lines and
//! lines starting with `#` are skipped, as is a header line `endpoint,psk_identity,psk_key`
//! (or `psk_key_hex`) before the first device; spaces around fields are ignored. There is no
//! quoting: fields cannot contain commas.
//!
//! Nothing is imported unless everything can be:
//! 1. [`parse_csv`] checks every line (field count, endpoint name, identity and key as
//!    `device add` checks them, no endpoint or identity twice) and reports every bad line;
//! 2. [`import`] asks the store, through the running server or directly, whether any
//!    identity is bound to an endpoint the file does not give another credential
//!    (`device-import` with `check`), and reports those lines;
//! 3. only then are the credentials imported, in chunks of at most
//!    [`MAX_IMPORT_CHUNK`] per admin request,
//!    each chunk one store transaction with its audit entries. A running server can use the
//!    new keys at once, and closes the sessions of rotated ones, as for `device add`.
//!
//! Between the check and the import another admin command could still bind an identity; the
//! chunk it concerns is then refused whole and [`ImportError::Interrupted`] says which lines
//! were imported before it.
use crate::config::Config;
use crate::provisioning::admin::{
    self, AdminOp, AdminReply, ImportReport, OfflineError, MAX_IMPORT_CHUNK, MAX_REQUEST_LEN,
};
use crate::provisioning::credentials::{
    self, CredentialError, CredentialSet, Credentials, NewCredential, Secret,
};
use crate::provisioning::secrets::{SecretsError, SecretsKey};
use crate::store::{Store, StoreError};
use std::collections::HashMap;
use std::io;
use std::path::PathBuf;

/// Bad lines listed in an error message at most (the count says how many there were).
pub const MAX_SHOWN_ERRORS: usize = 20;
/// Longest line, in bytes: the longest valid one (a 252-byte endpoint name, a 128-byte
/// identity, a 64-byte key in hex) is about 510 bytes; room for spaces around the fields.
pub const MAX_LINE_LEN: usize = 1024;
/// Devices in one file at most: as many registrations as the server can be set to hold
/// ([`crate::config::limits::MAX_REGISTRATIONS`]).
pub const MAX_DEVICES: usize = 10_000_000;
/// Room in a request line for what surrounds the credentials' JSON.
const REQUEST_OVERHEAD: usize = 256;

/// One device of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportLine {
    /// Its line number, from 1.
    pub line: usize,
    /// The credential.
    pub credential: NewCredential,
}

/// A line that cannot be imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// Its line number, from 1.
    pub line: usize,
    /// Why.
    pub message: String,
}

/// What an import did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportSummary {
    /// Credentials added or replaced.
    pub imported: usize,
    /// Of those, the ones that replaced an endpoint's credential.
    pub replaced: usize,
}

/// Why an import failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// Lines that cannot be imported; nothing was.
    #[error("{}", show_lines(.0))]
    Lines(Vec<LineError>),
    /// The running server's admin socket failed.
    #[error("talking to the running server through {}: {source}", path.display())]
    Admin {
        /// The socket.
        path: PathBuf,
        /// What failed.
        source: io::Error,
    },
    /// No server runs and the store could not be opened.
    #[error(transparent)]
    Offline(#[from] OfflineError),
    /// No server runs and the secrets key could not be read or created.
    #[error("secrets key: {0}")]
    Secrets(#[from] SecretsError),
    /// No server runs and the stored credentials could not be loaded.
    #[error("loading the credentials: {0}")]
    Credentials(#[from] CredentialError),
    /// No server runs and the store would not commit.
    #[error("committing the store: {0}")]
    Store(#[from] StoreError),
    /// No server runs, and the node's credentials are its cluster's: they change only
    /// through a running node (the cluster's admin log).
    #[error("no server answers on {}, and this node's credentials are its cluster's ({store}): import through a running node", path.display())]
    SharedStore {
        /// The admin socket nobody answers on.
        path: PathBuf,
        /// The cluster's store, without its password.
        store: String,
    },
    /// A chunk was refused; the ones before it were imported.
    #[error("lines {first} to {last}: {reason}; {}", imported_note(*.imported))]
    Interrupted {
        /// First line of the refused chunk.
        first: usize,
        /// Last line of the refused chunk.
        last: usize,
        /// Credentials imported before it.
        imported: usize,
        /// Why it was refused.
        reason: String,
    },
}

fn imported_note(imported: usize) -> String {
    match imported {
        0 => "nothing was imported".into(),
        n => format!("the {n} credentials of the lines before were imported"),
    }
}

fn show_lines(errors: &[LineError]) -> String {
    let mut text = format!(
        "{} line(s) cannot be imported; nothing was imported",
        errors.len()
    );
    for e in errors.iter().take(MAX_SHOWN_ERRORS) {
        text.push_str(&format!("\n  line {}: {}", e.line, e.message));
    }
    if errors.len() > MAX_SHOWN_ERRORS {
        text.push_str(&format!(
            "\n  ... and {} more",
            errors.len() - MAX_SHOWN_ERRORS
        ));
    }
    text
}

fn is_header(fields: &[&str]) -> bool {
    matches!(
        fields,
        [
            "endpoint",
            "psk_identity" | "psk-identity",
            "psk_key" | "psk_key_hex" | "psk-key" | "psk-key-hex"
        ]
    )
}

/// Reads the CSV text and checks every line; on any error, returns all of them.
pub fn parse_csv(text: &str) -> Result<Vec<ImportLine>, ImportError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let mut endpoints: HashMap<&str, usize> = HashMap::new();
    let mut identities: HashMap<&str, usize> = HashMap::new();
    let mut first = true;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        if raw.len() > MAX_LINE_LEN {
            errors.push(LineError {
                line,
                message: format!(
                    "line is {} bytes: must be at most {MAX_LINE_LEN}",
                    raw.len()
                ),
            });
            continue;
        }
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if out.len() >= MAX_DEVICES {
            errors.push(LineError {
                line,
                message: format!(
                    "more than {MAX_DEVICES} devices in one file: split it and import the parts"
                ),
            });
            break;
        }
        let fields: Vec<&str> = trimmed.split(',').map(str::trim).collect();
        if std::mem::take(&mut first) && is_header(&fields) {
            continue;
        }
        let mut refuse = |message: String| errors.push(LineError { line, message });
        let [endpoint, identity, key] = fields.as_slice() else {
            refuse(format!(
                "expected 3 fields (endpoint,psk-identity,psk-key-hex), found {}",
                fields.len()
            ));
            continue;
        };
        if identity.chars().any(char::is_control) {
            refuse("PSK identity must not contain control characters".into());
            continue;
        }
        let key = match credentials::parse_psk_key_hex(key) {
            Ok(k) => k,
            Err(e) => {
                refuse(e.to_string());
                continue;
            }
        };
        let secret = Secret::Psk {
            identity: identity.as_bytes().to_vec(),
            key,
        };
        if let Err(e) = credentials::validate(endpoint, &secret) {
            refuse(e.to_string());
            continue;
        }
        if let Some(first) = endpoints.get(endpoint) {
            refuse(format!("endpoint {endpoint:?} is on line {first} already"));
            continue;
        }
        if let Some(first) = identities.get(identity) {
            refuse(format!(
                "PSK identity {identity:?} is on line {first} already"
            ));
            continue;
        }
        endpoints.insert(endpoint, line);
        identities.insert(identity, line);
        out.push(ImportLine {
            line,
            credential: NewCredential {
                endpoint: (*endpoint).to_string(),
                secret,
            },
        });
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(ImportError::Lines(errors))
    }
}

/// Splits the lines into requests of at most [`MAX_IMPORT_CHUNK`] credentials that fit in
/// an admin request line ([`MAX_REQUEST_LEN`]).
pub fn chunks(lines: &[ImportLine]) -> Vec<&[ImportLine]> {
    let budget = MAX_REQUEST_LEN - REQUEST_OVERHEAD;
    let mut out = Vec::new();
    let mut rest = lines;
    while !rest.is_empty() {
        let mut bytes = 0;
        let mut n = 0;
        for l in rest.iter().take(MAX_IMPORT_CHUNK) {
            // The JSON of the credential and its comma.
            let len = serde_json::to_vec(&l.credential).map_or(budget, |v| v.len()) + 1;
            if n > 0 && bytes + len > budget {
                break;
            }
            bytes += len;
            n += 1;
        }
        let (chunk, tail) = rest.split_at(n.max(1).min(rest.len()));
        out.push(chunk);
        rest = tail;
    }
    out
}

fn request(set: CredentialSet, chunk: &[ImportLine], check: bool) -> AdminOp {
    AdminOp::import(
        set,
        chunk.iter().map(|l| l.credential.clone()).collect(),
        check,
    )
}

/// Where the requests go: the running server, or the store itself.
enum Target {
    Online(PathBuf),
    Offline(Box<Offline>),
}

struct Offline {
    store: Store,
    key: SecretsKey,
    creds: Credentials,
}

impl Target {
    /// Sends `op` to the running server if there is one (and so learns where the next
    /// requests go), else opens the store and applies it there.
    async fn connect(
        config: &Config,
        set: CredentialSet,
        op: AdminOp,
    ) -> Result<(Self, AdminReply), ImportError> {
        let path = config.admin_socket_path();
        match admin::call(&path, &op).await {
            Ok(reply) => Ok((Target::Online(path), reply)),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
                ) =>
            {
                if !config.cluster.store.is_empty() && op.changes_credentials() {
                    return Err(ImportError::SharedStore {
                        path,
                        store: crate::config::redact_url(&config.cluster.store),
                    });
                }
                let store = admin::open_offline(config, true)?;
                let key = SecretsKey::load_or_create(&config.secrets_key_path())?;
                let creds = admin::load_offline(&store, &key, config, set)?;
                let mut target = Target::Offline(Box::new(Offline { store, key, creds }));
                let reply = target.call(op).await?;
                Ok((target, reply))
            }
            Err(source) => Err(ImportError::Admin { path, source }),
        }
    }

    async fn call(&mut self, op: AdminOp) -> Result<AdminReply, ImportError> {
        match self {
            Target::Online(path) => {
                admin::call(path, &op)
                    .await
                    .map_err(|source| ImportError::Admin {
                        path: path.clone(),
                        source,
                    })
            }
            Target::Offline(o) => Ok(admin::apply_offline(&o.store, &o.key, &mut o.creds, op)),
        }
    }

    /// Offline: commits what was written and closes the store.
    async fn finish(self) -> Result<(), ImportError> {
        if let Target::Offline(o) = self {
            o.store.flush().await?;
            o.store.close()?;
        }
        Ok(())
    }
}

/// Imports checked lines ([`parse_csv`]) as device credentials through the running server of
/// `config`, or into its store when none runs. Nothing is imported if the check pass refuses
/// a line.
pub async fn import(config: &Config, lines: &[ImportLine]) -> Result<ImportSummary, ImportError> {
    import_set(config, CredentialSet::Devices, lines).await
}

/// [`import`] into either credential set: `lwm2m-server bootstrap import` imports the
/// bootstrap server's credentials (factory bootstrap accounts) the same way.
pub async fn import_set(
    config: &Config,
    set: CredentialSet,
    lines: &[ImportLine],
) -> Result<ImportSummary, ImportError> {
    let chunks = chunks(lines);
    let Some(first) = chunks.first() else {
        return Ok(ImportSummary::default());
    };
    let (mut target, first_reply) = Target::connect(config, set, request(set, first, true)).await?;
    let result = check_then_import(&mut target, set, &chunks, first_reply).await;
    let finished = target.finish().await;
    let summary = result?;
    finished?;
    Ok(summary)
}

fn interrupted(chunk: &[ImportLine], imported: usize, reply: AdminReply) -> ImportError {
    ImportError::Interrupted {
        first: chunk.first().map_or(0, |l| l.line),
        last: chunk.last().map_or(0, |l| l.line),
        imported,
        reason: reply
            .error
            .unwrap_or_else(|| "the server refused the request".into()),
    }
}

async fn check_then_import(
    target: &mut Target,
    set: CredentialSet,
    chunks: &[&[ImportLine]],
    first_reply: AdminReply,
) -> Result<ImportSummary, ImportError> {
    // Which chunk gives each endpoint its new credential: an identity bound to an endpoint
    // that an earlier chunk rotates is free by the time its own chunk is imported.
    let chunk_of: HashMap<&str, usize> = chunks
        .iter()
        .enumerate()
        .flat_map(|(i, c)| c.iter().map(move |l| (l.credential.endpoint.as_str(), i)))
        .collect();
    let mut refused = Vec::new();
    let mut reply = Some(first_reply);
    for (i, chunk) in chunks.iter().enumerate() {
        let r = match reply.take() {
            Some(r) => r,
            None => target.call(request(set, chunk, true)).await?,
        };
        let report = match r.import {
            Some(ImportReport { refused, .. }) if !refused.is_empty() => refused,
            Some(_) if r.ok => continue,
            _ => return Err(interrupted(chunk, 0, r)),
        };
        for entry in report {
            let Some(line) = chunk.get(entry.index) else {
                continue;
            };
            let freed_before = entry
                .bound_to
                .as_deref()
                .and_then(|owner| chunk_of.get(owner))
                .is_some_and(|&c| c < i);
            if !freed_before {
                refused.push(LineError {
                    line: line.line,
                    message: entry.error,
                });
            }
        }
    }
    if !refused.is_empty() {
        return Err(ImportError::Lines(refused));
    }
    let mut summary = ImportSummary::default();
    for chunk in chunks {
        let r = target.call(request(set, chunk, false)).await?;
        match &r.import {
            Some(report) if r.ok => {
                summary.imported += report.imported;
                summary.replaced += report.replaced;
            }
            _ => return Err(interrupted(chunk, summary.imported, r)),
        }
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provisioning::audit::{self, AuditKind};
    use crate::store::StoreConfig;

    fn config(dir: &std::path::Path) -> Config {
        Config::parse(&format!(
            "[server]\ndata_dir = \"{}\"\n[mqtt]\nenabled = false\n[http]\nenabled = false\n",
            dir.display()
        ))
        .unwrap()
    }

    fn line_errors(e: ImportError) -> Vec<(usize, String)> {
        match e {
            ImportError::Lines(l) => l.into_iter().map(|e| (e.line, e.message)).collect(),
            e => panic!("not a line error: {e}"),
        }
    }

    fn csv(n: usize, from: usize) -> String {
        (from..from + n)
            .map(|i| format!("dev-{i},id-{i},{:032x}\n", i + 1))
            .collect()
    }

    async fn stored(config: &Config) -> (Credentials, Vec<audit::AuditEvent>) {
        let store = Store::open(&config.store_path(), StoreConfig::default()).unwrap();
        let key = SecretsKey::load_or_create(&config.secrets_key_path()).unwrap();
        let creds = Credentials::load(&store, &key).unwrap();
        let events = audit::recent(&store, 100_000).unwrap();
        store.close().unwrap();
        (creds, events)
    }

    #[test]
    fn a_good_file_parses_with_its_line_numbers() {
        let text = "\u{feff}# fleet of 3\r\nendpoint,psk_identity,psk_key\r\n\r\n dev-1 , id-1 , 00112233445566778899aabbccddeeff\r\ndev-2,id-2,0A0b\n# done\ndev-3,id 3,ff\n";
        let lines = parse_csv(text).unwrap();
        assert_eq!(lines.iter().map(|l| l.line).collect::<Vec<_>>(), [4, 5, 7]);
        assert_eq!(lines[0].credential.endpoint, "dev-1");
        assert_eq!(
            lines[1].credential.secret,
            Secret::Psk {
                identity: b"id-2".to_vec(),
                key: vec![10, 11]
            }
        );
        assert_eq!(lines[2].credential.secret.public_id(), "id 3");
        // The simulator's header spelling, and no header at all.
        assert_eq!(
            parse_csv("endpoint,psk_identity,psk_key_hex\na,b,00")
                .unwrap()
                .len(),
            1
        );
        assert!(parse_csv("").unwrap().is_empty());
    }

    #[test]
    fn every_bad_line_is_reported_and_none_kept() {
        let text = [
            "ok-1,id-1,00ff",
            "two,fields",
            "a,b,c,d",
            "bad-hex,id-3,zz",
            "odd-hex,id-4,abc",
            ",id-5,00",
            "no-identity,,00",
            &format!("long-key,id-7,{}", "00".repeat(65)),
            "ok-1,id-8,00",
            "ok-9,id-1,00",
            "endpoint,psk_identity,psk_key",
        ]
        .join("\n");
        let errors = line_errors(parse_csv(&text).unwrap_err());
        let lines: Vec<usize> = errors.iter().map(|e| e.0).collect();
        assert_eq!(lines, [2, 3, 4, 5, 6, 7, 8, 9, 10, 11], "{errors:?}");
        let says = |line: usize, what: &str| {
            let (_, m) = errors.iter().find(|e| e.0 == line).unwrap();
            assert!(m.contains(what), "line {line}: {m}");
        };
        says(2, "expected 3 fields");
        says(4, "hex");
        says(5, "odd");
        says(6, "endpoint name");
        says(7, "PSK identity");
        says(8, "1 to 64 bytes");
        says(9, "endpoint \"ok-1\" is on line 1");
        says(10, "identity \"id-1\" is on line 1");
        // A header is only a header before the first device.
        says(11, "hex");
        let shown = ImportError::Lines(
            (1..=30)
                .map(|line| LineError {
                    line,
                    message: "bad".into(),
                })
                .collect(),
        )
        .to_string();
        assert!(shown.starts_with("30 line(s) cannot be imported; nothing was imported"));
        assert!(shown.contains("line 20: bad") && !shown.contains("line 21: bad"));
        assert!(shown.ends_with("... and 10 more"), "{shown}");
    }

    #[test]
    fn chunks_are_bounded_by_count_and_bytes() {
        let lines = parse_csv(&csv(12_001, 0)).unwrap();
        let sizes: Vec<usize> = chunks(&lines).iter().map(|c| c.len()).collect();
        assert_eq!(sizes, [5000, 5000, 2001]);
        // Long names: fewer per request, each request within the admin socket's bound.
        let long: String = (0..5000)
            .map(|i| format!("{i:0>250},{i:0>128},{}\n", "ab".repeat(64)))
            .collect();
        let lines = parse_csv(&long).unwrap();
        let parts = chunks(&lines);
        assert!(parts.len() > 1);
        assert_eq!(parts.iter().map(|c| c.len()).sum::<usize>(), 5000);
        for c in parts {
            let json = serde_json::to_vec(&request(CredentialSet::Devices, c, false)).unwrap();
            assert!(json.len() < MAX_REQUEST_LEN, "{}", json.len());
        }
    }

    #[tokio::test]
    async fn an_offline_bootstrap_import_fills_the_bootstrap_set_only() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        // A device credential with the identity the factory file gives dev-1 too: the two
        // sets do not clash.
        import(&config, &parse_csv("dev-9,id-1,09\n").unwrap())
            .await
            .unwrap();
        let lines = parse_csv(&csv(3, 1)).unwrap();
        let summary = import_set(&config, CredentialSet::Bootstrap, &lines)
            .await
            .unwrap();
        assert_eq!(summary.imported, 3);
        // The file is checked against the bootstrap set: an identity of it bound to another
        // endpoint there refuses the whole file.
        let clash = parse_csv("dev-7,id-2,07\n").unwrap();
        let e = import_set(&config, CredentialSet::Bootstrap, &clash)
            .await
            .unwrap_err();
        assert!(line_errors(e)[0].1.contains("dev-2"));
        let store = Store::open(&config.store_path(), StoreConfig::default()).unwrap();
        let key = SecretsKey::load_or_create(&config.secrets_key_path()).unwrap();
        let devices = Credentials::load(&store, &key).unwrap();
        let boot = Credentials::load_bootstrap(&store, &key, &devices).unwrap();
        assert_eq!(devices.len(), 1);
        assert_eq!(devices.psk(b"id-1"), Some(("dev-9", &[9u8][..])));
        assert_eq!(boot.len(), 3);
        assert_eq!(boot.psk(b"id-1"), Some(("dev-1", &2u128.to_be_bytes()[..])));
        let events = audit::recent(&store, 100).unwrap();
        assert_eq!(
            events
                .iter()
                .filter(|e| e.kind == AuditKind::BootstrapCredentialAdded)
                .count(),
            3
        );
        store.close().unwrap();
    }

    #[tokio::test]
    async fn an_offline_import_adds_and_rotates_with_audit_entries() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let lines = parse_csv(&csv(3, 1)).unwrap();
        let summary = import(&config, &lines).await.unwrap();
        assert_eq!(
            summary,
            ImportSummary {
                imported: 3,
                replaced: 0
            }
        );
        let (creds, events) = stored(&config).await;
        assert_eq!(creds.len(), 3);
        assert_eq!(
            creds.psk(b"id-2"),
            Some(("dev-2", &3u128.to_be_bytes()[..]))
        );
        assert_eq!(events.len(), 3);
        assert!(events.iter().all(|e| e.kind == AuditKind::CredentialAdded));

        // Again with dev-2's key rotated and a new device: everything present is replaced.
        let text = "dev-1,id-1,00000000000000000000000000000002\ndev-2,id-2,ffff\ndev-4,id-4,04\n";
        let summary = import(&config, &parse_csv(text).unwrap()).await.unwrap();
        assert_eq!(
            summary,
            ImportSummary {
                imported: 3,
                replaced: 2
            }
        );
        let (creds, events) = stored(&config).await;
        assert_eq!(creds.len(), 4);
        assert_eq!(creds.psk(b"id-2"), Some(("dev-2", &[0xff, 0xff][..])));
        let last = events
            .iter()
            .rev()
            .find(|e| e.endpoint.as_deref() == Some("dev-2"));
        assert!(
            last.unwrap().detail.contains("(replaces psk id-2)"),
            "{events:?}"
        );
    }

    #[tokio::test]
    async fn an_identity_bound_elsewhere_refuses_the_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        import(&config, &parse_csv("owner,id-x,01\n").unwrap())
            .await
            .unwrap();
        let text = "new-1,id-1,01\nnew-2,id-x,02\nnew-3,id-3,03\n";
        let errors = line_errors(
            import(&config, &parse_csv(text).unwrap())
                .await
                .unwrap_err(),
        );
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].0, 2);
        assert!(
            errors[0].1.contains("already bound to endpoint \"owner\""),
            "{errors:?}"
        );
        let (creds, _) = stored(&config).await;
        assert_eq!(creds.len(), 1, "nothing imported");
    }

    #[tokio::test]
    async fn an_identity_freed_by_an_earlier_chunk_may_move() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        import(&config, &parse_csv("dev-a,id-a,01\n").unwrap())
            .await
            .unwrap();
        // dev-a gets a new identity in the first chunk; dev-b takes id-a in the second.
        let moved = format!("dev-a,id-a2,02\n{}dev-b,id-a,03\n", csv(5000, 0));
        let summary = import(&config, &parse_csv(&moved).unwrap()).await.unwrap();
        assert_eq!((summary.imported, summary.replaced), (5002, 1));
        let (creds, _) = stored(&config).await;
        assert_eq!(creds.psk(b"id-a"), Some(("dev-b", &[3][..])));

        // The other way round the first chunk would take id-c while dev-c still holds it.
        import(&config, &parse_csv("dev-c,id-c,01\n").unwrap())
            .await
            .unwrap();
        let late = format!("dev-d,id-c,02\n{}dev-c,id-c2,03\n", csv(5000, 10_000));
        let errors = line_errors(
            import(&config, &parse_csv(&late).unwrap())
                .await
                .unwrap_err(),
        );
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].0, 1);
        let (creds, _) = stored(&config).await;
        assert!(!creds.has_credential("dev-d") && !creds.has_credential("dev-10000"));
    }

    #[test]
    fn every_field_out_of_range_is_refused_with_its_line_and_name() {
        let text = [
            &format!("{},id-1,00", "e".repeat(253)),
            "dev/2,id-2,00",
            "dev+3,id-3,00",
            "dev-4,id\u{7}4,00",
            &format!("dev-5,{},00", "i".repeat(129)),
            "dev-6,id-6,",
            &format!("dev-7,id-7,{}", "0".repeat(2000)),
            "dev-8,id-8,00",
        ]
        .join("\n");
        let errors = line_errors(parse_csv(&text).unwrap_err());
        let says = |line: usize, what: &[&str]| {
            let (_, m) = errors
                .iter()
                .find(|e| e.0 == line)
                .unwrap_or_else(|| panic!("line {line} not refused: {errors:?}"));
            for w in what {
                assert!(m.contains(w), "line {line}: {m}");
            }
        };
        says(1, &["endpoint name", "1 to 252 bytes", "253"]);
        says(2, &["endpoint name", "'/'"]);
        says(3, &["endpoint name", "'+'"]);
        says(4, &["PSK identity", "control characters"]);
        says(5, &["PSK identity", "1 to 128 bytes", "129"]);
        says(6, &["PSK key", "empty"]);
        says(7, &["line is 2011 bytes", "at most 1024"]);
        assert_eq!(errors.len(), 7, "line 8 is fine: {errors:?}");
    }
}
