//! Measures one firmware delivery (OMA LwM2M TS 1.2 Core E.6; RFC 7959 blocks): the real
//! server and one real device with Object 5 over DTLS, through the lossy relay on loopback;
//! prints the time from the campaign's start to the device's outcome and the datagrams each
//! way. Not a test: nothing here is asserted.
//!
//! `cargo run --release -p lwm2m-e2e-tests --example firmware_transfer -- pull 0.1 307200 512`
//! (method, loss, package bytes, block size).
use lwm2m::client::{firmware_instance, firmware_package, ClientConfig, ObjectStore};
use lwm2m_e2e_tests::lossy::LossyRelay;
use lwm2m_e2e_tests::{free_port, Device, TestServer};
use lwm2m_server::core::types::DeviceEvent;
use lwm2m_server::provisioning::admin::AdminOp;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, d: &str| args.get(i).cloned().unwrap_or_else(|| d.to_string());
    let method = arg(0, "pull");
    let loss: f64 = arg(1, "0").parse()?;
    let size: usize = arg(2, "307200").parse()?;
    let block: usize = arg(3, "512").parse()?;
    let szx = u8::try_from(block.trailing_zeros().saturating_sub(4))?;

    let dir = tempfile::tempdir()?;
    let secure_port = free_port();
    let relay = LossyRelay::start(SocketAddr::from(([127, 0, 0, 1], secure_port)), loss, 1).await?;
    let config = format!(
        "[firmware]\ncoaps_uri = \"coaps://{}\"\npush_block_size = {block}\n[log]\nlevel = \"warn\"\n",
        relay.addr
    );
    let mut s = TestServer::start_on(dir.path(), 0, secure_port, &config).await?;
    let payload: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
    let file = dir.path().join("fw.bin");
    std::fs::write(&file, firmware_package("2.0.0", &payload))?;
    let reply = s
        .handle()
        .admin(AdminOp::FwAdd {
            path: file,
            version: "2.0.0".into(),
            name: String::new(),
        })
        .await?;
    let package = reply.package.map(|p| p.id).unwrap_or_default();
    s.provision_psk("dev", "dev", b"0123456789abcdef").await;
    let mut store = ObjectStore::standard_with_server("dev", &format!("coaps://{}", relay.addr));
    store.add_instance(5, 0, firmware_instance())?;
    let mut c = ClientConfig::new("dev");
    c.coap.block_szx = szx;
    let dtls = dtls::ClientConfig::psk(b"dev".to_vec(), b"0123456789abcdef".to_vec());
    let mut dev = Device::start_secure_with(relay.addr, c, store, dtls).await?;
    dev.registered().await;
    let (up0, down0) = (relay.stats.up.load(Relaxed), relay.stats.down.load(Relaxed));
    let t0 = Instant::now();
    let reply = s
        .handle()
        .admin(AdminOp::FwUpdate {
            package,
            endpoints: vec!["dev".into()],
            all: false,
            model: None,
            from_version: None,
            method: Some(method.clone()),
            concurrency: Some(1),
            require_version: false,
        })
        .await?;
    anyhow::ensure!(reply.ok, "{reply:?}");
    let mut downloaded = None;
    let outcome = loop {
        let ev = tokio::time::timeout(Duration::from_secs(1800), s.events.recv()).await??;
        if let DeviceEvent::Firmware { phase, outcome, .. } = ev {
            if downloaded.is_none() && format!("{phase:?}") == "Downloaded" {
                downloaded = Some((
                    t0.elapsed(),
                    relay.stats.up.load(Relaxed) - up0,
                    relay.stats.down.load(Relaxed) - down0,
                ));
            }
            if let Some(o) = outcome {
                break o;
            }
        }
    };
    let (t, up, down) = downloaded.unwrap_or((t0.elapsed(), 0, 0));
    println!(
        "{method} {size} B in {block}-byte blocks, loss {loss}: delivered in {:.2} s with {up} datagrams to the server and {down} to the device ({} dropped); outcome {outcome:?} after {:.2} s",
        t.as_secs_f64(),
        relay.stats.dropped.load(Relaxed),
        t0.elapsed().as_secs_f64()
    );
    dev.kill();
    s.stop().await;
    Ok(())
}
