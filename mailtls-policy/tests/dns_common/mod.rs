//! A real DNS world on loopback: NSD (authoritative) serving its own signed
//! root `.`, a DNSSEC-signed `test.`, a signed child `secure.test.` (with a tampered record whose
//! signature no longer matches) and an unsigned child `insecure.test.`.
//!
//! Mail domains for plan tests: `secure.test` (signed MX with TLSA),
//! `nodane.secure.test` (signed, no TLSA), `bogustlsa.secure.test` (MX 10
//! with a tampered TLSA record, MX 20 the good host), `bogusmx.secure.test`
//! (tampered MX record), `insecure.test` and `dane.insecure.test` (unsigned,
//! the latter with a TLSA record that must not be used).
//! Zones are signed at test time with `ldns-keygen`/`ldns-signzone`; no key
//! is committed. Needs the Debian packages `nsd` and `ldnsutils`.

#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct DnsWorld {
    pub addr: SocketAddr,
    /// DNSKEY of the test world's own root key, as a trust-anchor file.
    pub anchor: PathBuf,
    pub dir: tempfile::TempDir,
    child: Child,
}

impl Drop for DnsWorld {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn tools_present() -> bool {
    ["nsd", "ldns-keygen", "ldns-signzone", "ldns-key2ds"]
        .iter()
        .all(|t| which(t).is_some())
}

fn which(tool: &str) -> Option<PathBuf> {
    for dir in ["/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/bin"] {
        let p = Path::new(dir).join(tool);
        if p.exists() {
            return Some(p);
        }
    }
    None
}

fn run(dir: &Path, cmd: &str, args: &[&str]) -> String {
    let out = Command::new(which(cmd).unwrap_or_else(|| panic!("{cmd} not installed")))
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

/// A key for `zone`; returns the file stem (`Kzone+013+id`).
fn keygen(dir: &Path, zone: &str) -> String {
    run(dir, "ldns-keygen", &["-a", "ECDSAP256SHA256", "-k", zone])
        .trim()
        .to_owned()
}

fn free_port() -> u16 {
    // The same port must be free for UDP and TCP.
    loop {
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
}

pub const TLSA_DATA: &str = "8cb0fc6c527506a053f4f14c8464bebbd6dede2738d11468dd953d7d6a3021f1";
/// What the signed `_25._tcp.mx-bogus.secure.test.` TLSA record is changed to
/// after signing, so its RRSIG no longer matches (bogus).
pub const TAMPERED_TLSA_DATA: &str =
    "00b0fc6c527506a053f4f14c8464bebbd6dede2738d11468dd953d7d6a3021f1";

impl DnsWorld {
    pub fn start() -> DnsWorld {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let soa = "@ SOA ns.test. hostmaster.test. 1 3600 600 86400 300\n@ NS ns.test.\n";

        // The child first: the parent needs its DS.
        let secure_key = keygen(d, "secure.test.");
        std::fs::write(
            d.join("secure.test.zone"),
            format!(
                "$ORIGIN secure.test.\n$TTL 300\n{soa}\
                 @ MX 10 mx.secure.test.\n\
                 mx A 192.0.2.25\n\
                 mx AAAA 2001:db8::25\n\
                 alias CNAME mx\n\
                 _mta-sts TXT \"v=STSv1; id=secure1\"\n\
                 mta-sts A 127.0.0.1\n\
                 _25._tcp.mx TLSA 3 1 1 {TLSA_DATA}\n\
                 _smtp._tls TXT \"v=TLSRPTv1; \" \"rua=mailto:tlsrpt@secure.test\"\n\
                 bad A 192.0.2.66\n\
                 nodane MX 10 mx-nodane.secure.test.\n\
                 mx-nodane A 192.0.2.27\n\
                 bogustlsa MX 10 mx-bogus.secure.test.\n\
                 bogustlsa MX 20 mx.secure.test.\n\
                 mx-bogus A 192.0.2.28\n\
                 _25._tcp.mx-bogus TLSA 3 1 1 {TLSA_DATA}\n\
                 bogusmx MX 10 mx.secure.test.\n"
            ),
        )
        .unwrap();
        run(d, "ldns-signzone", &["secure.test.zone", &secure_key]);
        // Tamper with one signed record: its RRSIG no longer matches (bogus).
        let signed = std::fs::read_to_string(d.join("secure.test.zone.signed")).unwrap();
        let tampered: String = signed
            .lines()
            .map(|l| {
                if l.starts_with("bad.secure.test.") && l.contains("\tA\t") {
                    l.replace("192.0.2.66", "192.0.2.99")
                } else if l.starts_with("_25._tcp.mx-bogus.secure.test.") && l.contains("\tTLSA\t")
                {
                    l.replace(TLSA_DATA, TAMPERED_TLSA_DATA)
                } else if l.starts_with("bogusmx.secure.test.") && l.contains("\tMX\t") {
                    // Only the target: the owner name ends the same way.
                    l.replace("\tMX\t10 mx.secure.test.", "\tMX\t10 mx-bogus.secure.test.")
                } else {
                    l.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        for (name, rtype) in [
            ("bad.secure.test.", "\tA\t"),
            ("_25._tcp.mx-bogus.secure.test.", "\tTLSA\t"),
            ("bogusmx.secure.test.", "\tMX\t"),
        ] {
            let line = |z: &str| {
                z.lines()
                    .find(|l| l.starts_with(name) && l.contains(rtype))
                    .map(str::to_owned)
            };
            assert_ne!(
                line(&signed),
                line(&tampered),
                "tampering {name} changed nothing"
            );
        }
        std::fs::write(d.join("secure.test.zone.signed"), tampered + "\n").unwrap();
        let ds = run(
            d,
            "ldns-key2ds",
            &["-n", "-2", &format!("{secure_key}.key")],
        );

        std::fs::write(
            d.join("insecure.test.zone"),
            format!(
                "$ORIGIN insecure.test.\n$TTL 300\n{soa}\
                 @ MX 10 mx.insecure.test.\n\
                 mx A 192.0.2.26\n\
                 _mta-sts TXT \"v=STSv1; \" \"id=multi1\"\n\
                 dane MX 10 mx-dane.insecure.test.\n\
                 mx-dane A 192.0.2.29\n\
                 _25._tcp.mx-dane TLSA 3 1 1 {TLSA_DATA}\n"
            ),
        )
        .unwrap();

        let parent_key = keygen(d, "test.");
        std::fs::write(
            d.join("test.zone"),
            format!(
                "$ORIGIN test.\n$TTL 300\n{soa}\
                 ns A 127.0.0.1\n\
                 secure NS ns.test.\n\
                 {ds}\
                 insecure NS ns.test.\n"
            ),
        )
        .unwrap();
        run(d, "ldns-signzone", &["test.zone", &parent_key]);
        let parent_ds = run(
            d,
            "ldns-key2ds",
            &["-n", "-2", &format!("{parent_key}.key")],
        );

        // A signed root of our own, so a validator never needs the real one.
        let root_key = keygen(d, ".");
        std::fs::write(
            d.join("root.zone"),
            format!(
                "$ORIGIN .\n$TTL 300\n{soa}\
                 test. NS ns.test.\n\
                 ns.test. A 127.0.0.1\n\
                 {parent_ds}"
            ),
        )
        .unwrap();
        run(d, "ldns-signzone", &["root.zone", &root_key]);
        let anchor = d.join("anchor.key");
        std::fs::copy(d.join(format!("{root_key}.key")), &anchor).unwrap();

        let port = free_port();
        let conf = format!(
            "server:\n  ip-address: 127.0.0.1@{port}\n  port: {port}\n  zonesdir: \"{dir}\"\n  \
             username: \"\"\n  chroot: \"\"\n  pidfile: \"{dir}/nsd.pid\"\n  \
             xfrdfile: \"{dir}/xfrd.state\"\n  zonelistfile: \"{dir}/zone.list\"\n  \
             logfile: \"{dir}/nsd.log\"\n  server-count: 1\n  verbosity: 1\n  database: \"\"\n\
             remote-control:\n  control-enable: no\n\
             zone:\n  name: .\n  zonefile: root.zone.signed\n\
             zone:\n  name: test.\n  zonefile: test.zone.signed\n\
             zone:\n  name: secure.test.\n  zonefile: secure.test.zone.signed\n\
             zone:\n  name: insecure.test.\n  zonefile: insecure.test.zone\n",
            dir = d.display()
        );
        std::fs::write(d.join("nsd.conf"), conf).unwrap();
        let child = Command::new(which("nsd").unwrap())
            .args(["-d", "-c"])
            .arg(d.join("nsd.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let world = DnsWorld {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            anchor,
            dir,
            child,
        };
        world.wait_ready();
        world
    }

    /// Waits until NSD answers over TCP (it opens UDP and TCP together).
    fn wait_ready(&self) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if std::net::TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let log = std::fs::read_to_string(self.dir.path().join("nsd.log")).unwrap_or_default();
        panic!("nsd did not start: {log}");
    }
}

/// Unbound as a validating recursive resolver in front of a [`DnsWorld`],
/// with the world's root key as its trust anchor (and `test.` released from
/// unbound's built-in RFC 6761 NXDOMAIN zone). Every zone of the world is
/// a stub to NSD's port (a referral would otherwise send unbound to port
/// 53), the root included, so it never asks the real root servers. Needs
/// the Debian package `unbound`.
pub struct Unbound {
    pub addr: SocketAddr,
    child: Child,
}

impl Drop for Unbound {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Unbound {
    pub fn start(world: &DnsWorld) -> Unbound {
        let dir = world.dir.path().to_owned();
        let port = free_port();
        let nsd = world.addr.port();
        let stubs: String = [".", "test.", "secure.test.", "insecure.test."]
            .iter()
            .map(|z| format!("stub-zone:\n  name: \"{z}\"\n  stub-addr: 127.0.0.1@{nsd}\n"))
            .collect();
        let conf = format!(
            "server:\n  interface: 127.0.0.1@{port}\n  port: {port}\n  do-not-query-localhost: no\n  \
             username: \"\"\n  chroot: \"\"\n  directory: \"{d}\"\n  pidfile: \"{d}/unbound.pid\"\n  \
             use-syslog: no\n  logfile: \"{d}/unbound.log\"\n  verbosity: 1\n  num-threads: 1\n  \
             so-reuseport: no\n  do-ip6: no\n  access-control: 127.0.0.0/8 allow\n  \
             local-zone: \"test.\" nodefault\n  module-config: \"validator iterator\"\n  trust-anchor-file: \"{anchor}\"\n\
             {stubs}remote-control:\n  control-enable: no\n",
            d = dir.display(),
            anchor = world.anchor.display(),
        );
        let conf_path = dir.join("unbound.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new(which("unbound").expect("unbound not installed"))
            .args(["-d", "-c"])
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let start = Instant::now();
        while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if start.elapsed() > Duration::from_secs(10) {
                let log = std::fs::read_to_string(dir.join("unbound.log")).unwrap_or_default();
                panic!("unbound did not start: {log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Unbound { addr, child }
    }
}
