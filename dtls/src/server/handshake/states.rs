//! The server's handshake states after its first flight, one type each (RFC 5246 §7.4.6–
//! §7.4.9, RFC 4279 §2 PSK, RFC 8422 §5.7 ECDHE, RFC 7627 §4 Extended Master Secret): the
//! client's Certificate, ClientKeyExchange, CertificateVerify, ChangeCipherSpec and
//! Finished. Each consumes its state and returns the next.
use super::{malformed, unencodable, Common, Ctx, Established, Next, Resumable};
use crate::config::PeerKey;
use crate::crypto::{self, KeyBlock};
use crate::error::HandshakeError;
use crate::flight::{Flight, Item};
use crate::handshake::extensions::{CERT_TYPE_RAW_PUBLIC_KEY, SIG_ECDSA_SECP256R1_SHA256};
use crate::handshake::messages::{
    CertificateBody, CertificateVerify, EcdheClientKeyExchange, Finished, PskClientKeyExchange,
};
use crate::handshake::{full_message_raw, HandshakeType};
use crate::pki::{self, Ephemeral};
use crate::session::Session;
use crate::suite::{CipherSuite, KeyExchange};
use std::sync::Arc;

/// What the ClientHello settled.
pub(super) struct Negotiated {
    pub suite: CipherSuite,
    pub ems: bool,
}

/// The client's authenticated key material, from its Certificate message.
enum ClientKey {
    Spki(Vec<u8>),
    Chain(Vec<Vec<u8>>),
}

/// ECDHE-ECDSA: waiting for the client's Certificate.
pub(super) struct ExpectCertificate {
    pub neg: Negotiated,
    pub client_cert_type: u8,
    pub ephemeral: Ephemeral,
}

/// Waiting for the ClientKeyExchange: for PSK the first message, for ECDHE after an
/// accepted Certificate (its key and principal).
pub(super) struct ExpectClientKeyExchange {
    neg: Negotiated,
    ecdhe: Option<(Ephemeral, ClientKey, Arc<str>)>,
}

/// ECDHE-ECDSA: waiting for the proof that the client holds its certificate's key.
pub(super) struct ExpectCertificateVerify {
    neg: Negotiated,
    master: [u8; 48],
    keys: KeyBlock,
    client_key: ClientKey,
    principal: Arc<str>,
}

/// Waiting for the client's ChangeCipherSpec.
pub(super) struct ExpectChangeCipherSpec {
    pub neg: Negotiated,
    pub master: [u8; 48],
    pub keys: KeyBlock,
    pub principal: Arc<str>,
    /// An abbreviated handshake: our Finished went first.
    pub resumed: bool,
}

/// Reading epoch 1; waiting for the client's Finished.
pub(super) struct ExpectFinished {
    neg: Negotiated,
    master: [u8; 48],
    keys: KeyBlock,
    principal: Arc<str>,
    resumed: bool,
}

/// Where the handshake is.
pub(super) enum Expect {
    Certificate(ExpectCertificate),
    ClientKeyExchange(ExpectClientKeyExchange),
    CertificateVerify(ExpectCertificateVerify),
    ChangeCipherSpec(ExpectChangeCipherSpec),
    Finished(ExpectFinished),
}

impl Expect {
    pub fn name(&self) -> &'static str {
        match self {
            Expect::Certificate(_) => "Certificate",
            Expect::ClientKeyExchange(_) => "ClientKeyExchange",
            Expect::CertificateVerify(_) => "CertificateVerify",
            Expect::ChangeCipherSpec(_) => "ChangeCipherSpec",
            Expect::Finished(_) => "Finished",
        }
    }

    /// Waiting for the client's Finished in a full handshake, where one that does not
    /// decrypt means a wrong key.
    pub fn is_full_handshake_finished(&self) -> bool {
        matches!(self, Expect::Finished(f) if !f.resumed)
    }

    /// The client's ChangeCipherSpec: its records are protected from here on. Anywhere else
    /// it is a retransmission or early, and ignored.
    pub fn change_cipher_spec(self, c: &mut Common) -> Expect {
        match self {
            Expect::ChangeCipherSpec(s) => {
                c.reader.activate(s.keys.client_write, c.own_cid);
                Expect::Finished(ExpectFinished {
                    neg: s.neg,
                    master: s.master,
                    keys: s.keys,
                    principal: s.principal,
                    resumed: s.resumed,
                })
            }
            other => other,
        }
    }

    pub fn handle<R: rand::Rng>(
        self,
        c: &mut Common,
        ctx: &mut Ctx<'_, R>,
        msg_type: u8,
        seq: u16,
        body: Vec<u8>,
        out: &mut Vec<Vec<u8>>,
    ) -> Result<Next, HandshakeError> {
        // The reassembler caps bodies at MAX_MESSAGE (16 KiB), far below 2^24.
        let full = full_message_raw(msg_type, seq, &body).map_err(unencodable)?;
        match (self, HandshakeType::from_u8(msg_type)) {
            (Expect::Certificate(s), Some(HandshakeType::Certificate)) => s
                .certificate(c, ctx, &body, &full)
                .map(|s| Next::Wait(Expect::ClientKeyExchange(s))),
            (Expect::ClientKeyExchange(s), Some(HandshakeType::ClientKeyExchange)) => {
                s.client_key_exchange(c, ctx, &body, &full).map(Next::Wait)
            }
            (Expect::CertificateVerify(s), Some(HandshakeType::CertificateVerify)) => s
                .certificate_verify(c, &body, &full)
                .map(|s| Next::Wait(Expect::ChangeCipherSpec(s))),
            (Expect::Finished(s), Some(HandshakeType::Finished)) => {
                s.finished(c, ctx, &body, &full, out).map(Next::Done)
            }
            _ => Err(HandshakeError::OutOfOrder),
        }
    }
}

impl ExpectCertificate {
    fn certificate<R: rand::Rng>(
        self,
        c: &mut Common,
        ctx: &Ctx<'_, R>,
        body: &[u8],
        full: &[u8],
    ) -> Result<ExpectClientKeyExchange, HandshakeError> {
        let parsed = if self.client_cert_type == CERT_TYPE_RAW_PUBLIC_KEY {
            CertificateBody::parse_raw_public_key(body)
        } else {
            CertificateBody::parse_x509(body)
        }
        .map_err(|e| malformed("Certificate", e))?;
        let unix_time = ctx.unix_time();
        let key = match parsed {
            CertificateBody::RawPublicKey(spki) => ClientKey::Spki(spki),
            CertificateBody::X509(chain) if !chain.is_empty() => ClientKey::Chain(chain),
            CertificateBody::X509(_) => return Err(HandshakeError::NoClientCertificate),
        };
        let peer_key = match &key {
            ClientKey::Spki(spki) => PeerKey::RawPublicKey(spki),
            ClientKey::Chain(chain) => PeerKey::Certificates(chain),
        };
        let principal = match ctx.creds.verify_client(peer_key, unix_time) {
            Ok(p) => p,
            Err(alert) => {
                c.identity = ctx.creds.refused_identity(peer_key, unix_time);
                return Err(HandshakeError::ClientCredentialRefused(alert));
            }
        };
        c.identity = Some(principal.to_string());
        c.transcript.extend_from_slice(full);
        Ok(ExpectClientKeyExchange {
            neg: self.neg,
            ecdhe: Some((self.ephemeral, key, principal)),
        })
    }
}

impl ExpectClientKeyExchange {
    /// PSK: the client's first message after our hello flight.
    pub(super) fn psk(neg: Negotiated) -> Self {
        Self { neg, ecdhe: None }
    }

    fn client_key_exchange<R: rand::Rng>(
        self,
        c: &mut Common,
        ctx: &Ctx<'_, R>,
        body: &[u8],
        full: &[u8],
    ) -> Result<Expect, HandshakeError> {
        let (pre_master, principal, client_key) = match (self.neg.suite.key_exchange(), self.ecdhe)
        {
            (KeyExchange::Psk, _) => {
                let cke = PskClientKeyExchange::parse(body)
                    .map_err(|e| malformed("ClientKeyExchange", e))?;
                c.identity = Some(String::from_utf8_lossy(&cke.identity).into_owned());
                let entry = ctx
                    .creds
                    .psk(&cke.identity)
                    .ok_or(HandshakeError::UnknownPskIdentity)?;
                if entry.key.len() > crypto::MAX_PSK_LEN {
                    // RFC 4279 §5.3; the credential store should never hold one.
                    return Err(HandshakeError::PskTooLong);
                }
                (crypto::psk_pre_master(&entry.key), entry.principal, None)
            }
            (KeyExchange::EcdheEcdsa, Some((eph, key, principal))) => {
                let cke = EcdheClientKeyExchange::parse(body)
                    .map_err(|e| malformed("ClientKeyExchange", e))?;
                let pm = eph
                    .agree(&cke.public_key)
                    .map_err(HandshakeError::BadEcdhePoint)?;
                (pm.to_vec(), principal, Some(key))
            }
            // ECDHE states always come with the client's certificate.
            (KeyExchange::EcdheEcdsa, None) => return Err(HandshakeError::OutOfOrder),
        };
        c.transcript.extend_from_slice(full);
        let master = if self.neg.ems {
            crypto::extended_master_secret(&pre_master, &crypto::sha256(&[&c.transcript]))
        } else {
            crypto::master_secret(&pre_master, &c.client_random, &c.server_random)
        };
        let keys = c.derive_keys(self.neg.suite, &master);
        Ok(match client_key {
            Some(client_key) => Expect::CertificateVerify(ExpectCertificateVerify {
                neg: self.neg,
                master,
                keys,
                client_key,
                principal,
            }),
            None => Expect::ChangeCipherSpec(ExpectChangeCipherSpec {
                neg: self.neg,
                master,
                keys,
                principal,
                resumed: false,
            }),
        })
    }
}

impl ExpectCertificateVerify {
    fn certificate_verify(
        self,
        c: &mut Common,
        body: &[u8],
        full: &[u8],
    ) -> Result<ExpectChangeCipherSpec, HandshakeError> {
        let cv = CertificateVerify::parse(body).map_err(|e| malformed("CertificateVerify", e))?;
        if cv.signature_scheme != SIG_ECDSA_SECP256R1_SHA256 {
            return Err(HandshakeError::UnsupportedSignatureScheme);
        }
        // A certificate was judged by the credential check already (pinned bytes or a trusted
        // chain); here only its key matters, whatever the certificate's X.509 version.
        let spki = match &self.client_key {
            ClientKey::Spki(spki) => spki.as_slice(),
            ClientKey::Chain(chain) => chain
                .first()
                .and_then(|leaf| pki::certificate_spki(leaf))
                .ok_or(HandshakeError::UnreadableClientCertificate)?,
        };
        pki::verify_with_spki(spki, &c.transcript, &cv.signature)
            .map_err(HandshakeError::BadCertificateVerify)?;
        c.transcript.extend_from_slice(full);
        Ok(ExpectChangeCipherSpec {
            neg: self.neg,
            master: self.master,
            keys: self.keys,
            principal: self.principal,
            resumed: false,
        })
    }
}

impl ExpectFinished {
    fn finished<R: rand::Rng>(
        self,
        c: &mut Common,
        ctx: &mut Ctx<'_, R>,
        body: &[u8],
        full: &[u8],
        out: &mut Vec<Vec<u8>>,
    ) -> Result<Box<Established>, HandshakeError> {
        let fin = Finished::parse(body).map_err(|e| malformed("Finished", e))?;
        if !crypto::finished_matches(
            &self.master,
            b"client finished",
            &c.transcript,
            &fin.verify_data,
        ) {
            return Err(HandshakeError::FinishedMismatch);
        }
        c.transcript.extend_from_slice(full);
        let final_verify = if self.resumed {
            // Our Finished went first; the flight that carried it is answered.
            match c.flight.items.last() {
                Some(Item::Handshake { body, .. }) => {
                    let mut v = [0u8; 12];
                    v.copy_from_slice(body.get(..12).unwrap_or(&[0; 12]));
                    v
                }
                _ => [0; 12],
            }
        } else {
            let verify = crypto::finished(&self.master, b"server finished", &c.transcript);
            let fin = c.message(
                1,
                HandshakeType::Finished,
                Finished {
                    verify_data: verify,
                }
                .encode(),
            )?;
            c.flight = Flight::new(
                vec![Item::ChangeCipherSpec, fin],
                ctx.now,
                &ctx.config.timers,
                false,
            );
            c.writer
                .encode(&c.flight.items, ctx.config.max_datagram, ctx.rng, out)
                .map_err(unencodable)?;
            verify
        };
        let suite = self.neg.suite;
        let session = Session {
            suite,
            read: self.keys.client_write,
            write: self.keys.server_write,
            epoch: 1,
            write_seq: c.writer.seq.get(1).copied().unwrap_or(0),
            replay: c.reader.replay(),
            send_cid: c.peer_cid,
            recv_cid: c.own_cid,
            principal: self.principal.clone(),
        };
        Ok(Box::new(Established {
            session,
            session_id: c.session_id,
            resumable: Resumable {
                master: self.master,
                suite,
                extended_master_secret: self.neg.ems,
                principal: self.principal,
            },
            resumed: self.resumed,
            final_verify,
            final_seq: c.out_seq.wrapping_sub(1),
        }))
    }
}
