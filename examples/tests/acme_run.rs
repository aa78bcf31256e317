//! ACME inside the reference server against Debian's Pebble (a real RFC 8555
//! CA, rejecting a fifth of all nonces): the certificate obtained at start
//! over http-01 on the web listener and over tls-alpn-01 on the HTTPS port,
//! checked by TLS handshakes that trust only Pebble's root; a renewal while
//! handshakes run (none may fail); failing runs logged and mailed to the
//! administrator.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{TestServer, client_config, private_tempdir, served_leaf, tls_connect};
use mailtls_examples::acme_run::{RunOutcome, RunRecord, RunTrigger, run_log};
use mailtls_examples::{Config, MailListener, Server};
use mailtls_testpeers::{Pebble, PebbleOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Pebble's ports: (tlsPort for tls-alpn-01, management API).
fn pebble_ports(pebble: &Pebble) -> (u16, u16) {
    (pebble.tls_port(), pebble.management_port())
}

/// Pebble's issuing root (made fresh by every Pebble process), as a PEM
/// file in `dir`: the only trust anchor of the test clients.
fn pebble_issuing_root(pebble: &Pebble, dir: &Path) -> PathBuf {
    let (_, mgmt) = pebble_ports(pebble);
    let out = std::process::Command::new("curl")
        .args(["-sSf", "--cacert"])
        .arg(&pebble.root_pem)
        .arg(format!("https://127.0.0.1:{mgmt}/roots/0"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = dir.join("pebble-root.pem");
    std::fs::write(&path, &out.stdout).unwrap();
    path
}

/// The embedded defaults in `dir` on free ports, `[acme]` on for `pebble`
/// with `extra` keys, an admin in a local domain.
fn acme_config(dir: &Path, directory: &str, ca_file: &Path, extra: &str) -> Config {
    let text = format!(
        "[server]\ndata_dir = {dir:?}\n\
         [acme]\nenabled = true\ndirectory = {directory:?}\nca_file = {ca:?}\n\
         agree_tos = true\nbad_nonce_retries = 30\nadmin = \"admin@example.test\"\n{extra}",
        dir = dir.display().to_string(),
        ca = ca_file.display().to_string(),
    );
    let mut config = Config::from_toml_str(&text).unwrap();
    config.use_ephemeral_ports();
    config
}

async fn start(config: Config, dir: tempfile::TempDir) -> TestServer {
    let server = Server::start(config).await.unwrap();
    TestServer { server, dir }
}

/// Waits for the first run (started with the server) to be logged.
async fn first_run(ts: &TestServer) -> RunRecord {
    let acme = ts.server.acme().expect("acme is enabled");
    let start = Instant::now();
    loop {
        if let Some(r) = acme.status().last_run {
            return r;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "no ACME run finished within 90 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// A handshake with `name` on the IMAPS port, trusting only `root`;
/// returns the leaf's SHA-256 fingerprint and issuer.
async fn handshake(ts: &TestServer, root: &Path, name: &str) -> std::io::Result<(String, String)> {
    let tcp = TcpStream::connect(ts.addr(MailListener::Imaps)).await?;
    let tls = tls_connect(client_config(root), name, tcp).await?;
    let leaf = served_leaf(&tls);
    Ok((leaf.fingerprint_hex(), leaf.issuer))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http01_on_the_web_listener_at_start() {
    let pebble = Pebble::start(PebbleOptions::nonce_reject(20));
    let dir = private_tempdir();
    let mut config = acme_config(dir.path(), &pebble.directory_url, &pebble.root_pem, "");
    // Pebble's validator connects to this port with plain HTTP; the server
    // redirects everything else there to HTTPS.
    config.web.http_port = pebble.http_port;
    let ts = start(config, dir).await;
    let acme = Arc::clone(ts.server.acme().unwrap());
    assert_eq!(
        acme.names(),
        [
            "mail.example.test",
            "imap.example.test",
            "pop.example.test",
            "mta-sts.example.test"
        ]
    );
    let run = first_run(&ts).await;
    assert_eq!(run.outcome, RunOutcome::Issued, "{run:?}");
    assert_eq!(run.trigger, RunTrigger::Start);
    assert_eq!(run.error, None);

    // Every ordered name is served with Pebble's certificate, which
    // verifies against Pebble's issuing root and nothing else.
    let root = pebble_issuing_root(&pebble, ts.data_dir());
    let status = acme.status();
    let cert = status.certificate.clone().unwrap();
    for name in acme.names() {
        let (fp, issuer) = handshake(&ts, &root, name).await.unwrap();
        assert_eq!(fp, cert.fingerprint_sha256, "{name}");
        assert!(issuer.contains("Pebble"), "{issuer}");
    }
    // A name the certificate does not cover still gets its test certificate
    // (the wildcard one), which Pebble's root does not verify.
    assert!(handshake(&ts, &root, "other.example.test").await.is_err());
    assert!(status.renewal_due.is_some() && status.next_run.is_some());
    assert_eq!(status.challenge, "http-01");
    assert_eq!(status.failures, 0);

    // On disk: the served file and every key owner-only; the test
    // certificates it replaces are gone, the wildcard one stays.
    let certs = ts.data_dir().join("certs");
    assert_eq!(mode(&certs.join("acme-mail.example.test.pem")), 0o600);
    assert!(!certs.join("mail.example.test.crt").exists());
    assert!(!certs.join("mail.example.test-rsa.crt").exists());
    assert!(certs.join("_wildcard.example.test.crt").exists());
    let acme_dir = ts.data_dir().join("acme");
    let mut keys = 0;
    let mut stack = vec![acme_dir.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                assert_eq!(mode(&p), 0o700, "{}", p.display());
                stack.push(p);
            } else {
                assert_eq!(mode(&p), 0o600, "{}", p.display());
                keys += usize::from(p.file_name().unwrap() == "key.pem");
            }
        }
    }
    assert_eq!(keys, 2, "account key and certificate key");

    // The log holds the run as one JSON line.
    let log = run_log::read(acme.run_log_path()).unwrap();
    assert_eq!(log, vec![run.clone()]);
    assert_eq!(acme.run_log_path(), acme_dir.join("runs.log"));

    // The challenge route answers on plain HTTP instead of redirecting.
    let mut tcp = TcpStream::connect(ts.server.addrs().http.unwrap())
        .await
        .unwrap();
    tcp.write_all(
        b"GET /.well-known/acme-challenge/no-such-token HTTP/1.1\r\nHost: mail.example.test\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut reply = String::new();
    tcp.read_to_string(&mut reply).await.unwrap();
    assert!(reply.starts_with("HTTP/1.1 404"), "{reply}");
    let mut tcp = TcpStream::connect(ts.server.addrs().http.unwrap())
        .await
        .unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: mail.example.test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut reply = String::new();
    tcp.read_to_string(&mut reply).await.unwrap();
    assert!(reply.starts_with("HTTP/1.1 301"), "{reply}");

    // A restart keeps the certificate (not due: no new order), and the
    // first-start maker no longer makes an RSA test certificate beside the
    // real one for the host name.
    let config = ts.server.config().clone();
    let TestServer { server, dir } = ts;
    server.shutdown().await;
    let ts = start(config, dir).await;
    assert!(
        ts.server.certs_report().written.is_empty(),
        "{:?}",
        ts.server.certs_report().written
    );
    let again = first_run(&ts).await;
    assert_eq!(again.outcome, RunOutcome::NotDue, "{again:?}");
    assert_eq!(again.trigger, RunTrigger::Start);
    assert!(!certs.join("mail.example.test-rsa.crt").exists());
    let (fp, _) = handshake(&ts, &root, "mail.example.test").await.unwrap();
    assert_eq!(fp, cert.fingerprint_sha256);
    let log = run_log::read(ts.server.acme().unwrap().run_log_path()).unwrap();
    assert_eq!(log.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_alpn01_on_the_https_port_at_start() {
    let pebble = Pebble::start(PebbleOptions::nonce_reject(20));
    let (tls_port, _) = pebble_ports(&pebble);
    let dir = private_tempdir();
    let mut config = acme_config(
        dir.path(),
        &pebble.directory_url,
        &pebble.root_pem,
        "challenge = \"tls-alpn-01\"\nnames = [\"mail.example.test\", \"imap.example.test\"]\nkey_type = \"rsa2048\"\n",
    );
    config.web.https_port = tls_port;
    let ts = start(config, dir).await;
    let run = first_run(&ts).await;
    assert_eq!(run.outcome, RunOutcome::Issued, "{run:?}");
    let acme = ts.server.acme().unwrap();
    assert_eq!(acme.status().challenge, "tls-alpn-01");
    let root = pebble_issuing_root(&pebble, ts.data_dir());
    let tcp = TcpStream::connect(ts.addr(MailListener::Imaps))
        .await
        .unwrap();
    let tls = tls_connect(client_config(&root), "imap.example.test", tcp)
        .await
        .unwrap();
    let leaf = served_leaf(&tls);
    assert!(leaf.issuer.contains("Pebble"), "{}", leaf.issuer);
    assert_eq!(leaf.key.family(), mailtls_core::KeyFamily::Rsa);
    // The resolver served the challenge certificates for both names.
    assert!(ts.server.resolver().stats().challenges_served >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_while_handshakes_run_fails_none() {
    let pebble = Pebble::start(PebbleOptions::nonce_reject(20));
    let dir = private_tempdir();
    let mut config = acme_config(
        dir.path(),
        &pebble.directory_url,
        &pebble.root_pem,
        "names = [\"mail.example.test\"]\n",
    );
    config.web.http_port = pebble.http_port;
    let ts = Arc::new(start(config, dir).await);
    assert_eq!(first_run(&ts).await.outcome, RunOutcome::Issued);
    let acme = Arc::clone(ts.server.acme().unwrap());
    let old = acme.status().certificate.unwrap().fingerprint_sha256;
    let root = pebble_issuing_root(&pebble, ts.data_dir());

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let mut loops = Vec::new();
    for _ in 0..4 {
        let (ts, root, stop, ok) = (
            Arc::clone(&ts),
            root.clone(),
            Arc::clone(&stop),
            Arc::clone(&ok),
        );
        loops.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            let mut seen = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match handshake(&ts, &root, "mail.example.test").await {
                    Ok((fp, _)) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                        if seen.last() != Some(&fp) {
                            seen.push(fp);
                        }
                    }
                    Err(e) => failures.push(e.to_string()),
                }
            }
            (failures, seen)
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = ok.load(Ordering::Relaxed);
    let run = acme.renew_now().await;
    assert_eq!(run.outcome, RunOutcome::Renewed, "{run:?}");
    assert_eq!(run.trigger, RunTrigger::Manual);
    let during = ok.load(Ordering::Relaxed) - before;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let new = acme.status().certificate.unwrap().fingerprint_sha256;
    assert_ne!(old, new);
    let mut total_failures = Vec::new();
    for l in loops {
        let (failures, seen) = l.await.unwrap();
        total_failures.extend(failures);
        // Each loop saw the old certificate, then the new one, never back.
        assert_eq!(seen.last(), Some(&new), "{seen:?}");
        assert!(seen.iter().all(|f| *f == old || *f == new), "{seen:?}");
    }
    assert!(
        total_failures.is_empty(),
        "failed handshakes: {total_failures:?}"
    );
    assert!(during > 0, "no handshake completed during the renewal");
    eprintln!(
        "{} handshakes, {during} during the renewal, none failed",
        ok.load(Ordering::Relaxed)
    );
    let log = run_log::read(acme.run_log_path()).unwrap();
    let outcomes: Vec<_> = log.iter().map(|r| r.outcome).collect();
    assert_eq!(outcomes, [RunOutcome::Issued, RunOutcome::Renewed]);
}

/// The admin mails in the spool, as text.
fn admin_mails(ts: &TestServer) -> Vec<String> {
    ts.spool_files()
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .filter(|m| m.contains("ACME certificate renewal failed"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_directory_is_logged_and_mailed_once() {
    let dir = private_tempdir();
    // A self-made root: nobody listens on the port anyway.
    let key = rcgen::KeyPair::generate().unwrap();
    let ca = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let ca_file = dir.path().join("ca-for-acme.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let directory = format!("https://127.0.0.1:{}/dir", mailtls_testpeers::free_port());
    let config = acme_config(dir.path(), &directory, &ca_file, "");
    let ts = start(config, dir).await;
    let run = first_run(&ts).await;
    assert_eq!(run.outcome, RunOutcome::Failed);
    let error = run.error.clone().unwrap();
    assert!(error.contains(&directory), "{error}");
    assert_eq!(run.failures, 1);
    assert!(run.admin_mailed);
    assert_eq!(run.certificate_expires, None);

    let mails = admin_mails(&ts);
    assert_eq!(mails.len(), 1, "{mails:?}");
    let mail = &mails[0];
    assert!(mail.contains("admin@example.test"), "{mail}");
    assert!(mail.contains("Auto-Submitted: auto-generated"), "{mail}");
    assert!(mail.contains(&directory), "{mail}");
    assert!(mail.contains(&run.next_run), "{mail}");

    // The next try is a minute away (back-off), not a hot loop; a second
    // failure is logged but not mailed again the same day.
    let acme = ts.server.acme().unwrap();
    let status = acme.status();
    assert_eq!(status.failures, 1);
    assert_eq!(status.next_run.as_deref(), Some(run.next_run.as_str()));
    let second = acme.renew_now().await;
    assert_eq!(second.outcome, RunOutcome::Failed);
    assert_eq!(second.failures, 2);
    assert!(!second.admin_mailed);
    assert_eq!(admin_mails(&ts).len(), 1);
    let log = run_log::read(acme.run_log_path()).unwrap();
    assert_eq!(log, vec![run, second]);
    // The server still serves its test certificates.
    let tcp = TcpStream::connect(ts.addr(MailListener::Imaps))
        .await
        .unwrap();
    tls_connect(client_config(&ts.ca_file()), "mail.example.test", tcp)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validation_pebble_refuses_is_logged_and_mailed() {
    let pebble = Pebble::start(PebbleOptions::nonce_reject(20));
    let dir = private_tempdir();
    // The web listener is NOT on Pebble's http-01 port: the validation
    // finds nobody there and Pebble marks the authorisation invalid.
    let config = acme_config(
        dir.path(),
        &pebble.directory_url,
        &pebble.root_pem,
        "names = [\"mail.example.test\"]\n",
    );
    let ts = start(config, dir).await;
    let run = first_run(&ts).await;
    assert_eq!(run.outcome, RunOutcome::Failed, "{run:?}");
    let error = run.error.clone().unwrap();
    assert!(error.starts_with("order:"), "{error}");
    assert!(run.admin_mailed);
    let mails = admin_mails(&ts);
    assert_eq!(mails.len(), 1);
    assert!(mails[0].contains("mail.example.test"));
    assert_eq!(
        run_log::read(ts.server.acme().unwrap().run_log_path()).unwrap(),
        vec![run]
    );
}

/// A CA that requires external account binding, with an alternate root:
/// without `acme.eab_kid` the run fails saying which keys to set; with
/// them the certificate is issued, on the chain `acme.preferred_chain`
/// names; a CA that forgot the account gets its key registered again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eab_and_preferred_chain_from_the_config() {
    let (kid, mac) = (
        "kid-server",
        "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W",
    );
    let pebble = Pebble::start(PebbleOptions {
        nonce_reject: Some(20),
        eab_keys: vec![(kid.to_owned(), mac.to_owned())],
        alternate_roots: Some(1),
        ..PebbleOptions::default()
    });
    let alt_cn = pebble.root_common_name(1).await;

    let dir = private_tempdir();
    let mut config = acme_config(dir.path(), &pebble.directory_url, &pebble.root_pem, "");
    config.web.http_port = pebble.http_port;
    let ts = start(config, dir).await;
    let run = first_run(&ts).await;
    assert_eq!(run.outcome, RunOutcome::Failed);
    let error = run.error.unwrap();
    assert!(error.contains("acme.eab_kid"), "{error}");
    drop(ts);

    let dir = private_tempdir();
    let key_file = dir.path().join("eab.key");
    std::fs::write(&key_file, format!("{mac}\n")).unwrap();
    let extra = format!(
        "eab_kid = {kid:?}\neab_hmac_key_file = {:?}\npreferred_chain = {alt_cn:?}\n",
        key_file.display().to_string()
    );
    let mut config = acme_config(dir.path(), &pebble.directory_url, &pebble.root_pem, &extra);
    config.web.http_port = pebble.http_port;
    let ts = start(config, dir).await;
    let run = first_run(&ts).await;
    assert_eq!(run.outcome, RunOutcome::Issued, "{run:?}");
    let served = std::fs::read(ts.data_dir().join("certs/acme-mail.example.test.pem")).unwrap();
    let chain = mailtls_core::load::certificates_from_bytes(&served, "served").unwrap();
    let top = mailtls_core::CertInfo::from_der(chain.last().unwrap()).unwrap();
    assert!(top.issuer.contains(&alt_cn), "{} / {alt_cn}", top.issuer);

    // The CA forgets the account (the stored URL now names one it never
    // gave out): after a restart, a renewal registers the key again and
    // gets its certificate.
    let config = ts.server.config().clone();
    let TestServer { server, dir } = ts;
    server.shutdown().await;
    let accounts = dir.path().join("acme/accounts");
    let file = std::fs::read_dir(&accounts)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
        .join("account.json");
    let mut stored: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let url = stored["url"].as_str().unwrap().to_owned();
    let forgotten = format!("{}/999999", url.rsplit_once('/').unwrap().0);
    stored["url"] = forgotten.clone().into();
    std::fs::write(&file, stored.to_string()).unwrap();
    let ts = start(config, dir).await;
    assert_eq!(first_run(&ts).await.outcome, RunOutcome::NotDue);
    let renewed = ts.server.acme().unwrap().renew_now().await;
    assert_eq!(renewed.outcome, RunOutcome::Renewed, "{renewed:?}");
    let stored: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_ne!(stored["url"], forgotten.as_str());
}
