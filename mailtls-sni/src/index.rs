//! The matching core: which certificate serves which name.
//!
//! Independent of rustls (whose resolver trait is renamed in 0.24): entries
//! carry an opaque payload `T` and the adapter in [`crate::resolver`] decides
//! what a payload is. An index is immutable once built; a reload builds a new
//! one and swaps it in whole.
//!
//! Layout is chosen for the handshake path: payloads and the two facts
//! selection needs (key algorithm, validity at build time) sit in compact
//! arrays apart from the metadata only status pages read; a name with one
//! certificate (the usual case) stores that entry's number inline, so a hit is
//! one hash probe and two array reads.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use foldhash::fast::RandomState;
use mailtls_core::name::canonical_lookup_key;
use mailtls_core::{CertInfo, DnsName, KeyAlgorithm, KeyFamily, NamePattern};

/// Why an index could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IndexError {
    /// An alias is not covered by any name of the certificate it was given for.
    #[error("alias {alias} is not covered by the names of {source_name} ({names})")]
    AliasNotCovered {
        /// The alias.
        alias: String,
        /// Where the certificate came from.
        source_name: String,
        /// The certificate's names, comma-separated.
        names: String,
    },
    /// The configured default name matches no certificate.
    #[error("default name {0} matches no loaded certificate")]
    DefaultNotFound(String),
    /// More entries than the index can number (u32::MAX).
    #[error("too many certificates for one index")]
    TooMany,
}

/// A set of key algorithms a client can accept, computed from its signature
/// schemes when a name has more than one certificate to choose from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KeyAcceptance(u8);

impl KeyAcceptance {
    const RSA: u8 = 1;
    const P256: u8 = 2;
    const P384: u8 = 4;
    const P521: u8 = 8;
    const ED25519: u8 = 16;

    /// Accepts every key type (used when the client's preferences are unknown).
    pub const ALL: KeyAcceptance = KeyAcceptance(0x1f);
    /// Accepts nothing.
    pub const NONE: KeyAcceptance = KeyAcceptance(0);

    /// Adds RSA.
    pub fn with_rsa(self) -> Self {
        KeyAcceptance(self.0 | Self::RSA)
    }
    /// Adds ECDSA P-256.
    pub fn with_p256(self) -> Self {
        KeyAcceptance(self.0 | Self::P256)
    }
    /// Adds ECDSA P-384.
    pub fn with_p384(self) -> Self {
        KeyAcceptance(self.0 | Self::P384)
    }
    /// Adds ECDSA P-521.
    pub fn with_p521(self) -> Self {
        KeyAcceptance(self.0 | Self::P521)
    }
    /// Adds Ed25519.
    pub fn with_ed25519(self) -> Self {
        KeyAcceptance(self.0 | Self::ED25519)
    }

    /// Whether a key of this algorithm is acceptable.
    pub fn accepts(self, key: KeyAlgorithm) -> bool {
        let bit = match key {
            KeyAlgorithm::Rsa { .. } => Self::RSA,
            KeyAlgorithm::EcdsaP256 => Self::P256,
            KeyAlgorithm::EcdsaP384 => Self::P384,
            KeyAlgorithm::EcdsaP521 => Self::P521,
            KeyAlgorithm::Ed25519 => Self::ED25519,
            _ => return false,
        };
        self.0 & bit != 0
    }
}

/// What is known about one loaded certificate besides its payload. Shared
/// (`Arc`) with the prepared certificate it came from, so building an index
/// copies pointers, not names.
#[derive(Debug, Clone)]
pub struct EntryMeta {
    /// The names the entry is indexed under: its SAN patterns (or CN), plus aliases.
    pub names: Arc<[NamePattern]>,
    /// Where it came from (a path, or a label).
    pub source: Arc<str>,
    /// The inspected leaf certificate.
    pub info: Arc<CertInfo>,
}

impl EntryMeta {
    /// Key algorithm of the leaf.
    pub fn key(&self) -> KeyAlgorithm {
        self.info.key
    }
}

/// What selection reads for each entry, kept small and together.
#[derive(Debug, Clone, Copy)]
struct Hot {
    key: KeyAlgorithm,
    valid_at_build: bool,
}

/// The candidates for one name, best first: valid at build time first, then
/// latest notAfter, then load order. Never hash order.
#[derive(Debug, Clone)]
enum Slot {
    One(u32),
    Many(Box<[u32]>),
}

/// How a name was matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchKind {
    /// An exact SAN or alias.
    Exact,
    /// A `*.` wildcard SAN.
    Wildcard,
    /// The default certificate, because the client sent no name (rustls
    /// passes an IP-literal SNI on as no name).
    DefaultNoName,
    /// The default certificate, because nothing matched the name the client
    /// sent (unknown, or not a valid host name).
    DefaultNoMatch,
}

/// The outcome of [`CertIndex::resolve_detailed`].
#[derive(Debug)]
#[non_exhaustive]
pub struct Resolved<'a, T> {
    /// The chosen certificate's payload.
    pub payload: &'a T,
    /// How the name was matched.
    pub kind: MatchKind,
    /// Whether the certificate was within its validity period when the index
    /// was built (false: expired or not yet valid, served for lack of better).
    pub valid: bool,
}

// By hand: a derive would ask `T: Copy`, but only a reference is copied.
impl<T> Clone for Resolved<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Resolved<'_, T> {}

/// A certificate index; see the module docs.
pub struct CertIndex<T> {
    payloads: Vec<T>,
    hot: Vec<Hot>,
    meta: Vec<EntryMeta>,
    exact: HashMap<Box<str>, Slot, RandomState>,
    wildcard: HashMap<Box<str>, Slot, RandomState>,
    default: Option<Slot>,
    generation: u64,
    /// The first notBefore or notAfter after the build time: when the
    /// validity ranking stops being true.
    validity_changes_at: Option<SystemTime>,
}

impl<T> fmt::Debug for CertIndex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertIndex")
            .field("entries", &self.payloads.len())
            .field("exact_names", &self.exact.len())
            .field("wildcard_names", &self.wildcard.len())
            .field("has_default", &self.default.is_some())
            .field("generation", &self.generation)
            .finish()
    }
}

/// One certificate to put into an index.
pub struct IndexInput<T> {
    /// The payload handed back on a match.
    pub payload: T,
    /// The inspected leaf.
    pub info: Arc<CertInfo>,
    /// The names to index it under, normally `info.server_name_patterns().0`
    /// parsed once when the certificate was loaded.
    pub names: Arc<[NamePattern]>,
    /// Where it came from.
    pub source: Arc<str>,
    /// Extra exact names to serve it under; each must be covered by `names`.
    pub aliases: Vec<DnsName>,
}

impl<T> IndexInput<T> {
    /// An input indexed under the certificate's own names (SANs, or the CN
    /// when there is no dNSName SAN); names that do not parse are skipped.
    pub fn new(payload: T, info: Arc<CertInfo>, source: &str) -> Self {
        let names = info.server_name_patterns().0.into();
        IndexInput {
            payload,
            info,
            names,
            source: source.into(),
            aliases: Vec::new(),
        }
    }
}

/// Options for building an index: `IndexOptions::default()` and the `with_*`
/// methods.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct IndexOptions {
    /// The name whose certificate(s) serve as default. `None`: the first
    /// loaded certificate with an exact name.
    pub default_name: Option<DnsName>,
    /// Refuse (no certificate) instead of serving a default.
    pub strict: bool,
}

impl IndexOptions {
    /// Serves the certificate(s) of `name` as the default.
    pub fn with_default_name(mut self, name: DnsName) -> Self {
        self.default_name = Some(name);
        self
    }

    /// Refuses instead of serving a default.
    pub fn with_strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }
}

fn add(map: &mut HashMap<Box<str>, Slot, RandomState>, name: &str, id: u32) {
    match map.get_mut(name) {
        Some(slot) => {
            let mut ids = match std::mem::replace(slot, Slot::One(id)) {
                Slot::One(first) => vec![first],
                Slot::Many(ids) => ids.into_vec(),
            };
            // Ids arrive in increasing order, so a repeat is always the last.
            if ids.last() != Some(&id) {
                ids.push(id);
            }
            // Several certificates for one name are rare: the copy is fine.
            *slot = if ids.len() == 1 {
                Slot::One(id)
            } else {
                Slot::Many(ids.into_boxed_slice())
            };
        }
        None => {
            map.insert(name.into(), Slot::One(id));
        }
    }
}

impl<T> CertIndex<T> {
    /// An index with no certificate, generation 0: every lookup refuses.
    pub fn empty() -> Self {
        CertIndex {
            payloads: Vec::new(),
            hot: Vec::new(),
            meta: Vec::new(),
            exact: HashMap::default(),
            wildcard: HashMap::default(),
            default: None,
            generation: 0,
            validity_changes_at: None,
        }
    }

    /// Builds an index. `now` decides which certificates count as currently
    /// valid for the tie-break; `generation` is stored for observability.
    pub fn build(
        inputs: Vec<IndexInput<T>>,
        options: &IndexOptions,
        now: SystemTime,
        generation: u64,
    ) -> Result<Self, IndexError> {
        if u32::try_from(inputs.len()).is_err() {
            return Err(IndexError::TooMany);
        }
        let n = inputs.len();
        let mut payloads = Vec::with_capacity(n);
        let mut hot = Vec::with_capacity(n);
        let mut meta = Vec::with_capacity(n);
        let mut exact: HashMap<Box<str>, Slot, RandomState> =
            HashMap::with_capacity_and_hasher(n + n / 4, RandomState::default());
        let mut wildcard: HashMap<Box<str>, Slot, RandomState> = HashMap::default();
        for (i, input) in inputs.into_iter().enumerate() {
            // Checked above: the count fits in u32.
            let id = i as u32;
            let names = if input.aliases.is_empty() {
                input.names
            } else {
                with_aliases(&input.names, &input.aliases, &input.source)?
            };
            for p in names.iter() {
                let map = if p.is_wildcard() {
                    &mut wildcard
                } else {
                    &mut exact
                };
                add(map, p.base().as_str(), id);
            }
            hot.push(Hot {
                key: input.info.key,
                valid_at_build: input.info.is_valid_at(now),
            });
            payloads.push(input.payload);
            meta.push(EntryMeta {
                names,
                source: input.source,
                info: input.info,
            });
        }
        // Order the (rare) names with several certificates, in place.
        for slot in exact.values_mut().chain(wildcard.values_mut()) {
            if let Slot::Many(ids) = slot {
                ids.sort_by(|a, b| {
                    let (ha, hb) = (&hot[*a as usize], &hot[*b as usize]);
                    hb.valid_at_build
                        .cmp(&ha.valid_at_build)
                        .then(
                            meta[*b as usize]
                                .info
                                .not_after
                                .cmp(&meta[*a as usize].info.not_after),
                        )
                        .then(a.cmp(b))
                });
            }
        }
        let validity_changes_at = meta
            .iter()
            .flat_map(|m| [m.info.not_before, m.info.not_after])
            .filter(|t| *t >= now)
            .min();
        let mut index = CertIndex {
            payloads,
            hot,
            meta,
            exact,
            wildcard,
            default: None,
            generation,
            validity_changes_at,
        };
        if !options.strict {
            index.default = match &options.default_name {
                Some(name) => Some(
                    index
                        .find(name.as_str())
                        .map(|(slot, _)| slot.clone())
                        .ok_or_else(|| IndexError::DefaultNotFound(name.to_string()))?,
                ),
                None => index.first_entry_slot(),
            };
        }
        Ok(index)
    }

    /// The default when none is configured: the slot of the first loaded
    /// certificate that has an exact name (a client that sent no name matches
    /// no wildcard either), under that name, so that an ECDSA and an RSA
    /// certificate for the same main name both serve as default. With only
    /// wildcard certificates, the first one.
    fn first_entry_slot(&self) -> Option<Slot> {
        let exact = self.meta.iter().find_map(|e| {
            let p = e.names.iter().find(|p| !p.is_wildcard())?;
            self.exact.get(p.base().as_str()).cloned()
        });
        exact.or_else(|| (!self.payloads.is_empty()).then_some(Slot::One(0)))
    }

    fn default_for(&self, kind: MatchKind) -> Option<(&Slot, MatchKind)> {
        self.default.as_ref().map(|s| (s, kind))
    }

    /// Whether the best candidate of a slot was valid when the index was
    /// built (slots are ordered valid first, so the first one tells).
    fn slot_valid(&self, slot: &Slot) -> bool {
        let id = match slot {
            Slot::One(id) => *id,
            Slot::Many(ids) => ids.first().copied().unwrap_or(0),
        };
        self.hot.get(id as usize).is_some_and(|h| h.valid_at_build)
    }

    /// Applies the order across match kinds: valid exact, valid wildcard,
    /// invalid exact, invalid wildcard. `wildcard` is only asked when the
    /// exact slot is missing or holds no valid certificate.
    fn rank<'a>(
        &'a self,
        exact: Option<&'a Slot>,
        wildcard: impl FnOnce() -> Option<&'a Slot>,
    ) -> Option<(&'a Slot, MatchKind)> {
        if let Some(slot) = exact.filter(|s| self.slot_valid(s)) {
            return Some((slot, MatchKind::Exact));
        }
        match wildcard() {
            Some(w) if exact.is_none() || self.slot_valid(w) => Some((w, MatchKind::Wildcard)),
            _ => exact.map(|s| (s, MatchKind::Exact)),
        }
    }

    /// Exact then wildcard probe of a name that may not be canonical; a hit
    /// is only reported when the name is canonical (see `resolve`).
    fn probe_raw(&self, raw: &str) -> Option<(&Slot, MatchKind)> {
        let exact = self.exact.get(raw);
        self.rank(exact, || {
            let (first, parent) = raw.split_once('.')?;
            // An exact hit already proved the name canonical.
            let canonical = exact.is_some()
                || (raw.len() <= mailtls_core::name::MAX_NAME_LEN
                    && is_canonical_label(first.as_bytes()));
            if !canonical {
                return None;
            }
            self.wildcard.get(parent)
        })
    }

    fn find(&self, canonical: &str) -> Option<(&Slot, MatchKind)> {
        self.rank(self.exact.get(canonical), || {
            let (_, parent) = canonical.split_once('.')?;
            self.wildcard.get(parent)
        })
    }

    /// Finds the payload for a client's server name (as sent; it is
    /// normalised here). `accept` tells which keys the client takes; it is
    /// only asked when a name has more than one certificate. `None` means
    /// refuse: strict mode and no match, or an empty index.
    ///
    /// Across match kinds the order is: a valid exact certificate, a valid
    /// wildcard, an invalid (expired or not yet valid) exact certificate, an
    /// invalid wildcard, then the default. Validity is judged at the `now`
    /// the index was built with.
    pub fn resolve(
        &self,
        server_name: Option<&str>,
        accept: impl FnOnce() -> KeyAcceptance,
    ) -> Option<(&T, MatchKind)> {
        self.resolve_detailed(server_name, accept)
            .map(|r| (r.payload, r.kind))
    }

    /// Like [`resolve`](Self::resolve), also telling whether the chosen
    /// certificate was valid when the index was built.
    pub fn resolve_detailed(
        &self,
        server_name: Option<&str>,
        accept: impl FnOnce() -> KeyAcceptance,
    ) -> Option<Resolved<'_, T>> {
        // Only canonical names are keys of the maps. An exact hit therefore
        // proves the raw name canonical, and a wildcard hit does too once its
        // first label is checked (a raw ".example.com" or "a_b.example.com"
        // must not match "*.example.com"). A miss needs normalising only if
        // the name could normalise to something else: an ASCII-lowercase name
        // without a trailing dot is its own canonical form (or has none), so
        // it was already probed. rustls hands over exactly such names.
        let found = match server_name {
            Some(raw) => self.probe_raw(raw).or_else(|| {
                needs_normalising(raw)
                    .then(|| canonical_lookup_key(raw))
                    .flatten()
                    .and_then(|key| self.find(&key))
                    .or_else(|| self.default_for(MatchKind::DefaultNoMatch))
            }),
            None => self.default_for(MatchKind::DefaultNoName),
        }?;
        let (slot, kind) = found;
        let id = match slot {
            Slot::One(id) => *id,
            Slot::Many(ids) => self.choose(ids, accept()),
        } as usize;
        Some(Resolved {
            payload: &self.payloads[id],
            kind,
            valid: self.hot[id].valid_at_build,
        })
    }

    /// Picks among several candidates: the first acceptable non-RSA key in the
    /// best validity tier, else the first acceptable key, else the best
    /// candidate (the handshake then fails on signature schemes, with
    /// rustls's own error).
    fn choose(&self, ids: &[u32], accept: KeyAcceptance) -> u32 {
        let mut first_ok: Option<(u32, bool)> = None;
        for &id in ids {
            let h = self.hot[id as usize];
            if !accept.accepts(h.key) {
                continue;
            }
            match first_ok {
                None => first_ok = Some((id, h.valid_at_build)),
                Some((_, tier)) if tier != h.valid_at_build => break,
                Some(_) => {}
            }
            if h.key.family() != KeyFamily::Rsa {
                return id;
            }
        }
        first_ok.map_or(ids.first().copied().unwrap_or(0), |(id, _)| id)
    }

    /// When a certificate of this index next starts or stops being valid
    /// (its notBefore or notAfter after the build time): from then on the
    /// ranking by validity is stale and the index should be rebuilt.
    pub fn validity_changes_at(&self) -> Option<SystemTime> {
        self.validity_changes_at
    }

    /// The reload generation this index was built for.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Number of certificates.
    pub fn len(&self) -> usize {
        self.payloads.len()
    }

    /// Whether the index holds no certificate.
    pub fn is_empty(&self) -> bool {
        self.payloads.is_empty()
    }

    /// Every entry's metadata, in load order.
    pub fn entries(&self) -> impl Iterator<Item = &EntryMeta> {
        self.meta.iter()
    }

    /// Every entry's payload with its metadata, in load order.
    pub fn payloads(&self) -> impl Iterator<Item = (&T, &EntryMeta)> {
        self.payloads.iter().zip(&self.meta)
    }

    /// Whether a default certificate is served when nothing matches.
    pub fn has_default(&self) -> bool {
        self.default.is_some()
    }
}

/// Whether `name` might have a canonical form other than itself: it holds an
/// upper-case letter or a non-ASCII byte, or ends in the root dot.
fn needs_normalising(name: &str) -> bool {
    name.ends_with('.')
        || name
            .bytes()
            .fold(false, |any, c| any | c.is_ascii_uppercase() | (c >= 0x80))
}

/// Whether one label is in canonical form: 1 to 63 lowercase letters, digits
/// or hyphens, no hyphen at either end; an `xn--` A-label must also be valid
/// IDNA (checked through the core's name parser, so only A-labels pay for it).
fn is_canonical_label(label: &[u8]) -> bool {
    let plain = !label.is_empty()
        && label.len() <= mailtls_core::name::MAX_LABEL_LEN
        && label[0] != b'-'
        && label[label.len() - 1] != b'-'
        && label
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
    if !plain {
        return false;
    }
    if !label.starts_with(b"xn--") {
        return true;
    }
    // Valid ASCII (checked above); the parser decodes the punycode and
    // re-encodes it, and a valid A-label comes back unchanged.
    std::str::from_utf8(label)
        .ok()
        .and_then(|l| DnsName::parse(l).ok())
        .is_some_and(|n| n.as_str().as_bytes() == label)
}

/// The names plus aliases, each alias checked to be covered by a name.
fn with_aliases(
    names: &[NamePattern],
    aliases: &[DnsName],
    source: &str,
) -> Result<Arc<[NamePattern]>, IndexError> {
    let mut out = names.to_vec();
    for alias in aliases {
        if !names.iter().any(|p| p.matches(alias)) {
            return Err(IndexError::AliasNotCovered {
                alias: alias.to_string(),
                source_name: source.to_owned(),
                names: names
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let p = NamePattern::Exact(alias.clone());
        if !out.contains(&p) {
            out.push(p);
        }
    }
    Ok(out.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailtls_core::KeyType;
    use std::time::Duration;

    fn info(names: &[&str], key: KeyType, days: u32) -> Arc<CertInfo> {
        let kp = key.generate().unwrap();
        let mut params = rcgen::CertificateParams::new(
            names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>(),
        )
        .unwrap();
        params.not_before = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
        params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(days.into());
        Arc::new(CertInfo::from_der(params.self_signed(&kp).unwrap().der()).unwrap())
    }

    fn input(tag: &'static str, info: Arc<CertInfo>) -> IndexInput<&'static str> {
        IndexInput::new(tag, info, tag)
    }

    #[test]
    fn exact_then_wildcard_then_default() {
        let idx = CertIndex::build(
            vec![
                input("main", info(&["mail.example.com"], KeyType::EcdsaP256, 30)),
                input("wild", info(&["*.example.org"], KeyType::EcdsaP256, 30)),
                input(
                    "exact-org",
                    info(&["imap.example.org"], KeyType::EcdsaP256, 30),
                ),
            ],
            &IndexOptions::default(),
            SystemTime::now(),
            7,
        )
        .unwrap();
        let r = |n| idx.resolve(n, || KeyAcceptance::ALL).map(|(p, k)| (*p, k));
        assert_eq!(
            r(Some("imap.example.org")),
            Some(("exact-org", MatchKind::Exact))
        );
        assert_eq!(
            r(Some("smtp.example.org")),
            Some(("wild", MatchKind::Wildcard))
        );
        assert_eq!(
            r(Some("SMTP.Example.ORG.")),
            Some(("wild", MatchKind::Wildcard))
        );
        assert_eq!(
            r(Some("example.org")),
            Some(("main", MatchKind::DefaultNoMatch))
        );
        assert_eq!(
            r(Some("a.b.example.org")),
            Some(("main", MatchKind::DefaultNoMatch))
        );
        assert_eq!(r(None), Some(("main", MatchKind::DefaultNoName)));
        assert_eq!(
            r(Some("192.0.2.1")),
            Some(("main", MatchKind::DefaultNoMatch))
        );
        assert_eq!(idx.generation(), 7);

        let strict = CertIndex::build(
            vec![input(
                "main",
                info(&["mail.example.com"], KeyType::EcdsaP256, 30),
            )],
            &IndexOptions {
                strict: true,
                ..Default::default()
            },
            SystemTime::now(),
            1,
        )
        .unwrap();
        assert!(
            strict
                .resolve(Some("other.example"), || KeyAcceptance::ALL)
                .is_none()
        );
        assert!(strict.resolve(None, || KeyAcceptance::ALL).is_none());
    }

    #[test]
    fn malformed_names_never_match_a_wildcard() {
        let idx = CertIndex::build(
            vec![
                input("main", info(&["mail.example.net"], KeyType::EcdsaP256, 30)),
                input("wild", info(&["*.example.com"], KeyType::EcdsaP256, 30)),
            ],
            &IndexOptions::default(),
            SystemTime::now(),
            1,
        )
        .unwrap();
        for bad in [
            ".example.com",
            "a_b.example.com",
            "-a.example.com",
            "xn--zz.example.com",
            "a..example.com",
        ] {
            let (p, kind) = idx.resolve(Some(bad), || KeyAcceptance::ALL).unwrap();
            assert_eq!((*p, kind), ("main", MatchKind::DefaultNoMatch), "{bad}");
        }
        let (p, kind) = idx
            .resolve(Some("MX.Example.COM"), || KeyAcceptance::ALL)
            .unwrap();
        assert_eq!((*p, kind), ("wild", MatchKind::Wildcard));
    }

    #[test]
    fn ecdsa_preferred_when_accepted_rsa_otherwise() {
        let idx = CertIndex::build(
            vec![
                input("rsa", info(&["mail.example.com"], KeyType::Rsa2048, 30)),
                input("ec", info(&["mail.example.com"], KeyType::EcdsaP256, 30)),
            ],
            &IndexOptions::default(),
            SystemTime::now(),
            1,
        )
        .unwrap();
        let pick = |a| idx.resolve(Some("mail.example.com"), || a).map(|(p, _)| *p);
        assert_eq!(pick(KeyAcceptance::ALL), Some("ec"));
        assert_eq!(pick(KeyAcceptance::NONE.with_rsa()), Some("rsa"));
        assert_eq!(pick(KeyAcceptance::NONE.with_p256()), Some("ec"));
        assert_eq!(
            pick(KeyAcceptance::NONE.with_p384().with_rsa()),
            Some("rsa")
        );
    }

    #[test]
    fn tie_breaks_valid_then_latest_then_load_order() {
        let later = info(&["mail.example.com"], KeyType::EcdsaP256, 300);
        let sooner = info(&["mail.example.com"], KeyType::EcdsaP256, 30);
        let idx = CertIndex::build(
            vec![
                input("sooner", sooner.clone()),
                input("later", later.clone()),
            ],
            &IndexOptions::default(),
            SystemTime::now(),
            1,
        )
        .unwrap();
        assert_eq!(
            *idx.resolve(Some("mail.example.com"), || KeyAcceptance::ALL)
                .unwrap()
                .0,
            "later"
        );
        // Seen from a time after the shorter one expired but the other is valid
        // the order is the same; seen from after both expired, latest still wins.
        let future = SystemTime::now() + Duration::from_secs(60 * 86400);
        let idx = CertIndex::build(
            vec![input("later", later), input("sooner", sooner)],
            &IndexOptions::default(),
            future,
            1,
        )
        .unwrap();
        assert_eq!(
            *idx.resolve(Some("mail.example.com"), || KeyAcceptance::ALL)
                .unwrap()
                .0,
            "later"
        );
    }

    #[test]
    fn default_prefers_an_exact_name_over_wildcard_only() {
        let idx = CertIndex::build(
            vec![
                input("wild", info(&["*.example.org"], KeyType::EcdsaP256, 30)),
                input("mail", info(&["mail.example.com"], KeyType::EcdsaP256, 30)),
            ],
            &IndexOptions::default(),
            SystemTime::now(),
            1,
        )
        .unwrap();
        assert_eq!(*idx.resolve(None, || KeyAcceptance::ALL).unwrap().0, "mail");
        let only_wild = CertIndex::build(
            vec![input(
                "wild",
                info(&["*.example.org"], KeyType::EcdsaP256, 30),
            )],
            &IndexOptions::default(),
            SystemTime::now(),
            1,
        )
        .unwrap();
        assert_eq!(
            *only_wild.resolve(None, || KeyAcceptance::ALL).unwrap().0,
            "wild"
        );
    }

    #[test]
    fn aliases_must_be_covered() {
        let i = info(&["*.example.com"], KeyType::EcdsaP256, 30);
        let mut ok = input("w", i.clone());
        ok.aliases = vec![DnsName::parse("smtp.example.com").unwrap()];
        assert!(CertIndex::build(vec![ok], &IndexOptions::default(), SystemTime::now(), 1).is_ok());
        let mut bad = input("w", i);
        bad.aliases = vec![DnsName::parse("smtp.example.net").unwrap()];
        assert!(matches!(
            CertIndex::build(vec![bad], &IndexOptions::default(), SystemTime::now(), 1),
            Err(IndexError::AliasNotCovered { .. })
        ));
    }

    #[test]
    fn default_name_must_exist() {
        let opts = IndexOptions {
            default_name: Some(DnsName::parse("nope.example").unwrap()),
            strict: false,
        };
        let r = CertIndex::build(
            vec![input("a", info(&["a.example.com"], KeyType::EcdsaP256, 30))],
            &opts,
            SystemTime::now(),
            1,
        );
        assert!(matches!(r, Err(IndexError::DefaultNotFound(_))));
    }
}
