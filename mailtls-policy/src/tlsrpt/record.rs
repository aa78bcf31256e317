//! The `_smtp._tls.DOMAIN` TXT record (RFC 8460 §3).
//!
//! Selection and grammar are read exactly as RFC 8460 §3 gives them: a
//! record is a TLS-RPT record only when it begins with `v=TLSRPTv1` and the
//! field delimiter; more than one such record, or one that does not follow
//! the grammar, means the domain gets no reports (RFC 8460 §3: senders MUST
//! NOT send reports then). `rua` may appear more than once: all its URIs are
//! used. What the grammar allows but this crate cannot use (an extension
//! field, a URI scheme other than `mailto:` and `https:`, a `mailto:`
//! without an address) is skipped with a diagnostic; a record whose
//! remaining destinations are empty sends nothing.

use std::fmt;

use crate::dns::TxtRecord;
use crate::mta_sts::valid_ext_name;

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

/// Why a `_smtp._tls` TXT record set gives no reporting policy. Every
/// variant means the same for a sender: no report is sent to the domain
/// (RFC 8460 §3).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// No TXT record begins with `v=TLSRPTv1;`.
    #[error("no v=TLSRPTv1 record, so no TLS-RPT reports are sent")]
    NoRecord,
    /// More than one record begins with `v=TLSRPTv1;` (RFC 8460 §3: then
    /// none applies).
    #[error("{0} v=TLSRPTv1 records (exactly one is allowed), so no TLS-RPT reports are sent")]
    MultipleRecords(usize),
    /// The record does not begin with `v=TLSRPTv1` and a `;`.
    #[error("the record does not begin with \"v=TLSRPTv1;\", so no TLS-RPT reports are sent")]
    BadVersion,
    /// A field does not follow the grammar of RFC 8460 §3.
    #[error("invalid TLS-RPT record, so no reports are sent: field {index} ({field:?}): {reason}")]
    BadField {
        /// 0-based field position, counting the version as 0.
        index: usize,
        /// The text of the field.
        field: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A `rua` URI does not follow the grammar (empty, no scheme, a
    /// character a URI cannot hold, or an unencoded `!` or `,`).
    #[error("invalid TLS-RPT record, so no reports are sent: rua URI {uri:?}: {reason}")]
    BadUri {
        /// The URI as written.
        uri: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `rua` is missing.
    #[error("the record has no rua field, so no TLS-RPT reports are sent")]
    MissingRua,
    /// `rua` is present but none of its URIs is usable (mailto or https).
    #[error("rua has no usable mailto: or https: URI, so no TLS-RPT reports are sent")]
    NoUsableUri,
}

const VERSION: &str = "v=TLSRPTv1";

impl TlsRptRecord {
    /// Picks and parses the TLSRPTv1 record from a TXT RRset: each item is one
    /// TXT record given as its character-strings, which are joined without
    /// separator (RFC 8460 §3). Records that are not TLS-RPT records
    /// ([`is_tlsrpt_record`]) are ignored; more than one that is, or an
    /// invalid one, is an error, and means no reports.
    pub fn from_txt_records<R, S>(records: impl IntoIterator<Item = R>) -> Result<Self, RecordError>
    where
        R: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut found: Vec<String> = Vec::new();
        for record in records {
            let joined: String = record.into_iter().map(|s| s.as_ref().to_owned()).collect();
            if is_tlsrpt_record(&joined) {
                found.push(joined);
            }
        }
        match found.as_slice() {
            [] => Err(RecordError::NoRecord),
            [one] => Self::parse(one),
            many => Err(RecordError::MultipleRecords(many.len())),
        }
    }

    /// Like [`from_txt_records`](Self::from_txt_records) for the TXT answer
    /// of a [`DnsResolver`](crate::dns::DnsResolver) at `_smtp._tls.DOMAIN`.
    /// Bytes that are not UTF-8 stay in the text as replacement characters,
    /// so such a record still counts for selection and then fails the URI
    /// grammar.
    pub fn from_txt_answer(records: &[TxtRecord]) -> Result<Self, RecordError> {
        let texts: Vec<String> = records
            .iter()
            .map(|r| String::from_utf8_lossy(&r.joined()).into_owned())
            .collect();
        Self::from_txt_records(texts.iter().map(|t| [t.as_str()]))
    }

    /// Parses one record's text (strings already joined).
    pub fn parse(text: &str) -> Result<Self, RecordError> {
        if !is_tlsrpt_record(text) {
            return Err(RecordError::BadVersion);
        }
        let mut rua: Option<Vec<ReportUri>> = None;
        let mut diagnostics = Vec::new();
        let fields: Vec<&str> = text.split(';').collect();
        let last = fields.len() - 1;
        // field-delim = *WSP ";" *WSP, and one trailing delimiter is allowed.
        for (index, raw) in fields.iter().enumerate().skip(1) {
            let field = raw.trim_matches(is_wsp);
            let bad = |reason| RecordError::BadField {
                index,
                field: (*raw).to_owned(),
                reason,
            };
            if field.is_empty() {
                if index == last {
                    continue;
                }
                return Err(bad("empty field (\";;\")"));
            }
            let (name, value) = field
                .split_once('=')
                .ok_or_else(|| bad("no '=' in field"))?;
            if !valid_ext_name(name) {
                return Err(bad(
                    "invalid field name (letters, digits, '_', '-', '.'; no spaces around '=')",
                ));
            }
            if name == "rua" {
                // Several rua fields are allowed: all their URIs count.
                let uris = parse_rua(value, &mut diagnostics)?;
                let list = rua.get_or_insert_with(Vec::new);
                for uri in uris {
                    if !list.contains(&uri) {
                        list.push(uri);
                    }
                }
            } else {
                let value_ok = !value.is_empty()
                    && value
                        .bytes()
                        .all(|b| (0x21..=0x7e).contains(&b) && b != b'=' && b != b';');
                if !value_ok {
                    return Err(bad(
                        "invalid extension value (visible characters other than '=' and ';')",
                    ));
                }
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
    /// unusable URIs), for logs.
    pub fn diagnostics(&self) -> &[String] {
        &self.diagnostics
    }
}

fn is_wsp(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// Whether a TXT record's text is a TLS-RPT record at all: `v=TLSRPTv1`
/// followed by the field delimiter (`*WSP ";"`). RFC 8460 §3 discards
/// records that do not begin with "v=TLSRPTv1;", so `v=TLSRPTv10` or a bare
/// `v=TLSRPTv1` never make "more than one record".
pub fn is_tlsrpt_record(text: &str) -> bool {
    text.strip_prefix(VERSION)
        .is_some_and(|rest| rest.trim_start_matches(is_wsp).starts_with(';'))
}

/// A character RFC 3986 allows in a URI (reserved, unreserved or `%`).
fn uri_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&'()*+,;=%".contains(&b)
}

/// Checks one `tlsrpt-uri` against the grammar: RFC 3986 characters, a
/// scheme, and `!` and `,` percent-encoded (RFC 8460 §3).
fn check_uri(uri: &str) -> Result<(), RecordError> {
    let bad = |reason| RecordError::BadUri {
        uri: uri.to_owned(),
        reason,
    };
    if uri.is_empty() {
        return Err(bad("empty URI"));
    }
    if uri.contains('!') {
        return Err(bad("'!' must be percent-encoded (%21)"));
    }
    if let Some(b) = uri.bytes().find(|b| !uri_char(*b)) {
        return Err(bad(if b == b' ' || b == b'\t' {
            "whitespace inside a URI"
        } else {
            "a character a URI cannot hold"
        }));
    }
    let scheme = uri.split_once(':').map(|(s, _)| s).unwrap_or_default();
    let scheme_ok = scheme
        .as_bytes()
        .first()
        .is_some_and(u8::is_ascii_alphabetic)
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if !scheme_ok {
        return Err(bad("no scheme"));
    }
    // A '%' must start a two-digit escape.
    let bytes = uri.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'%'
            && !(bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
        {
            return Err(bad("'%' not followed by two hex digits"));
        }
    }
    Ok(())
}

fn parse_rua(value: &str, diagnostics: &mut Vec<String>) -> Result<Vec<ReportUri>, RecordError> {
    let mut out = Vec::new();
    // tlsrpt-rua = %s"rua=" tlsrpt-uri *(*WSP "," *WSP tlsrpt-uri): no
    // whitespace between '=' and the first URI, none after the last.
    if value.starts_with(is_wsp) || value.ends_with(is_wsp) {
        return Err(RecordError::BadUri {
            uri: value.to_owned(),
            reason: "whitespace around the rua value",
        });
    }
    for uri in value.split(',') {
        let uri = uri.trim_matches(is_wsp);
        check_uri(uri)?;
        let (scheme, rest) = uri.split_once(':').unwrap_or_default();
        if scheme.eq_ignore_ascii_case("mailto") {
            let addr = rest.split('?').next().unwrap_or_default();
            match percent_decode(addr) {
                Some(addr) if is_plausible_address(&addr) => out.push(ReportUri::Mailto(addr)),
                _ => diagnostics.push(format!(
                    "ignored mailto URI without a usable address {uri:?}"
                )),
            }
        } else if scheme.eq_ignore_ascii_case("https") {
            if rest.starts_with("//") && rest.len() > 2 {
                out.push(ReportUri::Https(format!("https:{rest}")));
            } else {
                diagnostics.push(format!("ignored https URI without a host {uri:?}"));
            }
        } else {
            diagnostics.push(format!(
                "ignored rua URI with unsupported scheme {scheme:?}"
            ));
        }
    }
    Ok(out)
}

fn is_plausible_address(addr: &str) -> bool {
    match addr.rsplit_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !addr.contains(|c: char| {
                    c.is_whitespace() || c.is_control() || matches!(c, ',' | '<' | '>')
                })
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
            TlsRptRecord::parse("v=TLSRPTv1;"),
            Err(RecordError::MissingRua)
        );
        assert_eq!(
            TlsRptRecord::parse("v=TLSRPTv1; rua=ftp://x.example"),
            Err(RecordError::NoUsableUri)
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

    #[test]
    fn rfc_8460_section_3_selection_needs_the_delimiter_after_the_version() {
        // RFC 8460 §3: records not beginning with "v=TLSRPTv1;" are
        // discarded, so they do not make "more than one record".
        for other in [
            "v=TLSRPTv10; rua=mailto:x@example.com",
            "v=TLSRPTv1",
            "v=TLSRPTv1x;",
        ] {
            let set = [vec![other], vec!["v=TLSRPTv1 ; rua=mailto:r@example.com"]];
            let r = TlsRptRecord::from_txt_records(set).unwrap();
            assert_eq!(
                r.rua(),
                &[ReportUri::Mailto("r@example.com".into())],
                "{other}"
            );
            assert!(!is_tlsrpt_record(other));
        }
    }

    #[test]
    fn rfc_8460_section_3_every_rua_field_counts() {
        let r = TlsRptRecord::parse(
            "v=TLSRPTv1; rua=mailto:a@example.com; rua=https://r.example/t , mailto:b@example.com; rua=mailto:a@example.com",
        )
        .unwrap();
        assert_eq!(
            r.rua(),
            &[
                ReportUri::Mailto("a@example.com".into()),
                ReportUri::Https("https://r.example/t".into()),
                ReportUri::Mailto("b@example.com".into()),
            ]
        );
    }

    #[test]
    fn rfc_8460_section_3_invalid_records_mean_no_reports() {
        let cases = [
            "v=TLSRPTv1; rua=mailto:a@example.com; ext=", // empty extension value
            "v=TLSRPTv1; rua=mailto:a@example.com; ext=a b", // SP in extension value
            "v=TLSRPTv1; rua=mailto:a@example.com; _ext=1", // extension name
            "v=TLSRPTv1; rua=mailto:a@example.com,",      // empty URI
            "v=TLSRPTv1; rua=",                           // empty URI
            "v=TLSRPTv1;; rua=mailto:a@example.com",      // ";;"
            "v=TLSRPTv1; rua=mailto:a@example.com;;",     // ";;" at the end
            "v=TLSRPTv1; rua = mailto:a@example.com",     // spaces around '='
            "v=TLSRPTv1; rua= mailto:a@example.com",      // space after '='
            "v=TLSRPTv1; rua=mailto:bang!path@example.com", // unencoded '!'
            "v=TLSRPTv1; rua=mailto:a@example.com!10m",   // DMARC-style size
            "v=TLSRPTv1; rua=mailto:a b@example.com",     // whitespace in a URI
            "v=TLSRPTv1; rua=mailto:a%zz@example.com",    // broken escape
            "v=TLSRPTv1; rua=reports@example.com",        // no scheme
            "v=TLSRPTv1; rua=mailto:a@example.com,b@example.com", // unencoded ',' splits
        ];
        for text in cases {
            let err = TlsRptRecord::parse(text).unwrap_err();
            assert!(
                matches!(
                    err,
                    RecordError::BadField { .. } | RecordError::BadUri { .. }
                ),
                "{text}: {err:?}"
            );
            assert!(err.to_string().contains("no reports are sent"), "{err}");
            // Also when chosen from an RRset: no report goes anywhere.
            assert!(TlsRptRecord::from_txt_records([[text]]).is_err());
        }
        // The encoded forms are fine.
        let r = TlsRptRecord::parse("v=TLSRPTv1; rua=mailto:bang%21path@example.com").unwrap();
        assert_eq!(
            r.rua(),
            &[ReportUri::Mailto("bang!path@example.com".into())]
        );
    }

    #[test]
    fn rfc_8460_section_3_selection_from_a_dns_answer() {
        let answer = [
            TxtRecord::from_text("v=spf1 -all"),
            TxtRecord::from_text("v=TLSRPTv10; rua=mailto:x@example.com"),
            TxtRecord {
                strings: vec![
                    b"v=TLSRPTv1; ".to_vec(),
                    b"rua=mailto:r@example.com".to_vec(),
                ],
            },
        ];
        let r = TlsRptRecord::from_txt_answer(&answer).unwrap();
        assert_eq!(r.rua(), &[ReportUri::Mailto("r@example.com".into())]);
        // Bytes that are not UTF-8 do not hide a record from selection.
        let bad = TxtRecord {
            strings: vec![b"v=TLSRPTv1; rua=mailto:\xff@example.com".to_vec()],
        };
        assert_eq!(
            TlsRptRecord::from_txt_answer(&[answer[2].clone(), bad.clone()]),
            Err(RecordError::MultipleRecords(2))
        );
        assert!(TlsRptRecord::from_txt_answer(&[bad]).is_err());
    }
}
