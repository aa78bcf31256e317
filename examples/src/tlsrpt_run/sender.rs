//! The daily step: which (day, policy domain) reports are due, the domain's
//! `_smtp._tls` record, the report into the outbox, the counts forgotten,
//! then every due delivery tried (mail through the server's own queue,
//! HTTPS by POST).

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use mailtls_core::DnsName;
use mailtls_policy::dns::{DnsResolver, QueryName};
use mailtls_policy::tlsrpt::delivery::{
    Deliverer, HttpsPoster, MailIdentity, MailSubmitter, Outbox, OutboxStore, RetryPolicy,
};
use mailtls_policy::tlsrpt::{
    Collector, CounterStore, Due, LocalCounters, ReportMeta, Schedule, TlsReport, TlsRptRecord,
};
use serde::Serialize;
use time::{Date, OffsetDateTime};

use super::config::TlsRptReportsSection;
use super::dkim_key::DkimKey;
use super::{ReportMailer, TlsRptRunError};

/// Counts of a day whose `_smtp._tls` lookup keeps failing are dropped
/// after this many days: the report would be stale.
const KEEP_UNRESOLVED_DAYS: i64 = 7;
/// The least time between runs when something is already overdue (a DNS
/// failure, a deferred delivery).
const RETRY_FLOOR: Duration = Duration::from_secs(300);
/// The longest sleep between runs.
const MAX_SLEEP: Duration = Duration::from_secs(3600);
/// One HTTPS POST attempt.
const HTTPS_TIMEOUT: Duration = Duration::from_secs(60);

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RunSummary {
    /// When it ran (RFC 3339).
    pub at: String,
    /// Reports put into the outbox (one per day and domain).
    pub queued: usize,
    /// Domains with traffic but no usable `_smtp._tls` record: nobody asked.
    pub no_record: usize,
    /// Domains skipped by `only_with_failures`.
    pub skipped: usize,
    /// Domains whose record lookup failed; their counts are kept for the
    /// next run.
    pub lookup_failed: usize,
    /// Deliveries that succeeded in this run.
    pub delivered: usize,
    /// Deliveries that failed and will be retried.
    pub deferred: usize,
    /// Deliveries given up on (kept in `undeliverable/`).
    pub undeliverable: usize,
}

/// The stores several nodes share for TLS-RPT (`[store] kind = "postgres"`).
#[derive(Clone)]
pub struct SharedTlsRpt {
    /// The counts every node flushes into.
    pub counters: Arc<dyn CounterStore>,
    /// The outbox every node delivers from.
    pub outbox: Arc<dyn OutboxStore>,
}

impl std::fmt::Debug for SharedTlsRpt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedTlsRpt")
            .field("counters", &self.counters)
            .field("outbox", &self.outbox)
            .finish()
    }
}

/// Sends the daily reports.
pub(crate) struct ReportSender {
    /// The counts reports are built from: the local collector's own log,
    /// or the database several nodes share.
    counters: Arc<dyn CounterStore>,
    resolver: Arc<dyn DnsResolver>,
    pub(crate) outbox: Outbox,
    schedule: Schedule,
    meta: ReportMeta,
    identity: MailIdentity,
    dkim: DkimKey,
    https: HttpsPoster,
    pub(crate) last_run: Mutex<Option<RunSummary>>,
    /// One run at a time (the task and a `run_now` from a test or CLI).
    running: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for ReportSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReportSender")
            .field("counters", &self.counters)
            .field("outbox", &self.outbox)
            .field("meta", &self.meta)
            .field("dkim", &self.dkim)
            .finish_non_exhaustive()
    }
}

/// The public web roots plus the configured extra ones.
fn https_roots(section: &TlsRptReportsSection) -> Result<rustls::RootCertStore, TlsRptRunError> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = &section.https_ca_file {
        crate::tls::add_pem_roots(&mut roots, path).map_err(|message| TlsRptRunError::CaFile {
            path: path.clone(),
            message,
        })?;
    }
    Ok(roots)
}

impl ReportSender {
    /// Blocking: may make the DKIM key.
    pub(crate) fn new(
        section: &TlsRptReportsSection,
        data_dir: &std::path::Path,
        collector: Arc<Collector>,
        resolver: Arc<dyn DnsResolver>,
        shared: Option<&SharedTlsRpt>,
    ) -> Result<Self, TlsRptRunError> {
        let dkim = DkimKey::load_or_generate(section, data_dir)?;
        let outbox_dir = data_dir.join("tlsrpt-outbox");
        mailtls_core::secret_file::ensure_private_dir(&outbox_dir).map_err(|source| {
            TlsRptRunError::Io {
                path: outbox_dir.clone(),
                source,
            }
        })?;
        let (counters, outbox): (Arc<dyn CounterStore>, Outbox) = match shared {
            Some(s) => (
                Arc::clone(&s.counters),
                Outbox::with_store(Arc::clone(&s.outbox), RetryPolicy::default()),
            ),
            None => (
                Arc::new(LocalCounters::new(collector)),
                Outbox::open(&outbox_dir, RetryPolicy::default())?,
            ),
        };
        let https = HttpsPoster::new(
            https_roots(section)?,
            HTTPS_TIMEOUT,
            Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
        )?;
        Ok(ReportSender {
            counters,
            resolver,
            outbox,
            schedule: Schedule {
                window_start: section.window_start,
                window: section.window_spread,
                only_with_failures: section.only_with_failures,
            },
            meta: ReportMeta {
                organization_name: section.organization_name.clone(),
                contact_info: section.contact_info.clone(),
                submitter: section.submitter.to_string(),
            },
            identity: MailIdentity {
                from: section.sender.clone(),
                submitter: section.submitter.to_string(),
            },
            dkim,
            https,
            last_run: Mutex::new(None),
            running: tokio::sync::Mutex::new(()),
        })
    }

    /// The domain's TLSRPT record: `Ok(None)` when there is definitely none
    /// (no record, NXDOMAIN, nothing usable), `Err` when the lookup failed
    /// and should be tried again.
    async fn lookup(&self, domain: &str) -> Result<Option<TlsRptRecord>, String> {
        let Ok(host) = DnsName::parse(domain) else {
            return Ok(None);
        };
        let Ok(name) = QueryName::with_service(&["_smtp", "_tls"], &host) else {
            return Ok(None);
        };
        match self.resolver.txt(&name).await {
            Ok(answer) => {
                let texts: Vec<String> = answer
                    .records
                    .iter()
                    .map(|r| String::from_utf8_lossy(&r.joined()).into_owned())
                    .collect();
                match TlsRptRecord::from_txt_records(texts.iter().map(|t| [t.as_str()])) {
                    Ok(record) => {
                        for d in record.diagnostics() {
                            tracing::info!(%domain, diagnostic = %d, "TLSRPT record");
                        }
                        Ok(Some(record))
                    }
                    Err(e) => {
                        tracing::info!(%domain, error = %e, "no usable TLSRPT record; report not sent");
                        Ok(None)
                    }
                }
            }
            Err(e) if e.is_negative_answer() => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Queues every due report and tries every due delivery.
    pub(crate) async fn run(
        &self,
        mailer: &dyn ReportMailer,
        now: OffsetDateTime,
    ) -> Result<RunSummary, TlsRptRunError> {
        let _one = self.running.lock().await;
        let mut summary = RunSummary {
            at: super::rfc3339(now),
            ..RunSummary::default()
        };
        let snapshot = self.counters.load().await?;
        let groups = snapshot.grouped();
        let mut done: Vec<(Date, String)> = Vec::new();
        for due in self.schedule.due(&snapshot, now) {
            let (day, domain) = match due {
                Due::Skip { day, domain } => {
                    summary.skipped += 1;
                    done.push((day, domain));
                    continue;
                }
                Due::Send { day, domain } => (day, domain),
            };
            match self.lookup(&domain).await {
                Ok(Some(record)) => {
                    let tuples = groups
                        .get(&(day, domain.as_str()))
                        .map(Vec::as_slice)
                        .unwrap_or_default();
                    if let Some(report) = TlsReport::from_tuples(tuples, day, &domain, &self.meta) {
                        // On disk before the counts go: a crash in between
                        // queues the same report again, which the outbox
                        // ignores.
                        self.outbox.enqueue(&report, record.rua(), now).await?;
                        summary.queued += 1;
                        tracing::info!(%domain, %day, report_id = %report.report_id, rua = ?record.rua().iter().map(ToString::to_string).collect::<Vec<_>>(), "TLS report queued");
                    }
                    done.push((day, domain));
                }
                Ok(None) => {
                    summary.no_record += 1;
                    done.push((day, domain));
                }
                Err(e) => {
                    summary.lookup_failed += 1;
                    let stale = (now.date() - day).whole_days() > KEEP_UNRESOLVED_DAYS;
                    tracing::warn!(%domain, %day, error = %e, dropped = stale, "TLSRPT record lookup failed");
                    if stale {
                        done.push((day, domain));
                    }
                }
            }
        }
        if !done.is_empty() {
            self.counters.forget(done).await?;
        }
        let deliverer = Deliverer {
            https: self.https.clone(),
            mail: MailerAdapter(mailer),
            identity: self.identity.clone(),
            dkim: self.dkim.signer()?,
        };
        let delivery = self.outbox.deliver_due(&deliverer, now).await?;
        summary.delivered = delivery.delivered;
        summary.deferred = delivery.deferred;
        summary.undeliverable = delivery.undeliverable;
        if summary
            != (RunSummary {
                at: summary.at.clone(),
                ..RunSummary::default()
            })
        {
            tracing::info!(?summary, "TLS-RPT run");
        }
        *self.last_run.lock().unwrap_or_else(PoisonError::into_inner) = Some(summary.clone());
        Ok(summary)
    }

    /// The DKIM key report mails are signed with.
    pub(crate) fn dkim(&self) -> &DkimKey {
        &self.dkim
    }

    /// When the next run has something to do: the earliest report due or
    /// delivery retry, at most [`MAX_SLEEP`] away and, when something is
    /// already overdue (it failed just now), at least [`RETRY_FLOOR`].
    pub(crate) async fn next_wake(&self, now: OffsetDateTime) -> OffsetDateTime {
        let mut next = now + MAX_SLEEP;
        let today = now.date();
        let counts = self.counters.load().await.unwrap_or_default();
        for (day, domain) in counts.grouped().into_keys() {
            let at = self.schedule.send_at(day, domain);
            let at = if day >= today || at > now {
                at
            } else {
                now + RETRY_FLOOR
            };
            next = next.min(at);
        }
        if let Ok(jobs) = self.outbox.pending().await {
            for j in jobs {
                let at = if j.next_attempt > now {
                    j.next_attempt
                } else if j.attempts == 0 {
                    // Queued but never tried (a run was cut short).
                    now
                } else {
                    now + RETRY_FLOOR
                };
                next = next.min(at);
            }
        }
        next.max(now + Duration::from_secs(1))
    }
}

/// mailtls-policy's submission hook over the server's [`ReportMailer`].
struct MailerAdapter<'a>(&'a dyn ReportMailer);

impl MailSubmitter for MailerAdapter<'_> {
    fn submit(
        &self,
        from: &str,
        rcpt: &str,
        message: &[u8],
    ) -> impl Future<Output = Result<(), String>> + Send {
        let fut = self
            .0
            .send(from.to_owned(), rcpt.to_owned(), message.to_vec());
        async move {
            let id = fut.await?;
            tracing::info!(queue_id = %id, "TLS report mail handed to the queue");
            Ok(())
        }
    }
}
