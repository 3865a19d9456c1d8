//! The server's side of DTLS (OMA LwM2M TS 1.2 Transport §5.2): how
//! the engine finds device credentials, which endpoints must authenticate, the server's own
//! key and certificate, and the engine's settings from the configuration.
use crate::config::Config;
use crate::core::SecurityPolicy;
use crate::provisioning::credentials::Credentials;
use anyhow::Context;
use dtls::pki::{OwnKey, Roots};
use dtls::{AlertDescription, PeerKey, PskEntry, ServerCredentials};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

/// The credential index, shared by the DTLS lookups, the core's policy and the admin channel
/// (all on the server task; the lock is never contended).
#[derive(Clone, Default)]
pub struct SharedCredentials(pub Arc<RwLock<Credentials>>);

impl SecurityPolicy for SharedCredentials {
    fn requires_dtls(&self, endpoint: &str) -> bool {
        // A poisoned lock means a panic elsewhere; refusing is the safe answer. A denied
        // endpoint was revoked: NoSec must not let it back in either.
        self.0.read().map_or(true, |c| {
            c.has_credential(endpoint) || c.is_denied(endpoint)
        })
    }
}

/// The view the DTLS engine judges clients through: the LwM2M server's with the device
/// credentials, the bootstrap server's with the bootstrap credentials.
///
/// A certificate chain is checked against `roots` (when there are any), then:
/// - a pinned certificate is its endpoint's;
/// - else, with a trusted CA configured ([`Credentials::pki`]), the certificate is the
///   endpoint it names (`security.certificate_endpoint`), unless that endpoint is denied, has
///   a pinned credential of its own (which wins), or is no valid endpoint name.
///
/// Each refusal has its own alert, which the engine's failure, and so the audit entry of the
/// refused handshake, names: `unknown_ca`, `certificate_expired` or `bad_certificate` for a
/// chain that does not verify; `access_denied` for a key or certificate that is not pinned
/// (no trusted CA) or whose endpoint has another pinned credential; `certificate_revoked`
/// for a denied endpoint; `certificate_unknown` for a certificate that names no valid
/// endpoint. The failure also names the endpoint a refused certificate is pinned to, or names
/// with a chain that verifies.
pub struct Lookup<'a> {
    /// The provisioned devices.
    pub creds: &'a Credentials,
    /// CAs device certificates must chain to (empty: pinned certificates only).
    pub roots: &'a Roots,
}

impl Lookup<'_> {
    /// A certificate that is not pinned, from a trusted CA: the endpoint it names.
    fn certificate_endpoint(
        &self,
        leaf: &[u8],
        naming: crate::config::CertificateEndpoint,
    ) -> Result<Arc<str>, AlertDescription> {
        // The engine logs the failure and the audit records it; this line adds the detail
        // an alert cannot carry. Every name here comes from a certificate the CA signed.
        let refuse = |alert: AlertDescription, name: &str, why: &dyn std::fmt::Display| {
            tracing::info!(name = ?name, reason = %why, %alert, "device certificate refused");
            alert
        };
        let endpoint = match crate::provisioning::pki::certificate_endpoint(leaf, naming) {
            Ok(name) => name,
            Err(e) => {
                tracing::info!(reason = %e, naming = naming.as_str(), "device certificate refused");
                return Err(AlertDescription::CertificateUnknown);
            }
        };
        if let Err(e) = crate::provisioning::credentials::validate_endpoint(&endpoint) {
            return Err(refuse(AlertDescription::CertificateUnknown, &endpoint, &e));
        }
        if self.creds.is_denied(&endpoint) {
            return Err(refuse(
                AlertDescription::CertificateRevoked,
                &endpoint,
                &"the endpoint is denied",
            ));
        }
        if self.creds.has_credential(&endpoint) {
            return Err(refuse(
                AlertDescription::AccessDenied,
                &endpoint,
                &"the endpoint has another pinned credential",
            ));
        }
        Ok(Arc::from(endpoint))
    }
}

impl ServerCredentials for Lookup<'_> {
    fn psk(&self, identity: &[u8]) -> Option<PskEntry> {
        self.creds.psk(identity).map(|(endpoint, key)| PskEntry {
            key: key.to_vec(),
            principal: Arc::from(endpoint),
        })
    }

    fn verify_client(
        &self,
        key: PeerKey<'_>,
        unix_time: Option<u64>,
    ) -> Result<Arc<str>, AlertDescription> {
        match key {
            PeerKey::RawPublicKey(spki) => self
                .creds
                .by_public_key(spki)
                .map(Arc::from)
                .ok_or(AlertDescription::AccessDenied),
            PeerKey::Certificates(chain) => {
                if !self.roots.is_empty() {
                    // Validity needs the time of day; `dtls_config` always gives the engine
                    // one, so its absence is a bug here, not the device's fault.
                    let now = unix_time.ok_or(AlertDescription::InternalError)?;
                    self.roots.verify(chain, now, true)?;
                }
                let leaf = chain.first().ok_or(AlertDescription::BadCertificate)?;
                if let Some(endpoint) = self.creds.by_certificate(leaf) {
                    return Ok(Arc::from(endpoint));
                }
                match self.creds.pki() {
                    Some(naming) if !self.roots.is_empty() => {
                        self.certificate_endpoint(leaf, naming)
                    }
                    _ => Err(AlertDescription::AccessDenied),
                }
            }
        }
    }

    /// The endpoint a refused certificate is bound to or names, so the audit entry of the
    /// refusal says whose it was: a pinned certificate's endpoint, or the valid endpoint name
    /// of a certificate whose chain verifies. A name in a certificate that does not chain to
    /// a trusted CA is anyone's claim, and is not reported.
    fn refused_identity(&self, key: PeerKey<'_>, unix_time: Option<u64>) -> Option<String> {
        let PeerKey::Certificates(chain) = key else {
            return None;
        };
        let leaf = chain.first()?;
        if let Some(endpoint) = self.creds.by_certificate(leaf) {
            return Some(endpoint.to_string());
        }
        let naming = self.creds.pki()?;
        if self.roots.is_empty() || self.roots.verify(chain, unix_time?, true).is_err() {
            return None;
        }
        let name = crate::provisioning::pki::certificate_endpoint(leaf, naming).ok()?;
        crate::provisioning::credentials::validate_endpoint(&name)
            .is_ok()
            .then_some(name)
    }
}

/// How a certificate from a trusted CA names its endpoint ([`Credentials::set_pki`]): as
/// `security.certificate_endpoint` says if `security.trusted_ca` is set, else not at all.
pub fn pki_naming(config: &Config) -> Option<crate::config::CertificateEndpoint> {
    let sec = &config.security;
    (!sec.trusted_ca.as_os_str().is_empty()).then_some(sec.certificate_endpoint)
}

/// The server's ECDSA key and certificate: the configured files, or a P-256 key and
/// self-signed certificate generated on first start and kept in the data directory (so a
/// device that pinned the server's key keeps working across restarts).
pub fn server_key(config: &Config) -> anyhow::Result<Arc<OwnKey>> {
    let sec = &config.security;
    let (cert_path, key_path) = if sec.certificate.as_os_str().is_empty() {
        let dir = &config.server.data_dir;
        let (c, k) = (dir.join("server-cert.pem"), dir.join("server-key.pem"));
        if !c.exists() || !k.exists() {
            generate_self_signed(&c, &k, server_names(config))?;
        }
        (c, k)
    } else {
        (sec.certificate.clone(), sec.private_key.clone())
    };
    let chain: Vec<Vec<u8>> = CertificateDer::pem_file_iter(&cert_path)
        .with_context(|| format!("reading {}", cert_path.display()))?
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing {}", cert_path.display()))?;
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .with_context(|| format!("reading {}", key_path.display()))?;
    let PrivateKeyDer::Pkcs8(pkcs8) = key else {
        anyhow::bail!(
            "{}: the server key must be a PKCS#8 P-256 key (\"BEGIN PRIVATE KEY\")",
            key_path.display()
        );
    };
    let key = OwnKey::from_pkcs8_der(pkcs8.secret_pkcs8_der(), chain)
        .with_context(|| format!("{} and {}", cert_path.display(), key_path.display()))?;
    Ok(Arc::new(key))
}

/// The names the generated certificate carries, so that a client that checks the server's name
/// against the URI it dialed (mbedTLS-based clients do by default) accepts it: `localhost`, the
/// host's name, every address the DTLS listeners are bound to (a wildcard address stands for
/// the loopback ones), and `lwm2m-server`, the name earlier versions used. Made once, with the
/// key: a listener added later is not in it (configure `certificate` for a fixed set).
fn server_names(config: &Config) -> Vec<String> {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| rustls_pki_types::DnsName::try_from(h.as_str()).is_ok());
    let ips = [
        std::net::IpAddr::from(std::net::Ipv4Addr::LOCALHOST),
        std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
    ]
    .into_iter()
    .chain(config.server.coaps_bind.iter().map(|a| a.ip()))
    .filter(|ip| !ip.is_unspecified())
    .map(|ip| ip.to_string());
    let mut names: Vec<String> = Vec::new();
    for name in ["localhost".to_string(), "lwm2m-server".to_string()]
        .into_iter()
        .chain(host)
        .chain(ips)
    {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

fn generate_self_signed(cert: &Path, key: &Path, names: Vec<String>) -> anyhow::Result<()> {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = rcgen::CertificateParams::new(names)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "lwm2m-server");
    params.not_after = rcgen::date_time_ymd(2099, 12, 31);
    let c = params.self_signed(&pair)?;
    write_private(key, pair.serialize_pem().as_bytes())?;
    std::fs::write(cert, c.pem()).with_context(|| format!("writing {}", cert.display()))?;
    tracing::info!(certificate = %cert.display(), "generated a self-signed server certificate and key");
    Ok(())
}

fn write_private(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(data)?;
    Ok(())
}

/// The CAs device certificates must chain to (empty: pinned certificates only).
pub fn trusted_roots(path: &PathBuf) -> anyhow::Result<Roots> {
    if path.as_os_str().is_empty() {
        return Ok(Roots::default());
    }
    let certs: Vec<Vec<u8>> = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("reading {}", path.display()))?
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing {}", path.display()))?;
    Roots::from_der(&certs).with_context(|| format!("trust anchors in {}", path.display()))
}

/// The engine's settings from `[dtls]` (and, in a cluster, this node's byte at the start of
/// every Connection ID: see [`crate::cluster`]). `clock_base` pairs an instant with the wall-clock time
/// then: the engine derives the time of day certificates are checked against from it and the
/// `now` of each call, and reads no clock itself.
pub fn dtls_config(
    config: &Config,
    key: Option<Arc<OwnKey>>,
    clock_base: (Instant, SystemTime),
) -> dtls::ServerConfig {
    let d = &config.dtls;
    dtls::ServerConfig {
        suites: d.cipher_suites.clone(),
        cid_len: usize::from(d.connection_id_length),
        cid_node: config.cluster.enabled.then_some(config.cluster.node_id),
        timers: dtls::Timers {
            initial: Duration::from_millis(d.retransmit_initial_ms),
            max: Duration::from_millis(d.retransmit_max_ms),
            ..dtls::Timers::default()
        },
        max_handshakes: d.max_handshakes,
        handshakes_per_source_per_sec: d.handshakes_per_source_per_sec,
        max_sessions: d.max_sessions,
        require_extended_master_secret: d.require_extended_master_secret,
        key,
        wall_clock: Some(dtls::WallClock::new(clock_base.0, clock_base.1)),
        ..dtls::ServerConfig::default()
    }
}

#[cfg(test)]
#[path = "lookup_tests.rs"]
mod lookup_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use rustls_pki_types::ServerName;

    /// Whether a client dialing `name` accepts the certificate in `pem` for it.
    fn valid_for(pem: &Path, name: &str) -> bool {
        let der = CertificateDer::from_pem_file(pem).expect("a certificate");
        let cert = webpki::EndEntityCert::try_from(&der).expect("parses");
        let name = ServerName::try_from(name).expect("a server name");
        cert.verify_is_valid_for_subject_name(&name).is_ok()
    }

    #[test]
    fn the_generated_certificate_names_what_clients_dial() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config::embedded().expect("the embedded config");
        config.server.data_dir = dir.path().to_path_buf();
        config.server.coaps_bind = vec![
            "0.0.0.0:5684".parse().expect("addr"),
            "192.0.2.7:5684".parse().expect("addr"),
        ];
        config
            .server
            .coaps_bind
            .push("[2001:db8::1]:5684".parse().expect("addr"));
        config.server.coap_bind = vec!["198.51.100.3:5683".parse().expect("addr")];
        server_key(&config).expect("generated");
        let pem = dir.path().join("server-cert.pem");
        for name in ["localhost", "127.0.0.1", "::1", "192.0.2.7", "2001:db8::1"] {
            assert!(valid_for(&pem, name), "{name} is not in the certificate");
        }
        assert!(!valid_for(&pem, "0.0.0.0"), "a wildcard is not a name");
        assert!(
            !valid_for(&pem, "198.51.100.3"),
            "plain CoAP presents no certificate"
        );
        assert!(!valid_for(&pem, "example.com"));
        if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
            if rustls_pki_types::DnsName::try_from(host.trim()).is_ok() {
                assert!(valid_for(&pem, host.trim()), "the host name {host:?}");
            }
        }
        // A second start keeps the key devices may have pinned.
        let before = std::fs::read(&pem).expect("read");
        server_key(&config).expect("loaded");
        assert_eq!(std::fs::read(&pem).expect("read"), before);
    }
}
