//! HTTP and HTTPS in the four modes of [`WebSecurity`], serving the status
//! page (`/` and `/status.json`, built by [`crate::status`]).
//!
//! The HTTPS listener reads the ClientHello first (`LazyConfigAcceptor`) so a
//! tls-alpn-01 validation hello (RFC 8737) gets the `acme-tls/1`
//! configuration and everything else the `http/1.1` one; both share the
//! resolver, which serves the challenge certificate for the former.
//!
//! Over HTTPS it also serves this server's own MTA-STS policy (RFC 8461
//! §3.3) at `/.well-known/mta-sts.txt` for the hosts `mta-sts.DOMAIN` of
//! the domains in `[mta_sts]`; never over plain HTTP, where senders must
//! not fetch it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HOST, LOCATION};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use mailtls_core::WebSecurity;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::LazyConfigAcceptor;

use crate::server::Shared;
use crate::stream::{HANDSHAKE_TIMEOUT, shutdown_signalled};

pub use crate::status::{
    CertificateStatus, EXPIRY_WARNING_DAYS, ListenerStatus, PublishedPolicyStatus, ResolverStatus,
    Status,
};

type Body = Full<Bytes>;

/// Serves one plain HTTP connection.
pub(crate) async fn serve_http(
    tcp: TcpStream,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    serve_conn(tcp, shared, false, shutdown).await
}

/// Serves one HTTPS connection (or one tls-alpn-01 validation handshake).
pub(crate) async fn serve_https(
    tcp: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let handshake = async {
        let start = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp).await?;
        let acme = mailtls_sni::is_tls_alpn_01(&start.client_hello());
        let config = if acme {
            Arc::clone(&shared.tls.acme)
        } else {
            Arc::clone(&shared.tls.https)
        };
        start.into_stream(config).await.map(|s| (s, acme))
    };
    let (mut tls, acme) = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(r) => r?,
        Err(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "TLS handshake timed out",
            ));
        }
    };
    if acme {
        // RFC 8737 §3: the validation is the handshake; no data follows.
        tracing::info!(%peer, "answered a tls-alpn-01 validation handshake");
        let _ = tls.shutdown().await;
        return Ok(());
    }
    serve_conn(tls, shared, true, shutdown).await
}

async fn serve_conn<I>(
    io: I,
    shared: Arc<Shared>,
    tls: bool,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let shared = Arc::clone(&shared);
        async move { Ok::<_, Infallible>(handle(&req, &shared, tls)) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30));
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = shutdown_signalled(&mut shutdown) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    result.map_err(std::io::Error::other)
}

fn response(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(CONTENT_TYPE, v);
    }
    if let Ok(v) = "no-store".parse() {
        r.headers_mut().insert(CACHE_CONTROL, v);
    }
    r
}

/// A Host header is only echoed into a redirect if it looks like a host
/// (and optional port): nothing that could change the URL's structure.
fn usable_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
}

fn handle(req: &Request<Incoming>, shared: &Shared, tls: bool) -> Response<Body> {
    // ACME http-01 (RFC 8555 §8.3) before any redirect: the CA validates
    // over plain HTTP and follows no redirect to a port it does not know.
    if let Some(r) = crate::acme_run::http01::route(req, shared) {
        return r;
    }
    let path_and_query = req.uri().path_and_query().map_or("/", |p| p.as_str());
    if !tls {
        let host = req
            .headers()
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| usable_host(h))
            .map_or_else(|| shared.config.server.hostname.to_string(), str::to_owned);
        if let Some(location) = shared.web_mode.redirect_location(&host, path_and_query) {
            // 301 is what every client follows for GET; 308 keeps other methods.
            let status = if matches!(*req.method(), Method::GET | Method::HEAD) {
                StatusCode::MOVED_PERMANENTLY
            } else {
                StatusCode::PERMANENT_REDIRECT
            };
            let mut r = response(
                status,
                "text/plain; charset=utf-8",
                format!("Moved to {location}\n"),
            );
            if let Ok(v) = location.parse() {
                r.headers_mut().insert(LOCATION, v);
            }
            return r;
        }
    }
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        let mut r = response(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "Only GET and HEAD\n",
        );
        if let Ok(v) = "GET, HEAD".parse() {
            r.headers_mut().insert(hyper::header::ALLOW, v);
        }
        return r;
    }
    if tls && req.uri().path() == MTA_STS_PATH {
        return mta_sts_policy(req, shared);
    }
    match req.uri().path() {
        "/" => response(
            StatusCode::OK,
            "text/html; charset=utf-8",
            crate::status::html::render(&crate::status::status(shared)),
        ),
        "/status.json" => match serde_json::to_vec_pretty(&crate::status::status(shared)) {
            Ok(json) => response(StatusCode::OK, "application/json", json),
            Err(e) => response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain; charset=utf-8",
                format!("{e}\n"),
            ),
        },
        _ => response(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "Not found\n",
        ),
    }
}

/// Where RFC 8461 §3.3 puts the policy file.
pub const MTA_STS_PATH: &str = "/.well-known/mta-sts.txt";

/// The policy for the Host the request names, as `text/plain`; 404 for a
/// host that is no configured `mta-sts.DOMAIN`.
fn mta_sts_policy(req: &Request<Incoming>, shared: &Shared) -> Response<Body> {
    let host = req
        .headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().host())
        .unwrap_or("");
    // The port, if any, is not part of the name (IPv6 literals never name
    // a policy host, so a plain split is enough).
    let name = host.split(':').next().unwrap_or("");
    // The policies in effect now: a reload (SIGHUP) may have changed them.
    let current = shared.live.current();
    match current.mta_sts.for_policy_host(name) {
        Some(p) => response(StatusCode::OK, "text/plain", p.policy_file().to_owned()),
        None => response(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "No MTA-STS policy is published for this host\n",
        ),
    }
}

/// The mode in effect once the HTTPS port is known: `redirect-to-https`
/// without a port points at the HTTPS listener's real port.
pub(crate) fn effective_mode(mode: WebSecurity, https_port: Option<u16>) -> WebSecurity {
    match (mode, https_port) {
        (WebSecurity::RedirectToHttps { https_port: 0 }, Some(p)) => {
            WebSecurity::RedirectToHttps { https_port: p }
        }
        (m, _) => m,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        assert!(usable_host("mail.example.test:8080"));
        assert!(usable_host("[::1]:8080"));
        assert!(!usable_host("evil.example/path"));
        assert!(!usable_host("a@b"));
    }
}
