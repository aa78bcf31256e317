//! The TLS side of the server: one [`SniResolver`] behind every listener,
//! and the few rustls `ServerConfig`s built once around it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use mailtls_core::{ACME_TLS_ALPN_PROTOCOL, DnsName};
use mailtls_sni::{ReloadError, ResolverOptions, SniResolver};
use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;

use crate::config::Config;

/// Why the TLS setup failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The certificate directory did not load.
    #[error("certificates in {dir}: {source}")]
    Certificates {
        /// The directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: ReloadError,
    },
    /// `tls.client_ca_file` could not be used.
    #[error("config key tls.client_ca_file ({path}): {message}")]
    ClientCa {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The shared resolver and the server configurations that use it.
#[derive(Debug, Clone)]
pub struct TlsSetup {
    /// The one resolver every TLS listener asks for certificates.
    pub resolver: Arc<SniResolver>,
    /// IMAP, POP3 and (without a client CA) SMTP: no ALPN, no client auth.
    pub mail: Arc<ServerConfig>,
    /// SMTP listeners: asks for an optional client certificate when
    /// `tls.client_ca_file` is set, otherwise the same as `mail`.
    pub smtp: Arc<ServerConfig>,
    /// HTTPS: ALPN `http/1.1`.
    pub https: Arc<ServerConfig>,
    /// tls-alpn-01 validation hellos on the HTTPS port: ALPN `acme-tls/1`.
    pub acme: Arc<ServerConfig>,
}

/// Loads the certificate directory into a new resolver whose default
/// certificate is the host name's (or, if no certificate covers the host
/// name, the first one loaded). Blocking; call it off the async runtime.
pub fn load_resolver(cert_dir: &Path, hostname: &DnsName) -> Result<Arc<SniResolver>, TlsError> {
    let wrap = |source| TlsError::Certificates {
        dir: cert_dir.to_owned(),
        source,
    };
    let resolver = SniResolver::new(ResolverOptions::default().with_default_name(hostname.clone()));
    // Files that do not load are skipped and reported (the resolver logs
    // each one and keeps them in its stats); only a directory with nothing
    // usable stops the start.
    match resolver.reload_from_dir(cert_dir) {
        Ok(report) => {
            log_report(&report);
            Ok(Arc::new(resolver))
        }
        Err(ReloadError::Index(mailtls_sni::index::IndexError::DefaultNotFound(_))) => {
            tracing::warn!(
                %hostname,
                "no certificate covers the host name; the first certificate loaded is the default"
            );
            let resolver = SniResolver::new(ResolverOptions::default());
            log_report(&resolver.reload_from_dir(cert_dir).map_err(wrap)?);
            Ok(Arc::new(resolver))
        }
        Err(e) => Err(wrap(e)),
    }
}

fn log_report(report: &mailtls_sni::ReloadReport) {
    for w in &report.warnings {
        tracing::warn!("{w}");
    }
    if !report.bad_files.is_empty() {
        tracing::warn!(
            bad_files = report.bad_files.len(),
            served = report.certificates,
            "some certificate files are not served; the others are"
        );
    }
}

impl TlsSetup {
    /// Builds the server configurations around `resolver`. Reading the
    /// client CA file is blocking.
    pub fn new(config: &Config, resolver: Arc<SniResolver>) -> Result<Self, TlsError> {
        let provider = Arc::clone(resolver.provider());
        let base = || {
            ServerConfig::builder_with_provider(Arc::clone(&provider))
                .with_safe_default_protocol_versions()
        };
        let mail = Arc::new(
            base()?
                .with_no_client_auth()
                .with_cert_resolver(resolver.clone()),
        );
        let smtp = match &config.tls.client_ca_file {
            None => Arc::clone(&mail),
            Some(path) => {
                let roots = client_roots(path)?;
                let verifier = WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    Arc::clone(&provider),
                )
                .allow_unauthenticated()
                .build()
                .map_err(|e| TlsError::ClientCa {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
                Arc::new(
                    base()?
                        .with_client_cert_verifier(verifier)
                        .with_cert_resolver(resolver.clone()),
                )
            }
        };
        let mut https = base()?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        https.alpn_protocols = vec![b"http/1.1".to_vec()];
        let mut acme = base()?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        acme.alpn_protocols = vec![ACME_TLS_ALPN_PROTOCOL.to_vec()];
        Ok(TlsSetup {
            resolver,
            mail,
            smtp,
            https: Arc::new(https),
            acme: Arc::new(acme),
        })
    }
}

fn client_roots(path: &Path) -> Result<rustls::RootCertStore, TlsError> {
    let err = |message: String| TlsError::ClientCa {
        path: path.to_owned(),
        message,
    };
    let certs = mailtls_core::load::certificates_from_file(path).map_err(|e| err(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(err(format!(
            "no usable CA certificate ({ignored} could not be used)"
        )));
    }
    Ok(roots)
}

/// Adds every certificate of the PEM file `path` to `roots`; the error says
/// what was wrong with the file (the caller names the config key).
pub(crate) fn add_pem_roots(roots: &mut rustls::RootCertStore, path: &Path) -> Result<(), String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| e.to_string())?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no certificate in the file".into());
    }
    for c in certs {
        roots.add(c).map_err(|e| e.to_string())?;
    }
    Ok(())
}
