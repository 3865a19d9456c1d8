//! Tests of loading the configuration: defaults, the documented file, every refusal.
use super::*;
use std::net::SocketAddr;

#[test]
fn embedded_and_production_configs_parse() {
    let c = Config::embedded().unwrap();
    assert_eq!(c.server.coap_bind.len(), 2);
    assert!(
        c.server.coap_bind.iter().all(|a| a.ip().is_loopback()),
        "the default is loopback only"
    );
    assert_eq!(c.endpoint().block_szx, 6);
    let p = Config::parse(include_str!("../../../config/production.toml")).unwrap();
    assert_eq!(p.coap.ack_timeout_ms, 9000);
    assert_eq!(p.endpoint().block_szx, 5);
}

#[test]
fn embedded_security_and_dtls_defaults_match_the_struct_defaults() {
    let c = Config::embedded().unwrap();
    // The documented file and the serde defaults must agree, else an empty [dtls] would
    // behave differently from the file that claims to show the defaults.
    let d = DtlsSection::default();
    assert_eq!(c.dtls.connection_id_length, d.connection_id_length);
    assert_eq!(c.dtls.retransmit_initial_ms, d.retransmit_initial_ms);
    assert_eq!(c.dtls.retransmit_max_ms, d.retransmit_max_ms);
    assert_eq!(c.dtls.max_handshakes, d.max_handshakes);
    assert_eq!(
        c.dtls.handshakes_per_source_per_sec,
        d.handshakes_per_source_per_sec
    );
    assert_eq!(c.dtls.max_sessions, d.max_sessions);
    assert_eq!(
        c.dtls.session_save_interval_secs,
        d.session_save_interval_secs
    );
    assert_eq!(c.dtls.cipher_suites, CipherSuite::ALL.to_vec());
    assert!(!c.dtls.require_extended_master_secret);
    let e = Config::parse("").unwrap();
    assert_eq!(c.server.coaps_bind, e.server.coaps_bind);
    assert_eq!(c.server.coaps_bind.len(), 2);
    assert!(c.server.coaps_bind.iter().all(|a| a.port() == 5684));
    assert!(c.security.allow_nosec && e.security.allow_nosec);
    assert_eq!(
        c.secrets_key_path(),
        PathBuf::from("./lwm2m-data/secrets.key")
    );
    assert_eq!(
        c.admin_socket_path(),
        PathBuf::from("./lwm2m-data/admin.sock")
    );
    assert!(c.security.certificate.as_os_str().is_empty());
    assert!(c.security.trusted_ca.as_os_str().is_empty());
    assert_eq!(
        c.security.certificate_endpoint,
        e.security.certificate_endpoint
    );
    assert_eq!(
        c.security.certificate_endpoint,
        CertificateEndpoint::CnOrSan
    );
    assert_eq!(c.session_save_interval(), Some(Duration::from_secs(300)));

    let p = Config::parse(include_str!("../../../config/production.toml")).unwrap();
    assert!(!p.security.allow_nosec);
    assert_eq!(
        p.security.certificate_endpoint,
        CertificateEndpoint::CnOrSan
    );
    assert!(p.server.coaps_bind.iter().all(|a| a.ip().is_unspecified()));
}

fn err(text: &str) -> String {
    match Config::parse(text) {
        Ok(_) => panic!("accepted: {text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_security_and_dtls_values_are_refused_with_their_key() {
    let e = err("[dtls]\ncipher_suites = [\"TLS_PSK_WITH_NULL_SHA\"]\n");
    assert!(
        e.contains("TLS_PSK_WITH_NULL_SHA") && e.contains("TLS_PSK_WITH_AES_128_CCM_8"),
        "names the bad suite and the known ones: {e}"
    );
    let e = err("[dtls]\ncipher_suites = []\n");
    assert!(e.contains("dtls.cipher_suites"), "{e}");
    let e = err("[dtls]\ncipher_suites = [\"TLS_PSK_WITH_AES_128_CCM_8\", \"TLS_PSK_WITH_AES_128_CCM_8\"]\n");
    assert!(e.contains("twice"), "{e}");
    let e = err("[dtls]\nconnection_id_length = 17\n");
    assert!(e.contains("dtls.connection_id_length"), "{e}");
    let e = err("[dtls]\nconnection_id_length = 300\n");
    assert!(e.contains("connection_id_length"), "{e}");
    let e = err("[dtls]\nretransmit_initial_ms = 0\n");
    assert!(e.contains("dtls.retransmit_initial_ms"), "{e}");
    let e = err("[dtls]\nretransmit_initial_ms = 5000\nretransmit_max_ms = 1000\n");
    assert!(e.contains("dtls.retransmit_max_ms"), "{e}");
    let e = err("[dtls]\nmax_handshakes = 0\n");
    assert!(e.contains("dtls.max_handshakes"), "{e}");
    let e = err("[dtls]\ncid_length = 4\n");
    assert!(e.contains("cid_length"), "{e}");
    let e = err("[security]\ncertificate = \"/etc/server.pem\"\n");
    assert!(e.contains("security.private_key"), "{e}");
    let e = err("[security]\nallow_nosec = \"no\"\n");
    assert!(e.contains("allow_nosec"), "{e}");
    let e = err("[security]\nallow_nosec = false\n[server]\ncoaps_bind = []\n");
    assert!(e.contains("listen nowhere"), "{e}");
    let e = err("[server]\ncoap_bind = [\"127.0.0.1:5684\"]\n");
    assert!(
        e.contains("both server.coap_bind and server.coaps_bind"),
        "{e}"
    );
    // DTLS only: no NoSec address needed, and NoSec's addresses may then overlap.
    let c = Config::parse("[server]\ncoap_bind = []\n[security]\nallow_nosec = false\n").unwrap();
    assert!(c.server.coap_bind.is_empty());
    let c = Config::parse(
        "[dtls]\nconnection_id_length = 0\nsession_save_interval_secs = 0\ncipher_suites = [\"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256\"]\n",
    )
    .unwrap();
    assert_eq!(
        c.dtls.cipher_suites,
        vec![CipherSuite::EcdheEcdsaAes128GcmSha256]
    );
    assert_eq!(c.dtls.cipher_suites[0].id(), 0xC02B);
    assert_eq!(c.session_save_interval(), None);
    let c = Config::parse("[security]\nsecrets_key_file = \"/etc/lwm2m/key\"\n").unwrap();
    assert_eq!(c.secrets_key_path(), PathBuf::from("/etc/lwm2m/key"));
}

#[test]
fn certificate_endpoint_takes_its_three_names_and_refuses_others() {
    for (text, want) in [
        ("cn", CertificateEndpoint::Cn),
        ("san", CertificateEndpoint::San),
        ("cn-or-san", CertificateEndpoint::CnOrSan),
    ] {
        let c = Config::parse(&format!("[security]\ncertificate_endpoint = \"{text}\"\n")).unwrap();
        assert_eq!(c.security.certificate_endpoint, want);
        assert_eq!(want.as_str(), text);
    }
    for bad in ["CN", "subject", "cn_or_san", ""] {
        let e = err(&format!("[security]\ncertificate_endpoint = \"{bad}\"\n"));
        assert!(e.contains("certificate_endpoint"), "{bad}: {e}");
    }
}

#[test]
fn embedded_mqtt_defaults_match_the_struct_defaults() {
    let c = Config::embedded().unwrap();
    let (m, d) = (&c.mqtt, MqttSection::default());
    let typed = MqttSettings::from_section(&d).unwrap();
    // Field by field, through Debug (which covers every field and redacts the password).
    assert_eq!(format!("{m:?}"), format!("{typed:?}"));
    assert_eq!(m, &typed);
    assert!(d.password.is_empty() && m.login.is_none());
    assert!(m.enabled && m.embedded_broker.is_some() && m.tls.is_none());
    assert_eq!(m.broker.to_string(), "127.0.0.1:1883");
    assert_eq!(
        m.embedded_broker_addr(),
        Some(SocketAddr::from(([127, 0, 0, 1], 1883)))
    );
    assert_eq!((m.version.number(), m.qos.level()), (5, 1));
    assert_eq!((m.version, m.qos), (MqttVersion::V5, MqttQos::AtLeastOnce));
    assert_eq!(
        (m.client_id.as_str(), m.topic_prefix.as_str()),
        ("lwm2m-server", "lwm2m")
    );
    assert_eq!(m.keep_alive, Duration::from_secs(30));
    assert_eq!(m.session_expiry_secs, 86_400);
    assert_eq!(m.max_outbox, 1_000_000);
    assert_eq!(m.reconnect_min, Duration::from_millis(500));
    assert_eq!(m.reconnect_max, Duration::from_secs(30));
    assert_eq!(
        format!("{:?}", Config::parse("").unwrap().mqtt),
        format!("{typed:?}")
    );

    let p = Config::parse(include_str!("../../../config/production.toml")).unwrap();
    assert!(p.mqtt.enabled && p.mqtt.embedded_broker.is_none() && p.mqtt.tls.is_some());
    assert_eq!(p.mqtt.embedded_broker_addr(), None);
    assert!(p
        .mqtt
        .tls
        .as_ref()
        .is_some_and(|t| !t.ca_file.as_os_str().is_empty()));
}

#[test]
fn bad_mqtt_values_are_refused_with_their_key() {
    for (text, key) in [
        ("version = 4", "mqtt.version"),
        ("qos = 3", "mqtt.qos"),
        ("broker = \"localhost\"", "mqtt.broker"),
        ("broker = \"mqtt://localhost:1883\"", "mqtt.broker"),
        ("broker = \"localhost:1883\"", "IP address and port"),
        ("client_id = \"\"", "mqtt.client_id"),
        ("topic_prefix = \"\"", "mqtt.topic_prefix"),
        ("topic_prefix = \"lwm2m/\"", "mqtt.topic_prefix"),
        ("topic_prefix = \"a/+/b\"", "mqtt.topic_prefix"),
        ("topic_prefix = \"$SYS\"", "mqtt.topic_prefix"),
        ("keep_alive_secs = 0", "mqtt.keep_alive_secs"),
        ("session_expiry_secs = 0", "mqtt.session_expiry_secs"),
        ("max_outbox = 0", "mqtt.max_outbox"),
        ("reconnect_min_ms = 0", "mqtt.reconnect_min_ms"),
        (
            "reconnect_min_ms = 5000\nreconnect_max_ms = 1000",
            "mqtt.reconnect_max_ms",
        ),
        ("password = \"x\"", "mqtt.username"),
        ("tls = true\nembedded_broker = false", "mqtt.ca_file"),
        (
            "tls = true\nembedded_broker = false\nca_file = \"/ca.pem\"\nclient_key = \"/k.pem\"",
            "mqtt.client_cert",
        ),
        (
            "tls = true\nca_file = \"/ca.pem\"",
            "the bridge talks to its own broker over plain TCP",
        ),
        ("brokr = \"127.0.0.1:1883\"", "brokr"),
    ] {
        let e = err(&format!("[mqtt]\n{text}\n"));
        assert!(e.contains(key), "{text}: {e}");
    }
    let c = Config::parse(
        "[mqtt]\nversion = 3\nqos = 0\nbroker = \"[::1]:1884\"\ntopic_prefix = \"acme/lwm2m\"\n",
    )
    .unwrap();
    assert_eq!(
        c.mqtt.embedded_broker_addr(),
        Some("[::1]:1884".parse().unwrap())
    );
    let c = Config::parse(
        "[mqtt]\nembedded_broker = false\nbroker = \"mqtt.example.com:8883\"\ntls = true\nca_file = \"/etc/ca.pem\"\nusername = \"u\"\npassword = \"secret\"\n",
    )
    .unwrap();
    assert_eq!(c.mqtt.embedded_broker_addr(), None);
    let shown = format!("{c:?}");
    assert!(
        !shown.contains("\"secret\"") && shown.contains("<redacted>"),
        "{shown}"
    );
    let c = Config::parse("[mqtt]\nenabled = false\n").unwrap();
    assert_eq!(c.mqtt.embedded_broker_addr(), None);
}

#[test]
fn http_defaults_match_the_file_and_bad_keys_are_named() {
    let c = Config::embedded().unwrap();
    let d = HttpSection::default();
    assert_eq!((c.http.enabled, c.http.bind), (d.enabled, d.bind));
    assert!(d.enabled);
    assert_eq!(d.bind, SocketAddr::from(([127, 0, 0, 1], 8080)));
    let p = Config::parse(include_str!("../../../config/production.toml")).unwrap();
    assert!(p.http.enabled);
    let c = Config::parse("[http]\nenabled = false\nbind = \"[::1]:0\"\n").unwrap();
    assert!(!c.http.enabled);
    assert_eq!(c.http.bind.port(), 0);
    let e = err("[http]\nport = 9090\n");
    assert!(e.contains("port"), "{e}");
    let e = err("[http]\nbind = \"localhost:8080\"\n");
    assert!(e.contains("bind") || e.contains("address"), "{e}");
}

#[test]
fn http_tls_needs_cert_and_key_together() {
    let e = refused("http", "tls_cert = \"/etc/lwm2m/cert.pem\"");
    assert!(
        e.contains("http.tls_cert") && e.contains("http.tls_key"),
        "{e}"
    );
    let e = refused("http", "tls_key = \"/etc/lwm2m/key.pem\"");
    assert!(
        e.contains("http.tls_cert") && e.contains("http.tls_key"),
        "{e}"
    );
    let c = Config::parse(
        "[http]\ntls_cert = \"/etc/lwm2m/cert.pem\"\ntls_key = \"/etc/lwm2m/key.pem\"\n",
    )
    .unwrap();
    assert!(c.http.tls_cert.is_some() && c.http.tls_key.is_some());
}

#[test]
fn http_off_loopback_needs_a_token_file() {
    for bind in ["0.0.0.0:8080", "10.0.0.10:8080", "[::]:8080"] {
        let e = refused("http", &format!("bind = \"{bind}\""));
        assert!(
            e.contains("http.bind") && e.contains("http.token_file") && e.contains("loopback"),
            "{bind}: {e}"
        );
        let with_token =
            format!("[http]\nbind = \"{bind}\"\ntoken_file = \"/etc/lwm2m/http-token\"\n");
        assert!(Config::parse(&with_token).is_ok(), "{bind}");
        // A disabled API listens nowhere, so it needs no token.
        let disabled = format!("[http]\nenabled = false\nbind = \"{bind}\"\n");
        assert!(Config::parse(&disabled).is_ok(), "{bind}");
    }
    for bind in ["127.0.0.1:8080", "127.0.0.2:0", "[::1]:8080"] {
        assert!(
            Config::parse(&format!("[http]\nbind = \"{bind}\"\n")).is_ok(),
            "{bind}"
        );
    }
}

#[test]
fn empty_file_means_defaults_and_unknown_keys_are_named() {
    let c = Config::parse("").unwrap();
    assert_eq!(c.queue.awake_window_secs, 93);
    let e = Config::parse("[queue]\nawake_window = 5\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("awake_window"), "{e}");
    let e = Config::parse("[coap]\nblock_size = 1000\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("block_size"), "{e}");
}

/// Every numeric key with its range as `config/server.toml` must show it.
fn documented_ranges() -> Vec<(&'static str, &'static str, String)> {
    use limits::*;
    let r = |section, key, text: String| (section, key, text);
    vec![
        r("server", "coap_bind", range_text(&BIND_ADDRESSES)),
        r("bootstrap", "coap_bind", range_text(&BIND_ADDRESSES)),
        r(
            "firmware",
            "max_package_bytes",
            range_text(&MAX_PACKAGE_BYTES),
        ),
        r(
            "firmware",
            "max_total_bytes",
            range_text(&MAX_TOTAL_PACKAGE_BYTES),
        ),
        r("firmware", "push_block_size", range_text(&PUSH_BLOCK_SIZE)),
        r(
            "firmware",
            "push_block_interval_ms",
            range_text(&PUSH_BLOCK_INTERVAL_MS),
        ),
        r(
            "firmware",
            "download_timeout_secs",
            range_text(&FIRMWARE_PHASE_TIMEOUT_SECS),
        ),
        r(
            "firmware",
            "update_timeout_secs",
            range_text(&FIRMWARE_PHASE_TIMEOUT_SECS),
        ),
        r(
            "firmware",
            "default_concurrency",
            range_text(&FIRMWARE_CONCURRENCY),
        ),
        r("bootstrap", "coaps_bind", range_text(&BIND_ADDRESSES)),
        r("bootstrap", "lifetime", range_text(&BOOTSTRAP_LIFETIME)),
        r("bootstrap", "short_server_id", range_text(&SHORT_SERVER_ID)),
        r(
            "bootstrap",
            "sequence_timeout_secs",
            range_text(&BOOTSTRAP_SEQUENCE_TIMEOUT_SECS),
        ),
        r(
            "bootstrap",
            "max_sequences",
            range_text(&BOOTSTRAP_MAX_SEQUENCES),
        ),
        r("server", "coaps_bind", range_text(&BIND_ADDRESSES)),
        r(
            "server",
            "udp_recv_buffer_bytes",
            range_text(&UDP_RECV_BUFFER_BYTES),
        ),
        r(
            "server",
            "store_cache_bytes",
            range_text(&STORE_CACHE_BYTES),
        ),
        r(
            "server",
            "store_commit_gather_ms",
            range_text(&STORE_COMMIT_GATHER_MS),
        ),
        r("registration", "grace_secs", range_text(&GRACE_SECS)),
        r(
            "registration",
            "max_registrations",
            range_text(&MAX_REGISTRATIONS),
        ),
        r("queue", "awake_window_secs", range_text(&AWAKE_WINDOW_SECS)),
        r("queue", "max_per_device", range_text(&QUEUE_MAX_PER_DEVICE)),
        r("queue", "command_ttl_secs", range_text(&COMMAND_TTL_SECS)),
        r("queue", "max_pending", range_text(&QUEUE_MAX_PENDING)),
        r("coap", "ack_timeout_ms", range_text(&ACK_TIMEOUT_MS)),
        r("coap", "ack_random_factor", range_text(&ACK_RANDOM_FACTOR)),
        r("coap", "max_retransmit", range_text(&MAX_RETRANSMIT)),
        r("coap", "nstart", range_text(&NSTART)),
        r("coap", "block_size", range_text(&BLOCK_SIZE)),
        r(
            "dtls",
            "connection_id_length",
            range_text(&CONNECTION_ID_LENGTH),
        ),
        r(
            "dtls",
            "retransmit_initial_ms",
            range_text(&DTLS_RETRANSMIT_INITIAL_MS),
        ),
        r(
            "dtls",
            "retransmit_max_ms",
            format!("retransmit_initial_ms..={DTLS_RETRANSMIT_MAX_MS_CAP}"),
        ),
        r("dtls", "max_handshakes", range_text(&MAX_HANDSHAKES)),
        r(
            "dtls",
            "handshakes_per_source_per_sec",
            range_text(&HANDSHAKES_PER_SOURCE_PER_SEC),
        ),
        r("dtls", "max_sessions", range_text(&MAX_SESSIONS)),
        r(
            "dtls",
            "session_save_interval_secs",
            range_text(&SESSION_SAVE_INTERVAL_SECS),
        ),
        r("mqtt", "qos", range_text(&MQTT_QOS)),
        r("mqtt", "client_id", range_text(&MQTT_CLIENT_ID_BYTES)),
        r("mqtt", "topic_prefix", range_text(&MQTT_TOPIC_PREFIX_BYTES)),
        r("mqtt", "username", range_text(&MQTT_CREDENTIAL_BYTES)),
        r("mqtt", "password", range_text(&MQTT_CREDENTIAL_BYTES)),
        r("mqtt", "keep_alive_secs", range_text(&MQTT_KEEP_ALIVE_SECS)),
        r(
            "mqtt",
            "session_expiry_secs",
            range_text(&MQTT_SESSION_EXPIRY_SECS),
        ),
        r("mqtt", "max_outbox", range_text(&MQTT_MAX_OUTBOX)),
        r(
            "mqtt",
            "max_command_bytes",
            range_text(&MQTT_MAX_COMMAND_BYTES),
        ),
        r(
            "mqtt",
            "reconnect_min_ms",
            range_text(&MQTT_RECONNECT_MIN_MS),
        ),
        r(
            "mqtt",
            "reconnect_max_ms",
            format!("reconnect_min_ms..={MQTT_RECONNECT_MAX_MS_CAP}"),
        ),
    ]
}

/// The comment lines right above `key` in `[section]` of the documented file.
fn comment_above(text: &str, section: &str, key: &str) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let header = format!("[{section}]");
    let start = lines.iter().position(|l| l.trim() == header)?;
    let at = lines
        .iter()
        .enumerate()
        .skip(start + 1)
        .take_while(|(_, l)| !l.starts_with('['))
        .find(|(_, l)| {
            l.split_once('=')
                .is_some_and(|(k, _)| k.trim() == key && !l.starts_with('#'))
        })?
        .0;
    let mut comment: Vec<&str> = lines[..at]
        .iter()
        .rev()
        .take_while(|l| l.starts_with('#'))
        .copied()
        .collect();
    comment.reverse();
    Some(comment.join("\n"))
}

#[test]
fn every_range_is_documented_beside_its_key() {
    for (section, key, range) in documented_ranges() {
        let comment = comment_above(DEFAULT_CONFIG, section, key)
            .unwrap_or_else(|| panic!("[{section}] {key} is not in config/server.toml"));
        assert!(
            comment.contains(&range),
            "[{section}] {key}: its comment does not give the range {range}:\n{comment}"
        );
    }
}

/// The error of a config with `key = value` in `[section]`.
fn refused(section: &str, setting: &str) -> String {
    err(&format!("[{section}]\n{setting}\n"))
}

#[test]
fn a_number_below_its_range_is_refused_with_the_key_and_the_range() {
    let e = refused("queue", "awake_window_secs = 0");
    assert!(
        e.contains("queue.awake_window_secs = 0: must be 1..=86400"),
        "{e}"
    );
    let e = refused("coap", "nstart = 0");
    assert!(e.contains("coap.nstart = 0: must be 1..=32"), "{e}");
    let e = refused("queue", "max_pending = 0");
    assert!(
        e.contains("queue.max_pending = 0: must be 1..=10000000"),
        "{e}"
    );
    let e = refused("mqtt", "max_command_bytes = 100");
    assert!(
        e.contains("mqtt.max_command_bytes = 100: must be 256..=1048576"),
        "{e}"
    );
    let e = refused("server", "store_cache_bytes = 1000");
    assert!(
        e.contains("server.store_cache_bytes = 1000: must be 1048576..=17179869184"),
        "{e}"
    );
}

#[test]
fn a_number_above_its_range_is_refused_with_the_key_and_the_range() {
    for (section, setting, says) in [
        (
            "registration",
            "grace_secs = 86401",
            "registration.grace_secs = 86401: must be 0..=86400",
        ),
        (
            "queue",
            "command_ttl_secs = 9223372036854775807",
            "queue.command_ttl_secs = 9223372036854775807: must be 1..=2592000",
        ),
        (
            "coap",
            "max_retransmit = 64",
            "coap.max_retransmit = 64: must be 0..=10",
        ),
        (
            "coap",
            "ack_timeout_ms = 600001",
            "coap.ack_timeout_ms = 600001: must be 100..=600000",
        ),
        (
            "dtls",
            "max_sessions = 10000001",
            "dtls.max_sessions = 10000001: must be 1..=10000000",
        ),
        (
            "dtls",
            "session_save_interval_secs = 86401",
            "dtls.session_save_interval_secs = 86401: must be 0..=86400",
        ),
        (
            "mqtt",
            "max_outbox = 10000001",
            "mqtt.max_outbox = 10000001: must be 1..=10000000",
        ),
        (
            "mqtt",
            "keep_alive_secs = 65536",
            "mqtt.keep_alive_secs = 65536: must be 5..=65535",
        ),
    ] {
        let e = refused(section, setting);
        assert!(e.contains(says), "{setting}: {e}");
    }
}

#[test]
fn a_factor_that_is_not_a_number_in_range_is_refused() {
    for (value, shown) in [
        ("nan", "NaN"),
        ("inf", "inf"),
        ("0.5", "0.5"),
        ("4.5", "4.5"),
    ] {
        let e = refused("coap", &format!("ack_random_factor = {value}"));
        assert!(
            e.contains(&format!(
                "coap.ack_random_factor = {shown}: must be 1.0..=4.0"
            )),
            "{value}: {e}"
        );
    }
}

#[test]
fn a_bound_set_by_another_key_is_refused_naming_both() {
    let e = refused(
        "dtls",
        "retransmit_initial_ms = 5000\nretransmit_max_ms = 4000",
    );
    assert!(
        e.contains(
            "dtls.retransmit_max_ms = 4000: must be dtls.retransmit_initial_ms (5000)..=600000"
        ),
        "{e}"
    );
    let e = refused("mqtt", "reconnect_max_ms = 3600001");
    assert!(
        e.contains(
            "mqtt.reconnect_max_ms = 3600001: must be mqtt.reconnect_min_ms (500)..=3600000"
        ),
        "{e}"
    );
}

#[test]
fn lengths_and_counts_are_refused_with_the_key_and_the_range() {
    let e = refused("mqtt", &format!("topic_prefix = \"{}\"", "a".repeat(1025)));
    assert!(
        e.contains("mqtt.topic_prefix (length in bytes) = 1025: must be 1..=1024"),
        "{e}"
    );
    let e = refused(
        "mqtt",
        &format!("username = \"u\"\npassword = \"{}\"", "p".repeat(65_536)),
    );
    assert!(
        e.contains("mqtt.password (length in bytes) = 65536: must be 0..=65535"),
        "{e}"
    );
    assert!(!e.contains("ppp"), "the password itself is not shown: {e}");
    let many: Vec<String> = (0..65)
        .map(|i| format!("\"127.0.0.1:{}\"", 10_000 + i))
        .collect();
    let e = refused("server", &format!("coaps_bind = [{}]", many.join(", ")));
    assert!(
        e.contains("server.coaps_bind (addresses) = 65: must be 0..=64"),
        "{e}"
    );
    let e = refused("coap", "block_size = 2048");
    assert!(
        e.contains("coap.block_size = 2048: must be a power of two in 16..=1024"),
        "{e}"
    );
}

#[test]
fn the_largest_values_allowed_compute_without_overflow() {
    use limits::*;
    let text = format!(
        "[registration]\ngrace_secs = {}\n[queue]\nawake_window_secs = {}\ncommand_ttl_secs = {}\n\
         [coap]\nack_timeout_ms = {}\nack_random_factor = {:?}\nmax_retransmit = {}\nnstart = {}\n\
         [dtls]\nretransmit_initial_ms = {}\nretransmit_max_ms = {}\nsession_save_interval_secs = {}\n\
         [mqtt]\nkeep_alive_secs = {}\nsession_expiry_secs = {}\nreconnect_min_ms = {}\nreconnect_max_ms = {}\n",
        GRACE_SECS.end(),
        AWAKE_WINDOW_SECS.end(),
        COMMAND_TTL_SECS.end(),
        ACK_TIMEOUT_MS.end(),
        ACK_RANDOM_FACTOR.end(),
        MAX_RETRANSMIT.end(),
        NSTART.end(),
        DTLS_RETRANSMIT_INITIAL_MS.end(),
        DTLS_RETRANSMIT_MAX_MS_CAP,
        SESSION_SAVE_INTERVAL_SECS.end(),
        MQTT_KEEP_ALIVE_SECS.end(),
        MQTT_SESSION_EXPIRY_SECS.end(),
        MQTT_RECONNECT_MIN_MS.end(),
        MQTT_RECONNECT_MAX_MS_CAP,
    );
    let c = Config::parse(&text).unwrap();
    let t = c.endpoint().transmission;
    // Far below the 100 years past which deadlines saturate.
    assert!(t.exchange_lifetime() < Duration::from_secs(60 * 24 * 3600));
    let core = c.core();
    let now = std::time::Instant::now();
    for d in [
        core.awake_window,
        core.default_command_ttl,
        core.registration_grace,
        t.max_transmit_wait(),
    ] {
        assert!(now.checked_add(d).is_some());
    }
    assert!(
        Duration::from_secs(*COMMAND_TTL_SECS.end())
            <= *crate::core::types::COMMAND_TTL_RANGE.end(),
        "the default ttl is one a command could ask for"
    );
    assert_eq!(c.session_save_interval(), Some(Duration::from_secs(86_400)));
}

#[test]
fn broker_addresses_parse_or_say_what_is_wrong() {
    let ok = |s: &str| parse_broker(s).unwrap();
    assert_eq!(
        ok("127.0.0.1:1883"),
        BrokerAddress {
            host: "127.0.0.1".into(),
            port: 1883
        }
    );
    assert_eq!(ok("broker.example.com:8883").host, "broker.example.com");
    let v6 = ok("[::1]:1883");
    assert_eq!((v6.host.as_str(), v6.port), ("[::1]", 1883));
    assert!(v6.is_ipv6_literal());
    for (bad, why) in [
        ("127.0.0.1", "no :port"),
        ("localhost:", "port"),
        ("localhost:0", "port"),
        ("localhost:70000", "port"),
        (":1883", "no host"),
        ("::1:1883", "brackets"),
        ("[::1]", "followed by :port"),
        ("[not-v6]:1883", "IPv6"),
        ("mqtt://broker:1883", "scheme"),
        ("my broker:1883", "characters"),
    ] {
        let e = parse_broker(bad).unwrap_err().to_string();
        assert!(e.contains("mqtt.broker") && e.contains(why), "{bad}: {e}");
    }
}

/// The default section, for a broker elsewhere (TLS cannot be used with the embedded one).
fn external_broker() -> MqttSection {
    MqttSection {
        embedded_broker: false,
        ..MqttSection::default()
    }
}

#[test]
fn values_rumqttc_would_panic_on_are_errors() {
    let e = |c: MqttSection| MqttSettings::from_section(&c).unwrap_err().to_string();
    let mut c = external_broker();
    c.client_id = String::new();
    assert!(e(c.clone()).contains("mqtt.client_id"), "{}", e(c));
    let mut c = external_broker();
    c.keep_alive_secs = 1;
    assert!(e(c).contains("mqtt.keep_alive_secs"));
    let mut c = external_broker();
    c.keep_alive_secs = 70_000;
    assert!(e(c).contains("keep_alive_secs"));
    let mut c = external_broker();
    c.session_expiry_secs = 0;
    assert!(e(c).contains("mqtt.session_expiry_secs"));
    let mut c = external_broker();
    c.password = "x".into();
    assert!(e(c).contains("mqtt.username"));
    let mut c = external_broker();
    c.broker = "nowhere".into();
    assert!(e(c).contains("mqtt.broker"));
}

#[test]
fn tls_needs_a_ca_file_a_client_key_with_its_certificate_and_a_host_name() {
    let mut c = external_broker();
    c.tls = true;
    let e = MqttSettings::from_section(&c).unwrap_err();
    assert!(
        matches!(e, ConfigError::Mqtt(MqttError::MissingCaFile)),
        "{e}"
    );
    assert!(e.to_string().contains("mqtt.ca_file"));

    c.ca_file = PathBuf::from("/ca.pem");
    c.client_cert = PathBuf::from("/missing-cert.pem");
    let e = MqttSettings::from_section(&c).unwrap_err();
    assert!(
        matches!(e, ConfigError::Mqtt(MqttError::ClientAuthPair)),
        "{e}"
    );
    c.client_key = PathBuf::from("/missing-key.pem");
    let tls = MqttSettings::from_section(&c).unwrap().tls.unwrap();
    assert_eq!(
        tls.client_auth,
        Some(ClientAuth {
            cert: PathBuf::from("/missing-cert.pem"),
            key: PathBuf::from("/missing-key.pem"),
        })
    );

    c.broker = "[::1]:8883".into();
    c.client_cert = PathBuf::new();
    c.client_key = PathBuf::new();
    let e = MqttSettings::from_section(&c).unwrap_err().to_string();
    assert!(e.contains("IPv6") && e.contains("host name"), "{e}");
}

#[test]
fn embedded_bootstrap_defaults_match_the_struct_defaults() {
    let c = Config::embedded().unwrap();
    let d = BootstrapSection::default();
    let b = &c.bootstrap;
    assert!(b.enabled && d.enabled, "bootstrap runs by default");
    assert_eq!(b.coap_bind, d.coap_bind);
    assert_eq!(b.coaps_bind, d.coaps_bind);
    assert!(b
        .coaps_bind
        .iter()
        .all(|a| a.port() == 5784 && a.ip().is_loopback()));
    assert!(b
        .coap_bind
        .iter()
        .all(|a| a.port() == 5783 && a.ip().is_loopback()));
    assert_eq!(b.server_uri, d.server_uri);
    assert_eq!(b.server_uri, "coaps://127.0.0.1:5684");
    assert_eq!((b.lifetime, d.lifetime), (300, 300));
    assert_eq!(b.binding, d.binding);
    assert_eq!(b.short_server_id, d.short_server_id);
    assert_eq!(b.server_security, ServerSecurity::Psk);
    assert_eq!(d.server_security, ServerSecurity::Psk);
    assert_eq!(b.sequence_timeout_secs, d.sequence_timeout_secs);
    assert_eq!(b.max_sequences, d.max_sequences);
    let p = Config::parse(include_str!("../../../config/production.toml")).unwrap();
    assert!(
        p.bootstrap.coap_bind.is_empty(),
        "no NoSec bootstrap in production"
    );
}

#[test]
fn a_bootstrap_account_that_cannot_work_is_refused() {
    let e = refused("bootstrap", "server_uri = \"http://x\"");
    assert!(e.contains("must start with coap:// or coaps://"), "{e}");
    let e = refused("bootstrap", "server_uri = \"coap://127.0.0.1:5683\"");
    assert!(e.contains("does not go with server_security"), "{e}");
    let e = refused("bootstrap", "server_security = \"nosec\"");
    assert!(e.contains("does not go with server_security"), "{e}");
    let e = refused("bootstrap", "binding = \"X\"");
    assert!(e.contains("bootstrap.binding"), "{e}");
    let e = refused("bootstrap", "server_security = \"kerberos\"");
    assert!(e.contains("kerberos"), "{e}");
    let e = err("[security]\nallow_nosec = false\n[bootstrap]\ncoaps_bind = []\n");
    assert!(e.contains("bootstrap would listen nowhere"), "{e}");
    let e = err("[security]\nallow_nosec = false\n[bootstrap]\nserver_uri = \"coap://h:5683\"\nserver_security = \"nosec\"\n");
    assert!(e.contains("needs security.allow_nosec"), "{e}");
    // Turned off, its listeners may be anything.
    let c = Config::parse(
        "[security]\nallow_nosec = false\n[bootstrap]\nenabled = false\ncoaps_bind = []\n",
    )
    .unwrap();
    assert!(!c.bootstrap.enabled);
}

#[test]
fn embedded_firmware_defaults_match_the_struct_defaults() {
    let c = Config::embedded().unwrap();
    let d = FirmwareSection::default();
    let f = &c.firmware;
    assert_eq!((f.enabled, &f.path), (d.enabled, &d.path));
    assert_eq!((&f.coaps_uri, &f.coap_uri), (&d.coaps_uri, &d.coap_uri));
    assert_eq!(f.max_package_bytes, d.max_package_bytes);
    assert_eq!(f.max_total_bytes, d.max_total_bytes);
    assert_eq!(f.push_block_size, d.push_block_size);
    assert_eq!(f.push_block_interval_ms, d.push_block_interval_ms);
    assert_eq!(f.download_timeout_secs, d.download_timeout_secs);
    assert_eq!(f.update_timeout_secs, d.update_timeout_secs);
    assert_eq!(f.default_concurrency, d.default_concurrency);
    let e = refused("firmware", "push_block_size = 300");
    assert!(e.contains("power of two"), "{e}");
    let e = refused("firmware", "path = \"rd\"");
    assert!(e.contains("firmware.path"), "{e}");
    let e = refused("firmware", "coaps_uri = \"coap://x\"");
    assert!(e.contains("firmware.coaps_uri"), "{e}");
}

#[test]
fn the_embedded_brokers_tls_and_password_keys_are_checked() {
    for (text, why) in [
        (
            "[mqtt]\nembedded_tls_bind = \"127.0.0.1:8883\"",
            "embedded_tls_cert",
        ),
        (
            "[mqtt]\nembedded_tls_bind = \"localhost:8883\"\nembedded_tls_cert = \"/c\"\nembedded_tls_key = \"/k\"",
            "IP address and port",
        ),
        (
            "[mqtt]\nembedded_tls_bind = \"127.0.0.1:1883\"\nembedded_tls_cert = \"/c\"\nembedded_tls_key = \"/k\"",
            "its own port",
        ),
        ("[mqtt]\nembedded_max_queued = 0", "mqtt.embedded_max_queued"),
        ("[mqtt]\nbroker = \"0.0.0.0:1883\"", "loopback address only"),
        (
            "[mqtt]\nembedded_tls_bind = \"0.0.0.0:8883\"\nembedded_tls_cert = \"/c\"\nembedded_tls_key = \"/k\"",
            "mqtt.embedded_password_file",
        ),
        (
            "[mqtt]\nembedded_broker = false\nembedded_password_file = \"/p\"",
            "embedded_broker = false",
        ),
    ] {
        let e = err(text);
        assert!(e.contains(why), "{text}: {e}");
    }
    let c = Config::parse(
        "[mqtt]\nembedded_password_file = \"/etc/lwm2m/mqtt.passwd\"\nembedded_tls_bind = \"0.0.0.0:8883\"\nembedded_tls_cert = \"/c.pem\"\nembedded_tls_key = \"/k.pem\"",
    )
    .unwrap();
    let e = c.mqtt.embedded().unwrap();
    assert_eq!(
        e.password_file.as_deref(),
        Some(std::path::Path::new("/etc/lwm2m/mqtt.passwd"))
    );
    let tls = e.tls.as_ref().unwrap();
    assert_eq!(tls.bind, SocketAddr::from(([0, 0, 0, 0], 8883)));
    assert_eq!(e.max_queued, 100_000);
}

#[test]
fn embedded_cluster_defaults_match_the_struct_defaults_and_bad_clusters_are_refused() {
    let c = Config::embedded().unwrap().cluster;
    let d = ClusterSection::default();
    assert_eq!(
        (
            c.enabled,
            c.node_id,
            c.internal_bind,
            &c.secret_file,
            &c.peers,
            &c.store
        ),
        (
            d.enabled,
            d.node_id,
            d.internal_bind,
            &d.secret_file,
            &d.peers,
            &d.store
        )
    );
    let on = "[cluster]\nenabled = true\nnode_id = 1\nsecret_file = \"s\"\n";
    let ok = format!("{on}peers = [{{ node_id = 2, internal = \"127.0.0.12:5690\" }}]\n");
    let c = Config::parse(&ok).unwrap().cluster;
    assert_eq!(c.peers[0].node_id, 2);
    let e = err("[cluster]\nenabled = true\n");
    assert!(e.contains("cluster.secret_file"), "{e}");
    let e = err(&format!("{on}[dtls]\nconnection_id_length = 4\n"));
    assert!(
        e.contains("connection_id_length = 4") && e.contains("at least 5"),
        "{e}"
    );
    let e = err(&format!(
        "{on}peers = [{{ node_id = 1, internal = \"127.0.0.12:5690\" }}]\n"
    ));
    assert!(e.contains("node_id 1 appears twice"), "{e}");
    let e = err(&format!(
        "{on}peers = [{{ node_id = 2, internal = \"127.0.0.1:5690\" }}]\n"
    ));
    assert!(e.contains("node 2 has internal address"), "{e}");
    let e = err("[cluster]\nstore = \"redis://127.0.0.1/\"\n");
    assert!(e.contains("cluster.enabled is false"), "{e}");
    let e = err(&format!("{on}store = \"http://127.0.0.1/\"\n"));
    assert!(e.contains("a Redis URL is expected"), "{e}");
    let e = err(&format!("{on}store = \"redis://127.0.0.1/\"\n"));
    assert!(e.contains("[bootstrap] with cluster.store"), "{e}");
    let shared =
        format!("{on}store = \"rediss://r.example:6380/2\"\n[bootstrap]\nenabled = false\n");
    assert_eq!(
        Config::parse(&shared).unwrap().cluster.store,
        "rediss://r.example:6380/2"
    );
    let e = err("[cluster]\nnode_id = 256\n");
    assert!(e.contains("node_id"), "{e}");
    let e = err("[cluster]\npeers = [{ node_id = 2 }]\n");
    assert!(e.contains("internal"), "{e}");
}

#[test]
fn the_three_node_example_parses_and_its_nodes_know_each_other() {
    let nodes = [
        include_str!("../../../config/cluster/node1.toml"),
        include_str!("../../../config/cluster/node2.toml"),
        include_str!("../../../config/cluster/node3.toml"),
    ]
    .map(|t| Config::parse(t).unwrap());
    for (i, n) in nodes.iter().enumerate() {
        let c = &n.cluster;
        assert!(c.enabled);
        assert_eq!(usize::from(c.node_id), i + 1);
        let mut peers: Vec<_> = c.peers.iter().map(|p| (p.node_id, p.internal)).collect();
        peers.sort();
        let others: Vec<_> = nodes
            .iter()
            .filter(|o| o.cluster.node_id != c.node_id)
            .map(|o| (o.cluster.node_id, o.cluster.internal_bind))
            .collect();
        assert_eq!(peers, others, "node {}", c.node_id);
        // The balancer's upstreams are the nodes' DTLS addresses.
        let nginx = include_str!("../../../config/cluster/nginx.conf");
        for a in &n.server.coaps_bind {
            assert!(
                nginx.contains(&format!("server {a};")),
                "{a} not in nginx.conf"
            );
        }
    }
}

#[test]
fn a_store_url_is_shown_without_its_password() {
    assert_eq!(
        redact_url("redis://:hunter2@r:6379/0"),
        "redis://:***@r:6379/0"
    );
    assert_eq!(redact_url("rediss://app:pw@r/1"), "rediss://app:***@r/1");
    assert_eq!(
        redact_url("redis://127.0.0.1:6379/0"),
        "redis://127.0.0.1:6379/0"
    );
    let e =
        err("[cluster]\nenabled = true\nsecret_file = \"s\"\nstore = \"http://u:hunter2@r/\"\n");
    assert!(!e.contains("hunter2"), "{e}");
}
