//! The delivery plan for a cached domain: `mailtls_policy::plan::plan` from
//! facts already gathered (MX, address and TLSA records as `DomainFacts`, and
//! a parsed MTA-STS policy from the cache), for the three shapes a sender
//! meets: an MTA-STS enforce domain with two MX hosts (the policy matched
//! against each host), a DNSSEC-signed DANE domain with two MX hosts (TLSA
//! records turned into usable DANE checks), and the MTA-STS domain for a
//! REQUIRETLS message. Target: under 2 µs.
//!
//! There is no peer: the plan is this crate's own decision, no other
//! library makes it in-process.

// Bench setup: a failed fixture aborts the run, which is what it should do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, SystemTime};

use criterion::{BenchmarkId, Criterion};
use mailtls_benches::{criterion_home, format_ns, is_measurement_run, read_estimate};
use mailtls_core::DnsName;
use mailtls_policy::dns::{DnssecStatus, TlsaRecord};
use mailtls_policy::mta_sts::{Profile, parse_policy};
use mailtls_policy::plan::{
    AddressFacts, DomainFacts, HostAction, HostFacts, MxFacts, TlsaFacts, Verification, plan,
};
use mailtls_policy::requiretls::TlsDemand;

const PLAN_TARGET_NS: f64 = 2_000.0;

fn name(s: &str) -> DnsName {
    DnsName::parse(s).unwrap()
}

fn host(preference: u16, host: &str, dnssec: DnssecStatus, tlsa: TlsaFacts) -> HostFacts {
    HostFacts {
        preference,
        name: name(host),
        addresses: AddressFacts::Found {
            canonical: name(host),
            dnssec,
            addresses: vec![
                IpAddr::V4(Ipv4Addr::new(192, 0, 2, preference as u8)),
                IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, preference)),
            ],
        },
        tlsa,
    }
}

/// `example.com` with MX 20 and MX 10 (out of order, as DNS returns them),
/// unsigned, and its cached enforce policy listing `*.example.com`.
fn mta_sts_domain() -> DomainFacts {
    let policy = parse_policy(
        b"version: STSv1\r\nmode: enforce\r\nmx: *.example.com\r\n\
          mx: backupmx.example.net\r\nmax_age: 604800\r\n",
        Profile::Strict,
    )
    .unwrap()
    .policy;
    let absent = || TlsaFacts::NotApplicable;
    DomainFacts {
        domain: name("example.com"),
        mx: MxFacts::Hosts {
            dnssec: DnssecStatus::Insecure,
            hosts: vec![
                host(20, "mx2.example.com", DnssecStatus::Insecure, absent()),
                host(10, "mx1.example.com", DnssecStatus::Insecure, absent()),
            ],
        },
        mta_sts: Some(std::sync::Arc::new(policy)),
    }
}

/// `example.org`, signed, MX 10 and MX 20 each with a DANE-EE SPKI SHA-256
/// record and a DANE-TA record (a rollover pair).
fn dane_domain() -> DomainFacts {
    let records = |base: &str| TlsaFacts::Records {
        base: name(base),
        dnssec: DnssecStatus::Authentic,
        records: vec![
            TlsaRecord {
                usage: 3.into(),
                selector: 1.into(),
                matching: 1.into(),
                data: vec![0x8c; 32],
            },
            TlsaRecord {
                usage: 2.into(),
                selector: 0.into(),
                matching: 1.into(),
                data: vec![0x5a; 32],
            },
        ],
    };
    DomainFacts {
        domain: name("example.org"),
        mx: MxFacts::Hosts {
            dnssec: DnssecStatus::Authentic,
            hosts: vec![
                host(
                    10,
                    "mx1.example.org",
                    DnssecStatus::Authentic,
                    records("mx1.example.org"),
                ),
                host(
                    20,
                    "mx2.example.org",
                    DnssecStatus::Authentic,
                    records("mx2.example.org"),
                ),
            ],
        },
        mta_sts: None,
    }
}

/// The fixtures plan as described, or the bench measures something else.
fn check_fixtures(sts: &DomainFacts, dane: &DomainFacts) {
    let p = plan(sts, TlsDemand::Default);
    assert_eq!(p.entries.len(), 2);
    assert_eq!(p.entries[0].host, name("mx1.example.com"));
    assert!(p.entries.iter().all(|e| matches!(
        e.action,
        HostAction::RequireTls {
            verify: Verification::WebPki { .. }
        }
    )));
    let p = plan(dane, TlsDemand::Default);
    assert!(p.entries.iter().all(|e| matches!(
        &e.action,
        HostAction::RequireTls {
            verify: Verification::Dane { records, .. }
        } if records.len() == 2
    )));
    let p = plan(sts, TlsDemand::RequireTls);
    assert!(
        p.entries.iter().all(|e| e.peer_must_advertise_requiretls
            && matches!(e.action, HostAction::RequireTls { .. }))
    );
}

const CASES: [(&str, &str); 3] = [
    ("mta_sts_enforce", "MTA-STS enforce, 2 MX"),
    ("dane", "DANE, 2 MX × 2 TLSA"),
    ("requiretls_mta_sts", "REQUIRETLS, MTA-STS enforce, 2 MX"),
];

fn bench(c: &mut Criterion) {
    let sts = mta_sts_domain();
    let dane = dane_domain();
    check_fixtures(&sts, &dane);
    let mut group = c.benchmark_group("policy_plan");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for (case, _) in CASES {
        let (facts, demand) = match case {
            "mta_sts_enforce" => (&sts, TlsDemand::Default),
            "dane" => (&dane, TlsDemand::Default),
            _ => (&sts, TlsDemand::RequireTls),
        };
        group.bench_with_input(BenchmarkId::new("plan", case), facts, |b, f| {
            b.iter(|| plan(black_box(f), black_box(demand)));
        });
    }
    group.finish();
}

fn report(since: SystemTime) {
    let home = criterion_home();
    println!();
    println!("## Delivery plan for a cached domain, medians of this run");
    println!();
    println!("| what | median | target |");
    println!("|---|---:|---|");
    for (case, what) in CASES {
        match read_estimate(&home, "policy_plan", "plan", case, since) {
            Ok(e) => println!(
                "| {what} | {} | < {}: {} |",
                format_ns(e.median),
                format_ns(PLAN_TARGET_NS),
                if e.median < PLAN_TARGET_NS {
                    "MET"
                } else {
                    "MISSED"
                }
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
