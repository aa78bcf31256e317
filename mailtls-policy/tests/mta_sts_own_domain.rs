//! Publishing MTA-STS/TLS-RPT for one's own domain and checking the result
//! through scripted DNS and a real HTTPS policy host on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod mta_sts_common;

use std::time::Duration;

use mailtls_core::{DnsName, NamePattern};
use mailtls_policy::dns::StaticResolver;
use mailtls_policy::mta_sts::{FetcherConfig, MtaStsPolicy, PolicyFetcher, PolicyMode};
use mailtls_policy::own_domain::{CheckStatus, Publication, check_setup};
use mta_sts_common::{PolicyHost, Reply, point_at_loopback};

fn publication() -> Publication {
    let policy = MtaStsPolicy::new(
        PolicyMode::Testing,
        vec![NamePattern::parse("*.mx.own.example").unwrap()],
        604_800,
    );
    Publication::new(DnsName::parse("own.example").unwrap(), policy)
        .with_rua(vec!["mailto:tlsrpt@own.example".into()])
        .unwrap()
}

fn fetcher(host: &PolicyHost, dns: std::sync::Arc<StaticResolver>) -> PolicyFetcher {
    let mut config = FetcherConfig::new(host.roots());
    config.port = host.addr.port();
    config.timeout = Duration::from_secs(5);
    PolicyFetcher::new(config, dns, mailtls_policy::default_crypto_provider()).unwrap()
}

#[tokio::test]
async fn a_published_setup_checks_out() {
    let publ = publication();
    let host = PolicyHost::start(&["own.example"]).await;
    host.set("own.example", Reply::policy(publ.policy_file()));
    let dns = std::sync::Arc::new(
        point_at_loopback(StaticResolver::builder(), &["own.example"])
            .txt(&publ.sts_record_name(), &publ.sts_record())
            .txt(&publ.tlsrpt_record_name(), &publ.tlsrpt_record().unwrap())
            .mx("own.example", 10, "a.mx.own.example")
            .mx("own.example", 20, "b.mx.own.example")
            .build()
            .unwrap(),
    );
    let report = check_setup(&publ.domain, dns.as_ref(), &fetcher(&host, dns.clone())).await;
    assert!(report.ready_for_enforce(), "{report}");
    assert_eq!(report.worst(), CheckStatus::Pass, "{report}");
    assert_eq!(report.checks.len(), 6, "{report}");
}

#[tokio::test]
async fn broken_setups_are_reported() {
    let publ = publication();
    let host = PolicyHost::start(&["own.example"]).await;
    // Served as HTML: senders refuse it.
    host.set(
        "own.example",
        Reply {
            content_type: Some("text/html".into()),
            ..Reply::policy(publ.policy_file())
        },
    );
    let dns = std::sync::Arc::new(
        point_at_loopback(StaticResolver::builder(), &["own.example"])
            .txt(&publ.sts_record_name(), &publ.sts_record())
            .txt(&publ.sts_record_name(), "v=STSv1; id=other")
            .mx("own.example", 10, "mx.elsewhere.example")
            .build()
            .unwrap(),
    );
    let f = fetcher(&host, dns.clone());
    let report = check_setup(&publ.domain, dns.as_ref(), &f).await;
    assert!(!report.ready_for_enforce());
    assert_eq!(
        report.check("sts-record").unwrap().status,
        CheckStatus::Fail
    );
    assert_eq!(
        report.check("policy-fetch").unwrap().status,
        CheckStatus::Fail
    );
    assert!(
        report
            .check("policy-fetch")
            .unwrap()
            .detail
            .contains("sts-policy-invalid")
    );
    assert_eq!(
        report.check("tlsrpt-record").unwrap().status,
        CheckStatus::Warn
    );

    // Fixed file, but an MX outside the patterns.
    host.set("own.example", Reply::policy(publ.policy_file()));
    let report = check_setup(&publ.domain, dns.as_ref(), &f).await;
    let mx = report.check("mx-covered").unwrap();
    assert_eq!(mx.status, CheckStatus::Fail, "{report}");
    assert!(mx.detail.contains("mx.elsewhere.example"));
}

/// Issue 14: `check_setup` reads records and policy through the same
/// selector and parsers as a sender (RFC 8461 §3.1, §3.2, RFC 8460 §3).
#[tokio::test]
async fn check_setup_uses_the_rfc_selectors_and_parsers() {
    let publ = publication();
    let host = PolicyHost::start(&["own.example"]).await;
    // `Mode: none` is an unknown key beside the exact `mode: testing`.
    let file = publ
        .policy_file()
        .replacen("mode: testing", "Mode: none\r\nmode: testing", 1);
    host.set("own.example", Reply::policy(&file));
    let dns = std::sync::Arc::new(
        point_at_loopback(StaticResolver::builder(), &["own.example"])
            .txt(&publ.sts_record_name(), &publ.sts_record())
            // Not an MTA-STS record (RFC 8461 §3.1): no "more than one".
            .txt(&publ.sts_record_name(), "v=STSv10; id=other")
            // Invalid TLS-RPT record (RFC 8460 §3): an unencoded '!'.
            .txt(
                &publ.tlsrpt_record_name(),
                "v=TLSRPTv1; rua=mailto:bang!path@own.example",
            )
            .txt(
                &publ.tlsrpt_record_name(),
                "v=TLSRPTv10; rua=mailto:x@own.example",
            )
            .mx("own.example", 10, "a.mx.own.example")
            .build()
            .unwrap(),
    );
    let report = check_setup(&publ.domain, dns.as_ref(), &fetcher(&host, dns.clone())).await;
    assert_eq!(
        report.check("sts-record").unwrap().status,
        CheckStatus::Pass,
        "{report}"
    );
    let fetch = report.check("policy-fetch").unwrap();
    assert_eq!(fetch.status, CheckStatus::Pass, "{report}");
    assert!(fetch.detail.contains("testing"), "{report}");
    let strict = report.check("policy-strict").unwrap();
    assert_eq!(strict.status, CheckStatus::Warn, "{report}");
    assert!(strict.detail.contains("Mode"), "{report}");
    let rpt = report.check("tlsrpt-record").unwrap();
    assert_eq!(rpt.status, CheckStatus::Fail, "{report}");
    assert!(rpt.detail.contains("no reports are sent"), "{report}");
    assert!(rpt.detail.contains("%21"), "{report}");
}
