//! Reports waiting for delivery: the retrying [`Outbox`] over an
//! [`OutboxStore`]; the default store keeps one file per (report,
//! destination) in the data directory, so a restart or a long outage at the
//! receiver loses none.

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::DeliverReport;
use crate::tlsrpt::TlsRptError;
use crate::tlsrpt::record::ReportUri;
use crate::tlsrpt::report::TlsReport;

/// When to try again: [`Default`] and the `with_*` setters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Wait after the first failure; doubled after each further failure.
    pub first_delay: Duration,
    /// Upper bound of the wait.
    pub max_delay: Duration,
    /// After this many failed attempts the job moves to `undeliverable/`.
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    /// 5 minutes doubling up to 6 hours, 12 attempts (about two days).
    fn default() -> Self {
        Self {
            first_delay: Duration::from_secs(300),
            max_delay: Duration::from_secs(6 * 3600),
            max_attempts: 12,
        }
    }
}

impl RetryPolicy {
    /// Sets [`Self::first_delay`].
    pub fn with_first_delay(mut self, delay: Duration) -> Self {
        self.first_delay = delay;
        self
    }

    /// Sets [`Self::max_delay`].
    pub fn with_max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// Sets [`Self::max_attempts`].
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts;
        self
    }

    fn delay_after(&self, failures: u32) -> Duration {
        let factor = 1u32
            .checked_shl(failures.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.first_delay.saturating_mul(factor).min(self.max_delay)
    }
}

/// One report waiting for one destination: what an [`OutboxStore`] keeps.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct QueuedReport {
    /// The `rua` URI.
    pub target: String,
    /// The report.
    pub report: TlsReport,
    /// Failed attempts so far.
    pub attempts: u32,
    /// When the next attempt is due.
    pub next_attempt: OffsetDateTime,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

impl QueuedReport {
    /// A new job for `report` to `target`, due at `now`.
    pub fn new(report: TlsReport, target: String, now: OffsetDateTime) -> Self {
        Self {
            target,
            report,
            attempts: 0,
            next_attempt: now,
            last_error: None,
        }
    }

    /// The job's identity: the same report to the same destination gives
    /// the same key (a short hex digest, usable as a file name or row key).
    pub fn key(&self) -> String {
        job_key(&self.report.report_id, &self.target)
    }

    /// The job as JSON (the file outbox's format), for stores of your own.
    pub fn to_json(&self) -> Result<Vec<u8>, TlsRptError> {
        Ok(serde_json::to_vec(&Job::from(self))?)
    }

    /// Reads what [`QueuedReport::to_json`] wrote.
    pub fn from_json(json: &[u8]) -> Result<Self, TlsRptError> {
        Ok(serde_json::from_slice::<Job>(json)?.into())
    }

    /// The job's state, for status pages.
    pub fn status(&self) -> JobStatus {
        JobStatus {
            target: self.target.clone(),
            report_id: self.report.report_id.clone(),
            policy_domain: self.report.policy_domain().to_owned(),
            attempts: self.attempts,
            next_attempt: self.next_attempt,
            last_error: self.last_error.clone(),
        }
    }

    /// The entry for the list of delivered reports.
    fn sent_at(&self, now: OffsetDateTime) -> SentReport {
        let (successful, failed) =
            self.report
                .policies
                .iter()
                .fold((0u64, 0u64), |(ok, bad), p| {
                    (
                        ok.saturating_add(p.summary.total_successful_session_count),
                        bad.saturating_add(p.summary.total_failure_session_count),
                    )
                });
        SentReport {
            at: now.unix_timestamp(),
            target: self.target.clone(),
            report_id: self.report.report_id.clone(),
            policy_domain: self.report.policy_domain().to_owned(),
            successful,
            failed,
        }
    }
}

/// A queued delivery, for status pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobStatus {
    /// The `rua` URI.
    pub target: String,
    /// The report's id.
    pub report_id: String,
    /// The report's policy domain.
    pub policy_domain: String,
    /// Failed attempts so far.
    pub attempts: u32,
    /// When the next attempt is due.
    pub next_attempt: OffsetDateTime,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

/// What one [`Outbox::deliver_due`] run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryRun {
    /// Delivered and removed.
    pub delivered: usize,
    /// Failed, kept for another attempt.
    pub deferred: usize,
    /// Failed for the last time, moved to `undeliverable/`.
    pub undeliverable: usize,
}

/// A delivered report, as kept for status pages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentReport {
    /// Unix seconds of the delivery.
    pub at: i64,
    /// The `rua` URI.
    pub target: String,
    /// The report's id.
    pub report_id: String,
    /// The report's policy domain.
    pub policy_domain: String,
    /// Sessions in the report that succeeded.
    pub successful: u64,
    /// Sessions in the report that failed.
    pub failed: u64,
}

/// The future an [`OutboxStore`] returns, boxed so the trait is object safe.
pub type OutboxFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, TlsRptError>> + Send + 'a>>;

/// Where queued reports wait: [`FileOutbox`] is the embedded default (one
/// file per job); implement it over your own store to share the queue
/// between nodes. Jobs are identified by [`QueuedReport::key`].
pub trait OutboxStore: Send + Sync + fmt::Debug {
    /// Adds `job` unless a pending job with the same key exists; says
    /// whether it was added.
    fn insert(&self, job: QueuedReport) -> OutboxFuture<'_, bool>;
    /// Every pending job, in a stable order.
    fn pending(&self) -> OutboxFuture<'_, Vec<QueuedReport>>;
    /// The pending jobs due at `now` that this caller may try now. A store
    /// shared between nodes hands each due job to one caller at a time (a
    /// lease until its `update`, `delivered` or `give_up`, or until it
    /// expires), so two nodes never send the same report together. The
    /// default is every due pending job: right for a store one process uses.
    fn claim_due(&self, now: OffsetDateTime) -> OutboxFuture<'_, Vec<QueuedReport>> {
        let pending = self.pending();
        Box::pin(async move {
            Ok(pending
                .await?
                .into_iter()
                .filter(|j| j.next_attempt <= now)
                .collect())
        })
    }
    /// Replaces the pending job with `job`'s key (after a failed attempt).
    fn update(&self, job: QueuedReport) -> OutboxFuture<'_, ()>;
    /// Removes a delivered job and adds `sent` to the list of delivered
    /// reports.
    fn delivered(&self, job: QueuedReport, sent: SentReport) -> OutboxFuture<'_, ()>;
    /// Moves a job that will not be tried again to the undeliverable list.
    fn give_up(&self, job: QueuedReport) -> OutboxFuture<'_, ()>;
    /// The jobs given up on.
    fn undeliverable(&self) -> OutboxFuture<'_, Vec<QueuedReport>>;
    /// The last `n` delivered reports, newest last.
    fn recently_sent(&self, n: usize) -> OutboxFuture<'_, Vec<SentReport>>;
}

/// The delivery queue: retries with back-off over an [`OutboxStore`].
#[derive(Debug, Clone)]
pub struct Outbox {
    store: Arc<dyn OutboxStore>,
    retry: RetryPolicy,
}

impl Outbox {
    /// A queue in `dir` ([`FileOutbox`]: `dir/pending`, `dir/undeliverable`
    /// and `dir/sent.log`), created if missing.
    ///
    /// Blocks: it creates the directories. Call it at startup.
    pub fn open(dir: impl AsRef<Path>, retry: RetryPolicy) -> Result<Self, TlsRptError> {
        Ok(Self::with_store(Arc::new(FileOutbox::open(dir)?), retry))
    }

    /// A queue over any store.
    pub fn with_store(store: Arc<dyn OutboxStore>, retry: RetryPolicy) -> Self {
        Self { store, retry }
    }

    /// The store behind the queue.
    pub fn store(&self) -> &Arc<dyn OutboxStore> {
        &self.store
    }

    /// Queues `report` for every destination, due at once. Queuing the same
    /// report for the same destination again is a no-op.
    pub async fn enqueue(
        &self,
        report: &TlsReport,
        rua: &[ReportUri],
        now: OffsetDateTime,
    ) -> Result<(), TlsRptError> {
        for to in rua {
            let job = QueuedReport::new(report.clone(), to.to_string(), now);
            self.store.insert(job).await?;
        }
        Ok(())
    }

    /// The queued jobs.
    pub async fn pending(&self) -> Result<Vec<JobStatus>, TlsRptError> {
        Ok(self
            .store
            .pending()
            .await?
            .iter()
            .map(QueuedReport::status)
            .collect())
    }

    /// The jobs that were given up on (kept for the operator).
    pub async fn undeliverable(&self) -> Result<Vec<JobStatus>, TlsRptError> {
        Ok(self
            .store
            .undeliverable()
            .await?
            .iter()
            .map(QueuedReport::status)
            .collect())
    }

    /// The last `n` delivered reports, newest last.
    pub async fn recently_sent(&self, n: usize) -> Result<Vec<SentReport>, TlsRptError> {
        self.store.recently_sent(n).await
    }

    /// Tries every job whose time has come, through `deliverer` (normally
    /// a `Deliverer`, feature `tlsrpt-deliver`).
    pub async fn deliver_due<D: DeliverReport + ?Sized>(
        &self,
        deliverer: &D,
        now: OffsetDateTime,
    ) -> Result<DeliveryRun, TlsRptError> {
        let mut run = DeliveryRun::default();
        for mut job in self.store.claim_due(now).await? {
            let result = match parse_target(&job.target) {
                Some(uri) => deliverer.deliver_report(&job.report, &uri, now).await,
                None => Err(TlsRptError::Delivery {
                    target: job.target.clone(),
                    reason: "not a mailto: or https: URI".into(),
                }),
            };
            match result {
                Ok(()) => {
                    let sent = job.sent_at(now);
                    self.store.delivered(job, sent).await?;
                    run.delivered += 1;
                }
                Err(e) => {
                    job.attempts = job.attempts.saturating_add(1);
                    job.last_error = Some(e.to_string());
                    let delay = self.retry.delay_after(job.attempts);
                    job.next_attempt = now.saturating_add(time::Duration::seconds(
                        i64::try_from(delay.as_secs()).unwrap_or(i64::MAX),
                    ));
                    if job.attempts >= self.retry.max_attempts {
                        self.store.give_up(job).await?;
                        run.undeliverable += 1;
                    } else {
                        self.store.update(job).await?;
                        run.deferred += 1;
                    }
                }
            }
        }
        Ok(run)
    }
}

/// The on-disk store: one JSON file per job under `pending/` (moved to
/// `undeliverable/` when given up on) and a `sent.log` with one line per
/// delivered report. Every file step runs in `spawn_blocking` (needs a
/// tokio runtime); files are written to a temporary name, synced and
/// renamed, so a crash leaves a job whole or absent.
#[derive(Debug, Clone)]
pub struct FileOutbox {
    pending: PathBuf,
    undeliverable: PathBuf,
    sent_log: PathBuf,
}

/// A job as stored in its file (the format predates [`QueuedReport`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Job {
    target: String,
    report: TlsReport,
    attempts: u32,
    /// Unix seconds.
    next_attempt: i64,
    last_error: Option<String>,
}

impl From<&QueuedReport> for Job {
    fn from(q: &QueuedReport) -> Self {
        Job {
            target: q.target.clone(),
            report: q.report.clone(),
            attempts: q.attempts,
            next_attempt: q.next_attempt.unix_timestamp(),
            last_error: q.last_error.clone(),
        }
    }
}

impl From<Job> for QueuedReport {
    fn from(j: Job) -> Self {
        QueuedReport {
            target: j.target,
            report: j.report,
            attempts: j.attempts,
            next_attempt: OffsetDateTime::from_unix_timestamp(j.next_attempt)
                .unwrap_or(OffsetDateTime::UNIX_EPOCH),
            last_error: j.last_error,
        }
    }
}

impl FileOutbox {
    /// Opens (or creates) `dir/pending` and `dir/undeliverable`. Blocks.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, TlsRptError> {
        let pending = dir.as_ref().join("pending");
        let undeliverable = dir.as_ref().join("undeliverable");
        for d in [&pending, &undeliverable] {
            std::fs::create_dir_all(d).map_err(|e| TlsRptError::io(d, e))?;
        }
        Ok(Self {
            pending,
            undeliverable,
            sent_log: dir.as_ref().join("sent.log"),
        })
    }

    fn job_path(&self, job: &QueuedReport) -> PathBuf {
        self.pending.join(format!("{}.json", job.key()))
    }

    /// Runs a file step off the runtime thread.
    fn off_runtime<T: Send + 'static>(
        &self,
        step: impl FnOnce(&FileOutbox) -> Result<T, TlsRptError> + Send + 'static,
    ) -> OutboxFuture<'static, T> {
        let outbox = self.clone();
        Box::pin(async move {
            let path = outbox.pending.clone();
            tokio::task::spawn_blocking(move || step(&outbox))
                .await
                .map_err(|e| TlsRptError::io(path, std::io::Error::other(e.to_string())))?
        })
    }

    fn log_sent(&self, sent: &SentReport) -> Result<(), TlsRptError> {
        use std::io::Write;
        let mut line = serde_json::to_vec(sent)?;
        line.push(b'\n');
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.sent_log)
            .and_then(|mut f| f.write_all(&line))
            .map_err(|e| TlsRptError::io(&self.sent_log, e))
    }

    fn read_sent(&self, n: usize) -> Result<Vec<SentReport>, TlsRptError> {
        let text = match std::fs::read_to_string(&self.sent_log) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(TlsRptError::io(&self.sent_log, e)),
        };
        let lines: Vec<&str> = text.lines().collect();
        let first = lines.len().saturating_sub(n);
        lines[first..]
            .iter()
            .enumerate()
            .map(|(i, l)| {
                serde_json::from_str(l).map_err(|e| TlsRptError::Corrupt {
                    path: self.sent_log.clone(),
                    line: first + i + 1,
                    reason: e.to_string(),
                })
            })
            .collect()
    }

    fn load(dir: &Path) -> Result<Vec<QueuedReport>, TlsRptError> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| TlsRptError::io(dir, e))? {
            let path = entry.map_err(|e| TlsRptError::io(dir, e))?.path();
            if path.extension().is_none_or(|x| x != "json") {
                continue;
            }
            let bytes = std::fs::read(&path).map_err(|e| TlsRptError::io(&path, e))?;
            let job: Job = serde_json::from_slice(&bytes).map_err(|e| TlsRptError::Corrupt {
                path: path.clone(),
                line: e.line(),
                reason: e.to_string(),
            })?;
            out.push((path, QueuedReport::from(job)));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out.into_iter().map(|(_, j)| j).collect())
    }
}

impl OutboxStore for FileOutbox {
    fn insert(&self, job: QueuedReport) -> OutboxFuture<'_, bool> {
        self.off_runtime(move |o| {
            let path = o.job_path(&job);
            if path.exists() {
                return Ok(false);
            }
            write_atomically(&path, &serde_json::to_vec(&Job::from(&job))?)?;
            Ok(true)
        })
    }

    fn pending(&self) -> OutboxFuture<'_, Vec<QueuedReport>> {
        self.off_runtime(|o| FileOutbox::load(&o.pending))
    }

    fn update(&self, job: QueuedReport) -> OutboxFuture<'_, ()> {
        self.off_runtime(move |o| {
            write_atomically(&o.job_path(&job), &serde_json::to_vec(&Job::from(&job))?)
        })
    }

    fn delivered(&self, job: QueuedReport, sent: SentReport) -> OutboxFuture<'_, ()> {
        self.off_runtime(move |o| {
            o.log_sent(&sent)?;
            let path = o.job_path(&job);
            std::fs::remove_file(&path).map_err(|e| TlsRptError::io(&path, e))
        })
    }

    fn give_up(&self, job: QueuedReport) -> OutboxFuture<'_, ()> {
        self.off_runtime(move |o| {
            let path = o.job_path(&job);
            let dest = o.undeliverable.join(format!("{}.json", job.key()));
            write_atomically(&dest, &serde_json::to_vec(&Job::from(&job))?)?;
            std::fs::remove_file(&path).map_err(|e| TlsRptError::io(&path, e))
        })
    }

    fn undeliverable(&self) -> OutboxFuture<'_, Vec<QueuedReport>> {
        self.off_runtime(|o| FileOutbox::load(&o.undeliverable))
    }

    fn recently_sent(&self, n: usize) -> OutboxFuture<'_, Vec<SentReport>> {
        self.off_runtime(move |o| o.read_sent(n))
    }
}

fn parse_target(target: &str) -> Option<ReportUri> {
    if let Some(addr) = target.strip_prefix("mailto:") {
        Some(ReportUri::Mailto(addr.to_owned()))
    } else if target.starts_with("https://") {
        Some(ReportUri::Https(target.to_owned()))
    } else {
        None
    }
}

fn job_key(report_id: &str, target: &str) -> String {
    let input = format!("{report_id}\n{target}");
    let d = crate::crypto::sha256(input.as_bytes());
    let hex: String = d[..12].iter().map(|b| format!("{b:02x}")).collect();
    hex
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), TlsRptError> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(|e| TlsRptError::io(&tmp, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| TlsRptError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| TlsRptError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_and_is_capped() {
        let r = RetryPolicy::default();
        assert_eq!(r.delay_after(1), Duration::from_secs(300));
        assert_eq!(r.delay_after(2), Duration::from_secs(600));
        assert_eq!(r.delay_after(5), Duration::from_secs(4800));
        assert_eq!(r.delay_after(7), Duration::from_secs(19_200));
        assert_eq!(r.delay_after(8), Duration::from_secs(6 * 3600));
        assert_eq!(r.delay_after(60), Duration::from_secs(6 * 3600));
    }
}
