//! Reports built from collected counts: RFC 8460 §4 schema rules, gzip, the
//! §5.3 file name, and round trips through our parser and parsedmarc.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Read;
use std::net::IpAddr;
use std::process::Command;

use mailtls_policy::result_type::{PolicyType, ResultType};
use mailtls_policy::tlsrpt::{
    Aggregate, Collector, FailureOutcome, PolicyRef, ReceivedSummary, ReportMeta, SessionOutcome,
    TlsReport, parse_received,
};
use serde_json::Value;
use time::macros::date;

fn meta() -> ReportMeta {
    ReportMeta {
        organization_name: "mailtls test sender".into(),
        contact_info: "mailto:tlsrpt@sender.example".into(),
        submitter: "sender.example".into(),
    }
}

/// A day with three policies for example.org (STS, DANE under a different
/// base domain is another domain, no policy) and several failure tuples.
fn sample() -> Aggregate {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::open(dir.path()).unwrap();
    let day = date!(2026 - 11 - 24);
    let sts = [
        "version: STSv1",
        "mode: enforce",
        "mx: mx1.example.org",
        "max_age: 86400",
    ];
    let mx = ["mx1.example.org"];
    let sts_policy = PolicyRef {
        policy_type: PolicyType::Sts,
        domain: "example.org",
        strings: &sts,
        mx_hosts: &mx,
    };
    let tlsa = ["3 1 1 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"];
    let dane_policy = PolicyRef {
        policy_type: PolicyType::Tlsa,
        domain: "mx.example.net",
        strings: &tlsa,
        mx_hosts: &[],
    };
    let none = PolicyRef {
        policy_type: PolicyType::NoPolicyFound,
        domain: "example.com",
        strings: &[],
        mx_hosts: &[],
    };
    let fail = |rt, rip: Option<&str>, code: Option<&'static str>| FailureOutcome {
        result_type: rt,
        sending_mta_ip: None,
        receiving_ip: rip.map(|s| s.parse::<IpAddr>().unwrap()),
        receiving_mx_helo: None,
        failure_reason_code: code,
        additional_information: None,
    };
    for _ in 0..120 {
        c.record_on(
            day,
            &SessionOutcome {
                policy: sts_policy,
                mx_host: "mx1.example.org",
                failure: None,
            },
        )
        .unwrap();
    }
    for _ in 0..4 {
        c.record_on(
            day,
            &SessionOutcome {
                policy: sts_policy,
                mx_host: "mx1.example.org",
                failure: Some(fail(
                    ResultType::CertificateExpired,
                    Some("203.0.113.5"),
                    None,
                )),
            },
        )
        .unwrap();
    }
    for _ in 0..2 {
        c.record_on(
            day,
            &SessionOutcome {
                policy: sts_policy,
                mx_host: "mx1.example.org",
                failure: Some(fail(
                    ResultType::StarttlsNotSupported,
                    None,
                    Some("no-starttls"),
                )),
            },
        )
        .unwrap();
    }
    for _ in 0..9 {
        c.record_on(
            day,
            &SessionOutcome {
                policy: dane_policy,
                mx_host: "mx.example.net",
                failure: None,
            },
        )
        .unwrap();
    }
    c.record_on(
        day,
        &SessionOutcome {
            policy: dane_policy,
            mx_host: "mx.example.net",
            failure: Some(fail(ResultType::TlsaInvalid, Some("2001:db8::25"), None)),
        },
    )
    .unwrap();
    for _ in 0..5 {
        c.record_on(
            day,
            &SessionOutcome {
                policy: none,
                mx_host: "mx.example.com",
                failure: None,
            },
        )
        .unwrap();
    }
    c.snapshot()
}

fn all_reports(agg: &Aggregate) -> Vec<TlsReport> {
    agg.days_and_domains()
        .into_iter()
        .map(|(day, domain)| TlsReport::build(agg, day, &domain, &meta()).unwrap())
        .collect()
}

fn require_str<'a>(v: &'a Value, key: &str, path: &str) -> &'a str {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{path}.{key} must be a string: {v}"))
}

fn require_count(v: &Value, key: &str, path: &str) -> u64 {
    v.get(key)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{path}.{key} must be a non-negative integer"))
}

fn assert_no_null(v: &Value, path: &str) {
    match v {
        Value::Null => panic!("{path} is null (RFC 8460 fields are omitted when absent)"),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, x)| assert_no_null(x, &format!("{path}[{i}]"))),
        Value::Object(o) => o
            .iter()
            .for_each(|(k, x)| assert_no_null(x, &format!("{path}.{k}"))),
        _ => {}
    }
}

fn assert_utc_rfc3339(s: &str) {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{s:?} is not RFC 3339: {e}"));
    assert!(
        s.ends_with('Z') && t.offset().is_utc(),
        "{s:?} is not UTC with Z"
    );
}

/// The RFC 8460 §4.4 rules, checked on the JSON text, independent of our types.
fn check_schema(json: &[u8]) {
    let v: Value = serde_json::from_slice(json).unwrap();
    assert_no_null(&v, "$");
    for key in ["organization-name", "contact-info", "report-id"] {
        assert!(!require_str(&v, key, "$").is_empty());
    }
    let range = v.get("date-range").expect("date-range is required");
    assert_utc_rfc3339(require_str(range, "start-datetime", "date-range"));
    assert_utc_rfc3339(require_str(range, "end-datetime", "date-range"));
    let policies = v
        .get("policies")
        .and_then(Value::as_array)
        .expect("policies must be an array");
    assert!(!policies.is_empty());
    for p in policies {
        let pol = p.get("policy").expect("policy is required");
        let ptype = require_str(pol, "policy-type", "policy");
        assert!(
            ["sts", "tlsa", "no-policy-found"].contains(&ptype),
            "policy-type {ptype}"
        );
        assert!(!require_str(pol, "policy-domain", "policy").is_empty());
        for list in ["policy-string", "mx-host"] {
            if let Some(x) = pol.get(list) {
                let arr = x
                    .as_array()
                    .unwrap_or_else(|| panic!("{list} must be an array"));
                assert!(arr.iter().all(Value::is_string));
            }
        }
        let summary = p.get("summary").expect("summary is required");
        require_count(summary, "total-successful-session-count", "summary");
        let failed = require_count(summary, "total-failure-session-count", "summary");
        let mut detail_sum = 0;
        for d in p
            .get("failure-details")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let rt = require_str(d, "result-type", "failure-details");
            assert!(rt.parse::<ResultType>().is_ok(), "result-type {rt}");
            detail_sum += require_count(d, "failed-session-count", "failure-details");
            for ip in ["sending-mta-ip", "receiving-ip"] {
                if let Some(x) = d.get(ip) {
                    x.as_str().unwrap().parse::<IpAddr>().unwrap();
                }
            }
        }
        assert_eq!(
            detail_sum, failed,
            "failure-details add up to the failure total"
        );
    }
}

#[test]
fn reports_follow_rfc_8460_schema_rules() {
    let agg = sample();
    let reports = all_reports(&agg);
    assert_eq!(reports.len(), 3);
    assert_eq!(
        TlsReport::build_day(&agg, date!(2026 - 11 - 24), &meta()),
        reports,
        "one pass over the day gives the same reports"
    );
    assert!(TlsReport::build_day(&agg, date!(2026 - 11 - 25), &meta()).is_empty());
    for r in &reports {
        check_schema(&r.to_json().unwrap());
        let mut json = Vec::new();
        flate2::read::GzDecoder::new(&r.to_gzip().unwrap()[..])
            .read_to_end(&mut json)
            .unwrap();
        assert_eq!(json, r.to_json().unwrap());
    }
    let org = reports
        .iter()
        .find(|r| r.policy_domain() == "example.org")
        .unwrap();
    let json: Value = serde_json::from_slice(&org.to_json().unwrap()).unwrap();
    assert_eq!(
        json["policies"][0]["policy"]["mx-host"],
        serde_json::json!(["mx1.example.org"])
    );
    assert_eq!(
        json["policies"][0]["summary"]["total-failure-session-count"],
        6
    );
    let none = reports
        .iter()
        .find(|r| r.policy_domain() == "example.com")
        .unwrap();
    let json: Value = serde_json::from_slice(&none.to_json().unwrap()).unwrap();
    assert!(json["policies"][0].get("failure-details").is_none());
    assert!(json["policies"][0]["policy"].get("policy-string").is_none());
}

#[test]
fn our_reports_parse_back_to_the_same_counts() {
    let agg = sample();
    for r in all_reports(&agg) {
        let day = date!(2026 - 11 - 24);
        let parsed = parse_received(&r.to_gzip().unwrap()).unwrap();
        let s = ReceivedSummary::of(&parsed);
        let domain = r.policy_domain().to_owned();
        assert_eq!(
            s.per_day[&(day, Some(domain.clone()))],
            agg.totals(day, &domain)
        );
        let parsed_failures: u64 = s.per_failure.values().sum();
        assert_eq!(parsed_failures, agg.totals(day, &domain).1);
    }
}

/// parsedmarc (PyPI) is an independent report parser; it must see the same
/// counts. It has to be installed (`pip install parsedmarc`).
#[test]
fn parsedmarc_reads_our_reports_with_the_same_counts() {
    let agg = sample();
    let dir = tempfile::tempdir().unwrap();
    for r in all_reports(&agg) {
        let path = dir.path().join(r.filename("sender.example"));
        std::fs::write(&path, r.to_gzip().unwrap()).unwrap();
        let out = Command::new("python3")
            .arg("-c")
            .arg(
                "import sys, json, parsedmarc\n\
                 r = parsedmarc.parse_report_file(sys.argv[1], offline=True)\n\
                 print(json.dumps(r, default=str))",
            )
            .arg(&path)
            .output()
            .expect("python3 must be installed");
        assert!(
            out.status.success(),
            "parsedmarc failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["report_type"], "smtp_tls", "{v}");
        let report = &v["report"];
        assert_eq!(report["report_id"], r.report_id.as_str());
        let mut ok = 0;
        let mut failed = 0;
        let mut detail = 0;
        for p in report["policies"].as_array().unwrap() {
            assert_eq!(p["policy_domain"], r.policy_domain());
            ok += p["successful_session_count"].as_u64().unwrap();
            failed += p["failed_session_count"].as_u64().unwrap();
            for d in p["failure_details"].as_array().into_iter().flatten() {
                detail += d["failed_session_count"].as_u64().unwrap();
            }
        }
        let day = date!(2026 - 11 - 24);
        assert_eq!(
            (ok, failed),
            agg.totals(day, r.policy_domain()),
            "{}",
            r.policy_domain()
        );
        assert_eq!(detail, failed);
    }
}
