//! With the `mailtls-core` feature the engine takes mailtls-core's
//! `CertificateWithKey`, as loaded from a PEM pair (here a PKCS #1 RSA key
//! and a SEC1 EC key, the forms OpenSSL's `-traditional` writes).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use mailtls_core::CertificateWithKey;
use mailtls_smime::{
    Certificate, ContentEncryption, Decryptor, Encryptor, KeyManagement, Signer, Verifier,
};
use support::{ca, traditional_pem, user};

const MESSAGE: &[u8] =
    b"From: alice@example.org\r\nTo: bob@example.net\r\nSubject: core\r\n\r\nHello core\r\n";

#[test]
fn certificate_with_key_signs_and_decrypts() {
    let ca = ca(&rcgen::PKCS_ECDSA_P256_SHA256, "core CA");
    for (alg, km, marker) in [
        (
            &rcgen::PKCS_RSA_SHA256,
            KeyManagement::RsaPkcs1v15,
            "RSA PRIVATE KEY",
        ),
        (
            &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyManagement::EcdhP256Sha256Kdf,
            "EC PRIVATE KEY",
        ),
    ] {
        let alice = user(&ca, alg, "alice@example.org");
        let key_pem = traditional_pem(&alice);
        assert!(String::from_utf8_lossy(&key_pem).contains(marker));
        let chain_pem = format!("{}{}", alice.cert_pem, ca.pem);
        let creds = CertificateWithKey::from_pem(chain_pem.as_bytes(), &key_pem, "alice").unwrap();

        let signed = Signer::try_from(&creds)
            .unwrap()
            .sign_message(MESSAGE)
            .unwrap();
        let verifier = Verifier::new(vec![Certificate::from_der(&ca.der).unwrap()]);
        let verified = verifier.verify_message(&signed).unwrap();
        assert!(verified.report.is_valid(), "{:?}", verified.report);

        let encrypted = Encryptor::new(ContentEncryption::Aes128Gcm)
            .with_recipient(Certificate::try_from(&creds.chain[0]).unwrap(), km)
            .unwrap()
            .encrypt_message(MESSAGE)
            .unwrap();
        let decrypted = Decryptor::try_from(creds)
            .unwrap()
            .decrypt_message(&encrypted)
            .unwrap();
        assert!(decrypted.content.ends_with(b"Hello core\r\n"));
    }
}
