//! Starting and stopping the whole server: certificates, the shared
//! resolver, every listener, the directory watcher and graceful shutdown.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mailtls_core::{DnsName, MailSecurity, WebSecurity};
use mailtls_sni::{DirWatcher, SniResolver, WatchOptions};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::auth::{AuthGuard, Users};
use crate::certs::{self, CertsError, CertsReport};
use crate::config::{BareNewline, Config, ConfigError, MailListener};
use crate::reload::{Live, ReloadReport};
use crate::smtp::SmtpRole;
use crate::spool::{Spool, SpoolError};
use crate::tls::{TlsError, TlsSetup};
use crate::web::ListenerStatus;
use crate::{imap, pop3, smtp, web};

/// How long connections get to finish after shutdown is requested.
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Why the server did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The data directory could not be created.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// First-start certificates could not be made.
    #[error(transparent)]
    Certs(#[from] CertsError),
    /// Certificates or TLS configuration failed.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The spool could not be opened.
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// Outbound delivery (queue, resolver, TLS-RPT collector) could not be set up.
    #[error(transparent)]
    Outbound(#[from] crate::outbound::OutboundError),
    /// TLS-RPT (DKIM key, report outbox, received-report store) could not
    /// be set up.
    #[error(transparent)]
    TlsRpt(#[from] crate::tlsrpt_run::TlsRptRunError),
    /// `[store]`: the shared store could not be opened.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The S/MIME gateway (`[smime]`: key store, partner store, trust
    /// anchors) could not be loaded.
    #[error(transparent)]
    Smime(#[from] crate::smime_path::SmimePathError),
    /// ACME (`[acme]`: CA file, TSIG key, storage) could not be set up.
    #[error(transparent)]
    Acme(#[from] crate::acme_run::AcmeRunError),
    /// A listener could not bind.
    #[error("cannot listen on {addr} (config key {key}): {source}")]
    Bind {
        /// The config key of the port.
        key: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The certificate directory could not be watched.
    #[error("cannot watch the certificate directory: {0}")]
    Watch(String),
    /// A blocking start-up task panicked.
    #[error("start-up task failed: {0}")]
    Task(String),
}

/// What one listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// SMTP in a role.
    Smtp(SmtpRole),
    /// IMAP.
    Imap,
    /// POP3.
    Pop3,
    /// Plain HTTP (content or redirect, by web mode).
    Http,
    /// HTTPS.
    Https,
}

/// One bound listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerInfo {
    /// Its config name (`smtp`, `submission`, ..., `http`, `https`).
    pub name: &'static str,
    /// What it serves.
    pub protocol: Protocol,
    /// The address it got.
    pub addr: SocketAddr,
    /// Its mode, as a config word (`starttls`, `implicit-tls`,
    /// `redirect-to-https:8443`...).
    pub mode: String,
}

impl ListenerInfo {
    pub(crate) fn status(&self) -> ListenerStatus {
        ListenerStatus {
            name: self.name.to_owned(),
            address: self.addr.to_string(),
            mode: self.mode.clone(),
        }
    }
}

/// The bound address of every listener (`None`: not listening).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListenerAddrs {
    /// SMTP (port 25 style).
    pub smtp: Option<SocketAddr>,
    /// Submission with STARTTLS.
    pub submission: Option<SocketAddr>,
    /// Submission over implicit TLS.
    pub submissions: Option<SocketAddr>,
    /// IMAP with STARTTLS.
    pub imap: Option<SocketAddr>,
    /// IMAP over implicit TLS.
    pub imaps: Option<SocketAddr>,
    /// POP3 with STLS.
    pub pop3: Option<SocketAddr>,
    /// POP3 over implicit TLS.
    pub pop3s: Option<SocketAddr>,
    /// Plain HTTP.
    pub http: Option<SocketAddr>,
    /// HTTPS.
    pub https: Option<SocketAddr>,
}

impl ListenerAddrs {
    /// The address of a mail listener.
    pub fn mail(&self, which: MailListener) -> Option<SocketAddr> {
        match which {
            MailListener::Smtp => self.smtp,
            MailListener::Submission => self.submission,
            MailListener::Submissions => self.submissions,
            MailListener::Imap => self.imap,
            MailListener::Imaps => self.imaps,
            MailListener::Pop3 => self.pop3,
            MailListener::Pop3s => self.pop3s,
        }
    }

    fn set_mail(&mut self, which: MailListener, addr: SocketAddr) {
        let slot = match which {
            MailListener::Smtp => &mut self.smtp,
            MailListener::Submission => &mut self.submission,
            MailListener::Submissions => &mut self.submissions,
            MailListener::Imap => &mut self.imap,
            MailListener::Imaps => &mut self.imaps,
            MailListener::Pop3 => &mut self.pop3,
            MailListener::Pop3s => &mut self.pop3s,
        };
        *slot = Some(addr);
    }
}

/// What every connection handler needs.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) users: Users,
    /// Failed logins across connections and protocols.
    pub(crate) auth_guard: AuthGuard,
    pub(crate) spool: Spool,
    pub(crate) tls: TlsSetup,
    pub(crate) local_domains: Vec<DnsName>,
    pub(crate) listeners: Vec<ListenerInfo>,
    pub(crate) web_mode: WebSecurity,
    /// What a reload (SIGHUP) may change: the policies in effect.
    pub(crate) live: Arc<Live>,
    /// The outbound queue and delivery.
    pub(crate) outbound: Arc<crate::outbound::Outbound>,
    /// TLS-RPT: daily reports from the outbound collector, received reports.
    pub(crate) tlsrpt: Option<Arc<crate::tlsrpt_run::TlsRptRun>>,
    /// The S/MIME gateway on the message path; `None` unless `smime.enabled`.
    pub(crate) smime: Option<Arc<crate::smime_path::SmimePath>>,
    /// ACME certificates and the http-01 tokens; `None` unless `acme.enabled`.
    pub(crate) acme: Option<Arc<crate::acme_run::AcmeRun>>,
    /// The state shared with other nodes; `None` with `[store] kind = "file"`.
    pub(crate) cluster: Option<Arc<crate::store::Cluster>>,
}

/// The reference server.
#[derive(Debug)]
pub struct Server;

/// A started server: its addresses, its resolver, and the way to stop it.
/// Dropping it stops the server too (without waiting).
#[derive(Debug)]
pub struct RunningServer {
    addrs: ListenerAddrs,
    listeners: Vec<ListenerInfo>,
    resolver: Arc<SniResolver>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    watcher: Option<DirWatcher>,
    certs: CertsReport,
    config: Config,
    live: Arc<Live>,
    tlsrpt: Option<Arc<crate::tlsrpt_run::TlsRptRun>>,
    acme: Option<Arc<crate::acme_run::AcmeRun>>,
    outbound: Arc<crate::outbound::Outbound>,
}

/// Asks a running server to stop; cheap to clone.
#[derive(Debug, Clone)]
pub struct ShutdownHandle(watch::Sender<bool>);

impl ShutdownHandle {
    /// Stops accepting connections and tells open sessions to finish.
    pub fn shutdown(&self) {
        self.0.send_replace(true);
    }
}

impl Server {
    /// Starts everything the configuration asks for: makes missing test
    /// certificates, loads the certificate directory into one resolver,
    /// binds every listener (port 0 picks a free port) and starts serving.
    /// Must be called inside a multi-threaded tokio runtime.
    pub async fn start(config: Config) -> Result<RunningServer, ServerError> {
        config.validate()?;
        let data_dir = config.server.data_dir.clone();
        mailtls_core::secret_file::ensure_private_dir(&data_dir).map_err(|source| {
            ServerError::DataDir {
                path: data_dir.clone(),
                source,
            }
        })?;
        let spool = Spool::open(&config.spool_dir(), config.server.hostname.as_str())?;
        let cluster = match &config.store {
            crate::store::StoreSection::Postgres(section) => {
                let cluster = crate::store::Cluster::open(section).await?;
                tracing::info!(node = %cluster.node(), "shared state in PostgreSQL");
                Some(Arc::new(cluster))
            }
            crate::store::StoreSection::File => None,
        };
        let shared_cache = match &cluster {
            Some(c) if config.outbound.mta_sts => Some(
                mailtls_policy::mta_sts::PolicyCache::with_store(Arc::new(c.policy_cache.clone()))
                    .await
                    .map_err(|e| ServerError::Task(format!("shared MTA-STS cache: {e}")))?,
            ),
            _ => None,
        };
        let outbound = {
            let config = config.clone();
            tokio::task::spawn_blocking(move || {
                crate::outbound::Outbound::open_with_cache(&config, shared_cache)
            })
            .await
            .map_err(|e| ServerError::Task(e.to_string()))??
        };
        let outbound = Arc::new(outbound);
        let tlsrpt = {
            let config = config.clone();
            let collector = Arc::clone(outbound.collector());
            let dns = outbound.resolver();
            let shared = cluster.as_ref().map(|c| crate::tlsrpt_run::SharedTlsRpt {
                counters: Arc::clone(&c.counters) as _,
                outbox: Arc::clone(&c.outbox) as _,
            });
            tokio::task::spawn_blocking(move || {
                crate::tlsrpt_run::TlsRptRun::with_shared(&config, collector, dns, shared)
            })
            .await
            .map_err(|e| ServerError::Task(e.to_string()))??
        };
        let tlsrpt = Some(Arc::new(tlsrpt));
        let smime = {
            let config = config.clone();
            tokio::task::spawn_blocking(move || crate::smime_path::SmimePath::from_config(&config))
                .await
                .map_err(|e| ServerError::Task(e.to_string()))??
                .map(Arc::new)
        };

        let (certs_report, tls) = {
            let config = config.clone();
            tokio::task::spawn_blocking(move || -> Result<_, ServerError> {
                let report = certs::ensure_certificates(&config)?;
                let cert_dir = config.cert_dir();
                let resolver = crate::tls::load_resolver(&cert_dir, &config.server.hostname)?;
                let tls = TlsSetup::new(&config, resolver)?;
                Ok((report, tls))
            })
            .await
            .map_err(|e| ServerError::Task(e.to_string()))??
        };

        let mut addrs = ListenerAddrs::default();
        let mut listeners = Vec::new();
        let mut bound: Vec<(TcpListener, ListenerInfo, MailSecurity, BareNewline)> = Vec::new();
        let bind = config.server.bind;
        for which in MailListener::ALL {
            let section = config.listener(which);
            if !section.enabled {
                continue;
            }
            let (l, addr) = bind_one(which.port_key(), SocketAddr::new(bind, section.port)).await?;
            addrs.set_mail(which, addr);
            let protocol = match which {
                MailListener::Smtp => Protocol::Smtp(SmtpRole::Mx),
                MailListener::Submission | MailListener::Submissions => {
                    Protocol::Smtp(SmtpRole::Submission)
                }
                MailListener::Imap | MailListener::Imaps => Protocol::Imap,
                MailListener::Pop3 | MailListener::Pop3s => Protocol::Pop3,
            };
            let info = ListenerInfo {
                name: which.name(),
                protocol,
                addr,
                mode: section.security.to_string(),
            };
            bound.push((l, info, section.security, section.bare_newline));
        }
        let mut web_mode = config.web.mode;
        if config.web.enabled {
            // HTTPS binds first: a redirect without a port needs its real port.
            let mut web_bound = Vec::new();
            if web_mode.listens_https() {
                let (l, addr) = bind_one(
                    "web.https_port",
                    SocketAddr::new(bind, config.web.https_port),
                )
                .await?;
                addrs.https = Some(addr);
                web_bound.push((l, "https", Protocol::Https, addr));
            }
            web_mode = web::effective_mode(web_mode, addrs.https.map(|a| a.port()));
            if web_mode.listens_http() {
                let (l, addr) =
                    bind_one("web.http_port", SocketAddr::new(bind, config.web.http_port)).await?;
                addrs.http = Some(addr);
                web_bound.insert(0, (l, "http", Protocol::Http, addr));
            }
            for (l, name, protocol, addr) in web_bound {
                let info = ListenerInfo {
                    name,
                    protocol,
                    addr,
                    mode: web_mode.to_string(),
                };
                bound.push((l, info, MailSecurity::Plain, BareNewline::Reject));
            }
        }
        for (_, info, _, _) in &bound {
            listeners.push(info.clone());
        }

        let resolver = Arc::clone(&tls.resolver);
        let acme = match &config.acme {
            Some(section) => Some(Arc::new(crate::acme_run::AcmeRun::new(
                section.clone(),
                &config,
                Arc::clone(&resolver),
            )?)),
            None => None,
        };
        let watcher = if config.tls.watch {
            let w = mailtls_sni::watch_dir(
                Arc::clone(&resolver),
                config.cert_dir(),
                WatchOptions::default(),
            )
            .map_err(|e| ServerError::Watch(e.to_string()))?;
            Some(w)
        } else {
            None
        };

        let live = Arc::new(Live::new(config.clone(), smime.clone()));
        let shared = Arc::new(Shared {
            live: Arc::clone(&live),
            outbound: Arc::clone(&outbound),
            tlsrpt,
            smime,
            acme,
            cluster: cluster.clone(),
            users: Users::new(&config.users),
            auth_guard: AuthGuard::new(config.server.auth_limits),
            local_domains: config.local_domains(),
            config: config.clone(),
            spool,
            tls,
            listeners: listeners.clone(),
            web_mode,
        });
        if !bind.is_loopback()
            && shared
                .config
                .users
                .iter()
                .any(|u| u.name == "test" && u.password == "test")
        {
            tracing::warn!(%bind, "the test account test/test is reachable beyond loopback");
        }
        if let Some(warning) = web::exposure_warning(&shared.config) {
            tracing::warn!("{warning}");
        }
        if shared.users.is_empty() {
            tracing::warn!("no [[users]] configured: AUTH, LOGIN and USER/PASS will always fail");
        }
        let (shutdown, _) = watch::channel(false);
        let mut tasks = Vec::new();
        if let Some(t) = &shared.tlsrpt {
            let mailer = crate::tlsrpt_run::InternalMailer(Arc::downgrade(&shared));
            t.attach_mailer(Arc::new(mailer));
            tasks.push(tokio::spawn(
                Arc::clone(t).run_schedule(shutdown.subscribe()),
            ));
            if let Some(c) = &cluster {
                tasks.push(tokio::spawn(
                    Arc::clone(t).run_flushes(c.flush_interval(), shutdown.subscribe()),
                ));
            }
        }
        if let Some(c) = &cluster {
            tasks.push(tokio::spawn(Arc::clone(c).heartbeats(shutdown.subscribe())));
        }
        let limits = Limits {
            max_connections: config.server.max_connections,
            per_address: config.server.max_connections_per_address,
        };
        let host = config.server.hostname.to_string();
        for (listener, info, security, bare_newline) in bound {
            let shared = Arc::clone(&shared);
            let rx = shutdown.subscribe();
            tracing::info!(listener = info.name, addr = %info.addr, mode = %info.mode, "listening");
            // Who is refused past a limit is told so in the protocol's own
            // words (over TLS first on an implicit-TLS port).
            let tls_for = |config: &Arc<rustls::ServerConfig>| {
                security
                    .is_implicit()
                    .then(|| crate::stream::acceptor(config))
            };
            let refusal = match info.protocol {
                Protocol::Smtp(_) => Refusal::Say {
                    speech: Speech::Smtp(host.clone()),
                    tls: tls_for(&shared.tls.smtp),
                },
                Protocol::Imap => Refusal::Say {
                    speech: Speech::Imap,
                    tls: tls_for(&shared.tls.mail),
                },
                Protocol::Pop3 => Refusal::Say {
                    speech: Speech::Pop3,
                    tls: tls_for(&shared.tls.mail),
                },
                Protocol::Http => Refusal::Say {
                    speech: Speech::Http,
                    tls: None,
                },
                // An HTTPS refusal would cost a handshake to say what a
                // closed connection says as well.
                Protocol::Https => Refusal::Close,
            };
            let task = match info.protocol {
                Protocol::Smtp(role) => tokio::spawn(accept_loop(
                    info.name,
                    listener,
                    rx,
                    limits,
                    refusal,
                    move |tcp, peer, rx| {
                        smtp::serve(
                            tcp,
                            peer,
                            Arc::clone(&shared),
                            role,
                            security,
                            bare_newline,
                            rx,
                        )
                    },
                )),
                Protocol::Imap => tokio::spawn(accept_loop(
                    info.name,
                    listener,
                    rx,
                    limits,
                    refusal,
                    move |tcp, peer, rx| imap::serve(tcp, peer, Arc::clone(&shared), security, rx),
                )),
                Protocol::Pop3 => tokio::spawn(accept_loop(
                    info.name,
                    listener,
                    rx,
                    limits,
                    refusal,
                    move |tcp, peer, rx| pop3::serve(tcp, peer, Arc::clone(&shared), security, rx),
                )),
                Protocol::Http => tokio::spawn(accept_loop(
                    info.name,
                    listener,
                    rx,
                    limits,
                    refusal,
                    move |tcp, peer, rx| web::serve_http(tcp, peer, Arc::clone(&shared), rx),
                )),
                Protocol::Https => tokio::spawn(accept_loop(
                    info.name,
                    listener,
                    rx,
                    limits,
                    refusal,
                    move |tcp, peer, rx| web::serve_https(tcp, peer, Arc::clone(&shared), rx),
                )),
            };
            tasks.push(task);
        }
        if let Some(worker) = crate::outbound::start_worker(&shared, shutdown.subscribe()) {
            tasks.push(worker);
        }
        // `mailtls-server smime partners|approvals` on the running gateway.
        // Without it the gateway still works; only live administration
        // is missing, so a failure is logged, not fatal.
        #[cfg(unix)]
        if let Some(s) = &shared.smime {
            match crate::smime_path::admin::spawn(Arc::clone(s), shutdown.subscribe()) {
                Ok(task) => tasks.push(task),
                Err(e) => {
                    tracing::error!(error = %e, "no S/MIME admin socket: `mailtls-server smime partners|approvals` cannot reach this server")
                }
            }
        }
        // After the listeners: validation requests may come at once.
        if let Some(a) = &shared.acme {
            tasks.push(a.spawn(&shared, shutdown.subscribe()));
        }
        Ok(RunningServer {
            addrs,
            listeners,
            resolver,
            shutdown,
            tasks,
            watcher,
            certs: certs_report,
            config,
            live,
            tlsrpt: shared.tlsrpt.clone(),
            acme: shared.acme.clone(),
            outbound: Arc::clone(&shared.outbound),
        })
    }
}

async fn bind_one(
    key: &'static str,
    addr: SocketAddr,
) -> Result<(TcpListener, SocketAddr), ServerError> {
    let bind_err = |source| ServerError::Bind { key, addr, source };
    let l = TcpListener::bind(addr).await.map_err(bind_err)?;
    let local = l.local_addr().map_err(bind_err)?;
    Ok((l, local))
}

/// The connection limits of one listener.
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// `server.max_connections`: open connections on the listener.
    max_connections: usize,
    /// `server.max_connections_per_address`: open connections from one
    /// client address on the listener.
    per_address: usize,
}

/// Why a connection is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Over {
    /// The listener's limit.
    Listener,
    /// The client address's limit.
    Address,
}

/// The words a listener's protocol refuses a connection with.
#[derive(Debug, Clone)]
enum Speech {
    /// A `421` greeting (RFC 5321 §3.1), naming the host.
    Smtp(String),
    /// An untagged `BYE` greeting (RFC 3501 §7.1.5).
    Imap,
    /// An `-ERR` greeting (RFC 2449 `SYS/TEMP`).
    Pop3,
    /// `503` with `Retry-After`.
    Http,
}

impl Speech {
    fn text(&self, over: Over) -> String {
        let why = match over {
            Over::Listener => "Too many connections",
            Over::Address => "Too many connections from your address",
        };
        match self {
            Speech::Smtp(host) => format!("421 4.7.0 {host} {why}; try again later\r\n"),
            Speech::Imap => format!("* BYE {why}; try again later\r\n"),
            Speech::Pop3 => format!("-ERR [SYS/TEMP] {why}; try again later\r\n"),
            Speech::Http => {
                let body = format!("{why}; try again later\n");
                format!(
                    "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n\
                     Retry-After: 10\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
            }
        }
    }
}

/// What a listener does with a connection over a limit.
#[derive(Clone)]
enum Refusal {
    /// Says so (after a TLS handshake on an implicit-TLS listener), then
    /// closes.
    Say {
        speech: Speech,
        tls: Option<tokio_rustls::TlsAcceptor>,
    },
    /// Closes at once.
    Close,
}

/// Refusals being said at once, at most, per listener; beyond, a refused
/// connection is closed without a word (a flood must not buy handshakes).
const MAX_REFUSALS_IN_FLIGHT: usize = 32;
/// The shortest time between two "connection limit reached" warnings.
const LIMIT_WARNING_EVERY: Duration = Duration::from_secs(60);
/// How long a refusal may take, handshake included.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(10);

impl Refusal {
    async fn run(self, tcp: TcpStream, peer: SocketAddr, over: Over) {
        let Refusal::Say { speech, tls } = self else {
            return;
        };
        let text = speech.text(over);
        let say = async move {
            let mut conn = match tls {
                Some(acceptor) => crate::stream::Conn::implicit_tls(tcp, peer, &acceptor).await?,
                None => crate::stream::Conn::plain(tcp, peer),
            };
            conn.send(&text).await?;
            conn.close_lingering().await;
            std::io::Result::Ok(())
        };
        if let Ok(Err(e)) = tokio::time::timeout(REFUSAL_TIMEOUT, say).await {
            tracing::debug!(%peer, error = %e, "refusal not delivered");
        }
    }
}

/// One client address's open connections on a listener; the count goes
/// down when this is dropped.
struct AddressSlot {
    counts: Arc<std::sync::Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl AddressSlot {
    /// A slot for `ip`, or `None` when it already has `limit` connections.
    fn take(
        counts: &Arc<std::sync::Mutex<HashMap<IpAddr, usize>>>,
        ip: IpAddr,
        limit: usize,
    ) -> Option<Self> {
        let ip = ip.to_canonical();
        let mut map = counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = map.entry(ip).or_insert(0);
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(AddressSlot {
            counts: Arc::clone(counts),
            ip,
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut map = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = map.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// Accepts until shutdown, then gives open connections [`SHUTDOWN_GRACE`]
/// to finish (each sees the same signal and says goodbye) before aborting.
/// A connection over the listener's limit or its address's gets the
/// listener's [`Refusal`] instead of a session.
async fn accept_loop<F, Fut>(
    name: &'static str,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
    limits: Limits,
    refusal: Refusal,
    handler: F,
) where
    F: Fn(TcpStream, SocketAddr, watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = std::io::Result<()>> + Send + 'static,
{
    let limit = Arc::new(Semaphore::new(limits.max_connections));
    let refusing = Arc::new(Semaphore::new(MAX_REFUSALS_IN_FLIGHT));
    let per_address = Arc::new(std::sync::Mutex::new(HashMap::new()));
    let mut last_warning: Option<tokio::time::Instant> = None;
    let mut refused_since_warning = 0u64;
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of descriptors and the like: wait instead of spinning.
                        tracing::warn!(listener = name, error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let slot = AddressSlot::take(&per_address, peer.ip(), limits.per_address);
                let permit = Arc::clone(&limit).try_acquire_owned();
                let (permit, slot) = match (permit, slot) {
                    (Ok(permit), Some(slot)) => (permit, slot),
                    (_, slot) => {
                        let over = if slot.is_none() { Over::Address } else { Over::Listener };
                        // One warning a minute at most: under a flood a line
                        // per refused connection would fill the log.
                        refused_since_warning += 1;
                        tracing::debug!(listener = name, %peer, ?over, "connection limit reached; refusing");
                        if last_warning.is_none_or(|t| t.elapsed() >= LIMIT_WARNING_EVERY) {
                            tracing::warn!(
                                listener = name,
                                refused = refused_since_warning,
                                "connection limit reached; refusing connections"
                            );
                            last_warning = Some(tokio::time::Instant::now());
                            refused_since_warning = 0;
                        }
                        if let Ok(p) = Arc::clone(&refusing).try_acquire_owned() {
                            let refusal = refusal.clone();
                            conns.spawn(async move {
                                refusal.run(tcp, peer, over).await;
                                drop(p);
                            });
                        }
                        continue;
                    }
                };
                let fut = handler(tcp, peer, shutdown.clone());
                conns.spawn(async move {
                    if let Err(e) = fut.await {
                        tracing::debug!(listener = name, %peer, error = %e, "connection ended with an error");
                    }
                    drop(permit);
                    drop(slot);
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            () = crate::stream::shutdown_signalled(&mut shutdown) => break,
        }
    }
    drop(listener);
    let drain = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
        tracing::warn!(
            listener = name,
            "connections still open after the grace period; closing them"
        );
        conns.abort_all();
    }
}

impl RunningServer {
    /// Where each listener is.
    pub fn addrs(&self) -> &ListenerAddrs {
        &self.addrs
    }

    /// Every listener with its address and mode, in start order.
    pub fn listeners(&self) -> &[ListenerInfo] {
        &self.listeners
    }

    /// The shared certificate resolver.
    pub fn resolver(&self) -> &Arc<SniResolver> {
        &self.resolver
    }

    /// What the first-start certificate maker did.
    pub fn certs_report(&self) -> &CertsReport {
        &self.certs
    }

    /// The configuration it started with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// TLS-RPT: today's counts, reports sent and received, a run on demand.
    pub fn tlsrpt(&self) -> Option<&Arc<crate::tlsrpt_run::TlsRptRun>> {
        self.tlsrpt.as_ref()
    }

    /// ACME: status, the run log, a renewal on demand; `None` unless
    /// `acme.enabled`.
    pub fn acme(&self) -> Option<&Arc<crate::acme_run::AcmeRun>> {
        self.acme.as_ref()
    }

    /// The configuration in effect now: the start configuration with what
    /// reloads have changed (see [`reload`](Self::reload)).
    pub fn current_config(&self) -> Arc<Config> {
        self.live.current()
    }

    /// Reloads certificates (the certificate directory, after making test
    /// certificates for new names if `tls.make_test_certificates` is on)
    /// and the policy settings (`[mta_sts]`, `[tls_rpt]`) from `new`.
    /// Keys that only take effect at start are named in
    /// [`ReloadReport::restart_required`] and logged. All or nothing: on an
    /// invalid configuration (the error names the key) or certificates that
    /// do not load, nothing changes.
    pub async fn reload(&self, new: Config) -> Result<ReloadReport, ServerError> {
        let report = crate::reload::reload(&self.live, &self.resolver, new).await?;
        // The report mailboxes follow `[mta_sts]` rua: set once per reload,
        // not looked up again for every incoming message.
        if let Some(t) = &self.tlsrpt {
            t.update_mailboxes(&self.live.current());
        }
        self.outbound
            .set_mta_sts_exceptions(&self.live.current().outbound.mta_sts_exceptions);
        Ok(report)
    }

    /// Records a reload whose configuration did not even load (a SIGHUP
    /// after a bad edit): logged and shown on the status page like a
    /// refused [`reload`](Self::reload); nothing changes.
    pub fn reload_refused(&self, error: &ConfigError) {
        self.live.refused(error);
    }

    /// A handle that stops the server from elsewhere (a signal handler).
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.shutdown.clone())
    }

    /// Waits until the server has stopped (after a [`ShutdownHandle`] asked).
    pub async fn wait(mut self) {
        for t in std::mem::take(&mut self.tasks) {
            let _ = t.await;
        }
        self.watcher.take();
    }

    /// Stops the server and waits for its listeners and connections to end.
    pub async fn shutdown(self) {
        self.shutdown.send_replace(true);
        self.wait().await;
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
        for t in &self.tasks {
            t.abort();
        }
    }
}
