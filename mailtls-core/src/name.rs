//! Host names in one canonical form.
//!
//! Everything in mailtls that compares host names (the SNI resolver, MTA-STS `mx`
//! patterns, certificate SANs) compares [`DnsName`]s, so the normalisation rules
//! live in exactly one place: ASCII only, lowercase, A-labels for international
//! names (IDNA / UTS #46), no trailing root dot.

use std::borrow::Borrow;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use idna::AsciiDenyList;
use idna::uts46::{DnsLength, Hyphens, Uts46};

/// Longest host name in presentation form without the root dot (RFC 1035 §2.3.4).
pub const MAX_NAME_LEN: usize = 253;
/// Longest single label (RFC 1035 §2.3.4).
pub const MAX_LABEL_LEN: usize = 63;

/// Why a string is not a usable host name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The input was empty (or only a root dot).
    #[error("host name is empty")]
    Empty,
    /// The input is an IP address literal, which is never a host name.
    #[error("{input:?} is an IP address, not a host name")]
    IpAddress {
        /// The offending input.
        input: String,
    },
    /// IDNA (UTS #46) processing rejected the input: a forbidden code point, a
    /// hyphen at the start or end of a label, or a malformed `xn--` label.
    #[error("{input:?} is not a valid host name (IDNA/UTS-46 processing failed)")]
    Idna {
        /// The offending input.
        input: String,
    },
    /// A label is empty (two dots in a row, or a leading dot).
    #[error("{input:?} has an empty label")]
    EmptyLabel {
        /// The offending input.
        input: String,
    },
    /// A label is longer than 63 octets once converted to ASCII.
    #[error("label {label:?} in {input:?} is {len} octets long (at most {MAX_LABEL_LEN})")]
    LabelTooLong {
        /// The offending input.
        input: String,
        /// The label that is too long (in A-label form).
        label: String,
        /// Its length.
        len: usize,
    },
    /// The whole name is longer than 253 octets once converted to ASCII.
    #[error("{input:?} is {len} octets long in ASCII form (at most {MAX_NAME_LEN})")]
    TooLong {
        /// The offending input.
        input: String,
        /// Its ASCII length.
        len: usize,
    },
    /// The last label is all digits, which no top-level domain is; such strings
    /// are usually mistyped IP addresses.
    #[error("{input:?} ends in an all-numeric label")]
    NumericTopLabel {
        /// The offending input.
        input: String,
    },
    /// A wildcard or other character that only patterns may hold.
    #[error("{input:?} contains a wildcard; use NamePattern for patterns")]
    Wildcard {
        /// The offending input.
        input: String,
    },
}

/// A host name in canonical form: lowercase ASCII, international labels as
/// A-labels (`xn--…`), one trailing root dot removed, every label 1–63 octets,
/// the whole name at most 253 octets.
///
/// ```
/// use mailtls_core::DnsName;
///
/// let name = DnsName::parse("Mail.Bücher.Example.").unwrap();
/// assert_eq!(name.as_str(), "mail.xn--bcher-kva.example");
/// assert!(DnsName::parse("192.0.2.1").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DnsName(Box<str>);

impl DnsName {
    /// Parses and normalises a host name.
    pub fn parse(input: &str) -> Result<Self, NameError> {
        let trimmed = input.strip_suffix('.').unwrap_or(input);
        if trimmed.is_empty() {
            return Err(NameError::Empty);
        }
        if trimmed.contains('*') {
            return Err(NameError::Wildcard {
                input: input.to_owned(),
            });
        }
        if trimmed.parse::<IpAddr>().is_ok() || (trimmed.starts_with('[') && trimmed.ends_with(']'))
        {
            return Err(NameError::IpAddress {
                input: input.to_owned(),
            });
        }
        // Already-canonical names (the common case on every hot path) skip IDNA.
        let ascii = if is_canonical(trimmed) {
            trimmed.to_owned()
        } else {
            Uts46::new()
                .to_ascii(
                    trimmed.as_bytes(),
                    AsciiDenyList::STD3,
                    // Only first/last hyphens are checked: real host names such as
                    // "r3--sn-abc.example" use "--" in positions 3 and 4.
                    Hyphens::CheckFirstLast,
                    // Lengths are checked below so the error can say which label.
                    DnsLength::Ignore,
                )
                .map_err(|_| NameError::Idna {
                    input: input.to_owned(),
                })?
                .into_owned()
        };
        check_lengths(input, &ascii)?;
        Ok(DnsName(ascii.into_boxed_str()))
    }

    /// The canonical form.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The labels from left to right.
    pub fn labels(&self) -> impl Iterator<Item = &str> {
        self.0.split('.')
    }

    /// How many labels the name has.
    pub fn label_count(&self) -> usize {
        self.0.bytes().filter(|b| *b == b'.').count() + 1
    }

    /// Everything after the leftmost label, or `None` for a single-label name.
    /// This is the part a `*.` wildcard pattern must equal.
    pub fn parent(&self) -> Option<&str> {
        self.0.split_once('.').map(|(_, rest)| rest)
    }

    /// Whether `self` equals `domain` or is below it (`a.b.example` is within
    /// `b.example` and `example`, not within `ample`).
    pub fn is_within(&self, domain: &DnsName) -> bool {
        let me = self.as_str();
        let d = domain.as_str();
        me == d
            || (me.len() > d.len()
                && me.ends_with(d)
                && me.as_bytes()[me.len() - d.len() - 1] == b'.')
    }
}

/// True when `s` (root dot already removed) is exactly what parsing would
/// produce: lowercase letters, digits and hyphens in dot-separated labels of
/// 1 to 63 octets, no hyphen at a label's edge, no `xn--` label (A-labels go
/// through IDNA so malformed Punycode is refused), at most 253 octets, and a
/// last label that is not all digits. One pass over the bytes: this runs on
/// every TLS handshake.
fn is_canonical(s: &str) -> bool {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > MAX_NAME_LEN {
        return false;
    }
    let mut start = 0;
    let mut digits_only = true;
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'a'..=b'z' => digits_only = false,
            b'0'..=b'9' => {}
            b'-' => {
                if i == start {
                    return false;
                }
                digits_only = false;
            }
            b'.' => {
                if !label_ok(&b[start..i]) {
                    return false;
                }
                start = i + 1;
                digits_only = true;
            }
            _ => return false,
        }
    }
    label_ok(&b[start..]) && !digits_only
}

fn label_ok(label: &[u8]) -> bool {
    !label.is_empty()
        && label.len() <= MAX_LABEL_LEN
        && label.last() != Some(&b'-')
        && !label.starts_with(b"xn--")
}

fn check_lengths(input: &str, ascii: &str) -> Result<(), NameError> {
    if ascii.is_empty() {
        return Err(NameError::Empty);
    }
    if ascii.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong {
            input: input.to_owned(),
            len: ascii.len(),
        });
    }
    let mut last = "";
    for label in ascii.split('.') {
        if label.is_empty() {
            return Err(NameError::EmptyLabel {
                input: input.to_owned(),
            });
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(NameError::LabelTooLong {
                input: input.to_owned(),
                label: label.to_owned(),
                len: label.len(),
            });
        }
        last = label;
    }
    if last.bytes().all(|b| b.is_ascii_digit()) {
        return Err(NameError::NumericTopLabel {
            input: input.to_owned(),
        });
    }
    Ok(())
}

impl fmt::Display for DnsName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for DnsName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DnsName({:?})", &*self.0)
    }
}

impl FromStr for DnsName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<&str> for DnsName {
    type Error = NameError;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::parse(s)
    }
}

impl AsRef<str> for DnsName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

// Hash/Eq of DnsName are those of its canonical string, so maps keyed by
// DnsName can be probed with an already-canonical &str without allocating.
impl Borrow<str> for DnsName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// Returns the canonical form of `name` without allocating when it already is
/// canonical, so a hot path (an SNI lookup) can probe a map directly. `None`
/// when the name cannot be a host name.
pub fn canonical_lookup_key(name: &str) -> Option<std::borrow::Cow<'_, str>> {
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if is_canonical(trimmed) {
        return Some(std::borrow::Cow::Borrowed(trimmed));
    }
    DnsName::parse(name)
        .ok()
        .map(|n| std::borrow::Cow::Owned(n.0.into_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_case_dot_and_idna() {
        assert_eq!(
            DnsName::parse("MAIL.Example.COM.").unwrap().as_str(),
            "mail.example.com"
        );
        assert_eq!(
            DnsName::parse("bücher.example").unwrap().as_str(),
            "xn--bcher-kva.example"
        );
        assert_eq!(
            DnsName::parse("XN--BCHER-KVA.example").unwrap().as_str(),
            "xn--bcher-kva.example"
        );
        // Double hyphens in positions 3-4 are real-world names.
        assert!(DnsName::parse("r3--sn-abc.example").is_ok());
    }

    #[test]
    fn rejects_bad_names() {
        assert_eq!(DnsName::parse(""), Err(NameError::Empty));
        assert_eq!(DnsName::parse("."), Err(NameError::Empty));
        assert!(matches!(
            DnsName::parse("a..b"),
            Err(NameError::EmptyLabel { .. })
        ));
        assert!(matches!(
            DnsName::parse(".a.b"),
            Err(NameError::EmptyLabel { .. })
        ));
        assert!(matches!(
            DnsName::parse("a.b.."),
            Err(NameError::EmptyLabel { .. })
        ));
        assert!(matches!(
            DnsName::parse("10.0.0.1"),
            Err(NameError::IpAddress { .. })
        ));
        assert!(matches!(
            DnsName::parse("::1"),
            Err(NameError::IpAddress { .. })
        ));
        assert!(matches!(
            DnsName::parse("-a.example"),
            Err(NameError::Idna { .. })
        ));
        assert!(matches!(
            DnsName::parse("a_b.example"),
            Err(NameError::Idna { .. })
        ));
        assert!(matches!(
            DnsName::parse("xn--zz.example"),
            Err(NameError::Idna { .. })
        ));
        assert!(matches!(
            DnsName::parse("a b.example"),
            Err(NameError::Idna { .. })
        ));
        assert!(matches!(
            DnsName::parse("*.example"),
            Err(NameError::Wildcard { .. })
        ));
        assert!(matches!(
            DnsName::parse("host.123"),
            Err(NameError::NumericTopLabel { .. })
        ));
        let long_label = "a".repeat(64);
        assert!(matches!(
            DnsName::parse(&format!("{long_label}.example")),
            Err(NameError::LabelTooLong { len: 64, .. })
        ));
        let long_name = ["abcdefghi"; 26].join(".");
        assert!(matches!(
            DnsName::parse(&long_name),
            Err(NameError::TooLong { .. })
        ));
    }

    #[test]
    fn parent_and_within() {
        let n = DnsName::parse("a.b.example").unwrap();
        assert_eq!(n.parent(), Some("b.example"));
        assert_eq!(n.label_count(), 3);
        assert!(n.is_within(&DnsName::parse("b.example").unwrap()));
        assert!(n.is_within(&DnsName::parse("example").unwrap()));
        assert!(!n.is_within(&DnsName::parse("ample").unwrap()));
        assert_eq!(DnsName::parse("localhost").unwrap().parent(), None);
    }

    #[test]
    fn lookup_key_borrows_when_canonical() {
        assert!(matches!(
            canonical_lookup_key("mail.example.com"),
            Some(std::borrow::Cow::Borrowed("mail.example.com"))
        ));
        assert!(matches!(
            canonical_lookup_key("mail.example.com."),
            Some(std::borrow::Cow::Borrowed("mail.example.com"))
        ));
        assert_eq!(
            canonical_lookup_key("MAIL.example.com").unwrap(),
            "mail.example.com"
        );
        assert!(canonical_lookup_key("1.2.3.4").is_none());
    }
}
