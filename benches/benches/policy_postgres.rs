//! The MTA-STS cache and TLS-RPT state of a cluster in PostgreSQL, beside
//! the single-node file store in the same run (issue: a cluster shares one
//! state). A PostgreSQL server is started on loopback for the run.
//!
//! - `tlsrpt_record`: one session outcome into the collector a node keeps
//!   in front of the shared store (`Collector::in_memory`) beside the
//!   buffered file collector of a single node. Goal: unchanged, < 100 ns.
//! - `tlsrpt_flush`: 1,000,000 sessions over 10,000 tuples moved with
//!   `Collector::flush_to` into `PgCounters`, beside the same into
//!   `LocalCounters` (the file store).
//! - `mta_sts_lookup`: `MtaSts::policy_for` for a domain another node
//!   fetched: with a cold in-process cache (one read from PostgreSQL), and
//!   warm (the in-process cache answers; the delivery path's usual case).

// Bench setup: a failed fixture aborts the run, which is what it should do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use criterion::Criterion;
use mailtls_benches::{criterion_home, format_ns, is_measurement_run, machine_line, read_estimate};
use mailtls_core::DnsName;
use mailtls_core::postgres::{PgPool, PgSettings};
use mailtls_policy::dns::StaticResolver;
use mailtls_policy::mta_sts::{MtaSts, PolicyCache, StaticPolicies};
use mailtls_policy::postgres::{PgCounters, PgPolicyCache};
use mailtls_policy::result_type::PolicyType;
use mailtls_policy::tlsrpt::{Collector, Durability, LocalCounters, PolicyRef, SessionOutcome};
use mailtls_testpeers::Postgres;
use time::macros::date;

const TUPLES: usize = 10_000;
const SESSIONS: usize = 1_000_000;
const RECORD_GOAL_NS: f64 = 100.0;

fn outcome(domain: &str) -> SessionOutcome<'_> {
    SessionOutcome {
        policy: PolicyRef {
            policy_type: PolicyType::NoPolicyFound,
            domain,
            strings: &[],
            mx_hosts: &[],
        },
        mx_host: "mx.example.org",
        failure: None,
    }
}

fn bench_record(c: &mut Criterion) {
    let mut g = c.benchmark_group("pg_tlsrpt_record");
    let memory = Collector::in_memory();
    g.bench_function("in_memory", |b| {
        b.iter(|| memory.record(black_box(&outcome("example.org"))).unwrap());
    });
    let dir = tempfile::tempdir().unwrap();
    let file = Collector::open_with(
        dir.path(),
        Durability::Buffered {
            max_bytes: 64 * 1024,
        },
    )
    .unwrap();
    g.bench_function("file_buffered", |b| {
        b.iter(|| file.record(black_box(&outcome("example.org"))).unwrap());
    });
    g.finish();
}

/// A collector holding SESSIONS sessions over TUPLES domains.
fn filled(collector: Collector, domains: &[String]) -> Arc<Collector> {
    let day = date!(2026 - 12 - 01);
    for i in 0..SESSIONS {
        collector
            .record_on(day, &outcome(&domains[i % TUPLES]))
            .unwrap();
    }
    Arc::new(collector)
}

fn bench_flush(c: &mut Criterion, rt: &tokio::runtime::Runtime, pool: &PgPool) {
    let domains: Vec<String> = (0..TUPLES).map(|i| format!("d{i}.example")).collect();
    let pg = rt.block_on(PgCounters::new(pool.clone())).unwrap();
    let mut g = c.benchmark_group("pg_tlsrpt_flush");
    g.sample_size(10);
    g.bench_function("postgres", |b| {
        b.iter_batched(
            || {
                // Each flush starts from an empty table, as the first flush
                // of a day does.
                rt.block_on(async {
                    let client = pool.client().await.unwrap();
                    client
                        .execute(&format!("DELETE FROM {}.tlsrpt_counts", pool.schema()), &[])
                        .await
                        .unwrap();
                });
                filled(Collector::in_memory(), &domains)
            },
            |node| rt.block_on(node.flush_to(&pg)).unwrap(),
            criterion::BatchSize::PerIteration,
        );
    });
    g.bench_function("file", |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().unwrap();
                let store = LocalCounters::new(Arc::new(Collector::open(dir.path()).unwrap()));
                (filled(Collector::in_memory(), &domains), store, dir)
            },
            |(node, store, _dir)| rt.block_on(node.flush_to(&store)).unwrap(),
            criterion::BatchSize::PerIteration,
        );
    });
    g.finish();
}

fn bench_lookup(c: &mut Criterion, rt: &tokio::runtime::Runtime, pool: &PgPool) {
    let domain = DnsName::parse("example.org").unwrap();
    let dns = Arc::new(
        StaticResolver::builder()
            .txt("_mta-sts.example.org", "v=STSv1; id=one")
            .build()
            .unwrap(),
    );
    let files = StaticPolicies::new().with_policy(
        domain.clone(),
        "version: STSv1\nmode: enforce\nmx: mx.example.org\nmax_age: 86400\n",
    );
    let node = |name: &str| {
        let store = rt.block_on(PgPolicyCache::new(pool.clone(), name)).unwrap();
        let cache = rt
            .block_on(PolicyCache::with_store(Arc::new(store)))
            .unwrap();
        MtaSts::new(dns.clone(), files.clone(), cache)
    };
    // Node A fetches once; the others find it in the store.
    let a = node("bench-a");
    rt.block_on(a.policy_for(&domain));
    let mut g = c.benchmark_group("pg_mta_sts_lookup");
    g.bench_function("cold_local_warm_shared", |b| {
        b.iter_batched(
            || {
                let b_node = node("bench-b");
                b_node.cache().evict(&domain);
                b_node
            },
            |b_node| black_box(rt.block_on(b_node.policy_for(&domain))),
            criterion::BatchSize::PerIteration,
        );
    });
    g.bench_function("warm_local", |b| {
        b.iter(|| black_box(rt.block_on(a.policy_for(&domain))));
    });
    g.finish();
}

fn report(since: SystemTime) {
    let home = criterion_home();
    let get = |group: &str, function: &str| {
        read_estimate(&home, group, function, "", since).map(|e| e.median)
    };
    println!();
    println!("## Cluster state in PostgreSQL, medians of this run");
    println!();
    println!("| what | postgres / in-memory | file store | ratio |");
    println!("|---|---:|---:|---:|");
    let pair = |what: &str, group: &str, mine: &str, peer: &str| {
        if let (Ok(m), Ok(p)) = (get(group, mine), get(group, peer)) {
            println!(
                "| {what} | {} | {} | {:.2}x |",
                format_ns(m),
                format_ns(p),
                m / p
            );
        }
    };
    pair(
        "`record` one outcome (node in front of a shared store vs buffered file collector)",
        "pg_tlsrpt_record",
        "in_memory",
        "file_buffered",
    );
    pair(
        &format!("`flush_to` {SESSIONS} sessions over {TUPLES} tuples"),
        "pg_tlsrpt_flush",
        "postgres",
        "file",
    );
    pair(
        "`policy_for`, cold in-process cache + shared store vs warm in-process cache",
        "pg_mta_sts_lookup",
        "cold_local_warm_shared",
        "warm_local",
    );
    if let Ok(m) = get("pg_tlsrpt_record", "in_memory") {
        println!();
        println!(
            "record goal < {}: {}",
            format_ns(RECORD_GOAL_NS),
            if m < RECORD_GOAL_NS { "met" } else { "missed" }
        );
    }
    println!();
    println!("{}", machine_line());
}

fn main() {
    let since = SystemTime::now() - Duration::from_secs(1);
    let pg = Postgres::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let pool = rt
        .block_on(PgPool::connect(&PgSettings::new(pg.url())))
        .unwrap();
    let mut c = Criterion::default().configure_from_args();
    bench_record(&mut c);
    bench_flush(&mut c, &rt, &pool);
    bench_lookup(&mut c, &rt, &pool);
    c.final_summary();
    if is_measurement_run() {
        report(since);
    }
}
