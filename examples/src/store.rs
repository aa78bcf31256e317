//! `[store]`: where the state several nodes share lives. `file` (the
//! default) keeps everything in the data directory and needs no server;
//! `postgres` shares the MTA-STS cache and the TLS-RPT counts and outbox
//! between every node pointed at the same database and schema, while the
//! outbound queue, the spool and the TLS-RPT counting log stay per node.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mailtls_core::DnsName;
use mailtls_core::postgres::{NodeSeen, PgError, PgPool, PgSchema, PgSettings, PgTls};
use mailtls_policy::postgres::{PgCounters, PgOutbox, PgPolicyCache};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::config::ConfigError;

/// How often a node says it is alive.
const HEARTBEAT: Duration = Duration::from_secs(10);

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// `[store]` as validated.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum StoreSection {
    /// Everything in the data directory (`kind = "file"`, the default).
    #[default]
    File,
    /// Shared state in PostgreSQL (`kind = "postgres"`).
    Postgres(PostgresSection),
}

/// `[store]` with `kind = "postgres"`: [`PostgresSection::new`] and the
/// `with_*` setters, or the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PostgresSection {
    /// `url` (or the first line of `url_file`): a libpq connection string.
    pub url: String,
    /// `schema` (default `mailtls`): every table goes there.
    pub schema: PgSchema,
    /// `pool_size` (default 8).
    pub pool_size: usize,
    /// `tls`: `disable` (default; a database on loopback) or `require`.
    pub tls_required: bool,
    /// `ca_file`: roots for the database's certificate (default: the
    /// public web roots).
    pub ca_file: Option<PathBuf>,
    /// `node_name` (default: `server.hostname`): this node's name in leases
    /// and on the status page; unique per node.
    pub node_name: String,
    /// `flush_seconds` (default 5): how often TLS-RPT counts move from the
    /// local log to the database.
    pub flush_interval: Duration,
}

impl PostgresSection {
    /// The defaults of the config file for `url` and this node's `name`:
    /// schema `mailtls`, 8 connections, no TLS, a flush every 5 seconds.
    pub fn new(url: impl Into<String>, node_name: impl Into<String>) -> Self {
        PostgresSection {
            url: url.into(),
            schema: PgSchema::default(),
            pool_size: 8,
            tls_required: false,
            ca_file: None,
            node_name: node_name.into(),
            flush_interval: Duration::from_secs(5),
        }
    }

    /// Sets [`Self::schema`].
    pub fn with_schema(mut self, schema: PgSchema) -> Self {
        self.schema = schema;
        self
    }

    /// Sets [`Self::flush_interval`].
    pub fn with_flush_interval(mut self, interval: Duration) -> Self {
        self.flush_interval = interval;
        self
    }

    /// Requires TLS, verified against the roots in `ca_file` (`None`: the
    /// public web roots).
    pub fn with_tls(mut self, ca_file: Option<PathBuf>) -> Self {
        self.tls_required = true;
        self.ca_file = ca_file;
        self
    }
}

/// `[store]` as written in the file.
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawStore {
    kind: String,
    url: Option<String>,
    url_file: Option<PathBuf>,
    schema: String,
    pool_size: usize,
    tls: String,
    ca_file: Option<PathBuf>,
    node_name: Option<String>,
    flush_seconds: u64,
}

impl Default for RawStore {
    fn default() -> Self {
        RawStore {
            kind: "file".into(),
            url: None,
            url_file: None,
            schema: "mailtls".into(),
            pool_size: 8,
            tls: "disable".into(),
            ca_file: None,
            node_name: None,
            flush_seconds: 5,
        }
    }
}

impl RawStore {
    pub(crate) fn into_section(self, hostname: &DnsName) -> Result<StoreSection, ConfigError> {
        match self.kind.as_str() {
            "file" => {
                if self.url.is_some() || self.url_file.is_some() {
                    return Err(invalid(
                        "store.url",
                        "only with kind = \"postgres\" (kind is \"file\")",
                    ));
                }
                Ok(StoreSection::File)
            }
            "postgres" => {
                let url = match (self.url, &self.url_file) {
                    (Some(u), None) => u,
                    (None, Some(path)) => std::fs::read_to_string(path)
                        .map_err(|e| invalid("store.url_file", format!("{}: {e}", path.display())))?
                        .lines()
                        .next()
                        .unwrap_or_default()
                        .trim()
                        .to_owned(),
                    (Some(_), Some(_)) => {
                        return Err(invalid("store.url", "give url or url_file, not both"));
                    }
                    (None, None) => {
                        return Err(invalid(
                            "store.url",
                            "kind = \"postgres\" needs url or url_file",
                        ));
                    }
                };
                if url.is_empty() {
                    return Err(invalid("store.url", "empty connection string"));
                }
                url.parse::<mailtls_core::postgres::tokio_postgres::Config>()
                    .map_err(|e| invalid("store.url", e.to_string()))?;
                let schema = PgSchema::new(&self.schema)
                    .map_err(|e| invalid("store.schema", e.to_string()))?;
                let tls_required = match self.tls.as_str() {
                    "disable" => false,
                    "require" => true,
                    other => {
                        return Err(invalid(
                            "store.tls",
                            format!("{other:?}: use \"disable\" or \"require\""),
                        ));
                    }
                };
                if self.ca_file.is_some() && !tls_required {
                    return Err(invalid("store.ca_file", "only with tls = \"require\""));
                }
                if self.pool_size == 0 {
                    return Err(invalid("store.pool_size", "must be at least 1"));
                }
                if self.flush_seconds == 0 {
                    return Err(invalid("store.flush_seconds", "must be at least 1"));
                }
                let node_name = self.node_name.unwrap_or_else(|| hostname.to_string());
                if node_name.is_empty() {
                    return Err(invalid("store.node_name", "must not be empty"));
                }
                Ok(StoreSection::Postgres(PostgresSection {
                    url,
                    schema,
                    pool_size: self.pool_size,
                    tls_required,
                    ca_file: self.ca_file,
                    node_name,
                    flush_interval: Duration::from_secs(self.flush_seconds),
                }))
            }
            other => Err(invalid(
                "store.kind",
                format!("{other:?}: use \"file\" or \"postgres\""),
            )),
        }
    }
}

/// Why the shared store could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database refused or could not be reached.
    #[error("[store] PostgreSQL: {0}")]
    Postgres(#[from] PgError),
    /// `store.ca_file` could not be read.
    #[error("store.ca_file {path}: {message}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
}

/// The open shared store of a node: the pool and the stores built on it.
#[derive(Debug)]
pub struct Cluster {
    pool: PgPool,
    node: String,
    started_at: i64,
    flush_interval: Duration,
    /// The shared MTA-STS cache store.
    pub policy_cache: PgPolicyCache,
    /// The shared TLS-RPT counts.
    pub counters: Arc<PgCounters>,
    /// The shared TLS-RPT outbox.
    pub outbox: Arc<PgOutbox>,
}

/// A node in the status page.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct NodeStatus {
    /// Its name.
    pub name: String,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// Its last heartbeat (RFC 3339).
    pub last_seen: String,
    /// Seconds since then.
    pub seconds_ago: i64,
}

/// A fetch lease held on an MTA-STS domain.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LeaseStatus {
    /// What is leased (`mta-sts DOMAIN`).
    pub what: String,
    /// The node holding it.
    pub holder: String,
    /// Until when (RFC 3339).
    pub until: String,
}

/// `[store]` on the status page.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StoreStatus {
    /// `file` or `postgres`.
    pub kind: String,
    /// The schema (postgres).
    pub schema: Option<String>,
    /// This node's name (postgres).
    pub node: Option<String>,
    /// Every node seen, most recent first (postgres).
    pub nodes: Vec<NodeStatus>,
    /// Leases held now (postgres).
    pub leases: Vec<LeaseStatus>,
    /// What could not be read.
    pub errors: Vec<String>,
}

fn rfc3339(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .map(crate::tlsrpt_run::rfc3339)
        .unwrap_or_default()
}

impl Cluster {
    /// Connects, creates or migrates the tables and says this node is up.
    pub async fn open(section: &PostgresSection) -> Result<Cluster, StoreError> {
        let mut settings = PgSettings::new(section.url.clone())
            .with_schema(section.schema.clone())
            .with_pool_size(section.pool_size);
        if section.tls_required {
            settings = settings.with_tls(PgTls::Require(Arc::new(client_config(section)?)));
        }
        let pool = PgPool::connect(&settings).await?;
        let started_at = OffsetDateTime::now_utc().unix_timestamp();
        pool.heartbeat(&section.node_name, started_at, started_at)
            .await?;
        Ok(Cluster {
            policy_cache: PgPolicyCache::new(pool.clone(), section.node_name.clone()).await?,
            counters: Arc::new(PgCounters::new(pool.clone()).await?),
            outbox: Arc::new(PgOutbox::new(pool.clone()).await?),
            pool,
            node: section.node_name.clone(),
            started_at,
            flush_interval: section.flush_interval,
        })
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// How often TLS-RPT counts are moved to the database.
    pub fn flush_interval(&self) -> Duration {
        self.flush_interval
    }

    /// Heartbeats until `shutdown` turns true. A failed heartbeat is
    /// logged; mail keeps flowing while the database is away.
    pub async fn heartbeats(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(HEARTBEAT) => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
            let now = OffsetDateTime::now_utc().unix_timestamp();
            if let Err(e) = self.pool.heartbeat(&self.node, self.started_at, now).await {
                tracing::warn!(error = %e, "store heartbeat failed");
            }
        }
    }

    /// The store's part of the status page.
    pub async fn status(&self) -> StoreStatus {
        let mut errors = Vec::new();
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let nodes = match self.pool.nodes().await {
            Ok(list) => list
                .into_iter()
                .map(
                    |NodeSeen {
                         name,
                         started_at,
                         last_seen,
                     }| NodeStatus {
                        name,
                        started_at: rfc3339(started_at),
                        last_seen: rfc3339(last_seen),
                        seconds_ago: now - last_seen,
                    },
                )
                .collect(),
            Err(e) => {
                errors.push(e.to_string());
                Vec::new()
            }
        };
        let leases = match self.policy_cache.leases(now).await {
            Ok(list) => list
                .into_iter()
                .map(|(domain, holder, until)| LeaseStatus {
                    what: format!("mta-sts {domain}"),
                    holder,
                    until: rfc3339(until),
                })
                .collect(),
            Err(e) => {
                errors.push(e.to_string());
                Vec::new()
            }
        };
        StoreStatus {
            kind: "postgres".into(),
            schema: Some(self.pool.schema().to_string()),
            node: Some(self.node.clone()),
            nodes,
            leases,
            errors,
        }
    }
}

impl StoreStatus {
    /// The status of the file store.
    pub fn file() -> StoreStatus {
        StoreStatus {
            kind: "file".into(),
            schema: None,
            node: None,
            nodes: Vec::new(),
            leases: Vec::new(),
            errors: Vec::new(),
        }
    }
}

/// The TLS configuration for the database connection.
fn client_config(section: &PostgresSection) -> Result<rustls::ClientConfig, StoreError> {
    let mut roots = rustls::RootCertStore::empty();
    match &section.ca_file {
        Some(path) => {
            crate::tls::add_pem_roots(&mut roots, path).map_err(|message| StoreError::CaFile {
                path: path.clone(),
                message,
            })?
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::CaFile {
            path: section.ca_file.clone().unwrap_or_default(),
            message: e.to_string(),
        })
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
}
