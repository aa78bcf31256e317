//! The `_mta-sts` TXT record (RFC 8461 §3.1).

use std::fmt;

use crate::dns::TxtRecord;

/// Why the TXT records at `_mta-sts.DOMAIN` give no usable policy id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// No TXT record begins with `v=STSv1` and a `;`: the domain has no
    /// policy.
    #[error("no TXT record begins with \"v=STSv1;\"")]
    NoStsRecord,
    /// More than one record begins with `v=STSv1;`; RFC 8461 §3.1 says to
    /// assume no policy.
    #[error("{count} TXT records begin with \"v=STSv1;\" (exactly one is allowed)")]
    MultipleRecords {
        /// How many there were.
        count: usize,
    },
    /// The record is not valid UTF-8/ASCII text.
    #[error("the record is not ASCII text")]
    NotText,
    /// A field does not follow the grammar of RFC 8461 §3.1.
    #[error("field {index} ({field:?}): {reason}")]
    BadField {
        /// Which `;`-separated field, counting `v=STSv1` as 0.
        index: usize,
        /// Its text.
        field: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// No `id=` field.
    #[error("the record has no id= field")]
    MissingId,
    /// More than one `id=` field.
    #[error("the record has more than one id= field")]
    RepeatedId,
}

/// The policy id: 1 to 32 letters and digits (RFC 8461 §3.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyId(Box<str>);

impl PolicyId {
    /// Checks an id.
    pub fn parse(s: &str) -> Option<Self> {
        let ok = (1..=32).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric());
        ok.then(|| PolicyId(s.into()))
    }

    /// The id text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PolicyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A parsed `v=STSv1` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StsRecord {
    /// The policy id; a change means the policy changed.
    pub id: PolicyId,
    /// Extension fields (`name=value`) in order.
    pub extensions: Vec<(String, String)>,
}

impl StsRecord {
    /// The record as it is published.
    pub fn to_text(&self) -> String {
        let mut out = format!("v=STSv1; id={}", self.id);
        for (k, v) in &self.extensions {
            out.push_str(&format!("; {k}={v}"));
        }
        out
    }
}

fn is_wsp(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// Parses one record's text (the strings already joined).
///
/// ```
/// use mailtls_policy::mta_sts::parse_record;
/// // RFC 8461 §3.1 example.
/// let r = parse_record(b"v=STSv1; id=20160831085700Z;").unwrap();
/// assert_eq!(r.id.as_str(), "20160831085700Z");
/// ```
pub fn parse_record(text: &[u8]) -> Result<StsRecord, RecordError> {
    let text = std::str::from_utf8(text).map_err(|_| RecordError::NotText)?;
    if !text.is_ascii() {
        return Err(RecordError::NotText);
    }
    let mut fields = text.split(';');
    let version = fields.next().unwrap_or_default();
    // sts-version is the very first thing; only the separator may carry WSP.
    if version.trim_end_matches(is_wsp) != "v=STSv1" {
        return Err(RecordError::BadField {
            index: 0,
            field: version.to_owned(),
            reason: "the record must start with \"v=STSv1\"",
        });
    }
    let mut id = None;
    let mut extensions = Vec::new();
    let rest: Vec<&str> = fields.collect();
    for (i, raw) in rest.iter().enumerate() {
        let index = i + 1;
        let field = raw.trim_matches(is_wsp);
        if field.is_empty() {
            // Only a final separator may be followed by nothing.
            if i + 1 == rest.len() {
                continue;
            }
            return Err(RecordError::BadField {
                index,
                field: (*raw).to_owned(),
                reason: "empty field",
            });
        }
        let bad = |reason| RecordError::BadField {
            index,
            field: field.to_owned(),
            reason,
        };
        let (name, value) = field
            .split_once('=')
            .ok_or_else(|| bad("no '=' in field"))?;
        if name == "id" {
            if id.is_some() {
                return Err(RecordError::RepeatedId);
            }
            id = Some(
                PolicyId::parse(value).ok_or_else(|| bad("id must be 1-32 letters or digits"))?,
            );
            continue;
        }
        if !super::valid_ext_name(name) {
            return Err(bad("invalid extension name"));
        }
        let value_ok = !value.is_empty()
            && value
                .bytes()
                .all(|b| (0x21..=0x7e).contains(&b) && b != b'=' && b != b';');
        if !value_ok {
            return Err(bad("invalid extension value"));
        }
        extensions.push((name.to_owned(), value.to_owned()));
    }
    Ok(StsRecord {
        id: id.ok_or(RecordError::MissingId)?,
        extensions,
    })
}

/// Whether a TXT record's text is an MTA-STS record at all: it begins with
/// exactly `v=STSv1` followed by the field delimiter (`*WSP ";"`, RFC 8461
/// §3.1: records that do not begin with "v=STSv1;" are discarded). Text
/// that merely starts with those characters (`v=STSv10`, `v=STSv1x`, or
/// `v=STSv1` with nothing after it) is some other record and must not
/// count towards "more than one record".
pub fn is_sts_record(text: &[u8]) -> bool {
    text.strip_prefix(b"v=STSv1".as_slice())
        .is_some_and(|rest| {
            let after_wsp = rest
                .iter()
                .position(|b| !matches!(b, b' ' | b'\t'))
                .map_or(&[][..], |at| &rest[at..]);
            after_wsp.first() == Some(&b';')
        })
}

/// Picks the MTA-STS record from all TXT records at `_mta-sts.DOMAIN`:
/// records that are not MTA-STS records ([`is_sts_record`]) are ignored,
/// and more than one that is means no policy (RFC 8461 §3.1).
pub fn select_record(records: &[TxtRecord]) -> Result<StsRecord, RecordError> {
    let candidates: Vec<Vec<u8>> = records
        .iter()
        .map(TxtRecord::joined)
        .filter(|t| is_sts_record(t))
        .collect();
    match candidates.as_slice() {
        [] => Err(RecordError::NoStsRecord),
        [one] => parse_record(one),
        many => Err(RecordError::MultipleRecords { count: many.len() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_8461_section_3_1_example() {
        let r = parse_record(b"v=STSv1; id=20160831085700Z;").unwrap();
        assert_eq!(r.id.as_str(), "20160831085700Z");
        assert!(r.extensions.is_empty());
        assert_eq!(r.to_text(), "v=STSv1; id=20160831085700Z");
    }

    #[test]
    fn accepts_extensions_and_wsp_around_separators() {
        let r = parse_record(b"v=STSv1 ;\tid=abc ; ext.x-1=val!").unwrap();
        assert_eq!(r.id.as_str(), "abc");
        assert_eq!(r.extensions, vec![("ext.x-1".into(), "val!".into())]);
    }

    #[test]
    fn refuses_what_the_grammar_refuses() {
        let bad: &[&[u8]] = &[
            b"v=STSv1",                                       // no id (RFC 8461 §3.1: id is required)
            b"v=STSv1; id=",                                  // empty id
            b"v=STSv1; id=abc_def",                           // id: alphanumerics only
            b"v=STSv1; id=123456789012345678901234567890123", // 33 chars
            b"v=STSv1; id=1; id=2",                           // repeated id
            b" v=STSv1; id=1",                                // version must come first
            b"v=STSv2; id=1",
            b"v=stsv1; id=1",       // version is case-sensitive (%s)
            b"v=STSv1; id=1;; x=y", // empty field
            b"v=STSv1; id=1; novalue",
            b"v=STSv1; id=1; _x=y",  // extension name starts alphanumeric
            b"v=STSv1; id=1; x=a b", // SP not in ext value
            b"v=STSv1; id=\xc3\xa9",
        ];
        for b in bad {
            assert!(parse_record(b).is_err(), "{:?}", String::from_utf8_lossy(b));
        }
        assert_eq!(
            parse_record(b"v=STSv1;").unwrap_err(),
            RecordError::MissingId
        );
        assert_eq!(
            parse_record(b"v=STSv1; id=1; id=1").unwrap_err(),
            RecordError::RepeatedId
        );
    }

    #[test]
    fn selection_ignores_other_records_and_refuses_two_sts_records() {
        let spf = TxtRecord::from_text("v=spf1 -all");
        let a = TxtRecord::from_text("v=STSv1; id=a");
        let b = TxtRecord::from_text("v=STSv1; id=b");
        assert_eq!(
            select_record(&[spf.clone(), a.clone()])
                .unwrap()
                .id
                .as_str(),
            "a"
        );
        assert_eq!(
            select_record(&[a, b]),
            Err(RecordError::MultipleRecords { count: 2 })
        );
        assert_eq!(select_record(&[spf]), Err(RecordError::NoStsRecord));
        // RFC 8461 §3.1: strings of one record are concatenated.
        let split = TxtRecord {
            strings: vec![b"v=STS".to_vec(), b"v1; id=x1".to_vec()],
        };
        assert_eq!(select_record(&[split]).unwrap().id.as_str(), "x1");
    }

    #[test]
    fn rfc_8461_section_3_1_selection_needs_the_delimiter_after_the_version() {
        // RFC 8461 §3.1: records that do not begin with "v=STSv1;" are
        // discarded, so they never make "more than one record".
        let real = TxtRecord::from_text("v=STSv1; id=real1");
        for other in [
            "v=STSv10; id=other",
            "v=STSv1x; id=other",
            "v=STSv1",
            "v=STSv1 id=other",
            "v=STSv1,id=other",
        ] {
            let set = [TxtRecord::from_text(other), real.clone()];
            assert_eq!(
                select_record(&set).unwrap().id.as_str(),
                "real1",
                "{other:?} must not count as an MTA-STS record"
            );
            assert!(!is_sts_record(other.as_bytes()), "{other:?}");
        }
        // WSP before the delimiter is part of the grammar (sts-field-delim).
        assert!(is_sts_record(b"v=STSv1 \t; id=x"));
        let two = [
            TxtRecord::from_text("v=STSv1 ; id=a"),
            TxtRecord::from_text("v=STSv1;id=b"),
        ];
        assert_eq!(
            select_record(&two),
            Err(RecordError::MultipleRecords { count: 2 })
        );
    }
}
