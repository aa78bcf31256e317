//! TLS-RPT (RFC 8460) on the sending side, through the calls an MTA makes:
//! `Collector::record` (today's UTC day from the clock, as the delivery
//! path calls it), `Collector::flush`, `Collector::snapshot`,
//! `TlsReport::build_day`, `TlsReport::to_gzip`.
//!
//! - `record`: one session outcome into a [`Collector`] with
//!   [`Durability::Buffered`] (64 KiB), the tuple already counted (the hot
//!   path of a busy MTA). Target: under 100 ns. (The workspace forbids
//!   `unsafe`, so no counting allocator: that a repeated tuple allocates
//!   nothing follows from the collector's code, not from this bench.) For
//!   reference, the same with the default [`Durability::EveryRecord`]: one
//!   `write(2)` per session, so microseconds; an MTA that wants the
//!   nanosecond figure opens the collector buffered and calls `flush` every
//!   second or so.
//! - `aggregate`: 10,000,000 outcomes over 100,000 policy domains (each
//!   domain: a success tuple and two failure tuples, one outcome in ten a
//!   failure) into a fresh buffered collector, on one thread, the log
//!   written as it goes (definitions, count lines, compaction with fsync)
//!   and flushed at the end. The domains take turns, so every outcome is
//!   for another domain than the 99,999 before it: the worst case for
//!   caches. Target: under 2 s.
//! - `build_gzip`: every report of one day for those 100,000 domains
//!   (`TlsReport::build_day`) and each gzipped (`to_gzip`). Target: under 5 s.

// Bench setup: a failed fixture aborts the run, which is what it should do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant, SystemTime};

use criterion::{BenchmarkId, Criterion, SamplingMode};
use mailtls_benches::{criterion_home, format_ns, is_measurement_run, read_estimate};
use mailtls_policy::result_type::{PolicyType, ResultType};
use mailtls_policy::tlsrpt::{
    Aggregate, Collector, Durability, FailureOutcome, PolicyRef, ReportMeta, SessionOutcome,
    TlsReport,
};
use std::collections::BTreeMap;

use time::Date;

const DOMAINS: usize = 100_000;
const OUTCOMES: usize = 10_000_000;
const BUFFER: usize = 64 * 1024;
const RECORD_TARGET_NS: f64 = 100.0;
const AGGREGATE_TARGET_NS: f64 = 2e9;
const BUILD_TARGET_NS: f64 = 5e9;

fn meta() -> ReportMeta {
    ReportMeta {
        organization_name: "Bench Sender".into(),
        contact_info: "tlsrpt@sender.example".into(),
        submitter: "sender.example".into(),
    }
}

fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("mailtls-bench-tlsrpt-")
        .tempdir()
        .unwrap()
}

/// The policy of domain `i` as the delivery path holds it.
struct DomainPolicy {
    domain: String,
    mx: String,
    lines: Vec<String>,
}

impl DomainPolicy {
    fn new(i: usize) -> Self {
        let domain = format!("d{i}.example");
        let mx = format!("mx1.{domain}");
        let lines = vec![
            "version: STSv1".to_owned(),
            "mode: enforce".to_owned(),
            format!("mx: {mx}"),
            "max_age: 604800".to_owned(),
        ];
        DomainPolicy { domain, mx, lines }
    }
}

/// Borrowed views the `SessionOutcome`s point into.
struct Views<'a> {
    strings: Vec<Vec<&'a str>>,
    mx_hosts: Vec<[&'a str; 1]>,
}

fn views(policies: &[DomainPolicy]) -> Views<'_> {
    Views {
        strings: policies
            .iter()
            .map(|p| p.lines.iter().map(String::as_str).collect())
            .collect(),
        mx_hosts: policies.iter().map(|p| [p.mx.as_str()]).collect(),
    }
}

/// Outcome `k` of the aggregation workload: domain `k % DOMAINS`, every
/// tenth round over the domains a failure (certificate-expired or starttls-not-supported).
fn outcome<'a>(policies: &'a [DomainPolicy], v: &'a Views<'a>, k: usize) -> SessionOutcome<'a> {
    let i = k % policies.len();
    let round = k / policies.len();
    let failure = (round % 10 == 9).then(|| FailureOutcome {
        result_type: if round % 20 == 19 {
            ResultType::CertificateExpired
        } else {
            ResultType::StarttlsNotSupported
        },
        sending_mta_ip: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))),
        receiving_ip: Some(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7))),
        receiving_mx_helo: Some(&policies[i].mx),
        failure_reason_code: None,
        additional_information: None,
    });
    SessionOutcome {
        policy: PolicyRef {
            policy_type: PolicyType::Sts,
            domain: &policies[i].domain,
            strings: &v.strings[i],
            mx_hosts: &v.mx_hosts[i],
        },
        mx_host: &policies[i].mx,
        failure,
    }
}

fn record_all(c: &Collector, policies: &[DomainPolicy], v: &Views<'_>) {
    for k in 0..OUTCOMES {
        c.record(&outcome(policies, v, k)).unwrap();
    }
    c.flush().unwrap();
}

struct Notes {
    tuples: usize,
    /// Median CPU time of the recording thread per aggregation run.
    aggregate_cpu: Option<Duration>,
    reports: usize,
    gzip_bytes: usize,
}

fn bench_record(c: &mut Criterion, policies: &[DomainPolicy], v: &Views<'_>) {
    let success = outcome(policies, v, 0);
    let failure = outcome(policies, v, 19 * DOMAINS);
    let mut group = c.benchmark_group("tlsrpt_record");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for (mode, durability) in [
        (
            "buffered_repeated",
            Durability::Buffered { max_bytes: BUFFER },
        ),
        ("every_record_repeated", Durability::EveryRecord),
    ] {
        let dir = temp_dir();
        let collector = Collector::open_with(dir.path(), durability).unwrap();
        // Count the tuples once; from then on they repeat.
        collector.record(&success).unwrap();
        collector.record(&failure).unwrap();
        group.bench_function(BenchmarkId::new(mode, "success"), |b| {
            b.iter(|| collector.record(black_box(&success)).unwrap());
        });
        group.bench_function(BenchmarkId::new(mode, "failure"), |b| {
            b.iter(|| collector.record(black_box(&failure)).unwrap());
        });
        // Still one tuple each (two if the run crossed midnight UTC).
        assert!(collector.tuple_count() <= 4);
    }
    group.finish();
}

/// CPU time of the calling thread: on a shared machine it moves much less
/// with other load than wall time does (caches are still shared).
fn thread_cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

fn bench_aggregate(
    c: &mut Criterion,
    policies: &[DomainPolicy],
    v: &Views<'_>,
) -> (Aggregate, Option<Duration>) {
    let cpu_times = std::cell::RefCell::new(Vec::new());
    let mut group = c.benchmark_group("tlsrpt_aggregate");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(20));
    group.bench_function(BenchmarkId::new("outcomes", OUTCOMES), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let dir = temp_dir();
                let collector =
                    Collector::open_with(dir.path(), Durability::Buffered { max_bytes: BUFFER })
                        .unwrap();
                let started = Instant::now();
                let cpu = thread_cpu_time();
                record_all(&collector, policies, v);
                total += started.elapsed();
                cpu_times
                    .borrow_mut()
                    .push(thread_cpu_time().saturating_sub(cpu));
                drop(collector);
            }
            total
        });
    });
    group.finish();
    // The aggregate the report bench builds from, checked for exact counts,
    // also after a restart (replayed from the log).
    let dir = temp_dir();
    let collector =
        Collector::open_with(dir.path(), Durability::Buffered { max_bytes: BUFFER }).unwrap();
    record_all(&collector, policies, v);
    let agg = collector.snapshot();
    drop(collector);
    assert_eq!(Collector::open(dir.path()).unwrap().snapshot(), agg);
    let total: u64 = agg.iter().map(|(_, n)| n).sum();
    assert_eq!(total, OUTCOMES as u64);
    let mut per_day: BTreeMap<Date, usize> = BTreeMap::new();
    for (k, _) in agg.iter() {
        *per_day.entry(k.day).or_default() += 1;
    }
    if per_day.len() == 1 {
        assert_eq!(agg.len(), 3 * DOMAINS);
    } else {
        println!("note: the run crossed midnight UTC: tuples per day {per_day:?}");
    }
    let mut cpu = cpu_times.into_inner();
    cpu.sort();
    (agg, cpu.get(cpu.len() / 2).copied())
}

/// The day most tuples were counted on (today, unless the run crossed
/// midnight UTC).
fn busiest_day(agg: &Aggregate) -> Date {
    let mut per_day: BTreeMap<Date, usize> = BTreeMap::new();
    for (k, _) in agg.iter() {
        *per_day.entry(k.day).or_default() += 1;
    }
    per_day
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .map(|(d, _)| d)
        .unwrap()
}

fn bench_build(c: &mut Criterion, agg: &Aggregate) -> (usize, usize) {
    let d = busiest_day(agg);
    let m = meta();
    let reports = TlsReport::build_day(agg, d, &m);
    let domains = reports.len();
    assert!(
        domains <= DOMAINS && domains * 2 > DOMAINS,
        "{domains} reports"
    );
    let gzip_bytes: usize = reports.iter().map(|r| r.to_gzip().unwrap().len()).sum();
    let mut group = c.benchmark_group("tlsrpt_build");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(20));
    group.bench_function(BenchmarkId::new("build_gzip", domains), |b| {
        b.iter(|| {
            let reports = TlsReport::build_day(agg, d, &m);
            let mut bytes = 0usize;
            for r in &reports {
                bytes += r.to_gzip().unwrap().len();
            }
            black_box(bytes)
        });
    });
    group.finish();
    (domains, gzip_bytes)
}

fn report(notes: &Notes, since: SystemTime) {
    let home = criterion_home();
    println!();
    println!("## TLS-RPT, medians of this run");
    println!();
    println!("| what | median | target |");
    println!("|---|---:|---|");
    for (group, function, parameter, what, target) in [
        (
            "tlsrpt_record",
            "buffered_repeated",
            "success".to_owned(),
            "`record` one outcome (Buffered, repeated success tuple)".to_owned(),
            Some(RECORD_TARGET_NS),
        ),
        (
            "tlsrpt_record",
            "buffered_repeated",
            "failure".to_owned(),
            "`record` one outcome (Buffered, repeated failure tuple)".to_owned(),
            Some(RECORD_TARGET_NS),
        ),
        (
            "tlsrpt_record",
            "every_record_repeated",
            "success".to_owned(),
            "`record` one outcome (EveryRecord: one write(2) each), success".to_owned(),
            None,
        ),
        (
            "tlsrpt_aggregate",
            "outcomes",
            OUTCOMES.to_string(),
            format!(
                "aggregate {OUTCOMES} outcomes, {DOMAINS} domains, {} tuples",
                notes.tuples
            ),
            Some(AGGREGATE_TARGET_NS),
        ),
        (
            "tlsrpt_build",
            "build_gzip",
            notes.reports.to_string(),
            format!(
                "build + gzip {} reports ({} KiB gzipped)",
                notes.reports,
                notes.gzip_bytes / 1024
            ),
            Some(BUILD_TARGET_NS),
        ),
    ] {
        match (
            read_estimate(&home, group, function, &parameter, since),
            target,
        ) {
            (Ok(e), Some(target)) => println!(
                "| {what} | {} | < {}: {} |",
                format_ns(e.median),
                format_ns(target),
                if e.median < target { "MET" } else { "MISSED" }
            ),
            (Ok(e), None) => println!("| {what} | {} | (reference) |", format_ns(e.median)),
            (Err(e), _) => println!("| {what} | n/a ({e}) | |"),
        }
    }
    if let Some(cpu) = notes.aggregate_cpu {
        let ns = cpu.as_nanos() as f64;
        println!(
            "| aggregate: CPU time of the recording thread (median of the runs) | {} | < {}: {} |",
            format_ns(ns),
            format_ns(AGGREGATE_TARGET_NS),
            if ns < AGGREGATE_TARGET_NS {
                "met"
            } else {
                "missed"
            }
        );
    }
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        println!();
        println!("load average at the end (2 cores): {}", load.trim());
    }
}

fn main() {
    let since = SystemTime::now() - Duration::from_secs(1);
    let policies: Vec<DomainPolicy> = (0..DOMAINS).map(DomainPolicy::new).collect();
    let v = views(&policies);
    let mut c = Criterion::default().configure_from_args();
    bench_record(&mut c, &policies, &v);
    let (agg, aggregate_cpu) = bench_aggregate(&mut c, &policies, &v);
    let (reports, gzip_bytes) = bench_build(&mut c, &agg);
    c.final_summary();
    if is_measurement_run() {
        report(
            &Notes {
                tuples: agg.len(),
                aggregate_cpu,
                reports,
                gzip_bytes,
            },
            since,
        );
    }
}
