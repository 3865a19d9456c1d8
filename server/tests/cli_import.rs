//! `lwm2m-server device import` as an operator runs it: the real binary, a CSV file or
//! standard input, no server running (the store is written directly), then `device list`
//! and `audit` show the result.
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn server(config: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lwm2m-server"))
        .arg("--config")
        .arg(config)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let mut input = child.stdin.take().expect("piped");
    input
        .write_all(stdin.unwrap_or("").as_bytes())
        .expect("stdin written");
    drop(input);
    child.wait_with_output().expect("the binary ends")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn setup() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let config = dir.path().join("server.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\ndata_dir = \"{}\"\n[mqtt]\nenabled = false\n",
            dir.path().join("data").display()
        ),
    )
    .expect("config written");
    (dir, config)
}

#[test]
fn a_file_is_imported_and_listed() {
    let (dir, config) = setup();
    let csv = dir.path().join("fleet.csv");
    std::fs::write(
        &csv,
        "# written by lwm2m-client-sim\nendpoint,psk_identity,psk_key\nsim-000001,sim-000001,000102030405060708090a0b0c0d0e0f\nsim-000002,sim-000002,0f0e0d0c0b0a09080706050403020100\n",
    )
    .unwrap();
    let out = server(&config, &["device", "import", csv.to_str().unwrap()], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "imported 2 credentials (0 replaced)\n");

    // From standard input, one key rotated and one device new.
    let out = server(
        &config,
        &["device", "import", "-"],
        Some("sim-000002,sim-000002,ffffffffffffffffffffffffffffffff\nsim-000003,sim-000003,01\n"),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "imported 2 credentials (1 replaced)\n");

    let list = text(&server(&config, &["device", "list"], None).stdout);
    for ep in ["sim-000001", "sim-000002", "sim-000003"] {
        assert!(list.contains(ep), "{list}");
    }
    let audit = text(&server(&config, &["audit"], None).stdout);
    assert_eq!(audit.matches("credential-added").count(), 4, "{audit}");
    assert!(audit.contains("(replaces psk sim-000002)"), "{audit}");
}

#[test]
fn one_bad_line_rejects_the_whole_file() {
    let (dir, config) = setup();
    let csv = dir.path().join("fleet.csv");
    std::fs::write(
        &csv,
        "dev-1,id-1,00ff\ndev-2,id-2,zz\ndev-3,id-3\ndev-4,id-4,0102\n",
    )
    .unwrap();
    let out = server(&config, &["device", "import", csv.to_str().unwrap()], None);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("2 line(s) cannot be imported; nothing was imported"),
        "{err}"
    );
    assert!(
        err.contains("line 2: PSK key must be hex digits only"),
        "{err}"
    );
    assert!(err.contains("line 3: expected 3 fields"), "{err}");
    assert!(out.stdout.is_empty());
    // Refused before anything was touched: no store was even created.
    assert!(!dir.path().join("data").exists());
    let list = text(&server(&config, &["device", "list"], None).stdout);
    assert_eq!(list, "no device credentials\n");

    let missing = server(&config, &["device", "import", "/nonexistent.csv"], None);
    assert!(!missing.status.success());
    assert!(text(&missing.stderr).contains("/nonexistent.csv"));
}
