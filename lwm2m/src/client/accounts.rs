//! The server accounts an [`ObjectStore`] holds, typed (OMA LwM2M TS 1.2 Core Appendix E.1
//! Security object, E.2 Server object): what a driver needs to build the DTLS session and
//! the [`Client`](super::Client) for an LwM2M server after bootstrap, and to reach the
//! bootstrap server again ([`ClientConfig::with_account`] carries an account's settings into
//! the client's configuration).
//!
//! An LwM2M server account is a Security instance whose Bootstrap-Server resource
//! (`/0/x/1`) is false, paired through its Short Server ID (`/0/x/10`) with the Server
//! instance of the same ID (`/1/y/0`). The bootstrap server's account is the Security
//! instance with `/0/x/1` true; it has no Server instance.
use super::config::ClientConfig;
use super::objects::ObjectStore;
use crate::model::{Path, Value};
use crate::ops::bootstrap::{SECURITY, SERVER};
use crate::ops::registration::Binding;
use std::fmt;

/// How the device authenticates to a server (Core E.1: Security Mode `/0/x/2` and the key
/// resources `/0/x/3`, `/0/x/4`, `/0/x/5`). `Debug` never prints a key.
#[derive(Clone, PartialEq, Eq)]
pub enum SecurityMode {
    /// Mode 0, pre-shared key.
    Psk {
        /// `/0/x/3` the PSK identity.
        identity: Vec<u8>,
        /// `/0/x/5` the key.
        key: Vec<u8>,
    },
    /// Mode 1, raw public key.
    RawPublicKey {
        /// `/0/x/3` the device's public key (SubjectPublicKeyInfo, DER).
        public_key: Vec<u8>,
        /// `/0/x/5` the device's private key; empty when the device keeps the one it has.
        private_key: Vec<u8>,
        /// `/0/x/4` the server's public key.
        server_public_key: Vec<u8>,
    },
    /// Mode 2, certificate, or mode 4, certificate with EST (`est`).
    Certificate {
        /// `/0/x/3` the device's certificate (DER).
        certificate: Vec<u8>,
        /// `/0/x/5` the device's private key; empty when the device keeps the one it has.
        private_key: Vec<u8>,
        /// `/0/x/4` the server's certificate (or trust anchor).
        server_certificate: Vec<u8>,
        /// Mode 4: the certificate is to be enrolled over EST.
        est: bool,
    },
    /// Mode 3, no security.
    NoSec,
}

impl SecurityMode {
    /// The Security Mode resource value (`/0/x/2`).
    pub fn mode(&self) -> i64 {
        match self {
            Self::Psk { .. } => 0,
            Self::RawPublicKey { .. } => 1,
            Self::Certificate { est: false, .. } => 2,
            Self::NoSec => 3,
            Self::Certificate { est: true, .. } => 4,
        }
    }
}

impl fmt::Debug for SecurityMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Psk { identity, key } => f
                .debug_struct("Psk")
                .field("identity", &String::from_utf8_lossy(identity))
                .field("key", &format_args!("<{} bytes redacted>", key.len()))
                .finish(),
            Self::RawPublicKey { .. } => f.write_str("RawPublicKey"),
            Self::Certificate { est, .. } => {
                f.debug_struct("Certificate").field("est", est).finish()
            }
            Self::NoSec => f.write_str("NoSec"),
        }
    }
}

/// One LwM2M server account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAccount {
    /// The Security instance (`/0/x`).
    pub security_instance: u16,
    /// The Server instance (`/1/y`).
    pub server_instance: u16,
    /// `/0/x/0` LwM2M Server URI, e.g. `coaps://lwm2m.example.com:5684`.
    pub uri: String,
    /// `/0/x/10` = `/1/y/0`.
    pub short_server_id: u16,
    /// `/0/x/2..5`.
    pub security: SecurityMode,
    /// `/1/y/1` Lifetime in seconds, when set and positive.
    pub lifetime: Option<u32>,
    /// `/1/y/7` Binding, when set and valid.
    pub binding: Option<Binding>,
}

/// The bootstrap server's account: the Security instance with Bootstrap-Server true.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapAccount {
    /// The Security instance (`/0/x`).
    pub security_instance: u16,
    /// `/0/x/0` the bootstrap server's URI.
    pub uri: String,
    /// `/0/x/2..5`.
    pub security: SecurityMode,
    /// `/0/x/11` Client Hold Off Time in seconds: how long to wait for a server-initiated
    /// bootstrap before asking.
    pub client_hold_off: Option<u32>,
    /// `/0/x/12` Bootstrap-Server Account Timeout in seconds.
    pub account_timeout: Option<u32>,
}

/// Why a server URI cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid server URI {uri:?}: {reason}")]
pub struct UriError {
    /// The URI, cut to 64 characters.
    pub uri: String,
    /// What is wrong.
    pub reason: &'static str,
}

/// A `coap://` or `coaps://` server URI taken apart (RFC 7252 §6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUri {
    /// `coaps`: over DTLS.
    pub secure: bool,
    /// The host, without brackets for an IPv6 literal.
    pub host: String,
    /// The port; 5683 (coap) or 5684 (coaps) when not given.
    pub port: u16,
}

impl ServerUri {
    /// Parses a server URI as the Security object holds it (`/0/x/0`). Other schemes (TCP,
    /// SMS, MQTT) are refused: only CoAP over UDP is spoken here.
    pub fn parse(uri: &str) -> Result<Self, UriError> {
        let err = |reason| UriError {
            uri: uri.chars().take(64).collect(),
            reason,
        };
        let (secure, rest) = if let Some(r) = uri.strip_prefix("coaps://") {
            (true, r)
        } else if let Some(r) = uri.strip_prefix("coap://") {
            (false, r)
        } else {
            return Err(err("the scheme is not coap or coaps"));
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(|| err("unclosed '['"))?;
            (host, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(err("no host"));
        }
        let port = match port {
            None | Some("") => {
                if secure {
                    5684
                } else {
                    5683
                }
            }
            Some(p) => p.parse().map_err(|_| err("bad port"))?,
        };
        Ok(Self {
            secure,
            host: host.to_owned(),
            port,
        })
    }
}

impl ClientConfig {
    /// Takes the Short Server ID, lifetime and binding of `account` (what a bootstrap
    /// server gave), so that the [`Client`](super::Client) built on that store registers with
    /// that account's settings rather than overwriting them with the defaults.
    pub fn with_account(mut self, account: &ServerAccount) -> Self {
        self.short_server_id = account.short_server_id;
        if let Some(lifetime) = account.lifetime {
            self.lifetime = lifetime;
        }
        if let Some(binding) = account.binding {
            self.binding = binding;
        }
        self
    }
}

impl ObjectStore {
    fn opaque(&self, path: Path) -> Vec<u8> {
        match self.value(&path) {
            Some(Value::Opaque(b)) => b.clone(),
            Some(Value::String(s)) => s.as_bytes().to_vec(),
            _ => Vec::new(),
        }
    }

    fn integer(&self, path: Path) -> Option<i64> {
        match self.value(&path)? {
            Value::Integer(v) | Value::Time(v) => Some(*v),
            Value::UnsignedInteger(v) => i64::try_from(*v).ok(),
            _ => None,
        }
    }

    fn string(&self, path: Path) -> Option<String> {
        match self.value(&path)? {
            Value::String(s) => Some(s.clone()),
            _ => None,
        }
    }

    /// Whether Security instance `i` is the bootstrap server's (`/0/i/1` true).
    pub(super) fn is_bootstrap_security(&self, i: u16) -> bool {
        matches!(
            self.value(&Path::resource(SECURITY, i, 1)),
            Some(Value::Boolean(true))
        )
    }

    /// The Short Server ID of Security instance `i` (`/0/i/10`), if valid.
    pub(super) fn security_ssid(&self, i: u16) -> Option<u16> {
        self.integer(Path::resource(SECURITY, i, 10))
            .and_then(|v| u16::try_from(v).ok())
            .filter(|v| (1..=crate::model::MAX_ID).contains(v))
    }

    /// The Short Server ID of Server instance `i` (`/1/i/0`), if valid.
    pub(super) fn server_ssid(&self, i: u16) -> Option<u16> {
        self.integer(Path::resource(SERVER, i, 0))
            .and_then(|v| u16::try_from(v).ok())
            .filter(|v| (1..=crate::model::MAX_ID).contains(v))
    }

    /// The security of Security instance `i`; `None` when the mode is missing or unknown.
    fn security_mode(&self, i: u16) -> Option<SecurityMode> {
        let key = |r| self.opaque(Path::resource(SECURITY, i, r));
        Some(match self.integer(Path::resource(SECURITY, i, 2))? {
            0 => SecurityMode::Psk {
                identity: key(3),
                key: key(5),
            },
            1 => SecurityMode::RawPublicKey {
                public_key: key(3),
                private_key: key(5),
                server_public_key: key(4),
            },
            m @ (2 | 4) => SecurityMode::Certificate {
                certificate: key(3),
                private_key: key(5),
                server_certificate: key(4),
                est: m == 4,
            },
            3 => SecurityMode::NoSec,
            _ => return None,
        })
    }

    /// Every complete LwM2M server account, by Security instance: a Security instance that
    /// is not the bootstrap server's, with a URI, a known Security Mode and a Short Server
    /// ID that a Server instance carries too. Incomplete ones are left out.
    pub fn server_accounts(&self) -> Vec<ServerAccount> {
        let mut out = Vec::new();
        for i in self.instance_ids(SECURITY) {
            if self.is_bootstrap_security(i) {
                continue;
            }
            let (Some(ssid), Some(uri), Some(security)) = (
                self.security_ssid(i),
                self.string(Path::resource(SECURITY, i, 0)),
                self.security_mode(i),
            ) else {
                continue;
            };
            let Some(server_instance) = self
                .instance_ids(SERVER)
                .find(|s| self.server_ssid(*s) == Some(ssid))
            else {
                continue;
            };
            out.push(ServerAccount {
                security_instance: i,
                server_instance,
                uri,
                short_server_id: ssid,
                security,
                lifetime: self.lifetime(ssid),
                binding: self.binding(ssid),
            });
        }
        out
    }

    /// The bootstrap server's account, if the store has one with a URI and a known mode.
    pub fn bootstrap_account(&self) -> Option<BootstrapAccount> {
        let i = self
            .instance_ids(SECURITY)
            .find(|i| self.is_bootstrap_security(*i))?;
        let seconds = |r| {
            self.integer(Path::resource(SECURITY, i, r))
                .and_then(|v| u32::try_from(v).ok())
        };
        Some(BootstrapAccount {
            security_instance: i,
            uri: self.string(Path::resource(SECURITY, i, 0))?,
            security: self.security_mode(i)?,
            client_hold_off: seconds(11),
            account_timeout: seconds(12),
        })
    }

    /// A store for a device fresh from the factory: the Device object (as in
    /// [`standard`](Self::standard)) and one Security instance for the bootstrap server at
    /// `uri` with `security`, and no LwM2M server account yet.
    pub fn factory(endpoint_name: &str, uri: &str, security: &SecurityMode) -> Self {
        let mut s = Self::standard(endpoint_name);
        for o in [SECURITY, SERVER] {
            for i in s.instance_ids(o).collect::<Vec<_>>() {
                let _ = s.remove_instance(o, i);
            }
        }
        let _ = s.add_instance(SECURITY, 0, security_instance(uri, true, security, None));
        s
    }
}

/// The resources of a Security instance for a server at `uri` (`bootstrap`: the bootstrap
/// server's, else an LwM2M server's with Short Server ID `ssid`).
pub fn security_instance(
    uri: &str,
    bootstrap: bool,
    security: &SecurityMode,
    ssid: Option<u16>,
) -> crate::model::Instance {
    use crate::model::Resource::Single;
    let bytes = |b: &[u8]| Single(Value::Opaque(b.to_vec()));
    let (k3, k4, k5): (&[u8], &[u8], &[u8]) = match security {
        SecurityMode::Psk { identity, key } => (identity, &[], key),
        SecurityMode::RawPublicKey {
            public_key,
            private_key,
            server_public_key,
        } => (public_key, server_public_key, private_key),
        SecurityMode::Certificate {
            certificate,
            private_key,
            server_certificate,
            ..
        } => (certificate, server_certificate, private_key),
        SecurityMode::NoSec => (&[], &[], &[]),
    };
    let mut inst = crate::model::Instance::from([
        (0, Single(Value::String(uri.to_owned()))),
        (1, Single(Value::Boolean(bootstrap))),
        (2, Single(Value::Integer(security.mode()))),
        (3, bytes(k3)),
        (4, bytes(k4)),
        (5, bytes(k5)),
    ]);
    if let Some(ssid) = ssid {
        inst.insert(10, Single(Value::Integer(i64::from(ssid))));
    }
    inst
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn server_uris_are_taken_apart_with_default_ports() {
        let u = ServerUri::parse("coaps://127.0.0.1:5784").unwrap();
        assert_eq!(
            (u.secure, u.host.as_str(), u.port),
            (true, "127.0.0.1", 5784)
        );
        let u = ServerUri::parse("coap://lwm2m.example.com/path").unwrap();
        assert_eq!(
            (u.secure, u.host.as_str(), u.port),
            (false, "lwm2m.example.com", 5683)
        );
        let u = ServerUri::parse("coaps://[::1]").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 5684));
        for bad in [
            "coap+tcp://h:1",
            "coaps://",
            "coaps://h:99999",
            "coaps://[::1",
            "h:1",
        ] {
            assert!(ServerUri::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_factory_store_has_the_bootstrap_account_only_and_keys_never_print() {
        let psk = SecurityMode::Psk {
            identity: b"factory-7".to_vec(),
            key: vec![0xab; 16],
        };
        let store = ObjectStore::factory("dev-7", "coaps://127.0.0.1:5784", &psk);
        assert!(store.server_accounts().is_empty());
        let bs = store.bootstrap_account().unwrap();
        assert_eq!(bs.security, psk);
        assert_eq!(bs.uri, "coaps://127.0.0.1:5784");
        let shown = format!("{bs:?}");
        assert!(
            shown.contains("factory-7") && !shown.contains("171"),
            "{shown}"
        );
        assert!(store.get(&Path::instance(3, 0)).is_some());
    }
}
