//! Outbound delivery to MX hosts by the mailtls-policy plan, in a DNSSEC
//! world of our own (NSD, a signed root zone, the server validating from
//! its key) with real Postfix instances as the MX hosts:
//!
//! - MTA-STS enforce (policy served over HTTPS by the policy-test host)
//!   whose MX presents a certificate for another name: no mail, a
//!   `certificate-host-mismatch` failure counted for TLS-RPT; the same
//!   domain with `TLS-Required: No` (RFC 8689 §5) gets its mail.
//! - DANE: a matching TLSA record delivers to a self-signed MX, a wrong one
//!   does not (`tlsa-invalid` counted).
//! - DANE with a CNAME'd MX host whose Postfix picks its certificate by SNI:
//!   the client sends the TLSA base domain (RFC 7672 §8.1), gets the
//!   certificate the TLSA record names, and delivers.
//! - MTA-STS testing mode delivers despite the mismatch and reports it;
//!   enforce mode sends nothing to an MX without STARTTLS
//!   (`starttls-not-supported` counted).
//! - REQUIRETLS to that DANE-verified peer, which does not advertise
//!   REQUIRETLS: returned to the local sender as a 5.7.30 DSN.
//! - A domain without MX records gets mail at its address (RFC 5321 §5.1);
//!   a null MX (RFC 7505) is returned at once with 5.1.10; when the first
//!   MX does not answer the next one gets the message; a TLS report's own
//!   delivery is not counted.
//!
//! Needs `postfix`, `nsd` and `ldnsutils`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "../../mailtls-policy/tests/mta_sts_common/mod.rs"]
mod mta_sts_common;
mod outbound_support;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use common::*;
use mailtls_core::{DnsName, ServerCertSpec};
use mailtls_policy::result_type::{PolicyType, ResultType};
use mailtls_policy::tlsrpt::Collector;
use outbound_support::*;

const WAIT: Duration = Duration::from_secs(40);

const MX_A: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const MX_B: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
const MX_SNI: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 5);

fn outbound_on(c: &mut mailtls_examples::Config, world: &SignedRoot, mx_port: u16) {
    let o = &mut c.outbound;
    o.enabled = true;
    o.dns_server = Some(world.addr);
    o.trust_anchor = Some(world.anchor.clone());
    o.mx_port = mx_port;
    o.retry = vec![Duration::from_secs(1)];
    o.timeout = Duration::from_secs(10);
}

/// The recipient's state in the queue, once it has had a failed attempt.
fn deferred(data_dir: &Path, rcpt: &str) -> Option<String> {
    queue_states(data_dir).into_iter().find_map(|s| {
        let r = s["recipients"]
            .as_array()?
            .iter()
            .find(|r| r["address"] == rcpt)?
            .clone();
        (r["attempts"].as_u64()? >= 1 && r["state"] == "pending")
            .then(|| r["last_error"].as_str().unwrap_or_default().to_owned())
    })
}

/// Counts in the server's TLS-RPT collector, read after it stopped.
fn counts(data_dir: &Path) -> Vec<(PolicyType, String, Option<ResultType>, String, u64)> {
    let c = Collector::open(data_dir.join("tlsrpt")).unwrap();
    c.snapshot()
        .iter()
        .map(|(k, n)| {
            (
                k.policy.policy_type,
                k.policy.domain.clone(),
                k.failure.as_ref().map(|f| f.result_type),
                k.failure
                    .as_ref()
                    .map(|f| f.receiving_mx_hostname.clone())
                    .unwrap_or_default(),
                n,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mta_sts_enforce_with_a_mismatched_certificate_gets_no_mail() {
    let policy_host = mta_sts_common::PolicyHost::start(&["sts.test"]).await;
    policy_host.set(
        "sts.test",
        mta_sts_common::Reply::policy(
            "version: STSv1\r\nmode: enforce\r\nmx: mx.sts.test\r\nmax_age: 86400\r\n",
        ),
    );
    let world = SignedRoot::start(
        "sts.test. MX 10 mx.sts.test.\n\
         mx.sts.test. A 127.0.0.2\n\
         _mta-sts.sts.test. TXT \"v=STSv1; id=20261124\"\n\
         mta-sts.sts.test. A 127.0.0.1\n",
    );
    let ca = test_ca();
    // Trusted by the server, but issued for another name.
    let wrong = issue(&ca, "wrong.test");
    let port = free_port(&[MX_A]);
    let mx = PostfixMx::start(
        SocketAddr::from((MX_A, port)),
        "mx.sts.test",
        &wrong.chain_pem(),
        wrong.key_pem(),
        &["sts.test"],
    );
    let ts = start(|c, dir| {
        outbound_on(c, &world, port);
        let ca_file = write_ca_file(
            dir,
            "test-roots.pem",
            &[
                &ca.certificate().cert_pem,
                &policy_host.ca.certificate().cert_pem,
            ],
        );
        c.outbound.ca_file = Some(ca_file);
        c.outbound.mta_sts_fetch_port = policy_host.addr.port();
    })
    .await;

    submit(
        &ts,
        "test@example.test",
        "user@sts.test",
        false,
        &["Subject: enforced", "", "must not arrive"],
    )
    .await;
    let error = eventually(WAIT, "a deferred attempt", || {
        deferred(ts.data_dir(), "user@sts.test")
    })
    .await;
    assert!(error.contains("certificate-host-mismatch"), "{error}");
    assert!(policy_host.hits() >= 1, "the policy was fetched");

    // RFC 8689 §5: the sender asks to ignore recipient TLS policy.
    submit(
        &ts,
        "test@example.test",
        "other@sts.test",
        false,
        &["Subject: relaxed", "TLS-Required: No", "", "may arrive"],
    )
    .await;
    let got = mx.wait_for("may arrive").await;
    assert!(got.contains("(using TLS"), "still sent over TLS: {got}");
    assert!(
        mx.messages().iter().all(|m| !m.contains("must not arrive")),
        "{:?}",
        mx.messages()
    );

    let TestServer { server, dir } = ts;
    server.shutdown().await;
    let counted = counts(dir.path());
    assert!(
        counted
            .iter()
            .any(|(t, d, r, host, n)| *t == PolicyType::Sts
                && d == "sts.test"
                && *r == Some(ResultType::CertificateHostMismatch)
                && host == "mx.sts.test"
                && *n >= 2),
        "{counted:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dane_needs_a_matching_tlsa_and_requiretls_needs_the_peer_to_offer_it() {
    // The MX certificate is self-signed: only DANE-EE can vouch for it.
    let cert = mailtls_core::self_signed(&ServerCertSpec::new(
        DnsName::parse("mx.dane.test").unwrap(),
    ))
    .unwrap();
    let world = SignedRoot::start(&format!(
        "dane.test. MX 10 mx.dane.test.\n\
         mx.dane.test. A 127.0.0.3\n\
         _25._tcp.mx.dane.test. TLSA 3 0 1 {}\n\
         badtlsa.test. MX 10 mx.badtlsa.test.\n\
         mx.badtlsa.test. A 127.0.0.3\n\
         _25._tcp.mx.badtlsa.test. TLSA 3 0 1 {}\n\
         implicit.test. A 127.0.0.3\n\
         nullmx.test. MX 0 .\n\
         nullmx.test. A 127.0.0.3\n\
         twomx.test. MX 10 mx-down.twomx.test.\n\
         twomx.test. MX 20 mx.dane.test.\n\
         mx-down.twomx.test. A 127.0.0.4\n",
        cert_sha256_hex(&cert),
        "ab".repeat(32),
    ));
    let port = free_port(&[MX_B]);
    let mx = PostfixMx::start(
        SocketAddr::from((MX_B, port)),
        "mx.dane.test",
        &cert.chain_pem(),
        cert.key_pem(),
        &[
            "dane.test",
            "badtlsa.test",
            "implicit.test",
            "nullmx.test",
            "twomx.test",
        ],
    );
    let ts = start(|c, _| outbound_on(c, &world, port)).await;

    submit(
        &ts,
        "test@example.test",
        "user@dane.test",
        false,
        &["Subject: dane", "", "verified by tlsa"],
    )
    .await;
    let got = mx.wait_for("verified by tlsa").await;
    assert!(got.contains("(using TLS"), "{got}");

    submit(
        &ts,
        "test@example.test",
        "user@badtlsa.test",
        false,
        &["Subject: bad tlsa", "", "no match"],
    )
    .await;
    let error = eventually(WAIT, "a deferred attempt", || {
        deferred(ts.data_dir(), "user@badtlsa.test")
    })
    .await;
    assert!(error.contains("TLS handshake failed"), "{error}");

    // The first MX does not answer: the next one gets the message.
    submit(
        &ts,
        "test@example.test",
        "user@twomx.test",
        false,
        &["Subject: second mx", "", "via preference 20"],
    )
    .await;
    mx.wait_for("via preference 20").await;

    // A TLS report's own delivery is not counted (RFC 8460 §5.3.1).
    submit(
        &ts,
        "test@example.test",
        "tlsrpt@dane.test",
        false,
        &[
            "Subject: Report Domain: example.test",
            "TLS-Report-Domain: example.test",
            "TLS-Report-Submitter: mail.example.test",
            "",
            "a report",
        ],
    )
    .await;
    mx.wait_for("a report").await;

    // RFC 5321 §5.1: no MX records, the domain's own address is the MX.
    submit(
        &ts,
        "test@example.test",
        "user@implicit.test",
        false,
        &["Subject: implicit", "", "to the A record"],
    )
    .await;
    mx.wait_for("to the A record").await;

    // RFC 7505: a null MX accepts no mail; returned at once with 5.1.10.
    submit(
        &ts,
        "test@example.test",
        "user@nullmx.test",
        false,
        &["Subject: null", "", "nobody home"],
    )
    .await;
    let dsn = eventually(WAIT, "a null MX DSN", || {
        spooled(ts.data_dir())
            .into_iter()
            .find(|m| m.contains("Final-Recipient: rfc822; user@nullmx.test"))
    })
    .await;
    assert!(dsn.contains("Status: 5.1.10"), "{dsn}");

    // REQUIRETLS: the MX is DNSSEC-signed and DANE-verified, but Postfix
    // does not advertise REQUIRETLS: returned with 5.7.30, never sent.
    submit(
        &ts,
        "test@example.test",
        "strict@dane.test",
        true,
        &["Subject: requiretls", "", "only over a requiretls path"],
    )
    .await;
    let dsn = eventually(WAIT, "a DSN in the spool", || {
        spooled(ts.data_dir())
            .into_iter()
            .find(|m| m.contains("Final-Recipient: rfc822; strict@dane.test"))
    })
    .await;
    assert!(dsn.contains("Status: 5.7.30"), "{dsn}");
    assert!(dsn.contains("REQUIRETLS"), "{dsn}");
    assert!(dsn.contains("Subject: requiretls"), "{dsn}");
    // RFC 8689 §5: the whole message comes back, in a DSN that is itself
    // REQUIRETLS (the spool's marker once, on the DSN, not on the copy).
    assert!(dsn.contains("only over a requiretls path"), "{dsn}");
    assert!(dsn.contains("message/rfc822"), "{dsn}");
    assert_eq!(dsn.matches("X-Mailtls-Requiretls: yes").count(), 1, "{dsn}");
    assert!(
        mx.messages()
            .iter()
            .all(|m| !m.contains("no match") && !m.contains("only over a requiretls path")),
        "{:?}",
        mx.messages()
    );

    let TestServer { server, dir } = ts;
    server.shutdown().await;
    let counted = counts(dir.path());
    // Three DANE-verified sessions with mx.dane.test: user@dane.test,
    // user@twomx.test and the REQUIRETLS attempt (TLS succeeded, then the
    // peer lacked REQUIRETLS); the report mail is not counted.
    let successes: u64 = counted
        .iter()
        .filter(|(t, d, r, _, _)| *t == PolicyType::Tlsa && d == "mx.dane.test" && r.is_none())
        .map(|(.., n)| n)
        .sum();
    assert_eq!(successes, 3, "{counted:?}");
    assert!(
        counted
            .iter()
            .any(|(t, d, r, host, _)| *t == PolicyType::Tlsa
                && d == "mx.badtlsa.test"
                && *r == Some(ResultType::TlsaInvalid)
                && host == "mx.badtlsa.test"),
        "a TLSA failure: {counted:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mta_sts_testing_reports_but_delivers_and_enforce_needs_starttls() {
    let policy_host = mta_sts_common::PolicyHost::start(&["testing.test", "plain.test"]).await;
    policy_host.set(
        "testing.test",
        mta_sts_common::Reply::policy(
            "version: STSv1\r\nmode: testing\r\nmx: mx.testing.test\r\nmax_age: 86400\r\n",
        ),
    );
    policy_host.set(
        "plain.test",
        mta_sts_common::Reply::policy(
            "version: STSv1\r\nmode: enforce\r\nmx: mx.plain.test\r\nmax_age: 86400\r\n",
        ),
    );
    let world = SignedRoot::start(
        "testing.test. MX 10 mx.testing.test.\n\
         mx.testing.test. A 127.0.0.2\n\
         _mta-sts.testing.test. TXT \"v=STSv1; id=t1\"\n\
         mta-sts.testing.test. A 127.0.0.1\n\
         plain.test. MX 10 mx.plain.test.\n\
         mx.plain.test. A 127.0.0.3\n\
         _mta-sts.plain.test. TXT \"v=STSv1; id=p1\"\n\
         mta-sts.plain.test. A 127.0.0.1\n",
    );
    let ca = test_ca();
    let wrong = issue(&ca, "wrong.test");
    let port = free_port(&[MX_A, MX_B]);
    let testing_mx = PostfixMx::start(
        SocketAddr::from((MX_A, port)),
        "mx.testing.test",
        &wrong.chain_pem(),
        wrong.key_pem(),
        &["testing.test"],
    );
    let plain_mx = PostfixMx::start_without_tls(
        SocketAddr::from((MX_B, port)),
        "mx.plain.test",
        &["plain.test"],
    );
    let ts = start(|c, dir| {
        outbound_on(c, &world, port);
        let ca_file = write_ca_file(
            dir,
            "test-roots.pem",
            &[
                &ca.certificate().cert_pem,
                &policy_host.ca.certificate().cert_pem,
            ],
        );
        c.outbound.ca_file = Some(ca_file);
        c.outbound.mta_sts_fetch_port = policy_host.addr.port();
    })
    .await;

    // RFC 8461 §5: testing mode never blocks; the failure is only reported.
    submit(
        &ts,
        "test@example.test",
        "user@testing.test",
        false,
        &["Subject: testing mode", "", "delivered anyway"],
    )
    .await;
    testing_mx.wait_for("delivered anyway").await;

    // Enforce mode: an MX without STARTTLS gets nothing.
    submit(
        &ts,
        "test@example.test",
        "user@plain.test",
        false,
        &["Subject: enforce", "", "not in clear"],
    )
    .await;
    let error = eventually(WAIT, "a deferred attempt", || {
        deferred(ts.data_dir(), "user@plain.test")
    })
    .await;
    assert!(error.contains("STARTTLS not offered"), "{error}");
    assert!(plain_mx.messages().is_empty(), "{:?}", plain_mx.messages());

    let TestServer { server, dir } = ts;
    server.shutdown().await;
    let counted = counts(dir.path());
    assert!(
        counted
            .iter()
            .any(|(t, d, r, host, _)| *t == PolicyType::Sts
                && d == "testing.test"
                && *r == Some(ResultType::CertificateHostMismatch)
                && host == "mx.testing.test"),
        "{counted:?}"
    );
    assert!(
        counted
            .iter()
            .any(|(t, d, r, host, _)| *t == PolicyType::Sts
                && d == "plain.test"
                && *r == Some(ResultType::StarttlsNotSupported)
                && host == "mx.plain.test"),
        "{counted:?}"
    );
}

/// RFC 7672 §8.1: the MX name `mx.alias.test` is a CNAME to
/// `mail.provider.test`, where the TLSA record is. The MX's Postfix presents
/// a certificate the TLSA record does not name unless the client sends
/// `mail.provider.test` as SNI; sending the MX name would defer the mail.
/// Beside it, `unusable.test` publishes only a PKIX-EE(1) record, unusable
/// for SMTP: delivered over unauthenticated TLS (RFC 7672 §2.2) and counted
/// as `tlsa-invalid` for TLS-RPT (the crate's documented choice).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dane_sends_the_tlsa_base_domain_as_sni_and_reports_unusable_tlsa() {
    let made = |host: &str| {
        mailtls_core::self_signed(&ServerCertSpec::new(DnsName::parse(host).unwrap())).unwrap()
    };
    let by_mx_name = made("mx.alias.test");
    let by_base = made("mail.provider.test");
    let world = SignedRoot::start(&format!(
        "alias.test. MX 10 mx.alias.test.\n\
         mx.alias.test. CNAME mail.provider.test.\n\
         mail.provider.test. A {MX_SNI}\n\
         _25._tcp.mail.provider.test. TLSA 3 0 1 {}\n\
         unusable.test. MX 10 mx.unusable.test.\n\
         mx.unusable.test. A {MX_SNI}\n\
         _25._tcp.mx.unusable.test. TLSA 1 0 1 {}\n",
        cert_sha256_hex(&by_base),
        cert_sha256_hex(&by_mx_name),
    ));
    let port = free_port(&[MX_SNI]);
    let mx = PostfixMx::start_with_sni(
        SocketAddr::from((MX_SNI, port)),
        "mail.provider.test",
        (&by_mx_name.chain_pem(), by_mx_name.key_pem()),
        (
            "mail.provider.test",
            &by_base.chain_pem(),
            by_base.key_pem(),
        ),
        &["alias.test", "unusable.test"],
    );
    let ts = start(|c, _| outbound_on(c, &world, port)).await;
    submit(
        &ts,
        "test@example.test",
        "user@alias.test",
        false,
        &["Subject: sni", "", "chosen by sni"],
    )
    .await;
    let got = mx.wait_for("chosen by sni").await;
    assert!(got.contains("(using TLS"), "{got}");
    assert!(
        deferred(ts.data_dir(), "user@alias.test").is_none(),
        "delivered at the first attempt"
    );

    submit(
        &ts,
        "test@example.test",
        "user@unusable.test",
        false,
        &["Subject: unusable", "", "no usable tlsa"],
    )
    .await;
    let got = mx.wait_for("no usable tlsa").await;
    assert!(got.contains("(using TLS"), "{got}");

    let TestServer { server, dir } = ts;
    server.shutdown().await;
    let counted = counts(dir.path());
    assert!(
        counted.iter().any(|(t, d, r, _, n)| *t == PolicyType::Tlsa
            && d == "mail.provider.test"
            && r.is_none()
            && *n == 1),
        "a DANE success at the base domain: {counted:?}"
    );
    assert!(
        counted
            .iter()
            .any(|(t, d, r, host, _)| *t == PolicyType::Tlsa
                && d == "mx.unusable.test"
                && *r == Some(ResultType::TlsaInvalid)
                && host == "mx.unusable.test"),
        "unusable TLSA counted as tlsa-invalid: {counted:?}"
    );
}
