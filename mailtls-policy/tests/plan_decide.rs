//! The delivery plan as a pure decision over resolved facts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

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
        mta_sts: policy.map(Arc::new),
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

/// One MX host, planned for one message: what its entry must say.
struct OneHost {
    name: &'static str,
    host: &'static str,
    mx: DnssecStatus,
    address: DnssecStatus,
    tlsa: TlsaFacts,
    policy: Option<MtaStsPolicy>,
    demand: TlsDemand,
    action: fn(&HostAction) -> bool,
    entry_policy: Option<PolicyType>,
    on_failure: Option<FailureAction>,
    when_exhausted: Option<FailureAction>,
    peer_must_advertise_requiretls: Option<bool>,
}

impl OneHost {
    /// `mx.example.com` at preference 10 with the given DNSSEC states.
    fn new(
        name: &'static str,
        (mx, address, tlsa): (DnssecStatus, DnssecStatus, TlsaFacts),
        policy: Option<MtaStsPolicy>,
        demand: TlsDemand,
        action: fn(&HostAction) -> bool,
    ) -> Self {
        OneHost {
            name,
            host: "mx.example.com",
            mx,
            address,
            tlsa,
            policy,
            demand,
            action,
            entry_policy: None,
            on_failure: None,
            when_exhausted: None,
            peer_must_advertise_requiretls: None,
        }
    }

    fn check(self) {
        let name = self.name;
        let f = facts(
            self.mx,
            vec![host(10, self.host, self.address, self.tlsa)],
            self.policy,
        );
        let p = plan(&f, self.demand);
        let e = &p.entries[0];
        assert!((self.action)(&e.action), "{name}: action {:?}", e.action);
        if let Some(want) = self.entry_policy {
            assert_eq!(e.policy, want, "{name}: policy");
        }
        if let Some(want) = self.on_failure {
            assert_eq!(e.on_failure, want, "{name}: on_failure");
        }
        if let Some(want) = self.when_exhausted {
            assert_eq!(p.when_exhausted, want, "{name}: when_exhausted");
        }
        if let Some(want) = self.peer_must_advertise_requiretls {
            assert_eq!(
                e.peer_must_advertise_requiretls, want,
                "{name}: peer_must_advertise_requiretls"
            );
        }
    }
}

fn opportunistic_unaudited(a: &HostAction) -> bool {
    *a == HostAction::OpportunisticTls { audit: None }
}

fn require_webpki(a: &HostAction) -> bool {
    matches!(
        a,
        HostAction::RequireTls {
            verify: Verification::WebPki { .. }
        }
    )
}

fn require_dane(a: &HostAction) -> bool {
    matches!(
        a,
        HostAction::RequireTls {
            verify: Verification::Dane { .. }
        }
    )
}

fn fail_now(a: &HostAction) -> bool {
    matches!(a, HostAction::FailNow { .. })
}

#[test]
fn one_host_decisions() {
    let dane_311 = || records("mx.example.com", Authentic, vec![tlsa(3, 1, 1)]);
    let no_tlsa = TlsaFacts::NotApplicable;
    let cases = [
        // DANE needs authentic MX, address and TLSA answers.
        OneHost::new(
            "insecure MX: no DANE",
            (Insecure, Authentic, dane_311()),
            None,
            TlsDemand::Default,
            opportunistic_unaudited,
        ),
        OneHost::new(
            "insecure address records: no DANE",
            (Authentic, Insecure, dane_311()),
            None,
            TlsDemand::Default,
            opportunistic_unaudited,
        ),
        OneHost::new(
            "insecure TLSA records: not used",
            (
                Authentic,
                Authentic,
                records("mx.example.com", Insecure, vec![tlsa(3, 1, 1)]),
            ),
            None,
            TlsDemand::Default,
            opportunistic_unaudited,
        ),
        OneHost::new(
            "all-unusable TLSA means TLS without authentication (RFC 7672 §2.2)",
            (
                Authentic,
                Authentic,
                records(
                    "mx.example.com",
                    Authentic,
                    vec![tlsa(0, 0, 1), tlsa(1, 1, 1)],
                ),
            ),
            None,
            TlsDemand::Default,
            |a| *a == HostAction::RequireTlsUnauthenticated,
        ),
        // MTA-STS testing never blocks, but audits.
        OneHost {
            host: "backup.example.org",
            entry_policy: Some(PolicyType::Sts),
            ..OneHost::new(
                "sts testing: an unlisted host is audited",
                (Insecure, Insecure, no_tlsa.clone()),
                Some(sts(PolicyMode::Testing, &["*.example.com"])),
                TlsDemand::Default,
                |a| {
                    matches!(
                        a,
                        HostAction::OpportunisticTls {
                            audit: Some(Verification::WebPki { .. })
                        }
                    )
                },
            )
        },
        OneHost {
            entry_policy: Some(PolicyType::NoPolicyFound),
            ..OneHost::new(
                "sts mode none is no policy at all",
                (Insecure, Insecure, no_tlsa.clone()),
                Some(sts(PolicyMode::None, &[])),
                TlsDemand::Default,
                opportunistic_unaudited,
            )
        },
        // REQUIRETLS needs DNSSEC or an enforced MTA-STS policy, else 5.7.30.
        OneHost {
            on_failure: Some(FailureAction::Bounce(EnhancedStatus::REQUIRETLS_REQUIRED)),
            when_exhausted: Some(FailureAction::Bounce(EnhancedStatus::REQUIRETLS_REQUIRED)),
            ..OneHost::new(
                "requiretls, insecure MX, no policy: every host fails, the message bounces",
                (Insecure, Insecure, no_tlsa.clone()),
                None,
                TlsDemand::RequireTls,
                |a| {
                    matches!(a, HostAction::FailNow { status, .. }
                    if *status == EnhancedStatus::REQUIRETLS_REQUIRED)
                },
            )
        },
        OneHost::new(
            "requiretls, sts testing mode is not enough",
            (Insecure, Insecure, no_tlsa.clone()),
            Some(sts(PolicyMode::Testing, &["mx.example.com"])),
            TlsDemand::RequireTls,
            fail_now,
        ),
        OneHost {
            peer_must_advertise_requiretls: Some(true),
            ..OneHost::new(
                "requiretls, sts enforce listing the host: WebPKI and REQUIRETLS from the peer",
                (Insecure, Insecure, no_tlsa.clone()),
                Some(sts(PolicyMode::Enforce, &["mx.example.com"])),
                TlsDemand::RequireTls,
                require_webpki,
            )
        },
        OneHost::new(
            "requiretls, DNSSEC-validated MX without TLSA: WebPKI for the MX name",
            (
                Authentic,
                Authentic,
                TlsaFacts::Absent { dnssec: Authentic },
            ),
            None,
            TlsDemand::RequireTls,
            require_webpki,
        ),
        OneHost::new(
            "requiretls, all-unusable TLSA is not verification enough",
            (
                Authentic,
                Authentic,
                records("mx.example.com", Authentic, vec![tlsa(1, 1, 1)]),
            ),
            None,
            TlsDemand::RequireTls,
            require_webpki,
        ),
    ];
    for case in cases {
        case.check();
    }
}

#[test]
fn missing_starttls_fails_required_entries_and_is_reported_under_a_policy() {
    let starttls = Some(mailtls_policy::result_type::ResultType::StarttlsNotSupported);
    let cases = [
        ("sts enforce", Some(PolicyMode::Enforce), false, starttls),
        ("sts testing", Some(PolicyMode::Testing), true, starttls),
        ("no policy", None, true, None),
    ];
    for (case, mode, proceed, report) in cases {
        let f = facts(
            Insecure,
            vec![host(
                10,
                "mx1.example.com",
                Insecure,
                TlsaFacts::NotApplicable,
            )],
            mode.map(|m| sts(m, &["*.example.com"])),
        );
        let missing = plan(&f, TlsDemand::Default).entries[0].on_starttls_missing();
        assert_eq!(missing.proceed_in_cleartext, proceed, "{case}: cleartext");
        assert_eq!(missing.report, report, "{case}: report");
    }
}

#[test]
fn domain_level_failures() {
    let cases = [
        (
            "null MX",
            MxFacts::NullMx,
            DomainFailure::NullMx,
            FailureAction::Bounce(EnhancedStatus::NULL_MX),
        ),
        (
            "bogus MX lookup",
            MxFacts::LookupFailed {
                bogus: true,
                detail: "bogus".into(),
            },
            DomainFailure::MxLookupFailed {
                bogus: true,
                detail: "bogus".into(),
            },
            FailureAction::Defer(EnhancedStatus::DNS_TEMPORARY),
        ),
        (
            "NXDOMAIN",
            MxFacts::NoSuchDomain,
            DomainFailure::NoSuchDomain,
            FailureAction::Bounce(EnhancedStatus::NO_SUCH_DOMAIN),
        ),
    ];
    for (case, mx, failure, exhausted) in cases {
        let mut f = facts(Insecure, vec![], None);
        f.mx = mx;
        let p = plan(&f, TlsDemand::Default);
        assert!(p.entries.is_empty(), "{case}: entries {:?}", p.entries);
        assert_eq!(p.domain_failure, Some(failure), "{case}: domain_failure");
        assert_eq!(p.when_exhausted, exhausted, "{case}: when_exhausted");
    }
}

/// RFC 7672 §8.1: with DANE the client sends the TLSA base domain as SNI;
/// for an MX name that is a (securely) CNAME'd alias that is the expanded
/// name, not the name in the MX record. Without DANE it is the MX name.
#[test]
fn sni_is_the_tlsa_base_domain_for_dane_hosts_rfc7672_8_1() {
    // mx.example.com is a CNAME to mail.provider.example.
    let alias = |tlsa_dnssec, recs: Vec<TlsaRecord>| HostFacts {
        preference: 10,
        name: name("mx.example.com"),
        addresses: AddressFacts::Found {
            canonical: name("mail.provider.example"),
            dnssec: Authentic,
            addresses: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        },
        tlsa: records("mail.provider.example", tlsa_dnssec, recs),
    };
    // Usable DANE-EE records at the expanded name.
    let f = facts(Authentic, vec![alias(Authentic, vec![tlsa(3, 1, 1)])], None);
    let p = plan(&f, TlsDemand::Default);
    let e = &p.entries[0];
    assert!(require_dane(&e.action), "{:?}", e.action);
    assert_eq!(e.host, name("mx.example.com"));
    assert_eq!(e.sni(), &name("mail.provider.example"));
    // TLS-Required: No keeps DANE as an audit: still the base domain.
    let p = plan(&f, TlsDemand::IgnorePolicyFailures);
    assert_eq!(p.entries[0].sni(), &name("mail.provider.example"));

    // No DANE (unsigned TLSA) under MTA-STS: the MX name as listed.
    let f = facts(
        Authentic,
        vec![alias(Insecure, vec![tlsa(3, 1, 1)])],
        Some(sts(PolicyMode::Enforce, &["mx.example.com"])),
    );
    let e = &plan(&f, TlsDemand::Default).entries[0];
    assert!(require_webpki(&e.action), "{:?}", e.action);
    assert_eq!(e.sni(), &name("mx.example.com"));

    // Every TLSA record unusable: TLS without authentication, MX name.
    let f = facts(Authentic, vec![alias(Authentic, vec![tlsa(1, 1, 1)])], None);
    let e = &plan(&f, TlsDemand::Default).entries[0];
    assert_eq!(e.action, HostAction::RequireTlsUnauthenticated);
    assert_eq!(e.sni(), &name("mx.example.com"));
}
