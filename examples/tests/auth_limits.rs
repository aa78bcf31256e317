//! Password guessing across connections: failed logins are counted per
//! client address and per account over every connection and protocol,
//! each failure counts towards the connection's error limit, and past a
//! limit logins are refused for a while (SMTP `454 4.7.0`, IMAP `NO
//! [UNAVAILABLE]`, POP3 `-ERR [SYS/TEMP]`), as the status page shows.
//! SMTP through swaks, the rest through raw TLS clients.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::*;
use mailtls_examples::MailListener;
use mailtls_examples::config::User;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// A swaks login on the submission port (STARTTLS); its transcript.
async fn swaks_login(addr: SocketAddr, user: &str, password: &str) -> String {
    let out = tokio::process::Command::new("swaks")
        .args(["--server", &addr.ip().to_string()])
        .args(["--port", &addr.port().to_string()])
        .arg("--tls")
        .args(["--auth", "PLAIN"])
        .args(["--auth-user", user, "--auth-password", password])
        .args(["--from", "test@example.test", "--to", "user@example.test"])
        .args(["--quit-after", "AUTH"])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(IO_TIMEOUT, out)
        .await
        .expect("swaks timed out")
        .expect("swaks is installed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn implicit_tls(ts: &TestServer, which: MailListener) -> LineClient<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(ts.addr(which)).await.unwrap();
    let tls = tls_connect(client_config(&ts.ca_file()), "mail.example.test", tcp)
        .await
        .unwrap();
    LineClient::new(tls)
}

async fn status_json(ts: &TestServer) -> Value {
    let addr = ts.server.addrs().http.unwrap();
    let out = tokio::process::Command::new("curl")
        .args(["--silent", "--max-time", "10"])
        .arg(format!("http://{addr}/status.json"))
        .output()
        .await
        .expect("curl is installed");
    serde_json::from_slice(&out.stdout).unwrap()
}

fn limits(
    per_address: u32,
    per_account: u32,
) -> impl FnOnce(&mut mailtls_examples::Config, &std::path::Path) {
    move |c, _| {
        c.web.mode = mailtls_core::WebSecurity::HttpAndHttps;
        c.server.auth_limits.per_address = per_address;
        c.server.auth_limits.per_account = per_account;
        c.server.auth_limits.window = Duration::from_secs(600);
        c.users.push(User {
            name: "other".into(),
            password: "secret".into(),
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaks_guessing_from_one_address_is_refused_past_the_limit() {
    let ts = start(limits(3, 0)).await;
    let addr = ts.addr(MailListener::Submission);
    // Three guesses, each in its own connection.
    for password in ["guess1", "guess2", "guess3"] {
        let t = swaks_login(addr, "test", password).await;
        assert!(
            t.contains("<~* 535 5.7.8 Authentication credentials invalid"),
            "{t}"
        );
    }
    // Now even the right password is not looked at, from this address.
    let t = swaks_login(addr, "test", "test").await;
    assert!(
        t.contains("<~* 454 4.7.0 Too many failed logins from your address; try again in "),
        "{t}"
    );
    let t = swaks_login(addr, "other", "secret").await;
    assert!(t.contains("<~* 454 4.7.0"), "{t}");

    let json = status_json(&ts).await;
    let a = &json["auth_failures"];
    assert_eq!(a["failures_total"], 3, "{a:#}");
    assert_eq!(a["refusals_total"], 2, "{a:#}");
    assert_eq!(a["addresses"][0]["key"], "127.0.0.1", "{a:#}");
    assert_eq!(a["addresses"][0]["failures"], 3, "{a:#}");
    assert_eq!(a["addresses"][0]["refused"], true, "{a:#}");
    assert_eq!(a["accounts"][0]["key"], "test", "{a:#}");
    // The page shows it too.
    let addr = ts.server.addrs().http.unwrap();
    let out = tokio::process::Command::new("curl")
        .args(["--silent", "--max-time", "10"])
        .arg(format!("http://{addr}/"))
        .output()
        .await
        .unwrap();
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(page.contains("<section id=\"auth-failures\">"), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_over_its_limit_is_refused_while_others_log_in() {
    let ts = start(limits(0, 2)).await;
    for _ in 0..2 {
        let mut c = implicit_tls(&ts, MailListener::Submissions).await;
        assert_eq!(c.reply().await.0, 220);
        assert_eq!(c.cmd("EHLO client.example").await.0, 250);
        let bad = STANDARD.encode("\0test\0wrong");
        assert_eq!(c.cmd(&format!("AUTH PLAIN {bad}")).await.0, 535);
    }
    let mut c = implicit_tls(&ts, MailListener::Submissions).await;
    assert_eq!(c.reply().await.0, 220);
    assert_eq!(c.cmd("EHLO client.example").await.0, 250);
    let good = STANDARD.encode("\0test\0test");
    let (code, text) = c.cmd(&format!("AUTH PLAIN {good}")).await;
    assert_eq!(code, 454, "{text}");
    assert!(
        text.starts_with("4.7.0 Too many failed logins for this account"),
        "{text}"
    );
    let other = STANDARD.encode("\0other\0secret");
    assert_eq!(c.cmd(&format!("AUTH PLAIN {other}")).await.0, 235);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_auth_counts_towards_the_error_limit() {
    let ts = start(limits(0, 0)).await;
    let mut c = implicit_tls(&ts, MailListener::Submissions).await;
    assert_eq!(c.reply().await.0, 220);
    assert_eq!(c.cmd("EHLO client.example").await.0, 250);
    // 19 errors of another kind, then one failed login: the 20th.
    for _ in 0..19 {
        assert_eq!(c.cmd("BOGUS").await.0, 500);
    }
    let bad = STANDARD.encode("\0test\0wrong");
    assert_eq!(c.cmd(&format!("AUTH PLAIN {bad}")).await.0, 535);
    let (code, text) = c.reply().await;
    assert_eq!(
        (code, text[0].as_str()),
        (421, "4.7.0 Too many errors, closing connection")
    );
    assert!(c.closed().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_and_pop3_failures_share_the_count() {
    let ts = start(limits(2, 0)).await;
    let mut imap = implicit_tls(&ts, MailListener::Imaps).await;
    assert!(imap.line().await.starts_with("* OK"));
    for tag in ["a1", "a2"] {
        imap.send(&format!("{tag} LOGIN test wrong")).await;
        let l = imap.tagged(tag).await;
        assert!(
            l.last()
                .unwrap()
                .starts_with(&format!("{tag} NO [AUTHENTICATIONFAILED]")),
            "{l:?}"
        );
    }
    imap.send("a3 LOGIN test test").await;
    let l = imap.tagged("a3").await;
    assert_eq!(
        l.last().unwrap(),
        "a3 NO [UNAVAILABLE] Too many failed logins; try again later"
    );
    // The same address on POP3: refused as well.
    let mut pop = implicit_tls(&ts, MailListener::Pop3s).await;
    assert!(pop.line().await.starts_with("+OK"));
    pop.send("USER test").await;
    assert!(pop.line().await.starts_with("+OK"));
    pop.send("PASS test").await;
    assert_eq!(
        pop.line().await,
        "-ERR [SYS/TEMP] Too many failed logins; try again later"
    );
}
