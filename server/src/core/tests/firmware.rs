//! Pull downloads in virtual time (OMA LwM2M TS 1.2 Core Appendix E.6, RFC 7959 §2.4): a
//! device fetches a package block by block, in order or not, at the block size it asks for;
//! access over DTLS only to a device a campaign targets; a second DTLS session of a
//! registered device downloads without touching its registration.
use super::*;
use crate::firmware::packages::{Package, PackageId, PackageMeta, Packages};
use crate::firmware::SharedFirmware;
use lwm2m::coap::msg::BlockOpt;
use rand::seq::SliceRandom;
use sha2::{Digest, Sha256};

const SIZE: usize = 300 * 1024;

/// A world serving one 300 KB package under `/fw`; returns it and the shared state.
fn serving() -> (World, Package, SharedFirmware) {
    let mut w = World::new();
    let bytes: Vec<u8> = (0..SIZE)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0])
        .collect();
    let sha256: [u8; 32] = Sha256::digest(&bytes).into();
    let package = Package {
        meta: PackageMeta {
            id: PackageId::of(&sha256),
            sha256,
            size: SIZE as u64,
            version: "2.0".into(),
            name: String::new(),
            added_at: SystemTime::UNIX_EPOCH,
        },
        bytes: Arc::from(bytes),
    };
    let mut packages = Packages::default();
    packages.insert(package.clone());
    let shared = SharedFirmware::new(packages);
    w.core.set_firmware("fw", Arc::new(shared.clone()));
    (w, package, shared)
}

/// Sends `GET /fw/{id}` from `addr` straight to the core, asking block `num` of `szx` if
/// given, and returns the core's answer.
fn get(w: &mut World, addr: u8, id: &str, block: Option<(u32, u8)>, mid: u16) -> Packet {
    let mut p = msg::request(lwm2m::coap::RequestType::Get, &format!("/fw/{id}"));
    p.header.set_type(lwm2m::coap::MessageType::Confirmable);
    p.header.message_id = mid;
    p.set_token(mid.to_be_bytes().to_vec());
    if let Some((num, szx)) = block {
        msg::set_block_option(
            &mut p,
            CoapOption::Block2,
            BlockOpt {
                num,
                more: false,
                szx,
            },
        );
    }
    let now = w.now();
    w.core.handle_datagram(now, addr, &p.to_bytes().unwrap());
    let mut answer = None;
    while let Some(t) = w.core.poll_transmit() {
        if t.peer == addr {
            answer = Some(Packet::from_bytes(&t.payload).unwrap());
        }
    }
    answer.expect("answered")
}

/// Fetches every block of `id` in `order` at `szx`; returns the bytes and the ETags seen.
fn fetch(w: &mut World, addr: u8, id: &str, szx: u8, order: &[u32]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let size = 16usize << szx;
    let mut out = vec![0u8; SIZE];
    let mut etags = Vec::new();
    for (i, &num) in order.iter().enumerate() {
        let r = get(w, addr, id, Some((num, szx)), 1000 + i as u16);
        assert_eq!(r.header.code, MessageClass::Response(ResponseType::Content));
        assert_eq!(msg::uint_option(&r, CoapOption::ContentFormat), Some(42));
        let b = msg::block_option(&r, CoapOption::Block2).unwrap();
        assert_eq!(
            (b.num, b.szx),
            (num, szx),
            "the device's block size honoured"
        );
        let start = num as usize * size;
        assert_eq!(b.more, start + r.payload.len() < SIZE);
        out[start..start + r.payload.len()].copy_from_slice(&r.payload);
        etags.push(r.get_first_option(CoapOption::ETag).unwrap().clone());
    }
    (out, etags)
}

fn blocks(szx: u8) -> u32 {
    SIZE.div_ceil(16 << szx) as u32
}

#[test]
fn a_package_is_fetched_block_by_block_in_order_and_in_random_order() {
    let (mut w, package, _) = serving();
    let id = package.meta.id.0.clone();
    // Plain CoAP (no DTLS principal): anyone may download.
    let in_order: Vec<u32> = (0..blocks(6)).collect();
    let (bytes, etags) = fetch(&mut w, 1, &id, 6, &in_order);
    assert_eq!(&bytes[..], &package.bytes[..]);
    assert!(etags.iter().all(|e| e[..] == package.meta.sha256[..8]));

    let mut shuffled: Vec<u32> = (0..blocks(2)).collect();
    shuffled.shuffle(&mut StdRng::seed_from_u64(3));
    let (bytes, etags) = fetch(&mut w, 2, &id, 2, &shuffled);
    assert_eq!(&bytes[..], &package.bytes[..]);
    assert!(etags.iter().all(|e| e[..] == package.meta.sha256[..8]));
    // Each block is cut from the shared package: no copy is kept per downloading device.
    assert_eq!(w.core.coap().usage().block2_bytes, 0);
}

#[test]
fn every_block_size_the_device_asks_for_is_honoured() {
    let (mut w, package, _) = serving();
    let id = package.meta.id.0.clone();
    for szx in 0..=6u8 {
        // First, a middle and the last block: each the size asked for, the last one short.
        let last = blocks(szx) - 1;
        for num in [0, last / 2, last] {
            let r = get(
                &mut w,
                1,
                &id,
                Some((num, szx)),
                10 * u16::from(szx) + num as u16 % 7,
            );
            let b = msg::block_option(&r, CoapOption::Block2).unwrap();
            assert_eq!(b.szx, szx);
            let start = num as usize * (16 << szx);
            let end = (start + (16 << szx)).min(SIZE);
            assert_eq!(&r.payload[..], &package.bytes[start..end]);
        }
    }
    // Without a Block2 option the first block comes at the server's own size (1024).
    let r = get(&mut w, 1, &id, None, 999);
    assert_eq!(r.payload.len(), 1024);
    assert!(msg::block_option(&r, CoapOption::Block2).unwrap().more);
}

#[test]
fn over_dtls_only_a_targeted_device_may_download() {
    let (mut w, package, shared) = serving();
    let id = package.meta.id.0.clone();
    let addr: std::net::SocketAddr = "192.0.2.7:4000".parse().unwrap();
    w.core.peer_authenticated(1, Arc::from("meter-a"), addr);
    let forbidden = MessageClass::Response(ResponseType::Forbidden);
    assert_eq!(get(&mut w, 1, &id, Some((0, 6)), 1).header.code, forbidden);
    shared
        .0
        .write()
        .unwrap()
        .target("meter-b", package.meta.id.clone());
    assert_eq!(get(&mut w, 1, &id, Some((0, 6)), 2).header.code, forbidden);
    shared
        .0
        .write()
        .unwrap()
        .target("meter-a", package.meta.id.clone());
    let r = get(&mut w, 1, &id, Some((0, 6)), 3);
    assert_eq!(r.header.code, MessageClass::Response(ResponseType::Content));
    shared
        .0
        .write()
        .unwrap()
        .untarget("meter-a", &package.meta.id);
    assert_eq!(get(&mut w, 1, &id, Some((0, 6)), 4).header.code, forbidden);
    // An unknown package is 4.04 for everyone, and only GET is allowed.
    let unknown = MessageClass::Response(ResponseType::NotFound);
    assert_eq!(
        get(&mut w, 1, "0000000000000000", None, 5).header.code,
        unknown
    );
    assert_eq!(
        get(&mut w, 2, "0000000000000000", None, 6).header.code,
        unknown
    );
    assert_eq!(
        get(&mut w, 2, "../state.redb", None, 7).header.code,
        unknown
    );
    let mut post = msg::request(lwm2m::coap::RequestType::Post, &format!("/fw/{id}"));
    post.header.set_type(lwm2m::coap::MessageType::Confirmable);
    post.header.message_id = 8;
    let now = w.now();
    w.core.handle_datagram(now, 2, &post.to_bytes().unwrap());
    let r = Packet::from_bytes(&w.core.poll_transmit().unwrap().payload).unwrap();
    assert_eq!(
        r.header.code,
        MessageClass::Response(ResponseType::MethodNotAllowed)
    );
}

#[test]
fn a_second_dtls_session_downloads_beside_the_registration() {
    let (mut w, package, shared) = serving();
    let id = package.meta.id.0.clone();
    let a: std::net::SocketAddr = "192.0.2.7:4000".parse().unwrap();
    let b: std::net::SocketAddr = "192.0.2.7:4001".parse().unwrap();
    w.core.peer_authenticated(1, Arc::from("meter-a"), a);
    let loc = w.register(1, "meter-a", 300, true);
    shared
        .0
        .write()
        .unwrap()
        .target("meter-a", package.meta.id.clone());
    // The device opens a second session with the same credential for the download (as
    // Anjay does): both live, the registration stays on the first.
    w.core.peer_authenticated(2, Arc::from("meter-a"), b);
    let order: Vec<u32> = (0..blocks(6)).collect();
    let (bytes, _) = fetch(&mut w, 2, &id, 6, &order);
    assert_eq!(&bytes[..], &package.bytes[..]);
    assert_eq!(w.core.device_count(), 1);
    let reg = w.core.registration("meter-a").unwrap();
    assert_eq!(reg.address, a.to_string());
    assert_eq!(reg.location, loc);
    // The download session ending leaves the registration and its session alone.
    w.core.peer_closed(2);
    let id2 = w.send_from(1, Update::default().to_coap(&loc));
    assert_eq!(
        w.reply(1, id2).unwrap().header.code,
        MessageClass::Response(ResponseType::Changed)
    );
    // Commands still go to the registration's session, not the download's.
    let since = w.net.sent().len();
    w.submit("meter-a", read(Path::resource(3, 0, 0)));
    assert_eq!(w.sent_to(1, since), 1);
    assert_eq!(w.sent_to(2, since), 0);
    assert!(!w
        .events
        .iter()
        .any(|e| matches!(e, DeviceEvent::Deregistered { .. })));
}
