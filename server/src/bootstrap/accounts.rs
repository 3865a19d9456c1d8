//! The LwM2M server account each bootstrapped device gets (Core Appendix E.1 Security, E.2
//! Server), from `[bootstrap]`: the server URI, lifetime, binding and Short Server ID, and
//! the credential — a PSK identity and key generated for the device at each bootstrap, or the
//! raw public key or certificate it bootstrapped with, or none.
//!
//! Generated keys come from the operating system's randomness (through `rand`'s thread
//! generator, reseeded from it): the one place the sans-IO core's embedding takes entropy,
//! so the core and its tests stay deterministic.
use crate::config::{BootstrapSection, ServerSecurity};
use crate::core::SecurityPolicy;
use crate::provisioning::credentials::{validate_endpoint, Secret};
use crate::provisioning::security::SharedCredentials;
use lwm2m_bootstrap::{Account, AccountRequest, AccountSecurity, Accounts, Refusal};
use rand::RngCore;

/// PSK length generated: 128 bits, the longest tinydtls takes (DTLS_PSK_MAX_KEY_LEN 16),
/// as strong as the AES-128 suites it keys.
const PSK_LEN: usize = 16;
/// Random bytes in a generated PSK identity (hex, 24 characters: within the 32 bytes tinydtls
/// takes, and unguessable, so an identity says nothing about the device).
const IDENTITY_RANDOM: usize = 12;

/// The accounts `[bootstrap]` describes.
pub struct ConfiguredAccounts {
    settings: BootstrapSection,
    /// The LwM2M server's public key (SubjectPublicKeyInfo) and certificate, for `rpk` and
    /// `x509`.
    server_spki: Vec<u8>,
    server_certificate: Option<Vec<u8>>,
    /// The factory credentials: who bootstraps over DTLS, and with what key.
    factory: SharedCredentials,
    /// The LwM2M server's credentials: an endpoint that has one, or that a CA certificate
    /// may name (`pki`), is never given an account over NoSec.
    servers: SharedCredentials,
    pki: bool,
}

impl ConfiguredAccounts {
    /// Accounts as `settings` say, for an LwM2M server with public key `server_spki` and
    /// certificate `server_certificate` (its own first), devices known by their factory
    /// credentials in `factory` and to the LwM2M server by `servers` (and, with `pki`, by
    /// certificates from a trusted CA).
    pub fn new(
        settings: BootstrapSection,
        server_spki: Vec<u8>,
        server_certificate: Option<Vec<u8>>,
        factory: SharedCredentials,
        servers: SharedCredentials,
        pki: bool,
    ) -> Self {
        Self {
            settings,
            server_spki,
            server_certificate,
            factory,
            servers,
            pki,
        }
    }

    fn security(&self, endpoint: &str) -> Result<AccountSecurity, Refusal> {
        let factory = || -> Result<Option<Secret>, Refusal> {
            let creds = self
                .factory
                .0
                .read()
                .map_err(|_| Refusal("credential index unavailable".into()))?;
            Ok(creds.get(endpoint).map(|c| c.secret.clone()))
        };
        Ok(match self.settings.server_security {
            ServerSecurity::Nosec => AccountSecurity::NoSec,
            ServerSecurity::Psk => {
                let mut rng = rand::rng();
                let mut id = [0u8; IDENTITY_RANDOM];
                rng.fill_bytes(&mut id);
                let mut key = vec![0u8; PSK_LEN];
                rng.fill_bytes(&mut key);
                AccountSecurity::Psk {
                    identity: hex::encode(id).into_bytes(),
                    key,
                }
            }
            ServerSecurity::Rpk => match factory()? {
                Some(Secret::Rpk { spki_der }) => AccountSecurity::Rpk {
                    client_public_key: spki_der,
                    client_private_key: None,
                    server_public_key: self.server_spki.clone(),
                },
                _ => {
                    return Err(Refusal(
                        "server_security = rpk binds the raw public key the device bootstraps with, and its factory credential is not one".into(),
                    ))
                }
            },
            ServerSecurity::X509 => match (factory()?, &self.server_certificate) {
                (Some(Secret::X509 { cert_der }), Some(server)) => AccountSecurity::Certificate {
                    client_certificate: cert_der,
                    client_private_key: None,
                    server_certificate: server.clone(),
                },
                (_, None) => {
                    return Err(Refusal(
                        "server_security = x509 needs a server certificate".into(),
                    ))
                }
                _ => {
                    return Err(Refusal(
                        "server_security = x509 binds the certificate the device bootstraps with, and its factory credential is not a pinned certificate".into(),
                    ))
                }
            },
        })
    }
}

impl Accounts for ConfiguredAccounts {
    fn account(&mut self, request: &AccountRequest<'_>) -> Result<Account, Refusal> {
        let endpoint = request.endpoint;
        validate_endpoint(endpoint).map_err(|e| Refusal(e.to_string()))?;
        // Revoked: bootstrapping again must not undo it (`device add` lifts it).
        if self
            .factory
            .0
            .read()
            .map_or(true, |c| c.is_denied(endpoint))
        {
            return Err(Refusal(format!(
                "{endpoint} is revoked: `device add` must admit it again before it may bootstrap"
            )));
        }
        if request.principal.is_none() {
            // Over NoSec anyone can claim any name: an endpoint with a credential of either
            // server (or any name, when a CA's certificates may claim names) must prove it
            // is itself, or anyone could take its account and lock the device out.
            let known = self.pki
                || self.factory.requires_dtls(endpoint)
                || self.servers.requires_dtls(endpoint);
            if known {
                return Err(Refusal(format!(
                    "{endpoint} has a credential: it must bootstrap over DTLS"
                )));
            }
        }
        Ok(Account {
            server_uri: self.settings.server_uri.clone(),
            short_server_id: u16::try_from(self.settings.short_server_id).unwrap_or(1),
            lifetime: u32::try_from(self.settings.lifetime).unwrap_or(u32::MAX),
            binding: self.settings.binding.clone(),
            notification_storing: true,
            security: self.security(endpoint)?,
        })
    }
}

/// The credential the LwM2M server must accept from a device that now holds `account`, if
/// it needs one (NoSec does not).
pub fn installed_credential(account: &Account) -> Option<Secret> {
    match &account.security {
        AccountSecurity::NoSec => None,
        AccountSecurity::Psk { identity, key } => Some(Secret::Psk {
            identity: identity.clone(),
            key: key.clone(),
        }),
        AccountSecurity::Rpk {
            client_public_key, ..
        } => Some(Secret::Rpk {
            spki_der: client_public_key.clone(),
        }),
        AccountSecurity::Certificate {
            client_certificate, ..
        } => Some(Secret::X509 {
            cert_der: client_certificate.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provisioning::credentials::Credentials;

    fn accounts(security: ServerSecurity) -> ConfiguredAccounts {
        let settings = BootstrapSection {
            server_security: security,
            ..BootstrapSection::default()
        };
        ConfiguredAccounts::new(
            settings,
            vec![1, 2, 3],
            None,
            SharedCredentials::default(),
            SharedCredentials::default(),
            false,
        )
    }

    fn request(endpoint: &str) -> AccountRequest<'_> {
        AccountRequest {
            endpoint,
            principal: Some(endpoint),
            preferred_format: None,
        }
    }

    #[test]
    fn every_bootstrap_generates_a_fresh_psk_that_tinydtls_can_use() {
        let mut a = accounts(ServerSecurity::Psk);
        let one = a.account(&request("dev-1")).expect("an account");
        let two = a.account(&request("dev-1")).expect("an account");
        let other = a.account(&request("dev-2")).expect("an account");
        let psk = |acc: &Account| match &acc.security {
            AccountSecurity::Psk { identity, key } => (identity.clone(), key.clone()),
            s => panic!("not a PSK: {s:?}"),
        };
        let (i1, k1) = psk(&one);
        assert_eq!(k1.len(), 16);
        assert!(i1.len() <= 32 && !i1.is_empty());
        assert_ne!(
            psk(&one),
            psk(&two),
            "a second bootstrap gets a fresh credential"
        );
        assert_ne!(psk(&one).0, psk(&other).0);
        assert_ne!(psk(&one).1, psk(&other).1);
        assert_eq!(one.server_uri, "coaps://127.0.0.1:5684");
        assert_eq!((one.short_server_id, one.lifetime), (1, 300));
        assert!(
            !format!("{one:?}").contains(&hex::encode(&k1)),
            "no key in logs"
        );
    }

    #[test]
    fn a_device_with_a_factory_credential_cannot_bootstrap_over_nosec() {
        let mut a = accounts(ServerSecurity::Psk);
        {
            let mut c = a.factory.0.write().expect("lock");
            *c = Credentials::new();
        }
        let store_dir = tempfile::tempdir().expect("tempdir");
        let store = crate::store::Store::open(
            &store_dir.path().join("s.redb"),
            crate::store::StoreConfig::default(),
        )
        .expect("store");
        let key = crate::provisioning::secrets::SecretsKey::generate().expect("a key");
        a.factory
            .0
            .write()
            .expect("lock")
            .add(
                &store,
                &key,
                crate::provisioning::credentials::DeviceCredential {
                    endpoint: "dev-1".into(),
                    secret: Secret::Psk {
                        identity: b"factory-1".to_vec(),
                        key: vec![7; 16],
                    },
                    added_at: std::time::SystemTime::now(),
                },
            )
            .expect("added");
        let nosec = |ep| AccountRequest {
            endpoint: ep,
            principal: None,
            preferred_format: None,
        };
        let e = a.account(&nosec("dev-1")).expect_err("refused");
        assert!(e.0.contains("must bootstrap over DTLS"), "{e}");
        // Nor one the LwM2M server knows: NoSec must not take over its credential.
        a.servers
            .0
            .write()
            .expect("lock")
            .add(
                &store,
                &key,
                crate::provisioning::credentials::DeviceCredential {
                    endpoint: "dev-3".into(),
                    secret: Secret::Psk {
                        identity: b"server-3".to_vec(),
                        key: vec![9; 16],
                    },
                    added_at: std::time::SystemTime::now(),
                },
            )
            .expect("added");
        let e = a.account(&nosec("dev-3")).expect_err("refused");
        assert!(e.0.contains("must bootstrap over DTLS"), "{e}");
        a.pki = true;
        assert!(
            a.account(&nosec("dev-2")).is_err(),
            "any name a CA may claim"
        );
        a.pki = false;
        assert!(a.account(&nosec("dev-2")).is_ok(), "no factory credential");
        assert!(a.account(&request("dev-1")).is_ok(), "over DTLS");
        // Revoked (denied): no account until `device add` admits it again.
        a.factory
            .0
            .write()
            .expect("lock")
            .deny(&store, "dev-1")
            .expect("denied");
        let e = a.account(&request("dev-1")).expect_err("revoked");
        assert!(e.0.contains("revoked"), "{e}");
        let e = a.account(&request("bad/name")).expect_err("refused");
        assert!(!e.0.is_empty());
    }

    #[test]
    fn rpk_and_x509_bind_the_factory_key_or_say_why_not() {
        let mut a = accounts(ServerSecurity::Rpk);
        let e = a.account(&request("dev-1")).expect_err("no factory key");
        assert!(e.0.contains("raw public key"), "{e}");
        let mut a = accounts(ServerSecurity::X509);
        let e = a.account(&request("dev-1")).expect_err("no certificate");
        assert!(e.0.contains("server certificate"), "{e}");
        let mut a = accounts(ServerSecurity::Nosec);
        let acc = a.account(&request("dev-1")).expect("an account");
        assert_eq!(acc.security, AccountSecurity::NoSec);
        assert_eq!(installed_credential(&acc), None);
    }
}
