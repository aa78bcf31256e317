//! Starts Debian's `pebble` and `pebble-challtestsrv` on free loopback ports
//! with an HTTPS certificate made at test time; both die with the guard.
//! (A trimmed copy of mailtls-acme's test support: integration tests of two
//! crates cannot share a module.)
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running Pebble plus challtestsrv (its DNS server). Dropping stops both
/// and removes the temporary directory.
pub struct Pebble {
    _pebble: Proc,
    _challtestsrv: Proc,
    dir: tempfile::TempDir,
    /// Directory URL.
    pub directory_url: String,
    /// Pebble's HTTPS certificate as a PEM file (for `--extra-root`).
    pub root_pem: PathBuf,
    /// Where Pebble's validator connects for http-01.
    pub http_port: u16,
    /// challtestsrv's management API (`/set-txt`, `/clear-txt`).
    pub challtest_url: String,
}

fn wait_for_port(port: u16, what: &str) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{what} did not start listening on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Pebble {
    /// Starts both servers with `PEBBLE_WFE_NONCEREJECT=nonce_reject` and
    /// waits until they listen.
    pub fn start(nonce_reject: u8) -> Pebble {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
        let cert = params.self_signed(&key).unwrap();
        let root_pem = dir.path().join("cert.pem");
        std::fs::write(&root_pem, cert.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).unwrap();

        let (listen, management, http_port, tls_port, dns_port, challtest_mgmt) = (
            free_port(),
            free_port(),
            free_port(),
            free_port(),
            free_port(),
            free_port(),
        );
        let cfg = serde_json::json!({ "pebble": {
            "listenAddress": format!("127.0.0.1:{listen}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": dir.path().join("cert.pem"),
            "privateKey": dir.path().join("key.pem"),
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        }});
        let cfg_path = dir.path().join("pebble.json");
        std::fs::write(&cfg_path, cfg.to_string()).unwrap();

        // challtestsrv answers every A query with 127.0.0.1 (its default),
        // so the validator reaches our http-01 responder on loopback.
        let challtestsrv = Proc(
            Command::new("pebble-challtestsrv")
                .args([
                    "-dns01",
                    &format!("127.0.0.1:{dns_port}"),
                    "-management",
                    &format!("127.0.0.1:{challtest_mgmt}"),
                    "-http01",
                    "",
                    "-https01",
                    "",
                    "-tlsalpn01",
                    "",
                    "-defaultIPv6",
                    "",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("pebble-challtestsrv is installed (apt-get install pebble)"),
        );
        wait_for_port(challtest_mgmt, "pebble-challtestsrv");

        let pebble = Proc(
            Command::new("pebble")
                .args([
                    "-config",
                    cfg_path.to_str().unwrap(),
                    "-dnsserver",
                    &format!("127.0.0.1:{dns_port}"),
                ])
                .env("PEBBLE_VA_NOSLEEP", "1")
                .env("PEBBLE_WFE_NONCEREJECT", nonce_reject.to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("pebble is installed (apt-get install pebble)"),
        );
        wait_for_port(listen, "pebble");
        Pebble {
            _pebble: pebble,
            _challtestsrv: challtestsrv,
            dir,
            directory_url: format!("https://127.0.0.1:{listen}/dir"),
            root_pem,
            http_port,
            challtest_url: format!("http://127.0.0.1:{challtest_mgmt}"),
        }
    }
}
