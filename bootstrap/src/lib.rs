//! The LwM2M bootstrap server, sans-IO (OMA LwM2M TS 1.2 Core §5.2 bootstrap modes, §6.1 the
//! Bootstrap interface; Transport §6.1).
//!
//! A [`BootstrapCore`] takes the datagrams of devices that ask to be bootstrapped
//! (Bootstrap-Request, `POST /bs?ep=..`, or Bootstrap-Pack-Request, `GET /bspack?ep=..`),
//! asks its [`Accounts`] what LwM2M server account each one gets, and runs the sequence
//! that writes it: Discover `/`, Delete `/0` and `/1` (the device spares its bootstrap
//! server's own Security instance), Write the Security (0) and Server (1) instances of the
//! account, read the Server instance back from a 1.1+ device (Bootstrap-Read), Finish. It
//! never touches a socket, a clock or a store: time comes in as `now`, datagrams go out
//! through [`poll_transmit`](BootstrapCore::poll_transmit), and what happened comes out
//! of [`poll_event`](BootstrapCore::poll_event). Once every Write is acknowledged the core
//! emits [`Event::Finishing`] and waits: the embedding server makes its LwM2M server accept
//! the account's credential, then approves ([`approve_finish`](BootstrapCore::approve_finish))
//! and Finish is sent — or refuses, and the sequence fails without the device ever being told
//! to use an account nobody accepts. [`Event::Finished`] or [`Event::Failed`] follows; after
//! `Failed` the embedder takes the credential back, so a device that drops out leaves nothing
//! behind.
//!
//! The core is generic over the peer type `P` (a socket address for plain CoAP, a DTLS
//! connection for CoAPs): the server that embeds it authenticates DTLS peers and tells the
//! core who they are ([`peer_authenticated`](BootstrapCore::peer_authenticated)).
//!
//! # Layout
//! - `account`: [`Account`] and [`Accounts`], what a device is given and who decides it.
//! - `event`: [`Event`], what the core reports.
//! - `core`: [`BootstrapCore`], the driver: datagrams, timers, the sequences table, who each
//!   DTLS peer is; `core/incoming` reads the device's Bootstrap-Request and
//!   Bootstrap-Pack-Request.
//! - `sequence`: the steps of one device's sequence and the choices between them (content
//!   format, instance ids, fallbacks).
//! - `encode`: an account as Security and Server instances, and as a Write's payload.
//! - `pack`: an account as a Bootstrap-Pack answer.
pub mod account;
mod core;
mod encode;
mod event;
mod pack;
mod sequence;
#[cfg(test)]
mod tests;

pub use account::{Account, AccountRequest, AccountSecurity, Accounts, Refusal};
pub use core::{BootstrapConfig, BootstrapCore, BootstrapUsage};
pub use event::{Event, Failure, Step};
