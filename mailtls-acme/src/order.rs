//! Orders (RFC 8555 §7.4): create, authorise through solvers (reusing valid
//! authorisations), finalise only when ready, poll with back-off through
//! `processing`, download the chain (choosing among alternates), revoke.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mailtls_core::maker::KeyType;
use mailtls_core::name::DnsName;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::account::Account;
use crate::error::AcmeError;
use crate::key::b64;
use crate::solver::{ChallengeContext, ChallengeSolver};
use crate::storage::StorageFuture;
use crate::types::{Authorization, AuthzStatus, Identifier, Order, OrderStatus};

/// How often and how long to poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PollPolicy {
    /// First wait.
    pub initial: Duration,
    /// Longest wait between polls (the wait doubles up to this).
    pub max_interval: Duration,
    /// Give up after this long.
    pub timeout: Duration,
}

impl PollPolicy {
    /// Polls first after `initial`, doubling up to `max_interval`, for at
    /// most `timeout`.
    pub fn new(initial: Duration, max_interval: Duration, timeout: Duration) -> Self {
        PollPolicy {
            initial,
            max_interval,
            timeout,
        }
    }
}

impl PollPolicy {
    /// Sets the first wait.
    #[must_use]
    pub fn with_initial(mut self, initial: Duration) -> Self {
        self.initial = initial;
        self
    }

    /// Sets the longest wait between polls.
    #[must_use]
    pub fn with_max_interval(mut self, max_interval: Duration) -> Self {
        self.max_interval = max_interval;
        self
    }

    /// Sets how long to poll before giving up.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl Default for PollPolicy {
    fn default() -> Self {
        PollPolicy {
            initial: Duration::from_millis(250),
            max_interval: Duration::from_secs(10),
            timeout: Duration::from_secs(300),
        }
    }
}

/// What certificate to get.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CertificateRequest {
    /// The names (`*.example.com` for a wildcard, dns-01 only).
    pub names: Vec<String>,
    /// The type of the fresh certificate key.
    pub key_type: KeyType,
    /// Reuse this PKCS#8 PEM key instead of making a fresh one.
    pub reuse_key_pem: Option<String>,
    /// Prefer the chain whose top certificate's issuer (or any certificate's
    /// subject) has this common name, when the CA offers alternates.
    pub preferred_issuer: Option<String>,
    /// ARI certificate id of the certificate this one replaces (RFC 9773 §5),
    /// only for a certificate of the same account.
    pub replaces: Option<String>,
    /// The certificate profile to ask for, if the CA offers profiles.
    pub profile: Option<String>,
    /// Authorise each name through `newAuthz` (RFC 8555 §7.4.1) before
    /// ordering, where the directory offers it; ignored where it does not.
    pub pre_authorize: bool,
}

impl CertificateRequest {
    /// A request for `names` with a fresh ECDSA P-256 key.
    pub fn new<S: Into<String>>(names: impl IntoIterator<Item = S>) -> Self {
        CertificateRequest {
            names: names.into_iter().map(Into::into).collect(),
            key_type: KeyType::EcdsaP256,
            reuse_key_pem: None,
            preferred_issuer: None,
            replaces: None,
            profile: None,
            pre_authorize: false,
        }
    }

    /// Authorises the names through `newAuthz` before ordering, where the
    /// CA offers pre-authorisation (RFC 8555 §7.4.1).
    #[must_use]
    pub fn with_pre_authorization(mut self) -> Self {
        self.pre_authorize = true;
        self
    }

    /// Uses `key_type` for the certificate key.
    #[must_use]
    pub fn with_key_type(mut self, key_type: KeyType) -> Self {
        self.key_type = key_type;
        self
    }

    /// Reuses an existing certificate key (PKCS#8 PEM) instead of a fresh one,
    /// e.g. to keep a published DANE `3 1 1` record valid.
    #[must_use]
    pub fn with_key_reuse(mut self, key_pem: impl Into<String>) -> Self {
        self.reuse_key_pem = Some(key_pem.into());
        self
    }

    /// Prefers a chain up to `issuer_cn`.
    #[must_use]
    pub fn with_preferred_issuer(mut self, issuer_cn: impl Into<String>) -> Self {
        self.preferred_issuer = Some(issuer_cn.into());
        self
    }

    /// Asks for the CA's certificate profile `name` (e.g. `tlsserver`).
    #[must_use]
    pub fn with_profile(mut self, name: impl Into<String>) -> Self {
        self.profile = Some(name.into());
        self
    }

    /// Marks the order as replacing the certificate with ARI id `cert_id`.
    #[must_use]
    pub fn with_replaces(mut self, cert_id: impl Into<String>) -> Self {
        self.replaces = Some(cert_id.into());
        self
    }

    fn parsed_names(&self) -> Result<Vec<(DnsName, bool)>, AcmeError> {
        if self.names.is_empty() {
            return Err(AcmeError::Config(
                "a certificate needs at least one name".into(),
            ));
        }
        self.names
            .iter()
            .map(|n| {
                let (base, wildcard) = match n.strip_prefix("*.") {
                    Some(b) => (b, true),
                    None => (n.as_str(), false),
                };
                DnsName::parse(base)
                    .map(|d| (d, wildcard))
                    .map_err(|e| AcmeError::Config(format!("bad name {n:?}: {e}")))
            })
            .collect()
    }
}

/// An order in progress, saved so an interrupted issuance resumes instead of
/// starting over (the certificate key must survive with it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PendingOrder {
    /// The order URL.
    pub order_url: String,
    /// The certificate key (PKCS#8 PEM) the CSR is made for.
    pub key_pem: String,
    /// The names ordered.
    pub names: Vec<String>,
    /// The certificate key type the order was made for (`KeyType`'s
    /// display form). A journal written before this field existed has
    /// none, and its order is not resumed: the key type is unknown.
    #[serde(default)]
    pub key_type: Option<String>,
}

impl PendingOrder {
    /// A journal entry for the order at `order_url`, made for `names` with
    /// the certificate key `key_pem` (PKCS#8 PEM) of type `key_type`: what
    /// `Account::issue` saves, for a caller that creates orders itself.
    pub fn new(
        order_url: impl Into<String>,
        key_pem: impl Into<String>,
        names: Vec<String>,
        key_type: KeyType,
    ) -> Self {
        PendingOrder {
            order_url: order_url.into(),
            key_pem: key_pem.into(),
            names,
            key_type: Some(key_type.to_string()),
        }
    }

    /// Whether this saved order was made for `request` (`names` are the
    /// request's normalised names): the same names, and the key type (or
    /// the very key, when the request reuses one) it asks for. An order
    /// made for something else is not resumed: it would hand back a
    /// certificate the caller did not ask for.
    pub fn matches(&self, request: &CertificateRequest, names: &[String]) -> bool {
        let sorted = |v: &[String]| {
            let mut v: Vec<String> = v.iter().map(|n| n.to_ascii_lowercase()).collect();
            v.sort();
            v.dedup();
            v
        };
        if sorted(&self.names) != sorted(names) {
            return false;
        }
        match &request.reuse_key_pem {
            Some(pem) => pem.trim() == self.key_pem.trim(),
            None => self.key_type.as_deref() == Some(&request.key_type.to_string()),
        }
    }
}

/// Where an issuance records its progress; see `storage::FileStorage`.
/// Async and object-safe like [`Storage`](crate::storage::Storage).
pub trait OrderJournal: Send + Sync {
    /// The saved order for these names, if any.
    fn load_pending<'a>(&'a self, names: &'a [String]) -> StorageFuture<'a, Option<PendingOrder>>;
    /// Saves progress (called before the first request that depends on it).
    fn save_pending<'a>(&'a self, pending: &'a PendingOrder) -> StorageFuture<'a, ()>;
    /// Forgets the saved order (after the chain is safely stored).
    fn clear_pending<'a>(&'a self, names: &'a [String]) -> StorageFuture<'a, ()>;
}

/// An issued certificate.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct IssuedCertificate {
    /// The chain, leaf first, as PEM.
    pub chain_pem: String,
    /// The certificate key, PKCS#8 PEM.
    pub key_pem: String,
    /// The order URL.
    pub order_url: String,
    /// The names.
    pub names: Vec<String>,
}

impl IssuedCertificate {
    /// The chain as DER.
    pub fn chain_der(&self) -> Result<Vec<CertificateDer<'static>>, AcmeError> {
        parse_chain(&self.chain_pem, "issued chain")
    }
}

fn parse_chain(pem: &str, url: &str) -> Result<Vec<CertificateDer<'static>>, AcmeError> {
    let chain: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(pem.as_bytes()).collect();
    let chain = chain.map_err(|e| AcmeError::BadResponse {
        url: url.to_owned(),
        reason: format!("bad PEM chain: {e}"),
    })?;
    if chain.is_empty() {
        return Err(AcmeError::BadResponse {
            url: url.to_owned(),
            reason: "empty certificate chain".into(),
        });
    }
    Ok(chain)
}

/// Common names of every certificate's subject and issuer in a chain.
fn chain_names(chain: &[CertificateDer<'_>]) -> Vec<String> {
    let mut names = Vec::new();
    for der in chain {
        if let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) {
            for name in [cert.subject(), cert.issuer()] {
                for cn in name.iter_common_name() {
                    if let Ok(s) = cn.as_str() {
                        names.push(s.to_owned());
                    }
                }
            }
        }
    }
    names
}

/// Makes a CSR (DER) for `names` signed by `key_pem`, a PKCS#8 PEM key
/// (RFC 8555 §7.4: SANs exactly the identifiers; no subject needed).
pub fn make_csr(names: &[String], key_pem: &str) -> Result<Vec<u8>, AcmeError> {
    let key = rcgen::KeyPair::from_pem(key_pem)
        .map_err(|e| AcmeError::Csr(format!("certificate key: {e}")))?;
    let mut params = rcgen::CertificateParams::new(names.to_vec())
        .map_err(|e| AcmeError::Csr(format!("names {names:?}: {e}")))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params
        .serialize_request(&key)
        .map_err(|e| AcmeError::Csr(e.to_string()))?;
    Ok(csr.der().to_vec())
}

struct Presented {
    solver: Arc<dyn ChallengeSolver>,
    ctx: ChallengeContext,
    authz_url: String,
    challenge_url: String,
}

impl Account {
    /// Creates an order for `names` (RFC 8555 §7.4); returns its URL and body.
    pub async fn new_order(
        &self,
        names: &[String],
        replaces: Option<&str>,
    ) -> Result<(String, Order), AcmeError> {
        self.new_order_with_profile(names, replaces, None).await
    }

    /// Creates an order, naming a certificate profile. A profile the
    /// directory does not list is refused before asking the CA.
    pub async fn new_order_with_profile(
        &self,
        names: &[String],
        replaces: Option<&str>,
        profile: Option<&str>,
    ) -> Result<(String, Order), AcmeError> {
        let url = self.client.directory().new_order.clone();
        let ids: Vec<Identifier> = names.iter().map(|n| Identifier::dns(n)).collect();
        let mut payload = json!({"identifiers": ids});
        if let Some(r) = replaces {
            payload["replaces"] = r.into();
        }
        if let Some(p) = profile {
            let offered = &self.client.directory().meta.profiles;
            if !offered.contains_key(p) {
                return Err(AcmeError::Config(format!(
                    "the CA offers no profile {p:?} (offered: {:?})",
                    offered.keys().collect::<Vec<_>>()
                )));
            }
            payload["profile"] = p.into();
        }
        let resp = self.post(&url, Some(&payload)).await?;
        Ok((resp.location()?, resp.json()?))
    }

    /// Fetches an order (POST-as-GET).
    pub async fn order(&self, url: &str) -> Result<Order, AcmeError> {
        self.post(url, None).await?.json()
    }

    /// Fetches an authorisation (POST-as-GET).
    pub async fn authorization(&self, url: &str) -> Result<Authorization, AcmeError> {
        self.post(url, None).await?.json()
    }

    /// Deactivates an authorisation (RFC 8555 §7.5.2).
    pub async fn deactivate_authorization(&self, url: &str) -> Result<Authorization, AcmeError> {
        self.post(url, Some(&json!({"status": "deactivated"})))
            .await?
            .json()
    }

    /// Satisfies every pending authorisation of `order` with the first
    /// solver (in `solvers` order) whose type the CA offers. Already valid
    /// authorisations are reused. All responses are published before the CA
    /// is told, so a wildcard and its apex can share one TXT name.
    pub async fn authorize(
        &self,
        order: &Order,
        solvers: &[Arc<dyn ChallengeSolver>],
        poll: PollPolicy,
    ) -> Result<(), AcmeError> {
        self.authorize_urls(&order.authorizations, solvers, poll)
            .await
    }

    /// Asks for an authorisation of `name` ahead of any order (RFC 8555
    /// §7.4.1, `newAuthz`); returns its URL and body. Fails with
    /// `MissingDirectoryEntry` where the CA offers no pre-authorisation.
    pub async fn new_authorization(
        &self,
        name: &str,
    ) -> Result<(String, Authorization), AcmeError> {
        let url = self
            .client
            .directory()
            .new_authz
            .clone()
            .ok_or(AcmeError::MissingDirectoryEntry("newAuthz"))?;
        let resp = self
            .post(&url, Some(&json!({"identifier": Identifier::dns(name)})))
            .await?;
        Ok((resp.location()?, resp.json()?))
    }

    /// Pre-authorises `names` (RFC 8555 §7.4.1): one `newAuthz` each, then
    /// the challenges as for an order. A later order for these names finds
    /// its authorisations valid. Wildcard names are left to the order: the
    /// RFC forbids them in `newAuthz`.
    pub async fn pre_authorize(
        &self,
        names: &[String],
        solvers: &[Arc<dyn ChallengeSolver>],
        poll: PollPolicy,
    ) -> Result<(), AcmeError> {
        let mut urls = Vec::with_capacity(names.len());
        for name in names.iter().filter(|n| !n.starts_with("*.")) {
            urls.push(self.new_authorization(name).await?.0);
        }
        self.authorize_urls(&urls, solvers, poll).await
    }

    async fn authorize_urls(
        &self,
        authorizations: &[String],
        solvers: &[Arc<dyn ChallengeSolver>],
        poll: PollPolicy,
    ) -> Result<(), AcmeError> {
        let mut presented: Vec<Presented> = Vec::new();
        let result = self
            .authorize_inner(authorizations, solvers, poll, &mut presented)
            .await;
        for p in &presented {
            // Cleanup failures must not mask the outcome; the record is stale
            // but harmless.
            let _ = p.solver.cleanup(&p.ctx).await;
        }
        result
    }

    async fn authorize_inner(
        &self,
        authorizations: &[String],
        solvers: &[Arc<dyn ChallengeSolver>],
        poll: PollPolicy,
        presented: &mut Vec<Presented>,
    ) -> Result<(), AcmeError> {
        for authz_url in authorizations {
            let authz = self.authorization(authz_url).await?;
            match authz.status {
                AuthzStatus::Valid => continue,
                AuthzStatus::Pending => {}
                _ => {
                    return Err(AcmeError::AuthorizationFailed {
                        identifier: authz.identifier.value.clone(),
                        problem: authz
                            .challenges
                            .iter()
                            .find_map(|c| c.error.clone())
                            .map(Box::new),
                    });
                }
            }
            let choice = solvers.iter().find_map(|s| {
                authz
                    .challenges
                    .iter()
                    .find(|c| c.kind == s.challenge_type())
                    .map(|c| (s.clone(), c))
            });
            let Some((solver, challenge)) = choice else {
                return Err(AcmeError::NoSolver {
                    identifier: authz.identifier.value.clone(),
                    offered: authz.challenges.iter().map(|c| c.kind.clone()).collect(),
                });
            };
            let token = challenge
                .token
                .clone()
                .ok_or_else(|| AcmeError::BadResponse {
                    url: authz_url.clone(),
                    reason: format!("{} challenge without token", challenge.kind),
                })?;
            let identifier = DnsName::parse(authz.identifier.value.trim_start_matches("*."))
                .map_err(|e| AcmeError::BadResponse {
                    url: authz_url.clone(),
                    reason: format!("bad identifier {:?}: {e}", authz.identifier.value),
                })?;
            let ctx = ChallengeContext::new(
                identifier,
                authz.wildcard,
                token.clone(),
                self.key.key_authorization(&token),
            );
            solver.present(&ctx).await?;
            presented.push(Presented {
                solver,
                ctx,
                authz_url: authz_url.clone(),
                challenge_url: challenge.url.clone(),
            });
        }
        for p in presented.iter() {
            self.post(&p.challenge_url, Some(&json!({}))).await?;
        }
        for p in presented.iter() {
            self.wait_authorization(&p.authz_url, poll).await?;
        }
        Ok(())
    }

    async fn wait_authorization(&self, url: &str, poll: PollPolicy) -> Result<(), AcmeError> {
        let start = Instant::now();
        let mut wait = poll.initial;
        loop {
            let resp = self.post(url, None).await?;
            let authz: Authorization = resp.json()?;
            match authz.status {
                AuthzStatus::Valid => return Ok(()),
                AuthzStatus::Pending | AuthzStatus::Processing => {}
                _ => {
                    return Err(AcmeError::AuthorizationFailed {
                        identifier: authz.identifier.value.clone(),
                        problem: authz
                            .challenges
                            .iter()
                            .find_map(|c| c.error.clone())
                            .map(Box::new),
                    });
                }
            }
            if start.elapsed() > poll.timeout {
                return Err(AcmeError::Timeout {
                    url: url.to_owned(),
                    waited: start.elapsed(),
                    status: format!("{:?}", authz.status),
                });
            }
            wait = next_wait(wait, resp.retry_after(), poll);
            tokio::time::sleep(wait).await;
        }
    }

    /// Polls the order until its status is not `pending`/`processing` (or is
    /// in `stop`), honouring Retry-After, with doubling back-off.
    pub async fn wait_order(
        &self,
        url: &str,
        stop: &[OrderStatus],
        poll: PollPolicy,
    ) -> Result<Order, AcmeError> {
        let start = Instant::now();
        let mut wait = poll.initial;
        loop {
            let resp = self.post(url, None).await?;
            let order: Order = resp.json()?;
            if order.status == OrderStatus::Invalid {
                return Err(AcmeError::OrderFailed {
                    url: url.to_owned(),
                    problem: order.error.clone().map(Box::new),
                });
            }
            if stop.contains(&order.status)
                || !matches!(order.status, OrderStatus::Pending | OrderStatus::Processing)
            {
                return Ok(order);
            }
            if start.elapsed() > poll.timeout {
                return Err(AcmeError::Timeout {
                    url: url.to_owned(),
                    waited: start.elapsed(),
                    status: format!("{:?}", order.status),
                });
            }
            wait = next_wait(wait, resp.retry_after(), poll);
            tokio::time::sleep(wait).await;
        }
    }

    /// Finalises a `ready` order with a CSR (DER).
    pub async fn finalize(&self, order: &Order, csr_der: &[u8]) -> Result<Order, AcmeError> {
        self.post(&order.finalize, Some(&json!({"csr": b64(csr_der)})))
            .await?
            .json()
    }

    /// Downloads the certificate chain; with `preferred_issuer`, also the
    /// alternates (`Link: rel="alternate"`, RFC 8555 §7.4.2) and returns the
    /// first whose certificates name that issuer, else the default chain.
    pub async fn download(
        &self,
        cert_url: &str,
        preferred_issuer: Option<&str>,
    ) -> Result<String, AcmeError> {
        let resp = self.post(cert_url, None).await?;
        let default =
            String::from_utf8(resp.body().to_vec()).map_err(|_| AcmeError::BadResponse {
                url: cert_url.to_owned(),
                reason: "chain is not UTF-8 PEM".into(),
            })?;
        let Some(want) = preferred_issuer else {
            parse_chain(&default, cert_url)?;
            return Ok(default);
        };
        let mut candidates = vec![default];
        for alt in resp.links("alternate") {
            let r = self.post(&alt, None).await?;
            if let Ok(pem) = String::from_utf8(r.into_body()) {
                candidates.push(pem);
            }
        }
        for pem in &candidates {
            let chain = parse_chain(pem, cert_url)?;
            // Skip the leaf: the issuer choice is about the chain above it.
            if chain_names(&chain[1.min(chain.len() - 1)..])
                .iter()
                .any(|n| n == want)
            {
                return Ok(pem.clone());
            }
        }
        let first = candidates.swap_remove(0);
        parse_chain(&first, cert_url)?;
        Ok(first)
    }

    /// Lists the chains the CA offers for a certificate: the default first,
    /// then the alternates.
    pub async fn all_chains(&self, cert_url: &str) -> Result<Vec<String>, AcmeError> {
        let resp = self.post(cert_url, None).await?;
        let mut out = vec![String::from_utf8_lossy(resp.body()).into_owned()];
        for alt in resp.links("alternate") {
            let r = self.post(&alt, None).await?;
            out.push(String::from_utf8_lossy(r.body()).into_owned());
        }
        Ok(out)
    }

    /// Revokes a certificate issued to this account (RFC 8555 §7.6). `reason`
    /// is an RFC 5280 CRLReason code (0 unspecified, 1 keyCompromise, 4
    /// superseded, 5 cessationOfOperation).
    pub async fn revoke(
        &self,
        cert: &CertificateDer<'_>,
        reason: Option<u8>,
    ) -> Result<(), AcmeError> {
        let url = self
            .client
            .directory()
            .revoke_cert
            .clone()
            .ok_or(AcmeError::MissingDirectoryEntry("revokeCert"))?;
        let mut payload = json!({"certificate": b64(cert)});
        if let Some(r) = reason {
            payload["reason"] = r.into();
        }
        self.post(&url, Some(&payload)).await?;
        Ok(())
    }

    /// Issues a certificate from start to finish: order, authorise, CSR,
    /// finalise, wait, download. With a journal, progress is saved before
    /// finalising and an interrupted issuance picks up its order again.
    pub async fn issue(
        &self,
        request: &CertificateRequest,
        solvers: &[Arc<dyn ChallengeSolver>],
        journal: Option<&dyn OrderJournal>,
        poll: PollPolicy,
    ) -> Result<IssuedCertificate, AcmeError> {
        let parsed = request.parsed_names()?;
        let names: Vec<String> = parsed
            .iter()
            .map(|(n, w)| if *w { format!("*.{n}") } else { n.to_string() })
            .collect();
        let resumed = match journal {
            Some(j) => j.load_pending(&names).await?,
            None => None,
        };
        let pre_authorize = request.pre_authorize
            && self.client.directory().new_authz.is_some()
            && !resumed.as_ref().is_some_and(|p| p.matches(request, &names));
        if pre_authorize {
            self.pre_authorize(&names, solvers, poll).await?;
        }
        let resumed = match resumed {
            // Only work still to do is resumed. A `valid` order is history
            // (its certificate was handed out already: a new run must get a
            // new one), an `invalid` or lost one is replaced, and an order
            // for another key type or key is not what was asked for.
            // Reusing valid authorisations is the CA's business.
            Some(p) if p.matches(request, &names) => match self.order(&p.order_url).await {
                Ok(o)
                    if matches!(
                        o.status,
                        OrderStatus::Pending | OrderStatus::Ready | OrderStatus::Processing
                    ) =>
                {
                    Some((p, o))
                }
                _ => None,
            },
            _ => None,
        };
        let (pending, mut order) = match resumed {
            Some(r) => r,
            None => self.start_order(request, &names, journal).await?,
        };
        let url = pending.order_url.clone();
        if order.status == OrderStatus::Pending {
            self.authorize(&order, solvers, poll).await?;
            order = self.wait_order(&url, &[OrderStatus::Ready], poll).await?;
        }
        if order.status == OrderStatus::Ready {
            let csr = make_csr(&names, &pending.key_pem)?;
            order = match self.finalize(&order, &csr).await {
                Ok(o) => o,
                // Someone (an earlier run) finalised already: just wait.
                Err(e) if e.problem().is_some_and(|p| p.is("orderNotReady")) => {
                    self.order(&url).await?
                }
                Err(e) => return Err(e),
            };
        }
        if order.status != OrderStatus::Valid {
            order = self.wait_order(&url, &[OrderStatus::Valid], poll).await?;
        }
        let cert_url = order
            .certificate
            .clone()
            .ok_or_else(|| AcmeError::BadResponse {
                url: url.clone(),
                reason: format!("order is {:?} without a certificate URL", order.status),
            })?;
        let chain_pem = self
            .download(&cert_url, request.preferred_issuer.as_deref())
            .await?;
        Ok(IssuedCertificate {
            chain_pem,
            key_pem: pending.key_pem,
            order_url: url,
            names,
        })
    }

    async fn start_order(
        &self,
        request: &CertificateRequest,
        names: &[String],
        journal: Option<&dyn OrderJournal>,
    ) -> Result<(PendingOrder, Order), AcmeError> {
        let key_pem = match &request.reuse_key_pem {
            Some(pem) => pem.clone(),
            None => generate_certificate_key(request.key_type).await?,
        };
        let (order_url, order) = self
            .new_order_with_profile(
                names,
                request.replaces.as_deref(),
                request.profile.as_deref(),
            )
            .await?;
        let pending = PendingOrder::new(order_url, key_pem, names.to_vec(), request.key_type);
        if let Some(j) = journal {
            j.save_pending(&pending).await?;
        }
        Ok((pending, order))
    }
}

impl crate::client::AcmeClient {
    /// Revokes a certificate by proving control of its own key (RFC 8555
    /// §7.6: the JWS carries the certificate key's `jwk`), for a certificate
    /// whose account is lost. `cert_key_pem` is its PKCS#8 key (ECDSA P-256,
    /// P-384 or RSA).
    pub async fn revoke_with_certificate_key(
        &self,
        cert: &CertificateDer<'_>,
        cert_key_pem: &str,
        reason: Option<u8>,
    ) -> Result<(), AcmeError> {
        let key = crate::key::AccountKey::from_pem(cert_key_pem)?;
        let url = self
            .directory()
            .revoke_cert
            .clone()
            .ok_or(AcmeError::MissingDirectoryEntry("revokeCert"))?;
        let mut payload = json!({"certificate": b64(cert)});
        if let Some(r) = reason {
            payload["reason"] = r.into();
        }
        self.post(&key, crate::key::KeyRef::Jwk, &url, Some(&payload))
            .await?;
        Ok(())
    }
}

/// A fresh certificate key as PKCS#8 PEM, made on tokio's blocking pool:
/// an RSA 4096 key takes long enough to stall a runtime worker.
async fn generate_certificate_key(key_type: KeyType) -> Result<String, AcmeError> {
    tokio::task::spawn_blocking(move || {
        key_type
            .generate()
            .map(|k| k.serialize_pem())
            .map_err(|e| AcmeError::Csr(format!("certificate key ({key_type}): {e}")))
    })
    .await
    .map_err(|e| AcmeError::Csr(format!("certificate key task failed: {e}")))?
}

fn next_wait(
    current: Duration,
    retry_after: Option<std::time::SystemTime>,
    poll: PollPolicy,
) -> Duration {
    if let Some(at) = retry_after
        && let Ok(d) = at.duration_since(std::time::SystemTime::now())
    {
        return d.clamp(poll.initial, poll.max_interval);
    }
    (current * 2).min(poll.max_interval)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn csr_has_exactly_the_names() {
        use x509_parser::prelude::FromDer;
        let key = KeyType::EcdsaP256.generate().unwrap().serialize_pem();
        let names = vec!["mail.example.com".to_owned(), "imap.example.com".to_owned()];
        let der = make_csr(&names, &key).unwrap();
        let (_, csr) =
            x509_parser::certification_request::X509CertificationRequest::from_der(&der).unwrap();
        csr.verify_signature().unwrap();
        let mut found = Vec::new();
        for ext in csr.requested_extensions().unwrap() {
            if let x509_parser::extensions::ParsedExtension::SubjectAlternativeName(san) = ext {
                for n in &san.general_names {
                    found.push(format!("{n}"));
                }
            }
        }
        assert_eq!(
            found,
            vec!["DNSName(mail.example.com)", "DNSName(imap.example.com)"]
        );
    }

    #[test]
    fn back_off_doubles_and_honours_retry_after() {
        let p = PollPolicy::default();
        assert_eq!(
            next_wait(Duration::from_secs(1), None, p),
            Duration::from_secs(2)
        );
        assert_eq!(next_wait(Duration::from_secs(8), None, p), p.max_interval);
        let soon = std::time::SystemTime::now() + Duration::from_secs(3);
        let w = next_wait(Duration::from_secs(8), Some(soon), p);
        assert!(
            w <= Duration::from_secs(3) && w >= Duration::from_secs(2),
            "{w:?}"
        );
    }

    #[test]
    fn wildcard_names_parse() {
        let r = CertificateRequest::new(["*.example.com", "example.com"]);
        let parsed = r.parsed_names().unwrap();
        assert!(parsed[0].1 && !parsed[1].1);
        assert!(
            CertificateRequest::new(["bad name"])
                .parsed_names()
                .is_err()
        );
        assert!(
            CertificateRequest::new(Vec::<String>::new())
                .parsed_names()
                .is_err()
        );
    }
}
