//! The vocabulary shared by the outbound verifier and TLS-RPT: which kind of
//! policy applied to a session and, when it failed, why (RFC 8460 §4.3/§4.4).
//!
//! The delivery-plan verifier produces these values; the TLS-RPT collector
//! counts them. Keeping them in one place means a failure is classified once,
//! where it happens, and never re-derived from an error string.

use std::fmt;
use std::str::FromStr;

/// The policy that governed a session (RFC 8460 §4.4, `policy-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum PolicyType {
    /// DANE: TLSA records under DNSSEC (`tlsa`).
    Tlsa,
    /// MTA-STS (`sts`).
    Sts,
    /// Neither applied (`no-policy-found`).
    NoPolicyFound,
}

impl PolicyType {
    /// The string RFC 8460 uses in reports.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Tlsa => "tlsa",
            Self::Sts => "sts",
            Self::NoPolicyFound => "no-policy-found",
        }
    }
}

/// Why a session failed (RFC 8460 §4.3, `result-type`).
///
/// A successful session has no result type: it is counted, not classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ResultType {
    /// The receiver did not offer STARTTLS.
    StarttlsNotSupported,
    /// No name in the certificate matched the MX (or the policy's names).
    CertificateHostMismatch,
    /// The certificate was outside its validity window.
    CertificateExpired,
    /// The chain did not lead to a trusted root.
    CertificateNotTrusted,
    /// Any other negotiation failure.
    ValidationFailure,
    /// DANE: no usable TLSA record matched, or the records were malformed.
    TlsaInvalid,
    /// DANE: the DNSSEC chain for the TLSA records did not validate.
    DnssecInvalid,
    /// DANE: the domain demands DANE and the sender could not use it.
    DaneRequired,
    /// MTA-STS: the policy could not be fetched.
    StsPolicyFetchError,
    /// MTA-STS: the fetched policy did not parse or was not valid.
    StsPolicyInvalid,
    /// MTA-STS: the policy host's certificate failed WebPKI validation.
    StsWebpkiInvalid,
}

impl ResultType {
    /// Every result type, in the order RFC 8460 §4.3 lists them.
    pub const ALL: [ResultType; 11] = [
        Self::StarttlsNotSupported,
        Self::CertificateHostMismatch,
        Self::CertificateExpired,
        Self::CertificateNotTrusted,
        Self::ValidationFailure,
        Self::TlsaInvalid,
        Self::DnssecInvalid,
        Self::DaneRequired,
        Self::StsPolicyFetchError,
        Self::StsPolicyInvalid,
        Self::StsWebpkiInvalid,
    ];

    /// The string RFC 8460 uses in reports.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::StarttlsNotSupported => "starttls-not-supported",
            Self::CertificateHostMismatch => "certificate-host-mismatch",
            Self::CertificateExpired => "certificate-expired",
            Self::CertificateNotTrusted => "certificate-not-trusted",
            Self::ValidationFailure => "validation-failure",
            Self::TlsaInvalid => "tlsa-invalid",
            Self::DnssecInvalid => "dnssec-invalid",
            Self::DaneRequired => "dane-required",
            Self::StsPolicyFetchError => "sts-policy-fetch-error",
            Self::StsPolicyInvalid => "sts-policy-invalid",
            Self::StsWebpkiInvalid => "sts-webpki-invalid",
        }
    }
}

/// A string that is not one of the values RFC 8460 defines.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?}")]
pub struct UnknownValue {
    /// Which vocabulary was being parsed (`result-type` or `policy-type`).
    pub what: &'static str,
    /// The text that did not match.
    pub value: String,
}

impl FromStr for ResultType {
    type Err = UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownValue {
                what: "result-type",
                value: s.to_owned(),
            })
    }
}

impl FromStr for PolicyType {
    type Err = UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::Tlsa, Self::Sts, Self::NoPolicyFound]
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownValue {
                what: "policy-type",
                value: s.to_owned(),
            })
    }
}

impl fmt::Display for ResultType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for PolicyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_result_type_round_trips_through_its_rfc_string() {
        for r in ResultType::ALL {
            assert_eq!(r.as_str().parse::<ResultType>(), Ok(r));
        }
        assert!("certificate-revoked".parse::<ResultType>().is_err());
    }

    #[test]
    fn policy_types_use_rfc_8460_section_4_4_strings() {
        assert_eq!(PolicyType::NoPolicyFound.to_string(), "no-policy-found");
        assert_eq!("TLSA".parse::<PolicyType>(), Ok(PolicyType::Tlsa));
        assert!("dane".parse::<PolicyType>().is_err());
    }
}
