//! S/MIME certificates from mailtls-core's certificate maker: OpenSSL
//! accepts them for S/MIME signing and encryption, and they work with this
//! engine and with `openssl cms` in both directions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use mailtls_core::maker::{CaSpec, CertificateAuthority, KeyType, MakerError, SmimeCertSpec};
use mailtls_smime::{
    Certificate, ContentEncryption, Decryptor, Encryptor, KeyManagement, Signer, Verdict, Verifier,
};
use support::{MESSAGE, openssl_cms, write};

fn made(ca: &CertificateAuthority, address: &str, key_type: KeyType) -> support::User {
    let spec = SmimeCertSpec {
        key_type,
        ..SmimeCertSpec::new(address)
    };
    let m = ca.issue_smime(&spec).unwrap();
    support::User {
        cert_der: m.cert_der.to_vec(),
        cert_pem: m.cert_pem.clone(),
        key_der: m.key_der().secret_der().to_vec(),
        key_pem: m.key_pem().to_owned(),
    }
}

#[test]
fn made_smime_certificates_work_with_openssl_both_ways() {
    let ca = CertificateAuthority::new_test_ca(&CaSpec::default()).unwrap();
    let ca_pem = ca.certificate().cert_pem.clone();
    let dir = tempfile::tempdir().unwrap();
    let ca_path = write(dir.path(), "ca.pem", ca_pem.as_bytes());
    let verifier = Verifier::new(Certificate::from_pem(ca_pem.as_bytes()).unwrap());
    for (key_type, address) in [
        (KeyType::Rsa2048, "alice@example.org"),
        (KeyType::EcdsaP256, "alice@example.org"),
        (KeyType::EcdsaP384, "alice@example.org"),
    ] {
        let u = made(&ca, address, key_type);
        let cert_path = write(dir.path(), "u.pem", u.cert_pem.as_bytes());
        // OpenSSL's purpose check: S/MIME signing and encryption.
        let out = std::process::Command::new("openssl")
            .args([
                "x509",
                "-noout",
                "-purpose",
                "-ext",
                "subjectAltName,keyUsage,extendedKeyUsage",
                "-in",
            ])
            .arg(&cert_path)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("S/MIME signing : Yes"), "{key_type}: {text}");
        // OpenSSL's encryption purpose wants keyEncipherment whatever the
        // key; an EC key agrees instead (RFC 8550 section 4.4.2), which
        // `openssl cms -encrypt` below accepts.
        if key_type == KeyType::Rsa2048 {
            assert!(text.contains("S/MIME encryption : Yes"), "{text}");
        }
        assert!(text.contains("email:alice@example.org"), "{text}");
        assert!(text.contains("E-mail Protection"), "{text}");
        let usage = if key_type == KeyType::Rsa2048 {
            "Key Encipherment"
        } else {
            "Key Agreement"
        };
        assert!(
            text.contains("Digital Signature") && text.contains(usage),
            "{text}"
        );

        // We sign, OpenSSL verifies with the S/MIME signing purpose.
        let signed = Signer::new(u.key(), vec![u.certificate()])
            .unwrap()
            .sign_message(MESSAGE)
            .unwrap();
        let (ok, _, err) = openssl_cms(
            &[
                "-verify",
                "-CAfile",
                ca_path.to_str().unwrap(),
                "-purpose",
                "smimesign",
            ],
            &signed,
        );
        assert!(ok, "{key_type}: {err}");
        // OpenSSL signs, we verify: every check holds (key usage, EKU,
        // address, chain).
        let key_path = write(dir.path(), "u.key", u.key_pem.as_bytes());
        let (ok, out, err) = openssl_cms(
            &[
                "-sign",
                "-signer",
                cert_path.to_str().unwrap(),
                "-inkey",
                key_path.to_str().unwrap(),
            ],
            b"Content-Type: text/plain\r\n\r\nfrom openssl\r\n",
        );
        assert!(ok, "{err}");
        let mut message = b"From: alice@example.org\r\n".to_vec();
        message.extend_from_slice(&out);
        let report = verifier.verify_message(&message).unwrap().report;
        assert_eq!(
            report.verdict(),
            Verdict::Valid,
            "{key_type}: {:?}",
            report.signers
        );

        // We encrypt, OpenSSL decrypts; OpenSSL encrypts, we decrypt.
        let method = KeyManagement::for_certificate(&u.certificate()).unwrap();
        let enc = Encryptor::new(ContentEncryption::Aes256Cbc)
            .with_recipient(u.certificate(), method)
            .unwrap()
            .encrypt_message(MESSAGE)
            .unwrap();
        assert!(
            String::from_utf8_lossy(&support::openssl_decrypts(&u, &enc))
                .contains("this is signed.")
        );
        let (ok, enc, err) = openssl_cms(
            &["-encrypt", "-aes256", "-recip", cert_path.to_str().unwrap()],
            b"Content-Type: text/plain\r\n\r\nto the made key\r\n",
        );
        assert!(ok, "{err}");
        let d = Decryptor::new(u.key(), u.certificate())
            .unwrap()
            .decrypt_message(&enc)
            .unwrap();
        assert!(d.content.ends_with(b"to the made key\r\n"));
    }
}

#[test]
fn addresses_are_checked() {
    let ca = CertificateAuthority::new_test_ca(&CaSpec::default()).unwrap();
    for bad in [
        "",
        "no-at-sign",
        "@example.org",
        "alice@",
        "al ice@example.org",
        "jörg@example.org",
        "a@b@example.org",
    ] {
        let err = ca.issue_smime(&SmimeCertSpec::new(bad)).unwrap_err();
        assert!(matches!(err, MakerError::BadAddress(_)), "{bad:?}: {err}");
    }
    let none = SmimeCertSpec {
        addresses: Vec::new(),
        ..SmimeCertSpec::new("x@example.org")
    };
    assert!(matches!(
        ca.issue_smime(&none),
        Err(MakerError::BadAddress(_))
    ));
    // Several addresses, a domain as the common name (a gateway's domain
    // certificate); the engine sees every address.
    let domain = SmimeCertSpec {
        addresses: vec![
            "postmaster@example.org".into(),
            "gateway@example.org".into(),
        ],
        common_name: Some("example.org".into()),
        ..SmimeCertSpec::new("x@example.org")
    };
    let m = ca.issue_smime(&domain).unwrap();
    let cert = Certificate::from_der(&m.cert_der).unwrap();
    assert_eq!(
        cert.email_addresses(),
        ["postmaster@example.org", "gateway@example.org"]
    );
    assert!(cert.subject().contains("example.org"));
    // Self-signed works too, and loads as a mailtls-core credential.
    let own =
        mailtls_core::maker::self_signed_smime(&SmimeCertSpec::new("me@example.net")).unwrap();
    own.to_certificate_with_key().unwrap();
}
