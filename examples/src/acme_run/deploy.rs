//! Putting an issued certificate into service: one combined PEM file (chain
//! then key, mode 0600) in the served certificate directory, written to a
//! hidden temporary name and renamed, so a directory reload (the watcher,
//! SIGHUP, ours) sees the old file or the new one and never half a pair;
//! then the first-start test certificates it makes redundant are removed and
//! the resolver reloads the directory in one atomic swap. Handshakes in
//! flight keep the certificate they started with.

use std::path::{Path, PathBuf};

use mailtls_core::maker::TEST_MARKER_OU;
use mailtls_core::{CertificateWithKey, NamePattern};
use mailtls_sni::{PreparedCertificate, SniResolver};

/// Why a certificate could not be put into service. The served set is
/// unchanged.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeployError {
    /// The chain and key do not load as a matching pair.
    #[error("issued certificate does not load: {0}")]
    Load(#[from] mailtls_core::LoadError),
    /// rustls cannot use the key.
    #[error("issued certificate: {0}")]
    Unusable(String),
    /// Writing or removing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The certificate directory did not reload.
    #[error("reloading {dir}: {source}")]
    Reload {
        /// The directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: mailtls_sni::ReloadError,
    },
}

/// What [`deploy`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Deployed {
    /// The combined file was (re)written.
    pub(crate) written: bool,
    /// Test certificate files removed because the new one covers them.
    pub(crate) removed: Vec<PathBuf>,
    /// The resolver generation after a reload, if one was needed.
    pub(crate) generation: Option<u64>,
}

/// The served file for certificate `id`: `acme-ID.pem` (`*` spelled
/// `_wildcard`, anything else unsafe as `_`).
pub(crate) fn served_path(cert_dir: &Path, id: &str) -> PathBuf {
    let safe: String = id
        .replace('*', "_wildcard")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    cert_dir.join(format!("acme-{safe}.pem"))
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DeployError + '_ {
    move |source| DeployError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Whether `have` (the ACME certificate's names) covers every name of a
/// test certificate: exact names by match, wildcards only by the same
/// wildcard (a wildcard test certificate also serves names nobody ordered).
/// The base name a wildcard test certificate carries beside `*.BASE` is
/// not asked for: the maker adds it only because a subject needs a plain
/// name, and leaving the certificate in place would let it compete with
/// the ACME one for every name under the wildcard.
fn covers(have: &[NamePattern], test_names: &[NamePattern]) -> bool {
    !test_names.is_empty()
        && test_names.iter().all(|t| match t {
            NamePattern::Exact(n) => {
                have.iter().any(|h| h.matches(n))
                    || test_names.contains(&NamePattern::Wildcard(n.clone()))
            }
            NamePattern::Wildcard(_) => have.contains(t),
        })
}

/// Deploys `chain_pem` + `key_pem` as certificate `id` into `cert_dir` and
/// makes `resolver` serve it. Blocking (file I/O, directory load).
pub(crate) fn deploy(
    cert_dir: &Path,
    id: &str,
    chain_pem: &str,
    key_pem: &str,
    resolver: &SniResolver,
) -> Result<Deployed, DeployError> {
    let path = served_path(cert_dir, id);
    let source = path.display().to_string();
    // Check the pair before it goes anywhere near the served directory.
    let chain = mailtls_core::load::certificates_from_bytes(chain_pem.as_bytes(), &source)?;
    let key = mailtls_core::load::private_key_from_bytes(key_pem.as_bytes(), &source)?;
    let pair = CertificateWithKey::new(chain, key, &source)?;
    let fingerprint = pair.info.fingerprint_hex();
    let ours = pair.info.server_name_patterns().0;
    PreparedCertificate::new(pair, &source, resolver.provider())
        .map_err(|e| DeployError::Unusable(e.to_string()))?;

    let mut combined = chain_pem.trim_end().to_owned();
    combined.push('\n');
    combined.push_str(key_pem.trim_end());
    combined.push('\n');
    let mut done = Deployed::default();
    let current = std::fs::read(&path).ok();
    if current.as_deref() != Some(combined.as_bytes()) {
        mailtls_core::secret_file::write_atomic(&path, combined.as_bytes(), 0o600)
            .map_err(io_err(&path))?;
        done.written = true;
    }

    // Test certificates for the same names would otherwise compete with
    // this one (the resolver prefers the later notAfter, and a test
    // certificate lives 825 days).
    if let Ok(scanned) = mailtls_sni::dir::scan_dir(cert_dir) {
        for (cert, file) in scanned.certificates {
            if !cert.info.subject.contains(TEST_MARKER_OU)
                || !covers(&ours, &cert.info.server_name_patterns().0)
            {
                continue;
            }
            let file = PathBuf::from(file);
            // Certificate first: a key left alone is only a warning to a
            // concurrent reload, a certificate without its key an error.
            std::fs::remove_file(&file).map_err(io_err(&file))?;
            if let Some(stem) = file.extension().and(file.file_stem()) {
                let stem = stem.to_string_lossy();
                for k in [
                    format!("{stem}.key"),
                    format!("{stem}.key.pem"),
                    format!("{stem}-key.pem"),
                ] {
                    let kp = file.with_file_name(k);
                    if kp.exists() {
                        std::fs::remove_file(&kp).map_err(io_err(&kp))?;
                    }
                }
            }
            tracing::info!(file = %file.display(), "removed a test certificate the ACME certificate replaces");
            done.removed.push(file);
        }
    }

    let served = resolver
        .certificates()
        .iter()
        .any(|c| c.fingerprint == fingerprint);
    if done.written || !done.removed.is_empty() || !served {
        let report = resolver
            .reload_from_dir(cert_dir)
            .map_err(|source| DeployError::Reload {
                dir: cert_dir.to_owned(),
                source,
            })?;
        done.generation = Some(report.generation);
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use mailtls_core::{CaSpec, CertificateAuthority, DnsName, ServerCertSpec};
    use mailtls_sni::ResolverOptions;
    use std::os::unix::fs::PermissionsExt;

    fn p(s: &str) -> NamePattern {
        NamePattern::parse(s).unwrap()
    }

    #[test]
    fn coverage_rules() {
        let have = [p("mail.example.test"), p("imap.example.test")];
        assert!(covers(&have, &[p("mail.example.test")]));
        assert!(!covers(
            &have,
            &[p("mail.example.test"), p("pop.example.test")]
        ));
        assert!(!covers(&have, &[p("*.example.test")]));
        assert!(covers(&[p("*.example.test")], &[p("pop.example.test")]));
        // The maker's wildcard certificate: base name plus wildcard.
        let made = [p("example.test"), p("*.example.test")];
        assert!(covers(&[p("*.example.test")], &made));
        assert!(!covers(&have, &made));
        assert!(!covers(&[p("*.example.test")], &[p("example.test")]));
        assert!(!covers(&have, &[]));
        assert_eq!(
            served_path(Path::new("/c"), "*.Example.test"),
            Path::new("/c/acme-_wildcard.example.test.pem")
        );
    }

    /// A "real" certificate (not test-marked) replaces the test ones it
    /// covers and is served at once; the one it does not cover stays.
    #[test]
    fn replaces_covered_test_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let certs = dir.path().join("certs");
        let ca = CertificateAuthority::new_test_ca(&CaSpec::default()).unwrap();
        for name in ["mail.example.test", "other.example.test"] {
            let made = ca
                .issue(&ServerCertSpec::new(DnsName::parse(name).unwrap()))
                .unwrap();
            made.write_files(&certs, name).unwrap();
        }
        let resolver = SniResolver::new(ResolverOptions::default());
        resolver.reload_from_dir(&certs).unwrap();
        let before = resolver.generation();

        // Not test-marked: a plain rcgen certificate stands in for the CA's.
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["mail.example.test".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let done = deploy(
            &certs,
            "mail.example.test",
            &cert.pem(),
            &key.serialize_pem(),
            &resolver,
        )
        .unwrap();
        assert!(done.written);
        assert_eq!(done.removed, [certs.join("mail.example.test.crt")]);
        assert!(!certs.join("mail.example.test.key").exists());
        assert!(certs.join("other.example.test.crt").exists());
        assert!(done.generation.unwrap() > before);
        let served = served_path(&certs, "mail.example.test");
        assert_eq!(
            std::fs::metadata(&served).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let summaries = resolver.certificates();
        let mail: Vec<_> = summaries
            .iter()
            .filter(|c| c.names.contains(&"mail.example.test".to_owned()))
            .collect();
        assert_eq!(mail.len(), 1);
        assert_eq!(mail[0].source, served.display().to_string());

        // Again with the same files: nothing to do, no reload.
        let again = deploy(
            &certs,
            "mail.example.test",
            &cert.pem(),
            &key.serialize_pem(),
            &resolver,
        )
        .unwrap();
        assert_eq!(again, Deployed::default());

        // A key that does not match is refused before anything is written.
        let other = rcgen::KeyPair::generate().unwrap();
        assert!(
            deploy(
                &certs,
                "mail.example.test",
                &cert.pem(),
                &other.serialize_pem(),
                &resolver
            )
            .is_err()
        );
        assert_eq!(
            std::fs::read_to_string(&served).unwrap(),
            format!(
                "{}\n{}\n",
                cert.pem().trim_end(),
                key.serialize_pem().trim_end()
            )
        );
    }
}
