//! The answer cache of [`super::HickoryResolver`].
//!
//! Hickory 0.25 has a cache of its own, but it sits above its DNSSEC
//! validator and does little for us: it holds 32 entries by default, it
//! refuses to cache an NXDOMAIN when validating (the "valid NSEC" flag is
//! hard-wired false), the DNSKEY/DS queries the validator makes go straight
//! to the name servers, and the SOA walk that gives a negative answer its
//! DNSSEC status (`zone_status`) asks for names that do not exist again
//! every time. So the finished result of one lookup (records or
//! NXDOMAIN/no data, with its [`DnssecStatus`]) is cached here, keyed by
//! name and type:
//!
//! - positive answers for the smallest TTL of the RRsets used (CNAMEs
//!   included), capped by [`DnsCacheConfig::max_positive_ttl`];
//! - negative answers for the RFC 2308 §5 negative TTL (the smaller of the
//!   SOA's TTL and its MINIMUM field), capped by
//!   [`DnsCacheConfig::max_negative_ttl`]; a negative answer without an SOA
//!   is not cached (RFC 2308 §5);
//! - [`DnssecStatus::Bogus`] results, server failures and timeouts are not
//!   cached: a bogus verdict is often transient (a key rollover seen half
//!   way, a DNSKEY fetch that failed, a spoofed packet) and caching it would
//!   turn one bad packet into refused deliveries for the whole TTL, which
//!   an attacker would like; asking again costs only queries.
//!
//! The status is stored with the entry, so an authentic answer comes back
//! authentic. The cache is bounded: when full, the least recently used of a
//! few randomly sampled entries (an expired one first) makes room.

use std::any::Any;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{Answer, DnsError, DnssecStatus, QueryName, RecordType};

/// How [`super::HickoryResolver`] caches answers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DnsCacheConfig {
    /// Whether answers are cached at all. Default on.
    pub enabled: bool,
    /// The most entries (one per name and record type) kept; 0 disables the
    /// cache. Default 10,000.
    pub max_entries: usize,
    /// The longest a positive answer is kept, whatever its TTL. Default one
    /// day.
    pub max_positive_ttl: Duration,
    /// The longest an NXDOMAIN or no-data answer is kept, whatever its SOA
    /// says. Default one hour (RFC 2308 §5 suggests 1 to 3 hours at most).
    pub max_negative_ttl: Duration,
}

impl Default for DnsCacheConfig {
    fn default() -> Self {
        DnsCacheConfig {
            enabled: true,
            max_entries: 10_000,
            max_positive_ttl: Duration::from_secs(86_400),
            max_negative_ttl: Duration::from_secs(3_600),
        }
    }
}

impl DnsCacheConfig {
    /// A configuration that caches nothing.
    pub fn disabled() -> Self {
        DnsCacheConfig {
            enabled: false,
            ..Self::default()
        }
    }
}

/// Counters of a resolver's answer cache (see
/// [`super::HickoryResolver::cache_stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DnsCacheStats {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that had to ask the name servers.
    pub misses: u64,
    /// Entries dropped to make room (expired ones replaced do not count).
    pub evictions: u64,
    /// Entries held now (some may have expired and not yet been dropped).
    pub entries: usize,
}

type Key = (QueryName, RecordType);

struct Entry {
    key: Key,
    /// A `Result<Answer<T>, DnsError>` for the `T` of the record type.
    value: Arc<dyn Any + Send + Sync>,
    stored: Instant,
    expires: Instant,
    last_used: u64,
}

#[derive(Default)]
struct Slots {
    index: HashMap<Key, usize, foldhash::fast::RandomState>,
    entries: Vec<Entry>,
    clock: u64,
    rng: u64,
}

impl Slots {
    fn next_random(&mut self) -> u64 {
        // xorshift64: eviction only needs spread, not secrecy.
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }

    fn remove_at(&mut self, at: usize) {
        let gone = self.entries.swap_remove(at);
        self.index.remove(&gone.key);
        if let Some(moved) = self.entries.get(at) {
            self.index.insert(moved.key.clone(), at);
        }
    }
}

/// How many entries eviction looks at.
const SAMPLE: usize = 5;

/// A bounded, TTL-respecting cache of lookup results.
pub(super) struct DnsCache {
    config: DnsCacheConfig,
    slots: Mutex<Slots>,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
}

impl DnsCache {
    pub(super) fn new(config: DnsCacheConfig) -> Self {
        let seed = foldhash::fast::RandomState::default()
            .build_hasher()
            .finish();
        DnsCache {
            config,
            slots: Mutex::new(Slots {
                // xorshift must not start at zero.
                rng: seed | 1,
                ..Slots::default()
            }),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    fn active(&self) -> bool {
        self.config.enabled && self.config.max_entries > 0
    }

    fn slots(&self) -> MutexGuard<'_, Slots> {
        // A panic while holding the lock cannot leave the map half-updated
        // in a way that matters for a cache: keep using it.
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached result for a name and type, its TTL lowered by the time
    /// spent in the cache.
    pub(super) fn get<T: Clone + Send + Sync + 'static>(
        &self,
        name: &QueryName,
        rtype: RecordType,
    ) -> Option<Result<Answer<T>, DnsError>> {
        if !self.active() {
            return None;
        }
        let now = Instant::now();
        let mut slots = self.slots();
        let key = (name.clone(), rtype);
        let found = match slots.index.get(&key).copied() {
            Some(at) if slots.entries[at].expires > now => {
                slots.clock += 1;
                let clock = slots.clock;
                let entry = &mut slots.entries[at];
                entry.last_used = clock;
                let age = u32::try_from(now.duration_since(entry.stored).as_secs()).ok();
                entry
                    .value
                    .downcast_ref::<Result<Answer<T>, DnsError>>()
                    .cloned()
                    .map(|mut r| {
                        if let Ok(answer) = &mut r {
                            answer.ttl = age.map_or(0, |a| answer.ttl.saturating_sub(a));
                        }
                        r
                    })
            }
            Some(at) => {
                slots.remove_at(at);
                None
            }
            None => None,
        };
        drop(slots);
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Stores a result if it may be cached; `negative_ttl` is the RFC 2308
    /// negative TTL of an NXDOMAIN or no-data answer (`None`: no SOA).
    pub(super) fn put<T: Clone + Send + Sync + 'static>(
        &self,
        name: &QueryName,
        rtype: RecordType,
        result: &Result<Answer<T>, DnsError>,
        negative_ttl: Option<u32>,
    ) {
        if !self.active() {
            return;
        }
        let Some(ttl) = cache_ttl(&self.config, result, negative_ttl) else {
            return;
        };
        let now = Instant::now();
        let entry = Entry {
            key: (name.clone(), rtype),
            value: Arc::new(result.clone()),
            stored: now,
            expires: now + ttl,
            last_used: 0,
        };
        let mut slots = self.slots();
        slots.clock += 1;
        let entry = Entry {
            last_used: slots.clock,
            ..entry
        };
        if let Some(at) = slots.index.get(&entry.key).copied() {
            slots.entries[at] = entry;
            return;
        }
        if slots.entries.len() >= self.config.max_entries {
            let victim = self.pick_victim(&mut slots, now);
            let expired = slots.entries[victim].expires <= now;
            slots.remove_at(victim);
            if !expired {
                self.evictions.fetch_add(1, Ordering::Relaxed);
            }
        }
        let at = slots.entries.len();
        slots.index.insert(entry.key.clone(), at);
        slots.entries.push(entry);
    }

    /// An expired entry among a few neighbouring ones from a random start,
    /// else the least recently used of them (neighbours rather than
    /// independent picks, so the sample never repeats one entry). Only
    /// called with at least one entry.
    fn pick_victim(&self, slots: &mut Slots, now: Instant) -> usize {
        let len = slots.entries.len();
        let start = (slots.next_random() % len as u64) as usize;
        let mut best = start;
        for step in 1..SAMPLE.min(len) {
            if slots.entries[best].expires <= now {
                break;
            }
            let other = (start + step) % len;
            let (b, o) = (&slots.entries[best], &slots.entries[other]);
            if o.expires <= now || o.last_used < b.last_used {
                best = other;
            }
        }
        best
    }

    pub(super) fn clear(&self) {
        let mut slots = self.slots();
        slots.index.clear();
        slots.entries.clear();
    }

    pub(super) fn stats(&self) -> DnsCacheStats {
        DnsCacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            entries: self.slots().entries.len(),
        }
    }
}

/// How long a result may be cached, `None` for not at all.
fn cache_ttl<T>(
    config: &DnsCacheConfig,
    result: &Result<Answer<T>, DnsError>,
    negative_ttl: Option<u32>,
) -> Option<Duration> {
    let (ttl, cap) = match result {
        Ok(answer) if answer.dnssec != DnssecStatus::Bogus => (answer.ttl, config.max_positive_ttl),
        Err(DnsError::NxDomain { dnssec, .. } | DnsError::NoData { dnssec, .. })
            if *dnssec != DnssecStatus::Bogus =>
        {
            (negative_ttl?, config.max_negative_ttl)
        }
        _ => return None,
    };
    let ttl = Duration::from_secs(u64::from(ttl)).min(cap);
    (!ttl.is_zero()).then_some(ttl)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn name(s: &str) -> QueryName {
        QueryName::parse(s).unwrap()
    }

    fn answer(q: &str, ttl: u32, dnssec: DnssecStatus) -> Result<Answer<u8>, DnsError> {
        Ok(Answer {
            query: name(q),
            canonical_name: name(q),
            cname_chain: Vec::new(),
            records: vec![7],
            dnssec,
            ttl,
        })
    }

    fn small(max_entries: usize) -> DnsCache {
        DnsCache::new(DnsCacheConfig {
            max_entries,
            ..DnsCacheConfig::default()
        })
    }

    #[test]
    fn positive_answer_comes_back_with_its_status() {
        let cache = small(10);
        let q = name("a.example");
        assert!(cache.get::<u8>(&q, RecordType::A).is_none());
        cache.put(
            &q,
            RecordType::A,
            &answer("a.example", 300, DnssecStatus::Authentic),
            None,
        );
        let got = cache.get::<u8>(&q, RecordType::A).unwrap().unwrap();
        assert_eq!(got.dnssec, DnssecStatus::Authentic);
        assert_eq!(got.records, vec![7]);
        assert!(got.ttl <= 300 && got.ttl >= 299);
        // Another type at the same name is another entry.
        assert!(cache.get::<u8>(&q, RecordType::Aaaa).is_none());
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses, stats.entries), (1, 2, 1));
    }

    #[test]
    fn bogus_zero_ttl_and_failures_are_not_cached() {
        let cache = small(10);
        let q = name("b.example");
        cache.put(
            &q,
            RecordType::A,
            &answer("b.example", 300, DnssecStatus::Bogus),
            None,
        );
        cache.put(
            &q,
            RecordType::Aaaa,
            &answer("b.example", 0, DnssecStatus::Insecure),
            None,
        );
        let fail: Result<Answer<u8>, DnsError> = Err(DnsError::Timeout {
            name: q.clone(),
            rtype: RecordType::Mx,
        });
        cache.put(&q, RecordType::Mx, &fail, Some(300));
        let bogus_nx: Result<Answer<u8>, DnsError> = Err(DnsError::NxDomain {
            name: q.clone(),
            dnssec: DnssecStatus::Bogus,
        });
        cache.put(&q, RecordType::Txt, &bogus_nx, Some(300));
        // RFC 2308 §5: no SOA, no negative caching.
        let nx: Result<Answer<u8>, DnsError> = Err(DnsError::NxDomain {
            name: q.clone(),
            dnssec: DnssecStatus::Insecure,
        });
        cache.put(&q, RecordType::Tlsa, &nx, None);
        assert_eq!(cache.stats().entries, 0);
        cache.put(&q, RecordType::Tlsa, &nx, Some(60));
        assert_eq!(cache.get::<u8>(&q, RecordType::Tlsa), Some(nx));
    }

    #[test]
    fn caps_apply() {
        let config = DnsCacheConfig {
            max_positive_ttl: Duration::from_secs(10),
            max_negative_ttl: Duration::from_secs(5),
            ..DnsCacheConfig::default()
        };
        let pos = answer("c.example", 1_000, DnssecStatus::Insecure);
        assert_eq!(
            cache_ttl(&config, &pos, None),
            Some(Duration::from_secs(10))
        );
        let neg: Result<Answer<u8>, DnsError> = Err(DnsError::NoData {
            name: name("c.example"),
            rtype: RecordType::Txt,
            dnssec: DnssecStatus::Authentic,
        });
        assert_eq!(
            cache_ttl(&config, &neg, Some(900)),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            cache_ttl(&config, &neg, Some(3)),
            Some(Duration::from_secs(3))
        );
    }

    #[test]
    fn stays_bounded_and_keeps_recently_used() {
        let cache = small(8);
        let hot = name("hot.example");
        cache.put(
            &hot,
            RecordType::A,
            &answer("hot.example", 300, DnssecStatus::Insecure),
            None,
        );
        for i in 0..200 {
            let q = format!("n{i}.example");
            cache.put(
                &name(&q),
                RecordType::A,
                &answer(&q, 300, DnssecStatus::Insecure),
                None,
            );
            // Touching it keeps it among the most recently used.
            assert!(cache.get::<u8>(&hot, RecordType::A).is_some(), "round {i}");
        }
        let stats = cache.stats();
        assert_eq!(stats.entries, 8);
        assert_eq!(stats.evictions, 193);
        cache.clear();
        assert_eq!(cache.stats().entries, 0);
        assert!(cache.get::<u8>(&hot, RecordType::A).is_none());
    }

    #[test]
    fn disabled_caches_nothing() {
        let cache = DnsCache::new(DnsCacheConfig::disabled());
        let q = name("d.example");
        cache.put(
            &q,
            RecordType::A,
            &answer("d.example", 300, DnssecStatus::Insecure),
            None,
        );
        assert!(cache.get::<u8>(&q, RecordType::A).is_none());
        assert_eq!(cache.stats().entries, 0);
    }
}
