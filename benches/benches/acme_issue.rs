//! 50 certificates issued by `mailtls-acme` against Debian's Pebble with
//! `PEBBLE_WFE_NONCEREJECT=50` (half of all nonces rejected as `badNonce`),
//! one after another from one account, two names each over http-01 served
//! by the crate's own `Http01Server`, each order journaled in a
//! `FileStorage`. Targets: 50 of 50 succeed, and the client's own CPU time
//! (`CLOCK_PROCESS_CPUTIME_ID` of this process, the same user + system
//! sum as getrusage `RUSAGE_SELF`, the http-01 server included) is under
//! 5% of the wall time. Pebble is a separate process; its CPU time is shown
//! beside for context, not subtracted. `PEBBLE_VA_NOSLEEP=1` takes out
//! Pebble's random 0-5 s validation delay, so the wall time is short and the
//! target is harder to meet than against a real CA.
//!
//! A `harness = false` binary rather than criterion: what is measured is a
//! ratio of two clocks over one long run, not a per-iteration time.
//! Under `cargo test --benches` it issues 3 certificates and checks only
//! that they succeed.

// Bench setup: a failed fixture aborts the run, which is what it should do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mailtls_acme::solver::{Http01Responder, Http01Server};
use mailtls_acme::{
    AcmeClient, CertificateRequest, ChallengeSolver, ClientConfig, FileStorage, NewAccountOptions,
    PollPolicy, SigningAlgorithm,
};
use mailtls_benches::is_measurement_run;
use mailtls_testpeers::{Pebble, PebbleOptions};

const CERTIFICATES: usize = 50;
const NONCE_REJECT_PERCENT: u8 = 50;
const CPU_SHARE_TARGET: f64 = 0.05;

/// Pebble's CPU time so far (utime + stime from /proc/PID/stat).
fn pebble_cpu_time(pebble: &Pebble) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pebble.pid())).ok()?;
    // Fields after the parenthesised command name; utime and stime are
    // fields 14 and 15, i.e. 12 and 13 after the ")".
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let hz = Some(rustix::param::clock_ticks_per_second()).filter(|h| *h > 0)?;
    Some(Duration::from_micros(ticks * 1_000_000 / hz))
}

/// This process's user + system CPU time, all threads: the same sum as
/// getrusage(RUSAGE_SELF) `ru_utime + ru_stime`, at nanosecond resolution.
fn self_cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn main() -> ExitCode {
    let measuring = is_measurement_run();
    let count = if measuring { CERTIFICATES } else { 3 };
    let pebble = Pebble::start(PebbleOptions::nonce_reject(NONCE_REJECT_PERCENT));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let data = tempfile::tempdir().unwrap();

    rt.block_on(async {
        let mut config = ClientConfig::new(&pebble.directory_url)
            .with_root(pebble.root.clone())
            .only_extra_roots();
        // At 50% rejection, 10 retries fail one request in ~2000 and a run
        // makes ~1,000 requests; 20 retries: one in ~2 million.
        config.max_bad_nonce_retries = 20;
        let storage = FileStorage::new(data.path().join("acme")).unwrap();

        let wall0 = Instant::now();
        let cpu0 = self_cpu_time();
        let client = AcmeClient::new(config).await.unwrap();
        let account = client
            .load_or_create_account(
                &storage,
                SigningAlgorithm::Es256,
                &NewAccountOptions::with_email("postmaster@example.com"),
            )
            .await
            .unwrap();
        let responder = Http01Responder::new();
        let _server = Http01Server::bind(
            SocketAddr::from(([127, 0, 0, 1], pebble.http_port)),
            responder.clone(),
        )
        .await
        .unwrap();
        let solvers: Vec<Arc<dyn ChallengeSolver>> = vec![Arc::new(responder)];
        let setup_wall = wall0.elapsed();
        let setup_cpu = self_cpu_time() - cpu0;

        let pebble_cpu0 = pebble_cpu_time(&pebble);
        let wall1 = Instant::now();
        let cpu1 = self_cpu_time();
        let mut per_cert = Vec::with_capacity(count);
        let mut failures = Vec::new();
        for i in 0..count {
            let request =
                CertificateRequest::new([format!("mail{i}.example.com"), format!("imap{i}.example.com")]);
            let t = Instant::now();
            match account
                .issue(&request, &solvers, Some(&storage), PollPolicy::default())
                .await
            {
                Ok(cert) => {
                    assert_eq!(cert.chain_der().unwrap().len(), 2, "leaf + intermediate");
                    per_cert.push(t.elapsed());
                }
                Err(e) => failures.push(format!("certificate {i}: {e}")),
            }
        }
        let wall = wall1.elapsed();
        let cpu = self_cpu_time() - cpu1;
        let pebble_cpu = match (pebble_cpu0, pebble_cpu_time(&pebble)) {
            (Some(a), Some(b)) => Some(b - a),
            _ => None,
        };
        per_cert.sort();
        let pct = |p: usize| per_cert.get((per_cert.len() * p / 100).min(per_cert.len().saturating_sub(1)));
        let share = cpu.as_secs_f64() / wall.as_secs_f64();

        println!("\nmailtls-acme: {count} certificates (2 names each, http-01, ECDSA P-256) against Pebble, PEBBLE_WFE_NONCEREJECT={NONCE_REJECT_PERCENT}");
        println!("| measure | value |");
        println!("|---|---|");
        println!("| issued | {} of {count} |", per_cert.len());
        println!("| wall time, all issuances | {} |", ms(wall));
        if let (Some(p50), Some(p90), Some(max)) = (pct(50), pct(90), per_cert.last()) {
            println!("| per certificate: median / p90 / max | {} / {} / {} |", ms(*p50), ms(*p90), ms(*max));
        }
        println!("| client CPU (user + system, whole process) | {} |", ms(cpu));
        println!("| client CPU / wall | {:.2}% (target < {:.0}%) |", share * 100.0, CPU_SHARE_TARGET * 100.0);
        println!("| client CPU per certificate | {} |", ms(cpu / u32::try_from(count).unwrap_or(1)));
        if let Some(p) = pebble_cpu {
            println!("| Pebble CPU over the same run (context) | {} |", ms(p));
        }
        println!("| setup: directory + account + listener (not in the above) | {} wall, {} CPU |", ms(setup_wall), ms(setup_cpu));
        for f in &failures {
            println!("FAILED {f}");
        }
        let ok = failures.is_empty() && (!measuring || share < CPU_SHARE_TARGET);
        if !measuring {
            println!("(smoke run: not a measurement; `cargo bench` checks the CPU share)");
        }
        println!("{}", if ok { "targets met" } else { "TARGETS MISSED" });
        if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
    })
}
