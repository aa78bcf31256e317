//! Issue 7, "Postfix as a sender into it": a real Postfix (its own instance
//! from mailtls-testpeers) relays to the reference server's SMTP listener
//! with `smtp_tls_security_level = verify` against the server's test CA.
//! The message must land in the spool with TLS recorded in its `Received:`
//! header, and Postfix must log a verified TLS connection. A second Postfix
//! that trusts another CA must refuse to deliver (so the check is real).
//! Needs root and the Debian package `postfix`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use mailtls_examples::MailListener;
use mailtls_testpeers::{Postfix, TlsLevel};

/// The server's CA copied where Postfix's unprivileged smtp(8) can read it
/// (the test server's data directory is 0700).
fn readable_ca(pem: &str) -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(dir.path().join("ca.pem"), pem).unwrap();
    dir
}

fn spooled_with(ts: &TestServer, needle: &str) -> Option<String> {
    ts.spool_files()
        .into_iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .find(|m| m.contains(needle))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postfix_relays_over_verified_starttls() {
    let ts = start(|_, _| {}).await;
    let ca = readable_ca(&std::fs::read_to_string(ts.ca_file()).unwrap());
    let smtp = ts.addr(MailListener::Smtp);
    let postfix = Postfix::builder("sender.postfix.test")
        .relay_to(smtp, TlsLevel::Verify)
        .relay_ca_file(&ca.path().join("ca.pem"))
        .verify_name("mail.example.test")
        .start();
    postfix.sendmail(
        "alice@sender.postfix.test",
        &["bob@example.test"],
        "From: alice@sender.postfix.test\nTo: bob@example.test\n\
         Subject: inbound-postfix-verified\n\nhello over verified TLS\n",
    );
    let log = postfix.wait_for_log("status=sent").await;
    assert!(
        log.contains("Verified TLS connection established")
            || log.contains("Trusted TLS connection established"),
        "no verified TLS in Postfix's log:\n{log}"
    );

    let start = Instant::now();
    let stored = loop {
        if let Some(m) = spooled_with(&ts, "inbound-postfix-verified") {
            break m;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "not spooled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let received = stored
        .split("\r\nReceived: ")
        .nth(1)
        .and_then(|r| r.split("\r\n\r\n").next())
        .unwrap_or_else(|| panic!("no Received header:\n{stored}"));
    assert!(
        stored.starts_with("Return-Path: <alice@sender.postfix.test>\r\n"),
        "{stored}"
    );
    assert!(
        received.starts_with("from sender.postfix.test "),
        "{received}"
    );
    assert!(received.contains("with ESMTPS "), "{received}");
    assert!(received.contains("(TLSv1_"), "{received}");
    assert!(received.contains("for <bob@example.test>"), "{received}");
    assert!(stored.contains("hello over verified TLS"), "{stored}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postfix_refuses_a_server_it_cannot_verify() {
    let ts = start(|_, _| {}).await;
    // A CA that did not sign the server's certificate.
    let other =
        mailtls_core::CertificateAuthority::new_test_ca(&mailtls_core::CaSpec::default()).unwrap();
    let ca = readable_ca(&other.certificate().cert_pem);
    let postfix = Postfix::builder("sender.postfix.test")
        .relay_to(ts.addr(MailListener::Smtp), TlsLevel::Verify)
        .relay_ca_file(&ca.path().join("ca.pem"))
        .verify_name("mail.example.test")
        .start();
    postfix.sendmail(
        "alice@sender.postfix.test",
        &["bob@example.test"],
        "Subject: inbound-postfix-untrusted\n\nmust not arrive\n",
    );
    let log = postfix.wait_for_log("status=deferred").await;
    assert!(log.contains("certificate verification failed"), "{log}");
    assert!(!log.contains("status=sent"), "{log}");
    assert!(spooled_with(&ts, "inbound-postfix-untrusted").is_none());
}
