//! mailtls-acme: the certificate life cycle at an ACME (RFC 8555) CA from
//! the command line, built on the `mailtls-acme` crate: `issue` (the
//! default) and `renew` (ARI-aware, `--if-due` for cron) over http-01 or
//! dns-01, `revoke`, `rollover` (account key), `deactivate` (account) and
//! `show`.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::error::ErrorKind;
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use mailtls_acme::renewal::{
    ari_cert_id, random_instant, renew_certificate, renewal_time_by_lifetime,
};
use mailtls_acme::solver::{Dns01Solver, HookDnsUpdater, Http01Responder, Http01Server};
use mailtls_acme::storage::{PairFile, RenewalState, StoredAccount, StoredCertificate, write_pair};
use mailtls_acme::{
    Account, AccountKey, AcmeClient, AcmeError, CertificateRequest, ChallengeSolver, ClientConfig,
    ErrorClass, ExternalAccountBinding, FileStorage, NewAccountOptions, OrderJournal, PollPolicy,
    SigningAlgorithm, Storage,
};
use mailtls_core::{CertInfo, CertificateDer, KeyType};
use mailtls_examples::acme_run::{leaf_of, same_names};
use rustls::pki_types::pem::PemObject;

/// Exit status for a failure worth retrying later (sysexits EX_TEMPFAIL).
const EXIT_TEMPFAIL: u8 = 75;

/// The exit statuses, shown under every command's --help.
const EXIT_HELP: &str = "\
exit status:
  0   done (for renew --if-due: also when nothing was due)
  1   permanent failure: fix something first (not an ACME directory, an
      untrusted CA certificate, the CA refused the account or the request,
      new terms of service to agree to)
  2   usage error
  75  temporary failure (network, CA error 5xx, rate limit, badNonce after
      every retry, a failed validation): the same command may work later";

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

/// A revocation reason (RFC 5280 §5.3.1 CRLReason, the ones ACME CAs take).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Reason {
    /// unspecified (0).
    Unspecified,
    /// keyCompromise (1).
    KeyCompromise,
    /// affiliationChanged (3).
    AffiliationChanged,
    /// superseded (4).
    Superseded,
    /// cessationOfOperation (5).
    CessationOfOperation,
}

impl Reason {
    fn code(self) -> u8 {
        match self {
            Reason::Unspecified => 0,
            Reason::KeyCompromise => 1,
            Reason::AffiliationChanged => 3,
            Reason::Superseded => 4,
            Reason::CessationOfOperation => 5,
        }
    }
}

/// The certificate life cycle at an ACME (RFC 8555) CA: issue (the default
/// when no command is named), renew, revoke, roll the account key over,
/// deactivate the account, show what is stored.
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
                    [--preferred-chain ISSUER-CN] [--eab-kid KID
                    --eab-hmac-key-file FILE] [--extra-root PEM]... [--only-extra-roots]
                    [--bad-nonce-retries N] [--timeout SECS]
       mailtls-acme issue|renew [--if-due] ...the same...
       mailtls-acme revoke|rollover|deactivate|show --directory URL --data-dir DIR ...",
    after_help = EXIT_HELP,
    arg_required_else_help = true
)]
struct Cli {
    /// Without one, `issue` (see [`with_default_command`]).
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Issues a certificate for the names and writes it (the default).
    #[command(after_help = EXIT_HELP, args_override_self = true)]
    Issue(IssueArgs),
    /// Renews the certificate in --out-cert: with --if-due only when the
    /// CA's renewal window (ARI, RFC 9773) or, without one, the lifetime
    /// rule says so (a third of the lifetime left, half under ten days);
    /// for cron.
    #[command(after_help = EXIT_HELP, args_override_self = true)]
    Renew(RenewArgs),
    /// Revokes a certificate, as the account that ordered it or with the
    /// certificate's own key (--key).
    #[command(after_help = EXIT_HELP)]
    Revoke(RevokeArgs),
    /// Replaces the account key with a fresh one (RFC 8555 §7.3.5).
    #[command(after_help = EXIT_HELP)]
    Rollover(CaArgs),
    /// Deactivates the account for good (RFC 8555 §7.3.6); the next issue
    /// registers a new one.
    #[command(after_help = EXIT_HELP)]
    Deactivate(DeactivateArgs),
    /// Shows the account as the CA sees it and the certificates stored in
    /// the data directory with their renewal state.
    #[command(after_help = EXIT_HELP)]
    Show(CaArgs),
}

/// How to reach and trust the CA, and where the account lives.
#[derive(Debug, Clone, Args)]
struct CaArgs {
    /// The CA's ACME directory URL.
    #[arg(long, value_name = "URL")]
    directory: String,
    /// Account storage (created 0700; files 0600); reused next time.
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,
    /// Contact address for a new account.
    #[arg(long, value_name = "ADDR")]
    email: Option<String>,
    /// Agree to the CA's terms of service (needed for a new account when the
    /// CA has terms).
    #[arg(long)]
    agree_tos: bool,
    /// External account binding key id the CA gave (RFC 8555 §7.3.4), for a
    /// new account at a CA that needs one (ZeroSSL, Google, Sectigo...).
    #[arg(long, value_name = "KID")]
    eab_kid: Option<String>,
    /// The EAB MAC key (base64url). Visible to other local users in the
    /// process list: prefer --eab-hmac-key-file.
    #[arg(
        long,
        value_name = "KEY",
        requires = "eab_kid",
        conflicts_with = "eab_hmac_key_file"
    )]
    eab_hmac_key: Option<String>,
    /// A file holding the EAB MAC key (base64url, surrounding space ignored).
    #[arg(long, value_name = "FILE", requires = "eab_kid")]
    eab_hmac_key_file: Option<PathBuf>,
    /// Also trust this PEM certificate for HTTPS to the CA (repeatable).
    #[arg(long = "extra-root", value_name = "PEM")]
    extra_roots: Vec<PathBuf>,
    /// Trust only the --extra-root certificates.
    #[arg(long, requires = "extra_roots")]
    only_extra_roots: bool,
    /// Retries per request after badNonce (default 50; the first at once,
    /// then 50 ms doubling up to 1 s between them).
    #[arg(long, value_name = "N")]
    bad_nonce_retries: Option<u32>,
}

/// What to order and where to write it.
#[derive(Debug, Clone, Args)]
struct IssueArgs {
    #[command(flatten)]
    ca: CaArgs,
    /// A name for the certificate (repeatable; *.NAME needs dns-01).
    #[arg(long = "name", value_name = "NAME", required = true)]
    names: Vec<String>,
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
        value_parser = PossibleValuesParser::new(["ecdsa-p256", "ecdsa-p384", "rsa2048", "rsa3072"])
            .try_map(|v| v.parse::<KeyType>())
    )]
    key_type: KeyType,
    /// Prefer the chain (of those the CA offers) up to the issuer with this
    /// common name; the CA's default chain when none matches.
    #[arg(long, value_name = "ISSUER-CN")]
    preferred_chain: Option<String>,
    /// Where the certificate chain is written (PEM, mode 0644).
    #[arg(long, value_name = "FILE")]
    out_cert: PathBuf,
    /// Where the certificate key is written (PKCS#8 PEM, mode 0600).
    #[arg(long, value_name = "FILE")]
    out_key: PathBuf,
    /// Seconds to wait for the order.
    #[arg(long, value_name = "SECS", default_value = "300", value_parser = seconds)]
    timeout: Duration,
}

#[derive(Debug, Clone, Args)]
struct RenewArgs {
    #[command(flatten)]
    issue: IssueArgs,
    /// Renew only when due (exit 0 without contacting the CA's order
    /// endpoints otherwise): run it daily from cron.
    #[arg(long)]
    if_due: bool,
}

#[derive(Debug, Clone, Args)]
struct RevokeArgs {
    #[command(flatten)]
    ca: CaArgs,
    /// The certificate to revoke (PEM; the first certificate in the file).
    #[arg(long, value_name = "FILE")]
    cert: PathBuf,
    /// Prove control with the certificate's own key (PKCS#8 PEM) instead of
    /// the account, e.g. when the account is lost.
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// Why (RFC 5280 CRLReason).
    #[arg(long, value_name = "REASON")]
    reason: Option<Reason>,
}

#[derive(Debug, Clone, Args)]
struct DeactivateArgs {
    #[command(flatten)]
    ca: CaArgs,
    /// Confirms: a deactivated account cannot be used again.
    #[arg(long, required = true)]
    yes: bool,
}

/// A number of seconds (`--dns-settle`, `--timeout`).
fn seconds(v: &str) -> Result<Duration, std::num::ParseIntError> {
    v.parse().map(Duration::from_secs)
}

/// A usage mistake the flags alone do not show, printed as clap prints its
/// own.
fn usage_error(message: impl std::fmt::Display) -> clap::Error {
    Cli::command().error(ErrorKind::ArgumentConflict, message)
}

impl IssueArgs {
    /// The checks between flags that clap's declarations do not make.
    fn validate(&self) -> Result<(), clap::Error> {
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
        Ok(())
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

fn acme(what: &str) -> impl FnOnce(AcmeError) -> Failure {
    let what = what.to_owned();
    move |e: AcmeError| Failure::Acme(what, e)
}

/// The CA connection and the data directory.
struct Ca {
    client: AcmeClient,
    storage: FileStorage,
}

impl CaArgs {
    /// Reads the EAB key, if any: from the file, or the flag.
    fn eab(&self) -> Result<Option<ExternalAccountBinding>, Failure> {
        let Some(kid) = &self.eab_kid else {
            return Ok(None);
        };
        let key = match (&self.eab_hmac_key, &self.eab_hmac_key_file) {
            (Some(k), _) => k.clone(),
            (None, Some(path)) => std::fs::read_to_string(path).map_err(|e| {
                Failure::Other(format!("--eab-hmac-key-file {}: {e}", path.display()))
            })?,
            (None, None) => {
                return Err(Failure::Usage(usage_error(
                    "--eab-kid needs --eab-hmac-key-file FILE (or --eab-hmac-key KEY)",
                )));
            }
        };
        ExternalAccountBinding::new(kid.clone(), key.trim())
            .map(Some)
            .map_err(|e| Failure::Other(format!("--eab-hmac-key: {}", e.full_message())))
    }

    fn account_options(&self) -> Result<NewAccountOptions, Failure> {
        let mut options = NewAccountOptions::default();
        options.contact = self.email.iter().map(|e| format!("mailto:{e}")).collect();
        options.terms_of_service_agreed = self.agree_tos;
        options.external_account_binding = self.eab()?;
        Ok(options)
    }

    /// Fetches the directory and opens the data directory.
    async fn connect(&self) -> Result<Ca, Failure> {
        let mut config = ClientConfig::new(&self.directory);
        for path in &self.extra_roots {
            for root in load_root(path)? {
                config = config.with_root(root);
            }
        }
        if self.only_extra_roots {
            config = config.only_extra_roots();
        }
        if let Some(n) = self.bad_nonce_retries {
            config.max_bad_nonce_retries = n;
        }
        let client = AcmeClient::new(config)
            .await
            .map_err(acme(&format!("directory {}", self.directory)))?;
        let dir = self.data_dir.clone();
        let storage = tokio::task::spawn_blocking(move || FileStorage::new(dir))
            .await
            .map_err(|e| Failure::Other(format!("--data-dir: {e}")))?
            .map_err(|e| Failure::Other(format!("--data-dir: {}", e.full_message())))?;
        Ok(Ca { client, storage })
    }

    /// The stored account, checked with the CA, or a new one. A CA that
    /// forgot the account (`accountDoesNotExist`) gets the stored key
    /// registered again, after saying so.
    async fn account(&self, ca: &Ca) -> Result<Account, Failure> {
        let stored = ca
            .storage
            .load_account(ca.client.directory_url())
            .await
            .map_err(|e| Failure::Other(format!("--data-dir: {}", e.full_message())))?;
        let known = stored.as_ref().is_some_and(|a| !a.url.is_empty());
        let meta = &ca.client.directory().meta;
        if !known {
            if let Some(tos) = &meta.terms_of_service
                && !self.agree_tos
            {
                return Err(Failure::Usage(usage_error(format!(
                    "the CA has terms of service ({tos}); read them and pass --agree-tos"
                ))));
            }
            if meta.external_account_required && self.eab_kid.is_none() {
                return Err(Failure::Usage(usage_error(
                    "the CA requires external account binding for a new account: pass \
                     --eab-kid KID and --eab-hmac-key-file FILE (from the CA's web console)",
                )));
            }
        }
        let options = self.account_options()?;
        let account = ca
            .client
            .load_or_create_account(&ca.storage, SigningAlgorithm::Es256, &options)
            .await
            .map_err(acme("account"))?;
        if !known {
            return Ok(account);
        }
        match account.fetch().await {
            Ok(_) => Ok(account),
            Err(e) if e.problem().is_some_and(|p| p.is("accountDoesNotExist")) => {
                eprintln!(
                    "mailtls-acme: the CA does not know account {} (accountDoesNotExist); \
                     registering its key again",
                    account.url()
                );
                ca.client
                    .register_again(&ca.storage, &account, &options)
                    .await
                    .map_err(acme("account"))
            }
            Err(e) => Err(Failure::Acme("account".into(), e)),
        }
    }
}

/// When `chain_pem`'s leaf is due for renewal, and why: a random instant in
/// the CA's ARI window where it offers one, else the lifetime rule.
async fn due_time(
    client: &AcmeClient,
    leaf: &CertificateDer<'_>,
    info: &CertInfo,
) -> (SystemTime, String) {
    let by_lifetime = renewal_time_by_lifetime(info.not_before, info.not_after);
    if let Ok(id) = ari_cert_id(leaf) {
        match client.renewal_info(&id).await {
            Ok(Some(w)) => {
                return (
                    random_instant(w.start, w.end),
                    "the CA's renewal window (ARI)".into(),
                );
            }
            Ok(None) => {}
            Err(e) => eprintln!(
                "mailtls-acme: renewal information unavailable ({}); using the lifetime rule",
                e.full_message()
            ),
        }
    }
    (by_lifetime, "the lifetime rule".into())
}

fn rfc3339(t: SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| format!("{t:?}"))
}

/// `issue`, and `renew` (`renew` is `Some(if_due)`).
async fn issue(o: &IssueArgs, renew: Option<bool>) -> Result<(), Failure> {
    o.validate().map_err(Failure::Usage)?;
    let ca = o.ca.connect().await?;
    let id = o.names[0].clone();

    let mut current = None;
    if renew.is_some() {
        let path = o.out_cert.clone();
        let pem = tokio::fs::read_to_string(&path).await;
        match pem.ok().as_deref().and_then(leaf_of) {
            Some((leaf, info)) if same_names(&info.dns_names, &o.names) => {
                let (due, why) = due_time(&ca.client, &leaf, &info).await;
                if renew == Some(true) && due > SystemTime::now() {
                    println!(
                        "not due: {} renews at {} ({why}); expires {}",
                        path.display(),
                        rfc3339(due),
                        rfc3339(info.not_after)
                    );
                    return Ok(());
                }
                current = Some(leaf);
            }
            Some((_, info)) => println!(
                "{} is for {} and --name asks for {}: ordering anew",
                path.display(),
                info.dns_names.join(", "),
                o.names.join(", ")
            ),
            None => println!(
                "no readable certificate at {}: ordering one",
                path.display()
            ),
        }
    }

    let account = o.ca.account(&ca).await?;

    // The http-01 server lives until the end of `issue`, after issuance.
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

    // Pre-authorisation (RFC 8555 §7.4.1) is used where the CA offers
    // newAuthz and skipped where it does not (Let's Encrypt, Pebble).
    let mut request = CertificateRequest::new(o.names.iter().cloned())
        .with_key_type(o.key_type)
        .with_pre_authorization();
    if let Some(cn) = &o.preferred_chain {
        request = request.with_preferred_issuer(cn.clone());
    }
    let state = ca
        .storage
        .load_state(&id)
        .await
        .map_err(|e| Failure::Other(format!("--data-dir: {}", e.full_message())))?;
    // RFC 9773 §5: `replaces` only for a certificate this account ordered.
    if let Some(leaf) = &current
        && ca.client.directory().renewal_info.is_some()
        && state.issued_by_account.as_deref() == Some(account.url())
        && let Ok(cert_id) = ari_cert_id(leaf)
    {
        request = request.with_replaces(cert_id);
    }
    let defaults = PollPolicy::default();
    let poll = PollPolicy::new(defaults.initial, defaults.max_interval, o.timeout);
    // alreadyReplaced is ordered again without `replaces`; a forgotten
    // account was registered again by `account` above already.
    let (cert, account) = renew_certificate(&account, request, &[solver], &ca.storage, poll, None)
        .await
        .map_err(acme("order"))?;

    let (key_path, cert_path) = (o.out_key.clone(), o.out_cert.clone());
    let (key_pem, chain_pem) = (cert.key_pem.clone(), cert.chain_pem.clone());
    tokio::task::spawn_blocking(move || {
        // Key 0600 from creation; the pair changes together (the old key
        // is put back if the certificate cannot be written).
        write_pair(
            PairFile::new(&key_path, key_pem.as_bytes(), 0o600),
            PairFile::new(&cert_path, chain_pem.as_bytes(), 0o644),
        )
    })
    .await
    .map_err(|e| Failure::Other(format!("writing the files: {e}")))?
    .map_err(|e| {
        Failure::Other(format!(
            "--out-key {} / --out-cert {}: {e}",
            o.out_key.display(),
            o.out_cert.display()
        ))
    })?;
    // The data directory's copy and state, for `show` and `renew`; the
    // order is done, so the journal forgets it.
    let saved = async {
        ca.storage
            .save_certificate(
                &id,
                &StoredCertificate::new(cert.chain_pem.clone(), cert.key_pem.clone()),
            )
            .await?;
        ca.storage.clear_pending(&cert.names).await?;
        let mut state = RenewalState::default();
        state.issued_by_account = Some(account.url().to_owned());
        if let Some((leaf, info)) = leaf_of(&cert.chain_pem) {
            state.set_next_attempt(due_time(&ca.client, &leaf, &info).await.0);
        }
        ca.storage.save_state(&id, &state).await
    };
    saved
        .await
        .map_err(|e| Failure::Other(format!("--data-dir: {}", e.full_message())))?;

    println!("wrote {}", o.out_cert.display());
    println!("wrote {}", o.out_key.display());
    println!("names:   {}", cert.names.join(", "));
    if let Some((_, info)) = leaf_of(&cert.chain_pem) {
        println!("expires: {}", rfc3339(info.not_after));
        println!("issuer:  {}", info.issuer);
    }
    println!("account: {}", account.url());
    println!("order:   {}", cert.order_url);
    Ok(())
}

async fn revoke(o: &RevokeArgs) -> Result<(), Failure> {
    let read = |path: &Path, what: &str| {
        std::fs::read_to_string(path)
            .map_err(|e| Failure::Other(format!("{what} {}: {e}", path.display())))
    };
    let pem = read(&o.cert, "--cert")?;
    let (leaf, info) = leaf_of(&pem).ok_or_else(|| {
        Failure::Other(format!(
            "--cert {}: no readable certificate",
            o.cert.display()
        ))
    })?;
    let reason = o.reason.map(Reason::code);
    let ca = o.ca.connect().await?;
    match &o.key {
        Some(key_path) => {
            let key = read(key_path, "--key")?;
            ca.client
                .revoke_with_certificate_key(&leaf, &key, reason)
                .await
                .map_err(acme("revoke"))?;
        }
        None => {
            let account = o.ca.account(&ca).await?;
            account
                .revoke(&leaf, reason)
                .await
                .map_err(acme("revoke"))?;
        }
    }
    println!(
        "revoked {} (serial {}, {})",
        o.cert.display(),
        info.serial,
        info.dns_names.join(", ")
    );
    Ok(())
}

async fn rollover(o: &CaArgs) -> Result<(), Failure> {
    let ca = o.connect().await?;
    let account = o.account(&ca).await?;
    let new_key = AccountKey::generate_off_runtime(account.key().algorithm())
        .await
        .map_err(acme("new account key"))?;
    let new_pem = new_key.to_pem();
    let rolled = account.rollover(new_key).await.map_err(acme("rollover"))?;
    ca.storage
        .save_account(
            ca.client.directory_url(),
            &StoredAccount::new(rolled.url(), new_pem),
        )
        .await
        .map_err(|e| {
            Failure::Other(format!(
                "the CA took the new key but it could not be stored: {}",
                e.full_message()
            ))
        })?;
    println!("account: {}", rolled.url());
    println!("new key thumbprint: {}", rolled.key().thumbprint());
    Ok(())
}

async fn deactivate(o: &DeactivateArgs) -> Result<(), Failure> {
    let ca = o.ca.connect().await?;
    let account = o.ca.account(&ca).await?;
    let object = account.deactivate().await.map_err(acme("deactivate"))?;
    // A fresh key without an account: the next issue registers it.
    let key = AccountKey::generate_off_runtime(SigningAlgorithm::Es256)
        .await
        .map_err(acme("new account key"))?;
    ca.storage
        .save_account(
            ca.client.directory_url(),
            &StoredAccount::new("", key.to_pem()),
        )
        .await
        .map_err(|e| Failure::Other(format!("--data-dir: {}", e.full_message())))?;
    println!("account: {} is {}", account.url(), object.status);
    Ok(())
}

async fn show(o: &CaArgs) -> Result<(), Failure> {
    let ca = o.connect().await?;
    println!("directory: {}", ca.client.directory_url());
    let stored = ca
        .storage
        .load_account(ca.client.directory_url())
        .await
        .map_err(|e| Failure::Other(format!("--data-dir: {}", e.full_message())))?;
    match stored {
        Some(a) if !a.url.is_empty() => {
            let key = AccountKey::from_pem(&a.key_pem).map_err(acme("stored account key"))?;
            let account = ca.client.account_from_parts(key, a.url);
            println!("account:   {}", account.url());
            println!(
                "key:       {} {}",
                account.key().algorithm().jose_name(),
                account.key().thumbprint()
            );
            match account.fetch().await {
                Ok(obj) => {
                    println!("status:    {}", obj.status);
                    println!("contact:   {}", obj.contact.join(", "));
                }
                Err(e) if e.problem().is_some_and(|p| p.is("accountDoesNotExist")) => {
                    println!(
                        "status:    unknown to the CA (the next issue registers the key again)"
                    );
                }
                Err(e) => return Err(Failure::Acme("account".into(), e)),
            }
        }
        _ => println!("account:   none yet (the next issue registers one)"),
    }
    let certs_dir = o.data_dir.join("certs");
    let ids = tokio::task::spawn_blocking(move || -> Vec<String> {
        let mut ids: Vec<String> = std::fs::read_dir(&certs_dir)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.path().is_dir())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids
    })
    .await
    .map_err(|e| Failure::Other(format!("--data-dir: {e}")))?;
    for id in ids {
        let cert = ca.storage.load_certificate(&id).await;
        let state = ca.storage.load_state(&id).await.unwrap_or_default();
        println!("certificate {id}:");
        match cert
            .ok()
            .flatten()
            .as_ref()
            .and_then(|c| leaf_of(&c.chain_pem))
        {
            Some((leaf, info)) => {
                println!("  names:    {}", info.dns_names.join(", "));
                println!("  issuer:   {}", info.issuer);
                println!("  serial:   {}", info.serial);
                println!("  expires:  {}", rfc3339(info.not_after));
                let (due, why) = due_time(&ca.client, &leaf, &info).await;
                println!("  renew at: {} ({why})", rfc3339(due));
            }
            None => println!("  no readable certificate"),
        }
        if state.failures > 0 {
            println!("  failures: {}", state.failures);
        }
        if let Some(e) = &state.last_error {
            println!("  last error: {e}");
        }
    }
    Ok(())
}

async fn run(cli: &Cli) -> Result<(), Failure> {
    match &cli.command {
        Command::Issue(a) => issue(a, None).await,
        Command::Renew(a) => issue(&a.issue, Some(a.if_due)).await,
        Command::Revoke(a) => revoke(a).await,
        Command::Rollover(a) => rollover(a).await,
        Command::Deactivate(a) => deactivate(a).await,
        Command::Show(a) => show(a).await,
    }
}

/// The command line with `issue` put in front when it names no command:
/// the tool issued certificates before it had commands, and scripts and
/// cron lines written then keep working. Nothing at all, or only
/// `--help`/`--version`, is left alone (the overview, the version).
fn with_default_command(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let cli = Cli::command();
    let names_a_command = |a: &std::ffi::OsStr| {
        let a = a.to_string_lossy();
        a == "help"
            || ["-h", "--help", "-V", "--version"].contains(&a.as_ref())
            || cli.get_subcommands().any(|c| c.get_name() == a)
    };
    if args.get(1).is_some_and(|a| !names_a_command(a)) {
        args.insert(1, "issue".into());
    }
    args
}

fn main() -> ExitCode {
    // Usage mistakes in the flags end here: clap prints them, exit 2.
    let cli = Cli::parse_from(with_default_command(std::env::args_os().collect()));
    let result = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(run(&cli)),
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
            eprintln!("mailtls-acme: error: {what}: {}", e.full_message());
            match e.class() {
                ErrorClass::Permanent => ExitCode::FAILURE,
                ErrorClass::RateLimited { until } => {
                    if let Ok(wait) = until.duration_since(SystemTime::now()) {
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
