//! MTA-STS cache and TLS-RPT state shared between nodes in PostgreSQL
//! (feature `postgres`).
//!
//! [`PgPolicyCache`] is a shared
//! [`PolicyCacheStore`]: a policy one node
//! fetched is taken by the others when DNS shows the same id, and a
//! per-domain lease lets one node fetch while the others keep using what
//! they hold. Each node keeps its in-process
//! [`PolicyCache`](crate::mta_sts::PolicyCache) in front, so the delivery
//! path only reaches the database when a policy changes.
//!
//! [`PgCounters`] is a [`CounterStore`]: every node counts in its own
//! [`Collector`](crate::tlsrpt::Collector) at full speed and moves its counts
//! here in batches with
//! [`Collector::flush_to`](crate::tlsrpt::Collector::flush_to); the daily
//! reporter on any node then builds one report per policy domain and day for
//! the whole cluster. [`PgOutbox`] is an [`OutboxStore`]: a report queued by
//! several nodes is one job (report ids are the same on every node), a due
//! job is leased to one node at a time, and delivered jobs are kept (until
//! [`PgOutbox::prune_sent`]) so that queueing the same report again later
//! does not send it twice.
//!
//! Both run [`migrate`] on first use of a pool; call it at startup to learn
//! of a database problem early. Tables go into the pool's schema.

use std::time::Duration;

use mailtls_core::DnsName;
use mailtls_core::postgres::{Migration, PgError, PgPool};
use time::{Date, OffsetDateTime};

use crate::mta_sts::{CacheEntry, CacheError, PolicyCacheStore, StoreFuture as CacheFuture};

use crate::tlsrpt::delivery::{OutboxFuture, OutboxStore, QueuedReport, SentReport};
use crate::tlsrpt::{Aggregate, CounterStore, StoreFuture, TlsRptError};

/// The component name in the schema's `migrations` table.
const COMPONENT: &str = "mailtls-policy";

/// This crate's schema steps.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        sql: "CREATE TABLE {schema}.tlsrpt_counts (
              day date NOT NULL,
              domain text NOT NULL,
              tuple text NOT NULL,
              count bigint NOT NULL CHECK (count >= 0),
              PRIMARY KEY (day, domain, tuple)
          );
          CREATE TABLE {schema}.tlsrpt_outbox (
              key text PRIMARY KEY,
              state text NOT NULL CHECK (state IN ('pending', 'undeliverable', 'sent')),
              job text NOT NULL,
              next_attempt bigint NOT NULL,
              claimed_until bigint,
              sent text,
              sent_at bigint
          );
          CREATE INDEX tlsrpt_outbox_due ON {schema}.tlsrpt_outbox (state, next_attempt);",
    },
    Migration {
        version: 2,
        sql: "CREATE TABLE {schema}.mta_sts_cache (
              domain text PRIMARY KEY,
              entry text,
              fetched_at bigint,
              lease_holder text,
              lease_until bigint
          );",
    },
];

/// Creates or upgrades this crate's tables in the pool's schema (safe to
/// run from several nodes at once). Returns the schema version.
pub async fn migrate(pool: &PgPool) -> Result<u32, PgError> {
    pool.migrate(COMPONENT, MIGRATIONS).await
}

fn store_error(e: PgError) -> TlsRptError {
    TlsRptError::Store(Box::new(e))
}

fn query_error(
    what: &str,
) -> impl FnOnce(mailtls_core::postgres::tokio_postgres::Error) -> TlsRptError {
    let what = what.to_owned();
    move |e| store_error(PgError::query(what, e))
}

/// TLS-RPT counts in PostgreSQL: table `tlsrpt_counts`, one row per UTC day,
/// policy domain and tuple (the tuple as JSON), added to atomically per
/// batch.
#[derive(Debug, Clone)]
pub struct PgCounters {
    pool: PgPool,
}

impl PgCounters {
    /// A store over `pool`; runs [`migrate`] first.
    pub async fn new(pool: PgPool) -> Result<Self, PgError> {
        migrate(&pool).await?;
        Ok(Self { pool })
    }

    async fn add_batch(&self, increments: Aggregate) -> Result<(), TlsRptError> {
        let mut days = Vec::with_capacity(increments.len());
        let mut domains = Vec::with_capacity(increments.len());
        let mut tuples = Vec::with_capacity(increments.len());
        let mut counts = Vec::with_capacity(increments.len());
        for (key, n) in increments.iter() {
            days.push(key.day.to_string());
            domains.push(key.policy.domain.clone());
            tuples.push(String::from_utf8(serde_json::to_vec(key)?).unwrap_or_default());
            counts.push(i64::try_from(n).unwrap_or(i64::MAX));
        }
        if days.is_empty() {
            return Ok(());
        }
        let schema = self.pool.schema();
        let client = self.pool.client().await.map_err(store_error)?;
        // One statement: the whole batch lands or none of it does.
        client
            .execute(
                &format!(
                    "INSERT INTO {schema}.tlsrpt_counts (day, domain, tuple, count)
                     SELECT d::date, dom, t, c
                     FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[]) AS u(d, dom, t, c)
                     ON CONFLICT (day, domain, tuple)
                     DO UPDATE SET count = {schema}.tlsrpt_counts.count + EXCLUDED.count"
                ),
                &[&days, &domains, &tuples, &counts],
            )
            .await
            .map_err(query_error("adding TLS-RPT counts"))?;
        Ok(())
    }

    async fn load_all(&self) -> Result<Aggregate, TlsRptError> {
        let schema = self.pool.schema();
        let client = self.pool.client().await.map_err(store_error)?;
        let rows = client
            .query(
                &format!("SELECT tuple, count FROM {schema}.tlsrpt_counts WHERE count > 0"),
                &[],
            )
            .await
            .map_err(query_error("reading TLS-RPT counts"))?;
        let mut out = Aggregate::default();
        for row in rows {
            let tuple: &str = row.get(0);
            let count: i64 = row.get(1);
            let key = serde_json::from_str(tuple).map_err(|e| {
                store_error(PgError::Corrupt {
                    what: format!("{schema}.tlsrpt_counts tuple"),
                    reason: e.to_string(),
                })
            })?;
            out.add(key, u64::try_from(count).unwrap_or(0));
        }
        Ok(out)
    }

    async fn forget_done(&self, done: Vec<(Date, String)>) -> Result<(), TlsRptError> {
        if done.is_empty() {
            return Ok(());
        }
        let (days, domains): (Vec<String>, Vec<String>) =
            done.into_iter().map(|(d, s)| (d.to_string(), s)).unzip();
        let schema = self.pool.schema();
        let client = self.pool.client().await.map_err(store_error)?;
        client
            .execute(
                &format!(
                    "DELETE FROM {schema}.tlsrpt_counts
                     WHERE (day, domain) IN (
                         SELECT d::date, dom FROM UNNEST($1::text[], $2::text[]) AS u(d, dom))"
                ),
                &[&days, &domains],
            )
            .await
            .map_err(query_error("forgetting reported TLS-RPT counts"))?;
        Ok(())
    }
}

impl CounterStore for PgCounters {
    fn add(&self, increments: Aggregate) -> StoreFuture<'_, ()> {
        Box::pin(self.add_batch(increments))
    }

    fn load(&self) -> StoreFuture<'_, Aggregate> {
        Box::pin(self.load_all())
    }

    fn forget(&self, done: Vec<(Date, String)>) -> StoreFuture<'_, ()> {
        Box::pin(self.forget_done(done))
    }
}

/// The TLS-RPT outbox in PostgreSQL: table `tlsrpt_outbox`, one row per
/// report and destination.
#[derive(Debug, Clone)]
pub struct PgOutbox {
    pool: PgPool,
    lease: Duration,
}

impl PgOutbox {
    /// A store over `pool` with a 10-minute delivery lease; runs
    /// [`migrate`] first.
    pub async fn new(pool: PgPool) -> Result<Self, PgError> {
        migrate(&pool).await?;
        Ok(Self {
            pool,
            lease: Duration::from_secs(600),
        })
    }

    /// How long a node may hold a due job before another may try it (longer
    /// than one delivery attempt can take).
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Drops delivered jobs older than `before`; returns how many. Until then
    /// they guard against sending the same report twice.
    pub async fn prune_sent(&self, before: OffsetDateTime) -> Result<u64, TlsRptError> {
        let schema = self.pool.schema();
        let client = self.pool.client().await.map_err(store_error)?;
        client
            .execute(
                &format!(
                    "DELETE FROM {schema}.tlsrpt_outbox WHERE state = 'sent' AND sent_at < $1"
                ),
                &[&before.unix_timestamp()],
            )
            .await
            .map_err(query_error("pruning delivered TLS-RPT jobs"))
    }

    async fn jobs(
        &self,
        sql: String,
        params: &[&(dyn mailtls_core::postgres::tokio_postgres::types::ToSql + Sync)],
        what: &str,
    ) -> Result<Vec<QueuedReport>, TlsRptError> {
        let client = self.pool.client().await.map_err(store_error)?;
        let rows = client
            .query(&sql, params)
            .await
            .map_err(query_error(what))?;
        rows.iter()
            .map(|r| QueuedReport::from_json(r.get::<_, &str>(0).as_bytes()))
            .collect()
    }

    async fn execute(
        &self,
        sql: String,
        params: &[&(dyn mailtls_core::postgres::tokio_postgres::types::ToSql + Sync)],
        what: &str,
    ) -> Result<u64, TlsRptError> {
        let client = self.pool.client().await.map_err(store_error)?;
        client
            .execute(&sql, params)
            .await
            .map_err(query_error(what))
    }
}

fn json_text(bytes: Vec<u8>) -> String {
    // serde_json writes UTF-8.
    String::from_utf8(bytes).unwrap_or_default()
}

impl OutboxStore for PgOutbox {
    fn insert(&self, job: QueuedReport) -> OutboxFuture<'_, bool> {
        Box::pin(async move {
            let schema = self.pool.schema();
            let text = json_text(job.to_json()?);
            let n = self
                .execute(
                    format!(
                        "INSERT INTO {schema}.tlsrpt_outbox (key, state, job, next_attempt)
                         VALUES ($1, 'pending', $2, $3) ON CONFLICT (key) DO NOTHING"
                    ),
                    &[&job.key(), &text, &job.next_attempt.unix_timestamp()],
                    "queueing a TLS report",
                )
                .await?;
            Ok(n == 1)
        })
    }

    fn pending(&self) -> OutboxFuture<'_, Vec<QueuedReport>> {
        Box::pin(async move {
            let schema = self.pool.schema();
            self.jobs(
                format!(
                    "SELECT job FROM {schema}.tlsrpt_outbox WHERE state = 'pending' ORDER BY key"
                ),
                &[],
                "reading queued TLS reports",
            )
            .await
        })
    }

    fn claim_due(&self, now: OffsetDateTime) -> OutboxFuture<'_, Vec<QueuedReport>> {
        Box::pin(async move {
            let schema = self.pool.schema();
            let now_s = now.unix_timestamp();
            let until =
                now_s.saturating_add(i64::try_from(self.lease.as_secs()).unwrap_or(i64::MAX));
            // SKIP LOCKED: a node claiming at the same moment takes other
            // rows instead of waiting and then taking the same ones.
            self.jobs(
                format!(
                    "UPDATE {schema}.tlsrpt_outbox SET claimed_until = $2
                     WHERE key IN (
                         SELECT key FROM {schema}.tlsrpt_outbox
                         WHERE state = 'pending' AND next_attempt <= $1
                           AND (claimed_until IS NULL OR claimed_until <= $1)
                         ORDER BY key FOR UPDATE SKIP LOCKED)
                     RETURNING job"
                ),
                &[&now_s, &until],
                "claiming due TLS reports",
            )
            .await
        })
    }

    fn update(&self, job: QueuedReport) -> OutboxFuture<'_, ()> {
        Box::pin(async move {
            let schema = self.pool.schema();
            let text = json_text(job.to_json()?);
            self.execute(
                format!(
                    "UPDATE {schema}.tlsrpt_outbox SET job = $2, next_attempt = $3, claimed_until = NULL
                     WHERE key = $1 AND state = 'pending'"
                ),
                &[&job.key(), &text, &job.next_attempt.unix_timestamp()],
                "rescheduling a TLS report",
            )
            .await?;
            Ok(())
        })
    }

    fn delivered(&self, job: QueuedReport, sent: SentReport) -> OutboxFuture<'_, ()> {
        Box::pin(async move {
            let schema = self.pool.schema();
            let text = json_text(serde_json::to_vec(&sent)?);
            self.execute(
                format!(
                    "UPDATE {schema}.tlsrpt_outbox
                     SET state = 'sent', sent = $2, sent_at = $3, claimed_until = NULL
                     WHERE key = $1"
                ),
                &[&job.key(), &text, &sent.at],
                "marking a TLS report delivered",
            )
            .await?;
            Ok(())
        })
    }

    fn give_up(&self, job: QueuedReport) -> OutboxFuture<'_, ()> {
        Box::pin(async move {
            let schema = self.pool.schema();
            let text = json_text(job.to_json()?);
            self.execute(
                format!(
                    "UPDATE {schema}.tlsrpt_outbox
                     SET state = 'undeliverable', job = $2, claimed_until = NULL
                     WHERE key = $1"
                ),
                &[&job.key(), &text],
                "giving up on a TLS report",
            )
            .await?;
            Ok(())
        })
    }

    fn undeliverable(&self) -> OutboxFuture<'_, Vec<QueuedReport>> {
        Box::pin(async move {
            let schema = self.pool.schema();
            self.jobs(
                format!(
                    "SELECT job FROM {schema}.tlsrpt_outbox WHERE state = 'undeliverable' ORDER BY key"
                ),
                &[],
                "reading undeliverable TLS reports",
            )
            .await
        })
    }

    fn recently_sent(&self, n: usize) -> OutboxFuture<'_, Vec<SentReport>> {
        Box::pin(async move {
            let schema = self.pool.schema();
            let client = self.pool.client().await.map_err(store_error)?;
            let limit = i64::try_from(n).unwrap_or(i64::MAX);
            let rows = client
                .query(
                    &format!(
                        "SELECT sent FROM {schema}.tlsrpt_outbox WHERE state = 'sent'
                         ORDER BY sent_at DESC, key DESC LIMIT $1"
                    ),
                    &[&limit],
                )
                .await
                .map_err(query_error("reading delivered TLS reports"))?;
            let mut out = rows
                .iter()
                .map(|r| {
                    serde_json::from_str::<SentReport>(r.get::<_, &str>(0))
                        .map_err(TlsRptError::from)
                })
                .collect::<Result<Vec<_>, _>>()?;
            out.reverse();
            Ok(out)
        })
    }
}

fn cache_error(e: PgError) -> CacheError {
    CacheError::Store(Box::new(e))
}

fn unix(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The MTA-STS policy cache in PostgreSQL: table `mta_sts_cache`, one row
/// per policy domain with the entry as JSON (the cache file's format), the
/// time it was fetched, and the fetch lease.
#[derive(Debug, Clone)]
pub struct PgPolicyCache {
    pool: PgPool,
    node: String,
}

impl PgPolicyCache {
    /// A store over `pool` for the node called `node` (its name in leases:
    /// unique per node, e.g. the host name); runs [`migrate`] first.
    pub async fn new(pool: PgPool, node: impl Into<String>) -> Result<Self, PgError> {
        migrate(&pool).await?;
        Ok(Self {
            pool,
            node: node.into(),
        })
    }

    /// Who holds the fetch lease of `domain` and until when (Unix seconds),
    /// for status pages.
    pub async fn lease_of(&self, domain: &DnsName) -> Result<Option<(String, i64)>, PgError> {
        let schema = self.pool.schema();
        let client = self.pool.client().await?;
        let row = client
            .query_opt(
                &format!(
                    "SELECT lease_holder, lease_until FROM {schema}.mta_sts_cache
                     WHERE domain = $1 AND lease_holder IS NOT NULL"
                ),
                &[&domain.as_str()],
            )
            .await
            .map_err(|e| PgError::query("reading an MTA-STS lease", e))?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
    }

    /// Fetch leases running at `now` (Unix seconds): domain, holder and
    /// until when, for status pages.
    pub async fn leases(&self, now: i64) -> Result<Vec<(String, String, i64)>, PgError> {
        let schema = self.pool.schema();
        let client = self.pool.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT domain, lease_holder, lease_until FROM {schema}.mta_sts_cache
                     WHERE lease_holder IS NOT NULL AND lease_until > $1 ORDER BY domain"
                ),
                &[&now],
            )
            .await
            .map_err(|e| PgError::query("reading MTA-STS leases", e))?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }

    /// Stores entries, the newer fetch winning. `after_fetch`: this node
    /// just fetched them, which ends its lease on their domains (a bulk save
    /// does not: the node may be fetching one of them right now).
    async fn upsert(&self, entries: Vec<CacheEntry>, after_fetch: bool) -> Result<(), CacheError> {
        if entries.is_empty() {
            return Ok(());
        }
        let domains: Vec<String> = entries.iter().map(|e| e.domain.to_string()).collect();
        let texts: Vec<String> = entries.iter().map(CacheEntry::to_json).collect();
        let fetched: Vec<Option<i64>> = entries.iter().map(|e| e.fetched_at.map(unix)).collect();
        let schema = self.pool.schema();
        let client = self.pool.client().await.map_err(cache_error)?;
        // The newer fetch wins, whichever node writes last.
        client
            .execute(
                &format!(
                    "INSERT INTO {schema}.mta_sts_cache AS c (domain, entry, fetched_at)
                     SELECT * FROM UNNEST($1::text[], $2::text[], $3::int8[])
                     ON CONFLICT (domain) DO UPDATE SET
                         entry = CASE WHEN c.entry IS NULL OR c.fetched_at IS NULL
                                        OR EXCLUDED.fetched_at >= c.fetched_at
                                      THEN EXCLUDED.entry ELSE c.entry END,
                         fetched_at = GREATEST(c.fetched_at, EXCLUDED.fetched_at),
                         lease_holder = CASE WHEN $5 AND c.lease_holder = $4 THEN NULL ELSE c.lease_holder END,
                         lease_until = CASE WHEN $5 AND c.lease_holder = $4 THEN NULL ELSE c.lease_until END"
                ),
                &[&domains, &texts, &fetched, &self.node, &after_fetch],
            )
            .await
            .map_err(|e| cache_error(PgError::query("storing MTA-STS policies", e)))?;
        Ok(())
    }
}

impl PolicyCacheStore for PgPolicyCache {
    fn load(&self) -> CacheFuture<'_, Vec<CacheEntry>> {
        Box::pin(async move {
            let schema = self.pool.schema();
            let client = self.pool.client().await.map_err(cache_error)?;
            let rows = client
                .query(
                    &format!("SELECT entry FROM {schema}.mta_sts_cache WHERE entry IS NOT NULL"),
                    &[],
                )
                .await
                .map_err(|e| cache_error(PgError::query("reading MTA-STS policies", e)))?;
            Ok(rows
                .iter()
                .filter_map(|r| CacheEntry::from_json(r.get(0)))
                .collect())
        })
    }

    fn save(&self, entries: Vec<CacheEntry>) -> CacheFuture<'_, ()> {
        Box::pin(self.upsert(entries, false))
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn get(&self, domain: &DnsName) -> CacheFuture<'_, Option<CacheEntry>> {
        let domain = domain.to_string();
        Box::pin(async move {
            let schema = self.pool.schema();
            let client = self.pool.client().await.map_err(cache_error)?;
            let row = client
                .query_opt(
                    &format!(
                        "SELECT entry FROM {schema}.mta_sts_cache
                         WHERE domain = $1 AND entry IS NOT NULL"
                    ),
                    &[&domain],
                )
                .await
                .map_err(|e| cache_error(PgError::query("reading an MTA-STS policy", e)))?;
            Ok(row.and_then(|r| CacheEntry::from_json(r.get(0))))
        })
    }

    fn put(&self, entry: CacheEntry) -> CacheFuture<'_, ()> {
        Box::pin(self.upsert(vec![entry], true))
    }

    fn try_lease(
        &self,
        domain: &DnsName,
        now: std::time::SystemTime,
        until: std::time::SystemTime,
    ) -> CacheFuture<'_, bool> {
        let domain = domain.to_string();
        Box::pin(async move {
            let schema = self.pool.schema();
            let client = self.pool.client().await.map_err(cache_error)?;
            let n = client
                .execute(
                    &format!(
                        "INSERT INTO {schema}.mta_sts_cache AS c (domain, lease_holder, lease_until)
                         VALUES ($1, $2, $3)
                         ON CONFLICT (domain) DO UPDATE
                         SET lease_holder = EXCLUDED.lease_holder, lease_until = EXCLUDED.lease_until
                         WHERE c.lease_holder IS NULL OR c.lease_until <= $4
                            OR c.lease_holder = EXCLUDED.lease_holder"
                    ),
                    &[&domain, &self.node, &unix(until), &unix(now)],
                )
                .await
                .map_err(|e| cache_error(PgError::query("taking an MTA-STS fetch lease", e)))?;
            Ok(n == 1)
        })
    }
}
