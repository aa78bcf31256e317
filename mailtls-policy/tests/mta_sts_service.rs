//! The MTA-STS service end to end: scripted DNS, a real HTTPS policy host on
//! loopback, the cache with its time rules (RFC 8461 §5.1, §10.2) and its
//! data directory.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod mta_sts_common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mailtls_core::DnsName;
use mailtls_policy::dns::{RecordType, ScriptedFailure, StaticResolver};
use mailtls_policy::mta_sts::{
    FetcherConfig, MtaSts, NoPolicyReason, PolicyCache, PolicyFetcher, PolicyMode, PolicyOutcome,
    PolicySource,
};
use mailtls_policy::result_type::ResultType;
use mta_sts_common::{GOOD_POLICY, PolicyHost, Reply, point_at_loopback};

const TXT: &str = "_mta-sts.good.example";

fn d(s: &str) -> DnsName {
    DnsName::parse(s).unwrap()
}

fn service(host: &PolicyHost, dns: Arc<StaticResolver>, cache: PolicyCache) -> MtaSts {
    let mut config = FetcherConfig::new(host.roots());
    config.port = host.addr.port();
    config.timeout = Duration::from_secs(5);
    let fetcher = PolicyFetcher::new(
        config,
        dns.clone(),
        mailtls_policy::default_crypto_provider(),
    )
    .unwrap();
    MtaSts::new(dns, fetcher, cache)
}

fn world() -> Arc<StaticResolver> {
    Arc::new(
        point_at_loopback(StaticResolver::builder(), &["good.example", "down.example"])
            .txt(TXT, "v=STSv1; id=one")
            .txt("_mta-sts.down.example", "v=STSv1; id=x")
            .txt("_mta-sts.two.example", "v=STSv1; id=a")
            .txt("_mta-sts.two.example", "v=STSv1; id=b")
            .build()
            .unwrap(),
    )
}

fn source(o: &PolicyOutcome) -> PolicySource {
    match o {
        PolicyOutcome::Policy { source, .. } => *source,
        other => panic!("expected a policy, got {other:?}"),
    }
}

#[tokio::test]
async fn caches_until_the_id_changes_and_serves_the_last_good_policy() {
    let host = PolicyHost::start(&["good.example", "down.example"]).await;
    host.set("good.example", Reply::policy(GOOD_POLICY));
    let dns = world();
    let sts = service(&host, dns.clone(), PolicyCache::in_memory());
    let t0 = SystemTime::now();
    let good = d("good.example");

    let first = sts.policy_for_at(&good, t0).await;
    assert_eq!(source(&first), PolicySource::Fetched);
    assert_eq!(first.policy().unwrap().mode(), PolicyMode::Enforce);
    let second = sts.policy_for_at(&good, t0 + Duration::from_secs(60)).await;
    assert_eq!(source(&second), PolicySource::Cache);
    assert_eq!(host.hits(), 1, "same id: no fetch");

    // RFC 8461 §5.1: a new id in DNS triggers a fetch.
    host.set(
        "good.example",
        Reply::policy("version: STSv1\nmode: testing\nmx: mx1.good.example\nmax_age: 86400\n"),
    );
    dns.edit(|b| b.remove(TXT, RecordType::Txt).txt(TXT, "v=STSv1; id=two"))
        .unwrap();
    let third = sts
        .policy_for_at(&good, t0 + Duration::from_secs(120))
        .await;
    assert_eq!(source(&third), PolicySource::Fetched);
    assert_eq!(third.policy().unwrap().mode(), PolicyMode::Testing);
    assert_eq!(host.hits(), 2);

    // The host breaks and the id changes: the last good policy is served
    // and fetches back off for five minutes.
    host.set(
        "good.example",
        Reply {
            status: 500,
            ..Reply::policy("oops")
        },
    );
    dns.edit(|b| b.remove(TXT, RecordType::Txt).txt(TXT, "v=STSv1; id=three"))
        .unwrap();
    let t1 = t0 + Duration::from_secs(180);
    let fourth = sts.policy_for_at(&good, t1).await;
    assert_eq!(source(&fourth), PolicySource::StaleAfterFailure);
    assert_eq!(fourth.policy().unwrap().mode(), PolicyMode::Testing);
    assert_eq!(host.hits(), 3);
    let in_backoff = sts
        .policy_for_at(&good, t1 + Duration::from_secs(299))
        .await;
    assert_eq!(source(&in_backoff), PolicySource::StaleAfterFailure);
    assert_eq!(host.hits(), 3, "no fetch during the back-off");
    let entry = sts.cache().inspect(&good).unwrap();
    assert_eq!(
        entry.last_failure.unwrap().result_type,
        ResultType::StsPolicyFetchError
    );
    sts.policy_for_at(&good, t1 + Duration::from_secs(301))
        .await;
    assert_eq!(host.hits(), 4, "fetched again after the back-off");

    // DNS fails: the cached policy is still used (RFC 8461 §5.1).
    dns.edit(|b| b.fail(TXT, RecordType::Txt, ScriptedFailure::ServerFailure))
        .unwrap();
    let fifth = sts
        .policy_for_at(&good, t1 + Duration::from_secs(400))
        .await;
    assert_eq!(source(&fifth), PolicySource::Cache);
    // ... until max_age runs out.
    let expired = sts
        .policy_for_at(&good, t0 + Duration::from_secs(86400 + 121))
        .await;
    assert!(
        matches!(
            expired,
            PolicyOutcome::NoPolicy(NoPolicyReason::DnsFailure(_))
        ),
        "{expired:?}"
    );
}

#[tokio::test]
async fn no_record_failures_and_exceptions() {
    let host = PolicyHost::start(&["good.example", "down.example"]).await;
    host.set("good.example", Reply::policy(GOOD_POLICY));
    let sts = service(&host, world(), PolicyCache::in_memory());
    let now = SystemTime::now();

    assert_eq!(
        sts.policy_for_at(&d("none.example"), now).await,
        PolicyOutcome::NoPolicy(NoPolicyReason::NoRecord)
    );
    // RFC 8461 §3.1: two STSv1 records mean no policy.
    assert!(matches!(
        sts.policy_for_at(&d("two.example"), now).await,
        PolicyOutcome::NoPolicy(NoPolicyReason::InvalidRecord(_))
    ));
    // A record but no policy host answer and nothing cached.
    let failed = sts.policy_for_at(&d("down.example"), now).await;
    assert!(
        matches!(
            failed,
            PolicyOutcome::Failed {
                result_type: ResultType::StsPolicyFetchError,
                ..
            }
        ),
        "{failed:?}"
    );
    sts.add_exception(d("good.example"));
    assert_eq!(
        sts.policy_for_at(&d("good.example"), now).await,
        PolicyOutcome::Exempt
    );
    assert_eq!(host.hits(), 1, "only down.example was fetched");
    assert!(sts.remove_exception(&d("good.example")));
    assert!(
        sts.policy_for_at(&d("good.example"), now)
            .await
            .policy()
            .is_some()
    );
}

#[tokio::test]
async fn proactive_refresh_and_persistence() {
    let host = PolicyHost::start(&["good.example", "down.example"]).await;
    host.set("good.example", Reply::policy(GOOD_POLICY));
    let dir = tempfile::tempdir().unwrap();
    let dns = world();
    let t0 = SystemTime::now();
    {
        let sts = service(&host, dns.clone(), PolicyCache::open(dir.path()).unwrap());
        sts.policy_for_at(&d("good.example"), t0).await;
        assert!(
            sts.cache()
                .due_for_refresh(t0 + Duration::from_secs(3600))
                .is_empty()
        );
        // max_age 86400: due after 12 h plus at most 3 h of jitter.
        let later = t0 + Duration::from_secs(15 * 3600);
        let refreshed = sts.refresh_due(later).await;
        assert_eq!(refreshed.len(), 1);
        assert_eq!(source(&refreshed[0].1), PolicySource::Fetched);
        assert_eq!(host.hits(), 2);
        let entry = sts.cache().inspect(&d("good.example")).unwrap();
        assert!(entry.expires_at.unwrap() > t0 + Duration::from_secs(86400));
        // Saves are debounced off the delivery path; shutting down saves
        // at once.
        sts.save().await.unwrap();
    }
    // A new service on the same data directory starts with the policy.
    let sts = service(&host, dns, PolicyCache::open(dir.path()).unwrap());
    let o = sts
        .policy_for_at(&d("good.example"), t0 + Duration::from_secs(16 * 3600))
        .await;
    assert_eq!(source(&o), PolicySource::Cache);
    assert_eq!(host.hits(), 2, "reloaded from disk, not fetched");
    assert_eq!(sts.cache().list().len(), 1);
    assert!(sts.cache().evict(&d("good.example")));
}
