//! The `mailtls-certmaker` binary, checked with openssl: a CA, a server
//! certificate it signs, a self-signed production certificate, a CSR, the
//! inspect output, and clear errors with non-zero exit codes.
// Helpers outside #[test] functions may unwrap too: a failed unwrap is a
// failed test, as clippy.toml already allows inside the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

fn certmaker(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mailtls-certmaker"))
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

fn openssl(args: &[&str], cwd: &Path) -> String {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn ca_then_server_certificate_verifies_with_openssl() {
    let t = private_tempdir();
    let d = t.path();
    ok(&certmaker(
        &[
            "ca",
            "--out",
            "ca",
            "--cn",
            "Example Test CA",
            "--org",
            "Example Ltd",
        ],
        d,
    ));
    assert_eq!(mode(&d.join("ca/ca.key")), 0o600);
    assert_eq!(mode(&d.join("ca")), 0o700);
    let out = ok(&certmaker(
        &[
            "server",
            "mail.example.org",
            "--name",
            "*.example.org",
            "--name",
            "imap.example.org",
            "--org",
            "Example Ltd",
            "--country",
            "DE",
            "--days",
            "30",
            "--key",
            "rsa3072",
            "--ca-dir",
            "ca",
            "--out",
            "out",
            "--stem",
            "mail",
        ],
        d,
    ));
    assert!(out.contains("wrote out/mail.crt"), "{out}");
    assert_eq!(mode(&d.join("out/mail.key")), 0o600);
    assert!(
        openssl(&["verify", "-CAfile", "ca/ca.crt", "out/mail.crt"], d)
            .contains("out/mail.crt: OK")
    );
    let text = openssl(&["x509", "-noout", "-text", "-in", "out/mail.crt"], d);
    for want in [
        "DNS:mail.example.org, DNS:*.example.org, DNS:imap.example.org",
        "Public-Key: (3072 bit)",
        "O = Example Ltd",
        "C = DE",
        "OU = mailtls test certificate - not for production",
        "TLS Web Server Authentication",
        "CN = Example Test CA",
    ] {
        assert!(text.contains(want), "missing {want:?}:\n{text}");
    }

    // inspect agrees with openssl about the fingerprint and names.
    let inspect = ok(&certmaker(&["inspect", "out/mail.crt"], d));
    assert!(
        inspect.contains("certificate 1 of 2"),
        "the chain file holds the CA too"
    );
    assert!(
        inspect.contains("DNS names:    mail.example.org, *.example.org, imap.example.org"),
        "{inspect}"
    );
    assert!(inspect.contains("key:          RSA 3072"), "{inspect}");
    assert!(inspect.contains("EKU:          serverAuth"), "{inspect}");
    assert!(
        inspect.contains("29 days left") || inspect.contains("30 days left"),
        "{inspect}"
    );
    let fp = openssl(
        &[
            "x509",
            "-noout",
            "-fingerprint",
            "-sha256",
            "-in",
            "out/mail.crt",
        ],
        d,
    );
    let fp = fp.trim().rsplit('=').next().unwrap();
    assert!(
        inspect.contains(&format!("SHA-256:      {fp}")),
        "{fp}\n{inspect}"
    );
}

#[test]
fn self_signed_production_client_auth_and_csr() {
    let t = private_tempdir();
    let d = t.path();
    ok(&certmaker(
        &[
            "server",
            "relay.example.net",
            "--self-signed",
            "--production",
            "--client-auth",
            "--key",
            "ed25519",
            "--out",
            "ss",
        ],
        d,
    ));
    let text = openssl(
        &["x509", "-noout", "-text", "-in", "ss/relay.example.net.crt"],
        d,
    );
    assert!(
        !text.contains("mailtls test certificate"),
        "production has no marker:\n{text}"
    );
    assert!(text.contains("ED25519"), "{text}");
    assert!(text.contains("TLS Web Client Authentication"), "{text}");
    openssl(
        &[
            "verify",
            "-CAfile",
            "ss/relay.example.net.crt",
            "ss/relay.example.net.crt",
        ],
        d,
    );

    ok(&certmaker(
        &[
            "csr",
            "mx.example.net",
            "--name",
            "*.mx.example.net",
            "--org",
            "Example",
            "--country",
            "NL",
            "--key",
            "ecdsa-p384",
            "--out",
            "req",
            "--stem",
            "mx",
        ],
        d,
    ));
    assert_eq!(mode(&d.join("req/mx.key")), 0o600);
    let verify = openssl(&["req", "-verify", "-noout", "-in", "req/mx.csr"], d);
    assert!(verify.contains("verify OK"), "{verify}");
    let text = openssl(&["req", "-noout", "-text", "-in", "req/mx.csr"], d);
    assert!(
        text.contains("DNS:mx.example.net, DNS:*.mx.example.net"),
        "{text}"
    );
    assert!(
        text.contains("C = NL, O = Example, CN = mx.example.net"),
        "{text}"
    );
    assert!(
        text.contains("NIST CURVE: P-384") || text.contains("secp384r1"),
        "{text}"
    );
    assert!(
        !text.contains("mailtls test certificate"),
        "a CSR is for a real CA"
    );
}

#[test]
fn errors_are_clear_and_exit_non_zero() {
    let t = private_tempdir();
    let d = t.path();
    let cases: &[(&[&str], i32, &str)] = &[
        (
            &["server", "h.example", "--out", "o"],
            2,
            "<--ca-dir <DIR>|--self-signed>",
        ),
        (&["server", "h.example", "--self-signed"], 2, "--out <DIR>"),
        (&["csr", "h.example"], 2, "--out <DIR>"),
        (
            &[
                "server",
                "h.example",
                "--out",
                "o",
                "--self-signed",
                "--key",
                "rsa1024",
            ],
            2,
            "RSA key size 1024 refused",
        ),
        (
            &[
                "server",
                "h.example",
                "--out",
                "o",
                "--self-signed",
                "--days",
                "0",
            ],
            1,
            "validity of 0 days refused",
        ),
        (
            &["server", "bad host!", "--out", "o", "--self-signed"],
            2,
            "'<HOST>'",
        ),
        (
            &[
                "server",
                "h.example",
                "--out",
                "o",
                "--self-signed",
                "--name",
                "w*.example",
            ],
            2,
            "'--name <NAME>'",
        ),
        (
            &["server", "h.example", "--out", "o", "--ca-dir", "missing"],
            1,
            "missing",
        ),
        (
            &[
                "server",
                "h.example",
                "--out",
                "o",
                "--self-signed",
                "--country",
                "DEU",
            ],
            1,
            "two letters",
        ),
        (&["inspect", "nope.crt"], 1, "nope.crt"),
        (&["frobnicate"], 2, "unrecognized subcommand 'frobnicate'"),
        (&[], 2, "Usage:"),
        (
            &[
                "server",
                "h.example",
                "--out",
                "o",
                "--self-signed",
                "--cn",
                "x",
            ],
            2,
            "unexpected argument '--cn'",
        ),
        (
            &[
                "server",
                "h.example",
                "--out",
                "o",
                "--self-signed",
                "--ca-dir",
                "ca",
            ],
            2,
            "'--self-signed' cannot be used with '--ca-dir <DIR>'",
        ),
        (
            &[
                "server",
                "h.example",
                "--out",
                "o",
                "--self-signed",
                "--days",
                "soon",
            ],
            2,
            "invalid value 'soon' for '--days <N>'",
        ),
    ];
    for (args, code, message) in cases {
        let out = certmaker(args, d);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(*code), "{args:?}: {err}");
        assert!(err.contains(message), "{args:?}: {err}");
    }
    // Nothing half-made was left behind.
    assert!(!d.join("o").join("h.example.crt").exists());
    assert!(!d.join("h.example.crt").exists());
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
