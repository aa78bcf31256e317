//! Signing and verification, both directions against `openssl cms`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use mailtls_smime::{
    Certificate, Check, DigestAlgorithm, Error, Failure, SignatureForm, Signer, Verdict, Verifier,
    VerifyReport, WeakAlgorithm,
};
use rcgen::{
    ExtendedKeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_ED25519,
    PKCS_RSA_SHA256, SignatureAlgorithm,
};
use support::*;

fn signer(u: &User) -> Signer {
    Signer::new(u.key(), vec![u.certificate()]).unwrap()
}

fn verifier(ca: &Ca) -> Verifier {
    Verifier::new(vec![Certificate::from_der(&ca.der).unwrap()])
}

/// Signs with us, verifies with OpenSSL; returns what OpenSSL output.
fn openssl_verifies(ca: &Ca, signed: &[u8]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let ca_path = write(dir.path(), "ca.pem", ca.pem.as_bytes());
    let (ok, out, err) = openssl_cms(
        &[
            "-verify",
            "-CAfile",
            ca_path.to_str().unwrap(),
            "-purpose",
            "smimesign",
        ],
        signed,
    );
    assert!(
        ok,
        "openssl cms -verify failed: {err}\n{}",
        String::from_utf8_lossy(signed)
    );
    out
}

fn assert_all_valid(report: &VerifyReport) {
    assert!(!report.signers.is_empty());
    for s in &report.signers {
        assert!(s.is_valid(), "{:?}", s.failures());
    }
}

fn our_sign_openssl_verify(alg: &'static SignatureAlgorithm, form: SignatureForm) {
    let ca = ca(alg, "Test CA");
    let alice = user(&ca, alg, "alice@example.org");
    let signed = signer(&alice)
        .with_form(form)
        .sign_message(MESSAGE)
        .unwrap();
    let out = openssl_verifies(&ca, &signed);
    assert!(
        String::from_utf8_lossy(&out).contains("Hello Bob,\r\nthis is signed."),
        "{}",
        String::from_utf8_lossy(&out)
    );
    // And we read our own output.
    let v = verifier(&ca).verify_message(&signed).unwrap();
    assert_all_valid(&v.report);
    assert!(v.content.starts_with(b"Content-Type: text/plain"));
}

#[test]
fn rsa_detached_verifies_in_openssl() {
    our_sign_openssl_verify(&PKCS_RSA_SHA256, SignatureForm::Detached);
}

#[test]
fn rsa_opaque_verifies_in_openssl() {
    our_sign_openssl_verify(&PKCS_RSA_SHA256, SignatureForm::Opaque);
}

#[test]
fn p256_detached_and_opaque_verify_in_openssl() {
    our_sign_openssl_verify(&PKCS_ECDSA_P256_SHA256, SignatureForm::Detached);
    our_sign_openssl_verify(&PKCS_ECDSA_P256_SHA256, SignatureForm::Opaque);
}

#[test]
fn p384_detached_verifies_in_openssl() {
    our_sign_openssl_verify(&PKCS_ECDSA_P384_SHA384, SignatureForm::Detached);
}

#[test]
fn rsa_sha512_verifies_in_openssl() {
    let ca = ca(&PKCS_RSA_SHA256, "Test CA");
    let alice = user(&ca, &PKCS_RSA_SHA256, "alice@example.org");
    let signed = signer(&alice)
        .with_digest(DigestAlgorithm::Sha512)
        .unwrap()
        .sign_message(MESSAGE)
        .unwrap();
    assert!(String::from_utf8_lossy(&signed).contains("micalg=sha-512"));
    openssl_verifies(&ca, &signed);
}

#[test]
fn ed25519_round_trip() {
    let ca = ca(&PKCS_ED25519, "Ed CA");
    let alice = user(&ca, &PKCS_ED25519, "alice@example.org");
    let signed = signer(&alice).sign_message(MESSAGE).unwrap();
    assert!(String::from_utf8_lossy(&signed).contains("micalg=sha-512"));
    let v = verifier(&ca).verify_message(&signed).unwrap();
    assert_all_valid(&v.report);
}

#[test]
fn lf_only_and_eight_bit_input_is_signed_canonically() {
    let ca = ca(&PKCS_ECDSA_P256_SHA256, "Test CA");
    let alice = user(&ca, &PKCS_ECDSA_P256_SHA256, "alice@example.org");
    let msg = "From: alice@example.org\nTo: bob@example.net\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\nGrüße\n";
    let signed = signer(&alice).sign_message(msg.as_bytes()).unwrap();
    assert!(signed.iter().all(|b| *b < 0x80), "output must be 7-bit");
    openssl_verifies(&ca, &signed);
    // A store that turned CRLF into LF still verifies (canonicalised again).
    let lf: Vec<u8> = String::from_utf8(signed)
        .unwrap()
        .replace("\r\n", "\n")
        .into_bytes();
    let v = verifier(&ca).verify_message(&lf).unwrap();
    assert_all_valid(&v.report);
}

/// OpenSSL signs, we verify.
fn openssl_signs(alice: &User, extra: &[&str], msg: &[u8]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let cert = write(dir.path(), "alice.pem", alice.cert_pem.as_bytes());
    let key = write(dir.path(), "alice.key", alice.key_pem.as_bytes());
    let mut args = vec![
        "-sign",
        "-signer",
        cert.to_str().unwrap(),
        "-inkey",
        key.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let (ok, out, err) = openssl_cms(&args, msg);
    assert!(ok, "openssl cms -sign failed: {err}");
    let mut full =
        b"From: Alice <alice@example.org>\r\nTo: bob@example.net\r\nSubject: t\r\n".to_vec();
    full.extend_from_slice(&out);
    full
}

const BODY: &[u8] = b"Content-Type: text/plain\r\n\r\nsigned by openssl\r\n";

#[test]
fn openssl_detached_rsa_and_p256_verify() {
    for alg in [&PKCS_RSA_SHA256, &PKCS_ECDSA_P256_SHA256] {
        let ca = ca(alg, "Test CA");
        let alice = user(&ca, alg, "alice@example.org");
        let signed = openssl_signs(&alice, &[], BODY);
        let v = verifier(&ca).verify_message(&signed).unwrap();
        assert_all_valid(&v.report);
        assert_eq!(v.content, BODY);
        let s = &v.report.signers[0];
        assert!(s.signing_time.is_some());
        assert!(
            s.capabilities
                .as_ref()
                .is_some_and(|c| !c.oids().is_empty())
        );
    }
}

#[test]
fn openssl_opaque_streamed_ber_verifies() {
    let ca = ca(&PKCS_RSA_SHA256, "Test CA");
    let alice = user(&ca, &PKCS_RSA_SHA256, "alice@example.org");
    let signed = openssl_signs(&alice, &["-nodetach", "-stream"], BODY);
    let v = verifier(&ca).verify_message(&signed).unwrap();
    assert_all_valid(&v.report);
    assert_eq!(v.content, BODY);
    // Detached, streamed, binary DER: also BER.
    let signed = openssl_signs(&alice, &["-stream"], BODY);
    let v = verifier(&ca).verify_message(&signed).unwrap();
    assert_all_valid(&v.report);
}

#[test]
fn openssl_two_signers_and_ski_identifier() {
    let ca = ca(&PKCS_ECDSA_P256_SHA256, "Test CA");
    let alice = user(&ca, &PKCS_ECDSA_P256_SHA256, "alice@example.org");
    let carol = user(&ca, &PKCS_RSA_SHA256, "alice@example.org");
    let dir = tempfile::tempdir().unwrap();
    let c2 = write(dir.path(), "c2.pem", carol.cert_pem.as_bytes());
    let k2 = write(dir.path(), "c2.key", carol.key_pem.as_bytes());
    let signed = openssl_signs(
        &alice,
        &[
            "-keyid",
            "-signer",
            c2.to_str().unwrap(),
            "-inkey",
            k2.to_str().unwrap(),
        ],
        BODY,
    );
    let v = verifier(&ca).verify_message(&signed).unwrap();
    assert_eq!(v.report.signers.len(), 2);
    assert_all_valid(&v.report);
}

#[test]
fn x_pkcs7_and_p7m_octet_stream_variants_verify() {
    let ca = ca(&PKCS_RSA_SHA256, "Test CA");
    let alice = user(&ca, &PKCS_RSA_SHA256, "alice@example.org");
    let opaque = String::from_utf8(
        signer(&alice)
            .with_form(SignatureForm::Opaque)
            .sign_message(MESSAGE)
            .unwrap(),
    )
    .unwrap();
    let x = opaque.replace("application/pkcs7-mime", "application/x-pkcs7-mime");
    assert_all_valid(&verifier(&ca).verify_message(x.as_bytes()).unwrap().report);
    let oct = opaque.replace(
        "application/pkcs7-mime; smime-type=signed-data;",
        "application/octet-stream;",
    );
    assert_all_valid(&verifier(&ca).verify_message(oct.as_bytes()).unwrap().report);
    let detached = String::from_utf8(signer(&alice).sign_message(MESSAGE).unwrap()).unwrap();
    let xs = detached.replace(
        "Content-Type: application/pkcs7-signature",
        "Content-Type: application/x-pkcs7-signature",
    );
    assert_all_valid(&verifier(&ca).verify_message(xs.as_bytes()).unwrap().report);
}

fn single_failure(report: &VerifyReport) -> Vec<Failure> {
    report.signers[0]
        .failures()
        .into_iter()
        .map(|(_, f)| f.clone())
        .collect()
}

#[test]
fn tampered_body_is_a_digest_mismatch() {
    let ca = ca(&PKCS_RSA_SHA256, "Test CA");
    let alice = user(&ca, &PKCS_RSA_SHA256, "alice@example.org");
    let signed = String::from_utf8(signer(&alice).sign_message(MESSAGE).unwrap()).unwrap();
    let tampered = signed.replace("this is signed.", "this is forged.");
    let v = verifier(&ca).verify_message(tampered.as_bytes()).unwrap();
    assert!(!v.report.is_valid());
    assert_eq!(single_failure(&v.report), vec![Failure::DigestMismatch]);
}

#[test]
fn wrong_from_is_an_address_mismatch() {
    let ca = ca(&PKCS_RSA_SHA256, "Test CA");
    let alice = user(&ca, &PKCS_RSA_SHA256, "alice@example.org");
    let signed = String::from_utf8(signer(&alice).sign_message(MESSAGE).unwrap()).unwrap();
    let forged = signed.replace(
        "From: Alice <alice@example.org>",
        "From: Mallory <mallory@example.org>",
    );
    let v = verifier(&ca).verify_message(forged.as_bytes()).unwrap();
    assert!(matches!(
        single_failure(&v.report).as_slice(),
        [Failure::AddressMismatch { .. }]
    ));
}

#[test]
fn server_auth_only_eku_is_refused() {
    let ca = ca(&PKCS_ECDSA_P256_SHA256, "Test CA");
    let mut spec = UserSpec::new("alice@example.org");
    spec.eku = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let alice = user_with(&ca, &PKCS_ECDSA_P256_SHA256, spec);
    let signed = signer(&alice).sign_message(MESSAGE).unwrap();
    let v = verifier(&ca).verify_message(&signed).unwrap();
    assert_eq!(
        single_failure(&v.report),
        vec![Failure::NotForEmailProtection]
    );
}

#[test]
fn expired_signer_is_reported() {
    let ca = ca(&PKCS_ECDSA_P256_SHA256, "Test CA");
    let mut spec = UserSpec::new("alice@example.org");
    spec.not_after = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    let alice = user_with(&ca, &PKCS_ECDSA_P256_SHA256, spec);
    let signed = signer(&alice).sign_message(MESSAGE).unwrap();
    let v = verifier(&ca).verify_message(&signed).unwrap();
    assert_eq!(single_failure(&v.report), vec![Failure::Expired]);
}

#[test]
fn unknown_ca_is_reported() {
    let ca1 = ca(&PKCS_ECDSA_P256_SHA256, "Test CA");
    let other = ca(&PKCS_ECDSA_P256_SHA256, "Other CA");
    let alice = user(&ca1, &PKCS_ECDSA_P256_SHA256, "alice@example.org");
    let signed = signer(&alice).sign_message(MESSAGE).unwrap();
    let v = verifier(&other).verify_message(&signed).unwrap();
    assert!(matches!(
        single_failure(&v.report).as_slice(),
        [Failure::UnknownIssuer(_) | Failure::BadChain(_)]
    ));
}

#[test]
fn truncated_and_garbage_cms_are_errors_not_panics() {
    let ca = ca(&PKCS_RSA_SHA256, "Test CA");
    let alice = user(&ca, &PKCS_RSA_SHA256, "alice@example.org");
    let der = signer(&alice).sign_content(b"x", false).unwrap();
    let v = verifier(&ca);
    for cut in [0, 1, 2, 10, der.len() / 2, der.len() - 1] {
        assert!(
            v.verify_cms(&der[..cut], None, &[]).is_err(),
            "cut at {cut}"
        );
    }
    assert!(v.verify_cms(b"\x30\x80garbage", None, &[]).is_err());
    assert!(v.verify_message(b"From: a@b.c\r\n\r\nplain").is_err());
}

#[test]
fn rsa_pss_both_directions() {
    let ca = ca(&PKCS_RSA_SHA256, "Test CA");
    let alice = user(&ca, &PKCS_RSA_SHA256, "alice@example.org");
    for digest in [DigestAlgorithm::Sha256, DigestAlgorithm::Sha512] {
        let signed = signer(&alice)
            .with_rsa_pss()
            .unwrap()
            .with_digest(digest)
            .unwrap()
            .sign_message(MESSAGE)
            .unwrap();
        openssl_verifies(&ca, &signed);
        assert_all_valid(&verifier(&ca).verify_message(&signed).unwrap().report);
    }
    // OpenSSL's default PSS salt, then explicit maximum and digest lengths.
    for extra in [
        vec!["-keyopt", "rsa_padding_mode:pss"],
        vec![
            "-keyopt",
            "rsa_padding_mode:pss",
            "-keyopt",
            "rsa_pss_saltlen:max",
        ],
        vec![
            "-keyopt",
            "rsa_padding_mode:pss",
            "-keyopt",
            "rsa_pss_saltlen:digest",
            "-md",
            "sha512",
        ],
    ] {
        let signed = openssl_signs(&alice, &extra, BODY);
        let v = verifier(&ca).verify_message(&signed).unwrap();
        assert_all_valid(&v.report);
    }
    let ec = ca_user_ec();
    assert!(signer(&ec).with_rsa_pss().is_err());
}

fn ca_user_ec() -> User {
    let ca = ca(&PKCS_ECDSA_P256_SHA256, "EC CA");
    user(&ca, &PKCS_ECDSA_P256_SHA256, "alice@example.org")
}

#[test]
fn legacy_email_address_attribute_matches_from() {
    use rcgen::{CertificateParams, DnType, DnValue, IsCa, KeyPair};
    let ca = ca(&PKCS_ECDSA_P256_SHA256, "Test CA");
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, "Alice");
    params.distinguished_name.push(
        DnType::CustomDnType(vec![1, 2, 840, 113549, 1, 9, 1]),
        DnValue::Ia5String("alice@EXAMPLE.org".try_into().unwrap()),
    );
    params.is_ca = IsCa::ExplicitNoCa;
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    let cert = Certificate::from_der(cert.der()).unwrap();
    assert_eq!(cert.email_addresses(), ["alice@EXAMPLE.org"]);
    let s = Signer::new(
        mailtls_smime::PrivateKey::from_pkcs8_der(&key.serialize_der()).unwrap(),
        vec![cert],
    )
    .unwrap();
    let v = verifier(&ca)
        .verify_message(&s.sign_message(MESSAGE).unwrap())
        .unwrap();
    assert_all_valid(&v.report);
}

#[test]
fn end_entity_acting_as_issuer_is_refused() {
    // alice (not a CA) "issues" a certificate for mallory.
    let ca = ca(&PKCS_ECDSA_P256_SHA256, "Test CA");
    let alice = user(&ca, &PKCS_ECDSA_P256_SHA256, "alice@example.org");
    let alice_issuer = rcgen::Issuer::from_ca_cert_der(
        &alice.cert_der.clone().into(),
        rcgen::KeyPair::from_der_and_sign_algo(
            &rustls_pki_types::PrivatePkcs8KeyDer::from(alice.key_der.clone()).into(),
            &PKCS_ECDSA_P256_SHA256,
        )
        .unwrap(),
    )
    .unwrap();
    let fake_ca = Ca {
        issuer: alice_issuer,
        der: alice.cert_der.clone(),
        pem: alice.cert_pem.clone(),
    };
    let mallory = user(&fake_ca, &PKCS_ECDSA_P256_SHA256, "alice@example.org");
    let s = Signer::new(
        mallory.key(),
        vec![mallory.certificate(), alice.certificate()],
    )
    .unwrap();
    let v = verifier(&ca)
        .verify_message(&s.sign_message(MESSAGE).unwrap())
        .unwrap();
    assert!(matches!(
        single_failure(&v.report).as_slice(),
        [Failure::BadChain(_) | Failure::UnknownIssuer(_)]
    ));
}

#[test]
fn openssl_cades_signing_certificate_v2_verifies() {
    let ca = ca(&PKCS_RSA_SHA256, "Test CA");
    let alice = user(&ca, &PKCS_RSA_SHA256, "alice@example.org");
    let signed = openssl_signs(&alice, &["-cades"], BODY);
    let v = verifier(&ca).verify_message(&signed).unwrap();
    assert_all_valid(&v.report);
}

#[test]
fn substituted_certificate_with_the_same_key_is_caught() {
    use cms::cert::CertificateChoices;
    use cms::content_info::ContentInfo;
    use cms::signed_data::{CertificateSet, SignedData, SignerIdentifier};
    use der::{Decode, Encode};

    let ca = ca(&PKCS_ECDSA_P256_SHA256, "Test CA");
    let alice = user(&ca, &PKCS_ECDSA_P256_SHA256, "alice@example.org");
    // A second certificate for the same key (another serial number).
    let key = rcgen::KeyPair::try_from(alice.key_der.as_slice()).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names = vec![rcgen::SanType::Rfc822Name(
        "alice@example.org".try_into().unwrap(),
    )];
    let other = params.signed_by(&key, &ca.issuer).unwrap();
    let other = x509_cert::Certificate::from_der(other.der()).unwrap();

    let der = signer(&alice).sign_content(BODY, false).unwrap();
    let ci = ContentInfo::from_der(&der).unwrap();
    let mut sd: SignedData = ci.content.decode_as().unwrap();
    let mut infos: Vec<_> = sd.signer_infos.0.into_vec();
    infos[0].sid = SignerIdentifier::IssuerAndSerialNumber(cms::cert::IssuerAndSerialNumber {
        issuer: other.tbs_certificate.issuer.clone(),
        serial_number: other.tbs_certificate.serial_number.clone(),
    });
    sd.signer_infos.0 = infos.try_into().unwrap();
    sd.certificates = Some(CertificateSet(
        vec![CertificateChoices::Certificate(other)]
            .try_into()
            .unwrap(),
    ));
    let forged = ContentInfo {
        content_type: ci.content_type,
        content: der::Any::encode_from(&sd).unwrap(),
    }
    .to_der()
    .unwrap();
    let report = verifier(&ca)
        .verify_cms(&forged, None, &["alice@example.org".into()])
        .unwrap();
    assert_eq!(
        report.signers[0].signature,
        mailtls_smime::Check::Failed(Failure::SigningCertificateMismatch)
    );
}

#[test]
fn report_names_the_encryption_certificate_and_carried_certificates() {
    let ca = ca(&PKCS_RSA_SHA256, "Test CA");
    let alice = user(&ca, &PKCS_RSA_SHA256, "alice@example.org");
    let signed = signer(&alice).sign_message(MESSAGE).unwrap();
    let v = verifier(&ca).verify_message(&signed).unwrap();
    assert_eq!(
        v.report.signers[0].encryption_certificate,
        Some(alice.certificate())
    );
    assert_eq!(v.report.certificates, vec![alice.certificate()]);
}

/// SHA-1 signatures (Outlook, older NSS): OpenSSL writes them, we verify
/// them as valid-but-weak, never as valid, in every form.
#[test]
fn openssl_sha1_signatures_are_valid_but_weak() {
    for alg in [&PKCS_RSA_SHA256, &PKCS_ECDSA_P256_SHA256] {
        let ca = ca(alg, "Test CA");
        let alice = user(&ca, alg, "alice@example.org");
        let verifier = verifier(&ca);
        // Detached, opaque, and OpenSSL's streamed BER.
        for extra in [&[][..], &["-nodetach"][..], &["-nodetach", "-stream"][..]] {
            let mut args = vec!["-md", "sha1"];
            args.extend_from_slice(extra);
            let signed = openssl_signs(&alice, &args, BODY);
            if extra.is_empty() {
                let text = String::from_utf8_lossy(&signed);
                assert!(text.contains("micalg=\"sha1\"") || text.contains("micalg=sha1"));
            }
            for report in [
                verifier.verify_message(&signed).unwrap().report,
                verifier.verify_stream(signed.as_slice()).unwrap(),
            ] {
                let s = &report.signers[0];
                // Every check holds: the signature is real.
                assert!(s.failures().is_empty(), "{:?}", s.failures());
                assert_eq!(s.weak_algorithms, vec![WeakAlgorithm::Sha1]);
                assert_eq!(s.verdict(), Verdict::ValidWeak(vec![WeakAlgorithm::Sha1]));
                assert!(!s.is_valid(), "a SHA-1 signature is never plainly valid");
                assert_eq!(
                    report.verdict(),
                    Verdict::ValidWeak(vec![WeakAlgorithm::Sha1])
                );
                assert!(!report.is_valid());
            }
            // A forged body still fails: weak is not "anything goes".
            let forged = String::from_utf8_lossy(&signed)
                .replace("signed by openssl", "signed by mallory")
                .into_bytes();
            if forged != signed {
                let report = verifier.verify_message(&forged).unwrap().report;
                assert_eq!(report.verdict(), Verdict::Invalid);
                assert_eq!(
                    report.signers[0].signature,
                    Check::Failed(Failure::DigestMismatch)
                );
            }
        }
    }
}

#[test]
fn we_never_sign_with_sha1() {
    let ca = ca(&PKCS_RSA_SHA256, "Test CA");
    let alice = user(&ca, &PKCS_RSA_SHA256, "alice@example.org");
    let err = signer(&alice)
        .with_digest(DigestAlgorithm::Sha1)
        .unwrap_err();
    assert!(matches!(err, Error::UnsupportedAlgorithm { .. }), "{err}");
    assert!(!alice.key().supports_digest(DigestAlgorithm::Sha1));
    // Our SHA-256 signature is plainly valid, and OpenSSL agrees.
    let signed = signer(&alice).sign_message(MESSAGE).unwrap();
    assert_eq!(
        verifier(&ca)
            .verify_message(&signed)
            .unwrap()
            .report
            .verdict(),
        Verdict::Valid
    );
    openssl_verifies(&ca, &signed);
}
