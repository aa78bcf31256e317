//! The mail the administrator gets when a run fails: what failed, for which
//! names, what is served meanwhile and when the next attempt is. Built with
//! mail-builder and handed to the server's own message path
//! (`accept::submit_internal`), so it is spooled or queued and retried like
//! any other mail.

use std::time::SystemTime;

use mail_builder::MessageBuilder;
use mail_builder::headers::raw::Raw;

use super::run_log::{RunRecord, rfc3339};

/// The message (CRLF line ends) telling `admin` about the failed `record`.
pub(crate) fn failure_message(
    hostname: &str,
    admin: &str,
    directory: &str,
    record: &RunRecord,
    log_path: &str,
) -> Result<Vec<u8>, String> {
    let now = SystemTime::now();
    let unix = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let subject = format!(
        "ACME certificate renewal failed on {hostname} ({} in a row)",
        record.failures
    );
    let served = match &record.certificate_expires {
        Some(t) => format!("The certificate in service stays; it expires {t}."),
        None => "No ACME certificate is in service yet; clients get the previous \
                 (test) certificates."
            .to_owned(),
    };
    let body = format!(
        "The ACME run that started {started} ({trigger:?}) failed.\n\n\
         Names:     {names}\n\
         CA:        {directory}\n\
         Error:     {error}\n\n\
         {served}\n\
         Next attempt: {next}\n\n\
         Every run is logged, one JSON object per line, in\n{log_path}\n",
        started = record.started,
        trigger = record.trigger,
        names = record.names.join(", "),
        error = record.error.as_deref().unwrap_or("(none recorded)"),
        next = record.next_run,
    );
    let message_id = format!("acme-{unix}-{}@{hostname}", std::process::id());
    MessageBuilder::new()
        .from(("mailtls ACME".to_owned(), format!("postmaster@{hostname}")))
        .to(admin.to_owned())
        .subject(subject)
        .date(i64::try_from(unix).unwrap_or(0))
        .message_id(message_id)
        // RFC 3834: an automatic message; nobody should auto-reply to it.
        .header("Auto-Submitted", Raw::new("auto-generated"))
        .header("X-Mailtls-Acme-Run", Raw::new(rfc3339(now)))
        .text_body(body)
        .write_to_vec()
        .map_err(|e| format!("building the administrator mail: {e}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::run_log::{RunOutcome, RunTrigger};
    use super::*;

    #[test]
    fn says_what_failed_and_when_next() {
        let rec = RunRecord {
            started: "2026-11-24T10:00:00Z".into(),
            finished: "2026-11-24T10:00:01Z".into(),
            trigger: RunTrigger::Schedule,
            names: vec!["mail.example.test".into(), "imap.example.test".into()],
            outcome: RunOutcome::Failed,
            error: Some("order: urn:ietf:params:acme:error:connection".into()),
            certificate_expires: Some("2026-12-01T00:00:00Z".into()),
            renewal_due: None,
            next_run: "2026-11-24T10:01:00Z".into(),
            failures: 2,
            admin_mailed: true,
        };
        let msg = failure_message(
            "mail.example.test",
            "admin@example.test",
            "https://ca.example/dir",
            &rec,
            "/data/acme/runs.log",
        )
        .unwrap();
        let text = String::from_utf8(msg).unwrap();
        assert!(text.contains("To: <admin@example.test>\r\n"), "{text}");
        assert!(
            text.contains(
                "Subject: ACME certificate renewal failed on mail.example.test (2 in a row)"
            ),
            "{text}"
        );
        assert!(text.contains("Auto-Submitted: auto-generated\r\n"));
        assert!(text.contains("error:connection"));
        assert!(text.contains("mail.example.test, imap.example.test"));
        assert!(text.contains("2026-12-01T00:00:00Z"));
        assert!(text.contains("2026-11-24T10:01:00Z"));
    }
}
