//! gpgsm (GnuPG's S/MIME tool) as a second peer, where it works: RSA
//! signatures both ways and AES-CBC enveloped data both ways (gpgsm 2.2
//! reads no AES-GCM and makes no usable ECDH recipients).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use mailtls_smime::{
    Certificate, ContentEncryption, Decryptor, Encryptor, KeyManagement, Signer, Verifier,
};
use rcgen::PKCS_RSA_SHA256;
use support::*;

/// A throw-away GnuPG home; stops its gpg-agent when dropped.
struct GnupgHome {
    dir: tempfile::TempDir,
}

impl GnupgHome {
    fn home(&self) -> PathBuf {
        self.dir.path().join("gnupg")
    }

    fn gpgsm(&self, args: &[&str], stdin: &[u8]) -> (bool, Vec<u8>, String) {
        let mut child = Command::new("gpgsm")
            .env("GNUPGHOME", self.home())
            .args([
                "--batch",
                "--pinentry-mode",
                "loopback",
                "--passphrase-fd",
                "0",
                "--disable-crl-checks",
                "--disable-policy-checks",
            ])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("gpgsm is installed");
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            out.stdout,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for GnupgHome {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", self.home())
            .args(["--kill", "gpg-agent"])
            .status();
    }
}

fn setup(ca: &Ca, bob: &User) -> GnupgHome {
    let g = GnupgHome {
        dir: tempfile::tempdir().unwrap(),
    };
    let home = g.home();
    std::fs::create_dir(&home).unwrap();
    std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    std::fs::write(home.join("gpg-agent.conf"), "allow-loopback-pinentry\n").unwrap();
    let d = g.dir.path();
    let ca_p = write(d, "ca.pem", ca.pem.as_bytes());
    let cert = write(d, "bob.pem", bob.cert_pem.as_bytes());
    let key = write(d, "bob.key", bob.key_pem.as_bytes());
    let p12 = d.join("bob.p12");
    // gpgsm 2.2 reads PKCS #12 with the older PBE schemes only.
    let st = Command::new("openssl")
        .args(["pkcs12", "-export", "-passout", "pass:test"])
        .args([
            "-keypbe",
            "PBE-SHA1-3DES",
            "-certpbe",
            "PBE-SHA1-3DES",
            "-macalg",
            "sha1",
        ])
        .args(["-in", path(&cert), "-inkey", path(&key), "-out", path(&p12)])
        .status()
        .unwrap();
    assert!(st.success());
    let (ok, _, err) = g.gpgsm(&["--import", path(&ca_p)], b"");
    assert!(ok, "{err}");
    // Setup, not what is tested: on a loaded machine gpgsm's PKCS #12
    // import has been seen to reject the loopback passphrase once (it then
    // tries other charsets). Try again with a fresh agent before failing.
    let mut import = g.gpgsm(&["--import", path(&p12)], b"test\n");
    for _ in 0..2 {
        if import.0 {
            break;
        }
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", g.home())
            .args(["--kill", "gpg-agent"])
            .status();
        import = g.gpgsm(&["--import", path(&p12)], b"test\n");
    }
    let (ok, _, err) = import;
    assert!(ok, "{err}");
    let fpr = {
        let der = Certificate::from_pem(ca.pem.as_bytes()).unwrap().remove(0);
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, der.der());
        d.as_ref()
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<String>()
    };
    std::fs::write(home.join("trustlist.txt"), format!("{fpr} S relax\n")).unwrap();
    g
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

const BODY: &[u8] = b"Content-Type: text/plain\r\n\r\nhello gpgsm\r\n";

#[test]
fn gpgsm_interoperates_for_rsa_signatures_and_aes_cbc() {
    let ca = ca(&PKCS_RSA_SHA256, "gpgsm CA");
    let bob = user(&ca, &PKCS_RSA_SHA256, "bob@example.org");
    let g = setup(&ca, &bob);
    let d = g.dir.path();
    let verifier = Verifier::new(vec![Certificate::from_der(&ca.der).unwrap()]);
    let content = write(d, "body", BODY);

    // We sign, gpgsm verifies.
    let sig = Signer::new(bob.key(), vec![bob.certificate()])
        .unwrap()
        .sign_content(BODY, true)
        .unwrap();
    let sig_p = write(d, "sig.der", &sig);
    let (ok, _, err) = g.gpgsm(&["--verify", path(&sig_p), path(&content)], b"");
    assert!(ok && err.contains("Good signature"), "{err}");

    // gpgsm signs, we verify.
    let out = d.join("gs.der");
    let (ok, _, err) = g.gpgsm(
        &[
            "-u",
            "bob@example.org",
            "--detach-sign",
            "--output",
            path(&out),
            path(&content),
        ],
        b"test\n",
    );
    assert!(ok, "{err}");
    let report = verifier
        .verify_cms(
            &std::fs::read(&out).unwrap(),
            Some(BODY),
            &["bob@example.org".into()],
        )
        .unwrap();
    assert!(report.is_valid(), "{report:?}");

    // We encrypt (AES-CBC), gpgsm decrypts.
    let enc = Encryptor::new(ContentEncryption::Aes256Cbc)
        .with_recipient(bob.certificate(), KeyManagement::RsaPkcs1v15)
        .unwrap()
        .encrypt_content(BODY)
        .unwrap();
    let enc_p = write(d, "enc.der", &enc);
    let (ok, plain, err) = g.gpgsm(&["--decrypt", path(&enc_p)], b"test\n");
    assert!(ok, "{err}");
    assert_eq!(plain, BODY);

    // gpgsm encrypts, we decrypt.
    let out = d.join("genc.der");
    let (ok, _, err) = g.gpgsm(
        &[
            "-r",
            "bob@example.org",
            "--encrypt",
            "--output",
            path(&out),
            path(&content),
        ],
        b"",
    );
    assert!(ok, "{err}");
    let plain = Decryptor::new(bob.key(), bob.certificate())
        .unwrap()
        .decrypt_cms(&std::fs::read(&out).unwrap())
        .unwrap();
    assert_eq!(plain, BODY);
}
