//! Opening nested S/MIME layers (sign-then-encrypt, triple wrap) and
//! nested multiparts, against `openssl cms`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use mailtls_smime::{
    Certificate, ContentEncryption, Decryptor, Encryptor, KeyManagement, OpenedLayer,
    SignatureForm, Signer, Verifier, open,
};
use rcgen::PKCS_RSA_SHA256;
use support::*;

fn verifier(ca: &Ca) -> Verifier {
    Verifier::new(vec![Certificate::from_der(&ca.der).unwrap()])
}

#[test]
fn our_triple_wrap_opens_here_and_in_openssl() {
    let ca = ca(&PKCS_RSA_SHA256, "CA");
    let alice = user(&ca, &PKCS_RSA_SHA256, "alice@example.org");
    let bob = user(&ca, &PKCS_RSA_SHA256, "bob@example.net");
    let signer = Signer::new(alice.key(), vec![alice.certificate()]).unwrap();
    let inner = signer.sign_message(MESSAGE).unwrap();
    let enc = Encryptor::new(ContentEncryption::Aes128Cbc)
        .with_recipient(bob.certificate(), KeyManagement::RsaPkcs1v15)
        .unwrap()
        .encrypt_message(&inner)
        .unwrap();
    let outer = signer
        .with_form(SignatureForm::Opaque)
        .sign_message(&enc)
        .unwrap();

    let bob_d = Decryptor::new(bob.key(), bob.certificate()).unwrap();
    let opened = open(&outer, &verifier(&ca), &[bob_d]).unwrap();
    assert_eq!(opened.layers.len(), 3);
    assert!(matches!(opened.layers[1], OpenedLayer::Encrypted(_)));
    assert!(opened.is_signed_and_valid());
    assert!(opened.was_encrypted());
    assert!(String::from_utf8_lossy(&opened.message).contains("this is signed."));

    // OpenSSL peels the same three layers.
    let dir = tempfile::tempdir().unwrap();
    let ca_p = write(dir.path(), "ca.pem", ca.pem.as_bytes());
    let cert = write(dir.path(), "b.pem", bob.cert_pem.as_bytes());
    let key = write(dir.path(), "b.key", bob.key_pem.as_bytes());
    let (ok, l1, err) = openssl_cms(&["-verify", "-CAfile", ca_p.to_str().unwrap()], &outer);
    assert!(ok, "{err}");
    let (ok, l2, err) = openssl_cms(
        &[
            "-decrypt",
            "-recip",
            cert.to_str().unwrap(),
            "-inkey",
            key.to_str().unwrap(),
        ],
        &l1,
    );
    assert!(ok, "{err}");
    let (ok, l3, err) = openssl_cms(&["-verify", "-CAfile", ca_p.to_str().unwrap()], &l2);
    assert!(ok, "{err}");
    assert!(String::from_utf8_lossy(&l3).contains("this is signed."));
}

#[test]
fn openssl_sign_then_encrypt_opens() {
    let ca = ca(&PKCS_RSA_SHA256, "CA");
    let alice = user(&ca, &PKCS_RSA_SHA256, "alice@example.org");
    let bob = user(&ca, &PKCS_RSA_SHA256, "bob@example.net");
    let dir = tempfile::tempdir().unwrap();
    let ac = write(dir.path(), "a.pem", alice.cert_pem.as_bytes());
    let ak = write(dir.path(), "a.key", alice.key_pem.as_bytes());
    let bc = write(dir.path(), "b.pem", bob.cert_pem.as_bytes());
    let body = b"Content-Type: text/plain\r\n\r\ninner\r\n";
    let (ok, signed, err) = openssl_cms(
        &[
            "-sign",
            "-signer",
            ac.to_str().unwrap(),
            "-inkey",
            ak.to_str().unwrap(),
        ],
        body,
    );
    assert!(ok, "{err}");
    let (ok, enc, err) = openssl_cms(
        &[
            "-encrypt",
            "-aes-256-gcm",
            "-recip",
            bc.to_str().unwrap(),
            "-from",
            "alice@example.org",
        ],
        &signed,
    );
    assert!(ok, "{err}");
    let bob_d = Decryptor::new(bob.key(), bob.certificate()).unwrap();
    let opened = open(&enc, &verifier(&ca), &[bob_d]).unwrap();
    assert_eq!(opened.layers.len(), 2);
    assert!(opened.is_signed_and_valid(), "{:?}", opened.layers);
    assert!(opened.message.ends_with(b"inner\r\n"));
}

#[test]
fn plain_message_has_no_layers() {
    let ca = ca(&PKCS_RSA_SHA256, "CA");
    let opened = open(MESSAGE, &verifier(&ca), &[]).unwrap();
    assert!(opened.layers.is_empty());
    assert_eq!(opened.message, MESSAGE);
}

#[test]
fn nested_multipart_signs_and_verifies_in_openssl() {
    let ca = ca(&PKCS_RSA_SHA256, "CA");
    let alice = user(&ca, &PKCS_RSA_SHA256, "alice@example.org");
    let msg = b"From: alice@example.org\nTo: bob@example.net\nContent-Type: multipart/mixed; boundary=outer\n\n--outer\nContent-Type: multipart/alternative; boundary=inner\n\n--inner\nContent-Type: text/plain\n\nplain\n--inner\nContent-Type: text/html\n\n<p>html</p>\n--inner--\n\n--outer\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\nAAECAw==\n--outer--\n";
    let signed = Signer::new(alice.key(), vec![alice.certificate()])
        .unwrap()
        .sign_message(msg)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_p = write(dir.path(), "ca.pem", ca.pem.as_bytes());
    let (ok, out, err) = openssl_cms(&["-verify", "-CAfile", ca_p.to_str().unwrap()], &signed);
    assert!(ok, "{err}");
    assert!(String::from_utf8_lossy(&out).contains("<p>html</p>\r\n"));
    let v = verifier(&ca).verify_message(&signed).unwrap();
    assert!(v.report.is_valid(), "{:?}", v.report);
}

#[test]
fn eight_bit_multipart_is_refused_with_a_reason() {
    let ca = ca(&PKCS_RSA_SHA256, "CA");
    let alice = user(&ca, &PKCS_RSA_SHA256, "alice@example.org");
    let msg = "From: alice@example.org\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain; charset=utf-8\n\nÄ\n--b--\n";
    let err = Signer::new(alice.key(), vec![alice.certificate()])
        .unwrap()
        .sign_message(msg.as_bytes())
        .unwrap_err();
    assert!(matches!(err, mailtls_smime::Error::Mime(_)));
}
