//! The already-resolved facts a delivery plan is decided from.
//!
//! These are plain values so the decision is a pure function that tests can
//! drive directly; [`gather()`](super::gather()) fills them in through a
//! [`crate::dns::DnsResolver`].

use std::net::IpAddr;
use std::sync::Arc;

use mailtls_core::DnsName;

use crate::dns::{DnssecStatus, TlsaRecord};
use crate::mta_sts::MtaStsPolicy;

/// Everything known about a recipient domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainFacts {
    /// The recipient domain (the next-hop domain of RFC 7672).
    pub domain: DnsName,
    /// What the MX lookup gave.
    pub mx: MxFacts,
    /// The MTA-STS policy in force, if any: the `Arc` the cache (and
    /// [`crate::mta_sts::PolicyOutcome::policy`]) hands out, shared, not
    /// copied per message.
    pub mta_sts: Option<Arc<MtaStsPolicy>>,
}

/// The outcome of the MX lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MxFacts {
    /// MX records, each with what is known about its host.
    Hosts {
        /// The DNSSEC status of the MX RRset (CNAMEs included).
        dnssec: DnssecStatus,
        /// The hosts, in any order (the plan sorts by preference).
        hosts: Vec<HostFacts>,
    },
    /// No MX RRset: the domain itself is the implicit MX (RFC 5321 §5.1).
    Implicit {
        /// The DNSSEC status of the denial of the MX RRset.
        dnssec: DnssecStatus,
        /// The domain as its own host.
        host: HostFacts,
    },
    /// A null MX: the domain accepts no mail (RFC 7505).
    NullMx,
    /// The domain does not exist.
    NoSuchDomain,
    /// The lookup failed (server failure, timeout, bogus data).
    LookupFailed {
        /// Whether DNSSEC validation failed (bogus), as opposed to the
        /// resolver not answering.
        bogus: bool,
        /// What went wrong.
        detail: String,
    },
}

/// What is known about one MX host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    /// The MX preference (lower first).
    pub preference: u16,
    /// The host name as the MX record gives it.
    pub name: DnsName,
    /// Its address records.
    pub addresses: AddressFacts,
    /// Its TLSA records.
    pub tlsa: TlsaFacts,
}

/// The address records of an MX host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressFacts {
    /// Addresses were found.
    Found {
        /// The name they were found at after CNAME expansion (RFC 7672
        /// §2.2.3 uses it as the first TLSA base domain).
        canonical: DnsName,
        /// The weakest DNSSEC status of the A and AAAA answers and their CNAMEs.
        dnssec: DnssecStatus,
        /// The addresses.
        addresses: Vec<IpAddr>,
    },
    /// No address could be found.
    Failed {
        /// Whether trying later may help.
        temporary: bool,
        /// What went wrong.
        detail: String,
    },
}

/// The TLSA records of an MX host (`_25._tcp.HOST`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsaFacts {
    /// Not looked up: the MX or address records were not authentic, so DANE
    /// cannot apply (RFC 7672 §2.2).
    NotApplicable,
    /// No TLSA records (an authentic or insecure denial).
    Absent {
        /// The DNSSEC status of the denial.
        dnssec: DnssecStatus,
    },
    /// TLSA records.
    Records {
        /// The TLSA base domain: where the records were found (RFC 7672
        /// §2.2.3), the primary reference identifier for DANE-TA.
        base: DnsName,
        /// Their DNSSEC status.
        dnssec: DnssecStatus,
        /// The records.
        records: Vec<TlsaRecord>,
    },
    /// The lookup failed: RFC 7672 §2.2 treats the host as unusable, since a
    /// failed lookup may hide records an attacker suppressed.
    Failed {
        /// Whether validation failed (bogus) rather than the resolver.
        bogus: bool,
        /// What went wrong.
        detail: String,
    },
}
