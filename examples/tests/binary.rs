//! The `mailtls-server` binary itself: first start makes the CA and
//! certificates with owner-only permissions, a STARTTLS handshake works,
//! SIGTERM stops it cleanly, a second start reuses what the first made, and
//! a bad config is refused with the key named.
// Helpers outside #[test] functions may unwrap too: a failed unwrap is a
// failed test, as clippy.toml already allows inside the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Kills the child on drop, so a failing test leaves no server behind.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl ChildGuard {
    fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "server did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Free ports, all held at once (so they differ) and then released.
fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    held.iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

fn config_text(ports: &[u16]) -> String {
    format!(
        "[smtp]\nport = {}\n[submission]\nport = {}\n[submissions]\nport = {}\n\
         [imap]\nport = {}\n[imaps]\nport = {}\n[pop3]\nport = {}\n[pop3s]\nport = {}\n\
         [web]\nhttp_port = {}\nhttps_port = {}\n\
         [[users]]\nname = \"alice\"\npassword = \"wonderland\"\n",
        ports[0], ports[1], ports[2], ports[3], ports[4], ports[5], ports[6], ports[7], ports[8]
    )
}

fn spawn(config: &Path, data_dir: &Path, log: &Path) -> ChildGuard {
    let out = std::fs::File::create(log.with_extension("out")).unwrap();
    let err = std::fs::File::create(log.with_extension("err")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_mailtls-server"))
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(data_dir)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap();
    ChildGuard(child)
}

fn wait_for_port(child: &mut ChildGuard, addr: SocketAddr, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        if let Some(status) = child.0.try_wait().unwrap() {
            panic!(
                "server exited with {status}:\n{}",
                std::fs::read_to_string(log.with_extension("err")).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "server did not listen on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

async fn starttls_handshake(addr: SocketAddr, ca: &Path) -> Vec<String> {
    let mut c = connect(addr).await;
    assert_eq!(c.reply().await.0, 220);
    assert_eq!(c.cmd("EHLO client.example").await.0, 250);
    assert_eq!(c.cmd("STARTTLS").await.0, 220);
    let tls = tls_connect(client_config(ca), "mail.example.test", c.into_inner())
        .await
        .unwrap();
    let names = served_leaf(&tls).dns_names;
    let mut c = LineClient::new(tls);
    assert_eq!(c.cmd("QUIT").await.0, 221);
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_makes_certificates_and_sigterm_stops_it() {
    let tmp = private_tempdir();
    let data = tmp.path().join("data");
    let config = tmp.path().join("server.toml");
    let ports = free_ports(9);
    std::fs::write(&config, config_text(&ports)).unwrap();
    let log = tmp.path().join("first");
    let mut child = spawn(&config, &data, &log);
    let smtp: SocketAddr = format!("127.0.0.1:{}", ports[0]).parse().unwrap();
    wait_for_port(&mut child, smtp, &log);

    let ca = data.join("ca").join("ca.crt");
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("ca")), 0o700);
    assert_eq!(mode(&data.join("certs")), 0o700);
    assert_eq!(mode(&data.join("spool")), 0o700);
    assert_eq!(mode(&data.join("ca").join("ca.key")), 0o600);
    let mut keys = 0;
    for e in std::fs::read_dir(data.join("certs")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "key") {
            assert_eq!(mode(&p), 0o600, "{}", p.display());
            keys += 1;
        }
    }
    assert_eq!(keys, 5, "mail, mail-rsa, imap, pop, wildcard");
    assert!(data.join("certs/mail.example.test.crt").exists());
    assert!(data.join("certs/mail.example.test-rsa.crt").exists());
    assert!(data.join("certs/_wildcard.example.test.crt").exists());

    assert_eq!(starttls_handshake(smtp, &ca).await, ["mail.example.test"]);

    let pid = child.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = child.wait_exit(Duration::from_secs(15));
    assert!(status.success(), "{status}");
    let out = std::fs::read_to_string(log.with_extension("out")).unwrap();
    assert!(out.contains("made a test CA"), "{out}");
    assert!(
        out.contains(&format!("smtp         127.0.0.1:{}", ports[0])),
        "{out}"
    );
    assert!(
        out.contains("imaps") && out.contains("implicit-tls"),
        "{out}"
    );
    let err = std::fs::read_to_string(log.with_extension("err")).unwrap();
    assert!(err.contains("shutting down"), "{err}");

    // Second start: the CA and certificates are reused, not remade.
    let ca_before = std::fs::read(&ca).unwrap();
    let cert_before = std::fs::read(data.join("certs/mail.example.test.crt")).unwrap();
    let log = tmp.path().join("second");
    let mut child = spawn(&config, &data, &log);
    wait_for_port(&mut child, smtp, &log);
    assert_eq!(starttls_handshake(smtp, &ca).await, ["mail.example.test"]);
    assert_eq!(std::fs::read(&ca).unwrap(), ca_before);
    assert_eq!(
        std::fs::read(data.join("certs/mail.example.test.crt")).unwrap(),
        cert_before
    );
    drop(child);
    let out = std::fs::read_to_string(log.with_extension("out")).unwrap();
    assert!(!out.contains("made"), "{out}");
}

#[test]
fn a_bad_config_is_refused_naming_the_key() {
    let tmp = private_tempdir();
    let config = tmp.path().join("bad.toml");
    std::fs::write(&config, "[smtp]\nsecurity = \"sometimes\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mailtls-server"))
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(tmp.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("smtp.security"), "{err}");
    assert!(
        !tmp.path().join("data").exists(),
        "nothing is written for a bad config"
    );

    std::fs::write(&config, "[smtp]\nprot = 25\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mailtls-server"))
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("prot"));

    let out = Command::new(env!("CARGO_BIN_EXE_mailtls-server"))
        .arg("--bogus")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("'--bogus'"), "{err}");
    assert!(err.contains("Usage: mailtls-server"), "{err}");
}
