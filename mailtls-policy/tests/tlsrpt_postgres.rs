//! TLS-RPT state shared by several nodes in a real PostgreSQL server
//! (started for the test as an unprivileged user, on loopback).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod tlsrpt_support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use mailtls_core::postgres::{PgError, PgPool, PgSchema, PgSettings};
use mailtls_policy::postgres::{PgCounters, PgOutbox, migrate};
use mailtls_policy::tlsrpt::delivery::{
    DeliverFuture, DeliverReport, Outbox, OutboxStore, QueuedReport, RetryPolicy,
};
use mailtls_policy::tlsrpt::{
    Collector, CounterStore, ReportUri, Schedule, TlsReport, TlsRptRecord, queue_due_reports,
};
use mailtls_testpeers::Postgres;
use time::OffsetDateTime;
use time::macros::{date, datetime};
use tlsrpt_support::{meta, outcome};

async fn pool(pg: &Postgres, schema: &str) -> PgPool {
    PgPool::connect(
        &PgSettings::new(pg.url())
            .with_schema(PgSchema::new(schema).unwrap())
            .with_pool_size(4),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_starting_together_migrate_once_and_a_newer_schema_is_refused() {
    let pg = Postgres::start();
    let (a, b) = (pool(&pg, "cluster").await, pool(&pg, "cluster").await);
    let (ra, rb) = tokio::join!(migrate(&a), migrate(&b));
    assert_eq!((ra.unwrap(), rb.unwrap()), (2, 2));
    assert_eq!(
        pg.psql("SELECT count(*) FROM cluster.migrations WHERE component = 'mailtls-policy'")
            .trim(),
        "2",
        "each step applied once"
    );
    // Another schema in the same database is separate.
    migrate(&pool(&pg, "other").await).await.unwrap();
    assert_eq!(
        pg.psql("SELECT count(*) FROM other.tlsrpt_counts").trim(),
        "0"
    );

    pg.psql("INSERT INTO cluster.migrations (component, version) VALUES ('mailtls-policy', 99)");
    let err = migrate(&a).await.unwrap_err();
    assert!(matches!(err, PgError::TooNew { found: 99, .. }), "{err}");
    assert!(err.to_string().contains("upgrade this node"), "{err}");
}

/// Delivers everything and counts deliveries per destination.
#[derive(Default)]
struct Counting {
    seen: Mutex<BTreeMap<String, usize>>,
}

impl DeliverReport for Counting {
    fn deliver_report<'a>(
        &'a self,
        _report: &'a TlsReport,
        to: &'a ReportUri,
        _now: OffsetDateTime,
    ) -> DeliverFuture<'a> {
        *self.seen.lock().unwrap().entry(to.to_string()).or_default() += 1;
        Box::pin(async { Ok(()) })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_send_one_report_per_domain_and_day_with_both_counts() {
    let pg = Postgres::start();
    let day = date!(2026 - 12 - 01);
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let pool = pool(&pg, "mailtls").await;
        let counters = PgCounters::new(pool.clone()).await.unwrap();
        let outbox = Outbox::with_store(
            Arc::new(PgOutbox::new(pool).await.unwrap()),
            RetryPolicy::default(),
        );
        nodes.push((Arc::new(Collector::in_memory()), counters, outbox));
    }
    for _ in 0..7 {
        nodes[0]
            .0
            .record_on(day, &outcome("example.org", false))
            .unwrap();
    }
    nodes[0]
        .0
        .record_on(day, &outcome("example.org", true))
        .unwrap();
    for _ in 0..5 {
        nodes[1]
            .0
            .record_on(day, &outcome("example.org", false))
            .unwrap();
    }
    nodes[1]
        .0
        .record_on(day, &outcome("example.net", true))
        .unwrap();
    let (fa, fb) = tokio::join!(
        nodes[0].0.flush_to(&nodes[0].1),
        nodes[1].0.flush_to(&nodes[1].1)
    );
    assert_eq!((fa.unwrap(), fb.unwrap()), (8, 6));
    let stored = nodes[0].1.load().await.unwrap();
    assert_eq!(stored.totals(day, "example.org"), (12, 1));
    assert_eq!(stored.totals(day, "example.net"), (0, 1));

    // Both nodes run the daily step at the same moment.
    let meta = meta();
    let record =
        TlsRptRecord::parse("v=TLSRPTv1; rua=mailto:r@example.org,https://r.example.org/v1")
            .unwrap();
    let now = datetime!(2026-12-02 06:00 UTC);
    let schedule = Schedule::default();
    let lookup = |_: &str| Some(record.clone());
    let (qa, qb) = tokio::join!(
        queue_due_reports(&nodes[0].1, &schedule, &nodes[0].2, &meta, now, lookup),
        queue_due_reports(&nodes[1].1, &schedule, &nodes[1].2, &meta, now, lookup)
    );
    qa.unwrap();
    qb.unwrap();
    assert!(nodes[1].1.load().await.unwrap().is_empty());
    let pending = nodes[0].2.store().pending().await.unwrap();
    assert_eq!(
        pending.len(),
        4,
        "one job per domain and destination: {pending:?}"
    );
    let org = pending
        .iter()
        .find(|j| j.report.policy_domain() == "example.org")
        .unwrap();
    let summary = &org.report.policies[0].summary;
    assert_eq!(
        (
            summary.total_successful_session_count,
            summary.total_failure_session_count
        ),
        (12, 1)
    );

    // Both deliver at once: every job goes out exactly once.
    let deliverer = Counting::default();
    let (da, db) = tokio::join!(
        nodes[0].2.deliver_due(&deliverer, now),
        nodes[1].2.deliver_due(&deliverer, now)
    );
    assert_eq!(da.unwrap().delivered + db.unwrap().delivered, 4);
    let seen = deliverer.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert!(seen.values().all(|n| *n == 2), "{seen:?}");
    assert_eq!(nodes[1].2.recently_sent(10).await.unwrap().len(), 4);

    // A node that queues the same report again later (it had counted the
    // day too and flushed late) does not make it go out twice.
    let again = QueuedReport::new(org.report.clone(), org.target.clone(), now);
    assert!(!nodes[1].2.store().insert(again).await.unwrap());
    assert!(nodes[1].2.store().pending().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_due_job_is_leased_to_one_node_until_the_lease_runs_out() {
    let pg = Postgres::start();
    let a = PgOutbox::new(pool(&pg, "mailtls").await).await.unwrap();
    let b = PgOutbox::new(pool(&pg, "mailtls").await).await.unwrap();
    let collector = Collector::in_memory();
    let day = date!(2026 - 12 - 01);
    collector
        .record_on(day, &outcome("example.org", false))
        .unwrap();
    let snapshot = collector.snapshot();
    let tuples = snapshot.grouped();
    let report =
        TlsReport::from_tuples(&tuples[&(day, "example.org")], day, "example.org", &meta())
            .unwrap();
    let now = datetime!(2026-12-02 06:00 UTC);
    assert!(
        a.insert(QueuedReport::new(
            report,
            "mailto:r@example.org".into(),
            now
        ))
        .await
        .unwrap()
    );
    let (ca, cb) = tokio::join!(a.claim_due(now), b.claim_due(now));
    let (ca, cb) = (ca.unwrap(), cb.unwrap());
    assert_eq!(ca.len() + cb.len(), 1, "one node holds the job");
    // Within the lease nobody else gets it; after it, the other node may.
    assert!(
        b.claim_due(now + time::Duration::minutes(9))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        b.claim_due(now + time::Duration::minutes(11))
            .await
            .unwrap()
            .len(),
        1
    );
}
