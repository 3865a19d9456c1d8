//! Why a handshake failed, for both roles (RFC 5246 §7.2 alerts; RFC 6347 §4.1.2.7 for what
//! is dropped instead of failing): one variant per failure, the alert it sends or received,
//! a stable label for metrics, and whether it is worth an audit entry.
use crate::alert::AlertDescription;

/// One handshake failure. The `Display` text is the human-readable reason for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    // Either role.
    /// The handshake did not finish within `handshake_timeout`.
    #[error("handshake timed out")]
    Timeout,
    /// A message or flight of ours cannot be encoded: a configured value too large for its
    /// field, or the epoch-0 sequence numbers the peer left us ran out.
    #[error("handshake message cannot be encoded")]
    Unencodable,
    /// A peer's handshake message does not parse; `what` names it.
    #[error("malformed {what}")]
    Malformed { what: &'static str },
    /// A handshake message of a type this engine does not know.
    #[error("unknown handshake message")]
    UnknownMessage,
    /// A known handshake message where the handshake's state expects another.
    #[error("handshake message out of order")]
    OutOfOrder,
    /// The peer's Finished does not match the transcript: the two sides derived different
    /// secrets (another PSK, say).
    #[error("Finished does not verify (wrong key?)")]
    FinishedMismatch,
    /// The configured PSK is longer than a pre-master secret can carry (RFC 4279 §5.3).
    #[error("PSK longer than 65535 bytes")]
    PskTooLong,
    /// The peer's ECDHE public key is not a valid P-256 point.
    #[error("bad ECDHE public key")]
    BadEcdhePoint(AlertDescription),

    // Server role.
    /// The peer sent an alert during the handshake; we send none back.
    #[error("{}", client_alert_reason(*.0))]
    ClientAlert(AlertDescription),
    /// The handshake table was full and this, the oldest handshake, made room.
    #[error("handshake evicted: the handshake table is full")]
    Evicted,
    #[error("client does not offer DTLS 1.2")]
    ClientVersion,
    #[error("no null compression")]
    NoNullCompression,
    #[error("client does not offer Extended Master Secret")]
    ExtendedMasterSecretRequired,
    /// RFC 7627 §5.3: a session made with EMS is resumed only with EMS.
    #[error("resumption without Extended Master Secret")]
    ResumptionWithoutExtendedMasterSecret,
    #[error("no cipher suite in common")]
    NoCommonSuite,
    /// An ECDHE suite was chosen but the configuration has no server key.
    #[error("no server key")]
    NoServerKey,
    #[error("no server certificate type in common")]
    NoServerCertificateType,
    #[error("no client certificate type in common")]
    NoClientCertificateType,
    /// Only the Finished may be encrypted during the handshake.
    #[error("unexpected encrypted handshake message")]
    UnexpectedEncryptedMessage,
    #[error("unencrypted Finished")]
    UnencryptedFinished,
    /// An ECDHE client sent an empty Certificate; client authentication is required.
    #[error("client sent no certificate")]
    NoClientCertificate,
    /// The application's credential check refused the client's key or certificate; the
    /// alert it chose says why.
    #[error("{}", credential_refusal_reason(*.0))]
    ClientCredentialRefused(AlertDescription),
    #[error("unknown PSK identity")]
    UnknownPskIdentity,
    #[error("unsupported signature scheme")]
    UnsupportedSignatureScheme,
    #[error("CertificateVerify signature invalid")]
    BadCertificateVerify(AlertDescription),
    /// The client's certificate was accepted by the credential check, but no public key can
    /// be read from it to check its CertificateVerify.
    #[error("client certificate holds no readable public key")]
    UnreadableClientCertificate,
    /// The client's Finished in a full handshake does not decrypt: it derived other keys,
    /// which means another PSK (or a forged record).
    #[error("client Finished does not decrypt (wrong key?)")]
    FinishedUndecryptable,

    // Client role.
    /// The server sent an alert during the handshake; we send none back.
    #[error("{}", server_alert_reason(*.0))]
    ServerAlert(AlertDescription),
    #[error("server does not speak DTLS 1.2")]
    ServerVersion,
    /// RFC 5246 §7.4.1.3: the server picks a compression method the client offered.
    #[error("server chose a compression method we did not offer")]
    UnofferedCompression,
    #[error("server chose a suite we did not offer")]
    UnofferedSuite,
    /// The server's Connection ID is longer than this engine can put in its records.
    #[error("server's Connection ID is longer than 16 bytes")]
    ServerConnectionIdTooLong,
    #[error("server resumed with another suite")]
    ResumedWithAnotherSuite,
    #[error("server resumed a session we do not have")]
    ResumedUnknownSession,
    #[error("server key is not the pinned one")]
    ServerKeyNotPinned,
    #[error("server sent a raw key, a certificate was required")]
    CertificateRequired,
    #[error("server sent no certificate")]
    NoServerCertificate,
    /// The server's chain does not lead to a configured root at the injected wall-clock
    /// time (expired, not yet valid, unknown issuer, ...).
    #[error("server certificate not trusted")]
    ServerCertificateUntrusted(AlertDescription),
    /// A certificate chain must be checked against the time of day, and the configuration
    /// gives no wall clock.
    #[error("no wall clock to check the server certificate's validity")]
    NoWallClock,
    #[error("unsupported curve or signature")]
    UnsupportedCurveOrSignature,
    #[error("ServerKeyExchange signature invalid")]
    BadServerKeyExchange(AlertDescription),
    /// The server chose a suite whose key exchange our credential cannot do.
    #[error("server chose a suite our credential cannot do")]
    CredentialMismatch,
}

impl HandshakeError {
    /// The alert this failure is about: the one we send or, for a peer's alert, the one
    /// received. `close_notify` stands for "none" (a timeout, an eviction).
    pub fn alert(&self) -> AlertDescription {
        use AlertDescription as A;
        match self {
            Self::Timeout | Self::Evicted => A::CloseNotify,
            Self::ClientAlert(a) | Self::ServerAlert(a) => *a,
            Self::Unencodable | Self::PskTooLong | Self::NoServerKey | Self::NoWallClock => {
                A::InternalError
            }
            Self::Malformed { .. } => A::DecodeError,
            Self::UnknownMessage
            | Self::OutOfOrder
            | Self::UnexpectedEncryptedMessage
            | Self::UnencryptedFinished => A::UnexpectedMessage,
            Self::FinishedMismatch => A::DecryptError,
            Self::BadEcdhePoint(a)
            | Self::ClientCredentialRefused(a)
            | Self::BadCertificateVerify(a)
            | Self::ServerCertificateUntrusted(a)
            | Self::BadServerKeyExchange(a) => *a,
            Self::ClientVersion | Self::ServerVersion => A::ProtocolVersion,
            Self::NoNullCompression
            | Self::ExtendedMasterSecretRequired
            | Self::ResumptionWithoutExtendedMasterSecret
            | Self::NoCommonSuite
            | Self::NoClientCertificate
            | Self::ServerConnectionIdTooLong
            | Self::CredentialMismatch => A::HandshakeFailure,
            Self::NoServerCertificateType
            | Self::NoClientCertificateType
            | Self::CertificateRequired => A::UnsupportedCertificate,
            Self::UnknownPskIdentity => A::UnknownPskIdentity,
            Self::UnsupportedSignatureScheme
            | Self::UnofferedCompression
            | Self::UnofferedSuite
            | Self::ResumedWithAnotherSuite
            | Self::ResumedUnknownSession
            | Self::UnsupportedCurveOrSignature => A::IllegalParameter,
            Self::FinishedUndecryptable => A::BadRecordMac,
            Self::ServerKeyNotPinned
            | Self::NoServerCertificate
            | Self::UnreadableClientCertificate => A::BadCertificate,
        }
    }

    /// The fatal alert to send the peer, if any: none for a timeout, an eviction, or a
    /// failure the peer announced with its own alert.
    pub fn alert_to_send(&self) -> Option<AlertDescription> {
        match self {
            Self::Timeout | Self::Evicted | Self::ClientAlert(_) | Self::ServerAlert(_) => None,
            // An application's credential check may refuse with close_notify: nothing sent.
            _ => Some(self.alert()).filter(|a| *a != AlertDescription::CloseNotify),
        }
    }

    /// A stable snake_case name, for metrics labels.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Unencodable => "unencodable",
            Self::Malformed { .. } => "malformed",
            Self::UnknownMessage => "unknown_message",
            Self::OutOfOrder => "out_of_order",
            Self::FinishedMismatch => "finished_mismatch",
            Self::PskTooLong => "psk_too_long",
            Self::BadEcdhePoint(_) => "bad_ecdhe_point",
            Self::ClientAlert(_) => "client_alert",
            Self::Evicted => "evicted",
            Self::ClientVersion => "client_version",
            Self::NoNullCompression => "no_null_compression",
            Self::ExtendedMasterSecretRequired => "extended_master_secret_required",
            Self::ResumptionWithoutExtendedMasterSecret => {
                "resumption_without_extended_master_secret"
            }
            Self::NoCommonSuite => "no_common_suite",
            Self::NoServerKey => "no_server_key",
            Self::NoServerCertificateType => "no_server_certificate_type",
            Self::NoClientCertificateType => "no_client_certificate_type",
            Self::UnexpectedEncryptedMessage => "unexpected_encrypted_message",
            Self::UnencryptedFinished => "unencrypted_finished",
            Self::NoClientCertificate => "no_client_certificate",
            Self::ClientCredentialRefused(_) => "client_credential_refused",
            Self::UnknownPskIdentity => "unknown_psk_identity",
            Self::UnsupportedSignatureScheme => "unsupported_signature_scheme",
            Self::BadCertificateVerify(_) => "bad_certificate_verify",
            Self::UnreadableClientCertificate => "unreadable_client_certificate",
            Self::FinishedUndecryptable => "finished_undecryptable",
            Self::ServerAlert(_) => "server_alert",
            Self::ServerVersion => "server_version",
            Self::UnofferedCompression => "unoffered_compression",
            Self::UnofferedSuite => "unoffered_suite",
            Self::ServerConnectionIdTooLong => "server_connection_id_too_long",
            Self::ResumedWithAnotherSuite => "resumed_with_another_suite",
            Self::ResumedUnknownSession => "resumed_unknown_session",
            Self::ServerKeyNotPinned => "server_key_not_pinned",
            Self::CertificateRequired => "certificate_required",
            Self::NoServerCertificate => "no_server_certificate",
            Self::ServerCertificateUntrusted(_) => "server_certificate_untrusted",
            Self::NoWallClock => "no_wall_clock",
            Self::UnsupportedCurveOrSignature => "unsupported_curve_or_signature",
            Self::BadServerKeyExchange(_) => "bad_server_key_exchange",
            Self::CredentialMismatch => "credential_mismatch",
        }
    }

    /// Whether an operator's audit log should record this failure: every failure we end
    /// with an alert of our own, and a peer's alert that says our credentials or its key
    /// did not match. Timeouts, evictions and peers that just give up are noise.
    pub fn is_security_event(&self) -> bool {
        use AlertDescription as A;
        match self {
            Self::ClientAlert(a) => matches!(
                a,
                A::BadRecordMac | A::DecryptError | A::UnknownPskIdentity | A::HandshakeFailure
            ),
            Self::ServerAlert(_) | Self::Timeout | Self::Evicted => false,
            _ => self.alert() != A::CloseNotify,
        }
    }
}

/// A handshake failure and who it concerned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub struct Failure {
    pub error: HandshakeError,
    /// The PSK identity or principal presented, if one was.
    pub identity: Option<String>,
}

impl Failure {
    pub(crate) fn anonymous(error: HandshakeError) -> Self {
        Self {
            error,
            identity: None,
        }
    }
}

impl From<HandshakeError> for Failure {
    fn from(error: HandshakeError) -> Self {
        Self::anonymous(error)
    }
}

fn client_alert_reason(desc: AlertDescription) -> &'static str {
    use AlertDescription as A;
    match desc {
        A::CloseNotify => "client closed the handshake",
        A::BadRecordMac | A::DecryptError => "client reports a decryption failure (wrong key?)",
        A::UnknownPskIdentity => "client reports unknown PSK identity",
        A::BadCertificate | A::UnknownCa | A::CertificateUnknown | A::UnsupportedCertificate => {
            "client refused the server's certificate"
        }
        A::HandshakeFailure => "client reports handshake failure",
        _ => "client sent a fatal alert",
    }
}

/// Why the application's credential check refused a client, from the alert it chose
/// (RFC 5246 §7.2.2).
fn credential_refusal_reason(desc: AlertDescription) -> &'static str {
    use AlertDescription as A;
    match desc {
        A::CertificateRevoked => "client certificate refused: revoked",
        A::CertificateExpired => "client certificate refused: expired or not yet valid",
        A::UnknownCa => "client certificate refused: not issued by a trusted CA",
        A::CertificateUnknown => "client certificate refused: it names no acceptable identity",
        A::BadCertificate => "client certificate refused: malformed or not for client use",
        A::AccessDenied => "client key or certificate refused: not authorized",
        _ => "client key or certificate refused",
    }
}

fn server_alert_reason(desc: AlertDescription) -> &'static str {
    use AlertDescription as A;
    match desc {
        A::UnknownPskIdentity => "server: unknown PSK identity",
        A::BadRecordMac | A::DecryptError => "server: decryption failed (wrong key?)",
        A::HandshakeFailure => "server: handshake failure",
        A::BadCertificate
        | A::UnsupportedCertificate
        | A::UnknownCa
        | A::CertificateRevoked
        | A::AccessDenied => "server refused our credential",
        _ => "server sent a fatal alert",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The audit rule this replaces: a failure with an alert of our own, or a peer alert
    /// whose reason began "client reports".
    #[test]
    fn security_events_are_ours_and_the_clients_reports() {
        let all_alerts = [
            AlertDescription::CloseNotify,
            AlertDescription::BadRecordMac,
            AlertDescription::DecryptError,
            AlertDescription::UnknownPskIdentity,
            AlertDescription::HandshakeFailure,
            AlertDescription::BadCertificate,
            AlertDescription::AccessDenied,
            AlertDescription::InternalError,
        ];
        for a in all_alerts {
            let e = HandshakeError::ClientAlert(a);
            let old_rule = e.to_string().starts_with("client reports");
            assert_eq!(e.is_security_event(), old_rule, "{a:?}");
            assert_eq!(e.alert_to_send(), None);
        }
        for e in [HandshakeError::Timeout, HandshakeError::Evicted] {
            assert_eq!(e.alert(), AlertDescription::CloseNotify);
            assert!(!e.is_security_event());
        }
        for e in [
            HandshakeError::UnknownPskIdentity,
            HandshakeError::FinishedUndecryptable,
            HandshakeError::ClientCredentialRefused(AlertDescription::CertificateExpired),
            HandshakeError::Malformed { what: "Finished" },
        ] {
            assert_ne!(e.alert(), AlertDescription::CloseNotify);
            assert!(e.is_security_event());
            assert_eq!(e.alert_to_send(), Some(e.alert()));
        }
        assert_eq!(
            HandshakeError::ServerAlert(AlertDescription::UnknownPskIdentity).to_string(),
            "server: unknown PSK identity"
        );
        assert_eq!(HandshakeError::NoWallClock.label(), "no_wall_clock");
    }

    #[test]
    fn a_refused_client_credential_says_why_by_its_alert() {
        use AlertDescription as A;
        let text = |a| HandshakeError::ClientCredentialRefused(a).to_string();
        assert!(text(A::CertificateRevoked).ends_with("revoked"));
        assert!(text(A::UnknownCa).contains("trusted CA"));
        assert!(text(A::CertificateExpired).contains("expired"));
        assert!(text(A::CertificateUnknown).contains("names no acceptable identity"));
        assert!(text(A::AccessDenied).contains("not authorized"));
        let reasons: std::collections::HashSet<String> = [
            A::CertificateRevoked,
            A::UnknownCa,
            A::CertificateExpired,
            A::CertificateUnknown,
            A::BadCertificate,
            A::AccessDenied,
            A::InternalError,
        ]
        .into_iter()
        .map(text)
        .collect();
        assert_eq!(reasons.len(), 7, "each alert its own reason");
    }
}
