//! The HTTP exchange under the ACME client, behind a small object-safe
//! trait so an embedder can bring its own client (a hyper client it already
//! runs, a proxy-aware one, a test double).
//!
//! [`HttpClient`] takes one [`HttpRequest`] and returns status, headers and
//! body bytes. The ACME client adds what the protocol needs itself
//! (User-Agent, `Content-Type: application/jose+json`, the per-request
//! timeout), so an implementation only moves bytes. With the `reqwest`
//! feature (on by default), `ReqwestClient` is the implementation used
//! when `ClientConfig` names none.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

/// The error an [`HttpClient`] returns: anything that explains the failure
/// (connection refused, TLS, a broken body).
pub type HttpError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The future an [`HttpClient`] returns.
pub type HttpFuture<'a> =
    Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send + 'a>>;

/// The methods ACME uses (RFC 8555 §6: GET for the directory, HEAD for
/// newNonce, POST for everything signed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Method {
    /// GET.
    Get,
    /// HEAD.
    Head,
    /// POST.
    Post,
}

impl Method {
    /// The method's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One request. Header names are lowercase.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HttpRequest {
    /// The method.
    pub method: Method,
    /// The absolute URL.
    pub url: String,
    /// Header fields, in order, names lowercase.
    pub headers: Vec<(String, String)>,
    /// The body (empty for GET and HEAD).
    pub body: Vec<u8>,
}

impl HttpRequest {
    /// A request without headers or body.
    pub fn new(method: Method, url: impl Into<String>) -> Self {
        HttpRequest {
            method,
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header field (the name is lowercased).
    #[must_use]
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_ascii_lowercase(), value.into()));
        self
    }

    /// Sets the body.
    #[must_use]
    pub fn with_body(mut self, body: Vec<u8>) -> Self {
        self.body = body;
        self
    }

    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        first_header(&self.headers, name)
    }
}

/// One response, whatever its status: the ACME client reads problem
/// documents from error responses and `Replay-Nonce` from every response.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// Header fields, in order; a field sent twice appears twice.
    pub headers: Vec<(String, String)>,
    /// The body bytes.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// A response with `status`, `headers` and `body`.
    pub fn new(status: u16, headers: Vec<(String, String)>, body: Vec<u8>) -> Self {
        HttpResponse {
            status,
            headers,
            body,
        }
    }

    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        first_header(&self.headers, name)
    }

    /// Every value of header `name` (any case), in order.
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        find_header(&self.headers, name)
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

fn first_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn find_header<'a>(
    headers: &'a [(String, String)],
    name: &'a str,
) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Sends one HTTP request and reads the whole response. Object-safe, so the
/// ACME client holds an `Arc<dyn HttpClient>`.
///
/// An implementation follows no redirects (ACME never needs one), returns
/// every status as a response (4xx/5xx included), and fails only when no
/// response arrived. Timeouts are applied by the caller.
pub trait HttpClient: Send + Sync {
    /// Sends `request`.
    fn request(&self, request: HttpRequest) -> HttpFuture<'_>;
}

#[cfg(feature = "reqwest")]
pub use self::reqwest_client::ReqwestClient;

#[cfg(feature = "reqwest")]
mod reqwest_client {
    use super::{HttpClient, HttpFuture, HttpRequest, HttpResponse, Method};

    /// The default [`HttpClient`]: reqwest over rustls with the TLS
    /// configuration it is given (the provider and roots chosen by the
    /// caller; reqwest brings no provider and no roots of its own).
    #[derive(Debug, Clone)]
    pub struct ReqwestClient {
        http: reqwest::Client,
    }

    impl ReqwestClient {
        /// A client speaking TLS with `tls` (see `ClientConfig::tls_config`).
        /// HTTP/2 is negotiated by ALPN when the server offers it; redirects
        /// are not followed (ACME has none, and a redirected POST would
        /// lose its signed body).
        pub fn new(tls: rustls::ClientConfig) -> Result<Self, super::HttpError> {
            let http = reqwest::Client::builder()
                .use_preconfigured_tls(tls)
                .redirect(reqwest::redirect::Policy::none())
                .build()?;
            Ok(ReqwestClient { http })
        }

        /// Wraps a reqwest client the embedder already configured.
        pub fn from_reqwest(http: reqwest::Client) -> Self {
            ReqwestClient { http }
        }
    }

    impl HttpClient for ReqwestClient {
        fn request(&self, request: HttpRequest) -> HttpFuture<'_> {
            Box::pin(async move {
                let method = match request.method {
                    Method::Get => reqwest::Method::GET,
                    Method::Head => reqwest::Method::HEAD,
                    Method::Post => reqwest::Method::POST,
                };
                let mut builder = self.http.request(method, &request.url);
                for (name, value) in &request.headers {
                    builder = builder.header(name.as_str(), value.as_str());
                }
                if !request.body.is_empty() {
                    builder = builder.body(request.body);
                }
                let resp = builder.send().await?;
                let status = resp.status().as_u16();
                let headers = resp
                    .headers()
                    .iter()
                    .filter_map(|(n, v)| {
                        // A header that is not text cannot matter to ACME.
                        v.to_str()
                            .ok()
                            .map(|v| (n.as_str().to_owned(), v.to_owned()))
                    })
                    .collect();
                let body = resp.bytes().await?.to_vec();
                Ok(HttpResponse::new(status, headers, body))
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_found_in_any_case_and_repeated() {
        let r = HttpResponse::new(
            200,
            vec![
                ("Link".into(), "<a>;rel=\"up\"".into()),
                ("replay-nonce".into(), "n".into()),
                ("link".into(), "<b>;rel=\"alternate\"".into()),
            ],
            Vec::new(),
        );
        assert_eq!(r.header("Replay-Nonce"), Some("n"));
        assert_eq!(r.header_values("LINK").count(), 2);
        assert_eq!(r.header("location"), None);
        let q = HttpRequest::new(Method::Post, "https://ca/x").with_header("Content-Type", "a/b");
        assert_eq!(q.header("content-type"), Some("a/b"));
        assert_eq!(q.headers[0].0, "content-type");
    }
}
