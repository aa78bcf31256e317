//! The status page as a person sees it: rendered by headless Chromium
//! (Debian `chromium`) from a running server, its DOM checked for every
//! section and for real values (the certificate a real handshake got, its
//! days until expiry, a certificate about to expire), and a screenshot kept
//! in the test output directory. `/status.json` is checked against the same
//! handshake.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use common::*;
use mailtls_core::{CertInfo, DnsName, ServerCertSpec, WebSecurity};
use mailtls_examples::MailListener;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long one Chromium run may take before it is killed.
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(60);

/// Kills the whole process group of a Chromium run (it forks zygote,
/// renderer and GPU processes) when dropped: on success, on timeout and
/// when an assertion fails first.
struct ChromiumGuard {
    pgid: Option<u32>,
}

impl Drop for ChromiumGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.pgid {
            // The group is ours (process_group(0) below); once everything in
            // it has exited this finds nothing, which is fine.
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pgid}")])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Runs headless Chromium with `args` then `url`; returns its stdout.
async fn chromium(profile: &Path, args: &[String], url: &str) -> String {
    let mut cmd = tokio::process::Command::new("chromium");
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-dev-shm-usage",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(args)
    .arg(url)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .process_group(0)
    .kill_on_drop(true);
    let child = cmd
        .spawn()
        .expect("chromium is installed (apt-get install -y chromium)");
    let _guard = ChromiumGuard { pgid: child.id() };
    let out = tokio::time::timeout(CHROMIUM_TIMEOUT, child.wait_with_output())
        .await
        .expect("chromium timed out")
        .unwrap();
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// One plain HTTP GET; returns the status code and the body.
async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req =
        format!("GET {path} HTTP/1.1\r\nHost: mail.example.test\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(IO_TIMEOUT, s.read_to_end(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let code = head.split(' ').nth(1).unwrap().parse().unwrap();
    (code, body.to_owned())
}

/// The contents of `<section id="ID">` in a DOM dump.
fn section<'a>(dom: &'a str, id: &str) -> &'a str {
    let open = format!("<section id=\"{id}\">");
    let start = dom
        .find(&open)
        .unwrap_or_else(|| panic!("no section {id} in the page:\n{dom}"));
    let end = dom[start..].find("</section>").unwrap() + start;
    &dom[start..end]
}

/// The table row (`<tr>...</tr>`) in `html` that contains `needle`.
fn row_with<'a>(html: &'a str, needle: &str) -> &'a str {
    let at = html
        .find(needle)
        .unwrap_or_else(|| panic!("{needle} not found in:\n{html}"));
    let start = html[..at].rfind("<tr>").unwrap();
    let end = html[at..].find("</tr>").unwrap() + at;
    &html[start..end]
}

fn days_left(not_after: SystemTime) -> i64 {
    let secs = not_after
        .duration_since(SystemTime::now())
        .unwrap()
        .as_secs();
    i64::try_from(secs / 86_400).unwrap()
}

/// Where the screenshot goes: the test's output directory, which outlives
/// the test so a person can look at it.
fn screenshot_path(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status_page");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Screenshots `url` into the test output directory and checks it is a
/// real, non-trivial PNG.
async fn screenshot(profile: &Path, url: &str, name: &str, height: u32, extra: &[&str]) {
    let png = screenshot_path(name);
    let _ = std::fs::remove_file(&png);
    let mut args = vec![
        format!("--screenshot={}", png.display()),
        format!("--window-size=1280,{height}"),
    ];
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    chromium(profile, &args, url).await;
    let bytes = std::fs::read(&png).unwrap();
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(bytes.len() > 10_000, "suspiciously small screenshot");
    println!("status page screenshot: {}", png.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_renders_every_section_with_real_values() {
    let ts = start(|c, dir| {
        c.web.mode = WebSecurity::HttpAndHttps;
        // A certificate ten days from expiry: it must be flagged.
        let mut spec = ServerCertSpec::new(DnsName::parse("soon.other.test").unwrap());
        spec.validity_days = 10;
        mailtls_core::maker::self_signed(&spec)
            .unwrap()
            .write_files(&dir.join("certs"), "soon.other.test")
            .unwrap();
    })
    .await;
    let http = ts.server.addrs().http.unwrap();

    // A real handshake: the page must show the certificate it got.
    let tcp = TcpStream::connect(ts.addr(MailListener::Imaps))
        .await
        .unwrap();
    let tls = tls_connect(client_config(&ts.ca_file()), "imap.example.test", tcp)
        .await
        .unwrap();
    let served: CertInfo = served_leaf(&tls);
    drop(tls);
    let fingerprint = served.fingerprint_hex();
    let served_days = days_left(served.not_after);
    let soon = CertInfo::from_der(
        &mailtls_core::load::certificates_from_file(
            &ts.data_dir().join("certs").join("soon.other.test.crt"),
        )
        .unwrap()[0],
    )
    .unwrap();
    let soon_days = days_left(soon.not_after);
    assert!((8..=10).contains(&soon_days), "{soon_days}");

    // The JSON report agrees with the handshake.
    let (code, body) = http_get(http, "/status.json").await;
    assert_eq!(code, 200, "{body}");
    let json: Value = serde_json::from_str(&body).unwrap();
    assert!(
        json["resolver"]["exact_hits"].as_u64().unwrap() >= 1,
        "{json:#}"
    );
    let certs = json["certificates"].as_array().unwrap();
    let entry = certs
        .iter()
        .find(|c| c["fingerprint_sha256"] == fingerprint.as_str())
        .unwrap_or_else(|| panic!("served certificate not listed: {json:#}"));
    assert_eq!(entry["days_left"], served_days);
    assert!(
        entry["names"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n == "imap.example.test")
    );
    let expiring = json["expiring_soon"].as_array().unwrap();
    assert_eq!(expiring.len(), 1, "{json:#}");
    assert_eq!(expiring[0]["names"][0], "soon.other.test");
    assert_eq!(json["mta_sts"][0]["mode"], "testing");
    assert_eq!(json["reload"]["reloads"], 0);

    // The page, as Chromium builds it.
    let profile = private_tempdir();
    let url = format!("http://{http}/");
    let dom = chromium(profile.path(), &["--dump-dom".to_owned()], &url).await;
    assert!(
        dom.contains("<h1>mailtls reference server: mail.example.test</h1>"),
        "{dom}"
    );
    assert!(!dom.contains("<script"), "the page needs no JavaScript");

    let certificates = section(&dom, "certificates");
    let row = row_with(certificates, &fingerprint);
    assert!(row.contains("imap.example.test"), "{row}");
    assert!(
        row.contains(&format!("<td class=\"days-left\">{served_days}</td>")),
        "{row}"
    );
    let expiring = section(&dom, "expiring");
    assert!(
        expiring.contains("1 certificate(s) expire within 30 days"),
        "{expiring}"
    );
    let row = row_with(expiring, "soon.other.test");
    assert!(
        row.contains(&format!("<td class=\"days-left warn\">{soon_days}</td>")),
        "{row}"
    );
    let resolver = section(&dom, "resolver");
    assert!(resolver.contains("<th>certificates</th><td>"), "{resolver}");
    let published = section(&dom, "mta-sts-published");
    let row = row_with(
        published,
        "https://mta-sts.example.test/.well-known/mta-sts.txt",
    );
    assert!(row.contains("<td class=\"mode\">testing</td>"), "{row}");
    let listeners = section(&dom, "listeners");
    assert!(
        listeners.contains(&ts.addr(MailListener::Imaps).to_string()),
        "{listeners}"
    );
    let reload = section(&dom, "reload");
    assert!(reload.contains("<th>reloads</th><td>0</td>"), "{reload}");
    // Subsystems the default configuration leaves off say so.
    for (id, key) in [
        ("outbound", "outbound.enabled"),
        ("mta-sts-cache", "outbound.enabled"),
        ("smime", "smime.enabled"),
        ("acme", "acme.enabled"),
    ] {
        let body = section(&dom, id);
        assert!(
            body.contains(&format!("Not configured (see <code>{key}</code>)")),
            "{id}: {body}"
        );
    }
    for key in ["outbound", "smime", "acme"] {
        assert!(json[key].is_null(), "{key}: {json:#}");
    }

    // The screenshot, kept for a person to look at.
    screenshot(profile.path(), &url, "status.png", 2000, &[]).await;
}

/// An RFC 8460 report as another sender would mail it to our `rua`.
const RECEIVED_REPORT: &str = r#"{"organization-name":"Sender Org","date-range":{"start-datetime":"2026-11-23T00:00:00Z","end-datetime":"2026-11-23T23:59:59Z"},"contact-info":"mailto:tls@sender.example","report-id":"r1@sender.example","policies":[{"policy":{"policy-type":"sts","policy-string":["version: STSv1","mode: testing","mx: mail.example.test","max_age: 604800"],"policy-domain":"example.test","mx-host":["mail.example.test"]},"summary":{"total-successful-session-count":12,"total-failure-session-count":3},"failure-details":[{"result-type":"certificate-expired","sending-mta-ip":"192.0.2.1","receiving-mx-hostname":"mail.example.test","failed-session-count":3}]}]}"#;

/// A self-signed S/MIME certificate for `address`, made by OpenSSL.
fn partner_certificate(dir: &Path, address: &str) -> Vec<u8> {
    let out = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "365",
        ])
        .arg("-keyout")
        .arg(dir.join("partner.key"))
        .arg("-out")
        .arg(dir.join("partner.crt"))
        .args(["-subj", "/CN=Bob Partner"])
        .args(["-addext", &format!("subjectAltName=email:{address}")])
        .args([
            "-addext",
            "keyUsage=critical,digitalSignature,keyEncipherment",
        ])
        .args(["-addext", "extendedKeyUsage=emailProtection"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(dir.join("partner.crt")).unwrap()
}

/// Submits one message over submission with STARTTLS and AUTH PLAIN.
async fn submit(ts: &TestServer, rcpt: &str) {
    use base64::Engine as _;
    let mut c = connect(ts.addr(MailListener::Submission)).await;
    assert_eq!(c.reply().await.0, 220);
    assert_eq!(c.cmd("EHLO client.example").await.0, 250);
    assert_eq!(c.cmd("STARTTLS").await.0, 220);
    let mut c = upgrade(c, client_config(&ts.ca_file()), "mail.example.test").await;
    assert_eq!(c.cmd("EHLO client.example").await.0, 250);
    let auth = base64::engine::general_purpose::STANDARD.encode("\0test\0test");
    assert_eq!(c.cmd(&format!("AUTH PLAIN {auth}")).await.0, 235);
    assert_eq!(c.cmd("MAIL FROM:<test@example.test>").await.0, 250);
    assert_eq!(c.cmd(&format!("RCPT TO:<{rcpt}>")).await.0, 250);
    assert_eq!(c.cmd("DATA").await.0, 354);
    for l in [
        "From: test@example.test",
        &format!("To: {rcpt}"),
        "Subject: queued",
        "",
        "For the queue.",
    ] {
        c.send(l).await;
    }
    let (code, text) = c.cmd(".").await;
    assert_eq!(code, 250, "{text}");
    assert_eq!(c.cmd("QUIT").await.0, 221);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_shows_queue_tlsrpt_and_smime_when_configured() {
    // Nothing listens here: the relayed message stays queued (deferred).
    let dead_relay = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let ts = start(|c, dir| {
        let mut full = mailtls_examples::Config::from_toml_str(&format!(
            "[outbound]\nenabled = true\nrelay_host = \"{dead_relay}\"\nrelay_tls = \"none\"\n\
             [tls_rpt]\nrua = [\"mailto:tlsrpt@example.test\"]\n\
             [smime]\nenabled = true\n\
             [web]\nmode = \"http-and-https\"\n\
             [[users]]\nname = \"test\"\npassword = \"test\"\n"
        ))
        .unwrap();
        full.server.data_dir = dir.to_owned();
        full.use_ephemeral_ports();
        *c = full;
        // A partner certificate uploaded before start, as an operator would.
        let smime_dir = dir.join("smime");
        mailtls_core::secret_file::ensure_private_dir(&smime_dir).unwrap();
        let pem = partner_certificate(dir, "bob@partner.example");
        let storage =
            mailtls_smime::gateway::FileStorage::in_dir(&smime_dir, "partners.json").unwrap();
        // The partner store is async; this set-up closure is not.
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async {
                let mut store = mailtls_smime::gateway::PartnerStore::open(
                    Box::new(storage),
                    mailtls_smime::gateway::HarvestMode::Automatic,
                )
                .await
                .unwrap();
                store
                    .upload(
                        &pem,
                        "partner.crt",
                        mailtls_smime::gateway::Binding::Addresses,
                        SystemTime::now(),
                    )
                    .await
                    .unwrap();
            })
        });
    })
    .await;
    let http = ts.server.addrs().http.unwrap();

    submit(&ts, "carol@remote.example").await;
    let report: Vec<&str> = [
        "From: reporter@sender.example",
        "To: tlsrpt@example.test",
        "Subject: Report Domain: example.test Submitter: sender.example Report-ID: <r1@sender.example>",
        "TLS-Report-Domain: example.test",
        "TLS-Report-Submitter: sender.example",
        "MIME-Version: 1.0",
        "Content-Type: multipart/report; report-type=\"tlsrpt\"; boundary=\"b1\"",
        "",
        "--b1",
        "Content-Type: text/plain",
        "",
        "A TLS report.",
        "--b1",
        "Content-Type: application/tlsrpt+json",
        "Content-Disposition: attachment; filename=\"sender.example!example.test!1!2!r1.json\"",
        "",
        RECEIVED_REPORT,
        "--b1--",
    ]
    .to_vec();
    send_mail(&ts, "tlsrpt@example.test", &report).await;

    let (code, body) = http_get(http, "/status.json").await;
    assert_eq!(code, 200);
    let json: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["outbound"]["queued_messages"], 1, "{json:#}");
    assert_eq!(
        json["outbound"]["route"],
        format!("relay {dead_relay}"),
        "{json:#}"
    );
    let received = &json["tlsrpt"]["received"][0];
    assert_eq!(received["policy_domain"], "example.test", "{json:#}");
    assert_eq!(received["successful"], 12);
    assert_eq!(received["failed"], 3);
    assert_eq!(
        json["smime"]["partners"][0]["addresses"][0], "bob@partner.example",
        "{json:#}"
    );

    let profile = private_tempdir();
    let url = format!("http://{http}/");
    let dom = chromium(profile.path(), &["--dump-dom".to_owned()], &url).await;
    let outbound = section(&dom, "outbound");
    assert!(
        outbound.contains("<th>queued messages</th><td>1</td>"),
        "{outbound}"
    );
    assert!(
        outbound.contains(&format!("relay {dead_relay}")),
        "{outbound}"
    );
    let cache = section(&dom, "mta-sts-cache");
    assert!(cache.contains("No policy cached yet"), "{cache}");
    let tlsrpt = section(&dom, "tlsrpt");
    // The received-report summary: day, domain, counts, failure types and
    // who sent it (a nested table holds the failure types).
    assert!(
        tlsrpt.contains("<td>2026-11-23</td><td>example.test</td><td>12</td><td>3</td>"),
        "{tlsrpt}"
    );
    assert!(
        tlsrpt.contains("<th>certificate-expired</th><td>3</td>"),
        "{tlsrpt}"
    );
    assert!(tlsrpt.contains("<td>Sender Org</td>"), "{tlsrpt}");
    let smime = section(&dom, "smime");
    let row = row_with(smime, "bob@partner.example");
    assert!(row.contains("CN=Bob Partner"), "{row}");
    assert!(row.contains("uploaded"), "{row}");

    // Taller: the subsystem sections come after the certificates.
    screenshot(profile.path(), &url, "status-subsystems.png", 3200, &[]).await;
}

/// Pebble (Debian `pebble`) issues the server's certificate at start; the
/// page, fetched over HTTPS, shows the schedule and the certificate the
/// run put into service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_shows_the_acme_schedule_after_pebble_issued() {
    let pebble =
        mailtls_testpeers::Pebble::start(mailtls_testpeers::PebbleOptions::nonce_reject(20));
    let dir = private_tempdir();
    let mut config = mailtls_examples::Config::from_toml_str(&format!(
        "[server]\ndata_dir = {data:?}\n\
         [acme]\nenabled = true\ndirectory = {url:?}\nca_file = {ca:?}\n\
         agree_tos = true\nbad_nonce_retries = 30\nadmin = \"admin@example.test\"\n",
        data = dir.path().display().to_string(),
        url = pebble.directory_url,
        ca = pebble.root_pem.display().to_string(),
    ))
    .unwrap();
    config.use_ephemeral_ports();
    // Pebble's http-01 validator connects here.
    config.web.http_port = pebble.http_port;
    let server = mailtls_examples::Server::start(config).await.unwrap();
    let ts = TestServer { server, dir };
    let acme = ts.server.acme().expect("acme is enabled").clone();
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let run = loop {
        if let Some(r) = acme.status().last_run {
            break r;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no ACME run within 90 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(run.error, None, "{run:?}");
    let status = acme.status();
    let cert = status
        .certificate
        .clone()
        .expect("a certificate was issued");
    let next_run = status.next_run.clone().expect("a next run is planned");

    // Over HTTPS: the page is served with the ACME certificate itself.
    let profile = private_tempdir();
    let url = format!("https://{}/", ts.server.addrs().https.unwrap());
    let dom = chromium(
        profile.path(),
        &[
            "--ignore-certificate-errors".to_owned(),
            "--dump-dom".to_owned(),
        ],
        &url,
    )
    .await;
    let section_acme = section(&dom, "acme");
    for needle in [
        format!("<th>directory</th><td>{}</td>", pebble.directory_url),
        format!("<th>days left</th><td>{}</td>", cert.days_left),
        format!("<th>next run</th><td>{next_run}</td>"),
        "<th>outcome</th><td>issued</td>".to_owned(),
        cert.fingerprint_sha256.clone(),
        format!("<th>names</th><td>{}</td>", status.names.join(", ")),
    ] {
        assert!(section_acme.contains(&needle), "{needle}:\n{section_acme}");
    }
    // The resolver serves it: it is in the certificate list too.
    let certificates = section(&dom, "certificates");
    let row = row_with(certificates, &cert.fingerprint_sha256);
    assert!(row.contains("imap.example.test"), "{row}");
    assert!(
        row.contains(&format!("<td class=\"days-left\">{}</td>", cert.days_left)),
        "{row}"
    );
    screenshot(
        profile.path(),
        &url,
        "status-acme.png",
        2000,
        &["--ignore-certificate-errors"],
    )
    .await;
}
