//! Renewal: when to renew (ACME Renewal Information, RFC 9773, where the CA
//! offers it; otherwise with a third of the lifetime left, half for
//! lifetimes under ten days), retries with back-off or at the CA's
//! Retry-After, persisted state per certificate, and callbacks.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::account::Account;
use crate::client::AcmeClient;
use crate::error::{AcmeError, ErrorClass};
use crate::key::b64;
use crate::order::{CertificateRequest, IssuedCertificate, PollPolicy};
use crate::solver::ChallengeSolver;
use crate::storage::{RenewalState, Storage, StoredCertificate};
use crate::types::RenewalInfo;

/// The ARI certificate identifier (RFC 9773 §4.1):
/// base64url(authorityKeyIdentifier) "." base64url(serial DER contents,
/// leading zero included).
pub fn ari_cert_id(cert: &CertificateDer<'_>) -> Result<String, AcmeError> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert)
        .map_err(|e| AcmeError::Config(format!("unparsable certificate: {e}")))?;
    let aki = parsed
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(a) => {
                a.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            _ => None,
        })
        .ok_or_else(|| AcmeError::Config("certificate has no authority key identifier".into()))?;
    Ok(ari_id_from_parts(&aki, parsed.raw_serial()))
}

fn ari_id_from_parts(aki: &[u8], serial: &[u8]) -> String {
    format!("{}.{}", b64(aki), b64(serial))
}

/// The validity of a certificate, as (notBefore, notAfter).
pub fn validity(cert: &CertificateDer<'_>) -> Result<(SystemTime, SystemTime), AcmeError> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert)
        .map_err(|e| AcmeError::Config(format!("unparsable certificate: {e}")))?;
    let v = parsed.validity();
    let to_time = |t: i64| SystemTime::UNIX_EPOCH + Duration::from_secs(t.max(0).unsigned_abs());
    Ok((
        to_time(v.not_before.timestamp()),
        to_time(v.not_after.timestamp()),
    ))
}

/// When to renew without ARI: with a third of the lifetime left, or half
/// for lifetimes under ten days (certbot's and lego's rule).
pub fn renewal_time_by_lifetime(not_before: SystemTime, not_after: SystemTime) -> SystemTime {
    let lifetime = not_after.duration_since(not_before).unwrap_or_default();
    let left = if lifetime < Duration::from_secs(10 * 86_400) {
        lifetime / 2
    } else {
        lifetime / 3
    };
    not_after.checked_sub(left).unwrap_or(not_before)
}

/// A uniformly random instant in `[start, end)` (RFC 9773 §4.2: spreads
/// load across the window). `end <= start` gives `start`.
pub fn random_instant(start: SystemTime, end: SystemTime) -> SystemTime {
    match end.duration_since(start) {
        Ok(span) if !span.is_zero() => {
            let span_ms = u64::try_from(span.as_millis()).unwrap_or(u64::MAX);
            // The secure generator cannot fail in practice; if it does, the
            // middle of the window is still inside it.
            let pick = match crate::crypto::random_u64() {
                Ok(r) => r % span_ms.max(1),
                Err(_) => span_ms / 2,
            };
            start + Duration::from_millis(pick)
        }
        _ => start,
    }
}

fn parse_rfc3339(s: &str, url: &str) -> Result<SystemTime, AcmeError> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| AcmeError::BadResponse {
            url: url.to_owned(),
            reason: format!("bad time {s:?}: {e}"),
        })?;
    let secs = t.unix_timestamp();
    Ok(SystemTime::UNIX_EPOCH + Duration::from_secs(secs.max(0).unsigned_abs()))
}

/// Renewal information as fetched: the window, and when to ask again.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RenewalWindow {
    /// Window start.
    pub start: SystemTime,
    /// Window end.
    pub end: SystemTime,
    /// When the CA said to poll again (Retry-After).
    pub poll_after: Option<SystemTime>,
    /// The CA's explanation URL.
    pub explanation_url: Option<String>,
}

impl AcmeClient {
    /// Fetches ARI for a certificate (RFC 9773 §4.2), or `None` when the
    /// directory has no `renewalInfo`.
    pub async fn renewal_info(&self, cert_id: &str) -> Result<Option<RenewalWindow>, AcmeError> {
        let Some(base) = self.directory().renewal_info.clone() else {
            return Ok(None);
        };
        let url = format!("{}/{cert_id}", base.trim_end_matches('/'));
        let resp = self.get(&url).await?;
        let info: RenewalInfo = resp.json()?;
        let start = parse_rfc3339(&info.suggested_window.start, &url)?;
        let end = parse_rfc3339(&info.suggested_window.end, &url)?;
        if end < start {
            return Err(AcmeError::BadResponse {
                url,
                reason: "renewal window ends before it starts".into(),
            });
        }
        Ok(Some(RenewalWindow {
            start,
            end,
            poll_after: resp.retry_after(),
            explanation_url: info.explanation_url,
        }))
    }
}

/// Issues `request` as a renewal does, through `account`, journaling in
/// `storage`, and deals with the two answers a renewal can meet that call
/// for another try rather than a failure: `alreadyReplaced` (another order
/// replaced the certificate named in `replaces`: order again without it),
/// and, when `account_options` are given, `accountDoesNotExist` (the CA
/// lost the account: register its key again once, store it, and order with
/// the new account, without `replaces`, which named a certificate of the
/// old one). Returns the certificate and the account that obtained it;
/// compare its URL with `account`'s to see whether it was registered again.
pub async fn renew_certificate(
    account: &Account,
    mut request: CertificateRequest,
    solvers: &[Arc<dyn ChallengeSolver>],
    storage: &dyn Storage,
    poll: PollPolicy,
    account_options: Option<&crate::account::NewAccountOptions>,
) -> Result<(IssuedCertificate, Account), AcmeError> {
    let mut account = account.clone();
    let mut registered_again = false;
    loop {
        match account.issue(&request, solvers, Some(storage), poll).await {
            Err(e)
                if request.replaces.is_some()
                    && e.problem().is_some_and(|p| p.is("alreadyReplaced")) =>
            {
                request.replaces = None;
            }
            Err(e)
                if !registered_again
                    && e.problem().is_some_and(|p| p.is("accountDoesNotExist")) =>
            {
                let Some(options) = account_options else {
                    return Err(e);
                };
                registered_again = true;
                account = account
                    .client()
                    .register_again(storage, &account, options)
                    .await?;
                request.replaces = None;
            }
            other => return other.map(|issued| (issued, account)),
        }
    }
}

/// Told about renewals; the reference server swaps the certificate into its
/// SNI resolver on success and mails the administrator on failure.
///
/// The hooks are called synchronously from the manager's task, on a runtime
/// worker: return quickly, and hand slow work (sending mail, writing files)
/// to a task of your own or `spawn_blocking`.
pub trait RenewalHooks: Send + Sync {
    /// A certificate was obtained or renewed and is stored.
    fn renewed(&self, id: &str, certificate: &IssuedCertificate);
    /// An attempt failed; the next is planned at `next_attempt`.
    fn failed(&self, id: &str, error: &AcmeError, next_attempt: SystemTime);
}

/// Back-off after failures: `base * 2^failures`, at most `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// The first retry delay.
    pub base: Duration,
    /// The longest delay.
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_secs(60),
            max: Duration::from_secs(6 * 3600),
        }
    }
}

impl RetryPolicy {
    /// Back-off from `base` doubling up to `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        RetryPolicy { base, max }
    }

    /// The delay after `failures` consecutive failures (1 = first).
    pub fn delay(&self, failures: u32) -> Duration {
        let factor = 1u32
            .checked_shl(failures.saturating_sub(1).min(30))
            .unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }
}

/// One certificate the manager keeps valid.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ManagedCertificate {
    /// The storage id (e.g. the first name).
    pub id: String,
    /// What to order.
    pub request: CertificateRequest,
}

impl ManagedCertificate {
    /// A managed certificate stored under `id`.
    pub fn new(id: impl Into<String>, request: CertificateRequest) -> Self {
        ManagedCertificate {
            id: id.into(),
            request,
        }
    }
}

/// Keeps a set of certificates valid: issues missing ones, renews due ones,
/// retries failures with back-off.
pub struct RenewalManager {
    /// Replaced when the CA forgot the account and it is registered again.
    account: std::sync::RwLock<Account>,
    /// What to register again with after `accountDoesNotExist`; `None`:
    /// report the error instead.
    account_options: Option<crate::account::NewAccountOptions>,
    storage: Arc<dyn Storage>,
    solvers: Vec<Arc<dyn ChallengeSolver>>,
    certificates: Vec<ManagedCertificate>,
    hooks: Arc<dyn RenewalHooks>,
    retry: RetryPolicy,
    poll: PollPolicy,
    /// Longest sleep between checks, so a changed ARI window is noticed.
    max_sleep: Duration,
}

impl std::fmt::Debug for RenewalManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RenewalManager")
            .field("account", &self.account().url())
            .field("certificates", &self.certificates)
            .finish_non_exhaustive()
    }
}

/// What one check did for one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckOutcome {
    /// Nothing to do until this instant.
    NotDue(SystemTime),
    /// Issued or renewed.
    Renewed,
    /// Failed; retried at this instant.
    Failed(SystemTime),
}

impl RenewalManager {
    /// A manager for `certificates` through `account`.
    pub fn new(
        account: Account,
        storage: Arc<dyn Storage>,
        solvers: Vec<Arc<dyn ChallengeSolver>>,
        certificates: Vec<ManagedCertificate>,
        hooks: Arc<dyn RenewalHooks>,
    ) -> Self {
        RenewalManager {
            account: std::sync::RwLock::new(account),
            account_options: None,
            storage,
            solvers,
            certificates,
            hooks,
            retry: RetryPolicy::default(),
            poll: PollPolicy::default(),
            max_sleep: Duration::from_secs(6 * 3600),
        }
    }

    /// Uses `retry` for failures.
    #[must_use]
    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Uses `poll` for orders.
    #[must_use]
    pub fn with_poll_policy(mut self, poll: PollPolicy) -> Self {
        self.poll = poll;
        self
    }

    /// Registers the account's key again with `options` (contact, terms,
    /// EAB) when the CA answers `accountDoesNotExist` (it lost or purged the
    /// account), then retries the order once with the new account. Without
    /// this the error is reported through the hooks like any other.
    #[must_use]
    pub fn with_account_options(mut self, options: crate::account::NewAccountOptions) -> Self {
        self.account_options = Some(options);
        self
    }

    /// The account in use (a clone: cheap).
    pub fn account(&self) -> Account {
        self.account
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Sleeps at most `max` between checks.
    #[must_use]
    pub fn with_max_sleep(mut self, max: Duration) -> Self {
        self.max_sleep = max;
        self
    }

    /// When `cert` should be renewed: a random instant in the ARI window if
    /// the CA offers one, else by lifetime. Also returns the ARI id.
    async fn due_time(&self, chain_pem: &str) -> Result<(SystemTime, Option<String>), AcmeError> {
        let leaf = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
            .next()
            .and_then(Result::ok)
            .ok_or_else(|| AcmeError::CorruptStorage {
                path: "stored chain".into(),
                reason: "no certificate in chain.pem".into(),
            })?;
        let (nb, na) = validity(&leaf)?;
        let fallback = renewal_time_by_lifetime(nb, na);
        let Ok(cert_id) = ari_cert_id(&leaf) else {
            return Ok((fallback, None));
        };
        match self.account().client().renewal_info(&cert_id).await {
            Ok(Some(w)) => Ok((random_instant(w.start, w.end), Some(cert_id))),
            // ARI trouble must never stop renewal: fall back to the lifetime rule.
            Ok(None) | Err(_) => Ok((fallback, Some(cert_id))),
        }
    }

    /// Checks one certificate and renews it if due.
    pub async fn check(&self, managed: &ManagedCertificate) -> Result<CheckOutcome, AcmeError> {
        let id = managed.id.as_str();
        let mut state = self.storage.load_state(id).await?;
        let now = SystemTime::now();
        if let Some(at) = state.next_attempt()
            && state.failures > 0
            && at > now
        {
            return Ok(CheckOutcome::NotDue(at));
        }
        let mut replaces = None;
        if let Some(current) = self.storage.load_certificate(id).await? {
            let (due, cert_id) = self.due_time(&current.chain_pem).await?;
            if due > now && state.failures == 0 {
                state.set_next_attempt(due);
                self.storage.save_state(id, &state).await?;
                return Ok(CheckOutcome::NotDue(due));
            }
            // RFC 9773 §5: `replaces` only for a certificate of this account.
            if state.issued_by_account.as_deref() == Some(self.account().url()) {
                replaces = cert_id;
            }
        }
        match self.renew(managed, replaces).await {
            Ok(issued) => {
                self.storage
                    .save_certificate(
                        id,
                        &StoredCertificate::new(issued.chain_pem.clone(), issued.key_pem.clone()),
                    )
                    .await?;
                // The chain is safe on disk: the order may be forgotten.
                self.storage.clear_pending(&issued.names).await?;
                state = RenewalState {
                    issued_by_account: Some(self.account().url().to_owned()),
                    ..RenewalState::default()
                };
                if let Ok((due, _)) = self.due_time(&issued.chain_pem).await {
                    state.set_next_attempt(due);
                }
                self.storage.save_state(id, &state).await?;
                self.hooks.renewed(id, &issued);
                Ok(CheckOutcome::Renewed)
            }
            Err(e) => {
                state.failures = state.failures.saturating_add(1);
                state.last_error = Some(e.to_string());
                let next = match e.class() {
                    ErrorClass::RateLimited { until } => until.max(now + self.retry.base),
                    _ => now + self.retry.delay(state.failures),
                };
                state.set_next_attempt(next);
                self.storage.save_state(id, &state).await?;
                self.hooks.failed(id, &e, next);
                Ok(CheckOutcome::Failed(next))
            }
        }
    }

    async fn renew(
        &self,
        managed: &ManagedCertificate,
        replaces: Option<String>,
    ) -> Result<IssuedCertificate, AcmeError> {
        let mut request = managed.request.clone();
        request.replaces = replaces;
        let (issued, account) = renew_certificate(
            &self.account(),
            request,
            &self.solvers,
            &*self.storage,
            self.poll,
            self.account_options.as_ref(),
        )
        .await?;
        *self
            .account
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = account;
        Ok(issued)
    }

    /// Checks every certificate once; returns when the next check is due.
    /// Per-certificate errors go to the hooks and are retried later.
    pub async fn check_all(&self) -> Result<SystemTime, AcmeError> {
        let mut next = SystemTime::now() + self.max_sleep;
        for managed in &self.certificates {
            // One certificate's storage trouble must not stop the others.
            let outcome = match self.check(managed).await {
                Ok(o) => o,
                Err(e) => {
                    let at = SystemTime::now() + self.retry.base;
                    self.hooks.failed(&managed.id, &e, at);
                    CheckOutcome::Failed(at)
                }
            };
            match outcome {
                CheckOutcome::NotDue(at) | CheckOutcome::Failed(at) => next = next.min(at),
                CheckOutcome::Renewed => {
                    let state = self.storage.load_state(&managed.id).await?;
                    if let Some(at) = state.next_attempt() {
                        next = next.min(at);
                    }
                }
            }
        }
        Ok(next)
    }

    /// Runs until `shutdown` completes: check, sleep until the next due
    /// instant, repeat. A storage error is retried after the back-off base.
    pub async fn run(&self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let next = match self.check_all().await {
                Ok(at) => at,
                Err(_) => SystemTime::now() + self.retry.base,
            };
            let sleep = next
                .duration_since(SystemTime::now())
                .unwrap_or_default()
                .min(self.max_sleep);
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(sleep) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// RFC 9773 §4.1 example: AKI 69:88:5B:6B:87:46:40:41:E1:B3:7B:84:7B:A0:AE:2C:DE:01:C8:D4,
    /// serial 00:87:65:43:21.
    #[test]
    fn rfc9773_cert_id_vector() {
        let aki = [
            0x69, 0x88, 0x5B, 0x6B, 0x87, 0x46, 0x40, 0x41, 0xE1, 0xB3, 0x7B, 0x84, 0x7B, 0xA0,
            0xAE, 0x2C, 0xDE, 0x01, 0xC8, 0xD4,
        ];
        assert_eq!(
            ari_id_from_parts(&aki, &[0x00, 0x87, 0x65, 0x43, 0x21]),
            "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"
        );
    }

    #[test]
    fn lifetime_rule() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let day = Duration::from_secs(86_400);
        // 90 days: renew with 30 left.
        assert_eq!(renewal_time_by_lifetime(t0, t0 + day * 90), t0 + day * 60);
        // 6 days: renew with 3 left.
        assert_eq!(renewal_time_by_lifetime(t0, t0 + day * 6), t0 + day * 3);
        assert_eq!(renewal_time_by_lifetime(t0, t0), t0);
    }

    #[test]
    fn random_instant_stays_in_window() {
        let s = SystemTime::UNIX_EPOCH + Duration::from_secs(5000);
        let e = s + Duration::from_secs(3600);
        let picks: Vec<_> = (0..200).map(|_| random_instant(s, e)).collect();
        assert!(picks.iter().all(|p| *p >= s && *p < e));
        // Not all the same instant.
        assert!(picks.iter().any(|p| *p != picks[0]));
        assert_eq!(random_instant(e, s), e);
    }

    #[test]
    fn back_off_doubles_to_max() {
        let r = RetryPolicy {
            base: Duration::from_secs(10),
            max: Duration::from_secs(100),
        };
        assert_eq!(r.delay(1), Duration::from_secs(10));
        assert_eq!(r.delay(2), Duration::from_secs(20));
        assert_eq!(r.delay(4), Duration::from_secs(80));
        assert_eq!(r.delay(5), Duration::from_secs(100));
        assert_eq!(r.delay(200), Duration::from_secs(100));
    }
}
