//! Reports other senders send to this server's own `rua` mailboxes: parsed
//! with mailtls-policy's lenient parser and kept as one small summary file
//! per report in `<data_dir>/tlsrpt-received/`, so a report mailed twice is
//! counted once and a restart loses nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mailtls_policy::tlsrpt::{ReceivedReport, parse_received};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::TlsRptRunError;

/// One received report, reduced to what the status page shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct StoredReport {
    /// Unix seconds when it arrived.
    received_at: i64,
    report_id: Option<String>,
    organization_name: Option<String>,
    /// The UTC day the report's range starts on (`YYYY-MM-DD`).
    day: String,
    policies: Vec<StoredPolicy>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct StoredPolicy {
    policy_type: String,
    policy_domain: Option<String>,
    successful: u64,
    failed: u64,
    /// Result type -> failed sessions.
    failures: BTreeMap<String, u64>,
}

/// Received counts for one day and policy domain, over every report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReceivedDay {
    /// The UTC day (`YYYY-MM-DD`).
    pub day: String,
    /// The policy domain; `None` when a sender left it out
    /// (`no-policy-found` from Postfix).
    pub policy_domain: Option<String>,
    /// Successful sessions the senders reported.
    pub successful: u64,
    /// Failed sessions the senders reported.
    pub failed: u64,
    /// Failed sessions per RFC 8460 result type, by name.
    pub failures: BTreeMap<String, u64>,
    /// Reporting organisations, as they name themselves.
    pub reporters: Vec<String>,
    /// How many reports contributed.
    pub reports: usize,
}

/// The directory of received-report summaries.
#[derive(Debug, Clone)]
pub(crate) struct ReceivedStore {
    dir: PathBuf,
}

impl ReceivedStore {
    /// Opens (creates, owner-only) the directory.
    pub(crate) fn open(dir: PathBuf) -> Result<Self, TlsRptRunError> {
        mailtls_core::secret_file::ensure_private_dir(&dir).map_err(|source| {
            TlsRptRunError::Io {
                path: dir.clone(),
                source,
            }
        })?;
        Ok(ReceivedStore { dir })
    }

    /// Parses `message` (a mail, or bare JSON/gzip/zip) and stores a summary
    /// of every report in it; returns how many were new. Blocking.
    pub(crate) fn store(
        &self,
        message: &[u8],
        now: OffsetDateTime,
    ) -> Result<usize, TlsRptRunError> {
        let reports = parse_received(message)?;
        let mut new = 0;
        for r in &reports {
            let path = self.dir.join(file_name(r, message));
            if path.exists() {
                continue;
            }
            let stored = summarise(r, now);
            let json = serde_json::to_vec(&stored).map_err(|e| TlsRptRunError::Io {
                path: path.clone(),
                source: std::io::Error::other(e),
            })?;
            mailtls_core::secret_file::write_atomic(&path, &json, 0o600)
                .map_err(|source| TlsRptRunError::Io { path, source })?;
            new += 1;
        }
        Ok(new)
    }

    /// Counts per day and policy domain over every stored report whose day
    /// is not before `since` (`YYYY-MM-DD`), newest day first. Blocking.
    pub(crate) fn summary(&self, since: &str) -> Result<Vec<ReceivedDay>, TlsRptRunError> {
        let io = |path: &Path, source| TlsRptRunError::Io {
            path: path.to_owned(),
            source,
        };
        let mut days: BTreeMap<(String, Option<String>), ReceivedDay> = BTreeMap::new();
        for entry in std::fs::read_dir(&self.dir).map_err(|e| io(&self.dir, e))? {
            let path = entry.map_err(|e| io(&self.dir, e))?.path();
            if path.extension().is_none_or(|x| x != "json") {
                continue;
            }
            let bytes = std::fs::read(&path).map_err(|e| io(&path, e))?;
            let Ok(stored) = serde_json::from_slice::<StoredReport>(&bytes) else {
                tracing::warn!(path = %path.display(), "unreadable received-report summary; skipped");
                continue;
            };
            if stored.day.as_str() < since {
                continue;
            }
            for p in &stored.policies {
                let d = days
                    .entry((stored.day.clone(), p.policy_domain.clone()))
                    .or_insert_with(|| ReceivedDay {
                        day: stored.day.clone(),
                        policy_domain: p.policy_domain.clone(),
                        successful: 0,
                        failed: 0,
                        failures: BTreeMap::new(),
                        reporters: Vec::new(),
                        reports: 0,
                    });
                d.successful = d.successful.saturating_add(p.successful);
                d.failed = d.failed.saturating_add(p.failed);
                for (rt, n) in &p.failures {
                    let c = d.failures.entry(rt.clone()).or_default();
                    *c = c.saturating_add(*n);
                }
                let org = stored
                    .organization_name
                    .clone()
                    .unwrap_or_else(|| "(unnamed)".into());
                if !d.reporters.contains(&org) {
                    d.reporters.push(org);
                }
                d.reports += 1;
            }
        }
        let mut out: Vec<ReceivedDay> = days.into_values().collect();
        out.sort_by(|a, b| {
            b.day
                .cmp(&a.day)
                .then(a.policy_domain.cmp(&b.policy_domain))
        });
        Ok(out)
    }
}

fn summarise(r: &ReceivedReport, now: OffsetDateTime) -> StoredReport {
    StoredReport {
        received_at: now.unix_timestamp(),
        report_id: r.report_id.clone(),
        organization_name: r.organization_name.clone(),
        day: r.start.date().to_string(),
        policies: r
            .policies
            .iter()
            .map(|p| {
                let mut failures: BTreeMap<String, u64> = BTreeMap::new();
                for f in &p.failures {
                    let c = failures.entry(f.result_type.clone()).or_default();
                    *c = c.saturating_add(f.count);
                }
                StoredPolicy {
                    policy_type: p.policy_type.as_str().to_owned(),
                    policy_domain: p.policy_domain.clone(),
                    successful: p.successful,
                    failed: p.failed,
                    failures,
                }
            })
            .collect(),
    }
}

/// The same report (same sender, id and range) always gets the same file, so
/// a duplicate delivery is not counted twice. Reports without an id are
/// told apart by the message that carried them.
fn file_name(r: &ReceivedReport, message: &[u8]) -> String {
    let mut input = Vec::new();
    match &r.report_id {
        Some(id) => {
            input.extend_from_slice(id.as_bytes());
            input.push(b'\n');
            input.extend_from_slice(r.organization_name.as_deref().unwrap_or("").as_bytes());
        }
        None => input.extend_from_slice(message),
    }
    input.push(b'\n');
    input.extend_from_slice(&r.start.unix_timestamp().to_be_bytes());
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &input);
    let hex: String = digest.as_ref()[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{}-{hex}.json", r.start.date())
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = r#"{"organization-name":"Company-X","date-range":{"start-datetime":"2016-04-01T00:00:00Z","end-datetime":"2016-04-01T23:59:59Z"},"contact-info":"sts-reporting@company-x.example","report-id":"5065427c-23d3-47ca-b6e0-946ea0e8c4be","policies":[{"policy":{"policy-type":"sts","policy-string":["version: STSv1","mode: testing","mx: *.mail.company-y.example","max_age: 86400"],"policy-domain":"company-y.example","mx-host":["*.mail.company-y.example"]},"summary":{"total-successful-session-count":5326,"total-failure-session-count":303},"failure-details":[{"result-type":"certificate-expired","sending-mta-ip":"2001:db8:abcd:0012::1","receiving-mx-hostname":"mx1.mail.company-y.example","failed-session-count":100},{"result-type":"starttls-not-supported","sending-mta-ip":"2001:db8:abcd:0013::1","receiving-mx-hostname":"mx2.mail.company-y.example","receiving-ip":"203.0.113.56","failed-session-count":200},{"result-type":"validation-failure","sending-mta-ip":"198.51.100.62","receiving-ip":"203.0.113.58","receiving-mx-hostname":"mx-backup.mail.company-y.example","failed-session-count":3,"failure-reason-code":"X509_V_ERR_PROXY_PATH_LENGTH_EXCEEDED"}]}]}"#;

    /// RFC 8460 Appendix B's example report, stored twice, counted once.
    #[test]
    fn rfc_8460_appendix_b_report_is_summarised_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = ReceivedStore::open(dir.path().join("r")).unwrap();
        let now = OffsetDateTime::now_utc();
        assert_eq!(store.store(REPORT.as_bytes(), now).unwrap(), 1);
        assert_eq!(store.store(REPORT.as_bytes(), now).unwrap(), 0);
        let s = store.summary("2016-01-01").unwrap();
        assert_eq!(s.len(), 1);
        let d = &s[0];
        assert_eq!(d.day, "2016-04-01");
        assert_eq!(d.policy_domain.as_deref(), Some("company-y.example"));
        assert_eq!((d.successful, d.failed), (5326, 303));
        assert_eq!(d.failures["starttls-not-supported"], 200);
        assert_eq!(d.failures["certificate-expired"], 100);
        assert_eq!(d.reporters, ["Company-X"]);
        assert!(store.summary("2016-04-02").unwrap().is_empty());
        assert!(
            store
                .store(b"Subject: hello\r\n\r\nnot a report\r\n", now)
                .is_err()
        );
    }
}
