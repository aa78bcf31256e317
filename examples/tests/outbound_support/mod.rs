//! Real peers for the outbound tests, on loopback:
//!
//! - [`SignedRoot`]: NSD serving a DNSSEC-signed root of our own and a
//!   signed `test.` zone below it that holds every record a test needs (MX, A, TLSA, `_mta-sts` TXT), signed
//!   at test time with `ldns-signzone`; its key is the trust anchor the
//!   server validates from. One zone and no delegations: the records differ
//!   per test (addresses of the local Postfix instances, TLSA digests of
//!   certificates made at test time), which the fixed worlds in
//!   mailtls-policy/tests do not allow.
//! - [`PostfixMx`]: a Postfix instance of its own (mailtls-testpeers'
//!   [`Postfix`]: Debian `postfix` run by `master -d` from a temporary
//!   configuration directory; needs root) that accepts mail for given
//!   domains over STARTTLS and delivers it into Maildirs through
//!   virtual(8), so a test reads what really arrived.
//! - [`SlowPeer`]: a small SMTP server in tokio that takes its time to
//!   answer the end of data, or refuses recipients (shutdown, DSN tests).
//! - [`submit`]: sends a message through the server's submission port
//!   (STARTTLS, AUTH PLAIN, optionally `MAIL FROM ... REQUIRETLS`).
//!
//! Processes are killed on drop (also when a test panics) and their
//! directories removed after them. Needs the Debian packages `postfix`,
//! `nsd` and `ldnsutils`.
#![allow(dead_code, unreachable_pub)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use mailtls_core::{CaSpec, CertificateAuthority, DnsName, ServerCertSpec};
use mailtls_testpeers::postfix::{Delivery, Postfix, PostfixBuilder};
use mailtls_testpeers::process::{find_tool, open_tempdir};

use crate::common::*;

/// Where the DNS tools live (`ldns-*` in /usr/bin, `nsd` in /usr/sbin).
fn which(tool: &str) -> PathBuf {
    find_tool(
        tool,
        &["/usr/sbin", "/usr/bin", "/sbin", "/bin"],
        "postfix nsd ldnsutils",
    )
}

fn run(dir: &Path, cmd: &str, args: &[&str]) -> String {
    let out = Command::new(which(cmd))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A port free for TCP on every address given (and for UDP on the first,
/// for a DNS server).
pub fn free_port(ips: &[Ipv4Addr]) -> u16 {
    loop {
        let udp = UdpSocket::bind((ips[0], 0)).unwrap();
        let port = udp.local_addr().unwrap().port();
        if ips.iter().all(|ip| TcpListener::bind((*ip, port)).is_ok()) {
            return port;
        }
    }
}

/// Polls `check` until it gives a value or `limit` passes.
pub async fn eventually<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// NSD serving a signed root and a signed `test.` zone with the given records.
pub struct SignedRoot {
    /// Where NSD answers (UDP and TCP).
    pub addr: SocketAddr,
    /// The root key as a zone-format DNSKEY file (the trust anchor).
    pub anchor: PathBuf,
    child: Child,
    dir: tempfile::TempDir,
}

impl Drop for SignedRoot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SignedRoot {
    /// Signs `records` (zone-file lines with absolute names under `test.`)
    /// into a `test.` zone delegated from a signed root, and serves both.
    /// (A delegation rather than one root zone: hickory judges NSEC denials
    /// for names inside the root zone bogus.)
    pub fn start(records: &str) -> SignedRoot {
        let dir = open_tempdir();
        let d = dir.path();
        let keygen = |zone: &str| {
            let key = run(d, "ldns-keygen", &["-a", "ECDSAP256SHA256", "-k", zone])
                .trim()
                .to_owned();
            std::fs::set_permissions(
                d.join(format!("{key}.private")),
                std::fs::Permissions::from_mode(0o600),
            )
            .unwrap();
            key
        };
        let soa = "@ SOA ns.test. hostmaster.test. 1 3600 600 86400 300\n@ NS ns.test.\n";
        let test_key = keygen("test.");
        std::fs::write(
            d.join("test.zone"),
            format!("$ORIGIN test.\n$TTL 300\n{soa}ns.test. A 127.0.0.1\n{records}"),
        )
        .unwrap();
        run(d, "ldns-signzone", &["test.zone", &test_key]);
        let ds = run(d, "ldns-key2ds", &["-n", "-2", &format!("{test_key}.key")]);
        let root_key = keygen(".");
        std::fs::write(
            d.join("root.zone"),
            format!("$ORIGIN .\n$TTL 300\n{soa}test. NS ns.test.\nns.test. A 127.0.0.1\n{ds}"),
        )
        .unwrap();
        run(d, "ldns-signzone", &["root.zone", &root_key]);
        let anchor = d.join("anchor.key");
        std::fs::copy(d.join(format!("{root_key}.key")), &anchor).unwrap();
        let port = free_port(&[Ipv4Addr::LOCALHOST]);
        // Rate limiting off: Debian's NSD answers 200 queries a second per
        // source by default, which a server delivering many messages (and
        // the outbound bench) exceeds; dropped answers look like timeouts.
        let conf = format!(
            "server:\n  ip-address: 127.0.0.1@{port}\n  port: {port}\n  zonesdir: \"{dir}\"\n  \
             username: \"\"\n  chroot: \"\"\n  pidfile: \"{dir}/nsd.pid\"\n  \
             xfrdfile: \"{dir}/xfrd.state\"\n  zonelistfile: \"{dir}/zone.list\"\n  \
             logfile: \"{dir}/nsd.log\"\n  server-count: 1\n  verbosity: 1\n  database: \"\"\n  \
             rrl-ratelimit: 0\n\
             remote-control:\n  control-enable: no\n\
             zone:\n  name: .\n  zonefile: root.zone.signed\n\
             zone:\n  name: test.\n  zonefile: test.zone.signed\n",
            dir = d.display()
        );
        std::fs::write(d.join("nsd.conf"), conf).unwrap();
        let child = Command::new(which("nsd"))
            .args(["-d", "-c"])
            .arg(d.join("nsd.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let world = SignedRoot {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            anchor,
            child,
            dir,
        };
        let start = Instant::now();
        while std::net::TcpStream::connect_timeout(&world.addr, Duration::from_millis(200)).is_err()
        {
            if start.elapsed() > Duration::from_secs(10) {
                let log =
                    std::fs::read_to_string(world.dir.path().join("nsd.log")).unwrap_or_default();
                panic!("nsd did not start: {log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        world
    }
}

/// A Postfix that receives mail for `domains` over smtpd and keeps it in
/// Maildirs: [`mailtls_testpeers::postfix::Postfix`] configured as an MX
/// (derefs to it for `messages`, `log`, `wait_for`). Unlike the testpeers
/// default, it relays for nobody, not even loopback clients: mail for any
/// other domain is refused at RCPT (`554 5.7.1 Relay access denied`), which
/// the relay and bounce tests rely on.
pub struct PostfixMx {
    /// Where smtpd listens.
    pub addr: SocketAddr,
    postfix: Postfix,
    /// Files Postfix reads while it runs (the SNI table).
    _files: Option<tempfile::TempDir>,
}

impl std::ops::Deref for PostfixMx {
    type Target = Postfix;

    fn deref(&self) -> &Postfix {
        &self.postfix
    }
}

impl PostfixMx {
    /// Starts smtpd on `addr` with STARTTLS offered (`may`), the given
    /// certificate chain and key, answering as `hostname`.
    pub fn start(
        addr: SocketAddr,
        hostname: &str,
        chain_pem: &str,
        key_pem: &str,
        domains: &[&str],
    ) -> PostfixMx {
        Self::start_with(
            Self::builder(addr, hostname, domains).tls(chain_pem, key_pem),
            addr,
        )
    }

    /// Starts smtpd on `addr` without STARTTLS.
    pub fn start_without_tls(addr: SocketAddr, hostname: &str, domains: &[&str]) -> PostfixMx {
        Self::start_with(Self::builder(addr, hostname, domains), addr)
    }

    fn builder(addr: SocketAddr, hostname: &str, domains: &[&str]) -> PostfixBuilder {
        domains.iter().fold(
            Postfix::builder(hostname)
                .listen(addr)
                .main_cf("smtpd_relay_restrictions = reject_unauth_destination"),
            |b, d| b.domain(d, Delivery::Maildir),
        )
    }

    /// Like [`start`](Self::start), and presents another certificate to a
    /// client that sends `sni_name` as SNI (`tls_server_sni_maps`): a peer
    /// that chooses its certificate by SNI, as RFC 7672 §8.1 has in mind.
    /// `sni_key_pem` and `sni_chain_pem` are that certificate's key and
    /// chain (leaf first).
    pub fn start_with_sni(
        addr: SocketAddr,
        hostname: &str,
        (chain_pem, key_pem): (&str, &str),
        (sni_name, sni_chain_pem, sni_key_pem): (&str, &str, &str),
        domains: &[&str],
    ) -> PostfixMx {
        let files = open_tempdir();
        let d = files.path();
        // Postfix wants the key first, then the chain; `postmap -F` reads
        // the file into the table, so smtpd needs only the table.
        let chain_file = d.join("sni-chain.pem");
        std::fs::write(&chain_file, format!("{sni_key_pem}{sni_chain_pem}")).unwrap();
        std::fs::write(
            d.join("sni"),
            format!("{sni_name} {}\n", chain_file.display()),
        )
        .unwrap();
        // postmap only needs a main.cf to exist in its configuration dir.
        std::fs::write(d.join("main.cf"), "").unwrap();
        let table = format!("hash:{}", d.join("sni").display());
        run(
            d,
            "postmap",
            &["-c", &d.display().to_string(), "-F", &table],
        );
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(d.join("sni.db"), std::fs::Permissions::from_mode(0o644)).unwrap();
        let builder = Self::builder(addr, hostname, domains)
            .tls(chain_pem, key_pem)
            .main_cf(&format!("tls_server_sni_maps = {table}"));
        let mut mx = Self::start_with(builder, addr);
        mx._files = Some(files);
        mx
    }

    fn start_with(builder: PostfixBuilder, addr: SocketAddr) -> PostfixMx {
        PostfixMx {
            addr,
            postfix: builder.start(),
            _files: None,
        }
    }
}

/// A test CA and a certificate from it for `host`.
pub fn issue(ca: &CertificateAuthority, host: &str) -> mailtls_core::MadeCertificate {
    ca.issue(&ServerCertSpec::new(DnsName::parse(host).unwrap()))
        .unwrap()
}

/// A new test CA.
pub fn test_ca() -> CertificateAuthority {
    CertificateAuthority::new_test_ca(&CaSpec::default()).unwrap()
}

/// The hex SHA-256 of a certificate (TLSA 3 0 1 data).
pub fn cert_sha256_hex(cert: &mailtls_core::MadeCertificate) -> String {
    mailtls_core::CertInfo::from_der(&cert.cert_der)
        .unwrap()
        .fingerprint_hex()
        .replace(':', "")
        .to_ascii_lowercase()
}

/// Sends a message through the submission port as the test user:
/// STARTTLS, AUTH PLAIN, MAIL FROM (with REQUIRETLS when asked), RCPT,
/// DATA. Returns the id the server gave.
pub async fn submit(
    ts: &TestServer,
    from: &str,
    rcpt: &str,
    requiretls: bool,
    lines: &[&str],
) -> String {
    use base64::Engine;
    let mut c = connect(ts.addr(mailtls_examples::MailListener::Submission)).await;
    assert_eq!(c.reply().await.0, 220);
    assert_eq!(c.cmd("EHLO client.example").await.0, 250);
    assert_eq!(c.cmd("STARTTLS").await.0, 220);
    let mut c = upgrade(c, client_config(&ts.ca_file()), "mail.example.test").await;
    assert_eq!(c.cmd("EHLO client.example").await.0, 250);
    let plain = base64::engine::general_purpose::STANDARD.encode(b"\0test\0test");
    let (code, text) = c.cmd(&format!("AUTH PLAIN {plain}")).await;
    assert_eq!(code, 235, "{text}");
    let param = if requiretls { " REQUIRETLS" } else { "" };
    let (code, text) = c.cmd(&format!("MAIL FROM:<{from}>{param}")).await;
    assert_eq!(code, 250, "{text}");
    let (code, text) = c.cmd(&format!("RCPT TO:<{rcpt}>")).await;
    assert_eq!(code, 250, "{text}");
    assert_eq!(c.cmd("DATA").await.0, 354);
    for l in lines {
        c.send(l).await;
    }
    let (code, text) = c.cmd(".").await;
    assert_eq!(code, 250, "{text}");
    assert_eq!(c.cmd("QUIT").await.0, 221);
    text.rsplit(' ').next().unwrap().to_owned()
}

/// The recipients' states in the server's queue, as JSON values.
pub fn queue_states(data_dir: &Path) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(data_dir.join("queue")) else {
        return out;
    };
    for e in entries {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "json")
            && !p.file_name().unwrap().to_string_lossy().starts_with('.')
        {
            out.push(serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap());
        }
    }
    out
}

/// The server's local spool messages.
pub fn spooled(data_dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(data_dir.join("spool")) else {
        return Vec::new();
    };
    entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

/// Writes PEM certificates into one CA file.
pub fn write_ca_file(dir: &Path, name: &str, pems: &[&str]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, pems.concat()).unwrap();
    path
}

/// A small SMTP server (tokio, no TLS) that answers the end of data only
/// after `delay`, and RCPT with `rcpt_reply`.
pub struct SlowPeer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Every message whose data arrived completely.
    received: Arc<Mutex<Vec<String>>>,
    /// How many final `250` replies to DATA were written.
    acknowledged: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SlowPeer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SlowPeer {
    /// Accepts every recipient.
    pub async fn start(delay: Duration) -> SlowPeer {
        Self::start_with(delay, "250 2.1.5 ok").await
    }

    /// Answers every RCPT with `rcpt_reply` (`550 5.1.1 no such user`).
    pub async fn start_with(delay: Duration, rcpt_reply: &'static str) -> SlowPeer {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let acknowledged = Arc::new(AtomicUsize::new(0));
        let (r, a) = (Arc::clone(&received), Arc::clone(&acknowledged));
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (r, a) = (Arc::clone(&r), Arc::clone(&a));
                tokio::spawn(async move {
                    // A broken connection just ends the session.
                    let _ = session(tcp, delay, rcpt_reply, r, a).await;
                });
            }
        });
        SlowPeer {
            addr,
            received,
            acknowledged,
            task,
        }
    }

    /// Every message whose data arrived.
    pub fn received(&self) -> Vec<String> {
        self.received.lock().unwrap().clone()
    }

    /// How many `250` replies to the end of data were written.
    pub fn acknowledged(&self) -> usize {
        self.acknowledged.load(Ordering::SeqCst)
    }
}

async fn session(
    tcp: tokio::net::TcpStream,
    delay: Duration,
    rcpt_reply: &str,
    received: Arc<Mutex<Vec<String>>>,
    acknowledged: Arc<AtomicUsize>,
) -> std::io::Result<()> {
    let (rd, mut wr) = tcp.into_split();
    let mut rd = BufReader::new(rd);
    wr.write_all(b"220 slow.test ESMTP\r\n").await?;
    let mut line = String::new();
    loop {
        line.clear();
        if rd.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let verb = line
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        match verb.as_str() {
            "EHLO" => wr.write_all(b"250-slow.test\r\n250 8BITMIME\r\n").await?,
            "MAIL" | "RSET" | "NOOP" => wr.write_all(b"250 2.0.0 ok\r\n").await?,
            "RCPT" => wr.write_all(format!("{rcpt_reply}\r\n").as_bytes()).await?,
            "DATA" => {
                wr.write_all(b"354 go ahead\r\n").await?;
                let mut message = String::new();
                loop {
                    line.clear();
                    if rd.read_line(&mut line).await? == 0 {
                        return Ok(());
                    }
                    if line == ".\r\n" {
                        break;
                    }
                    message.push_str(line.strip_prefix('.').unwrap_or(&line));
                }
                received.lock().unwrap().push(message);
                tokio::time::sleep(delay).await;
                wr.write_all(b"250 2.0.0 queued as SLOW1\r\n").await?;
                acknowledged.fetch_add(1, Ordering::SeqCst);
            }
            "QUIT" => {
                wr.write_all(b"221 2.0.0 bye\r\n").await?;
                return Ok(());
            }
            _ => wr.write_all(b"502 5.5.2 not here\r\n").await?,
        }
    }
}
