//! SNI resolver benchmarks: lookups (exact, wildcard, miss, no SNI) at 10,
//! 1,000 and 100,000 certificates, with rustls's `ResolvesServerCertUsingSni`
//! measured in the same run for exact names, and index rebuild + swap at the
//! same sizes. After the groups, prints a table with the mailtls/rustls ratio
//! read back from criterion's estimates of this run.
//!
//! Each lookup iteration takes the next of 64 parsed ClientHellos (different
//! names spread over the set), calls `Accepted::client_hello()` and passes
//! it to `ResolvesServerCert::resolve`, then drops the returned `Arc`. The
//! `client_hello_only` group measures the first step alone, the overhead both
//! resolvers share.

// Bench setup: a failed fixture aborts the run, which is what it should do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::OnceCell;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use criterion::{BatchSize, BenchmarkId, Criterion, SamplingMode};
use mailtls_benches::{
    HelloFactory, Scenario, TestPki, format_ns, is_measurement_run, mailtls_resolver,
    read_estimate, rustls_peer,
};
use mailtls_core::name::canonical_lookup_key;
use mailtls_sni::index::{CertIndex, IndexInput, IndexOptions};
use mailtls_sni::{
    KeyAcceptance, PreparedCertificate, SniResolver, is_tls_alpn_01, key_acceptance,
};
use rustls::server::{Accepted, ResolvesServerCert, ResolvesServerCertUsingSni};

const SIZES: [usize; 3] = [10, 1_000, 100_000];
/// ClientHellos cycled through per scenario (a power of two: the index is masked).
const POOL: usize = 64;

/// The lookup target at 100,000 certificates.
const LOOKUP_TARGET_NS: f64 = 150.0;
/// The lookup target relative to rustls's exact-match lookup.
const RATIO_TARGET: f64 = 1.5;
/// The rebuild target at 100,000 certificates.
const REBUILD_TARGET_NS: f64 = 100e6;

/// Everything for one size, built the first time a benchmark needs it.
struct World {
    certs: Vec<PreparedCertificate>,
    mailtls: SniResolver,
    /// One pool per [`Scenario::ALL`] entry.
    pools: Vec<Vec<Accepted>>,
}

struct Fixtures {
    pki: TestPki,
    hellos: HelloFactory,
    worlds: [OnceCell<World>; SIZES.len()],
    peers: [OnceCell<ResolvesServerCertUsingSni>; SIZES.len()],
}

fn slot(n: usize) -> usize {
    SIZES
        .iter()
        .position(|s| *s == n)
        .expect("a benchmarked size")
}

impl Fixtures {
    fn new() -> Self {
        let pki = TestPki::new();
        let hellos = HelloFactory::new(&pki);
        Fixtures {
            pki,
            hellos,
            worlds: Default::default(),
            peers: Default::default(),
        }
    }

    fn world(&self, n: usize) -> &World {
        self.worlds[slot(n)].get_or_init(|| {
            let started = std::time::Instant::now();
            let certs = self.pki.prepared_set(n);
            let mailtls = mailtls_resolver(&certs);
            let pools = Scenario::ALL
                .iter()
                .map(|scenario| {
                    scenario
                        .probes(n, POOL)
                        .into_iter()
                        .map(|probe| {
                            let accepted = self.hellos.accepted(probe.sni.as_deref());
                            // Check what is measured is what is claimed.
                            let got = mailtls.resolve(accepted.client_hello()).unwrap();
                            assert!(
                                Arc::ptr_eq(&got, &certs[probe.expected].certified),
                                "{scenario:?} {probe:?} got the wrong certificate"
                            );
                            accepted
                        })
                        .collect()
                })
                .collect();
            eprintln!(
                "fixtures: {n} certificates, resolver and ClientHellos ready in {:.1?}",
                started.elapsed()
            );
            World {
                certs,
                mailtls,
                pools,
            }
        })
    }

    fn peer(&self, n: usize) -> &ResolvesServerCertUsingSni {
        self.peers[slot(n)].get_or_init(|| {
            let world = self.world(n);
            let started = std::time::Instant::now();
            let peer = rustls_peer(&world.certs);
            for accepted in &world.pools[0] {
                assert!(peer.resolve(accepted.client_hello()).is_some());
            }
            eprintln!(
                "fixtures: rustls ResolvesServerCertUsingSni with {n} certificates in {:.1?}",
                started.elapsed()
            );
            peer
        })
    }
}

/// One lookup per iteration, cycling through `pool`.
fn bench_lookups(
    b: &mut criterion::Bencher<'_>,
    resolver: &dyn ResolvesServerCert,
    pool: &[Accepted],
) {
    assert!(pool.len().is_power_of_two());
    let mask = pool.len() - 1;
    let mut i = 0usize;
    b.iter(|| {
        i = (i + 1) & mask;
        resolver.resolve(black_box(&pool[i]).client_hello())
    });
}

fn lookups(c: &mut Criterion, fx: &Fixtures) {
    for (s, scenario) in Scenario::ALL.into_iter().enumerate() {
        let mut group = c.benchmark_group(format!("sni_lookup_{}", scenario.label()));
        group
            .warm_up_time(Duration::from_millis(700))
            .measurement_time(Duration::from_secs(3));
        for n in SIZES {
            group.bench_with_input(BenchmarkId::new("mailtls", n), &n, |b, &n| {
                let world = fx.world(n);
                bench_lookups(b, &world.mailtls, &world.pools[s]);
            });
            if scenario == Scenario::Exact {
                group.bench_with_input(BenchmarkId::new("rustls", n), &n, |b, &n| {
                    let peer = fx.peer(n);
                    bench_lookups(b, peer, &fx.world(n).pools[s]);
                });
            }
        }
        group.finish();
    }

    let mut group = c.benchmark_group("sni_lookup_client_hello_only");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for n in SIZES {
        group.bench_with_input(BenchmarkId::new("client_hello", n), &n, |b, &n| {
            let pool = &fx.world(n).pools[0];
            let mut i = 0usize;
            b.iter(|| {
                i = (i + 1) & (POOL - 1);
                black_box(black_box(&pool[i]).client_hello());
            });
        });
    }
    group.finish();
}

/// The exact-hit lookup at the largest size taken apart, to show where
/// mailtls's time goes: `resolve` = `client_hello` + ALPN check +
/// `key_acceptance` + `resolve_name`; `resolve_name` = `ArcSwap` load +
/// `CertIndex::resolve` + one counter; `CertIndex::resolve` =
/// `canonical_lookup_key` + hash probe + candidate choice + `Arc` clone.
fn lookup_parts(c: &mut Criterion, fx: &Fixtures) {
    let n = SIZES[SIZES.len() - 1];
    let mut group = c.benchmark_group("sni_lookup_parts");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    group.bench_with_input(BenchmarkId::new("key_acceptance", n), &n, |b, &n| {
        let pool = &fx.world(n).pools[0];
        let mut i = 0usize;
        b.iter(|| {
            i = (i + 1) & (POOL - 1);
            let ch = black_box(&pool[i]).client_hello();
            (is_tls_alpn_01(&ch), key_acceptance(&ch))
        });
    });
    // Criterion calls a benchmark's closure once per warm-up and sample
    // batch: anything costly is made the first time only.
    let names: OnceCell<Vec<String>> = OnceCell::new();
    let names = || {
        names.get_or_init(|| {
            fx.world(n).pools[0]
                .iter()
                .map(|a| a.client_hello().server_name().unwrap().to_owned())
                .collect()
        })
    };
    group.bench_with_input(BenchmarkId::new("canonical_lookup_key", n), &n, |b, _| {
        let names = names();
        let mut i = 0usize;
        b.iter(|| {
            i = (i + 1) & (POOL - 1);
            canonical_lookup_key(black_box(&names[i])).map(|k| k.len())
        });
    });
    let index = OnceCell::new();
    group.bench_with_input(BenchmarkId::new("index_resolve", n), &n, |b, &n| {
        let names = names();
        let index = index.get_or_init(|| {
            let inputs = fx
                .world(n)
                .certs
                .iter()
                .map(|c| IndexInput {
                    payload: Arc::clone(&c.certified),
                    info: Arc::clone(&c.info),
                    names: Arc::clone(&c.names),
                    source: Arc::clone(&c.source),
                    aliases: Vec::new(),
                })
                .collect();
            CertIndex::build(inputs, &IndexOptions::default(), SystemTime::now(), 1).unwrap()
        });
        let mut i = 0usize;
        b.iter(|| {
            i = (i + 1) & (POOL - 1);
            index
                .resolve(Some(black_box(&names[i])), || KeyAcceptance::ALL)
                .map(|(k, _)| Arc::clone(k))
        });
    });
    group.bench_with_input(BenchmarkId::new("resolve_name", n), &n, |b, &n| {
        let names = names();
        let resolver = &fx.world(n).mailtls;
        let mut i = 0usize;
        b.iter(|| {
            i = (i + 1) & (POOL - 1);
            resolver.resolve_name(Some(black_box(&names[i])), KeyAcceptance::ALL)
        });
    });
    group.finish();
}

fn rebuild(c: &mut Criterion, fx: &Fixtures) {
    // A resolver per size that already serves the set, so every measured
    // reload also retires (drops) a same-sized index; made once.
    let resolvers: [OnceCell<SniResolver>; SIZES.len()] = Default::default();
    let mut group = c.benchmark_group("sni_rebuild_swap");
    for n in SIZES {
        if n >= 100_000 {
            group
                .sampling_mode(SamplingMode::Flat)
                .sample_size(10)
                .warm_up_time(Duration::from_secs(1))
                .measurement_time(Duration::from_secs(8));
        } else {
            group
                .sampling_mode(SamplingMode::Auto)
                .sample_size(50)
                .warm_up_time(Duration::from_millis(700))
                .measurement_time(Duration::from_secs(3));
        }
        group.bench_with_input(BenchmarkId::new("mailtls_reload", n), &n, |b, &n| {
            let world = fx.world(n);
            let resolver = resolvers[slot(n)].get_or_init(|| mailtls_resolver(&world.certs));
            let batch = if n >= 100_000 {
                BatchSize::PerIteration
            } else {
                BatchSize::LargeInput
            };
            b.iter_batched(
                || world.certs.clone(),
                |certs| resolver.reload(certs).unwrap(),
                batch,
            );
        });
    }
    group.finish();
}

/// Prints the table of this run's medians with the mailtls/rustls ratios.
fn report(since: SystemTime) {
    let home = mailtls_benches::criterion_home();
    let get = |group: &str, function: &str, n: usize| {
        read_estimate(&home, group, function, &n.to_string(), since)
    };
    let cell = |r: &Result<mailtls_benches::Estimate, String>| {
        r.as_ref()
            .map_or_else(|_| "n/a".to_owned(), |e| format_ns(e.median))
    };
    let mut missing = Vec::new();
    println!();
    println!(
        "## SNI resolver, medians of this run (criterion data in {})",
        home.display()
    );
    println!();
    println!(
        "| certificates | exact | wildcard | miss (default) | no SNI (default) | rustls exact | exact / rustls | worst / rustls | ClientHello only | rebuild + swap |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut verdicts = Vec::new();
    for n in SIZES {
        let ours: Vec<_> = Scenario::ALL
            .iter()
            .map(|s| get(&format!("sni_lookup_{}", s.label()), "mailtls", n))
            .collect();
        let peer = get("sni_lookup_exact", "rustls", n);
        let base = get("sni_lookup_client_hello_only", "client_hello", n);
        let rebuild = get("sni_rebuild_swap", "mailtls_reload", n);
        for r in ours.iter().chain([&peer, &base, &rebuild]) {
            if let Err(e) = r {
                missing.push(e.clone());
            }
        }
        let ratio = |x: &Result<mailtls_benches::Estimate, String>| match (x, &peer) {
            (Ok(a), Ok(p)) => Some(a.median / p.median),
            _ => None,
        };
        let exact_ratio = ratio(&ours[0]);
        let worst = ours
            .iter()
            .filter_map(|r| r.as_ref().ok().map(|e| e.median))
            .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))));
        let worst_ratio = match (worst, &peer) {
            (Some(w), Ok(p)) => Some(w / p.median),
            _ => None,
        };
        let fmt_ratio = |r: Option<f64>| r.map_or_else(|| "n/a".to_owned(), |r| format!("{r:.2}x"));
        println!(
            "| {n} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            cell(&ours[0]),
            cell(&ours[1]),
            cell(&ours[2]),
            cell(&ours[3]),
            cell(&peer),
            fmt_ratio(exact_ratio),
            fmt_ratio(worst_ratio),
            cell(&base),
            cell(&rebuild),
        );
        if n == 100_000 {
            if let Some(w) = worst {
                verdicts.push(format!(
                    "lookup at {n} <= {LOOKUP_TARGET_NS} ns: slowest scenario {} -> {}",
                    format_ns(w),
                    if w <= LOOKUP_TARGET_NS {
                        "MET"
                    } else {
                        "MISSED"
                    }
                ));
            }
            if let Some(r) = worst_ratio {
                verdicts.push(format!(
                    "lookup at {n} within {RATIO_TARGET}x of rustls exact: slowest scenario {r:.2}x, exact {} -> {}",
                    fmt_ratio(exact_ratio),
                    if r <= RATIO_TARGET { "MET" } else { "MISSED" }
                ));
            }
            if let Ok(e) = &rebuild {
                verdicts.push(format!(
                    "rebuild + swap at {n} < {} : {} -> {}",
                    format_ns(REBUILD_TARGET_NS),
                    format_ns(e.median),
                    if e.median < REBUILD_TARGET_NS {
                        "MET"
                    } else {
                        "MISSED"
                    }
                ));
            }
        }
    }
    println!();
    for v in &verdicts {
        println!("target: {v}");
    }
    let n = SIZES[SIZES.len() - 1];
    println!();
    println!("exact hit at {n} certificates, taken apart (medians):");
    println!();
    println!("| step | median |");
    println!("|---|---:|");
    for (label, group, function) in [
        (
            "`SniResolver::resolve(ClientHello)` (the whole lookup)",
            "sni_lookup_exact",
            "mailtls",
        ),
        (
            "`Accepted::client_hello()` (shared with rustls)",
            "sni_lookup_client_hello_only",
            "client_hello",
        ),
        (
            "`client_hello()` + `is_tls_alpn_01` + `key_acceptance`",
            "sni_lookup_parts",
            "key_acceptance",
        ),
        (
            "`SniResolver::resolve_name` (ArcSwap load, index, counter)",
            "sni_lookup_parts",
            "resolve_name",
        ),
        (
            "`CertIndex::resolve` (normalise, probe, choose, Arc clone)",
            "sni_lookup_parts",
            "index_resolve",
        ),
        (
            "`canonical_lookup_key` alone",
            "sni_lookup_parts",
            "canonical_lookup_key",
        ),
        (
            "rustls `ResolvesServerCertUsingSni::resolve` (whole lookup)",
            "sni_lookup_exact",
            "rustls",
        ),
    ] {
        let r = get(group, function, n);
        if let Err(e) = &r {
            missing.push(e.clone());
        }
        println!("| {label} | {} |", cell(&r));
    }
    if !missing.is_empty() {
        println!();
        println!(
            "{} estimate(s) missing (filtered out, or criterion wrote elsewhere); those cells show n/a:",
            missing.len()
        );
        for m in missing {
            println!("  {m}");
        }
    }
}

fn main() {
    // Estimates older than this are from another run and are never reported.
    let since = SystemTime::now() - Duration::from_secs(1);
    let fx = Fixtures::new();
    let mut c = Criterion::default().configure_from_args();
    lookups(&mut c, &fx);
    lookup_parts(&mut c, &fx);
    rebuild(&mut c, &fx);
    c.final_summary();
    if is_measurement_run() {
        report(since);
    }
}
