//! POP3: USER is refused before STLS; after it, USER/PASS, STAT, LIST,
//! UIDL and RETR read what SMTP put in the spool.
// Helpers outside #[test] functions may unwrap too: a failed unwrap is a
// failed test, as clippy.toml already allows inside the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use mailtls_examples::MailListener;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_the_spool_after_stls() {
    let ts = start(|_, _| {}).await;
    let id = send_mail(
        &ts,
        "user@example.test",
        &["Subject: for POP3", "", "hello", "..dotted"],
    )
    .await;

    let mut c = connect(ts.addr(MailListener::Pop3)).await;
    assert!(c.line().await.starts_with("+OK"));
    c.send("CAPA").await;
    assert!(c.line().await.starts_with("+OK"));
    let caps = c.multiline().await;
    assert!(caps.contains(&"STLS".to_owned()), "{caps:?}");
    assert!(
        !caps.contains(&"USER".to_owned()),
        "USER is not offered in clear: {caps:?}"
    );
    c.send("USER test").await;
    assert!(c.line().await.starts_with("-ERR [AUTH]"));
    c.send("PASS test").await;
    assert!(c.line().await.starts_with("-ERR"));
    c.send("STAT").await;
    assert!(
        c.line().await.starts_with("-ERR"),
        "no maildrop before login"
    );
    c.send("STLS").await;
    assert!(c.line().await.starts_with("+OK"));

    let mut c = upgrade(c, client_config(&ts.ca_file()), "pop.example.test").await;
    c.send("STLS").await;
    assert!(c.line().await.starts_with("-ERR"));
    c.send("CAPA").await;
    assert!(c.line().await.starts_with("+OK"));
    let caps = c.multiline().await;
    assert!(
        caps.contains(&"USER".to_owned()) && !caps.contains(&"STLS".to_owned()),
        "{caps:?}"
    );
    c.send("USER test").await;
    assert!(c.line().await.starts_with("+OK"));
    c.send("PASS nope").await;
    assert!(c.line().await.starts_with("-ERR [AUTH]"));
    c.send("USER test").await;
    assert!(c.line().await.starts_with("+OK"));
    c.send("PASS test").await;
    assert!(c.line().await.starts_with("+OK Logged in, 1 messages"));
    c.send("STAT").await;
    let stat = c.line().await;
    let size = std::fs::metadata(&ts.spool_files()[0]).unwrap().len();
    assert_eq!(stat, format!("+OK 1 {size}"));
    c.send("LIST").await;
    assert!(c.line().await.starts_with("+OK"));
    assert_eq!(c.multiline().await, [format!("1 {size}")]);
    c.send("LIST 1").await;
    assert_eq!(c.line().await, format!("+OK 1 {size}"));
    c.send("UIDL 1").await;
    assert_eq!(c.line().await, format!("+OK 1 {id}"));
    c.send("RETR 2").await;
    assert!(c.line().await.starts_with("-ERR"));
    c.send("RETR 1").await;
    assert!(c.line().await.starts_with("+OK"));
    let message = c.multiline().await;
    assert!(
        message[0].starts_with("Return-Path: <sender@client.example>"),
        "{message:?}"
    );
    assert!(
        message
            .iter()
            .any(|l| l.starts_with("Received: from client.example"))
    );
    let at = message
        .iter()
        .position(|l| l == "Subject: for POP3")
        .unwrap();
    // RETR stuffs the dot again; LineClient shows the wire form.
    assert_eq!(
        message[at..],
        ["Subject: for POP3", "", "hello", "..dotted"]
    );
    c.send("NOOP").await;
    assert_eq!(c.line().await, "+OK");
    c.send("QUIT").await;
    assert!(c.line().await.starts_with("+OK"));
    assert!(c.closed().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pop3s_logs_in_at_once() {
    let ts = start(|_, _| {}).await;
    let tcp = tokio::net::TcpStream::connect(ts.addr(MailListener::Pop3s))
        .await
        .unwrap();
    let tls = tls_connect(client_config(&ts.ca_file()), "pop.example.test", tcp)
        .await
        .unwrap();
    let mut c = LineClient::new(tls);
    assert!(c.line().await.starts_with("+OK"));
    c.send("USER test").await;
    assert!(c.line().await.starts_with("+OK"));
    c.send("PASS test").await;
    assert!(c.line().await.starts_with("+OK Logged in, 0 messages"));
    c.send("QUIT").await;
    assert!(c.line().await.starts_with("+OK"));
}
