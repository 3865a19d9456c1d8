//! The LwM2M server account a device is given (Core Appendix E.1 Security and E.2 Server
//! objects), and [`Accounts`], through which the embedding server decides it for each device
//! — the place where per-device credentials are generated.
use lwm2m::content::ContentFormat;

/// What the bootstrap server knows of a device asking to be bootstrapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRequest<'a> {
    /// The endpoint client name the device sent (`ep`).
    pub endpoint: &'a str,
    /// Who the DTLS handshake proved the device to be (the endpoint its credential is bound
    /// to); `None` over plain CoAP (NoSec).
    pub principal: Option<&'a str>,
    /// The content format the device prefers (`pct`), if it said.
    pub preferred_format: Option<ContentFormat>,
}

/// Why a device is not bootstrapped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

/// Decides the LwM2M server account of each device that asks to be bootstrapped.
pub trait Accounts {
    /// The account to write to the device, or why it gets none (it is answered 4.03 or
    /// 4.00). Called once per Bootstrap-Request or Bootstrap-Pack-Request; an account with a
    /// generated credential is fresh at each call.
    fn account(&mut self, request: &AccountRequest<'_>) -> Result<Account, Refusal>;
}

/// One LwM2M server account: a Security instance and a Server instance (Core E.1, E.2).
#[derive(Clone, PartialEq, Eq)]
pub struct Account {
    /// `/0/x/0` LwM2M Server URI, e.g. `coaps://127.0.0.1:5684`.
    pub server_uri: String,
    /// `/0/x/10` and `/1/x/0` Short Server ID (1..=65534).
    pub short_server_id: u16,
    /// `/1/x/1` Lifetime, in seconds.
    pub lifetime: u32,
    /// `/1/x/7` Binding (`U`, `UQ`, `N`...).
    pub binding: String,
    /// `/1/x/6` Notification Storing When Disabled or Offline.
    pub notification_storing: bool,
    /// The credentials: `/0/x/2` Security Mode, `/0/x/3`, `/0/x/4`, `/0/x/5`.
    pub security: AccountSecurity,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("server_uri", &self.server_uri)
            .field("short_server_id", &self.short_server_id)
            .field("lifetime", &self.lifetime)
            .field("binding", &self.binding)
            .field("security", &self.security)
            .finish_non_exhaustive()
    }
}

/// How the device authenticates to the LwM2M server (Core E.1 Security Mode).
#[derive(Clone, PartialEq, Eq)]
pub enum AccountSecurity {
    /// Mode 3, NoSec.
    NoSec,
    /// Mode 0, pre-shared key: `/0/x/3` the identity, `/0/x/5` the key.
    Psk {
        /// PSK identity.
        identity: Vec<u8>,
        /// The key.
        key: Vec<u8>,
    },
    /// Mode 1, raw public key: `/0/x/3` the device's SubjectPublicKeyInfo (DER), `/0/x/4`
    /// the server's, `/0/x/5` the device's private key when the bootstrap server knows it
    /// (otherwise the device keeps using the key pair it has).
    Rpk {
        /// The device's SubjectPublicKeyInfo, DER.
        client_public_key: Vec<u8>,
        /// The device's private key (PKCS#8 DER), if the bootstrap server gives it one.
        client_private_key: Option<Vec<u8>>,
        /// The LwM2M server's SubjectPublicKeyInfo, DER.
        server_public_key: Vec<u8>,
    },
    /// Mode 2, certificate: `/0/x/3` the device's certificate (DER), `/0/x/4` the server's,
    /// `/0/x/5` as for [`Rpk`](Self::Rpk).
    Certificate {
        /// The device's certificate, DER.
        client_certificate: Vec<u8>,
        /// The device's private key (PKCS#8 DER), if the bootstrap server gives it one.
        client_private_key: Option<Vec<u8>>,
        /// The LwM2M server's certificate, DER.
        server_certificate: Vec<u8>,
    },
}

impl AccountSecurity {
    /// The Security Mode resource's value (`/0/x/2`).
    pub fn mode(&self) -> i64 {
        match self {
            Self::Psk { .. } => 0,
            Self::Rpk { .. } => 1,
            Self::Certificate { .. } => 2,
            Self::NoSec => 3,
        }
    }
}

impl std::fmt::Debug for AccountSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never a key: accounts end up in logs through `{:?}`.
        match self {
            Self::NoSec => f.write_str("NoSec"),
            Self::Psk { identity, key } => f
                .debug_struct("Psk")
                .field("identity", &String::from_utf8_lossy(identity))
                .field("key", &format_args!("<{} bytes redacted>", key.len()))
                .finish(),
            Self::Rpk { .. } => f.write_str("Rpk"),
            Self::Certificate { .. } => f.write_str("Certificate"),
        }
    }
}
