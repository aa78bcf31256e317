//! Reports other senders send to us (RFC 8460 §4, §5): JSON, gzip, zip or a
//! whole mail carrying one of those, read leniently. JSON and gzip are
//! always read; zip archives and mails need feature `tlsrpt-received`.
//!
//! Quirks seen in the wild and accepted here: no `sending-mta-ip`
//! (Microsoft), date-times without a zone (Microsoft; read as UTC), no
//! `policy-domain` for `no-policy-found` (Postfix), `mx-host` as a single
//! string instead of an array (RFC 8460 erratum 6241), a UTF-8 BOM, and
//! result types this crate does not know (kept as text).

use std::collections::BTreeMap;
use std::io::Read;
use std::net::IpAddr;

#[cfg(feature = "tlsrpt-received")]
use mail_parser::MimeHeaders;
use serde::{Deserialize, Deserializer};
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime, PrimitiveDateTime};

use super::TlsRptError;
use crate::result_type::{PolicyType, ResultType};

/// Decompressed reports larger than this are refused (a gzip bomb guard).
const MAX_REPORT_BYTES: u64 = 32 * 1024 * 1024;
/// Containers nested deeper than this (zip in gzip in mail ...) are refused.
const MAX_DEPTH: u8 = 4;

/// One received report, normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedReport {
    /// `organization-name`, if given.
    pub organization_name: Option<String>,
    /// `contact-info`, if given.
    pub contact_info: Option<String>,
    /// `report-id`, if given.
    pub report_id: Option<String>,
    /// Start of the covered range (UTC).
    pub start: OffsetDateTime,
    /// End of the covered range (UTC).
    pub end: OffsetDateTime,
    /// One entry per policy.
    pub policies: Vec<ReceivedPolicy>,
}

/// One `policies` element of a received report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedPolicy {
    /// The policy type.
    pub policy_type: PolicyType,
    /// The policy domain; absent in some `no-policy-found` reports.
    pub policy_domain: Option<String>,
    /// `policy-string`.
    pub policy_strings: Vec<String>,
    /// `mx-host`, whether sent as an array or a string.
    pub mx_hosts: Vec<String>,
    /// `total-successful-session-count`.
    pub successful: u64,
    /// `total-failure-session-count`.
    pub failed: u64,
    /// `failure-details`.
    pub failures: Vec<ReceivedFailure>,
}

/// One `failure-details` element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedFailure {
    /// `result-type` as sent.
    pub result_type: String,
    /// `sending-mta-ip`, when sent and valid.
    pub sending_mta_ip: Option<IpAddr>,
    /// `receiving-ip`, when sent and valid.
    pub receiving_ip: Option<IpAddr>,
    /// `receiving-mx-hostname`.
    pub receiving_mx_hostname: Option<String>,
    /// `receiving-mx-helo`.
    pub receiving_mx_helo: Option<String>,
    /// `failure-reason-code`.
    pub failure_reason_code: Option<String>,
    /// `additional-information`.
    pub additional_information: Option<String>,
    /// `failed-session-count`.
    pub count: u64,
}

impl ReceivedFailure {
    /// The result type, when it is one RFC 8460 §4.3 defines.
    pub fn known_result_type(&self) -> Option<ResultType> {
        self.result_type.parse().ok()
    }
}

/// Counts over many received reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceivedSummary {
    /// (day of the range start, policy domain) -> (successful, failed).
    pub per_day: BTreeMap<(Date, Option<String>), (u64, u64)>,
    /// (day, policy domain, result type) -> failed sessions.
    pub per_failure: BTreeMap<(Date, Option<String>, String), u64>,
}

impl ReceivedSummary {
    /// Adds one report.
    pub fn add(&mut self, report: &ReceivedReport) {
        let day = report.start.date();
        for p in &report.policies {
            let e = self
                .per_day
                .entry((day, p.policy_domain.clone()))
                .or_default();
            e.0 = e.0.saturating_add(p.successful);
            e.1 = e.1.saturating_add(p.failed);
            for f in &p.failures {
                let c = self
                    .per_failure
                    .entry((day, p.policy_domain.clone(), f.result_type.clone()))
                    .or_default();
                *c = c.saturating_add(f.count);
            }
        }
    }

    /// Summarises a set of reports.
    pub fn of(reports: &[ReceivedReport]) -> Self {
        let mut s = Self::default();
        for r in reports {
            s.add(r);
        }
        s
    }
}

/// Parses whatever arrived: report JSON, gzip, zip, or a mail with such a
/// part. Returns every report found (a mail or zip may hold several).
pub fn parse_received(bytes: &[u8]) -> Result<Vec<ReceivedReport>, TlsRptError> {
    let mut out = Vec::new();
    parse_into(bytes, 0, &mut out)?;
    if out.is_empty() {
        return Err(TlsRptError::Report(
            "no TLS report found in the input".into(),
        ));
    }
    Ok(out)
}

fn parse_into(bytes: &[u8], depth: u8, out: &mut Vec<ReceivedReport>) -> Result<(), TlsRptError> {
    if depth > MAX_DEPTH {
        return Err(TlsRptError::Report("containers nested too deeply".into()));
    }
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut json = Vec::new();
        flate2::read::MultiGzDecoder::new(bytes)
            .take(MAX_REPORT_BYTES + 1)
            .read_to_end(&mut json)
            .map_err(|e| TlsRptError::Report(format!("gzip: {e}")))?;
        check_size(json.len())?;
        return parse_into(&json, depth + 1, out);
    }
    #[cfg(feature = "tlsrpt-received")]
    if bytes.starts_with(b"PK\x03\x04") {
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
            .map_err(|e| TlsRptError::Report(format!("zip: {e}")))?;
        for i in 0..archive.len() {
            let mut file = archive
                .by_index(i)
                .map_err(|e| TlsRptError::Report(format!("zip entry {i}: {e}")))?;
            if file.is_dir() {
                continue;
            }
            let mut data = Vec::new();
            (&mut file)
                .take(MAX_REPORT_BYTES + 1)
                .read_to_end(&mut data)
                .map_err(|e| TlsRptError::Report(format!("zip entry {i}: {e}")))?;
            check_size(data.len())?;
            parse_into(&data, depth + 1, out)?;
        }
        return Ok(());
    }
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
        out.push(parse_json(bytes)?);
        return Ok(());
    }
    #[cfg(feature = "tlsrpt-received")]
    return parse_mail(bytes, depth, out);
    #[cfg(not(feature = "tlsrpt-received"))]
    Err(TlsRptError::Report(
        "input is neither JSON nor gzip (zip archives and mails need feature `tlsrpt-received`)"
            .into(),
    ))
}

fn check_size(len: usize) -> Result<(), TlsRptError> {
    if len as u64 > MAX_REPORT_BYTES {
        return Err(TlsRptError::Report(format!(
            "decompressed report exceeds {MAX_REPORT_BYTES} bytes"
        )));
    }
    Ok(())
}

#[cfg(feature = "tlsrpt-received")]
fn parse_mail(bytes: &[u8], depth: u8, out: &mut Vec<ReceivedReport>) -> Result<(), TlsRptError> {
    let msg = mail_parser::MessageParser::default()
        .parse(bytes)
        .ok_or_else(|| TlsRptError::Report("input is neither JSON, gzip, zip nor a mail".into()))?;
    let before = out.len();
    for part in msg.parts.iter() {
        let ct = part
            .content_type()
            .map(|ct| {
                format!(
                    "{}/{}",
                    ct.c_type,
                    ct.c_subtype.as_deref().unwrap_or_default()
                )
                .to_ascii_lowercase()
            })
            .unwrap_or_default();
        let name = part
            .attachment_name()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let is_report = matches!(
            ct.as_str(),
            "application/tlsrpt+gzip"
                | "application/tlsrpt+json"
                | "application/gzip"
                | "application/x-gzip"
                | "application/zip"
                | "application/x-zip-compressed"
                | "application/json"
        ) || name.ends_with(".json")
            || name.ends_with(".json.gz")
            || name.ends_with(".zip");
        if !is_report {
            continue;
        }
        let body = part.contents();
        parse_into(body, depth + 1, out)?;
    }
    if out.len() == before {
        return Err(TlsRptError::Report("mail has no TLS report part".into()));
    }
    Ok(())
}

fn parse_json(bytes: &[u8]) -> Result<ReceivedReport, TlsRptError> {
    let raw: RawReport = serde_json::from_slice(bytes)?;
    let start = parse_time(&raw.date_range.start_datetime)?;
    let end = parse_time(&raw.date_range.end_datetime)?;
    let mut policies = Vec::with_capacity(raw.policies.len());
    for p in raw.policies {
        let policy_type: PolicyType = p
            .policy
            .policy_type
            .parse()
            .map_err(|e| TlsRptError::Report(format!("policies: {e}")))?;
        policies.push(ReceivedPolicy {
            policy_type,
            policy_domain: p.policy.policy_domain.filter(|d| !d.is_empty()),
            policy_strings: p.policy.policy_string.0,
            mx_hosts: p.policy.mx_host.0,
            successful: p.summary.total_successful_session_count,
            failed: p.summary.total_failure_session_count,
            failures: p
                .failure_details
                .into_iter()
                .map(|f| ReceivedFailure {
                    result_type: f.result_type,
                    sending_mta_ip: f.sending_mta_ip.and_then(|s| s.parse().ok()),
                    receiving_ip: f.receiving_ip.and_then(|s| s.parse().ok()),
                    receiving_mx_hostname: f.receiving_mx_hostname,
                    receiving_mx_helo: f.receiving_mx_helo,
                    failure_reason_code: f.failure_reason_code,
                    additional_information: f.additional_information,
                    count: f.failed_session_count,
                })
                .collect(),
        });
    }
    Ok(ReceivedReport {
        organization_name: raw.organization_name,
        contact_info: raw.contact_info,
        report_id: raw.report_id,
        start,
        end,
        policies,
    })
}

/// RFC 3339; else a date-time without zone (read as UTC); else a bare date.
fn parse_time(s: &str) -> Result<OffsetDateTime, TlsRptError> {
    let s = s.trim();
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(t.to_offset(time::UtcOffset::UTC));
    }
    let no_zone = time::macros::format_description!(
        version = 2,
        "[year]-[month]-[day][first [T][ ]][hour]:[minute]:[second][optional [.[subsecond]]]"
    );
    if let Ok(t) = PrimitiveDateTime::parse(s, &no_zone) {
        return Ok(t.assume_utc());
    }
    let date_only = time::macros::format_description!("[year]-[month]-[day]");
    if let Ok(d) = Date::parse(s, &date_only) {
        return Ok(d.midnight().assume_utc());
    }
    Err(TlsRptError::Report(format!(
        "date-range: unreadable date-time {s:?}"
    )))
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RawReport {
    #[serde(default)]
    organization_name: Option<String>,
    date_range: RawRange,
    #[serde(default)]
    contact_info: Option<String>,
    #[serde(default)]
    report_id: Option<String>,
    policies: Vec<RawPolicy>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RawRange {
    start_datetime: String,
    end_datetime: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RawPolicy {
    policy: RawPolicyDesc,
    summary: RawSummary,
    #[serde(default, deserialize_with = "null_as_default")]
    failure_details: Vec<RawFailure>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RawPolicyDesc {
    policy_type: String,
    #[serde(default)]
    policy_string: StringOrVec,
    #[serde(default)]
    policy_domain: Option<String>,
    #[serde(default)]
    mx_host: StringOrVec,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RawSummary {
    total_successful_session_count: u64,
    total_failure_session_count: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RawFailure {
    result_type: String,
    #[serde(default)]
    sending_mta_ip: Option<String>,
    #[serde(default)]
    receiving_mx_hostname: Option<String>,
    #[serde(default)]
    receiving_mx_helo: Option<String>,
    #[serde(default)]
    receiving_ip: Option<String>,
    failed_session_count: u64,
    #[serde(default, alias = "additional-info-uri")]
    additional_information: Option<String>,
    #[serde(default)]
    failure_reason_code: Option<String>,
}

/// A list that some senders write as a single string or `null`.
#[derive(Default)]
struct StringOrVec(Vec<String>);

impl<'de> Deserialize<'de> for StringOrVec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            One(String),
            Many(Vec<String>),
        }
        Ok(match Option::<Either>::deserialize(d)? {
            None => Self(Vec::new()),
            Some(Either::One(s)) => Self(vec![s]),
            Some(Either::Many(v)) => Self(v),
        })
    }
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8460 §4.5's example report, with its field values.
    const RFC_EXAMPLE: &str = r#"{
     "organization-name": "Company-X",
     "date-range": {
       "start-datetime": "2016-04-01T00:00:00Z",
       "end-datetime": "2016-04-01T23:59:59Z"
     },
     "contact-info": "sts-reporting@company-x.example",
     "report-id": "5065427c-23d3-47ca-b6e0-946ea0e8c795",
     "policies": [{
       "policy": {
         "policy-type": "sts",
         "policy-string": ["version: STSv1","mode: testing",
               "mx: *.mail.company-y.example","max_age: 86400"],
         "policy-domain": "company-y.example",
         "mx-host": ["*.mail.company-y.example"]
       },
       "summary": {
         "total-successful-session-count": 5326,
         "total-failure-session-count": 303
       },
       "failure-details": [{
         "result-type": "certificate-expired",
         "sending-mta-ip": "2001:db8:abcd:0012::1",
         "receiving-mx-hostname": "mx1.mail.company-y.example",
         "failed-session-count": 100
       }, {
         "result-type": "starttls-not-supported",
         "sending-mta-ip": "2001:db8:abcd:0013::1",
         "receiving-mx-hostname": "mx2.mail.company-y.example",
         "receiving-ip": "203.0.113.56",
         "failed-session-count": 200,
         "additional-information": "https://reports.company-x.example/report_info?id=5065427c-23d3#StarttlsNotSupported"
       }, {
         "result-type": "validation-failure",
         "sending-mta-ip": "198.51.100.62",
         "receiving-ip": "203.0.113.58",
         "receiving-mx-hostname": "mx-backup.mail.company-y.example",
         "failed-session-count": 3,
         "failure-reason-code": "X509_V_ERR_PROXY_PATH_LENGTH_EXCEEDED"
       }]
     }]
   }"#;

    #[test]
    fn rfc_8460_section_4_5_example() {
        let r = parse_received(RFC_EXAMPLE.as_bytes()).unwrap();
        assert_eq!(r.len(), 1);
        let p = &r[0].policies[0];
        assert_eq!((p.successful, p.failed), (5326, 303));
        assert_eq!(p.failures.iter().map(|f| f.count).sum::<u64>(), 303);
        assert_eq!(
            p.failures[0].known_result_type(),
            Some(ResultType::CertificateExpired)
        );
        let s = ReceivedSummary::of(&r);
        let day = time::macros::date!(2016 - 04 - 01);
        assert_eq!(
            s.per_day[&(day, Some("company-y.example".into()))],
            (5326, 303)
        );
        assert_eq!(
            s.per_failure[&(
                day,
                Some("company-y.example".into()),
                "starttls-not-supported".into()
            )],
            200
        );
    }

    #[test]
    fn tolerates_known_quirks() {
        // Microsoft: no sending-mta-ip, no zone; Postfix: no policy-domain for
        // no-policy-found; erratum 6241: mx-host as a string.
        let json = r#"{"organization-name":"Microsoft Corporation",
          "date-range":{"start-datetime":"2026-11-23T00:00:00","end-datetime":"2026-11-23T23:59:59"},
          "contact-info":"tlsrpt@microsoft.com","report-id":"133",
          "policies":[
            {"policy":{"policy-type":"sts","policy-string":["version: STSv1"],"policy-domain":"example.com","mx-host":"mx.example.com"},
             "summary":{"total-successful-session-count":7,"total-failure-session-count":1},
             "failure-details":[{"result-type":"certificate-host-mismatch","receiving-mx-hostname":"mx.example.com","failed-session-count":1}]},
            {"policy":{"policy-type":"no-policy-found"},
             "summary":{"total-successful-session-count":2,"total-failure-session-count":0},
             "failure-details":null}]}"#;
        let r = parse_received(json.as_bytes()).unwrap();
        let p = &r[0].policies;
        assert_eq!(p[0].mx_hosts, ["mx.example.com"]);
        assert_eq!(p[0].failures[0].sending_mta_ip, None);
        assert_eq!(p[1].policy_domain, None);
        assert_eq!(r[0].start, time::macros::datetime!(2026-11-23 00:00:00 UTC));
        let s = ReceivedSummary::of(&r);
        assert_eq!(
            s.per_day[&(time::macros::date!(2026 - 11 - 23), None)],
            (2, 0)
        );
    }

    #[test]
    fn rejects_garbage_with_a_reason() {
        assert!(parse_received(b"").is_err());
        assert!(parse_received(b"{\"policies\":[]}").is_err());
        assert!(parse_received(&[0x1f, 0x8b, 0, 1, 2]).is_err());
        assert!(parse_received(b"PK\x03\x04garbage").is_err());
        let bad_date = RFC_EXAMPLE.replace("2016-04-01T00:00:00Z", "yesterday");
        assert!(parse_received(bad_date.as_bytes()).is_err());
    }
}
