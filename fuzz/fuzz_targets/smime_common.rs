//! Shared by the smime_* targets: a fixed P-256 key and certificate, made
//! once per process from a constant scalar so a crash input reproduces with
//! the same key (no key file is committed).

use std::sync::OnceLock;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
use mailtls_smime::{Certificate, Decryptor, PrivateKey, Verifier};
use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType,
    SerialNumber,
};

/// The fixed key's scalar: any value below the P-256 order works.
const SCALAR: [u8; 32] = [
    0x1f, 0x2e, 0x3d, 0x4c, 0x5b, 0x6a, 0x79, 0x88, 0x97, 0xa6, 0xb5, 0xc4, 0xd3, 0xe2, 0xf1, 0x00,
    0x0f, 0x1e, 0x2d, 0x3c, 0x4b, 0x5a, 0x69, 0x78, 0x87, 0x96, 0xa5, 0xb4, 0xc3, 0xd2, 0xe1, 0xf0,
];

// Each target uses the part of the fixture it needs.
#[allow(dead_code)]
pub struct Fixture {
    pub decryptor: Decryptor,
    pub verifier: Verifier,
}

pub fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        // RFC 5915 ECPrivateKey { version 1, privateKey, [0] prime256v1 };
        // aws-lc computes the public key.
        let mut sec1 = vec![0x30, 0x31, 0x02, 0x01, 0x01, 0x04, 0x20];
        sec1.extend_from_slice(&SCALAR);
        sec1.extend_from_slice(&[
            0xa0, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
        ]);
        let pkcs8 = EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_ASN1_SIGNING, &sec1)
            .expect("fixed P-256 scalar")
            .to_pkcs8v1()
            .expect("fixed P-256 scalar");
        let key = KeyPair::try_from(pkcs8.as_ref()).expect("rcgen reads the PKCS #8 key");
        // One self-signed CA certificate that is also the recipient and
        // trust anchor: fixed serial, so issuer+serial lookups are stable.
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.serial_number = Some(SerialNumber::from_slice(&[1, 2, 3, 4]));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.subject_alt_names = vec![SanType::Rfc822Name(
            "fuzz@example.org".try_into().expect("address"),
        )];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::EmailProtection];
        let cert = params.self_signed(&key).expect("self-signed");
        let cert = Certificate::from_der(cert.der()).expect("certificate");
        let decryptor = Decryptor::new(
            PrivateKey::from_pkcs8_der(pkcs8.as_ref()).expect("key"),
            cert.clone(),
        )
        .expect("decryptor");
        Fixture {
            decryptor,
            verifier: Verifier::new(vec![cert]),
        }
    })
}
