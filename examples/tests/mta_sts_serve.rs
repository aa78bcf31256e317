//! The operator's own MTA-STS policy: served over real HTTPS for
//! `mta-sts.DOMAIN` (SNI and Host), read back with mailtls-policy's strict
//! parser and its sender-side fetcher, and the records printed by
//! `mailtls-server dns-records` parsed with mailtls-policy's record parsers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use common::*;
use mailtls_core::DnsName;
use mailtls_examples::{Config, Server};
use mailtls_policy::dns::StaticResolver;
use mailtls_policy::mta_sts::{
    FetcherConfig, PolicyFetcher, PolicyMode, Profile, parse_policy, parse_record,
};
use mailtls_policy::own_domain::{CheckStatus, check_setup, id_from_content};
use mailtls_policy::tlsrpt::{ReportUri, TlsRptRecord};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Reply {
    status: u16,
    content_type: Option<String>,
    body: String,
}

/// One HTTP/1.1 GET over a fresh TLS connection with `sni`, naming `host`.
async fn https_get(ts: &TestServer, sni: &str, host: &str, path: &str) -> Reply {
    let mut config = (*client_config(&ts.ca_file())).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(ts.server.addrs().https.unwrap())
        .await
        .unwrap();
    let mut tls = tls_connect(Arc::new(config), sni, tcp).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    tls.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(IO_TIMEOUT, tls.read_to_end(&mut raw))
        .await
        .unwrap()
        .unwrap();
    parse_reply(&raw)
}

fn parse_reply(raw: &[u8]) -> Reply {
    let text = String::from_utf8(raw.to_vec()).unwrap();
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
    let content_type = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.trim().to_owned());
    Reply {
        status,
        content_type,
        body: body.to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_policy_is_served_for_the_policy_host_only() {
    let ts = start(|_, _| {}).await;
    let r = https_get(
        &ts,
        "mta-sts.example.test",
        "mta-sts.example.test",
        "/.well-known/mta-sts.txt",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.content_type.as_deref(), Some("text/plain"));
    let parsed = parse_policy(r.body.as_bytes(), Profile::Strict).unwrap();
    assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
    assert_eq!(parsed.policy.mode(), PolicyMode::Testing);
    assert_eq!(parsed.policy.max_age(), 604_800);
    assert!(
        parsed
            .policy
            .matches_mx(&DnsName::parse("mail.example.test").unwrap())
    );
    assert_eq!(
        &parsed.policy,
        &ts.server.config().mta_sts.publications[0].policy
    );

    // The status page lists what is published.
    let r = https_get(
        &ts,
        "mail.example.test",
        "mail.example.test",
        "/status.json",
    )
    .await;
    assert_eq!(r.status, 200);
    let status: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let published = &status["mta_sts"][0];
    assert_eq!(
        published["url"],
        "https://mta-sts.example.test/.well-known/mta-sts.txt"
    );
    assert_eq!(published["mode"], "testing");
    assert_eq!(
        published["id"],
        ts.server.config().mta_sts.publications[0].id.as_str()
    );

    // Another host name on the same listener has no policy.
    let r = https_get(
        &ts,
        "mail.example.test",
        "mail.example.test",
        "/.well-known/mta-sts.txt",
    )
    .await;
    assert_eq!(r.status, 404);
    let r = https_get(
        &ts,
        "mta-sts.example.test",
        "mta-sts.other.example",
        "/.well-known/mta-sts.txt",
    )
    .await;
    assert_eq!(r.status, 404);

    // Plain HTTP never serves it (RFC 8461 §3.3: HTTPS only): here it redirects.
    let mut tcp = TcpStream::connect(ts.server.addrs().http.unwrap())
        .await
        .unwrap();
    tcp.write_all(
        b"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.example.test\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(IO_TIMEOUT, tcp.read_to_end(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let r = parse_reply(&raw);
    assert_eq!(r.status, 301);
    assert!(!r.body.contains("STSv1"), "{}", r.body);
}

/// The TXT text of the zone line for `owner` in `dns-records` output.
fn txt_of(output: &str, owner: &str) -> String {
    let line = output
        .lines()
        .find(|l| l.starts_with(&format!("{owner}. ")))
        .unwrap_or_else(|| panic!("no zone line for {owner}:\n{output}"));
    let parts: Vec<&str> = line.splitn(5, ' ').collect();
    assert_eq!(&parts[2..4], ["IN", "TXT"], "{line}");
    let quoted = parts[4];
    assert!(quoted.starts_with('"') && quoted.ends_with('"'), "{line}");
    quoted[1..quoted.len() - 1].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn printed_records_and_served_policy_pass_a_senders_check() {
    let dir = private_tempdir();
    let config_file = dir.path().join("server.toml");
    let data_dir = dir.path().join("data");
    // No wildcard name: the policy host needs (and gets) its own certificate.
    let toml = format!(
        "[server]\nnames = []\ndata_dir = {data:?}\n\
         [mta_sts]\ndomains = [\"example.test\"]\nmode = \"enforce\"\nmx = [\"mail.example.test\"]\nmax_age = 1209600\n\
         [tls_rpt]\nrua = [\"mailto:tlsrpt@example.test\", \"https://reports.example.test/tlsrpt\"]\n",
        data = data_dir.display().to_string()
    );
    std::fs::write(&config_file, toml).unwrap();

    // The command, as an operator runs it.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_mailtls-server"))
        .arg("dns-records")
        .arg("--config")
        .arg(&config_file)
        .args(["--ttl", "900"])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("_mta-sts.example.test. 900 IN TXT "),
        "{stdout}"
    );
    let sts_text = txt_of(&stdout, "_mta-sts.example.test");
    let sts = parse_record(sts_text.as_bytes()).unwrap();
    let rpt_text = txt_of(&stdout, "_smtp._tls.example.test");
    let rpt = TlsRptRecord::parse(&rpt_text).unwrap();
    assert_eq!(
        rpt.rua(),
        &[
            ReportUri::Mailto("tlsrpt@example.test".into()),
            ReportUri::Https("https://reports.example.test/tlsrpt".into()),
        ]
    );
    // Every non-record line is a zone-file comment.
    for l in stdout.lines() {
        assert!(l.starts_with(';') || l.starts_with('_'), "{l}");
    }

    // The server on the same file.
    let mut config = Config::load(&config_file).unwrap();
    config.use_ephemeral_ports();
    let server = Server::start(config).await.unwrap();
    let ca_file = data_dir.join("ca").join("ca.crt");
    assert!(
        data_dir
            .join("certs")
            .join("mta-sts.example.test.crt")
            .exists(),
        "a certificate for the policy host"
    );

    // A sender's view: DNS as printed, the policy fetched through
    // mailtls-policy's fetcher (WebPKI for mta-sts.example.test against the
    // test CA, text/plain, strict parse) from the real HTTPS listener.
    let dns = StaticResolver::builder()
        .txt("_mta-sts.example.test", &sts_text)
        .txt("_smtp._tls.example.test", &rpt_text)
        .mx("example.test", 10, "mail.example.test")
        .a("mta-sts.example.test", "127.0.0.1".parse().unwrap())
        .a("mail.example.test", "127.0.0.1".parse().unwrap())
        .build()
        .unwrap();
    let dns = Arc::new(dns);
    let mut roots = rustls::RootCertStore::empty();
    for c in mailtls_core::load::certificates_from_file(&ca_file).unwrap() {
        roots.add(c).unwrap();
    }
    let mut fetcher_config = FetcherConfig::new(roots);
    fetcher_config.port = server.addrs().https.unwrap().port();
    fetcher_config.profile = Profile::Strict;
    fetcher_config.timeout = IO_TIMEOUT;
    let fetcher = PolicyFetcher::new(
        fetcher_config,
        dns.clone(),
        std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
    )
    .unwrap();
    let domain = DnsName::parse("example.test").unwrap();
    let fetched = fetcher.fetch(&domain).await.unwrap();
    assert_eq!(fetched.policy.mode(), PolicyMode::Enforce);
    assert_eq!(fetched.policy.max_age(), 1_209_600);
    // The printed id is the content hash of exactly the policy served.
    assert_eq!(id_from_content(&fetched.policy), sts.id);

    let report = check_setup(&domain, dns.as_ref(), &fetcher).await;
    for c in &report.checks {
        assert_eq!(c.status, CheckStatus::Pass, "{report}");
    }
    assert!(report.ready_for_enforce(), "{report}");
    server.shutdown().await;
}

/// With `[tlsrpt_reports]` on, `dns-records` also prints the DKIM key record
/// of the report mails, making the key (0600) if the server has not yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn printed_records_include_the_report_dkim_key() {
    use std::os::unix::fs::PermissionsExt;
    let dir = private_tempdir();
    let config_file = dir.path().join("server.toml");
    let data_dir = dir.path().join("data");
    let toml = format!(
        "[server]\ndata_dir = {data:?}\n[tlsrpt_reports]\nenabled = true\n",
        data = data_dir.display().to_string()
    );
    std::fs::write(&config_file, toml).unwrap();
    let run = || async {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_mailtls-server"))
            .arg("dns-records")
            .arg("--config")
            .arg(&config_file)
            .output()
            .await
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let first = run().await;
    let line = first
        .lines()
        .find(|l| l.contains("._domainkey.") && l.contains(" TXT "))
        .unwrap_or_else(|| panic!("no DKIM record in:\n{first}"));
    assert!(line.contains("v=DKIM1") && line.contains("p="), "{line}");
    let key_file = std::fs::read_dir(&data_dir)
        .unwrap()
        .flatten()
        .flat_map(|e| {
            if e.path().is_dir() {
                std::fs::read_dir(e.path())
                    .unwrap()
                    .flatten()
                    .map(|f| f.path())
                    .collect()
            } else {
                vec![e.path()]
            }
        })
        .find(|p| first.contains(&p.display().to_string()))
        .unwrap_or_else(|| panic!("key file named in the output not found:\n{first}"));
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", key_file.display());
    // The key is made once: a second run prints the same record.
    assert_eq!(run().await, first);
}
