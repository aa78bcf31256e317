//! Delivery status notifications (RFC 3464): a `multipart/report;
//! report-type=delivery-status` message (RFC 6522, formerly RFC 3462) with
//! a human-readable part, the `message/delivery-status` fields and the
//! returned message, built with mail-builder.
//!
//! Two kinds: a failure report (`Action: failed`, 5.x.x or an expired
//! 4.4.7) returns the whole message as `message/rfc822` while it is no
//! larger than the configured limit, else only its header section as
//! `text/rfc822-headers`; a delay warning (`Action: delayed`, 4.x.x, with
//! `Will-Retry-Until`) returns only the header section, since the message
//! itself is still on its way. A DSN for a REQUIRETLS message is itself
//! sent with REQUIRETLS (RFC 8689 §5), so the returned content travels
//! under the same condition as the original.

use mail_builder::MessageBuilder;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::raw::Raw;
use mail_builder::mime::MimePart;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;

use super::queue::Failure;

/// What a DSN reports about its recipients (RFC 3464 §2.3.3 `Action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DsnAction {
    /// Delivery failed; the sender gets the message back.
    Failed,
    /// Delivery is late and still being tried (a warning, no action needed).
    Delayed {
        /// When the server gives up (Unix seconds; `Will-Retry-Until`).
        will_retry_until: u64,
    },
}

/// What a DSN reports.
#[derive(Debug, Clone)]
pub struct DsnReport<'a> {
    /// Our host name (`Reporting-MTA`, and the `MAILER-DAEMON` address).
    pub reporting_mta: &'a str,
    /// The queue id of the reported message.
    pub queue_id: &'a str,
    /// When the reported message was queued (Unix seconds).
    pub arrival: u64,
    /// The reported message's envelope sender, who gets the DSN.
    pub sender: &'a str,
    /// Failed or delayed.
    pub action: DsnAction,
    /// The recipients reported on and why (for a delay: the status of the
    /// last attempt, 4.x.x).
    pub recipients: Vec<(&'a str, &'a Failure)>,
    /// The reported message as queued.
    pub original: &'a [u8],
    /// A failure report returns the whole message up to this many bytes,
    /// only its header section beyond.
    pub return_limit: usize,
}

/// Why a DSN could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the delivery status notification: {0}")]
pub struct DsnError(#[from] std::io::Error);

fn rfc2822(unix: u64) -> String {
    i64::try_from(unix)
        .ok()
        .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok())
        .and_then(|t| t.format(&Rfc2822).ok())
        .unwrap_or_else(|| "Thu, 01 Jan 1970 00:00:00 +0000".into())
}

/// The header section of a message (up to and including the blank line,
/// or the whole message when it has no body).
pub fn header_section(message: &[u8]) -> &[u8] {
    for (i, w) in message.windows(4).enumerate() {
        if w == b"\r\n\r\n" {
            return &message[..i + 2];
        }
    }
    for (i, w) in message.windows(2).enumerate() {
        if w == b"\n\n" {
            return &message[..i + 1];
        }
    }
    message
}

/// Folds text into a DSN field value: no line ends, printable ASCII.
fn field_text(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

/// The first enhanced status code of class 4 in `text` (`4.4.1`), for a
/// delay report made from a deferral's reason.
pub fn transient_status_in(text: &str) -> Option<String> {
    text.split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .find(|w| {
            let parts: Vec<&str> = w.split('.').collect();
            parts.len() == 3
                && parts[0] == "4"
                && parts[1..]
                    .iter()
                    .all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(str::to_owned)
}

/// The `message/delivery-status` body (RFC 3464 §2.2 and §2.3).
pub fn delivery_status(report: &DsnReport<'_>) -> String {
    let mut out = format!(
        "Reporting-MTA: dns; {}\r\nX-Mailtls-Queue-ID: {}\r\nArrival-Date: {}\r\n",
        report.reporting_mta,
        field_text(report.queue_id),
        rfc2822(report.arrival)
    );
    for (rcpt, f) in &report.recipients {
        out.push_str("\r\n");
        out.push_str(&format!(
            "Final-Recipient: rfc822; {}\r\n",
            field_text(rcpt)
        ));
        match report.action {
            DsnAction::Failed => out.push_str("Action: failed\r\n"),
            DsnAction::Delayed { .. } => out.push_str("Action: delayed\r\n"),
        }
        out.push_str(&format!("Status: {}\r\n", field_text(&f.status)));
        if let Some(mta) = &f.remote_mta {
            out.push_str(&format!("Remote-MTA: dns; {}\r\n", field_text(mta)));
        }
        match &f.smtp_reply {
            Some(reply) => {
                out.push_str(&format!("Diagnostic-Code: smtp; {}\r\n", field_text(reply)));
            }
            None => out.push_str(&format!(
                "Diagnostic-Code: x-mailtls; {}\r\n",
                field_text(&f.reason)
            )),
        }
        if let DsnAction::Delayed { will_retry_until } = report.action {
            // RFC 3464 §2.3.8.
            out.push_str(&format!(
                "Will-Retry-Until: {}\r\n",
                rfc2822(will_retry_until)
            ));
        }
    }
    out
}

/// Builds the whole DSN message (CRLF line ends).
pub fn build(report: &DsnReport<'_>) -> Result<Vec<u8>, DsnError> {
    let whole = report.action == DsnAction::Failed && report.original.len() <= report.return_limit;
    let returned = if whole {
        "It is attached."
    } else {
        "Its header section is attached."
    };
    let (subject, intro) = match report.action {
        DsnAction::Failed => (
            "Undelivered Mail Returned to Sender".to_owned(),
            format!(
                "Your message could not be delivered to one or more recipients.\r\n\
                 It has been returned. {returned}"
            ),
        ),
        DsnAction::Delayed { will_retry_until } => (
            "Delayed Mail (still being retried)".to_owned(),
            format!(
                "Your message has not been delivered to one or more recipients yet.\r\n\
                 This is only a warning: it is still being tried until {}.\r\n\
                 You do not need to send it again. {returned}",
                rfc2822(will_retry_until)
            ),
        ),
    };
    let mut human = format!(
        "This is the mail system at host {}.\r\n\r\n{intro}\r\n\r\n",
        report.reporting_mta
    );
    for (rcpt, f) in &report.recipients {
        human.push_str(&format!(
            "<{}>: {} ({})\r\n",
            field_text(rcpt),
            field_text(&f.reason),
            f.status
        ));
        if let Some(reply) = &f.smtp_reply {
            human.push_str(&format!("    the server said: {}\r\n", field_text(reply)));
        }
    }
    let third = if whole {
        let encoding = if report.original.is_ascii() {
            "7bit"
        } else {
            "8bit"
        };
        MimePart::new(ContentType::new("message/rfc822"), report.original.to_vec())
            .transfer_encoding(encoding)
    } else {
        let headers = header_section(report.original);
        let encoding = if headers.is_ascii() { "7bit" } else { "8bit" };
        MimePart::new(ContentType::new("text/rfc822-headers"), headers.to_vec())
            .transfer_encoding(encoding)
    };
    let body = MimePart::new(
        ContentType::new("multipart/report").attribute("report-type", "delivery-status"),
        vec![
            MimePart::new("text/plain", human),
            MimePart::new(
                ContentType::new("message/delivery-status"),
                delivery_status(report).into_bytes(),
            )
            .transfer_encoding("7bit"),
            third,
        ],
    );
    let daemon = format!("MAILER-DAEMON@{}", report.reporting_mta);
    let bytes = MessageBuilder::new()
        .from(("Mail Delivery System", daemon.as_str()))
        .to(report.sender)
        .subject(subject)
        // RFC 3834 §5: automatic replies say so.
        .header("Auto-Submitted", Raw::new("auto-replied"))
        .body(body)
        .write_to_vec()?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::{MessageParser, MimeHeaders, PartType};

    fn failure(status: &str, reply: Option<&str>) -> Failure {
        Failure {
            status: status.into(),
            remote_mta: Some("mx.example.org".into()),
            smtp_reply: reply.map(Into::into),
            reason: "REQUIRETLS: the next hop does not support REQUIRETLS".into(),
        }
    }

    const ORIGINAL: &[u8] =
        b"From: a@example.test\r\nSubject: secret plans\r\n\r\nthe body\r\n.leading dot\r\n";

    /// The content types of the report's parts, in order.
    fn part_types(msg: &mail_parser::Message<'_>) -> Vec<String> {
        msg.parts
            .iter()
            .skip(1)
            .filter_map(|p| p.content_type())
            .map(|c| format!("{}/{}", c.ctype(), c.subtype().unwrap_or("")))
            .take(3)
            .collect()
    }

    #[test]
    fn a_failure_report_returns_the_message_rfc3464_rfc6522() {
        let f = failure("5.7.30", None);
        let rejected = failure(
            "5.1.1",
            Some("550 5.1.1 <b@example.org>: no such user\r\nX-Evil: 1"),
        );
        let report = DsnReport {
            reporting_mta: "mail.example.test",
            queue_id: "Q1",
            arrival: 1_790_000_000,
            sender: "a@example.test",
            action: DsnAction::Failed,
            recipients: vec![("a@example.org", &f), ("b@example.org", &rejected)],
            original: ORIGINAL,
            return_limit: 1024,
        };
        let bytes = build(&report).unwrap();
        let msg = MessageParser::default().parse(&bytes).unwrap();
        let ct = msg.content_type().unwrap();
        assert_eq!((ct.ctype(), ct.subtype()), ("multipart", Some("report")));
        assert_eq!(ct.attribute("report-type"), Some("delivery-status"));
        assert_eq!(
            msg.to().unwrap().first().unwrap().address(),
            Some("a@example.test")
        );
        assert_eq!(msg.subject(), Some("Undelivered Mail Returned to Sender"));
        assert_eq!(
            part_types(&msg),
            ["text/plain", "message/delivery-status", "message/rfc822"]
        );
        // RFC 6522 §3: the returned message is a message of its own.
        let returned = msg
            .parts
            .iter()
            .find_map(|p| match &p.body {
                PartType::Message(m) => Some(m),
                _ => None,
            })
            .expect("a message/rfc822 part");
        assert_eq!(returned.subject(), Some("secret plans"));
        assert_eq!(
            returned.body_text(0).as_deref(),
            Some("the body\r\n.leading dot\r\n")
        );
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("Reporting-MTA: dns; mail.example.test\r\n"));
        assert!(text.contains("Final-Recipient: rfc822; a@example.org\r\nAction: failed\r\nStatus: 5.7.30\r\nRemote-MTA: dns; mx.example.org\r\n"));
        assert!(text.contains(
            "Diagnostic-Code: smtp; 550 5.1.1 <b@example.org>: no such user??X-Evil: 1\r\n"
        ));
        assert!(!text.contains("Will-Retry-Until"));
        assert!(text.contains("Auto-Submitted: auto-replied"));

        // Larger than the limit: the header section only.
        let headers_only = build(&DsnReport {
            return_limit: ORIGINAL.len() - 1,
            ..report
        })
        .unwrap();
        let msg = MessageParser::default().parse(&headers_only).unwrap();
        assert_eq!(
            part_types(&msg),
            [
                "text/plain",
                "message/delivery-status",
                "text/rfc822-headers"
            ]
        );
        let text = String::from_utf8_lossy(&headers_only);
        assert!(text.contains("Subject: secret plans"));
        assert!(!text.contains("the body"), "{text}");
        assert_eq!(header_section(b"A: b\n\nbody"), b"A: b\n");
        assert_eq!(header_section(b"A: b"), b"A: b");
    }

    #[test]
    fn a_delay_warning_says_delayed_with_a_4xx_status_rfc3464_2_3_3() {
        let f = Failure {
            status: "4.4.1".into(),
            remote_mta: None,
            smtp_reply: None,
            reason: "mx.example.org [192.0.2.1:25]: connect: refused".into(),
        };
        let report = DsnReport {
            reporting_mta: "mail.example.test",
            queue_id: "Q2",
            arrival: 1_790_000_000,
            sender: "a@example.test",
            action: DsnAction::Delayed {
                will_retry_until: 1_790_432_000,
            },
            recipients: vec![("late@example.org", &f)],
            original: ORIGINAL,
            return_limit: usize::MAX,
        };
        let bytes = build(&report).unwrap();
        let msg = MessageParser::default().parse(&bytes).unwrap();
        assert_eq!(msg.subject(), Some("Delayed Mail (still being retried)"));
        // The message is still on its way: only its header comes back.
        assert_eq!(
            part_types(&msg),
            [
                "text/plain",
                "message/delivery-status",
                "text/rfc822-headers"
            ]
        );
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains(
            "Final-Recipient: rfc822; late@example.org\r\nAction: delayed\r\nStatus: 4.4.1\r\n"
        ));
        assert!(text.contains("Will-Retry-Until: "), "{text}");
        assert!(!text.contains("the body"));
        assert_eq!(
            transient_status_in("4.7.5 mx: TLS handshake failed").as_deref(),
            Some("4.7.5")
        );
        assert_eq!(
            transient_status_in("relay: 5.7.30 x; 4.2.1 y").as_deref(),
            Some("4.2.1")
        );
        assert_eq!(transient_status_in("127.0.0.1:25: refused"), None);
    }
}
