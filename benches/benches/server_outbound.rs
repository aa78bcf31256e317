//! Outbound delivery from the reference server to a local Postfix over TLS
//! with MTA-STS enforce (issue 7, "Numbers", outbound): messages per second,
//! and the added latency of policy evaluation per message.
//!
//! The world, all on loopback and started by the bench: NSD serving a
//! DNSSEC-signed root and `test.` zone (the server validates from its key)
//! with two recipient domains whose MX is the same Postfix on 127.0.0.2:
//! `sts.test`, with an MTA-STS `enforce` policy (`_mta-sts` TXT, policy
//! served over HTTPS by a small policy host), and `plain.test`, without
//! any policy (opportunistic STARTTLS). Postfix (Debian, `master -d` from a
//! temporary directory) accepts both over STARTTLS with a certificate from
//! a test CA the server trusts, and delivers into a Maildir through
//! virtual(8). The support code is the examples' outbound test harness
//! (examples/tests/outbound_support), shared by path; its NSD runs with
//! response rate limiting off (Debian builds NSD with a default of 200
//! answers per second per source, which a busy MTA exceeds).
//!
//! Measured:
//! - delivered per second: [`WRITERS`] submission sessions (STARTTLS,
//!   AUTH) put [`BATCH`] messages into the server, which delivers them
//!   (`outbound.max_concurrent` sessions at a time, one SMTP session per
//!   message); the clock runs from the first submission until the server's
//!   queue is empty, i.e. Postfix has accepted every message (its Maildir
//!   is counted after all rounds). The two domains take turns, [`ROUNDS`] rounds
//!   each. Every delivered message is checked for Postfix's `using TLS`
//!   Received line, and, after the run, the server's TLS-RPT counts for
//!   `sts.test` show the sessions succeeded under the STS policy.
//! - the policy evaluation the server runs before it connects, with the
//!   same library calls (`MtaSts::policy_for`, `plan::gather`,
//!   `plan::plan`) against the same DNS and policy host, caches warm:
//!   criterion's `outbound_policy_eval` group: the whole evaluation for
//!   each domain, and for `sts.test` its parts (the cached MTA-STS policy
//!   lookup, the DNS facts). The end-to-end difference of the two domains'
//!   per-message times is shown beside it.
//!
//! Under `cargo test --benches`: one round of a few messages per domain.
//! About 40 s with `cargo bench`. Needs root and the Debian packages
//! `postfix`, `nsd` and `ldnsutils`.

// Bench setup: a failed fixture aborts the run, which is what it should do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../examples/tests/common/mod.rs"]
mod common;
#[path = "../../mailtls-policy/tests/mta_sts_common/mod.rs"]
mod mta_sts_common;
#[path = "../../examples/tests/outbound_support/mod.rs"]
mod outbound_support;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use criterion::{BenchmarkId, Criterion};
use mailtls_benches::{criterion_home, format_ns, is_measurement_run, read_estimate};
use mailtls_core::{DnsName, NamePattern, ServerCertSpec};
use mailtls_policy::dns::{DnsResolver, HickoryResolver, HickoryResolverConfig, Validation};
use mailtls_policy::mta_sts::{FetcherConfig, MtaSts, PolicyCache, PolicyFetcher, PolicyOutcome};
use mailtls_policy::plan::{gather, plan};
use mailtls_policy::requiretls::TlsDemand;
use mailtls_policy::result_type::PolicyType;
use mailtls_policy::tlsrpt::Collector;

use common::{TestServer, client_config, connect, start, upgrade};
use outbound_support::{PostfixMx, SignedRoot, free_port, test_ca, write_ca_file};

/// The domain with an MTA-STS enforce policy.
const STS: &str = "sts.test";
/// The domain without any policy.
const PLAIN: &str = "plain.test";
/// Where Postfix listens (a second loopback address: the MX's A record).
const MX_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
/// Messages per round and domain.
const BATCH: usize = 200;
/// Rounds per domain.
const ROUNDS: usize = 2;
/// Concurrent submission sessions.
const WRITERS: usize = 8;
/// How long a batch may take before the bench gives up.
const BATCH_LIMIT: Duration = Duration::from_secs(120);
const GROUP: &str = "outbound_policy_eval";

/// Submits one message over the submission port (STARTTLS, AUTH PLAIN as
/// the embedded test user).
async fn submit_one(ts: &TestServer, rcpt: &str, subject: &str) {
    let mut c = connect(ts.addr(mailtls_examples::MailListener::Submission)).await;
    assert_eq!(c.reply().await.0, 220);
    assert_eq!(c.cmd("EHLO client.example").await.0, 250);
    assert_eq!(c.cmd("STARTTLS").await.0, 220);
    let mut c = upgrade(c, client_config(&ts.ca_file()), "mail.example.test").await;
    assert_eq!(c.cmd("EHLO client.example").await.0, 250);
    // base64("\0test\0test")
    let (code, text) = c.cmd("AUTH PLAIN AHRlc3QAdGVzdA==").await;
    assert_eq!(code, 235, "{text}");
    let (code, text) = c.cmd("MAIL FROM:<test@example.test>").await;
    assert_eq!(code, 250, "{text}");
    let (code, text) = c.cmd(&format!("RCPT TO:<{rcpt}>")).await;
    assert_eq!(code, 250, "{text}");
    assert_eq!(c.cmd("DATA").await.0, 354);
    c.send(&format!("Subject: {subject}")).await;
    c.send("").await;
    c.send("A short message for the outbound bench.").await;
    let (code, text) = c.cmd(".").await;
    assert_eq!(code, 250, "{text}");
    assert_eq!(c.cmd("QUIT").await.0, 221);
}

/// What one batch took.
#[derive(Debug, Clone, Copy)]
struct Batch {
    messages: usize,
    /// First submission to the last one accepted.
    accepted: Duration,
    /// First submission to the last one in Postfix's Maildir.
    delivered: Duration,
}

/// Messages in the server's queue (state files; a finished message's is
/// removed once the next hop accepted it for every recipient).
fn queued(data_dir: &Path) -> usize {
    std::fs::read_dir(data_dir.join("queue")).map_or(0, |entries| {
        entries
            .filter_map(Result::ok)
            .filter(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name.ends_with(".json") && !name.starts_with('.')
            })
            .count()
    })
}

/// Submits `n` messages to `user@domain` with `WRITERS` sessions at a time
/// and waits until the server's queue is empty again: Postfix has accepted
/// every one (its Maildir is checked after all rounds).
async fn batch(ts: &Arc<TestServer>, domain: &str, tag: &str, n: usize) -> Batch {
    let t0 = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut writers = tokio::task::JoinSet::new();
    for _ in 0..WRITERS.min(n) {
        let ts = Arc::clone(ts);
        let next = Arc::clone(&next);
        let rcpt = format!("user@{domain}");
        let tag = tag.to_owned();
        writers.spawn(async move {
            loop {
                let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if k >= n {
                    break;
                }
                submit_one(&ts, &rcpt, &format!("{tag} {k}")).await;
            }
        });
    }
    while let Some(w) = writers.join_next().await {
        w.expect("a submission failed");
    }
    let accepted = t0.elapsed();
    loop {
        let left = queued(ts.data_dir());
        if left == 0 {
            break;
        }
        assert!(
            t0.elapsed() < BATCH_LIMIT,
            "{tag}: {left} of {n} messages still queued after {BATCH_LIMIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Batch {
        messages: n,
        accepted,
        delivered: t0.elapsed(),
    }
}

/// The evaluation `deliver_mx` runs before connecting: MTA-STS policy,
/// DNS facts (MX, A/AAAA, TLSA, DNSSEC status), the plan.
async fn evaluate(resolver: &Arc<dyn DnsResolver>, sts: &MtaSts, domain: &DnsName) -> usize {
    let policy = match sts.policy_for(domain).await {
        PolicyOutcome::Policy { policy, .. } => Some(policy),
        _ => None,
    };
    let facts = gather(resolver.as_ref(), domain, policy).await;
    plan(&facts, TlsDemand::Default).entries.len()
}

fn main() {
    let since = SystemTime::now() - Duration::from_secs(1);
    let measuring = is_measurement_run();
    let (batch_size, rounds) = if measuring { (BATCH, ROUNDS) } else { (5, 1) };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();

    // The world.
    let policy_host = rt.block_on(mta_sts_common::PolicyHost::start(&[STS]));
    policy_host.set(
        STS,
        mta_sts_common::Reply::policy(&format!(
            "version: STSv1\r\nmode: enforce\r\nmx: mx.{STS}\r\nmax_age: 86400\r\n"
        )),
    );
    let world = SignedRoot::start(&format!(
        "{STS}. MX 10 mx.{STS}.\n\
         mx.{STS}. A {MX_IP}\n\
         _mta-sts.{STS}. TXT \"v=STSv1; id=20261124\"\n\
         mta-sts.{STS}. A 127.0.0.1\n\
         {PLAIN}. MX 10 mx.{PLAIN}.\n\
         mx.{PLAIN}. A {MX_IP}\n"
    ));
    let ca = test_ca();
    let mut spec = ServerCertSpec::new(DnsName::parse(&format!("mx.{STS}")).unwrap());
    spec.extra_names = vec![NamePattern::parse(&format!("mx.{PLAIN}")).unwrap()];
    let mx_cert = ca.issue(&spec).unwrap();
    let port = free_port(&[MX_IP]);
    let mx = PostfixMx::start(
        SocketAddr::from((MX_IP, port)),
        &format!("mx.{STS}"),
        &mx_cert.chain_pem(),
        mx_cert.key_pem(),
        &[STS, PLAIN],
    );
    let roots_dir = tempfile::tempdir().unwrap();
    let ca_file = write_ca_file(
        roots_dir.path(),
        "test-roots.pem",
        &[
            &ca.certificate().cert_pem,
            &policy_host.ca.certificate().cert_pem,
        ],
    );
    let ts = Arc::new(rt.block_on(start(|c, _dir| {
        let o = &mut c.outbound;
        o.enabled = true;
        o.dns_server = Some(world.addr);
        o.trust_anchor = Some(world.anchor.clone());
        o.mx_port = port;
        o.retry = vec![Duration::from_secs(1)];
        o.timeout = Duration::from_secs(10);
        o.ca_file = Some(ca_file.clone());
        o.mta_sts_fetch_port = policy_host.addr.port();
    })));
    let max_concurrent = ts.server.config().outbound.max_concurrent;

    // Warm-up: the policy is fetched, DNS and TLS caches fill.
    let mut delivered = 0;
    for domain in [STS, PLAIN] {
        rt.block_on(batch(&ts, domain, "warm-up", 4));
        delivered += 4;
    }
    assert!(policy_host.hits() >= 1, "the MTA-STS policy was fetched");

    // Delivery rounds, the domains taking turns.
    let mut results: Vec<(&str, Batch)> = Vec::new();
    for round in 0..rounds {
        let order = if round % 2 == 0 {
            [STS, PLAIN]
        } else {
            [PLAIN, STS]
        };
        for domain in order {
            let b = rt.block_on(batch(&ts, domain, &format!("r{round}"), batch_size));
            delivered += b.messages;
            eprintln!(
                "round {round} {domain}: {} messages accepted in {:.2?}, delivered in {:.2?} ({:.1}/s)",
                b.messages,
                b.accepted,
                b.delivered,
                b.messages as f64 / b.delivered.as_secs_f64()
            );
            results.push((domain, b));
        }
    }
    // Postfix's own local delivery into the Maildir may still be running.
    let deadline = Instant::now() + BATCH_LIMIT;
    let messages = loop {
        let messages = mx.messages();
        if messages.len() >= delivered || Instant::now() > deadline {
            break messages;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        messages.len(),
        delivered,
        "Postfix holds every message once; its log:\n{}",
        mx.log()
    );
    let without_tls = messages.iter().filter(|m| !m.contains("using TLS")).count();
    assert_eq!(without_tls, 0, "every message arrived over TLS");

    // The evaluation itself, with the same calls against the same world.
    let resolver: Arc<dyn DnsResolver> = Arc::new(
        HickoryResolver::new(HickoryResolverConfig::nameserver(
            world.addr,
            Validation::AnchorFile(world.anchor.clone()),
        ))
        .unwrap(),
    );
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(policy_host.ca.certificate().cert_der.clone())
        .unwrap();
    let mut fetch = FetcherConfig::new(roots);
    fetch.port = policy_host.addr.port();
    let cache_dir = tempfile::tempdir().unwrap();
    let sts = MtaSts::new(
        Arc::clone(&resolver),
        PolicyFetcher::new(
            fetch,
            Arc::clone(&resolver),
            Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
        )
        .unwrap(),
        PolicyCache::open(cache_dir.path()).unwrap(),
    );
    let sts_domain = DnsName::parse(STS).unwrap();
    let plain_domain = DnsName::parse(PLAIN).unwrap();
    for d in [&sts_domain, &plain_domain] {
        assert_eq!(
            rt.block_on(evaluate(&resolver, &sts, d)),
            1,
            "{d}: one MX in the plan"
        );
    }
    assert!(matches!(
        rt.block_on(sts.policy_for(&sts_domain)),
        PolicyOutcome::Policy { .. }
    ));

    let mut c = Criterion::default().without_plots().configure_from_args();
    {
        let mut group = c.benchmark_group(GROUP);
        group
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(3));
        group.bench_with_input(BenchmarkId::new("policy_for", STS), &sts_domain, |b, d| {
            b.iter(|| rt.block_on(sts.policy_for(d)));
        });
        // The DNS part alone (MX, A/AAAA, TLSA, DNSSEC status), with the
        // policy already in hand.
        let policy = match rt.block_on(sts.policy_for(&sts_domain)) {
            PolicyOutcome::Policy { policy, .. } => Some(policy),
            _ => None,
        };
        group.bench_with_input(BenchmarkId::new("gather", STS), &sts_domain, |b, d| {
            b.iter(|| rt.block_on(gather(resolver.as_ref(), d, policy.clone())));
        });
        for d in [&sts_domain, &plain_domain] {
            group.bench_with_input(BenchmarkId::new("evaluate", d.as_str()), d, |b, d| {
                b.iter(|| rt.block_on(evaluate(&resolver, &sts, d)));
            });
        }
        group.finish();
    }
    c.final_summary();

    // Stop the server, then read its TLS-RPT counts.
    let data_dir = ts.data_dir().to_owned();
    let ts = Arc::into_inner(ts).expect("no submission holds the server");
    let TestServer { server, dir } = ts;
    rt.block_on(server.shutdown());
    let collector = Collector::open(data_dir.join("tlsrpt")).unwrap();
    let sts_ok: u64 = collector
        .snapshot()
        .iter()
        .filter(|(k, _)| {
            k.policy.policy_type == PolicyType::Sts && k.policy.domain == STS && k.failure.is_none()
        })
        .map(|(_, n)| n)
        .sum();
    let sts_sent = 4 + results
        .iter()
        .filter(|(d, _)| *d == STS)
        .map(|(_, b)| b.messages)
        .sum::<usize>();
    assert_eq!(
        sts_ok, sts_sent as u64,
        "every {STS} session counted as an STS-policy success"
    );
    drop(dir);

    if measuring {
        report(&results, max_concurrent, sts_ok, since);
    } else {
        println!("(smoke run: not a measurement; `cargo bench` prints the table)");
    }
}

/// [`format_ns`] for a difference that may be negative.
fn signed_ns(ns: f64) -> String {
    if ns < 0.0 {
        format!("-{}", format_ns(-ns))
    } else {
        format_ns(ns)
    }
}

fn report(results: &[(&str, Batch)], max_concurrent: usize, sts_ok: u64, since: SystemTime) {
    let home = criterion_home();
    let get = |function: &str, domain: &str| {
        read_estimate(&home, GROUP, function, domain, since)
            .map_err(|e| eprintln!("{e}"))
            .ok()
            .map(|e| e.median)
    };
    let cell = |x: Option<f64>| x.map_or_else(|| "n/a".to_owned(), format_ns);
    let total = |domain: &str| {
        results.iter().filter(|(d, _)| *d == domain).fold(
            (0usize, Duration::ZERO, Duration::ZERO),
            |(n, a, t), (_, b)| (n + b.messages, a + b.accepted, t + b.delivered),
        )
    };
    println!();
    println!(
        "## Outbound delivery to a local Postfix over STARTTLS, this run ({WRITERS} submission sessions, outbound.max_concurrent = {max_concurrent}, {ROUNDS} rounds of {BATCH} messages per domain)"
    );
    println!();
    println!(
        "| recipient domain | messages | accepted/s | delivered/s | wall per message (1 / rate) | evaluation before connecting (median) |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    let mut per_message = Vec::new();
    for (domain, label) in [
        (STS, "sts.test (MTA-STS enforce)"),
        (PLAIN, "plain.test (no policy)"),
    ] {
        let (n, accepted, delivered) = total(domain);
        let each = delivered.as_secs_f64() / n as f64;
        per_message.push(each);
        println!(
            "| {label} | {n} | {:.1} | {:.1} | {} | {} |",
            n as f64 / accepted.as_secs_f64(),
            n as f64 / delivered.as_secs_f64(),
            format_ns(each * 1e9),
            cell(get("evaluate", domain)),
        );
    }
    println!();
    println!(
        "policy evaluation per message before connecting, MTA-STS enforce ({STS}): {} = `MtaSts::policy_for` (cached policy, TXT id check) {} + DNS facts (`gather`: MX, A/AAAA, TLSA, DNSSEC status) {} + plan",
        cell(get("evaluate", STS)),
        cell(get("policy_for", STS)),
        cell(get("gather", STS)),
    );
    println!(
        "the same for a domain without a policy ({PLAIN}): {} (its negative `_mta-sts` answer comes from the resolver's cache after the first message)",
        cell(get("evaluate", PLAIN)),
    );
    println!(
        "end to end, wall time per message (1 / delivered rate) with the policy minus without: {} (includes certificate verification against the policy, and noise)",
        signed_ns((per_message[0] - per_message[1]) * 1e9)
    );
    println!("TLS-RPT: {sts_ok} successful sessions counted under the {STS} STS policy");
}
