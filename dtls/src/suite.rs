//! The cipher suites this engine speaks: the LwM2M set (OMA LwM2M TS 1.2 Transport §5.2.8,
//! RFC 7925 §4.3 and §4.4) and its common companions.
//!
//! | suite | RFC | key exchange | record protection |
//! | --- | --- | --- | --- |
//! | TLS_PSK_WITH_AES_128_CCM_8 | 6655 | PSK | AES-128-CCM, 8-byte tag |
//! | TLS_PSK_WITH_AES_128_CBC_SHA256 | 5487 | PSK | AES-128-CBC + HMAC-SHA256 |
//! | TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8 | 7251 | ECDHE P-256, ECDSA | AES-128-CCM, 8-byte tag |
//! | TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 | 5289 | ECDHE P-256, ECDSA | AES-128-GCM |
//!
//! All use the TLS 1.2 PRF with SHA-256.

/// A supported cipher suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CipherSuite {
    PskAes128Ccm8,
    PskAes128CbcSha256,
    EcdheEcdsaAes128Ccm8,
    EcdheEcdsaAes128GcmSha256,
}

/// How a suite authenticates the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyExchange {
    Psk,
    EcdheEcdsa,
}

/// How a suite protects records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordCipher {
    /// AES-128-CCM with an 8-byte tag (RFC 6655): 4-byte implicit and 8-byte explicit nonce.
    Ccm8,
    /// AES-128-GCM (RFC 5288): 4-byte implicit and 8-byte explicit nonce, 16-byte tag.
    Gcm,
    /// AES-128-CBC with HMAC-SHA256, MAC-then-encrypt (RFC 5246 §6.2.3.2).
    CbcSha256,
}

impl CipherSuite {
    /// Every suite, in the server's default order of preference.
    pub const ALL: [CipherSuite; 4] = [
        CipherSuite::PskAes128Ccm8,
        CipherSuite::PskAes128CbcSha256,
        CipherSuite::EcdheEcdsaAes128Ccm8,
        CipherSuite::EcdheEcdsaAes128GcmSha256,
    ];

    /// The IANA code point.
    pub const fn id(self) -> u16 {
        match self {
            CipherSuite::PskAes128Ccm8 => 0xC0A8,
            CipherSuite::PskAes128CbcSha256 => 0x00AE,
            CipherSuite::EcdheEcdsaAes128Ccm8 => 0xC0AE,
            CipherSuite::EcdheEcdsaAes128GcmSha256 => 0xC02B,
        }
    }

    pub fn from_id(id: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.id() == id)
    }

    pub const fn key_exchange(self) -> KeyExchange {
        match self {
            CipherSuite::PskAes128Ccm8 | CipherSuite::PskAes128CbcSha256 => KeyExchange::Psk,
            _ => KeyExchange::EcdheEcdsa,
        }
    }

    pub const fn record_cipher(self) -> RecordCipher {
        match self {
            CipherSuite::PskAes128Ccm8 | CipherSuite::EcdheEcdsaAes128Ccm8 => RecordCipher::Ccm8,
            CipherSuite::EcdheEcdsaAes128GcmSha256 => RecordCipher::Gcm,
            CipherSuite::PskAes128CbcSha256 => RecordCipher::CbcSha256,
        }
    }

    /// The IANA name, for logs.
    pub const fn name(self) -> &'static str {
        match self {
            CipherSuite::PskAes128Ccm8 => "TLS_PSK_WITH_AES_128_CCM_8",
            CipherSuite::PskAes128CbcSha256 => "TLS_PSK_WITH_AES_128_CBC_SHA256",
            CipherSuite::EcdheEcdsaAes128Ccm8 => "TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8",
            CipherSuite::EcdheEcdsaAes128GcmSha256 => "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        }
    }
}

impl RecordCipher {
    /// Bytes of MAC key per direction in the key block (RFC 5246 §6.3).
    pub const fn mac_key_len(self) -> usize {
        match self {
            RecordCipher::CbcSha256 => 32,
            _ => 0,
        }
    }

    /// Bytes of encryption key per direction.
    pub const fn enc_key_len(self) -> usize {
        16
    }

    /// Bytes of implicit ("fixed") IV per direction in the key block.
    pub const fn fixed_iv_len(self) -> usize {
        match self {
            RecordCipher::CbcSha256 => 0,
            _ => 4,
        }
    }

    /// Most bytes a record's payload grows by when protected (nonce/IV, tag/MAC, padding).
    pub const fn max_expansion(self) -> usize {
        match self {
            RecordCipher::Ccm8 => 8 + 8,
            RecordCipher::Gcm => 8 + 16,
            RecordCipher::CbcSha256 => 16 + 32 + 16,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        for s in CipherSuite::ALL {
            assert_eq!(CipherSuite::from_id(s.id()), Some(s));
        }
        assert_eq!(CipherSuite::from_id(0x002F), None);
    }
}
