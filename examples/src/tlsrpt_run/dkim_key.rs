//! The DKIM key report mails are signed with (RFC 8460 §5.3 asks for a
//! signature): made at first start, kept as PKCS#8 PEM with mode 0600, and
//! the DNS TXT record that publishes its public half.

use std::path::{Path, PathBuf};

use base64::Engine;
use mailtls_policy::tlsrpt::delivery::DkimConfig;
use rcgen::{KeyPair, PublicKeyData};
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;

use super::TlsRptRunError;
use super::config::{DkimAlgorithm, TlsRptReportsSection};

/// A loaded DKIM key with where it is published.
pub struct DkimKey {
    path: PathBuf,
    der: PrivateKeyDer<'static>,
    /// `k=` tag value.
    kind: &'static str,
    /// `p=` tag value (base64).
    public: String,
    /// The DKIM domain (`d=`).
    domain: String,
    selector: String,
}

impl std::fmt::Debug for DkimKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DkimKey")
            .field("path", &self.path)
            .field("kind", &self.kind)
            .field("domain", &self.domain)
            .field("selector", &self.selector)
            .finish_non_exhaustive()
    }
}

fn key_error(path: &Path, message: impl Into<String>) -> TlsRptRunError {
    TlsRptRunError::DkimKey {
        path: path.to_owned(),
        message: message.into(),
    }
}

impl DkimKey {
    /// Reads the key file of `section` (under `data_dir` by default), or
    /// makes a new key of the configured type there when it does not exist.
    pub fn load_or_generate(
        section: &TlsRptReportsSection,
        data_dir: &Path,
    ) -> Result<Self, TlsRptRunError> {
        let path = section.dkim_key_path(data_dir);
        let pem = match std::fs::read(&path) {
            Ok(pem) => pem,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let pair = match section.dkim_algorithm {
                    DkimAlgorithm::Rsa2048 => KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256),
                    DkimAlgorithm::Ed25519 => KeyPair::generate_for(&rcgen::PKCS_ED25519),
                }
                .map_err(|e| key_error(&path, format!("cannot make a key: {e}")))?;
                let pem = pair.serialize_pem().into_bytes();
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    mailtls_core::secret_file::ensure_private_dir(parent)
                        .map_err(|e| key_error(parent, e.to_string()))?;
                }
                mailtls_core::secret_file::write_atomic(&path, &pem, 0o600)
                    .map_err(|e| key_error(&path, e.to_string()))?;
                tracing::info!(path = %path.display(), algorithm = section.dkim_algorithm.as_str(), "made a DKIM key for TLS reports");
                pem
            }
            Err(e) => return Err(key_error(&path, e.to_string())),
        };
        Self::from_pem(
            &path,
            &pem,
            section.submitter.as_str(),
            &section.dkim_selector,
        )
    }

    fn from_pem(
        path: &Path,
        pem: &[u8],
        domain: &str,
        selector: &str,
    ) -> Result<Self, TlsRptRunError> {
        let der = PrivateKeyDer::from_pem_slice(pem)
            .map_err(|e| key_error(path, format!("not a PEM private key: {e}")))?;
        let pair = KeyPair::try_from(&der)
            .map_err(|e| key_error(path, format!("unusable private key: {e}")))?;
        let b64 = base64::engine::general_purpose::STANDARD;
        let (kind, public) = if pair.is_compatible(&rcgen::PKCS_ED25519) {
            // RFC 8463 §4.2: the bare 32-byte key.
            ("ed25519", b64.encode(pair.public_key_raw()))
        } else if pair.is_compatible(&rcgen::PKCS_RSA_SHA256) {
            // RFC 6376 §3.6.1: SubjectPublicKeyInfo, as openssl prints it.
            ("rsa", b64.encode(pair.subject_public_key_info()))
        } else {
            return Err(key_error(path, "DKIM keys must be RSA or Ed25519"));
        };
        // Fails early (at start) instead of at the first report.
        DkimConfig::new(domain, selector, &der).map_err(|e| key_error(path, e.to_string()))?;
        Ok(DkimKey {
            path: path.to_owned(),
            der,
            kind,
            public,
            domain: domain.to_owned(),
            selector: selector.to_owned(),
        })
    }

    /// The key file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A signer for report mails.
    pub fn signer(&self) -> Result<DkimConfig, TlsRptRunError> {
        DkimConfig::new(&self.domain, &self.selector, &self.der)
            .map_err(|e| key_error(&self.path, e.to_string()))
    }

    /// The owner of the TXT record: `SELECTOR._domainkey.DOMAIN`.
    pub fn record_name(&self) -> String {
        format!("{}._domainkey.{}", self.selector, self.domain)
    }

    /// The TXT record text: `v=DKIM1; k=rsa; p=...`.
    pub fn record_text(&self) -> String {
        format!("v=DKIM1; k={}; p={}", self.kind, self.public)
    }

    /// A zone-file line; the text is split into strings of at most 255
    /// bytes (RFC 1035 §3.3.14), which DKIM verifiers join (RFC 6376 §3.6.2.2).
    pub fn zone_line(&self, ttl: u32) -> String {
        let text = self.record_text();
        let strings: Vec<String> = text
            .as_bytes()
            .chunks(255)
            .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
            .collect();
        format!("{}. {ttl} IN TXT {}", self.record_name(), strings.join(" "))
    }
}

/// The DKIM record an operator publishes for the report mails, as zone-file
/// lines with a comment (for `mailtls-server dns-records`); makes the key
/// when it does not exist yet, as the server would at start. `None` when
/// `[tlsrpt_reports]` is not enabled.
pub fn dkim_dns_records(
    config: &crate::config::Config,
    ttl: u32,
) -> Result<Option<String>, TlsRptRunError> {
    let section = &config.tlsrpt_reports;
    if !section.enabled {
        return Ok(None);
    }
    let key = DkimKey::load_or_generate(section, &config.server.data_dir)?;
    Ok(Some(format!(
        "; DKIM key for TLS report mails (RFC 8460 §5.3) from {}, key file {}\n{}\n",
        section.sender,
        key.path().display(),
        key.zone_line(ttl)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn section(alg: &str) -> TlsRptReportsSection {
        let c = crate::config::Config::from_toml_str(&format!(
            "[tlsrpt_reports]\nenabled = true\ndkim_algorithm = \"{alg}\"\n"
        ))
        .unwrap();
        c.tlsrpt_reports
    }

    #[test]
    fn made_once_private_and_published() {
        let dir = tempfile::tempdir().unwrap();
        for alg in ["ed25519", "rsa"] {
            let s = section(alg);
            let data = dir.path().join(alg);
            let key = DkimKey::load_or_generate(&s, &data).unwrap();
            let path = data.join("dkim/tlsrpt.key");
            assert_eq!(key.path(), path);
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            assert_eq!(key.record_name(), "tlsrpt._domainkey.example.test");
            assert!(
                key.record_text()
                    .starts_with(&format!("v=DKIM1; k={alg}; p=")),
                "{}",
                key.record_text()
            );
            // Loading again gives the same key, not a new one.
            let again = DkimKey::load_or_generate(&s, &data).unwrap();
            assert_eq!(again.record_text(), key.record_text());
            let line = key.zone_line(300);
            assert!(line.starts_with("tlsrpt._domainkey.example.test. 300 IN TXT \""));
            assert!(line.split('"').all(|s| s.len() <= 255), "{line}");
            let signed = key
                .signer()
                .unwrap()
                .sign(b"From: a@example.test\r\nSubject: x\r\n\r\nbody\r\n")
                .unwrap();
            assert!(signed.starts_with(b"DKIM-Signature:"));
        }
    }

    #[test]
    fn a_bad_key_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = section("rsa");
        let bad = dir.path().join("bad.key");
        std::fs::write(&bad, "not a key").unwrap();
        s.dkim_key_file = Some(bad.clone());
        let e = DkimKey::load_or_generate(&s, dir.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad.key"), "{e}");
    }
}
