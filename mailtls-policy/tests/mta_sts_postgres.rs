//! The MTA-STS cache shared by several nodes in a real PostgreSQL server: a
//! policy one node fetched is used by the others, a refresh is not repeated
//! by every node, and the newer fetch wins in the store.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use mailtls_core::DnsName;
use mailtls_core::postgres::{PgPool, PgSettings};
use mailtls_policy::dns::{RecordType, StaticResolver};
use mailtls_policy::mta_sts::{
    FetchFuture, FetchPolicy, MtaSts, PolicyCache, PolicyCacheStore, PolicyMode, PolicyOutcome,
    PolicySource, StaticPolicies,
};
use mailtls_policy::postgres::PgPolicyCache;
use mailtls_testpeers::Postgres;

const TXT: &str = "_mta-sts.example.org";
const ENFORCE: &str = "version: STSv1\nmode: enforce\nmx: mx.example.org\nmax_age: 86400\n";
const TESTING: &str = "version: STSv1\nmode: testing\nmx: mx.example.org\nmax_age: 86400\n";

fn d(s: &str) -> DnsName {
    DnsName::parse(s).unwrap()
}

/// A fetcher that counts its fetches and serves what the test set last.
#[derive(Default)]
struct Counting {
    fetches: AtomicUsize,
    files: std::sync::Mutex<StaticPolicies>,
}

impl Counting {
    fn serve(&self, text: &str) {
        *self.files.lock().unwrap() = StaticPolicies::new().with_policy(d("example.org"), text);
    }
}

impl FetchPolicy for Counting {
    fn fetch_policy<'a>(&'a self, domain: &'a DnsName) -> FetchFuture<'a> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        let files = self.files.lock().unwrap().clone();
        let domain = domain.clone();
        Box::pin(async move { files.fetch_policy(&domain).await })
    }
}

fn source(o: &PolicyOutcome) -> PolicySource {
    match o {
        PolicyOutcome::Policy { source, .. } => *source,
        other => panic!("expected a policy, got {other:?}"),
    }
}

/// DNS with id `one` for example.org, and a fetcher serving the enforce
/// policy.
fn world() -> (Arc<StaticResolver>, Arc<Counting>) {
    let dns = Arc::new(
        StaticResolver::builder()
            .txt(TXT, "v=STSv1; id=one")
            .build()
            .unwrap(),
    );
    let fetcher = Arc::new(Counting::default());
    fetcher.serve(ENFORCE);
    (dns, fetcher)
}

async fn node(
    pg: &Postgres,
    name: &str,
    dns: Arc<StaticResolver>,
    fetcher: Arc<Counting>,
) -> (MtaSts, PgPolicyCache) {
    let pool = PgPool::connect(&PgSettings::new(pg.url()).with_pool_size(2))
        .await
        .unwrap();
    let store = PgPolicyCache::new(pool, name).await.unwrap();
    let cache = PolicyCache::with_store(Arc::new(store.clone()))
        .await
        .unwrap();
    (
        MtaSts::new(dns, fetcher, cache).with_save_delay(Duration::from_millis(10)),
        store,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_fetched_by_one_node_is_used_by_the_others() {
    let pg = Postgres::start();
    let (dns, fetcher) = world();
    let (a, _) = node(&pg, "node-a", dns.clone(), fetcher.clone()).await;
    let (b, b_store) = node(&pg, "node-b", dns.clone(), fetcher.clone()).await;
    let t0 = SystemTime::now();
    let domain = d("example.org");

    let first = a.policy_for_at(&domain, t0).await;
    assert_eq!(source(&first), PolicySource::Fetched);
    let first_entry = b_store.get(&domain).await.unwrap().unwrap();
    let on_b = b.policy_for_at(&domain, t0).await;
    assert_eq!(source(&on_b), PolicySource::Shared);
    assert_eq!(on_b.policy().unwrap().mode(), PolicyMode::Enforce);
    assert_eq!(
        fetcher.fetches.load(Ordering::SeqCst),
        1,
        "node B did not fetch"
    );
    // From now on node B answers from its own memory.
    let again = b.policy_for_at(&domain, t0 + Duration::from_secs(5)).await;
    assert_eq!(source(&again), PolicySource::Cache);

    // RFC 8461 §5.1: a new id means a new policy. Node B fetches it (its
    // fetch ends in the store), node A takes it from there.
    fetcher.serve(TESTING);
    dns.edit(|r| r.remove(TXT, RecordType::Txt).txt(TXT, "v=STSv1; id=two"))
        .unwrap();
    let t1 = t0 + Duration::from_secs(60);
    let b_new = b.policy_for_at(&domain, t1).await;
    assert_eq!(source(&b_new), PolicySource::Fetched);
    let a_new = a.policy_for_at(&domain, t1).await;
    assert_eq!(source(&a_new), PolicySource::Shared);
    assert_eq!(a_new.policy().unwrap().mode(), PolicyMode::Testing);
    assert_eq!(fetcher.fetches.load(Ordering::SeqCst), 2);

    // An older entry saved late by a node does not overwrite the newer one.
    assert_eq!(
        first_entry.policy.as_ref().unwrap().1.mode(),
        PolicyMode::Enforce
    );
    b_store.save(vec![first_entry]).await.unwrap();
    let kept = b_store.get(&domain).await.unwrap().unwrap();
    assert_eq!(kept.policy.unwrap().1.mode(), PolicyMode::Testing);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_one_node_holds_the_fetch_lease_the_others_keep_their_policy() {
    let pg = Postgres::start();
    let (dns, fetcher) = world();
    let (a, a_store) = node(&pg, "node-a", dns.clone(), fetcher.clone()).await;
    let (b, _) = node(&pg, "node-b", dns.clone(), fetcher.clone()).await;
    let t0 = SystemTime::now();
    let domain = d("example.org");
    a.policy_for_at(&domain, t0).await;
    b.policy_for_at(&domain, t0).await;
    assert_eq!(fetcher.fetches.load(Ordering::SeqCst), 1);

    // The id changes while node A is (as far as the store knows) fetching.
    let t1 = t0 + Duration::from_secs(60);
    assert!(
        a_store
            .try_lease(&domain, t1, t1 + Duration::from_secs(120))
            .await
            .unwrap()
    );
    fetcher.serve(TESTING);
    dns.edit(|r| r.remove(TXT, RecordType::Txt).txt(TXT, "v=STSv1; id=two"))
        .unwrap();
    let on_b = b.policy_for_at(&domain, t1).await;
    assert_eq!(source(&on_b), PolicySource::Cache);
    assert_eq!(on_b.policy().unwrap().mode(), PolicyMode::Enforce);
    assert_eq!(fetcher.fetches.load(Ordering::SeqCst), 1, "node B waited");
    let (holder, _) = a_store.lease_of(&domain).await.unwrap().unwrap();
    assert_eq!(holder, "node-a");

    // Once the lease has run out (node A died), node B fetches.
    let t2 = t1 + Duration::from_secs(121);
    let later = b.policy_for_at(&domain, t2).await;
    assert_eq!(source(&later), PolicySource::Fetched);
    assert_eq!(later.policy().unwrap().mode(), PolicyMode::Testing);
    assert!(
        a_store.lease_of(&domain).await.unwrap().is_none(),
        "storing the fetch ended node B's lease"
    );
}
