//! The `lwm2m-client-sim` binary splitting a fleet over child processes (as it does when the
//! fleet needs more sockets than one process may open), against a real server started in
//! this test: every device of every share registers, the parent's report adds the shares
//! up, and the server counted the same registrations.
use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_split_over_processes_registers_whole() {
    let dir = tempfile::tempdir().unwrap();
    let config = lwm2m_server::config::Config::parse(&format!(
        "[server]\ncoap_bind = [\"127.0.0.1:0\"]\ncoaps_bind = []\ndata_dir = \"{}\"\n[mqtt]\nenabled = false\n[http]\nenabled = false\n[bootstrap]\nenabled = false\n",
        dir.path().display()
    ))
    .unwrap();
    let server = lwm2m_server::start(&config).await.unwrap();
    let addr = server.handle.local_addrs()[0];
    let json = dir.path().join("report.json");
    let exe = env!("CARGO_BIN_EXE_lwm2m-client-sim");
    let args = [
        "bench",
        "--scenario",
        "storm",
        "--set",
        "server.security=\"nosec\"",
        "--set",
        "fleet.processes=3",
        "--set",
        "fleet.name_pattern=\"proc-{n}\"",
        "--devices",
        "300",
        "--duration",
        "3",
        "--quiet",
    ];
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .arg("--server")
        .arg(addr.to_string())
        .arg("--json")
        .arg(&json);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(r["processes"], 3, "{r:#}");
    assert_eq!(r["registered"], 300, "{r:#}");
    assert_eq!(r["deregistered"], 300, "{r:#}");
    assert_eq!(r["errors_total"], 0, "{r:#}");
    // Percentiles merged from the children's histograms cover every device.
    assert_eq!(r["registration_latency_us"]["count"], 300, "{r:#}");
    assert_eq!(server.handle.metrics().registrations, 300);
    server.handle.shutdown().await;
    let _ = server.task.await;
}
