//! # Running a cluster: shared state in PostgreSQL
//!
//! Several MX and outbound nodes behind one name should behave as one
//! sender: fetch each MTA-STS policy once, and send one TLS-RPT report per
//! policy domain and day with every node's sessions in it. With feature
//! `postgres` this crate keeps that state in one PostgreSQL database (over
//! `mailtls_core::postgres`); without it, everything stays in the node's
//! data directory, which needs no server.
//!
//! ## What is shared, what stays per node
//!
//! | state | where | type |
//! |---|---|---|
//! | MTA-STS policy cache | shared (table `mta_sts_cache`), with each node's in-process [`PolicyCache`](crate::mta_sts::PolicyCache) in front | [`PgPolicyCache`](crate::postgres::PgPolicyCache) |
//! | TLS-RPT counts reports are built from | shared (table `tlsrpt_counts`) | [`PgCounters`](crate::postgres::PgCounters) |
//! | TLS-RPT reports waiting for delivery | shared (table `tlsrpt_outbox`) | [`PgOutbox`](crate::postgres::PgOutbox) |
//! | sessions counted since the last flush | per node: the [`Collector`](crate::tlsrpt::Collector)'s log (or memory) | |
//! | the DNS cache, the outbound queue | per node (the embedder's) | |
//!
//! The delivery path never waits on the database: `Collector::record` is
//! the same call as on one node, and [`MtaSts::policy_for`](crate::mta_sts::MtaSts::policy_for)
//! answers from the in-process cache while the id in DNS is unchanged. The
//! database is asked only when a policy changes (another node may already
//! have fetched it: [`PolicySource::Shared`](crate::mta_sts::PolicySource::Shared)),
//! when a node flushes its counts ([`Collector::flush_to`](crate::tlsrpt::Collector::flush_to),
//! every few seconds), and by the daily report run.
//!
//! ## Who does what once
//!
//! - **Fetching a policy.** A node that needs a new policy takes the
//!   domain's fetch lease ([`SHARED_FETCH_LEASE`](crate::mta_sts::SHARED_FETCH_LEASE));
//!   the others keep the policy they hold until the new one is stored, or
//!   fetch themselves when they hold none (mail does not wait on another
//!   node). Storing the fetched policy ends the lease; a node that dies
//!   holding one blocks nobody past the lease's end.
//! - **Reports.** Report ids are the same on every node, so a report queued
//!   by two nodes is one row. A due report is leased to one node
//!   (`FOR UPDATE SKIP LOCKED`, ten minutes by default); delivered rows are
//!   kept until [`PgOutbox::prune_sent`](crate::postgres::PgOutbox::prune_sent)
//!   so that queueing the same report again does not send it twice.
//! - **Schema.** The tables are created by the first node that starts and
//!   migrated in versioned steps under an advisory lock, so nodes starting
//!   together apply each step once. A node that finds a newer schema than it
//!   knows refuses to use it (upgrade it too).
//!
//! ## When the database is away
//!
//! - Counting goes on: flushes fail and the counts stay in the local log (or
//!   in memory with [`Collector::in_memory`](crate::tlsrpt::Collector::in_memory));
//!   the next flush moves them. A crash between the database's commit and
//!   the local subtraction counts that batch twice: at least once, never
//!   lost.
//! - Policies keep being served from each node's in-process cache; a node
//!   that needs a new one fetches it itself.
//! - The report run fails and is tried again at its next wake-up; reports
//!   for a day go out late, not lost.
//!
//! ## Recovering
//!
//! Restart the node: a collector opened on its data directory replays its
//! log, and the first flush moves what was left. Leases run out on their
//! own. To move a node to another database, stop it, flush (or keep the
//! local log), and start it with the new settings.
//!
//! ## In code
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use mailtls_core::postgres::{PgPool, PgSettings};
//! use mailtls_policy::mta_sts::PolicyCache;
//! use mailtls_policy::postgres::{PgCounters, PgOutbox, PgPolicyCache};
//! use mailtls_policy::tlsrpt::delivery::{Outbox, RetryPolicy};
//! use mailtls_policy::tlsrpt::Collector;
//!
//! # async fn node() -> Result<(), Box<dyn std::error::Error>> {
//! let pool = PgPool::connect(&PgSettings::new("postgresql://mailtls@db/mailtls")).await?;
//! // The MTA-STS cache: in-process in front of the shared table.
//! let store = PgPolicyCache::new(pool.clone(), "mx1").await?;
//! let cache = PolicyCache::with_store(Arc::new(store)).await?;
//! // TLS-RPT: count locally, move counts to the shared table every few
//! // seconds, report and deliver from the shared tables.
//! let collector = Arc::new(Collector::open("/var/lib/mta/tlsrpt")?);
//! let counters = PgCounters::new(pool.clone()).await?;
//! let outbox = Outbox::with_store(Arc::new(PgOutbox::new(pool).await?), RetryPolicy::default());
//! collector.flush_to(&counters).await?;
//! # let _ = (cache, outbox);
//! # Ok(())
//! # }
//! ```
