//! Keys and certificates written by OpenSSL (an independent implementation)
//! load: PKCS#8, PKCS#1 ("RSA PRIVATE KEY") and SEC1 ("EC PRIVATE KEY"); and
//! what the maker writes verifies with `openssl verify` / `openssl req`.
// Helpers outside #[test] fns unwrap too: a failed fixture is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

use mailtls_core::{
    CaSpec, CertificateAuthority, CertificateWithKey, DnsName, KeyAlgorithm, KeyType,
    LoadErrorKind, ServerCertSpec,
};

fn openssl(args: &[&str], dir: &Path) -> String {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn openssl_key_encodings_load_and_match() {
    let t = private_tempdir();
    let d = t.path();
    let cases: [(&[&str], &[&str], &str, KeyAlgorithm); 2] = [
        (
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
                "k.pem",
            ],
            &["rsa", "-in", "k.pem", "-traditional", "-out", "k2.pem"],
            "-----BEGIN RSA PRIVATE KEY-----",
            KeyAlgorithm::Rsa { bits: 2048 },
        ),
        (
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-384",
                "-out",
                "k.pem",
            ],
            &["ec", "-in", "k.pem", "-out", "k2.pem"],
            "-----BEGIN EC PRIVATE KEY-----",
            KeyAlgorithm::EcdsaP384,
        ),
    ];
    for (keygen, convert, marker, want) in cases {
        openssl(keygen, d);
        openssl(convert, d);
        openssl(
            &[
                "req",
                "-new",
                "-x509",
                "-key",
                "k.pem",
                "-subj",
                "/CN=mail.example.com",
                "-addext",
                "subjectAltName=DNS:mail.example.com,email:pm@example.com",
                "-days",
                "2",
                "-out",
                "c.pem",
            ],
            d,
        );
        assert!(
            std::fs::read_to_string(d.join("k2.pem"))
                .unwrap()
                .contains(marker)
        );
        for key in ["k.pem", "k2.pem"] {
            let loaded = CertificateWithKey::from_files(&d.join("c.pem"), &d.join(key)).unwrap();
            assert_eq!(loaded.info.key, want);
            assert_eq!(loaded.info.dns_names, ["mail.example.com"]);
            assert_eq!(loaded.info.email_addresses, ["pm@example.com"]);
        }
        openssl(
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                "other.pem",
            ],
            d,
        );
        let err =
            CertificateWithKey::from_files(&d.join("c.pem"), &d.join("other.pem")).unwrap_err();
        assert!(
            matches!(err.kind, LoadErrorKind::KeyMismatch { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("c.pem"), "{err}");
    }
}

#[test]
fn fingerprint_matches_openssl() {
    let t = private_tempdir();
    let ca = CertificateAuthority::new_test_ca(&CaSpec::default()).unwrap();
    let made = ca
        .issue(&ServerCertSpec::new(
            DnsName::parse("mail.example.com").unwrap(),
        ))
        .unwrap();
    made.write_files(t.path(), "mail").unwrap();
    let text = openssl(
        &[
            "x509",
            "-noout",
            "-fingerprint",
            "-sha256",
            "-in",
            "mail.crt",
        ],
        t.path(),
    );
    let theirs = text.trim().rsplit('=').next().unwrap();
    assert_eq!(
        made.to_certificate_with_key()
            .unwrap()
            .info
            .fingerprint_hex(),
        theirs
    );
}

#[test]
fn made_certificates_verify_with_openssl() {
    let t = private_tempdir();
    let d = t.path();
    let ca = CertificateAuthority::new_test_ca(&CaSpec::default()).unwrap();
    ca.write_files(d, "ca").unwrap();
    // ring cannot generate RSA keys: there the maker says so instead.
    let keys: &[KeyType] = if cfg!(feature = "aws-lc-rs") {
        &[
            KeyType::Rsa2048,
            KeyType::EcdsaP256,
            KeyType::EcdsaP384,
            KeyType::Ed25519,
        ]
    } else {
        let mut rsa = ServerCertSpec::new(DnsName::parse("mail.example.com").unwrap());
        rsa.key_type = KeyType::Rsa2048;
        assert!(matches!(
            ca.issue(&rsa),
            Err(mailtls_core::maker::MakerError::RsaNeedsAwsLc)
        ));
        &[KeyType::EcdsaP256, KeyType::EcdsaP384, KeyType::Ed25519]
    };
    for (i, key) in keys.iter().copied().enumerate() {
        let mut spec = ServerCertSpec::new(DnsName::parse("mail.example.com").unwrap());
        spec.key_type = key;
        ca.issue(&spec)
            .unwrap()
            .write_files(d, &format!("s{i}"))
            .unwrap();
        openssl(
            &[
                "verify",
                "-CAfile",
                "ca.crt",
                "-purpose",
                "sslserver",
                &format!("s{i}.crt"),
            ],
            d,
        );
        openssl(&["pkey", "-in", &format!("s{i}.key"), "-noout"], d);
        let text = openssl(
            &["x509", "-in", &format!("s{i}.crt"), "-noout", "-subject"],
            d,
        );
        assert!(text.contains(mailtls_core::maker::TEST_MARKER_OU), "{text}");
    }
    let spec = ServerCertSpec::new(DnsName::parse("mail.example.com").unwrap());
    mailtls_core::maker::make_csr(&spec)
        .unwrap()
        .write_files(d, "req")
        .unwrap();
    openssl(&["req", "-in", "req.csr", "-noout", "-verify"], d);
    let subject = openssl(&["req", "-in", "req.csr", "-noout", "-subject"], d);
    assert!(
        !subject.contains("test certificate"),
        "CSRs are never marked as test: {subject}"
    );
}

/// A temporary directory only its owner can read: where private keys may go
/// (the maker refuses directories others can read).
fn private_tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    tempfile::Builder::new()
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
        .unwrap()
}
