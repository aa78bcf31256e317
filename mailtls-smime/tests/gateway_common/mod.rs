//! Test certificates for the gateway tests, made at test time with rcgen: a
//! test CA and S/MIME end-entity certificates with chosen addresses, usages,
//! key types and validity. Also compiled into the crate's unit tests.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs
)]

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SignatureAlgorithm,
};
use time::{Duration, OffsetDateTime};

/// A test CA.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pub pem: String,
}

/// What to put in an S/MIME certificate.
pub struct Spec {
    pub common_name: String,
    pub emails: Vec<String>,
    /// Legacy emailAddress attribute in the subject.
    pub subject_email: Option<String>,
    /// `None`: no EKU extension.
    pub eku: Option<Vec<ExtendedKeyUsagePurpose>>,
    /// `None`: no keyUsage extension.
    pub key_usage: Option<Vec<KeyUsagePurpose>>,
    pub alg: &'static SignatureAlgorithm,
    /// Days from now.
    pub not_before_days: i64,
    pub not_after_days: i64,
    pub is_ca: bool,
}

impl Spec {
    /// A valid ECDSA P-256 S/MIME certificate for `emails` (emailProtection,
    /// digitalSignature + keyAgreement).
    pub fn email(emails: &[&str]) -> Self {
        Spec {
            common_name: emails.first().copied().unwrap_or("test").to_owned(),
            emails: emails.iter().map(|s| (*s).to_owned()).collect(),
            subject_email: None,
            eku: Some(vec![ExtendedKeyUsagePurpose::EmailProtection]),
            key_usage: Some(vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyAgreement,
            ]),
            alg: &rcgen::PKCS_ECDSA_P256_SHA256,
            not_before_days: -1,
            not_after_days: 365,
            is_ca: false,
        }
    }

    /// The same as an RSA-2048 certificate (digitalSignature + keyEncipherment).
    pub fn rsa(emails: &[&str]) -> Self {
        Spec {
            alg: &rcgen::PKCS_RSA_SHA256,
            key_usage: Some(vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ]),
            ..Spec::email(emails)
        }
    }
}

/// A certificate and its key.
pub struct Issued {
    pub der: Vec<u8>,
    pub pem: String,
    pub key_pem: String,
}

impl TestCa {
    pub fn new() -> Self {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "mailtls gateway test CA");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).unwrap();
        let pem = cert.pem();
        TestCa {
            issuer: Issuer::new(params, key),
            pem,
        }
    }

    pub fn issue(&self, spec: &Spec) -> Issued {
        let key = if std::ptr::eq(spec.alg, &rcgen::PKCS_RSA_SHA256) {
            rsa_key()
        } else {
            KeyPair::generate_for(spec.alg).unwrap()
        };
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, spec.common_name.as_str());
        if let Some(e) = &spec.subject_email {
            // emailAddress, 1.2.840.113549.1.9.1
            dn.push(
                DnType::CustomDnType(vec![1, 2, 840, 113549, 1, 9, 1]),
                rcgen::DnValue::Ia5String(e.as_str().try_into().unwrap()),
            );
        }
        params.distinguished_name = dn;
        params.subject_alt_names = spec
            .emails
            .iter()
            .map(|e| SanType::Rfc822Name(e.as_str().try_into().unwrap()))
            .collect();
        if let Some(eku) = &spec.eku {
            params.extended_key_usages = eku.clone();
        }
        if let Some(ku) = &spec.key_usage {
            params.key_usages = ku.clone();
        }
        if spec.is_ca {
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        }
        let now = OffsetDateTime::now_utc();
        params.not_before = now + Duration::days(spec.not_before_days);
        params.not_after = now + Duration::days(spec.not_after_days);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Issued {
            der: cert.der().to_vec(),
            pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// RSA key generation is slow in debug builds; one key per test process is
/// enough (each certificate still differs by serial number).
fn rsa_key() -> KeyPair {
    use std::sync::OnceLock;
    static PEM: OnceLock<String> = OnceLock::new();
    let pem = PEM.get_or_init(|| {
        KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)
            .unwrap()
            .serialize_pem()
    });
    KeyPair::from_pem(pem).unwrap()
}

/// Runs `openssl cms ARGS` in `dir`; returns stdout, panics with stderr
/// when OpenSSL fails.
pub fn openssl_cms(dir: &std::path::Path, args: &[&str]) -> Vec<u8> {
    let out = std::process::Command::new("openssl")
        .arg("cms")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command is installed");
    assert!(
        out.status.success(),
        "openssl cms {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}
