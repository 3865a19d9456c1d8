//! Queue mode (Transport §6.5): the client sleeps `awake_time` after its last exchange,
//! drops what arrives while asleep, and wakes with a Registration Update.
use super::*;
use crate::model::Value;

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn queued() -> Net {
    let mut c = config();
    c.queue_mode = true;
    Net::registered_with(c, ObjectStore::standard("dev-1"))
}

fn event_times(net: &Net, want: &ClientEvent) -> Vec<f64> {
    net.events
        .iter()
        .filter(|(_, e)| e == want)
        .map(|(at, _)| at.as_secs_f64())
        .collect()
}

#[test]
fn registers_with_q_and_sleeps_after_the_awake_time() {
    let mut c = config();
    c.queue_mode = true;
    let mut net = Net::new(c, ObjectStore::standard("dev-1"));
    net.start_client();
    net.run_for(secs(200.0));
    assert_eq!(
        msg::uri_query(&net.seen[0].request)
            .last()
            .map(String::as_str),
        Some("Q")
    );
    // The 2.01 arrived at 0.1 s; 93 s later (MAX_TRANSMIT_WAIT) the radio goes off.
    let sleeping = event_times(&net, &ClientEvent::Sleeping);
    assert_eq!(sleeping.len(), 1);
    assert!((sleeping[0] - 93.1).abs() < 1e-6, "{sleeping:?}");
    assert!(!net.client.is_awake());
}

#[test]
fn asleep_it_drops_requests_and_sends_nothing() {
    let mut net = queued();
    net.run_for(secs(100.0));
    assert!(!net.client.is_awake());
    let sent_before = net.client_tx().len();
    let id = net.send(request(RequestType::Get, "/3/0/9", None));
    assert!(net.run_until(secs(200.0), |n| n.outcome(id).is_some()));
    assert_eq!(
        net.outcome(id),
        Some(Err(crate::coap::ExchangeError::Timeout))
    );
    assert_eq!(net.client_tx().len(), sent_before, "the radio is off");
    assert_eq!(
        net.client.stats().dropped_asleep,
        5,
        "the request and its 4 retransmissions"
    );
}

#[test]
fn wakes_with_an_update_then_answers_the_queued_request() {
    let mut net = queued();
    net.run_for(secs(100.0));
    assert!(!net.client.is_awake());
    let now = net.now();
    net.client.wake(now);
    net.flush();
    assert!(net.client.is_awake());
    // The server holds its request until the Update says the client is reachable.
    assert!(net.run_until(secs(5.0), |n| !n.seen_at("/rd/r1").is_empty()));
    let read = net.ask(request(
        RequestType::Get,
        "/3/0/9",
        Some(ContentFormat::Text),
    ));
    assert_eq!(code(&read), "2.05");
    assert_eq!(read.payload, b"87");
    let woke = event_times(&net, &ClientEvent::Woke);
    assert_eq!(woke.len(), 1);
    // Awake for 93 s after the answer, then asleep again.
    let answered = net.elapsed().as_secs_f64() - 0.05;
    net.run_for(secs(200.0));
    let sleeping = event_times(&net, &ClientEvent::Sleeping);
    assert_eq!(sleeping.len(), 2, "{sleeping:?}");
    assert!(
        (sleeping[1] - (answered + 93.0)).abs() < 1e-6,
        "{sleeping:?} {answered}"
    );
}

#[test]
fn the_update_timer_wakes_the_client_once() {
    let mut net = queued();
    net.run_for(secs(400.0));
    let woke = event_times(&net, &ClientEvent::Woke);
    assert_eq!(woke.len(), 1);
    assert!((woke[0] - 270.1).abs() < 1e-6, "{woke:?}");
    let updates = net.seen_at("/rd/r1");
    assert_eq!(updates.len(), 1, "the wake-up is the Update: {updates:?}");
    let sleeping = event_times(&net, &ClientEvent::Sleeping);
    assert_eq!(sleeping.len(), 2);
    assert!((sleeping[1] - (270.2 + 93.0)).abs() < 1e-6, "{sleeping:?}");
}

#[test]
fn a_notification_wakes_the_client_behind_an_update() {
    let mut net = queued();
    let req = DownlinkRequest::Observe {
        path: Path::resource(3, 0, 9),
    }
    .to_coap(ContentFormat::Text)
    .unwrap();
    let id = net.send(req);
    net.run_for(secs(100.0));
    assert!(!net.client.is_awake());
    let before = net.client_tx().len();
    let now = net.now();
    net.client
        .set_value(now, &Path::resource(3, 0, 9), Value::Integer(50))
        .unwrap();
    net.flush();
    net.run_for(secs(1.0));
    let sent: Vec<String> = net.client_tx()[before..]
        .iter()
        .map(|(_, p)| format!("{} {}", msg::code_string(p), msg::uri_path(p)))
        .collect();
    assert_eq!(
        sent.first().map(String::as_str),
        Some("0.02 /rd/r1"),
        "{sent:?}"
    );
    assert_eq!(net.notifications(id).len(), 1);
    assert_eq!(event_times(&net, &ClientEvent::Woke).len(), 1);
}

#[test]
fn without_queue_mode_it_never_sleeps() {
    let mut net = Net::registered();
    net.run_for(secs(1000.0));
    assert!(net.client.is_awake());
    assert!(event_times(&net, &ClientEvent::Sleeping).is_empty());
}
