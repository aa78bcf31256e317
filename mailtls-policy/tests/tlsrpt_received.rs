//! Received reports in the containers senders use, and the daily queueing
//! step end to end.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::sync::Arc;

use mailtls_policy::result_type::PolicyType;
use mailtls_policy::tlsrpt::delivery::{Outbox, RetryPolicy};
use mailtls_policy::tlsrpt::{
    Collector, LocalCounters, PolicyRef, ReceivedSummary, ReportMeta, Schedule, SessionOutcome,
    TlsRptRecord, parse_received, queue_due_reports,
};
use time::macros::{date, datetime};

/// A Microsoft-style report: no sending-mta-ip, no zone on the times,
/// mx-host as a string (RFC 8460 erratum 6241).
const QUIRKY: &str = r#"{"organization-name":"Microsoft Corporation",
 "date-range":{"start-datetime":"2026-11-23T00:00:00","end-datetime":"2026-11-23T23:59:59"},
 "contact-info":"tlsrpt-noreply@microsoft.com","report-id":"133452_2026-11-23",
 "policies":[{"policy":{"policy-type":"sts","policy-string":["version: STSv1","mode: enforce","mx: mx.example.org","max_age: 604800"],
   "policy-domain":"example.org","mx-host":"mx.example.org"},
   "summary":{"total-successful-session-count":91,"total-failure-session-count":4},
   "failure-details":[{"result-type":"certificate-expired","receiving-mx-hostname":"mx.example.org","receiving-ip":"192.0.2.25","failed-session-count":4}]}]}"#;

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn base64(data: &[u8]) -> String {
    let mut child = std::process::Command::new("base64")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(data).unwrap();
    String::from_utf8(child.wait_with_output().unwrap().stdout)
        .unwrap()
        .replace('\n', "\r\n")
}

fn check(reports: &[mailtls_policy::tlsrpt::ReceivedReport]) {
    let s = ReceivedSummary::of(reports);
    let day = date!(2026 - 11 - 23);
    assert_eq!(s.per_day[&(day, Some("example.org".into()))], (91, 4));
    assert_eq!(
        s.per_failure[&(
            day,
            Some("example.org".into()),
            "certificate-expired".into()
        )],
        4
    );
}

#[test]
fn plain_gzip_and_zip() {
    check(&parse_received(QUIRKY.as_bytes()).unwrap());
    check(&parse_received(&gzip(QUIRKY.as_bytes())).unwrap());
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    zip.start_file(
        "microsoft.com!example.org!1795392000!1795478399!133452.json",
        zip::write::SimpleFileOptions::default(),
    )
    .unwrap();
    zip.write_all(QUIRKY.as_bytes()).unwrap();
    let bytes = zip.finish().unwrap().into_inner();
    check(&parse_received(&bytes).unwrap());
}

#[test]
fn report_inside_a_mail() {
    let mail = format!(
        "From: tlsrpt-noreply@microsoft.com\r\nTo: tlsrpt@example.org\r\nSubject: Report Domain: example.org\r\n\
         TLS-Report-Domain: example.org\r\nTLS-Report-Submitter: microsoft.com\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=\"tlsrpt\"; boundary=\"b1\"\r\n\r\n\
         --b1\r\nContent-Type: text/plain\r\n\r\nThis is a TLS report.\r\n\
         --b1\r\nContent-Type: application/tlsrpt+gzip\r\nContent-Transfer-Encoding: base64\r\n\
         Content-Disposition: attachment; filename=\"microsoft.com!example.org!1795392000!1795478399!133452.json.gz\"\r\n\r\n\
         {}\r\n--b1--\r\n",
        base64(&gzip(QUIRKY.as_bytes()))
    );
    check(&parse_received(mail.as_bytes()).unwrap());
    let no_report = "From: a@example.org\r\nSubject: hi\r\n\r\nhello\r\n";
    assert!(
        parse_received(no_report.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("no TLS report part")
    );
}

#[test]
fn gzip_bombs_are_refused() {
    let big = vec![b' '; 33 * 1024 * 1024];
    let err = parse_received(&gzip(&big)).unwrap_err().to_string();
    assert!(err.contains("exceeds"), "{err}");
}

#[tokio::test]
async fn due_reports_are_queued_once_and_counts_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let collector = Arc::new(Collector::open(dir.path().join("counts")).unwrap());
    let counters = LocalCounters::new(Arc::clone(&collector));
    let outbox = Outbox::open(dir.path().join("outbox"), RetryPolicy::default()).unwrap();
    let day = date!(2026 - 11 - 24);
    for domain in ["asks.example", "silent.example"] {
        let policy = PolicyRef {
            policy_type: PolicyType::NoPolicyFound,
            domain,
            strings: &[],
            mx_hosts: &[],
        };
        collector
            .record_on(
                day,
                &SessionOutcome {
                    policy,
                    mx_host: "mx",
                    failure: None,
                },
            )
            .unwrap();
    }
    // Traffic today stays until tomorrow's run.
    let policy = PolicyRef {
        policy_type: PolicyType::NoPolicyFound,
        domain: "asks.example",
        strings: &[],
        mx_hosts: &[],
    };
    collector
        .record_on(
            date!(2026 - 11 - 25),
            &SessionOutcome {
                policy,
                mx_host: "mx",
                failure: None,
            },
        )
        .unwrap();
    let meta = ReportMeta {
        organization_name: "Sender".into(),
        contact_info: "mailto:postmaster@sender.example".into(),
        submitter: "sender.example".into(),
    };
    let lookup = |d: &str| {
        (d == "asks.example").then(|| {
            TlsRptRecord::parse("v=TLSRPTv1; rua=mailto:r@asks.example,https://r.asks.example/t")
                .unwrap()
        })
    };
    let run = queue_due_reports(
        &counters,
        &Schedule::default(),
        &outbox,
        &meta,
        datetime!(2026-11-25 06:00 UTC),
        lookup,
    )
    .await
    .unwrap();
    assert_eq!((run.queued, run.no_record, run.skipped), (1, 1, 0));
    let pending = outbox.pending().await.unwrap();
    assert_eq!(pending.len(), 2);
    assert!(pending.iter().all(|j| j.policy_domain == "asks.example"));
    // Counts of the reported day are gone, also after a restart; today's stay.
    drop((counters, collector));
    let collector = Arc::new(Collector::open(dir.path().join("counts")).unwrap());
    let counters = LocalCounters::new(Arc::clone(&collector));
    let snap = collector.snapshot();
    assert_eq!(snap.totals(day, "asks.example"), (0, 0));
    assert_eq!(snap.totals(date!(2026 - 11 - 25), "asks.example"), (1, 0));
    let run = queue_due_reports(
        &counters,
        &Schedule::default(),
        &outbox,
        &meta,
        datetime!(2026-11-25 07:00 UTC),
        lookup,
    )
    .await
    .unwrap();
    assert_eq!(run.queued, 0);
}

/// Reports made by sys4's tlsrpt-reporter (PyPI, an independent
/// implementation: its collectd, fetcher and reportd) parse with our parser
/// to the counts fed into it. Needs `pip install tlsrpt-reporter`.
#[test]
fn tlsrpt_reporter_reports_parse_with_the_counts_fed_in() {
    let dir = tempfile::tempdir().unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/tlsrpt_reporter_driver.py"
    );
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(dir.path())
        .args(["37", "4", "6"])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "tlsrpt-reporter driver failed (pip install tlsrpt-reporter): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let org =
        parse_received(&std::fs::read(dir.path().join("example.org.json.gz")).unwrap()).unwrap();
    let net =
        parse_received(&std::fs::read(dir.path().join("example.net.json.gz")).unwrap()).unwrap();
    let day = org[0].start.date();
    let yesterday = time::OffsetDateTime::now_utc()
        .date()
        .previous_day()
        .unwrap();
    assert!(
        day == yesterday || day.next_day() == Some(yesterday),
        "report day {day}"
    );
    let s = ReceivedSummary::of(&[org, net].concat());
    assert_eq!(s.per_day[&(day, Some("example.org".into()))], (37, 4));
    assert_eq!(
        s.per_failure[&(
            day,
            Some("example.org".into()),
            "certificate-expired".into()
        )],
        4
    );
    assert_eq!(s.per_day[&(day, Some("example.net".into()))], (0, 6));
    assert_eq!(
        s.per_failure[&(
            day,
            Some("example.net".into()),
            "starttls-not-supported".into()
        )],
        6
    );
}
