//! RFC 2136 dynamic update with TSIG against Knot DNS (a real authoritative
//! server), alone and as the dns-01 solver of a Pebble order.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Pebble, PebbleOptions, free_port, leaf_names};
use mailtls_acme::solver::{Dns01Solver, DnsUpdater, Rfc2136Updater, TsigKey};
use mailtls_acme::{
    AccountKey, CertificateRequest, ChallengeSolver, NewAccountOptions, PollPolicy,
    SigningAlgorithm,
};

const SECRET: &str = "Wq3kAUKEmxD2EeMf1ITxEgd2Cgh4mNvvAVjh4Ak9VQQ=";

struct Knot {
    child: Child,
    _dir: tempfile::TempDir,
    addr: SocketAddr,
}

impl Drop for Knot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_knot() -> Knot {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    std::fs::create_dir(dir.path().join("db")).unwrap();
    let d = dir.path().display();
    std::fs::write(
        dir.path().join("example.com.zone"),
        "$ORIGIN example.com.\n$TTL 60\n@ SOA ns1 hostmaster 1 3600 600 86400 60\n@ NS ns1\nns1 A 127.0.0.1\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("knot.conf"),
        format!(
            "server:\n  listen: 127.0.0.1@{port}\n  rundir: {d}\n  user: root\n\
             database:\n  storage: {d}/db\n\
             key:\n  - id: acme-key\n    algorithm: hmac-sha256\n    secret: {SECRET}\n\
             acl:\n  - id: update\n    key: acme-key\n    action: update\n\
             template:\n  - id: default\n    storage: {d}\n    file: \"%s.zone\"\n    zonefile-sync: -1\n\
             zone:\n  - domain: example.com\n    acl: update\n"
        ),
    )
    .unwrap();
    let child = Command::new("knotd")
        .args(["-c", dir.path().join("knot.conf").to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("knotd is installed (apt-get install knot)");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let knot = Knot {
        child,
        _dir: dir,
        addr,
    };
    let probe = Rfc2136Updater::new(addr, "example.com");
    let start = Instant::now();
    while probe.serves_txt("probe.example.com", "x").await.is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "knotd did not answer"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    knot
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
    let client = pebble.client().await;
    let account = client
        .new_account(
            AccountKey::generate(SigningAlgorithm::Es256).unwrap(),
            &NewAccountOptions::with_email("postmaster@example.com"),
        )
        .await
        .unwrap();
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
