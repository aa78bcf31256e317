//! DNS failures, each kind kept apart because each means something different
//! to MTA-STS and DANE: NXDOMAIN and "no data" are answers (no policy), a
//! server failure or a timeout is a temporary condition.

use std::fmt;

use super::{DnssecStatus, ExtendedDnsError, QueryName};

/// The record types this crate asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum RecordType {
    /// MX.
    Mx,
    /// TXT.
    Txt,
    /// TLSA.
    Tlsa,
    /// A.
    A,
    /// AAAA.
    Aaaa,
    /// CNAME.
    Cname,
}

impl RecordType {
    /// The mnemonic.
    pub const fn as_str(self) -> &'static str {
        match self {
            RecordType::Mx => "MX",
            RecordType::Txt => "TXT",
            RecordType::Tlsa => "TLSA",
            RecordType::A => "A",
            RecordType::Aaaa => "AAAA",
            RecordType::Cname => "CNAME",
        }
    }
}

impl fmt::Display for RecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a lookup produced no records.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DnsError {
    /// The name does not exist (RCODE 3). `dnssec` says whether the denial
    /// itself was authentic: an authentic NXDOMAIN for a TLSA name proves
    /// there is no DANE; a bogus one proves nothing.
    #[error("{name}: no such domain (NXDOMAIN, {dnssec})")]
    NxDomain {
        /// The name asked for.
        name: QueryName,
        /// The status of the denial of existence.
        dnssec: DnssecStatus,
    },
    /// The name exists but holds no records of this type (NOERROR, empty).
    #[error("{name}: no {rtype} records ({dnssec})")]
    NoData {
        /// The name asked for.
        name: QueryName,
        /// The type asked for.
        rtype: RecordType,
        /// The status of the denial of existence.
        dnssec: DnssecStatus,
    },
    /// The server answered SERVFAIL or REFUSED, or validation failed so
    /// badly that no data came back (a validating upstream answers SERVFAIL
    /// for bogus data).
    #[error("{name} {rtype}: server failure: {detail}")]
    ServerFailure {
        /// The name asked for.
        name: QueryName,
        /// The type asked for.
        rtype: RecordType,
        /// What the resolver reported.
        detail: String,
    },
    /// A validating upstream refused the answer because DNSSEC validation
    /// failed: it answered SERVFAIL with an RFC 8914 Extended DNS Error
    /// naming a DNSSEC cause (signature expired, RRSIGs missing, ...). Not
    /// temporary: the same data gives the same verdict; DANE treats it as
    /// bogus data.
    #[error("{name} {rtype}: DNSSEC validation failed upstream: {ede}")]
    Bogus {
        /// The name asked for.
        name: QueryName,
        /// The type asked for.
        rtype: RecordType,
        /// The first DNSSEC Extended DNS Error of the SERVFAIL answer.
        ede: ExtendedDnsError,
    },
    /// No answer in time.
    #[error("{name} {rtype}: timed out")]
    Timeout {
        /// The name asked for.
        name: QueryName,
        /// The type asked for.
        rtype: RecordType,
    },
    /// Records came back but could not be used (a CNAME loop, a name that is
    /// not a host name).
    #[error("{name} {rtype}: malformed answer: {detail}")]
    Malformed {
        /// The name asked for.
        name: QueryName,
        /// The type asked for.
        rtype: RecordType,
        /// What was wrong.
        detail: String,
    },
}

impl DnsError {
    /// Whether the error is a definite "nothing here" (NXDOMAIN or no data)
    /// rather than a failure to find out.
    pub fn is_negative_answer(&self) -> bool {
        matches!(self, DnsError::NxDomain { .. } | DnsError::NoData { .. })
    }

    /// The DNSSEC status of a negative answer; `None` for failures.
    pub fn denial_status(&self) -> Option<DnssecStatus> {
        match self {
            DnsError::NxDomain { dnssec, .. } | DnsError::NoData { dnssec, .. } => Some(*dnssec),
            _ => None,
        }
    }

    /// Whether the lookup failed because the data is DNSSEC-bogus (a
    /// negative answer whose denial is bogus, or [`DnsError::Bogus`]).
    pub fn is_bogus(&self) -> bool {
        matches!(self, DnsError::Bogus { .. }) || self.denial_status() == Some(DnssecStatus::Bogus)
    }

    /// Whether trying again later may give another result.
    pub fn is_temporary(&self) -> bool {
        matches!(
            self,
            DnsError::ServerFailure { .. } | DnsError::Timeout { .. }
        )
    }
}

/// Why a [`super::HickoryResolver`] could not be set up.
#[cfg(feature = "hickory")]
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DnsSetupError {
    /// The system resolver configuration (`/etc/resolv.conf`) could not be read.
    #[error("cannot read the system resolver configuration: {0}")]
    SystemConfig(String),
    /// [`super::Validation::TrustUpstreamAd`] was asked for with the system
    /// resolver configuration: the AD bit is trusted only from servers
    /// named in [`super::HickoryResolverConfig::nameservers`].
    #[error("trusting the AD bit needs explicitly configured name servers, not /etc/resolv.conf")]
    AdTrustWithoutNameservers,
    /// [`super::Validation::TrustUpstreamAd`] was asked for with a name
    /// server that is neither on loopback nor listed in
    /// [`super::HickoryResolverConfig::trusted_upstreams`].
    #[error(
        "name server {addr} is not on loopback and not listed in trusted_upstreams: its AD bit cannot be trusted"
    )]
    UntrustedUpstream {
        /// The name server.
        addr: std::net::SocketAddr,
    },
    /// A trust anchor file could not be read or parsed.
    #[error("cannot load DNSSEC trust anchors from {path}: {detail}")]
    TrustAnchor {
        /// The file.
        path: std::path::PathBuf,
        /// What went wrong.
        detail: String,
    },
}
