//! The bridge's MQTT connection (MQTT 5 or 3.1.1, through rumqttc): publishes the outbox in
//! order, removes each message when the broker acknowledges it, and hands downlink messages
//! (`{prefix}/+/dn/#`, `{prefix}/+/shadow/desired`) to the server task.
//!
//! Ordering and acknowledgement: each PUBACK is matched to its publish by packet id, and a
//! message leaves the outbox once it and every older one are acknowledged ([`Window`]).
//! When the broker comes back with our session, rumqttc resends what was in flight itself,
//! put back in publish order first; when it comes back without it (a broker restarted without
//! persistence), rumqttc has dropped them, so the link rewinds to the oldest unacknowledged
//! message and publishes everything again from there. A consumer may then see a message
//! twice, with the same `msgId`; it never misses one, and never sees a device's messages out
//! of order.
//!
//! With the embedded broker, uplink messages skip the connection: each is handed to the
//! broker in process ([`Handoff`]), in outbox order, and leaves the outbox once routed. The
//! MQTT connection then only carries the downlink subscription.
use super::broker::Handoff;
use super::connect;
use super::outbox::{self, Shared};
use super::window::Window;
use crate::config::MqttQos;
use crate::store::{Store, Table};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Messages read from the outbox per batch.
const BATCH: usize = 256;
/// Acknowledged messages deleted from the outbox in one store operation at most.
const DELETE_BATCH: u64 = 256;
/// Messages handed to the embedded broker before the link looks at its connection again: a
/// backlog of hundreds of thousands must not keep the downlink (and its keep-alive) waiting.
const HANDOFF_TURN: usize = 4096;

/// A downlink message, for the server task.
#[derive(Debug, Clone, PartialEq)]
pub struct Downlink {
    /// The endpoint from the topic.
    pub endpoint: String,
    /// A command (`dn/...`) or the shadow's desired state.
    pub kind: DownlinkKind,
    /// The payload.
    pub payload: Vec<u8>,
    /// MQTT 5 Message Expiry Interval: how long the command may wait for a sleeping device.
    pub expiry: Option<Duration>,
}

/// Which kind of downlink message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownlinkKind {
    /// An EMQX command envelope.
    Command,
    /// A shadow's desired state.
    Desired,
}

/// Where a downlink message goes, from its topic: `{prefix}/{ep}/dn/...` or
/// `{prefix}/{ep}/shadow/desired`.
pub fn route(prefix: &str, topic: &str) -> Option<(String, DownlinkKind)> {
    let rest = topic.strip_prefix(prefix)?.strip_prefix('/')?;
    let (endpoint, what) = rest.split_once('/')?;
    if endpoint.is_empty() {
        return None;
    }
    let kind = if what == "dn" || what.starts_with("dn/") {
        DownlinkKind::Command
    } else if what == "shadow/desired" {
        DownlinkKind::Desired
    } else {
        return None;
    };
    Some((endpoint.to_string(), kind))
}

/// Settings of the link.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// Topic prefix (`lwm2m`).
    pub prefix: String,
    /// QoS of uplink messages.
    pub qos: MqttQos,
    /// Messages in flight at most.
    pub window: usize,
    /// Pause after the first failed connection; doubled after each further failure.
    pub reconnect_min: Duration,
    /// The pause stops doubling here.
    pub reconnect_max: Duration,
    /// With several nodes on one broker: the MQTT shared subscription group (`$share/{group}/`,
    /// MQTT 5 §4.8.2, also in mosquitto's 3.1.1) the downlink topics are taken through, so each
    /// command reaches one node of the cluster, not all.
    pub share_group: Option<String>,
}

/// The two protocol versions behind one face.
enum Client {
    V5(rumqttc::v5::AsyncClient, Box<rumqttc::v5::EventLoop>),
    V311(rumqttc::AsyncClient, Box<rumqttc::EventLoop>),
}

/// What the event loop reported, in either version.
enum Ev {
    Connected {
        session_present: bool,
    },
    /// The broker acknowledged the publish with this packet id (PUBACK, or PUBCOMP for QoS 2).
    Acked(u16),
    /// The broker refused the publish with this packet id (an MQTT 5 PUBACK or PUBREC with an
    /// error reason: not authorized, quota exceeded...): it will not take it however often it
    /// is sent, so it leaves the outbox as lost.
    Refused(u16, String),
    /// A QoS 1 or 2 publish left with this packet id (first sent or resent).
    Sent(u16),
    /// A QoS 0 publish left.
    SentQos0,
    Message(String, Vec<u8>, Option<Duration>),
    Other,
    Down(String),
}

impl Client {
    async fn poll(&mut self, qos: MqttQos, window: &Window) -> Ev {
        match self {
            Client::V5(_, el) => {
                use rumqttc::v5::mqttbytes::v5::Packet;
                use rumqttc::v5::Event;
                match el.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(c))) => Ev::Connected {
                        session_present: c.session_present,
                    },
                    Ok(Event::Incoming(Packet::PubAck(a))) if qos == MqttQos::AtLeastOnce => {
                        use rumqttc::v5::mqttbytes::v5::PubAckReason as R;
                        match a.reason {
                            R::Success | R::NoMatchingSubscribers => Ev::Acked(a.pkid),
                            r => Ev::Refused(a.pkid, format!("{r:?}")),
                        }
                    }
                    Ok(Event::Incoming(Packet::PubRec(r))) if qos == MqttQos::ExactlyOnce => {
                        use rumqttc::v5::mqttbytes::v5::PubRecReason as R;
                        match r.reason {
                            // PUBREL, then PUBCOMP, follow.
                            R::Success | R::NoMatchingSubscribers => Ev::Other,
                            reason => Ev::Refused(r.pkid, format!("{reason:?}")),
                        }
                    }
                    Ok(Event::Incoming(Packet::PubComp(c))) if qos == MqttQos::ExactlyOnce => {
                        Ev::Acked(c.pkid)
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => Ev::Message(
                        String::from_utf8_lossy(&p.topic).into_owned(),
                        p.payload.to_vec(),
                        p.properties
                            .and_then(|pr| pr.message_expiry_interval)
                            .map(|s| Duration::from_secs(u64::from(s))),
                    ),
                    Ok(Event::Outgoing(rumqttc::Outgoing::Publish(0)))
                        if qos == MqttQos::AtMostOnce =>
                    {
                        Ev::SentQos0
                    }
                    Ok(Event::Outgoing(rumqttc::Outgoing::Publish(pkid))) => Ev::Sent(pkid),
                    Ok(_) => Ev::Other,
                    Err(e) => {
                        // rumqttc gathered what was in flight by packet id: back to age order.
                        window.order_resends(&mut el.pending, |r| match r {
                            rumqttc::v5::Request::Publish(p) => Some(p.pkid),
                            _ => None,
                        });
                        Ev::Down(e.to_string())
                    }
                }
            }
            Client::V311(_, el) => {
                use rumqttc::{Event, Packet};
                match el.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(c))) => Ev::Connected {
                        session_present: c.session_present,
                    },
                    Ok(Event::Incoming(Packet::PubAck(a))) if qos == MqttQos::AtLeastOnce => {
                        Ev::Acked(a.pkid)
                    }
                    Ok(Event::Incoming(Packet::PubComp(c))) if qos == MqttQos::ExactlyOnce => {
                        Ev::Acked(c.pkid)
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        Ev::Message(p.topic, p.payload.to_vec(), None)
                    }
                    Ok(Event::Outgoing(rumqttc::Outgoing::Publish(0)))
                        if qos == MqttQos::AtMostOnce =>
                    {
                        Ev::SentQos0
                    }
                    Ok(Event::Outgoing(rumqttc::Outgoing::Publish(pkid))) => Ev::Sent(pkid),
                    Ok(_) => Ev::Other,
                    Err(e) => {
                        window.order_resends(&mut el.pending, |r| match r {
                            rumqttc::Request::Publish(p) => Some(p.pkid),
                            _ => None,
                        });
                        Ev::Down(e.to_string())
                    }
                }
            }
        }
    }

    /// Hands one publish to the client without waiting; false if its queue is full.
    fn try_publish(&self, topic: String, qos: MqttQos, payload: Vec<u8>) -> bool {
        match self {
            Client::V5(c, _) => c
                .try_publish(topic, connect::qos_v5(qos), false, payload)
                .is_ok(),
            Client::V311(c, _) => c
                .try_publish(topic, connect::qos_v311(qos), false, payload)
                .is_ok(),
        }
    }

    fn try_subscribe(&self, topic: String) -> bool {
        match self {
            Client::V5(c, _) => c
                .try_subscribe(topic, rumqttc::v5::mqttbytes::QoS::AtLeastOnce)
                .is_ok(),
            Client::V311(c, _) => c.try_subscribe(topic, rumqttc::QoS::AtLeastOnce).is_ok(),
        }
    }
}

/// The MQTT client to run, by version.
pub enum Options {
    /// MQTT 5.
    V5(Box<rumqttc::v5::MqttOptions>),
    /// MQTT 3.1.1.
    V311(Box<rumqttc::MqttOptions>),
}

/// Runs the link until `downlink` closes (the server stopped). With `handoff`, uplink
/// messages go to the embedded broker in process and the connection carries only the
/// downlink.
pub async fn run(
    options: Options,
    config: LinkConfig,
    store: Store,
    shared: Arc<Shared>,
    downlink: mpsc::Sender<Downlink>,
    handoff: Option<Handoff>,
) {
    let cap = config.window.max(16) * 2;
    let mut client = match options {
        Options::V5(o) => {
            let (c, el) = rumqttc::v5::AsyncClient::new(*o, cap);
            Client::V5(c, Box::new(el))
        }
        Options::V311(o) => {
            let (c, mut el) = rumqttc::AsyncClient::new(*o, cap);
            // MQTT 3.1.1 keeps its TCP settings on the event loop (v5 has them in options).
            el.set_network_options(super::connect::network_options());
            Client::V311(c, Box::new(el))
        }
    };
    let stats = &shared.stats;
    // Messages handed to the client and not yet retired, oldest first.
    let mut in_flight = Window::default();
    // The next sequence number to read from the outbox.
    let mut cursor = 1u64;
    let mut connected = false;
    // When a connected link lost the broker: the reconnect's duration runs from here.
    let mut lost_at: Option<Instant> = None;
    let mut backoff = config.reconnect_min;
    // The first acknowledged message not yet deleted from the outbox.
    let mut acked_from: Option<u64> = None;
    // The hand-off stopped at its turn's end with more committed.
    let mut more = false;
    let mut broker_down = false;
    // The connection was lost: it is tried again from then.
    let mut paused_until: Option<tokio::time::Instant> = None;
    loop {
        if let Some(h) = &handoff {
            more = hand_off(h, &config, &store, &shared, &mut cursor, &mut broker_down).await;
        }
        // Publish what is committed and fits the window.
        while handoff.is_none() && connected && in_flight.len() < config.window {
            let room = (config.window - in_flight.len()).min(BATCH);
            let batch = match outbox::read(&store, cursor, room) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(error = %e, "reading the MQTT outbox failed");
                    break;
                }
            };
            if batch.is_empty() {
                break;
            }
            let mut stalled = false;
            for (seq, msg) in batch {
                if !client.try_publish(msg.topic, config.qos, msg.payload) {
                    stalled = true;
                    break;
                }
                stats.published.fetch_add(1, Relaxed);
                in_flight.push(seq);
                cursor = seq + 1;
            }
            if stalled {
                break;
            }
        }
        tokio::select! {
            ev = client.poll(config.qos, &in_flight), if paused_until.is_none() => match ev {
                Ev::Connected { session_present } => {
                    connected = true;
                    backoff = config.reconnect_min;
                    stats.connects.fetch_add(1, Relaxed);
                    if let Some(at) = lost_at.take() {
                        shared.reconnected(at.elapsed());
                    }
                    tracing::info!(session_present, "MQTT bridge connected");
                    if !session_present {
                        // The broker kept nothing of ours: everything unacknowledged again.
                        if let Some(oldest) = in_flight.rewind() {
                            cursor = oldest;
                        }
                    }
                    let share = config
                        .share_group
                        .as_ref()
                        .map(|g| format!("$share/{g}/"))
                        .unwrap_or_default();
                    for t in ["+/dn/#", "+/shadow/desired"] {
                        client.try_subscribe(format!("{share}{}/{t}", config.prefix));
                    }
                }
                Ev::Sent(pkid) => in_flight.sent(pkid),
                Ev::Acked(pkid) => {
                    if in_flight.acked(pkid) {
                        retire(&mut in_flight, &mut acked_from, &store, &shared);
                    }
                }
                Ev::Refused(pkid, reason) => {
                    if in_flight.acked(pkid) {
                        let refused = stats.dropped.fetch_add(1, Relaxed);
                        // The first, then one in a thousand: a broker's ACL refuses in streams.
                        if refused.is_multiple_of(1000) {
                            tracing::warn!(%reason, refused = refused + 1, "the MQTT broker refused a message; it is lost (check the broker's ACL and quotas for this client)");
                        }
                        retire(&mut in_flight, &mut acked_from, &store, &shared);
                    }
                }
                Ev::SentQos0 => {
                    in_flight.sent_unacknowledged();
                    retire(&mut in_flight, &mut acked_from, &store, &shared);
                }
                Ev::Message(topic, payload, expiry) => {
                    if let Some((endpoint, kind)) = route(&config.prefix, &topic) {
                        stats.downlink.fetch_add(1, Relaxed);
                        let d = Downlink { endpoint, kind, payload, expiry };
                        if downlink.send(d).await.is_err() {
                            return;
                        }
                    }
                }
                Ev::Other => {}
                Ev::Down(e) => {
                    if connected {
                        lost_at = Some(Instant::now());
                        tracing::warn!(error = %e, "MQTT bridge disconnected; messages wait in the outbox");
                    } else {
                        tracing::debug!(error = %e, "MQTT broker not reachable");
                    }
                    connected = false;
                    // The pause is a branch of this loop, not a sleep here: messages handed
                    // to the embedded broker keep going while the connection waits.
                    paused_until = Some(tokio::time::Instant::now() + backoff);
                    backoff = (backoff * 2).min(config.reconnect_max);
                }
            },
            () = sleep_until(paused_until), if paused_until.is_some() => paused_until = None,
            () = shared.committed.notified(), if connected || handoff.is_some() => {}
            () = std::future::ready(()), if more => {}
            () = downlink.closed() => return,
        }
    }
}

/// Hands what is committed in the outbox from `cursor` on to the embedded broker, in order,
/// and deletes it from the outbox: at most [`HANDOFF_TURN`] messages. True if more wait.
/// While the broker is stopped, nothing leaves the outbox.
async fn hand_off(
    handoff: &Handoff,
    config: &LinkConfig,
    store: &Store,
    shared: &Shared,
    cursor: &mut u64,
    broker_down: &mut bool,
) -> bool {
    let stats = &shared.stats;
    let mut done = 0;
    while done < HANDOFF_TURN {
        let batch = match outbox::read(store, *cursor, BATCH) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "reading the MQTT outbox failed");
                return false;
            }
        };
        let (Some(&(first, _)), Some(&(last, _))) = (batch.first(), batch.last()) else {
            return false;
        };
        let n = batch.len();
        let seqs: Vec<u64> = batch.iter().map(|(seq, _)| *seq).collect();
        let messages = batch
            .into_iter()
            .map(|(_, m)| (m.topic, m.payload))
            .collect();
        if !handoff.publish_all(messages, config.qos).await {
            if !std::mem::replace(broker_down, true) {
                tracing::error!(
                    "the embedded MQTT broker has stopped; messages wait in the outbox"
                );
            }
            return false;
        }
        *broker_down = false;
        shared.acknowledged_all(&seqs, Instant::now());
        stats.published.fetch_add(n as u64, Relaxed);
        stats.acked.fetch_add(n as u64, Relaxed);
        stats.outbox_len.fetch_sub(n as u64, Relaxed);
        *cursor = last + 1;
        // A crash before this delete hands the batch over again, with its msgIds.
        let _ = store.delete_range(
            Table::Outbox,
            outbox::key(first).to_vec(),
            outbox::key(last + 1).to_vec(),
        );
        done += n;
    }
    true
}

/// Removes from the outbox every message that it and all older ones are acknowledged.
/// They leave in ranges: one store operation per batch instead of one per message. A crash
/// before a range is deleted redelivers its messages, with their msgIds.
fn retire(in_flight: &mut Window, acked_from: &mut Option<u64>, store: &Store, shared: &Shared) {
    let stats = &shared.stats;
    let now = Instant::now();
    while let Some(seq) = in_flight.retire() {
        shared.acknowledged(seq, now);
        stats.acked.fetch_add(1, Relaxed);
        stats.outbox_len.fetch_sub(1, Relaxed);
        let from = *acked_from.get_or_insert(seq);
        if seq + 1 - from >= DELETE_BATCH || in_flight.is_empty() {
            let _ = store.delete_range(
                Table::Outbox,
                outbox::key(from).to_vec(),
                outbox::key(seq + 1).to_vec(),
            );
            *acked_from = None;
        }
    }
}

/// Sleeps until `at` (never, without one).
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_route_to_endpoint_and_kind() {
        assert_eq!(
            route("lwm2m", "lwm2m/dev-1/dn/cmd"),
            Some(("dev-1".into(), DownlinkKind::Command))
        );
        assert_eq!(
            route("lwm2m", "lwm2m/dev-1/dn"),
            Some(("dev-1".into(), DownlinkKind::Command))
        );
        assert_eq!(
            route("lwm2m", "lwm2m/dev-1/shadow/desired"),
            Some(("dev-1".into(), DownlinkKind::Desired))
        );
        assert_eq!(route("lwm2m", "lwm2m/dev-1/up/resp"), None);
        assert_eq!(route("lwm2m", "lwm2m//dn"), None);
        assert_eq!(route("lwm2m", "other/dev/dn"), None);
        assert_eq!(
            route("a/b", "a/b/ep/dn/x"),
            Some(("ep".into(), DownlinkKind::Command))
        );
    }
}
