//! The `mailtls-smime` binary against `openssl cms` in both directions: sign
//! then verify (with the tool and with OpenSSL), encrypt then decrypt (each
//! side once as writer, once as reader), a tampered message, an unknown CA,
//! and clear usage errors with non-zero exit codes.
// Helpers outside #[test] functions may unwrap too: a failed unwrap is a
// failed test, as clippy.toml already allows inside the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use mailtls_core::{CaSpec, CertificateAuthority, KeyType};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

const MESSAGE: &str = "From: alice@example.org\r\nTo: bob@example.net\r\nSubject: report\r\n\
Content-Type: text/plain; charset=us-ascii\r\n\r\nHello Bob,\r\nthe numbers are in.\r\n";

/// A test CA (mailtls-core's maker) and two S/MIME users it issued:
/// alice (ECDSA P-256) and bob (RSA 2048), in a private temp dir.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir()
            .unwrap();
        let ca = CertificateAuthority::new_test_ca(&CaSpec::default()).unwrap();
        std::fs::write(dir.path().join("ca.crt"), &ca.certificate().cert_pem).unwrap();
        let issuer = Issuer::from_ca_cert_pem(
            &ca.certificate().cert_pem,
            KeyPair::from_pem(ca.certificate().key_pem()).unwrap(),
        )
        .unwrap();
        user(
            dir.path(),
            &issuer,
            "alice",
            "alice@example.org",
            KeyType::EcdsaP256,
        );
        user(
            dir.path(),
            &issuer,
            "bob",
            "bob@example.net",
            KeyType::Rsa2048,
        );
        // A second, unrelated CA for the unknown-issuer case.
        let other = CertificateAuthority::new_test_ca(&CaSpec::default()).unwrap();
        std::fs::write(
            dir.path().join("other-ca.crt"),
            &other.certificate().cert_pem,
        )
        .unwrap();
        std::fs::write(dir.path().join("msg.eml"), MESSAGE).unwrap();
        let from_bob = MESSAGE.replace("From: alice@example.org", "From: bob@example.net");
        std::fs::write(dir.path().join("bob-msg.eml"), from_bob).unwrap();
        Pki { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn user(dir: &Path, issuer: &Issuer<'_, KeyPair>, name: &str, email: &str, key: KeyType) {
    let key_pair = key.generate().unwrap();
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    params.subject_alt_names = vec![SanType::Rfc822Name(email.try_into().unwrap())];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::EmailProtection];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.key_usages.push(if key == KeyType::Rsa2048 {
        KeyUsagePurpose::KeyEncipherment
    } else {
        KeyUsagePurpose::KeyAgreement
    });
    let cert = params.signed_by(&key_pair, issuer).unwrap();
    std::fs::write(dir.join(format!("{name}.crt")), cert.pem()).unwrap();
    let key_path = dir.join(format!("{name}.key"));
    std::fs::write(&key_path, key_pair.serialize_pem()).unwrap();
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn tool(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mailtls-smime"))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn openssl(args: &[&str], cwd: &Path) -> Output {
    Command::new("openssl")
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap()
}

fn read(p: &Path) -> String {
    String::from_utf8(std::fs::read(p).unwrap()).unwrap()
}

#[test]
fn help_and_usage_errors() {
    let pki = Pki::new();
    let d = pki.path();
    let help = ok(&tool(&["--help"], d));
    for cmd in ["sign", "verify", "encrypt", "decrypt"] {
        assert!(help.contains(&format!("mailtls-smime {cmd}")), "{help}");
    }
    let cases: &[(&[&str], &str)] = &[
        (&[], "Usage: mailtls-smime sign"),
        (&["frobnicate"], "unrecognized subcommand 'frobnicate'"),
        (
            &[
                "sign",
                "--key",
                "alice.key",
                "--in",
                "msg.eml",
                "--out",
                "x",
            ],
            "--cert <CERT>",
        ),
        (
            &[
                "encrypt", "--recip", "bob.crt", "--cipher", "des", "--in", "msg.eml", "--out", "x",
            ],
            "invalid value 'des' for '--cipher <CIPHER>'",
        ),
        (&["verify", "--in", "msg.eml"], "--ca <CA>"),
        (
            &[
                "verify",
                "--ca",
                "ca.crt",
                "--cert",
                "alice.crt",
                "--in",
                "msg.eml",
            ],
            "unexpected argument '--cert'",
        ),
        (
            &[
                "verify",
                "--ca",
                "ca.crt",
                "--at",
                "yesterday",
                "--in",
                "msg.eml",
            ],
            "invalid value 'yesterday' for '--at <TIME>'",
        ),
    ];
    for (args, want) in cases {
        let out = tool(args, d);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: want {want:?} in {stderr}");
    }
    // A missing file and an unsigned message are errors (1), not usage errors.
    let out = tool(&["verify", "--ca", "nope.crt", "--in", "msg.eml"], d);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read nope.crt"));
    let out = tool(&["verify", "--ca", "ca.crt", "--in", "msg.eml"], d);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not signed"));
    // A key that does not belong to the certificate.
    let out = tool(
        &[
            "sign",
            "--cert",
            "alice.crt",
            "--key",
            "bob.key",
            "--in",
            "msg.eml",
            "--out",
            "s.eml",
        ],
        d,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not belong"));
}

#[test]
fn signed_by_the_tool_verifies_with_the_tool_and_openssl() {
    let pki = Pki::new();
    let d = pki.path();
    // Detached (ECDSA P-256) and opaque (RSA with SHA-512), each signer
    // signing a message From its own address.
    let runs: &[(&str, &str, &[&str])] = &[
        ("alice", "msg.eml", &[]),
        ("bob", "bob-msg.eml", &["--opaque", "--digest", "sha512"]),
    ];
    for (who, input, extra) in runs {
        let (crt, key) = (format!("{who}.crt"), format!("{who}.key"));
        let mut args = vec![
            "sign",
            "--cert",
            &crt,
            "--key",
            &key,
            "--in",
            input,
            "--out",
            "signed.eml",
        ];
        args.extend_from_slice(extra);
        ok(&tool(&args, d));
        let signed = read(&pki.file("signed.eml"));
        if extra.is_empty() {
            assert!(signed.contains("multipart/signed"), "{signed}");
        } else {
            assert!(signed.contains("smime-type=signed-data"), "{signed}");
            assert!(!signed.contains("the numbers are in"), "{signed}");
        }

        let report = ok(&tool(
            &[
                "verify",
                "--ca",
                "ca.crt",
                "--in",
                "signed.eml",
                "--out",
                "content.eml",
            ],
            d,
        ));
        assert!(report.contains(&format!("CN={who}")), "{report}");
        assert!(report.contains("address:            ok"), "{report}");
        assert!(report.contains("result: valid"), "{report}");
        assert!(read(&pki.file("content.eml")).contains("Hello Bob,\r\nthe numbers are in."));

        let out = openssl(
            &[
                "cms",
                "-verify",
                "-in",
                "signed.eml",
                "-CAfile",
                "ca.crt",
                "-out",
                "ossl.txt",
            ],
            d,
        );
        assert!(
            out.status.success(),
            "{who}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(read(&pki.file("ossl.txt")).contains("the numbers are in."));
    }
}

#[test]
fn signed_by_openssl_verifies_with_the_tool() {
    let pki = Pki::new();
    let d = pki.path();
    std::fs::write(
        pki.file("body.txt"),
        "Content-Type: text/plain\r\n\r\nSigned by OpenSSL.\r\n",
    )
    .unwrap();
    for nodetach in [false, true] {
        let mut args = vec![
            "cms",
            "-sign",
            "-signer",
            "bob.crt",
            "-inkey",
            "bob.key",
            "-in",
            "body.txt",
            "-out",
            "ossl-signed.eml",
            "-from",
            "bob@example.net",
            "-to",
            "alice@example.org",
        ];
        if nodetach {
            args.push("-nodetach");
        }
        let out = openssl(&args, d);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report = ok(&tool(
            &[
                "verify",
                "--ca",
                "ca.crt",
                "--in",
                "ossl-signed.eml",
                "--out",
                "content.eml",
            ],
            d,
        ));
        assert!(
            report.contains("CN=bob") && report.contains("result: valid"),
            "{report}"
        );
        assert!(read(&pki.file("content.eml")).contains("Signed by OpenSSL."));
    }
}

#[test]
fn tampered_or_untrusted_signature_fails_with_non_zero_exit() {
    let pki = Pki::new();
    let d = pki.path();
    ok(&tool(
        &[
            "sign",
            "--cert",
            "alice.crt",
            "--key",
            "alice.key",
            "--in",
            "msg.eml",
            "--out",
            "signed.eml",
        ],
        d,
    ));
    let signed = read(&pki.file("signed.eml"));
    let tampered = signed.replace("the numbers are in.", "the numbers are in!");
    assert_ne!(signed, tampered);
    std::fs::write(pki.file("tampered.eml"), tampered).unwrap();

    let out = tool(&["verify", "--ca", "ca.crt", "--in", "tampered.eml"], d);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("signature:          FAILED"), "{stdout}");
    assert!(stdout.contains("result: NOT VALID"), "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not valid"));
    // The same file under OpenSSL fails too: the tool agrees with it.
    let out = openssl(
        &[
            "cms",
            "-verify",
            "-in",
            "tampered.eml",
            "-CAfile",
            "ca.crt",
            "-out",
            "/dev/null",
        ],
        d,
    );
    assert!(!out.status.success());

    // The untouched message against an unrelated CA: chain fails.
    let out = tool(
        &[
            "verify",
            "--ca",
            "other-ca.crt",
            "--in",
            "signed.eml",
            "--out",
            "x.eml",
        ],
        d,
    );
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("signature:          ok"), "{stdout}");
    assert!(stdout.contains("chain:              FAILED"), "{stdout}");
    assert!(
        !pki.file("x.eml").exists(),
        "no content written for an invalid signature"
    );

    // Bob's valid signature on a message From alice: the address check fails.
    ok(&tool(
        &[
            "sign",
            "--cert",
            "bob.crt",
            "--key",
            "bob.key",
            "--in",
            "msg.eml",
            "--out",
            "wrong-from.eml",
        ],
        d,
    ));
    let out = tool(&["verify", "--ca", "ca.crt", "--in", "wrong-from.eml"], d);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("address:            FAILED: message address alice@example.org"),
        "{stdout}"
    );

    // Valid now, expired as of the far future.
    let out = tool(
        &[
            "verify",
            "--ca",
            "ca.crt",
            "--in",
            "signed.eml",
            "--at",
            "2199-01-01T00:00:00Z",
        ],
        d,
    );
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn encrypted_by_the_tool_decrypts_with_openssl() {
    let pki = Pki::new();
    let d = pki.path();
    let runs: &[&[&str]] = &[
        &[],
        &["--oaep", "--cipher", "aes128-cbc"],
        &["--cipher", "aes256-gcm"],
        &["--oaep", "--cipher", "aes128-gcm"],
        &["--cipher", "aes192-cbc"],
        &["--cipher", "aes192-gcm"],
    ];
    for extra in runs {
        let mut args = vec![
            "encrypt",
            "--recip",
            "bob.crt",
            "--recip",
            "alice.crt",
            "--in",
            "msg.eml",
            "--out",
            "enc.eml",
        ];
        args.extend_from_slice(extra);
        ok(&tool(&args, d));
        let enc = read(&pki.file("enc.eml"));
        assert!(enc.contains("application/pkcs7-mime"), "{enc}");
        assert!(!enc.contains("the numbers are in"));
        // Both recipients can read it: bob by RSA, alice by ECDH.
        for who in ["bob", "alice"] {
            let (crt, key) = (format!("{who}.crt"), format!("{who}.key"));
            let out = openssl(
                &[
                    "cms", "-decrypt", "-in", "enc.eml", "-recip", &crt, "-inkey", &key, "-out",
                    "dec.txt",
                ],
                d,
            );
            assert!(
                out.status.success(),
                "{extra:?} {who}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(read(&pki.file("dec.txt")).contains("Hello Bob,\r\nthe numbers are in."));
        }
        // And the tool reads its own output.
        ok(&tool(
            &[
                "decrypt", "--cert", "bob.crt", "--key", "bob.key", "--in", "enc.eml", "--out",
                "dec.eml",
            ],
            d,
        ));
        let dec = read(&pki.file("dec.eml"));
        assert!(dec.starts_with("From: alice@example.org"), "{dec}");
        assert!(dec.contains("Hello Bob,\r\nthe numbers are in."), "{dec}");
    }
}

#[test]
fn encrypted_by_openssl_decrypts_with_the_tool() {
    let pki = Pki::new();
    let d = pki.path();
    std::fs::write(
        pki.file("body.txt"),
        "Content-Type: text/plain\r\n\r\nSecret from OpenSSL.\r\n",
    )
    .unwrap();
    for cipher in ["-aes256", "-aes-128-gcm", "-aes192", "-aes-192-gcm"] {
        let out = openssl(
            &[
                "cms",
                "-encrypt",
                cipher,
                "-in",
                "body.txt",
                "-out",
                "ossl-enc.eml",
                "-from",
                "alice@example.org",
                "bob.crt",
            ],
            d,
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        ok(&tool(
            &[
                "decrypt",
                "--cert",
                "bob.crt",
                "--key",
                "bob.key",
                "--in",
                "ossl-enc.eml",
                "--out",
                "dec.eml",
            ],
            d,
        ));
        assert!(read(&pki.file("dec.eml")).contains("Secret from OpenSSL."));
        // Alice is no recipient: a clear error, exit 1.
        let out = tool(
            &[
                "decrypt",
                "--cert",
                "alice.crt",
                "--key",
                "alice.key",
                "--in",
                "ossl-enc.eml",
                "--out",
                "x.eml",
            ],
            d,
        );
        assert_eq!(out.status.code(), Some(1));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("no recipient"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn decrypt_verifies_a_signature_inside() {
    let pki = Pki::new();
    let d = pki.path();
    // Sign-then-encrypt with the tool: Alice signs, encrypts to Bob.
    ok(&tool(
        &[
            "sign",
            "--cert",
            "alice.crt",
            "--key",
            "alice.key",
            "--in",
            "msg.eml",
            "--out",
            "signed.eml",
        ],
        d,
    ));
    ok(&tool(
        &[
            "encrypt",
            "--recip",
            "bob.crt",
            "--in",
            "signed.eml",
            "--out",
            "signed-enc.eml",
        ],
        d,
    ));
    // The same with OpenSSL: opaque signature, then AES-GCM.
    let signed = openssl(
        &[
            "cms",
            "-sign",
            "-nodetach",
            "-in",
            "msg.eml",
            "-signer",
            "alice.crt",
            "-inkey",
            "alice.key",
            "-out",
            "ossl-signed.eml",
        ],
        d,
    );
    assert!(
        signed.status.success(),
        "{}",
        String::from_utf8_lossy(&signed.stderr)
    );
    // OpenSSL signs the whole file as content: give the result From again.
    let inner = format!(
        "From: alice@example.org\r\n{}",
        read(&pki.file("ossl-signed.eml"))
    );
    std::fs::write(pki.file("ossl-signed.eml"), inner).unwrap();
    let enc = openssl(
        &[
            "cms",
            "-encrypt",
            "-aes-256-gcm",
            "-in",
            "ossl-signed.eml",
            "-out",
            "ossl-signed-enc.eml",
            "bob.crt",
        ],
        d,
    );
    assert!(
        enc.status.success(),
        "{}",
        String::from_utf8_lossy(&enc.stderr)
    );

    for file in ["signed-enc.eml", "ossl-signed-enc.eml"] {
        let stdout = ok(&tool(
            &[
                "decrypt", "--cert", "bob.crt", "--key", "bob.key", "--ca", "ca.crt", "--in", file,
                "--out", "dec.eml",
            ],
            d,
        ));
        assert!(stdout.contains("signed layer inside:"), "{file}: {stdout}");
        assert!(stdout.contains("signer 1: "), "{file}: {stdout}");
        assert!(stdout.contains("result: valid"), "{file}: {stdout}");
        let dec = read(&pki.file("dec.eml"));
        assert!(dec.contains("the numbers are in."), "{file}: {dec}");
        assert!(!dec.contains("pkcs7"), "{file}: every layer is off: {dec}");

        // Against the wrong CA: decrypted and written, but exit status 1
        // and the report says why.
        let _ = std::fs::remove_file(pki.file("dec2.eml"));
        let out = tool(
            &[
                "decrypt",
                "--cert",
                "bob.crt",
                "--key",
                "bob.key",
                "--ca",
                "other-ca.crt",
                "--in",
                file,
                "--out",
                "dec2.eml",
            ],
            d,
        );
        assert_eq!(out.status.code(), Some(1), "{file}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("result: NOT VALID"), "{file}: {stdout}");
        // (The other CA has the same name, so the path is found but its
        // signature fails.)
        assert!(
            stdout
                .lines()
                .any(|l| l.trim_start().starts_with("chain:") && l.contains("FAILED")),
            "{file}: {stdout}"
        );
        assert!(read(&pki.file("dec2.eml")).contains("the numbers are in."));
    }

    // Without --ca the report says the chain could not be checked.
    let out = tool(
        &[
            "decrypt",
            "--cert",
            "bob.crt",
            "--key",
            "bob.key",
            "--in",
            "signed-enc.eml",
            "--out",
            "dec3.eml",
        ],
        d,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("no --ca given"));
}

/// Runs the tool under `/usr/bin/time` and returns its output and peak
/// resident set size in KiB (GNU time's `%M`).
fn tool_peak_rss(args: &[&str], cwd: &Path) -> (Output, u64) {
    let out = Command::new("/usr/bin/time")
        .args(["-f", "peak-rss-kib=%M", env!("CARGO_BIN_EXE_mailtls-smime")])
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let kib = stderr
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("peak-rss-kib="))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak RSS from /usr/bin/time: {stderr}"));
    (out, kib)
}

/// A message of `MIB` MiB of 7-bit text (76-character lines), written
/// without holding it in memory.
fn big_message(path: &Path, mib: u64) {
    use std::io::Write as _;
    let mut w = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    // From bob, who signs it.
    let head = MESSAGE.replace("From: alice@example.org", "From: bob@example.net");
    w.write_all(head.split("\r\n\r\n").next().unwrap().as_bytes())
        .unwrap();
    w.write_all(b"\r\n\r\n").unwrap();
    let line = format!("{}\r\n", "0123456789abcdefghijklmnopqrstuvwxyz".repeat(3));
    let mut written = 0u64;
    let mut n = 0u64;
    while written < mib * 1024 * 1024 {
        // A counter per line, so a dropped or repeated line is seen.
        let l = format!("{n:010}{}", &line[10..]);
        w.write_all(l.as_bytes()).unwrap();
        written += l.len() as u64;
        n += 1;
    }
    w.write_all(b"the end\r\n").unwrap();
    w.flush().unwrap();
}

/// 200 MB through sign, verify, encrypt and decrypt (and opaque signing)
/// in under 64 MiB resident each: the tool streams. The content that comes
/// back is the content that went in.
#[test]
fn two_hundred_megabytes_stream_in_bounded_memory() {
    const LIMIT_KIB: u64 = 64 * 1024;
    let mib: u64 = std::env::var("MAILTLS_SMIME_BIG_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let pki = Pki::new();
    let d = pki.path();
    big_message(&pki.file("big.eml"), mib);
    let input_len = std::fs::metadata(pki.file("big.eml")).unwrap().len();
    let original = std::fs::read(pki.file("big.eml")).unwrap();
    let body_start = original.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let body = &original[body_start..];
    let steps: [(&str, &[&str], &str); 6] = [
        (
            "sign",
            &words("sign --cert bob.crt --key bob.key --in big.eml --out s.eml"),
            "s.eml",
        ),
        (
            "verify",
            &words("verify --ca ca.crt --in s.eml --out v.eml"),
            "v.eml",
        ),
        (
            "sign --opaque",
            &words("sign --opaque --cert bob.crt --key bob.key --in big.eml --out o.eml"),
            "o.eml",
        ),
        (
            "verify opaque",
            &words("verify --ca ca.crt --in o.eml --out vo.eml"),
            "vo.eml",
        ),
        (
            "encrypt",
            &words("encrypt --recip bob.crt --recip alice.crt --in big.eml --out e.eml"),
            "e.eml",
        ),
        (
            "decrypt",
            &words("decrypt --cert alice.crt --key alice.key --in e.eml --out d.eml"),
            "d.eml",
        ),
    ];
    for (name, args, out_file) in steps {
        let (out, kib) = tool_peak_rss(args, d);
        ok(&out);
        assert!(
            kib < LIMIT_KIB,
            "{name} of {mib} MiB peaked at {kib} KiB resident (limit {LIMIT_KIB})"
        );
        let len = std::fs::metadata(pki.file(out_file)).unwrap().len();
        assert!(len >= input_len * 9 / 10, "{name}: output only {len} bytes");
        eprintln!("{name}: {mib} MiB, peak {kib} KiB resident");
    }
    // What verify and decrypt give back ends with the body that went in.
    for file in ["v.eml", "vo.eml", "d.eml"] {
        let back = std::fs::read(pki.file(file)).unwrap();
        assert!(back.ends_with(body), "{file}: the content differs");
    }
}

/// `--pss` signatures verify in OpenSSL; `cosign` adds a signature to what
/// OpenSSL signed (both signers verify in OpenSSL and in the tool); a
/// SHA-1 signature from OpenSSL is reported as valid but weak, exit 1.
#[test]
fn pss_cosign_and_weak_sha1_with_the_tool() {
    let pki = Pki::new();
    let d = pki.path();
    ok(&tool(
        &words(
            "sign --pss --digest sha384 --cert bob.crt --key bob.key --in bob-msg.eml --out pss.eml",
        ),
        d,
    ));

    let out = openssl(&words("cms -verify -CAfile ca.crt -in pss.eml"), d);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = openssl(&words("cms -cmsout -print -in pss.eml"), d);
    assert!(String::from_utf8_lossy(&printed.stdout).contains("rsassaPss"));
    assert!(ok(&tool(&words("verify --ca ca.crt --in pss.eml"), d)).contains("result: valid"));
    // OpenSSL signs for bob; the tool co-signs for alice (the Sender).
    std::fs::write(
        pki.file("body.txt"),
        "Content-Type: text/plain\r\n\r\nSigned twice.\r\n",
    )
    .unwrap();
    for extra in [&[][..], &["-nodetach"][..]] {
        let mut args = vec![
            "cms", "-sign", "-signer", "bob.crt", "-inkey", "bob.key", "-in", "body.txt",
        ];
        args.extend_from_slice(extra);
        let signed = openssl(&args, d);
        assert!(signed.status.success());
        let mut message = b"From: bob@example.net\r\nSender: alice@example.org\r\n".to_vec();
        message.extend_from_slice(&signed.stdout);
        std::fs::write(pki.file("ossl.eml"), message).unwrap();
        ok(&tool(
            &words("cosign --cert alice.crt --key alice.key --in ossl.eml --out co.eml"),
            d,
        ));
        let out = openssl(
            &words("cms -verify -CAfile ca.crt -in co.eml -signer both.pem"),
            d,
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            read(&pki.file("both.pem"))
                .matches("BEGIN CERTIFICATE")
                .count(),
            2
        );
        let report = ok(&tool(&words("verify --ca ca.crt --in co.eml"), d));
        assert!(
            report.contains("signer 2: ") && report.contains("result: valid"),
            "{report}"
        );
    }
    // --pss with an EC key, and co-signing an unsigned message, fail with
    // a reason and leave no output behind.
    for (command, flag, why) in [
        ("sign", "--pss", "--pss"),
        ("cosign", "--digest=sha256", "not signed"),
    ] {
        let line =
            format!("{command} {flag} --cert alice.crt --key alice.key --in msg.eml --out x.eml");
        let args = words(&line);
        let out = tool(&args, d);
        assert_eq!(out.status.code(), Some(1), "{command}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(why), "{command}: {stderr}");
        assert!(!pki.file("x.eml").exists(), "{command}: no partial output");
    }

    // SHA-1 from OpenSSL: every check holds, the verdict is weak, exit 1.
    let out = openssl(
        &words("cms -sign -md sha1 -signer bob.crt -inkey bob.key -in bob-msg.eml -out sha1.eml"),
        d,
    );
    assert!(out.status.success());
    let mut sha1 = b"From: bob@example.net\r\n".to_vec();
    sha1.extend_from_slice(&std::fs::read(pki.file("sha1.eml")).unwrap());
    std::fs::write(pki.file("sha1.eml"), sha1).unwrap();
    let out = tool(&words("verify --ca ca.crt --in sha1.eml"), d);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("weak algorithm:     SHA-1"), "{stdout}");
    assert!(
        stdout.contains("result: VALID BUT WEAK (SHA-1)"),
        "{stdout}"
    );
    assert!(!stdout.contains("FAILED"), "{stdout}");
}

/// The words of a command line (no quoting: test arguments have no spaces).
fn words(line: &str) -> Vec<&str> {
    line.split(' ').collect()
}
