//! Hostile input at every entry point: errors or reports, never panics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::OnceLock;

use mailtls_smime::{
    Certificate, ContentEncryption, Decryptor, Encryptor, KeyManagement, SignatureForm, Signer,
    Verifier, open,
};
use proptest::prelude::*;
use rcgen::PKCS_RSA_SHA256;
use support::*;

struct Fixture {
    verifier: Verifier,
    decryptor: Decryptor,
    signed_der: Vec<u8>,
    signed_mime: Vec<u8>,
    enveloped_der: Vec<u8>,
    streamed_envelope: Vec<u8>,
    streamed_gcm: Vec<u8>,
    streamed_opaque: Vec<u8>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let ca = ca(&PKCS_RSA_SHA256, "CA");
        let alice = user(&ca, &PKCS_RSA_SHA256, "alice@example.org");
        let signer = Signer::new(alice.key(), vec![alice.certificate()]).unwrap();
        let enc = Encryptor::new(ContentEncryption::Aes128Gcm)
            .with_recipient(alice.certificate(), KeyManagement::RsaPkcs1v15)
            .unwrap();
        let mut streamed_envelope = Vec::new();
        Encryptor::new(ContentEncryption::Aes128Cbc)
            .with_recipient(alice.certificate(), KeyManagement::RsaPkcs1v15)
            .unwrap()
            .encrypt_stream(MESSAGE, &mut streamed_envelope)
            .unwrap();
        let mut streamed_gcm = Vec::new();
        Encryptor::new(ContentEncryption::Aes256Gcm)
            .with_recipient(alice.certificate(), KeyManagement::RsaPkcs1v15)
            .unwrap()
            .encrypt_stream(MESSAGE, &mut streamed_gcm)
            .unwrap();
        let mut streamed_opaque = Vec::new();
        Signer::new(alice.key(), vec![alice.certificate()])
            .unwrap()
            .with_form(SignatureForm::Opaque)
            .sign_stream(MESSAGE, &mut streamed_opaque)
            .unwrap();
        Fixture {
            verifier: Verifier::new(vec![Certificate::from_der(&ca.der).unwrap()]),
            decryptor: Decryptor::new(alice.key(), alice.certificate()).unwrap(),
            signed_der: signer
                .sign_content(b"Content-Type: text/plain\r\n\r\nx\r\n", false)
                .unwrap(),
            signed_mime: signer
                .with_form(SignatureForm::Detached)
                .sign_message(MESSAGE)
                .unwrap(),
            enveloped_der: enc
                .encrypt_content(b"Content-Type: text/plain\r\n\r\ny\r\n")
                .unwrap(),
            streamed_envelope,
            streamed_gcm,
            streamed_opaque,
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn random_bytes(data in proptest::collection::vec(any::<u8>(), 0..400)) {
        let f = fixture();
        let _ = f.verifier.verify_cms(&data, None, &[]);
        let _ = f.verifier.verify_message(&data);
        let _ = f.decryptor.decrypt_cms(&data);
        let _ = f.decryptor.decrypt_message(&data);
        let _ = open(&data, &f.verifier, &[]);
        let _ = f.verifier.verify_stream(data.as_slice());
        let _ = f.decryptor.decrypt_stream(data.as_slice(), Vec::new());
    }

    #[test]
    fn mutated_streamed_envelope(pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let f = fixture();
        let mut m = f.streamed_envelope.clone();
        let i = pos.index(m.len());
        m[i] = byte;
        let _ = f.decryptor.decrypt_stream(m.as_slice(), Vec::new());
        let mut with_body = b"Content-Type: application/pkcs7-mime\r\n\r\n".to_vec();
        with_body.extend_from_slice(&m);
        let _ = f.decryptor.decrypt_stream(with_body.as_slice(), Vec::new());
    }

    #[test]
    fn mutated_streamed_gcm(pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let f = fixture();
        let mut m = f.streamed_gcm.clone();
        let i = pos.index(m.len());
        m[i] = byte;
        let mut out = Vec::new();
        match f.decryptor.decrypt_stream(m.as_slice(), &mut out) {
            // GCM authenticates: what is released is the original content.
            Ok(_) => prop_assert!(out.ends_with(b"Hello Bob,\r\nthis is signed.\r\n")),
            // And on failure nothing was released.
            Err(_) => prop_assert!(out.is_empty()),
        }
    }

    #[test]
    fn mutated_streamed_opaque_signature(pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let f = fixture();
        let mut m = f.streamed_opaque.clone();
        let i = pos.index(m.len());
        m[i] = byte;
        let one_shot = f.verifier.verify_message(&m);
        let mut out = Vec::new();
        if let Ok(report) = f.verifier.verify_stream_to(m.as_slice(), &mut out) {
            // Streaming is never more lenient than the one-shot verifier
            // (it can be stricter: it hashes only with the digests that
            // digestAlgorithms announces, which no signature covers).
            if report.is_valid() {
                prop_assert!(one_shot.is_ok_and(|v| v.report.is_valid()));
            }
        }
    }

    #[test]
    fn mutated_signed_data(pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let f = fixture();
        let mut der = f.signed_der.clone();
        let i = pos.index(der.len());
        der[i] = byte;
        if let Ok(report) = f.verifier.verify_cms(&der, None, &["alice@example.org".into()]) {
            // A changed byte either is outside what the checks cover (e.g.
            // an unused certificate field) or makes some check fail.
            let _ = report.is_valid();
        }
    }

    #[test]
    fn mutated_enveloped_data(pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let f = fixture();
        let mut der = f.enveloped_der.clone();
        let i = pos.index(der.len());
        der[i] = byte;
        if let Ok(plain) = f.decryptor.decrypt_cms(&der) {
            // GCM authenticates: a successful decryption yields the original.
            prop_assert_eq!(&plain[..], &b"Content-Type: text/plain\r\n\r\ny\r\n"[..]);
        }
    }

    #[test]
    fn mutated_mime(pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let f = fixture();
        let mut m = f.signed_mime.clone();
        let i = pos.index(m.len());
        m[i] = byte;
        let _ = f.verifier.verify_message(&m);
        let _ = f.verifier.verify_stream(m.as_slice());
        let _ = open(&m, &f.verifier, &[]);
    }
}

#[test]
fn deep_ber_nesting_is_refused() {
    let f = fixture();
    let mut data = Vec::new();
    for _ in 0..10_000 {
        data.extend_from_slice(&[0x30, 0x80]);
    }
    assert!(f.verifier.verify_cms(&data, None, &[]).is_err());
}
