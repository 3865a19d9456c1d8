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

/// Verifies an ECDSA P-256/SHA-256 signature by the key of a certificate. The certificate was
/// judged already (pinned by its exact bytes, or chained to a trusted root); only its key is
/// needed here, so any X.509 version works (webpki reads only v3, and a pinned v1 certificate,
/// what `openssl x509 -req` makes without extensions, is common in device fleets).
/// `BadCertificate` if no public key can be read from it, `DecryptError` if the signature is
/// not the key's.
pub fn verify_with_certificate(
    cert: &[u8],
    msg: &[u8],
    sig: &[u8],
) -> Result<(), AlertDescription> {
    let spki = certificate_spki(cert).ok_or(AlertDescription::BadCertificate)?;
    verify_with_spki(spki, msg, sig)
}

/// The SubjectPublicKeyInfo of a DER certificate (RFC 5280 §4.1: the seventh field of
/// `tbsCertificate`, after the optional version), of any version, without validating anything
/// else. `None` if the bytes are not a certificate's shape.
pub fn certificate_spki(cert: &[u8]) -> Option<&[u8]> {
    use der::{Reader, SliceReader, Tag, TagNumber};
    fn skip_rest<'a>(r: &mut SliceReader<'a>) -> der::Result<()> {
        while !r.is_finished() {
            r.tlv_bytes()?;
        }
        Ok(())
    }
    let mut reader = SliceReader::new(cert).ok()?;
    let spki = reader
        .sequence(|cert| {
            let spki = cert.sequence(|tbs| {
                if matches!(Tag::peek(tbs)?, Tag::ContextSpecific { number, .. } if number == TagNumber(0))
                {
                    tbs.tlv_bytes()?;
                }
                // serialNumber, signature, issuer, validity, subject
                for _ in 0..5 {
                    tbs.tlv_bytes()?;
                }
                let spki = tbs.tlv_bytes()?;
                skip_rest(tbs)?;
                Ok::<_, der::Error>(spki)
            })?;
            skip_rest(cert)?;
            Ok::<_, der::Error>(spki)
        })
        .ok()?;
    (reader.is_finished() && spki.first() == Some(&0x30)).then_some(spki)
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
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rustls_pki_types::pem::PemObject;

    fn v1_device() -> (Vec<u8>, OwnKey) {
        let cert = CertificateDer::from_pem_slice(include_bytes!("testdata/v1-device-cert.pem"))
            .unwrap()
            .to_vec();
        let key = rustls_pki_types::PrivatePkcs8KeyDer::from_pem_slice(include_bytes!(
            "testdata/v1-device-key.pem"
        ))
        .unwrap();
        let own = OwnKey::from_pkcs8_der(key.secret_pkcs8_der(), vec![cert.clone()]).unwrap();
        (cert, own)
    }

    #[test]
    fn a_version_1_certificate_s_key_verifies_its_signatures() {
        let (cert, key) = v1_device();
        // The reason this path does not go through webpki.
        assert!(webpki::EndEntityCert::try_from(&CertificateDer::from(cert.as_slice())).is_err());
        assert_eq!(certificate_spki(&cert), Some(key.spki.as_slice()));
        let sig = key.sign(b"transcript");
        assert_eq!(verify_with_certificate(&cert, b"transcript", &sig), Ok(()));
        assert_eq!(
            verify_with_certificate(&cert, b"another", &sig),
            Err(AlertDescription::DecryptError),
            "a wrong signature is a wrong signature"
        );
        assert_eq!(
            verify_with_certificate(b"not a certificate", b"transcript", &sig),
            Err(AlertDescription::BadCertificate),
            "an unreadable certificate says so"
        );
    }

    #[test]
    fn a_version_3_certificate_s_key_is_found_too() {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["device-9".to_string()])
            .unwrap()
            .self_signed(&pair)
            .unwrap();
        let own = OwnKey::from_pkcs8_der(&pair.serialize_der(), vec![]).unwrap();
        assert_eq!(certificate_spki(cert.der()), Some(own.spki.as_slice()));
    }

    proptest! {
        #[test]
        fn reading_a_certificate_s_key_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = certificate_spki(&bytes);
        }

        #[test]
        fn a_damaged_certificate_never_yields_a_key_outside_it(cut in 0usize..400, flip in any::<(usize, u8)>()) {
            let (mut cert, _) = v1_device();
            let at = flip.0 % cert.len();
            cert[at] ^= flip.1;
            cert.truncate(cert.len().saturating_sub(cut));
            if let Some(spki) = certificate_spki(&cert) {
                prop_assert!(spki.len() <= cert.len());
                prop_assert_eq!(spki.first(), Some(&0x30));
            }
        }
    }

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
