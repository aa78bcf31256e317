//! [`MtaSts`]: resolver + fetcher + cache, answering "which MTA-STS policy
//! applies to this domain now?" by the rules of RFC 8461 §5 and §10.2.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use mailtls_core::DnsName;

use super::cache::{CacheError, PolicyCache, PolicyCacheStore};
use super::fetch::FetchPolicy;
use super::policy::MtaStsPolicy;
use super::record::{PolicyId, RecordError, select_record};
use crate::dns::{DnsError, DnsResolver, QueryName};
use crate::result_type::ResultType;

/// Where a policy in an outcome came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicySource {
    /// The cache, with the id in DNS unchanged (or DNS silent).
    Cache,
    /// Fetched just now.
    Fetched,
    /// The cache, because a refresh (new id, or proactive) failed: RFC 8461
    /// §5.1 keeps using an unexpired policy.
    StaleAfterFailure,
    /// Fetched by another node and taken from the shared cache store
    /// (see [`PolicyCacheStore::is_shared`]).
    Shared,
}

/// Why no policy applies.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NoPolicyReason {
    /// No `_mta-sts` TXT record (NXDOMAIN or no data).
    NoRecord,
    /// TXT records exist but none, or more than one, is a valid `v=STSv1`
    /// record (RFC 8461 §3.1: assume no policy).
    InvalidRecord(RecordError),
    /// The TXT lookup failed (SERVFAIL, timeout).
    DnsFailure(DnsError),
}

/// The answer of [`MtaSts::policy_for`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum PolicyOutcome {
    /// The domain is on the exception list: MTA-STS is not applied.
    Exempt,
    /// The domain has no policy: deliver as without MTA-STS.
    NoPolicy(NoPolicyReason),
    /// A policy applies.
    Policy {
        /// Its id.
        id: PolicyId,
        /// The policy.
        policy: Arc<MtaStsPolicy>,
        /// Where it came from.
        source: PolicySource,
    },
    /// The domain publishes a policy record but the policy could not be
    /// had and none is cached. RFC 8461 §5 has the sender deliver as
    /// without a policy; TLS-RPT counts the failure under `result_type`.
    Failed {
        /// The TLS-RPT classification.
        result_type: ResultType,
        /// What went wrong.
        detail: String,
    },
}

impl PolicyOutcome {
    /// The policy, if one applies.
    pub fn policy(&self) -> Option<&Arc<MtaStsPolicy>> {
        match self {
            PolicyOutcome::Policy { policy, .. } => Some(policy),
            _ => None,
        }
    }
}

/// How long after a change the cache is saved: changes within that time
/// go out in one save.
pub const DEFAULT_SAVE_DELAY: Duration = Duration::from_secs(1);

/// With a shared cache store: how long one node may take to fetch a domain's
/// policy before another may try (longer than a fetch can take).
pub const SHARED_FETCH_LEASE: Duration = Duration::from_secs(120);

/// The MTA-STS service: looks up `_mta-sts` records, fetches and caches
/// policies, honours the exception list.
///
/// A persistent cache is saved off the delivery path: a change schedules
/// one save as a tokio task, [`DEFAULT_SAVE_DELAY`] later, so a burst of
/// fetches costs one write; [`MtaSts::save`] saves at once (at shutdown).
pub struct MtaSts {
    dns: Arc<dyn DnsResolver>,
    fetcher: Arc<dyn FetchPolicy>,
    cache: Arc<PolicyCache>,
    exceptions: RwLock<HashSet<DnsName>>,
    save_delay: Duration,
    save_scheduled: Arc<AtomicBool>,
}

impl std::fmt::Debug for MtaSts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MtaSts")
            .field("cache_entries", &self.cache.len())
            .field("exceptions", &self.exceptions())
            .finish_non_exhaustive()
    }
}

impl MtaSts {
    /// Ties a resolver, a fetcher (the HTTPS
    /// `PolicyFetcher` of feature `fetch`, or any
    /// [`FetchPolicy`]) and a cache together.
    pub fn new(
        dns: Arc<dyn DnsResolver>,
        fetcher: impl FetchPolicy + 'static,
        cache: PolicyCache,
    ) -> Self {
        MtaSts {
            dns,
            fetcher: Arc::new(fetcher),
            cache: Arc::new(cache),
            exceptions: RwLock::default(),
            save_delay: DEFAULT_SAVE_DELAY,
            save_scheduled: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Sets how long after a change the cache is saved (default
    /// [`DEFAULT_SAVE_DELAY`]).
    pub fn with_save_delay(mut self, delay: Duration) -> Self {
        self.save_delay = delay;
        self
    }

    /// Schedules one save of a persistent cache, unless one is pending.
    /// Outside a tokio runtime nothing is scheduled: [`MtaSts::save`] is
    /// then the embedder's to call.
    fn schedule_save(&self) {
        if !self.cache.is_persistent() || self.save_scheduled.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.save_scheduled.store(false, Ordering::Release);
            return;
        };
        let cache = Arc::clone(&self.cache);
        let scheduled = Arc::clone(&self.save_scheduled);
        let delay = self.save_delay;
        runtime.spawn(async move {
            tokio::time::sleep(delay).await;
            // Cleared before the snapshot: a change made while this save
            // runs schedules the next one.
            scheduled.store(false, Ordering::Release);
            // Best effort: a full disk must not stop delivery, and the
            // in-memory cache is still right; the next change tries again.
            let _ = cache.save().await;
        });
    }

    /// The cache (to list, inspect, evict).
    pub fn cache(&self) -> &PolicyCache {
        &self.cache
    }

    /// Adds a domain to the exception list (MTA-STS is not applied to it).
    pub fn add_exception(&self, domain: DnsName) {
        self.exceptions
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(domain);
    }

    /// Removes a domain from the exception list.
    pub fn remove_exception(&self, domain: &DnsName) -> bool {
        self.exceptions
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(domain)
    }

    /// The exception list, sorted.
    pub fn exceptions(&self) -> Vec<DnsName> {
        let mut v: Vec<DnsName> = self
            .exceptions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect();
        v.sort();
        v
    }

    /// The policy for `domain` now. Also what RFC 8461 §5.1 asks before a
    /// permanent failure on an unlisted MX: the TXT id is checked on every
    /// call, and a changed id fetches the new policy.
    pub async fn policy_for(&self, domain: &DnsName) -> PolicyOutcome {
        self.policy_for_at(domain, SystemTime::now()).await
    }

    /// [`policy_for`](Self::policy_for) at a given time (tests, replays).
    pub async fn policy_for_at(&self, domain: &DnsName, now: SystemTime) -> PolicyOutcome {
        self.resolve(domain, now, false).await
    }

    /// Refreshes one domain: fetches its policy again even when the id is
    /// unchanged, so the cached copy gets a new lifetime.
    pub async fn refresh_at(&self, domain: &DnsName, now: SystemTime) -> PolicyOutcome {
        self.resolve(domain, now, true).await
    }

    /// Refreshes every cache entry that is due (see
    /// [`PolicyCache::due_for_refresh`]); returns what each gave.
    pub async fn refresh_due(&self, now: SystemTime) -> Vec<(DnsName, PolicyOutcome)> {
        let mut out = Vec::new();
        for domain in self.cache.due_for_refresh(now) {
            let outcome = self.refresh_at(&domain, now).await;
            out.push((domain, outcome));
        }
        out
    }

    /// Saves the cache to its store now (if it has one), for example at
    /// shutdown.
    pub async fn save(&self) -> Result<(), CacheError> {
        self.cache.save().await
    }

    async fn resolve(&self, domain: &DnsName, now: SystemTime, force: bool) -> PolicyOutcome {
        if self
            .exceptions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(domain)
        {
            return PolicyOutcome::Exempt;
        }
        let cached = self.cache.valid_policy(domain, now);
        let from_cache = |source| {
            cached
                .clone()
                .map(|(id, policy)| PolicyOutcome::Policy { id, policy, source })
        };
        let id = match self.current_id(domain).await {
            Ok(id) => id,
            // RFC 8461 §5.1: with the record gone or DNS failing, an
            // unexpired cached policy is still used.
            Err(reason) => {
                return from_cache(PolicySource::Cache).unwrap_or(PolicyOutcome::NoPolicy(reason));
            }
        };
        if !force && cached.as_ref().is_some_and(|(cid, _)| *cid == id) {
            return from_cache(PolicySource::Cache)
                .unwrap_or(PolicyOutcome::NoPolicy(NoPolicyReason::NoRecord));
        }
        if let Some(entry) = self.cache.inspect(domain)
            && entry.in_backoff(now)
        {
            let failure = entry.last_failure.map(|f| (f.result_type, f.detail));
            return from_cache(PolicySource::StaleAfterFailure).unwrap_or_else(|| {
                let (result_type, detail) =
                    failure.unwrap_or((ResultType::StsPolicyFetchError, "back-off".to_owned()));
                PolicyOutcome::Failed {
                    result_type,
                    detail: format!("{detail} (retry after back-off)"),
                }
            });
        }
        let shared = self
            .cache
            .backing_store()
            .filter(|s| s.is_shared())
            .cloned();
        if let Some(store) = &shared {
            if let Some((id, policy)) = self.adopt_shared(store, domain, &id, now, force).await {
                return PolicyOutcome::Policy {
                    id,
                    policy,
                    source: PolicySource::Shared,
                };
            }
            // Another node is fetching this domain: keep using what we hold
            // rather than fetch it again (with nothing held, fetch anyway:
            // delivery must not wait on another node).
            let until = now + SHARED_FETCH_LEASE;
            if let Ok(false) = store.try_lease(domain, now, until).await
                && let Some(outcome) = from_cache(PolicySource::Cache)
            {
                return outcome;
            }
        }
        let outcome = match self.fetcher.fetch_policy(domain).await {
            Ok(parsed) => {
                let policy = self.cache.store(domain, id.clone(), parsed.policy, now);
                if let Some(store) = &shared
                    && let Some(entry) = self.cache.inspect(domain)
                {
                    // Best effort: the other nodes fetch for themselves if
                    // the store is away; this node's delivery goes on.
                    let _ = store.put(entry).await;
                }
                PolicyOutcome::Policy {
                    id,
                    policy,
                    source: PolicySource::Fetched,
                }
            }
            Err(e) => {
                let result_type = e.result_type();
                let detail = e.to_string();
                self.cache
                    .record_failure(domain, result_type, detail.clone(), now);
                from_cache(PolicySource::StaleAfterFailure).unwrap_or(PolicyOutcome::Failed {
                    result_type,
                    detail,
                })
            }
        };
        self.schedule_save();
        outcome
    }

    /// A policy another node fetched under the id DNS shows now (for a
    /// forced refresh: one not yet due for refresh), taken into the
    /// in-process cache.
    async fn adopt_shared(
        &self,
        store: &Arc<dyn PolicyCacheStore>,
        domain: &DnsName,
        id: &PolicyId,
        now: SystemTime,
        force: bool,
    ) -> Option<(PolicyId, Arc<MtaStsPolicy>)> {
        let entry = store.get(domain).await.ok().flatten()?;
        let usable = entry.valid_policy(now).is_some_and(|(sid, _)| sid == id)
            && (!force || entry.refresh_at.is_some_and(|r| r > now));
        if !usable {
            return None;
        }
        self.cache.adopt(entry).filter(|(held, _)| held == id)
    }

    async fn current_id(&self, domain: &DnsName) -> Result<PolicyId, NoPolicyReason> {
        let name = QueryName::with_service(&["_mta-sts"], domain)
            .map_err(|_| NoPolicyReason::InvalidRecord(RecordError::NoStsRecord))?;
        match self.dns.txt(&name).await {
            Ok(answer) => select_record(&answer.records)
                .map(|r| r.id)
                .map_err(|e| match e {
                    RecordError::NoStsRecord => NoPolicyReason::NoRecord,
                    other => NoPolicyReason::InvalidRecord(other),
                }),
            Err(e) if e.is_negative_answer() => Err(NoPolicyReason::NoRecord),
            Err(e) => Err(NoPolicyReason::DnsFailure(e)),
        }
    }
}
