//! ACME inside the reference server over dns-01: the server publishes its
//! `_acme-challenge` TXT records by RFC 2136 UPDATE, signed with the TSIG key
//! from a BIND key file, to Knot DNS (a real authoritative server); Pebble
//! resolves through that Knot and issues one certificate for the host names
//! and the wildcard.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use common::{TestServer, client_config, private_tempdir, served_leaf, tls_connect};
use mailtls_examples::acme_run::RunOutcome;
use mailtls_examples::{Config, MailListener, Server};
use mailtls_testpeers::{Knot, Pebble, PebbleOptions};
use tokio::net::TcpStream;

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn issuing_root(pebble: &Pebble, https_root: &Path, dir: &Path) -> std::path::PathBuf {
    let out = Command::new("curl")
        .args(["-sSf", "--cacert"])
        .arg(https_root)
        .arg(format!(
            "https://127.0.0.1:{}/roots/0",
            pebble.management_port
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = dir.join("pebble-root.pem");
    std::fs::write(&path, &out.stdout).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns01_through_rfc2136_with_a_tsig_key_file() {
    let mut secret = [0u8; 32];
    aws_lc_rs::rand::fill(&mut secret).unwrap();
    let secret = base64::engine::general_purpose::STANDARD.encode(secret);
    let knot = Knot::start("example.test", "acme-update", &secret).await;
    let pebble = Pebble::start(PebbleOptions {
        dns_server: Some(knot.addr),
        authz_reuse: Some(0),
        nonce_reject: Some(20),
        ..PebbleOptions::default()
    });

    let dir = private_tempdir();
    let https_root = dir.path().join("pebble-https.pem");
    std::fs::write(&https_root, pem("CERTIFICATE", &pebble.root)).unwrap();
    // As `tsig-keygen acme-update` writes it.
    let key_file = dir.path().join("acme-update.key");
    std::fs::write(
        &key_file,
        format!("key \"acme-update\" {{\n\talgorithm hmac-sha256;\n\tsecret \"{secret}\";\n}};\n"),
    )
    .unwrap();
    let text = format!(
        "[server]\ndata_dir = {data:?}\n\
         [acme]\nenabled = true\ndirectory = {directory:?}\nca_file = {ca:?}\n\
         agree_tos = true\nbad_nonce_retries = 30\n\
         challenge = \"dns-01\"\ndns_server = \"{dns}\"\ndns_zone = \"example.test\"\n\
         tsig_key_file = {key:?}\n",
        data = dir.path().display().to_string(),
        directory = pebble.directory_url,
        ca = https_root.display().to_string(),
        dns = knot.addr,
        key = key_file.display().to_string(),
    );
    let mut config = Config::from_toml_str(&text).unwrap();
    config.use_ephemeral_ports();
    let ts = TestServer {
        server: Server::start(config).await.unwrap(),
        dir,
    };
    let acme = ts.server.acme().unwrap();
    // dns-01 can prove the wildcard, so the defaults keep it.
    assert_eq!(
        acme.names(),
        [
            "mail.example.test",
            "imap.example.test",
            "pop.example.test",
            "*.example.test"
        ]
    );
    let start = Instant::now();
    let run = loop {
        if let Some(r) = acme.status().last_run {
            break r;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no run finished"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(run.outcome, RunOutcome::Issued, "{run:?}");
    assert_eq!(acme.status().challenge, "dns-01");

    let root = issuing_root(&pebble, &https_root, ts.data_dir());
    for name in [
        "mail.example.test",
        "webmail.example.test",
        "mta-sts.example.test",
    ] {
        let tcp = TcpStream::connect(ts.addr(MailListener::Imaps))
            .await
            .unwrap();
        let tls = tls_connect(client_config(&root), name, tcp).await.unwrap();
        let leaf = served_leaf(&tls);
        assert!(leaf.issuer.contains("Pebble"), "{name}: {}", leaf.issuer);
        assert!(leaf.dns_names.contains(&"*.example.test".to_owned()));
    }
    // Every test certificate is covered, the wildcard one included.
    let left: Vec<String> = std::fs::read_dir(ts.data_dir().join("certs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert_eq!(left, ["acme-mail.example.test.pem"]);
}
