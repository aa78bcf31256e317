//! Shared state in PostgreSQL (feature `postgres`): the connection pool and
//! schema migrations the stateful mailtls crates build their stores on.
//!
//! Each crate that keeps state (ACME accounts and orders, the MTA-STS cache,
//! TLS-RPT counts and outbox, S/MIME partners) has a storage trait with a
//! file implementation as the embedded default; with their own `postgres`
//! feature they implement it over a [`PgPool`] from here, so a cluster of
//! mail servers shares one state. All tables live in one schema
//! ([`PgSchema`], `mailtls` by default), created and migrated by the crates
//! themselves with [`PgPool::migrate`], which several nodes may call at the
//! same moment.
//!
//! Why tokio-postgres and deadpool-postgres rather than sqlx: plain SQL with
//! no macros and no database at compile time, fewer crates, and the pair
//! Stalwart and most tokio servers already link. TLS goes through
//! tokio-postgres-rustls with the embedder's [`rustls::ClientConfig`], so the
//! crypto provider stays the embedder's choice.

use std::fmt;
use std::sync::Arc;

pub use deadpool_postgres;
pub use tokio_postgres;

/// What went wrong with the database, and where.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PgError {
    /// The connection string did not parse.
    #[error("PostgreSQL connection string: {0}")]
    Url(#[source] tokio_postgres::Error),
    /// The schema name is not a plain SQL identifier.
    #[error("PostgreSQL schema name {name:?}: {reason}")]
    Schema {
        /// The name given.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// No connection could be had from the pool.
    #[error("PostgreSQL connection: {0}")]
    Pool(String),
    /// A statement failed.
    #[error("PostgreSQL {what}: {source}")]
    Query {
        /// What the statement was for.
        what: String,
        /// The driver's error (the server's message and SQLSTATE).
        #[source]
        source: tokio_postgres::Error,
    },
    /// A migration failed; nothing of it was applied.
    #[error("PostgreSQL migration {component} v{version}: {source}")]
    Migration {
        /// The component whose migration failed.
        component: String,
        /// Its version.
        version: u32,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The database holds a newer schema than this build knows.
    #[error(
        "PostgreSQL schema {schema}: {component} is at version {found}, this build knows up to {known}; upgrade this node"
    )]
    TooNew {
        /// The schema.
        schema: String,
        /// The component.
        component: String,
        /// The version in the database.
        found: u32,
        /// The newest version this build has.
        known: u32,
    },
    /// A stored value could not be read back.
    #[error("PostgreSQL {what}: {reason}")]
    Corrupt {
        /// Which value.
        what: String,
        /// Why it does not parse.
        reason: String,
    },
}

impl PgError {
    /// A [`PgError::Query`] naming what the statement was for.
    pub fn query(what: impl Into<String>, source: tokio_postgres::Error) -> Self {
        PgError::Query {
            what: what.into(),
            source,
        }
    }

    /// Whether trying again later may work (the server is away or the
    /// connection broke), as opposed to a refused statement.
    pub fn is_transient(&self) -> bool {
        match self {
            PgError::Pool(_) => true,
            PgError::Query { source, .. } | PgError::Migration { source, .. } => {
                source.is_closed() || source.code().is_none()
            }
            _ => false,
        }
    }
}

/// A schema name: a lower-case SQL identifier, so it can be put into
/// statements without quoting surprises.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PgSchema(String);

impl PgSchema {
    /// Checks `name`: 1 to 63 characters of `a-z`, `0-9` and `_`, not
    /// starting with a digit, not `pg_*`.
    pub fn new(name: &str) -> Result<Self, PgError> {
        let bad = |reason| PgError::Schema {
            name: name.to_owned(),
            reason,
        };
        if name.is_empty() || name.len() > 63 {
            return Err(bad("must be 1 to 63 characters"));
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(bad("only a-z, 0-9 and _ are allowed"));
        }
        if name.as_bytes()[0].is_ascii_digit() {
            return Err(bad("must not start with a digit"));
        }
        if name.starts_with("pg_") {
            return Err(bad("pg_ names are reserved by PostgreSQL"));
        }
        Ok(PgSchema(name.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for PgSchema {
    /// `mailtls`.
    fn default() -> Self {
        PgSchema("mailtls".to_owned())
    }
}

impl fmt::Display for PgSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How the connection is protected.
#[derive(Clone)]
#[non_exhaustive]
pub enum PgTls {
    /// No TLS (a database on loopback or a Unix socket).
    Disable,
    /// TLS required, verified with this configuration (its roots and its
    /// crypto provider).
    Require(Arc<rustls::ClientConfig>),
}

impl fmt::Debug for PgTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PgTls::Disable => f.write_str("Disable"),
            PgTls::Require(_) => f.write_str("Require(..)"),
        }
    }
}

/// Where and how to connect: [`PgSettings::new`] and the `with_*` setters.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PgSettings {
    /// A libpq-style connection string (`postgresql://user@host:port/db` or
    /// `host=... user=... dbname=...`).
    pub url: String,
    /// The schema every table goes into.
    pub schema: PgSchema,
    /// Connections kept open at most.
    pub pool_size: usize,
    /// TLS to the server.
    pub tls: PgTls,
}

impl PgSettings {
    /// Settings for `url`: schema `mailtls`, 8 connections, no TLS.
    pub fn new(url: impl Into<String>) -> Self {
        PgSettings {
            url: url.into(),
            schema: PgSchema::default(),
            pool_size: 8,
            tls: PgTls::Disable,
        }
    }

    /// Sets [`Self::schema`].
    pub fn with_schema(mut self, schema: PgSchema) -> Self {
        self.schema = schema;
        self
    }

    /// Sets [`Self::pool_size`] (at least 1).
    pub fn with_pool_size(mut self, size: usize) -> Self {
        self.pool_size = size.max(1);
        self
    }

    /// Sets [`Self::tls`].
    pub fn with_tls(mut self, tls: PgTls) -> Self {
        self.tls = tls;
        self
    }
}

/// One versioned step of a component's schema. `sql` may hold several
/// statements; `{schema}` in it is replaced by the schema name.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// 1, 2, 3 ... in order, never reused.
    pub version: u32,
    /// The statements.
    pub sql: &'static str,
}

/// A pool of connections to the shared database, with its schema.
#[derive(Clone)]
pub struct PgPool {
    pool: deadpool_postgres::Pool,
    schema: PgSchema,
    /// Set once core's own table exists (checked once per pool).
    core_ready: Arc<tokio::sync::OnceCell<()>>,
}

impl fmt::Debug for PgPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgPool")
            .field("schema", &self.schema)
            .field("status", &self.pool.status())
            .finish()
    }
}

impl PgPool {
    /// Makes the pool and checks that one connection works.
    pub async fn connect(settings: &PgSettings) -> Result<Self, PgError> {
        let config: tokio_postgres::Config = settings.url.parse().map_err(PgError::Url)?;
        let manager_config = deadpool_postgres::ManagerConfig {
            recycling_method: deadpool_postgres::RecyclingMethod::Fast,
        };
        let manager = match &settings.tls {
            PgTls::Disable => deadpool_postgres::Manager::from_config(
                config,
                tokio_postgres::NoTls,
                manager_config,
            ),
            PgTls::Require(client) => deadpool_postgres::Manager::from_config(
                config,
                tokio_postgres_rustls::MakeRustlsConnect::new((**client).clone()),
                manager_config,
            ),
        };
        let pool = deadpool_postgres::Pool::builder(manager)
            .max_size(settings.pool_size.max(1))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| PgError::Pool(e.to_string()))?;
        let me = PgPool {
            pool,
            schema: settings.schema.clone(),
            core_ready: Arc::default(),
        };
        drop(me.client().await?);
        Ok(me)
    }

    /// The schema the tables are in.
    pub fn schema(&self) -> &PgSchema {
        &self.schema
    }

    /// A connection from the pool (returned to it on drop).
    pub async fn client(&self) -> Result<deadpool_postgres::Object, PgError> {
        self.pool
            .get()
            .await
            .map_err(|e| PgError::Pool(e.to_string()))
    }

    /// Brings `component`'s tables to the newest of `steps`, each step in
    /// its own transaction, under a lock per schema so that nodes starting
    /// together apply every step exactly once. A database already newer
    /// than `steps` is refused ([`PgError::TooNew`]) rather than used with
    /// a schema this build does not know.
    pub async fn migrate(&self, component: &str, steps: &[Migration]) -> Result<u32, PgError> {
        let mut client = self.client().await?;
        let schema = self.schema.as_str();
        let known = steps.iter().map(|m| m.version).max().unwrap_or(0);
        let tx = client
            .transaction()
            .await
            .map_err(|e| PgError::query("migration transaction", e))?;
        // Transaction-scoped: released at commit or when the connection
        // drops, so a node that dies mid-migration blocks nobody.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&lock_key(schema)])
            .await
            .map_err(|e| PgError::query("migration lock", e))?;
        tx.batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {schema};
             CREATE TABLE IF NOT EXISTS {schema}.migrations (
                 component text NOT NULL,
                 version integer NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now(),
                 PRIMARY KEY (component, version)
             );"
        ))
        .await
        .map_err(|e| PgError::query(format!("schema {schema}"), e))?;
        let row = tx
            .query_one(
                &format!(
                    "SELECT COALESCE(MAX(version), 0) FROM {schema}.migrations WHERE component = $1"
                ),
                &[&component],
            )
            .await
            .map_err(|e| PgError::query("migration state", e))?;
        let found: i32 = row.get(0);
        let found = u32::try_from(found).unwrap_or(0);
        if found > known {
            return Err(PgError::TooNew {
                schema: schema.to_owned(),
                component: component.to_owned(),
                found,
                known,
            });
        }
        let mut sorted: Vec<&Migration> = steps.iter().filter(|m| m.version > found).collect();
        sorted.sort_by_key(|m| m.version);
        for step in sorted {
            let fail = |source| PgError::Migration {
                component: component.to_owned(),
                version: step.version,
                source,
            };
            tx.batch_execute(&step.sql.replace("{schema}", schema))
                .await
                .map_err(fail)?;
            let version = i32::try_from(step.version).unwrap_or(i32::MAX);
            tx.execute(
                &format!("INSERT INTO {schema}.migrations (component, version) VALUES ($1, $2)"),
                &[&component, &version],
            )
            .await
            .map_err(fail)?;
        }
        tx.commit()
            .await
            .map_err(|e| PgError::query("migration commit", e))?;
        Ok(known.max(found))
    }
}

/// A node of the cluster as its heartbeats left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSeen {
    /// The node's name.
    pub name: String,
    /// Unix seconds of its start.
    pub started_at: i64,
    /// Unix seconds of its last heartbeat.
    pub last_seen: i64,
}

/// Core's own table: the nodes and their heartbeats.
const CORE_MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    sql: "CREATE TABLE {schema}.nodes (
              name text PRIMARY KEY,
              started_at bigint NOT NULL,
              last_seen bigint NOT NULL
          );",
}];

impl PgPool {
    /// Records that `node` (started at `started_at`, Unix seconds) is alive
    /// now; call it every few seconds. Creates the table on first use.
    pub async fn heartbeat(&self, node: &str, started_at: i64, now: i64) -> Result<(), PgError> {
        self.core_tables().await?;
        let schema = self.schema.as_str();
        self.client()
            .await?
            .execute(
                &format!(
                    "INSERT INTO {schema}.nodes (name, started_at, last_seen) VALUES ($1, $2, $3)
                     ON CONFLICT (name) DO UPDATE
                     SET started_at = EXCLUDED.started_at, last_seen = EXCLUDED.last_seen"
                ),
                &[&node, &started_at, &now],
            )
            .await
            .map_err(|e| PgError::query("node heartbeat", e))?;
        Ok(())
    }

    async fn core_tables(&self) -> Result<(), PgError> {
        self.core_ready
            .get_or_try_init(|| async {
                self.migrate("mailtls-core", CORE_MIGRATIONS)
                    .await
                    .map(|_| ())
            })
            .await
            .map(|_| ())
    }

    /// Every node that ever sent a heartbeat, most recently seen first.
    pub async fn nodes(&self) -> Result<Vec<NodeSeen>, PgError> {
        self.core_tables().await?;
        let schema = self.schema.as_str();
        let rows = self
            .client()
            .await?
            .query(
                &format!(
                    "SELECT name, started_at, last_seen FROM {schema}.nodes
                     ORDER BY last_seen DESC, name"
                ),
                &[],
            )
            .await
            .map_err(|e| PgError::query("reading the nodes", e))?;
        Ok(rows
            .iter()
            .map(|r| NodeSeen {
                name: r.get(0),
                started_at: r.get(1),
                last_seen: r.get(2),
            })
            .collect())
    }
}

/// The advisory lock id for migrations of one schema (FNV-1a of the name:
/// stable across builds and nodes).
fn lock_key(schema: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in b"mailtls-migrate:".iter().chain(schema.as_bytes()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    i64::from_ne_bytes(h.to_ne_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_plain_identifiers() {
        assert!(PgSchema::new("mailtls").is_ok());
        assert!(PgSchema::new("mx_cluster_2").is_ok());
        for bad in [
            "",
            "Mailtls",
            "2nodes",
            "a;drop",
            "a b",
            "pg_temp",
            &"x".repeat(64),
        ] {
            assert!(PgSchema::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn lock_keys_differ_per_schema_and_are_stable() {
        assert_eq!(lock_key("mailtls"), lock_key("mailtls"));
        assert_ne!(lock_key("mailtls"), lock_key("mailtls2"));
    }
}
