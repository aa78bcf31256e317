//! HTTPS fetch of MTA-STS policies (RFC 8461 §3.3) against a real TLS
//! policy host on loopback with a certificate from a test CA.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod mta_sts_common;

use std::sync::Arc;
use std::time::Duration;

use mailtls_core::DnsName;
use mailtls_policy::dns::{DnsResolver, StaticResolver};
use mailtls_policy::mta_sts::{FetchError, FetcherConfig, PolicyFetcher, PolicyMode};
use mailtls_policy::result_type::ResultType;
use mta_sts_common::{GOOD_POLICY, PolicyHost, Reply, point_at_loopback};
use rustls::RootCertStore;

const DOMAINS: &[&str] = &[
    "good.example",
    "charset.example",
    "redirect.example",
    "missing.example",
    "html.example",
    "big.example",
    "slow.example",
    "nocontenttype.example",
    "invalid.example",
];

async fn setup() -> (PolicyHost, Arc<dyn DnsResolver>) {
    let host = PolicyHost::start(DOMAINS).await;
    let mut all: Vec<&str> = DOMAINS.to_vec();
    all.push("wrongname.example");
    let dns = point_at_loopback(StaticResolver::builder(), &all)
        .build()
        .unwrap();
    (host, Arc::new(dns))
}

fn fetcher(host: &PolicyHost, roots: RootCertStore, dns: Arc<dyn DnsResolver>) -> PolicyFetcher {
    let mut config = FetcherConfig::new(roots);
    config.port = host.addr.port();
    config.timeout = Duration::from_millis(1500);
    PolicyFetcher::new(config, dns, mailtls_policy::default_crypto_provider()).unwrap()
}

fn d(s: &str) -> DnsName {
    DnsName::parse(s).unwrap()
}

#[tokio::test]
async fn fetches_and_parses_a_good_policy() {
    let (host, dns) = setup().await;
    host.set("good.example", Reply::policy(GOOD_POLICY));
    let mut charset = Reply::policy(GOOD_POLICY);
    charset.content_type = Some("text/plain; charset=utf-8".into());
    host.set("charset.example", charset);
    let f = fetcher(&host, host.roots(), dns);
    let parsed = f.fetch(&d("good.example")).await.unwrap();
    assert_eq!(parsed.policy.mode(), PolicyMode::Enforce);
    assert_eq!(parsed.policy.raw(), GOOD_POLICY);
    assert!(parsed.policy.matches_mx(&d("a.mx.good.example")));
    f.fetch(&d("charset.example")).await.unwrap();
    assert_eq!(host.hits(), 2);
}

#[tokio::test]
async fn broken_hosts_fail_with_the_right_result_type() {
    // Corpus from the policy notes: redirect to www, HTML with 200, 64 KiB + 1.
    let (host, dns) = setup().await;
    host.set(
        "redirect.example",
        Reply {
            status: 301,
            location: Some("https://www.redirect.example/".into()),
            ..Reply::policy("")
        },
    );
    host.set(
        "html.example",
        Reply {
            content_type: Some("text/html".into()),
            ..Reply::policy("<html><body>Welcome</body></html>")
        },
    );
    let mut big = "version: STSv1\nmode: testing\nmx: mx.big.example\nmax_age: 86400\n#".to_owned();
    big.push_str(&"x".repeat(64 * 1024 + 1 - big.len()));
    assert_eq!(big.len(), 64 * 1024 + 1);
    host.set("big.example", Reply::policy(&big));
    host.set(
        "nocontenttype.example",
        Reply {
            content_type: None,
            ..Reply::policy(GOOD_POLICY)
        },
    );
    host.set(
        "invalid.example",
        Reply::policy("version: STSv1\nmode: enforce\n"),
    );
    let f = fetcher(&host, host.roots(), dns);

    let e = f.fetch(&d("redirect.example")).await.unwrap_err();
    assert!(
        matches!(&e, FetchError::Redirect { status: 301, location: Some(l), .. } if l.contains("www")),
        "{e}"
    );
    assert_eq!(e.result_type(), ResultType::StsPolicyFetchError);

    let e = f.fetch(&d("missing.example")).await.unwrap_err();
    assert!(matches!(e, FetchError::Status { status: 404, .. }), "{e}");
    assert_eq!(e.result_type(), ResultType::StsPolicyFetchError);

    let e = f.fetch(&d("html.example")).await.unwrap_err();
    assert!(matches!(e, FetchError::ContentType { .. }), "{e}");
    assert_eq!(e.result_type(), ResultType::StsPolicyInvalid);

    let e = f.fetch(&d("nocontenttype.example")).await.unwrap_err();
    assert!(matches!(e, FetchError::ContentType { .. }), "{e}");

    let e = f.fetch(&d("big.example")).await.unwrap_err();
    assert!(
        matches!(e, FetchError::TooLarge { limit: 65536, .. }),
        "{e}"
    );

    let e = f.fetch(&d("invalid.example")).await.unwrap_err();
    assert!(matches!(e, FetchError::Invalid { .. }), "{e}");
    assert_eq!(e.result_type(), ResultType::StsPolicyInvalid);

    let e = f.fetch(&d("nodns.example")).await.unwrap_err();
    assert!(matches!(e, FetchError::Dns { .. }), "{e}");
}

#[tokio::test]
async fn exactly_the_cap_is_accepted() {
    let (host, dns) = setup().await;
    let mut body =
        "version: STSv1\nmode: testing\nmx: mx.big.example\nmax_age: 86400\n#".to_owned();
    body.push_str(&"x".repeat(64 * 1024 - body.len()));
    host.set("big.example", Reply::policy(&body));
    let f = fetcher(&host, host.roots(), dns);
    let parsed = f.fetch(&d("big.example")).await.unwrap();
    assert_eq!(parsed.policy.mode(), PolicyMode::Testing);
}

#[tokio::test]
async fn slow_host_times_out() {
    let (host, dns) = setup().await;
    host.set(
        "slow.example",
        Reply {
            delay: Duration::from_secs(5),
            ..Reply::policy(GOOD_POLICY)
        },
    );
    let f = fetcher(&host, host.roots(), dns);
    let start = std::time::Instant::now();
    let e = f.fetch(&d("slow.example")).await.unwrap_err();
    assert!(matches!(e, FetchError::Timeout { .. }), "{e}");
    assert!(start.elapsed() < Duration::from_secs(4));
    assert_eq!(e.result_type(), ResultType::StsPolicyFetchError);
}

#[tokio::test]
async fn webpki_failures_are_sts_webpki_invalid() {
    let (host, dns) = setup().await;
    host.set("good.example", Reply::policy(GOOD_POLICY));
    // The certificate does not name mta-sts.wrongname.example.
    let f = fetcher(&host, host.roots(), dns.clone());
    let e = f.fetch(&d("wrongname.example")).await.unwrap_err();
    assert!(matches!(e, FetchError::Certificate { .. }), "{e}");
    assert_eq!(e.result_type(), ResultType::StsWebpkiInvalid);
    // A fetcher that trusts another CA refuses the host.
    let other = mailtls_core::CertificateAuthority::new_test_ca(&Default::default()).unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(other.certificate().cert_der.clone()).unwrap();
    let f = fetcher(&host, roots, dns);
    let e = f.fetch(&d("good.example")).await.unwrap_err();
    assert!(matches!(e, FetchError::Certificate { .. }), "{e}");
    assert_eq!(e.result_type(), ResultType::StsWebpkiInvalid);
}
