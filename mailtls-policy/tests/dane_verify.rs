//! DANE chain checks (RFC 7672 §3.1) against certificates made at test time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use mailtls_core::{CaSpec, CertificateAuthority, DnsName, ServerCertSpec, self_signed};
use mailtls_policy::dane::{
    DaneFailureKind, DaneUsage, MatchingType, Selector, TlsaSet, UsableTlsa, verify_chain,
};
use mailtls_policy::result_type::ResultType;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls_pki_types::{CertificateDer, UnixTime};

fn name(s: &str) -> DnsName {
    DnsName::parse(s).unwrap()
}

fn now() -> UnixTime {
    UnixTime::now()
}

/// A leaf that expired last year, signed by itself: DANE-EE must not care.
fn expired_self_signed(host: &str) -> CertificateDer<'static> {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec![host.to_owned()]).unwrap();
    params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(800);
    params.not_after = time::OffsetDateTime::now_utc() - time::Duration::days(400);
    params.self_signed(&key).unwrap().der().clone()
}

/// A CA and a leaf issued by it with custom dates (for DANE-TA expiry).
fn ca_and_leaf(
    host: &str,
    leaf_expired: bool,
) -> (CertificateDer<'static>, CertificateDer<'static>) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "DANE TA test");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf_params = CertificateParams::new(vec![host.to_owned()]).unwrap();
    leaf_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    if leaf_expired {
        leaf_params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(800);
        leaf_params.not_after = time::OffsetDateTime::now_utc() - time::Duration::days(400);
    }
    let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
    (ca_cert.der().clone(), leaf.der().clone())
}

#[test]
fn dane_ee_matches_every_selector_and_matching_type() {
    let made = self_signed(&ServerCertSpec::new(name("mx.example.com"))).unwrap();
    let leaf = made.cert_der.clone();
    for selector in [Selector::Cert, Selector::Spki] {
        for matching in [
            MatchingType::Full,
            MatchingType::Sha256,
            MatchingType::Sha512,
        ] {
            let rec =
                UsableTlsa::for_certificate(DaneUsage::DaneEe, selector, matching, &leaf).unwrap();
            let m = verify_chain(
                std::slice::from_ref(&rec),
                &leaf,
                &[],
                &[name("mx.example.com")],
                now(),
            )
            .unwrap();
            assert_eq!(m.depth, 0);
            assert_eq!(m.record, rec);
        }
    }
}

#[test]
fn dane_ee_ignores_names_and_expiry_rfc7672_3_1_1() {
    let leaf = expired_self_signed("some-other-name.example");
    let rec = UsableTlsa::for_certificate(
        DaneUsage::DaneEe,
        Selector::Spki,
        MatchingType::Sha256,
        &leaf,
    )
    .unwrap();
    assert!(verify_chain(&[rec], &leaf, &[], &[name("mx.example.com")], now()).is_ok());
}

#[test]
fn dane_ee_mismatch_is_tlsa_invalid() {
    let a = self_signed(&ServerCertSpec::new(name("mx.example.com"))).unwrap();
    let b = self_signed(&ServerCertSpec::new(name("mx.example.com"))).unwrap();
    let rec = UsableTlsa::for_certificate(
        DaneUsage::DaneEe,
        Selector::Spki,
        MatchingType::Sha256,
        &a.cert_der,
    )
    .unwrap();
    let err = verify_chain(&[rec], &b.cert_der, &[], &[name("mx.example.com")], now()).unwrap_err();
    assert_eq!(err.kind, DaneFailureKind::NoRecordMatched { records: 1 });
    assert_eq!(err.result_type(), ResultType::TlsaInvalid);
}

#[test]
fn dane_ee_record_does_not_match_an_intermediate() {
    // A DANE-EE record naming the CA must not authenticate a leaf under it.
    let ca = CertificateAuthority::new_test_ca(&CaSpec::default()).unwrap();
    let leaf = ca
        .issue(&ServerCertSpec::new(name("mx.example.com")))
        .unwrap();
    let ca_der = ca.certificate().cert_der.clone();
    let rec = UsableTlsa::for_certificate(
        DaneUsage::DaneEe,
        Selector::Cert,
        MatchingType::Sha256,
        &ca_der,
    )
    .unwrap();
    let err = verify_chain(
        &[rec],
        &leaf.cert_der,
        &[ca_der],
        &[name("mx.example.com")],
        now(),
    )
    .unwrap_err();
    assert_eq!(err.result_type(), ResultType::TlsaInvalid);
}

#[test]
fn dane_ta_chains_to_the_presented_anchor_and_checks_the_name() {
    let ca = CertificateAuthority::new_test_ca(&CaSpec::default()).unwrap();
    let leaf = ca
        .issue(&ServerCertSpec::new(name("mx.example.com")))
        .unwrap();
    let ca_der = ca.certificate().cert_der.clone();
    for selector in [Selector::Cert, Selector::Spki] {
        let rec =
            UsableTlsa::for_certificate(DaneUsage::DaneTa, selector, MatchingType::Sha256, &ca_der)
                .unwrap();
        let m = verify_chain(
            std::slice::from_ref(&rec),
            &leaf.cert_der,
            std::slice::from_ref(&ca_der),
            &[name("mx.example.com")],
            now(),
        )
        .unwrap();
        assert_eq!(m.depth, 1);

        // RFC 7672 §3.2.2: the name must match a reference identifier.
        let err = verify_chain(
            std::slice::from_ref(&rec),
            &leaf.cert_der,
            std::slice::from_ref(&ca_der),
            &[name("mail.example.net"), name("example.net")],
            now(),
        )
        .unwrap_err();
        assert!(
            matches!(err.kind, DaneFailureKind::NameMismatch { ref names } if names.len() == 2)
        );
        assert_eq!(err.result_type(), ResultType::CertificateHostMismatch);

        // Any one of several reference identifiers is enough.
        assert!(
            verify_chain(
                &[rec],
                &leaf.cert_der,
                std::slice::from_ref(&ca_der),
                &[name("example.net"), name("mx.example.com")],
                now(),
            )
            .is_ok()
        );
    }
}

#[test]
fn dane_ta_requires_the_anchor_in_the_chain() {
    let ca = CertificateAuthority::new_test_ca(&CaSpec::default()).unwrap();
    let leaf = ca
        .issue(&ServerCertSpec::new(name("mx.example.com")))
        .unwrap();
    let ca_der = ca.certificate().cert_der.clone();
    let rec = UsableTlsa::for_certificate(
        DaneUsage::DaneTa,
        Selector::Cert,
        MatchingType::Full,
        &ca_der,
    )
    .unwrap();
    let err = verify_chain(
        &[rec],
        &leaf.cert_der,
        &[],
        &[name("mx.example.com")],
        now(),
    )
    .unwrap_err();
    assert_eq!(err.result_type(), ResultType::TlsaInvalid);
}

#[test]
fn dane_ta_refuses_a_leaf_not_signed_by_the_matched_anchor() {
    let ca = CertificateAuthority::new_test_ca(&CaSpec::default()).unwrap();
    let other_ca = CertificateAuthority::new_test_ca(&CaSpec::default()).unwrap();
    let leaf = other_ca
        .issue(&ServerCertSpec::new(name("mx.example.com")))
        .unwrap();
    let ca_der = ca.certificate().cert_der.clone();
    let rec = UsableTlsa::for_certificate(
        DaneUsage::DaneTa,
        Selector::Spki,
        MatchingType::Sha512,
        &ca_der,
    )
    .unwrap();
    // The server presents the matching CA, but its leaf was issued elsewhere.
    let err = verify_chain(
        &[rec],
        &leaf.cert_der,
        &[ca_der],
        &[name("mx.example.com")],
        now(),
    )
    .unwrap_err();
    assert!(
        matches!(err.kind, DaneFailureKind::ChainInvalid { .. }),
        "{err}"
    );
    assert_eq!(err.result_type(), ResultType::CertificateNotTrusted);
}

#[test]
fn dane_ta_checks_the_leaf_validity_period() {
    let (ca, leaf) = ca_and_leaf("mx.example.com", true);
    let rec =
        UsableTlsa::for_certificate(DaneUsage::DaneTa, Selector::Spki, MatchingType::Sha256, &ca)
            .unwrap();
    let err = verify_chain(
        std::slice::from_ref(&rec),
        &leaf,
        std::slice::from_ref(&ca),
        &[name("mx.example.com")],
        now(),
    )
    .unwrap_err();
    assert_eq!(err.kind, DaneFailureKind::Expired);
    assert_eq!(err.result_type(), ResultType::CertificateExpired);

    let (ca, leaf) = ca_and_leaf("mx.example.com", false);
    let rec =
        UsableTlsa::for_certificate(DaneUsage::DaneTa, Selector::Spki, MatchingType::Sha256, &ca)
            .unwrap();
    assert!(verify_chain(&[rec], &leaf, &[ca], &[name("mx.example.com")], now()).is_ok());
}

#[test]
fn all_unusable_rrset_has_no_records_to_verify_with_rfc7672_2_2() {
    let made = self_signed(&ServerCertSpec::new(name("mx.example.com"))).unwrap();
    let good = UsableTlsa::for_certificate(
        DaneUsage::DaneEe,
        Selector::Spki,
        MatchingType::Sha256,
        &made.cert_der,
    )
    .unwrap();
    // The same digest published as PKIX-EE(1) is unusable for SMTP.
    let set = TlsaSet::from_fields(vec![(1, 1, 1, good.data())]).unwrap();
    assert!(matches!(set, TlsaSet::AllUnusable { .. }));
    let err = verify_chain(
        set.usable(),
        &made.cert_der,
        &[],
        &[name("mx.example.com")],
        now(),
    )
    .unwrap_err();
    assert_eq!(err.kind, DaneFailureKind::NoUsableRecords);
}

#[test]
fn dane_ta_bare_key_from_dns_anchors_a_chain_without_the_ta_rfc7671_5_2_2() {
    let ca = CertificateAuthority::new_test_ca(&CaSpec::default()).unwrap();
    let leaf = ca
        .issue(&ServerCertSpec::new(name("mx.example.com")))
        .unwrap();
    let ca_der = ca.certificate().cert_der.clone();
    // 2 1 0: the CA's full SubjectPublicKeyInfo in DNS; the server sends
    // only its own certificate.
    let rec = UsableTlsa::for_certificate(
        DaneUsage::DaneTa,
        Selector::Spki,
        MatchingType::Full,
        &ca_der,
    )
    .unwrap();
    let m = verify_chain(
        std::slice::from_ref(&rec),
        &leaf.cert_der,
        &[],
        &[name("mx.example.com")],
        now(),
    )
    .unwrap();
    assert_eq!(m.depth, 1);
    // The name is still checked.
    let err = verify_chain(
        std::slice::from_ref(&rec),
        &leaf.cert_der,
        &[],
        &[name("other.example")],
        now(),
    )
    .unwrap_err();
    assert_eq!(err.result_type(), ResultType::CertificateHostMismatch);
    // Another CA's key does not anchor this leaf.
    let other = CertificateAuthority::new_test_ca(&CaSpec::default()).unwrap();
    let wrong = UsableTlsa::for_certificate(
        DaneUsage::DaneTa,
        Selector::Spki,
        MatchingType::Full,
        &other.certificate().cert_der,
    )
    .unwrap();
    let err = verify_chain(
        &[wrong],
        &leaf.cert_der,
        &[],
        &[name("mx.example.com")],
        now(),
    )
    .unwrap_err();
    assert_eq!(err.result_type(), ResultType::CertificateNotTrusted);
}
