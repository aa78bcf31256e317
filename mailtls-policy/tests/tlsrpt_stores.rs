//! The TLS-RPT state behind its storage traits: several collectors flushing
//! into one shared counter store, nothing lost when the store fails, and an
//! outbox over a store the embedder wrote.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod tlsrpt_support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use mailtls_policy::tlsrpt::delivery::{
    DeliverFuture, DeliverReport, Outbox, OutboxFuture, OutboxStore, QueuedReport, RetryPolicy,
    SentReport,
};
use mailtls_policy::tlsrpt::{
    Aggregate, Collector, CounterStore, LocalCounters, MemoryCounters, Schedule, StoreFuture,
    TlsReport, TlsRptError, TlsRptRecord, queue_due_reports,
};
use time::macros::{date, datetime};
use time::{Date, OffsetDateTime};
use tlsrpt_support::{meta, outcome};

#[tokio::test]
async fn two_nodes_flush_into_one_store_and_one_report_covers_both() {
    let day = date!(2026 - 12 - 01);
    let shared = MemoryCounters::new();
    let node_a = Arc::new(Collector::in_memory());
    let dir = tempfile::tempdir().unwrap();
    let node_b = Arc::new(Collector::open(dir.path()).unwrap());
    for _ in 0..5 {
        node_a
            .record_on(day, &outcome("example.org", false))
            .unwrap();
    }
    node_a
        .record_on(day, &outcome("example.org", true))
        .unwrap();
    for _ in 0..3 {
        node_b
            .record_on(day, &outcome("example.org", false))
            .unwrap();
    }
    assert_eq!(node_a.flush_to(&shared).await.unwrap(), 6);
    assert_eq!(node_b.flush_to(&shared).await.unwrap(), 3);
    // Moved, not copied: a second flush has nothing to move.
    assert_eq!(node_a.flush_to(&shared).await.unwrap(), 0);
    assert_eq!(node_a.tuple_count(), 0);
    assert_eq!(node_b.tuple_count(), 0);
    // Node B's log no longer holds what it handed over, also after a restart.
    drop(node_b);
    let node_b = Collector::open(dir.path()).unwrap();
    assert!(node_b.snapshot().is_empty());

    assert_eq!(shared.snapshot().totals(day, "example.org"), (8, 1));
    let outbox_dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(outbox_dir.path(), RetryPolicy::default()).unwrap();
    let run = queue_due_reports(
        &shared,
        &Schedule::default(),
        &outbox,
        &meta(),
        datetime!(2026-12-02 06:00 UTC),
        |_| Some(TlsRptRecord::parse("v=TLSRPTv1; rua=mailto:tlsrpt@example.org").unwrap()),
    )
    .await
    .unwrap();
    assert_eq!(
        run.queued, 1,
        "one report for the organisation, not one per node"
    );
    assert!(
        shared.snapshot().is_empty(),
        "reported counts are forgotten"
    );
    let pending = outbox.store().pending().await.unwrap();
    assert_eq!(pending.len(), 1);
    let summary = &pending[0].report.policies[0].summary;
    assert_eq!(
        (
            summary.total_successful_session_count,
            summary.total_failure_session_count
        ),
        (8, 1)
    );
}

/// A store that refuses while `down` is set.
#[derive(Debug, Default)]
struct FlakyCounters {
    down: Mutex<bool>,
    inner: MemoryCounters,
}

impl CounterStore for FlakyCounters {
    fn add(&self, increments: Aggregate) -> StoreFuture<'_, ()> {
        if *self.down.lock().unwrap() {
            return Box::pin(async {
                Err(TlsRptError::Delivery {
                    target: "shared store".into(),
                    reason: "connection refused".into(),
                })
            });
        }
        self.inner.add(increments)
    }

    fn load(&self) -> StoreFuture<'_, Aggregate> {
        self.inner.load()
    }

    fn forget(&self, done: Vec<(Date, String)>) -> StoreFuture<'_, ()> {
        self.inner.forget(done)
    }
}

#[tokio::test]
async fn a_failing_store_loses_nothing_and_later_sessions_stay_local() {
    let day = date!(2026 - 12 - 01);
    let store = FlakyCounters::default();
    let dir = tempfile::tempdir().unwrap();
    let node = Arc::new(Collector::open(dir.path()).unwrap());
    for _ in 0..4 {
        node.record_on(day, &outcome("example.org", false)).unwrap();
    }
    *store.down.lock().unwrap() = true;
    let err = node.flush_to(&store).await.unwrap_err().to_string();
    assert!(err.contains("connection refused"), "{err}");
    assert_eq!(node.snapshot().totals(day, "example.org"), (4, 0));

    *store.down.lock().unwrap() = false;
    assert_eq!(node.flush_to(&store).await.unwrap(), 4);
    // Sessions recorded after the hand-over are not taken with it.
    node.record_on(day, &outcome("example.org", true)).unwrap();
    assert_eq!(node.snapshot().totals(day, "example.org"), (0, 1));
    assert_eq!(store.inner.snapshot().totals(day, "example.org"), (4, 0));
}

#[test]
fn subtracting_keeps_what_was_recorded_after_the_snapshot() {
    let day = date!(2026 - 12 - 01);
    let dir = tempfile::tempdir().unwrap();
    let node = Collector::open(dir.path()).unwrap();
    for _ in 0..10 {
        node.record_on(day, &outcome("example.org", false)).unwrap();
    }
    let taken = node.snapshot();
    for _ in 0..3 {
        node.record_on(day, &outcome("example.org", false)).unwrap();
    }
    node.record_on(day, &outcome("other.example", true))
        .unwrap();
    node.subtract(&taken).unwrap();
    let left = node.snapshot();
    assert_eq!(left.totals(day, "example.org"), (3, 0));
    assert_eq!(left.totals(day, "other.example"), (0, 1));
    drop(node);
    let reopened = Collector::open(dir.path()).unwrap();
    assert_eq!(reopened.snapshot(), left);
}

#[tokio::test]
async fn local_counters_add_counts_durably() {
    let day = date!(2026 - 12 - 01);
    let dir = tempfile::tempdir().unwrap();
    let counters = LocalCounters::new(Arc::new(Collector::open(dir.path()).unwrap()));
    let node = Arc::new(Collector::in_memory());
    for _ in 0..2 {
        node.record_on(day, &outcome("example.org", true)).unwrap();
    }
    node.flush_to(&counters).await.unwrap();
    // Merged into what the local collector counted itself.
    counters
        .collector()
        .record_on(day, &outcome("example.org", true))
        .unwrap();
    drop(counters);
    let reopened = Collector::open(dir.path()).unwrap();
    assert_eq!(reopened.snapshot().totals(day, "example.org"), (0, 3));
}

/// An outbox store as an embedder might write one (here over a map).
#[derive(Debug, Default)]
struct MapOutbox {
    pending: Mutex<BTreeMap<String, QueuedReport>>,
    given_up: Mutex<Vec<QueuedReport>>,
    sent: Mutex<Vec<SentReport>>,
}

fn ready<T: Send + 'static>(v: T) -> OutboxFuture<'static, T> {
    Box::pin(async move { Ok(v) })
}

impl OutboxStore for MapOutbox {
    fn insert(&self, job: QueuedReport) -> OutboxFuture<'_, bool> {
        let mut p = self.pending.lock().unwrap();
        let key = job.key();
        let added = !p.contains_key(&key);
        p.entry(key).or_insert(job);
        ready(added)
    }
    fn pending(&self) -> OutboxFuture<'_, Vec<QueuedReport>> {
        ready(self.pending.lock().unwrap().values().cloned().collect())
    }
    fn update(&self, job: QueuedReport) -> OutboxFuture<'_, ()> {
        self.pending.lock().unwrap().insert(job.key(), job);
        ready(())
    }
    fn delivered(&self, job: QueuedReport, sent: SentReport) -> OutboxFuture<'_, ()> {
        self.pending.lock().unwrap().remove(&job.key());
        self.sent.lock().unwrap().push(sent);
        ready(())
    }
    fn give_up(&self, job: QueuedReport) -> OutboxFuture<'_, ()> {
        self.pending.lock().unwrap().remove(&job.key());
        self.given_up.lock().unwrap().push(job);
        ready(())
    }
    fn undeliverable(&self) -> OutboxFuture<'_, Vec<QueuedReport>> {
        ready(self.given_up.lock().unwrap().clone())
    }
    fn recently_sent(&self, n: usize) -> OutboxFuture<'_, Vec<SentReport>> {
        let s = self.sent.lock().unwrap();
        ready(s[s.len().saturating_sub(n)..].to_vec())
    }
}

/// Accepts `https:` destinations and refuses `mailto:` ones.
struct HttpsOnly;

impl DeliverReport for HttpsOnly {
    fn deliver_report<'a>(
        &'a self,
        _report: &'a TlsReport,
        to: &'a mailtls_policy::tlsrpt::ReportUri,
        _now: OffsetDateTime,
    ) -> DeliverFuture<'a> {
        let ok = matches!(to, mailtls_policy::tlsrpt::ReportUri::Https(_));
        let target = to.to_string();
        Box::pin(async move {
            if ok {
                Ok(())
            } else {
                Err(TlsRptError::Delivery {
                    target,
                    reason: "mail refused".into(),
                })
            }
        })
    }
}

#[tokio::test]
async fn the_outbox_retries_over_an_embedders_store() {
    let day = date!(2026 - 12 - 01);
    let counters = MemoryCounters::new();
    let node = Arc::new(Collector::in_memory());
    node.record_on(day, &outcome("example.org", false)).unwrap();
    node.flush_to(&counters).await.unwrap();
    let store = Arc::new(MapOutbox::default());
    let outbox = Outbox::with_store(store.clone(), RetryPolicy::default().with_max_attempts(2));
    let record = TlsRptRecord::parse(
        "v=TLSRPTv1; rua=https://reports.example.org/v1,mailto:tlsrpt@example.org",
    )
    .unwrap();
    let t0 = datetime!(2026-12-02 06:00 UTC);
    let run = queue_due_reports(
        &counters,
        &Schedule::default(),
        &outbox,
        &meta(),
        t0,
        |_| Some(record.clone()),
    )
    .await
    .unwrap();
    assert_eq!(run.queued, 1);
    assert_eq!(outbox.pending().await.unwrap().len(), 2);

    let run = outbox.deliver_due(&HttpsOnly, t0).await.unwrap();
    assert_eq!((run.delivered, run.deferred), (1, 1));
    let sent = outbox.recently_sent(5).await.unwrap();
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].successful, sent[0].failed), (1, 0));
    let waiting = outbox.pending().await.unwrap();
    assert_eq!(waiting.len(), 1);
    assert!(
        waiting[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("mail refused")
    );
    assert!(waiting[0].next_attempt > t0);

    let later = waiting[0].next_attempt;
    let run = outbox.deliver_due(&HttpsOnly, later).await.unwrap();
    assert_eq!(run.undeliverable, 1);
    assert!(outbox.pending().await.unwrap().is_empty());
    let kept = outbox.undeliverable().await.unwrap();
    assert_eq!((kept.len(), kept[0].attempts), (1, 2));
}
