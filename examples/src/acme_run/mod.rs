//! ACME inside the server (`[acme]`): one certificate for the configured
//! names, obtained at start and renewed on schedule by `mailtls-acme`,
//! answered over http-01 (the web listener's
//! `/.well-known/acme-challenge/` route), tls-alpn-01 (the HTTPS listener
//! through the resolver's challenge slot) or dns-01 (RFC 2136), put into
//! service without a restart, with a JSON-lines log of every run and a mail
//! to the administrator when a run fails.
//!
//! When a run is due: at start, then at the earlier of the renewal time
//! and `acme.check_interval_secs`; after a failure, with back-off (one
//! minute doubling up to the check interval) or when the CA's rate limit
//! ends. The renewal time is a random instant in the CA's ARI window
//! (RFC 9773) when it offers one, else `acme.renew_before_days` before
//! expiry, but never before a third of the lifetime is left (half for
//! lifetimes under ten days), so short-lived certificates are not renewed
//! on every run.
//!
//! The account key and URL, the certificates, their keys, the renewal
//! state and orders in progress live in `<data_dir>/acme` (directories
//! 0700, files 0600, written atomically); the run log is
//! `<data_dir>/acme/runs.log`.

pub mod config;

mod admin_mail;
mod deploy;
pub(crate) mod http01;
pub mod run_log;
mod tsig_file;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::{Duration, SystemTime};

use mailtls_acme::renewal::{
    ari_cert_id, random_instant, renew_certificate, renewal_time_by_lifetime,
};
use mailtls_acme::solver::{
    Dns01Solver, Http01Responder, Rfc2136Updater, TlsAlpn01Solver, TsigKey,
};
use mailtls_acme::storage::StoredCertificate;
use mailtls_acme::{
    Account, AcmeClient, AcmeError, CertificateRequest, ChallengeSolver, ClientConfig, ErrorClass,
    ExternalAccountBinding, FileStorage, IssuedCertificate, NewAccountOptions, OrderJournal,
    PollPolicy, RetryPolicy, SigningAlgorithm, Storage,
};
use mailtls_core::{CertInfo, CertificateDer, NamePattern, TlsAlpnChallengeSlot};
use mailtls_sni::SniResolver;
use rustls::pki_types::pem::PemObject;
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{AcmeChallenge, AcmeKeyType, AcmeSection, Dns01Settings, EabSettings};
pub use deploy::DeployError;
pub use run_log::{RunOutcome, RunRecord, RunTrigger};

use crate::config::{Config, ConfigError};
use crate::server::Shared;
use run_log::rfc3339;

/// Why ACME could not be set up at start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AcmeRunError {
    /// A setting names a file that does not load, or the listener the
    /// challenge needs is missing; the error names the key.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `<data_dir>/acme` could not be opened.
    #[error("ACME storage {path}: {source}")]
    Storage {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: AcmeError,
    },
}

/// The certificate in service, for the status page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AcmeCertificateStatus {
    /// Its names.
    pub names: Vec<String>,
    /// Issuer DN.
    pub issuer: String,
    /// notBefore, RFC 3339.
    pub not_before: String,
    /// notAfter, RFC 3339.
    pub not_after: String,
    /// Whole days until notAfter (negative once expired).
    pub days_left: i64,
    /// SHA-256 fingerprint, colon hex (as the resolver reports it).
    pub fingerprint_sha256: String,
}

/// What `[acme]` is doing, for the status page and `/status.json`.
#[derive(Debug, Clone, Serialize)]
pub struct AcmeStatus {
    /// The CA's directory URL.
    pub directory: String,
    /// The challenge answered.
    pub challenge: String,
    /// The names ordered.
    pub names: Vec<String>,
    /// The ACME certificate in service, if one was obtained.
    pub certificate: Option<AcmeCertificateStatus>,
    /// When it is due for renewal, RFC 3339.
    pub renewal_due: Option<String>,
    /// When the next run is planned, RFC 3339.
    pub next_run: Option<String>,
    /// Whether a run is going on now.
    pub running: bool,
    /// Consecutive failed runs.
    pub failures: u32,
    /// The last run, as logged.
    pub last_run: Option<RunRecord>,
    /// Where every run is logged.
    pub run_log: String,
}

#[derive(Debug, Default)]
struct Live {
    last: Option<RunRecord>,
    next_run: Option<SystemTime>,
    renewal_due: Option<SystemTime>,
    certificate: Option<AcmeCertificateStatus>,
    running: bool,
    failures: u32,
    last_mail: Option<SystemTime>,
}

/// A failed attempt: the message for the log and mail, and when the CA
/// allows the next one.
struct Failure {
    message: String,
    until: Option<SystemTime>,
}

impl Failure {
    fn acme(what: &str, e: &AcmeError) -> Self {
        Failure {
            // With the causes: "error sending request" alone does not say
            // that the CA's certificate was untrusted.
            message: format!("{what}: {}", e.full_message()),
            until: match e.class() {
                ErrorClass::RateLimited { until } => Some(until),
                _ => None,
            },
        }
    }

    fn other(message: String) -> Self {
        Failure {
            message,
            until: None,
        }
    }
}

/// What a successful attempt did.
struct Attempt {
    outcome: RunOutcome,
    due: SystemTime,
}

/// ACME for the running server: the scheduler, the http-01 token store, the
/// status. Made by `Server::start` when `[acme]` is enabled.
pub struct AcmeRun {
    section: AcmeSection,
    names: Vec<String>,
    id: String,
    hostname: String,
    cert_dir: PathBuf,
    log_path: PathBuf,
    storage: Arc<FileStorage>,
    resolver: Arc<SniResolver>,
    http01: Http01Responder,
    solvers: Vec<Arc<dyn ChallengeSolver>>,
    extra_roots: Vec<CertificateDer<'static>>,
    eab: Option<ExternalAccountBinding>,
    account: tokio::sync::Mutex<Option<Account>>,
    run_lock: tokio::sync::Mutex<()>,
    /// Tells the scheduler that a run outside the schedule moved the next
    /// run.
    replan: tokio::sync::Notify,
    live: Mutex<Live>,
    shared: OnceLock<Weak<Shared>>,
    retry: RetryPolicy,
}

impl std::fmt::Debug for AcmeRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcmeRun")
            .field("directory", &self.section.directory)
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

fn days_left(not_after: SystemTime, now: SystemTime) -> i64 {
    let days = |d: Duration| i64::try_from(d.as_secs() / 86_400).unwrap_or(i64::MAX);
    match not_after.duration_since(now) {
        Ok(left) => days(left),
        Err(e) => -days(e.duration()) - 1,
    }
}

/// The first certificate of a PEM chain and what it says, if readable.
pub fn leaf_of(chain_pem: &str) -> Option<(CertificateDer<'static>, CertInfo)> {
    let leaf = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .next()?
        .ok()?;
    let info = CertInfo::from_der(&leaf).ok()?;
    Some((leaf, info))
}

fn certificate_status(info: &CertInfo) -> AcmeCertificateStatus {
    AcmeCertificateStatus {
        names: info.dns_names.clone(),
        issuer: info.issuer.clone(),
        not_before: rfc3339(info.not_before),
        not_after: rfc3339(info.not_after),
        days_left: days_left(info.not_after, SystemTime::now()),
        fingerprint_sha256: info.fingerprint_hex(),
    }
}

/// The same names, whatever the order and case.
pub fn same_names(have: &[String], want: &[String]) -> bool {
    let norm = |v: &[String]| {
        let mut v: Vec<String> = v.iter().map(|s| s.to_ascii_lowercase()).collect();
        v.sort();
        v.dedup();
        v
    };
    norm(have) == norm(want)
}

impl AcmeRun {
    /// Sets up ACME for a server with `config`, serving challenges and
    /// certificates through `resolver`. Reads `acme.ca_file` and
    /// `acme.tsig_key_file` and opens `<data_dir>/acme`; contacts nobody.
    pub(crate) fn new(
        section: AcmeSection,
        config: &Config,
        resolver: Arc<SniResolver>,
    ) -> Result<Self, AcmeRunError> {
        section.check_against(config)?;
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            key: key.to_owned(),
            message,
        };
        let mut extra_roots = Vec::new();
        if let Some(path) = &section.ca_file {
            extra_roots = mailtls_core::load::certificates_from_file(path)
                .map_err(|e| invalid("acme.ca_file", e.to_string()))?;
        }
        let eab = match &section.eab {
            None => None,
            Some(e) => {
                let key = std::fs::read_to_string(&e.hmac_key_file).map_err(|err| {
                    invalid(
                        "acme.eab_hmac_key_file",
                        format!("{}: {err}", e.hmac_key_file.display()),
                    )
                })?;
                Some(
                    ExternalAccountBinding::new(e.kid.clone(), key.trim()).map_err(|err| {
                        invalid(
                            "acme.eab_hmac_key_file",
                            format!("{}: {err}", e.hmac_key_file.display()),
                        )
                    })?,
                )
            }
        };
        let http01 = Http01Responder::new();
        let solver: Arc<dyn ChallengeSolver> = match &section.challenge {
            AcmeChallenge::Http01 => Arc::new(http01.clone()),
            AcmeChallenge::TlsAlpn01 => {
                let slot: Arc<dyn TlsAlpnChallengeSlot> = Arc::clone(&resolver) as _;
                Arc::new(TlsAlpn01Solver::new(slot))
            }
            AcmeChallenge::Dns01(d) => {
                let mut updater = Rfc2136Updater::new(d.server, d.zone.to_string());
                if let Some(path) = &d.tsig_key_file {
                    let key = read_tsig_key(path).map_err(|m| {
                        invalid("acme.tsig_key_file", format!("{}: {m}", path.display()))
                    })?;
                    updater = updater.with_tsig(key);
                }
                Arc::new(Dns01Solver::new(Arc::new(updater)))
            }
        };
        let names: Vec<String> = section
            .effective_names(config)
            .iter()
            .map(NamePattern::to_string)
            .collect();
        let id = names.first().cloned().unwrap_or_default();
        let dir = config.server.data_dir.join("acme");
        let storage = FileStorage::new(&dir).map_err(|source| AcmeRunError::Storage {
            path: dir.clone(),
            source,
        })?;
        let mut live = Live::default();
        // `new` is synchronous (server start-up): read on this thread.
        if let Ok(Some(stored)) = storage.load_certificate_blocking(&id)
            && let Some((_, info)) = leaf_of(&stored.chain_pem)
        {
            live.certificate = Some(certificate_status(&info));
        }
        if let Ok(state) = storage.load_state_blocking(&id) {
            live.failures = state.failures;
        }
        let check = section.check_interval;
        Ok(AcmeRun {
            names,
            id,
            hostname: config.server.hostname.to_string(),
            cert_dir: config.cert_dir(),
            log_path: dir.join("runs.log"),
            storage: Arc::new(storage),
            resolver,
            http01,
            solvers: vec![solver],
            extra_roots,
            eab,
            account: tokio::sync::Mutex::new(None),
            run_lock: tokio::sync::Mutex::new(()),
            replan: tokio::sync::Notify::new(),
            live: Mutex::new(live),
            shared: OnceLock::new(),
            retry: RetryPolicy::new(Duration::from_secs(60).min(check), check),
            section,
        })
    }

    /// Starts the scheduler: a run now, then whenever one is due, until
    /// `shutdown`. Failure mail goes through `shared`'s message path.
    pub(crate) fn spawn(
        self: &Arc<Self>,
        shared: &Arc<Shared>,
        mut shutdown: watch::Receiver<bool>,
    ) -> JoinHandle<()> {
        let _ = self.shared.set(Arc::downgrade(shared));
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let mut trigger = RunTrigger::Start;
            loop {
                let mut next = tokio::select! {
                    (_, next) = this.run_once(trigger, false) => next,
                    () = crate::stream::shutdown_signalled(&mut shutdown) => return,
                };
                loop {
                    let wait = next.duration_since(SystemTime::now()).unwrap_or_default();
                    tokio::select! {
                        () = tokio::time::sleep(wait) => break,
                        // A manual run planned anew: sleep until its plan.
                        () = this.replan.notified() => {
                            next = this.live().next_run.unwrap_or(next);
                        }
                        () = crate::stream::shutdown_signalled(&mut shutdown) => return,
                    }
                }
                trigger = RunTrigger::Schedule;
            }
        })
    }

    /// Renews now, whether due or not (for tests and operators): orders a
    /// new certificate, puts it into service and logs the run. Waits for a
    /// run already going on to finish first.
    pub async fn renew_now(&self) -> RunRecord {
        let record = self.run_once(RunTrigger::Manual, true).await.0;
        self.replan.notify_one();
        record
    }

    /// The names ordered.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Where every run is logged (`<data_dir>/acme/runs.log`).
    pub fn run_log_path(&self) -> &std::path::Path {
        &self.log_path
    }

    /// The current state.
    pub fn status(&self) -> AcmeStatus {
        let live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        let mut certificate = live.certificate.clone();
        if let Some(c) = certificate.as_mut() {
            // Days left move on between runs.
            if let Ok(t) = time::OffsetDateTime::parse(
                &c.not_after,
                &time::format_description::well_known::Rfc3339,
            ) {
                c.days_left = days_left(t.into(), SystemTime::now());
            }
        }
        AcmeStatus {
            directory: self.section.directory.clone(),
            challenge: self.section.challenge.as_str().to_owned(),
            names: self.names.clone(),
            certificate,
            renewal_due: live.renewal_due.map(rfc3339),
            next_run: live.next_run.map(rfc3339),
            running: live.running,
            failures: live.failures,
            last_run: live.last.clone(),
            run_log: self.log_path.display().to_string(),
        }
    }

    /// The key authorisation to serve at `path`, while an http-01
    /// challenge for it is open.
    pub(crate) fn http01_response(&self, path: &str) -> Option<String> {
        self.http01.respond(path)
    }

    fn live(&self) -> std::sync::MutexGuard<'_, Live> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One run: attempt, schedule, log, mail on failure. Returns the log
    /// record and when the next run is due.
    async fn run_once(&self, trigger: RunTrigger, force: bool) -> (RunRecord, SystemTime) {
        let _one_at_a_time = self.run_lock.lock().await;
        self.live().running = true;
        let started = SystemTime::now();
        let result = self.attempt(force).await;
        let now = SystemTime::now();
        let mut state = self.storage.load_state(&self.id).await.unwrap_or_default();
        let check = self.section.check_interval;
        let (outcome, error, due, next) = match result {
            Ok(a) => {
                state.failures = 0;
                state.last_error = None;
                let next = a.due.min(now + check).max(now);
                (a.outcome, None, Some(a.due), next)
            }
            Err(f) => {
                state.failures = state.failures.saturating_add(1);
                state.last_error = Some(f.message.clone());
                let next = match f.until {
                    // The CA's word: never earlier, even past the interval.
                    Some(until) => until.max(now + self.retry.base),
                    None => now + self.retry.delay(state.failures),
                };
                (RunOutcome::Failed, Some(f.message), None, next)
            }
        };
        state.set_next_attempt(next);
        if let Err(e) = self.storage.save_state(&self.id, &state).await {
            tracing::warn!(error = %e, "cannot save the ACME renewal state");
        }
        let certificate_expires = self
            .storage
            .load_certificate(&self.id)
            .await
            .ok()
            .flatten()
            .and_then(|c| leaf_of(&c.chain_pem))
            .map(|(_, info)| info);
        let mut record = RunRecord {
            started: rfc3339(started),
            finished: rfc3339(now),
            trigger,
            names: self.names.clone(),
            outcome,
            error,
            certificate_expires: certificate_expires.as_ref().map(|i| rfc3339(i.not_after)),
            renewal_due: due.map(rfc3339),
            next_run: rfc3339(next),
            failures: state.failures,
            admin_mailed: false,
        };
        if outcome == RunOutcome::Failed {
            let last_mail = self.live().last_mail;
            let day = Duration::from_secs(86_400);
            // The first failure, then at most daily while it keeps failing.
            if state.failures == 1 || last_mail.is_none_or(|t| t + day <= now) {
                record.admin_mailed = self.mail_admin(&record).await;
                if record.admin_mailed {
                    self.live().last_mail = Some(now);
                }
            }
            tracing::warn!(
                error = record.error.as_deref().unwrap_or(""),
                failures = state.failures,
                next_run = %record.next_run,
                "ACME run failed"
            );
        } else {
            tracing::info!(outcome = ?outcome, next_run = %record.next_run, "ACME run done");
        }
        if let Err(e) = run_log::append(&self.log_path, &record) {
            tracing::warn!(file = %self.log_path.display(), error = %e, "cannot write the ACME run log");
        }
        let mut live = self.live();
        live.running = false;
        live.failures = state.failures;
        live.next_run = Some(next);
        if due.is_some() {
            live.renewal_due = due;
        }
        if let Some(info) = &certificate_expires {
            live.certificate = Some(certificate_status(info));
        }
        live.last = Some(record.clone());
        (record, next)
    }

    /// Checks the stored certificate and renews it when due (or `force`).
    async fn attempt(&self, force: bool) -> Result<Attempt, Failure> {
        let storage_err = |e: AcmeError| Failure::acme("storage", &e);
        let stored = self
            .storage
            .load_certificate(&self.id)
            .await
            .map_err(storage_err)?;
        let current = stored.as_ref().and_then(|c| leaf_of(&c.chain_pem));
        if let (Some(stored), Some((leaf, info))) = (&stored, &current)
            && same_names(&info.dns_names, &self.names)
            && !force
        {
            let due = self.due_time(leaf, info).await;
            if due > SystemTime::now() {
                // Keep it in service: after a restart the first-start test
                // certificates may be back beside it.
                self.deploy(&stored.chain_pem, &stored.key_pem).await?;
                return Ok(Attempt {
                    outcome: RunOutcome::NotDue,
                    due,
                });
            }
        }
        let account = self.account().await?;
        let mut state = self
            .storage
            .load_state(&self.id)
            .await
            .map_err(storage_err)?;
        // Pre-authorisation (RFC 8555 §7.4.1) where the CA offers newAuthz.
        let mut request = CertificateRequest::new(self.names.iter().cloned())
            .with_key_type(self.section.key_type.key_type())
            .with_pre_authorization();
        if let Some(cn) = &self.section.preferred_chain {
            request = request.with_preferred_issuer(cn.clone());
        }
        // RFC 9773 §5: `replaces` only for a certificate of this account.
        if self.section.use_ari
            && self.account_has_ari(&account)
            && state.issued_by_account.as_deref() == Some(account.url())
            && let Some((leaf, _)) = &current
            && let Ok(id) = ari_cert_id(leaf)
        {
            request = request.with_replaces(id);
        }
        let (issued, account) = self.issue(&account, request).await?;
        self.storage
            .save_certificate(
                &self.id,
                &StoredCertificate::new(issued.chain_pem.clone(), issued.key_pem.clone()),
            )
            .await
            .map_err(storage_err)?;
        // The chain is safe on disk: the order may be forgotten.
        self.storage
            .clear_pending(&issued.names)
            .await
            .map_err(storage_err)?;
        state.issued_by_account = Some(account.url().to_owned());
        self.storage
            .save_state(&self.id, &state)
            .await
            .map_err(storage_err)?;
        self.deploy(&issued.chain_pem, &issued.key_pem).await?;
        let (leaf, info) = leaf_of(&issued.chain_pem)
            .ok_or_else(|| Failure::other("the issued chain has no readable certificate".into()))?;
        let due = self.due_time(&leaf, &info).await;
        Ok(Attempt {
            outcome: if stored.is_some() {
                RunOutcome::Renewed
            } else {
                RunOutcome::Issued
            },
            due,
        })
    }

    fn account_has_ari(&self, account: &Account) -> bool {
        account.client().directory().renewal_info.is_some()
    }

    /// Orders through `account`; returns the certificate and the account
    /// that got it (a new one when the CA had forgotten the old one).
    async fn issue(
        &self,
        account: &Account,
        request: CertificateRequest,
    ) -> Result<(IssuedCertificate, Account), Failure> {
        let (issued, used) = renew_certificate(
            account,
            request,
            &self.solvers,
            &*self.storage,
            PollPolicy::default(),
            Some(&self.account_options()),
        )
        .await
        .map_err(|e| Failure::acme("order", &e))?;
        if used.url() != account.url() {
            tracing::warn!(
                old = account.url(),
                new = used.url(),
                "the CA did not know the ACME account (accountDoesNotExist); its key was \
                 registered again"
            );
            *self.account.lock().await = Some(used.clone());
        }
        Ok((issued, used))
    }

    /// When `leaf` is due: a random instant in the CA's ARI window, or else
    /// `renew_before` ahead of expiry but not before the lifetime rule.
    async fn due_time(&self, leaf: &CertificateDer<'static>, info: &CertInfo) -> SystemTime {
        let by_lifetime = renewal_time_by_lifetime(info.not_before, info.not_after);
        let by_days = info
            .not_after
            .checked_sub(self.section.renew_before)
            .unwrap_or(info.not_before);
        let local = by_lifetime.max(by_days);
        if !self.section.use_ari {
            return local;
        }
        let Ok(account) = self.account().await else {
            return local;
        };
        let Ok(cert_id) = ari_cert_id(leaf) else {
            return local;
        };
        match account.client().renewal_info(&cert_id).await {
            Ok(Some(w)) => random_instant(w.start, w.end),
            // ARI trouble must never stop renewal: the local rule stands.
            Ok(None) | Err(_) => local,
        }
    }

    /// The account, connecting and creating it on first use.
    async fn account(&self) -> Result<Account, Failure> {
        let mut cached = self.account.lock().await;
        if let Some(a) = cached.as_ref() {
            return Ok(a.clone());
        }
        let dir = &self.section.directory;
        let mut config = ClientConfig::new(dir.clone());
        for root in &self.extra_roots {
            config = config.with_root(root.clone());
        }
        config.max_bad_nonce_retries = self.section.bad_nonce_retries;
        let client = AcmeClient::new(config)
            .await
            .map_err(|e| Failure::acme(&format!("directory {dir}"), &e))?;
        let known = self
            .storage
            .load_account(client.directory_url())
            .await
            .map_err(|e| Failure::acme("storage", &e))?
            .is_some_and(|a| !a.url.is_empty());
        if !known
            && !self.section.agree_tos
            && let Some(tos) = &client.directory().meta.terms_of_service
        {
            return Err(Failure::other(format!(
                "acme.agree_tos: the CA has terms of service ({tos}); read them and set \
                 acme.agree_tos = true to create the account"
            )));
        }
        if !known && self.eab.is_none() && client.directory().meta.external_account_required {
            return Err(Failure::other(
                "acme.eab_kid: the CA requires external account binding for a new account; \
                 set acme.eab_kid and acme.eab_hmac_key_file from the CA's console"
                    .into(),
            ));
        }
        let account = client
            .load_or_create_account(
                &*self.storage,
                SigningAlgorithm::Es256,
                &self.account_options(),
            )
            .await
            .map_err(|e| Failure::acme("account", &e))?;
        *cached = Some(account.clone());
        Ok(account)
    }

    /// What a new account is created with: contacts, terms, EAB.
    fn account_options(&self) -> NewAccountOptions {
        let mut options = NewAccountOptions::default();
        options.contact = self.section.contact_uris();
        options.terms_of_service_agreed = self.section.agree_tos;
        options.external_account_binding = self.eab.clone();
        options
    }

    async fn deploy(&self, chain_pem: &str, key_pem: &str) -> Result<(), Failure> {
        let (dir, id, chain, key) = (
            self.cert_dir.clone(),
            self.id.clone(),
            chain_pem.to_owned(),
            key_pem.to_owned(),
        );
        let resolver = Arc::clone(&self.resolver);
        let done =
            tokio::task::spawn_blocking(move || deploy::deploy(&dir, &id, &chain, &key, &resolver))
                .await
                .map_err(|e| Failure::other(format!("deploy task: {e}")))?
                .map_err(|e| Failure::other(format!("deploy: {e}")))?;
        if let Some(generation) = done.generation {
            tracing::info!(
                generation,
                written = done.written,
                removed = done.removed.len(),
                "ACME certificate in service"
            );
        }
        Ok(())
    }

    /// Mails the administrator through the server's message path; whether
    /// the mail was accepted.
    async fn mail_admin(&self, record: &RunRecord) -> bool {
        let Some(shared) = self.shared.get().and_then(Weak::upgrade) else {
            tracing::warn!("ACME run failed before the server was up; nobody mailed");
            return false;
        };
        let body = match admin_mail::failure_message(
            &self.hostname,
            &self.section.admin,
            &self.section.directory,
            record,
            &self.log_path.display().to_string(),
        ) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "cannot build the ACME failure mail");
                return false;
            }
        };
        // Null reverse path: a notice about a failure must never bounce
        // back into another notice.
        match crate::accept::submit_internal(
            &shared,
            "",
            std::slice::from_ref(&self.section.admin),
            body,
        )
        .await
        {
            Ok(id) => {
                tracing::info!(to = %self.section.admin, id, "mailed the administrator about the failed ACME run");
                true
            }
            Err(e) => {
                tracing::warn!(to = %self.section.admin, error = %e, "cannot mail the administrator");
                false
            }
        }
    }
}

fn read_tsig_key(path: &std::path::Path) -> Result<TsigKey, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    tsig_file::parse(&text)?.into_key()
}
