//! PEM files the configuration names (RFC 7468): certificate chains and private keys, read
//! with rustls-pki-types' PEM parser. Errors name the file and what is wrong with it; the
//! callers (the MQTT bridge's TLS, the HTTP API's HTTPS) add the configuration key.
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;

/// Why a PEM file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PemFileError {
    /// It could not be read.
    #[error(transparent)]
    Read(#[from] std::io::Error),
    /// It holds nothing usable.
    #[error("{0}")]
    Invalid(String),
}

/// Every certificate of the file, in file order; at least one.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, PemFileError> {
    let pem = std::fs::read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PemFileError::Invalid(format!("malformed PEM: {e}")))?;
    if certs.is_empty() {
        return Err(PemFileError::Invalid(
            "no CERTIFICATE block in the file".into(),
        ));
    }
    Ok(certs)
}

/// The first private key of the file (PKCS#8, SEC1 or PKCS#1).
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, PemFileError> {
    let pem = std::fs::read(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        PemFileError::Invalid(match e {
            rustls_pki_types::pem::Error::NoItemsFound => {
                "no PRIVATE KEY block (PKCS#8, SEC1 or PKCS#1) in the file".into()
            }
            e => format!("malformed PEM: {e}"),
        })
    })
}
