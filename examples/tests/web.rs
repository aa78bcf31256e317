//! The web listeners in their four modes, the status page and
//! `/status.json`, and the tls-alpn-01 path on the HTTPS port.
// Helpers outside #[test] functions may unwrap too: a failed unwrap is a
// failed test, as clippy.toml already allows inside the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use common::*;
use mailtls_core::{DnsName, TlsAlpnChallenge, TlsAlpnChallengeSlot, WebSecurity};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

struct HttpResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl HttpResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

async fn request<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    method: &str,
    host: &str,
    path: &str,
) -> HttpResponse {
    let req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(IO_TIMEOUT, s.read_to_end(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.trim().to_owned(), v.trim().to_owned())
        })
        .collect();
    HttpResponse {
        status,
        headers,
        body: body.to_owned(),
    }
}

async fn http(addr: std::net::SocketAddr, method: &str, host: &str, path: &str) -> HttpResponse {
    request(TcpStream::connect(addr).await.unwrap(), method, host, path).await
}

async fn https(ts: &TestServer, name: &str, path: &str) -> HttpResponse {
    let mut config = (*client_config(&ts.ca_file())).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(ts.server.addrs().https.unwrap())
        .await
        .unwrap();
    let tls = tls_connect(Arc::new(config), name, tcp).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    request(tls, "GET", name, path).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_keeps_path_and_query() {
    // The default mode: redirect to this server's own HTTPS port.
    let ts = start(|_, _| {}).await;
    let https_port = ts.server.addrs().https.unwrap().port();
    let http_addr = ts.server.addrs().http.unwrap();
    let r = http(http_addr, "GET", "mail.example.test:8080", "/a/b?x=1&y=%20").await;
    assert_eq!(r.status, 301);
    assert_eq!(
        r.header("location").unwrap(),
        format!("https://mail.example.test:{https_port}/a/b?x=1&y=%20")
    );
    let r = http(http_addr, "POST", "mail.example.test", "/form").await;
    assert_eq!(r.status, 308, "other methods keep their method");
    assert_eq!(
        r.header("location").unwrap(),
        format!("https://mail.example.test:{https_port}/form")
    );
    // A Host header that is not a host is never echoed into the redirect.
    let r = http(http_addr, "GET", "evil.example/x", "/").await;
    assert_eq!(
        r.header("location").unwrap(),
        format!("https://mail.example.test:{https_port}/")
    );

    // An explicit port (a port-forward in front of the server) is used as is.
    let ts = start(|c, _| c.web.mode = "redirect-to-https:443".parse().unwrap()).await;
    let r = http(
        ts.server.addrs().http.unwrap(),
        "GET",
        "mail.example.test",
        "/status.json?v=2",
    )
    .await;
    assert_eq!(r.status, 301);
    assert_eq!(
        r.header("location").unwrap(),
        "https://mail.example.test/status.json?v=2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_only_serves_the_status_page_and_json() {
    let ts = start(|c, _| c.web.mode = WebSecurity::HttpsOnly).await;
    assert!(
        ts.server.addrs().http.is_none(),
        "https-only has no HTTP listener"
    );

    let page = https(&ts, "mail.example.test", "/").await;
    assert_eq!(page.status, 200);
    assert!(
        page.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    assert!(page.body.contains("Certificate resolver"), "{}", page.body);
    assert!(page.body.contains("imap.example.test"));
    assert!(page.body.contains("RSA 2048"));

    let r = https(&ts, "imap.example.test", "/status.json").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let json: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let certs = json["certificates"].as_array().unwrap();
    assert_eq!(certs.len(), 5, "{json:#}");
    let mail: Vec<&serde_json::Value> = certs
        .iter()
        .filter(|c| c["names"][0] == "mail.example.test")
        .collect();
    let mut keys: Vec<&str> = mail
        .iter()
        .map(|c| c["key_type"].as_str().unwrap())
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["ECDSA P-256", "RSA 2048"]);
    for c in certs {
        let days = c["days_left"].as_i64().unwrap();
        assert!((820..=825).contains(&days), "{c}");
        assert_eq!(c["fingerprint_sha256"].as_str().unwrap().len(), 95);
        assert!(c["source"].as_str().unwrap().ends_with(".crt"));
        assert!(c["not_after"].as_str().unwrap().contains('T'));
        assert!(
            c["subject"]
                .as_str()
                .unwrap()
                .contains("mailtls test certificate")
        );
    }
    assert!(
        certs.iter().any(|c| c["names"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n == "*.example.test")),
        "{json:#}"
    );
    let resolver = &json["resolver"];
    assert_eq!(resolver["generation"], 1);
    assert_eq!(resolver["certificates"], 5);
    assert!(resolver["hits"].as_u64().unwrap() >= 2, "{resolver}");
    assert!(resolver["last_reload_error"].is_null());
    assert_eq!(json["expiring_soon"].as_array().unwrap().len(), 0);
    let listeners = json["listeners"].as_array().unwrap();
    assert!(
        listeners
            .iter()
            .any(|l| l["name"] == "https" && l["mode"] == "https-only")
    );
    assert!(!listeners.iter().any(|l| l["name"] == "http"));

    let r = https(&ts, "mail.example.test", "/nothing").await;
    assert_eq!(r.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_only_and_http_and_https() {
    let ts = start(|c, _| c.web.mode = WebSecurity::HttpOnly).await;
    assert!(ts.server.addrs().https.is_none());
    let r = http(
        ts.server.addrs().http.unwrap(),
        "GET",
        "mail.example.test",
        "/status.json",
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("\"generation\": 1"), "{}", r.body);

    let ts = start(|c, _| c.web.mode = WebSecurity::HttpAndHttps).await;
    let r = http(
        ts.server.addrs().http.unwrap(),
        "GET",
        "mail.example.test",
        "/",
    )
    .await;
    assert_eq!(r.status, 200, "HTTP serves content, no redirect");
    assert!(r.header("location").is_none());
    assert_eq!(https(&ts, "mail.example.test", "/").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_alpn_01_hellos_get_only_the_challenge_certificate() {
    let ts = start(|c, _| c.web.mode = WebSecurity::HttpsOnly).await;
    let addr = ts.server.addrs().https.unwrap();
    let args = ["-alpn", "acme-tls/1", "-servername", "mail.example.test"];
    // No challenge installed: refused, never the real certificate.
    let out = s_client(addr, &args).await;
    assert!(!out.stdout.contains("BEGIN CERTIFICATE"), "{}", out.stdout);

    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["mail.example.test".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "acme challenge");
    let cert = params.self_signed(&key).unwrap();
    ts.server
        .resolver()
        .install_challenge(TlsAlpnChallenge {
            name: DnsName::parse("mail.example.test").unwrap(),
            chain: vec![cert.der().clone()],
            key: rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
        })
        .unwrap();
    let out = s_client(addr, &args).await;
    assert!(
        out.stdout.contains("ALPN protocol: acme-tls/1"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("CN = acme challenge"), "{}", out.stdout);
    // Ordinary clients still get the ordinary certificate.
    let out = s_client(
        addr,
        &["-alpn", "http/1.1", "-servername", "mail.example.test"],
    )
    .await;
    assert_eq!(out.leaf().dns_names, ["mail.example.test"]);
    assert_eq!(ts.server.resolver().stats().challenges_served, 1);
}
