//! HTTPS and the bearer token for the API: the certificate chain and key of
//! `[http] tls_cert`/`tls_key` as a rustls server configuration (TLS 1.2 and 1.3, RFC 8446,
//! ALPN `http/1.1` as RFC 7301 names it), and the token of `[http] token_file` (RFC 6750).
//!
//! Both are read once, when the server starts, so that a missing or unusable file stops the
//! start with the file's name instead of surfacing at the first request.
use crate::config::HttpSection;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Shortest token accepted, in characters: a guessable token would be no access control.
pub const MIN_TOKEN_LEN: usize = 16;

/// Why the token or the TLS configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpSetupError {
    /// A file could not be read.
    #[error("http.{key} {}: {source}", path.display())]
    Read {
        /// The configuration key naming the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The token file holds no usable token.
    #[error("http.token_file {}: {reason}", path.display())]
    Token {
        /// The file.
        path: PathBuf,
        /// What is wrong with its content.
        reason: String,
    },
    /// A PEM file holds nothing usable.
    #[error("http.{key} {}: {detail}", path.display())]
    Pem {
        /// The configuration key naming the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// rustls refused the chain or the key (e.g. a key that does not match the certificate).
    #[error("http.tls_cert/http.tls_key: {0}")]
    Tls(#[from] rustls::Error),
}

/// The token of `[http] token_file`, if set: the file's content with surrounding whitespace
/// trimmed, at least [`MIN_TOKEN_LEN`] visible ASCII characters (what an `Authorization`
/// header and a query string both carry unchanged).
pub fn load_token(http: &HttpSection) -> anyhow::Result<Option<Arc<str>>> {
    let Some(path) = &http.token_file else {
        return Ok(None);
    };
    let token = read_token(path)?;
    warn_if_readable_by_others(path);
    Ok(Some(token))
}

/// The token grants what the admin CLI can do: a file others may read gives it to them.
#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                file = %path.display(),
                mode = format_args!("{:o}", mode & 0o777),
                "http.token_file is readable by other users: chmod 600 it"
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

fn read_token(path: &Path) -> Result<Arc<str>, HttpSetupError> {
    let text = std::fs::read_to_string(path).map_err(|source| HttpSetupError::Read {
        key: "token_file",
        path: path.to_path_buf(),
        source,
    })?;
    let bad = |reason: String| HttpSetupError::Token {
        path: path.to_path_buf(),
        reason,
    };
    let token = text.trim();
    if token.is_empty() {
        return Err(bad("the file is empty".into()));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad(
            "the token must be visible ASCII characters, without spaces".into(),
        ));
    }
    if token.len() < MIN_TOKEN_LEN {
        return Err(bad(format!(
            "the token has {} characters; at least {MIN_TOKEN_LEN} are needed",
            token.len()
        )));
    }
    Ok(Arc::from(token))
}

/// The TLS configuration of `[http] tls_cert` and `tls_key`, if set (the configuration
/// check makes sure they are set together): the *ring* provider, as everywhere in the
/// server, no client certificates (the bearer token authenticates), ALPN `http/1.1`.
pub fn server_config(http: &HttpSection) -> anyhow::Result<Option<Arc<rustls::ServerConfig>>> {
    let (Some(cert), Some(key)) = (&http.tls_cert, &http.tls_key) else {
        return Ok(None);
    };
    Ok(Some(build(cert, key)?))
}

fn build(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, HttpSetupError> {
    let chain = read_certs(cert)?;
    let key = read_key(key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Every certificate of the chain file, the server's first; at least one.
fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, HttpSetupError> {
    crate::pem::read_certs(path).map_err(|e| pem_error("tls_cert", path, e))
}

/// The first private key of the key file (PKCS#8, SEC1 or PKCS#1).
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, HttpSetupError> {
    crate::pem::read_key(path).map_err(|e| pem_error("tls_key", path, e))
}

fn pem_error(key: &'static str, path: &Path, e: crate::pem::PemFileError) -> HttpSetupError {
    let path = path.to_path_buf();
    match e {
        crate::pem::PemFileError::Read(source) => HttpSetupError::Read { key, path, source },
        crate::pem::PemFileError::Invalid(detail) => HttpSetupError::Pem { key, path, detail },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(dir: &Path) -> HttpSection {
        HttpSection {
            token_file: Some(dir.join("token")),
            tls_cert: Some(dir.join("cert.pem")),
            tls_key: Some(dir.join("key.pem")),
            ..HttpSection::default()
        }
    }

    fn err<T: std::fmt::Debug>(r: anyhow::Result<T>) -> String {
        format!("{:#}", r.unwrap_err())
    }

    #[test]
    fn the_token_is_trimmed_and_a_short_or_missing_one_is_refused_with_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let http = section(dir.path());
        assert!(load_token(&HttpSection::default()).unwrap().is_none());
        let e = err(load_token(&http));
        assert!(e.contains("http.token_file") && e.contains("token"), "{e}");
        std::fs::write(dir.path().join("token"), " \n").unwrap();
        let e = err(load_token(&http));
        assert!(
            e.contains("empty") && e.contains(&*dir.path().to_string_lossy()),
            "{e}"
        );
        std::fs::write(dir.path().join("token"), "0123456789abcde\n").unwrap();
        let e = err(load_token(&http));
        assert!(e.contains("at least 16") && e.contains("token"), "{e}");
        std::fs::write(dir.path().join("token"), "0123456789 abcdef\n").unwrap();
        let e = err(load_token(&http));
        assert!(e.contains("without spaces"), "{e}");
        std::fs::write(dir.path().join("token"), "\n 0123456789abcdef \n").unwrap();
        assert_eq!(
            load_token(&http).unwrap().as_deref(),
            Some("0123456789abcdef")
        );
    }

    #[test]
    fn a_generated_certificate_makes_a_configuration_and_bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let http = section(dir.path());
        assert!(server_config(&HttpSection::default()).unwrap().is_none());
        let e = err(server_config(&http));
        assert!(e.contains("http.tls_cert") && e.contains("cert.pem"), "{e}");

        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.path().join("cert.pem"), cert.pem()).unwrap();
        // The certificate where the key should be.
        std::fs::write(dir.path().join("key.pem"), cert.pem()).unwrap();
        let e = err(server_config(&http));
        assert!(
            e.contains("http.tls_key") && e.contains("PRIVATE KEY"),
            "{e}"
        );
        // Another key than the certificate's.
        let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        std::fs::write(dir.path().join("key.pem"), other.serialize_pem()).unwrap();
        let e = err(server_config(&http));
        assert!(e.contains("http.tls_cert/http.tls_key"), "{e}");

        std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).unwrap();
        let config = server_config(&http).unwrap().unwrap();
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }
}
