//! Two nodes' cluster parts wired by hand: a device's record reaches the wrong node, goes to
//! the node of its Connection ID, and the answer comes back out of the node it reached.
use super::*;
use crate::config::{ClusterPeer, ClusterSection};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

fn internal(node: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 10 + node], 5690))
}

fn node(id: u8, others: &[u8], secret: &[u8]) -> Cluster {
    let config = ClusterSection {
        enabled: true,
        node_id: id,
        internal_bind: internal(id),
        secret_file: "unused".into(),
        peers: others
            .iter()
            .map(|n| ClusterPeer {
                node_id: *n,
                internal: internal(*n),
            })
            .collect(),
        store: String::new(),
    };
    Cluster::new(&config, 6, secret, 16, Arc::new(Metrics::default()))
}

/// A `tls12_cid` record (RFC 9146 §4) whose Connection ID starts with `node`.
fn cid_record(node: u8) -> Vec<u8> {
    let mut r = vec![25, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 9];
    r.extend_from_slice(&[node, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5]);
    r.extend_from_slice(&[0, 4, 1, 2, 3, 4]);
    r
}

fn device() -> SocketAddr {
    SocketAddr::from(([192, 0, 2, 1], 40_000))
}

#[test]
fn a_record_for_another_nodes_session_goes_there_and_its_answer_comes_back_out_here() {
    let (mut one, mut two) = (node(1, &[2], SECRET), node(2, &[1], SECRET));
    let record = cid_record(2);

    assert!(one.on_public(device(), &record));
    let (socket, t) = one.poll_transmit().unwrap();
    assert_eq!((socket, t.peer), (Socket::Internal, internal(2)));

    // Node 2 takes the record as if the device had sent it there.
    let f = two.on_internal(internal(1), &t.payload).unwrap();
    assert_eq!((f.peer, f.node, f.payload), (device(), 1, &record[..]));

    // Until a session authenticated it, the record moves nothing: answers go out directly.
    let (socket, _) = two.route(Transmit {
        peer: device(),
        payload: b"answer".to_vec(),
    });
    assert_eq!(socket, Socket::Public);

    // Once one did, its answers go back through node 1, which sends them to the device.
    two.authenticated(f.peer, Some(f.node));
    let (socket, t) = two.route(Transmit {
        peer: device(),
        payload: b"answer".to_vec(),
    });
    assert_eq!((socket, t.peer), (Socket::Internal, internal(1)));
    assert!(one.on_internal(internal(2), &t.payload).is_none());
    let (socket, t) = one.poll_transmit().unwrap();
    assert_eq!(
        (socket, t.peer, &t.payload[..]),
        (Socket::Public, device(), &b"answer"[..])
    );
    assert!(one.poll_transmit().is_none());

    // A record reaching node 2 directly moves nothing until authenticated; then node 2
    // answers the device directly.
    assert!(!two.on_public(device(), &record));
    let (socket, _) = two.route(Transmit {
        peer: device(),
        payload: b"answer".to_vec(),
    });
    assert_eq!(socket, Socket::Internal);
    two.authenticated(device(), None);
    let (socket, _) = two.route(Transmit {
        peer: device(),
        payload: b"answer".to_vec(),
    });
    assert_eq!(socket, Socket::Public);

    let m = one.metrics.snapshot().cluster_datagrams;
    assert_eq!(
        m,
        [
            ("forwarded", 1),
            ("taken", 0),
            ("answered_through", 0),
            ("sent_for", 1),
            ("rejected", 0)
        ]
    );
}

#[test]
fn a_handshake_reaching_this_node_takes_the_device_s_answers_back_here() {
    let mut two = node(2, &[1], SECRET);
    two.authenticated(device(), Some(1));
    // Junk without a Connection ID moves nothing.
    for junk in [
        &b""[..],
        b"\x17",
        &[23, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 1, 0, 1, 1],
    ] {
        assert!(!two.on_public(device(), junk));
        let (socket, _) = two.route(Transmit {
            peer: device(),
            payload: vec![],
        });
        assert_eq!(socket, Socket::Internal);
    }
    // A ClientHello (content type 22, epoch 0, no Connection ID) from the same address.
    assert!(!two.on_public(device(), &[22, 0xfe, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1]));
    let (socket, _) = two.route(Transmit {
        peer: device(),
        payload: vec![],
    });
    assert_eq!(socket, Socket::Public);
}

#[test]
fn an_envelope_for_another_node_is_refused() {
    let mut one = node(1, &[2, 3], SECRET);
    let mut three = node(3, &[1, 2], SECRET);
    // Node 3 forwards a record for node 2's session; someone replays it to node 1.
    assert!(three.on_public(device(), &cid_record(2)));
    let (_, t) = three.poll_transmit().unwrap();
    assert!(one.on_internal(internal(3), &t.payload).is_none());
    assert_eq!(
        one.metrics.snapshot().cluster_datagrams.last(),
        Some(&("rejected", 1))
    );
}

#[test]
fn records_for_this_node_for_unknown_nodes_and_handshakes_stay_here() {
    let mut one = node(1, &[2], SECRET);
    assert!(!one.on_public(device(), &cid_record(1)));
    assert!(!one.on_public(device(), &cid_record(9)));
    // A ClientHello (content type 22): no Connection ID, the handshake stays where it began.
    assert!(!one.on_public(device(), &[22, 0xfe, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1]));
    assert!(!one.on_public(device(), b""));
    assert!(one.poll_transmit().is_none());
}

#[test]
fn envelopes_under_another_secret_or_from_unknown_nodes_are_refused() {
    let mut one = node(1, &[2], SECRET);
    let mut stranger = node(2, &[1], b"another secret, 32 bytes or more!");
    assert!(stranger.on_public(device(), &cid_record(1)));
    let (_, forged) = stranger.poll_transmit().unwrap();
    assert!(one.on_internal(internal(2), &forged.payload).is_none());

    // Right secret, but node 3 is not in this node's peers: it could not be answered.
    let mut three = node(3, &[1], SECRET);
    assert!(three.on_public(device(), &cid_record(1)));
    let (_, t) = three.poll_transmit().unwrap();
    assert!(one.on_internal(internal(3), &t.payload).is_none());
    assert!(one.on_internal(internal(2), b"junk").is_none());

    let m = one.metrics.snapshot().cluster_datagrams;
    assert_eq!(m.last(), Some(&("rejected", 3)));
    // Nothing was routed through the strangers.
    let (socket, _) = one.route(Transmit {
        peer: device(),
        payload: vec![],
    });
    assert_eq!(socket, Socket::Public);
}

#[test]
fn the_secret_file_is_trimmed_and_must_be_long_enough() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secret");
    std::fs::write(&path, format!("{}\n", "ab".repeat(32))).unwrap();
    assert_eq!(read_secret(&path).unwrap().len(), 64);
    std::fs::write(&path, "short\n").unwrap();
    let e = read_secret(&path).unwrap_err().to_string();
    assert!(e.contains("5 bytes") && e.contains("at least 32"), "{e}");
    let e = read_secret(&dir.path().join("missing"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing"), "{e}");
}
