//! `[tlsrpt_reports]`: the TLS reports (RFC 8460) this server sends about
//! its own outbound deliveries, read from the file and checked so that every
//! error names its key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mailtls_core::DnsName;
use serde::Deserialize;

use crate::config::ConfigError;

/// Which key to make when the DKIM key file does not exist yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DkimAlgorithm {
    /// RSA 2048 with SHA-256 (`rsa-sha256`): every verifier knows it.
    Rsa2048,
    /// Ed25519 (`ed25519-sha256`, RFC 8463): short DNS record, fewer verifiers.
    Ed25519,
}

impl DkimAlgorithm {
    /// The config word.
    pub fn as_str(self) -> &'static str {
        match self {
            DkimAlgorithm::Rsa2048 => "rsa",
            DkimAlgorithm::Ed25519 => "ed25519",
        }
    }
}

/// `[tlsrpt_reports]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsRptReportsSection {
    /// Whether daily reports are built and sent at all.
    pub enabled: bool,
    /// `organization-name` in every report.
    pub organization_name: String,
    /// `contact-info` in every report (an address or URI).
    pub contact_info: String,
    /// The submitter domain: file names, `TLS-Report-Submitter`, DKIM `d=`.
    pub submitter: DnsName,
    /// `From:` and envelope sender of report mails.
    pub sender: String,
    /// DKIM selector (`s=`); the key's record is `SELECTOR._domainkey.SUBMITTER`.
    pub dkim_selector: String,
    /// DKIM private key (PKCS#8 PEM); `None`:
    /// `<data_dir>/dkim/SELECTOR.key`. Made at first start when missing.
    pub dkim_key_file: Option<PathBuf>,
    /// Key type made at first start.
    pub dkim_algorithm: DkimAlgorithm,
    /// How long after the end of the UTC day the sending window opens.
    pub window_start: Duration,
    /// How long the window is; each domain gets a fixed point inside it.
    pub window_spread: Duration,
    /// Send only reports that contain at least one failure.
    pub only_with_failures: bool,
    /// Extra trusted roots (PEM) for HTTPS report endpoints, on top of the
    /// public web roots: for tests and private endpoints.
    pub https_ca_file: Option<PathBuf>,
}

impl TlsRptReportsSection {
    /// The DKIM key file in effect.
    pub fn dkim_key_path(&self, data_dir: &Path) -> PathBuf {
        self.dkim_key_file.clone().unwrap_or_else(|| {
            data_dir
                .join("dkim")
                .join(format!("{}.key", self.dkim_selector))
        })
    }
}

/// The file's shape of `[tlsrpt_reports]`.
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawTlsRptReports {
    enabled: bool,
    organization_name: Option<String>,
    contact_info: Option<String>,
    submitter: Option<String>,
    sender: Option<String>,
    dkim_selector: String,
    dkim_key_file: Option<PathBuf>,
    dkim_algorithm: String,
    window_start_seconds: u64,
    window_spread_seconds: u64,
    only_with_failures: bool,
    https_ca_file: Option<PathBuf>,
}

impl Default for RawTlsRptReports {
    fn default() -> Self {
        RawTlsRptReports {
            enabled: false,
            organization_name: None,
            contact_info: None,
            submitter: None,
            sender: None,
            dkim_selector: "tlsrpt".into(),
            dkim_key_file: None,
            dkim_algorithm: "rsa".into(),
            window_start_seconds: 1800,
            window_spread_seconds: 14_400,
            only_with_failures: false,
            https_ca_file: None,
        }
    }
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: format!("tlsrpt_reports.{key}"),
        message: message.into(),
    }
}

/// Whether `s` looks like `local@domain` with a valid domain.
fn check_address(key: &str, s: &str) -> Result<(), ConfigError> {
    let Some((local, domain)) = s.rsplit_once('@') else {
        return Err(invalid(
            key,
            format!("{s:?} is not an address (local@domain)"),
        ));
    };
    if local.is_empty()
        || local
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>,;\"".contains(c))
    {
        return Err(invalid(key, format!("{s:?} has an unusable local part")));
    }
    DnsName::parse(domain).map_err(|e| invalid(key, format!("{s:?}: {e}")))?;
    Ok(())
}

impl RawTlsRptReports {
    /// Checks every value; defaults that depend on the host name are derived
    /// from it (submitter: its parent domain).
    pub(crate) fn into_section(
        self,
        hostname: &DnsName,
    ) -> Result<TlsRptReportsSection, ConfigError> {
        let submitter = match &self.submitter {
            Some(s) => DnsName::parse(s).map_err(|e| invalid("submitter", e.to_string()))?,
            None => match hostname.parent() {
                Some(p) if hostname.label_count() > 2 => {
                    DnsName::parse(p).unwrap_or_else(|_| hostname.clone())
                }
                _ => hostname.clone(),
            },
        };
        let sender = self
            .sender
            .unwrap_or_else(|| format!("tlsrpt-noreply@{submitter}"));
        check_address("sender", &sender)?;
        let contact_info = self
            .contact_info
            .unwrap_or_else(|| format!("mailto:postmaster@{submitter}"));
        if contact_info.trim().is_empty() || contact_info.chars().any(char::is_control) {
            return Err(invalid(
                "contact_info",
                "must be non-empty, without control characters",
            ));
        }
        let organization_name = self
            .organization_name
            .unwrap_or_else(|| submitter.to_string());
        if organization_name.trim().is_empty() || organization_name.chars().any(char::is_control) {
            return Err(invalid(
                "organization_name",
                "must be non-empty, without control characters",
            ));
        }
        // RFC 6376 §3.1: a selector is one or more DNS labels.
        let selector_ok = !self.dkim_selector.is_empty()
            && self.dkim_selector.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            });
        if !selector_ok {
            return Err(invalid(
                "dkim_selector",
                format!(
                    "{:?} is not a DKIM selector (DNS labels)",
                    self.dkim_selector
                ),
            ));
        }
        let dkim_algorithm = match self.dkim_algorithm.trim().to_ascii_lowercase().as_str() {
            "rsa" | "rsa-2048" | "rsa2048" => DkimAlgorithm::Rsa2048,
            "ed25519" => DkimAlgorithm::Ed25519,
            other => {
                return Err(invalid(
                    "dkim_algorithm",
                    format!("unknown key type {other:?} (rsa or ed25519)"),
                ));
            }
        };
        // The window must end before the next day's window opens, or a
        // domain's report could be due after the following one.
        if self
            .window_start_seconds
            .saturating_add(self.window_spread_seconds)
            > 86_400
        {
            return Err(invalid(
                "window_spread_seconds",
                format!(
                    "window_start_seconds + window_spread_seconds = {} s is more than a day",
                    self.window_start_seconds
                        .saturating_add(self.window_spread_seconds)
                ),
            ));
        }
        if self.window_spread_seconds == 0 {
            return Err(invalid(
                "window_spread_seconds",
                "must be at least 1 second",
            ));
        }
        if let Some(p) = &self.dkim_key_file
            && p.as_os_str().is_empty()
        {
            return Err(invalid("dkim_key_file", "is empty"));
        }
        if let Some(p) = &self.https_ca_file
            && p.as_os_str().is_empty()
        {
            return Err(invalid("https_ca_file", "is empty"));
        }
        Ok(TlsRptReportsSection {
            enabled: self.enabled,
            organization_name,
            contact_info,
            submitter,
            sender,
            dkim_selector: self.dkim_selector.to_ascii_lowercase(),
            dkim_key_file: self.dkim_key_file,
            dkim_algorithm,
            window_start: Duration::from_secs(self.window_start_seconds),
            window_spread: Duration::from_secs(self.window_spread_seconds),
            only_with_failures: self.only_with_failures,
            https_ca_file: self.https_ca_file,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<TlsRptReportsSection, ConfigError> {
        #[derive(Deserialize)]
        struct Wrap {
            #[serde(default)]
            tlsrpt_reports: RawTlsRptReports,
        }
        let w: Wrap = toml::from_str(text).map_err(|source| ConfigError::Parse {
            origin: "test".into(),
            source,
        })?;
        w.tlsrpt_reports
            .into_section(&DnsName::parse("mail.example.test").unwrap())
    }

    #[test]
    fn defaults_derive_from_the_host_name() {
        let s = parse("").unwrap();
        assert!(!s.enabled);
        assert_eq!(s.submitter.as_str(), "example.test");
        assert_eq!(s.sender, "tlsrpt-noreply@example.test");
        assert_eq!(s.contact_info, "mailto:postmaster@example.test");
        assert_eq!(s.organization_name, "example.test");
        assert_eq!(s.dkim_algorithm, DkimAlgorithm::Rsa2048);
        assert_eq!(
            s.dkim_key_path(Path::new("/d")),
            Path::new("/d/dkim/tlsrpt.key")
        );
        assert_eq!(s.window_start, Duration::from_secs(1800));
        let s = parse(
            "[tlsrpt_reports]\nenabled = true\nsubmitter = \"Sender.Example\"\nsender = \"r@sender.example\"\ndkim_algorithm = \"ed25519\"\nonly_with_failures = true\n",
        )
        .unwrap();
        assert_eq!(s.submitter.as_str(), "sender.example");
        assert_eq!(s.dkim_algorithm, DkimAlgorithm::Ed25519);
        assert!(s.only_with_failures && s.enabled);
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            ("submitter = \"bad name!\"", "tlsrpt_reports.submitter"),
            ("sender = \"nobody\"", "tlsrpt_reports.sender"),
            ("sender = \"a b@example.test\"", "tlsrpt_reports.sender"),
            ("dkim_selector = \"a_b\"", "tlsrpt_reports.dkim_selector"),
            ("dkim_algorithm = \"dsa\"", "tlsrpt_reports.dkim_algorithm"),
            (
                "window_start_seconds = 80000",
                "tlsrpt_reports.window_spread_seconds",
            ),
            (
                "window_spread_seconds = 0",
                "tlsrpt_reports.window_spread_seconds",
            ),
            ("contact_info = \"\"", "tlsrpt_reports.contact_info"),
            (
                "organization_name = \" \"",
                "tlsrpt_reports.organization_name",
            ),
            ("dkim_key_file = \"\"", "tlsrpt_reports.dkim_key_file"),
        ];
        for (line, key) in cases {
            let e = parse(&format!("[tlsrpt_reports]\n{line}\n"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(key), "{line}: {e}");
        }
        let e = parse("[tlsrpt_reports]\nwindow = 1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("window"), "{e}");
    }
}
