//! The `_smtp._tls.DOMAIN` TXT record (RFC 8460 §3).
//!
//! Parsing is strict where the RFC is (version first, `rua` required, exactly
//! one TLSRPTv1 record) and lenient where it asks to be (unknown extension
//! fields and unknown URI schemes are skipped, each with a diagnostic).

use std::fmt;

/// Where a report should go (RFC 8460 §3, `rua`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ReportUri {
    /// `mailto:` — the address to send the report mail to (percent-decoded,
    /// without any `?header` part).
    Mailto(String),
    /// `https:` — the URL to POST the gzipped report to.
    Https(String),
}

impl fmt::Display for ReportUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Mailto(addr) => write!(f, "mailto:{addr}"),
            Self::Https(url) => f.write_str(url),
        }
    }
}

/// A parsed TLSRPTv1 record: the report destinations and what was skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsRptRecord {
    rua: Vec<ReportUri>,
    diagnostics: Vec<String>,
}

/// Why a `_smtp._tls` TXT record set gives no reporting policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// No TXT string starts with `v=TLSRPTv1`.
    #[error("no v=TLSRPTv1 record")]
    NoRecord,
    /// More than one record starts with `v=TLSRPTv1` (RFC 8460 §3: then none applies).
    #[error("{0} v=TLSRPTv1 records; exactly one is allowed")]
    MultipleRecords(usize),
    /// The record does not start with the version field.
    #[error("record does not start with v=TLSRPTv1")]
    BadVersion,
    /// A field is not `name=value`.
    #[error("field {index} ({field:?}) is not name=value")]
    BadField {
        /// 0-based field position, counting the version as 0.
        index: usize,
        /// The text of the field.
        field: String,
    },
    /// `rua` appears more than once.
    #[error("rua appears more than once")]
    DuplicateRua,
    /// `rua` is missing.
    #[error("rua field is missing")]
    MissingRua,
    /// `rua` is present but none of its URIs is usable (mailto or https).
    #[error("rua has no usable mailto: or https: URI")]
    NoUsableUri,
}

const VERSION: &str = "v=TLSRPTv1";

impl TlsRptRecord {
    /// Picks and parses the TLSRPTv1 record from a TXT RRset: each item is one
    /// TXT record given as its character-strings, which are joined without
    /// separator (RFC 8460 §3). Records that do not start with `v=TLSRPTv1` are
    /// ignored; more than one that does is an error.
    pub fn from_txt_records<R, S>(records: impl IntoIterator<Item = R>) -> Result<Self, RecordError>
    where
        R: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut found: Vec<String> = Vec::new();
        for record in records {
            let joined: String = record.into_iter().map(|s| s.as_ref().to_owned()).collect();
            if is_tlsrpt_v1(&joined) {
                found.push(joined);
            }
        }
        match found.as_slice() {
            [] => Err(RecordError::NoRecord),
            [one] => Self::parse(one),
            many => Err(RecordError::MultipleRecords(many.len())),
        }
    }

    /// Parses one record's text (strings already joined).
    pub fn parse(text: &str) -> Result<Self, RecordError> {
        if !is_tlsrpt_v1(text) {
            return Err(RecordError::BadVersion);
        }
        let mut rua: Option<Vec<ReportUri>> = None;
        let mut diagnostics = Vec::new();
        // field-delim = *WSP ";" *WSP, and a trailing delimiter is allowed.
        for (index, field) in text.split(';').enumerate().skip(1) {
            let field = field.trim_matches(is_wsp);
            if field.is_empty() {
                continue;
            }
            let Some((name, value)) = field.split_once('=') else {
                return Err(RecordError::BadField {
                    index,
                    field: field.to_owned(),
                });
            };
            let name = name.trim_matches(is_wsp);
            if name.is_empty() {
                return Err(RecordError::BadField {
                    index,
                    field: field.to_owned(),
                });
            }
            if name == "rua" {
                if rua.is_some() {
                    return Err(RecordError::DuplicateRua);
                }
                rua = Some(parse_rua(value, &mut diagnostics));
            } else {
                diagnostics.push(format!("ignored unknown field {name:?}"));
            }
        }
        let rua = rua.ok_or(RecordError::MissingRua)?;
        if rua.is_empty() {
            return Err(RecordError::NoUsableUri);
        }
        Ok(Self { rua, diagnostics })
    }

    /// The usable report destinations, in record order.
    pub fn rua(&self) -> &[ReportUri] {
        &self.rua
    }

    /// What was skipped while parsing (unknown fields, unknown URI schemes,
    /// malformed URIs), for logs.
    pub fn diagnostics(&self) -> &[String] {
        &self.diagnostics
    }
}

fn is_wsp(c: char) -> bool {
    c == ' ' || c == '\t'
}

fn is_tlsrpt_v1(text: &str) -> bool {
    // The version must be followed by a field delimiter (or end the record):
    // "v=TLSRPTv10" is a different version.
    text.strip_prefix(VERSION).is_some_and(|rest| {
        rest.trim_start_matches(is_wsp).is_empty()
            || rest.trim_start_matches(is_wsp).starts_with(';')
    })
}

fn parse_rua(value: &str, diagnostics: &mut Vec<String>) -> Vec<ReportUri> {
    let mut out = Vec::new();
    for uri in value.split(',') {
        let uri = uri.trim_matches(is_wsp);
        let Some((scheme, rest)) = uri.split_once(':') else {
            diagnostics.push(format!("ignored rua entry without a scheme: {uri:?}"));
            continue;
        };
        if scheme.eq_ignore_ascii_case("mailto") {
            let addr = rest.split('?').next().unwrap_or_default();
            match percent_decode(addr) {
                Some(addr) if is_plausible_address(&addr) => out.push(ReportUri::Mailto(addr)),
                _ => diagnostics.push(format!("ignored malformed mailto URI {uri:?}")),
            }
        } else if scheme.eq_ignore_ascii_case("https") {
            if rest.starts_with("//") && rest.len() > 2 && !uri.contains(char::is_whitespace) {
                out.push(ReportUri::Https(format!("https:{rest}")));
            } else {
                diagnostics.push(format!("ignored malformed https URI {uri:?}"));
            }
        } else {
            diagnostics.push(format!(
                "ignored rua URI with unsupported scheme {scheme:?}"
            ));
        }
    }
    out
}

fn is_plausible_address(addr: &str) -> bool {
    match addr.rsplit_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !addr.contains(|c: char| c.is_whitespace() || c == ',' || c == '<' || c == '>')
        }
        None => false,
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_8460_section_3_1_mail_example() {
        let r = TlsRptRecord::parse("v=TLSRPTv1;rua=mailto:reports@example.com").unwrap();
        assert_eq!(r.rua(), &[ReportUri::Mailto("reports@example.com".into())]);
        assert!(r.diagnostics().is_empty());
    }

    #[test]
    fn rfc_8460_section_3_1_https_example_split_over_strings() {
        // RFC 8460 §3.1 shows the record split over two quoted strings.
        let r = TlsRptRecord::from_txt_records([[
            "v=TLSRPTv1; ",
            "rua=https://reporting.example.com/v1/tlsrpt",
        ]])
        .unwrap();
        assert_eq!(
            r.rua(),
            &[ReportUri::Https(
                "https://reporting.example.com/v1/tlsrpt".into()
            )]
        );
    }

    #[test]
    fn both_schemes_and_unknown_ones_with_diagnostic() {
        let r = TlsRptRecord::parse(
            "v=TLSRPTv1; rua=mailto:tls%2Brpt@example.com?subject=x, ftp://x.example/r ,https://r.example/p; ext=1;",
        )
        .unwrap();
        assert_eq!(
            r.rua(),
            &[
                ReportUri::Mailto("tls+rpt@example.com".into()),
                ReportUri::Https("https://r.example/p".into())
            ]
        );
        assert_eq!(r.diagnostics().len(), 2, "{:?}", r.diagnostics());
        assert!(r.diagnostics()[0].contains("ftp"));
    }

    #[test]
    fn exactly_one_record_rfc_8460_section_3() {
        let two = [
            vec!["v=TLSRPTv1; rua=mailto:a@example.com"],
            vec!["v=TLSRPTv1; rua=mailto:b@example.com"],
        ];
        assert_eq!(
            TlsRptRecord::from_txt_records(two),
            Err(RecordError::MultipleRecords(2))
        );
        let none = [vec!["v=spf1 -all"]];
        assert_eq!(
            TlsRptRecord::from_txt_records(none),
            Err(RecordError::NoRecord)
        );
        let other_and_one = [
            vec!["v=spf1 -all"],
            vec!["v=TLSRPTv1; rua=mailto:b@example.com"],
        ];
        assert!(TlsRptRecord::from_txt_records(other_and_one).is_ok());
    }

    #[test]
    fn malformed_records() {
        assert_eq!(
            TlsRptRecord::parse("rua=mailto:a@b; v=TLSRPTv1"),
            Err(RecordError::BadVersion)
        );
        assert_eq!(
            TlsRptRecord::parse("v=TLSRPTv10; rua=mailto:a@b"),
            Err(RecordError::BadVersion)
        );
        assert_eq!(
            TlsRptRecord::parse("v=TLSRPTv1"),
            Err(RecordError::MissingRua)
        );
        assert_eq!(
            TlsRptRecord::parse("v=TLSRPTv1; rua=ftp://x"),
            Err(RecordError::NoUsableUri)
        );
        assert_eq!(
            TlsRptRecord::parse("v=TLSRPTv1; rua=mailto:a@b; rua=mailto:c@d"),
            Err(RecordError::DuplicateRua)
        );
        assert!(matches!(
            TlsRptRecord::parse("v=TLSRPTv1; rua"),
            Err(RecordError::BadField { index: 1, .. })
        ));
        assert_eq!(
            TlsRptRecord::parse("v=TLSRPTv1; rua=mailto:nobody"),
            Err(RecordError::NoUsableUri)
        );
    }
}
