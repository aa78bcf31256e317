//! HTTPS delivery (RFC 8460 §5.4): POST the gzipped report with
//! `Content-Type: application/tlsrpt+gzip`; any 2xx is success.

use std::sync::Arc;
use std::time::Duration;

use crate::tlsrpt::TlsRptError;

/// Posts reports over HTTPS with rustls (the caller's crypto provider) and a
/// caller-chosen set of
/// trusted roots.
#[derive(Debug, Clone)]
pub struct HttpsPoster {
    client: reqwest::Client,
}

impl HttpsPoster {
    /// A poster trusting exactly `roots`, giving up on one attempt after
    /// `timeout`, with TLS through `provider`. Redirects are not followed:
    /// the `rua` URL is the endpoint.
    pub fn new(
        roots: rustls::RootCertStore,
        timeout: Duration,
        provider: Arc<rustls::crypto::CryptoProvider>,
    ) -> Result<Self, TlsRptError> {
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsRptError::Report(format!("TLS configuration: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .user_agent(concat!(
                "mailtls-policy/",
                env!("CARGO_PKG_VERSION"),
                " TLS-RPT"
            ))
            .build()
            .map_err(|e| TlsRptError::Report(format!("HTTP client: {e}")))?;
        Ok(Self { client })
    }

    /// POSTs one gzipped report to `url`.
    pub async fn post(&self, url: &str, gzip: &[u8]) -> Result<(), TlsRptError> {
        let fail = |reason: String| TlsRptError::Delivery {
            target: url.to_owned(),
            reason,
        };
        let resp = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/tlsrpt+gzip")
            .body(gzip.to_vec())
            .send()
            .await
            .map_err(|e| fail(error_chain(&e)))?;
        let status = resp.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(fail(format!("HTTP status {status}")))
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}
