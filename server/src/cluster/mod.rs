//! One node among several behind an address-sticky UDP balancer: datagrams find the node
//! that holds their DTLS session.
//!
//! A device's handshake stays on the node the balancer picked for its address; every
//! Connection ID (RFC 9146) that node issues starts with its `node_id`. When the device's
//! address changes (a NAT rebinding), the balancer may pick another node for it: that node
//! reads the node byte of the first `tls12_cid` record (nothing decrypted) and passes the
//! datagram to the named node's internal port in an authenticated envelope ([`relay`]), with
//! the device's address as it saw it. (Only the first record of a datagram is looked at: a
//! device's datagram holds records of one session.) The session's node answers through the same node
//! ([`routes`]), which sends the answer from its public socket, so the device, its NAT and
//! the balancer see the answer come from where the device sent (RFC 9146 §6 leaves the
//! choice of the return address to the server; the balancer's UDP sessions need this one).
//!
//! Everything here is sans-IO: the runtime hands in datagrams and takes out what to send,
//! to a device (the public DTLS sockets) or to another node (the internal socket).
pub mod admin_log;
pub mod devices;
pub mod relay;
pub mod routes;

use crate::config::ClusterSection;
use crate::metrics::{ClusterCount, Metrics};
use lwm2m::coap::Transmit;
use relay::{Key, Kind};
use routes::Routes;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use zeroize::Zeroizing;

/// Datagrams waiting to leave. The runtime sends them after every input, so the queue holds
/// one receive batch's at most; beyond this bound new ones are dropped.
const MAX_PENDING: usize = 4096;

/// Where a datagram leaves from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Socket {
    /// A public DTLS socket, to a device.
    Public,
    /// The internal socket, to another node.
    Internal,
}

/// Why the cluster secret could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The file could not be read.
    #[error("reading the cluster secret {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Fewer bytes than [`relay::MIN_SECRET_LEN`].
    #[error("the cluster secret in {path} has {len} bytes; at least {min} are needed (e.g. `openssl rand -hex 32`)")]
    TooShort {
        /// The file.
        path: String,
        /// Its length, surrounding whitespace left out.
        len: usize,
        /// The minimum.
        min: usize,
    },
}

/// Reads the cluster secret: the file's bytes without surrounding whitespace (so that a hex
/// string written by `openssl rand -hex 32 > file` works as it is).
pub fn read_secret(path: &Path) -> Result<Zeroizing<Vec<u8>>, SecretError> {
    let name = || path.display().to_string();
    let raw = Zeroizing::new(std::fs::read(path).map_err(|source| SecretError::Read {
        path: name(),
        source,
    })?);
    let secret = Zeroizing::new(raw.trim_ascii().to_vec());
    if secret.len() < relay::MIN_SECRET_LEN {
        return Err(SecretError::TooShort {
            path: name(),
            len: secret.len(),
            min: relay::MIN_SECRET_LEN,
        });
    }
    Ok(secret)
}

/// A device's datagram another node passed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forwarded<'a> {
    /// The device's address, as that node saw it.
    pub peer: SocketAddr,
    /// That node.
    pub node: u8,
    /// The datagram.
    pub payload: &'a [u8],
}

/// This node's part of the cluster.
#[derive(Debug)]
pub struct Cluster {
    node_id: u8,
    cid_len: usize,
    key: Key,
    /// The other nodes' internal addresses.
    peers: HashMap<u8, SocketAddr>,
    routes: Routes,
    pending: VecDeque<(Socket, Transmit<SocketAddr>)>,
    metrics: Arc<Metrics>,
}

impl Cluster {
    /// The node of `config`, whose DTLS server issues `cid_len`-byte Connection IDs, keeping
    /// at most `max_routes` devices answered through other nodes.
    pub fn new(
        config: &ClusterSection,
        cid_len: usize,
        secret: &[u8],
        max_routes: usize,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            node_id: config.node_id,
            cid_len,
            key: Key::new(secret),
            peers: config
                .peers
                .iter()
                .map(|p| (p.node_id, p.internal))
                .collect(),
            routes: Routes::new(max_routes),
            pending: VecDeque::new(),
            metrics,
        }
    }

    /// A datagram from a device on a public DTLS socket: `true` if it was for another node's
    /// session and goes there (see [`poll_transmit`](Self::poll_transmit)); `false` if this
    /// node takes it.
    pub fn on_public(&mut self, peer: SocketAddr, data: &[u8]) -> bool {
        let node = dtls::server::cid_node(data, self.cid_len);
        let Some(to) = node
            .filter(|n| *n != self.node_id)
            .and_then(|n| self.peers.get(&n).map(|a| (n, *a)))
        else {
            if dtls::server::starts_handshake(data) {
                // A handshake reaches this node directly: its flights must leave from here,
                // whatever the address was used for before. (Unauthenticated, as every
                // ClientHello; only the sender of the address gets its answers here, which
                // is where it sent from.)
                self.routes.remove(&peer);
            }
            return false;
        };
        let payload = relay::seal(&self.key, Kind::Inbound, self.node_id, to.0, peer, data);
        if self.push(
            Socket::Internal,
            Transmit {
                peer: to.1,
                payload,
            },
        ) {
            self.metrics.cluster_datagram(ClusterCount::Forwarded);
        }
        true
    }

    /// A datagram on the internal socket: the device's datagram, its address and the node it
    /// reached, if it is for a session here; `None` if it was an answer to send (queued) or
    /// was refused.
    pub fn on_internal<'a>(&mut self, from: SocketAddr, data: &'a [u8]) -> Option<Forwarded<'a>> {
        let envelope = match relay::open(&self.key, data) {
            Ok(e) => e,
            Err(e) => {
                self.metrics.cluster_datagram(ClusterCount::Rejected);
                tracing::debug!(%from, error = %e, "cluster datagram refused");
                return None;
            }
        };
        if envelope.to != self.node_id || !self.peers.contains_key(&envelope.from) {
            self.metrics.cluster_datagram(ClusterCount::Rejected);
            // Debug, not warn: a replayed envelope would otherwise write a line per datagram.
            tracing::debug!(%from, node = envelope.from, to = envelope.to, "cluster datagram refused: not for this node, or from a node not in cluster.peers");
            return None;
        }
        match envelope.kind {
            Kind::Inbound => {
                self.metrics.cluster_datagram(ClusterCount::Taken);
                Some(Forwarded {
                    peer: envelope.peer,
                    node: envelope.from,
                    payload: envelope.payload,
                })
            }
            Kind::Outbound => {
                let t = Transmit {
                    peer: envelope.peer,
                    payload: envelope.payload.to_vec(),
                };
                if self.push(Socket::Public, t) {
                    self.metrics.cluster_datagram(ClusterCount::SentFor);
                }
                None
            }
        }
    }

    /// A DTLS record from `peer` was authenticated by a session here: it came through `node`
    /// (a datagram [`on_internal`](Self::on_internal) gave), or directly (`None`). Only
    /// authenticated records move a device's route, so that forged or replayed datagrams
    /// cannot send another device's answers astray or push real routes out.
    pub fn authenticated(&mut self, peer: SocketAddr, node: Option<u8>) {
        match node {
            Some(n) => self.routes.insert(peer, n),
            None => self.routes.remove(&peer),
        }
    }

    /// A datagram this node's DTLS server sends to a device: through the node the device's
    /// datagrams arrive at, if not here.
    pub fn route(&mut self, t: Transmit<SocketAddr>) -> (Socket, Transmit<SocketAddr>) {
        let Some(to) = self
            .routes
            .get(&t.peer)
            .and_then(|n| self.peers.get(&n).map(|a| (n, *a)))
        else {
            return (Socket::Public, t);
        };
        self.metrics.cluster_datagram(ClusterCount::AnsweredThrough);
        let payload = relay::seal(
            &self.key,
            Kind::Outbound,
            self.node_id,
            to.0,
            t.peer,
            &t.payload,
        );
        (
            Socket::Internal,
            Transmit {
                peer: to.1,
                payload,
            },
        )
    }

    /// The next datagram this part produced, and where it leaves from.
    pub fn poll_transmit(&mut self) -> Option<(Socket, Transmit<SocketAddr>)> {
        self.pending.pop_front()
    }

    /// Queues `t`; `false` if the queue is full and `t` is dropped (like a datagram lost on
    /// the way: devices retransmit).
    fn push(&mut self, socket: Socket, t: Transmit<SocketAddr>) -> bool {
        if self.pending.len() >= MAX_PENDING {
            return false;
        }
        self.pending.push_back((socket, t));
        true
    }
}

#[cfg(test)]
mod tests;
