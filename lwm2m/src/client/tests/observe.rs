//! Information Reporting (Core §6.4) with the notification attributes of §5.1.2: which
//! value changes notify, when pmin and pmax make notifications happen, composites, and every
//! way an observation ends.
use super::*;
use crate::coap::{CancelMode, MessageType};
use crate::content::Record;
use crate::model::{Instance, Resource, Value};

fn p(s: &str) -> Path {
    Path::parse(s).unwrap()
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn device() -> Net {
    let mut store = ObjectStore::standard("dev-1");
    store
        .add_instance(
            3303,
            0,
            Instance::from([(5700, Resource::Single(Value::Float(21.5)))]),
        )
        .unwrap();
    let mut c = config();
    c.max_observations = 4;
    Net::registered_with(c, store)
}

/// Observes `path` in `format`; returns the request and the time the first answer came.
fn observe(net: &mut Net, path: &str, format: ContentFormat) -> RequestId {
    let req = DownlinkRequest::Observe { path: p(path) }
        .to_coap(format)
        .unwrap();
    let id = net.send(req);
    assert!(net.run_until(secs(5.0), |n| n.outcome(id).is_some()));
    let first = net.outcome(id).unwrap().unwrap();
    assert_eq!(code(&first), "2.05");
    assert!(
        msg::observe(&first).is_some(),
        "the observation is accepted"
    );
    id
}

fn write_attributes(net: &mut Net, path: &str, query: &str) {
    let resp = net.ask(msg::request(RequestType::Put, &format!("{path}?{query}")));
    assert_eq!(code(&resp), "2.04", "{path}?{query}");
}

fn set(net: &mut Net, path: &str, v: Value) {
    let now = net.now();
    net.client.set_value(now, &p(path), v).unwrap();
    net.flush();
}

/// The values notified for `id` (observing `path`), with the times they arrived.
fn notified(net: &Net, id: RequestId, path: &str) -> Vec<(Duration, Value)> {
    net.notifications(id)
        .into_iter()
        .map(|(at, n)| match decode_at(&n, path) {
            Node::Resource(Resource::Single(v)) | Node::ResourceInstance(v) => (at, v),
            other => panic!("{other:?}"),
        })
        .collect()
}

fn values(net: &Net, id: RequestId, path: &str) -> Vec<Value> {
    notified(net, id, path)
        .into_iter()
        .map(|(_, v)| v)
        .collect()
}

#[test]
fn every_change_notifies_without_attributes() {
    let mut net = device();
    let id = observe(&mut net, "/3/0/9", ContentFormat::SenmlCbor);
    for v in [80, 80, 79] {
        set(&mut net, "/3/0/9", Value::Integer(v));
        net.run_for(secs(1.0));
    }
    assert_eq!(
        values(&net, id, "/3/0/9"),
        [Value::Integer(80), Value::Integer(79)]
    );
    assert_eq!(net.client.observation_count(), 1);
}

#[test]
fn pmin_holds_changes_back_until_it_ends() {
    let mut net = device();
    write_attributes(&mut net, "/3/0/9", "pmin=10");
    let id = observe(&mut net, "/3/0/9", ContentFormat::SenmlCbor);
    let t0 = net.elapsed() - secs(0.05); // when the client answered
    net.run_for(secs(1.0));
    set(&mut net, "/3/0/9", Value::Integer(80));
    net.run_for(secs(1.0));
    set(&mut net, "/3/0/9", Value::Integer(75));
    net.run_for(secs(20.0));
    let got = notified(&net, id, "/3/0/9");
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].1, Value::Integer(75), "the latest value");
    assert!(
        (got[0].0 - t0).as_secs_f64() - 10.05 < 1e-3,
        "at the end of pmin: {got:?}"
    );
    // pmin has passed since: the next change goes at once.
    set(&mut net, "/3/0/9", Value::Integer(70));
    net.run_for(secs(1.0));
    assert_eq!(notified(&net, id, "/3/0/9").len(), 2);
    // A change that is undone before pmin ends is not reported.
    set(&mut net, "/3/0/9", Value::Integer(71));
    set(&mut net, "/3/0/9", Value::Integer(70));
    net.run_for(secs(30.0));
    assert_eq!(notified(&net, id, "/3/0/9").len(), 2);
}

#[test]
fn pmax_notifies_without_changes() {
    let mut net = device();
    write_attributes(&mut net, "/3/0/9", "pmax=30");
    let id = observe(&mut net, "/3/0/9", ContentFormat::Text);
    let t0 = net.elapsed() - secs(0.05);
    net.run_for(secs(100.0));
    let got = notified(&net, id, "/3/0/9");
    let offsets: Vec<f64> = got.iter().map(|(at, _)| (*at - t0).as_secs_f64()).collect();
    assert_eq!(offsets.len(), 3, "{offsets:?}");
    for (k, off) in offsets.iter().enumerate() {
        let want = 30.0 * (k + 1) as f64 + 0.05;
        assert!((off - want).abs() < 1e-3, "{offsets:?}");
    }
    assert!(got.iter().all(|(_, v)| *v == Value::Integer(87)));
    // A change restarts the period.
    set(&mut net, "/3/0/9", Value::Integer(50));
    let t1 = net.elapsed();
    net.run_for(secs(40.0));
    let got = notified(&net, id, "/3/0/9");
    assert_eq!(got.len(), 5);
    assert!(((got[4].0 - t1).as_secs_f64() - 30.05).abs() < 1e-3);
}

#[test]
fn gt_and_lt_notify_when_crossed() {
    let mut net = device();
    write_attributes(&mut net, "/3/0/9", "gt=50&lt=20");
    let id = observe(&mut net, "/3/0/9", ContentFormat::SenmlCbor);
    for v in [60, 45, 40, 15, 18, 25, 55, 58] {
        set(&mut net, "/3/0/9", Value::Integer(v));
        net.run_for(secs(1.0));
    }
    assert_eq!(
        values(&net, id, "/3/0/9"),
        [45, 15, 25, 55].map(Value::Integer),
        "87→60 stays above gt; 45 crosses it; 15 crosses lt; 25 back over lt; 55 over gt"
    );
}

#[test]
fn st_notifies_steps_from_the_last_notified_value() {
    let mut net = device();
    write_attributes(&mut net, "/3/0/9", "st=10");
    let id = observe(&mut net, "/3/0/9", ContentFormat::SenmlCbor);
    for v in [90, 80, 76, 70, 66] {
        set(&mut net, "/3/0/9", Value::Integer(v));
        net.run_for(secs(1.0));
    }
    assert_eq!(values(&net, id, "/3/0/9"), [76, 66].map(Value::Integer));
}

#[test]
fn attributes_inherit_and_default_from_the_server_object() {
    let mut net = device();
    // Default Minimum Period of the Server object: 5 s.
    set(&mut net, "/1/0/2", Value::Integer(5));
    write_attributes(&mut net, "/3303/0", "pmax=60");
    let id = observe(&mut net, "/3303/0/5700", ContentFormat::SenmlCbor);
    let t0 = net.elapsed() - secs(0.05);
    set(&mut net, "/3303/0/5700", Value::Float(22.0));
    net.run_for(secs(70.0));
    let offsets: Vec<f64> = notified(&net, id, "/3303/0/5700")
        .iter()
        .map(|(at, _)| (*at - t0).as_secs_f64())
        .collect();
    // The change waits for the default pmin; pmax (from the instance) counts from there.
    assert_eq!(offsets.len(), 2, "{offsets:?}");
    assert!(
        (offsets[0] - 5.05).abs() < 1e-3 && (offsets[1] - 65.05).abs() < 1e-3,
        "{offsets:?}"
    );
    // Attributes changed later apply to the running observation.
    write_attributes(&mut net, "/3303/0/5700", "pmin=0&pmax=10");
    net.run_for(secs(25.0));
    // pmax 10 counts from the last notification (65 s): 75, 85, 95.
    assert_eq!(notified(&net, id, "/3303/0/5700").len(), 5);
}

#[test]
fn instance_observation_notifies_and_ends_with_the_instance() {
    let mut net = device();
    let id = observe(&mut net, "/3303/0", ContentFormat::SenmlJson);
    set(&mut net, "/3303/0/5700", Value::Float(23.0));
    net.run_for(secs(1.0));
    let n = net.notifications(id);
    assert_eq!(n.len(), 1);
    let Node::Instance(inst) = decode_at(&n[0].1, "/3303/0") else {
        panic!()
    };
    assert_eq!(inst[&5700], Resource::Single(Value::Float(23.0)));
    assert_eq!(
        code(&net.ask(msg::request(RequestType::Delete, "/3303/0"))),
        "2.02"
    );
    net.run_for(secs(1.0));
    let n = net.notifications(id);
    assert_eq!(code(&n[1].1), "4.04", "the observed instance is gone");
    assert_eq!(net.client.observation_count(), 0);
    assert_eq!(net.client.usage().endpoint.observers, 0);
}

#[test]
fn observe_composite_notifies_composite_payloads() {
    let mut net = device();
    let req = DownlinkRequest::ObserveComposite {
        paths: vec![p("/3/0/9"), p("/3/0/10")],
    };
    let id = net.send(req.to_coap(ContentFormat::SenmlCbor).unwrap());
    assert!(net.run_until(secs(5.0), |n| n.outcome(id).is_some()));
    let first = net.outcome(id).unwrap().unwrap();
    assert!(msg::observe(&first).is_some());
    set(&mut net, "/3/0/10", Value::Integer(400));
    set(&mut net, "/3/0/0", Value::String("Other".into())); // not observed
    net.run_for(secs(1.0));
    let n = net.notifications(id);
    assert_eq!(n.len(), 1);
    assert_eq!(format_of(&n[0].1), Some(ContentFormat::SenmlCbor));
    let records = content::decode_composite(
        ContentFormat::SenmlCbor,
        &n[0].1.payload,
        &*crate::client::bundled_registry(),
    )
    .unwrap();
    assert_eq!(
        records,
        [
            Record {
                path: p("/3/0/9"),
                value: Some(Value::Integer(87)),
                time: None
            },
            Record {
                path: p("/3/0/10"),
                value: Some(Value::Integer(400)),
                time: None
            },
        ]
    );
}

#[test]
fn cancellation_drops_the_state() {
    let mut net = device();
    let active = observe(&mut net, "/3/0/9", ContentFormat::SenmlCbor);
    let passive = observe(&mut net, "/3/0/10", ContentFormat::SenmlCbor);
    assert_eq!(net.client.observation_count(), 2);
    let now = net.now();
    net.server
        .cancel_observe(now, active, CancelMode::Active)
        .unwrap();
    net.flush();
    net.run_for(secs(1.0));
    assert_eq!(
        net.client.observation_count(),
        1,
        "GET with Observe=1 ends it"
    );
    let now = net.now();
    net.server
        .cancel_observe(now, passive, CancelMode::Passive)
        .unwrap();
    set(&mut net, "/3/0/10", Value::Integer(1));
    net.run_for(secs(1.0));
    assert_eq!(
        net.client.observation_count(),
        0,
        "the RST to the notification ends it"
    );
    assert_eq!(net.client.usage().endpoint.observers, 0);
}

#[test]
fn every_nth_notification_is_confirmable() {
    let mut store = ObjectStore::standard("dev-1");
    store.add_object(3303);
    let mut c = config();
    c.notify_con_every = 2;
    let mut net = Net::registered_with(c, store);
    observe(&mut net, "/3/0/9", ContentFormat::SenmlCbor);
    let before = net.client_tx().len();
    for v in 1..=4 {
        set(&mut net, "/3/0/9", Value::Integer(v));
        net.run_for(secs(1.0));
    }
    let types: Vec<MessageType> = net.client_tx()[before..]
        .iter()
        .filter(|(_, p)| msg::observe(p).is_some())
        .map(|(_, p)| p.header.get_type())
        .collect();
    use MessageType::{Confirmable as Con, NonConfirmable as Non};
    assert_eq!(types, [Non, Con, Non, Con]);
    // Default Notification Mode = 1 (CON) makes all confirmable.
    set(&mut net, "/1/0/26", Value::Integer(1));
    set(&mut net, "/3/0/9", Value::Integer(9));
    net.run_for(secs(1.0));
    assert_eq!(
        net.client_tx().last().map(|(_, p)| p.header.get_type()),
        Some(Con)
    );
}

#[test]
fn observations_are_bounded_and_end_with_a_new_registration() {
    let mut net = device();
    for path in ["/3/0/0", "/3/0/1", "/3/0/2", "/3/0/3"] {
        observe(&mut net, path, ContentFormat::Text);
    }
    // The fifth is served as a plain read.
    let id = net.send(
        DownlinkRequest::Observe { path: p("/3/0/9") }
            .to_coap(ContentFormat::Text)
            .unwrap(),
    );
    assert!(net.run_until(secs(5.0), |n| n.outcome(id).is_some()));
    let resp = net.outcome(id).unwrap().unwrap();
    assert_eq!(code(&resp), "2.05");
    assert!(msg::observe(&resp).is_none());
    assert_eq!(net.client.observation_count(), 4);
    // An Update answered 4.04 makes the client register again, which ends them all.
    net.registrar = {
        let mut inner = accept_all();
        Box::new(move |req: &Packet| {
            if msg::uri_path(req).starts_with("/rd/") {
                Some(msg::response(ResponseType::NotFound))
            } else {
                inner(req)
            }
        })
    };
    let now = net.now();
    net.client.update(now).unwrap();
    net.flush();
    net.run_for(secs(1.0));
    assert_eq!(net.client.observation_count(), 0);
    assert_eq!(net.client.usage().endpoint.observers, 0);
}

#[test]
fn server_writes_notify_observers() {
    let mut net = device();
    let id = observe(&mut net, "/3/0/13", ContentFormat::Text);
    let resp = net.ask(with_payload(
        msg::request(RequestType::Put, "/3/0/13"),
        ContentFormat::Text,
        b"1700000500",
    ));
    assert_eq!(code(&resp), "2.04");
    net.run_for(secs(1.0));
    assert_eq!(values(&net, id, "/3/0/13"), [Value::Time(1_700_000_500)]);
}
