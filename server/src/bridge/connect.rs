//! Client options for the bridge's MQTT connection, MQTT 5.0 (OASIS, 2019) or MQTT 3.1.1
//! (OASIS, 2014), built for rumqttc from the `[mqtt]` settings, which the configuration
//! checked when it was loaded ([`MqttSettings`]). Only the TLS files are read here, so a
//! missing or malformed one is reported at start, with the key that names it.
//!
//! Choices made for a bridge that must not lose messages:
//! - **Persistent session**: MQTT 3.1.1 `CleanSession = 0` (§3.1.2.4); MQTT 5 `Clean Start = 0`
//!   with a Session Expiry Interval (§3.1.2.4, §3.1.2.11.2). The broker then keeps the
//!   bridge's downlink subscriptions, and the commands published while the bridge is away.
//! - **In-flight window** [`INFLIGHT`]: QoS 1/2 publishes awaiting their acknowledgement. The
//!   backlog itself (possibly hundreds of thousands of messages after an outage) stays in the
//!   bridge's durable outbox, not in rumqttc's memory, so the request channel only needs to
//!   keep the window full ([`REQUEST_CHANNEL_CAPACITY`]).
//! - **TLS** through rustls with the *ring* provider passed explicitly: the server installs no
//!   process-wide provider, and aws-lc-rs (rustls' default) would need cmake to build. There is
//!   no built-in root store in this build, so `ca_file` is required with `tls = true`.
use crate::config::{MqttQos, MqttSettings, MqttTls};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// QoS 1 and 2 publishes in flight (sent, not yet acknowledged) at most, per direction the
/// client controls: MQTT 3.1.1 has no negotiation, MQTT 5 uses the smaller of this and the
/// broker's Receive Maximum (§3.2.2.3.3). A thousand keeps a link with 100 ms of latency at
/// 10,000 messages/s while bounding what a reconnect resends.
pub const INFLIGHT: u16 = 1000;

/// Requests (publish, subscribe, acknowledgement) queued between the bridge and rumqttc's
/// event loop. Twice the in-flight window: enough for the event loop never to wait on the
/// bridge; the backlog beyond it waits in the durable outbox.
pub const REQUEST_CHANNEL_CAPACITY: usize = 2 * INFLIGHT as usize;

/// The largest MQTT packet sent or accepted, in bytes. rumqttc's default (10 KiB) is below a
/// composite read of a large object; 1 MiB matches common brokers' defaults (EMQX's
/// `max_packet_size`). A publish larger than this (or, in MQTT 5, than the broker's Maximum
/// Packet Size from its CONNACK) fails inside rumqttc's event loop, so the bridge must check
/// a message's size before handing it over.
pub const MAX_PACKET_BYTES: usize = 1 << 20;

/// Seconds to establish TCP (and TLS) before an attempt counts as failed; rumqttc's default is
/// 5 s, short for a TLS handshake to a remote broker over a loaded link.
pub const CONNECT_TIMEOUT_SECS: u64 = 10;

/// Why client options could not be built: a TLS file named by `[mqtt]` that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// A PEM file could not be read.
    #[error("mqtt.{key}: cannot read {}: {source}", path.display())]
    Read {
        /// The configuration key naming the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A PEM file does not hold what it should.
    #[error("mqtt.{key}: {}: {detail}", path.display())]
    Pem {
        /// The configuration key naming the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// rustls refused the certificates or the key (e.g. a key that does not match the
    /// certificate, or an unsupported key type).
    #[error("mqtt TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

/// MQTT 5 client options: persistent session (`Clean Start = 0`, Session Expiry Interval from
/// `session_expiry_secs`), credentials, TLS, and the bridge's window and packet size. TLS
/// files are read now, so a missing or malformed one is reported at start.
pub fn options_v5(cfg: &MqttSettings) -> Result<rumqttc::v5::MqttOptions, ConnectError> {
    let mut o = rumqttc::v5::MqttOptions::new(
        cfg.client_id.clone(),
        cfg.broker.host.clone(),
        cfg.broker.port,
    );
    o.set_keep_alive(cfg.keep_alive)
        .set_clean_start(false)
        .set_session_expiry_interval(Some(cfg.session_expiry_secs))
        .set_request_channel_capacity(REQUEST_CHANNEL_CAPACITY)
        .set_outgoing_inflight_upper_limit(INFLIGHT)
        // The Maximum Packet Size we accept (§3.1.2.11.4); the broker states its own.
        .set_max_packet_size(Some(MAX_PACKET_BYTES as u32))
        .set_connection_timeout(CONNECT_TIMEOUT_SECS)
        .set_network_options(network_options());
    if let Some(login) = &cfg.login {
        o.set_credentials(login.username.clone(), login.password.clone());
    }
    if let Some(tls) = &cfg.tls {
        o.set_transport(rumqttc::Transport::tls_with_config(tls_config(tls)?));
    }
    Ok(o)
}

/// MQTT 3.1.1 client options: persistent session (`CleanSession = 0`), credentials, TLS, the
/// bridge's window and packet size. rumqttc keeps the TCP settings of 3.1.1 on the event loop
/// rather than in the options: apply [`network_options`] with
/// `EventLoop::set_network_options` (or `eventloop.network_options = ...`).
pub fn options_v311(cfg: &MqttSettings) -> Result<rumqttc::MqttOptions, ConnectError> {
    let mut o = rumqttc::MqttOptions::new(
        cfg.client_id.clone(),
        cfg.broker.host.clone(),
        cfg.broker.port,
    );
    o.set_keep_alive(cfg.keep_alive)
        // Cannot panic: the configuration refuses an empty client id.
        .set_clean_session(false)
        .set_request_channel_capacity(REQUEST_CHANNEL_CAPACITY)
        .set_inflight(INFLIGHT)
        .set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES);
    if let Some(login) = &cfg.login {
        o.set_credentials(login.username.clone(), login.password.clone());
    }
    if let Some(tls) = &cfg.tls {
        o.set_transport(rumqttc::Transport::tls_with_config(tls_config(tls)?));
    }
    Ok(o)
}

/// TCP settings: no Nagle delay (an acknowledgement or a lone notification should not wait
/// up to 40 ms for company), and the connection timeout. Already part of [`options_v5`].
pub fn network_options() -> rumqttc::NetworkOptions {
    let mut n = rumqttc::NetworkOptions::new();
    n.set_tcp_nodelay(true);
    n.set_connection_timeout(CONNECT_TIMEOUT_SECS);
    n
}

/// The uplink QoS (`mqtt.qos`) for MQTT 3.1.1 publishes.
pub fn qos_v311(qos: MqttQos) -> rumqttc::QoS {
    match qos {
        MqttQos::AtMostOnce => rumqttc::QoS::AtMostOnce,
        MqttQos::AtLeastOnce => rumqttc::QoS::AtLeastOnce,
        MqttQos::ExactlyOnce => rumqttc::QoS::ExactlyOnce,
    }
}

/// The uplink QoS (`mqtt.qos`) for MQTT 5 publishes.
pub fn qos_v5(qos: MqttQos) -> rumqttc::v5::mqttbytes::QoS {
    use rumqttc::v5::mqttbytes::QoS;
    match qos {
        MqttQos::AtMostOnce => QoS::AtMostOnce,
        MqttQos::AtLeastOnce => QoS::AtLeastOnce,
        MqttQos::ExactlyOnce => QoS::ExactlyOnce,
    }
}

/// The rustls client configuration: the CAs of `ca_file` as the only roots, and the client
/// certificate of `client_cert`/`client_key` if set. Protocol versions are rustls' safe
/// defaults (TLS 1.2 and 1.3).
pub fn tls_config(tls: &MqttTls) -> Result<rumqttc::TlsConfiguration, ConnectError> {
    let mut roots = rustls::RootCertStore::empty();
    // Skipping what cannot be a trust anchor, as a system bundle may hold a few such.
    let (added, ignored) = roots.add_parsable_certificates(read_certs("ca_file", &tls.ca_file)?);
    if added == 0 {
        return Err(ConnectError::Pem {
            key: "ca_file",
            path: tls.ca_file.clone(),
            detail: "no certificate in the file can be a trust anchor".into(),
        });
    }
    if ignored > 0 {
        tracing::warn!(file = %tls.ca_file.display(), ignored, "mqtt.ca_file: certificates that cannot be trust anchors were skipped");
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots);
    let config = match &tls.client_auth {
        None => builder.with_no_client_auth(),
        Some(auth) => {
            let chain = read_certs("client_cert", &auth.cert)?;
            let key = read_key(&auth.key)?;
            builder.with_client_auth_cert(chain, key)?
        }
    };
    Ok(rumqttc::TlsConfiguration::Rustls(Arc::new(config)))
}

/// Every certificate of the PEM file `key` names; at least one.
fn read_certs(
    key: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, ConnectError> {
    crate::pem::read_certs(path).map_err(|e| pem_error(key, path, e))
}

/// The first private key of the PEM file `client_key` names.
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, ConnectError> {
    crate::pem::read_key(path).map_err(|e| pem_error("client_key", path, e))
}

fn pem_error(key: &'static str, path: &Path, e: crate::pem::PemFileError) -> ConnectError {
    let path = path.to_path_buf();
    match e {
        crate::pem::PemFileError::Read(source) => ConnectError::Read { key, path, source },
        crate::pem::PemFileError::Invalid(detail) => ConnectError::Pem { key, path, detail },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MqttSection;
    use std::time::Duration;

    /// The default section, for a broker elsewhere: client options do not depend on an
    /// embedded broker, which TLS cannot be used with.
    fn section() -> MqttSection {
        MqttSection {
            embedded_broker: false,
            ..MqttSection::default()
        }
    }

    /// The settings of a section that must pass the configuration's checks.
    fn settings(c: &MqttSection) -> MqttSettings {
        MqttSettings::from_section(c).unwrap()
    }

    #[test]
    fn defaults_give_persistent_sessions_in_both_versions() {
        let o = options_v5(&settings(&section())).unwrap();
        assert_eq!(o.broker_address(), ("127.0.0.1".to_string(), 1883));
        assert_eq!(o.client_id(), "lwm2m-server");
        assert!(!o.clean_start());
        assert_eq!(o.session_expiry_interval(), Some(86_400));
        assert_eq!(o.keep_alive(), Duration::from_secs(30));
        assert_eq!(o.request_channel_capacity(), REQUEST_CHANNEL_CAPACITY);
        assert_eq!(o.get_outgoing_inflight_upper_limit(), Some(INFLIGHT));
        assert!(o.credentials().is_none());
        assert!(matches!(o.transport(), rumqttc::Transport::Tcp));

        let o = options_v311(&settings(&section())).unwrap();
        assert_eq!(o.broker_address(), ("127.0.0.1".to_string(), 1883));
        assert!(!o.clean_session());
        assert_eq!(o.inflight(), INFLIGHT);
        assert_eq!(o.max_packet_size(), MAX_PACKET_BYTES);
        assert!(matches!(o.transport(), rumqttc::Transport::Tcp));

        let mut c = section();
        c.username = "bridge".into();
        c.password = "secret".into();
        c.broker = "[::1]:1884".into();
        let o = options_v311(&settings(&c)).unwrap();
        let login = o.credentials().unwrap();
        assert_eq!(
            (login.username.as_str(), login.password.as_str()),
            ("bridge", "secret")
        );
        assert_eq!(o.broker_address(), ("[::1]".to_string(), 1884));
        assert!(options_v5(&settings(&c)).unwrap().credentials().is_some());
    }

    #[test]
    fn tls_needs_readable_pem() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = section();
        c.tls = true;
        c.ca_file = dir.path().join("missing-ca.pem");
        let e = options_v311(&settings(&c)).unwrap_err().to_string();
        assert!(
            e.contains("mqtt.ca_file") && e.contains("missing-ca.pem"),
            "{e}"
        );

        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate\n").unwrap();
        c.ca_file = junk.clone();
        let e = options_v5(&settings(&c)).unwrap_err().to_string();
        assert!(
            e.contains("mqtt.ca_file") && e.contains("no CERTIFICATE"),
            "{e}"
        );

        c.ca_file = test_pki(dir.path()).ca;
        c.client_cert = dir.path().join("missing-cert.pem");
        c.client_key = dir.path().join("missing-key.pem");
        let e = options_v5(&settings(&c)).unwrap_err().to_string();
        assert!(
            e.contains("mqtt.client_cert") && e.contains("missing-cert.pem"),
            "{e}"
        );
    }

    /// A test CA, with a broker certificate for `localhost` and a client certificate it
    /// signed, written as PEM files.
    struct Pki {
        ca: PathBuf,
        client_cert: PathBuf,
        client_key: PathBuf,
        ca_der: CertificateDer<'static>,
        broker_chain: Vec<CertificateDer<'static>>,
        broker_key: PrivateKeyDer<'static>,
    }

    fn test_pki(dir: &Path) -> Pki {
        let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "test MQTT CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let leaf = |name: &str| {
            let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
            let params = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
            (params.signed_by(&key, &issuer).unwrap(), key)
        };
        let (client, client_key) = leaf("lwm2m-server");
        let (broker, broker_key) = leaf("localhost");
        let pki = Pki {
            ca: dir.join("ca.pem"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client-key.pem"),
            ca_der: ca.der().clone(),
            broker_chain: vec![broker.der().clone()],
            broker_key: PrivateKeyDer::try_from(broker_key.serialize_der()).unwrap(),
        };
        std::fs::write(&pki.ca, ca.pem()).unwrap();
        std::fs::write(&pki.client_cert, client.pem()).unwrap();
        std::fs::write(&pki.client_key, client_key.serialize_pem()).unwrap();
        pki
    }

    #[test]
    fn tls_options_build_with_a_generated_ca_and_client_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let pki = test_pki(dir.path());
        let mut c = section();
        c.tls = true;
        c.broker = "broker.example.com:8883".into();
        c.ca_file = pki.ca.clone();
        for (cert, key) in [
            (PathBuf::new(), PathBuf::new()),
            (pki.client_cert.clone(), pki.client_key.clone()),
        ] {
            c.client_cert = cert;
            c.client_key = key;
            for transport in [
                options_v5(&settings(&c)).unwrap().transport(),
                options_v311(&settings(&c)).unwrap().transport(),
            ] {
                match transport {
                    rumqttc::Transport::Tls(rumqttc::TlsConfiguration::Rustls(config)) => {
                        assert_eq!(
                            config.client_auth_cert_resolver.has_certs(),
                            !c.client_cert.as_os_str().is_empty()
                        );
                    }
                    _ => panic!("not a rustls transport"),
                }
            }
        }
        // A key file that holds no key: named, with the file.
        c.client_key = pki.client_cert.clone();
        let e = options_v5(&settings(&c)).unwrap_err().to_string();
        assert!(
            e.contains("mqtt.client_key") && e.contains("PRIVATE KEY"),
            "{e}"
        );
    }

    /// A one-connection TLS "broker" on loopback (rustls, blocking): completes the handshake,
    /// reads the CONNECT, answers `connack`, and returns the client's certificates.
    fn tls_broker(
        pki: &Pki,
        require_client_cert: bool,
        connack: &'static [u8],
    ) -> (
        u16,
        std::thread::JoinHandle<std::io::Result<Option<Vec<CertificateDer<'static>>>>>,
    ) {
        use std::io::{Read, Write};
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = if require_client_cert {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(pki.ca_der.clone()).unwrap();
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let config = Arc::new(
            builder
                .with_single_cert(pki.broker_chain.clone(), pki.broker_key.clone_key())
                .unwrap(),
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let thread = std::thread::spawn(move || {
            let (tcp, _) = listener.accept()?;
            tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
            let conn = rustls::ServerConnection::new(config).map_err(std::io::Error::other)?;
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            // CONNECT: type 1, a variable-length "remaining length", then the rest.
            let mut byte = [0u8; 1];
            tls.read_exact(&mut byte)?;
            assert_eq!(byte[0] >> 4, 1, "CONNECT first");
            let (mut len, mut shift) = (0usize, 0);
            loop {
                tls.read_exact(&mut byte)?;
                len |= usize::from(byte[0] & 0x7f) << shift;
                shift += 7;
                if byte[0] & 0x80 == 0 {
                    break;
                }
            }
            let mut rest = vec![0u8; len];
            tls.read_exact(&mut rest)?;
            tls.write_all(connack)?;
            tls.flush()?;
            let peer = tls.conn.peer_certificates().map(|c| c.to_vec());
            // Hold the connection until the client has read the CONNACK.
            std::thread::sleep(Duration::from_millis(200));
            Ok(peer)
        });
        (port, thread)
    }

    /// The options really connect: TLS with the configured CA to a broker certificate for
    /// `localhost`, with the client certificate when mutual TLS is set up, in both versions.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tls_handshakes_complete_with_the_built_options() {
        let dir = tempfile::tempdir().unwrap();
        let pki = test_pki(dir.path());
        let wait = Duration::from_secs(10);

        // MQTT 3.1.1 with mutual TLS: CONNACK = 0x20, length 2, no session, accepted.
        let (port, broker) = tls_broker(&pki, true, &[0x20, 0x02, 0x00, 0x00]);
        let mut c = section();
        c.tls = true;
        c.broker = format!("localhost:{port}");
        c.ca_file = pki.ca.clone();
        c.client_cert = pki.client_cert.clone();
        c.client_key = pki.client_key.clone();
        let (_client, mut events) =
            rumqttc::AsyncClient::new(options_v311(&settings(&c)).unwrap(), 10);
        let event = tokio::time::timeout(wait, events.poll())
            .await
            .unwrap()
            .unwrap();
        assert!(
            matches!(event, rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))),
            "{event:?}"
        );
        let peer = broker
            .join()
            .unwrap()
            .unwrap()
            .expect("the client sent its certificate");
        assert_eq!(peer.len(), 1);

        // MQTT 5 with server authentication only: CONNACK with an empty property list.
        let (port, broker) = tls_broker(&pki, false, &[0x20, 0x03, 0x00, 0x00, 0x00]);
        c.broker = format!("localhost:{port}");
        c.client_cert = PathBuf::new();
        c.client_key = PathBuf::new();
        let (_client, mut events) =
            rumqttc::v5::AsyncClient::new(options_v5(&settings(&c)).unwrap(), 10);
        let event = tokio::time::timeout(wait, events.poll())
            .await
            .unwrap()
            .unwrap();
        assert!(
            matches!(
                event,
                rumqttc::v5::Event::Incoming(rumqttc::v5::mqttbytes::v5::Packet::ConnAck(_))
            ),
            "{event:?}"
        );
        assert!(broker.join().unwrap().unwrap().is_none());
    }

    /// A broker certificate from another CA is refused: the configured CA is what is trusted.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_broker_certificate_from_another_ca_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let pki = test_pki(dir.path());
        let other = tempfile::tempdir().unwrap();
        let other_pki = test_pki(other.path());
        let (port, broker) = tls_broker(&pki, false, &[0x20, 0x02, 0x00, 0x00]);
        let mut c = section();
        c.tls = true;
        c.broker = format!("localhost:{port}");
        c.ca_file = other_pki.ca.clone();
        let (_client, mut events) =
            rumqttc::AsyncClient::new(options_v311(&settings(&c)).unwrap(), 10);
        let r = tokio::time::timeout(Duration::from_secs(10), events.poll())
            .await
            .unwrap();
        let e = r.expect_err("an untrusted broker").to_string();
        assert!(e.to_lowercase().contains("certificate"), "{e}");
        // The client aborted the handshake.
        assert!(broker.join().unwrap().is_err());
    }
}
