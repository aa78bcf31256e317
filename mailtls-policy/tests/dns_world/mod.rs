//! A DNSSEC test world on loopback: Knot DNS (authoritative) serves zones
//! signed at test time with `ldns-signzone`, and Unbound validates them with
//! the trust anchor of the test parent `example.`.
//!
//! Zones (all made in a temp dir; no key is ever committed):
//! - `example.`: signed; its KSK is the trust anchor. Delegates the three
//!   children below, with DS records for the two signed ones.
//! - `secure.example.`: signed; MX, A/AAAA, TLSA `_25._tcp.mx`, `_mta-sts`
//!   and `_smtp._tls` TXT; CNAMEs `alias` (to `mx`), `to-insecure` and
//!   `to-bogus` (to the `mx` hosts of the other children).
//! - `insecure.example.`: unsigned, delegated without DS (provably insecure).
//! - `bogus.example.`: signed and delegated with DS, but every signature
//!   expired in 2020 (RFC 4035 §5.3.1: an RRSIG outside its validity period
//!   does not validate), so a validator must call it bogus.
//!
//! Unbound runs in one of two modes: strict (`val-permissive-mode: no`, bogus
//! data is answered with SERVFAIL) and permissive (bogus data is passed on
//! without the AD bit, so a client that validates itself sees it).
//!
//! Needs the Debian packages `knot`, `ldnsutils` and `unbound`. The Knot and
//! Unbound processes are killed on drop (also when a test panics) and the
//! temp dir is removed after them.

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

/// The programs the world runs.
const TOOLS: [&str; 5] = [
    "knotd",
    "unbound",
    "ldns-keygen",
    "ldns-signzone",
    "ldns-key2ds",
];

/// The DANE-EE SPKI SHA-256 association published at `_25._tcp.mx.secure.example`.
pub const TLSA_DATA: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0";

/// The `_mta-sts` record of `secure.example`.
pub const STS_TXT: &str = "v=STSv1; id=20261124T1200";

/// The `_smtp._tls` record of `secure.example`, published as two strings.
pub const TLSRPT_TXT: [&str; 2] = ["v=TLSRPTv1; ", "rua=mailto:tlsrpt@secure.example"];

/// The tools that are missing from this machine (empty when the world can run).
pub fn missing_tools() -> Vec<&'static str> {
    TOOLS
        .iter()
        .copied()
        .filter(|t| which(t).is_none())
        .collect()
}

fn which(tool: &str) -> Option<PathBuf> {
    for dir in [
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
        "/usr/local/sbin",
        "/usr/local/bin",
    ] {
        let p = Path::new(dir).join(tool);
        if p.is_file() {
            return Some(p);
        }
    }
    None
}

/// How Unbound treats data that fails validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnboundMode {
    /// `val-permissive-mode: no`: bogus answers become SERVFAIL.
    Strict,
    /// `val-permissive-mode: yes`: bogus answers are returned without AD.
    Permissive,
    /// Strict, and `ede: yes`: each SERVFAIL for bogus data carries an
    /// RFC 8914 Extended DNS Error naming the DNSSEC cause.
    StrictWithEde,
}

/// A running world. Dropping it stops Unbound, then Knot, then removes the
/// temp dir.
pub struct DnssecWorld {
    /// Where Knot (authoritative) answers.
    pub knot: SocketAddr,
    /// Where Unbound (validating recursive) answers.
    pub unbound: SocketAddr,
    /// The KSK of `example.` as a zone-format DNSKEY file (the trust anchor
    /// both Unbound and a validating client are given).
    pub anchor: PathBuf,
    // Unbound is started once Knot answers; `None` until then.
    unbound_child: Option<Child>,
    knot_child: Child,
    // Declared last so it is removed after the processes are gone.
    dir: tempfile::TempDir,
}

impl Drop for DnssecWorld {
    fn drop(&mut self) {
        for child in self.unbound_child.iter_mut().chain([&mut self.knot_child]) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn run(dir: &Path, cmd: &str, args: &[&str]) -> String {
    let out = Command::new(which(cmd).unwrap_or_else(|| panic!("{cmd} is not installed")))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Makes a key signing key for `zone` (used as the only key: a CSK) and
/// returns its file stem `Kzone.+013+tag`.
fn keygen(dir: &Path, zone: &str) -> String {
    let stem = run(dir, "ldns-keygen", &["-a", "ECDSAP256SHA256", "-k", zone])
        .trim()
        .to_owned();
    // The private key stays inside the temp dir, readable by its owner only.
    set_private(&dir.join(format!("{stem}.private")));
    stem
}

fn set_private(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// The DS record (SHA-256) of a key, as a zone-file line.
fn ds(dir: &Path, stem: &str) -> String {
    run(dir, "ldns-key2ds", &["-n", "-2", &format!("{stem}.key")])
}

/// A port free for both UDP and TCP on 127.0.0.1.
fn free_port() -> u16 {
    loop {
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
}

const SOA: &str = "@ SOA ns.example. hostmaster.example. 1 3600 600 86400 300\n@ NS ns.example.\n";

impl DnssecWorld {
    /// Makes and signs the zones, starts Knot and Unbound, and waits until
    /// Unbound gives an authentic answer for `example. SOA`.
    pub fn start(mode: UnboundMode) -> DnssecWorld {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();

        // Children first: the parent carries their DS records.
        let secure_key = keygen(d, "secure.example.");
        write(
            d,
            "secure.example.zone",
            &format!(
                "$ORIGIN secure.example.\n$TTL 300\n{SOA}\
                 @ MX 10 mx.secure.example.\n\
                 mx A 192.0.2.25\n\
                 mx AAAA 2001:db8::25\n\
                 _25._tcp.mx TLSA 3 1 1 {TLSA_DATA}\n\
                 _mta-sts TXT \"{STS_TXT}\"\n\
                 mta-sts A 127.0.0.1\n\
                 alias CNAME mx\n\
                 to-insecure CNAME mx.insecure.example.\n\
                 to-bogus CNAME mx.bogus.example.\n\
                 _smtp._tls TXT \"{}\" \"{}\"\n",
                TLSRPT_TXT[0], TLSRPT_TXT[1]
            ),
        );
        run(d, "ldns-signzone", &["secure.example.zone", &secure_key]);

        let bogus_key = keygen(d, "bogus.example.");
        write(
            d,
            "bogus.example.zone",
            &format!(
                "$ORIGIN bogus.example.\n$TTL 300\n{SOA}\
                 @ MX 10 mx.bogus.example.\n\
                 mx A 192.0.2.27\n\
                 _25._tcp.mx TLSA 3 1 1 {TLSA_DATA}\n"
            ),
        );
        // Valid during January 2020 only: expired long before any test runs.
        run(
            d,
            "ldns-signzone",
            &[
                "-i",
                "20200101000000",
                "-e",
                "20200201000000",
                "bogus.example.zone",
                &bogus_key,
            ],
        );

        write(
            d,
            "insecure.example.zone",
            &format!(
                "$ORIGIN insecure.example.\n$TTL 300\n{SOA}\
                 @ MX 10 mx.insecure.example.\n\
                 mx A 192.0.2.26\n\
                 _mta-sts TXT \"v=STSv1; id=insecure1\"\n"
            ),
        );

        let parent_key = keygen(d, "example.");
        write(
            d,
            "example.zone",
            &format!(
                "$ORIGIN example.\n$TTL 300\n{SOA}\
                 ns A 127.0.0.1\n\
                 secure NS ns.example.\n\
                 {}\
                 bogus NS ns.example.\n\
                 {}\
                 insecure NS ns.example.\n",
                ds(d, &secure_key),
                ds(d, &bogus_key)
            ),
        );
        run(d, "ldns-signzone", &["example.zone", &parent_key]);
        let anchor = d.join("example.anchor");
        std::fs::copy(d.join(format!("{parent_key}.key")), &anchor).unwrap();

        let knot_port = free_port();
        let knot_child = start_knot(d, knot_port);
        let knot = SocketAddr::from((Ipv4Addr::LOCALHOST, knot_port));
        let unbound_port = free_port();
        // Construct the world now so Drop cleans up if a wait below panics.
        let mut world = DnssecWorld {
            knot,
            unbound: SocketAddr::from((Ipv4Addr::LOCALHOST, unbound_port)),
            anchor,
            unbound_child: None,
            knot_child,
            dir,
        };
        world.wait_for(knot, "knot", "knot.log", |r| r.rcode == 0 && r.answers > 0);
        world.unbound_child = Some(start_unbound(
            world.dir.path(),
            unbound_port,
            knot_port,
            &world.anchor,
            mode,
        ));
        world.wait_for(world.unbound, "unbound", "unbound.log", |r| {
            r.rcode == 0 && r.answers > 0 && r.authentic_data
        });
        world
    }

    /// Sends one query (RD set, DO set) and returns the parsed header, or
    /// `None` when nothing came back within a second.
    pub fn query(server: SocketAddr, name: &str, qtype: u16) -> Option<RawReply> {
        raw_query(server, name, qtype)
    }

    /// Retries `example. SOA` until `ready` holds (bounded: 15 s), else
    /// panics with the server's log.
    fn wait_for(&self, addr: SocketAddr, what: &str, log: &str, ready: impl Fn(&RawReply) -> bool) {
        let start = Instant::now();
        let mut last = None;
        while start.elapsed() < Duration::from_secs(15) {
            if let Some(reply) = raw_query(addr, "example.", TYPE_SOA) {
                if ready(&reply) {
                    return;
                }
                last = Some(reply);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let log = std::fs::read_to_string(self.dir.path().join(log)).unwrap_or_default();
        panic!("{what} on {addr} not ready (last reply {last:?}); log:\n{log}");
    }
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

fn start_knot(d: &Path, port: u16) -> Child {
    std::fs::create_dir_all(d.join("knot-db")).unwrap();
    let zones = [
        ("example.", "example.zone.signed"),
        ("secure.example.", "secure.example.zone.signed"),
        ("bogus.example.", "bogus.example.zone.signed"),
        ("insecure.example.", "insecure.example.zone"),
    ]
    .iter()
    .map(|(z, f)| format!("  - domain: {z}\n    file: \"{}/{f}\"\n", d.display()))
    .collect::<String>();
    // The zones are served as signed by ldns-signzone: Knot does no signing
    // of its own and never writes the zone files back.
    let conf = format!(
        "server:\n  rundir: \"{dir}\"\n  listen: 127.0.0.1@{port}\n  \
         udp-workers: 1\n  tcp-workers: 1\n  background-workers: 1\n\
         database:\n  storage: \"{dir}/knot-db\"\n\
         log:\n  - target: \"{dir}/knot.log\"\n    any: info\n\
         template:\n  - id: default\n    storage: \"{dir}\"\n    zonefile-sync: -1\n    \
         zonefile-load: whole\n    journal-content: none\n\
         zone:\n{zones}",
        dir = d.display()
    );
    write(d, "knot.conf", &conf);
    Command::new(which("knotd").unwrap())
        .arg("-c")
        .arg(d.join("knot.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn start_unbound(d: &Path, port: u16, knot_port: u16, anchor: &Path, mode: UnboundMode) -> Child {
    // Every zone is a stub to Knot's port: a referral would send Unbound to
    // port 53 of ns.example. Nothing outside `example.` is ever asked.
    let stubs: String = [
        "example.",
        "secure.example.",
        "insecure.example.",
        "bogus.example.",
    ]
    .iter()
    .map(|z| format!("stub-zone:\n  name: \"{z}\"\n  stub-addr: 127.0.0.1@{knot_port}\n"))
    .collect();
    let permissive = match mode {
        UnboundMode::Strict | UnboundMode::StrictWithEde => "no",
        UnboundMode::Permissive => "yes",
    };
    let ede = if mode == UnboundMode::StrictWithEde {
        "yes"
    } else {
        "no"
    };
    let conf = format!(
        "server:\n  interface: 127.0.0.1@{port}\n  port: {port}\n  do-not-query-localhost: no\n  \
         username: \"\"\n  chroot: \"\"\n  directory: \"{d}\"\n  pidfile: \"{d}/unbound.pid\"\n  \
         use-syslog: no\n  logfile: \"{d}/unbound.log\"\n  verbosity: 1\n  num-threads: 1\n  \
         so-reuseport: no\n  do-ip6: no\n  access-control: 127.0.0.0/8 allow\n  \
         module-config: \"validator iterator\"\n  trust-anchor-file: \"{anchor}\"\n  \
         val-permissive-mode: {permissive}\n  ede: {ede}\n  harden-glue: no\n  harden-referral-path: no\n  \
         harden-dnssec-stripped: yes\n  qname-minimisation: no\n  aggressive-nsec: no\n  \
         cache-max-ttl: 0\n  cache-max-negative-ttl: 0\n\
         {stubs}remote-control:\n  control-enable: no\n",
        d = d.display(),
        anchor = anchor.display(),
    );
    write(d, "unbound.conf", &conf);
    Command::new(which("unbound").unwrap())
        .args(["-d", "-c"])
        .arg(d.join("unbound.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// QTYPE SOA.
pub const TYPE_SOA: u16 = 6;
/// QTYPE MX.
pub const TYPE_MX: u16 = 15;

/// The header fields of a reply to [`raw_query`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawReply {
    /// RCODE (0 NOERROR, 2 SERVFAIL, 3 NXDOMAIN).
    pub rcode: u8,
    /// The AD bit.
    pub authentic_data: bool,
    /// ANCOUNT.
    pub answers: u16,
}

/// A minimal DNS query over UDP (RFC 1035 §4.1) with EDNS0 and the DO bit
/// (RFC 3225), independent of the code under test: it checks the world
/// itself (readiness, and that Unbound really validates).
fn raw_query(server: SocketAddr, name: &str, qtype: u16) -> Option<RawReply> {
    let mut msg: Vec<u8> = vec![0x4d, 0x54, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        msg.push(u8::try_from(label.len()).unwrap());
        msg.extend_from_slice(label.as_bytes());
    }
    msg.push(0);
    msg.extend_from_slice(&qtype.to_be_bytes());
    msg.extend_from_slice(&[0, 1]);
    // OPT: root owner, type 41, UDP size 1232, ext-rcode 0, version 0, DO.
    msg.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0x80, 0, 0, 0]);
    let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).ok()?;
    sock.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    sock.send_to(&msg, server).ok()?;
    let mut buf = [0u8; 4096];
    let (n, _) = sock.recv_from(&mut buf).ok()?;
    if n < 12 || buf[0..2] != [0x4d, 0x54] {
        return None;
    }
    Some(RawReply {
        rcode: buf[3] & 0x0f,
        authentic_data: buf[3] & 0x20 != 0,
        answers: u16::from_be_bytes([buf[6], buf[7]]),
    })
}
