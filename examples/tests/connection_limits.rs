//! Connection limits say so: past `server.max_connections` (per listener)
//! or `server.max_connections_per_address`, a client gets its protocol's
//! refusal greeting (SMTP `421 4.7.0`, IMAP `* BYE`, POP3 `-ERR
//! [SYS/TEMP]`, over TLS on an implicit-TLS port) and the connection is
//! closed, instead of a silent close.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use mailtls_examples::MailListener;
use tokio::net::TcpStream;

fn limits(
    max: usize,
    per_address: usize,
) -> impl FnOnce(&mut mailtls_examples::Config, &std::path::Path) {
    move |c, _| {
        c.server.max_connections = max;
        c.server.max_connections_per_address = per_address;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_past_the_listener_limit_gets_a_421_greeting() {
    let ts = start(limits(2, 10)).await;
    let addr = ts.addr(MailListener::Smtp);
    let mut first = connect(addr).await;
    assert_eq!(first.reply().await.0, 220);
    let mut second = connect(addr).await;
    assert_eq!(second.reply().await.0, 220);
    let mut third = connect(addr).await;
    let (code, text) = third.reply().await;
    assert_eq!(
        (code, text[0].as_str()),
        (
            421,
            "4.7.0 mail.example.test Too many connections; try again later"
        )
    );
    assert!(third.closed().await);
    // A freed place is taken again (once the server has seen the QUIT).
    assert_eq!(first.cmd("QUIT").await.0, 221);
    assert!(first.closed().await);
    let start = Instant::now();
    loop {
        let mut c = connect(addr).await;
        let (code, _) = c.reply().await;
        if code == 220 {
            break;
        }
        assert_eq!(code, 421);
        assert!(
            start.elapsed() < IO_TIMEOUT,
            "the freed place never came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limit_per_client_address_refuses_beside_the_listener_limit() {
    let ts = start(limits(100, 1)).await;
    let addr = ts.addr(MailListener::Smtp);
    let mut first = connect(addr).await;
    assert_eq!(first.reply().await.0, 220);
    let mut second = connect(addr).await;
    let (code, text) = second.reply().await;
    assert_eq!(
        (code, text[0].as_str()),
        (
            421,
            "4.7.0 mail.example.test Too many connections from your address; try again later"
        )
    );
    assert!(second.closed().await);
    // Another listener counts its own connections.
    let mut imap = connect(ts.addr(MailListener::Imap)).await;
    assert!(imap.line().await.starts_with("* OK"));
    assert_eq!(first.cmd("NOOP").await.0, 250);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_pop3_and_implicit_tls_refuse_in_their_own_words() {
    let ts = start(limits(1, 10)).await;

    let mut imap = connect(ts.addr(MailListener::Imap)).await;
    assert!(imap.line().await.starts_with("* OK"));
    let mut refused = connect(ts.addr(MailListener::Imap)).await;
    assert_eq!(
        refused.line().await,
        "* BYE Too many connections; try again later"
    );
    assert!(refused.closed().await);

    let mut pop = connect(ts.addr(MailListener::Pop3)).await;
    assert!(pop.line().await.starts_with("+OK"));
    let mut refused = connect(ts.addr(MailListener::Pop3)).await;
    assert_eq!(
        refused.line().await,
        "-ERR [SYS/TEMP] Too many connections; try again later"
    );
    assert!(refused.closed().await);

    // Implicit TLS: the refusal comes after the handshake, over TLS.
    let tls_client = |which| {
        let ts = &ts;
        async move {
            let tcp = TcpStream::connect(ts.addr(which)).await.unwrap();
            let tls = tls_connect(client_config(&ts.ca_file()), "mail.example.test", tcp)
                .await
                .unwrap();
            LineClient::new(tls)
        }
    };
    let mut held = tls_client(MailListener::Submissions).await;
    assert_eq!(held.reply().await.0, 220);
    let mut refused = tls_client(MailListener::Submissions).await;
    let (code, text) = refused.reply().await;
    assert_eq!(
        (code, text[0].as_str()),
        (
            421,
            "4.7.0 mail.example.test Too many connections; try again later"
        )
    );
    assert!(refused.closed().await);
    let mut held = tls_client(MailListener::Imaps).await;
    assert!(held.line().await.starts_with("* OK"));
    let mut refused = tls_client(MailListener::Imaps).await;
    assert_eq!(
        refused.line().await,
        "* BYE Too many connections; try again later"
    );
}
