//! The message path after DATA: local recipients get the message in the
//! spool, the others in the outbound queue (when `outbound.enabled`; with it
//! off every copy stays in the spool, as the server always did).
//!
//! Mail the server writes itself (delivery status notifications, reports,
//! administrator mail) takes the same path through `submit_internal`, so
//! it is queued, retried and never lost.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;

use crate::outbound::OutboundError;
use crate::server::Shared;
use crate::smime_path::Origin;
use crate::smtp::is_local;
use crate::spool::{Envelope, SpoolError};

/// Why a message could not be accepted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AcceptError {
    /// The local spool failed.
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// The outbound queue failed.
    #[error(transparent)]
    Outbound(#[from] OutboundError),
    /// A blocking task failed.
    #[error("accept task failed: {0}")]
    Task(String),
    /// There was no recipient.
    #[error("no recipients")]
    NoRecipients,
    /// The S/MIME gateway refused the message or could not process it.
    #[error(transparent)]
    Smime(#[from] crate::smime_path::SmimePathError),
}

impl AcceptError {
    /// The SMTP reply (without CRLF) for the client: the S/MIME gateway's
    /// own refusal (such as `554 5.7.5`), else a transient failure.
    pub(crate) fn smtp_reply(&self) -> String {
        match self {
            AcceptError::Smime(e) => e.smtp_reply(),
            _ => "451 4.3.0 Cannot store the message, try again later".to_owned(),
        }
    }
}

/// Stores an accepted message: the local recipients' copy in the spool (one
/// copy per group when the S/MIME gateway decrypted it for some of them
/// only), the others' in the outbound queue. Returns the ids,
/// comma-separated, when there is more than one.
pub(crate) async fn accept(
    shared: &Shared,
    envelope: Envelope,
    body: Vec<u8>,
) -> Result<String, AcceptError> {
    accept_from(shared, envelope, body, Origin::Smtp).await
}

async fn accept_from(
    shared: &Shared,
    envelope: Envelope,
    body: Vec<u8>,
    origin: Origin,
) -> Result<String, AcceptError> {
    if envelope.rcpt_to.is_empty() {
        return Err(AcceptError::NoRecipients);
    }
    // The S/MIME gateway: the local copies decrypted (for the recipients
    // whose key is held), verified and marked, the remote copy signed
    // and/or encrypted (or the message refused).
    let prepared = crate::smime_path::prepare(shared, &envelope, body, origin).await?;
    let mut ids = Vec::new();
    // One spool file per copy: recipients whose key decrypted the message
    // get the plaintext, the others the message as it came.
    for copy in prepared.for_local {
        // A TLS report for our own rua mailbox is summarised (and spooled).
        if let Some(t) = &shared.tlsrpt {
            t.receive(&copy.rcpt_to, &copy.message).await;
        }
        let spool = shared.spool.clone();
        let local_envelope = Envelope {
            rcpt_to: copy.rcpt_to,
            ..envelope.clone()
        };
        let local_body = copy.message;
        let id = tokio::task::spawn_blocking(move || spool.store(&local_envelope, &local_body))
            .await
            .map_err(|e| AcceptError::Task(e.to_string()))??;
        ids.push(id);
    }
    // One queue entry per remote copy: with encryption decided per
    // recipient, those with a certificate get the encrypted copy.
    if shared.outbound.is_enabled() {
        for copy in prepared.for_remote {
            let remote: Vec<String> = copy
                .rcpt_to
                .into_iter()
                .filter(|r| !is_local(r, &shared.local_domains))
                .collect();
            if remote.is_empty() {
                continue;
            }
            let mut queued = received_header(shared, &envelope).into_bytes();
            queued.extend_from_slice(&copy.message);
            let id = shared
                .outbound
                .enqueue(&envelope.mail_from, &remote, queued)
                .await?;
            ids.push(id);
        }
    }
    if let Some(bounced) = prepared.bounced {
        bounce(shared, &envelope, &ids.join(","), bounced).await;
    }
    Ok(ids.join(","))
}

/// Tells the sender, in a DSN, which recipients the S/MIME gateway did not
/// send to (no certificate, and a policy that forbids mail in clear to
/// them). The message was accepted for the others, so a failure to queue
/// the DSN is logged, not returned.
async fn bounce(
    shared: &Shared,
    envelope: &Envelope,
    ids: &str,
    bounced: crate::smime_path::Bounced,
) {
    use crate::outbound::dsn::{self, DsnAction, DsnReport};
    // RFC 3461 §6.2 / RFC 5321 §4.5.5: nothing goes back to a null sender.
    if envelope.mail_from.is_empty() {
        tracing::info!(recipients = ?bounced.rcpt_to, "S/MIME bounce for a null sender dropped");
        return;
    }
    let failure = crate::outbound::queue::Failure {
        status: bounced.status.clone(),
        remote_mta: None,
        smtp_reply: None,
        reason: format!("not sent: {}", bounced.reason),
    };
    // The spool's REQUIRETLS marker is ours, not the sender's.
    let original = crate::requiretls_mark::remove_marker(&bounced.original);
    let queue_id = if ids.is_empty() { "none" } else { ids };
    let report = DsnReport {
        reporting_mta: shared.config.server.hostname.as_str(),
        queue_id,
        arrival: crate::outbound::queue::unix_now(),
        sender: &envelope.mail_from,
        action: DsnAction::Failed,
        recipients: bounced
            .rcpt_to
            .iter()
            .map(|r| (r.as_str(), &failure))
            .collect(),
        original: &original,
        return_limit: shared.outbound.config().dsn_return_limit,
    };
    let message = match dsn::build(&report) {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the S/MIME bounce");
            return;
        }
    };
    // RFC 8689 §5: the report on a REQUIRETLS message is REQUIRETLS too.
    let message = crate::requiretls_mark::mark(
        &message,
        crate::requiretls_mark::is_marked(&bounced.original),
    );
    let to = std::slice::from_ref(&envelope.mail_from);
    match Box::pin(submit_internal(shared, "", to, message)).await {
        Ok(id) => {
            tracing::info!(dsn_id = %id, to = %envelope.mail_from, recipients = ?bounced.rcpt_to, "S/MIME bounce sent");
        }
        Err(e) => tracing::error!(error = %e, "cannot queue the S/MIME bounce"),
    }
}

/// Queues or spools mail the server itself wrote (`mail_from` empty for a
/// bounce). `body` is a complete message with CRLF line ends.
pub(crate) async fn submit_internal(
    shared: &Shared,
    mail_from: &str,
    rcpt_to: &[String],
    body: Vec<u8>,
) -> Result<String, AcceptError> {
    let envelope = Envelope {
        mail_from: mail_from.to_owned(),
        rcpt_to: rcpt_to.to_vec(),
        helo: shared.config.server.hostname.to_string(),
        esmtp: true,
        peer: std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 0)),
        tls: None,
        authenticated: true,
        login: None,
    };
    // Origin::Server: no S/MIME encryption policy may refuse (and so lose)
    // a bounce, report or administrator mail; see `Origin::Server`.
    accept_from(shared, envelope, body, Origin::Server).await
}

/// The `Received:` trace field (RFC 5321 §4.4) for the queued copy; the
/// spool writes its own with the `Return-Path:`.
fn received_header(shared: &Shared, e: &Envelope) -> String {
    let with = match (e.esmtp, e.tls.is_some(), e.authenticated) {
        (false, _, _) => "SMTP",
        (true, false, false) => "ESMTP",
        (true, false, true) => "ESMTPA",
        (true, true, false) => "ESMTPS",
        (true, true, true) => "ESMTPSA",
    };
    let date = OffsetDateTime::now_utc()
        .format(&Rfc2822)
        .unwrap_or_else(|_| "Thu, 01 Jan 1970 00:00:00 +0000".into());
    let ip = e.peer.ip();
    format!(
        "Received: from {} ({ip} [{ip}])\r\n\tby {} (mailtls) with {with}; {date}\r\n",
        header_safe(&e.helo),
        shared.config.server.hostname,
    )
}

/// Client-supplied text inside a header: printable ASCII only, nothing that
/// ends the field or a comment early.
fn header_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '(' && c != ')' {
                c
            } else {
                '?'
            }
        })
        .collect()
}
