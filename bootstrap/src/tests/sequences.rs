//! Whole bootstrap sequences: what each kind of device is sent, in which format, and what
//! it holds afterwards.
use super::device::{Device, BS_URI, OLD_URI};
use super::{account_for, config, World};
use crate::{BootstrapConfig, Event, Failure, Step};
use lwm2m::coap::ResponseType;
use lwm2m::content::ContentFormat;
use lwm2m::model::{Path, Value};
use netsim::{Faults, Harness};
use std::time::Duration;

/// Asserts device `addr` holds `name`'s account at `/0/{sec}` and `/1/{srv}`, its
/// bootstrap account at `/0/0`, and nothing of the old server.
fn assert_holds_account(w: &World, addr: u8, name: &str, sec: u16, srv: u16) {
    let account = account_for(name);
    let ssid = Some(Value::Integer(i64::from(account.short_server_id)));
    let mut security = vec![0, sec];
    security.sort_unstable();
    assert_eq!(w.instances(addr, 0), security);
    assert_eq!(w.instances(addr, 1), vec![srv]);
    assert_eq!(
        w.value(addr, Path::resource(0, 0, 0)),
        Some(Value::String(BS_URI.into())),
        "the bootstrap account is kept"
    );
    assert_eq!(
        w.value(addr, Path::resource(0, sec, 0)),
        Some(Value::String(account.server_uri.clone()))
    );
    assert_eq!(
        w.value(addr, Path::resource(0, sec, 1)),
        Some(Value::Boolean(false))
    );
    assert_eq!(
        w.value(addr, Path::resource(0, sec, 2)),
        Some(Value::Integer(0))
    );
    assert_eq!(
        w.value(addr, Path::resource(0, sec, 3)),
        Some(Value::Opaque(name.as_bytes().to_vec()))
    );
    assert_eq!(
        w.value(addr, Path::resource(0, sec, 5)),
        Some(Value::Opaque(name.bytes().rev().collect()))
    );
    assert_eq!(w.value(addr, Path::resource(0, sec, 10)), ssid);
    assert_eq!(w.value(addr, Path::resource(1, srv, 0)), ssid);
    assert_eq!(
        w.value(addr, Path::resource(1, srv, 1)),
        Some(Value::Integer(600))
    );
    assert_eq!(
        w.value(addr, Path::resource(1, srv, 7)),
        Some(Value::String("U".into()))
    );
    assert!(
        (0..8)
            .all(|i| w.value(addr, Path::resource(0, i, 0)) != Some(Value::String(OLD_URI.into()))),
        "the old server's account is gone"
    );
}

fn finished(w: &World, addr: u8) -> (Option<String>, ContentFormat) {
    match w.events_of(addr).as_slice() {
        [Event::Started { .. }, Event::Finishing {
            account: announced, ..
        }, Event::Finished {
            version,
            format,
            account,
            endpoint,
            ..
        }] => {
            assert_eq!(account, &account_for(endpoint));
            assert_eq!(announced, account, "the account announced before Finish");
            (version.clone(), *format)
        }
        other => panic!("not started then finished: {other:?}"),
    }
}

fn failed(w: &World, addr: u8) -> (Step, Failure) {
    match w.events_of(addr).as_slice() {
        [Event::Started { .. }, Event::Failed { step, failure, .. }]
        | [Event::Started { .. }, Event::Finishing { .. }, Event::Failed { step, failure, .. }] => {
            (step.clone(), failure.clone())
        }
        other => panic!("not started then failed: {other:?}"),
    }
}

#[test]
fn a_1_0_device_is_written_in_tlv_and_keeps_its_bootstrap_account() {
    let mut w = World::new(config());
    w.add(1, Device::new(1, "meter-10", Some("1.0")));
    w.request(1, None);
    w.run_to_end(1);
    assert_eq!(w.device(1).answers, ["2.04"]);
    assert_eq!(
        w.device(1).log,
        [
            "GET /",
            "DELETE /0",
            "DELETE /1",
            "PUT /0/1 11542",
            "PUT /1/0 11542",
            "POST /bs",
        ],
        "no Bootstrap-Read for a 1.0 device"
    );
    assert_eq!(finished(&w, 1), (Some("1.0".into()), ContentFormat::Tlv));
    assert!(w.device(1).finished);
    assert_holds_account(&w, 1, "meter-10", 1, 0);
    assert_eq!(w.core.usage().sequences, 0);
}

#[test]
fn a_1_1_device_is_written_in_senml_cbor_and_read_back_before_finish() {
    let mut w = World::new(config());
    w.add(1, Device::new(1, "meter-11", Some("1.1")));
    w.request(1, None);
    w.run_to_end(1);
    assert_eq!(
        w.device(1).log,
        [
            "GET /",
            "DELETE /0",
            "DELETE /1",
            "PUT /0/1 112",
            "PUT /1/0 112",
            "GET /1/0",
            "POST /bs",
        ]
    );
    assert_eq!(
        finished(&w, 1),
        (Some("1.1".into()), ContentFormat::SenmlCbor)
    );
    assert_holds_account(&w, 1, "meter-11", 1, 0);
}

#[test]
fn the_device_s_preferred_format_wins() {
    let mut w = World::new(config());
    w.add(1, Device::new(1, "meter-12", Some("1.2")));
    w.request(1, Some(ContentFormat::SenmlJson));
    w.run_to_end(1);
    assert_eq!(
        finished(&w, 1),
        (Some("1.2".into()), ContentFormat::SenmlJson)
    );
    assert!(w.device(1).log.contains(&"PUT /0/1 110".to_string()));
    assert!(w.device(1).log.contains(&"PUT /1/0 110".to_string()));
    assert_holds_account(&w, 1, "meter-12", 1, 0);

    // LwM2M CBOR only when asked for.
    let mut w = World::new(config());
    w.add(1, Device::new(1, "meter-13", Some("1.2")));
    w.request(1, Some(ContentFormat::Lwm2mCbor));
    w.run_to_end(1);
    assert_eq!(finished(&w, 1).1, ContentFormat::Lwm2mCbor);
    assert_holds_account(&w, 1, "meter-13", 1, 0);
}

#[test]
fn a_write_refused_as_unsupported_content_format_is_retried_in_tlv() {
    let mut w = World::new(config());
    let mut dev = Device::new(1, "meter-14", Some("1.1"));
    dev.formats = vec![ContentFormat::Tlv];
    w.add(1, dev);
    w.request(1, None);
    w.run_to_end(1);
    assert_eq!(
        w.device(1).log[3..],
        [
            "PUT /0/1 112",
            "PUT /0/1 11542",
            "PUT /1/0 11542",
            "GET /1/0",
            "POST /bs"
        ]
    );
    assert_eq!(finished(&w, 1).1, ContentFormat::Tlv);
    assert_holds_account(&w, 1, "meter-14", 1, 0);
}

#[test]
fn a_device_taking_no_format_fails_after_trying_each_once() {
    let mut w = World::new(config());
    let mut dev = Device::new(1, "meter-15", Some("1.1"));
    dev.formats = Vec::new();
    w.add(1, dev);
    w.request(1, None);
    w.run_to_end(1);
    assert_eq!(
        w.device(1).log[3..],
        [
            "PUT /0/1 112",
            "PUT /0/1 11542",
            "PUT /0/1 110",
            "PUT /0/1 11544"
        ]
    );
    assert_eq!(
        failed(&w, 1),
        (
            Step::Write(Path::instance(0, 1)),
            Failure::Code {
                code: "4.15".into()
            }
        )
    );
    assert!(!w.device(1).finished);
}

#[test]
fn a_device_refusing_object_deletes_gets_one_per_instance_and_keeps_its_bootstrap_account() {
    let mut w = World::new(config());
    let mut dev = Device::new(1, "meter-16", Some("1.1"));
    dev.refuse_object_delete = true;
    w.add(1, dev);
    w.request(1, None);
    w.run_to_end(1);
    assert_eq!(
        w.device(1).log[..6],
        [
            "GET /",
            "DELETE /0",
            "DELETE /0/3",
            "DELETE /1",
            "DELETE /1/3",
            "PUT /0/1 112"
        ]
    );
    finished(&w, 1);
    assert_holds_account(&w, 1, "meter-16", 1, 0);
}

#[test]
fn a_1_0_device_that_does_not_know_discover_is_bootstrapped_in_the_usual_layout() {
    let mut w = World::new(config());
    let mut dev = Device::new(1, "meter-17", None);
    dev.refuse_discover = true;
    w.add(1, dev);
    w.request(1, None);
    w.run_to_end(1);
    assert_eq!(finished(&w, 1), (None, ContentFormat::Tlv));
    assert_holds_account(&w, 1, "meter-17", 1, 0);
}

#[test]
fn new_instances_avoid_every_discovered_id() {
    let mut w = World::new(config());
    let mut dev = Device::new(1, "meter-18", Some("1.1"));
    // The device's bootstrap account sits at /0/1 and another server's Server instance at
    // /1/0: the account must go to /0/0 and /1/1, never over the bootstrap account.
    let bs = dev.store.remove_instance(0, 0).unwrap();
    dev.store.add_instance(0, 1, bs).unwrap();
    let srv = dev.store.remove_instance(1, 3).unwrap();
    dev.store.add_instance(1, 0, srv).unwrap();
    w.add(1, dev);
    w.request(1, None);
    w.run_to_end(1);
    finished(&w, 1);
    assert!(w.device(1).log.contains(&"PUT /0/0 112".to_string()));
    assert!(w.device(1).log.contains(&"PUT /1/1 112".to_string()));
    assert_eq!(
        w.value(1, Path::resource(0, 1, 0)),
        Some(Value::String(BS_URI.into()))
    );
    assert_eq!(
        w.value(1, Path::resource(0, 0, 0)),
        Some(Value::String(account_for("meter-18").server_uri))
    );
    assert_eq!(w.instances(1, 1), vec![1]);
}

#[test]
fn a_server_instance_read_back_different_fails_before_finish() {
    let mut w = World::new(config());
    let mut dev = Device::new(1, "meter-19", Some("1.1"));
    dev.lifetime_floor = Some(3600);
    w.add(1, dev);
    w.request(1, None);
    w.run_to_end(1);
    let (step, failure) = failed(&w, 1);
    assert_eq!(step, Step::Read(Path::instance(1, 0)));
    assert!(
        matches!(&failure, Failure::Malformed(m) if m.contains("Lifetime")),
        "{failure:?}"
    );
    assert!(!w.device(1).log.contains(&"POST /bs".to_string()));

    // Without the check, the same device is finished.
    let mut w = World::new(BootstrapConfig {
        verify_server_write: false,
        ..config()
    });
    let mut dev = Device::new(1, "meter-19", Some("1.1"));
    dev.lifetime_floor = Some(3600);
    w.add(1, dev);
    w.request(1, None);
    w.run_to_end(1);
    finished(&w, 1);
    assert!(!w.device(1).log.contains(&"GET /1/0".to_string()));
}

#[test]
fn finish_refused_with_4_06_fails_the_sequence() {
    let mut w = World::new(config());
    let mut dev = Device::new(1, "meter-20", Some("1.1"));
    dev.finish = ResponseType::NotAcceptable;
    w.add(1, dev);
    w.request(1, None);
    w.run_to_end(1);
    assert_eq!(
        failed(&w, 1),
        (
            Step::Finish,
            Failure::Code {
                code: "4.06".into()
            }
        )
    );
}

#[test]
fn finish_waits_for_the_embedder_and_is_never_sent_when_it_refuses() {
    let mut w = World::new(config());
    w.add(1, Device::new(1, "uninstallable-1", Some("1.1")));
    w.request(1, None);
    w.run_to_end(1);
    assert_eq!(
        failed(&w, 1),
        (
            Step::Finish,
            Failure::Refused("the credential could not be installed".into())
        )
    );
    assert!(
        !w.device(1).log.iter().any(|l| l == "POST /bs"),
        "no Finish reached the device: {:?}",
        w.device(1).log
    );

    // Approval comes after the Finishing event, never before: Finish follows it.
    let mut w = World::new(config());
    w.add(2, Device::new(2, "meter-21", Some("1.1")));
    w.request(2, None);
    w.run_to_end(2);
    finished(&w, 2);
    assert_eq!(w.device(2).log.last().map(String::as_str), Some("POST /bs"));
}

#[test]
fn the_sequence_completes_over_a_lossy_network_by_retransmission() {
    for seed in 1..=3 {
        let mut w = World::lossy(
            seed,
            Faults {
                loss: 0.2,
                duplicate: 0.05,
                latency: Duration::from_millis(50),
                jitter: Duration::from_millis(30),
            },
        );
        w.add(1, Device::new(1, "meter-21", Some("1.1")));
        w.request(1, None);
        w.run_to_end(1);
        assert!(
            w.net.sent().iter().any(|s| !s.delivered),
            "seed {seed}: nothing was lost"
        );
        finished(&w, 1);
        assert_holds_account(&w, 1, "meter-21", 1, 0);
    }
}

#[test]
fn a_device_that_goes_silent_mid_sequence_fails_with_a_timeout_and_is_left_alone() {
    let mut w = World::new(config());
    let mut dev = Device::new(1, "meter-22", Some("1.1"));
    dev.silent_at = Some("PUT /1/".into());
    w.add(1, dev);
    w.request(1, None);
    w.run_to_end(1);
    assert_eq!(
        failed(&w, 1),
        (Step::Write(Path::instance(1, 0)), Failure::Timeout)
    );
    let at = w.events.last().unwrap().0;
    w.run_for(Duration::from_secs(600));
    assert_eq!(w.sent_to_since(1, at + Duration::from_millis(1)), 0);
    assert_eq!(w.events_of(1).len(), 2, "no Finished ever");
    assert_eq!(w.core.usage().sequences, 0);
}

#[test]
fn a_sequence_older_than_its_timeout_fails_and_its_retransmissions_stop() {
    let mut w = World::new(BootstrapConfig {
        sequence_timeout: Duration::from_secs(20),
        ..config()
    });
    let mut dev = Device::new(1, "meter-23", Some("1.1"));
    dev.silent_at = Some("DELETE /1".into());
    w.add(1, dev);
    w.request(1, None);
    w.run_to_end(1);
    assert_eq!(
        failed(&w, 1),
        (Step::Delete(Path::object(1)), Failure::Timeout)
    );
    let at = w.events.last().unwrap().0;
    assert!(
        at >= Duration::from_secs(20) && at < Duration::from_secs(21),
        "{at:?}"
    );
    w.run_for(Duration::from_secs(300));
    assert_eq!(w.sent_to_since(1, at + Duration::from_millis(1)), 0);
}

#[test]
fn two_devices_in_parallel_get_their_own_accounts() {
    let mut w = World::new(config());
    w.add(1, Device::new(1, "meter-a", Some("1.1")));
    w.add(2, Device::new(2, "meter-b", Some("1.0")));
    w.request(1, None);
    w.request(2, None);
    w.run_until(Duration::from_secs(600), |w| w.ended(1) && w.ended(2));
    finished(&w, 1);
    finished(&w, 2);
    assert_holds_account(&w, 1, "meter-a", 1, 0);
    assert_holds_account(&w, 2, "meter-b", 1, 0);
    assert_ne!(
        account_for("meter-a").short_server_id,
        account_for("meter-b").short_server_id
    );
}

#[test]
fn a_new_bootstrap_request_mid_sequence_starts_over_and_late_answers_are_ignored() {
    let mut w = World::new(config());
    let mut dev = Device::new(1, "meter-24", Some("1.1"));
    dev.restart_at = Some("DELETE /1".into());
    w.add(1, dev);
    w.request(1, None);
    w.run_until(Duration::from_secs(600), |w| {
        w.events_of(1)
            .iter()
            .any(|e| matches!(e, Event::Finished { .. }))
    });
    let kinds: Vec<String> = w
        .events_of(1)
        .iter()
        .map(|e| match e {
            Event::Started { .. } => "started".to_string(),
            Event::Finishing { .. } => "finishing".to_string(),
            Event::Finished { .. } => "finished".to_string(),
            Event::Failed { step, failure, .. } => format!("failed {step}: {failure}"),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "started",
            "failed delete /1: the device went away",
            "started",
            "finishing",
            "finished"
        ]
    );
    // The second sequence ran from its Discover, and nothing went to /1 twice in a row
    // from the first one after the restart.
    let log = &w.device(1).log;
    assert_eq!(log.iter().filter(|l| *l == "GET /").count(), 2);
    assert_eq!(w.accounts.asked.lock().unwrap().len(), 2);
    assert_holds_account(&w, 1, "meter-24", 1, 0);
    assert_eq!(w.core.usage().sequences, 0);
}

#[test]
fn a_crowd_of_devices_at_once_is_bootstrapped_and_leaves_no_state_behind() {
    let mut w = World::lossy(
        9,
        Faults {
            loss: 0.05,
            latency: Duration::from_millis(40),
            jitter: Duration::from_millis(40),
            ..Faults::default()
        },
    );
    let addrs: Vec<u8> = (1..=60).collect();
    for &a in &addrs {
        let version = if a % 3 == 0 { "1.0" } else { "1.1" };
        w.add(a, Device::new(a, &format!("crowd-{a}"), Some(version)));
    }
    for &a in &addrs {
        w.request(a, None);
    }
    assert!(w.run_until(Duration::from_secs(600), |w| addrs
        .iter()
        .all(|a| w.ended(*a))));
    for &a in &addrs {
        let name = format!("crowd-{a}");
        finished(&w, a);
        assert_holds_account(&w, a, &name, 1, 0);
    }
    assert_eq!(w.core.usage().sequences, 0);
    assert_eq!(w.core.coap().usage().outgoing, 0);
}
