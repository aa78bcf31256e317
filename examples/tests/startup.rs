//! Start-up failures name what to fix, and a restart reuses the CA and
//! certificates made by the first start.

// Helpers outside #[test] functions may unwrap too: a failed unwrap is a
// failed test, as clippy.toml already allows inside the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use mailtls_examples::{MailListener, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_name_the_config_key() {
    let dir = private_tempdir();

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut config = test_config(dir.path());
    config.imap.port = taken.local_addr().unwrap().port();
    let e = Server::start(config).await.unwrap_err().to_string();
    assert!(e.contains("imap.port"), "{e}");

    let mut config = test_config(dir.path());
    config.tls.client_ca_file = Some(dir.path().join("missing-ca.crt"));
    let e = Server::start(config).await.unwrap_err().to_string();
    assert!(
        e.contains("tls.client_ca_file") && e.contains("missing-ca.crt"),
        "{e}"
    );

    let mut config = test_config(dir.path());
    config.smtp.port = 2525;
    config.pop3.port = 2525;
    let e = Server::start(config).await.unwrap_err().to_string();
    assert!(e.contains("pop3.port") && e.contains("smtp.port"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_reuses_the_ca_and_certificates() {
    let ts = start(|_, _| {}).await;
    let report = ts.server.certs_report().clone();
    assert!(report.ca_created);
    assert_eq!(report.written.len(), 5);
    let ca_before = std::fs::read(ts.ca_file()).unwrap();
    let dir = ts.dir;
    ts.server.shutdown().await;

    let mut config = test_config(dir.path());
    // New names: one the wildcard certificate already covers (nothing to
    // make) and one nothing covers (made, signed by the same CA).
    for name in ["smtp.example.test", "mx.other.test"] {
        config.server.names.push(name.parse().unwrap());
    }
    let server = Server::start(config).await.unwrap();
    let report = server.certs_report();
    assert!(!report.ca_created);
    assert_eq!(report.written.len(), 1, "{report:?}");
    assert!(report.written[0].ends_with("mx.other.test.crt"));
    assert_eq!(
        std::fs::read(dir.path().join("ca/ca.crt")).unwrap(),
        ca_before
    );
    assert_eq!(server.resolver().stats().certificates, 6);
    assert!(server.addrs().mail(MailListener::Smtp).is_some());
    server.shutdown().await;
}
