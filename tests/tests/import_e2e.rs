//! End to end over loopback: PSK credentials imported in bulk (`lwm2m-server device import`,
//! the library part of it) let real DTLS devices in: imported offline before the server
//! starts, or through the running server's admin socket, where they work at once and a
//! rotated key closes the device's session as `device add` does.
use lwm2m::client::ClientConfig;
use lwm2m_e2e_tests::{Device, TestServer};
use lwm2m_server::config::Config;
use lwm2m_server::provisioning::admin::AdminOp;
use lwm2m_server::provisioning::audit::AuditKind;
use lwm2m_server::provisioning::import::{self, ImportError, ImportSummary};
use std::path::Path;

/// The configuration the CLI would be given for a test server's data directory.
fn cli_config(dir: &Path) -> Config {
    Config::parse(&format!(
        "[server]\ndata_dir = \"{}\"\n[mqtt]\nenabled = false\n[http]\nenabled = false\n",
        dir.display()
    ))
    .expect("a valid configuration")
}

fn key(i: usize) -> String {
    format!("{:032x}", 0x5eed_0000 + i)
}

/// A fleet file as the client simulator writes it.
fn fleet(n: usize) -> String {
    let mut text = String::from("endpoint,psk_identity,psk_key\n");
    for i in 0..n {
        text.push_str(&format!("imp-{i},imp-id-{i},{}\n", key(i)));
    }
    text
}

fn device_psk(i: usize) -> dtls::ClientConfig {
    let key = u128::from_str_radix(&key(i), 16)
        .expect("hex")
        .to_be_bytes();
    dtls::ClientConfig::psk(format!("imp-id-{i}"), key.to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_imported_offline_handshake_when_the_server_starts() {
    let dir = tempfile::tempdir().unwrap();
    let config = cli_config(dir.path());
    let lines = import::parse_csv(&fleet(300)).unwrap();
    let summary = import::import(&config, &lines).await.unwrap();
    assert_eq!(
        summary,
        ImportSummary {
            imported: 300,
            replaced: 0
        }
    );

    let mut s = TestServer::start(dir.path(), 0, "").await.unwrap();
    let dev = Device::start_secure(s.secure_addr, ClientConfig::new("imp-123"), device_psk(123))
        .await
        .unwrap();
    s.registered("imp-123").await;
    let list = s.handle().admin(AdminOp::DeviceList).await.unwrap();
    assert_eq!(list.devices.unwrap().len(), 300);
    dev.kill();
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_into_a_running_server_works_at_once_and_rotation_closes_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let config = cli_config(dir.path());
    let mut s = TestServer::start(dir.path(), 0, "").await.unwrap();
    let lines = import::parse_csv(&fleet(50)).unwrap();
    let summary = import::import(&config, &lines).await.unwrap();
    assert_eq!((summary.imported, summary.replaced), (50, 0));

    // No restart: the running server knows the keys.
    let mut dev = Device::start_secure(s.secure_addr, ClientConfig::new("imp-7"), device_psk(7))
        .await
        .unwrap();
    s.registered("imp-7").await;

    // A new key for imp-7 (and the same ones for two others): its session is closed.
    let rotated = format!(
        "imp-7,imp-id-7,{}\nimp-8,imp-id-8,{}\nimp-9,imp-id-9,{}\n",
        "ab".repeat(16),
        key(8),
        key(9)
    );
    let summary = import::import(&config, &import::parse_csv(&rotated).unwrap())
        .await
        .unwrap();
    assert_eq!((summary.imported, summary.replaced), (3, 3));
    let down = dev.link_down().await;
    assert!(down.contains("closed"), "{down}");
    dev.kill();

    // A file with an identity of another endpoint is refused whole, through the server too.
    let clash = "new-1,new-id-1,01\nnew-2,imp-id-3,02\n";
    let e = import::import(&config, &import::parse_csv(clash).unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ImportError::Lines(l) if l.len() == 1 && l[0].line == 2),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("already bound to endpoint \"imp-3\""),
        "{e}"
    );
    let list = s.handle().admin(AdminOp::DeviceList).await.unwrap();
    assert_eq!(list.devices.unwrap().len(), 50);

    let events = s
        .handle()
        .admin(AdminOp::Audit { limit: 1000 })
        .await
        .unwrap()
        .events
        .unwrap();
    let added = events
        .iter()
        .filter(|e| e.kind == AuditKind::CredentialAdded)
        .count();
    assert_eq!(added, 53, "one entry per imported credential");
    assert!(events
        .iter()
        .any(|e| e.kind == AuditKind::SessionClosed && e.endpoint.as_deref() == Some("imp-7")));
    s.stop().await;
}
