//! A parsed MTA-STS policy (RFC 8461 §3.2) and the MX check it exists for.

use std::fmt;

use mailtls_core::{DnsName, NamePattern};

/// The longest `max_age` RFC 8461 §3.2 allows (about one year), in seconds.
pub const MAX_MAX_AGE: u32 = 31_557_600;

/// What the sender does when an MX does not satisfy the policy (RFC 8461 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyMode {
    /// Deliver only to listed MX hosts with a valid certificate.
    Enforce,
    /// Deliver anyway, but report failures (TLS-RPT).
    Testing,
    /// The domain has no active policy (used to withdraw one).
    None,
}

impl PolicyMode {
    /// The keyword used in the policy file.
    pub const fn as_str(self) -> &'static str {
        match self {
            PolicyMode::Enforce => "enforce",
            PolicyMode::Testing => "testing",
            PolicyMode::None => "none",
        }
    }
}

impl fmt::Display for PolicyMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An MTA-STS policy: mode, allowed MX patterns, lifetime, any extension
/// keys, and the text it was parsed from (TLS-RPT reports it verbatim as
/// `policy-string`, RFC 8460 §4.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MtaStsPolicy {
    pub(crate) mode: PolicyMode,
    pub(crate) mx: Vec<NamePattern>,
    pub(crate) max_age: u32,
    pub(crate) extensions: Vec<(String, String)>,
    pub(crate) raw: String,
}

impl MtaStsPolicy {
    /// Builds a policy from its parts (for publishing one); `max_age` is
    /// clamped to [`MAX_MAX_AGE`]. The raw text is the canonical rendering.
    pub fn new(mode: PolicyMode, mx: Vec<NamePattern>, max_age: u32) -> Self {
        let mut policy = MtaStsPolicy {
            mode,
            mx,
            max_age: max_age.min(MAX_MAX_AGE),
            extensions: Vec::new(),
            raw: String::new(),
        };
        policy.raw = policy.to_text();
        policy
    }

    /// The mode.
    pub fn mode(&self) -> PolicyMode {
        self.mode
    }

    /// The `mx` patterns, in file order.
    pub fn mx(&self) -> &[NamePattern] {
        &self.mx
    }

    /// How long the policy may be cached, in seconds (already clamped).
    pub fn max_age(&self) -> u32 {
        self.max_age
    }

    /// Keys this parser does not know, with their values, in file order
    /// (RFC 8461 §3.2 extensions).
    pub fn extensions(&self) -> &[(String, String)] {
        &self.extensions
    }

    /// The text the policy was parsed from, exactly as fetched.
    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// The policy as the lines of RFC 8460 §4.4 `policy-string`: one entry
    /// per non-empty line, line ends removed.
    pub fn policy_strings(&self) -> Vec<String> {
        self.raw
            .lines()
            .map(|l| l.trim_end_matches('\r'))
            .filter(|l| !l.trim().is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// Whether one of the `mx` patterns matches the MX host name
    /// (RFC 8461 §4.1: exact, or `*.` standing for exactly one label).
    /// This ignores the mode: whether a mismatch blocks delivery is for
    /// the caller to decide with [`MtaStsPolicy::mode`].
    pub fn matches_mx(&self, mx_host: &DnsName) -> bool {
        self.mx.iter().any(|p| p.matches(mx_host))
    }

    /// Whether delivery to `mx_host` may go ahead under this policy:
    /// always in `testing` and `none` mode (a mismatch is only reported),
    /// and in `enforce` mode only for a listed host (RFC 8461 §5).
    pub fn allows_mx(&self, mx_host: &DnsName) -> bool {
        match self.mode {
            PolicyMode::Enforce => self.matches_mx(mx_host),
            PolicyMode::Testing | PolicyMode::None => true,
        }
    }

    /// The canonical text of the policy (CRLF line ends, as RFC 8461 §3.2
    /// shows), extensions included.
    pub fn to_text(&self) -> String {
        let mut out = String::from("version: STSv1\r\n");
        out.push_str(&format!("mode: {}\r\n", self.mode));
        for p in &self.mx {
            out.push_str(&format!("mx: {p}\r\n"));
        }
        out.push_str(&format!("max_age: {}\r\n", self.max_age));
        for (k, v) in &self.extensions {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> DnsName {
        DnsName::parse(s).unwrap()
    }

    #[test]
    fn mx_matching_follows_rfc_8461_section_4_1() {
        // RFC 8461 §4.1: "*.example.com" matches "mx1.example.com" but not
        // "example.com" nor "foo.mx1.example.com".
        let p = MtaStsPolicy::new(
            PolicyMode::Enforce,
            vec![
                NamePattern::parse("mail.example.com").unwrap(),
                NamePattern::parse("*.example.net").unwrap(),
            ],
            86400,
        );
        assert!(p.matches_mx(&name("mail.example.com")));
        assert!(p.matches_mx(&name("MX1.example.net")));
        assert!(!p.matches_mx(&name("example.net")));
        assert!(!p.matches_mx(&name("foo.mx1.example.net")));
        assert!(!p.allows_mx(&name("other.example.org")));
        let testing = MtaStsPolicy::new(PolicyMode::Testing, p.mx().to_vec(), 1);
        assert!(testing.allows_mx(&name("other.example.org")));
        assert!(!testing.matches_mx(&name("other.example.org")));
    }

    #[test]
    fn new_clamps_max_age_and_renders_canonical_text() {
        let p = MtaStsPolicy::new(
            PolicyMode::Testing,
            vec![NamePattern::parse("mx.example.com").unwrap()],
            u32::MAX,
        );
        assert_eq!(p.max_age(), MAX_MAX_AGE);
        assert_eq!(
            p.raw(),
            "version: STSv1\r\nmode: testing\r\nmx: mx.example.com\r\nmax_age: 31557600\r\n"
        );
        assert_eq!(
            p.policy_strings(),
            vec![
                "version: STSv1",
                "mode: testing",
                "mx: mx.example.com",
                "max_age: 31557600"
            ]
        );
    }
}
