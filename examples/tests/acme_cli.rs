//! The `mailtls-acme` binary against Debian's Pebble (a real RFC 8555 CA)
//! rejecting half of all nonces: http-01 served by the tool itself, dns-01
//! through a hook that publishes into pebble-challtestsrv, the written chain
//! and key checked with mailtls-core, and clear errors with exit codes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use mailtls_core::{CertificateWithKey, KeyAlgorithm};
use mailtls_sni::{ResolverOptions, SniResolver, WatchOptions};
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

/// The options of every command: the CA, trusted through its own
/// certificate only, and the data directory; 20 badNonce retries because
/// half of all nonces are rejected.
fn ca_args(pebble: &Pebble, dir: &Path) -> Vec<String> {
    [
        "--directory",
        &pebble.directory_url,
        "--extra-root",
        pebble.root_pem.to_str().unwrap(),
        "--only-extra-roots",
        "--bad-nonce-retries",
        "20",
        "--data-dir",
        dir.join("acme").to_str().unwrap(),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

/// The options every issuing run shares: `ca_args`, the contact, the
/// terms, the output files.
fn base_args(pebble: &Pebble, dir: &Path) -> Vec<String> {
    let mut args = ca_args(pebble, dir);
    args.extend(
        [
            "--email",
            "postmaster@example.com",
            "--agree-tos",
            "--out-cert",
            dir.join("cert.pem").to_str().unwrap(),
            "--out-key",
            dir.join("key.pem").to_str().unwrap(),
            "--timeout",
            "60",
        ]
        .map(str::to_owned),
    );
    args
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
        (&["--eab-hmac-key-file", "f"], "--eab-kid <KID>"),
        (
            &[
                "--eab-kid",
                "k",
                "--eab-hmac-key",
                "x",
                "--eab-hmac-key-file",
                "f",
            ],
            "cannot be used with",
        ),
        (&["revoke", "--directory", "https://x/dir"], "--cert <FILE>"),
        (
            &["revoke", "--reason", "whim"],
            "invalid value 'whim' for '--reason <REASON>'",
        ),
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

/// `base_args` plus the http-01 responder on Pebble's validation port and
/// `names`.
fn http01_args(pebble: &Pebble, dir: &Path, names: &[&str]) -> Vec<String> {
    let mut args = base_args(pebble, dir);
    args.extend(
        [
            "--http-address",
            "127.0.0.1",
            "--http-port",
            &pebble.http_port.to_string(),
        ]
        .map(str::to_owned),
    );
    for n in names {
        args.extend(["--name".to_owned(), (*n).to_owned()]);
    }
    args
}

/// A Pebble, a working directory, and the http-01 arguments for a
/// certificate for mail.example.com there.
fn mail_run(opts: PebbleOptions) -> (Pebble, tempfile::TempDir, Vec<String>) {
    let pebble = Pebble::start(opts);
    let dir = tempfile::tempdir().unwrap();
    let args = http01_args(&pebble, dir.path(), &["mail.example.com"]);
    (pebble, dir, args)
}

/// Runs `args`, which must succeed and write a mail.example.com certificate.
fn issued_for_mail(args: &[String], dir: &Path) -> CertificateWithKey {
    ok(&run(args));
    let cert = written(dir);
    assert_eq!(cert.info.dns_names, ["mail.example.com"]);
    cert
}

/// The same arguments after a subcommand.
fn with_command(command: &str, args: &[String]) -> Vec<String> {
    std::iter::once(command.to_owned())
        .chain(args.iter().cloned())
        .collect()
}

fn failed_with(out: &Output, code: i32) -> String {
    let (stdout, stderr) = text(out);
    assert_eq!(out.status.code(), Some(code), "{stdout}\n{stderr}");
    stderr
}

/// Running the tool again with the same data directory orders a new
/// certificate (a finished order is history), with the key type asked for.
#[test]
fn a_second_run_renews_with_the_key_type_asked_for() {
    let (_pebble, dir, args) = mail_run(PebbleOptions::nonce_reject(50));
    ok(&run(&args));
    let first = written(dir.path());
    assert_eq!(first.info.key, KeyAlgorithm::EcdsaP256);

    let mut again = args.clone();
    again.extend(["--key-type", "rsa2048"].map(str::to_owned));
    ok(&run(&again));
    let second = written(dir.path());
    assert_ne!(first.info.serial, second.info.serial, "a new certificate");
    assert_eq!(second.info.key, KeyAlgorithm::Rsa { bits: 2048 });

    // And once more with the same type: still a new certificate and key.
    ok(&run(&again));
    let third = written(dir.path());
    assert_ne!(second.info.serial, third.info.serial);
    assert_ne!(second.info.public_key_raw, third.info.public_key_raw);
}

/// The cron case: `renew --if-due` leaves a fresh certificate alone, and
/// once half of its (short) lifetime is gone renews it; an SNI resolver
/// watching the directory the pair is written to serves the new one.
#[test]
fn renew_if_due_from_cron_renews_only_when_due() {
    let (pebble, dir, args) = mail_run(PebbleOptions {
        nonce_reject: Some(50),
        validity_secs: Some(30),
        ..PebbleOptions::default()
    });
    // Written where a server's certificate directory watcher pairs them.
    let certs = dir.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    let (crt, key) = (certs.join("mail.crt"), certs.join("mail.key"));
    let mut renew = with_command("renew", &args);
    renew.extend(
        [
            "--if-due",
            "--out-cert",
            crt.to_str().unwrap(),
            "--out-key",
            key.to_str().unwrap(),
        ]
        .map(str::to_owned),
    );
    let current = || CertificateWithKey::from_files(&crt, &key).unwrap();
    // No certificate yet: renew issues one.
    let stdout = ok(&run(&renew));
    assert!(stdout.contains("ordering one"), "{stdout}");
    let first = current();

    let rt = tokio::runtime::Runtime::new().unwrap();
    let resolver = Arc::new(SniResolver::new(ResolverOptions::default()));
    resolver.reload_from_dir(&certs).unwrap();
    let served = || {
        resolver
            .certificates()
            .iter()
            .find(|c| c.names == ["mail.example.com"])
            .map(|c| c.fingerprint.clone())
    };
    assert_eq!(served(), Some(first.info.fingerprint_hex()));
    let _watcher = rt
        .block_on(async {
            mailtls_sni::watch_dir(
                Arc::clone(&resolver),
                certs.clone(),
                WatchOptions::default(),
            )
        })
        .unwrap();

    let stdout = ok(&run(&renew));
    assert!(stdout.contains("not due"), "{stdout}");
    assert!(stdout.contains("lifetime rule"), "{stdout}");
    assert_eq!(current().info.serial, first.info.serial);

    // Under ten days of lifetime, renewal comes with half of it left.
    let lifetime = first
        .info
        .not_after
        .duration_since(first.info.not_before)
        .unwrap();
    let due = first.info.not_before + lifetime / 2 + Duration::from_secs(1);
    if let Ok(wait) = due.duration_since(SystemTime::now()) {
        std::thread::sleep(wait);
    }
    let stdout = ok(&run(&renew));
    assert!(stdout.contains("wrote"), "{stdout}");
    let second = current();
    assert_ne!(second.info.serial, first.info.serial, "renewed");
    // The watcher picks up the new pair.
    let deadline = Instant::now() + Duration::from_secs(30);
    while served() != Some(second.info.fingerprint_hex()) {
        assert!(
            Instant::now() < deadline,
            "the resolver still serves {:?}",
            served()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // `show` lists the stored certificate with its renewal time.
    let stdout = ok(&run(&with_command("show", &ca_args(&pebble, dir.path()))));
    assert!(stdout.contains("certificate mail.example.com:"), "{stdout}");
    assert!(stdout.contains(&second.info.serial), "{stdout}");
    assert!(stdout.contains("renew at:"), "{stdout}");
    assert!(stdout.contains("status:    valid"), "{stdout}");
}

/// A CA that requires external account binding: refused without it (a
/// usage error naming the flags), refused with a wrong key (exit 1),
/// accepted with the key from a file.
#[test]
fn external_account_binding_from_a_key_file() {
    let kid = "kid-mailtls";
    let key = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";
    let (_pebble, dir, args) = mail_run(PebbleOptions {
        nonce_reject: Some(50),
        eab_keys: vec![(kid.to_owned(), key.to_owned())],
        ..PebbleOptions::default()
    });
    let stderr = failed_with(&run(&args), 2);
    assert!(stderr.contains("--eab-kid"), "{stderr}");

    let wrong = dir.path().join("wrong.key");
    std::fs::write(&wrong, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n").unwrap();
    let mut bad = args.clone();
    bad.extend(
        [
            "--eab-kid",
            kid,
            "--eab-hmac-key-file",
            wrong.to_str().unwrap(),
        ]
        .map(str::to_owned),
    );
    let stderr = failed_with(&run(&bad), 1);
    assert!(stderr.contains("account"), "{stderr}");

    let file = dir.path().join("eab.key");
    std::fs::write(&file, format!("{key}\n")).unwrap();
    let mut good = args.clone();
    good.extend(
        [
            "--eab-kid",
            kid,
            "--eab-hmac-key-file",
            file.to_str().unwrap(),
        ]
        .map(str::to_owned),
    );
    issued_for_mail(&good, dir.path());
}

/// Errors keep their cause and the exit status says whether to retry: an
/// untrusted CA certificate and a URL that is no directory are exit 1, a
/// refused connection 75, each saying why.
#[test]
fn errors_name_their_cause_and_exit_by_class() {
    let pebble = Pebble::start(PebbleOptions::nonce_reject(0));
    let dir = tempfile::tempdir().unwrap();
    // Pebble's certificate without --extra-root: untrusted.
    let mut untrusted = base_args(&pebble, dir.path());
    let at = untrusted.iter().position(|a| a == "--extra-root").unwrap();
    // "--extra-root PEM --only-extra-roots" out: the web PKI alone.
    untrusted.drain(at..at + 3);
    untrusted.extend(["--name", "mail.example.com"].map(str::to_owned));
    let stderr = failed_with(&run(&untrusted), 1);
    assert!(stderr.contains("certificate"), "{stderr}");
    assert!(stderr.contains("UnknownIssuer"), "{stderr}");

    // A URL that answers, but not with a directory.
    let mut not_dir = base_args(&pebble, dir.path());
    not_dir[1] = format!("https://127.0.0.1:{}/roots/0", pebble.management_port());
    not_dir.extend(["--name", "mail.example.com"].map(str::to_owned));
    let stderr = failed_with(&run(&not_dir), 1);
    assert!(stderr.contains("is not an ACME directory"), "{stderr}");

    // Nothing listening: temporary, and it says the connection was refused.
    let mut refused = base_args(&pebble, dir.path());
    refused[1] = format!("https://127.0.0.1:{}/dir", mailtls_testpeers::free_port());
    refused.extend(["--name", "mail.example.com"].map(str::to_owned));
    let stderr = failed_with(&run(&refused), 75);
    assert!(stderr.to_lowercase().contains("refused"), "{stderr}");
}

/// A CA rejecting 80% of nonces: the default retries with back-off still
/// get the certificate.
#[test]
fn default_bad_nonce_retries_survive_heavy_rejection() {
    let (_pebble, dir, args) = mail_run(PebbleOptions::nonce_reject(80));
    // Without --bad-nonce-retries: the default.
    let pos = args
        .iter()
        .position(|a| a == "--bad-nonce-retries")
        .unwrap();
    let args: Vec<String> = args[..pos]
        .iter()
        .chain(&args[pos + 2..])
        .cloned()
        .collect();
    issued_for_mail(&args, dir.path());
}

/// The stored account URL points at an account the CA does not know: the
/// tool says so, registers the stored key again and carries on.
#[test]
fn a_forgotten_account_is_registered_again() {
    let (_pebble, dir, args) = mail_run(PebbleOptions::nonce_reject(50));
    let first = account_line(&ok(&run(&args)));
    // Make the CA forget: point the stored URL at an account id it never
    // gave out.
    let accounts = dir.path().join("acme/accounts");
    let account_dir = std::fs::read_dir(&accounts)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let file = account_dir.join("account.json");
    let json = std::fs::read_to_string(&file).unwrap();
    let forgotten = format!("{}/999999", first.rsplit_once('/').unwrap().0);
    std::fs::write(&file, json.replace(&first, &forgotten)).unwrap();

    let out = run(&args);
    let stdout = ok(&out);
    let (_, stderr) = text(&out);
    assert!(stderr.contains("accountDoesNotExist"), "{stderr}");
    assert!(stderr.contains(&forgotten), "{stderr}");
    // Same key: Pebble hands back the account it has for it.
    assert_eq!(account_line(&stdout), first);
}

/// revoke (by account, then by certificate key), rollover and deactivate
/// through the tool.
#[test]
fn revoke_rollover_deactivate() {
    let (pebble, dir, args) = mail_run(PebbleOptions::nonce_reject(50));
    let account = account_line(&ok(&run(&args)));
    let ca = ca_args(&pebble, dir.path());
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");

    let mut revoke = with_command("revoke", &ca);
    revoke.extend(["--cert", cert.to_str().unwrap(), "--reason", "superseded"].map(str::to_owned));
    let stdout = ok(&run(&revoke));
    assert!(stdout.contains("revoked"), "{stdout}");
    // Twice is refused by the CA: permanent.
    let stderr = failed_with(&run(&revoke), 1);
    assert!(stderr.contains("alreadyRevoked"), "{stderr}");

    // Rollover: same account, new key; the next run works with it.
    let show = with_command("show", &ca);
    let thumbprint = |out: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix("key:"))
            .unwrap()
            .trim()
            .to_owned()
    };
    let before = thumbprint(&ok(&run(&show)));
    let stdout = ok(&run(&with_command("rollover", &ca)));
    assert!(stdout.contains(&account), "{stdout}");
    let after = thumbprint(&ok(&run(&show)));
    assert_ne!(before, after);
    assert_eq!(account_line(&ok(&run(&args))), account);

    // Revoked by its own key, as if the account were lost.
    let mut by_key = with_command("revoke", &ca);
    by_key.extend(
        [
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ]
        .map(str::to_owned),
    );
    ok(&run(&by_key));

    // Deactivate needs --yes; then the account is gone and the next
    // run registers a new one.
    failed_with(&run(&with_command("deactivate", &ca)), 2);
    let mut deactivate = with_command("deactivate", &ca);
    deactivate.push("--yes".to_owned());
    let stdout = ok(&run(&deactivate));
    assert!(stdout.contains("deactivated"), "{stdout}");
    assert!(ok(&run(&show)).contains("account:   none yet"));
    assert_ne!(account_line(&ok(&run(&args))), account);
}

/// With Pebble offering an alternate chain, --preferred-chain picks it by
/// its root's common name.
#[test]
fn preferred_chain_picks_the_alternate() {
    let pebble = Pebble::start(PebbleOptions {
        nonce_reject: Some(50),
        alternate_roots: Some(1),
        ..PebbleOptions::default()
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    let alt_cn = rt.block_on(pebble.root_common_name(1));
    let dir = tempfile::tempdir().unwrap();
    let top_issuer = |cert: &CertificateWithKey| {
        let top = cert.chain.last().unwrap();
        mailtls_core::CertInfo::from_der(top).unwrap().issuer
    };
    let args = http01_args(&pebble, dir.path(), &["mail.example.com"]);
    ok(&run(&args));
    assert!(!top_issuer(&written(dir.path())).contains(&alt_cn));
    let mut preferred = args.clone();
    preferred.extend(["--preferred-chain".to_owned(), alt_cn.clone()]);
    ok(&run(&preferred));
    assert!(top_issuer(&written(dir.path())).contains(&alt_cn));
}
