//! Outbound delivery: the queue, the resolver, MTA-STS, the TLS-RPT
//! collector and the delivery worker.
//!
//! - [`config`]: the `[outbound]` section.
//! - [`queue`]: the crash-safe queue in `<data_dir>/queue`.
//! - [`client`]: the SMTP client (EHLO, STARTTLS, MAIL/RCPT/DATA).
//! - [`deliver`]: one attempt per recipient domain: plan, sessions, TLS-RPT.
//! - [`dsn`]: delivery status notifications (RFC 3464).
//! - [`retry`]: the retry schedule and the maximum queue age.
//! - [`Outbound`]: what the server holds; [`Outbound::enqueue`] puts a
//!   message in the queue, [`Outbound::status`] summarises it; a worker
//!   task delivers while the server runs.

pub mod client;
pub mod config;
pub mod deliver;
pub mod dsn;
pub mod queue;
pub mod retry;
mod worker;

pub(crate) use worker::start as start_worker;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use mailtls_core::DnsName;
use mailtls_policy::dns::{
    DnsResolver, DnsSetupError, HickoryResolver, HickoryResolverConfig, Validation,
};
use mailtls_policy::mta_sts::{FetcherConfig, MtaSts, PolicyCache, PolicyFetcher};
use mailtls_policy::tlsrpt::{Collector, TlsRptError};
use rustls::RootCertStore;
use serde::Serialize;
use tokio::sync::Notify;

pub use config::{OutboundSection, RelayAddress, RelayHost, RelayTls};
pub use queue::{QueueCounts, QueueError};

use crate::config::Config;
use queue::Queue;

/// Why outbound delivery could not be set up or a message not queued.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutboundError {
    /// The queue failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The resolver could not be built.
    #[error("outbound DNS resolver (config keys outbound.dns_server, outbound.trust_anchor): {0}")]
    Dns(#[from] DnsSetupError),
    /// A CA file could not be read.
    #[error("config key {key}: cannot load CA certificates from {path}: {detail}")]
    Roots {
        /// The config key.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// The TLS-RPT collector could not be opened.
    #[error("TLS-RPT collector: {0}")]
    TlsRpt(#[from] TlsRptError),
    /// The MTA-STS service could not be set up.
    #[error("MTA-STS: {0}")]
    MtaSts(String),
    /// A blocking task failed.
    #[error("outbound task failed: {0}")]
    Task(String),
}

/// One MTA-STS cache entry, for the status page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MtaStsCacheStatus {
    /// The policy domain.
    pub domain: String,
    /// `enforce`, `testing` or `none`; absent when no policy is held.
    pub mode: Option<String>,
    /// The policy's `mx` patterns.
    pub mx: Vec<String>,
    /// When the policy expires (Unix seconds).
    pub expires: Option<u64>,
    /// The last failed refresh, if later than the last success.
    pub last_failure: Option<String>,
}

/// What the status page shows about outbound delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutboundStatus {
    /// Whether outbound delivery is on.
    pub enabled: bool,
    /// `mx` or `relay HOST:PORT`.
    pub route: String,
    /// Messages in the queue.
    pub queued_messages: usize,
    /// Recipients still to be delivered.
    pub pending_recipients: usize,
    /// Pending recipients with at least one failed attempt.
    pub deferred_recipients: usize,
    /// Recipients delivered since start.
    pub delivered_total: u64,
    /// Recipients returned to their sender since start.
    pub bounced_total: u64,
    /// Attempts that ended in "try again later" since start.
    pub deferred_attempts_total: u64,
    /// Messages moved to `<data_dir>/queue/quarantine` at start because
    /// their state file could not be read (kept there for the operator).
    pub quarantined_messages: usize,
    /// The MTA-STS policy cache.
    pub mta_sts_cache: Vec<MtaStsCacheStatus>,
    /// Domains MTA-STS is not applied to (`outbound.mta_sts_exceptions`).
    pub mta_sts_exceptions: Vec<String>,
}

#[derive(Debug, Default)]
struct Counters {
    delivered: AtomicU64,
    bounced: AtomicU64,
    deferred: AtomicU64,
}

/// Outbound delivery as the server holds it.
pub struct Outbound {
    config: OutboundSection,
    hostname: DnsName,
    queue: Queue,
    resolver: Arc<dyn DnsResolver>,
    mta_sts: Option<MtaSts>,
    collector: Arc<Collector>,
    /// WebPKI roots plus `outbound.ca_file`: MX certificates.
    roots: Arc<RootCertStore>,
    /// For a `starttls-required` relay host.
    relay_roots: Arc<RootCertStore>,
    wake: Notify,
    counters: Counters,
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound")
            .field("enabled", &self.config.enabled)
            .field("queue", &self.queue.dir())
            .finish_non_exhaustive()
    }
}

/// The built-in WebPKI roots plus the certificates in `extra` (PEM).
fn roots_with(extra: Option<&PathBuf>, key: &'static str) -> Result<RootCertStore, OutboundError> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = extra {
        crate::tls::add_pem_roots(&mut roots, path).map_err(|detail| OutboundError::Roots {
            key,
            path: path.clone(),
            detail,
        })?;
    }
    Ok(roots)
}

impl Outbound {
    /// Opens the queue, the TLS-RPT collector and the MTA-STS cache in the
    /// data directory and builds the resolver. Blocking (reads files); needs
    /// a tokio runtime for the resolver.
    pub fn open(config: &Config) -> Result<Outbound, OutboundError> {
        Self::open_with_cache(config, None)
    }

    /// [`Outbound::open`] with the MTA-STS cache given (a cache over the
    /// store several nodes share) instead of the data directory's.
    pub fn open_with_cache(
        config: &Config,
        shared_cache: Option<PolicyCache>,
    ) -> Result<Outbound, OutboundError> {
        let section = config.outbound.clone();
        let data = &config.server.data_dir;
        let queue = Queue::open(&data.join("queue"))?;
        let collector = Arc::new(Collector::open(data.join("tlsrpt"))?);
        let validation = match (&section.trust_anchor, section.dnssec) {
            (_, false) => Validation::Off,
            (Some(path), true) => Validation::AnchorFile(path.clone()),
            (None, true) => Validation::Root,
        };
        let dns_config = match section.dns_server {
            Some(addr) => HickoryResolverConfig::nameserver(addr, validation),
            None => HickoryResolverConfig::default().with_validation(validation),
        };
        let resolver: Arc<dyn DnsResolver> = match HickoryResolver::new(dns_config) {
            Ok(r) => Arc::new(r),
            // Without delivery nothing needs the system's resolver; a host
            // without /etc/resolv.conf must still start as a pure sink.
            Err(DnsSetupError::SystemConfig(detail)) if !section.enabled => {
                tracing::warn!(%detail, "no system DNS configuration; outbound lookups go to 127.0.0.1:53");
                let fallback = HickoryResolverConfig::nameserver(
                    std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 53)),
                    Validation::Off,
                );
                Arc::new(HickoryResolver::new(fallback)?)
            }
            Err(e) => return Err(e.into()),
        };
        let roots = Arc::new(roots_with(section.ca_file.as_ref(), "outbound.ca_file")?);
        let relay_roots = Arc::new(match &section.relay {
            Some(r) => roots_with(r.ca_file.as_ref(), "outbound.relay_ca_file")?,
            None => RootCertStore::empty(),
        });
        let mta_sts = if section.mta_sts {
            let mut fetch = FetcherConfig::new(RootCertStore::empty());
            fetch.roots = Arc::clone(&roots);
            fetch.port = section.mta_sts_fetch_port;
            let fetcher = PolicyFetcher::new(
                fetch,
                Arc::clone(&resolver),
                Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
            )
            .map_err(|e| OutboundError::MtaSts(e.to_string()))?;
            let cache = match shared_cache {
                Some(cache) => cache,
                None => PolicyCache::open(&data.join("mta-sts"))
                    .map_err(|e| OutboundError::MtaSts(e.to_string()))?,
            };
            let sts = MtaSts::new(Arc::clone(&resolver), fetcher, cache);
            for d in &section.mta_sts_exceptions {
                sts.add_exception(d.clone());
            }
            Some(sts)
        } else {
            None
        };
        Ok(Outbound {
            config: section,
            hostname: config.server.hostname.clone(),
            queue,
            resolver,
            mta_sts,
            collector,
            roots,
            relay_roots,
            wake: Notify::new(),
            counters: Counters::default(),
        })
    }

    /// Whether mail for other domains is queued (`outbound.enabled`).
    pub fn is_enabled(&self) -> bool {
        self.config.enabled
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &OutboundSection {
        &self.config
    }

    /// The TLS-RPT collector (in `<data_dir>/tlsrpt`) every delivery
    /// attempt's TLS outcome is counted in.
    pub fn collector(&self) -> &Arc<Collector> {
        &self.collector
    }

    /// The DNS resolver outbound delivery uses (DNSSEC-validating unless
    /// `outbound.dnssec = false`).
    pub fn resolver(&self) -> Arc<dyn DnsResolver> {
        Arc::clone(&self.resolver)
    }

    /// Makes `domains` the MTA-STS exception list (a reload); returns
    /// whether it changed.
    pub fn set_mta_sts_exceptions(&self, domains: &[DnsName]) -> bool {
        let Some(sts) = &self.mta_sts else {
            return false;
        };
        let current = sts.exceptions();
        if current.len() == domains.len() && domains.iter().all(|d| current.contains(d)) {
            return false;
        }
        for d in current.iter().filter(|d| !domains.contains(d)) {
            sts.remove_exception(d);
        }
        for d in domains {
            sts.add_exception(d.clone());
        }
        tracing::info!(exceptions = ?domains.iter().map(ToString::to_string).collect::<Vec<_>>(), "MTA-STS exception list changed");
        true
    }

    /// The MTA-STS service, when `outbound.mta_sts` is on.
    pub fn mta_sts(&self) -> Option<&MtaSts> {
        self.mta_sts.as_ref()
    }

    /// Queues a message for `rcpt_to` (all outside the local domains) and
    /// wakes the delivery worker; returns the queue id once the message is
    /// on disk.
    pub async fn enqueue(
        self: &Arc<Self>,
        mail_from: &str,
        rcpt_to: &[String],
        body: Vec<u8>,
    ) -> Result<String, OutboundError> {
        let this = Arc::clone(self);
        let from = mail_from.to_owned();
        let rcpts = rcpt_to.to_vec();
        let id = tokio::task::spawn_blocking(move || this.queue.enqueue(&from, &rcpts, &body))
            .await
            .map_err(|e| OutboundError::Task(e.to_string()))??;
        self.wake.notify_one();
        Ok(id)
    }

    /// The queue's messages and recipients, for inspection.
    pub fn queue_list(&self) -> Vec<queue::MessageState> {
        self.queue.list()
    }

    /// A summary for the status page.
    pub fn status(&self) -> OutboundStatus {
        let counts = self.queue.counts();
        let route = match &self.config.relay {
            Some(r) => format!("relay {}:{}", r.address, r.port),
            None => "mx".to_owned(),
        };
        let mta_sts_cache = self
            .mta_sts
            .as_ref()
            .map(|m| {
                m.cache()
                    .list()
                    .into_iter()
                    .map(|e| MtaStsCacheStatus {
                        domain: e.domain.to_string(),
                        mode: e.policy.as_ref().map(|(_, p)| p.mode().to_string()),
                        mx: e
                            .policy
                            .as_ref()
                            .map(|(_, p)| p.mx().iter().map(ToString::to_string).collect())
                            .unwrap_or_default(),
                        expires: e.expires_at.and_then(|t| {
                            t.duration_since(SystemTime::UNIX_EPOCH)
                                .ok()
                                .map(|d| d.as_secs())
                        }),
                        last_failure: e
                            .last_failure
                            .map(|f| format!("{}: {}", f.result_type, f.detail)),
                    })
                    .collect()
            })
            .unwrap_or_default();
        OutboundStatus {
            enabled: self.config.enabled,
            route,
            queued_messages: counts.messages,
            pending_recipients: counts.pending,
            deferred_recipients: counts.deferred,
            delivered_total: self.counters.delivered.load(Ordering::Relaxed),
            bounced_total: self.counters.bounced.load(Ordering::Relaxed),
            deferred_attempts_total: self.counters.deferred.load(Ordering::Relaxed),
            quarantined_messages: self.queue.quarantined(),
            mta_sts_cache,
            mta_sts_exceptions: self
                .mta_sts
                .as_ref()
                .map(|m| m.exceptions().iter().map(ToString::to_string).collect())
                .unwrap_or_default(),
        }
    }
}
