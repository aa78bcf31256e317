//! The MTA-STS cache store: the service saves off the delivery path,
//! debounced, through any `PolicyCacheStore`; the file store reloads what
//! it saved.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailtls_core::DnsName;
use mailtls_policy::dns::StaticResolver;
use mailtls_policy::mta_sts::{
    CacheEntry, MtaSts, PolicyCache, PolicyCacheStore, PolicyOutcome, PolicySource, StaticPolicies,
    StoreFuture,
};

const POLICY: &str = "version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\n";

fn world(domains: &[&str]) -> (Arc<StaticResolver>, StaticPolicies) {
    let mut dns = StaticResolver::builder();
    let mut files = StaticPolicies::new();
    for d in domains {
        dns = dns.txt(&format!("_mta-sts.{d}"), "v=STSv1; id=1");
        files = files.with_policy(DnsName::parse(d).unwrap(), POLICY);
    }
    (Arc::new(dns.build().unwrap()), files)
}

/// Keeps every save in memory.
#[derive(Debug, Default)]
struct Recorder {
    saves: Mutex<Vec<Vec<CacheEntry>>>,
}

impl PolicyCacheStore for Recorder {
    fn load(&self) -> StoreFuture<'_, Vec<CacheEntry>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn save(&self, entries: Vec<CacheEntry>) -> StoreFuture<'_, ()> {
        self.saves.lock().unwrap().push(entries);
        Box::pin(async { Ok(()) })
    }
}

/// Polls `f` until it holds, for at most five seconds.
async fn eventually(mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not reached"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_burst_of_fetches_is_saved_once_off_the_delivery_path() {
    let domains = ["a.example", "b.example", "c.example"];
    let (dns, files) = world(&domains);
    let store = Arc::new(Recorder::default());
    let cache = PolicyCache::with_store(store.clone()).await.unwrap();
    let sts = MtaSts::new(dns, files, cache).with_save_delay(Duration::from_millis(200));
    for d in domains {
        let outcome = sts.policy_for(&DnsName::parse(d).unwrap()).await;
        assert!(matches!(
            outcome,
            PolicyOutcome::Policy {
                source: PolicySource::Fetched,
                ..
            }
        ));
    }
    // Nothing was written on the delivery path itself.
    assert!(store.saves.lock().unwrap().is_empty());
    eventually(|| !store.saves.lock().unwrap().is_empty()).await;
    let saves = store.saves.lock().unwrap().clone();
    assert_eq!(saves.len(), 1, "one save for the burst");
    assert_eq!(saves[0].len(), 3);
}

#[tokio::test]
async fn the_file_store_reloads_what_the_service_saved() {
    let dir = tempfile::tempdir().unwrap();
    let (dns, files) = world(&["example.com"]);
    let domain = DnsName::parse("example.com").unwrap();
    {
        let cache = PolicyCache::open(dir.path()).unwrap();
        let sts = MtaSts::new(dns.clone(), files, cache).with_save_delay(Duration::ZERO);
        sts.policy_for(&domain).await;
        let file = dir.path().join(mailtls_policy::mta_sts::CACHE_FILE);
        eventually(|| file.exists()).await;
        // An explicit save (shutdown) works too.
        sts.save().await.unwrap();
    }
    // No policy files any more: only the reloaded cache can answer.
    let cache = PolicyCache::open(dir.path()).unwrap();
    let sts = MtaSts::new(dns, StaticPolicies::new(), cache);
    let PolicyOutcome::Policy { policy, source, .. } = sts.policy_for(&domain).await else {
        panic!("the saved policy should have been reloaded");
    };
    assert_eq!(source, PolicySource::Cache);
    assert_eq!(policy.raw(), POLICY);
}

/// Issue 14: the service and the cache reload read the record and the
/// policy with the RFC 8461 §3.1 selector and the §3.2 parser.
#[tokio::test]
async fn service_and_cache_reload_use_the_rfc_selector_and_parser() {
    // `Mode: none` before the exact key and `MX:` beside the exact `mx`
    // never weaken the policy (RFC 8461 §3.2: keys are case-sensitive).
    const TRICKY: &str = "version: STSv1\nMode: none\nmode: enforce\nMX: evil.example\nmx: mx.example.com\nmax_age: 86400\n";
    let domain = DnsName::parse("example.com").unwrap();
    let dns = Arc::new(
        StaticResolver::builder()
            .txt("_mta-sts.example.com", "v=STSv1; id=1")
            // RFC 8461 §3.1: not an MTA-STS record, so not a second one.
            .txt("_mta-sts.example.com", "v=STSv10; id=2")
            .build()
            .unwrap(),
    );
    let files = StaticPolicies::new().with_policy(domain.clone(), TRICKY);
    let check = |o: &PolicyOutcome| {
        let PolicyOutcome::Policy { policy, .. } = o else {
            panic!("expected a policy, got {o:?}");
        };
        assert_eq!(policy.mode(), mailtls_policy::mta_sts::PolicyMode::Enforce);
        let mx: Vec<String> = policy.mx().iter().map(ToString::to_string).collect();
        assert_eq!(mx, vec!["mx.example.com"]);
    };
    let dir = tempfile::tempdir().unwrap();
    {
        let cache = PolicyCache::open(dir.path()).unwrap();
        let sts = MtaSts::new(dns.clone(), files, cache).with_save_delay(Duration::ZERO);
        check(&sts.policy_for(&domain).await);
        sts.save().await.unwrap();
    }
    let cache = PolicyCache::open(dir.path()).unwrap();
    let sts = MtaSts::new(dns, StaticPolicies::new(), cache);
    let reloaded = sts.policy_for(&domain).await;
    let PolicyOutcome::Policy { source, .. } = &reloaded else {
        panic!("the saved policy should have been reloaded");
    };
    assert_eq!(*source, PolicySource::Cache);
    check(&reloaded);
}
