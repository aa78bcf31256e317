//! `gather` + `plan` against the real DNSSEC world of `dns_common` (NSD
//! serving a signed root, a signed `secure.test.`, an unsigned
//! `insecure.test.`, zones signed at test time, records tampered after
//! signing), through `HickoryResolver` validating with the world's root key,
//! directly and through a validating Unbound.
//!
//! Covers RFC 7672 §2.2 (DANE only when MX, address and TLSA records are
//! authentic), §2.1.1 (bogus TLSA: do not deliver to that MX) and RFC 8689
//! §4.2.1 (REQUIRETLS needs a DNSSEC-validated MX or MTA-STS enforce, else
//! 5.7.30). Needs the Debian packages `nsd`, `ldnsutils` and `unbound`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod dns_common;

use std::net::SocketAddr;
use std::time::Duration;

use dns_common::{DnsWorld, TAMPERED_TLSA_DATA, TLSA_DATA, Unbound, tools_present};
use mailtls_core::DnsName;
use mailtls_policy::dns::{
    DnsResolver, DnssecStatus, HickoryResolver, HickoryResolverConfig, QueryName, Validation,
};
use mailtls_policy::mta_sts::{Profile, parse_policy};
use mailtls_policy::plan::{
    AddressFacts, DeliveryPlan, DomainFailure, EnhancedStatus, FailReason, FailureAction,
    HostAction, MxFacts, SkipReason, TlsaFacts, Verification, gather, plan,
};
use mailtls_policy::requiretls::{RequireTlsFailure, TlsDemand};
use mailtls_policy::result_type::{PolicyType, ResultType};

fn h(s: &str) -> DnsName {
    DnsName::parse(s).unwrap()
}

fn start_world() -> DnsWorld {
    if !tools_present() {
        panic!("install the Debian packages nsd and ldnsutils");
    }
    DnsWorld::start()
}

fn validating(addr: SocketAddr, world: &DnsWorld) -> HickoryResolver {
    let mut config =
        HickoryResolverConfig::nameserver(addr, Validation::AnchorFile(world.anchor.clone()));
    config.timeout = Duration::from_secs(3);
    HickoryResolver::new(config).unwrap()
}

async fn plan_for(dns: &dyn DnsResolver, domain: &str, demand: TlsDemand) -> DeliveryPlan {
    plan(&gather(dns, &h(domain), None).await, demand)
}

/// The DANE entry for `mx.secure.test`: the one usable DANE-EE record of the
/// zone, reference names the TLSA base (= the MX name, no CNAME).
fn assert_dane_for_mx_secure(action: &HostAction) {
    let HostAction::RequireTls {
        verify: Verification::Dane {
            records,
            reference_names,
        },
    } = action
    else {
        panic!("expected DANE, got {action:?}")
    };
    let records: Vec<String> = records.iter().map(ToString::to_string).collect();
    assert_eq!(records, vec![format!("3 1 1 {TLSA_DATA}")]);
    assert_eq!(reference_names, &vec![h("mx.secure.test")]);
}

#[tokio::test]
async fn signed_unsigned_and_bogus_domains_plan_as_rfc7672_says() {
    let world = start_world();
    let dns = validating(world.addr, &world);

    // Signed MX, signed address, signed TLSA: DANE (RFC 7672 §2.2).
    let facts = gather(&dns, &h("secure.test"), None).await;
    let MxFacts::Hosts { dnssec, hosts } = &facts.mx else {
        panic!("{:?}", facts.mx)
    };
    assert_eq!(*dnssec, DnssecStatus::Authentic);
    assert!(
        matches!(&hosts[0].addresses, AddressFacts::Found { dnssec: DnssecStatus::Authentic, addresses, .. } if addresses.len() == 2),
        "{:?}",
        hosts[0].addresses
    );
    assert!(
        matches!(&hosts[0].tlsa, TlsaFacts::Records { dnssec: DnssecStatus::Authentic, base, .. } if *base == h("mx.secure.test")),
        "{:?}",
        hosts[0].tlsa
    );
    let p = plan(&facts, TlsDemand::Default);
    assert_eq!(p.entries.len(), 1);
    assert_eq!(p.entries[0].host, h("mx.secure.test"));
    assert_eq!(p.entries[0].policy, PolicyType::Tlsa);
    assert_dane_for_mx_secure(&p.entries[0].action);
    assert!(!p.entries[0].on_starttls_missing().proceed_in_cleartext);
    assert_eq!(
        p.when_exhausted,
        FailureAction::Defer(EnhancedStatus::CRYPTO_FAILURE_TEMPORARY)
    );

    // Signed, but no TLSA at the MX: an authenticated denial, so no DANE and
    // no policy: opportunistic TLS.
    let facts = gather(&dns, &h("nodane.secure.test"), None).await;
    let MxFacts::Hosts { hosts, .. } = &facts.mx else {
        panic!("{:?}", facts.mx)
    };
    assert_eq!(
        hosts[0].tlsa,
        TlsaFacts::Absent {
            dnssec: DnssecStatus::Authentic
        }
    );
    let p = plan(&facts, TlsDemand::Default);
    assert_eq!(p.entries[0].host, h("mx-nodane.secure.test"));
    assert_eq!(
        p.entries[0].action,
        HostAction::OpportunisticTls { audit: None }
    );
    assert_eq!(p.entries[0].policy, PolicyType::NoPolicyFound);
    assert!(p.entries[0].on_starttls_missing().proceed_in_cleartext);
    assert_eq!(
        p.when_exhausted,
        FailureAction::Defer(EnhancedStatus::UNABLE_TO_ROUTE)
    );

    // Unsigned zone with a TLSA record at the MX: the record is really
    // served (insecure), but DANE needs authentic MX and address records
    // (RFC 7672 §2.2), so it is not even looked up and not used.
    let served = dns
        .tlsa(&QueryName::tlsa(25, &h("mx-dane.insecure.test")))
        .await
        .unwrap();
    assert_eq!(served.dnssec, DnssecStatus::Insecure);
    assert_eq!(served.records.len(), 1);
    let facts = gather(&dns, &h("dane.insecure.test"), None).await;
    let MxFacts::Hosts { dnssec, hosts } = &facts.mx else {
        panic!("{:?}", facts.mx)
    };
    assert_eq!(*dnssec, DnssecStatus::Insecure);
    assert_eq!(hosts[0].tlsa, TlsaFacts::NotApplicable);
    let p = plan(&facts, TlsDemand::Default);
    assert_eq!(p.entries[0].host, h("mx-dane.insecure.test"));
    assert_eq!(
        p.entries[0].action,
        HostAction::OpportunisticTls { audit: None }
    );
    assert_eq!(p.entries[0].policy, PolicyType::NoPolicyFound);

    // Bogus TLSA at the preferred MX (its RRSIG no longer matches): RFC 7672
    // §2.1.1, do not deliver to that MX; skip it (counted as dnssec-invalid)
    // and use the next one, which has authentic DANE. Never a downgrade to
    // opportunistic TLS for the bogus host.
    let bogus = dns
        .tlsa(&QueryName::tlsa(25, &h("mx-bogus.secure.test")))
        .await
        .unwrap();
    assert_eq!(bogus.dnssec, DnssecStatus::Bogus);
    let data: String = bogus.records[0]
        .data
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(data, TAMPERED_TLSA_DATA);
    let p = plan_for(&dns, "bogustlsa.secure.test", TlsDemand::Default).await;
    assert_eq!(p.entries.len(), 2);
    assert_eq!(p.entries[0].host, h("mx-bogus.secure.test"));
    let HostAction::Skip { reason } = &p.entries[0].action else {
        panic!("bogus TLSA must skip the host: {:?}", p.entries[0].action)
    };
    assert!(
        matches!(reason, SkipReason::TlsaLookupFailed { bogus: true, .. }),
        "{reason:?}"
    );
    assert_eq!(reason.result_type(), Some(ResultType::DnssecInvalid));
    assert!(!p.entries[0].on_starttls_missing().proceed_in_cleartext);
    assert_dane_for_mx_secure(&p.entries[1].action);
    let usable: Vec<&DnsName> = p.usable().map(|e| &e.host).collect();
    assert_eq!(usable, vec![&h("mx.secure.test")]);
    assert_eq!(
        p.when_exhausted,
        FailureAction::Defer(EnhancedStatus::CRYPTO_FAILURE_TEMPORARY)
    );

    // `TLS-Required: No` (RFC 8689 §4.2.2) ignores recipient policy
    // failures: the bogus-TLSA host becomes usable, opportunistically.
    let p = plan_for(
        &dns,
        "bogustlsa.secure.test",
        TlsDemand::IgnorePolicyFailures,
    )
    .await;
    assert_eq!(
        p.entries[0].action,
        HostAction::OpportunisticTls { audit: None }
    );

    // Bogus MX records (tampered target): no host at all, defer as a DNS
    // failure; the forged target is never tried.
    let p = plan_for(&dns, "bogusmx.secure.test", TlsDemand::Default).await;
    assert!(p.entries.is_empty());
    assert!(
        matches!(
            p.domain_failure,
            Some(DomainFailure::MxLookupFailed { bogus: true, .. })
        ),
        "{:?}",
        p.domain_failure
    );
    assert_eq!(
        p.when_exhausted,
        FailureAction::Defer(EnhancedStatus::DNS_TEMPORARY)
    );

    // A name that does not exist, with authenticated denial: bounce 5.1.2.
    let p = plan_for(&dns, "nothing.secure.test", TlsDemand::Default).await;
    assert_eq!(p.domain_failure, Some(DomainFailure::NoSuchDomain));
    assert_eq!(
        p.when_exhausted,
        FailureAction::Bounce(EnhancedStatus::NO_SUCH_DOMAIN)
    );
}

#[tokio::test]
async fn requiretls_needs_an_authentic_mx_or_mta_sts_enforce_rfc8689_4_2_1() {
    let world = start_world();
    let dns = validating(world.addr, &world);

    // Authentic MX with DANE: the DANE check stays, the peer must advertise
    // REQUIRETLS.
    let p = plan_for(&dns, "secure.test", TlsDemand::RequireTls).await;
    assert_dane_for_mx_secure(&p.entries[0].action);
    assert!(p.entries[0].peer_must_advertise_requiretls);
    assert_eq!(p.entries[0].on_failure, FailureAction::TryNextMx);

    // Authentic MX without TLSA: WebPKI for the MX name.
    let p = plan_for(&dns, "nodane.secure.test", TlsDemand::RequireTls).await;
    assert_eq!(
        p.entries[0].action,
        HostAction::RequireTls {
            verify: Verification::WebPki {
                allowed_names: vec![h("mx-nodane.secure.test")]
            }
        }
    );
    assert!(p.entries[0].peer_must_advertise_requiretls);
    assert_eq!(
        p.when_exhausted,
        FailureAction::Defer(EnhancedStatus::CRYPTO_FAILURE_TEMPORARY)
    );

    // Insecure MX, no MTA-STS: 5.7.30 now, never cleartext.
    let p = plan_for(&dns, "insecure.test", TlsDemand::RequireTls).await;
    assert_eq!(
        p.entries[0].action,
        HostAction::FailNow {
            status: EnhancedStatus::REQUIRETLS_REQUIRED,
            reason: FailReason::RequireTls(RequireTlsFailure::MxNotAuthenticated),
        }
    );
    assert_eq!(EnhancedStatus::REQUIRETLS_REQUIRED.to_string(), "5.7.30");
    assert_eq!(
        p.entries[0].on_failure,
        FailureAction::Bounce(EnhancedStatus::REQUIRETLS_REQUIRED)
    );
    assert_eq!(p.usable().count(), 0);
    assert_eq!(
        p.when_exhausted,
        FailureAction::Bounce(EnhancedStatus::REQUIRETLS_REQUIRED)
    );

    // The same insecure MX vouched for by an MTA-STS policy in enforce mode
    // (from the cache): allowed, verified by WebPKI.
    let policy = parse_policy(
        b"version: STSv1\r\nmode: enforce\r\nmx: mx.insecure.test\r\nmax_age: 86400\r\n",
        Profile::Strict,
    )
    .unwrap()
    .policy;
    let facts = gather(&dns, &h("insecure.test"), Some(std::sync::Arc::new(policy))).await;
    let p = plan(&facts, TlsDemand::RequireTls);
    assert_eq!(p.entries[0].policy, PolicyType::Sts);
    assert_eq!(
        p.entries[0].action,
        HostAction::RequireTls {
            verify: Verification::WebPki {
                allowed_names: vec![h("mx.insecure.test")]
            }
        }
    );
}

#[tokio::test]
async fn through_unbound_a_bogus_tlsa_is_a_servfail_and_still_skips_the_host() {
    if !std::path::Path::new("/usr/sbin/unbound").exists() {
        panic!("install the Debian package unbound");
    }
    let world = start_world();
    let unbound = Unbound::start(&world);
    let dns = validating(unbound.addr, &world);

    // Unbound validates too and answers SERVFAIL for the bogus RRset: a
    // failed lookup, which RFC 7672 §2.2 also treats as "host unusable"
    // (it may hide records an attacker suppressed), counted as tlsa-invalid.
    let p = plan_for(&dns, "bogustlsa.secure.test", TlsDemand::Default).await;
    let HostAction::Skip { reason } = &p.entries[0].action else {
        panic!("{:?}", p.entries[0].action)
    };
    assert!(
        matches!(reason, SkipReason::TlsaLookupFailed { bogus: false, .. }),
        "{reason:?}"
    );
    assert_eq!(reason.result_type(), Some(ResultType::TlsaInvalid));
    assert_dane_for_mx_secure(&p.entries[1].action);

    // The good domain plans the same as without Unbound.
    let p = plan_for(&dns, "secure.test", TlsDemand::Default).await;
    assert_dane_for_mx_secure(&p.entries[0].action);
}
