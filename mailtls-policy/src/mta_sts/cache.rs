//! The MTA-STS policy cache (RFC 8461 §5.1, §10.2).
//!
//! Each entry keeps the last good policy of a domain until its `max_age`
//! runs out, even while DNS or HTTPS fail; it remembers the last failure so
//! fetches back off for five minutes; and it carries a jittered time at
//! which the service should refresh it before it expires, so popular
//! domains never lapse and refreshes do not all fire at once.
//!
//! The cache persists through a [`PolicyCacheStore`]: by default
//! [`FileCacheStore`], one JSON file in a data directory, written
//! atomically; policies are stored as their raw text and parsed again on
//! load, so the file never holds a policy the parser would not accept.

use std::borrow::Borrow;
use std::collections::HashSet;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::future::Future;
use std::hash::BuildHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mailtls_core::DnsName;
use serde::{Deserialize, Serialize};

use super::parser::{Profile, parse_policy};
use super::policy::MtaStsPolicy;
use super::record::PolicyId;
use crate::result_type::ResultType;

/// How long fetches pause after a failure (RFC 8461 §10.2 suggests not
/// hammering a failing host; the notes fix five minutes).
pub const FAILURE_BACKOFF: Duration = Duration::from_secs(300);

/// The longest time between proactive refreshes of a policy.
pub const MAX_REFRESH_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// The file name inside the data directory.
pub const CACHE_FILE: &str = "mta-sts-cache.json";

/// The last failure seen for a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureNote {
    /// When it happened.
    pub at: SystemTime,
    /// Its TLS-RPT classification.
    pub result_type: ResultType,
    /// What went wrong, for people.
    pub detail: String,
}

/// What the cache knows about one domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheEntry {
    /// The policy domain.
    pub domain: DnsName,
    /// The last good policy and the id it was published under.
    pub policy: Option<(PolicyId, Arc<MtaStsPolicy>)>,
    /// When that policy was fetched.
    pub fetched_at: Option<SystemTime>,
    /// When it stops being usable (`fetched_at + max_age`).
    pub expires_at: Option<SystemTime>,
    /// When the service should refresh it (before expiry, jittered).
    pub refresh_at: Option<SystemTime>,
    /// The last failure to refresh it, if later than the last success.
    pub last_failure: Option<FailureNote>,
}

/// An optional instant in 8 bytes instead of 16: nanoseconds since the
/// epoch, `u64::MAX` for none. Instants before 1970 (never seen: these are
/// fetch times) count as the epoch; the range ends in 2554.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp(u64);

impl Stamp {
    const NONE: Stamp = Stamp(u64::MAX);

    fn new(t: Option<SystemTime>) -> Self {
        match t {
            None => Stamp::NONE,
            Some(t) => Stamp(
                t.duration_since(UNIX_EPOCH)
                    .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX - 1))
                    .unwrap_or(0)
                    .min(u64::MAX - 1),
            ),
        }
    }

    fn get(self) -> Option<SystemTime> {
        (self != Stamp::NONE).then(|| UNIX_EPOCH + Duration::from_nanos(self.0))
    }
}

impl Default for Stamp {
    fn default() -> Self {
        Stamp::NONE
    }
}

/// An optional instant in 4 bytes, whole seconds since the epoch (rounded
/// down), `u32::MAX` for none. Used for the refresh time only: it is a
/// jittered scheduling hint, so a second's precision is plenty, and the
/// four bytes saved are what keeps a [`Slot`] in a 96-byte heap block.
/// Instants past 2106 saturate (a refresh that far out never comes first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SecStamp(u32);

impl SecStamp {
    const NONE: SecStamp = SecStamp(u32::MAX);

    fn new(t: Option<SystemTime>) -> Self {
        match t {
            None => SecStamp::NONE,
            Some(t) => SecStamp(
                u32::try_from(secs(t))
                    .unwrap_or(u32::MAX - 1)
                    .min(u32::MAX - 1),
            ),
        }
    }

    fn get(self) -> Option<SystemTime> {
        (self != SecStamp::NONE).then(|| UNIX_EPOCH + Duration::from_secs(u64::from(self.0)))
    }
}

/// The longest policy id RFC 8461 §3.1 allows, which [`PolicyId::parse`]
/// enforces.
const MAX_ID_LEN: usize = 32;

/// A policy id kept inside the slot instead of in a heap block of its own
/// (a [`PolicyId`] is a 16-byte pointer to a 32-byte block): 33 bytes in
/// place. An empty id stands for "no policy".
#[derive(Clone, Copy, PartialEq, Eq)]
struct InlineId {
    len: u8,
    bytes: [u8; MAX_ID_LEN],
}

impl InlineId {
    const EMPTY: InlineId = InlineId {
        len: 0,
        bytes: [0; MAX_ID_LEN],
    };

    fn new(id: &PolicyId) -> Self {
        let text = id.as_str().as_bytes();
        // PolicyId::parse caps ids at 32 bytes, so nothing is cut here.
        let len = text.len().min(MAX_ID_LEN);
        let mut bytes = [0; MAX_ID_LEN];
        bytes[..len].copy_from_slice(&text[..len]);
        InlineId {
            len: u8::try_from(len).unwrap_or(0),
            bytes,
        }
    }

    /// The id again; `None` only for [`InlineId::EMPTY`].
    fn get(&self) -> Option<PolicyId> {
        let text = self.bytes.get(..usize::from(self.len))?;
        std::str::from_utf8(text).ok().and_then(PolicyId::parse)
    }
}

impl fmt::Debug for InlineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.get() {
            Some(id) => write!(f, "{id:?}"),
            None => f.write_str("-"),
        }
    }
}

/// What the cache holds per domain: a [`CacheEntry`] packed into 88 bytes
/// (a 96-byte heap block): the id in place, instants packed, the rare
/// failure note boxed. Each slot is boxed and the table holds only the
/// pointer, so the table, which runs at most 7/8 full and doubles, costs
/// 8 bytes per bucket instead of a whole entry, and the domain is stored
/// once. Per domain that is about 19 bytes of table, 96 of slot and 32 of
/// domain name; the policy itself is shared through the pool (see
/// [`PolicyPool`]) when other domains publish the same one.
#[derive(Debug)]
struct Slot {
    domain: DnsName,
    /// The last good policy; `id` is its id, [`InlineId::EMPTY`] when
    /// there is none.
    policy: Option<Arc<MtaStsPolicy>>,
    id: InlineId,
    fetched_at: Stamp,
    expires_at: Stamp,
    refresh_at: SecStamp,
    last_failure: Option<Box<FailureNote>>,
}

/// A boxed [`Slot`] that hashes and compares as its domain, so the set can
/// be searched by `&DnsName`.
#[derive(Debug)]
struct Keyed(Box<Slot>);

impl PartialEq for Keyed {
    fn eq(&self, other: &Self) -> bool {
        self.0.domain == other.0.domain
    }
}

impl Eq for Keyed {}

impl Hash for Keyed {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.domain.hash(state);
    }
}

impl Borrow<DnsName> for Keyed {
    fn borrow(&self) -> &DnsName {
        &self.0.domain
    }
}

impl Slot {
    /// The slot for a stored entry (times kept only with a policy).
    fn from_entry(e: CacheEntry) -> Slot {
        let (id, policy) = match e.policy {
            Some((id, policy)) => (InlineId::new(&id), Some(policy)),
            None => (InlineId::EMPTY, None),
        };
        let held = policy.is_some();
        Slot {
            domain: e.domain,
            fetched_at: Stamp::new(e.fetched_at.filter(|_| held)),
            expires_at: Stamp::new(e.expires_at.filter(|_| held)),
            refresh_at: SecStamp::new(e.refresh_at.filter(|_| held)),
            policy,
            id,
            last_failure: e.last_failure.map(Box::new),
        }
    }

    fn empty(domain: DnsName) -> Self {
        Slot {
            domain,
            policy: None,
            id: InlineId::EMPTY,
            fetched_at: Stamp::NONE,
            expires_at: Stamp::NONE,
            refresh_at: SecStamp::NONE,
            last_failure: None,
        }
    }

    fn held(&self) -> Option<(PolicyId, Arc<MtaStsPolicy>)> {
        let policy = self.policy.as_ref()?;
        Some((self.id.get()?, Arc::clone(policy)))
    }

    fn valid_policy(&self, now: SystemTime) -> Option<(PolicyId, Arc<MtaStsPolicy>)> {
        match self.expires_at.get() {
            Some(exp) if now < exp => self.held(),
            _ => None,
        }
    }

    fn is_valid(&self, now: SystemTime) -> bool {
        self.policy.is_some() && self.expires_at.get().is_some_and(|exp| now < exp)
    }

    fn in_backoff(&self, now: SystemTime) -> bool {
        self.last_failure
            .as_ref()
            .is_some_and(|f| now < f.at + FAILURE_BACKOFF)
    }

    fn to_entry(&self) -> CacheEntry {
        CacheEntry {
            domain: self.domain.clone(),
            policy: self.held(),
            fetched_at: self.fetched_at.get(),
            expires_at: self.expires_at.get(),
            refresh_at: self.refresh_at.get(),
            last_failure: self.last_failure.as_deref().cloned(),
        }
    }
}

/// A pooled policy: hashes as its text, compares as the whole policy.
#[derive(Debug)]
struct Pooled(Arc<MtaStsPolicy>);

impl PartialEq for Pooled {
    fn eq(&self, other: &Self) -> bool {
        *self.0 == *other.0
    }
}

impl Eq for Pooled {}

impl Hash for Pooled {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.raw().hash(state);
    }
}

/// One copy of each policy that several domains publish word for word.
///
/// Domains whose mail a provider hosts mostly publish the provider's
/// sample policy (`mx: *.mail.protection.outlook.com`, the Google
/// `aspmx.l.google.com` set, ...), so the parsed policy, its raw text and
/// its patterns (about 300 bytes) are kept once and the domains share an
/// `Arc`. Only policies naming an MX outside their own domain go in: one
/// whose every pattern lies under the domain can only be that domain's, and
/// pooling it would cost a table bucket for nothing.
#[derive(Debug, Default)]
struct PolicyPool {
    policies: HashSet<Pooled>,
    /// Size at which the pool is next swept of policies no domain uses.
    sweep_at: usize,
}

impl PolicyPool {
    /// The fewest pooled policies worth a sweep.
    const MIN_SWEEP: usize = 1024;

    fn shareable(domain: &DnsName, policy: &MtaStsPolicy) -> bool {
        policy.mx().iter().any(|p| !p.base().is_within(domain))
    }

    /// The pooled copy of `policy`, which goes into the pool if it is the
    /// first of its kind.
    fn intern(&mut self, domain: &DnsName, policy: Arc<MtaStsPolicy>) -> Arc<MtaStsPolicy> {
        if !Self::shareable(domain, &policy) {
            return policy;
        }
        let key = Pooled(policy);
        if let Some(Pooled(pooled)) = self.policies.get(&key) {
            return Arc::clone(pooled);
        }
        let policy = Arc::clone(&key.0);
        self.policies.insert(key);
        if self.policies.len() >= self.sweep_at.max(Self::MIN_SWEEP) {
            self.sweep();
        }
        policy
    }

    /// Drops policies only the pool still holds. Callers may hold clones
    /// outside the lock; such a policy stays until a later sweep, which is
    /// harmless. Sweeping again only after the pool has doubled keeps the
    /// cost per insertion constant.
    fn sweep(&mut self) {
        self.policies.retain(|Pooled(p)| Arc::strong_count(p) > 1);
        self.policies.shrink_to_fit();
        self.sweep_at = self.policies.len().saturating_mul(2);
    }
}

/// The table behind the lock: the slots and the pool of shared policies.
#[derive(Debug, Default)]
struct Table {
    slots: HashSet<Keyed>,
    pool: PolicyPool,
}

impl Table {
    /// Puts a slot in, replacing the domain's old one, with its policy
    /// taken from the pool; returns that policy.
    fn put(&mut self, mut slot: Box<Slot>) -> Option<Arc<MtaStsPolicy>> {
        let policy = slot
            .policy
            .take()
            .map(|p| self.pool.intern(&slot.domain, p));
        slot.policy = policy.clone();
        self.slots.replace(Keyed(slot));
        policy
    }
}

/// The default [`PolicyCacheStore`]: one JSON file ([`CACHE_FILE`]) in a
/// data directory, written atomically (a reader sees the old or the new
/// file, never half of one). Policies are stored as their raw text and
/// parsed again on load, so the file never holds a policy the parser would
/// not accept.
#[derive(Debug, Clone)]
pub struct FileCacheStore {
    path: PathBuf,
}

impl FileCacheStore {
    /// A store in `dir`, created if missing (blocks for that).
    pub fn new(dir: &Path) -> Result<Self, CacheError> {
        std::fs::create_dir_all(dir).map_err(|source| CacheError::Io {
            path: dir.to_owned(),
            source,
        })?;
        Ok(FileCacheStore {
            path: dir.join(CACHE_FILE),
        })
    }

    /// The cache file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the file (blocking).
    pub fn load_blocking(&self) -> Result<Vec<CacheEntry>, CacheError> {
        let path = &self.path;
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(CacheError::Io {
                    path: path.clone(),
                    source,
                });
            }
        };
        let stored: StoredCache =
            serde_json::from_slice(&bytes).map_err(|e| CacheError::Format {
                path: path.clone(),
                detail: e.to_string(),
            })?;
        if stored.version != 1 {
            return Err(CacheError::Format {
                path: path.clone(),
                detail: format!("unknown version {}", stored.version),
            });
        }
        // An entry that no longer parses (hand-edited file, a stricter
        // parser) is dropped rather than failing the whole load.
        Ok(stored
            .entries
            .into_iter()
            .filter_map(StoredEntry::into_entry)
            .collect())
    }

    /// Writes the file (blocking).
    pub fn save_blocking(&self, entries: &[CacheEntry]) -> Result<(), CacheError> {
        let path = &self.path;
        let mut stored: Vec<StoredEntry> = entries.iter().map(StoredEntry::from_entry).collect();
        stored.sort_by(|a, b| a.domain.cmp(&b.domain));
        let json = serde_json::to_vec_pretty(&StoredCache {
            version: 1,
            entries: stored,
        })
        .map_err(|e| CacheError::Format {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        mailtls_core::secret_file::write_atomic(path, &json, 0o644).map_err(|source| {
            CacheError::Io {
                path: path.clone(),
                source,
            }
        })
    }
}

/// Runs a blocking file step off the async runtime.
async fn off_runtime<T: Send + 'static>(
    path: &Path,
    f: impl FnOnce() -> Result<T, CacheError> + Send + 'static,
) -> Result<T, CacheError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| CacheError::Io {
            path: path.to_owned(),
            source: std::io::Error::other(e.to_string()),
        })?
}

impl PolicyCacheStore for FileCacheStore {
    fn load(&self) -> StoreFuture<'_, Vec<CacheEntry>> {
        let store = self.clone();
        Box::pin(off_runtime(&self.path, move || store.load_blocking()))
    }

    fn save(&self, entries: Vec<CacheEntry>) -> StoreFuture<'_, ()> {
        let store = self.clone();
        Box::pin(off_runtime(&self.path, move || {
            store.save_blocking(&entries)
        }))
    }
}

impl CacheEntry {
    /// The entry as JSON (the cache file's per-entry format, times in Unix
    /// seconds), for stores of your own.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&StoredEntry::from_entry(self)).unwrap_or_default()
    }

    /// Reads what [`CacheEntry::to_json`] wrote; `None` when it does not
    /// parse (a damaged row is treated as absent: the policy is fetched
    /// again).
    pub fn from_json(json: &str) -> Option<Self> {
        serde_json::from_str::<StoredEntry>(json)
            .ok()
            .and_then(StoredEntry::into_entry)
    }

    /// The policy if it has not expired at `now`.
    pub fn valid_policy(&self, now: SystemTime) -> Option<&(PolicyId, Arc<MtaStsPolicy>)> {
        match (&self.policy, self.expires_at) {
            (Some(p), Some(exp)) if now < exp => Some(p),
            _ => None,
        }
    }

    /// Whether a fetch must wait because the last one failed less than
    /// [`FAILURE_BACKOFF`] ago.
    pub fn in_backoff(&self, now: SystemTime) -> bool {
        self.last_failure
            .as_ref()
            .is_some_and(|f| now < f.at + FAILURE_BACKOFF)
    }
}

/// Why the cache could not be loaded or saved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// Reading or writing the file failed.
    #[error("MTA-STS cache file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A store of the embedder's or a database failed.
    #[error("MTA-STS cache store: {0}")]
    Store(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The file is not a cache this version wrote.
    #[error("MTA-STS cache file {path} is damaged: {detail}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
}

#[derive(Serialize, Deserialize)]
struct StoredEntry {
    domain: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fetched_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refresh_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    failure_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    failure_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    failure_detail: Option<String>,
}

impl StoredEntry {
    fn from_entry(e: &CacheEntry) -> Self {
        StoredEntry {
            domain: e.domain.to_string(),
            id: e.policy.as_ref().map(|(id, _)| id.to_string()),
            policy: e.policy.as_ref().map(|(_, p)| p.raw().to_owned()),
            fetched_at: e.fetched_at.map(secs),
            expires_at: e.expires_at.map(secs),
            refresh_at: e.refresh_at.map(secs),
            failure_at: e.last_failure.as_ref().map(|f| secs(f.at)),
            failure_type: e
                .last_failure
                .as_ref()
                .map(|f| f.result_type.as_str().to_owned()),
            failure_detail: e.last_failure.as_ref().map(|f| f.detail.clone()),
        }
    }

    /// `None` when the domain no longer parses.
    fn into_entry(self) -> Option<CacheEntry> {
        let domain = DnsName::parse(&self.domain).ok()?;
        let policy = match (self.id.as_deref().and_then(PolicyId::parse), self.policy) {
            (Some(id), Some(text)) => parse_policy(text.as_bytes(), Profile::Lenient)
                .ok()
                .map(|p| (id, Arc::new(p.policy))),
            _ => None,
        };
        let last_failure = match (self.failure_at, self.failure_type) {
            (Some(at), Some(t)) => t.parse::<ResultType>().ok().map(|rt| FailureNote {
                at: time(at),
                result_type: rt,
                detail: self.failure_detail.unwrap_or_default(),
            }),
            _ => None,
        };
        Some(CacheEntry {
            domain,
            policy,
            fetched_at: self.fetched_at.map(time),
            expires_at: self.expires_at.map(time),
            refresh_at: self.refresh_at.map(time),
            last_failure,
        })
    }
}

#[derive(Serialize, Deserialize)]
struct StoredCache {
    version: u32,
    entries: Vec<StoredEntry>,
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn time(s: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(s)
}

/// The future a [`PolicyCacheStore`] returns, boxed so the trait is object
/// safe (the crate's other async traits are built the same way, without an
/// `async-trait` dependency).
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, CacheError>> + Send + 'a>>;

/// Where a [`PolicyCache`] keeps its entries between restarts.
///
/// [`FileCacheStore`] (one JSON file in a data directory) is the default;
/// an embedder with its own database implements this. Saves come from
/// the [`MtaSts`](super::MtaSts) service off the delivery path, debounced,
/// and always hold every entry.
///
/// A store shared by several nodes (a database) also answers
/// [`get`](Self::get), takes single entries with [`put`](Self::put) and hands
/// out a per-domain fetch lease with [`try_lease`](Self::try_lease): the
/// service then uses a policy another node fetched instead of fetching it
/// again, and only one node fetches a domain at a time. The defaults are
/// right for a store one process uses alone.
pub trait PolicyCacheStore: Send + Sync + fmt::Debug {
    /// Every stored entry (empty when nothing was stored yet).
    fn load(&self) -> StoreFuture<'_, Vec<CacheEntry>>;
    /// Stores `entries` (every entry the cache holds). A shared store
    /// keeps the newer of its own and the given entry per domain.
    fn save(&self, entries: Vec<CacheEntry>) -> StoreFuture<'_, ()>;
    /// Whether other nodes write to this store too (then the service asks
    /// it before fetching).
    fn is_shared(&self) -> bool {
        false
    }
    /// The stored entry for one domain, as another node may have left it.
    fn get(&self, domain: &DnsName) -> StoreFuture<'_, Option<CacheEntry>> {
        let _ = domain;
        Box::pin(async { Ok(None) })
    }
    /// Stores one entry (right after a fetch), keeping the newer one.
    fn put(&self, entry: CacheEntry) -> StoreFuture<'_, ()> {
        let _ = entry;
        Box::pin(async { Ok(()) })
    }
    /// Asks at `now` to be the one node fetching `domain` until `until`;
    /// `true` when granted (or already held by this node). Storing the
    /// domain's entry with [`put`](Self::put) ends the lease.
    fn try_lease(
        &self,
        domain: &DnsName,
        now: SystemTime,
        until: SystemTime,
    ) -> StoreFuture<'_, bool> {
        let _ = (domain, now, until);
        Box::pin(async { Ok(true) })
    }
}

/// The cache: a map from domain to [`CacheEntry`], optionally backed by a
/// [`PolicyCacheStore`].
#[derive(Debug)]
pub struct PolicyCache {
    entries: RwLock<Table>,
    store: Option<Arc<dyn PolicyCacheStore>>,
    jitter_seed: RandomState,
}

impl Default for PolicyCache {
    fn default() -> Self {
        Self::in_memory()
    }
}

impl PolicyCache {
    /// A cache that lives only in memory.
    pub fn in_memory() -> Self {
        PolicyCache {
            entries: RwLock::default(),
            store: None,
            jitter_seed: RandomState::new(),
        }
    }

    /// A cache persisted in `dir` (created if missing) by a
    /// [`FileCacheStore`], loaded from it if a cache file exists there.
    /// Policies are public data, so the directory keeps whatever mode the
    /// embedder gave it.
    ///
    /// Blocks: it reads the file. Call it at startup (or use
    /// [`PolicyCache::with_store`] from async code).
    pub fn open(dir: &Path) -> Result<Self, CacheError> {
        let store = FileCacheStore::new(dir)?;
        let entries = store.load_blocking()?;
        Ok(Self::from_entries(Arc::new(store), entries))
    }

    /// A cache backed by `store`, loaded from it.
    pub async fn with_store(store: Arc<dyn PolicyCacheStore>) -> Result<Self, CacheError> {
        let entries = store.load().await?;
        Ok(Self::from_entries(store, entries))
    }

    fn from_entries(store: Arc<dyn PolicyCacheStore>, entries: Vec<CacheEntry>) -> Self {
        let mut table = Table {
            slots: HashSet::with_capacity(entries.len()),
            ..Table::default()
        };
        for e in entries {
            table.put(Box::new(Slot::from_entry(e)));
        }
        PolicyCache {
            entries: RwLock::new(table),
            store: Some(store),
            jitter_seed: RandomState::new(),
        }
    }

    /// Whether the cache has a store to save to.
    pub fn is_persistent(&self) -> bool {
        self.store.is_some()
    }

    /// Hands every entry to the store. Does nothing for an in-memory
    /// cache. With the file store the writing runs in `spawn_blocking`.
    pub async fn save(&self) -> Result<(), CacheError> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        store.save(self.list()).await
    }

    /// The store, when the cache has one.
    pub fn backing_store(&self) -> Option<&Arc<dyn PolicyCacheStore>> {
        self.store.as_ref()
    }

    /// Takes an entry from elsewhere (another node's fetch in a shared
    /// store) unless the cache holds one fetched later. Returns the policy
    /// the cache holds for the domain afterwards.
    pub fn adopt(&self, entry: CacheEntry) -> Option<(PolicyId, Arc<MtaStsPolicy>)> {
        let mut table = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        let newer = match table.slots.get(&entry.domain) {
            Some(Keyed(slot)) => match (slot.fetched_at.get(), entry.fetched_at) {
                (Some(mine), Some(theirs)) => theirs > mine,
                (None, _) => true,
                (Some(_), None) => false,
            },
            None => true,
        };
        let domain = entry.domain.clone();
        if newer {
            table.put(Box::new(Slot::from_entry(entry)));
        }
        table
            .slots
            .get(&domain)
            .and_then(|Keyed(slot)| slot.to_entry().policy)
    }

    /// The entry for a domain, expired or not.
    pub fn inspect(&self, domain: &DnsName) -> Option<CacheEntry> {
        self.entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .slots
            .get(domain)
            .map(|Keyed(slot)| slot.to_entry())
    }

    /// The policy for a domain if one is cached and unexpired at `now`.
    pub fn valid_policy(
        &self,
        domain: &DnsName,
        now: SystemTime,
    ) -> Option<(PolicyId, Arc<MtaStsPolicy>)> {
        self.entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .slots
            .get(domain)
            .and_then(|Keyed(e)| e.valid_policy(now))
    }

    /// Every entry, sorted by domain.
    pub fn list(&self) -> Vec<CacheEntry> {
        let mut all: Vec<CacheEntry> = self
            .entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .slots
            .iter()
            .map(|Keyed(slot)| slot.to_entry())
            .collect();
        all.sort_by(|a, b| a.domain.cmp(&b.domain));
        all
    }

    /// How many domains are cached.
    pub fn len(&self) -> usize {
        self.entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .slots
            .len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes a domain; returns whether it was there.
    pub fn evict(&self, domain: &DnsName) -> bool {
        self.entries
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .slots
            .remove(domain)
    }

    /// When to refresh a policy fetched at `now` with `max_age`: after half
    /// its life (at most [`MAX_REFRESH_INTERVAL`]), plus up to a quarter of
    /// that again chosen per domain and per process, so refreshes spread.
    fn refresh_time(&self, domain: &DnsName, now: SystemTime, max_age: u32) -> SystemTime {
        let base = (u64::from(max_age) / 2).min(MAX_REFRESH_INTERVAL.as_secs());
        let spread = base / 4;
        let jitter = if spread == 0 {
            0
        } else {
            self.jitter_seed.hash_one((domain.as_str(), secs(now))) % spread
        };
        now + Duration::from_secs(base + jitter)
    }

    /// Records a successful fetch.
    pub fn store(
        &self,
        domain: &DnsName,
        id: PolicyId,
        policy: MtaStsPolicy,
        now: SystemTime,
    ) -> Arc<MtaStsPolicy> {
        let max_age = policy.max_age();
        let refresh_at = SecStamp::new(Some(self.refresh_time(domain, now, max_age)));
        let mut table = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        // Pooled before the slot is made: a duplicate policy's blocks are
        // freed first, so the slot and its domain name are allocated close
        // together, which keeps the two cache misses of a lookup cheap.
        let policy = table.pool.intern(domain, Arc::new(policy));
        let slot = Slot {
            domain: domain.clone(),
            policy: Some(Arc::clone(&policy)),
            id: InlineId::new(&id),
            fetched_at: Stamp::new(Some(now)),
            expires_at: Stamp::new(Some(now + Duration::from_secs(u64::from(max_age)))),
            refresh_at,
            last_failure: None,
        };
        table.slots.replace(Keyed(Box::new(slot)));
        policy
    }

    /// Records a failed fetch; the last good policy stays.
    pub fn record_failure(
        &self,
        domain: &DnsName,
        result_type: ResultType,
        detail: String,
        now: SystemTime,
    ) {
        let mut map = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        // A set gives no mutable access to its members: take the slot out
        // and put it back (two probes, on the rare failure path only).
        let Keyed(mut slot) = map
            .slots
            .take(domain)
            .unwrap_or_else(|| Keyed(Box::new(Slot::empty(domain.clone()))));
        slot.last_failure = Some(Box::new(FailureNote {
            at: now,
            result_type,
            detail,
        }));
        map.slots.insert(Keyed(slot));
    }

    /// Whether fetches for `domain` are paused after a recent failure.
    pub fn in_backoff(&self, domain: &DnsName, now: SystemTime) -> bool {
        self.entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .slots
            .get(domain)
            .is_some_and(|Keyed(e)| e.in_backoff(now))
    }

    /// Domains whose policy should be refreshed at `now`: the refresh time
    /// has passed, the policy is still held, and no back-off is running.
    /// Entries that expired long ago without use are not refreshed; they
    /// are dropped by [`PolicyCache::purge_expired`].
    pub fn due_for_refresh(&self, now: SystemTime) -> Vec<DnsName> {
        let map = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        let mut due: Vec<DnsName> = map
            .slots
            .iter()
            .filter(|Keyed(e)| e.policy.is_some())
            .filter(|Keyed(e)| e.refresh_at.get().is_some_and(|t| t <= now))
            .filter(|Keyed(e)| !e.in_backoff(now))
            .map(|Keyed(e)| e.domain.clone())
            .collect();
        due.sort();
        due
    }

    /// Drops entries without a usable policy at `now` and without a
    /// running back-off; returns how many went.
    pub fn purge_expired(&self, now: SystemTime) -> usize {
        let mut map = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        let before = map.slots.len();
        map.slots
            .retain(|Keyed(e)| e.is_valid(now) || e.in_backoff(now));
        map.pool.sweep();
        before - map.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mta_sts::policy::PolicyMode;
    use mailtls_core::NamePattern;

    fn d(s: &str) -> DnsName {
        DnsName::parse(s).unwrap()
    }

    fn policy(max_age: u32) -> MtaStsPolicy {
        MtaStsPolicy::new(
            PolicyMode::Enforce,
            vec![NamePattern::parse("mx.example.com").unwrap()],
            max_age,
        )
    }

    #[test]
    fn policies_expire_after_max_age() {
        let c = PolicyCache::in_memory();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000_000);
        c.store(
            &d("example.com"),
            PolicyId::parse("1").unwrap(),
            policy(3600),
            t0,
        );
        assert!(
            c.valid_policy(&d("example.com"), t0 + Duration::from_secs(3599))
                .is_some()
        );
        assert!(
            c.valid_policy(&d("example.com"), t0 + Duration::from_secs(3600))
                .is_none()
        );
        assert_eq!(c.purge_expired(t0 + Duration::from_secs(3600)), 1);
        assert!(c.is_empty());
    }

    #[test]
    fn failures_back_off_for_five_minutes_and_keep_the_policy() {
        let c = PolicyCache::in_memory();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000_000);
        c.store(
            &d("example.com"),
            PolicyId::parse("1").unwrap(),
            policy(86400),
            t0,
        );
        let t1 = t0 + Duration::from_secs(10);
        c.record_failure(
            &d("example.com"),
            ResultType::StsPolicyFetchError,
            "x".into(),
            t1,
        );
        assert!(c.in_backoff(&d("example.com"), t1 + Duration::from_secs(299)));
        assert!(!c.in_backoff(&d("example.com"), t1 + Duration::from_secs(300)));
        assert!(c.valid_policy(&d("example.com"), t1).is_some());
    }

    #[test]
    fn refresh_is_due_after_half_the_life_with_bounded_jitter() {
        let c = PolicyCache::in_memory();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut times = std::collections::HashSet::new();
        for i in 0..50 {
            let name = d(&format!("d{i}.example"));
            c.store(&name, PolicyId::parse("1").unwrap(), policy(40000), t0);
            let at = c.inspect(&name).unwrap().refresh_at.unwrap();
            let secs = at.duration_since(t0).unwrap().as_secs();
            assert!((20000..25000).contains(&secs), "{secs}");
            times.insert(secs);
        }
        assert!(times.len() > 10, "jitter spreads refreshes: {times:?}");
        assert!(
            c.due_for_refresh(t0 + Duration::from_secs(19999))
                .is_empty()
        );
        assert_eq!(c.due_for_refresh(t0 + Duration::from_secs(25000)).len(), 50);
        // A long max_age still refreshes at least daily (+ jitter).
        c.store(
            &d("long.example"),
            PolicyId::parse("1").unwrap(),
            policy(MAX_MAX),
            t0,
        );
        let at = c.inspect(&d("long.example")).unwrap().refresh_at.unwrap();
        assert!(at.duration_since(t0).unwrap() < MAX_REFRESH_INTERVAL * 5 / 4);
    }

    const MAX_MAX: u32 = crate::mta_sts::MAX_MAX_AGE;

    fn provider_policy(mode: PolicyMode) -> MtaStsPolicy {
        MtaStsPolicy::new(
            mode,
            vec![NamePattern::parse("*.mail.protection.outlook.com").unwrap()],
            604800,
        )
    }

    #[test]
    fn a_slot_fits_a_96_byte_heap_block() {
        // The memory budget (README "Numbers") counts on this: 88 bytes plus
        // the allocator's 8-byte header.
        assert!(
            std::mem::size_of::<Slot>() <= 88,
            "{}",
            std::mem::size_of::<Slot>()
        );
    }

    #[test]
    fn inline_ids_round_trip_up_to_32_characters() {
        for text in ["1", "20261124T000000", "abcdefghijklmnopqrstuvwxyz012345"] {
            let id = PolicyId::parse(text).unwrap();
            assert_eq!(InlineId::new(&id).get(), Some(id));
        }
        assert_eq!(InlineId::EMPTY.get(), None);
    }

    #[test]
    fn domains_publishing_the_same_policy_share_one_copy() {
        let c = PolicyCache::in_memory();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let a = c.store(
            &d("a.example"),
            PolicyId::parse("1").unwrap(),
            provider_policy(PolicyMode::Enforce),
            t0,
        );
        let b = c.store(
            &d("b.example"),
            PolicyId::parse("2").unwrap(),
            provider_policy(PolicyMode::Enforce),
            t0,
        );
        let other = c.store(
            &d("c.example"),
            PolicyId::parse("3").unwrap(),
            provider_policy(PolicyMode::Testing),
            t0,
        );
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &other));
        // Each domain keeps its own id with the shared policy.
        let (id_a, pa) = c.valid_policy(&d("a.example"), t0).unwrap();
        let (id_b, pb) = c.valid_policy(&d("b.example"), t0).unwrap();
        assert_eq!((id_a.as_str(), id_b.as_str()), ("1", "2"));
        assert!(Arc::ptr_eq(&pa, &pb));
        // A policy naming only hosts under its own domain is not pooled.
        let own = c.store(
            &d("example.com"),
            PolicyId::parse("4").unwrap(),
            policy(60),
            t0,
        );
        let own2 = c.store(
            &d("example.com"),
            PolicyId::parse("4").unwrap(),
            policy(60),
            t0,
        );
        assert!(!Arc::ptr_eq(&own, &own2));
        let pooled = |c: &PolicyCache| c.entries.read().unwrap().pool.policies.len();
        assert_eq!(pooled(&c), 2);
        // Once no domain uses a pooled policy, a sweep drops it.
        drop((a, b, pa, pb, other));
        assert!(c.evict(&d("c.example")));
        c.purge_expired(t0);
        assert_eq!(pooled(&c), 1);
        assert!(c.evict(&d("a.example")) && c.evict(&d("b.example")));
        c.purge_expired(t0);
        assert_eq!(pooled(&c), 0);
    }

    #[test]
    fn refresh_times_keep_whole_seconds() {
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 999_999_999);
        assert_eq!(
            SecStamp::new(Some(t)).get(),
            Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        );
        assert_eq!(SecStamp::new(None).get(), None);
        let far = UNIX_EPOCH + Duration::from_secs(u64::from(u32::MAX) + 10);
        assert!(SecStamp::new(Some(far)).get().is_some());
    }

    #[test]
    fn persists_and_reloads_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000_000);
        {
            let c = PolicyCache::open(dir.path()).unwrap();
            c.store(
                &d("example.com"),
                PolicyId::parse("abc").unwrap(),
                policy(86400),
                t0,
            );
            c.record_failure(
                &d("broken.example"),
                ResultType::StsWebpkiInvalid,
                "bad cert".into(),
                t0,
            );
            tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap()
                .block_on(c.save())
                .unwrap();
        }
        let c = PolicyCache::open(dir.path()).unwrap();
        assert_eq!(c.len(), 2);
        let (id, p) = c.valid_policy(&d("example.com"), t0).unwrap();
        assert_eq!(id.as_str(), "abc");
        assert_eq!(*p, policy(86400));
        let broken = c.inspect(&d("broken.example")).unwrap();
        assert_eq!(
            broken.last_failure.unwrap().result_type,
            ResultType::StsWebpkiInvalid
        );
        assert!(c.evict(&d("example.com")));
        assert!(!c.evict(&d("example.com")));
        // No temporary files are left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(CACHE_FILE)]);
        std::fs::write(dir.path().join(CACHE_FILE), b"{not json").unwrap();
        assert!(matches!(
            PolicyCache::open(dir.path()),
            Err(CacheError::Format { .. })
        ));
    }
}
