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
//! - [`broker`]: the embedded broker (rumqttd) of the default configuration.
//! - [`passwords`]: the embedded broker's password file, in mosquitto's format.
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
    let broker = if let Some(addr) = m.embedded_broker_addr() {
        let (v4, v5) = if m.version == MqttVersion::V5 {
            (None, Some(addr))
        } else {
            (Some(addr), None)
        };
        let b = broker::EmbeddedBroker::start(v4, v5)
            .with_context(|| format!("embedded MQTT broker on {addr}"))?;
        tracing::info!(%addr, version = m.version.number(), "embedded MQTT broker listening");
        Some(b)
    } else {
        None
    };
    let options = if m.version == MqttVersion::V5 {
        link::Options::V5(Box::new(connect::options_v5(m)?))
    } else {
        link::Options::V311(Box::new(connect::options_v311(m)?))
    };
    let link_config = link::LinkConfig {
        prefix: m.topic_prefix.clone(),
        qos: m.qos,
        window: usize::from(connect::INFLIGHT),
        reconnect_min: m.reconnect_min,
        reconnect_max: m.reconnect_max,
    };
    let shared = bridge.shared();
    let (tx, downlink) = mpsc::channel::<link::Downlink>(1024);
    let link = tokio::spawn(link::run(
        options,
        link_config,
        store.clone(),
        shared.clone(),
        tx,
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
