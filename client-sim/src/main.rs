//! `lwm2m-client-sim`: simulated device fleets and load benchmarks.
//!
//! Today it carries the raw CoAP load generator used to measure the CoAP core against other
//! servers (`coap-bench`); the simulated LwM2M fleet arrives with its issue.
mod coap_bench;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(version, about = "Simulated LwM2M devices and load benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Confirmable GETs against any CoAP server as fast as it answers; reports requests/s
    /// and latency. Speaks plain CoAP over UDP with no help from the project's own stack, so
    /// the same load can be pointed at another implementation for comparison.
    CoapBench(coap_bench::Args),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    match Cli::parse().command {
        Command::CoapBench(args) => coap_bench::run(args),
    }
}
