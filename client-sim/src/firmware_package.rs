//! `firmware-package`: writes a firmware package in the format the simulated devices'
//! Firmware Update object (OMA LwM2M TS 1.2 Core Appendix E.6, Object 5) checks and
//! installs: `LWM2MFW1\n` + version + `\n` + hex(SHA-256(payload)) + `\n` + payload. The
//! payload is a deterministic stream from a seed, so the `firmware` scenario knows the
//! package (and its id, the first 16 hex digits of its SHA-256) without reading the file.
use anyhow::Context as _;
use std::io::Write as _;
use std::path::PathBuf;

/// Largest payload written: the devices take packages of up to 2 MiB by default.
pub(crate) const MAX_SIZE: u64 = 64 << 20;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// The firmware version the package installs (what `/3/0/3` becomes).
    #[arg(long)]
    version: String,
    /// Payload bytes.
    #[arg(long)]
    size: u64,
    /// Seed of the payload bytes.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where to write the package; standard output when absent.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// `size` payload bytes from `seed` (SplitMix64).
pub(crate) fn payload(size: u64, seed: u64) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    while (out.len() as u64) < size {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let left = usize::try_from(size - out.len() as u64).unwrap_or(8).min(8);
        out.extend_from_slice(z.to_le_bytes().get(..left).unwrap_or_default());
    }
    out
}

/// The package of `version` with `size` payload bytes from `seed`.
pub(crate) fn package(version: &str, size: u64, seed: u64) -> Vec<u8> {
    lwm2m::client::firmware_package(version, &payload(size, seed))
}

/// A package's id as the server names it: the first 16 hex digits of its SHA-256 (the
/// same 8 bytes as its pull ETag).
pub(crate) fn package_id(package: &[u8]) -> String {
    hex::encode(lwm2m::client::package_etag(package))
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    if args.size > MAX_SIZE {
        anyhow::bail!("--size must be at most {MAX_SIZE}");
    }
    if args.version.is_empty() || args.version.len() > 255 || args.version.contains('\n') {
        anyhow::bail!("--version must be 1..=255 bytes on one line");
    }
    let pkg = package(&args.version, args.size, args.seed);
    match &args.out {
        Some(path) => {
            std::fs::write(path, &pkg).with_context(|| format!("writing {}", path.display()))?
        }
        None => std::io::stdout().lock().write_all(&pkg)?,
    }
    eprintln!(
        "package {} version {} ({} bytes)",
        package_id(&pkg),
        args.version,
        pkg.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_payload_is_deterministic_and_the_package_checks() {
        assert_eq!(payload(1001, 7), payload(1001, 7));
        assert_ne!(payload(64, 7), payload(64, 8));
        assert_eq!(payload(1001, 7).len(), 1001);
        let pkg = package("2.0.0", 5000, 3);
        assert!(pkg.starts_with(lwm2m::client::PACKAGE_MAGIC));
        assert_eq!(package_id(&pkg).len(), 16);
        assert_eq!(package_id(&pkg), package_id(&package("2.0.0", 5000, 3)));
    }

    #[test]
    fn the_subcommand_writes_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("fw.bin");
        crate::run([
            "lwm2m-client-sim",
            "firmware-package",
            "--version",
            "3.1",
            "--size",
            "2048",
            "--out",
            out.to_str().unwrap(),
        ])
        .unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), package("3.1", 2048, 1));
    }
}
