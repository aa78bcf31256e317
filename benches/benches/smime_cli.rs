//! The `mailtls-smime` command-line tool beside `openssl cms` on the same
//! input file, in the same run: sign (detached; OpenSSL with `-stream`),
//! verify, encrypt (AES-256-CBC to an RSA-2048 recipient; OpenSSL with
//! `-stream`) and decrypt, each a whole process start to exit, as a user
//! runs them. Both write their output to a file.
//!
//! The tool is the release binary next to this bench's target directory
//! (`cargo build --release -p mailtls-examples --bin mailtls-smime` first),
//! or the one `MAILTLS_SMIME_BIN` names. The message is
//! `MAILTLS_SMIME_CLI_MIB` MiB of 7-bit text (default 20: the machine is
//! shared; the 200 MB memory bound is checked by the examples test
//! `two_hundred_megabytes_stream_in_bounded_memory`).
//!
//! After the groups it prints the tool/OpenSSL ratio per step from
//! criterion's estimates of this run, with the machine (CPU model, cores)
//! and the load average before and after: on a loaded machine both sides
//! slow down, the ratio less so.
//!
//! Each run is a whole process, so fixed costs count: a tool run that
//! draws random numbers (sign: RSA blinding or the ECDSA nonce; encrypt:
//! the content key; decrypt: RSA blinding) first pays aws-lc's seeding of
//! its random generator (its CPU-jitter entropy source: about 40-50 ms on
//! the 2-core test machine, the one long gap `strace -r` shows; a tiny
//! message takes 50-65 ms against OpenSSL's 12-17 ms); verify draws none.
//! On small messages that gap is most of the sign ratio; at 200 MiB it is
//! a few percent.

// Bench setup: a failed fixture aborts the run, which is what it should do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use criterion::{BenchmarkId, Criterion, Throughput};
use mailtls_benches::{criterion_home, format_ns, is_measurement_run, read_estimate};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_RSA_SHA256, SanType,
};

const GROUP: &str = "smime_cli";
const STEPS: [&str; 4] = ["sign", "verify", "encrypt", "decrypt"];

/// The release tool: `MAILTLS_SMIME_BIN`, else `mailtls-smime` in the
/// directory above this bench executable (`target/release/deps/..`).
fn tool_path() -> PathBuf {
    if let Some(p) = std::env::var_os("MAILTLS_SMIME_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("mailtls-smime"))
        .unwrap();
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --release -p mailtls-examples --bin mailtls-smime` \
         first (or set MAILTLS_SMIME_BIN)",
        path.display()
    );
    path
}

/// A CA and an RSA-2048 S/MIME user (bob@example.net), PEM files in `dir`.
fn pki(dir: &Path) {
    let ca_key = KeyPair::generate_for(&PKCS_RSA_SHA256).unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name.push(DnType::CommonName, "Bench CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate_for(&PKCS_RSA_SHA256).unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "bob@example.net");
    params.subject_alt_names = vec![SanType::Rfc822Name("bob@example.net".try_into().unwrap())];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::EmailProtection];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let cert = params.signed_by(&key, &issuer).unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("bob.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("bob.key"), key.serialize_pem()).unwrap();
}

/// `mib` MiB of 7-bit text lines from bob, written as it is made.
fn message(path: &Path, mib: u64) {
    let mut w = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    w.write_all(
        b"From: bob@example.net\r\nTo: alice@example.org\r\nSubject: bench\r\n\
          Content-Type: text/plain; charset=us-ascii\r\n\r\n",
    )
    .unwrap();
    let line = format!("{}\r\n", "0123456789abcdefghijklmnopqrstuvwxyz".repeat(2));
    for _ in 0..(mib * 1024 * 1024 / line.len() as u64) {
        w.write_all(line.as_bytes()).unwrap();
    }
    w.flush().unwrap();
}

/// Runs a command in `dir` and insists that it succeeded.
fn run(dir: &Path, program: &Path, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{} {args:?}: {}{}",
        program.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Each step's arguments for the tool and for `openssl`.
fn commands(step: &str) -> (Vec<&'static str>, Vec<&'static str>) {
    match step {
        "sign" => (
            vec![
                "sign",
                "--cert",
                "bob.pem",
                "--key",
                "bob.key",
                "--in",
                "msg.eml",
                "--out",
                "t-signed.eml",
            ],
            vec![
                "cms",
                "-sign",
                "-stream",
                "-signer",
                "bob.pem",
                "-inkey",
                "bob.key",
                "-in",
                "msg.eml",
                "-out",
                "o-signed.eml",
            ],
        ),
        "verify" => (
            // Both read the same message (OpenSSL's signature, made in main).
            vec![
                "verify",
                "--ca",
                "ca.pem",
                "--in",
                "in-signed.eml",
                "--out",
                "t-verified.eml",
            ],
            vec![
                "cms",
                "-verify",
                "-CAfile",
                "ca.pem",
                "-in",
                "in-signed.eml",
                "-out",
                "o-verified.eml",
            ],
        ),
        "encrypt" => (
            vec![
                "encrypt",
                "--recip",
                "bob.pem",
                "--in",
                "msg.eml",
                "--out",
                "t-enc.eml",
            ],
            vec![
                "cms",
                "-encrypt",
                "-aes256",
                "-stream",
                "-recip",
                "bob.pem",
                "-in",
                "msg.eml",
                "-out",
                "o-enc.eml",
            ],
        ),
        "decrypt" => (
            // Both read the same message (OpenSSL's encryption, made in main).
            vec![
                "decrypt",
                "--cert",
                "bob.pem",
                "--key",
                "bob.key",
                "--in",
                "in-enc.eml",
                "--out",
                "t-dec.eml",
            ],
            vec![
                "cms",
                "-decrypt",
                "-recip",
                "bob.pem",
                "-inkey",
                "bob.key",
                "-in",
                "in-enc.eml",
                "-out",
                "o-dec.eml",
            ],
        ),
        other => panic!("unknown step {other}"),
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cpu}, {cores} cores")
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn main() {
    let since = SystemTime::now() - Duration::from_secs(1);
    let load_before = load();
    let mib: u64 = std::env::var("MAILTLS_SMIME_CLI_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let tool = tool_path();
    let openssl = PathBuf::from("openssl");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    pki(d);
    message(&d.join("msg.eml"), mib);
    let bytes = std::fs::metadata(d.join("msg.eml")).unwrap().len();
    // The inputs of verify and decrypt, made once by OpenSSL (the
    // measured sign and encrypt runs overwrite their own outputs): the
    // signed message gets its From back (OpenSSL signs the whole file and
    // writes the MIME entity only), for the tool's address check.
    for step in ["sign", "encrypt"] {
        run(d, &openssl, &commands(step).1);
    }
    let mut signed = b"From: bob@example.net\r\n".to_vec();
    signed.extend_from_slice(&std::fs::read(d.join("o-signed.eml")).unwrap());
    std::fs::write(d.join("in-signed.eml"), signed).unwrap();
    std::fs::copy(d.join("o-enc.eml"), d.join("in-enc.eml")).unwrap();
    // Every command works once on both sides before anything is measured.
    for step in STEPS {
        let (ours, theirs) = commands(step);
        run(d, &openssl, &theirs);
        run(d, &tool, &ours);
    }

    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .configure_from_args();
    let mut g = c.benchmark_group(GROUP);
    g.throughput(Throughput::Bytes(bytes));
    for step in STEPS {
        let (ours, theirs) = commands(step);
        g.bench_function(BenchmarkId::new(step, "mailtls-smime"), |b| {
            b.iter(|| run(d, &tool, &ours));
        });
        g.bench_function(BenchmarkId::new(step, "openssl-cms"), |b| {
            b.iter(|| run(d, &openssl, &theirs));
        });
    }
    g.finish();
    c.final_summary();

    if !is_measurement_run() {
        return;
    }
    let home = criterion_home();
    println!();
    println!("## mailtls-smime tool beside openssl cms, {mib} MiB message, same run");
    println!();
    println!("machine: {}", machine());
    println!("load average before: {load_before}; after: {}", load());
    println!();
    println!("| step | mailtls-smime | openssl cms | ratio (ours/openssl) |");
    println!("| --- | --- | --- | --- |");
    for step in STEPS {
        let ours = read_estimate(&home, GROUP, step, "mailtls-smime", since);
        let theirs = read_estimate(&home, GROUP, step, "openssl-cms", since);
        match (ours, theirs) {
            (Ok(o), Ok(t)) => println!(
                "| {step} | {} | {} | {:.2} |",
                format_ns(o.median),
                format_ns(t.median),
                o.median / t.median
            ),
            (o, t) => println!("| {step} | {o:?} | {t:?} | - |"),
        }
    }
}
