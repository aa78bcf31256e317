//! The mailtls reference server: SMTP, submission, IMAP, POP3 and a status
//! page over HTTP/HTTPS, all TLS through one SNI resolver.
//!
//! `mailtls-server [--config FILE] [--data-dir DIR]`; without `--config` it
//! runs on the embedded defaults. `mailtls-server dns-records [--config FILE]
//! [--ttl SECONDS]` prints the MTA-STS and TLS-RPT records to publish.

use std::path::PathBuf;
use std::process::ExitCode;

use mailtls_examples::{Config, Server};
use tracing_subscriber::EnvFilter;

const USAGE: &str = "\
usage: mailtls-server [--config FILE] [--data-dir DIR]
       mailtls-server dns-records [--config FILE] [--ttl SECONDS]

  --config FILE     TOML configuration (default: embedded defaults)
  --data-dir DIR    data directory (overrides server.data_dir)
  --print-config    print the embedded default configuration and exit
  --ttl SECONDS     TTL of the printed records (dns-records; default 3600)
  -h, --help        this help

dns-records prints, as a zone-file fragment, the _mta-sts and _smtp._tls
TXT records for the domains in [mta_sts] and exits.

Logging follows RUST_LOG (default: info).";

struct Args {
    config: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    /// `Some(ttl)`: the `dns-records` subcommand.
    dns_records: Option<u32>,
}

enum Parsed {
    Run(Args),
    Exit(ExitCode),
}

fn parse_args() -> Result<Parsed, String> {
    let mut args = Args {
        config: None,
        data_dir: None,
        dns_records: None,
    };
    let mut ttl: Option<u32> = None;
    let mut it = std::env::args_os().skip(1);
    while let Some(arg) = it.next() {
        let arg = arg.to_string_lossy().into_owned();
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| -> Result<PathBuf, String> {
            match &inline {
                Some(v) => Ok(PathBuf::from(v)),
                None => it
                    .next()
                    .map(PathBuf::from)
                    .ok_or_else(|| format!("{name} needs a value")),
            }
        };
        match flag.as_str() {
            "--config" | "-c" => args.config = Some(value("--config")?),
            "--data-dir" | "-d" => args.data_dir = Some(value("--data-dir")?),
            "--ttl" => {
                let v = value("--ttl")?;
                let t = v
                    .to_str()
                    .and_then(|t| t.parse::<u32>().ok())
                    .ok_or_else(|| format!("--ttl: {v:?} is not a number of seconds"))?;
                ttl = Some(t);
            }
            "dns-records" if args.dns_records.is_none() => {
                args.dns_records = Some(mailtls_examples::mta_sts_publish::DEFAULT_TTL);
            }
            "--print-config" => {
                print!("{}", mailtls_examples::config::DEFAULT_CONFIG_TOML);
                return Ok(Parsed::Exit(ExitCode::SUCCESS));
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(Parsed::Exit(ExitCode::SUCCESS));
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    match (ttl, &mut args.dns_records) {
        (Some(t), Some(slot)) => *slot = t,
        (Some(_), None) => return Err("--ttl is only for dns-records".into()),
        (None, _) => {}
    }
    Ok(Parsed::Run(args))
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::embedded()?,
    };
    if let Some(dir) = args.data_dir {
        config.server.data_dir = dir;
    }
    let server = Server::start(config).await?;
    let report = server.certs_report();
    if report.ca_created {
        println!("made a test CA in {}", server.config().ca_dir().display());
    }
    for f in &report.written {
        println!("made test certificate {}", f.display());
    }
    println!("mailtls-server for {}", server.config().server.hostname);
    for l in server.listeners() {
        println!("  {:<12} {:<22} {}", l.name, l.addr.to_string(), l.mode);
    }
    let handle = server.shutdown_handle();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        handle.shutdown();
    });
    server.wait().await;
    tracing::info!("stopped");
    Ok(())
}

/// `dns-records`: loads the configuration (so errors name their key) and
/// prints the records; no server is started.
fn print_dns_records(args: &Args, ttl: u32) -> ExitCode {
    let config = match &args.config {
        Some(path) => Config::load(path),
        None => Config::embedded(),
    };
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mailtls-server: {e}");
            return ExitCode::FAILURE;
        }
    };
    let text = mailtls_examples::mta_sts_publish::dns_records(&config, ttl);
    if text.is_empty() {
        eprintln!("mailtls-server: no domains in mta_sts.domains: nothing to publish");
        return ExitCode::FAILURE;
    }
    print!("{text}");
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Parsed::Run(a)) => a,
        Ok(Parsed::Exit(code)) => return code,
        Err(e) => {
            eprintln!("mailtls-server: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if let Some(ttl) = args.dns_records {
        return print_dns_records(&args, ttl);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mailtls-server: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mailtls-server: {e}");
            ExitCode::FAILURE
        }
    }
}
