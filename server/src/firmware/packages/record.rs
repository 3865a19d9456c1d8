//! A package's metadata as stored in the `FirmwarePackages` table (OMA LwM2M TS 1.2 Core
//! Appendix E.6 packages): JSON under the package id, versioned so a later format can tell
//! old records apart. A record that does not decode, or whose fields disagree (an id that is
//! not its hash's), is refused: the start skips it.
use super::{PackageId, PackageMeta};
use serde::{Deserialize, Serialize};

/// The record format this version writes.
const VERSION: u32 = 1;
/// Longest version or name accepted, in bytes.
pub(crate) const MAX_LABEL: usize = 256;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    v: u32,
    sha256: String,
    size: u64,
    version: String,
    name: String,
    added_ms: u64,
}

/// The value stored for `meta`.
pub(crate) fn encode(meta: &PackageMeta) -> Vec<u8> {
    let record = Record {
        v: VERSION,
        sha256: hex::encode(meta.sha256),
        size: meta.size,
        version: meta.version.clone(),
        name: meta.name.clone(),
        added_ms: lwm2m::time::unix_millis(meta.added_at),
    };
    serde_json::to_vec(&record).unwrap_or_default()
}

/// The metadata stored under `key`, or why it cannot be used.
pub(crate) fn decode(key: &[u8], value: &[u8]) -> Result<PackageMeta, String> {
    let r: Record = serde_json::from_slice(value).map_err(|e| e.to_string())?;
    if r.v != VERSION {
        return Err(format!(
            "record version {} (this server reads {VERSION})",
            r.v
        ));
    }
    let mut sha256 = [0u8; 32];
    hex::decode_to_slice(&r.sha256, &mut sha256).map_err(|e| format!("sha256: {e}"))?;
    let id = PackageId::of(&sha256);
    if key != id.0.as_bytes() {
        return Err("the key is not the package's id".into());
    }
    if r.version.len() > MAX_LABEL || r.name.len() > MAX_LABEL {
        return Err("version or name too long".into());
    }
    let added_at = lwm2m::time::from_unix_millis(r.added_ms);
    Ok(PackageMeta {
        id,
        sha256,
        size: r.size,
        version: r.version,
        name: r.name,
        added_at,
    })
}
