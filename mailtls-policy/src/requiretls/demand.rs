//! What a message demands of TLS on its way out.

use std::fmt;

/// The value of a `TLS-Required` header field (RFC 8689 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TlsRequiredHeader {
    /// `TLS-Required: No`: the only value RFC 8689 defines.
    No,
}

impl TlsRequiredHeader {
    /// Parses the header field *value* (after the colon). RFC 8689 §5 defines
    /// only `No`, compared case-insensitively with surrounding white space
    /// (including folding) ignored; anything else is not this header's
    /// meaning and yields `None`.
    pub fn parse_value(value: &str) -> Option<Self> {
        value
            .trim_matches(|c: char| c.is_ascii_whitespace())
            .eq_ignore_ascii_case("no")
            .then_some(Self::No)
    }

    /// Looks for the header in a block of raw header lines (`Name: value`,
    /// folded lines allowed). The first occurrence decides.
    pub fn find_in_headers(headers: &str) -> Option<Self> {
        let mut lines = headers.split('\n').peekable();
        while let Some(line) = lines.next() {
            let line = line.trim_end_matches('\r');
            if line.is_empty() {
                break;
            }
            let Some((name, first)) = line.split_once(':') else {
                continue;
            };
            if !name.trim_end().eq_ignore_ascii_case("TLS-Required") {
                continue;
            }
            let mut value = first.to_owned();
            while let Some(next) = lines.peek() {
                if next.starts_with(' ') || next.starts_with('\t') {
                    value.push_str(next.trim_end_matches('\r'));
                    lines.next();
                } else {
                    break;
                }
            }
            return Self::parse_value(&value);
        }
        None
    }
}

/// What a message asks of outbound TLS. One value, so "REQUIRETLS and
/// `TLS-Required: No` at once" cannot be represented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TlsDemand {
    /// No demand: the recipient's policy (DANE, MTA-STS) and local policy
    /// decide.
    #[default]
    Default,
    /// REQUIRETLS (RFC 8689 §4.2): verified TLS all the way or a 5.7.30
    /// bounce.
    RequireTls,
    /// `TLS-Required: No` (RFC 8689 §4.2.2 and §5): try TLS, but ignore
    /// recipient TLS policy failures (MTA-STS, DANE) and deliver anyway.
    IgnorePolicyFailures,
}

impl TlsDemand {
    /// Combines the MAIL FROM flag and the header. RFC 8689 §5: when the
    /// REQUIRETLS parameter is present, the `TLS-Required` header field MUST
    /// be ignored (it may still travel with the message).
    pub fn from_envelope_and_header(requiretls: bool, header: Option<TlsRequiredHeader>) -> Self {
        match (requiretls, header) {
            (true, _) => Self::RequireTls,
            (false, Some(TlsRequiredHeader::No)) => Self::IgnorePolicyFailures,
            (false, None) => Self::Default,
        }
    }

    /// Sets REQUIRETLS, as a content filter or a `+requiretls` recipient tag
    /// does. It overrides `TLS-Required: No` (RFC 8689 §5).
    pub fn require_tls(&mut self) {
        *self = Self::RequireTls;
    }

    /// Applies a `TLS-Required: No` header found later (by a filter): it only
    /// takes effect when REQUIRETLS is not set.
    pub fn apply_header(&mut self, header: TlsRequiredHeader) {
        if *self == Self::Default {
            match header {
                TlsRequiredHeader::No => *self = Self::IgnorePolicyFailures,
            }
        }
    }

    /// Whether the REQUIRETLS flag is set.
    pub fn is_requiretls(self) -> bool {
        self == Self::RequireTls
    }

    /// Whether the sender asked to ignore recipient TLS policy failures.
    pub fn ignores_policy_failures(self) -> bool {
        self == Self::IgnorePolicyFailures
    }

    /// The demand a bounce (DSN) of this message inherits: RFC 8689 §4.3
    /// says a non-delivery report for a REQUIRETLS message is sent with
    /// REQUIRETLS too; `TLS-Required: No` is not inherited.
    pub fn for_bounce(self) -> Self {
        match self {
            Self::RequireTls => Self::RequireTls,
            Self::Default | Self::IgnorePolicyFailures => Self::Default,
        }
    }
}

impl fmt::Display for TlsDemand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Default => "default",
            Self::RequireTls => "requiretls",
            Self::IgnorePolicyFailures => "tls-required-no",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requiretls_wins_over_the_header_rfc8689_5() {
        assert_eq!(
            TlsDemand::from_envelope_and_header(true, Some(TlsRequiredHeader::No)),
            TlsDemand::RequireTls
        );
        assert_eq!(
            TlsDemand::from_envelope_and_header(false, Some(TlsRequiredHeader::No)),
            TlsDemand::IgnorePolicyFailures
        );
        assert_eq!(
            TlsDemand::from_envelope_and_header(false, None),
            TlsDemand::Default
        );

        let mut d = TlsDemand::IgnorePolicyFailures;
        d.require_tls();
        assert!(d.is_requiretls());
        d.apply_header(TlsRequiredHeader::No);
        assert!(d.is_requiretls(), "a later header never weakens REQUIRETLS");

        let mut d = TlsDemand::Default;
        d.apply_header(TlsRequiredHeader::No);
        assert!(d.ignores_policy_failures());
    }

    #[test]
    fn header_value_parsing_is_case_and_space_insensitive() {
        assert_eq!(
            TlsRequiredHeader::parse_value(" No"),
            Some(TlsRequiredHeader::No)
        );
        assert_eq!(
            TlsRequiredHeader::parse_value("\tNO \r\n"),
            Some(TlsRequiredHeader::No)
        );
        assert_eq!(TlsRequiredHeader::parse_value("yes"), None);
        assert_eq!(TlsRequiredHeader::parse_value("No, thanks"), None);
    }

    #[test]
    fn header_is_found_among_others_and_folded() {
        let h = "From: a@example.com\r\nTls-required:\r\n  No\r\nSubject: x\r\n\r\nbody TLS-Required: No\r\n";
        assert_eq!(
            TlsRequiredHeader::find_in_headers(h),
            Some(TlsRequiredHeader::No)
        );
        let body_only = "From: a@example.com\r\n\r\nTLS-Required: No\r\n";
        assert_eq!(TlsRequiredHeader::find_in_headers(body_only), None);
    }

    #[test]
    fn bounces_inherit_requiretls_only() {
        assert_eq!(TlsDemand::RequireTls.for_bounce(), TlsDemand::RequireTls);
        assert_eq!(
            TlsDemand::IgnorePolicyFailures.for_bounce(),
            TlsDemand::Default
        );
    }
}
