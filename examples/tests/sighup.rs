//! SIGHUP on the real `mailtls-server` binary: after the config file
//! changes the published MTA-STS mode and a new certificate is dropped
//! into the (unwatched) certificate directory, one SIGHUP makes both take
//! effect without a restart, and a changed port is named as needing one; a
//! broken config on SIGHUP is refused with its key named and the old
//! settings stay in service.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use mailtls_core::{CertificateAuthority, DnsName, ServerCertSpec};
use serde_json::Value;
use tokio::net::TcpStream;

/// Kills the server on drop, so a failing test leaves nothing behind.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Ports {
    imaps: u16,
    http: u16,
    https: u16,
    all: Vec<u16>,
}

/// Free ports, all held at once (so they differ) and then released.
fn free_ports() -> Ports {
    let held: Vec<TcpListener> = (0..10)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let all: Vec<u16> = held
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect();
    Ports {
        imaps: all[4],
        http: all[7],
        https: all[8],
        all,
    }
}

/// The config file: every port fixed, the directory watcher off (so only
/// SIGHUP can load a new certificate), and `extra` appended.
fn config_text(p: &Ports, imaps_port: u16, extra: &str) -> String {
    let a = &p.all;
    format!(
        "[tls]\nwatch = false\n\
         [smtp]\nport = {}\n[submission]\nport = {}\n[submissions]\nport = {}\n\
         [imap]\nport = {}\n[imaps]\nport = {imaps_port}\n[pop3]\nport = {}\n[pop3s]\nport = {}\n\
         [web]\nmode = \"http-and-https\"\nhttp_port = {}\nhttps_port = {}\n{extra}",
        a[0], a[1], a[2], a[3], a[5], a[6], a[7], a[8]
    )
}

fn spawn(config: &Path, data_dir: &Path, log: &Path) -> ChildGuard {
    let child = Command::new(env!("CARGO_BIN_EXE_mailtls-server"))
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(data_dir)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    ChildGuard(child)
}

fn signal(child: &ChildGuard, sig: &str) {
    let pid = child.0.id().to_string();
    assert!(
        Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success()
    );
}

fn wait_for_port(child: &mut ChildGuard, addr: SocketAddr, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if let Some(status) = child.0.try_wait().unwrap() {
            panic!(
                "server exited with {status}:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "server did not listen on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The policy file served for `mta-sts.example.test` over HTTPS.
async fn policy(https: SocketAddr, ca: &Path) -> String {
    let mut config = (*client_config(ca)).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(https).await.unwrap();
    let tls = tls_connect(Arc::new(config), "mta-sts.example.test", tcp)
        .await
        .unwrap();
    http_get(tls, "mta-sts.example.test", "/.well-known/mta-sts.txt").await
}

async fn status_json(http: SocketAddr) -> Value {
    let tcp = TcpStream::connect(http).await.unwrap();
    serde_json::from_str(&http_get(tcp, "mail.example.test", "/status.json").await).unwrap()
}

/// The first DNS name of the certificate IMAPS serves for `sni`, or `None`
/// when the handshake fails (the default certificate does not match).
async fn served_for(imaps: SocketAddr, ca: &Path, sni: &str) -> Option<String> {
    let tcp = TcpStream::connect(imaps).await.unwrap();
    let tls = tls_connect(client_config(ca), sni, tcp).await.ok()?;
    Some(served_leaf(&tls).dns_names[0].clone())
}

/// Polls `check` for up to ten seconds.
async fn eventually<F, Fut>(what: &str, log: &Path, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; server log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn log_has(log: &Path, needle: &str) -> bool {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .contains(needle)
}

fn issue(data: &Path, name: &str) -> PathBuf {
    let ca_dir = data.join("ca");
    let ca = CertificateAuthority::from_pem(
        &std::fs::read_to_string(ca_dir.join("ca.crt")).unwrap(),
        &std::fs::read_to_string(ca_dir.join("ca.key")).unwrap(),
    )
    .unwrap();
    let made = ca
        .issue(&ServerCertSpec::new(DnsName::parse(name).unwrap()))
        .unwrap();
    made.write_files(&data.join("certs"), name).unwrap().0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_policy_and_certificates_and_refuses_a_broken_config() {
    let tmp = private_tempdir();
    let data = tmp.path().join("data");
    let config = tmp.path().join("server.toml");
    let log = tmp.path().join("server.log");
    let ports = free_ports();
    let testing = "[mta_sts]\ndomains = [\"example.test\"]\nmode = \"testing\"\n";
    std::fs::write(&config, config_text(&ports, ports.imaps, testing)).unwrap();
    let mut child = spawn(&config, &data, &log);
    let https: SocketAddr = format!("127.0.0.1:{}", ports.https).parse().unwrap();
    let http: SocketAddr = format!("127.0.0.1:{}", ports.http).parse().unwrap();
    let imaps: SocketAddr = format!("127.0.0.1:{}", ports.imaps).parse().unwrap();
    wait_for_port(&mut child, https, &log);
    let ca = data.join("ca").join("ca.crt");

    assert!(policy(https, &ca).await.contains("mode: testing"));
    assert_eq!(served_for(imaps, &ca, "new.other.test").await, None);

    // The new settings: enforce, a new certificate, and a port change
    // that cannot happen without a restart.
    issue(&data, "new.other.test");
    let enforce = "[mta_sts]\ndomains = [\"example.test\"]\nmode = \"enforce\"\n";
    let moved_imaps = ports.all[9];
    std::fs::write(&config, config_text(&ports, moved_imaps, enforce)).unwrap();
    // Nothing watches either file: without the signal nothing changes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(policy(https, &ca).await.contains("mode: testing"));
    assert_eq!(served_for(imaps, &ca, "new.other.test").await, None);

    signal(&child, "-HUP");
    eventually("the enforce policy", &log, || async {
        policy(https, &ca).await.contains("mode: enforce")
    })
    .await;
    assert_eq!(
        served_for(imaps, &ca, "new.other.test").await.as_deref(),
        Some("new.other.test")
    );
    // The old certificates are still there, IMAPS still on its old port.
    assert_eq!(
        served_for(imaps, &ca, "imap.example.test").await.as_deref(),
        Some("imap.example.test")
    );
    eventually("the restart warning", &log, || async {
        log_has(&log, "key=imaps.port")
    })
    .await;
    let status = status_json(http).await;
    assert_eq!(status["reload"]["reloads"], 1, "{status:#}");
    assert_eq!(status["reload"]["restart_required"][0], "imaps.port");
    assert_eq!(status["mta_sts"][0]["mode"], "enforce");
    assert!(
        status["certificates"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["names"][0] == "new.other.test"),
        "{status:#}"
    );

    // A broken file: refused, the key named, nothing changed.
    std::fs::write(
        &config,
        config_text(
            &ports,
            ports.imaps,
            "[mta_sts]\ndomains = [\"example.test\"]\nmode = \"none\"\n\
             [tls_rpt]\nrua = [\"http://reports.example.test/\"]\n",
        ),
    )
    .unwrap();
    issue(&data, "later.other.test");
    signal(&child, "-HUP");
    eventually("the refusal", &log, || async {
        log_has(&log, "reload refused")
    })
    .await;
    assert!(log_has(&log, "tls_rpt.rua[0]"));
    assert!(policy(https, &ca).await.contains("mode: enforce"));
    assert_eq!(served_for(imaps, &ca, "later.other.test").await, None);
    assert!(child.0.try_wait().unwrap().is_none(), "still running");
    let status = status_json(http).await;
    assert_eq!(status["reload"]["reloads"], 1, "{status:#}");
    assert_eq!(status["reload"]["failed"], 1, "{status:#}");
    let error = status["reload"]["last_error"].as_str().unwrap();
    assert!(error.contains("tls_rpt.rua[0]"), "{error}");

    // SIGTERM still stops it cleanly.
    signal(&child, "-TERM");
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "server did not exit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{status}");
}
