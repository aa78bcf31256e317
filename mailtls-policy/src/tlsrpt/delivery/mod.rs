//! Getting reports to the `rua` destinations: by mail (built here, submitted
//! by the embedding MTA through `MailSubmitter`) or HTTPS POST, with an
//! on-disk outbox that retries with exponential back-off and keeps what
//! could not be delivered.

//!
//! The outbox and the [`DeliverReport`] trait it delivers through are always
//! there; building, signing and sending (`Deliverer`, `HttpsPoster`,
//! `SmtpSubmitter`, `build_report_mail`) need feature `tlsrpt-deliver`.

#[cfg(feature = "tlsrpt-deliver")]
mod dkim;
#[cfg(feature = "tlsrpt-deliver")]
pub mod https;
#[cfg(feature = "tlsrpt-deliver")]
pub mod mail;
pub mod outbox;
#[cfg(feature = "tlsrpt-deliver")]
pub mod smtp;

#[cfg(feature = "tlsrpt-deliver")]
pub use https::HttpsPoster;
#[cfg(feature = "tlsrpt-deliver")]
pub use mail::{DkimConfig, MailIdentity, build_report_mail};
pub use outbox::{
    DeliveryRun, FileOutbox, JobStatus, Outbox, OutboxFuture, OutboxStore, QueuedReport,
    RetryPolicy, SentReport,
};
#[cfg(feature = "tlsrpt-deliver")]
pub use smtp::{SmtpSubmitter, SubmissionTls};

use std::future::Future;
use std::pin::Pin;

use time::OffsetDateTime;

use super::TlsRptError;
use super::record::ReportUri;
use super::report::TlsReport;

/// The future a [`DeliverReport`] returns, boxed so the trait is object
/// safe.
pub type DeliverFuture<'a> = Pin<Box<dyn Future<Output = Result<(), TlsRptError>> + Send + 'a>>;

/// Delivers one report to one `rua` destination: what
/// [`Outbox::deliver_due`] calls for each job that is due. `Deliverer`
/// (feature `tlsrpt-deliver`) is the implementation with mail and HTTPS;
/// an embedder with its own mail and HTTP stack implements this instead.
pub trait DeliverReport: Send + Sync {
    /// Delivers `report` to `to`; an error is retried later.
    fn deliver_report<'a>(
        &'a self,
        report: &'a TlsReport,
        to: &'a ReportUri,
        now: OffsetDateTime,
    ) -> DeliverFuture<'a>;
}

/// Hands a finished mail to the MTA for delivery.
///
/// The MTA should deliver it as it would any mail but must not count its own
/// TLS outcome in TLS-RPT (RFC 8460 §5.3: avoids report loops), and should
/// honour its `TLS-Required: No` header.
#[cfg(feature = "tlsrpt-deliver")]
pub trait MailSubmitter {
    /// Submits `message` with envelope sender `from` to `rcpt`. An error is
    /// retried later.
    fn submit(
        &self,
        from: &str,
        rcpt: &str,
        message: &[u8],
    ) -> impl Future<Output = Result<(), String>> + Send;
}

/// Everything needed to deliver a report to any `rua` URI.
#[cfg(feature = "tlsrpt-deliver")]
#[derive(Debug)]
pub struct Deliverer<M> {
    /// The HTTPS client for `https:` destinations.
    pub https: HttpsPoster,
    /// The MTA's submission hook for `mailto:` destinations.
    pub mail: M,
    /// `From:` and submitter domain of report mails.
    pub identity: MailIdentity,
    /// DKIM key for report mails; RFC 8460 §5.3 requires a signature.
    pub dkim: DkimConfig,
}

#[cfg(feature = "tlsrpt-deliver")]
impl<M: MailSubmitter + Send + Sync> DeliverReport for Deliverer<M> {
    fn deliver_report<'a>(
        &'a self,
        report: &'a TlsReport,
        to: &'a ReportUri,
        now: OffsetDateTime,
    ) -> DeliverFuture<'a> {
        Box::pin(self.deliver(report, to, now))
    }
}

#[cfg(feature = "tlsrpt-deliver")]
impl<M: MailSubmitter> Deliverer<M> {
    /// Delivers one report to one destination.
    pub async fn deliver(
        &self,
        report: &TlsReport,
        to: &ReportUri,
        now: OffsetDateTime,
    ) -> Result<(), TlsRptError> {
        let gzip = report.to_gzip()?;
        match to {
            ReportUri::Https(url) => self.https.post(url, &gzip).await,
            ReportUri::Mailto(rcpt) => {
                let unsigned = build_report_mail(report, &gzip, &self.identity, rcpt, now)?;
                let signed = self.dkim.sign(&unsigned)?;
                self.mail
                    .submit(&self.identity.from, rcpt, &signed)
                    .await
                    .map_err(|reason| TlsRptError::Delivery {
                        target: to.to_string(),
                        reason,
                    })
            }
        }
    }
}
