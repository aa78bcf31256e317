//! A Postfix instance of its own on loopback (Debian `postfix`, run as
//! `master -d` from a temporary configuration directory; needs root).
//!
//! Two roles, freely combined in one instance:
//!
//! - receiving: smtpd on a port, STARTTLS offered when a certificate is
//!   given, mail for each configured domain delivered by virtual(8) into a
//!   Maildir or an mbox file that [`Postfix::messages`] reads back;
//! - sending: every other recipient goes to `relayhost = [127.0.0.1]:PORT`
//!   with `smtp_tls_security_level` and a CA file of the test's choosing;
//!   mail is injected with Postfix's own `sendmail -C CONFIG_DIR`
//!   ([`Postfix::sendmail`]) or through its smtpd.
//!
//! The master process is killed on drop and the directory removed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::{KillOnDrop, open_tempdir, wait_for_port, write_private};

const MASTER: &str = "/usr/lib/postfix/sbin/master";
const POSTFIX: &str = "/usr/sbin/postfix";
const SENDMAIL: &str = "/usr/sbin/sendmail";

/// How mail for one receiving domain is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// A Maildir (`new/`, `cur/`): one file per message.
    Maildir,
    /// One mbox file, messages separated by `From ` lines.
    Mailbox,
}

/// `smtp_tls_security_level` for the sending side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsLevel {
    /// STARTTLS when offered, no certificate check.
    May,
    /// STARTTLS required, no certificate check.
    Encrypt,
    /// STARTTLS required, chain checked against the CA file and the name
    /// against [`PostfixBuilder::verify_name`] (or the next-hop host name).
    Verify,
}

impl TlsLevel {
    fn as_postfix(self) -> &'static str {
        match self {
            TlsLevel::May => "may",
            TlsLevel::Encrypt => "encrypt",
            TlsLevel::Verify => "verify",
        }
    }
}

#[derive(Debug, Clone)]
struct Relay {
    addr: SocketAddr,
    level: TlsLevel,
    ca_file: Option<PathBuf>,
    verify_name: Option<String>,
}

/// Builds a [`Postfix`]; see [`Postfix::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct PostfixBuilder {
    hostname: String,
    listen: Option<SocketAddr>,
    credentials: Option<(String, String)>,
    domains: Vec<(String, Delivery)>,
    relay: Option<Relay>,
    extra_main_cf: Vec<String>,
    graceful_stop: bool,
}

impl PostfixBuilder {
    /// Runs smtpd on `addr` (a loopback address and a free port).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = Some(addr);
        self
    }

    /// Offers STARTTLS (`smtpd_tls_security_level = may`) with this PEM
    /// chain (leaf first) and PEM private key (written with mode 0600).
    pub fn tls(mut self, chain_pem: &str, key_pem: &str) -> Self {
        self.credentials = Some((chain_pem.to_owned(), key_pem.to_owned()));
        self
    }

    /// Accepts and stores mail for `domain` (any local part).
    pub fn domain(mut self, domain: &str, delivery: Delivery) -> Self {
        self.domains.push((domain.to_ascii_lowercase(), delivery));
        self
    }

    /// Sends mail for every other domain to `[addr]` at `level`.
    pub fn relay_to(mut self, addr: SocketAddr, level: TlsLevel) -> Self {
        self.relay = Some(Relay {
            addr,
            level,
            ca_file: None,
            verify_name: None,
        });
        self
    }

    /// The CA file (`smtp_tls_CAfile`) the relay's certificate must chain
    /// to; only with [`relay_to`](Self::relay_to).
    pub fn relay_ca_file(mut self, path: &Path) -> Self {
        if let Some(r) = &mut self.relay {
            r.ca_file = Some(path.to_owned());
        }
        self
    }

    /// The name the relay's certificate must hold at [`TlsLevel::Verify`]
    /// (`smtp_tls_verify_cert_match`): a relay given by IP address has no
    /// host name to match against.
    pub fn verify_name(mut self, name: &str) -> Self {
        if let Some(r) = &mut self.relay {
            r.verify_name = Some(name.to_owned());
        }
        self
    }

    /// Appends a raw `main.cf` line (`name = value`); later lines win.
    pub fn main_cf(mut self, line: &str) -> Self {
        self.extra_main_cf.push(line.to_owned());
        self
    }

    /// Runs master as the leader of its own process group and, on drop,
    /// sends it SIGTERM, so it stops its children (an smtpd busy with a
    /// client too), then waits up to 5 seconds before SIGKILL to the whole
    /// group. Without this, SIGKILL to master alone leaves busy children
    /// running until their sessions end, which a benchmark reading CPU
    /// time or starting the next server would feel.
    pub fn stop_gracefully(mut self) -> Self {
        self.graceful_stop = true;
        self
    }

    /// Writes the configuration, checks it with `postfix check` and starts
    /// `master -d`; returns once smtpd (if any) accepts connections.
    ///
    /// # Panics
    ///
    /// When Postfix is not installed (`apt-get install -y postfix`), the
    /// process is not root, the configuration is refused, or smtpd does not
    /// listen within 15 seconds (the message holds Postfix's log).
    pub fn start(self) -> Postfix {
        assert!(
            Path::new(MASTER).exists(),
            "Postfix is not installed (apt-get install -y postfix)"
        );
        let dir = open_tempdir();
        let root = dir.path();
        for sub in ["queue", "data", "mail"] {
            std::fs::create_dir(root.join(sub)).expect("creating Postfix directories");
        }
        chown_postfix(&root.join("data"));
        chown_postfix(&root.join("mail"));
        std::fs::write(root.join("main.cf"), self.main_cf_text(root)).expect("writing main.cf");
        std::fs::write(root.join("master.cf"), self.master_cf_text()).expect("writing master.cf");
        if !self.domains.is_empty() {
            // texthash: read as is, no postmap. `@domain` is virtual(5)'s
            // catch-all; a trailing slash asks virtual(8) for a Maildir.
            let map: String = self
                .domains
                .iter()
                .map(|(d, how)| match how {
                    Delivery::Maildir => format!("@{d} {d}/\n"),
                    Delivery::Mailbox => format!("@{d} {d}.mbox\n"),
                })
                .collect();
            std::fs::write(root.join("mailboxes"), map).expect("writing the mailbox map");
        }
        let check = Command::new(POSTFIX)
            .arg("-c")
            .arg(root)
            .arg("check")
            .output()
            .expect("running postfix check");
        assert!(
            check.status.success(),
            "postfix check: {}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
        let mut master = Command::new(MASTER);
        master
            .arg("-c")
            .arg(root)
            .arg("-d")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if self.graceful_stop {
            // On SIGTERM master signals the process group named by its own
            // pid; under `-d` it makes no group of its own, so without
            // this its children (a busy smtpd) outlive it.
            use std::os::unix::process::CommandExt as _;
            master.process_group(0);
        }
        let child = master.spawn().expect("starting Postfix master");
        let postfix = Postfix {
            listen: self.listen,
            domains: self.domains,
            graceful_stop: self.graceful_stop,
            child: KillOnDrop(child),
            dir,
        };
        match postfix.listen {
            Some(addr) => wait_for_port(addr, Duration::from_secs(15), "Postfix smtpd", || {
                postfix.log()
            }),
            None => postfix.wait_for_log_sync("daemon started", Duration::from_secs(15)),
        }
        postfix
    }

    fn main_cf_text(&self, root: &Path) -> String {
        let d = root.display();
        let mut cf = format!(
            "compatibility_level = 3.6\n\
             queue_directory = {d}/queue\n\
             data_directory = {d}/data\n\
             meta_directory = /etc/postfix\n\
             shlib_directory = /usr/lib/postfix\n\
             command_directory = /usr/sbin\n\
             daemon_directory = /usr/lib/postfix/sbin\n\
             mail_owner = postfix\n\
             setgid_group = postdrop\n\
             inet_interfaces = loopback-only\n\
             inet_protocols = ipv4\n\
             myhostname = {host}\n\
             mydomain = {host}\n\
             myorigin = {host}\n\
             mydestination =\n\
             local_recipient_maps =\n\
             mynetworks = 127.0.0.0/8\n\
             smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination\n\
             maillog_file = {d}/maillog\n\
             maillog_file_prefixes = {d}\n\
             alias_maps =\n\
             alias_database =\n",
            host = self.hostname
        );
        if let Some((chain, key)) = &self.credentials {
            let (cert_path, key_path) = (root.join("chain.pem"), root.join("key.pem"));
            std::fs::write(&cert_path, chain).expect("writing the smtpd chain");
            write_private(&key_path, key);
            cf.push_str(&format!(
                "smtpd_tls_cert_file = {}\n\
                 smtpd_tls_key_file = {}\n\
                 smtpd_tls_security_level = may\n\
                 smtpd_tls_received_header = yes\n\
                 smtpd_tls_loglevel = 1\n",
                cert_path.display(),
                key_path.display()
            ));
        } else {
            cf.push_str("smtpd_tls_security_level = none\n");
        }
        if !self.domains.is_empty() {
            let (uid, gid) = postfix_ids();
            let names: Vec<&str> = self.domains.iter().map(|(n, _)| n.as_str()).collect();
            cf.push_str(&format!(
                "virtual_mailbox_domains = {}\n\
                 virtual_mailbox_base = {d}/mail\n\
                 virtual_mailbox_maps = texthash:{d}/mailboxes\n\
                 virtual_uid_maps = static:{uid}\n\
                 virtual_gid_maps = static:{gid}\n\
                 virtual_minimum_uid = 1\n",
                names.join(" ")
            ));
        }
        match &self.relay {
            Some(r) => {
                cf.push_str(&format!(
                    "relayhost = [{}]:{}\n\
                     smtp_tls_security_level = {}\n\
                     smtp_tls_loglevel = 1\n",
                    r.addr.ip(),
                    r.addr.port(),
                    r.level.as_postfix()
                ));
                if let Some(ca) = &r.ca_file {
                    cf.push_str(&format!("smtp_tls_CAfile = {}\n", ca.display()));
                }
                if let Some(name) = &r.verify_name {
                    cf.push_str(&format!("smtp_tls_verify_cert_match = {name}\n"));
                }
            }
            // Nothing leaves this instance: mail it cannot keep bounces.
            None => cf.push_str("default_transport = error:no relay in this test\n"),
        }
        for line in &self.extra_main_cf {
            cf.push_str(line);
            cf.push('\n');
        }
        cf
    }

    fn master_cf_text(&self) -> String {
        let mut cf = String::new();
        if let Some(addr) = self.listen {
            cf.push_str(&format!("{addr} inet n - n - - smtpd\n"));
        }
        cf.push_str(
            "pickup unix n - n 60 1 pickup\n\
             cleanup unix n - n - 0 cleanup\n\
             qmgr unix n - n 300 1 qmgr\n\
             tlsmgr unix - - n 1000? 1 tlsmgr\n\
             rewrite unix - - n - - trivial-rewrite\n\
             bounce unix - - n - 0 bounce\n\
             defer unix - - n - 0 bounce\n\
             trace unix - - n - 0 bounce\n\
             verify unix - - n - 1 verify\n\
             flush unix n - n 1000? 0 flush\n\
             proxymap unix - - n - - proxymap\n\
             showq unix n - n - - showq\n\
             error unix - - n - - error\n\
             retry unix - - n - - error\n\
             discard unix - - n - - discard\n\
             smtp unix - - n - - smtp\n\
             relay unix - - n - - smtp\n\
             virtual unix - n n - - virtual\n\
             anvil unix - - n - 1 anvil\n\
             scache unix - - n - 1 scache\n\
             postlog unix-dgram n - n - 1 postlogd\n",
        );
        cf
    }
}

/// A running Postfix; see the [module docs](self).
#[derive(Debug)]
pub struct Postfix {
    listen: Option<SocketAddr>,
    domains: Vec<(String, Delivery)>,
    graceful_stop: bool,
    child: KillOnDrop,
    dir: tempfile::TempDir,
}

impl Drop for Postfix {
    fn drop(&mut self) {
        if !self.graceful_stop {
            // `child` is killed and reaped when it drops, right after this.
            return;
        }
        // kill(1) rather than a signal crate: this crate has no unsafe and
        // needs no other dependency for one signal.
        let pid = self.child.0.id();
        let signal = |args: &[&str]| {
            Command::new("kill")
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if signal(&["-TERM", &pid.to_string()]) {
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.0.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // Not stopped in time: the whole group (master leads it) goes;
        // `child` drops next and reaps master.
        signal(&["-KILL", "--", &format!("-{pid}")]);
    }
}

impl Postfix {
    /// A builder for an instance answering as `hostname` (`myhostname`).
    pub fn builder(hostname: &str) -> PostfixBuilder {
        PostfixBuilder {
            hostname: hostname.to_owned(),
            listen: None,
            credentials: None,
            domains: Vec::new(),
            relay: None,
            extra_main_cf: Vec::new(),
            graceful_stop: false,
        }
    }

    /// Where smtpd listens, if it was asked to.
    pub fn smtp_addr(&self) -> Option<SocketAddr> {
        self.listen
    }

    /// The configuration directory (`-c`), holding `main.cf`.
    pub fn config_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The master process id.
    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }

    /// Postfix's log so far (`maillog_file`).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("maillog")).unwrap_or_default()
    }

    /// Every message delivered so far, over all receiving domains.
    pub fn messages(&self) -> Vec<String> {
        let base = self.dir.path().join("mail");
        let mut out = Vec::new();
        for (domain, how) in &self.domains {
            match how {
                Delivery::Maildir => {
                    for sub in ["new", "cur"] {
                        let Ok(entries) = std::fs::read_dir(base.join(domain).join(sub)) else {
                            continue;
                        };
                        for e in entries.flatten() {
                            if let Ok(m) = std::fs::read_to_string(e.path()) {
                                out.push(m);
                            }
                        }
                    }
                }
                Delivery::Mailbox => {
                    let Ok(text) = std::fs::read_to_string(base.join(format!("{domain}.mbox")))
                    else {
                        continue;
                    };
                    out.extend(split_mbox(&text));
                }
            }
        }
        out
    }

    /// Waits (up to 40 seconds) until a delivered message contains `needle`.
    ///
    /// # Panics
    ///
    /// On timeout, with Postfix's log.
    pub async fn wait_for(&self, needle: &str) -> String {
        let start = Instant::now();
        loop {
            if let Some(m) = self.messages().into_iter().find(|m| m.contains(needle)) {
                return m;
            }
            assert!(
                start.elapsed() < Duration::from_secs(40),
                "no message with {needle:?} reached Postfix; its log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits (up to 40 seconds) until Postfix's log contains `needle`;
    /// returns the whole log.
    ///
    /// # Panics
    ///
    /// On timeout, with the log.
    pub async fn wait_for_log(&self, needle: &str) -> String {
        let start = Instant::now();
        loop {
            let log = self.log();
            if log.contains(needle) {
                return log;
            }
            assert!(
                start.elapsed() < Duration::from_secs(40),
                "Postfix never logged {needle:?}; its log:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn wait_for_log_sync(&self, needle: &str, limit: Duration) {
        let start = Instant::now();
        while !self.log().contains(needle) {
            assert!(
                start.elapsed() < limit,
                "Postfix never logged {needle:?}; its log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Injects `message` (headers and body, `\n` or `\r\n` line ends) with
    /// Postfix's own `sendmail -C CONFIG_DIR -f FROM -- RCPT...`, as
    /// pickup(8) would see mail from a local program.
    ///
    /// # Panics
    ///
    /// When sendmail fails, with its output.
    pub fn sendmail(&self, from: &str, rcpt: &[&str], message: &str) {
        use std::io::Write;
        let mut child = Command::new(SENDMAIL)
            .arg("-C")
            .arg(self.dir.path())
            .arg("-i")
            .arg("-f")
            .arg(from)
            .arg("--")
            .args(rcpt)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running Postfix sendmail");
        child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(message.as_bytes())
            .expect("writing to sendmail");
        let out = child.wait_with_output().expect("waiting for sendmail");
        assert!(
            out.status.success(),
            "sendmail: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Splits an mbox file at its `From ` separator lines (which are dropped).
fn split_mbox(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in text.split_inclusive('\n') {
        if line.starts_with("From ") {
            out.extend(current.take());
            current = Some(String::new());
        } else if let Some(m) = &mut current {
            m.push_str(line);
        }
    }
    out.extend(current);
    out
}

fn chown_postfix(path: &Path) {
    let ok = Command::new("chown")
        .arg("-R")
        .arg("postfix:postfix")
        .arg(path)
        .status()
        .expect("running chown")
        .success();
    assert!(
        ok,
        "chown postfix:postfix {} (needs root and the postfix user)",
        path.display()
    );
}

fn postfix_ids() -> (String, String) {
    let id = |flag: &str| {
        let out = Command::new("id")
            .args([flag, "postfix"])
            .output()
            .expect("running id");
        assert!(
            out.status.success(),
            "no postfix user (apt-get install -y postfix)"
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    (id("-u"), id("-g"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mbox_split_drops_separators() {
        let text = "From a@b Mon Jan 1\nSubject: one\n\nx\nFrom c@d Tue\nSubject: two\n\ny\n";
        let parts = split_mbox(text);
        assert_eq!(parts, ["Subject: one\n\nx\n", "Subject: two\n\ny\n"]);
    }

    /// Children of `pid` named `comm`, from /proc.
    fn children(pid: u32, comm: &str) -> Vec<u32> {
        let mut out = Vec::new();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
                continue;
            };
            // pid (comm) state ppid ...
            let Some((head, rest)) = stat.rsplit_once(") ") else {
                continue;
            };
            let name = head.split_once(" (").map_or("", |(_, n)| n);
            let ppid = rest.split(' ').nth(1).and_then(|p| p.parse::<u32>().ok());
            if name == comm && ppid == Some(pid) {
                out.extend(head.split(' ').next().and_then(|p| p.parse::<u32>().ok()));
            }
        }
        out
    }

    #[test]
    fn graceful_stop_ends_an_smtpd_that_is_serving_a_client() {
        use std::io::{BufRead, BufReader};
        let addr = SocketAddr::from(([127, 0, 0, 1], crate::process::free_port()));
        let postfix = Postfix::builder("graceful.test")
            .listen(addr)
            .stop_gracefully()
            .start();
        // A client in the middle of a session keeps its smtpd busy: killing
        // master alone would leave that smtpd running.
        let client = std::net::TcpStream::connect(addr).unwrap();
        let mut banner = String::new();
        BufReader::new(&client).read_line(&mut banner).unwrap();
        assert!(banner.starts_with("220 "), "{banner}");
        let smtpd = children(postfix.pid(), "smtpd");
        assert!(!smtpd.is_empty(), "no smtpd below master {}", postfix.pid());
        drop(postfix);
        let gone = |pid: &u32| !Path::new(&format!("/proc/{pid}")).exists();
        let start = Instant::now();
        while !smtpd.iter().all(gone) {
            assert!(
                start.elapsed() < Duration::from_secs(2),
                "smtpd {smtpd:?} outlived a graceful stop"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(client);
    }

    #[test]
    fn relay_settings_reach_main_cf() {
        let cf = Postfix::builder("sender.test")
            .relay_to("127.0.0.1:2525".parse().unwrap(), TlsLevel::Verify)
            .relay_ca_file(Path::new("/tmp/ca.pem"))
            .verify_name("mail.example.test")
            .main_cf_text(Path::new("/x"));
        assert!(cf.contains("relayhost = [127.0.0.1]:2525\n"), "{cf}");
        assert!(cf.contains("smtp_tls_security_level = verify\n"), "{cf}");
        assert!(cf.contains("smtp_tls_CAfile = /tmp/ca.pem\n"), "{cf}");
        assert!(
            cf.contains("smtp_tls_verify_cert_match = mail.example.test\n"),
            "{cf}"
        );
        assert!(!cf.contains("default_transport"), "{cf}");
    }
}
