//! Fetching a policy over HTTPS (RFC 8461 §3.3).
//!
//! The rules: `https://mta-sts.DOMAIN/.well-known/mta-sts.txt`, a server
//! certificate valid for `mta-sts.DOMAIN` by WebPKI against the configured
//! roots, status 200 only, redirects never followed, no HTTP caching, a
//! `text/plain` media type, a size cap and a timeout. Host addresses come
//! from the crate's [`DnsResolver`], so an embedder's resolver (or a test's
//! scripted one pointing at 127.0.0.1) decides where the request goes.

use std::collections::HashMap;
use std::future::Future;
#[cfg(feature = "fetch")]
use std::net::SocketAddr;
use std::pin::Pin;
#[cfg(feature = "fetch")]
use std::sync::Arc;
#[cfg(feature = "fetch")]
use std::time::Duration;

use mailtls_core::DnsName;
#[cfg(feature = "fetch")]
use rustls::RootCertStore;
#[cfg(feature = "fetch")]
use rustls::crypto::CryptoProvider;

use super::parser::{ParsedPolicy, PolicyError, Profile, parse_policy};
use crate::dns::DnsError;
#[cfg(feature = "fetch")]
use crate::dns::{DnsResolver, addresses};
use crate::result_type::ResultType;

/// The default size cap (as postfix-mta-sts-resolver and mox use).
pub const DEFAULT_MAX_SIZE: usize = 64 * 1024;

/// The future a [`FetchPolicy`] returns: boxed so that
/// [`MtaSts`](super::MtaSts) can hold any fetcher as `dyn FetchPolicy`.
pub type FetchFuture<'a> =
    Pin<Box<dyn Future<Output = Result<ParsedPolicy, FetchError>> + Send + 'a>>;

/// Gets and parses the policy file of a domain (RFC 8461 §3.3).
///
/// `PolicyFetcher` (feature `fetch`) does it over HTTPS;
/// [`StaticPolicies`] answers from memory (tests, or an embedder that
/// fetches through its own HTTP stack and hands the text over).
pub trait FetchPolicy: Send + Sync {
    /// The policy of `domain`, or why it could not be had.
    fn fetch_policy<'a>(&'a self, domain: &'a DnsName) -> FetchFuture<'a>;
}

impl<F: FetchPolicy + ?Sized> FetchPolicy for std::sync::Arc<F> {
    fn fetch_policy<'a>(&'a self, domain: &'a DnsName) -> FetchFuture<'a> {
        (**self).fetch_policy(domain)
    }
}

/// Policy files kept in memory, one per domain: a [`FetchPolicy`] with no
/// network, for tests and for seeding an [`MtaSts`](super::MtaSts).
/// A domain without a file fails as a 404 would.
#[derive(Debug, Clone, Default)]
pub struct StaticPolicies {
    files: HashMap<DnsName, String>,
    profile: Profile,
}

impl StaticPolicies {
    /// No policies; files are parsed with the lenient profile.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses files with `profile` instead.
    pub fn with_profile(mut self, profile: Profile) -> Self {
        self.profile = profile;
        self
    }

    /// Serves `text` as the policy file of `domain`.
    pub fn with_policy(mut self, domain: DnsName, text: impl Into<String>) -> Self {
        self.files.insert(domain, text.into());
        self
    }
}

impl FetchPolicy for StaticPolicies {
    fn fetch_policy<'a>(&'a self, domain: &'a DnsName) -> FetchFuture<'a> {
        let url = policy_url(domain, 443);
        let result = match self.files.get(domain) {
            None => Err(FetchError::Status { url, status: 404 }),
            Some(text) => parse_policy(text.as_bytes(), self.profile)
                .map_err(|source| FetchError::Invalid { url, source }),
        };
        Box::pin(std::future::ready(result))
    }
}

/// How the fetcher behaves: [`FetcherConfig::new`] and the `with_*`
/// setters.
#[cfg(feature = "fetch")]
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FetcherConfig {
    /// Roots the policy host's certificate must chain to.
    pub roots: Arc<RootCertStore>,
    /// Time allowed for the whole request (RFC 8461 §3.3 suggests about a
    /// minute).
    pub timeout: Duration,
    /// Largest body accepted, in bytes.
    pub max_size: usize,
    /// Refuse a body whose media type is not `text/plain` (RFC 8461 §3.2
    /// says it SHOULD be).
    pub require_text_plain: bool,
    /// Port to connect to (443 except in tests).
    pub port: u16,
    /// Parser profile for the body.
    pub profile: Profile,
}

#[cfg(feature = "fetch")]
impl FetcherConfig {
    /// Defaults with the given roots: 60 s, 64 KiB, `text/plain` required,
    /// port 443, lenient parsing.
    pub fn new(roots: RootCertStore) -> Self {
        FetcherConfig {
            roots: Arc::new(roots),
            timeout: Duration::from_secs(60),
            max_size: DEFAULT_MAX_SIZE,
            require_text_plain: true,
            port: 443,
            profile: Profile::Lenient,
        }
    }

    /// Sets [`Self::timeout`].
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets [`Self::max_size`].
    pub fn with_max_size(mut self, max_size: usize) -> Self {
        self.max_size = max_size;
        self
    }

    /// Sets [`Self::require_text_plain`].
    pub fn with_require_text_plain(mut self, require: bool) -> Self {
        self.require_text_plain = require;
        self
    }

    /// Sets [`Self::port`].
    pub fn with_port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Sets [`Self::profile`].
    pub fn with_profile(mut self, profile: Profile) -> Self {
        self.profile = profile;
        self
    }
}

/// Why a policy could not be fetched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// `mta-sts.DOMAIN` is not a host name (the domain is too long).
    #[error("mta-sts.{domain} is not a valid host name")]
    BadHost {
        /// The policy domain.
        domain: DnsName,
    },
    /// The policy host has no address.
    #[error("cannot resolve {host}: {source}")]
    Dns {
        /// The policy host.
        host: String,
        /// The DNS failure.
        source: DnsError,
    },
    /// The TLS client could not be configured.
    #[error("cannot set up the HTTPS client: {0}")]
    Setup(String),
    /// The server certificate failed WebPKI validation for the host.
    #[error("{url}: certificate not valid for the policy host: {detail}")]
    Certificate {
        /// The URL.
        url: String,
        /// What the verifier said.
        detail: String,
    },
    /// No timely answer.
    #[error("{url}: timed out")]
    Timeout {
        /// The URL.
        url: String,
    },
    /// Connecting or the TLS handshake failed for another reason.
    #[error("{url}: connection failed: {detail}")]
    Connect {
        /// The URL.
        url: String,
        /// What went wrong.
        detail: String,
    },
    /// A redirect (never followed, RFC 8461 §3.3).
    #[error("{url}: redirect ({status}) to {location:?} not followed")]
    Redirect {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
        /// The Location header, if any.
        location: Option<String>,
    },
    /// A status other than 200.
    #[error("{url}: HTTP status {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The media type is not `text/plain`.
    #[error("{url}: content type {content_type:?} is not text/plain")]
    ContentType {
        /// The URL.
        url: String,
        /// The type received (empty when missing).
        content_type: String,
    },
    /// The body is larger than the cap.
    #[error("{url}: body larger than {limit} bytes")]
    TooLarge {
        /// The URL.
        url: String,
        /// The cap.
        limit: usize,
    },
    /// The body is not a valid policy.
    #[error("{url}: {source}")]
    Invalid {
        /// The URL.
        url: String,
        /// The parser's findings.
        source: PolicyError,
    },
}

impl FetchError {
    /// The TLS-RPT result type for this failure (RFC 8460 §4.3.2).
    pub fn result_type(&self) -> ResultType {
        match self {
            FetchError::Certificate { .. } => ResultType::StsWebpkiInvalid,
            FetchError::ContentType { .. } | FetchError::Invalid { .. } => {
                ResultType::StsPolicyInvalid
            }
            _ => ResultType::StsPolicyFetchError,
        }
    }
}

/// The policy URL for a domain.
pub fn policy_url(domain: &DnsName, port: u16) -> String {
    if port == 443 {
        format!("https://mta-sts.{domain}/.well-known/mta-sts.txt")
    } else {
        format!("https://mta-sts.{domain}:{port}/.well-known/mta-sts.txt")
    }
}

/// Fetches policies over HTTPS.
#[cfg(feature = "fetch")]
#[derive(Clone)]
pub struct PolicyFetcher {
    client: reqwest::Client,
    config: FetcherConfig,
}

#[cfg(feature = "fetch")]
impl std::fmt::Debug for PolicyFetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyFetcher")
            .field("timeout", &self.config.timeout)
            .field("max_size", &self.config.max_size)
            .field("port", &self.config.port)
            .finish_non_exhaustive()
    }
}

/// Lets reqwest resolve through the crate's [`DnsResolver`].
#[cfg(feature = "fetch")]
struct DnsBridge {
    dns: Arc<dyn DnsResolver>,
    port: u16,
}

#[cfg(feature = "fetch")]
impl reqwest::dns::Resolve for DnsBridge {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let dns = Arc::clone(&self.dns);
        let port = self.port;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let host = DnsName::parse(&host)?;
            let addrs = addresses(dns.as_ref(), &host).await?;
            let iter = addrs.into_iter().map(move |ip| SocketAddr::new(ip, port));
            Ok(Box::new(iter) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(feature = "fetch")]
impl FetchPolicy for PolicyFetcher {
    fn fetch_policy<'a>(&'a self, domain: &'a DnsName) -> FetchFuture<'a> {
        Box::pin(self.fetch(domain))
    }
}

#[cfg(feature = "fetch")]
impl PolicyFetcher {
    /// A fetcher that finds policy hosts through `dns` and whose TLS uses
    /// `provider` (the embedder's).
    pub fn new(
        config: FetcherConfig,
        dns: Arc<dyn DnsResolver>,
        provider: Arc<CryptoProvider>,
    ) -> Result<Self, FetchError> {
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| FetchError::Setup(e.to_string()))?
            .with_root_certificates(Arc::clone(&config.roots))
            .with_no_client_auth();
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .https_only(true)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(config.timeout)
            .dns_resolver(Arc::new(DnsBridge {
                dns,
                port: config.port,
            }))
            .build()
            .map_err(|e| FetchError::Setup(e.to_string()))?;
        Ok(PolicyFetcher { client, config })
    }

    /// The configuration.
    pub fn config(&self) -> &FetcherConfig {
        &self.config
    }

    /// Fetches and parses the policy of `domain`.
    pub async fn fetch(&self, domain: &DnsName) -> Result<ParsedPolicy, FetchError> {
        let host = format!("mta-sts.{domain}");
        if DnsName::parse(&host).is_err() {
            return Err(FetchError::BadHost {
                domain: domain.clone(),
            });
        }
        let url = policy_url(domain, self.config.port);
        let response = self
            .client
            .get(&url)
            // RFC 8461 §3.3: HTTP caching MUST NOT be used.
            .header(reqwest::header::CACHE_CONTROL, "no-cache")
            .send()
            .await
            .map_err(|e| classify(&url, &host, e))?;
        let status = response.status();
        if status.is_redirection() {
            return Err(FetchError::Redirect {
                url,
                status: status.as_u16(),
                location: response
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned),
            });
        }
        if status != reqwest::StatusCode::OK {
            return Err(FetchError::Status {
                url,
                status: status.as_u16(),
            });
        }
        if self.config.require_text_plain {
            let content_type = response
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            let essence = content_type
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if essence != "text/plain" {
                return Err(FetchError::ContentType { url, content_type });
            }
        }
        let limit = self.config.max_size;
        if response.content_length().is_some_and(|l| l > limit as u64) {
            return Err(FetchError::TooLarge { url, limit });
        }
        let mut body = Vec::new();
        let mut response = response;
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| classify(&url, &host, e))?
        {
            if body.len() + chunk.len() > limit {
                return Err(FetchError::TooLarge { url, limit });
            }
            body.extend_from_slice(&chunk);
        }
        parse_policy(&body, self.config.profile)
            .map_err(|source| FetchError::Invalid { url, source })
    }
}

/// Sorts a reqwest failure into the kinds TLS-RPT tells apart, by looking
/// through the error's sources for the rustls or DNS error underneath.
#[cfg(feature = "fetch")]
fn classify(url: &str, host: &str, e: reqwest::Error) -> FetchError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(mut err) = source {
        // io::Error hides the error it wraps from source() (and may wrap
        // another io::Error): look inside.
        while let Some(inner) = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            err = inner;
        }
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return match tls {
                rustls::Error::InvalidCertificate(c) => FetchError::Certificate {
                    url: url.to_owned(),
                    detail: format!("{c:?}"),
                },
                other => FetchError::Connect {
                    url: url.to_owned(),
                    detail: other.to_string(),
                },
            };
        }
        if let Some(dns) = err.downcast_ref::<DnsError>() {
            return FetchError::Dns {
                host: host.to_owned(),
                source: dns.clone(),
            };
        }
        source = err.source();
    }
    if e.is_timeout() {
        return FetchError::Timeout {
            url: url.to_owned(),
        };
    }
    FetchError::Connect {
        url: url.to_owned(),
        detail: error_chain(&e),
    }
}

#[cfg(feature = "fetch")]
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mta_sts::PolicyMode;

    #[test]
    fn url_follows_rfc_8461_section_3_3() {
        let d = DnsName::parse("example.com").unwrap();
        assert_eq!(
            policy_url(&d, 443),
            "https://mta-sts.example.com/.well-known/mta-sts.txt"
        );
        assert_eq!(
            policy_url(&d, 8443),
            "https://mta-sts.example.com:8443/.well-known/mta-sts.txt"
        );
    }

    #[test]
    fn failures_map_to_rfc_8460_result_types() {
        let url = "u".to_owned();
        assert_eq!(
            FetchError::Certificate {
                url: url.clone(),
                detail: String::new()
            }
            .result_type(),
            ResultType::StsWebpkiInvalid
        );
        assert_eq!(
            FetchError::Status {
                url: url.clone(),
                status: 404
            }
            .result_type(),
            ResultType::StsPolicyFetchError
        );
        let invalid = parse_policy(b"nonsense", Profile::Lenient).unwrap_err();
        assert_eq!(
            FetchError::Invalid {
                url,
                source: invalid
            }
            .result_type(),
            ResultType::StsPolicyInvalid
        );
        assert_eq!(PolicyMode::Enforce.as_str(), "enforce");
    }
}
