//! `lwm2m-client-sim`: simulated device fleets and load benchmarks, as a library so that
//! the end-to-end tests run the same code as the binary (`run`).
//!
//! - `bench`: a scenario (`config/scenarios/*.toml`) of simulated LwM2M devices against a
//!   server, with an optional MQTT backend; live progress and a report (`--json`).
//! - `credentials`: the PSK of every device of a scenario, for `lwm2m-server device import`
//!   (or, for the `bootstrap` scenario, the factory PSKs for `lwm2m-server bootstrap import`).
//! - `coap-bench`: the raw CoAP load generator used to measure the CoAP core against other
//!   servers.
//! - `dtls-bench`: PSK handshakes/s or CoAP-over-DTLS requests/s against any DTLS server.
//! - `firmware-package`: a firmware package in the format the simulated devices' Object 5
//!   installs, for `lwm2m-server fw add` and the `firmware` scenario.
//! - `flood`: garbage at a server's CoAP and DTLS ports (loopback only), to show that nothing
//!   a peer sends stops the server or crowds out real devices.
mod bench;
mod coap_bench;
mod dtls_bench;
mod firmware_package;
mod flood;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "lwm2m-client-sim",
    version,
    about = "Simulated LwM2M devices and load benchmarks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Runs a scenario of simulated LwM2M devices against a server: registrations, DM,
    /// observations, Send, queue mode, reboots, NAT rebinding, and an MQTT backend with
    /// commands; shows live progress and reports throughput, latency and errors.
    Bench(bench::Args),
    /// Prints the PSK credentials of a scenario's devices as CSV
    /// (`endpoint,psk_identity,psk_key`), the input of `lwm2m-server device import`; for a
    /// scenario with `[bootstrap]`, their factory credentials for the bootstrap server, the
    /// input of `lwm2m-server bootstrap import`.
    Credentials(bench::CredentialArgs),
    /// Confirmable GETs against any CoAP server as fast as it answers; reports requests/s
    /// and latency. Speaks plain CoAP over UDP with no help from the project's own stack, so
    /// the same load can be pointed at another implementation for comparison.
    CoapBench(coap_bench::Args),
    /// DTLS PSK handshakes/s (with cookie exchange) or CoAP-over-DTLS requests/s against any
    /// CoAP server speaking DTLS with a pre-shared key (this server, libcoap, ...).
    DtlsBench(dtls_bench::Args),
    /// Floods a server's CoAP and CoAP-over-DTLS ports with garbage at full speed for a
    /// bounded time: random bytes, DTLS records with lying lengths, epoch 1 and Connection ID
    /// records, ClientHellos from many loopback addresses (cookie exchanges completed), CoAP
    /// with every option and absurd values. Loopback targets only; prints a JSON summary.
    Flood(flood::Args),
    /// Writes a firmware package the simulated devices install (Object 5): `LWM2MFW1`, the
    /// version, the payload's SHA-256, then a payload drawn from `--seed`; prints its id
    /// (the first 16 hex digits of its SHA-256) on standard error.
    FirmwarePackage(firmware_package::Args),
}

/// Runs the command line `args` (the program name first, as `std::env::args` gives it).
pub fn run<I, T>(args: I) -> anyhow::Result<()>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    match Cli::try_parse_from(args)?.command {
        Command::Bench(args) => bench::run(args),
        Command::Credentials(args) => bench::credentials(args),
        Command::CoapBench(args) => coap_bench::run(args),
        Command::DtlsBench(args) => dtls_bench::run(args),
        Command::Flood(args) => flood::run(args),
        Command::FirmwarePackage(args) => firmware_package::run(args),
    }
}
