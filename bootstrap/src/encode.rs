//! An [`Account`] as the object instances a device holds (OMA LwM2M TS 1.2 Core Appendix E.1
//! Security, E.2 Server), and those instances as the payload of a Bootstrap-Write (Core
//! §6.1) in any content format the device takes (Core §7.4).
//!
//! Only the resources the bootstrap server decides are written; the device keeps the
//! defaults of every other resource (Core §6.1: a Write of an instance that does not
//! exist creates it with the resources given).
use crate::account::{Account, AccountSecurity};
use lwm2m::content::{self, CodecError, ContentFormat};
use lwm2m::model::{Instance, Node, Path, Resource, Value};

/// `/0/x/0` LwM2M Server URI.
pub(crate) const SECURITY_URI: u16 = 0;
/// `/0/x/1` Bootstrap-Server: false, this is an LwM2M server's account.
pub(crate) const SECURITY_BOOTSTRAP: u16 = 1;
/// `/0/x/2` Security Mode.
pub(crate) const SECURITY_MODE: u16 = 2;
/// `/0/x/3` Public Key or Identity.
pub(crate) const SECURITY_IDENTITY: u16 = 3;
/// `/0/x/4` Server Public Key.
pub(crate) const SECURITY_SERVER_KEY: u16 = 4;
/// `/0/x/5` Secret Key.
pub(crate) const SECURITY_SECRET: u16 = 5;
/// `/0/x/10` Short Server ID.
pub(crate) const SECURITY_SSID: u16 = 10;
/// `/1/x/0` Short Server ID.
pub(crate) const SERVER_SSID: u16 = 0;
/// `/1/x/1` Lifetime.
pub(crate) const SERVER_LIFETIME: u16 = 1;
/// `/1/x/6` Notification Storing When Disabled or Offline.
pub(crate) const SERVER_STORING: u16 = 6;
/// `/1/x/7` Binding.
pub(crate) const SERVER_BINDING: u16 = 7;

fn single(v: Value) -> Resource {
    Resource::Single(v)
}

fn opaque(bytes: &[u8]) -> Resource {
    single(Value::Opaque(bytes.to_vec()))
}

/// The Security instance of `account` (Core E.1).
pub(crate) fn security_instance(account: &Account) -> Instance {
    let mut inst = Instance::from([
        (
            SECURITY_URI,
            single(Value::String(account.server_uri.clone())),
        ),
        (SECURITY_BOOTSTRAP, single(Value::Boolean(false))),
        (
            SECURITY_MODE,
            single(Value::Integer(account.security.mode())),
        ),
        (
            SECURITY_SSID,
            single(Value::Integer(i64::from(account.short_server_id))),
        ),
    ]);
    // Resources 3 to 5 are mandatory in the Security object: NoSec and PSK get empty
    // opaque values where they have nothing, so a 1.0 device that insists on them is
    // satisfied. A key pair the bootstrap server does not know is left out, so the device
    // keeps the private key it has rather than being handed an empty one.
    let (identity, server_key, secret): (&[u8], &[u8], Option<&[u8]>) = match &account.security {
        AccountSecurity::NoSec => (&[], &[], Some(&[])),
        AccountSecurity::Psk { identity, key } => (identity, &[], Some(key)),
        AccountSecurity::Rpk {
            client_public_key,
            client_private_key,
            server_public_key,
        } => (
            client_public_key,
            server_public_key,
            client_private_key.as_deref(),
        ),
        AccountSecurity::Certificate {
            client_certificate,
            client_private_key,
            server_certificate,
        } => (
            client_certificate,
            server_certificate,
            client_private_key.as_deref(),
        ),
    };
    inst.insert(SECURITY_IDENTITY, opaque(identity));
    inst.insert(SECURITY_SERVER_KEY, opaque(server_key));
    if let Some(secret) = secret {
        inst.insert(SECURITY_SECRET, opaque(secret));
    }
    inst
}

/// The Server instance of `account` (Core E.2).
pub(crate) fn server_instance(account: &Account) -> Instance {
    Instance::from([
        (
            SERVER_SSID,
            single(Value::Integer(i64::from(account.short_server_id))),
        ),
        (
            SERVER_LIFETIME,
            single(Value::Integer(i64::from(account.lifetime))),
        ),
        (
            SERVER_STORING,
            single(Value::Boolean(account.notification_storing)),
        ),
        (
            SERVER_BINDING,
            single(Value::String(account.binding.clone())),
        ),
    ])
}

/// The payload of a Bootstrap-Write of `instance` at `path` (`/o/i`) in `format`.
pub(crate) fn instance_payload(
    format: ContentFormat,
    path: &Path,
    instance: Instance,
) -> Result<Vec<u8>, CodecError> {
    content::encode(format, path, &Node::Instance(instance))
}

/// A value read back as an integer, whichever integer type the format carried it as.
pub(crate) fn as_integer(value: &Value) -> Option<i64> {
    match value {
        Value::Integer(v) => Some(*v),
        Value::UnsignedInteger(v) => i64::try_from(*v).ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lwm2m::model::Registry;

    fn psk() -> Account {
        Account {
            server_uri: "coaps://lwm2m.example:5684".into(),
            short_server_id: 7,
            lifetime: 600,
            binding: "UQ".into(),
            notification_storing: true,
            security: AccountSecurity::Psk {
                identity: b"meter-1".to_vec(),
                key: vec![1, 2, 3, 4],
            },
        }
    }

    #[test]
    fn a_psk_account_round_trips_through_every_write_format() {
        let registry = Registry::bundled();
        let account = psk();
        for format in [
            ContentFormat::Tlv,
            ContentFormat::SenmlCbor,
            ContentFormat::SenmlJson,
            ContentFormat::Lwm2mCbor,
        ] {
            for (path, inst) in [
                (Path::instance(0, 1), security_instance(&account)),
                (Path::instance(1, 0), server_instance(&account)),
            ] {
                let bytes = instance_payload(format, &path, inst.clone()).unwrap();
                let back = content::decode(format, &path, &bytes, &registry).unwrap();
                assert_eq!(back, Node::Instance(inst), "{format:?} {path}");
            }
        }
    }

    #[test]
    fn each_security_mode_fills_the_key_resources_it_has() {
        let mut account = psk();
        let inst = security_instance(&account);
        assert_eq!(inst.get(&SECURITY_MODE), Some(&single(Value::Integer(0))));
        assert_eq!(inst.get(&SECURITY_IDENTITY), Some(&opaque(b"meter-1")));
        assert_eq!(inst.get(&SECURITY_SERVER_KEY), Some(&opaque(b"")));
        assert_eq!(inst.get(&SECURITY_SECRET), Some(&opaque(&[1, 2, 3, 4])));
        assert_eq!(inst.get(&SECURITY_SSID), Some(&single(Value::Integer(7))));

        account.security = AccountSecurity::Rpk {
            client_public_key: vec![0x30, 1],
            client_private_key: None,
            server_public_key: vec![0x30, 2],
        };
        let inst = security_instance(&account);
        assert_eq!(inst.get(&SECURITY_MODE), Some(&single(Value::Integer(1))));
        assert_eq!(inst.get(&SECURITY_SERVER_KEY), Some(&opaque(&[0x30, 2])));
        assert_eq!(inst.get(&SECURITY_SECRET), None);

        account.security = AccountSecurity::Certificate {
            client_certificate: vec![0x30, 3],
            client_private_key: Some(vec![0x30, 4]),
            server_certificate: vec![0x30, 5],
        };
        let inst = security_instance(&account);
        assert_eq!(inst.get(&SECURITY_MODE), Some(&single(Value::Integer(2))));
        assert_eq!(inst.get(&SECURITY_SECRET), Some(&opaque(&[0x30, 4])));

        account.security = AccountSecurity::NoSec;
        let inst = security_instance(&account);
        assert_eq!(inst.get(&SECURITY_MODE), Some(&single(Value::Integer(3))));
        assert_eq!(inst.get(&SECURITY_IDENTITY), Some(&opaque(b"")));
        assert_eq!(inst.get(&SECURITY_SECRET), Some(&opaque(b"")));
    }
}
