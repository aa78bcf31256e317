//! TLSA records as RFC 7672 uses them: the usable subset and the matching of a
//! single certificate against one record (RFC 6698 §2.1).

use std::fmt;

use rustls_pki_types::CertificateDer;

use crate::dns::TlsaRecord;

/// The certificate usages SMTP can use (RFC 7672 §3.1).
///
/// PKIX-TA(0) and PKIX-EE(1) are not representable: RFC 7672 §3.1.3 makes them
/// unusable for SMTP, so they never reach the matching code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DaneUsage {
    /// DANE-TA(2): the record names a trust anchor in (or above) the chain.
    DaneTa,
    /// DANE-EE(3): the record names the server's own certificate or key.
    DaneEe,
}

/// Which part of the certificate a record covers (RFC 6698 §2.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Selector {
    /// 0: the whole DER certificate.
    Cert,
    /// 1: the DER SubjectPublicKeyInfo.
    Spki,
}

/// How the selected content is compared (RFC 6698 §2.1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchingType {
    /// 0: exact match of the selected bytes.
    Full,
    /// 1: SHA-256 of the selected bytes.
    Sha256,
    /// 2: SHA-512 of the selected bytes.
    Sha512,
}

impl MatchingType {
    /// The digest length this matching type requires, if it is a digest.
    const fn digest_len(self) -> Option<usize> {
        match self {
            Self::Full => None,
            Self::Sha256 => Some(32),
            Self::Sha512 => Some(64),
        }
    }
}

/// Why one TLSA record cannot be used for SMTP.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UnusableReason {
    /// PKIX-TA(0) or PKIX-EE(1): RFC 7672 §3.1.3 says SMTP clients treat these
    /// as unusable (there is no agreed set of public CAs for SMTP).
    #[error("certificate usage {0} (PKIX) is unusable for SMTP (RFC 7672 section 3.1.3)")]
    PkixUsage(u8),
    /// A certificate usage no RFC defines.
    #[error("unknown certificate usage {0}")]
    UnknownUsage(u8),
    /// A selector no RFC defines.
    #[error("unknown selector {0}")]
    UnknownSelector(u8),
    /// A matching type no RFC defines.
    #[error("unknown matching type {0}")]
    UnknownMatchingType(u8),
    /// A digest whose length does not fit its matching type (RFC 7671 §10.1.2
    /// calls such records malformed).
    #[error(
        "matching type {matching_type} needs {expected} bytes of data, the record has {actual}"
    )]
    DigestLength {
        /// The matching type number.
        matching_type: u8,
        /// The digest length it needs.
        expected: usize,
        /// The length the record has.
        actual: usize,
    },
    /// A record with no association data at all.
    #[error("the record has no certificate association data")]
    EmptyData,
}

/// A TLSA record that RFC 7672 lets an SMTP client use.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct UsableTlsa {
    usage: DaneUsage,
    selector: Selector,
    matching: MatchingType,
    data: Box<[u8]>,
}

impl fmt::Debug for UsableTlsa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Presentation format (RFC 6698 §2.2) is what operators compare against.
        write!(f, "UsableTlsa({self})")
    }
}

impl fmt::Display for UsableTlsa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let usage = match self.usage {
            DaneUsage::DaneTa => 2,
            DaneUsage::DaneEe => 3,
        };
        let selector = match self.selector {
            Selector::Cert => 0,
            Selector::Spki => 1,
        };
        let matching = match self.matching {
            MatchingType::Full => 0,
            MatchingType::Sha256 => 1,
            MatchingType::Sha512 => 2,
        };
        write!(f, "{usage} {selector} {matching} ")?;
        for b in self.data.iter() {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// The certificate was not DER that this module could take apart.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("certificate is not valid DER X.509: {detail}")]
pub struct MalformedCertificate {
    /// What the parser said.
    pub detail: String,
}

impl UsableTlsa {
    /// Sorts one record's wire fields (usage, selector, matching type, data)
    /// into a usable record, or says why it is unusable.
    pub fn from_fields(
        usage: u8,
        selector: u8,
        matching_type: u8,
        data: &[u8],
    ) -> Result<Self, UnusableReason> {
        let usage = match usage {
            0 | 1 => return Err(UnusableReason::PkixUsage(usage)),
            2 => DaneUsage::DaneTa,
            3 => DaneUsage::DaneEe,
            other => return Err(UnusableReason::UnknownUsage(other)),
        };
        let selector = match selector {
            0 => Selector::Cert,
            1 => Selector::Spki,
            other => return Err(UnusableReason::UnknownSelector(other)),
        };
        let matching = match matching_type {
            0 => MatchingType::Full,
            1 => MatchingType::Sha256,
            2 => MatchingType::Sha512,
            other => return Err(UnusableReason::UnknownMatchingType(other)),
        };
        if data.is_empty() {
            return Err(UnusableReason::EmptyData);
        }
        if let Some(expected) = matching.digest_len()
            && data.len() != expected
        {
            return Err(UnusableReason::DigestLength {
                matching_type,
                expected,
                actual: data.len(),
            });
        }
        Ok(Self {
            usage,
            selector,
            matching,
            data: data.into(),
        })
    }

    /// Sorts one record from the DNS layer.
    pub fn from_record(record: &TlsaRecord) -> Result<Self, UnusableReason> {
        Self::from_fields(
            record.usage.into(),
            record.selector.into(),
            record.matching.into(),
            &record.data,
        )
    }

    /// Builds the record that matches `cert` with the given parameters: what a
    /// domain owner publishes (and what tests compare against).
    pub fn for_certificate(
        usage: DaneUsage,
        selector: Selector,
        matching: MatchingType,
        cert: &CertificateDer<'_>,
    ) -> Result<Self, MalformedCertificate> {
        let selected = select(selector, cert)?;
        let data = association(matching, &selected);
        Ok(Self {
            usage,
            selector,
            matching,
            data: data.into(),
        })
    }

    /// The certificate usage.
    pub fn usage(&self) -> DaneUsage {
        self.usage
    }

    /// The selector.
    pub fn selector(&self) -> Selector {
        self.selector
    }

    /// The matching type.
    pub fn matching_type(&self) -> MatchingType {
        self.matching
    }

    /// The certificate association data.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// Whether `cert` matches this record's selector, matching type and data
    /// (RFC 6698 §2.1). The usage is not considered here.
    pub fn matches(&self, cert: &CertificateDer<'_>) -> Result<bool, MalformedCertificate> {
        let selected = select(self.selector, cert)?;
        Ok(association(self.matching, &selected) == *self.data)
    }
}

/// The bytes a selector picks out of a certificate.
fn select(selector: Selector, cert: &CertificateDer<'_>) -> Result<Vec<u8>, MalformedCertificate> {
    match selector {
        Selector::Cert => Ok(cert.as_ref().to_vec()),
        Selector::Spki => {
            let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).map_err(|e| {
                MalformedCertificate {
                    detail: e.to_string(),
                }
            })?;
            Ok(parsed.tbs_certificate.subject_pki.raw.to_vec())
        }
    }
}

/// The association data for selected bytes under a matching type.
fn association(matching: MatchingType, selected: &[u8]) -> Vec<u8> {
    match matching {
        MatchingType::Full => selected.to_vec(),
        MatchingType::Sha256 => crate::crypto::sha256(selected).to_vec(),
        MatchingType::Sha512 => crate::crypto::sha512(selected).to_vec(),
    }
}

/// A non-empty TLSA RRset, sorted for RFC 7672.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsaSet {
    /// At least one record is usable: the server must authenticate by DANE
    /// against these (the unusable ones are kept for diagnostics).
    Usable {
        /// The usable records, in RRset order.
        usable: Vec<UsableTlsa>,
        /// The records skipped, with the reason.
        unusable: Vec<UnusableReason>,
    },
    /// Every record is unusable: RFC 7672 §2.2 says TLS is still mandatory,
    /// but the server is not authenticated.
    AllUnusable {
        /// Why each record was skipped.
        unusable: Vec<UnusableReason>,
    },
}

impl TlsaSet {
    /// Sorts an RRset given as (usage, selector, matching type, data) tuples.
    /// Returns `None` for an empty RRset, which means "no DANE" rather than
    /// "all unusable".
    pub fn from_fields<'a>(
        records: impl IntoIterator<Item = (u8, u8, u8, &'a [u8])>,
    ) -> Option<Self> {
        let mut usable = Vec::new();
        let mut unusable = Vec::new();
        for (u, s, m, data) in records {
            match UsableTlsa::from_fields(u, s, m, data) {
                Ok(r) => {
                    if !usable.contains(&r) {
                        usable.push(r);
                    }
                }
                Err(reason) => unusable.push(reason),
            }
        }
        match (usable.is_empty(), unusable.is_empty()) {
            (true, true) => None,
            (true, false) => Some(Self::AllUnusable { unusable }),
            (false, _) => Some(Self::Usable { usable, unusable }),
        }
    }

    /// Sorts an RRset from the DNS layer; `None` for an empty RRset.
    pub fn from_records(records: &[TlsaRecord]) -> Option<Self> {
        Self::from_fields(records.iter().map(|r| {
            (
                u8::from(r.usage),
                u8::from(r.selector),
                u8::from(r.matching),
                r.data.as_slice(),
            )
        }))
    }

    /// The usable records (empty when all are unusable).
    pub fn usable(&self) -> &[UsableTlsa] {
        match self {
            Self::Usable { usable, .. } => usable,
            Self::AllUnusable { .. } => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkix_usages_are_unusable_for_smtp_rfc7672_3_1_3() {
        assert_eq!(
            UsableTlsa::from_fields(0, 0, 1, &[0; 32]),
            Err(UnusableReason::PkixUsage(0))
        );
        assert_eq!(
            UsableTlsa::from_fields(1, 1, 1, &[0; 32]),
            Err(UnusableReason::PkixUsage(1))
        );
        assert!(UsableTlsa::from_fields(3, 1, 1, &[0; 32]).is_ok());
        assert!(UsableTlsa::from_fields(2, 0, 2, &[0; 64]).is_ok());
    }

    #[test]
    fn unknown_fields_and_bad_digest_lengths_are_unusable() {
        assert_eq!(
            UsableTlsa::from_fields(4, 1, 1, &[0; 32]),
            Err(UnusableReason::UnknownUsage(4))
        );
        assert_eq!(
            UsableTlsa::from_fields(3, 2, 1, &[0; 32]),
            Err(UnusableReason::UnknownSelector(2))
        );
        assert_eq!(
            UsableTlsa::from_fields(3, 1, 3, &[0; 32]),
            Err(UnusableReason::UnknownMatchingType(3))
        );
        assert_eq!(
            UsableTlsa::from_fields(3, 1, 1, &[0; 31]),
            Err(UnusableReason::DigestLength {
                matching_type: 1,
                expected: 32,
                actual: 31
            })
        );
        assert_eq!(
            UsableTlsa::from_fields(3, 1, 0, &[]),
            Err(UnusableReason::EmptyData)
        );
    }

    #[test]
    fn rrset_sorting_separates_empty_all_unusable_and_usable() {
        assert_eq!(TlsaSet::from_fields(Vec::new()), None);
        let d = [7u8; 32];
        let all_bad = TlsaSet::from_fields(vec![(1, 1, 1, &d[..]), (0, 0, 1, &d[..])]);
        assert!(
            matches!(all_bad, Some(TlsaSet::AllUnusable { ref unusable }) if unusable.len() == 2)
        );
        let mixed = TlsaSet::from_fields(vec![
            (1, 1, 1, &d[..]),
            (3, 1, 1, &d[..]),
            (3, 1, 1, &d[..]),
        ])
        .unwrap();
        assert_eq!(mixed.usable().len(), 1, "duplicates collapse");
        assert_eq!(
            mixed.usable()[0].to_string(),
            format!("3 1 1 {}", "07".repeat(32))
        );
    }
}
