//! `lwm2m-server`: the LwM2M server binary.
//!
//! The protocol core (`lwm2m::coap`, `lwm2m::net`) is in place; registration, device
//! management and the rest of the server arrive with their issues. Until then the binary
//! says so plainly instead of pretending to serve LwM2M clients.
use clap::Parser;

/// LwM2M server for NB-IoT, LTE-M and Thread fleets.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    let _cli = Cli::parse();
    println!(
        "lwm2m-server {}: the CoAP core is ready; the LwM2M server (registration, device \
         management, observe, queue mode) arrives in a later version. \
         Try `cargo run -p lwm2m --example coap_test_server` for the CoAP test server.",
        env!("CARGO_PKG_VERSION")
    );
    Ok(())
}
