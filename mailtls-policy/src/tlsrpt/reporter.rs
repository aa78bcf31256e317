//! The daily step that ties the pieces together: which reports are due,
//! build them, queue them for each `rua`, and forget the counts.

use time::OffsetDateTime;

use super::TlsRptError;
use super::collector::CounterStore;
use super::delivery::Outbox;
use super::record::TlsRptRecord;
use super::report::{ReportMeta, TlsReport};
use super::schedule::{Due, Schedule};

/// What [`queue_due_reports`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueRun {
    /// Reports queued (one per day and domain; each may have several `rua`).
    pub queued: usize,
    /// Domains skipped by the schedule's filter.
    pub skipped: usize,
    /// Domains without a usable `_smtp._tls` record: nobody asked.
    pub no_record: usize,
}

/// Queues every report that is due at `now` into `outbox` and removes its
/// counts from `counters`. `lookup` gives the domain's TLSRPT record (the
/// caller resolves `_smtp._tls.DOMAIN` beforehand; `None` when there is
/// none).
///
/// Queuing happens before forgetting, and both are stored: a crash in
/// between at worst queues the same report again, which the outbox ignores.
pub async fn queue_due_reports(
    counters: &dyn CounterStore,
    schedule: &Schedule,
    outbox: &Outbox,
    meta: &ReportMeta,
    now: OffsetDateTime,
    mut lookup: impl FnMut(&str) -> Option<TlsRptRecord>,
) -> Result<QueueRun, TlsRptError> {
    let snapshot = counters.load().await?;
    let groups = snapshot.grouped();
    let mut run = QueueRun::default();
    let mut done = Vec::new();
    for due in schedule.due(&snapshot, now) {
        match due {
            Due::Skip { day, domain } => {
                run.skipped += 1;
                done.push((day, domain));
            }
            Due::Send { day, domain } => {
                match (
                    lookup(&domain),
                    TlsReport::from_tuples(
                        groups
                            .get(&(day, domain.as_str()))
                            .map(Vec::as_slice)
                            .unwrap_or_default(),
                        day,
                        &domain,
                        meta,
                    ),
                ) {
                    (Some(record), Some(report)) => {
                        outbox.enqueue(&report, record.rua(), now).await?;
                        run.queued += 1;
                    }
                    _ => run.no_record += 1,
                }
                done.push((day, domain));
            }
        }
    }
    if !done.is_empty() {
        counters.forget(done).await?;
    }
    Ok(run)
}
