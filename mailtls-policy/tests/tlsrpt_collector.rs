//! The collector survives a crash and merges across MTA instances.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;
use std::process::Command;

use mailtls_policy::result_type::{PolicyType, ResultType};
use mailtls_policy::tlsrpt::{Aggregate, Collector, FailureOutcome, PolicyRef, SessionOutcome};
use time::macros::date;

const STS: [&str; 3] = ["version: STSv1", "mode: enforce", "mx: *.mx.example.org"];
const MX: [&str; 1] = ["*.mx.example.org"];

fn ok_outcome() -> SessionOutcome<'static> {
    SessionOutcome {
        policy: PolicyRef {
            policy_type: PolicyType::Sts,
            domain: "example.org",
            strings: &STS,
            mx_hosts: &MX,
        },
        mx_host: "a.mx.example.org",
        failure: None,
    }
}

fn failed_outcome(ip: &str) -> SessionOutcome<'static> {
    let ip: IpAddr = ip.parse().unwrap();
    SessionOutcome {
        failure: Some(FailureOutcome {
            result_type: ResultType::CertificateNotTrusted,
            sending_mta_ip: Some("192.0.2.10".parse().unwrap()),
            receiving_ip: Some(ip),
            receiving_mx_helo: Some("a.mx.example.org"),
            failure_reason_code: Some("unknown-issuer"),
            additional_information: None,
        }),
        ..ok_outcome()
    }
}

/// Runs in a child process: records, then aborts without any shutdown.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var("TLSRPT_CRASH_DIR") else {
        return;
    };
    let c = Collector::open(&dir).unwrap();
    let day = date!(2026 - 11 - 24);
    for _ in 0..1000 {
        c.record_on(day, &ok_outcome()).unwrap();
    }
    for _ in 0..7 {
        c.record_on(day, &failed_outcome("198.51.100.7")).unwrap();
    }
    std::process::abort();
}

#[test]
fn counts_recorded_before_a_crash_are_there_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    for round in 1..=2u64 {
        let status = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env("TLSRPT_CRASH_DIR", dir.path())
            .status()
            .unwrap();
        assert!(!status.success(), "the child must have aborted");
        let c = Collector::open(dir.path()).unwrap();
        assert_eq!(
            c.snapshot().totals(date!(2026 - 11 - 24), "example.org"),
            (1000 * round, 7 * round),
            "round {round}"
        );
    }
}

#[test]
fn a_torn_last_line_is_dropped_and_the_rest_kept() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::open(dir.path()).unwrap();
    let day = date!(2026 - 11 - 24);
    c.record_on(day, &ok_outcome()).unwrap();
    c.record_on(day, &ok_outcome()).unwrap();
    drop(c);
    let log = dir.path().join("tlsrpt-counts.log");
    let mut text = std::fs::read(&log).unwrap();
    text.extend_from_slice(b"0 ");
    std::fs::write(&log, text).unwrap();
    let c = Collector::open(dir.path()).unwrap();
    assert_eq!(c.snapshot().totals(day, "example.org"), (2, 0));
    c.record_on(day, &ok_outcome()).unwrap();
    drop(c);
    let c = Collector::open(dir.path()).unwrap();
    assert_eq!(c.snapshot().totals(day, "example.org"), (3, 0));

    std::fs::write(&log, b"not a log line\n").unwrap();
    let err = Collector::open(dir.path()).unwrap_err().to_string();
    assert!(err.contains("line 1"), "{err}");
}

#[test]
fn two_instances_merge_to_exact_sums() {
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (
        Collector::open(d1.path()).unwrap(),
        Collector::open(d2.path()).unwrap(),
    );
    let day = date!(2026 - 11 - 24);
    for _ in 0..13 {
        a.record_on(day, &ok_outcome()).unwrap();
    }
    for _ in 0..29 {
        b.record_on(day, &ok_outcome()).unwrap();
    }
    a.record_on(day, &failed_outcome("198.51.100.7")).unwrap();
    b.record_on(day, &failed_outcome("198.51.100.7")).unwrap();
    b.record_on(day, &failed_outcome("198.51.100.8")).unwrap();

    // Exchange through the JSON form, as separate nodes would.
    let mut merged = Aggregate::from_json(&a.snapshot().to_json().unwrap()).unwrap();
    merged.merge(&Aggregate::from_json(&b.snapshot().to_json().unwrap()).unwrap());
    assert_eq!(merged.totals(day, "example.org"), (42, 3));
    // Same failure tuple from both nodes is one tuple with count 2.
    assert_eq!(merged.len(), 3);
    let counts: Vec<u64> = merged.iter().map(|(_, c)| c).collect();
    assert!(counts.contains(&2) && counts.contains(&1) && counts.contains(&42));
}

#[test]
fn concurrent_recording_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let c = std::sync::Arc::new(Collector::open(dir.path()).unwrap());
    let day = date!(2026 - 11 - 24);
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let c = c.clone();
            std::thread::spawn(move || {
                for _ in 0..500 {
                    c.record_on(day, &ok_outcome()).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(c.snapshot().totals(day, "example.org"), (2000, 0));
    drop(c);
    assert_eq!(
        Collector::open(dir.path())
            .unwrap()
            .snapshot()
            .totals(day, "example.org"),
        (2000, 0)
    );
}

#[test]
fn buffered_mode_writes_on_flush_and_drop() {
    use mailtls_policy::tlsrpt::collector::Durability;
    let dir = tempfile::tempdir().unwrap();
    let day = date!(2026 - 11 - 24);
    let c = Collector::open_with(dir.path(), Durability::Buffered { max_bytes: 1 << 20 }).unwrap();
    for _ in 0..100 {
        c.record_on(day, &ok_outcome()).unwrap();
    }
    let log = dir.path().join("tlsrpt-counts.log");
    let before = std::fs::metadata(&log).unwrap().len();
    c.flush().unwrap();
    assert!(
        std::fs::metadata(&log).unwrap().len() > before,
        "flush writes the buffer"
    );
    for _ in 0..50 {
        c.record_on(day, &failed_outcome("198.51.100.9")).unwrap();
    }
    // Forgetting another day compacts; buffered counts must survive that.
    c.forget_through(date!(2026 - 11 - 01)).unwrap();
    c.record_on(day, &ok_outcome()).unwrap();
    drop(c);
    let c = Collector::open_with(dir.path(), Durability::Buffered { max_bytes: 16 }).unwrap();
    assert_eq!(c.snapshot().totals(day, "example.org"), (101, 50));
    // A small buffer writes by itself once full.
    for _ in 0..10 {
        c.record_on(day, &ok_outcome()).unwrap();
    }
    let reopened_len = std::fs::metadata(&log).unwrap().len();
    std::mem::forget(c);
    assert!(reopened_len > 0);
    let c = Collector::open(dir.path()).unwrap();
    let (ok, _) = c.snapshot().totals(day, "example.org");
    assert!(
        ok > 101 && ok <= 111,
        "full buffers were written without flush: {ok}"
    );
}

mod model {
    //! The collector against the simplest possible model: a map from the
    //! owned tuple key to its count, through reopening, buffering,
    //! forgetting and many policies sharing failures.
    use std::collections::BTreeMap;

    use mailtls_policy::result_type::{PolicyType, ResultType};
    use mailtls_policy::tlsrpt::collector::{Durability, FailureKey, PolicyKey, TupleKey};
    use mailtls_policy::tlsrpt::{Collector, FailureOutcome, PolicyRef, SessionOutcome};
    use proptest::prelude::*;
    use time::{Date, Duration};

    const DOMAINS: [&str; 3] = ["a.example", "b.example", "c.example"];
    const STRINGS: [&[&str]; 3] = [
        &[],
        &["version: STSv1", "mode: enforce"],
        &["version: STSv1mode: enforce"],
    ];
    const MX: [&str; 2] = ["mx1.example", "mx2.example"];
    const RESULTS: [ResultType; 2] = [
        ResultType::CertificateExpired,
        ResultType::StarttlsNotSupported,
    ];

    #[derive(Debug, Clone)]
    enum Op {
        Record {
            day: u8,
            domain: usize,
            strings: usize,
            mx: usize,
            failure: Option<(usize, bool)>,
        },
        Reopen {
            buffered: bool,
        },
        Flush,
        Forget {
            day: u8,
            domain: usize,
        },
        ForgetThrough {
            day: u8,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            8 => (0u8..3, 0usize..3, 0usize..3, 0usize..2, proptest::option::of((0usize..2, any::<bool>())))
                .prop_map(|(day, domain, strings, mx, failure)| Op::Record { day, domain, strings, mx, failure }),
            1 => any::<bool>().prop_map(|buffered| Op::Reopen { buffered }),
            1 => Just(Op::Flush),
            1 => (0u8..3, 0usize..3).prop_map(|(day, domain)| Op::Forget { day, domain }),
            1 => (0u8..3).prop_map(|day| Op::ForgetThrough { day }),
        ]
    }

    fn day(d: u8) -> Date {
        time::macros::date!(2026 - 11 - 24) + Duration::days(i64::from(d))
    }

    fn open(dir: &std::path::Path, buffered: bool) -> Collector {
        let durability = if buffered {
            Durability::Buffered { max_bytes: 48 }
        } else {
            Durability::EveryRecord
        };
        Collector::open_with(dir, durability).unwrap()
    }

    fn model_snapshot(m: &BTreeMap<TupleKey, u64>) -> Vec<(TupleKey, u64)> {
        m.iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| (k.clone(), *n))
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
        #[test]
        fn counts_match_a_plain_map(ops in proptest::collection::vec(op(), 1..60)) {
            let dir = tempfile::tempdir().unwrap();
            let mut c = open(dir.path(), true);
            let mut m: BTreeMap<TupleKey, u64> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Record { day: d, domain, strings, mx, failure } => {
                        let failure = failure.map(|(r, with_ip)| FailureOutcome {
                            result_type: RESULTS[r],
                            sending_mta_ip: None,
                            receiving_ip: with_ip.then(|| "192.0.2.7".parse().unwrap()),
                            receiving_mx_helo: None,
                            failure_reason_code: None,
                            additional_information: None,
                        });
                        let o = SessionOutcome {
                            policy: PolicyRef {
                                policy_type: PolicyType::Sts,
                                domain: DOMAINS[domain],
                                strings: STRINGS[strings],
                                mx_hosts: &MX[..1],
                            },
                            mx_host: MX[mx],
                            failure,
                        };
                        c.record_on(day(d), &o).unwrap();
                        let key = TupleKey {
                            day: day(d),
                            policy: PolicyKey {
                                policy_type: PolicyType::Sts,
                                domain: DOMAINS[domain].to_owned(),
                                strings: STRINGS[strings].iter().map(|s| (*s).to_owned()).collect(),
                                mx_hosts: vec![MX[0].to_owned()],
                            },
                            failure: failure.map(|f| FailureKey {
                                result_type: f.result_type,
                                sending_mta_ip: None,
                                receiving_ip: f.receiving_ip,
                                receiving_mx_hostname: MX[mx].to_owned(),
                                receiving_mx_helo: None,
                                failure_reason_code: None,
                                additional_information: None,
                            }),
                        };
                        *m.entry(key).or_default() += 1;
                    }
                    Op::Reopen { buffered } => {
                        drop(c);
                        c = open(dir.path(), buffered);
                    }
                    Op::Flush => c.flush().unwrap(),
                    Op::Forget { day: d, domain } => {
                        c.forget(day(d), DOMAINS[domain]).unwrap();
                        m.retain(|k, _| !(k.day == day(d) && k.policy.domain == DOMAINS[domain]));
                    }
                    Op::ForgetThrough { day: d } => {
                        c.forget_through(day(d)).unwrap();
                        m.retain(|k, _| k.day > day(d));
                    }
                }
                let got: Vec<(TupleKey, u64)> = c.snapshot().iter().map(|(k, n)| (k.clone(), n)).collect();
                prop_assert_eq!(&got, &model_snapshot(&m));
                prop_assert_eq!(c.tuple_count(), m.len());
            }
            drop(c);
            let got: Vec<(TupleKey, u64)> =
                open(dir.path(), false).snapshot().iter().map(|(k, n)| (k.clone(), n)).collect();
            prop_assert_eq!(got, model_snapshot(&m));
        }
    }
}
