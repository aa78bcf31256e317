//! The aggregate report (RFC 8460 §4) built from a day's counts.
//!
//! Optional fields are left out when there is no value: some receivers
//! (parsedmarc, report viewers) reject `null`.

use std::collections::BTreeMap;
use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime, Time};

use super::TlsRptError;
use super::collector::{Aggregate, PolicyKey, TupleKey};

/// Who sends the report (RFC 8460 §4.4 `organization-name`, `contact-info`)
/// and the submitter domain used in the file name and mail headers (§5.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportMeta {
    /// `organization-name`.
    pub organization_name: String,
    /// `contact-info`: an address or URL.
    pub contact_info: String,
    /// The sending domain (`TLS-Report-Submitter`, file name prefix).
    pub submitter: String,
}

/// RFC 8460 §4.4: a whole report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct TlsReport {
    /// The sending organisation.
    pub organization_name: String,
    /// The UTC day covered.
    pub date_range: DateRange,
    /// How to reach the sender.
    pub contact_info: String,
    /// A unique, deterministic identifier.
    pub report_id: String,
    /// One entry per policy seen for the domain.
    pub policies: Vec<PolicyReport>,
}

/// `date-range`: RFC 3339 UTC times.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct DateRange {
    /// Start, e.g. `2026-11-24T00:00:00Z`.
    pub start_datetime: String,
    /// End, e.g. `2026-11-24T23:59:59Z`.
    pub end_datetime: String,
}

/// One element of `policies`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PolicyReport {
    /// The policy.
    pub policy: PolicyDesc,
    /// Session totals.
    pub summary: Summary,
    /// Failures grouped by their details; omitted when there were none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failure_details: Vec<FailureDetail>,
}

/// `policy`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PolicyDesc {
    /// `sts`, `tlsa` or `no-policy-found`.
    pub policy_type: String,
    /// The policy text, line by line; omitted when there is none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policy_string: Vec<String>,
    /// Always present.
    pub policy_domain: String,
    /// MX names or patterns, always an array; omitted when there are none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mx_host: Vec<String>,
}

/// `summary`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Summary {
    /// Sessions that succeeded.
    pub total_successful_session_count: u64,
    /// Sessions that failed.
    pub total_failure_session_count: u64,
}

/// One element of `failure-details`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct FailureDetail {
    /// The RFC 8460 §4.3 result type.
    pub result_type: String,
    /// Our address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sending_mta_ip: Option<String>,
    /// The MX host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiving_mx_hostname: Option<String>,
    /// The MX's greeting name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiving_mx_helo: Option<String>,
    /// The MX's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiving_ip: Option<String>,
    /// Sessions with exactly these details.
    pub failed_session_count: u64,
    /// Free text or URI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_information: Option<String>,
    /// Machine-oriented reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason_code: Option<String>,
}

impl TlsReport {
    /// Builds the report for one policy domain and UTC day, or `None` when
    /// the aggregate holds no session for it.
    pub fn build(
        agg: &Aggregate,
        day: Date,
        policy_domain: &str,
        meta: &ReportMeta,
    ) -> Option<Self> {
        let tuples: Vec<(&TupleKey, u64)> = agg
            .iter()
            .filter(|(k, _)| k.day == day && k.policy.domain == policy_domain)
            .collect();
        Self::from_tuples(&tuples, day, policy_domain, meta)
    }

    /// Every report for one UTC day, one per policy domain, in one pass
    /// over the aggregate.
    pub fn build_day(agg: &Aggregate, day: Date, meta: &ReportMeta) -> Vec<Self> {
        agg.grouped()
            .into_iter()
            .filter(|((d, _), _)| *d == day)
            .filter_map(|((d, domain), tuples)| Self::from_tuples(&tuples, d, domain, meta))
            .collect()
    }

    /// Builds from the tuples of one day and policy domain (as grouped by
    /// [`Aggregate::grouped`]); tuples of other days or domains are ignored.
    pub fn from_tuples(
        tuples: &[(&TupleKey, u64)],
        day: Date,
        policy_domain: &str,
        meta: &ReportMeta,
    ) -> Option<Self> {
        let mut by_policy: BTreeMap<&PolicyKey, PolicyReport> = BTreeMap::new();
        for &(k, count) in tuples
            .iter()
            .filter(|(k, _)| k.day == day && k.policy.domain == policy_domain)
        {
            let entry = by_policy.entry(&k.policy).or_insert_with(|| PolicyReport {
                policy: PolicyDesc {
                    policy_type: k.policy.policy_type.as_str().to_owned(),
                    policy_string: k.policy.strings.clone(),
                    policy_domain: k.policy.domain.clone(),
                    mx_host: k.policy.mx_hosts.clone(),
                },
                summary: Summary {
                    total_successful_session_count: 0,
                    total_failure_session_count: 0,
                },
                failure_details: Vec::new(),
            });
            match &k.failure {
                None => {
                    entry.summary.total_successful_session_count = entry
                        .summary
                        .total_successful_session_count
                        .saturating_add(count);
                }
                Some(f) => {
                    entry.summary.total_failure_session_count = entry
                        .summary
                        .total_failure_session_count
                        .saturating_add(count);
                    entry.failure_details.push(FailureDetail {
                        result_type: f.result_type.as_str().to_owned(),
                        sending_mta_ip: f.sending_mta_ip.map(|ip| ip.to_string()),
                        // Empty for failures before any MX was chosen (the
                        // policy fetch): RFC 8460 §4.3 makes the field
                        // optional, and an empty name is no host.
                        receiving_mx_hostname: (!f.receiving_mx_hostname.is_empty())
                            .then(|| f.receiving_mx_hostname.clone()),
                        receiving_mx_helo: f.receiving_mx_helo.clone(),
                        receiving_ip: f.receiving_ip.map(|ip| ip.to_string()),
                        failed_session_count: count,
                        additional_information: f.additional_information.clone(),
                        failure_reason_code: f.failure_reason_code.clone(),
                    });
                }
            }
        }
        if by_policy.is_empty() {
            return None;
        }
        let (start, end) = day_bounds(day);
        Some(Self {
            organization_name: meta.organization_name.clone(),
            date_range: DateRange {
                start_datetime: format_utc(start),
                end_datetime: format_utc(end),
            },
            contact_info: meta.contact_info.clone(),
            report_id: format!(
                "{}@{}",
                unique_id(day, policy_domain, &meta.submitter),
                meta.submitter
            ),
            policies: by_policy.into_values().collect(),
        })
    }

    /// The policy domain the report is about (of its first policy).
    pub fn policy_domain(&self) -> &str {
        self.policies
            .first()
            .map(|p| p.policy.policy_domain.as_str())
            .unwrap_or_default()
    }

    /// The JSON text.
    pub fn to_json(&self) -> Result<Vec<u8>, TlsRptError> {
        Ok(serde_json::to_vec(self)?)
    }

    /// The gzipped JSON (`application/tlsrpt+gzip`).
    pub fn to_gzip(&self) -> Result<Vec<u8>, TlsRptError> {
        let json = self.to_json()?;
        let mut enc = GzEncoder::new(
            Vec::with_capacity(json.len() / 4 + 64),
            Compression::default(),
        );
        enc.write_all(&json)
            .and_then(|()| enc.finish())
            .map_err(|e| TlsRptError::Report(format!("gzip: {e}")))
    }

    /// The RFC 8460 §5.3 file name:
    /// `submitter!policy-domain!begin!end!unique-id.json.gz`, with the
    /// timestamps in seconds since the epoch.
    pub fn filename(&self, submitter: &str) -> String {
        let begin = parse_utc(&self.date_range.start_datetime).map(OffsetDateTime::unix_timestamp);
        let end = parse_utc(&self.date_range.end_datetime).map(OffsetDateTime::unix_timestamp);
        let unique: String = self
            .report_id
            .split('@')
            .next()
            .unwrap_or_default()
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect();
        format!(
            "{submitter}!{}!{}!{}!{unique}.json.gz",
            self.policy_domain(),
            begin.unwrap_or_default(),
            end.unwrap_or_default()
        )
    }
}

/// The first and last second of a UTC day.
pub(crate) fn day_bounds(day: Date) -> (OffsetDateTime, OffsetDateTime) {
    let start = day.with_time(Time::MIDNIGHT).assume_utc();
    (start, start + time::Duration::seconds(86_399))
}

fn format_utc(t: OffsetDateTime) -> String {
    // Rfc3339 formats UTC as "Z"; it cannot fail for years 0..=9999.
    t.format(&Rfc3339).unwrap_or_default()
}

fn parse_utc(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

/// 16 hex digits from SHA-256 over submitter, domain and day: the same on
/// every node, different for every report.
fn unique_id(day: Date, domain: &str, submitter: &str) -> String {
    let input = format!("{submitter}\n{domain}\n{day}");
    let digest = crate::crypto::sha256(input.as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result_type::{PolicyType, ResultType};
    use crate::tlsrpt::collector::{FailureKey, TupleKey};
    use time::macros::date;

    fn meta() -> ReportMeta {
        ReportMeta {
            organization_name: "Example Sender".into(),
            contact_info: "tlsrpt@sender.example".into(),
            submitter: "sender.example".into(),
        }
    }

    #[test]
    fn omits_absent_fields_and_keeps_policy_domain() {
        let mut agg = Aggregate::default();
        let policy = PolicyKey {
            policy_type: PolicyType::NoPolicyFound,
            domain: "example.net".into(),
            strings: vec![],
            mx_hosts: vec![],
        };
        let day = date!(2026 - 11 - 24);
        agg.add(
            TupleKey {
                day,
                policy: policy.clone(),
                failure: None,
            },
            3,
        );
        agg.add(
            TupleKey {
                day,
                policy,
                failure: Some(FailureKey {
                    result_type: ResultType::StarttlsNotSupported,
                    sending_mta_ip: None,
                    receiving_ip: None,
                    receiving_mx_hostname: "mx.example.net".into(),
                    receiving_mx_helo: None,
                    failure_reason_code: None,
                    additional_information: None,
                }),
            },
            2,
        );
        let r = TlsReport::build(&agg, day, "example.net", &meta()).unwrap();
        let json = String::from_utf8(r.to_json().unwrap()).unwrap();
        assert!(!json.contains("null"), "{json}");
        assert!(json.contains(r#""policy-domain":"example.net""#));
        assert!(json.contains(r#""start-datetime":"2026-11-24T00:00:00Z""#));
        assert!(json.contains(r#""end-datetime":"2026-11-24T23:59:59Z""#));
        assert!(!json.contains("policy-string"));
        assert_eq!(r.policies[0].summary.total_successful_session_count, 3);
        assert_eq!(r.policies[0].summary.total_failure_session_count, 2);
        let again = TlsReport::build(&agg, day, "example.net", &meta()).unwrap();
        assert_eq!(r.report_id, again.report_id);
        let other_day = {
            let mut a = Aggregate::default();
            for (k, v) in agg.iter() {
                a.add(
                    TupleKey {
                        day: date!(2026 - 11 - 25),
                        ..k.clone()
                    },
                    v,
                );
            }
            TlsReport::build(&a, date!(2026 - 11 - 25), "example.net", &meta()).unwrap()
        };
        assert_ne!(r.report_id, other_day.report_id);
        // RFC 8460 §5.3: sender!policy-domain!begin!end!unique-id.json.gz
        let name = r.filename("sender.example");
        let parts: Vec<&str> = name.split('!').collect();
        assert_eq!(
            parts[..4],
            ["sender.example", "example.net", "1795478400", "1795564799"]
        );
        assert!(parts[4].ends_with(".json.gz") && parts[4].len() == 16 + 8);
        assert!(TlsReport::build(&agg, day, "other.example", &meta()).is_none());
    }

    #[test]
    fn a_failure_without_an_mx_has_no_receiving_mx_hostname() {
        let mut agg = Aggregate::default();
        let day = date!(2026 - 11 - 24);
        agg.add(
            TupleKey {
                day,
                policy: PolicyKey {
                    policy_type: PolicyType::Sts,
                    domain: "example.net".into(),
                    strings: vec![],
                    mx_hosts: vec![],
                },
                failure: Some(FailureKey {
                    result_type: ResultType::StsPolicyFetchError,
                    sending_mta_ip: None,
                    receiving_ip: None,
                    receiving_mx_hostname: String::new(),
                    receiving_mx_helo: None,
                    failure_reason_code: None,
                    additional_information: None,
                }),
            },
            1,
        );
        let r = TlsReport::build(&agg, day, "example.net", &meta()).unwrap();
        let json = String::from_utf8(r.to_json().unwrap()).unwrap();
        assert!(!json.contains("receiving-mx-hostname"), "{json}");
        assert!(
            json.contains(r#""result-type":"sts-policy-fetch-error""#),
            "{json}"
        );
    }
}
