//! Broken base64 transport encoding is reported as such ([`Error::Base64`],
//! naming the body and where), not as a BER/CMS error, by every entry point
//! (one-shot and streaming); OpenSSL refuses the same input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use mailtls_smime::{
    Certificate, ContentEncryption, Decryptor, Encryptor, Error, KeyManagement, SignatureForm,
    Signer, Verifier,
};
use rcgen::PKCS_RSA_SHA256;
use support::*;

/// Replaces the tenth character of the last full base64 line of the
/// message with `bad`.
fn corrupt(message: &[u8], bad: u8) -> Vec<u8> {
    let text = String::from_utf8(message.to_vec()).unwrap();
    // The longest line made of base64 characters only is a body line.
    let (start, _) = text
        .match_indices("\r\n")
        .zip(text.match_indices("\r\n").skip(1))
        .map(|((a, _), (b, _))| (a + 2, b))
        .filter(|(a, b)| {
            b - a >= 40
                && text[*a..*b]
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/')
        })
        .last()
        .expect("a base64 body line");
    let mut out = message.to_vec();
    out[start + 9] = bad;
    out
}

fn assert_base64_error(what: &str, result: Result<impl std::fmt::Debug, Error>) {
    match result {
        Err(Error::Base64 { part, detail }) => {
            assert!(!detail.is_empty(), "{what}: {part}");
        }
        other => panic!("{what}: expected a base64 error, got {other:?}"),
    }
}

#[test]
fn invalid_base64_is_a_transfer_encoding_error_everywhere() {
    let ca = ca(&PKCS_RSA_SHA256, "CA");
    let alice = user(&ca, &PKCS_RSA_SHA256, "alice@example.org");
    let verifier = Verifier::new(vec![Certificate::from_der(&ca.der).unwrap()]);
    let decryptor = Decryptor::new(alice.key(), alice.certificate()).unwrap();
    let signer = || Signer::new(alice.key(), vec![alice.certificate()]).unwrap();
    let detached = signer().sign_message(MESSAGE).unwrap();
    let opaque = signer()
        .with_form(SignatureForm::Opaque)
        .sign_message(MESSAGE)
        .unwrap();
    let encrypted = Encryptor::new(ContentEncryption::Aes256Cbc)
        .with_recipient(alice.certificate(), KeyManagement::RsaPkcs1v15)
        .unwrap()
        .encrypt_message(MESSAGE)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_path = write(dir.path(), "ca.pem", ca.pem.as_bytes());
    let cert_path = write(dir.path(), "a.pem", alice.cert_pem.as_bytes());
    let key_path = write(dir.path(), "a.key", alice.key_pem.as_bytes());
    for bad in [b'*', b'!', 0xc3] {
        for (name, good) in [("detached", &detached), ("opaque", &opaque)] {
            let broken = corrupt(good, bad);
            let what = format!("{name} {bad:#x}");
            assert_base64_error(&what, verifier.verify_message(&broken));
            assert_base64_error(&what, verifier.verify_stream(broken.as_slice()));
            assert_base64_error(&what, mailtls_smime::open(&broken, &verifier, &[]));
            let (ok, _, _) =
                openssl_cms(&["-verify", "-CAfile", ca_path.to_str().unwrap()], &broken);
            assert!(!ok, "{what}: OpenSSL accepted it");
        }
        let broken = corrupt(&encrypted, bad);
        assert_base64_error("enveloped", decryptor.decrypt_message(&broken));
        assert_base64_error(
            "enveloped (stream)",
            decryptor.decrypt_stream(broken.as_slice(), Vec::new()),
        );
        let (ok, _, _) = openssl_cms(
            &[
                "-decrypt",
                "-recip",
                cert_path.to_str().unwrap(),
                "-inkey",
                key_path.to_str().unwrap(),
            ],
            &broken,
        );
        assert!(!ok, "OpenSSL decrypted a broken body");
    }
    // The error says which character and where.
    let err = verifier
        .verify_message(&corrupt(&opaque, b'*'))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("invalid base64 in the application/pkcs7-mime body")
            && err.contains("'*'")
            && err.contains("line"),
        "{err}"
    );
    // The intact messages still open (the strict decoder reads what we and
    // OpenSSL write).
    assert!(
        verifier
            .verify_message(&detached)
            .unwrap()
            .report
            .is_valid()
    );
    assert!(verifier.verify_message(&opaque).unwrap().report.is_valid());
    decryptor.decrypt_message(&encrypted).unwrap();
}

#[test]
fn a_truncated_base64_body_is_a_transfer_encoding_error() {
    let ca = ca(&PKCS_RSA_SHA256, "CA");
    let alice = user(&ca, &PKCS_RSA_SHA256, "alice@example.org");
    let verifier = Verifier::new(vec![Certificate::from_der(&ca.der).unwrap()]);
    let opaque = Signer::new(alice.key(), vec![alice.certificate()])
        .unwrap()
        .with_form(SignatureForm::Opaque)
        .sign_message(MESSAGE)
        .unwrap();
    // Cut the body one character short of a group of four (and drop the
    // padding): 4n+1 characters cannot be base64.
    let text = String::from_utf8(opaque).unwrap();
    let body_start = text.find("\r\n\r\n").unwrap() + 4;
    let body: String = text[body_start..]
        .chars()
        .filter(|c| !c.is_ascii_whitespace() && *c != '=')
        .collect();
    let keep = (body.len() / 4 - 1) * 4 + 1;
    let mut broken = text[..body_start].to_owned();
    broken.push_str(&body[..keep]);
    broken.push_str("\r\n");
    assert_base64_error("truncated", verifier.verify_message(broken.as_bytes()));
    assert_base64_error(
        "truncated (stream)",
        verifier.verify_stream(broken.as_bytes()),
    );
}
