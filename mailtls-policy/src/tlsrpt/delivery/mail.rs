//! The report mail (RFC 8460 §5.3): `multipart/report; report-type=tlsrpt`
//! with a short text part and the gzipped report, DKIM-signed.

use mail_builder::MessageBuilder;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::raw::Raw;
use mail_builder::mime::MimePart;
use rustls_pki_types::PrivateKeyDer;
use time::OffsetDateTime;

use super::dkim::Signer;
use crate::tlsrpt::TlsRptError;
use crate::tlsrpt::report::TlsReport;

/// Headers covered by the DKIM signature: the RFC 5322 basics plus the two
/// TLS-RPT headers, so a receiver can trust which domain the report is for.
const SIGNED_HEADERS: &[&str] = &[
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
    "TLS-Report-Domain",
    "TLS-Report-Submitter",
    "TLS-Required",
];

/// A DKIM signing key with its domain and selector.
pub struct DkimConfig {
    domain: String,
    selector: String,
    signer: Signer,
}

impl std::fmt::Debug for DkimConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DkimConfig")
            .field("domain", &self.domain)
            .field("selector", &self.selector)
            .finish_non_exhaustive()
    }
}

impl DkimConfig {
    /// From a private key (load PEM with `rustls_pki_types::pem::PemObject`):
    /// RSA as PKCS#1 or PKCS#8 (rsa-sha256), or Ed25519 as PKCS#8
    /// (ed25519-sha256, RFC 8463).
    pub fn new(domain: &str, selector: &str, key: &PrivateKeyDer<'_>) -> Result<Self, TlsRptError> {
        let signer =
            Signer::new(domain, selector, key, SIGNED_HEADERS).map_err(TlsRptError::Mail)?;
        Ok(Self {
            domain: domain.to_owned(),
            selector: selector.to_owned(),
            signer,
        })
    }

    /// Returns the message with a `DKIM-Signature` header prepended.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, TlsRptError> {
        let mut out = self
            .signer
            .signature_header(message)
            .map_err(|e| TlsRptError::Mail(format!("DKIM signing: {e}")))?;
        out.extend_from_slice(message);
        Ok(out)
    }
}

/// Addresses and identity for the report mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailIdentity {
    /// `From:` address (should be in the DKIM domain).
    pub from: String,
    /// The submitter domain (`TLS-Report-Submitter`).
    pub submitter: String,
}

/// Builds the RFC 8460 §5.3 report mail for one `mailto:` destination,
/// unsigned. The `TLS-Required: No` header (RFC 8689 §5) lets it go out even
/// to a domain whose TLS is broken: that is what the report is about.
pub fn build_report_mail(
    report: &TlsReport,
    gzip: &[u8],
    identity: &MailIdentity,
    to: &str,
    now: OffsetDateTime,
) -> Result<Vec<u8>, TlsRptError> {
    let domain = report.policy_domain();
    let filename = report.filename(&identity.submitter);
    let subject = format!(
        "Report Domain: {domain} Submitter: {} Report-ID: <{}>",
        identity.submitter, report.report_id
    );
    let text = format!(
        "This is an aggregate TLS report (RFC 8460) from {} for {domain}, \
         covering {} to {}.\r\n",
        identity.submitter, report.date_range.start_datetime, report.date_range.end_datetime
    );
    let message_id = format!("{}.{}", now.unix_timestamp(), report.report_id);
    let body = MimePart::new(
        ContentType::new("multipart/report").attribute("report-type", "tlsrpt"),
        vec![
            MimePart::new("text/plain", text),
            MimePart::new(ContentType::new("application/tlsrpt+gzip"), gzip.to_vec())
                .attachment(filename),
        ],
    );
    MessageBuilder::new()
        .from(identity.from.clone())
        .to(to.to_owned())
        .subject(subject)
        .date(now.unix_timestamp())
        .message_id(message_id)
        .header("TLS-Report-Domain", Raw::new(domain.to_owned()))
        .header("TLS-Report-Submitter", Raw::new(identity.submitter.clone()))
        .header("TLS-Required", Raw::new("No"))
        .body(body)
        .write_to_vec()
        .map_err(|e| TlsRptError::Mail(format!("building the report mail: {e}")))
}
