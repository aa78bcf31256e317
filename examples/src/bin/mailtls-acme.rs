//! mailtls-acme: issues one certificate for the given names from an ACME
//! (RFC 8555) CA over http-01 or dns-01 and writes the chain and the key,
//! built on the `mailtls-acme` crate.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::error::ErrorKind;
use clap::{CommandFactory, Parser, ValueEnum};
use mailtls_acme::solver::{Dns01Solver, HookDnsUpdater, Http01Responder, Http01Server};
use mailtls_acme::{
    AcmeClient, AcmeError, CertificateRequest, ChallengeSolver, ClientConfig, ErrorClass,
    FileStorage, NewAccountOptions, PollPolicy, SigningAlgorithm, Storage,
};
use mailtls_core::{CertInfo, CertificateDer, KeyType};
use rustls::pki_types::pem::PemObject;

/// Exit status for a failure worth retrying later (sysexits EX_TEMPFAIL).
const EXIT_TEMPFAIL: u8 = 75;

/// What the run failed on, with how to exit.
#[derive(Debug)]
enum Failure {
    /// A usage mistake found after parsing (exit 2, with the usage).
    Usage(clap::Error),
    /// The CA or a solver failed; the class picks the exit status.
    Acme(String, AcmeError),
    /// Anything else (files, roots).
    Other(String),
}

/// The challenge type to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Challenge {
    #[value(name = "http-01")]
    Http01,
    #[value(name = "dns-01")]
    Dns01,
}

/// Issues one certificate for the given names from an ACME (RFC 8555) CA
/// over http-01 or dns-01 and writes the chain and the key.
#[derive(Debug, Parser)]
#[command(
    name = "mailtls-acme",
    version,
    args_override_self = true,
    override_usage = "\
mailtls-acme --directory URL --name NAME [--name NAME]... --data-dir DIR
                    --out-cert FILE --out-key FILE [--email ADDR] [--agree-tos]
                    [--challenge http-01|dns-01] [--http-port N] [--http-address IP]
                    [--dns-hook CMD] [--dns-settle SECS] [--key-type TYPE]
                    [--extra-root PEM]... [--only-extra-roots] [--bad-nonce-retries N]
                    [--timeout SECS]",
    after_help = "\
exit status: 0 issued, 2 usage error, 75 temporary failure or rate limit
(try again later), 1 any other failure",
    arg_required_else_help = true
)]
struct Opts {
    /// The CA's ACME directory URL.
    #[arg(long, value_name = "URL")]
    directory: String,
    /// A name for the certificate (repeatable; *.NAME needs dns-01).
    #[arg(long = "name", value_name = "NAME", required = true)]
    names: Vec<String>,
    /// Contact address for a new account.
    #[arg(long, value_name = "ADDR")]
    email: Option<String>,
    /// Agree to the CA's terms of service (needed for a new account when the
    /// CA has terms).
    #[arg(long)]
    agree_tos: bool,
    /// The challenge to answer.
    #[arg(long, value_name = "TYPE", default_value = "http-01")]
    challenge: Challenge,
    /// Port the http-01 responder listens on.
    #[arg(long, value_name = "N", default_value_t = 80)]
    http_port: u16,
    /// Address the http-01 responder binds.
    #[arg(long, value_name = "IP", default_value = "0.0.0.0")]
    http_address: IpAddr,
    /// dns-01: run `CMD add|remove NAME VALUE` to publish TXT records.
    #[arg(long, value_name = "CMD", required_if_eq("challenge", "dns-01"))]
    dns_hook: Option<PathBuf>,
    /// dns-01: seconds to wait after publishing.
    #[arg(long, value_name = "SECS", default_value = "0", value_parser = seconds)]
    dns_settle: Duration,
    /// Key type of the certificate.
    #[arg(
        long,
        value_name = "TYPE",
        default_value = "ecdsa-p256",
        value_parser = PossibleValuesParser::new(["ecdsa-p256", "rsa2048", "rsa3072"])
            .try_map(|v| v.parse::<KeyType>())
    )]
    key_type: KeyType,
    /// Also trust this PEM certificate for HTTPS to the CA (repeatable).
    #[arg(long = "extra-root", value_name = "PEM")]
    extra_roots: Vec<PathBuf>,
    /// Trust only the --extra-root certificates.
    #[arg(long, requires = "extra_roots")]
    only_extra_roots: bool,
    /// Account storage (created 0700; files 0600); reused next time.
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,
    /// Where the certificate chain is written (PEM, mode 0644).
    #[arg(long, value_name = "FILE")]
    out_cert: PathBuf,
    /// Where the certificate key is written (PKCS#8 PEM, mode 0600).
    #[arg(long, value_name = "FILE")]
    out_key: PathBuf,
    /// Retries per request after badNonce (default 10).
    #[arg(long, value_name = "N")]
    bad_nonce_retries: Option<u32>,
    /// Seconds to wait for the order.
    #[arg(long, value_name = "SECS", default_value = "300", value_parser = seconds)]
    timeout: Duration,
}

/// A number of seconds (`--dns-settle`, `--timeout`).
fn seconds(v: &str) -> Result<Duration, std::num::ParseIntError> {
    v.parse().map(Duration::from_secs)
}

/// A usage mistake the flags alone do not show, printed as clap prints its
/// own.
fn usage_error(message: impl std::fmt::Display) -> clap::Error {
    Opts::command().error(ErrorKind::ArgumentConflict, message)
}

/// The options every run needs, present and consistent.
struct Checked<'a> {
    directory: &'a str,
    data_dir: &'a Path,
    out_cert: &'a Path,
    out_key: &'a Path,
}

impl Opts {
    /// The checks between flags that clap's declarations do not make.
    fn validate(&self) -> Result<Checked<'_>, clap::Error> {
        if self.out_cert == self.out_key {
            return Err(usage_error(
                "--out-cert and --out-key must be different files",
            ));
        }
        // dns-01 without --dns-hook is refused by clap (required_if_eq).
        if self.challenge == Challenge::Http01 {
            if self.dns_hook.is_some() {
                return Err(usage_error("--dns-hook applies to --challenge dns-01 only"));
            }
            if let Some(w) = self.names.iter().find(|n| n.starts_with("*.")) {
                return Err(usage_error(format!(
                    "{w}: a wildcard name needs --challenge dns-01"
                )));
            }
        }
        Ok(Checked {
            directory: &self.directory,
            data_dir: &self.data_dir,
            out_cert: &self.out_cert,
            out_key: &self.out_key,
        })
    }
}

fn load_root(path: &Path) -> Result<Vec<CertificateDer<'static>>, Failure> {
    let pem = std::fs::read(path)
        .map_err(|e| Failure::Other(format!("--extra-root {}: {e}", path.display())))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| Failure::Other(format!("--extra-root {}: bad PEM: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(Failure::Other(format!(
            "--extra-root {}: no CERTIFICATE in the file",
            path.display()
        )));
    }
    Ok(certs)
}

async fn run(o: &Opts) -> Result<(), Failure> {
    let c = o.validate().map_err(Failure::Usage)?;
    let acme = |what: &str| {
        let what = what.to_owned();
        move |e: AcmeError| Failure::Acme(what, e)
    };

    let mut config = ClientConfig::new(c.directory);
    for path in &o.extra_roots {
        for root in load_root(path)? {
            config = config.with_root(root);
        }
    }
    if o.only_extra_roots {
        config = config.only_extra_roots();
    }
    if let Some(n) = o.bad_nonce_retries {
        config.max_bad_nonce_retries = n;
    }
    let client = AcmeClient::new(config)
        .await
        .map_err(acme(&format!("directory {}", c.directory)))?;

    let storage = FileStorage::new(c.data_dir)
        .map_err(|e| Failure::Other(format!("--data-dir {}: {e}", c.data_dir.display())))?;
    if let Some(tos) = &client.directory().meta.terms_of_service
        && !o.agree_tos
        && storage
            .load_account(client.directory_url())
            .await
            .map_err(|e| Failure::Other(format!("--data-dir {}: {e}", c.data_dir.display())))?
            .is_none_or(|a| a.url.is_empty())
    {
        return Err(Failure::Usage(usage_error(format!(
            "the CA has terms of service ({tos}); read them and pass --agree-tos"
        ))));
    }
    let mut options = NewAccountOptions::default();
    options.contact = o.email.iter().map(|e| format!("mailto:{e}")).collect();
    options.terms_of_service_agreed = o.agree_tos;
    let account = client
        .load_or_create_account(&storage, SigningAlgorithm::Es256, &options)
        .await
        .map_err(acme("account"))?;

    // The http-01 server lives until the end of `run`, after issuance.
    let mut _http_server = None;
    let solver: Arc<dyn ChallengeSolver> = match o.challenge {
        Challenge::Http01 => {
            let responder = Http01Responder::new();
            let addr = SocketAddr::new(o.http_address, o.http_port);
            let server = Http01Server::bind(addr, responder.clone())
                .await
                .map_err(acme("http-01 responder"))?;
            _http_server = Some(server);
            Arc::new(responder)
        }
        Challenge::Dns01 => {
            let hook = o.dns_hook.clone().ok_or_else(|| {
                Failure::Usage(usage_error("--challenge dns-01 needs --dns-hook CMD"))
            })?;
            Arc::new(
                Dns01Solver::new(Arc::new(HookDnsUpdater::new(hook)))
                    .with_settle_time(o.dns_settle),
            )
        }
    };

    let request = CertificateRequest::new(o.names.iter().cloned()).with_key_type(o.key_type);
    let defaults = PollPolicy::default();
    let poll = PollPolicy::new(defaults.initial, defaults.max_interval, o.timeout);
    let cert = account
        .issue(&request, &[solver], Some(&storage), poll)
        .await
        .map_err(acme("order"))?;

    // Key first, 0600 from creation: a chain without its key is useless,
    // a key lying around world-readable is worse.
    mailtls_core::secret_file::write_atomic(c.out_key, cert.key_pem.as_bytes(), 0o600)
        .map_err(|e| Failure::Other(format!("--out-key {}: {e}", c.out_key.display())))?;
    mailtls_core::secret_file::write_atomic(c.out_cert, cert.chain_pem.as_bytes(), 0o644)
        .map_err(|e| Failure::Other(format!("--out-cert {}: {e}", c.out_cert.display())))?;

    let chain = cert.chain_der().map_err(acme("downloaded chain"))?;
    println!("wrote {}", c.out_cert.display());
    println!("wrote {}", c.out_key.display());
    println!("names:   {}", cert.names.join(", "));
    if let Some(info) = chain.first().and_then(|leaf| CertInfo::from_der(leaf).ok()) {
        let at = time::OffsetDateTime::from(info.not_after);
        if let Ok(text) = at.format(&time::format_description::well_known::Rfc3339) {
            println!("expires: {text}");
        }
    }
    println!("account: {}", account.url());
    println!("order:   {}", cert.order_url);
    Ok(())
}

fn main() -> ExitCode {
    // Usage mistakes in the flags end here: clap prints them, exit 2.
    let o = Opts::parse();
    let result = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(run(&o)),
        Err(e) => Err(Failure::Other(format!("cannot start the runtime: {e}"))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(e)) => {
            // Printed as clap prints usage errors; exit 2 like them.
            let _ = e.print();
            ExitCode::from(2)
        }
        Err(Failure::Acme(what, e)) => {
            eprintln!("mailtls-acme: error: {what}: {e}");
            match e.class() {
                ErrorClass::Permanent => ExitCode::FAILURE,
                ErrorClass::RateLimited { until } => {
                    if let Ok(wait) = until.duration_since(std::time::SystemTime::now()) {
                        eprintln!("mailtls-acme: the CA asks to wait {}s", wait.as_secs());
                    }
                    ExitCode::from(EXIT_TEMPFAIL)
                }
                _ => ExitCode::from(EXIT_TEMPFAIL),
            }
        }
        Err(Failure::Other(e)) => {
            eprintln!("mailtls-acme: error: {e}");
            ExitCode::FAILURE
        }
    }
}
