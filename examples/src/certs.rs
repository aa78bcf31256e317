//! First start: a test CA and certificates for the configured names, made
//! with `mailtls_core::maker` and only for names nothing in the certificate
//! directory covers yet, so later starts (and operators' own certificates)
//! are left alone.

use std::path::{Path, PathBuf};

use mailtls_core::maker::{MakerError, TEST_MARKER_OU};
use mailtls_core::{CaSpec, CertificateAuthority, KeyFamily, KeyType, NamePattern, ServerCertSpec};

use crate::config::Config;

/// Why the first-start certificates could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertsError {
    /// The CA files exist but could not be read.
    #[error("cannot read the test CA in {dir}: {source}")]
    ReadCa {
        /// The CA directory.
        dir: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The CA files exist but do not load as a CA.
    #[error("the test CA in {dir} is unusable: {source}")]
    BadCa {
        /// The CA directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: MakerError,
    },
    /// Making or writing a certificate failed.
    #[error("cannot make {what}: {source}")]
    Make {
        /// Which certificate.
        what: String,
        /// Why.
        #[source]
        source: MakerError,
    },
}

/// What [`ensure_certificates`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertsReport {
    /// Whether a new test CA was made.
    pub ca_created: bool,
    /// The certificate files written.
    pub written: Vec<PathBuf>,
}

/// The CA certificate file inside the CA directory.
pub fn ca_cert_path(ca_dir: &Path) -> PathBuf {
    ca_dir.join("ca.crt")
}

/// The file stem for a name: the name itself, or `_wildcard.BASE`.
pub fn stem_for(name: &NamePattern) -> String {
    match name {
        NamePattern::Exact(n) => n.to_string(),
        NamePattern::Wildcard(base) => format!("_wildcard.{base}"),
    }
}

struct Present {
    patterns: Vec<NamePattern>,
    family: KeyFamily,
    /// Made by this maker (marked), as opposed to a real one (ACME, operator).
    test: bool,
}

fn present_certificates(dir: &Path) -> Vec<Present> {
    if !dir.exists() {
        return Vec::new();
    }
    // Files that fail to load are reported by the resolver's own load; here
    // they simply cover nothing.
    match mailtls_sni::dir::scan_dir(dir) {
        Ok(s) => s
            .certificates
            .into_iter()
            .map(|(c, _)| Present {
                patterns: c.info.server_name_patterns().0,
                family: c.info.key.family(),
                test: c.info.subject.contains(TEST_MARKER_OU),
            })
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn covered(present: &[Present], wanted: &NamePattern, family: Option<KeyFamily>) -> bool {
    present.iter().any(|p| {
        family.is_none_or(|f| f == p.family)
            && p.patterns.iter().any(|have| match wanted {
                NamePattern::Exact(n) => have.matches(n),
                NamePattern::Wildcard(_) => have == wanted,
            })
    })
}

/// Makes whatever is missing: the CA (in `<data_dir>/ca`) when a certificate
/// must be issued and none exists, an ECDSA certificate per configured name
/// that no certificate covers, and an RSA one for the main host name. Does
/// nothing when `tls.make_test_certificates` is off. Blocking (key
/// generation); call it off the async runtime.
pub fn ensure_certificates(config: &Config) -> Result<CertsReport, CertsError> {
    let mut report = CertsReport::default();
    if !config.tls.make_test_certificates {
        return Ok(report);
    }
    let cert_dir = config.cert_dir();
    let present = present_certificates(&cert_dir);
    let mut wanted: Vec<(String, ServerCertSpec)> = Vec::new();
    for name in config.all_names() {
        if covered(&present, &name, None) {
            continue;
        }
        // A wildcard certificate also names its base domain (as public CAs
        // issue them): the subject CN must be a plain name anyway.
        let mut spec = ServerCertSpec::new(name.base().clone());
        if name.is_wildcard() {
            spec.extra_names = vec![name.clone()];
        }
        spec.validity_days = 825;
        wanted.push((stem_for(&name), spec));
    }
    let host = NamePattern::Exact(config.server.hostname.clone());
    // A real certificate for the host name (ACME, operator) wins: an RSA test
    // certificate beside it would be served to RSA-preferring clients.
    let real_covers_host = present.iter().any(|p| {
        !p.test
            && p.patterns
                .iter()
                .any(|h| h.matches(&config.server.hostname))
    });
    if config.tls.rsa_certificate
        && !real_covers_host
        && !covered(&present, &host, Some(KeyFamily::Rsa))
    {
        let mut spec = ServerCertSpec::new(config.server.hostname.clone());
        spec.key_type = KeyType::Rsa2048;
        spec.validity_days = 825;
        wanted.push((format!("{}-rsa", stem_for(&host)), spec));
    }
    if wanted.is_empty() {
        return Ok(report);
    }
    let ca_dir = config.ca_dir();
    let (ca, created) = load_or_make_ca(&ca_dir, config)?;
    report.ca_created = created;
    for (stem, spec) in wanted {
        let made = ca.issue(&spec).map_err(|source| CertsError::Make {
            what: format!("certificate {stem}"),
            source,
        })?;
        let (crt, _key) =
            made.write_files(&cert_dir, &stem)
                .map_err(|source| CertsError::Make {
                    what: format!("certificate {stem}"),
                    source,
                })?;
        tracing::info!(file = %crt.display(), "made test certificate");
        report.written.push(crt);
    }
    Ok(report)
}

fn load_or_make_ca(
    dir: &Path,
    config: &Config,
) -> Result<(CertificateAuthority, bool), CertsError> {
    let crt = ca_cert_path(dir);
    let key = dir.join("ca.key");
    if crt.exists() && key.exists() {
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|source| CertsError::ReadCa {
                dir: dir.to_owned(),
                source,
            })
        };
        let ca = CertificateAuthority::from_pem(&read(&crt)?, &read(&key)?).map_err(|source| {
            CertsError::BadCa {
                dir: dir.to_owned(),
                source,
            }
        })?;
        return Ok((ca, false));
    }
    let spec = CaSpec {
        common_name: format!("mailtls Test CA for {}", config.server.hostname),
        ..CaSpec::default()
    };
    let ca = CertificateAuthority::new_test_ca(&spec).map_err(|source| CertsError::Make {
        what: "the test CA".into(),
        source,
    })?;
    ca.write_files(dir, "ca")
        .map_err(|source| CertsError::Make {
            what: "the test CA".into(),
            source,
        })?;
    tracing::info!(dir = %dir.display(), marker = TEST_MARKER_OU, "made a new test CA");
    Ok((ca, true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailtls_core::maker::Purpose;

    fn config_in(dir: &Path) -> Config {
        let mut c = Config::embedded().unwrap();
        c.server.data_dir = dir.to_owned();
        c
    }

    #[test]
    fn first_start_makes_an_rsa_certificate_for_the_host() {
        let dir = tempfile::tempdir().unwrap();
        let config = config_in(dir.path());
        let report = ensure_certificates(&config).unwrap();
        let rsa = format!("{}-rsa.crt", config.server.hostname);
        assert!(
            report.written.iter().any(|p| p.ends_with(&rsa)),
            "{report:?}"
        );
    }

    #[test]
    fn a_real_certificate_for_the_host_suppresses_the_rsa_test_one() {
        let dir = tempfile::tempdir().unwrap();
        let config = config_in(dir.path());
        // An operator's (unmarked) ECDSA certificate for every configured name.
        let ca = CertificateAuthority::new_test_ca(&CaSpec::default()).unwrap();
        let mut spec = ServerCertSpec::new(config.server.hostname.clone());
        spec.extra_names = config.all_names();
        spec.purpose = Purpose::Production;
        ca.issue(&spec)
            .unwrap()
            .write_files(&config.cert_dir(), "operator")
            .unwrap();
        let report = ensure_certificates(&config).unwrap();
        assert!(report.written.is_empty(), "made {:?}", report.written);
    }
}
