//! The MTA-STS policy cache with 1,000,000 domains: resident memory of the
//! whole process once it is filled, read from `/proc/self/status`, and the
//! lookup the delivery path makes for every
//! message (`PolicyCache::valid_policy`: hash, probe, expiry check, clone of
//! the id and the policy `Arc`), from an already parsed `DnsName` and from a
//! recipient domain string (parse included).
//!
//! Targets: lookup under 300 ns, resident memory under 512 MiB.
//!
//! The domains are modelled on real MTA-STS deployments: most domains have
//! their mail hosted by a provider and publish that provider's patterns
//! (`*.mail.protection.outlook.com`, the `aspmx.l.google.com` set, ...), in
//! policies that still differ in mode, `max_age` and line ends; the rest
//! run their own MX, with two `mx` lines naming the domain. Every domain has
//! its own policy id and its own fetched, parsed policy. The share of
//! self-hosted domains is `POLICY_CACHE_SELF_HOSTED_PERCENT` (default 30;
//! 100 gives the worst case, no two domains sharing a pattern).

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

/// Share of self-hosted domains when the environment does not say.
const SELF_HOSTED_PERCENT: usize = 30;

fn domain(i: usize) -> String {
    format!("d{i}.example")
}

/// The `mx` lines of hosted-mail providers' sample policies.
const PROVIDERS: &[&[&str]] = &[
    &["*.mail.protection.outlook.com"],
    &["aspmx.l.google.com", "*.aspmx.l.google.com"],
    &[
        "aspmx.l.google.com",
        "alt1.aspmx.l.google.com",
        "alt2.aspmx.l.google.com",
        "alt3.aspmx.l.google.com",
        "alt4.aspmx.l.google.com",
    ],
    &["*.google.com"],
    &["mail.protonmail.ch", "mailsec.protonmail.ch"],
    &[
        "in1-smtp.messagingengine.com",
        "in2-smtp.messagingengine.com",
    ],
    &["mx.zoho.eu", "mx2.zoho.eu", "mx3.zoho.eu"],
    &[
        "mxext1.mailbox.org",
        "mxext2.mailbox.org",
        "mxext3.mailbox.org",
    ],
    &["*.mimecast.com"],
    &["*.pphosted.com"],
    &["mx01.mail.icloud.com", "mx02.mail.icloud.com"],
    &["*.secureserver.net"],
];

const MAX_AGES: [u32; 5] = [86_400, 604_800, 1_209_600, 2_592_000, 31_557_600];

fn self_hosted_percent() -> usize {
    std::env::var("POLICY_CACHE_SELF_HOSTED_PERCENT")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|p| *p <= 100)
        .unwrap_or(SELF_HOSTED_PERCENT)
}

/// The policy text domain `i` publishes: self-hosted for `self_hosted` out
/// of every 100 domains, otherwise one of the providers' patterns with a
/// mode, `max_age` and line end of its own choosing (240 distinct texts).
fn policy_text(i: usize, d: &str, self_hosted: usize) -> String {
    // A multiplicative hash spreads the kinds evenly over the domains.
    let h = i.wrapping_mul(2_654_435_761) >> 7;
    if h % 100 < self_hosted {
        return format!(
            "version: STSv1\r\nmode: enforce\r\nmx: mx1.{d}\r\nmx: *.mx.{d}\r\nmax_age: 604800\r\n"
        );
    }
    let h = h / 100;
    let eol = if h.is_multiple_of(2) { "\r\n" } else { "\n" };
    let mode = if h / 2 % 10 < 7 { "enforce" } else { "testing" };
    let max_age = MAX_AGES[h / 20 % MAX_AGES.len()];
    let mut text = format!("version: STSv1{eol}mode: {mode}{eol}");
    for mx in PROVIDERS[h / 100 % PROVIDERS.len()] {
        text.push_str(&format!("mx: {mx}{eol}"));
    }
    text.push_str(&format!("max_age: {max_age}{eol}"));
    text
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
    let self_hosted = self_hosted_percent();
    for i in 0..DOMAINS {
        let d = domain(i);
        let name = DnsName::parse(&d).unwrap();
        // Ids differ per domain, as publication timestamps do.
        let id = PolicyId::parse(&format!("2026{:04}T{:06}", i % 1231, i % 999_983)).unwrap();
        let body = policy_text(i, &d, self_hosted);
        let policy = parse_policy(body.as_bytes(), Profile::Strict)
            .unwrap()
            .policy;
        cache.store(&name, id, policy, now);
    }
    assert_eq!(cache.len(), DOMAINS);
    let rss_after_kib = rss_kib();
    eprintln!(
        "fixtures: {DOMAINS} domains ({self_hosted}% self-hosted) cached in {:.1?}; resident {} MiB before, {} MiB after",
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
