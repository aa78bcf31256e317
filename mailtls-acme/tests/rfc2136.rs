//! RFC 2136 dynamic update with TSIG against Knot DNS (a real authoritative
//! server), alone and as the dns-01 solver of a Pebble order.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mailtls_acme::solver::{Dns01Solver, DnsUpdater, Rfc2136Updater, TsigKey};
use mailtls_acme::{CertificateRequest, ChallengeSolver, PollPolicy, SigningAlgorithm};
use mailtls_testpeers::{Knot, Pebble, PebbleOptions, leaf_names};

const SECRET: &str = "Wq3kAUKEmxD2EeMf1ITxEgd2Cgh4mNvvAVjh4Ak9VQQ=";

/// Knot serving `example.com`, taking updates signed with `acme-key`.
async fn start_knot() -> Knot {
    Knot::start("example.com", "acme-key", SECRET).await
}

fn updater(addr: SocketAddr) -> Rfc2136Updater {
    Rfc2136Updater::new(addr, "example.com")
        .with_tsig(TsigKey::hmac_sha256("acme-key", SECRET).unwrap())
        .with_propagation_timeout(Duration::from_secs(10))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_updates_add_and_remove_coexisting_values() {
    let knot = start_knot().await;
    let u = updater(knot.addr);
    let name = "_acme-challenge.example.com";
    u.add_txt(name, "value-one").await.unwrap();
    u.add_txt(name, "value-two").await.unwrap();
    assert!(u.serves_txt(name, "value-one").await.unwrap());
    assert!(u.serves_txt(name, "value-two").await.unwrap());
    u.remove_txt(name, "value-one").await.unwrap();
    assert!(!u.serves_txt(name, "value-one").await.unwrap());
    assert!(u.serves_txt(name, "value-two").await.unwrap());

    // Unsigned, or signed with a wrong key: refused.
    let unsigned = Rfc2136Updater::new(knot.addr, "example.com");
    let err = unsigned.add_txt(name, "sneaky").await.unwrap_err();
    assert!(err.to_string().contains("refused"), "{err}");
    let wrong = Rfc2136Updater::new(knot.addr, "example.com").with_tsig(
        TsigKey::hmac_sha256("acme-key", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=").unwrap(),
    );
    assert!(wrong.add_txt(name, "sneaky").await.is_err());
    assert!(!u.serves_txt(name, "sneaky").await.unwrap());
}

/// Pebble resolves through Knot; the client publishes by RFC 2136.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pebble_wildcard_order_through_dynamic_update() {
    let knot = start_knot().await;
    let pebble = Pebble::start(PebbleOptions {
        dns_server: Some(knot.addr),
        authz_reuse: Some(0),
        ..PebbleOptions::default()
    });
    let solver: Arc<dyn ChallengeSolver> = Arc::new(Dns01Solver::new(Arc::new(updater(knot.addr))));
    let account = pebble.new_account(SigningAlgorithm::Es256).await;
    let issued = account
        .issue(
            &CertificateRequest::new(["*.example.com", "example.com"]),
            &[solver],
            None,
            PollPolicy::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        leaf_names(&issued.chain_pem),
        vec!["*.example.com", "example.com"]
    );
}
