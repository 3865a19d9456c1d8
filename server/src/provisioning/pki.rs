//! The endpoint name a device certificate issued by a trusted CA carries (the factory PKI:
//! OMA LwM2M TS 1.2 Transport §5.2.8.4, where the certificate, not a stored credential, says
//! who the device is): the subject's Common Name or a Subject Alternative Name URI or DNS
//! name (RFC 5280 §4.1.2.6, §4.2.1.6), as `security.certificate_endpoint` chooses.
//!
//! The certificate has been verified (signature chain, validity, key usage) before its names
//! are read, so this only walks its DER: a small reader of tag-length-value items, bounded by
//! the certificate's bytes, that reads the subject and the extensions and nothing else (any
//! X.509 version; a v1 certificate simply has no extensions).
use crate::config::CertificateEndpoint;

/// Why no endpoint name could be read from a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The bytes are not a certificate's DER structure.
    #[error("the certificate does not parse")]
    Unparsable,
    /// The certificate has no name of the kind `certificate_endpoint` reads.
    #[error("the certificate names no endpoint (no {0})")]
    NoName(&'static str),
    /// The subject holds more than one Common Name: which one is the endpoint is unclear.
    #[error("the certificate's subject holds more than one Common Name")]
    AmbiguousCommonName,
    /// The name is not UTF-8 text in a string type a name can have.
    #[error("the certificate's name is not text")]
    NotText,
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const BOOLEAN: u8 = 0x01;
const OCTET_STRING: u8 = 0x04;
/// `[0] EXPLICIT` version, `[3] EXPLICIT` extensions of a TBSCertificate.
const VERSION: u8 = 0xa0;
const EXTENSIONS: u8 = 0xa3;
/// GeneralName's `dNSName [2] IA5String` and `uniformResourceIdentifier [6] IA5String`
/// (implicit tags, primitive).
const SAN_DNS: u8 = 0x82;
const SAN_URI: u8 = 0x86;
/// id-at-commonName, 2.5.4.3.
const OID_COMMON_NAME: [u8; 3] = [0x55, 0x04, 0x03];
/// id-ce-subjectAltName, 2.5.29.17.
const OID_SUBJECT_ALT_NAME: [u8; 3] = [0x55, 0x1d, 0x11];
/// UTF8String, PrintableString, IA5String: the string types a name is text in.
const TEXT_TYPES: [u8; 3] = [0x0c, 0x13, 0x16];

/// The endpoint name `cert_der` carries, read as `mode` says. The name is returned as it is
/// in the certificate; whether it is an acceptable endpoint name is the caller's check.
pub fn certificate_endpoint(
    cert_der: &[u8],
    mode: CertificateEndpoint,
) -> Result<String, NameError> {
    let tbs = Tbs::parse(cert_der).ok_or(NameError::Unparsable)?;
    match mode {
        CertificateEndpoint::Cn => tbs.common_name()?.ok_or(NameError::NoName("Common Name")),
        CertificateEndpoint::San => tbs.first_san()?.ok_or(NameError::NoName(
            "Subject Alternative Name URI or DNS name",
        )),
        CertificateEndpoint::CnOrSan => match tbs.common_name()? {
            Some(cn) => Ok(cn),
            None => tbs.first_san()?.ok_or(NameError::NoName(
                "Common Name nor Subject Alternative Name URI or DNS name",
            )),
        },
    }
}

/// One DER item: its tag, its contents, and the bytes after it. `None` for a high tag
/// number, an indefinite or over-long length, or contents past the end.
fn item(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        // A certificate is at most a few KiB: four length bytes are plenty.
        if n == 0 || n > 4 {
            return None;
        }
        let bytes = rest.get(..n)?;
        let len = bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, rest.get(n..)?)
    };
    Some((tag, rest.get(..len)?, rest.get(len..)?))
}

/// The items of a constructed value's contents, in order; stops at the first malformed one
/// (which [`all_items`] reports).
fn items(mut contents: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    std::iter::from_fn(move || {
        let (tag, value, rest) = item(contents)?;
        contents = rest;
        Some((tag, value))
    })
}

/// Every item of a constructed value's contents, or `None` if any is malformed.
fn all_items(contents: &[u8]) -> Option<Vec<(u8, &[u8])>> {
    let mut out = Vec::new();
    let mut rest = contents;
    while !rest.is_empty() {
        let (tag, value, tail) = item(rest)?;
        out.push((tag, value));
        rest = tail;
    }
    Some(out)
}

/// The parts of a TBSCertificate that name its subject.
struct Tbs<'a> {
    subject: &'a [u8],
    extensions: Option<&'a [u8]>,
}

impl<'a> Tbs<'a> {
    fn parse(cert: &'a [u8]) -> Option<Self> {
        let (SEQUENCE, cert_body, []) = item(cert)? else {
            return None;
        };
        let (SEQUENCE, tbs, _) = item(cert_body)? else {
            return None;
        };
        let fields = all_items(tbs)?;
        let mut fields = fields.into_iter().peekable();
        if fields.peek().map(|(t, _)| *t) == Some(VERSION) {
            fields.next();
        }
        // serialNumber, signature, issuer, validity, then subject and subjectPublicKeyInfo.
        let (subject_tag, subject) = fields.nth(4)?;
        if subject_tag != SEQUENCE {
            return None;
        }
        fields.next()?;
        let extensions =
            fields
                .find(|(t, _)| *t == EXTENSIONS)
                .map(|(_, explicit)| match item(explicit) {
                    Some((SEQUENCE, exts, [])) => Some(exts),
                    _ => None,
                });
        let extensions = match extensions {
            Some(None) => return None,
            Some(Some(e)) => Some(e),
            None => None,
        };
        Some(Self {
            subject,
            extensions,
        })
    }

    /// The subject's Common Name, if it has exactly one.
    fn common_name(&self) -> Result<Option<String>, NameError> {
        let mut found = None;
        for (tag, rdn) in all_items(self.subject).ok_or(NameError::Unparsable)? {
            if tag != SET {
                return Err(NameError::Unparsable);
            }
            for (tag, atv) in all_items(rdn).ok_or(NameError::Unparsable)? {
                if tag != SEQUENCE {
                    return Err(NameError::Unparsable);
                }
                let mut parts = items(atv);
                let (Some((OID, oid)), Some((string_type, value))) = (parts.next(), parts.next())
                else {
                    return Err(NameError::Unparsable);
                };
                if oid != OID_COMMON_NAME {
                    continue;
                }
                if found.is_some() {
                    return Err(NameError::AmbiguousCommonName);
                }
                found = Some(text(string_type, value)?);
            }
        }
        Ok(found)
    }

    /// The first URI or DNS name of the Subject Alternative Name extension.
    fn first_san(&self) -> Result<Option<String>, NameError> {
        let Some(extensions) = self.extensions else {
            return Ok(None);
        };
        for (tag, ext) in all_items(extensions).ok_or(NameError::Unparsable)? {
            if tag != SEQUENCE {
                return Err(NameError::Unparsable);
            }
            let parts = all_items(ext).ok_or(NameError::Unparsable)?;
            let (oid, value) = match parts.as_slice() {
                [(OID, oid), (OCTET_STRING, value)]
                | [(OID, oid), (BOOLEAN, _), (OCTET_STRING, value)] => (*oid, *value),
                _ => return Err(NameError::Unparsable),
            };
            if oid != OID_SUBJECT_ALT_NAME {
                continue;
            }
            let Some((SEQUENCE, names, [])) = item(value) else {
                return Err(NameError::Unparsable);
            };
            for (tag, name) in all_items(names).ok_or(NameError::Unparsable)? {
                if tag == SAN_URI || tag == SAN_DNS {
                    return text(0x16, name).map(Some);
                }
            }
            return Ok(None);
        }
        Ok(None)
    }
}

fn text(string_type: u8, value: &[u8]) -> Result<String, NameError> {
    if !TEXT_TYPES.contains(&string_type) {
        return Err(NameError::NotText);
    }
    std::str::from_utf8(value)
        .map(str::to_string)
        .map_err(|_| NameError::NotText)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cert(cn: Option<&str>, sans: Vec<rcgen::SanType>) -> Vec<u8> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Acme");
        if let Some(cn) = cn {
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, cn);
        }
        params.subject_alt_names = sans;
        params.self_signed(&key).unwrap().der().to_vec()
    }

    fn uri(u: &str) -> rcgen::SanType {
        rcgen::SanType::URI(u.try_into().unwrap())
    }

    fn dns(d: &str) -> rcgen::SanType {
        rcgen::SanType::DnsName(d.try_into().unwrap())
    }

    #[test]
    fn each_mode_reads_its_name() {
        use CertificateEndpoint::{Cn, CnOrSan, San};
        let both = cert(Some("dev-cn"), vec![uri("urn:imei:490154203237518")]);
        assert_eq!(certificate_endpoint(&both, Cn).unwrap(), "dev-cn");
        assert_eq!(certificate_endpoint(&both, CnOrSan).unwrap(), "dev-cn");
        assert_eq!(
            certificate_endpoint(&both, San).unwrap(),
            "urn:imei:490154203237518"
        );
        let san_only = cert(None, vec![dns("dev-dns.example"), uri("urn:dev:x")]);
        assert_eq!(
            certificate_endpoint(&san_only, CnOrSan).unwrap(),
            "dev-dns.example",
            "the first URI or DNS name, in the certificate's order"
        );
        assert_eq!(
            certificate_endpoint(&san_only, Cn),
            Err(NameError::NoName("Common Name"))
        );
        let cn_only = cert(Some("dev-7"), Vec::new());
        assert!(matches!(
            certificate_endpoint(&cn_only, San),
            Err(NameError::NoName(_))
        ));
        let neither = cert(None, Vec::new());
        assert!(matches!(
            certificate_endpoint(&neither, CnOrSan),
            Err(NameError::NoName(_))
        ));
    }

    #[test]
    fn two_common_names_are_ambiguous() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::default();
        // rcgen keeps one value per attribute type; two RDNs with a CN each are built by hand
        // from a certificate with a CN and an OU, the OU's OID turned into the CN's.
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "dev-a");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationalUnitName, "dev-b");
        let mut der = params.self_signed(&key).unwrap().der().to_vec();
        // Self-signed: the issuer is the subject, so both are patched.
        let ou = [0x06, 0x03, 0x55, 0x04, 0x0b];
        let at: Vec<usize> = (0..der.len() - ou.len())
            .filter(|&i| der[i..i + ou.len()] == ou)
            .collect();
        assert_eq!(at.len(), 2, "the OU of the issuer and of the subject");
        for i in at {
            der[i + 4] = 0x03;
        }
        assert_eq!(
            certificate_endpoint(&der, CertificateEndpoint::Cn),
            Err(NameError::AmbiguousCommonName)
        );
    }

    #[test]
    fn what_is_not_a_certificate_names_nothing() {
        for bytes in [
            &b""[..],
            &[0x30, 0x00],
            &[0x30, 0x82, 0xff],
            &[0x04, 0x01, 0x00],
        ] {
            assert_eq!(
                certificate_endpoint(bytes, CertificateEndpoint::CnOrSan),
                Err(NameError::Unparsable)
            );
        }
    }

    proptest! {
        /// A damaged certificate is read without a panic, and any name read from it is text
        /// that was in it.
        #[test]
        fn a_damaged_certificate_never_panics(cut in 0usize..600, flip in any::<(usize, u8)>()) {
            let mut der = cert(Some("dev-1"), vec![uri("urn:dev:1")]);
            let i = flip.0 % der.len();
            der[i] ^= flip.1;
            der.truncate(cut.max(1));
            for mode in [CertificateEndpoint::Cn, CertificateEndpoint::San, CertificateEndpoint::CnOrSan] {
                if let Ok(name) = certificate_endpoint(&der, mode) {
                    let found = der.windows(name.len().max(1)).any(|w| w == name.as_bytes());
                    prop_assert!(found || name.is_empty());
                }
            }
        }
    }
}
