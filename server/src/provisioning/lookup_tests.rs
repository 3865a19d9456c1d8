//! Tests of how the DTLS handshake judges a device certificate ([`Lookup::verify_client`]):
//! pinned certificates, certificates from a trusted CA naming their endpoint (the factory
//! PKI), and each refusal with its own alert.
use super::*;
use crate::config::CertificateEndpoint;
use crate::provisioning::credentials::{DeviceCredential, Secret};
use crate::provisioning::secrets::SecretsKey;
use crate::store::{Store, StoreConfig};

struct Ca {
    cert: rcgen::Certificate,
    params: rcgen::CertificateParams,
    key: rcgen::KeyPair,
}

fn ca(name: &str) -> Ca {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).unwrap();
    Ca { cert, params, key }
}

/// A device certificate issued by `ca`, with `cn` as the subject's Common Name (if any) and
/// `san_uri` as its only Subject Alternative Name (if any).
fn device(ca: &Ca, cn: Option<&str>, san_uri: Option<&str>) -> Vec<u8> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "Acme devices");
    if let Some(cn) = cn {
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
    }
    if let Some(uri) = san_uri {
        params.subject_alt_names = vec![rcgen::SanType::URI(uri.try_into().unwrap())];
    }
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let issuer = rcgen::Issuer::from_params(&ca.params, &ca.key);
    params.signed_by(&key, &issuer).unwrap().der().to_vec()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn roots(ca: &Ca) -> Roots {
    Roots::from_der(&[ca.cert.der().to_vec()]).unwrap()
}

/// Whom `creds` and `roots` report a refused `leaf` as.
fn claimed(creds: &Credentials, roots: &Roots, leaf: &[u8]) -> Option<String> {
    let lookup = Lookup { creds, roots };
    lookup.refused_identity(PeerKey::Certificates(&[leaf.to_vec()]), Some(now()))
}

/// What `creds` and `roots` make of the certificate `leaf` (and its issuer).
fn judge(creds: &Credentials, roots: &Roots, leaf: &[u8]) -> Result<String, AlertDescription> {
    let lookup = Lookup { creds, roots };
    lookup
        .verify_client(PeerKey::Certificates(&[leaf.to_vec()]), Some(now()))
        .map(|p| p.to_string())
}

fn pinned(endpoint: &str, secret: Secret) -> DeviceCredential {
    DeviceCredential {
        endpoint: endpoint.into(),
        secret,
        added_at: SystemTime::now(),
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    key: SecretsKey,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("s.redb"), StoreConfig::default()).unwrap();
    Fixture {
        _dir: dir,
        store,
        key: SecretsKey::from_bytes([3; 32]),
    }
}

#[test]
fn a_certificate_from_the_trusted_ca_is_the_endpoint_it_names() {
    let factory = ca("Acme device CA");
    let roots = roots(&factory);
    let mut creds = Credentials::new();
    creds.set_pki(Some(CertificateEndpoint::CnOrSan));
    let by_cn = device(&factory, Some("dev-cn-1"), None);
    assert_eq!(judge(&creds, &roots, &by_cn).unwrap(), "dev-cn-1");
    let by_san = device(&factory, None, Some("urn:imei:490154203237518"));
    assert_eq!(
        judge(&creds, &roots, &by_san).unwrap(),
        "urn:imei:490154203237518"
    );
    // `cn` reads the Common Name only: a SAN-only certificate names nothing then.
    creds.set_pki(Some(CertificateEndpoint::Cn));
    assert_eq!(
        judge(&creds, &roots, &by_san),
        Err(AlertDescription::CertificateUnknown)
    );
    creds.set_pki(Some(CertificateEndpoint::San));
    assert_eq!(
        judge(&creds, &roots, &by_cn),
        Err(AlertDescription::CertificateUnknown)
    );
    // The bootstrap server's view judges them alike.
    let boot = Credentials::empty_bootstrap(&creds);
    assert_eq!(
        judge(&boot, &roots, &by_san).unwrap(),
        "urn:imei:490154203237518"
    );
}

#[test]
fn each_refusal_has_its_own_alert() {
    let f = fixture();
    let factory = ca("Acme device CA");
    let other = ca("Someone else's CA");
    let roots = roots(&factory);
    let mut creds = Credentials::new();
    creds.set_pki(Some(CertificateEndpoint::CnOrSan));

    // Another CA's certificate does not chain.
    let foreign = device(&other, Some("dev-x"), None);
    assert_eq!(
        judge(&creds, &roots, &foreign),
        Err(AlertDescription::UnknownCa)
    );
    assert_eq!(claimed(&creds, &roots, &foreign), None, "anyone's claim");
    // A name that is no endpoint name, or none at all.
    let slash = device(&factory, Some("site/dev-1"), None);
    assert_eq!(
        judge(&creds, &roots, &slash),
        Err(AlertDescription::CertificateUnknown)
    );
    assert_eq!(claimed(&creds, &roots, &slash), None);
    let nameless = device(&factory, None, None);
    assert_eq!(
        judge(&creds, &roots, &nameless),
        Err(AlertDescription::CertificateUnknown)
    );
    // A denied endpoint, by both servers.
    let revoked = device(&factory, Some("dev-gone"), None);
    assert_eq!(judge(&creds, &roots, &revoked).unwrap(), "dev-gone");
    creds.deny(&f.store, "dev-gone").unwrap();
    assert_eq!(
        judge(&creds, &roots, &revoked),
        Err(AlertDescription::CertificateRevoked)
    );
    assert_eq!(
        claimed(&creds, &roots, &revoked).as_deref(),
        Some("dev-gone"),
        "the audit names the denied endpoint"
    );
    let boot = Credentials::empty_bootstrap(&creds);
    assert_eq!(
        judge(&boot, &roots, &revoked),
        Err(AlertDescription::CertificateRevoked)
    );
    // An endpoint with a pinned credential of another kind: the pinned one wins.
    creds
        .add(
            &f.store,
            &f.key,
            pinned(
                "dev-psk",
                Secret::Psk {
                    identity: b"id-psk".to_vec(),
                    key: b"0123456789abcdef".to_vec(),
                },
            ),
        )
        .unwrap();
    let psk_device = device(&factory, Some("dev-psk"), None);
    assert_eq!(
        judge(&creds, &roots, &psk_device),
        Err(AlertDescription::AccessDenied)
    );
    // Only in the set that pins it: the bootstrap server takes the certificate.
    assert_eq!(judge(&boot, &roots, &psk_device).unwrap(), "dev-psk");
    // A pinned certificate is its endpoint's; another one naming that endpoint is refused.
    let pinned_cert = device(&factory, Some("dev-pinned"), None);
    creds
        .add(
            &f.store,
            &f.key,
            pinned(
                "dev-pinned",
                Secret::X509 {
                    cert_der: pinned_cert.clone(),
                },
            ),
        )
        .unwrap();
    assert_eq!(judge(&creds, &roots, &pinned_cert).unwrap(), "dev-pinned");
    let impostor = device(&factory, Some("dev-pinned"), None);
    assert_eq!(
        judge(&creds, &roots, &impostor),
        Err(AlertDescription::AccessDenied)
    );
    assert_eq!(
        claimed(&creds, &roots, &impostor).as_deref(),
        Some("dev-pinned")
    );
    // A pinned certificate whose CN names another endpoint is still the pinned endpoint's.
    let renamed = device(&factory, Some("dev-other-name"), None);
    creds
        .add(
            &f.store,
            &f.key,
            pinned(
                "dev-renamed",
                Secret::X509 {
                    cert_der: renamed.clone(),
                },
            ),
        )
        .unwrap();
    assert_eq!(judge(&creds, &roots, &renamed).unwrap(), "dev-renamed");
    f.store.close().unwrap();
}

#[test]
fn without_a_trusted_ca_only_pinned_certificates_are_accepted() {
    let f = fixture();
    let factory = ca("Acme device CA");
    let no_roots = Roots::default();
    let mut creds = Credentials::new();
    let cert = device(&factory, Some("dev-1"), None);
    // PKI naming on but no roots (or roots but naming off): nothing names itself in.
    creds.set_pki(Some(CertificateEndpoint::CnOrSan));
    assert_eq!(
        judge(&creds, &no_roots, &cert),
        Err(AlertDescription::AccessDenied)
    );
    creds.set_pki(None);
    assert_eq!(
        judge(&creds, &roots(&factory), &cert),
        Err(AlertDescription::AccessDenied)
    );
    creds
        .add(
            &f.store,
            &f.key,
            pinned(
                "dev-1",
                Secret::X509 {
                    cert_der: cert.clone(),
                },
            ),
        )
        .unwrap();
    assert_eq!(judge(&creds, &no_roots, &cert).unwrap(), "dev-1");
    f.store.close().unwrap();
}

#[test]
fn a_denied_endpoint_never_registers_over_nosec() {
    let f = fixture();
    let mut creds = Credentials::new();
    creds.deny(&f.store, "dev-gone").unwrap();
    let shared = SharedCredentials(Arc::new(RwLock::new(creds)));
    assert!(shared.requires_dtls("dev-gone"));
    assert!(!shared.requires_dtls("dev-other"));
    f.store.close().unwrap();
}

#[test]
fn pki_naming_follows_the_trusted_ca_setting() {
    let mut config = Config::embedded().unwrap();
    assert_eq!(pki_naming(&config), None);
    config.security.trusted_ca = "/etc/ca.pem".into();
    config.security.certificate_endpoint = CertificateEndpoint::San;
    assert_eq!(pki_naming(&config), Some(CertificateEndpoint::San));
}
