//! The transport: directory, nonce pool, signed POSTs with bounded `badNonce`
//! retry (RFC 8555 §6.5), over an [`HttpClient`] (by default reqwest over
//! rustls with the crypto provider and roots of the [`ClientConfig`]).

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls_pki_types::CertificateDer;
use serde_json::Value;

use crate::error::{AcmeError, Problem, parse_retry_after};
use crate::http::{HttpClient, HttpError, HttpRequest, HttpResponse, Method};
use crate::key::{AccountKey, KeyRef, sign_jws};
use crate::types::Directory;

/// The User-Agent sent unless configured otherwise (RFC 8555 §6.1).
pub const DEFAULT_USER_AGENT: &str = concat!("mailtls-acme/", env!("CARGO_PKG_VERSION"));

/// Let's Encrypt's production directory.
pub const LETS_ENCRYPT_PRODUCTION: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt's staging directory.
pub const LETS_ENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// `badNonce` retries per request unless configured: enough that a CA
/// rejecting 80% of nonces still completes an issuance (0.8^51, about one
/// request in 90,000, runs out), while a CA that rejects every nonce is
/// given up on within a minute (see [`bad_nonce_delay`]).
pub const DEFAULT_BAD_NONCE_RETRIES: u32 = 50;

/// The wait before retry number `retry` (1-based) after `badNonce`: none
/// for the first (the error brought a fresh nonce), then 50 ms doubling to
/// at most one second. A CA that rejects nonces because it is overloaded
/// or resynchronising gets room; one that rejects at random costs little.
pub fn bad_nonce_delay(retry: u32) -> Duration {
    match retry {
        0 | 1 => Duration::ZERO,
        n => Duration::from_millis(50)
            .saturating_mul(1u32 << (n - 2).min(5))
            .min(Duration::from_secs(1)),
    }
}

/// How to reach and trust an ACME server. Start from [`ClientConfig::new`]
/// and chain the `with_*` methods.
///
/// The TLS settings (`use_webpki_roots`, `extra_roots`, `crypto_provider`)
/// configure the default reqwest client and [`ClientConfig::tls_config`];
/// a client passed with [`ClientConfig::with_http_client`] brings its own.
#[derive(Clone)]
#[non_exhaustive]
pub struct ClientConfig {
    /// The directory URL.
    pub directory_url: String,
    /// Trust the Mozilla root set (webpki-roots). On for real CAs when the
    /// `webpki-roots` feature is on (the default); without the feature,
    /// setting it is a configuration error.
    pub use_webpki_roots: bool,
    /// Extra trusted roots (a test CA such as Pebble's HTTPS certificate).
    pub extra_roots: Vec<CertificateDer<'static>>,
    /// The rustls provider for HTTPS. `None`: the process default if one is
    /// installed (`CryptoProvider::install_default`), else the provider of
    /// this crate's feature (`aws-lc-rs`, or `ring`).
    pub crypto_provider: Option<Arc<CryptoProvider>>,
    /// The HTTP client. `None`: a reqwest client built from the TLS
    /// settings above (feature `reqwest`).
    pub http_client: Option<Arc<dyn HttpClient>>,
    /// The User-Agent header.
    pub user_agent: String,
    /// How many times one request is retried after `badNonce` (default
    /// [`DEFAULT_BAD_NONCE_RETRIES`]). The first retry is immediate, with
    /// the fresh nonce the error carried; later ones wait with back-off
    /// ([`bad_nonce_delay`]).
    pub max_bad_nonce_retries: u32,
    /// Per-request timeout, applied around the HTTP client.
    pub request_timeout: Duration,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("directory_url", &self.directory_url)
            .field("use_webpki_roots", &self.use_webpki_roots)
            .field("extra_roots", &self.extra_roots.len())
            .field("crypto_provider", &self.crypto_provider.is_some())
            .field("http_client", &self.http_client.is_some())
            .field("user_agent", &self.user_agent)
            .field("max_bad_nonce_retries", &self.max_bad_nonce_retries)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

impl ClientConfig {
    /// A configuration for `directory_url` trusting the web PKI (with the
    /// `webpki-roots` feature), [`DEFAULT_BAD_NONCE_RETRIES`] `badNonce`
    /// retries, 30 s per request.
    pub fn new(directory_url: impl Into<String>) -> Self {
        ClientConfig {
            directory_url: directory_url.into(),
            use_webpki_roots: cfg!(feature = "webpki-roots"),
            extra_roots: Vec::new(),
            crypto_provider: None,
            http_client: None,
            user_agent: DEFAULT_USER_AGENT.to_owned(),
            max_bad_nonce_retries: DEFAULT_BAD_NONCE_RETRIES,
            request_timeout: Duration::from_secs(30),
        }
    }

    /// Also trusts `root` (e.g. the test CA's certificate).
    #[must_use]
    pub fn with_root(mut self, root: CertificateDer<'static>) -> Self {
        self.extra_roots.push(root);
        self
    }

    /// Trusts only the extra roots, not the web PKI.
    #[must_use]
    pub fn only_extra_roots(mut self) -> Self {
        self.use_webpki_roots = false;
        self
    }

    /// Uses `provider` for HTTPS instead of the default.
    #[must_use]
    pub fn with_crypto_provider(mut self, provider: Arc<CryptoProvider>) -> Self {
        self.crypto_provider = Some(provider);
        self
    }

    /// Sends requests through `client` instead of the default reqwest one.
    #[must_use]
    pub fn with_http_client(mut self, client: Arc<dyn HttpClient>) -> Self {
        self.http_client = Some(client);
        self
    }

    /// Sends `user_agent` as the User-Agent.
    #[must_use]
    pub fn with_user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = user_agent.into();
        self
    }

    /// Retries one request at most `retries` times after `badNonce`.
    #[must_use]
    pub fn with_max_bad_nonce_retries(mut self, retries: u32) -> Self {
        self.max_bad_nonce_retries = retries;
        self
    }

    /// Gives up on one request after `timeout`.
    #[must_use]
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// The rustls client configuration these settings describe: the chosen
    /// provider, its safe default protocol versions, and the roots. For an
    /// embedder who builds its own HTTP client with the same trust.
    pub fn tls_config(&self) -> Result<rustls::ClientConfig, AcmeError> {
        let mut roots = rustls::RootCertStore::empty();
        if self.use_webpki_roots {
            #[cfg(feature = "webpki-roots")]
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            #[cfg(not(feature = "webpki-roots"))]
            return Err(AcmeError::Config(
                "use_webpki_roots needs the `webpki-roots` feature; or trust extra roots only"
                    .into(),
            ));
        }
        for root in &self.extra_roots {
            roots
                .add(root.clone())
                .map_err(|e| AcmeError::Config(format!("unusable extra root: {e}")))?;
        }
        // No roots at all is allowed: a plain-http test CA needs none, and
        // an HTTPS server then fails with the TLS error that says why.
        let provider = self
            .crypto_provider
            .clone()
            .unwrap_or_else(crate::crypto::default_provider);
        Ok(rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| AcmeError::Config(format!("TLS setup: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth())
    }

    fn http_client(&self) -> Result<Arc<dyn HttpClient>, AcmeError> {
        if let Some(c) = &self.http_client {
            return Ok(Arc::clone(c));
        }
        #[cfg(feature = "reqwest")]
        {
            let client = crate::http::ReqwestClient::new(self.tls_config()?).map_err(|source| {
                AcmeError::Http {
                    url: self.directory_url.clone(),
                    source,
                }
            })?;
            Ok(Arc::new(client))
        }
        #[cfg(not(feature = "reqwest"))]
        Err(AcmeError::Config(
            "no HTTP client: pass one with ClientConfig::with_http_client, or enable the `reqwest` feature"
                .into(),
        ))
    }
}

/// A response to a successful request.
#[derive(Debug, Clone)]
pub(crate) struct Response {
    pub(crate) url: String,
    pub(crate) http: HttpResponse,
}

impl Response {
    pub(crate) fn body(&self) -> &[u8] {
        &self.http.body
    }

    pub(crate) fn into_body(self) -> Vec<u8> {
        self.http.body
    }

    pub(crate) fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, AcmeError> {
        serde_json::from_slice(&self.http.body).map_err(|e| AcmeError::BadResponse {
            url: self.url.clone(),
            reason: format!("unparsable JSON: {e}"),
        })
    }

    pub(crate) fn location(&self) -> Result<String, AcmeError> {
        self.http
            .header("location")
            .map(str::to_owned)
            .ok_or_else(|| AcmeError::BadResponse {
                url: self.url.clone(),
                reason: "no Location header".into(),
            })
    }

    pub(crate) fn retry_after(&self) -> Option<SystemTime> {
        retry_after(&self.http)
    }

    /// Targets of `Link: <...>;rel="name"` headers (RFC 8288).
    pub(crate) fn links(&self, rel: &str) -> Vec<String> {
        self.http
            .header_values("link")
            .flat_map(|v| v.split(','))
            .filter_map(|link| parse_link(link, rel))
            .collect()
    }
}

fn parse_link(link: &str, rel: &str) -> Option<String> {
    let mut parts = link.split(';');
    let target = parts.next()?.trim().strip_prefix('<')?.strip_suffix('>')?;
    parts
        .any(|p| {
            let p = p.trim();
            p.strip_prefix("rel=")
                .map(|v| v.trim_matches('"').split(' ').any(|r| r == rel))
                .unwrap_or(false)
        })
        .then(|| target.to_owned())
}

fn retry_after(resp: &HttpResponse) -> Option<SystemTime> {
    resp.header("retry-after")
        .and_then(|v| parse_retry_after(v, SystemTime::now()))
}

/// No response within the configured request timeout.
#[derive(Debug, thiserror::Error)]
#[error("no response within {0:?}")]
struct TimedOut(Duration);

/// Moves requests: the HTTP client plus what every request gets (the
/// User-Agent, the timeout) and the nonce pool fed by every response.
struct Transport {
    http: Arc<dyn HttpClient>,
    user_agent: String,
    timeout: Duration,
    nonces: Mutex<Vec<String>>,
}

impl Transport {
    /// Sends one request with the User-Agent and the timeout, harvesting
    /// any `Replay-Nonce` whatever the status.
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, AcmeError> {
        let url = request.url.clone();
        let request = request.with_header("user-agent", self.user_agent.clone());
        let resp = tokio::time::timeout(self.timeout, self.http.request(request))
            .await
            .map_err(|_| HttpError::from(Box::new(TimedOut(self.timeout))))
            .and_then(|r| r)
            .map_err(|source| AcmeError::Http {
                url: url.clone(),
                source,
            })?;
        self.store_nonce(&resp);
        Ok(resp)
    }

    fn store_nonce(&self, resp: &HttpResponse) {
        if let Some(n) = resp.header("replay-nonce")
            && let Ok(mut pool) = self.nonces.lock()
        {
            // Bounded: a nonce older than a few dozen is likely stale anyway.
            if pool.len() >= 32 {
                pool.remove(0);
            }
            pool.push(n.to_owned());
        }
    }

    fn take_nonce(&self) -> Option<String> {
        self.nonces.lock().ok().and_then(|mut p| p.pop())
    }
}

struct Inner {
    transport: Transport,
    directory: Directory,
    directory_url: String,
    max_bad_nonce_retries: u32,
}

/// A connection to one ACME server. Cheap to clone; share it.
#[derive(Clone)]
pub struct AcmeClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AcmeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcmeClient")
            .field("directory_url", &self.inner.directory_url)
            .finish_non_exhaustive()
    }
}

impl AcmeClient {
    /// Connects: sets up the HTTP client and fetches the directory.
    pub async fn new(config: ClientConfig) -> Result<Self, AcmeError> {
        let transport = Transport {
            http: config.http_client()?,
            user_agent: config.user_agent,
            timeout: config.request_timeout,
            nonces: Mutex::new(Vec::new()),
        };
        let url = config.directory_url;
        let resp = transport.send(HttpRequest::new(Method::Get, &url)).await?;
        let directory = read_response(&url, resp)?;
        // Anything that does not parse as a directory is the wrong URL, not
        // a passing fault: say so, and do not ask to retry.
        let directory: Directory =
            serde_json::from_slice(directory.body()).map_err(|e| AcmeError::NotADirectory {
                url: url.clone(),
                reason: format!("the answer is not an ACME directory object ({e})"),
            })?;
        Ok(AcmeClient {
            inner: Arc::new(Inner {
                transport,
                directory,
                directory_url: url,
                max_bad_nonce_retries: config.max_bad_nonce_retries,
            }),
        })
    }

    /// The server's directory.
    pub fn directory(&self) -> &Directory {
        &self.inner.directory
    }

    /// The directory URL.
    pub fn directory_url(&self) -> &str {
        &self.inner.directory_url
    }

    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, AcmeError> {
        self.inner.transport.send(request).await
    }

    async fn fresh_nonce(&self) -> Result<String, AcmeError> {
        if let Some(n) = self.inner.transport.take_nonce() {
            return Ok(n);
        }
        let url = &self.inner.directory.new_nonce;
        let resp = self.send(HttpRequest::new(Method::Head, url)).await?;
        if !resp.is_success() {
            return Err(AcmeError::BadResponse {
                url: url.clone(),
                reason: format!("newNonce answered HTTP {}", resp.status),
            });
        }
        self.inner
            .transport
            .take_nonce()
            .ok_or_else(|| AcmeError::BadResponse {
                url: url.clone(),
                reason: "no Replay-Nonce header".into(),
            })
    }

    /// Plain GET (the directory, ARI).
    pub(crate) async fn get(&self, url: &str) -> Result<Response, AcmeError> {
        let resp = self.send(HttpRequest::new(Method::Get, url)).await?;
        read_response(url, resp)
    }

    /// A signed POST; `payload` `None` is POST-as-GET. Retries `badNonce` with
    /// the nonce from the error response, a bounded number of times, with
    /// the back-off of [`bad_nonce_delay`].
    pub(crate) async fn post(
        &self,
        key: &AccountKey,
        key_ref: KeyRef<'_>,
        url: &str,
        payload: Option<&Value>,
    ) -> Result<Response, AcmeError> {
        let mut attempt = 0;
        loop {
            let nonce = self.fresh_nonce().await?;
            let body = sign_jws(key, key_ref, Some(&nonce), url, payload)?;
            let request = HttpRequest::new(Method::Post, url)
                .with_header("content-type", "application/jose+json")
                .with_body(body.to_string().into_bytes());
            let resp = self.send(request).await?;
            match read_response(url, resp) {
                Err(AcmeError::Server { problem, .. })
                    if problem.is("badNonce") && attempt < self.inner.max_bad_nonce_retries =>
                {
                    attempt += 1;
                    let wait = bad_nonce_delay(attempt);
                    if !wait.is_zero() {
                        tokio::time::sleep(wait).await;
                    }
                }
                other => return other,
            }
        }
    }
}

fn read_response(url: &str, resp: HttpResponse) -> Result<Response, AcmeError> {
    if resp.is_success() {
        return Ok(Response {
            url: url.to_owned(),
            http: resp,
        });
    }
    let status = resp.status;
    let mut problem = serde_json::from_slice::<Problem>(&resp.body).unwrap_or_else(|_| Problem {
        kind: format!("about:blank (HTTP {status})"),
        detail: Some(
            String::from_utf8_lossy(&resp.body)
                .chars()
                .take(200)
                .collect(),
        ),
        ..Problem::default()
    });
    // RFC 8555 §7.3.3: changed terms come as userActionRequired with the
    // new terms in a Link header; the operator needs that URL.
    problem.terms_of_service = resp
        .header_values("link")
        .flat_map(|v| v.split(','))
        .find_map(|l| parse_link(l, "terms-of-service"));
    Err(AcmeError::Server {
        url: url.to_owned(),
        status,
        problem: Box::new(problem),
        retry_after: retry_after(&resp),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::account::NewAccountOptions;
    use crate::key::SigningAlgorithm;

    /// A CA in memory behind the HttpClient trait: no reqwest, no socket.
    /// Rejects the first nonce as badNonce, then accepts; records requests.
    #[derive(Default)]
    struct FakeCa {
        seen: Mutex<Vec<HttpRequest>>,
    }

    impl HttpClient for FakeCa {
        fn request(&self, request: HttpRequest) -> crate::http::HttpFuture<'_> {
            Box::pin(async move {
                let mut seen = self.seen.lock().unwrap();
                let nonce = format!("n{}", seen.len());
                let posts = seen.iter().filter(|r| r.method == Method::Post).count();
                let resp = match (request.method, request.url.as_str()) {
                    (Method::Get, "https://ca.test/dir") => HttpResponse::new(
                        200,
                        vec![],
                        br#"{"newNonce":"https://ca.test/nonce","newAccount":"https://ca.test/acct","newOrder":"https://ca.test/order"}"#.to_vec(),
                    ),
                    (Method::Head, "https://ca.test/nonce") => {
                        HttpResponse::new(200, vec![("Replay-Nonce".into(), nonce)], vec![])
                    }
                    (Method::Post, "https://ca.test/acct") if posts == 0 => HttpResponse::new(
                        400,
                        vec![("replay-nonce".into(), nonce)],
                        br#"{"type":"urn:ietf:params:acme:error:badNonce"}"#.to_vec(),
                    ),
                    (Method::Post, "https://ca.test/acct") => HttpResponse::new(
                        201,
                        vec![("location".into(), "https://ca.test/acct/7".into())],
                        br#"{"status":"valid"}"#.to_vec(),
                    ),
                    _ => HttpResponse::new(404, vec![], vec![]),
                };
                seen.push(request);
                Ok(resp)
            })
        }
    }

    fn protected_nonce(request: &HttpRequest) -> String {
        use base64::Engine;
        let jws: Value = serde_json::from_slice(&request.body).unwrap();
        let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(jws["protected"].as_str().unwrap())
            .unwrap();
        let header: Value = serde_json::from_slice(&header).unwrap();
        header["nonce"].as_str().unwrap().to_owned()
    }

    #[tokio::test]
    async fn an_embedders_http_client_carries_the_whole_exchange() {
        let ca = Arc::new(FakeCa::default());
        let config = ClientConfig::new("https://ca.test/dir")
            .with_http_client(ca.clone())
            .with_user_agent("embedder/1");
        let client = AcmeClient::new(config).await.unwrap();
        let key = AccountKey::generate(SigningAlgorithm::Es256).unwrap();
        let account = client
            .new_account(key, &NewAccountOptions::with_email("a@example.com"))
            .await
            .unwrap();
        assert_eq!(account.url(), "https://ca.test/acct/7");
        let seen = ca.seen.lock().unwrap();
        let methods: Vec<Method> = seen.iter().map(|r| r.method).collect();
        assert_eq!(
            methods,
            [Method::Get, Method::Head, Method::Post, Method::Post]
        );
        assert!(
            seen.iter()
                .all(|r| r.header("user-agent") == Some("embedder/1"))
        );
        assert_eq!(
            seen[2].header("content-type"),
            Some("application/jose+json")
        );
        // The retry used the nonce harvested from the badNonce answer.
        assert_eq!(protected_nonce(&seen[2]), "n1");
        assert_eq!(protected_nonce(&seen[3]), "n2");
    }

    /// A client that never answers.
    struct Silent;

    impl HttpClient for Silent {
        fn request(&self, _request: HttpRequest) -> crate::http::HttpFuture<'_> {
            Box::pin(std::future::pending())
        }
    }

    #[tokio::test]
    async fn the_timeout_applies_to_any_http_client() {
        let config = ClientConfig::new("https://ca.test/dir")
            .with_http_client(Arc::new(Silent))
            .with_request_timeout(Duration::from_millis(50));
        let err = AcmeClient::new(config).await.unwrap_err();
        assert!(
            matches!(&err, AcmeError::Http { url, .. } if url == "https://ca.test/dir"),
            "{err}"
        );
        assert!(err.to_string().contains("no response within"), "{err}");
        assert_eq!(err.class(), crate::error::ErrorClass::Transient);
    }

    #[test]
    fn bad_nonce_back_off_is_capped() {
        assert_eq!(bad_nonce_delay(1), Duration::ZERO);
        assert_eq!(bad_nonce_delay(2), Duration::from_millis(50));
        assert_eq!(bad_nonce_delay(3), Duration::from_millis(100));
        assert_eq!(bad_nonce_delay(7), Duration::from_secs(1));
        assert_eq!(bad_nonce_delay(u32::MAX), Duration::from_secs(1));
        // The default budget: under a minute of waiting in all.
        let total: Duration = (1..=DEFAULT_BAD_NONCE_RETRIES).map(bad_nonce_delay).sum();
        assert!(total < Duration::from_secs(60), "{total:?}");
    }

    #[test]
    fn link_header_parsing() {
        assert_eq!(
            parse_link(r#"<https://ca/cert/1/1>;rel="alternate""#, "alternate"),
            Some("https://ca/cert/1/1".into())
        );
        assert_eq!(
            parse_link(r#"<https://ca/dir>; rel="index""#, "alternate"),
            None
        );
        assert_eq!(parse_link("garbage", "alternate"), None);
    }
}
