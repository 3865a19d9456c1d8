//! `lwm2m-client-sim`: simulated device fleets and load benchmarks.
//!
//! - `fleet`: N simulated LwM2M devices, each a real `lwm2m::client::Client` on its own UDP
//!   socket, registering against a server, answering its requests and de-registering at the
//!   end; reports registration throughput and latency.
//! - `coap-bench`: the raw CoAP load generator used to measure the CoAP core against other
//!   servers.
//! - `dtls-bench`: PSK handshakes/s or CoAP-over-DTLS requests/s against any DTLS server.
//! - `mqtt-telemetry`: notifications from devices through the server's MQTT bridge to an MQTT
//!   subscriber: notifications/s, loss, and latency from the device's send to the receive.
mod coap_bench;
mod dtls_bench;
mod fleet;
mod telemetry;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(version, about = "Simulated LwM2M devices and load benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Simulated LwM2M devices against a server over loopback: registers them at a set
    /// pace, keeps them up (answering every request), de-registers them and reports
    /// registrations/s, registration latency, requests answered and errors.
    Fleet(fleet::Args),
    /// Confirmable GETs against any CoAP server as fast as it answers; reports requests/s
    /// and latency. Speaks plain CoAP over UDP with no help from the project's own stack, so
    /// the same load can be pointed at another implementation for comparison.
    CoapBench(coap_bench::Args),
    /// DTLS PSK handshakes/s (with cookie exchange) or CoAP-over-DTLS requests/s against any
    /// CoAP server speaking DTLS with a pre-shared key (this server, libcoap, ...).
    DtlsBench(dtls_bench::Args),
    /// Devices reporting a value at a fixed rate, observed through the server's MQTT bridge by
    /// an MQTT client that times every notification from the device's send to its receive.
    MqttTelemetry(telemetry::Args),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,lwm2m=warn".into()),
        )
        .init();
    match Cli::parse().command {
        Command::Fleet(args) => fleet::run(args),
        Command::CoapBench(args) => coap_bench::run(args),
        Command::DtlsBench(args) => dtls_bench::run(args),
        Command::MqttTelemetry(args) => telemetry::run(args),
    }
}
