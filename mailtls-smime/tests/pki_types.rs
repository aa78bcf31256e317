//! The engine takes certificates and keys in the forms rustls holds them:
//! `CertificateDer` and `PrivateKeyDer` (PKCS #8, PKCS #1, SEC1). Keys in
//! the traditional encodings are written by `openssl pkey -traditional`
//! from keys made here. (mailtls-core's `CertificateWithKey`:
//! tests/pki_types_core.rs.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use mailtls_smime::{
    Certificate, ContentEncryption, Decryptor, Encryptor, Error, KeyManagement, PrivateKey, Signer,
    Verifier,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use support::{User, ca, openssl_cms, user, write};

const MESSAGE: &[u8] =
    b"From: alice@example.org\r\nTo: bob@example.net\r\nSubject: pki\r\n\r\nHello there\r\n";

/// The key of `u` re-encoded by OpenSSL in its traditional form.
fn traditional(u: &User) -> PrivateKeyDer<'static> {
    PrivateKeyDer::from_pem_slice(&support::traditional_pem(u)).unwrap()
}

fn chain(u: &User, ca_der: &[u8]) -> Vec<CertificateDer<'static>> {
    vec![
        CertificateDer::from(u.cert_der.clone()),
        CertificateDer::from(ca_der.to_vec()),
    ]
}

/// Signs with a chain and key as rustls holds them, verifies here and with
/// OpenSSL, and decrypts with a `Decryptor` made from the same parts.
fn round_trip(
    chain: &[CertificateDer<'static>],
    key: &PrivateKeyDer<'static>,
    ca_der: &[u8],
    ca_pem: &str,
    km: KeyManagement,
    dir: &std::path::Path,
) {
    let signer = Signer::from_der(chain, key).unwrap();
    // One signer: the chain's CA certificate is carried along, not a signer.
    assert_eq!(signer.certificates().len(), 1);
    let signed = signer.sign_message(MESSAGE).unwrap();
    let anchor = Certificate::try_from(CertificateDer::from(ca_der.to_vec())).unwrap();
    let verified = Verifier::new(vec![anchor]).verify_message(&signed).unwrap();
    assert!(verified.report.is_valid(), "{:?}", verified.report);
    write(dir, "ca.pem", ca_pem.as_bytes());
    let ca_path = dir.join("ca.pem");
    let (ok, content, err) =
        openssl_cms(&["-verify", "-CAfile", ca_path.to_str().unwrap()], &signed);
    assert!(ok, "{err}");
    assert!(String::from_utf8_lossy(&content).contains("Hello there"));

    let leaf = Certificate::try_from(&chain[0]).unwrap();
    let encrypted = Encryptor::new(ContentEncryption::Aes256Cbc)
        .with_recipient(leaf, km)
        .unwrap()
        .encrypt_message(MESSAGE)
        .unwrap();
    let decrypted = Decryptor::from_der(&chain[0], key)
        .unwrap()
        .decrypt_message(&encrypted)
        .unwrap();
    assert!(decrypted.content.ends_with(b"Hello there\r\n"));
}

#[test]
fn rsa_pkcs1_and_pkcs8_keys_sign_and_decrypt() {
    let ca = ca(&rcgen::PKCS_ECDSA_P256_SHA256, "PKI types CA");
    let alice = user(&ca, &rcgen::PKCS_RSA_SHA256, "alice@example.org");
    let dir = tempfile::tempdir().unwrap();
    let pkcs1 = traditional(&alice);
    assert!(matches!(pkcs1, PrivateKeyDer::Pkcs1(_)), "{pkcs1:?}");
    let pkcs8 = PrivateKeyDer::from_pem_slice(alice.key_pem.as_bytes()).unwrap();
    assert!(matches!(pkcs8, PrivateKeyDer::Pkcs8(_)));
    for key in [pkcs1, pkcs8] {
        round_trip(
            &chain(&alice, &ca.der),
            &key,
            &ca.der,
            &ca.pem,
            KeyManagement::RsaPkcs1v15,
            dir.path(),
        );
    }
}

#[test]
fn p256_sec1_key_signs_and_decrypts() {
    let ca = ca(&rcgen::PKCS_ECDSA_P256_SHA256, "PKI types CA");
    let alice = user(&ca, &rcgen::PKCS_ECDSA_P256_SHA256, "alice@example.org");
    let dir = tempfile::tempdir().unwrap();
    let sec1 = traditional(&alice);
    assert!(matches!(sec1, PrivateKeyDer::Sec1(_)), "{sec1:?}");
    // The PEM loader takes the traditional form too.
    let pem = sec1_pem(&sec1);
    assert!(PrivateKey::from_pem(pem.as_bytes()).is_ok());
    round_trip(
        &chain(&alice, &ca.der),
        &sec1,
        &ca.der,
        &ca.pem,
        KeyManagement::EcdhP256Sha256Kdf,
        dir.path(),
    );
}

fn sec1_pem(key: &PrivateKeyDer<'_>) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(key.secret_der());
    format!("-----BEGIN EC PRIVATE KEY-----\n{b64}\n-----END EC PRIVATE KEY-----\n")
}

#[test]
fn certificate_der_converts_both_ways() {
    let ca = ca(&rcgen::PKCS_ECDSA_P256_SHA256, "PKI types CA");
    let alice = user(&ca, &rcgen::PKCS_ECDSA_P256_SHA256, "alice@example.org");
    let der = CertificateDer::from(alice.cert_der.clone());
    let cert = Certificate::try_from(&der).unwrap();
    assert_eq!(CertificateDer::from(&cert), der);
    assert_eq!(cert.email_addresses(), vec!["alice@example.org".to_owned()]);
    let chain = Certificate::from_chain(&[der, CertificateDer::from(ca.der.clone())]).unwrap();
    assert_eq!(chain.len(), 2);
    // Garbage is an error, not a panic.
    let garbage = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01]);
    assert!(matches!(
        Certificate::try_from(&garbage),
        Err(Error::Certificate(_))
    ));
}

#[test]
fn mismatched_or_missing_parts_are_refused() {
    let ca = ca(&rcgen::PKCS_ECDSA_P256_SHA256, "PKI types CA");
    let alice = user(&ca, &rcgen::PKCS_ECDSA_P256_SHA256, "alice@example.org");
    let bob = user(&ca, &rcgen::PKCS_RSA_SHA256, "bob@example.org");
    let alice_cert = CertificateDer::from(alice.cert_der.clone());
    let bob_key = PrivateKeyDer::from_pem_slice(bob.key_pem.as_bytes()).unwrap();
    assert!(matches!(
        Signer::from_der(std::slice::from_ref(&alice_cert), &bob_key),
        Err(Error::Key(_))
    ));
    assert!(matches!(
        Decryptor::from_der(&alice_cert, &bob_key),
        Err(Error::Key(_))
    ));
    assert!(matches!(
        Signer::from_der(&[], &bob_key),
        Err(Error::Certificate(_))
    ));
    // A PKCS #1 body that is not an RSA key.
    let bad = PrivateKeyDer::Pkcs1(vec![0x30, 0x03, 0x02, 0x01, 0x00].into());
    assert!(matches!(PrivateKey::try_from(&bad), Err(Error::Key(_))));
}
