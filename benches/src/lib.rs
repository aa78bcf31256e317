//! Fixtures for the mailtls benchmarks.
//!
//! - [`TestPki`] makes many certificates fast: one test CA and one shared
//!   ECDSA P-256 leaf key, so each certificate costs one CA signature and no
//!   key generation (100,000 of them take seconds, not minutes). Certificate
//!   `i` is for [`exact_name`]`(i)`; every tenth one also carries the wildcard
//!   `*.`[`wildcard_base`]`(i / 10)`.
//! - [`HelloFactory`] produces real rustls `ClientHello`s: a
//!   `rustls::ClientConnection` writes its first flight and a
//!   `rustls::server::Acceptor` parses it into an [`Accepted`].
//! - [`Scenario`] names the lookups measured (exact, wildcard, miss, no SNI)
//!   and which certificate each must return.
//! - [`mailtls_resolver`] and [`rustls_peer`] hold the same certificates in
//!   mailtls's `SniResolver` and in rustls's `ResolvesServerCertUsingSni`.
//! - [`read_estimate`] reads criterion's `estimates.json`, so a bench can
//!   print the mailtls/peer ratio measured in the same run.

// Bench fixtures: a failure to make a certificate or a ClientHello means the
// benchmark cannot run at all, so aborting with a message is the right thing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use mailtls_core::CertInfo;
use mailtls_sni::{PreparedCertificate, ResolverOptions, SniResolver};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::server::{Accepted, Acceptor, ResolvesServerCertUsingSni};
use rustls::sign::{CertifiedKey, SigningKey};
use rustls::{ClientConfig, ClientConnection, RootCertStore};

/// The exact name of certificate `i`: `host{i}.d{i/10}.example`.
pub fn exact_name(i: usize) -> String {
    format!("host{i}.d{}.example", i / 10)
}

/// The base of wildcard `j`, `w{j}.example`: certificate `10 * j` also
/// carries `*.w{j}.example`.
pub fn wildcard_base(j: usize) -> String {
    format!("w{j}.example")
}

/// How many wildcards a set of `n` certificates holds (one per ten).
pub fn wildcard_count(n: usize) -> usize {
    n.div_ceil(10)
}

/// The SAN list of certificate `i`.
pub fn cert_names(i: usize) -> Vec<String> {
    let mut names = vec![exact_name(i)];
    if i.is_multiple_of(10) {
        names.push(format!("*.{}", wildcard_base(i / 10)));
    }
    names
}

/// The aws-lc-rs provider every fixture uses (explicitly, so no process-wide
/// default has to be installed).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Runs `f(0..n)` on all cores and returns the results in order.
fn par_map<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(n.max(1));
    let chunk = n.div_ceil(threads).max(1);
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .step_by(chunk)
            .map(|start| {
                s.spawn(move || (start..(start + chunk).min(n)).map(f).collect::<Vec<T>>())
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("fixture thread panicked"))
            .collect()
    })
}

/// One made leaf: its DER and PEM.
#[derive(Debug)]
pub struct Leaf {
    /// The leaf certificate, DER.
    pub der: CertificateDer<'static>,
    /// The leaf certificate, PEM.
    pub pem: String,
}

/// A test CA and one ECDSA P-256 key shared by every leaf it issues.
pub struct TestPki {
    issuer: Issuer<'static, KeyPair>,
    ca_der: CertificateDer<'static>,
    ca_pem: String,
    leaf_key: KeyPair,
    leaf_key_pem: String,
    signing_key: Arc<dyn SigningKey>,
    not_before: time::OffsetDateTime,
    not_after: time::OffsetDateTime,
}

impl std::fmt::Debug for TestPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestPki").finish_non_exhaustive()
    }
}

impl Default for TestPki {
    fn default() -> Self {
        Self::new()
    }
}

impl TestPki {
    /// Makes the CA and the shared leaf key.
    pub fn new() -> Self {
        let now = time::OffsetDateTime::now_utc();
        let not_before = now - time::Duration::hours(1);
        let not_after = now + time::Duration::days(90);

        let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut ca = CertificateParams::default();
        ca.not_before = not_before;
        ca.not_after = now + time::Duration::days(3650);
        ca.serial_number = Some(SerialNumber::from(1u64));
        ca.distinguished_name = DistinguishedName::new();
        ca.distinguished_name.push(
            DnType::OrganizationalUnitName,
            mailtls_core::maker::TEST_MARKER_OU,
        );
        ca.distinguished_name
            .push(DnType::CommonName, "mailtls bench CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca.self_signed(&ca_key).unwrap();

        let leaf_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let signing_key = provider().key_provider.load_private_key(key_der).unwrap();
        TestPki {
            ca_der: ca_cert.der().clone(),
            ca_pem: ca_cert.pem(),
            issuer: Issuer::new(ca, ca_key),
            leaf_key_pem: leaf_key.serialize_pem(),
            leaf_key,
            signing_key,
            not_before,
            not_after,
        }
    }

    /// The CA certificate, DER.
    pub fn ca_der(&self) -> &CertificateDer<'static> {
        &self.ca_der
    }

    /// Issues certificate `i` (names from [`cert_names`]), signed by the CA,
    /// for the shared key. Valid from an hour ago for 90 days.
    pub fn leaf(&self, i: usize) -> Leaf {
        let mut params = CertificateParams::new(cert_names(i)).unwrap();
        params.serial_number = Some(SerialNumber::from(i as u64 + 2));
        params.not_before = self.not_before;
        params.not_after = self.not_after;
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, exact_name(i));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&self.leaf_key, &self.issuer).unwrap();
        Leaf {
            pem: cert.pem(),
            der: cert.der().clone(),
        }
    }

    /// Certificate `i` as mailtls serves it: chain (leaf, CA) with the shared
    /// signing key, inspected leaf, source label `bench:{i}`.
    pub fn prepared(&self, i: usize) -> PreparedCertificate {
        let leaf = self.leaf(i);
        let info = CertInfo::from_der(&leaf.der).unwrap();
        PreparedCertificate::from_parts(
            Arc::new(CertifiedKey::new(
                vec![leaf.der, self.ca_der.clone()],
                Arc::clone(&self.signing_key),
            )),
            Arc::new(info),
            &format!("bench:{i}"),
        )
    }

    /// Certificates `0..n` ready for `SniResolver::reload`, made on all cores.
    pub fn prepared_set(&self, n: usize) -> Vec<PreparedCertificate> {
        par_map(n, |i| self.prepared(i))
    }

    /// Writes certificates `0..n` into `dir` as pairs `c{i:06}.crt` (leaf and
    /// CA, PEM, mode 0644) + `c{i:06}.key` (the shared key, PKCS#8 PEM, mode
    /// 0600): `2 * n` files.
    pub fn write_pairs(&self, dir: &Path, n: usize) -> std::io::Result<()> {
        par_map(n, |i| {
            let leaf = self.leaf(i);
            let stem = dir.join(format!("c{i:06}"));
            std::fs::write(
                stem.with_extension("crt"),
                format!("{}{}", leaf.pem, self.ca_pem),
            )?;
            write_private(&stem.with_extension("key"), self.leaf_key_pem.as_bytes())
        })
        .into_iter()
        .collect()
    }

    /// A fresh temporary directory (mode 0700) holding
    /// [`write_pairs`](Self::write_pairs)`(n)`.
    pub fn temp_dir_with_pairs(&self, n: usize) -> tempfile::TempDir {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::Builder::new()
            .prefix("mailtls-bench-load-")
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir()
            .unwrap();
        self.write_pairs(dir.path(), n).unwrap();
        dir
    }
}

/// Writes a private key file readable by its owner only.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?
        .write_all(bytes)
}

/// A resolver (default options: serve the first certificate as default)
/// loaded with `certs`.
pub fn mailtls_resolver(certs: &[PreparedCertificate]) -> SniResolver {
    let resolver = SniResolver::new(ResolverOptions::default().with_provider(provider()));
    resolver.reload(certs.to_vec()).unwrap();
    resolver
}

/// rustls's `ResolvesServerCertUsingSni` holding the same certificates under
/// their exact names (it has no wildcards and no default). `add` checks every
/// certificate against its name, which is slow for many: that is setup.
pub fn rustls_peer(certs: &[PreparedCertificate]) -> ResolvesServerCertUsingSni {
    let mut peer = ResolvesServerCertUsingSni::new();
    for c in certs {
        for name in c.info.dns_names.iter().filter(|n| !n.starts_with("*.")) {
            peer.add(name, CertifiedKey::clone(&c.certified)).unwrap();
        }
    }
    peer
}

/// Makes parsed `ClientHello`s the way a server sees them.
#[derive(Debug, Clone)]
pub struct HelloFactory {
    config: Arc<ClientConfig>,
}

impl HelloFactory {
    /// A client trusting `pki`'s CA, with rustls's default (aws-lc-rs)
    /// signature schemes, cipher suites and key shares.
    pub fn new(pki: &TestPki) -> Self {
        let mut roots = RootCertStore::empty();
        roots.add(pki.ca_der().clone()).unwrap();
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        HelloFactory {
            config: Arc::new(config),
        }
    }

    /// The server side of a client's first flight: with SNI `sni`, or, for
    /// `None`, a client connecting to an IP address (which sends no SNI).
    pub fn accepted(&self, sni: Option<&str>) -> Accepted {
        let server_name = match sni {
            Some(name) => ServerName::try_from(name.to_owned()).unwrap(),
            None => ServerName::from(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 25))),
        };
        let mut client = ClientConnection::new(Arc::clone(&self.config), server_name).unwrap();
        let mut wire = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut wire).unwrap();
        }
        let mut acceptor = Acceptor::default();
        let mut rd = &wire[..];
        loop {
            let read = acceptor.read_tls(&mut rd).unwrap();
            let accepted = acceptor
                .accept()
                .map_err(|(e, _alert)| e)
                .expect("the acceptor takes the ClientHello");
            match accepted {
                Some(accepted) => return accepted,
                None => assert!(read > 0, "client flight ended before its ClientHello"),
            }
        }
    }
}

/// What kind of lookup a benchmark measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// The SNI is a certificate's exact name.
    Exact,
    /// The SNI is covered by a `*.` wildcard only (an exact probe misses first).
    Wildcard,
    /// The SNI matches nothing: the default certificate is served.
    Miss,
    /// No SNI (a client connecting by IP address): the default is served.
    NoSni,
}

/// One lookup: the name sent and the certificate index that must answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// The SNI sent, `None` for none.
    pub sni: Option<String>,
    /// Index of the certificate mailtls must return (0, the first loaded,
    /// is the default).
    pub expected: usize,
}

impl Scenario {
    /// All scenarios, in table order.
    pub const ALL: [Scenario; 4] = [
        Scenario::Exact,
        Scenario::Wildcard,
        Scenario::Miss,
        Scenario::NoSni,
    ];

    /// A short label, used in criterion group names (`sni_lookup_{label}`).
    pub fn label(self) -> &'static str {
        match self {
            Scenario::Exact => "exact",
            Scenario::Wildcard => "wildcard",
            Scenario::Miss => "miss",
            Scenario::NoSni => "no_sni",
        }
    }

    /// `count` probes against a set of `n` certificates, spread over the set
    /// (stride 7919, a prime) so successive lookups touch different entries.
    pub fn probes(self, n: usize, count: usize) -> Vec<Probe> {
        (0..count)
            .map(|k| {
                let spread = k * 7919 + 13;
                match self {
                    Scenario::Exact => {
                        let i = spread % n;
                        Probe {
                            sni: Some(exact_name(i)),
                            expected: i,
                        }
                    }
                    Scenario::Wildcard => {
                        let j = spread % wildcard_count(n);
                        Probe {
                            sni: Some(format!("mx{k}.{}", wildcard_base(j))),
                            expected: 10 * j,
                        }
                    }
                    Scenario::Miss => Probe {
                        sni: Some(format!("host{k}.nowhere{k}.example")),
                        expected: 0,
                    },
                    Scenario::NoSni => Probe {
                        sni: None,
                        expected: 0,
                    },
                }
            })
            .collect()
    }
}

/// Formats nanoseconds with a unit that keeps three significant digits.
pub fn format_ns(ns: f64) -> String {
    if ns < 1e3 {
        format!("{ns:.1} ns")
    } else if ns < 1e6 {
        format!("{:.2} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.3} s", ns / 1e9)
    }
}

/// Where criterion writes its results, found the way criterion finds it:
/// `$CRITERION_HOME`, else `$CARGO_TARGET_DIR/criterion`, else the target
/// directory `cargo metadata` reports, else `target/criterion`.
pub fn criterion_home() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(target).join("criterion");
    }
    let from_metadata = std::env::var_os("CARGO").and_then(|cargo| {
        let out = std::process::Command::new(cargo)
            .args(["metadata", "--format-version", "1", "--no-deps"])
            .output()
            .ok()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        Some(PathBuf::from(v.get("target_directory")?.as_str()?))
    });
    from_metadata.map_or_else(
        || PathBuf::from("target/criterion"),
        |t| t.join("criterion"),
    )
}

/// A criterion estimate of one benchmark, nanoseconds per iteration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    /// Median.
    pub median: f64,
    /// Lower bound of the median's 95 % confidence interval.
    pub median_low: f64,
    /// Upper bound of the median's 95 % confidence interval.
    pub median_high: f64,
}

/// Reads `<home>/<group>/<function>/<parameter>/new/estimates.json`, refusing
/// a file older than `since` (a result of an earlier run must never be paired
/// with one of this run).
pub fn read_estimate(
    home: &Path,
    group: &str,
    function: &str,
    parameter: &str,
    since: SystemTime,
) -> Result<Estimate, String> {
    let path = home
        .join(group)
        .join(function)
        .join(parameter)
        .join("new/estimates.json");
    let modified = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if modified < since {
        return Err(format!("{}: not measured in this run", path.display()));
    }
    let text = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let median = &v["median"];
    let num = |x: &serde_json::Value| {
        x.as_f64()
            .ok_or_else(|| format!("{}: no median estimate", path.display()))
    };
    Ok(Estimate {
        median: num(&median["point_estimate"])?,
        median_low: num(&median["confidence_interval"]["lower_bound"])?,
        median_high: num(&median["confidence_interval"]["upper_bound"])?,
    })
}

/// The machine and its load, for the line every bench prints under its
/// table: CPU model, cores, and the load averages now.
pub fn machine_line() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or("unknown CPU", str::trim)
        .to_owned();
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    format!(
        "machine: {model}, {cores} cores; load average {}",
        load.join(" ")
    )
}

/// Whether this process is a real criterion measurement run (`cargo bench`),
/// not `cargo test --benches` or `--list`, in which criterion runs each
/// benchmark once or not at all and writes no estimates.
pub fn is_measurement_run() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|a| a == "--bench")
        && !args
            .iter()
            .any(|a| a == "--test" || a == "--list" || a == "--profile-time")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::server::ResolvesServerCert;

    #[test]
    fn fixtures_resolve_as_described() {
        let pki = TestPki::new();
        let certs = pki.prepared_set(30);
        let mailtls = mailtls_resolver(&certs);
        let peer = rustls_peer(&certs);
        let hellos = HelloFactory::new(&pki);
        for scenario in Scenario::ALL {
            for probe in scenario.probes(30, 8) {
                let a = hellos.accepted(probe.sni.as_deref());
                let got = mailtls.resolve(a.client_hello()).unwrap();
                assert!(
                    Arc::ptr_eq(&got, &certs[probe.expected].certified),
                    "{scenario:?} {probe:?}"
                );
                let peer_got = peer.resolve(a.client_hello());
                assert_eq!(peer_got.is_some(), scenario == Scenario::Exact);
            }
        }
        let stats = mailtls.stats();
        assert_eq!(
            (
                stats.exact_hits,
                stats.wildcard_hits,
                stats.default_no_match,
                stats.default_no_sni
            ),
            (8, 8, 8, 8)
        );
    }

    #[test]
    fn pairs_load_from_disk() {
        let pki = TestPki::new();
        let dir = pki.temp_dir_with_pairs(12);
        let resolver = SniResolver::new(ResolverOptions::default());
        let report = resolver.reload_from_dir(dir.path()).unwrap();
        assert_eq!(report.certificates, 12);
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    }
}
