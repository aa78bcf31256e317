//! Shared helpers for the examples' integration tests: an in-process server
//! on free loopback ports in a temporary directory, line-based protocol
//! clients, rustls client configurations, and an `openssl s_client` runner.
// Each test binary uses a different subset of these helpers, and helpers
// may unwrap: a failed unwrap is a failed test.
#![allow(dead_code, unreachable_pub)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use mailtls_core::CertInfo;
use mailtls_examples::{Config, RunningServer, Server};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Every network wait in the tests is bounded by this.
pub(crate) const IO_TIMEOUT: Duration = Duration::from_secs(15);

/// A running in-process server and the directory it owns. The server stops
/// and the directory is removed when this is dropped, also on panic.
pub(crate) struct TestServer {
    pub(crate) server: RunningServer,
    pub(crate) dir: TempDir,
}

impl TestServer {
    pub(crate) fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca").join("ca.crt")
    }

    pub(crate) fn addr(&self, which: mailtls_examples::MailListener) -> SocketAddr {
        self.server
            .addrs()
            .mail(which)
            .expect("listener is enabled")
    }

    pub(crate) fn spool_files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.path().join("spool"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "eml"))
            .collect();
        files.sort();
        files
    }
}

/// The embedded defaults on free ports in `dir`.
pub(crate) fn test_config(dir: &Path) -> Config {
    let mut config = Config::embedded().unwrap();
    config.server.data_dir = dir.to_owned();
    config.use_ephemeral_ports();
    config
}

/// Starts a server on the embedded defaults, free ports, a fresh data
/// directory, after `customize` has changed the configuration.
pub(crate) async fn start(customize: impl FnOnce(&mut Config, &Path)) -> TestServer {
    let dir = private_tempdir();
    let mut config = test_config(dir.path());
    customize(&mut config, dir.path());
    let server = Server::start(config).await.unwrap();
    TestServer { server, dir }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn roots(ca_file: &Path) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    for c in mailtls_core::load::certificates_from_file(ca_file).unwrap() {
        roots.add(c).unwrap();
    }
    roots
}

/// A client that trusts only `ca_file`.
pub(crate) fn client_config(ca_file: &Path) -> Arc<rustls::ClientConfig> {
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots(ca_file))
            .with_no_client_auth(),
    )
}

/// A client that trusts only `ca_file` and presents a client certificate.
pub(crate) fn client_config_with_cert(
    ca_file: &Path,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Arc<rustls::ClientConfig> {
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots(ca_file))
            .with_client_auth_cert(chain, key)
            .unwrap(),
    )
}

/// A TLS client handshake over `tcp` for `name`.
pub(crate) async fn tls_connect(
    config: Arc<rustls::ClientConfig>,
    name: &str,
    tcp: TcpStream,
) -> std::io::Result<TlsStream<TcpStream>> {
    let name = ServerName::try_from(name.to_owned()).unwrap();
    tokio::time::timeout(IO_TIMEOUT, TlsConnector::from(config).connect(name, tcp))
        .await
        .expect("TLS handshake timed out")
}

/// The leaf certificate the server presented.
pub(crate) fn served_leaf(tls: &TlsStream<TcpStream>) -> CertInfo {
    let certs = tls.get_ref().1.peer_certificates().unwrap();
    CertInfo::from_der(&certs[0]).unwrap()
}

/// A line-based client for SMTP, IMAP and POP3.
pub(crate) struct LineClient<S> {
    io: BufReader<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> LineClient<S> {
    pub(crate) fn new(s: S) -> Self {
        LineClient {
            io: BufReader::new(s),
        }
    }

    pub(crate) async fn send(&mut self, line: &str) {
        let w = self.io.get_mut();
        w.write_all(format!("{line}\r\n").as_bytes()).await.unwrap();
        w.flush().await.unwrap();
    }

    /// One line without CRLF; panics on EOF or timeout.
    pub(crate) async fn line(&mut self) -> String {
        let mut s = String::new();
        let n = tokio::time::timeout(IO_TIMEOUT, self.io.read_line(&mut s))
            .await
            .expect("read timed out")
            .unwrap();
        assert!(n > 0, "server closed the connection");
        s.trim_end_matches(['\r', '\n']).to_owned()
    }

    /// Whether the server closed the connection (EOF) within the timeout.
    pub(crate) async fn closed(&mut self) -> bool {
        let mut s = String::new();
        matches!(
            tokio::time::timeout(IO_TIMEOUT, self.io.read_line(&mut s)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }

    /// A whole SMTP reply: the code and every line's text.
    pub(crate) async fn reply(&mut self) -> (u16, Vec<String>) {
        let mut lines = Vec::new();
        loop {
            let l = self.line().await;
            let code: u16 = l[..3].parse().unwrap();
            let last = l.as_bytes().get(3) != Some(&b'-');
            lines.push(l[4.min(l.len())..].to_owned());
            if last {
                return (code, lines);
            }
        }
    }

    /// Sends an SMTP command and returns the reply's code and joined text.
    pub(crate) async fn cmd(&mut self, line: &str) -> (u16, String) {
        self.send(line).await;
        let (code, lines) = self.reply().await;
        (code, lines.join("\n"))
    }

    /// Reads until a line starting with `tag ` (IMAP) and returns all lines.
    pub(crate) async fn tagged(&mut self, tag: &str) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let l = self.line().await;
            let done = l.starts_with(&format!("{tag} "));
            out.push(l);
            if done {
                return out;
            }
        }
    }

    /// Reads a POP3 multi-line body up to the lone ".".
    pub(crate) async fn multiline(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let l = self.line().await;
            if l == "." {
                return out;
            }
            out.push(l);
        }
    }

    /// The transport, for STARTTLS; nothing may be left unread.
    pub(crate) fn into_inner(self) -> S {
        assert!(self.io.buffer().is_empty(), "unread data before TLS");
        self.io.into_inner()
    }
}

pub(crate) async fn connect(addr: SocketAddr) -> LineClient<TcpStream> {
    let tcp = tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(addr))
        .await
        .unwrap()
        .unwrap();
    LineClient::new(tcp)
}

/// Upgrades a line client to TLS for `name` with `config`.
pub(crate) async fn upgrade(
    client: LineClient<TcpStream>,
    config: Arc<rustls::ClientConfig>,
    name: &str,
) -> LineClient<TlsStream<TcpStream>> {
    let tls = tls_connect(config, name, client.into_inner())
        .await
        .unwrap();
    LineClient::new(tls)
}

/// Sends one message through the SMTP (MX) listener with STARTTLS; returns
/// the queue id.
pub(crate) async fn send_mail(ts: &TestServer, rcpt: &str, body: &[&str]) -> String {
    let mut c = connect(ts.addr(mailtls_examples::MailListener::Smtp)).await;
    assert_eq!(c.reply().await.0, 220);
    assert_eq!(c.cmd("EHLO client.example").await.0, 250);
    assert_eq!(c.cmd("STARTTLS").await.0, 220);
    let mut c = upgrade(c, client_config(&ts.ca_file()), "mail.example.test").await;
    assert_eq!(c.cmd("EHLO client.example").await.0, 250);
    assert_eq!(c.cmd("MAIL FROM:<sender@client.example>").await.0, 250);
    assert_eq!(c.cmd(&format!("RCPT TO:<{rcpt}>")).await.0, 250);
    assert_eq!(c.cmd("DATA").await.0, 354);
    for l in body {
        c.send(l).await;
    }
    let (code, text) = c.cmd(".").await;
    assert_eq!(code, 250, "{text}");
    let id = text.rsplit(' ').next().unwrap().to_owned();
    assert_eq!(c.cmd("QUIT").await.0, 221);
    id
}

/// What an `openssl s_client` run printed.
pub(crate) struct SClient {
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    pub(crate) success: bool,
}

impl SClient {
    /// The server's leaf certificate as printed by s_client.
    pub(crate) fn leaf(&self) -> CertInfo {
        let begin = self
            .stdout
            .find("-----BEGIN CERTIFICATE-----")
            .unwrap_or_else(|| {
                panic!(
                    "no certificate in output:\n{}\n{}",
                    self.stdout, self.stderr
                )
            });
        let end = self.stdout[begin..]
            .find("-----END CERTIFICATE-----")
            .unwrap()
            + begin
            + "-----END CERTIFICATE-----".len();
        let certs = mailtls_core::load::certificates_from_bytes(
            &self.stdout.as_bytes()[begin..end],
            "s_client output",
        )
        .unwrap();
        CertInfo::from_der(&certs[0]).unwrap()
    }
}

/// Runs `openssl s_client -connect ADDR ARGS...` with stdin closed (so it
/// ends right after the handshake), killed if it takes too long or if the
/// test fails first.
pub(crate) async fn s_client(addr: SocketAddr, args: &[&str]) -> SClient {
    let child = tokio::process::Command::new("openssl")
        .arg("s_client")
        .arg("-connect")
        .arg(addr.to_string())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("openssl is installed");
    let out = tokio::time::timeout(IO_TIMEOUT, child.wait_with_output())
        .await
        .expect("openssl s_client timed out")
        .unwrap();
    SClient {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        success: out.status.success(),
    }
}

/// A temporary directory only its owner can read: where private keys may go
/// (the maker refuses directories others can read).
pub fn private_tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    tempfile::Builder::new()
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
        .unwrap()
}

/// Makes the server's certificate directory under `data_dir` (mode 0700)
/// before the server starts, with one malformed certificate file in it,
/// `broken.pem`; returns the directory.
pub fn certs_dir_with_broken_pem(data_dir: &Path) -> PathBuf {
    let certs = data_dir.join("certs");
    std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700)
        .create(&certs)
        .unwrap();
    std::fs::write(
        certs.join("broken.pem"),
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    certs
}

/// GET /status.json over plain HTTP from loopback (the server must answer
/// plain HTTP: `web.mode` with HTTP); asserts a 200 and parses the body.
pub async fn status_json(ts: &TestServer) -> serde_json::Value {
    let addr = ts.server.addrs().http.unwrap();
    let s = TcpStream::connect(addr).await.unwrap();
    serde_json::from_str(&http_get(s, "mail.example.test", "/status.json").await).unwrap()
}

/// GET `path` over `s` (plain or TLS); asserts a 200 and returns the body.
pub async fn http_get<S>(mut s: S, host: &str, path: &str) -> String
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::AsyncReadExt;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(IO_TIMEOUT, s.read_to_end(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_owned()
}
