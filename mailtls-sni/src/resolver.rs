//! The rustls adapter: [`SniResolver`] implements `ResolvesServerCert` on top
//! of a [`CertIndex`] held in an `ArcSwap`, so a handshake reads the current
//! table without a lock and a reload replaces it with one atomic store.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use mailtls_core::challenge::{ChallengeError, TlsAlpnChallenge, TlsAlpnChallengeSlot};
use mailtls_core::name::canonical_lookup_key;
use mailtls_core::{
    ACME_TLS_ALPN_PROTOCOL, CertInfo, CertificateWithKey, DnsName, KeyAlgorithm, LoadError,
    NamePattern,
};
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{CipherSuite, SignatureScheme};

use crate::dir::{DirError, scan_dir};
use crate::index::{CertIndex, IndexError, IndexInput, IndexOptions, KeyAcceptance, MatchKind};

/// Why a reload was refused. The previous certificates stay in service.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// Files could not be used, and the reload could not go ahead without
    /// them: under [`ReloadPolicy::AllOrNothing`], or because nothing usable
    /// was left. Every bad file is listed, not only the first.
    #[error("{} certificate file(s) could not be used: {}", .0.len(), list_bad(.0))]
    BadFiles(Vec<BadFile>),
    /// The certificate directory could not be read.
    #[error(transparent)]
    Dir(#[from] DirError),
    /// rustls could not use a private key (of a certificate given to
    /// [`SniResolver::reload`]; in a directory this is a [`BadFile`]).
    #[error("{source_name}: rustls cannot use the private key: {reason}")]
    UnusableKey {
        /// Where the certificate came from.
        source_name: String,
        /// What rustls said.
        reason: String,
    },
    /// The index could not be built (alias, default name).
    #[error(transparent)]
    Index(#[from] IndexError),
    /// The new set holds no certificate; serving nothing is never what a
    /// reload means, so the old set is kept.
    #[error("no certificate found; keeping the previous set")]
    NoCertificates,
}

fn list_bad(files: &[BadFile]) -> String {
    files
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// A file in a certificate directory that could not be served, and why.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct BadFile {
    /// The file at fault (the certificate file; for a key problem the key
    /// file when it is a separate one).
    pub file: String,
    /// What was wrong with it.
    pub reason: String,
}

impl BadFile {
    /// A bad file and the reason it was not served.
    pub fn new(file: impl Into<String>, reason: impl Into<String>) -> Self {
        BadFile {
            file: file.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for BadFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file, self.reason)
    }
}

impl From<LoadError> for BadFile {
    fn from(e: LoadError) -> Self {
        BadFile {
            file: e.source_name,
            reason: e.kind.to_string(),
        }
    }
}

/// What a reload does with files of a directory that cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ReloadPolicy {
    /// Serve every file that loads and report the others (in the log, the
    /// [`ReloadReport`] and [`ResolverStats`]); one broken renewal never
    /// holds back the rest. The reload is refused only when nothing usable
    /// is left or the configured default name has no certificate.
    #[default]
    SkipBadFiles,
    /// Any bad file refuses the whole reload and the previous set stays:
    /// for operators who would rather serve yesterday's complete set than
    /// today's partial one.
    AllOrNothing,
}

/// A certificate ready for the index: the rustls key object is built and the
/// names are parsed once, so rebuilding an index from prepared certificates
/// parses nothing.
#[derive(Clone)]
pub struct PreparedCertificate {
    /// The chain and signing key rustls serves.
    pub certified: Arc<CertifiedKey>,
    /// The inspected leaf.
    pub info: Arc<CertInfo>,
    /// The names it is served under (SANs, or the CN when there is none).
    pub names: Arc<[NamePattern]>,
    /// SAN entries that are not valid names or patterns, reported at reload.
    pub ignored_names: Vec<String>,
    /// Where it came from.
    pub source: Arc<str>,
    /// Extra exact names (each must be covered by the certificate).
    pub aliases: Vec<DnsName>,
}

impl fmt::Debug for PreparedCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PreparedCertificate")
            .field("source", &self.source)
            .field("names", &self.names)
            .field("aliases", &self.aliases)
            .finish_non_exhaustive()
    }
}

impl PreparedCertificate {
    /// Turns a loaded certificate into one rustls can serve.
    pub fn new(
        cert: CertificateWithKey,
        source: &str,
        provider: &CryptoProvider,
    ) -> Result<Self, ReloadError> {
        let key = provider
            .key_provider
            .load_private_key(cert.key)
            .map_err(|e| ReloadError::UnusableKey {
                source_name: source.to_owned(),
                reason: e.to_string(),
            })?;
        Ok(Self::from_parts(
            Arc::new(CertifiedKey::new(cert.chain, key)),
            Arc::new(cert.info),
            source,
        ))
    }

    /// Builds from a rustls key object and the inspected leaf it serves.
    pub fn from_parts(certified: Arc<CertifiedKey>, info: Arc<CertInfo>, source: &str) -> Self {
        let (names, bad) = info.server_name_patterns();
        PreparedCertificate {
            certified,
            info,
            names: names.into(),
            ignored_names: bad
                .iter()
                .map(|e| format!("{source}: ignored name: {e}"))
                .collect(),
            source: source.into(),
            aliases: Vec::new(),
        }
    }

    /// Adds aliases (checked against the certificate when the index is built).
    pub fn with_aliases(mut self, aliases: Vec<DnsName>) -> Self {
        self.aliases = aliases;
        self
    }
}

/// A reported miss: a client name that matched no certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissEvent {
    /// The name the client asked for (as sent), or `None` for no SNI.
    pub server_name: Option<String>,
    /// Whether the default certificate was served (false: refused).
    pub served_default: bool,
}

/// A callback for misses.
pub type MissHook = Arc<dyn Fn(&MissEvent) + Send + Sync>;

/// Settings of a resolver. Built from `ResolverOptions::default()` with the
/// `with_*` methods, so that new settings can be added without breaking
/// callers.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct ResolverOptions {
    /// The name whose certificate is the default; `None`: the first loaded.
    pub default_name: Option<DnsName>,
    /// Refuse handshakes that match nothing instead of serving the default.
    /// rustls then aborts the handshake with an `access_denied` alert.
    pub strict: bool,
    /// The crypto provider that loads keys; `None`: the process default, or
    /// else the provider of this crate's enabled feature (aws-lc-rs first,
    /// then ring).
    pub provider: Option<Arc<CryptoProvider>>,
    /// Called on every miss (no match, or no SNI), after the counters.
    pub on_miss: Option<MissHook>,
    /// What a directory reload does with files it cannot use.
    pub reload_policy: ReloadPolicy,
}

impl ResolverOptions {
    /// Serves the certificate(s) of `name` as the default.
    pub fn with_default_name(mut self, name: DnsName) -> Self {
        self.default_name = Some(name);
        self
    }

    /// Refuses handshakes that match nothing instead of serving the default.
    pub fn with_strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }

    /// Loads keys with this provider (the one the server's rustls config uses).
    pub fn with_provider(mut self, provider: Arc<CryptoProvider>) -> Self {
        self.provider = Some(provider);
        self
    }

    /// Calls `hook` on every miss, after the counters are updated. It runs on
    /// the handshake path: keep it short and non-blocking.
    pub fn with_on_miss(mut self, hook: MissHook) -> Self {
        self.on_miss = Some(hook);
        self
    }

    /// What a directory reload does with files it cannot use; the default,
    /// [`ReloadPolicy::SkipBadFiles`], serves the good ones and reports the
    /// rest.
    pub fn with_reload_policy(mut self, policy: ReloadPolicy) -> Self {
        self.reload_policy = policy;
        self
    }
}

impl fmt::Debug for ResolverOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResolverOptions")
            .field("default_name", &self.default_name)
            .field("strict", &self.strict)
            .field("on_miss", &self.on_miss.is_some())
            .field("reload_policy", &self.reload_policy)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Counters {
    exact: AtomicU64,
    wildcard: AtomicU64,
    default_no_name: AtomicU64,
    default_no_match: AtomicU64,
    refused: AtomicU64,
    challenge_served: AtomicU64,
    challenge_refused: AtomicU64,
    served_invalid: AtomicU64,
}

/// How many bad files [`ResolverStats::bad_files`] lists at most; the count
/// is always complete.
pub const MAX_BAD_FILES_IN_STATS: usize = 100;

/// A snapshot of the resolver's counters and state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResolverStats {
    /// Current reload generation (0 before the first successful load).
    pub generation: u64,
    /// Certificates in the current index.
    pub certificates: usize,
    /// Handshakes matched by an exact name.
    pub exact_hits: u64,
    /// Handshakes matched by a wildcard.
    pub wildcard_hits: u64,
    /// Handshakes without SNI (or with an IP literal) that got the default certificate.
    pub default_no_sni: u64,
    /// Handshakes whose SNI matched nothing (unknown or malformed name) and
    /// got the default certificate.
    pub default_no_match: u64,
    /// Handshakes refused (strict mode, or nothing loaded).
    pub refused: u64,
    /// tls-alpn-01 challenge certificates served.
    pub challenges_served: u64,
    /// tls-alpn-01 hellos refused for lack of a challenge certificate.
    pub challenges_refused: u64,
    /// Successful reloads.
    pub reloads: u64,
    /// Refused reloads.
    pub failed_reloads: u64,
    /// Why the most recent reload failed, if the most recent one did.
    pub last_reload_error: Option<String>,
    /// Files the most recent directory reload could not use (whether it then
    /// went ahead or not), at most [`MAX_BAD_FILES_IN_STATS`] of them.
    pub bad_files: Vec<BadFile>,
    /// How many files the most recent directory reload could not use.
    pub bad_file_count: usize,
    /// Handshakes served a certificate outside its validity period (expired
    /// or not yet valid) because nothing valid covered the name.
    pub served_invalid: u64,
}

impl ResolverStats {
    /// All misses: no SNI, no match, or refused.
    pub fn misses(&self) -> u64 {
        self.default_no_sni + self.default_no_match + self.refused
    }
}

/// What a successful reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReloadReport {
    /// The new generation.
    pub generation: u64,
    /// Certificates now served.
    pub certificates: usize,
    /// Notes that did not stop the reload (unpaired key files, SAN entries
    /// that are not valid names, CA certificates skipped).
    pub warnings: Vec<String>,
    /// Files that could not be used and are not served (the good ones are);
    /// see [`ReloadPolicy::SkipBadFiles`].
    pub bad_files: Vec<BadFile>,
}

/// A short description of a served certificate, for status pages and alerts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSummary {
    /// The names it is indexed under (SANs, CN fallback, aliases).
    pub names: Vec<String>,
    /// Where it came from.
    pub source: String,
    /// Subject DN.
    pub subject: String,
    /// Issuer DN.
    pub issuer: String,
    /// Key algorithm.
    pub key: KeyAlgorithm,
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
    /// SHA-256 fingerprint, colon hex.
    pub fingerprint: String,
}

type Table = CertIndex<Arc<CertifiedKey>>;

/// A rustls certificate resolver for mail servers; see the crate docs.
pub struct SniResolver {
    table: ArcSwap<Table>,
    options: ResolverOptions,
    provider: Arc<CryptoProvider>,
    counters: Counters,
    reloads: AtomicU64,
    failed_reloads: AtomicU64,
    last_error: Mutex<Option<String>>,
    bad_files: Mutex<(Vec<BadFile>, usize)>,
    reload_lock: Mutex<()>,
    challenges: RwLock<HashMap<Box<str>, Arc<CertifiedKey>>>,
}

impl fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SniResolver")
            .field("table", &*self.table.load())
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

fn default_provider() -> Arc<CryptoProvider> {
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(feature_provider()))
}

#[cfg(feature = "aws-lc-rs")]
fn feature_provider() -> CryptoProvider {
    rustls::crypto::aws_lc_rs::default_provider()
}

#[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
fn feature_provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

impl SniResolver {
    /// An empty resolver (every handshake refused until the first reload).
    pub fn new(options: ResolverOptions) -> Self {
        let provider = options.provider.clone().unwrap_or_else(default_provider);
        SniResolver {
            table: ArcSwap::from_pointee(CertIndex::empty()),
            options,
            provider,
            counters: Counters::default(),
            reloads: AtomicU64::new(0),
            failed_reloads: AtomicU64::new(0),
            last_error: Mutex::new(None),
            bad_files: Mutex::new((Vec::new(), 0)),
            reload_lock: Mutex::new(()),
            challenges: RwLock::new(HashMap::new()),
        }
    }

    /// The crypto provider used to load keys.
    pub fn provider(&self) -> &Arc<CryptoProvider> {
        &self.provider
    }

    /// Replaces the whole certificate set (certificates not in `certs` are no
    /// longer served). On error the current set stays and the error is also
    /// kept for [`stats`](Self::stats).
    pub fn reload(&self, certs: Vec<PreparedCertificate>) -> Result<ReloadReport, ReloadError> {
        let _guard = self
            .reload_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.swap_in(certs, Vec::new(), Vec::new())
    }

    /// Builds and swaps in a new table; the caller holds `reload_lock`.
    fn swap_in(
        &self,
        certs: Vec<PreparedCertificate>,
        mut warnings: Vec<String>,
        bad_files: Vec<BadFile>,
    ) -> Result<ReloadReport, ReloadError> {
        let result = self.build_table(certs, &mut warnings);
        match result {
            Ok(table) => {
                let report = ReloadReport {
                    generation: table.generation(),
                    certificates: table.len(),
                    warnings,
                    bad_files,
                };
                self.table.store(Arc::new(table));
                self.reloads.fetch_add(1, Ordering::Relaxed);
                *self
                    .last_error
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = None;
                tracing::info!(
                    generation = report.generation,
                    certificates = report.certificates,
                    bad_files = report.bad_files.len(),
                    "certificates reloaded"
                );
                Ok(report)
            }
            Err(e) => {
                self.record_failure(&e);
                Err(e)
            }
        }
    }

    fn record_failure(&self, e: &ReloadError) {
        self.failed_reloads.fetch_add(1, Ordering::Relaxed);
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(e.to_string());
        tracing::warn!(error = %e, "certificate reload refused; keeping the previous set");
    }

    fn build_table(
        &self,
        certs: Vec<PreparedCertificate>,
        warnings: &mut Vec<String>,
    ) -> Result<Table, ReloadError> {
        if certs.is_empty() {
            return Err(ReloadError::NoCertificates);
        }
        let inputs: Vec<IndexInput<Arc<CertifiedKey>>> = certs
            .into_iter()
            .map(|c| {
                warnings.extend(c.ignored_names);
                IndexInput {
                    payload: c.certified,
                    info: c.info,
                    names: c.names,
                    source: c.source,
                    aliases: c.aliases,
                }
            })
            .collect();
        let generation = self.table.load().generation() + 1;
        Ok(CertIndex::build(
            inputs,
            &self.index_options(),
            SystemTime::now(),
            generation,
        )?)
    }

    /// Loads every certificate in `dir` (see [`crate::dir`] for the layouts
    /// understood) and replaces the current set with them.
    ///
    /// Under the default [`ReloadPolicy::SkipBadFiles`] every file that loads
    /// is served and every one that does not is reported (logged, listed in
    /// [`ReloadReport::bad_files`] and [`ResolverStats::bad_files`]); the
    /// reload is refused only when nothing usable is left or the configured
    /// default name has no certificate. Under [`ReloadPolicy::AllOrNothing`]
    /// any bad file refuses it. A refused reload keeps the previous set.
    ///
    /// This reads and parses files, so it blocks: async code calls it through
    /// `tokio::task::spawn_blocking` (as [`crate::watch::watch_dir`] does) or
    /// at start-up, never on a runtime worker.
    pub fn reload_from_dir(&self, dir: &Path) -> Result<ReloadReport, ReloadError> {
        self.reload_from_dir_with(dir, Vec::new())
    }

    /// Like [`reload_from_dir`](Self::reload_from_dir), with extra prepared
    /// certificates (from configuration) served alongside the directory's.
    /// Blocking, like `reload_from_dir`.
    pub fn reload_from_dir_with(
        &self,
        dir: &Path,
        extra: Vec<PreparedCertificate>,
    ) -> Result<ReloadReport, ReloadError> {
        let scanned = match scan_dir(dir) {
            Ok(s) => s,
            Err(e) => {
                let e = ReloadError::from(e);
                self.record_failure(&e);
                return Err(e);
            }
        };
        let mut bad: Vec<BadFile> = scanned.errors.into_iter().map(BadFile::from).collect();
        let mut prepared = Vec::with_capacity(scanned.certificates.len() + extra.len());
        for (cert, source) in scanned.certificates {
            match PreparedCertificate::new(cert, &source, &self.provider) {
                Ok(p) => prepared.push(p),
                Err(ReloadError::UnusableKey {
                    source_name,
                    reason,
                }) => bad.push(BadFile::new(
                    source_name,
                    format!("rustls cannot use the private key: {reason}"),
                )),
                Err(e) => bad.push(BadFile::new(source, e.to_string())),
            }
        }
        for b in &bad {
            tracing::warn!(file = %b.file, reason = %b.reason, "certificate file not served");
        }
        for w in &scanned.warnings {
            tracing::info!(note = %w, "certificate directory");
        }
        let _guard = self
            .reload_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.record_bad_files(&bad);
        let refuse = !bad.is_empty()
            && (self.options.reload_policy == ReloadPolicy::AllOrNothing
                || (prepared.is_empty() && extra.is_empty()));
        if refuse {
            let e = ReloadError::BadFiles(bad);
            self.record_failure(&e);
            return Err(e);
        }
        prepared.extend(extra);
        self.swap_in(prepared, scanned.warnings, bad)
    }

    fn record_bad_files(&self, bad: &[BadFile]) {
        let kept = bad.iter().take(MAX_BAD_FILES_IN_STATS).cloned().collect();
        *self
            .bad_files
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = (kept, bad.len());
    }

    /// Rebuilds the index from the certificates already loaded if one of
    /// them started or stopped being valid since it was built (see
    /// [`CertIndex::validity_changes_at`]), so that an exact certificate that
    /// expired yields to a valid wildcard without waiting for a file to
    /// change. Reads no file. Returns the new generation if it rebuilt.
    /// [`crate::watch::watch_dir`] calls it at each such moment.
    pub fn revalidate(&self) -> Result<Option<u64>, ReloadError> {
        let _guard = self
            .reload_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let current = self.table.load_full();
        let now = SystemTime::now();
        if current.validity_changes_at().is_none_or(|t| t > now) {
            return Ok(None);
        }
        let inputs = current
            .payloads()
            .map(|(payload, meta)| IndexInput {
                payload: Arc::clone(payload),
                info: Arc::clone(&meta.info),
                // The names already hold the aliases, checked at the reload.
                names: Arc::clone(&meta.names),
                source: Arc::clone(&meta.source),
                aliases: Vec::new(),
            })
            .collect();
        let table = CertIndex::build(inputs, &self.index_options(), now, current.generation() + 1)?;
        let generation = table.generation();
        self.table.store(Arc::new(table));
        tracing::info!(
            generation,
            "a certificate's validity changed; ranking rebuilt"
        );
        Ok(Some(generation))
    }

    fn index_options(&self) -> IndexOptions {
        IndexOptions {
            default_name: self.options.default_name.clone(),
            strict: self.options.strict,
        }
    }

    /// When the validity ranking of the served set next changes; see
    /// [`revalidate`](Self::revalidate).
    pub fn validity_changes_at(&self) -> Option<SystemTime> {
        self.table.load().validity_changes_at()
    }

    /// Resolves a server name (as sent by the client) for a client that
    /// accepts the given keys. This is the whole selection logic, usable
    /// without a rustls `ClientHello`.
    pub fn resolve_name(
        &self,
        server_name: Option<&str>,
        accept: KeyAcceptance,
    ) -> Option<Arc<CertifiedKey>> {
        self.resolve_with(server_name, || accept)
    }

    fn resolve_with(
        &self,
        server_name: Option<&str>,
        accept: impl FnOnce() -> KeyAcceptance,
    ) -> Option<Arc<CertifiedKey>> {
        let table = self.table.load();
        let found = table.resolve_detailed(server_name, accept);
        let counter = match found.map(|r| r.kind) {
            Some(MatchKind::Exact) => &self.counters.exact,
            Some(MatchKind::Wildcard) => &self.counters.wildcard,
            Some(MatchKind::DefaultNoName) => &self.counters.default_no_name,
            Some(MatchKind::DefaultNoMatch) => &self.counters.default_no_match,
            None => &self.counters.refused,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if found.is_some_and(|r| !r.valid) {
            self.counters.served_invalid.fetch_add(1, Ordering::Relaxed);
        }
        let is_miss = !matches!(
            found.map(|r| r.kind),
            Some(MatchKind::Exact | MatchKind::Wildcard)
        );
        if is_miss {
            self.report_miss(server_name, found.is_some());
        }
        found.map(|r| Arc::clone(r.payload))
    }

    #[cold]
    fn report_miss(&self, server_name: Option<&str>, served_default: bool) {
        tracing::debug!(server_name, served_default, "SNI miss");
        if let Some(hook) = &self.options.on_miss {
            hook(&MissEvent {
                server_name: server_name.map(str::to_owned),
                served_default,
            });
        }
    }

    fn resolve_challenge(&self, server_name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let key = server_name.and_then(canonical_lookup_key);
        let found = key.and_then(|k| {
            self.challenges
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&*k)
                .cloned()
        });
        let counter = if found.is_some() {
            &self.counters.challenge_served
        } else {
            &self.counters.challenge_refused
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// A snapshot of counters and reload state.
    pub fn stats(&self) -> ResolverStats {
        let table = self.table.load();
        let c = &self.counters;
        let (bad_files, bad_file_count) = self
            .bad_files
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        ResolverStats {
            generation: table.generation(),
            certificates: table.len(),
            exact_hits: c.exact.load(Ordering::Relaxed),
            wildcard_hits: c.wildcard.load(Ordering::Relaxed),
            default_no_sni: c.default_no_name.load(Ordering::Relaxed),
            default_no_match: c.default_no_match.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
            challenges_served: c.challenge_served.load(Ordering::Relaxed),
            challenges_refused: c.challenge_refused.load(Ordering::Relaxed),
            reloads: self.reloads.load(Ordering::Relaxed),
            failed_reloads: self.failed_reloads.load(Ordering::Relaxed),
            last_reload_error: self
                .last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
            bad_files,
            bad_file_count,
            served_invalid: c.served_invalid.load(Ordering::Relaxed),
        }
    }

    /// The reload generation now served.
    pub fn generation(&self) -> u64 {
        self.table.load().generation()
    }

    /// Every certificate now served, in load order.
    pub fn certificates(&self) -> Vec<CertSummary> {
        self.table.load().entries().map(summary).collect()
    }

    /// Certificates whose notAfter falls within `within` from now (including
    /// those already expired), soonest first.
    pub fn expiring_within(&self, within: Duration) -> Vec<CertSummary> {
        let limit = SystemTime::now() + within;
        let mut out: Vec<CertSummary> = self
            .table
            .load()
            .entries()
            .filter(|e| e.info.not_after <= limit)
            .map(summary)
            .collect();
        out.sort_by_key(|s| s.not_after);
        out
    }
}

fn summary(e: &crate::index::EntryMeta) -> CertSummary {
    CertSummary {
        names: e.names.iter().map(ToString::to_string).collect(),
        source: e.source.to_string(),
        subject: e.info.subject.clone(),
        issuer: e.info.issuer.clone(),
        key: e.info.key,
        not_before: e.info.not_before,
        not_after: e.info.not_after,
        fingerprint: e.info.fingerprint_hex(),
    }
}

/// Whether a ClientHello is a tls-alpn-01 validation: its ALPN list is exactly
/// `acme-tls/1` (RFC 8737 §3).
pub fn is_tls_alpn_01(client_hello: &ClientHello<'_>) -> bool {
    let Some(mut protocols) = client_hello.alpn() else {
        return false;
    };
    protocols.next() == Some(ACME_TLS_ALPN_PROTOCOL) && protocols.next().is_none()
}

/// The key algorithms a client can take, from its signature schemes and, for
/// a TLS-1.2-only client, from the authentication of its cipher suites.
pub fn key_acceptance(client_hello: &ClientHello<'_>) -> KeyAcceptance {
    let mut a = KeyAcceptance::NONE;
    for s in client_hello.signature_schemes() {
        a = match s {
            SignatureScheme::ECDSA_NISTP256_SHA256 => a.with_p256(),
            SignatureScheme::ECDSA_NISTP384_SHA384 => a.with_p384(),
            SignatureScheme::ECDSA_NISTP521_SHA512 => a.with_p521(),
            SignatureScheme::ED25519 => a.with_ed25519(),
            SignatureScheme::RSA_PSS_SHA256
            | SignatureScheme::RSA_PSS_SHA384
            | SignatureScheme::RSA_PSS_SHA512
            | SignatureScheme::RSA_PKCS1_SHA256
            | SignatureScheme::RSA_PKCS1_SHA384
            | SignatureScheme::RSA_PKCS1_SHA512 => a.with_rsa(),
            _ => a,
        };
    }
    restrict_by_tls12_suites(a, client_hello.cipher_suites())
}

/// A client without TLS 1.3 suites can only use a key its TLS 1.2 suites
/// authenticate with: ECDHE_ECDSA suites for ECDSA and Ed25519 keys,
/// ECDHE_RSA suites for RSA keys.
fn restrict_by_tls12_suites(a: KeyAcceptance, suites: &[CipherSuite]) -> KeyAcceptance {
    let mut tls13 = false;
    let mut ecdsa = false;
    let mut rsa = false;
    for s in suites {
        match u16::from(*s) {
            0x1301..=0x1305 => tls13 = true,
            0xC02B | 0xC02C | 0xCCA9 | 0xC023 | 0xC024 | 0xC009 | 0xC00A => ecdsa = true,
            0xC02F | 0xC030 | 0xCCA8 | 0xC027 | 0xC028 | 0xC013 | 0xC014 => rsa = true,
            _ => {}
        }
    }
    if tls13 {
        return a;
    }
    let mut out = KeyAcceptance::NONE;
    if rsa && a.accepts(KeyAlgorithm::Rsa { bits: 2048 }) {
        out = out.with_rsa();
    }
    if ecdsa {
        for (alg, add) in [
            (
                KeyAlgorithm::EcdsaP256,
                KeyAcceptance::with_p256 as fn(KeyAcceptance) -> KeyAcceptance,
            ),
            (KeyAlgorithm::EcdsaP384, KeyAcceptance::with_p384),
            (KeyAlgorithm::EcdsaP521, KeyAcceptance::with_p521),
            (KeyAlgorithm::Ed25519, KeyAcceptance::with_ed25519),
        ] {
            if a.accepts(alg) {
                out = add(out);
            }
        }
    }
    out
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if is_tls_alpn_01(&client_hello) {
            // Never fall back to a real certificate for a validation hello.
            return self.resolve_challenge(client_hello.server_name());
        }
        // Key preferences are only worked out when a name has a choice.
        self.resolve_with(client_hello.server_name(), || key_acceptance(&client_hello))
    }
}

impl TlsAlpnChallengeSlot for SniResolver {
    fn install_challenge(&self, challenge: TlsAlpnChallenge) -> Result<(), ChallengeError> {
        if challenge.chain.is_empty() {
            return Err(ChallengeError::NoCertificate {
                name: challenge.name.to_string(),
            });
        }
        let key = self
            .provider
            .key_provider
            .load_private_key(challenge.key)
            .map_err(|e| ChallengeError::UnusableKey {
                name: challenge.name.to_string(),
                reason: e.to_string(),
            })?;
        let certified = Arc::new(CertifiedKey::new(challenge.chain, key));
        self.challenges
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(challenge.name.as_str().into(), certified);
        Ok(())
    }

    fn remove_challenge(&self, name: &DnsName) {
        self.challenges
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name.as_str());
    }
}
