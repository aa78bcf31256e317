//! The delivery plan as a pure decision over resolved facts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr};

use mailtls_core::{DnsName, NamePattern};
use mailtls_policy::dns::{DnssecStatus, TlsaRecord};
use mailtls_policy::mta_sts::{MtaStsPolicy, PolicyMode};
use mailtls_policy::plan::{
    AddressFacts, DomainFacts, DomainFailure, EnhancedStatus, FailureAction, HostAction, HostFacts,
    MxFacts, SkipReason, TlsaFacts, Verification, plan,
};
use mailtls_policy::requiretls::TlsDemand;
use mailtls_policy::result_type::PolicyType;

use DnssecStatus::{Authentic, Bogus, Insecure};

fn name(s: &str) -> DnsName {
    DnsName::parse(s).unwrap()
}

fn tlsa(u: u8, s: u8, m: u8) -> TlsaRecord {
    TlsaRecord {
        usage: u.into(),
        selector: s.into(),
        matching: m.into(),
        data: vec![0xab; 32],
    }
}

fn host(pref: u16, n: &str, addr: DnssecStatus, tlsa: TlsaFacts) -> HostFacts {
    HostFacts {
        preference: pref,
        name: name(n),
        addresses: AddressFacts::Found {
            canonical: name(n),
            dnssec: addr,
            addresses: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        },
        tlsa,
    }
}

fn records(n: &str, dnssec: DnssecStatus, recs: Vec<TlsaRecord>) -> TlsaFacts {
    TlsaFacts::Records {
        base: name(n),
        dnssec,
        records: recs,
    }
}

fn sts(mode: PolicyMode, mx: &[&str]) -> MtaStsPolicy {
    MtaStsPolicy::new(
        mode,
        mx.iter().map(|p| NamePattern::parse(p).unwrap()).collect(),
        86400,
    )
}

fn facts(dnssec: DnssecStatus, hosts: Vec<HostFacts>, policy: Option<MtaStsPolicy>) -> DomainFacts {
    DomainFacts {
        domain: name("example.com"),
        mx: MxFacts::Hosts { dnssec, hosts },
        mta_sts: policy,
    }
}

#[test]
fn hosts_are_ordered_by_preference_and_plain_domains_are_opportunistic() {
    let f = facts(
        Insecure,
        vec![
            host(20, "b.example.com", Insecure, TlsaFacts::NotApplicable),
            host(10, "a.example.com", Insecure, TlsaFacts::NotApplicable),
        ],
        None,
    );
    let p = plan(&f, TlsDemand::Default);
    let order: Vec<_> = p.entries.iter().map(|e| e.host.as_str()).collect();
    assert_eq!(order, ["a.example.com", "b.example.com"]);
    for e in &p.entries {
        assert_eq!(e.action, HostAction::OpportunisticTls { audit: None });
        assert_eq!(e.policy, PolicyType::NoPolicyFound);
        assert_eq!(e.on_failure, FailureAction::TryNextMx);
    }
    assert_eq!(
        p.when_exhausted,
        FailureAction::Defer(EnhancedStatus::UNABLE_TO_ROUTE)
    );
}

#[test]
fn dane_with_usable_records_requires_dane_and_beats_mta_sts() {
    let f = facts(
        Authentic,
        vec![host(
            10,
            "mx.example.com",
            Authentic,
            records(
                "mx.example.com",
                Authentic,
                vec![tlsa(3, 1, 1), tlsa(1, 1, 1)],
            ),
        )],
        // An enforce policy that does not even list the host: DANE wins
        // (RFC 8461 §2).
        Some(sts(PolicyMode::Enforce, &["other.example.net"])),
    );
    let p = plan(&f, TlsDemand::Default);
    let e = &p.entries[0];
    assert_eq!(e.policy, PolicyType::Tlsa);
    match &e.action {
        HostAction::RequireTls {
            verify:
                Verification::Dane {
                    records,
                    reference_names,
                },
        } => {
            assert_eq!(records.len(), 1, "the PKIX-EE record is dropped");
            assert_eq!(reference_names, &vec![name("mx.example.com")]);
        }
        other => panic!("expected DANE, got {other:?}"),
    }
    assert_eq!(
        p.when_exhausted,
        FailureAction::Defer(EnhancedStatus::CRYPTO_FAILURE_TEMPORARY)
    );
}

#[test]
fn all_unusable_tlsa_means_tls_without_authentication_rfc7672_2_2() {
    let f = facts(
        Authentic,
        vec![host(
            10,
            "mx.example.com",
            Authentic,
            records(
                "mx.example.com",
                Authentic,
                vec![tlsa(0, 0, 1), tlsa(1, 1, 1)],
            ),
        )],
        None,
    );
    assert_eq!(
        plan(&f, TlsDemand::Default).entries[0].action,
        HostAction::RequireTlsUnauthenticated
    );
}

#[test]
fn dane_needs_authentic_mx_address_and_tlsa() {
    let recs = || records("mx.example.com", Authentic, vec![tlsa(3, 1, 1)]);
    // Insecure MX: no DANE.
    let p = plan(
        &facts(
            Insecure,
            vec![host(10, "mx.example.com", Authentic, recs())],
            None,
        ),
        TlsDemand::Default,
    );
    assert_eq!(
        p.entries[0].action,
        HostAction::OpportunisticTls { audit: None }
    );
    // Insecure address records: no DANE.
    let p = plan(
        &facts(
            Authentic,
            vec![host(10, "mx.example.com", Insecure, recs())],
            None,
        ),
        TlsDemand::Default,
    );
    assert_eq!(
        p.entries[0].action,
        HostAction::OpportunisticTls { audit: None }
    );
    // Insecure TLSA records: not used.
    let insecure = records("mx.example.com", Insecure, vec![tlsa(3, 1, 1)]);
    let p = plan(
        &facts(
            Authentic,
            vec![host(10, "mx.example.com", Authentic, insecure)],
            None,
        ),
        TlsDemand::Default,
    );
    assert_eq!(
        p.entries[0].action,
        HostAction::OpportunisticTls { audit: None }
    );
}

#[test]
fn failed_or_bogus_tlsa_skips_the_host() {
    let bogus = records("a.example.com", Bogus, vec![tlsa(3, 1, 1)]);
    let failed = TlsaFacts::Failed {
        bogus: false,
        detail: "SERVFAIL".into(),
    };
    let f = facts(
        Authentic,
        vec![
            host(10, "a.example.com", Authentic, bogus),
            host(20, "b.example.com", Authentic, failed),
        ],
        None,
    );
    let p = plan(&f, TlsDemand::Default);
    for e in &p.entries {
        assert!(
            matches!(
                e.action,
                HostAction::Skip {
                    reason: SkipReason::TlsaLookupFailed { .. }
                }
            ),
            "{e:?}"
        );
    }
    match &p.entries[0].action {
        HostAction::Skip { reason } => {
            assert_eq!(
                reason.result_type(),
                Some(mailtls_policy::result_type::ResultType::DnssecInvalid)
            );
            assert!(reason.is_temporary());
        }
        _ => unreachable!(),
    }
    assert_eq!(p.usable().count(), 0);
    assert_eq!(
        p.when_exhausted,
        FailureAction::Defer(EnhancedStatus::CRYPTO_FAILURE_TEMPORARY)
    );
}

#[test]
fn mta_sts_enforce_skips_unlisted_hosts_and_requires_webpki_for_listed() {
    let f = facts(
        Insecure,
        vec![
            host(10, "mx1.example.com", Insecure, TlsaFacts::NotApplicable),
            host(20, "backup.example.org", Insecure, TlsaFacts::NotApplicable),
        ],
        Some(sts(PolicyMode::Enforce, &["*.example.com"])),
    );
    let p = plan(&f, TlsDemand::Default);
    assert_eq!(
        p.entries[0].action,
        HostAction::RequireTls {
            verify: Verification::WebPki {
                allowed_names: vec![name("mx1.example.com")]
            }
        }
    );
    assert_eq!(p.entries[0].policy, PolicyType::Sts);
    assert_eq!(
        p.entries[1].action,
        HostAction::Skip {
            reason: SkipReason::NotInStsPolicy
        }
    );
}

#[test]
fn mta_sts_testing_never_blocks_but_audits() {
    let f = facts(
        Insecure,
        vec![host(
            10,
            "backup.example.org",
            Insecure,
            TlsaFacts::NotApplicable,
        )],
        Some(sts(PolicyMode::Testing, &["*.example.com"])),
    );
    let p = plan(&f, TlsDemand::Default);
    assert!(matches!(
        p.entries[0].action,
        HostAction::OpportunisticTls {
            audit: Some(Verification::WebPki { .. })
        }
    ));
    assert_eq!(p.entries[0].policy, PolicyType::Sts);
    // `mode: none` is no policy at all.
    let f = facts(
        Insecure,
        vec![host(
            10,
            "mx.example.com",
            Insecure,
            TlsaFacts::NotApplicable,
        )],
        Some(sts(PolicyMode::None, &[])),
    );
    assert_eq!(
        plan(&f, TlsDemand::Default).entries[0].policy,
        PolicyType::NoPolicyFound
    );
}

#[test]
fn tls_required_no_turns_policy_failures_into_audits_rfc8689_4_2_2() {
    let f = facts(
        Insecure,
        vec![
            host(10, "mx1.example.com", Insecure, TlsaFacts::NotApplicable),
            host(20, "backup.example.org", Insecure, TlsaFacts::NotApplicable),
        ],
        Some(sts(PolicyMode::Enforce, &["*.example.com"])),
    );
    let p = plan(&f, TlsDemand::IgnorePolicyFailures);
    assert!(matches!(
        p.entries[0].action,
        HostAction::OpportunisticTls { audit: Some(_) }
    ));
    assert_eq!(
        p.entries[1].action,
        HostAction::OpportunisticTls { audit: None }
    );
}

#[test]
fn requiretls_needs_dnssec_or_sts_enforce_else_fails_with_5_7_30() {
    // Insecure MX, no policy: every host fails now, the message bounces.
    let f = facts(
        Insecure,
        vec![host(
            10,
            "mx.example.com",
            Insecure,
            TlsaFacts::NotApplicable,
        )],
        None,
    );
    let p = plan(&f, TlsDemand::RequireTls);
    assert!(
        matches!(p.entries[0].action, HostAction::FailNow { status, .. } if status == EnhancedStatus::REQUIRETLS_REQUIRED)
    );
    assert_eq!(
        p.entries[0].on_failure,
        FailureAction::Bounce(EnhancedStatus::REQUIRETLS_REQUIRED)
    );
    assert_eq!(
        p.when_exhausted,
        FailureAction::Bounce(EnhancedStatus::REQUIRETLS_REQUIRED)
    );

    // Testing mode is not enough.
    let f = facts(
        Insecure,
        vec![host(
            10,
            "mx.example.com",
            Insecure,
            TlsaFacts::NotApplicable,
        )],
        Some(sts(PolicyMode::Testing, &["mx.example.com"])),
    );
    assert!(matches!(
        plan(&f, TlsDemand::RequireTls).entries[0].action,
        HostAction::FailNow { .. }
    ));

    // Enforce mode listing the host qualifies; WebPKI and REQUIRETLS from the peer.
    let f = facts(
        Insecure,
        vec![host(
            10,
            "mx.example.com",
            Insecure,
            TlsaFacts::NotApplicable,
        )],
        Some(sts(PolicyMode::Enforce, &["mx.example.com"])),
    );
    let p = plan(&f, TlsDemand::RequireTls);
    assert!(matches!(
        p.entries[0].action,
        HostAction::RequireTls {
            verify: Verification::WebPki { .. }
        }
    ));
    assert!(p.entries[0].peer_must_advertise_requiretls);

    // DNSSEC-validated MX without TLSA: WebPKI for the MX name.
    let f = facts(
        Authentic,
        vec![host(
            10,
            "mx.example.com",
            Authentic,
            TlsaFacts::Absent { dnssec: Authentic },
        )],
        None,
    );
    assert!(matches!(
        plan(&f, TlsDemand::RequireTls).entries[0].action,
        HostAction::RequireTls {
            verify: Verification::WebPki { .. }
        }
    ));

    // All-unusable TLSA is not verification enough for REQUIRETLS.
    let f = facts(
        Authentic,
        vec![host(
            10,
            "mx.example.com",
            Authentic,
            records("mx.example.com", Authentic, vec![tlsa(1, 1, 1)]),
        )],
        None,
    );
    assert!(matches!(
        plan(&f, TlsDemand::RequireTls).entries[0].action,
        HostAction::RequireTls {
            verify: Verification::WebPki { .. }
        }
    ));
}

#[test]
fn domain_level_failures() {
    let mut f = facts(Insecure, vec![], None);
    f.mx = MxFacts::NullMx;
    let p = plan(&f, TlsDemand::Default);
    assert_eq!(p.domain_failure, Some(DomainFailure::NullMx));
    assert_eq!(
        p.when_exhausted,
        FailureAction::Bounce(EnhancedStatus::NULL_MX)
    );
    f.mx = MxFacts::LookupFailed {
        bogus: true,
        detail: "bogus".into(),
    };
    let p = plan(&f, TlsDemand::Default);
    assert!(p.entries.is_empty());
    assert_eq!(
        p.when_exhausted,
        FailureAction::Defer(EnhancedStatus::DNS_TEMPORARY)
    );
    f.mx = MxFacts::NoSuchDomain;
    assert_eq!(
        plan(&f, TlsDemand::Default).when_exhausted,
        FailureAction::Bounce(EnhancedStatus::NO_SUCH_DOMAIN)
    );
}

#[test]
fn missing_starttls_fails_required_entries_and_is_reported_under_a_policy() {
    let f = facts(
        Insecure,
        vec![host(
            10,
            "mx1.example.com",
            Insecure,
            TlsaFacts::NotApplicable,
        )],
        Some(sts(PolicyMode::Enforce, &["*.example.com"])),
    );
    let enforce = plan(&f, TlsDemand::Default).entries[0].on_starttls_missing();
    assert!(!enforce.proceed_in_cleartext);
    assert_eq!(
        enforce.report,
        Some(mailtls_policy::result_type::ResultType::StarttlsNotSupported)
    );

    let f = facts(
        Insecure,
        vec![host(
            10,
            "mx1.example.com",
            Insecure,
            TlsaFacts::NotApplicable,
        )],
        Some(sts(PolicyMode::Testing, &["*.example.com"])),
    );
    let testing = plan(&f, TlsDemand::Default).entries[0].on_starttls_missing();
    assert!(testing.proceed_in_cleartext);
    assert_eq!(
        testing.report,
        Some(mailtls_policy::result_type::ResultType::StarttlsNotSupported)
    );

    let f = facts(
        Insecure,
        vec![host(
            10,
            "mx1.example.com",
            Insecure,
            TlsaFacts::NotApplicable,
        )],
        None,
    );
    let none = plan(&f, TlsDemand::Default).entries[0].on_starttls_missing();
    assert!(none.proceed_in_cleartext);
    assert_eq!(none.report, None);
}
