//! `[cluster]`: this node's place among several behind one address. Each node numbers itself
//! (`node_id`, the first byte of every DTLS Connection ID it issues, RFC 9146), listens on an
//! internal UDP address for the records other nodes received for its sessions, and knows the
//! others' internal addresses. Datagrams between nodes are authenticated with a shared secret
//! read from a file, never written in the configuration itself.
use super::{ConfigError, DtlsSection, ServerSection};
use serde::Deserialize;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Connection IDs shorter than this leave too few random bytes beside the node's byte: with
/// 4 random bytes a node issuing a million CIDs would already see collisions it must redraw.
pub const MIN_CLUSTER_CID_LENGTH: u8 = 5;

/// `[cluster]`. Every node must have the same `[dtls] connection_id_length` and secret: a
/// node reads another's byte out of Connection IDs by that length.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSection {
    /// Run as one node of several.
    pub enabled: bool,
    /// This node's number, the first byte of the Connection IDs it issues.
    pub node_id: u8,
    /// The UDP address the other nodes forward records to.
    pub internal_bind: SocketAddr,
    /// The file holding the secret shared by every node (at least 32 bytes).
    pub secret_file: PathBuf,
    /// The other nodes.
    pub peers: Vec<ClusterPeer>,
    /// The shared store's URL (`redis://host:port/db`, `rediss://` for TLS); empty: none.
    pub store: String,
}

/// Another node of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterPeer {
    /// Its `[cluster] node_id`.
    pub node_id: u8,
    /// Its `[cluster] internal_bind`.
    pub internal: SocketAddr,
}

impl Default for ClusterSection {
    fn default() -> Self {
        Self {
            enabled: false,
            node_id: 0,
            internal_bind: SocketAddr::from(([127, 0, 0, 1], 5690)),
            secret_file: PathBuf::new(),
            peers: Vec::new(),
            store: String::new(),
        }
    }
}

/// `url` without its password (`redis://user:secret@host` -> `redis://user:***@host`), for
/// messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.to_string(),
    }
}

impl ClusterSection {
    pub(super) fn validate(
        &self,
        server: &ServerSection,
        dtls: &DtlsSection,
    ) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if !self.store.is_empty() {
            if !self.enabled {
                return bad("cluster.store is set but cluster.enabled is false".into());
            }
            if !(self.store.starts_with("redis://") || self.store.starts_with("rediss://")) {
                return bad(format!(
                    "cluster.store = {:?}: a Redis URL is expected (redis://host:port/db, or rediss:// for TLS)",
                    redact_url(&self.store)
                ));
            }
        }
        if !self.enabled {
            return Ok(());
        }
        if self.secret_file.as_os_str().is_empty() {
            return bad("cluster.secret_file is required when cluster.enabled is true: every node reads the same secret from it".into());
        }
        if server.coaps_bind.is_empty() {
            return bad("cluster.enabled needs server.coaps_bind: records are routed between nodes by their DTLS Connection ID".into());
        }
        if dtls.connection_id_length < MIN_CLUSTER_CID_LENGTH {
            return bad(format!(
                "dtls.connection_id_length = {} is too short for a cluster: at least {MIN_CLUSTER_CID_LENGTH} (the node's byte and 4 random ones)",
                dtls.connection_id_length
            ));
        }
        if self.internal_bind.port() == 0 {
            return bad(
                "cluster.internal_bind needs a fixed port: the other nodes' cluster.peers name it"
                    .into(),
            );
        }
        let mut ids = HashSet::from([self.node_id]);
        let mut addrs = HashSet::from([self.internal_bind]);
        for p in &self.peers {
            if !ids.insert(p.node_id) {
                return bad(format!(
                    "cluster.peers: node_id {} appears twice (or is this node's own)",
                    p.node_id
                ));
            }
            if p.internal.is_ipv4() != self.internal_bind.is_ipv4() {
                return bad(format!(
                    "cluster.peers: node {} has internal address {}, of another address family than cluster.internal_bind {}",
                    p.node_id, p.internal, self.internal_bind
                ));
            }
            if p.internal.port() == 0 || !addrs.insert(p.internal) {
                return bad(format!(
                    "cluster.peers: node {} has internal address {}, which is this node's, another peer's or has port 0",
                    p.node_id, p.internal
                ));
            }
        }
        Ok(())
    }
}
