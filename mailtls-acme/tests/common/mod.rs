//! Starts Debian's `pebble` and `pebble-challtestsrv` on free loopback
//! ports with a TLS certificate made at test time; both die with the guard.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mailtls_acme::{AcmeClient, ClientConfig};
use rustls_pki_types::CertificateDer;

/// A free TCP port on 127.0.0.1 (also free for UDP in practice on loopback).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Pebble options a test may change.
#[derive(Debug, Clone, Default)]
pub struct PebbleOptions {
    /// `PEBBLE_WFE_NONCEREJECT` (percent); 50 when `None`, so every flow
    /// is exercised under heavy badNonce rejection.
    pub nonce_reject: Option<u8>,
    /// `PEBBLE_ALTERNATE_ROOTS`.
    pub alternate_roots: Option<u8>,
    /// `PEBBLE_AUTHZREUSE` (percent).
    pub authz_reuse: Option<u8>,
    /// Require EAB with these (kid, base64url key) pairs.
    pub eab_keys: Vec<(String, String)>,
    /// `certificateValidityPeriod` in seconds.
    pub validity_secs: Option<u64>,
    /// Resolve through this DNS server instead of challtestsrv.
    pub dns_server: Option<std::net::SocketAddr>,
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running Pebble plus challtestsrv (DNS). Dropping stops both.
pub struct Pebble {
    _pebble: Proc,
    _challtestsrv: Proc,
    _dir: tempfile::TempDir,
    /// Directory URL.
    pub directory_url: String,
    /// Pebble's HTTPS certificate (trust it).
    pub root: CertificateDer<'static>,
    /// Where Pebble's validator connects for http-01.
    pub http_port: u16,
    /// Where it connects for tls-alpn-01.
    pub tls_port: u16,
    /// Pebble's management port (roots, intermediates).
    pub management_port: u16,
    /// challtestsrv's management API.
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
    /// Starts both servers and waits until they listen.
    pub fn start(opts: PebbleOptions) -> Pebble {
        let dir = tempfile::tempdir().unwrap();
        // Pebble's HTTPS certificate, for 127.0.0.1.
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.path().join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).unwrap();

        let (listen, management, http_port, tls_port, dns_port, challtest_mgmt) = (
            free_port(),
            free_port(),
            free_port(),
            free_port(),
            free_port(),
            free_port(),
        );
        let mut pebble_cfg = serde_json::json!({
            "listenAddress": format!("127.0.0.1:{listen}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": dir.path().join("cert.pem"),
            "privateKey": dir.path().join("key.pem"),
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": !opts.eab_keys.is_empty(),
        });
        if !opts.eab_keys.is_empty() {
            let keys: serde_json::Map<String, serde_json::Value> = opts
                .eab_keys
                .iter()
                .map(|(k, v)| (k.clone(), v.clone().into()))
                .collect();
            pebble_cfg["externalAccountMACKeys"] = keys.into();
        }
        if let Some(v) = opts.validity_secs {
            pebble_cfg["certificateValidityPeriod"] = v.into();
        }
        let cfg_path = dir.path().join("pebble.json");
        std::fs::write(
            &cfg_path,
            serde_json::json!({ "pebble": pebble_cfg }).to_string(),
        )
        .unwrap();

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

        let mut cmd = Command::new("pebble");
        cmd.args([
            "-config",
            cfg_path.to_str().unwrap(),
            "-dnsserver",
            &opts
                .dns_server
                .map_or_else(|| format!("127.0.0.1:{dns_port}"), |a| a.to_string()),
        ])
        .env("PEBBLE_VA_NOSLEEP", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        cmd.env(
            "PEBBLE_WFE_NONCEREJECT",
            opts.nonce_reject.unwrap_or(50).to_string(),
        );
        if let Some(n) = opts.alternate_roots {
            cmd.env("PEBBLE_ALTERNATE_ROOTS", n.to_string());
        }
        if let Some(n) = opts.authz_reuse {
            cmd.env("PEBBLE_AUTHZREUSE", n.to_string());
        }
        let pebble = Proc(
            cmd.spawn()
                .expect("pebble is installed (apt-get install pebble)"),
        );
        wait_for_port(listen, "pebble");
        Pebble {
            _pebble: pebble,
            _challtestsrv: challtestsrv,
            _dir: dir,
            directory_url: format!("https://127.0.0.1:{listen}/dir"),
            root: cert.der().clone(),
            http_port,
            tls_port,
            management_port: management,
            challtest_url: format!("http://127.0.0.1:{challtest_mgmt}"),
        }
    }

    /// The client configuration trusting only this Pebble.
    pub fn config(&self) -> ClientConfig {
        let mut config = ClientConfig::new(&self.directory_url)
            .with_root(self.root.clone())
            .only_extra_roots();
        // At 50% rejection, 10 retries fail one request in ~2000; a suite
        // makes hundreds. 20 retries: one in ~2 million.
        config.max_bad_nonce_retries = 20;
        config
    }

    /// A connected client.
    pub async fn client(&self) -> AcmeClient {
        AcmeClient::new(self.config()).await.unwrap()
    }

    /// A client trusting Pebble's management interface, for /roots.
    pub async fn management_get(&self, path: &str) -> String {
        let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates({
            let mut r = rustls::RootCertStore::empty();
            r.add(self.root.clone()).unwrap();
            r
        })
        .with_no_client_auth();
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .build()
            .unwrap();
        http.get(format!("https://127.0.0.1:{}{path}", self.management_port))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

/// Names (SANs) in a PEM chain's leaf.
pub fn leaf_names(chain_pem: &str) -> Vec<String> {
    use rustls_pki_types::pem::PemObject;
    let leaf = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .next()
        .unwrap()
        .unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&leaf).unwrap();
    let mut names: Vec<String> = cert
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::DNSName(d) => Some((*d).to_owned()),
            _ => None,
        })
        .collect();
    names.sort();
    names
}

/// A reqwest client for plain-HTTP management APIs (reqwest needs a TLS
/// config even then; this one trusts nothing).
pub fn plain_http_client() -> reqwest::Client {
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .build()
        .unwrap()
}
