//! Who may see the status page, through curl: loopback by default; with
//! loopback left out of `web.status_allowed_networks` the page answers
//! 403, or 401 where `web.status_users` may log in (HTTP basic, over HTTPS
//! only); the MTA-STS policy and the ACME http-01 route stay public.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;

use common::*;
use mailtls_core::WebSecurity;
use mailtls_examples::Config;
use mailtls_examples::config::User;

/// What curl got: the status code, the header section and the body.
struct Got {
    code: u16,
    head: String,
    body: String,
}

/// `curl` for `url` on `addr` (names resolved there), trusting the
/// server's test CA, with `extra` arguments.
async fn curl(ts: &TestServer, addr: SocketAddr, url: &str, extra: &[&str]) -> Got {
    let host = url
        .split("://")
        .nth(1)
        .and_then(|r| r.split(['/', ':']).next())
        .unwrap();
    let out = tokio::process::Command::new("curl")
        .args(["--silent", "--show-error", "--include", "--max-time", "10"])
        .arg("--resolve")
        .arg(format!("{host}:{}:{}", addr.port(), addr.ip()))
        .arg("--cacert")
        .arg(ts.ca_file())
        .args(extra)
        .arg(url.replace("PORT", &addr.port().to_string()))
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(IO_TIMEOUT, out)
        .await
        .expect("curl timed out")
        .expect("curl is installed");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{url}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let code = head.split(' ').nth(1).unwrap().parse().unwrap();
    Got {
        code,
        head: head.to_ascii_lowercase(),
        body: body.to_owned(),
    }
}

fn both_listeners(c: &mut Config) {
    c.web.mode = WebSecurity::HttpAndHttps;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_sees_the_page_by_default() {
    let ts = start(|c, _| both_listeners(c)).await;
    let (http, https) = (
        ts.server.addrs().http.unwrap(),
        ts.server.addrs().https.unwrap(),
    );
    let got = curl(&ts, http, "http://mail.example.test:PORT/status.json", &[]).await;
    assert_eq!(got.code, 200, "{}", got.body);
    assert!(got.body.contains("\"hostname\": \"mail.example.test\""));
    let got = curl(&ts, https, "https://mail.example.test:PORT/", &[]).await;
    assert_eq!(got.code, 200, "{}", got.body);
    assert!(got.body.contains("<h1>mailtls reference server"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_the_allowed_networks_the_page_is_refused_but_public_paths_answer() {
    let ts = start(|c, _| {
        both_listeners(c);
        // Loopback left out: the test client is "somewhere else".
        c.web.status_allowed_networks = vec!["192.0.2.0/24".parse().unwrap()];
    })
    .await;
    let (http, https) = (
        ts.server.addrs().http.unwrap(),
        ts.server.addrs().https.unwrap(),
    );
    for (addr, url) in [
        (http, "http://mail.example.test:PORT/"),
        (http, "http://mail.example.test:PORT/status.json"),
        (https, "https://mail.example.test:PORT/"),
        (https, "https://mail.example.test:PORT/status.json"),
    ] {
        let got = curl(&ts, addr, url, &[]).await;
        assert_eq!(got.code, 403, "{url}: {}", got.body);
        assert!(!got.body.contains("certificates"), "{url}: {}", got.body);
        // No login is offered when no status user is configured.
        assert!(!got.head.contains("www-authenticate"), "{}", got.head);
    }
    // The MTA-STS policy is for every sender.
    let got = curl(
        &ts,
        https,
        "https://mta-sts.example.test:PORT/.well-known/mta-sts.txt",
        &[],
    )
    .await;
    assert_eq!(got.code, 200, "{}", got.body);
    assert!(got.body.starts_with("version: STSv1\r\n"), "{}", got.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_users_log_in_over_https_only() {
    let ts = start(|c, _| {
        both_listeners(c);
        c.web.status_allowed_networks = Vec::new();
        c.users.push(User {
            name: "other".into(),
            password: "secret".into(),
        });
        c.web.status_users = vec!["test".into()];
    })
    .await;
    let (http, https) = (
        ts.server.addrs().http.unwrap(),
        ts.server.addrs().https.unwrap(),
    );
    let url = "https://mail.example.test:PORT/status.json";
    let got = curl(&ts, https, url, &[]).await;
    assert_eq!(got.code, 401, "{}", got.body);
    assert!(
        got.head
            .contains("www-authenticate: basic realm=\"mailtls status\", charset=\"utf-8\""),
        "{}",
        got.head
    );
    for wrong in ["test:wrong", "other:secret", "nobody:test"] {
        let got = curl(&ts, https, url, &["--user", wrong]).await;
        assert_eq!(got.code, 401, "{wrong}: {}", got.body);
    }
    let got = curl(&ts, https, url, &["--user", "test:test"]).await;
    assert_eq!(got.code, 200, "{}", got.body);
    assert!(got.body.contains("\"hostname\": \"mail.example.test\""));
    // Never a password over plain HTTP: refused, not asked for.
    let got = curl(
        &ts,
        http,
        "http://mail.example.test:PORT/status.json",
        &["--user", "test:test"],
    )
    .await;
    assert_eq!(got.code, 403, "{}", got.body);
    assert!(!got.head.contains("www-authenticate"), "{}", got.head);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_acme_http01_route_stays_public() {
    let ts = start(|c, _| {
        both_listeners(c);
        c.web.status_allowed_networks = vec!["192.0.2.0/24".parse().unwrap()];
        // A CA that is never reached: only the route matters here.
        c.acme = Config::from_toml_str(
            "[acme]\nenabled = true\nagree_tos = true\ndirectory = \"https://127.0.0.1:9/dir\"\n",
        )
        .unwrap()
        .acme;
    })
    .await;
    let http = ts.server.addrs().http.unwrap();
    let got = curl(
        &ts,
        http,
        "http://mail.example.test:PORT/.well-known/acme-challenge/no-such-token",
        &[],
    )
    .await;
    // The challenge route answered (an unknown token), not the access check.
    assert_eq!(got.code, 404, "{}", got.body);
    assert_eq!(got.body, "Unknown challenge token\n");
    let got = curl(&ts, http, "http://mail.example.test:PORT/", &[]).await;
    assert_eq!(got.code, 403, "{}", got.body);
}
