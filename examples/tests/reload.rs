//! Hot reload in the running server: a certificate dropped into the watched
//! directory is served without a restart; a broken file beside it is
//! reported and holds back nothing (a renewal next to it is served).
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

    // A certificate without its key beside a renewal: the broken file is
    // reported, and it holds nothing back; the renewal is served.
    std::fs::write(
        ts.data_dir().join("certs").join("broken.crt"),
        &made.cert_pem,
    )
    .unwrap();
    let renewed = ca
        .issue(&ServerCertSpec::new(
            DnsName::parse("new.other.test").unwrap(),
        ))
        .unwrap();
    renewed
        .write_files(&ts.data_dir().join("certs"), "new.other.test")
        .unwrap();
    let renewed_fp = renewed
        .to_certificate_with_key()
        .unwrap()
        .info
        .fingerprint_hex();
    poll_until("the broken file reported", || async {
        resolver.stats().bad_file_count == 1
    })
    .await;
    let stats = resolver.stats();
    assert!(stats.bad_files[0].file.ends_with("broken.crt"), "{stats:?}");
    assert_eq!(stats.failed_reloads, 0, "{stats:?}");
    assert_eq!(stats.last_reload_error, None, "{stats:?}");
    poll_until("the renewal", || async {
        resolver
            .certificates()
            .iter()
            .any(|c| c.fingerprint == renewed_fp)
    })
    .await;
    assert_eq!(resolver.stats().certificates, 6);
    assert_eq!(served_for(&ts, "new.other.test").await, "new.other.test");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_file_at_start_is_reported_not_fatal() {
    let ts = start(|c, dir| {
        // Plain HTTP answers too, so the status JSON is one request away.
        c.web.mode = mailtls_core::WebSecurity::HttpAndHttps;
        certs_dir_with_broken_pem(dir);
    })
    .await;
    let stats = ts.server.resolver().stats();
    assert_eq!(stats.bad_file_count, 1, "{stats:?}");
    assert!(stats.bad_files[0].file.ends_with("broken.pem"), "{stats:?}");
    assert!(stats.certificates >= 1, "{stats:?}");
    assert_eq!(
        served_for(&ts, "imap.example.test").await,
        "imap.example.test"
    );
    // The status page says the same to the operator.
    let status = status_json(&ts).await;
    let resolver = &status["resolver"];
    assert_eq!(resolver["bad_file_count"], 1, "{status:#}");
    assert!(
        resolver["bad_files"][0]["file"]
            .as_str()
            .is_some_and(|f| f.ends_with("broken.pem")),
        "{status:#}"
    );
    assert_eq!(resolver["served_invalid"], 0, "{status:#}");
}
