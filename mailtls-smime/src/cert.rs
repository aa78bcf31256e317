//! Certificates as the engine uses them: DER kept beside the parsed form.

use cms::cert::IssuerAndSerialNumber;
use const_oid::ObjectIdentifier;
use der::{Decode, Encode};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAltName, SubjectKeyIdentifier,
};

use crate::error::{Error, Result};

/// Legacy `emailAddress` attribute in a distinguished name (PKCS #9).
const EMAIL_ADDRESS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.1");
const SAN: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.17");
const SKI: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.14");
const KU: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.15");
const EKU: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37");
const BC: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.19");

/// An X.509 certificate: its DER encoding and its parsed form.
///
/// Made from DER or PEM, or from a `rustls_pki_types::CertificateDer` as
/// rustls and mailtls-core hold it (`TryFrom`); turned back into one with
/// `CertificateDer::from(&certificate)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Certificate {
    der: Vec<u8>,
    parsed: x509_cert::Certificate,
}

impl TryFrom<&CertificateDer<'_>> for Certificate {
    type Error = Error;

    fn try_from(der: &CertificateDer<'_>) -> Result<Self> {
        Self::from_der(der.as_ref())
    }
}

impl TryFrom<CertificateDer<'_>> for Certificate {
    type Error = Error;

    fn try_from(der: CertificateDer<'_>) -> Result<Self> {
        Self::from_der(der.as_ref())
    }
}

impl From<&Certificate> for CertificateDer<'static> {
    fn from(certificate: &Certificate) -> Self {
        CertificateDer::from(certificate.der.clone())
    }
}

impl Certificate {
    /// Parses every certificate of a chain as rustls and mailtls-core hold
    /// it (leaf first), keeping the order.
    pub fn from_chain(chain: &[CertificateDer<'_>]) -> Result<Vec<Self>> {
        chain.iter().map(Self::try_from).collect()
    }
}

impl Certificate {
    /// Parses one DER-encoded certificate.
    pub fn from_der(der: &[u8]) -> Result<Self> {
        let parsed = x509_cert::Certificate::from_der(der)
            .map_err(|e| Error::Certificate(format!("cannot parse DER certificate: {e}")))?;
        Ok(Self {
            der: der.to_vec(),
            parsed,
        })
    }

    /// Parses every `CERTIFICATE` block of a PEM text, in order.
    pub fn from_pem(pem: &[u8]) -> Result<Vec<Self>> {
        let mut out = Vec::new();
        for item in CertificateDer::pem_slice_iter(pem) {
            let der = item.map_err(|e| Error::Certificate(format!("PEM: {e}")))?;
            out.push(Self::from_der(der.as_ref())?);
        }
        if out.is_empty() {
            return Err(Error::Certificate("no CERTIFICATE block in PEM".into()));
        }
        Ok(out)
    }

    pub(crate) fn from_parsed(parsed: x509_cert::Certificate) -> Result<Self> {
        let der = parsed.to_der().map_err(|e| Error::cms("Certificate", e))?;
        Ok(Self { der, parsed })
    }

    /// The DER encoding.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    pub(crate) fn x509(&self) -> &x509_cert::Certificate {
        &self.parsed
    }

    /// The subject as an RFC 4514 string, for reports.
    pub fn subject(&self) -> String {
        self.parsed.tbs_certificate.subject.to_string()
    }

    /// The issuer as an RFC 4514 string, for reports.
    pub fn issuer(&self) -> String {
        self.parsed.tbs_certificate.issuer.to_string()
    }

    /// Mail addresses the certificate names: rfc822Name subject alternative
    /// names, then legacy `emailAddress` attributes of the subject.
    pub fn email_addresses(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(san) = self.extension::<SubjectAltName>(SAN) {
            for name in san.0 {
                if let GeneralName::Rfc822Name(addr) = name {
                    out.push(addr.as_str().to_string());
                }
            }
        }
        for rdn in self.parsed.tbs_certificate.subject.0.iter() {
            for atv in rdn.0.iter() {
                if atv.oid == EMAIL_ADDRESS
                    && let Ok(s) = atv.value.decode_as::<der::asn1::Ia5StringRef<'_>>()
                {
                    out.push(s.as_str().to_string());
                }
            }
        }
        out
    }

    /// Whether `address` is one of the certificate's mail addresses. The
    /// local part is compared exactly, the domain case-insensitively
    /// (RFC 8550 section 3).
    pub fn matches_address(&self, address: &str) -> bool {
        self.email_addresses()
            .iter()
            .any(|own| addresses_equal(own, address))
    }

    pub(crate) fn issuer_and_serial(&self) -> IssuerAndSerialNumber {
        IssuerAndSerialNumber {
            issuer: self.parsed.tbs_certificate.issuer.clone(),
            serial_number: self.parsed.tbs_certificate.serial_number.clone(),
        }
    }

    pub(crate) fn subject_key_identifier(&self) -> Option<Vec<u8>> {
        self.extension::<SubjectKeyIdentifier>(SKI)
            .map(|ski| ski.0.as_bytes().to_vec())
    }

    pub(crate) fn key_usage(&self) -> Option<KeyUsage> {
        self.extension::<KeyUsage>(KU)
    }

    pub(crate) fn extended_key_usage(&self) -> Option<ExtendedKeyUsage> {
        self.extension::<ExtendedKeyUsage>(EKU)
    }

    pub(crate) fn is_ca(&self) -> bool {
        self.extension::<BasicConstraints>(BC)
            .map(|bc| bc.ca)
            .unwrap_or(false)
    }

    /// A CA whose key usage (if present) includes keyCertSign (RFC 5280
    /// section 4.2.1.3).
    pub(crate) fn can_sign_certificates(&self) -> bool {
        self.is_ca()
            && self
                .key_usage()
                .is_none_or(|ku| ku.0.contains(x509_cert::ext::pkix::KeyUsages::KeyCertSign))
    }

    /// Whether an extension of this type is present but undecodable.
    pub(crate) fn has_extension(&self, oid: ObjectIdentifier) -> bool {
        self.parsed
            .tbs_certificate
            .extensions
            .iter()
            .flatten()
            .any(|e| e.extn_id == oid)
    }

    fn extension<T: for<'a> Decode<'a>>(&self, oid: ObjectIdentifier) -> Option<T> {
        self.parsed
            .tbs_certificate
            .extensions
            .iter()
            .flatten()
            .find(|e| e.extn_id == oid)
            .and_then(|e| T::from_der(e.extn_value.as_bytes()).ok())
    }

    /// The subjectPublicKey bits and the key algorithm (OID, curve OID).
    pub(crate) fn public_key(&self) -> (ObjectIdentifier, Option<ObjectIdentifier>, &[u8]) {
        let spki = &self.parsed.tbs_certificate.subject_public_key_info;
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
        (
            spki.algorithm.oid,
            curve,
            spki.subject_public_key.raw_bytes(),
        )
    }

    /// Validity window as Unix seconds.
    pub(crate) fn validity(&self) -> (u64, u64) {
        let v = &self.parsed.tbs_certificate.validity;
        (
            v.not_before.to_unix_duration().as_secs(),
            v.not_after.to_unix_duration().as_secs(),
        )
    }

    pub(crate) fn is_named_by(&self, issuer: &Certificate) -> bool {
        self.parsed.tbs_certificate.issuer == issuer.parsed.tbs_certificate.subject
    }
}

/// Compares two addresses: local part exact, domain case-insensitive.
pub(crate) fn addresses_equal(a: &str, b: &str) -> bool {
    match (a.rsplit_once('@'), b.rsplit_once('@')) {
        (Some((la, da)), Some((lb, db))) => la == lb && da.eq_ignore_ascii_case(db),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_comparison_folds_only_the_domain() {
        assert!(addresses_equal("alice@Example.ORG", "alice@example.org"));
        assert!(!addresses_equal("Alice@example.org", "alice@example.org"));
        assert!(!addresses_equal("alice", "alice"));
    }
}
