//! The run log: one JSON object per line in `<data_dir>/acme/runs.log`,
//! appended after every run, so an operator (or `jq`) sees what each run
//! did and why it failed without the server's own log.

use std::io::Write;
use std::path::Path;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunTrigger {
    /// The server started.
    Start,
    /// The schedule came due.
    Schedule,
    /// [`AcmeRun::renew_now`](super::AcmeRun::renew_now): renew whatever
    /// the schedule says.
    Manual,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunOutcome {
    /// The first certificate for these names was obtained and deployed.
    Issued,
    /// A new certificate replaced the current one.
    Renewed,
    /// The current certificate is good until its renewal time; it was
    /// checked to be in service.
    NotDue,
    /// The run failed; see the error. The served certificate is unchanged.
    Failed,
}

/// One line of the run log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// When the run began, RFC 3339.
    pub started: String,
    /// When it ended, RFC 3339.
    pub finished: String,
    /// What started it.
    pub trigger: RunTrigger,
    /// The names ordered.
    pub names: Vec<String>,
    /// How it ended.
    pub outcome: RunOutcome,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// notAfter of the certificate served after the run, RFC 3339.
    pub certificate_expires: Option<String>,
    /// When the certificate is due for renewal, RFC 3339.
    pub renewal_due: Option<String>,
    /// When the next run is planned, RFC 3339.
    pub next_run: String,
    /// Consecutive failed runs, this one included.
    pub failures: u32,
    /// Whether the administrator was mailed about this run.
    pub admin_mailed: bool,
}

/// RFC 3339 for a time in the log and the status.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    OffsetDateTime::from(t)
        .format(&Rfc3339)
        .unwrap_or_else(|_| "?".into())
}

/// Appends `record` as one line (the file is created 0600: errors may
/// quote the CA's answers, which are nobody else's business).
pub(crate) fn append(path: &Path, record: &RunRecord) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(record).map_err(std::io::Error::other)?;
    line.push(b'\n');
    let mut opts = std::fs::OpenOptions::new();
    opts.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path)?;
    // One write of the whole line: concurrent readers never see half of it.
    f.write_all(&line)?;
    f.sync_data()
}

/// Reads the log back (lines that do not parse are skipped: a log must
/// never stop the server).
pub fn read(path: &Path) -> std::io::Result<Vec<RunRecord>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn appends_lines_that_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runs.log");
        let now = SystemTime::now();
        let rec = RunRecord {
            started: rfc3339(now),
            finished: rfc3339(now),
            trigger: RunTrigger::Start,
            names: vec!["mail.example.test".into()],
            outcome: RunOutcome::Failed,
            error: Some("directory: connection refused".into()),
            certificate_expires: None,
            renewal_due: None,
            next_run: rfc3339(now),
            failures: 1,
            admin_mailed: true,
        };
        append(&path, &rec).unwrap();
        let second = RunRecord {
            outcome: RunOutcome::Issued,
            error: None,
            failures: 0,
            ..rec.clone()
        };
        append(&path, &second).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"not json\n")
            .unwrap();
        assert_eq!(read(&path).unwrap(), vec![rec, second]);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.lines()
                .next()
                .unwrap()
                .contains("\"outcome\":\"failed\"")
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(read(&dir.path().join("missing")).unwrap().is_empty());
    }
}
