//! REQUIRETLS (RFC 8689) on the SMTP listener, in real sessions over
//! STARTTLS with a rustls client: advertised only over TLS, the MAIL FROM
//! parameter accepted over TLS and refused in clear with the RFC's reply,
//! `+requiretls` recipient tags, and the flag kept in the spool.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use mailtls_examples::MailListener;
use mailtls_examples::requiretls_mark::{REQUIRETLS_HEADER, is_marked};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// Connects, says EHLO in clear, runs STARTTLS, says EHLO again; returns
/// the client and both EHLO replies.
async fn tls_session(ts: &TestServer) -> (LineClient<TlsStream<TcpStream>>, String, String) {
    let mut c = connect(ts.addr(MailListener::Smtp)).await;
    assert_eq!(c.reply().await.0, 220);
    let (code, clear_ehlo) = c.cmd("EHLO client.example").await;
    assert_eq!(code, 250);
    assert_eq!(c.cmd("STARTTLS").await.0, 220);
    let mut c = upgrade(c, client_config(&ts.ca_file()), "mail.example.test").await;
    let (code, tls_ehlo) = c.cmd("EHLO client.example").await;
    assert_eq!(code, 250);
    (c, clear_ehlo, tls_ehlo)
}

fn ehlo_has(reply: &str, keyword: &str) -> bool {
    reply.lines().any(|l| l.eq_ignore_ascii_case(keyword))
}

async fn send_body<S>(c: &mut LineClient<S>, subject: &str) -> String
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    assert_eq!(c.cmd("DATA").await.0, 354);
    // A forged marker in the message must not survive.
    c.send(&format!("{REQUIRETLS_HEADER}: yes")).await;
    c.send(&format!("Subject: {subject}")).await;
    c.send("").await;
    c.send("body").await;
    let (code, text) = c.cmd(".").await;
    assert_eq!(code, 250, "{text}");
    text.rsplit(' ').next().unwrap().to_owned()
}

fn stored(ts: &TestServer, id: &str) -> String {
    let path = ts.data_dir().join("spool").join(format!("{id}.eml"));
    std::fs::read_to_string(path).unwrap()
}

fn markers(message: &str) -> usize {
    let header = message.split("\r\n\r\n").next().unwrap();
    header
        .lines()
        .filter(|l| {
            l.to_ascii_lowercase()
                .starts_with(&REQUIRETLS_HEADER.to_ascii_lowercase())
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn advertised_only_after_starttls() {
    let ts = start(|_, _| {}).await;
    let (mut c, clear, tls) = tls_session(&ts).await;
    assert!(!ehlo_has(&clear, "REQUIRETLS"), "{clear}");
    assert!(ehlo_has(&clear, "STARTTLS"), "{clear}");
    assert!(ehlo_has(&tls, "REQUIRETLS"), "{tls}");
    assert_eq!(c.cmd("QUIT").await.0, 221);

    // The implicit-TLS submission port is TLS from the start.
    let ts_tcp = TcpStream::connect(ts.addr(MailListener::Submissions))
        .await
        .unwrap();
    let tls = tls_connect(client_config(&ts.ca_file()), "mail.example.test", ts_tcp)
        .await
        .unwrap();
    let mut c = LineClient::new(tls);
    assert_eq!(c.reply().await.0, 220);
    let (_, ehlo) = c.cmd("EHLO client.example").await;
    assert!(ehlo_has(&ehlo, "REQUIRETLS"), "{ehlo}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameter_over_tls_is_accepted_and_spooled() {
    let ts = start(|_, _| {}).await;
    let (mut c, _, _) = tls_session(&ts).await;
    let (code, text) = c
        .cmd("MAIL FROM:<a@client.example> SIZE=100 requiretls")
        .await;
    assert_eq!(code, 250, "{text}");
    assert_eq!(c.cmd("RCPT TO:<user@example.test>").await.0, 250);
    let id = send_body(&mut c, "with requiretls").await;

    // A second transaction on the same session without the flag.
    assert_eq!(c.cmd("MAIL FROM:<a@client.example>").await.0, 250);
    assert_eq!(c.cmd("RCPT TO:<user@example.test>").await.0, 250);
    let plain_id = send_body(&mut c, "without").await;
    assert_eq!(c.cmd("QUIT").await.0, 221);

    let flagged = stored(&ts, &id);
    assert!(is_marked(flagged.as_bytes()), "{flagged}");
    assert_eq!(markers(&flagged), 1, "{flagged}");
    let unflagged = stored(&ts, &plain_id);
    assert!(!is_marked(unflagged.as_bytes()), "{unflagged}");
    assert_eq!(
        markers(&unflagged),
        0,
        "the forged marker is gone: {unflagged}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameter_in_clear_or_malformed_is_refused() {
    let ts = start(|_, _| {}).await;
    let mut c = connect(ts.addr(MailListener::Smtp)).await;
    assert_eq!(c.reply().await.0, 220);
    assert_eq!(c.cmd("EHLO client.example").await.0, 250);
    // RFC 8689 §4.1 via mailtls-policy: 530 5.7.0 without TLS.
    let (code, text) = c.cmd("MAIL FROM:<a@client.example> REQUIRETLS").await;
    assert_eq!(code, 530, "{text}");
    assert!(text.starts_with("5.7.0 "), "{text}");
    // No transaction was opened.
    assert_eq!(c.cmd("RCPT TO:<user@example.test>").await.0, 503);
    // The tag needs TLS as well.
    assert_eq!(c.cmd("MAIL FROM:<a@client.example>").await.0, 250);
    let (code, text) = c.cmd("RCPT TO:<user+requiretls@example.test>").await;
    assert_eq!(code, 530, "{text}");
    assert_eq!(c.cmd("RSET").await.0, 250);

    assert_eq!(c.cmd("STARTTLS").await.0, 220);
    let mut c = upgrade(c, client_config(&ts.ca_file()), "mail.example.test").await;
    assert_eq!(c.cmd("EHLO client.example").await.0, 250);
    let (code, text) = c.cmd("MAIL FROM:<a@client.example> REQUIRETLS=yes").await;
    assert_eq!((code, &text[..6]), (501, "5.5.4 "), "{text}");
    let (code, text) = c
        .cmd("MAIL FROM:<a@client.example> REQUIRETLS REQUIRETLS")
        .await;
    assert_eq!(code, 501, "{text}");
    assert_eq!(
        c.cmd("MAIL FROM:<a@client.example> REQUIRETLS").await.0,
        250
    );
    assert_eq!(c.cmd("QUIT").await.0, 221);
    assert!(ts.spool_files().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tagged_recipient_sets_the_flag_and_loses_the_tag() {
    let ts = start(|_, _| {}).await;
    let (mut c, _, _) = tls_session(&ts).await;
    assert_eq!(c.cmd("MAIL FROM:<a@client.example>").await.0, 250);
    assert_eq!(c.cmd("RCPT TO:<bob+RequireTLS@example.test>").await.0, 250);
    let id = send_body(&mut c, "tagged").await;
    assert_eq!(c.cmd("QUIT").await.0, 221);
    let message = stored(&ts, &id);
    assert!(is_marked(message.as_bytes()), "{message}");
    assert!(message.contains("for <bob@example.test>"), "{message}");
    assert!(
        !message.to_ascii_lowercase().contains("+requiretls"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_s_client_sees_requiretls_after_starttls() {
    let ts = start(|_, _| {}).await;
    let addr = ts.addr(MailListener::Smtp);
    let child = tokio::process::Command::new("openssl")
        .args(["s_client", "-quiet", "-starttls", "smtp", "-connect"])
        .arg(addr.to_string())
        .args(["-servername", "mail.example.test", "-CAfile"])
        .arg(ts.ca_file())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("openssl is installed");
    let mut child = child;
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().unwrap();
        // s_client already sent EHLO before STARTTLS; this one is on TLS.
        stdin
            .write_all(
                b"EHLO openssl.example\r\nMAIL FROM:<a@client.example> REQUIRETLS\r\nQUIT\r\n",
            )
            .await
            .unwrap();
        stdin.flush().await.unwrap();
        drop(stdin);
    }
    let out = tokio::time::timeout(IO_TIMEOUT, child.wait_with_output())
        .await
        .expect("openssl s_client timed out")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("250-REQUIRETLS"), "{stdout}");
    assert!(stdout.contains("250 2.1.0 Ok"), "{stdout}");
    assert!(stdout.contains("221 2.0.0"), "{stdout}");
}
