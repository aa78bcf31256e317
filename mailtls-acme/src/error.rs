//! Errors, and their classification into permanent, transient and
//! rate-limited-until-a-time, so a scheduler knows whether and when to retry.

use std::time::{Duration, SystemTime};

use serde::Deserialize;

use crate::types::Identifier;

/// The prefix of every ACME error type (RFC 8555 §6.7).
pub const ACME_ERROR_PREFIX: &str = "urn:ietf:params:acme:error:";

/// An RFC 7807 problem document as an ACME server sends it (RFC 8555 §6.7).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(default)]
#[non_exhaustive]
pub struct Problem {
    /// The problem type URI, e.g. `urn:ietf:params:acme:error:badNonce`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A human-readable explanation.
    pub detail: Option<String>,
    /// The HTTP status the server gave.
    pub status: Option<u16>,
    /// The identifier this problem is about (in subproblems).
    pub identifier: Option<Identifier>,
    /// Per-identifier problems (RFC 8555 §6.7.1).
    pub subproblems: Vec<Problem>,
    /// A page for a human to visit (RFC 8555 §7.3.3: where to agree to
    /// changed terms, with `userActionRequired`).
    pub instance: Option<String>,
    /// The terms of service the CA pointed at with a
    /// `Link: <...>;rel="terms-of-service"` header on this error (RFC 8555
    /// §7.3.3). Not part of the document: filled in from the response.
    #[serde(skip)]
    pub terms_of_service: Option<String>,
}

impl Problem {
    /// Whether this is the ACME error `name` (e.g. `"badNonce"`).
    pub fn is(&self, name: &str) -> bool {
        self.kind
            .strip_prefix(ACME_ERROR_PREFIX)
            .is_some_and(|k| k == name)
    }

    /// The ACME error name without its URN prefix, or the full type.
    pub fn short_kind(&self) -> &str {
        self.kind
            .strip_prefix(ACME_ERROR_PREFIX)
            .unwrap_or(&self.kind)
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.short_kind())?;
        if let Some(id) = &self.identifier {
            write!(f, " [{}]", id.value)?;
        }
        if let Some(d) = &self.detail {
            write!(f, ": {d}")?;
        }
        if let Some(tos) = &self.terms_of_service {
            write!(f, " (terms of service: {tos})")?;
        }
        if let Some(page) = &self.instance {
            write!(f, " (see {page})")?;
        }
        for sub in &self.subproblems {
            write!(f, "; {sub}")?;
        }
        Ok(())
    }
}

/// What a caller should do about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Retrying the same request will fail the same way (bad CSR, rejected
    /// identifier, unauthorized, malformed request, broken configuration).
    Permanent,
    /// Retrying later may succeed (network trouble, 5xx, a stuck order).
    Transient,
    /// The CA asked us to wait until this instant (429, or Retry-After on an
    /// error). Schedule the retry; do not loop.
    RateLimited {
        /// The earliest instant to try again.
        until: SystemTime,
    },
}

/// Everything that can go wrong talking to an ACME server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AcmeError {
    /// The HTTP exchange failed (connection, TLS, timeout): no response.
    #[error("HTTP request to {url} failed: {source}")]
    Http {
        /// The request URL.
        url: String,
        /// The HTTP client's error.
        #[source]
        source: crate::http::HttpError,
    },
    /// The server answered with an ACME problem document.
    #[error("ACME server refused {url} (HTTP {status}): {problem}")]
    Server {
        /// The request URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The problem the server described.
        problem: Box<Problem>,
        /// When the server said to retry (Retry-After), if it did.
        retry_after: Option<SystemTime>,
    },
    /// The server's answer could not be understood.
    #[error("unexpected response from {url}: {reason}")]
    BadResponse {
        /// The request URL.
        url: String,
        /// What was wrong with it.
        reason: String,
    },
    /// An account key could not be made, parsed or used.
    #[error("account key: {0}")]
    Key(String),
    /// The certificate key or CSR could not be made.
    #[error("certificate request: {0}")]
    Csr(String),
    /// The client was configured wrongly (bad root certificate, bad EAB key…).
    #[error("configuration: {0}")]
    Config(String),
    /// The directory lacks an entry this operation needs.
    #[error("the ACME directory has no {0} URL")]
    MissingDirectoryEntry(&'static str),
    /// An authorisation became invalid.
    #[error("authorization for {identifier} failed: {}", problem.as_ref().map_or_else(|| "no reason given".to_owned(), ToString::to_string))]
    AuthorizationFailed {
        /// The identifier.
        identifier: String,
        /// The challenge's (or authorisation's) problem.
        problem: Option<Box<Problem>>,
    },
    /// The order became invalid.
    #[error("order {url} failed: {}", problem.as_ref().map_or_else(|| "no reason given".to_owned(), ToString::to_string))]
    OrderFailed {
        /// The order URL.
        url: String,
        /// The order's problem, with subproblems per identifier.
        problem: Option<Box<Problem>>,
    },
    /// No configured solver handles any challenge the CA offered.
    #[error("no solver for {identifier}: the CA offered {offered:?}")]
    NoSolver {
        /// The identifier.
        identifier: String,
        /// The challenge types offered.
        offered: Vec<String>,
    },
    /// A solver could not publish or withdraw a challenge response.
    #[error("{kind} solver failed for {identifier}: {reason}")]
    Solver {
        /// The challenge type.
        kind: String,
        /// The identifier.
        identifier: String,
        /// Why.
        reason: String,
    },
    /// Polling gave up before the object reached the wanted state.
    #[error("gave up waiting for {url} after {waited:?} (last status {status})")]
    Timeout {
        /// The polled URL.
        url: String,
        /// How long we waited.
        waited: Duration,
        /// The last status seen.
        status: String,
    },
    /// Reading or writing the data directory failed.
    #[error("storage at {path}: {source}")]
    Storage {
        /// The file or directory.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A challenge listener could not be opened.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The directory URL answered, but not with an ACME directory (a web
    /// page, a JSON document without `newNonce`/`newAccount`/`newOrder`).
    #[error("{url} is not an ACME directory: {reason}")]
    NotADirectory {
        /// The URL.
        url: String,
        /// What the answer lacked.
        reason: String,
    },
    /// Stored data could not be parsed.
    #[error("stored data at {path} is corrupt: {reason}")]
    CorruptStorage {
        /// The file.
        path: String,
        /// What was wrong.
        reason: String,
    },
}

impl AcmeError {
    /// Classifies the error for retry decisions.
    pub fn class(&self) -> ErrorClass {
        match self {
            // An untrusted or broken server certificate stays so until the
            // operator changes the trusted roots or the URL; anything else
            // on the wire (refused, reset, timed out) may pass.
            AcmeError::Http { source, .. } if tls_certificate_problem(&**source) => {
                ErrorClass::Permanent
            }
            AcmeError::Http { .. } | AcmeError::Timeout { .. } | AcmeError::Solver { .. } => {
                ErrorClass::Transient
            }
            AcmeError::Server {
                status,
                problem,
                retry_after,
                ..
            } => {
                if *status == 429 || problem.is("rateLimited") {
                    // A 429 without Retry-After still must not be hammered.
                    let until = retry_after
                        .unwrap_or_else(|| SystemTime::now() + Duration::from_secs(3600));
                    return ErrorClass::RateLimited { until };
                }
                if let Some(until) = retry_after {
                    return ErrorClass::RateLimited { until: *until };
                }
                if *status >= 500 || problem.is("badNonce") || problem.is("serverInternal") {
                    ErrorClass::Transient
                } else {
                    ErrorClass::Permanent
                }
            }
            AcmeError::BadResponse { .. } => ErrorClass::Transient,
            AcmeError::Storage { .. } | AcmeError::Listen { .. } => ErrorClass::Transient,
            AcmeError::OrderFailed { .. } | AcmeError::AuthorizationFailed { .. } => {
                ErrorClass::Transient
            }
            AcmeError::Key(_)
            | AcmeError::Csr(_)
            | AcmeError::Config(_)
            | AcmeError::MissingDirectoryEntry(_)
            | AcmeError::NoSolver { .. }
            | AcmeError::NotADirectory { .. }
            | AcmeError::CorruptStorage { .. } => ErrorClass::Permanent,
        }
    }

    /// The message with every cause below it, `: `-separated, skipping a
    /// cause whose text the message already holds: reqwest's "error
    /// sending request" alone does not say that the certificate was
    /// untrusted or the connection refused; its causes do.
    pub fn full_message(&self) -> String {
        error_chain(self)
    }

    /// The server's problem document, if this error carries one.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            AcmeError::Server { problem, .. } => Some(problem),
            AcmeError::OrderFailed { problem, .. }
            | AcmeError::AuthorizationFailed { problem, .. } => problem.as_deref(),
            _ => None,
        }
    }
}

/// `error`'s message followed by each cause's that adds something.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !text.is_empty() && !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = cause.source().or_else(|| {
            // io::Error hides the error it wraps from `source()` (it
            // returns that error's own source); look through it.
            cause
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .map(|inner| inner as &(dyn std::error::Error + 'static))
        });
    }
    out
}

/// Whether the causes of an HTTP failure include rustls refusing the
/// server's certificate.
fn tls_certificate_problem(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        let rustls = e.downcast_ref::<rustls::Error>().or_else(|| {
            e.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if matches!(
            rustls,
            Some(
                rustls::Error::InvalidCertificate(_)
                    | rustls::Error::NoCertificatesPresented
                    | rustls::Error::UnsupportedNameType
            )
        ) {
            return true;
        }
        next = e.source().or_else(|| {
            e.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .map(|inner| inner as &(dyn std::error::Error + 'static))
        });
    }
    false
}

/// Parses a Retry-After header value: delay-seconds or an HTTP-date
/// (RFC 9110 §10.2.3), relative to `now`.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<SystemTime> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return now.checked_add(Duration::from_secs(secs));
    }
    httpdate::parse_http_date(value).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn retry_after_seconds_and_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(
            parse_retry_after("120", now),
            Some(now + Duration::from_secs(120))
        );
        // RFC 9110 §5.6.7 example date.
        let d = parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now).unwrap();
        assert_eq!(
            d.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs(),
            784_111_777
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn classification() {
        let problem: Problem = serde_json::from_str(
            r#"{"type":"urn:ietf:params:acme:error:rateLimited","detail":"slow down","extra":1}"#,
        )
        .unwrap();
        let until = SystemTime::now() + Duration::from_secs(86_400);
        let e = AcmeError::Server {
            url: "u".into(),
            status: 429,
            problem: Box::new(problem.clone()),
            retry_after: Some(until),
        };
        assert_eq!(e.class(), ErrorClass::RateLimited { until });
        let e = AcmeError::Server {
            url: "u".into(),
            status: 400,
            problem: Box::new(
                serde_json::from_str(r#"{"type":"urn:ietf:params:acme:error:malformed"}"#).unwrap(),
            ),
            retry_after: None,
        };
        assert_eq!(e.class(), ErrorClass::Permanent);
        let e = AcmeError::Server {
            url: "u".into(),
            status: 503,
            problem: Box::default(),
            retry_after: None,
        };
        assert_eq!(e.class(), ErrorClass::Transient);
    }

    #[test]
    fn untrusted_certificates_are_permanent_and_the_chain_is_shown() {
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let io = std::io::Error::other(tls);
        let e = AcmeError::Http {
            url: "https://ca/dir".into(),
            source: Box::new(Wrapper("error sending request", Some(io))),
        };
        assert_eq!(e.class(), ErrorClass::Permanent);
        let text = e.full_message();
        assert!(text.contains("error sending request"), "{text}");
        assert!(text.contains("invalid peer certificate"), "{text}");
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = AcmeError::Http {
            url: "https://ca/dir".into(),
            source: Box::new(Wrapper("error sending request", Some(refused))),
        };
        assert_eq!(e.class(), ErrorClass::Transient);
        assert!(
            e.full_message().ends_with(": refused"),
            "{}",
            e.full_message()
        );
        let e = AcmeError::NotADirectory {
            url: "u".into(),
            reason: "r".into(),
        };
        assert_eq!(e.class(), ErrorClass::Permanent);
    }

    /// An error with a message and an optional io::Error below it.
    #[derive(Debug)]
    struct Wrapper(&'static str, Option<std::io::Error>);

    impl std::fmt::Display for Wrapper {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Wrapper {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_ref().map(|e| e as _)
        }
    }

    #[test]
    fn user_action_required_names_the_terms() {
        let mut p: Problem = serde_json::from_str(
            r#"{"type":"urn:ietf:params:acme:error:userActionRequired","detail":"new terms",
               "instance":"https://ca/agree"}"#,
        )
        .unwrap();
        p.terms_of_service = Some("https://ca/tos-v2".into());
        let s = p.to_string();
        assert!(s.contains("https://ca/tos-v2"), "{s}");
        assert!(s.contains("https://ca/agree"), "{s}");
    }

    #[test]
    fn problem_with_subproblems_displays_each() {
        let p: Problem = serde_json::from_str(
            r#"{"type":"urn:ietf:params:acme:error:rejectedIdentifier","detail":"bad names",
               "subproblems":[{"type":"urn:ietf:params:acme:error:caa","detail":"CAA forbids",
               "identifier":{"type":"dns","value":"a.example"}}]}"#,
        )
        .unwrap();
        assert!(p.is("rejectedIdentifier"));
        let s = p.to_string();
        assert!(s.contains("caa [a.example]: CAA forbids"), "{s}");
    }
}
