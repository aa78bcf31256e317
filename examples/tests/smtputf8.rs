//! SMTPUTF8 (RFC 6531) is not offered, so non-ASCII addresses are refused
//! with `553 5.6.7` (swaks sends the UTF-8, a raw client bytes that are
//! not UTF-8 at all) and nothing is stored with an address altered.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use mailtls_examples::MailListener;
use tokio::io::AsyncWriteExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaks_with_a_utf8_recipient_gets_553_5_6_7() {
    let ts = start(|_, _| {}).await;
    let addr = ts.addr(MailListener::Smtp);
    for (from, to, which) in [
        ("sender@client.example", "jöran@example.test", "recipient"),
        ("sändare@client.example", "user@example.test", "sender"),
    ] {
        let out = tokio::process::Command::new("swaks")
            .args(["--server", &addr.ip().to_string()])
            .args(["--port", &addr.port().to_string()])
            .args(["--from", from, "--to", to])
            .arg("--tls")
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(IO_TIMEOUT, out)
            .await
            .expect("swaks timed out")
            .expect("swaks is installed");
        let t = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{t}");
        assert!(
            t.contains(&format!(
                "<~* 553 5.6.7 Non-ASCII {which} address; this server does not offer SMTPUTF8"
            )),
            "{t}"
        );
    }
    assert!(ts.spool_files().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_bytes_and_the_smtputf8_parameter_are_refused_and_nothing_is_stored() {
    let ts = start(|_, _| {}).await;
    let mut c = connect(ts.addr(MailListener::Smtp)).await;
    assert_eq!(c.reply().await.0, 220);
    let (code, ehlo) = c.cmd("EHLO client.example").await;
    assert_eq!(code, 250);
    assert!(!ehlo.contains("SMTPUTF8"), "{ehlo}");
    // Latin-1, not UTF-8.
    let mut s = c.into_inner();
    s.write_all(b"MAIL FROM:<caf\xe9@client.example>\r\n")
        .await
        .unwrap();
    let mut c = LineClient::new(s);
    let (code, text) = c.reply().await;
    assert_eq!(
        (code, text[0].as_str()),
        (
            553,
            "5.6.7 Non-ASCII sender address; this server does not offer SMTPUTF8"
        )
    );
    let (code, _) = c.cmd("MAIL FROM:<a@client.example> SMTPUTF8").await;
    assert_eq!(code, 555);
    assert_eq!(c.cmd("MAIL FROM:<a@client.example>").await.0, 250);
    let (code, _) = c.cmd("RCPT TO:<ü@example.test>").await;
    assert_eq!(code, 553);
    assert_eq!(c.cmd("RCPT TO:<user@example.test>").await.0, 250);
    assert_eq!(c.cmd("DATA").await.0, 354);
    c.send("Subject: ascii only").await;
    c.send("").await;
    assert_eq!(c.cmd(".").await.0, 250);
    let files = ts.spool_files();
    assert_eq!(files.len(), 1);
    let stored = std::fs::read_to_string(&files[0]).unwrap();
    assert!(
        stored.starts_with("Return-Path: <a@client.example>\r\n"),
        "{stored}"
    );
    assert!(stored.contains("for <user@example.test>"), "{stored}");
    assert!(!stored.contains('?'), "{stored}");
}
