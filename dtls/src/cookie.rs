//! Stateless cookies for the HelloVerifyRequest exchange (RFC 6347 §4.2.1).
//!
//! A server must not keep state for a ClientHello until the client has shown it receives
//! datagrams at its claimed address; otherwise a spoofed flood fills the handshake table. The
//! cookie is an HMAC-SHA256, under a server secret, of the client's address and of its
//! ClientHello with the cookie field emptied, so a cookie fits exactly one client and one
//! hello. The secret rotates; cookies made under the previous secret are still accepted, so a
//! rotation never fails a handshake in flight.
use crate::crypto::hmac_sha256;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// Cookie length on the wire (truncated HMAC; 16 bytes is far beyond guessing).
pub const COOKIE_LEN: usize = 16;

/// The rotating cookie secret.
pub struct CookieJar {
    current: [u8; 32],
    previous: [u8; 32],
    rotated_at: Option<Instant>,
    period: Duration,
}

impl std::fmt::Debug for CookieJar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CookieJar")
            .field("period", &self.period)
            .finish_non_exhaustive()
    }
}

impl CookieJar {
    /// A jar whose secret changes every `period`; `fresh` supplies new secrets.
    pub fn new(first: [u8; 32], period: Duration) -> Self {
        Self {
            current: first,
            previous: first,
            rotated_at: None,
            period,
        }
    }

    /// Rotates the secret if `period` has passed.
    pub fn maybe_rotate(&mut self, now: Instant, fresh: impl FnOnce() -> [u8; 32]) {
        match self.rotated_at {
            None => self.rotated_at = Some(now),
            Some(at) if now.saturating_duration_since(at) >= self.period => {
                self.previous = self.current;
                self.current = fresh();
                self.rotated_at = Some(now);
            }
            Some(_) => {}
        }
    }

    /// The cookie for `peer` sending a hello whose cookie-less encoding is `hello`.
    pub fn make(&self, peer: SocketAddr, hello: &[u8]) -> [u8; COOKIE_LEN] {
        Self::mac(&self.current, peer, hello)
    }

    /// Whether `cookie` was made by this jar (current or previous secret) for this hello.
    pub fn verify(&self, peer: SocketAddr, hello: &[u8], cookie: &[u8]) -> bool {
        let current = Self::mac(&self.current, peer, hello);
        let previous = Self::mac(&self.previous, peer, hello);
        (current.ct_eq(cookie) | previous.ct_eq(cookie)).into()
    }

    fn mac(secret: &[u8; 32], peer: SocketAddr, hello: &[u8]) -> [u8; COOKIE_LEN] {
        let ip = match peer.ip().to_canonical() {
            std::net::IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            std::net::IpAddr::V6(v6) => v6.octets(),
        };
        let full = hmac_sha256(secret, &[&ip, &peer.port().to_be_bytes(), hello]);
        let mut out = [0u8; COOKIE_LEN];
        out.copy_from_slice(full.get(..COOKIE_LEN).unwrap_or(&[0; COOKIE_LEN]));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_binds_address_and_hello_and_survives_one_rotation() {
        let t0 = Instant::now();
        let mut jar = CookieJar::new([1; 32], Duration::from_secs(60));
        jar.maybe_rotate(t0, || [2; 32]);
        let a: SocketAddr = "192.0.2.1:5000".parse().unwrap();
        let b: SocketAddr = "192.0.2.1:5001".parse().unwrap();
        let c = jar.make(a, b"hello");
        assert!(jar.verify(a, b"hello", &c));
        assert!(!jar.verify(b, b"hello", &c));
        assert!(!jar.verify(a, b"hellO", &c));
        assert!(!jar.verify(a, b"hello", &c[..8]));
        jar.maybe_rotate(t0 + Duration::from_secs(61), || [3; 32]);
        assert!(
            jar.verify(a, b"hello", &c),
            "previous secret still accepted"
        );
        jar.maybe_rotate(t0 + Duration::from_secs(122), || [4; 32]);
        assert!(
            !jar.verify(a, b"hello", &c),
            "two rotations later it is not"
        );
    }
}
