//! `lwm2m-server`: parses the command line and the configuration, starts the server, and
//! stops it cleanly (store committed) on SIGINT or SIGTERM.
//!
//! `device ...`, `bootstrap ...`, `fw ...` and `audit` manage credentials (the LwM2M server's and the
//! bootstrap server's) and read the audit log: through the admin socket of the running server
//! when there is one (so a revocation closes the device's session at once), else directly in
//! the store. `fw update|status|cancel` run firmware update campaigns (OMA LwM2M TS 1.2 Core
//! E.6) on the running server. `mqtt-passwd` adds a user to the embedded MQTT broker's
//! password file (mosquitto's format).
use anyhow::Context;

/// mimalloc instead of the system allocator (see the dependency's comment in Cargo.toml).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{ArgGroup, Args, Parser, Subcommand};
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
    /// Manage device credentials (DTLS PSK, raw public key, certificate).
    Device {
        #[command(subcommand)]
        command: DeviceCmd,
    },
    /// Manage the bootstrap server's credentials: the factory bootstrap accounts devices are
    /// born with (DTLS PSK, raw public key, certificate).
    Bootstrap {
        #[command(subcommand)]
        command: BootstrapCmd,
    },
    /// Firmware update (OMA LwM2M TS 1.2 Core E.6, Object 5): the packages the server hosts
    /// (pull downloads and push) and the campaigns that bring them to devices.
    Fw {
        #[command(subcommand)]
        command: FwCmd,
    },
    /// Show the newest security audit events (credential changes, refused devices).
    Audit {
        /// How many events, oldest first.
        #[arg(long, short = 'n', default_value_t = 50)]
        limit: usize,
    },
    /// Add a user to the embedded MQTT broker's password file (`[mqtt]
    /// embedded_password_file`, mosquitto's format), or change its password.
    ///
    /// The password is one line of standard input. The other lines of the file stay as they
    /// are, and the file keeps its owner and mode; a new file is readable by its owner only.
    MqttPasswd {
        /// The password file; created if missing.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// The user name.
        #[arg(value_name = "USER")]
        user: String,
    },
}

#[derive(Subcommand, Debug)]
enum DeviceCmd {
    /// Bind a credential to an endpoint; replaces (rotates) the endpoint's current one, and
    /// lifts the endpoint's deny if it was revoked.
    Add(AddArgs),
    /// List every credential (never the keys), and the denied endpoints.
    List,
    /// Make a registered device bootstrap again for a fresh credential: the server executes
    /// Bootstrap-Request Trigger (/1/x/9) on it when it is reachable (a sleeping queue-mode
    /// device when it wakes). Needs the running server.
    Rotate {
        /// The endpoint name.
        #[arg(long)]
        endpoint: String,
    },
    /// Revoke an endpoint's credential; a running server closes its session at once.
    ///
    /// With `security.trusted_ca` set, the endpoint is also denied: a certificate from that
    /// CA naming it is refused (by the LwM2M and the bootstrap server) until `device add`
    /// binds it a credential again. A device known only through the CA is revoked this way.
    Revoke {
        /// The endpoint name.
        #[arg(long)]
        endpoint: String,
    },
    /// Add or replace many PSK credentials from a CSV file; all or nothing.
    ///
    /// One `endpoint,psk-identity,psk-key-hex` per line; `#` comments, blank lines and an
    /// `endpoint,psk_identity,psk_key` header are skipped. Every line is checked first: if any
    /// is bad, nothing is imported and every bad line is reported.
    Import {
        /// The CSV file; `-` reads standard input.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum FwCmd {
    /// Store a firmware package (content-addressed by its SHA-256) and print its id; adding
    /// the same bytes again changes nothing and prints the same id.
    Add {
        /// The package file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// The firmware version it carries (what the device reports in /3/0/3 once updated).
        #[arg(long)]
        version: String,
        /// A name for people.
        #[arg(long, default_value = "")]
        name: String,
    },
    /// List the packages.
    List,
    /// Remove a package; refused while a campaign uses it.
    Remove {
        /// The package id.
        #[arg(value_name = "ID")]
        id: String,
    },
    /// Start a campaign bringing a package to devices; prints `campaign <id>`.
    #[command(group(ArgGroup::new("targets").required(true).args(["endpoint", "all"])))]
    Update {
        /// The package id (`fw add` printed it).
        #[arg(long)]
        package: String,
        /// A device to update; repeat for more.
        #[arg(long)]
        endpoint: Vec<String>,
        /// Every registered device (narrowed by --model and --from-version).
        #[arg(long)]
        all: bool,
        /// With --all: only devices of this Model Number (/3/0/1).
        #[arg(long, requires = "all")]
        model: Option<String>,
        /// With --all: only devices running this Firmware Version (/3/0/3).
        #[arg(long, requires = "all")]
        from_version: Option<String>,
        /// pull: the device downloads from the server; push: the server writes the package.
        #[arg(long, value_parser = ["pull", "push"])]
        method: Option<String>,
        /// Devices updated at once (default: [firmware] default_concurrency).
        #[arg(long)]
        concurrency: Option<usize>,
        /// A device reporting another version than the package's afterwards failed.
        #[arg(long)]
        require_version: bool,
    },
    /// A campaign's devices: phase and outcome of each, and totals.
    Status {
        /// The campaign id.
        campaign: String,
    },
    /// Cancel a campaign: waiting devices never start, downloads are stopped.
    Cancel {
        /// The campaign id.
        campaign: String,
    },
    /// List the campaigns: id, package, and whether each finished.
    Campaigns,
}

#[derive(Subcommand, Debug)]
enum BootstrapCmd {
    /// Bind a bootstrap-server credential to an endpoint; replaces the endpoint's current one.
    Add(AddArgs),
    /// List every bootstrap-server credential (never the keys).
    List,
    /// Remove an endpoint's bootstrap-server credential.
    Remove {
        /// The endpoint name.
        #[arg(long)]
        endpoint: String,
    },
    /// Add or replace many bootstrap-server PSK credentials from a CSV file; all or nothing.
    ///
    /// The same file as `device import`: one `endpoint,psk-identity,psk-key-hex` per line.
    Import {
        /// The CSV file; `-` reads standard input.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("secret").required(true).args(["psk_identity", "rpk", "cert"])))]
struct AddArgs {
    /// The endpoint name the device must register with.
    #[arg(long)]
    endpoint: String,
    /// PSK identity (with --psk-key).
    #[arg(long, requires = "psk_key", value_name = "IDENTITY")]
    psk_identity: Option<String>,
    /// PSK in hex, 1 to 64 bytes; `-` reads it from standard input (keeps it out of the
    /// process list and the shell history).
    #[arg(long, requires = "psk_identity", value_name = "HEX")]
    psk_key: Option<String>,
    /// The device's raw public key: a PEM "PUBLIC KEY" file (P-256).
    #[arg(long, value_name = "FILE")]
    rpk: Option<PathBuf>,
    /// The device's certificate, pinned: a PEM "CERTIFICATE" file.
    #[arg(long, value_name = "FILE")]
    cert: Option<PathBuf>,
}

/// Ends the process on the first panic, from any thread, with one log line and status 101.
///
/// tokio catches a panic in a task and keeps the runtime going, so without this a bug in one
/// code path leaves a process that a supervisor sees alive but that no longer serves: the
/// server task is gone while the sockets stay bound. The release profile also sets
/// `panic = "abort"`; this hook covers debug builds and says what happened before the
/// process ends. The store is crash-safe, so systemd or Kubernetes restarting the process is
/// the recovery.
fn fail_fast_on_panic() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let thread = std::thread::current()
            .name()
            .unwrap_or("unnamed")
            .to_string();
        tracing::error!(%location, %thread, %message, "panic: the server stops so that its supervisor restarts it");
        default(info);
        std::process::exit(101);
    }));
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let admin_cmd = match cli.command {
        Some(Cmd::PrintConfig) => {
            print!("{DEFAULT_CONFIG}");
            return Ok(());
        }
        Some(Cmd::MqttPasswd { file, user }) => return mqtt_passwd::run(&file, &user),
        Some(
            c @ (Cmd::Device { .. } | Cmd::Bootstrap { .. } | Cmd::Fw { .. } | Cmd::Audit { .. }),
        ) => Some(c),
        Some(Cmd::Run) | None => None,
    };
    let config = match &cli.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            Config::parse(&text).with_context(|| format!("in {}", path.display()))?
        }
        None => Config::embedded()?,
    };
    // The admin commands print their result; of the library's logs they show only warnings
    // and the creation of a secrets key (which the operator must back up).
    let default_level = match admin_cmd {
        Some(_) => "warn,lwm2m_server::provisioning::secrets=info".to_string(),
        None => lwm2m_server::bridge::broker::quiet_log_filter(&config.log.level),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| default_level.into());
    // Logs go to stderr, coloured only on a terminal; stdout carries the one line per socket
    // that scripts wait for.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
    if let Some(cmd) = admin_cmd {
        return admin_cli::run(&config, cmd);
    }
    fail_fast_on_panic();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let server = lwm2m_server::start(&config).await?;
        tracing::info!(version = env!("CARGO_PKG_VERSION"), addrs = ?server.handle.local_addrs(), secure = ?server.handle.secure_addrs(), "lwm2m-server started");
        for a in server.handle.local_addrs() {
            println!("listening on coap://{a}");
        }
        for a in server.handle.secure_addrs() {
            println!("listening on coaps://{a}");
        }
        // Worded apart from the lines above, so that a script looking for the LwM2M
        // server's first "listening on coaps://" line never takes a bootstrap port.
        for a in server.handle.bootstrap_addrs() {
            println!("bootstrap on coap://{a}");
        }
        for a in server.handle.bootstrap_secure_addrs() {
            println!("bootstrap on coaps://{a}");
        }
        if let Some(a) = server.handle.http_addr() {
            println!("listening on http://{a}");
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

/// `device ...`, `bootstrap ...` and `audit`.
#[cfg(unix)]
mod admin_cli {
    use super::{AddArgs, BootstrapCmd, Cmd, DeviceCmd, FwCmd};
    use anyhow::{bail, Context};
    use lwm2m_server::config::Config;
    use lwm2m_server::provisioning::admin::{self, AdminOp, AdminReply};
    use lwm2m_server::provisioning::credentials::{
        self, CredentialSet, CredentialSummary, NewCredential, Secret,
    };

    /// Runs an admin command: through the running server if there is one, else on the store.
    pub(super) fn run(config: &Config, cmd: Cmd) -> anyhow::Result<()> {
        let op = match cmd {
            Cmd::Device {
                command: DeviceCmd::Add(args),
            } => AdminOp::DeviceAdd {
                credential: new_credential(args)?,
            },
            Cmd::Device {
                command: DeviceCmd::List,
            } => AdminOp::DeviceList,
            Cmd::Device {
                command: DeviceCmd::Rotate { endpoint },
            } => AdminOp::DeviceRotate { endpoint },
            Cmd::Device {
                command: DeviceCmd::Revoke { endpoint },
            } => AdminOp::DeviceRevoke { endpoint },
            Cmd::Device {
                command: DeviceCmd::Import { file },
            } => return import(config, CredentialSet::Devices, &file),
            Cmd::Bootstrap { command } => match command {
                BootstrapCmd::Add(args) => AdminOp::BootstrapAdd {
                    credential: new_credential(args)?,
                },
                BootstrapCmd::List => AdminOp::BootstrapList,
                BootstrapCmd::Remove { endpoint } => AdminOp::BootstrapRemove { endpoint },
                BootstrapCmd::Import { file } => {
                    return import(config, CredentialSet::Bootstrap, &file)
                }
            },
            Cmd::Fw { command } => match command {
                // The server reads the file itself: the path must not depend on the CLI's
                // working directory. The admin socket (mode 0600, same host) admits only the
                // server's own user, so naming a file gives nobody access they lacked.
                FwCmd::Add {
                    file,
                    version,
                    name,
                } => AdminOp::FwAdd {
                    path: std::fs::canonicalize(&file)
                        .with_context(|| format!("reading {}", file.display()))?,
                    version,
                    name,
                },
                FwCmd::List => AdminOp::FwList,
                FwCmd::Remove { id } => AdminOp::FwRemove { id },
                FwCmd::Update {
                    package,
                    endpoint,
                    all,
                    model,
                    from_version,
                    method,
                    concurrency,
                    require_version,
                } => AdminOp::FwUpdate {
                    package,
                    endpoints: endpoint,
                    all,
                    model,
                    from_version,
                    method,
                    concurrency,
                    require_version,
                },
                FwCmd::Status { campaign } => AdminOp::FwStatus { campaign },
                FwCmd::Cancel { campaign } => AdminOp::FwCancel { campaign },
                FwCmd::Campaigns => AdminOp::FwCampaigns,
            },
            Cmd::Audit { limit } => AdminOp::Audit { limit },
            Cmd::Run | Cmd::PrintConfig | Cmd::MqttPasswd { .. } => bail!("not an admin command"),
        };
        admin_command(config, op)
    }

    fn new_credential(args: AddArgs) -> anyhow::Result<NewCredential> {
        let secret = if let (Some(identity), Some(key)) = (args.psk_identity, args.psk_key) {
            let key = if key == "-" {
                let mut line = String::new();
                std::io::stdin()
                    .read_line(&mut line)
                    .context("reading the PSK from standard input")?;
                line
            } else {
                key
            };
            Secret::Psk {
                identity: identity.into_bytes(),
                key: credentials::parse_psk_key_hex(&key)?,
            }
        } else if let Some(path) = args.rpk {
            Secret::Rpk {
                spki_der: credentials::read_public_key_pem(&path)?,
            }
        } else if let Some(path) = args.cert {
            Secret::X509 {
                cert_der: credentials::read_certificate_pem(&path)?,
            }
        } else {
            bail!("one of --psk-identity/--psk-key, --rpk or --cert is needed");
        };
        // Checked here too, so a bad value is refused before any server or store is touched.
        credentials::validate(&args.endpoint, &secret)?;
        Ok(NewCredential {
            endpoint: args.endpoint,
            secret,
        })
    }

    /// `device import`, `bootstrap import`: the lines are checked before the server or the
    /// store is touched.
    fn import(config: &Config, set: CredentialSet, file: &std::path::Path) -> anyhow::Result<()> {
        use std::io::Read;
        let mut text = String::new();
        if file.as_os_str() == "-" {
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading the credentials from standard input")?;
        } else {
            text = std::fs::read_to_string(file)
                .with_context(|| format!("reading {}", file.display()))?;
        }
        let lines = lwm2m_server::provisioning::import::parse_csv(&text)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let summary = rt.block_on(lwm2m_server::provisioning::import::import_set(
            config, set, &lines,
        ))?;
        println!(
            "imported {} credentials ({} replaced)",
            summary.imported, summary.replaced
        );
        Ok(())
    }

    fn admin_command(config: &Config, op: AdminOp) -> anyhow::Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let socket = config.admin_socket_path();
        let reply = match rt.block_on(admin::call(&socket, &op)) {
            Ok(reply) => reply,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                rt.block_on(offline(config, op.clone()))?
            }
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "talking to the running server through {}",
                    socket.display()
                )))
            }
        };
        if !reply.ok {
            bail!(
                "{}",
                reply
                    .error
                    .unwrap_or_else(|| "the server refused the request".into())
            );
        }
        print_reply(&op, reply);
        Ok(())
    }

    /// Applies `op` directly to the store: no server is running.
    async fn offline(config: &Config, op: AdminOp) -> anyhow::Result<AdminReply> {
        if !config.cluster.store.is_empty() && op.changes_credentials() {
            bail!(
                "this node's credentials are the cluster's, in {}: change them through a running node (no server answers on {})",
                lwm2m_server::config::redact_url(&config.cluster.store),
                config.admin_socket_path().display()
            );
        }
        if matches!(op, AdminOp::DeviceRotate { .. }) {
            bail!(
                "{} (no server answers on {})",
                admin::ROTATE_NEEDS_SERVER,
                config.admin_socket_path().display()
            );
        }
        if op.is_campaign_op() {
            bail!(
                "firmware campaigns need the running server (no server answers on {})",
                config.admin_socket_path().display()
            );
        }
        let path = config.store_path();
        if !path.exists() {
            // Only adding a device creates the data directory; reading or revoking in a
            // directory that holds no store (a wrong --config?) should not leave one behind.
            // With a trusted CA, revoking a device known only through it denies its
            // endpoint, which is stored too.
            let pki = !config.security.trusted_ca.as_os_str().is_empty();
            match &op {
                AdminOp::DeviceAdd { .. }
                | AdminOp::BootstrapAdd { .. }
                | AdminOp::FwAdd { .. } => std::fs::create_dir_all(&config.server.data_dir)
                    .with_context(|| format!("creating {}", config.server.data_dir.display()))?,
                AdminOp::DeviceRevoke { .. } if pki => {
                    std::fs::create_dir_all(&config.server.data_dir)
                        .with_context(|| format!("creating {}", config.server.data_dir.display()))?
                }
                AdminOp::DeviceRevoke { endpoint } | AdminOp::BootstrapRemove { endpoint } => {
                    let noun = op.credential_set().unwrap_or_default().noun();
                    bail!(
                        "endpoint {endpoint:?} has no {noun} (no store at {})",
                        path.display()
                    )
                }
                AdminOp::DeviceList | AdminOp::BootstrapList => {
                    return Ok(AdminReply {
                        devices: Some(Vec::new()),
                        ..AdminReply::ok()
                    })
                }
                AdminOp::Audit { .. } => {
                    return Ok(AdminReply {
                        events: Some(Vec::new()),
                        ..AdminReply::ok()
                    })
                }
                AdminOp::FwList => {
                    return Ok(AdminReply {
                        packages: Some(Vec::new()),
                        ..AdminReply::ok()
                    })
                }
                AdminOp::FwRemove { id } => {
                    bail!("no package {id} (no store at {})", path.display())
                }
                // `device import` goes through `import` above, which creates the directory.
                AdminOp::DeviceImport { .. }
                | AdminOp::BootstrapImport { .. }
                | AdminOp::DeviceRotate { .. }
                | AdminOp::FwUpdate { .. }
                | AdminOp::FwStatus { .. }
                | AdminOp::FwCancel { .. }
                | AdminOp::FwCampaigns => {}
            }
        }
        let store = admin::open_offline(config, false)?;
        let reply = if op.is_package_op() {
            use lwm2m_server::firmware::packages;
            let dir = packages::package_dir(&config.server.data_dir);
            let mut loaded = packages::load(&store, &dir, config.firmware.max_total_bytes)
                .with_context(|| format!("loading the packages in {}", path.display()))?;
            // No campaign runs: a package is in use if an unfinished stored campaign names it
            // (an unreadable store counts as in use: removing is what cannot be undone).
            let stored = loaded.packages.clone();
            let in_use = |id: &packages::PackageId| {
                lwm2m_server::firmware::campaigns::stored_campaigns_use(&store, &stored, id)
                    .unwrap_or(true)
            };
            admin::apply_firmware(
                &store,
                &dir,
                (&config.firmware).into(),
                &mut loaded.packages,
                op,
                &in_use,
            )
        } else if let AdminOp::Audit { limit } = op {
            // The audit log needs no key: it holds no secrets.
            AdminReply {
                events: Some(lwm2m_server::provisioning::audit::recent(
                    &store,
                    limit.min(admin::MAX_AUDIT_LIMIT),
                )?),
                ..AdminReply::ok()
            }
        } else {
            let key_path = config.secrets_key_path();
            let key = lwm2m_server::provisioning::secrets::SecretsKey::load_or_create(&key_path)?;
            let set = op.credential_set().unwrap_or_default();
            let mut creds = admin::load_offline(&store, &key, config, set)
                .with_context(|| format!("loading the credentials in {}", path.display()))?;
            admin::apply_offline(&store, &key, &mut creds, op)
        };
        store.flush().await.context("committing the store")?;
        store.close().context("closing the store")?;
        Ok(reply)
    }

    /// `fw status`: one line per device, then the totals.
    fn print_campaign(status: Option<&serde_json::Value>) {
        let Some(s) = status else {
            return;
        };
        let text = |v: &serde_json::Value| match v {
            serde_json::Value::Null => "-".to_string(),
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let get =
            |v: &serde_json::Value, k: &str| text(v.get(k).unwrap_or(&serde_json::Value::Null));
        println!(
            "campaign {}  package {}  {}{}",
            get(s, "id"),
            s.pointer("/spec/package").map(text).unwrap_or_default(),
            if s.get("finished").and_then(serde_json::Value::as_bool) == Some(true) {
                "finished"
            } else {
                "running"
            },
            if s.get("cancelled").and_then(serde_json::Value::as_bool) == Some(true) {
                " (cancelled)"
            } else {
                ""
            }
        );
        println!(
            "{:<32}  {:<12}  {:<20}  {:>5}  {:>6}  {:<10}  warning",
            "endpoint", "phase", "outcome", "state", "result", "version"
        );
        for d in s
            .get("devices")
            .and_then(serde_json::Value::as_array)
            .into_iter()
            .flatten()
        {
            println!(
                "{:<32}  {:<12}  {:<20}  {:>5}  {:>6}  {:<10}  {}",
                get(d, "endpoint"),
                get(d, "phase"),
                get(d, "outcome"),
                get(d, "state"),
                get(d, "result"),
                get(d, "version"),
                get(d, "warning"),
            );
        }
        if let Some(totals) = s.get("totals").and_then(serde_json::Value::as_object) {
            let line: Vec<String> = totals.iter().map(|(k, v)| format!("{k}={v}")).collect();
            println!("totals: {}", line.join(" "));
        }
    }

    fn print_reply(op: &AdminOp, reply: AdminReply) {
        let noun = op.credential_set().unwrap_or_default().noun();
        match op {
            AdminOp::DeviceAdd { .. } | AdminOp::BootstrapAdd { .. } => {
                if let Some(d) = reply.device {
                    println!(
                        "added {} {noun} {} for endpoint {}",
                        d.kind, d.id, d.endpoint
                    );
                }
                if let Some(r) = reply.replaced {
                    println!("replaced its {} {noun} {}", r.kind, r.id);
                }
                if reply.deny_lifted {
                    println!("the endpoint is no longer denied");
                }
            }
            AdminOp::DeviceRevoke { endpoint } | AdminOp::BootstrapRemove { endpoint } => {
                let verb = match op {
                    AdminOp::DeviceRevoke { .. } => "revoked",
                    _ => "removed",
                };
                if let Some(d) = reply.device {
                    println!(
                        "{verb} {} {noun} {} of endpoint {}",
                        d.kind, d.id, d.endpoint
                    );
                }
                if reply.denied.is_some() {
                    println!(
                        "endpoint {endpoint} is denied: it cannot bootstrap again nor come in with a certificate from a trusted CA, until `device add` binds it a credential again"
                    );
                }
            }
            AdminOp::DeviceList | AdminOp::BootstrapList => {
                print_devices(&reply.devices.unwrap_or_default(), noun);
                for e in reply.denied.unwrap_or_default() {
                    println!("denied: {e}");
                }
            }
            AdminOp::DeviceRotate { endpoint } => println!(
                "asked {endpoint} to bootstrap again (Bootstrap-Request Trigger, /1/x/9): it gets a fresh credential when it is reachable"
            ),
            AdminOp::DeviceImport { .. } | AdminOp::BootstrapImport { .. } => {
                if let Some(r) = reply.import {
                    println!(
                        "imported {} credentials ({} replaced)",
                        r.imported, r.replaced
                    );
                }
            }
            AdminOp::FwAdd { .. } => {
                if let Some(p) = reply.package {
                    println!("package {}", p.id);
                    if reply.existed {
                        println!(
                            "already stored (version {:?}, name {:?}, added {}): kept as it was",
                            p.version,
                            p.name,
                            format_utc(p.added_at)
                        );
                    }
                }
            }
            AdminOp::FwList => print_packages(&reply.packages.unwrap_or_default()),
            AdminOp::FwRemove { .. } => {
                if let Some(p) = reply.package {
                    println!("removed package {} version {}", p.id, p.version);
                }
            }
            AdminOp::FwUpdate { .. } => {
                if let Some(c) = reply.campaign {
                    println!("campaign {c}");
                }
            }
            AdminOp::FwStatus { .. } => print_campaign(reply.firmware.as_ref()),
            AdminOp::FwCancel { campaign } => println!("campaign {campaign} cancelled"),
            AdminOp::FwCampaigns => {
                let campaigns = reply.campaigns.unwrap_or_default();
                if campaigns.is_empty() {
                    println!("no campaigns");
                }
                for c in campaigns {
                    let state = if c.finished { "finished" } else { "running" };
                    println!("{:<8}  {:<16}  {state}", c.id, c.package);
                }
            }
            AdminOp::Audit { .. } => {
                for e in reply.events.unwrap_or_default() {
                    println!(
                        "{}  {:<18}  {:<24}  {:<22}  {}",
                        format_utc(e.at),
                        e.kind.as_str(),
                        e.endpoint.as_deref().unwrap_or("-"),
                        e.peer.as_deref().unwrap_or("-"),
                        e.detail
                    );
                }
            }
        }
    }

    fn print_packages(packages: &[admin::PackageSummary]) {
        if packages.is_empty() {
            println!("no packages");
            return;
        }
        println!(
            "{:<16}  {:<16}  {:>10}  {:<20}  NAME",
            "ID", "VERSION", "SIZE", "ADDED (UTC)"
        );
        for p in packages {
            println!(
                "{:<16}  {:<16}  {:>10}  {:<20}  {}",
                p.id,
                p.version,
                p.size,
                format_utc(p.added_at),
                p.name
            );
        }
    }

    fn print_devices(devices: &[CredentialSummary], noun: &str) {
        if devices.is_empty() {
            match noun {
                "credential" => println!("no device credentials"),
                noun => println!("no {noun}s"),
            }
            return;
        }
        let header = ["ENDPOINT", "KIND", "PSK IDENTITY / SHA-256", "ADDED (UTC)"];
        let rows: Vec<[String; 4]> = devices
            .iter()
            .map(|d| {
                [
                    d.endpoint.clone(),
                    d.kind.to_string(),
                    d.id.clone(),
                    format_utc(d.added_at),
                ]
            })
            .collect();
        let mut width = header.map(str::len);
        for r in &rows {
            for (w, cell) in width.iter_mut().zip(r) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: [&str; 4]| {
            let [a, b, c, d] = cells;
            println!(
                "{a:<wa$}  {b:<wb$}  {c:<wc$}  {d}",
                wa = width[0],
                wb = width[1],
                wc = width[2]
            );
        };
        line(header);
        for r in &rows {
            line([&r[0], &r[1], &r[2], &r[3]]);
        }
    }

    /// `YYYY-MM-DDTHH:MM:SSZ` (days to civil date after H. Hinnant's algorithm), so the CLI
    /// needs no date crate.
    pub(super) fn format_utc(t: std::time::SystemTime) -> String {
        let secs = t
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let days = i64::try_from(secs / 86_400).unwrap_or(0);
        let rem = secs % 86_400;
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        format!(
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
            rem / 3600,
            rem / 60 % 60,
            rem % 60
        )
    }
}

#[cfg(not(unix))]
mod admin_cli {
    /// The admin channel is a Unix domain socket.
    pub(super) fn run(_config: &super::Config, _cmd: super::Cmd) -> anyhow::Result<()> {
        anyhow::bail!("device, bootstrap and audit commands need Unix domain sockets")
    }
}

/// `mqtt-passwd FILE USER`: adds or replaces one line of a mosquitto password file.
#[cfg(unix)]
mod mqtt_passwd {
    use anyhow::{bail, Context};
    use lwm2m_server::bridge::passwords::{hash_password, PasswordFile};
    use std::io::{BufRead, IsTerminal, Read, Write};
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
    use std::path::{Path, PathBuf};
    use zeroize::Zeroizing;

    /// The longest password an MQTT CONNECT can carry (a two-byte length).
    const MAX_PASSWORD_BYTES: usize = 65_535;

    pub(super) fn run(file: &Path, user: &str) -> anyhow::Result<()> {
        check_user(user)?;
        let password = read_password(user)?;
        let line = format!("{user}:{}", hash_password(&password));
        // The new line must be one the broker loads and that accepts this password.
        let entry = PasswordFile::parse(&line).context("the new entry")?;
        if entry.len() != 1 || !entry.check(user, &password) {
            bail!("the new entry does not accept the password");
        }
        let target = resolve(file)?;
        let existing = match std::fs::read(&target) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(|| format!("reading {}", target.display())),
        };
        let (text, replaced) = upsert(existing.as_deref().unwrap_or_default(), user, &line);
        let meta = match existing {
            Some(_) => Some(
                std::fs::metadata(&target)
                    .with_context(|| format!("reading {}", target.display()))?,
            ),
            None => None,
        };
        write_replacing(&target, &text, meta.as_ref())?;
        if replaced {
            println!("changed the password of {user} in {}", target.display());
        } else {
            println!("added {user} to {}", target.display());
        }
        Ok(())
    }

    /// Refuses a name that the file's format would change or could not hold: mosquitto
    /// drops blanks around it, `:` ends it, `#` starts a comment, a line break splits it.
    fn check_user(user: &str) -> anyhow::Result<()> {
        if user.is_empty() {
            bail!("the user name is empty");
        }
        if user.trim() != user {
            bail!("the user name starts or ends with a blank");
        }
        if user.contains(':') {
            bail!("the user name contains `:`");
        }
        if user.starts_with('#') {
            bail!("the user name starts with `#` (a comment in the password file)");
        }
        if user.chars().any(char::is_control) {
            bail!("the user name contains a control character");
        }
        // The length limit of a line, checked before the password is asked for.
        PasswordFile::parse(&format!("{user}:{}", hash_password(b"-"))).context("the user name")?;
        Ok(())
    }

    /// One line of standard input, without its line break.
    fn read_password(user: &str) -> anyhow::Result<Zeroizing<Vec<u8>>> {
        let stdin = std::io::stdin();
        if stdin.is_terminal() {
            eprint!("password for {user} (shown as typed): ");
            let _ = std::io::stderr().flush();
        }
        // Room for the longest password and a CR LF, so that the buffer never grows (and
        // leaves no copy behind) and a longer line is seen as one.
        let cap = MAX_PASSWORD_BYTES + 3;
        let mut password = Zeroizing::new(Vec::with_capacity(cap));
        stdin
            .lock()
            .take(u64::try_from(cap).unwrap_or(u64::MAX))
            .read_until(b'\n', &mut password)
            .context("reading the password from standard input")?;
        if password.last() == Some(&b'\n') {
            password.pop();
            if password.last() == Some(&b'\r') {
                password.pop();
            }
        }
        if password.is_empty() {
            bail!("the password is empty");
        }
        if password.len() > MAX_PASSWORD_BYTES {
            bail!(
                "the password is longer than {MAX_PASSWORD_BYTES} bytes, more than MQTT can carry"
            );
        }
        Ok(password)
    }

    /// The file to write: a symbolic link's target, so that the link stays.
    fn resolve(file: &Path) -> anyhow::Result<PathBuf> {
        match std::fs::symlink_metadata(file) {
            Ok(m) if m.file_type().is_symlink() => std::fs::canonicalize(file)
                .with_context(|| format!("following the link {}", file.display())),
            _ => Ok(file.to_path_buf()),
        }
    }

    /// The user of an entry line, as the broker reads it; `None` for a comment, a blank line,
    /// or a line that is not text.
    fn entry_user(line: &[u8]) -> Option<&str> {
        let line = std::str::from_utf8(line).ok()?.trim();
        if line.starts_with('#') {
            return None;
        }
        line.split_once(':').map(|(user, _)| user.trim())
    }

    /// `existing` with `line` in place of `user`'s first entry (later ones dropped), or added
    /// at the end; every other line byte for byte. Also whether an entry was replaced.
    pub(super) fn upsert(existing: &[u8], user: &str, line: &str) -> (Vec<u8>, bool) {
        let mut out = Vec::with_capacity(existing.len().saturating_add(line.len() + 2));
        let mut replaced = false;
        for old in existing.split_inclusive(|b| *b == b'\n') {
            if entry_user(old) != Some(user) {
                out.extend_from_slice(old);
            } else if !replaced {
                out.extend_from_slice(line.as_bytes());
                out.push(b'\n');
                replaced = true;
            }
        }
        if !replaced {
            if !out.is_empty() && !out.ends_with(b"\n") {
                out.push(b'\n');
            }
            out.extend_from_slice(line.as_bytes());
            out.push(b'\n');
        }
        (out, replaced)
    }

    /// Writes `bytes` to a new file beside `target` and renames it over `target`, so that a
    /// reader sees the old file or the new one, never a part. The new file keeps `old`'s
    /// owner and mode (a broker running as another user may read it); a file that did not
    /// exist gets mode 0600.
    fn write_replacing(
        target: &Path,
        bytes: &[u8],
        old: Option<&std::fs::Metadata>,
    ) -> anyhow::Result<()> {
        let name = target
            .file_name()
            .with_context(|| format!("{} is not a file name", target.display()))?;
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let temp = TempFile(dir.join(format!(
            ".{}.{:016x}.tmp",
            name.to_string_lossy(),
            rand::random::<u64>()
        )));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp.0)
            .with_context(|| format!("creating {}", temp.0.display()))?;
        file.write_all(bytes)
            .with_context(|| format!("writing {}", temp.0.display()))?;
        let mode = match old {
            Some(old) => {
                let mine = file.metadata()?;
                if (mine.uid(), mine.gid()) != (old.uid(), old.gid()) {
                    if let Err(e) =
                        std::os::unix::fs::chown(&temp.0, Some(old.uid()), Some(old.gid()))
                    {
                        eprintln!(
                            "warning: {} now belongs to this user, not to uid {} gid {}: {e}",
                            target.display(),
                            old.uid(),
                            old.gid()
                        );
                    }
                }
                old.mode() & 0o7777
            }
            None => 0o600,
        };
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.sync_all()
            .with_context(|| format!("writing {}", temp.0.display()))?;
        drop(file);
        std::fs::rename(&temp.0, target)
            .with_context(|| format!("replacing {}", target.display()))?;
        temp.keep();
        // The rename itself on disk; a failure here leaves a good file, so it is not fatal.
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Removes the temporary file unless it was renamed into place.
    struct TempFile(PathBuf);

    impl TempFile {
        /// It was renamed: nothing to remove.
        fn keep(mut self) {
            self.0 = PathBuf::new();
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            if !self.0.as_os_str().is_empty() {
                let _ = std::fs::remove_file(&self.0);
            }
        }
    }
}

#[cfg(not(unix))]
mod mqtt_passwd {
    /// The file's mode and owner are Unix's.
    pub(super) fn run(_file: &std::path::Path, _user: &str) -> anyhow::Result<()> {
        anyhow::bail!("mqtt-passwd needs Unix file permissions")
    }
}

#[cfg(test)]
mod tests {
    use super::admin_cli::format_utc;
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn utc_formatting() {
        assert_eq!(format_utc(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            format_utc(UNIX_EPOCH + Duration::from_secs(951_782_400 + 3661)),
            "2000-02-29T01:01:01Z"
        );
        assert_eq!(
            format_utc(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
            "2023-11-14T22:13:20Z"
        );
    }

    #[test]
    fn cli_requires_exactly_one_secret() {
        let parse = |args: &[&str]| Cli::try_parse_from(args.iter().copied());
        assert!(parse(&[
            "s",
            "device",
            "add",
            "--endpoint",
            "e",
            "--psk-identity",
            "i",
            "--psk-key",
            "00"
        ])
        .is_ok());
        assert!(parse(&["s", "device", "add", "--endpoint", "e"]).is_err());
        assert!(parse(&[
            "s",
            "device",
            "add",
            "--endpoint",
            "e",
            "--psk-identity",
            "i"
        ])
        .is_err());
        assert!(parse(&["s", "device", "add", "--endpoint", "e", "--psk-key", "00"]).is_err());
        assert!(parse(&[
            "s",
            "device",
            "add",
            "--endpoint",
            "e",
            "--rpk",
            "a",
            "--cert",
            "b"
        ])
        .is_err());
        assert!(parse(&[
            "s",
            "device",
            "add",
            "--endpoint",
            "e",
            "--psk-identity",
            "i",
            "--psk-key",
            "00",
            "--rpk",
            "a"
        ])
        .is_err());
        assert!(parse(&["s", "device", "revoke", "--endpoint", "e"]).is_ok());
        assert!(parse(&["s", "device", "import", "fleet.csv"]).is_ok());
        assert!(parse(&["s", "device", "import", "-"]).is_ok());
        assert!(parse(&["s", "device", "import"]).is_err());
        assert!(parse(&["s", "audit", "--limit", "5"]).is_ok());
    }

    #[test]
    fn mqtt_passwd_replaces_or_adds_one_line_and_keeps_the_rest() {
        use super::mqtt_passwd::upsert;
        let new = "bob:$7$101$NEW";
        let old = b"# users\nalice:$7$A\r\n\n bob :$6$OLD\n#bob:$7$C\ncarol:x\nbob:$6$DUP\n";
        let (text, replaced) = upsert(old, "bob", new);
        assert!(replaced);
        assert_eq!(
            text,
            b"# users\nalice:$7$A\r\n\nbob:$7$101$NEW\n#bob:$7$C\ncarol:x\n".to_vec()
        );
        let (text, replaced) = upsert(b"alice:$7$A", "bob", new);
        assert!(!replaced);
        assert_eq!(text, b"alice:$7$A\nbob:$7$101$NEW\n".to_vec());
        assert_eq!(
            upsert(b"", "bob", new),
            (b"bob:$7$101$NEW\n".to_vec(), false)
        );
        // A name that only starts like another is another user.
        let (text, replaced) = upsert(b"bobby:$7$B\n", "bob", new);
        assert!(!replaced);
        assert_eq!(text, b"bobby:$7$B\nbob:$7$101$NEW\n".to_vec());
    }

    #[test]
    fn mqtt_passwd_takes_a_file_and_a_user() {
        let parse = |args: &[&str]| Cli::try_parse_from(args.iter().copied());
        match parse(&["s", "mqtt-passwd", "/etc/p", "alice"])
            .unwrap()
            .command
        {
            Some(Cmd::MqttPasswd { file, user }) => {
                assert_eq!(file, PathBuf::from("/etc/p"));
                assert_eq!(user, "alice");
            }
            other => panic!("{other:?}"),
        }
        assert!(parse(&["s", "mqtt-passwd", "/etc/p"]).is_err());
        assert!(parse(&["s", "mqtt-passwd", "/etc/p", "alice", "pw"]).is_err());
    }

    #[test]
    fn bootstrap_commands_take_the_device_commands_arguments() {
        let parse = |args: &[&str]| Cli::try_parse_from(args.iter().copied());
        let add = parse(&[
            "s",
            "bootstrap",
            "add",
            "--endpoint",
            "e",
            "--psk-identity",
            "i",
            "--psk-key",
            "00",
        ])
        .unwrap();
        match add.command {
            Some(Cmd::Bootstrap {
                command: BootstrapCmd::Add(a),
            }) => {
                assert_eq!(a.endpoint, "e");
                assert_eq!(a.psk_identity.as_deref(), Some("i"));
                assert_eq!(a.psk_key.as_deref(), Some("00"));
            }
            other => panic!("{other:?}"),
        }
        assert!(parse(&["s", "bootstrap", "add", "--endpoint", "e", "--rpk", "k.pem"]).is_ok());
        assert!(parse(&[
            "s",
            "bootstrap",
            "add",
            "--endpoint",
            "e",
            "--cert",
            "c.pem"
        ])
        .is_ok());
        assert!(parse(&["s", "bootstrap", "add", "--endpoint", "e"]).is_err());
        assert!(parse(&[
            "s",
            "bootstrap",
            "add",
            "--endpoint",
            "e",
            "--rpk",
            "a",
            "--cert",
            "b"
        ])
        .is_err());
        match parse(&["s", "bootstrap", "remove", "--endpoint", "e"])
            .unwrap()
            .command
        {
            Some(Cmd::Bootstrap {
                command: BootstrapCmd::Remove { endpoint },
            }) => assert_eq!(endpoint, "e"),
            other => panic!("{other:?}"),
        }
        assert!(parse(&["s", "bootstrap", "remove"]).is_err());
        assert!(parse(&["s", "bootstrap", "list"]).is_ok());
        assert!(parse(&["s", "bootstrap", "import", "factory.csv"]).is_ok());
        assert!(parse(&["s", "bootstrap", "import"]).is_err());
        assert!(parse(&["s", "bootstrap", "revoke", "--endpoint", "e"]).is_err());
    }
}
