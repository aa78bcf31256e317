//! Writing the records and the policy file.

use std::time::{SystemTime, UNIX_EPOCH};

use mailtls_core::DnsName;

use crate::mta_sts::{MtaStsPolicy, PolicyId, StsRecord, policy_url};

/// Why a publication cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// A TLS-RPT `rua` address is not a `mailto:` or `https:` URI, or
    /// holds a character that would break the record (`,`, `;`, space).
    #[error("rua {0:?} must be a mailto: or https: URI without ',', ';' or spaces")]
    BadRua(String),
    /// No `rua` was given.
    #[error("a TLS-RPT record needs at least one rua address")]
    NoRua,
}

/// An id from a time: `YYYYMMDDhhmmssZ` in UTC, the style of the
/// RFC 8461 §3.1 example (`20160831085700Z`).
pub fn id_from_time(at: SystemTime) -> PolicyId {
    let secs = at
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = i64::try_from(secs / 86400).unwrap_or(0);
    let rem = secs % 86400;
    let (y, m, d) = civil_from_days(days);
    let text = format!(
        "{y:04}{m:02}{d:02}{:02}{:02}{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    );
    // Always 15 alphanumerics for years 0..=9999.
    PolicyId::parse(&text).unwrap_or_else(|| fallback_id(secs))
}

fn fallback_id(secs: u64) -> PolicyId {
    // u64 decimal is at most 20 digits: always a valid id.
    PolicyId::parse(&secs.to_string()).unwrap_or_else(|| fallback_id(0))
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's
/// algorithm), so no calendar crate is needed for one format.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// An id from the policy text: the first 32 hex digits of its SHA-256, so
/// the id changes exactly when the policy does.
pub fn id_from_content(policy: &MtaStsPolicy) -> PolicyId {
    let digest = crate::crypto::sha256(policy.raw().as_bytes());
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    PolicyId::parse(&hex).unwrap_or_else(|| fallback_id(0))
}

/// Everything a domain publishes for MTA-STS and TLS-RPT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    /// The domain.
    pub domain: DnsName,
    /// The policy served over HTTPS.
    pub policy: MtaStsPolicy,
    /// The id in the `_mta-sts` record.
    pub id: PolicyId,
    /// TLS-RPT report addresses, if reports are wanted.
    pub rua: Vec<String>,
}

impl Publication {
    /// A publication whose id is the policy's content hash.
    pub fn new(domain: DnsName, policy: MtaStsPolicy) -> Self {
        let id = id_from_content(&policy);
        Publication {
            domain,
            policy,
            id,
            rua: Vec::new(),
        }
    }

    /// Adds TLS-RPT report addresses (`mailto:` or `https:`).
    pub fn with_rua(mut self, rua: Vec<String>) -> Result<Self, PublishError> {
        if rua.is_empty() {
            return Err(PublishError::NoRua);
        }
        for r in &rua {
            let lower = r.to_ascii_lowercase();
            let scheme_ok = lower.starts_with("mailto:") || lower.starts_with("https://");
            let chars_ok = !r.contains([',', ';', ' ', '\t', '"']) && r.is_ascii();
            if !scheme_ok || !chars_ok || r.len() <= "mailto:".len() {
                return Err(PublishError::BadRua(r.clone()));
            }
        }
        self.rua = rua;
        Ok(self)
    }

    /// The owner name of the MTA-STS record.
    pub fn sts_record_name(&self) -> String {
        format!("_mta-sts.{}", self.domain)
    }

    /// The MTA-STS TXT record's text (RFC 8461 §3.1).
    pub fn sts_record(&self) -> String {
        StsRecord {
            id: self.id.clone(),
            extensions: Vec::new(),
        }
        .to_text()
    }

    /// The owner name of the TLS-RPT record.
    pub fn tlsrpt_record_name(&self) -> String {
        format!("_smtp._tls.{}", self.domain)
    }

    /// The TLS-RPT TXT record's text (RFC 8460 §3), `None` without `rua`.
    pub fn tlsrpt_record(&self) -> Option<String> {
        (!self.rua.is_empty()).then(|| format!("v=TLSRPTv1; rua={}", self.rua.join(",")))
    }

    /// Where the policy file must be served.
    pub fn policy_url(&self) -> String {
        policy_url(&self.domain, 443)
    }

    /// The policy file body (serve as `text/plain`).
    pub fn policy_file(&self) -> &str {
        self.policy.raw()
    }

    /// The records as zone-file lines (the host `mta-sts.DOMAIN` needs its
    /// own A/AAAA records, which only the operator knows).
    pub fn zone_lines(&self, ttl: u32) -> Vec<String> {
        let mut lines = vec![format!(
            "{}. {ttl} IN TXT \"{}\"",
            self.sts_record_name(),
            self.sts_record()
        )];
        if let Some(t) = self.tlsrpt_record() {
            lines.push(format!(
                "{}. {ttl} IN TXT \"{t}\"",
                self.tlsrpt_record_name()
            ));
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mta_sts::{PolicyMode, Profile, parse_policy, parse_record};
    use mailtls_core::NamePattern;
    use std::time::Duration;

    fn policy(mode: PolicyMode) -> MtaStsPolicy {
        MtaStsPolicy::new(
            mode,
            vec![NamePattern::parse("mx.example.com").unwrap()],
            604_800,
        )
    }

    #[test]
    fn time_ids_look_like_the_rfc_8461_example() {
        // 2016-08-31 08:57:00 UTC, the RFC 8461 §3.1 example id.
        let at = UNIX_EPOCH + Duration::from_secs(1_472_633_820);
        assert_eq!(id_from_time(at).as_str(), "20160831085700Z");
        assert_eq!(id_from_time(UNIX_EPOCH).as_str(), "19700101000000Z");
        // Leap day.
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(id_from_time(leap).as_str(), "20000229000000Z");
    }

    #[test]
    fn content_ids_change_with_the_policy() {
        let a = id_from_content(&policy(PolicyMode::Testing));
        let b = id_from_content(&policy(PolicyMode::Enforce));
        assert_eq!(a.as_str().len(), 32);
        assert_ne!(a, b);
        assert_eq!(a, id_from_content(&policy(PolicyMode::Testing)));
    }

    #[test]
    fn published_texts_parse_back() {
        let p = Publication::new(
            DnsName::parse("example.com").unwrap(),
            policy(PolicyMode::Enforce),
        )
        .with_rua(vec![
            "mailto:tlsrpt@example.com".into(),
            "https://reports.example.com/tlsrpt".into(),
        ])
        .unwrap();
        assert_eq!(parse_record(p.sts_record().as_bytes()).unwrap().id, p.id);
        let back = parse_policy(p.policy_file().as_bytes(), Profile::Strict).unwrap();
        assert_eq!(back.policy, p.policy);
        assert_eq!(
            p.tlsrpt_record().unwrap(),
            "v=TLSRPTv1; rua=mailto:tlsrpt@example.com,https://reports.example.com/tlsrpt"
        );
        assert_eq!(p.zone_lines(3600).len(), 2);
        assert!(
            p.zone_lines(3600)[0].starts_with("_mta-sts.example.com. 3600 IN TXT \"v=STSv1; id=")
        );
        assert_eq!(
            p.policy_url(),
            "https://mta-sts.example.com/.well-known/mta-sts.txt"
        );
    }

    #[test]
    fn bad_rua_is_refused() {
        let p = Publication::new(
            DnsName::parse("example.com").unwrap(),
            policy(PolicyMode::Testing),
        );
        assert_eq!(p.clone().with_rua(vec![]), Err(PublishError::NoRua));
        for bad in [
            "http://x.example/",
            "mailto:a@b,c@d",
            "mailto:",
            "ftp://x",
            "mailto:a b@c",
        ] {
            assert!(p.clone().with_rua(vec![bad.into()]).is_err(), "{bad}");
        }
    }
}
