//! Who is bootstrapped and what the others are answered: the principal and account checks,
//! the bound on sequences, paths and methods, Bootstrap-Pack-Request, and sessions that end.
use super::device::Device;
use super::{account_for, config, World};
use crate::{BootstrapConfig, Event, Failure, Step};
use lwm2m::coap::{msg, RequestType};
use lwm2m::content::{self, ContentFormat};
use lwm2m::model::{Path, Registry, Value};
use netsim::Harness;
use std::sync::Arc;
use std::time::Duration;

/// Runs until device `addr` has `n` answers to its own requests.
fn run_to_answers(w: &mut World, addr: u8, n: usize) {
    assert!(
        w.run_until(Duration::from_secs(300), |w| w.devices[&addr].answers.len()
            >= n)
    );
}

#[test]
fn an_authenticated_peer_asking_for_another_endpoint_is_refused_4_03() {
    let mut w = World::new(config());
    w.core.peer_authenticated(1, Arc::from("meter-1"));
    w.add(1, Device::new(1, "meter-2", Some("1.1")));
    w.request(1, None);
    run_to_answers(&mut w, 1, 1);
    w.run_for(Duration::from_secs(10));
    assert_eq!(w.device(1).answers, ["4.03"]);
    assert!(w.device(1).log.is_empty(), "no sequence follows");
    assert!(matches!(
        w.events_of(1).as_slice(),
        [Event::Failed { step: Step::Request, failure: Failure::Refused(_), endpoint, .. }] if endpoint == "meter-2"
    ));
    assert!(
        w.accounts.asked.lock().unwrap().is_empty(),
        "no account is made for it"
    );
    assert_eq!(w.core.usage().sequences, 0);
}

#[test]
fn an_authenticated_peer_is_bootstrapped_under_its_own_name_and_its_principal_reaches_the_accounts()
{
    let mut w = World::new(config());
    w.core.peer_authenticated(1, Arc::from("meter-1"));
    assert_eq!(w.core.usage().peers, 1);
    w.add(1, Device::new(1, "meter-1", Some("1.1")));
    w.request(1, None);
    w.run_to_end(1);
    assert!(matches!(
        w.events_of(1).last(),
        Some(Event::Finished { .. })
    ));
    assert_eq!(
        w.accounts.asked.lock().unwrap().as_slice(),
        [("meter-1".to_string(), Some("meter-1".to_string()))]
    );
}

#[test]
fn a_device_the_accounts_refuse_is_answered_4_03() {
    let mut w = World::new(config());
    w.add(1, Device::new(1, "unknown-7", Some("1.1")));
    w.request(1, None);
    run_to_answers(&mut w, 1, 1);
    assert_eq!(w.device(1).answers, ["4.03"]);
    assert_eq!(
        w.events_of(1),
        [Event::Failed {
            endpoint: "unknown-7".into(),
            peer: 1,
            step: Step::Request,
            failure: Failure::Refused("no such device".into()),
        }]
    );
}

#[test]
fn plain_coap_peers_hold_at_most_half_the_sequences() {
    let mut w = World::new(BootstrapConfig {
        max_sequences: 4,
        ..config()
    });
    for n in 1..=5u8 {
        let mut d = Device::new(n, &format!("meter-{n}"), Some("1.1"));
        d.silent_at = Some("GET /".into());
        w.add(n, d);
    }
    // Devices 4 and 5 come over DTLS.
    w.core.peer_authenticated(4, Arc::from("meter-4"));
    w.core.peer_authenticated(5, Arc::from("meter-5"));
    for n in 1..=3u8 {
        w.request(n, None);
        run_to_answers(&mut w, n, 1);
    }
    assert_eq!(w.device(3).answers, ["5.03"], "a third plain peer");
    assert_eq!(w.core.usage().sequences, 2);
    for n in 4..=5u8 {
        w.request(n, None);
        run_to_answers(&mut w, n, 1);
        assert_eq!(
            w.device(n).answers,
            ["2.04"],
            "DTLS peers still get the rest"
        );
    }
    assert_eq!(w.core.usage().sequences, 4);
}

#[test]
fn requests_beyond_max_sequences_are_answered_5_03_and_a_restart_does_not_count() {
    let mut w = World::new(BootstrapConfig {
        max_sequences: 1,
        ..config()
    });
    let mut first = Device::new(1, "meter-1", Some("1.1"));
    first.silent_at = Some("GET /".into());
    w.add(1, first);
    w.add(2, Device::new(2, "meter-2", Some("1.1")));
    w.request(1, None);
    run_to_answers(&mut w, 1, 1);
    w.request(2, None);
    run_to_answers(&mut w, 2, 1);
    assert_eq!(w.device(2).answers, ["5.03"]);
    assert!(w.events_of(2).is_empty(), "an overload is no device event");
    assert_eq!(w.core.usage().sequences, 1);

    // The running device asking again replaces its own sequence.
    w.device(1).silent_at = None;
    w.device(1).silent = false;
    w.net.down(1, false);
    w.request(1, None);
    w.run_until(Duration::from_secs(600), |w| {
        w.events_of(1)
            .iter()
            .any(|e| matches!(e, Event::Finished { .. }))
    });
    assert_eq!(w.device(1).answers, ["2.04", "2.04"]);
}

#[test]
fn other_paths_and_methods_are_answered_4_04_and_4_05_and_bad_requests_4_00() {
    let mut w = World::new(config());
    w.add(1, Device::new(1, "meter-1", Some("1.1")));
    let now = w.now();
    let dev = w.device(1);
    dev.send(now, msg::request(RequestType::Post, "/rd?ep=meter-1"));
    dev.send(now, msg::request(RequestType::Get, "/bs?ep=meter-1"));
    dev.send(now, msg::request(RequestType::Post, "/bs"));
    dev.send(now, msg::request(RequestType::Delete, "/bspack?ep=meter-1"));
    w.flush();
    run_to_answers(&mut w, 1, 4);
    assert_eq!(w.device(1).answers, ["4.04", "4.05", "4.00", "4.05"]);
    assert!(w.events.is_empty());
}

#[test]
fn a_pack_request_over_plain_coap_gets_no_credential() {
    let mut w = World::new(config());
    w.add(1, Device::new(1, "meter-p", Some("1.2")));
    let now = w.now();
    w.device(1).request_pack(now, None);
    w.flush();
    run_to_answers(&mut w, 1, 1);
    assert_eq!(w.device(1).answers, ["4.03"]);
    assert!(
        !w.events_of(1)
            .iter()
            .any(|e| matches!(e, Event::Finished { .. })),
        "{:?}",
        w.events_of(1)
    );
}

#[test]
fn a_pack_request_is_answered_with_the_whole_account_and_finishes_at_once() {
    for (accept, served) in [
        (None, ContentFormat::SenmlCbor),
        (Some(ContentFormat::SenmlJson), ContentFormat::SenmlJson),
        (Some(ContentFormat::Lwm2mCbor), ContentFormat::Lwm2mCbor),
    ] {
        let mut w = World::new(config());
        // Over DTLS: the account carries a PSK.
        w.core.peer_authenticated(1, Arc::from("meter-p"));
        w.add(1, Device::new(1, "meter-p", Some("1.2")));
        let now = w.now();
        w.device(1).request_pack(now, accept);
        w.flush();
        run_to_answers(&mut w, 1, 1);
        assert_eq!(w.device(1).answers, ["2.05"]);
        let answer = w.device(1).last_answer.clone().unwrap();
        assert_eq!(
            msg::uint_option(&answer, lwm2m::coap::CoapOption::ContentFormat),
            Some(u32::from(served.code()))
        );
        let records =
            content::decode_composite(served, &answer.payload, &Registry::bundled()).unwrap();
        let value = |p| {
            records
                .iter()
                .find(|r| r.path == p)
                .and_then(|r| r.value.clone())
        };
        let account = account_for("meter-p");
        assert_eq!(
            value(Path::resource(0, 1, 0)),
            Some(Value::String(account.server_uri.clone()))
        );
        assert_eq!(
            value(Path::resource(1, 0, 0)),
            Some(Value::Integer(i64::from(account.short_server_id)))
        );
        match w.events_of(1).as_slice() {
            [Event::Started { .. }, Event::Finished {
                format, version, ..
            }] => {
                assert_eq!(*format, served);
                assert_eq!(*version, None);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(w.core.usage().sequences, 0);
        assert!(w.device(1).log.is_empty(), "no Finish follows a pack");
    }
}

#[test]
fn a_pack_in_a_format_without_composites_is_4_06_and_without_serve_pack_4_04() {
    let mut w = World::new(config());
    w.add(1, Device::new(1, "meter-p", Some("1.2")));
    let now = w.now();
    w.device(1).request_pack(now, Some(ContentFormat::Tlv));
    w.flush();
    run_to_answers(&mut w, 1, 1);
    assert_eq!(w.device(1).answers, ["4.06"]);

    let mut w = World::new(BootstrapConfig {
        serve_pack: false,
        ..config()
    });
    w.add(1, Device::new(1, "meter-p", Some("1.2")));
    let now = w.now();
    w.device(1).request_pack(now, None);
    w.flush();
    run_to_answers(&mut w, 1, 1);
    assert_eq!(w.device(1).answers, ["4.04"]);
    assert!(w.events.is_empty());
}

#[test]
fn a_closed_session_fails_its_sequence_and_forgets_its_principal() {
    let mut w = World::new(config());
    w.core.peer_authenticated(1, Arc::from("meter-1"));
    let mut dev = Device::new(1, "meter-1", Some("1.1"));
    dev.silent_at = Some("DELETE /1".into());
    w.add(1, dev);
    w.request(1, None);
    w.run_until(Duration::from_secs(60), |w| {
        w.devices[&1].log.last().map(String::as_str) == Some("DELETE /1")
    });
    w.core.peer_closed(1);
    w.flush();
    assert!(matches!(
        w.events_of(1).as_slice(),
        [Event::Started { .. }, Event::Failed { step: Step::Delete(p), failure: Failure::Gone, .. }] if *p == Path::object(1)
    ));
    assert_eq!(w.core.usage(), crate::BootstrapUsage::default());
    let at = w.net.elapsed();
    w.run_for(Duration::from_secs(300));
    assert_eq!(w.sent_to_since(1, at), 0, "nothing more is sent to it");
}

#[test]
fn a_revoked_credential_ends_its_sequence() {
    let mut w = World::new(config());
    let mut dev = Device::new(1, "meter-1", Some("1.1"));
    dev.silent_at = Some("DELETE /0".into());
    w.add(1, dev);
    w.request(1, None);
    w.run_until(Duration::from_secs(60), |w| {
        !w.devices[&1].log.is_empty() && w.devices[&1].silent
    });
    let now = w.now();
    w.core.revoke(now, "meter-2");
    w.flush();
    assert_eq!(
        w.events_of(1).len(),
        1,
        "another endpoint's revocation changes nothing"
    );
    w.core.revoke(now, "meter-1");
    w.flush();
    assert!(matches!(
        w.events_of(1).last(),
        Some(Event::Failed { step: Step::Delete(_), failure: Failure::Refused(r), .. }) if r == "credential revoked"
    ));
    assert_eq!(w.core.usage().sequences, 0);
}
