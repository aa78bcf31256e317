//! Getting reports to the `rua` destinations: by mail (built here, submitted
//! by the embedding MTA through [`MailSubmitter`]) or HTTPS POST, with an
//! on-disk outbox that retries with exponential back-off and keeps what
//! could not be delivered.

pub mod https;
pub mod mail;
pub mod outbox;
pub mod smtp;

pub use https::HttpsPoster;
pub use mail::{DkimConfig, MailIdentity, build_report_mail};
pub use outbox::{DeliveryRun, JobStatus, Outbox, RetryPolicy, SentReport};
pub use smtp::{SmtpSubmitter, SubmissionTls};

use std::future::Future;

use time::OffsetDateTime;

use super::TlsRptError;
use super::record::ReportUri;
use super::report::TlsReport;

/// Hands a finished mail to the MTA for delivery.
///
/// The MTA should deliver it as it would any mail but must not count its own
/// TLS outcome in TLS-RPT (RFC 8460 §5.3: avoids report loops), and should
/// honour its `TLS-Required: No` header.
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
