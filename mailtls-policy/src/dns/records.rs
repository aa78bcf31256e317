//! Typed DNS answers: MX, TXT, TLSA and address records, each answer carrying
//! the DNSSEC status of everything it was built from.

use std::fmt;

use mailtls_core::DnsName;

use super::QueryName;

/// What DNSSEC says about an answer (RFC 4035 §4.3), plus the case a caller
/// must never confuse with an attack: a resolver that does not validate.
///
/// The order is from weakest to strongest: combining two statuses (an answer
/// reached through a CNAME) keeps the weaker one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum DnssecStatus {
    /// Validation was attempted and failed: bad signatures, missing DNSSEC
    /// records under a signed parent. DANE treats the data as unusable.
    Bogus,
    /// The resolver does not validate (validation switched off, or an
    /// upstream that gave no DNSSEC verdict). Not evidence of an attack, but
    /// not authentic either: DANE cannot be used.
    NotValidated,
    /// Validated as provably unsigned (the zone or a parent has no DS).
    Insecure,
    /// Validated by a chain of signatures from a trust anchor.
    Authentic,
}

impl DnssecStatus {
    /// The weaker of two statuses, for data reached through several RRsets.
    pub fn combine(self, other: DnssecStatus) -> DnssecStatus {
        self.min(other)
    }

    /// Whether the data is DNSSEC-authentic (what DANE and REQUIRETLS need).
    pub fn is_authentic(self) -> bool {
        self == DnssecStatus::Authentic
    }

    /// A short lowercase word for logs and reports.
    pub const fn as_str(self) -> &'static str {
        match self {
            DnssecStatus::Bogus => "bogus",
            DnssecStatus::NotValidated => "not-validated",
            DnssecStatus::Insecure => "insecure",
            DnssecStatus::Authentic => "authentic",
        }
    }
}

impl fmt::Display for DnssecStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One MX record.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MxRecord {
    /// Lower is preferred (RFC 5321 §5.1).
    pub preference: u16,
    /// The mail exchanger; `None` for a null MX (`.`, RFC 7505: the domain
    /// accepts no mail).
    pub exchange: Option<DnsName>,
}

/// One TXT record: its character-strings as received.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TxtRecord {
    /// The character-strings, in order (RFC 1035 §3.3.14).
    pub strings: Vec<Vec<u8>>,
}

impl TxtRecord {
    /// A record of one string.
    pub fn from_text(text: &str) -> Self {
        TxtRecord {
            strings: vec![text.as_bytes().to_vec()],
        }
    }

    /// The strings joined without separator, as RFC 8461 §3.1 and RFC 8460
    /// §3 say a multi-string record is read.
    pub fn joined(&self) -> Vec<u8> {
        self.strings.concat()
    }
}

/// TLSA certificate usage (RFC 6698 §2.1.1, RFC 7218 acronyms).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TlsaUsage {
    /// 0, PKIX-TA: unusable for SMTP (RFC 7672 §3.1.3).
    PkixTa,
    /// 1, PKIX-EE: unusable for SMTP (RFC 7672 §3.1.3).
    PkixEe,
    /// 2, DANE-TA.
    DaneTa,
    /// 3, DANE-EE.
    DaneEe,
    /// Any other value: unusable.
    Other(u8),
}

impl From<u8> for TlsaUsage {
    fn from(v: u8) -> Self {
        match v {
            0 => TlsaUsage::PkixTa,
            1 => TlsaUsage::PkixEe,
            2 => TlsaUsage::DaneTa,
            3 => TlsaUsage::DaneEe,
            other => TlsaUsage::Other(other),
        }
    }
}

impl From<TlsaUsage> for u8 {
    fn from(v: TlsaUsage) -> u8 {
        match v {
            TlsaUsage::PkixTa => 0,
            TlsaUsage::PkixEe => 1,
            TlsaUsage::DaneTa => 2,
            TlsaUsage::DaneEe => 3,
            TlsaUsage::Other(o) => o,
        }
    }
}

/// TLSA selector (RFC 6698 §2.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TlsaSelector {
    /// 0: the full certificate.
    FullCertificate,
    /// 1: the SubjectPublicKeyInfo.
    SubjectPublicKeyInfo,
    /// Any other value: unusable.
    Other(u8),
}

impl From<u8> for TlsaSelector {
    fn from(v: u8) -> Self {
        match v {
            0 => TlsaSelector::FullCertificate,
            1 => TlsaSelector::SubjectPublicKeyInfo,
            other => TlsaSelector::Other(other),
        }
    }
}

impl From<TlsaSelector> for u8 {
    fn from(v: TlsaSelector) -> u8 {
        match v {
            TlsaSelector::FullCertificate => 0,
            TlsaSelector::SubjectPublicKeyInfo => 1,
            TlsaSelector::Other(o) => o,
        }
    }
}

/// TLSA matching type (RFC 6698 §2.1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TlsaMatching {
    /// 0: the selected content itself.
    Full,
    /// 1: its SHA-256 digest.
    Sha256,
    /// 2: its SHA-512 digest.
    Sha512,
    /// Any other value: unusable.
    Other(u8),
}

impl From<u8> for TlsaMatching {
    fn from(v: u8) -> Self {
        match v {
            0 => TlsaMatching::Full,
            1 => TlsaMatching::Sha256,
            2 => TlsaMatching::Sha512,
            other => TlsaMatching::Other(other),
        }
    }
}

impl From<TlsaMatching> for u8 {
    fn from(v: TlsaMatching) -> u8 {
        match v {
            TlsaMatching::Full => 0,
            TlsaMatching::Sha256 => 1,
            TlsaMatching::Sha512 => 2,
            TlsaMatching::Other(o) => o,
        }
    }
}

/// One TLSA record (RFC 6698 §2.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TlsaRecord {
    /// Certificate usage.
    pub usage: TlsaUsage,
    /// Which part of the certificate is matched.
    pub selector: TlsaSelector,
    /// How it is matched.
    pub matching: TlsaMatching,
    /// The association data (a digest or the full content).
    pub data: Vec<u8>,
}

impl TlsaRecord {
    /// Whether RFC 7672 §3.1 lets an SMTP client use this record: DANE-TA or
    /// DANE-EE, a known selector, a known matching type, and a digest of the
    /// right length.
    pub fn is_usable_for_smtp(&self) -> bool {
        let usage_ok = matches!(self.usage, TlsaUsage::DaneTa | TlsaUsage::DaneEe);
        let selector_ok = !matches!(self.selector, TlsaSelector::Other(_));
        let data_ok = match self.matching {
            TlsaMatching::Full => !self.data.is_empty(),
            TlsaMatching::Sha256 => self.data.len() == 32,
            TlsaMatching::Sha512 => self.data.len() == 64,
            TlsaMatching::Other(_) => false,
        };
        usage_ok && selector_ok && data_ok
    }
}

/// An answer: the records for one name and type, the name they were found
/// at after following CNAMEs, and the DNSSEC status of the whole chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer<T> {
    /// The name that was asked for.
    pub query: QueryName,
    /// The owner of the records after CNAME expansion (equal to `query`
    /// when there was no CNAME). RFC 7672 §2.2.3 uses it as a TLSA base.
    pub canonical_name: QueryName,
    /// The CNAME targets followed, in order (empty without CNAMEs).
    pub cname_chain: Vec<QueryName>,
    /// The records, never empty (an empty answer is [`super::DnsError::NoData`]).
    pub records: Vec<T>,
    /// The weakest DNSSEC status over every RRset used, CNAMEs included.
    pub dnssec: DnssecStatus,
    /// The smallest TTL over those RRsets, in seconds.
    pub ttl: u32,
}

impl<T> Answer<T> {
    /// Whether the whole answer is DNSSEC-authentic.
    pub fn is_authentic(&self) -> bool {
        self.dnssec.is_authentic()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combining_keeps_the_weaker_status() {
        use DnssecStatus::*;
        assert_eq!(Authentic.combine(Insecure), Insecure);
        assert_eq!(Insecure.combine(NotValidated), NotValidated);
        assert_eq!(NotValidated.combine(Bogus), Bogus);
        assert_eq!(Authentic.combine(Authentic), Authentic);
    }

    #[test]
    fn tlsa_usability_follows_rfc_7672_section_3_1() {
        let rec = |u: u8, s: u8, m: u8, len: usize| TlsaRecord {
            usage: u.into(),
            selector: s.into(),
            matching: m.into(),
            data: vec![0; len],
        };
        assert!(rec(3, 1, 1, 32).is_usable_for_smtp());
        assert!(rec(2, 0, 2, 64).is_usable_for_smtp());
        assert!(rec(3, 0, 0, 100).is_usable_for_smtp());
        assert!(!rec(1, 1, 1, 32).is_usable_for_smtp(), "PKIX-EE");
        assert!(!rec(0, 1, 1, 32).is_usable_for_smtp(), "PKIX-TA");
        assert!(!rec(3, 1, 1, 31).is_usable_for_smtp(), "short digest");
        assert!(!rec(3, 2, 1, 32).is_usable_for_smtp(), "selector 2");
        assert!(!rec(3, 1, 3, 32).is_usable_for_smtp(), "matching 3");
        assert_eq!(u8::from(TlsaUsage::from(7)), 7);
    }

    #[test]
    fn multi_string_txt_is_joined_without_separator() {
        let t = TxtRecord {
            strings: vec![b"v=STSv1; ".to_vec(), b"id=20160831".to_vec()],
        };
        assert_eq!(t.joined(), b"v=STSv1; id=20160831");
    }
}
