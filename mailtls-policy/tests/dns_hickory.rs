//! `HickoryResolver` against a real authoritative server (NSD) on loopback
//! serving DNSSEC-signed and unsigned zones: record parsing, CNAMEs, the four
//! DNSSEC statuses and the four failure kinds.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod dns_common;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use dns_common::{DnsWorld, TLSA_DATA, tools_present};
use mailtls_core::DnsName;
use mailtls_policy::dns::{
    DnsError, DnsResolver, DnssecStatus, HickoryResolver, HickoryResolverConfig, QueryName,
    TlsaMatching, TlsaSelector, TlsaUsage, Validation,
};
use mailtls_policy::mta_sts::select_record;

fn h(s: &str) -> DnsName {
    DnsName::parse(s).unwrap()
}

fn q(s: &str) -> QueryName {
    QueryName::parse(s).unwrap()
}

fn resolver(world: &DnsWorld, validation: Validation) -> HickoryResolver {
    let mut config = HickoryResolverConfig::nameserver(world.addr, validation);
    config.timeout = Duration::from_secs(2);
    HickoryResolver::new(config).unwrap()
}

#[tokio::test]
async fn validating_resolver_reports_authentic_insecure_and_bogus() {
    if !tools_present() {
        panic!("install the Debian packages nsd and ldnsutils");
    }
    let world = DnsWorld::start();
    let dns = resolver(&world, Validation::AnchorFile(world.anchor.clone()));

    let mx = dns.mx(&h("secure.test")).await.unwrap();
    assert_eq!(mx.dnssec, DnssecStatus::Authentic, "{mx:?}");
    assert_eq!(mx.records[0].exchange, Some(h("mx.secure.test")));
    assert_eq!(mx.records[0].preference, 10);

    let tlsa = dns
        .tlsa(&QueryName::tlsa(25, &h("mx.secure.test")))
        .await
        .unwrap();
    assert!(tlsa.is_authentic());
    let rec = &tlsa.records[0];
    assert_eq!(
        (rec.usage, rec.selector, rec.matching),
        (
            TlsaUsage::DaneEe,
            TlsaSelector::SubjectPublicKeyInfo,
            TlsaMatching::Sha256
        )
    );
    let hex: String = rec.data.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, TLSA_DATA);

    let alias = dns.a(&h("alias.secure.test")).await.unwrap();
    assert_eq!(alias.records, vec![Ipv4Addr::new(192, 0, 2, 25)]);
    assert_eq!(alias.canonical_name, q("mx.secure.test"));
    assert_eq!(alias.cname_chain, vec![q("mx.secure.test")]);
    assert!(alias.is_authentic());

    let insecure = dns.mx(&h("insecure.test")).await.unwrap();
    assert_eq!(insecure.dnssec, DnssecStatus::Insecure, "{insecure:?}");
    let txt = dns.txt(&q("_mta-sts.insecure.test")).await.unwrap();
    assert_eq!(select_record(&txt.records).unwrap().id.as_str(), "multi1");

    // The tampered record: its signature fails, hickory says bogus.
    let bad = dns.a(&h("bad.secure.test")).await.unwrap();
    assert_eq!(bad.dnssec, DnssecStatus::Bogus, "{bad:?}");

    // Authenticated denial in the signed zone, provably insecure denial in
    // the unsigned one.
    let nx = dns.a(&h("nothing.secure.test")).await.unwrap_err();
    assert_eq!(
        nx,
        DnsError::NxDomain {
            name: q("nothing.secure.test"),
            dnssec: DnssecStatus::Authentic
        }
    );
    let nodata = dns.aaaa(&h("bad.secure.test")).await.unwrap_err();
    assert!(
        matches!(
            nodata,
            DnsError::NoData {
                dnssec: DnssecStatus::Authentic,
                ..
            }
        ),
        "{nodata:?}"
    );
    let no_tlsa = dns
        .tlsa(&QueryName::tlsa(25, &h("mx.insecure.test")))
        .await
        .unwrap_err();
    assert_eq!(
        no_tlsa.denial_status(),
        Some(DnssecStatus::Insecure),
        "{no_tlsa:?}"
    );
}

#[tokio::test]
async fn non_validating_resolver_says_not_validated() {
    if !tools_present() {
        panic!("install the Debian packages nsd and ldnsutils");
    }
    let world = DnsWorld::start();
    let dns = resolver(&world, Validation::Off);
    let mx = dns.mx(&h("secure.test")).await.unwrap();
    assert_eq!(mx.dnssec, DnssecStatus::NotValidated);
    // Without validation the tampered record is just data.
    let bad = dns.a(&h("bad.secure.test")).await.unwrap();
    assert_eq!(bad.records, vec![Ipv4Addr::new(192, 0, 2, 99)]);
    assert_eq!(bad.dnssec, DnssecStatus::NotValidated);
    let nx = dns.a(&h("nothing.insecure.test")).await.unwrap_err();
    assert!(
        matches!(
            nx,
            DnsError::NxDomain {
                dnssec: DnssecStatus::NotValidated,
                ..
            }
        ),
        "{nx:?}"
    );
    let nodata = dns.tlsa(&QueryName::tlsa(25, &h("mx.insecure.test"))).await;
    assert!(
        matches!(
            nodata,
            Err(DnsError::NxDomain { .. } | DnsError::NoData { .. })
        ),
        "{nodata:?}"
    );
    // Our own root answers for every name: a TLD that does not exist.
    let nx = dns.mx(&h("elsewhere.example")).await.unwrap_err();
    assert!(matches!(nx, DnsError::NxDomain { .. }), "{nx:?}");
}

#[tokio::test]
async fn a_silent_server_times_out() {
    // A bound UDP socket that never answers.
    let silent = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr: SocketAddr = silent.local_addr().unwrap();
    let mut config = HickoryResolverConfig::nameserver(addr, Validation::Off);
    config.timeout = Duration::from_millis(300);
    config.attempts = 1;
    let dns = HickoryResolver::new(config).unwrap();
    let e = dns.mx(&h("example.com")).await.unwrap_err();
    assert!(e.is_temporary(), "{e:?}");
    assert!(
        matches!(e, DnsError::Timeout { .. } | DnsError::ServerFailure { .. }),
        "{e:?}"
    );
    drop(silent);
}

#[tokio::test]
async fn through_unbound_the_resolver_still_decides_for_itself() {
    if !tools_present() || !std::path::Path::new("/usr/sbin/unbound").exists() {
        panic!("install the Debian packages nsd, ldnsutils and unbound");
    }
    let world = DnsWorld::start();
    let unbound = dns_common::Unbound::start(&world);

    // Validating from the same anchor as unbound: authentic and insecure as
    // before; the bogus record never gets through (unbound answers SERVFAIL,
    // a real server failure).
    let mut config = HickoryResolverConfig::nameserver(
        unbound.addr,
        Validation::AnchorFile(world.anchor.clone()),
    );
    config.timeout = Duration::from_secs(3);
    let dns = HickoryResolver::new(config).unwrap();
    let mx = dns.mx(&h("secure.test")).await.unwrap();
    assert_eq!(mx.dnssec, DnssecStatus::Authentic, "{mx:?}");
    let tlsa = dns
        .tlsa(&QueryName::tlsa(25, &h("mx.secure.test")))
        .await
        .unwrap();
    assert!(tlsa.is_authentic());
    let insecure = dns.a(&h("mx.insecure.test")).await.unwrap();
    assert_eq!(insecure.dnssec, DnssecStatus::Insecure, "{insecure:?}");
    let bad = dns.a(&h("bad.secure.test")).await.unwrap_err();
    assert!(matches!(bad, DnsError::ServerFailure { .. }), "{bad:?}");
    assert!(bad.is_temporary());

    // Not validating: unbound's AD bit is not taken on trust, so the
    // answer is NotValidated, never Authentic.
    let mut config = HickoryResolverConfig::nameserver(unbound.addr, Validation::Off);
    config.timeout = Duration::from_secs(3);
    let plain = HickoryResolver::new(config).unwrap();
    let mx = plain.mx(&h("secure.test")).await.unwrap();
    assert_eq!(mx.dnssec, DnssecStatus::NotValidated);
}

/// Denials for names kept in the signed root of the world itself (the zone
/// whose key is the trust anchor): names directly under the root that do not
/// exist must come back as authenticated NXDOMAIN, not bogus. They used to
/// be bogus because the zone-status walk stopped one label short of the
/// root (our classification, not hickory: hickory had accepted the root's
/// NSEC proof).
#[tokio::test]
async fn denials_in_the_trust_anchor_zone_are_authentic() {
    if !tools_present() {
        panic!("install the Debian packages nsd and ldnsutils");
    }
    let world = DnsWorld::start();
    let dns = resolver(&world, Validation::AnchorFile(world.anchor.clone()));
    let nx = dns.txt(&q("_mta-sts.nomta")).await.unwrap_err();
    assert_eq!(
        nx,
        DnsError::NxDomain {
            name: q("_mta-sts.nomta"),
            dnssec: DnssecStatus::Authentic
        }
    );
    let nx = dns.mx(&h("nomta")).await.unwrap_err();
    assert_eq!(nx.denial_status(), Some(DnssecStatus::Authentic), "{nx:?}");
    let nx = dns
        .tlsa(&QueryName::tlsa(25, &h("mx.nomta")))
        .await
        .unwrap_err();
    assert_eq!(nx.denial_status(), Some(DnssecStatus::Authentic), "{nx:?}");
    // The same names without validation: a denial, not validated.
    let plain = resolver(&world, Validation::Off);
    let nx = plain.mx(&h("nomta")).await.unwrap_err();
    assert_eq!(
        nx.denial_status(),
        Some(DnssecStatus::NotValidated),
        "{nx:?}"
    );
}
