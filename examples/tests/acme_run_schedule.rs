//! ACME inside the reference server renewing on its own schedule: Pebble
//! (through mailtls-testpeers' harness, which can shorten the certificate
//! lifetime) issues 40-second certificates, so the lifetime rule (renew with
//! half of a short lifetime left) makes the scheduler renew without being
//! asked, and the new certificate is served.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use base64::Engine;
use common::{TestServer, client_config, private_tempdir, served_leaf, tls_connect};
use mailtls_examples::acme_run::{RunOutcome, RunTrigger, run_log};
use mailtls_examples::{Config, MailListener, Server};
use mailtls_testpeers::{Pebble, PebbleOptions};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_lived_certificates_are_renewed_by_the_schedule() {
    let pebble = Pebble::start(PebbleOptions {
        validity_secs: Some(40),
        nonce_reject: Some(20),
        ..PebbleOptions::default()
    });
    let dir = private_tempdir();
    let https_root = dir.path().join("pebble-https.pem");
    let b64 = base64::engine::general_purpose::STANDARD.encode(&pebble.root);
    std::fs::write(
        &https_root,
        format!("-----BEGIN CERTIFICATE-----\n{b64}\n-----END CERTIFICATE-----\n"),
    )
    .unwrap();
    let text = format!(
        "[server]\ndata_dir = {data:?}\n\
         [acme]\nenabled = true\ndirectory = {directory:?}\nca_file = {ca:?}\n\
         agree_tos = true\nbad_nonce_retries = 30\nnames = [\"mail.example.test\"]\n\
         check_interval_secs = 5\n",
        data = dir.path().display().to_string(),
        directory = pebble.directory_url,
        ca = https_root.display().to_string(),
    );
    let mut config = Config::from_toml_str(&text).unwrap();
    config.use_ephemeral_ports();
    config.web.http_port = pebble.http_port;
    let ts = TestServer {
        server: Server::start(config).await.unwrap(),
        dir,
    };
    let acme = ts.server.acme().unwrap();
    let log_path = acme.run_log_path().to_owned();
    let start = Instant::now();
    let renewed = loop {
        let log = run_log::read(&log_path).unwrap();
        if let Some(r) = log.iter().find(|r| r.outcome == RunOutcome::Renewed) {
            assert_eq!(log[0].outcome, RunOutcome::Issued, "{log:?}");
            break r.clone();
        }
        assert!(
            log.iter().all(|r| r.outcome != RunOutcome::Failed),
            "{log:?}"
        );
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "not renewed within 60 s: {log:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(renewed.trigger, RunTrigger::Schedule);
    // The renewed certificate is the one served.
    let out = std::process::Command::new("curl")
        .args(["-sSf", "--cacert"])
        .arg(&https_root)
        .arg(format!(
            "https://127.0.0.1:{}/roots/0",
            pebble.management_port
        ))
        .output()
        .unwrap();
    assert!(out.status.success());
    let root = ts.data_dir().join("pebble-root.pem");
    std::fs::write(&root, &out.stdout).unwrap();
    let status = acme.status();
    let cert = status.certificate.unwrap();
    assert_eq!(
        renewed.certificate_expires.as_deref(),
        Some(cert.not_after.as_str())
    );
    let tcp = TcpStream::connect(ts.addr(MailListener::Imaps))
        .await
        .unwrap();
    let tls = tls_connect(client_config(&root), "mail.example.test", tcp)
        .await
        .unwrap();
    assert_eq!(served_leaf(&tls).fingerprint_hex(), cert.fingerprint_sha256);
    // The next run is planned for the new certificate's renewal time.
    assert!(status.renewal_due.is_some());
}
