//! IMAP: LOGIN is refused in clear (LOGINDISABLED), works after STARTTLS
//! and on the implicit-TLS port.
// Helpers outside #[test] functions may unwrap too: a failed unwrap is a
// failed test, as clippy.toml already allows inside the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use mailtls_examples::MailListener;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_only_after_starttls() {
    let ts = start(|_, _| {}).await;
    let mut c = connect(ts.addr(MailListener::Imap)).await;
    let greeting = c.line().await;
    assert!(
        greeting.starts_with("* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED]"),
        "{greeting}"
    );
    c.send("a1 CAPABILITY").await;
    let r = c.tagged("a1").await;
    assert_eq!(
        r,
        [
            "* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED",
            "a1 OK CAPABILITY completed"
        ]
    );
    c.send("a2 LOGIN test test").await;
    let r = c.tagged("a2").await;
    assert!(r[0].starts_with("a2 NO [PRIVACYREQUIRED]"), "{r:?}");
    c.send("a3 NOOP").await;
    assert_eq!(c.tagged("a3").await, ["a3 OK NOOP completed"]);
    c.send("a4 STARTTLS").await;
    assert_eq!(c.tagged("a4").await, ["a4 OK Begin TLS negotiation now"]);

    let mut c = upgrade(c, client_config(&ts.ca_file()), "imap.example.test").await;
    c.send("b1 CAPABILITY").await;
    let r = c.tagged("b1").await;
    assert_eq!(
        r[0], "* CAPABILITY IMAP4rev1",
        "no STARTTLS or LOGINDISABLED over TLS"
    );
    c.send("b2 LOGIN test wrong").await;
    assert!(c.tagged("b2").await[0].starts_with("b2 NO [AUTHENTICATIONFAILED]"));
    c.send("b3 LOGIN \"test\" \"test\"").await;
    assert!(
        c.tagged("b3").await[0].starts_with("b3 OK"),
        "quoted strings work"
    );
    c.send("b4 SELECT INBOX").await;
    assert!(c.tagged("b4").await[0].starts_with("b4 NO"));
    c.send("b5 LOGOUT").await;
    let r = c.tagged("b5").await;
    assert!(r[0].starts_with("* BYE"), "{r:?}");
    assert_eq!(r[1], "b5 OK LOGOUT completed");
    assert!(c.closed().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imaps_takes_login_at_once() {
    let ts = start(|_, _| {}).await;
    let tcp = tokio::net::TcpStream::connect(ts.addr(MailListener::Imaps))
        .await
        .unwrap();
    let tls = tls_connect(client_config(&ts.ca_file()), "imap.example.test", tcp)
        .await
        .unwrap();
    assert_eq!(served_leaf(&tls).dns_names, ["imap.example.test"]);
    let mut c = LineClient::new(tls);
    let greeting = c.line().await;
    assert!(
        greeting.starts_with("* OK [CAPABILITY IMAP4rev1]"),
        "{greeting}"
    );
    c.send("x STARTTLS").await;
    assert!(c.tagged("x").await[0].starts_with("x BAD"));
    c.send("y LOGIN test test").await;
    assert!(c.tagged("y").await[0].starts_with("y OK"));
    c.send("z LOGOUT").await;
    assert_eq!(c.tagged("z").await[1], "z OK LOGOUT completed");
}
