//! HTTP and HTTPS in the four modes of [`WebSecurity`], serving a status
//! page (`/` and `/status.json`) about the certificates and the resolver.
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
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HOST, LOCATION};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use mailtls_core::WebSecurity;
use mailtls_sni::CertSummary;
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::LazyConfigAcceptor;

use crate::server::{ListenerInfo, Shared};
use crate::stream::{HANDSHAKE_TIMEOUT, shutdown_signalled};

/// Certificates expiring within this many days are listed separately.
pub const EXPIRY_WARNING_DAYS: u64 = 30;

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
            status_html(&status(shared)),
        ),
        "/status.json" => match serde_json::to_vec_pretty(&status(shared)) {
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
    match shared.config.mta_sts.for_policy_host(name) {
        Some(p) => response(StatusCode::OK, "text/plain", p.policy_file().to_owned()),
        None => response(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "No MTA-STS policy is published for this host\n",
        ),
    }
}

/// The status report served as `/status.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// The main host name.
    pub hostname: String,
    /// Every listener.
    pub listeners: Vec<ListenerStatus>,
    /// The resolver's counters.
    pub resolver: ResolverStatus,
    /// Every certificate served, in load order.
    pub certificates: Vec<CertificateStatus>,
    /// Those expiring within [`EXPIRY_WARNING_DAYS`] (or expired), soonest first.
    pub expiring_soon: Vec<CertificateStatus>,
    /// The MTA-STS policies this server publishes for its own domains.
    pub mta_sts: Vec<PublishedPolicyStatus>,
}

/// One of this server's own MTA-STS policies in the status report.
#[derive(Debug, Clone, Serialize)]
pub struct PublishedPolicyStatus {
    /// The policy domain.
    pub domain: String,
    /// Where senders fetch it.
    pub url: String,
    /// `enforce`, `testing` or `none`.
    pub mode: String,
    /// The `mx` patterns.
    pub mx: Vec<String>,
    /// Cache lifetime in seconds.
    pub max_age: u32,
    /// The id the `_mta-sts` record must carry.
    pub id: String,
    /// The `_smtp._tls` record text, if TLS reports are asked for.
    pub tlsrpt: Option<String>,
}

/// One listener in the status report.
#[derive(Debug, Clone, Serialize)]
pub struct ListenerStatus {
    /// Config name (`smtp`, `imaps`, `https`...).
    pub name: String,
    /// Bound address.
    pub address: String,
    /// Security mode word.
    pub mode: String,
}

/// The resolver's counters in the status report.
#[derive(Debug, Clone, Serialize)]
pub struct ResolverStatus {
    /// Reload generation.
    pub generation: u64,
    /// Certificates served.
    pub certificates: usize,
    /// Handshakes that matched a name (exact or wildcard).
    pub hits: u64,
    /// Of those, exact matches.
    pub exact_hits: u64,
    /// Of those, wildcard matches.
    pub wildcard_hits: u64,
    /// Handshakes that got the default certificate or were refused.
    pub misses: u64,
    /// Of those, no SNI.
    pub default_no_sni: u64,
    /// Of those, an SNI that matched nothing.
    pub default_no_match: u64,
    /// Of those, refused.
    pub refused: u64,
    /// tls-alpn-01 challenge certificates served.
    pub challenges_served: u64,
    /// Successful reloads.
    pub reloads: u64,
    /// Refused reloads.
    pub failed_reloads: u64,
    /// Why the last reload failed, if it did.
    pub last_reload_error: Option<String>,
}

/// One certificate in the status report.
#[derive(Debug, Clone, Serialize)]
pub struct CertificateStatus {
    /// Names it is served for.
    pub names: Vec<String>,
    /// Subject DN.
    pub subject: String,
    /// Issuer DN.
    pub issuer: String,
    /// Key algorithm, e.g. `ECDSA P-256`.
    pub key_type: String,
    /// notBefore, RFC 3339.
    pub not_before: String,
    /// notAfter, RFC 3339.
    pub not_after: String,
    /// Whole days until notAfter (negative once expired).
    pub days_left: i64,
    /// Where it was loaded from.
    pub source: String,
    /// SHA-256 fingerprint, colon hex.
    pub fingerprint_sha256: String,
}

fn rfc3339(t: SystemTime) -> String {
    OffsetDateTime::from(t)
        .format(&Rfc3339)
        .unwrap_or_else(|_| "?".into())
}

fn days_left(not_after: SystemTime, now: SystemTime) -> i64 {
    let days = |d: Duration| i64::try_from(d.as_secs() / 86_400).unwrap_or(i64::MAX);
    match not_after.duration_since(now) {
        Ok(left) => days(left),
        Err(e) => -days(e.duration()) - 1,
    }
}

fn certificate_status(c: &CertSummary, now: SystemTime) -> CertificateStatus {
    CertificateStatus {
        names: c.names.clone(),
        subject: c.subject.clone(),
        issuer: c.issuer.clone(),
        key_type: c.key.to_string(),
        not_before: rfc3339(c.not_before),
        not_after: rfc3339(c.not_after),
        days_left: days_left(c.not_after, now),
        source: c.source.clone(),
        fingerprint_sha256: c.fingerprint.clone(),
    }
}

/// Builds the status report from the running server's state.
pub(crate) fn status(shared: &Shared) -> Status {
    let now = SystemTime::now();
    let r = &shared.tls.resolver;
    let s = r.stats();
    Status {
        hostname: shared.config.server.hostname.to_string(),
        listeners: shared.listeners.iter().map(ListenerInfo::status).collect(),
        resolver: ResolverStatus {
            generation: s.generation,
            certificates: s.certificates,
            hits: s.exact_hits + s.wildcard_hits,
            exact_hits: s.exact_hits,
            wildcard_hits: s.wildcard_hits,
            misses: s.misses(),
            default_no_sni: s.default_no_sni,
            default_no_match: s.default_no_match,
            refused: s.refused,
            challenges_served: s.challenges_served,
            reloads: s.reloads,
            failed_reloads: s.failed_reloads,
            last_reload_error: s.last_reload_error.clone(),
        },
        certificates: r
            .certificates()
            .iter()
            .map(|c| certificate_status(c, now))
            .collect(),
        expiring_soon: r
            .expiring_within(Duration::from_secs(EXPIRY_WARNING_DAYS * 86_400))
            .iter()
            .map(|c| certificate_status(c, now))
            .collect(),
        mta_sts: shared
            .config
            .mta_sts
            .publications
            .iter()
            .map(|p| PublishedPolicyStatus {
                domain: p.domain.to_string(),
                url: p.policy_url(),
                mode: p.policy.mode().to_string(),
                mx: p.policy.mx().iter().map(ToString::to_string).collect(),
                max_age: p.policy.max_age(),
                id: p.id.as_str().to_owned(),
                tlsrpt: p.tlsrpt_record(),
            })
            .collect(),
    }
}

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn cert_rows(certs: &[CertificateStatus]) -> String {
    let mut out = String::new();
    for c in certs {
        out.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>\n",
            esc(&c.names.join(", ")),
            esc(&c.key_type),
            esc(&c.not_after),
            c.days_left,
            esc(&c.subject),
            esc(&c.source),
            esc(&c.fingerprint_sha256),
        ));
    }
    out
}

fn status_html(s: &Status) -> String {
    let head = "<tr><th>names</th><th>key</th><th>expires</th><th>days left</th><th>subject</th><th>source</th><th>SHA-256 fingerprint</th></tr>\n";
    let listeners: String = s
        .listeners
        .iter()
        .map(|l| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                esc(&l.name),
                esc(&l.address),
                esc(&l.mode)
            )
        })
        .collect();
    let r = &s.resolver;
    let mta_sts = if s.mta_sts.is_empty() {
        "<p>No MTA-STS policy is published ([mta_sts] domains is empty).</p>\n".to_owned()
    } else {
        let rows: String = s
            .mta_sts
            .iter()
            .map(|p| {
                format!(
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td></tr>\n",
                    esc(&p.url),
                    esc(&p.mode),
                    esc(&p.mx.join(", ")),
                    p.max_age,
                    esc(&p.id),
                    esc(p.tlsrpt.as_deref().unwrap_or("none")),
                )
            })
            .collect();
        format!(
            "<table>\n<tr><th>policy</th><th>mode</th><th>mx</th><th>max_age</th><th>id</th><th>TLS-RPT record</th></tr>\n{rows}</table>\n"
        )
    };
    let expiring = if s.expiring_soon.is_empty() {
        format!("<p>No certificate expires within {EXPIRY_WARNING_DAYS} days.</p>\n")
    } else {
        format!("<table>\n{head}{}</table>\n", cert_rows(&s.expiring_soon))
    };
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>mailtls status: {host}</title>\n\
    <style>body{{font-family:sans-serif}}td,th{{border:1px solid #ccc;padding:2px 6px;text-align:left}}table{{border-collapse:collapse}}</style></head>\n\
    <body><h1>mailtls reference server: {host}</h1>\n\
    <h2>Listeners</h2>\n<table>\n<tr><th>name</th><th>address</th><th>mode</th></tr>\n{listeners}</table>\n\
    <h2>Certificate resolver</h2>\n<table>\n\
    <tr><th>generation</th><td>{gen}</td></tr>\n<tr><th>certificates</th><td>{count}</td></tr>\n\
    <tr><th>hits</th><td>{hits} ({exact} exact, {wild} wildcard)</td></tr>\n\
    <tr><th>misses</th><td>{misses} ({nosni} without SNI, {nomatch} unknown name, {refused} refused)</td></tr>\n\
    <tr><th>reloads</th><td>{reloads} ({failed} refused)</td></tr>\n\
    <tr><th>last reload error</th><td>{err}</td></tr>\n</table>\n\
    <h2>Certificates</h2>\n<table>\n{head}{rows}</table>\n\
    <h2>Expiring within {EXPIRY_WARNING_DAYS} days</h2>\n{expiring}\
    <h2>MTA-STS policies published</h2>\n{mta_sts}\
    <p><a href=\"/status.json\">status.json</a></p>\n</body></html>\n",
        host = esc(&s.hostname),
        gen = r.generation,
        count = r.certificates,
        hits = r.hits,
        exact = r.exact_hits,
        wild = r.wildcard_hits,
        misses = r.misses,
        nosni = r.default_no_sni,
        nomatch = r.default_no_match,
        refused = r.refused,
        reloads = r.reloads,
        failed = r.failed_reloads,
        err = esc(r.last_reload_error.as_deref().unwrap_or("none")),
        rows = cert_rows(&s.certificates),
    )
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
    fn hosts_and_days() {
        assert!(usable_host("mail.example.test:8080"));
        assert!(usable_host("[::1]:8080"));
        assert!(!usable_host("evil.example/path"));
        assert!(!usable_host("a@b"));
        let now = SystemTime::now();
        assert_eq!(days_left(now + Duration::from_secs(86_400 * 3 + 5), now), 3);
        assert_eq!(days_left(now - Duration::from_secs(10), now), -1);
        assert_eq!(esc("<a&\"b\">"), "&lt;a&amp;&quot;b&quot;&gt;");
    }
}
