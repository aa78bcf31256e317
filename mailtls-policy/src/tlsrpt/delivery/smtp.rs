//! A [`MailSubmitter`] that submits report mails over SMTP (lettre), for
//! MTAs that would rather relay through themselves or a smarthost than take
//! the mail through an in-process hook.

use std::future::Future;
use std::time::Duration;

use lettre::address::Envelope;
use lettre::transport::smtp::AsyncSmtpTransport;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{AsyncTransport, Tokio1Executor};
use rustls_pki_types::CertificateDer;

use super::MailSubmitter;
use crate::tlsrpt::TlsRptError;

/// How to protect the submission connection.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SubmissionTls {
    /// Plain SMTP: only for a relay on loopback or a trusted link.
    None,
    /// STARTTLS required, the server certificate checked against exactly
    /// these roots and the relay's host name.
    Required {
        /// Trusted roots (DER).
        roots: Vec<CertificateDer<'static>>,
    },
}

/// Submits mails to one SMTP relay.
#[derive(Clone)]
pub struct SmtpSubmitter {
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl std::fmt::Debug for SmtpSubmitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSubmitter").finish_non_exhaustive()
    }
}

impl SmtpSubmitter {
    /// A submitter for `host:port`; `host` is also the name the certificate
    /// must carry when TLS is required.
    pub fn new(
        host: &str,
        port: u16,
        tls: SubmissionTls,
        timeout: Duration,
    ) -> Result<Self, TlsRptError> {
        let fail = |e: lettre::transport::smtp::Error| {
            TlsRptError::Mail(format!("SMTP relay {host}:{port}: {e}"))
        };
        let tls = match tls {
            SubmissionTls::None => Tls::None,
            SubmissionTls::Required { roots } => {
                let mut params = TlsParameters::builder(host.to_owned())
                    .certificate_store(CertificateStore::None);
                for root in roots {
                    params = params
                        .add_root_certificate(Certificate::from_der(root.to_vec()).map_err(fail)?);
                }
                Tls::Required(params.build_rustls().map_err(fail)?)
            }
        };
        let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(port)
            .tls(tls)
            .timeout(Some(timeout))
            .build();
        Ok(Self { transport })
    }
}

impl MailSubmitter for SmtpSubmitter {
    fn submit(
        &self,
        from: &str,
        rcpt: &str,
        message: &[u8],
    ) -> impl Future<Output = Result<(), String>> + Send {
        let envelope = match (from.parse(), rcpt.parse()) {
            (Ok(f), Ok(r)) => Envelope::new(Some(f), vec![r]).map_err(|e| e.to_string()),
            (Err(e), _) => Err(format!("envelope sender {from:?}: {e}")),
            (_, Err(e)) => Err(format!("recipient {rcpt:?}: {e}")),
        };
        async move {
            let envelope = envelope?;
            self.transport
                .send_raw(&envelope, message)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    }
}
