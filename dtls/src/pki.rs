//! Public-key glue for ECDHE-ECDSA suites (RFC 8422 §5.4, §5.10; RFC 7250; RFC 5280 via
//! webpki): ephemeral P-256 keys, the shared secret, signatures over handshake data, and the
//! checks of a peer's raw public key or certificate chain.
//!
//! Everything cryptographic is RustCrypto's `p256` (ECDH, ECDSA signing) or `rustls-webpki`
//! (certificate paths, signature verification); this module only chooses the algorithms the
//! LwM2M profile allows (P-256, ECDSA with SHA-256) and turns their errors into alerts.
use crate::alert::AlertDescription;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::elliptic_curve::ecdh::diffie_hellman;
use p256::pkcs8::{DecodePrivateKey, EncodePublicKey};
use p256::{NonZeroScalar, PublicKey};
use rustls_pki_types::{CertificateDer, SubjectPublicKeyInfoDer, TrustAnchor, UnixTime};
use webpki::ring::ECDSA_P256_SHA256;

/// A P-256 key pair for one ECDHE exchange.
pub struct Ephemeral {
    secret: NonZeroScalar,
    /// The uncompressed SEC1 point sent to the peer.
    pub public: Vec<u8>,
}

impl std::fmt::Debug for Ephemeral {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ephemeral(..)")
    }
}

impl Ephemeral {
    /// A fresh key pair; `rng` is asked again in the (2^-128) case of an invalid scalar.
    pub fn generate(rng: &mut impl rand::Rng) -> Self {
        loop {
            let mut bytes = [0u8; 32];
            rng.fill_bytes(&mut bytes);
            if let Some(secret) =
                Option::<NonZeroScalar>::from(NonZeroScalar::from_repr(bytes.into()))
            {
                let public = PublicKey::from_secret_scalar(&secret)
                    .to_sec1_bytes()
                    .into_vec();
                return Self { secret, public };
            }
        }
    }

    /// The pre-master secret with the peer's point (RFC 8422 §5.10: the x-coordinate).
    pub fn agree(&self, peer_point: &[u8]) -> Result<[u8; 32], AlertDescription> {
        let peer = PublicKey::from_sec1_bytes(peer_point)
            .map_err(|_| AlertDescription::IllegalParameter)?;
        let shared = diffie_hellman(self.secret, peer.as_affine());
        let mut out = [0u8; 32];
        out.copy_from_slice(shared.raw_secret_bytes().as_slice());
        Ok(out)
    }
}

/// This side's long-term ECDSA key, with the form it is presented in.
#[derive(Clone)]
pub struct OwnKey {
    key: SigningKey,
    /// SubjectPublicKeyInfo DER: sent as the raw public key (RFC 7250).
    pub spki: Vec<u8>,
    /// Certificate chain (end entity first), DER. Empty: raw public key only.
    pub chain: Vec<Vec<u8>>,
}

impl std::fmt::Debug for OwnKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnKey")
            .field("certificates", &self.chain.len())
            .finish_non_exhaustive()
    }
}

/// A key or certificate could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("not a PKCS#8 P-256 private key: {0}")]
    PrivateKey(String),
    #[error("the certificate does not match the private key")]
    Mismatch,
}

impl OwnKey {
    /// From a PKCS#8 DER private key and an optional certificate chain.
    pub fn from_pkcs8_der(pkcs8: &[u8], chain: Vec<Vec<u8>>) -> Result<Self, KeyError> {
        let key =
            SigningKey::from_pkcs8_der(pkcs8).map_err(|e| KeyError::PrivateKey(e.to_string()))?;
        Self::new(key, chain)
    }

    /// From 32 secret bytes (tests, simulators deriving keys from a seed).
    pub fn from_secret_bytes(secret: &[u8; 32], chain: Vec<Vec<u8>>) -> Result<Self, KeyError> {
        let key =
            SigningKey::from_slice(secret).map_err(|e| KeyError::PrivateKey(e.to_string()))?;
        Self::new(key, chain)
    }

    fn new(key: SigningKey, chain: Vec<Vec<u8>>) -> Result<Self, KeyError> {
        let spki = key
            .verifying_key()
            .to_public_key_der()
            .map_err(|e| KeyError::PrivateKey(e.to_string()))?
            .into_vec();
        let own = Self { key, spki, chain };
        if let Some(cert) = own.chain.first() {
            // A chain whose leaf has another key would fail every handshake; say so at start.
            let probe = own.sign(b"probe");
            verify_with_certificate(cert, b"probe", &probe).map_err(|_| KeyError::Mismatch)?;
        }
        Ok(own)
    }

    /// An ECDSA-SHA256 signature of `msg`, DER-encoded as TLS carries it.
    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        let sig: Signature = self.key.sign(msg);
        sig.to_der().as_bytes().to_vec()
    }
}

/// Verifies an ECDSA P-256/SHA-256 signature by the key in a SubjectPublicKeyInfo.
pub fn verify_with_spki(spki: &[u8], msg: &[u8], sig: &[u8]) -> Result<(), AlertDescription> {
    let der = SubjectPublicKeyInfoDer::from(spki);
    let entity =
        webpki::RawPublicKeyEntity::try_from(&der).map_err(|_| AlertDescription::BadCertificate)?;
    entity
        .verify_signature(ECDSA_P256_SHA256, msg, sig)
        .map_err(|_| AlertDescription::DecryptError)
}

/// Verifies an ECDSA P-256/SHA-256 signature by the key of a certificate.
pub fn verify_with_certificate(
    cert: &[u8],
    msg: &[u8],
    sig: &[u8],
) -> Result<(), AlertDescription> {
    let der = CertificateDer::from(cert);
    let entity =
        webpki::EndEntityCert::try_from(&der).map_err(|_| AlertDescription::BadCertificate)?;
    entity
        .verify_signature(ECDSA_P256_SHA256, msg, sig)
        .map_err(|_| AlertDescription::DecryptError)
}

/// Trust anchors for certificate chains, owned.
#[derive(Debug, Clone, Default)]
pub struct Roots {
    anchors: Vec<TrustAnchor<'static>>,
}

impl Roots {
    /// From DER CA certificates; unusable ones are reported.
    pub fn from_der(certs: &[Vec<u8>]) -> Result<Self, KeyError> {
        let mut anchors = Vec::new();
        for c in certs {
            let der = CertificateDer::from(c.as_slice());
            let anchor = webpki::anchor_from_trusted_cert(&der)
                .map_err(|e| KeyError::PrivateKey(format!("CA certificate: {e}")))?;
            anchors.push(anchor.to_owned());
        }
        Ok(Self { anchors })
    }

    pub fn is_empty(&self) -> bool {
        self.anchors.is_empty()
    }

    /// Checks that `chain` (end entity first) leads to one of these roots at `unix_secs`, for
    /// the given usage (client or server authentication).
    pub fn verify(
        &self,
        chain: &[Vec<u8>],
        unix_secs: u64,
        client: bool,
    ) -> Result<(), AlertDescription> {
        let Some((leaf, rest)) = chain.split_first() else {
            return Err(AlertDescription::BadCertificate);
        };
        let leaf = CertificateDer::from(leaf.as_slice());
        let ee =
            webpki::EndEntityCert::try_from(&leaf).map_err(|_| AlertDescription::BadCertificate)?;
        let intermediates: Vec<CertificateDer<'_>> = rest
            .iter()
            .map(|c| CertificateDer::from(c.as_slice()))
            .collect();
        let usage = if client {
            webpki::KeyUsage::client_auth()
        } else {
            webpki::KeyUsage::server_auth()
        };
        ee.verify_for_usage(
            &[ECDSA_P256_SHA256],
            &self.anchors,
            &intermediates,
            UnixTime::since_unix_epoch(std::time::Duration::from_secs(unix_secs)),
            usage,
            None,
            None,
        )
        .map(|_| ())
        .map_err(|e| match e {
            webpki::Error::CertExpired { .. } => AlertDescription::CertificateExpired,
            webpki::Error::UnknownIssuer => AlertDescription::UnknownCa,
            _ => AlertDescription::BadCertificate,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn ecdhe_agrees_and_signatures_verify() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let a = Ephemeral::generate(&mut rng);
        let b = Ephemeral::generate(&mut rng);
        assert_eq!(a.agree(&b.public).unwrap(), b.agree(&a.public).unwrap());
        assert!(a.agree(&[4, 1, 2, 3]).is_err());
        let key = OwnKey::from_secret_bytes(&[7; 32], vec![]).unwrap();
        let sig = key.sign(b"hello");
        assert!(verify_with_spki(&key.spki, b"hello", &sig).is_ok());
        assert_eq!(
            verify_with_spki(&key.spki, b"hellO", &sig),
            Err(AlertDescription::DecryptError)
        );
        assert!(verify_with_spki(b"junk", b"hello", &sig).is_err());
    }
}
