//! The delivery worker: picks due messages from the queue, delivers each
//! recipient group (per domain, or all through the relay host), writes
//! every state change back, and returns failures to their senders as DSNs
//! through [`crate::accept::submit_internal`].
//!
//! Delivery is at least once, never at most once. A recipient is marked
//! delivered only after the next hop answered the end of data with 2xx,
//! and that mark is written to the queue before anything else happens to
//! the message. On shutdown no new session starts; sessions in progress
//! get the server's grace period to finish. A session cut off before its
//! final reply leaves its recipients pending, so they are sent again after
//! the restart. That is also what happens when the process dies between
//! the reply and the write, or when the reply is lost: the next hop may
//! get the message twice (RFC 5321 §6.1 accepts that risk), but it is
//! never lost and never counted as delivered without the reply.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use mailtls_core::DnsName;
use mailtls_policy::requiretls::{TlsDemand, TlsRequiredHeader};
use tokio::sync::{Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};

use super::deliver::{Outgoing, RcptResult};
use super::dsn::{self, DsnAction, DsnReport};
use super::queue::{Failure, MessageState, RecipientStatus, unix_now};
use super::retry::{NextStep, RetrySchedule};
use super::{Outbound, OutboundError};
use crate::requiretls_mark;
use crate::server::{SHUTDOWN_GRACE, Shared};

/// The longest the worker sleeps without looking at the queue.
const MAX_IDLE: Duration = Duration::from_secs(30);
/// How often cached MTA-STS policies due for a refresh are fetched again
/// (RFC 8461 §10.2: refresh before expiry, so a policy never lapses).
const MTA_STS_REFRESH: Duration = Duration::from_secs(600);
/// The pause after a DSN could not be queued, before it is tried again.
const DSN_RETRY_PAUSE: Duration = Duration::from_secs(10);

/// Starts the worker when `outbound.enabled`. On shutdown it starts
/// nothing new and waits up to the server's grace period for deliveries in
/// progress; one still running then is abandoned and stays pending.
pub(crate) fn start(
    shared: &Arc<Shared>,
    shutdown: watch::Receiver<bool>,
) -> Option<JoinHandle<()>> {
    if !shared.outbound.is_enabled() {
        return None;
    }
    Some(tokio::spawn(run(Arc::clone(shared), shutdown)))
}

async fn run(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let ob = Arc::clone(&shared.outbound);
    let limit = Arc::new(Semaphore::new(ob.config.max_concurrent));
    let mut running: JoinSet<()> = JoinSet::new();
    let mut inflight: HashMap<tokio::task::Id, String> = HashMap::new();
    tracing::info!(route = %ob.status().route, "outbound delivery worker started");
    let mut next_refresh = tokio::time::Instant::now() + MTA_STS_REFRESH;
    loop {
        if ob.mta_sts.is_some() && tokio::time::Instant::now() >= next_refresh {
            next_refresh = tokio::time::Instant::now() + MTA_STS_REFRESH;
            let ob = Arc::clone(&ob);
            running.spawn(async move {
                if let Some(m) = &ob.mta_sts {
                    for (domain, outcome) in m.refresh_due(std::time::SystemTime::now()).await {
                        tracing::debug!(%domain, ?outcome, "MTA-STS policy refreshed");
                    }
                }
            });
        }
        let now = unix_now();
        let mut due = ob.queue.due(now);
        if let Some(after) = ob.config.delay_warning {
            // A delay warning falls due between attempts, not only at one.
            for id in ob.queue.delay_warnings_due(now, after.as_secs()) {
                if !due.contains(&id) {
                    due.push(id);
                }
            }
        }
        for id in due {
            if inflight.values().any(|i| *i == id) {
                continue;
            }
            let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else {
                break;
            };
            let shared = Arc::clone(&shared);
            let task_id = id.clone();
            let stop = shutdown.clone();
            let handle = running.spawn(async move {
                process(&shared, &task_id, &stop).await;
                drop(permit);
            });
            inflight.insert(handle.id(), id);
        }
        let next_warning = ob
            .config
            .delay_warning
            .and_then(|after| ob.queue.next_delay_warning(after.as_secs()));
        let next = match (ob.queue.next_due(), next_warning) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let wait = next
            .map(|t| Duration::from_secs(t.saturating_sub(unix_now())))
            .unwrap_or(MAX_IDLE)
            .clamp(Duration::from_millis(200), MAX_IDLE);
        tokio::select! {
            () = crate::stream::shutdown_signalled(&mut shutdown) => break,
            () = ob.wake.notified() => {}
            Some(done) = running.join_next_with_id(), if !running.is_empty() => {
                let id = match done {
                    Ok((id, ())) => id,
                    Err(e) => {
                        tracing::error!(error = %e, "delivery task failed");
                        e.id()
                    }
                };
                inflight.remove(&id);
            }
            () = tokio::time::sleep(wait) => {}
        }
    }
    if !running.is_empty() {
        tracing::info!(
            tasks = running.len(),
            grace_seconds = SHUTDOWN_GRACE.as_secs(),
            "shutdown: waiting for deliveries in progress"
        );
        let drain = async { while running.join_next().await.is_some() {} };
        if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
            tracing::warn!(
                tasks = running.len(),
                "deliveries still in progress after the grace period; abandoned, their recipients stay pending"
            );
            running.abort_all();
            while running.join_next().await.is_some() {}
        }
    }
    tracing::info!("outbound delivery worker stopped");
}

/// Runs a blocking queue operation off the runtime.
async fn blocking<T: Send + 'static>(
    ob: &Arc<Outbound>,
    f: impl FnOnce(&Outbound) -> Result<T, super::QueueError> + Send + 'static,
) -> Result<T, OutboundError> {
    let ob = Arc::clone(ob);
    Ok(tokio::task::spawn_blocking(move || f(&ob))
        .await
        .map_err(|e| OutboundError::Task(e.to_string()))??)
}

async fn persist(ob: &Arc<Outbound>, state: &MessageState) {
    let s = state.clone();
    if let Err(e) = blocking(ob, move |o| o.queue.update(s)).await {
        tracing::error!(id = %state.id, error = %e, "cannot write the queue state");
    }
}

/// Whether the header section has a field named `name`.
fn has_header(headers: &str, name: &str) -> bool {
    headers.split('\n').any(|l| {
        l.split_once(':').is_some_and(|(n, _)| {
            !n.starts_with([' ', '\t']) && n.trim().eq_ignore_ascii_case(name)
        })
    })
}

/// Where a recipient's copy goes: `None` for the relay host, else the
/// recipient domain (lower case, as written).
fn route_key(relay: bool, address: &str) -> Option<String> {
    if relay {
        return None;
    }
    Some(
        address
            .rsplit_once('@')
            .map_or("", |(_, d)| d)
            .to_ascii_lowercase(),
    )
}

/// Delivers what is due of one message, then returns its failures.
async fn process(shared: &Shared, id: &str, stop: &watch::Receiver<bool>) {
    let ob = &shared.outbound;
    let Some(mut state) = ob.queue.get(id) else {
        return;
    };
    let owned = id.to_owned();
    let body = match blocking(ob, move |o| o.queue.read_body(&owned)).await {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(%id, error = %e, "cannot read a queued message");
            return;
        }
    };
    let now = unix_now();
    let due: Vec<usize> = state
        .recipients
        .iter()
        .enumerate()
        .filter(|(_, r)| r.status == RecipientStatus::Pending && r.next_attempt <= now)
        .map(|(i, _)| i)
        .collect();
    if !due.is_empty() {
        deliver_due(ob, &mut state, &body, &due, stop).await;
    }
    warn_if_delayed(shared, &mut state, &body).await;
    return_failures(shared, &mut state, &body).await;
}

async fn deliver_due(
    ob: &Arc<Outbound>,
    state: &mut MessageState,
    body: &[u8],
    due: &[usize],
    stop: &watch::Receiver<bool>,
) {
    let requiretls = requiretls_mark::is_marked(body);
    let message = requiretls_mark::remove_marker(body);
    let headers = String::from_utf8_lossy(dsn::header_section(&message)).into_owned();
    let demand = TlsDemand::from_envelope_and_header(
        requiretls,
        TlsRequiredHeader::find_in_headers(&headers),
    );
    let mail_from = state.mail_from.clone();
    let out = Outgoing {
        mail_from: &mail_from,
        message: &message,
        demand,
        // RFC 8460 §5.3.1: a report's own delivery is not counted.
        count_tls: !has_header(&headers, "TLS-Report-Domain"),
    };
    let relay = ob.config.relay.clone();
    let mut groups: BTreeMap<Option<String>, Vec<usize>> = BTreeMap::new();
    for &i in due {
        groups
            .entry(route_key(relay.is_some(), &state.recipients[i].address))
            .or_default()
            .push(i);
    }
    let schedule = RetrySchedule::new(ob.config.retry.clone(), ob.config.max_age);
    for (key, idxs) in groups {
        if *stop.borrow() {
            // Shutting down: the remaining groups wait, untouched, for the
            // next start instead of opening new sessions in the grace period.
            break;
        }
        let rcpts: Vec<String> = idxs
            .iter()
            .map(|&i| state.recipients[i].address.clone())
            .collect();
        let results = match (&relay, key) {
            (Some(r), _) => ob.deliver_relay(&out, r, &rcpts).await,
            (None, Some(domain)) => match DnsName::parse(&domain) {
                Ok(d) => ob.deliver_mx(&out, &d, &rcpts).await,
                Err(e) => vec![
                    RcptResult::Failed(Failure {
                        status: "5.1.2".into(),
                        remote_mta: None,
                        smtp_reply: None,
                        reason: format!("bad recipient domain {domain:?}: {e}"),
                    });
                    rcpts.len()
                ],
            },
            (None, None) => Vec::new(),
        };
        // Written after each group: a crash before the next one cannot
        // make this group's delivered recipients go out twice.
        apply(ob, state, &schedule, idxs.into_iter().zip(results));
        persist(ob, state).await;
    }
}

/// Records a group's results in the message state.
fn apply(
    ob: &Outbound,
    state: &mut MessageState,
    schedule: &RetrySchedule,
    results: impl Iterator<Item = (usize, RcptResult)>,
) {
    let now = unix_now();
    for (i, result) in results {
        let r = &mut state.recipients[i];
        r.attempts = r.attempts.saturating_add(1);
        match result {
            RcptResult::Delivered { host, reply } => {
                tracing::info!(id = %state.id, rcpt = %r.address, %host, %reply, "delivered");
                ob.counters.delivered.fetch_add(1, Ordering::Relaxed);
                r.status = RecipientStatus::Delivered { host, reply };
                r.last_error = None;
            }
            RcptResult::Deferred(reason) => {
                match schedule.after_failure(state.created, now, r.attempts) {
                    NextStep::RetryAt(t) => {
                        tracing::info!(id = %state.id, rcpt = %r.address, %reason, retry_in = t.saturating_sub(now), "deferred");
                        ob.counters.deferred.fetch_add(1, Ordering::Relaxed);
                        r.next_attempt = t;
                    }
                    NextStep::GiveUp => {
                        tracing::info!(id = %state.id, rcpt = %r.address, %reason, "giving up: too old");
                        r.status = RecipientStatus::Failed(Failure {
                            status: "4.4.7".into(),
                            remote_mta: None,
                            smtp_reply: None,
                            reason: format!(
                                "delivery time expired after {} attempts; last: {reason}",
                                r.attempts
                            ),
                        });
                    }
                }
                r.last_error = Some(reason);
            }
            RcptResult::Failed(f) => {
                tracing::info!(id = %state.id, rcpt = %r.address, status = %f.status, reason = %f.reason, "failed");
                r.status = RecipientStatus::Failed(f);
            }
        }
    }
}

/// Builds a DSN about `recipients` and queues it for the sender; `false`
/// when that failed (it is tried again on the next pass).
async fn send_dsn(
    shared: &Shared,
    state: &MessageState,
    body: &[u8],
    action: DsnAction,
    recipients: &[(String, Failure)],
) -> bool {
    // The spool's REQUIRETLS marker is ours, not the sender's.
    let original = requiretls_mark::remove_marker(body);
    let report = DsnReport {
        reporting_mta: shared.config.server.hostname.as_str(),
        queue_id: &state.id,
        arrival: state.created,
        sender: &state.mail_from,
        action,
        recipients: recipients.iter().map(|(a, f)| (a.as_str(), f)).collect(),
        original: &original,
        return_limit: shared.outbound.config.dsn_return_limit,
    };
    let dsn = match dsn::build(&report) {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(id = %state.id, error = %e, "cannot build a DSN");
            return false;
        }
    };
    // RFC 8689 §5: the report on a REQUIRETLS message is REQUIRETLS too.
    let dsn = requiretls_mark::mark(&dsn, requiretls_mark::is_marked(body));
    match crate::accept::submit_internal(shared, "", std::slice::from_ref(&state.mail_from), dsn)
        .await
    {
        Ok(dsn_id) => {
            tracing::info!(id = %state.id, %dsn_id, to = %state.mail_from, ?action, "delivery status notification sent");
            true
        }
        Err(e) => {
            tracing::error!(id = %state.id, error = %e, "cannot queue the DSN; will retry");
            false
        }
    }
}

/// Tells the sender once that delivery is late: when the message has been
/// queued longer than `outbound.delay_warning_seconds` and some recipient
/// is still pending after a failed attempt (RFC 3464 `Action: delayed`).
/// The worker also runs this between attempts, when the time comes.
async fn warn_if_delayed(shared: &Shared, state: &mut MessageState, body: &[u8]) {
    let ob = &shared.outbound;
    let Some(after) = ob.config.delay_warning else {
        return;
    };
    if state.delay_warned || unix_now() < state.created.saturating_add(after.as_secs()) {
        return;
    }
    let late: Vec<(String, Failure)> = state
        .recipients
        .iter()
        .filter(|r| r.status == RecipientStatus::Pending && r.attempts > 0)
        .map(|r| {
            let reason = r
                .last_error
                .clone()
                .unwrap_or_else(|| "not delivered yet".to_owned());
            let status = dsn::transient_status_in(&reason).unwrap_or_else(|| "4.0.0".to_owned());
            let failure = Failure {
                status,
                remote_mta: None,
                smtp_reply: None,
                reason,
            };
            (r.address.clone(), failure)
        })
        .collect();
    if late.is_empty() {
        return;
    }
    // Marked and written before the DSN is submitted: a crash in between
    // loses this one warning instead of sending it twice (at most one
    // "delayed" DSN per message). A submission that fails takes the mark
    // back, so the warning is tried again.
    state.delay_warned = true;
    persist(ob, state).await;
    if !state.mail_from.is_empty() {
        let action = DsnAction::Delayed {
            will_retry_until: state.created.saturating_add(ob.config.max_age.as_secs()),
        };
        if !send_dsn(shared, state, body, action, &late).await {
            state.delay_warned = false;
            persist(ob, state).await;
            // As for failures: no tight loop while the spool or queue fails.
            tokio::time::sleep(DSN_RETRY_PAUSE).await;
        }
    }
}

/// Sends one DSN for the recipients that failed, then marks them returned.
async fn return_failures(shared: &Shared, state: &mut MessageState, body: &[u8]) {
    let ob = &shared.outbound;
    let failed: Vec<usize> = state
        .recipients
        .iter()
        .enumerate()
        .filter(|(_, r)| matches!(r.status, RecipientStatus::Failed(_)))
        .map(|(i, _)| i)
        .collect();
    if failed.is_empty() {
        return;
    }
    if state.mail_from.is_empty() {
        // RFC 5321 §4.5.5: never a DSN for a DSN (null reverse path).
        tracing::warn!(id = %state.id, "undeliverable message with a null sender dropped");
    } else {
        let failures: Vec<(String, Failure)> = failed
            .iter()
            .filter_map(|&i| match &state.recipients[i].status {
                RecipientStatus::Failed(f) => {
                    Some((state.recipients[i].address.clone(), f.clone()))
                }
                _ => None,
            })
            .collect();
        if !send_dsn(shared, state, body, DsnAction::Failed, &failures).await {
            // Holding the message a while keeps the worker from retrying
            // in a tight loop while the spool or queue fails.
            tokio::time::sleep(DSN_RETRY_PAUSE).await;
            return;
        }
    }
    for i in failed {
        let r = &mut state.recipients[i];
        if let RecipientStatus::Failed(f) = &r.status {
            r.status = RecipientStatus::Returned(f.clone());
            ob.counters.bounced.fetch_add(1, Ordering::Relaxed);
        }
    }
    persist(ob, state).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_and_routes() {
        let h = "From: a@b\r\nTLS-Report-Domain: example.org\r\n\r\n";
        assert!(has_header(h, "tls-report-domain"));
        assert!(!has_header(
            "From: a@b\r\n X-TLS-Report-Domain: x\r\n",
            "TLS-Report-Domain"
        ));
        assert_eq!(
            route_key(false, "U@Example.ORG"),
            Some("example.org".into())
        );
        assert_eq!(route_key(true, "u@example.org"), None);
    }
}
