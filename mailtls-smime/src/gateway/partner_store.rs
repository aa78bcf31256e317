//! Partner certificates: the certificates the gateway encrypts to, keyed by
//! address and by domain, with what each partner said it can decrypt.

use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use mailtls_core::{CertificateDer, DnsName};

use super::address::{Address, domain_serde};
use super::capabilities::Capabilities;
use super::certificate::{CertificateError, Fingerprint, SmimeCertificate, Unusable};
use super::storage::{SnapshotStorage, StorageError};
use crate::SmimeCapabilities;

/// Why a partner store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The storage backend failed.
    #[error("partner store: {0}")]
    Storage(#[from] StorageError),
    /// The saved snapshot cannot be read back.
    #[error("partner store {location}: saved state is corrupt: {reason}")]
    Corrupt {
        /// The storage.
        location: String,
        /// What was wrong, and where.
        reason: String,
    },
    /// An uploaded or harvested certificate could not be read.
    #[error(transparent)]
    Certificate(#[from] CertificateError),
    /// The upload held only CA certificates.
    #[error("{source_name}: no end-entity certificate (only CA certificates)")]
    NoEndEntity {
        /// The upload.
        source_name: String,
    },
    /// A certificate to be keyed by address names no usable address.
    #[error("certificate {fingerprint} names no mail address")]
    NoAddress {
        /// The certificate.
        fingerprint: Fingerprint,
    },
    /// The certificate cannot be used to encrypt mail.
    #[error("certificate {fingerprint} cannot be used for S/MIME encryption: {reason}")]
    Unusable {
        /// The certificate.
        fingerprint: Fingerprint,
        /// Why.
        reason: Unusable,
    },
    /// The certificate is already in the store.
    #[error("certificate {fingerprint} is already in the store")]
    Duplicate {
        /// The certificate.
        fingerprint: Fingerprint,
    },
    /// No certificate with this fingerprint is in the store.
    #[error("no certificate {fingerprint} in the store")]
    Unknown {
        /// The fingerprint asked for.
        fingerprint: Fingerprint,
    },
    /// No harvested certificate with this fingerprint awaits approval.
    #[error("no certificate {fingerprint} awaits approval")]
    NotPending {
        /// The fingerprint asked for.
        fingerprint: Fingerprint,
    },
    /// A fingerprint given by an operator is not (the start of) one.
    #[error(
        "{given:?} is not a certificate fingerprint (at least {MIN_PREFIX} of its 64 hex digits)"
    )]
    BadFingerprint {
        /// What was given.
        given: String,
    },
    /// A fingerprint prefix matches no certificate of the kind asked for.
    #[error("no {which} certificate has a fingerprint starting with {given}")]
    NoMatch {
        /// `stored` or `pending`.
        which: &'static str,
        /// The prefix.
        given: String,
    },
    /// A fingerprint prefix matches several certificates.
    #[error("{given} matches {count} {which} certificates; give more digits")]
    Ambiguous {
        /// `stored` or `pending`.
        which: &'static str,
        /// The prefix.
        given: String,
        /// How many it matches.
        count: usize,
    },
}

/// The fewest hex digits [`PartnerStore::find`] accepts: fewer would match
/// by accident.
pub const MIN_PREFIX: usize = 8;

/// Which list [`PartnerStore::find`] looks in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listed {
    /// The certificates in the store (enabled or not).
    Stored,
    /// The harvested certificates awaiting approval.
    Pending,
}

/// What a certificate is looked up by.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Binding {
    /// The addresses the certificate itself names.
    Addresses,
    /// Every address of one partner domain (a domain certificate, as used
    /// between two gateways), whatever the certificate names.
    Domain(#[serde(with = "domain_serde")] DnsName),
}

/// How a certificate came into the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CertSource {
    /// An operator uploaded it.
    Uploaded,
    /// Taken from a verified signature.
    Harvested,
}

/// One certificate in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartnerEntry {
    certificate: SmimeCertificate,
    binding: Binding,
    enabled: bool,
    capabilities: Option<Capabilities>,
    source: CertSource,
    added: SystemTime,
}

impl PartnerEntry {
    /// The certificate.
    pub fn certificate(&self) -> &SmimeCertificate {
        &self.certificate
    }
    /// What it is looked up by.
    pub fn binding(&self) -> &Binding {
        &self.binding
    }
    /// Whether the operator left it enabled.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }
    /// What the partner last advertised, if known.
    pub fn capabilities(&self) -> Option<&Capabilities> {
        self.capabilities.as_ref()
    }
    /// How it came in.
    pub fn source(&self) -> CertSource {
        self.source
    }
    /// When it came in.
    pub fn added(&self) -> SystemTime {
        self.added
    }
    /// Whether mail may be encrypted to it at `now`.
    pub fn check_usable(&self, now: SystemTime) -> Result<(), Unusable> {
        if !self.enabled {
            return Err(Unusable::Disabled);
        }
        self.certificate.check_encryption(now)
    }
}

/// A certificate from a verified signature, offered for the store.
///
/// Only the output of a successful signature verification belongs here: the
/// signature proves the sender holds the key, and the signed
/// SMIMECapabilities and signingTime come with that proof.
#[derive(Debug, Clone)]
pub struct Harvest {
    /// The signer's certificate.
    pub certificate: SmimeCertificate,
    /// The signed SMIMECapabilities, in the signer's order (every OID, known
    /// or not); empty when the signature carried none.
    pub capabilities: SmimeCapabilities,
    /// The signed signingTime attribute.
    pub signing_time: SystemTime,
}

/// Whether harvested certificates go straight into the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HarvestMode {
    /// New certificates are added at once.
    #[default]
    Automatic,
    /// New certificates wait for an operator (see [`PartnerStore::pending`]);
    /// capability updates for certificates already in the store do not.
    ManualApproval,
}

/// What [`PartnerStore::harvest`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HarvestOutcome {
    /// A new certificate was added.
    Added,
    /// The certificate was known; its capabilities were replaced because
    /// this signature is newer.
    CapabilitiesUpdated,
    /// The certificate was known and this signature is not newer than the one
    /// its capabilities came from: nothing changed.
    Unchanged,
    /// A new certificate now awaits approval.
    Queued,
    /// The certificate cannot be used to encrypt to, so it was not kept.
    NotUsable(Unusable),
    /// The certificate names no mail address, so it could never be found.
    NoAddress,
}

/// A harvested certificate awaiting an operator's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingHarvest {
    /// The certificate.
    pub certificate: SmimeCertificate,
    /// The capabilities and signing time it came with.
    pub capabilities: Capabilities,
    /// When it was queued.
    pub queued: SystemTime,
}

/// A recipient's certificate and how it was found.
#[derive(Debug, Clone, Copy)]
pub struct RecipientCertificate<'a> {
    /// The entry found.
    pub entry: &'a PartnerEntry,
    /// Whether by the address itself or by its domain.
    pub matched_by: MatchedBy,
}

/// How a recipient's certificate was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchedBy {
    /// A certificate naming the address.
    Address,
    /// A domain certificate for the address's domain.
    Domain,
}

/// No usable certificate for a recipient, and why each candidate was passed
/// over (empty when there was none at all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoCertificate {
    /// Candidates that exist but cannot be used now.
    pub passed_over: Vec<(Fingerprint, Unusable)>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct State {
    entries: BTreeMap<Fingerprint, PartnerEntry>,
    pending: BTreeMap<Fingerprint, PendingHarvest>,
}

/// The partner certificate store.
///
/// Every change is saved (one snapshot, atomically) before it becomes
/// visible; if saving fails the store keeps its previous contents and
/// returns the error. Reads are served from memory.
///
/// Loading and every change are async (they go through the
/// [`SnapshotStorage`]); reads and [`PartnerStore::lookup`] are served from
/// memory and do not block. No call does blocking file I/O itself: with
/// [`FileStorage`](super::FileStorage) the reads, fsync and rename run on
/// Tokio's blocking pool.
///
/// An operator's actions map to these calls: add a certificate under its
/// addresses or for a whole domain ([`PartnerStore::upload`] with a
/// [`Binding`]), list ([`PartnerStore::list`]), [`PartnerStore::disable`],
/// [`PartnerStore::enable`], [`PartnerStore::delete`], and for the approval
/// queue [`PartnerStore::pending`], [`PartnerStore::approve`] and
/// [`PartnerStore::reject`]; [`PartnerStore::find`] turns a fingerprint
/// prefix typed by a person into the fingerprint. A change whose future is dropped before it
/// completes may already be saved without being shown; it shows when the
/// store is opened again. Drive changes to completion.
///
/// ```
/// use mailtls_smime::gateway::{HarvestMode, MemoryStorage, PartnerStore};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = PartnerStore::open(Box::new(MemoryStorage::default()), HarvestMode::Automatic)
///     .await
///     .unwrap();
/// assert_eq!(store.list().count(), 0);
/// # });
/// ```
pub struct PartnerStore {
    storage: Box<dyn SnapshotStorage>,
    mode: HarvestMode,
    state: State,
    by_address: HashMap<Address, Vec<Fingerprint>>,
    by_domain: HashMap<DnsName, Vec<Fingerprint>>,
}

impl std::fmt::Debug for PartnerStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartnerStore")
            .field("storage", &self.storage.describe())
            .field("mode", &self.mode)
            .field("entries", &self.state.entries.len())
            .field("pending", &self.state.pending.len())
            .finish()
    }
}

impl PartnerStore {
    /// Opens the store, loading what `storage` holds.
    pub async fn open(
        storage: Box<dyn SnapshotStorage>,
        mode: HarvestMode,
    ) -> Result<Self, StoreError> {
        let state = match storage.load().await? {
            Some(bytes) => snapshot::decode(&bytes).map_err(|reason| StoreError::Corrupt {
                location: storage.describe(),
                reason,
            })?,
            None => State::default(),
        };
        let mut store = PartnerStore {
            storage,
            mode,
            state,
            by_address: HashMap::new(),
            by_domain: HashMap::new(),
        };
        store.reindex();
        Ok(store)
    }

    /// Reads the snapshot again from the storage, replacing what is held
    /// in memory (for a store that another process changed). On error the
    /// store keeps its contents.
    pub async fn reload(&mut self) -> Result<(), StoreError> {
        let state = match self.storage.load().await? {
            Some(bytes) => snapshot::decode(&bytes).map_err(|reason| StoreError::Corrupt {
                location: self.storage.describe(),
                reason,
            })?,
            None => State::default(),
        };
        self.state = state;
        self.reindex();
        Ok(())
    }

    /// The fingerprint an operator means by `given`: the whole fingerprint
    /// or a unique start of it (at least [`MIN_PREFIX`] hex digits; colons
    /// and case ignored), among the stored or the pending certificates.
    pub fn find(&self, given: &str, listed: Listed) -> Result<Fingerprint, StoreError> {
        let digits: String = given
            .trim()
            .chars()
            .filter(|c| *c != ':')
            .map(|c| c.to_ascii_lowercase())
            .collect();
        if digits.len() < MIN_PREFIX
            || digits.len() > 64
            || !digits.chars().all(|c| c.is_ascii_hexdigit())
        {
            return Err(StoreError::BadFingerprint {
                given: given.to_owned(),
            });
        }
        let (which, keys): (&'static str, Vec<&Fingerprint>) = match listed {
            Listed::Stored => ("stored", self.state.entries.keys().collect()),
            Listed::Pending => ("pending", self.state.pending.keys().collect()),
        };
        let matches: Vec<&Fingerprint> = keys
            .into_iter()
            .filter(|fp| fp.to_string().starts_with(&digits))
            .collect();
        match matches.as_slice() {
            [one] => Ok(**one),
            [] => Err(StoreError::NoMatch {
                which,
                given: digits,
            }),
            many => Err(StoreError::Ambiguous {
                which,
                given: digits,
                count: many.len(),
            }),
        }
    }

    /// The harvest mode.
    pub fn harvest_mode(&self) -> HarvestMode {
        self.mode
    }

    /// Changes the harvest mode (not persisted: it is configuration).
    pub fn set_harvest_mode(&mut self, mode: HarvestMode) {
        self.mode = mode;
    }

    fn reindex(&mut self) {
        self.by_address.clear();
        self.by_domain.clear();
        for (fp, e) in &self.state.entries {
            match &e.binding {
                Binding::Addresses => {
                    for a in e.certificate.addresses() {
                        self.by_address.entry(a.clone()).or_default().push(*fp);
                    }
                }
                Binding::Domain(d) => self.by_domain.entry(d.clone()).or_default().push(*fp),
            }
        }
    }

    /// Saves `next` and then makes it current.
    async fn commit(&mut self, next: State) -> Result<(), StoreError> {
        let bytes = snapshot::encode(&next).map_err(|reason| StoreError::Corrupt {
            location: self.storage.describe(),
            reason,
        })?;
        self.storage.save(bytes).await?;
        self.state = next;
        self.reindex();
        Ok(())
    }

    /// Every certificate, in fingerprint order.
    pub fn list(&self) -> impl Iterator<Item = &PartnerEntry> {
        self.state.entries.values()
    }

    /// One certificate by fingerprint.
    pub fn get(&self, fingerprint: &Fingerprint) -> Option<&PartnerEntry> {
        self.state.entries.get(fingerprint)
    }

    /// Every certificate (usable or not) stored for `address` itself.
    pub fn for_address(&self, address: &Address) -> Vec<&PartnerEntry> {
        self.lookup_list(self.by_address.get(address))
    }

    /// Every domain certificate stored for `domain`.
    pub fn for_domain(&self, domain: &DnsName) -> Vec<&PartnerEntry> {
        self.lookup_list(self.by_domain.get(domain))
    }

    fn lookup_list(&self, fps: Option<&Vec<Fingerprint>>) -> Vec<&PartnerEntry> {
        fps.into_iter()
            .flatten()
            .filter_map(|fp| self.state.entries.get(fp))
            .collect()
    }

    /// Whether `certificate` is an enabled domain certificate held for
    /// `domain`: a signature by it, verified except that the From address is
    /// not in the certificate, is a domain signature ("signed by
    /// `<*@domain>`").
    pub fn is_domain_certificate_for(
        &self,
        certificate: &SmimeCertificate,
        domain: &DnsName,
    ) -> bool {
        self.state
            .entries
            .get(&certificate.fingerprint())
            .is_some_and(|e| e.enabled && e.binding == Binding::Domain(domain.clone()))
    }

    /// The certificate to encrypt to for `recipient` at `now`: a usable
    /// certificate naming the address, else a usable domain certificate for
    /// its domain. Usable means enabled, valid at `now`, an end-entity
    /// certificate allowing emailProtection, with a key fit for encryption.
    /// Among several, the most recently issued (latest notBefore) wins.
    pub fn lookup(
        &self,
        recipient: &Address,
        now: SystemTime,
    ) -> Result<RecipientCertificate<'_>, NoCertificate> {
        let mut passed_over = Vec::new();
        for (entries, matched_by) in [
            (self.for_address(recipient), MatchedBy::Address),
            (self.for_domain(recipient.domain()), MatchedBy::Domain),
        ] {
            let best = entries
                .into_iter()
                .filter(|e| match e.check_usable(now) {
                    Ok(()) => true,
                    Err(why) => {
                        passed_over.push((e.certificate.fingerprint(), why));
                        false
                    }
                })
                .max_by_key(|e| {
                    let info = e.certificate.info();
                    (info.not_before, info.not_after)
                });
            if let Some(entry) = best {
                return Ok(RecipientCertificate { entry, matched_by });
            }
        }
        Err(NoCertificate { passed_over })
    }

    fn check_new(
        cert: &SmimeCertificate,
        binding: &Binding,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        let fingerprint = cert.fingerprint();
        if *binding == Binding::Addresses && cert.addresses().is_empty() {
            return Err(StoreError::NoAddress { fingerprint });
        }
        cert.check_encryption(now)
            .map_err(|reason| StoreError::Unusable {
                fingerprint,
                reason,
            })
    }

    /// Adds the certificates of a PEM or DER upload, keyed as `binding` says.
    /// CA certificates in the upload (a chain pasted along) are skipped; each
    /// end-entity certificate must be usable for encryption at `now` and, for
    /// [`Binding::Addresses`], name an address. All or nothing: on any error
    /// nothing is added. Returns the fingerprints added.
    pub async fn upload(
        &mut self,
        bytes: &[u8],
        source_name: &str,
        binding: Binding,
        now: SystemTime,
    ) -> Result<Vec<Fingerprint>, StoreError> {
        let certs: Vec<SmimeCertificate> = SmimeCertificate::from_pem_or_der(bytes, source_name)?
            .into_iter()
            .filter(|c| !c.info().is_ca)
            .collect();
        if certs.is_empty() {
            return Err(StoreError::NoEndEntity {
                source_name: source_name.to_owned(),
            });
        }
        let mut next = self.state.clone();
        let mut added = Vec::new();
        for cert in certs {
            let fingerprint = cert.fingerprint();
            if next.entries.contains_key(&fingerprint) {
                return Err(StoreError::Duplicate { fingerprint });
            }
            Self::check_new(&cert, &binding, now)?;
            next.pending.remove(&fingerprint);
            next.entries.insert(
                fingerprint,
                PartnerEntry {
                    certificate: cert,
                    binding: binding.clone(),
                    enabled: true,
                    capabilities: None,
                    source: CertSource::Uploaded,
                    added: now,
                },
            );
            added.push(fingerprint);
        }
        self.commit(next).await?;
        Ok(added)
    }

    async fn set_enabled(
        &mut self,
        fingerprint: &Fingerprint,
        enabled: bool,
    ) -> Result<(), StoreError> {
        let mut next = self.state.clone();
        let entry = next
            .entries
            .get_mut(fingerprint)
            .ok_or(StoreError::Unknown {
                fingerprint: *fingerprint,
            })?;
        if entry.enabled == enabled {
            return Ok(());
        }
        entry.enabled = enabled;
        self.commit(next).await
    }

    /// Stops using a certificate without forgetting it (harvesting the same
    /// certificate again does not re-enable it).
    pub async fn disable(&mut self, fingerprint: &Fingerprint) -> Result<(), StoreError> {
        self.set_enabled(fingerprint, false).await
    }

    /// Uses a disabled certificate again.
    pub async fn enable(&mut self, fingerprint: &Fingerprint) -> Result<(), StoreError> {
        self.set_enabled(fingerprint, true).await
    }

    /// Removes a certificate. A later verified signature may harvest it
    /// again; to keep it out, disable it instead.
    pub async fn delete(&mut self, fingerprint: &Fingerprint) -> Result<PartnerEntry, StoreError> {
        let mut next = self.state.clone();
        let removed = next
            .entries
            .remove(fingerprint)
            .ok_or(StoreError::Unknown {
                fingerprint: *fingerprint,
            })?;
        self.commit(next).await?;
        Ok(removed)
    }

    /// Takes a certificate and capabilities from a verified signature.
    ///
    /// A known certificate gets the new capabilities only when `signing_time`
    /// is newer than that of the capabilities it has (a replayed old message
    /// cannot roll them back); its enabled state is left as the operator set
    /// it. An unknown certificate is added (keyed by its addresses), or in
    /// [`HarvestMode::ManualApproval`] queued; a queued one is replaced by a
    /// newer signature's data.
    pub async fn harvest(
        &mut self,
        harvest: Harvest,
        now: SystemTime,
    ) -> Result<HarvestOutcome, StoreError> {
        let fingerprint = harvest.certificate.fingerprint();
        let capabilities = Capabilities {
            algorithms: harvest.capabilities,
            signing_time: harvest.signing_time,
        };
        let mut next = self.state.clone();
        if let Some(entry) = next.entries.get_mut(&fingerprint) {
            let newer = entry
                .capabilities
                .as_ref()
                .is_none_or(|old| capabilities.signing_time > old.signing_time);
            if !newer {
                return Ok(HarvestOutcome::Unchanged);
            }
            entry.capabilities = Some(capabilities);
            self.commit(next).await?;
            return Ok(HarvestOutcome::CapabilitiesUpdated);
        }
        if harvest.certificate.addresses().is_empty() {
            return Ok(HarvestOutcome::NoAddress);
        }
        if let Err(why) = harvest.certificate.check_encryption(now) {
            return Ok(HarvestOutcome::NotUsable(why));
        }
        match self.mode {
            HarvestMode::Automatic => {
                next.entries.insert(
                    fingerprint,
                    PartnerEntry {
                        certificate: harvest.certificate,
                        binding: Binding::Addresses,
                        enabled: true,
                        capabilities: Some(capabilities),
                        source: CertSource::Harvested,
                        added: now,
                    },
                );
                self.commit(next).await?;
                Ok(HarvestOutcome::Added)
            }
            HarvestMode::ManualApproval => {
                if let Some(p) = next.pending.get(&fingerprint)
                    && p.capabilities.signing_time >= capabilities.signing_time
                {
                    return Ok(HarvestOutcome::Unchanged);
                }
                next.pending.insert(
                    fingerprint,
                    PendingHarvest {
                        certificate: harvest.certificate,
                        capabilities,
                        queued: now,
                    },
                );
                self.commit(next).await?;
                Ok(HarvestOutcome::Queued)
            }
        }
    }

    /// Harvested certificates awaiting approval, in fingerprint order.
    pub fn pending(&self) -> impl Iterator<Item = &PendingHarvest> {
        self.state.pending.values()
    }

    /// Moves a pending certificate into the store (checked again at `now`).
    pub async fn approve(
        &mut self,
        fingerprint: &Fingerprint,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        let mut next = self.state.clone();
        let p = next
            .pending
            .remove(fingerprint)
            .ok_or(StoreError::NotPending {
                fingerprint: *fingerprint,
            })?;
        Self::check_new(&p.certificate, &Binding::Addresses, now)?;
        next.entries.entry(*fingerprint).or_insert(PartnerEntry {
            certificate: p.certificate,
            binding: Binding::Addresses,
            enabled: true,
            capabilities: Some(p.capabilities),
            source: CertSource::Harvested,
            added: now,
        });
        self.commit(next).await
    }

    /// Drops a pending certificate.
    pub async fn reject(
        &mut self,
        fingerprint: &Fingerprint,
    ) -> Result<PendingHarvest, StoreError> {
        let mut next = self.state.clone();
        let p = next
            .pending
            .remove(fingerprint)
            .ok_or(StoreError::NotPending {
                fingerprint: *fingerprint,
            })?;
        self.commit(next).await?;
        Ok(p)
    }
}

/// The saved form: JSON with certificates as base64 DER, read back through
/// the same inspection as an upload.
mod snapshot {
    use super::*;

    const VERSION: u32 = 1;

    #[derive(serde::Serialize, serde::Deserialize)]
    struct Saved {
        version: u32,
        entries: Vec<SavedEntry>,
        pending: Vec<SavedPending>,
    }

    #[derive(serde::Serialize, serde::Deserialize)]
    struct SavedEntry {
        certificate: String,
        binding: Binding,
        enabled: bool,
        capabilities: Option<Capabilities>,
        source: CertSource,
        added: SystemTime,
    }

    #[derive(serde::Serialize, serde::Deserialize)]
    struct SavedPending {
        certificate: String,
        capabilities: Capabilities,
        queued: SystemTime,
    }

    pub(super) fn encode(state: &State) -> Result<Vec<u8>, String> {
        let saved = Saved {
            version: VERSION,
            entries: state
                .entries
                .values()
                .map(|e| SavedEntry {
                    certificate: BASE64.encode(e.certificate.der()),
                    binding: e.binding.clone(),
                    enabled: e.enabled,
                    capabilities: e.capabilities.clone(),
                    source: e.source,
                    added: e.added,
                })
                .collect(),
            pending: state
                .pending
                .values()
                .map(|p| SavedPending {
                    certificate: BASE64.encode(p.certificate.der()),
                    capabilities: p.capabilities.clone(),
                    queued: p.queued,
                })
                .collect(),
        };
        serde_json::to_vec_pretty(&saved).map_err(|e| e.to_string())
    }

    fn certificate(b64: &str, what: &str) -> Result<SmimeCertificate, String> {
        let der = BASE64
            .decode(b64)
            .map_err(|e| format!("{what}: certificate is not base64: {e}"))?;
        SmimeCertificate::from_der(CertificateDer::from(der), what).map_err(|e| e.to_string())
    }

    pub(super) fn decode(bytes: &[u8]) -> Result<State, String> {
        let saved: Saved = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if saved.version != VERSION {
            return Err(format!(
                "snapshot version {} (this build reads {VERSION})",
                saved.version
            ));
        }
        let mut state = State::default();
        for (i, e) in saved.entries.into_iter().enumerate() {
            let cert = certificate(&e.certificate, &format!("entries[{i}]"))?;
            state.entries.insert(
                cert.fingerprint(),
                PartnerEntry {
                    certificate: cert,
                    binding: e.binding,
                    enabled: e.enabled,
                    capabilities: e.capabilities,
                    source: e.source,
                    added: e.added,
                },
            );
        }
        for (i, p) in saved.pending.into_iter().enumerate() {
            let cert = certificate(&p.certificate, &format!("pending[{i}]"))?;
            state.pending.insert(
                cert.fingerprint(),
                PendingHarvest {
                    certificate: cert,
                    capabilities: p.capabilities,
                    queued: p.queued,
                },
            );
        }
        Ok(state)
    }
}
