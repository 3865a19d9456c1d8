//! The stack against real devices in virtual time (see [`world`]): what the runtime did
//! untested before the stack existed — the hold of acknowledgements until the outbox is
//! committed, saved sessions resumed by a fresh stack, revocation, identity binding, and the
//! audit of refused handshakes.
mod world;

use crate::core::types::{Command, DeregisterReason, DeviceEvent};
use crate::provisioning::audit::AuditKind;
use crate::store::Table;
use lwm2m::client::{ClientError, ClientEvent};
use lwm2m::model::{Path, Value};
use lwm2m::net::secure::LinkEvent;
use lwm2m::ops::dm::DownlinkRequest;
use lwm2m::ops::Lwm2mError;
use std::time::Duration;
use world::{World, MOMENT, SAVE_EVERY, SERVER};

const EP: &str = "dev-1";
const ID: &str = "id-1";
const KEY: &[u8] = b"0123456789abcdef";

/// A world with one provisioned device, registered.
fn registered() -> (World, usize) {
    let mut w = World::new(&[(EP, ID, KEY)]);
    let dev = w.device(EP, ID, KEY);
    w.run_for(MOMENT);
    assert!(
        w.saw(dev, |e| matches!(e, ClientEvent::Registered { .. })),
        "{:?}",
        w.devices[dev].events
    );
    (w, dev)
}

/// Datagrams the server sent since `from` (an index into the network's log).
fn server_sent_since(w: &World, from: usize) -> usize {
    w.net.sent()[from..]
        .iter()
        .filter(|s| s.from == SERVER)
        .count()
}

#[test]
fn an_acknowledgement_waits_for_the_commit_of_the_outbox_write_it_caused() {
    let (mut w, dev) = registered();
    w.auto_commit = false;
    let before = w.net.sent().len();
    w.with_client(dev, |c, now| {
        c.send_paths(now, &[Path::resource(3, 0, 0)]).unwrap();
    });
    assert!(
        w.events
            .iter()
            .any(|e| matches!(e, DeviceEvent::Send { .. })),
        "the server took the Send in"
    );
    assert_eq!(w.commits.len(), 1, "a commit was asked for");
    assert_eq!(server_sent_since(&w, before), 0, "nothing left before it");
    assert!(w.stack.poll_transmit().is_none());
    assert!(!w.saw(dev, |e| matches!(e, ClientEvent::SendCompleted { .. })));

    let generation = w.commits.remove(0);
    w.stack.handle_committed(w.net.now(), generation);
    w.run_for(MOMENT);
    assert_eq!(server_sent_since(&w, before), 1, "the ACK, once");
    assert!(w.saw(dev, |e| matches!(
        e,
        ClientEvent::SendCompleted { result: Ok(()), .. }
    )));
}

#[test]
fn a_registration_is_timed_until_its_held_answer_leaves() {
    let mut w = World::new(&[(EP, ID, KEY)]);
    w.auto_commit = false;
    let dev = w.device(EP, ID, KEY);
    w.run_for(MOMENT);
    assert!(
        w.events
            .iter()
            .any(|e| matches!(e, DeviceEvent::Registered { .. })),
        "the server took the Register in"
    );
    assert_eq!(w.commits.len(), 1, "its outbox write waits for a commit");
    assert_eq!(
        w.metrics.snapshot().registration_answers,
        0,
        "no answer yet"
    );
    // The store takes its time; the device has not retransmitted yet.
    w.run_for(Duration::from_millis(300));
    let generation = w.commits.remove(0);
    w.stack.handle_committed(w.net.now(), generation);
    w.run_for(MOMENT);
    assert!(w.saw(dev, |e| matches!(e, ClientEvent::Registered { .. })));
    assert_eq!(w.metrics.snapshot().registration_answers, 1);
    // In virtual time: at least the 300 ms the commit took, less than a second.
    let text = w.metrics.render();
    let bucket = |le: &str| {
        let series = format!("lwm2m_registration_duration_seconds_bucket{{le=\"{le}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(series.as_str()))
            .unwrap_or_else(|| panic!("no {series} in {text}"))
            .to_string()
    };
    assert_eq!(bucket("0.25"), "0");
    assert_eq!(bucket("1.0"), "1");
}

#[test]
fn the_ack_of_a_confirmable_notification_waits_for_its_outbox_commit() {
    let mut w = World::new(&[(EP, ID, KEY)]);
    let dev = w.device_with(EP, ID, KEY, |c| c.notify_con_every = 1);
    w.run_for(MOMENT);
    let battery = Path::resource(3, 0, 9);
    let now = w.net.now();
    let observe = Command::new(EP, DownlinkRequest::Observe { path: battery });
    let id = w.stack.core_mut().submit(now, observe);
    w.run_for(MOMENT);
    assert!(w.events.iter().any(|e| matches!(
        e,
        DeviceEvent::CommandResult { id: i, outcome: Ok(_), .. } if *i == id
    )));

    w.auto_commit = false;
    let before = w.net.sent().len();
    w.with_client(dev, |c, now| {
        c.set_value(now, &battery, Value::Integer(42)).unwrap();
    });
    assert!(
        w.events
            .iter()
            .any(|e| matches!(e, DeviceEvent::Notification { .. })),
        "the server took the notification in"
    );
    assert_eq!(w.commits.len(), 1);
    assert_eq!(server_sent_since(&w, before), 0, "no ACK before the commit");

    let generation = w.commits.remove(0);
    w.stack.handle_committed(w.net.now(), generation);
    w.run_for(MOMENT);
    assert_eq!(server_sent_since(&w, before), 1, "the ACK, once");
}

#[test]
fn a_saved_session_is_resumed_by_a_fresh_stack_without_a_new_handshake() {
    let (mut w, dev) = registered();
    let saved = w.session_writes();
    assert_eq!(saved.len(), 1, "saved once established: {saved:?}");
    let (put, key) = saved[0].clone();
    assert!(put);
    let sealed = w.store.get(&(Table::Sessions, key.clone())).unwrap();
    assert!(
        w.secrets.open(&key, sealed).is_ok(),
        "sealed with the secrets key"
    );

    w.run_for(SAVE_EVERY);
    let saved = w.session_writes();
    assert!(saved.len() >= 2, "saved again periodically: {saved:?}");
    assert!(saved.iter().all(|s| *s == (true, key.clone())));

    w.restart();
    assert_eq!(w.stack.dtls().unwrap().usage().sessions, 1);
    assert!(w.stack.core().registration(EP).is_some());
    w.devices[dev].events.clear();
    w.with_client(dev, |c, now| c.update(now).unwrap());
    assert!(
        w.saw(dev, |e| matches!(e, ClientEvent::Updated)),
        "{:?}",
        w.devices[dev].events
    );
    assert_eq!(
        w.metrics.snapshot().dtls_handshakes_ok,
        0,
        "no new handshake"
    );
    assert_eq!(w.devices[dev].link.handshakes(), 1);
}

#[test]
fn a_revoked_credential_closes_its_session_and_ends_its_registration() {
    let (mut w, dev) = registered();
    let (_, key) = w.session_writes()[0].clone();
    // The admin operation's store part, as the driver applies it.
    let disk = w.disk.as_ref().unwrap();
    w.creds.0.write().unwrap().revoke(disk, EP).unwrap();
    let now = w.net.now();
    w.stack
        .credentials_changed(now, &[EP.to_string()], Some(EP));
    w.pump();

    assert_eq!(
        w.session_writes().last(),
        Some(&(false, key)),
        "session deleted"
    );
    let closed = w.audited(AuditKind::SessionClosed);
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0].endpoint.as_deref(), Some(EP));
    assert_eq!(
        closed[0].detail,
        "1 DTLS session(s) closed: credential changed"
    );
    assert!(w.events.iter().any(|e| matches!(
        e,
        DeviceEvent::Deregistered { endpoint, reason: DeregisterReason::Revoked } if endpoint == EP
    )));
    assert!(w.stack.core().registration(EP).is_none());
    assert_eq!(w.stack.dtls().unwrap().usage().sessions, 0);
    assert_eq!(w.metrics.snapshot().deregistrations_revoked, 1);
    assert_eq!(w.metrics.snapshot().dtls_sessions, 0);

    w.run_for(MOMENT);
    assert!(
        w.devices[dev]
            .link_events
            .iter()
            .any(|e| matches!(e, LinkEvent::Down { .. })),
        "the device was told: {:?}",
        w.devices[dev].link_events
    );
}

#[test]
fn a_device_registering_under_another_endpoint_than_its_credential_is_refused() {
    let mut w = World::new(&[(EP, ID, KEY)]);
    let dev = w.device("dev-2", ID, KEY);
    w.run_for(MOMENT);
    assert!(w.saw(dev, |e| matches!(
        e,
        ClientEvent::RegistrationFailed {
            error: ClientError::Rejected(Lwm2mError::Forbidden)
        }
    )));
    assert!(w.stack.core().registration("dev-2").is_none());
    let refused = w.audited(AuditKind::EndpointMismatch);
    assert_eq!(refused.len(), 1, "{:?}", w.audit);
    assert_eq!(refused[0].endpoint.as_deref(), Some("dev-2"));
    assert!(
        refused[0].detail.contains(&format!("credential of {EP}")),
        "{}",
        refused[0].detail
    );
    assert_eq!(w.metrics.snapshot().auth_failures, 1);
}

#[test]
fn a_handshake_with_a_wrong_key_is_audited_under_the_identity_s_endpoint() {
    let mut w = World::new(&[(EP, ID, KEY)]);
    let dev = w.device(EP, ID, b"not-the-right-key");
    w.run_for(MOMENT);
    assert!(!w.saw(dev, |e| matches!(e, ClientEvent::Registered { .. })));
    let refused = w.audited(AuditKind::AuthFailed);
    assert_eq!(refused.len(), 1, "{:?}", w.audit);
    assert_eq!(refused[0].endpoint.as_deref(), Some(EP));
    assert!(refused[0].detail.contains(ID), "{}", refused[0].detail);
    let m = w.metrics.snapshot();
    assert_eq!((m.dtls_handshakes_ok, m.dtls_handshakes_failed), (0, 1));
}

/// What a cluster node trusts to move a device's route: only records the session verified.
#[test]
fn only_a_verified_record_counts_as_authenticated() {
    let (mut w, dev) = registered();
    w.stack.take_authenticated();
    let addr = w.devices[dev].addr;
    let now = w.net.now();

    // A forged `tls12_cid` record (content type 25) with a made-up Connection ID.
    let mut forged = vec![25, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 7];
    forged.extend_from_slice(&[1, 2, 3, 4, 5, 6, 0, 3, 9, 9, 9]);
    w.stack
        .handle_datagram(now, crate::metrics::Transport::Dtls, addr, &forged);
    assert!(!w.stack.take_authenticated(), "a forged record");

    // The device's last record again: the replay window drops it.
    let last = w
        .net
        .sent()
        .iter()
        .rev()
        .find(|s| s.from == addr && s.to == SERVER)
        .map(|s| s.bytes.clone())
        .unwrap();
    w.stack
        .handle_datagram(now, crate::metrics::Transport::Dtls, addr, &last);
    assert!(!w.stack.take_authenticated(), "a replayed record");

    // A real one: the device's Update.
    w.with_client(dev, |c, now| {
        c.update(now).unwrap();
    });
    assert!(w.stack.take_authenticated(), "the Update's record");
    assert!(!w.stack.take_authenticated(), "taken: cleared");
}

/// A cluster node that was down while the device's credential changed elsewhere does not take
/// its old session back: the device handshakes again, with its current key.
#[test]
fn a_session_whose_credential_changed_while_the_node_was_down_is_not_restored() {
    let (mut w, _dev) = registered();
    w.restart_with(&[EP.to_string()].into_iter().collect());
    assert_eq!(w.stack.dtls().unwrap().usage().sessions, 0);
    // The registration itself stays (the device's next Register or Update decides).
    assert!(w.stack.core().registration(EP).is_some());
}
