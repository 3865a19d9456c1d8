//! Registration (Core §6.2): Register parameters and object links, the Update schedule,
//! Register again after 4.04, retries with backoff, De-register, and Updates on changes.
use super::*;
use crate::client::config::ClientError;
use crate::client::registration::update_delay;
use crate::coap::MessageClass;
use crate::content::negotiate::Lwm2mVersion;
use crate::model::{Instance, Resource, Value};
use crate::ops::Lwm2mError;

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

#[test]
fn update_delay_follows_the_lifetime() {
    assert_eq!(update_delay(300), secs(270.0));
    assert_eq!(update_delay(86_400), secs(77_760.0));
    assert_eq!(
        update_delay(60),
        secs(30.0),
        "30 s before the end beats 90 %"
    );
    assert_eq!(update_delay(20), secs(10.0), "short lifetimes: half");
    assert_eq!(update_delay(1), secs(1.0), "never below 1 s");
}

#[test]
fn registers_with_the_configured_parameters_and_object_links() {
    let mut net = Net::standard();
    net.start_client();
    assert!(net.run_until(secs(5.0), |n| n.client.is_registered()));
    let reg = &net.seen[0].request;
    assert_eq!(msg::uri_path(reg), "/rd");
    assert_eq!(
        msg::uri_query(reg),
        ["ep=dev-1", "lt=300", "lwm2m=1.1", "b=U"]
    );
    assert_eq!(
        String::from_utf8(reg.payload.clone()).unwrap(),
        r#"</>;rt="oma.lwm2m";ct="112 110 11542 60",</1>;ver=1.2,</1/0>,</3>;ver=1.2,</3/0>"#
    );
    // The server side of `ops` reads what the client built.
    let parsed = crate::ops::registration::Register::from_coap(reg).unwrap();
    assert_eq!(
        (
            parsed.endpoint.as_str(),
            parsed.lifetime,
            parsed.version,
            parsed.queue_mode
        ),
        ("dev-1", 300, Lwm2mVersion::V1_1, false)
    );
    assert_eq!(parsed.links.content_formats, [112, 110, 11542, 60]);
    assert!(parsed.links.has_instance(3, 0) && !parsed.links.has_instance(0, 0));
    assert_eq!(
        net.client_events(|e| match e {
            ClientEvent::Registered { location } => Some(location.clone()),
            _ => None,
        }),
        ["/rd/r1"]
    );
    assert_eq!(net.client.location(), Some("/rd/r1"));
    assert_eq!(
        net.client.start(net.now()),
        Err(ClientError::AlreadyStarted)
    );
}

#[test]
fn lwm2m_1_0_with_queue_mode_puts_q_in_the_binding() {
    let mut c = config().with_version(Lwm2mVersion::V1_0, false);
    c.queue_mode = true;
    let mut net = Net::new(c, ObjectStore::standard("dev-1"));
    net.start_client();
    assert!(net.run_until(secs(5.0), |n| n.client.is_registered()));
    let reg = &net.seen[0].request;
    assert_eq!(msg::uri_query(reg), ["ep=dev-1", "lt=300", "b=UQ"]);
    assert_eq!(
        String::from_utf8(reg.payload.clone()).unwrap(),
        "</1>;ver=1.2,</1/0>,</3>;ver=1.2,</3/0>",
        "no ct for 1.0"
    );
}

#[test]
fn updates_at_ninety_percent_of_the_lifetime() {
    let mut net = Net::registered();
    // Registered at 0.1 s (two 50 ms hops); each Update reaches the server 50 ms after it
    // leaves and its answer is back 50 ms later, which starts the next 270 s.
    net.run_for(secs(1000.0));
    let updates = net.seen_at("/rd/r1");
    let expect = [270.15, 540.25, 810.35];
    assert_eq!(updates.len(), expect.len(), "{updates:?}");
    for (got, want) in updates.iter().zip(expect) {
        assert!((got.as_secs_f64() - want).abs() < 1e-6, "{updates:?}");
    }
    for u in net.seen.iter() {
        assert!(
            u.request.payload.is_empty(),
            "nothing changed, nothing sent"
        );
        assert!(msg::uri_query(&u.request).is_empty());
    }
    assert_eq!(
        net.client_events(|e| (*e == ClientEvent::Updated).then_some(()))
            .len(),
        3
    );
}

#[test]
fn registers_again_when_the_update_is_answered_not_found() {
    let mut net = Net::registered();
    let mut inner = accept_all();
    // The registrar already gave /rd/r1; this one starts over, so skip one number.
    inner(&msg::request(RequestType::Post, "/rd"));
    net.registrar = Box::new(move |req: &Packet| {
        if msg::uri_path(req).starts_with("/rd/") {
            return Some(msg::response(ResponseType::NotFound));
        }
        inner(req)
    });
    net.run_for(secs(271.0));
    assert_eq!(net.seen_at("/rd/r1").len(), 1);
    assert_eq!(net.seen_at("/rd").len(), 1, "Register again");
    assert_eq!(net.client.location(), Some("/rd/r2"));
    let kinds: Vec<String> = net.events.iter().map(|(_, e)| format!("{e:?}")).collect();
    assert_eq!(
        net.events
            .iter()
            .map(|(_, e)| e.clone())
            .collect::<Vec<_>>(),
        [
            ClientEvent::RegistrationFailed {
                error: ClientError::Rejected(Lwm2mError::NotFound)
            },
            ClientEvent::Registered {
                location: "/rd/r2".into()
            }
        ],
        "{kinds:?}"
    );
}

#[test]
fn retries_register_with_exponential_backoff() {
    let mut net = Net::standard();
    net.server_down(true);
    net.start_client();
    net.run_for(secs(1200.0));
    // Each Register is a new message; its retransmissions keep its message ID.
    let mut starts: Vec<(Duration, u16)> = Vec::new();
    for (at, p) in &net.client_tx() {
        if msg::uri_path(p) == "/rd"
            && starts
                .last()
                .is_none_or(|(_, mid)| *mid != p.header.message_id)
        {
            starts.push((*at, p.header.message_id));
        }
    }
    let failures: Vec<Duration> = net
        .events
        .iter()
        .filter(|(_, e)| {
            matches!(
                e,
                ClientEvent::RegistrationFailed {
                    error: ClientError::Exchange(_)
                }
            )
        })
        .map(|(at, _)| *at)
        .collect();
    assert!(failures.len() >= 4, "{failures:?}");
    // Attempt k+1 starts 10 s * 2^k after attempt k failed.
    for (k, (fail, next)) in failures.iter().zip(starts.iter().skip(1)).enumerate() {
        let gap = next.0 - *fail;
        assert_eq!(
            gap,
            secs(10.0 * f64::from(1u32 << k)),
            "attempt {k}: {failures:?} {starts:?}"
        );
    }
    // Back online: the next attempt succeeds.
    net.server_down(false);
    assert!(net.run_until(secs(3600.0), |n| n.client.is_registered()));
}

#[test]
fn retry_delay_is_capped_and_jittered() {
    let mut c = config();
    c.retry_max = secs(60.0);
    c.retry_jitter = 0.5;
    let mut client = Client::new(c, SERVER, ObjectStore::standard("x"));
    for failures in 1..40 {
        let d = client.retry_delay(failures);
        let full = secs(10.0 * f64::from(1u32 << (failures - 1).min(20))).min(secs(60.0));
        assert!(d <= full && d >= full / 2, "{failures}: {d:?}");
    }
}

#[test]
fn deregister_deletes_the_registration() {
    let mut net = Net::registered();
    let now = net.now();
    net.client.deregister(now).unwrap();
    net.flush();
    assert!(net.run_until(secs(5.0), |n| n
        .client_events(|e| (*e == ClientEvent::Deregistered).then_some(()))
        .len()
        == 1));
    assert_eq!(
        net.seen[0].request.header.code,
        MessageClass::Request(RequestType::Delete)
    );
    assert_eq!(msg::uri_path(&net.seen[0].request), "/rd/r1");
    assert!(!net.client.is_registered());
    // Nothing more: no Update ever.
    net.run_for(secs(1000.0));
    assert_eq!(net.seen.len(), 1);
    assert_eq!(
        net.client.deregister(net.now()),
        Err(ClientError::NotRegistered)
    );
    // And it can start again.
    net.start_client();
    assert!(net.run_until(secs(5.0), |n| n.client.is_registered()));
}

#[test]
fn deregister_while_retrying_just_stops() {
    let mut net = Net::standard();
    net.server_down(true);
    net.start_client();
    net.run_for(secs(100.0));
    let now = net.now();
    net.client.deregister(now).unwrap();
    net.flush();
    let before = net.client_tx().len();
    net.run_for(secs(3600.0));
    assert_eq!(net.client_tx().len(), before, "no more Register attempts");
    assert!(net
        .events
        .iter()
        .any(|(_, e)| *e == ClientEvent::Deregistered));
}

#[test]
fn create_and_delete_send_updates_with_the_new_links() {
    let mut store = ObjectStore::standard("dev-1");
    store.add_object(3303);
    let mut net = Net::registered_with(config(), store);
    let resp = net.ask(msg::request(RequestType::Post, "/3303"));
    assert_eq!(code(&resp), "2.01");
    assert_eq!(msg::location_path(&resp), "/3303/0");
    net.run_for(secs(1.0));
    let up = net.seen.last().unwrap();
    assert_eq!(msg::uri_path(&up.request), "/rd/r1");
    assert_eq!(
        String::from_utf8(up.request.payload.clone()).unwrap(),
        r#"</>;rt="oma.lwm2m";ct="112 110 11542 60",</1>;ver=1.2,</1/0>,</3>;ver=1.2,</3/0>,</3303>;ver=1.1,</3303/0>"#
    );
    let resp = net.ask(msg::request(RequestType::Delete, "/3303/0"));
    assert_eq!(code(&resp), "2.02");
    net.run_for(secs(1.0));
    let up = net.seen.last().unwrap();
    assert!(String::from_utf8(up.request.payload.clone())
        .unwrap()
        .ends_with("</3303>;ver=1.1"));
    assert_eq!(net.seen.len(), 2);
}

#[test]
fn the_application_adding_an_instance_sends_an_update() {
    let mut net = Net::registered();
    let now = net.now();
    let inst = Instance::from([(5700, Resource::Single(Value::Float(21.5)))]);
    net.client.add_instance(now, 3303, 0, inst).unwrap();
    net.flush();
    net.run_for(secs(1.0));
    assert_eq!(net.seen.len(), 1);
    assert!(String::from_utf8(net.seen[0].request.payload.clone())
        .unwrap()
        .ends_with("</3303>;ver=1.1,</3303/0>"));
    // A change while an Update is in flight waits for its answer, and the last Update
    // carries the final links.
    let now = net.now();
    net.client.remove_instance(now, 3303, 0).unwrap();
    net.client
        .add_instance(now, 3303, 1, Instance::new())
        .unwrap();
    net.flush();
    net.run_for(secs(1.0));
    assert_eq!(net.seen.len(), 3);
    assert_eq!(
        net.seen[2].at - net.seen[1].at,
        secs(0.1),
        "sent after the answer"
    );
    assert!(String::from_utf8(net.seen[2].request.payload.clone())
        .unwrap()
        .ends_with("</3303>;ver=1.1,</3303/1>"));
}

#[test]
fn writing_the_lifetime_updates_and_reschedules() {
    let mut net = Net::registered();
    let resp = net.ask(with_payload(
        msg::request(RequestType::Put, "/1/0/1"),
        ContentFormat::Text,
        b"120",
    ));
    assert_eq!(code(&resp), "2.04");
    net.run_for(secs(1.0));
    assert_eq!(net.seen.len(), 1);
    assert_eq!(msg::uri_query(&net.seen[0].request), ["lt=120"]);
    let first = net.seen[0].at;
    // The next Update comes 90 s later (lifetime 120: 30 s before the end).
    net.run_for(secs(100.0));
    let next = net.seen_at("/rd/r1");
    assert_eq!(next.len(), 2);
    assert!((next[1] - first).as_secs_f64() - 90.1 < 1e-6);
    assert!(
        msg::uri_query(&net.seen[1].request).is_empty(),
        "lt only once"
    );
    // A lifetime of 0 is refused.
    let resp = net.ask(with_payload(
        msg::request(RequestType::Put, "/1/0/1"),
        ContentFormat::Text,
        b"0",
    ));
    assert_eq!(code(&resp), "4.00");
}

#[test]
fn registration_update_trigger_sends_an_update() {
    let mut net = Net::registered();
    let resp = net.ask(msg::request(RequestType::Post, "/1/0/8"));
    assert_eq!(code(&resp), "2.04");
    net.run_for(secs(1.0));
    assert_eq!(net.seen_at("/rd/r1").len(), 1);
    assert_eq!(
        net.client_events(|e| match e {
            ClientEvent::Executed { path, .. } => Some(*path),
            _ => None,
        }),
        [Path::resource(1, 0, 8)]
    );
}

#[test]
fn an_unanswered_update_is_tried_once_more_and_keeps_the_registration() {
    let mut net = Net::registered();
    net.run_for(secs(260.0));
    // The Update at 270 s goes unanswered (its last retransmission leaves by 315 s, it gives
    // up at 363 s): the driver is told, to handshake again, and the Update is sent once more
    // (here, with no session to renew, 186 s later), which the server, back at 340 s,
    // answers.
    net.server_down(true);
    net.run_for(secs(80.0));
    net.server_down(false);
    assert!(net.run_until(secs(700.0), |n| n
        .events
        .iter()
        .any(|(_, e)| *e == ClientEvent::Updated)));
    assert!(net
        .events
        .iter()
        .any(|(_, e)| *e == ClientEvent::Unreachable));
    assert_eq!(net.client.location(), Some("/rd/r1"), "still registered");
    assert_eq!(net.seen_at("/rd").len(), 0, "no Register again");
    assert!(!net
        .events
        .iter()
        .any(|(_, e)| matches!(e, ClientEvent::RegistrationFailed { .. })));
}

#[test]
fn the_retried_update_goes_as_soon_as_the_session_is_back() {
    let mut net = Net::registered();
    net.run_for(secs(260.0));
    net.server_down(true);
    assert!(net.run_until(secs(200.0), |n| n
        .events
        .iter()
        .any(|(_, e)| *e == ClientEvent::Unreachable)));
    net.server_down(false);
    let before = net.seen_at("/rd/r1").len();
    let now = net.now();
    net.client.reconnected(now);
    net.flush();
    net.run_for(secs(0.5));
    assert_eq!(net.seen_at("/rd/r1").len(), before + 1, "sent at once");
    assert!(net.events.iter().any(|(_, e)| *e == ClientEvent::Updated));
    // Outside a retry, a new session sends nothing.
    let seen = net.seen.len();
    let now = net.now();
    net.client.reconnected(now);
    net.flush();
    net.run_for(secs(0.5));
    assert_eq!(net.seen.len(), seen);
}

#[test]
fn an_update_unanswered_twice_registers_again() {
    let mut net = Net::registered();
    net.run_for(secs(260.0));
    net.server_down(true);
    net.run_for(secs(420.0));
    assert!(net.events.iter().any(|(_, e)| matches!(
        e,
        ClientEvent::RegistrationFailed {
            error: ClientError::Exchange(_)
        }
    )));
    net.server_down(false);
    assert!(net.run_until(secs(1200.0), |n| n.client.location() == Some("/rd/r2")));
}

#[test]
fn bootstrap_request_trigger_is_answered_and_reported_with_the_server_s_id() {
    let mut net = Net::registered();
    let resp = net.ask(msg::request(RequestType::Post, "/1/0/9"));
    assert_eq!(code(&resp), "2.04");
    assert_eq!(
        net.client_events(|e| match e {
            ClientEvent::BootstrapRequested { short_server_id } => Some(*short_server_id),
            ClientEvent::Executed { .. } => Some(0),
            _ => None,
        }),
        [1]
    );
    // On an instance the store does not have, the trigger does not exist.
    let resp = net.ask(msg::request(RequestType::Post, "/1/7/9"));
    assert_eq!(code(&resp), "4.04");
}
