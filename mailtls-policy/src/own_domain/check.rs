//! Checking a published setup end to end, as a sender would see it.

use std::fmt;

use mailtls_core::DnsName;

use crate::dns::{DnsResolver, QueryName};
use crate::mta_sts::{FetchPolicy, PolicyMode, Profile, Severity, parse_policy, select_record};
use crate::tlsrpt::{RecordError as TlsRptRecordError, TlsRptRecord};

/// The verdict of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CheckStatus {
    /// Fine.
    Pass,
    /// Works, but worth fixing.
    Warn,
    /// Broken: senders will not apply the policy as intended.
    Fail,
}

/// One check and what it found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked (a short stable name: `sts-record`, `policy-fetch`,
    /// `policy-strict`, `mx-covered`, `max-age`, `tlsrpt-record`).
    pub name: &'static str,
    /// The verdict.
    pub status: CheckStatus,
    /// What was found, for people.
    pub detail: String,
}

/// Everything [`check_setup`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupReport {
    /// The domain checked.
    pub domain: DnsName,
    /// The checks in the order they ran.
    pub checks: Vec<Check>,
}

impl SetupReport {
    /// The worst status.
    pub fn worst(&self) -> CheckStatus {
        self.checks
            .iter()
            .map(|c| c.status)
            .max()
            .unwrap_or(CheckStatus::Pass)
    }

    /// Whether switching to (or staying in) `enforce` is safe: nothing
    /// failed.
    pub fn ready_for_enforce(&self) -> bool {
        self.worst() < CheckStatus::Fail
    }

    /// The check named `name`, if it ran.
    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }
}

impl fmt::Display for SetupReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "MTA-STS setup of {}:", self.domain)?;
        for c in &self.checks {
            let s = match c.status {
                CheckStatus::Pass => "ok  ",
                CheckStatus::Warn => "warn",
                CheckStatus::Fail => "FAIL",
            };
            writeln!(f, "  [{s}] {}: {}", c.name, c.detail)?;
        }
        Ok(())
    }
}

/// A `max_age` below this gets a warning: RFC 8461 §3.2 recommends weeks,
/// and a short lifetime leaves senders unprotected soon after an outage.
const SHORT_MAX_AGE: u32 = 86_400;

/// Reads back what `domain` publishes: the `_mta-sts` record, the policy
/// (fetched over HTTPS and also read with the strict profile), whether
/// every MX host is covered by the policy's `mx` patterns, the `max_age`,
/// and the `_smtp._tls` record. `fetcher` is normally the HTTPS
/// `PolicyFetcher` of feature `fetch`.
pub async fn check_setup<R: DnsResolver + ?Sized>(
    domain: &DnsName,
    dns: &R,
    fetcher: &dyn FetchPolicy,
) -> SetupReport {
    let mut checks = Vec::new();
    let mut add = |name, status, detail: String| {
        checks.push(Check {
            name,
            status,
            detail,
        })
    };

    match QueryName::with_service(&["_mta-sts"], domain) {
        Ok(q) => match dns.txt(&q).await {
            Ok(answer) => match select_record(&answer.records) {
                Ok(r) => add("sts-record", CheckStatus::Pass, format!("{q}: id={}", r.id)),
                Err(e) => add("sts-record", CheckStatus::Fail, format!("{q}: {e}")),
            },
            Err(e) => add("sts-record", CheckStatus::Fail, e.to_string()),
        },
        Err(e) => add("sts-record", CheckStatus::Fail, e.to_string()),
    }

    let policy = match fetcher.fetch_policy(domain).await {
        Ok(parsed) => {
            add(
                "policy-fetch",
                CheckStatus::Pass,
                format!(
                    "mode {}, {} mx pattern(s), max_age {}",
                    parsed.policy.mode(),
                    parsed.policy.mx().len(),
                    parsed.policy.max_age()
                ),
            );
            Some(parsed.policy)
        }
        Err(e) => {
            add(
                "policy-fetch",
                CheckStatus::Fail,
                format!("{e} ({})", e.result_type()),
            );
            None
        }
    };

    if let Some(policy) = &policy {
        // Senders differ in how forgiving they are: what the strict profile
        // refuses, some senders will refuse too.
        match parse_policy(policy.raw().as_bytes(), Profile::Strict) {
            Ok(p) => {
                let warnings: Vec<String> = p
                    .diagnostics
                    .iter()
                    .filter(|d| d.severity >= Severity::Warning)
                    .map(ToString::to_string)
                    .collect();
                if warnings.is_empty() {
                    add(
                        "policy-strict",
                        CheckStatus::Pass,
                        "follows RFC 8461 §3.2".into(),
                    );
                } else {
                    add("policy-strict", CheckStatus::Warn, warnings.join("; "));
                }
            }
            Err(e) => add(
                "policy-strict",
                CheckStatus::Fail,
                e.errors()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
        }

        if policy.mode() != PolicyMode::None {
            match dns.mx(domain).await {
                Ok(answer) => {
                    let hosts: Vec<&DnsName> = answer
                        .records
                        .iter()
                        .filter_map(|r| r.exchange.as_ref())
                        .collect();
                    let uncovered: Vec<String> = hosts
                        .iter()
                        .filter(|h| !policy.matches_mx(h))
                        .map(ToString::to_string)
                        .collect();
                    if hosts.is_empty() {
                        add("mx-covered", CheckStatus::Warn, "null MX only".into());
                    } else if uncovered.is_empty() {
                        add(
                            "mx-covered",
                            CheckStatus::Pass,
                            format!("all {} MX host(s) match", hosts.len()),
                        );
                    } else {
                        add(
                            "mx-covered",
                            CheckStatus::Fail,
                            format!(
                                "not matched by any mx pattern (mail to them fails under enforce): {}",
                                uncovered.join(", ")
                            ),
                        );
                    }
                }
                Err(e) => add("mx-covered", CheckStatus::Fail, e.to_string()),
            }
            let status = if policy.max_age() < SHORT_MAX_AGE {
                CheckStatus::Warn
            } else {
                CheckStatus::Pass
            };
            add("max-age", status, format!("{} seconds", policy.max_age()));
        }
    }

    match QueryName::with_service(&["_smtp", "_tls"], domain) {
        Ok(q) => match dns.txt(&q).await {
            Ok(answer) => {
                // The same selector and parser a sender uses (RFC 8460 §3).
                match TlsRptRecord::from_txt_answer(&answer.records) {
                    Ok(record) => {
                        let rua: Vec<String> =
                            record.rua().iter().map(ToString::to_string).collect();
                        let mut detail = format!("{q}: reports to {}", rua.join(", "));
                        if record.diagnostics().is_empty() {
                            add("tlsrpt-record", CheckStatus::Pass, detail);
                        } else {
                            detail.push_str(&format!(" ({})", record.diagnostics().join("; ")));
                            add("tlsrpt-record", CheckStatus::Warn, detail);
                        }
                    }
                    Err(TlsRptRecordError::NoRecord) => add(
                        "tlsrpt-record",
                        CheckStatus::Warn,
                        format!("{q}: no v=TLSRPTv1 record, so no failure reports"),
                    ),
                    Err(e) => add("tlsrpt-record", CheckStatus::Fail, format!("{q}: {e}")),
                }
            }
            Err(e) => add(
                "tlsrpt-record",
                CheckStatus::Warn,
                format!("no TLS-RPT record, so no failure reports: {e}"),
            ),
        },
        Err(e) => add("tlsrpt-record", CheckStatus::Warn, e.to_string()),
    }

    SetupReport {
        domain: domain.clone(),
        checks,
    }
}
