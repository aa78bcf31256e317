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

/// The certificates the cases below pick from, made once.
struct Certs {
    /// Self-signed for mx.example.com, and a second one with another key.
    ee: CertificateDer<'static>,
    other_ee: CertificateDer<'static>,
    /// Expired, self-signed, for a name that is not the MX.
    expired_ee: CertificateDer<'static>,
    /// A test CA, a leaf it issued for mx.example.com, and another CA with its
    /// own leaf for the same name.
    ca: CertificateDer<'static>,
    ca_leaf: CertificateDer<'static>,
    other_ca: CertificateDer<'static>,
    other_ca_leaf: CertificateDer<'static>,
    /// A CA whose leaf expired, and one whose leaf is current.
    expired_leaf_ca: CertificateDer<'static>,
    expired_leaf: CertificateDer<'static>,
    current_leaf_ca: CertificateDer<'static>,
    current_leaf: CertificateDer<'static>,
}

/// Which of [`Certs`] a case uses.
#[derive(Debug, Clone, Copy)]
enum C {
    Ee,
    OtherEe,
    ExpiredEe,
    Ca,
    CaLeaf,
    OtherCa,
    OtherCaLeaf,
    ExpiredLeafCa,
    ExpiredLeaf,
    CurrentLeafCa,
    CurrentLeaf,
}

impl Certs {
    fn make() -> Self {
        let ee = |host: &str| {
            self_signed(&ServerCertSpec::new(name(host)))
                .unwrap()
                .cert_der
        };
        let ca_with_leaf = || {
            let ca = CertificateAuthority::new_test_ca(&CaSpec::default()).unwrap();
            let leaf = ca
                .issue(&ServerCertSpec::new(name("mx.example.com")))
                .unwrap();
            (ca.certificate().cert_der.clone(), leaf.cert_der)
        };
        let (ca, ca_leaf) = ca_with_leaf();
        let (other_ca, other_ca_leaf) = ca_with_leaf();
        let (expired_leaf_ca, expired_leaf) = ca_and_leaf("mx.example.com", true);
        let (current_leaf_ca, current_leaf) = ca_and_leaf("mx.example.com", false);
        Certs {
            ee: ee("mx.example.com"),
            other_ee: ee("mx.example.com"),
            expired_ee: expired_self_signed("some-other-name.example"),
            ca,
            ca_leaf,
            other_ca,
            other_ca_leaf,
            expired_leaf_ca,
            expired_leaf,
            current_leaf_ca,
            current_leaf,
        }
    }

    fn get(&self, c: C) -> &CertificateDer<'static> {
        match c {
            C::Ee => &self.ee,
            C::OtherEe => &self.other_ee,
            C::ExpiredEe => &self.expired_ee,
            C::Ca => &self.ca,
            C::CaLeaf => &self.ca_leaf,
            C::OtherCa => &self.other_ca,
            C::OtherCaLeaf => &self.other_ca_leaf,
            C::ExpiredLeafCa => &self.expired_leaf_ca,
            C::ExpiredLeaf => &self.expired_leaf,
            C::CurrentLeafCa => &self.current_leaf_ca,
            C::CurrentLeaf => &self.current_leaf,
        }
    }
}

/// What `verify_chain` must answer.
enum Expect {
    /// A match at this depth (0: the leaf, 1: its issuer), on the record.
    Match { depth: usize },
    /// A failure of this TLS-RPT result type whose kind passes the check.
    Fail(ResultType, fn(&DaneFailureKind) -> bool),
}

fn any_kind(_: &DaneFailureKind) -> bool {
    true
}

/// One TLSA record made from `from`, one chain presented by the server.
struct Case {
    name: String,
    record: (DaneUsage, Selector, MatchingType, C),
    leaf: C,
    chain: &'static [C],
    names: &'static [&'static str],
    expect: Expect,
}

fn case(
    name: impl Into<String>,
    record: (DaneUsage, Selector, MatchingType, C),
    (leaf, chain): (C, &'static [C]),
    names: &'static [&'static str],
    expect: Expect,
) -> Case {
    Case {
        name: name.into(),
        record,
        leaf,
        chain,
        names,
        expect,
    }
}

const MX: &[&str] = &["mx.example.com"];

fn cases() -> Vec<Case> {
    use DaneUsage::{DaneEe as Ee, DaneTa as Ta};
    use Expect::{Fail, Match};
    use MatchingType::{Full, Sha256, Sha512};
    use Selector::{Cert, Spki};
    let mut cases = Vec::new();
    for selector in [Cert, Spki] {
        for matching in [Full, Sha256, Sha512] {
            cases.push(case(
                format!("DANE-EE matches with {selector:?}/{matching:?}"),
                (Ee, selector, matching, C::Ee),
                (C::Ee, &[]),
                MX,
                Match { depth: 0 },
            ));
        }
    }
    for selector in [Cert, Spki] {
        cases.extend([
            case(
                format!("DANE-TA {selector:?} chains to the presented anchor"),
                (Ta, selector, Sha256, C::Ca),
                (C::CaLeaf, &[C::Ca]),
                MX,
                Match { depth: 1 },
            ),
            // RFC 7672 §3.2.2: the name must match a reference identifier.
            case(
                format!("DANE-TA {selector:?} checks the name"),
                (Ta, selector, Sha256, C::Ca),
                (C::CaLeaf, &[C::Ca]),
                &["mail.example.net", "example.net"],
                Fail(
                    ResultType::CertificateHostMismatch,
                    |k| matches!(k, DaneFailureKind::NameMismatch { names } if names.len() == 2),
                ),
            ),
            case(
                format!("DANE-TA {selector:?}: any one reference identifier is enough"),
                (Ta, selector, Sha256, C::Ca),
                (C::CaLeaf, &[C::Ca]),
                &["example.net", "mx.example.com"],
                Match { depth: 1 },
            ),
        ]);
    }
    cases.extend([
        case(
            "DANE-EE ignores names and expiry (RFC 7672 §3.1.1)",
            (Ee, Spki, Sha256, C::ExpiredEe),
            (C::ExpiredEe, &[]),
            MX,
            Match { depth: 0 },
        ),
        case(
            "DANE-EE mismatch is tlsa-invalid",
            (Ee, Spki, Sha256, C::Ee),
            (C::OtherEe, &[]),
            MX,
            Fail(ResultType::TlsaInvalid, |k| {
                *k == DaneFailureKind::NoRecordMatched { records: 1 }
            }),
        ),
        // A DANE-EE record naming the CA must not authenticate a leaf under it.
        case(
            "DANE-EE record does not match an intermediate",
            (Ee, Cert, Sha256, C::Ca),
            (C::CaLeaf, &[C::Ca]),
            MX,
            Fail(ResultType::TlsaInvalid, any_kind),
        ),
        case(
            "DANE-TA 2 0 0 requires the anchor in the chain",
            (Ta, Cert, Full, C::Ca),
            (C::CaLeaf, &[]),
            MX,
            Fail(ResultType::TlsaInvalid, any_kind),
        ),
        // The server presents the matching CA, but its leaf was issued elsewhere.
        case(
            "DANE-TA refuses a leaf not signed by the matched anchor",
            (Ta, Spki, Sha512, C::Ca),
            (C::OtherCaLeaf, &[C::Ca]),
            MX,
            Fail(ResultType::CertificateNotTrusted, |k| {
                matches!(k, DaneFailureKind::ChainInvalid { .. })
            }),
        ),
        case(
            "DANE-TA checks the leaf validity period: expired",
            (Ta, Spki, Sha256, C::ExpiredLeafCa),
            (C::ExpiredLeaf, &[C::ExpiredLeafCa]),
            MX,
            Fail(ResultType::CertificateExpired, |k| {
                *k == DaneFailureKind::Expired
            }),
        ),
        case(
            "DANE-TA checks the leaf validity period: current",
            (Ta, Spki, Sha256, C::CurrentLeafCa),
            (C::CurrentLeaf, &[C::CurrentLeafCa]),
            MX,
            Match { depth: 1 },
        ),
        // RFC 7671 §5.2.2: 2 1 0, the CA's full SubjectPublicKeyInfo in DNS;
        // the server sends only its own certificate.
        case(
            "DANE-TA bare key from DNS anchors a chain without the TA",
            (Ta, Spki, Full, C::Ca),
            (C::CaLeaf, &[]),
            MX,
            Match { depth: 1 },
        ),
        case(
            "DANE-TA bare key: the name is still checked",
            (Ta, Spki, Full, C::Ca),
            (C::CaLeaf, &[]),
            &["other.example"],
            Fail(ResultType::CertificateHostMismatch, any_kind),
        ),
        case(
            "DANE-TA bare key: another CA's key does not anchor this leaf",
            (Ta, Spki, Full, C::OtherCa),
            (C::CaLeaf, &[]),
            MX,
            Fail(ResultType::CertificateNotTrusted, any_kind),
        ),
    ]);
    cases
}

#[test]
fn verify_chain_cases_rfc7672_3_1() {
    let certs = Certs::make();
    for c in cases() {
        let label = &c.name;
        let (usage, selector, matching, from) = c.record;
        let rec = UsableTlsa::for_certificate(usage, selector, matching, certs.get(from))
            .unwrap_or_else(|e| panic!("{label}: record: {e}"));
        let chain: Vec<_> = c.chain.iter().map(|&x| certs.get(x).clone()).collect();
        let names: Vec<_> = c.names.iter().map(|n| name(n)).collect();
        let got = verify_chain(
            std::slice::from_ref(&rec),
            certs.get(c.leaf),
            &chain,
            &names,
            now(),
            &mailtls_policy::default_crypto_provider(),
        );
        match (got, c.expect) {
            (Ok(m), Expect::Match { depth }) => {
                assert_eq!(m.depth, depth, "{label}: depth");
                assert_eq!(m.record, rec, "{label}: matched record");
            }
            (Err(err), Expect::Fail(result_type, kind)) => {
                assert_eq!(err.result_type(), result_type, "{label}: {err}");
                assert!(kind(&err.kind), "{label}: kind {:?}", err.kind);
            }
            (Ok(m), Expect::Fail(..)) => panic!("{label}: expected a failure, matched {m:?}"),
            (Err(err), Expect::Match { .. }) => panic!("{label}: expected a match: {err}"),
        }
    }
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
        &mailtls_policy::default_crypto_provider(),
    )
    .unwrap_err();
    assert_eq!(err.kind, DaneFailureKind::NoUsableRecords);
}

/// RFC 7671 §9 (digest algorithm agility): among records of one usage and
/// selector, the strongest digest present governs; a weaker digest that
/// matches cannot let a certificate through that the stronger one rejects.
#[test]
fn strongest_digest_governs_rfc7671_9() {
    use DaneUsage::{DaneEe, DaneTa};
    use MatchingType::{Full, Sha256, Sha512};
    use Selector::{Cert, Spki};
    let certs = Certs::make();
    let rec = |u, s, m, c| UsableTlsa::for_certificate(u, s, m, certs.get(c)).unwrap();
    let verify = |records: &[UsableTlsa], leaf: C, chain: &[C]| {
        let chain: Vec<_> = chain.iter().map(|&c| certs.get(c).clone()).collect();
        verify_chain(
            records,
            certs.get(leaf),
            &chain,
            &[name("mx.example.com")],
            now(),
            &mailtls_policy::default_crypto_provider(),
        )
    };

    // DANE-EE: SHA-256 matches the server, SHA-512 names another key.
    let weak_match = [
        rec(DaneEe, Spki, Sha256, C::Ee),
        rec(DaneEe, Spki, Sha512, C::OtherEe),
    ];
    let err = verify(&weak_match, C::Ee, &[]).unwrap_err();
    assert_eq!(err.result_type(), ResultType::TlsaInvalid, "{err}");
    // The server behind the SHA-512 record passes, by that record.
    let m = verify(&weak_match, C::OtherEe, &[]).unwrap();
    assert_eq!(m.record, weak_match[1]);
    // The order of the records does not matter.
    let reversed = [weak_match[1].clone(), weak_match[0].clone()];
    assert!(verify(&reversed, C::Ee, &[]).is_err());

    // Agility is per usage and selector: a SHA-512 record with selector
    // Cert(0) does not silence a SHA-256 record with selector SPKI(1).
    let other_selector = [
        rec(DaneEe, Spki, Sha256, C::Ee),
        rec(DaneEe, Cert, Sha512, C::OtherEe),
    ];
    assert!(verify(&other_selector, C::Ee, &[]).is_ok());
    // Nor across usages: DANE-TA SHA-512 leaves DANE-EE SHA-256 in force.
    let other_usage = [
        rec(DaneEe, Spki, Sha256, C::Ee),
        rec(DaneTa, Spki, Sha512, C::OtherCa),
    ];
    assert!(verify(&other_usage, C::Ee, &[]).is_ok());
    // Full(0) is not a digest: it stays in force beside SHA-512.
    let full = [
        rec(DaneEe, Spki, Full, C::Ee),
        rec(DaneEe, Spki, Sha512, C::OtherEe),
    ];
    assert!(verify(&full, C::Ee, &[]).is_ok());

    // DANE-TA: a SHA-256 record for this CA under a SHA-512 one for another.
    let ta = [
        rec(DaneTa, Cert, Sha256, C::Ca),
        rec(DaneTa, Cert, Sha512, C::OtherCa),
    ];
    assert!(verify(&ta, C::CaLeaf, &[C::Ca]).is_err());
    assert!(verify(&ta, C::OtherCaLeaf, &[C::OtherCa]).is_ok());
}
