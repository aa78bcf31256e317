//! HTTP and HTTPS in the four modes of [`WebSecurity`], serving the status
//! page (`/` and `/status.json`, built by [`crate::status`]).
//!
//! The HTTPS listener reads the ClientHello first (`LazyConfigAcceptor`) so a
//! tls-alpn-01 validation hello (RFC 8737) gets the `acme-tls/1`
//! configuration and everything else the `http/1.1` one; both share the
//! resolver, which serves the challenge certificate for the former.
//!
//! The status page tells a lot about the server (certificate paths, the
//! outbound queue, the S/MIME partners), so only clients in
//! `web.status_allowed_networks` (loopback by default) see it freely; the
//! `web.status_users` may see it from elsewhere with HTTP basic
//! authentication over HTTPS. Everything else is `403` (`401` where a login
//! could help). The MTA-STS policy and the ACME challenges stay public.
//!
//! Over HTTPS it also serves this server's own MTA-STS policy (RFC 8461
//! §3.3) at `/.well-known/mta-sts.txt` for the hosts `mta-sts.DOMAIN` of
//! the domains in `[mta_sts]`; never over plain HTTP, where senders must
//! not fetch it.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, HOST, LOCATION, WWW_AUTHENTICATE};
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
    peer: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    serve_conn(tcp, peer, shared, false, shutdown).await
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
    serve_conn(tls, peer, shared, true, shutdown).await
}

async fn serve_conn<I>(
    io: I,
    peer: SocketAddr,
    shared: Arc<Shared>,
    tls: bool,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let shared = Arc::clone(&shared);
        async move { Ok::<_, Infallible>(handle(&req, &shared, tls, peer.ip()).await) }
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

async fn handle(
    req: &Request<Incoming>,
    shared: &Shared,
    tls: bool,
    peer: IpAddr,
) -> Response<Body> {
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
    let path = req.uri().path();
    if matches!(path, "/" | "/status.json") {
        match status_access(req, shared, tls, peer) {
            Access::Allowed => {}
            Access::Forbidden => {
                tracing::info!(%peer, path, "status page refused");
                return response(
                    StatusCode::FORBIDDEN,
                    "text/plain; charset=utf-8",
                    "The status page is not open to your address\n",
                );
            }
            Access::TooManyFailures => {
                return response(
                    StatusCode::TOO_MANY_REQUESTS,
                    "text/plain; charset=utf-8",
                    "Too many failed logins; try again later\n",
                );
            }
            Access::NeedsLogin => {
                let mut r = response(
                    StatusCode::UNAUTHORIZED,
                    "text/plain; charset=utf-8",
                    "The status page needs a login\n",
                );
                r.headers_mut().insert(
                    WWW_AUTHENTICATE,
                    hyper::header::HeaderValue::from_static(
                        "Basic realm=\"mailtls status\", charset=\"UTF-8\"",
                    ),
                );
                return r;
            }
        }
    }
    match path {
        "/" => response(
            StatusCode::OK,
            "text/html; charset=utf-8",
            crate::status::html::render(&crate::status::status(shared).await),
        ),
        "/status.json" => match serde_json::to_vec_pretty(&crate::status::status(shared).await) {
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

/// Whether a request may see the status page.
#[derive(Debug, PartialEq, Eq)]
enum Access {
    Allowed,
    /// Over HTTPS with `web.status_users` set: a (better) login may help.
    NeedsLogin,
    Forbidden,
    /// The address or account failed too often ([`crate::auth::AuthGuard`]).
    TooManyFailures,
}

fn status_access<B>(req: &Request<B>, shared: &Shared, tls: bool, peer: IpAddr) -> Access {
    let web = &shared.config.web;
    if in_networks(peer, &web.status_allowed_networks) {
        return Access::Allowed;
    }
    // Never a password over plain HTTP.
    if !tls || web.status_users.is_empty() {
        return Access::Forbidden;
    }
    let Some((name, password)) = basic_credentials(req) else {
        return Access::NeedsLogin;
    };
    // The same failure counts as for mail logins: an address or account
    // over its limit is refused without a password check.
    if shared.auth_guard.check(peer, Some(&name)).is_err() {
        tracing::debug!(%peer, user = %name, "status page login refused: too many failures");
        return Access::TooManyFailures;
    }
    if web.status_users.contains(&name) && shared.users.verify(&name, &password) {
        shared.auth_guard.succeeded(&name);
        Access::Allowed
    } else {
        tracing::info!(%peer, user = %name, "status page login failed");
        // No pause here: the answer is built synchronously, and the
        // count and the refusal past the limit are what stop guessing.
        let _ = shared.auth_guard.failed(peer, &name);
        Access::NeedsLogin
    }
}

/// Whether `ip` is in one of `networks` (an IPv4-mapped IPv6 address
/// counts as the IPv4 address it carries).
pub(crate) fn in_networks(ip: IpAddr, networks: &[ipnet::IpNet]) -> bool {
    let ip = ip.to_canonical();
    networks.iter().any(|n| n.contains(&ip))
}

/// The user and password of an `Authorization: Basic` header (RFC 7617).
fn basic_credentials<B>(req: &Request<B>) -> Option<(String, String)> {
    let value = req.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (name, password) = text.split_once(':')?;
    Some((name.to_owned(), password.to_owned()))
}

/// The warning to log at start when the status page is reachable from
/// beyond loopback without a password: the web listeners bind to a
/// non-loopback address and `web.status_allowed_networks` holds more than
/// loopback. `None` when there is nothing to warn about.
pub(crate) fn exposure_warning(config: &crate::Config) -> Option<String> {
    if !config.web.enabled || config.server.bind.is_loopback() {
        return None;
    }
    let open: Vec<String> = config
        .web
        .status_allowed_networks
        .iter()
        // A network is loopback only when its first and last address are.
        .filter(|n| !(n.network().is_loopback() && n.broadcast().is_loopback()))
        .map(ToString::to_string)
        .collect();
    if open.is_empty() {
        return None;
    }
    Some(format!(
        "the status page (certificate paths, the outbound queue, S/MIME partners) is open \
         without a password to {}, and the web listeners bind to {}",
        open.join(", "),
        config.server.bind
    ))
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

    #[test]
    fn the_page_is_for_loopback_unless_configured() {
        let mut c = crate::Config::embedded().unwrap();
        let nets = &c.web.status_allowed_networks;
        assert!(in_networks("127.0.0.1".parse().unwrap(), nets));
        assert!(in_networks("127.9.9.9".parse().unwrap(), nets));
        assert!(in_networks("::1".parse().unwrap(), nets));
        assert!(in_networks("::ffff:127.0.0.1".parse().unwrap(), nets));
        assert!(!in_networks("192.0.2.1".parse().unwrap(), nets));
        assert!(!in_networks("2001:db8::1".parse().unwrap(), nets));
        // Loopback bind, or beyond it with the page for loopback only: quiet.
        assert_eq!(exposure_warning(&c), None);
        c.server.bind = "0.0.0.0".parse().unwrap();
        assert_eq!(exposure_warning(&c), None);
        c.web
            .status_allowed_networks
            .push("192.0.2.0/24".parse().unwrap());
        let w = exposure_warning(&c).unwrap();
        assert!(
            w.contains("192.0.2.0/24") && !w.contains("127.0.0.0/8"),
            "{w}"
        );
        c.web.enabled = false;
        assert_eq!(exposure_warning(&c), None);
    }
}
