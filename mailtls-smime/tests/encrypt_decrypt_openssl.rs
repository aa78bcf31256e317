//! Encryption and decryption, both directions against `openssl cms`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use mailtls_smime::{
    Certificate, ContentCipher, ContentEncryption, Decryptor, Encryptor, Error, KeyManagement,
    SignatureForm, Signer, Verifier,
};
use rcgen::{PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256};
use support::*;

fn decryptor(u: &User) -> Decryptor {
    Decryptor::new(u.key(), u.certificate()).unwrap()
}

/// OpenSSL encrypts to `u` with extra options.
fn openssl_encrypts(u: &User, extra: &[&str], msg: &[u8]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let cert = write(dir.path(), "u.pem", u.cert_pem.as_bytes());
    let mut args = vec!["-encrypt"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["-recip", cert.to_str().unwrap()]);
    let (ok, out, err) = openssl_cms(&args, msg);
    assert!(ok, "openssl cms -encrypt {extra:?} failed: {err}");
    let mut full = b"From: alice@example.org\r\nTo: bob@example.net\r\n".to_vec();
    full.extend_from_slice(&out);
    full
}

const ENTITY: &[u8] = b"Content-Type: text/plain\r\n\r\nsecret text\r\n";

#[test]
fn every_cipher_and_transport_decrypts_in_openssl() {
    let ca = ca(&PKCS_RSA_SHA256, "CA");
    let bob = user(&ca, &PKCS_RSA_SHA256, "bob@example.net");
    for cipher in [
        ContentEncryption::Aes128Cbc,
        ContentEncryption::Aes192Cbc,
        ContentEncryption::Aes256Cbc,
        ContentEncryption::Aes128Gcm,
        ContentEncryption::Aes192Gcm,
        ContentEncryption::Aes256Gcm,
    ] {
        for transport in [
            KeyManagement::RsaPkcs1v15,
            KeyManagement::RsaOaepSha1,
            KeyManagement::RsaOaepSha256,
        ] {
            let enc = Encryptor::new(cipher)
                .with_recipient(bob.certificate(), transport)
                .unwrap()
                .encrypt_message(MESSAGE)
                .unwrap();
            let text = String::from_utf8(enc.clone()).unwrap();
            let want = if cipher.is_authenticated() {
                "smime-type=authEnveloped-data"
            } else {
                "smime-type=enveloped-data"
            };
            assert!(text.contains(want));
            let out = openssl_decrypts(&bob, &enc);
            assert!(
                String::from_utf8_lossy(&out).contains("Hello Bob,\r\nthis is signed."),
                "{cipher:?} {transport:?}"
            );
            let ours = decryptor(&bob).decrypt_message(&enc).unwrap();
            assert_eq!(ours.cipher, ContentCipher::Modern(cipher));
            assert!(ours.message().starts_with(b"From: Alice"));
        }
    }
}

#[test]
fn several_recipients_including_the_sender() {
    let ca = ca(&PKCS_RSA_SHA256, "CA");
    let alice = user(&ca, &PKCS_RSA_SHA256, "alice@example.org");
    let bob = user(&ca, &PKCS_RSA_SHA256, "bob@example.net");
    let enc = Encryptor::new(ContentEncryption::Aes256Cbc)
        .with_recipient(bob.certificate(), KeyManagement::RsaOaepSha256)
        .unwrap()
        .with_recipient(alice.certificate(), KeyManagement::RsaPkcs1v15)
        .unwrap()
        .encrypt_message(MESSAGE)
        .unwrap();
    for u in [&alice, &bob] {
        openssl_decrypts(u, &enc);
        decryptor(u).decrypt_message(&enc).unwrap();
    }
    let carol = user(&ca, &PKCS_RSA_SHA256, "carol@example.net");
    assert!(matches!(
        decryptor(&carol).decrypt_message(&enc),
        Err(Error::NoMatchingRecipient)
    ));
}

#[test]
fn openssl_encrypted_messages_decrypt() {
    let ca = ca(&PKCS_RSA_SHA256, "CA");
    let bob = user(&ca, &PKCS_RSA_SHA256, "bob@example.net");
    let cases: &[(&[&str], ContentCipher)] = &[
        (
            &["-aes-128-cbc"],
            ContentCipher::Modern(ContentEncryption::Aes128Cbc),
        ),
        (
            &["-aes-256-cbc"],
            ContentCipher::Modern(ContentEncryption::Aes256Cbc),
        ),
        (
            &["-aes-128-gcm"],
            ContentCipher::Modern(ContentEncryption::Aes128Gcm),
        ),
        (
            &["-aes-256-gcm"],
            ContentCipher::Modern(ContentEncryption::Aes256Gcm),
        ),
        (&["-des3"], ContentCipher::TripleDes),
        // AES-192 (issue 17): OpenSSL and gpgsm write it on request.
        (
            &["-aes-192-cbc"],
            ContentCipher::Modern(ContentEncryption::Aes192Cbc),
        ),
        (
            &["-aes-192-gcm"],
            ContentCipher::Modern(ContentEncryption::Aes192Gcm),
        ),
        (
            &["-aes-192-cbc", "-stream"],
            ContentCipher::Modern(ContentEncryption::Aes192Cbc),
        ),
        (
            &["-aes-192-gcm", "-stream"],
            ContentCipher::Modern(ContentEncryption::Aes192Gcm),
        ),
        (
            &["-aes-256-cbc", "-stream"],
            ContentCipher::Modern(ContentEncryption::Aes256Cbc),
        ),
        (
            &["-aes-256-gcm", "-stream"],
            ContentCipher::Modern(ContentEncryption::Aes256Gcm),
        ),
        (
            &["-aes-256-cbc", "-keyid"],
            ContentCipher::Modern(ContentEncryption::Aes256Cbc),
        ),
    ];
    for (args, cipher) in cases {
        let enc = openssl_encrypts(&bob, args, ENTITY);
        let d = decryptor(&bob).decrypt_message(&enc).unwrap();
        assert_eq!(d.content, ENTITY, "{args:?}");
        assert_eq!(d.cipher, *cipher);
        // The streaming reader takes the same input.
        let mut streamed = Vec::new();
        let streamed_cipher = decryptor(&bob)
            .decrypt_stream(enc.as_slice(), &mut streamed)
            .unwrap();
        assert_eq!(streamed_cipher, *cipher, "{args:?}");
        assert!(
            streamed.ends_with(b"secret text\r\n"),
            "{args:?}: {}",
            String::from_utf8_lossy(&streamed)
        );
    }
}

#[test]
fn openssl_oaep_sha1_and_sha256_decrypt() {
    let ca = ca(&PKCS_RSA_SHA256, "CA");
    let bob = user(&ca, &PKCS_RSA_SHA256, "bob@example.net");
    let dir = tempfile::tempdir().unwrap();
    let cert = write(dir.path(), "u.pem", bob.cert_pem.as_bytes());
    let c = cert.to_str().unwrap();
    for extra in [
        vec!["-recip", c, "-keyopt", "rsa_padding_mode:oaep"],
        vec![
            "-recip",
            c,
            "-keyopt",
            "rsa_padding_mode:oaep",
            "-keyopt",
            "rsa_oaep_md:sha256",
            "-keyopt",
            "rsa_mgf1_md:sha256",
        ],
    ] {
        let mut args = vec!["-encrypt", "-aes-256-cbc"];
        args.extend_from_slice(&extra);
        let (ok, out, err) = openssl_cms(&args, ENTITY);
        assert!(ok, "{err}");
        let d = decryptor(&bob).decrypt_message(&out).unwrap();
        assert_eq!(d.content, ENTITY);
    }
}

#[test]
fn tampered_ciphertext_and_wrong_key_fail_alike() {
    let ca = ca(&PKCS_RSA_SHA256, "CA");
    let bob = user(&ca, &PKCS_RSA_SHA256, "bob@example.net");
    for cipher in [ContentEncryption::Aes256Cbc, ContentEncryption::Aes256Gcm] {
        let enc = Encryptor::new(cipher)
            .with_recipient(bob.certificate(), KeyManagement::RsaPkcs1v15)
            .unwrap();
        let mut der = enc.encrypt_content(ENTITY).unwrap();
        // Flip a bit of the RSA-encrypted key: PKCS #1 padding then fails,
        // a random key is used, and the content fails to decrypt: the same
        // error as a corrupted ciphertext.
        let rsa_pos = der
            .windows(3)
            .position(|w| w == [0x04, 0x82, 0x01])
            .unwrap()
            + 10;
        der[rsa_pos] ^= 1;
        assert!(matches!(
            decryptor(&bob).decrypt_cms(&der),
            Err(Error::DecryptionFailed)
        ));
        let mut der = enc.encrypt_content(ENTITY).unwrap();
        let last = der.len() - 20;
        der[last] ^= 1;
        assert!(matches!(
            decryptor(&bob).decrypt_cms(&der),
            Err(Error::DecryptionFailed)
        ));
    }
}

#[test]
fn truncated_and_garbage_are_errors() {
    let ca = ca(&PKCS_RSA_SHA256, "CA");
    let bob = user(&ca, &PKCS_RSA_SHA256, "bob@example.net");
    let der = Encryptor::new(ContentEncryption::Aes128Gcm)
        .with_recipient(bob.certificate(), KeyManagement::RsaPkcs1v15)
        .unwrap()
        .encrypt_content(ENTITY)
        .unwrap();
    let d = decryptor(&bob);
    for cut in [0, 1, 5, der.len() / 2, der.len() - 1] {
        assert!(d.decrypt_cms(&der[..cut]).is_err());
    }
    assert!(d.decrypt_cms(b"garbage").is_err());
}

#[test]
fn ecdsa_recipient_is_refused_with_a_reason() {
    let ca = ca(&PKCS_ECDSA_P256_SHA256, "CA");
    let bob = user(&ca, &PKCS_ECDSA_P256_SHA256, "bob@example.net");
    let err = Encryptor::new(ContentEncryption::Aes256Cbc)
        .with_recipient(bob.certificate(), KeyManagement::RsaPkcs1v15)
        .unwrap_err();
    assert!(matches!(err, Error::Certificate(_)));
}

#[test]
fn sign_then_encrypt_round_trips_with_openssl() {
    let ca = ca(&PKCS_RSA_SHA256, "CA");
    let alice = user(&ca, &PKCS_RSA_SHA256, "alice@example.org");
    let bob = user(&ca, &PKCS_RSA_SHA256, "bob@example.net");
    let signed = Signer::new(alice.key(), vec![alice.certificate()])
        .unwrap()
        .with_form(SignatureForm::Detached)
        .sign_message(MESSAGE)
        .unwrap();
    let enc = Encryptor::new(ContentEncryption::Aes256Gcm)
        .with_recipient(bob.certificate(), KeyManagement::RsaOaepSha256)
        .unwrap()
        .encrypt_message(&signed)
        .unwrap();
    let inner = decryptor(&bob).decrypt_message(&enc).unwrap().message();
    let v = Verifier::new(vec![Certificate::from_der(&ca.der).unwrap()])
        .verify_message(&inner)
        .unwrap();
    assert!(v.report.is_valid(), "{:?}", v.report);
}
