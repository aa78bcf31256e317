//! `HickoryResolver` asking Unbound (validating, with the trust anchor of
//! `example.`) in front of Knot DNS (authoritative, zones signed at test
//! time): authentic, insecure and bogus answers, and authenticated NXDOMAIN
//! versus no-data. See `dns_world` for the zones.
//!
//! `HickoryResolver` never takes an upstream's AD bit on trust: without
//! validation every answer is `NotValidated`; with the `example.` anchor it
//! validates the chain itself through Unbound. Needs the Debian packages
//! `knot`, `unbound` and `ldnsutils`; without them each test says so on
//! stderr and returns.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod dns_world;

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use dns_world::{DnssecWorld, STS_TXT, TLSA_DATA, TLSRPT_TXT, TYPE_MX, UnboundMode};
use mailtls_core::DnsName;
use mailtls_policy::dns::{
    DnsError, DnsResolver, DnsSetupError, DnssecStatus, HickoryResolver, HickoryResolverConfig,
    QueryName, TlsaMatching, TlsaSelector, TlsaUsage, Validation,
};

fn h(s: &str) -> DnsName {
    DnsName::parse(s).unwrap()
}

fn q(s: &str) -> QueryName {
    QueryName::parse(s).unwrap()
}

/// Starts the world; a missing peer fails the test (CI installs them with
/// scripts/install-test-deps.sh), naming the packages.
fn world(test: &str, mode: UnboundMode) -> Option<DnssecWorld> {
    let missing = dns_world::missing_tools();
    assert!(
        missing.is_empty(),
        "{test}: the DNSSEC test world needs {missing:?} (apt-get install -y knot unbound ldnsutils)"
    );
    Some(DnssecWorld::start(mode))
}

fn resolver(addr: SocketAddr, validation: Validation) -> HickoryResolver {
    let mut config = HickoryResolverConfig::nameserver(addr, validation);
    config.timeout = Duration::from_secs(3);
    config.attempts = 2;
    HickoryResolver::new(config).unwrap()
}

fn validating(world: &DnssecWorld, addr: SocketAddr) -> HickoryResolver {
    resolver(addr, Validation::AnchorFile(world.anchor.clone()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The world itself, checked without the code under test: Unbound sets AD
/// for the signed child, not for the unsigned one, and refuses the expired
/// one with SERVFAIL; Knot answers all three.
#[test]
fn unbound_validates_the_world() {
    let Some(world) = world("unbound_validates_the_world", UnboundMode::Strict) else {
        return;
    };
    let secure = DnssecWorld::query(world.unbound, "secure.example.", TYPE_MX).unwrap();
    assert_eq!(
        (secure.rcode, secure.authentic_data),
        (0, true),
        "{secure:?}"
    );
    let insecure = DnssecWorld::query(world.unbound, "insecure.example.", TYPE_MX).unwrap();
    assert_eq!(
        (insecure.rcode, insecure.authentic_data),
        (0, false),
        "{insecure:?}"
    );
    let bogus = DnssecWorld::query(world.unbound, "bogus.example.", TYPE_MX).unwrap();
    assert_eq!(
        bogus.rcode, 2,
        "expired signatures must be SERVFAIL: {bogus:?}"
    );
    let raw = DnssecWorld::query(world.knot, "bogus.example.", TYPE_MX).unwrap();
    assert_eq!((raw.rcode, raw.answers > 0), (0, true), "{raw:?}");
}

#[tokio::test]
async fn signed_zone_is_authentic_through_unbound() {
    let Some(world) = world(
        "signed_zone_is_authentic_through_unbound",
        UnboundMode::Strict,
    ) else {
        return;
    };
    let dns = validating(&world, world.unbound);

    let mx = dns.mx(&h("secure.example")).await.unwrap();
    assert_eq!(mx.dnssec, DnssecStatus::Authentic, "{mx:?}");
    assert_eq!(mx.records.len(), 1);
    assert_eq!(mx.records[0].preference, 10);
    assert_eq!(mx.records[0].exchange, Some(h("mx.secure.example")));
    assert!(mx.cname_chain.is_empty());

    let tlsa = dns
        .tlsa(&QueryName::tlsa(25, &h("mx.secure.example")))
        .await
        .unwrap();
    assert_eq!(tlsa.dnssec, DnssecStatus::Authentic, "{tlsa:?}");
    assert_eq!(tlsa.canonical_name, q("_25._tcp.mx.secure.example"));
    let rec = &tlsa.records[0];
    assert_eq!(
        (rec.usage, rec.selector, rec.matching),
        (
            TlsaUsage::DaneEe,
            TlsaSelector::SubjectPublicKeyInfo,
            TlsaMatching::Sha256
        )
    );
    assert_eq!(hex(&rec.data), TLSA_DATA);
    assert!(rec.is_usable_for_smtp());

    let a = dns.a(&h("mx.secure.example")).await.unwrap();
    assert_eq!(a.records, vec![Ipv4Addr::new(192, 0, 2, 25)]);
    assert!(a.is_authentic(), "{a:?}");
    let aaaa = dns.aaaa(&h("mx.secure.example")).await.unwrap();
    assert_eq!(
        aaaa.records,
        vec!["2001:db8::25".parse::<Ipv6Addr>().unwrap()]
    );
    assert!(aaaa.is_authentic(), "{aaaa:?}");

    let sts = dns.txt(&q("_mta-sts.secure.example")).await.unwrap();
    assert!(sts.is_authentic(), "{sts:?}");
    assert_eq!(sts.records[0].joined(), STS_TXT.as_bytes());
    let rpt = dns.txt(&q("_smtp._tls.secure.example")).await.unwrap();
    assert!(rpt.is_authentic(), "{rpt:?}");
    // Two character-strings on the wire, kept apart and joined on request.
    assert_eq!(rpt.records[0].strings.len(), 2);
    assert_eq!(rpt.records[0].joined(), TLSRPT_TXT.concat().as_bytes());
}

#[tokio::test]
async fn unsigned_delegation_is_insecure() {
    let Some(world) = world("unsigned_delegation_is_insecure", UnboundMode::Strict) else {
        return;
    };
    let dns = validating(&world, world.unbound);
    let mx = dns.mx(&h("insecure.example")).await.unwrap();
    assert_eq!(mx.dnssec, DnssecStatus::Insecure, "{mx:?}");
    assert_eq!(mx.records[0].exchange, Some(h("mx.insecure.example")));
    let a = dns.a(&h("mx.insecure.example")).await.unwrap();
    assert_eq!(a.dnssec, DnssecStatus::Insecure, "{a:?}");
    assert_eq!(a.records, vec![Ipv4Addr::new(192, 0, 2, 26)]);
    // No TLSA in an insecure zone: a negative answer that proves nothing
    // for DANE (RFC 7672 §2.2), and it must say so.
    let none = dns
        .tlsa(&QueryName::tlsa(25, &h("mx.insecure.example")))
        .await
        .unwrap_err();
    assert!(none.is_negative_answer(), "{none:?}");
    assert_eq!(
        none.denial_status(),
        Some(DnssecStatus::Insecure),
        "{none:?}"
    );
}

#[tokio::test]
async fn nxdomain_and_nodata_are_told_apart_and_authenticated() {
    let Some(world) = world(
        "nxdomain_and_nodata_are_told_apart_and_authenticated",
        UnboundMode::Strict,
    ) else {
        return;
    };
    let dns = validating(&world, world.unbound);

    // No such name in the signed zone: NSEC proves it (RFC 4035 §5.4).
    let nx = dns.mx(&h("nothing.secure.example")).await.unwrap_err();
    assert_eq!(
        nx,
        DnsError::NxDomain {
            name: q("nothing.secure.example"),
            dnssec: DnssecStatus::Authentic,
        }
    );
    // No TLSA base at all under the domain itself: also NXDOMAIN.
    let no_name = dns.tlsa(&QueryName::tlsa(25, &h("secure.example"))).await;
    assert!(
        matches!(
            no_name,
            Err(DnsError::NxDomain {
                dnssec: DnssecStatus::Authentic,
                ..
            })
        ),
        "_25._tcp.secure.example does not exist at all: {no_name:?}"
    );
    // The name exists, the type does not: no data, also proven.
    let nodata = dns.aaaa(&h("mta-sts.secure.example")).await.unwrap_err();
    assert_eq!(
        nodata,
        DnsError::NoData {
            name: q("mta-sts.secure.example"),
            rtype: mailtls_policy::dns::RecordType::Aaaa,
            dnssec: DnssecStatus::Authentic,
        }
    );
    assert!(nx.is_negative_answer() && nodata.is_negative_answer());
    assert!(!nx.is_temporary() && !nodata.is_temporary());

    // The same kinds in the unsigned zone: insecure denials.
    let nx = dns.a(&h("nothing.insecure.example")).await.unwrap_err();
    assert!(
        matches!(
            nx,
            DnsError::NxDomain {
                dnssec: DnssecStatus::Insecure,
                ..
            }
        ),
        "{nx:?}"
    );
    let nodata = dns.txt(&q("mx.insecure.example")).await.unwrap_err();
    assert!(
        matches!(
            nodata,
            DnsError::NoData {
                dnssec: DnssecStatus::Insecure,
                ..
            }
        ),
        "{nodata:?}"
    );
}

/// An answer reached through CNAMEs is only as good as its weakest RRset
/// (RFC 7672 §2.2.3: DANE needs every step authentic).
#[tokio::test]
async fn cname_chains_keep_the_weakest_status() {
    let Some(world) = world("cname_chains_keep_the_weakest_status", UnboundMode::Strict) else {
        return;
    };
    let dns = validating(&world, world.unbound);

    let alias = dns.a(&h("alias.secure.example")).await.unwrap();
    assert_eq!(alias.records, vec![Ipv4Addr::new(192, 0, 2, 25)]);
    assert_eq!(alias.canonical_name, q("mx.secure.example"));
    assert_eq!(alias.cname_chain, vec![q("mx.secure.example")]);
    assert_eq!(alias.dnssec, DnssecStatus::Authentic, "{alias:?}");

    // Signed CNAME, unsigned target: insecure as a whole.
    let cross = dns.a(&h("to-insecure.secure.example")).await.unwrap();
    assert_eq!(cross.records, vec![Ipv4Addr::new(192, 0, 2, 26)]);
    assert_eq!(cross.canonical_name, q("mx.insecure.example"));
    assert_eq!(cross.cname_chain, vec![q("mx.insecure.example")]);
    assert_eq!(cross.dnssec, DnssecStatus::Insecure, "{cross:?}");

    // Signed CNAME, bogus target: strict Unbound refuses the whole answer.
    let bogus = dns.a(&h("to-bogus.secure.example")).await.unwrap_err();
    assert!(matches!(bogus, DnsError::ServerFailure { .. }), "{bogus:?}");
}

/// Strict Unbound hides bogus data behind SERVFAIL: the resolver reports a
/// (temporary) server failure, never data and never `Authentic`.
#[tokio::test]
async fn expired_signatures_behind_strict_unbound_are_a_server_failure() {
    let Some(world) = world(
        "expired_signatures_behind_strict_unbound_are_a_server_failure",
        UnboundMode::Strict,
    ) else {
        return;
    };
    let dns = validating(&world, world.unbound);
    let mx = dns.mx(&h("bogus.example")).await.unwrap_err();
    assert!(matches!(mx, DnsError::ServerFailure { .. }), "{mx:?}");
    assert!(mx.is_temporary());
    let tlsa = dns
        .tlsa(&QueryName::tlsa(25, &h("mx.bogus.example")))
        .await
        .unwrap_err();
    assert!(matches!(tlsa, DnsError::ServerFailure { .. }), "{tlsa:?}");
}

/// Permissive Unbound passes bogus data on (without AD): the resolver's own
/// validation must call it `Bogus`, which is not `NotValidated`; the same
/// data through a non-validating resolver is `NotValidated`.
#[tokio::test]
async fn expired_signatures_are_bogus_not_unvalidated() {
    let Some(world) = world(
        "expired_signatures_are_bogus_not_unvalidated",
        UnboundMode::Permissive,
    ) else {
        return;
    };
    let raw = DnssecWorld::query(world.unbound, "bogus.example.", TYPE_MX).unwrap();
    assert_eq!((raw.rcode, raw.authentic_data), (0, false), "{raw:?}");

    let dns = validating(&world, world.unbound);
    let mx = dns.mx(&h("bogus.example")).await.unwrap();
    assert_eq!(mx.dnssec, DnssecStatus::Bogus, "{mx:?}");
    assert!(!mx.is_authentic());
    let tlsa = dns
        .tlsa(&QueryName::tlsa(25, &h("mx.bogus.example")))
        .await
        .unwrap();
    assert_eq!(tlsa.dnssec, DnssecStatus::Bogus, "{tlsa:?}");
    // A signed CNAME into the bogus zone: bogus as a whole.
    let via = dns.a(&h("to-bogus.secure.example")).await.unwrap();
    assert_eq!(via.records, vec![Ipv4Addr::new(192, 0, 2, 27)]);
    assert_eq!(via.cname_chain, vec![q("mx.bogus.example")]);
    assert_eq!(via.dnssec, DnssecStatus::Bogus, "{via:?}");
    // The good zones are unaffected by the permissive mode.
    let good = dns.mx(&h("secure.example")).await.unwrap();
    assert_eq!(good.dnssec, DnssecStatus::Authentic, "{good:?}");

    let plain = resolver(world.unbound, Validation::Off);
    let mx = plain.mx(&h("bogus.example")).await.unwrap();
    assert_eq!(mx.dnssec, DnssecStatus::NotValidated, "{mx:?}");
    assert_eq!(mx.records[0].exchange, Some(h("mx.bogus.example")));
    // Unbound's AD bit on the signed zone is not taken on trust.
    let mx = plain.mx(&h("secure.example")).await.unwrap();
    assert_eq!(mx.dnssec, DnssecStatus::NotValidated, "{mx:?}");
}

/// Straight to the authoritative server (no recursive resolver at all):
/// the same three verdicts from the resolver's own validation.
#[tokio::test]
async fn validating_directly_against_knot() {
    let Some(world) = world("validating_directly_against_knot", UnboundMode::Strict) else {
        return;
    };
    let dns = validating(&world, world.knot);
    let secure = dns.mx(&h("secure.example")).await.unwrap();
    assert_eq!(secure.dnssec, DnssecStatus::Authentic, "{secure:?}");
    let insecure = dns.mx(&h("insecure.example")).await.unwrap();
    assert_eq!(insecure.dnssec, DnssecStatus::Insecure, "{insecure:?}");
    let bogus = dns.mx(&h("bogus.example")).await.unwrap();
    assert_eq!(bogus.dnssec, DnssecStatus::Bogus, "{bogus:?}");
}

/// Strict Unbound with `ede: yes`: the SERVFAIL for the expired zone carries
/// an RFC 8914 Extended DNS Error, so the resolver reports `Bogus` (with the
/// EDE code and text), not a temporary server failure. Also without our own
/// validation: the upstream's EDE is read either way.
#[tokio::test]
async fn servfail_with_dnssec_ede_is_bogus() {
    let Some(world) = world(
        "servfail_with_dnssec_ede_is_bogus",
        UnboundMode::StrictWithEde,
    ) else {
        return;
    };
    for dns in [
        validating(&world, world.unbound),
        resolver(world.unbound, Validation::Off),
    ] {
        let mx = dns.mx(&h("bogus.example")).await.unwrap_err();
        let DnsError::Bogus { ede, rtype, .. } = &mx else {
            panic!("expected Bogus, got {mx:?}");
        };
        assert_eq!(rtype.as_str(), "MX");
        // Unbound 1.17 reports the zone's DNSKEY set, whose RRSIG expired
        // in 2020, as EDE 6 (DNSSEC Bogus); other versions name the cause
        // as EDE 7 (Signature Expired). Both are DNSSEC failures.
        assert!(matches!(ede.code, 6 | 7), "{mx}");
        assert!(ede.is_dnssec_failure());
        assert!(mx.is_bogus() && !mx.is_temporary(), "{mx:?}");
        assert!(
            mx.to_string().contains(&format!("EDE {}", ede.code)),
            "{mx}"
        );
        eprintln!("{mx}");
        let tlsa = dns
            .tlsa(&QueryName::tlsa(25, &h("mx.bogus.example")))
            .await
            .unwrap_err();
        assert!(matches!(tlsa, DnsError::Bogus { .. }), "{tlsa:?}");
        // A CNAME from a good zone into the bogus one: still bogus.
        let via = dns.a(&h("to-bogus.secure.example")).await.unwrap_err();
        assert!(via.is_bogus(), "{via:?}");
    }
    // Good data is unaffected.
    let dns = validating(&world, world.unbound);
    let good = dns.mx(&h("secure.example")).await.unwrap();
    assert_eq!(good.dnssec, DnssecStatus::Authentic, "{good:?}");
    let insecure = dns.mx(&h("insecure.example")).await.unwrap();
    assert_eq!(insecure.dnssec, DnssecStatus::Insecure, "{insecure:?}");
}

/// With the CD bit, strict Unbound (no EDE) hands over the data it finds
/// bogus, and our own validation calls it `Bogus` instead of the SERVFAIL
/// a query without CD gets.
#[tokio::test]
async fn checking_disabled_lets_our_validator_decide() {
    let Some(world) = world(
        "checking_disabled_lets_our_validator_decide",
        UnboundMode::Strict,
    ) else {
        return;
    };
    let mut config = HickoryResolverConfig::nameserver(
        world.unbound,
        Validation::AnchorFile(world.anchor.clone()),
    );
    config.timeout = Duration::from_secs(3);
    config.checking_disabled = true;
    let dns = HickoryResolver::new(config).unwrap();
    let mx = dns.mx(&h("bogus.example")).await.unwrap();
    assert_eq!(mx.dnssec, DnssecStatus::Bogus, "{mx:?}");
    assert_eq!(mx.records[0].exchange, Some(h("mx.bogus.example")));
    let tlsa = dns
        .tlsa(&QueryName::tlsa(25, &h("mx.bogus.example")))
        .await
        .unwrap();
    assert_eq!(tlsa.dnssec, DnssecStatus::Bogus, "{tlsa:?}");
    let good = dns.mx(&h("secure.example")).await.unwrap();
    assert_eq!(good.dnssec, DnssecStatus::Authentic, "{good:?}");
    let insecure = dns.mx(&h("insecure.example")).await.unwrap();
    assert_eq!(insecure.dnssec, DnssecStatus::Insecure, "{insecure:?}");
    let nx = dns.a(&h("nothing.secure.example")).await.unwrap_err();
    assert_eq!(nx.denial_status(), Some(DnssecStatus::Authentic), "{nx:?}");

    // The same query without CD: strict Unbound's SERVFAIL, no EDE here.
    let plain = validating(&world, world.unbound);
    let mx = plain.mx(&h("bogus.example")).await.unwrap_err();
    assert!(matches!(mx, DnsError::ServerFailure { .. }), "{mx:?}");
}

/// The AD-trusting mode behind Unbound on loopback: AD means authentic, no
/// AD means insecure, a DNSSEC EDE on SERVFAIL means bogus. Against a
/// server that never sets AD (Knot, authoritative) everything is insecure:
/// the verdict is wholly the upstream's.
#[tokio::test]
async fn trusting_the_ad_bit_of_a_loopback_resolver() {
    let Some(world) = world(
        "trusting_the_ad_bit_of_a_loopback_resolver",
        UnboundMode::StrictWithEde,
    ) else {
        return;
    };
    let dns = resolver(world.unbound, Validation::TrustUpstreamAd);
    let mx = dns.mx(&h("secure.example")).await.unwrap();
    assert_eq!(mx.dnssec, DnssecStatus::Authentic, "{mx:?}");
    let tlsa = dns
        .tlsa(&QueryName::tlsa(25, &h("mx.secure.example")))
        .await
        .unwrap();
    assert_eq!(tlsa.dnssec, DnssecStatus::Authentic, "{tlsa:?}");
    assert_eq!(hex(&tlsa.records[0].data), TLSA_DATA);
    let insecure = dns.mx(&h("insecure.example")).await.unwrap();
    assert_eq!(insecure.dnssec, DnssecStatus::Insecure, "{insecure:?}");
    let cross = dns.a(&h("to-insecure.secure.example")).await.unwrap();
    assert_eq!(cross.dnssec, DnssecStatus::Insecure, "{cross:?}");
    let bogus = dns.mx(&h("bogus.example")).await.unwrap_err();
    assert!(matches!(bogus, DnsError::Bogus { .. }), "{bogus:?}");
    let nx = dns.a(&h("nothing.secure.example")).await.unwrap_err();
    assert_eq!(nx.denial_status(), Some(DnssecStatus::Authentic), "{nx:?}");
    let nx = dns.a(&h("nothing.insecure.example")).await.unwrap_err();
    assert_eq!(nx.denial_status(), Some(DnssecStatus::Insecure), "{nx:?}");

    let knot = resolver(world.knot, Validation::TrustUpstreamAd);
    let mx = knot.mx(&h("secure.example")).await.unwrap();
    assert_eq!(mx.dnssec, DnssecStatus::Insecure, "{mx:?}");
}

/// The AD bit is only trusted from named loopback or listed servers.
#[test]
fn ad_trust_refuses_unlisted_remote_resolvers() {
    let remote: SocketAddr = "192.0.2.53:53".parse().unwrap();
    let config = HickoryResolverConfig::nameserver(remote, Validation::TrustUpstreamAd);
    let e = HickoryResolver::new(config.clone()).unwrap_err();
    assert!(
        matches!(e, DnsSetupError::UntrustedUpstream { addr } if addr == remote),
        "{e:?}"
    );
    assert!(e.to_string().contains("192.0.2.53:53"), "{e}");
    let mut listed = config;
    listed.trusted_upstreams = vec![remote.ip()];
    assert!(HickoryResolver::new(listed).is_ok());
    let system = HickoryResolverConfig::default().with_validation(Validation::TrustUpstreamAd);
    assert!(matches!(
        HickoryResolver::new(system),
        Err(DnsSetupError::AdTrustWithoutNameservers)
    ));
    let v6: SocketAddr = "[::1]:53".parse().unwrap();
    let loopback = HickoryResolverConfig::nameserver(v6, Validation::TrustUpstreamAd);
    assert!(HickoryResolver::new(loopback).is_ok());
}
