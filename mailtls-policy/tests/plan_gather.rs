//! Gathering plan facts through the scripted resolver.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::Ipv4Addr;

use mailtls_core::DnsName;
use mailtls_policy::dns::{DnssecStatus, StaticResolver, TlsaRecord};
use mailtls_policy::plan::{
    AddressFacts, HostAction, MxFacts, TlsaFacts, Verification, gather, plan,
};
use mailtls_policy::requiretls::TlsDemand;

fn name(s: &str) -> DnsName {
    DnsName::parse(s).unwrap()
}

fn rec() -> TlsaRecord {
    TlsaRecord {
        usage: 3.into(),
        selector: 1.into(),
        matching: 1.into(),
        data: vec![1; 32],
    }
}

#[tokio::test]
async fn signed_world_with_cname_expanded_mx_finds_tlsa_at_the_target_rfc7672_2_2_3() {
    let dns = StaticResolver::builder()
        .default_status(DnssecStatus::Authentic)
        .mx("example.com", 10, "mx.example.com")
        .cname("mx.example.com", "host.provider.example")
        .a("host.provider.example", Ipv4Addr::new(127, 0, 0, 1))
        .tlsa("_25._tcp.host.provider.example", rec())
        .build()
        .unwrap();
    let facts = gather(&dns, &name("example.com"), None).await;
    let MxFacts::Hosts { dnssec, hosts } = &facts.mx else {
        panic!("{:?}", facts.mx)
    };
    assert_eq!(*dnssec, DnssecStatus::Authentic);
    assert!(
        matches!(&hosts[0].addresses, AddressFacts::Found { canonical, .. } if canonical.as_str() == "host.provider.example")
    );
    assert!(
        matches!(&hosts[0].tlsa, TlsaFacts::Records { base, .. } if base.as_str() == "host.provider.example")
    );
    let p = plan(&facts, TlsDemand::Default);
    let HostAction::RequireTls {
        verify: Verification::Dane {
            reference_names, ..
        },
    } = &p.entries[0].action
    else {
        panic!("{:?}", p.entries[0].action)
    };
    // The TLSA base domain first, then the MX name (RFC 7672 §3.2.2).
    assert_eq!(
        reference_names,
        &vec![name("host.provider.example"), name("mx.example.com")]
    );
    // The entry names the MX as found and the addresses of its CNAME target.
    assert_eq!(p.entries[0].host, name("mx.example.com"));
    assert_eq!(
        p.entries[0].addresses,
        vec![std::net::IpAddr::from(Ipv4Addr::new(127, 0, 0, 1))]
    );
}

#[tokio::test]
async fn entries_carry_their_addresses_and_none_when_the_lookup_failed() {
    let dns = StaticResolver::builder()
        .mx("example.com", 10, "mx1.example.com")
        .mx("example.com", 20, "mx2.example.com")
        .a("mx1.example.com", Ipv4Addr::new(192, 0, 2, 1))
        .aaaa("mx1.example.com", "2001:db8::1".parse().unwrap())
        .build()
        .unwrap();
    let p = plan(
        &gather(&dns, &name("example.com"), None).await,
        TlsDemand::Default,
    );
    assert_eq!(p.entries.len(), 2);
    assert_eq!(
        p.entries[0].addresses,
        vec![
            "192.0.2.1".parse::<std::net::IpAddr>().unwrap(),
            "2001:db8::1".parse().unwrap()
        ]
    );
    // mx2 has no address records: skipped, with nothing to connect to.
    assert!(matches!(p.entries[1].action, HostAction::Skip { .. }));
    assert!(p.entries[1].addresses.is_empty());
}

#[tokio::test]
async fn tlsa_falls_back_to_the_mx_name_when_the_target_has_none() {
    let dns = StaticResolver::builder()
        .default_status(DnssecStatus::Authentic)
        .mx("example.com", 10, "mx.example.com")
        .cname("mx.example.com", "host.provider.example")
        .a("host.provider.example", Ipv4Addr::new(127, 0, 0, 1))
        .tlsa("_25._tcp.mx.example.com", rec())
        .build()
        .unwrap();
    let facts = gather(&dns, &name("example.com"), None).await;
    let MxFacts::Hosts { hosts, .. } = &facts.mx else {
        panic!()
    };
    assert!(
        matches!(&hosts[0].tlsa, TlsaFacts::Records { base, .. } if base.as_str() == "mx.example.com")
    );
}

#[tokio::test]
async fn insecure_world_does_not_look_up_tlsa() {
    let dns = StaticResolver::builder()
        .mx("example.com", 10, "mx.example.com")
        .a("mx.example.com", Ipv4Addr::new(127, 0, 0, 1))
        .tlsa("_25._tcp.mx.example.com", rec())
        .build()
        .unwrap();
    let facts = gather(&dns, &name("example.com"), None).await;
    let MxFacts::Hosts { hosts, .. } = &facts.mx else {
        panic!()
    };
    assert_eq!(hosts[0].tlsa, TlsaFacts::NotApplicable);
    assert_eq!(
        plan(&facts, TlsDemand::Default).entries[0].action,
        HostAction::OpportunisticTls { audit: None }
    );
}

#[tokio::test]
async fn null_mx_implicit_mx_and_bogus_tlsa() {
    let dns = StaticResolver::builder()
        .default_status(DnssecStatus::Authentic)
        .null_mx("nomail.example")
        .a("implicit.example", Ipv4Addr::new(127, 0, 0, 2))
        .mx("bogus.example", 10, "mx.bogus.example")
        .a("mx.bogus.example", Ipv4Addr::new(127, 0, 0, 3))
        .tlsa("_25._tcp.mx.bogus.example", rec())
        .status("_25._tcp.mx.bogus.example", DnssecStatus::Bogus)
        .build()
        .unwrap();
    assert_eq!(
        gather(&dns, &name("nomail.example"), None).await.mx,
        MxFacts::NullMx
    );
    let implicit = gather(&dns, &name("implicit.example"), None).await;
    assert!(
        matches!(&implicit.mx, MxFacts::Implicit { host, .. } if host.name.as_str() == "implicit.example"),
        "{:?}",
        implicit.mx
    );
    let bogus = gather(&dns, &name("bogus.example"), None).await;
    let p = plan(&bogus, TlsDemand::Default);
    assert!(
        matches!(p.entries[0].action, HostAction::Skip { .. }),
        "{:?}",
        p.entries[0]
    );
}

#[tokio::test]
async fn failures_of_address_and_tlsa_lookups_skip_the_host() {
    use mailtls_policy::dns::{RecordType, ScriptedFailure};
    use mailtls_policy::plan::SkipReason;
    let dns = StaticResolver::builder()
        .default_status(DnssecStatus::Authentic)
        .mx("example.com", 10, "a.example.com")
        .mx("example.com", 20, "b.example.com")
        .mx("example.com", 30, "c.example.com")
        .fail(
            "a.example.com",
            RecordType::A,
            ScriptedFailure::ServerFailure,
        )
        .fail(
            "a.example.com",
            RecordType::Aaaa,
            ScriptedFailure::ServerFailure,
        )
        .a("b.example.com", Ipv4Addr::new(127, 0, 0, 2))
        .fail(
            "_25._tcp.b.example.com",
            RecordType::Tlsa,
            ScriptedFailure::Timeout,
        )
        .a("c.example.com", Ipv4Addr::new(127, 0, 0, 3))
        .build()
        .unwrap();
    let p = plan(
        &gather(&dns, &name("example.com"), None).await,
        TlsDemand::Default,
    );
    assert!(
        matches!(
            &p.entries[0].action,
            HostAction::Skip {
                reason: SkipReason::AddressLookupFailed {
                    temporary: true,
                    ..
                }
            }
        ),
        "{:?}",
        p.entries[0]
    );
    assert!(
        matches!(
            &p.entries[1].action,
            HostAction::Skip {
                reason: SkipReason::TlsaLookupFailed { bogus: false, .. }
            }
        ),
        "{:?}",
        p.entries[1]
    );
    // An authentic denial of TLSA: no DANE, opportunistic TLS.
    assert_eq!(
        p.entries[2].action,
        HostAction::OpportunisticTls { audit: None }
    );
}

/// A validating upstream's SERVFAIL carrying a DNSSEC Extended DNS Error is
/// bogus data, not a passing outage: the facts say so for MX and TLSA.
#[tokio::test]
async fn servfail_with_a_dnssec_ede_is_bogus_for_mx_and_tlsa() {
    use mailtls_policy::dns::{RecordType, ScriptedFailure};
    let dns = StaticResolver::builder()
        .default_status(DnssecStatus::Authentic)
        .fail(
            "bogus-mx.example",
            RecordType::Mx,
            ScriptedFailure::BogusServerFailure,
        )
        .mx("example.com", 10, "mx.example.com")
        .a("mx.example.com", Ipv4Addr::new(127, 0, 0, 2))
        .fail(
            "_25._tcp.mx.example.com",
            RecordType::Tlsa,
            ScriptedFailure::BogusServerFailure,
        )
        .build()
        .unwrap();
    let facts = gather(&dns, &name("bogus-mx.example"), None).await;
    assert!(
        matches!(facts.mx, MxFacts::LookupFailed { bogus: true, .. }),
        "{:?}",
        facts.mx
    );
    let facts = gather(&dns, &name("example.com"), None).await;
    let MxFacts::Hosts { hosts, .. } = &facts.mx else {
        panic!("{:?}", facts.mx);
    };
    assert!(
        matches!(hosts[0].tlsa, TlsaFacts::Failed { bogus: true, .. }),
        "{:?}",
        hosts[0].tlsa
    );
}
