//! Loading a certificate directory from disk: `SniResolver::reload_from_dir`
//! over 1,000 and 10,000 certificates, each a `NAME.crt` (leaf + CA, PEM) +
//! `NAME.key` (PKCS#8 PEM) pair, so 2,000 and 20,000 files. The files are
//! written once before measuring, so they are read from the page cache: this
//! measures listing, reading, PEM and X.509 parsing, key checks, rustls key
//! loading, the index build and the swap, not the disk.
//!
//! There is no peer: rustls has no directory loader.

// Bench setup: a failed fixture aborts the run, which is what it should do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::OnceCell;
use std::time::{Duration, Instant, SystemTime};

use criterion::{BenchmarkId, Criterion, SamplingMode};
use mailtls_benches::{
    TestPki, criterion_home, format_ns, is_measurement_run, provider, read_estimate,
};
use mailtls_sni::{ResolverOptions, SniResolver};

const SIZES: [usize; 2] = [1_000, 10_000];
/// The target for 10,000 certificates.
const LOAD_TARGET_NS: f64 = 5e9;

/// A directory of `n` pairs and a resolver already serving it, made once.
struct Loaded {
    dir: tempfile::TempDir,
    resolver: SniResolver,
}

fn loaded(pki: &TestPki, n: usize) -> Loaded {
    let started = Instant::now();
    let dir = pki.temp_dir_with_pairs(n);
    // Flush the new files so writeback does not run during the measurement.
    let _ = std::process::Command::new("sync").status();
    eprintln!(
        "fixtures: {n} certificate/key pairs written to {} in {:.1?}",
        dir.path().display(),
        started.elapsed()
    );
    let resolver = SniResolver::new(ResolverOptions::default().with_provider(provider()));
    let report = resolver.reload_from_dir(dir.path()).unwrap();
    assert_eq!(report.certificates, n);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    Loaded { dir, resolver }
}

fn load(c: &mut Criterion, pki: &TestPki) {
    // Criterion calls a benchmark's closure once per warm-up and sample
    // batch: the directory is made the first time only.
    let fixtures: [OnceCell<Loaded>; SIZES.len()] = Default::default();
    let mut group = c.benchmark_group("sni_load_dir");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1));
    for (k, n) in SIZES.into_iter().enumerate() {
        group.measurement_time(Duration::from_secs(if n >= 10_000 { 15 } else { 5 }));
        group.bench_with_input(BenchmarkId::new("reload_from_dir", n), &n, |b, &n| {
            let f = fixtures[k].get_or_init(|| loaded(pki, n));
            // Each reload also retires the previous index (same size).
            b.iter(|| f.resolver.reload_from_dir(f.dir.path()).unwrap());
        });
    }
    group.finish();
}

fn report(since: SystemTime) {
    let home = criterion_home();
    println!();
    println!(
        "## Directory load, medians of this run (criterion data in {})",
        home.display()
    );
    println!();
    println!("| certificates | files | reload_from_dir | per certificate |");
    println!("|---:|---:|---:|---:|");
    for n in SIZES {
        match read_estimate(
            &home,
            "sni_load_dir",
            "reload_from_dir",
            &n.to_string(),
            since,
        ) {
            Ok(e) => {
                println!(
                    "| {n} | {} | {} | {} |",
                    2 * n,
                    format_ns(e.median),
                    format_ns(e.median / n as f64)
                );
                if n == 10_000 {
                    println!();
                    println!(
                        "target: loading {n} certificates from disk < {}: {} -> {}",
                        format_ns(LOAD_TARGET_NS),
                        format_ns(e.median),
                        if e.median < LOAD_TARGET_NS {
                            "MET"
                        } else {
                            "MISSED"
                        }
                    );
                }
            }
            Err(e) => println!("| {n} | {} | n/a ({e}) | |", 2 * n),
        }
    }
}

fn main() {
    // Estimates older than this are from another run and are never reported.
    let since = SystemTime::now() - Duration::from_secs(1);
    let pki = TestPki::new();
    let mut c = Criterion::default().configure_from_args();
    load(&mut c, &pki);
    c.final_summary();
    if is_measurement_run() {
        report(since);
    }
}
