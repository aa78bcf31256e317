//! Debian's `pebble` (a test ACME server) and `pebble-challtestsrv` (its
//! DNS server: every A query answers 127.0.0.1, TXT records set over its
//! management API) on free loopback ports, with an HTTPS certificate made at
//! start. Both processes die and the directory goes with the [`Pebble`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use mailtls_acme::{
    Account, AccountKey, AcmeClient, ClientConfig, NewAccountOptions, SigningAlgorithm,
};
use rustls_pki_types::CertificateDer;

use crate::process::{KillOnDrop, free_port, wait_for_port};

/// Pebble options a test may change; `Default` is Pebble's own defaults
/// with 50% nonce rejection.
#[derive(Debug, Clone, Default)]
pub struct PebbleOptions {
    /// `PEBBLE_WFE_NONCEREJECT` (percent); 50 when `None`, so every flow
    /// is exercised under heavy badNonce rejection.
    pub nonce_reject: Option<u8>,
    /// `PEBBLE_ALTERNATE_ROOTS`.
    pub alternate_roots: Option<u8>,
    /// `PEBBLE_AUTHZREUSE` (percent).
    pub authz_reuse: Option<u8>,
    /// `PEBBLE_CHAIN_LENGTH`: how many intermediates Pebble puts between
    /// the leaf and its root (Pebble's default: one).
    pub chain_length: Option<u8>,
    /// Require EAB with these (kid, base64url key) pairs.
    pub eab_keys: Vec<(String, String)>,
    /// `certificateValidityPeriod` in seconds.
    pub validity_secs: Option<u64>,
    /// Resolve through this DNS server instead of challtestsrv.
    pub dns_server: Option<SocketAddr>,
}

impl PebbleOptions {
    /// The defaults with `PEBBLE_WFE_NONCEREJECT=percent`.
    pub fn nonce_reject(percent: u8) -> Self {
        PebbleOptions {
            nonce_reject: Some(percent),
            ..PebbleOptions::default()
        }
    }
}

/// A running Pebble plus challtestsrv. Dropping stops both.
#[derive(Debug)]
pub struct Pebble {
    pebble: KillOnDrop,
    _challtestsrv: KillOnDrop,
    dir: tempfile::TempDir,
    /// Directory URL.
    pub directory_url: String,
    /// Pebble's HTTPS certificate (trust it).
    pub root: CertificateDer<'static>,
    /// The same certificate as a PEM file (for `--extra-root` and configs).
    pub root_pem: PathBuf,
    /// Where Pebble's validator connects for http-01.
    pub http_port: u16,
    /// Where it connects for tls-alpn-01.
    pub tls_port: u16,
    /// Pebble's management port (roots, intermediates).
    pub management_port: u16,
    /// challtestsrv's management API (`/set-txt`, `/clear-txt`).
    pub challtest_url: String,
}

/// Whether a TLS handshake with `127.0.0.1:port` succeeds against `root`.
fn tls_ready(port: u16, root: &CertificateDer<'static>) -> bool {
    let mut roots = rustls::RootCertStore::empty();
    if roots.add(root.clone()).is_err() {
        return false;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let Ok(builder) =
        rustls::ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions()
    else {
        return false;
    };
    let config = builder.with_root_certificates(roots).with_no_client_auth();
    let Ok(name) = rustls_pki_types::ServerName::try_from("127.0.0.1") else {
        return false;
    };
    let Ok(mut conn) = rustls::ClientConnection::new(Arc::new(config), name) else {
        return false;
    };
    let Ok(mut tcp) =
        std::net::TcpStream::connect_timeout(&loopback(port), std::time::Duration::from_secs(2))
    else {
        return false;
    };
    let _ = tcp.set_read_timeout(Some(std::time::Duration::from_secs(2)));
    while conn.is_handshaking() {
        if conn.complete_io(&mut tcp).is_err() {
            return false;
        }
    }
    true
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

impl Pebble {
    /// Starts both servers and waits until they listen.
    ///
    /// # Panics
    ///
    /// When `pebble` or `pebble-challtestsrv` is missing
    /// (`apt-get install -y pebble`) or does not listen within 20 seconds.
    pub fn start(opts: PebbleOptions) -> Pebble {
        // A port `free_port` handed out may be taken by another test before
        // Pebble binds it; then Pebble exits and the probe below sees
        // someone else's service. Start again on other ports.
        for _ in 0..5 {
            if let Some(pebble) = Self::try_start(&opts) {
                return pebble;
            }
        }
        panic!("pebble did not start on free ports in 5 attempts");
    }

    /// One start on fresh ports; `None` when the ACME port turned out to be
    /// someone else's.
    fn try_start(opts: &PebbleOptions) -> Option<Pebble> {
        let dir = tempfile::tempdir().expect("creating a temporary directory");
        // Pebble's HTTPS certificate, for localhost and 127.0.0.1.
        let key = rcgen::KeyPair::generate().expect("generating a key");
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .expect("certificate parameters");
        params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress([127, 0, 0, 1].into()));
        let cert = params.self_signed(&key).expect("self-signing");
        let root_pem = dir.path().join("cert.pem");
        std::fs::write(&root_pem, cert.pem()).expect("writing cert.pem");
        crate::process::write_private(&dir.path().join("key.pem"), &key.serialize_pem());

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
        .expect("writing pebble.json");

        let challtestsrv = KillOnDrop(
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
                .expect("pebble-challtestsrv is not installed (apt-get install -y pebble)"),
        );
        let limit = Duration::from_secs(20);
        wait_for_port(
            loopback(challtest_mgmt),
            limit,
            "pebble-challtestsrv",
            String::new,
        );

        let mut cmd = Command::new("pebble");
        cmd.arg("-config")
            .arg(&cfg_path)
            .arg("-dnsserver")
            .arg(
                opts.dns_server
                    .map_or_else(|| format!("127.0.0.1:{dns_port}"), |a| a.to_string()),
            )
            // No random 0-5 s validation delay.
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env(
                "PEBBLE_WFE_NONCEREJECT",
                opts.nonce_reject.unwrap_or(50).to_string(),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(n) = opts.alternate_roots {
            cmd.env("PEBBLE_ALTERNATE_ROOTS", n.to_string());
        }
        if let Some(n) = opts.authz_reuse {
            cmd.env("PEBBLE_AUTHZREUSE", n.to_string());
        }
        if let Some(n) = opts.chain_length {
            cmd.env("PEBBLE_CHAIN_LENGTH", n.to_string());
        }
        let pebble = KillOnDrop(
            cmd.spawn()
                .expect("pebble is not installed (apt-get install -y pebble)"),
        );
        let mut pebble = pebble;
        wait_for_port(loopback(listen), limit, "pebble", String::new);
        // Ready means a TLS handshake with Pebble's own certificate works,
        // not merely that something accepts TCP on the port.
        let start = std::time::Instant::now();
        while !tls_ready(listen, cert.der()) {
            if pebble.0.try_wait().ok().flatten().is_some() {
                return None;
            }
            assert!(
                start.elapsed() < limit,
                "pebble on port {listen} never completed a TLS handshake"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Some(Pebble {
            pebble,
            _challtestsrv: challtestsrv,
            dir,
            directory_url: format!("https://127.0.0.1:{listen}/dir"),
            root: cert.der().clone(),
            root_pem,
            http_port,
            tls_port,
            management_port: management,
            challtest_url: format!("http://127.0.0.1:{challtest_mgmt}"),
        })
    }

    /// The HTTPS port of the ACME API (the directory URL's port).
    pub fn acme_port(&self) -> u16 {
        // The URL is built in `start` as https://127.0.0.1:PORT/dir.
        self.directory_url
            .trim_start_matches("https://127.0.0.1:")
            .trim_end_matches("/dir")
            .parse()
            .expect("directory URL built by start")
    }

    /// Where tls-alpn-01 validations connect.
    pub fn tls_port(&self) -> u16 {
        self.tls_port
    }

    /// Pebble's management port (`/roots/0`, `/intermediates/0`).
    pub fn management_port(&self) -> u16 {
        self.management_port
    }

    /// Pebble's JSON configuration file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("pebble.json")
    }

    /// The directory holding `cert.pem`, `key.pem` and `pebble.json`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The Pebble process id (for CPU time from `/proc/PID/stat`).
    pub fn pid(&self) -> u32 {
        self.pebble.0.id()
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
    ///
    /// # Panics
    ///
    /// When the directory cannot be fetched.
    pub async fn client(&self) -> AcmeClient {
        AcmeClient::new(self.config())
            .await
            .expect("fetching Pebble's directory")
    }

    /// A new account with a fresh `algorithm` key and the contact
    /// `postmaster@example.com`, the start of most tests.
    ///
    /// # Panics
    ///
    /// When key generation or the registration fails.
    pub async fn new_account(&self, algorithm: SigningAlgorithm) -> Account {
        self.client()
            .await
            .new_account(
                AccountKey::generate(algorithm).expect("generating an account key"),
                &NewAccountOptions::with_email("postmaster@example.com"),
            )
            .await
            .expect("registering an account with Pebble")
    }

    /// GETs `path` from Pebble's management interface (HTTPS with the same
    /// certificate), e.g. `/roots/0` for the issuing root in PEM.
    ///
    /// # Panics
    ///
    /// When the request fails.
    pub async fn management_get(&self, path: &str) -> String {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(self.root.clone())
            .expect("Pebble's certificate as a root");
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .build()
            .expect("building an HTTP client");
        http.get(format!("https://127.0.0.1:{}{path}", self.management_port))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .unwrap_or_else(|e| panic!("GET {path} from Pebble's management API: {e}"))
            .text()
            .await
            .expect("reading Pebble's management answer")
    }

    /// The common name of Pebble's root number `index` (0 the default, 1..
    /// the alternates of `PebbleOptions::alternate_roots`), read from the
    /// management API: what a preferred-chain setting names.
    ///
    /// # Panics
    ///
    /// When the root cannot be fetched or has no common name.
    pub async fn root_common_name(&self, index: usize) -> String {
        use rustls_pki_types::pem::PemObject;
        let pem = self.management_get(&format!("/roots/{index}")).await;
        let der = CertificateDer::pem_slice_iter(pem.as_bytes())
            .next()
            .expect("a certificate from /roots")
            .expect("a parsable PEM root");
        let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("a parsable root");
        cert.subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .expect("a root with a common name")
            .to_owned()
    }
}

/// DNS names (SANs) in a PEM chain's leaf, sorted.
///
/// # Panics
///
/// When the PEM holds no parsable certificate with a SAN extension.
pub fn leaf_names(chain_pem: &str) -> Vec<String> {
    use rustls_pki_types::pem::PemObject;
    let leaf = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .next()
        .expect("a certificate in the chain")
        .expect("a parsable PEM certificate");
    let (_, cert) = x509_parser::parse_x509_certificate(&leaf).expect("a parsable certificate");
    let mut names: Vec<String> = cert
        .subject_alternative_name()
        .expect("a well-formed SAN extension")
        .expect("a SAN extension")
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

/// A reqwest client for plain-HTTP management APIs such as challtestsrv's
/// (reqwest needs a TLS configuration even then; this one trusts nothing).
pub fn plain_http_client() -> reqwest::Client {
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("default protocol versions")
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .build()
        .expect("building an HTTP client")
}
