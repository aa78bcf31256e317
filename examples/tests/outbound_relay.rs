//! Outbound delivery through a relay host: a real Postfix receives the
//! server's mail over STARTTLS with a certificate checked against the
//! configured CA file; the queue survives a restart of the server; a
//! relay whose certificate is not trusted gets nothing (never cleartext);
//! a recipient the relay refuses comes back to the sender as an RFC 3464
//! DSN in the local mailbox. Needs `postfix`, `nsd` and `ldnsutils`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod outbound_support;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use common::*;
use mailtls_core::DnsName;
use mailtls_examples::outbound::{RelayAddress, RelayHost, RelayTls};
use mailtls_examples::{Config, Server};
use outbound_support::*;

const WAIT: Duration = Duration::from_secs(40);

fn relay_config(dir: &Path, world: &SignedRoot, port: u16, ca_file: &Path) -> Config {
    let mut config = test_config(dir);
    let o = &mut config.outbound;
    o.enabled = true;
    o.relay = Some(RelayHost {
        address: RelayAddress::Name(DnsName::parse("relay.test").unwrap()),
        port,
        tls: RelayTls::StartTlsRequired,
        ca_file: Some(ca_file.to_owned()),
    });
    o.dns_server = Some(world.addr);
    o.trust_anchor = Some(world.anchor.clone());
    o.retry = vec![Duration::from_secs(1)];
    o.timeout = Duration::from_secs(10);
    config
}

fn attempts(data_dir: &Path) -> Option<(u64, String)> {
    queue_states(data_dir).into_iter().find_map(|s| {
        let r = &s["recipients"][0];
        let n = r["attempts"].as_u64()?;
        (n >= 1).then(|| (n, r["last_error"].as_str().unwrap_or_default().to_owned()))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_gets_mail_over_starttls_and_the_queue_survives_a_restart() {
    let world = SignedRoot::start("relay.test. A 127.0.0.1\n");
    let ca = test_ca();
    let relay_cert = issue(&ca, "relay.test");
    let port = free_port(&[Ipv4Addr::LOCALHOST]);
    let dir = private_tempdir();
    let ca_file = write_ca_file(dir.path(), "relay-ca.pem", &[&ca.certificate().cert_pem]);
    let config = relay_config(dir.path(), &world, port, &ca_file);

    // Nothing listens on the relay port yet: the message is deferred.
    let ts = TestServer {
        server: Server::start(config.clone()).await.unwrap(),
        dir,
    };
    let id = submit(
        &ts,
        "test@example.test",
        "friend@remote.example",
        false,
        &[
            "Subject: via relay",
            "",
            "hello relay",
            "..a line with a dot", // dot-stuffed by this client
        ],
    )
    .await;
    assert!(id.starts_with('Q'), "{id}");
    let (_, error) = eventually(WAIT, "a deferred attempt", || attempts(ts.data_dir())).await;
    assert!(error.contains("relay.test"), "{error}");
    assert!(ts.spool_files().is_empty(), "remote mail is not spooled");
    let queued =
        std::fs::read_to_string(ts.data_dir().join("queue").join(format!("{id}.eml"))).unwrap();
    assert!(queued.contains("\r\n.a line with a dot\r\n"), "{queued}");
    let TestServer { server, dir } = ts;
    server.shutdown().await;
    assert_eq!(
        queue_states(dir.path()).len(),
        1,
        "the queue outlives the server"
    );

    // The relay comes up, the server restarts from the same data directory.
    let relay = PostfixMx::start(
        SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        "relay.test",
        &relay_cert.chain_pem(),
        relay_cert.key_pem(),
        &["remote.example"],
    );
    let ts = TestServer {
        server: Server::start(config).await.unwrap(),
        dir,
    };
    let got = relay.wait_for("hello relay").await;
    assert!(got.contains("Subject: via relay"), "{got}");
    assert!(
        got.contains("\n.a line with a dot"),
        "dot-stuffing undone: {got}"
    );
    // Postfix's own Received: header says the session used TLS.
    assert!(got.contains("(using TLS"), "{got}");
    assert!(!got.contains("X-Mailtls-Requiretls"), "{got}");
    eventually(WAIT, "an empty queue", || {
        queue_states(ts.data_dir()).is_empty().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_relay_gets_nothing_and_refused_recipients_bounce() {
    let world = SignedRoot::start("relay.test. A 127.0.0.1\n");
    let port = free_port(&[Ipv4Addr::LOCALHOST]);
    // The relay's certificate comes from a CA the server does not trust.
    let stranger = test_ca();
    let cert = issue(&stranger, "relay.test");
    let relay = PostfixMx::start(
        SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        "relay.test",
        &cert.chain_pem(),
        cert.key_pem(),
        &["remote.example"],
    );
    let ts = start(|c, dir| {
        let trusted = test_ca();
        let ca_file = write_ca_file(dir, "relay-ca.pem", &[&trusted.certificate().cert_pem]);
        *c = relay_config(dir, &world, port, &ca_file);
    })
    .await;
    submit(
        &ts,
        "test@example.test",
        "friend@remote.example",
        false,
        &["Subject: must not leak", "", "secret"],
    )
    .await;
    let (_, error) = eventually(WAIT, "a deferred attempt", || attempts(ts.data_dir())).await;
    assert!(error.contains("TLS handshake"), "{error}");
    assert!(relay.messages().is_empty(), "{:?}", relay.messages());
    assert!(
        !relay.log().contains("from=<test@example.test>"),
        "no transaction may start in clear: {}",
        relay.log()
    );

    // The same relay, now trusted, refuses a domain it does not serve:
    // the sender gets a DSN in the local mailbox.
    let ts2 = start(|c, dir| {
        let ca_file = write_ca_file(dir, "relay-ca.pem", &[&stranger.certificate().cert_pem]);
        *c = relay_config(dir, &world, port, &ca_file);
    })
    .await;
    submit(
        &ts2,
        "test@example.test",
        "someone@elsewhere.example",
        false,
        &[
            "Subject: to nowhere",
            "Message-ID: <bounce-me@example.test>",
            "",
            "text",
        ],
    )
    .await;
    let dsn = eventually(WAIT, "a DSN in the spool", || {
        spooled(ts2.data_dir())
            .into_iter()
            .find(|m| m.contains("multipart/report"))
    })
    .await;
    let parsed = mail_parser::MessageParser::default()
        .parse(dsn.as_bytes())
        .unwrap();
    use mail_parser::MimeHeaders;
    let ct = parsed.content_type().unwrap();
    assert_eq!(
        ct.attribute("report-type"),
        Some("delivery-status"),
        "{dsn}"
    );
    assert!(
        dsn.contains("Return-Path: <>"),
        "a DSN has the null sender: {dsn}"
    );
    assert!(
        dsn.contains("Final-Recipient: rfc822; someone@elsewhere.example"),
        "{dsn}"
    );
    assert!(dsn.contains("Action: failed"), "{dsn}");
    assert!(dsn.contains("Status: 5.7.1"), "{dsn}");
    assert!(dsn.contains("Diagnostic-Code: smtp; 554 5.7.1"), "{dsn}");
    assert!(dsn.contains("Remote-MTA: dns; relay.test"), "{dsn}");
    assert!(
        dsn.contains("Message-ID: <bounce-me@example.test>"),
        "{dsn}"
    );
    eventually(WAIT, "an empty queue", || {
        queue_states(ts2.data_dir()).is_empty().then_some(())
    })
    .await;
}
