//! Checking a presented chain against usable TLSA records (RFC 7672 §3.1-§3.2).

use std::sync::Arc;

use mailtls_core::DnsName;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use rustls::{CertificateError, RootCertStore};
use rustls_pki_types::{CertificateDer, Der, ServerName, TrustAnchor, UnixTime};

use super::tlsa::{DaneUsage, MalformedCertificate, MatchingType, Selector, UsableTlsa};
use crate::result_type::ResultType;

/// Which record authenticated the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaneMatch {
    /// The record that matched.
    pub record: UsableTlsa,
    /// Where in the presented chain it matched: 0 is the server's own
    /// certificate (DANE-EE), higher numbers are intermediates (DANE-TA);
    /// one past the last presented certificate for an anchor known only by
    /// its key from DNS.
    pub depth: usize,
}

/// Why a chain failed DANE authentication.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DaneFailureKind {
    /// There were no usable records to check against.
    #[error("no usable TLSA records")]
    NoUsableRecords,
    /// No usable record matched the server certificate (DANE-EE) or any
    /// certificate in the chain (DANE-TA).
    #[error("no TLSA record matched the presented chain ({records} usable records tried)")]
    NoRecordMatched {
        /// How many usable records were tried.
        records: usize,
    },
    /// A certificate could not be parsed.
    #[error(transparent)]
    Malformed(#[from] MalformedCertificate),
    /// DANE-TA: the chain up to the matched trust anchor has a certificate
    /// outside its validity period.
    #[error("DANE-TA: a certificate below the trust anchor is expired or not yet valid")]
    Expired,
    /// DANE-TA: the chain matched but the server certificate names none of the
    /// reference identifiers.
    #[error("DANE-TA: the server certificate is not valid for any of {names:?}")]
    NameMismatch {
        /// The reference identifiers tried.
        names: Vec<String>,
    },
    /// DANE-TA: a certificate in the chain matched, but the server certificate
    /// does not chain to it.
    #[error("DANE-TA: the chain does not validate up to the matched trust anchor: {detail}")]
    ChainInvalid {
        /// What the path validator said.
        detail: String,
    },
}

/// A DANE authentication failure, classified for TLS-RPT.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("DANE authentication failed: {kind}")]
pub struct DaneFailure {
    /// What went wrong.
    pub kind: DaneFailureKind,
}

impl DaneFailure {
    /// The RFC 8460 result type to report for this failure.
    pub fn result_type(&self) -> ResultType {
        match self.kind {
            // RFC 8460 §4.3.2: none of the records in the RRset were valid.
            DaneFailureKind::NoUsableRecords | DaneFailureKind::NoRecordMatched { .. } => {
                ResultType::TlsaInvalid
            }
            DaneFailureKind::Expired => ResultType::CertificateExpired,
            DaneFailureKind::NameMismatch { .. } => ResultType::CertificateHostMismatch,
            DaneFailureKind::ChainInvalid { .. } => ResultType::CertificateNotTrusted,
            DaneFailureKind::Malformed(_) => ResultType::ValidationFailure,
        }
    }
}

impl From<DaneFailureKind> for DaneFailure {
    fn from(kind: DaneFailureKind) -> Self {
        Self { kind }
    }
}

/// Authenticates a presented chain by DANE.
///
/// - DANE-EE(3) records are compared with `end_entity` only; names and
///   validity dates are ignored (RFC 7672 §3.1.1).
/// - DANE-TA(2) records are compared with the certificates the server sent
///   after its own; the chain from `end_entity` to a matched certificate must
///   validate (signatures, validity of the certificates below the anchor,
///   server-auth usage) and `end_entity` must be valid for one of
///   `reference_names` (RFC 7672 §3.1.2, §3.2.2: the TLSA base domain, and
///   optionally the MX name before CNAME expansion and the next-hop domain).
///   The anchor's own dates are not checked: the TLSA record vouches for it.
///
/// Digest algorithm agility (RFC 7671 §9): among records of the same usage
/// and selector, only those with the strongest digest present (SHA2-512
/// over SHA2-256) are tried, so a weaker digest cannot let through a
/// certificate that the stronger one rejects. Full(0) records carry the
/// data itself, not a digest, and always take part.
///
/// When no presented certificate matches, a DANE-TA record holding a full
/// public key (`2 1 0`) is tried as an anchor the server left out of its
/// chain (RFC 7671 §5.2.2), named after a presented certificate's issuer.
///
/// `provider` checks the signatures of a DANE-TA chain (the one of the
/// embedder's rustls configuration).
pub fn verify_chain(
    usable: &[UsableTlsa],
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    reference_names: &[DnsName],
    now: UnixTime,
    provider: &Arc<CryptoProvider>,
) -> Result<DaneMatch, DaneFailure> {
    if usable.is_empty() {
        return Err(DaneFailureKind::NoUsableRecords.into());
    }
    let governing = strongest_digests(usable);
    for record in governing
        .iter()
        .copied()
        .filter(|r| r.usage() == DaneUsage::DaneEe)
    {
        if record.matches(end_entity).map_err(DaneFailureKind::from)? {
            return Ok(DaneMatch {
                record: record.clone(),
                depth: 0,
            });
        }
    }
    // The first failure of a matched anchor is the most telling one to report.
    let mut first_failure: Option<DaneFailure> = None;
    for (index, candidate) in intermediates.iter().enumerate() {
        for record in governing
            .iter()
            .copied()
            .filter(|r| r.usage() == DaneUsage::DaneTa)
        {
            if !record.matches(candidate).map_err(DaneFailureKind::from)? {
                continue;
            }
            match chain_to_anchor(
                candidate,
                end_entity,
                intermediates,
                reference_names,
                now,
                provider,
            ) {
                Ok(()) => {
                    return Ok(DaneMatch {
                        record: record.clone(),
                        depth: index + 1,
                    });
                }
                Err(f) => {
                    first_failure.get_or_insert(f);
                }
            }
        }
    }
    // No presented certificate matched: a full bare key (`2 1 0`) may name
    // an anchor the server did not send.
    if first_failure.is_none() {
        let bare_keys = governing.iter().copied().filter(|r| {
            r.usage() == DaneUsage::DaneTa
                && r.selector() == Selector::Spki
                && r.matching_type() == MatchingType::Full
        });
        for record in bare_keys {
            match chain_to_bare_key(
                record.data(),
                end_entity,
                intermediates,
                reference_names,
                now,
                provider,
            ) {
                Ok(()) => {
                    return Ok(DaneMatch {
                        record: record.clone(),
                        depth: intermediates.len() + 1,
                    });
                }
                Err(f) => {
                    first_failure.get_or_insert(f);
                }
            }
        }
    }
    Err(first_failure.unwrap_or_else(|| {
        DaneFailureKind::NoRecordMatched {
            records: governing.len(),
        }
        .into()
    }))
}

/// The strength of a digest matching type; `None` for Full(0), which is
/// not a digest and so outside digest agility.
fn digest_strength(m: MatchingType) -> Option<u8> {
    match m {
        MatchingType::Full => None,
        MatchingType::Sha256 => Some(1),
        MatchingType::Sha512 => Some(2),
    }
}

/// The records that govern under RFC 7671 §9: for each usage and selector,
/// digest records weaker than the strongest digest present are dropped.
fn strongest_digests(usable: &[UsableTlsa]) -> Vec<&UsableTlsa> {
    usable
        .iter()
        .filter(|r| {
            let Some(strength) = digest_strength(r.matching_type()) else {
                return true;
            };
            !usable.iter().any(|o| {
                o.usage() == r.usage()
                    && o.selector() == r.selector()
                    && digest_strength(o.matching_type()).is_some_and(|s| s > strength)
            })
        })
        .collect()
}

/// Validates `end_entity` up to `anchor` with the standard path validator,
/// then checks the reference names.
fn chain_to_anchor(
    anchor: &CertificateDer<'_>,
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    reference_names: &[DnsName],
    now: UnixTime,
    provider: &Arc<CryptoProvider>,
) -> Result<(), DaneFailure> {
    let mut roots = RootCertStore::empty();
    roots
        .add(anchor.clone().into_owned())
        .map_err(|e| DaneFailureKind::ChainInvalid {
            detail: format!("the matched trust anchor is unusable: {e}"),
        })?;
    chain_to_roots(
        roots,
        end_entity,
        intermediates,
        reference_names,
        now,
        provider,
    )
}

/// DANE-TA with the anchor's public key published in full in DNS (`2 1 0`)
/// and the anchor certificate left out of the chain (RFC 7671 §5.2.2 allows
/// it): the anchor is the key from the record with the issuer name of a
/// presented certificate, as a trust anchor carries only those two.
fn chain_to_bare_key(
    spki: &[u8],
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    reference_names: &[DnsName],
    now: UnixTime,
    provider: &Arc<CryptoProvider>,
) -> Result<(), DaneFailure> {
    let Some(spki_contents) = der_sequence_contents(spki) else {
        return Err(DaneFailureKind::ChainInvalid {
            detail: "the DANE-TA key is not a DER SubjectPublicKeyInfo".to_owned(),
        }
        .into());
    };
    let mut first_failure = None;
    let mut issuers: Vec<Vec<u8>> = Vec::new();
    for cert in std::iter::once(end_entity).chain(intermediates) {
        let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).map_err(|e| {
            DaneFailureKind::from(MalformedCertificate {
                detail: e.to_string(),
            })
        })?;
        let issuer = parsed.tbs_certificate.issuer.as_raw();
        if let Some(contents) = der_sequence_contents(issuer)
            && !issuers.iter().any(|i| i == contents)
        {
            issuers.push(contents.to_vec());
        }
    }
    for subject in issuers {
        let mut roots = RootCertStore::empty();
        roots.roots.push(TrustAnchor {
            subject: Der::from(subject),
            subject_public_key_info: Der::from(spki_contents.to_vec()),
            name_constraints: None,
        });
        match chain_to_roots(
            roots,
            end_entity,
            intermediates,
            reference_names,
            now,
            provider,
        ) {
            Ok(()) => return Ok(()),
            Err(f) => {
                first_failure.get_or_insert(f);
            }
        }
    }
    Err(first_failure.unwrap_or_else(|| {
        DaneFailureKind::ChainInvalid {
            detail: "no presented certificate names an issuer".to_owned(),
        }
        .into()
    }))
}

/// The contents of a DER SEQUENCE that spans all of `der` (the form
/// webpki trust anchors hold names and keys in).
fn der_sequence_contents(der: &[u8]) -> Option<&[u8]> {
    let (&tag, rest) = der.split_first()?;
    if tag != 0x30 {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (len_bytes, rest) = rest.split_at(n);
        let len = len_bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, rest)
    };
    (rest.len() == len).then_some(rest)
}

/// Validates `end_entity` up to one of `roots`, then checks the names.
fn chain_to_roots(
    roots: RootCertStore,
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    reference_names: &[DnsName],
    now: UnixTime,
    provider: &Arc<CryptoProvider>,
) -> Result<(), DaneFailure> {
    let verifier =
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider))
            .build()
            .map_err(|e| DaneFailureKind::ChainInvalid {
                detail: e.to_string(),
            })?;
    let mut tried = Vec::new();
    for name in reference_names {
        let server_name = match ServerName::try_from(name.as_str().to_owned()) {
            Ok(n) => n,
            Err(_) => continue,
        };
        tried.push(name.as_str().to_owned());
        match verifier.verify_server_cert(end_entity, intermediates, &server_name, &[], now) {
            Ok(_) => return Ok(()),
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => continue,
            Err(rustls::Error::InvalidCertificate(
                CertificateError::Expired
                | CertificateError::ExpiredContext { .. }
                | CertificateError::NotValidYet
                | CertificateError::NotValidYetContext { .. },
            )) => return Err(DaneFailureKind::Expired.into()),
            Err(e) => {
                return Err(DaneFailureKind::ChainInvalid {
                    detail: e.to_string(),
                }
                .into());
            }
        }
    }
    Err(DaneFailureKind::NameMismatch { names: tried }.into())
}

#[cfg(test)]
mod tests {
    use super::der_sequence_contents;

    #[test]
    fn der_sequence_contents_handles_short_and_long_lengths() {
        assert_eq!(
            der_sequence_contents(&[0x30, 0x02, 1, 2]),
            Some(&[1u8, 2][..])
        );
        let mut long = vec![0x30, 0x81, 0x80];
        long.extend(std::iter::repeat_n(7u8, 0x80));
        assert_eq!(der_sequence_contents(&long).map(<[u8]>::len), Some(0x80));
        // Wrong tag, truncated, trailing bytes, indefinite length.
        assert_eq!(der_sequence_contents(&[0x31, 0x00]), None);
        assert_eq!(der_sequence_contents(&[0x30, 0x03, 1]), None);
        assert_eq!(der_sequence_contents(&[0x30, 0x00, 0]), None);
        assert_eq!(der_sequence_contents(&[0x30, 0x80]), None);
        assert_eq!(der_sequence_contents(&[]), None);
    }
}
