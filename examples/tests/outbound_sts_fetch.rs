//! MTA-STS policy fetch failures as TLS-RPT records (RFC 8460 §4.3.2.2):
//! a policy host whose certificate is not valid for `mta-sts.DOMAIN`
//! counts `sts-webpki-invalid`, one that answers with an HTTP error counts
//! `sts-policy-fetch-error`; both under the policy domain with policy type
//! `sts`, no policy string or MX pattern, no addresses and no
//! receiving-mx-hostname (never the domain in its place). The mail still
//! goes out (no usable policy: opportunistic), to the small SMTP peer of
//! `outbound_support`. DNS: the signed NSD world of `outbound_support`.
//! Needs `nsd` and `ldnsutils`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "../../mailtls-policy/tests/mta_sts_common/mod.rs"]
mod mta_sts_common;
mod outbound_support;

use std::time::Duration;

use common::*;
use mailtls_policy::result_type::{PolicyType, ResultType};
use mailtls_policy::tlsrpt::Collector;
use outbound_support::*;

const WAIT: Duration = Duration::from_secs(40);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_fetch_failures_are_counted_for_the_policy_domain_without_an_mx() {
    // The certificate names mta-sts.fetch.test only.
    let policy_host = mta_sts_common::PolicyHost::start(&["fetch.test"]).await;
    policy_host.set(
        "fetch.test",
        mta_sts_common::Reply {
            status: 500,
            content_type: Some("text/plain".into()),
            body: b"broken".to_vec(),
            location: None,
            delay: Duration::ZERO,
        },
    );
    let world = SignedRoot::start(
        "fetch.test. MX 10 mx.fetch.test.\n\
         mx.fetch.test. A 127.0.0.1\n\
         _mta-sts.fetch.test. TXT \"v=STSv1; id=1\"\n\
         mta-sts.fetch.test. A 127.0.0.1\n\
         webpki.test. MX 10 mx.webpki.test.\n\
         mx.webpki.test. A 127.0.0.1\n\
         _mta-sts.webpki.test. TXT \"v=STSv1; id=1\"\n\
         mta-sts.webpki.test. A 127.0.0.1\n",
    );
    let peer = SlowPeer::start(Duration::ZERO).await;
    let ts = start(|c, dir| {
        let o = &mut c.outbound;
        o.enabled = true;
        o.dns_server = Some(world.addr);
        o.trust_anchor = Some(world.anchor.clone());
        o.mx_port = peer.addr.port();
        o.retry = vec![Duration::from_secs(1)];
        o.timeout = Duration::from_secs(10);
        o.ca_file = Some(write_ca_file(
            dir,
            "test-roots.pem",
            &[&policy_host.ca.certificate().cert_pem],
        ));
        o.mta_sts_fetch_port = policy_host.addr.port();
    })
    .await;
    for rcpt in ["user@fetch.test", "user@webpki.test"] {
        submit(
            &ts,
            "test@example.test",
            rcpt,
            false,
            &[&format!("Subject: to {rcpt}"), "", "body"],
        )
        .await;
    }
    eventually(WAIT, "both messages at the MX", || {
        (peer.acknowledged() == 2).then_some(())
    })
    .await;
    // Only fetch.test gets as far as an HTTP request.
    assert!(policy_host.hits() >= 1, "the policy was asked for");

    let TestServer { server, dir } = ts;
    server.shutdown().await;
    let collector = Collector::open(dir.path().join("tlsrpt")).unwrap();
    let snapshot = collector.snapshot();
    let sts_failure = |domain: &str| {
        snapshot
            .iter()
            .find(|(k, _)| {
                k.policy.policy_type == PolicyType::Sts
                    && k.policy.domain == domain
                    && k.failure.as_ref().is_some_and(|f| {
                        matches!(
                            f.result_type,
                            ResultType::StsWebpkiInvalid | ResultType::StsPolicyFetchError
                        )
                    })
            })
            .unwrap_or_else(|| panic!("no MTA-STS fetch failure for {domain}: {snapshot:#?}"))
    };
    for (domain, expected) in [
        ("fetch.test", ResultType::StsPolicyFetchError),
        ("webpki.test", ResultType::StsWebpkiInvalid),
    ] {
        let (key, count) = sts_failure(domain);
        let f = key.failure.as_ref().unwrap();
        assert_eq!(f.result_type, expected, "{domain}: {key:?}");
        assert_eq!(count, 1, "{domain}: one delivery, one fetch");
        assert!(key.policy.strings.is_empty(), "{key:?}");
        assert!(key.policy.mx_hosts.is_empty(), "{key:?}");
        assert_eq!(f.receiving_mx_hostname, "", "no MX session: {key:?}");
        assert_eq!(f.receiving_ip, None, "{key:?}");
        assert_eq!(f.sending_mta_ip, None, "{key:?}");
        assert!(
            f.additional_information
                .as_deref()
                .is_some_and(|i| !i.is_empty()),
            "{key:?}"
        );
    }
    // The domain is never reported as if it were an MX host.
    assert!(
        snapshot
            .iter()
            .all(|(k, _)| k.failure.as_ref().is_none_or(|f| {
                f.receiving_mx_hostname != "fetch.test" && f.receiving_mx_hostname != "webpki.test"
            })),
        "{snapshot:#?}"
    );
}
