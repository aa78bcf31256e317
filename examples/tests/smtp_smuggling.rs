//! SMTP smuggling (the 2023 disclosures): a message ends only at
//! `<CRLF>.<CRLF>`. Every look-alike end of data the disclosures list is
//! sent by a raw client (no real client can be made to send them); under
//! the default `bare_newline = "reject"` the session ends with Postfix's
//! `521 5.5.2 ... Error: bare <LF> received` and nothing is stored, under
//! `"normalize"` the look-alike stays inside the one message. Never is a
//! second message spooled. The normal path goes through swaks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::*;
use mailtls_examples::MailListener;
use mailtls_examples::config::BareNewline;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// The end-of-data look-alikes of the SMTP smuggling disclosures (SEC
/// Consult, December 2023, and the Postfix and Sendmail advisories), and
/// whether each holds a bare LF or bare CR (the two with a NUL hold none:
/// they are ordinary text to this server).
const VARIANTS: &[(&str, &[u8], bool)] = &[
    ("LF.LF", b"\n.\n", true),
    ("LF.CRLF", b"\n.\r\n", true),
    ("CRLF.LF", b"\r\n.\n", true),
    ("CR.CR", b"\r.\r", true),
    ("CRLF.CR", b"\r\n.\r", true),
    ("LF.CR", b"\n.\r", true),
    ("CR.LF", b"\r.\n", true),
    ("CR.CRLF", b"\r.\r\n", true),
    ("CRLF.CRCRLF", b"\r\n.\r\r\n", true),
    ("CRLF NUL.CRLF", b"\r\n\x00.\r\n", false),
    ("CRLF.NUL CRLF", b"\r\n.\x00\r\n", false),
];

/// What the smuggled second message would be, after the look-alike.
const SMUGGLED: &[u8] = b"MAIL FROM:<smuggler@evil.example>\r\n\
RCPT TO:<victim@example.test>\r\n\
DATA\r\n\
Subject: smuggled\r\n\
\r\n\
smuggled body\r\n\
.\r\n";

/// Reads replies until the server closes; everything it said.
async fn read_to_end<S: AsyncRead + Unpin>(s: &mut S) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(IO_TIMEOUT, s.read(&mut buf))
            .await
            .expect("the server neither answered nor closed")
        {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Opens a transaction on `c` (already greeted and, where needed,
/// authenticated), sends a first message whose body holds `variant`
/// followed by a whole second transaction, then `QUIT`; returns what the
/// server said from DATA on until it closed.
async fn smuggle<S: AsyncRead + AsyncWrite + Unpin>(c: LineClient<S>, variant: &[u8]) -> String {
    let mut c = c;
    assert_eq!(c.cmd("MAIL FROM:<sender@client.example>").await.0, 250);
    assert_eq!(c.cmd("RCPT TO:<user@example.test>").await.0, 250);
    assert_eq!(c.cmd("DATA").await.0, 354);
    let mut payload = b"Subject: first\r\n\r\nfirst body".to_vec();
    payload.extend_from_slice(variant);
    payload.extend_from_slice(SMUGGLED);
    payload.extend_from_slice(b"QUIT\r\n");
    let mut s = c.into_inner();
    s.write_all(&payload).await.unwrap();
    s.flush().await.unwrap();
    read_to_end(&mut s).await
}

async fn greeted(addr: SocketAddr) -> LineClient<TcpStream> {
    let mut c = connect(addr).await;
    assert_eq!(c.reply().await.0, 220);
    assert_eq!(c.cmd("EHLO client.example").await.0, 250);
    c
}

fn queued(replies: &str) -> usize {
    replies.matches("Ok: queued as").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn look_alike_ends_are_refused_by_default_and_never_split_a_message() {
    let ts = start(|c, _| assert_eq!(c.smtp.bare_newline, BareNewline::Reject)).await;
    let addr = ts.addr(MailListener::Smtp);
    let mut expected_files = 0;
    for (name, variant, bare) in VARIANTS {
        let replies = smuggle(greeted(addr).await, variant).await;
        if *bare {
            assert!(
                replies.starts_with("521 5.5.2 mail.example.test Error: bare <")
                    && replies.contains("> received\r\n"),
                "{name}: {replies:?}"
            );
            assert_eq!(queued(&replies), 0, "{name}: {replies:?}");
        } else {
            // Ordinary text: one message holding the "smuggled" lines.
            assert_eq!(queued(&replies), 1, "{name}: {replies:?}");
            assert!(replies.ends_with("221 2.0.0 mail.example.test closing connection\r\n"));
            expected_files += 1;
        }
        let files = ts.spool_files();
        assert_eq!(files.len(), expected_files, "{name}: {files:?}");
        for f in &files {
            let stored = std::fs::read(f).unwrap();
            let text = String::from_utf8_lossy(&stored);
            assert!(
                !text.contains("Subject: smuggled\r\n\r\nsmuggled body\r\n\r\n"),
                "{name}"
            );
            assert!(
                !text.starts_with("Return-Path: <smuggler"),
                "{name}: {text}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reject_reply_names_the_bare_character() {
    let ts = start(|_, _| {}).await;
    let addr = ts.addr(MailListener::Smtp);
    let replies = smuggle(greeted(addr).await, b"\n.\n").await;
    assert!(
        replies.starts_with("521 5.5.2 mail.example.test Error: bare <LF> received\r\n"),
        "{replies:?}"
    );
    let replies = smuggle(greeted(addr).await, b"\r.\r").await;
    assert!(
        replies.starts_with("521 5.5.2 mail.example.test Error: bare <CR> received\r\n"),
        "{replies:?}"
    );
    // A command ended by a bare LF: the same refusal.
    let c = greeted(addr).await;
    let mut s = c.into_inner();
    s.write_all(b"NOOP\n").await.unwrap();
    let replies = read_to_end(&mut s).await;
    assert_eq!(
        replies,
        "521 5.5.2 mail.example.test Error: bare <LF> received\r\n"
    );
    assert!(ts.spool_files().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn normalize_keeps_every_look_alike_inside_the_one_message() {
    let ts = start(|c, _| c.smtp.bare_newline = BareNewline::Normalize).await;
    let addr = ts.addr(MailListener::Smtp);
    for (i, (name, variant, _)) in VARIANTS.iter().enumerate() {
        let replies = smuggle(greeted(addr).await, variant).await;
        assert_eq!(queued(&replies), 1, "{name}: {replies:?}");
        assert!(
            replies.ends_with("221 2.0.0 mail.example.test closing connection\r\n"),
            "{name}: {replies:?}"
        );
        let files = ts.spool_files();
        assert_eq!(files.len(), i + 1, "{name}: a second message was stored");
        let newest = std::fs::read(files.last().unwrap()).unwrap();
        let text = String::from_utf8_lossy(&newest);
        assert!(
            text.starts_with("Return-Path: <sender@client.example>"),
            "{name}: {text}"
        );
        // The would-be second transaction is text of the first message,
        // with every line ended by CRLF: no bare CR or LF is stored.
        assert!(
            text.contains("first body")
                && text.contains("\r\nMAIL FROM:<smuggler@evil.example>\r\n")
                && text.contains("\r\nsmuggled body\r\n"),
            "{name}: {text:?}"
        );
        let bytes = newest.as_slice();
        for (j, b) in bytes.iter().enumerate() {
            match b {
                b'\r' => assert_eq!(bytes.get(j + 1), Some(&b'\n'), "{name}: bare CR stored"),
                b'\n' => assert_eq!(bytes[j - 1], b'\r', "{name}: bare LF stored"),
                _ => {}
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submission_over_tls_refuses_a_look_alike_too() {
    let ts = start(|_, _| {}).await;
    let tcp = TcpStream::connect(ts.addr(MailListener::Submissions))
        .await
        .unwrap();
    let tls = tls_connect(client_config(&ts.ca_file()), "mail.example.test", tcp)
        .await
        .unwrap();
    let mut c = LineClient::new(tls);
    assert_eq!(c.reply().await.0, 220);
    assert_eq!(c.cmd("EHLO client.example").await.0, 250);
    let auth = STANDARD.encode("\0test\0test");
    assert_eq!(c.cmd(&format!("AUTH PLAIN {auth}")).await.0, 235);
    let replies = smuggle(c, b"\r\n.\n").await;
    assert!(
        replies.starts_with("521 5.5.2 mail.example.test Error: bare <LF> received\r\n"),
        "{replies:?}"
    );
    assert!(ts.spool_files().is_empty());
}

/// The normal path, through swaks over STARTTLS: a message with a line
/// that starts with a dot (swaks stuffs it) arrives whole, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaks_delivers_a_normal_message_once() {
    let ts = start(|_, _| {}).await;
    let addr = ts.addr(MailListener::Smtp);
    let body = "first line\n.\n.. two dots\nlast line";
    let out = tokio::process::Command::new("swaks")
        .args(["--server", &addr.ip().to_string()])
        .args(["--port", &addr.port().to_string()])
        .args(["--from", "sender@client.example"])
        .args(["--to", "user@example.test"])
        .args(["--helo", "client.example"])
        .arg("--tls")
        .args(["--header", "Subject: through swaks"])
        .args(["--body", body])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(IO_TIMEOUT, out)
        .await
        .expect("swaks timed out")
        .expect("swaks is installed");
    let transcript = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{transcript}");
    assert!(
        transcript.contains("<~  250 2.0.0 Ok: queued as"),
        "{transcript}"
    );
    let files = ts.spool_files();
    assert_eq!(files.len(), 1, "{files:?}");
    let stored = std::fs::read_to_string(&files[0]).unwrap();
    assert!(
        stored.contains("Subject: through swaks\r\n")
            && stored.contains("\r\n\r\nfirst line\r\n.\r\n.. two dots\r\nlast line\r\n"),
        "{stored:?}"
    );
}
