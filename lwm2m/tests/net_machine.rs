//! `lwm2m::net::machine` over real loopback sockets: datagrams reach the machine with their
//! peer, replies leave through the socket of the peer's family, and a breaking command stops
//! the driver and hands the machine back; with two socket groups (listeners), a reply leaves
//! from the group its request came in on.
use lwm2m::coap::Transmit;
use lwm2m::net::machine::{self, Listener, Machine, Sockets};
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// Answers every datagram with "echo:" and the datagram; counts what it saw.
#[derive(Default)]
struct Echo {
    out: Vec<(Listener, Transmit<SocketAddr>)>,
    seen: usize,
}

impl Machine for Echo {
    type Command = ();
    fn handle_datagram(&mut self, _now: Instant, l: Listener, peer: SocketAddr, data: &[u8]) {
        self.seen += 1;
        let mut payload = if l == 0 {
            b"echo:".to_vec()
        } else {
            format!("echo{l}:").into_bytes()
        };
        payload.extend_from_slice(data);
        self.out.push((l, Transmit { peer, payload }));
    }
    fn handle_timeout(&mut self, _now: Instant) {}
    fn handle_command(&mut self, _now: Instant, (): ()) -> ControlFlow<()> {
        ControlFlow::Break(())
    }
    fn poll_transmit(&mut self) -> Option<(Listener, Transmit<SocketAddr>)> {
        self.out.pop()
    }
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
}

async fn ask(from: &str, to: SocketAddr, what: &[u8]) -> std::io::Result<Vec<u8>> {
    ask_from(from, to, what).await.map(|(reply, _)| reply)
}

/// The reply and the address it came from.
async fn ask_from(
    from: &str,
    to: SocketAddr,
    what: &[u8],
) -> std::io::Result<(Vec<u8>, SocketAddr)> {
    let s = UdpSocket::bind(from).await?;
    s.send_to(what, to).await?;
    let mut buf = [0u8; 64];
    let (n, src) = tokio::time::timeout(Duration::from_secs(30), s.recv_from(&mut buf)).await??;
    Ok((buf.get(..n).unwrap_or_default().to_vec(), src))
}

#[tokio::test]
async fn each_listener_answers_from_its_own_socket() {
    let mut sockets = Sockets::empty();
    let plain = sockets
        .bind_listener(&["127.0.0.1:0".parse().unwrap()], 0, 0)
        .unwrap();
    let secure = sockets
        .bind_listener(&["127.0.0.1:0".parse().unwrap()], 0, 1)
        .unwrap();
    assert_eq!(sockets.listener_addrs(1), secure);
    let (stop, commands) = mpsc::channel(1);
    let driver = tokio::spawn(machine::run(sockets, Echo::default(), commands));
    let (reply, src) = ask_from("127.0.0.1:0", secure[0], b"s").await.unwrap();
    assert_eq!((reply.as_slice(), src), (&b"echo1:s"[..], secure[0]));
    let (reply, src) = ask_from("127.0.0.1:0", plain[0], b"p").await.unwrap();
    assert_eq!((reply.as_slice(), src), (&b"echo:p"[..], plain[0]));
    stop.send(()).await.unwrap();
    driver.await.unwrap();
}

#[tokio::test]
async fn routes_ipv4_and_ipv6_and_stops_on_command() {
    let v6 = "[::1]:0".parse().unwrap();
    let binds: Vec<SocketAddr> = match UdpSocket::bind(v6).await {
        Ok(_) => vec!["127.0.0.1:0".parse().unwrap(), v6],
        Err(_) => {
            eprintln!("no IPv6 loopback here: testing IPv4 only");
            vec!["127.0.0.1:0".parse().unwrap()]
        }
    };
    let sockets = Sockets::bind(&binds, 1 << 20).unwrap();
    let addrs = sockets.local_addrs().to_vec();
    let (stop, commands) = mpsc::channel(1);
    let driver = tokio::spawn(machine::run(sockets, Echo::default(), commands));
    assert_eq!(
        ask("127.0.0.1:0", addrs[0], b"v4").await.unwrap(),
        b"echo:v4"
    );
    if let Some(a6) = addrs.get(1) {
        assert_eq!(ask("[::1]:0", *a6, b"v6").await.unwrap(), b"echo:v6");
    }
    stop.send(()).await.unwrap();
    let echo = tokio::time::timeout(Duration::from_secs(30), driver)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(echo.seen, addrs.len());
}

#[tokio::test]
async fn unavailable_ipv6_address_is_skipped_only_by_bind_available() {
    // 2001:db8::/32 is the documentation prefix: no host has it, and binding sends nothing.
    let addrs: Vec<SocketAddr> = vec![
        "127.0.0.1:0".parse().unwrap(),
        "[2001:db8::1]:0".parse().unwrap(),
    ];
    let s = Sockets::bind_available(&addrs, 0).unwrap();
    assert_eq!(s.local_addrs().len(), 1);
    assert!(s.local_addrs()[0].is_ipv4());
    assert!(
        Sockets::bind(&addrs, 0).is_err(),
        "plain bind reports every failure"
    );
    // With nothing else bound, the failure is reported.
    assert!(Sockets::bind_available(&addrs[1..], 0).is_err());
}
