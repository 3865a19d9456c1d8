//! The MQTT bridge: every device event becomes an
//! MQTT message on `{prefix}/{endpoint}/up/...`, every command on `{prefix}/+/dn/#` an LwM2M
//! operation through the one command path, in the JSON of the EMQX LwM2M gateway, plus
//! device shadows. Nothing is lost while the broker is away: messages wait in a durable
//! outbox in the store until the broker acknowledges them.
//!
//! - [`envelope`]: the EMQX JSON envelope, both ways.
//! - [`outbox`]: the durable outbox and the bridge's counters.
//! - [`sink`]: the part on the server task: events in, outbox and commands out.
//! - [`shadow`]: desired and reported state, and the delta between them.
//! - [`link`]: the MQTT connection (rumqttc, MQTT 5 or 3.1.1).
//! - [`connect`]: MQTT client options from the checked `[mqtt]` settings (TLS, credentials,
//!   session).
//! - [`broker`]: the embedded broker (rmqtt) of the default configuration.
//! - [`passwords`]: the embedded broker's password file (mosquitto's format).
//! - [`window`]: the publishes in flight, matched to their acknowledgements.
pub mod broker;
pub mod connect;
pub mod envelope;
pub mod link;
pub mod outbox;
pub mod passwords;
pub mod shadow;
pub mod sink;
pub mod window;

use crate::config::{Config, MqttVersion};
use crate::store::Store;
use anyhow::Context;
use lwm2m::model::Registry;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The bridge's tasks and embedded broker, stopped with the server.
pub struct Running {
    link: JoinHandle<()>,
    broker: Option<broker::EmbeddedBroker>,
    stats: Arc<outbox::Shared>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running").finish_non_exhaustive()
    }
}

impl Running {
    /// The bridge's counters.
    pub fn shared(&self) -> Arc<outbox::Shared> {
        self.stats.clone()
    }

    /// Stops the link (messages not yet acknowledged stay in the outbox for the next run).
    pub async fn stop(self) {
        self.link.abort();
        let _ = self.link.await;
        drop(self.broker);
    }
}

/// Opens the bridge's stored state (outbox, requests awaiting results, observations' `reqID`s,
/// shadows) if `[mqtt] enabled`, checking every record (see [`sink::Bridge::open`]).
pub(crate) fn open_state(
    config: &Config,
    store: &Store,
    schema: Arc<Registry>,
) -> anyhow::Result<Option<sink::Bridge>> {
    let m = &config.mqtt;
    if !m.enabled {
        return Ok(None);
    }
    let max_outbox = u64::try_from(m.max_outbox).unwrap_or(u64::MAX);
    let bridge = sink::Bridge::open(store.clone(), m.topic_prefix.clone(), max_outbox, schema)
        .context("opening the MQTT outbox")?
        .with_limits(envelope::CommandLimits {
            max_bytes: m.max_command_bytes,
            ..envelope::CommandLimits::default()
        });
    Ok(Some(bridge))
}

/// The embedded broker's settings from `[mqtt]`: the password file and TLS files read now,
/// so that a missing or bad one stops the start with its name.
fn broker_settings(
    e: &crate::config::EmbeddedBroker,
    bridge_login: Option<broker::BridgeLogin>,
) -> anyhow::Result<broker::BrokerSettings> {
    let passwords = match &e.password_file {
        Some(path) => Some(Arc::new(passwords::PasswordFile::load(path).with_context(
            || format!("mqtt.embedded_password_file {}", path.display()),
        )?)),
        None => None,
    };
    let tls = match &e.tls {
        Some(t) => {
            let chain = crate::pem::read_certs(&t.cert)
                .with_context(|| format!("mqtt.embedded_tls_cert {}", t.cert.display()))?;
            let key = crate::pem::read_key(&t.key)
                .with_context(|| format!("mqtt.embedded_tls_key {}", t.key.display()))?;
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()?
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .context("mqtt.embedded_tls_cert and embedded_tls_key")?;
            Some(broker::TlsListener {
                bind: t.bind,
                config: Arc::new(config),
            })
        }
        None => None,
    };
    Ok(broker::BrokerSettings {
        bind: e.addr,
        passwords,
        tls,
        max_queued: e.max_queued,
        bridge: bridge_login,
    })
}

/// The bridge as [`start`] hands it to the server task.
pub(crate) struct Started {
    /// The bridge state, for the server task.
    pub(crate) bridge: sink::Bridge,
    /// The link's task and the embedded broker.
    pub(crate) running: Running,
    /// Downlink messages from the broker, for the server task to take in directly; the link
    /// stops when this is dropped.
    pub(crate) downlink: mpsc::Receiver<link::Downlink>,
}

/// Starts the bridge whose state [`open_state`] opened: the embedded broker if configured,
/// and the MQTT link. `None` if there is none.
pub(crate) fn start(
    config: &Config,
    store: &Store,
    bridge: Option<sink::Bridge>,
) -> anyhow::Result<Option<Started>> {
    let m = &config.mqtt;
    let Some(bridge) = bridge.filter(|_| m.enabled) else {
        return Ok(None);
    };
    // The bridge logs in to its own broker with a secret made up now: only that login may
    // take the bridge's client id (and the commands queued in its session).
    let bridge_login = m.embedded().map(|_| {
        let secret: [u8; 32] = rand::random();
        broker::BridgeLogin {
            client_id: m.client_id.clone(),
            username: format!("{}-bridge", m.client_id),
            secret: secret.iter().map(|b| format!("{b:02x}")).collect(),
        }
    });
    let broker = match m.embedded() {
        Some(e) => {
            let settings = broker_settings(e, bridge_login.clone())?;
            let b = broker::EmbeddedBroker::start(settings)
                .with_context(|| format!("embedded MQTT broker on {}", e.addr))?;
            tracing::info!(addr = %e.addr, tls = ?b.tls_addr(), passwords = e.password_file.is_some(), "embedded MQTT broker listening (MQTT 3.1.1 and 5)");
            Some(b)
        }
        None => None,
    };
    let options = if m.version == MqttVersion::V5 {
        let mut o = connect::options_v5(m)?;
        if let Some(b) = &bridge_login {
            o.set_credentials(b.username.clone(), b.secret.clone());
        }
        link::Options::V5(Box::new(o))
    } else {
        let mut o = connect::options_v311(m)?;
        if let Some(b) = &bridge_login {
            o.set_credentials(b.username.clone(), b.secret.clone());
        }
        link::Options::V311(Box::new(o))
    };
    let link_config = link::LinkConfig {
        prefix: m.topic_prefix.clone(),
        qos: m.qos,
        window: usize::from(connect::INFLIGHT),
        reconnect_min: m.reconnect_min,
        reconnect_max: m.reconnect_max,
        // Nodes sharing a store take commands from one broker, each command once; a node's own
        // embedded broker has only that node's subscription.
        share_group: (config.cluster.enabled
            && !config.cluster.store.is_empty()
            && m.embedded().is_none())
        .then(|| "lwm2m".to_string()),
    };
    let shared = bridge.shared();
    let (tx, downlink) = mpsc::channel::<link::Downlink>(1024);
    let handoff = broker.as_ref().map(|b| b.handoff(&m.client_id));
    let link = tokio::spawn(link::run(
        options,
        link_config,
        store.clone(),
        shared.clone(),
        tx,
        handoff,
    ));
    tracing::info!(broker = %m.broker, version = m.version.number(), prefix = %m.topic_prefix, "MQTT bridge started");
    Ok(Some(Started {
        bridge,
        running: Running {
            link,
            broker,
            stats: shared,
        },
        downlink,
    }))
}
