//! ECDH recipients on P-256, P-384 and P-521 (RFC 5753), both directions
//! against `openssl cms`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use mailtls_smime::SignatureForm;
use mailtls_smime::{ContentEncryption, Decryptor, Encryptor, Error, KeyManagement};
use rcgen::{
    PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_ECDSA_P521_SHA512, PKCS_RSA_SHA256,
};
use support::*;

const ENTITY: &[u8] = b"Content-Type: text/plain\r\n\r\nfor an EC key\r\n";

#[test]
fn our_ecdh_decrypts_in_openssl() {
    let ca = ca(&PKCS_ECDSA_P256_SHA256, "CA");
    let bob = user(&ca, &PKCS_ECDSA_P256_SHA256, "bob@example.net");
    for cipher in [
        ContentEncryption::Aes128Cbc,
        ContentEncryption::Aes192Cbc,
        ContentEncryption::Aes256Cbc,
        ContentEncryption::Aes128Gcm,
        ContentEncryption::Aes192Gcm,
        ContentEncryption::Aes256Gcm,
    ] {
        for method in [
            KeyManagement::EcdhP256Sha256Kdf,
            KeyManagement::EcdhP256Sha1Kdf,
        ] {
            let enc = Encryptor::new(cipher)
                .with_recipient(bob.certificate(), method)
                .unwrap()
                .encrypt_message(MESSAGE)
                .unwrap();
            let out = openssl_decrypts(&bob, &enc);
            assert!(
                String::from_utf8_lossy(&out).contains("this is signed."),
                "{cipher:?} {method:?}"
            );
            let ours = Decryptor::new(bob.key(), bob.certificate())
                .unwrap()
                .decrypt_message(&enc)
                .unwrap();
            assert!(ours.message().starts_with(b"From: Alice"));
        }
    }
}

#[test]
fn openssl_ecdh_with_sha1_and_sha256_kdf_decrypts() {
    let ca = ca(&PKCS_ECDSA_P256_SHA256, "CA");
    let bob = user(&ca, &PKCS_ECDSA_P256_SHA256, "bob@example.net");
    let dir = tempfile::tempdir().unwrap();
    let cert = write(dir.path(), "u.pem", bob.cert_pem.as_bytes());
    let c = cert.to_str().unwrap();
    for args in [
        vec!["-encrypt", "-aes-256-cbc", "-recip", c],
        vec![
            "-encrypt",
            "-aes-128-cbc",
            "-recip",
            c,
            "-keyopt",
            "ecdh_kdf_md:sha256",
        ],
        vec![
            "-encrypt",
            "-aes-256-gcm",
            "-recip",
            c,
            "-keyopt",
            "ecdh_kdf_md:sha256",
        ],
        vec!["-encrypt", "-aes-256-cbc", "-stream", "-recip", c],
        // AES-192 content: OpenSSL wraps its key with AES-192 key wrap.
        vec!["-encrypt", "-aes-192-cbc", "-recip", c],
        vec![
            "-encrypt",
            "-aes-192-gcm",
            "-recip",
            c,
            "-keyopt",
            "ecdh_kdf_md:sha256",
        ],
    ] {
        let (ok, out, err) = openssl_cms(&args, ENTITY);
        assert!(ok, "{err}");
        let d = Decryptor::new(bob.key(), bob.certificate())
            .unwrap()
            .decrypt_message(&out)
            .unwrap();
        assert_eq!(d.content, ENTITY, "{args:?}");
    }
}

#[test]
fn mixed_rsa_and_ec_recipients() {
    let ca = ca(&PKCS_ECDSA_P256_SHA256, "CA");
    let ec = user(&ca, &PKCS_ECDSA_P256_SHA256, "ec@example.net");
    let rsa = user(&ca, &PKCS_RSA_SHA256, "rsa@example.net");
    let enc = Encryptor::new(ContentEncryption::Aes256Gcm)
        .with_recipient(ec.certificate(), KeyManagement::EcdhP256Sha256Kdf)
        .unwrap()
        .with_recipient(rsa.certificate(), KeyManagement::RsaOaepSha256)
        .unwrap()
        .encrypt_message(MESSAGE)
        .unwrap();
    for u in [&ec, &rsa] {
        openssl_decrypts(u, &enc);
        Decryptor::new(u.key(), u.certificate())
            .unwrap()
            .decrypt_message(&enc)
            .unwrap();
    }
}

#[test]
fn ecdh_for_an_rsa_certificate_is_refused() {
    let ca = ca(&PKCS_RSA_SHA256, "CA");
    let rsa = user(&ca, &PKCS_RSA_SHA256, "rsa@example.net");
    let err = Encryptor::new(ContentEncryption::Aes256Cbc)
        .with_recipient(rsa.certificate(), KeyManagement::EcdhP256Sha256Kdf)
        .unwrap_err();
    assert!(matches!(err, Error::Certificate(_)));
}

#[test]
fn tampered_wrapped_key_fails_to_decrypt() {
    let ca = ca(&PKCS_ECDSA_P256_SHA256, "CA");
    let bob = user(&ca, &PKCS_ECDSA_P256_SHA256, "bob@example.net");
    let mut der = Encryptor::new(ContentEncryption::Aes128Cbc)
        .with_recipient(bob.certificate(), KeyManagement::EcdhP256Sha256Kdf)
        .unwrap()
        .encrypt_content(ENTITY)
        .unwrap();
    // The wrapped 16-byte key is a 24-byte OCTET STRING.
    let pos = der.windows(2).position(|w| w == [0x04, 24]).unwrap() + 5;
    der[pos] ^= 1;
    let d = Decryptor::new(bob.key(), bob.certificate()).unwrap();
    assert!(matches!(d.decrypt_cms(&der), Err(Error::DecryptionFailed)));
}

/// P-384 and P-521 recipients: we encrypt with the KDF hash matching the
/// curve (and with OpenSSL's SHA-1 default too, for P-256 only: the
/// method names its curve), OpenSSL decrypts; OpenSSL encrypts with its
/// default SHA-1 KDF and with SHA-256/384/512, we decrypt, one-shot and
/// streaming.
#[test]
fn p384_and_p521_recipients_both_directions() {
    for (alg, method, name) in [
        (
            &PKCS_ECDSA_P384_SHA384,
            KeyManagement::EcdhP384Sha384Kdf,
            "P-384",
        ),
        (
            &PKCS_ECDSA_P521_SHA512,
            KeyManagement::EcdhP521Sha512Kdf,
            "P-521",
        ),
    ] {
        let ca = ca(alg, "CA");
        let bob = user(&ca, alg, "bob@example.net");
        assert_eq!(
            KeyManagement::for_certificate(&bob.certificate()).unwrap(),
            method
        );
        let decryptor = Decryptor::new(bob.key(), bob.certificate()).unwrap();
        for cipher in [
            ContentEncryption::Aes128Cbc,
            ContentEncryption::Aes256Cbc,
            ContentEncryption::Aes256Gcm,
        ] {
            let enc = Encryptor::new(cipher)
                .with_recipient(bob.certificate(), method)
                .unwrap()
                .encrypt_message(MESSAGE)
                .unwrap();
            let out = openssl_decrypts(&bob, &enc);
            assert!(
                String::from_utf8_lossy(&out).contains("this is signed."),
                "{name} {cipher:?}"
            );
            let ours = decryptor.decrypt_message(&enc).unwrap();
            assert!(ours.message().starts_with(b"From: Alice"), "{name}");
            // The KDF OpenSSL reads back is the one matching the curve.
            let (ok, printed, err) = openssl_cms(&["-cmsout", "-print"], &enc);
            assert!(ok, "{err}");
            let scheme = if name == "P-384" {
                "sha384kdf"
            } else {
                "sha512kdf"
            };
            assert!(
                String::from_utf8_lossy(&printed).contains(scheme),
                "{name}: {scheme} missing"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let cert = write(dir.path(), "u.pem", bob.cert_pem.as_bytes());
        let c = cert.to_str().unwrap();
        for extra in [
            vec!["-aes-256-cbc"],
            vec!["-aes-128-cbc", "-keyopt", "ecdh_kdf_md:sha256"],
            vec!["-aes-256-gcm", "-keyopt", "ecdh_kdf_md:sha384"],
            vec!["-aes-256-cbc", "-stream", "-keyopt", "ecdh_kdf_md:sha512"],
            vec!["-aes-192-cbc", "-keyopt", "ecdh_kdf_md:sha384"],
        ] {
            let mut args = vec!["-encrypt", "-recip", c];
            args.extend_from_slice(&extra);
            let (ok, out, err) = openssl_cms(&args, ENTITY);
            assert!(ok, "{name} {extra:?}: {err}");
            let d = decryptor.decrypt_message(&out).unwrap();
            assert_eq!(d.content, ENTITY, "{name} {extra:?}");
            let mut streamed = Vec::new();
            decryptor
                .decrypt_stream(out.as_slice(), &mut streamed)
                .unwrap();
            assert!(streamed.ends_with(b"for an EC key\r\n"), "{name} {extra:?}");
        }
        // The same key signs too (ECDSA with the curve's digest), and
        // OpenSSL verifies it.
        let signed = mailtls_smime::Signer::new(bob.key(), vec![bob.certificate()])
            .unwrap()
            .with_form(SignatureForm::Opaque)
            .sign_message(MESSAGE)
            .unwrap();
        let ca_path = write(dir.path(), "ca.pem", ca.pem.as_bytes());
        let (ok, _, err) = openssl_cms(&["-verify", "-CAfile", ca_path.to_str().unwrap()], &signed);
        assert!(ok, "{name} signature: {err}");
    }
}

#[test]
fn a_method_for_another_curve_is_refused() {
    let ca = ca(&PKCS_ECDSA_P384_SHA384, "CA");
    let bob = user(&ca, &PKCS_ECDSA_P384_SHA384, "bob@example.net");
    for method in [
        KeyManagement::EcdhP256Sha256Kdf,
        KeyManagement::EcdhP521Sha512Kdf,
    ] {
        let err = Encryptor::new(ContentEncryption::Aes256Cbc)
            .with_recipient(bob.certificate(), method)
            .unwrap_err();
        assert!(matches!(err, Error::Certificate(_)), "{method:?}: {err}");
    }
}
