//! Test PKI made at test time (rcgen) and an `openssl cms` runner.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SignatureAlgorithm,
};
use time::{Duration, OffsetDateTime};

pub use mailtls_smime::{Certificate, PrivateKey};

pub struct Ca {
    pub issuer: Issuer<'static, KeyPair>,
    pub der: Vec<u8>,
    pub pem: String,
}

pub struct User {
    pub cert_der: Vec<u8>,
    pub cert_pem: String,
    pub key_der: Vec<u8>,
    pub key_pem: String,
}

impl User {
    pub fn certificate(&self) -> Certificate {
        Certificate::from_der(&self.cert_der).unwrap()
    }
    pub fn key(&self) -> PrivateKey {
        PrivateKey::from_pkcs8_der(&self.key_der).unwrap()
    }
}

pub fn ca(alg: &'static SignatureAlgorithm, name: &str) -> Ca {
    let key = KeyPair::generate_for(alg).unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = params.self_signed(&key).unwrap();
    let der = cert.der().to_vec();
    let pem = cert.pem();
    Ca {
        issuer: Issuer::new(params, key),
        der,
        pem,
    }
}

pub struct UserSpec<'a> {
    pub email: &'a str,
    pub eku: Vec<ExtendedKeyUsagePurpose>,
    pub not_after: OffsetDateTime,
}

impl<'a> UserSpec<'a> {
    pub fn new(email: &'a str) -> Self {
        Self {
            email,
            eku: vec![ExtendedKeyUsagePurpose::EmailProtection],
            not_after: OffsetDateTime::now_utc() + Duration::days(30),
        }
    }
}

pub fn user_with(ca: &Ca, alg: &'static SignatureAlgorithm, spec: UserSpec<'_>) -> User {
    let key = KeyPair::generate_for(alg).unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, spec.email);
    params.subject_alt_names = vec![SanType::Rfc822Name(spec.email.try_into().unwrap())];
    params.extended_key_usages = spec.eku;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let ec = [
        &rcgen::PKCS_ECDSA_P256_SHA256,
        &rcgen::PKCS_ECDSA_P384_SHA384,
        &rcgen::PKCS_ECDSA_P521_SHA512,
    ];
    if ec.contains(&alg) {
        params.key_usages.push(KeyUsagePurpose::KeyAgreement);
    }
    params.not_before = spec.not_after - Duration::days(60);
    params.not_after = spec.not_after;
    params.use_authority_key_identifier_extension = true;
    // ExplicitNoCa writes basicConstraints and a subject key identifier.
    params.is_ca = IsCa::ExplicitNoCa;
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    User {
        cert_der: cert.der().to_vec(),
        cert_pem: cert.pem(),
        key_der: key.serialize_der(),
        key_pem: key.serialize_pem(),
    }
}

pub fn user(ca: &Ca, alg: &'static SignatureAlgorithm, email: &str) -> User {
    user_with(ca, alg, UserSpec::new(email))
}

/// Writes a file; private keys get mode 0600.
pub fn write(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let path = dir.join(name);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .unwrap();
    f.write_all(data).unwrap();
    path
}

/// Runs `openssl cms ARGS`; returns (success, stdout, stderr).
pub fn openssl_cms(args: &[&str], stdin: &[u8]) -> (bool, Vec<u8>, String) {
    let mut child = Command::new("openssl")
        .arg("cms")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl is installed");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `openssl cms -decrypt` with `u`'s certificate and key; returns the
/// plaintext and fails the test when OpenSSL refuses.
pub fn openssl_decrypts(u: &User, enc: &[u8]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let cert = write(dir.path(), "u.pem", u.cert_pem.as_bytes());
    let key = write(dir.path(), "u.key", u.key_pem.as_bytes());
    let (ok, out, err) = openssl_cms(
        &[
            "-decrypt",
            "-recip",
            cert.to_str().unwrap(),
            "-inkey",
            key.to_str().unwrap(),
        ],
        enc,
    );
    assert!(ok, "openssl cms -decrypt failed: {err}");
    out
}

pub const MESSAGE: &[u8] = b"From: Alice <alice@example.org>\r\nTo: bob@example.net\r\nSubject: test\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nHello Bob,\r\nthis is signed.\r\n";

/// `u`'s key re-encoded by OpenSSL in its traditional PEM form
/// (`RSA PRIVATE KEY` / `EC PRIVATE KEY`).
pub fn traditional_pem(u: &User) -> Vec<u8> {
    use std::io::Write;
    let mut child = std::process::Command::new("openssl")
        .args(["pkey", "-traditional"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("openssl is installed");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(u.key_pem.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    out.stdout
}
