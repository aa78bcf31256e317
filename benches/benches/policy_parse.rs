//! MTA-STS parsing: a typical policy file (the RFC 8461 §3.2 example: three
//! `mx` lines, CRLF line ends) in the strict and the lenient profile, and the
//! `_mta-sts` TXT record. Target: a typical policy parses in under 1 µs.
//!
//! There is no peer here: the Python and Go resolvers are not libraries a
//! Rust bench can call in-process.

// Bench setup: a failed fixture aborts the run, which is what it should do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{BenchmarkId, Criterion};
use mailtls_benches::{criterion_home, format_ns, is_measurement_run, read_estimate};
use mailtls_policy::mta_sts::{PolicyMode, Profile, parse_policy, parse_record};

/// RFC 8461 §3.2's example policy.
const TYPICAL_POLICY: &[u8] = b"version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\n\
mx: *.example.net\r\nmx: backupmx.example.com\r\nmax_age: 604800\r\n";
/// RFC 8461 §3.1's example record.
const TYPICAL_RECORD: &[u8] = b"v=STSv1; id=20160831085700Z;";
const PARSE_TARGET_NS: f64 = 1_000.0;

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("policy_parse");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for (label, profile) in [("strict", Profile::Strict), ("lenient", Profile::Lenient)] {
        let parsed = parse_policy(TYPICAL_POLICY, profile).unwrap();
        assert_eq!(parsed.policy.mode(), PolicyMode::Enforce);
        assert_eq!(parsed.policy.mx().len(), 3);
        group.bench_with_input(BenchmarkId::new("policy", label), &profile, |b, &p| {
            b.iter(|| parse_policy(black_box(TYPICAL_POLICY), p).unwrap());
        });
    }
    parse_record(TYPICAL_RECORD).unwrap();
    group.bench_function(BenchmarkId::new("record", "rfc8461"), |b| {
        b.iter(|| parse_record(black_box(TYPICAL_RECORD)).unwrap());
    });
    group.finish();
}

fn report(since: SystemTime) {
    let home = criterion_home();
    println!();
    println!("## MTA-STS parsing, medians of this run");
    println!();
    println!("| what | median | target |");
    println!("|---|---:|---|");
    for (function, parameter, what, target) in [
        (
            "policy",
            "strict",
            "typical policy, strict",
            Some(PARSE_TARGET_NS),
        ),
        (
            "policy",
            "lenient",
            "typical policy, lenient",
            Some(PARSE_TARGET_NS),
        ),
        ("record", "rfc8461", "`_mta-sts` TXT record", None),
    ] {
        match read_estimate(&home, "policy_parse", function, parameter, since) {
            Ok(e) => println!(
                "| {what} | {} | {} |",
                format_ns(e.median),
                target.map_or_else(String::new, |t| format!(
                    "< {}: {}",
                    format_ns(t),
                    if e.median < t { "MET" } else { "MISSED" }
                ))
            ),
            Err(e) => println!("| {what} | n/a ({e}) | |"),
        }
    }
}

fn main() {
    let since = SystemTime::now() - Duration::from_secs(1);
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
    if is_measurement_run() {
        report(since);
    }
}
