//! The `mailtls-acme` binary against Debian's Pebble (a real RFC 8555 CA)
//! rejecting half of all nonces: http-01 served by the tool itself, dns-01
//! through a hook that publishes into pebble-challtestsrv, the written chain
//! and key checked with mailtls-core, and clear errors with exit codes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use mailtls_core::{CertificateWithKey, KeyAlgorithm};
use mailtls_testpeers::{Pebble, PebbleOptions};

fn tool(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mailtls-acme"))
        .args(args)
        .output()
        .unwrap()
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(out: &Output) -> String {
    let (stdout, stderr) = text(out);
    assert!(
        out.status.success(),
        "mailtls-acme failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    stdout
}

/// The options every Pebble run shares; 20 badNonce retries because half of
/// all nonces are rejected.
fn base_args(pebble: &Pebble, dir: &Path) -> Vec<String> {
    [
        "--directory",
        &pebble.directory_url,
        "--extra-root",
        pebble.root_pem.to_str().unwrap(),
        "--only-extra-roots",
        "--bad-nonce-retries",
        "20",
        "--email",
        "postmaster@example.com",
        "--agree-tos",
        "--data-dir",
        dir.join("acme").to_str().unwrap(),
        "--out-cert",
        dir.join("cert.pem").to_str().unwrap(),
        "--out-key",
        dir.join("key.pem").to_str().unwrap(),
        "--timeout",
        "60",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

fn run(args: &[String]) -> Output {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    tool(&refs)
}

/// Loads what the tool wrote: the chain parses, the key matches the leaf
/// (`CertificateWithKey` checks), and the key file is owner-only.
fn written(dir: &Path) -> CertificateWithKey {
    let key_mode = std::fs::metadata(dir.join("key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600, "key file mode {key_mode:o}");
    CertificateWithKey::from_files(&dir.join("cert.pem"), &dir.join("key.pem")).unwrap()
}

fn account_line(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("account: "))
        .unwrap_or_else(|| panic!("no account line in {stdout}"))
        .to_owned()
}

#[test]
fn http01_issues_two_names_then_reuses_the_account_for_rsa() {
    let pebble = Pebble::start(PebbleOptions::nonce_reject(50));
    let dir = tempfile::tempdir().unwrap();
    let port = pebble.http_port.to_string();
    let mut args = base_args(&pebble, dir.path());
    args.extend(
        [
            "--challenge",
            "http-01",
            "--http-address",
            "127.0.0.1",
            "--http-port",
            &port,
            "--name",
            "mail.example.com",
            "--name",
            "imap.example.com",
        ]
        .map(str::to_owned),
    );
    let first = ok(&run(&args));
    let cert = written(dir.path());
    let mut names = cert.info.dns_names.clone();
    names.sort();
    assert_eq!(names, ["imap.example.com", "mail.example.com"]);
    assert_eq!(cert.info.key, KeyAlgorithm::EcdsaP256);
    // Pebble returns the leaf and its intermediate.
    assert!(cert.chain.len() >= 2, "chain of {}", cert.chain.len());

    // Second run: same data directory, so the same account; RSA key.
    let mut args = base_args(&pebble, dir.path());
    args.extend(
        [
            "--http-address",
            "127.0.0.1",
            "--http-port",
            &port,
            "--key-type",
            "rsa2048",
            "--name",
            "smtp.example.com",
        ]
        .map(str::to_owned),
    );
    let second = ok(&run(&args));
    assert_eq!(account_line(&first), account_line(&second));
    let cert = written(dir.path());
    assert_eq!(cert.info.dns_names, ["smtp.example.com"]);
    assert_eq!(cert.info.key, KeyAlgorithm::Rsa { bits: 2048 });
}

#[test]
fn dns01_wildcard_through_a_hook() {
    let pebble = Pebble::start(PebbleOptions::nonce_reject(50));
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("hook.log");
    let hook = dir.path().join("hook.sh");
    // Publishes into challtestsrv, whose DNS server Pebble resolves through.
    std::fs::write(
        &hook,
        format!(
            r#"#!/bin/sh
echo "$1 $2" >> '{log}'
case "$1" in
  add) curl -sf -X POST -d "{{\"host\":\"$2.\",\"value\":\"$3\"}}" '{api}/set-txt' ;;
  remove) curl -sf -X POST -d "{{\"host\":\"$2.\"}}" '{api}/clear-txt' ;;
  *) exit 3 ;;
esac
"#,
            log = log.display(),
            api = pebble.challtest_url
        ),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o700)).unwrap();
    let mut args = base_args(&pebble, dir.path());
    args.extend(
        [
            "--challenge",
            "dns-01",
            "--dns-hook",
            hook.to_str().unwrap(),
            "--name",
            "*.example.com",
        ]
        .map(str::to_owned),
    );
    ok(&run(&args));
    let cert = written(dir.path());
    assert_eq!(cert.info.dns_names, ["*.example.com"]);
    let calls = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        calls.lines().collect::<Vec<_>>(),
        [
            "add _acme-challenge.example.com",
            "remove _acme-challenge.example.com"
        ]
    );
}

#[test]
fn refuses_a_new_account_without_agreeing_to_the_terms() {
    let pebble = Pebble::start(PebbleOptions::nonce_reject(0));
    let dir = tempfile::tempdir().unwrap();
    let args: Vec<String> = base_args(&pebble, dir.path())
        .into_iter()
        .filter(|a| a != "--agree-tos")
        .chain(["--name", "mail.example.com", "--http-port", "0"].map(str::to_owned))
        .collect();
    let out = run(&args);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--agree-tos"), "{stderr}");
    assert!(!dir.path().join("key.pem").exists());
}

#[test]
fn usage_errors_exit_2_with_a_reason() {
    let help = tool(&["--help"]);
    assert!(help.status.success());
    assert!(text(&help).0.contains("--directory URL"));

    let cases: &[(&[&str], &str)] = &[
        (&[], "Usage: mailtls-acme --directory URL"),
        (&["--name", "a.example"], "--directory <URL>"),
        (
            &["--directory", "https://127.0.0.1:1/dir", "--data-dir", "d"],
            "--name <NAME>",
        ),
        (
            &[
                "--directory",
                "https://x/dir",
                "--name",
                "a.example",
                "--data-dir",
                "d",
                "--out-cert",
                "c",
                "--out-key",
                "k",
                "--challenge",
                "dns-01",
            ],
            "--dns-hook <CMD>",
        ),
        (
            &[
                "--directory",
                "https://x/dir",
                "--name",
                "*.a.example",
                "--data-dir",
                "d",
                "--out-cert",
                "c",
                "--out-key",
                "k",
            ],
            "wildcard name needs --challenge dns-01",
        ),
        (
            &["--key-type", "dsa"],
            "invalid value 'dsa' for '--key-type <TYPE>'",
        ),
        (
            &["--challenge", "tls-alpn-01"],
            "[possible values: http-01, dns-01]",
        ),
        (
            &["--http-port", "http"],
            "invalid value 'http' for '--http-port <N>'",
        ),
        (&["--bogus"], "unexpected argument '--bogus'"),
        (
            &[
                "--directory",
                "https://x/dir",
                "--name",
                "a.example",
                "--data-dir",
                "d",
                "--out-cert",
                "c",
                "--out-key",
                "k",
                "--dns-hook",
                "h",
            ],
            "--dns-hook applies to --challenge dns-01 only",
        ),
        (
            &[
                "--directory",
                "https://x/dir",
                "--name",
                "a.example",
                "--data-dir",
                "d",
                "--out-cert",
                "c",
                "--out-key",
                "c",
            ],
            "--out-cert and --out-key must be different files",
        ),
        (&["--only-extra-roots"], "--extra-root <PEM>"),
    ];
    for (args, want) in cases {
        let out = tool(args);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: want {want:?} in {stderr}");
    }
}

#[test]
fn unreachable_ca_is_a_temporary_failure() {
    let dir = tempfile::tempdir().unwrap();
    // A port nothing listens on (bound, then released).
    let port = mailtls_testpeers::free_port();
    let out = tool(&[
        "--directory",
        &format!("https://127.0.0.1:{port}/dir"),
        "--name",
        "mail.example.com",
        "--data-dir",
        dir.path().join("acme").to_str().unwrap(),
        "--out-cert",
        dir.path().join("c.pem").to_str().unwrap(),
        "--out-key",
        dir.path().join("k.pem").to_str().unwrap(),
    ]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(75), "{stderr}");
    assert!(stderr.contains("directory https://127.0.0.1:"), "{stderr}");
}
