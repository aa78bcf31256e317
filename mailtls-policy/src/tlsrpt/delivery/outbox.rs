//! Reports waiting for delivery, one file per (report, destination) in the
//! data directory, so a restart or a long outage at the receiver loses none.

use std::path::{Path, PathBuf};
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

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Job {
    target: String,
    report: TlsReport,
    attempts: u32,
    /// Unix seconds.
    next_attempt: i64,
    last_error: Option<String>,
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

/// The on-disk queue.
#[derive(Debug, Clone)]
pub struct Outbox {
    pending: PathBuf,
    undeliverable: PathBuf,
    sent_log: PathBuf,
    retry: RetryPolicy,
}

/// A delivered report, as kept in `sent.log` for status pages.
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

impl Outbox {
    /// Opens (or creates) `dir/pending` and `dir/undeliverable`.
    pub fn open(dir: impl AsRef<Path>, retry: RetryPolicy) -> Result<Self, TlsRptError> {
        let pending = dir.as_ref().join("pending");
        let undeliverable = dir.as_ref().join("undeliverable");
        for d in [&pending, &undeliverable] {
            std::fs::create_dir_all(d).map_err(|e| TlsRptError::io(d, e))?;
        }
        Ok(Self {
            pending,
            undeliverable,
            sent_log: dir.as_ref().join("sent.log"),
            retry,
        })
    }

    /// Queues `report` for every destination, due at once. Queuing the same
    /// report for the same destination again is a no-op.
    pub fn enqueue(
        &self,
        report: &TlsReport,
        rua: &[ReportUri],
        now: OffsetDateTime,
    ) -> Result<(), TlsRptError> {
        for to in rua {
            let target = to.to_string();
            let path = self.pending.join(job_name(&report.report_id, &target));
            if path.exists() {
                continue;
            }
            let job = Job {
                target,
                report: report.clone(),
                attempts: 0,
                next_attempt: now.unix_timestamp(),
                last_error: None,
            };
            write_atomically(&path, &serde_json::to_vec(&job)?)?;
        }
        Ok(())
    }

    /// The queued jobs.
    pub fn pending(&self) -> Result<Vec<JobStatus>, TlsRptError> {
        Ok(self
            .load(&self.pending)?
            .into_iter()
            .map(|(_, j)| status(&j))
            .collect())
    }

    /// The jobs that were given up on (kept for the operator).
    pub fn undeliverable(&self) -> Result<Vec<JobStatus>, TlsRptError> {
        Ok(self
            .load(&self.undeliverable)?
            .into_iter()
            .map(|(_, j)| status(&j))
            .collect())
    }

    /// Tries every job whose time has come, through `deliverer` (normally
    /// a `Deliverer`, feature `tlsrpt-deliver`). The file steps run in
    /// `spawn_blocking`; needs a tokio runtime.
    pub async fn deliver_due<D: DeliverReport + ?Sized>(
        &self,
        deliverer: &D,
        now: OffsetDateTime,
    ) -> Result<DeliveryRun, TlsRptError> {
        let mut run = DeliveryRun::default();
        let jobs = self.off_runtime(|o| o.load(&o.pending)).await?;
        for (path, mut job) in jobs {
            if job.next_attempt > now.unix_timestamp() {
                continue;
            }
            let result = match parse_target(&job.target) {
                Some(uri) => deliverer.deliver_report(&job.report, &uri, now).await,
                None => Err(TlsRptError::Delivery {
                    target: job.target.clone(),
                    reason: "not a mailto: or https: URI".into(),
                }),
            };
            match result {
                Ok(()) => {
                    self.off_runtime(move |o| {
                        o.log_sent(&job, now)?;
                        std::fs::remove_file(&path).map_err(|e| TlsRptError::io(&path, e))
                    })
                    .await?;
                    run.delivered += 1;
                }
                Err(e) => {
                    job.attempts = job.attempts.saturating_add(1);
                    job.last_error = Some(e.to_string());
                    let delay = self.retry.delay_after(job.attempts);
                    job.next_attempt = now.unix_timestamp().saturating_add(delay.as_secs() as i64);
                    let bytes = serde_json::to_vec(&job)?;
                    if job.attempts >= self.retry.max_attempts {
                        self.off_runtime(move |o| {
                            let dest = o.undeliverable.join(path.file_name().unwrap_or_default());
                            write_atomically(&dest, &bytes)?;
                            std::fs::remove_file(&path).map_err(|e| TlsRptError::io(&path, e))
                        })
                        .await?;
                        run.undeliverable += 1;
                    } else {
                        self.off_runtime(move |_| write_atomically(&path, &bytes))
                            .await?;
                        run.deferred += 1;
                    }
                }
            }
        }
        Ok(run)
    }

    /// Runs a file step of [`Self::deliver_due`] in `spawn_blocking`, so
    /// the runtime thread never waits on the disk.
    async fn off_runtime<T: Send + 'static>(
        &self,
        step: impl FnOnce(&Outbox) -> Result<T, TlsRptError> + Send + 'static,
    ) -> Result<T, TlsRptError> {
        let outbox = self.clone();
        tokio::task::spawn_blocking(move || step(&outbox))
            .await
            .map_err(|e| TlsRptError::io(&self.pending, std::io::Error::other(e.to_string())))?
    }

    /// The last `n` delivered reports, newest last.
    pub fn recently_sent(&self, n: usize) -> Result<Vec<SentReport>, TlsRptError> {
        let text = match std::fs::read_to_string(&self.sent_log) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(TlsRptError::io(&self.sent_log, e)),
        };
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..]
            .iter()
            .map(|l| serde_json::from_str(l).map_err(TlsRptError::from))
            .collect()
    }

    fn log_sent(&self, job: &Job, now: OffsetDateTime) -> Result<(), TlsRptError> {
        use std::io::Write;
        let (successful, failed) = job
            .report
            .policies
            .iter()
            .fold((0u64, 0u64), |(ok, bad), p| {
                (
                    ok.saturating_add(p.summary.total_successful_session_count),
                    bad.saturating_add(p.summary.total_failure_session_count),
                )
            });
        let entry = SentReport {
            at: now.unix_timestamp(),
            target: job.target.clone(),
            report_id: job.report.report_id.clone(),
            policy_domain: job.report.policy_domain().to_owned(),
            successful,
            failed,
        };
        let mut line = serde_json::to_vec(&entry)?;
        line.push(b'\n');
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.sent_log)
            .and_then(|mut f| f.write_all(&line))
            .map_err(|e| TlsRptError::io(&self.sent_log, e))
    }

    fn load(&self, dir: &Path) -> Result<Vec<(PathBuf, Job)>, TlsRptError> {
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
            out.push((path, job));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}

fn status(j: &Job) -> JobStatus {
    JobStatus {
        target: j.target.clone(),
        report_id: j.report.report_id.clone(),
        policy_domain: j.report.policy_domain().to_owned(),
        attempts: j.attempts,
        next_attempt: OffsetDateTime::from_unix_timestamp(j.next_attempt)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH),
        last_error: j.last_error.clone(),
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

fn job_name(report_id: &str, target: &str) -> String {
    let input = format!("{report_id}\n{target}");
    let d = crate::crypto::sha256(input.as_bytes());
    let hex: String = d[..12].iter().map(|b| format!("{b:02x}")).collect();
    format!("{hex}.json")
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
