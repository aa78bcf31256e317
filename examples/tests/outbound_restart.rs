//! Stopping and starting with a queue. Shutdown during a delivery: the
//! SMTP transaction in progress gets the grace period to finish; one cut
//! off before the final reply to DATA leaves its recipient pending (never
//! marked delivered without the 2xx, never lost) and goes out again after
//! a restart: at-least-once. A damaged queue state file does not stop the
//! start: the message is quarantined and counted on the status page. The
//! peer is a small SMTP server in this file that takes its time answering
//! the end of data ([`outbound_support::SlowPeer`]).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod outbound_support;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use mailtls_examples::outbound::{RelayAddress, RelayHost, RelayTls};
use mailtls_examples::{Config, Server};
use outbound_support::*;

const WAIT: Duration = Duration::from_secs(40);

fn relay_config(dir: &Path, port: u16) -> Config {
    let mut config = test_config(dir);
    let o = &mut config.outbound;
    o.enabled = true;
    o.relay = Some(RelayHost {
        address: RelayAddress::Ip(Ipv4Addr::LOCALHOST.into()),
        port,
        tls: RelayTls::None,
        ca_file: None,
    });
    // No DNS is asked for an IP relay; this keeps the host's resolver
    // configuration out of the test.
    o.dnssec = false;
    o.dns_server = Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 9)));
    o.retry = vec![Duration::from_secs(1)];
    // Longer than the peer's delay: only the shutdown cuts the session.
    o.timeout = Duration::from_secs(60);
    config
}

fn queue_files(data_dir: &Path, ext: &str) -> usize {
    std::fs::read_dir(data_dir.join("queue"))
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name().into_string().unwrap();
            !name.starts_with('.') && name.ends_with(ext)
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_in_progress_finishes_within_the_grace_period() {
    let peer = SlowPeer::start(Duration::from_secs(2)).await;
    let dir = private_tempdir();
    let config = relay_config(dir.path(), peer.addr.port());
    let ts = TestServer {
        server: Server::start(config).await.unwrap(),
        dir,
    };
    submit(
        &ts,
        "test@example.test",
        "friend@remote.example",
        false,
        &["Subject: finish me", "", "body"],
    )
    .await;
    eventually(WAIT, "the data at the peer", || {
        (!peer.received().is_empty()).then_some(())
    })
    .await;
    assert_eq!(peer.acknowledged(), 0, "the peer is still thinking");
    let TestServer { server, dir } = ts;
    let started = Instant::now();
    server.shutdown().await;
    let took = started.elapsed();
    assert_eq!(
        peer.acknowledged(),
        1,
        "the 250 came within the grace period"
    );
    assert!(
        took >= Duration::from_millis(1000),
        "shutdown waited: {took:?}"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    // Delivered and recorded as such: the message left the queue.
    assert_eq!(queue_files(dir.path(), ".json"), 0);
    assert_eq!(queue_files(dir.path(), ".eml"), 0);
    assert_eq!(peer.received().len(), 1);
    assert!(peer.received()[0].contains("Subject: finish me"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_cut_off_before_the_reply_stays_pending_and_goes_out_after_restart() {
    let slow = SlowPeer::start(Duration::from_secs(30)).await;
    let dir = private_tempdir();
    let config = relay_config(dir.path(), slow.addr.port());
    let ts = TestServer {
        server: Server::start(config).await.unwrap(),
        dir,
    };
    submit(
        &ts,
        "test@example.test",
        "friend@remote.example",
        false,
        &["Subject: cut off", "", "body"],
    )
    .await;
    eventually(WAIT, "the data at the slow peer", || {
        (!slow.received().is_empty()).then_some(())
    })
    .await;
    let TestServer { server, dir } = ts;
    let started = Instant::now();
    server.shutdown().await;
    let took = started.elapsed();
    // The grace period (5 s) passed, then the session was abandoned.
    assert!(took >= Duration::from_millis(4500), "{took:?}");
    assert!(took < Duration::from_secs(15), "{took:?}");
    assert_eq!(slow.acknowledged(), 0);
    let states = queue_states(dir.path());
    assert_eq!(states.len(), 1, "{states:?}");
    let r = &states[0]["recipients"][0];
    assert_eq!(r["address"], "friend@remote.example");
    assert_eq!(
        r["state"], "pending",
        "never delivered without the 250: {r}"
    );
    assert_eq!(queue_files(dir.path(), ".eml"), 1, "the message is kept");

    // After a restart the message goes out again (at-least-once): this
    // time to a peer that answers at once.
    let fast = SlowPeer::start(Duration::ZERO).await;
    let config = relay_config(dir.path(), fast.addr.port());
    let ts = TestServer {
        server: Server::start(config).await.unwrap(),
        dir,
    };
    eventually(WAIT, "the message at the second peer", || {
        (fast.acknowledged() == 1).then_some(())
    })
    .await;
    assert!(fast.received()[0].contains("Subject: cut off"));
    eventually(WAIT, "an empty queue", || {
        (queue_files(ts.data_dir(), ".json") == 0).then_some(())
    })
    .await;
    assert_eq!(queue_files(ts.data_dir(), ".eml"), 0);
    assert_eq!(slow.acknowledged(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_queue_file_is_quarantined_and_the_server_runs_on() {
    use std::os::unix::fs::DirBuilderExt;
    let peer = SlowPeer::start(Duration::ZERO).await;
    let dir = private_tempdir();
    let queue = dir.path().join("queue");
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&queue)
        .unwrap();
    std::fs::write(queue.join("Q1-damaged.json"), b"{\"id\": \"Q1-dam").unwrap();
    std::fs::write(queue.join("Q1-damaged.eml"), b"Subject: kept\r\n\r\nx\r\n").unwrap();
    let mut config = relay_config(dir.path(), peer.addr.port());
    // The status page over plain HTTP.
    config.web.mode = mailtls_core::WebSecurity::HttpAndHttps;
    let ts = TestServer {
        server: Server::start(config).await.unwrap(),
        dir,
    };
    let quarantine = ts.data_dir().join("queue/quarantine");
    assert_eq!(
        std::fs::read(quarantine.join("Q1-damaged.eml")).unwrap(),
        b"Subject: kept\r\n\r\nx\r\n"
    );
    assert!(quarantine.join("Q1-damaged.json").exists());
    assert!(!queue.join("Q1-damaged.json").exists());
    let json = status_json(&ts).await;
    assert_eq!(json["outbound"]["quarantined_messages"], 1, "{json:#}");
    // The rest of the queue works.
    submit(
        &ts,
        "test@example.test",
        "friend@remote.example",
        false,
        &["Subject: after the quarantine", "", "body"],
    )
    .await;
    eventually(WAIT, "the delivery", || {
        (peer.acknowledged() == 1).then_some(())
    })
    .await;
    assert!(peer.received()[0].contains("Subject: after the quarantine"));
}
