//! The in-memory credential index the DTLS handshake looks credentials up in: by endpoint,
//! PSK identity, and SHA-256 of the raw public key or certificate. It enforces that one
//! identity, public key or certificate belongs to at most one endpoint of its set, and writes
//! every change through to the store table of its set. It also holds what the handshake needs
//! to judge a certificate that is not pinned: the deny list and, when a trusted CA is
//! configured, which of a certificate's names is its endpoint.
use super::deny::DenyList;
use super::model::{
    display_identity, fingerprint, invalid, validate, validate_endpoint, CredentialError,
    CredentialKind, CredentialSet, CredentialSummary, DeviceCredential, Secret,
};
use super::record::{decode_record, encode_record, from_millis, millis};
use crate::config::CertificateEndpoint;
use crate::provisioning::secrets::{hex_encode, SecretsError, SecretsKey};
use crate::store::Store;
use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

/// Every credential of one set, indexed for the handshake: by endpoint, PSK identity, and
/// SHA-256 of the public key or certificate. Lookups are O(1); the store is written on every
/// change.
#[derive(Debug, Default)]
pub struct Credentials {
    /// Which set this is, and so which table it writes.
    set: CredentialSet,
    by_endpoint: HashMap<String, DeviceCredential>,
    by_psk_identity: HashMap<Vec<u8>, String>,
    by_public_key: HashMap<[u8; 32], String>,
    by_certificate: HashMap<[u8; 32], String>,
    /// Endpoints whose stored credential could not be loaded: they must still come over DTLS
    /// (skipping the record must not let anyone register over NoSec in their name), but no
    /// credential lets them in until one is added again.
    locked: HashSet<String>,
    /// Stored records skipped by [`load`](Self::load).
    unreadable: usize,
    /// Endpoints refused whatever certificate they present (shared by both sets).
    denied: DenyList,
    /// How a certificate from a trusted CA names its endpoint; `None`: no trusted CA is
    /// configured, only pinned certificates are accepted.
    pki: Option<CertificateEndpoint>,
}

impl Credentials {
    /// An empty index (tests; a server with no store).
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads every credential from the store. A record that cannot be read or holds a value
    /// out of range is skipped, counted ([`unreadable`](Self::unreadable)) and logged, and its
    /// endpoint is locked ([`has_credential`](Self::has_credential) stays true, so it cannot
    /// register over NoSec, while no credential lets it in) until a credential is added or it
    /// is revoked; so are both endpoints of two records that claim one PSK identity, public
    /// key or certificate. Fails only if the store cannot be read, or if the secrets key opens
    /// none of the stored PSKs: the key file was replaced or lost, and going on would lock out
    /// every PSK device.
    ///
    /// This is the device set; it reads the deny list too (its skipped records are counted
    /// in [`unreadable`](Self::unreadable) as well).
    pub fn load(store: &Store, key: &SecretsKey) -> Result<Self, CredentialError> {
        let mut creds = Self::load_set(store, key, CredentialSet::Devices)?;
        let (denied, skipped) = DenyList::load(store)?;
        creds.denied = denied;
        creds.unreadable += skipped;
        Ok(creds)
    }

    /// Reads the bootstrap server's credentials as [`load`](Self::load) reads the devices',
    /// sharing the deny list of `devices` (a denied endpoint is refused by both servers) and
    /// taking its certificate naming ([`set_pki`](Self::set_pki)) as it is now.
    pub fn load_bootstrap(
        store: &Store,
        key: &SecretsKey,
        devices: &Credentials,
    ) -> Result<Self, CredentialError> {
        let mut creds = Self::load_set(store, key, CredentialSet::Bootstrap)?;
        creds.denied = devices.denied.clone();
        creds.pki = devices.pki;
        Ok(creds)
    }

    /// An empty bootstrap-server index sharing the deny list and certificate naming of
    /// `devices` (tests; a server with no store).
    pub fn empty_bootstrap(devices: &Credentials) -> Self {
        Self {
            set: CredentialSet::Bootstrap,
            denied: devices.denied.clone(),
            pki: devices.pki,
            ..Self::default()
        }
    }

    fn load_set(
        store: &Store,
        key: &SecretsKey,
        set: CredentialSet,
    ) -> Result<Self, CredentialError> {
        let mut creds = Self { set, ..Self::new() };
        let mut good = Vec::new();
        let mut opened = 0usize;
        let mut wrong_key = None;
        for (k, v) in store.scan(set.table(), b"")? {
            match decode_record(set, key, &k, &v) {
                Ok(c) => {
                    opened += usize::from(c.secret.kind() == CredentialKind::Psk);
                    good.push(c);
                }
                Err(e) => {
                    creds.skip(&k, &e);
                    if matches!(
                        e,
                        CredentialError::Secrets {
                            source: SecretsError::WrongKey,
                            ..
                        }
                    ) {
                        wrong_key.get_or_insert(e);
                    }
                }
            }
        }
        if let (0, Some(e)) = (opened, wrong_key) {
            return Err(e);
        }
        let mut claims: HashMap<PublicKey<'_>, usize> = HashMap::new();
        for c in &good {
            *claims.entry(public_key_of(&c.secret)).or_default() += 1;
        }
        let shared: Vec<bool> = good
            .iter()
            .map(|c| {
                claims
                    .get(&public_key_of(&c.secret))
                    .is_some_and(|n| *n > 1)
            })
            .collect();
        drop(claims);
        for (c, shared) in good.into_iter().zip(shared) {
            if shared {
                let (what, _) = creds.binding(&c.secret);
                let e = invalid(format!("{what} is claimed by another endpoint too"));
                creds.skip(c.endpoint.as_bytes(), &e);
            } else {
                creds.index(c);
            }
        }
        Ok(creds)
    }

    /// Skips a stored record: counted, logged with its key, and its endpoint locked.
    fn skip(&mut self, store_key: &[u8], why: &CredentialError) {
        self.unreadable += 1;
        let key = crate::store::display_key(store_key);
        tracing::warn!(table = self.set.table().name(), %key, error = %why, "stored credential skipped: its endpoint is locked out until a credential is added again or it is revoked");
        if let Ok(endpoint) = std::str::from_utf8(store_key) {
            self.locked.insert(endpoint.to_string());
        }
    }

    /// Which set this index holds.
    pub fn set(&self) -> CredentialSet {
        self.set
    }

    /// Takes certificates that chain to a trusted CA and are not pinned as the endpoint they
    /// name, read as `naming` says; `None` (the default): pinned certificates only. The
    /// handshake checks the chain; this only says whether it may and how a name is read.
    pub fn set_pki(&mut self, naming: Option<CertificateEndpoint>) {
        self.pki = naming;
    }

    /// How a certificate from a trusted CA names its endpoint, if that is allowed.
    pub fn pki(&self) -> Option<CertificateEndpoint> {
        self.pki
    }

    /// Whether `endpoint` is on the deny list.
    pub fn is_denied(&self, endpoint: &str) -> bool {
        self.denied.contains(endpoint)
    }

    /// Puts `endpoint` on the deny list (see [`is_denied`](Self::is_denied)); false if it
    /// was on it already. Refused for a name that is not a valid endpoint name.
    pub fn deny(&mut self, store: &Store, endpoint: &str) -> Result<bool, CredentialError> {
        validate_endpoint(endpoint)?;
        self.denied.insert(store, endpoint)
    }

    /// Every denied endpoint, sorted, with when it was denied (if the store kept it).
    pub fn denied(&self) -> Vec<(String, Option<SystemTime>)> {
        self.denied.list()
    }

    /// A credential added to the device set lifts its endpoint's deny.
    fn lift_deny(&mut self, store: &Store, endpoint: &str) -> Result<(), CredentialError> {
        if self.set == CredentialSet::Devices {
            self.denied.remove(store, endpoint)?;
        }
        Ok(())
    }

    /// Stored records [`load`](Self::load) skipped.
    pub fn unreadable(&self) -> usize {
        self.unreadable
    }

    /// Endpoints locked out because their stored credential was skipped, sorted.
    pub fn locked(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self.locked.iter().map(String::as_str).collect();
        out.sort_unstable();
        out
    }

    /// Credentials held.
    pub fn len(&self) -> usize {
        self.by_endpoint.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_endpoint.is_empty()
    }

    /// The endpoint and key bound to a PSK identity.
    pub fn psk(&self, identity: &[u8]) -> Option<(&str, &[u8])> {
        let endpoint = self.by_psk_identity.get(identity)?;
        match &self.by_endpoint.get(endpoint)?.secret {
            Secret::Psk { key, .. } => Some((endpoint.as_str(), key.as_slice())),
            _ => None,
        }
    }

    /// The endpoint bound to a raw public key (SubjectPublicKeyInfo DER).
    pub fn by_public_key(&self, spki_der: &[u8]) -> Option<&str> {
        self.by_public_key
            .get(&fingerprint(spki_der))
            .map(String::as_str)
    }

    /// The endpoint bound to a pinned certificate (DER).
    pub fn by_certificate(&self, cert_der: &[u8]) -> Option<&str> {
        self.by_certificate
            .get(&fingerprint(cert_der))
            .map(String::as_str)
    }

    /// An endpoint's credential.
    pub fn get(&self, endpoint: &str) -> Option<&DeviceCredential> {
        self.by_endpoint.get(endpoint)
    }

    /// Whether the endpoint has a credential, or had one the store could not give back (and
    /// so must not register over NoSec).
    pub fn has_credential(&self, endpoint: &str) -> bool {
        self.by_endpoint.contains_key(endpoint) || self.locked.contains(endpoint)
    }

    /// Adds or replaces (rotation) an endpoint's credential, in the store and the index.
    /// Refused if its PSK identity, public key or certificate belongs to another endpoint.
    /// The store write is durable after the next commit (await [`Store::flush`] to know).
    pub fn add(
        &mut self,
        store: &Store,
        key: &SecretsKey,
        mut cred: DeviceCredential,
    ) -> Result<(), CredentialError> {
        validate(&cred.endpoint, &cred.secret)?;
        if let Some((what, endpoint)) = self.conflict(&cred) {
            return Err(CredentialError::Conflict { what, endpoint });
        }
        // The store keeps milliseconds; keep the same here so a reload compares equal.
        cred.added_at = from_millis(millis(cred.added_at));
        store.put(
            self.set.table(),
            cred.endpoint.as_bytes().to_vec(),
            encode_record(self.set, key, &cred),
        )?;
        self.lift_deny(store, &cred.endpoint)?;
        self.unindex(&cred.endpoint);
        self.locked.remove(&cred.endpoint);
        self.index(cred);
        Ok(())
    }

    /// Checks credentials meant to be added together ([`add_batch`](Self::add_batch)): each
    /// valid, no endpoint and no PSK identity, public key or certificate twice in the batch,
    /// and none bound to an endpoint outside the batch (one inside it gets another credential
    /// from the same batch, so it lets go of its old one). Returns the refused entries by
    /// their index in `batch`, with why; empty if the whole batch can be added.
    pub fn check_batch(&self, batch: &[DeviceCredential]) -> Vec<(usize, CredentialError)> {
        use std::collections::hash_map::Entry;
        let endpoints: std::collections::HashSet<&str> =
            batch.iter().map(|c| c.endpoint.as_str()).collect();
        let mut seen_endpoints = HashMap::new();
        let mut seen_ids: HashMap<PublicKey<'_>, &DeviceCredential> = HashMap::new();
        let mut refused = Vec::new();
        for (i, c) in batch.iter().enumerate() {
            if let Err(e) = validate(&c.endpoint, &c.secret) {
                refused.push((i, e));
                continue;
            }
            if let Entry::Vacant(v) = seen_endpoints.entry(c.endpoint.as_str()) {
                v.insert(i);
            } else {
                refused.push((
                    i,
                    invalid(format!(
                        "endpoint {:?} is in the batch more than once",
                        c.endpoint
                    )),
                ));
                continue;
            }
            let (what, owner) = self.binding(&c.secret);
            match seen_ids.entry(public_key_of(&c.secret)) {
                Entry::Occupied(o) => {
                    let first = o.get();
                    refused.push((
                        i,
                        invalid(format!(
                            "{what} is also given to endpoint {:?} in the batch",
                            first.endpoint
                        )),
                    ));
                    continue;
                }
                Entry::Vacant(v) => {
                    v.insert(c);
                }
            }
            if let Some(owner) = owner {
                if *owner != c.endpoint && !endpoints.contains(owner.as_str()) {
                    refused.push((
                        i,
                        CredentialError::Conflict {
                            what,
                            endpoint: owner.clone(),
                        },
                    ));
                }
            }
        }
        refused
    }

    /// Adds or replaces (rotation) every credential of `batch`, in the store and the index,
    /// as one store transaction together with `also` (the audit entries that record them): a
    /// crash leaves all of it or none. Refused whole, with the first reason, if
    /// [`check_batch`](Self::check_batch) refuses any entry. Returns the credentials it
    /// replaced. Durable after the next commit.
    pub fn add_batch(
        &mut self,
        store: &Store,
        key: &SecretsKey,
        mut batch: Vec<DeviceCredential>,
        also: Vec<crate::store::Write>,
    ) -> Result<Vec<DeviceCredential>, CredentialError> {
        if let Some((_, e)) = self.check_batch(&batch).into_iter().next() {
            return Err(e);
        }
        let mut writes = Vec::with_capacity(batch.len() + also.len());
        for cred in &mut batch {
            // The store keeps milliseconds; keep the same here so a reload compares equal.
            cred.added_at = from_millis(millis(cred.added_at));
            writes.push((
                self.set.table(),
                cred.endpoint.as_bytes().to_vec(),
                encode_record(self.set, key, cred),
            ));
        }
        writes.extend(also);
        store.put_batch(writes)?;
        for cred in &batch {
            self.lift_deny(store, &cred.endpoint)?;
        }
        // Every old binding goes before any new one is made: within a batch an identity may
        // move from one endpoint to another.
        let replaced: Vec<DeviceCredential> = batch
            .iter()
            .filter_map(|c| self.unindex(&c.endpoint))
            .collect();
        for cred in batch {
            self.locked.remove(&cred.endpoint);
            self.index(cred);
        }
        Ok(replaced)
    }

    /// Removes an endpoint's credential; `None` if it had none. A locked endpoint's unreadable
    /// record is removed too (and the endpoint unlocked), with `None` since there was no
    /// credential to give back.
    pub fn revoke(
        &mut self,
        store: &Store,
        endpoint: &str,
    ) -> Result<Option<DeviceCredential>, CredentialError> {
        if !self.has_credential(endpoint) {
            return Ok(None);
        }
        store.delete(self.set.table(), endpoint.as_bytes().to_vec())?;
        self.locked.remove(endpoint);
        Ok(self.unindex(endpoint))
    }

    /// Every credential, without keys, sorted by endpoint.
    pub fn list(&self) -> Vec<CredentialSummary> {
        let mut out: Vec<_> = self
            .by_endpoint
            .values()
            .map(DeviceCredential::summary)
            .collect();
        out.sort_by(|a, b| a.endpoint.cmp(&b.endpoint));
        out
    }

    /// What of `cred` is already bound to another endpoint, and that endpoint.
    fn conflict(&self, cred: &DeviceCredential) -> Option<(String, String)> {
        let (what, owner) = self.binding(&cred.secret);
        owner
            .filter(|o| **o != cred.endpoint)
            .map(|o| (what, o.clone()))
    }

    /// What identifies `secret` (for messages), and the endpoint it is bound to, if any.
    fn binding(&self, secret: &Secret) -> (String, Option<&String>) {
        match secret {
            Secret::Psk { identity, .. } => (
                format!("PSK identity {:?}", display_identity(identity)),
                self.by_psk_identity.get(identity),
            ),
            Secret::Rpk { spki_der } => {
                let f = fingerprint(spki_der);
                (
                    format!("public key sha256:{}", hex_encode(&f)),
                    self.by_public_key.get(&f),
                )
            }
            Secret::X509 { cert_der } => {
                let f = fingerprint(cert_der);
                (
                    format!("certificate sha256:{}", hex_encode(&f)),
                    self.by_certificate.get(&f),
                )
            }
        }
    }

    fn index(&mut self, cred: DeviceCredential) {
        let endpoint = cred.endpoint.clone();
        match &cred.secret {
            Secret::Psk { identity, .. } => {
                self.by_psk_identity.insert(identity.clone(), endpoint);
            }
            Secret::Rpk { spki_der } => {
                self.by_public_key.insert(fingerprint(spki_der), endpoint);
            }
            Secret::X509 { cert_der } => {
                self.by_certificate.insert(fingerprint(cert_der), endpoint);
            }
        }
        self.by_endpoint.insert(cred.endpoint.clone(), cred);
    }

    fn unindex(&mut self, endpoint: &str) -> Option<DeviceCredential> {
        let old = self.by_endpoint.remove(endpoint)?;
        match &old.secret {
            Secret::Psk { identity, .. } => {
                self.by_psk_identity.remove(identity);
            }
            Secret::Rpk { spki_der } => {
                self.by_public_key.remove(&fingerprint(spki_der));
            }
            Secret::X509 { cert_der } => {
                self.by_certificate.remove(&fingerprint(cert_der));
            }
        }
        Some(old)
    }
}

/// What a handshake finds a credential by, as one key: two credentials with the same one
/// cannot both be bound.
#[derive(PartialEq, Eq, Hash)]
enum PublicKey<'a> {
    Psk(&'a [u8]),
    Rpk([u8; 32]),
    X509([u8; 32]),
}

fn public_key_of(secret: &Secret) -> PublicKey<'_> {
    match secret {
        Secret::Psk { identity, .. } => PublicKey::Psk(identity),
        Secret::Rpk { spki_der } => PublicKey::Rpk(fingerprint(spki_der)),
        Secret::X509 { cert_der } => PublicKey::X509(fingerprint(cert_der)),
    }
}
