//! Hot reload in the running server: a certificate dropped into the watched
//! directory is served without a restart; a broken file is refused and the
//! old set stays in service.
// Helpers outside #[test] functions may unwrap too: a failed unwrap is a
// failed test, as clippy.toml already allows inside the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use mailtls_core::{CertificateAuthority, DnsName, ServerCertSpec};
use mailtls_examples::MailListener;

/// The first DNS name of the certificate served for `sni` on IMAPS.
async fn served_for(ts: &TestServer, sni: &str) -> String {
    let tcp = tokio::net::TcpStream::connect(ts.addr(MailListener::Imaps))
        .await
        .unwrap();
    let tls = tls_connect(client_config(&ts.ca_file()), sni, tcp).await;
    match tls {
        Ok(tls) => served_leaf(&tls).dns_names[0].clone(),
        // Before the reload the default certificate does not match the name.
        Err(_) => String::new(),
    }
}

async fn poll_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_certificate_is_served_without_restart() {
    let ts = start(|_, _| {}).await;
    let resolver = ts.server.resolver().clone();
    assert_eq!(resolver.generation(), 1);
    assert_eq!(
        served_for(&ts, "new.other.test").await,
        "",
        "not served yet"
    );

    let ca_dir = ts.data_dir().join("ca");
    let ca = CertificateAuthority::from_pem(
        &std::fs::read_to_string(ca_dir.join("ca.crt")).unwrap(),
        &std::fs::read_to_string(ca_dir.join("ca.key")).unwrap(),
    )
    .unwrap();
    let made = ca
        .issue(&ServerCertSpec::new(
            DnsName::parse("new.other.test").unwrap(),
        ))
        .unwrap();
    made.write_files(&ts.data_dir().join("certs"), "new.other.test")
        .unwrap();

    poll_until("the new certificate", || async {
        served_for(&ts, "new.other.test").await == "new.other.test"
    })
    .await;
    let stats = resolver.stats();
    assert!(stats.generation >= 2, "{stats:?}");
    assert_eq!(stats.certificates, 6);
    // The others are still there.
    assert_eq!(
        served_for(&ts, "imap.example.test").await,
        "imap.example.test"
    );

    // A certificate without its key: the reload is refused, the set stays.
    std::fs::write(
        ts.data_dir().join("certs").join("broken.crt"),
        &made.cert_pem,
    )
    .unwrap();
    poll_until("the refused reload", || async {
        resolver.stats().last_reload_error.is_some()
    })
    .await;
    let stats = resolver.stats();
    assert!(stats.failed_reloads >= 1, "{stats:?}");
    assert!(
        stats
            .last_reload_error
            .as_deref()
            .unwrap()
            .contains("broken.crt"),
        "{stats:?}"
    );
    assert_eq!(stats.certificates, 6);
    assert_eq!(served_for(&ts, "new.other.test").await, "new.other.test");
}
