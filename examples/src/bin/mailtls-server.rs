//! The mailtls reference server: SMTP, submission, IMAP, POP3 and a status
//! page over HTTP/HTTPS, all TLS through one SNI resolver.
//!
//! `mailtls-server [--config FILE] [--data-dir DIR]`; without `--config` it
//! runs on the embedded defaults. `mailtls-server dns-records [--config FILE]
//! [--ttl SECONDS]` prints the MTA-STS and TLS-RPT records (and the report
//! mails' DKIM key record) to publish;
//! `mailtls-server smime [--config FILE] [--data-dir DIR]` lists the S/MIME
//! gateway's own keys, partner certificates and pending approvals;
//! `smime partners add|list|disable|enable|delete` and `smime approvals
//! list|approve|reject` administer the partner store of the running server
//! (or, with none running, its files).
//!
//! SIGHUP reloads certificates and policy settings from the same
//! configuration file (see [`mailtls_examples::RunningServer::reload`]).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mailtls_examples::smime_path::admin::AdminRequest;
use mailtls_examples::{Config, RunningServer, Server};
use tracing_subscriber::EnvFilter;

/// What `--help` says after the options.
const AFTER_HELP: &str = "\
dns-records prints, as a zone-file fragment, the _mta-sts and _smtp._tls
TXT records for the domains in [mta_sts] and, with [tlsrpt_reports] on,
the DKIM key record of the report mails (making the key if needed), and
exits.

smime lists the S/MIME gateway's own keys, partner certificates (with
expiry and source) and harvested certificates waiting for approval, read
from the gateway directory (smime.data_dir, default DATA_DIR/smime), and
exits; no server is started. smime partners add|list|disable|enable|delete
and smime approvals list|approve|reject change the partner store: through
the running server's admin socket (DIR/admin.sock, the server user's only)
when one answers, so the change applies to the next message, else in the
directory's files for the next start.

SIGHUP re-reads the configuration: the certificate directory and the
[mta_sts], [tls_rpt] and [smime] settings take effect at once (the
S/MIME key and partner stores are re-read from disk); keys that need a
restart (ports, bind, data_dir...) are named in the log. A configuration
that does not validate changes nothing.

Logging follows RUST_LOG (default: info).";

/// The mailtls reference server: SMTP, submission, IMAP, POP3 and a status
/// page over HTTP/HTTPS, all TLS through one SNI resolver.
#[derive(Parser)]
#[command(
    name = "mailtls-server",
    version,
    args_override_self = true,
    override_usage = "\
mailtls-server [--config FILE] [--data-dir DIR]
       mailtls-server dns-records [--config FILE] [--ttl SECONDS]
       mailtls-server smime [--config FILE] [--data-dir DIR] [partners|approvals ACTION]",
    after_help = AFTER_HELP
)]
struct Cli {
    #[command(flatten)]
    args: Args,
    /// Print the embedded default configuration and exit.
    #[arg(long, exclusive = true)]
    print_config: bool,
    /// Without a command, the server runs.
    #[command(subcommand)]
    command: Option<Command>,
}

/// Where the configuration comes from; the server and both commands read
/// it, so these may stand before or after the command.
#[derive(clap::Args)]
struct Args {
    /// TOML configuration (default: embedded defaults).
    #[arg(short, long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// Data directory (overrides server.data_dir).
    #[arg(short, long, value_name = "DIR", global = true)]
    data_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Print the MTA-STS, TLS-RPT and report DKIM records to publish, and exit.
    #[command(
        args_override_self = true,
        override_usage = "mailtls-server dns-records [--config FILE] [--ttl SECONDS]"
    )]
    DnsRecords {
        /// TTL of the printed records.
        #[arg(long, value_name = "SECONDS", default_value_t = mailtls_examples::mta_sts_publish::DEFAULT_TTL)]
        ttl: u32,
    },
    /// List the S/MIME gateway's keys, partner certificates and pending
    /// approvals, or administer its partner store, and exit.
    #[command(
        args_override_self = true,
        override_usage = "mailtls-server smime [--config FILE] [--data-dir DIR]
       mailtls-server smime partners add FILE [--domain DOMAIN]
       mailtls-server smime partners list|disable FP|enable FP|delete FP
       mailtls-server smime approvals list|approve FP|reject FP"
    )]
    Smime {
        /// Without an action, the whole listing.
        #[command(subcommand)]
        action: Option<SmimeAction>,
    },
}

/// What `smime` does to the partner store. A running server (found by its
/// admin socket in the gateway directory) applies the change at once;
/// without one the store's file is changed for the next start.
#[derive(Subcommand)]
enum SmimeAction {
    /// Partner certificates (the certificates mail is encrypted to).
    #[command(subcommand)]
    Partners(PartnersAction),
    /// Harvested certificates waiting for approval (smime.approval_queue).
    #[command(subcommand)]
    Approvals(ApprovalsAction),
}

#[derive(Subcommand)]
enum PartnersAction {
    /// Add the certificates of a PEM or DER file (CA certificates in it are
    /// skipped).
    Add {
        /// The certificate file.
        file: PathBuf,
        /// Use it for every address of this domain (a partner gateway's
        /// domain certificate) instead of the addresses it names.
        #[arg(long, value_name = "DOMAIN")]
        domain: Option<String>,
    },
    /// List the partner certificates.
    List,
    /// Stop encrypting to a certificate (kept, and not harvested again).
    Disable {
        /// Its SHA-256 fingerprint, or a unique start of it (8+ hex digits).
        fingerprint: String,
    },
    /// Encrypt to a disabled certificate again.
    Enable {
        /// Its SHA-256 fingerprint, or a unique start of it (8+ hex digits).
        fingerprint: String,
    },
    /// Forget a certificate (a later verified signature may bring it back;
    /// disable it to keep it out).
    Delete {
        /// Its SHA-256 fingerprint, or a unique start of it (8+ hex digits).
        fingerprint: String,
    },
}

#[derive(Subcommand)]
enum ApprovalsAction {
    /// List the certificates waiting for approval.
    List,
    /// Use a waiting certificate from now on.
    Approve {
        /// Its SHA-256 fingerprint, or a unique start of it (8+ hex digits).
        fingerprint: String,
    },
    /// Drop a waiting certificate.
    Reject {
        /// Its SHA-256 fingerprint, or a unique start of it (8+ hex digits).
        fingerprint: String,
    },
}

impl SmimeAction {
    fn request(self) -> Result<AdminRequest, mailtls_examples::smime_path::SmimePathError> {
        Ok(match self {
            SmimeAction::Partners(a) => match a {
                PartnersAction::Add { file, domain } => AdminRequest::add_file(&file, domain)?,
                PartnersAction::List => AdminRequest::PartnersList,
                PartnersAction::Disable { fingerprint } => {
                    AdminRequest::PartnersDisable { fingerprint }
                }
                PartnersAction::Enable { fingerprint } => {
                    AdminRequest::PartnersEnable { fingerprint }
                }
                PartnersAction::Delete { fingerprint } => {
                    AdminRequest::PartnersDelete { fingerprint }
                }
            },
            SmimeAction::Approvals(a) => match a {
                ApprovalsAction::List => AdminRequest::ApprovalsList,
                ApprovalsAction::Approve { fingerprint } => {
                    AdminRequest::ApprovalsApprove { fingerprint }
                }
                ApprovalsAction::Reject { fingerprint } => {
                    AdminRequest::ApprovalsReject { fingerprint }
                }
            },
        })
    }
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

/// The configuration the arguments name: `--config FILE` (read again on
/// every call, so SIGHUP sees the file as it is now) or the embedded
/// defaults, with `--data-dir` applied.
fn load_config(args: &Args) -> Result<Config, mailtls_examples::ConfigError> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::embedded()?,
    };
    if let Some(dir) = &args.data_dir {
        config.server.data_dir = dir.clone();
    }
    Ok(config)
}

/// SIGHUP: re-reads the configuration and reloads certificates and policy
/// settings. A configuration that does not load or validate changes
/// nothing; the error (naming the key) goes to the log.
async fn reload(server: &RunningServer, args: &Args) {
    tracing::info!("SIGHUP: reloading the configuration");
    match load_config(args) {
        // The server logs what it applied, what needs a restart, or why it
        // refused.
        Ok(config) => {
            let _ = server.reload(config).await;
        }
        Err(e) => server.reload_refused(&e),
    }
}

/// Serves until SIGINT/SIGTERM, reloading on every SIGHUP.
#[cfg(unix)]
async fn serve(
    server: &RunningServer,
    args: &Args,
    mut hangup: tokio::signal::unix::Signal,
) -> std::io::Result<()> {
    let stop = wait_for_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return Ok(()),
            Some(()) = hangup.recv() => reload(server, args).await,
        }
    }
}

#[cfg(not(unix))]
async fn serve(_server: &RunningServer, _args: &Args) -> std::io::Result<()> {
    wait_for_signal().await;
    Ok(())
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let config = load_config(&args)?;
    // Before the listeners exist: a SIGHUP sent as soon as a port answers
    // must reload, not end the process (the default action).
    #[cfg(unix)]
    let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
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
    #[cfg(unix)]
    serve(&server, &args, hangup).await?;
    #[cfg(not(unix))]
    serve(&server, &args).await?;
    tracing::info!("shutting down");
    server.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

/// `dns-records`: loads the configuration (so errors name their key) and
/// prints the records; no server is started.
fn print_dns_records(args: &Args, ttl: u32) -> ExitCode {
    let config = match load_config(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mailtls-server: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut text = mailtls_examples::mta_sts_publish::dns_records(&config, ttl);
    // The report mails' DKIM key is made here if the server has not made it
    // yet, so the record can be published before the first report goes out.
    match mailtls_examples::tlsrpt_run::dkim_dns_records(&config, ttl) {
        Ok(Some(dkim)) => text.push_str(&dkim),
        Ok(None) => {}
        Err(e) => {
            eprintln!("mailtls-server: {e}");
            return ExitCode::FAILURE;
        }
    }
    if text.is_empty() {
        eprintln!(
            "mailtls-server: nothing to publish (no mta_sts.domains, tlsrpt_reports not enabled)"
        );
        return ExitCode::FAILURE;
    }
    print!("{text}");
    ExitCode::SUCCESS
}

/// `smime`: loads the configuration (so errors name their key) and prints
/// the gateway's listing; no server is started and nothing is created.
fn print_smime(args: &Args, action: Option<SmimeAction>) -> ExitCode {
    let config = match load_config(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mailtls-server: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(action) = action {
        let done = action
            .request()
            .and_then(|r| mailtls_examples::smime_path::admin::run(&config, &r));
        return match done {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("mailtls-server: {e}");
                ExitCode::FAILURE
            }
        };
    }
    match mailtls_examples::smime_path::list(&config) {
        Ok(status) => {
            print!("{}", status.to_text());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mailtls-server: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    // Usage mistakes end here: clap prints them with the usage, exit 2.
    let cli = Cli::parse();
    if cli.print_config {
        print!("{}", mailtls_examples::config::DEFAULT_CONFIG_TOML);
        return ExitCode::SUCCESS;
    }
    let args = cli.args;
    match cli.command {
        Some(Command::DnsRecords { ttl }) => return print_dns_records(&args, ttl),
        Some(Command::Smime { action }) => return print_smime(&args, action),
        None => {}
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
