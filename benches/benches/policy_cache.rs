//! The MTA-STS policy cache with 1,000,000 domains, each holding its own
//! parsed policy (two `mx` lines naming the domain, as fetched): resident
//! memory of the whole process once it is filled, read from
//! `/proc/self/status`, and the lookup the delivery path makes for every
//! message (`PolicyCache::valid_policy`: hash, probe, expiry check, clone of
//! the id and the policy `Arc`), from an already parsed `DnsName` and from a
//! recipient domain string (parse included).
//!
//! Targets: lookup under 300 ns, resident memory under 512 MiB.

// Bench setup: a failed fixture aborts the run, which is what it should do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime};

use criterion::{BenchmarkId, Criterion};
use mailtls_benches::{criterion_home, format_ns, is_measurement_run, read_estimate};
use mailtls_core::DnsName;
use mailtls_policy::mta_sts::{PolicyCache, PolicyId, Profile, parse_policy};

const DOMAINS: usize = 1_000_000;
const LOOKUP_TARGET_NS: f64 = 300.0;
const RSS_TARGET_KIB: u64 = 512 * 1024;
/// Lookups per measured pass, spread over the cache.
const PROBES: usize = 4096;

fn domain(i: usize) -> String {
    format!("d{i}.example")
}

/// `VmRSS` of this process, KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

struct Filled {
    cache: PolicyCache,
    names: Vec<DnsName>,
    texts: Vec<String>,
    rss_before_kib: u64,
    rss_after_kib: u64,
}

fn fill(now: SystemTime) -> Filled {
    let rss_before_kib = rss_kib();
    let started = Instant::now();
    let cache = PolicyCache::in_memory();
    let id = PolicyId::parse("20261124T000000").unwrap();
    for i in 0..DOMAINS {
        let d = domain(i);
        let name = DnsName::parse(&d).unwrap();
        let body = format!(
            "version: STSv1\r\nmode: enforce\r\nmx: mx1.{d}\r\nmx: *.mx.{d}\r\nmax_age: 604800\r\n"
        );
        let policy = parse_policy(body.as_bytes(), Profile::Strict)
            .unwrap()
            .policy;
        cache.store(&name, id.clone(), policy, now);
    }
    assert_eq!(cache.len(), DOMAINS);
    let rss_after_kib = rss_kib();
    eprintln!(
        "fixtures: {DOMAINS} domains cached in {:.1?}; resident {} MiB before, {} MiB after",
        started.elapsed(),
        rss_before_kib / 1024,
        rss_after_kib / 1024
    );
    // The probe names are made after the measurement of the cache itself.
    let picks: Vec<usize> = (0..PROBES).map(|k| (k * 7919 + 13) % DOMAINS).collect();
    Filled {
        cache,
        names: picks
            .iter()
            .map(|&i| DnsName::parse(&domain(i)).unwrap())
            .collect(),
        texts: picks.iter().map(|&i| domain(i)).collect(),
        rss_before_kib,
        rss_after_kib,
    }
}

fn bench(c: &mut Criterion, f: &Filled, now: SystemTime) {
    for n in &f.names {
        assert!(f.cache.valid_policy(n, now).is_some());
    }
    let mut group = c.benchmark_group("policy_cache");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    group.bench_function(BenchmarkId::new("valid_policy", DOMAINS), |b| {
        let mut k = 0usize;
        b.iter(|| {
            k = (k + 1) % PROBES;
            f.cache.valid_policy(black_box(&f.names[k]), now)
        });
    });
    group.bench_function(BenchmarkId::new("parse_and_valid_policy", DOMAINS), |b| {
        let mut k = 0usize;
        b.iter(|| {
            k = (k + 1) % PROBES;
            let name = DnsName::parse(black_box(&f.texts[k])).unwrap();
            f.cache.valid_policy(&name, now)
        });
    });
    group.finish();
}

fn report(f: &Filled, since: SystemTime) {
    let home = criterion_home();
    println!();
    println!("## MTA-STS cache of {DOMAINS} domains, medians of this run");
    println!();
    println!("| what | measured | target |");
    println!("|---|---:|---|");
    let verdict = |ok: bool| if ok { "MET" } else { "MISSED" };
    for (function, what) in [
        ("valid_policy", "lookup (`valid_policy`, parsed name)"),
        (
            "parse_and_valid_policy",
            "lookup from a string (name parse included, for reference: no target)",
        ),
    ] {
        match read_estimate(&home, "policy_cache", function, &DOMAINS.to_string(), since) {
            Ok(e) => println!(
                "| {what} | {} | < {}: {} |",
                format_ns(e.median),
                format_ns(LOOKUP_TARGET_NS),
                verdict(e.median < LOOKUP_TARGET_NS)
            ),
            Err(e) => println!("| {what} | n/a ({e}) | |"),
        }
    }
    println!(
        "| resident memory, whole process, cache filled | {} MiB (cache: +{} MiB) | < {} MiB: {} |",
        f.rss_after_kib / 1024,
        f.rss_after_kib.saturating_sub(f.rss_before_kib) / 1024,
        RSS_TARGET_KIB / 1024,
        verdict(f.rss_after_kib < RSS_TARGET_KIB)
    );
}

fn main() {
    let since = SystemTime::now() - Duration::from_secs(1);
    let now = SystemTime::now();
    let mut c = Criterion::default().configure_from_args();
    // `--list` and `cargo test --benches` do not need the million entries.
    let filled = fill(now);
    bench(&mut c, &filled, now);
    c.final_summary();
    if is_measurement_run() {
        report(&filled, since);
    }
}
