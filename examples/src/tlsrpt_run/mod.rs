//! TLS-RPT (RFC 8460) inside the reference server: the daily reports about
//! this server's outbound TLS, and the reports other senders mail to this
//! server's own `rua` mailboxes.
//!
//! - Sending (`[tlsrpt_reports] enabled = true`): once a day per policy
//!   domain, spread over a window after midnight UTC, the counts the
//!   outbound path recorded in the collector become a report for each
//!   domain that publishes `_smtp._tls`; reports wait in
//!   `<data_dir>/tlsrpt-outbox/` until delivered (by mail through the
//!   server's own queue, DKIM-signed, or by HTTPS POST) and are retried with
//!   back-off; a day's counts are forgotten once its report is queued on
//!   disk (or nobody asked for one).
//! - Receiving: a message for a local mailbox named as a `mailto:` in
//!   `[tls_rpt] rua` is parsed and summarised into
//!   `<data_dir>/tlsrpt-received/` (it is still spooled for the mailbox).
//! - [`TlsRptRun::status`]: today's counts per domain, the last reports
//!   sent, the outbox, and the received summaries per day and failure type.

pub mod config;
pub mod dkim_key;
mod received;
mod sender;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, OnceLock, PoisonError, RwLock, Weak};

use mailtls_policy::dns::DnsResolver;
use mailtls_policy::tlsrpt::{Collector, TlsRptError};
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::watch;

pub use config::{DkimAlgorithm, TlsRptReportsSection};
pub use dkim_key::{DkimKey, dkim_dns_records};
pub use received::ReceivedDay;
pub use sender::{RunSummary, SharedTlsRpt};

use crate::config::Config;
use received::ReceivedStore;
use sender::ReportSender;

/// How many delivered reports the status shows.
const LAST_SENT: usize = 20;
/// How many days of received reports the status sums up.
const RECEIVED_DAYS: i64 = 31;

/// Why TLS-RPT could not start or a run failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsRptRunError {
    /// The DKIM key file could not be read, made or used
    /// (config key `tlsrpt_reports.dkim_key_file`).
    #[error("tlsrpt_reports.dkim_key_file {path}: {message}")]
    DkimKey {
        /// The key file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The extra HTTPS roots could not be read
    /// (config key `tlsrpt_reports.https_ca_file`).
    #[error("tlsrpt_reports.https_ca_file {path}: {message}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A TLS-RPT data directory could not be used.
    #[error("TLS-RPT storage {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The collector, outbox, report builder or parser failed.
    #[error(transparent)]
    TlsRpt(#[from] TlsRptError),
    /// A blocking task panicked.
    #[error("TLS-RPT task failed: {0}")]
    Task(String),
}

/// A boxed future, so [`ReportMailer`] can be used as a trait object.
pub type MailerFuture<'a> = Pin<Box<dyn Future<Output = Result<String, String>> + Send + 'a>>;

/// Hands a report mail to the server's outbound queue (`submit_internal`),
/// so it is queued, retried and never lost like any server-written mail.
pub trait ReportMailer: Send + Sync {
    /// Submits `message` (complete, DKIM-signed) from `from` to `rcpt`;
    /// returns the queue id. An error is retried by the report outbox.
    fn send(&self, from: String, rcpt: String, message: Vec<u8>) -> MailerFuture<'_>;
}

/// Counts of one policy domain on the current UTC day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DomainCounts {
    /// The policy domain.
    pub domain: String,
    /// Successful sessions.
    pub successful: u64,
    /// Failed sessions.
    pub failed: u64,
}

/// One delivered report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SentStatus {
    /// When (RFC 3339).
    pub at: String,
    /// The `rua` URI.
    pub target: String,
    /// The report's id.
    pub report_id: String,
    /// The policy domain.
    pub policy_domain: String,
    /// Successful sessions in the report.
    pub successful: u64,
    /// Failed sessions in the report.
    pub failed: u64,
}

/// One report delivery still to be tried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PendingStatus {
    /// The `rua` URI.
    pub target: String,
    /// The policy domain.
    pub policy_domain: String,
    /// Failed attempts so far.
    pub attempts: u32,
    /// When the next attempt is due (RFC 3339).
    pub next_attempt: String,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

/// What the status page shows about TLS-RPT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TlsRptStatus {
    /// The UTC day of `today`.
    pub day: String,
    /// Sessions per policy domain so far today.
    pub today: Vec<DomainCounts>,
    /// Whether daily reports are sent (`[tlsrpt_reports] enabled`).
    pub sending: bool,
    /// The DKIM record report mails need (`name TXT text`), when sending.
    pub dkim_record: Option<String>,
    /// The last delivered reports, newest first.
    pub last_sent: Vec<SentStatus>,
    /// Deliveries waiting for a retry.
    pub pending: Vec<PendingStatus>,
    /// Deliveries given up on.
    pub undeliverable: usize,
    /// The last run, if one happened since start.
    pub last_run: Option<RunSummary>,
    /// The mailboxes received reports are read from.
    pub received_mailboxes: Vec<String>,
    /// Received reports per day and policy domain, newest first.
    pub received: Vec<ReceivedDay>,
    /// Anything that could not be read for this status.
    pub errors: Vec<String>,
}

/// TLS-RPT in the server: daily reports and received reports.
pub struct TlsRptRun {
    collector: Arc<Collector>,
    /// The stores shared with other nodes, when `[store]` is postgres.
    shared: Option<SharedTlsRpt>,
    sender: Option<ReportSender>,
    /// From `[tls_rpt] rua` of the configuration in effect (a reload may
    /// change it).
    mailboxes: RwLock<Vec<String>>,
    received: ReceivedStore,
    mailer: OnceLock<Arc<dyn ReportMailer>>,
}

impl std::fmt::Debug for TlsRptRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsRptRun")
            .field("collector", &self.collector)
            .field("sender", &self.sender)
            .field(
                "mailboxes",
                &*self
                    .mailboxes
                    .read()
                    .unwrap_or_else(PoisonError::into_inner),
            )
            .field("received", &self.received)
            .field("mailer_attached", &self.mailer.get().is_some())
            .finish()
    }
}

/// The mailer in effect before one is attached: report mails wait.
struct Unattached;

impl ReportMailer for Unattached {
    fn send(&self, _from: String, rcpt: String, _message: Vec<u8>) -> MailerFuture<'_> {
        Box::pin(async move { Err(format!("no mail submission attached; cannot mail {rcpt}")) })
    }
}

pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// The `mailto:` addresses of `[tls_rpt] rua`, lowercase, without
/// `?` parameters.
fn rua_mailboxes(config: &Config) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in &config.mta_sts.publications {
        for uri in &p.rua {
            let Some(scheme) = uri.get(..7) else { continue };
            if !scheme.eq_ignore_ascii_case("mailto:") {
                continue;
            }
            let addr = uri[7..]
                .split('?')
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase();
            if !addr.is_empty() && !out.contains(&addr) {
                out.push(addr);
            }
        }
    }
    out
}

impl TlsRptRun {
    /// Sets TLS-RPT up from `[tlsrpt_reports]` and `[tls_rpt]`, over the
    /// collector the outbound path records into and the resolver it uses.
    /// Blocking (it may make the DKIM key): call it off the async runtime.
    pub fn new(
        config: &Config,
        collector: Arc<Collector>,
        resolver: Arc<dyn DnsResolver>,
    ) -> Result<Self, TlsRptRunError> {
        Self::with_shared(config, collector, resolver, None)
    }

    /// [`TlsRptRun::new`] for a node of a cluster: reports are built from
    /// the shared counts (this node's collector moves its counts there with
    /// [`TlsRptRun::flush_shared`]) and delivered from the shared outbox.
    pub fn with_shared(
        config: &Config,
        collector: Arc<Collector>,
        resolver: Arc<dyn DnsResolver>,
        shared: Option<SharedTlsRpt>,
    ) -> Result<Self, TlsRptRunError> {
        let data_dir = &config.server.data_dir;
        let sender = if config.tlsrpt_reports.enabled {
            Some(ReportSender::new(
                &config.tlsrpt_reports,
                data_dir,
                Arc::clone(&collector),
                resolver,
                shared.as_ref(),
            )?)
        } else {
            None
        };
        let received = ReceivedStore::open(data_dir.join("tlsrpt-received"))?;
        Ok(TlsRptRun {
            collector,
            shared,
            sender,
            mailboxes: RwLock::new(rua_mailboxes(config)),
            received,
            mailer: OnceLock::new(),
        })
    }

    /// The collector the outbound path records session outcomes into.
    pub fn collector(&self) -> &Arc<Collector> {
        &self.collector
    }

    /// Moves this node's counts to the shared store (nothing without one);
    /// returns the sessions moved. On failure the counts stay in the local
    /// log for the next call.
    pub async fn flush_shared(&self) -> Result<u64, TlsRptError> {
        match &self.shared {
            Some(s) => self.collector.flush_to(s.counters.as_ref()).await,
            None => Ok(0),
        }
    }

    /// Flushes to the shared store every `interval` until `shutdown`, and
    /// once more then. Failures are logged: the local log keeps counting.
    pub async fn run_flushes(
        self: Arc<Self>,
        interval: std::time::Duration,
        mut shutdown: watch::Receiver<bool>,
    ) {
        if self.shared.is_none() {
            return;
        }
        // The first flush at once: counts an earlier run left in the local
        // log (a crash, the database away) go first.
        loop {
            if let Err(e) = self.flush_shared().await {
                tracing::warn!(error = %e, "TLS-RPT counts not moved to the shared store yet");
            }
            let stop = tokio::select! {
                () = tokio::time::sleep(interval) => false,
                _ = shutdown.wait_for(|stop| *stop) => true,
            };
            if stop {
                if let Err(e) = self.flush_shared().await {
                    tracing::warn!(error = %e, "TLS-RPT counts stay in the local log until the next start");
                }
                return;
            }
        }
    }

    /// Whether daily reports are sent.
    pub fn sending(&self) -> bool {
        self.sender.is_some()
    }

    /// The DKIM key report mails are signed with, when sending.
    pub fn dkim_key(&self) -> Option<&DkimKey> {
        self.sender.as_ref().map(|s| s.dkim())
    }

    /// Sets the mailer report mails go through (the server attaches its
    /// outbound queue at start). Returns false when one was attached before;
    /// that one stays.
    pub fn attach_mailer(&self, mailer: Arc<dyn ReportMailer>) -> bool {
        self.mailer.set(mailer).is_ok()
    }

    /// One run now: queues the reports that are due and tries every due
    /// delivery, mail through the attached mailer (without one, mail
    /// deliveries fail and are retried later). Does nothing when sending is
    /// not enabled.
    pub async fn run_now(&self) -> Result<RunSummary, TlsRptRunError> {
        self.run_at(OffsetDateTime::now_utc()).await
    }

    /// [`TlsRptRun::run_now`] as if the time were `now` (tests, catching up).
    pub async fn run_at(&self, now: OffsetDateTime) -> Result<RunSummary, TlsRptRunError> {
        match self.mailer.get() {
            Some(m) => self.run_with(m.as_ref(), now).await,
            None => self.run_with(&Unattached, now).await,
        }
    }

    /// [`TlsRptRun::run_at`] with report mails through `mailer`.
    pub async fn run_with(
        &self,
        mailer: &dyn ReportMailer,
        now: OffsetDateTime,
    ) -> Result<RunSummary, TlsRptRunError> {
        match &self.sender {
            Some(s) => s.run(mailer, now).await,
            None => Ok(RunSummary {
                at: rfc3339(now),
                ..RunSummary::default()
            }),
        }
    }

    /// Runs whenever something is due until `shutdown` turns true.
    pub async fn run_schedule(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let Some(sender) = &self.sender else { return };
        loop {
            let run = match self.mailer.get() {
                Some(m) => sender.run(m.as_ref(), OffsetDateTime::now_utc()).await,
                None => sender.run(&Unattached, OffsetDateTime::now_utc()).await,
            };
            if let Err(e) = run {
                tracing::error!(error = %e, "TLS-RPT run failed");
            }
            let now = OffsetDateTime::now_utc();
            let wait = sender.next_wake(now).await - now;
            let wait = std::time::Duration::try_from(wait).unwrap_or_default();
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
        }
    }

    /// Whether `rcpt` is one of the `rua` mailboxes received reports go to.
    pub fn is_report_mailbox(&self, rcpt: &str) -> bool {
        let rcpt = rcpt.to_ascii_lowercase();
        self.mailboxes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&rcpt)
    }

    /// The mailboxes of `[tls_rpt] rua` in `config`, the configuration in
    /// effect after a reload.
    pub fn update_mailboxes(&self, config: &Config) {
        let new = rua_mailboxes(config);
        let mut current = self
            .mailboxes
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if *current != new {
            tracing::info!(mailboxes = ?new, "TLS-RPT report mailboxes changed");
            *current = new;
        }
    }

    /// Called for a message to local recipients: when one of them is a `rua`
    /// mailbox (as [`TlsRptRun::update_mailboxes`] last set them), the
    /// reports in it are parsed and summarised. Returns `None` when the message is not for a
    /// report mailbox, else how many new reports it held. A message that
    /// holds no readable report is logged and counted as 0: the mailbox
    /// still gets it.
    pub async fn receive(&self, rcpt_to: &[String], message: &[u8]) -> Option<usize> {
        if !rcpt_to.iter().any(|r| self.is_report_mailbox(r)) {
            return None;
        }
        let store = self.received.clone();
        let bytes = message.to_vec();
        let stored =
            tokio::task::spawn_blocking(move || store.store(&bytes, OffsetDateTime::now_utc()))
                .await;
        match stored {
            Ok(Ok(n)) => {
                tracing::info!(reports = n, "received TLS report stored");
                Some(n)
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "message to a TLS-RPT mailbox holds no readable report");
                Some(0)
            }
            Err(e) => {
                tracing::error!(error = %e, "TLS-RPT receive task failed");
                Some(0)
            }
        }
    }

    /// What the last report run did, if one ran (reads no file).
    pub fn last_run(&self) -> Option<RunSummary> {
        self.sender.as_ref().and_then(|s| {
            s.last_run
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
        })
    }

    /// Today's counts, what was sent and what was received. Reads the
    /// outbox and the received summaries from disk (small files).
    pub async fn status(&self) -> TlsRptStatus {
        let now = OffsetDateTime::now_utc();
        let today = now.date();
        let mut errors = Vec::new();
        let mut snapshot = self.collector.snapshot();
        if let Some(shared) = &self.shared {
            match shared.counters.load().await {
                Ok(stored) => snapshot.merge(&stored),
                Err(e) => errors.push(e.to_string()),
            }
        }
        let today_counts = snapshot
            .grouped()
            .into_iter()
            .filter(|((day, _), _)| *day == today)
            .map(|((day, domain), _)| {
                let (successful, failed) = snapshot.totals(day, domain);
                DomainCounts {
                    domain: domain.to_owned(),
                    successful,
                    failed,
                }
            })
            .collect();
        let mut last_sent = Vec::new();
        let mut pending = Vec::new();
        let mut undeliverable = 0;
        let mut last_run = None;
        let mut dkim_record = None;
        if let Some(s) = &self.sender {
            match s.outbox.recently_sent(LAST_SENT).await {
                Ok(list) => {
                    last_sent = list
                        .into_iter()
                        .rev()
                        .map(|r| SentStatus {
                            at: OffsetDateTime::from_unix_timestamp(r.at)
                                .map(rfc3339)
                                .unwrap_or_default(),
                            target: r.target,
                            report_id: r.report_id,
                            policy_domain: r.policy_domain,
                            successful: r.successful,
                            failed: r.failed,
                        })
                        .collect();
                }
                Err(e) => errors.push(e.to_string()),
            }
            match s.outbox.pending().await {
                Ok(list) => {
                    pending = list
                        .into_iter()
                        .map(|j| PendingStatus {
                            target: j.target,
                            policy_domain: j.policy_domain,
                            attempts: j.attempts,
                            next_attempt: rfc3339(j.next_attempt),
                            last_error: j.last_error,
                        })
                        .collect();
                }
                Err(e) => errors.push(e.to_string()),
            }
            match s.outbox.undeliverable().await {
                Ok(list) => undeliverable = list.len(),
                Err(e) => errors.push(e.to_string()),
            }
            last_run = s
                .last_run
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            let key = s.dkim();
            dkim_record = Some(format!("{} TXT {}", key.record_name(), key.record_text()));
        }
        let since = (today - time::Duration::days(RECEIVED_DAYS)).to_string();
        let received = match self.received.summary(&since) {
            Ok(r) => r,
            Err(e) => {
                errors.push(e.to_string());
                Vec::new()
            }
        };
        TlsRptStatus {
            day: today.to_string(),
            today: today_counts,
            sending: self.sender.is_some(),
            dkim_record,
            last_sent,
            pending,
            undeliverable,
            last_run,
            received_mailboxes: self
                .mailboxes
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
            received,
            errors,
        }
    }
}

/// Report mails through the server's own message path
/// ([`crate::accept::submit_internal`]): queued, retried and never lost.
/// Holds the server weakly: the server holds this run, which holds the mailer.
pub(crate) struct InternalMailer(pub(crate) Weak<crate::server::Shared>);

impl ReportMailer for InternalMailer {
    fn send(&self, from: String, rcpt: String, message: Vec<u8>) -> MailerFuture<'_> {
        Box::pin(async move {
            let Some(shared) = self.0.upgrade() else {
                return Err("the server is shutting down".to_owned());
            };
            let shared = &*shared;
            // With outbound delivery off, accept() would spool a remote
            // recipient's copy locally; the report would count as sent but
            // never leave. Keep it in the outbox instead.
            if !shared.outbound.is_enabled() && !crate::smtp::is_local(&rcpt, &shared.local_domains)
            {
                return Err(format!(
                    "outbound delivery is off ([outbound] enabled = false); cannot mail {rcpt}"
                ));
            }
            crate::accept::submit_internal(shared, &from, &[rcpt], message)
                .await
                .map_err(|e| e.to_string())
        })
    }
}
