//! Pebble resolving through Knot: both start, answer, and stop with their
//! guards. Needs the Debian packages `pebble` and `knot`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mailtls_acme::solver::{DnsUpdater, Rfc2136Updater, TsigKey};
use mailtls_testpeers::{Knot, Pebble, PebbleOptions};

const SECRET: &str = "Wq3kAUKEmxD2EeMf1ITxEgd2Cgh4mNvvAVjh4Ak9VQQ=";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pebble_through_knot_answers_and_stops_on_drop() {
    let knot = Knot::start("Example.COM.", "k1", SECRET).await;
    assert_eq!(knot.zone(), "example.com");
    let signed = Rfc2136Updater::new(knot.addr, "example.com")
        .with_tsig(TsigKey::hmac_sha256("k1", SECRET).unwrap());
    signed
        .add_txt("_acme-challenge.example.com", "v")
        .await
        .unwrap();
    assert!(
        signed
            .serves_txt("_acme-challenge.example.com", "v")
            .await
            .unwrap()
    );

    let pebble = Pebble::start(PebbleOptions {
        dns_server: Some(knot.addr),
        ..PebbleOptions::nonce_reject(0)
    });
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(pebble.config_path()).unwrap()).unwrap();
    assert_eq!(
        cfg["pebble"]["tlsPort"].as_u64(),
        Some(u64::from(pebble.tls_port()))
    );
    assert_eq!(
        cfg["pebble"]["listenAddress"].as_str().unwrap(),
        format!("127.0.0.1:{}", pebble.acme_port())
    );
    let root = pebble.management_get("/roots/0").await;
    assert!(root.starts_with("-----BEGIN CERTIFICATE-----"), "{root}");
    // The client fetches the directory over HTTPS trusting only Pebble.
    let _client = pebble.client().await;

    let (acme, knot_addr, dir) = (pebble.acme_port(), knot.addr, pebble.dir().to_owned());
    drop(pebble);
    drop(knot);
    assert!(std::net::TcpStream::connect(("127.0.0.1", acme)).is_err());
    assert!(std::net::TcpStream::connect(knot_addr).is_err());
    assert!(!dir.exists());
}
