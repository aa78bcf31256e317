//! SMTP TLS Reporting (RFC 8460): the `_smtp._tls` record, the collector that
//! counts outbound session outcomes, the daily report, its delivery and the
//! parser for reports other senders send to us.
//!
//! The flow: the delivery path calls [`Collector::record`] once per session;
//! once a day the [`Schedule`] says which policy domains are due, the
//! [`report`] module turns that day's counts into RFC 8460 JSON, and
//! [`delivery`] hands it to the `rua` endpoints from the domain's
//! [`TlsRptRecord`], keeping what cannot be delivered yet in an outbox.
//!
//! State lives behind two async, object-safe traits, so an embedder can keep
//! it in its own store: [`CounterStore`] (the counts reports are built from)
//! and [`delivery::OutboxStore`] (reports waiting for delivery). The file
//! implementations ([`LocalCounters`], [`delivery::FileOutbox`]) are the
//! embedded default.

pub mod collector;
pub mod delivery;
pub mod received;
pub mod record;
pub mod report;
pub mod reporter;
pub mod schedule;

pub use collector::{
    Aggregate, Collector, CounterStore, Durability, FailureOutcome, LocalCounters, MemoryCounters,
    PolicyRef, SessionOutcome, StoreFuture,
};
pub use received::{ReceivedReport, ReceivedSummary, parse_received};
pub use record::{RecordError, ReportUri, TlsRptRecord, is_tlsrpt_record};
pub use report::{ReportMeta, TlsReport};
pub use reporter::{QueueRun, queue_due_reports};
pub use schedule::{Due, Schedule};

/// Everything that can go wrong in TLS-RPT outside record parsing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsRptError {
    /// Reading or writing the data directory failed.
    #[error("TLS-RPT storage {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: std::path::PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A stored file did not have the expected content.
    #[error("TLS-RPT storage {path} line {line}: {reason}")]
    Corrupt {
        /// The file that did not parse.
        path: std::path::PathBuf,
        /// 1-based line number.
        line: usize,
        /// What was wrong.
        reason: String,
    },
    /// JSON could not be produced or read.
    #[error("TLS-RPT JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A received report was not in a form we understand.
    #[error("TLS-RPT report: {0}")]
    Report(String),
    /// Building or signing the report mail failed.
    #[error("TLS-RPT mail: {0}")]
    Mail(String),
    /// A store behind [`CounterStore`] or [`delivery::OutboxStore`] (a
    /// database) failed.
    #[error("TLS-RPT store: {0}")]
    Store(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Delivering a report failed.
    #[error("TLS-RPT delivery to {target}: {reason}")]
    Delivery {
        /// The `rua` URI the report was for.
        target: String,
        /// Why it failed.
        reason: String,
    },
}

impl TlsRptError {
    pub(crate) fn io(path: impl Into<std::path::PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
