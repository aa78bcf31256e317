//! Real messages from Thunderbird 128, Outlook 15 and NSS's test suite
//! (/work/shared/smime-samples, read in place, see SOURCES.md there) open
//! with the same verdict as `openssl cms`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use mailtls_smime::{
    Certificate, Decryptor, OpenedLayer, PrivateKey, Verdict, Verifier, VerifyReport, WeakAlgorithm,
};
use support::openssl_cms;

fn samples() -> PathBuf {
    let dir = std::env::var_os("MAILTLS_SMIME_SAMPLES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/work/shared/smime-samples"));
    assert!(
        dir.join("SOURCES.md").is_file(),
        "the S/MIME samples are missing at {} (set MAILTLS_SMIME_SAMPLES)",
        dir.display()
    );
    dir
}

fn thunderbird_outlook() -> PathBuf {
    samples().join("hmailserver-thunderbird-outlook")
}

fn nss() -> PathBuf {
    samples().join("nss-comm-central")
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn verifier(ca: &Path) -> Verifier {
    Verifier::new(Certificate::from_pem(&read(ca)).unwrap())
}

/// What `openssl cms -verify` says of a message: true when it verifies.
fn openssl_verifies(ca: &Path, message: &[u8]) -> bool {
    let (ok, _, _) = openssl_cms(&["-verify", "-CAfile", ca.to_str().unwrap()], message);
    ok
}

/// The published recipient key of a PKCS #12 file (legacy RC2/3DES
/// encryption, so `-legacy`), extracted at test time: (cert PEM, key PEM).
fn pkcs12(path: &Path, password: &str) -> (Vec<u8>, Vec<u8>) {
    let run = |extra: &[&str]| {
        let out = Command::new("openssl")
            .args(["pkcs12", "-legacy", "-in"])
            .arg(path)
            .args(["-passin", &format!("pass:{password}"), "-nodes"])
            .args(extra)
            .output()
            .expect("openssl is installed");
        assert!(
            out.status.success(),
            "openssl pkcs12 {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    (run(&["-clcerts", "-nokeys"]), run(&["-nocerts"]))
}

fn decryptor(cert_pem: &[u8], key_pem: &[u8]) -> Decryptor {
    let cert = Certificate::from_pem(cert_pem)
        .unwrap()
        .into_iter()
        .next()
        .unwrap();
    Decryptor::new(PrivateKey::from_pem(key_pem).unwrap(), cert).unwrap()
}

/// The verdict a signature check reaches in OpenSSL's terms: it does not
/// check the sender address, so neither does this comparison.
fn verdict_without_address(report: &VerifyReport) -> Verdict {
    let mut r = report.clone();
    for s in &mut r.signers {
        if s.certificate.is_some() {
            s.address = mailtls_smime::Check::Passed;
        }
    }
    r.verdict()
}

/// Each signed sample: our verdict (address aside) against OpenSSL's, and
/// SHA-1 ones as weak rather than valid.
#[test]
fn signed_samples_match_openssl() {
    let cases: Vec<(PathBuf, PathBuf, Verdict)> = vec![
        (
            thunderbird_outlook().join("outlook-signed.eml"),
            thunderbird_outlook().join("ca_smime.crt"),
            Verdict::ValidWeak(vec![WeakAlgorithm::Sha1]),
        ),
        (
            thunderbird_outlook().join("thunderbird-signed.eml"),
            thunderbird_outlook().join("ca_smime.crt"),
            Verdict::Valid,
        ),
        (
            nss().join("alice.sig.SHA1.opaque.eml"),
            nss().join("TestCA.pem"),
            Verdict::ValidWeak(vec![WeakAlgorithm::Sha1]),
        ),
        (
            nss().join("alice.sig.SHA384.opaque.eml"),
            nss().join("TestCA.pem"),
            Verdict::Valid,
        ),
        (
            nss().join("alice.dsig.SHA256.multipart.eml"),
            nss().join("TestCA.pem"),
            Verdict::Valid,
        ),
        (
            nss().join("alice.dsig.SHA512.multipart.eml"),
            nss().join("TestCA.pem"),
            Verdict::Valid,
        ),
        (
            nss().join("alice.dsig.SHA256.multipart.bad.eml"),
            nss().join("TestCA.pem"),
            Verdict::Invalid,
        ),
    ];
    for (message, ca, expected) in cases {
        let data = read(&message);
        let name = message.display();
        let openssl_ok = openssl_verifies(&ca, &data);
        let ours = verifier(&ca).verify_message(&data).unwrap();
        let verdict = verdict_without_address(&ours.report);
        assert_eq!(verdict, expected, "{name}: {:?}", ours.report.signers);
        // OpenSSL accepts SHA-1: valid and valid-but-weak are both its "ok".
        assert_eq!(
            openssl_ok,
            verdict != Verdict::Invalid,
            "{name}: OpenSSL says {openssl_ok}, we say {verdict:?}"
        );
        // The strict flag never calls a SHA-1 signature valid.
        if matches!(expected, Verdict::ValidWeak(_)) {
            assert!(!ours.report.is_valid(), "{name}");
        }
        // The streaming verifier agrees with the one-shot one.
        let streamed = verifier(&ca).verify_stream(data.as_slice()).unwrap();
        assert_eq!(
            verdict_without_address(&streamed),
            verdict,
            "{name} (stream)"
        );
    }
}

/// Decrypts every sample in `names` (in `dir`, encrypted to the key of
/// `p12`) with us and with OpenSSL: each opens, the plaintext is OpenSSL's,
/// and a signature inside gets the verdict OpenSSL gives the decrypted
/// inner message.
fn encrypted_samples_open_like_openssl(
    dir: &Path,
    p12: &str,
    password: &str,
    ca: &str,
    names: &[(&str, bool)],
) {
    let (cert_pem, key_pem) = pkcs12(&dir.join(p12), password);
    let tmp = tempfile::tempdir().unwrap();
    let cert_path = support::write(tmp.path(), "c.pem", &cert_pem);
    let key_path = support::write(tmp.path(), "k.pem", &key_pem);
    let ca = dir.join(ca);
    let decryptors = [decryptor(&cert_pem, &key_pem)];
    for &(name, inner_signed) in names {
        let data = read(&dir.join(name));
        let (ok, openssl_plain, err) = openssl_cms(
            &[
                "-decrypt",
                "-recip",
                cert_path.to_str().unwrap(),
                "-inkey",
                key_path.to_str().unwrap(),
            ],
            &data,
        );
        assert!(ok, "{name}: openssl cms -decrypt: {err}");
        let opened = mailtls_smime::open(&data, &verifier(&ca), &decryptors)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(opened.was_encrypted(), "{name}");
        let reports: Vec<&VerifyReport> = opened
            .layers
            .iter()
            .filter_map(|l| match l {
                OpenedLayer::Signed(r) => Some(r),
                _ => None,
            })
            .collect();
        assert_eq!(!reports.is_empty(), inner_signed, "{name}");
        if inner_signed {
            let openssl_ok = openssl_verifies(&ca, &openssl_plain);
            let verdict = verdict_without_address(reports[0]);
            assert_eq!(
                openssl_ok,
                verdict != Verdict::Invalid,
                "{name}: OpenSSL {openssl_ok}, ours {verdict:?}"
            );
        } else {
            // The decrypted entity is OpenSSL's plaintext (line ends aside).
            let norm = |b: &[u8]| String::from_utf8_lossy(b).replace("\r\n", "\n");
            assert!(
                norm(&opened.message).contains(norm(&openssl_plain).trim_end()),
                "{name}: decrypted content differs from OpenSSL's"
            );
        }
    }
}

#[test]
fn encrypted_thunderbird_and_outlook_samples_open_like_openssl() {
    encrypted_samples_open_like_openssl(
        &thunderbird_outlook(),
        "smime-2-secret.pfx",
        "smime2",
        "ca_smime.crt",
        &[
            ("outlook-encrypted.eml", false),
            ("outlook-signed-and-encrypted.eml", true),
            ("thunderbird-encrypted.eml", false),
            ("thunderbird-signed-and-encrypted.eml", true),
        ],
    );
}

#[test]
fn encrypted_nss_samples_open_like_openssl() {
    encrypted_samples_open_like_openssl(
        &nss(),
        "Bob.p12",
        "nss",
        "TestCA.pem",
        &[
            ("alice.env.eml", false),
            ("alice.dsig.SHA256.multipart.env.eml", true),
            ("alice.html.sig.SHA256.opaque.env.eml", true),
            ("alice.sig.SHA512.opaque.env.eml", true),
        ],
    );
}
