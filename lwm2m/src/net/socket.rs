//! [`CoapSocket`] and its [`Builder`]: binding, configuration and channel sizes, before the
//! [`Driver`] runs.
//!
//! Binding is the one failure reported to the caller directly; once the driver runs, socket
//! errors are logged and survived, since one peer's ICMP error must not stop the others.
use super::driver::Driver;
use super::handle::{Handle, Incoming};
use crate::coap::EndpointConfig;
use std::io;
use std::net::SocketAddr;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Configures and binds a [`CoapSocket`].
#[derive(Debug, Clone)]
pub struct Builder {
    addr: SocketAddr,
    config: EndpointConfig,
    /// A fixed RNG seed (tests); `None` takes one from the operating system.
    seed: Option<u64>,
    channel_capacity: usize,
    notification_capacity: usize,
}

impl Builder {
    /// The endpoint configuration. Its `rng_seed` is replaced by OS randomness, since
    /// predictable message IDs and tokens would let off-path attackers spoof answers
    /// (RFC 7252 §5.3.1), unless [`rng_seed`](Self::rng_seed) fixes one.
    pub fn config(mut self, config: EndpointConfig) -> Self {
        self.config = config;
        self
    }

    /// Fixes the RNG seed, to make a test run reproducible. Never in production.
    pub fn rng_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Capacity of the command queue, the incoming-request queue and the observer-gone
    /// queue (default 1024).
    pub fn channel_capacity(mut self, n: usize) -> Self {
        self.channel_capacity = n.max(1);
        self
    }

    /// Capacity of each observation's notification channel (default 32).
    pub fn notification_capacity(mut self, n: usize) -> Self {
        self.notification_capacity = n.max(1);
        self
    }

    /// Binds the socket. This is the only failure that does not happen inside the driver.
    pub async fn bind(mut self) -> io::Result<CoapSocket> {
        let socket = UdpSocket::bind(self.addr).await?;
        let local_addr = socket.local_addr()?;
        self.config.rng_seed = self.seed.unwrap_or_else(rand::random);
        let (cmd_tx, commands) = mpsc::channel(self.channel_capacity);
        let (req_tx, requests) = mpsc::channel(self.channel_capacity);
        let (gone_tx, observers_gone) = mpsc::channel(self.channel_capacity);
        Ok(CoapSocket {
            handle: Handle::new(cmd_tx, local_addr, self.notification_capacity),
            incoming: Incoming {
                requests,
                observers_gone,
            },
            driver: Driver::new(socket, local_addr, self.config, commands, req_tx, gone_tx),
        })
    }
}

/// A bound CoAP UDP socket, before its driver runs: split it into the [`Handle`], the
/// [`Incoming`] side and the [`Driver`] future, or [`spawn`](Self::spawn) it.
#[derive(Debug)]
pub struct CoapSocket {
    handle: Handle,
    incoming: Incoming,
    driver: Driver,
}

impl CoapSocket {
    /// A builder for a socket bound to `addr` (IPv4 or IPv6; port 0 picks a free port).
    pub fn builder(addr: SocketAddr) -> Builder {
        Builder {
            addr,
            config: EndpointConfig::default(),
            seed: None,
            channel_capacity: 1024,
            notification_capacity: 32,
        }
    }

    /// Binds to `addr` with `config` and default channel sizes.
    pub async fn bind(addr: SocketAddr, config: EndpointConfig) -> io::Result<Self> {
        Self::builder(addr).config(config).bind().await
    }

    /// The bound address, with the real port.
    pub fn local_addr(&self) -> SocketAddr {
        self.handle.local_addr()
    }

    /// The three parts; run the [`Driver`] on any executor.
    pub fn split(self) -> (Handle, Incoming, Driver) {
        (self.handle, self.incoming, self.driver)
    }

    /// Spawns the driver on the current tokio runtime.
    pub fn spawn(self) -> (Handle, Incoming, JoinHandle<()>) {
        let (handle, incoming, driver) = self.split();
        (handle, incoming, tokio::spawn(driver.run()))
    }
}
