//! Several signers in one SignedData (sender key plus domain key, or any
//! two keys): detached and opaque, one-shot and streamed, checked with
//! `openssl cms -verify` (which must name both signers) and with this
//! crate's verifier.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use mailtls_smime::{Certificate, DigestAlgorithm, SignatureForm, Signer, Verifier, VerifyReport};
use rcgen::{PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256};
use support::*;

/// From one signer's address, Sender the other's: each certificate names
/// an address of the message.
const TWO_ADDRESSES: &[u8] = b"From: Alice <alice@example.org>\r\nSender: gateway@example.org\r\n\
To: bob@example.net\r\nSubject: two signers\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n\
Hello Bob,\nsigned twice.\n";

struct World {
    ca: Ca,
    alice: User,
    gateway: User,
}

fn world() -> World {
    let ca = ca(&PKCS_ECDSA_P256_SHA256, "Test CA");
    let alice = user(&ca, &PKCS_ECDSA_P256_SHA256, "alice@example.org");
    let gateway = user(&ca, &PKCS_RSA_SHA256, "gateway@example.org");
    World { ca, alice, gateway }
}

/// Alice (P-256, SHA-256) with the gateway's RSA key (SHA-512) beside her.
fn two_signers(w: &World, form: SignatureForm) -> Signer {
    let domain = Signer::new(w.gateway.key(), vec![w.gateway.certificate()])
        .unwrap()
        .with_digest(DigestAlgorithm::Sha512)
        .unwrap();
    Signer::new(w.alice.key(), vec![w.alice.certificate()])
        .unwrap()
        .with_form(form)
        .with_co_signer(domain)
}

/// `openssl cms -verify`; returns the content and the signer certificates
/// it wrote with `-signer`.
fn openssl_verify(ca: &Ca, signed: &[u8]) -> (Vec<u8>, Vec<Certificate>) {
    let dir = tempfile::tempdir().unwrap();
    let ca_path = write(dir.path(), "ca.pem", ca.pem.as_bytes());
    let signers = dir.path().join("signers.pem");
    let (ok, out, err) = openssl_cms(
        &[
            "-verify",
            "-CAfile",
            ca_path.to_str().unwrap(),
            "-purpose",
            "smimesign",
            "-signer",
            signers.to_str().unwrap(),
        ],
        signed,
    );
    assert!(ok, "openssl cms -verify failed: {err}");
    let pem = std::fs::read(&signers).unwrap();
    (out, Certificate::from_pem(&pem).unwrap())
}

fn assert_two_valid(report: &VerifyReport, w: &World) {
    assert_eq!(report.signers.len(), 2, "{report:?}");
    for s in &report.signers {
        assert!(s.is_valid(), "{:?}", s.failures());
    }
    let mut ders: Vec<Vec<u8>> = report
        .signers
        .iter()
        .map(|s| s.certificate.as_ref().unwrap().der().to_vec())
        .collect();
    ders.sort();
    let mut want = vec![w.alice.cert_der.clone(), w.gateway.cert_der.clone()];
    want.sort();
    assert_eq!(ders, want);
}

fn assert_openssl_names_both(w: &World, signed: &[u8]) {
    let (content, certs) = openssl_verify(&w.ca, signed);
    assert!(String::from_utf8_lossy(&content).contains("signed twice."));
    let mut ders: Vec<Vec<u8>> = certs.iter().map(|c| c.der().to_vec()).collect();
    ders.sort();
    let mut want = vec![w.alice.cert_der.clone(), w.gateway.cert_der.clone()];
    want.sort();
    assert_eq!(ders, want, "openssl -signer must list both signers");
}

#[test]
fn detached_two_signers_verify_with_openssl_and_here() {
    let w = world();
    let signer = two_signers(&w, SignatureForm::Detached);
    assert_eq!(signer.signer_count(), 2);
    assert_eq!(
        signer.digest_algorithms(),
        [DigestAlgorithm::Sha256, DigestAlgorithm::Sha512]
    );
    let signed = signer.sign_message(TWO_ADDRESSES).unwrap();
    let text = String::from_utf8_lossy(&signed);
    assert!(text.contains("micalg=\"sha-256,sha-512\""), "{text}");
    assert_openssl_names_both(&w, &signed);
    let v = Verifier::new(vec![Certificate::from_der(&w.ca.der).unwrap()])
        .verify_message(&signed)
        .unwrap();
    assert_two_valid(&v.report, &w);
}

#[test]
fn opaque_two_signers_verify_with_openssl_and_here() {
    let w = world();
    let signed = two_signers(&w, SignatureForm::Opaque)
        .sign_message(TWO_ADDRESSES)
        .unwrap();
    assert_openssl_names_both(&w, &signed);
    let v = Verifier::new(vec![Certificate::from_der(&w.ca.der).unwrap()])
        .verify_message(&signed)
        .unwrap();
    assert_two_valid(&v.report, &w);
}

#[test]
fn streamed_two_signers_both_forms() {
    let w = world();
    let verifier = Verifier::new(vec![Certificate::from_der(&w.ca.der).unwrap()]);
    for form in [SignatureForm::Detached, SignatureForm::Opaque] {
        let mut signed = Vec::new();
        two_signers(&w, form)
            .sign_stream(TWO_ADDRESSES, &mut signed)
            .unwrap();
        let text = String::from_utf8_lossy(&signed);
        match form {
            SignatureForm::Opaque => assert!(text.contains("smime-type=signed-data"), "{text}"),
            _ => assert!(text.contains("multipart/signed"), "{text}"),
        }
        assert_openssl_names_both(&w, &signed);
        assert_two_valid(&verifier.verify_message(&signed).unwrap().report, &w);
        assert_two_valid(&verifier.verify_stream(signed.as_slice()).unwrap(), &w);
    }
}

#[test]
fn one_signer_failing_is_reported_beside_the_valid_one() {
    // Only Alice's address is in the message: the gateway's signature is
    // cryptographically good but its certificate does not name a sender.
    let w = world();
    let message = String::from_utf8_lossy(TWO_ADDRESSES)
        .replace("Sender: gateway@example.org\r\n", "")
        .into_bytes();
    let signed = two_signers(&w, SignatureForm::Detached)
        .sign_message(&message)
        .unwrap();
    let v = Verifier::new(vec![Certificate::from_der(&w.ca.der).unwrap()])
        .verify_message(&signed)
        .unwrap();
    assert_eq!(v.report.signers.len(), 2);
    let valid = v.report.signers.iter().filter(|s| s.is_valid()).count();
    assert_eq!(valid, 1);
    assert!(v.report.signers.iter().all(|s| s.signature.passed()));
    assert!(!v.report.is_valid());
}

#[test]
fn the_same_signer_is_not_added_twice() {
    let w = world();
    let again = Signer::new(w.alice.key(), vec![w.alice.certificate()]).unwrap();
    let signer = Signer::new(w.alice.key(), vec![w.alice.certificate()])
        .unwrap()
        .with_co_signer(again);
    assert_eq!(signer.signer_count(), 1);
    assert_eq!(signer.micalg(), "sha-256");
}

/// `openssl cms -sign` (or `-resign`) of `message` by `u`, with `extra`
/// arguments; the whole message.
fn openssl_signs(u: &User, args: &[&str], message: &[u8]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let cert = write(dir.path(), "u.pem", u.cert_pem.as_bytes());
    let key = write(dir.path(), "u.key", u.key_pem.as_bytes());
    let mut all = args.to_vec();
    all.extend_from_slice(&[
        "-signer",
        cert.to_str().unwrap(),
        "-inkey",
        key.to_str().unwrap(),
    ]);
    let (ok, out, err) = openssl_cms(&all, message);
    assert!(ok, "openssl cms {args:?}: {err}");
    out
}

/// OpenSSL signs (detached, opaque, streamed BER), we co-sign with the
/// gateway's RSA key (PKCS #1 v1.5 and RSA-PSS, SHA-512): OpenSSL and we
/// verify both signers. A co-signature is refused over content the
/// existing signature does not cover.
#[test]
fn we_cosign_what_openssl_signed() {
    let w = world();
    let headers = b"From: Alice <alice@example.org>\r\nSender: gateway@example.org\r\nTo: bob@example.net\r\nSubject: two signers\r\n";
    let body = b"Content-Type: text/plain; charset=us-ascii\r\n\r\nHello Bob,\r\nsigned twice.\r\n";
    for (args, pss) in [
        (&["-sign"][..], false),
        (&["-sign", "-nodetach"][..], true),
        (&["-sign", "-nodetach", "-stream"][..], false),
    ] {
        let mut signed = headers.to_vec();
        signed.extend_from_slice(&openssl_signs(&w.alice, args, body));
        let mut gateway = Signer::new(w.gateway.key(), vec![w.gateway.certificate()])
            .unwrap()
            .with_digest(DigestAlgorithm::Sha512)
            .unwrap();
        if pss {
            gateway = gateway.with_rsa_pss().unwrap();
        }
        let cosigned = gateway.cosign_message(&signed).unwrap();
        assert_openssl_names_both(&w, &cosigned);
        let v = Verifier::new(vec![Certificate::from_der(&w.ca.der).unwrap()])
            .verify_message(&cosigned)
            .unwrap();
        assert_two_valid(&v.report, &w);
        if args.len() == 1 {
            let text = String::from_utf8_lossy(&cosigned);
            assert!(text.contains("micalg=\"sha-256,sha-512\""), "{text}");
        }
    }
    // Tampered content: the existing signature does not cover it.
    let mut signed = headers.to_vec();
    signed.extend_from_slice(&openssl_signs(&w.alice, &["-sign"], body));
    let tampered = String::from_utf8(signed)
        .unwrap()
        .replace("signed twice.", "signed thrice.");
    let err = Signer::new(w.gateway.key(), vec![w.gateway.certificate()])
        .unwrap()
        .cosign_message(tampered.as_bytes())
        .unwrap_err();
    assert!(matches!(err, mailtls_smime::Error::NotSmime(_)), "{err}");
    // An unsigned message cannot be co-signed.
    assert!(
        Signer::new(w.gateway.key(), vec![w.gateway.certificate()])
            .unwrap()
            .cosign_message(MESSAGE)
            .is_err()
    );
}

/// We sign, OpenSSL co-signs (`cms -resign`): both signers verify here and
/// in OpenSSL.
#[test]
fn openssl_cosigns_what_we_signed() {
    let w = world();
    for form in [SignatureForm::Detached, SignatureForm::Opaque] {
        let ours = Signer::new(w.alice.key(), vec![w.alice.certificate()])
            .unwrap()
            .with_form(form)
            .sign_message(TWO_ADDRESSES)
            .unwrap();
        // OpenSSL writes the MIME entity only: the outer headers go back on.
        let mut resigned =
            b"From: Alice <alice@example.org>\r\nSender: gateway@example.org\r\n".to_vec();
        resigned.extend_from_slice(&openssl_signs(&w.gateway, &["-resign"], &ours));
        assert_openssl_names_both(&w, &resigned);
        let v = Verifier::new(vec![Certificate::from_der(&w.ca.der).unwrap()])
            .verify_message(&resigned)
            .unwrap();
        assert_two_valid(&v.report, &w);
    }
}
