//! A firmware package pushed as a Write of /5/0/0 (OMA LwM2M TS 1.2 Core E.6) through the
//! command path, uploaded with Block1 (RFC 7959 §2.5): interrupted when the device goes
//! silent part-way, and resumed at the block the interruption names.
use super::*;
use lwm2m::coap::BlockOpt;
use lwm2m::ops::dm::WriteMode;
use std::cell::RefCell;
use std::rc::Rc;

const PACKAGE: usize = 40_000;

fn package() -> Vec<u8> {
    (0..PACKAGE).map(|i| (i * 7 % 251) as u8).collect()
}

fn write_package() -> DownlinkRequest {
    DownlinkRequest::Write {
        path: Path::resource(5, 0, 0),
        mode: WriteMode::Replace,
        node: Node::Resource(Resource::Single(Value::Opaque(package()))),
    }
}

fn push(upload: UploadOptions) -> Command {
    Command {
        format: Some(ContentFormat::Opaque),
        // Each block gives up after a few seconds, so the interruption comes while the
        // device still holds the blocks it acknowledged (its block_lifetime is 247 s).
        timeout: Some(Duration::from_secs(5)),
        upload: Some(upload),
        ..Command::new("dev-fw", write_package())
    }
}

/// The Block1 options of the requests the server sent `addr`, from the `since`th datagram.
fn blocks_to(w: &World, addr: u8, since: usize) -> Vec<BlockOpt> {
    w.net
        .sent()
        .iter()
        .skip(since)
        .filter(|s| s.from == SERVER && s.to == addr)
        .filter_map(|s| {
            let p = Packet::from_bytes(&s.bytes).ok()?;
            msg::block_option(&p, CoapOption::Block1)
        })
        .collect()
}

fn continues_from(w: &World, addr: u8) -> usize {
    w.net
        .sent()
        .iter()
        .filter(|s| {
            s.from == addr
                && Packet::from_bytes(&s.bytes)
                    .is_ok_and(|p| p.header.code == MessageClass::Response(ResponseType::Continue))
        })
        .count()
}

fn outcome_of(w: &World, id: CommandId) -> Option<Outcome> {
    w.results()
        .into_iter()
        .find_map(|(i, o)| (i == id).then_some(o))
}

#[test]
fn an_interrupted_upload_fails_with_interrupted_and_resumes_at_its_next_block() {
    let mut w = World::new();
    let written = Rc::new(RefCell::new(Vec::new()));
    let sink = written.clone();
    w.answer = Box::new(move |_, req| {
        sink.borrow_mut().push(req.request.payload.clone());
        Some(msg::response(ResponseType::Changed))
    });
    w.register(1, "dev-fw", 3600, false);
    // Some latency, so that the upload runs over steps of virtual time and the device can
    // go silent part-way.
    w.net.faults.latency = Duration::from_millis(20);

    let szx = 5;
    let first = push(UploadOptions {
        start_block: 0,
        szx: Some(szx),
        interval: None,
    });
    let now = w.now();
    let id = w.core.submit(now, first);
    w.flush();
    assert!(w.run_until(Duration::from_secs(60), |w| continues_from(w, 1) >= 10));
    w.sleep(1, true);
    assert!(w.run_until(Duration::from_secs(3600), |w| outcome_of(w, id).is_some()));
    w.sleep(1, false);
    assert_eq!(
        outcome_of(&w, id),
        Some(Err(CommandError::Interrupted {
            next_block: 10,
            szx
        }))
    );
    assert!(written.borrow().is_empty());

    let since = w.net.sent().len();
    let resumed = push(UploadOptions {
        start_block: 10,
        szx: Some(szx),
        interval: None,
    });
    let now = w.now();
    let id = w.core.submit(now, resumed);
    w.flush();
    assert!(w.run_until(Duration::from_secs(3600), |w| outcome_of(w, id).is_some()));
    assert_eq!(outcome_of(&w, id), Some(Ok(DmResponse::Changed)));
    let blocks = blocks_to(&w, 1, since);
    assert_eq!(
        blocks.first().map(|b| (b.num, b.szx)),
        Some((10, szx)),
        "the first block sent is start_block"
    );
    assert_eq!(written.borrow().len(), 1);
    assert!(
        written.borrow()[0] == package(),
        "the device got the whole package"
    );
}

#[test]
fn an_upload_starting_past_the_package_is_invalid() {
    let mut w = World::new();
    w.register(1, "dev-fw", 3600, false);
    let now = w.now();
    let id = w.core.submit(
        now,
        push(UploadOptions {
            start_block: 1000,
            szx: Some(5),
            interval: None,
        }),
    );
    w.flush();
    assert!(matches!(
        outcome_of(&w, id),
        Some(Err(CommandError::Invalid(_)))
    ));
    let bad_szx = push(UploadOptions {
        szx: Some(7),
        ..UploadOptions::default()
    });
    let id = w.core.submit(now, bad_szx);
    w.flush();
    assert!(matches!(
        outcome_of(&w, id),
        Some(Err(CommandError::Invalid(_)))
    ));
}
