//! What a device's client and DTLS session report, accounted for in the shard's counts:
//! registrations and their latency, handshakes, failures by kind, and the client's own
//! counters (requests answered, notifications sent).
use super::bootstrapping;
use super::{Device, Phase};
use crate::bench::live::Live;
use crate::bench::objects::REBOOT;
use crate::bench::report::{epoch_us, DeviceCounts};
use lwm2m::client::{ClientError, ClientEvent, ClientStats};
use lwm2m::coap::ExchangeError;
use lwm2m::net::secure::LinkEvent;
use std::time::Instant;

/// Adds what the client counted since last time.
pub(super) fn account(
    counts: &mut DeviceCounts,
    live: &Live,
    seen: &mut ClientStats,
    now: ClientStats,
) {
    let requests = now.requests.saturating_sub(seen.requests);
    let notifications = now.notifications.saturating_sub(seen.notifications);
    counts.requests_answered += requests;
    counts.notifications_sent += notifications;
    live.add_notifications(notifications);
    *seen = now;
}

fn is_timeout(e: &ClientError) -> bool {
    matches!(e, ClientError::Exchange(ExchangeError::Timeout))
}

/// Accounts for one event of a device's DTLS session.
pub(super) fn on_link_event(
    d: &mut Device,
    c: &mut DeviceCounts,
    live: &Live,
    ev: LinkEvent,
    now: Instant,
) {
    match ev {
        LinkEvent::Connected { resumed } => {
            if resumed {
                c.handshakes_resumed += 1;
            } else {
                c.handshakes_full += 1;
            }
            live.add_handshake();
            if !d.ever_connected {
                d.ever_connected = true;
                c.first_handshakes += 1;
                c.last_first_handshake_us = epoch_us();
            }
            if let Some(t0) = d.handshaking_since.take() {
                c.handshake_latency
                    .record(now.saturating_duration_since(t0));
            }
            // An Update waiting for a new session goes now.
            d.client.reconnected(now);
        }
        LinkEvent::Down { reason } => {
            c.sessions_lost += 1;
            c.errors.add(format!("session: {reason}"));
            live.add_error();
            d.handshaking_since = Some(now);
        }
    }
}

/// Accounts for one event of a device's client.
pub(super) fn on_event(
    d: &mut Device,
    c: &mut DeviceCounts,
    live: &Live,
    ev: ClientEvent,
    now: Instant,
) {
    match ev {
        ClientEvent::Registered { .. } => {
            if d.phase != Phase::Registering {
                if std::mem::take(&mut d.firmware_updated) {
                    // A device registers anew once its new firmware runs (Core E.6).
                    c.registrations += 1;
                    return;
                }
                // Registered again after the server forgot it (an Update answered 4.04).
                c.errors.add("registered_again");
                live.add_error();
                return;
            }
            d.phase = Phase::Up;
            d.permit = None;
            bootstrapping::on_registered(d, &mut c.bootstrap, now);
            c.registrations += 1;
            live.registered_now_add();
            if !d.ever_registered {
                d.ever_registered = true;
                c.registered += 1;
                c.last_registered_us = epoch_us();
            }
            if let Some(t0) = d.registering_since.take() {
                c.registration_latency
                    .record(now.saturating_duration_since(t0));
            }
        }
        ClientEvent::Updated => c.updates += 1,
        ClientEvent::FirmwareUpdated { .. } => d.firmware_updated = true,
        ClientEvent::RegistrationFailed { error } => {
            c.registration_failures += 1;
            let what = if d.phase == Phase::Registering {
                // The client retries later by itself; the slot goes to the next device.
                d.permit = None;
                "register"
            } else {
                "update"
            };
            if is_timeout(&error) {
                c.timeouts += 1;
            } else {
                c.errors.add(format!("{what}: {error}"));
                live.add_error();
            }
        }
        ClientEvent::Deregistered => {
            if d.phase == Phase::Leaving {
                c.deregistered += 1;
                live.registered_now_sub();
            }
            d.phase = Phase::Gone;
            d.permit = None;
        }
        ClientEvent::Executed { path, .. } if path == REBOOT => d.reboot_due = true,
        // The Bootstrap-Request Trigger: a bootstrapping device starts over from its
        // factory state (a reboot does that); any other just reboots.
        ClientEvent::BootstrapRequested { .. } => d.reboot_due = true,
        // FIRMWARE_UPDATE: acknowledged by the client; the firmware behaviours (download,
        // state machine, result) plug in here.
        ClientEvent::SendCompleted { result, .. } => match result {
            Ok(()) => c.sends_acknowledged += 1,
            Err(e) if is_timeout(&e) => c.timeouts += 1,
            Err(e) => {
                c.errors.add(format!("send: {e}"));
                live.add_error();
            }
        },
        // Its Update went unanswered: the session may be gone with the server node that held
        // it. A new handshake (to whichever node the balancer picks) before the client tries
        // the Update once more.
        ClientEvent::Unreachable => {
            c.timeouts += 1;
            if let Some(link) = &mut d.link {
                link.reconnect(now);
                d.handshaking_since = Some(now);
            }
        }
        ClientEvent::Sleeping => c.sleeps += 1,
        ClientEvent::Woke => c.wakes += 1,
        _ => {}
    }
}
