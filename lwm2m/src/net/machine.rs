//! One socket driver for any sans-IO protocol machine: the server core, a device, the CoAP
//! endpoint behind a [`Handle`](super::Handle) (RFC 7252 over UDP, RFC 6347 DTLS records are
//! datagrams like any other).
//!
//! Sockets come in groups, each with a [`Listener`] number — plain CoAP and CoAP over DTLS, say
//! — so one machine serves both: it learns which group a datagram arrived on and says which
//! group a reply leaves from.
//!
//! A [`Machine`] takes datagrams, commands and time, and gives datagrams and the next
//! deadline — the shape of every core in this project. [`run`] binds nothing itself: it is
//! handed [`Sockets`] (one or more, IPv4 and IPv6), spawns one reader task per socket feeding
//! one bounded channel, and otherwise runs everything on the machine's task: receive in
//! batches, run timers, take commands, send what the machine produced, then call
//! [`Machine::flush`] so the machine can hand its events on. No task per peer.
//!
//! Commands come from an [`Inbox`]: one channel, or a machine's own merge of several
//! sources (channels, futures it waits on) polled directly, so no task has to copy one
//! channel into another.
use crate::coap::Transmit;
use std::io;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// Datagrams waiting between the socket readers and the machine.
const INBOUND_CAPACITY: usize = 8192;
/// Datagrams taken from the channel after one wake-up before replies are sent.
const BATCH: usize = 64;

/// Which group of sockets a datagram came in on, or leaves from.
pub type Listener = u8;

/// A sans-IO protocol machine that [`run`] can drive.
pub trait Machine {
    /// What the application sends in.
    type Command: Send + 'static;
    /// One datagram from `peer`, received on a socket of `listener`.
    fn handle_datagram(&mut self, now: Instant, listener: Listener, peer: SocketAddr, data: &[u8]);
    /// The deadline from [`poll_timeout`](Self::poll_timeout) passed (early calls are fine).
    fn handle_timeout(&mut self, now: Instant);
    /// A command; `Break` stops the driver after it has sent what is queued.
    fn handle_command(&mut self, now: Instant, command: Self::Command) -> ControlFlow<()>;
    /// The next datagram to send, and the listener whose socket sends it.
    fn poll_transmit(&mut self) -> Option<(Listener, Transmit<SocketAddr>)>;
    /// When [`handle_timeout`](Self::handle_timeout) should next run.
    fn poll_timeout(&self) -> Option<Instant>;
    /// Called after every input once the datagrams are sent: pass events on, write the
    /// store. Must not block.
    fn flush(&mut self) {}
}

/// Where a machine's commands come from.
pub trait Inbox<C> {
    /// The next command if one is ready; `Ready(None)` once no more can come, which stops
    /// the driver. When `Pending`, `cx` is woken once a command may be ready, as for
    /// [`Future::poll`](std::future::Future::poll).
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<C>>;
}

impl<C> Inbox<C> for mpsc::Receiver<C> {
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<C>> {
        mpsc::Receiver::poll_recv(self, cx)
    }
}

/// The bound UDP sockets a machine is driven on.
#[derive(Debug)]
pub struct Sockets {
    sockets: Vec<Arc<UdpSocket>>,
    addrs: Vec<SocketAddr>,
    listeners: Vec<Listener>,
}

impl Sockets {
    /// Binds every address, each with a receive buffer of `recv_buffer` bytes (0 keeps the
    /// kernel's default). A server wants a large one: the default (about 200 KB, some 150
    /// small datagrams) overflows when thousands of devices register at once after a
    /// restart, and every datagram dropped costs its device a 2-3 s retransmission. The
    /// kernel caps the size at `net.core.rmem_max`; a capped size is logged. An IPv6
    /// wildcard socket also serves IPv4 (mapped addresses). Must run inside a tokio runtime.
    pub fn bind(addrs: &[SocketAddr], recv_buffer: usize) -> io::Result<Self> {
        let mut out = Self::empty();
        for addr in addrs {
            out.bind_one(*addr, recv_buffer, 0)?;
        }
        Ok(out)
    }

    /// No sockets yet; add groups with [`bind_listener`](Self::bind_listener).
    pub fn empty() -> Self {
        Self {
            sockets: Vec::new(),
            addrs: Vec::new(),
            listeners: Vec::new(),
        }
    }

    /// Like [`bind`](Self::bind), but an IPv6 address the host cannot have (IPv6 disabled:
    /// "address not available" or "family not supported") is skipped with a warning, as long
    /// as another address bound. A default configuration that listens on `127.0.0.1` and
    /// `[::1]` then still starts on an IPv4-only host; any other failure is an error.
    pub fn bind_available(addrs: &[SocketAddr], recv_buffer: usize) -> io::Result<Self> {
        let mut out = Self::empty();
        out.bind_listener(addrs, recv_buffer, 0)?;
        Ok(out)
    }

    /// Binds `addrs` as the socket group `listener`, skipping unavailable IPv6 addresses as
    /// [`bind_available`](Self::bind_available) does. Returns the addresses bound.
    pub fn bind_listener(
        &mut self,
        addrs: &[SocketAddr],
        recv_buffer: usize,
        listener: Listener,
    ) -> io::Result<Vec<SocketAddr>> {
        let before = self.sockets.len();
        let mut skipped = None;
        for addr in addrs {
            match self.bind_one(*addr, recv_buffer, listener) {
                Err(e) if addr.is_ipv6() && is_unavailable(&e) => {
                    tracing::warn!(%addr, error = %e, "IPv6 address not available here; not listening on it");
                    skipped = Some(e);
                }
                r => r?,
            }
        }
        match skipped {
            Some(e) if self.sockets.len() == before => Err(e),
            _ => Ok(self.addrs.get(before..).unwrap_or_default().to_vec()),
        }
    }

    fn bind_one(
        &mut self,
        addr: SocketAddr,
        recv_buffer: usize,
        listener: Listener,
    ) -> io::Result<()> {
        use socket2::{Domain, Protocol, Socket, Type};
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        if addr.is_ipv6() {
            socket.set_only_v6(false).ok();
        }
        if recv_buffer > 0 {
            if let Err(e) = socket.set_recv_buffer_size(recv_buffer) {
                tracing::warn!(%addr, error = %e, "could not set the UDP receive buffer");
            }
            let got = socket.recv_buffer_size().unwrap_or(0);
            if got < recv_buffer {
                tracing::warn!(%addr, wanted = recv_buffer, got, "UDP receive buffer capped by the kernel (raise net.core.rmem_max)");
            }
        }
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        let socket = UdpSocket::from_std(socket.into())?;
        self.addrs.push(socket.local_addr()?);
        self.sockets.push(Arc::new(socket));
        self.listeners.push(listener);
        Ok(())
    }

    /// The bound addresses, in the order given.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The bound addresses of one listener.
    pub fn listener_addrs(&self, listener: Listener) -> Vec<SocketAddr> {
        self.addrs
            .iter()
            .zip(&self.listeners)
            .filter(|(_, l)| **l == listener)
            .map(|(a, _)| *a)
            .collect()
    }

    /// The socket (and address form) of `listener` to reach `peer` through: one of its
    /// family, else an IPv6 socket with the IPv4 address mapped (RFC 4291 §2.5.5.2).
    fn route(&self, listener: Listener, peer: SocketAddr) -> Option<(&UdpSocket, SocketAddr)> {
        let ours = |i: &usize| self.listeners.get(*i) == Some(&listener);
        if let Some(i) = (0..self.addrs.len()).filter(ours).find(|i| {
            self.addrs
                .get(*i)
                .is_some_and(|a| a.is_ipv4() == peer.is_ipv4())
        }) {
            return self.sockets.get(i).map(|s| (&**s, peer));
        }
        let i = (0..self.addrs.len())
            .filter(ours)
            .find(|i| self.addrs.get(*i).is_some_and(|a| a.is_ipv6()))?;
        let mapped = match peer {
            SocketAddr::V4(v4) => SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port()),
            v6 => v6,
        };
        self.sockets.get(i).map(|s| (&**s, mapped))
    }

    async fn send(&self, listener: Listener, t: Transmit<SocketAddr>) {
        let Some((socket, to)) = self.route(listener, t.peer) else {
            return;
        };
        let sent = match socket.try_send_to(&t.payload, to) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => socket.send_to(&t.payload, to).await,
            r => r,
        };
        if let Err(e) = sent {
            // Lost like any datagram; confirmable messages are retransmitted by the machine.
            tracing::debug!(peer = %t.peer, error = %e, "UDP send failed");
        }
    }
}

/// Whether binding failed because the host has no such address or address family.
fn is_unavailable(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::AddrNotAvailable | io::ErrorKind::Unsupported
    ) || e.raw_os_error() == Some(97) // EAFNOSUPPORT on Linux
}

/// IPv4 peers are kept in plain form whichever socket they came through, so a device has one
/// address whether the machine listens on `0.0.0.0` or a dual-stack `[::]`.
fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

async fn read_socket(
    socket: Arc<UdpSocket>,
    listener: Listener,
    to_machine: mpsc::Sender<(Listener, SocketAddr, Vec<u8>)>,
) {
    let mut buf = vec![0u8; 65_536];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((n, peer)) => {
                let data = buf.get(..n).unwrap_or_default().to_vec();
                if to_machine
                    .send((listener, canonical(peer), data))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            // ICMP errors from one peer must not stop the others.
            Err(e) => tracing::debug!(error = %e, "UDP receive failed"),
        }
    }
}

/// Drives `machine` on `sockets` until a command breaks or the inbox is done, then sends
/// what is still queued and hands the machine back.
pub async fn run<M: Machine, I: Inbox<M::Command>>(
    sockets: Sockets,
    mut machine: M,
    mut commands: I,
) -> M {
    let (inbound_tx, mut inbound) = mpsc::channel(INBOUND_CAPACITY);
    let readers: Vec<_> = sockets
        .sockets
        .iter()
        .zip(&sockets.listeners)
        .map(|(s, l)| tokio::spawn(read_socket(s.clone(), *l, inbound_tx.clone())))
        .collect();
    drop(inbound_tx);
    let sleep = tokio::time::sleep_until(tokio::time::Instant::now());
    tokio::pin!(sleep);
    loop {
        while let Some((l, t)) = machine.poll_transmit() {
            sockets.send(l, t).await;
        }
        machine.flush();
        let deadline = machine.poll_timeout();
        if let Some(t) = deadline {
            sleep.as_mut().reset(t.into());
        }
        tokio::select! {
            Some((l, peer, data)) = inbound.recv() => {
                let now = Instant::now();
                machine.handle_datagram(now, l, peer, &data);
                for _ in 0..BATCH {
                    match inbound.try_recv() {
                        Ok((l, peer, data)) => machine.handle_datagram(now, l, peer, &data),
                        Err(_) => break,
                    }
                }
            }
            () = &mut sleep, if deadline.is_some() => machine.handle_timeout(Instant::now()),
            cmd = std::future::poll_fn(|cx| commands.poll_recv(cx)) => match cmd {
                Some(c) => {
                    if machine.handle_command(Instant::now(), c).is_break() {
                        break;
                    }
                }
                None => break,
            },
        }
    }
    for r in readers {
        r.abort();
    }
    while let Some((l, t)) = machine.poll_transmit() {
        sockets.send(l, t).await;
    }
    machine.flush();
    machine
}
