//! `lwm2m-server`: parses the command line and the configuration, starts the server, and
//! stops it cleanly (store committed) on SIGINT or SIGTERM.
use anyhow::Context;
use clap::{Parser, Subcommand};
use lwm2m_server::config::{Config, DEFAULT_CONFIG};
use std::path::PathBuf;

/// LwM2M server for NB-IoT, LTE-M and Thread fleets.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Configuration file (TOML). Without it, the embedded default (config/server.toml).
    #[arg(long, short)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the server (the default).
    Run,
    /// Print the embedded default configuration, every key documented.
    PrintConfig,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Cmd::PrintConfig) = cli.command {
        print!("{DEFAULT_CONFIG}");
        return Ok(());
    }
    let config = match &cli.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            Config::parse(&text).with_context(|| format!("in {}", path.display()))?
        }
        None => Config::embedded()?,
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| config.log.level.clone().into());
    // Logs go to stderr, coloured only on a terminal; stdout carries the one line per socket
    // that scripts wait for.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let server = lwm2m_server::start(&config).await?;
        tracing::info!(version = env!("CARGO_PKG_VERSION"), addrs = ?server.handle.local_addrs(), "lwm2m-server started");
        for a in server.handle.local_addrs() {
            println!("listening on coap://{a}");
        }
        shutdown_signal().await;
        tracing::info!("shutting down");
        server.handle.shutdown().await;
        server.task.await.context("server task")??;
        Ok(())
    })
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
