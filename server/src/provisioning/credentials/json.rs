//! How credential fields look in JSON (the admin channel, the CLI's output, the audit log):
//! binary values as hex, a PSK identity as a string, times as Unix milliseconds.

/// Serde for binary values as lower-case hex strings.
pub(crate) mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::provisioning::secrets::hex_encode(v))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        crate::provisioning::secrets::hex_decode(&text)
            .ok_or_else(|| serde::de::Error::custom("expected an even number of hex digits"))
    }
}

/// Serde for a PSK identity as a JSON string: identities are text in practice, and a binary
/// one refuses to serialize rather than being altered.
pub(crate) mod utf8_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        let text = std::str::from_utf8(v)
            .map_err(|_| serde::ser::Error::custom("PSK identity is not UTF-8"))?;
        s.serialize_str(text)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        Ok(String::deserialize(d)?.into_bytes())
    }
}

/// Serde for a [`SystemTime`] as Unix milliseconds.
pub(crate) mod unix_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::SystemTime;

    pub(crate) fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(lwm2m::time::unix_millis(*t))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        Ok(lwm2m::time::from_unix_millis(u64::deserialize(d)?))
    }
}
