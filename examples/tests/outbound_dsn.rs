//! Delivery status notifications made by the running server and read back
//! with mail-parser: a message deferred longer than
//! `outbound.delay_warning_seconds` earns its sender exactly one
//! `Action: delayed` report when that time comes, between attempts (RFC 3464 §2.3.3, 4.x.x, header section only);
//! a recipient refused by the peer comes back as an `Action: failed`
//! report carrying the whole message as `message/rfc822` (RFC 6522), or
//! only its header section (`text/rfc822-headers`) when the message is
//! larger than `outbound.dsn_return_limit_bytes`. The peer is the small
//! SMTP server of `outbound_support`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod outbound_support;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use common::*;
use mail_parser::{Message, MessageParser, MimeHeaders, PartType};
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
    o.dnssec = false;
    o.dns_server = Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 9)));
    o.retry = vec![Duration::from_secs(1)];
    o.timeout = Duration::from_secs(10);
    config
}

/// The content types of a report's three parts.
fn part_types(msg: &Message<'_>) -> Vec<String> {
    msg.parts
        .iter()
        .skip(1)
        .filter_map(|p| p.content_type())
        .map(|c| format!("{}/{}", c.ctype(), c.subtype().unwrap_or("")))
        .take(3)
        .collect()
}

/// The `message/delivery-status` part's text.
fn status_fields(msg: &Message<'_>) -> String {
    let part = msg
        .parts
        .iter()
        .find(|p| {
            p.content_type()
                .is_some_and(|c| c.subtype() == Some("delivery-status"))
        })
        .expect("a message/delivery-status part");
    String::from_utf8_lossy(part.contents()).into_owned()
}

fn reports(ts: &TestServer, action: &str) -> Vec<String> {
    spooled(ts.data_dir())
        .into_iter()
        .filter(|m| m.contains(&format!("Action: {action}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deferred_message_earns_one_delayed_dsn() {
    // A port with nothing behind it: every attempt is deferred.
    let closed = free_port(&[Ipv4Addr::LOCALHOST]);
    let dir = private_tempdir();
    let mut config = relay_config(dir.path(), closed);
    // Two quick attempts, then an hour's wait: the warning, due after two
    // seconds, must come between attempts rather than with the next one.
    config.outbound.retry = vec![Duration::from_secs(1), Duration::from_secs(3600)];
    config.outbound.delay_warning = Some(Duration::from_secs(2));
    let ts = TestServer {
        server: Server::start(config).await.unwrap(),
        dir,
    };
    submit(
        &ts,
        "test@example.test",
        "late@remote.example",
        false,
        &["Subject: running late", "", "the body stays in the queue"],
    )
    .await;
    let dsn = eventually(WAIT, "a delayed DSN in the sender's mailbox", || {
        reports(&ts, "delayed").into_iter().next()
    })
    .await;
    let msg = MessageParser::default().parse(dsn.as_bytes()).unwrap();
    let ct = msg.content_type().unwrap();
    assert_eq!(ct.subtype(), Some("report"));
    assert_eq!(ct.attribute("report-type"), Some("delivery-status"));
    assert_eq!(msg.subject(), Some("Delayed Mail (still being retried)"));
    assert_eq!(
        part_types(&msg),
        [
            "text/plain",
            "message/delivery-status",
            "text/rfc822-headers"
        ]
    );
    let fields = status_fields(&msg);
    assert!(
        fields.contains(
            "Final-Recipient: rfc822; late@remote.example\r\nAction: delayed\r\nStatus: 4."
        ),
        "{fields}"
    );
    assert!(fields.contains("Will-Retry-Until: "), "{fields}");
    assert!(dsn.contains("Subject: running late"));
    assert!(!dsn.contains("the body stays in the queue"), "{dsn}");

    // Once only: the worker keeps looking at the queue, but the message is
    // marked as warned (written before the DSN was submitted) and still
    // queued; waited for rather than read once, so a slow second attempt
    // cannot make the test fail.
    let state = eventually(WAIT, "the queue state after two attempts", || {
        queue_states(ts.data_dir())
            .into_iter()
            .next()
            .filter(|s| s["recipients"][0]["attempts"] == 2)
    })
    .await;
    assert_eq!(state["delay_warned"], true, "{state}");
    assert_eq!(state["recipients"][0]["state"], "pending");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(reports(&ts, "delayed").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_dsn_returns_the_message_or_only_its_header_beyond_the_limit() {
    let peer = SlowPeer::start_with(Duration::ZERO, "550 5.1.1 no such user here").await;
    let dir = private_tempdir();
    let mut config = relay_config(dir.path(), peer.addr.port());
    config.outbound.dsn_return_limit = 4096;
    let ts = TestServer {
        server: Server::start(config).await.unwrap(),
        dir,
    };
    submit(
        &ts,
        "test@example.test",
        "nobody@remote.example",
        false,
        &["Subject: small one", "", "small body line"],
    )
    .await;
    let dsn = eventually(WAIT, "a failure DSN", || {
        reports(&ts, "failed")
            .into_iter()
            .find(|m| m.contains("small one"))
    })
    .await;
    let msg = MessageParser::default().parse(dsn.as_bytes()).unwrap();
    assert_eq!(msg.subject(), Some("Undelivered Mail Returned to Sender"));
    assert_eq!(
        part_types(&msg),
        ["text/plain", "message/delivery-status", "message/rfc822"]
    );
    let fields = status_fields(&msg);
    assert!(
        fields.contains(
            "Final-Recipient: rfc822; nobody@remote.example\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        ),
        "{fields}"
    );
    assert!(
        fields.contains("Diagnostic-Code: smtp; 550 5.1.1 no such user here"),
        "{fields}"
    );
    let returned = msg
        .parts
        .iter()
        .find_map(|p| match &p.body {
            PartType::Message(m) => Some(m),
            _ => None,
        })
        .expect("the returned message");
    assert_eq!(returned.subject(), Some("small one"));
    assert!(
        returned.body_text(0).unwrap().contains("small body line"),
        "{dsn}"
    );
    // The copy as queued, with this server's Received: trace.
    assert!(
        returned
            .header_raw("Received")
            .is_some_and(|r| r.contains("mail.example.test")),
        "{dsn}"
    );

    // Over the limit: the header section only.
    let filler = "x".repeat(100);
    let mut lines = vec!["Subject: big one", ""];
    lines.extend(std::iter::repeat_n(filler.as_str(), 60));
    submit(
        &ts,
        "test@example.test",
        "nobody@remote.example",
        false,
        &lines,
    )
    .await;
    let dsn = eventually(WAIT, "a second failure DSN", || {
        reports(&ts, "failed")
            .into_iter()
            .find(|m| m.contains("big one"))
    })
    .await;
    let msg = MessageParser::default().parse(dsn.as_bytes()).unwrap();
    assert_eq!(
        part_types(&msg),
        [
            "text/plain",
            "message/delivery-status",
            "text/rfc822-headers"
        ]
    );
    assert!(!dsn.contains(&filler), "the body is not returned");
    assert!(peer.received().is_empty(), "no recipient was accepted");
}
