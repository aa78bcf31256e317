//! RFC 8914 Extended DNS Errors: why an upstream resolver answered SERVFAIL.
//!
//! A strict validating resolver (unbound with `val-permissive-mode: no`)
//! answers bogus data with SERVFAIL, which on its own looks like a transient
//! failure. With `ede: yes` it adds an EDE option to the OPT record naming
//! the DNSSEC cause (RFC 8914 §4.6-§4.13), which turns that SERVFAIL into a
//! verdict: bogus. Hickory's resolver does not hand the OPT record of a
//! failed answer back, so the hickory resolver asks the same question once more over
//! plain UDP and reads it.

use std::fmt;

/// One RFC 8914 Extended DNS Error: the INFO-CODE and the EXTRA-TEXT.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ExtendedDnsError {
    /// The INFO-CODE (RFC 8914 §4, IANA "Extended DNS Error Codes").
    pub code: u16,
    /// The EXTRA-TEXT, empty when the resolver sent none (lossy UTF-8).
    pub text: String,
}

impl ExtendedDnsError {
    /// Reads the option data of an EDE option: a two-byte INFO-CODE and
    /// UTF-8 EXTRA-TEXT (RFC 8914 §2). `None` when shorter than two bytes.
    pub fn from_option_data(data: &[u8]) -> Option<Self> {
        let (code, text) = data.split_first_chunk::<2>()?;
        Some(ExtendedDnsError {
            code: u16::from_be_bytes(*code),
            // RFC 8914 §2: the text "SHOULD NOT" be NUL-terminated; some
            // resolvers do it anyway.
            text: String::from_utf8_lossy(text)
                .trim_end_matches('\0')
                .to_owned(),
        })
    }

    /// Whether the code says DNSSEC validation failed (RFC 8914 §4.6-§4.13:
    /// DNSSEC Indeterminate, DNSSEC Bogus, Signature Expired, Signature Not
    /// Yet Valid, DNSKEY Missing, RRSIGs Missing, No Zone Key Bit Set, NSEC
    /// Missing). Codes 1 and 2 (unsupported algorithm or digest) make a zone
    /// insecure, not bogus, and are not counted.
    pub fn is_dnssec_failure(&self) -> bool {
        (5..=12).contains(&self.code)
    }

    /// The name IANA gives the code, for messages.
    pub fn code_name(&self) -> &'static str {
        match self.code {
            0 => "Other Error",
            1 => "Unsupported DNSKEY Algorithm",
            2 => "Unsupported DS Digest Type",
            3 => "Stale Answer",
            4 => "Forged Answer",
            5 => "DNSSEC Indeterminate",
            6 => "DNSSEC Bogus",
            7 => "Signature Expired",
            8 => "Signature Not Yet Valid",
            9 => "DNSKEY Missing",
            10 => "RRSIGs Missing",
            11 => "No Zone Key Bit Set",
            12 => "NSEC Missing",
            13 => "Cached Error",
            14 => "Not Ready",
            15 => "Blocked",
            16 => "Censored",
            17 => "Filtered",
            18 => "Prohibited",
            19 => "Stale NXDomain Answer",
            20 => "Not Authoritative",
            21 => "Not Supported",
            22 => "No Reachable Authority",
            23 => "Network Error",
            24 => "Invalid Data",
            _ => "unassigned",
        }
    }
}

impl fmt::Display for ExtendedDnsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EDE {} ({})", self.code, self.code_name())?;
        if !self.text.is_empty() {
            write!(f, ": {}", self.text)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_data_is_code_then_text() {
        // RFC 8914 §2: INFO-CODE 7 (Signature Expired) with EXTRA-TEXT.
        let e = ExtendedDnsError::from_option_data(b"\x00\x07sig expired\0").unwrap();
        assert_eq!(e.code, 7);
        assert_eq!(e.text, "sig expired");
        assert!(e.is_dnssec_failure());
        assert_eq!(e.to_string(), "EDE 7 (Signature Expired): sig expired");
        assert_eq!(ExtendedDnsError::from_option_data(b"\x00"), None);
        let bare = ExtendedDnsError::from_option_data(b"\x00\x16").unwrap();
        assert_eq!(bare.to_string(), "EDE 22 (No Reachable Authority)");
        assert!(!bare.is_dnssec_failure());
    }

    #[test]
    fn only_validation_failures_are_dnssec_failures() {
        let codes: Vec<u16> = (0..30)
            .filter(|&code| {
                ExtendedDnsError {
                    code,
                    text: String::new(),
                }
                .is_dnssec_failure()
            })
            .collect();
        assert_eq!(codes, (5..=12).collect::<Vec<_>>());
    }
}
