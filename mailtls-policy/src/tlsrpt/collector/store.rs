//! Where the counts that reports are built from live: the [`CounterStore`]
//! trait, the collector's own log as the single-node store, and a store in
//! memory.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use time::Date;

use super::{Aggregate, Collector};
use crate::tlsrpt::TlsRptError;

/// The future a [`CounterStore`] returns, boxed so the trait is object safe.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, TlsRptError>> + Send + 'a>>;

/// The counts that daily reports are built from.
///
/// The reporter reads them with [`CounterStore::load`] and, once a day's
/// report for a domain is queued, drops them with [`CounterStore::forget`].
/// Collectors add to them with [`Collector::flush_to`]. Implement it over
/// your own database to report for several nodes as one organisation (one
/// report per policy domain and day, RFC 8460 §4); [`LocalCounters`] is the
/// embedded default for a single node.
pub trait CounterStore: Send + Sync + fmt::Debug {
    /// Adds `increments` to the stored counts, all or nothing.
    fn add(&self, increments: Aggregate) -> StoreFuture<'_, ()>;
    /// Every stored count.
    fn load(&self) -> StoreFuture<'_, Aggregate>;
    /// Drops the counts of the given (UTC day, policy domain) pairs.
    fn forget(&self, done: Vec<(Date, String)>) -> StoreFuture<'_, ()>;
}

/// The single-node store: the counts in a [`Collector`]'s own data
/// directory. The collector records into it directly, so nothing needs
/// flushing. Writes run in `spawn_blocking` (needs a tokio runtime).
#[derive(Debug, Clone)]
pub struct LocalCounters {
    collector: Arc<Collector>,
}

impl LocalCounters {
    /// The store over `collector`'s counts.
    pub fn new(collector: Arc<Collector>) -> Self {
        Self { collector }
    }

    /// The collector behind the store.
    pub fn collector(&self) -> &Arc<Collector> {
        &self.collector
    }

    /// Runs a step on the collector off the runtime when it writes files.
    async fn step<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Collector) -> Result<T, TlsRptError> + Send + 'static,
    ) -> Result<T, TlsRptError> {
        if self.collector.dir().is_none() {
            return f(&self.collector);
        }
        let collector = Arc::clone(&self.collector);
        let path = collector.log_path();
        tokio::task::spawn_blocking(move || f(&collector))
            .await
            .map_err(|e| TlsRptError::io(path, std::io::Error::other(e.to_string())))?
    }
}

impl CounterStore for LocalCounters {
    fn add(&self, increments: Aggregate) -> StoreFuture<'_, ()> {
        Box::pin(self.step(move |c| c.add_counts(&increments)))
    }

    fn load(&self) -> StoreFuture<'_, Aggregate> {
        // The counts are in memory; reading them touches no file.
        let snapshot = self.collector.snapshot();
        Box::pin(async move { Ok(snapshot) })
    }

    fn forget(&self, done: Vec<(Date, String)>) -> StoreFuture<'_, ()> {
        Box::pin(self.step(move |c| c.forget_all(&done)))
    }
}

/// Counts held in memory: for tests, and for an embedder that persists
/// [`Aggregate`]s (see [`Aggregate::to_json`]) its own way.
#[derive(Debug, Default)]
pub struct MemoryCounters {
    counts: Mutex<Aggregate>,
}

impl MemoryCounters {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of what is stored.
    pub fn snapshot(&self) -> Aggregate {
        self.counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl CounterStore for MemoryCounters {
    fn add(&self, increments: Aggregate) -> StoreFuture<'_, ()> {
        self.counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .merge(&increments);
        Box::pin(async { Ok(()) })
    }

    fn load(&self) -> StoreFuture<'_, Aggregate> {
        let snapshot = self.snapshot();
        Box::pin(async move { Ok(snapshot) })
    }

    fn forget(&self, done: Vec<(Date, String)>) -> StoreFuture<'_, ()> {
        self.counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .forget(&done);
        Box::pin(async { Ok(()) })
    }
}
