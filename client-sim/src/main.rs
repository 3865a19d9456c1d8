//! `lwm2m-client-sim`: see the library's documentation and `--help`.
fn main() {
    // Logs go to standard error: standard output carries reports, CSV and, between the
    // processes of one run, JSON lines. (`lwm2m=warn` would also match `lwm2m_client_sim`,
    // a target prefix, hence the third directive.)
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,lwm2m=warn,lwm2m_client_sim=info".into()),
        )
        .init();
    if let Err(e) = lwm2m_client_sim::run(std::env::args_os()) {
        match e.downcast_ref::<clap::Error>() {
            Some(c) => c.exit(),
            None => {
                eprintln!("error: {e:#}");
                std::process::exit(1);
            }
        }
    }
}
