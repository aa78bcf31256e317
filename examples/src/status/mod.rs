//! The status report: what the web listeners serve as `/status.json`
//! (this structure, as JSON) and `/` (the same, as one plain HTML page
//! with a `<section id=...>` per subject).
//!
//! Subsystems that may be absent (outbound delivery, TLS-RPT reporting,
//! the S/MIME gateway, ACME) are `Option` fields: `null` in JSON and "not
//! configured" on the page when the server runs without them.

pub(crate) mod html;

use std::time::{Duration, SystemTime};

use mailtls_sni::CertSummary;
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::acme_run::AcmeStatus;
use crate::outbound::OutboundStatus;
use crate::reload::ReloadStatus;
use crate::server::{ListenerInfo, Shared};
use crate::smime_path::status::SmimeStatus;
use crate::tlsrpt_run::TlsRptStatus;

/// Certificates expiring within this many days are listed separately.
pub const EXPIRY_WARNING_DAYS: u64 = 30;

/// The status report served as `/status.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// The main host name.
    pub hostname: String,
    /// When the report was made, RFC 3339.
    pub generated_at: String,
    /// Every listener.
    pub listeners: Vec<ListenerStatus>,
    /// The resolver's counters.
    pub resolver: ResolverStatus,
    /// Every certificate served, in load order.
    pub certificates: Vec<CertificateStatus>,
    /// Those expiring within [`EXPIRY_WARNING_DAYS`] (or expired), soonest first.
    pub expiring_soon: Vec<CertificateStatus>,
    /// The MTA-STS policies this server publishes for its own domains.
    pub mta_sts: Vec<PublishedPolicyStatus>,
    /// Outbound delivery: the queue and the MTA-STS policy cache; `None`
    /// when `outbound.enabled` is off.
    pub outbound: Option<OutboundStatus>,
    /// TLS-RPT: today's counts per policy domain, the last reports sent,
    /// summaries of reports received.
    pub tlsrpt: Option<TlsRptStatus>,
    /// `[store]`: file or PostgreSQL; with PostgreSQL the nodes seen and the
    /// leases held.
    pub store: crate::store::StoreStatus,
    /// The S/MIME gateway: partner store, approval queue, own keys; `None`
    /// unless `smime.enabled`.
    pub smime: Option<SmimeStatus>,
    /// ACME: the names ordered, the certificate in service, the renewal
    /// schedule and the last run; `None` unless `acme.enabled`.
    pub acme: Option<AcmeStatus>,
    /// Configuration reloads (SIGHUP) since start.
    pub reload: ReloadStatus,
    /// Failed logins per client address and per account, and who is
    /// refused now.
    pub auth_failures: crate::auth::AuthFailureStatus,
}

/// One of this server's own MTA-STS policies in the status report.
#[derive(Debug, Clone, Serialize)]
pub struct PublishedPolicyStatus {
    /// The policy domain.
    pub domain: String,
    /// Where senders fetch it.
    pub url: String,
    /// `enforce`, `testing` or `none`.
    pub mode: String,
    /// The `mx` patterns.
    pub mx: Vec<String>,
    /// Cache lifetime in seconds.
    pub max_age: u32,
    /// The id the `_mta-sts` record must carry.
    pub id: String,
    /// The `_smtp._tls` record text, if TLS reports are asked for.
    pub tlsrpt: Option<String>,
}

/// One listener in the status report.
#[derive(Debug, Clone, Serialize)]
pub struct ListenerStatus {
    /// Config name (`smtp`, `imaps`, `https`...).
    pub name: String,
    /// Bound address.
    pub address: String,
    /// Security mode word.
    pub mode: String,
}

/// The resolver's counters in the status report.
#[derive(Debug, Clone, Serialize)]
pub struct ResolverStatus {
    /// Reload generation.
    pub generation: u64,
    /// Certificates served.
    pub certificates: usize,
    /// Handshakes that matched a name (exact or wildcard).
    pub hits: u64,
    /// Of those, exact matches.
    pub exact_hits: u64,
    /// Of those, wildcard matches.
    pub wildcard_hits: u64,
    /// Handshakes that got the default certificate or were refused.
    pub misses: u64,
    /// Of those, no SNI.
    pub default_no_sni: u64,
    /// Of those, an SNI that matched nothing.
    pub default_no_match: u64,
    /// Of those, refused.
    pub refused: u64,
    /// tls-alpn-01 challenge certificates served.
    pub challenges_served: u64,
    /// Successful reloads.
    pub reloads: u64,
    /// Refused reloads.
    pub failed_reloads: u64,
    /// Why the last reload failed, if it did.
    pub last_reload_error: Option<String>,
    /// Handshakes that got an expired or not-yet-valid certificate because
    /// no valid one covered the name.
    pub served_invalid: u64,
    /// Files of the certificate directory that are not served, all of them
    /// counted.
    pub bad_file_count: usize,
    /// Those files with the reason (the first 100).
    pub bad_files: Vec<BadFileStatus>,
}

/// A certificate file that is not served, and why.
#[derive(Debug, Clone, Serialize)]
pub struct BadFileStatus {
    /// The file.
    pub file: String,
    /// What is wrong with it.
    pub reason: String,
}

/// One certificate in the status report.
#[derive(Debug, Clone, Serialize)]
pub struct CertificateStatus {
    /// Names it is served for.
    pub names: Vec<String>,
    /// Subject DN.
    pub subject: String,
    /// Issuer DN.
    pub issuer: String,
    /// Key algorithm, e.g. `ECDSA P-256`.
    pub key_type: String,
    /// notBefore, RFC 3339.
    pub not_before: String,
    /// notAfter, RFC 3339.
    pub not_after: String,
    /// Whole days until notAfter (negative once expired).
    pub days_left: i64,
    /// Where it was loaded from.
    pub source: String,
    /// SHA-256 fingerprint, colon hex.
    pub fingerprint_sha256: String,
}

pub(crate) fn rfc3339(t: SystemTime) -> String {
    OffsetDateTime::from(t)
        .format(&Rfc3339)
        .unwrap_or_else(|_| "?".into())
}

pub(crate) fn days_left(not_after: SystemTime, now: SystemTime) -> i64 {
    let days = |d: Duration| i64::try_from(d.as_secs() / 86_400).unwrap_or(i64::MAX);
    match not_after.duration_since(now) {
        Ok(left) => days(left),
        Err(e) => -days(e.duration()) - 1,
    }
}

fn certificate_status(c: &CertSummary, now: SystemTime) -> CertificateStatus {
    CertificateStatus {
        names: c.names.clone(),
        subject: c.subject.clone(),
        issuer: c.issuer.clone(),
        key_type: c.key.to_string(),
        not_before: rfc3339(c.not_before),
        not_after: rfc3339(c.not_after),
        days_left: days_left(c.not_after, now),
        source: c.source.clone(),
        fingerprint_sha256: c.fingerprint.clone(),
    }
}

/// Builds the status report from the running server's state.
pub(crate) async fn status(shared: &Shared) -> Status {
    let tlsrpt = match &shared.tlsrpt {
        Some(t) => Some(t.status().await),
        None => None,
    };
    let store = match &shared.cluster {
        Some(c) => c.status().await,
        None => crate::store::StoreStatus::file(),
    };
    let now = SystemTime::now();
    let r = &shared.tls.resolver;
    let s = r.stats();
    // The policies in effect, which a reload may have changed since start.
    let current = shared.live.current();
    Status {
        hostname: shared.config.server.hostname.to_string(),
        generated_at: rfc3339(now),
        listeners: shared.listeners.iter().map(ListenerInfo::status).collect(),
        resolver: ResolverStatus {
            generation: s.generation,
            certificates: s.certificates,
            hits: s.exact_hits + s.wildcard_hits,
            exact_hits: s.exact_hits,
            wildcard_hits: s.wildcard_hits,
            misses: s.misses(),
            default_no_sni: s.default_no_sni,
            default_no_match: s.default_no_match,
            refused: s.refused,
            challenges_served: s.challenges_served,
            reloads: s.reloads,
            failed_reloads: s.failed_reloads,
            last_reload_error: s.last_reload_error.clone(),
            served_invalid: s.served_invalid,
            bad_file_count: s.bad_file_count,
            bad_files: s
                .bad_files
                .iter()
                .map(|b| BadFileStatus {
                    file: b.file.clone(),
                    reason: b.reason.clone(),
                })
                .collect(),
        },
        certificates: r
            .certificates()
            .iter()
            .map(|c| certificate_status(c, now))
            .collect(),
        expiring_soon: r
            .expiring_within(Duration::from_secs(EXPIRY_WARNING_DAYS * 86_400))
            .iter()
            .map(|c| certificate_status(c, now))
            .collect(),
        mta_sts: current
            .mta_sts
            .publications
            .iter()
            .map(|p| PublishedPolicyStatus {
                domain: p.domain.to_string(),
                url: p.policy_url(),
                mode: p.policy.mode().to_string(),
                mx: p.policy.mx().iter().map(ToString::to_string).collect(),
                max_age: p.policy.max_age(),
                id: p.id.as_str().to_owned(),
                tlsrpt: p.tlsrpt_record(),
            })
            .collect(),
        outbound: Some(shared.outbound.status()).filter(|o| o.enabled),
        tlsrpt,
        store,
        smime: shared.smime.as_ref().map(|g| g.status()),
        acme: shared.acme.as_ref().map(|a| a.status()),
        reload: shared.live.status(),
        auth_failures: shared.auth_guard.status(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_left_rounds_down_and_goes_negative_once_expired() {
        let now = SystemTime::now();
        assert_eq!(days_left(now + Duration::from_secs(86_400 * 3 + 5), now), 3);
        assert_eq!(days_left(now + Duration::from_secs(86_399), now), 0);
        assert_eq!(days_left(now - Duration::from_secs(10), now), -1);
        assert_eq!(
            days_left(now - Duration::from_secs(86_400 * 2 + 1), now),
            -3
        );
    }
}
