//! The only code in the crate that touches sockets: a tokio UDP driver around
//! [`coap::Endpoint`](crate::coap::Endpoint) (feature `net`).
//!
//! Kept apart so that the protocol core stays deterministic and testable with virtual time;
//! everything here is plumbing between a socket, a clock and the application's tasks.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use lwm2m::coap::{msg, EndpointConfig, RequestOptions, RequestType};
//! use lwm2m::net::CoapSocket;
//!
//! let socket = CoapSocket::bind("[::]:0".parse().unwrap(), EndpointConfig::default()).await?;
//! let (handle, _incoming, driver) = socket.spawn();
//! let req = msg::request(RequestType::Get, "/hello");
//! let peer = "127.0.0.1:5683".parse().unwrap();
//! let response = handle.request(peer, req, RequestOptions::default()).await;
//! handle.shutdown().await;
//! driver.await.ok();
//! # let _ = response;
//! # Ok(())
//! # }
//! ```
mod driver;
mod handle;
pub mod machine;
pub mod secure;
mod socket;
mod waiters;

pub use driver::{Driver, RECV_BATCH};
pub use handle::{Handle, Incoming, NetError, Notification, Observation, ObserverGone};
pub use machine::{Machine, Sockets};
pub use secure::SecureLink;
pub use socket::{Builder, CoapSocket};
