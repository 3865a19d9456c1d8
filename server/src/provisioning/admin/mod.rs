//! The admin channel: how `lwm2m-server device ...`, `lwm2m-server bootstrap ...` and
//! `lwm2m-server audit` reach a running server.
//!
//! The store allows one process at a time (redb locks its file), and revoking a device must
//! close its live DTLS session at once, so the CLI cannot just write to the database: it asks
//! the server. The channel is a Unix domain socket at `{data_dir}/admin.sock`, mode 0600 (the
//! file system is the access control: only the server's user, and root, may connect),
//! carrying newline-delimited JSON, one request and one reply per line:
//!
//! ```text
//! {"op":"device-add","credential":{"endpoint":"E","kind":"psk","identity":"I","key":"00ff.."}}
//! {"op":"device-add","credential":{"endpoint":"E","kind":"rpk","spki_der":"3059.."}}
//! {"op":"device-add","credential":{"endpoint":"E","kind":"x509","cert_der":"3082.."}}
//! {"op":"device-list"}
//! {"op":"device-revoke","endpoint":"E"}
//! {"op":"device-import","credentials":[{"endpoint":"E","kind":"psk","identity":"I","key":"00ff.."},...],"check":false}
//! {"op":"bootstrap-add","credential":{...}}   (the same shapes for the bootstrap server's
//! {"op":"bootstrap-list"}                      credentials: factory bootstrap accounts)
//! {"op":"bootstrap-remove","endpoint":"E"}
//! {"op":"bootstrap-import","credentials":[...],"check":false}
//! {"op":"fw-add","path":"/abs/file.bin","version":"1.2.0","name":"N"}
//! {"op":"fw-list"}
//! {"op":"fw-remove","id":"0123456789abcdef"}
//! {"op":"audit","limit":50}
//! -> {"ok":true,...}  or  {"ok":false,"error":"..."}
//! ```
//!
//! [`serve`] only parses requests and forwards them to the runtime, which owns the store and
//! the sessions; the runtime applies the store part with [`apply_offline`], the same function
//! the CLI uses when no server is running, so both paths behave (and audit) alike.
//!
//! - `protocol`: the requests and replies, their JSON, and the line framing.
//! - `ops`: the operations on the credentials and the store ([`apply_offline`],
//!   [`apply_import`]), and opening the store when no server runs ([`open_offline`]).
//! - `server`: the socket: [`bind`], [`AdminListener::run`], [`serve`].
//! - `client`: [`call`], what the CLI sends a request with.
//!
//! `device-import` adds up to [`MAX_IMPORT_CHUNK`] credentials as one store transaction, with
//! the semantics of as many `device-add`s (rotation, audit entries); with `"check":true` it
//! only says what it would refuse. `lwm2m-server device import` (see
//! [`crate::provisioning::import`]) sends a large file as a series of such chunks.
//!
//! Bounds: a request line is at most [`MAX_REQUEST_LEN`] bytes, at most
//! [`MAX_CONNECTIONS`] connections are served at once (others get a "busy" reply), and an
//! idle connection is closed after [`IDLE_TIMEOUT`].
mod client;
mod ops;
mod protocol;
mod server;
#[cfg(test)]
mod tests;

pub use client::{call, CLIENT_TIMEOUT};
pub use ops::{
    apply_firmware, apply_import, apply_offline, commit_package, load_offline, open_offline,
    prepare_package, OfflineError, ROTATE_NEEDS_SERVER,
};
pub use protocol::{
    AdminOp, AdminReply, AdminRequest, CampaignSummary, ImportReport, PackageSummary, Refusal,
    RefusedEntry, MAX_AUDIT_LIMIT, MAX_IMPORT_CHUNK, MAX_REPLY_LEN, MAX_REQUEST_LEN,
};
pub use server::{bind, serve, AdminListener, IDLE_TIMEOUT, MAX_CONNECTIONS, REPLY_TIMEOUT};
