//! MTA-STS end to end with real DNS: `HickoryResolver` validating against
//! NSD (signed zones made at test time) finds the `_mta-sts` record, the MX
//! hosts and the policy host's address; the policy comes from the loopback
//! HTTPS host. Needs the Debian packages `nsd` and `ldnsutils`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod dns_common;
mod mta_sts_common;

use std::sync::Arc;
use std::time::Duration;

use dns_common::{DnsWorld, tools_present};
use mailtls_core::DnsName;
use mailtls_policy::dns::{HickoryResolver, HickoryResolverConfig, Validation};
use mailtls_policy::mta_sts::{
    FetcherConfig, MtaSts, PolicyCache, PolicyFetcher, PolicyMode, PolicySource,
};
use mailtls_policy::own_domain::{CheckStatus, check_setup};
use mta_sts_common::{PolicyHost, Reply};

#[tokio::test]
async fn policy_found_through_real_dns() {
    if !tools_present() {
        panic!("install the Debian packages nsd and ldnsutils");
    }
    let world = DnsWorld::start();
    let mut config =
        HickoryResolverConfig::nameserver(world.addr, Validation::AnchorFile(world.anchor.clone()));
    config.timeout = Duration::from_secs(3);
    let dns = Arc::new(HickoryResolver::new(config).unwrap());

    let host = PolicyHost::start(&["secure.test"]).await;
    host.set(
        "secure.test",
        Reply::policy(
            "version: STSv1\r\nmode: enforce\r\nmx: mx.secure.test\r\nmax_age: 604800\r\n",
        ),
    );
    let mut fc = FetcherConfig::new(host.roots());
    fc.port = host.addr.port();
    fc.timeout = Duration::from_secs(5);
    let fetcher =
        PolicyFetcher::new(fc, dns.clone(), mailtls_policy::default_crypto_provider()).unwrap();

    let domain = DnsName::parse("secure.test").unwrap();
    let report = check_setup(&domain, dns.as_ref(), &fetcher).await;
    assert_eq!(
        report.check("sts-record").unwrap().status,
        CheckStatus::Pass,
        "{report}"
    );
    assert_eq!(
        report.check("mx-covered").unwrap().status,
        CheckStatus::Pass,
        "{report}"
    );
    // The zone's TLS-RPT record is split over two strings and still read.
    assert_eq!(
        report.check("tlsrpt-record").unwrap().status,
        CheckStatus::Pass,
        "{report}"
    );
    assert!(report.ready_for_enforce(), "{report}");

    let sts = MtaSts::new(dns, fetcher, PolicyCache::in_memory());
    let outcome = sts.policy_for(&domain).await;
    let policy = outcome.policy().expect("a policy");
    assert_eq!(policy.mode(), PolicyMode::Enforce);
    assert!(policy.matches_mx(&DnsName::parse("mx.secure.test").unwrap()));
    let again = sts.policy_for(&domain).await;
    assert!(matches!(
        again,
        mailtls_policy::mta_sts::PolicyOutcome::Policy {
            source: PolicySource::Cache,
            ..
        }
    ));
    assert_eq!(
        host.hits(),
        2,
        "one fetch by the checker, one by the service"
    );
}
