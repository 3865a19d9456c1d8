//! Pull downloads of firmware packages (OMA LwM2M TS 1.2 Core Appendix E.6: the device
//! fetches the Package URI written to `/5/0/1`): `GET /{firmware.path}/{package id}` answers
//! the whole package, and the CoAP endpoint cuts it into the blocks the device asks for
//! (RFC 7959 §2.4 Block2: any block, in any order, at the device's block size), with
//! Content-Format 42 (application/octet-stream, RFC 7252 §12.3) and the first 8 bytes of the
//! package's SHA-256 as ETag (RFC 7252 §5.10.6), the same in every block so that a device
//! notices a package changed between two blocks.
//!
//! Who may download what is the [`FirmwareAccess`]'s decision; a package that exists but is
//! not for this device is 4.03, an unknown one 4.04, any method but GET 4.05.
use super::ServerCore;
use lwm2m::coap::{msg, CoapOption, MessageClass, Packet, Peer, RequestType, ResponseType};
use lwm2m::ops::Lwm2mError;
use std::fmt::Display;
use std::str::FromStr;
use std::sync::Arc;

/// A package as the core serves it.
#[derive(Debug, Clone)]
pub struct Download {
    /// The package's bytes, shared with the store that holds them.
    pub bytes: Arc<[u8]>,
    /// The ETag: the first 8 bytes of the package's SHA-256.
    pub etag: [u8; 8],
}

/// Decides who may download which package by pull (`GET /{firmware.path}/{id}`); the core
/// holds one, as it holds its security policy, and the firmware module implements it.
pub trait FirmwareAccess: Send + Sync {
    /// The package `id` if `principal` may download it: over DTLS `principal` is the
    /// endpoint the device's credential is bound to, over plain CoAP it is `None`.
    fn download(&self, principal: Option<&str>, id: &str) -> Option<Download>;

    /// Whether a package `id` exists at all, so that a refused download is told apart from
    /// an unknown package (4.03 and 4.04).
    fn exists(&self, id: &str) -> bool;
}

/// Content-Format of a package: application/octet-stream.
const OCTET_STREAM: u32 = 42;

/// Where packages are served and who may fetch them.
pub(super) struct Serving {
    /// The first URI path segment (`[firmware] path`).
    pub(super) path: String,
    /// The access decision.
    pub(super) access: Arc<dyn FirmwareAccess>,
}

impl<P: Peer + Display + FromStr> ServerCore<P> {
    /// Serves packages under `/{path}/{id}`, as `access` allows.
    pub fn set_firmware(&mut self, path: impl Into<String>, access: Arc<dyn FirmwareAccess>) {
        self.firmware = Some(Serving {
            path: path.into(),
            access,
        });
    }

    /// Whether `segment` is the first path segment packages are served under.
    pub(super) fn is_firmware_path(&self, segment: &str) -> bool {
        self.firmware.as_ref().is_some_and(|f| f.path == segment)
    }

    /// A request for package `id`: the response, and the registered endpoint it came from if
    /// one did (a queue-mode device fetching blocks is awake).
    pub(super) fn serve_firmware(
        &mut self,
        peer: &P,
        method: MessageClass,
        id: &str,
        block2: Option<msg::BlockOpt>,
    ) -> Result<(Packet, Option<String>), Lwm2mError> {
        if method != MessageClass::Request(RequestType::Get) {
            return Err(Lwm2mError::MethodNotAllowed);
        }
        let Some(access) = self.firmware.as_ref().map(|f| f.access.clone()) else {
            return Err(Lwm2mError::NotFound);
        };
        let principal = self.authenticated.get(peer).map(|a| a.principal.clone());
        let Some(package) = access.download(principal.as_deref(), id) else {
            if access.exists(id) {
                tracing::warn!(package = id, peer = %self.address_of(peer), principal = principal.as_deref().unwrap_or(""), "firmware download refused: no campaign sends this package to this device");
                return Err(Lwm2mError::Forbidden);
            }
            return Err(Lwm2mError::NotFound);
        };
        let mut response = msg::response(ResponseType::Content);
        msg::set_uint_option(&mut response, CoapOption::ContentFormat, OCTET_STREAM);
        response.add_option(CoapOption::ETag, package.etag.to_vec());
        // Each block is cut here from the shared package (RFC 7959 §2.4): the endpoint keeps
        // no copy per downloading device, and every block goes through the access check
        // above (a cancelled campaign stops its downloads) and marks the device heard from.
        let szx = block2.map_or(self.config.coap.block_szx, |b| {
            b.szx.min(self.config.coap.block_szx)
        });
        let num = block2.map_or(0, |b| b.num);
        let response = msg::slice_block(&response, &package.bytes, num, szx);
        // The device is whoever its credential names, else whoever registered from this
        // address; a download session beside the registration's is the same device.
        let endpoint = match principal {
            Some(p) => Some(p.to_string()),
            None => self.by_peer.get(peer).cloned(),
        };
        Ok((response, endpoint))
    }
}
