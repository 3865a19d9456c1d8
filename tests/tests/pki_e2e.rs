//! End to end over loopback with the factory PKI (OMA LwM2M TS 1.2 Transport §5.2.8.4): a
//! device whose certificate chains to `security.trusted_ca` registers as the endpoint its
//! certificate names, with no `device add`; one that registers under another name is refused;
//! `device revoke` of such a device denies its endpoint, closes its session and refuses its
//! next handshake, naming the cause in the audit log; `device add` lets it in again.
use lwm2m::client::ClientConfig;
use lwm2m_e2e_tests::{Device, TestServer};
use lwm2m_server::core::types::DeregisterReason;
use lwm2m_server::provisioning::admin::{AdminOp, AdminReply};
use lwm2m_server::provisioning::audit::AuditKind;
use lwm2m_server::provisioning::credentials::{NewCredential, Secret};
use std::path::Path;
use std::sync::Arc;

struct Ca {
    params: rcgen::CertificateParams,
    key: rcgen::KeyPair,
    pem: String,
}

fn ca() -> anyhow::Result<Ca> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Acme device CA");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let pem = params.self_signed(&key)?.pem();
    Ok(Ca { params, key, pem })
}

/// A device key with a certificate from `ca` naming `cn`; the DTLS client settings that
/// present it, and the certificate's DER.
fn device_key(ca: &Ca, cn: &str) -> anyhow::Result<(dtls::ClientConfig, Vec<u8>)> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let issuer = rcgen::Issuer::from_params(&ca.params, &ca.key);
    let cert = params.signed_by(&key, &issuer)?.der().to_vec();
    let own = dtls::pki::OwnKey::from_pkcs8_der(&key.serialize_der(), vec![cert.clone()])?;
    Ok((
        dtls::ClientConfig::with_key(Arc::new(own), dtls::ServerTrust::Unverified),
        cert,
    ))
}

async fn start(dir: &Path, ca: &Ca) -> anyhow::Result<TestServer> {
    let ca_file = dir.join("device-ca.pem");
    std::fs::write(&ca_file, &ca.pem)?;
    let extra = format!("[security]\ntrusted_ca = \"{}\"\n", ca_file.display());
    TestServer::start(&dir.join("data"), 0, &extra).await
}

async fn admin(s: &TestServer, op: AdminOp) -> AdminReply {
    s.handle()
        .admin(op)
        .await
        .unwrap_or_else(|e| AdminReply::error(e.to_string()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_of_the_trusted_ca_registers_as_the_endpoint_its_certificate_names() {
    let dir = tempfile::tempdir().unwrap();
    let factory = ca().unwrap();
    let mut s = start(dir.path(), &factory).await.unwrap();
    let (dtls, _) = device_key(&factory, "pki-dev-1").unwrap();
    let mut dev = Device::start_secure(s.secure_addr, ClientConfig::new("pki-dev-1"), dtls)
        .await
        .unwrap();
    s.registered("pki-dev-1").await;
    dev.registered().await;
    let listed = admin(&s, AdminOp::DeviceList).await;
    assert!(
        listed.devices.unwrap().is_empty(),
        "no credential was needed"
    );
    dev.kill();

    // A certificate naming one endpoint, a registration as another: refused.
    let (dtls, _) = device_key(&factory, "pki-dev-2").unwrap();
    let mut thief = Device::start_secure(s.secure_addr, ClientConfig::new("pki-dev-3"), dtls)
        .await
        .unwrap();
    let failure = thief.registration_failed().await;
    assert!(failure.contains("4.03"), "{failure}");
    let (endpoint, principal) = s.auth_failed().await;
    assert_eq!(
        (endpoint.as_str(), principal.as_deref()),
        ("pki-dev-3", Some("pki-dev-2"))
    );
    thief.kill();
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_pki_device_denies_it_until_it_is_added() {
    let dir = tempfile::tempdir().unwrap();
    let factory = ca().unwrap();
    let mut s = start(dir.path(), &factory).await.unwrap();
    let (dtls, cert) = device_key(&factory, "pki-dev-r").unwrap();
    let mut dev = Device::start_secure(s.secure_addr, ClientConfig::new("pki-dev-r"), dtls.clone())
        .await
        .unwrap();
    s.registered("pki-dev-r").await;

    let reply = admin(
        &s,
        AdminOp::DeviceRevoke {
            endpoint: "pki-dev-r".into(),
        },
    )
    .await;
    assert!(reply.ok, "{reply:?}");
    assert!(reply.device.is_none());
    assert_eq!(
        reply.denied.as_deref(),
        Some(&["pki-dev-r".to_string()][..])
    );
    assert_eq!(s.deregistered("pki-dev-r").await, DeregisterReason::Revoked);
    let down = dev.link_down().await;
    assert!(down.contains("closed"), "{down}");
    dev.kill();

    // Its certificate still chains to the CA, and is refused as revoked.
    let mut again =
        Device::start_secure(s.secure_addr, ClientConfig::new("pki-dev-r"), dtls.clone())
            .await
            .unwrap();
    let reason = again.link_down().await;
    assert!(reason.contains("handshake failed"), "{reason}");
    again.kill();
    let events = admin(&s, AdminOp::Audit { limit: 100 })
        .await
        .events
        .unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.kind == AuditKind::EndpointDenied
                && e.endpoint.as_deref() == Some("pki-dev-r"))
    );
    assert!(
        events.iter().any(|e| e.kind == AuditKind::AuthFailed
            && e.detail.contains("revoked")
            && e.detail.contains("\"pki-dev-r\"")),
        "{events:?}"
    );

    // Pinning its certificate lifts the deny.
    let reply = admin(
        &s,
        AdminOp::DeviceAdd {
            credential: NewCredential {
                endpoint: "pki-dev-r".into(),
                secret: Secret::X509 { cert_der: cert },
            },
        },
    )
    .await;
    assert!(reply.ok && reply.deny_lifted, "{reply:?}");
    let back = Device::start_secure(s.secure_addr, ClientConfig::new("pki-dev-r"), dtls)
        .await
        .unwrap();
    s.registered("pki-dev-r").await;
    back.kill();
    s.stop().await;
}
