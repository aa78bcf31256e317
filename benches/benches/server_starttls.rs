//! Inbound STARTTLS handshakes on the reference server's SMTP listener with
//! the SNI resolver holding 10,000 certificates, beside Postfix's smtpd on
//! the same machine in the same run (issue 7, "Numbers", inbound).
//!
//! Servers, all on loopback:
//! - `mailtls` at 10,000 certificates: `mailtls_examples::Server` started
//!   in-process (its own 2-worker tokio runtime) on a certificate directory
//!   of 10,000 ECDSA P-256 leaf/key pairs made at bench time by
//!   [`TestPki`] (one CA, one shared leaf key, so making them takes about
//!   a second; nothing is cached or committed);
//! - `mailtls` at 1 certificate: the same server on a one-certificate
//!   directory, so the cost of the 10,000 shows up as the difference;
//! - `postfix`: Debian Postfix's `master -d` (started by mailtls-testpeers,
//!   stopped gracefully) with its own `config_directory`
//!   and `queue_directory` in a temporary directory, smtpd on a free
//!   loopback port with `smtpd_tls_security_level = may` and that same one
//!   certificate (`smtpd_tls_cert_file`/`key_file`). `smtpd_peername_lookup
//!   = no`: the reverse DNS lookup of the client is resolver work, not TLS
//!   work, and mailtls does none. Otherwise Postfix's defaults (process
//!   reuse `max_use = 100`, its logging through postlogd).
//!
//! One session, as a sending MTA runs it: connect, read the banner, `EHLO`,
//! `STARTTLS`, a full TLS handshake (the client verifies the chain and the
//! name against the bench CA), `QUIT` over TLS and its `221`. The client
//! (tokio + tokio-rustls, its own 2-worker runtime) turns session resumption
//! off, so every handshake is a full one, and offers X25519 only, so both
//! servers negotiate the same key exchange (rustls would otherwise pick the
//! post-quantum hybrid that Postfix 3.7 / OpenSSL 3.0 lacks, and the ratio
//! would measure that). The table shows the suite and group each server
//! negotiated. SNI names for the 10,000-certificate server are spread
//! over the whole set (stride 7919); the one-certificate servers always get
//! their one name. A session only succeeds when the certificate the server
//! picked is valid for the SNI sent, so the resolver is checked on every
//! handshake.
//!
//! Measured: criterion's `server_starttls_session` group, one session at a
//! time (latency; parameter = certificates held), then, from the same run,
//! [`CONCURRENCY`] sessions at a time: after [`FIRST_WARMUP`] of load on
//! each server, [`ROUNDS`] counted rounds of [`ROUND_RUN`] per server, the
//! servers taking turns in a rotating order (handshakes per second, latency
//! under load, and CPU time per handshake: the server runtime's threads for
//! mailtls, Postfix's master and all its children from /proc). Then a table
//! with the mailtls/Postfix ratios. Client and servers share the machine's
//! cores, as they would on one test box; the client's cost is the same for
//! every server, and server CPU per handshake is the number least moved by
//! other work on the machine. Under `cargo test --benches` it makes 100
//! certificates, runs a few sessions against each server and checks that
//! they succeed. About 80 s on 2 cores.

// Bench setup: a failed fixture aborts the run, which is what it should do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use criterion::{BenchmarkId, Criterion, SamplingMode};
use mailtls_benches::{
    TestPki, criterion_home, exact_name, format_ns, is_measurement_run, read_estimate,
};
use mailtls_core::DnsName;
use mailtls_examples::{Config, MailListener, RunningServer, Server};
use mailtls_sni::ResolverStats;
use mailtls_testpeers::Postfix;
use rustls::client::Resumption;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Certificates the measured mailtls server holds.
const CERTS: usize = 10_000;
/// Certificates in `cargo test --benches` (a smoke run).
const SMOKE_CERTS: usize = 100;
/// Sessions in flight at once in the throughput runs.
const CONCURRENCY: usize = 16;
/// Load on each server before its first counted round (Postfix forks its
/// smtpd processes, both warm their caches).
const FIRST_WARMUP: Duration = Duration::from_secs(2);
/// Counted rounds per server. The servers take turns, in a rotating order,
/// so a burst of other work on the machine hits all of them alike.
const ROUNDS: usize = 4;
/// Load before each round is counted (the pipeline fills again).
const ROUND_WARMUP: Duration = Duration::from_millis(500);
/// How long each round is counted.
const ROUND_RUN: Duration = Duration::from_secs(2);
/// Every network step of a session is bounded by this.
const IO_TIMEOUT: Duration = Duration::from_secs(15);
/// The criterion group.
const GROUP: &str = "server_starttls_session";

/// One server under test.
struct Target {
    /// Criterion function name and table label.
    function: &'static str,
    /// Certificates it holds (the criterion parameter).
    certs: usize,
    addr: SocketAddr,
    /// SNI names the client cycles through.
    names: Arc<Vec<ServerName<'static>>>,
    /// Where its CPU time is read.
    cpu: CpuSource,
}

/// Where a server's CPU time (user + system) is read from /proc.
#[derive(Debug, Clone)]
enum CpuSource {
    /// Threads of this process whose name is this (a runtime's workers
    /// and blocking pool).
    Threads(String),
    /// A process and its children, living and reaped (Postfix's master:
    /// smtpd, postlogd, anvil, tlsmgr...).
    Tree(u32),
}

impl CpuSource {
    fn read(&self) -> Option<Duration> {
        match self {
            CpuSource::Threads(name) => threads_cpu(name),
            CpuSource::Tree(pid) => tree_cpu(*pid),
        }
    }
}

/// The fields of a /proc `stat` file after the command name: index 0 is
/// field 3 (state) of proc(5), so field N is at N - 3.
fn stat_fields(path: &Path) -> Option<Vec<u64>> {
    let stat = std::fs::read_to_string(path).ok()?;
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    // The state letter is not a number; keep positions with a placeholder.
    Some(
        rest.split(' ')
            .map(|f| f.trim().parse().unwrap_or(u64::MAX))
            .collect(),
    )
}

fn ticks(t: u64) -> Duration {
    let hz = rustix::param::clock_ticks_per_second().max(1);
    Duration::from_micros(t.saturating_mul(1_000_000) / hz)
}

/// utime + stime (fields 14, 15) of this process's threads named `name`.
fn threads_cpu(name: &str) -> Option<Duration> {
    let mut total = 0u64;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let dir = task.ok()?.path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim_end() != name {
            continue;
        }
        if let Some(f) = stat_fields(&dir.join("stat")) {
            total += f.get(11)? + f.get(12)?;
        }
    }
    Some(ticks(total))
}

/// utime + stime + cutime + cstime (fields 14-17) of `pid`, plus utime +
/// stime of its living children (ppid, field 4). A child that exits in
/// between moves from the second sum into the first, so differences of
/// two readings count every child once.
fn tree_cpu(pid: u32) -> Option<Duration> {
    let own = stat_fields(Path::new(&format!("/proc/{pid}/stat")))?;
    let mut total: u64 = own.get(11..15)?.iter().sum();
    for entry in std::fs::read_dir("/proc").ok()? {
        let Ok(entry) = entry else { continue };
        if !entry
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            continue;
        }
        if let Some(f) = stat_fields(&entry.path().join("stat"))
            && f.get(1) == Some(&u64::from(pid))
        {
            total += f.get(11).unwrap_or(&0) + f.get(12).unwrap_or(&0);
        }
    }
    Some(ticks(total))
}

impl Target {
    fn label(&self) -> String {
        format!(
            "{} ({} cert{})",
            self.function,
            self.certs,
            if self.certs == 1 { "" } else { "s" }
        )
    }

    fn name(&self, k: usize) -> ServerName<'static> {
        pick(&self.names, k)
    }
}

/// The `k`-th name of a session sequence, spread over the set (stride
/// 7919, a prime) so successive sessions touch different index entries.
fn pick(names: &[ServerName<'static>], k: usize) -> ServerName<'static> {
    names[(k.wrapping_mul(7919) + 13) % names.len()].clone()
}

/// A reference server on its own runtime and temporary data directory.
struct OurServer {
    server: Option<RunningServer>,
    runtime: tokio::runtime::Runtime,
    _data: tempfile::TempDir,
}

impl OurServer {
    /// Starts the SMTP listener only (STARTTLS, as in the embedded
    /// defaults) on a free port, serving the pairs in `cert_dir`, on a
    /// runtime whose threads are named `threads` (at most 15 bytes).
    fn start(cert_dir: &Path, threads: &str) -> OurServer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(threads)
            .enable_all()
            .build()
            .unwrap();
        let data = private_tempdir("mailtls-bench-server-");
        let mut config = Config::embedded().unwrap();
        config.server.data_dir = data.path().to_owned();
        config.use_ephemeral_ports();
        // Certificate 0 is the default one (no SNI or an unknown name).
        config.server.hostname = DnsName::parse(&exact_name(0)).unwrap();
        config.server.names = Vec::new();
        config.tls.cert_dir = Some(cert_dir.to_owned());
        config.tls.make_test_certificates = false;
        config.tls.rsa_certificate = false;
        // Nothing changes the directory during the run; 20,000 watched files
        // would only cost inotify setup.
        config.tls.watch = false;
        for which in MailListener::ALL {
            config.listener_mut(which).enabled = which == MailListener::Smtp;
        }
        config.web.enabled = false;
        let server = runtime
            .block_on(Server::start(config))
            .expect("the reference server starts");
        OurServer {
            server: Some(server),
            runtime,
            _data: data,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.server
            .as_ref()
            .and_then(|s| s.addrs().smtp)
            .expect("the SMTP listener is enabled")
    }

    fn stats(&self) -> ResolverStats {
        self.server
            .as_ref()
            .expect("the server runs until dropped")
            .resolver()
            .stats()
    }
}

impl Drop for OurServer {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            self.runtime.block_on(server.shutdown());
        }
    }
}

/// Postfix (mailtls-testpeers' starter: `master -d` from a temporary
/// configuration directory) with smtpd on a free loopback port offering
/// STARTTLS with `cert`/`key`; stopped gracefully on drop (SIGTERM to
/// master, which stops its children, then SIGKILL to the group), also when
/// the bench panics.
fn start_postfix(cert: &Path, key: &Path) -> Postfix {
    let addr = SocketAddr::from(([127, 0, 0, 1], mailtls_testpeers::free_port()));
    Postfix::builder(&exact_name(0))
        .listen(addr)
        .tls(
            &std::fs::read_to_string(cert).unwrap(),
            &std::fs::read_to_string(key).unwrap(),
        )
        // The bench's settings over the starter's test defaults: no reverse
        // lookup of the client (resolver work, not TLS work; mailtls does
        // none), no per-session TLS log line, and the log to master's
        // stdout (/dev/null) as a production log would go to a collector
        // rather than a file the bench keeps.
        .main_cf("smtpd_peername_lookup = no")
        .main_cf("smtpd_tls_loglevel = 0")
        .main_cf("smtpd_tls_received_header = no")
        .main_cf("maillog_file_prefixes = /dev/stdout")
        .main_cf("maillog_file = /dev/stdout")
        .stop_gracefully()
        .start()
}

fn private_tempdir(prefix: &str) -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt as _;
    tempfile::Builder::new()
        .prefix(prefix)
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
        .unwrap()
}

/// A client trusting only the bench CA, X25519 only, no resumption.
fn client_config(pki: &TestPki) -> Arc<rustls::ClientConfig> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.kx_groups = vec![rustls::crypto::aws_lc_rs::kx_group::X25519];
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca_der().clone()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.resumption = Resumption::disabled();
    Arc::new(config)
}

/// What one session negotiated.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Negotiated {
    version: String,
    suite: String,
    group: String,
}

/// Reads one SMTP reply (all its lines) and returns its code.
async fn reply<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut BufReader<S>,
    step: &str,
) -> Result<u16, String> {
    let mut line = String::new();
    loop {
        line.clear();
        let n = io
            .read_line(&mut line)
            .await
            .map_err(|e| format!("{step}: {e}"))?;
        if n == 0 {
            return Err(format!("{step}: connection closed"));
        }
        let code = line
            .get(..3)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("{step}: not an SMTP reply: {line:?}"))?;
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok(code);
        }
    }
}

async fn command<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut BufReader<S>,
    line: &str,
    want: u16,
) -> Result<(), String> {
    let w = io.get_mut();
    w.write_all(line.as_bytes())
        .await
        .map_err(|e| format!("{}: {e}", line.trim_end()))?;
    w.flush()
        .await
        .map_err(|e| format!("{}: {e}", line.trim_end()))?;
    let got = reply(io, line.trim_end()).await?;
    if got == want {
        Ok(())
    } else {
        Err(format!("{}: reply {got}, expected {want}", line.trim_end()))
    }
}

/// One session: banner, EHLO, STARTTLS, handshake for `sni`, QUIT.
async fn session_steps(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    sni: ServerName<'static>,
) -> Result<Negotiated, String> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let mut io = BufReader::new(tcp);
    let banner = reply(&mut io, "banner").await?;
    if banner != 220 {
        return Err(format!("banner: reply {banner}"));
    }
    command(&mut io, "EHLO bench.example\r\n", 250).await?;
    command(&mut io, "STARTTLS\r\n", 220).await?;
    if !io.buffer().is_empty() {
        return Err("data after the STARTTLS reply".to_owned());
    }
    let tls = TlsConnector::from(config)
        .connect(sni, io.into_inner())
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let conn = tls.get_ref().1;
    let negotiated = Negotiated {
        version: conn
            .protocol_version()
            .map_or_else(|| "?".to_owned(), |v| format!("{v:?}")),
        suite: conn
            .negotiated_cipher_suite()
            .map_or_else(|| "?".to_owned(), |s| format!("{:?}", s.suite())),
        group: conn
            .negotiated_key_exchange_group()
            .map_or_else(|| "?".to_owned(), |g| format!("{:?}", g.name())),
    };
    let mut io = BufReader::new(tls);
    command(&mut io, "QUIT\r\n", 221).await?;
    // close_notify, as a polite client ends; the server may already be gone.
    let _ = io.get_mut().shutdown().await;
    Ok(negotiated)
}

async fn session(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    sni: ServerName<'static>,
) -> Result<Negotiated, String> {
    tokio::time::timeout(IO_TIMEOUT, session_steps(addr, config, sni))
        .await
        .unwrap_or_else(|_| Err(format!("session timed out after {IO_TIMEOUT:?}")))
}

/// What one throughput run saw.
#[derive(Debug, Default)]
struct Throughput {
    ok: usize,
    failed: usize,
    first_failure: Option<String>,
    elapsed: Duration,
    /// Sorted latencies of the counted sessions.
    latencies: Vec<Duration>,
    /// The server's CPU time over the counted window.
    server_cpu: Option<Duration>,
    /// The client runtime's CPU time over the counted window.
    client_cpu: Option<Duration>,
    /// Handshakes per second of each round.
    round_rates: Vec<f64>,
}

impl Throughput {
    fn per_second(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, p: usize) -> Option<Duration> {
        let n = self.latencies.len();
        (n > 0).then(|| self.latencies[(n * p / 100).min(n - 1)])
    }

    /// CPU time per successful session.
    fn per_session(&self, cpu: Option<Duration>) -> Option<Duration> {
        let ok = u32::try_from(self.ok).ok().filter(|n| *n > 0)?;
        Some(cpu? / ok)
    }

    /// Adds a later round.
    fn merge(&mut self, round: Throughput) {
        self.ok += round.ok;
        self.failed += round.failed;
        if self.first_failure.is_none() {
            self.first_failure = round.first_failure;
        }
        self.elapsed += round.elapsed;
        self.latencies.extend(round.latencies);
        self.latencies.sort();
        let add = |a: Option<Duration>, b: Option<Duration>| Some(a? + b?);
        self.server_cpu = if self.round_rates.is_empty() {
            round.server_cpu
        } else {
            add(self.server_cpu, round.server_cpu)
        };
        self.client_cpu = if self.round_rates.is_empty() {
            round.client_cpu
        } else {
            add(self.client_cpu, round.client_cpu)
        };
        self.round_rates.extend(round.round_rates);
    }
}

/// Name of the client runtime's threads (at most 15 bytes: /proc's comm).
const CLIENT_THREADS: &str = "bench-client";

/// `CONCURRENCY` workers, each running sessions back to back; sessions
/// started before `warmup` ends are not counted, and none start after
/// `warmup + run`. The rate is counted sessions over the time from the end
/// of warm-up to the last counted session's end.
fn throughput(
    rt: &tokio::runtime::Runtime,
    target: &Target,
    config: &Arc<rustls::ClientConfig>,
    concurrency: usize,
    warmup: Duration,
    run: Duration,
) -> Throughput {
    rt.block_on(async {
        let next = Arc::new(AtomicUsize::new(0));
        let start = Instant::now();
        let counted_from = start + warmup;
        let stop = counted_from + run;
        let cpu = target.cpu.clone();
        let cpu_at_start = tokio::spawn(async move {
            tokio::time::sleep_until(counted_from.into()).await;
            (cpu.read(), threads_cpu(CLIENT_THREADS))
        });
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..concurrency {
            let next = Arc::clone(&next);
            let config = Arc::clone(config);
            let addr = target.addr;
            let names = Arc::clone(&target.names);
            workers.spawn(async move {
                let mut out = Throughput::default();
                let mut last_end = counted_from;
                loop {
                    let began = Instant::now();
                    if began >= stop {
                        break;
                    }
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    let result = session(addr, Arc::clone(&config), pick(&names, k)).await;
                    let ended = Instant::now();
                    if began < counted_from {
                        // Not counted, but a failure in warm-up is a failure.
                        if let Err(e) = result {
                            out.failed += 1;
                            out.first_failure.get_or_insert(e);
                        }
                        continue;
                    }
                    last_end = last_end.max(ended);
                    match result {
                        Ok(_) => {
                            out.ok += 1;
                            out.latencies.push(ended - began);
                        }
                        Err(e) => {
                            out.failed += 1;
                            out.first_failure.get_or_insert(e);
                        }
                    }
                }
                out.elapsed = last_end - counted_from;
                out
            });
        }
        let mut total = Throughput::default();
        while let Some(w) = workers.join_next().await {
            let w = w.expect("a throughput worker panicked");
            total.ok += w.ok;
            total.failed += w.failed;
            if total.first_failure.is_none() {
                total.first_failure = w.first_failure;
            }
            total.elapsed = total.elapsed.max(w.elapsed);
            total.latencies.extend(w.latencies);
        }
        let (server0, client0) = cpu_at_start.await.expect("the CPU reader ran");
        let sub = |a: Option<Duration>, b: Option<Duration>| Some(a?.saturating_sub(b?));
        total.server_cpu = sub(target.cpu.read(), server0);
        total.client_cpu = sub(threads_cpu(CLIENT_THREADS), client0);
        total.latencies.sort();
        total.round_rates.push(total.per_second());
        total
    })
}

fn ms(d: Option<Duration>) -> String {
    d.map_or_else(
        || "n/a".to_owned(),
        |d| format!("{:.2} ms", d.as_secs_f64() * 1e3),
    )
}

fn main() {
    // Estimates older than this are from another run and are never reported.
    let since = SystemTime::now() - Duration::from_secs(1);
    let measuring = is_measurement_run();
    let n = if measuring { CERTS } else { SMOKE_CERTS };

    let setup = Instant::now();
    let pki = TestPki::new();
    let many = pki.temp_dir_with_pairs(n);
    let one = pki.temp_dir_with_pairs(1);
    let made = setup.elapsed();
    let started = Instant::now();
    let ours_many = OurServer::start(many.path(), "server-many");
    let load_many = started.elapsed();
    assert_eq!(
        ours_many.stats().certificates,
        n,
        "every certificate loaded"
    );
    let ours_one = OurServer::start(one.path(), "server-one");
    let postfix = start_postfix(
        &one.path().join("c000000.crt"),
        &one.path().join("c000000.key"),
    );
    eprintln!(
        "fixtures: {n} certificates made and written in {made:.1?}; mailtls server loaded them in {load_many:.1?}; Postfix up"
    );

    let one_name = Arc::new(vec![ServerName::try_from(exact_name(0)).unwrap()]);
    let targets = [
        Target {
            function: "mailtls",
            certs: n,
            addr: ours_many.addr(),
            cpu: CpuSource::Threads("server-many".to_owned()),
            names: Arc::new(
                (0..n)
                    .map(|i| ServerName::try_from(exact_name(i)).unwrap())
                    .collect(),
            ),
        },
        Target {
            function: "mailtls",
            certs: 1,
            addr: ours_one.addr(),
            cpu: CpuSource::Threads("server-one".to_owned()),
            names: Arc::clone(&one_name),
        },
        Target {
            function: "postfix",
            certs: 1,
            addr: postfix.smtp_addr().expect("smtpd was asked to listen"),
            cpu: CpuSource::Tree(postfix.pid()),
            names: one_name,
        },
    ];

    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(CLIENT_THREADS)
        .enable_all()
        .build()
        .unwrap();
    let config = client_config(&pki);

    // Every server completes sessions, and what each negotiates is recorded.
    let negotiated: Vec<Negotiated> = targets
        .iter()
        .map(|t| {
            let mut first = None;
            for k in 0..8 {
                let got = client_rt
                    .block_on(session(t.addr, Arc::clone(&config), t.name(k)))
                    .unwrap_or_else(|e| panic!("{}: session {k} failed: {e}", t.label()));
                if let Some(f) = &first {
                    assert_eq!(
                        f,
                        &got,
                        "{}: negotiation changed between sessions",
                        t.label()
                    );
                }
                first.get_or_insert(got);
            }
            first.expect("eight sessions ran")
        })
        .collect();

    // No HTML plots: drawing them takes seconds per benchmark on this
    // machine, and the table below is the report.
    let mut c = Criterion::default().without_plots().configure_from_args();
    {
        let mut group = c.benchmark_group(GROUP);
        group
            .sampling_mode(SamplingMode::Flat)
            .sample_size(20)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(4));
        for t in &targets {
            group.bench_with_input(BenchmarkId::new(t.function, t.certs), t, |b, t| {
                let mut k = 0usize;
                b.iter(|| {
                    k += 1;
                    client_rt
                        .block_on(session(t.addr, Arc::clone(&config), t.name(k)))
                        .unwrap_or_else(|e| panic!("{}: {e}", t.label()))
                });
            });
        }
        group.finish();
    }
    c.final_summary();

    let (concurrency, first_warmup, rounds, round_warmup, round_run) = if measuring {
        (CONCURRENCY, FIRST_WARMUP, ROUNDS, ROUND_WARMUP, ROUND_RUN)
    } else {
        (
            4,
            Duration::from_millis(100),
            1,
            Duration::from_millis(50),
            Duration::from_millis(300),
        )
    };
    let mut runs: Vec<Throughput> = targets.iter().map(|_| Throughput::default()).collect();
    for (t, total) in targets.iter().zip(&mut runs) {
        let w = throughput(
            &client_rt,
            t,
            &config,
            concurrency,
            first_warmup,
            Duration::ZERO,
        );
        total.failed += w.failed;
        total.first_failure = w.first_failure;
    }
    for round in 0..rounds {
        for j in 0..targets.len() {
            let i = (round + j) % targets.len();
            let r = throughput(
                &client_rt,
                &targets[i],
                &config,
                concurrency,
                round_warmup,
                round_run,
            );
            eprintln!(
                "round {round} {}: {} sessions in {:.2?} ({:.0}/s), {} failed",
                targets[i].label(),
                r.ok,
                r.elapsed,
                r.per_second(),
                r.failed
            );
            runs[i].merge(r);
        }
    }

    let failures: Vec<String> = targets
        .iter()
        .zip(&runs)
        .filter(|(_, r)| r.failed > 0 || r.ok == 0)
        .map(|(t, r)| {
            format!(
                "{}: {} of {} sessions failed; first: {}",
                t.label(),
                r.failed,
                r.ok + r.failed,
                r.first_failure.as_deref().unwrap_or("none completed")
            )
        })
        .collect();

    // Every SNI sent to the big server is one of its exact names: a default
    // served there would mean a lookup went wrong (and the client's name
    // check would have failed the session).
    let stats = ours_many.stats();
    let sent = stats.exact_hits + stats.wildcard_hits + stats.misses();
    assert!(
        stats.exact_hits > 0 && stats.exact_hits == sent,
        "the {n}-certificate resolver answered {} exact of {sent} lookups: {stats:?}",
        stats.exact_hits
    );
    if measuring {
        report(&targets, &negotiated, &runs, since);
        println!(
            "resolver with {n} certificates over the whole run: {} lookups, all exact hits",
            stats.exact_hits
        );
    } else {
        println!("(smoke run: not a measurement; `cargo bench` prints the table)");
    }
    drop(client_rt);
    drop(postfix);
    drop(ours_one);
    drop(ours_many);
    assert!(
        failures.is_empty(),
        "failed sessions:\n{}",
        failures.join("\n")
    );
}

/// Prints this run's numbers and the mailtls/Postfix ratios.
fn report(targets: &[Target], negotiated: &[Negotiated], runs: &[Throughput], since: SystemTime) {
    let home = criterion_home();
    let latency: Vec<Option<f64>> = targets
        .iter()
        .map(|t| {
            read_estimate(&home, GROUP, t.function, &t.certs.to_string(), since)
                .map_err(|e| eprintln!("{e}"))
                .ok()
                .map(|e| e.median)
        })
        .collect();
    let postfix = targets
        .iter()
        .position(|t| t.function == "postfix")
        .expect("Postfix is a target");
    let x = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
        _ => "n/a".to_owned(),
    };
    let rate = |i: usize| Some(runs[i].per_second());
    let cpu_each = |i: usize| {
        runs[i]
            .per_session(runs[i].server_cpu)
            .map(|d| d.as_secs_f64())
    };
    let client_each = |i: usize| runs[i].per_session(runs[i].client_cpu);
    println!();
    println!(
        "## STARTTLS sessions (banner, EHLO, STARTTLS, full handshake, QUIT), this run (criterion data in {})",
        home.display()
    );
    println!();
    println!(
        "{CONCURRENCY} sessions at a time, {ROUNDS} rounds of {:.1} s per server taking turns; latency = criterion median, one session at a time; CPU = user + system of the server's threads (mailtls) or of master and all its children (Postfix) over the counted windows.",
        ROUND_RUN.as_secs_f64()
    );
    println!();
    println!(
        "| server | negotiated | handshakes/s | rounds min-max | p50 / p99 under load | server CPU per handshake | client CPU per handshake | latency, one at a time |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for (i, t) in targets.iter().enumerate() {
        let r = &runs[i];
        let neg = &negotiated[i];
        let (lo, hi) = r
            .round_rates
            .iter()
            .fold((f64::INFINITY, 0.0f64), |(lo, hi), x| {
                (lo.min(*x), hi.max(*x))
            });
        println!(
            "| {} | {} {} {} | {:.0} ({} in {:.1} s) | {lo:.0}-{hi:.0} | {} / {} | {} | {} | {} |",
            t.label(),
            neg.version,
            neg.suite,
            neg.group,
            r.per_second(),
            r.ok,
            r.elapsed.as_secs_f64(),
            ms(r.percentile(50)),
            ms(r.percentile(99)),
            ms(r.per_session(r.server_cpu)),
            ms(client_each(i)),
            latency[i].map_or_else(|| "n/a".to_owned(), format_ns),
        );
    }
    println!();
    println!(
        "| ours / Postfix | handshakes/s | server CPU per handshake | latency, one at a time |"
    );
    println!("|---|---:|---:|---:|");
    for (i, t) in targets.iter().enumerate().filter(|(i, _)| *i != postfix) {
        println!(
            "| {} | {} | {} | {} |",
            t.label(),
            x(rate(i), rate(postfix)),
            x(cpu_each(i), cpu_each(postfix)),
            x(latency[i], latency[postfix]),
        );
    }
    println!();
    println!(
        "ratio (ours/Postfix), handshakes per second at {CONCURRENCY} concurrent sessions with {} certificates in the SNI resolver: {}",
        targets[0].certs,
        x(rate(0), rate(postfix))
    );
    println!(
        "{} certificates vs 1 in mailtls: handshakes/s {}, server CPU per handshake {}",
        targets[0].certs,
        x(rate(0), rate(1)),
        x(cpu_each(0), cpu_each(1)),
    );
}
