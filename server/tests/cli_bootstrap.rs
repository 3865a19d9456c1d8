//! `lwm2m-server bootstrap ...` and `device revoke` with a trusted CA as an operator runs
//! them: the real binary, no server running (the store is written directly).
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn server(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lwm2m-server"))
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("the binary runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A data directory and a configuration using it, with `extra` appended.
fn setup(extra: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let config = dir.path().join("server.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\ndata_dir = \"{}\"\n[mqtt]\nenabled = false\n{extra}",
            dir.path().join("data").display()
        ),
    )
    .expect("config written");
    (dir, config)
}

#[test]
fn bootstrap_credentials_are_added_imported_listed_and_removed_apart_from_devices() {
    let (dir, config) = setup("");
    let out = server(&config, &["bootstrap", "list"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "no bootstrap credentials\n");
    let out = server(
        &config,
        &[
            "bootstrap",
            "add",
            "--endpoint",
            "dev-1",
            "--psk-identity",
            "factory-1",
            "--psk-key",
            "000102030405060708090a0b0c0d0e0f",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "added psk bootstrap credential factory-1 for endpoint dev-1\n"
    );
    let csv = dir.path().join("factory.csv");
    std::fs::write(&csv, "dev-2,factory-2,02\ndev-3,factory-3,03\n").unwrap();
    let out = server(&config, &["bootstrap", "import", csv.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "imported 2 credentials (0 replaced)\n");

    let list = text(&server(&config, &["bootstrap", "list"]).stdout);
    for id in ["factory-1", "factory-2", "factory-3"] {
        assert!(list.contains(id), "{list}");
    }
    // The device set is another one.
    let devices = text(&server(&config, &["device", "list"]).stdout);
    assert_eq!(devices, "no device credentials\n");

    let out = server(&config, &["bootstrap", "remove", "--endpoint", "dev-2"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "removed psk bootstrap credential factory-2 of endpoint dev-2\n"
    );
    let out = server(&config, &["bootstrap", "remove", "--endpoint", "dev-2"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("has no bootstrap credential"),
        "{}",
        text(&out.stderr)
    );
    let audit = text(&server(&config, &["audit"]).stdout);
    assert_eq!(
        audit.matches("bootstrap-credential-added").count(),
        3,
        "{audit}"
    );
    assert_eq!(
        audit.matches("bootstrap-credential-removed").count(),
        1,
        "{audit}"
    );
}

#[test]
fn with_a_trusted_ca_revoking_an_unknown_device_denies_it() {
    let (_dir, config) = setup("[security]\ntrusted_ca = \"/etc/lwm2m-server/device-ca.pem\"\n");
    let out = server(&config, &["device", "revoke", "--endpoint", "pki-7"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("endpoint pki-7 is denied"),
        "{}",
        text(&out.stdout)
    );
    let list = text(&server(&config, &["device", "list"]).stdout);
    assert!(list.contains("denied: pki-7"), "{list}");
    let out = server(
        &config,
        &[
            "device",
            "add",
            "--endpoint",
            "pki-7",
            "--psk-identity",
            "pki-7",
            "--psk-key",
            "07",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("no longer denied"),
        "{}",
        text(&out.stdout)
    );
    let list = text(&server(&config, &["device", "list"]).stdout);
    assert!(!list.contains("denied"), "{list}");

    // Without a trusted CA there is nothing to deny.
    let (_dir, plain) = setup("");
    let out = server(&plain, &["device", "revoke", "--endpoint", "pki-7"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("has no credential"));
}
