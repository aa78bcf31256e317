//! `RunningServer::reload`, what SIGHUP calls, in-process: a new MTA-STS
//! domain is published with a test certificate made for its policy host;
//! keys that need a restart are named; an invalid configuration or a
//! certificate directory that does not load changes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use common::*;
use mailtls_core::WebSecurity;
use mailtls_examples::{Config, MailListener, ServerError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// GET the MTA-STS policy of `domain` over HTTPS (SNI and Host
/// `mta-sts.DOMAIN`, verified against the test CA): status and body.
async fn policy(ts: &TestServer, domain: &str) -> (u16, String) {
    let host = format!("mta-sts.{domain}");
    let mut config = (*client_config(&ts.ca_file())).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(ts.server.addrs().https.unwrap())
        .await
        .unwrap();
    let mut tls = tls_connect(Arc::new(config), &host, tcp).await.unwrap();
    let req = format!(
        "GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    );
    tls.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(IO_TIMEOUT, tls.read_to_end(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (
        head.split(' ').nth(1).unwrap().parse().unwrap(),
        body.to_owned(),
    )
}

/// The running configuration with `[mta_sts]`/`[tls_rpt]` from `toml`.
fn with_policy(base: &Config, toml: &str) -> Config {
    let mut new = base.clone();
    new.mta_sts = Config::from_toml_str(toml).unwrap().mta_sts;
    new
}

async fn https_server() -> TestServer {
    start(|c, _| {
        c.web.mode = WebSecurity::HttpAndHttps;
        // Only reload() may load certificates here.
        c.tls.watch = false;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_policy_domain_is_published_with_its_certificate() {
    let ts = https_server().await;
    let generation = ts.server.resolver().generation();
    let new = with_policy(
        ts.server.config(),
        "[mta_sts]\ndomains = [\"example.test\", \"other.test\"]\nmode = \"enforce\"\n\
         [tls_rpt]\nrua = [\"mailto:tlsrpt@example.test\"]\n",
    );
    let report = ts.server.reload(new).await.unwrap();
    assert_eq!(report.applied, ["mta_sts", "tls_rpt.rua"]);
    assert!(report.restart_required.is_empty(), "{report:?}");
    assert!(report.generation > generation, "{report:?}");
    let made: Vec<_> = report
        .certificates_made
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(made, ["mta-sts.other.test.crt"], "{report:?}");

    // Served at once, with a certificate the client verifies.
    let (code, body) = policy(&ts, "other.test").await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("mode: enforce"), "{body}");
    let (_, body) = policy(&ts, "example.test").await;
    assert!(body.contains("mode: enforce"), "{body}");
    let current = ts.server.current_config();
    assert_eq!(current.mta_sts.publications.len(), 2);
    assert_eq!(
        current.mta_sts.publications[0].rua,
        ["mailto:tlsrpt@example.test"]
    );
    // The start configuration is still what it was.
    assert_eq!(ts.server.config().mta_sts.publications.len(), 1);

    // The new rua mailbox receives reports without a restart.
    send_mail(&ts, "tlsrpt@example.test", &REPORT_MAIL).await;
    let status = status_json(&ts).await;
    let received = &status["tlsrpt"]["received"][0];
    assert_eq!(received["policy_domain"], "other.test", "{status:#}");
    assert_eq!(received["failed"], 2, "{status:#}");
}

/// A minimal RFC 8460 report for `other.test`, as a sender mails it.
const REPORT_MAIL: [&str; 9] = [
    "From: reporter@sender.example",
    "To: tlsrpt@example.test",
    "Subject: Report Domain: other.test Submitter: sender.example",
    "TLS-Report-Domain: other.test",
    "TLS-Report-Submitter: sender.example",
    "MIME-Version: 1.0",
    "Content-Type: application/tlsrpt+json",
    "",
    r#"{"organization-name":"Sender Org","date-range":{"start-datetime":"2026-11-23T00:00:00Z","end-datetime":"2026-11-23T23:59:59Z"},"contact-info":"mailto:tls@sender.example","report-id":"r2@sender.example","policies":[{"policy":{"policy-type":"sts","policy-domain":"other.test"},"summary":{"total-successful-session-count":5,"total-failure-session-count":2},"failure-details":[{"result-type":"sts-webpki-invalid","failed-session-count":2}]}]}"#,
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_only_keys_are_reported_and_left_alone() {
    let ts = https_server().await;
    let smtp = ts.addr(MailListener::Smtp);
    let mut new = ts.server.config().clone();
    new.smtp.port = 2;
    new.server.max_message_size = 1024;
    new.users.clear();
    let report = ts.server.reload(new).await.unwrap();
    assert!(report.applied.is_empty(), "{report:?}");
    assert_eq!(
        report.restart_required,
        ["server.max_message_size", "smtp.port", "users"]
    );
    // Still on the old port, with the old limit in the configuration in effect.
    let mut c = connect(smtp).await;
    assert_eq!(c.reply().await.0, 220);
    assert_eq!(
        ts.server.current_config().server.max_message_size,
        ts.server.config().server.max_message_size
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_config_changes_nothing_and_a_broken_certificate_file_is_reported() {
    let ts = https_server().await;
    let generation = ts.server.resolver().generation();

    // Validation fails: the error names the key.
    let mut bad = with_policy(
        ts.server.config(),
        "[mta_sts]\ndomains = [\"example.test\"]\nmode = \"enforce\"\n",
    );
    bad.server.max_connections = 0;
    let e = ts.server.reload(bad).await.unwrap_err();
    assert!(matches!(e, ServerError::Config(_)), "{e:?}");
    assert!(e.to_string().contains("server.max_connections"), "{e}");
    assert!(
        policy(&ts, "example.test")
            .await
            .1
            .contains("mode: testing")
    );
    assert_eq!(ts.server.resolver().generation(), generation);

    // A certificate without its key in the directory: reported in the
    // report's warnings, and the reload (the policy change with it) goes
    // through with every good certificate still served.
    let certs = ts.data_dir().join("certs");
    std::fs::copy(
        certs.join("imap.example.test.crt"),
        certs.join("orphan.crt"),
    )
    .unwrap();
    let new = with_policy(
        ts.server.config(),
        "[mta_sts]\ndomains = [\"example.test\"]\nmode = \"enforce\"\n",
    );
    let certificates = ts.server.resolver().stats().certificates;
    let report = ts.server.reload(new).await.unwrap();
    assert_eq!(report.applied, ["mta_sts"]);
    assert!(
        report.warnings.iter().any(|w| w.contains("orphan.crt")),
        "{report:?}"
    );
    assert_eq!(report.certificates, certificates);
    assert!(ts.server.resolver().generation() > generation);
    assert_eq!(ts.server.resolver().stats().bad_file_count, 1);
    assert!(
        policy(&ts, "example.test")
            .await
            .1
            .contains("mode: enforce")
    );
}
