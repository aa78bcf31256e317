//! The transport: directory, nonce pool, signed POSTs with bounded `badNonce`
//! retry (RFC 8555 §6.5), and the HTTP client (reqwest over rustls with the
//! aws-lc-rs provider).

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use reqwest::header::{CONTENT_TYPE, HeaderMap, LINK, LOCATION, RETRY_AFTER, USER_AGENT};
use rustls_pki_types::CertificateDer;
use serde_json::Value;

use crate::error::{AcmeError, Problem, parse_retry_after};
use crate::key::{AccountKey, KeyRef, sign_jws};
use crate::types::Directory;

/// The User-Agent sent unless configured otherwise (RFC 8555 §6.1).
pub const DEFAULT_USER_AGENT: &str = concat!("mailtls-acme/", env!("CARGO_PKG_VERSION"));

/// Let's Encrypt's production directory.
pub const LETS_ENCRYPT_PRODUCTION: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt's staging directory.
pub const LETS_ENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// How to reach and trust an ACME server.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientConfig {
    /// The directory URL.
    pub directory_url: String,
    /// Trust the Mozilla root set (webpki-roots). On for real CAs.
    pub use_webpki_roots: bool,
    /// Extra trusted roots (a test CA such as Pebble's HTTPS certificate).
    pub extra_roots: Vec<CertificateDer<'static>>,
    /// The User-Agent header.
    pub user_agent: String,
    /// How many times one request is retried after `badNonce`.
    pub max_bad_nonce_retries: u32,
    /// Per-request timeout.
    pub request_timeout: Duration,
}

impl ClientConfig {
    /// A configuration for `directory_url` trusting the web PKI.
    pub fn new(directory_url: impl Into<String>) -> Self {
        ClientConfig {
            directory_url: directory_url.into(),
            use_webpki_roots: true,
            extra_roots: Vec::new(),
            user_agent: DEFAULT_USER_AGENT.to_owned(),
            max_bad_nonce_retries: 10,
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
}

/// A response to a successful request.
#[derive(Debug, Clone)]
pub(crate) struct Response {
    pub(crate) url: String,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
}

impl Response {
    pub(crate) fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, AcmeError> {
        serde_json::from_slice(&self.body).map_err(|e| AcmeError::BadResponse {
            url: self.url.clone(),
            reason: format!("unparsable JSON: {e}"),
        })
    }

    pub(crate) fn location(&self) -> Result<String, AcmeError> {
        self.headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| AcmeError::BadResponse {
                url: self.url.clone(),
                reason: "no Location header".into(),
            })
    }

    pub(crate) fn retry_after(&self) -> Option<SystemTime> {
        retry_after(&self.headers)
    }

    /// Targets of `Link: <...>;rel="name"` headers (RFC 8288).
    pub(crate) fn links(&self, rel: &str) -> Vec<String> {
        self.headers
            .get_all(LINK)
            .iter()
            .filter_map(|v| v.to_str().ok())
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

fn retry_after(headers: &HeaderMap) -> Option<SystemTime> {
    headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()))
}

struct Inner {
    http: reqwest::Client,
    directory: Directory,
    directory_url: String,
    nonces: Mutex<Vec<String>>,
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

fn http_err(url: &str) -> impl FnOnce(reqwest::Error) -> AcmeError + '_ {
    move |source| AcmeError::Http {
        url: url.to_owned(),
        source,
    }
}

impl AcmeClient {
    /// Connects: builds the HTTP client and fetches the directory.
    pub async fn new(config: ClientConfig) -> Result<Self, AcmeError> {
        let mut roots = rustls::RootCertStore::empty();
        if config.use_webpki_roots {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        for root in &config.extra_roots {
            roots
                .add(root.clone())
                .map_err(|e| AcmeError::Config(format!("unusable extra root: {e}")))?;
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| AcmeError::Config(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .user_agent(config.user_agent.clone())
            .timeout(config.request_timeout)
            .build()
            .map_err(http_err(&config.directory_url))?;
        let url = config.directory_url.clone();
        let resp = http
            .get(&url)
            .header(USER_AGENT, &config.user_agent)
            .send()
            .await
            .map_err(http_err(&url))?;
        let resp = read_response(&url, resp).await?;
        let directory: Directory = resp.json()?;
        Ok(AcmeClient {
            inner: Arc::new(Inner {
                http,
                directory,
                directory_url: config.directory_url,
                nonces: Mutex::new(Vec::new()),
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

    fn store_nonce(&self, headers: &HeaderMap) {
        if let Some(n) = headers.get("replay-nonce").and_then(|v| v.to_str().ok()) {
            if let Ok(mut pool) = self.inner.nonces.lock() {
                // Bounded: a nonce older than a few dozen is likely stale anyway.
                if pool.len() >= 32 {
                    pool.remove(0);
                }
                pool.push(n.to_owned());
            }
        }
    }

    fn take_nonce(&self) -> Option<String> {
        self.inner.nonces.lock().ok().and_then(|mut p| p.pop())
    }

    async fn fresh_nonce(&self) -> Result<String, AcmeError> {
        if let Some(n) = self.take_nonce() {
            return Ok(n);
        }
        let url = &self.inner.directory.new_nonce;
        let resp = self
            .inner
            .http
            .head(url)
            .send()
            .await
            .map_err(http_err(url))?;
        self.store_nonce(resp.headers());
        if !resp.status().is_success() {
            return Err(AcmeError::BadResponse {
                url: url.clone(),
                reason: format!("newNonce answered HTTP {}", resp.status()),
            });
        }
        self.take_nonce().ok_or_else(|| AcmeError::BadResponse {
            url: url.clone(),
            reason: "no Replay-Nonce header".into(),
        })
    }

    /// Plain GET (certificates from some CAs, ARI).
    pub(crate) async fn get(&self, url: &str) -> Result<Response, AcmeError> {
        let resp = self
            .inner
            .http
            .get(url)
            .send()
            .await
            .map_err(http_err(url))?;
        self.store_nonce(resp.headers());
        read_response(url, resp).await
    }

    /// A signed POST; `payload` `None` is POST-as-GET. Retries `badNonce` with
    /// the nonce from the error response, a bounded number of times.
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
            let resp = self
                .inner
                .http
                .post(url)
                .header(CONTENT_TYPE, "application/jose+json")
                .body(body.to_string())
                .send()
                .await
                .map_err(http_err(url))?;
            self.store_nonce(resp.headers());
            match read_response(url, resp).await {
                Err(AcmeError::Server { problem, .. })
                    if problem.is("badNonce") && attempt < self.inner.max_bad_nonce_retries =>
                {
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

async fn read_response(url: &str, resp: reqwest::Response) -> Result<Response, AcmeError> {
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.map_err(http_err(url))?.to_vec();
    if status.is_success() {
        return Ok(Response {
            url: url.to_owned(),
            headers,
            body,
        });
    }
    let problem = serde_json::from_slice::<Problem>(&body).unwrap_or_else(|_| Problem {
        kind: format!("about:blank (HTTP {status})"),
        detail: Some(String::from_utf8_lossy(&body).chars().take(200).collect()),
        ..Problem::default()
    });
    Err(AcmeError::Server {
        url: url.to_owned(),
        status: status.as_u16(),
        problem: Box::new(problem),
        retry_after: retry_after(&headers),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
