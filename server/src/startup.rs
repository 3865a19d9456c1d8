//! Starting a server: the object definitions, the store and the secrets key, the state a
//! previous run left (credentials, DTLS sessions, registrations, the MQTT bridge's outbox),
//! the sockets, the MQTT bridge, the HTTP API and the admin socket, the bootstrap server — then
//! the server task, whose driver runs the [`Stack`]s on the sockets.
use crate::bootstrap::{BootstrapRole, ConfiguredAccounts};
use crate::config::Config;
use crate::core::persist::StoreOp;
use crate::core::types::Link;
use crate::core::ServerCore;
use crate::handle::{Server, ServerHandle};
use crate::metrics::Metrics;
use crate::provisioning::admin::{self, AdminRequest};
use crate::provisioning::secrets::SecretsKey;
use crate::provisioning::security::{self, SharedCredentials};
use crate::runtime::inputs::Inputs;
use crate::runtime::{Shell, Tasks, BOOTSTRAP_PLAIN, BOOTSTRAP_SECURE, INTERNAL, PLAIN, SECURE};
use crate::stack::{Secure, Stack};
use crate::store::{Store, StoreConfig, Table};
use anyhow::Context;
use dtls::pki::Roots;
use lwm2m::model::Registry;
use lwm2m::net::machine::{self, Sockets};
use lwm2m_bootstrap::BootstrapConfig;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Largest answer the bootstrap server reassembles from a device.
const BOOTSTRAP_MAX_BODY: usize = 64 * 1024;

/// Device events a slow subscriber may fall behind by before it misses some.
const EVENT_CAPACITY: usize = 16_384;

/// Opens the store, restores the previous state (registrations, DTLS sessions), binds the
/// sockets and the admin socket, and starts the server.
pub async fn start(config: &Config) -> anyhow::Result<Server> {
    let schema = Arc::new(load_schema(config)?);
    std::fs::create_dir_all(&config.server.data_dir)
        .with_context(|| format!("creating {}", config.server.data_dir.display()))?;
    let store_path = config.store_path();
    let store_config = StoreConfig {
        cache_bytes: config.server.store_cache_bytes,
        gather: std::time::Duration::from_millis(config.server.store_commit_gather_ms),
        ..StoreConfig::default()
    };
    let store = Store::open(&store_path, store_config)
        .with_context(|| format!("opening the store at {}", store_path.display()))?;
    let secrets = SecretsKey::load_or_create(&config.secrets_key_path())
        .with_context(|| format!("secrets key {}", config.secrets_key_path().display()))?;
    let secrets = Arc::new(secrets);
    // The cluster's admin log: what other nodes changed while this one was away is applied
    // to the store before the state is restored from it.
    let shared = if config.cluster.enabled && !config.cluster.store.is_empty() {
        use crate::cluster::admin_log::{AdminLog, Use};
        use crate::runtime::replication::{catch_up, describe};
        let url = &config.cluster.store;
        let connect = |purpose| async move {
            AdminLog::connect(url, purpose)
                .await
                .map_err(|e| describe(e, url))
        };
        let (mut reader, mut appender) = (connect(Use::Read).await?, connect(Use::Append).await?);
        appender
            .check_key(&secrets)
            .await
            .map_err(|e| describe(e, url))?;
        let caught = catch_up(&mut reader, &store, &secrets, config).await?;
        Some((reader, appender, caught))
    } else {
        None
    };

    let mut core_config = config.core();
    core_config.rng_seed = rand::random();
    core_config.coap.rng_seed = rand::random();
    let now = Instant::now().into_std();
    let clock_base = (now, SystemTime::now());
    let mut core: ServerCore<Link> = ServerCore::new(core_config, schema.clone(), clock_base);

    let mut dtls = None;
    let mut roots = Roots::default();
    let bootstrap_dtls = config.bootstrap.enabled && !config.bootstrap.coaps_bind.is_empty();
    let mut server_key = None;
    if !config.server.coaps_bind.is_empty() || bootstrap_dtls {
        server_key = Some(security::server_key(config)?);
        roots = security::trusted_roots(&config.security.trusted_ca)?;
    }
    if !config.server.coaps_bind.is_empty() {
        dtls = Some(dtls::Server::new(
            security::dtls_config(config, server_key.clone(), clock_base),
            rand::random(),
        ));
    }
    let stale = shared
        .as_ref()
        .map(|(_, _, caught)| caught.stale.clone())
        .unwrap_or_default();
    let restored = crate::restore::restore_state(
        config,
        &store,
        &secrets,
        &mut core,
        dtls.as_mut(),
        &stale,
        schema.clone(),
        now,
    )?;
    tracing::info!(
        devices = restored.credentials.len(),
        sessions = restored.sessions,
        report = ?restored.core,
        skipped = restored.skipped,
        packages = restored.firmware.packages.len(),
        packages_not_loaded = restored.firmware.skipped,
        "state restored"
    );
    let creds = SharedCredentials(Arc::new(std::sync::RwLock::new(restored.credentials)));
    let bootstrap_creds = SharedCredentials(Arc::new(std::sync::RwLock::new(
        restored.bootstrap_credentials,
    )));
    core.set_security_policy(Arc::new(creds.clone()));
    let firmware = crate::firmware::FirmwareStore {
        shared: crate::firmware::SharedFirmware::new(restored.firmware.packages),
        dir: crate::firmware::packages::package_dir(&config.server.data_dir),
        limits: (&config.firmware).into(),
    };
    if config.firmware.enabled {
        core.set_firmware(
            config.firmware.path.clone(),
            Arc::new(firmware.shared.clone()),
        );
    }

    let mut sockets = Sockets::empty();
    let recv_buffer = config.server.udp_recv_buffer_bytes;
    let mut addrs = Vec::new();
    if config.security.allow_nosec && !config.server.coap_bind.is_empty() {
        addrs = sockets
            .bind_listener(&config.server.coap_bind, recv_buffer, PLAIN)
            .with_context(|| format!("binding CoAP sockets {:?}", config.server.coap_bind))?;
        for a in &addrs {
            tracing::info!(addr = %a, "CoAP (NoSec) listening");
        }
    } else {
        tracing::info!("NoSec disabled: plain CoAP is not served");
    }
    let mut secure_addrs = Vec::new();
    if dtls.is_some() {
        secure_addrs = sockets
            .bind_listener(&config.server.coaps_bind, recv_buffer, SECURE)
            .with_context(|| format!("binding CoAPs sockets {:?}", config.server.coaps_bind))?;
        for a in &secure_addrs {
            tracing::info!(addr = %a, "CoAP over DTLS listening");
        }
    }
    let cluster_secret = if config.cluster.enabled {
        let secret = crate::cluster::read_secret(&config.cluster.secret_file)?;
        let internal = sockets
            .bind_listener(&[config.cluster.internal_bind], recv_buffer, INTERNAL)
            .with_context(|| {
                format!(
                    "binding the cluster's internal socket {}",
                    config.cluster.internal_bind
                )
            })?;
        for a in &internal {
            tracing::info!(addr = %a, node = config.cluster.node_id, peers = config.cluster.peers.len(), "cluster node: internal socket listening");
        }
        Some(secret)
    } else {
        None
    };
    anyhow::ensure!(
        !addrs.is_empty() || !secure_addrs.is_empty(),
        "nothing to listen on: configure server.coaps_bind, or server.coap_bind with security.allow_nosec"
    );
    let (control_tx, control) = mpsc::channel(1024);
    let (events, _) = broadcast::channel(EVENT_CAPACITY);
    let started = crate::bridge::start(config, &store, restored.bridge)
        .map_err(|e| e.context("starting the MQTT bridge"))?;
    let metrics = Arc::new(Metrics::new(
        store.stats_handle(),
        started.as_ref().map(|s| s.running.shared()),
    ));
    let ownership = match &shared {
        Some(_) => {
            Some(share_devices(config, &store, &mut core, dtls.as_mut(), &metrics, now).await?)
        }
        None => None,
    };
    metrics.set_registered_clients(core.device_count());
    let http_listener = if config.http.enabled {
        let listener = tokio::net::TcpListener::bind(config.http.bind)
            .await
            .with_context(|| format!("binding the HTTP API on {}", config.http.bind))?;
        Some(listener)
    } else {
        None
    };
    let (admin_task, admin_requests) = spawn_admin(config)?;
    let http_addr = match &http_listener {
        Some(l) => Some(l.local_addr()?),
        None => None,
    };
    let (bootstrap, bootstrap_addrs) = bootstrap_stack(
        config,
        &mut sockets,
        server_key,
        &roots,
        &bootstrap_creds,
        &creds,
        &secrets,
        &metrics,
        clock_base,
    )?;
    let handle = ServerHandle {
        control: control_tx,
        events: events.clone(),
        local_addrs: Arc::new(addrs),
        secure_addrs: Arc::new(secure_addrs),
        bootstrap_addrs: Arc::new(bootstrap_addrs),
        store_stats: store.stats_handle(),
        metrics: metrics.clone(),
        http_addr,
    };
    let http_task = match http_listener {
        Some(tcp) => Some(spawn_http(config, tcp, &handle, schema.clone())?),
        None => None,
    };
    let secure = dtls.map(|server| Secure {
        server,
        creds: creds.clone(),
        roots,
        secrets: secrets.clone(),
    });
    let cluster = cluster_secret.map(|secret| {
        crate::cluster::Cluster::new(
            &config.cluster,
            usize::from(config.dtls.connection_id_length),
            &secret,
            config.dtls.max_sessions,
            metrics.clone(),
        )
    });
    let stack = Stack::new(
        core,
        secure,
        metrics,
        config.session_save_interval(),
        clock_base.0,
    );
    let (mut bridge, mqtt, downlink) = match started {
        Some(s) => (Some(s.bridge), Some(s.running), Some(s.downlink)),
        None => (None, None, None),
    };
    if let (Some(b), Some(_)) = (bridge.as_mut(), ownership.as_ref()) {
        // A device's MQTT requests and observations go with it to the node that takes it.
        b.share_device_records();
    }
    let (replicated, replication) = match shared {
        Some((reader, appender, caught)) => {
            let (tx, rx) = mpsc::channel(1024);
            tokio::spawn(crate::runtime::replication::tail(
                reader,
                secrets.clone(),
                caught.after,
                tx,
            ));
            let replication = crate::runtime::replication::Replication {
                node: config.cluster.node_id,
                log: appender,
                waiting: HashMap::new(),
            };
            (Some(rx), Some(replication))
        }
        None => (None, None),
    };
    let (ownership, owned) = match ownership {
        Some((o, rx)) => (Some(o), Some(rx)),
        None => (None, None),
    };
    let (mut inputs, commits) = Inputs::new(control, Some(admin_requests), downlink, replicated);
    inputs.owned = owned;
    let campaigns = crate::runtime::firmware::open_campaigns(
        config,
        &store,
        &firmware.shared,
        now,
        clock_base,
    )?;
    let shell = Shell {
        campaigns,
        stack,
        bootstrap,
        installed: HashMap::new(),
        closing: Vec::new(),
        bootstrap_creds,
        store,
        secrets,
        creds,
        firmware,
        events,
        waiters: HashMap::new(),
        submitted: Default::default(),
        done: None,
        bridge,
        commits,
        tasks: Tasks {
            admin: Some(admin_task),
            http: http_task,
            mqtt,
        },
        cluster,
        replication,
        ownership,
    };
    shell
        .stack
        .metrics()
        .set_firmware_devices(&shell.campaigns.phase_counts());
    let task = tokio::spawn(async move {
        let shell = machine::run(sockets, shell, inputs).await;
        shell.finish().await
    });
    Ok(Server { handle, task })
}

/// Starts the HTTP API on `tcp`: the token and the TLS configuration are read here, so that a
/// missing file stops the start with its name.
fn spawn_http(
    config: &Config,
    tcp: tokio::net::TcpListener,
    handle: &ServerHandle,
    schema: Arc<Registry>,
) -> anyhow::Result<JoinHandle<()>> {
    let addr = tcp.local_addr()?;
    let token = crate::http::tls::load_token(&config.http)?;
    let tls = crate::http::tls::server_config(&config.http)?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(%addr, %scheme, token = token.is_some(), "HTTP API listening");
    let state = crate::http::ApiState::new(handle.clone(), schema, Arc::new(config.clone()), token);
    let listener = crate::http::Listener {
        tcp,
        tls,
        max_connections: config.http.max_connections,
        header_timeout: crate::http::HEADER_READ_TIMEOUT,
    };
    Ok(tokio::spawn(crate::http::serve(
        listener,
        crate::http::router(state),
    )))
}

/// The bootstrap server's stack, and its plain and DTLS addresses.
type BootstrapParts = (
    Option<Stack<BootstrapRole>>,
    (Vec<SocketAddr>, Vec<SocketAddr>),
);

/// The bootstrap server's stack and its sockets (plain, DTLS), if `[bootstrap]` is enabled:
/// the same DTLS settings and server key as the LwM2M server, its own engine and sessions,
/// judged against the factory credentials; `servers` are the LwM2M server's.
#[allow(clippy::too_many_arguments)]
fn bootstrap_stack(
    config: &Config,
    sockets: &mut Sockets,
    key: Option<Arc<dtls::pki::OwnKey>>,
    roots: &Roots,
    creds: &SharedCredentials,
    servers: &SharedCredentials,
    secrets: &Arc<SecretsKey>,
    metrics: &Arc<Metrics>,
    clock_base: (std::time::Instant, SystemTime),
) -> anyhow::Result<BootstrapParts> {
    let bs = &config.bootstrap;
    if !bs.enabled {
        return Ok((None, Default::default()));
    }
    let recv_buffer = config.server.udp_recv_buffer_bytes;
    let mut plain = Vec::new();
    if config.security.allow_nosec && !bs.coap_bind.is_empty() {
        plain = sockets
            .bind_listener(&bs.coap_bind, recv_buffer, BOOTSTRAP_PLAIN)
            .with_context(|| format!("binding bootstrap CoAP sockets {:?}", bs.coap_bind))?;
        for a in &plain {
            tracing::info!(addr = %a, "bootstrap (NoSec) listening");
        }
    }
    let mut secure_addrs = Vec::new();
    let mut secure = None;
    if let Some(key) = key.filter(|_| !bs.coaps_bind.is_empty()) {
        secure_addrs = sockets
            .bind_listener(&bs.coaps_bind, recv_buffer, BOOTSTRAP_SECURE)
            .with_context(|| format!("binding bootstrap CoAPs sockets {:?}", bs.coaps_bind))?;
        for a in &secure_addrs {
            tracing::info!(addr = %a, "bootstrap over DTLS listening");
        }
        secure = Some((
            key.clone(),
            Secure {
                server: dtls::Server::new(
                    dtls::ServerConfig {
                        // Bootstrap datagrams are not routed between nodes (a bootstrap is
                        // short; one cut by a rebinding starts again): its CIDs are all random.
                        cid_node: None,
                        ..security::dtls_config(config, Some(key), clock_base)
                    },
                    rand::random(),
                ),
                creds: creds.clone(),
                roots: roots.clone(),
                secrets: secrets.clone(),
            },
        ));
    }
    let (spki, certificate) = match &secure {
        Some((key, _)) => (key.spki.clone(), key.chain.first().cloned()),
        None => (Vec::new(), None),
    };
    let accounts = ConfiguredAccounts::new(
        bs.clone(),
        spki,
        certificate,
        creds.clone(),
        servers.clone(),
        security::pki_naming(config).is_some(),
    );
    let mut coap = config.endpoint();
    coap.rng_seed = rand::random();
    // The bootstrap server reads a Discover answer and one Server instance back: a few KB.
    // A device answering block-wise must not make it reassemble the server's 4 MiB per
    // sequence.
    coap.max_body_size = coap.max_body_size.min(BOOTSTRAP_MAX_BODY);
    let core_config = BootstrapConfig {
        coap,
        max_sequences: bs.max_sequences,
        sequence_timeout: Duration::from_secs(bs.sequence_timeout_secs),
        // As many as the DTLS engine holds sessions: a DTLS peer the core forgot would look
        // like a NoSec one to it.
        max_peers: config.dtls.max_sessions,
        ..BootstrapConfig::default()
    };
    let core = BootstrapRole::new(core_config, Box::new(accounts));
    let stack = Stack::new(
        core,
        secure.map(|(_, s)| s),
        metrics.clone(),
        None,
        clock_base.0,
    );
    Ok((Some(stack), (plain, secure_addrs)))
}

/// The bundled object definitions and those in `objects_dir`.
fn load_schema(config: &Config) -> anyhow::Result<Registry> {
    let mut schema = Registry::bundled();
    if !config.server.objects_dir.as_os_str().is_empty() {
        let report = schema
            .load_dir(&config.server.objects_dir)
            .with_context(|| {
                format!(
                    "loading objects from {}",
                    config.server.objects_dir.display()
                )
            })?;
        for f in &report.failures {
            tracing::warn!(error = %f, "object definition not loaded");
        }
        tracing::info!(loaded = report.loaded.len(), "object definitions loaded");
    }
    Ok(schema)
}

/// Serves the admin socket; its requests come out of the receiver, which the server task
/// reads directly. The task is stopped (and the socket file removed) when the server stops.
fn spawn_admin(config: &Config) -> anyhow::Result<(JoinHandle<()>, mpsc::Receiver<AdminRequest>)> {
    let path = config.admin_socket_path();
    let listener =
        admin::bind(&path).with_context(|| format!("admin socket {}", path.display()))?;
    let (tx, rx) = mpsc::channel::<AdminRequest>(16);
    let serve = tokio::spawn(async move {
        if let Err(e) = listener.run(tx).await {
            tracing::warn!(error = %e, "admin socket stopped");
        }
    });
    Ok((serve, rx))
}

/// Shares the devices' state with the cluster (`[cluster] store`): of the devices restored
/// here, the ones another node took over while this one was down are forgotten, the ones no
/// node knows are claimed and their records written to the shared store, and the task that
/// mirrors the core's writes from now on is started.
async fn share_devices(
    config: &Config,
    store: &Store,
    core: &mut ServerCore<Link>,
    mut dtls: Option<&mut dtls::Server>,
    metrics: &Arc<Metrics>,
    now: std::time::Instant,
) -> anyhow::Result<(
    crate::runtime::ownership::Ownership,
    mpsc::Receiver<crate::runtime::ownership::Owned>,
)> {
    use crate::runtime::ownership;
    let url = &config.cluster.store;
    let node = config.cluster.node_id;
    let shown = crate::config::redact_url(url);
    let client = redis::Client::open(url.as_str())
        .with_context(|| format!("the cluster's shared store {shown}"))?;
    // Subscribed before the check: a device taken from this node after the check is heard of.
    let pubsub = ownership::subscribe(&client, node)
        .await
        .with_context(|| format!("subscribing to the cluster's shared store {shown}"))?;
    let conn_config = redis::aio::ConnectionManagerConfig::new()
        .set_response_timeout(Some(std::time::Duration::from_secs(10)));
    let mut conn = redis::aio::ConnectionManager::new_with_config(client.clone(), conn_config)
        .await
        .with_context(|| format!("connecting to the cluster's shared store {shown}"))?;
    core.share_registrations();
    let held: Vec<String> = core.registrations().map(|r| r.endpoint.clone()).collect();
    let (mut owned, unshared) = ownership::owned_at_start(&mut conn, node, &held)
        .await
        .with_context(|| format!("checking this node's devices in {shown}"))?;
    let claimed = ownership::claim_unshared(&mut conn, node, &unshared)
        .await
        .with_context(|| format!("sharing this node's devices in {shown}"))?;
    let mut gone = 0;
    for endpoint in &held {
        if !owned.contains_key(endpoint) && !claimed.contains_key(endpoint) {
            core.hand_over(now, endpoint);
            // Its restored session is older than the one it has with its new node.
            if let Some(d) = dtls.as_deref_mut() {
                d.close_principal(endpoint);
            }
            gone += 1;
        }
    }
    let mut seed = Vec::new();
    for endpoint in claimed.keys() {
        if let Some(r) = store.get(Table::Registrations, endpoint.as_bytes())? {
            seed.push(StoreOp::Put(
                Table::Registrations,
                endpoint.as_bytes().to_vec(),
                r,
            ));
        }
        for table in [Table::Observations, Table::Queue] {
            for (k, v) in store.scan(table, &crate::core::persist::device_prefix(endpoint))? {
                seed.push(StoreOp::Put(table, k, v));
            }
        }
    }
    tracing::info!(
        node,
        owned = owned.len(),
        taken_by_others = gone,
        shared_now = claimed.len(),
        "devices' state shared through {shown}"
    );
    owned.extend(claimed);
    let (mut own, rx) = ownership::start(conn, client, pubsub, node, owned, metrics.clone());
    for op in &seed {
        own.write(op);
    }
    Ok((own, rx))
}
