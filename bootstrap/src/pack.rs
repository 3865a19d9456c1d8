//! The answer to a Bootstrap-Pack-Request (OMA LwM2M TS 1.2 Core §6.1, new in 1.2): the
//! account's Security and Server instances as one composite payload, in SenML CBOR, SenML
//! JSON or LwM2M CBOR (Core §7.4).
//!
//! No Bootstrap-Discover precedes a pack, so the bootstrap server cannot see which instance
//! ids the device uses. The account goes to `/0/1` and `/1/0`: by the usual layout (the Core
//! specification's examples, and every client we know) the bootstrap server's own Security
//! instance is `/0/0`, which a pack must not overwrite, while the Server object has no
//! instance of the bootstrap server's, so its first id is free.
use crate::account::Account;
use crate::encode;
use lwm2m::content::{self, CodecError, ContentFormat, Record};
use lwm2m::model::{Node, Path};
use lwm2m::ops::bootstrap::{SECURITY, SERVER};

/// Where a pack puts the account's Security instance.
pub(crate) const PACK_SECURITY_INSTANCE: u16 = 1;
/// Where a pack puts the account's Server instance.
pub(crate) const PACK_SERVER_INSTANCE: u16 = 0;

/// The formats a pack is served in, the first being the default when the device's request
/// carries no Accept.
pub(crate) const PACK_FORMATS: [ContentFormat; 3] = [
    ContentFormat::SenmlCbor,
    ContentFormat::SenmlJson,
    ContentFormat::Lwm2mCbor,
];

/// The pack of `account` in `format` (one of [`PACK_FORMATS`]).
pub(crate) fn encode(format: ContentFormat, account: &Account) -> Result<Vec<u8>, CodecError> {
    let mut records = Vec::new();
    for (at, instance) in [
        (
            Path::instance(SECURITY, PACK_SECURITY_INSTANCE),
            encode::security_instance(account),
        ),
        (
            Path::instance(SERVER, PACK_SERVER_INSTANCE),
            encode::server_instance(account),
        ),
    ] {
        for (path, value) in Node::Instance(instance).flatten(&at)? {
            records.push(Record {
                path,
                value: Some(value),
                time: None,
            });
        }
    }
    content::encode_composite(format, &records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::AccountSecurity;
    use lwm2m::model::{Registry, Value};

    #[test]
    fn a_pack_carries_both_instances_in_each_format() {
        let account = Account {
            server_uri: "coaps://lwm2m.example:5684".into(),
            short_server_id: 9,
            lifetime: 120,
            binding: "U".into(),
            notification_storing: false,
            security: AccountSecurity::Psk {
                identity: b"dev".to_vec(),
                key: vec![9; 16],
            },
        };
        let registry = Registry::bundled();
        for format in PACK_FORMATS {
            let bytes = encode(format, &account).unwrap();
            let records = content::decode_composite(format, &bytes, &registry).unwrap();
            let value = |p: Path| {
                records
                    .iter()
                    .find(|r| r.path == p)
                    .and_then(|r| r.value.clone())
            };
            assert_eq!(
                value(Path::resource(0, 1, 0)),
                Some(Value::String("coaps://lwm2m.example:5684".into())),
                "{format:?}"
            );
            assert_eq!(
                value(Path::resource(0, 1, 5)),
                Some(Value::Opaque(vec![9; 16]))
            );
            assert_eq!(value(Path::resource(0, 1, 10)), Some(Value::Integer(9)));
            assert_eq!(value(Path::resource(1, 0, 0)), Some(Value::Integer(9)));
            assert_eq!(value(Path::resource(1, 0, 1)), Some(Value::Integer(120)));
            assert_eq!(
                value(Path::resource(1, 0, 7)),
                Some(Value::String("U".into()))
            );
        }
    }
}
