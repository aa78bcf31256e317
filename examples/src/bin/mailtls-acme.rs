//! mailtls-acme: issues one certificate for the given names from an ACME
//! (RFC 8555) CA over http-01 or dns-01 and writes the chain and the key,
//! built on the `mailtls-acme` crate.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use mailtls_acme::solver::{Dns01Solver, HookDnsUpdater, Http01Responder, Http01Server};
use mailtls_acme::{
    AcmeClient, AcmeError, CertificateRequest, ChallengeSolver, ClientConfig, ErrorClass,
    FileStorage, NewAccountOptions, PollPolicy, SigningAlgorithm, Storage,
};
use mailtls_core::{CertInfo, CertificateDer, KeyType};
use mailtls_examples::cli_args::{ArgError, ArgParser, UsageError};
use rustls::pki_types::pem::PemObject;

const USAGE: &str = "\
usage:
  mailtls-acme --directory URL --name NAME [--name NAME]... --data-dir DIR
               --out-cert FILE --out-key FILE [--email ADDR] [--agree-tos]
               [--challenge http-01|dns-01] [--http-port N] [--http-address IP]
               [--dns-hook CMD] [--dns-settle SECS] [--key-type TYPE]
               [--extra-root PEM]... [--only-extra-roots] [--bad-nonce-retries N]
               [--timeout SECS]

  --directory   the CA's ACME directory URL
  --name        a name for the certificate (repeatable; *.NAME needs dns-01)
  --email       contact address for a new account
  --agree-tos   agree to the CA's terms of service (needed for a new account
                when the CA has terms)
  --challenge   http-01 (default) or dns-01
  --http-port   port the http-01 responder listens on (default 80)
  --http-address  address it binds (default 0.0.0.0)
  --dns-hook    dns-01: run `CMD add|remove NAME VALUE` to publish TXT records
  --dns-settle  dns-01: seconds to wait after publishing (default 0)
  --key-type    ecdsa-p256 (default) | rsa2048 | rsa3072
  --extra-root  also trust this PEM certificate for HTTPS to the CA (repeatable)
  --only-extra-roots  trust only the --extra-root certificates
  --data-dir    account storage (created 0700; files 0600); reused next time
  --out-cert    where the certificate chain is written (PEM, mode 0644)
  --out-key     where the certificate key is written (PKCS#8 PEM, mode 0600)
  --bad-nonce-retries  retries per request after badNonce (default 10)
  --timeout     seconds to wait for the order (default 300)

exit status: 0 issued, 2 usage error, 75 temporary failure or rate limit
(try again later), 1 any other failure";

/// Exit status for a failure worth retrying later (sysexits EX_TEMPFAIL).
const EXIT_TEMPFAIL: u8 = 75;

/// What the run failed on, with how to exit.
#[derive(Debug)]
enum Failure {
    Usage(UsageError),
    /// The CA or a solver failed; the class picks the exit status.
    Acme(String, AcmeError),
    /// Anything else (files, roots).
    Other(String),
}

/// The challenge type to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Challenge {
    Http01,
    Dns01,
}

/// Parsed options; required ones are checked in `Opts::validate`.
#[derive(Debug)]
struct Opts {
    directory: Option<String>,
    names: Vec<String>,
    email: Option<String>,
    agree_tos: bool,
    challenge: Challenge,
    http_port: u16,
    http_address: IpAddr,
    dns_hook: Option<PathBuf>,
    dns_settle: Duration,
    key_type: KeyType,
    extra_roots: Vec<PathBuf>,
    only_extra_roots: bool,
    data_dir: Option<PathBuf>,
    out_cert: Option<PathBuf>,
    out_key: Option<PathBuf>,
    bad_nonce_retries: Option<u32>,
    timeout: Duration,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            directory: None,
            names: Vec::new(),
            email: None,
            agree_tos: false,
            challenge: Challenge::Http01,
            http_port: 80,
            http_address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            dns_hook: None,
            dns_settle: Duration::ZERO,
            key_type: KeyType::EcdsaP256,
            extra_roots: Vec::new(),
            only_extra_roots: false,
            data_dir: None,
            out_cert: None,
            out_key: None,
            bad_nonce_retries: None,
            timeout: Duration::from_secs(300),
        }
    }
}

fn parse_opts(args: &[String]) -> Result<Opts, UsageError> {
    const NUMBER: &str = "a valid number";
    let mut o = Opts::default();
    let mut p = ArgParser::new(args);
    while let Some(arg) = p.next() {
        match arg.as_str() {
            "--directory" => o.directory = Some(p.value()?),
            "--name" => o.names.push(p.value()?),
            "--email" => o.email = Some(p.value()?),
            "--agree-tos" => o.agree_tos = true,
            "--challenge" => {
                o.challenge =
                    p.choice(&[("http-01", Challenge::Http01), ("dns-01", Challenge::Dns01)])?
            }
            "--http-port" => o.http_port = p.parse_value(NUMBER)?,
            "--http-address" => o.http_address = p.parse_value("an IP address")?,
            "--dns-hook" => o.dns_hook = Some(PathBuf::from(p.value()?)),
            "--dns-settle" => o.dns_settle = Duration::from_secs(p.parse_value(NUMBER)?),
            "--key-type" => {
                o.key_type = p.choice(&[
                    ("ecdsa-p256", KeyType::EcdsaP256),
                    ("rsa2048", KeyType::Rsa2048),
                    ("rsa3072", KeyType::Rsa3072),
                ])?
            }
            "--extra-root" => o.extra_roots.push(PathBuf::from(p.value()?)),
            "--only-extra-roots" => o.only_extra_roots = true,
            "--data-dir" => o.data_dir = Some(PathBuf::from(p.value()?)),
            "--out-cert" => o.out_cert = Some(PathBuf::from(p.value()?)),
            "--out-key" => o.out_key = Some(PathBuf::from(p.value()?)),
            "--bad-nonce-retries" => o.bad_nonce_retries = Some(p.parse_value(NUMBER)?),
            "--timeout" => o.timeout = Duration::from_secs(p.parse_value(NUMBER)?),
            // A lone "-" is no positional here either: always an unknown option.
            f if f.starts_with('-') => {
                return Err(ArgError::UnknownFlag { flag: f.to_owned() }.into());
            }
            other => {
                return Err(UsageError(format!(
                    "unexpected argument {other:?}; give names with --name"
                )));
            }
        }
    }
    Ok(o)
}

/// The options every run needs, present and consistent.
struct Checked<'a> {
    directory: &'a str,
    data_dir: &'a Path,
    out_cert: &'a Path,
    out_key: &'a Path,
}

impl Opts {
    fn validate(&self) -> Result<Checked<'_>, UsageError> {
        let directory = self
            .directory
            .as_deref()
            .ok_or_else(|| UsageError("give --directory URL".into()))?;
        if self.names.is_empty() {
            return Err(UsageError("give at least one --name".into()));
        }
        let data_dir = self
            .data_dir
            .as_deref()
            .ok_or_else(|| UsageError("give --data-dir DIR for the account".into()))?;
        let out_cert = self
            .out_cert
            .as_deref()
            .ok_or_else(|| UsageError("give --out-cert FILE".into()))?;
        let out_key = self
            .out_key
            .as_deref()
            .ok_or_else(|| UsageError("give --out-key FILE".into()))?;
        if out_cert == out_key {
            return Err(UsageError(
                "--out-cert and --out-key must be different files".into(),
            ));
        }
        match self.challenge {
            Challenge::Dns01 if self.dns_hook.is_none() => {
                return Err(UsageError("--challenge dns-01 needs --dns-hook CMD".into()));
            }
            Challenge::Http01 if self.dns_hook.is_some() => {
                return Err(UsageError(
                    "--dns-hook applies to --challenge dns-01 only".into(),
                ));
            }
            Challenge::Http01 => {
                if let Some(w) = self.names.iter().find(|n| n.starts_with("*.")) {
                    return Err(UsageError(format!(
                        "{w}: a wildcard name needs --challenge dns-01"
                    )));
                }
            }
            Challenge::Dns01 => {}
        }
        if self.only_extra_roots && self.extra_roots.is_empty() {
            return Err(UsageError(
                "--only-extra-roots needs at least one --extra-root".into(),
            ));
        }
        Ok(Checked {
            directory,
            data_dir,
            out_cert,
            out_key,
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
            .map_err(|e| Failure::Other(format!("--data-dir {}: {e}", c.data_dir.display())))?
            .is_none_or(|a| a.url.is_empty())
    {
        return Err(Failure::Usage(UsageError(format!(
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
                Failure::Usage(UsageError("--challenge dns-01 needs --dns-hook CMD".into()))
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
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    }
    if args.iter().any(|a| matches!(a.as_str(), "-h" | "--help")) {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let result = match parse_opts(&args) {
        Ok(o) => match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt.block_on(run(&o)),
            Err(e) => Err(Failure::Other(format!("cannot start the runtime: {e}"))),
        },
        Err(e) => Err(Failure::Usage(e)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(e)) => {
            eprintln!("mailtls-acme: {e}\n\n{USAGE}");
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
